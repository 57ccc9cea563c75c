//! The compressing body: the member's (or the cache's) body streams through an
//! async-compression encoder, chunk by chunk, never collected; bytes in and out are
//! counted per algorithm.

use super::metrics::COUNTERS;
use crate::body::{self, Body, BoxError};
use crate::config::compression::{Algorithm, Level};
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use async_compression::Level as Quality;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use std::sync::atomic::Ordering;
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

/// Output is handed on in chunks of up to this size.
const CHUNK: usize = 16 * 1024;

/// The quality each algorithm gets for `level`.
fn quality(a: Algorithm, level: Level) -> Quality {
    let n = match (level, a) {
        (Level::Fastest, _) => 1,
        (Level::Default, Algorithm::Gzip) => 6,
        (Level::Default, Algorithm::Br) => 4,
        (Level::Default, Algorithm::Zstd) => 3,
        (Level::Best, Algorithm::Gzip) => 9,
        (Level::Best, Algorithm::Br) => 11,
        (Level::Best, Algorithm::Zstd) => 19,
    };
    Quality::Precise(n)
}

/// `body` compressed with `a`.
pub fn encode(body: Body, a: Algorithm, level: Level) -> Body {
    let c = &COUNTERS[a.index()];
    c.responses.fetch_add(1, Ordering::Relaxed);
    // Trailers are dropped: nothing roost compresses (text types) carries them.
    let input = body.into_data_stream().map(move |r| match r {
        Ok(b) => {
            c.bytes_in.fetch_add(b.len() as u64, Ordering::Relaxed);
            Ok(b)
        }
        Err(e) => Err(std::io::Error::other(e)),
    });
    let reader = StreamReader::new(input);
    let q = quality(a, level);
    let encoder: std::pin::Pin<Box<dyn AsyncRead + Send + Sync>> = match a {
        Algorithm::Gzip => Box::pin(GzipEncoder::with_quality(reader, q)),
        Algorithm::Br => Box::pin(BrotliEncoder::with_quality(reader, q)),
        Algorithm::Zstd => Box::pin(ZstdEncoder::with_quality(reader, q)),
    };
    let out = ReaderStream::with_capacity(encoder, CHUNK)
        .map_ok(move |b: Bytes| {
            c.bytes_out.fetch_add(b.len() as u64, Ordering::Relaxed);
            Frame::data(b)
        })
        .map_err(|e| -> BoxError { Box::new(e) });
    body::boxed(StreamBody::new(out))
}
