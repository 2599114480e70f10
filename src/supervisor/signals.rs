//! Signals, both ways: the ones the supervisor takes (turned into [`Event`]s for its loop)
//! and the ones it sends its children, with the words its log lines use for them.

use std::os::unix::process::ExitStatusExt;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, pthread_sigmask};
use nix::unistd::Pid;
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
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGWINCH,
    ] {
        set.add(signal);
    }
    let how = if blocked {
        SigmaskHow::SIG_BLOCK
    } else {
        SigmaskHow::SIG_UNBLOCK
    };
    // Fails only for an invalid `how`, which these two are not.
    let _ = pthread_sigmask(how, Some(&set), None);
}

/// Sends `signal_number` to a child we have not yet reaped (so the pid cannot be stale).
pub(super) fn send_signal(pid: u32, signal_number: i32) {
    let (Ok(pid), Ok(signal)) = (i32::try_from(pid), Signal::try_from(signal_number)) else {
        return;
    };
    let _ = kill(Pid::from_raw(pid), signal);
}

/// Whether a process with this pid exists (signal 0 only checks).
pub(super) fn process_exists(pid: i32) -> bool {
    pid > 0 && kill(Pid::from_raw(pid), None).is_ok()
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
    Signal::try_from(signal_number).map_or("unknown signal", Signal::as_str)
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
