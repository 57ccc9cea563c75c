//! A request's way through the cache: a fresh hit is answered at once; a stale one is
//! served while a refresh runs (stale-while-revalidate) or revalidated; a miss leads a
//! fill or waits for the one under way. A miss carries a [`Ticket`] to the member and
//! back, which decides what the member's answer does to the cache ([`Verdict`]).

use super::fill::{self, FillGuard, FillState, Join};
use super::policy::{self, Directives, Exchange};
use super::respond::{serve, Conditionals, Status, X_CACHE};
use super::store::{Object, Variants};
use super::tee::Filler;
use super::{Cache, Counters};
use crate::body::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// What the front does with a request after the cache looked at it.
pub enum Lookup {
    /// Answer with this (a hit, a 304 to the client's conditional, or stale).
    Serve(Response<Body>, Status),
    /// Answer with this stale response now, and refresh in the background with the
    /// ticket (stale-while-revalidate).
    Refresh(Response<Body>, Ticket),
    /// Go to the member with this ticket.
    Fetch(Ticket),
    /// Go to the member; the cache takes no part.
    Pass,
}

/// A miss's errand to the member.
pub struct Ticket {
    cache: Arc<Cache>,
    key: Arc<str>,
    kind: Kind,
}

enum Kind {
    Fill(Box<Fill>),
    /// An unsafe method: a 2xx/3xx answer invalidates the URL (RFC 9111 §4.4).
    Invalidate,
}

struct Fill {
    guard: FillGuard,
    /// The request's head, for the `Vary` secondary key of what gets stored.
    request: HeaderMap,
    has_auth: bool,
    cond: Conditionals,
    /// The stored object being revalidated (its validators go to the member), served
    /// if the member fails and stale-if-error allows.
    stale: Option<Arc<Object>>,
    sent: SystemTime,
}

/// What the member's answer (its status and head) means for the cache.
pub enum Verdict {
    /// roost answers from the cache instead (a 304 refreshed the entry, or the member
    /// failed and stale-if-error applies); the member's response is dropped.
    Answer(Response<Body>, Status),
    /// Forward it, storing it as it streams.
    Store(Filler),
    /// Forward it as it is.
    Forward(Status, bool),
}

/// A refresh's ticket, carried to the background request in its extensions.
#[derive(Clone)]
pub struct Refresh(Arc<Mutex<Option<Ticket>>>);

/// The cache key: lower-cased host and the full path and query.
pub fn key(host: Option<&str>, uri: &http::Uri) -> Arc<str> {
    let host = host.unwrap_or("").to_ascii_lowercase();
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut k = String::with_capacity(host.len() + pq.len());
    k.push_str(&host);
    k.push_str(pq);
    Arc::from(k)
}

impl Cache {
    /// Look `req` up (`host` as the router saw it).
    pub async fn lookup<B>(self: &Arc<Self>, req: &Request<B>, host: Option<&str>) -> Lookup {
        if let Some(t) = req
            .extensions()
            .get::<Refresh>()
            .and_then(|r| r.0.lock().take())
        {
            return Lookup::Fetch(t);
        }
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return self.unsafe_method(method, host, req);
        }
        let h = req.headers();
        if h.contains_key(header::UPGRADE) || Directives::parse(h).no_store {
            return self.pass();
        }
        let key = key(host, req.uri());
        let cond = Conditionals::of(req);
        let has_auth = h.contains_key(header::AUTHORIZATION);
        let mut skip = self.settings.client_no_cache
            == crate::config::cache::ClientNoCache::Revalidate
            && client_no_cache(h);
        let mut waited = false;
        for _ in 0..3 {
            let found = if skip {
                None
            } else {
                self.find(&key, h, has_auth)
            };
            if let Some(obj) = &found {
                if let Some(l) = self.answer_found(obj, &cond, &key, method, h, waited) {
                    return l;
                }
            }
            if method == Method::HEAD || (found.is_none() && !self.frequent_enough(&key)) {
                return self.pass();
            }
            let rx = match self.fills.join(&key) {
                Join::Leader(g) => return self.lead(g, &cond, h, has_auth, found, skip),
                Join::Waiter(rx) => rx,
            };
            waited = true;
            skip = false;
            match fill::wait(rx, self.settings.lock_timeout).await {
                Some(FillState::Stored) | Some(FillState::Retry) => continue,
                Some(FillState::Failed) => match found.filter(|o| self.stale_on_error(o)) {
                    Some(obj) => return self.serve_stale(&obj, &cond),
                    None => return self.pass(),
                },
                Some(FillState::Pass) | Some(FillState::Pending) | None => return self.pass(),
            }
        }
        self.pass()
    }

    /// A stored object answers: fresh → hit; stale within stale-while-revalidate →
    /// served, with a refresh if none is under way. `None`: it must be revalidated.
    fn answer_found(
        self: &Arc<Self>,
        obj: &Arc<Object>,
        cond: &Conditionals,
        key: &Arc<str>,
        method: &Method,
        h: &HeaderMap,
        waited: bool,
    ) -> Option<Lookup> {
        let now = Instant::now();
        if obj.is_fresh(now) {
            let c = &self.counters;
            Counters::bump(if waited { &c.coalesced } else { &c.hit });
            return Some(Lookup::Serve(
                serve(obj, cond, self.x(Status::Hit)),
                Status::Hit,
            ));
        }
        let swr = obj.meta.stale_while_revalidate;
        if !policy::stale_allowed(&obj.meta, obj.staleness(now), swr) {
            return None;
        }
        Counters::bump(&self.counters.stale);
        let resp = serve(obj, cond, self.x(Status::Stale));
        if method == Method::GET {
            if let Join::Leader(g) = self.fills.join(key) {
                let t = self.ticket(g, cond, h, false, Some(obj.clone()));
                return Some(Lookup::Refresh(resp, t));
            }
        }
        Some(Lookup::Serve(resp, Status::Stale))
    }

    /// This request leads the fill of its key.
    fn lead(
        self: &Arc<Self>,
        g: FillGuard,
        cond: &Conditionals,
        h: &HeaderMap,
        has_auth: bool,
        found: Option<Arc<Object>>,
        skip: bool,
    ) -> Lookup {
        // Another fill may have stored it between our look and our join.
        if !skip {
            if let Some(obj) = self.find(g.key(), h, has_auth) {
                if obj.is_fresh(Instant::now()) {
                    g.finish(FillState::Stored);
                    Counters::bump(&self.counters.hit);
                    return Lookup::Serve(serve(&obj, cond, self.x(Status::Hit)), Status::Hit);
                }
            }
        }
        Counters::bump(&self.counters.miss);
        let stale = found.filter(|o| o.has_validator() || self.stale_on_error(o));
        Lookup::Fetch(self.ticket(g, cond, h, has_auth, stale))
    }

    fn ticket(
        self: &Arc<Self>,
        guard: FillGuard,
        cond: &Conditionals,
        h: &HeaderMap,
        has_auth: bool,
        stale: Option<Arc<Object>>,
    ) -> Ticket {
        Ticket {
            cache: self.clone(),
            key: guard.key().clone(),
            kind: Kind::Fill(Box::new(Fill {
                guard,
                request: h.clone(),
                has_auth,
                cond: cond.clone(),
                stale,
                sent: SystemTime::now(),
            })),
        }
    }

    fn unsafe_method<B>(
        self: &Arc<Self>,
        m: &Method,
        host: Option<&str>,
        req: &Request<B>,
    ) -> Lookup {
        if m.is_safe() {
            return self.pass();
        }
        Counters::bump(&self.counters.pass);
        Lookup::Fetch(Ticket {
            cache: self.clone(),
            key: key(host, req.uri()),
            kind: Kind::Invalidate,
        })
    }

    fn pass(&self) -> Lookup {
        Counters::bump(&self.counters.pass);
        Lookup::Pass
    }

    /// The newest stored variant `request` selects (§4.1), if it may answer it.
    fn find(&self, key: &str, request: &HeaderMap, has_auth: bool) -> Option<Arc<Object>> {
        let variants = self.store.get(key)?;
        variants
            .objects
            .iter()
            .find(|o| {
                policy::vary_matches(&o.vary, request) && (!has_auth || o.meta.shareable_with_auth)
            })
            .cloned()
    }

    fn stale_on_error(&self, obj: &Object) -> bool {
        let now = Instant::now();
        policy::stale_allowed(&obj.meta, obj.staleness(now), obj.meta.stale_if_error)
    }

    fn serve_stale(&self, obj: &Object, cond: &Conditionals) -> Lookup {
        Counters::bump(&self.counters.stale);
        Lookup::Serve(serve(obj, cond, self.x(Status::Stale)), Status::Stale)
    }

    pub(super) fn x(&self, s: Status) -> Option<Status> {
        self.settings.x_cache.then_some(s)
    }

    /// Store `obj` as a variant of `key`.
    pub(super) fn insert(&self, key: &Arc<str>, obj: Object) {
        let obj = Arc::new(obj);
        let current = self.store.get(key);
        let empty = Variants::default();
        let v = current
            .as_deref()
            .unwrap_or(&empty)
            .with(obj, self.settings.max_variants);
        self.store.insert(key.clone(), v);
        Counters::bump(&self.counters.stored);
    }
}

/// `Cache-Control: no-cache` or `Pragma: no-cache` on the request.
fn client_no_cache(h: &HeaderMap) -> bool {
    Directives::parse(h).no_cache
        || h.get(header::PRAGMA)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("no-cache"))
}

/// Request fields a fill drops: the fill fetches the whole, unconditional response
/// (the client's own conditionals are answered from what gets stored).
const FILL_DROPS: [header::HeaderName; 6] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
];

impl Ticket {
    /// Shape the request to the member: a fill asks for the whole response, with the
    /// stored validators when it revalidates (§4.3.1).
    pub fn prepare(&self, h: &mut HeaderMap) {
        let Kind::Fill(f) = &self.kind else { return };
        for n in &FILL_DROPS {
            h.remove(n);
        }
        if let Some(obj) = &f.stale {
            if let Some(tag) = obj.headers.get(header::ETAG) {
                h.insert(header::IF_NONE_MATCH, tag.clone());
            }
            if let Some(lm) = obj.headers.get(header::LAST_MODIFIED) {
                h.insert(header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
    }

    /// The background request of a stale-while-revalidate refresh: `req`'s head (GET,
    /// no body) carrying this ticket.
    pub fn refresh_request<B>(self, req: &Request<B>) -> Request<Body> {
        let mut r = Request::new(crate::body::empty());
        *r.method_mut() = Method::GET;
        *r.uri_mut() = req.uri().clone();
        *r.version_mut() = req.version();
        *r.headers_mut() = req.headers().clone();
        r.extensions_mut()
            .insert(Refresh(Arc::new(Mutex::new(Some(self)))));
        r
    }

    /// Judge the member's answer.
    pub fn verdict(self, status: StatusCode, headers: &HeaderMap) -> Verdict {
        let cache = self.cache;
        let f = match self.kind {
            Kind::Invalidate => {
                if status.is_success() || status.is_redirection() {
                    cache.purge_key(&self.key);
                }
                return Verdict::Forward(Status::Pass, false);
            }
            Kind::Fill(f) => *f,
        };
        if let (StatusCode::NOT_MODIFIED, Some(stale)) = (status, &f.stale) {
            return cache.refreshed(&self.key, stale, headers, &f);
        }
        let member_failed = matches!(status.as_u16(), 500 | 502 | 503 | 504);
        if member_failed {
            if let Some(obj) = f.stale.as_ref().filter(|o| cache.stale_on_error(o)) {
                let resp = serve(obj, &f.cond, cache.x(Status::Stale));
                f.guard.finish(FillState::Failed);
                Counters::bump(&cache.counters.stale);
                return Verdict::Answer(resp, Status::Stale);
            }
        }
        let x = Exchange {
            method: &Method::GET,
            request_has_auth: f.has_auth,
            status,
            headers,
            request_time: f.sent,
            response_time: SystemTime::now(),
        };
        match policy::storable(&x, &cache.settings) {
            Ok(meta) if status != StatusCode::NOT_MODIFIED => Verdict::Store(Filler::new(
                cache,
                f.guard,
                f.request,
                meta,
                x.response_time,
            )),
            _ => {
                let state = if member_failed {
                    FillState::Failed
                } else {
                    FillState::Pass
                };
                f.guard.finish(state);
                Verdict::Forward(Status::Miss, cache.settings.x_cache)
            }
        }
    }

    /// roost could not get an answer (pool offline, queue full, member unreachable):
    /// stale content if stale-if-error allows.
    pub fn on_error(self) -> Option<Response<Body>> {
        let Kind::Fill(f) = self.kind else {
            return None;
        };
        let cache = self.cache;
        let obj = f.stale.as_ref().filter(|o| cache.stale_on_error(o))?;
        Counters::bump(&cache.counters.stale);
        let resp = serve(obj, &f.cond, cache.x(Status::Stale));
        f.guard.finish(FillState::Failed);
        Some(resp)
    }
}

impl Cache {
    /// A 304 to a revalidation: the stored head takes the 304's fields and the entry is
    /// fresh again (§4.3.4); the client gets the stored response.
    fn refreshed(
        self: &Arc<Self>,
        key: &Arc<str>,
        stale: &Object,
        headers: &HeaderMap,
        f: &Fill,
    ) -> Verdict {
        let merged = policy::merge_304(&stale.headers, headers);
        let now = SystemTime::now();
        let x = Exchange {
            method: &Method::GET,
            request_has_auth: f.has_auth,
            status: stale.status,
            headers: &merged,
            request_time: f.sent,
            response_time: now,
        };
        Counters::bump(&self.counters.revalidated);
        let meta = policy::storable(&x, &self.settings);
        let obj = Object::new(
            stale.status,
            merged,
            stale.body.clone(),
            stale.vary.clone(),
            meta.clone().unwrap_or_else(|_| stale.meta.clone()),
            now,
        );
        let resp = serve(&obj, &f.cond, self.x(Status::Hit));
        if meta.is_ok() {
            self.insert(key, obj);
        } else {
            self.purge_key(key);
        }
        Verdict::Answer(resp, Status::Hit)
    }
}

/// Mark a forwarded response (`x-cache`).
pub fn mark(resp: &mut Response<Body>, status: Status) {
    resp.headers_mut()
        .insert(X_CACHE.clone(), HeaderValue::from_static(status.as_str()));
}

impl Verdict {
    /// What the access log records for it.
    pub fn status(&self) -> Status {
        match self {
            Verdict::Answer(_, s) | Verdict::Forward(s, _) => *s,
            Verdict::Store(_) => Status::Miss,
        }
    }

    /// The member's response (its head as the client gets it), stored as it streams
    /// or marked.
    pub fn apply(self, mut resp: Response<Body>) -> Response<Body> {
        match self {
            Verdict::Store(f) => f.tee(resp),
            Verdict::Forward(s, true) => {
                mark(&mut resp, s);
                resp
            }
            Verdict::Forward(_, false) | Verdict::Answer(..) => resp,
        }
    }
}
