//! Application pools: admission, the bounded queue, and the members behind it.
//!
//! A pool's capacity is the sum of its members' slots. [`Pool::acquire`] hands out a
//! [`Lease`] on one slot at once when a usable member has one free and nobody is waiting;
//! otherwise the request joins the queue (503 `QueueFull` past `queueLength`, 503
//! `QueueTimeout` past `queueTimeout`), served in the order its discipline gives
//! (`queue.rs`: strict FIFO, or adaptive LIFO with shedding under overload; with
//! `priorities` or `fairness`, by class and then weighted round robin across sub-queues,
//! `priority.rs` and `fair.rs`, the request tagged by [`Pool::tag`]). Dropping a
//! lease gives its slot to the next waiter. A waiter that is dropped (its client went
//! away) leaves the queue at once.
//!
//! The fast path takes no lock: when nobody waits (`entering` and `queued` both zero) a
//! request picks a member from the lock-free member view and takes a slot with one CAS on
//! the member's `active` count; a release is one decrement plus a look at those two
//! counters. Everything else (queueing, dispatch, membership) holds the mutex, for
//! O(members) work, never across an await. Why no slot is lost between the two (a
//! Dekker pair): see [`Pool::release`].

mod balancer;
pub mod counters;
mod drain;
mod fair;
mod hooks;
mod member;
mod ordering;
mod priority;
mod priority_tag;
mod queue;
pub mod source;
mod striped;

pub use balancer::hash_key;
pub use counters::{Histogram, HistogramSnapshot, PoolCounters};
pub use hooks::PoolHooks;
pub use member::Member;
pub use ordering::Turn;
pub use priority_tag::{QueueTag, RequestFacts};
pub use queue::{ClassQueue, QueueState, ShedCause, Trigger, TriggerDoc};
pub use source::FarmPolicy;

use crate::config::model::{self, LoadBalancing, QueueDiscipline};
use crate::error::Reason;
use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use priority_tag::Tagger;
use queue::{Grant, Queue};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{fence, AtomicU64, AtomicU8, AtomicUsize, Ordering};
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
    /// The hash of the request's ordering key (`ordering.rs`): only the key's member, by
    /// rendezvous over the usable members, may take it.
    pub order: Option<u64>,
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

// Aligned: the `Arc`'s reference counts, which every request's clones write from every
// front thread, get cache lines of their own, apart from the fields each request reads.
#[repr(align(128))]
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
    /// Members and balancing, read without the lock by the fast path; replaced (never
    /// edited) under the lock.
    view: ArcSwap<View>,
    /// Acquirers between "no slot at once" and "queued" (slow path, under the lock).
    /// With `counters.queued`, non-zero means someone waits: no fast path, and every
    /// release looks at the queue.
    entering: AtomicUsize,
    inner: Mutex<Inner>,
    /// Classes and fairness keys for arriving requests (`priorities`, `fairness`);
    /// `tagging` says whether there is one, so an untagged pool reads one flag.
    tagger: ArcSwapOption<Tagger>,
    tagging: std::sync::atomic::AtomicBool,
    counters: PoolCounters,
    demand: Notify,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last arrival or completion (idleTimeout), per
    /// front thread (written by every request's release).
    last_activity_ms: striped::Latest,
    /// The farm's state, for a farm pool (passive health, retry budget, affinity map),
    /// kept with the pool so it survives reloads with it.
    farm: std::sync::OnceLock<Arc<dyn FarmPolicy>>,
    /// Per-key lanes of `ordering:` (empty and unused when the pool does not order).
    lanes: Arc<ordering::Lanes>,
}

struct View {
    members: Vec<Arc<Member>>,
    balancing: LoadBalancing,
}

struct Inner {
    queue: Queue,
}

/// One slot on one member, held from dispatch until the response has been sent.
pub struct Lease {
    pool: Arc<Pool>,
    member: Arc<Member>,
    queue_wait: Duration,
    completed: bool,
    /// When the request ended, if the holder knows it (saves a clock read).
    done_at: Option<Instant>,
    /// The ordering key's turn, passed on after the slot is given back.
    turn: Option<Turn>,
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

    /// Hold the request's ordering turn until the lease goes (the response has ended).
    pub fn hold(&mut self, turn: Turn) {
        self.turn = Some(turn);
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
    /// `queueDiscipline`: `fifo` or `adaptive`.
    pub discipline: &'static str,
    /// How long the adaptive discipline has been shedding (`None`: it is not).
    pub shedding_seconds: Option<f64>,
    /// Requests finished per second, as the queue measures it (0 before it has).
    pub drain_per_second: f64,
    /// The discipline's numbers: what switched shedding on, sheds by cause, classes.
    pub queue_state: QueueState,
}

impl Pool {
    pub fn new(cfg: &model::Pool) -> Arc<Pool> {
        let tagger = Tagger::of(&cfg.queue, None);
        Arc::new(Pool {
            name: Arc::from(cfg.name.as_str()),
            queue_length: AtomicUsize::new(cfg.queue_length),
            queue_timeout_ms: AtomicU64::new(cfg.queue_timeout.as_millis() as u64),
            retry_after_s: AtomicU64::new(cfg.retry_after.as_secs()),
            tcp_level: std::sync::atomic::AtomicBool::new(
                cfg.failure.load_balancer_capabilities == model::LoadBalancerCapabilities::TcpLevel,
            ),
            state: AtomicU8::new(0),
            view: ArcSwap::from_pointee(View {
                members: Vec::new(),
                balancing: balancing_of(cfg),
            }),
            entering: AtomicUsize::new(0),
            inner: Mutex::new(Inner {
                queue: Queue::new(cfg.queue.clone()),
            }),
            tagging: std::sync::atomic::AtomicBool::new(tagger.is_some()),
            tagger: ArcSwapOption::new(tagger.map(Arc::new)),
            counters: PoolCounters::default(),
            demand: Notify::new(),
            epoch: Instant::now(),
            last_activity_ms: striped::Latest::default(),
            farm: std::sync::OnceLock::new(),
            lanes: Arc::new(ordering::Lanes::new(cfg.ordering.as_ref().map(|o| &o.key))),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    /// The farm's state, if the pool ever was a farm (see [`FarmPolicy::is_active`]).
    pub fn farm(&self) -> Option<&Arc<dyn FarmPolicy>> {
        self.farm.get()
    }

    /// The farm's state, created by `init` the first time the pool is a farm.
    pub fn farm_or_init(&self, init: impl FnOnce() -> Arc<dyn FarmPolicy>) -> &Arc<dyn FarmPolicy> {
        self.farm.get_or_init(init)
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
        self.lanes.configure(cfg.ordering.as_ref().map(|o| &o.key));
        let mut inner = self.inner.lock();
        inner.queue.set_policy(cfg.queue.clone());
        let tagger = Tagger::of(&cfg.queue, self.tagger.load().as_deref());
        self.tagging.store(tagger.is_some(), Ordering::Relaxed);
        self.tagger.store(tagger.map(Arc::new));
        let members = self.view.load().members.clone();
        self.view.store(Arc::new(View {
            members,
            balancing: balancing_of(cfg),
        }));
        self.dispatch(&mut inner);
    }

    /// `Retry-After` for this pool's 503s (the configured constant).
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(self.retry_after_s.load(Ordering::Relaxed))
    }

    /// `Retry-After` for refusing a request for `reason`: with `retryAfter: auto`, the
    /// time the backlog ahead of the request (`tag`: its priority class) takes to drain
    /// at the measured rate; otherwise the constant.
    pub fn retry_after_for(&self, reason: Reason, tag: Option<&QueueTag>) -> Duration {
        let inner = self.inner.lock();
        let q = &inner.queue;
        let overload = matches!(
            reason,
            Reason::QueueFull | Reason::QueueTimeout | Reason::Shed
        );
        if !(q.policy.retry_after_auto && overload) {
            return self.retry_after();
        }
        q.drain
            .retry_after(q.backlog_ahead(tag), q.policy.target_delay)
            .unwrap_or_else(|| self.retry_after())
    }

    /// The status of a refusal for `reason` (`rejectStatus`: 429 or 503).
    pub fn reject_status(&self, reason: Reason) -> http::StatusCode {
        let policy = &self.inner.lock().queue.policy;
        let configured = match reason {
            Reason::QueueFull => policy.queue_full_status,
            Reason::Shed => policy.shed_status,
            _ => return reason.status(),
        };
        http::StatusCode::from_u16(configured).unwrap_or(reason.status())
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
            inner.queue.clear();
            self.counters.queued.store(0, Ordering::SeqCst);
        }
    }

    fn touch_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.last_activity_ms.store(ms);
    }

    /// Time since a request last arrived or finished (for `idleTimeout`); zero while
    /// requests are active or queued.
    pub fn idle_for(&self) -> Duration {
        if self.counters.active.load(Ordering::Relaxed) > 0
            || self.counters.queued.load(Ordering::Relaxed) > 0
        {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_activity_ms.load());
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
        let waiting = !self.inner.lock().queue.is_empty();
        waiting && !self.view.load().members.iter().any(|m| m.usable())
    }

    /// The request's class and fairness key for [`Pool::acquire_as`]; `None` for a pool
    /// without `priorities` or `fairness` (one flag read).
    pub fn tag(&self, facts: &RequestFacts<'_>) -> Option<QueueTag> {
        if !self.tagging.load(Ordering::Relaxed) {
            return None;
        }
        self.tagger.load().as_ref().map(|t| t.tag(facts))
    }

    /// Each priority class's name and queue-wait histogram (empty without `priorities`).
    pub fn class_waits(&self) -> Vec<(String, HistogramSnapshot)> {
        self.tagger
            .load()
            .as_ref()
            .map(|t| t.class_waits())
            .unwrap_or_default()
    }

    /// Take a slot: at once if one is free and nobody waits, else in the queue's order.
    pub async fn acquire(self: &Arc<Self>, key: &PickKey) -> Result<Lease, Reason> {
        self.acquire_as(key, None, Duration::ZERO).await
    }

    /// [`Pool::acquire`] for a request tagged by [`Pool::tag`] (its class and sub-queue
    /// decide its place in the queue) that already waited `waited` behind its ordering
    /// key (that wait counts toward its `queueTimeout` and its queue wait).
    pub async fn acquire_as(
        self: &Arc<Self>,
        key: &PickKey,
        tag: Option<&QueueTag>,
        waited: Duration,
    ) -> Result<Lease, Reason> {
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
        if let Some(m) = self.try_fast(key) {
            return Ok(self.lease(m, waited, tag));
        }
        let (seq, rx, start) = match self.enqueue(key, tag) {
            Ok(Ok(m)) => return Ok(self.lease(m, waited, tag)),
            Ok(Err(queued)) => queued,
            Err(reason) => {
                self.counters.reject(reason);
                return Err(reason);
            }
        };
        self.wait(seq, rx, start, waited, tag).await
    }

    /// The lock-free path: nobody waits and a member has a free slot. Two loads of
    /// counters that stay zero while nobody waits, the member view, one CAS.
    fn try_fast(&self, key: &PickKey) -> Option<Arc<Member>> {
        if self.entering.load(Ordering::SeqCst) != 0
            || self.counters.queued.load(Ordering::SeqCst) != 0
        {
            return None;
        }
        take_slot(&self.view.load(), key)
    }

    /// The slow path, under the lock: a slot at once if the queue is empty and one is
    /// free, else a place in the queue (or the refusal the discipline gives).
    #[allow(clippy::type_complexity)]
    fn enqueue(
        &self,
        key: &PickKey,
        tag: Option<&QueueTag>,
    ) -> Result<Result<Arc<Member>, (u64, oneshot::Receiver<Grant>, Instant)>, Reason> {
        // Announce first, then look at the slots: a release that frees one after our
        // look sees `entering` and dispatches (see `release`).
        self.entering.fetch_add(1, Ordering::SeqCst);
        let mut inner = self.inner.lock();
        fence(Ordering::SeqCst);
        let view = self.view.load();
        let out = (|| {
            if inner.queue.is_empty() {
                if let Some(m) = take_slot(&view, key) {
                    return Ok(Ok(m));
                }
            }
            // Read the clock only when the request has to wait: the fast path above is
            // every request of a pool with free slots.
            let now = Instant::now();
            let completed = self.counters.completed.load(Ordering::Relaxed);
            inner.queue.drain.observe(now, completed);
            // Requests waiting behind their ordering key are queued too.
            match self.queue_limit().saturating_sub(self.lanes.waiting()) {
                0 => return Err(Reason::QueueFull),
                room => inner.queue.admit(now, room, tag)?,
            }
            let (seq, rx) = inner.queue.push(key.clone(), tag.cloned(), now);
            if !view.members.iter().any(|m| m.usable()) {
                self.demand.notify_waiters();
            }
            Ok(Err((seq, rx, now)))
        })();
        self.sync_queued(&inner.queue);
        drop(inner);
        self.entering.fetch_sub(1, Ordering::SeqCst);
        out
    }

    /// Wait in the queue for a slot, a refusal, or `queueTimeout`.
    async fn wait(
        self: &Arc<Self>,
        seq: u64,
        rx: oneshot::Receiver<Grant>,
        start: Instant,
        waited: Duration,
        tag: Option<&QueueTag>,
    ) -> Result<Lease, Reason> {
        let mut waiting = Waiting {
            pool: self,
            seq,
            rx: Some(rx),
        };
        let rx = waiting.rx.as_mut().expect("receiver present until done");
        let limit = self.queue_timeout().saturating_sub(waited);
        let outcome = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(grant)) => {
                waiting.rx = None;
                grant
            }
            // The pool was stopped while we waited (set_state dropped the senders).
            Ok(Err(_)) => {
                waiting.rx = None;
                Err(self.state_rejection().unwrap_or(Reason::QueueTimeout))
            }
            // Timed out, unless a slot (or a refusal) was handed to us in the same instant.
            Err(_) => waiting.leave().unwrap_or(Err(Reason::QueueTimeout)),
        };
        match outcome {
            Ok(member) => Ok(self.lease(member, waited + start.elapsed(), tag)),
            Err(reason) => {
                self.counters.reject(reason);
                Err(reason)
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

    fn lease(
        self: &Arc<Self>,
        member: Arc<Member>,
        queue_wait: Duration,
        tag: Option<&QueueTag>,
    ) -> Lease {
        self.counters.active.fetch_add(1, Ordering::Relaxed);
        self.counters.queue_wait.observe(queue_wait);
        if let Some(h) = tag.and_then(|t| t.wait.as_ref()) {
            h.observe(queue_wait);
        }
        Lease {
            pool: self.clone(),
            member,
            queue_wait,
            completed: false,
            done_at: None,
            turn: None,
        }
    }

    /// Give the slot back, and hand it on if anyone waits. Without the lock unless
    /// someone waits: the slot is freed first, then `entering`/`queued` are read; an
    /// acquirer announces itself in `entering` first, then reads the slots. With both
    /// sides sequentially consistent, either the acquirer sees the free slot or this
    /// release sees the acquirer and dispatches under the lock.
    fn release(&self, member: &Arc<Member>, completed: bool, at: Option<Instant>) {
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
        if completed {
            self.counters.completed.fetch_add(1, Ordering::Relaxed);
        }
        self.touch_at(at.unwrap_or_else(Instant::now));
        member.give_slot(completed);
        fence(Ordering::SeqCst);
        if self.entering.load(Ordering::SeqCst) != 0
            || self.counters.queued.load(Ordering::SeqCst) != 0
        {
            let mut inner = self.inner.lock();
            self.dispatch(&mut inner);
        }
    }

    /// Hand free slots to waiters in the discipline's order. A waiter whose key cannot be
    /// served yet (no candidate) blocks those behind it: strict FIFO, as HTTP.sys does.
    fn dispatch(&self, inner: &mut Inner) {
        let q = &mut inner.queue;
        if q.is_empty() {
            return;
        }
        let now = Instant::now();
        q.drain
            .observe(now, self.counters.completed.load(Ordering::Relaxed));
        q.tick(now);
        let view = self.view.load();
        while let Some((seq, key)) = q.next() {
            let Some(m) = take_slot(&view, key) else {
                break;
            };
            let waiter = q.take(seq, now).expect("the waiter next() named");
            if let Err(Ok(m)) = waiter.tx.send(Ok(m)) {
                // The waiter is gone (its guard removes it first, so this is rare).
                m.give_slot(false);
            }
        }
        self.sync_queued(q);
    }

    fn sync_queued(&self, q: &Queue) {
        self.counters.queued.store(q.len(), Ordering::SeqCst);
        self.counters
            .shedding
            .store(q.shedding().is_some(), Ordering::Relaxed);
    }

    /// Re-run dispatch after members' capacity or health changed.
    pub fn refresh(&self) {
        let mut inner = self.inner.lock();
        self.dispatch(&mut inner);
    }

    /// Replace the member list (under the lock, which every writer holds).
    fn set_members(&self, f: impl FnOnce(&mut Vec<Arc<Member>>)) {
        let old = self.view.load();
        let mut members = old.members.clone();
        f(&mut members);
        self.view.store(Arc::new(View {
            members,
            balancing: old.balancing.clone(),
        }));
    }

    /// A new member's slots join the pool; waiting requests are dispatched to it.
    pub fn add_member(&self, m: Arc<Member>) {
        let mut inner = self.inner.lock();
        self.set_members(|ms| ms.push(m));
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
        if self.view.load().members.iter().any(|x| Arc::ptr_eq(x, m)) {
            m.clear_draining();
            self.dispatch(&mut inner);
        }
    }

    pub fn remove_member(&self, m: &Arc<Member>) {
        m.set_draining();
        let inner = self.inner.lock();
        self.set_members(|ms| ms.retain(|x| !Arc::ptr_eq(x, m)));
        // Fewer members may mean the next waiter now needs a worker started.
        let usable = self.view.load().members.iter().any(|m| m.usable());
        if !inner.queue.is_empty() && !usable {
            self.demand.notify_waiters();
        }
    }

    pub fn members(&self) -> Vec<Arc<Member>> {
        self.view.load().members.clone()
    }

    /// Requests waiting for a slot.
    pub fn queue_len(&self) -> usize {
        self.counters.queued.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let (queue_length, oldest, discipline, shedding, drain, queue_state) = {
            let mut inner = self.inner.lock();
            // A pool that went quiet has had no queue event to end its overload.
            inner.queue.tick(Instant::now());
            self.sync_queued(&inner.queue);
            let q = &inner.queue;
            let age = |t: Instant| t.elapsed().as_secs_f64();
            (
                q.len(),
                q.oldest().map(age).unwrap_or(0.0),
                q.policy.discipline,
                q.shedding().map(age),
                q.drain.per_sec(),
                self.queue_state(q),
            )
        };
        let view = self.view.load();
        let usable: Vec<&Arc<Member>> = view.members.iter().filter(|m| m.usable()).collect();
        let (capacity, members) = (usable.iter().map(|m| m.slots()).sum(), view.members.len());
        let usable = usable.len();
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
            discipline: discipline.as_str(),
            shedding_seconds: shedding,
            drain_per_second: drain,
            queue_state,
        }
    }

    fn queue_state(&self, q: &Queue) -> QueueState {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let names = self
            .tagger
            .load()
            .as_ref()
            .map(|t| t.class_names())
            .unwrap_or_default();
        QueueState {
            trigger: q.trigger().map(|t| TriggerDoc {
                target_ms: ms(t.target),
                interval_ms: ms(t.interval),
                min_wait_ms: t.min_wait.map(ms),
            }),
            sheds: q
                .sheds()
                .iter()
                .map(|(c, n)| (c.as_str().to_string(), *n))
                .collect(),
            classes: names
                .into_iter()
                .zip(q.class_lengths().into_iter().chain(std::iter::repeat(0)))
                .map(|(name, queued)| ClassQueue { name, queued })
                .collect(),
            flows: q.flows(),
        }
    }

    /// Whether the adaptive discipline is shedding now. Evaluated at the time of asking,
    /// as [`Pool::snapshot`] does: once the load is gone, requests take the lock-free
    /// path and no queue event ends the overload, so the flag alone would stay set.
    pub fn shedding(&self) -> bool {
        let mut inner = self.inner.lock();
        inner.queue.tick(Instant::now());
        self.sync_queued(&inner.queue);
        inner.queue.shedding().is_some()
    }

    /// The pool's `queueDiscipline`.
    pub fn discipline(&self) -> QueueDiscipline {
        self.inner.lock().queue.policy.discipline
    }
}

/// The balancing a pool's config asks for.
fn balancing_of(cfg: &model::Pool) -> LoadBalancing {
    match &cfg.backend {
        model::Backend::Farm(f) => f.load_balancing.clone(),
        // A web garden balances by least outstanding requests (DESIGN.md section 1).
        model::Backend::Garden(_) => LoadBalancing::LeastRequests,
    }
}

/// Pick a member for `key` and take one of its slots. The pick reads the members'
/// counts without a lock, so another request may take the slot first; then pick again
/// (a bounded number of times: each failure means a slot was taken, so progress).
fn take_slot(view: &View, key: &PickKey) -> Option<Arc<Member>> {
    for _ in 0..=view.members.len().max(1) * 2 {
        let i = balancer::pick(&view.balancing, &view.members, key)?;
        let m = &view.members[i];
        if m.try_take_slot() {
            return Some(m.clone());
        }
    }
    None
}

/// A queued request's place; leaving (timeout, or the future being dropped because the
/// client went away) removes it from the queue at once.
struct Waiting<'a> {
    pool: &'a Arc<Pool>,
    seq: u64,
    rx: Option<oneshot::Receiver<Grant>>,
}

impl Waiting<'_> {
    /// Leave the queue; returns what had already been handed over (a slot, or a refusal).
    fn leave(&mut self) -> Option<Grant> {
        let mut rx = self.rx.take()?;
        let mut inner = self.pool.inner.lock();
        if inner.queue.remove(self.seq) {
            self.pool.sync_queued(&inner.queue);
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
            if let Some(Ok(m)) = self.leave() {
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
