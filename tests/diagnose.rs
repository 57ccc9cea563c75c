//! The diagnosis under real conditions: real `roost worker` processes (or real farm
//! servers) behind a real front, real load over loopback, and the verdict of the
//! decision tree asserted by the majority of three readings a second apart. Each case is
//! a scenario of issue 15. The scenarios run one at a time (they share two cores) and
//! assert only the cause, never timings.

// The scenarios share two cores, so they run one at a time: each test holds a plain
// mutex guard across its awaits on purpose (every test has its own runtime).
#![allow(clippy::await_holding_lock)]

mod support;

use roost::admin::diagnose::{diagnose, Report};
use roost::admin::Admin;
use roost::front::Front;
use roost::supervisor::Supervisor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One scenario at a time: a CPU-overload case must not be the starvation case's noise.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Stack {
    front: Arc<Front>,
    sup: Option<Arc<Supervisor>>,
    admin: Admin,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn start(yaml: &str, garden: bool) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("rd")
            .tempdir_in("/tmp")
            .unwrap();
        let s = serve_with_admin(yaml, garden, None, dir.path(), Duration::from_millis(250)).await;
        let (front, sup, admin, addr) = (s.front, s.sup, s.admin, s.addr);
        Stack {
            front,
            sup,
            admin,
            addr,
            _dir: dir,
        }
    }

    async fn wait_workers(&self, n: usize) {
        let pool = self.front.pool("web").unwrap();
        let ok = eventually(Duration::from_secs(20), || pool.members().len() >= n).await;
        assert!(ok, "{n} workers never became ready");
    }

    fn pids(&self) -> Vec<u32> {
        let pool = self.front.pool("web").unwrap();
        pool.members().iter().filter_map(|m| m.pid).collect()
    }

    fn report(&self) -> Report {
        diagnose(&self.admin.sampler().history())
    }

    /// The pool's cause (`healthy` without a finding) in three readings a second apart,
    /// after `settle` of load; also returns the last report for messages.
    async fn verdicts(&self, pool: &str, settle: Duration) -> (Vec<String>, Report) {
        tokio::time::sleep(settle).await;
        let mut out = Vec::new();
        let mut last = self.report();
        for i in 0..3 {
            if i > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            last = self.report();
            let rule = last
                .findings
                .iter()
                .find(|f| f.pool == pool)
                .map_or("healthy".to_string(), |f| f.rule.to_string());
            out.push(rule);
        }
        (out, last)
    }

    async fn stop(self) {
        self.admin.shutdown();
        if let Some(s) = &self.sup {
            s.shutdown().await;
        }
    }
}

fn majority(v: &[String], rule: &str) -> bool {
    v.iter().filter(|r| *r == rule).count() * 2 > v.len()
}

fn assert_cause(v: &[String], r: &Report, rule: &str) {
    assert!(majority(v, rule), "expected {rule}, got {v:?}\n{r:#?}");
}

/// One GET over a fresh connection: the status, or `None` if the exchange failed.
async fn status_of(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.ok()?;
    let head = String::from_utf8_lossy(&resp[..resp.len().min(64)]).into_owned();
    head.split_whitespace().nth(1)?.parse().ok()
}

/// `clients` loops of requests to `path` through the front (bounded load: each client
/// waits for its answer before the next request, and backs off after a refusal).
fn load(addr: SocketAddr, clients: usize, path: &'static str) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..clients)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = tokio::time::timeout(Duration::from_secs(10), status_of(addr, path))
                        .await
                        .is_ok_and(|s| s == Some(200));
                    // A refused client waits before retrying, so the load stays bounded
                    // (a spinning retry loop would take the CPU from the workers).
                    if !ok {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect();
    Load { stop, tasks }
}

struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn garden(processes: usize, slots: usize, queue: usize, worker: &str) -> String {
    format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: web}}]
pools:
  web:
    startMode: alwaysRunning
    queueLength: {queue}
    processModel:
      maxProcesses: {processes}
      maxConcurrentRequestsPerProcess: {slots}
    worker:
      app: demo
{worker}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lightly_loaded_pool_is_healthy() {
    let _one = serial();
    let st = Stack::start(&garden(1, 20, 100, ""), true).await;
    st.wait_workers(1).await;
    let _load = load(st.addr, 2, "/async?ms=20");
    let (v, r) = st.verdicts("web", Duration::from_secs(2)).await;
    assert_cause(&v, &r, "healthy");
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_overload_of_a_garden_is_cpu_with_the_full_queue_as_its_symptom() {
    let _one = serial();
    // The shipped shape: a garden of two on this machine, CPU work beyond capacity, and
    // a short queue that overflows.
    let st = Stack::start(&garden(2, 4, 4, ""), true).await;
    st.wait_workers(2).await;
    let _load = load(st.addr, 16, "/cpu?ms=40");
    let (v, r) = st.verdicts("web", Duration::from_secs(3)).await;
    assert_cause(&v, &r, "cpu_bound");
    let f = r.findings.iter().find(|f| f.pool == "web").unwrap();
    assert!(f.symptoms.contains(&"queue_full"), "{f:#?}");
    assert!(!f.advice.contains("raise minWorkerThreads"), "{}", f.advice);
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_overload_of_a_single_process_is_cpu() {
    let _one = serial();
    let st = Stack::start(&garden(1, 8, 100, ""), true).await;
    st.wait_workers(1).await;
    let _load = load(st.addr, 12, "/cpu?ms=40");
    let (v, r) = st.verdicts("web", Duration::from_secs(3)).await;
    assert_cause(&v, &r, "cpu_bound");
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_handlers_starve_the_thread_pool() {
    let _one = serial();
    let st = Stack::start(
        &garden(
            1,
            50,
            200,
            "      minWorkerThreads: 1\n      maxWorkerThreads: 200\n",
        ),
        true,
    )
    .await;
    st.wait_workers(1).await;
    let _load = load(st.addr, 30, "/block?ms=500");
    let (v, r) = st.verdicts("web", Duration::from_secs(2)).await;
    assert_cause(&v, &r, "threadpool_starvation");
    let f = r
        .findings
        .iter()
        .find(|f| f.rule == "threadpool_starvation");
    if let Some(f) = f {
        assert!(
            f.evidence.iter().any(|e| e.contains("`/block` held")),
            "{f:#?}"
        );
        assert!(f.advice.contains("minWorkerThreads ≈"), "{}", f.advice);
    }
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_pool_at_its_max_is_max_threads() {
    let _one = serial();
    let st = Stack::start(
        &garden(
            1,
            50,
            200,
            "      minWorkerThreads: 2\n      maxWorkerThreads: 3\n",
        ),
        true,
    )
    .await;
    st.wait_workers(1).await;
    let _load = load(st.addr, 12, "/block?ms=200");
    let (v, r) = st.verdicts("web", Duration::from_secs(2)).await;
    assert_cause(&v, &r, "threadpool_at_max");
    let f = r.findings.iter().find(|f| f.pool == "web").unwrap();
    assert!(f.advice.contains("maxWorkerThreads"), "{}", f.advice);
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_gate_with_idle_threads_is_the_gate() {
    let _one = serial();
    // One request per CPU may execute; the requests wait on I/O, the threads idle.
    let st = Stack::start(
        &garden(1, 30, 200, "      maxConcurrentRequestsPerCPU: 1\n"),
        true,
    )
    .await;
    st.wait_workers(1).await;
    let _load = load(st.addr, 12, "/async?ms=200");
    let (v, r) = st.verdicts("web", Duration::from_secs(2)).await;
    assert_cause(&v, &r, "gate_bound");
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_is_a_hung_worker() {
    let _one = serial();
    let st = Stack::start(&garden(1, 8, 100, ""), true).await;
    st.wait_workers(1).await;
    let _load = load(st.addr, 4, "/cpu?ms=5");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = st.pids()[0];
    // SAFETY: kill(2) with a pid we started; SIGSTOP takes effect at once.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    let (v, r) = st.verdicts("web", Duration::from_secs(2)).await;
    // SAFETY: as above; let it stop normally.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    assert_cause(&v, &r, "hung_worker");
    let f = r.findings.iter().find(|f| f.pool == "web").unwrap();
    assert!(
        f.evidence.iter().any(|e| e.contains("process state T")),
        "{f:#?}"
    );
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_slow_to_start_are_start_up() {
    let _one = serial();
    // A worker command that runs but never listens: it stays "starting".
    let yaml = r#"
sites:
  - name: s
    bindings: [{listen: "127.0.0.1:0"}]
    applications: [{path: /, pool: web}]
pools:
  web:
    queueLength: 100
    processModel:
      command: sleep
      args: ["30"]
      listen: tcp
      startupTimeLimit: 20s
"#;
    let st = Stack::start(yaml, true).await;
    let _load = load(st.addr, 4, "/");
    let (v, r) = st.verdicts("web", Duration::from_secs(2)).await;
    assert_cause(&v, &r, "startup");
    let f = r.findings.iter().find(|f| f.pool == "web").unwrap();
    assert!(f.evidence[0].contains("startupTimeLimit 20 s"), "{f:#?}");
    st.stop().await;
}

/// A server that answers every request after `delay`.
async fn slow_server(delay: Duration) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        seen.clear();
                        tokio::time::sleep(delay).await;
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nslow\n";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_farm_server_is_named() {
    let _one = serial();
    let fast = Backend::start("fast").await;
    let (slow, task) = slow_server(Duration::from_secs(2)).await;
    let yaml = format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: web}}]
pools:
  web:
    queueLength: 100
    farm:
      servers:
        - {{address: "{}", maxConcurrentRequests: 2}}
        - {{address: "{slow}", maxConcurrentRequests: 2}}
"#,
        fast.addr
    );
    let st = Stack::start(&yaml, false).await;
    let _load = load(st.addr, 12, "/x");
    let (v, r) = st.verdicts("web", Duration::from_secs(4)).await;
    assert_cause(&v, &r, "slow_server");
    let f = r.findings.iter().find(|f| f.pool == "web").unwrap();
    assert!(f.title.contains(&slow.to_string()), "{f:#?}");
    task.abort();
    st.stop().await;
}

/// What `roost ctl diagnose` prints against the admin listener at `admin`.
async fn ctl_diagnose(admin: SocketAddr) -> String {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_roost"))
            .args(["ctl", "--admin", &format!("http://{admin}"), "diagnose"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_and_ctl_show_the_cause() {
    let _one = serial();
    let st = Stack::start(&garden(1, 4, 4, "      maxWorkerThreads: 2\n"), true).await;
    st.wait_workers(1).await;
    let _load = load(st.addr, 12, "/block?ms=300");
    let started = Instant::now();
    let ok = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = st.report();
        if r.findings.iter().any(|f| f.rule == "threadpool_at_max") {
            break true;
        }
        if started.elapsed() > Duration::from_secs(15) {
            break false;
        }
    };
    assert!(ok, "{:#?}", st.report());
    let admin = st.admin.addr();
    let text = ctl_diagnose(admin).await;
    assert!(text.contains("maxWorkerThreads"), "{text}");
    st.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_farm_server_is_ejected_by_default_and_named() {
    let _one = serial();
    let live = Backend::start("live").await;
    let dead = format!("127.0.0.1:{}", dead_port().await);
    // No healthCheck, no outlierDetection: the default passive health ejects it.
    let yaml = format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: web}}]
pools:
  web:
    farm:
      servers:
        - {{address: "{}"}}
        - {{address: "{dead}"}}
"#,
        live.addr
    );
    let st = Stack::start(&yaml, false).await;
    let _load = load(st.addr, 4, "/x");
    let (v, r) = st.verdicts("web", Duration::from_secs(2)).await;
    assert_cause(&v, &r, "server_down");
    let f = r.findings.iter().find(|f| f.pool == "web").unwrap();
    assert!(f.title.contains(&dead), "{f:#?}");
    let e = &f.evidence[0];
    assert!(
        e.contains("ejected by passive health (5 failures in a row eject)") && e.contains(&dead),
        "{f:#?}"
    );
    // At least the 5 that eject it, and every request it got failed; with 4 clients a
    // request or two already on their way to it when it is ejected fail too.
    let all = e
        .split(", ")
        .find(|p| p.ends_with(" in all"))
        .expect("a total");
    let n: Vec<u64> = all.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert!(n.len() == 2 && n[0] >= 5 && n[0] == n[1], "{f:#?}");
    st.stop().await;
}

/// The snapshot files in `dir`, oldest first.
fn snapshot_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|x| x == "json"));
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_finding_leaves_one_evidence_snapshot() {
    let _one = serial();
    let snaps = tempfile::tempdir().unwrap();
    let dir = snaps.path().join("evidence");
    let yaml = garden(1, 4, 4, "      maxWorkerThreads: 2\n")
        + &format!(
            "diagnose: {{snapshotDir: \"{}\", snapshotKeep: 3}}\n",
            dir.display()
        );
    let st = Stack::start(&yaml, true).await;
    st.wait_workers(1).await;
    let _load = load(st.addr, 12, "/block?ms=300");
    let ok = eventually(Duration::from_secs(20), || !snapshot_files(&dir).is_empty()).await;
    assert!(ok, "no snapshot; findings {:#?}", st.report());
    let files = snapshot_files(&dir);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    // The finding that set it off, among all the findings, with their evidence.
    let rule = doc["trigger"]["rule"].as_str().unwrap();
    let findings = doc["findings"].as_array().unwrap();
    let f = findings.iter().find(|f| f["rule"] == rule).unwrap();
    assert_eq!(f["severity"], "critical", "{doc:#}");
    assert!(!f["evidence"].as_array().unwrap().is_empty(), "{f:#}");
    // Requests in flight with route, state and elapsed time.
    let rows = doc["requests"]["rows"].as_array().unwrap();
    assert!(!rows.is_empty(), "{doc:#}");
    assert!(rows.iter().any(|r| r["route"] == "/block"), "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r["state"].is_string() && r["elapsed_ms"].is_u64()));
    // Each worker's threads by state, its thread pools and busy routes.
    let w = &doc["workers"][0];
    assert!(!w["threads"].as_array().unwrap().is_empty(), "{w:#}");
    assert!(w["thread_states"]
        .as_object()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(w["thread_pools"]["default"]["max"], 2, "{w:#}");
    assert!(w["busy_routes"].to_string().contains("/block"), "{w:#}");
    // The queue and the CPU.
    assert_eq!(doc["pools"][0]["queue"]["limit"], 4);
    assert!(doc["cpu"]["machine_cores"].as_u64().unwrap() >= 1);

    // The condition lasts: still one snapshot (one per onset, at most one a minute).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(snapshot_files(&dir).len(), 1);

    // The admin API lists and serves it; roost ctl diagnose lists it.
    let admin = st.admin.addr();
    let (status, _, body) = get(admin, "a", "/api/v1/diagnose/snapshots").await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = list["snapshots"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["keep"], 3);
    let (status, _, one) = get(admin, "a", &format!("/api/v1/diagnose/snapshots/{id}")).await;
    assert_eq!(status, 200);
    assert!(one.contains(rule));
    let (status, _, _) = get(admin, "a", "/api/v1/diagnose/snapshots/..%2Fx").await;
    assert_eq!(status, 404);
    let text = ctl_diagnose(admin).await;
    assert!(
        text.contains("evidence snapshots in") && text.contains(&id),
        "{text}"
    );
    st.stop().await;
}

#[test]
fn a_snapshot_folder_that_cannot_be_one_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let yaml = garden(1, 4, 4, "")
        + &format!(
            "diagnose: {{snapshotDir: \"{}/snaps\", snapshotKeep: 0}}\n",
            file.display()
        );
    let e = roost::config::load_str(&yaml, "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("diagnose.snapshotDir") && e.contains("is not a folder"),
        "{e}"
    );
    assert!(
        e.contains("diagnose.snapshotKeep") && e.contains("at least 1"),
        "{e}"
    );
    // A folder that does not exist yet is fine: it is made at the first snapshot.
    let ok = garden(1, 4, 4, "")
        + &format!(
            "diagnose: {{snapshotDir: \"{}/a/b\"}}\n",
            tmp.path().display()
        );
    let cfg = roost::config::load_str(&ok, "t.yaml").unwrap();
    assert_eq!(cfg.diagnose.snapshot_keep, 10);
}
