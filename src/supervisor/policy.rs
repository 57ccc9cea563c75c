//! Pure decisions of the supervisor, kept apart so they can be unit-tested without
//! processes or clocks: restart backoff, the rapid-fail window, and scheduled recycle
//! times of day.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// First restart delay after a failure; it doubles per failure up to [`BACKOFF_MAX`].
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A pool that has not failed for this long is healthy again: the next failure
/// restarts after [`BACKOFF_MIN`] instead of the doubled delay.
pub(crate) const BACKOFF_RESET: Duration = Duration::from_secs(30);

/// Restart backoff: a worker that keeps failing is restarted less and less often, so a
/// broken app does not burn a core in a spawn loop (rapid-fail protection may be off).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    current: Duration,
    last_failure: Option<Instant>,
}

impl Backoff {
    /// Record a failure at `now`; returns how long to wait before the next start.
    pub(crate) fn on_failure(&mut self, now: Instant) -> Duration {
        let recent = self
            .last_failure
            .is_some_and(|t| now.saturating_duration_since(t) < BACKOFF_RESET);
        self.current = if recent && !self.current.is_zero() {
            (self.current * 2).min(BACKOFF_MAX)
        } else {
            BACKOFF_MIN
        };
        self.last_failure = Some(now);
        self.current
    }

    pub(crate) fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// IIS rapid-fail protection: `max_crashes` failures within `interval` take the pool
/// offline. Failures older than the interval fall out of the window.
#[derive(Debug, Default)]
pub(crate) struct RapidFail {
    window: VecDeque<Instant>,
}

impl RapidFail {
    /// Record a failure; true when the pool must go offline. The count that trips it is
    /// `max_crashes` itself ("the pool stops when the counter reaches the limit within
    /// the window", as WAS does).
    pub(crate) fn on_failure(
        &mut self,
        now: Instant,
        interval: Duration,
        max_crashes: u32,
    ) -> bool {
        self.window.push_back(now);
        while let Some(&first) = self.window.front() {
            if now.saturating_duration_since(first) > interval {
                self.window.pop_front();
            } else {
                break;
            }
        }
        self.window.len() >= max_crashes.max(1) as usize
    }

    pub(crate) fn len(&self) -> usize {
        self.window.len()
    }

    pub(crate) fn reset(&mut self) {
        self.window.clear();
    }
}

/// Seconds since local midnight (the config's `schedule` times are local, as in IIS).
pub(crate) fn local_seconds_of_day(t: SystemTime) -> u32 {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as libc::time_t;
    // SAFETY: localtime_r writes only into the `tm` we own; it is the thread-safe form.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return (secs.rem_euclid(86_400)) as u32;
    }
    (tm.tm_hour as u32) * 3600 + (tm.tm_min as u32) * 60 + (tm.tm_sec as u32).min(59)
}

/// Did the clock pass the time of day `at` going from `prev` to `now` (seconds since
/// midnight, both)? Handles the wrap at midnight; `prev == now` passes nothing.
pub(crate) fn schedule_crossed(prev: u32, now: u32, at: u32) -> bool {
    if prev == now {
        false
    } else if prev < now {
        prev < at && at <= now
    } else {
        at > prev || at <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_healthy_period() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.on_failure(t0), BACKOFF_MIN);
        assert_eq!(b.on_failure(t0 + Duration::from_secs(1)), BACKOFF_MIN * 2);
        assert_eq!(b.on_failure(t0 + Duration::from_secs(2)), BACKOFF_MIN * 4);
        let mut t = t0 + Duration::from_secs(3);
        for _ in 0..20 {
            t += Duration::from_secs(1);
            b.on_failure(t);
        }
        assert_eq!(b.on_failure(t + Duration::from_secs(1)), BACKOFF_MAX);
        // Quiet for longer than the reset period: back to the minimum.
        assert_eq!(
            b.on_failure(t + BACKOFF_RESET + Duration::from_secs(2)),
            BACKOFF_MIN
        );
        b.reset();
        assert_eq!(b.on_failure(t), BACKOFF_MIN);
    }

    #[test]
    fn rapid_fail_trips_at_max_within_the_interval_only() {
        let mut r = RapidFail::default();
        let t0 = Instant::now();
        let iv = Duration::from_secs(60);
        assert!(!r.on_failure(t0, iv, 3));
        assert!(!r.on_failure(t0 + Duration::from_secs(10), iv, 3));
        // The first failure has left the window by now.
        assert!(!r.on_failure(t0 + Duration::from_secs(61), iv, 3));
        assert_eq!(r.len(), 2);
        assert!(r.on_failure(t0 + Duration::from_secs(62), iv, 3));
        r.reset();
        assert_eq!(r.len(), 0);
        assert!(r.on_failure(t0, iv, 1));
    }

    #[test]
    fn schedule_crossing_including_midnight() {
        let h = |h: u32, m: u32| h * 3600 + m * 60;
        assert!(schedule_crossed(h(2, 59), h(3, 0), h(3, 0)));
        assert!(!schedule_crossed(h(3, 0), h(3, 1), h(3, 0)));
        assert!(!schedule_crossed(h(3, 0), h(3, 0), h(3, 0)));
        assert!(!schedule_crossed(h(1, 0), h(2, 0), h(3, 0)));
        // Wrap: 23:59:59 → 00:00:01 passes midnight and 00:00:01, not 12:00.
        assert!(schedule_crossed(86_399, 1, 0));
        assert!(schedule_crossed(86_399, 1, 1));
        assert!(!schedule_crossed(86_399, 1, h(12, 0)));
        assert!(schedule_crossed(h(23, 0), 1, h(23, 30)));
    }

    #[test]
    fn local_time_of_day_is_in_range() {
        let s = local_seconds_of_day(SystemTime::now());
        assert!(s < 86_400);
        // Two instants one minute apart differ by a minute (mod a day) whatever the zone.
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = local_seconds_of_day(t);
        let b = local_seconds_of_day(t + Duration::from_secs(60));
        assert_eq!((a + 60) % 86_400, b);
    }
}
