//! The managed services (`--service-script NAME SCRIPT`): one process each, started with
//! the server, started again a second after it dies (logged, with how it died), sent
//! SIGTERM on a stop or a restart, and killed with the server's other processes when they
//! do not leave in time. The supervisor's loop routes their exits here.

use std::time::Duration;

use super::children::Spawner;
use super::signals::{describe_exit, send_signal};
use super::spawner::Processes;
use crate::cli::Service;
use crate::logs::{Level, error_log};

/// How long after a service's death it is started again: long enough that a script that
/// fails at once is not started in a tight loop.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// The services and the process each has now.
pub(super) struct Services {
    entries: Vec<Entry>,
    stopping: bool,
}

struct Entry {
    name: String,
    /// The running process; `None` while waiting to be started again, or stopped.
    pid: Option<u32>,
    /// Asked to stop by a restart signal: its exit is expected.
    restarting: bool,
}

impl Services {
    pub(super) fn new(services: &[Service]) -> Self {
        Self {
            entries: services
                .iter()
                .map(|service| Entry {
                    name: service.name.clone(),
                    pid: None,
                    restarting: false,
                })
                .collect(),
            stopping: false,
        }
    }

    /// Starts every service.
    pub(super) fn start(&mut self, world: &mut Processes<'_>) {
        for index in 0..self.entries.len() {
            self.start_one(index, world);
        }
    }

    /// Starts service `index` again, unless the server is stopping.
    pub(super) fn respawn(&mut self, index: usize, world: &mut Processes<'_>) {
        if !self.stopping
            && self
                .entries
                .get(index)
                .is_some_and(|entry| entry.pid.is_none())
        {
            self.start_one(index, world);
        }
    }

    fn start_one(&mut self, index: usize, world: &mut Processes<'_>) {
        let Some(entry) = self.entries.get_mut(index) else {
            return;
        };
        entry.pid = world.spawn_service(&entry.name);
        match entry.pid {
            Some(pid) => error_log::log(
                Level::Info,
                "ferrule",
                &format!("started service '{}' (pid {pid})", entry.name),
            ),
            None => world.schedule(RESTART_DELAY, super::Event::ServiceRespawn { index }),
        }
    }

    /// A child exited: if it was a service's, says how and schedules its restart, and
    /// returns true.
    pub(super) fn on_exit(
        &mut self,
        pid: u32,
        status: std::process::ExitStatus,
        world: &mut Processes<'_>,
    ) -> bool {
        let Some(index) = self.entries.iter().position(|entry| entry.pid == Some(pid)) else {
            return false;
        };
        let entry = &mut self.entries[index];
        entry.pid = None;
        if self.stopping {
            return true;
        }
        if std::mem::take(&mut entry.restarting) {
            // A restart signal stopped it: it starts again at once.
            self.start_one(index, world);
            return true;
        }
        error_log::log(
            Level::Error,
            "ferrule",
            &format!(
                "service '{}' (pid {pid}) {}; starting it again in {} s",
                entry.name,
                describe_exit(status),
                RESTART_DELAY.as_secs()
            ),
        );
        world.schedule(RESTART_DELAY, super::Event::ServiceRespawn { index });
        true
    }

    /// SIGHUP/SIGUSR1: each service is stopped and, once it has left, started again.
    pub(super) fn restart(&mut self) {
        for entry in &mut self.entries {
            if let Some(pid) = entry.pid {
                entry.restarting = true;
                send_signal(pid, libc::SIGTERM);
            }
        }
    }

    /// The server stops: so do the services.
    pub(super) fn stop(&mut self) {
        self.stopping = true;
        self.signal_all(libc::SIGTERM);
    }

    /// The stop took too long.
    pub(super) fn kill_all(&self) {
        self.signal_all(libc::SIGKILL);
    }

    /// No service process is left.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.iter().all(|entry| entry.pid.is_none())
    }

    fn signal_all(&self, signal_number: i32) {
        for pid in self.entries.iter().filter_map(|entry| entry.pid) {
            send_signal(pid, signal_number);
        }
    }
}
