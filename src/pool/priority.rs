//! The queue's lanes when a pool has `priorities` or `fairness` (issue 17 items 2 and
//! 3): one lane per priority class, highest first; each lane is a plain arrival-order
//! queue, or, with `fairness`, sub-queues served by deficit round robin (`fair.rs`).
//!
//! - Dispatch takes from the highest class that has waiters: a higher class passes
//!   every lower one.
//! - When a request must make room (the queue is full, or the adaptive discipline sheds),
//!   the victim is the waiter the queue would serve last: from the lowest class with
//!   waiters, the fattest sub-queue (most waiters per weight), its newest (its oldest
//!   while serving newest first). [`super::queue`] decides whether the arrival may evict
//!   it or is refused itself.
//!
//! A pool without either key has no lanes: its queue is the plain map in `queue.rs`,
//! unchanged.

use super::fair::Drr;
use super::priority_tag::QueueTag;
use crate::config::model::QueuePolicy;
use std::collections::BTreeSet;
use std::sync::Arc;

enum Lane {
    Plain(BTreeSet<u64>),
    Fair(Drr),
}

/// Where a waiter was filed: its class and, with fairness, its sub-queue.
#[derive(Debug, Clone)]
pub(super) struct Place {
    pub class: u8,
    pub flow: Option<Arc<str>>,
}

/// The waiter [`Lanes::victim`] picks and how it stands.
pub(super) struct Victim {
    pub seq: u64,
    pub class: u8,
    /// With fairness: its sub-queue's waiters and weight.
    pub share: Option<(usize, u32)>,
}

pub(super) struct Lanes {
    lanes: Vec<Lane>,
    /// The class of untagged requests.
    default_class: u8,
    default_flow: Arc<str>,
    default_weight: u32,
}

impl Lanes {
    /// The lanes `policy` asks for; `None` for a pool with neither `priorities` nor
    /// `fairness`.
    pub fn of(policy: &QueuePolicy) -> Option<Lanes> {
        if policy.priorities.is_empty() && policy.fairness.is_none() {
            return None;
        }
        let classes = policy.priorities.len().max(1);
        let lane = || match &policy.fairness {
            Some(f) => Lane::Fair(Drr::new(f.max_keys)),
            None => Lane::Plain(BTreeSet::new()),
        };
        Some(Lanes {
            lanes: (0..classes).map(|_| lane()).collect(),
            default_class: policy
                .priorities
                .iter()
                .position(|c| c.is_default())
                .unwrap_or(0) as u8,
            default_flow: Arc::from(""),
            default_weight: policy.fairness.as_ref().map_or(1, |f| f.weight_of("")),
        })
    }

    /// The class a tag (or an untagged request) is filed under.
    pub fn class_of(&self, tag: Option<&QueueTag>) -> u8 {
        match tag {
            Some(t) if (t.class as usize) < self.lanes.len() => t.class,
            _ => self.default_class,
        }
    }

    fn flow_of<'t>(&'t self, tag: Option<&'t QueueTag>) -> (&'t Arc<str>, u32) {
        match tag.and_then(|t| t.flow.as_ref().map(|f| (f, t.weight))) {
            Some(fw) => fw,
            None => (&self.default_flow, self.default_weight),
        }
    }

    pub fn insert(&mut self, tag: Option<&QueueTag>, seq: u64) -> Place {
        let class = self.class_of(tag);
        let (key, weight) = self.flow_of(tag);
        let key = key.clone();
        let flow = match &mut self.lanes[class as usize] {
            Lane::Plain(s) => {
                s.insert(seq);
                None
            }
            Lane::Fair(d) => Some(d.insert(&key, weight, seq)),
        };
        Place { class, flow }
    }

    /// `seq` was dispatched (it was [`Lanes::next`]).
    pub fn took(&mut self, place: &Place, seq: u64) {
        match (&mut self.lanes[place.class as usize], &place.flow) {
            (Lane::Plain(s), _) => {
                s.remove(&seq);
            }
            (Lane::Fair(d), Some(k)) => d.took(k, seq),
            (Lane::Fair(_), None) => {}
        }
    }

    /// `seq` left unserved.
    pub fn remove(&mut self, place: &Place, seq: u64) {
        match (&mut self.lanes[place.class as usize], &place.flow) {
            (Lane::Plain(s), _) => {
                s.remove(&seq);
            }
            (Lane::Fair(d), Some(k)) => d.remove(k, seq),
            (Lane::Fair(_), None) => {}
        }
    }

    /// The waiter to serve next: from the highest class with waiters, its oldest (its
    /// newest when `lifo`), or the next turn of its round robin.
    pub fn next(&self, lifo: bool) -> Option<u64> {
        self.lanes.iter().find_map(|lane| match lane {
            Lane::Plain(s) if lifo => s.last().copied(),
            Lane::Plain(s) => s.first().copied(),
            Lane::Fair(d) => d.next(lifo),
        })
    }

    /// The waiter the queue would serve last (see the module docs).
    pub fn victim(&self, lifo: bool) -> Option<Victim> {
        self.lanes
            .iter()
            .enumerate()
            .rev()
            .find_map(|(class, lane)| {
                let (seq, share) = match lane {
                    Lane::Plain(s) if lifo => (*s.first()?, None),
                    Lane::Plain(s) => (*s.last()?, None),
                    Lane::Fair(d) => {
                        let (seq, n, w) = d.fattest(lifo)?;
                        (seq, Some((n, w)))
                    }
                };
                Some(Victim {
                    seq,
                    class: class as u8,
                    share,
                })
            })
    }

    /// With fairness: the waiters and weight of the sub-queue `tag` would join.
    pub fn share_of(&self, tag: Option<&QueueTag>) -> Option<(usize, u32)> {
        let class = self.class_of(tag);
        let (key, weight) = self.flow_of(tag);
        match &self.lanes[class as usize] {
            Lane::Fair(d) => Some((d.len_of(key), weight)),
            Lane::Plain(_) => None,
        }
    }

    /// Waiters per class, highest first.
    pub fn lengths(&self) -> Vec<usize> {
        self.lanes
            .iter()
            .map(|l| match l {
                Lane::Plain(s) => s.len(),
                Lane::Fair(d) => d.len(),
            })
            .collect()
    }

    /// Sub-queues with waiters, over every class.
    pub fn flows(&self) -> usize {
        self.lanes
            .iter()
            .map(|l| match l {
                Lane::Plain(_) => 0,
                Lane::Fair(d) => d.flows(),
            })
            .sum()
    }
}
