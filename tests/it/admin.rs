//! The admin listener end to end: a real front, real backends (a farm of in-process
//! servers, or a web garden of real `roost worker` processes), the admin API over real
//! sockets on 127.0.0.1:0, `roost ctl` as a child process, and the access log.

use crate::support::*;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use roost::admin::{Admin, AdminContext, AdminError, Reloader};
use roost::front::Front;
use roost::supervisor::Supervisor;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A front, maybe a supervisor, and the admin listener over them.
struct Stack {
    front: Arc<Front>,
    sup: Option<Arc<Supervisor>>,
    admin: Admin,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The garden pool `web` once its first worker serves.
async fn first_worker(st: &Stack) -> Arc<roost::pool::Pool> {
    let pool = st.front.pool("web").unwrap();
    wait_until("a worker", Duration::from_secs(10), || {
        let p = pool.clone();
        async move { !p.members().is_empty() }
    })
    .await;
    pool
}

impl Stack {
    async fn start(yaml: &str, garden: bool, token: Option<&str>) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("ra")
            .tempdir_in("/tmp")
            .unwrap();
        let s = serve_with_admin(yaml, garden, token, dir.path(), Duration::from_millis(200)).await;
        let (front, sup, admin, addr) = (s.front, s.sup, s.admin, s.addr);
        Stack {
            front,
            sup,
            admin,
            addr,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.admin.shutdown();
        if let Some(s) = &self.sup {
            s.shutdown().await;
        }
    }
}

/// One call to the admin API: status, headers' content type, body text.
async fn call(
    admin: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, String, String) {
    let stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", admin.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = tx
        .send_request(req.body(Full::new(bytes::Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8_lossy(&body).into_owned())
}

async fn get_json(admin: SocketAddr, path: &str) -> Value {
    let (s, _, b) = call(admin, Method::GET, path, None).await;
    assert_eq!(s, StatusCode::OK, "{path}: {b}");
    serde_json::from_str(&b).unwrap()
}

async fn post(admin: SocketAddr, path: &str) -> (StatusCode, Value) {
    let (s, _, b) = call(admin, Method::POST, path, None).await;
    (s, serde_json::from_str(&b).unwrap_or(Value::Null))
}

fn farm_yaml(server: SocketAddr, extra_pool: &str, extra_top: &str) -> String {
    format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: farm}}]
pools:
  farm:
    queueLength: 50
{extra_pool}
    farm:
      servers:
        - {{address: "{server}", maxConcurrentRequests: 4}}
{extra_top}
"#
    )
}

fn garden_yaml(extra_worker: &str, slots: usize) -> String {
    format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: web}}]
pools:
  web:
    startMode: alwaysRunning
    processModel:
      maxProcesses: 1
      maxConcurrentRequestsPerProcess: {slots}
    worker:
      app: demo
{extra_worker}
"#
    )
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the first sample line starting with `prefix` (name plus labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_every_contract_name() {
    // A garden of one real worker (worker metrics) and a farm (farm_server_healthy).
    let backend = Backend::start("b").await;
    let yaml = format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: web}}, {{path: /farm, pool: farm}}]
pools:
  web:
    startMode: alwaysRunning
    processModel: {{maxProcesses: 1}}
    worker: {{app: demo}}
  farm:
    farm: {{servers: [{{address: "{}"}}]}}
"#,
        backend.addr
    );
    let st = Stack::start(&yaml, true, None).await;
    let pool = first_worker(&st).await;
    for path in ["/", "/farm/x", "/sleep?ms=1"] {
        let (s, _, _) = get(st.addr, "t", path).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    // Wait for the sampler to have the worker's counters.
    let admin = st.admin.addr();
    wait_until("worker metrics", Duration::from_secs(10), || async move {
        let (_, _, m) = call(admin, Method::GET, "/metrics", None).await;
        m.contains("roost_worker_threads{")
    })
    .await;
    let (s, ctype, m) = call(admin, Method::GET, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.contains("openmetrics-text"), "{ctype}");
    for (name, kind) in [
        ("pool_queue_length", "gauge"),
        ("pool_queue_limit", "gauge"),
        ("pool_queue_oldest_seconds", "gauge"),
        ("pool_arrivals", "counter"),
        ("pool_retries", "counter"),
        ("pool_rejected", "counter"),
        ("pool_queue_wait_seconds", "histogram"),
        ("pool_active_requests", "gauge"),
        ("pool_state", "gauge"),
        ("pool_workers", "gauge"),
        ("pool_worker_starts", "counter"),
        ("pool_worker_failures", "counter"),
        ("pool_recycles", "counter"),
        ("request_duration_seconds", "histogram"),
        ("worker_threads", "gauge"),
        ("worker_threads_busy", "gauge"),
        ("worker_requests_current", "gauge"),
        ("worker_requests_queued", "gauge"),
        ("worker_requests_rejected", "counter"),
        ("worker_thread_injections", "counter"),
        ("worker_work_items_completed", "counter"),
        ("farm_server_healthy", "gauge"),
    ] {
        assert!(
            m.contains(&format!("# TYPE roost_{name} {kind}\n")),
            "missing roost_{name} ({kind}) in:\n{m}"
        );
    }
    assert!(m.ends_with("# EOF\n"));
    // Values are the live counters.
    assert_eq!(
        sample(&m, "roost_pool_arrivals_total{pool=\"web\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, "roost_pool_arrivals_total{pool=\"farm\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "roost_pool_state{pool=\"web\",state=\"Started\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&m, "roost_pool_workers{pool=\"web\"}"), Some(1.0));
    assert_eq!(
        sample(&m, "roost_pool_worker_starts_total{pool=\"web\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "roost_request_duration_seconds_count{pool=\"web\",code_class=\"2xx\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "roost_request_duration_seconds_bucket{le=\"+Inf\",pool=\"web\",code_class=\"2xx\"}"
        )
        .or_else(|| sample(
            &m,
            "roost_request_duration_seconds_bucket{pool=\"web\",code_class=\"2xx\",le=\"+Inf\"}"
        )),
        Some(2.0),
        "{m}"
    );
    let healthy = format!(
        "roost_farm_server_healthy{{pool=\"farm\",server=\"{}\"}}",
        backend.addr
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("roost_farm_server_healthy{pool=\"farm\"") && l.ends_with(" 1")),
        "{healthy} in:\n{m}"
    );
    let pid = pool.members()[0].pid.unwrap();
    let threads = format!("roost_worker_threads{{pool=\"web\",pid=\"{pid}\",kind=\"worker\"");
    assert!(m.contains(&threads), "{threads} in:\n{m}");
    // The two built-in requests went through the worker's gate.
    let completed = m
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "roost_worker_requests_current{{pool=\"web\",pid=\"{pid}\"}}"
            ))
        })
        .is_some();
    assert!(completed, "{m}");
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_requests_and_actions() {
    let backend = Backend::start("b").await;
    let st = Stack::start(&farm_yaml(backend.addr, "", ""), false, None).await;
    let admin = st.admin.addr();

    let v = get_json(admin, "/api/v1/pools").await;
    let p = &v["pools"][0];
    assert_eq!(p["name"], "farm");
    assert_eq!(p["kind"], "farm");
    assert_eq!(p["state"], "Started");
    assert_eq!(p["queue"]["limit"], 50);
    assert_eq!(p["capacity"], 4);
    assert_eq!(p["servers"][0]["server"], backend.addr.to_string());
    assert_eq!(p["servers"][0]["healthy"], true);
    // The farm's own state for each server.
    assert_eq!(p["servers"][0]["state"], "healthy");

    // A slow request shows in /api/v1/requests while it runs.
    let front = st.addr;
    let slow = tokio::spawn(async move { get(front, "t", "/slow?ms=6000&id=1").await });
    wait_until(
        "the slow request executing",
        Duration::from_secs(5),
        || async move {
            let v = get_json(admin, "/api/v1/requests?pool=farm&minElapsedMs=100").await;
            v["requests"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["url"] == "/slow?ms=6000&id=1" && r["state"] == "executing")
        },
    )
    .await;
    let v = get_json(admin, "/api/v1/requests").await;
    let r = &v["requests"][0];
    assert_eq!(
        (r["method"].as_str(), r["pool"].as_str()),
        (Some("GET"), Some("farm"))
    );
    assert!(r["elapsed_ms"].as_u64().unwrap() >= 100);
    assert!(r["id"].as_u64().is_some());
    let v = get_json(admin, "/api/v1/requests?pool=other").await;
    assert_eq!(v["count"], 0);
    let v = get_json(admin, "/api/v1/requests?minElapsedMs=600000").await;
    assert_eq!(v["count"], 0);
    slow.abort();

    // Errors are JSON with a message.
    let (s, _, b) = call(admin, Method::GET, "/api/v1/pools/nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(b.contains("no pool named \\\"nope\\\""), "{b}");
    let (s, v) = post(admin, "/api/v1/pools/nope/stop").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("nope"));
    let (s, v) = post(admin, "/api/v1/pools/farm/explode").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("recycle, start or stop"));
    let (s, _, _) = call(admin, Method::GET, "/api/v1/pools/farm/stop", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _, _) = call(admin, Method::DELETE, "/api/v1/pools", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _, _) = call(admin, Method::GET, "/api/v2/whatever", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A farm has no worker processes to recycle.
    let (s, _) = post(admin, "/api/v1/pools/farm/recycle").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Reload is not wired in this process.
    let (s, _) = post(admin, "/api/v1/reload").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);

    // Stop answers 503 Disabled; start serves again.
    let (s, v) = post(admin, "/api/v1/pools/farm/stop").await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("Stopped")));
    let (s, reason, _) = get(st.addr, "t", "/x").await;
    assert_eq!(
        (s, reason.as_deref()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("Disabled"))
    );
    let v = get_json(admin, "/api/v1/pools/farm").await;
    assert_eq!(v["state"], "Stopped");
    assert_eq!(v["rejected"]["Disabled"], 1);
    let (s, v) = post(admin, "/api/v1/pools/farm/start").await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("Started")));
    assert_eq!(get(st.addr, "t", "/x").await.0, StatusCode::OK);

    // The dashboard's data and page.
    st.admin.sampler().sample_once().await;
    let v = get_json(admin, "/api/v1/stats").await;
    assert_eq!(v["pools"][0]["name"], "farm");
    assert!(!v["pools"][0]["points"].as_array().unwrap().is_empty());
    // `since` sends only newer points.
    let at = v["at_unix_ms"].as_u64().unwrap();
    // Samples are stamped in milliseconds: take the next one in a later millisecond.
    tokio::time::sleep(Duration::from_millis(5)).await;
    st.admin.sampler().sample_once().await;
    let v = get_json(admin, &format!("/api/v1/stats?since={at}")).await;
    assert_eq!(v["pools"][0]["name"], "farm");
    let points = v["pools"][0]["points"].as_array().unwrap();
    assert!(!points.is_empty(), "{v}");
    assert!(points.iter().all(|p| p["t"].as_u64().unwrap() > at), "{v}");
    let (s, ctype, html) = call(admin, Method::GET, "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("text/html"));
    assert!(html.contains("dashboard.js"));
    let (s, _, js) = call(admin, Method::GET, "/dashboard.js", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(js.contains("api/v1/stats"));
    st.stop().await;
}

#[tokio::test]
async fn token_is_required_when_set() {
    let backend = Backend::start("b").await;
    let st = Stack::start(&farm_yaml(backend.addr, "", ""), false, Some("s3cret")).await;
    let admin = st.admin.addr();
    let (s, _, b) = call(admin, Method::GET, "/api/v1/pools", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, _, _) = call(admin, Method::GET, "/metrics", Some("wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = call(admin, Method::POST, "/api/v1/pools/farm/stop", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(st.front.pool("farm").unwrap().state().as_str(), "Started");
    let (s, _, _) = call(admin, Method::GET, "/metrics", Some("s3cret")).await;
    assert_eq!(s, StatusCode::OK);
    // The page takes the token in its URL (its scripts then send the header).
    let (s, _, _) = call(admin, Method::GET, "/?token=s3cret", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(admin, Method::GET, "/api/v1/pools?token=s3cret", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // `roost ctl --token`.
    let out = tokio::task::spawn_blocking(move || ctl(admin, &["status"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"));
    let out = tokio::task::spawn_blocking(move || ctl(admin, &["--token", "s3cret", "status"]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("farm"));

    // A non-loopback listener without a token is refused outright.
    let err = Admin::start(
        &roost::config::model::Admin {
            listen: "0.0.0.0:0".parse().unwrap(),
            token: None,
            public: None,
        },
        AdminContext {
            front: st.front.clone(),
            supervisor: None,
            reload: None,
        },
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(err, AdminError::NeedsToken(_)), "{err}");
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_through_the_api() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.yaml");
    std::fs::write(&file, farm_yaml(backend.addr, "", "")).unwrap();
    let cfg = roost::config::load_file(&file).unwrap();
    let front = Front::start(cfg, vec![]).await.unwrap();
    let (f, p) = (front.clone(), file.clone());
    let reload: Reloader = Arc::new(move || {
        let (f, p) = (f.clone(), p.clone());
        Box::pin(async move {
            let cfg = roost::config::load_file(&p).map_err(|e| e.to_string())?;
            f.reload(cfg).await.map_err(|e| e.to_string())
        })
    });
    let admin = Admin::start(
        &roost::config::model::Admin {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
            public: None,
        },
        AdminContext {
            front: front.clone(),
            supervisor: None,
            reload: Some(reload),
        },
    )
    .await
    .unwrap();
    std::fs::write(
        &file,
        farm_yaml(backend.addr, "", "").replace("queueLength: 50", "queueLength: 7"),
    )
    .unwrap();
    let (s, v) = post(admin.addr(), "/api/v1/reload").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(front.pool("farm").unwrap().queue_limit(), 7);
    // A broken file is refused with its problems; the running config stays.
    std::fs::write(&file, "pools: {farm: {queueLength: -1}}\n").unwrap();
    let (s, v) = post(admin.addr(), "/api/v1/reload").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error"].as_str().unwrap().contains("queueLength"), "{v}");
    assert_eq!(front.pool("farm").unwrap().queue_limit(), 7);
}

fn ctl(admin: SocketAddr, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("ctl")
        .arg("--admin")
        .arg(format!("http://{admin}"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roost_ctl_talks_to_the_admin_api() {
    let backend = Backend::start("b").await;
    let st = Stack::start(&farm_yaml(backend.addr, "", ""), false, None).await;
    let admin = st.admin.addr();
    assert_eq!(get(st.addr, "t", "/x").await.0, StatusCode::OK);

    let out = tokio::task::spawn_blocking(move || ctl(admin, &["status"]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("POOL"), "{text}");
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&cols[..2], ["farm", "Started"], "{text}");
    assert!(text.contains("0/50"), "{text}");

    let out = tokio::task::spawn_blocking(move || ctl(admin, &["--json", "pools"]))
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pools"][0]["arrivals"], 1);

    let out = tokio::task::spawn_blocking(move || ctl(admin, &["stop", "farm"]))
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "farm: Stopped");
    assert_eq!(
        get(st.addr, "t", "/x").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let out = tokio::task::spawn_blocking(move || ctl(admin, &["start", "farm"]))
        .await
        .unwrap();
    assert!(out.status.success());

    // A slow request listed by `ctl requests --min-elapsed`.
    let front = st.addr;
    let slow = tokio::spawn(async move { get(front, "t", "/slow?ms=8000").await });
    wait_until(
        "the slow request listed",
        Duration::from_secs(5),
        || async move {
            let v = get_json(admin, "/api/v1/requests?minElapsedMs=100").await;
            v["count"] == 1
        },
    )
    .await;
    let out = tokio::task::spawn_blocking(move || {
        ctl(
            admin,
            &["requests", "--pool", "farm", "--min-elapsed", "100ms"],
        )
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("/slow?ms=8000"), "{text}");
    slow.abort();

    // Errors: unknown pool (exit 1, the API's message) and nothing listening (exit 3).
    let out = tokio::task::spawn_blocking(move || ctl(admin, &["recycle", "nope"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pool named"));
    let dead: SocketAddr = format!("127.0.0.1:{}", dead_port().await).parse().unwrap();
    let out = tokio::task::spawn_blocking(move || ctl(dead, &["status"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the admin API"), "{err}");
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycle_a_garden_through_the_api() {
    let st = Stack::start(&garden_yaml("", 10), true, None).await;
    let admin = st.admin.addr();
    let pool = first_worker(&st).await;
    let before = pool.members()[0].pid.unwrap();
    let v = get_json(admin, "/api/v1/pools/web").await;
    assert_eq!(v["kind"], "garden");
    assert_eq!(v["workers"][0]["pid"], before);
    assert!(v["workers"][0]["uptime_s"].as_f64().is_some());

    let (s, v) = post(admin, "/api/v1/pools/web/recycle").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_until("a new worker", Duration::from_secs(15), || {
        let p = pool.clone();
        async move {
            let m = p.members();
            m.len() == 1 && m[0].pid != Some(before) && !m[0].is_draining()
        }
    })
    .await;
    let v = get_json(admin, "/api/v1/pools/web").await;
    let hist = v["recycle_history"].as_array().unwrap();
    assert_eq!(hist.len(), 1, "{v}");
    assert_eq!(hist[0]["reason"], "manual");
    assert_eq!(get(st.addr, "t", "/").await.0, StatusCode::OK);

    // Stop and start go through the supervisor.
    let (s, _) = post(admin, "/api/v1/pools/web/stop").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(get(st.addr, "t", "/").await.1.as_deref(), Some("Disabled"));
    let (s, v) = post(admin, "/api/v1/pools/web/recycle").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, _) = post(admin, "/api/v1/pools/web/start").await;
    assert_eq!(s, StatusCode::OK);
    wait_until("serving again", Duration::from_secs(15), || async {
        get(st.addr, "t", "/").await.0 == StatusCode::OK
    })
    .await;
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_finds_thread_pool_starvation() {
    // One worker whose thread pool may grow from 1 to 3 threads; every request blocks
    // its thread for 3 s: the pool runs out of threads while the CPU idles.
    let st = Stack::start(
        &garden_yaml("      minWorkerThreads: 1\n      maxWorkerThreads: 3\n", 50),
        true,
        None,
    )
    .await;
    let admin = st.admin.addr();
    first_worker(&st).await;
    // Healthy at rest.
    st.admin.sampler().sample_once().await;
    let v = get_json(admin, "/api/v1/diagnose").await;
    assert_eq!(v["findings"].as_array().unwrap().len(), 0, "{v}");

    let front = st.addr;
    let flood: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move { get(front, "t", &format!("/block?ms=3000&i={i}")).await })
        })
        .collect();
    let started = Instant::now();
    let mut report;
    let found = loop {
        report = get_json(admin, "/api/v1/diagnose").await;
        let hit = report["findings"].as_array().unwrap().iter().any(|f| {
            f["pool"] == "web"
                && (f["rule"] == "threadpool_at_max" || f["rule"] == "threadpool_starvation")
        });
        if hit || started.elapsed() > Duration::from_secs(8) {
            break hit;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if !found {
        let w = get_json(admin, "/api/v1/pools/web").await;
        panic!(
            "no thread-pool finding in {report:#}\nworker: {:#}",
            w["workers"]
        );
    }
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "threadpool_at_max" || f["rule"] == "threadpool_starvation")
        .unwrap();
    eprintln!(
        "finding after {:?}: {}",
        started.elapsed(),
        serde_json::to_string_pretty(f).unwrap()
    );
    assert_eq!(f["severity"], "critical");
    assert!(!f["evidence"].as_array().unwrap().is_empty());
    let advice = f["advice"].as_str().unwrap();
    assert!(
        advice.contains("maxWorkerThreads") || advice.contains("blocking"),
        "{advice}"
    );

    // `roost ctl diagnose` prints it.
    let out = tokio::task::spawn_blocking(move || ctl(admin, &["diagnose"]))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("[CRITICAL] web:"), "{text}");
    for t in flood {
        t.abort();
    }
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_records_each_request() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let top = format!(
        "log:\n  access: {{path: \"{}\", format: json}}\n",
        log.display()
    );
    let st = Stack::start(&farm_yaml(backend.addr, "", &top), false, None).await;
    assert_eq!(get(st.addr, "t", "/logged?q=1").await.0, StatusCode::OK);
    let (s, reason, _) = get(st.addr, "t", "/.roost/ping").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(reason.as_deref(), Some("NoRoute"));
    // A head the HTTP/1.1 server refuses itself is logged too (no method, no path).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(st.addr).await.unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\nhost : x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), raw.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 400"));
    }
    let mut lines: Vec<Value> = Vec::new();
    wait_until("three log lines", Duration::from_secs(5), || {
        let l = log.clone();
        let found = std::fs::read_to_string(&l)
            .unwrap_or_default()
            .lines()
            .filter_map(|x| serde_json::from_str::<Value>(x).ok())
            .collect::<Vec<_>>();
        let ok = found.len() >= 3;
        if ok {
            lines = found;
        }
        async move { ok }
    })
    .await;
    let text = serde_json::to_string(&lines).unwrap();
    assert!(text.contains("/logged"), "{text}");
    assert!(text.contains("NoRoute"), "{text}");
    assert!(text.contains("farm"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l["status"] == 400 && l["reason"] == "BadRequest" && l["method"].is_null()),
        "{text}"
    );
    st.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `roost serve` starts the admin listener beside the front; `roost ctl reload` reloads
/// the file it was started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_admin_listener_and_ctl_reloads_it() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let file = dir.path().join("proxy.yaml");
    let write = |queue: usize| {
        std::fs::write(
            &file,
            format!(
                "sites:\n  - name: s\n    bindings: [{{listen: \"127.0.0.1:{port}\"}}]\n    applications: [{{path: /, pool: p}}]\n\
                 pools:\n  p: {{queueLength: {queue}, farm: {{servers: [{{address: \"{}\"}}]}}}}\n\
                 admin: {{listen: \"127.0.0.1:{admin_port}\"}}\n",
                backend.addr
            ),
        )
        .unwrap()
    };
    write(10);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["serve", "-c"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    wait_until(
        "the admin listener",
        Duration::from_secs(10),
        || async move { tokio::net::TcpStream::connect(admin).await.is_ok() },
    )
    .await;
    let v = get_json(admin, "/api/v1/pools/p").await;
    assert_eq!(v["queue"]["limit"], 10);
    write(20);
    let out = tokio::task::spawn_blocking(move || ctl(admin, &["reload"]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configuration reloaded"
    );
    let v = get_json(admin, "/api/v1/pools/p").await;
    assert_eq!(v["queue"]["limit"], 20);
    // A bad file: ctl says why and exits 1; the running configuration stays.
    std::fs::write(&file, "pools: {p: {queueLength: -1}}\n").unwrap();
    let out = tokio::task::spawn_blocking(move || ctl(admin, &["reload"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reload refused"));
    let v = get_json(admin, "/api/v1/pools/p").await;
    assert_eq!(v["queue"]["limit"], 20);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_in_w3c_format() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let top = format!("log:\n  access: {{path: \"{}\"}}\n", log.display());
    let st = Stack::start(&farm_yaml(backend.addr, "", &top), false, None).await;
    assert_eq!(get(st.addr, "t", "/w3c?x=1").await.0, StatusCode::OK);
    let mut text = String::new();
    wait_until("the W3C line", Duration::from_secs(5), || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        let ok = text
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("/w3c"));
        async move { ok }
    })
    .await;
    assert!(text.contains("#Fields: date time"), "{text}");
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("/w3c"))
        .unwrap();
    let fields: Vec<&str> = line.split(' ').collect();
    // date time s-ip cs-method cs-uri-stem cs-uri-query s-port c-ip cs(User-Agent)
    // sc-status time-taken x-pool ...
    assert_eq!(fields[3], "GET", "{line}");
    assert_eq!(fields[4], "/w3c", "{line}");
    assert_eq!(fields[5], "x=1", "{line}");
    assert_eq!(fields[9], "200", "{line}");
    assert_eq!(fields[11], "farm", "{line}");
    st.stop().await;
}

/// `v` read as the wire type `T` and written back is `v` again: the type `roost ctl`
/// reads is exactly what the server sent (no field lost, renamed or reshaped).
fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned>(what: &str, v: &Value) -> T {
    let typed: T =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}\n{v:#}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(&back, v, "{what} changed in a round trip");
    typed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_document_round_trips_through_its_wire_type() {
    use roost::admin::wire::*;
    // A garden of built-in workers: the supervisor's table with each worker's counters.
    let st = Stack::start(&garden_yaml("", 10), true, None).await;
    let admin = st.admin.addr();
    first_worker(&st).await;
    assert_eq!(get(st.addr, "t", "/").await.0, StatusCode::OK);
    st.admin.sampler().sample_once().await;
    let list: PoolList = round_trips("pools", &get_json(admin, "/api/v1/pools").await);
    let w = &list.pools[0].workers[0];
    let sampled = w.sampled.as_ref().expect("the worker's own counters");
    assert_eq!(Some(sampled.counters.pid), w.pid);
    assert!(sampled.counters.worker_pools.contains_key("default"));
    round_trips::<PoolDoc>("pool", &get_json(admin, "/api/v1/pools/web").await);
    tokio::time::sleep(Duration::from_millis(5)).await;
    st.admin.sampler().sample_once().await;
    let stats: Stats = round_trips("stats", &get_json(admin, "/api/v1/stats").await);
    assert!(stats
        .workers
        .iter()
        .any(|w| w.alive && !w.points.is_empty()));
    let (s, v) = post(admin, "/api/v1/pools/web/recycle").await;
    assert_eq!(s, StatusCode::OK);
    assert!(round_trips::<ActionDone>("recycle", &v).ok);
    st.stop().await;

    // A farm: the farm's server states, in-flight requests, errors.
    let backend = Backend::start("b").await;
    let st = Stack::start(&farm_yaml(backend.addr, "", ""), false, None).await;
    let admin = st.admin.addr();
    let front = st.addr;
    let slow = tokio::spawn(async move { get(front, "t", "/slow?ms=6000").await });
    wait_until("the slow request", Duration::from_secs(5), || async move {
        get_json(admin, "/api/v1/requests").await["count"] == 1
    })
    .await;
    let list: RequestList = round_trips("requests", &get_json(admin, "/api/v1/requests").await);
    assert_eq!(list.requests[0].state, "executing");
    let list: PoolList = round_trips("pools", &get_json(admin, "/api/v1/pools").await);
    assert!(matches!(&list.pools[0].servers[0], ServerDoc::Farm(s) if s.state == "healthy"));
    slow.abort();
    let (s, v) = post(admin, "/api/v1/pools/farm/stop").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(round_trips::<ActionDone>("stop", &v).state, "Stopped");
    let (s, v) = post(admin, "/api/v1/pools/nope/stop").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(round_trips::<ApiError>("error", &v).status, 404);
    let (s, v) = post(admin, "/api/v1/reload").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    round_trips::<ApiError>("error", &v);
    st.stop().await;
}
