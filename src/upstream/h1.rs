//! HTTP/1.1 on the wire to a member: the request head roost writes, the response head it
//! parses (httparse), and how the response body is framed and decoded.
//!
//! This is the upstream half only. The client side of the front stays on hyper's server;
//! the member side is this small codec so a proxied request runs start to end inside the
//! client connection's task (no connection task, no channels between them).

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use std::io;

/// The largest response head accepted from a member (HTTP.sys and nginx use 8–64 KiB).
pub const MAX_HEAD: usize = 64 * 1024;
/// Headers a member's response may carry.
const MAX_HEADERS: usize = 128;

/// How the request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqFraming {
    /// No body at all (GET without one).
    None,
    /// `content-length` is in the head (the client's, or added here).
    Length,
    /// `transfer-encoding: chunked` (length unknown: an HTTP/2 client, a chunked upload).
    Chunked,
}

/// What roost adds to a request it forwards: written by the encoder in place of any
/// header of the same name the client sent, so the request's header map is never
/// rewritten (no rehash, no insert) on the proxy path.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// `Host` (and `X-Forwarded-Host`): the host the request was routed by.
    pub host: Option<HeaderValue>,
    /// `X-Forwarded-For`: the client's value, if any, then the peer address.
    pub forwarded_for: Option<HeaderValue>,
    /// `X-Forwarded-Proto`.
    pub proto: HeaderValue,
}

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static VIA_VALUE: HeaderValue = HeaderValue::from_static("1.1 roost");

impl Forwarded {
    /// Does this replace the client's header `name`?
    fn replaces(&self, name: &HeaderName) -> bool {
        (self.host.is_some() && (name == header::HOST || name == X_FORWARDED_HOST))
            || name == X_FORWARDED_FOR
            || name == X_FORWARDED_PROTO
    }

    /// The headers after forwarding, as a map: what the member receives (tests, and any
    /// caller that is not writing HTTP/1.1 itself).
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        let mut kept = HeaderMap::with_capacity(headers.len() + 5);
        if let Some(h) = &self.host {
            kept.insert(header::HOST, h.clone());
        }
        for (name, value) in headers.iter() {
            if !self.replaces(name) {
                kept.append(name.clone(), value.clone());
            }
        }
        for (name, value) in self.extra() {
            kept.append(name.clone(), value.clone());
        }
        *headers = kept;
    }

    /// The headers written after the client's own.
    fn extra(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        let host = self.host.iter().map(|h| (&X_FORWARDED_HOST, h));
        let xff = self.forwarded_for.iter().map(|v| (&X_FORWARDED_FOR, v));
        host.chain(xff)
            .chain(std::iter::once((&X_FORWARDED_PROTO, &self.proto)))
            .chain(std::iter::once((&header::VIA, &VIA_VALUE)))
    }
}

fn put_header(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Write the request head into `out`. `headers` have had hop-by-hop headers removed;
/// `fwd`, when given, adds the forwarding headers (and `Host` first, as RFC 9110 asks).
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    fwd: Option<&Forwarded>,
    body_empty: bool,
    exact_len: Option<u64>,
) -> ReqFraming {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    match fwd {
        Some(f) => {
            if let Some(h) = &f.host {
                put_header(out, &header::HOST, h);
            }
            for (name, value) in headers {
                if !f.replaces(name) {
                    put_header(out, name, value);
                }
            }
            for (name, value) in f.extra() {
                put_header(out, name, value);
            }
        }
        None => {
            for (name, value) in headers {
                put_header(out, name, value);
            }
        }
    }
    let framing = if headers.contains_key(header::CONTENT_LENGTH) {
        // hyper's server checked the client's length against the body it delivers.
        ReqFraming::Length
    } else if body_empty {
        // Methods that normally carry a body say it is empty, as hyper's client does.
        if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            out.extend_from_slice(b"content-length: 0\r\n");
            ReqFraming::Length
        } else {
            ReqFraming::None
        }
    } else if let Some(n) = exact_len {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
        ReqFraming::Length
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        ReqFraming::Chunked
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// A parsed response head.
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: RespFraming,
    /// The connection can carry another request once this body has been read.
    pub keep_alive: bool,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespFraming {
    /// Exactly this many bytes (0 for HEAD, 204, 304).
    Length(u64),
    Chunked,
    /// Until the member closes the connection (no length, not chunked).
    Eof,
    /// `101 Switching Protocols`: the connection becomes a tunnel.
    Upgrade,
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Where one header sits in the head: name and value as byte ranges.
pub(crate) type Span = (u32, u32, u32, u32);

/// What a connection keeps between heads (responses from a member here, requests from
/// a client in the front's HTTP/1.1 server) so parsing the next one allocates nothing
/// and recognises the same header names cheaply.
#[derive(Default)]
pub struct ParseScratch {
    pub(crate) spans: Vec<Span>,
    /// The previous head's header names as sent and as parsed, in order: a peer sends
    /// the same names in the same order message after message, and comparing bytes
    /// (`memcmp`) is cheaper than `HeaderName::from_bytes`.
    pub(crate) names: Vec<(Box<[u8]>, HeaderName)>,
}

/// Remember where each of `headers` sits relative to `base` (the start of the buffer
/// they were parsed from), so the buffer can be frozen once and every value sliced.
pub(crate) fn locate(spans: &mut Vec<Span>, headers: &[httparse::Header<'_>], base: usize) {
    spans.clear();
    spans.extend(headers.iter().map(|h| {
        let n = h.name.as_ptr() as usize - base;
        let v = h.value.as_ptr() as usize - base;
        (
            n as u32,
            (n + h.name.len()) as u32,
            v as u32,
            (v + h.value.len()) as u32,
        )
    }));
}

/// Apply a `Connection` value's tokens to `close` (`close`, and HTTP/1.0's `keep-alive`);
/// returns whether it names `upgrade`. Shared by the client and member head parsers.
pub(crate) fn connection_tokens(raw: &[u8], version: Version, close: &mut bool) -> bool {
    let mut upgrade = false;
    for token in raw.split(|&b| b == b',') {
        let t = token.trim_ascii();
        if t.eq_ignore_ascii_case(b"close") {
            *close = true;
        } else if t.eq_ignore_ascii_case(b"keep-alive") && version == Version::HTTP_10 {
            *close = false;
        } else if t.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        }
    }
    upgrade
}

/// The `i`th header's name: the cached one when the same bytes were there last time.
/// `None`: not a valid header name.
pub(crate) fn cached_name(
    names: &mut Vec<(Box<[u8]>, HeaderName)>,
    i: usize,
    raw: &[u8],
) -> Option<HeaderName> {
    match names.get(i) {
        Some((cached, n)) if **cached == *raw => Some(n.clone()),
        _ => {
            let n = HeaderName::from_bytes(raw).ok()?;
            names.truncate(i);
            names.push((raw.into(), n.clone()));
            Some(n)
        }
    }
}

/// Parse a response head from the front of `buf`. `Ok(None)`: not all of it is here yet.
/// Interim responses (`100 Continue`, `103 Early Hints`) are consumed and skipped.
/// `spans` is scratch space the caller keeps between calls (no allocation per response).
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
    scratch: &mut ParseScratch,
) -> io::Result<Option<Head>> {
    let ParseScratch { spans, names } = scratch;
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        let mut slots =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(invalid("response head too large"));
                }
                return Ok(None);
            }
            Err(_) => return Err(invalid("malformed response head")),
        };
        let code = resp.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| invalid("bad status code"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            buf.advance(len);
            continue;
        }
        let version = if resp.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // Remember where each header is, then freeze the head once: every value is a
        // slice of that one buffer, no copy per header.
        locate(spans, resp.headers, buf.as_ptr() as usize);
        let head_bytes = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(spans.len());
        let mut close = version == Version::HTTP_10;
        let mut chunked = false;
        let mut te = false;
        let mut length: Option<u64> = None;
        for (i, &(ns, ne, vs, ve)) in spans.iter().enumerate() {
            let raw_name = &head_bytes[ns as usize..ne as usize];
            let name = cached_name(names, i, raw_name).ok_or_else(|| invalid("bad header name"))?;
            let raw = &head_bytes[vs as usize..ve as usize];
            if name == header::CONNECTION {
                connection_tokens(raw, version, &mut close);
            } else if name == header::TRANSFER_ENCODING {
                te = true;
                // Only a final `chunked` frames the body; anything else reads to EOF.
                chunked = raw
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name == header::CONTENT_LENGTH {
                let n = std::str::from_utf8(raw)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| invalid("bad content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(invalid("conflicting content-length"));
                }
                length = Some(n);
            }
            // SAFETY: httparse accepted the value, and it accepts only what `HeaderValue`
            // allows (no CR, LF, NUL or other control bytes but tab); hyper relies on the
            // same.
            let value = unsafe {
                HeaderValue::from_maybe_shared_unchecked(head_bytes.slice(vs as usize..ve as usize))
            };
            headers.append(name, value);
        }
        if te && length.is_some() {
            // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and a proxy must
            // not pass the length on (the client would frame the body by it).
            headers.remove(header::CONTENT_LENGTH);
        }
        let framing = if status == StatusCode::SWITCHING_PROTOCOLS {
            RespFraming::Upgrade
        } else if *method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            RespFraming::Length(0)
        } else if te {
            if chunked {
                RespFraming::Chunked
            } else {
                RespFraming::Eof
            }
        } else if let Some(n) = length {
            RespFraming::Length(n)
        } else {
            RespFraming::Eof
        };
        // A body read to EOF, or a tunnel, ends the connection's life as HTTP.
        let keep_alive = !close && !matches!(framing, RespFraming::Eof | RespFraming::Upgrade);
        return Ok(Some(Head {
            status,
            version,
            headers,
            framing,
            keep_alive,
        }));
    }
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a `size[;ext]\r\n` line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// After a chunk's data, expecting `\r\n`.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

/// What one decoding step produced.
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// Needs more input.
    More,
    /// The body is complete.
    Done,
}

impl Chunked {
    /// Decode from `buf` as far as it goes. Trailers are read and dropped (HTTP/1.1
    /// clients of a proxy rarely get them and hyper's server sends none for us).
    pub fn step(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(eol) = find_crlf(buf) else {
                        if buf.len() > 4096 {
                            return Err(invalid("chunk size line too long"));
                        }
                        return Ok(Step::More);
                    };
                    let line = &buf[..eol];
                    let hex = line
                        .split(|&b| b == b';')
                        .next()
                        .unwrap_or_default()
                        .trim_ascii();
                    if hex.is_empty() || hex.len() > 16 {
                        return Err(invalid("bad chunk size"));
                    }
                    let mut size: u64 = 0;
                    for &b in hex {
                        let d = (b as char)
                            .to_digit(16)
                            .ok_or_else(|| invalid("bad chunk size"))?;
                        size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(d as u64))
                            .ok_or_else(|| invalid("chunk size overflow"))?;
                    }
                    buf.advance(eol + 2);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = (left as usize).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Step::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(invalid("missing CRLF after chunk"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    let Some(eol) = find_crlf(buf) else {
                        if buf.len() > MAX_HEAD {
                            return Err(invalid("trailers too large"));
                        }
                        return Ok(Step::More);
                    };
                    buf.advance(eol + 2);
                    if eol == 0 {
                        *self = Chunked::Done;
                        return Ok(Step::Done);
                    }
                }
                Chunked::Done => return Ok(Step::Done),
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], method: Method) -> (Head, BytesMut) {
        let mut buf = BytesMut::from(raw);
        let head = parse_response(&mut buf, &method, &mut ParseScratch::default())
            .unwrap()
            .unwrap();
        (head, buf)
    }

    #[test]
    fn request_head_frames_the_body_as_hyper_would() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        let mut out = Vec::new();
        let f = encode_request_head(&mut out, &Method::GET, "/x?y=1", &h, None, true, Some(0));
        assert_eq!(f, ReqFraming::None);
        assert_eq!(out, b"GET /x?y=1 HTTP/1.1\r\nhost: a\r\n\r\n");

        out.clear();
        let f = encode_request_head(&mut out, &Method::POST, "/", &h, None, true, Some(0));
        assert_eq!(f, ReqFraming::Length);
        assert!(out.ends_with(b"content-length: 0\r\n\r\n"));

        out.clear();
        let f = encode_request_head(&mut out, &Method::POST, "/", &h, None, false, Some(12));
        assert_eq!(f, ReqFraming::Length);
        assert!(out.ends_with(b"content-length: 12\r\n\r\n"));

        out.clear();
        let f = encode_request_head(&mut out, &Method::POST, "/", &h, None, false, None);
        assert_eq!(f, ReqFraming::Chunked);
        assert!(out.ends_with(b"transfer-encoding: chunked\r\n\r\n"));

        out.clear();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
        let f = encode_request_head(&mut out, &Method::PUT, "/", &h, None, false, None);
        assert_eq!(f, ReqFraming::Length);
        assert_eq!(
            out.windows(17)
                .filter(|w| w == b"content-length: 7")
                .count(),
            1
        );
    }

    #[test]
    fn forwarding_headers_are_written_as_apply_to_says() {
        let mut h = HeaderMap::new();
        h.append(header::HOST, HeaderValue::from_static("a.example"));
        h.append(header::HOST, HeaderValue::from_static("b.example"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-proto", HeaderValue::from_static("gopher"));
        h.append("x-forwarded-host", HeaderValue::from_static("spoofed"));
        h.append("x-kept", HeaderValue::from_static("1"));
        h.append(header::VIA, HeaderValue::from_static("1.0 other"));
        let fwd = Forwarded {
            host: Some(HeaderValue::from_static("a.example")),
            forwarded_for: Some(HeaderValue::from_static("10.0.0.1, 127.0.0.1")),
            proto: HeaderValue::from_static("https"),
        };
        let mut out = Vec::new();
        encode_request_head(&mut out, &Method::GET, "/", &h, Some(&fwd), true, None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nhost: a.example\r\nx-kept: 1\r\nvia: 1.0 other\r\n\
             x-forwarded-host: a.example\r\nx-forwarded-for: 10.0.0.1, 127.0.0.1\r\n\
             x-forwarded-proto: https\r\nvia: 1.1 roost\r\n\r\n"
        );
        fwd.apply_to(&mut h);
        assert_eq!(h.get_all(header::HOST).iter().count(), 1);
        assert_eq!(h["host"], "a.example");
        assert_eq!(h["x-forwarded-host"], "a.example");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        let via: Vec<_> = h.get_all(header::VIA).iter().collect();
        assert_eq!(via, ["1.0 other", "1.1 roost"]);

        // No host known: the client's Host and X-Forwarded-Host pass through untouched.
        let fwd = Forwarded {
            host: None,
            forwarded_for: None,
            proto: HeaderValue::from_static("http"),
        };
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("c.example"));
        h.insert("x-forwarded-host", HeaderValue::from_static("d.example"));
        fwd.apply_to(&mut h);
        assert_eq!(h["host"], "c.example");
        assert_eq!(h["x-forwarded-host"], "d.example");
        assert!(h.get("x-forwarded-for").is_none());
    }

    #[test]
    fn response_heads_and_their_framing() {
        let (h, rest) = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            Method::GET,
        );
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, RespFraming::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.headers["x-a"], "b");
        assert_eq!(&rest[..], b"hello");

        let (h, _) = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            Method::HEAD,
        );
        assert_eq!(h.framing, RespFraming::Length(0));

        let (h, _) = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, RespFraming::Chunked);

        let (h, _) = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, RespFraming::Chunked);
        assert!(
            !h.headers.contains_key(header::CONTENT_LENGTH),
            "a length beside chunked is not passed on"
        );

        let (h, _) = parse(b"HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!(h.framing, RespFraming::Eof);
        assert!(!h.keep_alive);

        let (h, _) = parse(
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, RespFraming::Length(0));
        assert!(!h.keep_alive);

        let (h, _) = parse(
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
            Method::GET,
        );
        assert!(h.keep_alive);
        assert_eq!(h.version, Version::HTTP_10);

        let (h, rest) = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nxx",
            Method::GET,
        );
        assert_eq!(h.status, 101);
        assert_eq!(h.framing, RespFraming::Upgrade);
        assert_eq!(&rest[..], b"xx");
    }

    #[test]
    fn header_names_remembered_between_responses_stay_right() {
        let mut scratch = ParseScratch::default();
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n"[..]);
        let h = parse_response(&mut buf, &Method::GET, &mut scratch)
            .unwrap()
            .unwrap();
        assert_eq!(h.headers["x-a"], "1");
        // Same names in another case, then a different name in second place, then more.
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\ncontent-LENGTH: 0\r\nX-B: 2\r\nX-A: 3\r\n\r\n"[..],
        );
        let h = parse_response(&mut buf, &Method::GET, &mut scratch)
            .unwrap()
            .unwrap();
        let names: Vec<_> = h.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-length", "x-b", "x-a"]);
        assert_eq!(h.headers["x-b"], "2");
        assert_eq!(h.headers["x-a"], "3");
        // A name that only resembles a remembered one is parsed for itself.
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Lengthy: 0\r\n\r\n"[..]);
        let h = parse_response(&mut buf, &Method::GET, &mut scratch)
            .unwrap()
            .unwrap();
        assert!(h.headers.contains_key("content-lengthy"));
        assert_eq!(h.framing, RespFraming::Eof);
    }

    #[test]
    fn partial_and_bad_heads() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(
            parse_response(&mut buf, &Method::GET, &mut ParseScratch::default())
                .unwrap()
                .is_none()
        );
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
        );
        assert!(parse_response(&mut buf, &Method::GET, &mut ParseScratch::default()).is_err());
        let mut buf = BytesMut::from(&b"garbage\r\n\r\n"[..]);
        assert!(parse_response(&mut buf, &Method::GET, &mut ParseScratch::default()).is_err());
    }

    #[test]
    fn chunked_bodies_decode_across_reads() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        // Feed one byte at a time: every state must cope with a split anywhere.
        let mut dec = Chunked::Size;
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut done = false;
        for &b in wire.iter() {
            buf.extend_from_slice(&[b]);
            loop {
                match dec.step(&mut buf).unwrap() {
                    Step::Data(d) => body.extend_from_slice(&d),
                    Step::More => break,
                    Step::Done => {
                        done = true;
                        break;
                    }
                }
            }
            if done {
                break;
            }
        }
        assert!(done);
        assert_eq!(body, b"hello world");
        assert!(buf.is_empty(), "nothing after the body is consumed");

        let mut dec = Chunked::Size;
        let mut buf = BytesMut::from(&b"zz\r\n"[..]);
        assert!(dec.step(&mut buf).is_err());
        let mut dec = Chunked::Size;
        let mut buf = BytesMut::from(&b"3\r\nabcXY"[..]);
        assert!(matches!(dec.step(&mut buf).unwrap(), Step::Data(_)));
        assert!(dec.step(&mut buf).is_err());
    }
}
