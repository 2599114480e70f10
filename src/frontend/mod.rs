//! The front end: accepts connections on listeners it is given and speaks HTTP with hyper.
//!
//! It never runs Python: each request is handed to a [`Backend`] (in embedded mode the
//! WSGI executor of this process, in daemon mode a daemon thread) and the response it
//! gives back is written out, with the access log line once the last byte went out.
//! Binding sockets is the supervisor's job.

mod body;
mod dispatch;
mod request_body;
mod sendfile;
mod static_files;

pub use static_files::{StaticFiles, UrlAlias};

pub(crate) use request_body::discard_unread_body;

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use hyper_util::server::graceful::GracefulShutdown;

use crate::daemon::client::DaemonPool;
use crate::logs::access_log::AccessLog;
use crate::logs::{Level, error_log};
use crate::shutdown::Shutdown;
use crate::wsgi::Executor;

/// What the front end needs to know, cut from the validated configuration.
pub struct FrontendConfig {
    /// Where access log lines go; `None` when `--access-log` is off.
    pub access_log: Option<AccessLog>,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long open connections may take to finish once a stop was asked for.
    pub shutdown_timeout: Duration,
    /// `--url-alias` directories and files (and the whole site for a static one), served
    /// before the application sees the request.
    pub static_files: StaticFiles,
}

/// Where requests go once the front end has parsed them.
#[derive(Clone)]
pub enum Backend {
    /// Embedded mode: this process's own WSGI executor.
    Embedded(Arc<Executor>),
    /// Daemon mode: a free thread of a daemon process.
    Daemon(Arc<DaemonPool>),
    /// `--application-type static`: no application; what the static files do not
    /// cover is not found.
    StaticOnly,
}

/// Serves `listener` until `shutdown` triggers, then lets open connections finish for up
/// to `config.shutdown_timeout`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<FrontendConfig>,
    backend: Backend,
    shutdown: Shutdown,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        // Head and body chunks go out in one writev, never copied into one buffer.
        .writev(true)
        .header_read_timeout(config.header_read_timeout);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
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
        let connection = crate::wsgi::ConnectionInfo {
            remote_addr,
            local_addr,
            https: false,
        };
        let file_slot = sendfile::FileSlot::default();
        let service = dispatch::Service::new(
            Arc::clone(&config),
            backend.clone(),
            connection,
            Some(file_slot.clone()),
        );
        let stream = sendfile::SendfileStream::new(stream, file_slot);
        let served = builder.serve_connection(stream, service);
        let served = graceful.watch(served);
        tokio::spawn(async move {
            // Clients that reset or time out are routine, not errors worth a log line.
            if let Err(error) = served.await {
                if error_log::enabled(Level::Debug) {
                    error_log::log(
                        Level::Debug,
                        "ferrule",
                        &format!("connection from {remote_addr} ended: {error}"),
                    );
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(config.shutdown_timeout) => {
            error_log::log(Level::Warn, "ferrule", "shutdown timeout reached with connections still open; closing them");
        }
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
