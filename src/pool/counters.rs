//! Per-pool counters (the IIS "HTTP Service Request Queues" and "W3SVC_W3WP" counters):
//! plain atomics, updated on the request path without locks, read by the metrics
//! exporter, the admin API and `roost ctl`.

use super::striped::{Counter, Gauge, PerThread};
use crate::error::Reason;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets; the last bucket is +Inf.
pub const BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// A lock-free histogram with fixed buckets (Prometheus-compatible, cumulative on export).
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
    /// Sum per bucket, so a quantile can be placed around where a bucket's samples really
    /// are (a 50 ms workload is not "p50 75 ms" because its bucket is 50..100 ms).
    bucket_sum_us: [AtomicU64; BUCKETS.len() + 1],
}

#[derive(Debug, Clone, Serialize)]
pub struct HistogramSnapshot {
    /// Per-bucket (not cumulative) counts; the last one is +Inf.
    pub counts: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
    /// Per-bucket sums of the samples, in seconds (same indexes as `counts`).
    pub bucket_sums: Vec<f64>,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let us = d.as_micros() as u64;
        // Most queue waits are zero: adding nothing would still write two shared lines.
        if us > 0 {
            self.sum_us.fetch_add(us, Ordering::Relaxed);
            self.bucket_sum_us[i].fetch_add(us, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            count: counts.iter().sum(),
            counts,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            bucket_sums: self
                .bucket_sum_us
                .iter()
                .map(|c| c.load(Ordering::Relaxed) as f64 / 1e6)
                .collect(),
        }
    }
}

impl HistogramSnapshot {
    /// The bucket upper bound under which `q` (0..1) of the samples fall: a coarse
    /// quantile for `roost ctl status` (exact enough to tell 1 ms from 1 s).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let target = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        None
    }

    /// The `q` quantile, interpolated inside its bucket (as Prometheus's
    /// `histogram_quantile` does) but around where that bucket's samples really are: the
    /// bucket's samples are taken as spread evenly over the widest range inside the bucket
    /// centred on their mean. A 50 ms workload then reads p50 ≈ p99 ≈ 50 ms, not 75 / 100
    /// ms (its bucket is 50..100 ms). `None` without samples; the +Inf bucket reports the
    /// last finite bound.
    pub fn interpolated_quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut seen = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            let c = c as f64;
            if c > 0.0 && seen + c >= rank {
                let Some(&upper) = BUCKETS.get(i) else {
                    return BUCKETS.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                let (lo, hi) = match self.bucket_sums.get(i) {
                    Some(&sum) if sum > 0.0 => {
                        let mean = (sum / c).clamp(lower, upper);
                        let half = (mean - lower).min(upper - mean);
                        (mean - half, mean + half)
                    }
                    _ => (lower, upper),
                };
                return Some(lo + (hi - lo) * ((rank - seen) / c).clamp(0.0, 1.0));
            }
            seen += c;
        }
        BUCKETS.last().copied()
    }

    /// Add `other`'s samples to these.
    pub fn add(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
        for (a, b) in self.bucket_sums.iter_mut().zip(&other.bucket_sums) {
            *a += b;
        }
    }

    /// Samples that arrived between `earlier` and `self` (for per-interval rates).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        HistogramSnapshot {
            count: counts.iter().sum(),
            counts,
            sum_seconds: (self.sum_seconds - earlier.sum_seconds).max(0.0),
            bucket_sums: self
                .bucket_sums
                .iter()
                .zip(earlier.bucket_sums.iter().chain(std::iter::repeat(&0.0)))
                .map(|(a, b)| (a - b).max(0.0))
                .collect(),
        }
    }
}

/// The counters of one pool. Gauges that depend on the queue (length, oldest age) are
/// kept by the pool itself; see [`super::Pool::snapshot`]. What every request writes is
/// kept per front thread (`striped.rs`): read, it is the sum.
#[derive(Default)]
pub struct PoolCounters {
    pub arrivals: Counter,
    /// Second and later attempts of a request (farm retries on another server): counted
    /// apart, so retries do not inflate the arrival rate.
    pub retries: Counter,
    rejected: [AtomicU64; Reason::ALL.len()],
    /// Requests holding a slot right now.
    pub active: Gauge,
    pub completed: Counter,
    pub queue_wait: StripedHistogram,
    /// Whole request time as the client saw it, by status class 1xx..5xx (index 0..4).
    pub duration_by_class: [StripedHistogram; 5],
    pub(super) queued: AtomicUsize,
    /// The adaptive discipline is shedding (overloaded) as of the last queue event.
    pub(super) shedding: AtomicBool,
}

impl PoolCounters {
    pub fn reject(&self, reason: Reason) {
        self.rejected[reason_index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, reason: Reason) -> u64 {
        self.rejected[reason_index(reason)].load(Ordering::Relaxed)
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Response time over every status class, in one histogram.
    pub fn merged_duration(&self) -> HistogramSnapshot {
        let mut out = Histogram::default().snapshot();
        for h in &self.duration_by_class {
            out.add(&h.snapshot());
        }
        out
    }

    /// p50 and p99 of the response time since start.
    pub fn latency_quantiles(&self) -> (Option<f64>, Option<f64>) {
        let h = self.merged_duration();
        (h.interpolated_quantile(0.5), h.interpolated_quantile(0.99))
    }

    /// Record a finished request's status and duration.
    pub fn observe_response(&self, status: u16, elapsed: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.duration_by_class[class].observe(elapsed);
    }
}

fn reason_index(r: Reason) -> usize {
    Reason::ALL.iter().position(|&x| x == r).unwrap_or(0)
}

/// A [`Histogram`] per thread, read as one.
#[derive(Default)]
pub struct StripedHistogram(PerThread<Histogram>);

impl StripedHistogram {
    pub fn observe(&self, d: std::time::Duration) {
        self.0.mine().observe(d);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut out = Histogram::default().snapshot();
        for h in self.0.each() {
            out.add(&h.snapshot());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let h = Histogram::default();
        assert_eq!(h.snapshot().interpolated_quantile(0.5), None);
        // Ten samples in the (0.25, 0.5] bucket.
        for _ in 0..10 {
            h.observe(Duration::from_millis(300));
        }
        let s = h.snapshot();
        // Around where the samples are (300 ms), not the bucket's middle (375 ms) or top.
        let p50 = s.interpolated_quantile(0.5).unwrap();
        assert!((p50 - 0.3).abs() < 1e-6, "{p50}");
        let p99 = s.interpolated_quantile(0.99).unwrap();
        assert!((0.3..0.36).contains(&p99), "{p99}");
        // A 50 ms workload (just over the 50 ms bound): p50 and p99 read ~50 ms.
        let h50 = Histogram::default();
        for i in 0..100 {
            h50.observe(Duration::from_micros(50_500 + i * 10));
        }
        let s50 = h50.snapshot();
        let (p50, p99) = (
            s50.interpolated_quantile(0.5).unwrap(),
            s50.interpolated_quantile(0.99).unwrap(),
        );
        assert!((0.050..0.052).contains(&p50), "{p50}");
        assert!((0.050..0.053).contains(&p99), "{p99}");
        // One slow outlier past the last bound.
        h.observe(Duration::from_secs(500));
        assert_eq!(h.snapshot().interpolated_quantile(1.0), Some(120.0));
    }

    #[test]
    fn merged_duration_adds_every_class() {
        let c = PoolCounters::default();
        c.observe_response(200, Duration::from_millis(10));
        c.observe_response(503, Duration::from_millis(300));
        let m = c.merged_duration();
        assert_eq!(m.count, 2);
        assert!((m.sum_seconds - 0.31).abs() < 1e-6, "{}", m.sum_seconds);
        assert_eq!(m.counts.iter().sum::<u64>(), 2);
    }
}
