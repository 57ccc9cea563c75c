//! `pools.<name>.fairness` checked into [`Fairness`]: what the sub-queues are keyed by,
//! the keys' weights, and how many sub-queues a pool keeps apart.

use super::ctx::{Ctx, KeyPath, Sub};
use crate::config::fairness::{application_key, FairBy, Fairness};
use crate::config::leaf::{Leaf, Opt, Scalar};
use crate::config::model::{Pool, Site};
use crate::config::raw::RawFairness;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

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

/// The `weights` keys checked against what the pool's requests can be keyed by, once the
/// sites are known: with `by: application` a key names an application routed to this pool
/// (`site/path`), with `by: clientAddress` an IP address (kept in the form a request's key
/// takes, so `0:0::1` weighs `::1`). A key nothing can match is a typo whose weight would
/// silently never apply. Header values can be anything, so those keys are not checked.
pub(super) fn check_weight_keys(
    sites: &[Site],
    pools: &mut BTreeMap<String, Pool>,
    ctx: &mut Ctx<'_>,
) {
    // Built once, and only if some pool needs it: 100,000 pools must not each scan
    // every site.
    let mut apps: Option<BTreeMap<&str, BTreeSet<String>>> = None;
    for (name, pool) in pools.iter_mut() {
        let Some(f) = pool.queue.fairness.as_mut() else {
            continue;
        };
        let wp = format!("pools.{name}.fairness.weights");
        match f.by {
            FairBy::Application => {
                let apps = apps.get_or_insert_with(|| applications_by_pool(sites));
                let none = BTreeSet::new();
                let mine = apps.get(name.as_str()).unwrap_or(&none);
                for key in f.weights.keys().filter(|k| !mine.contains(*k)) {
                    ctx.report(&format!("{wp}.{key}"), None, not_an_application(name, mine));
                }
            }
            FairBy::ClientAddress => {
                let mut canonical = BTreeMap::new();
                for (key, w) in std::mem::take(&mut f.weights) {
                    match key.trim().parse::<std::net::IpAddr>() {
                        Ok(ip) => {
                            canonical.insert(ip.to_string(), w);
                        }
                        Err(_) => ctx.report(
                            &format!("{wp}.{key}"),
                            None,
                            "expected an IP address: with `by: clientAddress` a key is the client's address",
                        ),
                    }
                }
                f.weights = canonical;
            }
            FairBy::Header(_) => {}
        }
    }
}

fn not_an_application(pool: &str, apps: &BTreeSet<String>) -> String {
    if apps.is_empty() {
        return format!("no application routes to pool `{pool}`, so no request has this key");
    }
    let list: Vec<&str> = apps.iter().map(String::as_str).collect();
    format!(
        "not an application of pool `{pool}` (a key is the site's name and the application's path: {})",
        list.join(", ")
    )
}

/// Every pool's `site/path` keys: the key an application routed to it gives its requests.
fn applications_by_pool(sites: &[Site]) -> BTreeMap<&str, BTreeSet<String>> {
    let mut by: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for s in sites {
        for a in &s.applications {
            by.entry(a.pool.as_str())
                .or_default()
                .insert(application_key(&s.name, &a.path));
        }
    }
    by
}
