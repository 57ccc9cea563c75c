//! Something configured per pool and overridden per application (a cache, compression
//! settings), looked up by the route a request took.

use std::collections::HashMap;
use std::sync::Arc;

/// Per-pool values and the applications that override them.
#[derive(Clone)]
pub struct Scoped<T> {
    by_pool: HashMap<Arc<str>, T>,
    /// Site name → application path → the application's value (`None`: off there).
    by_app: HashMap<String, HashMap<String, Option<T>>>,
}

impl<T> Default for Scoped<T> {
    fn default() -> Self {
        Scoped {
            by_pool: HashMap::new(),
            by_app: HashMap::new(),
        }
    }
}

impl<T> Scoped<T> {
    pub fn set_pool(&mut self, pool: &str, v: T) {
        self.by_pool.insert(Arc::from(pool), v);
    }

    pub fn set_app(&mut self, site: &str, path: &str, v: Option<T>) {
        self.by_app
            .entry(site.to_string())
            .or_default()
            .insert(path.to_string(), v);
    }

    /// Nothing anywhere: the request path skips the lookup with this one branch.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.by_pool.is_empty() && self.by_app.is_empty()
    }

    /// The value for a request routed to `app_path` of `site`, in `pool`.
    pub fn get(&self, site: &str, app_path: &str, pool: &str) -> Option<&T> {
        if !self.by_app.is_empty() {
            if let Some(v) = self.by_app.get(site).and_then(|m| m.get(app_path)) {
                return v.as_ref();
            }
        }
        self.by_pool.get(pool)
    }

    pub fn pool(&self, pool: &str) -> Option<&T> {
        self.by_pool.get(pool)
    }

    pub fn app(&self, site: &str, path: &str) -> Option<&Option<T>> {
        self.by_app.get(site).and_then(|m| m.get(path))
    }

    /// Every value (pools' then applications').
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.by_pool
            .values()
            .chain(self.by_app.values().flat_map(|m| m.values().flatten()))
    }
}

/// The pool an application routes to, from the configuration.
pub fn app_pool<'c>(config: &'c crate::config::Config, site: &str, path: &str) -> Option<&'c str> {
    let s = config.sites.iter().find(|s| s.name == site)?;
    let a = s.applications.iter().find(|a| a.path == path)?;
    Some(&a.pool)
}
