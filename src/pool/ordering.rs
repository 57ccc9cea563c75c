//! Ordered per key (`pools.<name>.ordering`, issue 17): requests with the same key run
//! one at a time, in arrival order, on the member the key hashes to.
//!
//! Each key with work has a *lane*: the request holding the key's [`Turn`] (from before
//! it takes a slot until its response has ended: the turn rides in its [`Lease`]) and the
//! requests waiting behind it, first come first served. Dropping a turn hands it to the
//! next waiter, or removes the lane when nobody waits, so the map holds only keys with a
//! request waiting or in flight. A turn's holder picks its member by rendezvous hashing
//! over the usable members at the moment it takes a slot (`balancer.rs`): with one
//! request per key in flight, a key moves off a member that left only once none of its
//! requests runs there, and its waiters follow in order.
//!
//! A request behind its key counts as queued: against `queueLength` (with the pool
//! queue), `queueTimeout` (its lane wait plus its queue wait) and in the queue-wait
//! histogram, as HAProxy counts a request waiting for its server's `maxconn` in
//! `timeout queue`.
//!
//! [`Lease`]: super::Lease

use super::{Histogram, HistogramSnapshot, Pool};
use crate::config::ordering::OrderingKey;
use crate::error::Reason;
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A pool's lanes, and where its requests' keys come from (`None`: not ordered).
pub(super) struct Lanes {
    source: ArcSwapOption<OrderingKey>,
    map: Mutex<Map>,
    /// Requests waiting behind their key (not yet holding its turn).
    waiting: AtomicUsize,
    /// How long requests waited behind their key (0 for those that found it free).
    wait: Histogram,
}

#[derive(Default)]
struct Map {
    /// Keyed by the key's bytes, hashed with SipHash's random keys: a client choosing
    /// keys cannot make the map slow, nor share another key's lane by a hash collision.
    lanes: HashMap<Arc<[u8]>, Lane>,
    next_seq: u64,
}

/// A key whose turn is held, and the requests waiting for it in arrival order.
#[derive(Default)]
struct Lane {
    waiters: VecDeque<(u64, oneshot::Sender<()>)>,
}

enum Entered {
    /// The key was free: the request holds its turn.
    Now,
    Wait(u64, oneshot::Receiver<()>),
    Full,
}

impl Lanes {
    pub(super) fn new(source: Option<&OrderingKey>) -> Lanes {
        Lanes {
            source: ArcSwapOption::from(source.cloned().map(Arc::new)),
            map: Mutex::new(Map::default()),
            waiting: AtomicUsize::new(0),
            wait: Histogram::default(),
        }
    }

    /// A reload may turn ordering on or off; lanes in use finish as they are.
    pub(super) fn configure(&self, source: Option<&OrderingKey>) {
        self.source.store(source.cloned().map(Arc::new));
    }

    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Take `key`'s turn, or a place behind it while fewer than `room` requests wait.
    fn enter(&self, key: &Arc<[u8]>, room: usize) -> Entered {
        let mut guard = self.map.lock();
        let m = &mut *guard;
        match m.lanes.entry(key.clone()) {
            Entry::Vacant(v) => {
                v.insert(Lane::default());
                Entered::Now
            }
            Entry::Occupied(_) if self.waiting() >= room => Entered::Full,
            Entry::Occupied(mut o) => {
                let (tx, rx) = oneshot::channel();
                let seq = m.next_seq;
                m.next_seq += 1;
                o.get_mut().waiters.push_back((seq, tx));
                self.waiting.fetch_add(1, Ordering::Relaxed);
                Entered::Wait(seq, rx)
            }
        }
    }

    /// Hand `key`'s turn to its oldest waiter, or end the lane if nobody waits.
    fn pass(&self, key: &[u8]) {
        let mut m = self.map.lock();
        let Some(lane) = m.lanes.get_mut(key) else {
            return;
        };
        while let Some((_, tx)) = lane.waiters.pop_front() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            // A waiter removes itself before its receiver goes, so this rarely fails.
            if tx.send(()).is_ok() {
                return;
            }
        }
        m.lanes.remove(key);
    }

    /// Take waiter `seq` out of `key`'s lane; `false` if it was handed the turn already.
    fn leave(&self, key: &[u8], seq: u64) -> bool {
        let mut m = self.map.lock();
        let Some(lane) = m.lanes.get_mut(key) else {
            return false;
        };
        let Some(i) = lane.waiters.iter().position(|(s, _)| *s == seq) else {
            return false;
        };
        lane.waiters.remove(i);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        true
    }
}

/// A key's turn: while it lives no other request of the key is dispatched. Held by the
/// proxy across a retry, then by the request's [`super::Lease`] until the response ends.
pub struct Turn {
    lanes: Arc<Lanes>,
    key: Arc<[u8]>,
    hash: u64,
    waited: Duration,
}

impl Turn {
    /// The key's hash, for the balancer ([`super::PickKey::order`]).
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How long the request waited behind its key.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.lanes.pass(&self.key);
    }
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn").field("hash", &self.hash).finish()
    }
}

impl Pool {
    /// Where this pool's ordering keys come from (`None`: the pool does not order).
    pub fn ordering_key(&self) -> Option<Arc<OrderingKey>> {
        self.lanes.source.load_full()
    }

    /// Wait for `key`'s turn, in arrival order. Refused with `QueueFull` when the pool's
    /// waiting requests (queue and lanes) reach `queueLength`, `QueueTimeout` after
    /// `queueTimeout`; a refusal counts as an arrival refused, as the queue's do.
    pub async fn take_turn(self: &Arc<Self>, key: &[u8]) -> Result<Turn, Reason> {
        let key: Arc<[u8]> = Arc::from(key);
        let room = self.queue_limit().saturating_sub(self.queue_len());
        match self.lanes.enter(&key, room) {
            Entered::Now => {
                self.lanes.wait.observe(Duration::ZERO);
                Ok(self.turn(key, Duration::ZERO))
            }
            Entered::Full => Err(self.refuse_unqueued(Reason::QueueFull)),
            Entered::Wait(seq, rx) => self.wait_turn(key, seq, rx).await,
        }
    }

    async fn wait_turn(
        self: &Arc<Self>,
        key: Arc<[u8]>,
        seq: u64,
        rx: oneshot::Receiver<()>,
    ) -> Result<Turn, Reason> {
        let start = Instant::now();
        let mut w = LaneWait {
            pool: self,
            key: &key,
            seq,
            rx: Some(rx),
        };
        let rx = w.rx.as_mut().expect("receiver present until done");
        let granted = match tokio::time::timeout(self.queue_timeout(), rx).await {
            Ok(r) => {
                w.rx = None;
                r.is_ok()
            }
            // Timed out, unless the turn was handed over in the same instant.
            Err(_) => w.leave(),
        };
        drop(w);
        if !granted {
            return Err(self.refuse_unqueued(Reason::QueueTimeout));
        }
        let waited = start.elapsed();
        self.lanes.wait.observe(waited);
        Ok(self.turn(key, waited))
    }

    fn turn(&self, key: Arc<[u8]>, waited: Duration) -> Turn {
        Turn {
            lanes: self.lanes.clone(),
            hash: super::hash_key(&key),
            key,
            waited,
        }
    }

    /// A request refused before it reached [`Pool::acquire`]: counted there otherwise.
    fn refuse_unqueued(&self, reason: Reason) -> Reason {
        self.counters.arrivals.fetch_add(1, Ordering::Relaxed);
        self.counters.reject(reason);
        reason
    }

    /// Keys with a request waiting or in flight (`roost_pool_ordered_keys`).
    pub fn ordered_keys(&self) -> usize {
        self.lanes.map.lock().lanes.len()
    }

    /// Requests waiting behind their key (`roost_pool_ordered_waiting`).
    pub fn ordered_waiting(&self) -> usize {
        self.lanes.waiting()
    }

    /// Time waited behind a key (`roost_pool_ordered_wait_seconds`).
    pub fn ordered_wait(&self) -> HistogramSnapshot {
        self.lanes.wait.snapshot()
    }
}

/// A place behind a key; leaving it (timeout, or the client going away) takes it out of
/// the lane at once, or passes the turn on if it had just been handed over.
struct LaneWait<'a> {
    pool: &'a Arc<Pool>,
    key: &'a Arc<[u8]>,
    seq: u64,
    rx: Option<oneshot::Receiver<()>>,
}

impl LaneWait<'_> {
    /// Leave the lane; `true` if the turn had been handed over already.
    fn leave(&mut self) -> bool {
        let Some(mut rx) = self.rx.take() else {
            return false;
        };
        !self.pool.lanes.leave(self.key, self.seq) && rx.try_recv().is_ok()
    }
}

impl Drop for LaneWait<'_> {
    fn drop(&mut self) {
        if self.rx.is_some() {
            // The client went away while it waited behind its key.
            if self.leave() {
                self.pool.lanes.pass(self.key);
            }
            self.pool.refuse_unqueued(Reason::ClientGone);
        }
    }
}

#[cfg(test)]
mod tests;
