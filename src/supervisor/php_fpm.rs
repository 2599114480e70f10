//! `--with-php5`: the php-fpm pool beside the server. The supervisor writes its
//! configuration into the server root (`php-fpm.conf`), starts it once it runs as the
//! server's user (so that `--user`/`--group` apply to the pool: the master and its
//! workers run as that user), starts it again when it dies (logged), and stops it on
//! every way out: [`PhpFpm`]'s `Drop`.
//!
//! A thread of its own waits on the process, so the supervisor's reactor never waits on
//! it; another turns what php-fpm writes on its stderr (its `error_log`, and what its
//! workers print) into error log lines. php-fpm runs in a process group of its own, so
//! that workers a dead master leaves behind are killed with it.

use std::io::BufRead;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cli::Config;
use crate::logs::{Level, error_log};

/// How long php-fpm has to open its socket at start-up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause before php-fpm is started again after it died.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// How long php-fpm has to stop after SIGTERM before its process group is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes `php-fpm.conf` into the server root (as root, before `--user` takes effect:
/// the server root is root's) and returns its path.
pub(super) fn write_config(config: &Config, php_fpm: &Path) -> Result<PathBuf, String> {
    let path = config.server.server_root.join("php-fpm.conf");
    let socket = crate::cli::GatewayConfig::php_socket(&config.server.server_root);
    let max_children = (config.processes.n_processes * config.processes.n_threads).max(1);
    // Root without --user: php-fpm refuses to run its workers as root unless told, and
    // its pool must then name root.
    let as_root = nix::unistd::geteuid().is_root() && config.processes.run_as.is_none();
    let user = if as_root { "user = root\n" } else { "" };
    // --request-timeout, as for the application (0: none).
    let timeout = config
        .processes
        .request_timeout
        .map_or(0, |timeout| timeout.as_secs());
    let text = format!(
        "; Written by ferrule for --with-php5 ({php_fpm}); rewritten at each start.\n\
         [global]\n\
         error_log = /proc/self/fd/2\n\
         log_level = notice\n\
         daemonize = no\n\
         \n\
         [ferrule]\n\
         {user}\
         listen = {socket}\n\
         listen.mode = 0600\n\
         pm = ondemand\n\
         pm.max_children = {max_children}\n\
         pm.process_idle_timeout = 10s\n\
         request_terminate_timeout = {timeout}s\n\
         catch_workers_output = no\n\
         clear_env = yes\n\
         security.limit_extensions = .php\n\
         php_admin_flag[log_errors] = on\n",
        php_fpm = php_fpm.display(),
        socket = socket.display(),
    );
    fs_err::write(&path, text)
        .map_err(|error| format!("cannot write the php-fpm configuration: {error}"))?;
    Ok(path)
}

/// The running pool; dropping it stops php-fpm and its workers.
pub(super) struct PhpFpm {
    shared: Arc<Shared>,
    wake: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the watching thread and the owner share.
struct Shared {
    program: PathBuf,
    config_file: PathBuf,
    socket: PathBuf,
    as_root: bool,
    /// The current master's pid (its process group's too); 0 while none runs.
    pid: AtomicI32,
    stopping: AtomicBool,
}

impl PhpFpm {
    /// Starts php-fpm and waits until it accepts connections on its socket.
    pub(super) fn start(
        config: &Config,
        program: &Path,
        config_file: PathBuf,
    ) -> Result<Self, String> {
        let socket = crate::cli::GatewayConfig::php_socket(&config.server.server_root);
        let shared = Arc::new(Shared {
            program: program.to_owned(),
            config_file,
            socket,
            as_root: nix::unistd::geteuid().is_root(),
            pid: AtomicI32::new(0),
            stopping: AtomicBool::new(false),
        });
        kill_stale_workers(&shared.group_file());
        let mut child = shared.spawn()?;
        if let Err(message) = shared.wait_ready(&mut child) {
            kill_group(shared.pid.swap(0, Ordering::AcqRel), libc::SIGKILL);
            let _ = child.wait();
            return Err(message);
        }
        let (wake, woken) = mpsc::channel();
        let watching = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("php-fpm".to_owned())
            .spawn(move || watching.watch(child, &woken))
            .map_err(|error| format!("cannot start the thread that watches php-fpm: {error}"))?;
        Ok(Self {
            shared,
            wake,
            thread: Some(thread),
        })
    }
}

impl Shared {
    fn spawn(&self) -> Result<Child, String> {
        let _ = std::fs::remove_file(&self.socket);
        let mut command = Command::new(&self.program);
        command
            .arg("--nodaemonize")
            .arg("--fpm-config")
            .arg(&self.config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if self.as_root {
            command.arg("--allow-to-run-as-root");
        }
        // SAFETY: between fork and exec only async-signal-safe system calls are made:
        // setpgid, and prctl so that php-fpm dies with the supervisor.
        unsafe {
            command.pre_exec(|| {
                if libc::setpgid(0, 0) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|error| {
            format!("cannot start php-fpm '{}': {error}", self.program.display())
        })?;
        let pid = i32::try_from(child.id()).unwrap_or(0);
        self.pid.store(pid, Ordering::Release);
        // So that a server started after this one was killed can stop its workers.
        let _ = fs_err::write(self.group_file(), pid.to_string());
        if let Some(stderr) = child.stderr.take() {
            let _ = std::thread::Builder::new()
                .name("php-fpm-log".to_owned())
                .spawn(move || log_lines(stderr));
        }
        Ok(child)
    }

    /// Where the process group of the current php-fpm is written, beside its socket.
    fn group_file(&self) -> PathBuf {
        self.socket.with_file_name("php-fpm.pgid")
    }

    /// Waits until the socket accepts a connection; an error if php-fpm exits first or
    /// takes longer than [`READY_TIMEOUT`].
    fn wait_ready(&self, child: &mut Child) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                self.pid.store(0, Ordering::Release);
                return Err(format!(
                    "php-fpm '{}' exited at start-up ({status}); its reasons are in the error log",
                    self.program.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "php-fpm '{}' did not open its socket '{}' within {} seconds",
                    self.program.display(),
                    self.socket.display(),
                    READY_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The watching thread: waits on php-fpm and starts it again when it dies, until
    /// the owner stops it.
    fn watch(&self, mut child: Child, woken: &mpsc::Receiver<()>) {
        loop {
            let status = child.wait();
            let pid = self.pid.swap(0, Ordering::AcqRel);
            if self.stopping.load(Ordering::Acquire) {
                kill_group(pid, libc::SIGKILL);
                return;
            }
            let how = match &status {
                Ok(status) => match status.signal() {
                    Some(signal) => format!("was killed by signal {signal}"),
                    None => format!("exited with status {}", status.code().unwrap_or(-1)),
                },
                Err(error) => format!("could not be waited for: {error}"),
            };
            // Workers the master left behind still hold the old socket: gone before the
            // line is written, so that a request after it waits for the new pool instead
            // of reaching a worker about to be killed.
            kill_group(pid, libc::SIGKILL);
            error_log::log(
                Level::Error,
                "ferrule",
                &format!("php-fpm (pid {pid}) {how}; starting it again"),
            );
            child = loop {
                match woken.recv_timeout(RESTART_DELAY) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if self.stopping.load(Ordering::Acquire) {
                    return;
                }
                match self.spawn() {
                    Ok(child) => break child,
                    Err(message) => error_log::log(Level::Error, "ferrule", &message),
                }
            };
            if self.stopping.load(Ordering::Acquire) {
                kill_group(self.pid.swap(0, Ordering::AcqRel), libc::SIGKILL);
                let _ = child.wait();
                return;
            }
        }
    }
}

impl Drop for PhpFpm {
    /// Stops php-fpm (SIGTERM: it stops its workers and exits), and kills its process
    /// group if it is still there after [`STOP_TIMEOUT`].
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        let _ = self.wake.send(());
        let pid = self.shared.pid.load(Ordering::Acquire);
        if pid > 0 {
            // SAFETY: kill takes a pid and a signal number and nothing else.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !thread.is_finished() {
            kill_group(self.shared.pid.load(Ordering::Acquire), libc::SIGKILL);
        }
        let _ = thread.join();
        let _ = std::fs::remove_file(&self.shared.socket);
        let _ = std::fs::remove_file(self.shared.group_file());
    }
}

/// Kills the php-fpm workers a killed server left behind: the kernel kills a php-fpm
/// master whose supervisor died (`PR_SET_PDEATHSIG`), but not its workers, which would
/// wait on the old socket for ever. Only processes of the group `group_file` names whose
/// name is php-fpm's are killed.
fn kill_stale_workers(group_file: &Path) {
    let Some(group) = fs_err::read_to_string(group_file)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|group| *group > 0)
    else {
        return;
    };
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs_err::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if stale_php_fpm(&stat, group) {
            // SAFETY: kill takes a pid and a signal number and nothing else.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = fs_err::remove_file(group_file);
}

/// Whether `/proc/PID/stat` is a php-fpm process of process group `group`.
fn stale_php_fpm(stat: &str, group: i32) -> bool {
    // "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces and parentheses.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let name = &stat[open + 1..close];
    let process_group = stat[close + 1..]
        .split_ascii_whitespace()
        .nth(2)
        .and_then(|field| field.parse::<i32>().ok());
    name.starts_with("php-fpm") && process_group == Some(group)
}

/// Sends `signal` to every process of the group `pid` leads (nothing for 0).
fn kill_group(pid: i32, signal: i32) {
    if pid > 0 {
        // SAFETY: kill takes a process group and a signal number and nothing else.
        unsafe { libc::kill(-pid, signal) };
    }
}

/// Each line php-fpm writes on stderr, as an error log line: its own level word
/// (`ERROR:`, `WARNING:`, `NOTICE:`) sets the line's level; its timestamp is dropped
/// (the error log has its own).
fn log_lines(stderr: std::process::ChildStderr) {
    for line in std::io::BufReader::new(stderr).lines() {
        let Ok(line) = line else {
            return;
        };
        let (level, message) = php_fpm_line(&line);
        if !message.is_empty() {
            error_log::log(level, "php-fpm", message);
        }
    }
}

/// The level and text of one line of php-fpm's log.
fn php_fpm_line(line: &str) -> (Level, &str) {
    let text = match line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((_, rest)) => rest,
        None => line,
    };
    for (word, level) in [
        ("ALERT: ", Level::Alert),
        ("ERROR: ", Level::Error),
        ("WARNING: ", Level::Warn),
        ("NOTICE: ", Level::Notice),
        ("DEBUG: ", Level::Debug),
    ] {
        if let Some(rest) = text.strip_prefix(word) {
            return (level, rest.trim_end());
        }
    }
    // What a worker printed (`catch_workers_output`).
    (Level::Warn, text.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_workers_are_php_fpm_processes_of_the_old_group() {
        let worker = "9060 (php-fpm8.2) S 1 9052 9052 0 -1 4194624";
        assert!(stale_php_fpm(worker, 9052));
        assert!(!stale_php_fpm(worker, 9053));
        assert!(!stale_php_fpm("77 (python3) S 1 9052 9052 0", 9052));
        assert!(!stale_php_fpm("garbage", 9052));
    }

    #[test]
    fn php_fpm_lines_keep_their_level_and_lose_their_time() {
        assert_eq!(
            php_fpm_line("[03-Dec-2026 07:20:00] NOTICE: fpm is running, pid 7"),
            (Level::Notice, "fpm is running, pid 7")
        );
        assert_eq!(
            php_fpm_line("[03-Dec-2026 07:20:00] ERROR: unable to bind"),
            (Level::Error, "unable to bind")
        );
        assert_eq!(
            php_fpm_line("something else"),
            (Level::Warn, "something else")
        );
    }
}
