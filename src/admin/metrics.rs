//! `GET /metrics`: every metric of DESIGN.md section 4, encoded by prometheus-client.
//!
//! A custom [`Collector`] reads the pools' atomics at scrape time (nothing is copied on
//! the request path) and the worker counters the [`Sampler`] cached in the background,
//! so a scrape never waits on a worker.

use super::sampler::{Sampler, ThreadPoolView, WorkerSample};
use crate::config::model::Backend;
use crate::metrics_text::{labels as l, Family, Labels, Value};
use crate::pool::counters::BUCKETS;
use crate::pool::{HistogramSnapshot, Pool, PoolState};
use crate::supervisor::PoolStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
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
        // Histogram snapshots must outlive the families that borrow them.
        let hists = histograms(&state.pools);
        let mut f = PoolFamilies::new();
        for (name, pool) in &state.pools {
            f.add_pool(name, pool);
            let garden = matches!(
                state.config.pools.get(name).map(|c| &c.backend),
                Some(Backend::Garden(_))
            );
            if garden {
                let status = self.sampler.supervisor().and_then(|sup| sup.status(name));
                f.add_garden(name, status.as_ref());
            } else {
                f.add_farm(name, pool);
            }
        }
        f.add_histograms(&hists);
        f.encode(&mut encoder)?;
        encode_ordering(&state.pools, &mut encoder)?;
        drop(state);
        encode_upstream(&mut encoder)?;
        crate::cache::admin::encode_metrics(&front.state().caches, &mut encoder)?;
        crate::compress::encode_metrics(&mut encoder)?;
        encode_front_connections(&front.connections().snapshot(), &mut encoder)?;
        encode_front_threads(front.threads(), &mut encoder)?;
        encode_workers(&self.sampler, &mut encoder)
    }
}

/// Each pool's queue-wait histogram, its response time by status class, and its queue
/// wait per priority class.
type PoolHistograms = Vec<(
    String,
    HistogramSnapshot,
    [HistogramSnapshot; 5],
    Vec<(String, HistogramSnapshot)>,
)>;

fn histograms(pools: &BTreeMap<String, Arc<Pool>>) -> PoolHistograms {
    pools
        .iter()
        .map(|(name, pool)| {
            let c = pool.counters();
            let by_class = [0, 1, 2, 3, 4].map(|i| c.duration_by_class[i].snapshot());
            let waits = pool.class_waits();
            (name.clone(), c.queue_wait.snapshot(), by_class, waits)
        })
        .collect()
}

/// Worker failure kinds and recycle reasons always listed (0 until they happen).
const FAILURE_KINDS: [&str; 3] = ["crash", "startup", "ping"];
const RECYCLE_REASONS: [&str; 6] = [
    "time",
    "requests",
    "privateMemory",
    "schedule",
    "configChange",
    "manual",
];

/// The pool families of DESIGN.md section 4, encoded in this order.
struct PoolFamilies<'a> {
    queue_length: Family<'a>,
    queue_limit: Family<'a>,
    shedding: Family<'a>,
    shedding_seconds: Family<'a>,
    discipline: Family<'a>,
    sheds: Family<'a>,
    class_length: Family<'a>,
    class_wait: Family<'a>,
    oldest: Family<'a>,
    arrivals: Family<'a>,
    retries: Family<'a>,
    rejected: Family<'a>,
    queue_wait: Family<'a>,
    active: Family<'a>,
    state: Family<'a>,
    workers: Family<'a>,
    starts: Family<'a>,
    failures: Family<'a>,
    recycles: Family<'a>,
    duration: Family<'a>,
    farm_healthy: Family<'a>,
}

/// Name, help and type of each pool family (DESIGN.md section 4).
type Meta = (&'static str, &'static str, MetricType);

const QUEUE_LENGTH: Meta = (
    "pool_queue_length",
    "Requests waiting in the pool's queue (HTTP.sys CurrentQueueSize).",
    MetricType::Gauge,
);

const QUEUE_LIMIT: Meta = (
    "pool_queue_limit",
    "The pool's queueLength.",
    MetricType::Gauge,
);

const SHEDDING: Meta = (
    "pool_queue_shedding",
    "1 while the pool's adaptive queue discipline sheds (its queue stood above the target delay).",
    MetricType::Gauge,
);

const SHEDDING_SECONDS: Meta = (
    "pool_queue_shedding_seconds",
    "How long the adaptive discipline has been shedding (0 while it is not).",
    MetricType::Gauge,
);

const DISCIPLINE: Meta = (
    "pool_queue_discipline",
    "1 for the pool's queueDiscipline (fifo or adaptive).",
    MetricType::Gauge,
);

const SHEDS: Meta = (
    "pool_queue_sheds",
    "Queued requests shed (503/429 Shed), by cause: overload (adaptive cap), stale (waited over twice the target), priority (a higher class took the place), fairness (a sub-queue under its share took the place).",
    MetricType::Counter,
);

const CLASS_LENGTH: Meta = (
    "pool_class_queue_length",
    "Requests waiting in the pool's queue, by priority class.",
    MetricType::Gauge,
);

const CLASS_WAIT: Meta = (
    "pool_class_queue_wait_seconds",
    "Time requests waited in the queue, by priority class.",
    MetricType::Histogram,
);

const OLDEST: Meta = (
    "pool_queue_oldest_seconds",
    "Age of the oldest queued request (MaxQueueItemAge).",
    MetricType::Gauge,
);

const ARRIVALS: Meta = (
    "pool_arrivals",
    "Requests that arrived at the pool (ArrivalRate).",
    MetricType::Counter,
);

const RETRIES: Meta = (
    "pool_retries",
    "Retries of requests on another member (not counted as arrivals).",
    MetricType::Counter,
);

const REJECTED: Meta = (
    "pool_rejected",
    "Requests the pool refused or its members failed to answer, by reason.",
    MetricType::Counter,
);

const QUEUE_WAIT: Meta = (
    "pool_queue_wait_seconds",
    "Time requests waited in the queue.",
    MetricType::Histogram,
);

const ACTIVE: Meta = (
    "pool_active_requests",
    "Requests holding a slot.",
    MetricType::Gauge,
);

const STATE: Meta = (
    "pool_state",
    "1 for the pool's current state.",
    MetricType::Gauge,
);

const WORKERS: Meta = (
    "pool_workers",
    "Members serving the pool (worker processes or farm servers).",
    MetricType::Gauge,
);

const STARTS: Meta = (
    "pool_worker_starts",
    "Worker processes started.",
    MetricType::Counter,
);

const FAILURES: Meta = (
    "pool_worker_failures",
    "Worker failures by kind (crash, startup, ping).",
    MetricType::Counter,
);

const RECYCLES: Meta = (
    "pool_recycles",
    "Worker recycles by reason.",
    MetricType::Counter,
);

const DURATION: Meta = (
    "request_duration_seconds",
    "Whole request time as the client saw it, by status class.",
    MetricType::Histogram,
);

const FARM_HEALTHY: Meta = (
    "farm_server_healthy",
    "1 when a farm server passes its health checks and is not ejected.",
    MetricType::Gauge,
);

impl<'a> PoolFamilies<'a> {
    fn new() -> Self {
        let f = |(name, help, kind): Meta| Family::new(name, help, kind);
        PoolFamilies {
            queue_length: f(QUEUE_LENGTH),
            queue_limit: f(QUEUE_LIMIT),
            shedding: f(SHEDDING),
            shedding_seconds: f(SHEDDING_SECONDS),
            discipline: f(DISCIPLINE),
            sheds: f(SHEDS),
            class_length: f(CLASS_LENGTH),
            class_wait: f(CLASS_WAIT),
            oldest: f(OLDEST),
            arrivals: f(ARRIVALS),
            retries: f(RETRIES),
            rejected: f(REJECTED),
            queue_wait: f(QUEUE_WAIT),
            active: f(ACTIVE),
            state: f(STATE),
            workers: f(WORKERS),
            starts: f(STARTS),
            failures: f(FAILURES),
            recycles: f(RECYCLES),
            duration: f(DURATION),
            farm_healthy: f(FARM_HEALTHY),
        }
    }

    /// Queue, arrivals, refusals, active requests, state and members of one pool.
    fn add_pool(&mut self, name: &str, pool: &Pool) {
        let s = pool.snapshot();
        let c = pool.counters();
        let p = || l(&[("pool", name)]);
        self.queue_length
            .push(p(), Value::Gauge(s.queue_length as i64));
        self.queue_limit
            .push(p(), Value::Gauge(s.queue_limit as i64));
        self.shedding
            .push(p(), Value::Gauge(s.shedding_seconds.is_some() as i64));
        self.add_discipline(name, &s);
        self.oldest.push(p(), Value::GaugeF(s.queue_oldest_seconds));
        self.arrivals.push(p(), Value::Counter(s.arrivals));
        let retries = c.retries.load(Ordering::Relaxed);
        self.retries.push(p(), Value::Counter(retries));
        for r in crate::error::Reason::ALL {
            let labels = l(&[("pool", name), ("reason", r.as_str())]);
            self.rejected.push(labels, Value::Counter(c.rejected(r)));
        }
        self.active.push(p(), Value::Gauge(s.active as i64));
        for st in [
            PoolState::Started,
            PoolState::Stopped,
            PoolState::AppOffline,
        ] {
            let labels = l(&[("pool", name), ("state", st.as_str())]);
            self.state
                .push(labels, Value::Gauge((s.state == st) as i64));
        }
        self.workers.push(p(), Value::Gauge(s.members as i64));
    }

    /// The queue discipline's state, its sheds by cause and its classes' lengths.
    fn add_discipline(&mut self, name: &str, s: &crate::pool::PoolSnapshot) {
        let p = || l(&[("pool", name)]);
        let secs = s.shedding_seconds.unwrap_or(0.0);
        self.shedding_seconds.push(p(), Value::GaugeF(secs));
        for d in ["fifo", "adaptive"] {
            let labels = l(&[("pool", name), ("discipline", d)]);
            self.discipline
                .push(labels, Value::Gauge((s.discipline == d) as i64));
        }
        for (cause, n) in &s.queue_state.sheds {
            let labels = l(&[("pool", name), ("cause", cause)]);
            self.sheds.push(labels, Value::Counter(*n));
        }
        for c in &s.queue_state.classes {
            let labels = l(&[("pool", name), ("class", &c.name)]);
            self.class_length
                .push(labels, Value::Gauge(c.queued as i64));
        }
    }

    /// A garden's worker starts, failures by kind and recycles by reason (the known
    /// kinds and reasons always, others as they appear).
    fn add_garden(&mut self, name: &str, status: Option<&PoolStatus>) {
        let starts = status.map(|s| s.worker_starts_total).unwrap_or(0);
        self.starts
            .push(l(&[("pool", name)]), Value::Counter(starts));
        let empty = BTreeMap::new();
        let failures = status.map_or(&empty, |s| &s.worker_failures_total);
        by_word(&mut self.failures, name, "kind", &FAILURE_KINDS, failures);
        let recycles = status.map_or(&empty, |s| &s.recycles_total);
        by_word(
            &mut self.recycles,
            name,
            "reason",
            &RECYCLE_REASONS,
            recycles,
        );
    }

    /// The farm's own verdict on each server (active checks, passive ejection); members
    /// without farm state (none in practice) fall back to the member flag.
    fn add_farm(&mut self, name: &str, pool: &Pool) {
        let states = crate::farm::server_states(pool);
        if states.is_empty() {
            for m in pool.members() {
                let labels = l(&[("pool", name), ("server", &m.label)]);
                self.farm_healthy
                    .push(labels, Value::Gauge(m.is_healthy() as i64));
            }
        }
        for srv in states {
            let labels = vec![("pool", name.to_string()), ("server", srv.server)];
            self.farm_healthy
                .push(labels, Value::Gauge(srv.healthy as i64));
        }
    }

    fn add_histograms(&mut self, hists: &'a PoolHistograms) {
        for (name, qw, by_class, waits) in hists {
            self.queue_wait.push(l(&[("pool", name)]), histogram(qw));
            for (class, h) in waits {
                let labels = l(&[("pool", name), ("class", class)]);
                self.class_wait.push(labels, histogram(h));
            }
            for (i, h) in by_class.iter().enumerate() {
                let labels = l(&[("pool", name), ("code_class", CLASSES[i])]);
                self.duration.push(labels, histogram(h));
            }
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in [
            &self.queue_length,
            &self.queue_limit,
            &self.shedding,
            &self.shedding_seconds,
            &self.discipline,
            &self.sheds,
            &self.class_length,
            &self.class_wait,
            &self.oldest,
            &self.arrivals,
            &self.retries,
            &self.rejected,
            &self.queue_wait,
            &self.active,
            &self.state,
            &self.workers,
            &self.starts,
            &self.failures,
            &self.recycles,
            &self.duration,
            &self.farm_healthy,
        ] {
            f.encode(encoder)?;
        }
        Ok(())
    }
}

/// One counter per `known` word (0 when absent), then the other words `seen` has.
fn by_word(
    family: &mut Family,
    pool: &str,
    key: &'static str,
    known: &[&str],
    seen: &BTreeMap<String, u64>,
) {
    for word in known {
        let v = seen.get(*word).copied().unwrap_or(0);
        family.push(l(&[("pool", pool), (key, word)]), Value::Counter(v));
    }
    for (word, v) in seen.iter().filter(|(w, _)| !known.contains(&w.as_str())) {
        family.push(
            vec![("pool", pool.to_string()), (key, word.clone())],
            Value::Counter(*v),
        );
    }
}

/// Worker metrics from the sampler's cache, labelled like the worker's own
/// `/.roost/metrics`.
fn encode_workers(
    sampler: &Sampler,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let mut f = WorkerFamilies::new();
    for w in sampler.workers().iter() {
        f.add(w);
    }
    f.encode(encoder)
}

/// The worker families, in the order `/metrics` lists them.
struct WorkerFamilies {
    threads: Family<'static>,
    busy: Family<'static>,
    blocked: Family<'static>,
    current: Family<'static>,
    queued: Family<'static>,
    rejected: Family<'static>,
    injections: Family<'static>,
    completed: Family<'static>,
}

impl WorkerFamilies {
    fn new() -> Self {
        use MetricType::{Counter, Gauge};
        let f = Family::new;
        WorkerFamilies {
            threads: f(
                "worker_threads",
                "Worker process threads by kind (worker pools and the I/O pool).",
                Gauge,
            ),
            busy: f(
                "worker_threads_busy",
                "Worker pool threads running a work item.",
                Gauge,
            ),
            blocked: f(
                "worker_threads_blocked",
                "Busy worker pool threads blocked (source=hinted: inside blocking(); \
                 source=detected: found blocked in the kernel without a hint).",
                Gauge,
            ),
            current: f(
                "worker_requests_current",
                "Requests in the worker, queued and executing (ASP.NET Requests Current).",
                Gauge,
            ),
            queued: f(
                "worker_requests_queued",
                "Requests waiting in the worker's gate.",
                Gauge,
            ),
            rejected: f(
                "worker_requests_rejected",
                "Requests the worker refused at requestQueueLimit (503 ServerTooBusy).",
                Counter,
            ),
            injections: f(
                "worker_thread_injections",
                "Worker thread-count increases by cause.",
                Counter,
            ),
            completed: f(
                "worker_work_items_completed",
                "Work items the worker pools completed.",
                Counter,
            ),
        }
    }

    /// One worker: its I/O threads, each thread pool, its gate.
    fn add(&mut self, w: &WorkerSample) {
        let pid = w.pid.to_string();
        let base = || vec![("pool", w.pool.clone()), ("pid", pid.clone())];
        let c = &w.counters;
        let mut io = base();
        io.push(("kind", "io".into()));
        io.push(("thread_pool", "io".into()));
        self.threads.push(io, Value::Gauge(c.io_threads as i64));
        for (tp, p) in &c.worker_pools {
            let mut with_tp = base();
            with_tp.push(("thread_pool", tp.clone()));
            self.add_thread_pool(with_tp, p);
        }
        self.current
            .push(base(), Value::Gauge(c.gate.current as i64));
        self.queued.push(base(), Value::Gauge(c.gate.queued as i64));
        self.rejected.push(base(), Value::Counter(c.gate.rejected));
    }

    /// One thread pool of a worker (`labels`: pool, pid, thread_pool).
    fn add_thread_pool(&mut self, labels: Labels, p: &ThreadPoolView) {
        let with = |key: &'static str, v: &str| {
            let mut l = labels.clone();
            l.push((key, v.to_string()));
            l
        };
        let mut t = labels.clone();
        t.insert(2, ("kind", "worker".into()));
        self.threads.push(t, Value::Gauge(p.threads as i64));
        self.busy.push(labels.clone(), Value::Gauge(p.busy as i64));
        for (source, v) in [("hinted", p.blocked), ("detected", p.blocked_detected)] {
            self.blocked
                .push(with("source", source), Value::Gauge(v as i64));
        }
        let inj = &p.injections;
        for (reason, v) in [
            ("hill_climbing", inj.hill_climbing),
            ("starvation", inj.starvation),
            ("blocking", inj.blocking),
            ("blocking_detected", inj.blocking_detected),
        ] {
            self.injections
                .push(with("reason", reason), Value::Counter(v));
        }
        self.completed
            .push(labels.clone(), Value::Counter(p.completed));
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in [
            &self.threads,
            &self.busy,
            &self.blocked,
            &self.current,
            &self.queued,
            &self.rejected,
            &self.injections,
            &self.completed,
        ] {
            f.encode(encoder)?;
        }
        Ok(())
    }
}

/// Member connections closed instead of reused, by reason (all members together).
/// `ordering:` pools: keys with work, requests waiting behind their key, and how long
/// they waited (`pool/ordering.rs`). Pools that do not order are not listed.
fn encode_ordering(
    pools: &BTreeMap<String, Arc<Pool>>,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let ordered: Vec<_> = pools
        .iter()
        .filter(|(_, p)| p.ordering_key().is_some())
        .map(|(name, p)| {
            (
                name,
                p.ordered_keys(),
                p.ordered_waiting(),
                p.ordered_wait(),
            )
        })
        .collect();
    let mut keys = Family::new(
        "pool_ordered_keys",
        "Ordering keys with a request waiting or in flight.",
        MetricType::Gauge,
    );
    let mut waiting = Family::new(
        "pool_ordered_waiting",
        "Requests waiting behind an earlier request of their ordering key (counted against queueLength).",
        MetricType::Gauge,
    );
    let mut wait = Family::new(
        "pool_ordered_wait_seconds",
        "Time requests waited behind an earlier request of their ordering key.",
        MetricType::Histogram,
    );
    for (name, k, w, h) in &ordered {
        let p = || l(&[("pool", name.as_str())]);
        keys.push(p(), Value::Gauge(*k as i64));
        waiting.push(p(), Value::Gauge(*w as i64));
        wait.push(p(), histogram(h));
    }
    keys.encode(encoder)?;
    waiting.encode(encoder)?;
    wait.encode(encoder)
}

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

/// Open client connections per front thread (`workers`): how evenly accepting spreads
/// them.
fn encode_front_threads(
    threads: &crate::runtime::Threads,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let mut open = Family::new(
        "front_thread_connections",
        "Open client connections on each front thread.",
        MetricType::Gauge,
    );
    for (i, t) in threads.iter().enumerate() {
        open.push(
            vec![("thread", i.to_string())],
            Value::Gauge(t.open() as i64),
        );
    }
    open.encode(encoder)
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
