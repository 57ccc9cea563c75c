//! The in-flight request registry behind `GET /api/v1/requests` (`appcmd list requests`).
//!
//! Insert and remove take one shard lock; state changes (queued → executing, the worker
//! pid) are atomics on the entry, so the request path never holds a lock while it waits.

use http::uri::PathAndQuery;
use http::Method;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

const SHARDS: usize = 16;

/// Ids are a counter per shard (`k * SHARDS + shard`): dividing out the shard and one
/// multiply spreads them over the table (the low bits, which pick the bucket, would
/// otherwise be the same for every id of a shard); SipHash (the default) would cost more
/// than the rest of the registry per request.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n / SHARDS as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One shard: its own id counter and table, on a cache line of its own, so front
/// threads registering requests at once never write the same line.
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    next: AtomicU64,
    table: Mutex<HashMap<u64, Arc<Entry>, BuildHasherDefault<IdHasher>>>,
}

/// A request's shard is its front thread's ([`crate::runtime::shard`]), and its id says
/// which: `id % SHARDS` is the shard, so removal finds it without asking the thread.
#[derive(Default)]
pub struct Registry {
    shards: [Shard; SHARDS],
}

/// What the registry keeps of a request: shared or reference-counted values, so
/// registering copies no string.
pub struct Entry {
    pub id: u64,
    pub pool: Arc<str>,
    pub method: Method,
    pub url: PathAndQuery,
    pub start: Instant,
    state: AtomicU8,
    pid: AtomicU32,
}

const QUEUED: u8 = 0;
const EXECUTING: u8 = 1;

impl Entry {
    pub fn set_executing(&self, pid: Option<u32>) {
        self.pid.store(pid.unwrap_or(0), Ordering::Relaxed);
        self.state.store(EXECUTING, Ordering::Relaxed);
    }
}

/// One row of `GET /api/v1/requests`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestInfo {
    pub id: u64,
    pub pool: String,
    pub worker_pid: Option<u32>,
    pub method: String,
    pub url: String,
    /// `queued` or `executing`.
    #[serde(deserialize_with = "request_state")]
    pub state: Word,
    pub elapsed_ms: u64,
}

/// A word from a fixed set. Named, because serde's derive would make a field spelled
/// `&'static str` borrow from the input and so only deserialise from `'static` data.
type Word = &'static str;

/// `state` read back (by `roost ctl`) as one of the words the registry writes.
fn request_state<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    ["queued", "executing"]
        .into_iter()
        .find(|w| *w == s)
        .ok_or_else(|| serde::de::Error::unknown_variant(&s, &["queued", "executing"]))
}

/// Removes its entry when the request is finished (or abandoned), unless handed on
/// with [`Registered::into_entry`]. Borrows the registry: an `Arc` clone per request
/// would write a reference count every front thread writes.
pub struct Registered<'a> {
    registry: &'a Registry,
    entry: Option<Arc<Entry>>,
}

impl Registered<'_> {
    pub fn entry(&self) -> &Entry {
        self.entry.as_ref().expect("present until dropped")
    }

    /// The entry, still listed: whoever takes it removes it ([`Registry::remove`]).
    pub fn into_entry(mut self) -> Arc<Entry> {
        self.entry.take().expect("present until dropped")
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.entry.take() {
            self.registry.remove(e.id);
        }
    }
}

impl Registry {
    pub fn register(
        &self,
        pool: Arc<str>,
        method: Method,
        url: PathAndQuery,
        start: Instant,
    ) -> Registered<'_> {
        let at = crate::runtime::shard() % SHARDS;
        let shard = &self.shards[at];
        // Ids start at SHARDS + at, never 0, and stay unique: each shard counts its own.
        let id = (shard.next.fetch_add(1, Ordering::Relaxed) + 1) * SHARDS as u64 + at as u64;
        let entry = Arc::new(Entry {
            id,
            pool,
            method,
            url,
            start,
            state: AtomicU8::new(QUEUED),
            pid: AtomicU32::new(0),
        });
        shard.table.lock().insert(id, entry.clone());
        Registered {
            registry: self,
            entry: Some(entry),
        }
    }

    /// Take a request off the list (see [`Registered::into_entry`]).
    pub fn remove(&self, id: u64) {
        self.shards[id as usize % SHARDS].table.lock().remove(&id);
    }

    /// Every in-flight request, oldest first.
    pub fn list(&self) -> Vec<RequestInfo> {
        let mut out: Vec<RequestInfo> = Vec::new();
        for shard in &self.shards {
            // Copy out under the lock; format after releasing it.
            let entries: Vec<Arc<Entry>> = shard.table.lock().values().cloned().collect();
            out.extend(entries.iter().map(|e| RequestInfo {
                id: e.id,
                pool: e.pool.to_string(),
                worker_pid: match e.pid.load(Ordering::Relaxed) {
                    0 => None,
                    p => Some(p),
                },
                method: e.method.to_string(),
                url: e.url.to_string(),
                state: if e.state.load(Ordering::Relaxed) == EXECUTING {
                    "executing"
                } else {
                    "queued"
                },
                elapsed_ms: e.start.elapsed().as_millis() as u64,
            }));
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.elapsed_ms));
        out
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.table.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_list_and_remove_on_drop() {
        let r = Arc::new(Registry::default());
        let a = r.register(
            "web".into(),
            Method::GET,
            PathAndQuery::from_static("/a"),
            Instant::now(),
        );
        let b = r.register(
            "api".into(),
            Method::POST,
            PathAndQuery::from_static("/b"),
            Instant::now(),
        );
        b.entry().set_executing(Some(42));
        let list = r.list();
        assert_eq!(list.len(), 2);
        let rb = list.iter().find(|x| x.url == "/b").unwrap();
        assert_eq!((rb.state, rb.worker_pid), ("executing", Some(42)));
        let ra = list.iter().find(|x| x.url == "/a").unwrap();
        assert_eq!((ra.state, ra.worker_pid), ("queued", None));
        drop(a);
        assert_eq!(r.len(), 1);
        // Handed on, it stays listed until removed by id.
        let b = b.into_entry();
        assert_eq!(r.len(), 1);
        r.remove(b.id);
        assert!(r.is_empty());
    }
}
