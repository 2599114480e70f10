//! When daemon processes are replaced although nothing went wrong: they asked (a
//! request or memory limit), ran for `--restart-interval` or sat idle for
//! `--inactivity-timeout`; or when one is replaced because a request ran past
//! `--request-timeout`. Replacements asked for take turns, one at a time, so that the
//! capacity stays up; a stuck request's process is replaced at once.

use std::collections::HashSet;
use std::time::Duration;

use super::children::{Children, Spawner, State};
use crate::frontend::metrics::{self, RecycleCause};
use crate::logs::{Level, error_log};

impl Children {
    /// Queues `pid` for replacement (once), then starts the next one if none is under way.
    pub(super) fn queue_recycle(&mut self, pid: u32, reason: String, spawner: &mut impl Spawner) {
        if let Some(child) = self.table.get_mut(&pid) {
            if child.recycle.is_none() {
                child.recycle = Some((self.next_turn, reason));
                self.next_turn += 1;
            }
        }
        self.recycle_next(spawner);
    }

    /// `Event::RestartDue`: `pid` has run for `--restart-interval`.
    pub(super) fn restart_due(&mut self, pid: u32, spawner: &mut impl Spawner) {
        let seconds = self
            .settings
            .restart_interval
            .map_or(0, |interval| interval.as_secs());
        self.queue_recycle(
            pid,
            format!("has run for --restart-interval ({seconds} s)"),
            spawner,
        );
    }

    /// Starts replacing the next daemon that asked to be recycled, unless a replacement
    /// is already under way: one process at a time keeps the capacity up. Turns of
    /// processes that are no longer current are dropped.
    pub(super) fn recycle_next(&mut self, spawner: &mut impl Spawner) {
        if self.stopping() || self.replacing() {
            return;
        }
        loop {
            let next = self
                .table
                .iter()
                .filter_map(|(&pid, child)| child.recycle.as_ref().map(|(turn, _)| (*turn, pid)))
                .min();
            let Some((_, old)) = next else {
                return;
            };
            let Some(child) = self.table.get_mut(&old) else {
                return;
            };
            let Some((_, reason)) = child.recycle.take() else {
                return;
            };
            if child.state != State::Current {
                continue;
            }
            let slot = child.slot;
            metrics::global().process_recycled(RecycleCause::from_reason(&reason));
            error_log::log(
                Level::Info,
                "ferrule",
                &format!("daemon process {slot} (pid {old}) {reason}; replacing it"),
            );
            self.replace(slot, spawner);
            return;
        }
    }

    /// How often [`Self::check`] runs: often enough for the shortest timeout.
    pub(super) fn tick_interval(&self) -> Duration {
        [
            self.settings.request_timeout,
            self.settings.inactivity_timeout,
        ]
        .into_iter()
        .flatten()
        .map(|timeout| timeout / 4)
        .fold(Duration::from_secs(1), Duration::min)
        .max(Duration::from_millis(50))
    }

    /// Enforces `--request-timeout` (504 for the request, the process replaced at once)
    /// and `--inactivity-timeout` (an idle process replaced in its turn).
    pub(super) fn check(&mut self, spawner: &mut impl Spawner) {
        if !self.settings.daemon || self.stopping() {
            return;
        }
        if let Some(request_timeout) = self.settings.request_timeout {
            // With --interrupt-timeout the daemon raises RequestTimeout in the request's
            // thread at --request-timeout and answers 504 itself if the request unwinds;
            // the front end gives up only once that grace has passed too.
            let grace = self.settings.interrupt_timeout.unwrap_or_default();
            let mut replaced = HashSet::new();
            for (pid, description) in spawner.expire_overdue(request_timeout + grace) {
                let Some(child) = self.get(pid) else {
                    continue;
                };
                let slot = child.slot;
                let limits = if grace.is_zero() {
                    format!("--request-timeout ({} s)", request_timeout.as_secs())
                } else {
                    format!(
                        "--request-timeout ({} s) and --interrupt-timeout ({} s), not unwound by the RequestTimeout raised in its thread",
                        request_timeout.as_secs(),
                        grace.as_secs()
                    )
                };
                error_log::log(
                    Level::Error,
                    "ferrule",
                    &format!(
                        "daemon process {slot} (pid {pid}) ran {description} for longer than {limits}; answered 504 and replacing the process"
                    ),
                );
                let current = self.current(slot) == Some(pid);
                if current && replaced.insert(pid) {
                    metrics::global().process_recycled(RecycleCause::RequestTimeout);
                    self.replace(slot, spawner);
                }
            }
        }
        if let Some(limit) = self.settings.inactivity_timeout {
            let idle: Vec<u32> = self
                .current_loaded()
                .into_iter()
                .filter(|pid| spawner.idle_for(*pid, limit))
                .collect();
            for pid in idle {
                self.queue_recycle(
                    pid,
                    format!(
                        "had no request for --inactivity-timeout ({} s)",
                        limit.as_secs()
                    ),
                    spawner,
                );
            }
        }
    }
}
