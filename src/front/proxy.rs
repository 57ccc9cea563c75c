//! The proxy step: a routed request takes a slot in its pool, is forwarded to the member
//! that slot belongs to, and holds the slot until its response body has been sent.
//!
//! Everything roost answers itself goes through [`Reason::response`]; everything it
//! forwards streams (no body is ever collected).

use super::connection::InFlight;
use super::headers;
use super::inflight::Registered;
use super::record::{CloseConnection, ConnInfo, RequestRecord};
use super::serving::{ByPool, Serving};
use crate::body::{self, Body, BoxError};
use crate::cache::{Cache, Lookup, Status as CacheStatus, Ticket, Verdict};
use crate::compress::{self, Plan};
use crate::config::compression::CompressionSettings;
use crate::error::{Reason, REASON_HEADER_NAME};
use crate::farm::request as farm_request;
use crate::pool::{Lease, PickKey, Pool, QueueTag, RequestFacts, Turn};
use crate::upstream::{UpstreamBody, UpstreamError};
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The per-connection hyper service: every request goes through [`handle`].
#[derive(Clone)]
pub struct Service {
    pub(super) front: Arc<Serving>,
    pub(super) conn: Arc<ConnInfo>,
    pub(super) activity: Arc<super::connection::Activity>,
}

/// A request being handled, as both servers hold it.
pub type Pending =
    Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, BoxError>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pending;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        // Built on the stack and copied into its allocation whole, as `Box::pin` would:
        // `handle` keeps the future small for that reason.
        let fut = handle(
            self.front.clone(),
            *self.conn,
            Some(in_flight),
            req.map(body::boxed),
        );
        let boxed = Box::write(Box::new_uninit(), fut);
        Box::into_pin(boxed)
    }
}

/// The client's side of an upgrade: from hyper's server (HTTP/2 has none, but the type
/// is shared) or from roost's own HTTP/1.1 server.
enum ClientUpgrade {
    Hyper(hyper::upgrade::OnUpgrade),
    Own(super::h1::OnUpgrade),
}

impl ClientUpgrade {
    fn take(req: &mut Request<Body>) -> ClientUpgrade {
        match req.extensions_mut().remove::<super::h1::OnUpgrade>() {
            Some(own) => ClientUpgrade::Own(own),
            None => ClientUpgrade::Hyper(hyper::upgrade::on(req)),
        }
    }

    /// The client's connection, once the `101` has gone out.
    async fn wait(self) -> Option<Box<dyn Tunnel>> {
        match self {
            ClientUpgrade::Hyper(on) => {
                let c = on.await.ok()?;
                Some(Box::new(hyper_util::rt::TokioIo::new(c)))
            }
            ClientUpgrade::Own(own) => Some(Box::new(own.wait().await?)),
        }
    }
}

trait Tunnel: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Tunnel for T {}

/// The proxy step: validate → route → prepare the upstream request → forward (with
/// the pool's admission and the farm's retries) → stream the response back.
///
/// A plain `fn` around an `async move` block: an `async fn` moves each argument into a
/// local of its own and keeps both rooms (the request alone is 240 bytes), and this
/// future is what each request in flight holds and what is copied as it starts.
// Not an `async fn`, on purpose: see above.
#[allow(clippy::manual_async_fn)]
pub(super) fn handle(
    front: Arc<Serving>,
    conn: ConnInfo,
    in_flight: Option<InFlight>,
    mut req: Request<Body>,
) -> impl std::future::Future<Output = Result<Response<Body>, BoxError>> + Send {
    async move {
        let started = Instant::now();
        let mut rec = RequestRecord::of(&req, &conn, front.logs());
        let (
            Routed {
                pool, cache, tag, ..
            },
            zip,
        ) = match admit(&front, &conn, &mut req, &mut rec) {
            Ok(r) => r,
            Err(reason) => return front.refuse(rec, started, reason, None),
        };
        // The cache answers before the pool's admission: a hit never takes a queue slot.
        let ticket = match consult(&front, conn, cache, &req, &mut rec).await {
            Cached::Hit(resp, status) => {
                let resp = compress::apply(&zip, resp);
                return Ok(front.served(rec, started, &pool, resp, status));
            }
            Cached::Fetch(ticket) => ticket,
        };
        let registered = register(&front, &pool, &req, &rec, started);
        let mut up = Upstream::prepare(&front, &conn, &pool, req, tag);
        if let Some(t) = &ticket {
            t.prepare(&mut up.parts.headers);
        }
        match forward(&pool, &mut up, &mut rec, &registered, started).await {
            Ok((lease, resp)) => {
                let mut after = None;
                if let Some(t) = ticket {
                    match t.verdict(resp.status(), resp.headers()) {
                        Verdict::Answer(answer, status) => {
                            let mut lease = lease;
                            lease.complete_at(Instant::now());
                            let answer = compress::apply(&zip, answer);
                            return Ok(front.served(rec, started, &pool, answer, status));
                        }
                        v => after = Some(v),
                    }
                }
                rec.cache = rec.cache.or(after.as_ref().map(Verdict::status));
                // Still listed: the response body's end takes it off.
                let listed = registered.into_entry();
                let resp = finish(
                    front,
                    rec,
                    started,
                    pool,
                    lease,
                    listed,
                    in_flight,
                    resp,
                    up.client_upgrade,
                );
                // Compressed before the cache stores it (one variant per coding).
                let resp = compress::apply(&zip, resp);
                Ok(match after {
                    Some(v) => v.apply(resp),
                    None => resp,
                })
            }
            Err(Stop::Refuse(reason)) => {
                let by = ByPool::of(&pool, up.queue_tag.as_ref());
                refused(&front, rec, started, by, ticket, &zip, reason)
            }
            Err(Stop::Close(reason)) => Err(Box::new(CloseConnection(reason))),
        }
    }
}

/// Validate and route the request, and negotiate its response's coding (before the cache
/// looks: it keys variants by the chosen coding). The refusal's reason otherwise.
fn admit(
    front: &Serving,
    conn: &ConnInfo,
    req: &mut Request<Body>,
    rec: &mut RequestRecord,
) -> Result<(Routed, Option<Plan>), Reason> {
    if let Err(why) = headers::validate(req) {
        tracing::debug!(?why, peer = %conn.peer, "bad request");
        return Err(Reason::BadRequest);
    }
    let mut routed = route(front, conn, req).ok_or(Reason::NoRoute)?;
    rec.pool = Some(routed.pool.name_arc());
    let zip = routed.zip.take().map(|s| Plan::negotiate(req, s));
    Ok((routed, zip))
}

/// A request the pool or its members refused: the cache's stale copy where the response
/// allows it (`stale-if-error`), roost's own refusal otherwise.
fn refused(
    front: &Serving,
    rec: RequestRecord,
    started: Instant,
    by: ByPool<'_>,
    ticket: Option<Ticket>,
    zip: &Option<Plan>,
    reason: Reason,
) -> Result<Response<Body>, BoxError> {
    match ticket.and_then(Ticket::on_error) {
        Some(stale) => {
            let stale = compress::apply(zip, stale);
            Ok(front.served(rec, started, by.pool, stale, CacheStatus::Stale))
        }
        None => front.refuse(rec, started, reason, Some(by)),
    }
}

/// List the request in the in-flight registry (`GET /api/v1/requests`) until it ends.
fn register<'a>(
    front: &'a Serving,
    pool: &Pool,
    req: &Request<Body>,
    rec: &RequestRecord,
    started: Instant,
) -> Registered<'a> {
    let target = rec.target.clone();
    let target = target.unwrap_or_else(|| PathAndQuery::from_static("/"));
    front
        .inflight
        .register(pool.name_arc(), req.method().clone(), target, started)
}

/// What the cache says before the pool's admission.
enum Cached {
    /// Answer from the cache (fresh, or stale while a refresh runs in the background).
    Hit(Response<Body>, CacheStatus),
    /// Go on to the pool, with the ticket that fills the cache from the answer, if any.
    Fetch(Option<Ticket>),
}

/// Ask the route's cache, if it has one (a `Pass` is noted in the record).
async fn consult(
    front: &Arc<Serving>,
    conn: ConnInfo,
    cache: Option<Arc<Cache>>,
    req: &Request<Body>,
    rec: &mut RequestRecord,
) -> Cached {
    let Some(cache) = cache else {
        return Cached::Fetch(None);
    };
    match cache.lookup(req, headers::request_host(req)).await {
        Lookup::Serve(resp, status) => Cached::Hit(resp, status),
        Lookup::Refresh(resp, t) => {
            spawn_refresh(front, conn, t.refresh_request(req));
            Cached::Hit(resp, CacheStatus::Stale)
        }
        Lookup::Fetch(t) => Cached::Fetch(Some(t)),
        Lookup::Pass => {
            rec.cache = Some(CacheStatus::Pass);
            Cached::Fetch(None)
        }
    }
}

/// A stale-while-revalidate refresh: the request goes through [`handle`] in the
/// background (it carries its ticket), and its body is read so the fill completes.
fn spawn_refresh(front: &Arc<Serving>, conn: ConnInfo, req: Request<Body>) {
    let front = front.clone();
    tokio::spawn(async move {
        let pending: Pending = Box::pin(handle(front, conn, None, req));
        if let Ok(resp) = pending.await {
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        }
    });
}

/// What [`route`] resolves for a request.
struct Routed {
    pool: Arc<Pool>,
    /// Its application's (or pool's) cache.
    cache: Option<Arc<Cache>>,
    /// Its application's (or pool's) compression.
    zip: Option<Arc<CompressionSettings>>,
    /// Its place in the pool's queue (`None` unless the pool has `priorities` or
    /// `fairness`).
    tag: Option<QueueTag>,
}

/// The pool the request's host and path route to, the cache and compression of its
/// application or pool (without either configured, one branch each), and its queue tag.
fn route(front: &Serving, conn: &ConnInfo, req: &Request<Body>) -> Option<Routed> {
    let state = front.state();
    let host = headers::request_host(req);
    let route = state
        .router(&conn.listen)
        .and_then(|r| r.route(host, req.uri().path()))?;
    let pool = route.target.clone();
    let tag = pool.tag(&RequestFacts {
        site: route.site,
        app_path: route.app_path,
        path: req.uri().path(),
        headers: req.headers(),
        peer: conn.peer.ip(),
    });
    let cache = if state.caches.is_empty() {
        None
    } else {
        let (site, app) = (route.site, route.app_path);
        state.caches.for_route(site, app, pool.name()).cloned()
    };
    let zip = if state.compression.is_empty() {
        None
    } else {
        let (site, app) = (route.site, route.app_path);
        state.compression.for_route(site, app, pool.name()).cloned()
    };
    Some(Routed {
        pool,
        cache,
        zip,
        tag,
    })
}

/// The request as it goes to members: the client's head minus hop-by-hop headers (kept
/// here so a retry sends it again without a copy), the forwarding headers the encoder
/// writes beside it, the body as a stream, and the farm's policy for it.
struct Upstream {
    parts: http::request::Parts,
    body: Body,
    fwd: crate::upstream::Forwarded,
    policy: farm_request::Policy,
    upgrade: bool,
    client_upgrade: Option<ClientUpgrade>,
    /// The request's ordering key, when its pool orders requests per key.
    order: Option<Box<[u8]>>,
    /// The request's priority class and fairness key in its pool's queue.
    queue_tag: Option<QueueTag>,
}

impl Upstream {
    fn prepare(
        front: &Serving,
        conn: &ConnInfo,
        pool: &Pool,
        mut req: Request<Body>,
        queue_tag: Option<QueueTag>,
    ) -> Upstream {
        let policy = farm_request::Policy::new(pool, &req, conn.peer.ip());
        let order = order_key(pool, &req, conn.peer.ip());
        // HTTP/2 clients send `:authority`, not `Host`; the forwarding headers carry it.
        let fwd = headers::forwarding_of(&req, conn.peer.ip(), conn.tls);
        let upgrade = headers::is_upgrade(&req);
        let client_upgrade = upgrade.then(|| ClientUpgrade::take(&mut req));
        let target = crate::h1::forward::origin_target(req.uri());
        let (mut parts, incoming) = req.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        headers::drop_underscore_headers(&mut parts.headers);
        parts.version = Version::HTTP_11;
        parts.uri = http::Uri::from(target);
        // A request without a body (most of them) needs no progress timer.
        let body = if incoming.is_end_stream() {
            incoming
        } else {
            body::boxed(BodyTimeout::new(incoming, front.limits().body_timeout))
        };
        Upstream {
            parts,
            body,
            fwd,
            policy,
            upgrade,
            client_upgrade,
            order,
            queue_tag,
        }
    }
}

/// The request's key for `pools.<name>.ordering` (`None`: the pool does not order, or
/// the request has no key and is not ordered).
fn order_key(pool: &Pool, req: &Request<Body>, peer: std::net::IpAddr) -> Option<Box<[u8]>> {
    use crate::config::ordering::OrderingKey;
    let source = pool.ordering_key()?;
    let key: &[u8] = match &*source {
        OrderingKey::Header(name) => req.headers().get(name)?.as_bytes(),
        OrderingKey::Cookie(name) => farm_request::cookie(req.headers(), name)?.as_bytes(),
        OrderingKey::ClientAddress => return Some(ip_octets(peer)),
    };
    (!key.is_empty()).then(|| key.into())
}

/// A client address as bytes, an IPv4-mapped IPv6 address as its IPv4 form.
fn ip_octets(ip: std::net::IpAddr) -> Box<[u8]> {
    match ip {
        std::net::IpAddr::V4(a) => a.octets().into(),
        std::net::IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.octets().into(),
            None => a.octets().into(),
        },
    }
}

/// Why the proxy step ends without a member's response.
enum Stop {
    /// roost answers with this reason's response.
    Refuse(Reason),
    /// The connection closes instead (`TcpLevel` rejections).
    Close(Reason),
}

/// One attempt's outcome.
enum Attempt {
    Answered(Response<UpstreamBody>),
    /// Send again on another member (never sent, or a 502/503 the farm may retry).
    Again,
    Failed(Reason),
}

/// Take a slot, send, and retry as the pool's policy allows: a request never sent goes
/// once more to another member; a farm may replay an idempotent request after a 502/503.
/// An ordered request first waits for its key's turn, and holds it across the retry.
async fn forward(
    pool: &Arc<Pool>,
    up: &mut Upstream,
    rec: &mut RequestRecord,
    registered: &Registered<'_>,
    started: Instant,
) -> Result<(Lease, Response<UpstreamBody>), Stop> {
    let mut turn = match up.order.take() {
        Some(k) => Some(pool.take_turn(&k).await.map_err(|r| stop(pool, r))?),
        None => None,
    };
    let mut key: PickKey = up.policy.key();
    key.order = turn.as_ref().map(Turn::hash);
    let mut waited = turn.as_ref().map_or(Duration::ZERO, Turn::waited);
    let mut retried = false;
    loop {
        let mut lease = pool
            .acquire_as(&key, up.queue_tag.as_ref(), std::mem::take(&mut waited))
            .await
            .map_err(|r| stop(pool, r))?;
        rec.queue_wait = Some(lease.queue_wait());
        rec.worker_pid = lease.member().pid;
        registered.entry().set_executing(lease.member().pid);
        // Clock reads cost ~30 ns each here (a few per request add up): a request that did
        // not wait, and is not a retry, is sent at the time it started.
        let first = lease.queue_wait().is_zero() && !retried;
        let sent_at = if first { started } else { Instant::now() };
        match attempt(pool, up, &lease, sent_at, &mut retried).await {
            Attempt::Answered(resp) => {
                if let Some(t) = turn.take() {
                    lease.hold(t);
                }
                return Ok((lease, resp));
            }
            Attempt::Again => key.avoid = Some(lease.member().label.clone()),
            Attempt::Failed(reason) => return Err(Stop::Refuse(reason)),
        }
    }
}

/// A pool's refusal: answered, or a closed connection (`TcpLevel`).
fn stop(pool: &Pool, reason: Reason) -> Stop {
    if pool.closes_connection(reason) {
        Stop::Close(reason)
    } else {
        Stop::Refuse(reason)
    }
}

/// Send once on the member `lease` holds, and judge the outcome.
async fn attempt(
    pool: &Arc<Pool>,
    up: &mut Upstream,
    lease: &Lease,
    sent_at: Instant,
    retried: &mut bool,
) -> Attempt {
    let member = lease.member();
    let client = &member.client;
    // The client's first-byte timer is per member connection, re-armed only when it
    // fires early (a timer per request cost ~2 % of the front's instructions).
    let deadline = sent_at + client.first_byte_timeout();
    let body = std::mem::replace(&mut up.body, body::empty());
    match client
        .forward(&up.parts, body, Some(&up.fwd), Some(deadline))
        .await
    {
        Ok(mut resp) => {
            member.observe_latency(sent_at.elapsed().as_micros() as u64);
            match up
                .policy
                .after_response(pool, member, up.upgrade, &mut resp)
            {
                // Replayable requests have no body: `up.body` stays empty.
                farm_request::Verdict::RetryElsewhere => Attempt::Again,
                farm_request::Verdict::Keep => Attempt::Answered(resp),
            }
        }
        Err((e, unsent)) => failed(pool, up, member, e, unsent, retried),
    }
}

/// A failed exchange: log it as what it was, count it against the member when it is
/// the member's fault, and retry a request that can still be sent once more.
fn failed(
    pool: &Arc<Pool>,
    up: &mut Upstream,
    member: &crate::pool::Member,
    e: UpstreamError,
    unsent: Option<Body>,
    retried: &mut bool,
) -> Attempt {
    let reason = e.reason();
    match &e {
        UpstreamError::ClientBody(_) => {
            tracing::debug!(pool = pool.name(), error = %e, "client request body failed");
            return Attempt::Failed(reason);
        }
        UpstreamError::TimedOut => {
            tracing::warn!(pool = pool.name(), member = %member.label, "first-byte timeout");
        }
        _ => {
            tracing::warn!(pool = pool.name(), member = %member.label, error = %e, %reason, "upstream request failed");
        }
    }
    if !matches!(e, UpstreamError::TimedOut) {
        member.note_failure();
    }
    up.policy.after_failure(pool, member, e.blames_member());
    match unsent {
        Some(b) if !*retried => {
            *retried = true;
            if e.was_sent() {
                tracing::info!(pool = pool.name(), member = %member.label, "retrying after send (idempotent, unanswered) on another member");
            }
            up.body = b;
            Attempt::Again
        }
        _ => Attempt::Failed(reason),
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    front: Arc<Serving>,
    mut rec: RequestRecord,
    started: Instant,
    pool: Arc<Pool>,
    lease: Lease,
    listed: Arc<super::inflight::Entry>,
    in_flight: Option<InFlight>,
    resp: Response<UpstreamBody>,
    client_upgrade: Option<ClientUpgrade>,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    rec.status = parts.status.as_u16();
    // A worker's own rejection (ServerTooBusy) keeps its reason for the log.
    // Looked up only on errors: a hashed lookup of a custom name costs ~2 % per request.
    if parts.status.as_u16() >= 400 {
        rec.reason = parts
            .headers
            .get(&REASON_HEADER_NAME)
            .and_then(|v| v.to_str().ok())
            .and_then(Reason::parse);
    }
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    headers::strip_hop_by_hop(&mut parts.headers, switching);

    let done = Done {
        front,
        rec: Some(rec),
        started,
        pool,
        lease: Some(lease),
        registered: Some(listed),
        _in_flight: in_flight,
    };

    if switching {
        if let Some(client_up) = client_upgrade {
            if let Some(upstream) = body.into_upgraded() {
                // The tunnel owns the slot until either side closes.
                tokio::spawn(async move {
                    let _done = done;
                    let Some(mut c) = client_up.wait().await else {
                        return;
                    };
                    let mut u = upstream;
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                });
                return Response::from_parts(parts, body::empty());
            }
            return Response::from_parts(parts, body::empty());
        }
    }
    Response::from_parts(
        parts,
        Body::new(Tracked {
            inner: body,
            done: Some(done),
        }),
    )
}

/// Everything a request holds until its response has been sent: the pool slot, the
/// registry entry, the connection's in-flight mark; dropping it records the request.
struct Done {
    front: Arc<Serving>,
    rec: Option<RequestRecord>,
    started: Instant,
    pool: Arc<Pool>,
    lease: Option<Lease>,
    /// Its in-flight registry entry, removed when the request ends.
    registered: Option<Arc<super::inflight::Entry>>,
    _in_flight: Option<InFlight>,
}

impl Done {
    fn complete(&mut self, client_gone: bool) {
        if let Some(mut rec) = self.rec.take() {
            // One clock read for the log, the pool's idle clock and the connection's.
            let now = Instant::now();
            rec.elapsed = now.saturating_duration_since(self.started);
            if client_gone && rec.reason.is_none() {
                rec.reason = Some(Reason::ClientGone);
            }
            if !client_gone {
                if let Some(l) = self.lease.as_mut() {
                    l.complete_at(now);
                }
            }
            if let Some(f) = self._in_flight.as_mut() {
                f.done_at(now);
            }
            self.front.record(&rec, Some(&self.pool));
        }
        if let Some(e) = self.registered.take() {
            self.front.inflight.remove(e.id);
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        // Dropped without reaching the end: the client went away mid-response.
        self.complete(true);
    }
}

pin_project_lite::pin_project! {
    struct Tracked {
        #[pin]
        inner: UpstreamBody,
        done: Option<Done>,
    }
}

// The error is already `BoxError`, so the body is boxed as it is: a `map_err` layer
// around it would move the whole body (~450 bytes) once more per response.
impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let r = this.inner.as_mut().poll_frame(cx).map_err(Into::into);
        // hyper stops polling after the frame that makes `is_end_stream()` true.
        let ended = match &r {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            if let Some(mut d) = this.done.take() {
                d.complete(false);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A client request body that must make progress at least every `limit`
    /// (HTTP.sys EntityBody timer): a slow-POST client cannot hold a slot forever.
    struct BodyTimeout {
        #[pin]
        inner: Body,
        limit: Duration,
        #[pin]
        timer: tokio::time::Sleep,
    }
}

impl BodyTimeout {
    fn new(inner: Body, limit: Duration) -> Self {
        BodyTimeout {
            inner,
            limit,
            timer: tokio::time::sleep(limit),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request body made no progress for {0:?}")]
struct BodyStalled(Duration);

impl http_body::Body for BodyTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + *this.limit;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.timer.poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Box::new(BodyStalled(*this.limit)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
