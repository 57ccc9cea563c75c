//! The upstream HTTP/1.1 client against scripted members on real sockets: response
//! framing (chunked, HEAD, 204, read-to-close), interim responses, request body framing,
//! connection reuse and the keep-alive race, and `101` tunnels.

use bytes::Bytes;
use http_body_util::BodyExt;
use roost::upstream::{Client, Endpoint, UpstreamError};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

fn client(port: u16) -> Client {
    Client::new(
        Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        &roost::config::model::UpstreamTimeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        },
    )
}

/// Read one request head (and `extra` bytes of body after it) from `s`.
async fn read_request(s: &mut TcpStream, extra: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= i + 4 + extra {
                break;
            }
        }
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Read one request (and `extra` body bytes) from `s`, then write `reply`; the request.
async fn answer(s: &mut TcpStream, extra: usize, reply: &[u8]) -> String {
    let request = read_request(s, extra).await;
    s.write_all(reply).await.unwrap();
    request
}

/// A scripted member on `127.0.0.1:0` (`script` gets its listener) and a client for it.
async fn scripted_member<T, F>(script: impl FnOnce(TcpListener) -> F) -> (Client, JoinHandle<T>)
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = client(l.local_addr().unwrap().port());
    (c, tokio::spawn(script(l)))
}

fn get(path: &str) -> http::Request<roost::body::Body> {
    http::Request::get(path)
        .header("host", "m")
        .body(roost::body::empty())
        .unwrap()
}

async fn body_of(resp: http::Response<roost::upstream::UpstreamBody>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn chunked_head_204_and_length_responses_reuse_one_connection() {
    let (c, member) = scripted_member(|l| async move {
        let (mut s, _) = l.accept().await.unwrap();
        let answers: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        ];
        let mut heads = Vec::new();
        for a in answers {
            heads.push(answer(&mut s, 0, a).await);
        }
        // The connection stays open (a closed one is rightly not pooled).
        (heads, s)
    })
    .await;
    let r = c.send(get("/chunked")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(body_of(r).await, "hello, world");
    assert_eq!(
        c.idle_connections(),
        1,
        "a chunked body read to its end frees the connection"
    );

    let head = http::Request::head("/h")
        .header("host", "m")
        .body(roost::body::empty())
        .unwrap();
    let r = c.send(head).await.unwrap();
    assert_eq!(r.headers()["content-length"], "11");
    assert_eq!(body_of(r).await, "");
    assert_eq!(
        c.idle_connections(),
        1,
        "HEAD has no body whatever its length says"
    );

    let r = c.send(get("/204")).await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        c.idle_connections(),
        1,
        "an empty body frees the connection at once"
    );
    assert_eq!(body_of(r).await, "");

    let r = c.send(get("/continue")).await.unwrap();
    assert_eq!(r.status(), 200, "interim 100 skipped");
    assert_eq!(body_of(r).await, "abc");
    assert_eq!(c.idle_connections(), 1);

    let (heads, _open) = member.await.unwrap();
    assert!(
        heads[0].starts_with("GET /chunked HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert!(heads[1].starts_with("HEAD /h HTTP/1.1\r\n"));
    assert_eq!(heads.len(), 4, "all four on one connection");
}

#[tokio::test]
async fn a_body_without_length_is_read_to_close_and_not_pooled() {
    let (c, _) = scripted_member(|l| async move {
        let (mut s, _) = l.accept().await.unwrap();
        answer(&mut s, 0, b"HTTP/1.1 200 OK\r\n\r\nuntil").await;
        s.write_all(b" the end").await.unwrap();
    })
    .await;
    let r = c.send(get("/")).await.unwrap();
    assert_eq!(body_of(r).await, "until the end");
    assert_eq!(c.idle_connections(), 0);
}

#[tokio::test]
async fn request_bodies_are_framed_by_length_or_chunked() {
    let (c, member) = scripted_member(|l| async move {
        let (mut s, _) = l.accept().await.unwrap();
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let sized = answer(&mut s, 5, ok).await;
        // "ab" and "cde" as chunks, then the last chunk.
        let chunked = answer(&mut s, "2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n".len(), ok).await;
        (sized, chunked)
    })
    .await;
    let req = http::Request::post("/sized")
        .header("host", "m")
        .body(roost::body::full("hello"))
        .unwrap();
    assert_eq!(c.send(req).await.unwrap().status(), 200);

    // A body of unknown length (as from an HTTP/2 client): two frames, no size hint.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(2);
    tx.send(Ok(http_body::Frame::data(Bytes::from("ab"))))
        .await
        .unwrap();
    tx.send(Ok(http_body::Frame::data(Bytes::from("cde"))))
        .await
        .unwrap();
    drop(tx);
    let stream = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let req = http::Request::post("/chunked")
        .header("host", "m")
        .body(roost::body::boxed(stream))
        .unwrap();
    assert_eq!(c.send(req).await.unwrap().status(), 200);

    let (sized, chunked) = member.await.unwrap();
    assert!(sized.contains("content-length: 5\r\n"), "{sized}");
    assert!(sized.ends_with("\r\n\r\nhello"), "{sized}");
    assert!(
        chunked.contains("transfer-encoding: chunked\r\n"),
        "{chunked}"
    );
    assert!(
        chunked.ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
        "{chunked:?}"
    );
}

/// An mpsc receiver as a `Stream` (without pulling in tokio-stream for one test).
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn keep_alive_race_a_closed_pooled_connection_is_not_an_error() {
    let (c, member) = scripted_member(|l| async move {
        // First connection: answer, then close while it sits in roost's pool.
        let (mut s, _) = l.accept().await.unwrap();
        answer(&mut s, 0, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na").await;
        drop(s);
        // Second connection: roost must open it for the next request (whether it saw
        // the close on checkout or found out by the request getting no answer).
        let (mut s, _) = l.accept().await.unwrap();
        answer(&mut s, 0, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb").await;
        // Then on the same connection: answer /3, read /4 and close without answering
        // (the race proper).
        answer(&mut s, 0, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc").await;
        let unanswered = read_request(&mut s, 0).await;
        drop(s);
        // Fourth: the same request again, on a fresh connection.
        let (mut s, _) = l.accept().await.unwrap();
        let retried = answer(&mut s, 0, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nd").await;
        (unanswered, retried)
    })
    .await;
    assert_eq!(body_of(c.send(get("/1")).await.unwrap()).await, "a");
    // Whether or not the member's close has reached the pool yet (checked on checkout, or
    // found out when the reused connection answers nothing), the request is answered.
    assert_eq!(body_of(c.send(get("/2")).await.unwrap()).await, "b");
    assert_eq!(body_of(c.send(get("/3")).await.unwrap()).await, "c");
    // The member reads /4 on the reused connection and closes it unanswered: a body-less
    // GET that got no byte back is sent again on a new connection.
    assert_eq!(body_of(c.send(get("/4")).await.unwrap()).await, "d");
    let (unanswered, retried) = member.await.unwrap();
    assert!(unanswered.starts_with("GET /4 "), "{unanswered}");
    assert!(retried.starts_with("GET /4 "), "{retried}");
}

#[tokio::test]
async fn a_post_on_a_connection_that_dies_unanswered_is_not_retried() {
    let (c, _) = scripted_member(|l| async move {
        let (mut s, _) = l.accept().await.unwrap();
        answer(&mut s, 0, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        read_request(&mut s, 2).await;
        drop(s);
    })
    .await;
    c.send(get("/")).await.unwrap();
    let req = http::Request::post("/pay")
        .header("host", "m")
        .body(roost::body::full("42"))
        .unwrap();
    match c.send(req).await {
        Err(UpstreamError::Failed(_)) => {}
        Err(e) => panic!("expected Failed, got {e}"),
        Ok(r) => panic!("expected Failed, got {}", r.status()),
    }
}

#[tokio::test]
async fn malformed_member_answers_are_errors_not_panics() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"[..],
        b"NOT HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let (c, _) = scripted_member(|l| async move {
            let (mut s, _) = l.accept().await.unwrap();
            answer(&mut s, 0, reply).await;
            // Hold the connection so an error cannot come from the close.
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let outcome = match c.send(get("/")).await {
            Err(_) => true,
            Ok(r) => r.into_body().collect().await.is_err(),
        };
        assert!(outcome, "{:?} must fail", String::from_utf8_lossy(reply));
        assert_eq!(c.idle_connections(), 0);
    }
}

#[tokio::test]
async fn switching_protocols_gives_the_connection_with_its_early_bytes() {
    let (c, _) = scripted_member(|l| async move {
        let (mut s, _) = l.accept().await.unwrap();
        let switch =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nhi!";
        answer(&mut s, 0, switch).await;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
    })
    .await;
    let req = http::Request::get("/ws")
        .header("host", "m")
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(roost::body::empty())
        .unwrap();
    let r = c.send(req).await.unwrap();
    assert_eq!(r.status(), 101);
    let mut up = r.into_body().into_upgraded().expect("a tunnel");
    let mut got = [0u8; 3];
    up.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hi!");
    up.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    up.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
}

#[tokio::test]
async fn an_early_answer_while_the_upload_is_pending_is_returned_and_not_pooled() {
    let (c, _) = scripted_member(|l| async move {
        let (mut s, _) = l.accept().await.unwrap();
        // Refuse the upload on sight of its head, before any of the body.
        let refusal =
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!";
        answer(&mut s, 0, refusal).await;
    })
    .await;
    // A body that never ends: only an answer that does not wait for it can come back.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
    tx.send(Ok(http_body::Frame::data(Bytes::from("x".repeat(1000)))))
        .await
        .unwrap();
    let stream = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let req = http::Request::post("/upload")
        .header("host", "m")
        .header("content-length", "1000000")
        .body(roost::body::boxed(stream))
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), c.send(req))
        .await
        .expect("the 413 must not wait for the body")
        .unwrap();
    assert_eq!(r.status(), 413);
    drop(tx);
    assert_eq!(body_of(r).await, "big!");
    assert_eq!(
        c.idle_connections(),
        0,
        "a connection left mid-request is not reused"
    );
}
