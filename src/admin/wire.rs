//! The documents of `/api/v1/...`, one type each: the admin server serialises them
//! ([`super::api`], [`super`]'s handler) and `roost ctl` ([`super::ctl`]) deserialises the
//! same types, so a renamed field breaks the build instead of the client.
//!
//! Types the API shows as the rest of roost keeps them are re-exported here rather than
//! copied: a supervised pool's workers, failures and recycles (`supervisor`), a farm
//! server's state (`farm`), an in-flight request (`front::inflight`) and a worker's own
//! counters (`worker::counters`). `GET /api/v1/diagnose` is the diagnosis report itself
//! (`admin::diagnose::Report`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::farm::{LastCheck, ServerState};
pub use crate::front::inflight::RequestInfo;
pub use crate::supervisor::{FailureRecord, RecycleRecord};
pub use crate::worker::counters::WorkerCounters;

/// `GET /api/v1/pools`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolList {
    pub pools: Vec<PoolDoc>,
}

/// `GET /api/v1/pools/{name}`: one pool, with its workers (garden) or servers (farm).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolDoc {
    pub name: String,
    /// `garden` or `farm`.
    pub kind: String,
    /// `Started`, `Stopped`, `AppOffline`.
    pub state: String,
    pub queue: QueueDoc,
    #[serde(flatten)]
    pub discipline: DisciplineDoc,
    pub capacity: usize,
    pub active: usize,
    pub members: usize,
    pub usable_members: usize,
    pub arrivals: u64,
    pub completed: u64,
    /// Refusals by reason (`QueueFull`, `Disabled`, ...), only the reasons seen.
    pub rejected: BTreeMap<String, u64>,
    pub rejected_total: u64,
    pub latency: LatencyDoc,
    pub workers: Vec<WorkerDoc>,
    pub servers: Vec<ServerDoc>,
    /// Most recent last.
    pub last_failures: Vec<FailureRecord>,
    /// Most recent last.
    pub recycle_history: Vec<RecycleRecord>,
    pub worker_starts_total: u64,
    pub worker_failures_total: BTreeMap<String, u64>,
    pub recycles_total: BTreeMap<String, u64>,
    /// Per-key ordering (`pools.<name>.ordering`); absent for a pool that does not order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<OrderingDoc>,
}

/// A pool's per-key ordering as it stands: the keys with work, the requests waiting behind
/// an earlier request of their key, and how long such waits took.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrderingDoc {
    /// Where the key comes from, as configured (`header:X-Key`, `cookie:SID`,
    /// `clientAddress`).
    pub key: String,
    /// Keys with a request waiting or in flight.
    pub keys: usize,
    /// Requests waiting behind their key (they count against `queueLength`).
    pub waiting: usize,
    /// Requests that took their key's turn since start, and the p99 of their wait.
    pub turns_total: u64,
    pub wait_p99_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueDoc {
    pub length: usize,
    pub limit: usize,
    pub oldest_seconds: f64,
    pub timeout_seconds: f64,
}

/// How the pool's queue serves and sheds (`queueDiscipline`). Absent fields read as
/// empty, so `roost ctl` still reads a server from before the disciplines existed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DisciplineDoc {
    /// `fifo` or `adaptive`.
    pub queue_discipline: String,
    /// How long the adaptive discipline has been shedding (`null`: it is not).
    pub shedding_seconds: Option<f64>,
    /// Completions per second, measured (what `retryAfter: auto` divides by).
    pub drain_per_second: f64,
    /// What switched shedding on, sheds by cause, priority classes (issue 17).
    pub queue_state: crate::pool::QueueState,
}

/// Response time since start, and over the last minute of samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyDoc {
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    pub recent_window_seconds: Option<f64>,
    pub recent_p50_seconds: Option<f64>,
    pub recent_p99_seconds: Option<f64>,
}

/// One worker process of a garden pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerDoc {
    /// The supervisor's worker id (absent when no supervisor manages the pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub pid: Option<u32>,
    pub uptime_s: f64,
    /// Requests it completed.
    pub requests: u64,
    /// Requests it is serving now.
    pub active: usize,
    /// Private memory (supervised workers; `null` until sampled).
    #[serde(default)]
    pub memory_kib: Option<u64>,
    /// `starting`, `running`, `retiring`, `draining`, `stopping`.
    pub state: String,
    /// What the worker itself reports (built-in workers, once sampled).
    #[serde(flatten)]
    pub sampled: Option<WorkerSampled>,
}

/// A built-in worker's own counters and its CPU, from the sampler.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSampled {
    pub counters: WorkerCounters,
    /// Percent of one core since the previous sample (`null` on its first).
    pub cpu_percent: Option<f64>,
}

/// One server of a farm pool: the farm's view when the farm manages the pool, otherwise
/// the pool member's own counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServerDoc {
    Farm(ServerState),
    Member(MemberDoc),
}

/// A pool member without a farm behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberDoc {
    pub server: String,
    pub healthy: bool,
    pub draining: bool,
    pub backup: bool,
    pub active: usize,
    pub slots: usize,
    pub weight: u32,
    pub requests: u64,
    pub failed: u64,
    pub latency_ewma_ms: f64,
}

/// `GET /api/v1/requests`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestList {
    pub count: usize,
    pub requests: Vec<RequestInfo>,
}

/// `GET /api/v1/stats[?since=T]`: the dashboard's series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    /// The newest sample's time (`null` before the first sample).
    pub at_unix_ms: Option<u64>,
    pub pools: Vec<PoolSeries>,
    pub workers: Vec<WorkerSeries>,
    /// In-flight requests, longest running first (at most 200).
    #[serde(default)]
    pub requests: Vec<RequestInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolSeries {
    pub name: String,
    pub state: Option<String>,
    pub kind: Option<String>,
    pub points: Vec<PoolPoint>,
}

/// One point of a pool's dashboard chart (rates between consecutive samples).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolPoint {
    pub t: u64,
    pub queue: usize,
    pub active: usize,
    pub capacity: usize,
    pub arrivals_per_s: f64,
    pub rejected_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSeries {
    pub pid: u32,
    pub pool: String,
    /// In the newest sample.
    pub alive: bool,
    pub points: Vec<WorkerPoint>,
}

/// One point of a worker's chart: its thread pools summed, the gate's queue added.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerPoint {
    pub t: u64,
    pub threads: usize,
    pub goal: usize,
    pub busy: usize,
    pub max: usize,
    pub queued: usize,
    pub injections: u64,
    pub starvation: u64,
    pub cpu_percent: Option<f64>,
}

/// `POST /api/v1/pools/{name}/{recycle|start|stop}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionDone {
    pub pool: String,
    pub action: String,
    pub ok: bool,
    /// The pool's state after the action.
    pub state: String,
}

/// `POST /api/v1/reload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reloaded {
    pub reloaded: bool,
}

/// `POST /api/v1/upgrade` (202).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpgradeStarted {
    /// `started`.
    pub upgrade: String,
}

/// Every error answer of the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub status: u16,
}
