//! The connection's read side, shared by the connection loop (request heads, noticing a
//! client that left) and the request body it hands to the proxy (which reads the body
//! off the socket when the upstream side wants more of it).
//!
//! Both run in the connection's one task, so the lock is never contended; it exists
//! because the body must be `Send + Sync + 'static` to travel inside the request.

use crate::h1::body::{poll_read_buf, Decode, Source};
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A read into a fresh buffer goes through this much stack, then is copied into a heap
/// buffer of exactly the size read: an idle connection holds no read buffer at all.
const STACK_READ: usize = 4096;
/// Body reads go straight into the buffer, this much at a time at most.
const BODY_READ: usize = 64 * 1024;

/// Where the current request's body is (`Done` when there was none).
pub type BodyRead = Decode;

pub struct Shared<I> {
    /// `None` once handed to an upgrade tunnel.
    pub io: Option<I>,
    pub rbuf: BytesMut,
    pub body: BodyRead,
    /// The body was cut short (the client closed, or sent a broken chunk): the
    /// connection cannot carry another request.
    pub failed: bool,
    /// Bumped for every request: a body kept past its request reads nothing more.
    pub generation: u32,
    /// Bytes of `100 Continue` still to write before the body is read.
    pub continue_left: usize,
    /// The client closed its sending side.
    pub eof: bool,
}

pub type SharedConn<I> = Arc<Mutex<Shared<I>>>;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl<I: AsyncRead + AsyncWrite + Unpin> Shared<I> {
    pub fn new(io: I) -> Self {
        Shared {
            io: Some(io),
            rbuf: BytesMut::new(),
            body: BodyRead::Done,
            failed: false,
            generation: 0,
            continue_left: 0,
            eof: false,
        }
    }

    /// Read more bytes into `rbuf`; `Ok(0)` at end of stream. With no spare room the read
    /// goes through the stack, so a connection's buffer is only as large as what arrived.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let n = if spare > 0 && spare >= want.min(STACK_READ) {
            ready!(poll_read_buf(io, &mut self.rbuf, cx))?
        } else if want > STACK_READ {
            self.rbuf.reserve(want);
            return self.poll_fill(cx, want);
        } else {
            let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
            let mut rb = ReadBuf::uninit(&mut stack);
            ready!(Pin::new(io).poll_read(cx, &mut rb))?;
            self.rbuf.extend_from_slice(rb.filled());
            rb.filled().len()
        };
        if n == 0 {
            self.eof = true;
        }
        Poll::Ready(Ok(n))
    }

    /// Start a request's body; returns its generation.
    pub fn begin_body(&mut self, body: BodyRead, expect_continue: bool) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        self.body = body;
        self.failed = false;
        self.continue_left = if expect_continue && body != BodyRead::Done {
            CONTINUE.len()
        } else {
            0
        };
        self.generation
    }

    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        // The client waits for `100 Continue` before sending: say it on the first read.
        while self.continue_left > 0 {
            let Some(io) = self.io.as_mut() else {
                return Poll::Ready(None);
            };
            let from = CONTINUE.len() - self.continue_left;
            let n = ready!(Pin::new(io).poll_write(cx, &CONTINUE[from..]))?;
            if n == 0 {
                return Poll::Ready(Some(Err(io::ErrorKind::WriteZero.into())));
            }
            self.continue_left -= n;
        }
        if self.failed {
            return Poll::Ready(Some(Err(io::Error::other("request body failed"))));
        }
        let mut body = self.body;
        let r = body.poll_next(self, cx, BODY_READ, "client");
        self.body = body;
        r
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Source for Shared<I> {
    fn buf(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        Shared::poll_fill(self, cx, want)
    }
}

/// A request body as the proxy sees it: read off the client's connection on demand.
pub struct RequestBody<I> {
    conn: SharedConn<I>,
    generation: u32,
}

impl<I> RequestBody<I> {
    pub fn new(conn: SharedConn<I>, generation: u32) -> Self {
        RequestBody { conn, generation }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> http_body::Body for RequestBody<I> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let mut s = self.conn.lock();
        if s.generation != self.generation {
            return Poll::Ready(Some(Err(io::Error::other(
                "request body read after its request",
            ))));
        }
        match ready!(s.poll_body(cx)) {
            Some(Ok(d)) => Poll::Ready(Some(Ok(Frame::data(d)))),
            Some(Err(e)) => {
                s.failed = true;
                Poll::Ready(Some(Err(e)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.conn.lock();
        s.generation == self.generation && s.body == BodyRead::Done
    }

    fn size_hint(&self) -> SizeHint {
        let s = self.conn.lock();
        match s.body {
            _ if s.generation != self.generation => SizeHint::default(),
            BodyRead::Length(n) => SizeHint::with_exact(n),
            BodyRead::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
