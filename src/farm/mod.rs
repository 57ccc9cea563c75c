//! Web farms (the ARR role): a pool's members are remote servers, from `farm.servers` and
//! from DNS discovery.
//!
//! What lives here:
//! - [`sync_members`]: configured servers → pool members, kept in step with reloads
//!   (unchanged servers keep their member, connections and health; removed ones drain).
//! - [`FarmState`], kept with the pool as its `pool::FarmPolicy`: per-server health
//!   (active checks, passive outlier ejection, slow-start ramp), the affinity cookie
//!   map, the retry budget.
//! - [`FarmHooks`]: the `pool::PoolHooks` that runs each farm pool's health-check and
//!   discovery tasks.
//! - [`request`]: what the proxy asks per request (hash key, affinity, retries, outcomes).
//! - [`server_states`], [`drain_server`]: for the admin API and metrics.
//!
//! The YAML surface (`pools.<name>.farm`, defaults in parentheses):
//!
//! ```yaml
//! farm:
//!   servers:                      # optional when `discovery` is set
//!     - {address: "10.0.0.5:8080", weight: 1, maxConcurrentRequests: 100, backup: false}
//!     - {address: "https://api.internal:8443"}
//!   loadBalancing: roundRobin     # leastRequests, powerOfTwoChoices, leastResponseTime, random, hash
//!   hashKey: {header: X-User}     # with hash: {header|cookie|query: NAME} or clientAddress
//!   healthCheck: {path: /health, interval: 30s, timeout: 5s, expectedStatus: "200-399",
//!                 responseMatch: ok, healthyThreshold: 2, unhealthyThreshold: 3}
//!   outlierDetection: {consecutiveFailures: 5, baseEjectionTime: 30s, maxEjectionTime: 300s,
//!                      maxEjectionPercent: 50}   # passive health on every failure and 5xx;
//!                                # without it, the same numbers on gateway failures only
//!                                # (no response at all); maxEjectionPercent: 0 = off
//!   slowStart: 0s                 # ramp a returning server from 10% to full over this long
//!   affinity: {cookie: RoostAffinity}
//!   retries: {idempotent: true, budgetPercent: 20, minRetries: 3}
//!   tls: {caFile: ca.pem, clientCert: c.pem, clientKey: c.key, serverName: api.internal,
//!         insecureSkipVerify: false}
//!   discovery: {dns: "api.internal:8080", interval: 30s, weight: 1, maxConcurrentRequests: 100}
//! ```
//!
//! Health of a server = its last active verdict is good AND it is not ejected; the
//! member's `healthy` flag is derived from that and nothing else. A farm with no usable
//! server queues requests until `queueTimeout` (as HAProxy's backend queue does), so a
//! server that comes back within it serves them.

mod discovery;
mod health;
mod hooks;
pub mod request;
mod server;
mod tls;

pub use crate::pool::source::{LastCheck, Outcome, ServerState};
pub use hooks::FarmHooks;
pub use tls::{client_config, default_tls_client, server_name, TlsClientError};

use crate::config::model::{Farm, FarmTls, Server, UpstreamTimeouts};
use crate::pool::source::FarmConfig;
use crate::pool::{FarmPolicy, Member, Pool};
use crate::upstream::{Client, Endpoint};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use server::{ServerRt, Spec, WEIGHT_SCALE};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;

/// Everything the farm keeps beside its pool (held by the pool as its
/// [`FarmPolicy`], so it lives and survives reloads exactly as long as the pool does).
pub struct FarmState {
    /// Itself, for the tasks it starts (ejection timers, health checks, discovery).
    me: Weak<FarmState>,
    cfg: ArcSwap<FarmConfig>,
    /// Runtime state by member label (server address).
    servers: Mutex<HashMap<String, Arc<ServerRt>>>,
    /// Affinity cookie value → member label.
    cookies: ArcSwap<HashMap<String, String>>,
    budget: request::RetryBudget,
    tls_cache: Mutex<Option<(FarmTls, Arc<rustls::ClientConfig>)>>,
    /// Serializes ejection decisions so `maxEjectionPercent` holds under races.
    eject_lock: Mutex<()>,
    reconcile_lock: Mutex<()>,
    /// False once the pool stopped being a farm (a reload made it a garden); the state
    /// stays attached to the pool but is no longer consulted.
    active: std::sync::atomic::AtomicBool,
}

impl FarmState {
    fn new(cfg: FarmConfig) -> Arc<FarmState> {
        Arc::new_cyclic(|me| FarmState {
            me: me.clone(),
            cfg: ArcSwap::from_pointee(cfg),
            servers: Mutex::new(HashMap::new()),
            cookies: ArcSwap::from_pointee(HashMap::new()),
            budget: request::RetryBudget::default(),
            tls_cache: Mutex::new(None),
            eject_lock: Mutex::new(()),
            reconcile_lock: Mutex::new(()),
            active: std::sync::atomic::AtomicBool::new(true),
        })
    }

    pub(crate) fn server(&self, label: &str) -> Option<Arc<ServerRt>> {
        self.servers.lock().get(label).cloned()
    }

    fn all_servers(&self) -> Vec<Arc<ServerRt>> {
        self.servers.lock().values().cloned().collect()
    }

    /// The TLS client configuration for `t`, built once per distinct setting. A bundle
    /// that cannot be read fails closed: nothing is trusted, so connections fail (502).
    fn tls_client(&self, t: &FarmTls) -> Arc<rustls::ClientConfig> {
        let mut cache = self.tls_cache.lock();
        if let Some((k, c)) = cache.as_ref() {
            if k == t {
                return c.clone();
            }
        }
        let cfg = if *t == FarmTls::default() {
            default_tls_client()
        } else {
            match client_config(t) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "farm TLS settings unusable; TLS servers will fail to connect");
                    let empty = rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                    Arc::new(empty)
                }
            }
        };
        *cache = Some((t.clone(), cfg.clone()));
        cfg
    }

    fn rebuild_cookies(&self) {
        let map: HashMap<String, String> = self
            .servers
            .lock()
            .keys()
            .map(|label| (cookie_value(label), label.clone()))
            .collect();
        self.cookies.store(Arc::new(map));
    }

    /// Runtime state for `farm`'s servers: configured ones (spec refreshed), discovered
    /// ones kept while discovery is on.
    fn follow_servers(&self, farm: &Farm) {
        let mut servers = self.servers.lock();
        servers.retain(|label, rt| {
            let spec = rt.spec();
            if spec.discovered {
                farm.discovery.is_some() && !farm.servers.iter().any(|s| &s.address == label)
            } else {
                farm.servers.iter().any(|s| &s.address == label)
            }
        });
        for rt in servers.values() {
            // Without active checks nobody would ever bring a failed server back.
            if farm.health_check.is_none() {
                rt.clear_check();
            }
        }
        for s in &farm.servers {
            let spec = spec_of(s);
            match servers.get(&s.address) {
                Some(rt) => *rt.spec.lock() = spec,
                None => {
                    servers.insert(s.address.clone(), Arc::new(ServerRt::new(spec)));
                }
            }
        }
    }
}

impl FarmPolicy for FarmState {
    fn is_active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn config(&self) -> Arc<FarmConfig> {
        self.cfg.load_full()
    }

    fn sync(&self, pool: &Pool, cfg: FarmConfig) {
        self.active
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = &cfg.farm.tls.warning {
            tracing::warn!(pool = pool.name(), "{w}");
        }
        let old = self.cfg.swap(Arc::new(cfg));
        let cfg = self.config();
        let rebuild = old.farm.tls != cfg.farm.tls || old.timeouts != cfg.timeouts;
        self.follow_servers(&cfg.farm);
        reconcile(pool, self, rebuild);
    }

    fn release(&self, pool: &Pool) {
        if !self
            .active
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let labels: Vec<String> = self.servers.lock().drain().map(|(l, _)| l).collect();
        for m in pool.members() {
            if labels.contains(&m.label) {
                pool.remove_member(&m);
            }
        }
        self.rebuild_cookies();
    }

    fn start(self: Arc<Self>, pool: Weak<Pool>) -> Vec<AbortHandle> {
        let cfg = self.config();
        let mut tasks = Vec::new();
        if cfg.farm.health_check.is_some() {
            let run = health::run(pool.clone(), self.clone());
            tasks.push(tokio::spawn(run).abort_handle());
        }
        if cfg.farm.discovery.is_some() {
            tasks.push(tokio::spawn(discovery::run(pool, self)).abort_handle());
        }
        tasks
    }

    fn label_for_cookie(&self, value: &str) -> Option<String> {
        self.cookies.load().get(value).cloned()
    }

    fn note_request(&self, now: Instant) {
        self.budget.note_request(now);
    }

    fn try_retry(&self, now: Instant) -> bool {
        let cfg = self.config();
        let r = &cfg.farm.retries;
        self.budget.try_retry(now, r.budget_percent, r.min_retries)
    }

    fn retries(&self) -> u64 {
        self.budget.total_retries()
    }

    /// Passive health: a request's outcome on `member`. Failures in a row past
    /// `consecutiveFailures` eject the server (never more than `maxEjectionPercent` of the
    /// farm at once); the ejection ends by itself and the server ramps back. Without
    /// `outlierDetection`, [`DEFAULT_OUTLIER_DETECTION`] applies to gateway failures.
    fn note_outcome(&self, pool: &Arc<Pool>, member: &Member, outcome: Outcome) {
        let cfg = self.config();
        let (od, counts, at_least_one) = match cfg.farm.outlier_detection.as_ref() {
            Some(od) => (od, outcome != Outcome::Success, 1),
            None => (
                &DEFAULT_OUTLIER_DETECTION,
                outcome == Outcome::GatewayFailure,
                0,
            ),
        };
        let Some(rt) = self.server(&member.label) else {
            return;
        };
        if !counts {
            rt.note_success();
            return;
        }
        if rt.note_failure() < od.consecutive_failures {
            return;
        }
        let until = {
            let _g = self.eject_lock.lock();
            if rt.is_ejected() {
                return;
            }
            let servers = self.all_servers();
            let ejected = servers.iter().filter(|s| s.is_ejected()).count();
            let allowed = if od.max_ejection_percent == 0 {
                0
            } else {
                (servers.len() * od.max_ejection_percent as usize / 100).max(at_least_one)
            };
            if ejected >= allowed {
                tracing::warn!(pool = pool.name(), server = %member.label, ejected, "server keeps failing but maxEjectionPercent is reached; not ejected");
                rt.note_success();
                return;
            }
            let length = rt.eject(od.base_ejection_time, od.max_ejection_time);
            tracing::warn!(pool = pool.name(), server = %member.label, ejection = ?length, "server ejected after consecutive failures");
            rt.ejected_until()
        };
        apply_health(pool, self, &member.label, false);
        let Some(until) = until else {
            return;
        };
        let (weak, me) = (Arc::downgrade(pool), self.me.clone());
        let label = member.label.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
            let (Some(pool), Some(fs)) = (weak.upgrade(), me.upgrade()) else {
                return;
            };
            if !fs.is_active() {
                return;
            }
            if let Some(rt) = fs.server(&label) {
                if rt.end_ejection(until) {
                    tracing::info!(pool = pool.name(), server = %label, "ejection over; server returns");
                    apply_health(&pool, &fs, &label, true);
                }
            }
        });
    }

    fn server_states(&self, pool: &Pool) -> Vec<ServerState> {
        let threshold = self
            .config()
            .farm
            .outlier_detection
            .as_ref()
            .unwrap_or(&DEFAULT_OUTLIER_DETECTION)
            .consecutive_failures;
        let mut out: Vec<ServerState> = pool
            .members()
            .iter()
            .filter_map(|m| {
                let rt = self.server(&m.label)?;
                let spec = rt.spec();
                let ejected_until = rt.ejected_until().filter(|u| *u > Instant::now());
                let state = if m.is_draining() {
                    "draining"
                } else if ejected_until.is_some() {
                    "ejected"
                } else if rt.check_failed() {
                    "unhealthy"
                } else {
                    "healthy"
                };
                Some(ServerState {
                    pool: pool.name().to_string(),
                    server: m.label.clone(),
                    healthy: m.is_healthy(),
                    usable: m.usable(),
                    state,
                    backup: spec.backup,
                    discovered: spec.discovered,
                    weight: spec.weight,
                    slots: spec.slots,
                    effective_weight: m.weight() as f64 / WEIGHT_SCALE as f64,
                    effective_slots: m.slots(),
                    active: m.active(),
                    served: m.served(),
                    failed: m.failed(),
                    ejections: rt.ejections(),
                    ejected_for_seconds: ejected_until
                        .map(|u| u.saturating_duration_since(Instant::now()).as_secs_f64())
                        .unwrap_or(0.0),
                    failure_streak: rt.failure_streak(),
                    ejection_threshold: threshold,
                    latency_ewma_ms: m.latency_ewma_us() as f64 / 1000.0,
                    last_check: rt.last_check(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.server.cmp(&b.server));
        out
    }
}

/// The farm state of a pool, if it is a farm.
pub fn state(pool: &Pool) -> Option<&Arc<dyn FarmPolicy>> {
    pool.farm().filter(|fs| fs.is_active())
}

/// The pool is no longer a farm (a reload turned it into a web garden): its farm
/// servers drain and leave, and its farm state is no longer consulted.
pub fn release(pool: &Pool) {
    if let Some(fs) = pool.farm() {
        fs.release(pool);
    }
}

/// The opaque, stable affinity cookie value naming a server: a 64-bit hash of its
/// address in hex (stable across restarts, builds and instances, so any roost of a
/// group maps a client's cookie back to the same server).
pub fn cookie_value(address: &str) -> String {
    format!("{:016x}", crate::pool::hash_key(address.as_bytes()))
}

fn spec_of(server: &Server) -> Spec {
    Spec {
        address: server.address.clone(),
        host: server.host.clone(),
        port: server.port,
        tls: server.tls,
        name: server.host.clone(),
        slots: server.max_concurrent_requests,
        weight: server.weight,
        backup: server.backup,
        discovered: false,
    }
}

fn endpoint_for(spec: &Spec, t: &FarmTls, client: &Arc<rustls::ClientConfig>) -> Endpoint {
    if spec.tls {
        Endpoint::Tls {
            host: spec.host.clone(),
            port: spec.port,
            server_name: server_name(t, &spec.name),
            config: client.clone(),
        }
    } else {
        Endpoint::Tcp {
            host: spec.host.clone(),
            port: spec.port,
        }
    }
}

/// The endpoint for one configured server (default TLS settings).
pub fn endpoint(server: &Server) -> Endpoint {
    endpoint_for(&spec_of(server), &FarmTls::default(), &default_tls_client())
}

/// A member for one configured server (default TLS settings, full capacity).
pub fn member_for(server: &Server, timeouts: &UpstreamTimeouts) -> Arc<Member> {
    let client = Client::new(endpoint(server), timeouts);
    let m = Member::new(
        server.address.clone(),
        None,
        client,
        server.max_concurrent_requests,
        server.weight.saturating_mul(WEIGHT_SCALE),
    );
    m.set_backup(server.backup);
    m
}

fn build_member(fs: &FarmState, cfg: &FarmConfig, rt: &ServerRt) -> Arc<Member> {
    let spec = rt.spec();
    let client = fs.tls_client(&cfg.farm.tls);
    let c = Client::new(endpoint_for(&spec, &cfg.farm.tls, &client), &cfg.timeouts);
    let (slots, weight) = rt.capacity(cfg.farm.slow_start);
    let m = Member::new(spec.address.clone(), None, c, slots, weight);
    m.set_backup(spec.backup);
    m.set_healthy(rt.healthy());
    m
}

/// Make the pool's members match `farm`: servers whose address is unchanged keep their
/// member (capacity updated); new ones join; the rest drain and leave. Discovered servers
/// are the discovery task's business and stay while discovery is configured. A change of
/// TLS settings or timeouts replaces every member (new connections, same health).
pub fn sync_members(pool: &Pool, farm: &Farm, timeouts: &UpstreamTimeouts) {
    let cfg = FarmConfig {
        farm: farm.clone(),
        timeouts: timeouts.clone(),
    };
    let fs = pool.farm_or_init(|| FarmState::new(cfg.clone()));
    fs.sync(pool, cfg);
}

/// Bring members in line with the runtime server list: add missing, remove stale,
/// refresh capacity; with `rebuild`, replace every member.
fn reconcile(pool: &Pool, fs: &FarmState, rebuild: bool) {
    // A reload and the discovery task may both reconcile; one at a time, or both could
    // add the same new server.
    let _one = fs.reconcile_lock.lock();
    let cfg = fs.config();
    let servers = fs.all_servers();
    let existing = pool.members();
    for rt in &servers {
        let spec = rt.spec();
        let current = existing.iter().find(|m| m.label == spec.address);
        match current {
            Some(m) if !rebuild => {
                let (slots, weight) = rt.capacity(cfg.farm.slow_start);
                m.set_capacity(slots, weight);
                m.set_backup(spec.backup);
                m.set_healthy(rt.healthy());
            }
            _ => {
                let m = build_member(fs, &cfg, rt);
                if let Some(old) = current {
                    // An operator's drain outlives the connection settings.
                    // (Marked before it joins, so no request slips onto it.)
                    if old.is_draining() {
                        pool.drain_member(&m);
                    }
                    pool.add_member(m);
                    pool.remove_member(old);
                } else {
                    pool.add_member(m);
                }
            }
        }
    }
    for m in existing {
        if !servers.iter().any(|rt| rt.spec.lock().address == m.label) {
            tracing::info!(pool = pool.name(), server = %m.label, "server leaves the farm (draining)");
            pool.remove_member(&m);
        }
    }
    fs.rebuild_cookies();
    pool.refresh();
}

fn member(pool: &Pool, label: &str) -> Option<Arc<Member>> {
    pool.members().into_iter().find(|m| m.label == label)
}

/// Re-derive a server's member health from its runtime state; when it comes back with
/// `slowStart` set, start the ramp.
pub(crate) fn apply_health(pool: &Arc<Pool>, fs: &FarmState, label: &str, came_back: bool) {
    let Some(rt) = fs.server(label) else {
        return;
    };
    let Some(m) = member(pool, label) else {
        return;
    };
    let healthy = rt.healthy();
    let was = m.is_healthy();
    if healthy && !was {
        let slow_start = fs.config().farm.slow_start;
        // The ramp's small capacity is in place before the member is seen healthy, so no
        // request ever finds it back at full weight before the ramp starts.
        if came_back && !slow_start.is_zero() {
            start_ramp(pool, &rt, &m, slow_start);
        } else {
            // An interrupted ramp may have left a partial capacity behind.
            let (slots, weight) = rt.capacity(slow_start);
            m.set_capacity(slots, weight);
        }
        m.set_healthy(true);
        pool.refresh();
    } else if !healthy {
        m.set_healthy(false);
        rt.stop_ramp();
    }
}

fn start_ramp(pool: &Arc<Pool>, rt: &Arc<ServerRt>, m: &Arc<Member>, slow_start: Duration) {
    let gen = rt.start_ramp();
    let (slots, weight) = rt.capacity(slow_start);
    m.set_capacity(slots, weight);
    tracing::info!(pool = pool.name(), server = %m.label, slow_start = ?slow_start, "server back; slow start");
    let weak: Weak<Pool> = Arc::downgrade(pool);
    let rt = rt.clone();
    let label = m.label.clone();
    // Ten steps, at most one every 100 ms.
    let step = (slow_start / 10).max(Duration::from_millis(100));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(step).await;
            let Some(pool) = weak.upgrade() else {
                return;
            };
            if rt.ramp_gen.load(std::sync::atomic::Ordering::Relaxed) != gen {
                return;
            }
            let slow_start = state(&pool)
                .map(|fs| fs.config().farm.slow_start)
                .unwrap_or_default();
            let share = rt.share(slow_start);
            let (slots, weight) = rt.capacity(slow_start);
            if let Some(m) = member(&pool, &label) {
                m.set_capacity(slots, weight);
            }
            pool.refresh();
            if share >= 1.0 {
                return;
            }
        }
    });
}

/// Passive health without an `outlierDetection` block (as HAProxy's `observe layer4` and
/// Envoy's gateway-failure detection): 5 gateway failures in a row eject a server for
/// 30 s (growing to 300 s when it keeps failing), never more than half the farm at once,
/// rounded down: the default never takes a farm's last server away (a one-server farm
/// keeps answering 502 at once rather than queueing every request for 30 s; Envoy's panic
/// threshold makes the same choice). A written-out `outlierDetection` may eject one
/// server whatever its `maxEjectionPercent` says. Only failures to get any response
/// count: a 5xx answer proves the server is there, so it is not ejected for it unless
/// `outlierDetection` is written out. `outlierDetection: {maxEjectionPercent: 0}` turns
/// ejection off.
pub const DEFAULT_OUTLIER_DETECTION: crate::config::model::OutlierDetection =
    crate::config::model::OutlierDetection {
        consecutive_failures: 5,
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        max_ejection_percent: 50,
    };

/// Passive health: a request's outcome on `member` (nothing for pools that are not farms).
pub(crate) fn note_outcome(pool: &Arc<Pool>, member: &Member, outcome: Outcome) {
    if let Some(fs) = state(pool) {
        fs.note_outcome(pool, member, outcome);
    }
}

/// A snapshot of every server of a farm pool (empty for other pools).
pub fn server_states(pool: &Pool) -> Vec<ServerState> {
    state(pool).map_or_else(Vec::new, |fs| fs.server_states(pool))
}

/// ARR's "disallow new connections": the server gets no new requests, in-flight ones
/// finish. Returns false if the pool has no such server.
pub fn drain_server(pool: &Pool, address: &str) -> bool {
    match member(pool, address) {
        Some(m) => {
            tracing::info!(pool = pool.name(), server = address, "server drained");
            pool.drain_member(&m);
            true
        }
        None => false,
    }
}

/// Undo [`drain_server`]. Returns false if the pool has no such server.
pub fn undrain_server(pool: &Pool, address: &str) -> bool {
    match member(pool, address) {
        Some(m) => {
            tracing::info!(
                pool = pool.name(),
                server = address,
                "server takes requests again"
            );
            pool.undrain_member(&m);
            true
        }
        None => false,
    }
}
