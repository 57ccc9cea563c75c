//! The front's HTTP/1.1 connection loop end to end: arbitrary client bytes into
//! [`crate::front::h1::serve`], a member stand-in that records the request head roost's
//! forward encoder writes for each request and its body, and three checks that what the
//! member got is framed exactly the way roost answered the client.

use super::strict;
use crate::body::{self, BoxError};
use crate::config::model::Limits;
use crate::front::h1::{serve, Handled};
use crate::front::headers::{is_upgrade, strip_hop_by_hop};
use crate::h1::{encode_request_head, ReqFraming};
use bytes::BytesMut;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long (in the runtime's clock, which the caller pauses) a connection may take in
/// all; a front still talking after it is hung.
const CONNECTION_LIMIT: Duration = Duration::from_secs(3600);
/// What the member waits for a request body (roost's `bodyTimeout` stands in the proxy).
const BODY_LIMIT: Duration = Duration::from_secs(60);

/// How long the front waits for a next head once the input is used up.
const HEAD_WAIT: Duration = Duration::from_millis(5);

/// One request the member received in full.
#[derive(Debug)]
struct Got {
    method: Method,
    target: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Member {
    /// The bytes on the member's connection: each forwarded head and its body.
    wire: Vec<u8>,
    got: Vec<Got>,
    /// Requests the front handed over (complete or not).
    handed: usize,
}

/// Feed `data` to a front connection and check the exchange. `rt` must be a
/// current-thread runtime with its clock paused (`start_paused`), so the front's idle and
/// header timers fire as soon as nothing else can run: the run takes no wall time and
/// ends the same way every time.
///
/// 1. The member's bytes, read by the strict reference parser ([`strict`]), are exactly
///    the requests the member stand-in received, in order, with the same bodies: the
///    forward encoder frames what it writes.
/// 2. The client got, in order, one `200 req N` per request the member received, then at
///    most one refusal (4xx), then the end of the connection.
/// 3. The client's bytes, read by the reference parser, hold at least as many requests as
///    the member received, and they agree request by request on method, target and body:
///    roost never reads a body longer or shorter than the reference does, so no request
///    can hide inside another.
pub fn front_e2e(rt: &tokio::runtime::Runtime, data: &[u8]) {
    let member = Rc::new(RefCell::new(Member::default()));
    let to_client = rt.block_on(exchange(data, member.clone()));
    let member = member.take();

    let (on_wire, end) = strict::requests(&member.wire);
    assert_eq!(
        end,
        strict::End::Clean,
        "member bytes: {:?}",
        lossy(&member.wire)
    );
    assert_eq!(on_wire.len(), member.got.len());
    for (w, g) in on_wire.iter().zip(&member.got) {
        assert_eq!(w.method, g.method.as_str().as_bytes());
        assert_eq!(w.target, g.target.as_bytes());
        assert_eq!(w.body, g.body);
    }
    client_saw_one_answer_each(&to_client, &member.got);
    assert!(member.handed <= member.got.len() + 1);

    let (reference, _) = strict::requests(data);
    assert!(
        member.got.len() <= reference.len(),
        "roost forwarded {} requests where the reference reads {}: {:#?} from {:?}",
        member.got.len(),
        reference.len(),
        member.got,
        lossy(data)
    );
    for (i, (r, g)) in reference.iter().zip(&member.got).enumerate() {
        assert_eq!(r.method, g.method.as_str().as_bytes(), "request {i}");
        if r.target.starts_with(b"/") {
            assert_eq!(r.target, g.target.as_bytes(), "request {i}");
        }
        assert_eq!(r.body, g.body, "request {i}: body framed differently");
    }
}

async fn exchange(data: &[u8], member: Rc<RefCell<Member>>) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let limits = Limits {
        max_request_header_bytes: 4096,
        // The front measures this wait on the real clock (`std::time::Instant`), so it is
        // what every run costs at its end: short, since all input is written at once.
        header_wait_timeout: HEAD_WAIT,
        connection_timeout: Duration::from_secs(30),
        body_timeout: BODY_LIMIT,
        tls_handshake_timeout: Duration::from_secs(10),
        max_connections: 16,
        shutdown_grace: Duration::from_secs(1),
        max_connections_per_client: None,
        overload: Default::default(),
    };
    // The connection registers with an overload manager as the front's accept loop
    // would (nothing here ever pressures it).
    let manager = crate::front::overload::Manager::new(&limits);
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let Ok((conn, _)) = manager.admit(ip, crate::front::overload::ConnState::AwaitingHead) else {
        unreachable!("an empty registry admits");
    };
    let handler = |req: Request<body::Body>| handle(req, member.clone());
    let front = serve(
        server,
        BytesMut::new(),
        &limits,
        handler,
        |_| {},
        stop,
        conn.tracked(),
    );
    let (mut rd, mut wr) = tokio::io::split(client);
    let talk = async {
        // The write side stays open: a client that half-closes is gone (the front drops
        // the request), and the front's own timers end the connection instead.
        let _ = wr.write_all(data).await;
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        (out, wr)
    };
    let ((out, _wr), ()) =
        tokio::time::timeout(CONNECTION_LIMIT, async { tokio::join!(talk, front) })
            .await
            .unwrap_or_else(|_| panic!("the front hung on {:?}", lossy(data)));
    out
}

/// The member stand-in, in place of the proxy: reads the body as the upstream client
/// would stream it, writes the head the forward encoder makes (roost's real member-side
/// bytes), and answers `200 req N`.
async fn handle(req: Request<body::Body>, member: Rc<RefCell<Member>>) -> Handled {
    member.borrow_mut().handed += 1;
    let upgrade = is_upgrade(&req);
    let (parts, body) = req.into_parts();
    let body = tokio::time::timeout(BODY_LIMIT, body.collect())
        .await
        .map_err(|_| -> BoxError { "request body stalled".into() })??
        .to_bytes();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers, upgrade);
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut m = member.borrow_mut();
    let len = body.len() as u64;
    let framing = encode_request_head(
        &mut m.wire,
        &parts.method,
        &target,
        &headers,
        None,
        body.is_empty(),
        Some(len),
    );
    match framing {
        ReqFraming::Length | ReqFraming::None => m.wire.extend_from_slice(&body),
        ReqFraming::Chunked => panic!("a body of known length forwarded chunked"),
    }
    if framing == ReqFraming::None {
        assert!(body.is_empty());
    }
    let n = m.got.len();
    m.got.push(Got {
        method: parts.method,
        target,
        body: body.to_vec(),
    });
    Ok(Response::new(body::full(format!("req {n}"))))
}

fn client_saw_one_answer_each(wire: &[u8], got: &[Got]) {
    let mut at = 0;
    let mut answered = 0;
    loop {
        if at == wire.len() {
            break;
        }
        let head = got.get(answered).is_some_and(|g| g.method == Method::HEAD);
        let (resp, n) = match strict::response(&wire[at..], head) {
            Ok(Some(r)) => r,
            other => panic!(
                "response {answered} unreadable ({other:?}): {:?}",
                lossy(wire)
            ),
        };
        at += n;
        if resp.status == 100 {
            continue;
        }
        if answered < got.len() {
            assert_eq!(resp.status, 200, "response {answered}: {:?}", lossy(wire));
            if !head {
                assert_eq!(resp.body, format!("req {answered}").into_bytes());
            }
            answered += 1;
            continue;
        }
        // The one refusal the front may write itself, and then nothing.
        assert!(
            (400..500).contains(&resp.status),
            "unexpected {:?}",
            lossy(wire)
        );
        assert_eq!(at, wire.len(), "bytes after a refusal: {:?}", lossy(wire));
        break;
    }
    assert_eq!(
        answered,
        got.len(),
        "requests the client got no answer to: {:?}",
        lossy(wire)
    );
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(2000)]).into_owned()
}
