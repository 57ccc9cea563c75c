//! The raw keys of a `cache:` section (under a pool or an application); checked into
//! `CacheSettings` by `validate/cache.rs`.

use crate::config::leaf::{Leaf, Opt};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawCache {
    pub enabled: Leaf,
    pub max_bytes: Leaf,
    pub max_object_bytes: Leaf,
    pub max_variants: Leaf,
    pub stale_if_error: Leaf,
    pub stale_while_revalidate: Leaf,
    pub lock_timeout: Leaf,
    pub heuristic: Leaf,
    pub allow_set_cookie: Leaf,
    pub client_no_cache: Leaf,
    pub x_cache: Leaf,
    pub frequent_hits: Opt<RawFrequentHits>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawFrequentHits {
    pub count: Leaf,
    pub window: Leaf,
}
