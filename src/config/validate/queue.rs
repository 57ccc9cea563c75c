//! The pool keys that shape its queue checked into a [`QueuePolicy`]:
//! `queueDiscipline`, `queueTargetDelay`, `queueInterval`, `rejectStatus`,
//! `retryAfter: auto`, and through `fairness.rs` and `priority.rs` the pool's
//! `fairness` and `priorities`.

use super::ctx::{Ctx, KeyPath, Sub};
use super::parse::parse_timespan;
use crate::config::leaf::{Leaf, Lenient, Scalar};
use crate::config::queue::{QueueDiscipline, QueuePolicy};
use crate::config::raw::RawPool;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// `retryAfter` as the generic duration check should see it: `auto` is this module's.
pub(super) fn retry_after_leaf(l: &Leaf) -> Leaf {
    match l {
        Some(Scalar(Value::String(s))) if s.trim().eq_ignore_ascii_case("auto") => None,
        other => other.clone(),
    }
}

/// Read and check the queue keys of the pool at `pp`.
pub(super) fn validate(rp: &RawPool, pp: &dyn KeyPath, ctx: &mut Ctx<'_>) -> QueuePolicy {
    let mut q = QueuePolicy::default();
    let dp = Sub(&pp, "queueDiscipline");
    if let Some(Scalar(v)) = &rp.queue_discipline {
        match v.as_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Some("fifo") => q.discipline = QueueDiscipline::Fifo,
            Some("adaptive") => q.discipline = QueueDiscipline::Adaptive,
            _ if v.is_null() => {}
            _ => ctx.report(
                &dp,
                Some(v),
                "unknown value (expected one of fifo, adaptive)",
            ),
        }
    }
    let tp = Sub(&pp, "queueTargetDelay");
    let ip = Sub(&pp, "queueInterval");
    q.target_delay = duration(&rp.queue_target_delay, &tp, q.target_delay, ctx);
    q.interval = duration(&rp.queue_interval, &ip, q.interval, ctx);
    if q.target_delay >= q.interval {
        let shown = rp.queue_target_delay.as_ref().map(|s| &s.0);
        ctx.report(
            &tp,
            shown,
            format!(
                "must be shorter than queueInterval ({:?}): CoDel's target is a few percent of its interval",
                q.interval
            ),
        );
        q.target_delay = q.interval / 20;
    }
    if let Some(Scalar(v)) = &rp.retry_after {
        q.retry_after_auto = v
            .as_str()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("auto"));
    }
    let rsp = Sub(&pp, "rejectStatus");
    match &rp.reject_status {
        None => {}
        Some(Lenient::Ok(map)) => reject_status(map, &rsp, &mut q, ctx),
        Some(Lenient::Bad(v)) => ctx.report(
            &rsp,
            Some(v),
            "expected a map of reason to status, like {QueueFull: 429, Shed: 429}",
        ),
    }
    q.fairness = super::fairness::validate(&rp.fairness, pp, ctx);
    q.priorities = super::priority::validate(&rp.priorities, pp, ctx);
    q
}

fn duration(l: &Leaf, path: &dyn KeyPath, default: Duration, ctx: &mut Ctx<'_>) -> Duration {
    let Some(Scalar(v)) = l else {
        return default;
    };
    let parsed = match v {
        Value::Null => return default,
        Value::String(s) => humantime::parse_duration(s.trim())
            .ok()
            .or_else(|| parse_timespan(s)),
        _ => None,
    };
    match parsed {
        Some(d) if !d.is_zero() => d,
        Some(_) => {
            ctx.report(path, Some(v), "must be longer than 0");
            default
        }
        None => {
            ctx.report(path, Some(v), "not a duration (write 5ms, 100ms, 1s)");
            default
        }
    }
}

/// `rejectStatus: {QueueFull: 429, Shed: 429}`: only the pool's overload refusals may
/// become 429, and only 429 or 503.
fn reject_status(
    map: &BTreeMap<String, Scalar>,
    path: &dyn KeyPath,
    q: &mut QueuePolicy,
    ctx: &mut Ctx<'_>,
) {
    for (reason, Scalar(v)) in map {
        let kp = Sub(path, reason);
        let status = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let Some(status @ (429 | 503)) = status else {
            ctx.report(&kp, Some(v), "expected 503 or 429");
            continue;
        };
        match reason.as_str() {
            "QueueFull" => q.queue_full_status = status as u16,
            "Shed" => q.shed_status = status as u16,
            _ => ctx.report(
                &kp,
                None,
                "only QueueFull and Shed have a configurable status (expected one of QueueFull, Shed)",
            ),
        }
    }
}
