//! roost under a service manager, as the real binary runs: the sd_notify sequence on a
//! test `NOTIFY_SOCKET`, and the readiness probes on `admin.public`.

use crate::support::*;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `alwaysRunning` garden pool of one built-in worker, and admin + admin.public.
fn garden_config(dir: &Path, port: u16, admin: u16, public: u16) -> PathBuf {
    let f = dir.join("proxy.yaml");
    std::fs::write(
        &f,
        format!(
            "sites:\n  - name: s\n    bindings: [{{listen: \"127.0.0.1:{port}\"}}]\n    applications: [{{path: /, pool: g}}]\n\
             pools:\n  g:\n    startMode: alwaysRunning\n    processModel: {{maxProcesses: 1}}\n    worker: {{app: demo}}\n\
             admin: {{listen: \"127.0.0.1:{admin}\", public: {{listen: \"127.0.0.1:{public}\"}}}}\n"
        ),
    )
    .unwrap();
    f
}

/// The next datagram that is not a watchdog ping, as its lines; counts the pings seen.
fn next_message(sock: &UnixDatagram, pings: &mut usize, limit: Duration) -> Vec<String> {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no sd_notify message within {limit:?}");
        sock.set_read_timeout(Some(left)).unwrap();
        let n = sock.recv(&mut buf).expect("an sd_notify message");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines == ["WATCHDOG=1"] {
            *pings += 1;
            continue;
        }
        return lines;
    }
}

fn has(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == line)
}

/// Pids of the direct children of `pid` (its worker processes).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

/// `GET path` over a fresh connection: the status code, or 0 when nothing answers.
async fn http_status(addr: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    if !matches!(read, Ok(Ok(_))) {
        return 0;
    }
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

async fn status_of(addr: &str) -> u16 {
    http_status(addr, "/readyz").await
}

#[tokio::test]
async fn notify_ready_reloading_stopping_and_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let (port, admin, public) = (free_port(), free_port(), free_port());
    let f = garden_config(dir.path(), port, admin, public);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["serve", "-c"])
        .arg(&f)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let sock = std::sync::Arc::new(sock);
    let mut pings = 0usize;

    // READY=1 comes only once the listener is bound and the worker answers: a request
    // right after it is served by the worker, and /readyz agrees.
    let (s2, mut p) = (sock.clone(), pings);
    let (ready, p) = tokio::task::spawn_blocking(move || {
        let m = next_message(&s2, &mut p, Duration::from_secs(60));
        (m, p)
    })
    .await
    .unwrap();
    pings = p;
    assert!(has(&ready, "READY=1"), "first message: {ready:?}");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, _, body) = get(addr, "x", "/").await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(status_of(&format!("127.0.0.1:{public}")).await, 200);

    // Workers never see the manager's variables.
    let workers = children(pid);
    assert!(!workers.is_empty(), "no worker process under {pid}");
    for w in workers {
        let env = std::fs::read(format!("/proc/{w}/environ")).unwrap_or_default();
        let env = String::from_utf8_lossy(&env);
        assert!(
            !env.contains("NOTIFY_SOCKET="),
            "worker {w} has NOTIFY_SOCKET"
        );
        assert!(
            !env.contains("WATCHDOG_USEC="),
            "worker {w} has WATCHDOG_USEC"
        );
    }

    // SIGHUP: RELOADING=1 (with MONOTONIC_USEC), then READY=1.
    let roost = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(roost, nix::sys::signal::Signal::SIGHUP).unwrap();
    let s2 = sock.clone();
    let (reloading, again, p) = tokio::task::spawn_blocking(move || {
        let a = next_message(&s2, &mut pings, Duration::from_secs(30));
        let b = next_message(&s2, &mut pings, Duration::from_secs(30));
        (a, b, pings)
    })
    .await
    .unwrap();
    pings = p;
    assert!(has(&reloading, "RELOADING=1"), "{reloading:?}");
    assert!(
        reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    assert!(has(&again, "READY=1"), "{again:?}");

    // SIGTERM: STOPPING=1, then a clean exit.
    nix::sys::signal::kill(roost, nix::sys::signal::Signal::SIGTERM).unwrap();
    let s2 = sock.clone();
    let (stopping, pings) = tokio::task::spawn_blocking(move || {
        let m = next_message(&s2, &mut pings, Duration::from_secs(30));
        (m, pings)
    })
    .await
    .unwrap();
    assert!(has(&stopping, "STOPPING=1"), "{stopping:?}");
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    // 300 ms watchdog, pinged every 150 ms: the run above lasted well over that.
    assert!(pings >= 1, "no WATCHDOG=1 seen");
}

#[tokio::test]
async fn without_notify_socket_nothing_is_sent_and_serve_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin, public) = (free_port(), free_port(), free_port());
    let f = garden_config(dir.path(), port, admin, public);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["serve", "-c"])
        .arg(&f)
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let public = format!("127.0.0.1:{public}");
    let mut ready = false;
    for _ in 0..1500 {
        if status_of(&public).await == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "/readyz never answered 200");
    let roost = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(roost, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

fn body_of(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

async fn wait_answering(addr: &str) {
    for _ in 0..1500 {
        if http_status(addr, "/livez").await == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} never answered /livez");
}

/// A pool whose worker never answers its ping keeps roost `starting`: /readyz 503,
/// /livez 200. The public listener serves /metrics and nothing of the API.
#[tokio::test]
async fn readyz_waits_for_the_first_worker_and_public_serves_only_probes() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin, public) = (free_port(), free_port(), free_port());
    let f = dir.path().join("proxy.yaml");
    std::fs::write(
        &f,
        format!(
            "sites:\n  - name: s\n    bindings: [{{listen: \"127.0.0.1:{port}\"}}]\n    applications: [{{path: /, pool: g}}]\n\
             pools:\n  g:\n    startMode: alwaysRunning\n    processModel: {{maxProcesses: 1, command: /bin/sleep, args: [\"60\"], pingPath: /health}}\n\
             admin: {{listen: \"127.0.0.1:{admin}\", public: {{listen: \"127.0.0.1:{public}\"}}}}\n"
        ),
    )
    .unwrap();
    let _child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["serve", "-c"])
        .arg(&f)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let public = format!("127.0.0.1:{public}");
    let admin = format!("127.0.0.1:{admin}");
    wait_answering(&public).await;
    let r = body_of(&public, "/readyz");
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("\"starting\""), "{r}");
    assert_eq!(http_status(&admin, "/readyz").await, 503);
    assert_eq!(http_status(&public, "/metrics").await, 200);
    assert_eq!(http_status(&public, "/api/v1/pools").await, 404);
    assert_eq!(http_status(&public, "/").await, 404);
}

/// From the first moment of a drain, /readyz says 503 `draining` (while /livez stays
/// 200), so a load balancer stops sending before the listeners close.
#[tokio::test]
async fn readyz_is_503_while_draining() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin, public) = (free_port(), free_port(), free_port());
    let f = dir.path().join("proxy.yaml");
    std::fs::write(
        &f,
        format!(
            "sites:\n  - name: s\n    bindings: [{{listen: \"127.0.0.1:{port}\"}}]\n    applications: [{{path: /, pool: p}}]\n\
             pools:\n  p: {{farm: {{servers: [{{address: \"{}\"}}]}}}}\n\
             admin: {{listen: \"127.0.0.1:{admin}\", public: {{listen: \"127.0.0.1:{public}\"}}}}\n",
            backend.addr
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["serve", "-c"])
        .arg(&f)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let public = format!("127.0.0.1:{public}");
    wait_answering(&public).await;
    assert!(
        eventually(Duration::from_secs(20), || body_of(&public, "/readyz")
            .starts_with("HTTP/1.1 200"))
        .await
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let inflight = tokio::spawn(async move { get(addr, "x", "/slow?ms=3000").await });
    let active = || backend.active.load(std::sync::atomic::Ordering::SeqCst) == 1;
    assert!(eventually(Duration::from_secs(10), active).await);
    let roost = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(roost, nix::sys::signal::Signal::SIGTERM).unwrap();
    let draining = || body_of(&public, "/readyz").contains("\"draining\"");
    assert!(eventually(Duration::from_secs(10), draining).await);
    assert!(body_of(&public, "/livez").starts_with("HTTP/1.1 200"));
    assert_eq!(inflight.await.unwrap().0.as_u16(), 200);
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn check_names_a_bad_admin_public_listen() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.yaml");
    std::fs::write(
        &f,
        "sites:\n  - name: s\n    bindings: [{listen: \"127.0.0.1:8080\"}]\n    applications: [{path: /, pool: p}]\n\
         pools:\n  p: {farm: {servers: [{address: \"127.0.0.1:9\"}]}}\nadmin: {public: {listen: nowhere}}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["check", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("admin.public.listen") && err.contains("nowhere"),
        "{err}"
    );
}

fn roost_check(cwd: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("check")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `roost check` with no ./proxy.yaml checks the embedded default, as `serve` uses it;
/// a file named with -c must exist.
#[test]
fn check_without_proxy_yaml_checks_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = roost_check(dir.path(), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("embedded default"), "{out}");
    let (code, _, err) = roost_check(dir.path(), &["-c", "missing.yaml"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing.yaml"), "{err}");
}

/// An access log that `serve` could not open fails `check` (exit 2, naming the key);
/// a relative path resolves against the config file's folder, not the current one.
#[test]
fn check_reports_an_access_log_folder_that_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.yaml");
    std::fs::write(
        &f,
        "sites:\n  - name: s\n    bindings: [{listen: \"127.0.0.1:8080\"}]\n    applications: [{path: /, pool: p}]\n\
         pools:\n  p: {farm: {servers: [{address: \"127.0.0.1:9\"}]}}\nlog: {access: {path: logs/access.log}}\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let fs = f.to_str().unwrap();
    let (code, _, err) = roost_check(elsewhere.path(), &["-c", fs]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("log.access.path") && err.contains("does not exist"),
        "{err}"
    );
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let (code, _, err) = roost_check(elsewhere.path(), &["-c", fs]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !dir.path().join("logs/access.log").exists(),
        "check created the log"
    );
}

/// The startup log a new user reads: the dashboard URL, the `ROOST_` overrides (a token
/// hidden), and worker output without a doubled level, a doubled listening line or
/// `pid=Some(…)`.
#[tokio::test]
async fn startup_log_names_the_dashboard_and_overrides_and_worker_lines_are_clean() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin, public) = (free_port(), free_port(), free_port());
    let f = garden_config(dir.path(), port, admin, public);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["serve", "-c"])
        .arg(&f)
        .env("ROOST_LIMITS__SHUTDOWNGRACE", "5s")
        .env("ROOST_ADMIN__TOKEN", "s3cret-value")
        .env_remove("RUST_LOG")
        .env_remove("ROOST_LOG_FORMAT")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    let read_until_ready = async {
        while let Some(l) = lines.next_line().await.unwrap() {
            let done = l.ends_with(" ready") || l.contains("INFO ready");
            log.push(l);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_until_ready)
        .await
        .expect("roost logged `ready`");
    let roost = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(roost, nix::sys::signal::Signal::SIGTERM).unwrap();
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
    {
        log.push(l);
    }
    let text = log.join("\n");
    let dashboard = format!("dashboard: http://127.0.0.1:{admin}/?token=<admin.token>");
    assert!(text.contains(&dashboard), "{text}");
    assert!(text.contains("ROOST_LIMITS__SHUTDOWNGRACE=5s"), "{text}");
    assert!(text.contains("ROOST_ADMIN__TOKEN=<hidden>"), "{text}");
    assert!(!text.contains("s3cret-value"), "{text}");
    assert!(text.contains("worker listening"), "{text}");
    assert!(
        !text.contains("INFO  INFO") && !text.contains("roost::worker::"),
        "{text}"
    );
    assert!(!text.contains("pid=Some("), "{text}");
    assert!(!text.contains("listening on unix:"), "{text}");
    assert!(text.contains("worker ready"), "{text}");
}
