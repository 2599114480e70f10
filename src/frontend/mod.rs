//! The front end: accepts connections on listeners it is given and speaks HTTP/1 over
//! them (`connection/`, on the parser of `http1/`), in the clear or over TLS (each TLS
//! handshake runs in its connection's own task, within `--header-timeout`), and HTTP/2
//! with `--http2` (`http2.rs`: h2 chosen by ALPN, h2c by the preface).
//!
//! It never runs Python: each request is handed to a [`Backend`] (in embedded mode the
//! WSGI executor of this process, in daemon mode a daemon thread) and the response it
//! gives back is written out, with the access log line once the last byte went out.
//! Binding sockets is the supervisor's job.

mod body;
mod coarse_timer;
mod compression;
mod connection;
mod daemon_pool;
mod directory_listing;
mod dispatch;
mod error_documents;
mod gateway;
pub mod http1;
mod http2;
pub mod metrics;
mod operations;
mod reload_watch;
mod request_body;
mod request_checks;
mod sendfile;
mod static_files;
pub mod telemetry;
mod timeouts;

pub use daemon_pool::{DaemonPool, PoolEvent};
pub use error_documents::ErrorDocuments;
pub use gateway::{GatewayKind, GatewayTarget, Gateways};
pub use operations::Operations;
pub use reload_watch::ReloadWatch;
pub use static_files::{Site, StaticFiles, UrlAlias};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::handoff::InProcessExecutor;
use crate::logs::access_log::AccessLog;
use crate::logs::{Level, error_log};
use crate::shutdown::Shutdown;

/// What the front end needs to know, cut from the validated configuration.
pub struct FrontendConfig {
    /// Where access log lines go; `None` when `--access-log` is off.
    pub access_log: Option<AccessLog>,
    /// How long a client may take to send a request, to come back between requests, and
    /// to take the response.
    pub timeouts: crate::client_timeouts::ClientTimeouts,
    /// `--limit-request-body`: the largest request body accepted; `None` for any size.
    pub limit_request_body: Option<u64>,
    /// `--request-buffer-size`: body bytes read before the request goes to a backend.
    pub request_buffer_size: usize,
    /// `--response-buffer-size`: response bytes taken from the application ahead of a
    /// slow client.
    pub response_buffer_size: usize,
    /// `--max-clients`: one permit per request handed to the application and not yet
    /// answered with a head (daemon mode); new connections wait in the kernel's queue
    /// while they are all taken. `None`: no bound.
    pub admission: Option<Arc<tokio::sync::Semaphore>>,
    /// How long open connections may take to finish once a stop was asked for.
    pub shutdown_timeout: Duration,
    /// `--url-alias` directories and files (and the whole site for a static one), served
    /// before the application sees the request.
    pub static_files: StaticFiles,
    /// `--error-document` and `--error-override`: error answers replaced by a URL's content.
    pub error_documents: ErrorDocuments,
    /// `--compress-responses`: text responses are encoded for clients that accept it.
    pub compress_responses: bool,
    /// `--map-head-to-get` resolved: a HEAD request reaches the application as GET.
    pub head_to_get: bool,
    /// Embedded mode with reloading on: the application's entry file, looked at before
    /// each request is handed to the executor.
    pub reload_watch: Option<Arc<ReloadWatch>>,
    /// Set once a stop began: every response then says `Connection: close`, so that
    /// keep-alive clients leave after their current request instead of racing a close.
    pub draining: AtomicBool,
    /// The access-control scripts' HTTP side; `None` when no script is configured.
    pub access: Option<crate::auth::Gate>,
    /// `--health-check-path`, `--metrics-path`, `--server-status`: answered here.
    pub operations: Operations,
    /// Virtual hosts, `--https-only`, `--hsts-policy`, client certificates, trusted
    /// proxies.
    pub front_door: crate::front_door::FrontDoor,
    /// `--with-php5` and `--with-cgi`; `None` without them.
    pub gateways: Option<Arc<Gateways>>,
    /// `--proxy-mount-point`, `--proxy-virtual-host`: requests forwarded to other HTTP
    /// servers (`crate::proxy`); `None` when nothing is proxied.
    pub proxy: Option<crate::proxy::Proxy>,
    /// `--http2`: h2 on the HTTPS listener (the TLS listener's ALPN offers it), h2c
    /// with prior knowledge on the plain one.
    pub http2: bool,
}

/// A listening socket, and the TLS it speaks if it is the HTTPS one.
pub struct Listener {
    pub socket: tokio::net::TcpListener,
    pub tls: Option<Arc<TlsListener>>,
}

impl Listener {
    /// Registers `socket` (a listening TCP socket) with this thread's reactor.
    pub fn from_std(
        socket: std::net::TcpListener,
        tls: Option<Arc<TlsListener>>,
    ) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket: tokio::net::TcpListener::from_std(socket)?,
            tls,
        })
    }
}

/// What the HTTPS listener's connections share: the files it is made from, and what
/// was read from them (swapped whole by [`TlsListener::reload`]).
pub struct TlsListener {
    files: crate::tls::TlsFiles,
    /// `--ssl-environment`.
    environment: bool,
    /// `--http2`: ALPN offers h2.
    http2: bool,
    current: std::sync::RwLock<Arc<TlsState>>,
}

/// The rustls configuration, and the `SSL_SERVER_*` variables of `--ssl-environment`.
struct TlsState {
    acceptor: tokio_rustls::TlsAcceptor,
    server_variables: Vec<(String, String)>,
}

impl TlsListener {
    /// Reads the certificate files (checked at start-up already) into a listener; with
    /// `http2` (`--http2`) its handshakes offer h2.
    pub fn load(
        files: &crate::tls::TlsFiles,
        environment: bool,
        http2: bool,
    ) -> Result<Self, crate::tls::TlsError> {
        let state = TlsState::read(files, environment, http2)?;
        Ok(Self {
            files: files.clone(),
            environment,
            http2,
            current: std::sync::RwLock::new(Arc::new(state)),
        })
    }

    /// Reads the files again, for the handshakes that follow (a graceful restart picks
    /// up a renewed certificate this way; connections already open keep theirs). The
    /// files are read on the blocking pool, never on the reactor; files that do not
    /// load leave the current certificate in place, and the error is logged.
    pub async fn reload(self: Arc<Self>) {
        let listener = Arc::clone(&self);
        let read = tokio::task::spawn_blocking(move || {
            TlsState::read(&listener.files, listener.environment, listener.http2)
        })
        .await;
        match read {
            Ok(Ok(state)) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(state);
                error_log::log(
                    Level::Info,
                    "ferrule",
                    "read the TLS certificate files again for new connections",
                );
            }
            Ok(Err(error)) => error_log::log(
                Level::Error,
                "ferrule",
                &format!("{error}; HTTPS goes on with the certificate it had"),
            ),
            Err(_) => {}
        }
    }

    fn state(&self) -> Arc<TlsState> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl TlsState {
    fn read(
        files: &crate::tls::TlsFiles,
        environment: bool,
        http2: bool,
    ) -> Result<Self, crate::tls::TlsError> {
        let tls = crate::tls::load(files, http2)?;
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config)),
            server_variables: if environment {
                crate::tls::server_variables(&tls.certificate)
            } else {
                Vec::new()
            },
        })
    }
}

/// How long, once a stop began, connections get to make one last request (answered with
/// `Connection: close`) before idle ones are closed.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Where requests go once the front end has parsed them.
#[derive(Clone)]
pub enum Backend {
    /// Embedded mode: this process's own WSGI executor.
    Embedded(Arc<dyn InProcessExecutor>),
    /// Daemon mode: a free thread of a daemon process.
    Daemon(Arc<DaemonPool>),
    /// `--application-type static`: no application; what the static files do not
    /// cover is not found.
    StaticOnly,
}

/// Serves `listener` until `shutdown` triggers, then lets open connections finish for up
/// to `config.shutdown_timeout`.
pub async fn serve(
    listener: Listener,
    config: Arc<FrontendConfig>,
    backend: Backend,
    shutdown: Shutdown,
) {
    let open_connections = Arc::new(AtomicUsize::new(0));
    let (close_idle, closing) = tokio::sync::watch::channel(false);
    let settings = Arc::new(connection::ConnectionSettings {
        timeouts: config.timeouts,
        response_buffer_size: config.response_buffer_size,
        timer: coarse_timer::CoarseTimer::start(),
        closing,
        h2c: config.http2 && listener.tls.is_none(),
    });
    loop {
        if let Some(admission) = &config.admission {
            // Every request slot taken: leave new connections in the kernel's queue.
            tokio::select! {
                free = admission.acquire() => drop(free),
                () = shutdown.wait() => break,
            }
        }
        let accepted = tokio::select! {
            accepted = listener.socket.accept() => accepted,
            () = shutdown.wait() => break,
        };
        let (stream, remote_addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                handle_accept_error(&error).await;
                continue;
            }
        };
        let Ok(local_addr) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        if crate::logs::error_log::verbose() {
            crate::logs::error_log::trace(
                Some(&remote_addr.to_string()),
                &format!("connection accepted on {local_addr}"),
            );
        }
        let info = crate::handoff::ConnectionInfo {
            remote_addr,
            local_addr,
            https: listener.tls.is_some(),
        };
        let counted = ConnectionCount::new(&open_connections);
        let settings = Arc::clone(&settings);
        let config = Arc::clone(&config);
        let backend = backend.clone();
        let accepted_at = std::time::Instant::now();
        match &listener.tls {
            None => {
                let file_slot = sendfile::FileSlot::default();
                let service =
                    dispatch::Service::new(config, backend, info, Some(file_slot.clone()), None);
                tokio::spawn(async move {
                    let _counted = counted;
                    connection::serve_connection(stream, service, file_slot, settings, accepted_at)
                        .await;
                });
            }
            Some(tls) => {
                let tls = Arc::clone(tls);
                tokio::spawn(async move {
                    let _counted = counted;
                    let Some((stream, facts)) = handshake(&tls, stream, &settings, info).await
                    else {
                        return;
                    };
                    // TLS transforms the bytes: no sendfile, so no file slot for the body.
                    let service =
                        dispatch::Service::new(config, backend, info, None, Some(Arc::new(facts)));
                    let stream = match http2::over_tls(stream, &service, &settings, accepted_at) {
                        Ok(serving) => return serving.await,
                        Err(stream) => stream,
                    };
                    let stream = connection::TlsConnection::new(stream);
                    connection::serve_connection(
                        stream,
                        service,
                        sendfile::FileSlot::default(),
                        settings,
                        accepted_at,
                    )
                    .await;
                });
            }
        }
    }
    drop(listener);
    // Busy keep-alive clients get their next answer with `Connection: close` and leave on
    // their own; only then are the idle ones closed.
    config.draining.store(true, Ordering::Release);
    let grace = DRAIN_GRACE.min(config.shutdown_timeout);
    let drain_started = tokio::time::Instant::now();
    while open_connections.load(Ordering::Relaxed) > 0 && drain_started.elapsed() < grace {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = close_idle.send(true);
    while open_connections.load(Ordering::Relaxed) > 0 {
        if drain_started.elapsed() >= config.shutdown_timeout {
            error_log::log(
                Level::Warn,
                "ferrule",
                "shutdown timeout reached with connections still open; closing them",
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The TLS handshake of a new connection, within the first `--header-timeout` allowance
/// (a client that opens a connection and says nothing is closed as on plain HTTP) and
/// until a stop closes idle connections. `None`: no TLS connection came of it (logged at
/// info level).
async fn handshake(
    tls: &TlsListener,
    stream: tokio::net::TcpStream,
    settings: &connection::ConnectionSettings,
    info: crate::handoff::ConnectionInfo,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    crate::tls::ConnectionTls,
)> {
    let state = tls.state();
    let mut closing = settings.closing.clone();
    let limit = settings.timeouts.header.map(|rule| rule.allowed(0));
    let started = std::time::Instant::now();
    // A TLS client's first byte opens a handshake record; anything else is most likely
    // plain HTTP sent to the HTTPS port, which gets an answer it can read.
    let mut first = [0_u8; 1];
    let peeked = tokio::select! {
        peeked = timeouts::within(&settings.timer, limit, stream.peek(&mut first)) => peeked,
        _ = closing.wait_for(|closing| *closing) => return None,
    };
    match peeked {
        Ok(Ok(1)) if first[0] != TLS_HANDSHAKE_RECORD => {
            answer_plain_http(stream, settings).await;
            return None;
        }
        Ok(Ok(1)) => {}
        _ => return None,
    }
    let accepting = state.acceptor.accept(stream);
    let limit = limit.map(|limit| limit.saturating_sub(started.elapsed()));
    let outcome = tokio::select! {
        outcome = timeouts::within(&settings.timer, limit, accepting) => outcome,
        _ = closing.wait_for(|closing| *closing) => return None,
    };
    let failure = match outcome {
        Ok(Ok(stream)) => {
            let facts = crate::tls::ConnectionTls::new(
                stream.get_ref().1,
                tls.environment,
                &state.server_variables,
            );
            return Some((stream, facts));
        }
        Ok(Err(error)) => format!("TLS handshake failed: {error}"),
        Err(timeouts::TimedOut) => {
            "TLS handshake not finished within --header-timeout; closed the connection".to_owned()
        }
    };
    if error_log::enabled(Level::Info) {
        error_log::log(
            Level::Info,
            "ferrule",
            &format!("{}: {failure}", info.remote_addr),
        );
    }
    None
}

/// The content type of a TLS record that carries a handshake message (RFC 8446 5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// 400 in plain HTTP for a client that spoke plain HTTP to the HTTPS port (as Apache and
/// nginx answer it), then the connection closes.
async fn answer_plain_http(
    mut stream: tokio::net::TcpStream,
    settings: &connection::ConnectionSettings,
) {
    use tokio::io::AsyncWriteExt;
    const PAGE: &str = "<!DOCTYPE html>\n<html><head><title>400 Bad Request</title></head>\n\
        <body><h1>400 Bad Request</h1>\n<p>This port speaks HTTPS: the request came in plain \
        HTTP. Use an https:// URL.</p></body></html>\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/html; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
        PAGE.len()
    );
    let writing = stream.write_all(answer.as_bytes());
    let _ = timeouts::within(&settings.timer, settings.timeouts.write, writing).await;
    let _ = stream.shutdown().await;
    // Read what the client still sends for a moment, so that closing with unread bytes
    // does not reset the connection before the client read the answer.
    let draining = async {
        let mut sink = [0_u8; 4096];
        while matches!(
            tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await,
            Ok(1..)
        ) {}
    };
    let _ = timeouts::within(&settings.timer, Some(Duration::from_secs(1)), draining).await;
}

/// Counts a connection as open until its task ends.
struct ConnectionCount(Arc<AtomicUsize>);

impl ConnectionCount {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        metrics::global().connection_opened();
        Self(Arc::clone(open))
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics::global().connection_closed();
    }
}

/// Out of descriptors: back off instead of spinning; a connection aborted before we
/// accepted it: carry on.
async fn handle_accept_error(error: &std::io::Error) {
    if let Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) = error.raw_os_error() {
        error_log::log(
            Level::Error,
            "ferrule",
            &format!("cannot accept connections: {error}; retrying in 100 ms"),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
