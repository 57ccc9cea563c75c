//! Answering from a stored object: a fresh `Age`, the client's own conditionals
//! (`If-None-Match` before `If-Modified-Since`, RFC 9111 §4.3.2), HEAD without a body.

use super::policy::{etag_matches, http_date};
use super::store::Object;
use crate::body::{self, Body};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use std::time::Instant;

/// What the client's request asks of a stored answer.
#[derive(Debug, Clone, Default)]
pub struct Conditionals {
    pub head: bool,
    pub if_none_match: Option<HeaderValue>,
    pub if_modified_since: Option<HeaderValue>,
}

impl Conditionals {
    pub fn of<B>(req: &Request<B>) -> Conditionals {
        let h = req.headers();
        Conditionals {
            head: req.method() == Method::HEAD,
            if_none_match: h.get(header::IF_NONE_MATCH).cloned(),
            if_modified_since: h.get(header::IF_MODIFIED_SINCE).cloned(),
        }
    }

    /// Whether the client already holds what `obj` is (a 304 answers it).
    fn satisfied_by(&self, obj: &Object) -> bool {
        if let Some(inm) = &self.if_none_match {
            return obj
                .headers
                .get(header::ETAG)
                .is_some_and(|tag| etag_matches(inm, tag));
        }
        let Some(since) = self.if_modified_since.as_ref().and_then(http_date) else {
            return false;
        };
        let modified = obj
            .headers
            .get(header::LAST_MODIFIED)
            .or_else(|| obj.headers.get(header::DATE))
            .and_then(http_date);
        modified.is_some_and(|m| m <= since)
    }
}

/// The cache's verdict as `x-cache` and the access log show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Hit,
    Miss,
    Stale,
    /// Not a request the cache takes part in (method, `no-store`, frequent-hit rule).
    Pass,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Hit => "HIT",
            Status::Miss => "MISS",
            Status::Stale => "STALE",
            Status::Pass => "PASS",
        }
    }
}

pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Fields a 304 carries (RFC 9110 §15.4.5).
const NOT_MODIFIED_FIELDS: [HeaderName; 6] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
];

/// The response for `obj`, `Age` set, as the client's conditionals and method want it.
pub fn serve(obj: &Object, c: &Conditionals, x_cache: Option<Status>) -> Response<Body> {
    let now = Instant::now();
    let mut headers = if c.satisfied_by(obj) {
        let mut h = HeaderMap::new();
        for name in &NOT_MODIFIED_FIELDS {
            for v in obj.headers.get_all(name) {
                h.append(name.clone(), v.clone());
            }
        }
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        finish_head(&mut h, obj, now, x_cache);
        *resp.headers_mut() = h;
        return resp;
    } else {
        obj.headers.clone()
    };
    finish_head(&mut headers, obj, now, x_cache);
    let body = if c.head {
        body::empty()
    } else {
        body::full(obj.body.clone())
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = obj.status;
    *resp.headers_mut() = headers;
    resp
}

fn finish_head(h: &mut HeaderMap, obj: &Object, now: Instant, x_cache: Option<Status>) {
    h.insert(header::AGE, HeaderValue::from(obj.age(now)));
    if let Some(s) = x_cache {
        h.insert(X_CACHE.clone(), HeaderValue::from_static(s.as_str()));
    }
}
