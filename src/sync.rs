//! The locks and atomics of the hand-written concurrent code (`frontend/coarse_timer.rs`,
//! `handoff/reply.rs`): std's, or loom's under `--cfg ferrule_loom`, so that `make loom` can
//! run their `loom` tests over every interleaving the memory model allows. Loom's types
//! only work inside `loom::model`: under that cfg, run only the tests named `loom`.
//!
//! The cfg is not the customary `loom`: `RUSTFLAGS` reach every crate, and tokio built
//! with `--cfg loom` leaves out `tokio::net`, which the front end needs to compile.

#[cfg(ferrule_loom)]
pub(crate) use loom::sync::atomic::AtomicBool;
#[cfg(ferrule_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(ferrule_loom))]
pub(crate) use std::sync::atomic::AtomicBool;
pub(crate) use std::sync::atomic::Ordering;
#[cfg(not(ferrule_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// A waker that remembers it was woken, standing in for a reactor's task in loom tests.
#[cfg(all(test, ferrule_loom))]
#[derive(Default)]
pub(crate) struct WakeFlag(AtomicBool);

#[cfg(all(test, ferrule_loom))]
impl std::task::Wake for WakeFlag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[cfg(all(test, ferrule_loom))]
impl WakeFlag {
    /// Whether it was woken (since the last `take`).
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Whether it was woken since the last call; clears it.
    pub(crate) fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}
