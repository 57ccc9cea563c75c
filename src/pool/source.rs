//! The typed seam for a member source that keeps state with its pool: the farm (per-server
//! health, the affinity map, the retry budget). The pool holds it as a
//! [`FarmPolicy`] trait object, so it lives and survives reloads exactly as long as the
//! pool does; the farm implements the trait, and nothing needs to know its type (this
//! module does not import the farm). Garden members need nothing here: the supervisor
//! keeps its workers itself and follows the pools through [`super::PoolHooks`].
//!
//! Also here: the words both sides of the seam use, [`Outcome`] (what a request's end
//! says about its server) and [`ServerState`] (one farm server as the admin API shows it).

use super::{Member, Pool};
use crate::config::model::{Farm, UpstreamTimeouts};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::task::AbortHandle;

/// A farm pool's configuration as last synced (with the pool's upstream timeouts).
#[derive(Debug, Clone, PartialEq)]
pub struct FarmConfig {
    pub farm: Farm,
    pub timeouts: UpstreamTimeouts,
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

/// The farm's state beside a pool, as the pool, the proxy step and the admin API reach
/// it (the farm keeps the rest to itself).
pub trait FarmPolicy: Send + Sync {
    /// Still managing the pool: false once a reload made it a web garden (the state
    /// stays attached to the pool but is no longer consulted).
    fn is_active(&self) -> bool;
    fn config(&self) -> Arc<FarmConfig>;
    /// Make the pool's members match `cfg` (a start or a reload).
    fn sync(&self, pool: &Pool, cfg: FarmConfig);
    /// The pool is no longer a farm: its servers drain and leave.
    fn release(&self, pool: &Pool);
    /// Start the pool's background tasks (active health checks, DNS discovery); they end
    /// when the pool is gone.
    fn start(self: Arc<Self>, pool: Weak<Pool>) -> Vec<AbortHandle>;
    /// The server an affinity cookie's value names.
    fn label_for_cookie(&self, value: &str) -> Option<String>;
    /// A request arrived (the retry budget is a share of requests).
    fn note_request(&self, now: Instant);
    /// Take one retry from the budget, if there is room.
    fn try_retry(&self, now: Instant) -> bool;
    /// Retries so far.
    fn retries(&self) -> u64;
    /// Passive health: how a request on `member` ended.
    fn note_outcome(&self, pool: &Arc<Pool>, member: &Member, outcome: Outcome);
    /// Every server of the pool, for the admin API and metrics.
    fn server_states(&self, pool: &Pool) -> Vec<ServerState>;
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

/// The result of the latest active health check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastCheck {
    /// Seconds since the Unix epoch.
    pub at: f64,
    pub ok: bool,
    /// Status code, or what went wrong (timeout, connect error, body mismatch).
    pub detail: String,
}

/// A word from a fixed set. Named, because serde's derive would make a field spelled
/// `&'static str` borrow from the input and so only deserialise from `'static` data.
pub type Word = &'static str;

/// The words [`ServerState::state`] takes.
pub const SERVER_STATES: [&str; 4] = ["healthy", "unhealthy", "ejected", "draining"];

/// `state` read back (by `roost ctl`) as one of the words the farm writes.
fn server_state_word<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    SERVER_STATES
        .into_iter()
        .find(|w| *w == s)
        .ok_or_else(|| serde::de::Error::unknown_variant(&s, &SERVER_STATES))
}
