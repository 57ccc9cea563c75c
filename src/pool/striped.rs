//! Counters every front thread writes on each request, kept once per thread.
//!
//! A pool's arrival, completion and active counts, its histograms and its idle clock were
//! plain atomics shared by every front thread: each request wrote about ten cache lines
//! the other thread had just written too, and each of those writes waited for the line
//! to come over from the other core. Here every front thread writes its own copy, on
//! cache lines of its own, and a reader (the metrics scrape, the admin API, the
//! supervisor) adds the copies up. A thread's copy is allocated the first time it writes,
//! so a pool nobody sends requests to costs a few pointers, not a copy per thread.
//!
//! Which copy a thread writes is its front-thread index ([`crate::runtime::shard_in`]);
//! every other thread (admin, supervisor, tests on their own runtime) shares the last.
//! The histogram kept this way (`StripedHistogram`) lives beside `Histogram` in
//! `counters.rs`, so this file needs nothing of the pool's.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;

/// One `T` per front thread (plus one for every other thread), each on cache lines of
/// its own, allocated on first use.
pub struct PerThread<T> {
    cells: Box<[OnceLock<Box<Padded<T>>>]>,
}

/// Two cache lines: the adjacent-line prefetcher pulls lines in pairs.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

impl<T: Default> Default for PerThread<T> {
    fn default() -> Self {
        PerThread {
            cells: (0..crate::runtime::shards())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }
}

impl<T: Default> PerThread<T> {
    /// The calling thread's copy.
    pub fn mine(&self) -> &T {
        let i = crate::runtime::shard_in(self.cells.len());
        &self.cells[i].get_or_init(Box::default).0
    }

    /// Every copy written so far.
    pub fn each(&self) -> impl Iterator<Item = &T> {
        self.cells.iter().filter_map(|c| c.get()).map(|p| &p.0)
    }
}

/// A count only ever added to, summed over the threads. `fetch_add` and `load` take an
/// ordering, as the `AtomicU64` it replaces did; readers get the sum.
#[derive(Default)]
pub struct Counter(PerThread<AtomicU64>);

impl Counter {
    pub fn fetch_add(&self, n: u64, order: Ordering) {
        self.0.mine().fetch_add(n, order);
    }

    pub fn load(&self, order: Ordering) -> u64 {
        self.0.each().map(|c| c.load(order)).sum()
    }
}

/// A level that goes up and down (requests holding a slot): each thread keeps its own
/// difference, and the level is their sum (a slot taken on one thread and given back on
/// another leaves +1 and -1 that add up to nothing).
#[derive(Default)]
pub struct Gauge(PerThread<AtomicI64>);

impl Gauge {
    pub fn fetch_add(&self, n: i64, order: Ordering) {
        self.0.mine().fetch_add(n, order);
    }

    pub fn fetch_sub(&self, n: i64, order: Ordering) {
        self.0.mine().fetch_sub(n, order);
    }

    /// The level; never below zero (the threads' copies are read one after another).
    pub fn load(&self, order: Ordering) -> i64 {
        self.0.each().map(|c| c.load(order)).sum::<i64>().max(0)
    }
}

/// The latest of a time kept per thread (milliseconds since some epoch): each thread
/// stores its own, a reader takes the largest.
#[derive(Default)]
pub struct Latest(PerThread<AtomicU64>);

impl Latest {
    pub fn store(&self, ms: u64) {
        self.0.mine().store(ms, Ordering::Relaxed);
    }

    pub fn load(&self) -> u64 {
        self.0
            .each()
            .map(|c| c.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::counters::StripedHistogram;
    use super::*;
    use std::time::Duration;

    #[test]
    fn copies_written_on_several_threads_add_up() {
        // Threads first: the copies are sized for the front threads that exist.
        let threads = crate::runtime::Threads::spawn(2).unwrap();
        let c = std::sync::Arc::new(Counter::default());
        let g = std::sync::Arc::new(Gauge::default());
        let h = std::sync::Arc::new(StripedHistogram::default());
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..2 {
            let (c, g, h, tx) = (c.clone(), g.clone(), h.clone(), tx.clone());
            threads.spawn_on(i, async move {
                for _ in 0..1000 {
                    c.fetch_add(1, Ordering::Relaxed);
                    g.fetch_add(1, Ordering::Relaxed);
                    h.observe(Duration::from_millis(3));
                }
                // Half given back here: the level is what is still held.
                for _ in 0..500 {
                    g.fetch_sub(1, Ordering::Relaxed);
                }
                tx.send(()).unwrap();
            });
        }
        for _ in 0..2 {
            rx.recv().unwrap();
        }
        // And from a thread that is no front thread.
        c.fetch_add(5, Ordering::Relaxed);
        g.fetch_sub(1000, Ordering::Relaxed);
        assert_eq!(c.load(Ordering::Relaxed), 2005);
        assert_eq!(g.load(Ordering::Relaxed), 0);
        let s = h.snapshot();
        assert_eq!(s.count, 2000);
        assert!((s.sum_seconds - 6.0).abs() < 1e-6, "{}", s.sum_seconds);
        // Each front thread wrote a copy of its own, the caller the shared last one.
        assert_eq!(c.0.each().count(), 3);
    }

    #[test]
    fn a_counter_nobody_wrote_reads_zero_and_allocates_nothing() {
        let c = Counter::default();
        assert_eq!(c.load(Ordering::Relaxed), 0);
        assert_eq!(c.0.each().count(), 0);
        let l = Latest::default();
        assert_eq!(l.load(), 0);
        l.store(7);
        assert_eq!(l.load(), 7);
    }
}
