//! The pool keys that shape its queue (issue 17): `queueDiscipline`, `queueTargetDelay`,
//! `queueInterval`, `rejectStatus`, `retryAfter: auto`, and (in their own files)
//! `fairness` and `priorities`. The model types and their
//! checks live here, apart from the rest of the pool, so the queue can grow (fairness,
//! priority classes, ordering) without touching the pool's other sections.

use super::raw::{Leaf, Lenient, RawPool, Scalar};
use super::validate::{parse_timespan, Ctx};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The order in which a pool serves its waiting requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueDiscipline {
    /// Strict arrival order until `queueLength` or `queueTimeout` (HTTP.sys, IIS).
    #[default]
    Fifo,
    /// CoDel-style: when the minimum queue wait over an interval stays above the target,
    /// the queue is served newest first and requests that cannot be served in time are
    /// shed at once ("Fail at Scale", ACM Queue 2015).
    Adaptive,
}

impl QueueDiscipline {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueDiscipline::Fifo => "fifo",
            QueueDiscipline::Adaptive => "adaptive",
        }
    }
}

/// How a pool's queue orders, sheds and answers the requests it refuses.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePolicy {
    pub discipline: QueueDiscipline,
    /// `adaptive`: the queue wait a standing queue may keep (CoDel's target, 5 ms).
    pub target_delay: Duration,
    /// `adaptive`: the window whose minimum wait decides overload (CoDel's interval, 100 ms).
    pub interval: Duration,
    /// Status of `QueueFull` refusals: 503 (default) or 429.
    pub queue_full_status: u16,
    /// Status of `Shed` refusals: 503 (default) or 429.
    pub shed_status: u16,
    /// `retryAfter: auto`: `Retry-After` from the measured drain rate, not a constant.
    pub retry_after_auto: bool,
    /// `fairness`: sub-queues per application, header or client, served by weighted
    /// deficit round robin (`config/fairness.rs`).
    pub fairness: Option<super::fairness::Fairness>,
    /// `priorities`: the classes, highest first, with exactly one default class; empty
    /// without the key (`config/priority.rs`).
    pub priorities: Vec<super::priority::PriorityClass>,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        QueuePolicy {
            discipline: QueueDiscipline::Fifo,
            target_delay: Duration::from_millis(5),
            interval: Duration::from_millis(100),
            queue_full_status: 503,
            shed_status: 503,
            retry_after_auto: false,
            fairness: None,
            priorities: Vec::new(),
        }
    }
}

/// `retryAfter` as the generic duration check should see it: `auto` is this module's.
pub(super) fn retry_after_leaf(l: &Leaf) -> Leaf {
    match l {
        Some(Scalar(Value::String(s))) if s.trim().eq_ignore_ascii_case("auto") => None,
        other => other.clone(),
    }
}

/// Read and check the queue keys of the pool at `pp`.
pub(super) fn validate(rp: &RawPool, pp: &str, ctx: &mut Ctx<'_>) -> QueuePolicy {
    let mut q = QueuePolicy::default();
    let dp = format!("{pp}.queueDiscipline");
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
    let tp = format!("{pp}.queueTargetDelay");
    let ip = format!("{pp}.queueInterval");
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
    let rsp = format!("{pp}.rejectStatus");
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

fn duration(l: &Leaf, path: &str, default: Duration, ctx: &mut Ctx<'_>) -> Duration {
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
    path: &str,
    q: &mut QueuePolicy,
    ctx: &mut Ctx<'_>,
) {
    for (reason, Scalar(v)) in map {
        let kp = format!("{path}.{reason}");
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
