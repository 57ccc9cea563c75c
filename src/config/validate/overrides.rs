//! The pass that reads each pool's `compression:` and each application's own `cache:`
//! and `compression:` into [`Responses`] (model in `config/overrides.rs`).

use super::ctx::{At, Ctx, KeyPath, Sub};
use crate::config::leaf::Lenient;
use crate::config::overrides::{AppResponses, Override, Responses};
use crate::config::raw::{RawConfig, RawSite};
use serde_json::Value;

/// The pass over `raw`'s pools and applications.
pub(super) fn validate(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Responses {
    let mut out = Responses::default();
    if let Some(Lenient::Ok(pools)) = &raw.pools {
        for (name, p) in pools.iter() {
            let Lenient::Ok(p) = p else { continue };
            let pool = Sub("pools", name.as_str());
            let path = Sub(&pool, "compression");
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
                applications(site, &At("sites", i), ctx, &mut out);
            }
        }
    }
    out
}

fn applications(site: &RawSite, sp: &dyn KeyPath, ctx: &mut Ctx<'_>, out: &mut Responses) {
    // Spelled only for an application that has its own settings.
    let name = || match site.name.as_ref().map(|s| &s.0) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    };
    let Some(Lenient::Ok(apps)) = &site.applications else {
        return;
    };
    let list = Sub(sp, "applications");
    for (j, app) in apps.iter().enumerate() {
        let Lenient::Ok(app) = app else { continue };
        if app.cache.is_none() && app.compression.is_none() {
            continue;
        }
        let Some(name) = name() else { return };
        let ap = At(&list, j);
        let (cp, zp) = (Sub(&ap, "cache"), Sub(&ap, "compression"));
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
            (name, path.to_string()),
            AppResponses {
                cache: Override::of(cache),
                compression: Override::of(compression),
            },
        );
    }
}
