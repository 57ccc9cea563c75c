//! The worker's resolved settings: every limit as a number, defaults filled in.
//!
//! `config::model::WorkerSettings` (from `proxy.yaml`) leaves thread counts optional
//! ("the core count"); this is where those defaults are decided, once, for the CLI, the
//! supervisor's command line and the library API alike.

use super::threadpool::ThreadPoolConfig;
use crate::config::model::WorkerSettings;
use std::collections::BTreeMap;
use std::time::Duration;

/// Name of the worker pool that runs sync handlers not routed to a dedicated pool.
pub const DEFAULT_POOL: &str = "default";

/// Upper bound of the default `maxWorkerThreads`: 32 threads per core, capped here so a
/// large machine does not get thousands of threads by default (.NET's own cap is 32767,
/// which only makes sense with hill climbing holding the count down).
pub const DEFAULT_MAX_WORKER_THREADS_CAP: usize = 1024;

/// A dedicated worker pool's thread limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    pub min: usize,
    pub max: usize,
}

/// Everything a worker process needs to know, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The core count the per-CPU limits multiply.
    pub cpus: usize,
    /// Threads of the default worker pool.
    pub min_worker_threads: usize,
    pub max_worker_threads: usize,
    /// Threads of the I/O pool (the tokio runtime).
    pub io_threads: usize,
    /// Requests in the worker (queued + executing) beyond which it answers 503 ServerTooBusy.
    pub request_queue_limit: usize,
    /// Executing requests per CPU; the rest wait in the gate's FIFO queue.
    pub max_concurrent_requests_per_cpu: usize,
    /// Worker-pool threads executing requests per CPU; 0 = no limit.
    pub max_concurrent_threads_per_cpu: usize,
    /// Dedicated worker pools by name.
    pub thread_pools: BTreeMap<String, PoolLimits>,
    /// Path prefix → dedicated pool name, for sync handlers.
    pub routes: BTreeMap<String, String>,
    /// How long a graceful stop waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// `blockingDetection`: the worker pools add threads for busy threads they find blocked
    /// in the kernel without a `blocking()` hint.
    pub blocking_detection: bool,
    /// `blockingDetectionInterval`: how often they look while work is queued.
    pub blocking_detection_interval: Duration,
}

pub use crate::config::model::DEFAULT_BLOCKING_DETECTION_INTERVAL;

/// The machine's core count (what ASP.NET calls "CPU" in its per-CPU limits).
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Default `maxWorkerThreads`: 32 per core, at most [`DEFAULT_MAX_WORKER_THREADS_CAP`],
/// never below `min`.
pub fn default_max_worker_threads(cpus: usize, min: usize) -> usize {
    (cpus * 32).min(DEFAULT_MAX_WORKER_THREADS_CAP).max(min)
}

impl Default for Settings {
    fn default() -> Self {
        let cpus = cpus();
        Settings {
            cpus,
            min_worker_threads: cpus,
            max_worker_threads: default_max_worker_threads(cpus, cpus),
            io_threads: cpus,
            request_queue_limit: 5000,
            max_concurrent_requests_per_cpu: 5000,
            max_concurrent_threads_per_cpu: 0,
            thread_pools: BTreeMap::new(),
            routes: BTreeMap::new(),
            shutdown_timeout: Duration::from_secs(30),
            blocking_detection: true,
            blocking_detection_interval: DEFAULT_BLOCKING_DETECTION_INTERVAL,
        }
    }
}

impl Settings {
    /// Executing requests allowed at once (`maxConcurrentRequestsPerCPU` × cores).
    pub fn max_executing(&self) -> usize {
        self.max_concurrent_requests_per_cpu
            .saturating_mul(self.cpus)
    }

    /// The tuning of a worker pool (the default one or a dedicated one) under these settings.
    pub fn pool_config(&self, name: &str, min: usize, max: usize) -> ThreadPoolConfig {
        let mut c = ThreadPoolConfig::new(name, min, max);
        c.blocking_detection = self.blocking_detection;
        c.blocking_detection_interval = self.blocking_detection_interval;
        c
    }

    /// Worker-pool threads allowed to execute requests at once; 0 = no limit.
    pub fn max_executing_threads(&self) -> usize {
        self.max_concurrent_threads_per_cpu
            .saturating_mul(self.cpus)
    }
}

impl From<&WorkerSettings> for Settings {
    fn from(w: &WorkerSettings) -> Self {
        let d = Settings::default();
        let min = w.min_worker_threads.unwrap_or(d.cpus);
        Settings {
            min_worker_threads: min,
            max_worker_threads: w
                .max_worker_threads
                .unwrap_or_else(|| default_max_worker_threads(d.cpus, min)),
            io_threads: w.io_threads.unwrap_or(d.cpus),
            request_queue_limit: w.request_queue_limit,
            max_concurrent_requests_per_cpu: w.max_concurrent_requests_per_cpu,
            max_concurrent_threads_per_cpu: w.max_concurrent_threads_per_cpu,
            thread_pools: w
                .pools
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        PoolLimits {
                            min: p.min,
                            max: p.max,
                        },
                    )
                })
                .collect(),
            routes: w.routes.clone(),
            blocking_detection: w.blocking_detection,
            blocking_detection_interval: w.blocking_detection_interval,
            ..d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_max_is_32_per_core_capped_and_at_least_min() {
        assert_eq!(default_max_worker_threads(2, 2), 64);
        assert_eq!(default_max_worker_threads(64, 64), 1024);
        assert_eq!(default_max_worker_threads(2, 100), 100);
    }
}
