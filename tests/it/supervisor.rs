//! Supervisor integration tests: real worker processes, real sockets, the real pool.
//!
//! Workers are the real `roost worker` (the default command), a small Python app that
//! speaks the handshake and echoes its environment (for what only a custom command can
//! show: `env`, a command that fails to start), and stock `python3 -m http.server` as
//! "any HTTP app" on a TCP port.

use http_body_util::BodyExt;
use roost::config::model::{
    self, Backend, Failure, LoadBalancerCapabilities, ProcessModel, Recycling, StartMode,
    UpstreamTimeouts, WorkerListen, WorkerSettings,
};
use roost::pool::{PickKey, Pool, PoolState};
use roost::supervisor::{Supervisor, SupervisorOptions};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A worker stand-in: the handshake and the built-in worker's test endpoints.
const APP: &str = r#"
import os, sys, time, socket, socketserver, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlparse, parse_qs
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def address_string(self): return "local"
    def reply(self, code, body):
        b = body.encode()
        self.send_response(code)
        self.send_header("content-length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
        self.wfile.flush()
    def do_GET(self):
        u = urlparse(self.path)
        if u.path == "/.roost/ping": self.reply(200, "pong")
        elif u.path == "/pid": self.reply(200, str(os.getpid()))
        elif u.path == "/env": self.reply(200, os.environ.get(parse_qs(u.query)["name"][0], ""))
        elif u.path == "/sleep":
            time.sleep(int(parse_qs(u.query).get("ms", ["0"])[0]) / 1000.0)
            self.reply(200, str(os.getpid()))
        elif u.path == "/crash":
            self.reply(200, "bye")
            os._exit(1)
        else: self.reply(404, "no")
class U(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
class T(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
if os.environ.get("REQUIRE_FILE") and not os.path.exists(os.environ["REQUIRE_FILE"]):
    sys.exit(1)
print("stand-in worker", os.environ["ROOST_WORKER_ID"], "for", os.environ["ROOST_POOL"], flush=True)
kind, addr = os.environ["ROOST_LISTEN"].split(":", 1)
if kind == "unix":
    s = U(addr, H)
else:
    host, port = addr.rsplit(":", 1)
    assert port == os.environ["PORT"]
    s = T((host, int(port)), H)
s.serve_forever()
"#;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "roost=info".into()),
        )
        .with_test_writer()
        .try_init();
}

fn standin() -> ProcessModel {
    ProcessModel {
        command: Some("python3".into()),
        args: vec!["-c".into(), APP.into()],
        env: BTreeMap::new(),
        working_directory: None,
        max_processes: 1,
        max_concurrent_requests_per_process: 16,
        listen: WorkerListen::Unix,
        idle_timeout: Duration::ZERO,
        pinging_enabled: true,
        ping_interval: Duration::from_millis(200),
        ping_response_time: Duration::from_secs(3),
        ping_path: Some("/.roost/ping".into()),
        startup_time_limit: Duration::from_secs(20),
        shutdown_time_limit: Duration::from_secs(5),
        user: None,
        group: None,
        worker: WorkerSettings {
            app: "demo".into(),
            min_worker_threads: None,
            max_worker_threads: None,
            io_threads: None,
            request_queue_limit: 5000,
            max_concurrent_requests_per_cpu: 5000,
            max_concurrent_threads_per_cpu: 0,
            pools: BTreeMap::new(),
            routes: BTreeMap::new(),
            blocking_detection: true,
            blocking_detection_interval: Duration::from_millis(50),
        },
    }
}

/// The built-in `roost worker --app demo` (pingPath defaults to `/.roost/ping`).
fn builtin() -> ProcessModel {
    let mut pm = standin();
    pm.command = None;
    pm.args = vec![];
    pm.ping_path = None;
    pm
}

fn pool_cfg(name: &str, pm: ProcessModel) -> model::Pool {
    model::Pool {
        name: name.into(),
        queue_length: 1000,
        queue_timeout: Duration::from_secs(20),
        start_mode: StartMode::AlwaysRunning,
        backend: Backend::Garden(pm),
        recycling: Recycling {
            disallow_overlapping_rotation: false,
            time: Duration::ZERO,
            requests: 0,
            private_memory_kib: 0,
            schedule: vec![],
        },
        failure: Failure {
            rapid_fail_protection: true,
            rapid_fail_protection_interval: Duration::from_secs(60),
            rapid_fail_protection_max_crashes: 5,
            load_balancer_capabilities: LoadBalancerCapabilities::HttpLevel,
        },
        retry_after: Duration::from_secs(1),
        timeouts: UpstreamTimeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(10),
            idle: Duration::from_secs(30),
        },
        initialization_pages: vec![],
        queue: Default::default(),
        cache: None,
        ordering: None,
    }
}

struct Harness {
    sup: Arc<Supervisor>,
    pool: Arc<Pool>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new(cfg: &model::Pool) -> Harness {
        init_tracing();
        let dir = tempfile::Builder::new()
            .prefix("rs")
            .tempdir_in("/tmp")
            .unwrap();
        let sup = Supervisor::new(SupervisorOptions {
            roost_exe: env!("CARGO_BIN_EXE_roost").into(),
            runtime_dir: Some(dir.path().join("run")),
        });
        let pool = Pool::new(cfg);
        sup.manage(pool.clone(), cfg);
        Harness {
            sup,
            pool,
            _dir: dir,
        }
    }

    fn pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.pool.members().iter().filter_map(|m| m.pid).collect();
        v.sort_unstable();
        v
    }
}

/// Poll `cond` until it holds; panics with `what` after `limit`.
async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request the way the front sends it: acquire a slot, send through the member.
async fn get(pool: &Arc<Pool>, path: &str) -> Result<(u16, String), String> {
    let mut lease = pool
        .acquire(&PickKey::default())
        .await
        .map_err(|r| format!("{r:?}"))?;
    let req = http::Request::get(path)
        .header("host", "test")
        .body(roost::body::empty())
        .unwrap();
    let resp = lease
        .member()
        .client
        .send(req)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    // Counted as served (what request-based recycling reads) only when completed.
    lease.complete();
    drop(lease);
    Ok((status, String::from_utf8_lossy(&body).trim().to_string()))
}

fn local_seconds_of_day() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as libc::time_t;
    // SAFETY: localtime_r only writes the tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    assert!(!unsafe { libc::localtime_r(&now, &mut tm) }.is_null());
    (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec.min(59)) as u32
}

fn alive(pid: u32) -> bool {
    // Signal 0: does the process exist (and is it not a reaped zombie)?
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

async fn with_timeout<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test took too long")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_running_starts_a_garden_whose_workers_become_members() {
    with_timeout(async {
        let mut pm = builtin();
        pm.max_processes = 2;
        let cfg = pool_cfg("garden", pm);
        let h = Harness::new(&cfg);
        wait_for("2 members", Duration::from_secs(20), || {
            h.pool.members().len() == 2
        })
        .await;
        let pids = h.pids();
        assert_ne!(pids[0], pids[1]);
        // Requests reach a member whose pid is the one it was registered with.
        for _ in 0..4 {
            let (status, body) = get(&h.pool, "/pid").await.unwrap();
            assert_eq!(status, 200);
            assert!(
                pids.contains(&body.parse().unwrap()),
                "{body} not in {pids:?}"
            );
        }
        // The sockets live in a private directory.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(h.sup.runtime_dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);

        let st = h.sup.status("garden").unwrap();
        assert_eq!(st.state, "Started");
        assert_eq!(st.workers.len(), 2);
        assert!(st.workers.iter().all(|w| w.state == "running"));
        assert_eq!(st.worker_starts_total, 2);
        wait_for("memory sampled", Duration::from_secs(10), || {
            let st = h.sup.status("garden").unwrap();
            st.workers
                .iter()
                .all(|w| w.memory_kib.is_some_and(|k| k > 100))
        })
        .await;
        assert!(serde_json::to_string(&st).unwrap().contains("\"workers\""));

        h.sup.shutdown().await;
        assert!(h.pool.members().is_empty());
        for p in pids {
            wait_for("worker process gone", Duration::from_secs(5), || !alive(p)).await;
        }
        assert!(h.sup.status("garden").is_none());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_environment_reaches_any_command() {
    with_timeout(async {
        let mut pm = standin();
        pm.env.insert("GREETING".into(), "hello".into());
        // A configured value cannot override the handshake.
        pm.env.insert("ROOST_POOL".into(), "spoofed".into());
        let h = Harness::new(&pool_cfg("envy", pm));
        wait_for("a member", Duration::from_secs(20), || {
            h.pool.members().len() == 1
        })
        .await;
        let env = |name: &'static str| {
            let pool = h.pool.clone();
            async move { get(&pool, &format!("/env?name={name}")).await.unwrap().1 }
        };
        assert_eq!(env("GREETING").await, "hello");
        assert_eq!(env("ROOST_POOL").await, "envy");
        assert_eq!(env("ROOST_WORKER_ID").await, "1");
        let listen = env("ROOST_LISTEN").await;
        let path = listen.strip_prefix("unix:").expect(&listen).to_string();
        assert!(
            std::path::Path::new(&path).starts_with(h.sup.runtime_dir()),
            "{path}"
        );
        assert_eq!(env("PORT").await, "");
        h.sup.shutdown().await;
        assert!(!std::path::Path::new(&path).exists(), "socket left behind");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_starts_when_the_first_request_waits() {
    with_timeout(async {
        let mut cfg = pool_cfg("lazy", builtin());
        cfg.start_mode = StartMode::OnDemand;
        let h = Harness::new(&cfg);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(h.pool.members().is_empty());
        assert!(h.sup.status("lazy").unwrap().workers.is_empty());
        // The first request waits in the pool queue while its worker starts.
        let (status, body) = get(&h.pool, "/pid").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(h.pids(), vec![body.parse::<u32>().unwrap()]);
        assert_eq!(h.sup.status("lazy").unwrap().worker_starts_total, 1);
        h.sup.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_removed_and_replaced() {
    with_timeout(async {
        let mut pm = builtin();
        pm.max_processes = 2;
        let h = Harness::new(&pool_cfg("phoenix", pm));
        wait_for("2 members", Duration::from_secs(20), || {
            h.pool.members().len() == 2
        })
        .await;
        let before = h.pids();
        let victim = before[0];
        let killed_at = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_for("victim removed", Duration::from_secs(5), || {
            !h.pids().contains(&victim)
        })
        .await;
        let removed_in = killed_at.elapsed();
        wait_for("replacement ready", Duration::from_secs(20), || {
            h.pool.members().len() == 2
        })
        .await;
        eprintln!(
            "SIGKILL → removed from the pool in {removed_in:?}, replacement ready in {:?}",
            killed_at.elapsed()
        );
        let after = h.pids();
        assert!(after.contains(&before[1]));
        assert!(!after.contains(&victim));
        let st = h.sup.status("phoenix").unwrap();
        assert_eq!(st.worker_failures_total.get("crash"), Some(&1));
        assert_eq!(st.worker_starts_total, 3);
        assert_eq!(st.last_failures.last().unwrap().kind, "crash");
        // A worker that exits after answering is detected the same way.
        let (_, body) = get(&h.pool, "/crash").await.unwrap();
        assert_eq!(body, "crashing");
        wait_for("second crash counted", Duration::from_secs(5), || {
            h.sup
                .status("phoenix")
                .unwrap()
                .worker_failures_total
                .get("crash")
                == Some(&2)
        })
        .await;
        wait_for("replaced again", Duration::from_secs(20), || {
            h.pool.members().len() == 2
        })
        .await;
        h.sup.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_fail_takes_the_pool_offline_until_started() {
    with_timeout(async {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("healthy");
        let mut pm = standin();
        pm.env
            .insert("REQUIRE_FILE".into(), flag.display().to_string());
        let mut cfg = pool_cfg("fragile", pm);
        cfg.failure.rapid_fail_protection_max_crashes = 3;
        let h = Harness::new(&cfg);
        wait_for("AppOffline", Duration::from_secs(20), || {
            h.pool.state() == PoolState::AppOffline
        })
        .await;
        let st = h.sup.status("fragile").unwrap();
        assert_eq!(st.state, "AppOffline");
        assert_eq!(st.worker_failures_total.get("startup"), Some(&3));
        assert_eq!(st.worker_starts_total, 3);
        // It stays offline: no more starts.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(h.sup.status("fragile").unwrap().worker_starts_total, 3);
        assert!(h.pool.members().is_empty());
        assert!(h.sup.recycle("fragile").is_err());

        std::fs::write(&flag, b"ok").unwrap();
        h.sup.start_pool("fragile").unwrap();
        assert_eq!(h.pool.state(), PoolState::Started);
        wait_for("a member after start", Duration::from_secs(20), || {
            h.pool.members().len() == 1
        })
        .await;
        assert_eq!(get(&h.pool, "/.roost/ping").await.unwrap().0, 200);
        h.sup.shutdown().await;
    })
    .await
}

/// Per load client: requests that succeeded, failed, and the failures.
type LoadResult = (u64, u64, Vec<String>);
type LoadTasks = Vec<tokio::task::JoinHandle<LoadResult>>;

/// Drive steady requests through the pool until told to stop; count results.
fn load(pool: Arc<Pool>, clients: usize, path: &'static str) -> (Arc<AtomicBool>, LoadTasks) {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..clients)
        .map(|_| {
            let (pool, stop) = (pool.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed, mut errors) = (0u64, 0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match get(&pool, path).await {
                        Ok((200, _)) => ok += 1,
                        Ok((s, b)) => {
                            failed += 1;
                            errors.push(format!("{s} {b}"));
                        }
                        Err(e) => {
                            failed += 1;
                            errors.push(e);
                        }
                    }
                }
                (ok, failed, errors)
            })
        })
        .collect();
    (stop, tasks)
}

async fn finish(stop: Arc<AtomicBool>, tasks: LoadTasks) -> (u64, u64, Vec<String>) {
    stop.store(true, Ordering::Relaxed);
    let mut total = (0, 0, Vec::new());
    for t in tasks {
        let (ok, failed, errors) = t.await.unwrap();
        total.0 += ok;
        total.1 += failed;
        total.2.extend(errors);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapped_recycle_under_load_fails_no_request() {
    with_timeout(async {
        let h = Harness::new(&pool_cfg("smooth", builtin()));
        wait_for("a member", Duration::from_secs(20), || {
            h.pool.members().len() == 1
        })
        .await;
        let old = h.pids()[0];
        let (stop, tasks) = load(h.pool.clone(), 4, "/sleep?ms=20");
        let served = Arc::new(AtomicU64::new(0));
        wait_for("some load", Duration::from_secs(10), || {
            let s = h.pool.members().first().map(|m| m.served()).unwrap_or(0);
            served.store(s, Ordering::Relaxed);
            s >= 20
        })
        .await;
        // A slow request in flight on the old worker must finish, not be cut off.
        let old_member = h.pool.members()[0].clone();
        let slow = {
            let pool = h.pool.clone();
            tokio::spawn(async move { get(&pool, "/sleep?ms=1500").await })
        };
        wait_for("slow request running", Duration::from_secs(10), || {
            old_member.active() >= 1
        })
        .await;
        h.sup.recycle("smooth").unwrap();
        wait_for("new pid serving alone", Duration::from_secs(20), || {
            let p = h.pids();
            p.len() == 1 && p[0] != old
        })
        .await;
        wait_for("old process gone", Duration::from_secs(10), || !alive(old)).await;
        // Some requests on the new worker too.
        let new_member = h.pool.members()[0].clone();
        wait_for("load on the new worker", Duration::from_secs(10), || {
            new_member.served() >= 20
        })
        .await;
        let (ok, failed, errors) = finish(stop, tasks).await;
        assert_eq!(failed, 0, "failed requests: {errors:?}");
        assert_eq!(slow.await.unwrap().unwrap().0, 200);
        assert!(ok >= 40, "only {ok} requests");
        let st = h.sup.status("smooth").unwrap();
        assert_eq!(st.recycles_total.get("manual"), Some(&1));
        assert!(
            st.worker_failures_total.is_empty(),
            "{:?}",
            st.worker_failures_total
        );
        eprintln!("overlapped recycle: {ok} requests, 0 failed");
        h.sup.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_based_recycle_replaces_the_worker() {
    with_timeout(async {
        let mut cfg = pool_cfg("counted", builtin());
        cfg.recycling.requests = 5;
        let h = Harness::new(&cfg);
        wait_for("a member", Duration::from_secs(20), || {
            h.pool.members().len() == 1
        })
        .await;
        let first = h.pids()[0];
        for _ in 0..5 {
            assert_eq!(get(&h.pool, "/pid").await.unwrap().1, first.to_string());
        }
        wait_for("recycled", Duration::from_secs(20), || {
            let p = h.pids();
            p.len() == 1 && p[0] != first
        })
        .await;
        let st = h.sup.status("counted").unwrap();
        assert_eq!(st.recycles_total.get("requests"), Some(&1));
        assert_eq!(st.recycle_history[0].reason, "requests");
        let (_, body) = get(&h.pool, "/pid").await.unwrap();
        assert_ne!(body, first.to_string());
        h.sup.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_stops_workers_and_demand_restarts_them() {
    with_timeout(async {
        let mut pm = builtin();
        pm.idle_timeout = Duration::from_millis(600);
        let mut cfg = pool_cfg("sleepy", pm);
        cfg.start_mode = StartMode::OnDemand;
        let h = Harness::new(&cfg);
        let (_, body) = get(&h.pool, "/pid").await.unwrap();
        let pid: u32 = body.parse().unwrap();
        wait_for("idle stop", Duration::from_secs(10), || {
            h.pool.members().is_empty() && h.sup.status("sleepy").unwrap().workers.is_empty()
        })
        .await;
        wait_for("process gone", Duration::from_secs(5), || !alive(pid)).await;
        let st = h.sup.status("sleepy").unwrap();
        assert!(
            st.worker_failures_total.is_empty(),
            "{:?}",
            st.worker_failures_total
        );
        // The next request starts a new worker.
        let (_, body) = get(&h.pool, "/pid").await.unwrap();
        assert_ne!(body, pid.to_string());
        assert!(h.sup.status("sleepy").unwrap().worker_starts_total >= 2);
        h.sup.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_tcp_app_with_a_ping_path() {
    with_timeout(async {
        let site = tempfile::tempdir().unwrap();
        std::fs::write(site.path().join("hello.txt"), b"hi from disk").unwrap();
        let mut pm = standin();
        // Stock Python static file server: knows nothing of roost beyond $PORT.
        pm.command = Some("sh".into());
        pm.args = vec![
            "-c".into(),
            "exec python3 -m http.server --bind 127.0.0.1 \"$PORT\"".into(),
        ];
        pm.working_directory = Some(site.path().to_path_buf());
        pm.listen = WorkerListen::Tcp;
        pm.ping_path = Some("/hello.txt".into());
        let mut cfg = pool_cfg("static", pm);
        cfg.initialization_pages = vec!["/".into()];
        let h = Harness::new(&cfg);
        wait_for("a member", Duration::from_secs(20), || {
            h.pool.members().len() == 1
        })
        .await;
        let (status, body) = get(&h.pool, "/hello.txt").await.unwrap();
        assert_eq!((status, body.as_str()), (200, "hi from disk"));
        // A few pings later it is still the same healthy worker.
        let pid = h.pids()[0];
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(h.pids(), vec![pid]);
        assert!(h
            .sup
            .status("static")
            .unwrap()
            .worker_failures_total
            .is_empty());
        h.sup.shutdown().await;
        wait_for("process gone", Duration::from_secs(5), || !alive(pid)).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_answering_pings_is_replaced() {
    with_timeout(async {
        let mut pm = builtin();
        pm.ping_response_time = Duration::from_millis(400);
        let h = Harness::new(&pool_cfg("frozen", pm));
        wait_for("a member", Duration::from_secs(20), || {
            h.pool.members().len() == 1
        })
        .await;
        let pid = h.pids()[0];
        // Frozen, not dead: only the ping can notice.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .unwrap();
        wait_for("replaced", Duration::from_secs(20), || {
            let p = h.pids();
            p.len() == 1 && p[0] != pid
        })
        .await;
        wait_for("frozen one killed", Duration::from_secs(5), || !alive(pid)).await;
        let st = h.sup.status("frozen").unwrap();
        assert_eq!(st.worker_failures_total.get("ping"), Some(&1));
        h.sup.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_pool_disables_it_and_start_pool_brings_workers_back() {
    with_timeout(async {
        let h = Harness::new(&pool_cfg("switch", builtin()));
        wait_for("a member", Duration::from_secs(20), || {
            h.pool.members().len() == 1
        })
        .await;
        let pid = h.pids()[0];
        h.sup.stop_pool("switch").unwrap();
        assert_eq!(h.pool.state(), PoolState::Stopped);
        wait_for("stopped", Duration::from_secs(10), || {
            h.sup.status("switch").unwrap().workers.is_empty()
        })
        .await;
        assert!(!alive(pid));
        assert!(get(&h.pool, "/pid").await.unwrap_err().contains("Disabled"));
        h.sup.start_pool("switch").unwrap();
        wait_for("a member again", Duration::from_secs(20), || {
            h.pool.members().len() == 1
        })
        .await;
        assert!(h.sup.start_pool("nope").is_err());
        // The supervisor also follows a state set on the pool directly.
        let pid = h.pids()[0];
        h.pool.set_state(PoolState::Stopped);
        wait_for("stopped by pool state", Duration::from_secs(10), || {
            h.sup.status("switch").unwrap().workers.is_empty()
        })
        .await;
        assert!(!alive(pid));
        h.pool.set_state(PoolState::Started);
        wait_for("started by pool state", Duration::from_secs(20), || {
            h.pool.members().len() == 1
        })
        .await;
        h.sup.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garden_recycles_one_worker_at_a_time_and_config_change_recycles() {
    with_timeout(async {
        let mut pm = standin();
        pm.max_processes = 2;
        let cfg = pool_cfg("staggered", pm);
        let h = Harness::new(&cfg);
        wait_for("2 members", Duration::from_secs(20), || {
            h.pool.members().len() == 2
        })
        .await;
        let before = h.pids();
        // A changed environment is a changed process model: every worker is recycled.
        let mut cfg2 = cfg.clone();
        if let Backend::Garden(pm) = &mut cfg2.backend {
            pm.env.insert("VERSION".into(), "2".into());
        }
        let (stop, tasks) = load(h.pool.clone(), 3, "/pid");
        h.sup.reconfigure(h.pool.clone(), &cfg2);
        let mut max_out = 0;
        wait_for("both replaced", Duration::from_secs(30), || {
            let st = h.sup.status("staggered").unwrap();
            let out = st
                .workers
                .iter()
                .filter(|w| w.state != "running" && w.state != "starting")
                .count();
            max_out = max_out.max(out);
            // Never fewer than one member while rotating.
            assert!(!h.pool.members().is_empty(), "garden lost all members");
            let p = h.pids();
            p.len() == 2 && !p.contains(&before[0]) && !p.contains(&before[1])
        })
        .await;
        assert!(max_out <= 1, "{max_out} workers rotating at once");
        let (ok, failed, errors) = finish(stop, tasks).await;
        assert_eq!(failed, 0, "failed requests: {errors:?}");
        eprintln!("garden config-change rotation: {ok} requests, 0 failed");
        assert_eq!(get(&h.pool, "/env?name=VERSION").await.unwrap().1, "2");
        let st = h.sup.status("staggered").unwrap();
        assert_eq!(st.recycles_total.get("configChange"), Some(&2));
        // Queue settings alone restart nothing.
        let mut cfg3 = cfg2.clone();
        cfg3.queue_length = 10;
        h.sup.reconfigure(h.pool.clone(), &cfg3);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            h.sup
                .status("staggered")
                .unwrap()
                .recycles_total
                .get("configChange"),
            Some(&2)
        );
        h.sup.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_hooks_manage_readd_and_release_pools() {
    use roost::front::PoolHooks;
    with_timeout(async {
        init_tracing();
        let dir = tempfile::Builder::new()
            .prefix("rs")
            .tempdir_in("/tmp")
            .unwrap();
        let sup = Supervisor::new(SupervisorOptions {
            roost_exe: env!("CARGO_BIN_EXE_roost").into(),
            runtime_dir: Some(dir.path().join("run")),
        });
        let hooks: Arc<dyn PoolHooks> = sup.clone();
        let cfg = pool_cfg("hooked", builtin());
        let pool = Pool::new(&cfg);
        hooks.pool_added(&pool, &cfg, None);
        wait_for("a member", Duration::from_secs(20), || {
            pool.members().len() == 1
        })
        .await;
        let first = pool.members()[0].pid.unwrap();

        // Removed, then added again (a reload that drops and restores it) while the old
        // worker may still be stopping: the new worker gets its own socket.
        hooks.pool_removed(&pool);
        assert!(sup.status("hooked").is_none());
        let pool2 = Pool::new(&cfg);
        hooks.pool_added(&pool2, &cfg, None);
        wait_for("a new member", Duration::from_secs(20), || {
            pool2.members().len() == 1
        })
        .await;
        let (status, body) = get(&pool2, "/pid").await.unwrap();
        assert_eq!(status, 200);
        assert_ne!(body, first.to_string());
        // Reaped first, then taken out of its (old) pool.
        wait_for("old worker gone", Duration::from_secs(10), || {
            !alive(first) && pool.members().is_empty()
        })
        .await;
        // Still served after the old worker's exit cleaned up after itself.
        assert_eq!(get(&pool2, "/pid").await.unwrap().1, body);

        // A pool that becomes a farm is let go.
        let mut farm = cfg.clone();
        farm.backend = Backend::Farm(model::Farm {
            servers: vec![],
            load_balancing: model::LoadBalancing::RoundRobin,
            health_check: None,
            affinity: None,
            outlier_detection: None,
            slow_start: Duration::ZERO,
            retries: Default::default(),
            tls: Default::default(),
            discovery: None,
        });
        hooks.pool_added(&pool2, &farm, Some(&cfg));
        assert!(sup.status("hooked").is_none());
        let second: u32 = body.parse().unwrap();
        // shutdown waits for released pools' workers too.
        sup.shutdown().await;
        assert!(!alive(second));
        assert!(pool2.members().is_empty());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_private_memory_and_schedule_recycle() {
    with_timeout(async {
        let mut by_time = pool_cfg("aged", builtin());
        by_time.recycling.time = Duration::from_millis(700);
        let mut by_memory = pool_cfg("fat", builtin());
        // Any real process has more than 1 KiB of private memory.
        by_memory.recycling.private_memory_kib = 1;
        let a = Harness::new(&by_time);
        let b = Harness::new(&by_memory);
        let mut by_schedule = pool_cfg("nightly", builtin());
        let c = Harness::new(&by_schedule);
        wait_for("a member", Duration::from_secs(20), || {
            c.pool.members().len() == 1
        })
        .await;
        // Once it runs: recycle at a time of day two seconds from now (local clock, as
        // the schedule is). A recycling change alone restarts nothing by itself.
        by_schedule.recycling.schedule = vec![(local_seconds_of_day() + 2) % 86_400];
        c.sup.reconfigure(c.pool.clone(), &by_schedule);
        for (h, name, reason) in [
            (&a, "aged", "time"),
            (&b, "fat", "privateMemory"),
            (&c, "nightly", "schedule"),
        ] {
            // The first worker (id and pid from the status) was recycled for `reason`,
            // and a replacement serves in its place. Nothing here depends on how soon
            // the test looks: the recycle may well have happened already.
            wait_for(reason, Duration::from_secs(20), || {
                let st = h.sup.status(name).unwrap();
                let Some(rec) = st.recycle_history.iter().find(|r| r.reason == reason) else {
                    return false;
                };
                let members = h.pool.members();
                members.len() == 1
                    && st.workers.iter().all(|w| w.id != rec.worker)
                    && st
                        .workers
                        .iter()
                        .any(|w| w.pid == members[0].pid && w.id > rec.worker)
            })
            .await;
            let st = h.sup.status(name).unwrap();
            assert!(
                st.worker_failures_total.is_empty(),
                "{:?}",
                st.worker_failures_total
            );
        }
        a.sup.shutdown().await;
        b.sup.shutdown().await;
        c.sup.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_overlap_stops_the_old_worker_before_starting_the_new() {
    with_timeout(async {
        let mut cfg = pool_cfg("serial", builtin());
        cfg.recycling.disallow_overlapping_rotation = true;
        let h = Harness::new(&cfg);
        wait_for("a member", Duration::from_secs(20), || {
            h.pool.members().len() == 1
        })
        .await;
        let old = h.pids()[0];
        h.sup.recycle("serial").unwrap();
        let mut overlapped = false;
        wait_for("replaced", Duration::from_secs(20), || {
            let st = h.sup.status("serial").unwrap();
            // Never a new worker while the old one is still there.
            if st.workers.len() > 1 {
                overlapped = true;
            }
            let p = h.pids();
            p.len() == 1 && p[0] != old
        })
        .await;
        assert!(!overlapped, "old and new worker ran at the same time");
        assert!(!alive(old));
        // Requests meanwhile waited in the queue instead of failing.
        assert_eq!(get(&h.pool, "/.roost/ping").await.unwrap().0, 200);
        h.sup.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_not_ready_within_the_startup_limit_is_killed_and_counted() {
    with_timeout(async {
        let mut pm = standin();
        // Runs, but never listens.
        pm.command = Some("sleep".into());
        pm.args = vec!["30".into()];
        pm.listen = WorkerListen::Tcp;
        pm.ping_path = None;
        pm.startup_time_limit = Duration::from_millis(400);
        let mut cfg = pool_cfg("sluggish", pm);
        cfg.failure.rapid_fail_protection_max_crashes = 2;
        let h = Harness::new(&cfg);
        let mut pids = std::collections::HashSet::new();
        wait_for("AppOffline", Duration::from_secs(20), || {
            if let Some(st) = h.sup.status("sluggish") {
                pids.extend(st.workers.iter().filter_map(|w| w.pid));
            }
            h.pool.state() == PoolState::AppOffline
        })
        .await;
        let st = h.sup.status("sluggish").unwrap();
        assert_eq!(st.worker_failures_total.get("startup"), Some(&2));
        assert!(
            st.last_failures[0].detail.contains("startupTimeLimit"),
            "{:?}",
            st.last_failures
        );
        wait_for("workers gone", Duration::from_secs(10), || {
            h.sup.status("sluggish").unwrap().workers.is_empty()
        })
        .await;
        for p in pids {
            assert!(!alive(p), "pid {p} still running");
        }
        // While offline, requests are refused at once.
        assert!(get(&h.pool, "/").await.unwrap_err().contains("AppOffline"));
        h.sup.shutdown().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_run_as_the_configured_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    with_timeout(async {
        init_tracing();
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("user nobody");
        let dir = tempfile::Builder::new()
            .prefix("rs")
            .tempdir_in("/tmp")
            .unwrap();
        // The worker's user must be able to pass through to its socket directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sup = Supervisor::new(SupervisorOptions {
            roost_exe: env!("CARGO_BIN_EXE_roost").into(),
            runtime_dir: Some(dir.path().join("run")),
        });
        let mut pm = builtin();
        pm.user = Some("nobody".into());
        let cfg = pool_cfg("lowly", pm);
        let pool = Pool::new(&cfg);
        sup.manage(pool.clone(), &cfg);
        wait_for("a member", Duration::from_secs(20), || {
            pool.members().len() == 1
        })
        .await;
        let pid = pool.members()[0].pid.unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        let uids: Vec<u32> = uid_line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(uids.iter().all(|u| *u == nobody.uid.as_raw()), "{uid_line}");
        let gid_line = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
        assert!(
            gid_line.contains(&nobody.gid.as_raw().to_string()),
            "{gid_line}"
        );
        let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
        assert!(
            !groups.split_whitespace().any(|g| g == "0"),
            "kept root's groups: {groups}"
        );
        // Its socket directory is its own; the top directory only lets it through.
        let run = dir.path().join("run");
        assert_eq!(
            std::fs::metadata(&run).unwrap().permissions().mode() & 0o777,
            0o711
        );
        let pool_dir = std::fs::metadata(run.join("lowly")).unwrap();
        assert_eq!(pool_dir.uid(), nobody.uid.as_raw());
        assert_eq!(get(&pool, "/pid").await.unwrap().1, pid.to_string());

        // Back to running as ourselves: the pool directory is taken back.
        let mut cfg2 = cfg.clone();
        if let Backend::Garden(pm) = &mut cfg2.backend {
            pm.user = None;
        }
        sup.reconfigure(pool.clone(), &cfg2);
        wait_for(
            "replaced by a worker running as root",
            Duration::from_secs(20),
            || {
                let m = pool.members();
                m.len() == 1 && m[0].pid != Some(pid)
            },
        )
        .await;
        let pid2 = pool.members()[0].pid.unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid2}/status")).unwrap();
        assert!(
            status.lines().any(|l| l.starts_with("Uid:\t0\t")),
            "{status}"
        );
        assert_eq!(std::fs::metadata(run.join("lowly")).unwrap().uid(), 0);
        assert!(sup
            .status("lowly")
            .unwrap()
            .worker_failures_total
            .is_empty());
        sup.shutdown().await;
        assert!(!alive(pid));
        assert!(!alive(pid2));
    })
    .await
}

/// Through the whole front: YAML config, listener, router, pool queue, supervised
/// `roost worker` garden; a recycle under steady client load fails no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_through_the_front_with_a_recycle_under_load() {
    use hyper_util::rt::TokioIo;
    with_timeout(async {
        init_tracing();
        let yaml = r#"
sites:
  - name: main
    bindings:
      - listen: 127.0.0.1:0
    applications:
      - {path: /, pool: app}
pools:
  app:
    startMode: alwaysRunning
    processModel:
      maxProcesses: 2
      maxConcurrentRequestsPerProcess: 8
      pingInterval: 1s
      shutdownTimeLimit: 5s
    worker:
      app: demo
"#;
        let cfg = roost::config::load_str(yaml, "test").expect("valid config");
        let dir = tempfile::Builder::new()
            .prefix("rs")
            .tempdir_in("/tmp")
            .unwrap();
        let sup = Supervisor::new(SupervisorOptions {
            roost_exe: env!("CARGO_BIN_EXE_roost").into(),
            runtime_dir: Some(dir.path().join("run")),
        });
        let front = roost::front::Front::start(cfg, vec![sup.clone()])
            .await
            .expect("front starts");
        let addr = front.bound_addresses()[0].1;
        let pool = front.pool("app").unwrap();
        wait_for("2 members", Duration::from_secs(20), || {
            pool.members().len() == 2
        })
        .await;
        let before: Vec<u32> = pool.members().iter().filter_map(|m| m.pid).collect();

        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let (mut tx, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .unwrap();
                    tokio::spawn(conn);
                    let (mut ok, mut bad) = (0u64, Vec::new());
                    let mut pids = std::collections::HashSet::new();
                    while !stop.load(Ordering::Relaxed) {
                        tx.ready().await.unwrap();
                        let req = http::Request::get("/pid")
                            .header("host", "localhost")
                            .body(roost::body::empty())
                            .unwrap();
                        let resp = tx.send_request(req).await.unwrap();
                        let status = resp.status();
                        let body = resp.into_body().collect().await.unwrap().to_bytes();
                        let body = String::from_utf8_lossy(&body).trim().to_string();
                        if status == 200 {
                            ok += 1;
                            pids.insert(body);
                        } else {
                            bad.push(format!("{status} {body}"));
                        }
                    }
                    (ok, bad, pids)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        sup.recycle("app").unwrap();
        wait_for("both workers replaced", Duration::from_secs(30), || {
            let now: Vec<u32> = pool.members().iter().filter_map(|m| m.pid).collect();
            now.len() == 2 && now.iter().all(|p| !before.contains(p))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let (mut ok, mut bad, mut seen) = (0, Vec::new(), std::collections::HashSet::new());
        for c in clients {
            let (o, b, p) = c.await.unwrap();
            ok += o;
            bad.extend(b);
            seen.extend(p);
        }
        assert!(
            bad.is_empty(),
            "{} failed: {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        // Served by the old workers and by their replacements.
        assert!(seen.len() >= 3, "pids seen: {seen:?}");
        eprintln!(
            "through the front: {ok} requests over a garden recycle, 0 failed, {} worker pids",
            seen.len()
        );
        let st = sup.status("app").unwrap();
        assert_eq!(st.recycles_total.get("manual"), Some(&2));
        front.shutdown(Duration::from_secs(2)).await;
        sup.shutdown().await;
        for p in before {
            assert!(!alive(p));
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garden_shrinks_and_grows_with_max_processes() {
    with_timeout(async {
        let mut pm = builtin();
        pm.max_processes = 2;
        let cfg = pool_cfg("elastic", pm);
        let h = Harness::new(&cfg);
        wait_for("2 members", Duration::from_secs(20), || {
            h.pool.members().len() == 2
        })
        .await;
        let with = |n: usize| {
            let mut c = cfg.clone();
            if let Backend::Garden(pm) = &mut c.backend {
                pm.max_processes = n;
            }
            c
        };
        for n in [1, 3] {
            h.sup.reconfigure(h.pool.clone(), &with(n));
            wait_for("settled", Duration::from_secs(30), || {
                let st = h.sup.status("elastic").unwrap();
                h.pool.members().len() == n
                    && st.workers.len() == n
                    && st.workers.iter().all(|w| w.state == "running")
            })
            .await;
            assert_eq!(get(&h.pool, "/.roost/ping").await.unwrap().0, 200);
        }
        let st = h.sup.status("elastic").unwrap();
        assert!(
            st.worker_failures_total.is_empty(),
            "{:?}",
            st.worker_failures_total
        );
        h.sup.shutdown().await;
    })
    .await
}
