//! `pools.<name>.priorities` checked into [`PriorityClass`]es: names, match rules,
//! exactly one default class, at most [`MAX_CLASSES`].

use super::ctx::{At, Ctx, KeyPath, Sub};
use crate::config::leaf::List;
use crate::config::priority::{PriorityClass, MAX_CLASSES};
use crate::config::raw::RawPriority;

/// Read and check `pools.<name>.priorities`: the classes highest first, always with
/// exactly one default class (empty when the key is absent).
pub(super) fn validate(
    raw: &List<RawPriority>,
    pp: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> Vec<PriorityClass> {
    let lp = Sub(&pp, "priorities");
    let items = ctx.items(raw, &lp, "a class like {name: critical, path: /api/pay}");
    let mut classes: Vec<PriorityClass> = Vec::new();
    for (i, rp) in items {
        let ip = At(&lp, i);
        if let Some(c) = class(rp, &ip, ctx) {
            if classes.iter().any(|o| o.name == c.name) {
                ctx.report(
                    &Sub(&ip, "name"),
                    None,
                    format!("class `{}` is named twice", c.name),
                );
            } else if c.is_default() && classes.iter().any(PriorityClass::is_default) {
                ctx.report(
                    &ip,
                    None,
                    "a second class without path or header (only one default class)",
                );
            } else {
                classes.push(c);
            }
        }
    }
    if classes.is_empty() {
        return classes;
    }
    if !classes.iter().any(PriorityClass::is_default) {
        if classes.iter().any(|c| c.name == "default") {
            ctx.report(&lp, None, "a class is named `default` but has rules: add an entry without path or header for the default class");
        }
        classes.push(PriorityClass {
            name: "default".into(),
            path: None,
            header: None,
        });
    }
    if classes.len() > MAX_CLASSES {
        ctx.report(
            &lp,
            None,
            format!(
                "{} classes (with the default); at most {MAX_CLASSES}",
                classes.len()
            ),
        );
        classes.truncate(MAX_CLASSES);
    }
    classes
}

fn class(rp: &RawPriority, ip: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Option<PriorityClass> {
    let np = Sub(&ip, "name");
    let name = ctx.name(&rp.name, &np)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        // Class names become metric labels.
        ctx.report(
            &np,
            rp.name.as_ref().map(|s| &s.0),
            "class names may use only letters, digits, `-`, `_` and `.`",
        );
        return None;
    }
    let pathp = Sub(&ip, "path");
    let path = match ctx.text(&rp.path, &pathp) {
        Some(p) if p.starts_with('/') => Some(p.trim_end_matches('/').to_string()).map(|p| {
            if p.is_empty() {
                "/".to_string()
            } else {
                p
            }
        }),
        Some(_) => {
            ctx.report(
                &pathp,
                rp.path.as_ref().map(|s| &s.0),
                "a path prefix starts with `/`",
            );
            return None;
        }
        None => None,
    };
    let hp = Sub(&ip, "header");
    let header = match ctx.text(&rp.header, &hp) {
        Some(h) => match parse_header(&h) {
            Ok(h) => Some(h),
            Err(why) => {
                ctx.report(&hp, rp.header.as_ref().map(|s| &s.0), why);
                return None;
            }
        },
        None => None,
    };
    Some(PriorityClass { name, path, header })
}

/// `"X-Bulk: 1"` (that value) or `"X-Bulk"` (present with any value).
fn parse_header(s: &str) -> Result<(http::HeaderName, Option<http::HeaderValue>), String> {
    let (name, value) = match s.split_once(':') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (s.trim(), None),
    };
    let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        format!("`{name}` is not a header name (write \"Name: value\" or \"Name\")")
    })?;
    let value = match value {
        Some(v) => Some(
            http::HeaderValue::from_str(v).map_err(|_| format!("`{v}` is not a header value"))?,
        ),
        None => None,
    };
    Ok((name, value))
}
