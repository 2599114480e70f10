//! The sockets the supervisor owns: the HTTP listener every mode serves, and in daemon
//! mode the UNIX socket daemon processes connect to; and the open-files limit that bounds
//! how many connections the server can hold.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::Config;

/// The longest path a UNIX socket address holds on Linux.
const MAX_SOCKET_PATH: usize = 107;

/// Raises the soft limit on open files to the hard limit, for this process and the ones
/// it starts: every client connection is a file descriptor, and the soft limit a login
/// shell or a service manager hands out (often 1,024) would cap the server far below what
/// the machine allows. Returns the limit now in force.
pub(super) fn raise_open_files_limit() -> u64 {
    // An unlimited hard limit cannot be the soft one: the kernel caps open files at
    // fs.nr_open. `rlimit` knows that cap on macOS only (kern.maxfilesperproc), so on
    // Linux we read it ourselves and ask for no more.
    let kernel_cap = fs_err::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(1 << 20);
    // Raising the soft limit up to the hard one needs no privilege; if it fails all the
    // same, the limit in force is the one we started with.
    rlimit::increase_nofile_limit(kernel_cap)
        .or_else(|_| rlimit::Resource::NOFILE.get().map(|(soft, _)| soft))
        .unwrap_or(0)
}

/// The HTTP listener (`--port`).
pub(super) fn bind(config: &Config) -> Result<Socket, String> {
    bind_port(config, config.server.port, "--port")
}

/// The HTTPS listener (`--https-port`), when HTTPS is served.
pub(super) fn bind_https(config: &Config) -> Result<Option<Socket>, String> {
    config
        .server
        .https
        .as_ref()
        .map(|https| bind_port(config, https.port, "--https-port"))
        .transpose()
}

fn bind_port(config: &Config, port: u16, option: &str) -> Result<Socket, String> {
    let addresses: Vec<SocketAddr> = match &config.server.host {
        None => vec![
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)),
        ],
        Some(host) => (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|error| format!("--host '{host}' cannot be resolved: {error}"))?
            .collect(),
    };
    let mut last_error = None;
    for address in &addresses {
        match bind_one(*address, config.server.server_backlog) {
            Ok(socket) => return Ok(socket),
            Err(error) => last_error = Some((address, error)),
        }
    }
    let (address, error) = last_error.ok_or_else(|| "no address to listen on".to_owned())?;
    let hint = if error.kind() == std::io::ErrorKind::AddrInUse {
        format!("\nhint: another server uses this port; stop it or choose another with {option}")
    } else {
        String::new()
    };
    Err(format!("cannot listen on {address}: {error}{hint}"))
}

fn bind_one(address: SocketAddr, backlog: u32) -> std::io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        // One socket for both families when listening everywhere, as Apache does.
        socket.set_only_v6(false)?;
    }
    socket.bind(&address.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket)
}

/// Makes (or takes back from the `--user` of an earlier run) `run/` in the server root
/// (or `--socket-prefix`'s `ferrule-PORT`), the folder of the daemon socket, open to its
/// owner only. With `--user` it is handed to
/// that user, who binds and removes the socket there; so it must be a real folder, never
/// a link to elsewhere. (Nobody else can swap it between our checks: the server root is
/// ours alone, see `cli::config`; a `--socket-prefix` directory should be too, which
/// docs/daemon-mode.md asks.)
pub(super) fn socket_directory(
    server_root: &Path,
    socket_prefix_folder: Option<&Path>,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = socket_prefix_folder.map_or_else(|| server_root.join("run"), Path::to_path_buf);
    let cannot = |error: std::io::Error| {
        format!(
            "cannot make the daemon socket's folder '{}': {error}",
            path.display()
        )
    };
    match fs_err::symlink_metadata(&path) {
        Ok(metadata) if metadata.is_dir() => {
            let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
            std::os::unix::fs::lchown(&path, Some(uid.as_raw()), Some(gid.as_raw()))
                .map_err(cannot)?;
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                .map_err(cannot)?;
        }
        Ok(_) => {
            fs_err::remove_file(&path).map_err(cannot)?;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .map_err(cannot)?;
        }
        Err(_) => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(cannot)?,
    }
    Ok(path)
}

/// Binds the daemon socket `daemon-<supervisor pid>.sock` in `directory`, replacing a
/// stale file of that name, with `backlog` (`--daemon-backlog`).
pub(super) fn bind_daemon_socket(
    directory: &Path,
    backlog: u32,
) -> Result<(std::os::unix::net::UnixListener, PathBuf), String> {
    let path = directory.join(format!("daemon-{}.sock", std::process::id()));
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(format!(
            "the daemon socket path '{}' is longer than the {MAX_SOCKET_PATH} bytes a UNIX socket allows\nhint: choose a shorter --server-root, or give --socket-prefix a short directory",
            path.display()
        ));
    }
    let _ = std::fs::remove_file(&path);
    let cannot = |error: std::io::Error| {
        format!(
            "cannot create the daemon socket '{}': {error}",
            path.display()
        )
    };
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(cannot)?;
    socket
        .bind(&socket2::SockAddr::unix(&path).map_err(cannot)?)
        .map_err(cannot)?;
    socket
        .listen(i32::try_from(backlog).unwrap_or(i32::MAX))
        .map_err(cannot)?;
    socket.set_nonblocking(true).map_err(cannot)?;
    Ok((std::os::fd::OwnedFd::from(socket).into(), path))
}

/// Clears close-on-exec on `fd`. Called in a new child between fork and exec, so that the
/// listener is inherited by that child alone: it only makes system calls.
pub(super) fn clear_close_on_exec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor of this process, with valid flags.
    let cleared = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == 0
    };
    if cleared {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
