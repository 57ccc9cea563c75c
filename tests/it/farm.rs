//! Web farms end to end: real servers on 127.0.0.1:0 behind a real front, real clients.
//! Balancing distributions, hash consistency, active and passive health with slow start,
//! affinity, retries and their budget, TLS (CA bundle, mTLS), DNS discovery, timeouts.

use crate::support;

use crate::support::{dead_port, eventually, init_tracing, BoxBody};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use roost::farm::{self, FarmHooks};
use roost::front::Front;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------
// Fixtures

/// A farm server whose behaviour the test steers: status of normal requests, status of
/// `/health`, a delay, and a hit counter. Answers its name.
struct Srv {
    addr: SocketAddr,
    name: String,
    hits: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
    health: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    max_active: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Srv {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(s: impl Into<Bytes>) -> BoxBody {
    Full::new(s.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

#[derive(Clone)]
struct Behaviour {
    name: String,
    hits: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
    health: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
}

async fn respond(b: Behaviour, req: Request<Incoming>) -> http::Response<BoxBody> {
    if req.uri().path() == "/health" {
        let s = b.health.load(Ordering::SeqCst);
        return http::Response::builder()
            .status(s)
            .body(full(if s == 200 { "ok" } else { "sick" }))
            .unwrap();
    }
    b.hits.fetch_add(1, Ordering::SeqCst);
    let mut delay = b.delay_ms.load(Ordering::SeqCst);
    if req.uri().path() == "/slow" {
        delay = delay.max(1500);
    }
    let now = b.active.fetch_add(1, Ordering::SeqCst) + 1;
    b.max_active.fetch_max(now, Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    b.active.fetch_sub(1, Ordering::SeqCst);
    http::Response::builder()
        .status(b.status.load(Ordering::SeqCst))
        .body(full(b.name.clone()))
        .unwrap()
}

impl Srv {
    async fn start(name: &str) -> Srv {
        Srv::start_on(name, "127.0.0.1:0", None).await
    }

    /// One plain server per name, in order.
    async fn start_all<const N: usize>(names: [&str; N]) -> [Srv; N] {
        let mut all = Vec::with_capacity(N);
        for name in names {
            all.push(Srv::start(name).await);
        }
        all.try_into().unwrap_or_else(|_| unreachable!())
    }

    async fn start_on(name: &str, bind: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Srv {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let b = Behaviour {
            name: name.to_string(),
            hits: Arc::new(AtomicUsize::new(0)),
            status: Arc::new(AtomicU16::new(200)),
            health: Arc::new(AtomicU16::new(200)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            active: Arc::new(AtomicUsize::new(0)),
            max_active: Arc::new(AtomicUsize::new(0)),
        };
        let srv_b = b.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let b = srv_b.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let b = b.clone();
                        async move { Ok::<_, Infallible>(respond(b, req).await) }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(cfg) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Srv {
            addr,
            name: name.to_string(),
            hits: b.hits,
            status: b.status,
            health: b.health,
            delay_ms: b.delay_ms,
            max_active: b.max_active,
            task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

struct TestFarm {
    front: Arc<Front>,
    addr: SocketAddr,
    _hooks: Arc<FarmHooks>,
}

/// A front with one site on 127.0.0.1:0 routing everything to pool `farm`, whose `farm:`
/// section is `farm_yaml` (indented by the caller to six spaces), with the farm hooks.
fn config(farm_yaml: &str, pool_extra: &str) -> String {
    format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: farm}}]
pools:
  farm:
    queueTimeout: 5s
{pool_extra}
    farm:
{farm_yaml}
"#
    )
}

impl TestFarm {
    async fn start(farm_yaml: &str) -> TestFarm {
        TestFarm::start_with(farm_yaml, "").await
    }

    async fn start_with(farm_yaml: &str, pool_extra: &str) -> TestFarm {
        init_tracing();
        let yaml = config(farm_yaml, pool_extra);
        let cfg = roost::config::load_str(&yaml, "farm-test.yaml")
            .unwrap_or_else(|e| panic!("config: {e}\n{yaml}"));
        let hooks = FarmHooks::new();
        let front = Front::start(cfg, vec![hooks.clone()]).await.unwrap();
        let addr = front.bound_addresses()[0].1;
        TestFarm {
            front,
            addr,
            _hooks: hooks,
        }
    }

    async fn reload(&self, farm_yaml: &str) {
        let yaml = config(farm_yaml, "");
        let cfg = roost::config::load_str(&yaml, "farm-test.yaml").unwrap();
        self.front.reload(cfg).await.unwrap();
    }

    fn pool(&self) -> Arc<roost::pool::Pool> {
        self.front.pool("farm").unwrap()
    }

    fn server(&self, addr: &str) -> farm::ServerState {
        farm::server_states(&self.pool())
            .into_iter()
            .find(|s| s.server == addr)
            .unwrap_or_else(|| panic!("no server {addr}"))
    }

    /// Wait (up to 5 s) until server `addr`'s state satisfies `pred`.
    async fn wait_server(&self, addr: &str, pred: impl Fn(&farm::ServerState) -> bool) {
        assert!(
            eventually(Duration::from_secs(5), || pred(&self.server(addr))).await,
            "{:?}",
            self.server(addr)
        );
    }

    async fn client(&self) -> Client {
        Client {
            tx: support::h1(self.addr).await,
            addr: self.addr,
        }
    }
}

/// A keep-alive HTTP/1.1 client that reconnects if the front closed the connection.
struct Client {
    tx: hyper::client::conn::http1::SendRequest<BoxBody>,
    addr: SocketAddr,
}

struct Answer {
    status: StatusCode,
    reason: Option<String>,
    set_cookie: Option<String>,
    body: String,
}

impl Client {
    async fn send(&mut self, req: Request<BoxBody>) -> Answer {
        if self.tx.ready().await.is_err() {
            self.tx = support::h1(self.addr).await;
        }
        let resp = self.tx.send_request(req).await.unwrap();
        let set_cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string());
        let (status, reason, body) = support::read(resp).await;
        Answer {
            status,
            reason,
            set_cookie,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send(get_req(path, &[])).await
    }
}

fn get_req(path: &str, headers: &[(&str, &str)]) -> Request<BoxBody> {
    let mut b = Request::get(path).header("host", "farm.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(full("")).unwrap()
}

fn servers_yaml(servers: &[(&Srv, &str)]) -> String {
    let mut out = String::from("      servers:\n");
    for (s, extra) in servers {
        out.push_str(&format!(
            "        - {{address: \"{}\"{}{extra}}}\n",
            s.addr,
            if extra.is_empty() { "" } else { ", " }
        ));
    }
    out
}

/// Who answered `n` sequential GETs of `path`.
async fn tally(c: &mut Client, n: usize, path: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        let a = c.get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{} {:?}", a.body, a.reason);
        *m.entry(a.body).or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------
// Balancing

#[tokio::test]
async fn round_robin_is_smooth_and_weighted() {
    let [a, b, c] = Srv::start_all(["a", "b", "c"]).await;
    let f = TestFarm::start(&format!(
        "{}      loadBalancing: roundRobin\n",
        servers_yaml(&[(&a, "weight: 2"), (&b, ""), (&c, "")])
    ))
    .await;
    let mut cl = f.client().await;
    let mut order = String::new();
    for _ in 0..8 {
        order.push_str(&cl.get("/").await.body);
    }
    // Smooth: the heavy server's turns are spread out, never three in a row.
    assert!(!order.contains("aaa"), "{order}");
    let t = tally(&mut cl, 40, "/").await;
    eprintln!("roundRobin 2:1:1 over 40: {t:?}, first 8: {order}");
    assert_eq!((t["a"], t["b"], t["c"]), (20, 10, 10), "{t:?}");
}

#[tokio::test]
async fn least_requests_avoids_the_busy_server() {
    let (a, b) = (Srv::start("a").await, Srv::start("b").await);
    let f = TestFarm::start(&format!(
        "{}      loadBalancing: leastRequests\n",
        servers_yaml(&[(&a, ""), (&b, "")])
    ))
    .await;
    // One long request occupies one server...
    let addr = f.addr;
    let slow = tokio::spawn(async move { support::get(addr, "farm.test", "/slow").await });
    assert!(eventually(Duration::from_secs(5), || a.hits() + b.hits() == 1).await);
    let busy = if a.hits() == 1 { "a" } else { "b" };
    // ...so every quick request goes to the other.
    let mut cl = f.client().await;
    let t = tally(&mut cl, 20, "/").await;
    assert_eq!(t.get(busy), None, "{t:?}");
    assert_eq!(slow.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn power_of_two_choices_never_picks_the_busiest_and_spreads_the_rest() {
    let [a, b, c] = Srv::start_all(["a", "b", "c"]).await;
    let f = TestFarm::start(&format!(
        "{}      loadBalancing: powerOfTwoChoices\n",
        servers_yaml(&[(&a, ""), (&b, ""), (&c, "")])
    ))
    .await;
    let addr = f.addr;
    let slow = tokio::spawn(async move { support::get(addr, "farm.test", "/slow").await });
    assert!(
        eventually(Duration::from_secs(5), || a.hits() + b.hits() + c.hits()
            == 1)
        .await
    );
    let busy = [&a, &b, &c]
        .iter()
        .find(|s| s.hits() == 1)
        .unwrap()
        .name
        .clone();
    let mut cl = f.client().await;
    let t = tally(&mut cl, 60, "/").await;
    assert_eq!(t.get(&busy), None, "{t:?}");
    eprintln!("powerOfTwoChoices over 60 with {busy} busy: {t:?}");
    for (name, n) in &t {
        assert!(*n >= 10, "{name} got only {n}: {t:?}");
    }
    slow.await.unwrap();
}

#[tokio::test]
async fn least_response_time_prefers_the_fast_server() {
    let (fast, slow) = (Srv::start("fast").await, Srv::start("slow").await);
    slow.delay_ms.store(40, Ordering::SeqCst);
    let f = TestFarm::start(&format!(
        "{}      loadBalancing: leastResponseTime\n",
        servers_yaml(&[(&fast, ""), (&slow, "")])
    ))
    .await;
    let mut cl = f.client().await;
    let t = tally(&mut cl, 40, "/").await;
    let s = t.get("slow").copied().unwrap_or(0);
    eprintln!("leastResponseTime over 40 (40 ms vs fast): {t:?}");
    assert!(s <= 4, "slow server got {s} of 40: {t:?}");
    let st = f.server(&slow.addr.to_string());
    assert!(st.latency_ewma_ms >= 30.0, "{st:?}");
}

#[tokio::test]
async fn random_follows_weights() {
    let (a, b) = (Srv::start("a").await, Srv::start("b").await);
    let f = TestFarm::start(&format!(
        "{}      loadBalancing: random\n",
        servers_yaml(&[(&a, "weight: 3"), (&b, "")])
    ))
    .await;
    let mut cl = f.client().await;
    let t = tally(&mut cl, 400, "/").await;
    let share = t["a"] as f64 / 400.0;
    eprintln!("random 3:1 over 400: {t:?} (share {share:.3})");
    // Expected 0.75; the bounds are > 6 standard deviations wide.
    assert!((0.6..0.9).contains(&share), "{t:?}");
}

/// Key → server for `keys`, by header.
async fn hash_map_of(f: &TestFarm, keys: &[String]) -> HashMap<String, String> {
    let mut cl = f.client().await;
    let mut m = HashMap::new();
    for k in keys {
        let a = cl.send(get_req("/", &[("x-user", k)])).await;
        assert_eq!(a.status, StatusCode::OK);
        m.insert(k.clone(), a.body);
    }
    m
}

#[tokio::test]
async fn hash_on_a_header_is_sticky_and_consistent_when_a_server_joins() {
    let srvs = Srv::start_all(["a", "b", "c", "d"]).await;
    let three: Vec<(&Srv, &str)> = srvs[..3].iter().map(|s| (s, "")).collect();
    let four: Vec<(&Srv, &str)> = srvs.iter().map(|s| (s, "")).collect();
    let lb = "      loadBalancing: hash\n      hashKey: {header: x-user}\n";
    let f = TestFarm::start(&format!("{}{lb}", servers_yaml(&three))).await;
    let keys: Vec<String> = (0..200).map(|i| format!("user{i}")).collect();
    let before = hash_map_of(&f, &keys).await;
    assert_eq!(
        before,
        hash_map_of(&f, &keys).await,
        "same key, same server"
    );
    let used: std::collections::HashSet<&String> = before.values().collect();
    assert_eq!(used.len(), 3, "every server gets keys");

    f.reload(&format!("{}{lb}", servers_yaml(&four))).await;
    let after = hash_map_of(&f, &keys).await;
    let moved: Vec<&String> = keys.iter().filter(|k| before[*k] != after[*k]).collect();
    eprintln!(
        "hash: adding a 4th server moved {} of 200 keys",
        moved.len()
    );
    // Only keys that now belong to the new server move, about a quarter of them.
    for k in &moved {
        assert_eq!(after[*k], "d", "{k} moved between old servers");
    }
    assert!(
        (20..=90).contains(&moved.len()),
        "{} of 200 keys moved",
        moved.len()
    );
}

#[tokio::test]
async fn hash_on_cookie_query_and_client_address() {
    let [a, b, c] = Srv::start_all(["a", "b", "c"]).await;
    let servers = servers_yaml(&[(&a, ""), (&b, ""), (&c, "")]);
    // Cookie.
    let f = TestFarm::start(&format!(
        "{servers}      loadBalancing: hash\n      hashKey: {{cookie: sid}}\n"
    ))
    .await;
    let mut cl = f.client().await;
    let mut seen = std::collections::HashSet::new();
    for i in 0..30 {
        let cookie = format!("other=1; sid=s{i}");
        let first = cl.send(get_req("/", &[("cookie", &cookie)])).await.body;
        for _ in 0..3 {
            assert_eq!(
                cl.send(get_req("/", &[("cookie", &cookie)])).await.body,
                first
            );
        }
        seen.insert(first);
    }
    assert!(seen.len() > 1, "different cookies spread: {seen:?}");
    drop(f);
    // Query parameter.
    let f = TestFarm::start(&format!(
        "{servers}      loadBalancing: hash\n      hashKey: {{query: cart}}\n"
    ))
    .await;
    let mut cl = f.client().await;
    let mut seen = std::collections::HashSet::new();
    for i in 0..30 {
        let first = cl.get(&format!("/x?a=1&cart={i}")).await.body;
        assert_eq!(cl.get(&format!("/y?cart={i}")).await.body, first);
        seen.insert(first);
    }
    assert!(seen.len() > 1, "{seen:?}");
    drop(f);
    // Client address: every request from 127.0.0.1 lands on one server.
    let f = TestFarm::start(&format!(
        "{servers}      loadBalancing: hash\n      hashKey: clientAddress\n"
    ))
    .await;
    let mut cl = f.client().await;
    let t = tally(&mut cl, 20, "/").await;
    assert_eq!(t.len(), 1, "{t:?}");
}

#[tokio::test]
async fn servers_take_only_their_slots_and_the_rest_waits_in_the_queue() {
    let (a, b) = (Srv::start("a").await, Srv::start("b").await);
    a.delay_ms.store(200, Ordering::SeqCst);
    b.delay_ms.store(200, Ordering::SeqCst);
    let f = TestFarm::start(&servers_yaml(&[
        (&a, "maxConcurrentRequests: 1"),
        (&b, "maxConcurrentRequests: 2"),
    ]))
    .await;
    let reqs: Vec<_> = (0..9)
        .map(|_| {
            let addr = f.addr;
            tokio::spawn(async move { support::get(addr, "farm.test", "/").await.0 })
        })
        .collect();
    for r in reqs {
        assert_eq!(r.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(a.hits() + b.hits(), 9);
    assert_eq!(a.max_active.load(Ordering::SeqCst), 1);
    assert!(b.max_active.load(Ordering::SeqCst) <= 2);
    // Six of the nine had to wait for a slot (about 200 ms or more each).
    assert!(f.pool().counters().queue_wait.snapshot().sum_seconds >= 0.5);
}

// ---------------------------------------------------------------------------------------
// Health

#[tokio::test]
async fn health_check_takes_a_server_out_and_slow_start_brings_it_back() {
    let (a, b) = (Srv::start("a").await, Srv::start("b").await);
    let f = TestFarm::start(&format!(
        "{}      healthCheck: {{path: /health, interval: 100ms, timeout: 1s, healthyThreshold: 2, unhealthyThreshold: 2, responseMatch: ok}}\n      slowStart: 5s\n",
        servers_yaml(&[(&a, "maxConcurrentRequests: 50"), (&b, "maxConcurrentRequests: 50")])
    ))
    .await;
    let bname = b.addr.to_string();
    f.wait_server(&bname, |s| s.last_check.is_some()).await;
    assert!(f.server(&bname).healthy);

    b.health.store(500, Ordering::SeqCst);
    let t0 = std::time::Instant::now();
    f.wait_server(&bname, |s| !s.healthy).await;
    eprintln!(
        "health: out {:?} after its check started failing (interval 100ms, threshold 2)",
        t0.elapsed()
    );
    let st = f.server(&bname);
    assert_eq!(st.state, "unhealthy");
    assert!(st.last_check.unwrap().detail.contains("500"));
    let before = b.hits();
    let mut cl = f.client().await;
    let t = tally(&mut cl, 10, "/").await;
    assert_eq!(t["a"], 10, "{t:?}");
    assert_eq!(b.hits(), before);

    b.health.store(200, Ordering::SeqCst);
    let t0 = std::time::Instant::now();
    f.wait_server(&bname, |s| s.healthy).await;
    eprintln!(
        "health: back {:?} after its check passed again",
        t0.elapsed()
    );
    // Back, but ramping: a small share of its weight and slots at first...
    let st = f.server(&bname);
    assert!(
        st.effective_slots < 50 && st.effective_weight < 1.0,
        "not ramping: {st:?}"
    );
    let t = tally(&mut cl, 20, "/").await;
    eprintln!("slow start: first 20 requests after return: {t:?}");
    assert!(t.get("b").copied().unwrap_or(0) < 10, "{t:?}");
    let t0 = std::time::Instant::now();
    // ...growing to full.
    assert!(
        eventually(Duration::from_secs(10), || {
            let s = f.server(&bname);
            s.effective_slots == 50 && s.effective_weight == 1.0
        })
        .await,
        "{:?}",
        f.server(&bname)
    );
    eprintln!(
        "slow start: full capacity {:?} later (slowStart 5s)",
        t0.elapsed()
    );
}

#[tokio::test]
async fn backup_servers_serve_only_while_no_primary_is_healthy() {
    let [a, b, backup] = Srv::start_all(["a", "b", "backup"]).await;
    let f = TestFarm::start(&format!(
        "{}      healthCheck: {{path: /health, interval: 100ms, unhealthyThreshold: 1, healthyThreshold: 1}}\n",
        servers_yaml(&[(&a, ""), (&b, ""), (&backup, "backup: true")])
    ))
    .await;
    let mut cl = f.client().await;
    let t = tally(&mut cl, 10, "/").await;
    assert_eq!(t.get("backup"), None, "{t:?}");
    // One primary down: the other primary takes everything.
    a.health.store(503, Ordering::SeqCst);
    f.wait_server(&a.addr.to_string(), |s| !s.healthy).await;
    let t = tally(&mut cl, 10, "/").await;
    assert_eq!(t["b"], 10, "{t:?}");
    // Both down: the backup serves.
    b.health.store(503, Ordering::SeqCst);
    f.wait_server(&b.addr.to_string(), |s| !s.healthy).await;
    let t = tally(&mut cl, 10, "/").await;
    assert_eq!(t["backup"], 10, "{t:?}");
    assert!(f.server(&backup.addr.to_string()).backup);
    // A primary returns: the backup is idle again.
    a.health.store(200, Ordering::SeqCst);
    f.wait_server(&a.addr.to_string(), |s| s.healthy).await;
    let t = tally(&mut cl, 10, "/").await;
    assert_eq!(t["a"], 10, "{t:?}");
}

#[tokio::test]
async fn health_check_response_match_and_status_range() {
    let a = Srv::start("a").await;
    let f = TestFarm::start(&format!(
        "{}      healthCheck: {{path: /health, interval: 100ms, expectedStatus: '200-204', responseMatch: 'ok', unhealthyThreshold: 1, healthyThreshold: 1}}\n",
        servers_yaml(&[(&a, "")])
    ))
    .await;
    let name = a.addr.to_string();
    // 299 is outside 200-204.
    a.health.store(299, Ordering::SeqCst);
    f.wait_server(&name, |s| s.state == "unhealthy").await;
    a.health.store(200, Ordering::SeqCst);
    f.wait_server(&name, |s| s.healthy).await;
}

#[tokio::test]
async fn consecutive_failures_eject_a_server_for_a_while() {
    let (a, b) = (Srv::start("a").await, Srv::start("b").await);
    b.status.store(500, Ordering::SeqCst);
    let f = TestFarm::start(&format!(
        "{}      outlierDetection: {{consecutiveFailures: 3, baseEjectionTime: 1s, maxEjectionPercent: 50}}\n",
        servers_yaml(&[(&a, ""), (&b, "")])
    ))
    .await;
    let bname = b.addr.to_string();
    let mut cl = f.client().await;
    let mut fives = 0;
    for _ in 0..20 {
        if cl.get("/").await.status == StatusCode::INTERNAL_SERVER_ERROR {
            fives += 1;
        }
    }
    assert_eq!(fives, 3, "three 500s, then b is out");
    let st = f.server(&bname);
    assert_eq!((st.state, st.ejections), ("ejected", 1), "{st:?}");
    assert!(!st.healthy);
    // The ejection ends by itself; b is tried again (and, still failing, goes out for
    // twice as long).
    f.wait_server(&bname, |s| s.healthy).await;
    for _ in 0..10 {
        cl.get("/").await;
    }
    let st = f.server(&bname);
    assert_eq!(st.ejections, 2, "{st:?}");
    assert!(st.ejected_for_seconds > 1.0, "{st:?}");
}

#[tokio::test]
async fn ejection_never_takes_more_than_the_allowed_share() {
    let (a, b) = (Srv::start("a").await, Srv::start("b").await);
    a.status.store(503, Ordering::SeqCst);
    b.status.store(503, Ordering::SeqCst);
    let f = TestFarm::start(&format!(
        "{}      outlierDetection: {{consecutiveFailures: 2, baseEjectionTime: 30s, maxEjectionPercent: 50}}\n      retries: {{idempotent: false}}\n",
        servers_yaml(&[(&a, ""), (&b, "")])
    ))
    .await;
    let mut cl = f.client().await;
    for _ in 0..12 {
        assert_eq!(cl.get("/").await.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let states = farm::server_states(&f.pool());
    let ejected = states.iter().filter(|s| s.state == "ejected").count();
    assert_eq!(ejected, 1, "{states:?}");
}

// ---------------------------------------------------------------------------------------
// Affinity and drain

#[tokio::test]
async fn affinity_sticks_and_fails_over_with_a_new_cookie() {
    let (a, b) = (Srv::start("a").await, Srv::start("b").await);
    let f = TestFarm::start(&format!(
        "{}      affinity: {{cookie: ARRAffinity}}\n",
        servers_yaml(&[(&a, ""), (&b, "")])
    ))
    .await;
    let mut cl = f.client().await;
    let first = cl.get("/").await;
    let set = first.set_cookie.expect("first response sets the cookie");
    assert!(
        set.starts_with("ARRAffinity=") && set.contains("HttpOnly"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    // Round robin alone would alternate; the cookie keeps the client on one server.
    for _ in 0..10 {
        let r = cl.send(get_req("/", &[("cookie", &cookie)])).await;
        assert_eq!(r.body, first.body);
        assert_eq!(r.set_cookie, None, "no new cookie while it holds");
    }
    // A cookie naming no server is replaced.
    let r = cl
        .send(get_req("/", &[("cookie", "ARRAffinity=0123456789abcdef")]))
        .await;
    assert!(r.set_cookie.is_some());

    // Its server drains: the client goes elsewhere and gets a cookie for the new one.
    let (home, other) = if first.body == "a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert!(farm::drain_server(&f.pool(), &home.addr.to_string()));
    let r = cl.send(get_req("/", &[("cookie", &cookie)])).await;
    assert_eq!(r.body, other.name);
    let new_cookie = r.set_cookie.expect("cookie reset on failover");
    assert_ne!(new_cookie.split(';').next().unwrap(), cookie);
    let st = f.server(&home.addr.to_string());
    assert_eq!((st.state, st.healthy, st.usable), ("draining", true, false));
    assert!(farm::undrain_server(&f.pool(), &home.addr.to_string()));
    assert!(f.server(&home.addr.to_string()).usable);
    // Back home with the old cookie.
    let r = cl.send(get_req("/", &[("cookie", &cookie)])).await;
    assert_eq!((r.body.as_str(), r.set_cookie), (home.name.as_str(), None));
    assert!(!farm::drain_server(&f.pool(), "10.9.9.9:1"));
}

#[tokio::test]
async fn drained_server_finishes_in_flight_requests_and_gets_no_new_ones() {
    let (a, b) = (Srv::start("a").await, Srv::start("b").await);
    let f = TestFarm::start(&servers_yaml(&[(&a, ""), (&b, "")])).await;
    let addr = f.addr;
    let slow = tokio::spawn(async move { support::get(addr, "farm.test", "/slow").await });
    assert!(eventually(Duration::from_secs(5), || a.hits() + b.hits() == 1).await);
    let busy = if a.hits() == 1 { &a } else { &b };
    assert!(farm::drain_server(&f.pool(), &busy.addr.to_string()));
    let mut cl = f.client().await;
    let t = tally(&mut cl, 10, "/").await;
    assert_eq!(t.get(&busy.name), None, "{t:?}");
    let (status, _, body) = slow.await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, busy.name.as_str())
    );
}

// ---------------------------------------------------------------------------------------
// Retries

/// A farm of a dead address, then server `a` (then the farm keys `extra`), after ten
/// requests that all reached `a`; the dead address.
async fn after_a_dead_server(a: &Srv, extra: &str) -> (TestFarm, Client, String) {
    let dead = format!("127.0.0.1:{}", dead_port().await);
    let f = TestFarm::start(&format!(
        "      servers:\n        - {{address: \"{dead}\"}}\n        - {{address: \"{}\"}}\n{extra}",
        a.addr
    ))
    .await;
    let mut cl = f.client().await;
    let t = tally(&mut cl, 10, "/").await;
    assert_eq!(t["a"], 10);
    (f, cl, dead)
}

#[tokio::test]
async fn a_request_never_sent_is_retried_on_another_server() {
    let a = Srv::start("a").await;
    let (f, _, dead) = after_a_dead_server(&a, "").await;
    let st = f.server(&dead);
    assert!(st.failed >= 1, "{st:?}");
}

#[tokio::test]
async fn connect_failures_eject_a_dead_server() {
    let a = Srv::start("a").await;
    let od = "      outlierDetection: {consecutiveFailures: 2, baseEjectionTime: 30s}\n";
    let (f, mut cl, dead) = after_a_dead_server(&a, od).await;
    let st = f.server(&dead);
    assert_eq!((st.state, st.failed), ("ejected", 2), "{st:?}");
    // Ejected: not even tried any more.
    tally(&mut cl, 10, "/").await;
    assert_eq!(f.server(&dead).failed, 2);
}

#[tokio::test]
async fn a_dead_server_is_ejected_without_any_outlier_configuration() {
    let a = Srv::start("a").await;
    let (f, mut cl, dead) = after_a_dead_server(&a, "").await;
    tally(&mut cl, 10, "/").await;
    let st = f.server(&dead);
    // The default passive health: five connect failures in a row, 30 s out.
    assert_eq!((st.state, st.failed), ("ejected", 5), "{st:?}");
    assert_eq!(st.ejection_threshold, 5);
    assert!(st.ejected_for_seconds > 20.0, "{st:?}");
    tally(&mut cl, 10, "/").await;
    assert_eq!(f.server(&dead).failed, 5, "ejected: not tried any more");
}

/// The default passive health never ejects a farm's last server: a one-server farm whose
/// server breaks keeps answering each request at once (502) instead of queueing them all
/// for the ejection's 30 s.
#[tokio::test]
async fn by_default_a_one_server_farm_keeps_its_server() {
    let dead = format!("127.0.0.1:{}", dead_port().await);
    let f = TestFarm::start(&format!("      servers: [{{address: \"{dead}\"}}]\n")).await;
    let mut cl = f.client().await;
    for _ in 0..8 {
        let started = std::time::Instant::now();
        // Ejected, it would queue until `queueTimeout` and end as a 503.
        let answer = cl.get("/").await;
        assert_eq!(answer.status, 502, "{:?}", answer.reason);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "queued behind an ejection"
        );
    }
    let st = f.server(&dead);
    assert_eq!((st.state, st.ejections), ("healthy", 0), "{st:?}");
}

#[tokio::test]
async fn by_default_a_server_answering_5xx_is_not_ejected_and_ejection_can_be_off() {
    let (bad, good) = (Srv::start("bad").await, Srv::start("good").await);
    bad.status.store(500, Ordering::SeqCst);
    let f = TestFarm::start(&servers_yaml(&[(&bad, ""), (&good, "")])).await;
    let mut cl = f.client().await;
    for _ in 0..20 {
        cl.get("/").await;
    }
    assert!(bad.hits() >= 10, "{}", bad.hits());
    let st = f.server(&bad.addr.to_string());
    assert_eq!((st.state, st.ejections), ("healthy", 0), "{st:?}");
    drop(f);

    let a = Srv::start("a").await;
    let off = "      outlierDetection: {maxEjectionPercent: 0}\n";
    let (f, mut cl, dead) = after_a_dead_server(&a, off).await;
    tally(&mut cl, 10, "/").await;
    let st = f.server(&dead);
    assert_eq!((st.state, st.ejections), ("healthy", 0), "{st:?}");
    assert!(st.failed >= 6, "{st:?}");
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_503_within_the_budget() {
    let (bad, good) = (Srv::start("bad").await, Srv::start("good").await);
    bad.status.store(503, Ordering::SeqCst);
    let f = TestFarm::start(&format!(
        "{}      retries: {{budgetPercent: 20, minRetries: 3}}\n",
        servers_yaml(&[(&bad, ""), (&good, "")])
    ))
    .await;
    let mut cl = f.client().await;
    let n = 100;
    let mut ok = 0;
    let mut unavailable = 0;
    for _ in 0..n {
        match cl.get("/").await.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
            s => panic!("unexpected {s}"),
        }
    }
    let retries = farm::request::retries(&f.pool()) as usize;
    // Round robin sends half the first attempts to the bad server; each either was
    // retried (and succeeded on the good one) or came back as the server's 503.
    eprintln!("retry budget 20% + 3: {n} requests, {retries} retries, {ok} ok, {unavailable} 503");
    assert_eq!(ok + unavailable, n);
    assert_eq!(ok, n / 2 + retries, "ok {ok}, retries {retries}");
    assert!(retries >= 3, "some retries happen: {retries}");
    assert!(retries <= 3 + n * 20 / 100, "budget holds: {retries}");
    assert!(unavailable > 0, "the budget ran out at some point");

    // A request with a body is never replayed.
    let before = good.hits();
    let mut saw_503 = false;
    for _ in 0..4 {
        let req = Request::post("/")
            .header("host", "farm.test")
            .body(full("payload"))
            .unwrap();
        saw_503 |= cl.send(req).await.status == StatusCode::SERVICE_UNAVAILABLE;
    }
    assert!(saw_503);
    assert_eq!(good.hits() - before, 2, "POSTs went where they were sent");
}

#[tokio::test]
async fn with_a_full_budget_every_idempotent_request_survives_a_503_server() {
    let (bad, good) = (Srv::start("bad").await, Srv::start("good").await);
    bad.status.store(503, Ordering::SeqCst);
    let f = TestFarm::start(&format!(
        "{}      retries: {{budgetPercent: 100}}\n",
        servers_yaml(&[(&bad, ""), (&good, "")])
    ))
    .await;
    let mut cl = f.client().await;
    let t = tally(&mut cl, 30, "/").await;
    assert_eq!(t["good"], 30);
    assert_eq!(bad.hits(), 15);
}

// ---------------------------------------------------------------------------------------
// Timeouts

#[tokio::test]
async fn connect_failure_is_502_and_slow_first_byte_is_504() {
    let dead = dead_port().await;
    let f = TestFarm::start(&format!(
        "      servers: [{{address: \"127.0.0.1:{dead}\"}}]\n"
    ))
    .await;
    let mut cl = f.client().await;
    let r = cl.get("/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.reason.as_deref(), Some("ConnectFailed"));
    drop(f);

    let a = Srv::start("a").await;
    a.delay_ms.store(3000, Ordering::SeqCst);
    let f = TestFarm::start_with(
        &servers_yaml(&[(&a, "")]),
        "    timeouts: {connect: 1s, firstByte: 300ms}",
    )
    .await;
    let mut cl = f.client().await;
    let r = cl.get("/").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.reason.as_deref(), Some("BackendTimeout"));
}

// ---------------------------------------------------------------------------------------
// TLS

struct Pki {
    dir: tempfile::TempDir,
    ca_der: rustls_pki_types::CertificateDer<'static>,
}

impl Pki {
    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }
}

/// A CA, a server certificate for `localhost` and a client certificate, as PEM files
/// `ca.crt`, `server.{crt,key}`, `client.{crt,key}`.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.path().join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["roost-front".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.path().join("client.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("client.key"), key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca_der: ca.der().clone(),
    }
}

fn server_tls(pki: &Pki, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.path("server.crt"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_der.clone()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}

#[tokio::test]
async fn tls_to_a_server_verified_by_a_ca_bundle() {
    let pki = pki();
    let s = Srv::start_on("secure", "127.0.0.1:0", Some(server_tls(&pki, false))).await;
    let server = format!("      servers: [{{address: \"https://{}\"}}]\n", s.addr);

    // Trusting the test CA, with the certificate's name for SNI and verification.
    let f = TestFarm::start(&format!(
        "{server}      tls: {{caFile: \"{}\", serverName: localhost}}\n",
        pki.path("ca.crt")
    ))
    .await;
    let mut cl = f.client().await;
    let r = cl.get("/").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "secure"));
    drop(f);

    // The public roots do not know the test CA: the handshake fails, 502.
    let f = TestFarm::start(&server).await;
    let mut cl = f.client().await;
    let r = cl.get("/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.reason.as_deref(), Some("ConnectFailed"));
    drop(f);

    // The right CA but the wrong name: also refused.
    let f = TestFarm::start(&format!(
        "{server}      tls: {{caFile: \"{}\", serverName: other.example}}\n",
        pki.path("ca.crt")
    ))
    .await;
    let mut cl = f.client().await;
    assert_eq!(cl.get("/").await.status, StatusCode::BAD_GATEWAY);
    drop(f);

    // insecureSkipVerify works, and is a warning (not an error) with its place.
    let farm_yaml = format!("{server}      tls: {{insecureSkipVerify: true}}\n");
    let cfg = roost::config::load_str(&config(&farm_yaml, ""), "w.yaml").unwrap();
    let warnings = roost::config::validate::warnings(&cfg);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("warning: w.yaml:")
            && warnings[0].contains("pools.farm.farm.tls.insecureSkipVerify")
            && warnings[0].contains("NOT verified"),
        "{}",
        warnings[0]
    );
    let f = TestFarm::start(&farm_yaml).await;
    let mut cl = f.client().await;
    assert_eq!(cl.get("/").await.body, "secure");
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let pki = pki();
    let s = Srv::start_on("mtls", "127.0.0.1:0", Some(server_tls(&pki, true))).await;
    let server = format!("      servers: [{{address: \"https://{}\"}}]\n", s.addr);
    let f = TestFarm::start(&format!(
        "{server}      tls: {{caFile: \"{}\", serverName: localhost, clientCert: \"{}\", clientKey: \"{}\"}}\n",
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key")
    ))
    .await;
    let mut cl = f.client().await;
    let r = cl.get("/").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "mtls"));
    assert_eq!(cl.get("/again").await.body, "mtls");
    drop(f);

    // Without a client certificate the server refuses us.
    let f = TestFarm::start(&format!(
        "{server}      tls: {{caFile: \"{}\", serverName: localhost}}\n",
        pki.path("ca.crt")
    ))
    .await;
    let mut cl = f.client().await;
    assert_eq!(cl.get("/").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(s.hits(), 2);
}

// ---------------------------------------------------------------------------------------
// Discovery

#[tokio::test]
async fn dns_discovery_adds_and_removes_servers_without_a_reload_of_servers() {
    let a = Srv::start("a").await;
    let port = a.addr.port();
    let f = TestFarm::start(&format!(
        "      discovery: {{dns: \"localhost:{port}\", interval: 200ms}}\n"
    ))
    .await;
    let want = format!("127.0.0.1:{port}");
    assert!(
        eventually(Duration::from_secs(5), || {
            farm::server_states(&f.pool())
                .iter()
                .any(|s| s.server == want && s.discovered)
        })
        .await
    );
    // `localhost` may also resolve to ::1, where nothing listens: that server fails to
    // connect and the request is retried on 127.0.0.1.
    let mut cl = f.client().await;
    let t = tally(&mut cl, 6, "/").await;
    assert_eq!(t["a"], 6);

    // Point discovery at another port: its server joins, the old one leaves.
    let b = Srv::start("b").await;
    f.reload(&format!(
        "      discovery: {{dns: \"localhost:{}\", interval: 200ms}}\n",
        b.addr.port()
    ))
    .await;
    let want_b = format!("127.0.0.1:{}", b.addr.port());
    assert!(
        eventually(Duration::from_secs(5), || {
            let s = farm::server_states(&f.pool());
            s.iter().any(|s| s.server == want_b) && !s.iter().any(|s| s.server == want)
        })
        .await,
        "{:?}",
        farm::server_states(&f.pool())
    );
    let t = tally(&mut cl, 4, "/").await;
    assert_eq!(t["b"], 4);
}

#[tokio::test]
async fn static_servers_and_discovery_together() {
    let (a, b) = (Srv::start("a").await, Srv::start("b").await);
    let f = TestFarm::start(&format!(
        "{}      discovery: {{dns: \"localhost:{}\", interval: 200ms, weight: 2, maxConcurrentRequests: 7}}\n",
        servers_yaml(&[(&a, "")]),
        b.addr.port()
    ))
    .await;
    let want = format!("127.0.0.1:{}", b.addr.port());
    assert!(
        eventually(Duration::from_secs(5), || {
            farm::server_states(&f.pool())
                .iter()
                .any(|s| s.server == want)
        })
        .await
    );
    let st = f.server(&want);
    assert_eq!((st.weight, st.slots, st.discovered), (2, 7, true));
    assert!(!f.server(&a.addr.to_string()).discovered);
    let mut cl = f.client().await;
    let t = tally(&mut cl, 12, "/").await;
    assert!(t["a"] > 0 && t["b"] > 0, "{t:?}");
}

#[tokio::test]
async fn new_connection_settings_replace_members_but_keep_drain_and_health() {
    let (a, b) = (Srv::start("a").await, Srv::start("b").await);
    let servers = servers_yaml(&[(&a, ""), (&b, "")]);
    let f = TestFarm::start(&servers).await;
    let before = f.pool().members();
    assert!(farm::drain_server(&f.pool(), &a.addr.to_string()));
    let yaml = config(&servers, "    timeouts: {connect: 2s, firstByte: 3s}");
    f.front
        .reload(roost::config::load_str(&yaml, "t.yaml").unwrap())
        .await
        .unwrap();
    let after = f.pool().members();
    assert_eq!(after.len(), 2);
    for m in &after {
        assert!(!before.iter().any(|o| Arc::ptr_eq(o, m)), "member replaced");
    }
    assert_eq!(f.server(&a.addr.to_string()).state, "draining");
    assert_eq!(f.server(&b.addr.to_string()).state, "healthy");
    let mut cl = f.client().await;
    let t = tally(&mut cl, 6, "/").await;
    assert_eq!(t["b"], 6, "{t:?}");
}

#[tokio::test]
async fn roost_serve_runs_the_farm_health_checks() {
    let a = Srv::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(
        &path,
        config(
            &format!(
                "{}      healthCheck: {{path: /health, interval: 100ms, unhealthyThreshold: 1}}\n",
                servers_yaml(&[(&a, "")])
            ),
            "",
        ),
    )
    .unwrap();
    let running = roost::serve::start(&path).await.unwrap();
    let pool = running.front.pool("farm").unwrap();
    let name = a.addr.to_string();
    let checked = || {
        farm::server_states(&pool)
            .iter()
            .any(|s| s.server == name && s.last_check.is_some())
    };
    assert!(eventually(Duration::from_secs(5), checked).await);
    a.health.store(500, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || {
            farm::server_states(&pool)
                .iter()
                .any(|s| s.server == name && !s.healthy)
        })
        .await
    );
    running.front.shutdown(Duration::from_secs(1)).await;
    running.supervisor.shutdown().await;
}

#[tokio::test]
async fn a_farm_that_becomes_a_garden_lets_its_servers_go() {
    let a = Srv::start("a").await;
    let f = TestFarm::start(&format!(
        "{}      affinity: {{cookie: s}}\n",
        servers_yaml(&[(&a, "")])
    ))
    .await;
    assert_eq!(f.client().await.get("/").await.body, "a");
    let garden = r#"
sites:
  - name: s
    bindings: [{listen: "127.0.0.1:0"}]
    applications: [{path: /, pool: farm}]
pools:
  farm:
    processModel: {command: /bin/true}
"#;
    let cfg = roost::config::load_str(garden, "g.yaml").unwrap();
    f.front.reload(cfg).await.unwrap();
    let pool = f.pool();
    assert!(pool.members().is_empty(), "{:?}", pool.members());
    assert!(farm::server_states(&pool).is_empty());
    assert!(farm::state(&pool).is_none());
}

// ---------------------------------------------------------------------------------------
// Configuration

#[test]
fn roost_check_prints_the_insecure_warning_and_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(
        &path,
        config(
            "      servers: [{address: \"https://127.0.0.1:9443\"}]\n      tls: {insecureSkipVerify: true}\n",
            "",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: ") && stderr.contains("tls.insecureSkipVerify"),
        "{stderr}"
    );
    // The warning points at the line of the key.
    assert!(stderr.contains("proxy.yaml:12:"), "{stderr}");
}

#[test]
fn farm_keys_are_validated_with_their_place() {
    let yaml = config(
        r#"      servers: [{address: "h:1"}]
      outlierDetection: {consecutiveFailures: 0, maxEjectionPercent: 150, baseEjectionTime: 1m, maxEjectionTime: 10s}
      slowStart: soon
      retries: {budgetPercent: 101, idempotent: maybe}
      tls: {caFile: /nonexistent/ca.pem, clientCert: /nonexistent/c.pem, serverName: "bad name!"}
      discovery: {dns: "no-port", interval: 0}
"#,
        "",
    );
    let errs = roost::config::load_str(&yaml, "bad.yaml").unwrap_err();
    let text = errs.to_string();
    for needle in [
        "pools.farm.farm.outlierDetection.consecutiveFailures",
        "pools.farm.farm.outlierDetection.maxEjectionPercent",
        "pools.farm.farm.outlierDetection.maxEjectionTime",
        "pools.farm.farm.slowStart",
        "pools.farm.farm.retries.budgetPercent",
        "pools.farm.farm.retries.idempotent",
        "pools.farm.farm.tls.caFile",
        "pools.farm.farm.tls.clientCert",
        "pools.farm.farm.tls.serverName",
        "pools.farm.farm.discovery.dns",
        "pools.farm.farm.discovery.interval",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    // Every problem points at its line.
    assert!(errs.problems.iter().all(|p| p.line_col.is_some()), "{text}");

    // Discovery alone is a valid farm; defaults are filled in.
    let ok = roost::config::load_str(
        &config(
            "      discovery: {dns: \"svc.local:8080\"}\n      outlierDetection: {}\n",
            "",
        ),
        "ok.yaml",
    )
    .unwrap();
    let roost::config::model::Backend::Farm(f) = &ok.pools["farm"].backend else {
        panic!()
    };
    let d = f.discovery.as_ref().unwrap();
    assert_eq!(
        (d.host.as_str(), d.port, d.interval),
        ("svc.local", 8080, Duration::from_secs(30))
    );
    let od = f.outlier_detection.as_ref().unwrap();
    assert_eq!(
        (
            od.consecutive_failures,
            od.base_ejection_time,
            od.max_ejection_percent
        ),
        (5, Duration::from_secs(30), 50)
    );
    assert_eq!(
        (
            f.retries.budget_percent,
            f.retries.min_retries,
            f.retries.idempotent
        ),
        (20, 3, true)
    );
    assert!(f.servers.is_empty());
}
