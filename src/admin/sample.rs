//! What one sample holds: every pool's counters and every worker's, at one instant. The
//! data of [`super::sampler`] (which takes them) and of the diagnosis and its snapshots
//! (which read them), apart from both so neither has to import the other.

use super::cpu::MachineCpu;
use crate::pool::HistogramSnapshot;
use serde::Serialize;
use std::collections::BTreeMap;

/// The worker's counter types under the names the diagnosis reads them by: one set of
/// wire types ([`crate::worker::counters`]) the worker serialises and the sampler parses.
pub use crate::worker::counters::{
    BusyRoute as BusyRouteView, GateCounters as GateView, Injections as InjectionsView,
    ThreadPoolCounters as ThreadPoolView, WorkerCounters,
};

/// One worker at one sample.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerSample {
    pub pool: String,
    pub pid: u32,
    pub counters: WorkerCounters,
    /// CPU the process used since the previous sample, in percent of one core
    /// (200 = two cores busy); `None` on its first sample.
    pub cpu_percent: Option<f64>,
    /// Consecutive samples in which the worker did not answer `/.roost/counters` within
    /// the fetch timeout (0 = it answered this time; `counters` are then fresh, otherwise
    /// they are the last ones it gave).
    pub unanswered: u32,
    /// The process state letter from `/proc/PID/stat` (`R`, `S`, `D`, `T` stopped, `Z`).
    pub process_state: Option<char>,
    /// Its threads running or waiting for a CPU (state `R`) at the sample: threads that
    /// compute are runnable even when a crowded machine gives them little CPU; threads
    /// that block are not.
    pub runnable_threads: Option<usize>,
}

/// One member of a pool (a worker or a farm server) at one sample.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MemberView {
    pub label: String,
    pub pid: Option<u32>,
    /// Takes new requests (healthy, not draining).
    pub usable: bool,
    /// Farm servers: `healthy`, `unhealthy`, `ejected`, `draining`; workers: `running`
    /// or `draining`.
    pub state: String,
    pub active: usize,
    pub slots: usize,
    pub served: u64,
    pub failed: u64,
    pub ejections: u64,
    /// Response-head latency EWMA (0 = no sample yet).
    pub latency_ewma_ms: f64,
    /// Farm servers: seconds left of the current ejection (0 = not ejected).
    pub ejected_for_seconds: f64,
    /// Farm servers: passive failures in a row, and how many eject.
    pub failure_streak: u32,
    pub ejection_threshold: u32,
    /// Farm servers: the latest active health check.
    pub last_check: Option<crate::farm::LastCheck>,
}

/// A pool's own processes' CPU against the cores they may use.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct PoolCpu {
    /// Cores' worth of CPU the pool's workers used (1.5 = one and a half cores).
    pub used_cores: f64,
    /// Cores they may run on together (affinity union, cgroup quota), each counted once.
    pub cores: f64,
}

impl PoolCpu {
    pub fn share(&self) -> f64 {
        self.used_cores / self.cores.max(0.01)
    }
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
    /// Of those, workers killed for not answering pings.
    pub ping_failures_total: u64,
    pub members_view: Vec<MemberView>,
    /// How long each worker still starting (not yet ready) has been starting, in seconds.
    pub starting_seconds: Vec<f64>,
    pub startup_time_limit_seconds: f64,
    pub always_running: bool,
    /// The pool's worker processes' CPU (gardens of built-in workers).
    pub cpu: Option<PoolCpu>,
    /// How long the adaptive discipline has been shedding (`None`: it is not).
    pub shedding_seconds: Option<f64>,
    /// What switched shedding on, sheds by cause, classes (issue 17).
    pub queue_state: crate::pool::QueueState,
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
    /// The front's connections (overload manager counters).
    pub front: crate::front::overload::Snapshot,
    /// The whole machine's CPU since the previous sample.
    pub machine: MachineCpu,
}

impl Sample {
    pub fn pool(&self, name: &str) -> Option<&PoolSample> {
        self.pools.iter().find(|p| p.name == name)
    }

    pub fn workers_of<'a>(&'a self, pool: &'a str) -> impl Iterator<Item = &'a WorkerSample> {
        self.workers.iter().filter(move |w| w.pool == pool)
    }
}
