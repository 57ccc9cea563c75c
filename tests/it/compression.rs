//! Compression at the front end to end: a real origin whose answers the query chooses
//! (`type`, `n`, `enc`, `etag`, `cc`, `range`, `chunked`), a front started from YAML,
//! and real HTTP/1.1 and h2c clients whose bodies are decompressed with the decoders of
//! the same crate (a different code path from the encoders).

use crate::support;

use crate::support::origin::{param as q, send as send_to, CountingOrigin, OriginBody, Reply};

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use support::TestFront;
use tokio::io::AsyncReadExt;

/// The compression counters are process-wide: the tests of this file (the only ones in
/// this process that compress) take turns, so each sees exactly its own counts.
static SERIAL: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

/// The origin's body for `n` bytes: text that compresses well, and differs per size.
fn text(n: usize) -> Vec<u8> {
    let line = format!("roost compresses this line of a {n}-byte body. ");
    line.bytes().cycle().take(n).collect()
}

fn answer(req: &Request<Incoming>) -> Response<OriginBody> {
    let query = req.uri().query().unwrap_or("").to_string();
    let n: usize = q(&query, "n").and_then(|v| v.parse().ok()).unwrap_or(4000);
    let ctype = q(&query, "type").unwrap_or_else(|| "text/html; charset=utf-8".into());
    let mut b = Response::builder().header("content-type", ctype);
    for (param, header) in [("enc", "content-encoding"), ("cc", "cache-control")] {
        if let Some(v) = q(&query, param) {
            b = b.header(header, v);
        }
    }
    if let Some(e) = q(&query, "etag") {
        let tag = format!("\"{e}\"");
        let inm = req
            .headers()
            .get("if-none-match")
            .and_then(|v| v.to_str().ok());
        // Weak comparison, as RFC 9110 §13.1.2 has If-None-Match use.
        if inm.is_some_and(|v| v.trim_start_matches("W/") == tag) {
            let r = b.status(304).header("etag", &tag);
            return r.body(Full::new(Bytes::new()).boxed()).unwrap();
        }
        b = b.header("etag", tag);
    }
    let body = Bytes::from(text(n));
    if q(&query, "range").is_some() {
        b = b
            .status(206)
            .header("content-range", format!("bytes 0-{}/{}", n - 1, n * 2));
    }
    if q(&query, "chunked").is_some() {
        // Two frames and no length: the front sees an unknown size.
        let (a, z) = (body.slice(..n / 2), body.slice(n / 2..));
        let frames = futures_util::stream::iter([a, z].map(|c| Ok(Frame::data(c))));
        return b.body(StreamBody::new(frames).boxed()).unwrap();
    }
    b.body(Full::new(body).boxed()).unwrap()
}

/// The origin of these tests: answers as the query asks (see the module docs).
async fn origin() -> CountingOrigin {
    CountingOrigin::start(|req: Request<Incoming>| {
        let resp = answer(&req);
        async move { resp }
    })
    .await
}

/// The `Accept-Encoding` of the last request that reached the origin (`None`: absent).
fn last_ae(o: &CountingOrigin) -> Option<String> {
    let headers = o.last_headers()?;
    let ae = headers.get("accept-encoding")?;
    Some(ae.to_str().unwrap().to_string())
}

/// One site, `/` on pool `p` (with `pool_extra`), plus any `apps` lines.
fn yaml(origin: SocketAddr, pool_extra: &str) -> String {
    support::pool_yaml(&origin.to_string(), 100, pool_extra, "")
}

const ON: &str = "    compression: {minBytes: 1024}\n";

impl Reply {
    fn varies(&self) -> bool {
        self.headers.get_all("vary").iter().any(|v| {
            v.to_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("accept-encoding")
        })
    }

    /// The body as the client means it: decoded by its `Content-Encoding`.
    async fn decoded(&self) -> Vec<u8> {
        decode(self.h("content-encoding"), &self.body).await
    }
}

async fn decode(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            GzipDecoder::new(body).read_to_end(&mut out).await.unwrap();
        }
        Some("br") => {
            BrotliDecoder::new(body)
                .read_to_end(&mut out)
                .await
                .unwrap();
        }
        Some("zstd") => {
            ZstdDecoder::new(body).read_to_end(&mut out).await.unwrap();
        }
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

async fn send(addr: SocketAddr, method: &str, pq: &str, headers: &[(&str, &str)]) -> Reply {
    send_to(addr, "z.test", method, pq, headers).await
}

async fn get_ae(addr: SocketAddr, pq: &str, ae: &str) -> Reply {
    send(addr, "GET", pq, &[("accept-encoding", ae)]).await
}

#[tokio::test]
async fn each_algorithm_round_trips_and_drops_the_length() {
    let _turn = SERIAL.lock().await;
    let o = origin().await;
    let f = TestFront::start(&yaml(o.addr, ON)).await;
    for coding in ["gzip", "br", "zstd"] {
        for pq in ["/page?n=20000", "/stream?n=20000&chunked=1"] {
            let r = get_ae(f.addr, pq, coding).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.h("content-encoding"), Some(coding), "{pq}");
            assert_eq!(r.h("content-length"), None, "the length is the identity's");
            assert!(r.varies(), "{pq}: Vary: Accept-Encoding");
            assert!(
                r.body.len() < 20000 / 4,
                "{coding} shrank it: {}",
                r.body.len()
            );
            assert_eq!(r.decoded().await, text(20000), "{coding} {pq} round-trips");
        }
    }
}

#[tokio::test]
async fn q_values_and_the_servers_order_choose_the_coding() {
    let _turn = SERIAL.lock().await;
    let o = origin().await;
    let f = TestFront::start(&yaml(o.addr, ON)).await;
    let cases = [
        ("gzip, deflate, br", Some("br")),
        ("gzip, deflate, br, zstd", Some("zstd")),
        ("br;q=0.5, gzip;q=0.9", Some("gzip")),
        ("zstd;q=0, *;q=0.3", Some("br")),
        ("*;q=0", None),
        ("identity", None),
        ("deflate", None),
    ];
    for (ae, want) in cases {
        let r = get_ae(f.addr, "/q?n=5000", ae).await;
        assert_eq!(r.h("content-encoding"), want, "Accept-Encoding: {ae}");
        assert!(r.varies(), "{ae}");
        assert_eq!(r.decoded().await, text(5000), "{ae}");
        let sent = last_ae(&o);
        assert_eq!(
            sent.as_deref(),
            want,
            "the member sees only the chosen coding"
        );
    }
    // The configured list and its order.
    let only_gzip = "    compression: {algorithms: [gzip]}\n";
    let g = TestFront::start(&yaml(o.addr, only_gzip)).await;
    let r = get_ae(g.addr, "/q?n=5000", "zstd, br, gzip;q=0.1").await;
    assert_eq!(r.h("content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn encoded_ranged_small_other_types_and_head_are_left_alone() {
    let _turn = SERIAL.lock().await;
    let o = origin().await;
    let f = TestFront::start(&yaml(o.addr, ON)).await;
    let all = "gzip, br, zstd";
    // Already encoded by the member: passed through byte for byte.
    let pre = get_ae(f.addr, "/pre?n=3000&enc=gzip", all).await;
    assert_eq!(pre.h("content-encoding"), Some("gzip"));
    assert_eq!(pre.body, Bytes::from(text(3000)), "not compressed twice");
    let ranged = get_ae(f.addr, "/r?n=3000&range=1", all).await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.h("content-encoding"), None);
    assert_eq!(ranged.body.len(), 3000);
    let small = get_ae(f.addr, "/small?n=1000", all).await;
    assert_eq!(small.h("content-encoding"), None, "under minBytes");
    assert_eq!(small.h("content-length"), Some("1000"));
    assert!(!small.varies(), "a small body is the same for every client");
    let png = get_ae(f.addr, "/img?n=5000&type=image/png", all).await;
    assert_eq!(png.h("content-encoding"), None);
    assert!(!png.varies());
    let json = get_ae(f.addr, "/j?n=5000&type=application/json", all).await;
    assert_eq!(
        json.h("content-encoding"),
        Some("zstd"),
        "JSON is in the default list"
    );
    let nt = get_ae(f.addr, "/nt?n=5000&cc=no-transform", all).await;
    assert_eq!(
        nt.h("content-encoding"),
        None,
        "Cache-Control: no-transform"
    );
    let head = send(f.addr, "HEAD", "/h?n=5000", &[("accept-encoding", all)]).await;
    assert_eq!(head.h("content-encoding"), None);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn vary_is_set_when_the_client_did_not_ask() {
    let _turn = SERIAL.lock().await;
    let o = origin().await;
    let f = TestFront::start(&yaml(o.addr, ON)).await;
    let r = send(f.addr, "GET", "/plain?n=5000", &[]).await;
    assert_eq!(r.h("content-encoding"), None);
    assert_eq!(r.h("content-length"), Some("5000"));
    assert!(
        r.varies(),
        "a shared cache downstream must not hand this to a gzip client"
    );
    assert_eq!(r.body, Bytes::from(text(5000)));
}

#[tokio::test]
async fn a_strong_etag_is_weakened_and_revalidation_still_matches() {
    let _turn = SERIAL.lock().await;
    let o = origin().await;
    let cached = format!("{ON}    cache: {{xCache: true}}\n");
    let f = TestFront::start(&yaml(o.addr, &cached)).await;
    let pq = "/e?n=5000&etag=v1&cc=max-age%3D60";
    let r = get_ae(f.addr, pq, "br").await;
    assert_eq!(r.h("content-encoding"), Some("br"));
    assert_eq!(r.h("etag"), Some("W/\"v1\""));
    let plain = send(f.addr, "GET", pq, &[]).await;
    assert_eq!(
        plain.h("etag"),
        Some("\"v1\""),
        "identity keeps the strong tag"
    );
    // The client revalidates its compressed copy: the cache answers 304.
    let cond = [("accept-encoding", "br"), ("if-none-match", "W/\"v1\"")];
    let c = send(f.addr, "GET", pq, &cond).await;
    assert_eq!(c.status, StatusCode::NOT_MODIFIED);
    assert_eq!(c.h("x-cache"), Some("HIT"));
    // A stale compressed entry revalidates with its weak tag; the member's 304 (with
    // the strong tag) refreshes it and the stored tag stays weak.
    let short = "/e1?n=5000&etag=v2&cc=max-age%3D1";
    let first = get_ae(f.addr, short, "gzip").await;
    assert_eq!(first.h("etag"), Some("W/\"v2\""));
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let again = get_ae(f.addr, short, "gzip").await;
    assert_eq!(o.count(short), 2, "revalidated with the member");
    assert_eq!(again.h("x-cache"), Some("HIT"), "a 304 refreshed it");
    assert_eq!(again.h("etag"), Some("W/\"v2\""));
    assert_eq!(again.h("content-encoding"), Some("gzip"));
    assert_eq!(again.decoded().await, text(5000));
}

#[tokio::test]
async fn the_cache_keeps_one_variant_per_coding_and_hits_are_not_recompressed() {
    let _turn = SERIAL.lock().await;
    let o = origin().await;
    let cached = format!("{ON}    cache: {{xCache: true}}\n");
    let f = TestFront::start(&yaml(o.addr, &cached)).await;
    let pq = "/v?n=8000&cc=max-age%3D60";
    let br = get_ae(f.addr, pq, "gzip, deflate, br").await;
    assert_eq!(
        (br.h("x-cache"), br.h("content-encoding")),
        (Some("MISS"), Some("br"))
    );
    // Another spelling that picks br is the same variant.
    let before = roost::compress::metrics::COUNTERS[1]
        .responses
        .load(Ordering::Relaxed);
    let br2 = get_ae(f.addr, pq, "br;q=1.0, gzip;q=0.5").await;
    assert_eq!(
        (br2.h("x-cache"), br2.h("content-encoding")),
        (Some("HIT"), Some("br"))
    );
    assert_eq!(br2.body, br.body, "served as stored");
    let after = roost::compress::metrics::COUNTERS[1]
        .responses
        .load(Ordering::Relaxed);
    assert_eq!(after, before, "the hit compressed nothing");
    let gz = get_ae(f.addr, pq, "gzip").await;
    assert_eq!(
        (gz.h("x-cache"), gz.h("content-encoding")),
        (Some("MISS"), Some("gzip"))
    );
    let id = send(f.addr, "GET", pq, &[]).await;
    assert_eq!(
        (id.h("x-cache"), id.h("content-encoding")),
        (Some("MISS"), None)
    );
    for ae in ["br", "gzip", ""] {
        let r = match ae {
            "" => send(f.addr, "GET", pq, &[]).await,
            _ => get_ae(f.addr, pq, ae).await,
        };
        assert_eq!(r.h("x-cache"), Some("HIT"), "{ae:?}");
        assert_eq!(r.decoded().await, text(8000), "{ae:?}");
    }
    assert_eq!(o.count(pq), 3, "one member request per coding");
}

#[tokio::test]
async fn bytes_in_and_out_are_counted_by_algorithm() {
    let _turn = SERIAL.lock().await;
    let o = origin().await;
    let f = TestFront::start(&yaml(o.addr, ON)).await;
    let c = &roost::compress::metrics::COUNTERS[2];
    let (in0, out0) = (
        c.bytes_in.load(Ordering::Relaxed),
        c.bytes_out.load(Ordering::Relaxed),
    );
    let r = get_ae(f.addr, "/m?n=30000", "gzip").await;
    assert_eq!(r.h("content-encoding"), Some("gzip"));
    let (in1, out1) = (
        c.bytes_in.load(Ordering::Relaxed),
        c.bytes_out.load(Ordering::Relaxed),
    );
    assert_eq!(in1 - in0, 30000, "in: the identity bytes");
    assert_eq!(out1 - out0, r.body.len() as u64, "out: what was sent");
}

#[tokio::test]
async fn an_http2_client_gets_compressed_responses() {
    let _turn = SERIAL.lock().await;
    let o = origin().await;
    let f = TestFront::start(&yaml(o.addr, ON)).await;
    let mut h2 = support::h2c(f.addr).await;
    let req = Request::get("http://z.test/h2?n=12000")
        .header("accept-encoding", "zstd")
        .body(support::empty())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.headers().get("content-encoding").unwrap(), "zstd");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(decode(Some("zstd"), &body).await, text(12000));
}

#[tokio::test]
async fn an_application_overrides_its_pool() {
    let _turn = SERIAL.lock().await;
    let o = origin().await;
    let yaml = format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications:
      - {{path: /, pool: p}}
      - {{path: /raw, pool: p, compression: {{enabled: false}}}}
      - {{path: /own, pool: q, compression: {{algorithms: [gzip], types: [application/x-custom]}}}}
pools:
  p:
    compression: {{}}
    farm: {{servers: [{{address: "{a}"}}]}}
  q:
    farm: {{servers: [{{address: "{a}"}}]}}
"#,
        a = o.addr
    );
    let f = TestFront::start(&yaml).await;
    let all = "zstd, br, gzip";
    let root = get_ae(f.addr, "/x?n=5000", all).await;
    assert_eq!(
        root.h("content-encoding"),
        Some("zstd"),
        "the pool's settings"
    );
    let raw = get_ae(f.addr, "/raw/x?n=5000", all).await;
    assert_eq!(raw.h("content-encoding"), None, "turned off for /raw");
    assert!(!raw.varies());
    let own = get_ae(f.addr, "/own/x?n=5000&type=application/x-custom", all).await;
    assert_eq!(
        own.h("content-encoding"),
        Some("gzip"),
        "its own, on a pool without"
    );
    let own_html = get_ae(f.addr, "/own/y?n=5000", all).await;
    assert_eq!(own_html.h("content-encoding"), None, "its own type list");
}

#[test]
fn a_bad_compression_config_names_the_key_the_value_and_why() {
    let yaml = support::pool_yaml(
        "127.0.0.1:9",
        10,
        "    compression: {algorithms: [gzip, lz4, gzip], types: [text, 'text/*'], minBytes: lots, level: max, enabled: maybe}\n",
        "",
    );
    let err = roost::config::load_str(&yaml, "test.yaml")
        .unwrap_err()
        .to_string();
    for want in [
        "pools.p.compression.algorithms[1]",
        "unknown algorithm",
        "pools.p.compression.algorithms[2]",
        "listed twice",
        "pools.p.compression.types[0]",
        "media type",
        "pools.p.compression.minBytes",
        "byte size",
        "pools.p.compression.level",
        "fastest, default, best",
        "pools.p.compression.enabled",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
    let app = r#"
sites:
  - name: s
    bindings: [{listen: "127.0.0.1:0"}]
    applications: [{path: /, pool: p, cache: {maxBytes: 0}, compression: [gzip]}]
pools:
  p:
    farm: {servers: [{address: "127.0.0.1:9"}]}
"#;
    let err = roost::config::load_str(app, "test.yaml")
        .unwrap_err()
        .to_string();
    for want in [
        "sites[0].applications[0].cache.maxBytes",
        "sites[0].applications[0].compression",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
}
