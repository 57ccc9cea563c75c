//! A response on the wire to the client: the head (status line, headers, the framing
//! roost chooses, `Date`), then the body as it streams, small frames coalesced with the
//! head into one write and large ones written from their own buffers (no copy).

use crate::body::{Body, BoxError};
use crate::h1::reply::Framing;
use bytes::{Buf, Bytes};
use http_body::Body as _;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Frames up to this size are copied next to the head or the previous frame, so a small
/// response goes out in one `write`; larger ones are written from their own buffer.
const COPY_MAX: usize = 8 * 1024;
/// Stop gathering frames and write once this much is buffered.
const GATHER_MAX: usize = 64 * 1024;

/// Where a response is written: the client's connection, locked only for each write
/// (the response body, polled in between, may read the request body off the same
/// connection).
pub trait Sink {
    fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// Why writing a response stopped short.
#[derive(Debug)]
pub enum WriteError {
    /// The client's socket failed (or stopped reading past the write-stall limit).
    Io(io::Error),
    /// The response body failed (the member went away mid-body): the client gets a
    /// truncated response and a close, which is all HTTP/1.1 can say.
    Body(BoxError),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Io(e) => write!(f, "client connection: {e}"),
            WriteError::Body(e) => write!(f, "response body: {e}"),
        }
    }
}

/// Writes one response: `out` (the head, then small frames), a large frame, its chunk
/// trailer, polling the body for more whenever everything so far is written.
pub struct ResponseWriter {
    out: Vec<u8>,
    out_pos: usize,
    big: Bytes,
    /// `\r\n` after a large chunk: written after `big`.
    big_tail: &'static [u8],
    framing: Framing,
    /// Bytes of a `Length` body still expected.
    left: u64,
    body: Option<Body>,
    /// The body has ended and its end is encoded.
    finished: bool,
    /// The body gave more than its framing announced (and was cut).
    overrun: bool,
    need_flush: bool,
}

impl ResponseWriter {
    pub fn new(out: Vec<u8>, framing: Framing, body: Body) -> Self {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        ResponseWriter {
            out,
            out_pos: 0,
            big: Bytes::new(),
            big_tail: b"",
            framing,
            left,
            body: Some(body),
            finished: false,
            overrun: false,
            need_flush: false,
        }
    }

    /// Whether the body ended exactly as framed (else the connection must close).
    pub fn complete(&self) -> bool {
        self.finished && self.left == 0 && !self.overrun
    }

    fn pending(&self) -> bool {
        self.out_pos < self.out.len() || !self.big.is_empty() || !self.big_tail.is_empty()
    }

    /// Take frames from the body while they are ready and there is room to gather.
    fn gather(&mut self, cx: &mut Context<'_>) -> Result<bool, WriteError> {
        let mut progressed = false;
        while !self.finished && self.big.is_empty() && self.out.len() - self.out_pos < GATHER_MAX {
            let Some(body) = self.body.as_mut() else {
                self.finished = true;
                break;
            };
            if self.framing == Framing::None {
                // Nothing goes on the wire, but an empty body is still polled to its end
                // so whatever waits for it (the pool slot, the access log) sees it end.
                if body.is_end_stream() {
                    let _ = Pin::new(body).poll_frame(cx);
                }
                self.body = None;
                self.finished = true;
                break;
            }
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    self.body = None;
                    self.finished = true;
                    if self.framing == Framing::Chunked {
                        self.out.extend_from_slice(b"0\r\n\r\n");
                    }
                    progressed = true;
                }
                Poll::Ready(Some(Err(e))) => {
                    self.body = None;
                    return Err(WriteError::Body(e));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not sent: HTTP/1.1 clients rarely ask (`TE: trailers`).
                    let Ok(mut data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    progressed = true;
                    if let Framing::Length(_) = self.framing {
                        if data.len() as u64 > self.left {
                            // More than announced: send what was promised, then close.
                            data.truncate(self.left as usize);
                            self.body = None;
                            self.finished = true;
                            self.overrun = true;
                            self.left = 0;
                        } else {
                            self.left -= data.len() as u64;
                        }
                    }
                    let chunked = self.framing == Framing::Chunked;
                    if chunked {
                        let mut hex = [0u8; 16];
                        let s = hex_len(data.len(), &mut hex);
                        self.out.extend_from_slice(s);
                        self.out.extend_from_slice(b"\r\n");
                    }
                    if data.len() <= COPY_MAX {
                        self.out.extend_from_slice(&data);
                        if chunked {
                            self.out.extend_from_slice(b"\r\n");
                        }
                    } else {
                        self.big = data;
                        self.big_tail = if chunked { b"\r\n" } else { b"" };
                    }
                }
            }
        }
        Ok(progressed)
    }

    /// Drive the response: gather, write, flush. `Ready(Ok)` once it is all written.
    pub fn poll_write<S: Sink + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        io: &S,
    ) -> Poll<Result<(), WriteError>> {
        loop {
            if !self.pending() {
                if self.out_pos > 0 {
                    // Everything so far is out: reuse the buffer's room for what follows.
                    self.out.clear();
                    self.out_pos = 0;
                }
                self.gather(cx)?;
                if !self.pending() {
                    if self.need_flush {
                        ready!(io.poll_flush(cx)).map_err(WriteError::Io)?;
                        self.need_flush = false;
                    }
                    if self.finished {
                        return Poll::Ready(Ok(()));
                    }
                    // The body is not ready; its waker (or the socket's) calls again.
                    return Poll::Pending;
                }
            } else if self.big.is_empty() && self.out.len() - self.out_pos < COPY_MAX {
                // Room left next to a small pending write: take more frames first.
                self.gather(cx)?;
            }
            let n = {
                let slices = [
                    IoSlice::new(&self.out[self.out_pos..]),
                    IoSlice::new(&self.big),
                    IoSlice::new(self.big_tail),
                ];
                ready!(io.poll_write_vectored(cx, &slices)).map_err(WriteError::Io)?
            };
            if n == 0 {
                return Poll::Ready(Err(WriteError::Io(io::ErrorKind::WriteZero.into())));
            }
            self.need_flush = true;
            self.consume(n);
        }
    }

    fn consume(&mut self, mut n: usize) {
        let a = (self.out.len() - self.out_pos).min(n);
        self.out_pos += a;
        n -= a;
        let b = self.big.len().min(n);
        self.big.advance(b);
        n -= b;
        let c = self.big_tail.len().min(n);
        self.big_tail = &self.big_tail[c..];
    }
}

fn hex_len(n: usize, buf: &mut [u8; 16]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = HEX[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;

    #[test]
    fn chunk_sizes_are_hex() {
        let mut b = [0u8; 16];
        assert_eq!(hex_len(0, &mut b), b"0");
        assert_eq!(hex_len(255, &mut b), b"ff");
        assert_eq!(hex_len(65536, &mut b), b"10000");
    }

    #[tokio::test]
    async fn bodies_are_framed_on_the_wire() {
        use tokio::io::AsyncReadExt;
        let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Ok(http_body::Frame::data(Bytes::from(vec![
                b'x';
                COPY_MAX + 1
            ]))),
            Ok(http_body::Frame::data(Bytes::from_static(b"cd"))),
        ];
        let b = body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            chunks,
        )));
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let sink = parking_lot::Mutex::new(super::super::body::Shared::new(server));
        let mut w = ResponseWriter::new(b"HEAD\r\n".to_vec(), Framing::Chunked, b);
        std::future::poll_fn(|cx| w.poll_write(cx, &sink))
            .await
            .unwrap();
        assert!(w.complete());
        drop(sink);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        let want = [
            b"HEAD\r\n2\r\nab\r\n".to_vec(),
            format!("{:x}\r\n", COPY_MAX + 1).into_bytes(),
            vec![b'x'; COPY_MAX + 1],
            b"\r\n2\r\ncd\r\n0\r\n\r\n".to_vec(),
        ]
        .concat();
        assert_eq!(got, want);
    }
}
