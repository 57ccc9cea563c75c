//! A pool member: one place a request can run (a local worker process or a farm server),
//! with its share of the pool's slots.

use crate::upstream::Client;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One member of a pool. A slot is taken with one CAS on `active` (never past `slots`),
/// so the pool's lock-free fast path and its locked dispatch can race for the last slot
/// safely; readers (admin API, supervisor) look without any lock.
///
/// Aligned so the `Arc`'s reference counts (written by every request's clone, on every
/// front thread) have their cache lines to themselves, and what each request writes
/// ([`Busy`]) sits apart from what each request only reads (the client, the slots, the
/// health flags): a read then does not wait for a line another thread just wrote.
#[repr(align(128))]
pub struct Member {
    /// For logs and labels: `pid 1234` or `10.0.0.5:8080`.
    pub label: String,
    /// The worker's process id (local workers only).
    pub pid: Option<u32>,
    pub client: Client,
    pub started: Instant,
    slots: AtomicUsize,
    weight: AtomicU32,
    failed: AtomicU64,
    healthy: AtomicBool,
    draining: AtomicBool,
    backup: AtomicBool,
    busy: Busy,
}

/// What every request writes: on cache lines of their own.
#[repr(align(128))]
#[derive(Default)]
struct Busy {
    active: AtomicUsize,
    served: AtomicU64,
    /// Smooth weighted round robin's running weight (nginx's algorithm).
    current_weight: AtomicI64,
    /// EWMA of response-head latency in microseconds (leastResponseTime).
    ewma_us: AtomicU64,
}

impl Member {
    pub fn new(
        label: impl Into<String>,
        pid: Option<u32>,
        client: Client,
        slots: usize,
        weight: u32,
    ) -> Arc<Member> {
        Arc::new(Member {
            label: label.into(),
            pid,
            client,
            started: Instant::now(),
            slots: AtomicUsize::new(slots.max(1)),
            weight: AtomicU32::new(weight.max(1)),
            failed: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            backup: AtomicBool::new(false),
            busy: Busy::default(),
        })
    }

    /// Requests holding one of this member's slots.
    pub fn active(&self) -> usize {
        self.busy.active.load(Ordering::Relaxed)
    }

    /// Requests this member has finished.
    pub fn served(&self) -> u64 {
        self.busy.served.load(Ordering::Relaxed)
    }

    /// Requests that failed at the transport level on this member (connect, reset).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn note_failure(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn slots(&self) -> usize {
        self.slots.load(Ordering::Relaxed)
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Change capacity (slow start, reconfigure). Call [`super::Pool::refresh`] after
    /// growing it so waiting requests can use the new slots.
    pub fn set_capacity(&self, slots: usize, weight: u32) {
        self.slots.store(slots.max(1), Ordering::Relaxed);
        self.weight.store(weight.max(1), Ordering::Relaxed);
    }

    /// Unhealthy members get no new requests (health checks, passive ejection).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(super) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub(super) fn clear_draining(&self) {
        self.draining.store(false, Ordering::Relaxed);
    }

    /// A backup member is used only when no primary member is usable.
    pub fn set_backup(&self, backup: bool) {
        self.backup.store(backup, Ordering::Relaxed);
    }

    pub fn is_backup(&self) -> bool {
        self.backup.load(Ordering::Relaxed)
    }

    /// Takes new requests at all (ignoring whether a slot is free right now).
    pub fn usable(&self) -> bool {
        self.is_healthy() && !self.is_draining()
    }

    pub(super) fn has_free_slot(&self) -> bool {
        self.active() < self.slots()
    }

    /// Take a slot if one is free. Sequentially consistent: the pool's release path
    /// relies on it (see `Pool::release`).
    pub(super) fn try_take_slot(&self) -> bool {
        let slots = self.slots();
        self.busy
            .active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| {
                (a < slots).then_some(a + 1)
            })
            .is_ok()
    }

    pub(super) fn give_slot(&self, completed: bool) {
        self.busy.active.fetch_sub(1, Ordering::SeqCst);
        if completed {
            self.busy.served.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Smooth weighted round robin's running weight: add `w`, return the new value.
    pub(super) fn add_current_weight(&self, w: i64) -> i64 {
        self.busy.current_weight.fetch_add(w, Ordering::Relaxed) + w
    }

    /// Response-head latency EWMA in microseconds (0 = no sample yet).
    pub fn latency_ewma_us(&self) -> u64 {
        self.busy.ewma_us.load(Ordering::Relaxed)
    }

    /// Fold one latency sample into the EWMA (alpha = 1/8, as TCP's SRTT).
    pub fn observe_latency(&self, us: u64) {
        let old = self.busy.ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { old - old / 8 + us / 8 };
        self.busy.ewma_us.store(new.max(1), Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("label", &self.label)
            .field("pid", &self.pid)
            .field("active", &self.active())
            .field("slots", &self.slots())
            .finish()
    }
}
