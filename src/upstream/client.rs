//! A per-member pool of HTTP/1.1 connections, driven inline.
//!
//! A request's exchange with its member runs in the task that calls [`Client::send`] and
//! its response body is read from the member's socket when the front polls it: for a
//! proxied request that is the client connection's own task. hyper's client would run
//! each member connection in a task of its own and pass every request, response and body
//! chunk through channels between the two (two extra wake-ups per request, ~30 % of the
//! front's instructions on small responses; BENCHMARKS.md, "Front optimisations").

use super::connector::{dial, Endpoint, Peek, Stream};
use super::{Discard, Retry, UpstreamError};
use crate::body::Body;
use crate::config::model::UpstreamTimeouts;
use crate::h1::body::{poll_read_buf, Decode, Source};
use crate::h1::{self, Chunked, Forwarded, ReqFraming, RespFraming, ResponseHead};
use bytes::{Buf, Bytes, BytesMut};
use http::Method;
use http_body::{Body as _, Frame, SizeHint};
use parking_lot::Mutex;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A failed [`Client::forward`]: the error, and the request body back when the request
/// was never sent (so it can go to another member without having been buffered).
pub type ForwardError = (UpstreamError, Option<Body>);

/// One connection to the member, with its buffers.
pub(crate) struct Conn {
    io: Stream,
    /// Bytes read from the member and not yet consumed.
    rbuf: BytesMut,
    /// The request head being written.
    wbuf: Vec<u8>,
    /// Scratch space for parsing response heads.
    scratch: h1::ParseScratch,
    /// The first-byte timer, kept for the connection's life: each request moves the
    /// deadline and the timer is re-armed only when it fires early, so a busy connection
    /// touches the timer wheel about once per timeout period, not twice per request.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Read buffer reserved per read: one small response fits in a single `read`.
const READ_CHUNK: usize = 8 * 1024;
/// Bodies larger than this are read in pieces of this size (hyper's server writes each
/// piece as it comes, so a 1 GiB response never sits in memory).
const READ_MAX: usize = 64 * 1024;

impl Conn {
    fn new(io: Stream) -> Conn {
        Conn {
            io,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
            scratch: h1::ParseScratch::default(),
            timer: None,
        }
    }

    /// Whether `deadline` has passed; otherwise the timer is armed to wake the task by
    /// then (at the latest).
    fn poll_deadline(
        timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
        deadline: Instant,
        cx: &mut Context<'_>,
    ) -> bool {
        let d = tokio::time::Instant::from_std(deadline);
        let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(d)));
        if t.deadline() > d {
            // A shorter timeout than the last request's (a reload): re-arm earlier.
            t.as_mut().reset(d);
        }
        if std::future::Future::poll(t.as_mut(), cx).is_ready() {
            if Instant::now() >= deadline {
                return true;
            }
            t.as_mut().reset(d);
            let _ = std::future::Future::poll(t.as_mut(), cx);
        }
        false
    }

    /// Read once into `rbuf` (at least `want` bytes of room). `Ok(0)` is end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < want {
            self.rbuf.reserve(want);
        }
        poll_read_buf(&mut self.io, &mut self.rbuf, cx)
    }

    /// May this connection carry another request? Not if the member sent anything
    /// no request asked for (read already, waiting in the socket, or decrypted and held
    /// by TLS) or closed it: bytes there now would be read as the next request's
    /// response. Asked when a connection goes back to the pool and again when it is
    /// taken from it.
    ///
    /// Going back, the reactor's readiness decides whether the kernel is asked: a
    /// response read that left the socket drained cleared it, so a clean return costs
    /// no system call (nginx's reuse check is one `getsockopt`, not two). Being taken,
    /// the kernel is always asked: that is the check a stray byte must not slip past.
    fn reusable(&mut self, check: Check) -> Result<(), Discard> {
        if !self.rbuf.is_empty() {
            return Err(Discard::StrayBytes);
        }
        let ask = match check {
            Check::Taken => true,
            Check::Returned => self.io.read_ready_hint(),
        };
        match if ask { self.io.peek() } else { Peek::Quiet } {
            Peek::Quiet => {}
            Peek::Unread => return Err(Discard::StrayBytes),
            Peek::Closed => return Err(Discard::Closed),
        }
        if let Stream::Tls(_) = self.io {
            // Plaintext rustls decrypted with an earlier record but nobody has read.
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            let mut rb = ReadBuf::uninit(&mut probe);
            match Pin::new(&mut self.io).poll_read(&mut cx, &mut rb) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Err(Discard::Closed),
                Poll::Ready(Ok(())) => return Err(Discard::StrayBytes),
                Poll::Ready(Err(_)) => return Err(Discard::Closed),
            }
        }
        Ok(())
    }
}

/// When [`Conn::reusable`] is asked.
#[derive(Clone, Copy)]
enum Check {
    /// The exchange is over and the connection goes back to the idle list.
    Returned,
    /// The connection is taken from the idle list for a request.
    Taken,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// Aligned: the `Arc`'s counts (every response body holds a clone) on lines of their own.
#[repr(align(128))]
struct Inner {
    endpoint: Endpoint,
    connect_timeout: Duration,
    idle_timeout: Duration,
    first_byte_timeout: Duration,
    /// One idle list per front thread (and one for every other thread): a connection is
    /// registered with the reactor of the thread that dialled it and is reused there, and
    /// no lock is shared between threads on the request path.
    idle: Box<[IdleList]>,
}

/// Last in, first out: the most recently used connection is the likeliest alive. Padded
/// to its own cache lines, so one thread's list never shares a line with another's.
#[repr(align(128))]
#[derive(Default)]
struct IdleList(Mutex<Vec<Idle>>);

impl Inner {
    /// The calling thread's idle list.
    fn idle(&self) -> &Mutex<Vec<Idle>> {
        &self.idle[crate::runtime::shard_in(self.idle.len())].0
    }
}

/// Pooled HTTP/1.1 connections to one member endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Idle connections kept per member; beyond it a finished connection is closed.
const MAX_IDLE: usize = 1024;

/// How one exchange on one connection ended, before the caller decides about retries.
enum ExchangeError {
    /// Nothing of the request was written.
    NotSent(io::Error),
    /// Written on a reused connection that closed with no answer and nothing of a body
    /// sent, for an idempotent method: the member cannot have acted on it.
    Unanswered(io::Error),
    Other(UpstreamError),
}

impl From<UpstreamError> for ExchangeError {
    fn from(e: UpstreamError) -> Self {
        ExchangeError::Other(e)
    }
}

impl ExchangeError {
    fn into_upstream(self) -> UpstreamError {
        match self {
            ExchangeError::NotSent(e) => UpstreamError::NotSent(e),
            ExchangeError::Unanswered(e) => UpstreamError::Unanswered(e),
            ExchangeError::Other(e) => e,
        }
    }
}

impl Client {
    pub fn new(endpoint: Endpoint, timeouts: &UpstreamTimeouts) -> Client {
        Client {
            inner: Arc::new(Inner {
                endpoint,
                connect_timeout: timeouts.connect,
                idle_timeout: timeouts.idle,
                first_byte_timeout: timeouts.first_byte,
                idle: (0..crate::runtime::shards())
                    .map(|_| IdleList::default())
                    .collect(),
            }),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    pub fn first_byte_timeout(&self) -> Duration {
        self.inner.first_byte_timeout
    }

    /// Idle pooled connections right now (for tests and the admin API).
    pub fn idle_connections(&self) -> usize {
        self.inner.idle.iter().map(|l| l.0.lock().len()).sum()
    }

    /// Send a request (origin-form URI) as it is and read the response head. The
    /// response body reads from the member's connection as it is polled and hands the
    /// connection back to the pool when it ends.
    pub async fn send(
        &self,
        req: http::Request<Body>,
    ) -> Result<http::Response<UpstreamBody>, UpstreamError> {
        let (parts, body) = req.into_parts();
        self.forward(&parts, body, None, None)
            .await
            .map_err(|(e, _)| e)
    }

    /// Forward a request: `head` (hop-by-hop headers already removed, origin-form URI)
    /// plus the forwarding headers `fwd`, then `body`. The caller keeps the head, so a
    /// request that was never sent can be sent again elsewhere. With a `deadline`, no
    /// response head by then is [`UpstreamError::TimedOut`] (the first-byte timeout).
    pub async fn forward(
        &self,
        head: &http::request::Parts,
        mut body: Body,
        fwd: Option<&Forwarded>,
        deadline: Option<Instant>,
    ) -> Result<http::Response<UpstreamBody>, ForwardError> {
        // Pooled connections first; one the member closed as we reused it (the
        // keep-alive race) gives the request back untouched, to be sent again.
        let mut resent = false;
        while let Some(mut conn) = self.checkout_idle() {
            match exchange(&mut conn, head, fwd, &mut body, true, deadline).await {
                Ok((h, w)) => return Ok(self.response(h, w, body, conn)),
                Err(ExchangeError::NotSent(_)) => continue,
                Err(ExchangeError::Unanswered(_)) => {
                    Retry::AfterSend.record();
                    resent = true;
                }
                Err(e) => return Err((e.into_upstream(), None)),
            }
        }
        // What failed after an unanswered send is reported as such: the request went out.
        let failed = |e: io::Error, resent: bool| {
            if resent {
                UpstreamError::Unanswered(e)
            } else {
                UpstreamError::Connect(e)
            }
        };
        // Boxed: dialling (TCP, TLS handshake) is the cold path and its future is large;
        // inline it would be copied with every request's future.
        let dial = Box::pin(self.connect());
        let dialled = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), dial)
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
            None => dial.await,
        };
        let mut conn = match dialled {
            Ok(c) => c,
            Err(e) => return Err((failed(e, resent), Some(body))),
        };
        match exchange(&mut conn, head, fwd, &mut body, false, deadline).await {
            Ok((h, w)) => Ok(self.response(h, w, body, conn)),
            Err(ExchangeError::NotSent(e)) if resent => {
                Err((UpstreamError::Unanswered(e), Some(body)))
            }
            Err(ExchangeError::NotSent(e)) => Err((UpstreamError::NotSent(e), Some(body))),
            Err(e) => Err((e.into_upstream(), None)),
        }
    }

    fn checkout_idle(&self) -> Option<Box<Conn>> {
        loop {
            let Idle { mut conn, since } = self.inner.idle().lock().pop()?;
            if since.elapsed() > self.inner.idle_timeout {
                Discard::IdleTimeout.record();
                continue;
            }
            match conn.reusable(Check::Taken) {
                Ok(()) => return Some(conn),
                Err(why) => why.record(),
            }
        }
    }

    /// Boxed once for its life: a connection moves between the idle list, the exchange
    /// and the response body several times per request, and a pointer moves for free.
    async fn connect(&self) -> io::Result<Box<Conn>> {
        match tokio::time::timeout(
            self.inner.connect_timeout,
            dial(self.inner.endpoint.clone()),
        )
        .await
        {
            Ok(r) => r.map(|s| Box::new(Conn::new(s))),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    fn response(
        &self,
        head: ResponseHead,
        w: BodyWriter,
        body: Body,
        conn: Box<Conn>,
    ) -> http::Response<UpstreamBody> {
        let (state, upgrade) = match head.framing {
            RespFraming::Length(n) => (Decode::Length(n), false),
            RespFraming::Chunked => (Decode::Chunked(Chunked::Size), false),
            RespFraming::Eof => (Decode::Eof, false),
            RespFraming::Upgrade => (Decode::Done, true),
        };
        let failed = w.failed.is_some();
        let mut body = UpstreamBody {
            conn: Some(conn),
            state,
            upgrade,
            // A request body cut short leaves the connection mid-message.
            keep_alive: head.keep_alive && !failed,
            // The member answered before the request body ended (an echo, a stream, an
            // early 413): the rest of it goes up while the response comes down.
            upload: (!w.done).then(|| Box::new(Upload { w, body })),
            client: self.clone(),
        };
        // An empty body (204, HEAD, `content-length: 0`) may never be polled by the
        // server side, so its connection goes back now.
        if body.state == Decode::Length(0) {
            body.finish();
        }
        let mut resp = http::Response::new(body);
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        resp
    }

    fn put_back(&self, mut conn: Box<Conn>) {
        if let Err(why) = conn.reusable(Check::Returned) {
            why.record();
            return;
        }
        let mut idle = self.inner.idle().lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Write the request on `conn` and read the response head. The request body is written
/// while the response is read, so a member that answers early (a 413 before the upload
/// ends) is heard. Returns the head and whether the whole request body was written.
async fn exchange(
    conn: &mut Conn,
    parts: &http::request::Parts,
    fwd: Option<&Forwarded>,
    body: &mut Body,
    reused: bool,
    deadline: Option<Instant>,
) -> Result<(ResponseHead, BodyWriter), ExchangeError> {
    let mut w = begin(conn, parts, fwd, body);
    let mut head = HeadOut::default();
    let mut answered = false;
    let mut timer = conn.timer.take();
    let mut step = |cx: &mut Context<'_>| {
        ready!(head.poll_send(conn, cx))?;
        if !w.done {
            w.poll(conn, body, cx)
                .map_err(|e| ExchangeError::Other(UpstreamError::ClientBody(e)))?;
        }
        poll_response_head(conn, &parts.method, &mut w, reused, &mut answered, cx)
    };
    let r = poll_fn(|cx| match step(cx) {
        Poll::Pending => match deadline {
            Some(d) if Conn::poll_deadline(&mut timer, d, cx) => {
                Poll::Ready(Err(UpstreamError::TimedOut.into()))
            }
            _ => Poll::Pending,
        },
        ready => ready,
    })
    .await;
    conn.timer = timer;
    r
}

/// Encode the request head into the connection's write buffer, and the writer for the
/// body it announces.
fn begin(
    conn: &mut Conn,
    parts: &http::request::Parts,
    fwd: Option<&Forwarded>,
    body: &Body,
) -> BodyWriter {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    conn.wbuf.clear();
    let framing = h1::encode_request_head(
        &mut conn.wbuf,
        &parts.method,
        path,
        &parts.headers,
        fwd,
        body.is_end_stream(),
        body.size_hint().exact(),
    );
    BodyWriter {
        framing,
        pending: Vec::new(),
        ending: false,
        // A body-less request (or `content-length: 0`) is complete once its head is out.
        done: body.is_end_stream(),
        started: false,
        failed: None,
    }
}

/// How much of the request head has gone out.
#[derive(Default)]
struct HeadOut {
    written: usize,
    flushed: bool,
}

impl HeadOut {
    /// Write (and flush) what is left of the head in `conn.wbuf`. A failure before the
    /// first byte went out leaves the request unsent (it may go to another member).
    fn poll_send(
        &mut self,
        conn: &mut Conn,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ExchangeError>> {
        while self.written < conn.wbuf.len() {
            match Pin::new(&mut conn.io).poll_write(cx, &conn.wbuf[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(fail(self.written, io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(fail(self.written, e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        if !self.flushed {
            ready!(Pin::new(&mut conn.io).poll_flush(cx))
                .map_err(|e| ExchangeError::Other(UpstreamError::Failed(e)))?;
            self.flushed = true;
        }
        Poll::Ready(Ok(()))
    }
}

/// Read until the member's response head is in. A close before any answer on a reused
/// connection, with no body sent, is the keep-alive race: the request comes back unsent.
fn poll_response_head(
    conn: &mut Conn,
    method: &Method,
    w: &mut BodyWriter,
    reused: bool,
    answered: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Result<(ResponseHead, BodyWriter), ExchangeError>> {
    loop {
        if let Some(head) = h1::parse_response(&mut conn.rbuf, method, &mut conn.scratch)
            .map_err(|e| ExchangeError::Other(UpstreamError::Protocol(e)))?
        {
            let framing = w.framing;
            return Poll::Ready(Ok((
                head,
                std::mem::replace(w, BodyWriter::finished(framing)),
            )));
        }
        let closed = match ready!(conn.poll_fill(cx, READ_CHUNK)) {
            Ok(0) => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "member closed the connection before answering",
            ),
            Ok(_) => {
                *answered = true;
                continue;
            }
            Err(e) => e,
        };
        let e = w.failed.take().unwrap_or(closed);
        // A pooled connection the member closed as we reused it (the keep-alive
        // race): nothing was acted on if nothing came back and nothing of a body went.
        if reused && !*answered && !w.started && idempotent(method) {
            return Poll::Ready(Err(ExchangeError::Unanswered(e)));
        }
        return Poll::Ready(Err(UpstreamError::Failed(e).into()));
    }
}

fn fail(written: usize, e: io::Error) -> ExchangeError {
    if written == 0 {
        ExchangeError::NotSent(e)
    } else {
        UpstreamError::Failed(e).into()
    }
}

/// Streams the client's request body to the member, framed as the head announced.
struct BodyWriter {
    framing: ReqFraming,
    /// Bytes waiting to be written, in order.
    pending: Vec<Bytes>,
    /// The body has ended; what is pending is its last bytes.
    ending: bool,
    done: bool,
    /// Some of the body has been taken from the client (it can no longer be handed back).
    started: bool,
    /// Writing failed; the member may still have answered (and closed).
    failed: Option<io::Error>,
}

impl BodyWriter {
    fn finished(framing: ReqFraming) -> BodyWriter {
        BodyWriter {
            framing,
            pending: Vec::new(),
            ending: true,
            done: true,
            started: true,
            failed: None,
        }
    }

    /// Make what progress is possible without waiting. Errors are the client body's.
    fn poll(&mut self, conn: &mut Conn, body: &mut Body, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if !self.pending.is_empty() {
                // At most three pieces wait (chunk size, data, CRLF): no allocation per write.
                let mut slices = [io::IoSlice::new(&[]); 4];
                let n = self.pending.len().min(slices.len());
                for (slot, b) in slices.iter_mut().zip(&self.pending) {
                    *slot = io::IoSlice::new(b);
                }
                match Pin::new(&mut conn.io).poll_write_vectored(cx, &slices[..n]) {
                    Poll::Ready(Ok(0)) => {
                        self.stop(io::ErrorKind::WriteZero.into());
                        return Ok(());
                    }
                    Poll::Ready(Ok(mut n)) => {
                        while n > 0 {
                            let first = &mut self.pending[0];
                            if n >= first.len() {
                                n -= first.len();
                                self.pending.remove(0);
                            } else {
                                first.advance(n);
                                n = 0;
                            }
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        self.stop(e);
                        return Ok(());
                    }
                    Poll::Pending => return Ok(()),
                }
            }
            if self.ending {
                match Pin::new(&mut conn.io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.done = true,
                    Poll::Ready(Err(e)) => self.stop(e),
                    Poll::Pending => {}
                }
                return Ok(());
            }
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    self.started = true;
                    // Trailers are not forwarded (nor were they by hyper's client).
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            if self.framing == ReqFraming::Chunked {
                                let mut size = format!("{:x}\r\n", data.len()).into_bytes();
                                size.shrink_to_fit();
                                self.pending.push(Bytes::from(size));
                                self.pending.push(data);
                                self.pending.push(Bytes::from_static(b"\r\n"));
                            } else {
                                self.pending.push(data);
                            }
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => return Err(io::Error::other(e)),
                Poll::Ready(None) => {
                    if self.framing == ReqFraming::Chunked {
                        self.pending.push(Bytes::from_static(b"0\r\n\r\n"));
                    }
                    self.ending = true;
                }
                Poll::Pending => return Ok(()),
            }
        }
    }

    fn stop(&mut self, e: io::Error) {
        self.failed = Some(e);
        self.pending.clear();
        self.done = true;
    }
}

/// A member's response body, read from its connection as it is polled. When it has been
/// read to its end, the connection goes back to the member's pool; dropped half-read, the
/// connection is closed instead, which is what a client that went away needs.
pub struct UpstreamBody {
    conn: Option<Box<Conn>>,
    state: Decode,
    /// `101 Switching Protocols`: no body; the connection becomes a tunnel.
    upgrade: bool,
    keep_alive: bool,
    /// The request body still going up, driven whenever this body is polled.
    /// Boxed: most requests have no body left to send once the answer starts.
    upload: Option<Box<Upload>>,
    client: Client,
}

struct Upload {
    w: BodyWriter,
    body: Body,
}

impl UpstreamBody {
    /// The body has been read to its end: the connection is reusable or closed.
    fn finish(&mut self) {
        self.state = Decode::Done;
        if let Some(conn) = self.conn.take() {
            // An upload still going means the connection is mid-request; bytes beyond
            // the announced body (the member and roost disagree) are caught by
            // `put_back`'s check.
            if self.keep_alive && self.upload.is_none() {
                self.client.put_back(conn);
            }
        }
    }

    /// After `101 Switching Protocols`: the member's connection as a byte stream (with
    /// whatever it already sent past the head), for the tunnel.
    pub fn into_upgraded(mut self) -> Option<Upgraded> {
        if !self.upgrade {
            return None;
        }
        let conn = *self.conn.take()?;
        Some(crate::rewind::Rewind::new(conn.rbuf.freeze(), conn.io))
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if let (Some(up), Some(conn)) = (self.upload.as_mut(), self.conn.as_mut()) {
            // A client body that fails (stalled past `bodyTimeout`, reset) breaks the
            // exchange: the response is cut, as hyper's client did.
            up.w.poll(conn, &mut up.body, cx)?;
            if up.w.done {
                if up.w.failed.is_some() {
                    self.keep_alive = false;
                }
                self.upload = None;
            }
        }
        if self.upgrade {
            return Poll::Ready(None);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let eof = self.state == Decode::Eof;
        let r = ready!(self.state.poll_next(conn.as_mut(), cx, READ_MAX, "member"));
        if self.state == Decode::Done {
            // A body read to the member's close ends the connection's life.
            self.keep_alive &= !eof;
            // The last bytes are in hand: the connection goes back before the client
            // has even been sent them.
            self.finish();
        }
        Poll::Ready(r)
    }
}

impl Source for Conn {
    fn buf(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        Conn::poll_fill(self, cx, want.max(READ_CHUNK))
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match ready!(this.poll_next(cx)) {
            Some(Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(Err(e)) => {
                // A broken body leaves the connection unusable.
                this.conn = None;
                this.state = Decode::Done;
                Poll::Ready(Some(Err(e)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.upgrade || matches!(self.state, Decode::Done | Decode::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            _ if self.upgrade => SizeHint::with_exact(0),
            Decode::Length(n) => SizeHint::with_exact(n),
            Decode::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// A member connection after `101 Switching Protocols`: first the bytes it sent with
/// the head, then the socket.
pub type Upgraded = crate::rewind::Rewind<Stream>;
