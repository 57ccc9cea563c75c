//! A second HTTP/1.1 request parser, written apart from roost's codec (no httparse, no
//! `h1::Chunked`), strict where framing is decided: the reference the end-to-end target
//! holds roost to. It reads a byte stream as a sequence of requests, RFC 9112 to the
//! letter on framing (one `Content-Length` value, `chunked` last and only once, CRLF in
//! chunked framing, no obs-fold, no space before a colon), lenient only where a head's
//! bytes do not decide framing (bare LF ending a head line, RFC 9112 §2.2; any byte but
//! CR, LF and NUL in a value or target).

/// One request as the reference read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Nothing after this request may be read as another (close, HTTP/1.0, or framing
    /// by both a coding and a length).
    pub last: bool,
}

/// How reading the stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// At a request boundary with no bytes left (or after a `last` request).
    Clean,
    /// Inside a request: more bytes would be needed.
    Incomplete,
    /// Bytes that are not a request under these rules.
    Refused(&'static str),
}

type Parsed<T> = Result<Option<(T, usize)>, &'static str>;

/// Read `data` as requests until it ends, a request is refused, or a `last` one is read.
pub fn requests(data: &[u8]) -> (Vec<Request>, End) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        // RFC 9112 §2.2: empty lines before a request line are ignored.
        while data[at..].starts_with(b"\r\n") || data[at..].starts_with(b"\n") {
            at += if data[at] == b'\r' { 2 } else { 1 };
        }
        if at == data.len() {
            return (out, End::Clean);
        }
        match request(&data[at..]) {
            Err(why) => return (out, End::Refused(why)),
            Ok(None) => return (out, End::Incomplete),
            Ok(Some((r, n))) => {
                at += n;
                let last = r.last;
                out.push(r);
                if last {
                    return (out, End::Clean);
                }
            }
        }
    }
}

fn request(data: &[u8]) -> Parsed<Request> {
    let Some((line, mut at)) = head_line(data)? else {
        return Ok(None);
    };
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("request line is not three parts");
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err("bad method");
    }
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err("bad target");
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Err("bad version"),
    };
    let mut headers = Vec::new();
    loop {
        let Some((line, n)) = head_line(&data[at..])? else {
            return Ok(None);
        };
        at += n;
        if line.is_empty() {
            break;
        }
        headers.push(field(line)?);
    }
    let (framing, last) = framing(&headers, http10)?;
    let body_at = at;
    let (body, n) = match framing {
        Framing::Length(len) => {
            let len = usize::try_from(len).map_err(|_| "length too large")?;
            if data.len() - body_at < len {
                return Ok(None);
            }
            (data[body_at..body_at + len].to_vec(), len)
        }
        Framing::Chunked => match chunked(&data[body_at..])? {
            Some(b) => b,
            None => return Ok(None),
        },
    };
    let req = Request {
        method: method.to_vec(),
        target: target.to_vec(),
        headers,
        body,
        last,
    };
    Ok(Some((req, body_at + n)))
}

/// A head line without its ending (CRLF, or a bare LF); a CR anywhere else is refused.
fn head_line(data: &[u8]) -> Parsed<&[u8]> {
    let Some(lf) = data.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let line = data[..lf].strip_suffix(b"\r").unwrap_or(&data[..lf]);
    if line.contains(&b'\r') || line.contains(&0) {
        return Err("CR or NUL inside a head line");
    }
    Ok(Some((line, lf + 1)))
}

fn field(line: &[u8]) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
    if line[0] == b' ' || line[0] == b'\t' {
        return Err("obs-fold");
    }
    let colon = line.iter().position(|&b| b == b':').ok_or("no colon")?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err("bad field name");
    }
    let value = line[colon + 1..].trim_ascii();
    if value.iter().any(|&b| b < b' ' && b != b'\t' || b == 0x7f) {
        return Err("control byte in a value");
    }
    Ok((name.to_ascii_lowercase(), value.to_vec()))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

enum Framing {
    Length(u64),
    Chunked,
}

/// RFC 9112 §6: the body's framing, and whether the connection ends after the request.
fn framing(headers: &[(Vec<u8>, Vec<u8>)], http10: bool) -> Result<(Framing, bool), &'static str> {
    let mut codings: Vec<Vec<u8>> = Vec::new();
    let mut te_lines = 0;
    let mut length: Option<u64> = None;
    let mut close = http10;
    for (name, value) in headers {
        match name.as_slice() {
            b"transfer-encoding" => {
                te_lines += 1;
                codings.extend(
                    value
                        .split(|&b| b == b',')
                        .map(|c| c.trim_ascii().to_ascii_lowercase()),
                );
            }
            b"content-length" => {
                // A list of equal values is one value (RFC 9110 §8.6).
                for v in value.split(|&b| b == b',') {
                    let n = digits(v.trim_ascii()).ok_or("bad content-length")?;
                    if length.is_some_and(|l| l != n) {
                        return Err("conflicting content-length");
                    }
                    length = Some(n);
                }
            }
            b"connection" => {
                for t in value.split(|&b| b == b',') {
                    let t = t.trim_ascii();
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") && http10 {
                        close = false;
                    }
                }
            }
            _ => {}
        }
    }
    if te_lines == 0 {
        return Ok((Framing::Length(length.unwrap_or(0)), close));
    }
    if http10 {
        return Err("transfer-encoding in HTTP/1.0");
    }
    if te_lines > 1 || codings.last().map(Vec::as_slice) != Some(b"chunked") {
        return Err("chunked is not the one final coding");
    }
    if codings[..codings.len() - 1]
        .iter()
        .any(|c| c.as_slice() == b"chunked")
    {
        return Err("chunked twice");
    }
    // Both a coding and a length: read as chunked, then close (RFC 9112 §6.3).
    Ok((Framing::Chunked, close || length.is_some()))
}

fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A chunked body (RFC 9112 §7.1): the data and the bytes it took, trailers included.
fn chunked(data: &[u8]) -> Parsed<Vec<u8>> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some((line, n)) = crlf_line(&data[at..])? else {
            return Ok(None);
        };
        at += n;
        let (size, ext) = match line.iter().position(|&b| b == b';') {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, &b""[..]),
        };
        let size = size.trim_ascii_end();
        if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err("bad chunk size");
        }
        if ext.iter().any(|&b| b < b' ' && b != b'\t' || b == 0x7f) {
            return Err("control byte in a chunk extension");
        }
        let size = usize::from_str_radix(std::str::from_utf8(size).unwrap(), 16).unwrap();
        if size == 0 {
            return trailers(data, at, body);
        }
        if data.len() - at < size + 2 {
            return Ok(None);
        }
        if &data[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF");
        }
        body.extend_from_slice(&data[at..at + size]);
        at += size + 2;
    }
}

fn trailers(data: &[u8], mut at: usize, body: Vec<u8>) -> Parsed<Vec<u8>> {
    loop {
        let Some((line, n)) = crlf_line(&data[at..])? else {
            return Ok(None);
        };
        at += n;
        if line.is_empty() {
            return Ok(Some((body, at)));
        }
        field(line)?;
    }
}

/// A line ended by CRLF; a bare CR or LF inside is refused.
fn crlf_line(data: &[u8]) -> Parsed<&[u8]> {
    let Some(lf) = data.iter().position(|&b| b == b'\n') else {
        return if data.contains(&b'\r') && !data.ends_with(b"\r") {
            Err("bare CR in chunked framing")
        } else {
            Ok(None)
        };
    };
    let Some(line) = data[..lf].strip_suffix(b"\r") else {
        return Err("bare LF in chunked framing");
    };
    if line.contains(&b'\r') {
        return Err("bare CR in chunked framing");
    }
    Ok(Some((line, lf + 1)))
}

/// One response as a client reads it: status and body (`method` decides whether a body
/// follows). Strict: CRLF only, a single length or chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub close: bool,
}

/// Read one response from the front of `data`; `Ok(None)` if it is cut short.
pub fn response(data: &[u8], head_method: bool) -> Parsed<Response> {
    let Some((line, mut at)) = crlf_line(data)? else {
        return Ok(None);
    };
    let status = match line.get(..13) {
        Some(l) if (l.starts_with(b"HTTP/1.1 ") || l.starts_with(b"HTTP/1.0 ")) => {
            digits(&l[9..12]).ok_or("bad status")? as u16
        }
        _ => return Err("bad status line"),
    };
    let mut headers = Vec::new();
    loop {
        let Some((line, n)) = crlf_line(&data[at..])? else {
            return Ok(None);
        };
        at += n;
        if line.is_empty() {
            break;
        }
        headers.push(field(line)?);
    }
    let (framing, close) = framing(&headers, line.starts_with(b"HTTP/1.0"))?;
    let bodiless = head_method || status < 200 || status == 204 || status == 304;
    let has_length = headers.iter().any(|(n, _)| n == b"content-length");
    let coded = headers.iter().any(|(n, _)| n == b"transfer-encoding");
    let (body, n) = match framing {
        _ if bodiless => (Vec::new(), 0),
        Framing::Chunked => match chunked(&data[at..])? {
            Some(b) => b,
            None => return Ok(None),
        },
        Framing::Length(len) if has_length => {
            let len = len as usize;
            if data.len() - at < len {
                return Ok(None);
            }
            (data[at..at + len].to_vec(), len)
        }
        // Neither: the body runs to the end of the stream.
        Framing::Length(_) => (data[at..].to_vec(), data.len() - at),
    };
    let close = close || !(has_length || coded || bodiless);
    Ok(Some((
        Response {
            status,
            body,
            close,
        },
        at + n,
    )))
}
