//! Raw serde types that mirror `proxy.yaml` key for key (camelCase, every key optional).
//! They are the one statement of the key tree: `schema.rs` traces it from their
//! `Deserialize` impls for the unknown-key walk and for mapping `ROOST_` environment
//! variables onto camelCase keys.
//!
//! The types are deliberately lenient so one run can report every problem: each leaf is a
//! [`Scalar`] (any YAML value, typed later by `validate/`), and each nested struct, list
//! or map is wrapped in [`Lenient`], which records a value of the wrong shape instead of
//! failing the whole deserialization (both in `leaf.rs`). Unknown keys are ignored here;
//! the schema walk in `schema.rs` reports them with line:col and a suggestion.
//!
//! The sections a pool or application may carry that grow on their own (`cache`,
//! `compression`, `fairness`, `ordering`, `priorities`) have their raw types in `raw/`,
//! one file each; their checks are in `validate/`, their model types in `config/`.

mod cache;
mod compression;
mod fairness;
mod ordering;
mod priority;

pub use super::leaf::{Dict, Leaf, Lenient, List, Opt, Scalar, LENIENT};
pub use cache::{RawCache, RawFrequentHits};
pub use compression::RawCompression;
pub use fairness::RawFairness;
pub use ordering::RawOrdering;
pub use priority::RawPriority;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawConfig {
    pub sites: List<RawSite>,
    // Boxed: a `RawPool` is about 3 KB, and the map moves its values as it grows
    // (100,000 pools: issue 12).
    pub pools: Dict<Box<RawPool>>,
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
    pub cache: Opt<RawCache>,
    pub compression: Opt<RawCompression>,
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
    pub fairness: Opt<RawFairness>,
    pub priorities: List<RawPriority>,
    pub timeouts: Opt<RawTimeouts>,
    pub initialization_pages: Opt<Vec<Scalar>>,
    pub process_model: Opt<RawProcessModel>,
    pub worker: Opt<RawWorker>,
    pub recycling: Opt<RawRecycling>,
    pub failure: Opt<RawFailure>,
    pub farm: Opt<RawFarm>,
    pub cache: Opt<RawCache>,
    pub ordering: Opt<RawOrdering>,
    pub compression: Opt<RawCompression>,
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
