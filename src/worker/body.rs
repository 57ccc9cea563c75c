//! The body of the app API's requests and responses: in-memory bodies without a box.
//!
//! roost's [`crate::body::Body`] is a boxed stream, so every `text("hello")` cost an
//! allocation and a free, and every request with a body one more. Here an empty body and a
//! body of one `Bytes` (what [`text`](super::text), [`json`](super::json) and
//! [`status`](super::status) build) are held by value, a request body is hyper's own
//! `Incoming` by value, and only other streams are boxed.

use crate::body::BoxError;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The request a handler gets: its body streams (it is not read before the handler runs).
pub type Request = http::Request<Body>;
/// The response a handler returns; its body may stream ([`Body`]: in-memory bodies, such
/// as [`text`](super::text)'s, are not boxed).
pub type Response = http::Response<Body>;

/// A request or response body: empty, one in-memory chunk, or a stream.
///
/// Build one with [`Body::empty`], [`Body::full`] (or `From` a `Bytes`, `String`,
/// `Vec<u8>` or `&'static str`), or [`Body::wrap`] for any streaming `http_body::Body`
/// (a roost [`crate::body::Body`] converts with `From`). It is an `http_body::Body` with
/// `Bytes` chunks, so `http_body_util::BodyExt` reads it.
#[derive(Debug)]
pub struct Body {
    kind: Kind,
}

enum Kind {
    Empty,
    /// Sent as one frame, then empty.
    Full(Bytes),
    /// A request body as hyper reads it off the connection.
    Incoming(hyper::body::Incoming),
    Stream(crate::body::Body),
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Empty => f.write_str("Empty"),
            Kind::Full(b) => write!(f, "Full({} bytes)", b.len()),
            Kind::Incoming(_) => f.write_str("Incoming"),
            Kind::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl Body {
    /// No bytes.
    pub const fn empty() -> Body {
        Body { kind: Kind::Empty }
    }

    /// These bytes, as one chunk. Allocates nothing beyond `data` itself.
    pub fn full(data: impl Into<Bytes>) -> Body {
        Body {
            kind: Kind::Full(data.into()),
        }
    }

    /// Any streaming body (boxed).
    pub fn wrap<B>(b: B) -> Body
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Body::from(crate::body::boxed(b))
    }

    /// A request body straight from hyper: one that is already at its end (most GETs)
    /// becomes the empty body, so it holds nothing of the connection's.
    pub(crate) fn incoming(b: hyper::body::Incoming) -> Body {
        use http_body::Body as _;
        if b.is_end_stream() {
            Body::empty()
        } else {
            Body {
                kind: Kind::Incoming(b),
            }
        }
    }

    /// This body as roost's boxed [`crate::body::Body`] (boxes an in-memory one).
    pub fn into_boxed(self) -> crate::body::Body {
        match self.kind {
            Kind::Empty => crate::body::empty(),
            Kind::Full(b) => crate::body::full(b),
            Kind::Incoming(b) => crate::body::boxed(b),
            Kind::Stream(b) => b,
        }
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl From<crate::body::Body> for Body {
    fn from(b: crate::body::Body) -> Body {
        Body {
            kind: Kind::Stream(b),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body::full(b)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::full(s)
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::full(v)
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::full(s)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Every variant is `Unpin`, so the body is too.
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            // The chunk is taken and an empty one left in its place (not `Empty`: that
            // would run the drop of the emptied variant for nothing).
            Kind::Full(b) if b.is_empty() => Poll::Ready(None),
            Kind::Full(b) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(b))))),
            Kind::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Kind::Stream(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_empty(),
            Kind::Incoming(b) => b.is_end_stream(),
            Kind::Stream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.len() as u64),
            Kind::Incoming(b) => b.size_hint(),
            Kind::Stream(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn in_memory_bodies_say_their_size_and_give_their_bytes_once() {
        let b = Body::full("hello");
        assert_eq!(b.size_hint().exact(), Some(5));
        assert!(!b.is_end_stream());
        assert_eq!(&b.collect().await.unwrap().to_bytes()[..], b"hello");

        let mut b = Body::full(Bytes::from_static(b"x"));
        let first = b.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"x");
        assert!(b.is_end_stream(), "the chunk was sent");
        assert_eq!(b.size_hint().exact(), Some(0));
        assert!(b.frame().await.is_none());
        assert!(b.frame().await.is_none(), "and stays at its end");

        for b in [Body::empty(), Body::full(""), Body::default()] {
            assert!(b.is_end_stream());
            assert_eq!(b.size_hint().exact(), Some(0));
            assert!(b.collect().await.unwrap().to_bytes().is_empty());
        }
    }

    #[tokio::test]
    async fn a_stream_and_the_boxed_form_carry_the_same_bytes() {
        let chunks = futures_util::stream::iter(["a", "b", "c"].map(|s| {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(s.as_bytes())))
        }));
        let b = Body::wrap(http_body_util::StreamBody::new(chunks));
        assert_eq!(format!("{b:?}"), "Body { kind: Stream }");
        let boxed = Body::full("abc").into_boxed();
        assert_eq!(
            b.collect().await.unwrap().to_bytes(),
            boxed.collect().await.unwrap().to_bytes()
        );
    }

    #[tokio::test]
    async fn conversions_keep_bytes_in_memory_and_streams_keep_their_hints() {
        for (b, want) in [
            (Body::from("str"), "str"),
            (Body::from(String::from("string")), "string"),
            (Body::from(b"vec".to_vec()), "vec"),
            (Body::from(Bytes::from_static(b"bytes")), "bytes"),
        ] {
            assert_eq!(
                format!("{b:?}"),
                format!("Body {{ kind: Full({} bytes) }}", want.len())
            );
            assert_eq!(b.size_hint().exact(), Some(want.len() as u64));
            assert_eq!(b.collect().await.unwrap().to_bytes(), want.as_bytes());
        }
        // A wrapped or converted stream passes its own hint and end on.
        let exact = Body::wrap(http_body_util::Full::new(Bytes::from_static(b"four")));
        assert_eq!(exact.size_hint().exact(), Some(4));
        let boxed = Body::from(crate::body::empty());
        assert!(boxed.is_end_stream());
        assert_eq!(boxed.size_hint().exact(), Some(0));
        let chunks = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(
            Bytes::from_static(b"x"),
        ))]);
        let unknown = Body::wrap(http_body_util::StreamBody::new(chunks));
        assert_eq!(unknown.size_hint().exact(), None);
        assert!(!unknown.is_end_stream());
        // A stream's error comes through as it is.
        let failing = futures_util::stream::iter([
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err(std::io::Error::other("cut")),
        ]);
        let mut b = Body::wrap(http_body_util::StreamBody::new(failing));
        let first = b.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "part");
        let err = b.frame().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "cut");
    }
}
