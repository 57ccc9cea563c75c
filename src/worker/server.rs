//! The running worker: the I/O pool (tokio runtime), the worker pools, the gate, and the
//! HTTP/1.1 + h2c server that ties them to the app's routes.
//!
//! Path of a request: connection (hyper-util auto: h1 or h2c) → `/.roost/` endpoints
//! (ping, counters; never gated) → route lookup → gate (reject, queue, or start) → async
//! handler on the I/O pool, or sync handler on its worker pool → response body streams out
//! while the gate permit is held.
//!
//! Graceful stop (SIGTERM/SIGINT, or the `shutdown` future of [`Worker::serve`]):
//! 1. stop accepting and remove the Unix socket file; `/.roost/ping` answers 503;
//! 2. ask every connection to finish (HTTP/1 closes after the in-flight response, h2 sends
//!    GOAWAY) and wait for them, at most `shutdown_timeout`;
//! 3. stop the worker pools' idle threads; the process exits 0.

use super::app::{self, Handler, IoHandle, Request, Response, Router, SyncFn, WorkerBuilder};
use super::body::Body;
use super::busy::BusyRoutes;
use super::counters::{IoCounters, ThreadPoolCounters, ThreadSummary, WorkerCounters};
use super::drain::Drain;
use super::gate::{Gate, GateLimits, Kind, ThreadSlot};
use super::listen::{Listen, Listener, Stream};
use super::served::{self, handler_panicked, HeldBody};
use super::settings::{Settings, DEFAULT_POOL};
use super::threadpool::{RunError, ThreadPool};
use super::timer::{HeadWait, ResponseDone, WithHeaderTimeout};
use crate::error::Reason;
use futures_util::FutureExt;
use http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// A request being served, holding its gate [`Admission`] (see `served.rs`).
type Served = served::Served<Admission>;
/// A response and the admission its body holds.
type Answer = served::Answer<Admission>;

/// What a 503 ServerTooBusy tells the client to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a worker could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("route {prefix} names thread pool {pool:?}, which is not declared (--thread-pool {pool}=MIN:MAX)")]
    UnknownPool { prefix: String, pool: String },
    #[error("thread pool {name:?}: min {min} > max {max}")]
    PoolLimits {
        name: String,
        min: usize,
        max: usize,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// A built worker. Cheap to clone; every clone is the same worker.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    settings: Settings,
    router: Router,
    pools: BTreeMap<String, Arc<ThreadPool>>,
    /// Dedicated-pool routes, longest prefix first.
    pool_routes: Vec<(String, Arc<ThreadPool>)>,
    default_pool: Arc<ThreadPool>,
    gate: Arc<Gate>,
    /// Which route each busy worker-pool thread runs (`busy_routes` in the counters).
    busy: Arc<BusyRoutes>,
    started: Instant,
    stopping: AtomicBool,
    /// See [`WorkerBuilder::header_read_timeout`].
    header_read_timeout: Duration,
}

impl WorkerBuilder {
    /// Create the worker pools and the gate. Must run where a tokio runtime is current only
    /// if you then call [`Worker::serve`] on it; the pools are plain threads.
    pub fn build(self) -> Result<Worker, WorkerError> {
        let s = self.settings;
        let mut pools = BTreeMap::new();
        let default_pool = ThreadPool::new(s.pool_config(
            DEFAULT_POOL,
            s.min_worker_threads,
            s.max_worker_threads.max(1),
        ));
        pools.insert(DEFAULT_POOL.to_string(), default_pool.clone());
        for (name, l) in &s.thread_pools {
            if l.min > l.max {
                return Err(WorkerError::PoolLimits {
                    name: name.clone(),
                    min: l.min,
                    max: l.max,
                });
            }
            pools.insert(
                name.clone(),
                ThreadPool::new(s.pool_config(name, l.min, l.max.max(1))),
            );
        }
        let mut pool_routes = Vec::new();
        for (prefix, pool) in &s.routes {
            let p = pools.get(pool).ok_or_else(|| WorkerError::UnknownPool {
                prefix: prefix.clone(),
                pool: pool.clone(),
            })?;
            pool_routes.push((prefix.clone(), p.clone()));
        }
        pool_routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        let gate = Gate::new(GateLimits {
            request_queue_limit: s.request_queue_limit,
            max_executing: s.max_executing(),
            max_executing_threads: s.max_executing_threads(),
        });
        Ok(Worker {
            inner: Arc::new(Inner {
                name: self.name,
                settings: s,
                router: self.router,
                pools,
                pool_routes,
                default_pool,
                gate,
                busy: Arc::default(),
                started: Instant::now(),
                stopping: AtomicBool::new(false),
                header_read_timeout: self.header_read_timeout,
            }),
        })
    }

    /// Run the worker as a process does: build the I/O pool with `ioThreads` threads, bind
    /// `listen`, print `listening on ADDR` on stdout, serve until SIGTERM or SIGINT, then
    /// stop gracefully. Blocks the calling thread.
    pub fn run(self, listen: Listen) -> Result<(), WorkerError> {
        let io_threads = self.settings.io_threads.max(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(io_threads)
            .thread_name("roost-io")
            .enable_all()
            .build()
            .map_err(|source| WorkerError::Io {
                what: "starting the I/O pool".into(),
                source,
            })?;
        let worker = self.build()?;
        let served = rt.block_on(async {
            let listener = Listener::bind(&listen)
                .await
                .map_err(|source| WorkerError::Io {
                    what: format!("binding {listen}"),
                    source,
                })?;
            let local = listener.local().map_err(|source| WorkerError::Io {
                what: "reading the bound address".into(),
                source,
            })?;
            tracing::info!(app = %worker.inner.name, listen = %local, io_threads, "worker listening");
            // The one line on stdout: lets a person or a test learn the real port of tcp:…:0.
            // A closed stdout must not kill the worker, so no println!.
            let _ = writeln!(io::stdout(), "listening on {local}");
            let signals = shutdown_signal().map_err(|source| WorkerError::Io {
                what: "installing signal handlers".into(),
                source,
            })?;
            worker.serve(listener, signals).await;
            Ok::<(), WorkerError>(())
        });
        worker.shutdown_pools();
        // Handlers stuck past the shutdown timeout (such as /hang) must not keep us alive.
        rt.shutdown_timeout(Duration::from_millis(100));
        served
    }
}

/// Resolves on SIGTERM or SIGINT.
fn shutdown_signal() -> io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping gracefully"),
            _ = int.recv() => tracing::info!("SIGINT: stopping gracefully"),
        }
    })
}

impl Worker {
    /// Accept and serve connections until `shutdown` resolves, then stop gracefully (see
    /// the module docs). The listener is dropped (its socket file removed) before waiting.
    pub async fn serve(&self, listener: Listener, shutdown: impl Future<Output = ()>) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http2().timer(TokioTimer::new());
        // Off in hyper (it is only on with a timer; said here so it stays off): each
        // connection keeps its own (`timer`), which costs far less per request.
        builder.http1().header_read_timeout(None);
        let drain = Drain::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(Stream::Tcp(s)) => self.spawn_conn(&builder, &drain, s),
                    Ok(Stream::Unix(s)) => self.spawn_conn(&builder, &drain, s),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
        self.inner.stopping.store(true, Ordering::SeqCst);
        drop(listener);
        tracing::info!(connections = drain.count(), "draining connections");
        let limit = self.inner.settings.shutdown_timeout;
        if !drain.close(limit).await {
            tracing::warn!(?limit, "connections still open after the shutdown timeout");
        }
    }

    fn spawn_conn<I>(&self, builder: &auto::Builder<TokioExecutor>, drain: &Drain, io: I)
    where
        I: AsyncRead + AsyncWrite + AsRawFd + Unpin + Send + 'static,
    {
        // The connection's own reference to the worker: each request clones this one (its
        // count is touched by this connection's task only), not the worker's shared `Arc`,
        // whose count every request on every I/O thread would bounce between cores.
        let worker = Arc::new(self.clone());
        let fd = ConnFd(io.as_raw_fd());
        // The connection's header-read timeout (see `timer`): a request ends the wait for a
        // head, its response's body (when hyper drops it) starts the next one.
        let wait = HeadWait::new();
        let head_wait = wait.clone();
        // The response body is a `HeldBody` by value (not boxed again), and the request's
        // clone of the worker ends up in it, holding the gate admission. `Served` is the
        // service's future as it is (no `map` around it: a response is moved less).
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            head_wait.head_in(req.version());
            let served = worker.clone().start(req.map(Body::incoming), Some(fd));
            served.on_done(ResponseDone(head_wait.clone()))
        });
        let conn = builder.serve_connection(TokioIo::new(io), svc).into_owned();
        let timeout = self.inner.header_read_timeout;
        let conn = WithHeaderTimeout::new(conn, wait, timeout);
        tokio::spawn(drain.watch(conn, |c| c.conn().graceful_shutdown()));
    }

    /// Serve one request (the whole path after the connection). Public so an app can be
    /// tested in-process without sockets.
    pub async fn handle<B: Into<Body>>(&self, req: http::Request<B>) -> Response {
        let Ok(resp) = Arc::new(self.clone())
            .start(req.map(Into::into), None)
            .await;
        resp.map(HeldBody::into_body)
    }

    /// Start serving one request, as far as it goes without waiting: the route, the gate's
    /// way in when nobody waits, and the call of an async handler happen here, in hyper's
    /// `Service::call`. So a handler that does not keep its request has dropped it before
    /// hyper reads from the connection again: the request's head points into hyper's read
    /// buffer, and while it lives hyper must allocate a new buffer for the next read.
    /// `conn` is the socket of a request that came over one, watched while the request
    /// waits in the gate's queue.
    fn start(self: Arc<Self>, req: Request, conn: Option<ConnFd>) -> Served {
        let path = req.uri().path();
        if path.starts_with("/.roost/") {
            return Served::ready(self.internal(path));
        }
        let Some(index) = self.inner.router.find(path) else {
            return Served::ready(app::status(StatusCode::NOT_FOUND, "not found"));
        };
        let kind = match self.inner.router.route(index).1 {
            Handler::Async(_) => Kind::Async,
            Handler::Sync(_) => Kind::Thread,
        };
        match self.inner.gate.try_admit_at_once(kind) {
            Some(Ok(())) => Admission(self).call_async(index, req),
            Some(Err(reason)) => Served::ready(reason.response(RETRY_AFTER).map(Body::from)),
            // Someone waits, or a sync handler: the rest is a boxed future.
            None => Served::boxed(self.respond_admitted_later(req, index, kind, conn)),
        }
    }

    /// The way through the gate's queue (or the thread-slot check of a sync handler), then
    /// the handler.
    async fn respond_admitted_later(
        self: Arc<Self>,
        req: Request,
        index: usize,
        kind: Kind,
        conn: Option<ConnFd>,
    ) -> Answer {
        // Only a request whose body hyper holds back needs its client watched.
        let watch = conn.filter(|_| {
            use http_body::Body as _;
            !req.body().is_end_stream()
        });
        if let Err(reason) = admit(&self.inner.gate, kind, watch).await {
            return (reason.response(RETRY_AFTER).map(Body::from), None);
        }
        // From here on, dropping this future (the client left) ends the request.
        let held = Admission(self);
        match held.0.inner.router.route(index) {
            (_, Handler::Async(f)) => {
                // As `call_async` does, but awaited here, in the boxed future.
                let called = std::panic::catch_unwind(AssertUnwindSafe(|| f(req)));
                let resp = match called {
                    Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await.ok(),
                    Err(_) => None,
                };
                match resp {
                    Some(resp) => (resp, Some(held)),
                    None => {
                        // The admission ends here: a panicking handler ends its request.
                        tracing::error!("async handler panicked");
                        (handler_panicked(), None)
                    }
                }
            }
            (route, Handler::Sync(f)) => {
                let (route, f) = (route.clone(), f.clone());
                held.serve_sync(route, f, req).await
            }
        }
    }

    fn pool_for(&self, path: &str) -> &Arc<ThreadPool> {
        self.inner
            .pool_routes
            .iter()
            .find(|(prefix, _)| app::prefix_matches(prefix, path))
            .map(|(_, p)| p)
            .unwrap_or(&self.inner.default_pool)
    }

    fn internal(&self, path: &str) -> Response {
        match path {
            // A stopping worker is not healthy: nothing new should be sent to it.
            "/.roost/ping" if self.inner.stopping.load(Ordering::SeqCst) => {
                app::status(StatusCode::SERVICE_UNAVAILABLE, "stopping")
            }
            "/.roost/ping" => app::text("pong\n"),
            "/.roost/counters" => {
                app::json(&serde_json::to_value(self.counters()).unwrap_or_default())
            }
            "/.roost/metrics" => {
                let mut r = app::text(self.prometheus());
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(super::metrics::CONTENT_TYPE),
                );
                r
            }
            _ => app::status(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// The `/.roost/counters` document: `threads` (a summary: I/O threads, worker-pool
    /// threads in all pools, busy, queued work items), `io` (the I/O pool), `worker_pools`
    /// (each pool: threads, busy, goal, queue, completions, injections by reason), `gate`
    /// (requests current/queued/executing/rejected/completed and the request wait time).
    pub fn counters(&self) -> WorkerCounters {
        let i = &self.inner;
        let snaps: Vec<ThreadPoolCounters> = i.pools.values().map(|p| p.counters()).collect();
        let io = self.io_counters();
        WorkerCounters {
            pid: std::process::id(),
            app: i.name.clone(),
            pool: std::env::var("ROOST_POOL").ok(),
            worker_id: std::env::var("ROOST_WORKER_ID").ok(),
            uptime_seconds: i.started.elapsed().as_secs_f64(),
            cpus: i.settings.cpus,
            io_threads: io.threads,
            threads: ThreadSummary {
                io: io.threads,
                worker: snaps.iter().map(|c| c.threads).sum(),
                worker_busy: snaps.iter().map(|c| c.busy).sum(),
                work_items_queued: snaps.iter().map(|c| c.queued).sum(),
            },
            io,
            worker_pools: snaps.into_iter().map(|c| (c.name.clone(), c)).collect(),
            gate: i.gate.counters(),
            busy_routes: i.busy.snapshot(),
        }
    }

    /// The I/O pool as seen from its runtime (the one serving this worker, when called on
    /// it; otherwise the configured `ioThreads`).
    fn io_counters(&self) -> IoCounters {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                let m = h.metrics();
                IoCounters {
                    threads: m.num_workers(),
                    alive_tasks: Some(m.num_alive_tasks()),
                    global_queue_depth: Some(m.global_queue_depth()),
                }
            }
            Err(_) => IoCounters {
                threads: self.inner.settings.io_threads,
                alive_tasks: None,
                global_queue_depth: None,
            },
        }
    }

    /// The `/.roost/metrics` text.
    pub fn prometheus(&self) -> String {
        let i = &self.inner;
        let pool = std::env::var("ROOST_POOL").unwrap_or_else(|_| i.name.clone());
        super::metrics::render(super::metrics::Snapshot {
            pool,
            pid: std::process::id(),
            io_threads: self.io_counters().threads,
            gate: i.gate.counters(),
            thread_pools: i.pools.values().map(|p| p.counters()).collect(),
        })
    }

    pub fn gate(&self) -> &Arc<Gate> {
        &self.inner.gate
    }

    pub fn thread_pool(&self, name: &str) -> Option<&Arc<ThreadPool>> {
        self.inner.pools.get(name)
    }

    /// Let the worker pools' threads exit once their queues are empty.
    pub fn shutdown_pools(&self) {
        for p in self.inner.pools.values() {
            p.shutdown();
        }
    }
}

/// How often a queued request with an unread body checks that its client is still there.
const CLIENT_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The connection's socket, so a queued request can see its client leave.
#[derive(Clone, Copy, Debug)]
struct ConnFd(RawFd);

/// One request admitted by the gate. Dropping it ends the request for the gate (and lets
/// a queued one start). It owns the request's reference to the worker (the connection's,
/// see `spawn_conn`), so the admission costs no reference count of its own.
pub(super) struct Admission(Arc<Worker>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.inner.gate.leave(false);
    }
}

impl Admission {
    /// Call the async handler of route `index`; its future runs in place (see `served`).
    fn call_async(self, index: usize, req: Request) -> Served {
        let Handler::Async(f) = self.0.inner.router.route(index).1 else {
            unreachable!("route {index} was looked up as an async handler");
        };
        // A handler may panic before it returns its future, too.
        match std::panic::catch_unwind(AssertUnwindSafe(|| f(req))) {
            Ok(fut) => Served::running(fut, self),
            Err(_) => {
                tracing::error!("async handler panicked");
                Served::ready(handler_panicked())
            }
        }
    }

    /// Run a sync handler on its worker pool. The admission travels with the job, so a
    /// request whose client left still counts until its thread is really done with it;
    /// the thread slot goes back as soon as the handler returns.
    async fn serve_sync(self, route: Arc<str>, f: Arc<SyncFn>, mut req: Request) -> Answer {
        req.extensions_mut()
            .insert(IoHandle(tokio::runtime::Handle::current()));
        let inner = &self.0.inner;
        let pool = self.0.pool_for(req.uri().path()).clone();
        let thread = ThreadSlot::new(inner.gate.clone());
        let busy = inner.busy.clone();
        let job = move || {
            let running = busy.enter(route);
            let resp = f(req);
            drop(running);
            drop(thread);
            (resp, self)
        };
        match pool.run(job).await {
            Ok((resp, held)) => (resp, Some(held)),
            Err(RunError::Panicked(msg)) => {
                tracing::error!(panic = %msg, "sync handler panicked");
                (handler_panicked(), None)
            }
            Err(RunError::ShutDown) => (
                app::status(StatusCode::SERVICE_UNAVAILABLE, "stopping"),
                None,
            ),
        }
    }
}

/// Pass the gate; give up the place in line if the client goes away meanwhile.
///
/// hyper notices a closed connection by itself (and drops this future) except while it
/// waits for us to read a request body: then it reads nothing, so a queued POST would keep
/// its place after its client left. For those (`watch`: the connection of a request with
/// an unread body), the socket is checked every [`CLIENT_CHECK_INTERVAL`] for the peer
/// having closed (`POLLRDHUP`), without reading.
///
/// On `Ok` the caller holds an admission of `kind` (see [`Gate::admit`]).
async fn admit(gate: &Gate, kind: Kind, watch: Option<ConnFd>) -> Result<(), Reason> {
    let enter = gate.admit(kind);
    let mut enter = std::pin::pin!(enter);
    // Admitted at once (or refused): no watching needed.
    if let Some(admitted) = (&mut enter).now_or_never() {
        return admitted;
    }
    let Some(watch) = watch else {
        return enter.await;
    };
    let mut tick = tokio::time::interval(CLIENT_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            admitted = &mut enter => return admitted,
            _ = tick.tick() => {
                if peer_closed(watch.0) {
                    // Dropping `enter` (on return) removes us from the queue.
                    return Err(Reason::ClientGone);
                }
            }
        }
    }
}

/// The peer closed (or reset) the connection. Reads nothing, so unread request bytes stay
/// for hyper.
fn peer_closed(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `p` is a valid pollfd for the duration of the call, count 1, no timeout.
    // `fd` is open: the connection owning it outlives the request future calling this.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}
