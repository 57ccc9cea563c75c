//! `pools.<name>.cache` (or an application's `cache`, `overrides.rs`): the front's
//! response cache for one pool or application (DESIGN.md §4), as the validated
//! [`CacheSettings`]. Its raw keys are in `raw/cache.rs`, their checks and defaults in
//! `validate/cache.rs`.

use std::time::Duration;

/// A pool's cache settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// Bytes of stored responses (bodies, heads and bookkeeping) the cache may hold.
    pub max_bytes: u64,
    /// A larger response streams through and is not stored (HTTP.sys `UriMaxUriBytes`).
    pub max_object_bytes: u64,
    /// Variants (`Vary` secondary keys) kept per URL.
    pub max_variants: usize,
    /// Out-of-band `stale-if-error` for responses without the directive.
    pub stale_if_error: Duration,
    /// Out-of-band `stale-while-revalidate` for responses without the directive.
    pub stale_while_revalidate: Duration,
    /// How long a request waits for another request's fill of the same key before it
    /// goes to the member on its own.
    pub lock_timeout: Duration,
    /// Heuristic freshness as a fraction of (`Date` − `Last-Modified`); 0 = off (default).
    pub heuristic: f64,
    /// Store responses carrying `Set-Cookie` (off: only with `public`, as nginx/Varnish).
    pub allow_set_cookie: bool,
    /// The client's `Cache-Control: no-cache`.
    pub client_no_cache: ClientNoCache,
    /// Add `x-cache: HIT|MISS|STALE` to responses.
    pub x_cache: bool,
    /// Store a URL only after this many requests within `frequent_window` (IIS
    /// `frequentHitThreshold`); 1 stores on the first.
    pub frequent_count: u32,
    pub frequent_window: Duration,
}

/// What a client's `Cache-Control: no-cache` (or `Pragma: no-cache`) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNoCache {
    /// Request directives are advisory (RFC 9111 §5.2.1): served from the cache.
    Ignore,
    /// Go to the member (and store what it answers).
    Revalidate,
}

/// Default settings, for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    pub fn settings() -> CacheSettings {
        CacheSettings {
            max_bytes: 64 * MIB,
            max_object_bytes: 256 * 1024,
            max_variants: 8,
            stale_if_error: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            lock_timeout: Duration::from_secs(5),
            heuristic: 0.0,
            allow_set_cookie: false,
            client_no_cache: ClientNoCache::Ignore,
            x_cache: false,
            frequent_count: 1,
            frequent_window: Duration::from_secs(10),
        }
    }
}
