//! Members that break HTTP/1.1 on purpose. The one that matters most: a member that
//! writes bytes no request asked for (an unsolicited second response) must never make
//! a later request, from this client or another, read them as its own response.
//!
//! The member runs on its own thread and runtime. The tests that pin the reuse check
//! block their own runtime while the stray bytes arrive, as a busy front's runtime is
//! blocked by other work: tokio's readiness then does not know of the bytes, and only a
//! check that asks the kernel sees them.

use crate::support;

use http_body_util::BodyExt;
use roost::upstream::{Client, Discard, Endpoint};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const STRAY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nSTRAY";

/// Where the member listens.
enum Listen {
    Tcp,
    Unix(PathBuf),
    Tls(Arc<rustls::ServerConfig>),
}

/// A member that answers each request with its `x-id` header and, after the first
/// answer on each connection, writes [`STRAY`] `stray_after` later (once).
struct StrayMember {
    addr: Option<SocketAddr>,
    strays: Arc<AtomicUsize>,
    /// One message per stray written (the tests wait on it).
    sent: mpsc::Receiver<()>,
}

impl StrayMember {
    fn start(listen: Listen, stray_after: Duration) -> StrayMember {
        let strays = Arc::new(AtomicUsize::new(0));
        let (tx, sent) = mpsc::channel();
        let (addr_tx, addr_rx) = mpsc::channel();
        let counter = strays.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(listen, stray_after, counter, tx, addr_tx));
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        StrayMember { addr, strays, sent }
    }

    fn wait_for_stray(&self) {
        self.sent
            .recv_timeout(Duration::from_secs(10))
            .expect("the member wrote its stray response");
    }
}

async fn serve(
    listen: Listen,
    stray_after: Duration,
    strays: Arc<AtomicUsize>,
    sent: mpsc::Sender<()>,
    addr: mpsc::Sender<Option<SocketAddr>>,
) {
    match listen {
        Listen::Unix(path) => {
            let l = tokio::net::UnixListener::bind(&path).unwrap();
            addr.send(None).unwrap();
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(conn(s, stray_after, strays.clone(), sent.clone()));
            }
        }
        Listen::Tcp | Listen::Tls(_) => {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr.send(Some(l.local_addr().unwrap())).unwrap();
            let tls = match listen {
                Listen::Tls(cfg) => Some(tokio_rustls::TlsAcceptor::from(cfg)),
                _ => None,
            };
            loop {
                let (s, _) = l.accept().await.unwrap();
                // Without it Nagle holds the small stray until the answer is acked (a
                // delayed ACK: ~40 ms), and the stray would arrive mid-request.
                s.set_nodelay(true).unwrap();
                let (strays, sent) = (strays.clone(), sent.clone());
                match tls.clone() {
                    Some(acceptor) => {
                        tokio::spawn(async move {
                            if let Ok(s) = acceptor.accept(s).await {
                                conn(s, stray_after, strays, sent).await;
                            }
                        });
                    }
                    None => {
                        tokio::spawn(conn(s, stray_after, strays, sent));
                    }
                }
            }
        }
    }
}

/// Serve one connection: requests in order; the stray once, after the first answer.
async fn conn<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    s: S,
    stray_after: Duration,
    strays: Arc<AtomicUsize>,
    sent: mpsc::Sender<()>,
) {
    let (mut r, w) = tokio::io::split(s);
    let w = Arc::new(tokio::sync::Mutex::new(w));
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        let Some(id) = read_head(&mut r, &mut buf).await else {
            return;
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{id}",
            id.len()
        );
        let mut wl = w.lock().await;
        if wl.write_all(reply.as_bytes()).await.is_err() || wl.flush().await.is_err() {
            return;
        }
        drop(wl);
        if std::mem::take(&mut first) {
            let (w, strays, sent) = (w.clone(), strays.clone(), sent.clone());
            tokio::spawn(async move {
                tokio::time::sleep(stray_after).await;
                let mut w = w.lock().await;
                // Flushed: TLS may hold written bytes until then.
                if w.write_all(STRAY).await.is_ok() && w.flush().await.is_ok() {
                    strays.fetch_add(1, Ordering::SeqCst);
                    let _ = sent.send(());
                }
            });
        }
    }
}

/// Read one request head; its `x-id` value (`-` if none). `None` at end of stream.
async fn read_head<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            let id = head
                .lines()
                .find_map(|l| l.strip_prefix("x-id:"))
                .map_or("-".to_string(), |v| v.trim().to_string());
            return Some(id);
        }
        let mut chunk = [0u8; 4096];
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn timeouts() -> roost::config::model::UpstreamTimeouts {
    roost::config::model::UpstreamTimeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    }
}

async fn send(c: &Client, id: &str) -> String {
    let req = http::Request::get("/")
        .header("host", "m")
        .header("x-id", id)
        .body(roost::body::empty())
        .unwrap();
    let resp = c.send(req).await.expect("the member answers");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// Two requests on a client: the member's stray arrives between them while the runtime
/// is blocked (no reactor turn), and the second request must still read its own answer.
async fn stray_between_two_requests(c: Client, member: &StrayMember) {
    assert_eq!(send(&c, "one").await, "one");
    let before = Discard::StrayBytes.count();
    // Blocking on purpose: the stray lands in the socket while tokio is not looking.
    member.wait_for_stray();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        send(&c, "two").await,
        "two",
        "a pooled connection holding a stray response was reused"
    );
    assert!(
        Discard::StrayBytes.count() > before,
        "the connection was discarded as stray_bytes"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn tcp_member_stray_response_is_never_read_as_the_next_response() {
    let member = StrayMember::start(Listen::Tcp, Duration::from_millis(10));
    let addr = member.addr.unwrap();
    let endpoint = Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port: addr.port(),
    };
    stray_between_two_requests(Client::new(endpoint, &timeouts()), &member).await;
}

#[tokio::test(flavor = "current_thread")]
async fn unix_member_stray_response_is_never_read_as_the_next_response() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.sock");
    let member = StrayMember::start(Listen::Unix(path.clone()), Duration::from_millis(10));
    stray_between_two_requests(Client::new(Endpoint::Unix(path), &timeouts()), &member).await;
}

fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let der = cert.der().clone();
    let key_der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key_der)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

#[tokio::test(flavor = "current_thread")]
async fn tls_member_stray_response_is_never_read_as_the_next_response() {
    let (server, client) = tls_pair();
    let member = StrayMember::start(Listen::Tls(server), Duration::from_millis(10));
    let addr = member.addr.unwrap();
    let endpoint = Endpoint::Tls {
        host: "127.0.0.1".into(),
        port: addr.port(),
        server_name: rustls_pki_types::ServerName::try_from("localhost").unwrap(),
        config: client,
    };
    stray_between_two_requests(Client::new(endpoint, &timeouts()), &member).await;
}

#[tokio::test(flavor = "current_thread")]
async fn bytes_after_a_complete_response_end_the_connection() {
    // The stray comes right behind the answer, so it is often read with it.
    let member = StrayMember::start(Listen::Tcp, Duration::ZERO);
    let addr = member.addr.unwrap();
    let c = Client::new(
        Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: addr.port(),
        },
        &timeouts(),
    );
    for i in 0..20 {
        let id = format!("r{i}");
        assert_eq!(send(&c, &id).await, id);
        // Let this connection's stray arrive (the wait blocks, as load would).
        while member.strays.load(Ordering::SeqCst) < i + 1 {
            member.wait_for_stray();
        }
    }
    assert_eq!(
        member.strays.load(Ordering::SeqCst),
        20,
        "one stray per connection"
    );
}

/// Through a real front, over HTTP/1.1 and HTTP/2 client connections: clients in turn,
/// the member's strays arriving between their requests, and every client reads only its
/// own answers.
#[tokio::test(flavor = "current_thread")]
async fn through_the_front_no_client_reads_another_requests_response() {
    let member = StrayMember::start(Listen::Tcp, Duration::from_millis(100));
    let yaml = support::one_pool_yaml(&member.addr.unwrap().to_string());
    let front = support::TestFront::start(&yaml).await;
    let mut h1 = support::h1(front.addr).await;
    let mut h2 = support::h2c(front.addr).await;
    let before = Discard::StrayBytes.count();
    for i in 0..10 {
        for (proto, id) in [("h1", format!("a{i}")), ("h2", format!("b{i}"))] {
            let req = http::Request::get(front.url("/"))
                .header("host", "x")
                .header("x-id", &id)
                .body(support::empty())
                .unwrap();
            let resp = match proto {
                "h1" => h1.send_request(req).await.unwrap(),
                _ => h2.send_request(req).await.unwrap(),
            };
            let (status, _, body) = support::read(resp).await;
            assert_eq!(status, 200);
            assert_eq!(body, id, "{proto} client read another request's response");
        }
        // Each round opens a connection (the last one was discarded), and its stray
        // lands while the front's runtime is blocked, as it would be under load.
        while member.strays.load(Ordering::SeqCst) < i + 1 {
            member.wait_for_stray();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(Discard::StrayBytes.count() >= before + 9);
}

/// A request written on a pooled connection that the member closes unanswered (the
/// keep-alive race) is sent again, and counted as a retry after a send; when nothing
/// can take it, it is reported as unanswered, not as a connect failure.
#[tokio::test]
async fn a_request_resent_after_an_unanswered_send_is_counted_as_such() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let member = tokio::spawn(async move {
        // First connection: answer one request, then read the next and close unanswered.
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = Vec::new();
        read_head(&mut s, &mut buf).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        read_head(&mut s, &mut buf).await.unwrap();
        drop(s);
        // The re-send arrives on a new connection; its answer is the request's.
        let (mut s, _) = l.accept().await.unwrap();
        let id = read_head(&mut s, &mut Vec::new()).await.unwrap();
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{id}",
            id.len()
        );
        s.write_all(reply.as_bytes()).await.unwrap();
        // Then the listener goes: the next re-send finds no member.
        (s, l)
    });
    let c = Client::new(
        Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        &timeouts(),
    );
    assert_eq!(send(&c, "first").await, "ok");
    let before = roost::upstream::Retry::AfterSend.count();
    assert_eq!(send(&c, "again").await, "again");
    assert!(roost::upstream::Retry::AfterSend.count() > before);
    let (s, l) = member.await.unwrap();
    drop(s);

    // Now the pooled connection is closed under the next request and nobody listens.
    let member = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let id = read_head(&mut s, &mut Vec::new()).await.unwrap();
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{id}",
            id.len()
        );
        s.write_all(reply.as_bytes()).await.unwrap();
        drop(l);
        read_head(&mut s, &mut Vec::new()).await;
        drop(s);
    });
    assert_eq!(send(&c, "third").await, "third");
    let req = http::Request::get("/")
        .header("host", "m")
        .body(roost::body::empty())
        .unwrap();
    let Err(err) = c.send(req).await else {
        panic!("no member left to answer");
    };
    member.await.unwrap();
    assert!(
        matches!(err, roost::upstream::UpstreamError::Unanswered(_)),
        "{err}"
    );
    assert_eq!(err.reason(), roost::error::Reason::ConnectFailed);
}
