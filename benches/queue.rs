//! The pool queue under overload (issue 17): open-loop load at 1x, 2x and 5x a pool's
//! capacity, `queueDiscipline: fifo` against `adaptive` and against HAProxy's bounded
//! queue with the same slots, in one run.
//!
//! Set-up, all in this process on 127.0.0.1: a hyper backend that sleeps `QBENCH_MS`
//! (20) ms per request and never limits concurrency; a roost front with one farm pool of
//! `QBENCH_SLOTS` (4) slots (`maxConcurrentRequests`), so its capacity is slots / service
//! time (200 req/s), `queueLength: 1000`, `queueTimeout: QBENCH_QUEUE_TIMEOUT_MS` (2000)
//! ms; adaptive with the defaults (target 5 ms, interval 100 ms; `QBENCH_TARGET_MS`,
//! `QBENCH_INTERVAL_MS` set them). The generator sends
//! Poisson arrivals on a clock (not after answers) for `QBENCH_SECS` (4) s per cell over
//! reused keep-alive connections, and times each request from its *intended* send time.
//!
//! HAProxy (`QBENCH_HAPROXY`, default `/usr/sbin/haproxy`; skipped if absent) runs as a
//! child process in front of the same backend: one server with `maxconn` = the slots and
//! `maxqueue 1000`, `timeout queue` = roost's `queueTimeout`, keep-alive both sides.
//!
//! Reported per cell: goodput (answers 200 within 10x the service time, per second),
//! p50/p99 of served requests, rejections and their p50/p99, and what the pool counted.
//!
//! Run: `cargo bench --bench queue` (about 30 s).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rand::Rng;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A backend whose every request takes `ms` (a sleep: capacity comes from the pool's
/// slots, not from CPU).
async fn start_backend(ms: u64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// HAProxy's configuration for the same pool: `maxconn` per server = slots,
/// `timeout queue` = `queueTimeout`, a queue of at most 1000 per server.
fn haproxy_cfg(
    listen: SocketAddr,
    backend: SocketAddr,
    slots: u64,
    queue_timeout_ms: u64,
) -> String {
    format!(
        "global\n  maxconn 8000\n  nbthread 2\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 timeout queue {queue_timeout_ms}ms\n  option http-keep-alive\n\
         frontend f\n  bind {listen}\n  default_backend b\n\
         backend b\n  server s1 {backend} maxconn {slots} maxqueue 1000\n"
    )
}

/// HAProxy started on a free port, killed on drop.
struct Haproxy {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    async fn start(
        bin: &str,
        backend: SocketAddr,
        slots: u64,
        queue_timeout_ms: u64,
    ) -> Option<Haproxy> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?;
        let dir = tempfile::tempdir().ok()?;
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_cfg(addr, backend, slots, queue_timeout_ms)).ok()?;
        let child = std::process::Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let h = Haproxy {
            child,
            addr,
            _dir: dir,
        };
        for _ in 0..200 {
            if TcpStream::connect(addr).await.is_ok() {
                return Some(h);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `queueTargetDelay`/`queueInterval` lines from `QBENCH_TARGET_MS`/`QBENCH_INTERVAL_MS`
/// (unset: the discipline's defaults, 5 ms and 100 ms).
fn adaptive_knobs() -> String {
    let mut out = String::new();
    for (var, key) in [
        ("QBENCH_TARGET_MS", "queueTargetDelay"),
        ("QBENCH_INTERVAL_MS", "queueInterval"),
    ] {
        if let Ok(ms) = std::env::var(var) {
            out.push_str(&format!("    {key}: {ms}ms\n"));
        }
    }
    out
}

fn yaml(backend: SocketAddr, slots: u64, discipline: &str, queue_timeout_ms: u64) -> String {
    let knobs = adaptive_knobs();
    format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: p}}]
pools:
  p:
    queueLength: 1000
    queueTimeout: {queue_timeout_ms}ms
    queueDiscipline: {discipline}
{knobs}    retryAfter: auto
    farm:
      servers:
        - {{address: "{backend}", maxConcurrentRequests: {slots}}}
"#
    )
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// Idle keep-alive connections to the front, reused so the generator measures queueing,
/// not connection set-up.
struct Conns {
    addr: SocketAddr,
    idle: Mutex<Vec<Sender>>,
}

impl Conns {
    async fn take(&self) -> Option<Sender> {
        loop {
            let c = self.idle.lock().pop();
            let Some(mut c) = c else { break };
            if c.ready().await.is_ok() {
                return Some(c);
            }
        }
        let stream = TcpStream::connect(self.addr).await.ok()?;
        stream.set_nodelay(true).ok()?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        Some(tx)
    }
}

/// One request's outcome: status (0 = transport failure) and latency from the intended
/// send time.
type Outcome = (u16, Duration);

async fn one(conns: Arc<Conns>, intended: Instant) -> Outcome {
    let Some(mut tx) = conns.take().await else {
        return (0, intended.elapsed());
    };
    let req = Request::get("/")
        .header("host", "x")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let status = match tx.send_request(req).await {
        Ok(resp) => {
            let s = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            s
        }
        Err(_) => 0,
    };
    let at = intended.elapsed();
    conns.idle.lock().push(tx);
    (status, at)
}

/// Poisson arrivals at `rate`/s for `secs`; every request runs on its own task.
async fn open_loop(addr: SocketAddr, rate: f64, secs: u64) -> (Vec<Outcome>, Duration) {
    let conns = Arc::new(Conns {
        addr,
        idle: Mutex::new(Vec::new()),
    });
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut next = start;
    let mut tasks = Vec::new();
    let mut rng = rand::thread_rng();
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        tasks.push(tokio::spawn(one(conns.clone(), next)));
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        next += Duration::from_secs_f64(-u.ln() / rate);
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    (out, start.elapsed())
}

fn pct(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

struct Cell {
    discipline: &'static str,
    load: f64,
}

fn report(cell: &Cell, outcomes: &[Outcome], wall: Duration, service: Duration, capacity: f64) {
    let mut served: Vec<Duration> = Vec::new();
    let mut rejected: Vec<Duration> = Vec::new();
    let mut failed = 0;
    for (s, d) in outcomes {
        match *s {
            200 => served.push(*d),
            429 | 503 => rejected.push(*d),
            _ => failed += 1,
        }
    }
    served.sort();
    rejected.sort();
    let good = served.iter().filter(|d| **d <= service * 10).count();
    let secs = wall.as_secs_f64();
    println!(
        "| {:<8} | {:>3.0}x | {:>6} | {:>7.0} ({:>3.0} %) | {:>7.1} | {:>7.1} | {:>6} | {:>7.1} | {:>7.1} | {:>4} |",
        cell.discipline,
        cell.load,
        outcomes.len(),
        good as f64 / secs,
        100.0 * good as f64 / secs / capacity,
        pct(&served, 0.5),
        pct(&served, 0.99),
        rejected.len(),
        pct(&rejected, 0.5),
        pct(&rejected, 0.99),
        failed,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let ms = env_or("QBENCH_MS", 20);
    let slots = env_or("QBENCH_SLOTS", 4);
    let secs = env_or("QBENCH_SECS", 4);
    let queue_timeout_ms = env_or("QBENCH_QUEUE_TIMEOUT_MS", 2000);
    let service = Duration::from_millis(ms);
    let capacity = slots as f64 / service.as_secs_f64();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let backend = start_backend(ms).await;
        println!(
            "pool: {slots} slots x {ms} ms = capacity {capacity:.0} req/s; queueTimeout {queue_timeout_ms} ms; {secs} s per cell\n"
        );
        println!("| discipline | load | sent | goodput/s (of capacity) | served p50 ms | served p99 ms | rejected | rej. p50 ms | rej. p99 ms | fail |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let haproxy = std::env::var("QBENCH_HAPROXY").unwrap_or_else(|_| "/usr/sbin/haproxy".into());
        for load in [1.0, 2.0, 5.0] {
            match Haproxy::start(&haproxy, backend, slots, queue_timeout_ms).await {
                Some(h) => {
                    let (outcomes, wall) = open_loop(h.addr, capacity * load, secs).await;
                    let cell = Cell { discipline: "haproxy", load };
                    report(&cell, &outcomes, wall, service, capacity);
                }
                None => eprintln!("  haproxy {load}x: {haproxy} did not start; skipped"),
            }
            for discipline in ["fifo", "adaptive"] {
                let cfg = roost::config::load_str(
                    &yaml(backend, slots, discipline, queue_timeout_ms),
                    "bench.yaml",
                )
                .unwrap();
                let front = roost::front::Front::start(cfg, vec![]).await.unwrap();
                let addr = front.bound_addresses()[0].1;
                let (outcomes, wall) = open_loop(addr, capacity * load, secs).await;
                report(&Cell { discipline, load }, &outcomes, wall, service, capacity);
                let snap = front.pool("p").unwrap().snapshot();
                eprintln!("  {discipline} {load}x: pool rejected {:?}", snap.rejected);
                front.shutdown(Duration::from_millis(200)).await;
            }
        }
    });
}
