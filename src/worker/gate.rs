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
//!
//! When nobody is queued, admitting a request at once and finishing it take no lock: one
//! compare-and-swap each on a word holding the counts (see `Slots`).

pub use super::counters::{GateCounters, WaitCounters};
use super::striped::Striped;
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

/// Recorder behind [`WaitCounters`]. A request admitted at once (nearly all of them when
/// the gate is open) only bumps a striped counter; the waits of queued ones go to shared
/// atomics, which queued requests (rare, and already slow) can afford.
#[derive(Default)]
struct WaitStats {
    /// Admitted at once: a wait of 0, in bucket 0.
    immediate: Striped,
    queued: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
    last_us: AtomicU64,
    /// Queued requests only; `immediate` is added to bucket 0 when read.
    buckets: [AtomicU64; WAIT_BUCKETS.len() + 1],
}

impl WaitStats {
    fn record_immediate(&self) {
        self.immediate.add(1);
        // Read first: the line stays shared between the I/O threads while it holds 0.
        if self.last_us.load(Ordering::Relaxed) != 0 {
            self.last_us.store(0, Ordering::Relaxed);
        }
    }

    fn record_queued(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.queued.fetch_add(1, Ordering::Relaxed);
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
        let immediate = self.immediate.sum();
        let queued = self.queued.load(Ordering::Relaxed);
        let count = immediate + queued;
        let sum = secs(&self.sum_us);
        let mut buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        buckets[0] += immediate;
        WaitCounters {
            count,
            queued,
            sum_seconds: sum,
            avg_seconds: if count == 0 { 0.0 } else { sum / count as f64 },
            max_seconds: secs(&self.max_us),
            last_seconds: secs(&self.last_us),
            buckets,
        }
    }
}

/// `current` (bits 0-31), `executing` (bits 32-62) and "the queue is not empty" (bit 63)
/// of a gate, in one atomic word.
///
/// The common case, a request admitted at once and finished with nobody waiting, is one
/// compare-and-swap on this word each way and takes no lock. Everything else holds the
/// state lock as well, and the queue flag is only set or cleared under that lock. While
/// the flag is set, the fast paths step aside (to the lock), so the queue's order holds
/// and a finishing request always hands its slot on; a fast path that read the word
/// before the flag was set fails its compare-and-swap and looks again.
#[derive(Debug, Clone, Copy)]
struct Slots(u64);

impl Slots {
    const CURRENT: u64 = 1;
    const EXECUTING: u64 = 1 << 32;
    const QUEUED: u64 = 1 << 63;
    /// `requestQueueLimit` is capped at this, so neither field can overflow.
    const MAX: usize = (1 << 31) - 1;

    fn current(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    fn executing(self) -> usize {
        ((self.0 >> 32) & 0x7fff_ffff) as usize
    }

    fn queued(self) -> bool {
        self.0 & Self::QUEUED != 0
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

/// What only the lock holder touches (`current` and `executing` live in [`Slots`]).
#[derive(Default)]
struct State {
    threads: usize,
    queue: VecDeque<Waiter>,
    /// Queued waiters of kind Async (the rest are Thread).
    queued_async: usize,
    next_id: u64,
}

pub struct Gate {
    limits: GateLimits,
    /// `limits.request_queue_limit`, capped at [`Slots::MAX`].
    queue_limit: usize,
    slots: AtomicU64,
    state: Mutex<State>,
    rejected: AtomicU64,
    completed: Striped,
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
            queue_limit: limits.request_queue_limit.min(Slots::MAX),
            slots: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            rejected: AtomicU64::new(0),
            completed: Striped::default(),
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
        self.admit(kind).await?;
        Ok(Permit::new(self.clone(), kind))
    }

    /// [`enter`](Gate::enter) without the [`Permit`]: on `Ok` the caller holds one
    /// admission of `kind` and gives it back exactly once with [`leave`](Gate::leave)
    /// (for [`Kind::Thread`], after its thread slot went back through a [`ThreadSlot`]).
    /// The server uses this to tie the admission to the worker it already holds instead
    /// of cloning the gate's `Arc` per request.
    pub(crate) async fn admit(&self, kind: Kind) -> Result<(), Reason> {
        if kind == Kind::Async {
            if let Some(admitted) = self.try_start_async() {
                return admitted;
            }
        }
        let (id, rx) = match self.enter_locked(kind)? {
            Some(queued) => queued,
            None => return Ok(()),
        };
        let mut waiting = Waiting {
            gate: self,
            id,
            kind,
            rx,
            granted: false,
        };
        // The sender lives in the queue, which only the gate drops; a closed channel means
        // the gate itself is gone, which cannot happen while we borrow it.
        let _ = (&mut waiting.rx).await;
        waiting.granted = true;
        Ok(())
    }

    /// [`admit`](Gate::admit) when that needs no waiting and no lock: an async request
    /// admitted (or refused) at once. `None`: call `admit`.
    pub(crate) fn try_admit_at_once(&self, kind: Kind) -> Option<Result<(), Reason>> {
        match kind {
            Kind::Async => self.try_start_async(),
            Kind::Thread => None,
        }
    }

    /// The lock-free way in: `None` when the request must take the lock (someone is
    /// queued, or the executing cap is reached).
    fn try_start_async(&self) -> Option<Result<(), Reason>> {
        let mut w = self.slots.load(Ordering::Acquire);
        loop {
            let s = Slots(w);
            if s.current() >= self.queue_limit {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return Some(Err(Reason::ServerTooBusy));
            }
            if s.queued() || !self.executing_room(s) {
                return None;
            }
            let next = w + Slots::CURRENT + Slots::EXECUTING;
            match self
                .slots
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.wait.record_immediate();
                    return Some(Ok(()));
                }
                Err(now) => w = now,
            }
        }
    }

    /// Under the lock: start at once (`None`), queue (the waiter's id and wake-up), or
    /// refuse.
    fn enter_locked(&self, kind: Kind) -> Result<Option<(u64, oneshot::Receiver<()>)>, Reason> {
        let mut st = self.state.lock();
        let mut w = self.slots.load(Ordering::Acquire);
        let start = loop {
            let s = Slots(w);
            if s.current() >= self.queue_limit {
                drop(st);
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(Reason::ServerTooBusy);
            }
            let start = self.can_start(s, &st, kind) && st.queued(kind) == 0;
            let next = if start {
                w + Slots::CURRENT + Slots::EXECUTING
            } else {
                (w + Slots::CURRENT) | Slots::QUEUED
            };
            match self
                .slots
                .compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break start,
                Err(now) => w = now,
            }
        };
        if start {
            if kind == Kind::Thread {
                st.threads += 1;
            }
            drop(st);
            self.wait.record_immediate();
            return Ok(None);
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
        Ok(Some((id, rx)))
    }

    pub fn counters(&self) -> GateCounters {
        let st = self.state.lock();
        let s = Slots(self.slots.load(Ordering::Acquire));
        GateCounters {
            current: s.current(),
            queued: st.queue.len(),
            executing: s.executing(),
            executing_threads: st.threads,
            rejected: self.rejected.load(Ordering::Relaxed),
            completed: self.completed.sum(),
            disconnected: self.disconnected.load(Ordering::Relaxed),
            request_queue_limit: self.limits.request_queue_limit,
            max_executing: self.limits.max_executing,
            max_executing_threads: self.limits.max_executing_threads,
            wait: self.wait.snapshot(),
        }
    }

    fn executing_room(&self, s: Slots) -> bool {
        self.limits.max_executing == 0 || s.executing() < self.limits.max_executing
    }

    fn can_start(&self, s: Slots, st: &State, kind: Kind) -> bool {
        let l = &self.limits;
        self.executing_room(s)
            && (kind == Kind::Async
                || l.max_executing_threads == 0
                || st.threads < l.max_executing_threads)
    }

    /// Start queued requests in order, then set the queue flag to match the queue. A sync
    /// waiter held back only by the thread cap is passed over by async waiters; the
    /// executing cap stops everyone. Called with the lock held: while the flag is set
    /// nothing outside the lock changes the slots.
    fn dispatch(&self, st: &mut State) {
        let mut i = 0;
        while i < st.queue.len() {
            let kind = st.queue[i].kind;
            let s = Slots(self.slots.load(Ordering::Acquire));
            if self.can_start(s, st, kind) {
                let w = st.queue.remove(i).expect("index in range");
                st.forget(kind);
                self.slots.fetch_add(Slots::EXECUTING, Ordering::AcqRel);
                if kind == Kind::Thread {
                    st.threads += 1;
                }
                // Measured at the grant, not when the request's task next runs.
                self.wait.record_queued(w.since.elapsed());
                // Cannot fail: the receiver lives in `Waiting`, whose drop removes the
                // waiter from the queue under this same lock before the receiver goes away.
                let _ = w.wake.send(());
            } else if !self.can_start(s, st, Kind::Async) || st.queued_async == 0 {
                // The executing cap is reached, or only thread-bound waiters are left.
                break;
            } else {
                i += 1;
            }
        }
        if st.queue.is_empty() {
            self.slots.fetch_and(!Slots::QUEUED, Ordering::AcqRel);
        }
    }

    /// Give back an admission (see [`admit`](Gate::admit)), with its thread slot if
    /// `thread_held`, and start whoever can start now.
    pub(crate) fn leave(&self, thread_held: bool) {
        self.completed.add(1);
        if !thread_held && self.try_leave_fast() {
            return;
        }
        let mut st = self.state.lock();
        self.slots
            .fetch_sub(Slots::CURRENT + Slots::EXECUTING, Ordering::AcqRel);
        if thread_held {
            st.threads -= 1;
        }
        self.dispatch(&mut st);
    }

    /// The lock-free way out, when nobody is queued (so nobody is owed the slot).
    fn try_leave_fast(&self) -> bool {
        let mut w = self.slots.load(Ordering::Acquire);
        while !Slots(w).queued() {
            let next = w - Slots::CURRENT - Slots::EXECUTING;
            match self
                .slots
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => w = now,
            }
        }
        false
    }

    fn release_thread(&self) {
        let mut st = self.state.lock();
        st.threads -= 1;
        self.dispatch(&mut st);
    }
}

/// A queued request's place in line; dropping it before it is granted leaves the queue.
struct Waiting<'a> {
    gate: &'a Gate,
    id: u64,
    kind: Kind,
    rx: oneshot::Receiver<()>,
    granted: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        let mut st = self.gate.state.lock();
        if let Some(pos) = st.queue.iter().position(|w| w.id == self.id) {
            st.queue.remove(pos);
            st.forget(self.kind);
            self.gate.slots.fetch_sub(Slots::CURRENT, Ordering::AcqRel);
            self.gate.disconnected.fetch_add(1, Ordering::Relaxed);
            // Removing a head that could not start may unblock the ones behind it.
            self.gate.dispatch(&mut st);
        } else {
            // Granted between the wake-up and this drop: the slot is ours to give back.
            drop(st);
            self.gate.leave(self.kind == Kind::Thread);
        }
    }
}

/// An admitted request. Dropping it ends the request for the gate and starts the next.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    thread_held: bool,
}

/// A worker-pool thread slot taken from an admission of [`Kind::Thread`]; dropped when
/// the sync handler returns.
#[derive(Debug)]
pub struct ThreadSlot(Arc<Gate>);

impl ThreadSlot {
    /// The thread slot of an admission of [`Kind::Thread`] from [`Gate::admit`]; the
    /// admission itself is then given back with `leave(false)`.
    pub(crate) fn new(gate: Arc<Gate>) -> ThreadSlot {
        ThreadSlot(gate)
    }
}

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
        self.gate.leave(self.thread_held);
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

    /// The lock-free fast paths and the locked queue race from several threads: the cap
    /// is never exceeded, nobody is left waiting, and every count adds up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_respect_the_cap_and_the_counts_add_up() {
        use std::sync::atomic::AtomicUsize;
        const TASKS: usize = 8;
        const EACH: usize = 2_000;
        let gate = Gate::new(limits(1_000, 3, 1));
        let running = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (gate, running) = (gate.clone(), running.clone());
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let kind = if (t + i) % 5 == 0 {
                            Kind::Thread
                        } else {
                            Kind::Async
                        };
                        let mut p = gate.enter(kind).await.unwrap();
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 3, "{now} executing over a cap of 3");
                        if i % 7 == 0 {
                            tokio::task::yield_now().await;
                        }
                        running.fetch_sub(1, Ordering::SeqCst);
                        drop(p.take_thread_slot());
                        drop(p);
                    }
                })
            })
            .collect();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("a request was left waiting")
                .unwrap();
        }
        let c = gate.counters();
        let n = (TASKS * EACH) as u64;
        assert_eq!(
            (c.current, c.queued, c.executing, c.executing_threads),
            (0, 0, 0, 0)
        );
        assert_eq!((c.completed, c.rejected, c.disconnected), (n, 0, 0));
        assert_eq!(c.wait.count, n);
        assert_eq!(c.wait.buckets.iter().sum::<u64>(), n);
        // Both ways in were taken.
        assert!(c.wait.queued > 0 && c.wait.queued < n, "{:?}", c.wait);
        assert_eq!(
            Slots(gate.slots.load(Ordering::SeqCst)).0,
            0,
            "queue flag cleared"
        );
    }
}
