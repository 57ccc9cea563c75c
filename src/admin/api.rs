//! The documents of `/api/v1/...` built from the live state: pools (with their workers
//! or servers), in-flight requests, and the dashboard's time series. Their shapes are the
//! types of [`super::wire`].

use super::sampler::{Sample, Sampler, WorkerSample};
use super::wire::{
    DisciplineDoc, LatencyDoc, MemberDoc, OrderingDoc, PoolDoc, PoolList, PoolPoint, PoolSeries,
    QueueDoc, RequestList, ServerDoc, Stats, WorkerDoc, WorkerPoint, WorkerSampled, WorkerSeries,
};
use crate::config::model::Backend;
use crate::front::inflight::RequestInfo;
use crate::pool::{HistogramSnapshot, Member, Pool};
use crate::supervisor::{PoolStatus, WorkerStatus};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One pool as `GET /api/v1/pools/{name}` shows it.
pub fn pool_doc(sampler: &Sampler, name: &str, pool: &Arc<Pool>) -> PoolDoc {
    let cfg = sampler.front().config();
    let garden = matches!(
        cfg.pools.get(name).map(|c| &c.backend),
        Some(Backend::Garden(_))
    );
    let s = pool.snapshot();
    let status = sampler.supervisor().and_then(|sup| sup.status(name));
    let (workers, servers) = match garden {
        true => (workers(sampler, pool, status.as_ref()), Vec::new()),
        false => (Vec::new(), servers(pool)),
    };
    let status = status.unwrap_or_default();
    PoolDoc {
        name: name.to_string(),
        kind: if garden { "garden" } else { "farm" }.to_string(),
        state: s.state.as_str().to_string(),
        queue: QueueDoc {
            length: s.queue_length,
            limit: s.queue_limit,
            oldest_seconds: s.queue_oldest_seconds,
            timeout_seconds: pool.queue_timeout().as_secs_f64(),
        },
        discipline: DisciplineDoc {
            queue_discipline: s.discipline.to_string(),
            shedding_seconds: s.shedding_seconds,
            drain_per_second: s.drain_per_second,
            queue_state: s.queue_state.clone(),
        },
        capacity: s.capacity,
        active: s.active,
        members: s.members,
        usable_members: s.usable_members,
        arrivals: s.arrivals,
        completed: s.completed,
        rejected: s
            .rejected
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        rejected_total: pool.counters().rejected_total(),
        latency: latency(sampler, name, pool),
        workers,
        servers,
        last_failures: status.last_failures,
        recycle_history: status.recycle_history,
        worker_starts_total: status.worker_starts_total,
        worker_failures_total: status.worker_failures_total,
        recycles_total: status.recycles_total,
        ordering: ordering(pool),
    }
}

/// The pool's per-key ordering, if it orders.
fn ordering(pool: &Pool) -> Option<OrderingDoc> {
    let key = pool.ordering_key()?;
    let wait = pool.ordered_wait();
    Some(OrderingDoc {
        key: key.to_string(),
        keys: pool.ordered_keys(),
        waiting: pool.ordered_waiting(),
        turns_total: wait.count,
        wait_p99_seconds: wait.interpolated_quantile(0.99),
    })
}

/// Since start, and over the last minute of samples.
fn latency(sampler: &Sampler, name: &str, pool: &Pool) -> LatencyDoc {
    let (p50, p99) = pool.counters().latency_quantiles();
    let live = pool.counters().merged_duration();
    let recent = recent_latency(&sampler.history(), name, &live, now_unix_ms());
    LatencyDoc {
        p50_seconds: p50,
        p99_seconds: p99,
        recent_window_seconds: recent.map(|r| r.0),
        recent_p50_seconds: recent.and_then(|r| r.1),
        recent_p99_seconds: recent.and_then(|r| r.2),
    }
}

/// A garden's workers: the supervisor's table with each built-in worker's own counters,
/// or (no supervisor) the pool's members.
fn workers(sampler: &Sampler, pool: &Pool, status: Option<&PoolStatus>) -> Vec<WorkerDoc> {
    let Some(status) = status else {
        return pool.members().iter().map(|m| member_worker(m)).collect();
    };
    let cached = sampler.workers();
    status
        .workers
        .iter()
        .map(|w| {
            let sampled = w.pid.and_then(|pid| cached.iter().find(|c| c.pid == pid));
            supervised_worker(w, sampled)
        })
        .collect()
}

fn supervised_worker(w: &WorkerStatus, sampled: Option<&WorkerSample>) -> WorkerDoc {
    WorkerDoc {
        id: Some(w.id),
        pid: w.pid,
        uptime_s: w.uptime_s,
        requests: w.requests,
        active: w.active,
        memory_kib: w.memory_kib,
        state: w.state.clone(),
        sampled: sampled.map(|c| WorkerSampled {
            counters: c.counters.clone(),
            cpu_percent: c.cpu_percent,
        }),
    }
}

fn member_worker(m: &Member) -> WorkerDoc {
    WorkerDoc {
        id: None,
        pid: m.pid,
        uptime_s: m.started.elapsed().as_secs_f64(),
        requests: m.served(),
        active: m.active(),
        memory_kib: None,
        state: if m.is_draining() {
            "draining"
        } else {
            "running"
        }
        .to_string(),
        sampled: None,
    }
}

/// A farm's servers as the farm sees them (state, ejections, last check), or the pool's
/// members when no farm manages it.
fn servers(pool: &Pool) -> Vec<ServerDoc> {
    let farm = crate::farm::server_states(pool);
    if !farm.is_empty() {
        return farm.into_iter().map(ServerDoc::Farm).collect();
    }
    pool.members()
        .iter()
        .map(|m| {
            ServerDoc::Member(MemberDoc {
                server: m.label.clone(),
                healthy: m.is_healthy(),
                draining: m.is_draining(),
                backup: m.is_backup(),
                active: m.active(),
                slots: m.slots(),
                weight: m.weight(),
                requests: m.served(),
                failed: m.failed(),
                latency_ewma_ms: m.latency_ewma_us() as f64 / 1000.0,
            })
        })
        .collect()
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
    live: &HistogramSnapshot,
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
        window.interpolated_quantile(0.5),
        window.interpolated_quantile(0.99),
    ))
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `GET /api/v1/pools`.
pub fn pool_list(sampler: &Sampler) -> PoolList {
    let state = sampler.front().state();
    let pools = state
        .pools
        .iter()
        .map(|(n, p)| pool_doc(sampler, n, p))
        .collect();
    PoolList { pools }
}

/// `GET /api/v1/requests` filters.
#[derive(Debug, Default)]
pub struct RequestFilter {
    pub pool: Option<String>,
    pub min_elapsed_ms: u64,
}

pub fn request_list(rows: Vec<RequestInfo>, f: &RequestFilter) -> RequestList {
    let requests: Vec<RequestInfo> = rows
        .into_iter()
        .filter(|r| f.pool.as_ref().is_none_or(|p| &r.pool == p))
        .filter(|r| r.elapsed_ms >= f.min_elapsed_ms)
        .collect();
    RequestList {
        count: requests.len(),
        requests,
    }
}

/// `GET /api/v1/stats[?since=T]`: the sampler's history as per-pool and per-worker
/// series (rates between consecutive samples), the dashboard's one data source. With
/// `since` (a previous answer's `at_unix_ms`) only newer points are sent, so a page that
/// polls every second receives one point per series. `requests` is left empty for the
/// caller to fill.
pub fn stats(history: &[Arc<Sample>], since: Option<u64>) -> Stats {
    let mut pools: BTreeMap<String, Vec<PoolPoint>> = BTreeMap::new();
    // Keyed by the pid as text: the order the dashboard has always received.
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
        let prev = i.checked_sub(1).map(|j| &*history[j]);
        for (name, point) in pool_points(s, prev) {
            pools.entry(name).or_default().push(point);
        }
        for w in &s.workers {
            let series = workers
                .entry(w.pid.to_string())
                .or_insert_with(|| (w.pool.clone(), Vec::new()));
            series.1.push(worker_point(s.at_unix_ms, w));
        }
    }
    series(history.last().map(|s| &**s), pools, workers)
}

/// Each pool's point at sample `s`, its rates against the sample before.
fn pool_points(s: &Sample, prev: Option<&Sample>) -> Vec<(String, PoolPoint)> {
    let secs = prev
        .map(|x| s.at_unix_ms.saturating_sub(x.at_unix_ms) as f64 / 1000.0)
        .unwrap_or(0.0);
    let rate = |now: u64, then: Option<u64>| match then {
        Some(t) if secs > 0.0 => now.saturating_sub(t) as f64 / secs,
        _ => 0.0,
    };
    s.pools
        .iter()
        .map(|p| {
            let before = prev.and_then(|x| x.pool(&p.name));
            let window = match before {
                Some(b) => p.duration.since(&b.duration),
                None => p.duration.clone(),
            };
            let ms = |q: f64| window.interpolated_quantile(q).map(|v| v * 1000.0);
            let point = PoolPoint {
                t: s.at_unix_ms,
                queue: p.queue_length,
                active: p.active,
                capacity: p.capacity,
                arrivals_per_s: rate(p.arrivals, before.map(|b| b.arrivals)),
                rejected_per_s: rate(p.rejected_total(), before.map(|b| b.rejected_total())),
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
            };
            (p.name.clone(), point)
        })
        .collect()
}

/// A worker's thread pools summed, with the gate's queue added to theirs.
fn worker_point(t: u64, w: &WorkerSample) -> WorkerPoint {
    let mut p = WorkerPoint {
        t,
        queued: w.counters.gate.queued,
        cpu_percent: w.cpu_percent,
        ..WorkerPoint::default()
    };
    for tp in w.counters.worker_pools.values() {
        p.threads += tp.threads;
        p.goal += tp.goal;
        p.busy += tp.busy;
        p.max += tp.max;
        p.queued += tp.queued;
        let inj = &tp.injections;
        p.injections += inj.hill_climbing + inj.starvation + inj.blocking;
        p.starvation += inj.starvation;
    }
    p
}

/// The series with each pool's latest state and kind, and whether each worker is alive.
fn series(
    last: Option<&Sample>,
    pools: BTreeMap<String, Vec<PoolPoint>>,
    workers: BTreeMap<String, (String, Vec<WorkerPoint>)>,
) -> Stats {
    let latest = |name: &str| last.and_then(|s| s.pool(name));
    Stats {
        at_unix_ms: last.map(|s| s.at_unix_ms),
        pools: pools
            .into_iter()
            .map(|(name, points)| PoolSeries {
                state: latest(&name).map(|p| p.state.clone()),
                kind: latest(&name).map(|p| p.kind.to_string()),
                name,
                points,
            })
            .collect(),
        workers: workers
            .into_iter()
            .map(|(pid, (pool, points))| {
                let pid = pid.parse::<u32>().unwrap_or(0);
                WorkerSeries {
                    pid,
                    pool,
                    alive: last.is_some_and(|s| s.workers.iter().any(|w| w.pid == pid)),
                    points,
                }
            })
            .collect(),
        requests: Vec::new(),
    }
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
                shedding_seconds: None,
                queue_state: Default::default(),
            }],
            workers: vec![],
            front: Default::default(),
            machine: Default::default(),
        })
    }

    #[test]
    fn stats_are_rates_between_samples() {
        let h = vec![sample(1000, 0, 0, 0), sample(3000, 10, 4, 10)];
        let v = stats(&h, None);
        let pts = &v.pools[0].points;
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[1].arrivals_per_s, 5.0);
        assert_eq!(pts[1].rejected_per_s, 2.0);
        assert_eq!(pts[1].queue, 3);
        // The latency of the requests that finished in that interval (all ~300 ms).
        let p50 = pts[1].p50_ms.unwrap();
        assert!((250.0..=500.0).contains(&p50), "{p50}");
        assert!(pts[0].p50_ms.is_none());
        // Only newer points with `since`.
        let v = stats(&h, Some(1000));
        assert_eq!(v.pools[0].points.len(), 1);
        assert_eq!(v.at_unix_ms, Some(3000));
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
        assert_eq!(request_list(rows.clone(), &f).count, 1);
        assert_eq!(request_list(rows, &RequestFilter::default()).count, 3);
    }
}
