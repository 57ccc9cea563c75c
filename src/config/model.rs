//! The validated configuration model: what the rest of roost reads.
//!
//! `raw.rs` mirrors `proxy.yaml` exactly (camelCase, every key optional); `validate/`
//! turns it into these types, filling IIS defaults and collecting every problem at once.
//! Nothing outside `config/` ever sees a raw type, so a value here is always valid. The
//! sections that grow on their own keep their types in files beside this one
//! (`cache.rs`, `compression.rs`, `fairness.rs`, `ordering.rs`, `overrides.rs`,
//! `priority.rs`, `queue.rs`); like this file they import no raw type and no check.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub sites: Vec<Site>,
    /// Pools by name (sorted, so iteration order is stable for logs and the admin API).
    pub pools: BTreeMap<String, Pool>,
    pub limits: Limits,
    pub admin: Admin,
    pub log: Log,
    pub diagnose: Diagnose,
    /// Front threads (`workers: auto | N`): `Auto` is the CPUs this process may use.
    pub workers: Workers,
    /// Compression by pool; applications' own `cache` / `compression` (`overrides.rs`).
    pub responses: super::overrides::Responses,
}

/// How many front threads serve connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workers {
    /// One per CPU in the affinity mask or cgroup quota.
    #[default]
    Auto,
    Count(usize),
}

impl Workers {
    /// The thread count this resolves to on this machine.
    pub fn resolve(self) -> usize {
        match self {
            Workers::Auto => crate::runtime::auto_workers(),
            Workers::Count(n) => n,
        }
    }
}

/// An IIS site: bindings, host names and applications (path prefix → pool).
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub name: String,
    pub bindings: Vec<Binding>,
    /// Exact names (`www.example.com`) or one leading wildcard (`*.example.com`), lowercase.
    /// Empty means "any host".
    pub host_names: Vec<String>,
    /// Sorted longest path first, so the first prefix match is the longest.
    pub applications: Vec<Application>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub listen: SocketAddr,
    pub tls: Option<Tls>,
}

/// One or more certificates on a binding; with several, the client's SNI picks one.
#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    pub certificates: Vec<Certificate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SNI names this certificate answers; empty = the default certificate.
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    /// Always starts with `/`, never ends with `/` unless it is exactly `/`.
    pub path: String,
    pub pool: String,
}

/// HTTP.sys-style connection limits and timers (global, all bindings).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Request line plus headers (HTTP.sys MaxRequestBytes 16 KiB); past it → 431.
    pub max_request_header_bytes: usize,
    /// Time to receive the whole request head, and for a new connection to send its first byte.
    pub header_wait_timeout: Duration,
    /// Idle keep-alive (HTTP.sys `connectionTimeout` 120 s).
    pub connection_timeout: Duration,
    /// A request body must make progress at least this often (HTTP.sys EntityBody 120 s).
    pub body_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// Open client connections across all bindings; past it new sockets are closed at once.
    pub max_connections: usize,
    /// How long a SIGTERM waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Open connections one client address may hold (`None`: no cap).
    pub max_connections_per_client: Option<usize>,
    /// What the front does under connection pressure (`front::overload`).
    pub overload: Overload,
}

/// `limits.overload`: past `high_water` × `maxConnections` open connections, new
/// connections get the shorter timeouts below and existing ones that outlived them are
/// reclaimed; at `maxConnections` a newcomer takes the place of the oldest connection
/// that has sent no request head (then the longest-idle one) before anyone is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Overload {
    /// A fraction of `maxConnections` in (0, 1].
    pub high_water: f64,
    /// The head wait (first bytes, whole head, TLS handshake) under pressure.
    pub header_wait_timeout: Duration,
    /// The keep-alive idle wait (and write-stall limit) under pressure.
    pub idle_timeout: Duration,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            high_water: 0.8,
            header_wait_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
        }
    }
}

pub use super::fairness::{application_key, FairBy, Fairness};
pub use super::priority::PriorityClass;
pub use super::queue::{QueueDiscipline, QueuePolicy};

/// An application pool: a queue in front of members (local workers or farm servers).
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub queue_length: usize,
    pub queue_timeout: Duration,
    /// The queue's discipline and rejection policy (`config/queue.rs`).
    pub queue: QueuePolicy,
    pub start_mode: StartMode,
    pub backend: Backend,
    pub recycling: Recycling,
    pub failure: Failure,
    /// Status code used for the pool's own 503 rejections' `Retry-After` seconds.
    pub retry_after: Duration,
    /// Upstream timeouts (connect, first byte).
    pub timeouts: UpstreamTimeouts,
    /// Application Initialization warm-up URLs requested on a new worker before it gets traffic.
    pub initialization_pages: Vec<String>,
    /// The front's response cache for this pool (`None`: no cache, no lookup).
    pub cache: Option<super::cache::CacheSettings>,
    /// Per-key ordering (`config/ordering.rs`; `None`: requests are not ordered).
    pub ordering: Option<super::ordering::Ordering>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    OnDemand,
    AlwaysRunning,
}

/// Where a pool's requests go: worker processes it supervises, or remote servers.
// Built once per (re)load and never moved on the request path, so size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Garden(ProcessModel),
    Farm(Farm),
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    /// From request sent to response head received → 504 BackendTimeout.
    pub first_byte: Duration,
    /// Idle pooled upstream connections are closed after this.
    pub idle: Duration,
}

/// `processModel`: the web garden.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessModel {
    /// `None` = roost's own `roost worker` with the pool's `worker` settings.
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_directory: Option<PathBuf>,
    pub max_processes: usize,
    pub max_concurrent_requests_per_process: usize,
    pub listen: WorkerListen,
    pub idle_timeout: Duration,
    pub pinging_enabled: bool,
    pub ping_interval: Duration,
    pub ping_response_time: Duration,
    /// Readiness/health path; `None` for non-roost commands means "a TCP connect".
    pub ping_path: Option<String>,
    pub startup_time_limit: Duration,
    pub shutdown_time_limit: Duration,
    pub user: Option<String>,
    pub group: Option<String>,
    pub worker: WorkerSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerListen {
    Unix,
    Tcp,
}

/// Default `worker.blockingDetectionInterval`.
pub const DEFAULT_BLOCKING_DETECTION_INTERVAL: Duration = Duration::from_millis(50);

/// `worker`: the settings of a built-in `roost worker` (gate and thread pools).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    pub app: String,
    /// `None` = the core count.
    pub min_worker_threads: Option<usize>,
    pub max_worker_threads: Option<usize>,
    pub io_threads: Option<usize>,
    pub request_queue_limit: usize,
    pub max_concurrent_requests_per_cpu: usize,
    pub max_concurrent_threads_per_cpu: usize,
    /// Named dedicated worker pools: name → (min, max) threads.
    pub pools: BTreeMap<String, NamedThreadPool>,
    /// Route prefix → named pool.
    pub routes: BTreeMap<String, String>,
    /// `blockingDetection` (default true): add threads for busy threads found blocked in
    /// the kernel without a hint.
    pub blocking_detection: bool,
    /// `blockingDetectionInterval` (default 50 ms, 1 ms to 10 s).
    pub blocking_detection_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NamedThreadPool {
    pub min: usize,
    pub max: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recycling {
    pub disallow_overlapping_rotation: bool,
    /// `Duration::ZERO` = off.
    pub time: Duration,
    pub requests: u64,
    /// KiB, 0 = off.
    pub private_memory_kib: u64,
    /// Times of day (seconds since midnight, local time).
    pub schedule: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub rapid_fail_protection: bool,
    pub rapid_fail_protection_interval: Duration,
    pub rapid_fail_protection_max_crashes: u32,
    pub load_balancer_capabilities: LoadBalancerCapabilities,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBalancerCapabilities {
    HttpLevel,
    TcpLevel,
}

/// `farm`: remote servers.
#[derive(Debug, Clone, PartialEq)]
pub struct Farm {
    pub servers: Vec<Server>,
    pub load_balancing: LoadBalancing,
    pub health_check: Option<HealthCheck>,
    pub affinity: Option<Affinity>,
    /// Passive health (Envoy outlier detection); `None` = off.
    pub outlier_detection: Option<OutlierDetection>,
    /// A server that comes back ramps from a small share to full weight and slots over
    /// this long (HAProxy `slowstart`); zero = off.
    pub slow_start: Duration,
    pub retries: Retries,
    pub tls: FarmTls,
    /// Servers found by resolving a DNS name periodically (beside `servers`).
    pub discovery: Option<Discovery>,
}

/// `outlierDetection`: consecutive failures eject a server for a growing period.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    /// Connect failures, exchange failures, timeouts or 5xx answers in a row.
    pub consecutive_failures: u32,
    /// The first ejection lasts this long; each further one a multiple of it.
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    /// Never eject more than this share of the farm's servers (at least one may go).
    pub max_ejection_percent: u32,
}

/// `retries`: a request that was never sent is always retried once on another server;
/// an idempotent request without a body may also be retried after a 502/503, within a
/// budget (Envoy's retry budget) so retries cannot multiply an outage.
#[derive(Debug, Clone, PartialEq)]
pub struct Retries {
    pub idempotent: bool,
    /// Retries may be at most this percentage of requests (over the last ~10 s)...
    pub budget_percent: u32,
    /// ...plus this many, so a quiet farm can still retry.
    pub min_retries: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            idempotent: true,
            budget_percent: 20,
            min_retries: 3,
        }
    }
}

/// `tls`: how `https://` servers are verified and what the front presents to them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FarmTls {
    /// PEM bundle of trusted CAs; `None` = the webpki (Mozilla) roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key (mutual TLS).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// SNI and the name verified in the certificate; `None` = the server's host.
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
    /// The warning `roost check` prints and `serve` logs for `insecureSkipVerify`.
    pub warning: Option<String>,
}

/// `discovery`: every A/AAAA record of `host` becomes a server on `port`.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    /// As written (`name:port` or `https://name:port`).
    pub dns: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub interval: Duration,
    pub weight: u32,
    pub max_concurrent_requests: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// As written, for logs and labels.
    pub address: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub weight: u32,
    pub max_concurrent_requests: usize,
    pub backup: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LoadBalancing {
    RoundRobin,
    LeastRequests,
    PowerOfTwoChoices,
    LeastResponseTime,
    Random,
    Hash(HashKey),
}

#[derive(Debug, Clone, PartialEq)]
pub enum HashKey {
    Header(String),
    Cookie(String),
    Query(String),
    ClientAddress,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Inclusive status range.
    pub expected_status: (u16, u16),
    pub response_match: Option<String>,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Affinity {
    pub cookie: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub listen: SocketAddr,
    pub token: Option<String>,
    /// `admin.public.listen`: a second, read-only listener without a token serving only
    /// `/readyz`, `/livez` and `/metrics` (Kubernetes probes, Prometheus on the pod IP).
    pub public: Option<SocketAddr>,
}

/// `diagnose`: evidence snapshots written when a critical finding fires.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnose {
    /// `snapshotDir`: where snapshots go; `None` (the default) = none are written.
    pub snapshot_dir: Option<std::path::PathBuf>,
    /// `snapshotKeep` (10): the newest this many snapshot files stay, older ones go.
    pub snapshot_keep: usize,
}

impl Default for Diagnose {
    fn default() -> Self {
        Diagnose {
            snapshot_dir: None,
            snapshot_keep: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    /// `None` = no access log.
    pub access: Option<AccessLog>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    /// `None` = stdout.
    pub path: Option<PathBuf>,
    pub format: AccessLogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    W3c,
    Json,
}
