//! Diagnosis (`GET /api/v1/diagnose`, `roost ctl diagnose`): why a pool's requests wait,
//! as one root cause per pool with the numbers behind it, after the .NET thread-pool rules
//! (`shared/reference/threadpool.md`) and the IIS counters an operator would read.
//!
//! The causes are tried in a fixed order, a decision tree; the first that holds is the
//! pool's finding, and the symptoms it explains (queue full, every slot busy, 503s from
//! the workers' gates) are added to its evidence instead of standing beside it:
//!
//! 1. the pool is offline (rapid-fail) or stopped — nothing else matters;
//! 2. workers still starting while requests wait → start-up;
//! 3. a worker does not answer its counters, stopped, or makes no progress → hung worker;
//! 4. the CPU the workers may use (or the machine's) near saturation → CPU, never starvation;
//! 5. worker threads at `maxWorkerThreads` with work queued → max threads;
//! 6. threads below max, work queued, starvation injections, low CPU → starvation;
//! 7. the worker gate full while threads idle → the gate;
//! 8. farm servers ejected or failing checks → server down;
//! 9. members idle and slow to answer → backend latency (a slow farm server by name);
//! 10. workers crashing → worker failures.
//!
//! Without a cause, the symptoms are reported on their own (the adaptive queue's shedding,
//! with the numbers that switched it on, is one: `diagnose/shedding.rs`). The rules are pure functions
//! of a window of [`Sample`]s, unit-tested with synthetic samples in `diagnose/tests.rs`
//! and end to end in `tests/diagnose.rs`.

mod front;
mod shedding;
pub mod snapshot;
mod view;

use super::sampler::{MemberView, Sample, WorkerSample};
use serde::Serialize;
use std::sync::Arc;
use view::{busy_route_lines, needed_threads, top_route, CpuView, Ctx};

/// How far back the rules look.
pub const WINDOW_MS: u64 = 10_000;

/// The workers' CPU at or above this share of their cores is saturated...
const HIGH_CPU: f64 = 0.85;
/// ...and so is a machine this busy when the pool's workers take at least
/// [`CPU_CONSUMER`] of their cores or [`THREAD_COMPUTES`] per busy thread: on a shared
/// machine the pool's own share stays low while the machine is at 100 %, yet its threads
/// want the CPU; a pool whose threads barely use it waits on something else.
const MACHINE_BUSY: f64 = 0.90;
const CPU_CONSUMER: f64 = 0.35;
/// ...or when its busy threads each get at least this share of a core (threads that block
/// use next to none; threads that compute get their slice of a crowded machine).
const THREAD_COMPUTES: f64 = 0.1;
/// ...or when at least this share of its busy threads is runnable (state R: computing or
/// waiting for a core) rather than asleep.
const RUNNABLE: f64 = 0.5;
/// Below this share of their cores the workers "idle" (blocking, waiting on a backend).
const LOW_CPU: f64 = 0.5;
/// A farm server this much slower than the pool's other servers is "the slow one".
const SLOW_FACTOR: f64 = 4.0;
/// Completed requests frozen for this long while some execute: no progress.
const NO_PROGRESS_MS: u64 = 8000;

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
    /// A stable identifier of the cause (for scripts and tests).
    pub rule: &'static str,
    pub title: String,
    /// The numbers behind the finding (the symptoms it explains come last).
    pub evidence: Vec<String>,
    pub advice: String,
    /// The symptoms this cause explains: `queue_full`, `queue_timeout`,
    /// `request_queue_limit`, `saturated`.
    pub symptoms: Vec<&'static str>,
}

impl Finding {
    fn new(severity: Severity, rule: &'static str, title: String, evidence: Vec<String>) -> Self {
        Finding {
            severity,
            pool: String::new(),
            rule,
            title,
            evidence,
            advice: String::new(),
            symptoms: Vec::new(),
        }
    }

    fn advice(mut self, a: impl Into<String>) -> Self {
        self.advice = a.into();
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seconds of history the rules looked at.
    pub window_seconds: f64,
    pub samples: usize,
    pub findings: Vec<Finding>,
}

/// Run the decision tree for every pool over the samples of the last [`WINDOW_MS`].
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
    let secs = last.at_unix_ms.saturating_sub(window[0].at_unix_ms) as f64 / 1000.0;
    let mut findings = Vec::new();
    for p in &last.pools {
        let ctx = Ctx {
            pool: p,
            before: window[0].pool(&p.name).unwrap_or(p),
            secs,
            window: &window,
        };
        if let Some(mut f) = diagnose_pool(&ctx) {
            f.pool = p.name.clone();
            findings.push(f);
        }
    }
    findings.extend(front::connection_pressure(
        &window[0].front,
        &last.front,
        secs,
    ));
    findings.sort_by(|a, b| a.severity.cmp(&b.severity).then(a.pool.cmp(&b.pool)));
    Report {
        window_seconds: secs,
        samples: window.len(),
        findings,
    }
}

type Rule = fn(&Ctx) -> Option<Finding>;

/// The causes in the order they are tried (see the module docs).
const CAUSES: [Rule; 10] = [
    startup,
    no_capacity,
    hung_worker,
    cpu_bound,
    threadpool_at_max,
    threadpool_starvation,
    gate_bound,
    server_down,
    backend_latency,
    worker_failures,
];

/// The pool's one finding: its state, else the first cause that holds (with the
/// symptoms it explains), else the symptoms alone.
fn diagnose_pool(c: &Ctx) -> Option<Finding> {
    if let Some(f) = pool_state(c) {
        return Some(f);
    }
    let symptoms = symptoms(c);
    match CAUSES.iter().find_map(|rule| rule(c)) {
        Some(mut f) => {
            for s in symptoms {
                if s.refuses {
                    f.severity = Severity::Critical;
                }
                f.symptoms.push(s.rule);
                f.evidence.push(s.evidence);
            }
            Some(f)
        }
        None => unexplained(c, symptoms),
    }
}

fn pool_state(c: &Ctx) -> Option<Finding> {
    let p = c.pool;
    match p.state.as_str() {
        "AppOffline" => Some(
            Finding::new(
                Severity::Critical,
                "rapid_fail_offline",
                "rapid-fail protection stopped the pool: every request gets 503 AppOffline".into(),
                vec![format!(
                    "worker failures so far: {}",
                    p.worker_failures_total
                )],
            )
            .advice(
                "look at the pool's last failures (roost ctl pools) and the worker's output, \
                 fix the cause, then `roost ctl start POOL`",
            ),
        ),
        "Stopped" => Some(
            Finding::new(
                Severity::Info,
                "stopped",
                "the pool is stopped by an operator (503 Disabled)".into(),
                vec![format!(
                    "{} requests refused with 503 Disabled in the last {:.0} s",
                    c.rejected_delta("Disabled"),
                    c.secs
                )],
            )
            .advice("`roost ctl start POOL` when it should serve again"),
        ),
        _ => None,
    }
}

/// A symptom: what the operator sees, explained by a cause.
struct Symptom {
    rule: &'static str,
    evidence: String,
    /// Requests are being refused (makes the finding critical).
    refuses: bool,
}

fn symptoms(c: &Ctx) -> Vec<Symptom> {
    let p = c.pool;
    let mut out: Vec<Symptom> = shedding::symptom(c).into_iter().collect();
    let full = c.rejected_delta("QueueFull");
    if full > 0 {
        out.push(Symptom {
            rule: "queue_full",
            evidence: format!(
                "symptom: queueLength reached, {full} requests refused with 503 QueueFull in \
                 {:.0} s (queue {}/{})",
                c.secs, p.queue_length, p.queue_limit
            ),
            refuses: true,
        });
    }
    let timeouts = c.rejected_delta("QueueTimeout");
    if timeouts > 0 {
        out.push(Symptom {
            rule: "queue_timeout",
            evidence: format!(
                "symptom: {timeouts} requests waited longer than queueTimeout (503 \
                 QueueTimeout); oldest queued {:.1} s",
                p.queue_oldest_seconds
            ),
            refuses: true,
        });
    }
    let gate = c
        .gate_rejected_delta()
        .max(c.rejected_delta("ServerTooBusy"));
    if gate > 0 {
        let limit = c
            .workers()
            .map(|w| w.counters.gate.request_queue_limit)
            .next();
        out.push(Symptom {
            rule: "request_queue_limit",
            evidence: format!(
                "symptom: {gate} requests refused by the workers' gates (503 ServerTooBusy, \
                 requestQueueLimit {})",
                limit.unwrap_or(0)
            ),
            refuses: true,
        });
    }
    if c.majority(|s| c.saturated_in(s)) && c.pressure() {
        out.push(Symptom {
            rule: "saturated",
            evidence: format!(
                "symptom: every slot busy ({}/{}) with {} requests queued in the front",
                p.active, p.capacity, p.queue_length
            ),
            refuses: false,
        });
    }
    out
}

/// Symptoms without an identified cause: still worth saying.
fn unexplained(c: &Ctx, symptoms: Vec<Symptom>) -> Option<Finding> {
    let first = symptoms.first()?;
    let refuses = symptoms.iter().any(|s| s.refuses);
    let (title, advice) = match first.rule {
        "shedding" => (
            "the queue sheds: requests wait longer than the target at this load",
            "the pool cannot keep up: add capacity (maxProcesses, farm servers) or make \
             requests cheaper; shedding keeps the served requests fast meanwhile",
        ),
        "request_queue_limit" => (
            "requestQueueLimit reached: workers answer 503 ServerTooBusy",
            "the workers' own queue is full: let the front queue instead (lower \
             maxConcurrentRequestsPerProcess) or raise requestQueueLimit",
        ),
        "saturated" => (
            "every slot is busy and requests queue",
            "add capacity (maxProcesses, maxConcurrentRequestsPerProcess, farm servers) or \
             make requests cheaper",
        ),
        _ => (
            "the pool refuses requests and no single cause stands out",
            "the pool cannot keep up: add capacity or make requests cheaper; raise \
             queueLength only to absorb short bursts",
        ),
    };
    let mut f = Finding::new(
        if refuses {
            Severity::Critical
        } else {
            Severity::Warning
        },
        first.rule,
        title.into(),
        vec![c.cpu().text()],
    )
    .advice(advice);
    for s in symptoms {
        f.symptoms.push(s.rule);
        f.evidence.push(s.evidence);
    }
    Some(f)
}

/// Workers still starting while requests wait for them.
fn startup(c: &Ctx) -> Option<Finding> {
    let p = c.pool;
    let waiting = p.queue_length > 0 || c.rejected_delta("QueueFull") > 0;
    let longest = p
        .starting_seconds
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))))?;
    if !waiting {
        return None;
    }
    let usable = p.members_view.iter().filter(|m| m.usable).count();
    let mut evidence = vec![
        format!(
            "{} worker(s) starting, the oldest for {longest:.1} s of startupTimeLimit {:.0} s",
            p.starting_seconds.len(),
            p.startup_time_limit_seconds
        ),
        format!(
            "{} requests queued (oldest {:.1} s); {usable} ready worker(s), {} slots",
            p.queue_length, p.queue_oldest_seconds, p.capacity
        ),
    ];
    if !p.always_running {
        evidence.push("startMode onDemand: the first request starts the workers".into());
    }
    Some(
        Finding::new(
            Severity::Warning,
            "startup",
            format!("requests wait for workers still starting ({longest:.1} s so far)"),
            evidence,
        )
        .advice(
            "start workers before traffic needs them: startMode: alwaysRunning starts them \
             with the pool, initializationPages warm a new worker up before it gets \
             requests, and overlapped recycling (disallowOverlappingRotation: false) keeps \
             the old worker serving while its replacement starts; make the app's start-up \
             cheaper, or raise startupTimeLimit if it is legitimately slow",
        ),
    )
}

/// Requests queued and no member to take them (none starting either).
fn no_capacity(c: &Ctx) -> Option<Finding> {
    let p = c.pool;
    if p.queue_length == 0 || p.capacity > 0 || p.kind == "farm" && server_down(c).is_some() {
        return None;
    }
    Some(
        Finding::new(
            Severity::Critical,
            "no_capacity",
            "requests are queued but no worker or server can take them".into(),
            vec![
                format!(
                    "queue {} (oldest {:.1} s)",
                    p.queue_length, p.queue_oldest_seconds
                ),
                format!("members {} (none usable)", p.members),
            ],
        )
        .advice(
            "workers are crashing or servers unhealthy: check the pool's failures and the \
             farm health checks",
        ),
    )
}

/// A worker that answers nothing, is stopped, or finishes nothing.
fn hung_worker(c: &Ctx) -> Option<Finding> {
    let pings = c
        .pool
        .ping_failures_total
        .saturating_sub(c.before.ping_failures_total);
    let w = c
        .workers()
        .filter(|w| w.unanswered >= 2 || (w.unanswered >= 1 && w.process_state == Some('T')))
        .max_by_key(|w| w.unanswered);
    if let Some(w) = w {
        return Some(unanswering(c, w));
    }
    if let Some((w, stuck_s)) = c.workers().find_map(|w| no_progress(c, w).map(|s| (w, s))) {
        let g = &w.counters.gate;
        let mut evidence = vec![format!(
            "worker {}: {} requests executing, none completed for {stuck_s:.0} s (completed \
             stays {})",
            w.pid, g.executing, g.completed
        )];
        evidence.extend(busy_route_lines(&w.counters.busy_routes, busy_threads(w)));
        return Some(hung(w.pid, "finishes no request", evidence));
    }
    (pings > 0).then(|| {
        hung(
            0,
            "stopped answering pings and was replaced",
            vec![format!(
                "{pings} worker(s) killed for not answering /.roost/ping within \
                 pingResponseTime in the last {:.0} s",
                c.secs
            )],
        )
    })
}

fn unanswering(c: &Ctx, w: &WorkerSample) -> Finding {
    let g = &w.counters.gate;
    let mut evidence = vec![format!(
        "worker {}: /.roost/counters unanswered in the last {} samples (timeout 800 ms each)",
        w.pid, w.unanswered
    )];
    match w.process_state {
        Some('T') | Some('t') => evidence.push(format!(
            "process state T: stopped by a signal or a debugger (kill -CONT {})",
            w.pid
        )),
        Some(s) => evidence.push(format!("process state {s}")),
        None => evidence.push("process gone".into()),
    }
    evidence.push(format!(
        "when last seen: {} requests executing, {} queued in its gate, {} completed",
        g.executing, g.queued, g.completed
    ));
    evidence.extend(busy_route_lines(&w.counters.busy_routes, busy_threads(w)));
    let pool_waits = c.pool.queue_length;
    if pool_waits > 0 {
        evidence.push(format!("{pool_waits} requests queued in the front"));
    }
    hung(w.pid, "does not answer", evidence)
}

fn hung(pid: u32, what: &str, evidence: Vec<String>) -> Finding {
    let who = if pid > 0 {
        format!("worker {pid}")
    } else {
        "a worker".into()
    };
    Finding::new(
        Severity::Critical,
        "hung_worker",
        format!("hung worker: {who} {what}"),
        evidence,
    )
    .advice(
        "take a stack dump of the worker (gdb -p PID, eu-stack -p PID) to see where its \
         threads wait; with pinging enabled the supervisor replaces a worker that misses \
         pingResponseTime (lower pingInterval/pingResponseTime to replace it sooner); a \
         worker stopped by SIGSTOP or a debugger resumes with kill -CONT",
    )
}

/// Requests execute but the completed count has not moved for [`NO_PROGRESS_MS`]: for
/// how many seconds.
fn no_progress(c: &Ctx, w: &WorkerSample) -> Option<f64> {
    let last = c.last().at_unix_ms;
    let first_same = c
        .window
        .iter()
        .filter_map(|s| s.workers.iter().find(|x| x.pid == w.pid).map(|x| (s, x)))
        .find(|(_, x)| x.unanswered == 0 && x.counters.gate.completed == w.counters.gate.completed);
    let (since, _) = first_same?;
    let stuck_ms = last.saturating_sub(since.at_unix_ms);
    (w.unanswered == 0 && w.counters.gate.executing > 0 && stuck_ms >= NO_PROGRESS_MS)
        .then_some(stuck_ms as f64 / 1000.0)
}

fn busy_threads(w: &WorkerSample) -> usize {
    w.counters.worker_pools.values().map(|t| t.busy).sum()
}

/// The workers' CPU (or the machine's, with the pool a big consumer) is nearly all used.
fn cpu_saturated(cpu: &CpuView) -> bool {
    let Some(pool) = cpu.pool else {
        return false;
    };
    let hungry = pool.share() >= CPU_CONSUMER
        || cpu.per_busy_thread().is_some_and(|c| c >= THREAD_COMPUTES)
        || cpu.runnable_share().is_some_and(|r| r >= RUNNABLE);
    pool.share() >= HIGH_CPU || cpu.machine.is_some_and(|m| m >= MACHINE_BUSY) && hungry
}

fn cpu_bound(c: &Ctx) -> Option<Finding> {
    let cpu = c.cpu();
    if !cpu_saturated(&cpu) || !c.pressure() {
        return None;
    }
    let mut evidence = vec![cpu.text()];
    let (threads, busy, queued) = c.workers().fold((0, 0, 0), |acc, w| {
        w.counters.worker_pools.values().fold(acc, |(a, b, q), t| {
            (
                a + t.threads,
                b + t.busy,
                q + t.queued + w.counters.gate.queued,
            )
        })
    });
    evidence.push(format!(
        "worker threads {threads}, {busy} busy, {queued} work items waiting"
    ));
    for w in c.workers() {
        evidence.extend(busy_route_lines(&w.counters.busy_routes, busy_threads(w)));
    }
    let title = match cpu.pool_share() {
        Some(s) if s >= HIGH_CPU => format!(
            "CPU-bound: the workers use {:.0}% of the cores they may run on",
            s * 100.0
        ),
        _ => "CPU-bound: the machine's CPU is saturated and the workers are among its users"
            .to_string(),
    };
    Some(
        Finding::new(Severity::Warning, "cpu_bound", title, evidence).advice(
            "more threads will not help a CPU-bound pool (the thread pool stops adding \
             threads above 95 % CPU; raising minWorkerThreads only adds context switches): \
             make the handlers cheaper, cache responses, or add cores or farm servers; if \
             other processes take the CPU, move them or give the workers their own cores \
             (affinity, cgroup cpu.max)",
        ),
    )
}

/// Worker threads at `maxWorkerThreads` with work waiting for one.
fn threadpool_at_max(c: &Ctx) -> Option<Finding> {
    for w in c.workers() {
        for (name, t) in &w.counters.worker_pools {
            let at_max = c.tp_majority(w.pid, name, |t| {
                t.max > 0 && (t.threads >= t.max || t.goal >= t.max) && t.queued > 0
            });
            if !at_max {
                continue;
            }
            let mut evidence = vec![
                format!(
                    "worker {} pool {name:?}: threads {}/{} (maxWorkerThreads), goal {}, {} busy",
                    w.pid, t.threads, t.max, t.goal, t.busy
                ),
                format!(
                    "{} work items queued, {} requests in the worker's gate queue",
                    t.queued, w.counters.gate.queued
                ),
                c.cpu().text(),
            ];
            evidence.extend(busy_route_lines(&w.counters.busy_routes, t.busy));
            let advice = max_threads_advice(c, w, t.max);
            return Some(
                Finding::new(
                    Severity::Critical,
                    "threadpool_at_max",
                    format!(
                        "worker {} thread pool {name:?} is at maxWorkerThreads ({}) with work \
                         waiting",
                        w.pid, t.max
                    ),
                    evidence,
                )
                .advice(advice),
            );
        }
    }
    None
}

fn max_threads_advice(c: &Ctx, w: &WorkerSample, max: usize) -> String {
    let mut a = String::from("raise maxWorkerThreads");
    if let Some(r) = top_route(&w.counters.busy_routes) {
        let per_worker = c.arrival_rate() / c.workers().count().max(1) as f64;
        let need = needed_threads(per_worker, r.max_ms.max(r.avg_ms));
        if need > max {
            a += &format!(
                " (about {need}: {per_worker:.1} requests/s per worker × {:.0} ms each on \
                 `{}`)",
                r.max_ms.max(r.avg_ms),
                r.route
            );
        }
    }
    a + ", or stop holding threads while waiting: make the blocking handlers async or wrap \
         the blocking calls in roost::worker::blocking"
}

/// Threads below max, work queued, threads added at the starvation rate, CPU idle.
fn threadpool_starvation(c: &Ctx) -> Option<Finding> {
    let cpu = c.cpu();
    if cpu.pool_share().is_some_and(|s| s >= LOW_CPU)
        || cpu.runnable_share().is_some_and(|r| r >= RUNNABLE)
    {
        return None;
    }
    for w in c.workers() {
        for (name, t) in &w.counters.worker_pools {
            let before = c
                .worker_before(w.pid)
                .and_then(|b| b.counters.worker_pools.get(name));
            let starved = t.injections.starvation.saturating_sub(
                before.map_or(t.injections.starvation, |b| b.injections.starvation),
            );
            let queued = c.tp_majority(w.pid, name, |t| t.queued > 0 && t.threads < t.max.max(1));
            let all_busy = c.tp_majority(w.pid, name, |t| {
                t.threads > 0 && t.busy >= t.threads.min(t.goal).max(1)
            });
            if queued && (starved > 0 || all_busy) {
                let threads_before = before.map_or(t.threads, |b| b.threads);
                return Some(starvation(c, w, name, t, starved, threads_before, &cpu));
            }
        }
    }
    None
}

fn starvation(
    c: &Ctx,
    w: &WorkerSample,
    name: &str,
    t: &crate::admin::sampler::ThreadPoolView,
    starved: u64,
    threads_before: usize,
    cpu: &CpuView,
) -> Finding {
    let mut evidence = vec![
        format!(
            "worker {} pool {name:?}: threads {threads_before} -> {} in {:.0} s (goal {}, max \
             {}), {} busy, {} work items queued",
            w.pid, t.threads, c.secs, t.goal, t.max, t.busy, t.queued
        ),
        format!(
            "{starved} starvation injections ({:.1}/s; the starvation rule adds at most 2 \
             threads/s)",
            starved as f64 / c.secs.max(1.0)
        ),
        cpu.text(),
    ];
    if t.blocked_detected + t.blocked > 0 {
        let on = top_route(&w.counters.busy_routes)
            .map(|r| format!(", on `{}`", r.route))
            .unwrap_or_default();
        evidence.push(format!(
            "{} of {} busy threads blocked in the kernel ({} found by blocking detection, {} \
             hinted){on}",
            t.blocked_detected + t.blocked,
            t.busy,
            t.blocked_detected,
            t.blocked
        ));
    }
    evidence.extend(busy_route_lines(&w.counters.busy_routes, t.busy));
    if cpu.machine.is_some_and(|m| m >= 0.8) {
        evidence.push(format!(
            "machine CPU at 80 % or more: starvation injection slows to one thread per {} s",
            t.goal.max(1)
        ));
    }
    let mut advice = String::from(
        "handlers block their threads while the CPU idles: make them async, or wrap the \
         blocking calls in roost::worker::blocking so threads are added at once",
    );
    if let Some(r) = top_route(&w.counters.busy_routes) {
        let per_worker = c.arrival_rate() / c.workers().count().max(1) as f64;
        let hold = r.max_ms.max(r.avg_ms);
        let need = needed_threads(per_worker, hold).min(t.max.max(1));
        advice += &format!(
            "; to absorb the load meanwhile set minWorkerThreads ≈ {need} ({per_worker:.1} \
             requests/s per worker × {hold:.0} ms blocking on `{}`)",
            r.route
        );
    } else {
        advice += "; raise minWorkerThreads to absorb bursts";
    }
    Finding::new(
        Severity::Critical,
        "threadpool_starvation",
        format!(
            "synchronous blocking in handlers (thread-pool starvation) in worker {}",
            w.pid
        ),
        evidence,
    )
    .advice(advice)
}

/// The worker's concurrency gate holds requests back while its threads idle (the IIS 7
/// "12 per CPU" trap).
fn gate_bound(c: &Ctx) -> Option<Finding> {
    let held = |w: &WorkerSample| {
        let g = &w.counters.gate;
        let req_cap = g.max_executing > 0 && g.executing >= g.max_executing;
        let thr_cap = g.max_executing_threads > 0 && g.executing_threads >= g.max_executing_threads;
        let idle = w
            .counters
            .worker_pools
            .values()
            .all(|t| t.busy < t.threads || t.threads < t.max);
        g.queued > 0 && (req_cap || thr_cap) && idle
    };
    let w = c
        .workers()
        .find(|w| c.majority(|s| s.workers.iter().find(|x| x.pid == w.pid).is_some_and(held)))?;
    let g = &w.counters.gate;
    let which = if g.max_executing_threads > 0 && g.executing_threads >= g.max_executing_threads {
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
    let idle: usize = w
        .counters
        .worker_pools
        .values()
        .map(|t| t.threads - t.busy.min(t.threads))
        .sum();
    Some(
        Finding::new(
            Severity::Warning,
            "gate_bound",
            format!(
                "worker {}'s concurrency gate is full while it has room",
                w.pid
            ),
            vec![
                which,
                format!("gate queued {}", g.queued),
                format!("{idle} worker threads idle"),
                c.cpu().text(),
            ],
        )
        .advice(
            "the per-CPU limits of the worker hold requests back: raise \
             maxConcurrentRequestsPerCPU / maxConcurrentThreadsPerCPU (0 = off)",
        ),
    )
}

/// Farm servers taken out of rotation (ejected by outlier detection, failing checks).
fn server_down(c: &Ctx) -> Option<Finding> {
    let p = c.pool;
    if p.kind != "farm" {
        return None;
    }
    let down: Vec<_> = p
        .members_view
        .iter()
        .filter(|m| m.state == "ejected" || m.state == "unhealthy" || failing(c, m))
        .collect();
    if down.is_empty() {
        return None;
    }
    let usable = p.members_view.iter().filter(|m| m.usable).count();
    let mut evidence: Vec<String> = down.iter().map(|m| down_evidence(c, m)).collect();
    evidence.push(format!(
        "{usable} of {} servers usable",
        p.members_view.len()
    ));
    let severity = if usable == 0 {
        Severity::Critical
    } else {
        Severity::Warning
    };
    Some(
        Finding::new(
            severity,
            "server_down",
            match down[0].state.as_str() {
                "ejected" | "unhealthy" => format!(
                    "farm server {} is out of rotation ({})",
                    down[0].label, down[0].state
                ),
                _ => format!(
                    "farm server {} fails every request but stays in rotation",
                    down[0].label
                ),
            },
            evidence,
        )
        .advice(
            "the server fails its requests or health checks: check that it runs and listens \
             on that address; it returns by itself once it answers again",
        ),
    )
}

/// A server still in rotation whose every request in the window failed (ejection held
/// back by `maxEjectionPercent`, or switched off).
fn failing(c: &Ctx, m: &MemberView) -> bool {
    let Some(b) = c.before.members_view.iter().find(|b| b.label == m.label) else {
        return false;
    };
    m.failed.saturating_sub(b.failed) >= 3 && m.served == b.served
}

/// One server out of rotation: why (ejected by passive health, failing its checks), with
/// its failures in the window and in all.
fn down_evidence(c: &Ctx, m: &MemberView) -> String {
    let before = c.before.members_view.iter().find(|b| b.label == m.label);
    let recent = m.failed.saturating_sub(before.map_or(0, |b| b.failed));
    let mut why = if m.state == "ejected" {
        format!(
            "ejected by passive health ({} failures in a row eject), back in {:.0} s",
            m.ejection_threshold, m.ejected_for_seconds
        )
    } else if m.state == "unhealthy" {
        "failing its health checks".to_string()
    } else {
        format!(
            "not ejected (maxEjectionPercent reached or ejection off), {} failures in a row",
            m.failure_streak
        )
    };
    if let Some(check) = &m.last_check {
        why += &format!(
            ", last check {}: {}",
            if check.ok { "ok" } else { "failed" },
            check.detail
        );
    }
    format!(
        "server {} {}: {recent} failed requests in the last {:.0} s, {} failed of {} in all, \
         {} ejection(s)",
        m.label,
        why,
        c.secs,
        m.failed,
        m.served + m.failed,
        m.ejections
    )
}

/// Every slot busy while the members idle: they wait on something slow.
fn backend_latency(c: &Ctx) -> Option<Finding> {
    if !c.majority(|s| c.saturated_in(s)) || !c.pressure() {
        return None;
    }
    let cpu = c.cpu();
    if cpu.pool_share().is_some_and(|s| s >= LOW_CPU) {
        return None;
    }
    let p = c.pool;
    let mut evidence = vec![
        format!(
            "active {}/{} slots, {} queued",
            p.active, p.capacity, p.queue_length
        ),
        cpu.text(),
    ];
    let slowest = p
        .members_view
        .iter()
        .max_by(|a, b| a.latency_ewma_ms.total_cmp(&b.latency_ewma_ms));
    let others = p
        .members_view
        .iter()
        .filter(|m| slowest.is_some_and(|s| s.label != m.label))
        .map(|m| m.latency_ewma_ms)
        .fold(None, |a: Option<f64>, l| Some(a.map_or(l, |a| a.max(l))));
    if let Some(s) = slowest {
        evidence.push(format!(
            "member response time (EWMA): slowest {} {:.0} ms, the others at most {:.0} ms",
            s.label,
            s.latency_ewma_ms,
            others.unwrap_or(0.0)
        ));
    }
    let one_slow = match (slowest, others) {
        (Some(s), Some(o)) => s.latency_ewma_ms >= SLOW_FACTOR * o.max(1.0),
        _ => false,
    };
    if let (true, Some(slowest)) = (p.kind == "farm", slowest) {
        let all = if one_slow || others.is_none() {
            ""
        } else {
            " (like the others)"
        };
        evidence.push(format!(
            "server {} holds {} of its {} slots",
            slowest.label, slowest.active, slowest.slots
        ));
        return Some(
            Finding::new(
                Severity::Warning,
                "slow_server",
                format!(
                    "farm server {} is slow: {:.0} ms per response{all}",
                    slowest.label, slowest.latency_ewma_ms
                ),
                evidence,
            )
            .advice(
                "the server answers slowly: look at that server (its load, its own \
                 dependencies); meanwhile leastResponseTime balancing or a lower weight sends \
                 it less, and maxConcurrentRequests bounds what it holds",
            ),
        );
    }
    Some(
        Finding::new(
            Severity::Warning,
            "backend_latency",
            "backend latency, not CPU: every slot is busy while the workers idle".into(),
            evidence,
        )
        .advice(
            "requests wait on something slow (a database, a remote call): fix that \
             dependency, or raise maxConcurrentRequestsPerProcess / maxProcesses if it can \
             take more concurrent calls",
        ),
    )
}

/// Workers crashing (or failing start-up) recently.
fn worker_failures(c: &Ctx) -> Option<Finding> {
    let failed = c
        .pool
        .worker_failures_total
        .saturating_sub(c.before.worker_failures_total);
    (failed > 0).then(|| {
        Finding::new(
            Severity::Warning,
            "worker_failures",
            format!("{failed} worker failures in the last {:.0} s", c.secs),
            vec![format!("failures total {}", c.pool.worker_failures_total)],
        )
        .advice(
            "see the pool's last failures (roost ctl pools); repeated crashes take the pool \
             offline (rapidFailProtection)",
        )
    })
}

#[cfg(test)]
mod tests;
