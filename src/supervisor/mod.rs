//! The supervisor (the WAS role): runs each garden pool's worker processes inside the
//! front process.
//!
//! For every managed pool a manager task starts workers (at once for `alwaysRunning`,
//! on the first waiting request for `onDemand`), hands each a private Unix socket (or a
//! loopback port) through the handshake environment, adds it to the pool only once it
//! answers its ping and has run the pool's initialization pages, pings it, replaces it
//! when it dies (with backoff), takes the pool offline on rapid failures, recycles
//! workers (time, requests, private memory, schedule, config change, on demand) with an
//! overlapped rotation, and stops idle ones. Everything is tokio tasks; no call here
//! blocks a runtime thread.
//!
//! A worker's life: `starting` (spawned in its own process group, polled until its
//! ping answers 2xx — or, for a command without `pingPath`, until a connect succeeds —
//! within `startupTimeLimit`, then warmed up with the initialization pages) →
//! `running` (a pool member with `maxConcurrentRequestsPerProcess` slots, pinged every
//! `pingInterval`) → `retiring` (its replacement is starting) → `draining` (no new
//! requests; in-flight ones finish, up to `shutdownTimeLimit`) → `stopping` (SIGTERM to
//! its group, SIGKILL after a grace of at most 10 s) → gone (reaped, removed from the
//! pool, socket deleted).
//!
//! Choices worth knowing:
//! - Failures are of three kinds: `startup` (exited or not ready in time), `crash`
//!   (exited while running) and `ping` (no answer within `pingResponseTime`; the worker
//!   is killed at once). All three count toward rapid-fail protection, which takes the
//!   pool `AppOffline` when `rapidFailProtectionMaxCrashes` failures fall within
//!   `rapidFailProtectionInterval`; `start_pool` (or a changed config) brings it back.
//! - Restarts after a failure wait 0.1 s, doubling to 10 s while failures keep coming;
//!   30 s without one resets it. A recycle is not a failure and waits for nothing.
//! - Recycles run one worker at a time per pool, so a garden never loses all its
//!   members; with `disallowOverlappingRotation` the old worker is gone before the new
//!   one starts (requests wait in the pool queue meanwhile).
//! - A config change recycles workers only when what they run changed (process model,
//!   upstream timeouts, initialization pages); queue and recycling settings apply live.
//! - `onDemand` pools start all `maxProcesses` workers on the first waiting request and
//!   stop them after `idleTimeout` (counted from when each became ready, so a worker
//!   just started for a request is never idle-stopped). `alwaysRunning` pools ignore
//!   `idleTimeout`: they would be restarted at once.
//! - A health ping that gets any HTTP answer counts as alive (a busy worker may answer
//!   503); readiness needs a 2xx.
//! - The supervisor follows the pool's state: a pool stopped by anyone loses its
//!   workers; an `alwaysRunning` pool started by anyone gets them back.

mod manager;
mod output;
mod policy;
mod process;

use crate::config::model::{self, Backend};
use crate::pool::{Pool, PoolState};
use manager::{Command, PoolCtl};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How the supervisor is set up by the front.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// The `roost` executable, launched as `roost worker ...` for pools without a
    /// `command` (normally `std::env::current_exe()`).
    pub roost_exe: PathBuf,
    /// Where the workers' sockets live; `None` = `/run/roost-<pid>` as root, else
    /// `$XDG_RUNTIME_DIR/roost-<pid>`, else `<tmp>/roost-<pid>`. Created with mode 0700
    /// on first use (0711 when a pool runs its workers as another user, whose own pool
    /// directory inside is then owned by that user; its parents must be traversable).
    pub runtime_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SupervisorError {
    #[error("pool {0:?} is not supervised (unknown, or a farm)")]
    UnknownPool(String),
    #[error("pool {0:?} is not started")]
    NotStarted(String),
}

/// A pool as the supervisor sees it, for the admin API and `roost ctl`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PoolStatus {
    pub name: String,
    /// `Started`, `Stopped` or `AppOffline`.
    pub state: String,
    pub workers: Vec<WorkerStatus>,
    /// Most recent last (at most [`HISTORY`]).
    pub last_failures: Vec<FailureRecord>,
    /// Most recent last (at most [`HISTORY`]).
    pub recycle_history: Vec<RecycleRecord>,
    pub worker_starts_total: u64,
    /// By kind: `crash`, `startup`, `ping`.
    pub worker_failures_total: BTreeMap<String, u64>,
    /// By reason: `time`, `requests`, `privateMemory`, `schedule`, `configChange`, `manual` (an operator's recycle).
    pub recycles_total: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub id: u64,
    pub pid: Option<u32>,
    pub uptime_s: f64,
    /// Requests it completed.
    pub requests: u64,
    /// Requests it is serving now.
    pub active: usize,
    /// Private memory, sampled about once a second.
    pub memory_kib: Option<u64>,
    /// `starting`, `running`, `retiring` (replacement starting), `draining`, `stopping`.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    /// RFC 3339, UTC.
    pub at: String,
    /// `crash` (exited on its own), `startup` (exited or not ready within
    /// startupTimeLimit), `ping` (no answer within pingResponseTime).
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecycleRecord {
    pub at: String,
    pub reason: String,
    /// The worker that was recycled.
    pub worker: u64,
}

/// How many failures and recycles a pool's status remembers.
pub const HISTORY: usize = 20;

struct Managed {
    ctl: Arc<PoolCtl>,
    tx: mpsc::UnboundedSender<manager::Event>,
    task: JoinHandle<()>,
}

/// Supervises the worker processes of every garden pool it is given.
pub struct Supervisor {
    roost_exe: PathBuf,
    runtime_dir: PathBuf,
    /// We picked the directory, so we remove it at shutdown.
    own_runtime_dir: bool,
    pools: Mutex<HashMap<String, Managed>>,
    /// Managers told to stop (pool removed) whose workers may still be stopping;
    /// `shutdown` waits for them too.
    detached: Mutex<Vec<JoinHandle<()>>>,
    next_worker_id: Arc<AtomicU64>,
}

impl Supervisor {
    pub fn new(opts: SupervisorOptions) -> Arc<Supervisor> {
        let (runtime_dir, own_runtime_dir) = match opts.runtime_dir {
            Some(d) => (d, false),
            None => {
                // root's XDG_RUNTIME_DIR (/run/user/0) is closed to the users that
                // workers may run as; /run is not.
                let run = PathBuf::from("/run");
                let base = if nix::unistd::geteuid().is_root() && run.is_dir() {
                    run
                } else {
                    std::env::var_os("XDG_RUNTIME_DIR")
                        .map(PathBuf::from)
                        .filter(|p| p.is_absolute())
                        .unwrap_or_else(std::env::temp_dir)
                };
                (base.join(format!("roost-{}", std::process::id())), true)
            }
        };
        Arc::new(Supervisor {
            roost_exe: opts.roost_exe,
            runtime_dir,
            own_runtime_dir,
            pools: Mutex::new(HashMap::new()),
            detached: Mutex::new(Vec::new()),
            next_worker_id: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The directory holding the workers' sockets.
    pub fn runtime_dir(&self) -> &std::path::Path {
        &self.runtime_dir
    }

    /// Start supervising a pool. Must be called inside a tokio runtime. Managing a
    /// pool that is already managed is a reconfigure; a farm pool (its members are
    /// remote) is not supervised, and a garden that became a farm is let go.
    pub fn manage(&self, pool: Arc<Pool>, cfg: &model::Pool) {
        if !matches!(cfg.backend, Backend::Garden(_)) {
            if let Some(task) = self.detach(&cfg.name) {
                self.detached.lock().push(task);
            }
            return;
        }
        let mut pools = self.pools.lock();
        if let Some(m) = pools.get(&cfg.name) {
            if !m.task.is_finished() {
                let _ = m.tx.send(manager::Event::Cmd(Command::Reconfigure(
                    pool,
                    Box::new(cfg.clone()),
                )));
                return;
            }
        }
        let (ctl, tx, task) = manager::start(
            pool,
            cfg.clone(),
            self.roost_exe.clone(),
            self.runtime_dir.clone(),
            self.next_worker_id.clone(),
        );
        pools.insert(cfg.name.clone(), Managed { ctl, tx, task });
    }

    /// Apply a changed pool config. Workers are recycled (overlapped, one at a time)
    /// when what they run changed (process model, upstream timeouts, initialization
    /// pages); queue settings alone restart nothing. A pool that rapid-fail protection
    /// took offline is started again when its config changed. A pool that became a farm
    /// is no longer supervised (its workers stop in the background).
    pub fn reconfigure(&self, pool: Arc<Pool>, cfg: &model::Pool) {
        self.manage(pool, cfg);
    }

    /// Stop supervising a pool: its workers are drained and stopped (SIGTERM, then
    /// SIGKILL after shutdownTimeLimit); returns when they are gone.
    pub async fn unmanage(&self, name: &str) {
        if let Some(task) = self.detach(name) {
            let _ = task.await;
        }
    }

    /// Forget a pool and tell its manager to stop its workers; the returned task ends
    /// when they are gone.
    fn detach(&self, name: &str) -> Option<JoinHandle<()>> {
        let m = self.pools.lock().remove(name)?;
        let (tx, _rx) = oneshot::channel();
        let _ = m.tx.send(manager::Event::Cmd(Command::Shutdown(tx)));
        Some(m.task)
    }

    /// Recycle every worker of the pool (overlapped unless disallowOverlappingRotation,
    /// one worker at a time). Returns at once; the rotation runs in the background.
    pub fn recycle(&self, name: &str) -> Result<(), SupervisorError> {
        let tx = self.sender(name)?;
        let ctl = self.ctl(name)?;
        if ctl.pool().state() != PoolState::Started {
            return Err(SupervisorError::NotStarted(name.to_string()));
        }
        tx.send(manager::Event::Cmd(Command::Recycle))
            .map_err(|_| SupervisorError::UnknownPool(name.to_string()))
    }

    /// Start a pool stopped by an operator or by rapid-fail protection (clears the
    /// failure window). `alwaysRunning` pools start their workers now; `onDemand` pools
    /// on the next request.
    pub fn start_pool(&self, name: &str) -> Result<(), SupervisorError> {
        let tx = self.sender(name)?;
        // Set now, not in the manager task, so the caller's next request is admitted.
        self.ctl(name)?.pool().set_state(PoolState::Started);
        tx.send(manager::Event::Cmd(Command::Start))
            .map_err(|_| SupervisorError::UnknownPool(name.to_string()))
    }

    /// Stop a pool: new requests get 503 `Disabled`, its workers are drained and stopped.
    pub fn stop_pool(&self, name: &str) -> Result<(), SupervisorError> {
        let tx = self.sender(name)?;
        self.ctl(name)?.pool().set_state(PoolState::Stopped);
        tx.send(manager::Event::Cmd(Command::Stop))
            .map_err(|_| SupervisorError::UnknownPool(name.to_string()))
    }

    /// The pool's workers, failures, recycles and counters; `None` if not supervised.
    pub fn status(&self, name: &str) -> Option<PoolStatus> {
        let ctl = self.ctl(name).ok()?;
        Some(ctl.status())
    }

    /// Names of the supervised pools.
    pub fn pools(&self) -> Vec<String> {
        let mut v: Vec<String> = self.pools.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// Stop every worker of every pool (drain, SIGTERM, SIGKILL after
    /// shutdownTimeLimit) and remove the runtime directory if we created it.
    pub async fn shutdown(&self) {
        let mut tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.detached.lock());
        for name in self.pools() {
            tasks.extend(self.detach(&name));
        }
        futures_util::future::join_all(tasks).await;
        if self.own_runtime_dir {
            let _ = tokio::fs::remove_dir_all(&self.runtime_dir).await;
        }
    }

    fn sender(&self, name: &str) -> Result<mpsc::UnboundedSender<manager::Event>, SupervisorError> {
        self.pools
            .lock()
            .get(name)
            .map(|m| m.tx.clone())
            .ok_or_else(|| SupervisorError::UnknownPool(name.to_string()))
    }

    fn ctl(&self, name: &str) -> Result<Arc<PoolCtl>, SupervisorError> {
        self.pools
            .lock()
            .get(name)
            .map(|m| m.ctl.clone())
            .ok_or_else(|| SupervisorError::UnknownPool(name.to_string()))
    }
}

/// The front tells the supervisor about pools as configs load and reload: garden pools
/// are managed (or reconfigured), farm pools and removed pools are let go.
impl crate::pool::PoolHooks for Supervisor {
    fn pool_added(&self, pool: &Arc<Pool>, cfg: &model::Pool, _previous: Option<&model::Pool>) {
        self.reconfigure(pool.clone(), cfg);
    }

    fn pool_removed(&self, pool: &Arc<Pool>) {
        if let Some(task) = self.detach(pool.name()) {
            self.detached.lock().push(task);
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Dropped without a shutdown (an error path of the front): do not leave
        // workers running behind us.
        for (_, m) in self.pools.lock().drain() {
            m.ctl.kill_all();
            m.task.abort();
        }
    }
}
