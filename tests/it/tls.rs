//! TLS bindings: several certificates chosen by SNI, ALPN h2 and http/1.1, and the
//! handshake timeout.

use crate::support::*;
use http::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

struct Pki {
    dir: tempfile::TempDir,
    roots: rustls::RootCertStore,
}

/// A CA and one leaf per name, written as PEM files `NAME.crt` / `NAME.key`.
fn pki(names: &[&str]) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    for n in names {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![n.to_string(), format!("*.{n}")])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.path().join(format!("{n}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.path().join(format!("{n}.key")), key.serialize_pem()).unwrap();
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    Pki { dir, roots }
}

fn client_config(roots: &rustls::RootCertStore, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(cfg);
    connector
        .connect(
            rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

fn yaml(dir: &std::path::Path, backend: &str, extra: &str) -> String {
    let d = dir.display();
    format!(
        r#"
sites:
  - name: secure
    bindings:
      - listen: "127.0.0.1:0"
        tls:
          certificates:
            - {{cert: "{d}/a.test.crt", key: "{d}/a.test.key", serverNames: [a.test]}}
            - {{cert: "{d}/b.test.crt", key: "{d}/b.test.key", serverNames: ["*.b.test", b.test]}}
    applications: [{{path: /, pool: p}}]
pools:
  p: {{farm: {{servers: [{{address: "{backend}"}}]}}}}
{extra}
"#
    )
}

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_picks_the_protocol() {
    init_tracing();
    let pki = pki(&["a.test", "b.test"]);
    let be = Backend::start("be").await;
    let f = TestFront::start(&yaml(pki.dir.path(), &be.addr.to_string(), "")).await;

    // h2 over TLS for a.test: the handshake only verifies if a.test's certificate is served.
    let s = tls_connect(f.addr, "a.test", client_config(&pki.roots, &[b"h2"])).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(
            Request::get("https://a.test/over-h2")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let (st, _, body) = read(resp).await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "be /over-h2"));

    // HTTP/1.1 over TLS for a wildcard name on the second certificate.
    let s = tls_connect(
        f.addr,
        "www.b.test",
        client_config(&pki.roots, &[b"http/1.1"]),
    )
    .await;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(
            Request::get("/h1-headers")
                .header("host", "www.b.test")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let (st, _, body) = read(resp).await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "be /h1-headers"));

    // The forwarded proto says https.
    let s = tls_connect(f.addr, "b.test", client_config(&pki.roots, &[])).await;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(
            Request::get("/headers")
                .header("host", "b.test")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let (_, _, body) = read(resp).await;
    assert!(body.contains("x-forwarded-proto: https"), "{body}");
}

#[tokio::test]
async fn stalled_tls_handshake_is_cut_off() {
    let pki = pki(&["a.test", "b.test"]);
    let be = Backend::start("be").await;
    let f = TestFront::start(&yaml(
        pki.dir.path(),
        &be.addr.to_string(),
        "limits: {tlsHandshakeTimeout: 300ms}",
    ))
    .await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(r, Ok(0) | Err(_)));
    assert!(started.elapsed() >= Duration::from_millis(250));
}
