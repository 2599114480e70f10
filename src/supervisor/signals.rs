//! Signals, both ways: the ones the supervisor takes (turned into [`Event`]s for its loop)
//! and the ones it sends its children, with the words its log lines use for them.

use std::os::unix::process::ExitStatusExt;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::Event;

/// Signals as Apache takes them: TERM and INT stop, HUP and USR1 restart gracefully,
/// WINCH stops gracefully, but only under the control script: in a terminal it means the
/// window was resized.
pub(super) fn forward_signals(
    event_tx: &mpsc::UnboundedSender<Event>,
    under_control_script: bool,
) -> std::io::Result<()> {
    let mut signals = vec![
        (SignalKind::terminate(), (|| Event::Stop) as fn() -> Event),
        (SignalKind::interrupt(), || Event::Stop),
        (SignalKind::hangup(), || Event::Restart),
        (SignalKind::user_defined1(), || Event::Restart),
    ];
    if under_control_script {
        signals.push((SignalKind::window_change(), || Event::Stop));
    }
    for (kind, event) in signals {
        let mut stream = signal(kind)?;
        let event_tx = event_tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if event_tx.send(event()).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// Blocks or unblocks, on this thread, the signals the supervisor handles.
pub(super) fn set_signals_blocked(blocked: bool) {
    // SAFETY: sigset operations on a local set, then the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for signal_number in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGWINCH,
        ] {
            libc::sigaddset(&raw mut set, signal_number);
        }
        let how = if blocked {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &raw const set, std::ptr::null_mut());
    }
}

pub(super) fn send_signal(pid: u32, signal_number: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; a stale pid is harmless here
        // because we only signal children we have not yet reaped.
        unsafe {
            libc::kill(pid, signal_number);
        }
    }
}

/// "was killed by signal 11 (SIGSEGV)" or "exited with status 1".
pub(super) fn describe_exit(status: std::process::ExitStatus) -> String {
    if let Some(signal_number) = status.signal() {
        let name = signal_name(signal_number);
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        format!("was killed by signal {signal_number} ({name}{core})")
    } else {
        format!("exited with status {}", status.code().unwrap_or(-1))
    }
}

fn signal_name(signal_number: i32) -> &'static str {
    match signal_number {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        _ => "unknown signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_with_signal_names() {
        let killed = std::process::ExitStatus::from_raw(libc::SIGSEGV);
        assert_eq!(describe_exit(killed), "was killed by signal 11 (SIGSEGV)");
        let exited = std::process::ExitStatus::from_raw(1 << 8);
        assert_eq!(describe_exit(exited), "exited with status 1");
    }
}
