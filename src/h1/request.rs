//! A client's request head off the wire (httparse) into `http` types, with the framing
//! rules a proxy must enforce before anything is forwarded (RFC 9112 §6, reliability.md
//! §2: request smuggling).

use super::fields::{cached_name, connection_tokens, locate, parse_length, ParseScratch, Span};
use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Uri, Version};
use std::mem::MaybeUninit;

/// Header lines a request may carry (hyper's and HAProxy's default is 100; more is 431).
pub const MAX_HEADERS: usize = 100;

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (no `Content-Length`, no `Transfer-Encoding`, or a length of 0).
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head and what the connection needs to know about it.
pub struct Head {
    pub request: Request<()>,
    pub framing: Framing,
    /// The client allows another request on this connection after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a `100 Continue` before its body.
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` header (WebSocket and the like).
    pub upgrade: bool,
}

/// Why a head was refused; each maps to the status a client gets before the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Larger than `maxRequestHeaderBytes`, or more than [`MAX_HEADERS`] lines: 431.
    TooLarge,
    /// Not HTTP, or framing that two parsers could read differently: 400.
    Bad(&'static str),
}

/// What a connection keeps between request heads (the same as a member connection keeps
/// between response heads): header positions and the previous head's header names.
pub type Scratch = ParseScratch;

/// Parse a request head from the front of `buf` and split it off. `Ok(None)`: it is not
/// all here yet (and `buf` is still under `max`).
pub fn parse(
    buf: &mut BytesMut,
    max: usize,
    scratch: &mut Scratch,
) -> Result<Option<Head>, HeadError> {
    let ParseScratch { spans, names } = scratch;
    let Some(line) = request_line(buf, max, spans)? else {
        return Ok(None);
    };
    // Every value below is a slice of this one buffer: no copy per header.
    let head = buf.split_to(line.len).freeze();
    let (ps, pl) = line.path_span;
    let target = head.slice(ps..ps + pl);
    // RFC 9112 §3.2: a request target has no fragment. `Uri` would drop `#…` silently and
    // the member would get a different target than a parser that keeps it (fuzz target
    // `front_e2e`, `fuzz/corpus/front_e2e/regress-fragment-in-target`).
    if target.contains(&b'#') {
        return Err(HeadError::Bad("fragment in request target"));
    }
    let uri = Uri::from_maybe_shared(target).map_err(|_| HeadError::Bad("bad request target"))?;
    let version = line.version;
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut seen = Seen {
        close: version == Version::HTTP_10,
        ..Seen::default()
    };
    for (i, &(ns, ne, vs, ve)) in spans.iter().enumerate() {
        let raw_name = &head[ns as usize..ne as usize];
        let name = cached_name(names, i, raw_name).ok_or(HeadError::Bad("bad header name"))?;
        if !seen.field(&name, &head[vs as usize..ve as usize], version)? {
            continue;
        }
        // SAFETY: httparse accepted the value, and it accepts only what `HeaderValue`
        // allows (no CR, LF, NUL or other control bytes but tab); hyper relies on the
        // same.
        let value = unsafe {
            HeaderValue::from_maybe_shared_unchecked(head.slice(vs as usize..ve as usize))
        };
        headers.append(name, value);
    }
    let framing = seen.framing(version, &mut headers)?;
    let mut request = Request::new(());
    *request.method_mut() = line.method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some(Head {
        request,
        framing,
        keep_alive: !seen.close,
        expect_continue: seen.expect_continue && version == Version::HTTP_11,
        upgrade: seen.conn_upgrade && seen.has_upgrade && version == Version::HTTP_11,
    }))
}

/// The request line of a complete head, with the header positions in `spans`.
struct RequestLine {
    /// The head's length in the buffer.
    len: usize,
    version: Version,
    method: Method,
    /// (offset, length) of the request target.
    path_span: (usize, usize),
}

/// Run httparse over `buf`. `Ok(None)`: incomplete and still under `max`.
fn request_line(
    buf: &BytesMut,
    max: usize,
    spans: &mut Vec<Span>,
) -> Result<Option<RequestLine>, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max {
                return Err(HeadError::TooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Bad("malformed request head")),
    };
    if len > max {
        return Err(HeadError::TooLarge);
    }
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Bad("bad method"))?;
    let base = buf.as_ptr() as usize;
    let path = req.path.unwrap_or_default();
    let path_span = (path.as_ptr() as usize - base, path.len());
    locate(spans, req.headers, base);
    Ok(Some(RequestLine {
        len,
        version,
        method,
        path_span,
    }))
}

/// What the header fields said about framing and the connection.
#[derive(Default)]
struct Seen {
    close: bool,
    conn_upgrade: bool,
    has_upgrade: bool,
    expect_continue: bool,
    /// `Some(final coding is chunked)`.
    te: Option<bool>,
    length: Option<u64>,
}

impl Seen {
    /// Note one field. `Ok(false)`: leave it out of the request (a repeated equal
    /// `Content-Length`).
    fn field(
        &mut self,
        name: &header::HeaderName,
        raw: &[u8],
        version: Version,
    ) -> Result<bool, HeadError> {
        if name == header::CONNECTION {
            self.conn_upgrade |= connection_tokens(raw, version, &mut self.close);
        } else if name == header::TRANSFER_ENCODING {
            // More than one Transfer-Encoding line, or a final coding other than
            // chunked, cannot be framed unambiguously (RFC 9112 §6.3): refused.
            if self.te.is_some() {
                return Err(HeadError::Bad("repeated transfer-encoding"));
            }
            self.te = Some(
                raw.rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked")),
            );
        } else if name == header::CONTENT_LENGTH {
            let n = parse_length(raw).ok_or(HeadError::Bad("bad content-length"))?;
            match self.length {
                Some(l) if l != n => return Err(HeadError::Bad("conflicting content-length")),
                // The same length again is one length (RFC 9110 §8.6), forwarded once: a
                // member may refuse the repeat (nginx does).
                Some(_) => return Ok(false),
                None => self.length = Some(n),
            }
        } else if name == header::UPGRADE {
            self.has_upgrade = true;
        } else if name == header::EXPECT {
            self.expect_continue = raw.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        Ok(true)
    }

    /// How the body is delimited, or why it cannot be told safely.
    fn framing(&mut self, version: Version, headers: &mut HeaderMap) -> Result<Framing, HeadError> {
        Ok(match (self.te, self.length) {
            (Some(_), _) if version == Version::HTTP_10 => {
                return Err(HeadError::Bad("transfer-encoding in HTTP/1.0"))
            }
            (Some(false), _) => return Err(HeadError::Bad("final transfer-coding is not chunked")),
            (Some(true), Some(_)) => {
                // Both: Transfer-Encoding frames the body, the length is dropped so
                // nothing further down reads it, and the connection closes after the
                // response (RFC 9112 §6.1; what hyper did here, and HAProxy).
                headers.remove(header::CONTENT_LENGTH);
                self.close = true;
                Framing::Chunked
            }
            (Some(true), None) => Framing::Chunked,
            (None, Some(0)) | (None, None) => Framing::None,
            (None, Some(n)) => Framing::Length(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Option<Head>, HeadError> {
        let mut buf = BytesMut::from(s);
        parse(&mut buf, 16 * 1024, &mut Scratch::default())
    }

    fn bad(s: &str) -> bool {
        matches!(parse_str(s), Err(HeadError::Bad(_)))
    }

    #[test]
    fn parses_a_head_and_leaves_the_rest() {
        let mut buf = BytesMut::from("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Y: z\r\n\r\nGET /next");
        let mut scratch = Scratch::default();
        let h = parse(&mut buf, 16 * 1024, &mut scratch).unwrap().unwrap();
        assert_eq!(h.request.method(), Method::GET);
        assert_eq!(h.request.uri(), "/a?b=1");
        assert_eq!(h.request.headers()["host"], "x");
        assert_eq!(h.request.headers()["x-y"], "z");
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive);
        assert_eq!(&buf[..], b"GET /next");
        // The next head, partial: not yet.
        assert!(parse(&mut buf, 16 * 1024, &mut scratch).unwrap().is_none());
        // The same names again come from the cache and stay right when they differ.
        let mut buf = BytesMut::from("GET / HTTP/1.1\r\nHost: y\r\nX-Other: w\r\n\r\n");
        let h = parse(&mut buf, 16 * 1024, &mut scratch).unwrap().unwrap();
        assert_eq!(h.request.headers()["x-other"], "w");
        assert!(!h.request.headers().contains_key("x-y"));
    }

    #[test]
    fn framing_and_connection_rules() {
        let h = parse_str("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        let h = parse_str("POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = parse_str("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse_str("GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = parse_str("GET / HTTP/1.1\r\nconnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = parse_str("GET / HTTP/1.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.upgrade);
        let h = parse_str("PUT / HTTP/1.1\r\nexpect: 100-Continue\r\ncontent-length: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.expect_continue);
    }

    #[test]
    fn a_fragment_in_the_request_target_is_refused() {
        // `Uri` would drop it and forward `/`: a target the member must not get changed.
        assert!(bad("GET /#a HTTP/1.1\r\nhost: x\r\n\r\n"));
        assert!(bad("GET /a?b#c HTTP/1.1\r\nhost: x\r\n\r\n"));
        assert!(bad("GET http://x/a#b HTTP/1.1\r\nhost: x\r\n\r\n"));
        assert!(parse_str("GET /a?b=%23 HTTP/1.1\r\nhost: x\r\n\r\n").is_ok());
    }

    #[test]
    fn ambiguous_or_malformed_heads_are_refused() {
        assert!(bad(
            "POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n"
        ));
        assert!(bad("POST / HTTP/1.1\r\ncontent-length: +5\r\n\r\n"));
        assert!(bad(
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n"
        ));
        assert!(bad(
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n"
        ));
        assert!(bad("POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n"));
        assert!(bad("GET / HTTP/1.1\r\nhost : x\r\n\r\n"));
        assert!(bad("GET / HTTP/1.1\r\nx: a\r\n folded\r\n\r\n"));
        assert!(bad("GARBAGE\r\n\r\n"));
        // Equal repeated lengths are one length (RFC 9110 §8.6).
        let h = parse_str("POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert_eq!(
            h.request.headers().get_all("content-length").iter().count(),
            1
        );
    }

    #[test]
    fn chunked_wins_over_a_length_and_closes() {
        let h =
            parse_str("POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.request.headers().contains_key("content-length"));
        assert!(!h.keep_alive);
    }

    #[test]
    fn oversized_heads_are_431() {
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(20 * 1024));
        assert_eq!(parse_str(&big).err(), Some(HeadError::TooLarge));
        let partial = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(20 * 1024));
        assert_eq!(parse_str(&partial).err(), Some(HeadError::TooLarge));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("x{i}: 1\r\n"))
            .collect();
        assert_eq!(
            parse_str(&format!("GET / HTTP/1.1\r\n{many}\r\n")).err(),
            Some(HeadError::TooLarge)
        );
    }
}
