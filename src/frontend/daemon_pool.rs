//! The front end's side of daemon mode (the frames are `daemon::protocol`'s): the pool of connections daemon threads opened to
//! us, and [`DaemonPool::forward`], which hands one HTTP request to a free daemon thread
//! and turns its answer into a [`handoff::Response`].
//!
//! Each connection in the pool stands for one idle application thread of a daemon
//! process, so a request is only ever handed to a process that can start on it at once;
//! when none is idle it waits in the front end (up to `--queue-timeout`), never inside a
//! busy daemon. Requests that wait are therefore never lost when a daemon dies.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

use super::request_body::RequestBody;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use crate::daemon::protocol::{
    self, Frame, FrameReader, ProtocolError, RequestHead, ResponseHead, Role,
};
use crate::handoff::{self, ConnectionInfo, ResponseBody, StreamAborted};
use crate::logs::{Level, error_log};
use crate::shutdown::Shutdown;

/// How long a daemon has to introduce itself after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Response chunks buffered between a daemon and a slow client before the daemon is
/// made to wait.
const RESPONSE_CHANNEL_CHUNKS: usize = 4;

/// What the pool tells the supervisor.
#[derive(Debug)]
pub enum PoolEvent {
    /// A daemon process connected its first thread: it has loaded the application.
    Ready { pid: u32 },
    /// A daemon process asked to be replaced; the reason completes "daemon process N (pid
    /// P) ..." (it reached a limit).
    Recycle { pid: u32, reason: String },
    /// The application's code changed: every daemon process must be replaced; the pool
    /// already stopped giving the current ones requests.
    Reload { reason: String },
}

/// One connection from a daemon thread, idle between requests.
struct DaemonConnection {
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    pid: u32,
    slot: u32,
}

/// A request currently handed to a daemon.
struct InFlight {
    pid: u32,
    slot: u32,
    description: String,
    started: Instant,
    /// Fired to give up on the request (`--request-timeout`); taken when fired.
    expire: Option<oneshot::Sender<()>>,
}

/// A request given up on because it ran past `--request-timeout`.
#[derive(Debug)]
pub struct Overdue {
    pub pid: u32,
    pub description: String,
}

#[derive(Default)]
struct PoolState {
    /// Idle connections; the most recently used is taken first, so a lightly loaded
    /// server keeps using the threads whose caches are warm.
    idle: Vec<DaemonConnection>,
    waiters: VecDeque<oneshot::Sender<DaemonConnection>>,
    /// Daemon processes that get no new requests and are told to leave.
    retiring: HashSet<u32>,
    /// Pids seen so far (to report each one's readiness once), with their slots.
    known: HashMap<u32, u32>,
    /// Pids that asked to be replaced.
    recycling: HashSet<u32>,
    /// When each daemon last got a request; absent until its first.
    last_request: HashMap<u32, Instant>,
    in_flight: HashMap<u64, InFlight>,
    next_request_id: u64,
    /// Requests a daemon was handling when its connection broke, by pid, until the
    /// supervisor collects them for its report.
    lost: HashMap<u32, Vec<String>>,
    closed: bool,
    /// `--enable-telemetry`: the last requests that ended, oldest first, at most
    /// `RECENT_REQUESTS`; `None` (nothing kept) otherwise.
    recent: Option<VecDeque<EndedRequest>>,
}

/// How many ended requests the telemetry dashboard picks its slowest from.
const RECENT_REQUESTS: usize = 256;

/// A request a daemon finished answering (the head and body were handed over, or the
/// client left), for the telemetry dashboard.
#[derive(Clone, Debug)]
pub struct EndedRequest {
    /// `METHOD target`.
    pub description: String,
    pub pid: u32,
    /// From the hand-over to the daemon to its end.
    pub took: Duration,
    pub ended_at: std::time::SystemTime,
}

/// The pool as the status page and the metrics show it.
#[derive(Debug, Default)]
pub struct PoolStatus {
    /// Some daemon process is ready for requests.
    pub ready: bool,
    /// Requests waiting for a free daemon thread.
    pub queued: usize,
    /// The daemon processes the pool knows, by slot.
    pub processes: Vec<DaemonStatus>,
}

impl PoolStatus {
    /// Daemon threads busy on a request and waiting for one, over every process.
    pub fn busy_and_idle_threads(&self) -> (usize, usize) {
        self.processes.iter().fold((0, 0), |(busy, idle), process| {
            (busy + process.busy.len(), idle + process.idle)
        })
    }
}

/// One daemon process seen from the pool.
#[derive(Debug)]
pub struct DaemonStatus {
    pub pid: u32,
    pub slot: u32,
    /// Taking no new requests (being replaced).
    pub retiring: bool,
    /// Threads waiting for a request.
    pub idle: usize,
    /// The requests its busy threads run (`METHOD target`) and for how long, longest first.
    pub busy: Vec<(String, Duration)>,
}

/// Why no daemon thread took a request.
enum Unavailable {
    QueueTimeout,
    Closed,
}

/// The daemon threads connected to this front end.
pub struct DaemonPool {
    state: Mutex<PoolState>,
    queue_timeout: Duration,
    events: mpsc::UnboundedSender<PoolEvent>,
    /// The application's entry file, when reloading is on.
    reload_watch: Option<super::ReloadWatch>,
    /// `--ignore-activity`: URL path prefixes whose requests leave a daemon idle.
    ignore_activity: Vec<String>,
}

/// What the front end decided about a request, carried with it to the daemon thread.
pub(crate) struct Decided {
    /// What the access-control scripts must decide before the application runs.
    pub access: Option<handoff::AccessCheck>,
    /// Environ variables set last (`handoff::Request::variables`).
    pub variables: Vec<(String, String)>,
    /// The `--add-handler` script that answers instead of the application.
    pub handler: Option<handoff::HandlerTarget>,
}

/// Whether a request for `path` counts as activity for `--inactivity-timeout`: not when
/// it is below one of the `--ignore-activity` paths (a plain prefix, as Apache matches a
/// `<Location>`).
fn counts_as_activity(ignored: &[String], path: &str) -> bool {
    !ignored
        .iter()
        .any(|prefix| path.starts_with(prefix.as_str()))
}

impl DaemonPool {
    pub fn new(
        queue_timeout: Duration,
        reload_entry: bool,
        events: mpsc::UnboundedSender<PoolEvent>,
    ) -> Self {
        Self {
            state: Mutex::new(PoolState::default()),
            queue_timeout,
            events,
            reload_watch: reload_entry.then(super::ReloadWatch::new),
            ignore_activity: Vec::new(),
        }
    }

    /// Requests below these URL paths (prefixes, as Apache's `<Location>`) do not count as
    /// activity for `--inactivity-timeout` (`--ignore-activity`).
    #[must_use]
    pub fn with_ignore_activity(mut self, paths: Vec<String>) -> Self {
        self.ignore_activity = paths;
        self
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Accepts daemon threads' connections on `listener` until `shutdown`.
    pub async fn accept(self: Arc<Self>, listener: UnixListener, shutdown: Shutdown) {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        error_log::log(Level::Error, "ferrule", &format!("cannot accept a daemon connection: {error}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.wait() => return,
            };
            let pool = Arc::clone(&self);
            tokio::spawn(async move {
                let (reader, writer) = stream.into_split();
                let mut reader = FrameReader::new(reader);
                match tokio::time::timeout(HELLO_TIMEOUT, reader.read()).await {
                    Ok(Ok(Frame::Hello(hello))) if hello.role == Role::Control => {
                        pool.watch_control(hello.pid, reader).await;
                        drop(writer);
                    }
                    Ok(Ok(Frame::Hello(hello))) => {
                        let first = pool.lock().known.insert(hello.pid, hello.slot).is_none();
                        if first {
                            let _ = pool.events.send(PoolEvent::Ready { pid: hello.pid });
                        }
                        pool.checkin(DaemonConnection {
                            reader,
                            writer,
                            pid: hello.pid,
                            slot: hello.slot,
                        });
                    }
                    _ => error_log::log(
                        Level::Warn,
                        "ferrule",
                        "a connection to the daemon socket did not introduce itself; closed it",
                    ),
                }
            });
        }
    }

    /// Reads a daemon's control connection until it closes, passing its requests to be
    /// replaced on to the supervisor.
    async fn watch_control(&self, pid: u32, mut reader: FrameReader<OwnedReadHalf>) {
        while let Ok(frame) = reader.read().await {
            match frame {
                Frame::Recycle(reason) => self.recycle(pid, reason),
                Frame::Watch(path) => {
                    if let Some(watch) = &self.reload_watch {
                        watch.watch(path.into());
                    }
                }
                Frame::CodeChanged(reason) => self.reload_all(reason),
                _ => {}
            }
        }
    }

    /// Gives up on requests that have run longer than `limit`: their clients get 504.
    /// Returns them, so the supervisor can replace the processes running them.
    pub fn expire_overdue(&self, limit: Duration) -> Vec<Overdue> {
        let mut state = self.lock();
        let mut overdue = Vec::new();
        for request in state.in_flight.values_mut() {
            if request.started.elapsed() >= limit {
                if let Some(expire) = request.expire.take() {
                    let _ = expire.send(());
                    overdue.push(Overdue {
                        pid: request.pid,
                        description: request.description.clone(),
                    });
                }
            }
        }
        overdue
    }

    /// Whether `pid` served a request and has been without one for `limit`.
    pub fn idle_for(&self, pid: u32, limit: Duration) -> bool {
        let state = self.lock();
        let busy = state.in_flight.values().any(|request| request.pid == pid);
        !busy
            && state
                .last_request
                .get(&pid)
                .is_some_and(|last| last.elapsed() >= limit)
    }

    /// The code changed: no daemon running the old code gets another request; the
    /// supervisor starts new ones, and requests wait for them.
    fn reload_all(&self, reason: String) {
        let pids: Vec<u32> = self.lock().known.keys().copied().collect();
        for pid in pids {
            self.retire(pid);
        }
        let _ = self.events.send(PoolEvent::Reload { reason });
    }

    /// Stops sending requests to `pid` and tells its threads to leave as they become idle.
    pub fn retire(&self, pid: u32) {
        let stale = {
            let mut pool = self.lock();
            pool.retiring.insert(pid);
            let (leaving, staying) = std::mem::take(&mut pool.idle)
                .into_iter()
                .partition(|connection| connection.pid == pid);
            pool.idle = staying;
            leaving
        };
        for connection in stale {
            send_stop(connection);
        }
    }

    /// Fails waiting requests and tells every daemon thread to leave as it becomes idle.
    pub fn close(&self) {
        let (idle, waiters) = {
            let mut state = self.lock();
            state.closed = true;
            (
                std::mem::take(&mut state.idle),
                std::mem::take(&mut state.waiters),
            )
        };
        drop(waiters);
        for connection in idle {
            send_stop(connection);
        }
    }

    /// Forgets a daemon process that ended and returns the requests it was handling.
    pub fn forget(&self, pid: u32) -> Vec<String> {
        let mut state = self.lock();
        state.retiring.remove(&pid);
        state.known.remove(&pid);
        state.recycling.remove(&pid);
        state.last_request.remove(&pid);
        state.idle.retain(|connection| connection.pid != pid);
        let mut requests = state.lost.remove(&pid).unwrap_or_default();
        requests.extend(
            state
                .in_flight
                .values()
                .filter(|request| request.pid == pid)
                .map(|request| request.description.clone()),
        );
        requests
    }

    /// Whether some daemon process has loaded the application and takes requests: one
    /// that connected, is not being retired, and the pool is not closed.
    pub fn ready(&self) -> bool {
        let state = self.lock();
        !state.closed && state.known.keys().any(|pid| !state.retiring.contains(pid))
    }

    /// What the daemon threads are doing now, for the metrics and the status page.
    pub fn status(&self) -> PoolStatus {
        let state = self.lock();
        let mut processes: Vec<DaemonStatus> = state
            .known
            .iter()
            .map(|(&pid, &slot)| DaemonStatus {
                pid,
                slot,
                retiring: state.retiring.contains(&pid),
                idle: state
                    .idle
                    .iter()
                    .filter(|connection| connection.pid == pid)
                    .count(),
                busy: Vec::new(),
            })
            .collect();
        processes.sort_by_key(|process| (process.slot, process.pid));
        for request in state.in_flight.values() {
            let running = (request.description.clone(), request.started.elapsed());
            match processes
                .iter_mut()
                .find(|process| process.pid == request.pid)
            {
                Some(process) => process.busy.push(running),
                None => processes.push(DaemonStatus {
                    pid: request.pid,
                    slot: request.slot,
                    retiring: true,
                    idle: 0,
                    busy: vec![running],
                }),
            }
        }
        for process in &mut processes {
            process
                .busy
                .sort_by_key(|(_, running_for)| std::cmp::Reverse(*running_for));
        }
        PoolStatus {
            ready: !state.closed && state.known.keys().any(|pid| !state.retiring.contains(pid)),
            queued: state
                .waiters
                .iter()
                .filter(|waiter| !waiter.is_closed())
                .count(),
            processes,
        }
    }

    /// An idle connection, waiting up to `--queue-timeout` for one.
    async fn checkout(&self) -> Result<DaemonConnection, Unavailable> {
        let waiter = {
            let mut state = self.lock();
            while let Some(connection) = state.idle.pop() {
                if is_alive(&connection) {
                    return Ok(connection);
                }
            }
            if state.closed {
                return Err(Unavailable::Closed);
            }
            let (waiter_tx, waiter_rx) = oneshot::channel();
            state.waiters.push_back(waiter_tx);
            waiter_rx
        };
        match tokio::time::timeout(self.queue_timeout, waiter).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(_)) => Err(Unavailable::Closed),
            Err(_) => Err(Unavailable::QueueTimeout),
        }
    }

    /// Returns a connection whose request is complete.
    fn checkin(&self, mut connection: DaemonConnection) {
        let mut state = self.lock();
        if state.closed || state.retiring.contains(&connection.pid) {
            drop(state);
            send_stop(connection);
            return;
        }
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.send(connection) {
                Ok(()) => return,
                // That request gave up waiting; offer the connection to the next.
                Err(returned) => connection = returned,
            }
        }
        state.idle.push(connection);
    }

    fn begin(
        &self,
        pid: u32,
        slot: u32,
        description: String,
        activity: bool,
        expire: oneshot::Sender<()>,
    ) -> u64 {
        let mut state = self.lock();
        let id = state.next_request_id;
        state.next_request_id += 1;
        let now = Instant::now();
        if activity {
            state.last_request.insert(pid, now);
        }
        state.in_flight.insert(
            id,
            InFlight {
                pid,
                slot,
                description,
                started: now,
                expire: Some(expire),
            },
        );
        id
    }

    fn end(&self, id: u64) {
        let mut state = self.lock();
        let ended = state.in_flight.remove(&id);
        if let (Some(recent), Some(request)) = (state.recent.as_mut(), ended) {
            if recent.len() == RECENT_REQUESTS {
                recent.pop_front();
            }
            recent.push_back(EndedRequest {
                took: request.started.elapsed(),
                description: request.description,
                pid: request.pid,
                ended_at: std::time::SystemTime::now(),
            });
        }
    }

    /// Keeps the last requests that ended, for [`DaemonPool::recent_requests`]
    /// (`--enable-telemetry`).
    pub fn keep_recent_requests(&self) {
        self.lock()
            .recent
            .get_or_insert_with(|| VecDeque::with_capacity(RECENT_REQUESTS));
    }

    /// The last requests that ended, oldest first (none unless kept).
    pub fn recent_requests(&self) -> Vec<EndedRequest> {
        self.lock()
            .recent
            .as_ref()
            .map(|recent| recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The connection of request `id` broke before the daemon answered.
    fn lost(&self, id: u64) {
        let mut state = self.lock();
        if let Some(request) = state.in_flight.remove(&id) {
            state
                .lost
                .entry(request.pid)
                .or_default()
                .push(request.description);
        }
    }

    /// Asks the supervisor, once per process, to replace `pid`; until its replacement is
    /// ready it keeps taking requests.
    fn recycle(&self, pid: u32, reason: String) {
        if self.lock().recycling.insert(pid) {
            let _ = self.events.send(PoolEvent::Recycle { pid, reason });
        }
    }

    /// Hands one request to a daemon thread and returns its response.
    pub(crate) async fn forward(
        self: &Arc<Self>,
        parts: &mut http::request::Parts,
        body: RequestBody,
        connection: ConnectionInfo,
        request_id: handoff::RequestId,
        decided: Decided,
    ) -> handoff::Response {
        let Decided {
            access,
            variables,
            handler,
        } = decided;
        let changed = match &self.reload_watch {
            Some(watch) => watch.changed().await,
            None => None,
        };
        if let Some(changed) = changed {
            self.reload_all(format!("'{}' changed", changed.display()));
        }
        let has_body = !body.is_end_stream();
        let description = format!("{} {}", parts.method, parts.uri);
        let activity = counts_as_activity(&self.ignore_activity, parts.uri.path());
        let head = RequestHead {
            method: std::mem::take(&mut parts.method),
            target: std::mem::take(&mut parts.uri),
            version: parts.version,
            headers: std::mem::take(&mut parts.headers),
            remote_addr: connection.remote_addr,
            local_addr: connection.local_addr,
            https: connection.https,
            received_at: std::time::SystemTime::now(),
            request_id,
            has_body,
            access,
            variables,
            handler,
        };
        let mut encoded = BytesMut::with_capacity(512);
        Frame::RequestHead(Box::new(head)).encode(&mut encoded);
        let waited_since = Instant::now();
        let daemon = loop {
            let mut daemon = match self.checkout().await {
                Ok(daemon) => daemon,
                Err(Unavailable::QueueTimeout) => {
                    error_log::log(
                        Level::Error,
                        "ferrule",
                        &format!(
                            "no daemon thread became free for {description} within --queue-timeout ({} s); answered 503",
                            self.queue_timeout.as_secs()
                        ),
                    );
                    return handoff::error_response(
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "Every application thread stayed busy for longer than the queue timeout.",
                    );
                }
                Err(Unavailable::Closed) => {
                    return handoff::error_response(
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "The server is shutting down.",
                    );
                }
            };
            // A write to a daemon that died between requests fails at once: the request
            // was not handed over, so another thread can take it.
            if daemon.writer.write_all(&encoded).await.is_ok() {
                break daemon;
            }
            if waited_since.elapsed() > self.queue_timeout {
                return handoff::error_response(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "No application process could take the request.",
                );
            }
        };
        if error_log::verbose() {
            error_log::trace(
                Some(&connection.remote_addr.to_string()),
                &format!(
                    "request {request_id} ({description}) sent to daemon process {} (pid {})",
                    daemon.slot, daemon.pid
                ),
            );
        }
        let (expire_tx, expire_rx) = oneshot::channel();
        super::metrics::global().queue_waited(waited_since.elapsed());
        let request_id = self.begin(
            daemon.pid,
            daemon.slot,
            description.clone(),
            activity,
            expire_tx,
        );
        let (response_done_tx, response_done_rx) = oneshot::channel();
        let DaemonConnection {
            reader,
            writer,
            pid,
            slot,
        } = daemon;
        let writer = if has_body {
            WriterState::Pump(tokio::spawn(pump_request_body(
                body,
                writer,
                response_done_rx,
            )))
        } else {
            drop(body);
            WriterState::Here(writer)
        };
        // From here on, a client that leaves (this future dropped) leaves the exchange to
        // finish on its own: see `Exchange`'s drop.
        let mut exchange = Exchange {
            pool: Arc::clone(self),
            request_id,
            reader: Some(reader),
            writer: Some(writer),
            response_done: Some(response_done_tx),
            expire: Some(expire_rx),
            pid,
            slot,
        };
        match exchange.next_frame().await {
            None => {
                exchange.abandon();
                gateway_timeout()
            }
            Some(Ok(Frame::ResponseFull { head, body })) => {
                exchange.complete();
                into_response(*head, ResponseBody::Full(vec![body]))
            }
            Some(Ok(Frame::ResponseHead(head))) => {
                let (chunk_tx, chunk_rx) = mpsc::channel(RESPONSE_CHANNEL_CHUNKS);
                tokio::spawn(relay_response_body(exchange, chunk_tx));
                into_response(*head, ResponseBody::Stream(chunk_rx))
            }
            Some(Ok(other)) => {
                exchange.broken(&format!("sent {other:?} instead of a response"));
                bad_gateway()
            }
            Some(Err(error)) => {
                let reason = match error {
                    ProtocolError::Closed => "ended".to_owned(),
                    other => format!("broke ({other})"),
                };
                error_log::log(
                    Level::Error,
                    "ferrule",
                    &format!(
                        "daemon process {slot} (pid {pid}) {reason} while handling {description} from {}; answered 502",
                        connection.remote_addr
                    ),
                );
                self.lost(request_id);
                exchange.abandon();
                bad_gateway()
            }
        }
    }
}

fn gateway_timeout() -> handoff::Response {
    handoff::error_response(
        http::StatusCode::GATEWAY_TIMEOUT,
        "The application took longer than the request timeout to answer.",
    )
}

fn bad_gateway() -> handoff::Response {
    handoff::error_response(
        http::StatusCode::BAD_GATEWAY,
        "The application process handling this request ended before it answered; the error log says why.",
    )
}

fn into_response(head: ResponseHead, body: ResponseBody) -> handoff::Response {
    handoff::Response {
        status: head.status,
        reason: head.reason,
        headers: head.headers,
        body,
    }
}

/// The write half of a request's connection: here, or with the task sending the body.
enum WriterState {
    Here(OwnedWriteHalf),
    Pump(tokio::task::JoinHandle<Option<OwnedWriteHalf>>),
}

/// One request handed to a daemon thread, from the hand-over until its connection is back
/// in the pool ([`Exchange::complete`]) or closed ([`Exchange::abandon`]); the request
/// counts as in flight exactly that long.
///
/// Dropped before either (the client left while the daemon still runs the request), it
/// goes on in a task of its own: the daemon's answer is read and thrown away, so the
/// request stays counted while it runs (and `--request-timeout` still applies to it) and
/// is forgotten when it ends, and the connection returns to the pool.
struct Exchange {
    pool: Arc<DaemonPool>,
    request_id: u64,
    /// `None` once the exchange is over.
    reader: Option<FrameReader<OwnedReadHalf>>,
    writer: Option<WriterState>,
    response_done: Option<oneshot::Sender<()>>,
    /// Fires when the request ran past `--request-timeout`.
    expire: Option<oneshot::Receiver<()>>,
    pid: u32,
    slot: u32,
}

impl Exchange {
    /// The daemon's next frame; `None` when the request ran past `--request-timeout`.
    async fn next_frame(&mut self) -> Option<Result<Frame, ProtocolError>> {
        let Some(reader) = self.reader.as_mut() else {
            return Some(Err(ProtocolError::Closed));
        };
        match self.expire.as_mut() {
            Some(expire) => tokio::select! {
                frame = reader.read() => Some(frame),
                Ok(()) = expire => None,
            },
            None => Some(reader.read().await),
        }
    }

    /// The response is complete and the connection at a frame boundary: return it to the
    /// pool once the request body's sender has written its end.
    fn complete(&mut self) {
        self.pool.end(self.request_id);
        if let Some(done) = self.response_done.take() {
            let _ = done.send(());
        }
        let (Some(reader), Some(writer)) = (self.reader.take(), self.writer.take()) else {
            return;
        };
        let pool = Arc::clone(&self.pool);
        let (pid, slot) = (self.pid, self.slot);
        match writer {
            WriterState::Here(writer) => pool.checkin(DaemonConnection {
                reader,
                writer,
                pid,
                slot,
            }),
            WriterState::Pump(pump) => {
                tokio::spawn(async move {
                    if let Ok(Some(writer)) = pump.await {
                        pool.checkin(DaemonConnection {
                            reader,
                            writer,
                            pid,
                            slot,
                        });
                    }
                });
            }
        }
    }

    /// The connection is in an unknown state: close it (the daemon thread reconnects).
    fn abandon(&mut self) {
        self.pool.end(self.request_id);
        self.reader = None;
        if let Some(WriterState::Pump(pump)) = self.writer.take() {
            pump.abort();
        }
    }

    fn broken(&mut self, what: &str) {
        error_log::log(
            Level::Error,
            "ferrule",
            &format!(
                "daemon process {} (pid {}) {what}; closed its connection",
                self.slot, self.pid
            ),
        );
        self.abandon();
    }

    /// Reads the rest of a response nobody waits for any more, until it ends.
    async fn finish_unwatched(mut self) {
        loop {
            match self.next_frame().await {
                Some(Ok(Frame::ResponseChunk(_))) => {}
                Some(Ok(
                    Frame::ResponseFull { .. } | Frame::ResponseEnd | Frame::ResponseAbort,
                )) => {
                    self.complete();
                    return;
                }
                None => {
                    self.abandon();
                    return;
                }
                Some(Ok(other)) => {
                    self.broken(&format!("sent {other:?} where a response was expected"));
                    return;
                }
                Some(Err(_)) => {
                    self.pool.lost(self.request_id);
                    self.abandon();
                    return;
                }
            }
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.reader.is_none() {
            return;
        }
        let rest = Self {
            pool: Arc::clone(&self.pool),
            request_id: self.request_id,
            reader: self.reader.take(),
            writer: self.writer.take(),
            response_done: self.response_done.take(),
            expire: self.expire.take(),
            pid: self.pid,
            slot: self.slot,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(rest.finish_unwatched());
        } else {
            // No reactor to finish it on (the front end is stopping): forget it here.
            let mut rest = rest;
            rest.abandon();
        }
    }
}

/// Copies the daemon's streamed response body into the channel the connection reads.
async fn relay_response_body(
    mut exchange: Exchange,
    chunk_tx: mpsc::Sender<Result<Bytes, StreamAborted>>,
) {
    loop {
        let Some(frame) = exchange.next_frame().await else {
            let _ = chunk_tx.send(Err(StreamAborted)).await;
            exchange.abandon();
            return;
        };
        match frame {
            Ok(Frame::ResponseChunk(chunk)) => {
                if chunk_tx.send(Ok(chunk)).await.is_err() {
                    // The client left: closing the connection tells the daemon to stop
                    // producing (its next write fails and the application's close() runs).
                    exchange.abandon();
                    return;
                }
            }
            Ok(Frame::ResponseEnd) => {
                exchange.complete();
                return;
            }
            Ok(Frame::ResponseAbort) => {
                let _ = chunk_tx.send(Err(StreamAborted)).await;
                exchange.complete();
                return;
            }
            Ok(other) => {
                let _ = chunk_tx.send(Err(StreamAborted)).await;
                exchange.broken(&format!("sent {other:?} inside a response body"));
                return;
            }
            Err(error) => {
                error_log::log(
                    Level::Error,
                    "ferrule",
                    &format!(
                        "daemon process {} (pid {}) stopped in the middle of a response ({error}); cut the client's connection",
                        exchange.slot, exchange.pid
                    ),
                );
                let _ = chunk_tx.send(Err(StreamAborted)).await;
                exchange.pool.lost(exchange.request_id);
                exchange.abandon();
                return;
            }
        }
    }
}

/// Sends the client's request body to the daemon as it arrives, until it ends, the client
/// goes away, or the response is complete (the application did not want the rest).
/// Returns the write half at a frame boundary, or `None` if the daemon went away.
async fn pump_request_body(
    mut body: RequestBody,
    mut writer: OwnedWriteHalf,
    mut response_done: oneshot::Receiver<()>,
) -> Option<OwnedWriteHalf> {
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = &mut response_done => {
                // The connection reads what is left of the body and drops it.
                drop(body);
                protocol::write_frame(&mut writer, &Frame::BodyEnd).await.ok()?;
                return Some(writer);
            }
        };
        match frame {
            None => {
                protocol::write_frame(&mut writer, &Frame::BodyEnd)
                    .await
                    .ok()?;
                return Some(writer);
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() {
                        protocol::write_chunk(&mut writer, false, &data)
                            .await
                            .ok()?;
                    }
                }
            }
            Some(Err(error)) => {
                if error.is::<http_body_util::LengthLimitError>() {
                    error_log::log(
                        Level::Error,
                        "ferrule",
                        "a request body grew larger than --limit-request-body; the application's read of it fails",
                    );
                }
                protocol::write_frame(&mut writer, &Frame::BodyAbort)
                    .await
                    .ok()?;
                return Some(writer);
            }
        }
    }
}

/// An idle connection whose daemon died reads as end-of-file at once.
fn is_alive(connection: &DaemonConnection) -> bool {
    if connection.reader.has_buffered() {
        return false;
    }
    let mut probe = [0_u8; 1];
    matches!(
        connection.reader.get_ref().as_ref().try_read(&mut probe),
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock
    )
}

fn send_stop(mut connection: DaemonConnection) {
    tokio::spawn(async move {
        let _ = protocol::write_frame(&mut connection.writer, &Frame::Stop).await;
    });
}

#[cfg(test)]
mod tests {
    use super::counts_as_activity;

    #[test]
    fn ignored_paths_are_prefixes_as_apache_locations() {
        let ignored = vec!["/health".to_owned()];
        assert!(!counts_as_activity(&ignored, "/health"));
        assert!(!counts_as_activity(&ignored, "/health/deep"));
        assert!(!counts_as_activity(&ignored, "/healthz"));
        assert!(counts_as_activity(&ignored, "/"));
        assert!(counts_as_activity(&ignored, "/app/health"));
        assert!(counts_as_activity(&[], "/health"));
    }
}
