//! The bounded store: URL key → the stored variants of that URL, in a `quick_cache`
//! (CLOCK-PRO-like eviction) weighed in bytes, so memory stays within `maxBytes`.

use super::policy::{Meta, SecondaryKey};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Bookkeeping bytes charged per stored response beyond its head and body (the
/// store's slot, the `Arc`s, the metadata).
const OVERHEAD: u64 = 256;

/// One stored response (one variant of a URL).
#[derive(Debug)]
pub struct Object {
    pub status: StatusCode,
    /// The head as the member sent it, minus hop-by-hop fields and `Age`.
    pub headers: HeaderMap,
    pub body: Bytes,
    pub vary: SecondaryKey,
    pub meta: Meta,
    /// When it was received (monotonic: its current age grows from here).
    pub stored_at: Instant,
    /// The same moment on the wall clock (for a refresh's `Date` arithmetic).
    pub stored_wall: SystemTime,
    pub weight: u64,
}

impl Object {
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        vary: SecondaryKey,
        meta: Meta,
        stored_wall: SystemTime,
    ) -> Object {
        let head: usize = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        let keys: usize = vary
            .iter()
            .map(|(n, v)| n.as_str().len() + v.as_ref().map_or(0, |v| v.len()))
            .sum();
        let weight = body.len() as u64 + (head + keys) as u64 + OVERHEAD;
        Object {
            status,
            headers,
            body,
            vary,
            meta,
            stored_at: Instant::now(),
            stored_wall,
            weight,
        }
    }

    /// §4.2.3 `current_age`, in seconds.
    pub fn age(&self, now: Instant) -> u64 {
        self.meta.initial_age + now.saturating_duration_since(self.stored_at).as_secs()
    }

    fn age_secs_f64(&self, now: Instant) -> f64 {
        self.meta.initial_age as f64 + now.saturating_duration_since(self.stored_at).as_secs_f64()
    }

    /// How long it has been stale (zero while fresh).
    pub fn staleness(&self, now: Instant) -> Duration {
        let over = self.age_secs_f64(now) - self.meta.lifetime.as_secs_f64();
        Duration::from_secs_f64(over.max(0.0))
    }

    /// Fresh (§4.2): younger than its lifetime, and not `no-cache`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        !self.meta.always_validate && self.age_secs_f64(now) < self.meta.lifetime.as_secs_f64()
    }

    /// Whether a stale copy is still worth keeping (for stale serving or revalidation).
    pub fn has_validator(&self) -> bool {
        self.headers.contains_key(http::header::ETAG)
            || self.headers.contains_key(http::header::LAST_MODIFIED)
    }
}

/// The variants of one URL, newest first.
#[derive(Debug, Default)]
pub struct Variants {
    pub objects: Vec<Arc<Object>>,
    weight: u64,
}

impl Variants {
    /// These variants with `obj` added (replacing the one with the same secondary key),
    /// at most `max` kept.
    pub fn with(&self, obj: Arc<Object>, max: usize) -> Variants {
        let mut objects = Vec::with_capacity(self.objects.len() + 1);
        objects.push(obj.clone());
        objects.extend(
            self.objects
                .iter()
                .filter(|o| o.vary != obj.vary)
                .take(max.saturating_sub(1))
                .cloned(),
        );
        let weight = objects.iter().map(|o| o.weight).sum();
        Variants { objects, weight }
    }
}

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<Arc<str>, Arc<Variants>> for Weigh {
    fn weight(&self, key: &Arc<str>, v: &Arc<Variants>) -> u64 {
        v.weight + key.len() as u64
    }
}

/// Counts what the store evicts for lack of room.
#[derive(Clone)]
struct Evictions(Arc<AtomicU64>);

impl quick_cache::Lifecycle<Arc<str>, Arc<Variants>> for Evictions {
    type RequestState = ();

    fn begin_request(&self) {}

    fn on_evict(&self, _: &mut (), _: Arc<str>, _: Arc<Variants>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

type Inner =
    quick_cache::sync::Cache<Arc<str>, Arc<Variants>, Weigh, std::hash::RandomState, Evictions>;

pub struct Store {
    inner: Inner,
    evictions: Arc<AtomicU64>,
}

impl Store {
    /// A store of at most `max_bytes`, sharded so that one shard still holds an object
    /// of `max_object` bytes (a shard rejects anything larger than its share).
    pub fn new(max_bytes: u64, max_object: u64) -> Store {
        let fit = (max_bytes / max_object.max(1)).max(1);
        let shards = (fit as usize).clamp(1, 16);
        // A power of two no larger than `fit` (quick_cache rounds up otherwise).
        let shards = 1usize << (usize::BITS - 1 - shards.leading_zeros());
        let evictions = Arc::new(AtomicU64::new(0));
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity((max_bytes / 4096).clamp(16, 1 << 20) as usize)
            .weight_capacity(max_bytes)
            .build()
            .expect("valid cache options");
        let inner = Inner::with_options(
            options,
            Weigh,
            std::hash::RandomState::new(),
            Evictions(evictions.clone()),
        );
        Store { inner, evictions }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Variants>> {
        self.inner.get(key)
    }

    pub fn insert(&self, key: Arc<str>, v: Variants) {
        self.inner.insert(key, Arc::new(v));
    }

    pub fn remove(&self, key: &str) -> bool {
        self.inner.remove(key).is_some()
    }

    /// Remove every key starting with `prefix`; the number removed.
    pub fn remove_prefix(&self, prefix: &str) -> usize {
        let before = self.inner.len();
        self.inner.retain(|k, _| !k.starts_with(prefix));
        before.saturating_sub(self.inner.len())
    }

    pub fn clear(&self) -> usize {
        let n = self.inner.len();
        self.inner.clear();
        n
    }

    /// Bytes held, as weighed.
    pub fn bytes(&self) -> u64 {
        self.inner.weight()
    }

    pub fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    /// URLs held (each may have several variants).
    pub fn urls(&self) -> usize {
        self.inner.len()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}
