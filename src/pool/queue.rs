//! The pool's waiting requests and the discipline that orders them.
//!
//! `fifo` (the default, as HTTP.sys): strict arrival order; a request leaves at
//! `queueTimeout`, and arrivals past `queueLength` get `QueueFull`.
//!
//! `adaptive`: CoDel's standing-queue test on request waits ("Fail at Scale", ACM Queue
//! 2015; folly's `Codel`). Each interval keeps the minimum wait of the requests it
//! dispatched; when an interval ends with that minimum above the target (and the queue
//! never emptied), the pool is *overloaded* until an interval in which the queue empties.
//! While overloaded:
//! - the queue is served newest first (adaptive LIFO): a request that is served at all
//!   is served soon, instead of every one waiting the whole queue;
//! - the queue holds only what drains within the target (measured drain rate × target):
//!   an arrival beyond that sheds the oldest waiter at once (`Shed`), which would not
//!   have been served in time;
//! - a waiter older than twice the target is shed at the next queue event (folly's
//!   slough timeout).
//!
//! `queueLength` and `queueTimeout` stay the hard caps in both disciplines.

use super::drain::DrainRate;
use super::priority::{Lanes, Place, Victim};
use super::priority_tag::QueueTag;
use super::{Member, PickKey};
use crate::config::model::{QueueDiscipline, QueuePolicy};
use crate::error::Reason;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a waiter is told: a slot on a member, or why it was refused.
pub(super) type Grant = Result<Arc<Member>, Reason>;

/// Why a waiter was shed (all answer 503/429 `Shed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedCause {
    /// The adaptive discipline kept the queue to what drains within the target.
    Overload,
    /// The adaptive discipline dropped a waiter older than twice the target.
    Stale,
    /// A higher-class arrival took its place in a full queue.
    Priority,
    /// An arrival from a sub-queue under its share took its place in a full queue.
    Fairness,
}

impl ShedCause {
    pub const ALL: [ShedCause; 4] = [
        ShedCause::Overload,
        ShedCause::Stale,
        ShedCause::Priority,
        ShedCause::Fairness,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ShedCause::Overload => "overload",
            ShedCause::Stale => "stale",
            ShedCause::Priority => "priority",
            ShedCause::Fairness => "fairness",
        }
    }
}

pub(super) struct Waiter {
    pub tx: oneshot::Sender<Grant>,
    pub key: PickKey,
    pub enqueued: Instant,
    pub tag: Option<QueueTag>,
    /// Its class and sub-queue (pools with lanes).
    place: Option<Place>,
}

pub(super) struct Queue {
    /// By arrival sequence number: the oldest is first, the newest last, and a leaving
    /// waiter is removed in O(log n).
    waiters: BTreeMap<u64, Waiter>,
    next_seq: u64,
    pub policy: QueuePolicy,
    codel: Codel,
    pub drain: DrainRate,
    /// Classes and sub-queues (`priorities`, `fairness`); `None`: order by `waiters`.
    lanes: Option<Lanes>,
    /// Waiters shed, by [`ShedCause`].
    sheds: [u64; 4],
}

/// How a pool's queue stands beyond its length (issue 17 item 6).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct QueueState {
    /// While shedding: the target, interval and minimum wait that switched it on.
    pub trigger: Option<TriggerDoc>,
    /// Waiters shed, by cause (`overload`, `stale`, `priority`, `fairness`).
    pub sheds: BTreeMap<String, u64>,
    /// Priority classes, highest first, with their waiters (empty without `priorities`).
    pub classes: Vec<ClassQueue>,
    /// Fairness sub-queues with waiters (0 without `fairness`).
    pub flows: usize,
}

/// [`Trigger`] in milliseconds, for documents.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TriggerDoc {
    pub target_ms: f64,
    pub interval_ms: f64,
    /// `None`: no request left the queue in that interval.
    pub min_wait_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassQueue {
    pub name: String,
    pub queued: usize,
}

/// Why the adaptive discipline switched shedding on: the interval that tripped it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trigger {
    pub target: Duration,
    pub interval: Duration,
    /// The shortest wait of a request served in that interval (`None`: none was).
    pub min_wait: Option<Duration>,
}

impl Queue {
    pub fn new(policy: QueuePolicy) -> Queue {
        Queue {
            waiters: BTreeMap::new(),
            next_seq: 0,
            codel: Codel::new(),
            lanes: Lanes::of(&policy),
            policy,
            drain: DrainRate::default(),
            sheds: [0; 4],
        }
    }

    /// Apply a changed policy; with other classes or sub-queues, the waiters are filed
    /// again in arrival order.
    pub fn set_policy(&mut self, policy: QueuePolicy) {
        let relane =
            policy.priorities != self.policy.priorities || policy.fairness != self.policy.fairness;
        self.policy = policy;
        if relane {
            self.lanes = Lanes::of(&self.policy);
            for (seq, w) in self.waiters.iter_mut() {
                w.place = self.lanes.as_mut().map(|l| l.insert(w.tag.as_ref(), *seq));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// When the oldest waiter arrived.
    pub fn oldest(&self) -> Option<Instant> {
        self.waiters.first_key_value().map(|(_, w)| w.enqueued)
    }

    /// Whether the adaptive discipline is shedding now, and since when.
    pub fn shedding(&self) -> Option<Instant> {
        self.codel.overloaded.then_some(self.codel.since).flatten()
    }

    /// What switched the current overload on (`None` while not shedding).
    pub fn trigger(&self) -> Option<Trigger> {
        self.codel
            .overloaded
            .then_some(self.codel.trigger)
            .flatten()
    }

    /// Waiters shed so far, by cause.
    pub fn sheds(&self) -> [(ShedCause, u64); 4] {
        ShedCause::ALL.map(|c| (c, self.sheds[c as usize]))
    }

    /// Waiters per priority class, highest first (empty without `priorities`).
    pub fn class_lengths(&self) -> Vec<usize> {
        match &self.lanes {
            Some(l) if !self.policy.priorities.is_empty() => l.lengths(),
            _ => Vec::new(),
        }
    }

    /// The waiters a request of `tag`'s class would wait behind: with `priorities`, those
    /// of its class and the classes above it (a lower class is served after it);
    /// otherwise all of them.
    pub fn backlog_ahead(&self, tag: Option<&QueueTag>) -> usize {
        match &self.lanes {
            Some(l) if !self.policy.priorities.is_empty() => {
                let class = l.class_of(tag) as usize;
                l.lengths().iter().take(class + 1).sum()
            }
            _ => self.len(),
        }
    }

    /// Sub-queues with waiters (0 without `fairness`).
    pub fn flows(&self) -> usize {
        self.lanes.as_ref().map_or(0, Lanes::flows)
    }

    /// Make room for an arrival that has to wait, or refuse it. While overloaded, the
    /// waiters beyond what drains within the target are shed to make room; when the
    /// queue is full, a lower-class waiter (or one of a sub-queue over its share) gives
    /// the arrival its place.
    pub fn admit(
        &mut self,
        now: Instant,
        limit: usize,
        tag: Option<&QueueTag>,
    ) -> Result<(), Reason> {
        self.tick(now);
        if self.codel.overloaded {
            let cap = self.overload_cap().min(limit).max(1);
            while self.waiters.len() >= cap {
                if !self.evict_for(tag, true) {
                    self.sheds[ShedCause::Overload as usize] += 1;
                    return Err(Reason::Shed);
                }
            }
        }
        while self.waiters.len() >= limit {
            if !self.evict_for(tag, false) {
                return Err(Reason::QueueFull);
            }
        }
        Ok(())
    }

    /// Shed the waiter the queue would serve last if the arrival `tag` may take its
    /// place: always while `overloaded` (unless the waiter ranks above the arrival),
    /// otherwise only for a lower class or a fatter sub-queue. False: the arrival is
    /// the one refused.
    fn evict_for(&mut self, tag: Option<&QueueTag>, overloaded: bool) -> bool {
        let lifo = self.codel.overloaded;
        let Some(lanes) = &self.lanes else {
            // No lanes: the plain queue sheds its oldest, only to the overload cap.
            if !overloaded {
                return false;
            }
            return self.shed_first(ShedCause::Overload);
        };
        let Some(v) = lanes.victim(lifo) else {
            return false;
        };
        let class = lanes.class_of(tag);
        let cause = match v.class.cmp(&class) {
            std::cmp::Ordering::Greater => ShedCause::Priority,
            std::cmp::Ordering::Less => return false,
            std::cmp::Ordering::Equal if overloaded => ShedCause::Overload,
            std::cmp::Ordering::Equal if over_share(&v, lanes.share_of(tag)) => ShedCause::Fairness,
            std::cmp::Ordering::Equal => return false,
        };
        self.shed(v.seq, cause)
    }

    /// Shed the oldest waiter.
    fn shed_first(&mut self, cause: ShedCause) -> bool {
        match self.waiters.first_key_value() {
            Some((&seq, _)) => self.shed(seq, cause),
            None => false,
        }
    }

    fn shed(&mut self, seq: u64, cause: ShedCause) -> bool {
        let Some(w) = self.remove_waiter(seq) else {
            return false;
        };
        self.sheds[cause as usize] += 1;
        let _ = w.tx.send(Err(Reason::Shed));
        true
    }

    /// How many waiters drain within the target at the measured rate (at least one).
    fn overload_cap(&self) -> usize {
        let rate = self.drain.per_sec();
        ((rate * self.policy.target_delay.as_secs_f64()).ceil() as usize).max(1)
    }

    pub fn push(
        &mut self,
        key: PickKey,
        tag: Option<QueueTag>,
        now: Instant,
    ) -> (u64, oneshot::Receiver<Grant>) {
        let (tx, rx) = oneshot::channel();
        let seq = self.next_seq;
        self.next_seq += 1;
        let place = self.lanes.as_mut().map(|l| l.insert(tag.as_ref(), seq));
        self.waiters.insert(
            seq,
            Waiter {
                tx,
                key,
                enqueued: now,
                tag,
                place,
            },
        );
        (seq, rx)
    }

    /// Take `seq` out of the map and its lane (not served).
    fn remove_waiter(&mut self, seq: u64) -> Option<Waiter> {
        let w = self.waiters.remove(&seq)?;
        if let (Some(l), Some(p)) = (self.lanes.as_mut(), &w.place) {
            l.remove(p, seq);
        }
        if self.waiters.is_empty() {
            self.codel.emptied = true;
        }
        Some(w)
    }

    /// Remove a waiter that leaves on its own (timeout, client gone).
    pub fn remove(&mut self, seq: u64) -> bool {
        let removed = self.remove_waiter(seq).is_some();
        if self.waiters.is_empty() {
            self.codel.emptied = true;
        }
        removed
    }

    /// Drop every waiter (their receivers see the pool's new state).
    pub fn clear(&mut self) {
        self.waiters.clear();
        self.lanes = Lanes::of(&self.policy);
        self.codel.emptied = true;
    }

    /// Evaluate the discipline at a queue event: end the interval if it is over, and
    /// while overloaded shed the waiters that waited too long to be worth serving.
    pub fn tick(&mut self, now: Instant) {
        if self.policy.discipline != QueueDiscipline::Adaptive {
            return;
        }
        let p = &self.policy;
        self.codel
            .tick(now, p.target_delay, p.interval, self.waiters.len());
        if self.codel.overloaded {
            let slough = 2 * self.policy.target_delay;
            while let Some((&seq, w)) = self.waiters.first_key_value() {
                if now.saturating_duration_since(w.enqueued) <= slough {
                    break;
                }
                self.shed(seq, ShedCause::Stale);
            }
            if self.waiters.is_empty() {
                self.codel.emptied = true;
            }
        }
    }

    /// The waiter to serve next (oldest first; newest first while overloaded; the
    /// highest class and the round robin's turn first with lanes).
    pub fn next(&self) -> Option<(u64, &PickKey)> {
        let lifo = self.codel.overloaded;
        let seq = match &self.lanes {
            Some(l) => l.next(lifo)?,
            None if lifo => *self.waiters.last_key_value()?.0,
            None => *self.waiters.first_key_value()?.0,
        };
        self.waiters.get(&seq).map(|w| (seq, &w.key))
    }

    /// Take the waiter `seq` (from [`Queue::next`]) to hand it a slot.
    pub fn take(&mut self, seq: u64, now: Instant) -> Option<Waiter> {
        let w = self.waiters.remove(&seq)?;
        if let (Some(l), Some(p)) = (self.lanes.as_mut(), &w.place) {
            l.took(p, seq);
        }
        self.codel.sample(now.saturating_duration_since(w.enqueued));
        if self.waiters.is_empty() {
            self.codel.emptied = true;
        }
        Some(w)
    }
}

/// Whether the victim's sub-queue holds more than its share next to the arrival's:
/// evicting it must leave the victim's sub-queue at least as full, per weight, as the
/// arrival's with the arrival in it.
fn over_share(v: &Victim, arrival: Option<(usize, u32)>) -> bool {
    match (v.share, arrival) {
        (Some((nv, wv)), Some((na, wa))) => {
            (nv as u64 - 1) * wa as u64 >= (na as u64 + 1) * wv as u64
        }
        _ => false,
    }
}

/// CoDel's state over request waits.
struct Codel {
    /// When the current interval ends (set at the first event).
    interval_end: Option<Instant>,
    /// The smallest wait of a request dispatched from the queue in this interval.
    min_wait: Option<Duration>,
    /// The queue was empty at some moment of this interval.
    emptied: bool,
    overloaded: bool,
    since: Option<Instant>,
    /// The numbers of the interval that switched the overload on.
    trigger: Option<Trigger>,
}

impl Codel {
    fn new() -> Codel {
        Codel {
            interval_end: None,
            min_wait: None,
            // The first interval starts with an empty queue: it never switches on.
            emptied: true,
            overloaded: false,
            since: None,
            trigger: None,
        }
    }

    fn sample(&mut self, wait: Duration) {
        self.min_wait = Some(self.min_wait.map_or(wait, |m| m.min(wait)));
    }

    /// At an interval's end: switch on when the queue stood all interval and even its
    /// shortest wait was above target; switch off once an interval saw it empty.
    fn tick(&mut self, now: Instant, target: Duration, interval: Duration, queued: usize) {
        let end = *self.interval_end.get_or_insert(now + interval);
        if now < end {
            return;
        }
        if self.overloaded {
            if self.emptied {
                self.overloaded = false;
                self.since = None;
                self.trigger = None;
            }
        } else if !self.emptied && self.min_wait.is_none_or(|m| m > target) {
            self.overloaded = true;
            self.since = Some(now);
            self.trigger = Some(Trigger {
                target,
                interval,
                min_wait: self.min_wait,
            });
        }
        self.interval_end = Some(now + interval);
        self.min_wait = None;
        self.emptied = queued == 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(5);
    const I: Duration = Duration::from_millis(100);

    #[test]
    fn codel_switches_on_after_a_standing_interval_and_off_once_empty() {
        let t0 = Instant::now();
        let mut c = Codel::new();
        c.tick(t0, T, I, 0);
        // A queue forms and every dispatched request waited 20 ms.
        c.sample(Duration::from_millis(20));
        c.tick(t0 + I, T, I, 10);
        assert!(!c.overloaded, "the first interval began empty");
        c.sample(Duration::from_millis(20));
        c.tick(t0 + 2 * I, T, I, 10);
        assert!(c.overloaded);
        // Short waits alone do not switch it off (LIFO makes them short) ...
        c.sample(Duration::ZERO);
        c.tick(t0 + 3 * I, T, I, 10);
        assert!(c.overloaded);
        // ... an interval in which the queue emptied does.
        c.emptied = true;
        c.tick(t0 + 4 * I, T, I, 0);
        assert!(!c.overloaded);
    }

    #[test]
    fn a_burst_that_drains_below_target_does_not_switch_on() {
        let t0 = Instant::now();
        let mut c = Codel::new();
        c.tick(t0, T, I, 0);
        c.sample(Duration::from_millis(50));
        c.sample(Duration::from_millis(1));
        c.tick(t0 + I, T, I, 3);
        c.sample(Duration::from_millis(50));
        c.sample(Duration::from_millis(2));
        c.tick(t0 + 2 * I, T, I, 3);
        assert!(!c.overloaded, "min wait 2 ms is under the 5 ms target");
    }
}
