//! Starvation diagnosis (`GET /api/v1/diagnose`, `roost ctl diagnose`): rules over the
//! sampled counters that say *why* a pool's queue grows, after the .NET thread-pool
//! starvation guide and the IIS counters an operator would read (see
//! `shared/reference/iis-and-peers.md` §3.3 and `threadpool.md` §2).
//!
//! The rules are pure functions of a window of [`Sample`]s, so they are unit-tested
//! with synthetic snapshots. Each [`Finding`] carries the numbers it was based on.

use super::sampler::{PoolSample, Sample, ThreadPoolView, WorkerSample};
use crate::front::overload::Snapshot as FrontConns;
use serde::Serialize;
use std::sync::Arc;

/// How far back the rules look.
pub const WINDOW_MS: u64 = 10_000;

/// CPU below this share of the worker's cores counts as "low" (starvation / backend
/// latency look like this; CPU overload does not).
const LOW_CPU: f64 = 0.5;
/// CPU above this share of the cores is "CPU-bound".
const HIGH_CPU: f64 = 0.85;
/// A thread pool is starved when, in every sample of this last stretch, all the threads
/// its goal allows were busy and work waited (a healthy pool adds a thread or drains its
/// queue well within it)...
const STUCK_MS: u64 = 2500;
/// ...and those samples cover at least this much time (with the default one-second
/// sampling that takes three samples: two samples span a jittery ~1 s).
const STUCK_SPAN_MS: u64 = 1500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub pool: String,
    /// A stable identifier of the rule (for scripts and tests).
    pub rule: &'static str,
    pub title: String,
    /// The numbers behind the finding.
    pub evidence: Vec<String>,
    pub advice: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seconds of history the rules looked at.
    pub window_seconds: f64,
    pub samples: usize,
    pub findings: Vec<Finding>,
}

/// Run every rule over the samples of the last [`WINDOW_MS`].
pub fn diagnose(history: &[Arc<Sample>]) -> Report {
    let Some(last) = history.last() else {
        return Report {
            window_seconds: 0.0,
            samples: 0,
            findings: Vec::new(),
        };
    };
    let window: Vec<&Arc<Sample>> = history
        .iter()
        .filter(|s| last.at_unix_ms.saturating_sub(s.at_unix_ms) <= WINDOW_MS)
        .collect();
    let first = window[0];
    let secs = (last.at_unix_ms.saturating_sub(first.at_unix_ms)) as f64 / 1000.0;
    let mut findings = Vec::new();
    for p in &last.pools {
        let before = first.pool(&p.name).unwrap_or(p);
        let ctx = Ctx {
            pool: p,
            before,
            secs,
            window: &window,
            workers: last.workers_of(&p.name).collect(),
            workers_before: first.workers_of(&p.name).collect(),
            peak_queue: window
                .iter()
                .filter_map(|s| s.pool(&p.name))
                .map(|x| x.queue_length)
                .max()
                .unwrap_or(0),
        };
        rules(&ctx, &mut findings);
    }
    findings.extend(connection_pressure(&first.front, &last.front, secs));
    findings.sort_by(|a, b| a.severity.cmp(&b.severity).then(a.pool.cmp(&b.pool)));
    Report {
        window_seconds: secs,
        samples: window.len(),
        findings,
    }
}

struct Ctx<'a> {
    pool: &'a PoolSample,
    before: &'a PoolSample,
    secs: f64,
    window: &'a [&'a Arc<Sample>],
    workers: Vec<&'a WorkerSample>,
    workers_before: Vec<&'a WorkerSample>,
    peak_queue: usize,
}

impl Ctx<'_> {
    fn rejected_delta(&self, reason: &str) -> u64 {
        self.pool
            .rejected(reason)
            .saturating_sub(self.before.rejected(reason))
    }

    /// Requests are piling up in the front's queue.
    fn queue_pressure(&self) -> bool {
        let p = self.pool;
        p.queue_length > 0
            && (p.queue_length >= self.before.queue_length || p.queue_oldest_seconds >= 1.0)
    }

    /// Every thread of `pid`'s pool `tp` that the goal lets run busy, with work queued, in every sample of the
    /// last [`STUCK_MS`] (and the samples span at least [`STUCK_SPAN_MS`]).
    fn stuck(&self, pid: u32, tp: &str) -> bool {
        let Some(last) = self.window.last() else {
            return false;
        };
        let recent: Vec<&ThreadPoolView> = self
            .window
            .iter()
            .filter(|s| last.at_unix_ms.saturating_sub(s.at_unix_ms) <= STUCK_MS)
            .filter_map(|s| s.workers.iter().find(|w| w.pid == pid))
            .filter_map(|w| w.counters.worker_pools.get(tp))
            .collect();
        let span = self
            .window
            .iter()
            .filter(|s| last.at_unix_ms.saturating_sub(s.at_unix_ms) <= STUCK_MS)
            .filter(|s| s.workers.iter().any(|w| w.pid == pid))
            .map(|s| last.at_unix_ms - s.at_unix_ms)
            .max()
            .unwrap_or(0);
        span >= STUCK_SPAN_MS
            && recent.len() >= 2
            && recent
                .iter()
                .all(|t| t.threads > 0 && t.busy >= t.threads.min(t.goal).max(1) && t.queued > 0)
    }

    fn worker_before(&self, pid: u32) -> Option<&WorkerSample> {
        self.workers_before.iter().copied().find(|w| w.pid == pid)
    }

    /// Mean worker CPU as a share of the cores it has (None when unknown).
    fn cpu_share(&self) -> Option<f64> {
        let mut used = 0.0;
        let mut cores = 0.0;
        let mut any = false;
        for w in &self.workers {
            if let Some(c) = w.cpu_percent {
                used += c / 100.0;
                cores += w.counters.cpus.max(1) as f64;
                any = true;
            }
        }
        any.then(|| used / cores.max(1.0))
    }

    fn cpu_text(&self) -> String {
        match self.cpu_share() {
            Some(s) => format!("worker CPU {:.0}% of their cores", s * 100.0),
            None => "worker CPU unknown".to_string(),
        }
    }
}

fn rules(c: &Ctx, out: &mut Vec<Finding>) {
    let p = c.pool;
    let name = p.name.clone();
    let mut push = |severity, rule, title: String, evidence: Vec<String>, advice: &str| {
        out.push(Finding {
            severity,
            pool: name.clone(),
            rule,
            title,
            evidence,
            advice: advice.to_string(),
        })
    };

    // Rapid-fail protection took the pool offline.
    if p.state == "AppOffline" {
        push(
            Severity::Critical,
            "rapid_fail_offline",
            "rapid-fail protection stopped the pool: every request gets 503 AppOffline".into(),
            vec![format!(
                "worker failures so far: {}",
                p.worker_failures_total
            )],
            "look at the pool's last failures (roost ctl pools) and the worker's output, fix \
             the cause, then `roost ctl start POOL`",
        );
        return;
    }
    if p.state == "Stopped" {
        push(
            Severity::Info,
            "stopped",
            "the pool is stopped by an operator (503 Disabled)".into(),
            vec![],
            "`roost ctl start POOL` when it should serve again",
        );
        return;
    }

    let queue_full = c.rejected_delta("QueueFull");
    if queue_full > 0 {
        push(
            Severity::Critical,
            "queue_full",
            format!("queueLength reached: {queue_full} requests refused with 503 QueueFull"),
            vec![
                format!("queue {}/{}", p.queue_length, p.queue_limit),
                format!("{queue_full} QueueFull in the last {:.0} s", c.secs),
            ],
            "the pool cannot keep up: see the other findings for why; raise queueLength only \
             to absorb short bursts",
        );
    }
    let timeouts = c.rejected_delta("QueueTimeout");
    if timeouts > 0 {
        push(
            Severity::Warning,
            "queue_timeout",
            format!("{timeouts} requests waited longer than queueTimeout (503 QueueTimeout)"),
            vec![format!(
                "oldest queued request {:.1} s",
                p.queue_oldest_seconds
            )],
            "requests wait too long for a slot: add capacity or find what holds the slots",
        );
    }

    // Waiting for workers that are not there (spawn-bound, or all members unhealthy).
    if p.queue_length > 0 && p.capacity == 0 {
        push(
            Severity::Critical,
            "no_capacity",
            "requests are queued but no worker or server can take them".into(),
            vec![
                format!("queue {}", p.queue_length),
                format!("members {} (none usable)", p.members),
            ],
            "workers are starting, crashing or unhealthy: check the pool's failures and the \
             farm health checks; a slow startup shows as spawn-bound queues",
        );
    }

    // The worker gate refuses requests (requestQueueLimit).
    let mut gate_rejects = 0;
    for w in &c.workers {
        let before = c.worker_before(w.pid).map(|b| b.counters.gate.rejected);
        gate_rejects += w
            .counters
            .gate
            .rejected
            .saturating_sub(before.unwrap_or(w.counters.gate.rejected));
    }
    let server_too_busy = c.rejected_delta("ServerTooBusy");
    if gate_rejects > 0 || server_too_busy > 0 {
        let limit = c
            .workers
            .first()
            .map(|w| w.counters.gate.request_queue_limit)
            .unwrap_or(0);
        push(
            Severity::Critical,
            "request_queue_limit",
            "requestQueueLimit reached: workers answer 503 ServerTooBusy".into(),
            vec![
                format!(
                    "{} rejected by worker gates",
                    gate_rejects.max(server_too_busy)
                ),
                format!("requestQueueLimit {limit}"),
            ],
            "the workers' own queue is full: let the front queue instead (lower \
             maxConcurrentRequestsPerProcess) or raise requestQueueLimit",
        );
    }

    // The worker's concurrency gate holds requests back while its threads idle (the
    // IIS 7 "12 per CPU" trap): maxConcurrentRequestsPerCPU / maxConcurrentThreadsPerCPU.
    for w in &c.workers {
        let g = &w.counters.gate;
        let req_cap = g.max_executing > 0 && g.executing >= g.max_executing;
        let thr_cap = g.max_executing_threads > 0 && g.executing_threads >= g.max_executing_threads;
        let idle_threads = w
            .counters
            .worker_pools
            .values()
            .all(|t| t.busy < t.threads || t.threads < t.max);
        if g.queued > 0 && (req_cap || thr_cap) && idle_threads {
            let which = if thr_cap {
                format!(
                    "maxConcurrentThreadsPerCPU: {}/{} requests on threads",
                    g.executing_threads, g.max_executing_threads
                )
            } else {
                format!(
                    "maxConcurrentRequestsPerCPU: {}/{} requests executing",
                    g.executing, g.max_executing
                )
            };
            push(
                Severity::Warning,
                "gate_bound",
                format!(
                    "worker {}'s concurrency gate is full while it has room",
                    w.pid
                ),
                vec![which, format!("gate queued {}", g.queued), c.cpu_text()],
                "the per-CPU limits of the worker hold requests back: raise \
                 maxConcurrentRequestsPerCPU / maxConcurrentThreadsPerCPU (0 = off)",
            );
        }
    }

    // Thread-pool findings, per worker.
    let cpu = c.cpu_share();
    let pressure = c.queue_pressure() || c.workers.iter().any(|w| w.counters.gate.queued > 0);
    let mut threadpool_finding = false;
    for w in &c.workers {
        for (tp, t) in &w.counters.worker_pools {
            let at_max = t.max > 0 && t.threads >= t.max && t.busy >= t.max;
            let waiting = t.queued > 0 || w.counters.gate.queued > 0;
            if at_max && (waiting || pressure) {
                threadpool_finding = true;
                push(
                    Severity::Critical,
                    "threadpool_at_max",
                    format!(
                        "worker {} thread pool {tp:?} is at maxWorkerThreads ({}) with work waiting",
                        w.pid, t.max
                    ),
                    vec![
                        format!("threads {}/{} busy {}", t.threads, t.max, t.busy),
                        format!("work items queued {}", t.queued),
                        format!("gate queued {}", w.counters.gate.queued),
                        format!("front queue {}", p.queue_length),
                        c.cpu_text(),
                    ],
                    "raise maxWorkerThreads, or mark blocking calls with the blocking hint \
                     (roost::worker::blocking) / make the handlers async so threads are not \
                     held while they wait",
                );
                continue;
            }
            let tp_before = c
                .worker_before(w.pid)
                .and_then(|b| b.counters.worker_pools.get(tp));
            let starved = t.injections.starvation.saturating_sub(
                tp_before
                    .map(|b| b.injections.starvation)
                    .unwrap_or(t.injections.starvation),
            );
            let threads_before = tp_before.map(|b| b.threads).unwrap_or(t.threads);
            let low_cpu = cpu.map(|s| s < LOW_CPU).unwrap_or(t.cpu_percent < 80);
            // Threads climbing at the starvation rate, or every thread held with work
            // waiting, while the process barely uses the CPU: the handlers block.
            let climbing = starved >= 2 && t.busy >= t.threads.saturating_sub(1);
            if low_cpu && (climbing || c.stuck(w.pid, tp)) {
                threadpool_finding = true;
                let mut evidence = vec![
                    format!(
                        "threads {threads_before} -> {} in {:.0} s (goal {}, max {}), {} busy",
                        t.threads, c.secs, t.goal, t.max, t.busy
                    ),
                    format!("work items queued {}", t.queued),
                    format!(
                        "{starved} starvation injections ({:.1}/s)",
                        starved as f64 / c.secs.max(1.0)
                    ),
                    c.cpu_text(),
                ];
                if t.cpu_percent >= 80 {
                    // .NET's rule, which the worker pool copies: with the machine's CPU at
                    // 80 % or more, starvation injection waits goal x 1 s per thread.
                    evidence.push(format!(
                        "machine CPU {}%: starvation injection slows to one thread per {} s",
                        t.cpu_percent,
                        t.goal.max(1)
                    ));
                }
                push(
                    Severity::Critical,
                    "threadpool_starvation",
                    format!(
                        "synchronous blocking in handlers (thread-pool starvation) in worker {}",
                        w.pid
                    ),
                    evidence,
                    "handlers block their threads while the CPU idles: make them async, or \
                     wrap the blocking calls in roost::worker::blocking so threads are added \
                     at once; raise minWorkerThreads to absorb bursts",
                );
            }
        }
    }

    // All slots busy: is it CPU or something the workers wait on?
    let saturated = p.capacity > 0 && p.active >= p.capacity && (pressure || c.peak_queue > 0);
    if saturated && !threadpool_finding {
        match cpu {
            Some(s) if s >= HIGH_CPU => push(
                Severity::Warning,
                "cpu_bound",
                "CPU-bound: every slot is busy and the workers use the CPU fully".into(),
                vec![
                    format!("active {}/{} slots", p.active, p.capacity),
                    format!("front queue {}", p.queue_length),
                    c.cpu_text(),
                ],
                "more threads or slots will not help: add machines (a farm), make handlers \
                 cheaper, or cache responses",
            ),
            Some(s) if s < LOW_CPU => push(
                Severity::Warning,
                "backend_latency",
                "backend latency, not CPU: every slot is busy while the workers idle".into(),
                vec![
                    format!("active {}/{} slots", p.active, p.capacity),
                    format!("front queue {}", p.queue_length),
                    c.cpu_text(),
                ],
                "requests wait on something slow (a database, a remote call): fix that \
                 dependency, or raise maxConcurrentRequestsPerProcess / maxProcesses if it \
                 can take more concurrent calls",
            ),
            Some(_) => push(
                Severity::Warning,
                "saturated",
                "every slot is busy and requests queue".into(),
                vec![
                    format!("active {}/{} slots", p.active, p.capacity),
                    format!("front queue {}", p.queue_length),
                    c.cpu_text(),
                ],
                "add capacity (maxProcesses, maxConcurrentRequestsPerProcess, farm servers) \
                 or make requests cheaper",
            ),
            None => push(
                Severity::Warning,
                "saturated",
                "every slot is busy and requests queue".into(),
                vec![
                    format!("active {}/{} slots", p.active, p.capacity),
                    format!("front queue {}", p.queue_length),
                    format!("oldest {:.1} s", p.queue_oldest_seconds),
                ],
                "the members are slow or too few: add servers or raise their \
                 maxConcurrentRequests if they can take more",
            ),
        }
    }

    // Workers failing (crash, startup, ping) recently.
    let failed = p
        .worker_failures_total
        .saturating_sub(c.before.worker_failures_total);
    if failed > 0 {
        push(
            Severity::Warning,
            "worker_failures",
            format!("{failed} worker failures in the last {:.0} s", c.secs),
            vec![format!("failures total {}", p.worker_failures_total)],
            "see the pool's last failures; repeated crashes take the pool offline \
             (rapidFailProtection)",
        );
    }
}

/// The front's overload manager acted (it reclaimed or refused connections) or the open
/// connections stand past its high-water mark. Front-wide: the finding's `pool` is
/// `front`.
fn connection_pressure(before: &FrontConns, now: &FrontConns, secs: f64) -> Option<Finding> {
    use crate::front::overload::{ConnState, Refusal};
    let delta = |a: u64, b: u64| b.saturating_sub(a);
    let reclaimed: Vec<u64> = (0..4)
        .map(|i| delta(before.reclaimed[i], now.reclaimed[i]))
        .collect();
    let silent =
        reclaimed[ConnState::Handshake as usize] + reclaimed[ConnState::AwaitingHead as usize];
    let idle = reclaimed[ConnState::Idle as usize];
    let full = delta(
        before.refused[Refusal::MaxConnections as usize],
        now.refused[Refusal::MaxConnections as usize],
    );
    let per_client = delta(
        before.refused[Refusal::PerClient as usize],
        now.refused[Refusal::PerClient as usize],
    );
    let pressured = now.max > 0 && now.open >= now.high_water;
    if silent + idle + full + per_client == 0 && !pressured {
        return None;
    }
    let st = |s: ConnState| now.by_state[s as usize];
    let evidence = vec![
        format!(
            "open connections {} of maxConnections {} (high water {})",
            now.open, now.max, now.high_water
        ),
        format!(
            "now: {} in TLS handshake, {} awaiting a request head, {} active, {} idle",
            st(ConnState::Handshake),
            st(ConnState::AwaitingHead),
            st(ConnState::Active),
            st(ConnState::Idle)
        ),
        format!(
            "last {secs:.0} s: {silent} reclaimed without a request head, {idle} idle reclaimed, \
             {full} refused at maxConnections, {per_client} refused by maxConnectionsPerClient"
        ),
    ];
    let (severity, title, advice) = if full > 0 {
        (
            Severity::Critical,
            format!("{full} connections refused: every open connection had a request in flight"),
            "the front is full of busy connections: raise limits.maxConnections, or add \
             capacity so requests finish sooner",
        )
    } else if silent >= idle && silent + per_client > 0 {
        (
            Severity::Warning,
            format!("connection pressure: {silent} connections that sent no request were closed"),
            "clients open connections and send nothing (a slow or silent client flood): set \
             limits.maxConnectionsPerClient, lower limits.overload.headerWaitTimeout; if the \
             clients are real, raise limits.maxConnections",
        )
    } else {
        (
            Severity::Warning,
            format!(
                "connection pressure: {} of {} connections open, {idle} idle keep-alive \
                 connections closed early",
                now.open, now.max
            ),
            // (also the case of pressure with nothing reclaimed yet)
            "many clients hold idle keep-alive connections: raise limits.maxConnections or \
             lower limits.overload.idleTimeout",
        )
    };
    Some(Finding {
        severity,
        pool: "front".into(),
        rule: "connection_pressure",
        title,
        evidence,
        advice: advice.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::sampler::{GateView, InjectionsView, ThreadPoolView, WorkerCounters};
    use crate::pool::Histogram;
    use std::collections::BTreeMap;

    fn pool(queue: usize, active: usize, capacity: usize) -> PoolSample {
        PoolSample {
            name: "web".into(),
            state: "Started".into(),
            kind: "garden",
            queue_length: queue,
            queue_limit: 1000,
            queue_oldest_seconds: if queue > 0 { 2.0 } else { 0.0 },
            capacity,
            active,
            members: 1,
            arrivals: 0,
            completed: 0,
            rejected: BTreeMap::new(),
            duration: Histogram::default().snapshot(),
            queue_wait: Histogram::default().snapshot(),
            worker_failures_total: 0,
        }
    }

    fn worker(threads: usize, busy: usize, max: usize, starvation: u64, cpu: f64) -> WorkerSample {
        let mut pools = BTreeMap::new();
        pools.insert(
            "default".to_string(),
            ThreadPoolView {
                threads,
                busy,
                queued: 5,
                goal: threads,
                min: 2,
                max,
                injections: InjectionsView {
                    starvation,
                    ..Default::default()
                },
                cpu_percent: 5,
                ..Default::default()
            },
        );
        WorkerSample {
            pool: "web".into(),
            pid: 42,
            counters: WorkerCounters {
                pid: 42,
                cpus: 2,
                worker_pools: pools,
                gate: GateView {
                    request_queue_limit: 5000,
                    ..Default::default()
                },
                ..Default::default()
            },
            cpu_percent: Some(cpu),
        }
    }

    fn sample(at: u64, p: PoolSample, w: Vec<WorkerSample>) -> Arc<Sample> {
        Arc::new(Sample {
            at_unix_ms: at,
            pools: vec![p],
            workers: w,
            front: Default::default(),
        })
    }

    fn rules_of(r: &Report) -> Vec<&'static str> {
        r.findings.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn no_samples_no_findings() {
        assert!(diagnose(&[]).findings.is_empty());
    }

    #[test]
    fn idle_pool_is_healthy() {
        let h = vec![
            sample(0, pool(0, 0, 10), vec![worker(2, 0, 8, 0, 1.0)]),
            sample(5000, pool(0, 0, 10), vec![worker(2, 0, 8, 0, 1.0)]),
        ];
        assert!(diagnose(&h).findings.is_empty(), "{:?}", diagnose(&h));
    }

    #[test]
    fn thread_pool_at_max_with_a_growing_queue() {
        let h = vec![
            sample(0, pool(3, 10, 10), vec![worker(4, 4, 4, 2, 2.0)]),
            sample(5000, pool(9, 10, 10), vec![worker(4, 4, 4, 2, 2.0)]),
        ];
        let r = diagnose(&h);
        assert_eq!(rules_of(&r), vec!["threadpool_at_max"]);
        let f = &r.findings[0];
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.advice.contains("maxWorkerThreads"));
        assert!(f.evidence.iter().any(|e| e.contains("threads 4/4")));
    }

    #[test]
    fn starvation_rate_with_low_cpu() {
        // Threads climb 4 → 9 at the starvation rate, all busy, CPU nearly idle.
        let h = vec![
            sample(0, pool(5, 10, 10), vec![worker(4, 4, 100, 2, 3.0)]),
            sample(2500, pool(8, 10, 10), vec![worker(9, 9, 100, 7, 3.0)]),
        ];
        let r = diagnose(&h);
        assert_eq!(rules_of(&r), vec!["threadpool_starvation"]);
        assert!(r.findings[0].title.contains("synchronous blocking"));
        assert!(r.findings[0].evidence[2].contains("5 starvation injections"));
    }

    #[test]
    fn every_thread_held_with_work_waiting_is_starvation() {
        // Injection stalls (the machine's CPU is busy elsewhere) yet the worker idles.
        let mut w = worker(2, 2, 100, 1, 1.0);
        w.counters
            .worker_pools
            .get_mut("default")
            .unwrap()
            .cpu_percent = 100;
        let h: Vec<Arc<Sample>> = (0..8)
            .map(|i| sample(i * 250, pool(0, 20, 50), vec![w.clone()]))
            .collect();
        let r = diagnose(&h);
        assert_eq!(rules_of(&r), vec!["threadpool_starvation"]);
        assert!(r.findings[0]
            .evidence
            .iter()
            .any(|e| e.contains("machine CPU 100%")));
        // Half a second of it is not enough to call it.
        assert!(diagnose(&h[..3]).findings.is_empty());
        // One-second sampling with jitter: three samples are enough, two are not.
        let at = |ms| sample(ms, pool(0, 20, 50), vec![w.clone()]);
        assert_eq!(
            rules_of(&diagnose(&[at(0), at(998), at(1997)])),
            vec!["threadpool_starvation"]
        );
        assert!(diagnose(&[at(0), at(998)]).findings.is_empty());
    }

    #[test]
    fn starvation_with_busy_cpu_is_not_called_starvation() {
        let h = vec![
            sample(0, pool(5, 10, 10), vec![worker(4, 4, 100, 2, 190.0)]),
            sample(2500, pool(8, 10, 10), vec![worker(9, 9, 100, 7, 190.0)]),
        ];
        let r = diagnose(&h);
        assert_eq!(rules_of(&r), vec!["cpu_bound"]);
    }

    #[test]
    fn all_slots_busy_with_idle_workers_is_backend_latency() {
        let h = vec![
            sample(0, pool(2, 10, 10), vec![worker(3, 0, 100, 0, 2.0)]),
            sample(3000, pool(6, 10, 10), vec![worker(3, 0, 100, 0, 2.0)]),
        ];
        let r = diagnose(&h);
        assert_eq!(rules_of(&r), vec!["backend_latency"]);
        assert!(r.findings[0].title.contains("backend latency, not CPU"));
    }

    #[test]
    fn gate_rejections_mean_request_queue_limit() {
        let mut w0 = worker(2, 0, 100, 0, 2.0);
        let mut w1 = w0.clone();
        w0.counters.gate.rejected = 10;
        w1.counters.gate.rejected = 25;
        let h = vec![
            sample(0, pool(0, 1, 10), vec![w0]),
            sample(3000, pool(0, 1, 10), vec![w1]),
        ];
        let r = diagnose(&h);
        assert_eq!(rules_of(&r), vec!["request_queue_limit"]);
        assert!(r.findings[0].evidence[0].contains("15 rejected"));
    }

    #[test]
    fn a_full_gate_with_idle_threads_is_gate_bound() {
        let mut w = worker(4, 1, 100, 0, 5.0);
        w.counters.worker_pools.get_mut("default").unwrap().queued = 0;
        w.counters.gate = GateView {
            current: 12,
            queued: 10,
            executing: 2,
            executing_threads: 2,
            max_executing: 100,
            max_executing_threads: 2,
            request_queue_limit: 5000,
            ..Default::default()
        };
        let h = vec![
            sample(0, pool(0, 12, 50), vec![w.clone()]),
            sample(2000, pool(0, 12, 50), vec![w]),
        ];
        let r = diagnose(&h);
        assert_eq!(rules_of(&r), vec!["gate_bound"]);
        assert!(r.findings[0].evidence[0].contains("maxConcurrentThreadsPerCPU: 2/2"));
    }

    #[test]
    fn rapid_fail_offline_and_stopped() {
        let mut p = pool(0, 0, 0);
        p.state = "AppOffline".into();
        p.worker_failures_total = 5;
        let r = diagnose(&[sample(0, p.clone(), vec![])]);
        assert_eq!(rules_of(&r), vec!["rapid_fail_offline"]);
        p.state = "Stopped".into();
        let r = diagnose(&[sample(0, p, vec![])]);
        assert_eq!(rules_of(&r), vec!["stopped"]);
        assert_eq!(r.findings[0].severity, Severity::Info);
    }

    #[test]
    fn queue_full_and_no_capacity() {
        let p0 = pool(0, 0, 0);
        let mut p1 = pool(1000, 0, 0);
        p1.rejected.insert("QueueFull".into(), 40);
        let r = diagnose(&[sample(0, p0, vec![]), sample(2000, p1, vec![])]);
        assert_eq!(rules_of(&r), vec!["queue_full", "no_capacity"]);
        assert!(r.findings[0].title.contains("40 requests"));
    }

    #[test]
    fn old_samples_fall_out_of_the_window() {
        let mut p0 = pool(0, 0, 10);
        p0.rejected.insert("QueueFull".into(), 0);
        let mut p1 = pool(0, 0, 10);
        p1.rejected.insert("QueueFull".into(), 7);
        // The rejections happened long before the window: nothing to report now.
        let h = vec![
            sample(0, p0, vec![]),
            sample(1000, p1.clone(), vec![]),
            sample(60_000, p1.clone(), vec![]),
            sample(61_000, p1, vec![]),
        ];
        assert!(diagnose(&h).findings.is_empty());
    }

    fn front(
        open: usize,
        by_state: [usize; 4],
        reclaimed: [u64; 4],
        refused: [u64; 2],
    ) -> FrontConns {
        FrontConns {
            open,
            max: 100,
            high_water: 80,
            by_state,
            reclaimed,
            refused,
        }
    }

    #[test]
    fn reclaimed_silent_connections_are_a_connection_pressure_finding() {
        let at = |ms, f: FrontConns| {
            let mut s = (*sample(ms, pool(0, 0, 10), vec![])).clone();
            s.front = f;
            Arc::new(s)
        };
        // Quiet: nothing reclaimed, below the high-water mark.
        let quiet = [
            at(0, front(10, [0, 2, 3, 5], [0; 4], [0; 2])),
            at(2000, front(10, [0, 2, 3, 5], [0; 4], [0; 2])),
        ];
        assert!(diagnose(&quiet).findings.is_empty());
        // 40 silent connections closed to make room, at the cap.
        let h = [
            at(0, front(100, [0, 95, 5, 0], [0; 4], [0; 2])),
            at(2000, front(100, [0, 95, 5, 0], [1, 39, 0, 0], [0; 2])),
        ];
        let r = diagnose(&h);
        assert_eq!(rules_of(&r), vec!["connection_pressure"]);
        let f = &r.findings[0];
        assert_eq!((f.severity, f.pool.as_str()), (Severity::Warning, "front"));
        assert!(
            f.title.contains("40 connections that sent no request"),
            "{}",
            f.title
        );
        assert!(f.advice.contains("maxConnectionsPerClient"));
        assert!(f.evidence[1].contains("95 awaiting a request head"));
        // Refusals with every connection busy are critical.
        let full = [
            at(0, front(100, [0, 0, 100, 0], [0; 4], [0; 2])),
            at(2000, front(100, [0, 0, 100, 0], [0; 4], [7, 0])),
        ];
        let r = diagnose(&full);
        assert_eq!(r.findings[0].severity, Severity::Critical);
        assert!(r.findings[0].title.contains("7 connections refused"));
    }
}
