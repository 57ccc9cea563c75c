//! The farm's `pool::PoolHooks`: each farm pool gets a health-check task (if
//! `healthCheck` is set) and a discovery task (if `discovery` is set); they restart
//! when the pool's config changes and stop when it leaves.

use crate::config::model::{self, Backend};
use crate::pool::Pool;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::task::AbortHandle;

#[derive(Default)]
pub struct FarmHooks {
    tasks: Mutex<HashMap<String, Vec<AbortHandle>>>,
}

impl FarmHooks {
    pub fn new() -> Arc<FarmHooks> {
        Arc::new(FarmHooks::default())
    }

    fn stop(&self, name: &str) {
        if let Some(tasks) = self.tasks.lock().remove(name) {
            for t in tasks {
                t.abort();
            }
        }
    }

    /// Pools with running farm tasks (for tests and the admin API).
    pub fn running(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tasks.lock().keys().cloned().collect();
        v.sort();
        v
    }
}

impl crate::pool::PoolHooks for FarmHooks {
    fn pool_added(&self, pool: &Arc<Pool>, cfg: &model::Pool, _previous: Option<&model::Pool>) {
        self.stop(pool.name());
        if !matches!(cfg.backend, Backend::Farm(_)) {
            super::release(pool);
            return;
        }
        // The farm's state followed this config already (the front syncs the members
        // when it builds the pools, before any hook hears of them).
        let Some(fs) = super::state(pool) else {
            return;
        };
        let tasks = fs.clone().start(Arc::downgrade(pool));
        if !tasks.is_empty() {
            self.tasks.lock().insert(pool.name().to_string(), tasks);
        }
    }

    fn pool_removed(&self, pool: &Arc<Pool>) {
        self.stop(pool.name());
    }
}

impl Drop for FarmHooks {
    fn drop(&mut self) {
        for (_, tasks) in self.tasks.lock().drain() {
            for t in tasks {
                t.abort();
            }
        }
    }
}
