//! The supervisor's children in one table, pid → [`Child`], and the state machine that
//! moves each through its life: started in a slot, loaded, replaced, retired, gone.
//!
//! Pure: no tokio, no processes. What the machine does to the world (start a process,
//! signal one, set a timer, tell the daemon pool) goes through [`Spawner`], which the
//! supervisor implements with real processes ([`super::spawner`]) and the tests below
//! with a recorder. The recycle policy (one replacement at a time, timeouts) is in
//! [`super::recycle`], on the same table.
//!
//! A slot's *current* process is the one child of that slot in [`State::Current`]; a slot
//! has none between a death and its respawn. Whether a child has loaded the application
//! is a flag beside its state, not a state: a process can be replaced or retired before
//! it loaded (a SIGHUP or a code change during start-up), and its `--startup-timeout`
//! still applies then.
//!
//! The daemon pool (`frontend::daemon_pool`) keeps its own sets of pids (`retiring`,
//! `known`, `recycling`): they are about connections, read on the request path under the
//! pool's lock where the supervisor's loop cannot be asked (hand a connection back or
//! tell it to leave, retire every connected daemon on a code change the moment it is
//! seen, send one readiness and one recycle request per process). The pool forgets a
//! pid when the supervisor reaps it ([`Spawner::forget`]). The lifecycle itself, which
//! process serves which slot and what happens next, is only here.

use std::collections::HashMap;
use std::process::ExitStatus as ProcessStatus;
use std::time::{Duration, Instant};

use super::Event;
use super::signals::describe_exit;
use crate::cli::ExitStatus;
use crate::frontend::metrics::{self, RecycleCause};
use crate::logs::{Level, error_log};

/// Time between a process dying and its replacement starting, so that a process that
/// dies at once does not spin the CPU.
pub(super) const RESPAWN_DELAY: Duration = Duration::from_millis(100);
/// Time before a daemon whose application failed to load on a later start is tried again.
pub(super) const LOAD_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Everything the state machine does outside itself.
pub(super) trait Spawner {
    /// Starts a process in `slot` and returns its pid, or how the server must exit.
    fn spawn(&mut self, slot: usize) -> Result<u32, ExitStatus>;
    /// Sends `signal_number` to a child.
    fn signal(&mut self, pid: u32, signal_number: i32);
    /// Delivers `event` to the loop after `delay`.
    fn schedule(&mut self, delay: Duration, event: Event);
    /// Daemon mode: the pool gives `pid` no more requests and lets its threads go.
    fn retire(&mut self, pid: u32);
    /// Daemon mode: the pool forgets `pid`, which ended; returns the requests it was
    /// handling.
    fn forget(&mut self, pid: u32) -> Vec<String>;
    /// Daemon mode: the front end stops taking requests and finishes those in progress.
    fn stop_frontend(&mut self);
    /// Daemon mode: gives up on requests older than `limit` (their clients get 504);
    /// returns each one's pid and description.
    fn expire_overdue(&mut self, limit: Duration) -> Vec<(u32, String)>;
    /// Daemon mode: whether `pid` served a request and has had none for `limit`.
    fn idle_for(&mut self, pid: u32, limit: Duration) -> bool;
}

/// What the machine needs from the configuration.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    /// Daemon mode (children are daemon processes behind the in-process front end), else
    /// embedded mode (children are server processes sharing the listener).
    pub(super) daemon: bool,
    pub(super) slots: usize,
    pub(super) startup_timeout: Duration,
    pub(super) graceful_timeout: Duration,
    /// How long a process replaced after a restart signal may take to finish its requests
    /// (`--eviction-timeout`); `None`: `graceful_timeout`.
    pub(super) eviction_timeout: Option<Duration>,
    pub(super) restart_interval: Option<Duration>,
    pub(super) request_timeout: Option<Duration>,
    /// `--interrupt-timeout`: how long past `request_timeout` a daemon has to unwind a
    /// request it interrupted before the front end gives up on it.
    pub(super) interrupt_timeout: Option<Duration>,
    pub(super) inactivity_timeout: Option<Duration>,
    /// Completes "see the error log" on the terminal when the application cannot load:
    /// the log's path, or nothing when the log is the terminal.
    pub(super) error_log_hint: String,
}

/// Where a child is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Its slot's process: it gets the slot's share of the work, and a new one starts
    /// when it dies.
    Current,
    /// Replaced by a process that is still starting: it serves until that one is ready,
    /// and becomes current again if that one dies first.
    Outgoing,
    /// It gets no new work and leaves when its requests are done (or is killed after
    /// `--graceful-timeout`); its death starts nothing.
    Retiring,
}

/// One live child process.
#[derive(Clone, Debug)]
pub(super) struct Child {
    pub(super) slot: usize,
    /// How many processes its slot had started before it: tells a slot's processes
    /// apart in the tests (the loop itself goes by pid).
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests"))]
    pub(super) generation: u32,
    pub(super) started: Instant,
    pub(super) state: State,
    /// It loaded the application (daemon mode: it connected to the front end).
    pub(super) loaded: bool,
    /// The process it takes over from once it is loaded (daemon mode).
    pub(super) replaces: Option<u32>,
    /// It was started by a restart signal: the process it replaces gets
    /// `--eviction-timeout` to finish, not `--graceful-timeout`.
    pub(super) evicts: bool,
    /// Retiring: the time it has to finish its requests, and the option that gave it.
    pub(super) grace: (Duration, &'static str),
    /// It asked (or a limit asked) to be replaced: its turn and why.
    pub(super) recycle: Option<(u64, String)>,
}

/// The table and the state machine over it.
pub(super) struct Children {
    pub(super) settings: Settings,
    pub(super) table: HashMap<u32, Child>,
    generations: Vec<u32>,
    stopping: bool,
    exit_status: ExitStatus,
    /// Some daemon process loaded the application: later load failures are retried
    /// instead of stopping the server.
    ever_ready: bool,
    /// Hands out recycle turns in the order they were asked for.
    pub(super) next_turn: u64,
}

impl Children {
    pub(super) fn new(settings: Settings) -> Self {
        Self {
            generations: vec![0; settings.slots],
            settings,
            table: HashMap::new(),
            stopping: false,
            exit_status: ExitStatus::Success,
            ever_ready: false,
            next_turn: 0,
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping
    }

    pub(super) fn exit_status(&self) -> ExitStatus {
        self.exit_status
    }

    /// No child is left.
    pub(super) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub(super) fn get(&self, pid: u32) -> Option<&Child> {
        self.table.get(&pid)
    }

    /// The current process of `slot`.
    pub(super) fn current(&self, slot: usize) -> Option<u32> {
        self.table
            .iter()
            .find(|(_, child)| child.slot == slot && child.state == State::Current)
            .map(|(&pid, _)| pid)
    }

    /// "daemon" or "server", as the log lines name the children.
    pub(super) fn kind(&self) -> &'static str {
        if self.settings.daemon {
            "daemon"
        } else {
            "server"
        }
    }

    /// Starts every slot's first process; the first failure stops the server.
    pub(super) fn start(&mut self, spawner: &mut impl Spawner) {
        for slot in 0..self.settings.slots {
            if let Err(status) = self.spawn(slot, spawner) {
                self.stop(spawner);
                self.exit_status = status;
                break;
            }
        }
    }

    /// Starts a process in `slot` as its current one; the caller has moved the previous
    /// one out of [`State::Current`].
    fn spawn(&mut self, slot: usize, spawner: &mut impl Spawner) -> Result<u32, ExitStatus> {
        let pid = spawner.spawn(slot)?;
        let generation = self.generations[slot];
        self.generations[slot] += 1;
        self.table.insert(
            pid,
            Child {
                slot,
                generation,
                started: Instant::now(),
                state: State::Current,
                loaded: false,
                replaces: None,
                evicts: false,
                grace: (Duration::ZERO, ""),
                recycle: None,
            },
        );
        if self.settings.daemon {
            spawner.schedule(
                self.settings.startup_timeout,
                Event::StartupDeadline { pid },
            );
        }
        Ok(pid)
    }

    /// Takes the current process of `slot` out of that role (it is retiring unless the
    /// caller says otherwise).
    fn take_current(&mut self, slot: usize) -> Option<u32> {
        let pid = self.current(slot)?;
        if let Some(child) = self.table.get_mut(&pid) {
            child.state = State::Retiring;
        }
        Some(pid)
    }

    fn set_state(&mut self, pid: u32, state: State) {
        if let Some(child) = self.table.get_mut(&pid) {
            child.state = state;
        }
    }

    /// `Event::Respawn`: the slot's replacement is due, unless the slot got one meanwhile.
    pub(super) fn respawn(&mut self, slot: usize, spawner: &mut impl Spawner) {
        if !self.stopping && self.current(slot).is_none() {
            if let Err(status) = self.spawn(slot, spawner) {
                self.exit_status = status;
                self.stop(spawner);
            }
        }
    }

    /// A child ended: log it as it deserves and start what replaces it.
    pub(super) fn on_exit(&mut self, pid: u32, status: ProcessStatus, spawner: &mut impl Spawner) {
        let Some(child) = self.table.remove(&pid) else {
            return;
        };
        let slot = child.slot;
        let lost_requests = if self.settings.daemon {
            spawner.forget(pid)
        } else {
            Vec::new()
        };
        let kind = self.kind();
        let was_current = child.state == State::Current;
        // A process being replaced is gone: its replacement has nothing to fall back on.
        for other in self.table.values_mut() {
            if other.replaces == Some(pid) {
                other.replaces = None;
            }
        }
        // A replacement that died before it was ready: the old process keeps serving (if
        // it is still there; otherwise the slot is respawned like any other).
        let replaced_old = child.replaces.filter(|old| self.table.contains_key(old));
        if let Some(old) = replaced_old {
            if was_current {
                self.set_state(old, State::Current);
            }
        }
        if self.stopping {
            return;
        }
        if !was_current {
            // A retired process leaving; only its death by a signal is news.
            if std::os::unix::process::ExitStatusExt::signal(&status).is_some() {
                error_log::log(
                    Level::Warn,
                    "ferrule",
                    &format!(
                        "retired {kind} process {slot} (pid {pid}) {}",
                        describe_exit(status)
                    ),
                );
            }
            return;
        }
        if status.code() == Some(ExitStatus::CodeChanged as i32) {
            // It said why in the error log; its replacement starts at once.
            if replaced_old.is_none() {
                spawner.schedule(Duration::ZERO, Event::Respawn { slot });
            }
            return;
        }
        if status.code() == Some(ExitStatus::AppLoadFailed as i32) {
            if !self.ever_ready || !self.settings.daemon {
                self.stop_after_load_failure(slot, pid, spawner);
                return;
            }
            error_log::log(
                Level::Error,
                "ferrule",
                &format!(
                    "daemon process {slot} (pid {pid}) could not load the WSGI application (see above); trying again in {} s",
                    LOAD_RETRY_DELAY.as_secs()
                ),
            );
            if replaced_old.is_none() {
                spawner.schedule(LOAD_RETRY_DELAY, Event::Respawn { slot });
            }
            return;
        }
        let during = if lost_requests.is_empty() {
            String::new()
        } else {
            format!(" while handling {}", lost_requests.join(", "))
        };
        metrics::global().process_crashed();
        error_log::log(
            Level::Error,
            "ferrule",
            &format!(
                "{kind} process {slot} (pid {pid}) {} after {:.1} s{during}; starting a new one",
                describe_exit(status),
                child.started.elapsed().as_secs_f64()
            ),
        );
        if replaced_old.is_none() {
            spawner.schedule(RESPAWN_DELAY, Event::Respawn { slot });
        }
    }

    fn stop_after_load_failure(&mut self, slot: usize, pid: u32, spawner: &mut impl Spawner) {
        let kind = self.kind();
        error_log::log(
            Level::Error,
            "ferrule",
            &format!(
                "{kind} process {slot} (pid {pid}) could not load the WSGI application; stopping the server"
            ),
        );
        crate::logs::write_terminal(&format!(
            "ferrule: error: the WSGI application failed to load; see the error log{}\n",
            self.settings.error_log_hint
        ));
        self.exit_status = ExitStatus::AppLoadFailed;
        self.stop(spawner);
    }

    /// A daemon process connected: it loaded the application. If it replaces an old one,
    /// the old one now retires, and the next replacement may start.
    pub(super) fn on_ready(&mut self, pid: u32, spawner: &mut impl Spawner) {
        self.ever_ready = true;
        if let Some(interval) = self.settings.restart_interval {
            spawner.schedule(interval, Event::RestartDue { pid });
        }
        let Some(child) = self.table.get_mut(&pid) else {
            return;
        };
        child.loaded = true;
        let Some(old) = child.replaces.take() else {
            return;
        };
        let evicts = std::mem::take(&mut child.evicts);
        match self.settings.eviction_timeout {
            Some(timeout) if evicts => {
                self.retire_within(old, (timeout, "--eviction-timeout"), spawner);
            }
            _ => self.retire(old, spawner),
        }
        self.recycle_next(spawner);
    }

    /// Stops giving `pid` requests; it leaves once its requests are done.
    fn retire(&mut self, pid: u32, spawner: &mut impl Spawner) {
        let grace = (self.settings.graceful_timeout, "--graceful-timeout");
        self.retire_within(pid, grace, spawner);
    }

    /// `retire`, with `grace` to finish (`--graceful-timeout` or `--eviction-timeout`).
    fn retire_within(
        &mut self,
        pid: u32,
        grace: (Duration, &'static str),
        spawner: &mut impl Spawner,
    ) {
        self.set_state(pid, State::Retiring);
        if let Some(child) = self.table.get_mut(&pid) {
            child.grace = grace;
        }
        if self.settings.daemon {
            spawner.retire(pid);
            spawner.schedule(grace.0, Event::RetireDeadline { pid });
        }
    }

    /// `Event::StartupDeadline`: kills `pid` if it has not loaded the application yet.
    pub(super) fn startup_deadline(&mut self, pid: u32, spawner: &mut impl Spawner) {
        let Some(child) = self.table.get(&pid) else {
            return;
        };
        if child.loaded {
            return;
        }
        error_log::log(
            Level::Error,
            "ferrule",
            &format!(
                "daemon process {} (pid {pid}) did not load the application within --startup-timeout ({} s); killing it",
                child.slot,
                self.settings.startup_timeout.as_secs()
            ),
        );
        spawner.signal(pid, libc::SIGKILL);
    }

    /// `Event::RetireDeadline`: kills `pid` if it is still there.
    pub(super) fn retire_deadline(&mut self, pid: u32, spawner: &mut impl Spawner) {
        let Some(child) = self.table.get(&pid) else {
            return;
        };
        error_log::log(
            Level::Warn,
            "ferrule",
            &format!(
                "daemon process {} (pid {pid}) did not finish its requests within {} ({} s); killing it",
                child.slot,
                child.grace.1,
                child.grace.0.as_secs()
            ),
        );
        spawner.signal(pid, libc::SIGKILL);
    }

    /// Starts a fresh process in `slot`; the current one leaves once the new one is ready
    /// (daemon mode) or at once (embedded mode, where both share the listener).
    pub(super) fn replace(&mut self, slot: usize, spawner: &mut impl Spawner) {
        let old = self.take_current(slot);
        match self.spawn(slot, spawner) {
            Ok(new) => match old {
                Some(old) if self.settings.daemon => {
                    self.set_state(old, State::Outgoing);
                    if let Some(child) = self.table.get_mut(&new) {
                        child.replaces = Some(old);
                    }
                }
                Some(old) => spawner.signal(old, libc::SIGTERM),
                None => {}
            },
            Err(status) => {
                self.exit_status = status;
                self.stop(spawner);
            }
        }
    }

    /// The code changed: every slot gets a new daemon at once; the old ones, which the
    /// pool no longer gives requests, finish theirs and leave.
    pub(super) fn reload(&mut self, reason: &str, spawner: &mut impl Spawner) {
        if self.stopping {
            return;
        }
        error_log::log(
            Level::Info,
            "ferrule",
            &format!("{reason}; starting daemon processes with the new code"),
        );
        // Replacements under way and recycle turns are moot: everything is replaced.
        for child in self.table.values_mut() {
            child.replaces = None;
            child.recycle = None;
            if child.state == State::Outgoing {
                child.state = State::Retiring;
            }
        }
        for slot in 0..self.settings.slots {
            let old = self.take_current(slot);
            if let Err(status) = self.spawn(slot, spawner) {
                self.exit_status = status;
                self.stop(spawner);
                return;
            }
            if let Some(old) = old {
                metrics::global().process_recycled(RecycleCause::CodeChanged);
                self.retire(old, spawner);
            }
        }
    }

    /// SIGHUP: starts a fresh process for every slot, and retires the old ones as their
    /// replacements are ready. No connection is refused and no request lost.
    pub(super) fn restart(&mut self, spawner: &mut impl Spawner) {
        if self.stopping {
            return;
        }
        error_log::log(
            Level::Notice,
            "ferrule",
            &format!("restarting the {} processes gracefully", self.kind()),
        );
        for slot in 0..self.settings.slots {
            // A slot whose replacement is still starting keeps that replacement.
            let starting = self
                .current(slot)
                .and_then(|pid| self.table.get(&pid))
                .is_some_and(|child| child.replaces.is_some());
            if starting {
                continue;
            }
            if self.settings.daemon && self.current(slot).is_some() {
                metrics::global().process_recycled(RecycleCause::Signal);
            }
            self.replace(slot, spawner);
            if self.stopping {
                return;
            }
            if let Some(child) = self.current(slot).and_then(|pid| self.table.get_mut(&pid)) {
                child.evicts = child.replaces.is_some();
            }
        }
    }

    /// Stops the server: daemon mode lets the front end finish first (the daemons are let
    /// go when it is done); embedded mode asks every process to finish and leave.
    pub(super) fn stop(&mut self, spawner: &mut impl Spawner) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if self.settings.daemon {
            spawner.stop_frontend();
        } else {
            self.kill_all(libc::SIGTERM, spawner);
        }
    }

    pub(super) fn kill_all(&self, signal_number: i32, spawner: &mut impl Spawner) {
        for &pid in self.table.keys() {
            spawner.signal(pid, signal_number);
        }
    }

    /// The pids of the current processes that have loaded, in slot order.
    pub(super) fn current_loaded(&self) -> Vec<u32> {
        (0..self.settings.slots)
            .filter_map(|slot| self.current(slot))
            .filter(|pid| self.table.get(pid).is_some_and(|child| child.loaded))
            .collect()
    }

    /// Whether a replacement is under way (daemon mode: a new process not yet loaded that
    /// takes over from an old one).
    pub(super) fn replacing(&self) -> bool {
        self.table.values().any(|child| child.replaces.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    /// What the machine asked of the world.
    #[derive(Debug)]
    enum Call {
        Spawn { slot: usize, pid: u32 },
        Signal { pid: u32, signal_number: i32 },
        Schedule { delay: Duration, event: Event },
        Retire { pid: u32 },
        Forget { pid: u32 },
        StopFrontend,
    }

    /// Hands out pids from 100 up and records every call.
    struct Recorder {
        next_pid: u32,
        fail_spawns: bool,
        calls: Vec<Call>,
    }

    impl Recorder {
        fn new() -> Self {
            Self {
                next_pid: 100,
                fail_spawns: false,
                calls: Vec::new(),
            }
        }

        /// The calls since the last look.
        fn take(&mut self) -> Vec<Call> {
            std::mem::take(&mut self.calls)
        }
    }

    impl Spawner for Recorder {
        fn spawn(&mut self, slot: usize) -> Result<u32, ExitStatus> {
            if self.fail_spawns {
                return Err(ExitStatus::Failure);
            }
            let pid = self.next_pid;
            self.next_pid += 1;
            self.calls.push(Call::Spawn { slot, pid });
            Ok(pid)
        }
        fn signal(&mut self, pid: u32, signal_number: i32) {
            self.calls.push(Call::Signal { pid, signal_number });
        }
        fn schedule(&mut self, delay: Duration, event: Event) {
            self.calls.push(Call::Schedule { delay, event });
        }
        fn retire(&mut self, pid: u32) {
            self.calls.push(Call::Retire { pid });
        }
        fn forget(&mut self, pid: u32) -> Vec<String> {
            self.calls.push(Call::Forget { pid });
            Vec::new()
        }
        fn stop_frontend(&mut self) {
            self.calls.push(Call::StopFrontend);
        }
        fn expire_overdue(&mut self, _limit: Duration) -> Vec<(u32, String)> {
            Vec::new()
        }
        fn idle_for(&mut self, _pid: u32, _limit: Duration) -> bool {
            false
        }
    }

    fn settings(daemon: bool, slots: usize) -> Settings {
        Settings {
            daemon,
            slots,
            startup_timeout: Duration::from_secs(60),
            graceful_timeout: Duration::from_secs(15),
            eviction_timeout: Some(Duration::from_secs(3)),
            restart_interval: None,
            request_timeout: None,
            interrupt_timeout: None,
            inactivity_timeout: None,
            error_log_hint: String::new(),
        }
    }

    fn killed(signal_number: i32) -> ProcessStatus {
        ProcessStatus::from_raw(signal_number)
    }

    fn exited(code: i32) -> ProcessStatus {
        ProcessStatus::from_raw(code << 8)
    }

    /// Two daemon slots whose first processes (100, 101) are loaded.
    fn two_ready_daemons() -> (Children, Recorder) {
        let mut children = Children::new(settings(true, 2));
        let mut world = Recorder::new();
        children.start(&mut world);
        children.on_ready(100, &mut world);
        children.on_ready(101, &mut world);
        world.take();
        (children, world)
    }

    fn spawned(calls: &[Call]) -> Vec<(usize, u32)> {
        calls
            .iter()
            .filter_map(|call| match call {
                Call::Spawn { slot, pid } => Some((*slot, *pid)),
                _ => None,
            })
            .collect()
    }

    fn retired(calls: &[Call]) -> Vec<u32> {
        calls
            .iter()
            .filter_map(|call| match call {
                Call::Retire { pid } => Some(*pid),
                _ => None,
            })
            .collect()
    }

    fn respawns(calls: &[Call]) -> Vec<(Duration, usize)> {
        calls
            .iter()
            .filter_map(|call| match call {
                Call::Schedule {
                    delay,
                    event: Event::Respawn { slot },
                } => Some((*delay, *slot)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn start_fills_every_slot_with_a_startup_deadline() {
        let mut children = Children::new(settings(true, 2));
        let mut world = Recorder::new();
        children.start(&mut world);
        let calls = world.take();
        assert_eq!(spawned(&calls), [(0, 100), (1, 101)]);
        let deadlines: Vec<u32> = calls
            .iter()
            .filter_map(|call| match call {
                Call::Schedule {
                    event: Event::StartupDeadline { pid },
                    ..
                } => Some(*pid),
                _ => None,
            })
            .collect();
        assert_eq!(deadlines, [100, 101]);
        assert_eq!(children.current(0), Some(100));
        assert_eq!(children.get(101).map(|child| child.loaded), Some(false));
    }

    #[test]
    fn a_failed_first_spawn_stops_with_its_status() {
        let mut children = Children::new(settings(false, 2));
        let mut world = Recorder::new();
        world.fail_spawns = true;
        children.start(&mut world);
        assert!(children.stopping());
        assert_eq!(children.exit_status(), ExitStatus::Failure);
        assert!(children.is_empty());
    }

    fn retire_deadlines(calls: &[Call]) -> Vec<(Duration, u32)> {
        calls
            .iter()
            .filter_map(|call| match call {
                Call::Schedule {
                    delay,
                    event: Event::RetireDeadline { pid },
                } => Some((*delay, *pid)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_restart_signal_gives_the_old_processes_the_eviction_timeout() {
        let (mut children, mut world) = two_ready_daemons();
        children.restart(&mut world);
        world.take();
        children.on_ready(102, &mut world);
        assert_eq!(
            retire_deadlines(&world.take()),
            [(Duration::from_secs(3), 100)]
        );
        assert_eq!(
            children.get(100).map(|child| child.grace),
            Some((Duration::from_secs(3), "--eviction-timeout"))
        );
    }

    #[test]
    fn a_recycled_process_gets_the_graceful_timeout() {
        let (mut children, mut world) = two_ready_daemons();
        children.replace(0, &mut world);
        world.take();
        children.on_ready(102, &mut world);
        assert_eq!(
            retire_deadlines(&world.take()),
            [(Duration::from_secs(15), 100)]
        );
    }

    #[test]
    fn a_crash_during_replacement_leaves_the_old_process_serving() {
        let (mut children, mut world) = two_ready_daemons();
        children.restart(&mut world);
        assert_eq!(spawned(&world.take()), [(0, 102), (1, 103)]);
        assert_eq!(
            children.get(100).map(|child| child.state),
            Some(State::Outgoing)
        );
        assert_eq!(children.get(102).map(|child| child.generation), Some(1));

        children.on_exit(102, killed(libc::SIGSEGV), &mut world);
        let calls = world.take();
        // The old process is current again; nothing new starts for the slot.
        assert_eq!(children.current(0), Some(100));
        assert!(respawns(&calls).is_empty(), "{calls:?}");
        assert!(retired(&calls).is_empty(), "{calls:?}");

        // The other slot's replacement completes as usual.
        children.on_ready(103, &mut world);
        assert_eq!(retired(&world.take()), [101]);
        assert_eq!(
            children.get(101).map(|child| child.state),
            Some(State::Retiring)
        );
        assert_eq!(children.current(1), Some(103));

        // A later SIGHUP replaces the slot whose replacement died.
        children.restart(&mut world);
        assert_eq!(spawned(&world.take()), [(0, 104), (1, 105)]);
    }

    #[test]
    fn a_replacement_that_dies_after_the_process_it_replaced_is_itself_replaced() {
        // The outgoing process dies first (nothing falls back to it any more), then its
        // replacement dies before loading: the slot must not stay empty until a SIGHUP.
        let (mut children, mut world) = two_ready_daemons();
        children.restart(&mut world);
        assert_eq!(spawned(&world.take()), [(0, 102), (1, 103)]);
        children.on_exit(100, killed(libc::SIGKILL), &mut world);
        world.take();
        children.on_exit(102, killed(libc::SIGSEGV), &mut world);
        let calls = world.take();
        assert_eq!(respawns(&calls), [(RESPAWN_DELAY, 0)], "{calls:?}");
        children.respawn(0, &mut world);
        assert_eq!(spawned(&world.take()), [(0, 104)]);
        assert_eq!(children.current(0), Some(104));
    }

    #[test]
    fn sighup_during_sighup_keeps_the_replacements_under_way() {
        let (mut children, mut world) = two_ready_daemons();
        children.restart(&mut world);
        world.take();
        children.on_ready(102, &mut world);
        assert_eq!(retired(&world.take()), [100]);
        // Slot 1's replacement (103) is still starting: only slot 0 is replaced again.
        children.restart(&mut world);
        assert_eq!(spawned(&world.take()), [(0, 104)]);
        assert_eq!(
            children.get(102).map(|child| child.state),
            Some(State::Outgoing)
        );
        children.on_ready(103, &mut world);
        children.on_ready(104, &mut world);
        let mut gone = retired(&world.take());
        gone.sort_unstable();
        assert_eq!(gone, [101, 102]);
        assert_eq!(children.current(0), Some(104));
        assert_eq!(children.current(1), Some(103));
    }

    #[test]
    fn a_recycle_asked_while_retiring_starts_nothing() {
        let (mut children, mut world) = two_ready_daemons();
        children.restart(&mut world);
        world.take();
        // 100 is outgoing; its request waits for its turn, which never comes.
        children.queue_recycle(100, "reached --maximum-requests".into(), &mut world);
        assert!(spawned(&world.take()).is_empty());
        children.on_ready(102, &mut world);
        let calls = world.take();
        assert_eq!(retired(&calls), [100]);
        assert!(spawned(&calls).is_empty(), "{calls:?}");
        // Retired now, it asks again: still nothing.
        children.queue_recycle(100, "reached --maximum-requests".into(), &mut world);
        assert!(spawned(&world.take()).is_empty());
    }

    #[test]
    fn recycles_take_turns_one_replacement_at_a_time() {
        let (mut children, mut world) = two_ready_daemons();
        children.queue_recycle(100, "asked".into(), &mut world);
        children.queue_recycle(101, "asked".into(), &mut world);
        assert_eq!(spawned(&world.take()), [(0, 102)]);
        children.on_ready(102, &mut world);
        let calls = world.take();
        assert_eq!(retired(&calls), [100]);
        assert_eq!(spawned(&calls), [(1, 103)]);
    }

    #[test]
    fn the_startup_timeout_kills_only_a_process_that_has_not_loaded() {
        let mut children = Children::new(settings(true, 2));
        let mut world = Recorder::new();
        children.start(&mut world);
        children.on_ready(101, &mut world);
        world.take();
        children.startup_deadline(100, &mut world);
        children.startup_deadline(101, &mut world);
        let calls = world.take();
        assert!(
            matches!(
                calls.as_slice(),
                [Call::Signal {
                    pid: 100,
                    signal_number: libc::SIGKILL
                }]
            ),
            "{calls:?}"
        );
        // Its death is a crash like any other: the slot gets a new process.
        children.on_exit(100, killed(libc::SIGKILL), &mut world);
        assert_eq!(respawns(&world.take()), [(RESPAWN_DELAY, 0)]);
        children.respawn(0, &mut world);
        assert_eq!(spawned(&world.take()), [(0, 102)]);
        assert_eq!(children.get(102).map(|child| child.generation), Some(1));
    }

    #[test]
    fn a_process_that_never_loaded_exiting_with_3_stops_the_start_up() {
        for daemon in [true, false] {
            let mut children = Children::new(settings(daemon, 2));
            let mut world = Recorder::new();
            children.start(&mut world);
            world.take();
            children.on_exit(100, exited(ExitStatus::AppLoadFailed as i32), &mut world);
            assert!(children.stopping());
            assert_eq!(children.exit_status(), ExitStatus::AppLoadFailed);
            let calls = world.take();
            assert!(respawns(&calls).is_empty(), "{calls:?}");
            if daemon {
                assert!(
                    matches!(calls.last(), Some(Call::StopFrontend)),
                    "{calls:?}"
                );
            } else {
                assert!(
                    matches!(
                        calls.last(),
                        Some(Call::Signal {
                            pid: 101,
                            signal_number: libc::SIGTERM
                        })
                    ),
                    "{calls:?}"
                );
            }
        }
    }

    #[test]
    fn a_load_failure_after_a_success_is_retried() {
        let (mut children, mut world) = two_ready_daemons();
        children.on_exit(100, exited(ExitStatus::AppLoadFailed as i32), &mut world);
        assert!(!children.stopping());
        assert_eq!(respawns(&world.take()), [(LOAD_RETRY_DELAY, 0)]);
    }

    #[test]
    fn a_graceful_stop_while_replacing_starts_nothing_more() {
        let (mut children, mut world) = two_ready_daemons();
        children.restart(&mut world);
        world.take();
        children.stop(&mut world);
        assert!(matches!(world.take().as_slice(), [Call::StopFrontend]));
        // The replacement dies, the old ones leave: no respawn, no restart, no recycle.
        children.on_exit(102, killed(libc::SIGTERM), &mut world);
        children.restart(&mut world);
        children.respawn(0, &mut world);
        children.queue_recycle(101, "asked".into(), &mut world);
        children.on_ready(103, &mut world);
        let calls = world.take();
        assert!(spawned(&calls).is_empty(), "{calls:?}");
        assert!(respawns(&calls).is_empty(), "{calls:?}");
        for pid in [100, 101, 103] {
            children.on_exit(pid, exited(0), &mut world);
        }
        assert!(children.is_empty());
        assert_eq!(children.exit_status(), ExitStatus::Success);
    }

    #[test]
    fn embedded_mode_replaces_at_once_and_forgets_nothing_in_a_pool() {
        let mut children = Children::new(settings(false, 1));
        let mut world = Recorder::new();
        children.start(&mut world);
        children.restart(&mut world);
        let calls = world.take();
        assert_eq!(spawned(&calls), [(0, 100), (0, 101)]);
        assert!(
            matches!(
                calls.last(),
                Some(Call::Signal {
                    pid: 100,
                    signal_number: libc::SIGTERM
                })
            ),
            "{calls:?}"
        );
        children.on_exit(100, exited(0), &mut world);
        let calls = world.take();
        assert!(calls.is_empty(), "{calls:?}");
        assert_eq!(children.current(0), Some(101));
    }

    #[test]
    fn a_code_change_replaces_every_slot_and_cancels_turns() {
        let (mut children, mut world) = two_ready_daemons();
        children.restart(&mut world);
        children.queue_recycle(103, "asked".into(), &mut world);
        world.take();
        children.reload("'app.wsgi' changed", &mut world);
        let calls = world.take();
        assert_eq!(spawned(&calls), [(0, 104), (1, 105)]);
        assert_eq!(retired(&calls), [102, 103]);
        for pid in [100, 101, 102, 103] {
            assert_eq!(
                children.get(pid).map(|child| child.state),
                Some(State::Retiring)
            );
        }
        // The cancelled replacements no longer hold the recycle turns back.
        children.on_ready(104, &mut world);
        children.queue_recycle(105, "asked".into(), &mut world);
        assert_eq!(spawned(&world.take()), [(1, 106)]);
    }

    #[test]
    fn an_exit_forgets_the_pid_in_the_pool() {
        let (mut children, mut world) = two_ready_daemons();
        children.on_exit(100, exited(1), &mut world);
        let calls = world.take();
        assert!(
            matches!(calls.first(), Some(Call::Forget { pid: 100 })),
            "{calls:?}"
        );
        assert_eq!(respawns(&calls), [(RESPAWN_DELAY, 0)]);
        assert_eq!(children.current(0), None);
    }
}
