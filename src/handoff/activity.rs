//! What the application threads of one process are doing, written by the executor's
//! threads and read by the front end of the same process (embedded mode) for its metrics
//! and `--server-status`: requests waiting for a thread, how long they waited, and per
//! thread whether it is busy, since when and on which request.
//!
//! The counters are relaxed atomics; the request a thread runs is kept only when the
//! status page is on, behind a lock of that thread's own (taken by the thread once per
//! request and by a status page being drawn, never by anyone else).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::RequestId;

/// The board of one process's application threads.
pub struct ThreadActivity {
    /// The time the board's timestamps count from.
    epoch: Instant,
    /// Requests handed to the executor that no thread has taken yet.
    queued: AtomicUsize,
    queue_wait_micros: AtomicU64,
    queue_waits: AtomicU64,
    /// Whether threads write down the request they run (`--server-status`).
    record_requests: AtomicBool,
    /// Microseconds threads spent on requests that ended (`process_metrics()`).
    busy_micros: AtomicU64,
    threads: Box<[ThreadSlot]>,
}

#[derive(Default)]
struct ThreadSlot {
    /// Microseconds since the epoch, plus one, at which the current request began; 0 when
    /// the thread is idle.
    busy_since: AtomicU64,
    requests: AtomicU64,
    request: Mutex<String>,
    /// The current (or last) request's id, as bits.
    request_id: AtomicU64,
    /// The thread's Python identity (`threading.get_ident()`), once it said.
    python_thread: AtomicU64,
}

/// One thread as the status page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadState {
    /// How long the current request has run; `None` when idle.
    pub busy_for: Option<Duration>,
    /// Requests this thread has taken.
    pub requests: u64,
    /// `METHOD target` of the current request, when requests are recorded.
    pub request: String,
    /// The current request's id (meaningful while busy).
    pub request_id: RequestId,
    /// The thread's `threading.get_ident()`; 0 if it did not say.
    pub python_thread: u64,
}

impl ThreadActivity {
    pub fn new(threads: usize) -> Self {
        Self {
            epoch: Instant::now(),
            queued: AtomicUsize::new(0),
            queue_wait_micros: AtomicU64::new(0),
            queue_waits: AtomicU64::new(0),
            record_requests: AtomicBool::new(false),
            busy_micros: AtomicU64::new(0),
            threads: (0..threads).map(|_| ThreadSlot::default()).collect(),
        }
    }

    /// Makes threads write down the request they run (for the status page).
    pub fn record_requests(&self) {
        self.record_requests.store(true, Ordering::Relaxed);
    }

    /// A request was queued for the threads.
    pub fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Thread `index` says who it is to Python (`threading.get_ident()`), for the
    /// watchers that read its stack.
    pub fn set_python_thread(&self, index: usize, ident: u64) {
        if let Some(slot) = self.threads.get(index) {
            slot.python_thread.store(ident, Ordering::Relaxed);
        }
    }

    /// Thread `index` took request `request_id` queued at `queued_at`; it counts as busy
    /// until the returned guard is dropped.
    pub fn begin(
        &self,
        index: usize,
        queued_at: Instant,
        request_id: RequestId,
        method: &http::Method,
        target: &http::Uri,
    ) -> Busy<'_> {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        let now = Instant::now();
        let waited = now.saturating_duration_since(queued_at);
        self.queue_wait_micros
            .fetch_add(micros(waited), Ordering::Relaxed);
        self.queue_waits.fetch_add(1, Ordering::Relaxed);
        let slot = self.threads.get(index);
        if let Some(slot) = slot {
            if self.record_requests.load(Ordering::Relaxed) {
                let mut request = slot.request.lock().unwrap_or_else(PoisonError::into_inner);
                request.clear();
                request.push_str(method.as_str());
                request.push(' ');
                request.push_str(&target.to_string());
            }
            slot.requests.fetch_add(1, Ordering::Relaxed);
            slot.request_id
                .store(request_id.to_bits(), Ordering::Relaxed);
            slot.busy_since.store(
                micros(now.saturating_duration_since(self.epoch)) + 1,
                Ordering::Relaxed,
            );
        }
        Busy {
            slot,
            activity: self,
        }
    }

    /// Time threads spent on requests: those that ended, and so far of those running.
    pub fn busy_time(&self) -> Duration {
        let now = micros(self.epoch.elapsed()) + 1;
        let running: u64 = self
            .threads
            .iter()
            .map(|slot| match slot.busy_since.load(Ordering::Relaxed) {
                0 => 0,
                since => now.saturating_sub(since),
            })
            .sum();
        Duration::from_micros(self.busy_micros.load(Ordering::Relaxed) + running)
    }

    /// Requests waiting for a thread now.
    pub fn queue_length(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Total time requests waited for a thread, and how many waited.
    pub fn queue_wait(&self) -> (Duration, u64) {
        (
            Duration::from_micros(self.queue_wait_micros.load(Ordering::Relaxed)),
            self.queue_waits.load(Ordering::Relaxed),
        )
    }

    /// Every thread's state, in thread order.
    pub fn threads(&self) -> Vec<ThreadState> {
        let now = micros(self.epoch.elapsed()) + 1;
        let record = self.record_requests.load(Ordering::Relaxed);
        self.threads
            .iter()
            .map(|slot| {
                let since = slot.busy_since.load(Ordering::Relaxed);
                let busy_for =
                    (since != 0).then(|| Duration::from_micros(now.saturating_sub(since)));
                let request = if record && busy_for.is_some() {
                    slot.request
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone()
                } else {
                    String::new()
                };
                ThreadState {
                    busy_for,
                    requests: slot.requests.load(Ordering::Relaxed),
                    request,
                    request_id: RequestId::from_bits(slot.request_id.load(Ordering::Relaxed)),
                    python_thread: slot.python_thread.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

/// A thread busy on a request; dropping it makes the thread idle again.
pub struct Busy<'a> {
    slot: Option<&'a ThreadSlot>,
    activity: &'a ThreadActivity,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let since = slot.busy_since.swap(0, Ordering::Relaxed);
            let now = micros(self.activity.epoch.elapsed()) + 1;
            self.activity
                .busy_micros
                .fetch_add(now.saturating_sub(since), Ordering::Relaxed);
        }
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_busy_until_its_guard_drops() {
        let activity = ThreadActivity::new(2);
        activity.record_requests();
        activity.queued();
        activity.queued();
        assert_eq!(activity.queue_length(), 2);
        let target: http::Uri = "/slow?x=1".parse().unwrap();
        let id = RequestId::generate();
        let busy = activity.begin(1, Instant::now(), id, &http::Method::POST, &target);
        assert_eq!(activity.queue_length(), 1);
        let threads = activity.threads();
        assert_eq!(threads[0].busy_for, None);
        assert!(threads[1].busy_for.is_some());
        assert_eq!(threads[1].request, "POST /slow?x=1");
        assert_eq!(threads[1].requests, 1);
        assert_eq!(threads[1].request_id, id);
        std::thread::sleep(Duration::from_millis(2));
        drop(busy);
        assert_eq!(activity.threads()[1].busy_for, None);
        let busy_time = activity.busy_time();
        assert!(busy_time >= Duration::from_millis(2), "{busy_time:?}");
        assert_eq!(activity.busy_time(), busy_time, "nothing runs any more");
        assert_eq!(activity.queue_wait().1, 1);
    }
}
