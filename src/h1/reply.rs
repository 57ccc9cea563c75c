//! The response head roost writes to a client: status line, the member's headers less
//! the framing ones, the framing roost chooses, `Date`.

use crate::body::Body;
use http::header::{self, HeaderMap};
use http::{StatusCode, Version};
use http_body::Body as _;
use std::cell::RefCell;
use std::time::{Duration, SystemTime};

/// How the body is delimited for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body on the wire (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client and a length nobody knows).
    Close,
}

/// What the request said that shapes the response.
pub struct Ask {
    pub head_method: bool,
    pub version: Version,
    pub keep_alive: bool,
}

/// Encode the response head into `out`; returns the body framing and whether the
/// connection stays open after this response.
pub fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    body: &Body,
    ask: &Ask,
) -> (Framing, bool) {
    let mut keep_alive = ask.keep_alive;
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    status_line(out, status, ask.version);
    let (declared, has_date) = member_fields(out, headers, bodiless_status);
    let mut framing = if ask.head_method || bodiless_status {
        Framing::None
    } else if let Some(n) = declared {
        Framing::Length(n)
    } else if let Some(n) = body.size_hint().exact() {
        Framing::Length(n)
    } else if ask.version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        keep_alive = false;
        Framing::Close
    };
    match framing {
        Framing::Length(n) if declared.is_none() => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        out.extend_from_slice(b"connection: upgrade\r\n");
        framing = Framing::None;
    } else if ask.version == Version::HTTP_10 {
        // Closing is HTTP/1.0's default; keep-alive is what must be said.
        if keep_alive {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    } else if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        put_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep_alive)
}

/// The status line; an HTTP/1.0 client is answered in its own version, as hyper did.
fn status_line(out: &mut Vec<u8>, status: StatusCode, version: Version) {
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The member's fields less the framing ones. Returns the first valid `Content-Length`
/// (which frames the body and is written once) and whether a `Date` was among them. One
/// pass finds it and writes the rest (a hashed lookup first cost more than the pass).
fn member_fields(
    out: &mut Vec<u8>,
    headers: &HeaderMap,
    bodiless_status: bool,
) -> (Option<u64>, bool) {
    let mut has_date = false;
    let mut declared: Option<u64> = None;
    for (name, value) in headers {
        // Framing is roost's to write: a length the body contradicts, or a
        // transfer-coding the client did not ask for, would desync the connection.
        // 204 and 304 carry no length either (hyper's choice, kept).
        if *name == header::TRANSFER_ENCODING || *name == header::CONNECTION {
            continue;
        }
        if *name == header::CONTENT_LENGTH {
            if bodiless_status || declared.is_some() {
                continue;
            }
            match super::fields::parse_length(value.as_bytes()) {
                Some(n) => declared = Some(n),
                None => continue,
            }
        }
        has_date |= *name == header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    (declared, has_date)
}

thread_local! {
    /// The `Date` value, formatted once per second per thread (as hyper does).
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

fn put_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            let s = httpdate::fmt_http_date(now);
            d.1.copy_from_slice(&s.as_bytes()[..29]);
            d.0 = secs;
        }
        out.extend_from_slice(&d.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;
    use bytes::Bytes;
    use http::HeaderValue;

    fn ask(version: Version, keep_alive: bool) -> Ask {
        Ask {
            head_method: false,
            version,
            keep_alive,
        }
    }

    fn head(
        status: StatusCode,
        headers: &HeaderMap,
        body: &Body,
        ask: &Ask,
    ) -> (String, Framing, bool) {
        let mut out = Vec::new();
        let (f, k) = encode_head(&mut out, status, headers, body, ask);
        (String::from_utf8(out).unwrap(), f, k)
    }

    #[test]
    fn framing_follows_what_is_known() {
        let h = HeaderMap::new();
        let (s, f, k) = head(
            StatusCode::OK,
            &h,
            &body::full("hello"),
            &ask(Version::HTTP_11, true),
        );
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"), "{s}");
        assert!(
            s.contains("content-length: 5\r\n") && s.contains("date: "),
            "{s}"
        );
        assert_eq!((f, k), (Framing::Length(5), true));

        let stream = body::boxed(http_body_util::StreamBody::new(
            futures_util::stream::empty::<Result<http_body::Frame<Bytes>, std::io::Error>>(),
        ));
        let (s, f, _) = head(StatusCode::OK, &h, &stream, &ask(Version::HTTP_11, true));
        assert!(s.contains("transfer-encoding: chunked\r\n"), "{s}");
        assert_eq!(f, Framing::Chunked);
        let (s, f, k) = head(StatusCode::OK, &h, &stream, &ask(Version::HTTP_10, true));
        // Closing is HTTP/1.0's default: nothing to say.
        assert!(
            s.starts_with("HTTP/1.0 200 OK\r\n") && !s.contains("connection"),
            "{s}"
        );
        assert_eq!((f, k), (Framing::Close, false));

        let mut with_len = HeaderMap::new();
        with_len.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        with_len.insert(
            header::DATE,
            HeaderValue::from_static("Thu, 26 Nov 2026 10:00:00 GMT"),
        );
        let head_ask = Ask {
            head_method: true,
            ..ask(Version::HTTP_10, true)
        };
        let (s, f, _) = head(StatusCode::OK, &with_len, &body::empty(), &head_ask);
        assert_eq!(s.matches("content-length: 12\r\n").count(), 1, "{s}");
        assert_eq!(s.matches("date: ").count(), 1, "{s}");
        assert!(s.contains("connection: keep-alive\r\n"), "{s}");
        assert_eq!(f, Framing::None);
        let (s, f, _) = head(
            StatusCode::NO_CONTENT,
            &h,
            &body::empty(),
            &ask(Version::HTTP_11, true),
        );
        assert!(!s.contains("content-length"), "{s}");
        assert_eq!(f, Framing::None);
    }
}
