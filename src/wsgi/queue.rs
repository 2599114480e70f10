//! The queue between the front end and the application threads.
//!
//! Each queued request wakes one sleeping thread, if there is one. A thread that finds the
//! queue empty first yields the CPU a few times before it sleeps: on a busy core that lets
//! the front end run and queue the next request, which the thread then takes without a
//! sleep and a wake-up.
//!
//! Measured and dropped (hello, one pinned core, 32 connections): waking a second thread
//! only when the running one made no progress for 200 µs (on the theory that threads only
//! take turns on the GIL) cost 25 % more CPU per request than waking one per request.
//! `crossbeam-channel` in its place showed no gain and possibly one more system call per
//! request (docs/benchmarks.md, "Levers tried").

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// How many times a thread that found the queue empty yields before it sleeps.
const YIELDS_BEFORE_SLEEPING: u32 = 8;

pub(crate) struct JobQueue<T> {
    state: Mutex<QueueState<T>>,
    /// Signalled for application threads waiting for a job.
    job_ready: Condvar,
    /// The number of queued jobs, readable without the lock, for threads that spin.
    queued: AtomicUsize,
}

struct QueueState<T> {
    jobs: VecDeque<T>,
    closed: bool,
    /// Threads asleep waiting for a job.
    sleeping: usize,
    /// Sleeping threads signalled and not yet awake; not woken twice for one job.
    woken: usize,
}

impl<T> JobQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                closed: false,
                sleeping: 0,
                woken: 0,
            }),
            job_ready: Condvar::new(),
            queued: AtomicUsize::new(0),
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
        self.queued.store(state.jobs.len(), Ordering::Release);
        let wake = state.sleeping > state.woken;
        if wake {
            state.woken += 1;
        }
        drop(state);
        if wake {
            self.job_ready.notify_one();
        }
        Ok(())
    }

    /// A queued job, without waiting.
    pub(crate) fn try_pop(&self) -> Option<T> {
        if self.queued.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.take(&mut self.lock())
    }

    fn take(&self, state: &mut QueueState<T>) -> Option<T> {
        let job = state.jobs.pop_front()?;
        self.queued.store(state.jobs.len(), Ordering::Release);
        Some(job)
    }

    /// The next job, waiting for one; `None` once the queue is closed and empty.
    pub(crate) fn pop_blocking(&self) -> Option<T> {
        for _ in 0..YIELDS_BEFORE_SLEEPING {
            if let Some(job) = self.try_pop() {
                return Some(job);
            }
            std::thread::yield_now();
        }
        let mut state = self.lock();
        loop {
            if let Some(job) = self.take(&mut state) {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state.sleeping += 1;
            state = self
                .job_ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.sleeping -= 1;
            state.woken = state.woken.saturating_sub(1);
        }
    }

    /// Refuses new jobs; threads finish the queued ones, then `pop_blocking` returns None.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.job_ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn jobs_come_out_in_order_and_close_ends_waiting() {
        let queue = JobQueue::new();
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
        let queue = Arc::new(JobQueue::new());
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
        let start = Instant::now();
        queue.push("slow").unwrap();
        while queue.queued.load(Ordering::Acquire) > 0 {
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
    }
}
