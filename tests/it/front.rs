//! The front door end to end: real listeners, real backends, real clients.

use crate::support::*;
use http::{Request, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn one_pool(server: &str, extra_pool: &str, extra_top: &str) -> String {
    pool_yaml(server, 100, extra_pool, extra_top)
}

fn pool_with_slots(server: &str, slots: usize, extra_pool: &str, extra_top: &str) -> String {
    pool_yaml(server, slots, extra_pool, extra_top)
}

#[tokio::test]
async fn routes_by_host_then_longest_path_prefix() {
    init_tracing();
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let yaml = format!(
        r#"
sites:
  - name: shop
    bindings: [{{listen: "127.0.0.1:0"}}]
    hostNames: [shop.test, "*.shop.test"]
    applications:
      - {{path: /, pool: pa}}
      - {{path: /api, pool: pb}}
  - name: other
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: pc}}]
pools:
  pa: {{farm: {{servers: [{{address: "{}"}}]}}}}
  pb: {{farm: {{servers: [{{address: "{}"}}]}}}}
  pc: {{farm: {{servers: [{{address: "{}"}}]}}}}
"#,
        a.addr, b.addr, c.addr
    );
    let f = TestFront::start(&yaml).await;
    assert_eq!(get(f.addr, "shop.test", "/x").await.2, "a /x");
    assert_eq!(get(f.addr, "SHOP.test:80", "/api/v1").await.2, "b /api/v1");
    assert_eq!(get(f.addr, "www.shop.test", "/api").await.2, "b /api");
    // Segment boundary: /apix is not under /api.
    assert_eq!(get(f.addr, "shop.test", "/apix").await.2, "a /apix");
    // Unknown host → the site without host names.
    assert_eq!(get(f.addr, "elsewhere.test", "/api").await.2, "c /api");
    // The reserved prefix is never routed from clients.
    let (s, r, _) = get(f.addr, "shop.test", "/.roost/ping").await;
    assert_eq!((s, r.as_deref()), (StatusCode::NOT_FOUND, Some("NoRoute")));
}

#[tokio::test]
async fn no_route_is_404() {
    let a = Backend::start("a").await;
    let yaml = format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    hostNames: [only.test]
    applications: [{{path: /app, pool: p}}]
pools:
  p: {{farm: {{servers: [{{address: "{}"}}]}}}}
"#,
        a.addr
    );
    let f = TestFront::start(&yaml).await;
    let (s, r, _) = get(f.addr, "only.test", "/other").await;
    assert_eq!((s, r.as_deref()), (StatusCode::NOT_FOUND, Some("NoRoute")));
    let (s, _, _) = get(f.addr, "nope.test", "/app").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// A pool of one server with one slot and a queue of 5: of 30 concurrent requests one
/// runs, five wait and are served in arrival order, 24 get 503 QueueFull at once.
#[tokio::test]
async fn queue_overflow_and_fifo_order() {
    init_tracing();
    let be = Backend::start("a").await;
    let yaml = pool_with_slots(
        &be.addr.to_string(),
        1,
        "    queueLength: 5\n    retryAfter: 7s",
        "",
    );
    let f = TestFront::start(&yaml).await;
    let pool = f.front.pool("p").unwrap();
    let mut tasks = Vec::new();
    for i in 0..30u64 {
        let addr = f.addr;
        tasks.push(tokio::spawn(async move {
            // The first holds the slot until every request has arrived.
            let ms = if i == 0 { 3000 } else { 50 };
            let (s, r, body) = get(addr, "x", &format!("/slow?ms={ms}&id={i}")).await;
            (i, s, r, body)
        }));
        // Requests reach the pool one after another, so arrival order is known.
        let want = i + 1;
        assert!(
            eventually(Duration::from_secs(10), || pool
                .counters()
                .arrivals
                .load(std::sync::atomic::Ordering::SeqCst)
                >= want)
            .await
        );
    }
    let mut ok = Vec::new();
    let mut full = 0;
    for t in tasks {
        let (i, s, r, _) = t.await.unwrap();
        match s {
            StatusCode::OK => ok.push(i),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.as_deref(), Some("QueueFull"));
                full += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(full, 24);
    assert_eq!(ok, vec![0, 1, 2, 3, 4, 5]);
    // The backend saw them in arrival order, never more than one at a time.
    assert_eq!(*be.arrivals.lock(), ["0", "1", "2", "3", "4", "5"]);
    assert_eq!(be.max_active.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        pool.counters().rejected(roost::error::Reason::QueueFull),
        24
    );
}

#[tokio::test]
async fn rejection_carries_retry_after() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(
        &be.addr.to_string(),
        "    queueLength: 1\n    retryAfter: 7s\n    queueTimeout: 30s",
        "",
    ))
    .await;
    let pool = f.front.pool("p").unwrap();
    for m in pool.members() {
        m.set_capacity(1, 1);
    }
    let addr = f.addr;
    let _busy = tokio::spawn(async move { get(addr, "x", "/slow?ms=1500").await });
    let _queued = {
        assert!(eventually(Duration::from_secs(5), || pool.snapshot().active == 1).await);
        tokio::spawn(async move { get(addr, "x", "/slow?ms=10").await })
    };
    assert!(eventually(Duration::from_secs(5), || pool.queue_len() == 1).await);
    let mut tx = h1(f.addr).await;
    let resp = tx
        .send_request(Request::get("/").header("host", "x").body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["x-roost-reason"], "QueueFull");
}

#[tokio::test]
async fn queue_timeout_answers_503() {
    let be = Backend::start("a").await;
    let yaml = pool_with_slots(&be.addr.to_string(), 1, "    queueTimeout: 300ms", "");
    let f = TestFront::start(&yaml).await;
    let addr = f.addr;
    let busy = tokio::spawn(async move { get(addr, "x", "/slow?ms=2000").await });
    let pool = f.front.pool("p").unwrap();
    assert!(eventually(Duration::from_secs(5), || pool.snapshot().active == 1).await);
    let started = Instant::now();
    let (s, r, _) = get(f.addr, "x", "/").await;
    assert_eq!(
        (s, r.as_deref()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("QueueTimeout"))
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(pool.queue_len(), 0);
    assert_eq!(busy.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn client_that_leaves_the_queue_frees_its_place() {
    let be = Backend::start("a").await;
    let yaml = pool_with_slots(&be.addr.to_string(), 1, "    queueLength: 1", "");
    let f = TestFront::start(&yaml).await;
    let pool = f.front.pool("p").unwrap();
    let addr = f.addr;
    let busy = tokio::spawn(async move { get(addr, "x", "/slow?ms=1500").await });
    assert!(eventually(Duration::from_secs(5), || pool.snapshot().active == 1).await);
    // A client queues, then hangs up.
    let mut raw = TcpStream::connect(f.addr).await.unwrap();
    raw.write_all(b"GET /gone HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || pool.queue_len() == 1).await);
    drop(raw);
    assert!(eventually(Duration::from_secs(5), || pool.queue_len() == 0).await);
    assert!(
        eventually(Duration::from_secs(5), || pool
            .counters()
            .rejected(roost::error::Reason::ClientGone)
            == 1)
        .await
    );
    // Its place is free: the next request queues instead of getting QueueFull.
    let (s, _, body) = get(f.addr, "x", "/after").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "a /after"));
    assert_eq!(busy.await.unwrap().0, StatusCode::OK);
    assert!(!be.arrivals.lock().iter().any(|x| x == "gone"));
}

#[tokio::test]
async fn connect_failure_is_retried_on_another_server() {
    init_tracing();
    let be = Backend::start("live").await;
    let dead = dead_port().await;
    let yaml = format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: p}}]
pools:
  p:
    farm:
      loadBalancing: roundRobin
      servers:
        - {{address: "127.0.0.1:{dead}"}}
        - {{address: "{}"}}
"#,
        be.addr
    );
    let f = TestFront::start(&yaml).await;
    for i in 0..6 {
        let (s, _, body) = get(f.addr, "x", &format!("/r{i}")).await;
        assert_eq!((s, body), (StatusCode::OK, format!("live /r{i}")));
    }
}

#[tokio::test]
async fn connect_failure_without_alternative_is_502() {
    let dead = dead_port().await;
    let f = TestFront::start(&one_pool(&format!("127.0.0.1:{dead}"), "", "")).await;
    let (s, r, _) = get(f.addr, "x", "/").await;
    assert_eq!(
        (s, r.as_deref()),
        (StatusCode::BAD_GATEWAY, Some("ConnectFailed"))
    );
}

#[tokio::test]
async fn slow_backend_is_504() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(
        &be.addr.to_string(),
        "    timeouts: {firstByte: 300ms}",
        "",
    ))
    .await;
    let (s, r, _) = get(f.addr, "x", "/slow?ms=3000").await;
    assert_eq!(
        (s, r.as_deref()),
        (StatusCode::GATEWAY_TIMEOUT, Some("BackendTimeout"))
    );
    // On a member connection that already served requests (its first-byte timer is kept
    // and re-armed across requests): quick ones pass, a slow one still times out.
    for _ in 0..3 {
        assert_eq!(get(f.addr, "x", "/quick").await.0, StatusCode::OK);
    }
    let (s, r, _) = get(f.addr, "x", "/slow?ms=3000").await;
    assert_eq!(
        (s, r.as_deref()),
        (StatusCode::GATEWAY_TIMEOUT, Some("BackendTimeout"))
    );
    // The slot came back.
    assert!(
        eventually(Duration::from_secs(5), || f
            .front
            .pool("p")
            .unwrap()
            .snapshot()
            .active
            == 0)
        .await
    );
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(&be.addr.to_string(), "", "")).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let big = "a".repeat(20 * 1024);
    s.write_all(format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    // Under the limit is fine.
    let (st, _, _) = {
        let mut tx = h1(f.addr).await;
        let resp = tx
            .send_request(
                Request::get("/")
                    .header("host", "x")
                    .header("x-ok", "a".repeat(8 * 1024))
                    .body(empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        read(resp).await
    };
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn ambiguous_framing_and_hosts_are_400() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(&be.addr.to_string(), "", "")).await;
    for raw in [
        "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: x\r\nhost: y\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked, identity\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 400"), "{raw:?} → {head}");
    }
    assert_eq!(be.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn slow_header_client_is_cut_off() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(
        &be.addr.to_string(),
        "",
        "limits: {headerWaitTimeout: 500ms}",
    ))
    .await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let started = Instant::now();
    // One byte every 100 ms: never finishes the head.
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        for b in b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: "
            .iter()
            .chain(std::iter::repeat(&b'a'))
        {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            let mut probe = [0u8; 256];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(100), s.read(&mut probe)).await
            {
                if n == 0 || probe.starts_with(b"HTTP/1.1 408") {
                    return;
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "slow-header client was not cut off");
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn silent_connection_is_closed_after_header_wait() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(
        &be.addr.to_string(),
        "",
        "limits: {headerWaitTimeout: 300ms}",
    ))
    .await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(eventually(Duration::from_secs(5), || f.front.open_connections() == 0).await);
}

#[tokio::test]
async fn connection_cap_closes_extra_connections() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(
        &be.addr.to_string(),
        "",
        "limits: {maxConnections: 2}",
    ))
    .await;
    // Both connections busy (idle ones would be reclaimed for the newcomer: tests/overload.rs).
    let mut a = h1(f.addr).await;
    let mut b = h1(f.addr).await;
    let mut pending = Vec::new();
    for tx in [&mut a, &mut b] {
        let req = Request::get("/slow?ms=1500")
            .header("host", "x")
            .body(empty());
        pending.push(tx.send_request(req.unwrap()));
    }
    let pending = tokio::spawn(futures_util::future::join_all(pending));
    assert!(
        eventually(Duration::from_secs(10), || be
            .active
            .load(std::sync::atomic::Ordering::SeqCst)
            == 2)
        .await
    );
    let mut c = TcpStream::connect(f.addr).await.unwrap();
    let _ = c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "third connection was served");
    for r in pending.await.unwrap() {
        assert_eq!(r.unwrap().status(), StatusCode::OK);
    }
    drop(a);
    assert!(eventually(Duration::from_secs(5), || f.front.open_connections() < 2).await);
    assert_eq!(get(f.addr, "x", "/again").await.0, StatusCode::OK);
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(&be.addr.to_string(), "", "")).await;
    let mut tx = h2c(f.addr).await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let req = Request::get(format!("http://x/h2/{i}"))
            .body(empty())
            .unwrap();
        tasks.push(tx.send_request(req));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let (s, _, body) = read(t.await.unwrap()).await;
        assert_eq!((s, body), (StatusCode::OK, format!("a /h2/{i}")));
    }
}

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_removed() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(&be.addr.to_string(), "", "")).await;
    let mut tx = h1(f.addr).await;
    let req = Request::get("/headers")
        .header("host", "site.test")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "10.0.0.1")
        .body(empty())
        .unwrap();
    let (s, _, body) = read(tx.send_request(req).await.unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1"),
        "{body}"
    );
    assert!(body.contains("x-forwarded-proto: http"), "{body}");
    assert!(body.contains("x-forwarded-host: site.test"), "{body}");
    assert!(body.contains("via: 1.1 roost"), "{body}");
    assert!(!body.contains("x-secret"), "{body}");
    assert!(!body.contains("keep-alive"), "{body}");
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(&be.addr.to_string(), "", "")).await;
    for _ in 0..5 {
        assert_eq!(get(f.addr, "x", "/").await.0, StatusCode::OK);
    }
    let m = &f.front.pool("p").unwrap().members()[0];
    assert_eq!(m.client.idle_connections(), 1);
}

/// `roost serve`'s shape: front threads, each accepting on the one listening socket. A
/// burst of connections spreads over the threads, and every client gets its own answers
/// while member connections are pooled per thread.
#[tokio::test]
async fn front_threads_share_the_connections_and_answer_each_client_its_own() {
    let be = Backend::start("a").await;
    let f =
        TestFront::start_threaded(&pool_with_slots(&be.addr.to_string(), 1000, "", ""), 2).await;
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(h1(f.addr).await);
    }
    let threads = f.front.threads();
    assert!(
        eventually(Duration::from_secs(10), || {
            threads.get(0).open() + threads.get(1).open() == 64
        })
        .await
    );
    let (a, b) = (threads.get(0).open(), threads.get(1).open());
    assert!(a >= 24 && b >= 24, "connections per thread: {a} / {b}");
    let mut tasks = Vec::new();
    for (c, mut tx) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for r in 0..5 {
                let path = format!("/c{c}-r{r}");
                let req = Request::get(&path)
                    .header("host", "x")
                    .body(empty())
                    .unwrap();
                let (status, _, body) = read(tx.send_request(req).await.unwrap()).await;
                assert_eq!((status, body), (StatusCode::OK, format!("a {path}")));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = &f.front.pool("p").unwrap().members()[0];
    assert!(m.client.idle_connections() >= 1);
    f.front.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(&be.addr.to_string(), "", "")).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping-through-tunnel").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 19 {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got, b"ping-through-tunnel");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(&be.addr.to_string(), "", "")).await;
    let addr = f.addr;
    let inflight = tokio::spawn(async move { get(addr, "x", "/slow?ms=800").await });
    assert!(
        eventually(Duration::from_secs(5), || be
            .active
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1)
        .await
    );
    let front = f.front.clone();
    let shut = tokio::spawn(async move { front.shutdown(Duration::from_secs(10)).await });
    let (s, _, body) = inflight.await.unwrap();
    assert_eq!((s, body.as_str()), (StatusCode::OK, "a slow "));
    tokio::time::timeout(Duration::from_secs(10), shut)
        .await
        .unwrap()
        .unwrap();
    // No longer accepting.
    let refused = match TcpStream::connect(addr).await {
        Err(_) => true,
        Ok(mut s) => {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
            let mut b = [0u8; 16];
            matches!(
                tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await,
                Ok(Ok(0)) | Ok(Err(_))
            )
        }
    };
    assert!(refused);
}

#[tokio::test]
async fn reload_swaps_routes_and_keeps_pool_queue() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let f = TestFront::start(&one_pool(&a.addr.to_string(), "", "")).await;
    assert_eq!(get(f.addr, "x", "/").await.2, "a /");
    let pool_before = f.front.pool("p").unwrap();
    // Same listen address key (127.0.0.1:0) keeps the same listener.
    let cfg = roost::config::load_str(&one_pool(&b.addr.to_string(), "", ""), "test.yaml").unwrap();
    f.front.reload(cfg).await.unwrap();
    assert!(Arc::ptr_eq(&pool_before, &f.front.pool("p").unwrap()));
    assert_eq!(get(f.addr, "x", "/").await.2, "b /");
}

#[tokio::test]
async fn counters_follow_requests() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(&be.addr.to_string(), "", "")).await;
    for _ in 0..3 {
        get(f.addr, "x", "/").await;
    }
    let pool = f.front.pool("p").unwrap();
    let snap = pool.snapshot();
    assert_eq!(snap.arrivals, 3);
    assert!(eventually(Duration::from_secs(5), || pool.snapshot().completed == 3).await);
    assert_eq!(pool.counters().duration_by_class[1].snapshot().count, 3);
}

#[tokio::test]
async fn stalled_request_body_is_cut_off_and_frees_the_slot() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(
        &be.addr.to_string(),
        "",
        "limits: {bodyTimeout: 300ms}",
    ))
    .await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    // Promise 1000 bytes, send 10, then go quiet.
    s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let pool = f.front.pool("p").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || pool
            .counters()
            .arrivals
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1)
        .await
    );
    // The slot comes back although the client never finishes its body.
    assert!(
        eventually(Duration::from_secs(10), || pool.snapshot().active == 0
            && be.active.load(std::sync::atomic::Ordering::SeqCst) == 0)
        .await
    );
    // The echo had started answering; the client sees its response cut short and the
    // connection closed, never a complete 1000-byte body.
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "connection left open");
    let text = String::from_utf8_lossy(&got);
    let body_len = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.len())
        .unwrap_or(0);
    assert!(body_len < 1000, "{text}");
}
