//! `compression:` (under a pool or an application) checked into
//! [`CompressionSettings`].

use super::ctx::{show, At, Ctx, KeyPath, Sub};
use super::parse::parse_bytes;
use crate::config::compression::{Algorithm, CompressionSettings, Level, DEFAULT_TYPES};
use crate::config::leaf::{Leaf, Scalar};
use crate::config::raw::RawCompression;
use serde_json::Value;

/// Validate `compression` at `path`: `None` when it says `enabled: false`.
pub(super) fn validate(
    c: &RawCompression,
    path: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> Option<CompressionSettings> {
    let enabled = ctx.boolean(&c.enabled, &Sub(path, "enabled"), true);
    let settings = CompressionSettings {
        algorithms: algorithms(c, path, ctx),
        types: types(c, path, ctx),
        min_bytes: min_bytes(&c.min_bytes, &Sub(&path, "minBytes"), ctx),
        level: ctx.choice(
            &c.level,
            &Sub(path, "level"),
            &[
                ("fastest", Level::Fastest),
                ("default", Level::Default),
                ("best", Level::Best),
            ],
            Level::Default,
        ),
    };
    enabled.then_some(settings)
}

fn algorithms(c: &RawCompression, path: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Vec<Algorithm> {
    let ap = Sub(&path, "algorithms");
    if c.algorithms.is_none() {
        return Algorithm::ALL.to_vec();
    }
    let mut out = Vec::new();
    for (i, name) in ctx.texts(&c.algorithms, &ap) {
        let p = At(&ap, i);
        let v = Value::String(name.clone());
        let lower = name.trim().to_ascii_lowercase();
        match Algorithm::ALL.into_iter().find(|a| a.token() == lower) {
            Some(a) if out.contains(&a) => ctx.report(&p, Some(&v), "listed twice"),
            Some(a) => out.push(a),
            None => ctx.report(
                &p,
                Some(&v),
                "unknown algorithm (expected one of zstd, br, gzip)",
            ),
        }
    }
    if out.is_empty() {
        ctx.report(&ap, None, "list at least one algorithm (zstd, br, gzip)");
        return Algorithm::ALL.to_vec();
    }
    out
}

fn types(c: &RawCompression, path: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Vec<String> {
    let tp = Sub(&path, "types");
    if c.types.is_none() {
        return DEFAULT_TYPES.iter().map(|t| t.to_string()).collect();
    }
    let mut out = Vec::new();
    for (i, t) in ctx.texts(&c.types, &tp) {
        let p = At(&tp, i);
        let lower = t.trim().to_ascii_lowercase();
        match check_type(&lower) {
            Ok(()) => out.push(lower),
            Err(why) => ctx.report(&p, Some(&Value::String(t)), why),
        }
    }
    out
}

/// `type/subtype` or `type/*`, without parameters.
fn check_type(t: &str) -> Result<(), &'static str> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match t.split_once('/') {
        Some((top, "*")) if token(top) => Ok(()),
        Some((top, sub)) if token(top) && token(sub) => Ok(()),
        _ => Err("expected a media type such as `application/json` or `text/*` (no parameters)"),
    }
}

fn min_bytes(l: &Leaf, path: &dyn KeyPath, ctx: &mut Ctx<'_>) -> u64 {
    let Some(Scalar(v)) = l else { return 1024 };
    if v.is_null() {
        return 1024;
    }
    match parse_bytes(v) {
        Some(n) => n,
        None => {
            let msg = format!(
                "{} is not a byte size (a whole number, or e.g. `1KiB`)",
                show(v)
            );
            ctx.report(path, Some(v), msg);
            1024
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_type;

    #[test]
    fn media_types() {
        assert!(check_type("text/*").is_ok());
        assert!(check_type("application/vnd.api+json").is_ok());
        assert!(check_type("text").is_err());
        assert!(check_type("*/*").is_err());
        assert!(check_type("text/html; charset=utf-8").is_err());
    }
}
