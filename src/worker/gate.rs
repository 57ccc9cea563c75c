//! The gate: ASP.NET integrated mode's request limits in front of the handlers.
//!
//! - `requestQueueLimit` caps requests in the worker (queued + executing, "Requests
//!   Current"); past it a request is refused at once (503 ServerTooBusy).
//! - `maxConcurrentRequestsPerCPU` × cores caps executing requests; the others wait in one
//!   process-wide FIFO queue and start in arrival order as executing requests finish.
//! - `maxConcurrentThreadsPerCPU` × cores (0 = off) caps worker-pool threads executing
//!   requests; it applies to sync handlers only (async ones hold no thread).
//!
//! Requests start in arrival order. One refinement over a single native queue: while sync
//! requests wait only for a thread slot, async requests behind them (which need none) may
//! start; among requests of one kind the order is always FIFO.
//!
//! A queued request is a small waiter record (id, kind, wake-up channel). If its future is
//! dropped (hyper drops the service future when the client disconnects; the server checks
//! the socket itself for requests whose body hyper is waiting to hand over), the waiter
//! leaves the queue and counts as `disconnected`. A [`Permit`] is held until the response body is
//! finished; its thread slot is given back as soon as the sync handler returns.

pub use super::counters::{GateCounters, WaitCounters};
use crate::error::Reason;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a request will execute on, which decides whether it needs a thread slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An async handler on the I/O pool.
    Async,
    /// A sync handler on a worker pool thread.
    Thread,
}

/// The gate's limits, already multiplied by the core count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateLimits {
    pub request_queue_limit: usize,
    /// 0 = no limit.
    pub max_executing: usize,
    /// 0 = no limit.
    pub max_executing_threads: usize,
}

/// Upper bounds (seconds) of the request wait time histogram buckets; one more bucket
/// (`+Inf`) holds the rest. From "no wait" to the front's queue timeouts.
pub const WAIT_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
];

/// Lock-free recorder behind [`WaitCounters`].
#[derive(Default)]
struct WaitStats {
    count: AtomicU64,
    queued: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
    last_us: AtomicU64,
    buckets: [AtomicU64; WAIT_BUCKETS.len() + 1],
}

impl WaitStats {
    fn record(&self, wait: Option<Duration>) {
        let d = wait.unwrap_or_default();
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.count.fetch_add(1, Ordering::Relaxed);
        if wait.is_some() {
            self.queued.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.last_us.store(us, Ordering::Relaxed);
        let secs = d.as_secs_f64();
        let i = WAIT_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(WAIT_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> WaitCounters {
        let secs = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6;
        let count = self.count.load(Ordering::Relaxed);
        let sum = secs(&self.sum_us);
        WaitCounters {
            count,
            queued: self.queued.load(Ordering::Relaxed),
            sum_seconds: sum,
            avg_seconds: if count == 0 { 0.0 } else { sum / count as f64 },
            max_seconds: secs(&self.max_us),
            last_seconds: secs(&self.last_us),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

impl State {
    fn queued(&self, kind: Kind) -> usize {
        match kind {
            Kind::Async => self.queued_async,
            Kind::Thread => self.queue.len() - self.queued_async,
        }
    }

    /// A waiter of `kind` left the queue.
    fn forget(&mut self, kind: Kind) {
        if kind == Kind::Async {
            self.queued_async -= 1;
        }
    }
}

struct Waiter {
    id: u64,
    kind: Kind,
    wake: oneshot::Sender<()>,
    since: Instant,
}

#[derive(Default)]
struct State {
    current: usize,
    executing: usize,
    threads: usize,
    queue: VecDeque<Waiter>,
    /// Queued waiters of kind Async (the rest are Thread).
    queued_async: usize,
    next_id: u64,
}

pub struct Gate {
    limits: GateLimits,
    state: Mutex<State>,
    rejected: AtomicU64,
    completed: AtomicU64,
    disconnected: AtomicU64,
    wait: WaitStats,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Gate {
    pub fn new(limits: GateLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            state: Mutex::new(State::default()),
            rejected: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            wait: WaitStats::default(),
        })
    }

    pub fn limits(&self) -> GateLimits {
        self.limits
    }

    /// Admit a request: at once, after waiting its turn, or `Err(ServerTooBusy)`.
    ///
    /// Cancel safety: dropping the returned future while queued removes the request from
    /// the queue; dropping it just after it was granted gives the slot back.
    pub async fn enter(self: &Arc<Self>, kind: Kind) -> Result<Permit, Reason> {
        let (id, rx) = {
            let mut st = self.state.lock();
            if st.current >= self.limits.request_queue_limit {
                drop(st);
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(Reason::ServerTooBusy);
            }
            st.current += 1;
            if self.can_start(&st, kind) && st.queued(kind) == 0 {
                Self::start(&mut st, kind);
                drop(st);
                self.wait.record(None);
                return Ok(Permit::new(self.clone(), kind));
            }
            let id = st.next_id;
            st.next_id += 1;
            let (wake, rx) = oneshot::channel();
            st.queue.push_back(Waiter {
                id,
                kind,
                wake,
                since: Instant::now(),
            });
            if kind == Kind::Async {
                st.queued_async += 1;
            }
            (id, rx)
        };
        let mut waiting = Waiting {
            gate: self.clone(),
            id,
            kind,
            rx,
            granted: false,
        };
        // The sender lives in the queue, which only the gate drops; a closed channel means
        // the gate itself is gone, which cannot happen while we hold an Arc to it.
        let _ = (&mut waiting.rx).await;
        waiting.granted = true;
        Ok(Permit::new(self.clone(), kind))
    }

    pub fn counters(&self) -> GateCounters {
        let st = self.state.lock();
        GateCounters {
            current: st.current,
            queued: st.queue.len(),
            executing: st.executing,
            executing_threads: st.threads,
            rejected: self.rejected.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            disconnected: self.disconnected.load(Ordering::Relaxed),
            request_queue_limit: self.limits.request_queue_limit,
            max_executing: self.limits.max_executing,
            max_executing_threads: self.limits.max_executing_threads,
            wait: self.wait.snapshot(),
        }
    }

    fn can_start(&self, st: &State, kind: Kind) -> bool {
        let l = &self.limits;
        (l.max_executing == 0 || st.executing < l.max_executing)
            && (kind == Kind::Async
                || l.max_executing_threads == 0
                || st.threads < l.max_executing_threads)
    }

    fn start(st: &mut State, kind: Kind) {
        st.executing += 1;
        if kind == Kind::Thread {
            st.threads += 1;
        }
    }

    /// Start queued requests in order. A sync waiter held back only by the thread cap is
    /// passed over by async waiters; the executing cap stops everyone.
    fn dispatch(&self, st: &mut State) {
        let mut i = 0;
        while i < st.queue.len() {
            let kind = st.queue[i].kind;
            if self.can_start(st, kind) {
                let w = st.queue.remove(i).expect("index in range");
                st.forget(kind);
                Self::start(st, w.kind);
                // Measured at the grant, not when the request's task next runs.
                self.wait.record(Some(w.since.elapsed()));
                // Cannot fail: the receiver lives in `Waiting`, whose drop removes the
                // waiter from the queue under this same lock before the receiver goes away.
                let _ = w.wake.send(());
            } else if !self.can_start(st, Kind::Async) || st.queued_async == 0 {
                // The executing cap is reached, or only thread-bound waiters are left.
                break;
            } else {
                i += 1;
            }
        }
    }

    fn finish(&self, thread_held: bool) {
        let mut st = self.state.lock();
        st.executing -= 1;
        st.current -= 1;
        if thread_held {
            st.threads -= 1;
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.dispatch(&mut st);
    }

    fn release_thread(&self) {
        let mut st = self.state.lock();
        st.threads -= 1;
        self.dispatch(&mut st);
    }
}

/// A queued request's place in line; dropping it before it is granted leaves the queue.
struct Waiting {
    gate: Arc<Gate>,
    id: u64,
    kind: Kind,
    rx: oneshot::Receiver<()>,
    granted: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        let mut st = self.gate.state.lock();
        if let Some(pos) = st.queue.iter().position(|w| w.id == self.id) {
            st.queue.remove(pos);
            st.forget(self.kind);
            st.current -= 1;
            self.gate.disconnected.fetch_add(1, Ordering::Relaxed);
            // Removing a head that could not start may unblock the ones behind it.
            self.gate.dispatch(&mut st);
        } else {
            // Granted between the wake-up and this drop: the slot is ours to give back.
            drop(st);
            self.gate.finish(self.kind == Kind::Thread);
        }
    }
}

/// An admitted request. Dropping it ends the request for the gate and starts the next.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    thread_held: bool,
}

/// A worker-pool thread slot taken from a [`Permit`]; dropped when the sync handler returns.
#[derive(Debug)]
pub struct ThreadSlot(Arc<Gate>);

impl Permit {
    fn new(gate: Arc<Gate>, kind: Kind) -> Permit {
        Permit {
            gate,
            thread_held: kind == Kind::Thread,
        }
    }

    /// Move the thread slot out, so it can be dropped when the thread is done while the
    /// request itself (its response body) goes on.
    pub fn take_thread_slot(&mut self) -> Option<ThreadSlot> {
        if std::mem::take(&mut self.thread_held) {
            Some(ThreadSlot(self.gate.clone()))
        } else {
            None
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.finish(self.thread_held);
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        self.0.release_thread();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll};

    fn limits(q: usize, exec: usize, threads: usize) -> GateLimits {
        GateLimits {
            request_queue_limit: q,
            max_executing: exec,
            max_executing_threads: threads,
        }
    }

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let waker = std::task::Waker::noop();
        f.poll(&mut Context::from_waker(waker))
    }

    #[tokio::test]
    async fn total_cap_rejects_and_executing_cap_queues_fifo() {
        let gate = Gate::new(limits(3, 1, 0));
        let p1 = gate.enter(Kind::Async).await.unwrap();
        let mut f2 = pin!(gate.enter(Kind::Async));
        let mut f3 = pin!(gate.enter(Kind::Async));
        assert!(poll_once(f2.as_mut()).is_pending());
        assert!(poll_once(f3.as_mut()).is_pending());
        assert_eq!(
            gate.enter(Kind::Async).await.unwrap_err(),
            Reason::ServerTooBusy
        );
        let c = gate.counters();
        assert_eq!((c.current, c.queued, c.executing, c.rejected), (3, 2, 1, 1));
        drop(p1);
        // FIFO: the second request starts, the third still waits.
        let p2 = match poll_once(f2.as_mut()) {
            Poll::Ready(r) => r.unwrap(),
            Poll::Pending => panic!("head of the queue was not started"),
        };
        assert!(poll_once(f3.as_mut()).is_pending());
        drop(p2);
        assert!(matches!(poll_once(f3.as_mut()), Poll::Ready(Ok(_))));
    }

    #[tokio::test]
    async fn wait_time_is_measured_from_queueing_to_the_grant() {
        let gate = Gate::new(limits(10, 1, 0));
        let p1 = gate.enter(Kind::Async).await.unwrap();
        let mut f = Box::pin(gate.enter(Kind::Async));
        assert!(poll_once(f.as_mut()).is_pending());
        std::thread::sleep(Duration::from_millis(20));
        drop(p1);
        let _p2 = match poll_once(f.as_mut()) {
            Poll::Ready(r) => r.unwrap(),
            Poll::Pending => panic!("not granted"),
        };
        let w = gate.counters().wait;
        assert_eq!((w.count, w.queued), (2, 1));
        assert!(w.max_seconds >= 0.02, "{w:?}");
        assert_eq!(w.last_seconds, w.max_seconds);
        assert!((w.avg_seconds - w.sum_seconds / 2.0).abs() < 1e-9);
        assert_eq!(w.buckets.len(), WAIT_BUCKETS.len() + 1);
        // The first request did not wait; the second waited at least 20 ms.
        assert_eq!(w.buckets[0], 1);
        let from_20ms = WAIT_BUCKETS.iter().position(|le| *le >= 0.02).unwrap();
        assert_eq!(w.buckets[from_20ms..].iter().sum::<u64>(), 1, "{w:?}");
    }

    #[tokio::test]
    async fn dropped_waiter_leaves_the_queue() {
        let gate = Gate::new(limits(10, 1, 0));
        let p1 = gate.enter(Kind::Async).await.unwrap();
        {
            let mut f = Box::pin(gate.enter(Kind::Async));
            assert!(poll_once(f.as_mut()).is_pending());
            assert_eq!(gate.counters().queued, 1);
        }
        let c = gate.counters();
        assert_eq!((c.current, c.queued, c.disconnected), (1, 0, 1));
        drop(p1);
        assert_eq!(gate.counters().current, 0);
    }

    #[tokio::test]
    async fn granted_but_never_polled_waiter_gives_its_slot_back() {
        let gate = Gate::new(limits(10, 1, 0));
        let p1 = gate.enter(Kind::Async).await.unwrap();
        let mut f = Box::pin(gate.enter(Kind::Async));
        assert!(poll_once(f.as_mut()).is_pending());
        drop(p1); // grants the waiter
        assert_eq!(gate.counters().executing, 1);
        drop(f);
        let c = gate.counters();
        assert_eq!((c.current, c.executing, c.queued), (0, 0, 0));
    }

    #[tokio::test]
    async fn thread_cap_applies_to_sync_handlers_only() {
        let gate = Gate::new(limits(10, 0, 1));
        let mut p1 = gate.enter(Kind::Thread).await.unwrap();
        let _a = gate.enter(Kind::Async).await.unwrap();
        let mut f = Box::pin(gate.enter(Kind::Thread));
        assert!(poll_once(f.as_mut()).is_pending());
        // The thread finishing frees the slot even though the response still streams.
        drop(p1.take_thread_slot());
        let p2 = match poll_once(f.as_mut()) {
            Poll::Ready(r) => r.unwrap(),
            Poll::Pending => panic!("the freed thread slot was not handed on"),
        };
        drop(p1);
        let c = gate.counters();
        assert_eq!((c.executing, c.executing_threads), (2, 1));
        drop(p2);
        assert_eq!(gate.counters().current, 1);
    }

    #[tokio::test]
    async fn async_requests_pass_sync_ones_waiting_for_a_thread_only() {
        let gate = Gate::new(limits(10, 3, 1));
        let mut t1 = gate.enter(Kind::Thread).await.unwrap();
        let mut t2 = Box::pin(gate.enter(Kind::Thread));
        assert!(poll_once(t2.as_mut()).is_pending());
        // Needs no thread: starts although a sync request is queued before it.
        let a1 = gate.enter(Kind::Async).await.unwrap();
        assert_eq!(gate.counters().executing, 2);
        // Now the executing cap (3) is the limit for everyone: strict order again.
        let _a2 = gate.enter(Kind::Async).await.unwrap();
        let mut a3 = Box::pin(gate.enter(Kind::Async));
        assert!(poll_once(a3.as_mut()).is_pending());
        drop(a1);
        // The freed execution slot cannot go to t2 (no thread), so a3 gets it.
        assert!(poll_once(t2.as_mut()).is_pending());
        let _a3 = match poll_once(a3.as_mut()) {
            Poll::Ready(r) => r.unwrap(),
            Poll::Pending => panic!("async waiter stuck behind a thread-bound one"),
        };
        drop(t1.take_thread_slot());
        // The thread slot is free but the executing cap is full (t1's body still streams).
        assert!(poll_once(t2.as_mut()).is_pending());
        drop(t1);
        assert!(matches!(poll_once(t2.as_mut()), Poll::Ready(Ok(_))));
    }
}
