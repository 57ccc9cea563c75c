//! hyper's HTTP/1 header-read timeout, timed per connection instead of per request.
//!
//! hyper arms its header-read timeout (30 s) each time it starts reading a request head and
//! drops it once the head is in, so on a keep-alive connection every request creates and
//! cancels one timer. With `TokioTimer` that is a boxed tokio `Sleep` (a large
//! allocation), an insert into tokio's timer wheel under its lock, and a removal under it
//! again: about 7 % of the worker's instructions per "hello" (BENCHMARKS.md, "The worker's
//! per-request cost").
//!
//! Here each connection gets its own [`ConnTimer`] (given to hyper) and runs inside a
//! [`WithHeaderTimeout`]. A sleep hyper asks for only writes its deadline into the
//! connection's [`HeaderClock`]; the wrapper, which polls the connection anyway, keeps one
//! tokio timer per connection at or before the armed deadline. Deadlines only move later,
//! so that timer is set once and moved on only when it fires early (at most once per
//! timeout period of a busy connection). When the armed deadline passes, the wrapper marks
//! the sleep fired and polls the connection, and hyper ends it as it would with
//! `TokioTimer`. Nothing is shared between connections: no lock, no thread.

use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The header-read deadline hyper armed on one connection, if any.
#[derive(Debug, Default)]
pub struct HeaderClock {
    /// Id of the armed sleep (0: none). Ids count from 1 per connection.
    armed: AtomicU64,
    /// Its deadline, in nanoseconds after [`base`].
    deadline: AtomicU64,
    /// Id of the sleep whose deadline passed (0: none).
    fired: AtomicU64,
    next_id: AtomicU64,
}

/// The instant deadlines are counted from (so they fit an atomic).
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl HeaderClock {
    fn arm(&self, deadline: Instant) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let ns = deadline.saturating_duration_since(base()).as_nanos();
        self.deadline
            .store(ns.min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.armed.store(id, Ordering::Relaxed);
        id
    }

    /// The armed sleep and its deadline.
    fn armed(&self) -> Option<(u64, Instant)> {
        match self.armed.load(Ordering::Relaxed) {
            0 => None,
            id => {
                let ns = self.deadline.load(Ordering::Relaxed);
                Some((id, base() + Duration::from_nanos(ns)))
            }
        }
    }
}

/// The [`hyper::rt::Timer`] of one HTTP/1 connection: its sleeps arm the connection's
/// [`HeaderClock`], which [`WithHeaderTimeout`] watches.
#[derive(Clone, Debug, Default)]
pub struct ConnTimer(pub Arc<HeaderClock>);

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let id = self.0.arm(deadline);
        Box::pin(HeadSleep {
            clock: self.0.clone(),
            id,
        })
    }
}

/// One armed timeout; disarms on drop unless a newer one replaced it.
struct HeadSleep {
    clock: Arc<HeaderClock>,
    id: u64,
}

impl hyper::rt::Sleep for HeadSleep {}

impl Future for HeadSleep {
    type Output = ();

    /// No waker is kept: the connection's wrapper polls the connection (and so this)
    /// when the deadline passes.
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.fired.load(Ordering::Relaxed) == self.id {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        let _ = self
            .clock
            .armed
            .compare_exchange(self.id, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

pin_project! {
    /// A connection future with its header-read timeout (see the module docs).
    pub struct WithHeaderTimeout<C> {
        #[pin]
        conn: C,
        clock: Arc<HeaderClock>,
        // The connection's one tokio timer, created when first needed.
        #[pin]
        timer: Option<tokio::time::Sleep>,
    }
}

impl<C> WithHeaderTimeout<C> {
    pub fn new(conn: C, clock: Arc<HeaderClock>) -> Self {
        WithHeaderTimeout {
            conn,
            clock,
            timer: None,
        }
    }

    /// The wrapped connection (to ask it to shut down gracefully).
    pub fn conn(self: Pin<&mut Self>) -> Pin<&mut C> {
        self.project().conn
    }
}

impl<C: Future> Future for WithHeaderTimeout<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        loop {
            if let Poll::Ready(out) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            // Nothing armed: a timer set earlier may still fire, and finds nothing.
            let Some((id, deadline)) = this.clock.armed() else {
                return Poll::Pending;
            };
            let deadline = tokio::time::Instant::from_std(deadline);
            if this.timer.is_none() {
                this.timer.set(Some(tokio::time::sleep_until(deadline)));
            }
            let mut timer = this.timer.as_mut().as_pin_mut().expect("set above");
            if timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                // It fires at or before the armed deadline.
                return Poll::Pending;
            }
            // tokio rounds to the millisecond: within one of the deadline counts as passed.
            if tokio::time::Instant::now() + Duration::from_millis(1) < deadline {
                // Fired for an earlier deadline (hyper has moved on): time this one.
                timer.reset(deadline);
                continue;
            }
            // The head did not arrive in time: hyper's sleep is ready now.
            this.clock.fired.store(id, Ordering::Relaxed);
            this.clock.armed.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A real hyper HTTP/1 connection with a short header-read timeout, timed this way.
    async fn serve_one(listener: &tokio::net::TcpListener) -> Result<(), hyper::Error> {
        let (stream, _) = listener.accept().await.unwrap();
        let clock = Arc::new(HeaderClock::default());
        let svc = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                bytes::Bytes,
            >::new()))
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(ConnTimer(clock.clone()))
            .header_read_timeout(Duration::from_millis(300))
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
        WithHeaderTimeout::new(conn, clock).await
    }

    #[tokio::test]
    async fn a_slow_head_is_cut_off_and_a_busy_connection_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();

        // A client that sends half a head and stalls: hyper closes it after the timeout.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let start = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(20), serve_one(&listener)).await;
        let err = ended.expect("the header timeout never fired").unwrap_err();
        assert!(err.is_timeout(), "{err}");
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

    #[test]
    fn a_replaced_sleep_does_not_disarm_its_successor() {
        let clock = Arc::new(HeaderClock::default());
        let timer = ConnTimer(clock.clone());
        let first = timer.sleep(Duration::from_secs(30));
        let second = timer.sleep(Duration::from_secs(30));
        drop(first);
        assert!(clock.armed().is_some(), "the newer sleep is still armed");
        drop(second);
        assert!(clock.armed().is_none());
    }
}
