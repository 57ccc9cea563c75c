//! The JSON documents of `/api/v1/...`: pools (with their workers or servers),
//! in-flight requests, and the dashboard's time series.

use super::metrics::latency_quantiles;
use super::sampler::{Sample, Sampler};
use crate::config::model::Backend;
use crate::front::inflight::RequestInfo;
use crate::pool::Pool;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One pool as `GET /api/v1/pools/{name}` shows it.
pub fn pool_json(sampler: &Sampler, name: &str, pool: &Arc<Pool>) -> Value {
    let front = sampler.front();
    let cfg = front.config();
    let pcfg = cfg.pools.get(name);
    let garden = matches!(pcfg.map(|c| &c.backend), Some(Backend::Garden(_)));
    let s = pool.snapshot();
    let (p50, p99) = latency_quantiles(pool);
    let live = super::sampler::merged_duration(pool);
    let recent = recent_latency(&sampler.history(), name, &live, now_unix_ms());
    let status = sampler.supervisor().and_then(|sup| sup.status(name));
    let cached = sampler.workers();
    let workers: Vec<Value> = match &status {
        Some(st) => st
            .workers
            .iter()
            .map(|w| {
                let mut v = serde_json::to_value(w).unwrap_or_default();
                // Thread and gate counters from the worker itself (built-in workers).
                if let Some(c) = w.pid.and_then(|pid| cached.iter().find(|c| c.pid == pid)) {
                    v["counters"] = serde_json::to_value(&c.counters).unwrap_or_default();
                    v["cpu_percent"] = json!(c.cpu_percent);
                }
                v
            })
            .collect(),
        None if garden => pool
            .members()
            .iter()
            .map(|m| {
                json!({
                    "pid": m.pid,
                    "uptime_s": m.started.elapsed().as_secs_f64(),
                    "requests": m.served(),
                    "active": m.active(),
                    "state": if m.is_draining() { "draining" } else { "running" },
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let farm_states = if garden {
        Vec::new()
    } else {
        crate::farm::server_states(pool)
    };
    let servers: Vec<Value> = if garden {
        Vec::new()
    } else if !farm_states.is_empty() {
        // The farm's view: state (healthy/unhealthy/ejected/draining), ejections, last check.
        farm_states
            .iter()
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .collect()
    } else {
        pool.members()
            .iter()
            .map(|m| {
                json!({
                    "server": m.label,
                    "healthy": m.is_healthy(),
                    "draining": m.is_draining(),
                    "backup": m.is_backup(),
                    "active": m.active(),
                    "slots": m.slots(),
                    "weight": m.weight(),
                    "requests": m.served(),
                    "failed": m.failed(),
                    "latency_ewma_ms": m.latency_ewma_us() as f64 / 1000.0,
                })
            })
            .collect()
    };
    json!({
        "name": name,
        "kind": if garden { "garden" } else { "farm" },
        "state": s.state.as_str(),
        "queue": {
            "length": s.queue_length,
            "limit": s.queue_limit,
            "oldest_seconds": s.queue_oldest_seconds,
            "timeout_seconds": pool.queue_timeout().as_secs_f64(),
        },
        "capacity": s.capacity,
        "active": s.active,
        "members": s.members,
        "usable_members": s.usable_members,
        "arrivals": s.arrivals,
        "completed": s.completed,
        "rejected": s.rejected,
        "rejected_total": pool.counters().rejected_total(),
        "queue_discipline": s.discipline,
        "shedding_seconds": s.shedding_seconds,
        "drain_per_second": s.drain_per_second,
        // Since start, and over the last minute of samples.
        "latency": {
            "p50_seconds": p50,
            "p99_seconds": p99,
            "recent_window_seconds": recent.map(|r| r.0),
            "recent_p50_seconds": recent.and_then(|r| r.1),
            "recent_p99_seconds": recent.and_then(|r| r.2),
        },
        "workers": workers,
        "servers": servers,
        "last_failures": status.as_ref().map(|s| json!(s.last_failures)).unwrap_or(json!([])),
        "recycle_history": status.as_ref().map(|s| json!(s.recycle_history)).unwrap_or(json!([])),
        "worker_starts_total": status.as_ref().map(|s| s.worker_starts_total).unwrap_or(0),
        "worker_failures_total": status.as_ref().map(|s| json!(s.worker_failures_total)).unwrap_or(json!({})),
        "recycles_total": status.as_ref().map(|s| json!(s.recycles_total)).unwrap_or(json!({})),
    })
}

/// How far back "recent" latency looks.
const RECENT_MS: u64 = 60_000;

/// (window seconds, p50, p99) of the requests that finished in the last minute: the live
/// histogram `now` against the oldest sample of that minute, so requests that finished
/// since the last sample count (the 1-minute p99 is never `-` while the p99 has a value
/// from a request of the last minute). Without an older sample the whole history is the
/// last minute.
fn recent_latency(
    history: &[Arc<Sample>],
    pool: &str,
    live: &crate::pool::HistogramSnapshot,
    now_ms: u64,
) -> Option<(f64, Option<f64>, Option<f64>)> {
    let first = history
        .iter()
        .filter(|s| now_ms.saturating_sub(s.at_unix_ms) <= RECENT_MS)
        .find_map(|s| s.pool(pool).map(|p| (s.at_unix_ms, p)));
    let (window_s, window) = match first {
        Some((at, p)) => (
            now_ms.saturating_sub(at) as f64 / 1000.0,
            live.since(&p.duration),
        ),
        None => (RECENT_MS as f64 / 1000.0, live.clone()),
    };
    Some((
        window_s,
        interpolated_quantile(&window, 0.5),
        interpolated_quantile(&window, 0.99),
    ))
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn pools_json(sampler: &Sampler) -> Value {
    let state = sampler.front().state();
    let pools: Vec<Value> = state
        .pools
        .iter()
        .map(|(n, p)| pool_json(sampler, n, p))
        .collect();
    json!({ "pools": pools })
}

/// `GET /api/v1/requests` filters.
#[derive(Debug, Default)]
pub struct RequestFilter {
    pub pool: Option<String>,
    pub min_elapsed_ms: u64,
}

pub fn requests_json(rows: Vec<RequestInfo>, f: &RequestFilter) -> Value {
    let rows: Vec<RequestInfo> = rows
        .into_iter()
        .filter(|r| f.pool.as_ref().is_none_or(|p| &r.pool == p))
        .filter(|r| r.elapsed_ms >= f.min_elapsed_ms)
        .collect();
    json!({ "count": rows.len(), "requests": rows })
}

/// One point of a pool's dashboard chart.
#[derive(Debug, Serialize)]
struct PoolPoint {
    t: u64,
    queue: usize,
    active: usize,
    capacity: usize,
    arrivals_per_s: f64,
    rejected_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct WorkerPoint {
    t: u64,
    threads: usize,
    goal: usize,
    busy: usize,
    max: usize,
    queued: usize,
    injections: u64,
    starvation: u64,
    cpu_percent: Option<f64>,
}

/// `GET /api/v1/stats[?since=T]`: the sampler's history as per-pool and per-worker
/// series (rates between consecutive samples), the dashboard's one data source. With
/// `since` (a previous answer's `at_unix_ms`) only newer points are sent, so a page that
/// polls every second receives one point per series.
pub fn stats_json(history: &[Arc<Sample>], since: Option<u64>) -> Value {
    let mut pools: BTreeMap<String, Vec<PoolPoint>> = BTreeMap::new();
    let mut workers: BTreeMap<String, (String, Vec<WorkerPoint>)> = BTreeMap::new();
    // Every pool and live worker is listed, even with no new point.
    if let Some(last) = history.last() {
        for p in &last.pools {
            pools.entry(p.name.clone()).or_default();
        }
        for w in &last.workers {
            workers
                .entry(w.pid.to_string())
                .or_insert_with(|| (w.pool.clone(), Vec::new()));
        }
    }
    for (i, s) in history.iter().enumerate() {
        if since.is_some_and(|t| s.at_unix_ms <= t) {
            continue;
        }
        let prev = i.checked_sub(1).map(|j| &history[j]);
        for p in &s.pools {
            let before = prev.and_then(|x| x.pool(&p.name));
            let secs = prev
                .map(|x| s.at_unix_ms.saturating_sub(x.at_unix_ms) as f64 / 1000.0)
                .unwrap_or(0.0);
            let rate = |now: u64, then: Option<u64>| match then {
                Some(t) if secs > 0.0 => now.saturating_sub(t) as f64 / secs,
                _ => 0.0,
            };
            let window = match before {
                Some(b) => p.duration.since(&b.duration),
                None => p.duration.clone(),
            };
            let ms = |q: f64| interpolated_quantile(&window, q).map(|v| v * 1000.0);
            pools.entry(p.name.clone()).or_default().push(PoolPoint {
                t: s.at_unix_ms,
                queue: p.queue_length,
                active: p.active,
                capacity: p.capacity,
                arrivals_per_s: rate(p.arrivals, before.map(|b| b.arrivals)),
                rejected_per_s: rate(p.rejected_total(), before.map(|b| b.rejected_total())),
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
            });
        }
        for w in &s.workers {
            let (mut threads, mut goal, mut busy, mut max, mut queued, mut inj, mut starv) =
                (0, 0, 0, 0, 0, 0, 0);
            for t in w.counters.worker_pools.values() {
                threads += t.threads;
                goal += t.goal;
                busy += t.busy;
                max += t.max;
                queued += t.queued;
                inj += t.injections.hill_climbing + t.injections.starvation + t.injections.blocking;
                starv += t.injections.starvation;
            }
            workers
                .entry(w.pid.to_string())
                .or_insert_with(|| (w.pool.clone(), Vec::new()))
                .1
                .push(WorkerPoint {
                    t: s.at_unix_ms,
                    threads,
                    goal,
                    busy,
                    max,
                    queued: queued + w.counters.gate.queued,
                    injections: inj,
                    starvation: starv,
                    cpu_percent: w.cpu_percent,
                });
        }
    }
    let last = history.last();
    json!({
        "at_unix_ms": last.map(|s| s.at_unix_ms),
        "pools": pools.into_iter().map(|(name, points)| {
            let state = last.and_then(|s| s.pool(&name)).map(|p| p.state.clone());
            let kind = last.and_then(|s| s.pool(&name)).map(|p| p.kind);
            json!({"name": name, "state": state, "kind": kind, "points": points})
        }).collect::<Vec<_>>(),
        "workers": workers.into_iter().map(|(pid, (pool, points))| {
            let pid = pid.parse::<u32>().unwrap_or(0);
            let alive = last.is_some_and(|s| s.workers.iter().any(|w| w.pid == pid));
            json!({"pid": pid, "pool": pool, "alive": alive, "points": points})
        }).collect::<Vec<_>>(),
    })
}

/// The `q` quantile, interpolated inside its bucket (as Prometheus's
/// `histogram_quantile` does) but around where that bucket's samples really are: the
/// bucket's samples are taken as spread evenly over the widest range inside the bucket
/// centred on their mean. A 50 ms workload then reads p50 ≈ p99 ≈ 50 ms, not 75 / 100 ms
/// (its bucket is 50..100 ms). `None` without samples; the +Inf bucket reports the last
/// finite bound.
pub fn interpolated_quantile(h: &crate::pool::HistogramSnapshot, q: f64) -> Option<f64> {
    use crate::pool::counters::BUCKETS;
    if h.count == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * h.count as f64;
    let mut seen = 0.0;
    for (i, &c) in h.counts.iter().enumerate() {
        let c = c as f64;
        if c > 0.0 && seen + c >= rank {
            let Some(&upper) = BUCKETS.get(i) else {
                return BUCKETS.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
            let (lo, hi) = match h.bucket_sums.get(i) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Histogram;
    use std::time::Duration;

    fn sample(at: u64, arrivals: u64, rejected: u64, slow: usize) -> Arc<Sample> {
        let d = Histogram::default();
        for _ in 0..slow {
            d.observe(Duration::from_millis(300));
        }
        let mut rej = BTreeMap::new();
        rej.insert("QueueFull".to_string(), rejected);
        Arc::new(Sample {
            at_unix_ms: at,
            pools: vec![crate::admin::sampler::PoolSample {
                name: "web".into(),
                state: "Started".into(),
                kind: "garden",
                queue_length: 3,
                queue_limit: 10,
                queue_oldest_seconds: 0.5,
                capacity: 4,
                active: 4,
                members: 1,
                arrivals,
                completed: 0,
                rejected: rej,
                duration: d.snapshot(),
                queue_wait: Histogram::default().snapshot(),
                worker_failures_total: 0,
                ping_failures_total: 0,
                members_view: vec![],
                starting_seconds: vec![],
                startup_time_limit_seconds: 90.0,
                always_running: false,
                cpu: None,
            }],
            workers: vec![],
            front: Default::default(),
            machine: Default::default(),
        })
    }

    #[test]
    fn stats_are_rates_between_samples() {
        let h = vec![sample(1000, 0, 0, 0), sample(3000, 10, 4, 10)];
        let v = stats_json(&h, None);
        let pts = v["pools"][0]["points"].as_array().unwrap();
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[1]["arrivals_per_s"], 5.0);
        assert_eq!(pts[1]["rejected_per_s"], 2.0);
        assert_eq!(pts[1]["queue"], 3);
        // The latency of the requests that finished in that interval (all ~300 ms).
        let p50 = pts[1]["p50_ms"].as_f64().unwrap();
        assert!((250.0..=500.0).contains(&p50), "{p50}");
        assert!(pts[0]["p50_ms"].is_null());
        // Only newer points with `since`.
        let v = stats_json(&h, Some(1000));
        assert_eq!(v["pools"][0]["points"].as_array().unwrap().len(), 1);
        assert_eq!(v["at_unix_ms"], 3000);
    }

    #[test]
    fn recent_latency_counts_requests_since_the_last_sample() {
        // One sample with no requests; then 10 requests of 300 ms finish before the next.
        let h = vec![sample(1000, 0, 0, 0)];
        let live = Histogram::default();
        for _ in 0..10 {
            live.observe(Duration::from_millis(300));
        }
        let (secs, p50, p99) = recent_latency(&h, "web", &live.snapshot(), 1500).unwrap();
        assert_eq!(secs, 0.5);
        assert!(p50.is_some() && p99.is_some(), "{p50:?} {p99:?}");
        // Without any sample yet, everything so far is recent.
        let (_, _, p99) = recent_latency(&[], "web", &live.snapshot(), 1500).unwrap();
        assert!(p99.is_some());
        // Requests older than the minute do not count.
        let old = sample(1000, 0, 0, 10);
        let (_, _, p99) = recent_latency(&[old], "web", &live.snapshot(), 30_000).unwrap();
        assert_eq!(p99, None);
    }

    #[test]
    fn request_filters() {
        let row = |pool: &str, ms| RequestInfo {
            id: 1,
            pool: pool.into(),
            worker_pid: None,
            method: "GET".into(),
            url: "/".into(),
            state: "queued",
            elapsed_ms: ms,
        };
        let rows = vec![row("a", 10), row("a", 900), row("b", 2000)];
        let f = RequestFilter {
            pool: Some("a".into()),
            min_elapsed_ms: 500,
        };
        assert_eq!(requests_json(rows.clone(), &f)["count"], 1);
        assert_eq!(requests_json(rows, &RequestFilter::default())["count"], 3);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let h = Histogram::default();
        assert_eq!(interpolated_quantile(&h.snapshot(), 0.5), None);
        // Ten samples in the (0.25, 0.5] bucket.
        for _ in 0..10 {
            h.observe(Duration::from_millis(300));
        }
        let s = h.snapshot();
        // Around where the samples are (300 ms), not the bucket's middle (375 ms) or top.
        let p50 = interpolated_quantile(&s, 0.5).unwrap();
        assert!((p50 - 0.3).abs() < 1e-6, "{p50}");
        let p99 = interpolated_quantile(&s, 0.99).unwrap();
        assert!((0.3..0.36).contains(&p99), "{p99}");
        // A 50 ms workload (just over the 50 ms bound): p50 and p99 read ~50 ms.
        let h50 = Histogram::default();
        for i in 0..100 {
            h50.observe(Duration::from_micros(50_500 + i * 10));
        }
        let s50 = h50.snapshot();
        let (p50, p99) = (
            interpolated_quantile(&s50, 0.5).unwrap(),
            interpolated_quantile(&s50, 0.99).unwrap(),
        );
        assert!((0.050..0.052).contains(&p50), "{p50}");
        assert!((0.050..0.053).contains(&p99), "{p99}");
        // One slow outlier past the last bound.
        h.observe(Duration::from_secs(500));
        assert_eq!(interpolated_quantile(&h.snapshot(), 1.0), Some(120.0));
    }
}
