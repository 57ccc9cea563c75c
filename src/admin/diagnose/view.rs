//! One pool seen through a window of samples: the questions the decision tree asks
//! ("does work wait in most recent samples?", "how busy is the CPU?", "which routes hold
//! the threads?"), each answered from several samples so one noisy second decides nothing.

use crate::admin::sampler::{
    BusyRouteView, PoolCpu, PoolSample, Sample, ThreadPoolView, WorkerSample,
};
use std::sync::Arc;

/// The stretch of recent samples a condition must hold in (by majority).
pub const RECENT_MS: u64 = 3500;
/// ...which must span at least this much (one-second sampling: two samples).
pub const RECENT_SPAN_MS: u64 = 900;

/// A pool over the diagnosis window.
pub struct Ctx<'a> {
    pub pool: &'a PoolSample,
    pub before: &'a PoolSample,
    /// Seconds between the first and the last sample of the window.
    pub secs: f64,
    pub window: &'a [&'a Arc<Sample>],
}

/// The CPU picture, averaged over the recent samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuView {
    /// The pool's workers against the cores they may use.
    pub pool: Option<PoolCpu>,
    /// The machine's busy share, and its cores.
    pub machine: Option<f64>,
    pub machine_cores: usize,
    /// Busy worker-pool threads of the pool's workers (mean).
    pub busy_threads: f64,
    /// Their threads in state R, running or waiting for a core (mean; `None` unknown).
    pub runnable: Option<f64>,
}

impl CpuView {
    pub fn pool_share(&self) -> Option<f64> {
        self.pool.map(|p| p.share())
    }

    /// Cores' worth of CPU per busy thread: near 0 when the threads block (sleep, lock,
    /// I/O), a large fraction of a core when they compute, even on a machine so shared
    /// that the pool's own share stays low.
    /// Share of the busy threads that are runnable (compute) rather than asleep (block).
    pub fn runnable_share(&self) -> Option<f64> {
        let r = self.runnable?;
        (self.busy_threads >= 1.0).then(|| (r / self.busy_threads).min(1.0))
    }

    pub fn per_busy_thread(&self) -> Option<f64> {
        let p = self.pool?;
        (self.busy_threads >= 1.0).then(|| p.used_cores / self.busy_threads)
    }

    pub fn text(&self) -> String {
        let pool = match self.pool {
            Some(p) => format!(
                "workers used {:.2} of the {:.0} cores they may run on ({:.0}%), {:.2} per \
                 busy thread ({:.1} busy, {:.1} runnable)",
                p.used_cores,
                p.cores,
                p.share() * 100.0,
                self.per_busy_thread().unwrap_or(0.0),
                self.busy_threads,
                self.runnable.unwrap_or(0.0)
            ),
            None => "workers' CPU unknown".into(),
        };
        match self.machine {
            Some(m) => format!(
                "{pool}; machine CPU {:.0}% of {} cores",
                m * 100.0,
                self.machine_cores
            ),
            None => pool,
        }
    }
}

impl<'a> Ctx<'a> {
    pub fn last(&self) -> &'a Arc<Sample> {
        self.window[self.window.len() - 1]
    }

    pub fn first(&self) -> &'a Arc<Sample> {
        self.window[0]
    }

    /// The samples of the last [`RECENT_MS`] (at least the last two).
    pub fn recent(&self) -> &'a [&'a Arc<Sample>] {
        let last = self.last().at_unix_ms;
        let n = self
            .window
            .iter()
            .filter(|s| last.saturating_sub(s.at_unix_ms) <= RECENT_MS)
            .count()
            .max(2)
            .min(self.window.len());
        &self.window[self.window.len() - n..]
    }

    /// `cond` held in most recent samples, and those span enough time to mean it.
    pub fn majority(&self, cond: impl Fn(&Sample) -> bool) -> bool {
        let recent = self.recent();
        let span = self.last().at_unix_ms.saturating_sub(recent[0].at_unix_ms);
        let hits = recent.iter().filter(|s| cond(s)).count();
        recent.len() >= 2 && span >= RECENT_SPAN_MS && hits * 2 > recent.len()
    }

    pub fn pool_at(&self, s: &'a Sample) -> Option<&'a PoolSample> {
        s.pool(&self.pool.name)
    }

    pub fn workers(&self) -> impl Iterator<Item = &'a WorkerSample> {
        self.last().workers_of(&self.pool.name)
    }

    /// The same worker in the first sample of the window.
    pub fn worker_before(&self, pid: u32) -> Option<&'a WorkerSample> {
        self.first().workers.iter().find(|w| w.pid == pid)
    }

    /// Work waits somewhere in sample `s`: the front's queue, a worker's gate, or a
    /// worker thread pool's queue.
    pub fn waiting_in(&self, s: &Sample) -> bool {
        s.pool(&self.pool.name).is_some_and(|p| p.queue_length > 0)
            || s.workers_of(&self.pool.name).any(|w| {
                w.counters.gate.queued > 0 || w.counters.worker_pools.values().any(|t| t.queued > 0)
            })
    }

    /// Every slot of the pool was taken in sample `s`.
    pub fn saturated_in(&self, s: &Sample) -> bool {
        s.pool(&self.pool.name)
            .is_some_and(|p| p.capacity > 0 && p.active >= p.capacity)
    }

    pub fn rejected_delta(&self, reason: &str) -> u64 {
        self.pool
            .rejected(reason)
            .saturating_sub(self.before.rejected(reason))
    }

    /// Requests the workers' own gates refused in the window.
    pub fn gate_rejected_delta(&self) -> u64 {
        self.workers()
            .map(|w| {
                let before = self.worker_before(w.pid).map(|b| b.counters.gate.rejected);
                w.counters
                    .gate
                    .rejected
                    .saturating_sub(before.unwrap_or(w.counters.gate.rejected))
            })
            .sum()
    }

    /// Work waits in most recent samples, or requests were refused.
    pub fn pressure(&self) -> bool {
        self.majority(|s| self.waiting_in(s))
            || self.rejected_delta("QueueFull") > 0
            || self.rejected_delta("QueueTimeout") > 0
    }

    /// Arrivals per second over the window.
    pub fn arrival_rate(&self) -> f64 {
        self.pool.arrivals.saturating_sub(self.before.arrivals) as f64 / self.secs.max(0.001)
    }

    /// CPU averaged over the recent samples that measured it.
    pub fn cpu(&self) -> CpuView {
        let recent = self.recent();
        let pools: Vec<PoolCpu> = recent
            .iter()
            .filter_map(|s| self.pool_at(s).and_then(|p| p.cpu))
            .collect();
        let machine: Vec<f64> = recent.iter().filter_map(|s| s.machine.busy).collect();
        let busy: Vec<f64> = recent
            .iter()
            .map(|s| {
                s.workers_of(&self.pool.name)
                    .flat_map(|w| w.counters.worker_pools.values())
                    .map(|t| t.busy as f64)
                    .sum()
            })
            .collect();
        let runnable: Vec<f64> = recent
            .iter()
            .filter_map(|s| {
                s.workers_of(&self.pool.name)
                    .map(|w| w.runnable_threads.map(|n| n as f64))
                    .sum::<Option<f64>>()
            })
            .collect();
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        CpuView {
            pool: (!pools.is_empty()).then(|| PoolCpu {
                used_cores: mean(&pools.iter().map(|p| p.used_cores).collect::<Vec<_>>())
                    .unwrap_or(0.0),
                cores: pools[pools.len() - 1].cores,
            }),
            machine: mean(&machine),
            machine_cores: self.last().machine.cores,
            busy_threads: mean(&busy).unwrap_or(0.0),
            runnable: mean(&runnable),
        }
    }

    /// A worker thread pool's view in every recent sample (for majority questions).
    pub fn tp_history(&self, pid: u32, tp: &str) -> Vec<&'a ThreadPoolView> {
        self.recent()
            .iter()
            .filter_map(|s| s.workers.iter().find(|w| w.pid == pid))
            .filter_map(|w| w.counters.worker_pools.get(tp))
            .collect()
    }

    /// `cond` held for the thread pool in most of the recent samples (and those span
    /// enough time).
    pub fn tp_majority(&self, pid: u32, tp: &str, cond: impl Fn(&ThreadPoolView) -> bool) -> bool {
        let hist = self.tp_history(pid, tp);
        let recent = self.recent();
        let span = self.last().at_unix_ms.saturating_sub(recent[0].at_unix_ms);
        let hits = hist.iter().filter(|t| cond(t)).count();
        hist.len() >= 2 && span >= RECENT_SPAN_MS && hits * 2 > hist.len()
    }
}

/// "`/block` held 25 of 25 threads for 480 ms on average (longest 900 ms)" for the routes
/// holding most of a worker's busy threads.
pub fn busy_route_lines(routes: &[BusyRouteView], threads: usize) -> Vec<String> {
    routes
        .iter()
        .take(3)
        .map(|r| {
            format!(
                "`{}` held {} of {} threads for {:.0} ms on average (longest {:.0} ms so far)",
                r.route, r.threads, threads, r.avg_ms, r.max_ms
            )
        })
        .collect()
}

/// The route holding the most threads.
pub fn top_route(routes: &[BusyRouteView]) -> Option<&BusyRouteView> {
    routes.iter().max_by_key(|r| r.threads)
}

/// Threads a pool needs to keep up without queueing: arrival rate × time each request
/// holds a thread (Little's law; `threadpool.md` §6 scenario 3: "needed concurrency ≈
/// blocking time × λ").
pub fn needed_threads(arrivals_per_s: f64, hold_ms: f64) -> usize {
    (arrivals_per_s * hold_ms / 1000.0).ceil().max(1.0) as usize
}
