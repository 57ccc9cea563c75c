//! Routing: the Host picks a site among those bound to the listener, then the longest
//! matching path prefix picks the application and so its pool.
//!
//! Prefixes match on segment boundaries (`/api` matches `/api` and `/api/x`, never
//! `/apix`), like IIS applications. `/.roost/` is reserved and never routed.

use crate::config::model::Site;
use std::collections::HashMap;

/// Sites with at most this many applications are routed by a scan, larger ones by the
/// per-segment index.
const SCAN_MAX: usize = 8;

/// The reserved prefix for roost's own endpoints (worker ping/counters).
pub const RESERVED_PREFIX: &str = "/.roost/";

/// Routes for one listen address. `T` is what an application resolves to (the front uses
/// the pool; tests use names).
#[derive(Debug, Clone)]
pub struct HostRouter<T> {
    sites: Vec<SiteRoutes<T>>,
    exact: HashMap<String, usize>,
    /// `(suffix including the dot, site)`, longest suffix first.
    wildcard: Vec<(String, usize)>,
    default: Option<usize>,
}

#[derive(Debug, Clone)]
struct SiteRoutes<T> {
    name: String,
    /// Longest prefix first.
    apps: Vec<(String, T)>,
    /// Prefix → index in `apps`: a lookup costs one hash probe per path segment, not a
    /// scan of every application (10,000 applications route as fast as one).
    index: HashMap<String, usize>,
}

/// What a request resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a, T> {
    pub site: &'a str,
    pub app_path: &'a str,
    pub target: &'a T,
}

impl<T> HostRouter<T> {
    /// Build from the sites bound to one address; `resolve` maps a pool name to `T`.
    pub fn new<'a>(
        sites: impl IntoIterator<Item = &'a Site>,
        mut resolve: impl FnMut(&str) -> T,
    ) -> Self {
        let mut r = HostRouter {
            sites: Vec::new(),
            exact: HashMap::new(),
            wildcard: Vec::new(),
            default: None,
        };
        for site in sites {
            let idx = r.sites.len();
            let mut apps: Vec<(String, T)> = site
                .applications
                .iter()
                .map(|a| (a.path.clone(), resolve(&a.pool)))
                .collect();
            apps.sort_by_key(|b| std::cmp::Reverse(b.0.len()));
            let mut index = HashMap::with_capacity(apps.len());
            for (i, (prefix, _)) in apps.iter().enumerate() {
                index.entry(prefix.clone()).or_insert(i);
            }
            r.sites.push(SiteRoutes {
                name: site.name.clone(),
                apps,
                index,
            });
            if site.host_names.is_empty() {
                r.default.get_or_insert(idx);
            }
            for h in &site.host_names {
                if let Some(suffix) = h.strip_prefix('*') {
                    r.wildcard.push((suffix.to_ascii_lowercase(), idx));
                } else {
                    r.exact.entry(h.to_ascii_lowercase()).or_insert(idx);
                }
            }
        }
        r.wildcard.sort_by_key(|b| std::cmp::Reverse(b.0.len()));
        r
    }

    /// Route a request. `host` may carry a port and any case; `path` is the URI path.
    pub fn route<'s>(&'s self, host: Option<&str>, path: &str) -> Option<Route<'s, T>> {
        if path.starts_with(RESERVED_PREFIX) || path == "/.roost" {
            return None;
        }
        let site = self.site_for(host)?;
        let s = &self.sites[site];
        if s.apps.len() <= SCAN_MAX {
            // A few applications: comparing prefixes (longest first) beats hashing.
            return s
                .apps
                .iter()
                .find(|(p, _)| prefix_matches(p, path))
                .map(|(p, t)| Route {
                    site: &s.name,
                    app_path: p,
                    target: t,
                });
        }
        // Try the path itself, then each shorter prefix ending at a segment boundary.
        let mut candidate = path;
        loop {
            if let Some(&i) = s.index.get(candidate) {
                let (prefix, t) = &s.apps[i];
                debug_assert!(prefix_matches(prefix, path));
                return Some(Route {
                    site: &s.name,
                    app_path: prefix,
                    target: t,
                });
            }
            match candidate.rfind('/') {
                Some(0) if candidate.len() > 1 => candidate = "/",
                Some(0) | None => return None,
                Some(pos) => candidate = &candidate[..pos],
            }
        }
    }

    fn site_for(&self, host: Option<&str>) -> Option<usize> {
        let Some(host) = host else {
            return self.default;
        };
        let host = strip_port(host);
        // Avoid allocating for the common already-lowercase host.
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        for (suffix, i) in &self.wildcard {
            // `*.example.com` matches `a.example.com` but not `example.com` itself.
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return Some(*i);
            }
        }
        self.default
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: `[::1]:8080`.
        return rest.split(']').next().unwrap_or(rest);
    }
    // Bytes, not `rsplit_once(char)`: the char searcher cost ~150 instructions a request.
    match host.as_bytes().iter().rposition(|&b| b == b':') {
        Some(i) if host.as_bytes()[i + 1..].iter().all(u8::is_ascii_digit) => &host[..i],
        _ => host,
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Application;

    fn site(name: &str, hosts: &[&str], apps: &[(&str, &str)]) -> Site {
        Site {
            name: name.into(),
            bindings: vec![],
            host_names: hosts.iter().map(|s| s.to_string()).collect(),
            applications: apps
                .iter()
                .map(|(p, pool)| Application {
                    path: p.to_string(),
                    pool: pool.to_string(),
                })
                .collect(),
        }
    }

    fn router() -> HostRouter<String> {
        let sites = [
            site(
                "api",
                &["api.example.com"],
                &[("/", "api-root"), ("/v2", "api-v2")],
            ),
            site("wild", &["*.example.com"], &[("/", "wild")]),
            site(
                "default",
                &[],
                &[("/", "web"), ("/app", "app"), ("/app/admin", "admin")],
            ),
        ];
        HostRouter::new(sites.iter(), |p| p.to_string())
    }

    fn pool(r: &HostRouter<String>, host: Option<&str>, path: &str) -> Option<String> {
        r.route(host, path).map(|r| r.target.clone())
    }

    #[test]
    fn host_then_longest_prefix() {
        let r = router();
        assert_eq!(
            pool(&r, Some("api.example.com"), "/v2/x").as_deref(),
            Some("api-v2")
        );
        assert_eq!(
            pool(&r, Some("API.Example.com:8443"), "/v2").as_deref(),
            Some("api-v2")
        );
        assert_eq!(
            pool(&r, Some("api.example.com"), "/v20").as_deref(),
            Some("api-root")
        );
        assert_eq!(
            pool(&r, Some("x.example.com"), "/").as_deref(),
            Some("wild")
        );
        assert_eq!(pool(&r, Some("example.com"), "/").as_deref(), Some("web"));
        assert_eq!(
            pool(&r, Some("other.org"), "/app/admin/users").as_deref(),
            Some("admin")
        );
        assert_eq!(
            pool(&r, Some("other.org"), "/app/x").as_deref(),
            Some("app")
        );
        assert_eq!(
            pool(&r, Some("other.org"), "/apple").as_deref(),
            Some("web")
        );
        assert_eq!(pool(&r, None, "/app").as_deref(), Some("app"));
        assert_eq!(pool(&r, Some("[::1]:80"), "/").as_deref(), Some("web"));
    }

    /// Small sites are scanned, large ones use the per-segment index: both pick the same.
    #[test]
    fn scan_and_index_agree() {
        let mut apps: Vec<(String, String)> = vec![("/".into(), "root".into())];
        for i in 0..20 {
            apps.push((format!("/a{i}"), format!("a{i}")));
            apps.push((format!("/a{i}/deep"), format!("a{i}-deep")));
        }
        let refs: Vec<(&str, &str)> = apps.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let big: HostRouter<String> =
            HostRouter::new([site("big", &[], &refs)].iter(), |p| p.to_string());
        let small: HostRouter<String> =
            HostRouter::new([site("small", &[], &refs[..7])].iter(), |p| p.to_string());
        assert!(refs.len() > SCAN_MAX && 7 <= SCAN_MAX);
        for path in [
            "/",
            "/a1",
            "/a1/",
            "/a1/deep",
            "/a1/deep/x",
            "/a1/deeper",
            "/a10",
            "/a2x",
            "/zz",
        ] {
            let want_big = refs
                .iter()
                .filter(|(p, _)| prefix_matches(p, path))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, t)| t.to_string());
            assert_eq!(pool(&big, None, path), want_big, "{path}");
            let want_small = refs[..7]
                .iter()
                .filter(|(p, _)| prefix_matches(p, path))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, t)| t.to_string());
            assert_eq!(pool(&small, None, path), want_small, "{path}");
        }
    }

    #[test]
    fn reserved_prefix_is_never_routed() {
        let r = router();
        assert_eq!(pool(&r, None, "/.roost/ping"), None);
        assert_eq!(pool(&r, None, "/.roost"), None);
        assert_eq!(pool(&r, None, "/.roosters").as_deref(), Some("web"));
    }

    #[test]
    fn no_default_site_means_no_route() {
        let sites = [site("only", &["a.test"], &[("/x", "p")])];
        let r: HostRouter<String> = HostRouter::new(sites.iter(), |p| p.to_string());
        assert_eq!(pool(&r, Some("b.test"), "/x"), None);
        assert_eq!(pool(&r, Some("a.test"), "/y"), None);
        assert_eq!(pool(&r, Some("a.test."), "/x").as_deref(), Some("p"));
    }
}
