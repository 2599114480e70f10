//! One application thread of a daemon process and its connection to the front end.
//!
//! The thread is attached to Python for its whole life. It waits for the next request on
//! its own connection with the GIL released, runs the application on itself, and writes
//! the response frames itself, GIL released again: no other thread is woken per request.
//! The request body is read from the same connection as the application asks for it.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use pyo3::prelude::*;

use super::protocol::{BlockingFrameReader, Frame, Hello, ProtocolError, ResponseHead, Role};
use super::worker::Worker;
use crate::logs::{Level, error_log};
use crate::wsgi::{self, BodyReadError, BodySource, DirectSink, ResponseBody};

/// Largest list response sent as one frame; bigger ones go out in chunks.
const INLINE_LIMIT: usize = 1024 * 1024;
/// Size of the blocks read from a `wsgi.file_wrapper` file.
const FILE_BLOCK_SIZE: usize = 256 * 1024;
/// Chunks up to this size are copied behind their frame header and written at once.
const COALESCE_LIMIT: usize = 16 * 1024;

/// How one connection ended.
enum Ended {
    /// The front end said Stop, or this process is stopping: do not reconnect.
    ForGood,
    /// The connection broke; open a new one.
    Broken,
}

/// Where the request body stands on the connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// Body frames may follow, up to `BodyEnd` or `BodyAbort`.
    Open,
    /// The body ended (or there was none): the next frame is a request head.
    Ended,
    /// The connection broke while reading it.
    Broken,
}

/// The read side of the connection, shared by the thread and the request body it hands
/// to the application.
struct Incoming {
    frames: BlockingFrameReader<UnixStream>,
    body: BodyState,
}

type SharedIncoming = Arc<Mutex<Incoming>>;

fn lock(incoming: &SharedIncoming) -> MutexGuard<'_, Incoming> {
    incoming
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The body of a thread's life: keeps a connection to the front end open (opening a
/// new one when it breaks) until the front end lets it go or the process stops.
pub(super) fn run_thread(worker: &Worker, thread_index: usize) {
    Python::attach(|py| {
        loop {
            if worker.is_stopping() {
                return;
            }
            let Ok(stream) = py.detach(|| connect(worker)) else {
                // The front end is gone: nobody will send requests any more.
                worker.stop();
                return;
            };
            match serve_connection(py, worker, stream, thread_index) {
                Ended::ForGood => return,
                Ended::Broken => {
                    py.detach(|| std::thread::sleep(std::time::Duration::from_millis(10)));
                }
            }
        }
    });
}

fn connect(worker: &Worker) -> std::io::Result<UnixStream> {
    let mut stream = UnixStream::connect(&worker.socket)?;
    let mut hello = BytesMut::with_capacity(32);
    Frame::Hello(Hello {
        pid: worker.pid,
        slot: worker.slot,
        served: worker.served(),
        role: Role::Thread,
    })
    .encode(&mut hello);
    stream.write_all(&hello)?;
    Ok(stream)
}

fn serve_connection(
    py: Python<'_>,
    worker: &Worker,
    stream: UnixStream,
    thread_index: usize,
) -> Ended {
    let Ok(read_side) = stream.try_clone() else {
        return Ended::Broken;
    };
    let writer = Arc::new(stream);
    let incoming: SharedIncoming = Arc::new(Mutex::new(Incoming {
        frames: BlockingFrameReader::new(read_side),
        body: BodyState::Ended,
    }));
    loop {
        let fd = writer.as_raw_fd();
        worker.idle(fd, true);
        if worker.is_stopping() {
            worker.idle(fd, false);
            return Ended::ForGood;
        }
        let frame = py.detach(|| lock(&incoming).frames.read());
        worker.idle(fd, false);
        let head = match frame {
            Ok(Frame::RequestHead(head)) => head,
            Ok(Frame::Stop) => return Ended::ForGood,
            Err(ProtocolError::Closed) if worker.is_stopping() => return Ended::ForGood,
            Err(ProtocolError::Closed) => return Ended::Broken,
            Ok(other) => {
                error_log::log(
                    Level::Error,
                    "ferrule",
                    &format!("the front end sent {other:?} where a request was expected"),
                );
                return Ended::Broken;
            }
            Err(error) => {
                error_log::log(Level::Error, "ferrule", &error.to_string());
                return Ended::Broken;
            }
        };
        let has_body = head.has_body;
        lock(&incoming).body = if has_body {
            BodyState::Open
        } else {
            BodyState::Ended
        };
        let body: Box<dyn BodySource> = if has_body {
            Box::new(ConnectionBody {
                incoming: Arc::clone(&incoming),
            })
        } else {
            Box::new(NoBody)
        };
        let request = into_request(*head, body);
        worker.count_request();
        let sink = Box::new(ConnectionSink {
            writer: Arc::clone(&writer),
        });
        worker.executor.run_inline(py, request, sink, thread_index);
        // The application may have left part of the body: read it off the connection so
        // that the next request head is where the next read starts.
        if py.detach(|| drain_body(&incoming)) == BodyState::Broken {
            return Ended::Broken;
        }
    }
}

fn into_request(head: super::protocol::RequestHead, body: Box<dyn BodySource>) -> wsgi::Request {
    let super::protocol::RequestHead {
        method,
        target,
        version,
        headers,
        remote_addr,
        local_addr,
        https,
        received_at,
        has_body: _,
    } = head;
    wsgi::Request {
        method,
        target,
        version,
        headers,
        connection: wsgi::ConnectionInfo {
            remote_addr,
            local_addr,
            https,
        },
        body,
        received_at,
    }
}

fn drain_body(incoming: &SharedIncoming) -> BodyState {
    let mut incoming = lock(incoming);
    while incoming.body == BodyState::Open {
        incoming.body = match incoming.frames.read() {
            Ok(Frame::BodyChunk(_)) => BodyState::Open,
            Ok(Frame::BodyEnd | Frame::BodyAbort) => BodyState::Ended,
            Ok(_) | Err(_) => BodyState::Broken,
        };
    }
    incoming.body
}

/// A request body arriving on the connection, read by the application's thread (with the
/// GIL released) as the application asks for it.
struct ConnectionBody {
    incoming: SharedIncoming,
}

impl BodySource for ConnectionBody {
    fn read_chunk(&mut self) -> Result<Option<Bytes>, BodyReadError> {
        let mut incoming = lock(&self.incoming);
        loop {
            match incoming.body {
                BodyState::Ended => return Ok(None),
                BodyState::Broken => {
                    return Err(BodyReadError {
                        reason: "the front end's connection broke while sending the body"
                            .to_owned(),
                    });
                }
                BodyState::Open => {}
            }
            match incoming.frames.read() {
                Ok(Frame::BodyChunk(chunk)) if chunk.is_empty() => {}
                Ok(Frame::BodyChunk(chunk)) => return Ok(Some(chunk)),
                Ok(Frame::BodyEnd) => incoming.body = BodyState::Ended,
                Ok(Frame::BodyAbort) => {
                    incoming.body = BodyState::Ended;
                    return Err(BodyReadError {
                        reason: "the client closed the connection before sending the whole body"
                            .to_owned(),
                    });
                }
                Ok(_) | Err(_) => incoming.body = BodyState::Broken,
            }
        }
    }
}

struct NoBody;

impl BodySource for NoBody {
    fn read_chunk(&mut self) -> Result<Option<Bytes>, BodyReadError> {
        Ok(None)
    }
}

/// The response side of the connection: frames written by the application's thread.
struct ConnectionSink {
    writer: Arc<UnixStream>,
}

impl ConnectionSink {
    fn write_frame(&self, frame: &Frame) -> std::io::Result<()> {
        let mut out = BytesMut::with_capacity(256);
        frame.encode(&mut out);
        (&*self.writer).write_all(&out)
    }

    fn write_chunk(&self, chunk: &[u8]) -> std::io::Result<()> {
        let header = Frame::chunk_header(true, chunk.len());
        if chunk.len() <= COALESCE_LIMIT {
            let mut out = Vec::with_capacity(header.len() + chunk.len());
            out.extend_from_slice(&header);
            out.extend_from_slice(chunk);
            return (&*self.writer).write_all(&out);
        }
        (&*self.writer).write_all(&header)?;
        (&*self.writer).write_all(chunk)
    }

    fn send_file(&self, file: &mut std::fs::File, offset: u64, length: u64) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        file.seek(SeekFrom::Start(offset))?;
        let mut remaining = length;
        let mut block = vec![0; FILE_BLOCK_SIZE];
        while remaining > 0 {
            let want = usize::try_from(remaining).map_or(block.len(), |left| left.min(block.len()));
            let read = file.read(&mut block[..want])?;
            if read == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file got shorter while it was being sent",
                ));
            }
            self.write_chunk(&block[..read])?;
            remaining -= read as u64;
        }
        Ok(())
    }
}

impl DirectSink for ConnectionSink {
    fn send_response(&mut self, response: wsgi::Response) -> std::io::Result<()> {
        let wsgi::Response {
            status,
            reason,
            headers,
            body,
        } = response;
        let head = Box::new(ResponseHead {
            status,
            reason,
            headers,
        });
        match body {
            ResponseBody::Full(chunks) => {
                let total: usize = chunks.iter().map(Bytes::len).sum();
                if total <= INLINE_LIMIT {
                    let body = match chunks.len() {
                        0 => Bytes::new(),
                        1 => chunks.into_iter().next().unwrap_or_default(),
                        _ => {
                            let mut joined = BytesMut::with_capacity(total);
                            for chunk in &chunks {
                                joined.extend_from_slice(chunk);
                            }
                            joined.freeze()
                        }
                    };
                    return self.write_frame(&Frame::ResponseFull { head, body });
                }
                self.write_frame(&Frame::ResponseHead(head))?;
                for chunk in chunks {
                    self.write_chunk(&chunk)?;
                }
            }
            ResponseBody::File {
                mut file,
                offset,
                length,
            } => {
                self.write_frame(&Frame::ResponseHead(head))?;
                if let Err(error) = self.send_file(&mut file, offset, length) {
                    if error.kind() == std::io::ErrorKind::BrokenPipe {
                        return Err(error);
                    }
                    error_log::log(
                        Level::Error,
                        "ferrule",
                        &format!(
                            "reading the file of a wsgi.file_wrapper response failed: {error}"
                        ),
                    );
                    return self.write_frame(&Frame::ResponseAbort);
                }
            }
            ResponseBody::Stream(_) => {
                // Streams are sent with send_head and send_chunk; never handed over whole.
                self.write_frame(&Frame::ResponseHead(head))?;
                return self.write_frame(&Frame::ResponseAbort);
            }
        }
        self.write_frame(&Frame::ResponseEnd)
    }

    fn send_head(
        &mut self,
        status: http::StatusCode,
        reason: Option<Bytes>,
        headers: http::HeaderMap,
    ) -> std::io::Result<()> {
        self.write_frame(&Frame::ResponseHead(Box::new(ResponseHead {
            status,
            reason,
            headers,
        })))
    }

    fn send_chunk(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.write_chunk(chunk)
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.write_frame(&Frame::ResponseEnd)
    }

    fn abort(&mut self) -> std::io::Result<()> {
        self.write_frame(&Frame::ResponseAbort)
    }
}
