//! Protocol choice for a plain-TCP connection, HTTP/2 connections on hyper's server with
//! every timer set, and the write-stall guard both protocols use (reliability.md §3.0).
//! HTTP/1.1 connections are served by [`super::h1`].
//!
//! - Plain TCP: the first bytes are read under `headerWaitTimeout` to tell h2c prior
//!   knowledge from HTTP/1.1, because hyper-util's auto builder has no deadline while it
//!   sniffs (a silent client would be held forever). TLS: ALPN decides.
//! - HTTP/2: an idle watchdog closes a connection with no request in flight for
//!   `connectionTimeout`; hyper's keep-alive pings find dead peers.
//! - Both: [`Stalled`] closes a connection whose writes make no progress for
//!   `connectionTimeout` (a client that stopped reading).

use super::overload::Tracked;
use crate::body::Body;
use crate::config::model::Limits;
use bytes::BytesMut;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The HTTP/2 connection preface a prior-knowledge client starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Read the first bytes of a plain-TCP connection to choose the protocol; they are
/// returned to be served first. `None` if the client closed or sent nothing decisive
/// within the deadline.
///
/// Read, not peeked: a peek never reports the end of stream behind bytes already
/// buffered, so a client that sent part of the h2 preface and closed would be held (and
/// polled) until the deadline.
pub async fn sniff(stream: &TcpStream, deadline: Duration) -> Option<(Protocol, BytesMut)> {
    let fut = async {
        let mut buf = BytesMut::new();
        loop {
            stream.readable().await.ok()?;
            match read_some(stream, &mut buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return None,
            }
            let n = buf.len().min(H2_PREFACE.len());
            if buf[..n] != H2_PREFACE[..n] {
                return Some((Protocol::Http1, buf));
            }
            if n == H2_PREFACE.len() {
                return Some((Protocol::Http2, buf));
            }
            // A partial preface: wait for the rest.
        }
    };
    tokio::time::timeout(deadline, fut).await.ok().flatten()
}

/// One non-blocking read appended to `buf`, through the stack so the buffer is exactly
/// as large as what arrived (and the task's future carries no read buffer).
fn read_some(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let mut tmp = [0u8; 4096];
    let n = stream.try_read(&mut tmp)?;
    buf.extend_from_slice(&tmp[..n]);
    Ok(n)
}

/// Per-connection activity, shared by the request service and the idle watchdog.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `start` when the last request finished.
    last_done_ms: AtomicU64,
    /// The connection's place in the overload registry (active while a stream is open).
    track: Option<Arc<Tracked>>,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Self::with(None)
    }

    /// Activity that also reports idle/active to the overload registry.
    pub fn tracked(track: Arc<Tracked>) -> Arc<Activity> {
        Self::with(Some(track))
    }

    fn with(track: Option<Arc<Tracked>>) -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            track,
        })
    }

    /// Mark a request in flight until the guard drops (the response body finished).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) == 0 {
            if let Some(t) = &self.track {
                t.set_active();
            }
        }
        InFlight {
            activity: self.clone(),
            done_at: None,
        }
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let done = Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed));
        Some(self.start.elapsed().saturating_sub(done))
    }
}

pub struct InFlight {
    activity: Arc<Activity>,
    /// When the request ended, if the holder knows it (saves a clock read).
    done_at: Option<Instant>,
}

impl InFlight {
    pub fn done_at(&mut self, at: Instant) {
        self.done_at = Some(at);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.activity;
        let done = self.done_at.map_or_else(
            || a.start.elapsed(),
            |at| at.saturating_duration_since(a.start),
        );
        a.last_done_ms
            .store(done.as_millis() as u64, Ordering::Relaxed);
        if a.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            if let Some(t) = &a.track {
                // A stream that opens meanwhile may be overwritten as idle: a reclaimed
                // HTTP/2 connection with a stream open still closes gracefully.
                t.set_idle(a.start + done);
            }
        }
    }
}

/// Serve one HTTP/2 connection until it ends, the idle watchdog fires, or shutdown is
/// asked (then in-flight streams finish after a GOAWAY).
pub async fn serve_h2<I, S>(
    io: I,
    limits: &Limits,
    activity: Arc<Activity>,
    service: S,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<http::Request<Incoming>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(Stalled::new(io, limits.connection_timeout));
    let idle_limit = limits.connection_timeout;
    let tick = (idle_limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let watchdog = WokenOnly::new(async {
        loop {
            tokio::time::sleep(tick).await;
            if activity.idle_for().is_some_and(|d| d >= idle_limit) {
                return;
            }
        }
    });
    let stop = WokenOnly::new(async {
        if *shutdown.borrow() {
            return;
        }
        let _ = shutdown.changed().await;
    });
    // Reclaimed under connection pressure: an idle connection is dropped at once, one
    // with a stream open (a race with the reclaim) closes gracefully.
    let reclaim = async {
        match &activity.track {
            Some(t) => t.reclaimed().await,
            None => std::future::pending().await,
        }
        activity.idle_for().is_some()
    };
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(limits.max_request_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = b.serve_connection(io, service);
    // In-flight streams get `shutdownGrace` (at least a few seconds) to finish.
    let grace = limits.shutdown_grace.max(Duration::from_secs(1));
    drive(
        conn,
        watchdog,
        stop,
        reclaim,
        |c| c.graceful_shutdown(),
        grace,
    )
    .await;
}

/// Run a hyper connection future; on watchdog or shutdown, shut it down gracefully and
/// let it finish what is in flight.
async fn drive<C, E>(
    conn: C,
    watchdog: impl Future<Output = ()>,
    stop: impl Future<Output = ()>,
    reclaim: impl Future<Output = bool>,
    graceful: impl FnOnce(Pin<&mut C>),
    grace: Duration,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    tokio::pin!(watchdog);
    tokio::pin!(stop);
    tokio::pin!(reclaim);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with error");
            }
            return;
        }
        _ = &mut watchdog => tracing::debug!("idle connection closed"),
        _ = &mut stop => {}
        idle = &mut reclaim => {
            if idle {
                tracing::debug!("idle connection reclaimed");
                return;
            }
        }
    }
    graceful(conn.as_mut());
    // HTTP/2's graceful close waits for the peer to acknowledge a PING after the GOAWAY;
    // a peer that never answers would hold the connection (and its permit) forever.
    match tokio::time::timeout(grace, conn).await {
        Ok(Err(e)) => tracing::debug!(error = %e, "connection ended with error during shutdown"),
        Ok(Ok(())) => {}
        Err(_) => tracing::debug!("peer did not finish a graceful close; dropped"),
    }
}

/// Shared with the worker's connections, which sit beside the same kind of signals.
pub(super) use crate::woken::WokenOnly;

/// An I/O wrapper that fails a write which makes no progress for `limit`: a client that
/// stops reading cannot pin a response (and its pool slot) forever.
pub struct Stalled<I> {
    io: I,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> Stalled<I> {
    pub fn new(io: I, limit: Duration) -> Self {
        Stalled {
            io,
            limit,
            timer: None,
        }
    }

    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => {
                let limit = self.limit;
                let t = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if t.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client stopped reading",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.timer = None;
                ready
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Stalled<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Stalled<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(cx, r)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.check(cx, r)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connection_timeout: Duration) -> Limits {
        Limits {
            max_request_header_bytes: 16384,
            header_wait_timeout: Duration::from_secs(60),
            connection_timeout,
            body_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 10,
            shutdown_grace: Duration::from_secs(1),
            max_connections_per_client: None,
            overload: Default::default(),
        }
    }

    fn service() -> impl Service<
        http::Request<Incoming>,
        Response = http::Response<Body>,
        Error = std::convert::Infallible,
        Future = std::future::Ready<Result<http::Response<Body>, std::convert::Infallible>>,
    > + Clone {
        hyper::service::service_fn(|_req: http::Request<Incoming>| {
            std::future::ready(Ok(http::Response::new(crate::body::empty())))
        })
    }

    /// The idle watchdog and the shutdown signal still end a connection with nothing in
    /// flight now that they are polled only when their own wakers fire.
    #[tokio::test]
    async fn idle_watchdog_and_shutdown_close_a_silent_connection() {
        let (_client, server) = tokio::io::duplex(1024);
        let (_tx, rx) = watch::channel(false);
        let short = limits(Duration::from_millis(200));
        let served = serve_h2(server, &short, Activity::new(), service(), rx);
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("the idle watchdog closes the connection");

        let (_client, server) = tokio::io::duplex(1024);
        let (tx, rx) = watch::channel(false);
        let served = tokio::spawn(async move {
            serve_h2(
                server,
                &limits(Duration::from_secs(60)),
                Activity::new(),
                service(),
                rx,
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("shutdown closes the connection")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn woken_only_still_finishes_when_its_own_waker_fires() {
        let (tx, mut rx) = watch::channel(false);
        let stop = WokenOnly::new(async move {
            let _ = rx.changed().await;
        });
        let sleep = WokenOnly::new(tokio::time::sleep(Duration::from_secs(5)));
        tokio::pin!(stop);
        tokio::pin!(sleep);
        // Neither is ready; polling them again without a wake-up stays pending.
        for _ in 0..2 {
            let pending =
                std::future::poll_fn(|cx| Poll::Ready(stop.as_mut().poll(cx).is_pending()));
            assert!(pending.await);
            let pending =
                std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_pending()));
            assert!(pending.await);
        }
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), stop)
            .await
            .expect("the watch change wakes it");
        tokio::time::timeout(Duration::from_secs(10), sleep)
            .await
            .expect("the timer wakes it");
    }
}
