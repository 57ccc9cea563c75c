//! The worker's counters as they cross the wire: `GET /.roost/counters` serialises a
//! [`WorkerCounters`], and the front's sampler (`admin::sampler`) deserialises the same
//! type, so the two sides cannot drift. Every struct is `#[serde(default)]`: a worker of
//! an older or newer roost still parses, its missing fields read as zero.
//!
//! The gate ([`super::gate`]), the thread pools ([`super::threadpool`]) and the busy-route
//! tracker ([`super::busy`]) fill these in; `/.roost/metrics` encodes them too.

use super::threadpool::hill_climbing::Transition;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `/.roost/counters` document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct WorkerCounters {
    pub pid: u32,
    /// The app the worker runs (`demo`, `hello`, `static:DIR`, or a library app's name).
    pub app: String,
    /// `ROOST_POOL` and `ROOST_WORKER_ID` when a supervisor started it.
    pub pool: Option<String>,
    pub worker_id: Option<String>,
    pub uptime_seconds: f64,
    pub cpus: usize,
    pub io_threads: usize,
    pub threads: ThreadSummary,
    pub io: IoCounters,
    /// Each worker pool by name (`default`, then dedicated ones).
    pub worker_pools: BTreeMap<String, ThreadPoolCounters>,
    pub gate: GateCounters,
    pub busy_routes: Vec<BusyRoute>,
}

/// All of a worker's threads at a glance.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ThreadSummary {
    pub io: usize,
    /// Worker-pool threads in all pools.
    pub worker: usize,
    pub worker_busy: usize,
    pub work_items_queued: usize,
}

/// The I/O pool part of `/.roost/counters`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct IoCounters {
    /// Runtime worker threads (`ioThreads`).
    pub threads: usize,
    /// Tasks alive on the runtime (connections, handlers, timers' owners).
    pub alive_tasks: Option<usize>,
    /// Tasks waiting in the runtime's shared queue.
    pub global_queue_depth: Option<usize>,
}

/// A snapshot for `/.roost/counters` and metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GateCounters {
    /// Queued + executing ("Requests Current").
    pub current: usize,
    pub queued: usize,
    pub executing: usize,
    /// Of the executing requests, those holding a worker-pool thread slot.
    pub executing_threads: usize,
    /// Refused with 503 ServerTooBusy.
    pub rejected: u64,
    pub completed: u64,
    /// Left the queue because the client went away.
    pub disconnected: u64,
    pub request_queue_limit: usize,
    pub max_executing: usize,
    pub max_executing_threads: usize,
    /// Time spent in the gate's queue.
    pub wait: WaitCounters,
}

/// Request wait time: how long admitted requests waited in the gate's queue (ASP.NET's
/// "Request Wait Time", plus the distribution). Requests admitted at once count as 0.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct WaitCounters {
    /// Requests admitted (at once or after waiting).
    pub count: u64,
    /// Of those, the ones that had to wait in the queue.
    pub queued: u64,
    pub sum_seconds: f64,
    pub avg_seconds: f64,
    pub max_seconds: f64,
    /// The most recently admitted request's wait (ASP.NET's counter).
    pub last_seconds: f64,
    /// Per bucket of [`WAIT_BUCKETS`](super::gate::WAIT_BUCKETS) (then `+Inf`): requests whose wait was at most `le`,
    /// not cumulative.
    pub buckets: Vec<u64>,
}

/// A snapshot of a pool (served as JSON on `/.roost/counters`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThreadPoolCounters {
    pub name: String,
    /// Threads alive.
    pub threads: usize,
    /// Threads running a work item (including blocked ones).
    pub busy: usize,
    /// Threads waiting for work.
    pub idle: usize,
    /// Work items waiting in the queue.
    pub queued: usize,
    /// Threads currently inside [`blocking`](super::threadpool::blocking).
    pub blocked: usize,
    /// Busy threads (outside [`blocking`](super::threadpool::blocking)) the gate thread last found blocked in the kernel.
    pub blocked_detected: usize,
    pub goal: usize,
    pub min: usize,
    pub max: usize,
    pub completed: u64,
    pub panicked: u64,
    pub injections: Injections,
    pub retirements: u64,
    /// Latest machine CPU utilisation seen by the gate thread (percent).
    pub cpu_percent: u32,
    pub last_transition: Option<TransitionRecord>,
}

/// Thread-count increases by cause, in threads of goal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Injections {
    pub hill_climbing: u64,
    pub starvation: u64,
    /// Hinted blocking ([`blocking`](super::threadpool::blocking)).
    pub blocking: u64,
    /// Blocking found by the gate thread without a hint (detection).
    pub blocking_detected: u64,
}

/// A goal change with its wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransitionRecord {
    pub transition: Transition,
    pub goal: usize,
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Mean throughput (items/s) at the previous goal.
    pub throughput: f64,
}

/// One route's share of the busy threads (`/.roost/counters` → `busy_routes`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BusyRoute {
    /// The route prefix the handler was registered under.
    pub route: String,
    /// Threads running it now.
    pub threads: usize,
    /// How long those threads have been running it so far (mean and longest).
    pub avg_ms: f64,
    pub max_ms: f64,
}
