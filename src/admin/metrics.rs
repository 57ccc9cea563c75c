//! `GET /metrics`: every metric of DESIGN.md section 4, encoded by prometheus-client.
//!
//! A custom [`Collector`] reads the pools' atomics at scrape time (nothing is copied on
//! the request path) and the worker counters the [`Sampler`] cached in the background,
//! so a scrape never waits on a worker.

use super::sampler::{merged_duration, Sampler};
use crate::config::model::Backend;
use crate::metrics_text::{labels as l, Family, Value};
use crate::pool::counters::BUCKETS;
use crate::pool::{HistogramSnapshot, PoolState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use crate::metrics_text::CONTENT_TYPE;

/// Reads everything at scrape time.
pub struct RoostCollector {
    sampler: Arc<Sampler>,
}

impl std::fmt::Debug for RoostCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoostCollector")
    }
}

/// The registry behind `/metrics` (prefix `roost_`).
pub fn registry(sampler: Arc<Sampler>) -> Registry {
    let mut r = Registry::with_prefix("roost");
    r.register_collector(Box::new(RoostCollector { sampler }));
    r
}

/// Encode `registry` to text.
pub fn render(registry: &Registry) -> String {
    crate::metrics_text::render(registry, 16 * 1024)
}

/// A pool histogram as a sample.
fn histogram(h: &HistogramSnapshot) -> Value<'_> {
    Value::Histogram {
        bounds: &BUCKETS,
        counts: &h.counts,
        sum_seconds: h.sum_seconds,
        count: h.count,
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Collector for RoostCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let front = self.sampler.front();
        let state = front.state();
        let sup = self.sampler.supervisor();

        let mut queue_length = Family::new(
            "pool_queue_length",
            "Requests waiting in the pool's queue (HTTP.sys CurrentQueueSize).",
            MetricType::Gauge,
        );
        let mut queue_limit = Family::new(
            "pool_queue_limit",
            "The pool's queueLength.",
            MetricType::Gauge,
        );
        let mut oldest = Family::new(
            "pool_queue_oldest_seconds",
            "Age of the oldest queued request (MaxQueueItemAge).",
            MetricType::Gauge,
        );
        let mut arrivals = Family::new(
            "pool_arrivals",
            "Requests that arrived at the pool (ArrivalRate).",
            MetricType::Counter,
        );
        let mut retries = Family::new(
            "pool_retries",
            "Retries of requests on another member (not counted as arrivals).",
            MetricType::Counter,
        );
        let mut rejected = Family::new(
            "pool_rejected",
            "Requests the pool refused or its members failed to answer, by reason.",
            MetricType::Counter,
        );
        let mut queue_wait = Family::new(
            "pool_queue_wait_seconds",
            "Time requests waited in the queue.",
            MetricType::Histogram,
        );
        let mut active = Family::new(
            "pool_active_requests",
            "Requests holding a slot.",
            MetricType::Gauge,
        );
        let mut pstate = Family::new(
            "pool_state",
            "1 for the pool's current state.",
            MetricType::Gauge,
        );
        let mut workers = Family::new(
            "pool_workers",
            "Members serving the pool (worker processes or farm servers).",
            MetricType::Gauge,
        );
        let mut starts = Family::new(
            "pool_worker_starts",
            "Worker processes started.",
            MetricType::Counter,
        );
        let mut failures = Family::new(
            "pool_worker_failures",
            "Worker failures by kind (crash, startup, ping).",
            MetricType::Counter,
        );
        let mut recycles = Family::new(
            "pool_recycles",
            "Worker recycles by reason.",
            MetricType::Counter,
        );
        let mut duration = Family::new(
            "request_duration_seconds",
            "Whole request time as the client saw it, by status class.",
            MetricType::Histogram,
        );
        let mut farm_healthy = Family::new(
            "farm_server_healthy",
            "1 when a farm server passes its health checks and is not ejected.",
            MetricType::Gauge,
        );

        // Histogram snapshots must outlive the families that borrow them.
        let mut hists: Vec<(String, HistogramSnapshot, [HistogramSnapshot; 5])> = Vec::new();
        for (name, pool) in &state.pools {
            let c = pool.counters();
            let by_class = [0, 1, 2, 3, 4].map(|i| c.duration_by_class[i].snapshot());
            hists.push((name.clone(), c.queue_wait.snapshot(), by_class));
        }

        for (name, pool) in &state.pools {
            let s = pool.snapshot();
            let p = || l(&[("pool", name)]);
            queue_length.push(p(), Value::Gauge(s.queue_length as i64));
            queue_limit.push(p(), Value::Gauge(s.queue_limit as i64));
            oldest.push(p(), Value::GaugeF(s.queue_oldest_seconds));
            arrivals.push(p(), Value::Counter(s.arrivals));
            retries.push(
                p(),
                Value::Counter(pool.counters().retries.load(Ordering::Relaxed)),
            );
            for r in crate::error::Reason::ALL {
                rejected.push(
                    l(&[("pool", name), ("reason", r.as_str())]),
                    Value::Counter(pool.counters().rejected(r)),
                );
            }
            active.push(p(), Value::Gauge(s.active as i64));
            for st in [
                PoolState::Started,
                PoolState::Stopped,
                PoolState::AppOffline,
            ] {
                pstate.push(
                    l(&[("pool", name), ("state", st.as_str())]),
                    Value::Gauge((s.state == st) as i64),
                );
            }
            workers.push(p(), Value::Gauge(s.members as i64));
            let status = sup.and_then(|sup| sup.status(name));
            let garden = matches!(
                state.config.pools.get(name).map(|c| &c.backend),
                Some(Backend::Garden(_))
            );
            if garden {
                let st = status.as_ref();
                starts.push(
                    p(),
                    Value::Counter(st.map(|s| s.worker_starts_total).unwrap_or(0)),
                );
                for kind in ["crash", "startup", "ping"] {
                    let v = st
                        .and_then(|s| s.worker_failures_total.get(kind).copied())
                        .unwrap_or(0);
                    failures.push(l(&[("pool", name), ("kind", kind)]), Value::Counter(v));
                }
                if let Some(st) = st {
                    for (kind, v) in &st.worker_failures_total {
                        if !["crash", "startup", "ping"].contains(&kind.as_str()) {
                            failures.push(
                                vec![("pool", name.clone()), ("kind", kind.clone())],
                                Value::Counter(*v),
                            );
                        }
                    }
                }
                let reasons = [
                    "time",
                    "requests",
                    "privateMemory",
                    "schedule",
                    "configChange",
                    "manual",
                ];
                for reason in reasons {
                    let v = st
                        .and_then(|s| s.recycles_total.get(reason).copied())
                        .unwrap_or(0);
                    recycles.push(l(&[("pool", name), ("reason", reason)]), Value::Counter(v));
                }
                if let Some(st) = st {
                    for (reason, v) in &st.recycles_total {
                        if !reasons.contains(&reason.as_str()) {
                            recycles.push(
                                vec![("pool", name.clone()), ("reason", reason.clone())],
                                Value::Counter(*v),
                            );
                        }
                    }
                }
            } else {
                // The farm's own verdict (active checks, passive ejection); members
                // without farm state (none in practice) fall back to the member flag.
                let states = crate::farm::server_states(pool);
                if states.is_empty() {
                    for m in pool.members() {
                        farm_healthy.push(
                            l(&[("pool", name), ("server", &m.label)]),
                            Value::Gauge(m.is_healthy() as i64),
                        );
                    }
                }
                for srv in states {
                    farm_healthy.push(
                        vec![("pool", name.clone()), ("server", srv.server)],
                        Value::Gauge(srv.healthy as i64),
                    );
                }
            }
        }
        for (name, qw, by_class) in &hists {
            queue_wait.push(l(&[("pool", name)]), histogram(qw));
            for (i, h) in by_class.iter().enumerate() {
                duration.push(
                    l(&[("pool", name), ("code_class", CLASSES[i])]),
                    histogram(h),
                );
            }
        }
        for f in [
            &queue_length,
            &queue_limit,
            &oldest,
            &arrivals,
            &retries,
            &rejected,
            &queue_wait,
            &active,
            &pstate,
            &workers,
            &starts,
            &failures,
            &recycles,
            &duration,
            &farm_healthy,
        ] {
            f.encode(&mut encoder)?;
        }
        drop(state);
        encode_upstream(&mut encoder)?;
        crate::cache::admin::encode_metrics(&front.state().caches, &mut encoder)?;
        encode_front_connections(&front.connections().snapshot(), &mut encoder)?;

        encode_workers(&self.sampler, &mut encoder)
    }
}

/// Worker metrics from the sampler's cache, labelled like the worker's own
/// `/.roost/metrics`.
fn encode_workers(
    sampler: &Sampler,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let ws = sampler.workers();
    let mut threads = Family::new(
        "worker_threads",
        "Worker process threads by kind (worker pools and the I/O pool).",
        MetricType::Gauge,
    );
    let mut busy = Family::new(
        "worker_threads_busy",
        "Worker pool threads running a work item.",
        MetricType::Gauge,
    );
    let mut blocked = Family::new(
        "worker_threads_blocked",
        "Busy worker pool threads blocked (source=hinted: inside blocking(); \
         source=detected: found blocked in the kernel without a hint).",
        MetricType::Gauge,
    );
    let mut current = Family::new(
        "worker_requests_current",
        "Requests in the worker, queued and executing (ASP.NET Requests Current).",
        MetricType::Gauge,
    );
    let mut queued = Family::new(
        "worker_requests_queued",
        "Requests waiting in the worker's gate.",
        MetricType::Gauge,
    );
    let mut wrejected = Family::new(
        "worker_requests_rejected",
        "Requests the worker refused at requestQueueLimit (503 ServerTooBusy).",
        MetricType::Counter,
    );
    let mut injections = Family::new(
        "worker_thread_injections",
        "Worker thread-count increases by cause.",
        MetricType::Counter,
    );
    let mut completed = Family::new(
        "worker_work_items_completed",
        "Work items the worker pools completed.",
        MetricType::Counter,
    );
    for w in ws.iter() {
        let pid = w.pid.to_string();
        let base = || vec![("pool", w.pool.clone()), ("pid", pid.clone())];
        let c = &w.counters;
        let mut io = base();
        io.push(("kind", "io".into()));
        io.push(("thread_pool", "io".into()));
        threads.push(io, Value::Gauge(c.io_threads as i64));
        for (tp, p) in &c.worker_pools {
            let with_tp = || {
                let mut v = base();
                v.push(("thread_pool", tp.clone()));
                v
            };
            let mut t = base();
            t.push(("kind", "worker".into()));
            t.push(("thread_pool", tp.clone()));
            threads.push(t, Value::Gauge(p.threads as i64));
            busy.push(with_tp(), Value::Gauge(p.busy as i64));
            for (source, v) in [("hinted", p.blocked), ("detected", p.blocked_detected)] {
                let mut lab = with_tp();
                lab.push(("source", source.into()));
                blocked.push(lab, Value::Gauge(v as i64));
            }
            for (reason, v) in [
                ("hill_climbing", p.injections.hill_climbing),
                ("starvation", p.injections.starvation),
                ("blocking", p.injections.blocking),
                ("blocking_detected", p.injections.blocking_detected),
            ] {
                let mut lab = with_tp();
                lab.push(("reason", reason.into()));
                injections.push(lab, Value::Counter(v));
            }
            completed.push(with_tp(), Value::Counter(p.completed));
        }
        current.push(base(), Value::Gauge(c.gate.current as i64));
        queued.push(base(), Value::Gauge(c.gate.queued as i64));
        wrejected.push(base(), Value::Counter(c.gate.rejected));
    }
    for f in [
        &threads,
        &busy,
        &blocked,
        &current,
        &queued,
        &wrejected,
        &injections,
        &completed,
    ] {
        f.encode(encoder)?;
    }
    Ok(())
}

/// Member connections closed instead of reused, by reason (all members together).
fn encode_upstream(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let mut discarded = Family::new(
        "upstream_connections_discarded",
        "Pooled member connections closed instead of reused, by reason.",
        MetricType::Counter,
    );
    for why in crate::upstream::Discard::ALL {
        discarded.push(
            vec![("reason", why.as_str().to_string())],
            Value::Counter(why.count()),
        );
    }
    discarded.encode(encoder)?;
    let mut retries = Family::new(
        "upstream_retries",
        "Requests sent again by the member client itself, by kind (after_send: written on a pooled connection the member closed unanswered).",
        MetricType::Counter,
    );
    let r = crate::upstream::Retry::AfterSend;
    retries.push(
        vec![("kind", r.as_str().to_string())],
        Value::Counter(r.count()),
    );
    retries.encode(encoder)
}

/// The front's open connections by state, and what the overload manager did.
fn encode_front_connections(
    s: &crate::front::overload::Snapshot,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    use crate::front::overload::{ConnState, Refusal};
    let mut by_state = Family::new(
        "front_connections",
        "Open client connections by state (handshake, awaiting_head, active, idle).",
        MetricType::Gauge,
    );
    let mut reclaimed = Family::new(
        "front_connections_reclaimed",
        "Connections the overload manager closed to make room, by the state they were in.",
        MetricType::Counter,
    );
    let mut refused = Family::new(
        "front_connections_refused",
        "Connections closed at accept: max_connections (every open one busy) or per_client.",
        MetricType::Counter,
    );
    let mut limit = Family::new(
        "front_connections_limit",
        "maxConnections (kind=max) and the overload high-water mark (kind=high_water).",
        MetricType::Gauge,
    );
    for st in ConnState::ALL {
        let i = st as usize;
        by_state.push(
            l(&[("state", st.as_str())]),
            Value::Gauge(s.by_state[i] as i64),
        );
        if st != ConnState::Active {
            reclaimed.push(
                l(&[("reason", st.as_str())]),
                Value::Counter(s.reclaimed[i]),
            );
        }
    }
    for r in Refusal::ALL {
        refused.push(
            l(&[("reason", r.as_str())]),
            Value::Counter(s.refused[r as usize]),
        );
    }
    limit.push(l(&[("kind", "max")]), Value::Gauge(s.max as i64));
    limit.push(
        l(&[("kind", "high_water")]),
        Value::Gauge(s.high_water as i64),
    );
    for f in [&by_state, &reclaimed, &refused, &limit] {
        f.encode(encoder)?;
    }
    Ok(())
}

/// p50/p99 of a pool's response time over its lifetime (for the API and `roost ctl`).
pub fn latency_quantiles(pool: &crate::pool::Pool) -> (Option<f64>, Option<f64>) {
    let h = merged_duration(pool);
    (
        super::api::interpolated_quantile(&h, 0.5),
        super::api::interpolated_quantile(&h, 0.99),
    )
}
