//! A member's response head off the wire (httparse) and how its body is framed. As strict
//! as the client side: a member that breaks HTTP gets a 502 (`BadGateway`), never a
//! guess that could frame the body differently from what the member meant.

use super::fields::{
    cached_name, connection_tokens, invalid, locate, parse_length, ParseScratch, Span,
};
use bytes::{Buf, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Version};
use std::io;

/// The largest response head accepted from a member (HTTP.sys and nginx use 8–64 KiB).
pub const MAX_HEAD: usize = 64 * 1024;
/// Headers a member's response may carry.
const MAX_HEADERS: usize = 128;

/// A parsed response head.
pub struct ResponseHead {
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

/// Parse a response head from the front of `buf`. `Ok(None)`: not all of it is here yet.
/// Interim responses (`100 Continue`, `103 Early Hints`) are consumed and skipped.
/// `spans` is scratch space the caller keeps between calls (no allocation per response).
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
    scratch: &mut ParseScratch,
) -> io::Result<Option<ResponseHead>> {
    let ParseScratch { spans, names } = scratch;
    let Some((len, status, version)) = status_line(buf, spans)? else {
        return Ok(None);
    };
    // Every value is a slice of this one buffer, no copy per header.
    let head_bytes = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut seen = Seen {
        close: version == Version::HTTP_10,
        ..Seen::default()
    };
    for (i, &(ns, ne, vs, ve)) in spans.iter().enumerate() {
        let raw_name = &head_bytes[ns as usize..ne as usize];
        let name = cached_name(names, i, raw_name).ok_or_else(|| invalid("bad header name"))?;
        seen.field(&name, &head_bytes[vs as usize..ve as usize], version)?;
        // SAFETY: httparse accepted the value, and it accepts only what `HeaderValue`
        // allows (no CR, LF, NUL or other control bytes but tab); hyper relies on the
        // same.
        let value = unsafe {
            HeaderValue::from_maybe_shared_unchecked(head_bytes.slice(vs as usize..ve as usize))
        };
        headers.append(name, value);
    }
    if seen.te && seen.length.is_some() {
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and a proxy must
        // not pass the length on (the client would frame the body by it).
        headers.remove(header::CONTENT_LENGTH);
    }
    let framing = seen.framing(status, version, method)?;
    // A body read to EOF, or a tunnel, ends the connection's life as HTTP.
    let keep_alive = !seen.close && !matches!(framing, RespFraming::Eof | RespFraming::Upgrade);
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// Parse status lines until a final one (interim responses are consumed), its header
/// positions in `spans`. `Ok(None)`: not all here yet.
fn status_line(
    buf: &mut BytesMut,
    spans: &mut Vec<Span>,
) -> io::Result<Option<(usize, StatusCode, Version)>> {
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
        if has_bare_lf(&buf[..len]) {
            return Err(invalid("bare LF in response head"));
        }
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
        locate(spans, resp.headers, buf.as_ptr() as usize);
        return Ok(Some((len, status, version)));
    }
}

/// What a member's header fields said about framing and the connection.
#[derive(Default)]
struct Seen {
    close: bool,
    te: bool,
    length: Option<u64>,
}

impl Seen {
    fn field(&mut self, name: &header::HeaderName, raw: &[u8], version: Version) -> io::Result<()> {
        if name == header::CONNECTION {
            connection_tokens(raw, version, &mut self.close);
        } else if name == header::TRANSFER_ENCODING {
            // Only `chunked` alone: roost decodes it and the client gets roost's own
            // framing, so another coding (`gzip, chunked`) would reach the client as
            // plain bytes it cannot decode. nginx refuses it the same way (502).
            if self.te || !raw.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(invalid("unsupported transfer-encoding"));
            }
            self.te = true;
        } else if name == header::CONTENT_LENGTH {
            let n = parse_length(raw).ok_or_else(|| invalid("bad content-length"))?;
            if self.length.is_some_and(|l| l != n) {
                return Err(invalid("conflicting content-length"));
            }
            self.length = Some(n);
        }
        Ok(())
    }

    /// How the body is delimited: by the status and method first, then the fields.
    fn framing(
        &self,
        status: StatusCode,
        version: Version,
        method: &Method,
    ) -> io::Result<RespFraming> {
        Ok(if status == StatusCode::SWITCHING_PROTOCOLS {
            RespFraming::Upgrade
        } else if *method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            RespFraming::Length(0)
        } else if self.te {
            if version == Version::HTTP_10 {
                return Err(invalid("transfer-encoding in an HTTP/1.0 response"));
            }
            RespFraming::Chunked
        } else if let Some(n) = self.length {
            RespFraming::Length(n)
        } else {
            RespFraming::Eof
        })
    }
}

/// A line of the head that ends in LF without CR. httparse accepts it (RFC 9112 §2.2
/// allows it); a member is held to CRLF so no line ends where another parser's would not.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], method: Method) -> (ResponseHead, BytesMut) {
        let mut buf = BytesMut::from(raw);
        let head = parse_response(&mut buf, &method, &mut ParseScratch::default())
            .unwrap()
            .unwrap();
        (head, buf)
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
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n",
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

    fn refused(raw: &[u8]) -> bool {
        let mut buf = BytesMut::from(raw);
        parse_response(&mut buf, &Method::GET, &mut ParseScratch::default()).is_err()
    }

    #[test]
    fn a_member_is_held_to_strict_framing() {
        for raw in [
            &b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: b\r\n\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: b\r\n folded\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(refused(raw), "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
