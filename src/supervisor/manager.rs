//! The per-pool manager: one tokio task that owns the pool's worker table and reacts to
//! events (a worker spawned / became ready / failed / exited, a ping failed, commands
//! from the API) and to a periodic tick (recycle triggers, idle timeout, memory).
//!
//! All decisions happen in this task, under one short mutex that `status()` also reads;
//! anything slow (starting, pinging, draining and stopping a worker) runs in its own
//! task that reports back through the event channel. Each worker's child process is
//! owned by its own task (see `process::spawn`), so the manager never waits on one.

use super::policy::{self, Backoff, RapidFail};
use super::process::{self, Listen, Sig};
use super::{FailureRecord, PoolStatus, RecycleRecord, WorkerStatus, HISTORY};
use crate::config::model::{
    self, Backend, ProcessModel, StartMode, UpstreamTimeouts, WorkerListen,
};
use crate::pool::{Member, Pool, PoolState};
use crate::upstream::Client;
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

/// How often recycle triggers and the idle timeout are checked.
const TICK: Duration = Duration::from_millis(250);
/// Memory is sampled every this many ticks when a privateMemory limit needs it (1 s),
/// else every [`MEMORY_EVERY_IDLE`] (5 s) for the status. Walking a big process's page
/// tables for smaps_rollup is not free.
const MEMORY_EVERY: u64 = 4;
const MEMORY_EVERY_IDLE: u64 = 20;
/// Between SIGTERM and SIGKILL (never longer than shutdownTimeLimit).
const TERM_GRACE: Duration = Duration::from_secs(10);

pub(crate) enum Command {
    Reconfigure(Arc<Pool>, Box<model::Pool>),
    Recycle,
    Start,
    Stop,
    Shutdown(oneshot::Sender<()>),
}

pub(crate) enum Event {
    Cmd(Command),
    /// The child exists; from now on it will report `Exited` exactly once.
    Spawned {
        id: u64,
        pid: u32,
        ctl: mpsc::UnboundedSender<Sig>,
    },
    /// No child was created (bad command, runtime directory, identity...).
    NotSpawned {
        id: u64,
        detail: String,
    },
    Ready {
        id: u64,
        member: Arc<Member>,
    },
    StartFailed {
        id: u64,
        detail: String,
    },
    Exited {
        id: u64,
        detail: String,
    },
    PingFailed {
        id: u64,
        detail: String,
    },
    Memory {
        id: u64,
        kib: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    Stopping,
}

struct Worker {
    id: u64,
    /// Config generation it was started with; older ones are recycled on reconfigure.
    generation: u64,
    pool: Arc<Pool>,
    pid: Option<u32>,
    ctl: Option<mpsc::UnboundedSender<Sig>>,
    phase: Phase,
    started: Instant,
    ready_at: Option<Instant>,
    member: Option<Arc<Member>>,
    /// A failure was already counted for it; its exit is not another one.
    failed: bool,
    /// Marked for recycling, with the reason; rotated when its turn comes.
    recycle: Option<&'static str>,
    /// Overlapped rotation: still serving while its replacement starts.
    retiring: bool,
    memory_kib: Option<u64>,
    startup: Option<AbortHandle>,
    pinger: Option<AbortHandle>,
    stopper: Option<AbortHandle>,
}

impl Worker {
    fn stopping(&self) -> bool {
        self.phase == Phase::Stopping
    }
}

/// One recycle in progress (they run one at a time, so a garden never loses all its
/// members at once).
struct Rotation {
    old: u64,
    new: Option<u64>,
    overlapped: bool,
    old_gone: bool,
}

pub(crate) struct State {
    name: String,
    pool: Arc<Pool>,
    cfg: model::Pool,
    generation: u64,
    roost_exe: PathBuf,
    runtime_dir: PathBuf,
    tx: mpsc::UnboundedSender<Event>,
    workers: BTreeMap<u64, Worker>,
    /// Shared by every pool of the supervisor: ids (and so socket names) are never
    /// reused, even by a pool that is re-added while its old workers still stop.
    next_id: Arc<AtomicU64>,
    /// Workers should be running: always for alwaysRunning, after demand for onDemand.
    wanted: bool,
    shutdown_waiters: Option<Vec<oneshot::Sender<()>>>,
    rotation: Option<Rotation>,
    backoff: Backoff,
    next_start_at: Option<Instant>,
    rapid: RapidFail,
    last_schedule_check: Option<u32>,
    failures: VecDeque<FailureRecord>,
    recycles: VecDeque<RecycleRecord>,
    starts_total: u64,
    failures_total: BTreeMap<String, u64>,
    recycles_total: BTreeMap<String, u64>,
}

/// The part of a managed pool that the API reads.
pub(crate) struct PoolCtl {
    st: Mutex<State>,
}

impl PoolCtl {
    pub(crate) fn pool(&self) -> Arc<Pool> {
        self.st.lock().pool.clone()
    }

    pub(crate) fn status(&self) -> PoolStatus {
        let st = self.st.lock();
        let state = match st.pool.state() {
            PoolState::Started => "Started",
            PoolState::Stopped => "Stopped",
            PoolState::AppOffline => "AppOffline",
        };
        let workers = st
            .workers
            .values()
            .map(|w| {
                let active = w.member.as_ref().map(|m| m.active()).unwrap_or(0);
                let state = match w.phase {
                    Phase::Starting => "starting",
                    Phase::Running if w.retiring => "retiring",
                    Phase::Running => "running",
                    Phase::Stopping if active > 0 => "draining",
                    Phase::Stopping => "stopping",
                };
                WorkerStatus {
                    id: w.id,
                    pid: w.pid,
                    uptime_s: w.started.elapsed().as_secs_f64(),
                    requests: w.member.as_ref().map(|m| m.served()).unwrap_or(0),
                    active,
                    memory_kib: w.memory_kib,
                    state: state.to_string(),
                }
            })
            .collect();
        PoolStatus {
            name: st.name.clone(),
            state: state.to_string(),
            workers,
            last_failures: st.failures.iter().cloned().collect(),
            recycle_history: st.recycles.iter().cloned().collect(),
            worker_starts_total: st.starts_total,
            worker_failures_total: st.failures_total.clone(),
            recycles_total: st.recycles_total.clone(),
        }
    }

    /// Last resort when the supervisor is dropped without a shutdown.
    pub(crate) fn kill_all(&self) {
        for w in self.st.lock().workers.values() {
            if let Some(ctl) = &w.ctl {
                let _ = ctl.send(Sig::Kill);
            }
        }
    }
}

pub(crate) fn start(
    pool: Arc<Pool>,
    cfg: model::Pool,
    roost_exe: PathBuf,
    runtime_dir: PathBuf,
    next_id: Arc<AtomicU64>,
) -> (Arc<PoolCtl>, mpsc::UnboundedSender<Event>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    if let Backend::Garden(pm) = &cfg.backend {
        if (pm.user.is_some() || pm.group.is_some()) && !nix::unistd::geteuid().is_root() {
            tracing::warn!(pool = %cfg.name, "processModel user/group ignored: roost is not running as root");
        }
    }
    let wanted = cfg.start_mode == StartMode::AlwaysRunning;
    let ctl = Arc::new(PoolCtl {
        st: Mutex::new(State {
            name: cfg.name.clone(),
            pool,
            cfg,
            generation: 0,
            roost_exe,
            runtime_dir,
            tx: tx.clone(),
            workers: BTreeMap::new(),
            next_id,
            wanted,
            shutdown_waiters: None,
            rotation: None,
            backoff: Backoff::default(),
            next_start_at: None,
            rapid: RapidFail::default(),
            last_schedule_check: None,
            failures: VecDeque::new(),
            recycles: VecDeque::new(),
            starts_total: 0,
            failures_total: BTreeMap::new(),
            recycles_total: BTreeMap::new(),
        }),
    });
    let task = tokio::spawn(run(ctl.clone(), rx));
    (ctl, tx, task)
}

async fn run(ctl: Arc<PoolCtl>, mut rx: mpsc::UnboundedReceiver<Event>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    ctl.st.lock().reconcile();
    loop {
        let (pool, listen_demand, wake_at) = {
            let st = ctl.st.lock();
            let listen = st.shutdown_waiters.is_none()
                && !st.wanted
                && st.cfg.start_mode == StartMode::OnDemand
                && st.pool.state() == PoolState::Started;
            (st.pool.clone(), listen, st.next_start_at)
        };
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => ctl.st.lock().handle(ev),
                None => break,
            },
            _ = tick.tick() => {
                ticks += 1;
                ctl.st.lock().on_tick(ticks);
            }
            _ = pool.demanded(), if listen_demand => {
                let mut st = ctl.st.lock();
                tracing::info!(pool = %st.name, "request waiting: starting workers on demand");
                st.wanted = true;
            }
            _ = tokio::time::sleep_until(wake_at.unwrap_or_else(Instant::now).into()), if wake_at.is_some() => {
                ctl.st.lock().next_start_at = None;
            }
        }
        let mut st = ctl.st.lock();
        st.reconcile();
        if st.shutdown_waiters.is_some() && st.workers.is_empty() {
            for w in st.shutdown_waiters.take().unwrap_or_default() {
                let _ = w.send(());
            }
            break;
        }
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn process_model(cfg: &model::Pool) -> &ProcessModel {
    match &cfg.backend {
        Backend::Garden(pm) => pm,
        // `Supervisor::manage` only ever hands us garden pools.
        Backend::Farm(_) => unreachable!("farm pools are not supervised"),
    }
}

/// What a worker runs with; a change to any of it needs new workers.
fn worker_shape(cfg: &model::Pool) -> (&Backend, &UpstreamTimeouts, &Vec<String>) {
    (&cfg.backend, &cfg.timeouts, &cfg.initialization_pages)
}

/// A pool name as a directory name: short and harmless.
fn dir_name(pool: &str) -> String {
    let s: String = pool
        .chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Dots never survive, so neither `.` nor `..` can name a directory.
    if s.is_empty() {
        "p".to_string()
    } else {
        s
    }
}

impl State {
    fn pm(&self) -> &ProcessModel {
        process_model(&self.cfg)
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Cmd(c) => self.command(c),
            Event::Spawned { id, pid, ctl } => {
                let Some(w) = self.workers.get_mut(&id) else {
                    let _ = ctl.send(Sig::Kill);
                    return;
                };
                tracing::info!(pool = %self.name, worker = id, pid, "worker spawned");
                if w.stopping() {
                    let _ = ctl.send(Sig::Kill);
                }
                w.pid = Some(pid);
                w.ctl = Some(ctl);
            }
            Event::NotSpawned { id, detail } => {
                if let Some(w) = self.workers.remove(&id) {
                    if !w.stopping() {
                        self.record_failure("startup", detail);
                    }
                    self.forget_new(id);
                }
            }
            Event::Ready { id, member } => self.on_ready(id, member),
            Event::StartFailed { id, detail } => {
                let Some(w) = self.workers.get_mut(&id) else {
                    return;
                };
                if w.stopping() || w.failed {
                    return;
                }
                w.failed = true;
                self.begin_stop(id, true);
                self.forget_new(id);
                self.record_failure("startup", detail);
            }
            Event::PingFailed { id, detail } => {
                let Some(w) = self.workers.get_mut(&id) else {
                    return;
                };
                if w.stopping() || w.failed {
                    return;
                }
                w.failed = true;
                tracing::warn!(pool = %self.name, worker = id, pid = w.pid.unwrap_or_default(), %detail, "worker failed its ping: replacing it");
                self.begin_stop(id, true);
                self.record_failure("ping", detail);
            }
            Event::Exited { id, detail } => self.on_exit(id, detail),
            Event::Memory { id, kib } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.memory_kib = Some(kib);
                }
            }
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Reconfigure(pool, cfg) => self.reconfigure(pool, *cfg),
            Command::Recycle => {
                let mut n = 0;
                for w in self.workers.values_mut() {
                    if w.phase == Phase::Running && !w.retiring && w.recycle.is_none() {
                        w.recycle = Some("manual");
                        n += 1;
                    }
                }
                tracing::info!(pool = %self.name, workers = n, "recycle requested");
            }
            Command::Start => {
                self.pool.set_state(PoolState::Started);
                self.rapid.reset();
                self.backoff.reset();
                self.next_start_at = None;
                // An onDemand pool waits for a request, unless it is already running
                // (starting a started pool changes nothing).
                self.wanted = self.cfg.start_mode == StartMode::AlwaysRunning
                    || self.workers.values().any(|w| !w.stopping());
                tracing::info!(pool = %self.name, "pool started");
            }
            Command::Stop => {
                self.pool.set_state(PoolState::Stopped);
                self.wanted = false;
                self.stop_all();
                tracing::info!(pool = %self.name, "pool stopped");
            }
            Command::Shutdown(reply) => {
                self.wanted = false;
                self.shutdown_waiters
                    .get_or_insert_with(Vec::new)
                    .push(reply);
                self.stop_all();
            }
        }
    }

    fn reconfigure(&mut self, pool: Arc<Pool>, cfg: model::Pool) {
        if !Arc::ptr_eq(&pool, &self.pool) {
            // A new pool object: the old one's members go with it.
            self.stop_all();
            self.pool = pool;
        }
        let reshaped = worker_shape(&self.cfg) != worker_shape(&cfg);
        let changed = self.cfg != cfg;
        self.cfg = cfg;
        if reshaped {
            self.generation += 1;
            let g = self.generation;
            let mut n = 0;
            for w in self.workers.values_mut() {
                if !w.stopping() && w.generation < g && w.recycle.is_none() {
                    w.recycle = Some("configChange");
                    n += 1;
                }
            }
            tracing::info!(pool = %self.name, workers = n, "configuration changed: recycling workers");
        }
        if changed && self.pool.state() == PoolState::AppOffline {
            tracing::info!(pool = %self.name, "configuration changed: starting the pool that rapid-fail protection stopped");
            self.pool.set_state(PoolState::Started);
            self.rapid.reset();
            self.backoff.reset();
            self.next_start_at = None;
        }
        if self.cfg.start_mode == StartMode::AlwaysRunning
            && self.pool.state() == PoolState::Started
        {
            self.wanted = true;
        }
    }

    fn on_ready(&mut self, id: u64, member: Arc<Member>) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if w.phase != Phase::Starting {
            return;
        }
        w.phase = Phase::Running;
        w.ready_at = Some(Instant::now());
        w.startup = None;
        w.member = Some(member.clone());
        w.pool.add_member(member.clone());
        tracing::info!(pool = %self.name, worker = id, pid = w.pid.unwrap_or_default(), took_ms = w.started.elapsed().as_millis() as u64, "worker ready");
        let pm = process_model(&self.cfg);
        if pm.pinging_enabled {
            let timeouts = UpstreamTimeouts {
                connect: pm.ping_response_time,
                first_byte: pm.ping_response_time,
                idle: pm.ping_interval + Duration::from_secs(5),
            };
            let client = Client::new(member.client.endpoint().clone(), &timeouts);
            let path = process::ping_path(pm);
            let (interval, limit, tx) = (pm.ping_interval, pm.ping_response_time, self.tx.clone());
            let pid = w.pid;
            let h = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    if let Err(detail) = process::probe(&client, path.as_deref(), limit, true).await
                    {
                        // A worker that died is not a ping failure: its exit is reported
                        // (as a crash) once it is reaped.
                        if let Some(pid) = pid {
                            if process::is_dead(pid).await {
                                return;
                            }
                        }
                        let _ = tx.send(Event::PingFailed { id, detail });
                        return;
                    }
                }
            });
            w.pinger = Some(h.abort_handle());
        }
        if let Some(r) = &mut self.rotation {
            if r.new == Some(id) {
                if r.overlapped {
                    let old = r.old;
                    self.begin_stop(old, false);
                } else {
                    self.rotation = None;
                }
            }
        }
    }

    fn on_exit(&mut self, id: u64, detail: String) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        if let Some(m) = &w.member {
            w.pool.remove_member(m);
        }
        for h in [&w.startup, &w.pinger, &w.stopper].into_iter().flatten() {
            h.abort();
        }
        if w.stopping() || w.failed {
            tracing::info!(pool = %self.name, worker = id, pid = w.pid.unwrap_or_default(), how = %detail, "worker stopped");
        } else {
            let kind = if w.phase == Phase::Starting {
                "startup"
            } else {
                "crash"
            };
            tracing::warn!(pool = %self.name, worker = id, pid = w.pid.unwrap_or_default(), how = %detail, kind, "worker exited unexpectedly");
            self.record_failure(kind, format!("pid {}: {detail}", w.pid.unwrap_or(0)));
        }
        if let Some(r) = &mut self.rotation {
            if r.old == id {
                if r.overlapped {
                    self.rotation = None;
                } else {
                    r.old_gone = true;
                }
            } else if r.new == Some(id) {
                r.new = None;
            }
        }
    }

    /// A replacement that failed no longer stands for the rotation's new worker; the
    /// next start takes its place.
    fn forget_new(&mut self, id: u64) {
        if let Some(r) = &mut self.rotation {
            if r.new == Some(id) {
                r.new = None;
            }
        }
    }

    fn record_failure(&mut self, kind: &'static str, detail: String) {
        let now = Instant::now();
        *self.failures_total.entry(kind.to_string()).or_default() += 1;
        self.failures.push_back(FailureRecord {
            at: now_rfc3339(),
            kind: kind.to_string(),
            detail,
        });
        while self.failures.len() > HISTORY {
            self.failures.pop_front();
        }
        let delay = self.backoff.on_failure(now);
        self.next_start_at = Some(now + delay);
        let f = &self.cfg.failure;
        if f.rapid_fail_protection
            && self.rapid.on_failure(
                now,
                f.rapid_fail_protection_interval,
                f.rapid_fail_protection_max_crashes,
            )
            && self.pool.state() == PoolState::Started
        {
            tracing::error!(
                pool = %self.name,
                failures = self.rapid.len(),
                interval = %humantime::format_duration(f.rapid_fail_protection_interval),
                "rapid-fail protection: pool taken offline"
            );
            self.pool.set_state(PoolState::AppOffline);
            self.wanted = false;
            self.stop_all();
        }
    }

    fn record_recycle(&mut self, worker: u64, reason: &'static str) {
        *self.recycles_total.entry(reason.to_string()).or_default() += 1;
        self.recycles.push_back(RecycleRecord {
            at: now_rfc3339(),
            reason: reason.to_string(),
            worker,
        });
        while self.recycles.len() > HISTORY {
            self.recycles.pop_front();
        }
    }

    fn stop_all(&mut self) {
        self.rotation = None;
        let ids: Vec<u64> = self.workers.keys().copied().collect();
        for id in ids {
            self.begin_stop(id, false);
        }
    }

    /// Take a worker out of service. `kill`: at once (it failed); otherwise drain it,
    /// wait for its requests (up to shutdownTimeLimit), SIGTERM, SIGKILL after a grace.
    fn begin_stop(&mut self, id: u64, kill: bool) {
        let pm = process_model(&self.cfg).clone();
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if w.stopping() {
            if kill {
                if let Some(ctl) = &w.ctl {
                    let _ = ctl.send(Sig::Kill);
                }
            }
            return;
        }
        w.phase = Phase::Stopping;
        w.retiring = false;
        if let Some(h) = w.pinger.take() {
            h.abort();
        }
        // Before the child exists the startup task must run on to report it (the new
        // child is then killed); after, it is only probing and can simply stop.
        if w.ctl.is_some() {
            if let Some(h) = w.startup.take() {
                h.abort();
            }
        }
        if kill {
            if let Some(m) = &w.member {
                w.pool.remove_member(m);
            }
            if let Some(ctl) = &w.ctl {
                let _ = ctl.send(Sig::Kill);
            }
            return;
        }
        let (pool, member, ctl) = (w.pool.clone(), w.member.clone(), w.ctl.clone());
        let limit = pm.shutdown_time_limit;
        let grace = TERM_GRACE.min(limit).max(Duration::from_millis(100));
        let name = self.name.clone();
        let h = tokio::spawn(async move {
            if let Some(m) = &member {
                pool.drain_member(m);
                let until = Instant::now() + limit;
                while m.active() > 0 && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if m.active() > 0 {
                    tracing::warn!(pool = %name, worker = id, active = m.active(), "shutdownTimeLimit reached with requests in flight");
                }
            }
            let Some(ctl) = ctl else { return };
            let _ = ctl.send(Sig::Term);
            tokio::time::sleep(grace).await;
            let _ = ctl.send(Sig::Kill);
        });
        w.stopper = Some(h.abort_handle());
    }

    /// Once a second: memory samples, the pool's state, recycle triggers, idle timeout,
    /// and the next rotation.
    fn on_tick(&mut self, ticks: u64) {
        self.sample_memory(ticks);
        if self.shutdown_waiters.is_some() || !self.follow_pool_state() {
            return;
        }
        self.mark_recycles();
        if self.idle_timed_out() {
            tracing::info!(pool = %self.name, idle = %humantime::format_duration(self.pm().idle_timeout), "idle timeout: stopping workers");
            self.wanted = false;
            self.stop_all();
            return;
        }
        if self.rotation.is_none() {
            let next = self
                .workers
                .values()
                .filter(|w| w.phase == Phase::Running && w.recycle.is_some())
                .map(|w| (w.id, w.recycle.unwrap_or("manual")))
                .next();
            if let Some((id, reason)) = next {
                self.begin_rotation(id, reason);
            }
        }
    }

    /// Every worker's private memory, often when a limit is set, rarely otherwise.
    fn sample_memory(&self, ticks: u64) {
        let every = if self.cfg.recycling.private_memory_kib > 0 {
            MEMORY_EVERY
        } else {
            MEMORY_EVERY_IDLE
        };
        // The first sample comes soon after a start, whatever the cadence.
        if !ticks.is_multiple_of(every) && ticks != MEMORY_EVERY {
            return;
        }
        let pids: Vec<(u64, u32)> = self
            .workers
            .values()
            .filter_map(|w| w.pid.map(|p| (w.id, p)))
            .collect();
        if pids.is_empty() {
            return;
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            for (id, pid) in pids {
                if let Some(kib) = process::private_memory_kib(pid).await {
                    let _ = tx.send(Event::Memory { id, kib });
                }
            }
        });
    }

    /// Follow the pool's state when someone else changed it (the front stops a removed
    /// pool; an operator tool may set it directly). `false`: the pool is not started.
    fn follow_pool_state(&mut self) -> bool {
        if self.pool.state() != PoolState::Started {
            if self.workers.values().any(|w| !w.stopping()) {
                tracing::info!(pool = %self.name, state = ?self.pool.state(), "pool no longer started: stopping workers");
                self.wanted = false;
                self.stop_all();
            }
            return false;
        }
        if !self.wanted && self.cfg.start_mode == StartMode::AlwaysRunning {
            tracing::info!(pool = %self.name, "pool started again: starting workers");
            self.wanted = true;
            self.rapid.reset();
            self.backoff.reset();
            self.next_start_at = None;
        }
        true
    }

    /// Whether a configured time of day passed since the last tick (local clock).
    fn schedule_crossed(&mut self) -> bool {
        let schedule = &self.cfg.recycling.schedule;
        if schedule.is_empty() {
            self.last_schedule_check = None;
            return false;
        }
        let sod = policy::local_seconds_of_day(SystemTime::now());
        let crossed = self.last_schedule_check.is_some_and(|prev| {
            schedule
                .iter()
                .any(|&at| policy::schedule_crossed(prev, sod, at))
        });
        self.last_schedule_check = Some(sod);
        crossed
    }

    /// Mark running workers due for a recycle: schedule, time, requests, private memory.
    fn mark_recycles(&mut self) {
        let rec = self.cfg.recycling.clone();
        let scheduled = self.schedule_crossed();
        for w in self.workers.values_mut() {
            if w.phase != Phase::Running || w.retiring || w.recycle.is_some() {
                continue;
            }
            let served = w.member.as_ref().map(|m| m.served()).unwrap_or(0);
            let up = w.ready_at.map(|t| t.elapsed()).unwrap_or_default();
            w.recycle = if scheduled {
                Some("schedule")
            } else if !rec.time.is_zero() && up >= rec.time {
                Some("time")
            } else if rec.requests > 0 && served >= rec.requests {
                Some("requests")
            } else if rec.private_memory_kib > 0
                && w.memory_kib.is_some_and(|k| k > rec.private_memory_kib)
            {
                Some("privateMemory")
            } else {
                None
            };
        }
    }

    /// An onDemand pool idle for idleTimeout (the next request starts it again).
    fn idle_timed_out(&self) -> bool {
        let pm = self.pm();
        self.cfg.start_mode == StartMode::OnDemand
            && !pm.idle_timeout.is_zero()
            && self.workers.values().any(|w| !w.stopping())
            && self.pool.idle_for() >= pm.idle_timeout
            // A worker counts as idle only once it has been up for the whole timeout:
            // one that was just started for a request has not been idle yet.
            && self.workers.values().filter(|w| !w.stopping()).all(|w| {
                w.ready_at.is_some_and(|t| t.elapsed() >= pm.idle_timeout)
                    && w.member.as_ref().is_none_or(|m| m.active() == 0)
            })
    }

    fn begin_rotation(&mut self, id: u64, reason: &'static str) {
        let overlapped = !self.cfg.recycling.disallow_overlapping_rotation;
        self.record_recycle(id, reason);
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        tracing::info!(pool = %self.name, worker = id, pid = w.pid.unwrap_or_default(), reason, overlapped, "recycling worker");
        self.rotation = Some(Rotation {
            old: id,
            new: None,
            overlapped,
            old_gone: false,
        });
        if overlapped {
            w.retiring = true;
        } else {
            self.begin_stop(id, false);
        }
    }

    /// Start workers until the pool has its `maxProcesses`, when it should run at all.
    fn reconcile(&mut self) {
        if self.shutdown_waiters.is_some()
            || !self.wanted
            || self.pool.state() != PoolState::Started
        {
            return;
        }
        let max = self.pm().max_processes.max(1);
        let mut live: Vec<u64> = self
            .workers
            .values()
            .filter(|w| !w.stopping() && !w.retiring)
            .map(|w| w.id)
            .collect();
        let mut slots = live.len();
        if let Some(r) = &self.rotation {
            // Without overlap the replacement waits until the old worker is gone.
            if !r.overlapped && !r.old_gone {
                slots += 1;
            }
        }
        if live.len() > max {
            // Fewer processes configured: stop the newest extras.
            live.sort_unstable();
            for id in live.split_off(max) {
                self.begin_stop(id, false);
            }
            return;
        }
        if slots >= max {
            return;
        }
        if self.next_start_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.next_start_at = None;
        for _ in slots..max {
            self.start_worker();
        }
    }

    fn start_worker(&mut self) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.starts_total += 1;
        let ctx = StartCtx {
            id,
            pool_name: self.name.clone(),
            cfg: self.cfg.clone(),
            roost_exe: self.roost_exe.clone(),
            runtime_dir: self.runtime_dir.clone(),
            tx: self.tx.clone(),
        };
        let h = tokio::spawn(startup(ctx));
        self.workers.insert(
            id,
            Worker {
                id,
                generation: self.generation,
                pool: self.pool.clone(),
                pid: None,
                ctl: None,
                phase: Phase::Starting,
                started: Instant::now(),
                ready_at: None,
                member: None,
                failed: false,
                recycle: None,
                retiring: false,
                memory_kib: None,
                startup: Some(h.abort_handle()),
                pinger: None,
                stopper: None,
            },
        );
        if let Some(r) = &mut self.rotation {
            if r.new.is_none() && (r.overlapped || r.old_gone) {
                r.new = Some(id);
            }
        }
    }
}

struct StartCtx {
    id: u64,
    pool_name: String,
    cfg: model::Pool,
    roost_exe: PathBuf,
    runtime_dir: PathBuf,
    tx: mpsc::UnboundedSender<Event>,
}

/// Start one worker: identity, listen address, spawn, wait for its ping, run the
/// initialization pages, then hand the manager a member to add.
async fn startup(ctx: StartCtx) {
    let pm = process_model(&ctx.cfg).clone();
    let not_spawned = |detail: String| {
        let _ = ctx.tx.send(Event::NotSpawned { id: ctx.id, detail });
    };
    // Blocking look-ups and file-system work stay off the runtime threads.
    let prep = {
        let (pm, pool_name, dir, id) = (
            pm.clone(),
            ctx.pool_name.clone(),
            ctx.runtime_dir.clone(),
            ctx.id,
        );
        tokio::task::spawn_blocking(move || prepare(&pm, &pool_name, &dir, id)).await
    };
    let (identity, listen) = match prep {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return not_spawned(e),
        Err(e) => return not_spawned(format!("preparing worker: {e}")),
    };
    let spec = process::spawn_spec(&ctx.cfg, &pm, &ctx.roost_exe, &listen, ctx.id);
    let sp = match spawn_worker(&ctx, &spec, identity, &listen) {
        Ok(sp) => sp,
        Err(e) => return not_spawned(format!("spawning {}: {e}", spec.program.display())),
    };
    let deadline = Instant::now() + pm.startup_time_limit;
    let client = Client::new(listen.endpoint(), &ctx.cfg.timeouts);
    if !wait_ready(&ctx, &pm, &sp, &client, deadline).await {
        return;
    }
    warm_up(&ctx, &client, deadline, sp.pid).await;
    let member = Member::new(
        format!("{}/w{}", ctx.pool_name, ctx.id),
        Some(sp.pid),
        client,
        pm.max_concurrent_requests_per_process.max(1),
        1,
    );
    let _ = ctx.tx.send(Event::Ready { id: ctx.id, member });
}

/// The worker's identity (`user`/`group`) and where it listens: a free loopback port, or
/// a socket in the pool's private directory (created with the modes another uid needs).
fn prepare(
    pm: &ProcessModel,
    pool_name: &str,
    runtime_dir: &Path,
    id: u64,
) -> Result<(Option<(u32, u32)>, Listen), String> {
    let identity = process::resolve_identity(pm.user.as_deref(), pm.group.as_deref())?;
    let listen = match pm.listen {
        WorkerListen::Tcp => {
            Listen::Tcp(process::free_tcp_port().map_err(|e| format!("free port: {e}"))?)
        }
        WorkerListen::Unix => {
            // Another uid must be able to pass through the top directory to
            // reach its own pool directory, but not list it.
            let top_mode = if identity.is_some() { 0o711 } else { 0o700 };
            process::ensure_private_dir(runtime_dir, top_mode, None, false)
                .map_err(|e| format!("runtime dir {}: {e}", runtime_dir.display()))?;
            if let Some((uid, _)) = identity {
                process::check_reachable(runtime_dir, uid)?;
            }
            let dir = runtime_dir.join(dir_name(pool_name));
            process::ensure_private_dir(&dir, 0o700, identity, true)
                .map_err(|e| format!("runtime dir {}: {e}", dir.display()))?;
            let path = dir.join(format!("w{id}.sock"));
            if path.as_os_str().len() >= 100 {
                return Err(format!(
                    "socket path {} is too long for a Unix socket; set a shorter runtime directory",
                    path.display()
                ));
            }
            let _ = std::fs::remove_file(&path);
            Listen::Unix(path)
        }
    };
    Ok((identity, listen))
}

/// Spawn the process; the manager hears of its pid and, later, of its exit.
fn spawn_worker(
    ctx: &StartCtx,
    spec: &process::SpawnSpec,
    identity: Option<(u32, u32)>,
    listen: &Listen,
) -> std::io::Result<process::Spawned> {
    let socket = match listen {
        Listen::Unix(p) => Some(p.clone()),
        Listen::Tcp(_) => None,
    };
    let (id, tx, exit_tx) = (ctx.id, ctx.tx.clone(), ctx.tx.clone());
    process::spawn(
        spec,
        identity,
        &ctx.pool_name,
        socket,
        move |pid, ctl| {
            let _ = tx.send(Event::Spawned { id, pid, ctl });
        },
        move |how| {
            let _ = exit_tx.send(Event::Exited { id, detail: how });
        },
    )
}

/// Ready when the ping answers 2xx (or a connect succeeds) by `deadline`
/// (startupTimeLimit). `false`: it exited (its exit event reports that) or was not ready
/// in time (reported here).
async fn wait_ready(
    ctx: &StartCtx,
    pm: &ProcessModel,
    sp: &process::Spawned,
    client: &Client,
    deadline: Instant,
) -> bool {
    let path = process::ping_path(pm);
    let mut delay = Duration::from_millis(10);
    let mut last_err = String::from("never probed");
    loop {
        if sp.exited.borrow().is_some() {
            return false;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            let _ = ctx.tx.send(Event::StartFailed {
                id: ctx.id,
                detail: format!(
                    "pid {}: not ready within startupTimeLimit {} ({last_err})",
                    sp.pid,
                    humantime::format_duration(pm.startup_time_limit)
                ),
            });
            return false;
        }
        match process::probe(client, path.as_deref(), remaining, false).await {
            Ok(()) => return true,
            Err(e) => last_err = e,
        }
        tokio::time::sleep(delay.min(remaining)).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// Application Initialization: warm the worker up before it gets traffic (each page
/// gets what is left of the start-up time, at least a second).
async fn warm_up(ctx: &StartCtx, client: &Client, deadline: Instant, pid: u32) {
    let (pool, id) = (&ctx.pool_name, ctx.id);
    for page in &ctx.cfg.initialization_pages {
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        match tokio::time::timeout(remaining, process::get(client, page)).await {
            Ok(Ok(status)) => {
                tracing::info!(pool = %pool, worker = id, pid, page = %page, %status, "initialization page")
            }
            Ok(Err(e)) => {
                tracing::warn!(pool = %pool, worker = id, pid, page = %page, error = %e, "initialization page failed")
            }
            Err(_) => {
                tracing::warn!(pool = %pool, worker = id, pid, page = %page, "initialization page timed out")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dir_name;

    #[test]
    fn pool_names_become_safe_directory_names() {
        assert_eq!(dir_name("api"), "api");
        assert_eq!(dir_name("a/b c"), "a_b_c");
        assert_eq!(dir_name(".."), "__");
        assert_eq!(dir_name(""), "p");
        assert_eq!(dir_name(&"x".repeat(100)).len(), 32);
    }
}
