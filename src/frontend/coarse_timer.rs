//! The timer of the connections' timeouts (`--header-timeout`): a table of deadlines swept
//! a few times a second, instead of one tokio timer per request.
//!
//! A connection arms the header timer for every request head it waits for, keep-alive
//! requests included, and drops it once the head is in. With tokio's timer that is a
//! timer-wheel insertion and removal per request, and often a write to the reactor's
//! wake-up eventfd from the reactor itself (0.39 per request in embedded hello under
//! hyper, `perf stat`). Here arming a sleep is a slot in a table under an uncontended
//! lock; a sweeper wakes the expired ones. A timeout fires up to three sweep intervals
//! (0.75 s) late under load, one when idle, and never early, which is nothing next to a timeout counted in seconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::{Mutex, MutexGuard};

/// How often expired sleeps are woken: the most a timeout fires late.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Sleeps woken by a sweeper task on the current runtime.
#[derive(Clone)]
pub(super) struct CoarseTimer {
    table: Arc<Mutex<Table>>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Tells a slot's owner from a later sleep given the same index.
    next_id: u64,
}

struct Slot {
    id: u64,
    deadline: Instant,
    waker: Waker,
}

/// Where a registered sleep sits: its slot index and its own id.
#[derive(Clone, Copy)]
struct Key {
    index: usize,
    id: u64,
}

impl CoarseTimer {
    /// Starts the sweeper on the current tokio runtime; it ends with the runtime.
    pub(super) fn start() -> Self {
        let timer = Self {
            table: Arc::default(),
        };
        let table = Arc::downgrade(&timer.table);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(table) = table.upgrade() else {
                    return;
                };
                for waker in lock(&table).take_expired(Instant::now()) {
                    waker.wake();
                }
            }
        });
        timer
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Table {
    fn insert(&mut self, deadline: Instant, waker: Waker) -> Key {
        let id = self.next_id;
        self.next_id += 1;
        let slot = Some(Slot {
            id,
            deadline,
            waker,
        });
        let index = if let Some(index) = self.free.pop() {
            self.slots[index] = slot;
            index
        } else {
            self.slots.push(slot);
            self.slots.len() - 1
        };
        Key { index, id }
    }

    /// The sleep's slot, unless the sweeper already freed it.
    fn get_mut(&mut self, key: Key) -> Option<&mut Slot> {
        self.slots[key.index]
            .as_mut()
            .filter(|slot| slot.id == key.id)
    }

    fn remove(&mut self, key: Key) {
        if self.get_mut(key).is_some() {
            self.slots[key.index] = None;
            self.free.push(key.index);
        }
    }

    /// The wakers of the sleeps whose deadline has passed; their slots are freed.
    fn take_expired(&mut self, now: Instant) -> Vec<Waker> {
        let mut expired = Vec::new();
        for (key, entry) in self.slots.iter_mut().enumerate() {
            if entry.as_ref().is_some_and(|slot| slot.deadline <= now) {
                if let Some(slot) = entry.take() {
                    expired.push(slot.waker);
                    self.free.push(key);
                }
            }
        }
        expired
    }
}

impl CoarseTimer {
    /// A future that ends `duration` from now, up to three sweeps late.
    pub(super) fn sleep(&self, duration: Duration) -> CoarseSleep {
        self.sleep_until(Instant::now() + duration)
    }

    /// A future that ends at `deadline`, up to three sweeps late.
    pub(super) fn sleep_until(&self, deadline: Instant) -> CoarseSleep {
        CoarseSleep {
            table: Arc::clone(&self.table),
            deadline,
            key: None,
        }
    }
}

/// One armed timeout: registered in the table from its first pending poll until it
/// fires or is dropped.
pub(super) struct CoarseSleep {
    table: Arc<Mutex<Table>>,
    deadline: Instant,
    key: Option<Key>,
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut table = lock(&this.table);
        match this.key {
            None => {
                this.key = Some(table.insert(this.deadline, cx.waker().clone()));
                Poll::Pending
            }
            Some(key) => {
                if let Some(slot) = table.get_mut(key) {
                    // clone_from keeps the stored waker when it already wakes the same task.
                    slot.waker.clone_from(cx.waker());
                    Poll::Pending
                } else {
                    // Only the sweeper frees a live sleep's slot: the deadline has passed.
                    this.key = None;
                    Poll::Ready(())
                }
            }
        }
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            lock(&self.table).remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_sleep_ends_after_its_deadline_and_no_later_than_a_sweep() {
        let timer = CoarseTimer::start();
        let started = Instant::now();
        timer.sleep(Duration::from_millis(100)).await;
        let slept = started.elapsed();
        assert!(slept >= Duration::from_millis(100), "{slept:?}");
        assert!(
            slept <= Duration::from_millis(100) + 3 * SWEEP_INTERVAL,
            "{slept:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropped_sleeps_free_their_slots_for_reuse() {
        let timer = CoarseTimer::start();
        for _ in 0..1000 {
            let mut sleep = std::pin::pin!(timer.sleep(Duration::from_secs(60)));
            let polled = std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
        }
        let table = lock(&timer.table);
        assert_eq!(table.slots.len(), 1);
        assert!(table.slots.iter().all(Option::is_none));
    }
}

/// Every interleaving of the sweeper with the requests' sleeps
/// (`make loom`).
#[cfg(all(test, ferrule_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::WakeFlag as Flag;

    #[test]
    fn loom_an_expired_sleep_is_woken_and_its_slot_freed_once() {
        loom::model(|| {
            let table = Arc::new(Mutex::new(Table::default()));
            let flag = Arc::new(Flag::default());
            let waker = Waker::from(Arc::clone(&flag));
            let mut sleep = Box::pin(CoarseSleep {
                table: Arc::clone(&table),
                deadline: Instant::now(),
                key: None,
            });
            let mut cx = Context::from_waker(&waker);
            assert!(sleep.as_mut().poll(&mut cx).is_pending());
            let sweeper = {
                let table = Arc::clone(&table);
                loom::thread::spawn(move || {
                    let expired = lock(&table).take_expired(Instant::now() + SWEEP_INTERVAL);
                    for waker in expired {
                        waker.wake();
                    }
                })
            };
            // The request polls again, and a later request arms its own sleep, while the
            // sweeper runs.
            let ready = sleep.as_mut().poll(&mut cx).is_ready();
            let mut later = Box::pin(CoarseSleep {
                table: Arc::clone(&table),
                deadline: Instant::now() + Duration::from_secs(60),
                key: None,
            });
            assert!(later.as_mut().poll(&mut cx).is_pending());
            sweeper.join().unwrap();
            if !ready {
                assert!(flag.is_set(), "an expired sleep was not woken");
                assert!(sleep.as_mut().poll(&mut cx).is_ready());
            }
            drop(sleep);
            {
                let table = lock(&table);
                let live = table.slots.iter().filter(|slot| slot.is_some()).count();
                assert_eq!(live, 1, "only the later sleep holds a slot");
                assert_eq!(table.free.len() + live, table.slots.len());
            }
            drop(later);
            let table = lock(&table);
            assert!(table.slots.iter().all(Option::is_none));
            let mut free = table.free.clone();
            free.sort_unstable();
            free.dedup();
            assert_eq!(free.len(), table.slots.len(), "a slot was freed twice");
        });
    }
}
