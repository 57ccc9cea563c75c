//! The front's response cache (HTTP.sys kernel cache, ARR and nginx `proxy_cache`
//! role): per pool, looked up after routing and before the pool's admission, so a hit
//! never takes a queue slot and survives a full queue or an offline pool.
//!
//! - [`policy`]: RFC 9111 rules as pure functions.
//! - [`store`]: the byte-bounded store (`quick_cache`), URL → variants.
//! - [`fill`]: request coalescing (one member request per key at a time).
//! - [`lookup`]: a request's way through the cache, and the [`Ticket`] a miss carries
//!   to the member and back (revalidation, stale-if-error, storing while streaming).
//! - [`respond`]: answering from a stored object (`Age`, conditionals, HEAD).
//! - [`admin`]: purge, the metrics families and the admin API's view.

pub mod admin;
pub mod fill;
pub mod lookup;
pub mod policy;
pub mod respond;
pub mod scoped;
pub mod store;
mod tee;

pub use lookup::{Lookup, Ticket, Verdict};
pub use respond::Status;

use crate::config::cache::CacheSettings;
use crate::config::model::Config;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Requests by what the cache did with them.
#[derive(Default)]
pub struct Counters {
    pub hit: AtomicU64,
    pub miss: AtomicU64,
    pub stale: AtomicU64,
    pub coalesced: AtomicU64,
    pub revalidated: AtomicU64,
    pub pass: AtomicU64,
    pub stored: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// One pool's cache, or one application's (its own `cache:` section).
pub struct Cache {
    pub pool: Arc<str>,
    /// `site/path` for an application's own cache (metrics label `application`).
    pub app: Option<Arc<str>>,
    pub settings: CacheSettings,
    store: store::Store,
    fills: Arc<fill::Fills>,
    pub counters: Counters,
    /// The frequent-hit rule's counts (only with `frequentHits.count` > 1).
    frequent: Mutex<HashMap<Arc<str>, (Instant, u32)>>,
}

/// Keys the frequent-hit rule tracks at most; past it the counts start over.
const FREQUENT_MAX: usize = 65_536;

impl Cache {
    pub fn new(pool: &str, settings: CacheSettings) -> Arc<Cache> {
        Cache::with_app(pool, None, settings)
    }

    /// An application's own cache (`app` is `site/path`).
    pub fn with_app(pool: &str, app: Option<&str>, settings: CacheSettings) -> Arc<Cache> {
        Arc::new(Cache {
            pool: Arc::from(pool),
            app: app.map(Arc::from),
            store: store::Store::new(settings.max_bytes, settings.max_object_bytes),
            settings,
            fills: Arc::default(),
            counters: Counters::default(),
            frequent: Mutex::default(),
        })
    }

    /// Whether `key` has been asked for often enough to be stored (IIS
    /// `frequentHitThreshold` within `frequentHitTimePeriod`).
    fn frequent_enough(&self, key: &Arc<str>) -> bool {
        let need = self.settings.frequent_count;
        if need <= 1 {
            return true;
        }
        let now = Instant::now();
        let mut map = self.frequent.lock();
        if map.len() >= FREQUENT_MAX {
            map.clear();
        }
        let e = map.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(e.0) > self.settings.frequent_window {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 >= need
    }

    /// Remove one URL (every variant); whether it was held.
    pub fn purge_key(&self, key: &str) -> bool {
        self.store.remove(key)
    }

    /// Remove every URL whose key starts with `prefix`; how many.
    pub fn purge_prefix(&self, prefix: &str) -> usize {
        if prefix.is_empty() {
            return self.store.clear();
        }
        self.store.remove_prefix(prefix)
    }

    pub fn bytes(&self) -> u64 {
        self.store.bytes()
    }

    pub fn urls(&self) -> usize {
        self.store.urls()
    }

    pub fn evictions(&self) -> u64 {
        self.store.evictions()
    }
}

/// Every pool's cache and every application's own, by the route; kept across reloads
/// while a cache's settings (and pool) stay.
#[derive(Default, Clone)]
pub struct Caches {
    scoped: scoped::Scoped<Arc<Cache>>,
}

impl Caches {
    /// Caches for `config`'s pools and applications, reusing `old`'s where the settings
    /// did not change.
    pub fn build(config: &Config, old: Option<&Caches>) -> Caches {
        let mut scoped = scoped::Scoped::default();
        for (name, p) in &config.pools {
            let Some(settings) = &p.cache else { continue };
            let kept = old
                .and_then(|o| o.scoped.pool(name))
                .filter(|c| &c.settings == settings)
                .cloned();
            let cache = kept.unwrap_or_else(|| Cache::new(name, settings.clone()));
            scoped.set_pool(name, cache);
        }
        for ((site, path), r) in &config.responses.applications {
            use crate::config::overrides::Override;
            let cache = match &r.cache {
                Override::Inherit => continue,
                Override::Off => None,
                Override::On(settings) => {
                    let Some(pool) = scoped::app_pool(config, site, path) else {
                        continue;
                    };
                    let kept = old
                        .and_then(|o| o.scoped.app(site, path).cloned().flatten())
                        .filter(|c| &c.settings == settings && &*c.pool == pool);
                    let label = format!("{site}{path}");
                    Some(kept.unwrap_or_else(|| {
                        Cache::with_app(pool, Some(label.as_str()), settings.clone())
                    }))
                }
            };
            scoped.set_app(site, path, cache);
        }
        Caches { scoped }
    }

    /// No pool or application has a cache: the request path skips the cache with this
    /// one branch.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.scoped.is_empty()
    }

    /// The cache a request routed to `app_path` of `site` in `pool` uses.
    pub fn for_route(&self, site: &str, app_path: &str, pool: &str) -> Option<&Arc<Cache>> {
        self.scoped.get(site, app_path, pool)
    }

    /// The pool's own cache.
    pub fn get(&self, pool: &str) -> Option<&Arc<Cache>> {
        self.scoped.pool(pool)
    }

    /// An application's own cache (`None` also when it has none or turned it off).
    pub fn of_app(&self, site: &str, path: &str) -> Option<&Arc<Cache>> {
        self.scoped.app(site, path).and_then(Option::as_ref)
    }

    /// Every cache of `pool` (its own and its applications').
    pub fn of_pool(&self, pool: &str) -> Vec<Arc<Cache>> {
        self.all()
            .into_iter()
            .filter(|c| &*c.pool == pool)
            .collect()
    }

    /// Sorted by pool name, then application.
    pub fn all(&self) -> Vec<Arc<Cache>> {
        let mut v: Vec<_> = self.scoped.values().cloned().collect();
        v.sort_by(|a, b| (&a.pool, &a.app).cmp(&(&b.pool, &b.app)));
        v
    }
}
