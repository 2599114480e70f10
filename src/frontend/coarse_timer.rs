//! The timer hyper uses for `--header-timeout`: a table of deadlines swept a few times a
//! second, instead of one tokio timer per request.
//!
//! hyper arms the header timer for every request head it waits for, keep-alive requests
//! included, and drops it once the head is in. With tokio's timer that is a timer-wheel
//! insertion and removal per request, and often a write to the reactor's wake-up eventfd
//! from the reactor itself (0.39 per request in embedded hello, `perf stat`). Here arming
//! a sleep is a slot in a table under an uncontended lock; a sweeper wakes the expired
//! ones. Only the sweeper reads the clock: hyper's `now()` gets the time of the last
//! sweep. A timeout fires up to three sweep intervals (0.75 s) late and never early,
//! which is nothing next to a header timeout counted in seconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};

/// How often expired sleeps are woken: the most a timeout fires late.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// A [`hyper::rt::Timer`] whose sleeps are woken by a sweeper task on the current runtime.
#[derive(Clone)]
pub(super) struct CoarseTimer {
    table: Arc<Mutex<Table>>,
    clock: Arc<CoarseClock>,
}

/// The time of the last sweep, as an offset from a fixed start, readable without a lock.
struct CoarseClock {
    start: Instant,
    nanos: AtomicU64,
}

impl CoarseClock {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            nanos: AtomicU64::new(0),
        }
    }

    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    fn advance(&self) -> Instant {
        let now = Instant::now();
        let nanos = u64::try_from(now.duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Relaxed);
        now
    }
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
            clock: Arc::new(CoarseClock::new()),
        };
        let table = Arc::downgrade(&timer.table);
        let clock = Arc::clone(&timer.clock);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(table) = table.upgrade() else {
                    return;
                };
                for waker in lock(&table).take_expired(clock.advance()) {
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

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoarseSleep {
            table: Arc::clone(&self.table),
            // A deadline reckoned from `now()` may be up to one sweep early.
            deadline: deadline + SWEEP_INTERVAL,
            key: None,
        })
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }
}

/// One armed timeout: registered in the table from its first pending poll until it
/// fires or is dropped.
struct CoarseSleep {
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

impl hyper::rt::Sleep for CoarseSleep {}

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
    use hyper::rt::Timer;

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
            let mut sleep = timer.sleep(Duration::from_secs(60));
            let polled = std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
        }
        let table = lock(&timer.table);
        assert_eq!(table.slots.len(), 1);
        assert!(table.slots.iter().all(Option::is_none));
    }
}

/// Every interleaving of the sweeper with the requests' sleeps and clock reads
/// (`make loom`).
#[cfg(all(test, ferrule_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::WakeFlag as Flag;

    #[test]
    fn loom_the_coarse_clock_never_goes_back() {
        loom::model(|| {
            let clock = Arc::new(CoarseClock::new());
            let sweeper = {
                let clock = Arc::clone(&clock);
                loom::thread::spawn(move || {
                    clock.advance();
                    clock.advance();
                })
            };
            let first = clock.now();
            let second = clock.now();
            assert!(second >= first);
            sweeper.join().unwrap();
        });
    }

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
