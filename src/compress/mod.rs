//! Compression at the front (nginx `gzip`/`brotli`/`zstd` filters, IIS dynamic
//! compression): zstd, br or gzip by the client's `Accept-Encoding`, for the configured
//! media types, per pool or application (`compression:`).
//!
//! - [`negotiate`]: q-values and the server's order of preference.
//! - [`encode`]: the streaming compressed body.
//! - [`metrics`]: bytes in and out by algorithm.
//!
//! With the response cache: the request's `Accept-Encoding` is normalised to the one
//! coding roost chose (or removed) before the cache looks it up, and responses are
//! compressed *before* the cache stores them, with `Vary: Accept-Encoding`. So the
//! cache keeps at most one variant per coding (zstd, br, gzip, identity) of a URL, and a
//! hit is served as stored, never compressed again.

pub mod encode;
pub mod metrics;
pub mod negotiate;

pub use metrics::encode_metrics;

use crate::body::Body;
use crate::cache::scoped::{app_pool, Scoped};
use crate::config::compression::{Algorithm, CompressionSettings};
use crate::config::overrides::Override;
use crate::config::Config;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use std::sync::Arc;

/// Every pool's and application's compression settings, by the route.
#[derive(Default, Clone)]
pub struct Routes {
    scoped: Scoped<Arc<CompressionSettings>>,
}

impl Routes {
    pub fn build(config: &Config) -> Routes {
        let mut scoped = Scoped::default();
        for (pool, s) in &config.responses.pool_compression {
            scoped.set_pool(pool, Arc::new(s.clone()));
        }
        for ((site, path), r) in &config.responses.applications {
            let v = match &r.compression {
                Override::Inherit => continue,
                Override::Off => None,
                Override::On(s) => Some(Arc::new(s.clone())),
            };
            if app_pool(config, site, path).is_some() {
                scoped.set_app(site, path, v);
            }
        }
        Routes { scoped }
    }

    /// Compression is configured nowhere: one branch on the request path.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.scoped.is_empty()
    }

    pub fn for_route(
        &self,
        site: &str,
        app_path: &str,
        pool: &str,
    ) -> Option<&Arc<CompressionSettings>> {
        self.scoped.get(site, app_path, pool)
    }
}

/// What one request's response may get.
pub struct Plan {
    settings: Arc<CompressionSettings>,
    chosen: Option<Algorithm>,
    head: bool,
}

impl Plan {
    /// Choose the coding for `req`, and leave its `Accept-Encoding` saying only that
    /// coding (removed for identity): the cache then keys variants by the choice rather
    /// than by each browser's spelling, and a member that compresses itself produces
    /// what roost would.
    pub fn negotiate<B>(req: &mut Request<B>, settings: Arc<CompressionSettings>) -> Plan {
        let chosen = negotiate::choose(req.headers(), &settings.algorithms);
        let h = req.headers_mut();
        match chosen {
            Some(a) => {
                h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(a.token()));
            }
            None => {
                h.remove(header::ACCEPT_ENCODING);
            }
        }
        Plan {
            settings,
            chosen,
            head: req.method() == Method::HEAD,
        }
    }

    /// `resp` compressed if it may be, and marked `Vary: Accept-Encoding` whenever its
    /// form depends on the client's `Accept-Encoding`.
    pub fn apply(&self, mut resp: Response<Body>) -> Response<Body> {
        if !compressible(&resp, &self.settings) {
            return resp;
        }
        add_vary(resp.headers_mut());
        let Some(a) = self.chosen else { return resp };
        if self.head || resp.body().is_end_stream() {
            return resp;
        }
        let h = resp.headers_mut();
        h.remove(header::CONTENT_LENGTH);
        // Ranges of the compressed form are not offered (roost cannot serve them).
        h.remove(header::ACCEPT_RANGES);
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(a.token()),
        );
        weaken_etag(h);
        resp.map(|b| encode::encode(b, a, self.settings.level))
    }
}

/// `plan`'s treatment of `resp`, if the route compresses at all.
pub fn apply(plan: &Option<Plan>, resp: Response<Body>) -> Response<Body> {
    match plan {
        Some(p) => p.apply(resp),
        None => resp,
    }
}

/// Whether `resp`'s body is one roost would compress for a client that asks.
fn compressible(resp: &Response<Body>, s: &CompressionSettings) -> bool {
    let status = resp.status();
    if status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
    {
        return false;
    }
    let h = resp.headers();
    if h.contains_key(header::CONTENT_ENCODING)
        || h.contains_key(header::CONTENT_RANGE)
        || no_transform(h)
        || !type_listed(h, &s.types)
    {
        return false;
    }
    let len = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| resp.body().size_hint().exact());
    len.is_none_or(|n| n >= s.min_bytes)
}

/// `Cache-Control: no-transform` (RFC 9111 §5.2.2.6): intermediaries leave it alone.
fn no_transform(h: &HeaderMap) -> bool {
    h.get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// Whether the response's media type is in `types` (exact, or `type/*`).
/// `text/event-stream` never is: the encoder flushes whenever the member pauses, so
/// each small event would be a compressed block of its own, costing more than it saves.
fn type_listed(h: &HeaderMap, types: &[String]) -> bool {
    let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "text/event-stream" {
        return false;
    }
    let top = media.split('/').next().unwrap_or("");
    types.iter().any(|t| match t.strip_suffix("/*") {
        Some(t_top) => t_top == top,
        None => *t == media,
    })
}

/// Add `Accept-Encoding` to `Vary` unless it is there (or `Vary: *`).
fn add_vary(h: &mut HeaderMap) {
    let listed = h
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| {
            let n = n.trim();
            n == "*" || n.eq_ignore_ascii_case("accept-encoding")
        });
    if !listed {
        h.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// A strong `ETag` names these exact bytes, which compression changes: it becomes weak
/// (as nginx does), so conditional requests still match by weak comparison.
fn weaken_etag(h: &mut HeaderMap) {
    let Some(tag) = h.get(header::ETAG) else {
        return;
    };
    if tag.as_bytes().starts_with(b"\"") {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(tag.as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&weak) {
            h.insert(header::ETAG, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(ct: &str, extra: &[(&str, &str)], body: &'static str) -> Response<Body> {
        let mut r = Response::new(crate::body::full(body));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, ct.parse().unwrap());
        for (k, v) in extra {
            r.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        r
    }

    fn settings(min: u64) -> CompressionSettings {
        CompressionSettings {
            algorithms: Algorithm::ALL.to_vec(),
            types: ["text/*", "application/json"].map(String::from).to_vec(),
            min_bytes: min,
            level: crate::config::compression::Level::Default,
        }
    }

    #[test]
    fn what_is_compressible() {
        let s = settings(4);
        assert!(compressible(
            &resp("text/html; charset=utf-8", &[], "hello"),
            &s
        ));
        assert!(compressible(
            &resp("Application/JSON", &[], "{\"a\":1}"),
            &s
        ));
        assert!(!compressible(&resp("image/png", &[], "hello"), &s));
        assert!(!compressible(&resp("text/event-stream", &[], "hello"), &s));
        assert!(
            !compressible(&resp("text/plain", &[], "hi"), &s),
            "under minBytes"
        );
        let enc = [("content-encoding", "gzip")];
        assert!(!compressible(&resp("text/plain", &enc, "hello"), &s));
        let nt = [("cache-control", "public, no-transform")];
        assert!(!compressible(&resp("text/plain", &nt, "hello"), &s));
        let mut partial = resp("text/plain", &[("content-range", "bytes 0-4/10")], "hello");
        assert!(!compressible(&partial, &s));
        partial.headers_mut().remove(header::CONTENT_RANGE);
        *partial.status_mut() = StatusCode::PARTIAL_CONTENT;
        assert!(!compressible(&partial, &s));
    }

    #[test]
    fn vary_is_added_once_and_etags_weakened() {
        let mut h = HeaderMap::new();
        h.insert(header::VARY, "Accept-Language".parse().unwrap());
        add_vary(&mut h);
        add_vary(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 2);
        h.insert(header::ETAG, "\"abc\"".parse().unwrap());
        weaken_etag(&mut h);
        weaken_etag(&mut h);
        assert_eq!(h.get(header::ETAG).unwrap(), "W/\"abc\"");
    }
}
