//! `pools.<name>.fairness` checked into [`Fairness`]: what the sub-queues are keyed by,
//! the keys' weights, and how many sub-queues a pool keeps apart.

use super::ctx::{Ctx, KeyPath, Sub};
use crate::config::fairness::{FairBy, Fairness};
use crate::config::leaf::{Leaf, Opt, Scalar};
use crate::config::raw::RawFairness;
use serde_json::Value;
use std::collections::BTreeMap;

/// The most sub-queues a pool may be asked to keep apart.
const MAX_KEYS_LIMIT: usize = 65_536;

/// The largest weight (a share 1000 times another's is already "always first").
const MAX_WEIGHT: u32 = 1000;

const BY_HINT: &str = "expected application, clientAddress, or header:NAME ({header: NAME})";

/// Read and check `pools.<name>.fairness`.
pub(super) fn validate(
    raw: &Opt<RawFairness>,
    pp: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> Option<Fairness> {
    let fp = Sub(&pp, "fairness");
    let rf = ctx.nested(raw, &fp, "a map like {by: application}")?;
    let bp = Sub(&fp, "by");
    // A bad `by` is reported with the other keys' problems, not instead of them.
    let by = match rf.by.as_ref().map(|s| &s.0).filter(|v| !v.is_null()) {
        None => {
            ctx.report(&bp, None, format!("missing: {BY_HINT}"));
            None
        }
        Some(v) => parse_by(v)
            .map_err(|why| ctx.report(&bp, Some(v), why))
            .ok(),
    };
    let default_weight = weight(&rf.default_weight, &Sub(&fp, "defaultWeight"), ctx);
    let mut weights = BTreeMap::new();
    let wp = Sub(&fp, "weights");
    if let Some(map) = ctx.nested(&rf.weights, &wp, "a map of key to weight, like {appA: 3}") {
        for (k, v) in map {
            let w = weight(&Some(v.clone()), &format!("{wp}.{k}"), ctx);
            weights.insert(k.clone(), w);
        }
    }
    let max_keys = ctx.usize(&rf.max_keys, &Sub(&fp, "maxKeys"), 1024, 1);
    if max_keys > MAX_KEYS_LIMIT {
        let v = rf.max_keys.as_ref().map(|s| &s.0);
        ctx.report(
            &Sub(&fp, "maxKeys"),
            v,
            format!("at most {MAX_KEYS_LIMIT}: each key is a sub-queue the pool keeps"),
        );
    }
    Some(Fairness {
        by: by?,
        weights,
        default_weight,
        max_keys: max_keys.min(MAX_KEYS_LIMIT),
    })
}

fn parse_by(v: &Value) -> Result<FairBy, String> {
    let header = |name: &str| {
        http::HeaderName::from_bytes(name.trim().as_bytes())
            .map(FairBy::Header)
            .map_err(|_| format!("`{}` is not a header name", name.trim()))
    };
    match v {
        Value::String(s) => {
            let t = s.trim();
            if t.eq_ignore_ascii_case("application") {
                Ok(FairBy::Application)
            } else if t.eq_ignore_ascii_case("clientAddress") {
                Ok(FairBy::ClientAddress)
            } else if let Some(name) = t
                .split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case("header"))
                .map(|(_, n)| n)
            {
                header(name)
            } else {
                Err(BY_HINT.to_string())
            }
        }
        Value::Object(m) if m.len() == 1 => match m.get("header").and_then(Value::as_str) {
            Some(name) => header(name),
            None => Err(BY_HINT.to_string()),
        },
        _ => Err(BY_HINT.to_string()),
    }
}

/// A weight: a whole number 1..=1000 (default 1).
fn weight(l: &Leaf, path: &dyn KeyPath, ctx: &mut Ctx<'_>) -> u32 {
    let Some(Scalar(v)) = l.as_ref().filter(|s| !s.0.is_null()) else {
        return 1;
    };
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match n {
        Some(n @ 1..) if n <= MAX_WEIGHT as u64 => n as u32,
        _ => {
            ctx.report(
                path,
                Some(v),
                format!("expected a whole number from 1 to {MAX_WEIGHT} (a share relative to the other keys)"),
            );
            1
        }
    }
}
