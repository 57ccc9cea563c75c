//! The front's response cache end to end: real sockets, a real origin that counts the
//! requests it gets and answers as each request's query asks (`cc`, `etag`, `vary`,
//! `cookie`, `status`, `ms`, `n`), and a front started from YAML.

use crate::support;

use crate::support::origin::{param as q, send as send_to, CountingOrigin, OriginBody, Reply};
use crate::support::TestFront;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::time::Duration;

/// The origin's answer, as the query asks (see the module docs).
async fn answer(req: Request<Incoming>) -> Response<OriginBody> {
    let query = req.uri().query().unwrap_or("").to_string();
    if let Some(ms) = q(&query, "ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let etag = q(&query, "etag").map(|e| format!("\"{e}\""));
    let status: u16 = q(&query, "status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let inm = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok());
    let not_modified = etag.is_some() && inm == etag.as_deref();
    let n: usize = q(&query, "n").and_then(|v| v.parse().ok()).unwrap_or(0);
    let body = if n > 0 {
        vec![b'x'; n]
    } else {
        format!(
            "body of {} {}",
            req.uri(),
            req.headers()
                .get("accept-language")
                .map_or("", |v| v.to_str().unwrap_or(""))
        )
        .into_bytes()
    };
    let mut b = Response::builder().status(if not_modified { 304 } else { status });
    if let Some(cc) = q(&query, "cc") {
        b = b.header("cache-control", cc);
    }
    if let Some(e) = &etag {
        b = b.header("etag", e);
    }
    if let Some(v) = q(&query, "vary") {
        b = b.header("vary", v);
    }
    if q(&query, "cookie").is_some() {
        b = b.header("set-cookie", "s=1");
    }
    if let Some(a) = q(&query, "age") {
        b = b.header("age", a);
    }
    b.body(
        Full::new(if not_modified {
            Bytes::new()
        } else {
            Bytes::from(body)
        })
        .boxed(),
    )
    .unwrap()
}

fn yaml(origin: SocketAddr, cache: &str) -> String {
    support::pool_yaml(
        &origin.to_string(),
        2000,
        &format!("    queueLength: 5000\n    cache:\n      xCache: true\n{cache}"),
        "",
    )
}

impl Reply {
    fn x(&self) -> &str {
        self.h("x-cache").unwrap_or("-")
    }
}

async fn send(addr: SocketAddr, method: &str, pq: &str, headers: &[(&str, &str)]) -> Reply {
    send_to(addr, "cache.test", method, pq, headers).await
}

async fn get(addr: SocketAddr, pq: &str) -> Reply {
    send(addr, "GET", pq, &[]).await
}

#[tokio::test]
async fn max_age_hits_do_not_reach_the_member_and_age_grows() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "")).await;
    let pq = "/a?cc=max-age%3D60&age=5";
    let first = get(f.addr, pq).await;
    assert_eq!(first.x(), "MISS");
    let second = get(f.addr, pq).await;
    assert_eq!(second.x(), "HIT");
    assert_eq!(second.body, first.body);
    assert_eq!(o.count(pq), 1);
    let age: u64 = second.h("age").unwrap().parse().unwrap();
    assert!(age >= 5, "Age carries the member's Age: {age}");
}

#[tokio::test]
async fn no_store_private_and_plain_responses_are_never_stored() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "")).await;
    for pq in [
        "/ns?cc=no-store%2C%20max-age%3D60",
        "/pv?cc=private%2C%20max-age%3D60",
        "/plain",
        "/ck?cc=max-age%3D60&cookie=1",
    ] {
        get(f.addr, pq).await;
        let r = get(f.addr, pq).await;
        assert_eq!(r.x(), "MISS", "{pq}");
        assert_eq!(o.count(pq), 2, "{pq} went to the member both times");
    }
}

#[tokio::test]
async fn vary_keeps_one_variant_per_request_value() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "")).await;
    let pq = "/v?cc=max-age%3D60&vary=accept-language";
    let en = send(f.addr, "GET", pq, &[("accept-language", "en")]).await;
    let fr = send(f.addr, "GET", pq, &[("accept-language", "fr")]).await;
    assert_eq!(fr.x(), "MISS");
    let en2 = send(f.addr, "GET", pq, &[("accept-language", "en")]).await;
    let fr2 = send(f.addr, "GET", pq, &[("accept-language", "fr")]).await;
    assert_eq!((en2.x(), fr2.x()), ("HIT", "HIT"));
    assert_eq!(en2.body, en.body);
    assert_eq!(fr2.body, fr.body);
    assert_ne!(en.body, fr.body);
    assert_eq!(o.count(pq), 2);
}

#[tokio::test]
async fn s_maxage_allows_authorization_and_max_age_alone_does_not() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "")).await;
    let auth = [("authorization", "Bearer x")];
    let shared = "/s?cc=max-age%3D0%2C%20s-maxage%3D60";
    send(f.addr, "GET", shared, &auth).await;
    assert_eq!(send(f.addr, "GET", shared, &auth).await.x(), "HIT");
    assert_eq!(o.count(shared), 1, "s-maxage overrides max-age=0");
    let plain = "/p?cc=max-age%3D60";
    send(f.addr, "GET", plain, &auth).await;
    send(f.addr, "GET", plain, &auth).await;
    assert_eq!(
        o.count(plain),
        2,
        "max-age alone is not shared with Authorization"
    );
}

#[tokio::test]
async fn a_stale_entry_is_revalidated_and_a_304_refreshes_it() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "")).await;
    let pq = "/r?cc=max-age%3D1&etag=v1";
    let first = get(f.addr, pq).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let second = get(f.addr, pq).await;
    assert_eq!(
        second.status,
        StatusCode::OK,
        "the client gets the stored 200"
    );
    assert_eq!(second.body, first.body);
    assert_eq!(o.count(pq), 2);
    let sent = o.last_headers().unwrap();
    assert_eq!(sent.get("if-none-match").unwrap(), "\"v1\"");
    assert_eq!(
        get(f.addr, pq).await.x(),
        "HIT",
        "the 304 made it fresh again"
    );
    assert_eq!(o.count(pq), 2);
    // The client's own conditional is answered from the cache.
    let c = send(f.addr, "GET", pq, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(c.status, StatusCode::NOT_MODIFIED);
    assert_eq!(o.count(pq), 2);
}

#[tokio::test]
async fn a_thousand_concurrent_misses_reach_the_member_once() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "")).await;
    let pq = "/c?cc=max-age%3D60&ms=300";
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let addr = f.addr;
        tasks.push(tokio::spawn(async move { get(addr, pq).await }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        ok += 1;
    }
    assert_eq!(ok, 1000);
    assert_eq!(
        o.count(pq),
        1,
        "one member request for 1,000 concurrent misses"
    );
    let c = f.front.state().caches.get("p").unwrap().clone();
    let coalesced = c
        .counters
        .coalesced
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        coalesced > 0,
        "some requests waited for the fill: {coalesced}"
    );
}

#[tokio::test]
async fn uncacheable_answers_release_every_waiter_at_once() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "")).await;
    let pq = "/u?ms=200";
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let addr = f.addr;
        tasks.push(tokio::spawn(async move { get(addr, pq).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(
        o.count(pq),
        20,
        "nothing stored, everyone answered by the member"
    );
}

#[tokio::test]
async fn purge_by_key_and_prefix() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "")).await;
    let a = "/purge/a?cc=max-age%3D60";
    let b = "/purge/b?cc=max-age%3D60";
    get(f.addr, a).await;
    get(f.addr, b).await;
    let caches = f.front.state().caches.clone();
    let key = |p: &str| roost::cache::admin::Purge {
        pool: Some("p".into()),
        key: Some(format!("cache.test{p}")),
        prefix: None,
    };
    assert_eq!(roost::cache::admin::purge(&caches, &key(a)), Ok(1));
    assert_eq!(get(f.addr, a).await.x(), "MISS");
    assert_eq!(get(f.addr, b).await.x(), "HIT");
    let prefix = roost::cache::admin::Purge {
        pool: None,
        key: None,
        prefix: Some("cache.test/purge/".into()),
    };
    assert_eq!(roost::cache::admin::purge(&caches, &prefix), Ok(2));
    assert_eq!(get(f.addr, b).await.x(), "MISS");
    assert_eq!(o.count(a), 2);
    assert_eq!(o.count(b), 2);
}

#[tokio::test]
async fn stale_if_error_serves_while_the_pool_is_app_offline() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "")).await;
    let pq = "/sie?cc=max-age%3D1%2C%20stale-if-error%3D60";
    let first = get(f.addr, pq).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let pool = f.front.pool("p").unwrap();
    pool.set_state(roost::pool::PoolState::AppOffline);
    let r = get(f.addr, pq).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.x(), "STALE");
    assert_eq!(r.body, first.body);
    // Without stale-if-error the pool's own 503 shows through.
    let plain = "/nosie?cc=max-age%3D1";
    pool.set_state(roost::pool::PoolState::Started);
    get(f.addr, plain).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    pool.set_state(roost::pool::PoolState::AppOffline);
    assert_eq!(
        get(f.addr, plain).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn memory_stays_within_max_bytes_under_a_churn_of_keys() {
    let o = CountingOrigin::start(answer).await;
    let max = 256 * 1024;
    let f = TestFront::start(&yaml(
        o.addr,
        &format!("      maxBytes: {max}\n      maxObjectBytes: 16384\n"),
    ))
    .await;
    for i in 0..400 {
        get(f.addr, &format!("/churn/{i}?cc=max-age%3D60&n=4000")).await;
    }
    let c = f.front.state().caches.get("p").unwrap().clone();
    assert!(c.bytes() <= max, "{} bytes held, max {max}", c.bytes());
    assert!(c.evictions() > 0, "the churn evicted");
    assert!(c.urls() > 10, "it still holds entries: {}", c.urls());
}

#[tokio::test]
async fn a_response_over_max_object_bytes_streams_through_unstored() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "      maxObjectBytes: 1000\n")).await;
    let pq = "/big?cc=max-age%3D60&n=5000";
    let r = get(f.addr, pq).await;
    assert_eq!(r.body.len(), 5000);
    assert_eq!(get(f.addr, pq).await.body.len(), 5000);
    assert_eq!(o.count(pq), 2);
}

#[tokio::test]
async fn unsafe_methods_invalidate_and_head_is_answered_from_get() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "")).await;
    let pq = "/inv?cc=max-age%3D60";
    get(f.addr, pq).await;
    let head = send(f.addr, "HEAD", pq, &[]).await;
    assert_eq!(head.x(), "HIT");
    assert!(head.body.is_empty());
    send(f.addr, "POST", pq, &[]).await;
    assert_eq!(
        get(f.addr, pq).await.x(),
        "MISS",
        "POST's 200 invalidated it"
    );
}

#[tokio::test]
async fn without_a_cache_nothing_changes() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&support::one_pool_yaml(&o.addr.to_string())).await;
    let pq = "/none?cc=max-age%3D60";
    let r = get(f.addr, pq).await;
    get(f.addr, pq).await;
    assert!(r.h("x-cache").is_none());
    assert_eq!(o.count(pq), 2);
    assert!(f.front.state().caches.is_empty());
}

#[test]
fn a_bad_cache_config_names_the_key_the_value_and_why() {
    let y = support::pool_yaml(
        "127.0.0.1:1",
        1,
        "    cache:\n      maxBytes: 1MiB\n      maxObjectBytes: 2MiB\n      maxVariants: lots\n      clientNoCache: sometimes\n      maxbytes: 1\n",
        "",
    );
    let e = roost::config::load_str(&y, "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("pools.p.cache.maxVariants"), "{e}");
    assert!(
        e.contains("pools.p.cache.maxObjectBytes") && e.contains("larger than maxBytes"),
        "{e}"
    );
    assert!(e.contains("pools.p.cache.clientNoCache"), "{e}");
    assert!(e.contains("maxbytes"), "unknown key reported: {e}");
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once_in_the_background() {
    let o = CountingOrigin::start(answer).await;
    let f = TestFront::start(&yaml(o.addr, "")).await;
    let pq = "/swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D60&ms=200";
    let first = get(f.addr, pq).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let addr = f.addr;
        tasks.push(tokio::spawn(async move { get(addr, pq).await }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.x(), "STALE");
        assert_eq!(r.body, first.body);
    }
    assert!(
        support::eventually(Duration::from_secs(10), || o.count(pq) == 2).await,
        "one background refresh"
    );
    let c = f.front.state().caches.get("p").unwrap().clone();
    assert!(
        support::eventually(Duration::from_secs(10), || {
            c.counters.stored.load(std::sync::atomic::Ordering::Relaxed) == 2
        })
        .await
    );
    assert_eq!(get(f.addr, pq).await.x(), "HIT");
    assert_eq!(o.count(pq), 2);
}

#[tokio::test]
async fn admin_api_ctl_purge_and_metrics() {
    let o = CountingOrigin::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let s = support::serve_with_admin(
        &yaml(o.addr, ""),
        false,
        None,
        dir.path(),
        Duration::from_secs(1),
    )
    .await;
    let pq = "/ctl?cc=max-age%3D60";
    get(s.addr, pq).await;
    assert_eq!(get(s.addr, pq).await.x(), "HIT");
    let admin = format!("http://{}", s.admin.addr());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args([
            "ctl",
            "--admin",
            &admin,
            "cache",
            "purge",
            "--prefix",
            "cache.test/ctl",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "purged 1 URL(s)");
    assert_eq!(get(s.addr, pq).await.x(), "MISS");
    let metrics = support::get(s.admin.addr(), "admin", "/metrics").await.2;
    assert!(
        metrics.contains(r#"roost_cache_requests_total{pool="p",result="hit"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("roost_cache_bytes{pool=\"p\"}"),
        "{metrics}"
    );
    let api = support::get(s.admin.addr(), "admin", "/api/v1/cache").await;
    assert_eq!(api.0, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&api.2).unwrap();
    assert_eq!(v[0]["urls"], 1, "{v}");
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args([
            "ctl", "--admin", &admin, "cache", "purge", "--key", "x", "--pool", "nope",
        ])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("has no cache"));
}

#[tokio::test]
async fn an_application_cache_overrides_or_turns_off_its_pools() {
    let o = CountingOrigin::start(answer).await;
    let yaml = format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications:
      - {{path: /, pool: p}}
      - {{path: /live, pool: p, cache: {{enabled: false}}}}
      - {{path: /own/, pool: q, cache: {{xCache: true, maxBytes: 1MiB}}}}
pools:
  p:
    cache: {{xCache: true}}
    farm: {{servers: [{{address: "{a}"}}]}}
  q:
    farm: {{servers: [{{address: "{a}"}}]}}
"#,
        a = o.addr
    );
    let f = TestFront::start(&yaml).await;
    for pq in [
        "/a?cc=max-age%3D60",
        "/live/a?cc=max-age%3D60",
        "/own/a?cc=max-age%3D60",
    ] {
        get(f.addr, pq).await;
        get(f.addr, pq).await;
    }
    assert_eq!(o.count("/a?cc=max-age%3D60"), 1, "the pool's cache");
    assert_eq!(o.count("/live/a?cc=max-age%3D60"), 2, "off for /live");
    assert_eq!(
        get(f.addr, "/live/a?cc=max-age%3D60").await.h("x-cache"),
        None
    );
    assert_eq!(
        o.count("/own/a?cc=max-age%3D60"),
        1,
        "its own cache on a pool without"
    );
    let state = f.front.state();
    let own = state
        .caches
        .of_app("s", "/own")
        .expect("the application's cache");
    assert_eq!((&*own.pool, own.settings.max_bytes), ("q", 1024 * 1024));
    assert_eq!(own.urls(), 1);
    assert!(state.caches.get("q").is_none(), "pool q itself has none");
    // A purge of pool q reaches its application's cache.
    let p = roost::cache::admin::Purge {
        pool: Some("q".into()),
        prefix: Some(String::new()),
        key: None,
    };
    assert_eq!(roost::cache::admin::purge(&state.caches, &p), Ok(1));
    assert_eq!(own.urls(), 0);
}
