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
                    // The same limit whether the line's end came in this read or a
                    // later one: a split must not change the outcome.
                    if eol > 4096 {
                        return Err(invalid("chunk size line too long"));
                    }
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
