//! Hitless binary upgrade with real processes: SIGUSR2 starts a new `roost serve` with
//! the listening sockets inherited; the old one drains and exits. Clients sending
//! requests all along see no failure.

use crate::support::*;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request on a fresh connection (`Connection: close`): its status, 0 on any error.
async fn one_request(addr: &str, path: &str) -> u16 {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await {
        Ok(Ok(_)) => String::from_utf8_lossy(&out)
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[derive(Default)]
struct Load {
    ok: AtomicUsize,
    failed: AtomicUsize,
    slowest_us: AtomicUsize,
    stop: AtomicBool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_upgrade_of_a_web_farm_loses_no_request_under_load() {
    let backend = Backend::start("b").await;
    let pool = format!(
        "{{farm: {{servers: [{{address: \"{}\", maxConcurrentRequests: 64}}]}}}}",
        backend.addr
    );
    upgrade_under_load(&pool, "/r").await;
}

/// A web garden: the new process starts its own workers and is ready only once they
/// answer; the old process's workers drain and stop with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_upgrade_of_a_web_garden_loses_no_request() {
    let pool = "{startMode: alwaysRunning, processModel: {maxProcesses: 2}, worker: {app: demo}}";
    upgrade_under_load(pool, "/").await;
}

async fn upgrade_under_load(pool_yaml: &str, path: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin, public) = (free_port(), free_port(), free_port());
    let f = dir.path().join("proxy.yaml");
    std::fs::write(
        &f,
        format!(
            "sites:\n  - name: s\n    bindings: [{{listen: \"127.0.0.1:{port}\"}}]\n    applications: [{{path: /, pool: p}}]\n\
             pools:\n  p: {pool_yaml}\n\
             admin: {{listen: \"127.0.0.1:{admin}\", public: {{listen: \"127.0.0.1:{public}\"}}}}\n"
        ),
    )
    .unwrap();
    let mut old = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["serve", "-c"])
        .arg(&f)
        .env("ROOST_LOG_FORMAT", "plain")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let old_pid = old.id().unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut lines = tokio::io::BufReader::new(old.stdout.take().unwrap()).lines();
    let l2 = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            l2.lock().unwrap().push(l);
        }
    });
    let public = format!("127.0.0.1:{public}");
    let front = format!("127.0.0.1:{port}");
    let up = async {
        while one_request(&public, "/readyz").await != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), up)
        .await
        .expect("ready");

    // Four clients, each a new connection per request, all the way through.
    let load = Arc::new(Load::default());
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (load, front) = (load.clone(), front.clone());
            tokio::spawn(async move {
                while !load.stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let status = one_request(&front, path).await;
                    let us = t.elapsed().as_micros() as usize;
                    load.slowest_us.fetch_max(us, Ordering::Relaxed);
                    match status {
                        200 => load.ok.fetch_add(1, Ordering::Relaxed),
                        _ => load.failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let served = |n: usize| {
        let load = load.clone();
        async move {
            while load.ok.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), served(200))
        .await
        .unwrap();
    let before = load.ok.load(Ordering::Relaxed);
    let slowest_before = load.slowest_us.swap(0, Ordering::Relaxed);

    if path == "/" {
        let pid = nix::unistd::Pid::from_raw(old_pid as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2).unwrap();
    } else {
        // The garden's upgrade is asked for through the admin API, as an operator would.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
            .args([
                "ctl",
                "--admin",
                &format!("http://127.0.0.1:{admin}"),
                "upgrade",
            ])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("binary upgrade started"));
    }
    let exit = tokio::time::timeout(Duration::from_secs(90), old.wait())
        .await
        .expect("the old process exits after the hand-over")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    // Only the new process serves now; keep the load on it for a while.
    let after_exit = load.ok.load(Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(60), served(after_exit + 200))
        .await
        .unwrap();
    load.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let text = log.lock().unwrap().join("\n");
    let new_pid: u32 = text
        .lines()
        .find(|l| l.contains("the new process is ready"))
        .and_then(|l| l.split("pid=").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no hand-over in the log:\n{text}"));
    let ok = load.ok.load(Ordering::Relaxed);
    let failed = load.failed.load(Ordering::Relaxed);
    let slowest = load.slowest_us.load(Ordering::Relaxed);
    println!(
        "upgrade under load ({pool_yaml}): {before} requests before (slowest {:.1} ms), {} during and after the hand-over, {failed} failed, slowest {:.1} ms",
        slowest_before as f64 / 1000.0,
        ok - before,
        slowest as f64 / 1000.0
    );
    let still = alive(new_pid);
    // The new process answers on the inherited admin.public socket (the old one is gone).
    let ready_after = one_request(&public, "/readyz").await;
    if still {
        let p = nix::unistd::Pid::from_raw(new_pid as i32);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
    }
    assert!(still, "the new process {new_pid} is not running");
    assert_eq!(failed, 0, "requests failed across the upgrade:\n{text}");
    assert!(text.contains("listening socket inherited"), "{text}");
    assert_eq!(ready_after, 200);
    let gone = async {
        while alive(new_pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), gone)
        .await
        .expect("new process stops");
}

/// A new binary that fails `roost check` (here: the config file broke since start) is
/// refused: the old process keeps serving and stays ready.
#[tokio::test]
async fn a_failing_check_refuses_the_upgrade_and_the_old_process_serves_on() {
    refused_upgrade(false, "roost check").await;
}

/// The container image switches upgrades off (`ROOST_UPGRADE=off`).
#[tokio::test]
async fn upgrade_off_refuses_the_upgrade() {
    refused_upgrade(true, "ROOST_UPGRADE=off").await;
}

async fn refused_upgrade(off: bool, expect: &str) {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let (port, public) = (free_port(), free_port());
    let f = dir.path().join("proxy.yaml");
    std::fs::write(
        &f,
        format!(
            "sites:\n  - name: s\n    bindings: [{{listen: \"127.0.0.1:{port}\"}}]\n    applications: [{{path: /, pool: p}}]\n\
             pools:\n  p: {{farm: {{servers: [{{address: \"{}\"}}]}}}}\n\
             admin: {{listen: \"127.0.0.1:0\", public: {{listen: \"127.0.0.1:{public}\"}}}}\n",
            backend.addr
        ),
    )
    .unwrap();
    let mut old = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["serve", "-c"])
        .arg(&f)
        .env("ROOST_UPGRADE", if off { "off" } else { "on" })
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(old.stdout.take().unwrap()).lines();
    let public = format!("127.0.0.1:{public}");
    let up = async {
        while one_request(&public, "/readyz").await != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), up)
        .await
        .expect("ready");
    if !off {
        std::fs::write(&f, "sites: [oops\n").unwrap();
    }
    let pid = nix::unistd::Pid::from_raw(old.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2).unwrap();
    let refused = async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("binary upgrade refused") {
                return l;
            }
        }
        panic!("roost's log ended");
    };
    let line = tokio::time::timeout(Duration::from_secs(60), refused)
        .await
        .expect("the upgrade is refused");
    assert!(line.contains(expect), "{line}");
    assert_eq!(one_request(&public, "/readyz").await, 200);
    assert_eq!(one_request(&format!("127.0.0.1:{port}"), "/x").await, 200);
    assert!(old.try_wait().unwrap().is_none(), "the old process exited");
}
