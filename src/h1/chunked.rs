//! The chunked transfer coding (RFC 9112 §7.1), decoded the same way for a client's
//! request body and a member's response body.

use super::fields::invalid;
use super::response::MAX_HEAD;
use bytes::{Buf, Bytes, BytesMut};
use std::io;

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a `size[;ext]\r\n` line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// After a chunk's data, expecting `\r\n`.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one (bytes of them so far).
    Trailers(u32),
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
                    let Some(eol) = find_line(buf)? else {
                        if buf.len() > MAX_SIZE_LINE {
                            return Err(invalid("chunk size line too long"));
                        }
                        return Ok(Step::More);
                    };
                    // The same limit whether the line's end came in this read or a
                    // later one: a split must not change the outcome.
                    if eol > MAX_SIZE_LINE {
                        return Err(invalid("chunk size line too long"));
                    }
                    let size = parse_size_line(&buf[..eol])?;
                    buf.advance(eol + 2);
                    *self = if size == 0 {
                        Chunked::Trailers(0)
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
                Chunked::Trailers(seen) => {
                    let Some(eol) = find_line(buf)? else {
                        if seen as usize + buf.len() > MAX_HEAD {
                            return Err(invalid("trailers too large"));
                        }
                        return Ok(Step::More);
                    };
                    if eol == 0 {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Step::Done);
                    }
                    check_trailer_line(&buf[..eol])?;
                    let seen = seen as usize + eol + 2;
                    if seen > MAX_HEAD {
                        return Err(invalid("trailers too large"));
                    }
                    buf.advance(eol + 2);
                    *self = Chunked::Trailers(seen as u32);
                }
                Chunked::Done => return Ok(Step::Done),
            }
        }
    }
}

/// A chunk-size line longer than this (with its extensions) is refused.
const MAX_SIZE_LINE: usize = 4096;

/// The end of the first line in `buf`: the index of its CR. Lines end in CRLF only; a
/// bare LF or a bare CR anywhere in chunked framing is refused, because a parser in
/// front of roost that ends lines at LF would frame the body differently (smuggling).
fn find_line(buf: &[u8]) -> io::Result<Option<usize>> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        // Only the last byte may be a CR (its LF may be in the next read); any CR
        // before it is bare, however the line ends.
        if buf
            .split_last()
            .is_some_and(|(_, head)| head.contains(&b'\r'))
        {
            return Err(invalid("bare CR in chunked framing"));
        }
        return Ok(None);
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(invalid("bare LF in chunked framing"));
    }
    if buf[..lf - 1].contains(&b'\r') {
        return Err(invalid("bare CR in chunked framing"));
    }
    Ok(Some(lf - 1))
}

/// `chunk-size [ chunk-ext ]` (RFC 9112 §7.1): hex digits from the first byte, then
/// nothing, or optional whitespace and `;` extensions made of visible characters.
fn parse_size_line(line: &[u8]) -> io::Result<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(invalid("bad chunk size"));
    }
    if digits > 16 {
        return Err(invalid("chunk size overflow"));
    }
    let ext = line[digits..].trim_ascii_start();
    if !ext.is_empty() && (ext[0] != b';' || ext.iter().any(|&b| is_ctl(b))) {
        return Err(invalid("bad chunk extension"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(d))
            .ok_or_else(|| invalid("chunk size overflow"))?;
    }
    Ok(size)
}

/// A trailer field line: `name: value`, a token name, no control bytes, no obs-fold.
fn check_trailer_line(line: &[u8]) -> io::Result<()> {
    let colon = line.iter().position(|&b| b == b':');
    let name_ok = colon.is_some_and(|c| {
        c > 0
            && line[..c]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    });
    if !name_ok || line.iter().any(|&b| is_ctl(b)) {
        return Err(invalid("bad trailer field"));
    }
    Ok(())
}

/// Control bytes other than horizontal tab.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Decode `wire` whole; the body, or the error.
    fn decode(wire: &[u8]) -> io::Result<Vec<u8>> {
        let mut dec = Chunked::Size;
        let mut buf = BytesMut::from(wire);
        let mut body = Vec::new();
        loop {
            match dec.step(&mut buf)? {
                Step::Data(d) => body.extend_from_slice(&d),
                Step::Done => return Ok(body),
                Step::More => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }

    #[test]
    fn lines_end_in_crlf_only() {
        fn dec_err(bytes: &[u8]) -> bool {
            Chunked::Size.step(&mut BytesMut::from(bytes)).is_err()
        }
        for wire in [
            &b"3;x\nabc\r\n0\r\n\r\n"[..],       // bare LF inside an extension
            b"3\nabc\r\n0\r\n\r\n",              // bare LF after the size
            b"3\r\nabc\r\n0\n\r\n",              // bare LF after the last size
            b"3\r\nabc\r\n0\r\nX: y\n\r\n",      // bare LF in a trailer
            b"3\r\nabc\r\n0\r\n\n",              // bare LF ending the trailers
            b"3\rx\r\nabc\r\n0\r\n\r\n",         // bare CR in the size line
            b"3\r\nabc\r\n0\r\nX: a\rb\r\n\r\n", // bare CR in a trailer
        ] {
            let e = decode(wire).expect_err(&String::from_utf8_lossy(wire));
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{wire:?}");
        }
        // A bare CR is refused before its line is complete, too, even when the bytes
        // so far end in a CR (found by the `chunked` fuzz target's split invariant).
        assert!(dec_err(b"\r\r"));
        assert!(dec_err(b"3\r\tx\r"));
        // A bare CR is refused before its line is complete, too.
        let mut dec = Chunked::Size;
        assert!(dec.step(&mut BytesMut::from(&b"3\rx"[..])).is_err());
        // A CR at the end of what has arrived may be the start of CRLF.
        let mut dec = Chunked::Size;
        assert!(matches!(
            dec.step(&mut BytesMut::from(&b"3\r"[..])).unwrap(),
            Step::More
        ));
    }

    #[test]
    fn size_lines_and_trailers_are_strict() {
        assert_eq!(
            decode(b"3;a=b;c=\"d e\"\r\nabc\r\n0\r\n\r\n").unwrap(),
            b"abc"
        );
        assert_eq!(decode(b"3 ;a\r\nabc\r\n0\r\n\r\n").unwrap(), b"abc");
        assert_eq!(decode(b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n").unwrap(), b"abc");
        for wire in [
            &b" 3\r\nabc\r\n0\r\n\r\n"[..],      // whitespace before the size
            b"3 x\r\nabc\r\n0\r\n\r\n",          // junk after the size
            b"+3\r\nabc\r\n0\r\n\r\n",           // a sign
            b"3;a\x00\r\nabc\r\n0\r\n\r\n",      // a control byte in an extension
            b"3\r\nabc\r\n0\r\n folded\r\n\r\n", // obs-fold in the trailers
            b"3\r\nabc\r\n0\r\nno colon\r\n\r\n",
            b"3\r\nabc\r\n0\r\n: empty name\r\n\r\n",
        ] {
            assert!(decode(wire).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
        // Trailers are bounded as a whole, not only line by line.
        let mut wire = b"0\r\n".to_vec();
        for i in 0..10_000 {
            wire.extend_from_slice(format!("x-{i}: 0123456789\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        assert!(decode(&wire).is_err());
    }
}
