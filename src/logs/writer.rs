//! The log writer: one thread per process writes the lines of the access log and those of
//! the error log that come from the reactor, so that the reactor never waits on a disk, a
//! full pipe or a slow terminal. Application threads write their own error-log lines (what
//! Python prints) directly, as under mod_wsgi: a line printed just before a crash must not
//! be lost in a queue, and those threads may wait.
//!
//! The reactor appends whole lines to a queue in memory and goes on; the thread writes
//! what has gathered in one `write` per log (pipes and terminals get pieces of at most
//! `PIPE_BUF` bytes, cut between lines, so that lines of processes sharing the pipe never
//! interleave).
//!
//! When a log is slower than the requests, the queue grows up to [`MAX_QUEUED_BYTES`]
//! (some 150,000 access-log lines); past that, lines are dropped and counted, and the
//! count goes to the error log as soon as the writer has caught up. Neither of the other
//! choices is allowed: waiting for room would block the reactor, and an unbounded queue
//! would turn a log that never drains into a process that runs out of memory.
//!
//! [`close`] (called when the process stops, through [`FlushOnExit`]) waits until the
//! queue is written, up to [`CLOSE_TIMEOUT`]; the thread then ends and later lines are
//! written by their callers directly. So are lines in a child that an application
//! `fork`ed, where the writer thread does not exist.

use std::os::fd::RawFd;

use super::rotate::LogFile;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The most bytes of lines waiting to be written, over all logs of the process.
pub(super) const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// How long a stopping process waits for its logs to take the lines still queued. A log
/// that takes this long is stuck (a FIFO nobody reads): the process stops all the same,
/// and says on the terminal how many bytes of lines were lost.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the writer, woken by a line, waits for more before it writes: lines reach
/// the disk at most this much later, and a busy process wakes the writer at most some
/// 200 times a second.
const GATHER_TIME: Duration = Duration::from_millis(5);

/// Where a log's lines go.
pub enum Destination {
    /// The process's standard output (the access log without a file).
    Stdout,
    /// The process's standard error (`--log-to-terminal`, and before start-up finished).
    Stderr,
    /// A file opened for appending by name; several processes may share it, and it can
    /// be rotated and reopened (`rotate.rs`).
    File(LogFile),
}

impl Destination {
    fn raw_fd(&self) -> RawFd {
        match self {
            Destination::Stdout => libc::STDOUT_FILENO,
            Destination::Stderr => libc::STDERR_FILENO,
            Destination::File(file) => file.raw_fd(),
        }
    }
}

/// A log registered with the writer, named by its place in the queue.
#[derive(Clone, Copy, Debug)]
pub(super) struct LogId(usize);

/// Waits for the logs to be written when dropped: hold one in `main` so that no line is
/// lost when the process stops.
pub struct FlushOnExit;

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        close(CLOSE_TIMEOUT);
    }
}

/// Registers a log; its lines go through the writer thread from now on.
pub(super) fn register(destination: Destination, name: &'static str) -> LogId {
    let writer = writer();
    let fd = destination.raw_fd();
    let mut queue = writer.lock();
    queue.logs.push(QueuedLog {
        log: Arc::new(Log::new(destination, name)),
        text: Vec::new(),
        dropped_lines: 0,
    });
    let index = queue.logs.len() - 1;
    if let Some(forked_fd) = FORKED_FDS.get(index) {
        forked_fd.store(fd, Ordering::Relaxed);
    }
    LogId(index)
}

/// Writes `text` (whole lines, each ending in `\n`) to the log `id`: queued when the
/// caller is a thread that must not wait (the reactor, or tokio's blocking pool beside
/// it), written at once by any other. An application thread thus writes what it prints
/// itself, as under mod_wsgi, and a line printed just before a crash is in the log.
pub(super) fn write(id: LogId, text: &[u8]) {
    if tokio::runtime::Handle::try_current().is_ok() {
        queue(id, text);
    } else {
        write_now(id, text);
    }
}

/// Writes `text` to the log `id` on the calling thread, after what is already queued for
/// it only in time, not in order.
fn write_now(id: LogId, text: &[u8]) {
    if FORKED.load(Ordering::Relaxed) {
        write_in_forked_child(id, text);
        return;
    }
    let log = writer()
        .lock()
        .logs
        .get(id.0)
        .map(|queued| Arc::clone(&queued.log));
    if let Some(log) = log {
        let _ = log.write_lines(text);
    }
}

/// Queues `text` (whole lines, each ending in `\n`) for the log `id`. Never waits on the
/// log: a full queue drops the text and counts its lines.
pub(super) fn queue(id: LogId, text: &[u8]) {
    if FORKED.load(Ordering::Relaxed) {
        write_in_forked_child(id, text);
        return;
    }
    let writer = writer();
    let mut queue = writer.lock();
    match queue.push(id, text) {
        Pushed::Queued { wake_writer } => {
            drop(queue);
            if wake_writer {
                writer.work.notify_one();
            }
        }
        Pushed::Dropped => {}
        Pushed::Direct(log) => {
            drop(queue);
            let _ = log.write_lines(text);
        }
    }
}

/// The writer thread was not copied into a forked child, and its lock may have been
/// copied held: the child writes directly, without taking it.
fn write_in_forked_child(id: LogId, text: &[u8]) {
    if let Some(fd) = FORKED_FDS.get(id.0).map(|fd| fd.load(Ordering::Relaxed)) {
        if fd >= 0 {
            let _ = write_fd(fd, text);
        }
    }
}

/// Waits until every queued line is written (or `timeout` passed), then ends the writer
/// thread; lines written later go straight to their logs. Called when the process stops.
pub fn close(timeout: Duration) {
    let Some(writer) = WRITER.get() else {
        return;
    };
    if FORKED.load(Ordering::Relaxed) {
        return;
    }
    let deadline = Instant::now() + timeout;
    let mut queue = writer.lock();
    queue.closing = true;
    writer.work.notify_one();
    while !queue.direct {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let unwritten = queue.queued_bytes;
            drop(queue);
            super::write_terminal(&format!(
                "ferrule: warning: the logs did not take their last {unwritten} bytes of lines \
                 within {} s; they are lost\n",
                timeout.as_secs()
            ));
            return;
        }
        queue = writer
            .written
            .wait_timeout(queue, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    drop(queue);
    let thread = writer
        .thread
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(thread) = thread {
        let _ = thread.join();
    }
}

/// The process's writer: the queue, the thread that empties it, and how they signal.
struct Writer {
    queue: Mutex<Queue>,
    /// The thread waits here for lines (or for `closing`).
    work: Condvar,
    /// [`close`] waits here for the queue to be empty.
    written: Condvar,
    /// The thread, joined by [`close`].
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Queue {
    logs: Vec<QueuedLog>,
    /// Bytes in every `text`, plus those the thread is writing now.
    queued_bytes: usize,
    /// The thread waits for work; the next line must wake it.
    writer_asleep: bool,
    /// [`close`] was called: write what is left, then stop.
    closing: bool,
    /// No thread (it could not start, or it stopped): callers write themselves.
    direct: bool,
}

/// What [`Queue::push`] did with a line.
enum Pushed {
    /// Queued; the writer sleeps and must be woken.
    Queued { wake_writer: bool },
    /// The queue was full: dropped, and counted.
    Dropped,
    /// There is no writer thread: the caller writes to this log itself.
    Direct(Arc<Log>),
}

impl Queue {
    fn new() -> Self {
        Self {
            logs: Vec::new(),
            queued_bytes: 0,
            writer_asleep: false,
            closing: false,
            direct: false,
        }
    }

    fn push(&mut self, id: LogId, text: &[u8]) -> Pushed {
        let Some(queued) = self.logs.get_mut(id.0) else {
            return Pushed::Dropped;
        };
        if self.direct {
            return Pushed::Direct(Arc::clone(&queued.log));
        }
        if self.queued_bytes + text.len() > MAX_QUEUED_BYTES {
            queued.dropped_lines += count_lines(text);
            return Pushed::Dropped;
        }
        queued.text.extend_from_slice(text);
        self.queued_bytes += text.len();
        // Only a sleeping writer needs a wake-up (a system call); one that is writing will
        // find the text when it comes back for more.
        let wake_writer = std::mem::take(&mut self.writer_asleep);
        Pushed::Queued { wake_writer }
    }
}

struct QueuedLog {
    log: Arc<Log>,
    /// Lines waiting for the thread.
    text: Vec<u8>,
    /// Lines dropped because the queue was full, not reported yet.
    dropped_lines: u64,
}

struct Log {
    destination: Destination,
    /// "error log", "access log": for the line that reports dropped lines.
    name: &'static str,
    /// A pipe or a terminal, where only writes of up to `PIPE_BUF` bytes are atomic.
    cut_for_pipes: bool,
}

static WRITER: OnceLock<Writer> = OnceLock::new();
/// Set in a child process made by `fork` (see [`in_forked_child`]).
static FORKED: AtomicBool = AtomicBool::new(false);
/// The descriptors of the first logs registered, for a forked child to write to without
/// the queue's lock (which the fork may have copied held); -1 where none.
static FORKED_FDS: [AtomicI32; 8] = [const { AtomicI32::new(-1) }; 8];

fn writer() -> &'static Writer {
    let writer = WRITER.get_or_init(|| {
        let writer = Writer {
            queue: Mutex::new(Queue::new()),
            work: Condvar::new(),
            written: Condvar::new(),
            thread: Mutex::new(None),
        };
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe as a
        // handler run in the child after fork must be.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_forked_child));
        }
        writer
    });
    writer.start_thread_once();
    writer
}

extern "C" fn in_forked_child() {
    FORKED.store(true, Ordering::Relaxed);
}

impl Writer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start_thread_once(&'static self) {
        static STARTED: std::sync::Once = std::sync::Once::new();
        STARTED.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("ferrule-log".to_owned())
                .spawn(move || self.run());
            match spawned {
                Ok(thread) => {
                    *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
                }
                // Without a thread the callers write themselves, as before it existed.
                Err(_) => self.lock().direct = true,
            }
        });
    }

    /// The thread: takes everything queued, writes it, reports drops, again.
    fn run(&self) {
        let mut batch: Vec<(Arc<Log>, Vec<u8>, u64)> = Vec::new();
        let mut queue = self.lock();
        loop {
            let mut slept = false;
            while queue.queued_bytes == 0 && !queue.closing {
                queue.writer_asleep = true;
                queue = self
                    .work
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                slept = true;
            }
            if slept && !queue.closing {
                // Woken by the first line of a burst: let the rest of it gather, so that a
                // busy server pays one wake-up and one write per batch rather than per line
                // (on one core the writer otherwise ran after every single line).
                drop(queue);
                std::thread::sleep(GATHER_TIME);
                queue = self.lock();
            }
            queue.writer_asleep = false;
            if queue.queued_bytes == 0 {
                // Closing, and everything is written.
                queue.direct = true;
                drop(queue);
                self.written.notify_all();
                return;
            }
            for queued in &mut queue.logs {
                if !queued.text.is_empty() || queued.dropped_lines > 0 {
                    batch.push((
                        Arc::clone(&queued.log),
                        std::mem::take(&mut queued.text),
                        std::mem::take(&mut queued.dropped_lines),
                    ));
                }
            }
            drop(queue);
            let mut written = 0;
            for (log, text, _) in &batch {
                // A full disk or a closed terminal must not take the server down; there is
                // nowhere left to report the failure to, so the lines are dropped.
                let _ = log.write_lines(text);
                written += text.len();
            }
            for (log, _, dropped_lines) in &batch {
                if *dropped_lines > 0 {
                    super::error_log::log(
                        super::Level::Warn,
                        "ferrule",
                        &format!(
                            "{dropped_lines} lines of the {} were dropped: it did not keep up \
                             with the requests ({} MiB of lines were waiting)",
                            log.name,
                            MAX_QUEUED_BYTES >> 20
                        ),
                    );
                }
            }
            queue = self.lock();
            queue.queued_bytes -= written;
            // Hand the buffers back, so that their capacity is reused.
            for (log, mut text, _) in batch.drain(..) {
                if let Some(queued) = queue
                    .logs
                    .iter_mut()
                    .find(|queued| Arc::ptr_eq(&queued.log, &log))
                {
                    if queued.text.is_empty() {
                        text.clear();
                        queued.text = text;
                    }
                }
            }
            if queue.closing {
                self.written.notify_all();
            }
        }
    }
}

impl Log {
    fn new(destination: Destination, name: &'static str) -> Self {
        // SAFETY: fstat fills a plain struct for a descriptor this process holds open.
        let is_regular_file = unsafe {
            let mut stat: libc::stat = std::mem::zeroed();
            libc::fstat(destination.raw_fd(), &raw mut stat) == 0
                && stat.st_mode & libc::S_IFMT == libc::S_IFREG
        };
        Self {
            destination,
            name,
            cut_for_pipes: !is_regular_file,
        }
    }

    /// Writes whole lines: in one piece to a file opened for appending (where the kernel
    /// keeps each write whole), in pieces of whole lines of at most `PIPE_BUF` bytes
    /// elsewhere (a longer single line goes alone).
    fn write_lines(&self, mut text: &[u8]) -> std::io::Result<()> {
        if let Destination::File(file) = &self.destination {
            file.before_write();
        }
        let fd = self.destination.raw_fd();
        if !self.cut_for_pipes {
            return write_fd(fd, text);
        }
        while !text.is_empty() {
            let end = pipe_piece_len(text);
            write_fd(fd, &text[..end])?;
            text = &text[end..];
        }
        Ok(())
    }
}

/// The length of the next piece of `text` to write to a pipe: as many whole lines as fit
/// in `PIPE_BUF` bytes, or one longer line alone.
fn pipe_piece_len(text: &[u8]) -> usize {
    if text.len() <= libc::PIPE_BUF {
        return text.len();
    }
    let after_newline = |newline| newline + 1;
    text[..libc::PIPE_BUF]
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or_else(
            || {
                text.iter()
                    .position(|&byte| byte == b'\n')
                    .map_or(text.len(), after_newline)
            },
            after_newline,
        )
}

fn write_fd(fd: RawFd, mut text: &[u8]) -> std::io::Result<()> {
    while !text.is_empty() {
        // SAFETY: `fd` belongs to a registered log, and those live as long as the process
        // (a `Destination` owns its file, or it is 1 or 2); the pointer and length
        // describe `text`.
        let written = unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
        match usize::try_from(written) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => text = &text[written..],
            Err(_) => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    Ok(())
}

// Only on the rare path of a full queue: not worth a crate.
#[allow(clippy::naive_bytecount)]
fn count_lines(text: &[u8]) -> u64 {
    text.iter().filter(|&&byte| byte == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_with_one_log() -> Queue {
        let mut queue = Queue::new();
        queue.logs.push(QueuedLog {
            log: Arc::new(Log::new(Destination::Stderr, "test log")),
            text: Vec::new(),
            dropped_lines: 0,
        });
        queue
    }

    #[test]
    fn a_full_queue_drops_lines_and_counts_them() {
        let mut queue = queue_with_one_log();
        let line = vec![b'x'; 1023]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<_>>();
        for _ in 0..MAX_QUEUED_BYTES / line.len() {
            assert!(matches!(queue.push(LogId(0), &line), Pushed::Queued { .. }));
        }
        assert!(matches!(queue.push(LogId(0), &line), Pushed::Dropped));
        assert!(matches!(queue.push(LogId(0), b"a\nb\n"), Pushed::Dropped));
        assert_eq!(queue.logs[0].dropped_lines, 3);
        assert_eq!(queue.queued_bytes, MAX_QUEUED_BYTES);
    }

    #[test]
    fn only_a_sleeping_writer_is_woken() {
        let mut queue = queue_with_one_log();
        queue.writer_asleep = true;
        assert!(matches!(
            queue.push(LogId(0), b"one\n"),
            Pushed::Queued { wake_writer: true }
        ));
        assert!(matches!(
            queue.push(LogId(0), b"two\n"),
            Pushed::Queued { wake_writer: false }
        ));
        assert_eq!(queue.logs[0].text, b"one\ntwo\n");
    }

    #[test]
    fn without_a_writer_the_caller_writes() {
        let mut queue = queue_with_one_log();
        queue.direct = true;
        assert!(matches!(queue.push(LogId(0), b"x\n"), Pushed::Direct(_)));
        assert_eq!(queue.queued_bytes, 0);
    }

    #[test]
    fn pipe_pieces_are_whole_lines_within_pipe_buf() {
        let line = [vec![b'x'; 99], vec![b'\n']].concat();
        let text = line.repeat(100);
        assert_eq!(pipe_piece_len(&text), 4000);
        assert_eq!(pipe_piece_len(&text[..500]), 500);
        let long_line = [vec![b'y'; 5000], vec![b'\n']].concat();
        let text = [long_line.clone(), line].concat();
        assert_eq!(pipe_piece_len(&text), long_line.len());
    }
}
