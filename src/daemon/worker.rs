//! The main of one daemon process: loads the application into the WSGI executor, then
//! opens one connection per application thread to the front end's daemon socket and
//! serves the requests that arrive on them.
//!
//! The supervisor starts it as `python -m ferrule start-server ARGS` with
//! `FERRULE_DAEMON_SOCKET` set (read by `cli::read_environment`). A connection ends for good when the front end sends `Stop`
//! (graceful restart, recycling, shutdown); the process exits once all have ended.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pyo3::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::protocol::{self, Frame, FrameReader, Hello, ProtocolError, ResponseHead, Role};
use crate::cli::{Config, ExitStatus};
use crate::logs::{Level, error_log};
use crate::shutdown::Shutdown;
use crate::wsgi::{self, BodyReadError, BodySource, DeadlockWatch, Executor, ResponseBody};

/// Largest list response sent as one frame; bigger ones go out in chunks.
const INLINE_LIMIT: usize = 1024 * 1024;
/// Request body chunks buffered ahead of the application.
const BODY_CHANNEL_CHUNKS: usize = 4;
/// Size of the blocks read from a `wsgi.file_wrapper` file.
const FILE_BLOCK_SIZE: usize = 256 * 1024;

/// What the connection tasks of this process share.
struct Worker {
    executor: Executor,
    socket: PathBuf,
    pid: u32,
    slot: u32,
    served: AtomicU64,
    /// `--maximum-requests`; 0 for never.
    maximum_requests: u64,
    /// `--cpu-time-limit` in seconds and `--memory-limit` in bytes; 0 for none.
    cpu_time_limit: u64,
    memory_limit: u64,
    shutdown: Shutdown,
    /// Where reasons to be replaced go; the control connection sends them on.
    recycle_tx: mpsc::UnboundedSender<Frame>,
    recycle_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Frame>>>,
    /// Tell the front end which file to watch, and watch every imported file.
    reload_entry: bool,
    reload_on_changes: bool,
    /// `--send-buffer-size` and `--receive-buffer-size` of each connection; 0: the
    /// system's.
    send_buffer_size: u32,
    receive_buffer_size: u32,
    /// Why this process asked to be replaced, for the application's `process_stopping`
    /// subscribers; set by the control connection's task.
    asked_to_stop: Arc<OnceLock<&'static str>>,
}

/// How one connection ended.
enum Ended {
    /// The front end said Stop, or this process is stopping: do not reconnect.
    ForGood,
    /// The connection broke; open a new one.
    Broken,
}

/// Runs this process as the daemon process of `slot` until the front end lets it go or
/// SIGTERM.
pub fn run(py: Python<'_>, config: &Config, socket: PathBuf, slot: u32) -> ExitStatus {
    let executor = match crate::process::start_executor(py, config) {
        Ok(executor) => executor,
        Err(status) => return status,
    };
    let (recycle_tx, recycle_rx) = mpsc::unbounded_channel();
    let worker = Arc::new(Worker {
        executor,
        socket,
        pid: std::process::id(),
        slot,
        served: AtomicU64::new(0),
        maximum_requests: config.processes.maximum_requests,
        cpu_time_limit: config.processes.cpu_time_limit,
        memory_limit: config.processes.memory_limit,
        shutdown: Shutdown::new(),
        recycle_tx,
        recycle_rx: std::sync::Mutex::new(Some(recycle_rx)),
        reload_entry: config.application.reload_entry,
        reload_on_changes: config.application.reload_on_changes,
        send_buffer_size: config.processes.daemon_details.send_buffer_size,
        receive_buffer_size: config.processes.daemon_details.receive_buffer_size,
        asked_to_stop: Arc::default(),
    });
    let n_connections = config.processes.n_threads.max(1);
    let shutdown_timeout = config.processes.shutdown_timeout;
    let deadlock_timeout = config.processes.daemon_details.deadlock_timeout;
    py.detach(|| {
        let watch = DeadlockWatch::start(
            deadlock_timeout,
            Box::new(move |waited| deadlocked(slot, deadlock_timeout, waited)),
        );
        if let Err(error) = &watch {
            error_log::log(
                Level::Error,
                "ferrule",
                &format!("cannot start the --deadlock-timeout watch: {error}"),
            );
        }
        let status = serve(worker, n_connections, shutdown_timeout);
        drop(watch);
        status
    })
}

/// `--deadlock-timeout` expired: no thread could take Python's GIL, so no request can
/// finish and no graceful stop can happen. Says so and leaves at once; the supervisor
/// starts a new process in this slot (the requests running get 502).
fn deadlocked(slot: u32, timeout: Duration, waited: Duration) {
    error_log::log(
        Level::Crit,
        "ferrule",
        &format!(
            "daemon process {slot} (pid {}): no thread could take Python's GIL for {} s (--deadlock-timeout {} s): something holds it, such as a C extension that blocks without releasing it; exiting so that a new process takes over",
            std::process::id(),
            waited.as_secs(),
            timeout.as_secs()
        ),
    );
    crate::logs::close(crate::logs::CLOSE_TIMEOUT);
    // SAFETY: _exit ends the process at once, which is the point: Python cannot run.
    unsafe { libc::_exit(ExitStatus::Failure as i32) };
}

/// Applies `--send-buffer-size` and `--receive-buffer-size` to a new connection.
fn size_buffers(worker: &Worker, stream: &UnixStream) {
    let socket = socket2::SockRef::from(stream);
    if worker.send_buffer_size > 0 {
        let _ = socket.set_send_buffer_size(worker.send_buffer_size as usize);
    }
    if worker.receive_buffer_size > 0 {
        let _ = socket.set_recv_buffer_size(worker.receive_buffer_size as usize);
    }
}

fn serve(worker: Arc<Worker>, n_connections: usize, shutdown_timeout: Duration) -> ExitStatus {
    let runtime = match crate::process::new_runtime("daemon's") {
        Ok(runtime) => runtime,
        Err(status) => return status,
    };
    runtime.block_on(async {
        if let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            let stopper = worker.shutdown.clone();
            tokio::spawn(async move {
                terminate.recv().await;
                stopper.trigger();
            });
        }
        // The control connection first: it is how this process asks to be replaced.
        if let Err(error) = start_control(&worker).await {
            error_log::log(
                Level::Error,
                "ferrule",
                &format!("cannot connect to the front end's daemon socket: {error}"),
            );
            return;
        }
        let tasks: Vec<_> = (0..n_connections)
            .map(|_| tokio::spawn(connection_loop(Arc::clone(&worker))))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    let Ok(worker) = Arc::try_unwrap(worker) else {
        return ExitStatus::Success;
    };
    // mod_wsgi's reasons: a limit this process reached, else the SIGTERM or Stop of a
    // server stopping or restarting (mod_wsgi's "shutdown_signal" covers both).
    let reason = worker
        .asked_to_stop
        .get()
        .copied()
        .unwrap_or("shutdown_signal");
    crate::process::exit_now_if_stuck(
        worker.executor.stop(shutdown_timeout, reason),
        ExitStatus::Success,
    )
}

/// Opens the control connection and starts the watchers of `--cpu-time-limit` and
/// `--memory-limit`, which ask through it for this process to be replaced.
async fn start_control(worker: &Arc<Worker>) -> std::io::Result<()> {
    let mut control = UnixStream::connect(&worker.socket).await?;
    let hello = Frame::Hello(Hello {
        pid: worker.pid,
        slot: worker.slot,
        served: 0,
        role: Role::Control,
    });
    protocol::write_frame(&mut control, &hello).await?;
    if worker.reload_entry {
        if let Some(file) = worker.executor.entry_file() {
            let watch = Frame::Watch(file.to_string_lossy().into_owned());
            protocol::write_frame(&mut control, &watch).await?;
        }
    }
    let limits_tx = worker.recycle_tx.clone();
    if worker.reload_on_changes {
        let changes_tx = limits_tx.clone();
        crate::wsgi::watch_imported_files(Box::new(move |reason| {
            let _ = changes_tx.send(Frame::CodeChanged(reason));
        }));
    }
    let Some(mut limits_rx) = worker
        .recycle_rx
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    else {
        return Ok(());
    };
    if worker.cpu_time_limit > 0 {
        watch_cpu_time(worker.cpu_time_limit, limits_tx.clone())?;
    }
    if worker.memory_limit > 0 {
        let limit = worker.memory_limit;
        let limits_tx = limits_tx.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticks.tick().await;
                if let Some(rss) = wsgi::resident_bytes() {
                    if rss > limit {
                        let _ = limits_tx.send(Frame::Recycle(format!(
                            "uses {rss} bytes of memory, more than --memory-limit ({limit})"
                        )));
                        return;
                    }
                }
            }
        });
    }
    drop(limits_tx);
    let asked_to_stop = Arc::clone(&worker.asked_to_stop);
    tokio::spawn(async move {
        // Kept open for the life of the process: its end tells the front end we are gone.
        while let Some(frame) = limits_rx.recv().await {
            if let Some(reason) = shutdown_reason(&frame) {
                let _ = asked_to_stop.set(reason);
            }
            if protocol::write_frame(&mut control, &frame).await.is_err() {
                return;
            }
        }
        std::future::pending::<()>().await;
    });
    Ok(())
}

/// The `shutdown_reason` mod_wsgi gives for a request to be replaced.
fn shutdown_reason(frame: &Frame) -> Option<&'static str> {
    match frame {
        Frame::Recycle(reason) => Some(if reason.contains("--maximum-requests") {
            "maximum_requests"
        } else if reason.contains("--cpu-time-limit") {
            "cpu_time_limit"
        } else {
            // --memory-limit: mod_wsgi has no such reason; ours names the option.
            "memory_limit"
        }),
        Frame::CodeChanged(_) => Some("script_reload"),
        _ => None,
    }
}

/// Sets the CPU time limit; the kernel's SIGXCPU when it is reached becomes a request
/// to be replaced (by default SIGXCPU would kill the process mid-request).
fn watch_cpu_time(seconds: u64, limits_tx: mpsc::UnboundedSender<Frame>) -> std::io::Result<()> {
    let mut xcpu =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXCPU))?;
    let limit = libc::rlimit {
        rlim_cur: seconds,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct; it has no other preconditions.
    if unsafe { libc::setrlimit(libc::RLIMIT_CPU, &raw const limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    tokio::spawn(async move {
        if xcpu.recv().await.is_some() {
            let _ = limits_tx.send(Frame::Recycle(format!(
                "used {seconds} s of CPU time, its --cpu-time-limit"
            )));
        }
    });
    Ok(())
}

/// Keeps one connection to the front end open, reconnecting when it breaks, until the
/// front end lets it go or the front end is gone.
async fn connection_loop(worker: Arc<Worker>) {
    loop {
        if worker.shutdown.is_triggered() {
            return;
        }
        let Ok(mut stream) = UnixStream::connect(&worker.socket).await else {
            // The front end is gone: nobody will send requests any more.
            worker.shutdown.trigger();
            return;
        };
        size_buffers(&worker, &stream);
        let hello = Frame::Hello(Hello {
            pid: worker.pid,
            slot: worker.slot,
            served: worker.served.load(Ordering::Relaxed),
            role: Role::Thread,
        });
        if protocol::write_frame(&mut stream, &hello).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let (reader, writer) = stream.into_split();
        match serve_connection(&worker, FrameReader::new(reader), writer).await {
            Ended::ForGood => return,
            Ended::Broken => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_connection(
    worker: &Arc<Worker>,
    reader: FrameReader<OwnedReadHalf>,
    mut writer: OwnedWriteHalf,
) -> Ended {
    let mut reader = Some(reader);
    loop {
        let Some(mut idle_reader) = reader.take() else {
            return Ended::Broken;
        };
        let frame = tokio::select! {
            frame = idle_reader.read() => frame,
            () = worker.shutdown.wait() => return Ended::ForGood,
        };
        reader = Some(idle_reader);
        let daemon_start = std::time::SystemTime::now();
        let head = match frame {
            Ok(Frame::RequestHead(head)) => head,
            Ok(Frame::Stop) => return Ended::ForGood,
            Ok(other) => {
                error_log::log(
                    Level::Error,
                    "ferrule",
                    &format!("the front end sent {other:?} where a request was expected"),
                );
                return Ended::Broken;
            }
            Err(ProtocolError::Closed) => return Ended::Broken,
            Err(error) => {
                error_log::log(Level::Error, "ferrule", &error.to_string());
                return Ended::Broken;
            }
        };
        let (body, pump): (Box<dyn BodySource>, _) = if head.has_body {
            let (chunk_tx, chunk_rx) = mpsc::channel(BODY_CHANNEL_CHUNKS);
            let Some(body_reader) = reader.take() else {
                return Ended::Broken;
            };
            let pump = tokio::spawn(pump_request_body(body_reader, chunk_tx));
            (Box::new(ChannelBody { chunk_rx }), Some(pump))
        } else {
            (Box::new(NoBody), None)
        };
        let protocol::RequestHead {
            method,
            target,
            version,
            headers,
            remote_addr,
            local_addr,
            https,
            received_at,
            request_id,
            has_body: _,
            access,
            variables,
            handler,
        } = *head;
        let request = wsgi::Request {
            method,
            target,
            version,
            headers,
            connection: wsgi::ConnectionInfo {
                remote_addr,
                local_addr,
                https,
            },
            body,
            received_at,
            daemon_start: Some(daemon_start),
            request_id,
            access,
            variables,
            handler,
        };
        let reply = worker.executor.submit(request);
        let served = worker.served.fetch_add(1, Ordering::Relaxed) + 1;
        if worker.maximum_requests > 0 && served == worker.maximum_requests {
            let _ = worker.recycle_tx.send(Frame::Recycle(format!(
                "reached --maximum-requests ({})",
                worker.maximum_requests
            )));
        }
        let written = match reply.await {
            Ok(response) => write_response(&mut writer, response).await,
            Err(_) => Err(std::io::Error::other("the executor dropped the request")),
        };
        if let Some(pump) = pump {
            match pump.await {
                Ok(Some(returned)) => reader = Some(returned),
                _ => return Ended::Broken,
            }
        }
        if written.is_err() {
            return Ended::Broken;
        }
    }
}

/// Writes the executor's response as frames.
async fn write_response(
    writer: &mut OwnedWriteHalf,
    response: wsgi::Response,
) -> std::io::Result<()> {
    let wsgi::Response {
        status,
        reason,
        headers,
        body,
    } = response;
    let head = Box::new(ResponseHead {
        status,
        reason,
        headers,
    });
    let mut out = BytesMut::with_capacity(512);
    match body {
        ResponseBody::Full(chunks) => {
            let total: usize = chunks.iter().map(Bytes::len).sum();
            if total <= INLINE_LIMIT {
                let body = match chunks.len() {
                    0 => Bytes::new(),
                    1 => chunks.into_iter().next().unwrap_or_default(),
                    _ => {
                        let mut joined = BytesMut::with_capacity(total);
                        for chunk in &chunks {
                            joined.extend_from_slice(chunk);
                        }
                        joined.freeze()
                    }
                };
                Frame::ResponseFull { head, body }.encode(&mut out);
                return writer.write_all(&out).await;
            }
            protocol::write_frame(writer, &Frame::ResponseHead(head)).await?;
            for chunk in chunks {
                protocol::write_chunk(writer, true, &chunk).await?;
            }
        }
        ResponseBody::Stream(mut chunk_rx) => {
            protocol::write_frame(writer, &Frame::ResponseHead(head)).await?;
            while let Some(item) = chunk_rx.recv().await {
                match item {
                    Ok(chunk) => protocol::write_chunk(writer, true, &chunk).await?,
                    Err(wsgi::StreamAborted) => {
                        return protocol::write_frame(writer, &Frame::ResponseAbort).await;
                    }
                }
            }
        }
        ResponseBody::File {
            file,
            offset,
            length,
        } => {
            protocol::write_frame(writer, &Frame::ResponseHead(head)).await?;
            if let Err(error) = send_file(writer, file, offset, length).await {
                error_log::log(
                    Level::Error,
                    "ferrule",
                    &format!("reading the file of a wsgi.file_wrapper response failed: {error}"),
                );
                return protocol::write_frame(writer, &Frame::ResponseAbort).await;
            }
        }
    }
    protocol::write_frame(writer, &Frame::ResponseEnd).await
}

/// Sends `length` bytes of `file` from `offset` as body chunks. The blocks are read on
/// tokio's blocking pool, two ahead of the socket: a read that waits on the disk holds up
/// this response only, not the other connections of this daemon's reactor.
async fn send_file(
    writer: &mut OwnedWriteHalf,
    file: std::fs::File,
    offset: u64,
    length: u64,
) -> std::io::Result<()> {
    let (block_tx, mut block_rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let end = offset + length;
        let mut position = offset;
        while position < end {
            let want = usize::try_from(end - position)
                .map_or(FILE_BLOCK_SIZE, |left| left.min(FILE_BLOCK_SIZE));
            let mut buffer = vec![0; want];
            let block = match file.read_at(&mut buffer, position) {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file got shorter while it was being sent",
                )),
                Ok(read) => {
                    buffer.truncate(read);
                    position += read as u64;
                    Ok(buffer)
                }
                Err(error) => Err(error),
            };
            let failed = block.is_err();
            // A closed channel: the connection broke and nobody wants the rest.
            if block_tx.blocking_send(block).is_err() || failed {
                return;
            }
        }
    });
    let mut sent = 0;
    while let Some(block) = block_rx.recv().await {
        let block = block?;
        protocol::write_chunk(writer, true, &block).await?;
        sent += block.len() as u64;
    }
    if sent < length {
        // The reader stopped early without saying why (it panicked).
        return Err(std::io::Error::other("the file's reader stopped"));
    }
    Ok(())
}

/// Reads body frames into the application's channel until the body's end, then hands the
/// reader back at a frame boundary. Keeps reading (and dropping) when the application
/// stopped reading, so that the next request starts cleanly.
async fn pump_request_body(
    mut reader: FrameReader<OwnedReadHalf>,
    chunk_tx: mpsc::Sender<Result<Bytes, BodyReadError>>,
) -> Option<FrameReader<OwnedReadHalf>> {
    loop {
        match reader.read().await {
            Ok(Frame::BodyChunk(chunk)) => {
                // A closed channel means the application is done with the body.
                let _ = chunk_tx.send(Ok(chunk)).await;
            }
            Ok(Frame::BodyEnd) => return Some(reader),
            Ok(Frame::BodyAbort) => {
                let _ = chunk_tx
                    .send(Err(BodyReadError {
                        reason: "the client closed the connection before sending the whole body"
                            .to_owned(),
                    }))
                    .await;
                return Some(reader);
            }
            Ok(_) | Err(_) => {
                let _ = chunk_tx
                    .send(Err(BodyReadError {
                        reason: "the front end's connection broke while sending the body"
                            .to_owned(),
                    }))
                    .await;
                return None;
            }
        }
    }
}

/// A request body arriving from the front end, read by an application thread.
struct ChannelBody {
    chunk_rx: mpsc::Receiver<Result<Bytes, BodyReadError>>,
}

impl BodySource for ChannelBody {
    fn read_chunk(&mut self) -> Result<Option<Bytes>, BodyReadError> {
        self.chunk_rx.blocking_recv().transpose()
    }

    fn try_read_chunk(&mut self) -> Option<Result<Option<Bytes>, BodyReadError>> {
        match self.chunk_rx.try_recv() {
            Ok(chunk) => Some(chunk.map(Some)),
            Err(mpsc::error::TryRecvError::Disconnected) => Some(Ok(None)),
            Err(mpsc::error::TryRecvError::Empty) => None,
        }
    }
}

struct NoBody;

impl BodySource for NoBody {
    fn read_chunk(&mut self) -> Result<Option<Bytes>, BodyReadError> {
        Ok(None)
    }
}
