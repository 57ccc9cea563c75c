//! `cache:` (under a pool, or an application's own, `overrides.rs`) checked into
//! [`CacheSettings`], with the cache's defaults.

use super::ctx::{show, Ctx, KeyPath, Sub};
use super::parse::{parse_bytes, MIB};
use crate::config::cache::{CacheSettings, ClientNoCache};
use crate::config::leaf::{Leaf, Scalar};
use crate::config::raw::RawCache;
use serde_json::Value;
use std::time::Duration;

/// Validate a `cache:` section at `path`: `None` when it says `enabled: false` (an
/// application turning its pool's cache off).
pub(super) fn validate_section(
    c: &RawCache,
    path: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> Option<CacheSettings> {
    let enabled = ctx.boolean(&c.enabled, &Sub(path, "enabled"), true);
    let settings = validate(c, path, ctx);
    enabled.then_some(settings)
}

/// Validate `cache` at `path`.
fn validate(c: &RawCache, path: &dyn KeyPath, ctx: &mut Ctx<'_>) -> CacheSettings {
    let max_bytes = bytes(ctx, &c.max_bytes, &Sub(&path, "maxBytes"), 64 * MIB);
    let mop = Sub(&path, "maxObjectBytes");
    let mut max_object_bytes = bytes(ctx, &c.max_object_bytes, &mop, 256 * 1024);
    if max_object_bytes > max_bytes {
        let v = c.max_object_bytes.as_ref().map(|s| &s.0);
        ctx.report(&mop, v, format!("larger than maxBytes ({max_bytes})"));
        max_object_bytes = max_bytes;
    }
    let fp = Sub(&path, "frequentHits");
    let fh = ctx.nested(&c.frequent_hits, &fp, "a map");
    CacheSettings {
        max_bytes,
        max_object_bytes,
        max_variants: ctx.usize(&c.max_variants, &Sub(path, "maxVariants"), 8, 1),
        stale_if_error: ctx.duration(
            &c.stale_if_error,
            &Sub(path, "staleIfError"),
            Duration::ZERO,
            false,
        ),
        stale_while_revalidate: ctx.duration(
            &c.stale_while_revalidate,
            &Sub(path, "staleWhileRevalidate"),
            Duration::ZERO,
            false,
        ),
        lock_timeout: ctx.duration(
            &c.lock_timeout,
            &Sub(path, "lockTimeout"),
            Duration::from_secs(5),
            true,
        ),
        heuristic: fraction(ctx, &c.heuristic, &Sub(&path, "heuristic")),
        allow_set_cookie: ctx.boolean(&c.allow_set_cookie, &Sub(path, "allowSetCookie"), false),
        client_no_cache: ctx.choice(
            &c.client_no_cache,
            &Sub(path, "clientNoCache"),
            &[
                ("ignore", ClientNoCache::Ignore),
                ("revalidate", ClientNoCache::Revalidate),
            ],
            ClientNoCache::Ignore,
        ),
        x_cache: ctx.boolean(&c.x_cache, &Sub(path, "xCache"), false),
        frequent_count: ctx.u32(&fh.and_then(|f| f.count.clone()), &Sub(&fp, "count"), 1, 1),
        frequent_window: ctx.duration(
            &fh.and_then(|f| f.window.clone()),
            &Sub(&fp, "window"),
            Duration::from_secs(10),
            true,
        ),
    }
}

/// A byte size: a whole number, or a number with `KiB`/`MiB`/`GiB` (or `KB`/`MB`/`GB`).
fn bytes(ctx: &mut Ctx<'_>, l: &Leaf, path: &dyn KeyPath, default: u64) -> u64 {
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

fn fraction(ctx: &mut Ctx<'_>, l: &Leaf, path: &dyn KeyPath) -> f64 {
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
