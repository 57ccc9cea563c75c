//! The background sampler: once a second it copies every pool's counters, fetches each
//! built-in worker's `/.roost/counters` over its Unix socket and reads the worker's CPU
//! time from `/proc`. The latest worker counters feed `/metrics` (so a scrape never waits
//! on a worker); the last [`HISTORY`] samples feed the dashboard and the diagnosis rules.

use super::cpu::{self, MachineCpu, MachineTicks};
use crate::config::model::{Backend, StartMode};
use crate::front::Front;
use crate::pool::{HistogramSnapshot, Member, Pool};
use crate::supervisor::Supervisor;
use arc_swap::ArcSwap;
use http_body_util::BodyExt;
use parking_lot::Mutex;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Samples kept (one a second: two minutes of charts).
pub const HISTORY: usize = 120;

/// How long a worker may take to answer `/.roost/counters` before the sample goes on
/// without it (its previous counters stay in the cache).
const FETCH_TIMEOUT: Duration = Duration::from_millis(800);

pub use super::sample::*;

/// Every status class merged into one histogram.
pub fn merged_duration(pool: &Pool) -> HistogramSnapshot {
    pool.counters().merged_duration()
}

/// What the configuration says about a pool's start-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartupConfig {
    pub startup_time_limit_seconds: f64,
    pub always_running: bool,
}

/// Every member as the diagnosis sees it (farm servers with their farm state).
fn members_view(pool: &Pool, kind: &str) -> Vec<MemberView> {
    if kind == "farm" {
        let states = crate::farm::server_states(pool);
        if !states.is_empty() {
            return states
                .into_iter()
                .map(|s| MemberView {
                    label: s.server,
                    pid: None,
                    usable: s.usable,
                    state: s.state.to_string(),
                    active: s.active,
                    slots: s.effective_slots,
                    served: s.served,
                    failed: s.failed,
                    ejections: s.ejections,
                    latency_ewma_ms: s.latency_ewma_ms,
                    ejected_for_seconds: s.ejected_for_seconds,
                    failure_streak: s.failure_streak,
                    ejection_threshold: s.ejection_threshold,
                    last_check: s.last_check,
                })
                .collect();
        }
    }
    pool.members()
        .iter()
        .map(|m| MemberView {
            label: m.label.clone(),
            pid: m.pid,
            usable: m.usable(),
            state: if m.is_draining() {
                "draining"
            } else {
                "running"
            }
            .into(),
            active: m.active(),
            slots: m.slots(),
            served: m.served(),
            failed: m.failed(),
            ejections: 0,
            latency_ewma_ms: m.latency_ewma_us() as f64 / 1000.0,
            ..Default::default()
        })
        .collect()
}

pub fn pool_sample(
    pool: &Pool,
    kind: &'static str,
    supervisor: Option<&Supervisor>,
    startup: StartupConfig,
) -> PoolSample {
    let s = pool.snapshot();
    let status = supervisor.and_then(|sup| sup.status(pool.name()));
    let failures = status
        .as_ref()
        .map(|st| st.worker_failures_total.values().sum())
        .unwrap_or(0);
    let ping_failures = status
        .as_ref()
        .and_then(|st| st.worker_failures_total.get("ping").copied())
        .unwrap_or(0);
    let starting_seconds = status
        .as_ref()
        .map(|st| {
            st.workers
                .iter()
                .filter(|w| w.state == "starting")
                .map(|w| w.uptime_s)
                .collect()
        })
        .unwrap_or_default();
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
        ping_failures_total: ping_failures,
        members_view: members_view(pool, kind),
        starting_seconds,
        startup_time_limit_seconds: startup.startup_time_limit_seconds,
        always_running: startup.always_running,
        cpu: None,
        shedding_seconds: s.shedding_seconds,
        queue_state: s.queue_state,
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
    /// The machine's CPU counters at the previous sample.
    machine_ticks: Mutex<Option<MachineTicks>>,
    /// Evidence snapshots of critical findings (`diagnose.snapshotDir`).
    snapshots: super::diagnose::snapshot::Recorder,
}

impl Sampler {
    pub fn new(front: Arc<Front>, supervisor: Option<Arc<Supervisor>>) -> Arc<Sampler> {
        Arc::new(Sampler {
            front,
            supervisor,
            workers: ArcSwap::from_pointee(Vec::new()),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            cpu_ticks: Mutex::new(HashMap::new()),
            machine_ticks: Mutex::new(None),
            snapshots: Default::default(),
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

    /// The evidence snapshots' state (listing, last write error).
    pub fn snapshots(&self) -> &super::diagnose::snapshot::Recorder {
        &self.snapshots
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
                // Re-read every tick: a reload may turn snapshots on, off or elsewhere.
                let cfg = me.front.config().diagnose.clone();
                let front = me.front.clone();
                me.snapshots
                    .observe(&cfg, &me.history(), || front.inflight.list())
                    .await;
            }
        })
    }

    /// Take one sample now (also used by tests to avoid waiting for the timer).
    pub async fn sample_once(&self) -> Arc<Sample> {
        let (mut pools, targets) = self.pool_samples();
        let fetched =
            futures_util::future::join_all(targets.into_iter().map(|(pool, m)| async move {
                let c = fetch_counters(&m).await;
                (pool, m.pid.unwrap_or(0), c)
            }))
            .await;
        let workers = self.worker_samples(fetched);
        for p in &mut pools {
            p.cpu = pool_cpu(workers.iter().filter(|w| w.pool == p.name));
        }
        let sample = Arc::new(Sample {
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            pools,
            workers: workers.clone(),
            front: self.front.connections().snapshot(),
            machine: self.machine_cpu(),
        });
        self.workers.store(Arc::new(workers));
        let mut h = self.history.lock();
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(sample.clone());
        sample
    }

    /// Every pool's counters, and the built-in workers whose counters to fetch.
    fn pool_samples(&self) -> (Vec<PoolSample>, Vec<(String, Arc<Member>)>) {
        let state = self.front.state();
        let mut pools = Vec::new();
        let mut targets: Vec<(String, Arc<Member>)> = Vec::new();
        for (name, pool) in &state.pools {
            let cfg = state.config.pools.get(name);
            let (kind, builtin, limit) = match cfg.map(|c| &c.backend) {
                Some(Backend::Garden(pm)) => {
                    ("garden", pm.command.is_none(), pm.startup_time_limit)
                }
                _ => ("farm", false, Duration::ZERO),
            };
            let startup = StartupConfig {
                startup_time_limit_seconds: limit.as_secs_f64(),
                always_running: cfg.is_some_and(|c| c.start_mode == StartMode::AlwaysRunning),
            };
            pools.push(pool_sample(pool, kind, self.supervisor.as_deref(), startup));
            if builtin {
                for m in pool.members() {
                    if m.pid.is_some() && !m.is_draining() {
                        targets.push((name.clone(), m));
                    }
                }
            }
        }
        (pools, targets)
    }

    /// The fetched counters with each worker's CPU since the previous sample. A worker
    /// that did not answer keeps its last counters and counts one more unanswered sample.
    fn worker_samples(
        &self,
        fetched: Vec<(String, u32, Option<WorkerCounters>)>,
    ) -> Vec<WorkerSample> {
        let previous = self.workers.load_full();
        let mut workers = Vec::new();
        let mut ticks = self.cpu_ticks.lock();
        let mut seen = HashMap::new();
        for (pool, pid, c) in fetched {
            let before = previous.iter().find(|w| w.pid == pid);
            let (counters, unanswered) = match (c, before) {
                (Some(c), _) => (c, 0),
                (None, Some(w)) => (w.counters.clone(), w.unanswered + 1),
                // Never answered yet: nothing to show (it is still coming up).
                (None, None) => continue,
            };
            let now = std::time::Instant::now();
            let stat = process_stat(pid);
            let cpu_percent = stat.as_ref().and_then(|&(t, _)| {
                let pct = ticks.get(&pid).and_then(|(t0, at)| {
                    let secs = now.duration_since(*at).as_secs_f64();
                    (secs > 0.05).then(|| (t.saturating_sub(*t0) as f64 / clk_tck()) / secs * 100.0)
                });
                seen.insert(pid, (t, now));
                pct
            });
            workers.push(WorkerSample {
                pool,
                pid,
                counters,
                cpu_percent,
                unanswered,
                process_state: stat.map(|(_, st)| st),
                runnable_threads: runnable_threads(pid),
            });
        }
        *ticks = seen;
        workers
    }

    fn machine_cpu(&self) -> MachineCpu {
        let now = cpu::machine_ticks();
        let mut prev = self.machine_ticks.lock();
        let busy = match (*prev, now) {
            (Some(a), Some(b)) => cpu::busy_between(a, b),
            _ => None,
        };
        *prev = now;
        MachineCpu {
            busy,
            cores: cpu::online_cores(),
        }
    }
}

/// The workers' CPU against the cores they may use together (`None` before any worker
/// has two samples).
fn pool_cpu<'a>(workers: impl Iterator<Item = &'a WorkerSample>) -> Option<PoolCpu> {
    let mut used = None;
    let mut pids = Vec::new();
    for w in workers {
        pids.push(w.pid);
        if let Some(c) = w.cpu_percent {
            *used.get_or_insert(0.0) += c / 100.0;
        }
    }
    Some(PoolCpu {
        used_cores: used?,
        cores: cpu::cores_for(&pids),
    })
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

/// Worker-pool threads of `pid` in state `R` (running or runnable). The I/O threads
/// (`roost-io`, busy answering this very sample's counters request), the main thread and
/// the pools' gate threads are left out.
fn runnable_threads(pid: u32) -> Option<usize> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let n = tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|s| {
            let (Some(open), Some(close)) = (s.find('('), s.rfind(')')) else {
                return false;
            };
            let name = &s[open + 1..close];
            let pool_thread = !matches!(name, "roost" | "roost-io") && !name.ends_with("-gate");
            pool_thread && s[close + 1..].split_whitespace().next() == Some("R")
        })
        .count();
    Some(n)
}

/// utime + stime of a process, in clock ticks, and its state letter.
fn process_stat(pid: u32) -> Option<(u64, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime is field 14, stime 15.
    let state = f.first()?.chars().next()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_ticks_are_readable() {
        let (_, state) = process_stat(std::process::id()).unwrap();
        // We are running (R) or between two slices (S).
        assert!("RS".contains(state), "{state}");
        // This test's own thread (named after the test) is running while it reads.
        assert!(runnable_threads(std::process::id()).unwrap() >= 1);
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
