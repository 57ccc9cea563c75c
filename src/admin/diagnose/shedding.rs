//! The queue discipline's own account (issue 17 item 6): "shedding since …, because the
//! queue wait stayed above target", with the numbers CoDel decided on, and the waiters
//! shed in the window by cause. A symptom like a full queue: the cause that leaves the
//! pool short of capacity (CPU, a slow server, …) explains it; without one it stands as
//! the finding.

use super::view::Ctx;
use super::Symptom;
use std::time::{Duration, UNIX_EPOCH};

/// The pool sheds now, or shed queued requests in the window.
pub(super) fn symptom(c: &Ctx) -> Option<Symptom> {
    let p = c.pool;
    let before = &c.before.queue_state.sheds;
    let mut shed = 0;
    let mut by_cause = Vec::new();
    for (cause, n) in &p.queue_state.sheds {
        let d = n.saturating_sub(before.get(cause).copied().unwrap_or(0));
        if d > 0 {
            shed += d;
            by_cause.push(format!("{cause} {d}"));
        }
    }
    let window = format!(
        "{shed} queued requests shed in the last {:.0} s{}",
        c.secs,
        if by_cause.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_cause.join(", "))
        }
    );
    let evidence = match (p.shedding_seconds, &p.queue_state.trigger) {
        (Some(secs), Some(t)) => {
            let now_ms = c.window.last().map_or(0, |s| s.at_unix_ms);
            let since =
                UNIX_EPOCH + Duration::from_millis(now_ms) - Duration::from_secs_f64(secs.max(0.0));
            let min_wait = match t.min_wait_ms {
                Some(ms) => format!("min wait {ms:.0} ms over {:.0} ms", t.interval_ms),
                None => format!("no request left the queue in {:.0} ms", t.interval_ms),
            };
            format!(
                "symptom: shedding since {} ({secs:.0} s), because the queue wait stayed above \
                 target {:.0} ms ({min_wait}); {window}",
                humantime::format_rfc3339_seconds(since),
                t.target_ms,
            )
        }
        _ if shed > 0 => format!("symptom: {window}"),
        _ => return None,
    };
    Some(Symptom {
        rule: "shedding",
        evidence,
        refuses: true,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::pool;
    use super::*;
    use crate::admin::sampler::Sample;
    use crate::pool::TriggerDoc;
    use std::sync::Arc;

    #[test]
    fn shedding_is_told_with_its_numbers() {
        let mut before = pool(10, 4, 4);
        before.queue_state.sheds = [("overload".to_string(), 100), ("stale".to_string(), 5)].into();
        let mut now = before.clone();
        now.shedding_seconds = Some(12.0);
        now.queue_state.trigger = Some(TriggerDoc {
            target_ms: 5.0,
            interval_ms: 100.0,
            min_wait_ms: Some(37.4),
        });
        now.queue_state.sheds = [("overload".to_string(), 400), ("stale".to_string(), 5)].into();
        let at = 1_764_688_812_000; // 2025-12-02T15:20:12Z
        let sample = |p| {
            Arc::new(Sample {
                at_unix_ms: at,
                pools: vec![p],
                workers: vec![],
                front: Default::default(),
                machine: Default::default(),
            })
        };
        let (s0, s1) = (sample(before.clone()), sample(now.clone()));
        let window = [&s0, &s1];
        let c = Ctx {
            pool: &now,
            before: &before,
            secs: 10.0,
            window: &window,
        };
        let s = symptom(&c).expect("shedding is a symptom");
        assert_eq!(s.rule, "shedding");
        for want in [
            "shedding since 2025-12-02T15:20:00Z (12 s)",
            "above target 5 ms (min wait 37 ms over 100 ms)",
            "300 queued requests shed in the last 10 s (overload 300)",
        ] {
            assert!(s.evidence.contains(want), "{want:?} not in {}", s.evidence);
        }
        // Not shedding and nothing shed in the window: nothing to say.
        let c = Ctx {
            pool: &before,
            before: &before,
            secs: 10.0,
            window: &window,
        };
        assert!(symptom(&c).is_none());
    }
}
