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
        let Backend::Farm(farm) = &cfg.backend else {
            super::release(pool);
            return;
        };
        let mut tasks = Vec::new();
        if farm.health_check.is_some() {
            let weak = Arc::downgrade(pool);
            tasks.push(tokio::spawn(super::health::run(weak)).abort_handle());
        }
        if farm.discovery.is_some() {
            let weak = Arc::downgrade(pool);
            tasks.push(tokio::spawn(super::discovery::run(weak)).abort_handle());
        }
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
