//! The pool's measured drain rate (requests finished per second) and the `Retry-After`
//! it implies: how long the backlog ahead of a refused client takes to clear, instead
//! of a constant (reference/overload.md §1.8).

use std::time::{Duration, Instant};

/// Samples shorter than this are merged into the next one (too few completions to
/// tell a rate).
const MIN_WINDOW: Duration = Duration::from_millis(100);
/// The EWMA's time constant: a sample of this length replaces the estimate.
const HORIZON: Duration = Duration::from_secs(1);

/// EWMA of completions per second, fed from the pool's `completed` counter at queue
/// events (under the pool lock, never on the fast path).
#[derive(Debug, Default)]
pub struct DrainRate {
    last: Option<(Instant, u64)>,
    per_sec: f64,
}

impl DrainRate {
    pub fn observe(&mut self, now: Instant, completed: u64) {
        let Some((at, count)) = self.last else {
            self.last = Some((now, completed));
            return;
        };
        let dt = now.saturating_duration_since(at);
        if dt < MIN_WINDOW {
            return;
        }
        let rate = completed.saturating_sub(count) as f64 / dt.as_secs_f64();
        let alpha = (dt.as_secs_f64() / HORIZON.as_secs_f64()).min(1.0);
        self.per_sec = if self.per_sec == 0.0 {
            rate
        } else {
            alpha * rate + (1.0 - alpha) * self.per_sec
        };
        self.last = Some((now, completed));
    }

    pub fn per_sec(&self) -> f64 {
        self.per_sec
    }

    /// The time for `backlog` requests to drain, less what drains within `target`
    /// (those would be served), clamped to 1..32 s; `None` before a rate is known.
    pub fn retry_after(&self, backlog: usize, target: Duration) -> Option<Duration> {
        if self.per_sec <= 0.0 {
            return None;
        }
        let ahead = backlog as f64 - self.per_sec * target.as_secs_f64();
        let secs = (ahead / self.per_sec).clamp(1.0, 32.0);
        Some(Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_follows_completions_and_sets_retry_after() {
        let t0 = Instant::now();
        let mut d = DrainRate::default();
        assert_eq!(d.retry_after(100, Duration::ZERO), None);
        d.observe(t0, 0);
        d.observe(t0 + Duration::from_millis(50), 10); // too short: merged
        d.observe(t0 + Duration::from_secs(1), 200);
        assert!((d.per_sec() - 200.0).abs() < 1e-6, "{}", d.per_sec());
        // 1,000 ahead at 200/s: 5 s.
        let ra = d.retry_after(1000, Duration::ZERO).unwrap();
        assert_eq!(ra.as_secs(), 5);
        // A short queue still says at least a second; a huge one at most 32.
        assert_eq!(d.retry_after(1, Duration::ZERO).unwrap().as_secs(), 1);
        assert_eq!(
            d.retry_after(1 << 20, Duration::ZERO).unwrap().as_secs(),
            32
        );
    }
}
