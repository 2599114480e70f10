//! The locks and atomics of the hand-written concurrent code (`frontend/coarse_timer.rs`,
//! `handoff/reply.rs`): std's, or loom's under `--cfg ferrule_loom`, so that `make loom` can
//! run their `loom` tests over every interleaving the memory model allows. Loom's types
//! only work inside `loom::model`: under that cfg, run only the tests named `loom`.
//!
//! The cfg is not the customary `loom`: `RUSTFLAGS` reach every crate, and tokio built
//! with `--cfg loom` leaves out `tokio::net`, which the front end needs to compile.

#[cfg(ferrule_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64};
#[cfg(ferrule_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
pub(crate) use std::sync::atomic::Ordering;
#[cfg(not(ferrule_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64};
#[cfg(not(ferrule_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
