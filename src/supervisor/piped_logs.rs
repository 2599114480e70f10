//! `--rotate-logs --rotatelogs-executable PATH`: the logs go through a program that
//! rotates them (Apache's `rotatelogs`), started as mod_wsgi-express starts it:
//! `PATH FILE.%Y-%m-%d-%H_%M_%S NM`, reading the lines on its standard input.
//!
//! Every process of the server must write into the same pipe, and the processes open
//! their logs by name; so the pipe has a name: a FIFO in the server root, which the
//! program reads and every process opens as its log file (the log writer then writes
//! whole lines of at most `PIPE_BUF` bytes, which a pipe never interleaves). The
//! program sees the end of its input, and exits, once the last process closed its log.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::cli::PipedLog;

/// The write ends the supervisor keeps open until it exits.
static HELD_OPEN: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());

/// Makes each FIFO and starts the program reading it; before any process opens a log.
pub(super) fn start(
    executable: &Path,
    max_log_size_mb: u64,
    logs: &[PipedLog],
) -> Result<(), String> {
    for log in logs {
        start_one(executable, max_log_size_mb, log).map_err(|error| {
            format!(
                "cannot start --rotatelogs-executable '{}' for '{}': {error}",
                executable.display(),
                log.target.display()
            )
        })?;
    }
    Ok(())
}

fn start_one(executable: &Path, max_log_size_mb: u64, log: &PipedLog) -> std::io::Result<()> {
    // A FIFO left by a server that was killed is made again, so its mode is ours.
    let _ = fs_err::remove_file(&log.fifo);
    nix_mkfifo(&log.fifo)?;
    // Opened for reading without waiting for a writer, then made blocking for the program.
    let reader = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&log.fifo)?
        .into_parts()
        .0;
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe {
        let flags = libc::fcntl(reader.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    // A FIFO whose writers are all gone reads as ended: the supervisor holds one write
    // end for its whole life (closed when it exits, which ends the program's input once
    // the other processes closed theirs too), so that the program never sees an end
    // before the processes opened their logs.
    let writer = fs_err::OpenOptions::new()
        .write(true)
        .open(&log.fifo)?
        .into_parts()
        .0;
    HELD_OPEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(writer);
    let mut pattern = log.target.as_os_str().to_owned();
    pattern.push(".%Y-%m-%d-%H_%M_%S");
    std::process::Command::new(executable)
        .arg(pattern)
        .arg(format!("{max_log_size_mb}M"))
        .stdin(reader)
        .spawn()?;
    Ok(())
}

fn nix_mkfifo(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(path.as_ptr(), 0o600) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
