//! The seam through which everything that manages a pool's members follows the pools:
//! the supervisor (web gardens: worker processes) and the farm (health checks,
//! discovery). The front calls these hooks when a pool appears, changes or leaves; it
//! knows neither of them, and they know the front only as whoever calls.

use super::Pool;
use crate::config::model;
use std::sync::Arc;

/// Something that runs alongside the pools and must follow them through reloads: the
/// supervisor (web gardens) and the farm health checker.
pub trait PoolHooks: Send + Sync {
    /// A pool appeared (start) or its config changed (`previous` is the old one).
    fn pool_added(&self, pool: &Arc<Pool>, cfg: &model::Pool, previous: Option<&model::Pool>);
    /// A pool left the configuration.
    fn pool_removed(&self, pool: &Arc<Pool>);
}
