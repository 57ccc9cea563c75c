//! The host and path router.

use crate::config::model::{Application, Site};
use crate::front::router::{HostRouter, RESERVED_PREFIX};

/// Input: lines. The first line holds host names for site `a` (space-separated; `*.x`
/// wildcards allowed), the next lines up to an empty one are application paths (made
/// valid: a leading `/`, no trailing one), and the lines after that are `host path`
/// requests. A second site `b` with no host names is the default.
///
/// Invariants: a `/.roost/` path is never routed; a route's application is a prefix of
/// the path ending on a segment boundary, and the longest such one; routing by scan
/// (few applications) and by the segment index (many) agree.
pub fn router(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let hosts: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_ascii_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let mut apps: Vec<String> = lines
        .by_ref()
        .take_while(|l| !l.is_empty())
        .map(app_path)
        .take(64)
        .collect();
    apps.sort_by_key(|p| std::cmp::Reverse(p.len()));
    apps.dedup();
    let requests: Vec<&str> = lines.take(64).collect();
    let few = sites(&hosts, &apps[..apps.len().min(8)]);
    let all = padded(&apps);
    let many = sites(&hosts, &all);
    let few = HostRouter::new(few.iter(), |pool| pool.to_string());
    let many = HostRouter::new(many.iter(), |pool| pool.to_string());
    for req in requests {
        let (host, path) = req.split_once(' ').unwrap_or(("", req));
        // The front routes `uri.path()`, which never holds a `?`; the scan matches a
        // prefix ending at one, the index does not (found by this target, harmless).
        if path.contains('?') {
            continue;
        }
        let host = (!host.is_empty()).then_some(host);
        let small = &apps[..apps.len().min(8)];
        check_route(&few, small, host, path);
        check_route(&many, &all, host, path);
    }
}

/// An application path as the config loader would accept it.
fn app_path(line: &str) -> String {
    let mut p = line.trim().to_string();
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    while p.len() > 1 && p.ends_with('/') {
        p.pop();
    }
    p
}

/// `apps` plus filler paths no request names, so the site has more than the scan limit
/// and is routed by its segment index.
fn padded(apps: &[String]) -> Vec<String> {
    let mut all = apps.to_vec();
    all.extend((0..9).map(|i| format!("/~filler{i}")));
    all.sort_by_key(|p| std::cmp::Reverse(p.len()));
    all
}

fn sites(hosts: &[String], apps: &[String]) -> Vec<Site> {
    let site = |name: &str, hosts: Vec<String>, apps: &[String]| Site {
        name: name.into(),
        bindings: vec![],
        host_names: hosts,
        applications: apps
            .iter()
            .map(|p| Application {
                path: p.clone(),
                pool: p.clone(),
            })
            .collect(),
    };
    vec![
        site("a", hosts.to_vec(), apps),
        site("b", vec![], &["/".to_string()]),
    ]
}

fn check_route(r: &HostRouter<String>, apps: &[String], host: Option<&str>, path: &str) {
    let got = r.route(host, path);
    if path.starts_with(RESERVED_PREFIX) || path == "/.roost" {
        assert!(got.is_none(), "reserved path {path:?} was routed");
        return;
    }
    let Some(route) = got else { return };
    assert_eq!(route.target, route.app_path);
    assert!(
        on_boundary(route.app_path, path),
        "{:?} routed to {}",
        path,
        route.app_path
    );
    if route.site == "a" {
        let longest = apps
            .iter()
            .filter(|p| on_boundary(p, path))
            .max_by_key(|p| p.len());
        assert_eq!(
            Some(route.app_path),
            longest.map(String::as_str),
            "path {path:?}"
        );
    }
}

fn on_boundary(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}
