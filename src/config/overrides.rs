//! Response settings by pool and by application: each pool's `compression:`, and an
//! application's own `cache:` / `compression:` that replace its pool's (or turn the
//! feature on for that application alone, or off with `enabled: false`).
//!
//! Kept beside the model's `Pool` and `Application` rather than in them, so the many
//! places that build those types (tests, benches, fuzzing) need not change. Validated
//! in a pass of its own over the raw sites and pools; shape errors of the sites and
//! pools themselves were reported by their own pass.

use super::cache::CacheSettings;
use super::compression::CompressionSettings;
use super::raw::{Lenient, RawConfig, RawSite};
use super::validate::Ctx;
use serde_json::Value;
use std::collections::BTreeMap;

/// An application's setting relative to its pool's.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Override<T> {
    /// No section: the pool's applies.
    #[default]
    Inherit,
    /// `enabled: false`: off for this application whatever the pool says.
    Off,
    /// This application's own settings.
    On(T),
}

impl<T> Override<T> {
    fn of(section: Option<Option<T>>) -> Override<T> {
        match section {
            None => Override::Inherit,
            Some(None) => Override::Off,
            Some(Some(t)) => Override::On(t),
        }
    }
}

/// One application's overrides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppResponses {
    pub cache: Override<CacheSettings>,
    pub compression: Override<CompressionSettings>,
}

/// Compression by pool, and the applications that override their pool.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Responses {
    /// `pools.<name>.compression` (absent or `enabled: false`: not here).
    pub pool_compression: BTreeMap<String, CompressionSettings>,
    /// By (site name, application path as routed): only applications with a section.
    pub applications: BTreeMap<(String, String), AppResponses>,
}

/// The pass over `raw`'s pools and applications.
pub(super) fn validate(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Responses {
    let mut out = Responses::default();
    if let Some(Lenient::Ok(pools)) = &raw.pools {
        for (name, p) in pools {
            let Lenient::Ok(p) = p else { continue };
            let path = format!("pools.{name}.compression");
            if let Some(c) = ctx.nested(&p.compression, &path, "a map") {
                if let Some(s) = super::compression::validate(c, &path, ctx) {
                    out.pool_compression.insert(name.clone(), s);
                }
            }
        }
    }
    if let Some(Lenient::Ok(sites)) = &raw.sites {
        for (i, site) in sites.iter().enumerate() {
            if let Lenient::Ok(site) = site {
                applications(site, &format!("sites[{i}]"), ctx, &mut out);
            }
        }
    }
    out
}

fn applications(site: &RawSite, sp: &str, ctx: &mut Ctx<'_>, out: &mut Responses) {
    let name = match site.name.as_ref().map(|s| &s.0) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => return,
    };
    let Some(Lenient::Ok(apps)) = &site.applications else {
        return;
    };
    for (j, app) in apps.iter().enumerate() {
        let Lenient::Ok(app) = app else { continue };
        let ap = format!("{sp}.applications[{j}]");
        let (cp, zp) = (format!("{ap}.cache"), format!("{ap}.compression"));
        let cache = ctx
            .nested(&app.cache, &cp, "a map")
            .map(|c| super::cache::validate_section(c, &cp, ctx));
        let compression = ctx
            .nested(&app.compression, &zp, "a map")
            .map(|c| super::compression::validate(c, &zp, ctx));
        if cache.is_none() && compression.is_none() {
            continue;
        }
        // The same normalisation as the application's own path (validate/sites.rs).
        let Some(Value::String(path)) = app.path.as_ref().map(|s| &s.0) else {
            continue;
        };
        let trimmed = path.trim_end_matches('/');
        let path = if trimmed.is_empty() { "/" } else { trimmed };
        out.applications.insert(
            (name.clone(), path.to_string()),
            AppResponses {
                cache: Override::of(cache),
                compression: Override::of(compression),
            },
        );
    }
}
