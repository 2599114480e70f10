//! Daemon mode, mod_wsgi-express's default: the application runs in daemon processes,
//! separate from the front end that speaks HTTP.
//!
//! The front end listens on a UNIX socket in the server root; each application thread of
//! each daemon process keeps one connection to it. An idle connection is a free thread,
//! so requests go only where they can start at once and wait in the front end otherwise.
//! - `protocol`: the frames on those connections (the only place that defines them).
//! - `worker`: the main of a daemon process: the WSGI executor behind those connections.
//!
//! The front end's side (the pool of idle daemon threads, forwarding requests) is
//! `frontend::daemon_pool`; starting, watching and replacing daemon processes is the
//! supervisor's job.

pub mod protocol;
pub mod worker;
