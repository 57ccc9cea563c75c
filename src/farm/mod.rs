//! Web farms (the ARR role): a pool's members are remote servers, from `farm.servers` and
//! from DNS discovery.
//!
//! What lives here:
//! - [`sync_members`]: configured servers → pool members, kept in step with reloads
//!   (unchanged servers keep their member, connections and health; removed ones drain).
//! - [`FarmState`], kept as the pool's extension: per-server health (active checks,
//!   passive outlier ejection, slow-start ramp), the affinity cookie map, the retry budget.
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

pub use hooks::FarmHooks;
pub use server::LastCheck;
pub use tls::{client_config, default_tls_client, server_name, TlsClientError};

use crate::config::model::{Farm, FarmTls, Server, UpstreamTimeouts};
use crate::pool::{Member, Pool};
use crate::upstream::{Client, Endpoint};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use server::{ServerRt, Spec, WEIGHT_SCALE};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The farm's configuration as last synced (with the pool's upstream timeouts).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FarmConfig {
    pub farm: Farm,
    pub timeouts: UpstreamTimeouts,
}

/// Everything the farm keeps beside its pool (stored as the pool's extension, so it
/// lives and survives reloads exactly as long as the pool does).
pub struct FarmState {
    cfg: ArcSwap<FarmConfig>,
    /// Runtime state by member label (server address).
    servers: Mutex<HashMap<String, Arc<ServerRt>>>,
    /// Affinity cookie value → member label.
    cookies: ArcSwap<HashMap<String, String>>,
    pub(crate) budget: request::RetryBudget,
    tls_cache: Mutex<Option<(FarmTls, Arc<rustls::ClientConfig>)>>,
    /// Serializes ejection decisions so `maxEjectionPercent` holds under races.
    eject_lock: Mutex<()>,
    reconcile_lock: Mutex<()>,
    /// False once the pool stopped being a farm (a reload made it a garden); the state
    /// stays attached to the pool but is no longer consulted.
    active: std::sync::atomic::AtomicBool,
}

impl FarmState {
    fn new(cfg: FarmConfig) -> FarmState {
        FarmState {
            cfg: ArcSwap::from_pointee(cfg),
            servers: Mutex::new(HashMap::new()),
            cookies: ArcSwap::from_pointee(HashMap::new()),
            budget: request::RetryBudget::default(),
            tls_cache: Mutex::new(None),
            eject_lock: Mutex::new(()),
            reconcile_lock: Mutex::new(()),
            active: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub(crate) fn config(&self) -> Arc<FarmConfig> {
        self.cfg.load_full()
    }

    pub(crate) fn server(&self, label: &str) -> Option<Arc<ServerRt>> {
        self.servers.lock().get(label).cloned()
    }

    fn all_servers(&self) -> Vec<Arc<ServerRt>> {
        self.servers.lock().values().cloned().collect()
    }

    pub(crate) fn label_for_cookie(&self, value: &str) -> Option<String> {
        self.cookies.load().get(value).cloned()
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
}

/// The farm state of a pool, if it is a farm.
pub fn state(pool: &Pool) -> Option<&FarmState> {
    pool.extension::<FarmState>()
        .filter(|fs| fs.active.load(std::sync::atomic::Ordering::Relaxed))
}

/// The pool is no longer a farm (a reload turned it into a web garden): its farm
/// servers drain and leave, and its farm state is no longer consulted.
pub fn release(pool: &Pool) {
    let Some(fs) = pool.extension::<FarmState>() else {
        return;
    };
    if !fs.active.swap(false, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let labels: Vec<String> = fs.servers.lock().drain().map(|(l, _)| l).collect();
    for m in pool.members() {
        if labels.contains(&m.label) {
            pool.remove_member(&m);
        }
    }
    fs.rebuild_cookies();
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
    let new_cfg = FarmConfig {
        farm: farm.clone(),
        timeouts: timeouts.clone(),
    };
    let Some(fs) = pool.extension_or_init(|| FarmState::new(new_cfg.clone())) else {
        tracing::error!(
            pool = pool.name(),
            "pool carries another extension; farm not managed"
        );
        return;
    };
    fs.active.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(w) = &farm.tls.warning {
        tracing::warn!(pool = pool.name(), "{w}");
    }
    let old_cfg = fs.cfg.swap(Arc::new(new_cfg.clone()));
    let rebuild = old_cfg.farm.tls != farm.tls || old_cfg.timeouts != *timeouts;

    // Runtime state: configured servers (spec refreshed), discovered ones kept while
    // discovery is on.
    {
        let mut servers = fs.servers.lock();
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
    reconcile(pool, fs, rebuild);
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

/// What one request's outcome says about its server, for passive health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 500.
    Success,
    /// A 5xx response: the server is reachable, its application failed.
    ServerError,
    /// No response: connect failure, connection reset, broken HTTP, timeout.
    GatewayFailure,
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

/// Passive health: a request's outcome on `member`. Failures in a row past
/// `consecutiveFailures` eject the server (never more than `maxEjectionPercent` of the
/// farm at once); the ejection ends by itself and the server ramps back. Without
/// `outlierDetection`, [`DEFAULT_OUTLIER_DETECTION`] applies to gateway failures.
pub(crate) fn note_outcome(pool: &Arc<Pool>, member: &Member, outcome: Outcome) {
    let Some(fs) = state(pool) else {
        return;
    };
    let cfg = fs.config();
    let (od, counts, at_least_one) = match cfg.farm.outlier_detection.as_ref() {
        Some(od) => (od, outcome != Outcome::Success, 1),
        None => (
            &DEFAULT_OUTLIER_DETECTION,
            outcome == Outcome::GatewayFailure,
            0,
        ),
    };
    let Some(rt) = fs.server(&member.label) else {
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
        let _g = fs.eject_lock.lock();
        if rt.is_ejected() {
            return;
        }
        let servers = fs.all_servers();
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
    apply_health(pool, fs, &member.label, false);
    let Some(until) = until else {
        return;
    };
    let weak = Arc::downgrade(pool);
    let label = member.label.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
        let Some(pool) = weak.upgrade() else {
            return;
        };
        let Some(fs) = state(&pool) else {
            return;
        };
        if let Some(rt) = fs.server(&label) {
            if rt.end_ejection(until) {
                tracing::info!(pool = pool.name(), server = %label, "ejection over; server returns");
                apply_health(&pool, fs, &label, true);
            }
        }
    });
}

/// One server as the admin API and metrics see it (`farm_server_healthy{pool,server}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerState {
    pub pool: String,
    pub server: String,
    /// Health verdict (active check passing and not ejected): `farm_server_healthy`.
    pub healthy: bool,
    /// Takes new requests: healthy and not draining.
    pub usable: bool,
    /// `healthy`, `unhealthy` (active check), `ejected` (passive), `draining`.
    #[serde(deserialize_with = "server_state_word")]
    pub state: Word,
    pub backup: bool,
    pub discovered: bool,
    /// Configured weight and slots, and the effective ones (lower during slow start).
    pub weight: u32,
    pub slots: usize,
    pub effective_weight: f64,
    pub effective_slots: usize,
    pub active: usize,
    pub served: u64,
    pub failed: u64,
    pub ejections: u64,
    pub ejected_for_seconds: f64,
    /// Passive failures in a row (an ejection starts a new count).
    pub failure_streak: u32,
    /// `consecutiveFailures` of the passive health in force (explicit or the default).
    pub ejection_threshold: u32,
    pub latency_ewma_ms: f64,
    pub last_check: Option<LastCheck>,
}

/// A word from a fixed set. Named, because serde's derive would make a field spelled
/// `&'static str` borrow from the input and so only deserialise from `'static` data.
type Word = &'static str;

const SERVER_STATES: [&str; 4] = ["healthy", "unhealthy", "ejected", "draining"];

/// `state` read back (by `roost ctl`) as one of the words [`server_states`] writes.
fn server_state_word<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    SERVER_STATES
        .into_iter()
        .find(|w| *w == s)
        .ok_or_else(|| serde::de::Error::unknown_variant(&s, &SERVER_STATES))
}

/// A snapshot of every server of a farm pool (empty for other pools).
pub fn server_states(pool: &Pool) -> Vec<ServerState> {
    let Some(fs) = state(pool) else {
        return Vec::new();
    };
    let threshold = fs
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
            let rt = fs.server(&m.label)?;
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
