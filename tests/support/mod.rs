//! Test fixtures: real backends on 127.0.0.1:0, a front started in-process from YAML,
//! and small real HTTP clients (HTTP/1.1, h2c, h2 over TLS).
#![allow(dead_code)]

pub mod origin;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

pub type BoxBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A real HTTP/1.1 backend with a few behaviours chosen by path:
/// `/slow?ms=N&id=X` waits, `/echo` streams the body back, `/big?n=N` streams N bytes,
/// `/headers` returns the request headers, `/ws` accepts an Upgrade and echoes bytes,
/// anything else answers `NAME PATH`.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    /// `id` query values in the order requests arrived.
    pub arrivals: Arc<Mutex<Vec<String>>>,
    pub active: Arc<AtomicUsize>,
    pub max_active: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

fn full(s: impl Into<Bytes>) -> BoxBody {
    Full::new(s.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let active = Arc::new(AtomicUsize::new(0));
        let max_active = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (n, a, act, mx, rq) = (
            name.to_string(),
            arrivals.clone(),
            active.clone(),
            max_active.clone(),
            requests.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (n, a, act, mx, rq) =
                    (n.clone(), a.clone(), act.clone(), mx.clone(), rq.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (n, a, act, mx, rq) =
                            (n.clone(), a.clone(), act.clone(), mx.clone(), rq.clone());
                        async move {
                            rq.fetch_add(1, Ordering::SeqCst);
                            if let Some(id) = query(&req, "id") {
                                a.lock().push(id);
                            }
                            let now = act.fetch_add(1, Ordering::SeqCst) + 1;
                            mx.fetch_max(now, Ordering::SeqCst);
                            let resp = backend_handle(&n, req).await;
                            act.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Backend {
            addr,
            name: name.to_string(),
            arrivals,
            active,
            max_active,
            requests,
            task,
        }
    }
}

async fn backend_handle(name: &str, mut req: Request<Incoming>) -> Response<BoxBody> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/slow" => {
            let ms: u64 = query(&req, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full(format!(
                "{name} slow {}",
                query(&req, "id").unwrap_or_default()
            )))
        }
        "/echo" => {
            let (_, body) = req.into_parts();
            Response::new(body.map_err(|e| Box::new(e) as _).boxed())
        }
        "/big" => {
            let n: usize = query(&req, "n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1 << 20);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::unfold(n, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let take = left.min(chunk.len());
                    Some((
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(
                            chunk.slice(..take),
                        )),
                        left - take,
                    ))
                }
            });
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
        }
        "/headers" => {
            let mut out = String::new();
            for (k, v) in req.headers() {
                out.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
            }
            Response::new(full(out))
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let (mut r, mut w) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(full(""))
                .unwrap()
        }
        _ => Response::new(full(format!("{name} {path}"))),
    }
}

/// A TCP port with nothing listening (bound, then closed).
pub async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// One site on `127.0.0.1:0` routing `/` to pool `p`: one farm server with `slots`;
/// `extra_pool` lines go into the pool, `extra_top` at the top level.
pub fn pool_yaml(server: &str, slots: usize, extra_pool: &str, extra_top: &str) -> String {
    format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: p}}]
pools:
  p:
{extra_pool}
    farm:
      servers:
        - {{address: "{server}", maxConcurrentRequests: {slots}}}
{extra_top}
"#
    )
}

/// [`pool_yaml`] with 100 slots and nothing else.
pub fn one_pool_yaml(server: &str) -> String {
    pool_yaml(server, 100, "", "")
}

/// A front started in-process; its first listener's bound address is `addr`.
pub struct TestFront {
    pub front: Arc<roost::front::Front>,
    pub addr: SocketAddr,
}

impl TestFront {
    pub async fn start(yaml: &str) -> TestFront {
        let cfg =
            roost::config::load_str(yaml, "test.yaml").unwrap_or_else(|e| panic!("config: {e}"));
        let front = roost::front::Front::start(cfg, vec![])
            .await
            .expect("front starts");
        let addr = front.bound_addresses()[0].1;
        TestFront { front, addr }
    }

    /// [`TestFront::start`] on `n` front threads of its own, as `roost serve` runs it.
    pub async fn start_threaded(yaml: &str, n: usize) -> TestFront {
        let cfg =
            roost::config::load_str(yaml, "test.yaml").unwrap_or_else(|e| panic!("config: {e}"));
        let threads = roost::runtime::Threads::spawn(n).expect("front threads");
        let front = roost::front::Front::start_on(cfg, vec![], threads)
            .await
            .expect("front starts");
        let addr = front.bound_addresses()[0].1;
        TestFront { front, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// One HTTP/1.1 connection to `addr`.
pub async fn h1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<BoxBody> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    tx
}

/// GET over a fresh HTTP/1.1 connection; returns status, the reason header and the body.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, Option<String>, String) {
    let mut tx = h1(addr).await;
    let req = Request::get(path)
        .header("host", host)
        .body(full(""))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    read(resp).await
}

pub async fn read(resp: Response<Incoming>) -> (StatusCode, Option<String>, String) {
    let status = resp.status();
    let reason = resp
        .headers()
        .get("x-roost-reason")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, reason, String::from_utf8_lossy(&body).into_owned())
}

pub fn empty() -> BoxBody {
    full("")
}

pub fn body(s: impl Into<Bytes>) -> BoxBody {
    full(s)
}

/// h2c (prior knowledge) client.
pub async fn h2c(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<BoxBody> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    tx
}

/// Poll `f` until it is true or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f()
}

/// Resident memory of this process in KiB.
pub fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A front (and, for a garden, the supervisor that runs its workers) with an admin
/// server beside it, as `roost serve` assembles them; `dir` holds the workers' sockets.
pub struct Served {
    pub front: Arc<roost::front::Front>,
    pub sup: Option<Arc<roost::supervisor::Supervisor>>,
    pub admin: roost::admin::Admin,
    pub addr: SocketAddr,
}

pub async fn serve_with_admin(
    yaml: &str,
    garden: bool,
    token: Option<&str>,
    dir: &std::path::Path,
    sample_every: Duration,
) -> Served {
    init_tracing();
    let cfg = roost::config::load_str(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
    let sup = garden.then(|| {
        roost::supervisor::Supervisor::new(roost::supervisor::SupervisorOptions {
            roost_exe: env!("CARGO_BIN_EXE_roost").into(),
            runtime_dir: Some(dir.join("run")),
        })
    });
    let hooks: Vec<Arc<dyn roost::front::PoolHooks>> = sup
        .iter()
        .map(|s| s.clone() as Arc<dyn roost::front::PoolHooks>)
        .collect();
    let front = roost::front::Front::start(cfg, hooks)
        .await
        .expect("front starts");
    let addr = front.bound_addresses()[0].1;
    let admin_cfg = roost::config::model::Admin {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(String::from),
        public: None,
    };
    let ctx = roost::admin::AdminContext {
        front: front.clone(),
        supervisor: sup.clone(),
        reload: None,
    };
    let admin = roost::admin::Admin::start_with_interval(&admin_cfg, ctx, sample_every)
        .await
        .expect("admin starts");
    Served {
        front,
        sup,
        admin,
        addr,
    }
}
