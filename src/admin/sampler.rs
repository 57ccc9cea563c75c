//! The background sampler: once a second it copies every pool's counters, fetches each
//! built-in worker's `/.roost/counters` over its Unix socket and reads the worker's CPU
//! time from `/proc`. The latest worker counters feed `/metrics` (so a scrape never waits
//! on a worker); the last [`HISTORY`] samples feed the dashboard and the diagnosis rules.

use crate::config::model::Backend;
use crate::front::Front;
use crate::pool::{HistogramSnapshot, Member, Pool};
use crate::supervisor::Supervisor;
use arc_swap::ArcSwap;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Samples kept (one a second: two minutes of charts).
pub const HISTORY: usize = 120;

/// How long a worker may take to answer `/.roost/counters` before the sample goes on
/// without it (its previous counters stay in the cache).
const FETCH_TIMEOUT: Duration = Duration::from_millis(800);

/// One worker thread pool as `/.roost/counters` reports it (tolerant of missing fields,
/// so an older or newer worker still parses).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ThreadPoolView {
    pub threads: usize,
    pub busy: usize,
    pub idle: usize,
    pub queued: usize,
    pub blocked: usize,
    /// Busy threads the worker's gate thread found blocked in the kernel without a hint.
    pub blocked_detected: usize,
    pub goal: usize,
    pub min: usize,
    pub max: usize,
    pub completed: u64,
    pub injections: InjectionsView,
    /// Machine CPU utilisation the worker's gate thread last saw (percent).
    pub cpu_percent: u32,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct InjectionsView {
    pub hill_climbing: u64,
    pub starvation: u64,
    pub blocking: u64,
    pub blocking_detected: u64,
}

/// The worker's gate (ASP.NET "Requests Current / Queued / Rejected").
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GateView {
    pub current: usize,
    pub queued: usize,
    pub executing: usize,
    pub executing_threads: usize,
    pub rejected: u64,
    pub completed: u64,
    pub disconnected: u64,
    pub request_queue_limit: usize,
    pub max_executing: usize,
    pub max_executing_threads: usize,
}

/// A built-in worker's `/.roost/counters` document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct WorkerCounters {
    pub pid: u32,
    pub app: String,
    pub uptime_seconds: f64,
    pub cpus: usize,
    pub io_threads: usize,
    pub worker_pools: BTreeMap<String, ThreadPoolView>,
    pub gate: GateView,
}

/// One worker at one sample.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerSample {
    pub pool: String,
    pub pid: u32,
    pub counters: WorkerCounters,
    /// CPU the process used since the previous sample, in percent of one core
    /// (200 = two cores busy); `None` on its first sample.
    pub cpu_percent: Option<f64>,
}

/// One pool at one sample: cumulative counters (rates come from two samples).
#[derive(Debug, Clone, Serialize)]
pub struct PoolSample {
    pub name: String,
    pub state: String,
    /// `garden` or `farm`.
    pub kind: &'static str,
    pub queue_length: usize,
    pub queue_limit: usize,
    pub queue_oldest_seconds: f64,
    pub capacity: usize,
    pub active: usize,
    pub members: usize,
    pub arrivals: u64,
    pub completed: u64,
    pub rejected: BTreeMap<String, u64>,
    /// Response time over all status classes.
    pub duration: HistogramSnapshot,
    pub queue_wait: HistogramSnapshot,
    pub worker_failures_total: u64,
}

impl PoolSample {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected.get(reason).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_unix_ms: u64,
    pub pools: Vec<PoolSample>,
    pub workers: Vec<WorkerSample>,
}

impl Sample {
    pub fn pool(&self, name: &str) -> Option<&PoolSample> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub fn workers_of<'a>(&'a self, pool: &'a str) -> impl Iterator<Item = &'a WorkerSample> {
        self.workers.iter().filter(move |w| w.pool == pool)
    }
}

/// Every status class merged into one histogram.
pub fn merged_duration(pool: &Pool) -> HistogramSnapshot {
    let c = pool.counters();
    let mut out: Option<HistogramSnapshot> = None;
    for h in &c.duration_by_class {
        let s = h.snapshot();
        out = Some(match out {
            None => s,
            Some(mut acc) => {
                for (a, b) in acc.counts.iter_mut().zip(&s.counts) {
                    *a += b;
                }
                acc.count += s.count;
                acc.sum_seconds += s.sum_seconds;
                acc
            }
        });
    }
    out.unwrap_or_else(|| crate::pool::Histogram::default().snapshot())
}

pub fn pool_sample(pool: &Pool, kind: &'static str, supervisor: Option<&Supervisor>) -> PoolSample {
    let s = pool.snapshot();
    let failures = supervisor
        .and_then(|sup| sup.status(pool.name()))
        .map(|st| st.worker_failures_total.values().sum())
        .unwrap_or(0);
    PoolSample {
        name: s.name,
        state: s.state.as_str().to_string(),
        kind,
        queue_length: s.queue_length,
        queue_limit: s.queue_limit,
        queue_oldest_seconds: s.queue_oldest_seconds,
        capacity: s.capacity,
        active: s.active,
        members: s.members,
        arrivals: s.arrivals,
        completed: s.completed,
        rejected: s
            .rejected
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        duration: merged_duration(pool),
        queue_wait: pool.counters().queue_wait.snapshot(),
        worker_failures_total: failures,
    }
}

/// Shared by the admin server, the metrics collector and the sampling task.
pub struct Sampler {
    front: Arc<Front>,
    supervisor: Option<Arc<Supervisor>>,
    /// The latest counters of every built-in worker (by pid), for `/metrics`.
    workers: ArcSwap<Vec<WorkerSample>>,
    history: Mutex<VecDeque<Arc<Sample>>>,
    /// CPU ticks per pid at the previous sample.
    cpu_ticks: Mutex<HashMap<u32, (u64, std::time::Instant)>>,
}

impl Sampler {
    pub fn new(front: Arc<Front>, supervisor: Option<Arc<Supervisor>>) -> Arc<Sampler> {
        Arc::new(Sampler {
            front,
            supervisor,
            workers: ArcSwap::from_pointee(Vec::new()),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            cpu_ticks: Mutex::new(HashMap::new()),
        })
    }

    pub fn front(&self) -> &Arc<Front> {
        &self.front
    }

    pub fn supervisor(&self) -> Option<&Arc<Supervisor>> {
        self.supervisor.as_ref()
    }

    /// The cached counters of every built-in worker (refreshed once a second).
    pub fn workers(&self) -> Arc<Vec<WorkerSample>> {
        self.workers.load_full()
    }

    /// The kept samples, oldest first.
    pub fn history(&self) -> Vec<Arc<Sample>> {
        self.history.lock().iter().cloned().collect()
    }

    /// Sample every `interval` until the returned task is aborted.
    pub fn spawn(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.sample_once().await;
            }
        })
    }

    /// Take one sample now (also used by tests to avoid waiting for the timer).
    pub async fn sample_once(&self) -> Arc<Sample> {
        let state = self.front.state();
        let mut pools = Vec::new();
        let mut targets: Vec<(String, Arc<Member>)> = Vec::new();
        for (name, pool) in &state.pools {
            let cfg = state.config.pools.get(name);
            let (kind, builtin) = match cfg.map(|c| &c.backend) {
                Some(Backend::Garden(pm)) => ("garden", pm.command.is_none()),
                _ => ("farm", false),
            };
            pools.push(pool_sample(pool, kind, self.supervisor.as_deref()));
            if builtin {
                for m in pool.members() {
                    if m.pid.is_some() && !m.is_draining() {
                        targets.push((name.clone(), m));
                    }
                }
            }
        }
        drop(state);
        let fetched =
            futures_util::future::join_all(targets.into_iter().map(|(pool, m)| async move {
                let c = fetch_counters(&m).await;
                (pool, m.pid.unwrap_or(0), c)
            }))
            .await;
        let previous = self.workers.load_full();
        let mut workers = Vec::new();
        let mut ticks = self.cpu_ticks.lock();
        let mut seen = HashMap::new();
        for (pool, pid, c) in fetched {
            let counters = match c {
                Some(c) => c,
                // Keep the last known counters of a worker that was slow to answer.
                None => match previous.iter().find(|w| w.pid == pid) {
                    Some(w) => w.counters.clone(),
                    None => continue,
                },
            };
            let now = std::time::Instant::now();
            let cpu_percent = match process_cpu_ticks(pid) {
                Some(t) => {
                    let pct = ticks.get(&pid).and_then(|(t0, at)| {
                        let secs = now.duration_since(*at).as_secs_f64();
                        (secs > 0.05)
                            .then(|| (t.saturating_sub(*t0) as f64 / clk_tck()) / secs * 100.0)
                    });
                    seen.insert(pid, (t, now));
                    pct
                }
                None => None,
            };
            workers.push(WorkerSample {
                pool,
                pid,
                counters,
                cpu_percent,
            });
        }
        *ticks = seen;
        drop(ticks);
        let sample = Arc::new(Sample {
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            pools,
            workers: workers.clone(),
        });
        self.workers.store(Arc::new(workers));
        let mut h = self.history.lock();
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(sample.clone());
        sample
    }
}

/// `GET /.roost/counters` on a built-in worker, bounded by [`FETCH_TIMEOUT`].
pub async fn fetch_counters(m: &Member) -> Option<WorkerCounters> {
    let work = async {
        let req = http::Request::get("/.roost/counters")
            .header(http::header::HOST, "localhost")
            .header(http::header::USER_AGENT, "roost-admin")
            .body(crate::body::empty())
            .ok()?;
        let resp = m.client.send(req).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice::<WorkerCounters>(&bytes).ok()
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .ok()
        .flatten()
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process, in clock ticks.
fn process_cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_ticks_are_readable() {
        assert!(process_cpu_ticks(std::process::id()).is_some());
    }

    #[test]
    fn worker_counters_parse_the_workers_document() {
        let doc = serde_json::json!({
            "pid": 7, "app": "demo", "pool": "web", "worker_id": "1", "uptime_seconds": 1.5,
            "cpus": 2, "io_threads": 2,
            "worker_pools": {"default": {"name": "default", "threads": 3, "busy": 2, "idle": 1,
                "queued": 4, "blocked": 0, "goal": 3, "min": 2, "max": 8, "completed": 10,
                "panicked": 0, "injections": {"hill_climbing": 1, "starvation": 2, "blocking": 0},
                "retirements": 0, "cpu_percent": 12, "last_transition": null}},
            "gate": {"current": 6, "queued": 4, "executing": 2, "executing_threads": 2,
                "rejected": 1, "completed": 10, "disconnected": 0, "request_queue_limit": 5000,
                "max_executing": 10000, "max_executing_threads": 0}
        });
        let c: WorkerCounters = serde_json::from_value(doc).unwrap();
        assert_eq!(c.pid, 7);
        let p = &c.worker_pools["default"];
        assert_eq!((p.threads, p.max, p.injections.starvation), (3, 8, 2));
        assert_eq!((c.gate.queued, c.gate.rejected), (4, 1));
    }
}
