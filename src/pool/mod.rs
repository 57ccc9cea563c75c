//! Application pools: admission, the bounded FIFO queue, and the members behind it.
//!
//! A pool's capacity is the sum of its members' slots. [`Pool::acquire`] hands out a
//! [`Lease`] on one slot at once when a usable member has one free and nobody is waiting;
//! otherwise the request joins the FIFO queue (503 `QueueFull` past `queueLength`, 503
//! `QueueTimeout` past `queueTimeout`). Dropping a lease gives its slot to the oldest
//! waiter. A waiter that is dropped (its client went away) leaves the queue at once.
//!
//! One mutex guards the members' slot counts and the queue; it is held only for O(members)
//! work, never across an await.

mod balancer;
pub mod counters;
mod hooks;
mod member;

pub use balancer::hash_key;
pub use counters::{Histogram, HistogramSnapshot, PoolCounters};
pub use hooks::PoolHooks;
pub use member::Member;

use crate::config::model::{self, LoadBalancing};
use crate::error::Reason;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// What a request carries for the balancer: a hash for `hash` balancing and the member
/// named by its affinity cookie.
#[derive(Debug, Default, Clone)]
pub struct PickKey {
    pub hash: Option<u64>,
    pub affinity: Option<String>,
    /// A member to skip if any other can take the request (the one a retry failed on).
    pub avoid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PoolState {
    Started,
    /// Stopped by an operator: 503 `Disabled`.
    Stopped,
    /// Stopped by rapid-fail protection: 503 `AppOffline`.
    AppOffline,
}

impl PoolState {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Started => "Started",
            PoolState::Stopped => "Stopped",
            PoolState::AppOffline => "AppOffline",
        }
    }
}

pub struct Pool {
    /// Shared with every request record and registry entry of the pool (no copy per request).
    name: Arc<str>,
    queue_length: AtomicUsize,
    queue_timeout_ms: AtomicU64,
    retry_after_s: AtomicU64,
    /// `loadBalancerCapabilities: TcpLevel`: a stopped pool closes connections instead
    /// of answering 503, so a layer-4 balancer in front notices.
    tcp_level: std::sync::atomic::AtomicBool,
    state: AtomicU8,
    inner: Mutex<Inner>,
    counters: PoolCounters,
    demand: Notify,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last arrival or completion (idleTimeout).
    last_activity_ms: AtomicU64,
    /// State the code that manages the members keeps with the pool (the farm's passive
    /// health, retry budget, affinity map), so it survives reloads with the pool.
    extension: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

struct Inner {
    members: Vec<Arc<Member>>,
    /// FIFO by arrival sequence number; a BTreeMap so a leaving waiter is removed in O(log n).
    waiters: BTreeMap<u64, Waiter>,
    next_seq: u64,
    rr: usize,
    balancing: LoadBalancing,
}

struct Waiter {
    tx: oneshot::Sender<Arc<Member>>,
    key: PickKey,
    enqueued: Instant,
}

/// One slot on one member, held from dispatch until the response has been sent.
pub struct Lease {
    pool: Arc<Pool>,
    member: Arc<Member>,
    queue_wait: Duration,
    completed: bool,
    /// When the request ended, if the holder knows it (saves a clock read).
    done_at: Option<Instant>,
}

impl Lease {
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }

    pub fn queue_wait(&self) -> Duration {
        self.queue_wait
    }

    /// Mark the request as served (counted in the member's `served`, which drives
    /// request-count recycling); a lease dropped without it counts as abandoned.
    pub fn complete(&mut self) {
        self.completed = true;
    }

    /// [`Lease::complete`], with the time the request ended as the caller read it.
    pub fn complete_at(&mut self, at: Instant) {
        self.completed = true;
        self.done_at = Some(at);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool
            .release(&self.member, self.completed, self.done_at);
    }
}

/// A point-in-time view of a pool for the admin API and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct PoolSnapshot {
    pub name: String,
    pub state: PoolState,
    pub queue_length: usize,
    pub queue_limit: usize,
    pub queue_oldest_seconds: f64,
    pub capacity: usize,
    pub active: usize,
    pub members: usize,
    pub usable_members: usize,
    pub arrivals: u64,
    pub completed: u64,
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Pool {
    pub fn new(cfg: &model::Pool) -> Arc<Pool> {
        let balancing = match &cfg.backend {
            model::Backend::Farm(f) => f.load_balancing.clone(),
            // A web garden balances by least outstanding requests (DESIGN.md section 1).
            model::Backend::Garden(_) => LoadBalancing::LeastRequests,
        };
        Arc::new(Pool {
            name: Arc::from(cfg.name.as_str()),
            queue_length: AtomicUsize::new(cfg.queue_length),
            queue_timeout_ms: AtomicU64::new(cfg.queue_timeout.as_millis() as u64),
            retry_after_s: AtomicU64::new(cfg.retry_after.as_secs()),
            tcp_level: std::sync::atomic::AtomicBool::new(
                cfg.failure.load_balancer_capabilities == model::LoadBalancerCapabilities::TcpLevel,
            ),
            state: AtomicU8::new(0),
            inner: Mutex::new(Inner {
                members: Vec::new(),
                waiters: BTreeMap::new(),
                next_seq: 0,
                rr: 0,
                balancing,
            }),
            counters: PoolCounters::default(),
            demand: Notify::new(),
            epoch: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            extension: std::sync::OnceLock::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    /// The extension set by [`Pool::extension_or_init`], if it is a `T`.
    pub fn extension<T: std::any::Any + Send + Sync>(&self) -> Option<&T> {
        self.extension.get()?.downcast_ref::<T>()
    }

    /// The pool's extension, created by `init` on first use; `None` if the pool already
    /// carries an extension of another type.
    pub fn extension_or_init<T: std::any::Any + Send + Sync>(
        &self,
        init: impl FnOnce() -> T,
    ) -> Option<&T> {
        self.extension
            .get_or_init(|| Box::new(init()))
            .downcast_ref::<T>()
    }

    pub fn counters(&self) -> &PoolCounters {
        &self.counters
    }

    pub fn queue_limit(&self) -> usize {
        self.queue_length.load(Ordering::Relaxed)
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms.load(Ordering::Relaxed))
    }

    /// Apply a changed pool config (queue settings, balancing) without losing waiters.
    pub fn reconfigure(&self, cfg: &model::Pool) {
        self.queue_length.store(cfg.queue_length, Ordering::Relaxed);
        self.queue_timeout_ms
            .store(cfg.queue_timeout.as_millis() as u64, Ordering::Relaxed);
        self.retry_after_s
            .store(cfg.retry_after.as_secs(), Ordering::Relaxed);
        self.tcp_level.store(
            cfg.failure.load_balancer_capabilities == model::LoadBalancerCapabilities::TcpLevel,
            Ordering::Relaxed,
        );
        let mut inner = self.inner.lock();
        inner.balancing = match &cfg.backend {
            model::Backend::Farm(f) => f.load_balancing.clone(),
            model::Backend::Garden(_) => LoadBalancing::LeastRequests,
        };
    }

    /// `Retry-After` for this pool's 503s.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(self.retry_after_s.load(Ordering::Relaxed))
    }

    /// Whether `reason` should close the client connection rather than answer (a
    /// stopped pool with `loadBalancerCapabilities: TcpLevel`).
    pub fn closes_connection(&self, reason: Reason) -> bool {
        self.tcp_level.load(Ordering::Relaxed)
            && matches!(reason, Reason::AppOffline | Reason::Disabled)
    }

    pub fn state(&self) -> PoolState {
        match self.state.load(Ordering::Relaxed) {
            0 => PoolState::Started,
            1 => PoolState::Stopped,
            _ => PoolState::AppOffline,
        }
    }

    /// Stopping a pool answers its waiting requests at once with the matching 503.
    pub fn set_state(&self, s: PoolState) {
        let v = match s {
            PoolState::Started => 0,
            PoolState::Stopped => 1,
            PoolState::AppOffline => 2,
        };
        self.state.store(v, Ordering::Relaxed);
        if s != PoolState::Started {
            // Dropping the senders wakes every waiter, which then sees the new state.
            let mut inner = self.inner.lock();
            inner.waiters.clear();
            self.counters.queued.store(0, Ordering::Relaxed);
        }
    }

    fn touch_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since a request last arrived or finished (for `idleTimeout`); zero while
    /// requests are active or queued.
    pub fn idle_for(&self) -> Duration {
        if self.counters.active.load(Ordering::Relaxed) > 0
            || self.counters.queued.load(Ordering::Relaxed) > 0
        {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Resolves when a request is waiting and no member can ever take it (no usable
    /// member): the supervisor's cue to start workers for an `onDemand` pool.
    pub async fn demanded(&self) {
        loop {
            let notified = self.demand.notified();
            if self.needs_members() {
                return;
            }
            notified.await;
        }
    }

    fn needs_members(&self) -> bool {
        let inner = self.inner.lock();
        !inner.waiters.is_empty() && !inner.members.iter().any(|m| m.usable())
    }

    /// Take a slot: at once if one is free and nobody waits, else in FIFO order.
    pub async fn acquire(self: &Arc<Self>, key: &PickKey) -> Result<Lease, Reason> {
        // No idle-clock touch here: while a request is active or queued the pool is not
        // idle, and its release touches it (one clock read per request, not two).
        // A retry (it avoids the member it failed on) is the same request again.
        let counter = if key.avoid.is_some() {
            &self.counters.retries
        } else {
            &self.counters.arrivals
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(reason) = self.state_rejection() {
            self.counters.reject(reason);
            return Err(reason);
        }
        let (seq, rx, start) = {
            let mut inner = self.inner.lock();
            if inner.waiters.is_empty() {
                let Inner {
                    balancing,
                    members,
                    rr,
                    ..
                } = &mut *inner;
                if let Some(i) = balancer::pick(balancing, members, key, rr) {
                    let m = inner.members[i].clone();
                    m.take_slot();
                    drop(inner);
                    return Ok(self.lease(m, Duration::ZERO));
                }
            }
            if inner.waiters.len() >= self.queue_limit() {
                drop(inner);
                self.counters.reject(Reason::QueueFull);
                return Err(Reason::QueueFull);
            }
            // Read the clock only when the request has to wait: the fast path above is
            // every request of a pool with free slots.
            let start = Instant::now();
            let (tx, rx) = oneshot::channel();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.waiters.insert(
                seq,
                Waiter {
                    tx,
                    key: key.clone(),
                    enqueued: start,
                },
            );
            self.counters
                .queued
                .store(inner.waiters.len(), Ordering::Relaxed);
            if !inner.members.iter().any(|m| m.usable()) {
                self.demand.notify_waiters();
            }
            (seq, rx, start)
        };

        let mut waiting = Waiting {
            pool: self,
            seq,
            rx: Some(rx),
        };
        let rx = waiting.rx.as_mut().expect("receiver present until done");
        match tokio::time::timeout(self.queue_timeout(), rx).await {
            Ok(Ok(member)) => {
                waiting.rx = None;
                Ok(self.lease(member, start.elapsed()))
            }
            // The pool was stopped while we waited (set_state dropped the senders).
            Ok(Err(_)) => {
                waiting.rx = None;
                let reason = self.state_rejection().unwrap_or(Reason::QueueTimeout);
                self.counters.reject(reason);
                Err(reason)
            }
            Err(_) => {
                // Timed out, unless a slot was handed to us in the same instant.
                if let Some(member) = waiting.leave() {
                    return Ok(self.lease(member, start.elapsed()));
                }
                self.counters.reject(Reason::QueueTimeout);
                Err(Reason::QueueTimeout)
            }
        }
    }

    fn state_rejection(&self) -> Option<Reason> {
        match self.state() {
            PoolState::Started => None,
            PoolState::Stopped => Some(Reason::Disabled),
            PoolState::AppOffline => Some(Reason::AppOffline),
        }
    }

    fn lease(self: &Arc<Self>, member: Arc<Member>, queue_wait: Duration) -> Lease {
        self.counters.active.fetch_add(1, Ordering::Relaxed);
        self.counters.queue_wait.observe(queue_wait);
        Lease {
            pool: self.clone(),
            member,
            queue_wait,
            completed: false,
            done_at: None,
        }
    }

    fn release(&self, member: &Arc<Member>, completed: bool, at: Option<Instant>) {
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
        if completed {
            self.counters.completed.fetch_add(1, Ordering::Relaxed);
        }
        self.touch_at(at.unwrap_or_else(Instant::now));
        let mut inner = self.inner.lock();
        member.give_slot(completed);
        self.dispatch(&mut inner);
    }

    /// Hand free slots to waiters, oldest first. A waiter whose key cannot be served yet
    /// (no candidate) blocks those behind it: strict FIFO, as HTTP.sys does.
    fn dispatch(&self, inner: &mut Inner) {
        let Inner {
            balancing,
            members,
            rr,
            waiters,
            ..
        } = inner;
        while let Some(entry) = waiters.first_entry() {
            let Some(i) = balancer::pick(balancing, members, &entry.get().key, rr) else {
                break;
            };
            let waiter = entry.remove();
            let m = members[i].clone();
            m.take_slot();
            if let Err(m) = waiter.tx.send(m) {
                // The waiter is gone (its guard removes it first, so this is rare).
                m.give_slot(false);
            }
        }
        self.counters.queued.store(waiters.len(), Ordering::Relaxed);
    }

    /// Re-run dispatch after members' capacity or health changed.
    pub fn refresh(&self) {
        let mut inner = self.inner.lock();
        self.dispatch(&mut inner);
    }

    /// A new member's slots join the pool; waiting requests are dispatched to it.
    pub fn add_member(&self, m: Arc<Member>) {
        let mut inner = self.inner.lock();
        inner.members.push(m);
        self.dispatch(&mut inner);
    }

    /// No new requests go to `m`; its in-flight requests finish. It stays listed (and
    /// its slots counted as busy) until [`Pool::remove_member`].
    pub fn drain_member(&self, m: &Arc<Member>) {
        m.set_draining();
    }

    /// Undo [`Pool::drain_member`]: `m` takes new requests again (an operator's
    /// "drain" of a farm server is reversible; a worker's is not, so only farms use it).
    pub fn undrain_member(&self, m: &Arc<Member>) {
        let mut inner = self.inner.lock();
        if inner.members.iter().any(|x| Arc::ptr_eq(x, m)) {
            m.clear_draining();
            self.dispatch(&mut inner);
        }
    }

    pub fn remove_member(&self, m: &Arc<Member>) {
        m.set_draining();
        let mut inner = self.inner.lock();
        inner.members.retain(|x| !Arc::ptr_eq(x, m));
        // Fewer members may mean the next waiter now needs a worker started.
        if !inner.waiters.is_empty() && !inner.members.iter().any(|m| m.usable()) {
            self.demand.notify_waiters();
        }
    }

    pub fn members(&self) -> Vec<Arc<Member>> {
        self.inner.lock().members.clone()
    }

    /// Requests waiting for a slot.
    pub fn queue_len(&self) -> usize {
        self.counters.queued.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let (queue_length, oldest, capacity, members, usable) = {
            let inner = self.inner.lock();
            let oldest = inner
                .waiters
                .first_key_value()
                .map(|(_, w)| w.enqueued.elapsed().as_secs_f64())
                .unwrap_or(0.0);
            let usable: Vec<&Arc<Member>> = inner.members.iter().filter(|m| m.usable()).collect();
            (
                inner.waiters.len(),
                oldest,
                usable.iter().map(|m| m.slots()).sum(),
                inner.members.len(),
                usable.len(),
            )
        };
        let c = &self.counters;
        PoolSnapshot {
            name: self.name.to_string(),
            state: self.state(),
            queue_length,
            queue_limit: self.queue_limit(),
            queue_oldest_seconds: oldest,
            capacity,
            active: c.active.load(Ordering::Relaxed).max(0) as usize,
            members,
            usable_members: usable,
            arrivals: c.arrivals.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            rejected: Reason::ALL
                .iter()
                .filter(|r| c.rejected(**r) > 0)
                .map(|r| (r.as_str(), c.rejected(*r)))
                .collect(),
        }
    }
}

/// A queued request's place; leaving (timeout, or the future being dropped because the
/// client went away) removes it from the queue at once.
struct Waiting<'a> {
    pool: &'a Arc<Pool>,
    seq: u64,
    rx: Option<oneshot::Receiver<Arc<Member>>>,
}

impl Waiting<'_> {
    /// Leave the queue; returns a member if a slot had already been handed over.
    fn leave(&mut self) -> Option<Arc<Member>> {
        let mut rx = self.rx.take()?;
        let mut inner = self.pool.inner.lock();
        if inner.waiters.remove(&self.seq).is_some() {
            self.pool
                .counters
                .queued
                .store(inner.waiters.len(), Ordering::Relaxed);
            return None;
        }
        drop(inner);
        rx.try_recv().ok()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.rx.is_some() {
            // The request was abandoned while queued (ClientGone).
            if let Some(m) = self.leave() {
                // A slot arrived just before the client left: give it back.
                self.pool.release_unused(&m);
            }
            self.pool.counters.reject(Reason::ClientGone);
        }
    }
}

impl Pool {
    fn release_unused(&self, m: &Arc<Member>) {
        let mut inner = self.inner.lock();
        m.give_slot(false);
        self.dispatch(&mut inner);
    }
}

#[cfg(test)]
mod tests;
