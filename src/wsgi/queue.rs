//! The queue between the front end and the application threads, and the rule that
//! decides when to wake a thread.
//!
//! Python runs one thread at a time (the GIL), so waking a second application thread
//! while the first one is busy running Python only makes them take turns. A thread is
//! therefore woken at once only when none is running; when one is, the stall watch wakes
//! another only if the queue made no progress for [`STALL_DELAY`] (the running request
//! is waiting on I/O with the GIL released, a database or a sleep). Under load a busy
//! thread takes queued requests one after another without giving up the GIL.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long queued requests may see no progress before another thread is woken.
/// Short enough to be invisible next to a request that blocks; long enough that a
/// thread serving fast requests back to back is never disturbed.
const STALL_DELAY: Duration = Duration::from_micros(200);
/// How many empty checks the stall watch makes before it sleeps until the next request:
/// under steady load the queue empties and fills all the time, and waking the watch on
/// every request would cost a system call each.
const WATCH_CHECKS_BEFORE_PARKING: u32 = 50;

pub(crate) struct JobQueue<T> {
    state: Mutex<QueueState<T>>,
    /// Signalled for application threads waiting for a job.
    job_ready: Condvar,
    /// Signalled for the stall watch.
    watch_wake: Condvar,
    n_threads: usize,
}

struct QueueState<T> {
    jobs: VecDeque<T>,
    closed: bool,
    /// Application threads waiting for a job.
    idle: usize,
    /// Idle threads signalled and not yet back at work.
    woken: usize,
    /// Jobs taken so far: the stall watch's measure of progress.
    taken: u64,
    /// The stall watch sleeps until a push wakes it.
    watch_parked: bool,
}

impl<T> JobQueue<T> {
    pub(crate) fn new(n_threads: usize) -> Self {
        Self {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                closed: false,
                idle: 0,
                woken: 0,
                taken: 0,
                watch_parked: false,
            }),
            job_ready: Condvar::new(),
            watch_wake: Condvar::new(),
            n_threads,
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job`; gives it back once the queue is closed.
    pub(crate) fn push(&self, job: T) -> Result<(), T> {
        let mut state = self.lock();
        if state.closed {
            return Err(job);
        }
        state.jobs.push_back(job);
        let wake_thread = state.idle == self.n_threads && state.woken == 0;
        if wake_thread {
            state.woken += 1;
        }
        let wake_watch = !wake_thread && state.watch_parked && state.idle > state.woken;
        drop(state);
        if wake_thread {
            self.job_ready.notify_one();
        } else if wake_watch {
            self.watch_wake.notify_one();
        }
        Ok(())
    }

    /// A queued job, without waiting.
    pub(crate) fn try_pop(&self) -> Option<T> {
        let mut state = self.lock();
        let job = state.jobs.pop_front()?;
        state.taken += 1;
        Some(job)
    }

    /// The next job, waiting for one; `None` once the queue is closed and empty.
    pub(crate) fn pop_blocking(&self) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                state.taken += 1;
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state.idle += 1;
            state = self
                .job_ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.idle -= 1;
            state.woken = state.woken.saturating_sub(1);
        }
    }

    /// Refuses new jobs; threads finish the queued ones, then `pop_blocking` returns None.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.job_ready.notify_all();
        self.watch_wake.notify_all();
    }

    /// The stall watch: runs on its own thread until the queue is closed.
    pub(crate) fn watch_for_stalls(&self) {
        let mut state = self.lock();
        let mut empty_checks = 0;
        loop {
            if state.closed {
                return;
            }
            let has_spare_thread = state.idle > state.woken;
            if state.jobs.is_empty() || !has_spare_thread {
                empty_checks += 1;
                if empty_checks >= WATCH_CHECKS_BEFORE_PARKING {
                    state.watch_parked = true;
                    state = self
                        .watch_wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                    state.watch_parked = false;
                    empty_checks = 0;
                    continue;
                }
            } else {
                empty_checks = 0;
            }
            let taken_before = state.taken;
            state = self
                .watch_wake
                .wait_timeout(state, STALL_DELAY)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            let stalled = state.taken == taken_before && !state.jobs.is_empty();
            if stalled && state.idle > state.woken {
                state.woken += 1;
                self.job_ready.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn jobs_come_out_in_order_and_close_ends_waiting() {
        let queue = JobQueue::new(1);
        queue.push(1).unwrap();
        queue.push(2).unwrap();
        assert_eq!(queue.try_pop(), Some(1));
        assert_eq!(queue.pop_blocking(), Some(2));
        queue.close();
        assert_eq!(queue.pop_blocking(), None);
        assert_eq!(queue.push(3), Err(3));
    }

    #[test]
    fn a_blocked_thread_does_not_hold_up_the_queue() {
        // Two threads; the first job blocks its thread for a long time. The second job
        // must still be served promptly by the other thread, woken by the stall watch.
        let queue = Arc::new(JobQueue::new(2));
        let watch = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || queue.watch_for_stalls())
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let queue = Arc::clone(&queue);
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    while let Some(job) = queue.pop_blocking() {
                        if job == "slow" {
                            std::thread::sleep(Duration::from_secs(2));
                        }
                        let _ = done_tx.send((job, Instant::now()));
                    }
                })
            })
            .collect();
        // Let both threads go idle first.
        while queue.lock().idle < 2 {
            std::thread::yield_now();
        }
        let start = Instant::now();
        queue.push("slow").unwrap();
        while queue.lock().taken < 1 {
            std::thread::yield_now();
        }
        queue.push("fast").unwrap();
        let (job, finished) = done_rx.recv().unwrap();
        assert_eq!(job, "fast");
        assert!(finished - start < Duration::from_secs(1));
        queue.close();
        for worker in workers {
            worker.join().unwrap();
        }
        watch.join().unwrap();
    }
}
