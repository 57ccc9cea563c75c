//! `sites[]`: names, bindings (listen, TLS certificates), host names, applications.

use super::ctx::{At, Ctx, KeyPath, Sub, LISTEN_HINT};
use super::parse::{check_cert_files, check_host_name, leaf_value, parse_listen};
use crate::config::leaf::{Leaf, Lenient, Opt, Scalar};
use crate::config::model::{Application, Binding, Certificate, Site, Tls};
use crate::config::raw::{RawApplication, RawBinding, RawConfig, RawSite, RawTls};
use crate::config::tree::suggest;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;

pub(super) fn validate_sites(raw: &RawConfig, pools: &[&str], ctx: &mut Ctx<'_>) -> Vec<Site> {
    let site_items = ctx.items(&raw.sites, "sites", "a site (a map)");
    if site_items.is_empty() && !matches!(raw.sites, Some(Lenient::Bad(_))) {
        ctx.report("sites", None, "at least one site is needed");
    }
    let mut sites = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut claims = Claims::default();
    for (i, rs) in site_items {
        let sp = At("sites", i);
        let name = site_name(rs, i, &mut names, ctx);
        let mut host_names = Vec::new();
        let hosts = Sub(&sp, "hostNames");
        for (k, h) in ctx.texts(&rs.host_names, &hosts) {
            match check_host_name(&h) {
                Ok(h) => host_names.push(h),
                Err(msg) => ctx.report(&At(&hosts, k), Some(&Value::String(h)), msg),
            }
        }
        let bindings = validate_bindings(rs, i, &name, &host_names, &mut claims, ctx);
        let applications = validate_applications(rs, &sp, pools, ctx);
        sites.push(Site {
            name,
            bindings,
            host_names,
            applications,
        });
    }
    sites
}

/// A site's `name`, which must be there and be unique (`names`: name → the index of the
/// site that first used it).
fn site_name(
    rs: &RawSite,
    site: usize,
    names: &mut HashMap<String, usize>,
    ctx: &mut Ctx<'_>,
) -> String {
    let sp = At("sites", site);
    let name_path = Sub(&sp, "name");
    let name = match ctx.name(&rs.name, &name_path) {
        Some(n) => n,
        None => {
            if rs.name.is_none() {
                ctx.report(&name_path, None, "every site needs a name");
            }
            String::new()
        }
    };
    if !name.is_empty() {
        if let Some(&first) = names.get(&name) {
            let first = Sub(&At("sites", first), "name").spell().into_owned();
            let msg = format!("duplicate site name (first used at {first})");
            ctx.report(&name_path, leaf_value(&rs.name), msg);
        } else {
            names.insert(name.clone(), site);
        }
    }
    name
}

/// What the sites bound so far, to find two bindings that would collide.
#[derive(Default)]
struct Claims {
    /// (address, host or "" for any) → (site name, where).
    bound: HashMap<(SocketAddr, String), (String, ListenAt)>,
    /// address → (with TLS?, where).
    tls_of: HashMap<SocketAddr, (bool, ListenAt)>,
}

/// `sites[site].bindings[binding].listen`, spelled only for a message.
#[derive(Clone, Copy)]
struct ListenAt {
    site: usize,
    binding: usize,
}

impl KeyPath for ListenAt {
    fn spell(&self) -> std::borrow::Cow<'_, str> {
        let bindings = Sub(&At("sites", self.site), "bindings");
        Sub(&At(&bindings, self.binding), "listen")
            .spell()
            .into_owned()
            .into()
    }
}

impl std::fmt::Display for ListenAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spell())
    }
}

/// A site's `bindings`: each a listen address, with or without TLS.
fn validate_bindings(
    rs: &RawSite,
    site: usize,
    name: &str,
    host_names: &[String],
    claims: &mut Claims,
    ctx: &mut Ctx<'_>,
) -> Vec<Binding> {
    let sp = At("sites", site);
    let bpath = Sub(&sp, "bindings");
    let binding_items = ctx.items(&rs.bindings, &bpath, "a binding (a map)");
    if binding_items.is_empty() && !matches!(rs.bindings, Some(Lenient::Bad(_))) {
        ctx.report(&bpath, None, "a site needs at least one binding");
    }
    let mut bindings = Vec::with_capacity(binding_items.len());
    for (binding, rb) in binding_items {
        let bp = At(&bpath, binding);
        let lp = ListenAt { site, binding };
        let listen = match ctx.text(&rb.listen, &lp) {
            None => {
                if rb.listen.is_none() {
                    ctx.report(&lp, None, "a binding needs `listen` (e.g. 127.0.0.1:8080)");
                }
                None
            }
            Some(s) => match parse_listen(&s) {
                Some(a) => Some(a),
                None => {
                    ctx.report(&lp, leaf_value(&rb.listen), LISTEN_HINT);
                    None
                }
            },
        };
        let tls = ctx
            .nested(&rb.tls, &Sub(&bp, "tls"), "a map")
            .and_then(|t| validate_tls(t, &Sub(&bp, "tls"), ctx));
        let Some(listen) = listen else { continue };
        // Port 0 asks the OS for a fresh port per binding (tests do this), so such
        // bindings can never collide.
        if listen.port() != 0 {
            claims.claim(rb, lp, listen, tls.is_some(), name, host_names, ctx);
        }
        bindings.push(Binding { listen, tls });
    }
    bindings
}

impl Claims {
    /// Claim `listen` for a site's host names (any host, without them): an address is
    /// TLS or not for every binding, and one site at most serves a host on it.
    #[allow(clippy::too_many_arguments)]
    fn claim(
        &mut self,
        rb: &RawBinding,
        lp: ListenAt,
        listen: SocketAddr,
        tls: bool,
        name: &str,
        host_names: &[String],
        ctx: &mut Ctx<'_>,
    ) {
        match self.tls_of.get(&listen) {
            Some((was_tls, first)) if *was_tls != tls => {
                let msg = format!(
                    "{listen} is bound with{} TLS at {first} and with{} TLS here",
                    if *was_tls { "" } else { "out" },
                    if tls { "" } else { "out" },
                );
                ctx.report(&lp, leaf_value(&rb.listen), msg);
            }
            Some(_) => {}
            None => {
                self.tls_of.insert(listen, (tls, lp));
            }
        }
        let hosts: Vec<String> = if host_names.is_empty() {
            vec![String::new()]
        } else {
            host_names.to_vec()
        };
        for h in hosts {
            match self.bound.get(&(listen, h.clone())) {
                Some((other, first)) => {
                    let who = if h.is_empty() {
                        "any host name".to_string()
                    } else {
                        format!("host `{h}`")
                    };
                    let msg = if other == name {
                        format!("duplicate binding (already at {first})")
                    } else {
                        format!("site `{other}` already binds {listen} for {who} (at {first})")
                    };
                    ctx.report(&lp, leaf_value(&rb.listen), msg);
                    break;
                }
                None => {
                    self.bound.insert((listen, h), (name.to_string(), lp));
                }
            }
        }
    }
}

/// A site's `applications`: a path (unique in the site) and a pool that exists; sorted
/// longest path first, so the router's first prefix match is the longest.
fn validate_applications(
    rs: &RawSite,
    sp: &dyn KeyPath,
    pools: &[&str],
    ctx: &mut Ctx<'_>,
) -> Vec<Application> {
    let apath = Sub(sp, "applications");
    let app_items = ctx.items(&rs.applications, &apath, "an application (a map)");
    if app_items.is_empty() && !matches!(rs.applications, Some(Lenient::Bad(_))) {
        ctx.report(
            &apath,
            None,
            "a site needs at least one application (e.g. path: /, pool: default)",
        );
    }
    let mut applications: Vec<Application> = Vec::with_capacity(app_items.len());
    let mut seen_paths: HashMap<String, usize> = HashMap::new();
    for (i, ra) in app_items {
        let ap = At(&apath, i);
        let path = application_path(ra, &ap, i, &mut seen_paths, ctx);
        let pool = application_pool(ra, &ap, pools, ctx);
        if let (Some(path), Some(pool)) = (path, pool) {
            applications.push(Application { path, pool });
        }
    }
    applications.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.path.cmp(&b.path)));
    applications
}

/// An application's `path`, without a trailing slash (`/` stays `/`); `seen_paths`
/// holds the index of the application that first used each path.
fn application_path(
    ra: &RawApplication,
    ap: &At<'_, Sub<'_, dyn KeyPath + '_>>,
    index: usize,
    seen_paths: &mut HashMap<String, usize>,
    ctx: &mut Ctx<'_>,
) -> Option<String> {
    let pp = Sub(ap, "path");
    match ctx.url_path(&ra.path, &pp) {
        Some(p) => {
            let trimmed = p.trim_end_matches('/');
            let norm = if trimmed.is_empty() {
                "/".to_string()
            } else {
                trimmed.to_string()
            };
            if let Some(&first) = seen_paths.get(&norm) {
                let first = Sub(&At(ap.0, first), "path").spell().into_owned();
                ctx.report(
                    &pp,
                    leaf_value(&ra.path),
                    format!("duplicate application path in this site (first at {first})"),
                );
            } else {
                seen_paths.insert(norm.clone(), index);
            }
            Some(norm)
        }
        None => {
            if ra.path.is_none() {
                ctx.report(&pp, None, "an application needs a `path` (e.g. /)");
            }
            None
        }
    }
}

/// A message lists the pools when there are no more than this many.
const LIST_AT_MOST: usize = 20;

/// An application's `pool`, which must be one of `pools` (the names, sorted), with a
/// suggestion if not.
fn application_pool(
    ra: &RawApplication,
    ap: &dyn KeyPath,
    pools: &[&str],
    ctx: &mut Ctx<'_>,
) -> Option<String> {
    let poolp = Sub(ap, "pool");
    match ctx.name(&ra.pool, &poolp) {
        Some(p) if pools.binary_search(&p.as_str()).is_ok() => Some(p),
        Some(p) => {
            let msg = match suggest(&p, pools.iter().copied()) {
                Some(s) => format!("no such pool (did you mean `{s}`?)"),
                None if pools.is_empty() => "no such pool (no pools are defined)".to_string(),
                None if pools.len() <= LIST_AT_MOST => {
                    format!("no such pool (pools: {})", pools.join(", "))
                }
                None => format!("no such pool (none of the {} pools is close)", pools.len()),
            };
            ctx.report(&poolp, leaf_value(&ra.pool), msg);
            None
        }
        None => {
            if ra.pool.is_none() {
                ctx.report(&poolp, None, "an application needs a `pool`");
            }
            None
        }
    }
}

pub(super) fn validate_tls(t: &RawTls, path: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Option<Tls> {
    let single = t.cert.is_some() || t.key.is_some() || t.server_names.is_some();
    let mut certificates = Vec::new();
    if single && t.certificates.is_some() {
        ctx.report(
            path,
            None,
            "use either cert/key/serverNames or certificates, not both",
        );
    }
    if t.certificates.is_some() {
        let cp = Sub(path, "certificates");
        let items = ctx.items(&t.certificates, &cp, "a certificate (a map)");
        if items.is_empty() && !matches!(t.certificates, Some(Lenient::Bad(_))) {
            ctx.report(&cp, None, "list at least one certificate");
        }
        for (i, c) in items {
            let ip = At(&cp, i);
            if let Some(c) = validate_certificate(&c.cert, &c.key, &c.server_names, &ip, ctx) {
                certificates.push(c);
            }
        }
    } else if let Some(c) = validate_certificate(&t.cert, &t.key, &t.server_names, path, ctx) {
        certificates.push(c);
    }
    let defaults = certificates
        .iter()
        .filter(|c| c.server_names.is_empty())
        .count();
    if defaults > 1 {
        ctx.report(
            path,
            None,
            "only one certificate may omit serverNames (it is the default)",
        );
    }
    (!certificates.is_empty()).then_some(Tls { certificates })
}

pub(super) fn validate_certificate(
    cert: &Leaf,
    key: &Leaf,
    server_names: &Opt<Vec<Scalar>>,
    path: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> Option<Certificate> {
    let cp = Sub(path, "cert");
    let kp = Sub(path, "key");
    let c = ctx.path_buf(cert, &cp);
    let k = ctx.path_buf(key, &kp);
    if cert.is_none() {
        ctx.report(&cp, None, "TLS needs `cert` (a PEM certificate file)");
    }
    if key.is_none() {
        ctx.report(&kp, None, "TLS needs `key` (a PEM private key file)");
    }
    let mut names = Vec::new();
    let np = Sub(path, "serverNames");
    for (i, n) in ctx.texts(server_names, &np) {
        match check_host_name(&n) {
            Ok(n) => names.push(n),
            Err(msg) => ctx.report(&At(&np, i), Some(&Value::String(n)), msg),
        }
    }
    let (c, k) = (c?, k?);
    let mut ok = true;
    for (which, msg) in check_cert_files(&c, &k) {
        let (p, l) = if which == "cert" {
            (&cp, cert)
        } else {
            (&kp, key)
        };
        ctx.report(p, leaf_value(l), msg);
        ok = false;
    }
    ok.then_some(Certificate {
        cert: c,
        key: k,
        server_names: names,
    })
}
