//! Raw serde types that mirror `proxy.yaml` key for key (camelCase, every key optional),
//! plus [`SCHEMA`], the same key tree as data for the unknown-key walk and for mapping
//! `ROOST_` environment variables onto camelCase keys.
//!
//! The types are deliberately lenient so one run can report every problem: each leaf is a
//! [`Scalar`] (any YAML value, typed later by `validate.rs`), and each nested struct, list
//! or map is wrapped in [`Lenient`], which records a value of the wrong shape instead of
//! failing the whole deserialization. Unknown keys are ignored here; the schema walk in
//! `tree.rs` reports them with line:col and a suggestion.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// Any YAML value in a leaf position; `validate.rs` decides whether it is a number,
/// duration, string, ...
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Scalar(pub serde_json::Value);

/// A nested value that either had the expected shape or did not (kept for the message).
#[derive(Debug, Clone, PartialEq)]
pub enum Lenient<T> {
    Ok(T),
    Bad(serde_json::Value),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Buffer first, so a shape error becomes data for the validator rather than
        // aborting the whole document at the first mistake.
        let v = serde_json::Value::deserialize(d)?;
        match T::deserialize(&v) {
            Ok(t) => Ok(Lenient::Ok(t)),
            Err(_) => Ok(Lenient::Bad(v)),
        }
    }
}

/// An optional nested value.
pub type Opt<T> = Option<Lenient<T>>;
/// An optional leaf.
pub type Leaf = Option<Scalar>;
/// An optional list whose items are checked one by one.
pub type List<T> = Opt<Vec<Lenient<T>>>;
/// An optional user-keyed map (pool names, env vars, ...).
pub type Dict<T> = Opt<BTreeMap<String, Lenient<T>>>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawConfig {
    pub sites: List<RawSite>,
    pub pools: Dict<RawPool>,
    pub limits: Opt<RawLimits>,
    pub admin: Opt<RawAdmin>,
    pub log: Opt<RawLog>,
    pub workers: Leaf,
    pub diagnose: Opt<RawDiagnose>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawSite {
    pub name: Leaf,
    pub bindings: List<RawBinding>,
    pub host_names: Opt<Vec<Scalar>>,
    pub applications: List<RawApplication>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawBinding {
    pub listen: Leaf,
    pub tls: Opt<RawTls>,
}

/// `tls: {cert, key, serverNames}` (one certificate) or `tls: {certificates: [...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawTls {
    pub cert: Leaf,
    pub key: Leaf,
    pub server_names: Opt<Vec<Scalar>>,
    pub certificates: List<RawCertificate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawCertificate {
    pub cert: Leaf,
    pub key: Leaf,
    pub server_names: Opt<Vec<Scalar>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawApplication {
    pub path: Leaf,
    pub pool: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawLimits {
    pub max_request_header_bytes: Leaf,
    pub header_wait_timeout: Leaf,
    pub connection_timeout: Leaf,
    pub body_timeout: Leaf,
    pub tls_handshake_timeout: Leaf,
    pub max_connections: Leaf,
    pub shutdown_grace: Leaf,
    pub max_connections_per_client: Leaf,
    pub overload: Opt<RawOverload>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawOverload {
    pub high_water: Leaf,
    pub header_wait_timeout: Leaf,
    pub idle_timeout: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawPool {
    pub queue_length: Leaf,
    pub queue_timeout: Leaf,
    pub start_mode: Leaf,
    pub retry_after: Leaf,
    pub queue_discipline: Leaf,
    pub queue_target_delay: Leaf,
    pub queue_interval: Leaf,
    pub reject_status: Opt<BTreeMap<String, Scalar>>,
    pub timeouts: Opt<RawTimeouts>,
    pub initialization_pages: Opt<Vec<Scalar>>,
    pub process_model: Opt<RawProcessModel>,
    pub worker: Opt<RawWorker>,
    pub recycling: Opt<RawRecycling>,
    pub failure: Opt<RawFailure>,
    pub farm: Opt<RawFarm>,
    pub cache: Opt<super::cache::RawCache>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawTimeouts {
    pub connect: Leaf,
    pub first_byte: Leaf,
    pub idle: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawProcessModel {
    pub command: Leaf,
    pub args: Opt<Vec<Scalar>>,
    pub env: Opt<BTreeMap<String, Scalar>>,
    pub working_directory: Leaf,
    pub max_processes: Leaf,
    pub max_concurrent_requests_per_process: Leaf,
    pub listen: Leaf,
    pub idle_timeout: Leaf,
    pub pinging_enabled: Leaf,
    pub ping_interval: Leaf,
    pub ping_response_time: Leaf,
    pub ping_path: Leaf,
    pub startup_time_limit: Leaf,
    pub shutdown_time_limit: Leaf,
    pub user: Leaf,
    pub group: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawWorker {
    pub app: Leaf,
    pub min_worker_threads: Leaf,
    pub max_worker_threads: Leaf,
    pub io_threads: Leaf,
    pub request_queue_limit: Leaf,
    // ASP.NET spells these with an upper-case CPU, which camelCase renaming would not.
    #[serde(rename = "maxConcurrentRequestsPerCPU")]
    pub max_concurrent_requests_per_cpu: Leaf,
    #[serde(rename = "maxConcurrentThreadsPerCPU")]
    pub max_concurrent_threads_per_cpu: Leaf,
    pub pools: Dict<RawNamedPool>,
    pub routes: Opt<BTreeMap<String, Scalar>>,
    pub blocking_detection: Leaf,
    pub blocking_detection_interval: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawNamedPool {
    pub min: Leaf,
    pub max: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawRecycling {
    pub disallow_overlapping_rotation: Leaf,
    pub periodic_restart: Opt<RawPeriodicRestart>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawPeriodicRestart {
    pub time: Leaf,
    pub requests: Leaf,
    pub private_memory: Leaf,
    pub schedule: Opt<Vec<Scalar>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawFailure {
    pub rapid_fail_protection: Leaf,
    pub rapid_fail_protection_interval: Leaf,
    pub rapid_fail_protection_max_crashes: Leaf,
    pub load_balancer_capabilities: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawFarm {
    pub servers: List<RawServer>,
    pub load_balancing: Leaf,
    /// `{header: X}`, `{cookie: X}`, `{query: X}` or `clientAddress`.
    pub hash_key: Leaf,
    pub health_check: Opt<RawHealthCheck>,
    pub affinity: Opt<RawAffinity>,
    pub outlier_detection: Opt<RawOutlierDetection>,
    pub slow_start: Leaf,
    pub retries: Opt<RawRetries>,
    pub tls: Opt<RawFarmTls>,
    pub discovery: Opt<RawDiscovery>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawOutlierDetection {
    pub consecutive_failures: Leaf,
    pub base_ejection_time: Leaf,
    pub max_ejection_time: Leaf,
    pub max_ejection_percent: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawRetries {
    pub idempotent: Leaf,
    pub budget_percent: Leaf,
    pub min_retries: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawFarmTls {
    pub ca_file: Leaf,
    pub client_cert: Leaf,
    pub client_key: Leaf,
    pub server_name: Leaf,
    pub insecure_skip_verify: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawDiscovery {
    pub dns: Leaf,
    pub interval: Leaf,
    pub weight: Leaf,
    pub max_concurrent_requests: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawServer {
    pub address: Leaf,
    pub weight: Leaf,
    pub max_concurrent_requests: Leaf,
    pub backup: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawHealthCheck {
    pub path: Leaf,
    pub interval: Leaf,
    pub timeout: Leaf,
    pub expected_status: Leaf,
    pub response_match: Leaf,
    pub healthy_threshold: Leaf,
    pub unhealthy_threshold: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawAffinity {
    pub cookie: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawAdmin {
    pub listen: Leaf,
    pub token: Leaf,
    pub public: Opt<RawAdminPublic>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawAdminPublic {
    pub listen: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawDiagnose {
    pub snapshot_dir: Leaf,
    pub snapshot_keep: Leaf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawLog {
    pub access: Opt<RawAccessLog>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawAccessLog {
    pub path: Leaf,
    pub format: Leaf,
}

/// The shape of the key tree, for the unknown-key walk and env-variable mapping.
#[derive(Debug)]
pub enum Shape {
    /// A value (string, number, ...); anything below it is the validator's business.
    Leaf,
    /// Fixed camelCase keys.
    Map(&'static [(&'static str, Shape)]),
    /// User-chosen keys (pool names, env variables), each value of one shape.
    Dict(&'static Shape),
    List(&'static Shape),
}

const SERVER_NAMES: Shape = Shape::List(&Shape::Leaf);
const CERTIFICATE: Shape = Shape::Map(&[
    ("cert", Shape::Leaf),
    ("key", Shape::Leaf),
    ("serverNames", SERVER_NAMES),
]);
const TLS: Shape = Shape::Map(&[
    ("cert", Shape::Leaf),
    ("key", Shape::Leaf),
    ("serverNames", SERVER_NAMES),
    ("certificates", Shape::List(&CERTIFICATE)),
]);
const SITE: Shape = Shape::Map(&[
    ("name", Shape::Leaf),
    (
        "bindings",
        Shape::List(&Shape::Map(&[("listen", Shape::Leaf), ("tls", TLS)])),
    ),
    ("hostNames", Shape::List(&Shape::Leaf)),
    (
        "applications",
        Shape::List(&Shape::Map(&[("path", Shape::Leaf), ("pool", Shape::Leaf)])),
    ),
]);
const LIMITS: Shape = Shape::Map(&[
    ("maxRequestHeaderBytes", Shape::Leaf),
    ("headerWaitTimeout", Shape::Leaf),
    ("connectionTimeout", Shape::Leaf),
    ("bodyTimeout", Shape::Leaf),
    ("tlsHandshakeTimeout", Shape::Leaf),
    ("maxConnections", Shape::Leaf),
    ("shutdownGrace", Shape::Leaf),
    ("maxConnectionsPerClient", Shape::Leaf),
    (
        "overload",
        Shape::Map(&[
            ("highWater", Shape::Leaf),
            ("headerWaitTimeout", Shape::Leaf),
            ("idleTimeout", Shape::Leaf),
        ]),
    ),
]);
const PROCESS_MODEL: Shape = Shape::Map(&[
    ("command", Shape::Leaf),
    ("args", Shape::List(&Shape::Leaf)),
    ("env", Shape::Dict(&Shape::Leaf)),
    ("workingDirectory", Shape::Leaf),
    ("maxProcesses", Shape::Leaf),
    ("maxConcurrentRequestsPerProcess", Shape::Leaf),
    ("listen", Shape::Leaf),
    ("idleTimeout", Shape::Leaf),
    ("pingingEnabled", Shape::Leaf),
    ("pingInterval", Shape::Leaf),
    ("pingResponseTime", Shape::Leaf),
    ("pingPath", Shape::Leaf),
    ("startupTimeLimit", Shape::Leaf),
    ("shutdownTimeLimit", Shape::Leaf),
    ("user", Shape::Leaf),
    ("group", Shape::Leaf),
]);
const WORKER: Shape = Shape::Map(&[
    ("app", Shape::Leaf),
    ("minWorkerThreads", Shape::Leaf),
    ("maxWorkerThreads", Shape::Leaf),
    ("ioThreads", Shape::Leaf),
    ("requestQueueLimit", Shape::Leaf),
    ("maxConcurrentRequestsPerCPU", Shape::Leaf),
    ("maxConcurrentThreadsPerCPU", Shape::Leaf),
    (
        "pools",
        Shape::Dict(&Shape::Map(&[("min", Shape::Leaf), ("max", Shape::Leaf)])),
    ),
    ("routes", Shape::Dict(&Shape::Leaf)),
    ("blockingDetection", Shape::Leaf),
    ("blockingDetectionInterval", Shape::Leaf),
]);
const RECYCLING: Shape = Shape::Map(&[
    ("disallowOverlappingRotation", Shape::Leaf),
    (
        "periodicRestart",
        Shape::Map(&[
            ("time", Shape::Leaf),
            ("requests", Shape::Leaf),
            ("privateMemory", Shape::Leaf),
            ("schedule", Shape::List(&Shape::Leaf)),
        ]),
    ),
]);
const FAILURE: Shape = Shape::Map(&[
    ("rapidFailProtection", Shape::Leaf),
    ("rapidFailProtectionInterval", Shape::Leaf),
    ("rapidFailProtectionMaxCrashes", Shape::Leaf),
    ("loadBalancerCapabilities", Shape::Leaf),
]);
const FARM: Shape = Shape::Map(&[
    (
        "servers",
        Shape::List(&Shape::Map(&[
            ("address", Shape::Leaf),
            ("weight", Shape::Leaf),
            ("maxConcurrentRequests", Shape::Leaf),
            ("backup", Shape::Leaf),
        ])),
    ),
    ("loadBalancing", Shape::Leaf),
    // A leaf: either a word or a one-key map; the validator reads both.
    ("hashKey", Shape::Leaf),
    (
        "healthCheck",
        Shape::Map(&[
            ("path", Shape::Leaf),
            ("interval", Shape::Leaf),
            ("timeout", Shape::Leaf),
            ("expectedStatus", Shape::Leaf),
            ("responseMatch", Shape::Leaf),
            ("healthyThreshold", Shape::Leaf),
            ("unhealthyThreshold", Shape::Leaf),
        ]),
    ),
    ("affinity", Shape::Map(&[("cookie", Shape::Leaf)])),
    (
        "outlierDetection",
        Shape::Map(&[
            ("consecutiveFailures", Shape::Leaf),
            ("baseEjectionTime", Shape::Leaf),
            ("maxEjectionTime", Shape::Leaf),
            ("maxEjectionPercent", Shape::Leaf),
        ]),
    ),
    ("slowStart", Shape::Leaf),
    (
        "retries",
        Shape::Map(&[
            ("idempotent", Shape::Leaf),
            ("budgetPercent", Shape::Leaf),
            ("minRetries", Shape::Leaf),
        ]),
    ),
    (
        "tls",
        Shape::Map(&[
            ("caFile", Shape::Leaf),
            ("clientCert", Shape::Leaf),
            ("clientKey", Shape::Leaf),
            ("serverName", Shape::Leaf),
            ("insecureSkipVerify", Shape::Leaf),
        ]),
    ),
    (
        "discovery",
        Shape::Map(&[
            ("dns", Shape::Leaf),
            ("interval", Shape::Leaf),
            ("weight", Shape::Leaf),
            ("maxConcurrentRequests", Shape::Leaf),
        ]),
    ),
]);
const POOL: Shape = Shape::Map(&[
    ("queueLength", Shape::Leaf),
    ("queueTimeout", Shape::Leaf),
    ("startMode", Shape::Leaf),
    ("retryAfter", Shape::Leaf),
    ("queueDiscipline", Shape::Leaf),
    ("queueTargetDelay", Shape::Leaf),
    ("queueInterval", Shape::Leaf),
    ("rejectStatus", Shape::Dict(&Shape::Leaf)),
    (
        "timeouts",
        Shape::Map(&[
            ("connect", Shape::Leaf),
            ("firstByte", Shape::Leaf),
            ("idle", Shape::Leaf),
        ]),
    ),
    ("initializationPages", Shape::List(&Shape::Leaf)),
    ("processModel", PROCESS_MODEL),
    ("worker", WORKER),
    ("recycling", RECYCLING),
    ("failure", FAILURE),
    ("farm", FARM),
    ("cache", super::cache::SHAPE),
]);

/// The whole `proxy.yaml` key tree. Keep in step with the `Raw*` types above (the
/// `every_key` integration test loads a file that uses each key and expects no unknowns).
pub static SCHEMA: Shape = Shape::Map(&[
    ("workers", Shape::Leaf),
    ("sites", Shape::List(&SITE)),
    ("pools", Shape::Dict(&POOL)),
    ("limits", LIMITS),
    (
        "admin",
        Shape::Map(&[
            ("listen", Shape::Leaf),
            ("token", Shape::Leaf),
            ("public", Shape::Map(&[("listen", Shape::Leaf)])),
        ]),
    ),
    (
        "log",
        Shape::Map(&[(
            "access",
            Shape::Map(&[("path", Shape::Leaf), ("format", Shape::Leaf)]),
        )]),
    ),
    (
        "diagnose",
        Shape::Map(&[("snapshotDir", Shape::Leaf), ("snapshotKeep", Shape::Leaf)]),
    ),
]);
