//! `compression:` (under a pool or an application): compressing responses at the front
//! by the client's `Accept-Encoding`, from the raw keys to the validated
//! [`CompressionSettings`]. Self-contained like `cache.rs`: the raw type, the model type
//! and the validation live here.

use super::raw::{Leaf, Opt, Scalar};
use super::validate::{show, Ctx};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawCompression {
    pub enabled: Leaf,
    pub algorithms: Opt<Vec<Scalar>>,
    pub types: Opt<Vec<Scalar>>,
    pub min_bytes: Leaf,
    pub level: Leaf,
}

/// A content coding roost can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Zstd,
    Br,
    Gzip,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Zstd, Algorithm::Br, Algorithm::Gzip];

    /// The content-coding token (`Content-Encoding`, `Accept-Encoding`, config).
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zstd",
            Algorithm::Br => "br",
            Algorithm::Gzip => "gzip",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How hard to compress; each algorithm maps it to its own scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Fastest,
    /// Chosen for on-the-fly compression: gzip 6 and zstd 3 (their libraries'
    /// defaults), brotli 4 (its default 11 costs ~30× the CPU for a few % of size).
    Default,
    Best,
}

/// One pool's or application's compression settings (present only when enabled).
#[derive(Debug, Clone, PartialEq)]
pub struct CompressionSettings {
    /// In the server's order of preference (ties between equal client q-values).
    pub algorithms: Vec<Algorithm>,
    /// Media types, lower-case: exact (`application/json`) or a whole top-level type
    /// (`text/*`).
    pub types: Vec<String>,
    /// A response announcing fewer bytes (`Content-Length`) is sent as it is.
    pub min_bytes: u64,
    pub level: Level,
}

/// Types compressed when `types` is not given: text formats that shrink well. Images,
/// video, archives and fonts (woff2) are already compressed.
pub const DEFAULT_TYPES: [&str; 10] = [
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/manifest+json",
    "application/wasm",
    "image/svg+xml",
];

/// Validate `compression` at `path`: `None` when it says `enabled: false`.
pub(super) fn validate(
    c: &RawCompression,
    path: &str,
    ctx: &mut Ctx<'_>,
) -> Option<CompressionSettings> {
    let enabled = ctx.boolean(&c.enabled, &format!("{path}.enabled"), true);
    let settings = CompressionSettings {
        algorithms: algorithms(c, path, ctx),
        types: types(c, path, ctx),
        min_bytes: min_bytes(&c.min_bytes, &format!("{path}.minBytes"), ctx),
        level: ctx.choice(
            &c.level,
            &format!("{path}.level"),
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

fn algorithms(c: &RawCompression, path: &str, ctx: &mut Ctx<'_>) -> Vec<Algorithm> {
    let ap = format!("{path}.algorithms");
    if c.algorithms.is_none() {
        return Algorithm::ALL.to_vec();
    }
    let mut out = Vec::new();
    for (p, name) in ctx.texts(&c.algorithms, &ap) {
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

fn types(c: &RawCompression, path: &str, ctx: &mut Ctx<'_>) -> Vec<String> {
    let tp = format!("{path}.types");
    if c.types.is_none() {
        return DEFAULT_TYPES.iter().map(|t| t.to_string()).collect();
    }
    let mut out = Vec::new();
    for (p, t) in ctx.texts(&c.types, &tp) {
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

fn min_bytes(l: &Leaf, path: &str, ctx: &mut Ctx<'_>) -> u64 {
    let Some(Scalar(v)) = l else { return 1024 };
    if v.is_null() {
        return 1024;
    }
    match super::cache::parse_bytes(v) {
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
