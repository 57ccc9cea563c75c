//! The admin listener (issue 7): `GET /metrics` (Prometheus), the JSON API under
//! `/api/v1/`, the live dashboard at `/`, and the starvation diagnosis. `roost ctl`
//! ([`ctl`]) is its command-line client.
//!
//! It has its own listener (`admin.listen`, default 127.0.0.1:9901), never shared with
//! client traffic. A non-loopback address needs `admin.token`; with a token every call
//! needs `Authorization: Bearer <token>` (the dashboard page also takes `?token=`).
//! Nothing here runs on the request path: pool counters are atomics read at scrape time
//! and worker counters are fetched by a background [`sampler::Sampler`] once a second.
//! The listener is bound once at start: a reload that changes `admin.listen` or
//! `admin.token` takes effect at the next start.

pub mod api;
mod cache;
pub mod cpu;
pub mod ctl;
pub mod diagnose;
pub mod metrics;
mod probes;
pub mod sample;
pub mod sampler;
pub mod wire;

use crate::body::{self, Body};
use crate::config::model;
use crate::front::Front;
use crate::supervisor::Supervisor;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sampler::Sampler;
use serde::Serialize;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Re-reads the configuration and applies it (`POST /api/v1/reload`); `roost serve`
/// passes one that calls [`crate::serve::reload`]'s logic.
pub type Reloader =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the admin API reads and acts on.
#[derive(Clone)]
pub struct AdminContext {
    pub front: Arc<Front>,
    /// Web gardens' supervisor; `None` when only farms (or tests) run.
    pub supervisor: Option<Arc<Supervisor>>,
    pub reload: Option<Reloader>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin.listen {0} is not a loopback address: set admin.token")]
    NeedsToken(SocketAddr),
}

/// A running admin listener; dropping it stops the listener and the sampler.
pub struct Admin {
    addr: SocketAddr,
    /// `(configured address, fd)` of the admin listeners, for a binary upgrade.
    fds: Vec<(SocketAddr, std::os::fd::RawFd)>,
    /// The bound `admin.public.listen`, when configured.
    public_addr: Option<SocketAddr>,
    readiness: Arc<crate::ops::Readiness>,
    sampler: Arc<Sampler>,
    stop: watch::Sender<bool>,
    sampling: tokio::task::JoinHandle<()>,
}

impl Admin {
    /// Bind `cfg.listen` and serve. Port 0 picks a free port: read it with [`Admin::addr`].
    pub async fn start(cfg: &model::Admin, ctx: AdminContext) -> Result<Admin, AdminError> {
        Self::start_with_interval(cfg, ctx, Duration::from_secs(1)).await
    }

    /// As [`Admin::start`], sampling every `interval` (tests use a shorter one).
    pub async fn start_with_interval(
        cfg: &model::Admin,
        ctx: AdminContext,
        interval: Duration,
    ) -> Result<Admin, AdminError> {
        let token = cfg.token.clone().filter(|t| !t.is_empty());
        // Validation already refuses this; checked again because the API can act on pools.
        if !cfg.listen.ip().is_loopback() && token.is_none() {
            return Err(AdminError::NeedsToken(cfg.listen));
        }
        let listener = bind(cfg.listen).await?;
        // Bound before anything is spawned, so a failure leaves nothing running.
        let public = match cfg.public {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let addr = listener.local_addr().unwrap_or(cfg.listen);
        let mut fds = vec![(cfg.listen, std::os::fd::AsRawFd::as_raw_fd(&listener))];
        if let (Some(a), Some(l)) = (cfg.public, &public) {
            fds.push((a, std::os::fd::AsRawFd::as_raw_fd(l)));
        }
        let public_addr = public.as_ref().and_then(|l| l.local_addr().ok());
        let readiness = crate::ops::Readiness::new();
        let front = ctx.front.clone();
        readiness.spawn_watch(move || {
            let state = front.state();
            crate::ops::readiness::first_workers_answer(&state.config, &state.pools)
        });
        let sampler = Sampler::new(ctx.front.clone(), ctx.supervisor.clone());
        let sampling = sampler.spawn(interval);
        let server = Arc::new(Server {
            registry: metrics::registry(sampler.clone()),
            sampler: sampler.clone(),
            ctx,
            token,
            readiness: readiness.clone(),
        });
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(serve_listener(
            listener,
            server.clone(),
            stop_rx.clone(),
            false,
        ));
        if let (Some(l), Some(a)) = (public, public_addr) {
            tokio::spawn(serve_listener(l, server, stop_rx, true));
            tracing::info!(listen = %a, "admin.public listening (/readyz, /livez, /metrics)");
        }
        tracing::info!(listen = %addr, "admin listening");
        Ok(Admin {
            addr,
            fds,
            public_addr,
            readiness,
            sampler,
            stop,
            sampling,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `(configured address, fd)` of the admin listeners (valid until shutdown).
    pub fn listener_fds(&self) -> Vec<(SocketAddr, std::os::fd::RawFd)> {
        self.fds.clone()
    }

    /// The bound public (probe and metrics) address, when `admin.public` is set.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.public_addr
    }

    /// The readiness `/readyz` reports; `roost serve` marks the drain on it.
    pub fn readiness(&self) -> &Arc<crate::ops::Readiness> {
        &self.readiness
    }

    pub fn sampler(&self) -> &Arc<Sampler> {
        &self.sampler
    }

    /// Stop listening and sampling.
    pub fn shutdown(&self) {
        // Also ends the readiness watch of a roost that never became ready.
        self.readiness.set_draining();
        let _ = self.stop.send(true);
        self.sampling.abort();
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, AdminError> {
    if let Some(l) = crate::ops::upgrade::take_listener(addr) {
        return TcpListener::from_std(l).map_err(|source| AdminError::Bind { addr, source });
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })
}

/// Accept on one admin listener until `stop`. `public`: the read-only probe listener.
async fn serve_listener(
    listener: TcpListener,
    server: Arc<Server>,
    mut stop_rx: watch::Receiver<bool>,
    public: bool,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop_rx.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let server = server.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.handle(req, public).await) }
            });
            let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {}
            }
        });
    }
}

struct Server {
    sampler: Arc<Sampler>,
    registry: prometheus_client::registry::Registry,
    ctx: AdminContext,
    token: Option<String>,
    readiness: Arc<crate::ops::Readiness>,
}

const DASHBOARD_HTML: &str = include_str!("dashboard.html");
const DASHBOARD_JS: &str = include_str!("dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard.css");

/// `doc` as pretty JSON. Through a `serde_json::Value`, whose objects keep their keys in
/// sorted order: the bytes on the wire do not depend on field order in `wire`.
fn json_response(status: StatusCode, doc: &impl Serialize) -> Response<Body> {
    let v = serde_json::to_value(doc).unwrap_or_default();
    let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body::full(Bytes::from(body)))
        .expect("static response parts")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(
        status,
        &wire::ApiError {
            error: message.into(),
            status: status.as_u16(),
        },
    )
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    );
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    r
}

fn asset(ctype: &'static str, text: &'static str) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, ctype)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body::full(Bytes::from_static(text.as_bytes())))
        .expect("static response parts")
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compare without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Server {
    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(b) = bearer {
            return constant_time_eq(b.as_bytes(), token.as_bytes());
        }
        // The dashboard page itself is opened in a browser with `?token=`; its scripts
        // then send the header.
        let path = req.uri().path();
        if req.method() == Method::GET && matches!(path, "/" | "/dashboard.js" | "/dashboard.css") {
            if let Some(q) = query_param(req, "token") {
                return constant_time_eq(q.as_bytes(), token.as_bytes());
            }
        }
        false
    }

    async fn handle(&self, req: Request<Incoming>, public: bool) -> Response<Body> {
        if let Some(refused) = self.gatekeep(&req, public) {
            return refused;
        }
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        let post = req.method() == Method::POST;
        match segments.as_slice() {
            [] | [""] | ["dashboard.js"] | ["dashboard.css"] | ["metrics"] => {
                self.page(segments.first().copied().unwrap_or(""), get, &path)
            }
            ["api", "v1", "cache", rest @ ..] => cache::handle(&self.ctx.front, rest, req).await,
            ["api", "v1", rest @ ..] => self.api(&req, rest, get, post).await,
            _ => no_endpoint(&path),
        }
    }

    /// The probes (answered first, without a token), the public listener's limits, and
    /// the token check. `None`: go on.
    fn gatekeep(&self, req: &Request<Incoming>, public: bool) -> Option<Response<Body>> {
        let path = req.uri().path();
        let probe = probes::answer(req.method(), path, &self.readiness, &self.ctx.front);
        if probe.is_some() {
            return probe;
        }
        if public && path != "/metrics" {
            return Some(probes::not_public(path));
        }
        if !public && !self.authorized(req) {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send Authorization: Bearer <admin.token>",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return Some(r);
        }
        None
    }

    /// The dashboard's files and `/metrics` (`name`: the path's one segment).
    fn page(&self, name: &str, get: bool, path: &str) -> Response<Body> {
        match (name, get) {
            ("", true) => asset("text/html; charset=utf-8", DASHBOARD_HTML),
            ("dashboard.js", true) => asset("text/javascript; charset=utf-8", DASHBOARD_JS),
            ("dashboard.css", true) => asset("text/css; charset=utf-8", DASHBOARD_CSS),
            ("metrics", true) => Response::builder()
                .header(header::CONTENT_TYPE, metrics::CONTENT_TYPE)
                .body(body::full(Bytes::from(metrics::render(&self.registry))))
                .expect("static response parts"),
            ("" | "metrics", false) => method_not_allowed("GET"),
            _ => no_endpoint(path),
        }
    }

    /// `/api/v1/...` (`rest`: the segments after `v1`).
    async fn api(
        &self,
        req: &Request<Incoming>,
        rest: &[&str],
        get: bool,
        post: bool,
    ) -> Response<Body> {
        match rest {
            ["pools"] if get => json_response(StatusCode::OK, &api::pool_list(&self.sampler)),
            ["pools", name] if get => self.pool(name),
            ["pools", _, action] if !["recycle", "start", "stop"].contains(action) => error(
                StatusCode::BAD_REQUEST,
                format!("unknown action {action:?}: use recycle, start or stop"),
            ),
            ["pools", name, action] if post => self.pool_action(name, action),
            ["requests"] if get => self.requests(req),
            ["upgrade"] if post => upgrade(),
            ["reload"] if post => self.reload().await,
            ["diagnose"] if get => self.diagnose(),
            ["diagnose", "snapshots", rest @ ..] if get => self.snapshot_answer(rest),
            ["stats"] if get => self.stats(req),
            ["pools"] | ["pools", _] | ["requests"] | ["diagnose"] | ["stats"] => {
                method_not_allowed("GET")
            }
            ["diagnose", "snapshots", ..] => method_not_allowed("GET"),
            ["pools", _, _] | ["upgrade"] | ["reload"] => method_not_allowed("POST"),
            _ => no_endpoint(req.uri().path()),
        }
    }

    /// `GET /api/v1/diagnose`: the findings, with the evidence snapshots kept.
    fn diagnose(&self) -> Response<Body> {
        let report = diagnose::diagnose(&self.sampler.history());
        let mut v = serde_json::json!(report);
        let cfg = self.ctx.front.config();
        v["snapshots"] = self.sampler.snapshots().list_json(&cfg.diagnose);
        json_response(StatusCode::OK, &v)
    }

    /// `GET /api/v1/diagnose/snapshots` (the list) and `.../snapshots/{id}` (one file).
    fn snapshot_answer(&self, rest: &[&str]) -> Response<Body> {
        let cfg = self.ctx.front.config();
        let list = self.sampler.snapshots().list_json(&cfg.diagnose);
        let dir = cfg.diagnose.snapshot_dir.as_deref();
        match (rest, dir) {
            ([], _) => json_response(StatusCode::OK, &list),
            ([id], Some(dir)) => match diagnose::snapshot::read(dir, id) {
                Some(text) => Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::CACHE_CONTROL, "no-store")
                    .body(body::full(Bytes::from(text)))
                    .expect("static response parts"),
                None => error(StatusCode::NOT_FOUND, format!("no snapshot {id:?}")),
            },
            _ => error(StatusCode::NOT_FOUND, "no such snapshot"),
        }
    }

    fn pool(&self, name: &str) -> Response<Body> {
        match self.ctx.front.pool(name) {
            Some(p) => json_response(StatusCode::OK, &api::pool_doc(&self.sampler, name, &p)),
            None => error(StatusCode::NOT_FOUND, format!("no pool named {name:?}")),
        }
    }

    /// `GET /api/v1/requests[?pool=P&minElapsedMs=N]`.
    fn requests(&self, req: &Request<Incoming>) -> Response<Body> {
        let min = query_param(req, "minElapsedMs").or_else(|| query_param(req, "min_elapsed_ms"));
        let min_elapsed_ms = match min.as_deref().map(str::parse::<u64>) {
            None => 0,
            Some(Ok(v)) => v,
            Some(Err(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "minElapsedMs must be a whole number of milliseconds",
                )
            }
        };
        let filter = api::RequestFilter {
            pool: query_param(req, "pool").filter(|p| !p.is_empty()),
            min_elapsed_ms,
        };
        let list = api::request_list(self.ctx.front.inflight.list(), &filter);
        json_response(StatusCode::OK, &list)
    }

    async fn reload(&self) -> Response<Body> {
        let Some(reload) = &self.ctx.reload else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "reload is not available in this process",
            );
        };
        match reload().await {
            Ok(()) => json_response(StatusCode::OK, &wire::Reloaded { reloaded: true }),
            Err(e) => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("reload refused, the running configuration stays:\n{e}"),
            ),
        }
    }

    /// `GET /api/v1/stats[?since=T]`, with the longest-running in-flight requests.
    fn stats(&self, req: &Request<Incoming>) -> Response<Body> {
        let since = query_param(req, "since").and_then(|v| v.parse().ok());
        let mut stats = api::stats(&self.sampler.history(), since);
        stats.requests = self
            .ctx
            .front
            .inflight
            .list()
            .into_iter()
            .take(200)
            .collect();
        json_response(StatusCode::OK, &stats)
    }

    fn pool_action(&self, name: &str, action: &str) -> Response<Body> {
        let Some(pool) = self.ctx.front.pool(name) else {
            return error(StatusCode::NOT_FOUND, format!("no pool named {name:?}"));
        };
        let cfg = self.ctx.front.config();
        let garden = matches!(
            cfg.pools.get(name).map(|c| &c.backend),
            Some(model::Backend::Garden(_))
        );
        let sup = self.ctx.supervisor.as_ref().filter(|_| garden);
        use crate::pool::PoolState;
        use crate::supervisor::SupervisorError;
        let result: Result<(), (StatusCode, String)> = match (action, sup) {
            ("recycle", Some(s)) => s.recycle(name).map_err(|e| match e {
                SupervisorError::NotStarted(_) => (StatusCode::CONFLICT, e.to_string()),
                SupervisorError::UnknownPool(_) => (StatusCode::NOT_FOUND, e.to_string()),
            }),
            ("recycle", None) => Err((
                StatusCode::BAD_REQUEST,
                format!("pool {name:?} has no supervised worker processes to recycle"),
            )),
            ("start", Some(s)) => s
                .start_pool(name)
                .map_err(|e| (StatusCode::NOT_FOUND, e.to_string())),
            ("stop", Some(s)) => s
                .stop_pool(name)
                .map_err(|e| (StatusCode::NOT_FOUND, e.to_string())),
            ("start", None) => {
                pool.set_state(PoolState::Started);
                Ok(())
            }
            ("stop", None) => {
                pool.set_state(PoolState::Stopped);
                Ok(())
            }
            _ => Err((
                StatusCode::BAD_REQUEST,
                format!("unknown action {action:?}"),
            )),
        };
        match result {
            Ok(()) => {
                tracing::info!(pool = name, action, "admin action");
                let done = wire::ActionDone {
                    pool: name.to_string(),
                    action: action.to_string(),
                    ok: true,
                    state: pool.state().as_str().to_string(),
                };
                json_response(StatusCode::OK, &done)
            }
            Err((status, msg)) => error(status, msg),
        }
    }
}

/// `POST /api/v1/upgrade`: raise this process's SIGUSR2.
fn upgrade() -> Response<Body> {
    match crate::ops::upgrade::request() {
        Ok(()) => {
            let started = wire::UpgradeStarted {
                upgrade: "started".into(),
            };
            json_response(StatusCode::ACCEPTED, &started)
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

fn no_endpoint(path: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        format!("no such admin endpoint: {path}"),
    )
}
