//! Header fields as both sides parse them: where each header sits in the buffer, the
//! names remembered between messages, and the values whose syntax decides framing
//! (`Connection`, `Content-Length`, `Transfer-Encoding`).

use http::header::HeaderName;
use http::Version;
use std::io;

pub(crate) fn invalid(msg: &'static str) -> io::Error {
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

/// A `Content-Length` value: digits only (no sign, no spaces inside), as RFC 9110 §8.6
/// defines it; `u64::from_str` would also take `+5`.
pub fn parse_length(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 19 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    raw.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}
