//! RFC 9111 (and RFC 5861) as pure functions: may a response be stored, for how long is
//! it fresh, how old is it, may it be served stale, does a request match its `Vary`, and
//! the 304 header merge. No I/O, no clock reads: callers pass the times.

use crate::config::cache::CacheSettings;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use std::time::{Duration, SystemTime};

/// RFC 9111 §1.2.2: delta-seconds beyond this are this.
const DELTA_MAX: u64 = 2_147_483_648;

/// The `Cache-Control` directives roost acts on (response or request).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// A directive roost needs was malformed (e.g. `max-age=abc`): treat as stale (§4.2.1).
    pub invalid_age: bool,
}

impl Directives {
    /// Every `Cache-Control` line, comma-separated directives, case-insensitive names.
    pub fn parse(headers: &HeaderMap) -> Directives {
        let mut d = Directives::default();
        for line in headers.get_all(header::CACHE_CONTROL) {
            let Ok(line) = line.to_str() else { continue };
            for part in line.split(',') {
                d.apply(part.trim());
            }
        }
        d
    }

    fn apply(&mut self, part: &str) {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (part, None),
        };
        let secs = || {
            value
                .and_then(|v| v.parse::<u64>().ok())
                .map(|n| n.min(DELTA_MAX))
        };
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "no-store" => self.no_store = true,
            // The qualified forms (`no-cache="Set-Cookie"`) are treated as unqualified.
            "no-cache" => self.no_cache = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "max-age" => first_delta(&mut self.max_age, secs(), &mut self.invalid_age),
            "s-maxage" => first_delta(&mut self.s_maxage, secs(), &mut self.invalid_age),
            "stale-while-revalidate" => {
                self.stale_while_revalidate = self.stale_while_revalidate.or(secs())
            }
            "stale-if-error" => self.stale_if_error = self.stale_if_error.or(secs()),
            _ => {}
        }
    }
}

/// Duplicates: the first wins (§4.2.1); an invalid value makes the response stale.
fn first_delta(slot: &mut Option<u64>, v: Option<u64>, invalid: &mut bool) {
    match v {
        None => *invalid = true,
        Some(n) if slot.is_none() => *slot = Some(n),
        Some(_) => {}
    }
}

/// Why a response is not stored (for tests and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    Method,
    Status,
    NoStore,
    Private,
    Authorization,
    SetCookie,
    VaryStar,
    NoExplicitLifetime,
}

/// Statuses cacheable by default (RFC 9110 §15.1) that roost stores.
fn status_cacheable(s: StatusCode) -> bool {
    matches!(
        s.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// How a stored response may be used, computed once when it is stored or refreshed.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    /// Freshness lifetime (§4.2.1).
    pub lifetime: Duration,
    /// Corrected initial age in seconds (§4.2.3).
    pub initial_age: u64,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache`: never stale (§4.2.4).
    pub no_stale: bool,
    /// `no-cache`: validate every use (§5.2.2.4).
    pub always_validate: bool,
    /// May answer a request carrying `Authorization` (§3.5).
    pub shareable_with_auth: bool,
}

/// The facts about the exchange that storage rules need.
pub struct Exchange<'a> {
    pub method: &'a Method,
    pub request_has_auth: bool,
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    /// When the request was sent and the response received (wall clock, for `Date`).
    pub request_time: SystemTime,
    pub response_time: SystemTime,
}

/// §3: may this response be stored, and with what lifetime.
pub fn storable(x: &Exchange<'_>, s: &CacheSettings) -> Result<Meta, NotStored> {
    if x.method != Method::GET {
        return Err(NotStored::Method);
    }
    let d = Directives::parse(x.headers);
    let heuristic_ok = status_cacheable(x.status);
    let explicit = d.public
        || d.max_age.is_some()
        || d.s_maxage.is_some()
        || x.headers.contains_key(header::EXPIRES);
    // Partial content is not stored: roost does not assemble ranges (§3.3). The
    // member-failure statuses are not stored either, whatever they say: they are what
    // stale-if-error stands in for, and a shared cache must not spread a transient error.
    let status = x.status.as_u16();
    let failure = matches!(status, 500 | 502 | 503 | 504);
    if status == 206 || status == 304 || status < 200 || failure || !(heuristic_ok || explicit) {
        return Err(NotStored::Status);
    }
    if d.no_store {
        return Err(NotStored::NoStore);
    }
    if d.private {
        return Err(NotStored::Private);
    }
    let shareable_with_auth = d.public || d.s_maxage.is_some() || d.must_revalidate;
    if x.request_has_auth && !shareable_with_auth {
        return Err(NotStored::Authorization);
    }
    if x.headers.contains_key(header::SET_COOKIE) && !(s.allow_set_cookie || d.public) {
        return Err(NotStored::SetCookie);
    }
    if vary_names(x.headers).any(|n| n == "*") {
        return Err(NotStored::VaryStar);
    }
    let lifetime = lifetime(&d, x.headers, x.response_time, s.heuristic, heuristic_ok)
        .ok_or(NotStored::NoExplicitLifetime)?;
    Ok(meta(&d, x, s, lifetime, shareable_with_auth))
}

fn meta(
    d: &Directives,
    x: &Exchange<'_>,
    s: &CacheSettings,
    lifetime: Duration,
    shareable_with_auth: bool,
) -> Meta {
    let no_stale = d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some() || d.no_cache;
    let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
    Meta {
        lifetime,
        initial_age: initial_age(x.headers, x.request_time, x.response_time),
        stale_while_revalidate: secs(d.stale_while_revalidate, s.stale_while_revalidate),
        stale_if_error: secs(d.stale_if_error, s.stale_if_error),
        no_stale,
        always_validate: d.no_cache,
        shareable_with_auth,
    }
}

/// §4.2.1: `s-maxage`, then `max-age`, then `Expires` − `Date`, then (if configured and
/// allowed) the heuristic. `None`: nothing says the response may be reused.
pub fn lifetime(
    d: &Directives,
    headers: &HeaderMap,
    response_time: SystemTime,
    heuristic: f64,
    heuristic_ok: bool,
) -> Option<Duration> {
    if d.invalid_age {
        return Some(Duration::ZERO);
    }
    if let Some(n) = d.s_maxage.or(d.max_age) {
        return Some(Duration::from_secs(n));
    }
    if let Some(expires) = headers.get(header::EXPIRES) {
        // An invalid `Expires` (e.g. `0`) means already expired.
        let Some(exp) = http_date(expires) else {
            return Some(Duration::ZERO);
        };
        let date = headers
            .get(header::DATE)
            .and_then(http_date)
            .unwrap_or(response_time);
        return Some(exp.duration_since(date).unwrap_or(Duration::ZERO));
    }
    if d.no_cache {
        // Stored, but validated on every use.
        return Some(Duration::ZERO);
    }
    if heuristic > 0.0 && (heuristic_ok || d.public) {
        let date = headers.get(header::DATE).and_then(http_date)?;
        let lm = headers.get(header::LAST_MODIFIED).and_then(http_date)?;
        let span = date.duration_since(lm).ok()?;
        return Some(span.mul_f64(heuristic));
    }
    None
}

/// §4.2.3: the corrected initial age, in whole seconds.
pub fn initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> u64 {
    let date = headers.get(header::DATE).and_then(http_date);
    let apparent = date
        .and_then(|d| response_time.duration_since(d).ok())
        .unwrap_or_default()
        .as_secs();
    let age_value = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .min(DELTA_MAX);
    let delay = response_time
        .duration_since(request_time)
        .unwrap_or_default()
        .as_secs();
    apparent.max(age_value + delay)
}

/// Whether a stale response may be served, given its metadata, how stale it is and the
/// window that applies (stale-while-revalidate or stale-if-error).
pub fn stale_allowed(m: &Meta, staleness: Duration, window: Duration) -> bool {
    !m.no_stale && staleness <= window && !window.is_zero()
}

pub fn http_date(v: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(v.to_str().ok()?).ok()
}

/// The field names a response's `Vary` lists (lower-case as `HeaderName` keeps them).
pub fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

/// A secondary key: each `Vary` field and the request's value of it (§4.1), normalised
/// by combining lines and dropping whitespace.
pub type SecondaryKey = Vec<(HeaderName, Option<String>)>;

pub fn secondary_key(response: &HeaderMap, request: &HeaderMap) -> SecondaryKey {
    vary_names(response)
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .map(|n| {
            let v = normalised(request, &n);
            (n, v)
        })
        .collect()
}

fn normalised(request: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in request.get_all(name) {
        let s = out.get_or_insert_with(String::new);
        if !s.is_empty() {
            s.push(',');
        }
        s.extend(
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .filter(|c| !c.is_whitespace()),
        );
    }
    out
}

/// Does `request` select the variant stored under `key` (§4.1: absent matches absent)?
pub fn vary_matches(key: &SecondaryKey, request: &HeaderMap) -> bool {
    key.iter()
        .all(|(name, want)| normalised(request, name).as_deref() == want.as_deref())
}

/// §3.2/§4.3.4: a 304 updates the stored head: every field it carries replaces the
/// stored one, except `Content-Length` (and roost's framing fields). A stored weak
/// `ETag` that the 304 repeats in its strong form stays weak: the front weakened it
/// when it compressed the stored body, which the member's tag does not describe.
pub fn merge_304(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut out = stored.clone();
    for name in not_modified.keys() {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        if name == header::ETAG && weak_form_of(stored.get(name), not_modified.get(name)) {
            continue;
        }
        out.remove(name);
        for v in not_modified.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

/// Whether `stored` is `W/` followed by `new`.
fn weak_form_of(stored: Option<&HeaderValue>, new: Option<&HeaderValue>) -> bool {
    match (stored, new) {
        (Some(s), Some(n)) => s.as_bytes().strip_prefix(b"W/") == Some(n.as_bytes()),
        _ => false,
    }
}

/// Weak comparison of entity tags (RFC 9110 §8.8.3.2) against an `If-None-Match` list.
pub fn etag_matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let (Ok(list), Ok(tag)) = (if_none_match.to_str(), etag.to_str()) else {
        return false;
    };
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
    list.trim() == "*" || list.split(',').any(|t| weak(t) == weak(tag))
}

#[cfg(test)]
mod tests;
