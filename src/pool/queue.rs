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
use super::{Member, PickKey};
use crate::config::model::{QueueDiscipline, QueuePolicy};
use crate::error::Reason;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a waiter is told: a slot on a member, or why it was refused.
pub(super) type Grant = Result<Arc<Member>, Reason>;

pub(super) struct Waiter {
    pub tx: oneshot::Sender<Grant>,
    pub key: PickKey,
    pub enqueued: Instant,
}

pub(super) struct Queue {
    /// By arrival sequence number: the oldest is first, the newest last, and a leaving
    /// waiter is removed in O(log n).
    waiters: BTreeMap<u64, Waiter>,
    next_seq: u64,
    pub policy: QueuePolicy,
    codel: Codel,
    pub drain: DrainRate,
}

impl Queue {
    pub fn new(policy: QueuePolicy) -> Queue {
        Queue {
            waiters: BTreeMap::new(),
            next_seq: 0,
            codel: Codel::new(),
            policy,
            drain: DrainRate::default(),
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

    /// Make room for an arrival that has to wait, or refuse it. While overloaded, the
    /// oldest waiters beyond what drains within the target are shed to make room.
    pub fn admit(&mut self, now: Instant, limit: usize) -> Result<(), Reason> {
        self.tick(now);
        if self.codel.overloaded {
            let cap = self.overload_cap().min(limit);
            while self.waiters.len() >= cap.max(1) {
                let Some((_, w)) = self.waiters.pop_first() else {
                    break;
                };
                let _ = w.tx.send(Err(Reason::Shed));
            }
        }
        if self.waiters.len() >= limit {
            return Err(Reason::QueueFull);
        }
        Ok(())
    }

    /// How many waiters drain within the target at the measured rate (at least one).
    fn overload_cap(&self) -> usize {
        let rate = self.drain.per_sec();
        ((rate * self.policy.target_delay.as_secs_f64()).ceil() as usize).max(1)
    }

    pub fn push(&mut self, key: PickKey, now: Instant) -> (u64, oneshot::Receiver<Grant>) {
        let (tx, rx) = oneshot::channel();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.waiters.insert(
            seq,
            Waiter {
                tx,
                key,
                enqueued: now,
            },
        );
        (seq, rx)
    }

    /// Remove a waiter that leaves on its own (timeout, client gone).
    pub fn remove(&mut self, seq: u64) -> bool {
        let removed = self.waiters.remove(&seq).is_some();
        if self.waiters.is_empty() {
            self.codel.emptied = true;
        }
        removed
    }

    /// Drop every waiter (their receivers see the pool's new state).
    pub fn clear(&mut self) {
        self.waiters.clear();
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
            while let Some(e) = self.waiters.first_entry() {
                if now.saturating_duration_since(e.get().enqueued) <= slough {
                    break;
                }
                let _ = e.remove().tx.send(Err(Reason::Shed));
            }
            if self.waiters.is_empty() {
                self.codel.emptied = true;
            }
        }
    }

    /// The waiter to serve next (oldest first; newest first while overloaded).
    pub fn next(&self) -> Option<(u64, &PickKey)> {
        let e = if self.codel.overloaded {
            self.waiters.last_key_value()
        } else {
            self.waiters.first_key_value()
        };
        e.map(|(seq, w)| (*seq, &w.key))
    }

    /// Take the waiter `seq` (from [`Queue::next`]) to hand it a slot.
    pub fn take(&mut self, seq: u64, now: Instant) -> Option<Waiter> {
        let w = self.waiters.remove(&seq)?;
        self.codel.sample(now.saturating_duration_since(w.enqueued));
        if self.waiters.is_empty() {
            self.codel.emptied = true;
        }
        Some(w)
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
            }
        } else if !self.emptied && self.min_wait.is_none_or(|m| m > target) {
            self.overloaded = true;
            self.since = Some(now);
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
