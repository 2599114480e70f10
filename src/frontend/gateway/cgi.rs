//! `--with-cgi`: an executable `.cgi` file run for the request, without a shell (the
//! kernel starts the interpreter its `#!` line names), as the server's user, in its own
//! directory, with the CGI variables and `PATH` as its whole environment. The body goes to its
//! stdin as it arrives; its stdout is the response; each line of its stderr is an error
//! log line. It is killed when it runs past `--request-timeout` (504 if it had not
//! answered yet; the response is cut otherwise), and when the client leaves.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};

use super::{GatewayError, Output, log_stderr};
use crate::frontend::request_body::RequestBody;

/// The running script's response side; dropping it kills the script if it still runs.
pub(super) struct CgiOutput {
    stdout: ChildStdout,
    child: Child,
    deadline: Option<tokio::time::Instant>,
    limit: Option<Duration>,
    writer: tokio::task::JoinHandle<()>,
}

impl Drop for CgiOutput {
    fn drop(&mut self) {
        self.writer.abort();
        // A script that already ended is only reaped (tokio does it in the background).
        let _ = self.child.start_kill();
    }
}

/// Starts `script` with `variables` as its environment.
pub(super) fn start(
    script: &Path,
    variables: &[(Vec<u8>, Vec<u8>)],
    mut body: RequestBody,
    limit: Option<Duration>,
    remote: String,
) -> Result<CgiOutput, GatewayError> {
    let mut command = Command::new(script);
    command.env_clear();
    // As Apache: the server's PATH, so that `#!/usr/bin/env python3` finds its program.
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .envs(
            variables
                .iter()
                .map(|(name, value)| (OsStr::from_bytes(name), OsStr::from_bytes(value))),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(directory) = script.parent() {
        command.current_dir(directory);
    }
    let mut child = command.spawn().map_err(|error| {
        GatewayError::Unavailable(format!("cannot run the CGI script: {error}"))
    })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(GatewayError::Unavailable(
            "the CGI script's pipes are missing".to_owned(),
        ));
    };
    let writer = tokio::spawn(async move {
        // A script that does not read its body closes the pipe: that is its choice.
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if stdin.write_all(&data).await.is_err() {
                    return;
                }
            }
        }
    });
    let script_name = script.display().to_string();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log_stderr("cgi", &remote, format!("{script_name}: {line}").as_bytes());
        }
    });
    Ok(CgiOutput {
        stdout,
        child,
        deadline: limit.map(|limit| tokio::time::Instant::now() + limit),
        limit,
        writer,
    })
}

impl Output for CgiOutput {
    async fn next(&mut self) -> Result<Option<Bytes>, GatewayError> {
        let mut buffer = BytesMut::with_capacity(16 * 1024);
        let read = self.stdout.read_buf(&mut buffer);
        let read = match self.deadline {
            Some(deadline) => {
                let Ok(read) = tokio::time::timeout_at(deadline, read).await else {
                    let _ = self.child.start_kill();
                    return Err(GatewayError::TimedOut(format!(
                        "the CGI script ran longer than --request-timeout ({} seconds) and was killed",
                        self.limit.map_or(0, |limit| limit.as_secs())
                    )));
                };
                read
            }
            None => read.await,
        };
        match read {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(buffer.freeze())),
            Err(error) => Err(GatewayError::Bad(format!(
                "reading the CGI script's output: {error}"
            ))),
        }
    }
}
