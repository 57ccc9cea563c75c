//! Fairness inside one priority class (issue 17 item 2): one sub-queue per key
//! (application, header value or client address), served by deficit round robin with
//! weights (Shreedhar and Varghese, 1995) at a cost of one per request.
//!
//! The flows with waiters form a ring. The flow at its front is served until it has used
//! its credit (its weight), then goes to the back with a new credit of its weight; a flow
//! that empties leaves the ring and the map (its state is gone, so the number of flows
//! kept is the number with waiters, at most `maxKeys`, plus one overflow flow that every
//! further key shares). Inside a flow, strict arrival order (newest first while the
//! adaptive discipline is overloaded).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// The flow keys beyond `maxKeys` share this one.
pub(super) const OVERFLOW: &str = "(other)";

struct Flow {
    /// Waiters' sequence numbers: the oldest first.
    seqs: BTreeSet<u64>,
    weight: u32,
    /// Requests this flow may still send in its current turn (≥ 1 while it is in the ring).
    credit: u32,
}

pub(super) struct Drr {
    flows: HashMap<Arc<str>, Flow>,
    /// Flows with waiters, in service order: the front one is being served.
    ring: VecDeque<Arc<str>>,
    max_keys: usize,
    overflow: Arc<str>,
    /// Waiters over every flow.
    len: usize,
}

impl Drr {
    pub fn new(max_keys: usize) -> Drr {
        Drr {
            flows: HashMap::new(),
            ring: VecDeque::new(),
            max_keys: max_keys.max(1),
            overflow: Arc::from(OVERFLOW),
            len: 0,
        }
    }

    /// Queue `seq` in `key`'s flow (or the overflow flow when `maxKeys` flows are in
    /// use); returns the key it was queued under.
    pub fn insert(&mut self, key: &Arc<str>, weight: u32, seq: u64) -> Arc<str> {
        let key = if self.flows.contains_key(key) || self.flows.len() < self.max_keys {
            key.clone()
        } else {
            self.overflow.clone()
        };
        let flow = self.flows.entry(key.clone()).or_insert_with(|| Flow {
            seqs: BTreeSet::new(),
            weight: weight.max(1),
            credit: 0,
        });
        if flow.seqs.is_empty() {
            flow.credit = flow.weight;
            self.ring.push_back(key.clone());
        }
        if flow.seqs.insert(seq) {
            self.len += 1;
        }
        key
    }

    /// The next waiter to serve: the head (or, `lifo`, the tail) of the front flow.
    pub fn next(&self, lifo: bool) -> Option<u64> {
        let flow = self.flows.get(self.ring.front()?)?;
        if lifo {
            flow.seqs.last().copied()
        } else {
            flow.seqs.first().copied()
        }
    }

    /// `seq` of flow `key` was dispatched: it spends one credit of its flow's turn.
    pub fn took(&mut self, key: &Arc<str>, seq: u64) {
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        if flow.seqs.remove(&seq) {
            self.len -= 1;
        }
        flow.credit = flow.credit.saturating_sub(1);
        if flow.seqs.is_empty() {
            self.forget(key);
        } else if flow.credit == 0 && self.ring.front() == Some(key) {
            flow.credit = flow.weight;
            self.ring.rotate_left(1);
        }
    }

    /// `seq` left without being served (timeout, client gone, shed).
    pub fn remove(&mut self, key: &Arc<str>, seq: u64) {
        if let Some(flow) = self.flows.get_mut(key) {
            if flow.seqs.remove(&seq) {
                self.len -= 1;
            }
            if flow.seqs.is_empty() {
                self.forget(key);
            }
        }
    }

    fn forget(&mut self, key: &Arc<str>) {
        self.flows.remove(key);
        if let Some(i) = self.ring.iter().position(|k| k == key) {
            self.ring.remove(i);
        }
    }

    /// Waiters of `key`'s flow (as [`Drr::insert`] would file it).
    pub fn len_of(&self, key: &Arc<str>) -> usize {
        match self.flows.get(key) {
            Some(f) => f.seqs.len(),
            None if self.flows.len() >= self.max_keys => {
                self.flows.get(&self.overflow).map_or(0, |f| f.seqs.len())
            }
            None => 0,
        }
    }

    /// The flow holding most waiters for its weight, and the waiter it would serve
    /// last: `(seq, waiters, weight)`.
    pub fn fattest(&self, lifo: bool) -> Option<(u64, usize, u32)> {
        let flow = self.flows.values().max_by(|a, b| {
            (a.seqs.len() as u64 * b.weight as u64).cmp(&(b.seqs.len() as u64 * a.weight as u64))
        })?;
        let seq = if lifo {
            flow.seqs.first()
        } else {
            flow.seqs.last()
        };
        Some((*seq?, flow.seqs.len(), flow.weight))
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn flows(&self) -> usize {
        self.flows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(d: &mut Drr, keys: &HashMap<u64, Arc<str>>, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            let Some(seq) = d.next(false) else { break };
            let k = keys[&seq].clone();
            d.took(&k, seq);
            out.push(k.to_string());
        }
        out
    }

    #[test]
    fn weighted_round_robin_keeps_fifo_inside_a_flow() {
        let mut d = Drr::new(16);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut keys = HashMap::new();
        // A floods first (seq 0..9), then B arrives (seq 10..13).
        for seq in 0..10 {
            keys.insert(seq, d.insert(&a, 3, seq));
        }
        for seq in 10..14 {
            keys.insert(seq, d.insert(&b, 1, seq));
        }
        let order = serve(&mut d, &keys, 8);
        assert_eq!(order, ["a", "a", "a", "b", "a", "a", "a", "b"]);
        // FIFO inside a: seqs 0,1,2 then 3,4,5 were served in that order.
        assert_eq!(d.next(false), Some(6));
    }

    #[test]
    fn empty_flows_are_forgotten_and_keys_beyond_the_bound_share_one() {
        let mut d = Drr::new(2);
        let k = |s: &str| -> Arc<str> { Arc::from(s) };
        assert_eq!(&*d.insert(&k("a"), 1, 0), "a");
        assert_eq!(&*d.insert(&k("b"), 1, 1), "b");
        assert_eq!(&*d.insert(&k("c"), 1, 2), OVERFLOW);
        assert_eq!(&*d.insert(&k("d"), 1, 3), OVERFLOW);
        assert_eq!(d.flows(), 3);
        d.remove(&k("a"), 0);
        d.remove(&k(OVERFLOW), 2);
        d.remove(&k(OVERFLOW), 3);
        assert_eq!(d.flows(), 1);
        d.took(&k("b"), 1);
        assert!(d.is_empty());
        assert_eq!(d.flows(), 0);
    }

    #[test]
    fn the_fattest_flow_is_judged_by_waiters_per_weight() {
        let mut d = Drr::new(16);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        for seq in 0..6 {
            d.insert(&a, 3, seq); // 6 waiters / weight 3 = 2
        }
        for seq in 6..9 {
            d.insert(&b, 1, seq); // 3 / 1 = 3
        }
        assert_eq!(d.fattest(false), Some((8, 3, 1)), "b's newest");
        assert_eq!(d.fattest(true), Some((6, 3, 1)), "b's oldest while LIFO");
    }
}
