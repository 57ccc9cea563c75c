//! The request head roost writes to a member: the client's request line and headers
//! (hop-by-hop ones already removed), the forwarding headers in place of the client's,
//! and the framing roost chooses for the body.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;

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

/// The origin-form target (`/path?query`) a member is sent for `uri`: an absolute-form
/// target's path and query, with the empty path of `http://a?q` written as `/` (RFC 9112
/// §3.2.1), and `/` when there is neither.
pub fn origin_target(uri: &http::Uri) -> http::uri::PathAndQuery {
    match uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') || pq.as_str() == "*" => pq.clone(),
        Some(pq) => format!("/{}", pq.as_str())
            .parse()
            .unwrap_or_else(|_| http::uri::PathAndQuery::from_static("/")),
        None => http::uri::PathAndQuery::from_static("/"),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn targets_sent_to_members_are_origin_form() {
        let t = |s: &str| origin_target(&s.parse().unwrap()).as_str().to_string();
        assert_eq!(t("http://a?q=1"), "/?q=1");
        assert_eq!(t("http://a"), "/");
        assert_eq!(t("http://a/b?c"), "/b?c");
        assert_eq!(t("/x"), "/x");
        assert_eq!(t("*"), "*");
    }
}
