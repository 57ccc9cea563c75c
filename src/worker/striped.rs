//! A counter every I/O thread bumps on every request, without sharing a cache line.
//!
//! One `AtomicU64` written by two threads moves its cache line between their cores on
//! every add (the gate's `completed` count and its count of requests admitted at once).
//! Here each thread adds to its own stripe (one 128-byte line each, which also keeps the
//! adjacent-line prefetcher from pairing two stripes); a read sums the stripes. Reads are
//! rare (`/.roost/counters`, metrics), so they pay.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Stripes per counter. Threads take stripes round-robin as they first add, so the I/O
/// threads (the hot writers) get distinct ones unless there are more of them than this.
pub(super) const STRIPES: usize = 16;

#[derive(Default)]
#[repr(align(128))]
struct Line(AtomicU64);

/// A monotonically increasing counter split over [`STRIPES`] cache lines.
#[derive(Default)]
pub struct Striped {
    lines: Box<[Line; STRIPES]>,
}

impl Striped {
    pub fn add(&self, n: u64) {
        self.lines[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The total. Adds racing with the read may or may not be in it, as with one atomic.
    pub fn sum(&self) -> u64 {
        self.lines.iter().map(|l| l.0.load(Ordering::Relaxed)).sum()
    }
}

/// The calling thread's stripe, in `0..STRIPES`.
pub(super) fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn adds_from_many_threads_sum_exactly() {
        let c = Arc::new(Striped::default());
        let threads: Vec<_> = (0..STRIPES + 3)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| c.add(1)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        c.add(5);
        assert_eq!(c.sum(), (STRIPES as u64 + 3) * 10_000 + 5);
    }
}
