//! HTTP/1.1 conformance of the front as a client sees it, on raw sockets with exact bytes.
//!
//! These tests pin the behaviour the front has with hyper's HTTP/1.1 server, so that a
//! replacement server loop can be checked against it: connection management (keep-alive,
//! pipelining, HTTP/1.0, half-close), request framing (Content-Length, chunked,
//! `Expect: 100-continue`), refusals of malformed or ambiguous requests, response framing
//! (HEAD, 204, 304, close-delimited and chunked upstream responses), `Date`, large bodies,
//! clients that vanish mid-response, and upgrades.

use crate::support::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every read waits at most this long: a hung front fails the test instead of hanging it.
const READ_LIMIT: Duration = Duration::from_secs(5);

async fn front_with_backend() -> (Backend, TestFront) {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool_yaml(&be.addr.to_string())).await;
    (be, f)
}

// ---------------------------------------------------------------------------------------
// A raw HTTP/1.1 response reader.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body by rule (HEAD, 1xx, 204, 304).
    NoBody,
    Length,
    Chunked,
    /// Delimited by the server closing the connection.
    Close,
}

#[derive(Debug)]
struct Resp {
    version: String,
    status: u16,
    /// Header names lower-cased, in order received.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    framing: Framing,
    trailers: Vec<(String, String)>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(k, _)| k == name).count()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection: exact bytes out, responses parsed from a buffer.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Conn {
        Conn {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Read more bytes into the buffer; 0 at end of stream (a reset counts as the end).
    async fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 16 * 1024];
        match tokio::time::timeout(READ_LIMIT, self.s.read(&mut tmp)).await {
            Err(_) => panic!("read timed out; buffered: {:?}", self.lossy()),
            Ok(Err(_)) => 0,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                n
            }
        }
    }

    fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.buf[..self.buf.len().min(400)]).into_owned()
    }

    /// Take one CRLF-terminated line (LF alone is accepted) from the buffer.
    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut l: Vec<u8> = self.buf.drain(..=i).collect();
                l.pop();
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return String::from_utf8(l).expect("response line is text");
            }
            assert!(self.fill().await > 0, "closed mid-line: {:?}", self.lossy());
        }
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(
                self.fill().await > 0,
                "closed with {} of {n} body bytes",
                self.buf.len()
            );
        }
        self.buf.drain(..n).collect()
    }

    async fn fields(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            if l.is_empty() {
                return out;
            }
            let (k, v) = l.split_once(':').expect("header has a colon");
            out.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
    }

    /// Read one response (any 1xx included) to a request with method `method`.
    async fn response(&mut self, method: &str) -> Resp {
        let status_line = self.line().await;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!("bad status line {status_line:?}");
            });
        let headers = self.fields().await;
        let mut r = Resp {
            version,
            status,
            headers,
            body: Vec::new(),
            framing: Framing::NoBody,
            trailers: Vec::new(),
        };
        let te = r.header("transfer-encoding").map(str::to_ascii_lowercase);
        let cl = r
            .header("content-length")
            .map(|v| v.parse::<usize>().unwrap());
        if method == "HEAD" || status < 200 || status == 204 || status == 304 {
            return r;
        }
        if te.is_some_and(|t| t.ends_with("chunked")) {
            r.framing = Framing::Chunked;
            loop {
                let size_line = self.line().await;
                let hex = size_line.split(';').next().unwrap().trim();
                let n = usize::from_str_radix(hex, 16).expect("chunk size");
                if n == 0 {
                    r.trailers = self.fields().await;
                    return r;
                }
                let data = self.take(n).await;
                r.body.extend_from_slice(&data);
                assert_eq!(self.take(2).await, b"\r\n", "chunk not CRLF-terminated");
            }
        } else if let Some(n) = cl {
            r.framing = Framing::Length;
            r.body = self.take(n).await;
        } else {
            r.framing = Framing::Close;
            while self.fill().await > 0 {}
            r.body = std::mem::take(&mut self.buf);
        }
        r
    }

    /// Send `req` and read its response.
    async fn roundtrip(&mut self, req: &[u8]) -> Resp {
        self.send(req).await;
        let method = std::str::from_utf8(req).unwrap_or("GET ");
        let method = method.split(' ').next().unwrap().to_string();
        self.response(&method).await
    }

    /// Whether the server closed the connection (end of stream or reset) with nothing
    /// more to say; panics if more bytes arrive.
    async fn is_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            panic!("unexpected bytes after the response: {:?}", self.lossy());
        }
        let n = self.fill().await;
        assert_eq!(n, 0, "unexpected bytes: {:?}", self.lossy());
        true
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------
// A scripted raw backend: exact upstream bytes per request.

struct RawBackend {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `script(method, path)` gives the response bytes and whether to close afterwards.
/// Requests must have no body (the backend reads heads only).
async fn raw_backend(script: fn(&str, &str) -> (Vec<u8>, bool)) -> RawBackend {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let rq = requests.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let rq = rq.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                        continue;
                    };
                    let head: Vec<u8> = buf.drain(..end + 4).collect();
                    let head = String::from_utf8_lossy(&head);
                    let mut rl = head.lines().next().unwrap_or("").split(' ');
                    let (method, path) = (rl.next().unwrap_or(""), rl.next().unwrap_or(""));
                    rq.fetch_add(1, Ordering::SeqCst);
                    let (bytes, close) = script(method, path);
                    if s.write_all(&bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    RawBackend {
        addr,
        requests,
        task,
    }
}

/// Upstream responses chosen by path, written byte for byte.
fn scripted(method: &str, path: &str) -> (Vec<u8>, bool) {
    let r: &[u8] = match path {
        "/204" => b"HTTP/1.1 204 No Content\r\nx-k: 204\r\n\r\n",
        // A 304's Content-Length describes the representation, not this message.
        "/304" => b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 10\r\n\r\n",
        "/close" => {
            return (
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: text/plain\r\n\r\nclose-delimited body\nsecond line".to_vec(),
                true,
            )
        }
        "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n",
        "/nodate" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        "/server" => b"HTTP/1.1 200 OK\r\nserver: upstream/1.0\r\ncontent-length: 2\r\n\r\nok",
        // Members that break HTTP/1.1 (each must be a 502 BadGateway).
        "/bad/bare-lf" => b"HTTP/1.1 200 OK\r\nx-a: b\ncontent-length: 2\r\n\r\nok",
        "/bad/plus-length" => b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
        "/bad/obs-fold" => b"HTTP/1.1 200 OK\r\nx-a: b\r\n c\r\ncontent-length: 2\r\n\r\nok",
        "/bad/gzip-chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "/bad/space-colon" => b"HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nok",
        "/bad/status" => b"HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok",
        _ if method == "HEAD" => b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n",
        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nhello world!",
    };
    (r.to_vec(), false)
}

async fn front_with_raw() -> (RawBackend, TestFront) {
    let be = raw_backend(scripted).await;
    let f = TestFront::start(&one_pool_yaml(&be.addr.to_string())).await;
    (be, f)
}

// ---------------------------------------------------------------------------------------
// 1. Keep-alive.

#[tokio::test]
async fn keep_alive_serves_sequential_requests() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    for i in 0..3 {
        let r = c.roundtrip(&get(&format!("/k{i}"))).await;
        assert_eq!((r.status, r.text()), (200, format!("a /k{i}")));
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.header("connection"), None, "{r:?}");
    }
    assert_eq!(f.front.open_connections(), 1);
}

#[tokio::test]
async fn connection_close_request_closes_after_response() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let r = c
        .roundtrip(b"GET /bye HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    assert_eq!((r.status, r.text()), (200, "a /bye".to_string()));
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(c.is_closed().await);
}

// 2. Pipelining.

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let mut all = Vec::new();
    for p in ["/p1", "/slow?ms=50", "/p3"] {
        all.extend_from_slice(&get(p));
    }
    c.send(&all).await;
    assert_eq!(c.response("GET").await.text(), "a /p1");
    assert_eq!(c.response("GET").await.text(), "a slow ");
    assert_eq!(c.response("GET").await.text(), "a /p3");
    assert_eq!(be.requests.load(Ordering::SeqCst), 3);
}

// 3. HTTP/1.0.

#[tokio::test]
async fn http10_without_keep_alive_is_answered_then_closed() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let r = c.roundtrip(b"GET /old HTTP/1.0\r\nhost: x\r\n\r\n").await;
    // Pinned (hyper): answered as `HTTP/1.0`, length-framed, no `connection` header,
    // then the server closes.
    assert_eq!((r.status, r.text()), (200, "a /old".to_string()));
    assert_eq!(r.version, "HTTP/1.0");
    assert_eq!(r.framing, Framing::Length);
    assert_eq!(r.header("connection"), None, "{r:?}");
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn http10_keep_alive_keeps_the_connection() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let req = b"GET /old1 HTTP/1.0\r\nhost: x\r\nconnection: keep-alive\r\n\r\n";
    let r = c.roundtrip(req).await;
    // Pinned (hyper): `HTTP/1.0` status line with `connection: keep-alive`.
    assert_eq!((r.status, r.text()), (200, "a /old1".to_string()));
    assert_eq!(r.version, "HTTP/1.0");
    assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
    let r = c
        .roundtrip(b"GET /old2 HTTP/1.0\r\nhost: x\r\nconnection: keep-alive\r\n\r\n")
        .await;
    assert_eq!((r.status, r.text()), (200, "a /old2".to_string()));
    // Without keep-alive on the last one, the server closes.
    let r = c.roundtrip(b"GET /old3 HTTP/1.0\r\nhost: x\r\n\r\n").await;
    assert_eq!(r.text(), "a /old3");
    assert!(c.is_closed().await);
}

// 4. Request bodies.

#[tokio::test]
async fn content_length_body_is_echoed() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let r = c
        .roundtrip(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\nhello there")
        .await;
    assert_eq!((r.status, r.text()), (200, "hello there".to_string()));
    // The connection stays usable after a body.
    assert_eq!(c.roundtrip(&get("/after")).await.text(), "a /after");
}

#[tokio::test]
async fn chunked_body_with_extension_and_trailer_is_echoed() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let r = c
        .roundtrip(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
              5;a=b\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: yes\r\n\r\n",
        )
        .await;
    assert_eq!((r.status, r.text()), (200, "hello 0123456789".to_string()));
    assert_eq!(c.roundtrip(&get("/after")).await.text(), "a /after");
}

#[tokio::test]
async fn body_in_many_small_writes_is_echoed() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let body = b"abcdefghijklmnopqrstuvwxyz0123456789";
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    for piece in body.chunks(3) {
        c.send(piece).await;
        // The pauses are the point: each piece arrives as its own segment.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = c.response("POST").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &body[..]));
}

// 5. Expect: 100-continue.

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    c.send(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        .await;
    let interim = c.response("POST").await;
    assert_eq!(interim.status, 100, "{interim:?}");
    assert_eq!(interim.version, "HTTP/1.1");
    c.send(b"hello").await;
    let r = c.response("POST").await;
    assert_eq!((r.status, r.text()), (200, "hello".to_string()));
}

// 6. Malformed requests: refused, connection closed, nothing reaches the backend.

/// Send `req` on a fresh connection; expect hyper's parse-error answer with `status`:
/// exactly `HTTP/1.1 <status>`, `connection: close`, `content-length: 0`, an empty body,
/// then the connection closes and the backend saw nothing.
async fn refused(req: &[u8], status: u16) {
    let (be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    c.send(req).await;
    let r = c.response("GET").await;
    assert_eq!(
        (r.version.as_str(), r.status),
        ("HTTP/1.1", status),
        "{r:?}"
    );
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert_eq!(r.header("content-length"), Some("0"), "{r:?}");
    assert!(r.body.is_empty());
    assert!(c.is_closed().await);
    assert_eq!(be.requests.load(Ordering::SeqCst), 0, "backend got {req:?}");
    assert!(eventually(Duration::from_secs(5), || f.front.open_connections() == 0).await);
}

#[tokio::test]
async fn garbage_request_line_is_400() {
    refused(b"HELLO THERE\x01\r\n\r\n", 400).await;
}

#[tokio::test]
async fn non_numeric_content_length_is_400() {
    refused(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\nabc",
        400,
    )
    .await;
}

#[tokio::test]
async fn two_different_content_lengths_are_400() {
    refused(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        400,
    )
    .await;
}

#[tokio::test]
async fn header_without_colon_is_400() {
    refused(b"GET / HTTP/1.1\r\nhost: x\r\nno-colon-here\r\n\r\n", 400).await;
}

// 13. Request smuggling class: `Host : x` must not be read as `Host`.
#[tokio::test]
async fn whitespace_before_header_colon_is_400() {
    refused(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400).await;
}

#[tokio::test]
async fn too_long_request_target_is_431() {
    // Pinned (hyper): a 20 KiB target exceeds maxRequestHeaderBytes (16 KiB default) and
    // is answered 431, not 414.
    let mut req = b"GET /".to_vec();
    req.extend(std::iter::repeat_n(b'a', 20 * 1024));
    req.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\n\r\n");
    refused(&req, 431).await;
}

const BAD_CHUNK: &[u8] =
    b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";

/// The head was valid, so the request is already on its way upstream when the body turns
/// out bad; the client gets an error status, never the body, the connection closes, and
/// the front serves the next connection.
#[tokio::test]
async fn bad_chunk_size_fails_the_request_and_closes() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    c.send(BAD_CHUNK).await;
    let r = c.response("POST").await;
    assert!(r.status >= 400, "{r:?}");
    assert!(!r.text().contains("hello"), "{r:?}");
    assert!(c.is_closed().await);
    assert_eq!(
        Conn::open(f.addr)
            .await
            .roundtrip(&get("/after"))
            .await
            .text(),
        "a /after"
    );
}

/// The client's framing error is the client's fault: 400 BadRequest, not the member's
/// 502 ConnectFailed (hyper's server surfaced it as an upstream failure).
#[tokio::test]
async fn bad_chunk_size_is_400() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    c.send(BAD_CHUNK).await;
    let r = c.response("POST").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("x-roost-reason"), Some("BadRequest"), "{r:?}");
    // Nothing is held against the member.
    let members = f.front.pool("p").unwrap().members();
    assert!(members.iter().all(|m| m.failed() == 0));
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn lf_only_line_endings_are_accepted() {
    // Pinned (hyper/httparse): bare LF line endings parse like CRLF.
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let r = c.roundtrip(b"GET /lf HTTP/1.1\nhost: x\n\n").await;
    assert_eq!((r.status, r.text()), (200, "a /lf".to_string()));
    assert_eq!(c.roundtrip(&get("/after")).await.text(), "a /after");
}

/// The front's own refusal (after hyper parsed the head): `400` with
/// `x-roost-reason: BadRequest` and a text body; pinned: the connection stays open.
#[tokio::test]
async fn missing_host_is_the_fronts_own_400_and_keeps_alive() {
    let (be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let r = c.roundtrip(b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("x-roost-reason"), Some("BadRequest"), "{r:?}");
    // Nothing is held against the member.
    let members = f.front.pool("p").unwrap().members();
    assert!(members.iter().all(|m| m.failed() == 0));
    assert_eq!(r.text(), "400 BadRequest\n");
    assert_eq!(r.header("connection"), None, "{r:?}");
    assert_eq!(be.requests.load(Ordering::SeqCst), 0);
    assert_eq!(c.roundtrip(&get("/after")).await.text(), "a /after");
}

/// RFC 9112 §6.3: a request whose framing cannot be trusted is answered 400 and the
/// connection closed, since what follows the head cannot be delimited reliably.
#[tokio::test]
async fn doubled_transfer_encoding_is_400_and_closes() {
    let (be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    c.send(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\
          transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let r = c.response("POST").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(c.is_closed().await);
    assert_eq!(be.requests.load(Ordering::SeqCst), 0);
}

// 12. Transfer-Encoding together with Content-Length.

#[tokio::test]
async fn chunked_wins_over_content_length_and_connection_closes() {
    // Pinned (hyper): chunked framing wins (the backend gets all 5 bytes, not 3), the
    // response says `connection: close` and the server closes after it, so whatever
    // the other framing would have meant can never be read as a next request.
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    c.send(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let r = c.response("POST").await;
    assert_eq!((r.status, r.text()), (200, "hello".to_string()), "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(c.is_closed().await);
}

// 7. Response framing.

#[tokio::test]
async fn head_gets_length_but_no_body_and_keeps_alive() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let r = c
        .roundtrip(b"HEAD /thing HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    // The backend would send "a /thing": its length, and no body bytes (the next
    // response would be misparsed otherwise).
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("8"), "{r:?}");
    let r = c.roundtrip(&get("/next")).await;
    assert_eq!(r.text(), "a /next");
}

#[tokio::test]
async fn head_keeps_scripted_backend_length() {
    let (_be, f) = front_with_raw().await;
    let mut c = Conn::open(f.addr).await;
    let r = c
        .roundtrip(b"HEAD /thing HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("12"), "{r:?}");
    assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
    let r = c.roundtrip(&get("/next")).await;
    assert_eq!(r.text(), "hello world!");
}

#[tokio::test]
async fn no_content_and_not_modified_have_no_body() {
    let (be, f) = front_with_raw().await;
    let mut c = Conn::open(f.addr).await;
    let r = c.roundtrip(&get("/204")).await;
    assert_eq!((r.status, r.header("x-k")), (204, Some("204")), "{r:?}");
    assert_eq!(r.header("content-length"), None, "{r:?}");
    assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
    let r = c.roundtrip(&get("/304")).await;
    assert_eq!((r.status, r.header("etag")), (304, Some("\"v1\"")), "{r:?}");
    // Pinned (hyper): the backend's `content-length: 10` on the 304 is dropped (RFC 9110
    // §8.6 would allow keeping it; either way no body bytes follow).
    assert_eq!(r.header("content-length"), None, "{r:?}");
    assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
    // Any stray body byte would be read as the start of this response.
    let r = c.roundtrip(&get("/next")).await;
    assert_eq!((r.status, r.text()), (200, "hello world!".to_string()));
    assert_eq!(be.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn close_delimited_upstream_is_rechunked_for_the_client() {
    let (_be, f) = front_with_raw().await;
    let mut c = Conn::open(f.addr).await;
    let r = c.roundtrip(&get("/close")).await;
    // Pinned: the upstream's close-delimited body reaches an HTTP/1.1 client complete as
    // `transfer-encoding: chunked`, so the client connection survives.
    assert_eq!(r.status, 200);
    assert_eq!(r.framing, Framing::Chunked, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("connection"), None, "{r:?}");
    assert_eq!(r.text(), "close-delimited body\nsecond line");
    let r = c.roundtrip(&get("/next")).await;
    assert_eq!(r.text(), "hello world!");
}

#[tokio::test]
async fn chunked_upstream_reaches_client_with_same_bytes() {
    let (_be, f) = front_with_raw().await;
    let mut c = Conn::open(f.addr).await;
    let r = c.roundtrip(&get("/chunked")).await;
    assert_eq!(r.framing, Framing::Chunked, "{r:?}");
    assert_eq!(r.text(), "hello, world");
    // Pinned: upstream trailers are not forwarded (nor chunk extensions).
    assert!(r.trailers.is_empty(), "{r:?}");
    let r = c.roundtrip(&get("/next")).await;
    assert_eq!(r.text(), "hello world!");
}

// 8. Date / Server / Via.

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7 IMF-fixdate).
fn is_imf_fixdate(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 29
        && ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&&s[..3])
        && &s[3..5] == ", "
        && digits(5..7)
        && b[7] == b' '
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(&&s[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && &s[25..] == " GMT"
}

#[test]
fn imf_fixdate_check_rejects_other_formats() {
    assert!(is_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"));
    assert!(!is_imf_fixdate("Sunday, 06-Nov-94 08:49:37 GMT"));
    assert!(!is_imf_fixdate("Sun Nov  6 08:49:37 1994"));
    assert!(!is_imf_fixdate("Sun, 06 Nov 1994 08:49:37 UTC"));
}

#[tokio::test]
async fn responses_carry_one_date_and_no_added_server_or_via() {
    let (_be, f) = front_with_raw().await;
    let mut c = Conn::open(f.addr).await;
    // The upstream sent no `date`: the front adds one.
    let r = c.roundtrip(&get("/nodate")).await;
    assert_eq!(r.header_count("date"), 1, "{r:?}");
    assert!(is_imf_fixdate(r.header("date").unwrap()), "{r:?}");
    // Pinned: the front adds neither `server` nor `via` to responses; an upstream
    // `server` passes through unchanged.
    assert_eq!(r.header("server"), None, "{r:?}");
    assert_eq!(r.header("via"), None, "{r:?}");
    let r = c.roundtrip(&get("/server")).await;
    assert_eq!(r.header("server"), Some("upstream/1.0"), "{r:?}");
    assert_eq!(r.header_count("date"), 1, "{r:?}");

    // An upstream that sends its own `date` (hyper does): still exactly one.
    let (_be2, f2) = front_with_backend().await;
    let mut c = Conn::open(f2.addr).await;
    let r = c.roundtrip(&get("/x")).await;
    assert_eq!(r.header_count("date"), 1, "{r:?}");
    assert!(is_imf_fixdate(r.header("date").unwrap()), "{r:?}");
    // The front's own answers carry it too.
    let r = c
        .roundtrip(b"GET /.roost/nothing HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(is_imf_fixdate(r.header("date").unwrap()), "{r:?}");
}

// 9. Large responses.

#[tokio::test]
async fn one_mebibyte_response_then_another_request() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let r = c.roundtrip(&get("/big?n=1048576")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1 << 20);
    assert!(r.body.iter().all(|&b| b == b'x'));
    assert_eq!(c.roundtrip(&get("/after")).await.text(), "a /after");
}

// 10. A client that vanishes mid-response.

#[tokio::test]
async fn client_gone_mid_body_frees_the_connection() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    c.send(&get("/big?n=50000000")).await;
    while c.buf.len() < 64 * 1024 {
        assert!(c.fill().await > 0);
    }
    assert!(String::from_utf8_lossy(&c.buf).starts_with("HTTP/1.1 200"));
    drop(c);
    assert!(
        eventually(Duration::from_secs(5), || f.front.open_connections() == 0).await,
        "connection still open: {}",
        f.front.open_connections()
    );
    let mut c = Conn::open(f.addr).await;
    assert_eq!(c.roundtrip(&get("/again")).await.text(), "a /again");
}

// 11. Half-close.

#[tokio::test]
async fn half_close_after_complete_request_closes_without_answer() {
    // Pinned (hyper, half_close off): when the client shuts down its write side right
    // after a complete request, the server sees EOF and closes the connection without
    // writing a response.
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    c.send(&get("/half")).await;
    c.s.shutdown().await.unwrap();
    assert!(c.is_closed().await);
    assert!(eventually(Duration::from_secs(5), || f.front.open_connections() == 0).await);
}

// 14. Upgrade.

#[tokio::test]
async fn upgrade_with_tunnel_bytes_in_the_same_write() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    // The first tunnel bytes ride in the same segment as the request head: they belong to
    // the tunnel, not to a next request.
    c.send(
        b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nearly-bytes",
    )
    .await;
    let r = c.response("GET").await;
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(r.header("upgrade"), Some("websocket"), "{r:?}");
    while c.buf.len() < 11 {
        assert!(c.fill().await > 0, "tunnel closed: {:?}", c.lossy());
    }
    assert_eq!(c.buf.drain(..11).collect::<Vec<_>>(), b"early-bytes");
    c.send(b"later").await;
    while c.buf.len() < 5 {
        assert!(c.fill().await > 0, "tunnel closed: {:?}", c.lossy());
    }
    assert_eq!(c.buf, b"later");
}

// =======================================================================================
// Adversarial robustness (reliability.md §2 and §4): what a client can do to the server
// on purpose. Byte splits anywhere, garbage, request-smuggling classics, pipelining
// floods, huge values, early responses and resets. Each property is checked on exact
// bytes, and where the backend's view matters a strict recording backend says what it
// received as requests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Connections a test keeps open at once: enough to finish quickly on two cores, few
/// enough that no pool queue is involved.
const PARALLEL: usize = 24;

/// Read until the front closes (or resets) the connection; panics if it goes silent.
/// `sent` is for the failure message.
async fn read_to_close(s: &mut TcpStream, sent: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut tmp = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(READ_LIMIT, s.read(&mut tmp)).await {
            Err(_) => panic!(
                "front neither answered nor closed; sent {:?}, got {:?}",
                String::from_utf8_lossy(sent),
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&tmp[..n]),
        }
    }
}

/// The status of the response starting `bytes`, if any bytes came; panics on anything
/// that is not an HTTP/1.1 status line.
fn status_of(bytes: &[u8]) -> Option<u16> {
    if bytes.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next().unwrap_or("");
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok());
    Some(status.unwrap_or_else(|| panic!("not a status line: {text:?}")))
}

async fn no_connections_left(f: &TestFront) {
    assert!(
        eventually(Duration::from_secs(5), || f.front.open_connections() == 0).await,
        "connections still open: {}",
        f.front.open_connections()
    );
}

async fn still_serves(f: &TestFront, path: &str) {
    let mut c = Conn::open(f.addr).await;
    let r = c.roundtrip(&get(path)).await;
    assert_eq!((r.status, r.text()), (200, format!("a {path}")), "{r:?}");
}

// ---------------------------------------------------------------------------------------
// A strict recording backend: what reached it, request by request.

/// One request as the backend framed it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(k, _)| k == name).count()
    }
}

/// The marker a backend records when bytes on its connection were not a request: the
/// front desynchronised the upstream connection.
const DESYNC: &str = "!desync";

struct RecBackend {
    addr: std::net::SocketAddr,
    seen: Arc<parking_lot::Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecBackend {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

/// Read until `buf` holds `n` bytes; false at end of stream.
async fn want(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    let mut tmp = [0u8; 8192];
    while buf.len() < n {
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
        }
    }
    true
}

/// Read one CRLF line (without it) from the front of `buf`. `Err(true)`: a bare LF (a
/// strict backend refuses it); `Err(false)`: end of stream (the front gave up on the
/// request and closed: not a desync).
async fn want_line(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, bool> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..i + 2).take(i).collect();
            return if line.contains(&b'\n') {
                Err(true)
            } else {
                Ok(line)
            };
        }
        let have = buf.len();
        if !want(s, buf, have + 1).await {
            return Err(false);
        }
    }
}

/// A strict HTTP/1.1 backend: frames each request by its own reading (Content-Length or
/// chunked, RFC 9112), records it, and answers `200` with `METHOD PATH BODYLEN`. Anything
/// it cannot frame is recorded as [`DESYNC`] and the connection dropped.
async fn recording_backend() -> RecBackend {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let desync = |log: &parking_lot::Mutex<Vec<Seen>>, what: &[u8]| {
                    log.lock().push(Seen {
                        method: DESYNC.into(),
                        path: String::from_utf8_lossy(what).into_owned(),
                        headers: vec![],
                        body: vec![],
                    });
                };
                loop {
                    // The head.
                    let (len, method, path, headers) = loop {
                        let mut hs = [httparse::EMPTY_HEADER; 128];
                        let mut req = httparse::Request::new(&mut hs);
                        match req.parse(&buf) {
                            Ok(httparse::Status::Complete(n)) => {
                                let headers: Vec<(String, String)> = req
                                    .headers
                                    .iter()
                                    .map(|h| {
                                        (
                                            h.name.to_ascii_lowercase(),
                                            String::from_utf8_lossy(h.value).into_owned(),
                                        )
                                    })
                                    .collect();
                                break (
                                    n,
                                    req.method.unwrap_or("").to_string(),
                                    req.path.unwrap_or("").to_string(),
                                    headers,
                                );
                            }
                            Ok(httparse::Status::Partial) => {
                                let have = buf.len();
                                if !want(&mut s, &mut buf, have + 1).await {
                                    if !buf.is_empty() {
                                        desync(&log, &buf);
                                    }
                                    return;
                                }
                            }
                            Err(_) => {
                                desync(&log, &buf);
                                return;
                            }
                        }
                    };
                    buf.drain(..len);
                    let te: Vec<&String> = headers
                        .iter()
                        .filter(|(k, _)| k == "transfer-encoding")
                        .map(|(_, v)| v)
                        .collect();
                    let cl: Vec<&String> = headers
                        .iter()
                        .filter(|(k, _)| k == "content-length")
                        .map(|(_, v)| v)
                        .collect();
                    let mut body = Vec::new();
                    if !te.is_empty() {
                        // A proxy must send exactly `chunked`, once, and no length with it.
                        if te.len() != 1 || te[0] != "chunked" || !cl.is_empty() {
                            desync(&log, format!("framing te={te:?} cl={cl:?}").as_bytes());
                            return;
                        }
                        loop {
                            let line = match want_line(&mut s, &mut buf).await {
                                Ok(l) => l,
                                Err(bad) => {
                                    if bad {
                                        desync(&log, b"bare LF in chunk size line");
                                    }
                                    return;
                                }
                            };
                            let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
                            let Some(n) = std::str::from_utf8(hex)
                                .ok()
                                .filter(|h| {
                                    !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit())
                                })
                                .and_then(|h| usize::from_str_radix(h, 16).ok())
                            else {
                                desync(&log, &line);
                                return;
                            };
                            if n == 0 {
                                // Trailers until the empty line.
                                loop {
                                    match want_line(&mut s, &mut buf).await {
                                        Ok(l) if l.is_empty() => break,
                                        Ok(_) => {}
                                        Err(bad) => {
                                            if bad {
                                                desync(&log, b"bare LF in trailers");
                                            }
                                            return;
                                        }
                                    }
                                }
                                break;
                            }
                            if !want(&mut s, &mut buf, n + 2).await {
                                return;
                            }
                            if buf[n..n + 2] != *b"\r\n" {
                                desync(&log, b"chunk data not CRLF-terminated");
                                return;
                            }
                            body.extend(buf.drain(..n));
                            buf.drain(..2);
                        }
                    } else if !cl.is_empty() {
                        let Some(n) = cl
                            .iter()
                            .map(|v| v.parse::<usize>().ok())
                            .reduce(|a, b| if a == b { a } else { None })
                            .flatten()
                        else {
                            desync(&log, format!("content-length {cl:?}").as_bytes());
                            return;
                        };
                        if !want(&mut s, &mut buf, n).await {
                            // The front gave up mid-body and closed: not a desync.
                            return;
                        }
                        body.extend(buf.drain(..n));
                    }
                    let answer = format!("{method} {path} {}", body.len());
                    log.lock().push(Seen {
                        method,
                        path,
                        headers,
                        body,
                    });
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    RecBackend { addr, seen, task }
}

async fn front_with_recorder() -> (RecBackend, TestFront) {
    let be = recording_backend().await;
    let f = TestFront::start(&one_pool_yaml(&be.addr.to_string())).await;
    (be, f)
}

// ---------------------------------------------------------------------------------------
// 1. A valid request split at any byte position is still one valid request.

const SPLIT_CL: &[u8] = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\nhello there";
const SPLIT_CHUNKED: &[u8] = b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
    5;a=b\r\nhello\r\n1;q=\"x;y\";z\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: yes\r\nx-more: 2\r\n\r\n";

/// Send `req` as pieces cut at `cuts`, each its own segment; the echo must be `body`,
/// and the connection must be at a request boundary afterwards.
async fn split_delivery(
    addr: std::net::SocketAddr,
    req: &'static [u8],
    cuts: Vec<usize>,
    body: &'static str,
) {
    let mut c = Conn::open(addr).await;
    c.s.set_nodelay(true).unwrap();
    let mut from = 0;
    for cut in cuts.iter().copied().chain([req.len()]) {
        c.send(&req[from..cut]).await;
        from = cut;
        // The pause is the point: the front reads each piece on its own (there is no
        // event to poll for "the front has read these bytes").
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let r = c.response("POST").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, body),
        "cuts {cuts:?}: {r:?}"
    );
    let r = c.roundtrip(&get("/after")).await;
    assert_eq!(r.text(), "a /after", "cuts {cuts:?}: {r:?}");
}

#[tokio::test]
async fn request_split_at_every_byte_and_at_random_points_is_served() {
    let (_be, f) = front_with_backend().await;
    let cases: [(&'static [u8], &'static str); 2] = [
        (SPLIT_CL, "hello there"),
        (SPLIT_CHUNKED, "hello 0123456789"),
    ];
    let mut patterns: Vec<(usize, Vec<usize>)> = Vec::new();
    // Two pieces, cut at every position.
    for (i, (req, _)) in cases.iter().enumerate() {
        for cut in 1..req.len() {
            patterns.push((i, vec![cut]));
        }
    }
    // 50 seeded patterns of 2 to 9 pieces.
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    for k in 0..50 {
        let i = k % 2;
        let len = cases[i].0.len();
        let mut cuts: Vec<usize> = (0..rng.gen_range(1..=8))
            .map(|_| rng.gen_range(1..len))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        patterns.push((i, cuts));
    }
    let n = patterns.len();
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let mut set = JoinSet::new();
    for (i, cuts) in patterns {
        let (req, body) = cases[i];
        let gate = gate.clone();
        let addr = f.addr;
        set.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            split_delivery(addr, req, cuts, body).await;
        });
    }
    let mut done = 0;
    while let Some(r) = set.join_next().await {
        r.unwrap();
        done += 1;
    }
    assert_eq!(done, n);
    no_connections_left(&f).await;
}

#[tokio::test]
async fn chunked_request_one_byte_per_segment_is_served() {
    let (_be, f) = front_with_backend().await;
    let cuts = (1..SPLIT_CHUNKED.len()).collect();
    split_delivery(f.addr, SPLIT_CHUNKED, cuts, "hello 0123456789").await;
}

// ---------------------------------------------------------------------------------------
// 2. Garbage: a 4xx or a close, never a 5xx, never a hang.

/// Complete heads that are almost HTTP/1.1: each is answered (any status below 500: an
/// absolute-form or `*` target may legitimately route or 404) or closed.
const NEAR_MISSES: &[&[u8]] = &[
    b"GET / HTTP/2.0\r\nhost: x\r\n\r\n",
    b"GET / HTTP/1.1x\r\nhost: x\r\n\r\n",
    b"GET / HTTP/1.2\r\nhost: x\r\n\r\n",
    b"GET / HTTP/0.9\r\nhost: x\r\n\r\n",
    b"GET / http/1.1\r\nhost: x\r\n\r\n",
    b"GET / HTTP/11\r\nhost: x\r\n\r\n",
    b"GET /HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET/ HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET  / HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET / HTTP/1.1 \r\nhost: x\r\n\r\n",
    b"GET /a b HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET /a\x00b HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET /\xc3\xa9 HTTP/1.1\r\nhost: x\r\n\r\n",
    b"G(T / HTTP/1.1\r\nhost: x\r\n\r\n",
    b" GET / HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nx-nul: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nx-ctl: a\x01b\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nx-esc: \x1b[31m\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nx-del: a\x7fb\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nx-cr: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nx-fold: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nx-fold: a\r\n\tb\r\n\r\n",
    b"GET / HTTP/1.1\r\n host: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\n: empty-name\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nx y: z\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nx\x00y: z\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nx(y): z\r\n\r\n",
    b"GET / HTTP/1.1\rhost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nhost: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 1e3\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0x10\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET http://elsewhere.example/ HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET http://x:99999/ HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET http:// HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET //x HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET ../../etc/passwd HTTP/1.1\r\nhost: x\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET * HTTP/1.1\r\nhost: x\r\n\r\n",
    b"CONNECT x:443 HTTP/1.1\r\nhost: x:443\r\n\r\n",
    b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nhost: 127.0.0.1:1\r\n\r\n",
    b"TRACE / HTTP/1.1\r\nhost: x\r\n\r\n",
    b"PRI * HTTP/1.1\r\nhost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\nupgrade: h2c\r\nconnection: upgrade, http2-settings\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: \r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: a b\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x@evil\r\n\r\n",
    b"GET / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
];

/// Incomplete or non-HTTP inputs, sent and then half-closed: a 4xx or a close.
const TRUNCATED: &[&[u8]] = &[
    b"",
    b"\r\n",
    b"\r\n\r\n\r\n\r\n",
    b"GET",
    b"GET / HTTP/1.1",
    b"GET / HTTP/1.1\r\nhost: x\r\n",
    b"GET / HTTP/1.1\r\nhost: x\r\n\r",
    // (A partial preface followed by a close: see
    // `partial_h2_preface_then_close_is_closed_promptly`.)
    b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    b"\x00\x00\x00\x00\x00\x00\x00\x00",
    b"\xff\xfe\xfd",
];

/// Pieces random heads are made of: most random strings die at the first byte, these
/// reach the header and framing rules.
const VOCAB: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b" ",
    b"  ",
    b"/",
    b"/a?b=c",
    b"*",
    b"http://x/",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2",
    b"\r\n",
    b"\n",
    b"\r",
    b"host: x",
    b"host:",
    b":",
    b"content-length: ",
    b"5",
    b"0",
    b"-",
    b"+",
    b"transfer-encoding: ",
    b"chunked",
    b",",
    b"\t",
    b"\x00",
    b"\x7f",
    b"\xff",
    b"expect: 100-continue",
    b"connection: close",
    b"connection: upgrade",
    b"upgrade: websocket",
    b"x-y: z",
    b";",
    b"=",
    b"\"",
    b"hello",
];

fn random_garbage(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.gen_range(1..300);
    match rng.gen_range(0..3) {
        0 => (0..len).map(|_| rng.gen()).collect(),
        1 => (0..len)
            .map(|_| match rng.gen_range(0..10) {
                0 => b'\r',
                1 => b'\n',
                _ => rng.gen_range(0x20u8..0x7f),
            })
            .collect(),
        _ => {
            let mut out = Vec::new();
            while out.len() < len {
                out.extend_from_slice(VOCAB[rng.gen_range(0..VOCAB.len())]);
            }
            out
        }
    }
}

/// One hostile connection: send `bytes` (half-close after if `half_close`), then read
/// what the front says. Returns the first status, if any response came.
async fn hostile(addr: std::net::SocketAddr, bytes: Vec<u8>, half_close: bool) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The front may refuse and close before all the bytes are in: not an error.
    let _ = s.write_all(&bytes).await;
    if half_close {
        let _ = s.shutdown().await;
        return status_of(&read_to_close(&mut s, &bytes).await);
    }
    // A complete head: read the first response's status line (the connection may stay
    // open after a valid request).
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(READ_LIMIT, s.read(&mut tmp)).await {
            Err(_) => panic!(
                "no answer and no close for {:?}",
                String::from_utf8_lossy(&bytes)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&tmp[..n]),
        }
    }
    status_of(&got)
}

#[tokio::test]
async fn garbage_gets_a_4xx_or_a_close_and_the_front_survives() {
    let (_be, f) = front_with_backend().await;
    let mut inputs: Vec<(Vec<u8>, bool, bool)> = Vec::new(); // bytes, half-close, must be 4xx/close
    for m in NEAR_MISSES {
        inputs.push((m.to_vec(), false, false));
    }
    for t in TRUNCATED {
        inputs.push((t.to_vec(), true, true));
    }
    let mut rng = StdRng::seed_from_u64(0x06a7_ba6e);
    for _ in 0..200 {
        let g = random_garbage(&mut rng);
        inputs.push((g, true, false));
    }
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let mut set = JoinSet::new();
    for (bytes, half_close, strict) in inputs {
        let gate = gate.clone();
        let addr = f.addr;
        set.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let status = hostile(addr, bytes.clone(), half_close).await;
            (bytes, strict, status)
        });
    }
    let mut outcomes = std::collections::BTreeMap::<Option<u16>, usize>::new();
    while let Some(r) = set.join_next().await {
        let (bytes, strict, status) = r.unwrap();
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(s) = status {
            assert!(s < 500, "{s} for {shown:?}");
            if strict {
                assert!((400..500).contains(&s), "{s} for {shown:?}");
            }
        }
        if status != Some(400) && !strict {
            eprintln!("{status:?} for {shown:?}");
        }
        *outcomes.entry(status).or_default() += 1;
    }
    eprintln!("garbage outcomes (status -> connections): {outcomes:?}");
    no_connections_left(&f).await;
    still_serves(&f, "/after-garbage").await;
}

/// Each structured near-miss, one at a time, with the status it gets, so a change in the
/// refusal rules shows up as a diff here (pinned).
#[tokio::test]
async fn near_misses_are_refused_with_400() {
    let (be, f) = front_with_backend().await;
    // Those the server itself refuses: 400 and close, nothing reaches the backend.
    let refused: &[&[u8]] = &[
        b"GET / HTTP/2.0\r\nhost: x\r\n\r\n",
        b"GET / HTTP/1.1x\r\nhost: x\r\n\r\n",
        b"GET / HTTP/1.2\r\nhost: x\r\n\r\n",
        b"GET /HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET /a\x00b HTTP/1.1\r\nhost: x\r\n\r\n",
        b"G(T / HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\nx-nul: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\nx-ctl: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\nx-cr: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\nx-fold: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\n host: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\n: empty-name\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\nx y: z\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n",
        b"GET / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for req in refused {
        let mut c = Conn::open(f.addr).await;
        c.send(req).await;
        let r = c.response("GET").await;
        assert_eq!(r.status, 400, "{:?}: {r:?}", String::from_utf8_lossy(req));
        assert!(c.is_closed().await);
    }
    assert_eq!(be.requests.load(Ordering::SeqCst), 0);
    no_connections_left(&f).await;
}

/// The plain-TCP protocol sniffer (`front::connection::sniff`) peeks; a client that sends
/// a prefix of the HTTP/2 preface and then closes its side must be let go at once, as the
/// HTTP/1.1 loop does for a partial head.
#[tokio::test]
async fn partial_h2_preface_then_close_is_closed_promptly() {
    let (_be, f) = front_with_backend().await;
    for prefix in [&b"PRI * HTTP/2.0\r\n\r\nSM\r\n"[..], b"PRI", b"P"] {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(prefix).await.unwrap();
        s.shutdown().await.unwrap();
        let got = read_to_close(&mut s, prefix).await;
        assert!(got.is_empty() || status_of(&got).is_some_and(|s| (400..500).contains(&s)));
    }
    no_connections_left(&f).await;
}

// ---------------------------------------------------------------------------------------
// 3. Request smuggling classics: the backend only ever sees requests the client sent as
// separate, well-framed requests.

/// The request a smuggler hides in a body; 36 bytes, so its chunk-size line is `24\r\n`.
const HIDDEN: &str = "GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n";

/// Read every response on `c` until the front closes; panics on silence.
async fn responses_until_close(c: &mut Conn, method: &str) -> Vec<Resp> {
    let mut out = Vec::new();
    loop {
        if c.buf.is_empty() && c.fill().await == 0 {
            return out;
        }
        out.push(c.response(method).await);
    }
}

/// After an attack, what the backend saw must be exactly `want` (method, path, body),
/// with no desynchronised upstream connection and nothing smuggled.
fn assert_backend_saw(be: &RecBackend, want: &[(&str, &str, &[u8])], case: &str) {
    let seen = be.seen();
    let got: Vec<(&str, &str, &[u8])> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str(), s.body.as_slice()))
        .collect();
    assert_eq!(got, want, "{case}: backend saw {seen:#?}");
    for s in &seen {
        assert!(s.header_count("content-length") <= 1, "{case}: {s:?}");
        assert!(
            !(s.header_count("content-length") == 1 && s.header_count("transfer-encoding") > 0),
            "{case}: {s:?}"
        );
    }
}

/// `Transfer-Encoding` spellings: those the front reads as chunked, and those it refuses.
const TE_CHUNKED: &[&str] = &[
    "chunked",
    "chunked ",
    "Chunked",
    "CHUNKED",
    "\tchunked",
    "chunked\t",
];
const TE_REFUSED: &[&str] = &[
    "xchunked",
    "chunked, identity",
    "chunked,",
    "identity",
    "chunk",
    "\"chunked\"",
    "chunked;q=1",
    "",
];

/// TE.CL: `content-length: 4` covers only the chunk-size line `24\r\n`, so a
/// length-reader would take `GET /smuggled` as the next request; a chunked reader sees it
/// as body data. Both headers present: chunked wins and the connection closes.
#[tokio::test]
async fn te_cl_hidden_request_never_reaches_the_backend() {
    for te in TE_CHUNKED.iter().chain(TE_REFUSED) {
        let (be, f) = front_with_recorder().await;
        let body = format!("{:x}\r\n{HIDDEN}\r\n0\r\n\r\n", HIDDEN.len());
        let req = format!(
            "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: {te}\r\n\r\n{body}"
        );
        let mut c = Conn::open(f.addr).await;
        c.send(req.as_bytes()).await;
        let rs = responses_until_close(&mut c, "POST").await;
        let case = format!("TE.CL te={te:?}");
        assert_eq!(rs.len(), 1, "{case}: {rs:?}");
        if TE_CHUNKED.contains(te) {
            assert_eq!(rs[0].status, 200, "{case}: {rs:?}");
            assert_eq!(rs[0].header("connection"), Some("close"), "{case}: {rs:?}");
            assert_backend_saw(&be, &[("POST", "/echo", HIDDEN.as_bytes())], &case);
        } else {
            assert_eq!(rs[0].status, 400, "{case}: {rs:?}");
            assert_backend_saw(&be, &[], &case);
        }
    }
}

/// CL.TE: the length covers `0\r\n\r\n` and the hidden request, so a length-reader
/// forwards it all as body (and a chunked backend then finds `GET /smuggled`); a chunked
/// reader ends the body at `0\r\n\r\n` and must not serve what follows, since the framing
/// was ambiguous (the connection closes).
#[tokio::test]
async fn cl_te_hidden_request_never_reaches_the_backend() {
    for te in TE_CHUNKED.iter().chain(TE_REFUSED) {
        let (be, f) = front_with_recorder().await;
        let body = format!("0\r\n\r\n{HIDDEN}");
        let req = format!(
            "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\ntransfer-encoding: {te}\r\n\r\n{body}",
            body.len()
        );
        let mut c = Conn::open(f.addr).await;
        c.send(req.as_bytes()).await;
        let rs = responses_until_close(&mut c, "POST").await;
        let case = format!("CL.TE te={te:?}");
        assert_eq!(rs.len(), 1, "{case}: {rs:?}");
        if TE_CHUNKED.contains(te) {
            assert_eq!(rs[0].status, 200, "{case}: {rs:?}");
            assert_backend_saw(&be, &[("POST", "/echo", b"")], &case);
        } else {
            assert_eq!(rs[0].status, 400, "{case}: {rs:?}");
            assert_backend_saw(&be, &[], &case);
        }
    }
}

/// Transfer-Encoding spellings alone (no length): a chunked body with the hidden request
/// as its data, then a pipelined sentinel. Chunked spellings: two requests upstream, the
/// hidden one only as body bytes. Refused spellings: 400, close, nothing upstream.
#[tokio::test]
async fn transfer_encoding_spellings_frame_or_refuse() {
    let (be, f) = front_with_recorder().await;
    for te in TE_CHUNKED.iter().chain(TE_REFUSED) {
        be.seen.lock().clear();
        let req = format!(
            "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: {te}\r\n\r\n{:x}\r\n{HIDDEN}\r\n0\r\n\r\n\
             GET /sentinel HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            HIDDEN.len()
        );
        let mut c = Conn::open(f.addr).await;
        c.send(req.as_bytes()).await;
        let rs = responses_until_close(&mut c, "POST").await;
        let case = format!("TE alone te={te:?}");
        if TE_CHUNKED.contains(te) {
            let st: Vec<u16> = rs.iter().map(|r| r.status).collect();
            assert_eq!(st, [200, 200], "{case}: {rs:?}");
            assert_backend_saw(
                &be,
                &[
                    ("POST", "/echo", HIDDEN.as_bytes()),
                    ("GET", "/sentinel", b""),
                ],
                &case,
            );
        } else {
            assert_eq!(rs.len(), 1, "{case}: {rs:?}");
            assert_eq!(rs[0].status, 400, "{case}: {rs:?}");
            assert_backend_saw(&be, &[], &case);
        }
    }
    // Header-level obfuscations of the name or the line: refused outright.
    for req in [
        "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntransfer-encoding: identity\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: identity\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: \x0bchunked\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.0\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        be.seen.lock().clear();
        let mut c = Conn::open(f.addr).await;
        c.send(req.as_bytes()).await;
        let rs = responses_until_close(&mut c, "POST").await;
        assert_eq!(rs.len(), 1, "{req:?}: {rs:?}");
        assert_eq!(rs[0].status, 400, "{req:?}: {rs:?}");
        assert_backend_saw(&be, &[], req);
    }
    no_connections_left(&f).await;
}

/// Content-Length spellings, each followed by a pipelined sentinel: accepted ones frame
/// exactly 5 body bytes (the sentinel is the next request), refused ones get 400 and a
/// close with nothing upstream.
#[tokio::test]
async fn content_length_spellings_frame_exactly_or_refuse() {
    let (be, f) = front_with_recorder().await;
    // (header lines, accepted)
    let cases: &[(&str, bool)] = &[
        ("content-length: 5", true),
        ("content-length: 005", true),
        ("content-length: 00000000000000000005", false), // over 19 digits: refused
        ("content-length:5", true),
        ("content-length:  5  ", true),
        ("content-length: +5", false),
        ("content-length: -5", false),
        ("content-length: 5, 5", false),
        ("content-length: 5, 6", false),
        ("content-length: 5,", false),
        ("content-length: 5 5", false),
        ("content-length: 5.0", false),
        ("content-length: 0x5", false),
        ("content-length: 5e0", false),
        ("content-length: ", false),
        ("content-length: \u{663}", false), // an Arabic-Indic digit, UTF-8 encoded
        ("content-length: 5\r\ncontent-length: 6", false),
        ("content-length: 5\r\ncontent-length: +5", false),
        ("content-length : 5", false),
        ("content-length:\r\n 5", false),
    ];
    for (lines, accepted) in cases {
        be.seen.lock().clear();
        let req = format!(
            "POST /echo HTTP/1.1\r\nhost: x\r\n{lines}\r\n\r\nhello\
             GET /sentinel HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        );
        let mut c = Conn::open(f.addr).await;
        c.send(req.as_bytes()).await;
        let rs = responses_until_close(&mut c, "POST").await;
        let st: Vec<u16> = rs.iter().map(|r| r.status).collect();
        if *accepted {
            assert_eq!(st, [200, 200], "{lines:?}: {rs:?}");
            assert_eq!(rs[0].text(), "POST /echo 5", "{lines:?}");
            assert_backend_saw(
                &be,
                &[("POST", "/echo", b"hello"), ("GET", "/sentinel", b"")],
                lines,
            );
        } else {
            assert_eq!(st, [400], "{lines:?}: {rs:?}");
            assert_backend_saw(&be, &[], lines);
        }
    }
    no_connections_left(&f).await;
}

/// Header names that some servers fold into framing headers (`_` for `-`, CGI-style)
/// never reach the backend, so they cannot become a second length there.
#[tokio::test]
async fn underscore_framing_headers_are_not_forwarded() {
    let (be, f) = front_with_recorder().await;
    let mut c = Conn::open(f.addr).await;
    let r = c
        .roundtrip(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent_length: 41\r\n\
              transfer_encoding: chunked\r\n\r\nhello",
        )
        .await;
    assert_eq!((r.status, r.text()), (200, "POST /echo 5".to_string()));
    let seen = be.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].headers.iter().all(|(k, _)| !k.contains('_')),
        "{seen:?}"
    );
    assert_eq!(c.roundtrip(&get("/after")).await.text(), "GET /after 0");
}

/// A client's broken chunked body after a valid head: the head (and part of the body)
/// is already upstream. That upstream connection is mid-message and must never carry
/// another request; the backend sees no desynchronised bytes.
#[tokio::test]
async fn broken_chunked_body_does_not_desync_the_upstream_connection() {
    let (be, f) = front_with_recorder().await;
    let broken: &[&[u8]] = &[
        b"3\r\nhello\r\n0\r\n\r\n",                  // data longer than its size
        b"5\r\nhello\n0\r\n\r\n",                    // bare LF after data
        b"5\nhello\r\n0\r\n\r\n",                    // bare LF after size
        b"5\r\nhello\r\nzz\r\n\r\n",                 // bad second size
        b"5\r\nhello\r\n-1\r\n\r\n",                 // negative size
        b"5\r\nhello\r\n0x5\r\nhello\r\n0\r\n\r\n",  // 0x prefix
        b"5\r\nhello\r\n10000000000000000\r\n\r\n",  // 2^64: overflow
        b"5\r\nhello\r\nffffffffffffffffff\r\n\r\n", // 18 digits: overflow
    ];
    for (i, body) in broken.iter().enumerate() {
        let mut req =
            format!("POST /echo?{i} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
                .into_bytes();
        req.extend_from_slice(body);
        let mut c = Conn::open(f.addr).await;
        c.send(&req).await;
        let rs = responses_until_close(&mut c, "POST").await;
        assert!(
            rs.len() <= 1 && rs.iter().all(|r| r.status == 400),
            "{:?}: {rs:?}",
            String::from_utf8_lossy(body)
        );
        // A good request right after: must arrive upstream as its own clean request.
        let mut c = Conn::open(f.addr).await;
        let r = c
            .roundtrip(
                format!("POST /good{i} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nok")
                    .as_bytes(),
            )
            .await;
        assert_eq!(r.text(), format!("POST /good{i} 2"), "after {i}: {r:?}");
    }
    let seen = be.seen();
    assert!(
        seen.iter()
            .all(|s| s.method != DESYNC && !s.path.contains("smuggled")),
        "{seen:#?}"
    );
    no_connections_left(&f).await;
}

/// RFC 9110 §8.6: a recipient of repeated identical lengths "MUST either reject the
/// message as invalid or replace the duplicated field values with a single valid
/// Content-Length field ... prior to ... forwarding the message". nginx, for one, answers
/// 400 to two `Content-Length` lines, so a forwarded duplicate turns a request the front
/// accepted into a backend error.
#[tokio::test]
async fn duplicate_equal_content_lengths_reach_the_backend_as_one() {
    let (be, f) = front_with_recorder().await;
    let mut c = Conn::open(f.addr).await;
    let r = c
        .roundtrip(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
        )
        .await;
    assert_eq!((r.status, r.text()), (200, "POST /echo 5".to_string()));
    assert_backend_saw(&be, &[("POST", "/echo", b"hello")], "CL twice");
}

// ---------------------------------------------------------------------------------------
// 4. Pipelining floods.

#[tokio::test]
async fn thousand_pipelined_gets_are_answered_in_order() {
    let (be, f) = front_with_backend().await;
    const N: usize = 1000;
    let mut all = Vec::new();
    for i in 0..N {
        all.extend_from_slice(&get(&format!("/p{i}")));
    }
    let mut c = Conn::open(f.addr).await;
    let (rd, mut wr) = c.s.into_split();
    // Written in one go from its own task, so the responses are read while the front
    // still has requests to take in (neither side's buffers must hold everything).
    let writer = tokio::spawn(async move {
        wr.write_all(&all).await.unwrap();
        wr
    });
    c.s = {
        let wr = writer.await.unwrap();
        rd.reunite(wr).unwrap()
    };
    for i in 0..N {
        let r = c.response("GET").await;
        assert_eq!(
            (r.status, r.text()),
            (200, format!("a /p{i}")),
            "response {i}"
        );
    }
    assert_eq!(be.requests.load(Ordering::SeqCst), N);
    assert_eq!(c.roundtrip(&get("/after")).await.text(), "a /after");
}

#[tokio::test]
async fn malformed_request_in_a_pipeline_gets_400_after_the_ones_before() {
    let (be, f) = front_with_backend().await;
    let mut all = Vec::new();
    for i in 1..=50 {
        if i == 25 {
            all.extend_from_slice(b"GET /p25 HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n");
        } else {
            all.extend_from_slice(&get(&format!("/p{i}")));
        }
    }
    let mut c = Conn::open(f.addr).await;
    c.send(&all).await;
    for i in 1..25 {
        let r = c.response("GET").await;
        assert_eq!(
            (r.status, r.text()),
            (200, format!("a /p{i}")),
            "response {i}"
        );
    }
    let r = c.response("GET").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(c.is_closed().await);
    assert_eq!(be.requests.load(Ordering::SeqCst), 24);
    no_connections_left(&f).await;
}

// ---------------------------------------------------------------------------------------
// 5. Huge values.

#[tokio::test]
async fn huge_chunk_sizes_and_lengths_are_400() {
    let (be, f) = front_with_recorder().await;
    let cases: &[&[u8]] = &[
        // Chunk sizes past u64.
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n00000000000000000005\r\nhello\r\n0\r\n\r\n",
        // Lengths of 2^64, u64::MAX and far past.
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 18446744073709551616\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 18446744073709551615\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999999999999999999999\r\n\r\nhello",
    ];
    for req in cases {
        let mut c = Conn::open(f.addr).await;
        c.send(req).await;
        let rs = responses_until_close(&mut c, "POST").await;
        let st: Vec<u16> = rs.iter().map(|r| r.status).collect();
        assert_eq!(st, [400], "{:?}: {rs:?}", String::from_utf8_lossy(req));
    }
    // None of the bodies reached the backend as data.
    assert!(
        be.seen().iter().all(|s| s.body.is_empty()),
        "{:?}",
        be.seen()
    );
    no_connections_left(&f).await;
}

/// A length that fits in u64 but can never arrive (19 digits): forwarded as such, the
/// client's early goodbye ends it, and nothing is held afterwards.
#[tokio::test]
async fn largest_accepted_content_length_is_streamed_then_abandoned() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    c.send(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 9999999999999999999\r\n\r\nhello")
        .await;
    let r = {
        // The echo backend answers at once and streams the body back as it comes.
        let status = c.line().await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
        c.fields().await
    };
    assert!(
        r.iter()
            .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
            || r.iter()
                .any(|(k, v)| k == "content-length" && v == "9999999999999999999"),
        "{r:?}"
    );
    let mut echoed = Vec::new();
    while !String::from_utf8_lossy(&c.buf).contains("hello") {
        assert!(
            c.fill().await > 0,
            "closed before the echo: {:?}",
            c.lossy()
        );
    }
    echoed.extend_from_slice(&c.buf);
    drop(c);
    no_connections_left(&f).await;
    still_serves(&f, "/after-huge-length").await;
}

/// `maxRequestHeaderBytes` (16 KiB) is the whole head: one of exactly 16384 bytes is
/// served, one byte more is 431.
#[tokio::test]
async fn head_of_exactly_the_limit_is_served_and_one_more_byte_is_431() {
    let (be, f) = front_with_backend().await;
    let head = |len: usize| {
        let start = "GET /limit HTTP/1.1\r\nhost: x\r\nx-big: ";
        let end = "\r\n\r\n";
        let fill = len - start.len() - end.len();
        format!("{start}{}{end}", "v".repeat(fill)).into_bytes()
    };
    let at = head(16 * 1024);
    assert_eq!(at.len(), 16384);
    let mut c = Conn::open(f.addr).await;
    let r = c.roundtrip(&at).await;
    assert_eq!((r.status, r.text()), (200, "a /limit".to_string()), "{r:?}");
    // And again on the same connection: the limit is per head, not per connection.
    let r = c.roundtrip(&at).await;
    assert_eq!(r.status, 200, "{r:?}");
    drop(c);

    let over = head(16 * 1024 + 1);
    let mut c = Conn::open(f.addr).await;
    c.send(&over).await;
    let r = c.response("GET").await;
    assert_eq!(r.status, 431, "{r:?}");
    assert!(c.is_closed().await);
    // The same head with one byte short of its end (no final CRLF yet) at the limit:
    // still waiting, not refused; the rest completes it.
    let mut c = Conn::open(f.addr).await;
    c.s.set_nodelay(true).unwrap();
    c.send(&at[..at.len() - 1]).await;
    tokio::time::sleep(Duration::from_millis(20)).await; // the piece is read on its own
    c.send(&at[at.len() - 1..]).await;
    assert_eq!(c.response("GET").await.status, 200);
    assert_eq!(be.requests.load(Ordering::SeqCst), 3);
    drop(c);
    no_connections_left(&f).await;
}

/// More than 100 header lines is 431, exactly 100 is served (and forwarded with the
/// front's own four added: a backend must take 104).
#[tokio::test]
async fn hundred_headers_are_served_and_one_more_is_431() {
    let (be, f) = front_with_recorder().await;
    let req = |n: usize| {
        let mut s = String::from("GET /many HTTP/1.1\r\nhost: x\r\n");
        for i in 1..n {
            s.push_str(&format!("x-h{i}: {i}\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    };
    let mut c = Conn::open(f.addr).await;
    let r = c.roundtrip(&req(100)).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "GET /many 0".to_string()),
        "{r:?}"
    );
    assert_eq!(be.seen()[0].headers.len(), 104);
    let mut c = Conn::open(f.addr).await;
    c.send(&req(101)).await;
    let r = c.response("GET").await;
    assert_eq!(r.status, 431, "{r:?}");
    assert!(c.is_closed().await);
    assert_eq!(be.seen().len(), 1);
}

// ---------------------------------------------------------------------------------------
// 6. Early responses: the backend answers before (without) reading the body.

/// A backend that answers every request `413` as soon as the head is in, never reading
/// the body. `linger`: it then half-closes and drains what comes (a well-behaved server);
/// otherwise it drops the socket at once (unread bytes make that a reset).
async fn early_413_backend(linger: bool) -> RawBackend {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let rq = requests.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let rq = rq.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                rq.fetch_add(1, Ordering::SeqCst);
                let _ = s
                    .write_all(
                        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large",
                    )
                    .await;
                if linger {
                    let _ = s.shutdown().await;
                    while let Ok(n) = s.read(&mut tmp).await {
                        if n == 0 {
                            break;
                        }
                    }
                }
            });
        }
    });
    RawBackend {
        addr,
        requests,
        task,
    }
}

/// Read responses, skipping any interim `100 Continue`, until a final one.
async fn final_response(c: &mut Conn, method: &str) -> Resp {
    loop {
        let r = c.response(method).await;
        if r.status >= 200 {
            return r;
        }
        assert_eq!(r.status, 100, "{r:?}");
    }
}

#[tokio::test]
async fn expect_continue_upload_refused_early_gets_the_413_and_a_close() {
    for linger in [true, false] {
        let be = early_413_backend(linger).await;
        let f = TestFront::start(&one_pool_yaml(&be.addr.to_string())).await;
        let mut c = Conn::open(f.addr).await;
        // The client waits for `100 Continue` and sends no body byte: the backend's
        // refusal must reach it anyway (a `100` first is allowed, not needed).
        c.send(
            b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\nexpect: 100-continue\r\n\r\n",
        )
        .await;
        let r = final_response(&mut c, "POST").await;
        assert_eq!(
            (r.status, r.text()),
            (413, "too large".to_string()),
            "linger {linger}: {r:?}"
        );
        // The body was never read: the connection cannot carry another request.
        assert!(c.is_closed().await);
        assert_eq!(be.requests.load(Ordering::SeqCst), 1);
        no_connections_left(&f).await;
        // The member is not blamed for the client's unsent body.
        let members = f.front.pool("p").unwrap().members();
        assert!(members.iter().all(|m| m.failed() == 0), "linger {linger}");
    }
}

#[tokio::test]
async fn upload_refused_early_while_the_body_trickles_gets_the_413() {
    for linger in [true, false] {
        let be = early_413_backend(linger).await;
        let f = TestFront::start(&one_pool_yaml(&be.addr.to_string())).await;
        let mut c = Conn::open(f.addr).await;
        c.send(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n")
            .await;
        c.send(&[b'a'; 1000]).await;
        // The rest of the body never comes; the answer must not wait for it.
        let r = final_response(&mut c, "POST").await;
        assert_eq!(
            (r.status, r.text()),
            (413, "too large".to_string()),
            "linger {linger}: {r:?}"
        );
        assert!(c.is_closed().await);
        no_connections_left(&f).await;
    }
}

// ---------------------------------------------------------------------------------------
// 7. A client that resets mid-upload.

/// Drop `c` with SO_LINGER 0: the kernel sends RST instead of FIN.
fn reset(c: Conn) {
    socket2::SockRef::from(&c.s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
}

#[tokio::test]
async fn client_reset_mid_upload_leaves_the_front_serving() {
    let (be, f) = front_with_recorder().await;
    for framing in ["content-length: 1000000", "transfer-encoding: chunked"] {
        let mut c = Conn::open(f.addr).await;
        c.send(format!("POST /upload HTTP/1.1\r\nhost: x\r\n{framing}\r\n\r\n").as_bytes())
            .await;
        if framing.starts_with("transfer") {
            c.send(format!("{:x}\r\n", 100_000).as_bytes()).await;
        }
        c.send(&vec![b'u'; 64 * 1024]).await;
        // The upload is under way upstream before the reset.
        assert!(eventually(Duration::from_secs(5), || f.front.open_connections() == 1).await);
        reset(c);
        no_connections_left(&f).await;
        let mut c = Conn::open(f.addr).await;
        let r = c
            .roundtrip(b"POST /next HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nnext")
            .await;
        assert_eq!(
            (r.status, r.text()),
            (200, "POST /next 4".to_string()),
            "{framing}: {r:?}"
        );
    }
    // The abandoned uploads never completed upstream, and nothing desynchronised.
    let seen = be.seen();
    assert!(
        seen.iter()
            .all(|s| s.method != DESYNC && s.path != "/upload"),
        "{seen:#?}"
    );
    // The client's reset is not the member's failure.
    let members = f.front.pool("p").unwrap().members();
    assert!(members.iter().all(|m| m.failed() == 0));
}

#[tokio::test]
async fn client_reset_while_waiting_for_expect_continue_and_for_the_response() {
    let (be, f) = front_with_backend().await;
    // Waiting for `100 Continue` (nothing of the body sent).
    let mut c = Conn::open(f.addr).await;
    c.send(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\nexpect: 100-continue\r\n\r\n")
        .await;
    assert_eq!(c.response("POST").await.status, 100);
    reset(c);
    // Waiting for a slow response, body complete.
    let mut c = Conn::open(f.addr).await;
    c.send(&get("/slow?ms=3000")).await;
    let before = be.requests.load(Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || be
            .requests
            .load(Ordering::SeqCst)
            > before)
        .await
    );
    reset(c);
    no_connections_left(&f).await;
    still_serves(&f, "/after-reset").await;
}

// ---------------------------------------------------------------------------------------
// Target and Host validation found by the garbage run.

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
/// HTTP/1.1 request message that lacks a Host header field and to any that contains more
/// than one Host header field line or a Host header field with an invalid field value."
/// A space or userinfo is not `uri-host [ ":" port ]`; forwarded, it becomes the
/// backend's `Host` and `X-Forwarded-Host` (Host-header injection, cache poisoning).
#[tokio::test]
async fn invalid_host_values_are_400() {
    let (be, f) = front_with_recorder().await;
    let mut accepted = Vec::new();
    for host in ["a b", "x@evil", "x/y", "x:y", "x\tz", "[::1", "x?y", "x#y"] {
        let mut c = Conn::open(f.addr).await;
        let r = c
            .roundtrip(format!("GET /h HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
            .await;
        if r.status != 400 {
            accepted.push((host, r.status));
        }
    }
    assert!(accepted.is_empty(), "not refused: {accepted:?}");
    assert_backend_saw(&be, &[], "invalid hosts");
}

/// h2c smuggling (Bishop Fox, 2020): `Upgrade: h2c` forwarded to a backend that speaks
/// h2c gets a `101`, and the client then talks HTTP/2 straight to the backend through
/// the tunnel, past the front's routing and rules. A reverse proxy must not forward an
/// h2c upgrade (nor `HTTP2-Settings`).
#[tokio::test]
async fn h2c_upgrade_is_not_forwarded() {
    let (be, f) = front_with_recorder().await;
    let mut c = Conn::open(f.addr).await;
    let r = c
        .roundtrip(
            b"GET /h2c HTTP/1.1\r\nhost: x\r\nupgrade: h2c\r\nconnection: Upgrade, HTTP2-Settings\r\n\
              http2-settings: AAMAAABkAAQAAP__\r\n\r\n",
        )
        .await;
    assert_ne!(r.status, 101, "{r:?}");
    let seen = be.seen();
    assert!(
        seen.iter().all(|s| s
            .headers
            .iter()
            .all(|(k, v)| !(k == "upgrade" && v.eq_ignore_ascii_case("h2c"))
                && k != "http2-settings")),
        "{seen:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// More of the same family.

/// Pingora CVE-2026-2833 class: bytes sent after an upgrade request, before the backend
/// agreed to switch, must not reach the backend raw. Here the backend declines (200), so
/// the bytes are an ordinary pipelined request: it must arrive as a request the front
/// forwarded (with its `via`), never as tunnel bytes.
#[tokio::test]
async fn bytes_after_a_declined_upgrade_are_not_tunnelled() {
    let (be, f) = front_with_recorder().await;
    let mut c = Conn::open(f.addr).await;
    c.send(
        b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n\
          GET /smuggled HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let rs = responses_until_close(&mut c, "GET").await;
    assert!(!rs.is_empty() && rs[0].status == 200, "{rs:?}");
    let seen = be.seen();
    assert!(
        seen.iter()
            .all(|s| s.method != DESYNC && s.header_count("via") == 1),
        "{seen:#?}"
    );
    // Either served as the next request, or not at all (closed): never anything else.
    assert!(rs.len() <= 2, "{rs:?}");
    if rs.len() == 2 {
        assert_eq!(rs[1].text(), "GET /smuggled 0");
    }
}

/// `100 Continue` is only for a request that has a body to send.
#[tokio::test]
async fn expect_continue_without_a_body_gets_no_interim_response() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    for req in [
        &b"GET /e1 HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n\r\n"[..],
        b"POST /e2 HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 0\r\n\r\n",
    ] {
        let r = c.roundtrip(req).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A client that sends its body without waiting: one 100 at most, then the echo, and
    // the pipelined request after it is read as a request.
    c.send(
        b"POST /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\nhello\
          GET /next HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    let r = final_response(&mut c, "POST").await;
    assert_eq!((r.status, r.text()), (200, "hello".to_string()));
    assert_eq!(c.response("GET").await.text(), "a /next");
}

/// A refusal written while the client is still sending: the client must be able to read
/// the 400 (no reset from unread bytes that destroys the answer before it is read).
#[tokio::test]
async fn refusal_reaches_a_client_that_is_still_sending() {
    let (_be, f) = front_with_backend().await;
    let mut c = Conn::open(f.addr).await;
    let mut req = b"GET / HTTP/1.1\r\nhost: x\r\nbad header line\r\n\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'j', 256 * 1024));
    // The write may fail once the front closes: the answer is what matters.
    let (rd, mut wr) = c.s.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&req).await;
        wr
    });
    c.s = rd.reunite(writer.await.unwrap()).unwrap();
    let got = read_to_close(&mut c.s, b"bad head + 256 KiB").await;
    assert_eq!(
        status_of(&got),
        Some(400),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

/// Pingora CVE-2025-4366 class: when the front answers by itself without reading the
/// request body (its own 400 or 404), the unread body must never be taken for the next
/// request. Each case hides `GET /smuggled` in the body and pipelines a sentinel.
#[tokio::test]
async fn unread_body_of_a_request_the_front_answers_itself_is_never_a_request() {
    let (be, f) = front_with_recorder().await;
    let chunked_hidden = format!("{:x}\r\n{HIDDEN}\r\n0\r\n\r\n", HIDDEN.len());
    let cases = [
        // The front's own 400 (no Host) keeps the connection for bodiless requests.
        format!("POST / HTTP/1.1\r\ncontent-length: {}\r\n\r\n{HIDDEN}", HIDDEN.len()),
        format!("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n{chunked_hidden}"),
        // Two Host lines.
        format!(
            "POST / HTTP/1.1\r\nhost: x\r\nhost: y\r\ncontent-length: {}\r\n\r\n{HIDDEN}",
            HIDDEN.len()
        ),
        // The front's own 404.
        format!(
            "POST /.roost/nothing HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{HIDDEN}",
            HIDDEN.len()
        ),
        format!(
            "POST /.roost/nothing HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{chunked_hidden}"
        ),
    ];
    for req in &cases {
        let mut c = Conn::open(f.addr).await;
        c.send(req.as_bytes()).await;
        c.send(b"GET /sentinel HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await;
        let rs = responses_until_close(&mut c, "POST").await;
        assert!(!rs.is_empty() && rs[0].status >= 400, "{req:?}: {rs:?}");
        assert!(
            rs.iter().all(|r| !r.text().contains("smuggled")),
            "{req:?}: {rs:?}"
        );
        // If anything came after the refusal, it is the sentinel.
        for r in &rs[1..] {
            assert_eq!(r.text(), "GET /sentinel 0", "{req:?}: {rs:?}");
        }
    }
    let seen = be.seen();
    assert!(
        seen.iter()
            .all(|s| s.method == "GET" && s.path == "/sentinel"),
        "{seen:#?}"
    );
    no_connections_left(&f).await;
}

// ---------------------------------------------------------------------------------------
// Strict framing on both sides (hostile peers).

/// A member that breaks HTTP/1.1 gets the client a 502 `BadGateway`, not a guess at what
/// the member meant and not `ConnectFailed` (which would send an operator to the network).
#[tokio::test]
async fn a_member_that_breaks_http_is_a_502_bad_gateway() {
    let (_be, f) = front_with_raw().await;
    for path in [
        "/bad/bare-lf",
        "/bad/plus-length",
        "/bad/obs-fold",
        "/bad/gzip-chunked",
        "/bad/space-colon",
        "/bad/status",
    ] {
        let mut c = Conn::open(f.addr).await;
        let r = c.roundtrip(&get(path)).await;
        assert_eq!(r.status, 502, "{path}: {r:?}");
        assert_eq!(
            r.header("x-roost-reason"),
            Some("BadGateway"),
            "{path}: {r:?}"
        );
        assert!(!r.text().contains("ok"), "{path}: {r:?}");
    }
    let pool = f.front.pool("p").unwrap();
    assert_eq!(
        pool.counters().rejected(roost::error::Reason::BadGateway),
        6
    );
    assert_eq!(
        pool.counters()
            .rejected(roost::error::Reason::ConnectFailed),
        0
    );
}

/// A bare LF anywhere in chunked framing is 400: read as a line end by one parser and
/// not by another, it is a smuggling vector.
#[tokio::test]
async fn bare_lf_anywhere_in_chunked_framing_is_400() {
    let (be, f) = front_with_recorder().await;
    for body in [
        &b"3;x\nabc\r\n0\r\n\r\n"[..],
        b"3\r\nabc\r\n0;x\n\r\n",
        b"3\r\nabc\r\n0\r\nx-t: 1\n\r\n",
        b"3\r\nabc\r\n0\r\n\n",
        b"3;x\rabc\r\n0\r\n\r\n",
    ] {
        let mut req =
            b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(body);
        let mut c = Conn::open(f.addr).await;
        c.send(&req).await;
        let rs = responses_until_close(&mut c, "POST").await;
        assert!(
            rs.len() <= 1 && rs.iter().all(|r| r.status == 400),
            "{:?}: {rs:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(
        be.seen().iter().all(|s| s.method != DESYNC),
        "{:?}",
        be.seen().iter().map(|s| &s.path).collect::<Vec<_>>()
    );
}

/// Userinfo in an absolute-form target never reaches a member as its Host; `*` is
/// OPTIONS only.
#[tokio::test]
async fn userinfo_in_the_target_and_a_stray_asterisk_are_400() {
    for req in [
        &b"GET http://a@evil/ HTTP/1.1\r\nhost: x\r\n\r\n"[..],
        b"GET http://user:pw@x/ HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET * HTTP/1.1\r\nhost: x\r\n\r\n",
        b"POST * HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
    ] {
        let (be, f) = front_with_backend().await;
        let mut c = Conn::open(f.addr).await;
        let r = c.roundtrip(req).await;
        assert_eq!(r.status, 400, "{:?}: {r:?}", String::from_utf8_lossy(req));
        assert_eq!(be.requests.load(Ordering::SeqCst), 0);
    }
}

/// A client that half-closes mid-body is gone: roost closes, it never writes the 499
/// it logs (`ClientGone` is a log and metric reason, not a status on the wire).
#[tokio::test]
async fn a_client_gone_mid_body_never_gets_a_499() {
    let (_be, f) = front_with_backend().await;
    for framing in ["content-length: 100", "transfer-encoding: chunked"] {
        let mut c = Conn::open(f.addr).await;
        let head = format!("POST /echo HTTP/1.1\r\nhost: x\r\n{framing}\r\n\r\n");
        c.send(head.as_bytes()).await;
        c.send(if framing.starts_with("content") {
            b"abc"
        } else {
            b"3\r\nabc\r\n"
        })
        .await;
        c.s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), c.s.read_to_end(&mut rest)).await;
        let all = [c.buf.clone(), rest].concat();
        let text = String::from_utf8_lossy(&all);
        assert!(!text.contains(" 499"), "{framing}: {text}");
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400"),
            "{framing}: {text}"
        );
    }
}
