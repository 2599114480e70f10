//! A request to the php-fpm pool: one FastCGI connection to its UNIX socket per request
//! (`crate::fastcgi` makes and reads the records). The request body is written record
//! by record as it arrives, by a task of its own, while the response is read: php-fpm
//! may answer before it has read everything.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;

use super::{GatewayError, Output, log_stderr};
use crate::fastcgi::{self, Decoder, Event};
use crate::frontend::request_body::RequestBody;

/// How long a request waits for php-fpm to accept its connection: long enough for the
/// supervisor to start a php-fpm that died again.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);

/// The response side of one FastCGI request. Dropping it (the client left) stops
/// writing the body and closes the connection, which ends the request in php-fpm.
pub(super) struct PhpOutput {
    read: OwnedReadHalf,
    decoder: Decoder,
    writer: tokio::task::JoinHandle<()>,
    remote: String,
    ended: bool,
}

impl Drop for PhpOutput {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

/// Connects to php-fpm and starts the request: the variables, then the body.
pub(super) async fn start(
    socket: &Path,
    variables: &[(Vec<u8>, Vec<u8>)],
    mut body: RequestBody,
    remote: String,
) -> Result<PhpOutput, GatewayError> {
    let stream = connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut records = Vec::with_capacity(1024);
    fastcgi::begin_request(&mut records);
    fastcgi::params(
        &mut records,
        variables
            .iter()
            .map(|(name, value)| (name.as_slice(), value.as_slice())),
    );
    let writer = tokio::spawn(async move {
        if write.write_all(&records).await.is_err() {
            return;
        }
        loop {
            records.clear();
            match body.frame().await {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    fastcgi::stdin(&mut records, &data);
                }
                // A broken body: php-fpm sees the connection end and drops the request.
                Some(Err(_)) => return,
                None => {
                    fastcgi::stdin(&mut records, &[]);
                    let _ = write.write_all(&records).await;
                    return;
                }
            }
            if write.write_all(&records).await.is_err() {
                return;
            }
        }
    });
    Ok(PhpOutput {
        read,
        decoder: Decoder::new(),
        writer,
        remote,
        ended: false,
    })
}

async fn connect(socket: &Path) -> Result<UnixStream, GatewayError> {
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        match UnixStream::connect(socket).await {
            Ok(stream) => return Ok(stream),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(GatewayError::Unavailable(format!(
                    "php-fpm does not answer on '{}': {error}",
                    socket.display()
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl Output for PhpOutput {
    async fn next(&mut self) -> Result<Option<Bytes>, GatewayError> {
        loop {
            match self.decoder.next_event() {
                Ok(Some(Event::Stdout(bytes))) => return Ok(Some(bytes)),
                Ok(Some(Event::Stderr(text))) => {
                    log_stderr("php-fpm", &self.remote, &text);
                    continue;
                }
                Ok(Some(Event::End { .. })) => {
                    self.ended = true;
                    return Ok(None);
                }
                Ok(None) => {}
                Err(error) => return Err(GatewayError::Bad(error.to_string())),
            }
            if self.ended {
                return Ok(None);
            }
            let mut buffer = BytesMut::with_capacity(16 * 1024);
            let read = self
                .read
                .read_buf(&mut buffer)
                .await
                .map_err(|error| GatewayError::Bad(format!("reading from php-fpm: {error}")))?;
            if read == 0 {
                return Err(GatewayError::Bad(
                    "php-fpm closed the connection before the end of its response".to_owned(),
                ));
            }
            self.decoder.push(&buffer);
        }
    }
}
