//! What the proxy asks the farm for each request: the balancer key (hash and affinity),
//! the affinity cookie to set, whether a 502/503 may be retried (retry budget), and the
//! outcome for passive health.

use super::{cookie_value, state};
use crate::config::model::HashKey;
use crate::pool::{hash_key, Member, PickKey, Pool};
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use parking_lot::Mutex;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// The request-side plan of a farm request.
#[derive(Debug, Default)]
pub struct Plan {
    pub key: PickKey,
    /// The affinity cookie's name, when affinity is on.
    cookie_name: Option<String>,
    /// Whether the request may be replayed after a 502/503 (idempotent, no body).
    pub replayable: bool,
}

/// Build the plan for `req` on `pool` (`None` for pools that are not farms).
pub fn plan<B: http_body::Body>(pool: &Pool, req: &Request<B>, peer: IpAddr) -> Option<Plan> {
    let fs = state(pool)?;
    let cfg = fs.config();
    let farm = &cfg.farm;
    fs.note_request(Instant::now());
    let mut p = Plan::default();
    if let crate::config::model::LoadBalancing::Hash(k) = &farm.load_balancing {
        p.key.hash = match k {
            HashKey::Header(name) => req
                .headers()
                .get(name.as_str())
                .map(|v| hash_key(v.as_bytes())),
            HashKey::Cookie(name) => cookie(req.headers(), name).map(|v| hash_key(v.as_bytes())),
            HashKey::Query(name) => query(req.uri().query(), name).map(|v| hash_key(v.as_bytes())),
            HashKey::ClientAddress => Some(match peer {
                IpAddr::V4(a) => hash_key(&a.octets()),
                IpAddr::V6(a) => match a.to_ipv4_mapped() {
                    Some(v4) => hash_key(&v4.octets()),
                    None => hash_key(&a.octets()),
                },
            }),
        };
    }
    if let Some(a) = &farm.affinity {
        p.key.affinity = cookie(req.headers(), &a.cookie).and_then(|v| fs.label_for_cookie(v));
        p.cookie_name = Some(a.cookie.clone());
    }
    p.replayable = farm.retries.idempotent
        && matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        )
        && req.body().is_end_stream();
    Some(p)
}

impl Plan {
    /// The `Set-Cookie` for a response served by `member`: set when the client had no
    /// (valid) cookie, or when its server could not be used any more (unhealthy, gone).
    /// A client spilled over because its server was merely full keeps its cookie.
    pub fn set_cookie(&self, pool: &Pool, member: &Member) -> Option<HeaderValue> {
        let name = self.cookie_name.as_deref()?;
        match self.key.affinity.as_deref() {
            Some(label) if label == member.label => return None,
            Some(label) => {
                let still_usable = pool
                    .members()
                    .iter()
                    .any(|m| m.label == label && m.usable());
                if still_usable {
                    return None;
                }
            }
            None => {}
        }
        HeaderValue::from_str(&format!(
            "{name}={}; Path=/; HttpOnly",
            cookie_value(&member.label)
        ))
        .ok()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.trim().trim_matches('"'))
        })
}

fn query<'a>(q: Option<&'a str>, name: &str) -> Option<&'a str> {
    q?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// Whether a response with `status` from `member` should be retried on another server:
/// a 502/503, a replayable request, another usable server, and room in the budget.
pub fn retry_status(pool: &Pool, plan: &Plan, member: &Member, status: StatusCode) -> bool {
    if !plan.replayable || !matches!(status.as_u16(), 502 | 503) {
        return false;
    }
    let Some(fs) = state(pool) else {
        return false;
    };
    let other = pool
        .members()
        .iter()
        .any(|m| m.label != member.label && m.usable());
    if !other {
        return false;
    }
    fs.try_retry(Instant::now())
}

/// Passive health: how the request on `member` ended.
pub fn note_outcome(pool: &Arc<Pool>, member: &Member, outcome: super::Outcome) {
    super::note_outcome(pool, member, outcome);
}

/// Retries so far, for tests and the admin API.
pub fn retries(pool: &Pool) -> u64 {
    state(pool).map_or(0, |fs| fs.retries())
}

/// Envoy-style retry budget over a sliding window of two 5-second buckets: retries may
/// be at most `percent`% of requests plus `min` — so an outage cannot be multiplied.
#[derive(Default)]
pub struct RetryBudget {
    w: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    start: Option<Instant>,
    requests: [u64; 2],
    retries: [u64; 2],
    total_retries: u64,
}

const BUCKET: std::time::Duration = std::time::Duration::from_secs(5);

impl Window {
    fn rotate(&mut self, now: Instant) {
        let start = *self.start.get_or_insert(now);
        let age = now.saturating_duration_since(start);
        if age >= BUCKET * 2 {
            *self = Window {
                start: Some(now),
                total_retries: self.total_retries,
                ..Window::default()
            };
        } else if age >= BUCKET {
            self.requests = [self.requests[1], 0];
            self.retries = [self.retries[1], 0];
            self.start = Some(start + BUCKET);
        }
    }
}

impl RetryBudget {
    pub fn note_request(&self, now: Instant) {
        let mut w = self.w.lock();
        w.rotate(now);
        w.requests[1] += 1;
    }

    /// Take one retry from the budget if there is room.
    pub fn try_retry(&self, now: Instant, percent: u32, min: u32) -> bool {
        let mut w = self.w.lock();
        w.rotate(now);
        let requests: u64 = w.requests.iter().sum();
        let retries: u64 = w.retries.iter().sum();
        let allowed = min as u64 + requests * percent as u64 / 100;
        if retries >= allowed {
            return false;
        }
        w.retries[1] += 1;
        w.total_retries += 1;
        true
    }

    pub fn total_retries(&self) -> u64 {
        self.w.lock().total_retries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn budget_is_a_share_of_requests_plus_a_minimum() {
        let b = RetryBudget::default();
        let t0 = Instant::now();
        for _ in 0..100 {
            b.note_request(t0);
        }
        let granted = (0..100).filter(|_| b.try_retry(t0, 20, 3)).count();
        assert_eq!(granted, 23);
        // Two buckets later the window is fresh: only the minimum again.
        let t1 = t0 + Duration::from_secs(11);
        let granted = (0..100).filter(|_| b.try_retry(t1, 20, 3)).count();
        assert_eq!(granted, 3);
        assert_eq!(b.total_retries(), 26);
    }

    #[test]
    fn cookies_and_queries_are_found() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=\"two\""));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie(&h, "b"), Some("two"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "d"), None);
        assert_eq!(query(Some("x=1&user=bob"), "user"), Some("bob"));
        assert_eq!(query(Some("flag&user=bob"), "flag"), Some(""));
        assert_eq!(query(None, "user"), None);
    }

    #[test]
    fn configured_header_names_match_any_case() {
        // `hashKey: {header: X-User}` must find a request's `x-user`.
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("bob"));
        assert_eq!(h.get("X-User").map(|v| v.as_bytes()), Some(&b"bob"[..]));
    }

    #[test]
    fn cookie_values_are_stable_and_distinct() {
        assert_eq!(cookie_value("10.0.0.1:80"), cookie_value("10.0.0.1:80"));
        assert_ne!(cookie_value("10.0.0.1:80"), cookie_value("10.0.0.2:80"));
        assert_eq!(cookie_value("").len(), 16);
    }
}

/// The farm's per-request policy as the proxy step sees it: one object, asked before
/// each send and after each outcome. For a pool that is not a farm it does nothing
/// (no key, no retries of answered requests, no passive health).
#[derive(Debug, Default)]
pub struct Policy {
    plan: Option<Plan>,
    /// A 502/503 has been retried once already.
    status_retried: bool,
}

/// What the proxy does with a member's response.
pub enum Verdict {
    /// Send it to the client.
    Keep,
    /// Drop it and send the request to another server.
    RetryElsewhere,
}

impl Policy {
    pub fn new<B: http_body::Body>(pool: &Pool, req: &Request<B>, peer: IpAddr) -> Policy {
        Policy {
            plan: plan(pool, req, peer),
            status_retried: false,
        }
    }

    /// The balancer key for the first attempt.
    pub fn key(&self) -> PickKey {
        self.plan
            .as_ref()
            .map(|p| p.key.clone())
            .unwrap_or_default()
    }

    /// Whether the request may be replayed after a 502/503 (idempotent, no body).
    pub fn replayable(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| p.replayable)
    }

    /// After a response head from `member`: retry a 502/503 elsewhere (once, within
    /// the budget), else record the outcome and add the affinity cookie.
    pub fn after_response<B>(
        &mut self,
        pool: &Arc<Pool>,
        member: &Member,
        upgrade: bool,
        resp: &mut http::Response<B>,
    ) -> Verdict {
        let Some(p) = &self.plan else {
            return Verdict::Keep;
        };
        let status = resp.status();
        if !upgrade && !self.status_retried && retry_status(pool, p, member, status) {
            tracing::debug!(pool = pool.name(), member = %member.label, %status, "retrying on another server");
            note_outcome(pool, member, super::Outcome::ServerError);
            self.status_retried = true;
            return Verdict::RetryElsewhere;
        }
        let outcome = if status.is_server_error() {
            super::Outcome::ServerError
        } else {
            super::Outcome::Success
        };
        note_outcome(pool, member, outcome);
        if let Some(c) = p.set_cookie(pool, member) {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        Verdict::Keep
    }

    /// After a failed exchange: passive health counts it unless it says nothing about
    /// the member (a pooled connection closed while idle, the client's own body).
    pub fn after_failure(&self, pool: &Arc<Pool>, member: &Member, blames_member: bool) {
        if self.plan.is_some() && blames_member {
            note_outcome(pool, member, super::Outcome::GatewayFailure);
        }
    }
}
