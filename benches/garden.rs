//! Web garden benchmark (issue "supervisor"), one machine, one run:
//!
//! 1. Small keep-alive responses through roost to built-in workers over Unix sockets
//!    (a garden of 2) versus a farm pool pointing at a `roost worker` over TCP (the same
//!    worker code), interleaved repetitions → throughput and the ratio garden/farm.
//! 2. Ten overlapped recycles of the garden while load runs → the count of failed
//!    requests (must be 0).
//!
//! Run: `cargo bench --bench garden` (env: BENCH_SECS per run, default 3; BENCH_CONNS, 32).

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use roost::supervisor::{Supervisor, SupervisorOptions};
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// `conns` keep-alive connections sending GET / with `host` until `stop`; a connection
/// that breaks reconnects (a failed request is counted, not hidden).
async fn load(
    addr: SocketAddr,
    host: &'static str,
    conns: usize,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (stop, counts) = (stop.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            'outer: while !stop.load(Ordering::Relaxed) {
                let Ok(s) = TcpStream::connect(addr).await else {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let _ = s.set_nodelay(true);
                let Ok((mut tx, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(s)).await
                else {
                    continue;
                };
                tokio::spawn(conn);
                while !stop.load(Ordering::Relaxed) {
                    let req = Request::get("/")
                        .header("host", host)
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    match tx.send_request(req).await {
                        Ok(resp) => {
                            let ok = resp.status().is_success();
                            let body = resp.into_body().collect().await;
                            if ok && body.is_ok() {
                                counts.ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                counts.failed.fetch_add(1, Ordering::Relaxed);
                                continue 'outer;
                            }
                        }
                        Err(_) => {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                            continue 'outer;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn run_for(addr: SocketAddr, host: &'static str, conns: usize, secs: u64) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let started = Instant::now();
    let l = tokio::spawn(load(addr, host, conns, stop.clone(), counts.clone()));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = l.await;
    let ok = counts.ok.load(Ordering::Relaxed);
    (
        ok as f64 / started.elapsed().as_secs_f64(),
        counts.failed.load(Ordering::Relaxed),
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = env_or("BENCH_SECS", 3);
    let conns = env_or("BENCH_CONNS", 32) as usize;
    let exe = env!("CARGO_BIN_EXE_roost");

    // The farm's server: a standalone `roost worker` on a loopback port.
    let mut worker = std::process::Command::new(exe)
        .args(["worker", "--app", "demo", "--listen", "tcp:127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start roost worker");
    let mut line = String::new();
    std::io::BufReader::new(worker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let tcp = line.trim().rsplit("tcp:").next().unwrap().to_string();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let yaml = format!(
            "sites:\n\
             - name: g\n  bindings: [{{listen: \"127.0.0.1:0\"}}]\n  hostNames: [garden]\n  applications: [{{path: /, pool: garden}}]\n\
             - name: f\n  bindings: [{{listen: \"127.0.0.1:0\"}}]\n  hostNames: [farm]\n  applications: [{{path: /, pool: farm}}]\n\
             pools:\n\
             \x20 garden: {{startMode: alwaysRunning, processModel: {{maxProcesses: 2, maxConcurrentRequestsPerProcess: 100}}}}\n\
             \x20 farm: {{farm: {{servers: [{{address: \"{tcp}\", maxConcurrentRequests: 200}}]}}}}\n"
        );
        let cfg = roost::config::load_str(&yaml, "bench.yaml").unwrap_or_else(|e| panic!("{e}"));
        let sup = Supervisor::new(SupervisorOptions {
            roost_exe: exe.into(),
            runtime_dir: None,
        });
        let front = roost::front::Front::start(cfg, vec![sup.clone()]).await.unwrap();
        let addr = front.bound_addresses()[0].1;
        let garden = front.pool("garden").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while garden.members().len() < 2 {
            assert!(Instant::now() < deadline, "garden did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        println!("## Garden (Unix sockets, 2 workers) vs farm (TCP, 1 worker), {conns} connections, {secs}s x 3");
        let (mut g, mut f) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (gr, gf) = run_for(addr, "garden", conns, secs).await;
            let (fr, ff) = run_for(addr, "farm", conns, secs).await;
            println!("garden {gr:>8.0} req/s ({gf} failed) | farm {fr:>8.0} req/s ({ff} failed)");
            g.push(gr);
            f.push(fr);
        }
        g.sort_by(|a, b| a.total_cmp(b));
        f.sort_by(|a, b| a.total_cmp(b));
        println!("median garden {:.0} req/s, farm {:.0} req/s, ratio garden/farm {:.2}", g[1], f[1], g[1] / f[1]);

        println!("\n## 10 overlapped recycles of the garden under load");
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts {
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let l = tokio::spawn(load(addr, "garden", conns, stop.clone(), counts.clone()));
        let pids_before: Vec<u32> = garden.members().iter().filter_map(|m| m.pid).collect();
        for i in 0..10 {
            // One pool recycle replaces every worker (staggered, overlapped): wait until
            // the garden is back to two workers, none of them from before.
            let old: Vec<u32> = garden.members().iter().filter_map(|m| m.pid).collect();
            sup.recycle("garden").unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let now: Vec<u32> = garden.members().iter().filter(|m| m.usable()).filter_map(|m| m.pid).collect();
                if now.len() == 2 && now.iter().all(|p| !old.contains(p)) {
                    break;
                }
                assert!(Instant::now() < deadline, "recycle {i} did not finish");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let _ = l.await;
        let pids_after: Vec<u32> = garden.members().iter().filter_map(|m| m.pid).collect();
        println!(
            "requests ok {}, failed {}; pids before {pids_before:?}, after {pids_after:?}",
            counts.ok.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed)
        );
        front.shutdown(Duration::from_secs(5)).await;
        sup.shutdown().await;
    });
    let _ = worker.kill();
    let _ = worker.wait();
}
