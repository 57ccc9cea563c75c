//! The dashboard in a real headless Chromium, driven over the DevTools protocol: the page
//! loads without console errors, its charts receive data while load runs, and the
//! recycle button recycles the pool's worker.
//!
//! Without Chromium the test prints SKIP and passes, unless ROOST_REQUIRE_CHROMIUM is set
//! (CI sets it after installing Debian's `chromium`).

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use roost::admin::{Admin, AdminContext};
use roost::front::Front;
use roost::supervisor::{Supervisor, SupervisorOptions};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A headless Chromium in its own process group (killed with the group on drop).
struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    ws_url: String,
}

impl Browser {
    async fn launch(exe: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromium starts");
        // Chromium writes its DevTools port and browser path here once it listens.
        let file = profile.path().join("DevToolsActivePort");
        let start = Instant::now();
        let ws_url = loop {
            if let Ok(s) = std::fs::read_to_string(&file) {
                let mut lines = s.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromium did not open its DevTools port"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Browser {
            child,
            _profile: profile,
            ws_url,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: the browser and its renderer/zygote children.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal DevTools protocol client: commands on one page session, events kept.
struct Cdp {
    ws: Ws,
    next: u64,
    session: Option<String>,
    events: Vec<Value>,
}

impl Cdp {
    async fn connect(url: &str) -> Cdp {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("DevTools websocket");
        Cdp {
            ws,
            next: 0,
            session: None,
            events: Vec::new(),
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::Text(msg.to_string()))
            .await
            .expect("send to DevTools");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("DevTools closed")
                .expect("DevTools read");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == id {
                if !v["error"].is_null() {
                    panic!("{method}: {}", v["error"]);
                }
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Evaluate a JS expression in the page; its JSON value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if !r["exceptionDetails"].is_null() {
            panic!("{expr}: {}", r["exceptionDetails"]);
        }
        r["result"]["value"].clone()
    }

    /// Console errors, uncaught exceptions and error log entries seen so far.
    fn errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e["method"].as_str()? {
                "Runtime.exceptionThrown" => Some(e["params"]["exceptionDetails"].to_string()),
                "Runtime.consoleAPICalled" if e["params"]["type"] == "error" => {
                    Some(e["params"]["args"].to_string())
                }
                "Log.entryAdded" if e["params"]["entry"]["level"] == "error" => {
                    Some(e["params"]["entry"].to_string())
                }
                _ => None,
            })
            .collect()
    }
}

async fn eval_until(cdp: &mut Cdp, what: &str, expr: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let v = cdp.eval(expr).await;
        if v.as_bool() == Some(true) {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {what} ({expr}); errors: {:?}",
            cdp.errors()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Chromium, or `None` (the test then skips) unless ROOST_REQUIRE_CHROMIUM is set.
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        if std::env::var_os("ROOST_REQUIRE_CHROMIUM").is_some() {
            panic!("ROOST_REQUIRE_CHROMIUM is set but no chromium is on PATH");
        }
        eprintln!(
            "SKIP {test}: chromium is not installed \
             (apt-get install chromium; CI sets ROOST_REQUIRE_CHROMIUM=1)"
        );
    }
    found
}

/// A browser with the dashboard of the admin listener at `admin` open.
async fn open_dashboard(chromium: &Path, admin: std::net::SocketAddr) -> (Browser, Cdp) {
    let browser = Browser::launch(chromium).await;
    let mut cdp = Cdp::connect(&browser.ws_url).await;
    let target = cdp
        .call("Target.createTarget", json!({"url": "about:blank"}))
        .await;
    let attached = cdp
        .call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )
        .await;
    cdp.session = attached["sessionId"].as_str().map(String::from);
    for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
        cdp.call(domain, json!({})).await;
    }
    let url = format!("http://{admin}/");
    cdp.call("Page.navigate", json!({"url": url})).await;
    (browser, cdp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let Some(chromium) = chromium_or_skip("dashboard_in_headless_chromium") else {
        return;
    };
    init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("rd")
        .tempdir_in("/tmp")
        .unwrap();
    let yaml = r#"
sites:
  - name: s
    bindings: [{listen: "127.0.0.1:0"}]
    applications: [{path: /, pool: web}]
pools:
  web:
    startMode: alwaysRunning
    processModel: {maxProcesses: 1, maxConcurrentRequestsPerProcess: 4}
    worker: {app: demo}
"#;
    let cfg = roost::config::load_str(yaml, "test.yaml").unwrap();
    let sup = Supervisor::new(SupervisorOptions {
        roost_exe: env!("CARGO_BIN_EXE_roost").into(),
        runtime_dir: Some(dir.path().join("run")),
    });
    let front = Front::start(cfg, vec![sup.clone() as Arc<dyn roost::front::PoolHooks>])
        .await
        .unwrap();
    let front_addr = front.bound_addresses()[0].1;
    let admin = Admin::start_with_interval(
        &roost::config::model::Admin {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
            public: None,
        },
        AdminContext {
            front: front.clone(),
            supervisor: Some(sup.clone()),
            reload: None,
        },
        Duration::from_millis(250),
    )
    .await
    .unwrap();
    let pool = front.pool("web").unwrap();
    let start = Instant::now();
    while pool.members().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "no worker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid_before = pool.members()[0].pid;

    // Load: 8 clients on 4 slots, so requests queue and the charts move.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = get(front_addr, "t", "/sleep?ms=30").await;
                }
            })
        })
        .collect();

    let (browser, mut cdp) = open_dashboard(&chromium, admin.addr()).await;

    // The page polls once a second: a few updates with data in every pool chart.
    eval_until(
        &mut cdp,
        "three dashboard updates",
        "!!window.roostDashboard && window.roostDashboard.updates >= 3",
        Duration::from_secs(15),
    )
    .await;
    eval_until(
        &mut cdp,
        "arrivals in the chart",
        r#"(() => {
            const line = document.querySelector('#pool-web-rate polyline');
            const pts = line ? line.getAttribute('points').trim().split(' ').length : 0;
            const web = window.roostDashboard.store.pools['web'];
            const rate = web ? Math.max(...web.points.map(x => x.arrivals_per_s)) : 0;
            return pts >= 3 && rate > 0;
        })()"#,
        Duration::from_secs(10),
    )
    .await;
    for chart in ["queue", "active", "latency"] {
        let n = cdp
            .eval(&format!(
                "window.roostDashboard.points['pool-web-{chart}'] || 0"
            ))
            .await;
        assert!(n.as_u64().unwrap_or(0) >= 3, "{chart}: {n}");
    }
    let worker_points = cdp
        .eval(&format!(
            "window.roostDashboard.points['worker-{}-threads'] || 0",
            pid_before.unwrap()
        ))
        .await;
    assert!(worker_points.as_u64().unwrap_or(0) >= 3, "{worker_points}");
    // The diagnosis panel is filled from /api/v1/diagnose.
    eval_until(
        &mut cdp,
        "the diagnosis panel",
        "typeof window.roostDashboard.findings === 'number'",
        Duration::from_secs(10),
    )
    .await;
    let rows = cdp
        .eval("document.querySelectorAll('#requests tbody tr').length")
        .await;
    eprintln!("in-flight rows shown: {rows}");

    // The recycle button recycles the pool's worker.
    cdp.eval("document.getElementById('pool-web-recycle').click(); true")
        .await;
    let start = Instant::now();
    loop {
        let m = pool.members();
        if m.len() == 1 && m[0].pid != pid_before && !m[0].is_draining() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "recycle button did not replace worker {pid_before:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acted = cdp
        .eval("JSON.stringify(window.roostDashboard.actions)")
        .await;
    assert!(
        acted
            .as_str()
            .unwrap()
            .contains(r#""action":"recycle","ok":true"#),
        "{acted}"
    );
    let status = sup.status("web").unwrap();
    assert_eq!(status.recycle_history.len(), 1);
    // Labelled as what it was: a manual recycle (not `onDemand`, a startMode).
    eval_until(
        &mut cdp,
        "the recycle labelled manual",
        "document.querySelector('#pool-web .recycles').textContent.includes('manual ×1')",
        Duration::from_secs(10),
    )
    .await;
    // The queue discipline's state and sheds (issue 17).
    eval_until(
        &mut cdp,
        "the pool's queue discipline",
        "document.querySelector('#pool-web .discipline').textContent === 'queue fifo: not shedding · shed 0'",
        Duration::from_secs(10),
    )
    .await;

    // The buttons follow the pool's state, and stop asks first: declined, the pool serves.
    eval_until(
        &mut cdp,
        "start disabled while the pool runs",
        "document.getElementById('pool-web-start').disabled === true \
         && document.getElementById('pool-web-stop').disabled === false",
        Duration::from_secs(10),
    )
    .await;
    cdp.eval(
        "window.confirm = () => false; document.getElementById('pool-web-stop').click(); true",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pool.snapshot().state.as_str(), "Started");
    // Confirmed: stopped, and then only start is offered.
    cdp.eval("window.confirm = () => true; document.getElementById('pool-web-stop').click(); true")
        .await;
    eval_until(
        &mut cdp,
        "only start offered once stopped",
        "document.getElementById('pool-web-start').disabled === false \
         && document.getElementById('pool-web-stop').disabled === true \
         && document.getElementById('pool-web-recycle').disabled === true",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(pool.snapshot().state.as_str(), "Stopped");
    cdp.eval("document.getElementById('pool-web-start').click(); true")
        .await;
    let ok = eventually(Duration::from_secs(10), || {
        pool.snapshot().state.as_str() == "Started"
    })
    .await;
    assert!(ok, "start button");

    let errors = cdp.errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        let _ = t.await;
    }
    drop(browser);
    admin.shutdown();
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn farm_servers_and_the_latest_snapshot_in_headless_chromium() {
    let Some(chromium) = chromium_or_skip("farm_servers_and_the_latest_snapshot") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("rd")
        .tempdir_in("/tmp")
        .unwrap();
    let live = Backend::start("live").await;
    let dead = format!("127.0.0.1:{}", dead_port().await);
    // `web`: a live and a dead server (the dead one is ejected by default); `gone`: only
    // a dead server, ejected through a written-out `outlierDetection` (the default keeps a
    // farm's last server), so nothing can serve: critical, a snapshot.
    let yaml = format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: web}}, {{path: /gone, pool: gone}}]
pools:
  web:
    farm:
      servers: [{{address: "{}"}}, {{address: "{dead}"}}]
  gone:
    queueTimeout: 1s
    farm:
      servers: [{{address: "{dead}"}}]
      outlierDetection: {{consecutiveFailures: 5}}
diagnose: {{snapshotDir: "{}"}}
"#,
        live.addr,
        dir.path().join("snaps").display()
    );
    let s = serve_with_admin(&yaml, false, None, dir.path(), Duration::from_millis(250)).await;
    let addr = s.addr;
    let load: Vec<_> = ["/x", "/gone/x"]
        .into_iter()
        .map(|path| {
            tokio::spawn(async move {
                loop {
                    let _ = get(addr, "t", path).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    let (browser, mut cdp) = open_dashboard(&chromium, s.admin.addr()).await;
    // The farm's servers: state, latency, in flight, ejections, health check.
    let row = |server: &str| format!("#pool-web .servers tr[data-server='{server}']");
    eval_until(
        &mut cdp,
        "the dead server shown ejected",
        &format!(
            "(() => {{ const r = document.querySelector(\"{}\"); \
             return !!r && r.cells[1].textContent.startsWith('ejected') \
             && r.cells[6].textContent === '1'; }})()",
            row(&dead)
        ),
        Duration::from_secs(20),
    )
    .await;
    let cells = cdp
        .eval(&format!(
            "Array.from(document.querySelector(\"{}\").cells).map(c => c.textContent).join('|')",
            row(&live.addr.to_string())
        ))
        .await;
    let cells = cells.as_str().unwrap().to_string();
    assert!(
        cells.contains("|healthy|") && cells.contains("ms|"),
        "{cells}"
    );
    assert!(cells.ends_with("|not checked"), "{cells}");
    // The latest evidence snapshot, from the critical finding on `gone`.
    eval_until(
        &mut cdp,
        "the latest snapshot",
        "!!document.querySelector('#snapshot details summary') && \
         document.querySelector('#snapshot summary').textContent.includes('gone')",
        Duration::from_secs(30),
    )
    .await;
    let text = cdp
        .eval("document.querySelector('#snapshot').textContent")
        .await;
    assert!(
        text.as_str().unwrap().contains("requests in flight"),
        "{text}"
    );
    let errors = cdp.errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    for t in load {
        t.abort();
    }
    drop(browser);
    s.admin.shutdown();
}
