//! The cache as operators see it: purge (`POST /api/v1/cache/purge`, `roost ctl cache
//! purge`), the `/metrics` families and the JSON the API and dashboard show.

use super::{Cache, Caches};
use crate::metrics_text::{labels as l, Family, Value};
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use std::sync::atomic::Ordering;

/// A purge: one URL (`key`, e.g. `example.com/a?b=1`) or every URL under `prefix`
/// (`""` empties the cache), in one pool or in all.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purge {
    pub pool: Option<String>,
    pub key: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PurgeError {
    #[error("give exactly one of `key` or `prefix`")]
    Target,
    #[error("pool {0:?} has no cache")]
    NoCache(String),
}

/// Apply a purge; the number of URLs removed.
pub fn purge(caches: &Caches, p: &Purge) -> Result<usize, PurgeError> {
    let targets: Vec<std::sync::Arc<Cache>> = match &p.pool {
        Some(name) => {
            let of = caches.of_pool(name);
            if of.is_empty() {
                return Err(PurgeError::NoCache(name.clone()));
            }
            of
        }
        None => caches.all(),
    };
    let removed = match (&p.key, &p.prefix) {
        (Some(k), None) => targets.iter().filter(|c| c.purge_key(k)).count(),
        (None, Some(pre)) => targets.iter().map(|c| c.purge_prefix(pre)).sum(),
        _ => return Err(PurgeError::Target),
    };
    tracing::info!(pool = ?p.pool, key = ?p.key, prefix = ?p.prefix, removed, "cache purged");
    Ok(removed)
}

/// One pool's cache for the API and dashboard.
pub fn json(c: &Cache) -> Json {
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let k = &c.counters;
    json!({
        "pool": &*c.pool,
        "application": c.app.as_deref(),
        "bytes": c.bytes(),
        "maxBytes": c.settings.max_bytes,
        "urls": c.urls(),
        "evictions": c.evictions(),
        "fills": c.fills.len(),
        "requests": {
            "hit": n(&k.hit), "miss": n(&k.miss), "stale": n(&k.stale),
            "coalesced": n(&k.coalesced), "revalidated": n(&k.revalidated),
            "pass": n(&k.pass),
        },
        "stored": n(&k.stored),
    })
}

pub fn all_json(caches: &Caches) -> Json {
    Json::Array(caches.all().iter().map(|c| json(c)).collect())
}

/// `cache_requests_total{pool,result}`, `cache_bytes`, `cache_objects`,
/// `cache_evictions_total` (DESIGN.md §4); nothing when no pool has a cache.
pub fn encode_metrics(caches: &Caches, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    if caches.is_empty() {
        return Ok(());
    }
    let mut requests = Family::new(
        "cache_requests",
        "Requests by what the cache did: hit, miss (went to the member for the cache), stale (served stale), coalesced (waited for another request's fill), revalidated (304 refreshed the entry), pass (not cacheable).",
        MetricType::Counter,
    );
    let mut bytes = Family::new(
        "cache_bytes",
        "Bytes held by the cache (bodies, heads, bookkeeping).",
        MetricType::Gauge,
    );
    let mut max = Family::new(
        "cache_max_bytes",
        "The cache's maxBytes.",
        MetricType::Gauge,
    );
    let mut objects = Family::new(
        "cache_objects",
        "URLs held by the cache (each with one or more Vary variants).",
        MetricType::Gauge,
    );
    let mut evictions = Family::new(
        "cache_evictions",
        "Entries evicted to stay within maxBytes.",
        MetricType::Counter,
    );
    for c in caches.all() {
        let id = |extra: &[(&'static str, &str)]| labels_of(&c, extra);
        let k = &c.counters;
        for (result, a) in [
            ("hit", &k.hit),
            ("miss", &k.miss),
            ("stale", &k.stale),
            ("coalesced", &k.coalesced),
            ("revalidated", &k.revalidated),
            ("pass", &k.pass),
        ] {
            requests.push(
                id(&[("result", result)]),
                Value::Counter(a.load(Ordering::Relaxed)),
            );
        }
        bytes.push(id(&[]), Value::Gauge(c.bytes() as i64));
        max.push(id(&[]), Value::Gauge(c.settings.max_bytes as i64));
        objects.push(id(&[]), Value::Gauge(c.urls() as i64));
        evictions.push(id(&[]), Value::Counter(c.evictions()));
    }
    for f in [&requests, &bytes, &max, &objects, &evictions] {
        f.encode(encoder)?;
    }
    Ok(())
}

/// `pool`, `application` for an application's own cache, then `extra`.
fn labels_of(c: &Cache, extra: &[(&'static str, &str)]) -> crate::metrics_text::Labels {
    let mut v = vec![("pool", &*c.pool)];
    if let Some(app) = &c.app {
        v.push(("application", &**app));
    }
    v.extend_from_slice(extra);
    l(&v)
}
