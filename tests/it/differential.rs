//! Differential framing test: seeded mutations of valid requests go through a real front
//! to a member that records the raw bytes of every connection; Python's h11 (an
//! independent HTTP/1.1 parser, `tests/support/h11_frame.py`) then frames both what each
//! client sent and what the member received.
//!
//! Checked: every member connection's bytes are, to h11, exactly the requests the member
//! answered (count, method, target, body), with nothing left over; and for each client
//! connection, what roost forwarded agrees request by request with h11's reading of the
//! client's bytes, and roost forwarded no more requests than h11 read, except in the
//! disagreement classes listed at [`allowed_extra`]. Skips (saying why) without python3
//! and h11, unless `ROOST_REQUIRE_H11=1`.

use crate::support::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roost::fuzzing::strict;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CASES: usize = 300;
const SEED: u64 = 0x005e_ed0f_0005;

type Log = Arc<parking_lot::Mutex<Vec<Vec<u8>>>>;

/// A member that answers each request (framed by the strict reference parser) with
/// `200`, and keeps every connection's raw bytes.
async fn recording_member() -> (std::net::SocketAddr, Log) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let log: Log = Arc::default();
    let conns = log.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let idx = {
                let mut c = conns.lock();
                c.push(Vec::new());
                c.len() - 1
            };
            let conns = conns.clone();
            tokio::spawn(async move {
                let mut answered = 0;
                let mut tmp = [0u8; 16384];
                while let Ok(n @ 1..) = s.read(&mut tmp).await {
                    let all = {
                        let mut c = conns.lock();
                        c[idx].extend_from_slice(&tmp[..n]);
                        c[idx].clone()
                    };
                    let (reqs, _) = strict::requests(&all);
                    for _ in answered..reqs.len() {
                        let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nM";
                        if s.write_all(resp).await.is_err() {
                            return;
                        }
                    }
                    answered = reqs.len();
                }
            });
        }
    });
    (addr, log)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Framed {
    method: String,
    target: String,
    body: Vec<u8>,
}

#[derive(Debug)]
struct H11 {
    requests: Vec<Framed>,
    error: Option<String>,
    #[allow(dead_code)]
    complete: bool,
}

fn h11_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import h11"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("ROOST_REQUIRE_H11").as_deref() == Ok("1") {
        panic!("ROOST_REQUIRE_H11=1 but python3 with h11 is missing (pip install h11)");
    }
    ok
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Frame each stream with h11.
fn h11_frame(streams: &[Vec<u8>]) -> Vec<H11> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/h11_frame.py");
    let input = serde_json::to_string(&streams.iter().map(|s| hex(s)).collect::<Vec<_>>());
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.unwrap();
    let writer =
        std::thread::spawn(move || std::io::Write::write_all(&mut stdin, input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "h11_frame.py failed");
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.iter()
        .map(|s| H11 {
            requests: s["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| Framed {
                    method: r["method"].as_str().unwrap().into(),
                    target: r["target"].as_str().unwrap().into(),
                    body: unhex(r["body"].as_str().unwrap()),
                })
                .collect(),
            error: s["error"].as_str().map(String::from),
            complete: s["complete"].as_bool().unwrap(),
        })
        .collect()
}

/// One generated client connection: the bytes, and the mutations applied (for messages).
struct Case {
    bytes: Vec<u8>,
    mutations: Vec<&'static str>,
}

fn base(rng: &mut StdRng, case: usize, k: usize) -> (Vec<(String, String)>, Vec<u8>, bool) {
    let body: Vec<u8> = (0..rng.gen_range(0..24))
        .map(|_| rng.gen_range(b'a'..=b'z'))
        .collect();
    let chunked = rng.gen_bool(0.4);
    let mut headers = vec![("Host".to_string(), "x".to_string())];
    if chunked {
        headers.push(("Transfer-Encoding".into(), "chunked".into()));
    } else if !body.is_empty() {
        headers.push(("Content-Length".into(), body.len().to_string()));
    }
    headers.push(("X-Case".into(), format!("{case}-{k}")));
    (headers, body, chunked)
}

fn chunk_body(rng: &mut StdRng, body: &[u8], m: &mut Vec<&'static str>) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(rng.gen_range(1..8)) {
        let size = match rng.gen_range(0..6) {
            0 => {
                m.push("chunk size leading zeros");
                format!("00{:x}", piece.len())
            }
            1 => {
                m.push("chunk size uppercase");
                format!("{:X}", piece.len())
            }
            _ => format!("{:x}", piece.len()),
        };
        let ext = match rng.gen_range(0..10) {
            0 => {
                m.push("chunk extension");
                ";a=b"
            }
            1 => {
                m.push("quoted chunk extension");
                ";q=\"x;y\""
            }
            2 => {
                m.push("bare LF in chunk extension");
                ";a\nb"
            }
            3 => {
                m.push("space before chunk CRLF");
                " "
            }
            _ => "",
        };
        let eol = if rng.gen_ratio(1, 25) {
            m.push("bare LF after chunk size");
            "\n"
        } else {
            "\r\n"
        };
        out.extend_from_slice(format!("{size}{ext}{eol}").as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    if rng.gen_ratio(1, 5) {
        m.push("trailer");
        out.extend_from_slice(b"X-Trailer: t\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Mutate one request's headers (the framing ones most of all).
fn mutate_headers(
    rng: &mut StdRng,
    h: &mut Vec<(String, String)>,
    body_len: usize,
    m: &mut Vec<&'static str>,
) {
    match rng.gen_range(0..16) {
        0 => {
            m.push("header name casing");
            for (k, _) in h.iter_mut() {
                *k = k.to_uppercase();
            }
        }
        1 => {
            m.push("duplicate equal content-length");
            h.push(("Content-Length".into(), body_len.to_string()));
        }
        2 => {
            m.push("conflicting content-length");
            h.push(("Content-Length".into(), (body_len + 3).to_string()));
        }
        3 => {
            m.push("content-length beside chunked");
            h.push(("Content-Length".into(), "3".into()));
        }
        4 => {
            m.push("transfer-encoding beside length");
            h.push(("Transfer-Encoding".into(), "chunked".into()));
        }
        5 => {
            m.push("gzip, chunked");
            h.push(("Transfer-Encoding".into(), "gzip, chunked".into()));
        }
        6 => {
            m.push("chunked, identity");
            h.push(("Transfer-Encoding".into(), "chunked, identity".into()));
        }
        7 => {
            m.push("duplicated transfer-encoding");
            h.push(("Transfer-Encoding".into(), "chunked".into()));
            h.push(("transfer-encoding".into(), "chunked".into()));
        }
        8 => {
            m.push("space before colon");
            h.push(("Content-Length ".into(), "0".into()));
        }
        9 => {
            m.push("obs-fold");
            h.push(("X-Fold".into(), "a\r\n b".into()));
        }
        10 => {
            m.push("plus sign length");
            h.push(("Content-Length".into(), format!("+{body_len}")));
        }
        11 => {
            m.push("connection close");
            h.push(("Connection".into(), "close".into()));
        }
        12 => {
            m.push("tab around value");
            for (k, v) in h.iter_mut() {
                if k.eq_ignore_ascii_case("transfer-encoding") {
                    *v = format!("\t{v}\t");
                }
            }
        }
        _ => {}
    }
}

fn generate(rng: &mut StdRng, case: usize) -> Case {
    let mut m = Vec::new();
    let mut bytes = Vec::new();
    let n = if rng.gen_bool(0.5) {
        1
    } else {
        rng.gen_range(2..4)
    };
    if n > 1 {
        m.push("pipelined");
    }
    for k in 0..n {
        let (mut h, body, chunked) = base(rng, case, k);
        mutate_headers(rng, &mut h, body.len(), &mut m);
        let method = if body.is_empty() && !chunked {
            "GET"
        } else {
            "POST"
        };
        let eol = match rng.gen_range(0..30) {
            0 => {
                m.push("bare LF head");
                "\n"
            }
            1 => {
                m.push("bare CR head");
                "\r"
            }
            _ => "\r\n",
        };
        let mut head = format!("{method} /c{case}/{k} HTTP/1.1{eol}");
        for (name, v) in &h {
            head.push_str(&format!("{name}: {v}{eol}"));
        }
        head.push_str(eol);
        bytes.extend_from_slice(head.as_bytes());
        if chunked {
            bytes.extend(chunk_body(rng, &body, &mut m));
        } else {
            bytes.extend_from_slice(&body);
        }
    }
    Case {
        bytes,
        mutations: m,
    }
}

/// Send one case and read until the front closes (or its header timer ends the wait).
async fn run_case(addr: std::net::SocketAddr, bytes: Vec<u8>) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    out
}

/// Where roost forwards more requests than h11 reads from the same bytes: each is a
/// documented leniency that cannot desynchronise the member, since what roost forwards
/// is re-framed by roost (checked on the member side) and agrees with h11 up to that
/// point. Returns the class, or `None` for a real disagreement.
fn allowed_extra(case: &Case, h11: &H11) -> Option<&'static str> {
    let err = h11.error.as_deref().unwrap_or("");
    let has = |what| case.mutations.contains(&what);
    if has("duplicate equal content-length") {
        // RFC 9110 §8.6 lets a recipient take `Content-Length: 5, 5` (and the same value
        // twice) as one; h11 refuses the repeat.
        return Some("equal content-lengths read as one (RFC 9110 §8.6)");
    }
    if has("content-length beside chunked") || has("transfer-encoding beside length") {
        // RFC 9112 §6.3: a server MAY read such a request as chunked if it then closes
        // the connection; roost does, h11 refuses it.
        return Some("Transfer-Encoding with Content-Length read as chunked, then close");
    }
    if has("bare LF head") && !err.is_empty() {
        return Some("bare LF ending head lines (RFC 9112 §2.2 MAY)");
    }
    None
}

/// How many of the member's `200 M` answers the client got on its connection.
fn member_answers(mut wire: &[u8]) -> usize {
    let mut n = 0;
    while let Ok(Some((r, used))) = strict::response(wire, false) {
        n += usize::from(r.status == 200 && r.body == b"M");
        wire = &wire[used..];
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roost_frames_requests_as_h11_does() {
    if !h11_available() {
        eprintln!("SKIP differential: python3 with h11 not found (pip install h11; ROOST_REQUIRE_H11=1 makes this fail instead)");
        return;
    }
    let (member, log) = recording_member().await;
    let top = "limits: {headerWaitTimeout: 300ms, bodyTimeout: 500ms}";
    let f = TestFront::start(&pool_yaml(&member.to_string(), 16, "", top)).await;
    let mut rng = StdRng::seed_from_u64(SEED);
    let cases: Vec<Case> = (0..CASES).map(|i| generate(&mut rng, i)).collect();
    // Sixteen connections at a time: each case ends with the front's header timer.
    let mut answers = Vec::new();
    for batch in cases.chunks(16) {
        let runs: Vec<_> = batch
            .iter()
            .map(|c| tokio::spawn(run_case(f.addr, c.bytes.clone())))
            .collect();
        for r in runs {
            answers.push(r.await.unwrap());
        }
    }
    let member_streams = log.lock().clone();
    let member_h11 = h11_frame(&member_streams);
    let client_h11 = h11_frame(&cases.iter().map(|c| c.bytes.clone()).collect::<Vec<_>>());

    // What the member received, by case, in arrival order (one client connection's
    // requests go one at a time, so their order is the client's).
    let mut forwarded: HashMap<usize, Vec<Framed>> = HashMap::new();
    for (bytes, h) in member_streams.iter().zip(&member_h11) {
        let (strict_reqs, _) = strict::requests(bytes);
        // A member connection may end inside a request whose client body failed: roost
        // abandons it and closes. Nothing else may be wrong with it.
        let cut_short = h
            .error
            .as_deref()
            .is_some_and(|e| e.contains("without sending complete message body"));
        assert!(
            h.error.is_none() || cut_short,
            "member bytes h11 refuses ({:?}): {:?}",
            h.error,
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(
            h.requests.len(),
            strict_reqs.len(),
            "member connection framed two ways"
        );
        for r in &h.requests {
            let case: usize = r.target[2..].split('/').next().unwrap().parse().unwrap();
            forwarded.entry(case).or_default().push(r.clone());
        }
    }
    let mut classes: HashMap<&str, usize> = HashMap::new();
    for (i, (c, h)) in cases.iter().zip(&client_h11).enumerate() {
        let mut fwd = forwarded.remove(&i).unwrap_or_default();
        // A case's requests may go up on different member connections (one taken from
        // the pool, one new), whose logs are in no particular order: the target's
        // `/c<case>/<k>` says which request each is.
        fwd.sort_by_key(|r| {
            r.target
                .rsplit('/')
                .next()
                .and_then(|k| k.parse::<usize>().ok())
                .unwrap_or(usize::MAX)
        });
        let what = format!(
            "case {i} {:?}: {:?}",
            c.mutations,
            String::from_utf8_lossy(&c.bytes)
        );
        assert_eq!(
            member_answers(&answers[i]),
            fwd.len(),
            "answers vs forwarded; {what}"
        );
        for (k, (got, want)) in fwd.iter().zip(&h.requests).enumerate() {
            assert_eq!(
                got, want,
                "request {k} forwarded unlike h11 reads it; {what}"
            );
        }
        if fwd.len() > h.requests.len() {
            let class = allowed_extra(c, h).unwrap_or_else(|| {
                panic!(
                    "roost forwarded {} requests, h11 reads {} ({:?}); {what}; forwarded {fwd:?}",
                    fwd.len(),
                    h.requests.len(),
                    h.error
                )
            });
            *classes.entry(class).or_default() += 1;
        }
    }
    eprintln!("differential: {CASES} cases; allowed disagreements: {classes:?}");
}
