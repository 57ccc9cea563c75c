//! Reading a message body off a connection, the same loop on both sides: a client's
//! request body (the front's HTTP/1.1 server) and a member's response body (the upstream
//! client). The connection supplies its read buffer and a way to read more.

use super::chunked::{Chunked, Step};
use bytes::{Bytes, BytesMut};
use std::io;
use std::task::{ready, Context, Poll};

/// A connection a body is read from.
pub trait Source {
    /// Bytes read and not yet consumed.
    fn buf(&mut self) -> &mut BytesMut;
    /// Read once into [`Source::buf`], with room for at least `want` bytes; `Ok(0)` is
    /// end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>>;
}

/// Where a body is, as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// Exactly this many bytes left.
    Length(u64),
    Chunked(Chunked),
    /// Until the peer closes (a response with neither length nor chunked coding).
    Eof,
    /// Read to its end.
    Done,
}

impl Decode {
    /// The next piece of the body: `Ready(None)` at its end (and the state is `Done`).
    /// Reads at most `max` bytes at a time, so a large body never sits in memory whole.
    /// `peer` names who closed early in the error ("client", "member").
    pub fn poll_next<S: Source + ?Sized>(
        &mut self,
        src: &mut S,
        cx: &mut Context<'_>,
        max: usize,
        peer: &'static str,
    ) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match *self {
                Decode::Done | Decode::Length(0) => {
                    *self = Decode::Done;
                    return Poll::Ready(None);
                }
                Decode::Length(left) => {
                    if src.buf().is_empty() {
                        let want = left.min(max as u64) as usize;
                        if ready!(src.poll_fill(cx, want))? == 0 {
                            return Poll::Ready(Some(Err(closed(peer, "mid-body"))));
                        }
                    }
                    let buf = src.buf();
                    let n = left.min(buf.len() as u64) as usize;
                    let left = left - n as u64;
                    *self = if left == 0 {
                        Decode::Done
                    } else {
                        Decode::Length(left)
                    };
                    return Poll::Ready(Some(Ok(buf.split_to(n).freeze())));
                }
                Decode::Chunked(mut dec) => {
                    let step = dec.step(src.buf());
                    *self = Decode::Chunked(dec);
                    match step? {
                        Step::Data(d) => return Poll::Ready(Some(Ok(d))),
                        Step::Done => {
                            *self = Decode::Done;
                            return Poll::Ready(None);
                        }
                        Step::More => {
                            if ready!(src.poll_fill(cx, max))? == 0 {
                                return Poll::Ready(Some(Err(closed(peer, "mid-chunk"))));
                            }
                        }
                    }
                }
                Decode::Eof => {
                    let buf = src.buf();
                    if !buf.is_empty() {
                        return Poll::Ready(Some(Ok(buf.split().freeze())));
                    }
                    if ready!(src.poll_fill(cx, max))? == 0 {
                        *self = Decode::Done;
                        return Poll::Ready(None);
                    }
                }
            }
        }
    }
}

fn closed(peer: &'static str, when: &'static str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{peer} closed the connection {when}"),
    )
}

/// Read once from `io` into the spare capacity of `buf` (the caller reserved it).
/// `Ok(0)` is end of stream (or no spare room).
pub fn poll_read_buf<R: tokio::io::AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut rb = tokio::io::ReadBuf::uninit(buf.spare_capacity_mut());
    ready!(std::pin::Pin::new(io).poll_read(cx, &mut rb))?;
    let n = rb.filled().len();
    // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity (a
    // `ReadBuf` only counts bytes as filled once they are written).
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}
