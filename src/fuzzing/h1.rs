//! The codec's parsers: the client request head, the chunked decoder, the member
//! response head.

use crate::body;
use crate::front::headers::strip_hop_by_hop;
use crate::h1::reply::{self, Ask};
use crate::h1::request::{self, Framing, Head, HeadError, Scratch};
use crate::h1::{encode_request_head, parse_response, Chunked, ParseScratch, RespFraming, Step};
use bytes::BytesMut;
use http::header::{self, HeaderMap};
use http::{Method, Version};

/// The head limit the request-head target parses under (roost's default is 16 KiB; a
/// smaller one lets the fuzzer reach the 431 path with short inputs).
const MAX_HEAD: usize = 4096;

/// A client request head: parsing never panics; a head that parses consumes exactly its
/// own bytes, parses the same way when it arrives in two pieces, and the head roost
/// forwards for it (hop-by-hop headers removed, framing re-chosen) parses back to the
/// same method, target, headers and body framing.
pub fn request_head(data: &[u8]) {
    let whole = parse_request(data);
    let Ok(Some((head, used))) = whole else {
        if let Ok(None) = whole {
            assert!(
                data.len() < MAX_HEAD,
                "a partial head over the limit must be 431"
            );
        }
        return;
    };
    assert!(used <= MAX_HEAD && used <= data.len());
    // One byte short of the head is not a head yet (or, past the limit, too large).
    match parse_request(&data[..used - 1]) {
        Ok(None) | Err(HeadError::TooLarge) => {}
        Ok(Some(_)) => panic!("a head was found one byte before its end"),
        Err(HeadError::Bad(why)) => panic!("a prefix of a good head was refused: {why}"),
    }
    // The head alone parses to the same request.
    let (again, _) = parse_request(&data[..used]).unwrap().unwrap();
    assert_same_request(&head, &again);
    reencoded_head_round_trips(&head);
}

fn parse_request(data: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut buf = BytesMut::from(data);
    let head = request::parse(&mut buf, MAX_HEAD, &mut Scratch::default())?;
    Ok(head.map(|h| (h, data.len() - buf.len())))
}

fn assert_same_request(a: &Head, b: &Head) {
    assert_eq!(a.request.method(), b.request.method());
    assert_eq!(a.request.uri(), b.request.uri());
    assert_eq!(a.request.version(), b.request.version());
    assert_eq!(a.request.headers(), b.request.headers());
    assert_eq!(a.framing, b.framing);
    assert_eq!(a.keep_alive, b.keep_alive);
    assert_eq!(a.upgrade, b.upgrade);
}

/// The forward path's head (as `upstream::client` writes it) parses back as roost
/// understood the client's.
fn reencoded_head_round_trips(head: &Head) {
    let mut headers = head.request.headers().clone();
    strip_hop_by_hop(&mut headers, head.upgrade);
    // As the proxy step forwards it: origin-form, whatever form the client used.
    let target = crate::h1::forward::origin_target(head.request.uri());
    let target = target.as_str();
    let (empty, exact) = match head.framing {
        Framing::None => (true, Some(0)),
        Framing::Length(n) => (false, Some(n)),
        Framing::Chunked => (false, None),
    };
    let mut out = Vec::new();
    let method = head.request.method();
    encode_request_head(&mut out, method, target, &headers, None, empty, exact);
    let mut buf = BytesMut::from(&out[..]);
    let max = out.len() + 1;
    let back = match request::parse(&mut buf, max, &mut Scratch::default()) {
        Ok(Some(h)) => h,
        Ok(None) => panic!(
            "forwarded head is incomplete: {:?}",
            String::from_utf8_lossy(&out)
        ),
        Err(e) => panic!(
            "forwarded head refused ({e:?}): {:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert!(buf.is_empty(), "the forwarded head is one head");
    assert_eq!(back.request.method(), method);
    // An absolute-form or `*` target is forwarded as its path; anything else unchanged.
    if head.request.uri().scheme().is_none() && target != "/" {
        assert_eq!(back.request.uri(), head.request.uri());
    }
    let same_framing = match (head.framing, back.framing) {
        (a, b) if a == b => true,
        // A body-less POST/PUT/PATCH is forwarded with `content-length: 0`: still no body.
        (Framing::None, Framing::None) => true,
        _ => false,
    };
    assert!(
        same_framing,
        "framing {:?} forwarded as {:?}: {:?}",
        head.framing,
        back.framing,
        String::from_utf8_lossy(&out)
    );
    let mut forwarded = back.request.headers().clone();
    if head.framing == Framing::Chunked {
        forwarded.remove(header::TRANSFER_ENCODING);
    }
    if !headers.contains_key(header::CONTENT_LENGTH) {
        forwarded.remove(header::CONTENT_LENGTH);
    }
    assert_eq!(
        forwarded, headers,
        "headers changed on the way to the member"
    );
}

/// Everything a chunked decoder made of one input: the body, how it ended, and how many
/// input bytes it consumed.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    body: Vec<u8>,
    /// `Some(true)` done, `Some(false)` refused, `None` still wants more.
    ended: Option<bool>,
    consumed: usize,
}

fn decode(pieces: &[&[u8]]) -> Decoded {
    let mut dec = Chunked::Size;
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    for piece in pieces {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match dec.step(&mut buf) {
                Ok(Step::Data(d)) => {
                    assert!(!d.is_empty(), "an empty data step");
                    body.extend_from_slice(&d);
                }
                Ok(Step::More) => break,
                Ok(Step::Done) => {
                    let consumed = fed - buf.len();
                    return Decoded {
                        body,
                        ended: Some(true),
                        consumed,
                    };
                }
                Err(_) => {
                    let consumed = fed - buf.len();
                    return Decoded {
                        body,
                        ended: Some(false),
                        consumed,
                    };
                }
            }
        }
    }
    Decoded {
        body,
        ended: None,
        consumed: fed - buf.len(),
    }
}

/// The chunked decoder (both sides use it): the body it yields never exceeds the input
/// it consumed, it never consumes bytes after the body's end, and cutting the input at
/// any point (one byte at a time for short inputs) decodes to the same body, the same
/// ending and the same count of consumed bytes. A body it accepts, chunked again by
/// roost's encoder, decodes to itself.
pub fn chunked(data: &[u8]) {
    let whole = decode(&[data]);
    assert!(whole.body.len() <= whole.consumed, "more body than input");
    assert!(whole.consumed <= data.len());
    let cuts: Vec<usize> = if data.len() <= 64 {
        (1..data.len()).collect()
    } else {
        (1..16).map(|i| data.len() * i / 16).collect()
    };
    for cut in cuts {
        let split = decode(&[&data[..cut], &data[cut..]]);
        assert_eq!(split, whole, "input cut at {cut} decodes differently");
    }
    if data.len() <= 512 {
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(decode(&bytes), whole, "byte-at-a-time decodes differently");
    }
    if whole.ended == Some(true) {
        let mut wire = Vec::new();
        for piece in whole.body.chunks(7) {
            wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            wire.extend_from_slice(piece);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let again = decode(&[&wire]);
        assert_eq!(again.body, whole.body);
        assert_eq!((again.ended, again.consumed), (Some(true), wire.len()));
    }
}

/// A member's response head (first byte picks the request method: HEAD or GET): parsing
/// never panics; a parsed head's framing follows RFC 9112 §6.3 (no length beside a
/// transfer-coding, nothing for HEAD/204/304, a close-delimited body ends the connection);
/// and the head roost writes to the client for it carries at most one framing header.
pub fn response_head(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let method = if first & 1 == 1 {
        Method::HEAD
    } else {
        Method::GET
    };
    let mut buf = BytesMut::from(rest);
    let Ok(Some(head)) = parse_response(&mut buf, &method, &mut ParseScratch::default()) else {
        return;
    };
    assert!(buf.len() <= rest.len());
    let h = &head.headers;
    if h.contains_key(header::TRANSFER_ENCODING) {
        assert!(
            !h.contains_key(header::CONTENT_LENGTH),
            "length beside a coding"
        );
    }
    let bodiless = method == Method::HEAD || head.status == 204 || head.status == 304;
    if bodiless && head.status != 101 {
        assert_eq!(head.framing, crate::h1::RespFraming::Length(0));
    }
    if matches!(head.framing, RespFraming::Eof | RespFraming::Upgrade) {
        assert!(!head.keep_alive);
    }
    assert!(!head.status.is_informational() || head.status == 101);
    client_head_is_framed_once(head.status, h, &method, head.version);
}

fn client_head_is_framed_once(
    status: http::StatusCode,
    member: &HeaderMap,
    method: &Method,
    version: Version,
) {
    let mut headers = member.clone();
    strip_hop_by_hop(&mut headers, false);
    let ask = Ask {
        head_method: *method == Method::HEAD,
        version,
        keep_alive: true,
    };
    let mut out = Vec::new();
    let (framing, _) = reply::encode_head(&mut out, status, &headers, &body::empty(), &ask);
    // roost adds `date` and a length: a head near the member-side limit of 128 headers
    // then exceeds it, which says nothing about the head's framing.
    if headers.len() > 120 {
        return;
    }
    let mut buf = BytesMut::from(&out[..]);
    let back = parse_response(&mut buf, method, &mut ParseScratch::default())
        .unwrap_or_else(|e| panic!("roost's own head refused ({e}): {:?}", lossy(&out)))
        .unwrap_or_else(|| panic!("roost's own head incomplete: {:?}", lossy(&out)));
    assert!(buf.is_empty());
    let lengths = back.headers.get_all(header::CONTENT_LENGTH).iter().count();
    let codings = back
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .count();
    assert!(lengths + codings <= 1, "framed twice: {:?}", lossy(&out));
    let agrees = match (framing, back.framing) {
        (reply::Framing::None, RespFraming::Length(0)) => true,
        (reply::Framing::Length(n), RespFraming::Length(m)) => n == m || ask.head_method,
        (reply::Framing::Chunked, RespFraming::Chunked) => true,
        (reply::Framing::Close, RespFraming::Eof) => true,
        (_, RespFraming::Upgrade) => status == 101,
        _ => false,
    };
    assert!(
        agrees,
        "wrote {framing:?}, reads as {:?}: {:?}",
        back.framing,
        lossy(&out)
    );
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
