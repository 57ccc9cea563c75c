//! The front's overload manager (issue 12 part 2): silent connections must not lock
//! clients out. Real listeners, real sockets, a real backend.

use crate::support::*;
use http::StatusCode;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn yaml(backend: &Backend, limits: &str) -> String {
    pool_yaml(
        &backend.addr.to_string(),
        100,
        "",
        &format!("limits: {limits}"),
    )
}

/// `n` TCP connections that send nothing, each admitted before the next is opened (the
/// front's open count is watched), so their accept order is their index order.
async fn silent(f: &TestFront, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        let base = f.front.open_connections();
        v.push(TcpStream::connect(f.addr).await.unwrap());
        assert!(
            eventually(Duration::from_secs(10), || f.front.open_connections()
                > base)
            .await,
            "connection {} not admitted",
            v.len()
        );
    }
    v
}

/// True when the server closed `s` (end of stream or reset) within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// One GET on a raw keep-alive connection; returns the status and body.
async fn raw_get(s: &mut TcpStream, path: &str) -> (u16, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "closed before a whole response");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let len: usize = text[..end]
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        if got.len() >= end + 4 + len {
            let status = text[9..12].parse().unwrap();
            return (status, text[end + 4..end + 4 + len].to_string());
        }
    }
}

/// A keep-alive connection that has finished one request (idle now).
async fn idle(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(raw_get(&mut s, "/warm").await.0, 200);
    s
}

#[tokio::test]
async fn silent_connections_make_room_for_a_client_oldest_first() {
    init_tracing();
    let be = Backend::start("a").await;
    // (Sweeps of connections silent past the reduced head wait stay out of the way.)
    let limits = "{maxConnections: 20, overload: {headerWaitTimeout: 60s}}";
    let f = TestFront::start(&yaml(&be, limits)).await;
    let mut quiet = silent(&f, 20).await;
    assert_eq!(f.front.open_connections(), 20);

    // Today this client was closed at once until a silent one timed out (120 s).
    let served = tokio::time::timeout(Duration::from_secs(10), get(f.addr, "x", "/hello"))
        .await
        .expect("a normal client is served while silent sockets fill the front");
    assert_eq!((served.0, served.2.as_str()), (StatusCode::OK, "a /hello"));

    // The oldest silent connection made room; the newest is untouched.
    assert!(closed_within(&mut quiet[0], Duration::from_secs(10)).await);
    assert!(!closed_within(&mut quiet[19], Duration::from_millis(300)).await);
    // Once that client has left, fill the front again with one that stays (idle):
    // the next oldest silent connection makes room for it.
    assert!(eventually(Duration::from_secs(10), || f.front.open_connections() == 19).await);
    let _more = silent(&f, 1).await;
    let mut stays = idle(f.addr).await;
    assert!(closed_within(&mut quiet[1], Duration::from_secs(10)).await);
    assert!(!closed_within(&mut quiet[2], Duration::from_millis(300)).await);
    assert_eq!(
        raw_get(&mut stays, "/again").await,
        (200, "a /again".into())
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_reclaimed_after_silent_ones() {
    init_tracing();
    let be = Backend::start("a").await;
    let f = TestFront::start(&yaml(&be, "{maxConnections: 6}")).await;
    // Older than the silent ones, yet they go last.
    let mut idle_ones = vec![idle(f.addr).await, idle(f.addr).await];
    let mut quiet = silent(&f, 4).await;
    assert_eq!(f.front.open_connections(), 6);

    // Four newcomers (kept open, idle after their request) replace the four silent ones.
    let mut newcomers = Vec::new();
    for _ in 0..4 {
        newcomers.push(idle(f.addr).await);
    }
    for q in &mut quiet {
        assert!(closed_within(q, Duration::from_secs(10)).await);
    }
    for i in &mut idle_ones {
        assert!(!closed_within(i, Duration::from_millis(300)).await);
    }

    // No silent connection left: the longest-idle one makes room for the next client.
    let mut last = TcpStream::connect(f.addr).await.unwrap();
    assert_eq!(raw_get(&mut last, "/last").await, (200, "a /last".into()));
    assert!(closed_within(&mut idle_ones[0], Duration::from_secs(10)).await);
    assert!(!closed_within(&mut idle_ones[1], Duration::from_millis(300)).await);
    assert_eq!(raw_get(&mut idle_ones[1], "/still").await.0, 200);
}

#[tokio::test]
async fn busy_connections_are_never_reclaimed() {
    init_tracing();
    let be = Backend::start("a").await;
    let f = TestFront::start(&yaml(&be, "{maxConnections: 2}")).await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(b"GET /slow?ms=3000 HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        busy.push(s);
    }
    assert!(
        eventually(Duration::from_secs(10), || be
            .active
            .load(std::sync::atomic::Ordering::SeqCst)
            == 2)
        .await
    );
    // Every connection has a request in flight: the newcomer is refused, as before.
    let mut extra = TcpStream::connect(f.addr).await.unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(closed_within(&mut extra, Duration::from_secs(10)).await);
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), busy[0].read(&mut buf))
        .await
        .expect("the slow response arrives")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn per_client_cap_refuses_the_next_connection_from_that_address() {
    init_tracing();
    let be = Backend::start("a").await;
    let f = TestFront::start(&yaml(&be, "{maxConnectionsPerClient: 3}")).await;
    let mut quiet = silent(&f, 3).await;
    let mut fourth = TcpStream::connect(f.addr).await.unwrap();
    let _ = fourth.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(closed_within(&mut fourth, Duration::from_secs(10)).await);
    // The cap refuses; it does not reclaim the client's other connections.
    assert_eq!(f.front.open_connections(), 3);
    assert!(!closed_within(&mut quiet[0], Duration::from_millis(300)).await);

    // Another address is not affected (all of 127.0.0.0/8 is loopback on Linux).
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = sock.connect(f.addr).await.unwrap();
    assert_eq!(
        raw_get(&mut other, "/other").await,
        (200, "a /other".into())
    );

    // A connection that closes gives its place back.
    drop(quiet.pop());
    assert!(eventually(Duration::from_secs(10), || f.front.open_connections() == 3).await);
    let mut again = TcpStream::connect(f.addr).await.unwrap();
    assert_eq!(raw_get(&mut again, "/again").await.0, 200);
}

#[tokio::test]
async fn reduced_timeouts_apply_under_pressure() {
    init_tracing();
    let be = Backend::start("a").await;
    let f = TestFront::start(&yaml(
        &be,
        "{maxConnections: 10, overload: {highWater: 50%, headerWaitTimeout: 1s, idleTimeout: 1s}}",
    ))
    .await;
    // Below the high-water mark (5) the normal 120 s head wait holds.
    let mut early = silent(&f, 3).await;
    let mut kept = idle(f.addr).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!closed_within(&mut early[0], Duration::from_millis(100)).await);
    assert!(!closed_within(&mut kept, Duration::from_millis(100)).await);

    // The fifth reaches it: that connection waits 1 s only, and the old ones that have
    // outlived 1 s are swept.
    let mut late = TcpStream::connect(f.addr).await.unwrap();
    for s in std::iter::once(&mut late).chain(early.iter_mut()) {
        assert!(closed_within(s, Duration::from_secs(20)).await);
    }
    assert!(closed_within(&mut kept, Duration::from_secs(20)).await);
    assert!(eventually(Duration::from_secs(10), || f.front.open_connections() == 0).await);
    let s = f.front.connections().snapshot();
    assert_eq!(s.reclaimed[1], 3, "{s:?}");
    assert_eq!(s.reclaimed[3], 1, "{s:?}");
}

async fn admin_for(f: &TestFront) -> roost::admin::Admin {
    roost::admin::Admin::start_with_interval(
        &roost::config::model::Admin {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
            public: None,
        },
        roost::admin::AdminContext {
            front: f.front.clone(),
            supervisor: None,
            reload: None,
        },
        Duration::from_secs(3600),
    )
    .await
    .expect("admin starts")
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_show_states_and_reclaims_and_diagnosis_names_it() {
    init_tracing();
    let be = Backend::start("a").await;
    let f = TestFront::start(&yaml(&be, "{maxConnections: 5}")).await;
    let admin = admin_for(&f).await;
    admin.sampler().sample_once().await;
    let _kept = idle(f.addr).await;
    let mut busy = TcpStream::connect(f.addr).await.unwrap();
    busy.write_all(b"GET /slow?ms=4000 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let _quiet = silent(&f, 3).await;
    let want = [
        ("awaiting_head", 3.0),
        ("idle", 1.0),
        ("active", 1.0),
        ("handshake", 0.0),
    ];
    let mut text = String::new();
    let ok = {
        let mut ok = false;
        for _ in 0..200 {
            text = get(admin.addr(), "admin", "/metrics").await.2;
            ok = want.iter().all(|(st, n)| {
                metric(&text, &format!("roost_front_connections{{state=\"{st}\"}}")) == Some(*n)
            });
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ok
    };
    assert!(ok, "{text}");

    // Full: the next client takes the oldest silent connection's place.
    assert_eq!(get(f.addr, "x", "/in").await.0, StatusCode::OK);
    let text = get(admin.addr(), "admin", "/metrics").await.2;
    let reclaimed = "roost_front_connections_reclaimed_total{reason=\"awaiting_head\"}";
    assert_eq!(metric(&text, reclaimed), Some(1.0), "{text}");
    assert_eq!(
        metric(
            &text,
            "roost_front_connections_refused_total{reason=\"max_connections\"}"
        ),
        Some(0.0)
    );

    admin.sampler().sample_once().await;
    let (_, _, body) = get(admin.addr(), "admin", "/api/v1/diagnose").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let finding = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "connection_pressure")
        .unwrap_or_else(|| panic!("no connection_pressure finding: {body}"));
    assert_eq!(finding["pool"], "front");
    assert!(finding["title"]
        .as_str()
        .unwrap()
        .contains("1 connections that sent no request"));
}

#[tokio::test]
async fn h2c_connections_awaiting_the_preface_and_idle_are_reclaimed() {
    init_tracing();
    let be = Backend::start("a").await;
    let f = TestFront::start(&yaml(&be, "{maxConnections: 2}")).await;
    // An h2c connection that finished a request (idle), then a silent one.
    let mut h2 = h2c(f.addr).await;
    let r = h2
        .send_request(http::Request::get("http://x/h2").body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(read(r).await.2, "a /h2");
    let mut quiet = silent(&f, 1).await;
    assert_eq!(f.front.open_connections(), 2);
    // The silent one goes first ...
    assert_eq!(get(f.addr, "x", "/one").await.0, StatusCode::OK);
    assert!(closed_within(&mut quiet[0], Duration::from_secs(10)).await);
    assert!(eventually(Duration::from_secs(10), || f.front.open_connections() <= 2).await);
    // ... then the idle HTTP/2 connection (the one-shot client above has left already).
    let mut a = idle(f.addr).await;
    let mut b = TcpStream::connect(f.addr).await.unwrap();
    assert_eq!(raw_get(&mut b, "/two").await.0, 200);
    assert!(
        eventually(Duration::from_secs(10), || h2.is_closed()).await,
        "the idle HTTP/2 connection was not reclaimed"
    );
    assert!(!closed_within(&mut a, Duration::from_millis(300)).await);
}

#[test]
fn overload_settings_are_validated_with_clear_errors() {
    let bad = pool_yaml(
        "127.0.0.1:1",
        1,
        "",
        "limits: {maxConnectionsPerClient: -1, overload: {highWater: 1.5, headerWaitTimeout: 0, idleTimeout: soon}}",
    );
    let err = roost::config::load_str(&bad, "t.yaml")
        .unwrap_err()
        .to_string();
    for want in [
        "limits.maxConnectionsPerClient",
        "limits.overload.highWater",
        "at most 1",
        "limits.overload.headerWaitTimeout",
        "limits.overload.idleTimeout",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let good = pool_yaml(
        "127.0.0.1:1",
        1,
        "",
        "limits: {maxConnectionsPerClient: 50, overload: {highWater: 90%, headerWaitTimeout: 5s, idleTimeout: 2s}}",
    );
    let c = roost::config::load_str(&good, "t.yaml").unwrap();
    assert_eq!(c.limits.max_connections_per_client, Some(50));
    assert_eq!(c.limits.overload.high_water, 0.9);
    assert_eq!(
        c.limits.overload.header_wait_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(c.limits.overload.idle_timeout, Duration::from_secs(2));
}

/// A CA-signed certificate for `a.test` in `dir`, and a client config trusting the CA.
fn tls_files(dir: &std::path::Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["a.test".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("a.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("a.key"), key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    std::sync::Arc::new(cfg)
}

#[tokio::test]
async fn connections_stuck_in_the_tls_handshake_make_room() {
    init_tracing();
    let be = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let client = tls_files(dir.path());
    let d = dir.path().display();
    let f = TestFront::start(&format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0", tls: {{cert: "{d}/a.crt", key: "{d}/a.key"}}}}]
    applications: [{{path: /, pool: p}}]
pools:
  p:
    farm:
      servers: [{{address: "{}"}}]
limits: {{maxConnections: 3}}
"#,
        be.addr
    ))
    .await;
    let mut quiet = silent(&f, 3).await;
    assert_eq!(f.front.connections().snapshot().by_state, [3, 0, 0, 0]);

    let tcp = TcpStream::connect(f.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("a.test").unwrap();
    let mut tls = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(client).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("a TLS client is served while silent sockets fill the front");
    tls.write_all(b"GET /tls HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("a /tls"),
        "{text}"
    );
    assert!(closed_within(&mut quiet[0], Duration::from_secs(10)).await);
    assert!(!closed_within(&mut quiet[2], Duration::from_millis(300)).await);
    assert_eq!(f.front.connections().snapshot().reclaimed[0], 1);
}
