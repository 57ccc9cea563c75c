//! Ordered per key (`pools.<name>.ordering`, issue 17): a real front on its own threads,
//! real farm servers that log every request's key and sequence number, real h2c clients
//! that pipeline each key's requests in order. Same key: one at a time, in arrival order,
//! on one member, even when a member dies midway; different keys: in parallel; the
//! per-key map empties when the load ends.

use crate::support;

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

const KEYS: usize = 100;
const PER_KEY: u64 = 100;
/// Requests of one key in flight from its client at once (they wait behind the key).
const WINDOW: usize = 8;
const SERVERS: usize = 3;

/// One request as a server saw it begin.
#[derive(Debug, Clone, Copy)]
struct Seen {
    seq: u64,
    server: usize,
    after_kill: bool,
}

/// What every server records, under one lock so a kill is one instant for all of them.
#[derive(Default)]
struct Book {
    /// The request of each key running now: (server, seq).
    active: HashMap<String, (usize, u64)>,
    /// Each key's requests in the order they began.
    seen: HashMap<String, Vec<Seen>>,
    dead: [bool; SERVERS],
    killed: bool,
}

#[derive(Default)]
struct Shared {
    book: Mutex<Book>,
    /// A request began while another of its key was running.
    overlaps: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

fn header(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Log the start, answer with a head at once and the body ~1 ms later (so different
/// keys overlap, and a key's next request must wait for the body, not the head), log
/// the end just before the last chunk. A dead server's handler fails, which closes the
/// connection, as a killed process would.
async fn handle(
    id: usize,
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, std::io::Error> {
    let key = header(&req, "x-session");
    let seq: u64 = header(&req, "x-seq").parse().unwrap_or(u64::MAX);
    {
        let mut b = shared.book.lock();
        if b.dead[id] {
            return Err(std::io::Error::other("killed"));
        }
        if b.active.insert(key.clone(), (id, seq)).is_some() {
            shared.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let after_kill = b.killed;
        b.seen.entry(key.clone()).or_default().push(Seen {
            seq,
            server: id,
            after_kill,
        });
    }
    let now = shared.running.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_running.fetch_max(now, Ordering::SeqCst);
    let body = futures_util::stream::once(async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        shared.running.fetch_sub(1, Ordering::SeqCst);
        let mut b = shared.book.lock();
        if b.active.get(&key) == Some(&(id, seq)) {
            b.active.remove(&key);
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from(id.to_string())))
    });
    Ok(Response::new(BodyExt::boxed(StreamBody::new(body))))
}

/// A farm server: its accept loop and every connection task, so a kill can end them.
struct Server {
    addr: SocketAddr,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Server {
    async fn start(id: usize, shared: Arc<Shared>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let conns = tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                let conn = tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { handle(id, shared, req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                conns.lock().push(conn.abort_handle());
            }
        });
        tasks.lock().push(accept.abort_handle());
        Server { addr, tasks }
    }

    /// The process dies: its running requests end now (as far as the book goes), its
    /// listener and connections close.
    fn kill(&self, id: usize, shared: &Shared) {
        {
            let mut b = shared.book.lock();
            b.dead[id] = true;
            b.killed = true;
            b.active.retain(|_, (server, _)| *server != id);
        }
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

fn farm_yaml(servers: &[Server]) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|s| {
            format!(
                "        - {{address: \"{}\", maxConcurrentRequests: 100}}",
                s.addr
            )
        })
        .collect();
    format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: p}}]
pools:
  p:
    queueLength: 5000
    queueTimeout: 30s
    ordering: {{key: "header:X-Session"}}
    farm:
      loadBalancing: leastRequests
      servers:
{}
"#,
        list.join("\n")
    )
}

/// One key's client: its requests pipelined in order on one h2c connection, at most
/// `WINDOW` outstanding. Returns each request's status (`None`: no response).
async fn run_key(addr: SocketAddr, k: usize, done: Arc<AtomicUsize>) -> Vec<Option<StatusCode>> {
    let mut tx = h2c(addr).await;
    let mut pending = FuturesOrdered::new();
    let mut out = Vec::new();
    for seq in 0..PER_KEY {
        if pending.len() >= WINDOW {
            out.push(pending.next().await.unwrap());
            done.fetch_add(1, Ordering::SeqCst);
        }
        let req = Request::get("http://t/")
            .header("x-session", format!("key-{k}"))
            .header("x-seq", seq.to_string())
            .body(empty())
            .unwrap();
        // Sent now (streams open in this order); answered whenever.
        let answer = tx.send_request(req);
        pending.push_back(async move {
            let resp = answer.await.ok()?;
            let status = resp.status();
            resp.into_body().collect().await.ok()?;
            Some(status)
        });
    }
    while let Some(s) = pending.next().await {
        out.push(s);
        done.fetch_add(1, Ordering::SeqCst);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_keep_per_key_order_through_a_member_kill() {
    init_tracing();
    let shared = Arc::new(Shared::default());
    let mut servers = Vec::new();
    for id in 0..SERVERS {
        servers.push(Server::start(id, shared.clone()).await);
    }
    let f = TestFront::start_threaded(&farm_yaml(&servers), 2).await;
    let pool = f.front.state().pools["p"].clone();
    let began = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..KEYS)
        .map(|k| tokio::spawn(run_key(f.addr, k, done.clone())))
        .collect();

    // Midway, the server with the most keys dies.
    let total = KEYS * PER_KEY as usize;
    assert!(
        eventually(Duration::from_secs(60), || done.load(Ordering::SeqCst)
            >= total / 2)
        .await
    );
    let halfway = began.elapsed();
    let victim = busiest_server(&shared);
    servers[victim].kill(victim, &shared);

    let mut statuses = Vec::new();
    for c in clients {
        statuses.extend(c.await.unwrap());
    }
    let elapsed = began.elapsed();
    let ok = statuses
        .iter()
        .filter(|s| **s == Some(StatusCode::OK))
        .count();
    // Only requests running on the dead server when it died (one per key at most) fail.
    assert!(
        ok >= total - KEYS,
        "{ok} of {total} served: {:?}",
        failures(&statuses)
    );

    assert_eq!(
        shared.overlaps.load(Ordering::SeqCst),
        0,
        "two requests of one key ran at once"
    );
    let max = shared.max_running.load(Ordering::SeqCst);
    assert!(
        max >= 4,
        "different keys should run in parallel (at most {max} did)"
    );
    check_order_and_placement(&shared, victim);
    assert!(
        eventually(Duration::from_secs(5), || pool.ordered_keys() == 0).await,
        "{} keys left in the map",
        pool.ordered_keys()
    );
    assert_eq!(pool.ordered_waiting(), 0);
    eprintln!(
        "{total} ordered requests in {elapsed:?} (half by {halfway:?}), at most {max} keys at once, {ok} served"
    );
}

fn busiest_server(shared: &Shared) -> usize {
    let b = shared.book.lock();
    let mut keys = [0usize; SERVERS];
    for seen in b.seen.values() {
        keys[seen[0].server] += 1;
    }
    (0..SERVERS).max_by_key(|&i| keys[i]).unwrap()
}

fn failures(statuses: &[Option<StatusCode>]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for s in statuses.iter().filter(|s| **s != Some(StatusCode::OK)) {
        *out.entry(format!("{s:?}")).or_default() += 1;
    }
    out
}

/// Per key: sequence numbers in arrival order (a number twice only when its first run
/// was on the server that died), one server before the kill, and after it the same
/// server, or, for the dead server's keys, exactly one other.
fn check_order_and_placement(shared: &Shared, victim: usize) {
    let b = shared.book.lock();
    assert_eq!(b.seen.len(), KEYS);
    let mut moved = 0;
    for (key, seen) in &b.seen {
        for w in seen.windows(2) {
            let again = w[1].seq == w[0].seq && w[0].server == victim;
            assert!(w[1].seq > w[0].seq || again, "{key} out of order: {seen:?}");
        }
        let home = seen[0].server;
        let before: Vec<_> = seen.iter().filter(|s| !s.after_kill).collect();
        let after: Vec<_> = seen.iter().filter(|s| s.after_kill).collect();
        assert!(
            before.iter().all(|s| s.server == home),
            "{key} split: {seen:?}"
        );
        let Some(first_after) = after.first() else {
            continue;
        };
        let new_home = first_after.server;
        if home == victim {
            assert_ne!(new_home, victim);
            moved += 1;
        } else {
            assert_eq!(new_home, home, "{key} moved off a live server: {seen:?}");
        }
        assert!(
            after.iter().all(|s| s.server == new_home),
            "{key} split: {seen:?}"
        );
    }
    assert!(moved > 0, "the dead server had keys, and they moved");
}

/// A pool with the key and one server of 10 slots: `p` under `ordering`.
fn one_server_yaml(server: SocketAddr, ordering: &str) -> String {
    pool_yaml(
        &server.to_string(),
        10,
        &format!("    ordering: {ordering}\n"),
        "",
    )
}

#[tokio::test]
async fn a_request_without_the_key_is_not_held_behind_one_with_it() {
    init_tracing();
    let backend = Backend::start("b").await;
    let f = TestFront::start(&one_server_yaml(backend.addr, "{key: \"cookie:SID\"}")).await;
    let pool = f.front.state().pools["p"].clone();
    let send = |id: &'static str, cookie: Option<&'static str>| {
        let addr = f.addr;
        tokio::spawn(async move {
            let mut tx = h1(addr).await;
            let mut req = Request::get(format!("/slow?ms=3000&id={id}")).header("host", "t");
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let resp = tx.send_request(req.body(empty()).unwrap()).await.unwrap();
            read(resp).await.0
        })
    };
    let first = send("first", Some("a=1; SID=s1"));
    assert!(requests_reach(&backend, 1).await);
    let second = send("second", Some("SID=s1"));
    assert!(eventually(Duration::from_secs(10), || pool.ordered_waiting() == 1).await);
    // Another key and no key at all go straight to the server.
    let other = send("other", Some("SID=s2"));
    let plain = send("plain", None);
    assert!(requests_reach(&backend, 3).await);
    assert!(
        !backend.arrivals.lock().contains(&"second".to_string()),
        "the same key waited: {:?}",
        backend.arrivals.lock()
    );
    assert_eq!(pool.ordered_keys(), 2);
    for t in [first, other, plain, second] {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let arrivals = backend.arrivals.lock().clone();
    assert_eq!(
        arrivals.last().map(String::as_str),
        Some("second"),
        "{arrivals:?}"
    );
    assert_eq!(pool.ordered_keys(), 0);
}

/// The ordering state is in the metrics, in `GET /api/v1/pools/{name}` and in
/// `roost ctl pools`: after three turns, and while a second request of the one key waits.
#[tokio::test]
async fn ordering_state_is_in_the_metrics_the_api_and_ctl() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = one_server_yaml(backend.addr, "{key: clientAddress}");
    let st = serve_with_admin(&yaml, false, None, dir.path(), Duration::from_secs(60)).await;
    for _ in 0..3 {
        assert_eq!(get(st.addr, "t", "/x").await.0, StatusCode::OK);
    }
    let admin = st.admin.addr();
    let m = scrape(admin).await;
    for line in [
        "roost_pool_ordered_keys{pool=\"p\"} 0",
        "roost_pool_ordered_waiting{pool=\"p\"} 0",
        "roost_pool_ordered_wait_seconds_count{pool=\"p\"} 3",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} missing:\n{m}");
    }
    let doc = pool_doc(admin).await;
    assert_eq!(doc["ordering"]["key"], "clientAddress", "{doc}");
    assert_eq!(doc["ordering"]["turns_total"], 3, "{doc}");
    assert_eq!(doc["ordering"]["keys"], 0, "{doc}");

    // Every request here has the one key (127.0.0.1): the second waits behind the first.
    let addr = st.addr;
    let slow = || tokio::spawn(async move { get(addr, "t", "/slow?ms=2000").await.0 });
    let first = slow();
    assert!(requests_reach(&backend, 4).await);
    let second = slow();
    let mut waiting = serde_json::Value::Null;
    for _ in 0..100 {
        waiting = pool_doc(admin).await;
        if waiting["ordering"]["waiting"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(waiting["ordering"]["waiting"], 1, "{waiting}");
    assert_eq!(waiting["ordering"]["keys"], 1, "{waiting}");
    let list: serde_json::Value =
        serde_json::from_str(&get(admin, &admin.to_string(), "/api/v1/pools").await.2).unwrap();
    let text = roost::admin::ctl::render(&roost::admin::ctl::CtlCommand::Pools, list).unwrap();
    assert!(
        text.contains("ordered by clientAddress: 1 keys with work, 1 waiting behind their key"),
        "{text}"
    );
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(second.await.unwrap(), StatusCode::OK);
}

/// Whether the backend has seen `n` requests within 10 s.
async fn requests_reach(backend: &Backend, n: usize) -> bool {
    eventually(Duration::from_secs(10), || {
        backend.requests.load(Ordering::SeqCst) == n
    })
    .await
}

async fn pool_doc(admin: SocketAddr) -> serde_json::Value {
    let (status, _, body) = get(admin, &admin.to_string(), "/api/v1/pools/p").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn scrape(admin: SocketAddr) -> String {
    let mut tx = h1(admin).await;
    let req = Request::get("/metrics")
        .header("host", admin.to_string())
        .body(empty())
        .unwrap();
    read(tx.send_request(req).await.unwrap()).await.2
}

#[test]
fn bad_ordering_keys_name_the_key_the_value_and_why() {
    for (value, why) in [
        ("{key: \"header:\"}", "needs a name"),
        ("{key: \"header:X Session\"}", "not a valid header name"),
        ("{key: \"cookie:a;b\"}", "not a valid cookie name"),
        ("{key: \"query:x\"}", "unknown key source"),
        (
            "{key: X-Session}",
            "expected header:NAME, cookie:NAME or clientAddress",
        ),
        ("{key: 5}", "expected header:NAME"),
        ("{}", "ordering needs a key"),
        ("header:X-Session", "expected a map"),
        ("{key: clientAddress, by: x}", "by"),
    ] {
        let yaml = one_server_yaml("127.0.0.1:9".parse().unwrap(), value);
        let err = roost::config::load_str(&yaml, "t.yaml")
            .expect_err(value)
            .to_string();
        assert!(err.contains("pools.p.ordering"), "{value}: {err}");
        assert!(err.contains(why), "{value}: {err}");
    }
    let ok = one_server_yaml("127.0.0.1:9".parse().unwrap(), "{key: \"cookie:SID\"}");
    roost::config::load_str(&ok, "t.yaml").unwrap();
}

/// GET `path` with `x-session: key` on a fresh connection: status and body.
async fn get_keyed(addr: SocketAddr, key: &str, path: &str) -> (StatusCode, String) {
    let mut tx = h1(addr).await;
    let req = Request::get(path)
        .header("host", "t")
        .header("x-session", key)
        .body(empty())
        .unwrap();
    let (status, _, body) = read(tx.send_request(req).await.unwrap()).await;
    (status, body.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garden_keeps_keys_on_their_worker_and_moves_them_after_a_sigkill() {
    let yaml = r#"
sites:
  - name: s
    bindings: [{listen: "127.0.0.1:0"}]
    applications: [{path: /, pool: web}]
pools:
  web:
    startMode: alwaysRunning
    ordering: {key: "header:X-Session"}
    processModel: {maxProcesses: 2}
    worker: {app: demo}
"#;
    let dir = tempfile::Builder::new()
        .prefix("ro")
        .tempdir_in("/tmp")
        .unwrap();
    let st = serve_with_admin(yaml, true, None, dir.path(), Duration::from_secs(60)).await;
    let pool = st.front.pool("web").unwrap();
    let two = || pool.members().iter().filter(|m| m.usable()).count() == 2;
    assert!(
        eventually(Duration::from_secs(30), two).await,
        "two workers"
    );
    // Each key stays on one worker, and the keys use both.
    let mut home = HashMap::new();
    for round in 0..3 {
        for k in 0..20 {
            let key = format!("key-{k}");
            let (s, pid) = get_keyed(st.addr, &key, "/pid").await;
            assert_eq!(s, StatusCode::OK);
            let first = home.entry(key.clone()).or_insert_with(|| pid.clone());
            assert_eq!(*first, pid, "{key} moved in round {round}");
        }
    }
    let pids: std::collections::HashSet<_> = home.values().cloned().collect();
    assert_eq!(pids.len(), 2, "{home:?}");
    // key-0's request runs on its worker, a second waits behind it; the worker dies.
    let victim: i32 = home["key-0"].parse().unwrap();
    let addr = st.addr;
    let running = tokio::spawn(async move { get_keyed(addr, "key-0", "/sleep?ms=4000").await });
    assert!(eventually(Duration::from_secs(10), || pool.ordered_keys() == 1).await);
    let next = tokio::spawn(async move { get_keyed(addr, "key-0", "/pid").await });
    assert!(eventually(Duration::from_secs(10), || pool.ordered_waiting() == 1).await);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The running request is answered by the other worker (an idempotent request the
    // dead one never answered is replayed, keeping its key's turn) or fails with it.
    let (s, _) = running.await.unwrap();
    assert!(s == StatusCode::OK || s == StatusCode::BAD_GATEWAY, "{s}");
    let (s, pid) = next.await.unwrap();
    assert_eq!(
        s,
        StatusCode::OK,
        "the waiting request went to a live worker"
    );
    assert_ne!(pid, victim.to_string());
    assert!(eventually(Duration::from_secs(5), || pool.ordered_keys() == 0).await);
}
