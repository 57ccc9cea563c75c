//! The `roost` binary as a user runs it: `--version`, `check`, `serve` with signals.

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn roost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_roost"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn version_prints_the_package_version() {
    let out = roost().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_accepts_the_repository_proxy_yaml() {
    let out = roost()
        .args(["check", "-c"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.yaml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_prints_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.yaml");
    std::fs::write(
        &f,
        "sites:\n  - name: s\n    bindings: [{listen: \"127.0.0.1:99999\"}]\n    applications: [{path: /, pool: defualt}]\npools:\n  default:\n    queueLenght: 5\n    queueTimeout: 10x\n    farm: {servers: [{address: \"127.0.0.1:8081\"}]}\n",
    )
    .unwrap();
    let out = roost().args(["check", "-c"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "broken.yaml:3:",
        "127.0.0.1:99999",
        "did you mean `default`?",
        "queueLenght: unknown key (did you mean `queueLength`?)",
        "queueTimeout",
        "10x",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn serve_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(&f, "sites: []\npools: {p: {queueLength: -1}}\n").unwrap();
    let out = roost().args(["serve", "-c"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("queueLength"));
}

fn write_config(dir: &std::path::Path, port: u16, backend: &str) -> std::path::PathBuf {
    let admin = free_port();
    let f = dir.join("proxy.yaml");
    std::fs::write(
        &f,
        format!(
            "sites:\n  - name: s\n    bindings: [{{listen: \"127.0.0.1:{port}\"}}]\n    applications: [{{path: /, pool: p}}]\n\
             pools:\n  p: {{farm: {{servers: [{{address: \"{backend}\"}}]}}}}\nadmin: {{listen: \"127.0.0.1:{admin}\"}}\n"
        ),
    )
    .unwrap();
    f
}

#[tokio::test]
async fn serve_proxies_reloads_on_sighup_and_drains_on_sigterm() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let f = write_config(dir.path(), port, &a.addr.to_string());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["serve", "-c"])
        .arg(&f)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut up = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "roost serve did not start listening");
    assert_eq!(get(addr, "x", "/one").await.2, "a /one");

    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    // A broken file is refused on SIGHUP; the running configuration stays.
    std::fs::write(&f, "sites: [oops\n").unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(addr, "x", "/two").await.2, "a /two");
    // A good one is applied.
    write_config(dir.path(), port, &b.addr.to_string());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut switched = false;
    for _ in 0..200 {
        if get(addr, "x", "/three").await.2 == "b /three" {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(switched, "reload was not applied");

    // SIGTERM with a request in flight: it finishes, then roost exits 0.
    let inflight = tokio::spawn(async move { get(addr, "x", "/slow?ms=700").await });
    assert!(
        eventually(Duration::from_secs(10), || b
            .active
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1)
        .await
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let (status, _, body) = inflight.await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "b slow "));
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

/// The README's first command, as a new user runs it: the embedded default web garden.
#[tokio::test]
async fn embedded_default_serves_from_a_web_garden() {
    // The embedded default binds 127.0.0.1:8080 (the admin port is moved to a free one
    // through the environment); skip loudly if 8080 is taken on this machine.
    if std::net::TcpListener::bind("127.0.0.1:8080").is_err() {
        eprintln!("SKIP: 127.0.0.1:8080 is in use");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("serve")
        .current_dir(dir.path())
        .env("ROOST_ADMIN__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let mut ok = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok);
    let (s, _, body) = get(addr, "localhost", "/").await;
    assert_eq!((s.as_u16(), body.as_str()), (200, "hello"));
    // Two worker processes answer.
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let mut tx = h1(addr).await;
        let a = tx.send_request(
            http::Request::get("/sleep?ms=100")
                .header("host", "x")
                .body(empty())
                .unwrap(),
        );
        let mut tx2 = h1(addr).await;
        let p = tx2.send_request(
            http::Request::get("/pid")
                .header("host", "x")
                .body(empty())
                .unwrap(),
        );
        let (_, _, pid) = read(p.await.unwrap()).await;
        let _ = a.await;
        pids.insert(pid);
        if pids.len() == 2 {
            break;
        }
    }
    assert_eq!(pids.len(), 2, "{pids:?}");
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

/// Child pids of `pid` (from every thread's `children` list).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// Gone, or a zombie waiting for whoever adopted it.
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .map(|r| r.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

#[tokio::test]
async fn workers_do_not_outlive_a_killed_front() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin = free_port();
    let f = dir.path().join("proxy.yaml");
    std::fs::write(
        &f,
        format!(
            "sites:\n  - name: s\n    bindings: [{{listen: \"127.0.0.1:{port}\"}}]\n    applications: [{{path: /, pool: g}}]\n\
             pools:\n  g: {{startMode: alwaysRunning, processModel: {{maxProcesses: 2}}}}\nadmin: {{listen: \"127.0.0.1:{admin}\"}}\n"
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
    let front = child.id().unwrap();
    assert!(
        eventually(Duration::from_secs(30), || children(front).len() == 2).await,
        "workers did not start"
    );
    // Both workers serve (so they are past start-up and idle) before the front dies.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let mut tx = h1(addr).await;
        let slow = tx.send_request(
            http::Request::get("/sleep?ms=50")
                .header("host", "x")
                .body(empty())
                .unwrap(),
        );
        let mut tx2 = h1(addr).await;
        let p = tx2.send_request(
            http::Request::get("/pid")
                .header("host", "x")
                .body(empty())
                .unwrap(),
        );
        if let Ok(r) = p.await {
            seen.insert(read(r).await.2);
        }
        let _ = slow.await;
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    let workers = children(front);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(front as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait().await;
    assert!(
        eventually(Duration::from_secs(30), || workers
            .iter()
            .all(|w| is_gone(*w)))
        .await,
        "workers {workers:?} outlived the front"
    );
}
