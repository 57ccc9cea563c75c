//! The HTTP/1 header-read timeout (slowloris guard), kept per connection instead of by
//! hyper per request.
//!
//! hyper's own timeout (`http1().header_read_timeout`, 30 s by default once a timer is
//! given) starts when hyper begins to read a request head and ends when the head is in. To
//! start it on time, hyper runs its read/write loop a second time after every response
//! (another read attempt, another dispatch pass), arms a boxed sleep from its `Timer`
//! (an allocation and a clock read) and drops it when the head arrives. On a keep-alive
//! "hello" that was about a ninth of the worker's instructions (BENCHMARKS.md, "The
//! worker's per-request cost").
//!
//! Here hyper's timeout is off, and each connection keeps a [`HeadWait`]: the connection
//! waits for a head from when it is accepted, and again from when a response's body is
//! done (dropped by hyper: the moment hyper would go back to reading a head), until the
//! next request reaches the service. [`WithHeaderTimeout`], which polls the connection
//! anyway, holds one tokio timer per connection at or before the deadline; when it passes
//! with the connection still waiting, the connection ends with [`HeaderTimedOut`], as
//! hyper's ends with its timeout error (no response is sent in either case). Per request
//! this costs a read of the coarse monotonic clock ([`now_ns`]) and two stores to the
//! connection's own cache line; a deadline is exact to that clock's tick (a few ms).
//!
//! HTTP/2 connections have no header timeout in hyper; once a connection's first request
//! shows HTTP/2, its wait is off for good. (Before that request, an h2c connection must
//! send it within the timeout, as an HTTP/1 one must.)

use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// hyper's default header-read timeout, kept as the worker's.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `since` when the connection is not waiting for a head.
const NOT_WAITING: u64 = 0;
/// `since` once the connection is known to be HTTP/2.
const OFF: u64 = u64::MAX;

/// Whether one connection is waiting for a request head, and since when.
#[derive(Debug)]
pub struct HeadWait {
    /// A [`now_ns`] reading (at least 1), or [`NOT_WAITING`], or [`OFF`].
    since: AtomicU64,
}

/// Now, on the coarse monotonic clock, in nanoseconds (at least 1).
///
/// Read per request, so it is the cheap clock: `CLOCK_MONOTONIC_COARSE` is the kernel's
/// last tick (a few milliseconds' resolution, plenty for a 30 s timeout), read from the
/// vDSO without a counter read, and kept as a plain number, with none of `Instant`'s
/// arithmetic. It is the clock `CLOCK_MONOTONIC` (what `Instant` reads) is, minus under a
/// tick; [`instant_at`] converts.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec` for the duration of the call, and
    // `CLOCK_MONOTONIC_COARSE` exists on every Linux the worker runs on (2.6.32+); the
    // call writes `ts` and nothing else. It cannot fail for a valid clock and pointer, and
    // if it did, `ts` would stay zero: a wait timed from the clock's start, cut off early
    // rather than never.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    let ns = (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64);
    ns.max(1)
}

/// The tokio instant of the [`now_ns`] reading `ns`.
fn instant_at(ns: u64) -> tokio::time::Instant {
    // Both clocks read once, together: the offset between them is then off by under one
    // tick of the coarse clock, which is all a deadline can be off by.
    static BASE: OnceLock<(Instant, u64)> = OnceLock::new();
    let (at, at_ns) = *BASE.get_or_init(|| (Instant::now(), now_ns()));
    let t = match ns.checked_sub(at_ns) {
        Some(after) => at.checked_add(Duration::from_nanos(after)),
        None => at.checked_sub(Duration::from_nanos(at_ns - ns)),
    };
    // Out of `Instant`'s range: only for deadlines centuries away (timeouts near
    // `Duration::MAX`), which are as good as never.
    tokio::time::Instant::from_std(t.unwrap_or(at + Duration::from_secs(86_400 * 365 * 30)))
}

impl HeadWait {
    /// A new connection: waiting for its first head from now.
    pub fn new() -> Arc<HeadWait> {
        Arc::new(HeadWait {
            since: AtomicU64::new(now_ns()),
        })
    }

    /// A request head is in (the service got the request).
    pub fn head_in(&self, version: http::Version) {
        let next = if version == http::Version::HTTP_2 {
            OFF
        } else {
            NOT_WAITING
        };
        if self.since.load(Ordering::Relaxed) != OFF {
            self.since.store(next, Ordering::Relaxed);
        }
    }

    /// A response is done: the connection waits for the next head from now.
    pub fn response_done(&self) {
        if self.since.load(Ordering::Relaxed) != OFF {
            self.since.store(now_ns(), Ordering::Relaxed);
        }
    }

    /// Since when the connection waits, if it does.
    fn waiting_since(&self) -> Option<u64> {
        match self.since.load(Ordering::Relaxed) {
            NOT_WAITING | OFF => None,
            ns => Some(ns),
        }
    }
}

/// Ends a response's wait-free time when dropped (held by the response body).
#[derive(Debug)]
pub struct ResponseDone(pub Arc<HeadWait>);

impl Drop for ResponseDone {
    fn drop(&mut self) {
        self.0.response_done();
    }
}

/// A connection that did not send a request head in time.
#[derive(Debug, thiserror::Error)]
#[error("no request head within the header read timeout ({0:?})")]
pub struct HeaderTimedOut(pub Duration);

pin_project! {
    /// A connection future with its header-read timeout (see the module docs).
    pub struct WithHeaderTimeout<C> {
        #[pin]
        conn: C,
        wait: Arc<HeadWait>,
        timeout: Duration,
        // `timeout` in nanoseconds (saturated), for the deadline sums.
        timeout_ns: u64,
        // The connection's one tokio timer, created when first needed.
        #[pin]
        timer: Option<tokio::time::Sleep>,
        // Its deadline, a `now_ns` reading.
        timer_ns: u64,
        // The waker the timer was last polled with (none: not polled since it was set).
        registered: Option<Waker>,
    }
}

impl<C> WithHeaderTimeout<C> {
    pub fn new(conn: C, wait: Arc<HeadWait>, timeout: Duration) -> Self {
        WithHeaderTimeout {
            conn,
            wait,
            timeout,
            timeout_ns: u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX),
            timer: None,
            timer_ns: u64::MAX,
            registered: None,
        }
    }

    /// The wrapped connection (to ask it to shut down gracefully).
    pub fn conn(self: Pin<&mut Self>) -> Pin<&mut C> {
        self.project().conn
    }
}

impl<C, E> Future for WithHeaderTimeout<C>
where
    C: Future<Output = Result<(), E>>,
    E: From<HeaderTimedOut>,
{
    type Output = Result<(), E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let mut this = self.project();
        loop {
            if let Poll::Ready(out) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            // Not waiting: a timer set earlier may still fire, and finds nothing.
            let Some(since) = this.wait.waiting_since() else {
                return Poll::Pending;
            };
            let deadline = since.saturating_add(*this.timeout_ns);
            if this.timer.is_none() || deadline < *this.timer_ns {
                match this.timer.as_mut().as_pin_mut() {
                    Some(timer) => timer.reset(instant_at(deadline)),
                    None => this
                        .timer
                        .set(Some(tokio::time::sleep_until(instant_at(deadline)))),
                }
                *this.timer_ns = deadline;
                *this.registered = None;
            }
            let mut timer = this.timer.as_mut().as_pin_mut().expect("set above");
            // Polling the timer registers the waker again (most polls of a busy
            // connection); once it holds this task's waker, only a fired timer needs a poll.
            let waker_held = this
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()));
            if waker_held && !timer.is_elapsed() {
                return Poll::Pending;
            }
            if !waker_held {
                *this.registered = Some(cx.waker().clone());
            }
            if timer.as_mut().poll(cx).is_pending() {
                // It fires at or before the deadline.
                return Poll::Pending;
            }
            // tokio rounds to the millisecond: within one of the deadline counts as passed.
            if tokio::time::Instant::now() + Duration::from_millis(1) < instant_at(deadline) {
                // Fired for an earlier wait (a head came in since): time this one.
                timer.reset(instant_at(deadline));
                *this.timer_ns = deadline;
                *this.registered = None;
                continue;
            }
            return Poll::Ready(Err(HeaderTimedOut(*this.timeout).into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A real hyper connection (HTTP/1 or h2c, as the worker's) whose service marks heads
    /// in and responses done as the worker's does, with a short header-read timeout timed
    /// this way.
    async fn serve_one(listener: &tokio::net::TcpListener) -> Result<(), crate::body::BoxError> {
        let (stream, _) = listener.accept().await.unwrap();
        let wait = HeadWait::new();
        let w = wait.clone();
        let svc = hyper::service::service_fn(move |req: http::Request<_>| {
            w.head_in(req.version());
            let done = ResponseDone(w.clone());
            async move {
                // The body holds `done` until hyper is through with it.
                let body = http_body_util::Full::new(bytes::Bytes::from_static(b"ok"));
                let body = http_body_util::BodyExt::map_frame(body, move |f| {
                    let _ = &done;
                    f
                });
                Ok::<_, std::convert::Infallible>(http::Response::new(body))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().header_read_timeout(None);
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        WithHeaderTimeout::new(conn, wait, TIMEOUT).await
    }

    const TIMEOUT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_slow_head_is_cut_off_and_a_busy_connection_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();

        // A client that sends half a head and stalls: the connection ends after the timeout.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let start = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(20), serve_one(&listener)).await;
        let err = ended.expect("the header timeout never fired").unwrap_err();
        assert!(err.is::<HeaderTimedOut>(), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(290));
        let mut rest = Vec::new();
        slow.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "closed without an answer");

        // After a response, the next head must come in time too.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let start = Instant::now();
        let server = tokio::time::timeout(Duration::from_secs(20), serve_one(&listener));
        let client = async {
            let mut buf = [0u8; 1024];
            let n = idle.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            idle.write_all(b"GET / HT").await.unwrap();
        };
        let (ended, ()) = tokio::join!(server, client);
        let err = ended.expect("the header timeout never fired").unwrap_err();
        assert!(err.is::<HeaderTimedOut>(), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(290));

        // Requests keep coming for three timeouts' worth of time on one connection: each
        // head arrives in time, so the connection lives until the client closes it.
        let server = async { serve_one(&listener).await };
        let client = async {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut buf = [0u8; 1024];
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(900) {
                c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                    .await
                    .unwrap();
                let n = c.read(&mut buf).await.unwrap();
                assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "connection cut");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let (served, ()) = tokio::join!(server, client);
        served.expect("a connection whose heads arrive in time ends cleanly");
    }

    #[tokio::test]
    async fn an_http2_connection_may_idle_between_requests() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { serve_one(&listener).await });
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        let client_conn = tokio::spawn(conn);
        let get = || {
            http::Request::get(format!("http://{addr}/"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap()
        };
        let resp = h2.send_request(get()).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        drop(resp);
        // Idle for more than two timeouts: an HTTP/1 connection would be closed by now.
        tokio::time::sleep(TIMEOUT * 2 + Duration::from_millis(200)).await;
        assert!(!server.is_finished(), "the h2 connection was cut");
        let resp = h2.send_request(get()).await.expect("still open");
        assert_eq!(resp.status(), http::StatusCode::OK);
        // The connection ends when the client is done with it: its last stream too.
        drop((resp, h2));
        let served = tokio::time::timeout(Duration::from_secs(20), server).await;
        served
            .unwrap()
            .unwrap()
            .expect("closed by the client, not timed out");
        client_conn.await.unwrap().unwrap();
    }

    #[test]
    fn waiting_starts_at_a_response_ends_at_a_head_and_http2_turns_it_off() {
        let wait = HeadWait::new();
        assert!(wait.waiting_since().is_some(), "a new connection waits");
        wait.head_in(http::Version::HTTP_11);
        assert!(wait.waiting_since().is_none());
        drop(ResponseDone(wait.clone()));
        assert!(wait.waiting_since().is_some());
        wait.head_in(http::Version::HTTP_2);
        drop(ResponseDone(wait.clone()));
        assert!(wait.waiting_since().is_none(), "h2 has no header timeout");
    }
}
