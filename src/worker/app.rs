//! The application API: handlers, routes and the [`WorkerBuilder`].
//!
//! A Rust app runs on the same machinery as the built-in ones:
//!
//! ```no_run
//! use roost::worker::{Listen, Settings, WorkerBuilder, text};
//!
//! WorkerBuilder::new(Settings::default())
//!     .route_async("/api", |_req| async { text("async, on the I/O pool\n") })
//!     .route_sync("/hello", |_req| text("sync, on the default worker pool\n"))
//!     .thread_pool("reports", 1, 4)
//!     .route_sync_on("/report", "reports", |_req| text("sync, on the reports pool\n"))
//!     // Any tower Service (an axum Router, tower-http's ServeDir, ...):
//!     .route_service("/svc", tower::service_fn(|_req| async {
//!         Ok::<_, std::convert::Infallible>(text("a tower service\n"))
//!     }))
//!     .run("unix:/tmp/app.sock".parse::<Listen>().unwrap())
//!     .unwrap();
//! ```
//!
//! Async handlers and services run on the I/O pool and must never block it; sync handlers
//! run on a worker pool thread (the default pool, or a dedicated one chosen by
//! [`route_sync_on`] or [`route_pool`]), and may block (wrap known blocking calls in
//! [`blocking`](super::threadpool::blocking) so the pool can add a thread at once). The
//! complete example is `examples/custom_worker.rs`.
//!
//! A route matches its path and everything below it on a segment boundary (`/api` matches
//! `/api` and `/api/x`, not `/apix`); the longest match wins, and `/` is the fallback.
//!
//! [`route_pool`]: WorkerBuilder::route_pool
//! [`route_sync_on`]: WorkerBuilder::route_sync_on

use super::body::Body;
use super::inline_future::HandlerFuture;
use super::settings::{PoolLimits, Settings};
use super::timer::DEFAULT_HEADER_READ_TIMEOUT;
use crate::body::BoxError;
use bytes::Bytes;
use futures_util::FutureExt;
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::ServiceExt;

pub use super::body::{Request, Response};

/// An async handler, type-erased: its future is kept in place when small (see
/// [`HandlerFuture`]), so a handler such as `|_req| async { text("hi") }` costs no box.
type AsyncFn = dyn Fn(Request) -> HandlerFuture + Send + Sync;
pub(crate) type SyncFn = dyn Fn(Request) -> Response + Send + Sync;

/// A registered handler.
#[derive(Clone)]
pub enum Handler {
    Async(Arc<AsyncFn>),
    Sync(Arc<SyncFn>),
}

/// Path prefix → handler, longest prefix first.
#[derive(Clone, Default)]
pub(crate) struct Router {
    /// The prefix is shared so a busy-route record takes it without copying.
    routes: Vec<(Arc<str>, Handler)>,
}

impl Router {
    fn add(&mut self, path: &str, h: Handler) {
        let path: Arc<str> = normalize(path).into();
        self.routes.retain(|(p, _)| *p != path);
        self.routes.push((path, h));
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
    }

    /// The index (for [`route`](Router::route)) of the handler for `path`.
    pub(crate) fn find(&self, path: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|(p, _)| prefix_matches(p, path))
    }

    /// The route prefix at `index` (from [`find`](Router::find)) and its handler.
    pub(crate) fn route(&self, index: usize) -> (&Arc<str>, &Handler) {
        let (p, h) = &self.routes[index];
        (p, h)
    }
}

fn normalize(path: &str) -> String {
    let p = path.trim_end_matches('/');
    if p.is_empty() {
        "/".to_string()
    } else if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// `prefix` (normalized, no trailing slash unless it is `/`) covers `path`.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Builds a worker: routes, dedicated pools, settings. See the module docs.
pub struct WorkerBuilder {
    pub(crate) name: String,
    pub(crate) settings: Settings,
    pub(crate) router: Router,
    pub(crate) header_read_timeout: Duration,
}

impl WorkerBuilder {
    pub fn new(settings: Settings) -> Self {
        WorkerBuilder {
            name: "app".to_string(),
            settings,
            router: Router::default(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }

    /// The app's name, for logs and `/.roost/counters`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// An async handler: runs on the I/O pool, must not block.
    pub fn route_async<F, Fut>(mut self, path: &str, f: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let h: Arc<AsyncFn> = Arc::new(move |req| HandlerFuture::new(f(req)));
        self.router.add(path, Handler::Async(h));
        self
    }

    /// A sync handler: runs on a worker pool thread, may block.
    pub fn route_sync<F>(mut self, path: &str, f: F) -> Self
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        self.router.add(path, Handler::Sync(Arc::new(f)));
        self
    }

    /// A sync handler on the dedicated pool `pool` (declared with [`thread_pool`]): the same
    /// as [`route_sync`] then [`route_pool`] for `path`.
    ///
    /// [`thread_pool`]: WorkerBuilder::thread_pool
    /// [`route_sync`]: WorkerBuilder::route_sync
    /// [`route_pool`]: WorkerBuilder::route_pool
    pub fn route_sync_on<F>(self, path: &str, pool: &str, f: F) -> Self
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        self.route_sync(path, f).route_pool(path, pool)
    }

    /// Any tower [`Service`](tower::Service) as an async route, so an axum `Router`, a
    /// tower-http service (`ServeDir`, with layers) or a hand-written service plugs in.
    ///
    /// It runs on the I/O pool behind the gate like an async handler, and sees the full
    /// request URI (the prefix is not stripped). Each request calls a clone of `svc`
    /// (`oneshot`: `poll_ready`, then `call`), as hyper and axum do. The response body may
    /// be any `http_body::Body` with `Bytes` chunks, `Sync` or not (axum's is not). A
    /// service error becomes a 500 and is logged.
    pub fn route_service<S, B>(mut self, path: &str, svc: S) -> Self
    where
        S: tower::Service<Request, Response = http::Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // The service itself need not be Sync (tower's BoxCloneService is not): it is only
        // touched under the lock, long enough to clone it.
        let svc = parking_lot::Mutex::new(svc);
        let h: Arc<AsyncFn> = Arc::new(move |req| {
            let svc = svc.lock().clone();
            // A combinator, not an async block: rustc cannot prove an async block holding
            // `S::Future` Send for the erased lifetimes of the request type (rust#64552).
            HandlerFuture::new(svc.oneshot(req).map(|r| match r {
                Ok(resp) => resp.map(|b| Body::wrap(SyncBody::new(b))),
                Err(e) => {
                    let e: BoxError = e.into();
                    tracing::error!(error = %e, "route service failed");
                    status(StatusCode::INTERNAL_SERVER_ERROR, "service error")
                }
            }))
        });
        self.router.add(path, Handler::Async(h));
        self
    }

    /// Declare a dedicated worker pool (`--thread-pool NAME=MIN:MAX`).
    pub fn thread_pool(mut self, name: &str, min: usize, max: usize) -> Self {
        self.settings
            .thread_pools
            .insert(name.to_string(), PoolLimits { min, max });
        self
    }

    /// Run the sync handlers under `prefix` on the dedicated pool `pool` (`--route`).
    pub fn route_pool(mut self, prefix: &str, pool: &str) -> Self {
        self.settings
            .routes
            .insert(normalize(prefix), pool.to_string());
        self
    }

    /// How long an HTTP/1 connection may take to send a request head, counted from its
    /// accept or from the end of its previous response (the slowloris guard; 30 s, hyper's
    /// default). A connection that misses it is closed without an answer. HTTP/2
    /// connections have none once their first request is in.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }
}

// --- Small helpers handlers use ----------------------------------------------------------

/// A `text/plain` 200 response.
pub fn text(s: impl Into<Bytes>) -> Response {
    // Built at compile time: `from_static` checks every byte, on every call otherwise.
    let ctype = const { HeaderValue::from_static("text/plain; charset=utf-8") };
    with_type(StatusCode::OK, ctype, s.into())
}

/// An `application/json` 200 response.
pub fn json(v: &serde_json::Value) -> Response {
    let ctype = const { HeaderValue::from_static("application/json") };
    with_type(StatusCode::OK, ctype, Bytes::from(v.to_string()))
}

/// A plain response with `status` and a short text body.
pub fn status(status: StatusCode, msg: &str) -> Response {
    let mut r = text(format!("{msg}\n"));
    *r.status_mut() = status;
    r
}

fn with_type(status: StatusCode, ctype: HeaderValue, body: Bytes) -> Response {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, ctype);
    r
}

/// The value of query parameter `name`, if present.
pub fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// Makes any `Send` body `Sync` (roost's [`Body`] is), so a service's `!Sync` body (such as
/// axum's) can be boxed. The mutex is only locked for `&self` calls (`is_end_stream`,
/// `size_hint`); polling goes through `&mut` and never locks.
struct SyncBody<B> {
    inner: std::sync::Mutex<Pin<Box<B>>>,
}

impl<B> SyncBody<B> {
    fn new(b: B) -> Self {
        SyncBody {
            inner: std::sync::Mutex::new(Box::pin(b)),
        }
    }

    fn get(&self) -> std::sync::MutexGuard<'_, Pin<Box<B>>> {
        // A panic while polling poisons nothing we rely on: the body is just read further.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<B: http_body::Body> http_body::Body for SyncBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let inner = self
            .get_mut()
            .inner
            .get_mut()
            .unwrap_or_else(|p| p.into_inner());
        inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.get().is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.get().size_hint()
    }
}

/// The I/O pool's handle, put in every request's extensions so sync handlers can wait on
/// async work (such as reading the body) from a worker thread.
#[derive(Clone, Debug)]
pub struct IoHandle(pub tokio::runtime::Handle);

/// Read the whole request body from a sync handler (on a worker thread), at most `limit`
/// bytes. Blocks the calling worker thread, never an I/O thread.
pub fn read_body_blocking(req: &mut Request, limit: usize) -> Result<Bytes, BoxError> {
    let handle = req
        .extensions()
        .get::<IoHandle>()
        .ok_or("no I/O handle in the request")?
        .0
        .clone();
    let body = std::mem::take(req.body_mut());
    let limited = http_body_util::Limited::new(body, limit);
    handle.block_on(async move { Ok(limited.collect().await?.to_bytes()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_segment_prefix_wins_and_root_is_the_fallback() {
        let mut r = Router::default();
        r.add("/", Handler::Sync(Arc::new(|_| text("root"))));
        r.add("/api", Handler::Sync(Arc::new(|_| text("api"))));
        r.add("/api/v2/", Handler::Sync(Arc::new(|_| text("v2"))));
        let which = |p: &str| match r.find(p).map(|i| r.route(i).1) {
            Some(Handler::Sync(f)) => {
                let resp = f(http::Request::new(Body::empty()));
                format!("{:?}", resp.body().size_hint().exact())
            }
            _ => "none".into(),
        };
        use http_body::Body as _;
        assert_eq!(which("/api"), "Some(3)");
        assert_eq!(which("/api/x"), "Some(3)");
        assert_eq!(which("/api/v2/x"), "Some(2)");
        assert_eq!(which("/apix"), "Some(4)");
        assert!(prefix_matches("/slow", "/slow/1"));
        assert!(!prefix_matches("/slow", "/slower"));
    }

    #[tokio::test]
    async fn a_tower_service_with_a_non_sync_body_is_a_route_and_its_errors_are_500s() {
        // axum's body is an UnsyncBoxBody: Send, not Sync.
        let svc = tower::service_fn(|req: Request| async move {
            let body =
                http_body_util::Full::new(Bytes::from(format!("svc {}", req.uri()))).boxed_unsync();
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        });
        let failing = tower::service_fn(|_req: Request| async { Err::<Response, _>("down") });
        let settings = Settings {
            min_worker_threads: 1,
            max_worker_threads: 1,
            ..Settings::default()
        };
        let w = WorkerBuilder::new(settings)
            .route_service("/svc", svc)
            .route_service("/bad", failing)
            .build()
            .unwrap();
        let get = |p: &str| http::Request::get(p).body(Body::empty()).unwrap();
        let resp = w.handle(get("/svc/x?y=1")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"svc /svc/x?y=1");
        assert_eq!(
            w.handle(get("/bad")).await.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(w.gate().counters().completed, 2);
        w.shutdown_pools();
    }

    #[test]
    fn query_params() {
        let req = http::Request::builder()
            .uri("/cpu?x=1&ms=20")
            .body(Body::empty())
            .unwrap();
        assert_eq!(query_param(&req, "ms"), Some("20"));
        assert_eq!(query_param(&req, "nope"), None);
    }
}
