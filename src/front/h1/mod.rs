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
    mut shutdown: watch::Receiver<bool>,
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
    let mut scratch = Scratch::default();
    let mut wait_start = Instant::now();
    // One timer for the connection's life: a wait moves the deadline, and the timer is
    // re-armed only when it fires early, so a busy connection touches the timer wheel
    // about once per `idle_limit`, not once per request.
    let timer = tokio::time::sleep_until((wait_start + idle_limit).into());
    tokio::pin!(timer);
    // Checked as each response is written, so the last one says `connection: close`.
    let probe = shutdown.clone();
    let stop = WokenOnly::new(async move {
        if *shutdown.borrow() {
            return;
        }
        let _ = shutdown.changed().await;
    });
    tokio::pin!(stop);
    let mut stopping = false;

    loop {
        let deadline = wait_start + idle_limit;
        let next = poll_fn(|cx| {
            // Checked first: a connection reclaimed without a head stays without one.
            if track.poll_reclaimed(cx).is_ready() {
                return Poll::Ready(Next::Reclaimed);
            }
            let mut s = conn.lock();
            loop {
                if !s.rbuf.is_empty() {
                    match parse::parse(&mut s.rbuf, max_head, &mut scratch) {
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
            if !stopping && stop.as_mut().poll(cx).is_ready() {
                stopping = true;
            }
            if stopping && idle {
                return Poll::Ready(Next::Closed);
            }
            if timer.as_mut().poll(cx).is_ready() {
                if Instant::now() >= deadline {
                    return Poll::Ready(if idle { Next::Closed } else { Next::TimedOut });
                }
                timer.as_mut().reset(deadline.into());
                let _ = timer.as_mut().poll(cx);
            }
            Poll::Pending
        })
        .await;

        let head = match next {
            Next::Head(h) => {
                track.set_active();
                h
            }
            Next::Refuse(e) => {
                let reason = match e {
                    HeadError::TooLarge => Reason::HeadersTooLarge,
                    HeadError::Bad(why) => {
                        tracing::debug!(why, "bad request head");
                        Reason::BadRequest
                    }
                };
                // The status and the reason header only: a body would be read by a
                // client that may not even speak HTTP.
                let (mut parts, _) = reason.response(Duration::ZERO).into_parts();
                parts.headers.remove(http::header::RETRY_AFTER);
                refused(Refused {
                    status: parts.status,
                    reason: Some(reason),
                    elapsed: wait_start.elapsed(),
                });
                Box::pin(refuse(&conn, parts.status, parts.headers)).await;
                return;
            }
            Next::TimedOut => {
                refused(Refused {
                    status: StatusCode::REQUEST_TIMEOUT,
                    reason: None,
                    elapsed: wait_start.elapsed(),
                });
                Box::pin(refuse(
                    &conn,
                    StatusCode::REQUEST_TIMEOUT,
                    http::HeaderMap::new(),
                ))
                .await;
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
        let outcome = Box::pin(exchange(
            &conn,
            head,
            &mut handler,
            max_head,
            stopping,
            &probe,
        ))
        .await;
        match outcome {
            Outcome::Next => {}
            Outcome::Close => {
                close(&conn).await;
                return;
            }
            Outcome::Linger => {
                Box::pin(linger(&conn)).await;
                return;
            }
            Outcome::Gone => return,
        }
        wait_start = Instant::now();
        track.set_idle(wait_start);
    }
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
/// per request for both.
async fn exchange<I, H, F>(
    conn: &SharedConn<I>,
    head: parse::Head,
    handler: &mut H,
    max_head: usize,
    stopping: bool,
    shutdown: &watch::Receiver<bool>,
) -> Outcome
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: FnMut(Request<Body>) -> F,
    F: Future<Output = Handled>,
{
    let parse::Head {
        request,
        framing,
        keep_alive,
        expect_continue,
        upgrade,
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
    let ask_method_head = req.method() == Method::HEAD;
    let version = req.version();
    let fut = handler(req);
    tokio::pin!(fut);

    // Wait for the response. Meanwhile, once the request body has been read, watch the
    // socket: end of stream means the client left (its queue place is freed and the
    // member request cancelled, as nginx does), and pipelined bytes are kept.
    let resp = poll_fn(|cx| {
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
    .await;
    // A finished proxy future holds nothing; an unfinished one (the client left) is dropped
    // when this function returns just below, which frees its queue place.
    let resp = match resp {
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
    };

    let (parts, body) = resp.into_parts();
    let ask = Ask {
        head_method: ask_method_head,
        version,
        keep_alive: keep_alive && !stopping && !matches!(shutdown.has_changed(), Ok(true)),
    };
    let mut out = Vec::with_capacity(256 + parts.headers.len() * 48);
    let (framing, keep_alive) =
        reply::encode_head(&mut out, parts.status, &parts.headers, &body, &ask);
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
