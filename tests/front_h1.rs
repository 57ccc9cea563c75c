//! HTTP/1.1 conformance of the front as a client sees it, on raw sockets with exact bytes.
//!
//! These tests pin the behaviour the front has with hyper's HTTP/1.1 server, so that a
//! replacement server loop can be checked against it: connection management (keep-alive,
//! pipelining, HTTP/1.0, half-close), request framing (Content-Length, chunked,
//! `Expect: 100-continue`), refusals of malformed or ambiguous requests, response framing
//! (HEAD, 204, 304, close-delimited and chunked upstream responses), `Date`, large bodies,
//! clients that vanish mid-response, and upgrades.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every read waits at most this long: a hung front fails the test instead of hanging it.
const READ_LIMIT: Duration = Duration::from_secs(5);

/// One site on `127.0.0.1:0` routing `/` to pool `p`: one farm server.
fn one_pool(server: &str) -> String {
    format!(
        r#"
sites:
  - name: s
    bindings: [{{listen: "127.0.0.1:0"}}]
    applications: [{{path: /, pool: p}}]
pools:
  p:
    farm:
      servers:
        - {{address: "{server}", maxConcurrentRequests: 100}}
"#
    )
}

async fn front_with_backend() -> (Backend, TestFront) {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool(&be.addr.to_string())).await;
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
        _ if method == "HEAD" => b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n",
        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nhello world!",
    };
    (r.to_vec(), false)
}

async fn front_with_raw() -> (RawBackend, TestFront) {
    let be = raw_backend(scripted).await;
    let f = TestFront::start(&one_pool(&be.addr.to_string())).await;
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
