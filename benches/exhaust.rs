//! Silent connections against a normal client (issue 12 part 2): a release `roost serve`
//! (a farm pool over a small backend, every limit at its default unless the scenario
//! says otherwise) is filled with TCP connections from 127.0.0.1 that send nothing; then
//! a normal client connects and sends `GET /`. Measured: the time from its first connect
//! to the whole response, over several repetitions (the front is filled up again between
//! them). A client that is closed before an answer reconnects at once, for up to
//! `EXHAUST_GIVE_UP` seconds.
//!
//! Scenarios: 10,000 silent sockets with the default limits (`maxConnections` 10000);
//! 100 silent sockets with `maxConnections: 100`.
//!
//! Run: `cargo bench --bench exhaust` (env: `EXHAUST_REPS` (5), `EXHAUST_GIVE_UP` (5 s),
//! `ROOST_BIN` to measure another roost binary, e.g. one built from an older commit).
//! The bench raises its own `RLIMIT_NOFILE` soft limit to the hard limit (roost inherits it).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Soft `RLIMIT_NOFILE` up to the hard limit; returns the new soft limit.
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        }
    }
    r.rlim_cur
}

/// A hyper backend answering `hello, world` on its own thread.
fn start_backend() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
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

fn start_roost(backend: SocketAddr, limits: &str) -> Roost {
    let port = free_port();
    let admin = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.yaml");
    std::fs::write(
        &cfg,
        format!(
            "sites:\n  - name: b\n    bindings: [{{listen: \"127.0.0.1:{port}\"}}]\n    applications: [{{path: /, pool: p}}]\n\
             pools:\n  p:\n    farm:\n      servers: [{{address: \"{backend}\"}}]\n\
             admin: {{listen: \"127.0.0.1:{admin}\"}}\n{limits}\n"
        ),
    )
    .unwrap();
    let bin = std::env::var("ROOST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_roost").into());
    let child = Command::new(bin)
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

/// Open descriptors of `pid` (sockets roost holds, plus a handful of its own).
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Wait until roost holds at least `want` descriptors (or 30 s pass).
async fn until_fds(pid: u32, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = fds(pid);
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One normal request; `Some(status line)` if answered, `None` if closed first.
async fn normal_request(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    text.starts_with("HTTP/1.1 ")
        .then(|| text.lines().next().unwrap_or("").to_string())
}

/// Time from the first connect to an answer (reconnecting while refused), and attempts.
async fn time_to_serve(addr: SocketAddr, give_up: Duration) -> (Option<Duration>, usize, String) {
    let t = Instant::now();
    let mut attempts = 0;
    while t.elapsed() < give_up {
        attempts += 1;
        if let Some(status) = normal_request(addr).await {
            return (Some(t.elapsed()), attempts, status);
        }
    }
    (None, attempts, String::new())
}

/// How many of `socks` the server has closed (a non-blocking peek sees the end of
/// stream or a reset).
fn closed_by_server(socks: &[TcpStream]) -> usize {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 1];
    socks
        .iter()
        .filter(|s| {
            // SAFETY: a peek into a local buffer on a socket we own.
            let n = unsafe {
                libc::recv(
                    s.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    1,
                    libc::MSG_DONTWAIT | libc::MSG_PEEK,
                )
            };
            n == 0
                || (n < 0
                    && std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock)
        })
        .count()
}

async fn scenario(backend: SocketAddr, name: &str, limits: &str, silent: usize, reps: u64) {
    let give_up = Duration::from_secs(env_or("EXHAUST_GIVE_UP", 5));
    let roost = start_roost(backend, limits);
    let pid = roost.child.id();
    let base = fds(pid);
    let opened = Instant::now();
    let mut socks = Vec::with_capacity(silent + reps as usize);
    for _ in 0..silent {
        socks.push(TcpStream::connect(roost.addr).await.expect("connect"));
    }
    let held = until_fds(pid, base + silent).await - base;
    println!(
        "### {name}: {silent} silent sockets opened in {:.2} s; roost holds {held} more descriptors",
        opened.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    for rep in 0..reps {
        let (took, attempts, status) = time_to_serve(roost.addr, give_up).await;
        match took {
            Some(d) => {
                println!(
                    "rep {rep}: served in {:.2} ms ({attempts} attempt(s), {status})",
                    d.as_secs_f64() * 1000.0
                );
                times.push(d.as_secs_f64() * 1000.0);
            }
            None => println!(
                "rep {rep}: NOT served within {} s ({attempts} attempts, every one closed)",
                give_up.as_secs()
            ),
        }
        // Fill the front up again (the served client left) before the next repetition.
        socks.push(TcpStream::connect(roost.addr).await.expect("connect"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let closed = closed_by_server(&socks);
    match (times.first(), times.last()) {
        (Some(lo), Some(hi)) => println!(
            "| {name} | {silent} | {}/{reps} served | {lo:.2} | {:.2} | {hi:.2} | {closed} |",
            times.len(),
            times[times.len() / 2]
        ),
        _ => println!("| {name} | {silent} | 0/{reps} served | - | - | - | {closed} |"),
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let nofile = raise_nofile();
    let reps = env_or("EXHAUST_REPS", 5);
    println!("RLIMIT_NOFILE soft limit {nofile}");
    let backend = start_backend();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        scenario(backend, "default limits", "", 10_000, reps).await;
        scenario(
            backend,
            "maxConnections: 100",
            "limits: {maxConnections: 100}",
            100,
            reps,
        )
        .await;
    });
    println!("(columns: scenario | silent sockets | served | min ms | median ms | max ms | silent sockets closed by roost)");
}
