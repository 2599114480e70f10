//! `--deadlock-timeout`'s watch, as mod_wsgi does it: a thread takes the GIL once a
//! second and notes when it got it; another, which never touches Python, calls the
//! process's answer when the GIL has not been had for the timeout (a C extension that
//! holds it while it blocks). Python code that merely runs long releases the GIL every
//! switch interval, so it never trips the watch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How often the GIL is taken, and the timeout checked.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The running watch; dropping it stops both threads (before Python is finalized).
pub struct DeadlockWatch {
    stop: Arc<AtomicBool>,
    probe: Option<JoinHandle<()>>,
}

impl DeadlockWatch {
    /// Starts watching; `on_deadlock` runs once, on the watching thread, when nobody got
    /// the GIL for `timeout`.
    pub fn start(
        timeout: Duration,
        on_deadlock: Box<dyn FnOnce(Duration) + Send>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        // Milliseconds since `started` when the probe last held the GIL.
        let last_held = Arc::new(AtomicU64::new(0));
        let probe = {
            let stop = Arc::clone(&stop);
            let last_held = Arc::clone(&last_held);
            std::thread::Builder::new()
                .name("ferrule-gil-probe".to_owned())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        Python::attach(|_| {
                            last_held.store(millis_since(started), Ordering::Release);
                        });
                        // Woken early by `drop`, so that a stopping process does not wait.
                        std::thread::park_timeout(PROBE_INTERVAL);
                    }
                })?
        };
        {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("ferrule-deadlock-watch".to_owned())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        std::thread::sleep(PROBE_INTERVAL);
                        let held = Duration::from_millis(last_held.load(Ordering::Acquire));
                        let waited = started.elapsed().saturating_sub(held);
                        if waited >= timeout && !stop.load(Ordering::Acquire) {
                            on_deadlock(waited);
                            return;
                        }
                    }
                })?;
        }
        Ok(Self {
            stop,
            probe: Some(probe),
        })
    }
}

impl Drop for DeadlockWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(probe) = self.probe.take() {
            probe.thread().unpark();
            // The probe holds the GIL only for an instant: call this detached from Python.
            let _ = probe.join();
        }
    }
}

fn millis_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
