//! One farm server's runtime state beside its pool member: active-check results, passive
//! failures and ejections, and the slow-start ramp. The member's `healthy` flag is always
//! derived here: healthy = last active verdict is good AND not ejected.

use crate::pool::source::LastCheck;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Member weights are the configured weight times this, so slow start can ramp a
/// weight-1 server in small steps. A uniform scale changes no algorithm's choice.
pub(crate) const WEIGHT_SCALE: u32 = 100;

/// Slow start begins at this share of full capacity.
const RAMP_FLOOR: f64 = 0.1;

/// How a server is reached and weighed (from `farm.servers` or from discovery).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spec {
    /// The member label: as written for configured servers, `ip:port` for discovered ones.
    pub address: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Host name for SNI and the health check's `Host` header.
    pub name: String,
    pub slots: usize,
    pub weight: u32,
    pub backup: bool,
    pub discovered: bool,
}

#[derive(Default)]
struct Check {
    /// Active verdict; servers start healthy, as in ARR.
    failed: bool,
    successes: u32,
    failures: u32,
    last: Option<LastCheck>,
}

#[derive(Default)]
struct Ejection {
    until: Option<Instant>,
    /// Ejections so far (the multiplier of the next ejection's length); decays while
    /// the server behaves.
    count: u32,
    returned_at: Option<Instant>,
    total: u64,
}

pub(crate) struct ServerRt {
    pub spec: Mutex<Spec>,
    check: Mutex<Check>,
    /// Consecutive passive failures.
    failures: AtomicU32,
    ejection: Mutex<Ejection>,
    ramp_started: Mutex<Option<Instant>>,
    /// Bumped whenever a ramp starts, so an older ramp task knows to stop.
    pub ramp_gen: AtomicU64,
}

impl ServerRt {
    pub fn new(spec: Spec) -> ServerRt {
        ServerRt {
            spec: Mutex::new(spec),
            check: Mutex::new(Check::default()),
            failures: AtomicU32::new(0),
            ejection: Mutex::new(Ejection::default()),
            ramp_started: Mutex::new(None),
            ramp_gen: AtomicU64::new(0),
        }
    }

    pub fn spec(&self) -> Spec {
        self.spec.lock().clone()
    }

    pub fn healthy(&self) -> bool {
        !self.check_failed() && !self.is_ejected()
    }

    pub fn check_failed(&self) -> bool {
        self.check.lock().failed
    }

    pub fn last_check(&self) -> Option<LastCheck> {
        self.check.lock().last.clone()
    }

    /// Fold one active-check result in; returns `Some(new verdict)` when it flipped.
    pub fn record_check(
        &self,
        ok: bool,
        detail: String,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<bool> {
        let mut c = self.check.lock();
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        c.last = Some(LastCheck { at, ok, detail });
        if ok {
            c.failures = 0;
            c.successes = c.successes.saturating_add(1);
            if c.failed && c.successes >= healthy_threshold {
                c.failed = false;
                return Some(true);
            }
        } else {
            c.successes = 0;
            c.failures = c.failures.saturating_add(1);
            if !c.failed && c.failures >= unhealthy_threshold {
                c.failed = true;
                return Some(false);
            }
        }
        None
    }

    /// Forget active-check results (the check was switched off).
    pub fn clear_check(&self) {
        *self.check.lock() = Check::default();
    }

    pub fn is_ejected(&self) -> bool {
        self.ejection
            .lock()
            .until
            .is_some_and(|u| u > Instant::now())
    }

    pub fn ejected_until(&self) -> Option<Instant> {
        self.ejection.lock().until
    }

    pub fn ejections(&self) -> u64 {
        self.ejection.lock().total
    }

    /// A passive success resets the failure streak.
    pub fn note_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Passive failures in a row so far.
    pub fn failure_streak(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// A passive failure; returns the streak length.
    pub fn note_failure(&self) -> u32 {
        self.failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Eject for `base × n` (capped), n growing with repeated ejections and decaying by
    /// one for every `base` the server spent back in service. Returns the length.
    pub fn eject(&self, base: Duration, max: Duration) -> Duration {
        let mut e = self.ejection.lock();
        let now = Instant::now();
        if let Some(back) = e.returned_at {
            let good = now.saturating_duration_since(back).as_secs_f64() / base.as_secs_f64();
            e.count = e.count.saturating_sub(good as u32);
        }
        e.count = e.count.saturating_add(1);
        let length = base.saturating_mul(e.count).min(max);
        e.until = Some(now + length);
        e.total += 1;
        self.failures.store(0, Ordering::Relaxed);
        length
    }

    /// End the ejection that was due at `until` (a later ejection stays).
    pub fn end_ejection(&self, until: Instant) -> bool {
        let mut e = self.ejection.lock();
        if e.until == Some(until) {
            e.until = None;
            e.returned_at = Some(Instant::now());
            // Failures of requests still in flight when it went out do not count against
            // its return.
            self.failures.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    pub fn start_ramp(&self) -> u64 {
        *self.ramp_started.lock() = Some(Instant::now());
        self.ramp_gen.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn stop_ramp(&self) {
        *self.ramp_started.lock() = None;
        self.ramp_gen.fetch_add(1, Ordering::Relaxed);
    }

    /// The share of full capacity right now (1.0 unless ramping).
    pub fn share(&self, slow_start: Duration) -> f64 {
        let mut r = self.ramp_started.lock();
        let Some(start) = *r else {
            return 1.0;
        };
        if slow_start.is_zero() {
            *r = None;
            return 1.0;
        }
        let f = start.elapsed().as_secs_f64() / slow_start.as_secs_f64();
        if f >= 1.0 {
            *r = None;
            return 1.0;
        }
        f.max(RAMP_FLOOR)
    }

    /// (slots, member weight) for the current share.
    pub fn capacity(&self, slow_start: Duration) -> (usize, u32) {
        let share = self.share(slow_start);
        let spec = self.spec.lock();
        let full_w = spec.weight.saturating_mul(WEIGHT_SCALE);
        if share >= 1.0 {
            return (spec.slots, full_w);
        }
        let slots = ((spec.slots as f64 * share).ceil() as usize).clamp(1, spec.slots);
        let weight = ((full_w as f64 * share).ceil() as u32).clamp(1, full_w);
        (slots, weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(slots: usize, weight: u32) -> ServerRt {
        ServerRt::new(Spec {
            address: "h:1".into(),
            host: "h".into(),
            port: 1,
            tls: false,
            name: "h".into(),
            slots,
            weight,
            backup: false,
            discovered: false,
        })
    }

    #[test]
    fn checks_flip_only_past_their_thresholds() {
        let r = rt(10, 1);
        assert!(r.healthy());
        assert_eq!(r.record_check(false, "500".into(), 2, 3), None);
        assert_eq!(r.record_check(false, "500".into(), 2, 3), None);
        assert_eq!(r.record_check(false, "500".into(), 2, 3), Some(false));
        assert!(!r.healthy());
        assert_eq!(r.record_check(true, "200".into(), 2, 3), None);
        // A failure in between restarts the count.
        assert_eq!(r.record_check(false, "500".into(), 2, 3), None);
        assert_eq!(r.record_check(true, "200".into(), 2, 3), None);
        assert_eq!(r.record_check(true, "200".into(), 2, 3), Some(true));
        assert!(r.healthy());
        assert_eq!(r.last_check().unwrap().detail, "200");
    }

    #[test]
    fn ejections_grow_cap_and_end() {
        let r = rt(10, 1);
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(25);
        assert_eq!(r.eject(base, max), base);
        assert!(r.is_ejected() && !r.healthy());
        let until = r.ejected_until().unwrap();
        assert!(
            !r.end_ejection(until + Duration::from_secs(1)),
            "only the due one"
        );
        assert!(r.end_ejection(until));
        assert!(r.healthy());
        // Straight back out: twice as long, then capped.
        assert_eq!(r.eject(base, max), base * 2);
        assert!(r.end_ejection(r.ejected_until().unwrap()));
        assert_eq!(r.eject(base, max), max);
        assert_eq!(r.ejections(), 3);
    }

    #[test]
    fn slow_start_ramps_capacity_from_a_floor_to_full() {
        let r = rt(50, 2);
        let slow = Duration::from_secs(3600);
        assert_eq!(r.capacity(slow), (50, 2 * WEIGHT_SCALE));
        r.start_ramp();
        let (slots, weight) = r.capacity(slow);
        assert_eq!((slots, weight), (5, 20), "10% floor");
        // Zero slow start (switched off meanwhile) ends the ramp.
        assert_eq!(r.capacity(Duration::ZERO), (50, 200));
        assert_eq!(r.share(slow), 1.0);
        // A tiny server never drops to zero slots.
        let small = rt(1, 1);
        small.start_ramp();
        assert_eq!(small.capacity(slow), (1, 10));
    }
}
