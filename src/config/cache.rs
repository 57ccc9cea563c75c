//! `pools.<name>.cache` (or an application's `cache`, `overrides.rs`): the front's
//! response cache for one pool or application (DESIGN.md §4), from
//! its raw keys to the validated [`CacheSettings`]. Self-contained: the raw type, its
//! schema, the model type and the validation live here; `raw.rs`, `model.rs` and
//! `validate.rs` each only name them.

use super::raw::{Leaf, Opt, Scalar};
use super::validate::{show, Ctx};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

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

const MIB: u64 = 1024 * 1024;

/// Validate a `cache:` section at `path`: `None` when it says `enabled: false` (an
/// application turning its pool's cache off).
pub(super) fn validate_section(
    c: &RawCache,
    path: &str,
    ctx: &mut Ctx<'_>,
) -> Option<CacheSettings> {
    let enabled = ctx.boolean(&c.enabled, &format!("{path}.enabled"), true);
    let settings = validate(c, path, ctx);
    enabled.then_some(settings)
}

/// Validate `cache` at `path`.
fn validate(c: &RawCache, path: &str, ctx: &mut Ctx<'_>) -> CacheSettings {
    let max_bytes = bytes(ctx, &c.max_bytes, &format!("{path}.maxBytes"), 64 * MIB);
    let mop = format!("{path}.maxObjectBytes");
    let mut max_object_bytes = bytes(ctx, &c.max_object_bytes, &mop, 256 * 1024);
    if max_object_bytes > max_bytes {
        let v = c.max_object_bytes.as_ref().map(|s| &s.0);
        ctx.report(&mop, v, format!("larger than maxBytes ({max_bytes})"));
        max_object_bytes = max_bytes;
    }
    let fp = format!("{path}.frequentHits");
    let fh = ctx.nested(&c.frequent_hits, &fp, "a map");
    CacheSettings {
        max_bytes,
        max_object_bytes,
        max_variants: ctx.usize(&c.max_variants, &format!("{path}.maxVariants"), 8, 1),
        stale_if_error: ctx.duration(
            &c.stale_if_error,
            &format!("{path}.staleIfError"),
            Duration::ZERO,
            false,
        ),
        stale_while_revalidate: ctx.duration(
            &c.stale_while_revalidate,
            &format!("{path}.staleWhileRevalidate"),
            Duration::ZERO,
            false,
        ),
        lock_timeout: ctx.duration(
            &c.lock_timeout,
            &format!("{path}.lockTimeout"),
            Duration::from_secs(5),
            true,
        ),
        heuristic: fraction(ctx, &c.heuristic, &format!("{path}.heuristic")),
        allow_set_cookie: ctx.boolean(
            &c.allow_set_cookie,
            &format!("{path}.allowSetCookie"),
            false,
        ),
        client_no_cache: ctx.choice(
            &c.client_no_cache,
            &format!("{path}.clientNoCache"),
            &[
                ("ignore", ClientNoCache::Ignore),
                ("revalidate", ClientNoCache::Revalidate),
            ],
            ClientNoCache::Ignore,
        ),
        x_cache: ctx.boolean(&c.x_cache, &format!("{path}.xCache"), false),
        frequent_count: ctx.u32(
            &fh.and_then(|f| f.count.clone()),
            &format!("{fp}.count"),
            1,
            1,
        ),
        frequent_window: ctx.duration(
            &fh.and_then(|f| f.window.clone()),
            &format!("{fp}.window"),
            Duration::from_secs(10),
            true,
        ),
    }
}

/// A byte size: a whole number, or a number with `KiB`/`MiB`/`GiB` (or `KB`/`MB`/`GB`).
fn bytes(ctx: &mut Ctx<'_>, l: &Leaf, path: &str, default: u64) -> u64 {
    let Some(Scalar(v)) = l else {
        return default;
    };
    match parse_bytes(v) {
        Some(0) => {
            ctx.report(path, Some(v), "must be at least 1");
            default
        }
        Some(n) => n,
        None if v.is_null() => default,
        None => {
            let msg = format!(
                "{} is not a byte size (a whole number, or e.g. `64MiB`, `256KiB`)",
                show(v)
            );
            ctx.report(path, Some(v), msg);
            default
        }
    }
}

pub fn parse_bytes(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 = num.parse().ok()?;
            let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "kib" | "k" => 1024,
                "mib" | "m" => MIB,
                "gib" | "g" => 1024 * MIB,
                "kb" => 1000,
                "mb" => 1_000_000,
                "gb" => 1_000_000_000,
                _ => return None,
            };
            n.checked_mul(mult)
        }
        _ => None,
    }
}

fn fraction(ctx: &mut Ctx<'_>, l: &Leaf, path: &str) -> f64 {
    let Some(Scalar(v)) = l else {
        return 0.0;
    };
    match v {
        Value::Null => 0.0,
        Value::Number(n) if n.as_f64().is_some_and(|f| (0.0..=1.0).contains(&f)) => {
            n.as_f64().unwrap_or(0.0)
        }
        _ => {
            ctx.report(path, Some(v), "expected a fraction from 0 (off) to 1");
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes(&Value::from(10)), Some(10));
        assert_eq!(parse_bytes(&Value::from("64MiB")), Some(64 * MIB));
        assert_eq!(parse_bytes(&Value::from("256 KiB")), Some(256 * 1024));
        assert_eq!(parse_bytes(&Value::from("1GB")), Some(1_000_000_000));
        assert_eq!(parse_bytes(&Value::from("lots")), None);
        assert_eq!(parse_bytes(&Value::from("12 parsecs")), None);
    }
}

/// Default settings, for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

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
