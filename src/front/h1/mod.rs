//! roost's own HTTP/1.1 server loop for client connections (the proxy path; HTTP/2 stays
//! on hyper).
//!
//! Why not hyper's: hyper's h1 server keeps fixed 8 KiB read and write buffers for a
//! connection's whole life (21 KiB per idle keep-alive connection against nginx's 0.5) and
//! was a third of the front's instructions per request. Here an idle connection holds no
//! buffer, a small response goes out in one write, and one timer serves every idle wait.
//!
//! One connection, in order: [`parse`] a request head (under `headerWaitTimeout`, 431/400
//! on a bad one) → hand the request to the proxy with a [`body::RequestBody`] that reads
//! the body off the socket when the upstream side asks → while the proxy waits, watch
//! the socket (a client that closes leaves the queue: `ClientGone`) → [`write`] the
//! response → the next request (pipelined bytes are already buffered), or close.
//!
//! Behaviours kept from hyper's server, each with a test in `tests/front.rs` or
//! `tests/front_h1.rs`: pipelining, `100 Continue` sent on the first body read, upgrades
//! handed over after the `101` with the bytes that came with the head, HTTP/1.0
//! keep-alive, HEAD/204/304 without a body, `Date` on every response, graceful close on
//! shutdown (after the response in flight), and the write-stall timeout
//! ([`super::connection::Stalled`]).

mod body;
mod write;

use self::body::{BodyRead, RequestBody, Shared, SharedConn};
use self::write::{ResponseWriter, Sink};
use super::connection::{Stalled, WokenOnly};
use super::overload::Tracked;
use crate::body::{Body, BoxError};
use crate::config::model::Limits;
use crate::error::Reason;
use crate::h1::reply::{self, Ask};
use crate::h1::request::{self as parse, HeadError, Scratch};
use crate::h1::Chunked;
use crate::rewind::Rewind;
use bytes::BytesMut;
use http::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

pub use crate::h1::request::MAX_HEADERS;

/// A request the HTTP/1.1 server refused itself (the connection closes after it).
pub struct Refused {
    pub status: StatusCode,
    /// `None` for a header timeout (a bare 408).
    pub reason: Option<Reason>,
    /// From when the server started waiting for the head.
    pub elapsed: Duration,
}

/// What the proxy returns for each request: its response, or an error that closes the
/// connection without one.
pub type Handled = Result<Response<Body>, BoxError>;

/// How the client's side of an upgrade reaches the proxy's tunnel: put in the request's
/// extensions, fulfilled once the `101` has been written.
/// (Request extensions must be `Clone`; the first to wait takes it.)
#[derive(Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl OnUpgrade {
    pub async fn wait(self) -> Option<Upgraded> {
        let rx = self.0.lock().take()?;
        rx.await.ok()
    }
}

/// A client connection as a tunnel sees it, whatever carries it (TCP, TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The client's connection after `101 Switching Protocols`: the bytes that arrived
/// with (or after) the request head first, then the socket.
pub type Upgraded = Rewind<Box<dyn Io>>;

/// What waiting for the next request head ended with.
// Lives for one move on the stack; boxing the head would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Next {
    Head(parse::Head),
    Refuse(HeadError),
    /// The head did not complete within the deadline (some of it had arrived).
    TimedOut,
    /// The client closed, went silent past the deadline, or the front is stopping.
    Closed,
    /// The overload manager took the connection's place (connection pressure): drop it.
    Reclaimed,
}

/// Serve one HTTP/1.1 connection until the client or roost ends it.
///
/// `first` is what was already read off the connection (the protocol sniff's bytes).
///
/// `refused` is told about every request the server answers itself before the proxy sees
/// it (an unparsable or oversized head, a header timeout), for the access log.
///
/// `track` is the connection's place in the overload registry: told when a head arrives
/// and when the connection goes idle, and watched (only while a head is awaited) for a
/// reclaim.
pub async fn serve<I, H, F>(
    io: I,
    first: BytesMut,
    limits: &Limits,
    mut handler: H,
    refused: impl FnOnce(Refused),
    shutdown: watch::Receiver<bool>,
    track: &Tracked,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: FnMut(Request<Body>) -> F,
    F: Future<Output = Handled>,
{
    let max_head = limits.max_request_header_bytes;
    // hyper's header timer also ran while a keep-alive connection waited, and the idle
    // watchdog closed it after `connectionTimeout`: one deadline covers both.
    let idle_limit = limits.header_wait_timeout.min(limits.connection_timeout);
    let mut shared = Shared::new(Stalled::new(io, limits.connection_timeout));
    shared.rbuf = first;
    let conn: SharedConn<Stalled<I>> = Arc::new(Mutex::new(shared));
    let mut wait_start = Instant::now();
    // One timer for the connection's life: a wait moves the deadline, and the timer is
    // re-armed only when it fires early, so a busy connection touches the timer wheel
    // about once per `idle_limit`, not once per request.
    let timer = tokio::time::sleep_until((wait_start + idle_limit).into());
    tokio::pin!(timer);
    // Checked as each response is written, so the last one says `connection: close`.
    let probe = shutdown.clone();
    let stop = stop_signal(shutdown);
    tokio::pin!(stop);
    let mut wait = HeadWait {
        track,
        scratch: Scratch::default(),
        timer,
        stop,
        stopping: false,
    };

    loop {
        let next = wait.next(&conn, max_head, wait_start + idle_limit).await;
        let head = match next {
            Next::Head(h) => {
                track.set_active();
                h
            }
            Next::Refuse(e) => {
                Box::pin(refuse_head(&conn, Some(e), refused, wait_start)).await;
                return;
            }
            Next::TimedOut => {
                Box::pin(refuse_head(&conn, None, refused, wait_start)).await;
                return;
            }
            Next::Closed => {
                close(&conn).await;
                return;
            }
            Next::Reclaimed => return,
        };

        // Boxed: the request's state (its future, the response being written) exists only
        // while one is in flight, and an idle connection's task should not carry its room.
        // The future is still built on the stack and copied in whole (one `memcpy` of its
        // size per request, into memory a busy thread has not touched lately), which is
        // why `exchange` keeps it small.
        let outcome = Box::into_pin(Box::write(
            Box::new_uninit(),
            exchange(&conn, head, &mut handler, max_head, wait.stopping, &probe),
        ))
        .await;
        if !matches!(outcome, Outcome::Next) {
            return end(&conn, outcome).await;
        }
        wait_start = Instant::now();
        track.set_idle(wait_start);
    }
}

/// Ready once the front starts stopping (woken only by that, not by the connection).
fn stop_signal(mut shutdown: watch::Receiver<bool>) -> WokenOnly<impl Future<Output = ()>> {
    WokenOnly::new(async move {
        if *shutdown.borrow() {
            return;
        }
        let _ = shutdown.changed().await;
    })
}

/// End the connection as its last request left it.
async fn end<I: AsyncRead + AsyncWrite + Unpin>(conn: &SharedConn<I>, outcome: Outcome) {
    match outcome {
        Outcome::Close => close(conn).await,
        Outcome::Linger => Box::pin(linger(conn)).await,
        Outcome::Next | Outcome::Gone => {}
    }
}

/// The connection's wait for each request head: what it keeps from one wait to the next
/// (the one timer, the shutdown watch, the parser's scratch space).
struct HeadWait<'a, S> {
    track: &'a Tracked,
    scratch: Scratch,
    timer: Pin<&'a mut tokio::time::Sleep>,
    stop: Pin<&'a mut S>,
    /// The front is stopping: an idle connection closes, a busy one after its response.
    stopping: bool,
}

impl<S: Future<Output = ()>> HeadWait<'_, S> {
    /// Wait for the next request head until `deadline`: parse what is buffered, read
    /// more, and end the wait on a reclaim, a close, shutdown while idle, or the deadline.
    async fn next<I>(&mut self, conn: &SharedConn<I>, max_head: usize, deadline: Instant) -> Next
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        poll_fn(|cx| {
            // Checked first: a connection reclaimed without a head stays without one.
            if self.track.poll_reclaimed(cx).is_ready() {
                return Poll::Ready(Next::Reclaimed);
            }
            let mut s = conn.lock();
            loop {
                if !s.rbuf.is_empty() {
                    match parse::parse(&mut s.rbuf, max_head, &mut self.scratch) {
                        Ok(Some(h)) => return Poll::Ready(Next::Head(h)),
                        Ok(None) => {}
                        Err(e) => return Poll::Ready(Next::Refuse(e)),
                    }
                }
                if s.eof {
                    return Poll::Ready(Next::Closed);
                }
                match s.poll_fill(cx, 0) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Next::Closed),
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Pending => break,
                }
            }
            let idle = s.rbuf.is_empty();
            drop(s);
            if !self.stopping && self.stop.as_mut().poll(cx).is_ready() {
                self.stopping = true;
            }
            if self.stopping && idle {
                return Poll::Ready(Next::Closed);
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                if Instant::now() >= deadline {
                    return Poll::Ready(if idle { Next::Closed } else { Next::TimedOut });
                }
                self.timer.as_mut().reset(deadline.into());
                let _ = self.timer.as_mut().poll(cx);
            }
            Poll::Pending
        })
        .await
    }
}

/// Answer a head the connection refuses itself (`None`: it did not complete in time, a
/// bare 408), tell `refused`, and close.
async fn refuse_head<I: AsyncRead + AsyncWrite + Unpin>(
    conn: &SharedConn<I>,
    error: Option<HeadError>,
    refused: impl FnOnce(Refused),
    wait_start: Instant,
) {
    let Some(e) = error else {
        refused(Refused {
            status: StatusCode::REQUEST_TIMEOUT,
            reason: None,
            elapsed: wait_start.elapsed(),
        });
        return refuse(conn, StatusCode::REQUEST_TIMEOUT, http::HeaderMap::new()).await;
    };
    let reason = match e {
        HeadError::TooLarge => Reason::HeadersTooLarge,
        HeadError::Bad(why) => {
            tracing::debug!(why, "bad request head");
            Reason::BadRequest
        }
    };
    // The status and the reason header only: a body would be read by a client that may
    // not even speak HTTP.
    let (mut parts, _) = reason.response(Duration::ZERO).into_parts();
    parts.headers.remove(http::header::RETRY_AFTER);
    refused(Refused {
        status: parts.status,
        reason: Some(reason),
        elapsed: wait_start.elapsed(),
    });
    refuse(conn, parts.status, parts.headers).await;
}

/// What one request left the connection fit for.
enum Outcome {
    /// Close, but let the client finish sending first (see [`linger`]).
    Linger,
    /// Read the next request.
    Next,
    /// Close (gracefully) now.
    Close,
    /// Nothing more to do: the client left, the response failed, or the connection was
    /// handed to an upgrade tunnel.
    Gone,
}

/// One request on the connection: hand it to the proxy, wait for the response while
/// watching the client, write it.
///
/// The proxy's future lives inside this one (boxed once by the caller): one allocation
/// per request for both. This future's size is what each request in flight holds and
/// what is copied as the request starts, so it is kept small (BENCHMARKS.md, "The
/// per-request footprint"): a plain `fn` turns the head into the request before the
/// future exists (an `async fn` would keep the head's room for its whole life), and the
/// proxy's future ends in its own block, so the response's write reuses its room.
// Inlined into the caller's `Box::write`, whose copy then moves less (callgrind: -0.8 %
// instructions per request).
#[inline(always)]
fn exchange<'a, I, H, F>(
    conn: &'a SharedConn<I>,
    head: parse::Head,
    handler: &'a mut H,
    max_head: usize,
    stopping: bool,
    shutdown: &'a watch::Receiver<bool>,
) -> impl Future<Output = Outcome> + 'a
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: FnMut(Request<Body>) -> F,
    F: Future<Output = Handled> + 'a,
{
    let keep_alive = head.keep_alive;
    let (req, upgrade_tx) = request_of(conn, head);
    let ask = Ask {
        head_method: req.method() == Method::HEAD,
        version: req.version(),
        keep_alive: keep_alive && !stopping,
    };
    async move {
        let resp = {
            // A finished proxy future holds nothing; an unfinished one (the client left)
            // is dropped when this block ends, which frees its queue place. Pinned here
            // and lent to `respond_or_leave`: passed by value, the proxy's future (a few
            // KB) would be copied once more into that one's, on every request.
            let proxied = handler(req);
            tokio::pin!(proxied);
            match respond_or_leave(conn, proxied.as_mut(), max_head).await {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    // The proxy closes instead of answering (`TcpLevel` rejections).
                    tracing::debug!(error = %e, "request ended without a response");
                    return Outcome::Close;
                }
                None => {
                    tracing::debug!("client closed its connection while its request waited");
                    return Outcome::Gone;
                }
            }
        };
        let ask = Ask {
            keep_alive: ask.keep_alive && !matches!(shutdown.has_changed(), Ok(true)),
            ..ask
        };
        write_response(conn, resp, &ask, upgrade_tx).await
    }
}

/// The request as the proxy takes it: its body reads the connection when polled, and an
/// upgrade request carries the way to the connection once the `101` is out.
fn request_of<I>(
    conn: &SharedConn<I>,
    head: parse::Head,
) -> (Request<Body>, Option<oneshot::Sender<Upgraded>>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let parse::Head {
        request,
        framing,
        expect_continue,
        upgrade,
        ..
    } = head;
    let read = match framing {
        parse::Framing::None => BodyRead::Done,
        parse::Framing::Length(n) => BodyRead::Length(n),
        parse::Framing::Chunked => BodyRead::Chunked(Chunked::Size),
    };
    let generation = conn.lock().begin_body(read, expect_continue);
    let body = match framing {
        parse::Framing::None => crate::body::empty(),
        _ => crate::body::boxed(RequestBody::new(conn.clone(), generation)),
    };
    let mut req = request.map(|()| body);
    let mut upgrade_tx = None;
    if upgrade {
        let (tx, rx) = oneshot::channel();
        req.extensions_mut()
            .insert(OnUpgrade(Arc::new(Mutex::new(Some(rx)))));
        upgrade_tx = Some(tx);
    }
    (req, upgrade_tx)
}

/// Wait for the proxy's response (`None`: the client left first). Meanwhile, once the
/// request body has been read, watch the socket: end of stream means the client left
/// (its queue place is freed and the member request cancelled, as nginx does), and
/// pipelined bytes are kept.
async fn respond_or_leave<I, F>(
    conn: &SharedConn<I>,
    mut fut: Pin<&mut F>,
    max_head: usize,
) -> Option<Handled>
where
    I: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = Handled>,
{
    poll_fn(|cx| {
        if let Poll::Ready(r) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        let mut s = conn.lock();
        if s.body == BodyRead::Done && !s.eof {
            while s.rbuf.len() < max_head {
                match s.poll_fill(cx, 0) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
        }
        Poll::Pending
    })
    .await
}

/// Write the response, then say what the connection is fit for: the next request, a
/// close, a lingering close, or nothing (handed to an upgrade tunnel, or cut short).
async fn write_response<I>(
    conn: &SharedConn<I>,
    resp: Response<Body>,
    ask: &Ask,
    upgrade_tx: Option<oneshot::Sender<Upgraded>>,
) -> Outcome
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (parts, body) = resp.into_parts();
    let mut out = Vec::with_capacity(256 + parts.headers.len() * 48);
    let (framing, keep_alive) =
        reply::encode_head(&mut out, parts.status, &parts.headers, &body, ask);
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    drop(parts);
    let mut w = ResponseWriter::new(out, framing, body);
    if let Err(e) = poll_fn(|cx| w.poll_write(cx, &**conn)).await {
        tracing::debug!(error = %e, "response cut short");
        return Outcome::Gone;
    }
    if switching {
        if let Some(tx) = upgrade_tx {
            let mut s = conn.lock();
            if let Some(io) = s.io.take() {
                let pre = s.rbuf.split().freeze();
                let _ = tx.send(Rewind::new(pre, Box::new(io) as Box<dyn Io>));
            }
            return Outcome::Gone;
        }
    }
    let mut s = conn.lock();
    // A request body the proxy did not read to its end leaves the connection
    // mid-message.
    if s.body != BodyRead::Done && !s.eof {
        // The client may still be sending a body nobody will read (an early 413).
        return Outcome::Linger;
    }
    if !(keep_alive && w.complete() && !s.eof) {
        return Outcome::Close;
    }
    if s.rbuf.is_empty() {
        // Idle: hold no read buffer (the next read goes through the stack).
        s.rbuf = BytesMut::new();
    }
    Outcome::Next
}

/// Answer a request the connection itself refuses (bad or oversized head, header
/// timeout), then close.
async fn refuse<I: AsyncRead + AsyncWrite + Unpin>(
    conn: &SharedConn<I>,
    status: StatusCode,
    headers: http::HeaderMap,
) {
    let ask = Ask {
        head_method: false,
        version: http::Version::HTTP_11,
        keep_alive: false,
    };
    let body = crate::body::empty();
    let mut out = Vec::with_capacity(256);
    let (framing, _) = reply::encode_head(&mut out, status, &headers, &body, &ask);
    let mut w = ResponseWriter::new(out, framing, body);
    if poll_fn(|cx| w.poll_write(cx, &**conn)).await.is_ok() {
        // The client may be mid-way through a head or body that will never be read.
        linger(conn).await;
    }
}

/// How long, and how much, a closing connection keeps reading what the client still sends,
/// and how long a quiet client is waited for (nginx: `lingering_time`, `lingering_timeout`).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;
const LINGER_QUIET: Duration = Duration::from_millis(500);

/// Close after a response while the client may still be sending (an unread request
/// body, a refused head): send the FIN, then read and discard for up to [`LINGER_TIME`]
/// or [`LINGER_BYTES`], or until the client is quiet for [`LINGER_QUIET`]. Closing a socket with unread bytes makes the kernel send a reset,
/// which can destroy the response on the client's side before it is read (nginx's
/// lingering close, for the same reason).
async fn linger<I: AsyncRead + AsyncWrite + Unpin>(conn: &SharedConn<I>) {
    let io = conn.lock().io.take();
    let Some(mut io) = io else {
        return;
    };
    if io.shutdown().await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = LINGER_BYTES;
    while left > 0 {
        let until = deadline.min(tokio::time::Instant::now() + LINGER_QUIET);
        match tokio::time::timeout_at(until, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}

/// Close the connection: TLS sends its close_notify, TCP its FIN (bounded by the
/// write-stall timeout inside [`Stalled`]).
async fn close<I: AsyncRead + AsyncWrite + Unpin>(conn: &SharedConn<I>) {
    let io = conn.lock().io.take();
    if let Some(mut io) = io {
        let _ = io.shutdown().await;
    }
}

impl<I: AsyncWrite + Unpin> Sink for Mutex<Shared<I>> {
    fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.lock().io.as_mut() {
            Some(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.lock().io.as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}
