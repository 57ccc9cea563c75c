//! Front-door benchmark (issue "front door"): one machine, one run.
//!
//! 1. Small keep-alive responses, direct to a backend vs through `roost serve` (a farm
//!    pool over the same backend), interleaved repetitions → throughput, p50/p99, ratio.
//! 2. The cost of a `QueueFull` rejection at 10x overload: a pool of one slot in front of
//!    a slow backend, offered ten times what it can take → p99 of the 503s, and roost's
//!    resident memory before and after.
//!
//! Run: `cargo bench --bench front` (env: BENCH_SECS per run, default 5; BENCH_CONNS, 64).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small hyper backend on its own runtime threads: `/` answers 13 bytes, `/slow`
/// waits 50 ms.
fn start_backend() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            loop {
                let (s, _) = l.accept().await.unwrap();
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"hello, world\n",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Roost {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Roost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_roost(backend: SocketAddr, slots: usize, queue: usize) -> Roost {
    let port = free_port();
    let admin = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.yaml");
    std::fs::write(
        &cfg,
        format!(
            "sites:\n  - name: b\n    bindings: [{{listen: \"127.0.0.1:{port}\"}}]\n    applications: [{{path: /, pool: p}}]\n\
             pools:\n  p:\n    queueLength: {queue}\n    farm:\n      servers: [{{address: \"{backend}\", maxConcurrentRequests: {slots}}}]\n\
             admin: {{listen: \"127.0.0.1:{admin}\"}}\n"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["serve", "-c"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start roost");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "roost did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Roost {
        child,
        addr,
        _dir: dir,
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    statuses: Vec<(u16, usize)>,
}

/// `conns` keep-alive HTTP/1.1 connections sending `path` back to back for `secs`.
/// With `pace`, each connection waits that long between requests (an open-ish load).
async fn load(
    addr: SocketAddr,
    path: &'static str,
    conns: usize,
    secs: u64,
    pace: Option<Duration>,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            let s = TcpStream::connect(addr).await.unwrap();
            let _ = s.set_nodelay(true);
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .unwrap();
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let req = Request::get(path)
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let Ok(resp) = tx.send_request(req).await else {
                    break;
                };
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                lat.push(t.elapsed());
                *statuses.entry(status).or_default() += 1;
                if let Some(p) = pace {
                    tokio::time::sleep(p).await;
                }
            }
            (lat, statuses)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for t in tasks {
        let (l, s) = t.await.unwrap();
        all.extend(l);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let q = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    Run {
        rps: all.len() as f64 / elapsed,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        statuses: statuses.into_iter().collect(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = env_or("BENCH_SECS", 5);
    let conns = env_or("BENCH_CONNS", 64) as usize;
    let reps = env_or("BENCH_REPS", 3);
    let backend = start_backend();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    println!("## Small keep-alive responses, {conns} connections, {secs}s x {reps} interleaved");
    let roost = start_roost(backend, 10_000, 1000);
    let (mut d_rps, mut r_rps, mut d_p99, mut r_p99, mut d_p50, mut r_p50) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    rt.block_on(async {
        for _ in 0..reps {
            let d = load(backend, "/", conns, secs, None).await;
            let r = load(roost.addr, "/", conns, secs, None).await;
            println!(
                "direct {:>9.0} req/s p50 {:.2} ms p99 {:.2} ms | roost {:>9.0} req/s p50 {:.2} ms p99 {:.2} ms  {:?}",
                d.rps, d.p50_ms, d.p99_ms, r.rps, r.p50_ms, r.p99_ms, r.statuses
            );
            d_rps.push(d.rps);
            r_rps.push(r.rps);
            d_p50.push(d.p50_ms);
            r_p50.push(r.p50_ms);
            d_p99.push(d.p99_ms);
            r_p99.push(r.p99_ms);
        }
    });
    let (dr, rr) = (median(d_rps), median(r_rps));
    println!("| path | req/s (median) | p50 ms | p99 ms |\n|---|---|---|---|");
    println!(
        "| direct | {dr:.0} | {:.2} | {:.2} |",
        median(d_p50),
        median(d_p99)
    );
    println!(
        "| through roost | {rr:.0} | {:.2} | {:.2} |",
        median(r_p50),
        median(r_p99)
    );
    println!("ratio roost/direct: {:.2}", rr / dr);
    drop(roost);

    println!("\n## QueueFull at 10x overload: 1 slot, 50 ms backend (20 req/s), queueLength 10, 200 req/s offered");
    let roost = start_roost(backend, 1, 10);
    let pid = roost.child.id();
    rt.block_on(async {
        // Warm up the connections, then measure.
        let _ = load(roost.addr, "/", 4, 1, None).await;
        let before = rss_kib(pid);
        // 40 connections each pacing 200 ms ≈ 200 req/s offered against 20 req/s capacity.
        let r = load(
            roost.addr,
            "/slow",
            40,
            secs,
            Some(Duration::from_millis(200)),
        )
        .await;
        let after = rss_kib(pid);
        println!("statuses {:?}", r.statuses);
        println!(
            "all responses: p50 {:.3} ms p99 {:.3} ms",
            r.p50_ms, r.p99_ms
        );
        // The 503s alone: measure them directly with the queue kept full.
        let filler = tokio::spawn(load(roost.addr, "/slow", 12, secs + 1, None));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rej = load(roost.addr, "/slow", 8, secs.min(3), None).await;
        let _ = filler.await;
        println!(
            "QueueFull responses while the queue is full: {:.0}/s, p50 {:.3} ms, p99 {:.3} ms {:?}",
            rej.rps, rej.p50_ms, rej.p99_ms, rej.statuses
        );
        println!(
            "roost RSS before {before} KiB, after {after} KiB ({:+} KiB)",
            after as i64 - before as i64
        );
    });
}
