//! Storing while streaming: a cacheable response goes to its client chunk by chunk and
//! the same chunks (shared `Bytes`, not copies) are kept for the store; past
//! `maxObjectBytes` the kept chunks are dropped and the rest simply streams.

use super::fill::{FillGuard, FillState};
use super::policy::{secondary_key, Meta};
use super::respond::Status;
use super::store::Object;
use super::Cache;
use crate::body::{self, Body, BoxError};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Response, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

/// A storable answer on its way to the client.
pub struct Filler {
    cache: Arc<Cache>,
    guard: FillGuard,
    /// The request's head, for the `Vary` secondary key of what gets stored.
    request: HeaderMap,
    meta: Meta,
    wall: SystemTime,
}

impl Filler {
    pub(super) fn new(
        cache: Arc<Cache>,
        guard: FillGuard,
        request: HeaderMap,
        meta: Meta,
        wall: SystemTime,
    ) -> Filler {
        Filler {
            cache,
            guard,
            request,
            meta,
            wall,
        }
    }

    /// Wrap the response (its head as the client gets it) so its body is stored as it
    /// streams; one that announces more than `maxObjectBytes` streams untouched. The
    /// secondary key comes from this head's `Vary`, which front compression may have
    /// extended beyond the member's.
    pub fn tee(self, resp: Response<Body>) -> Response<Body> {
        let (mut parts, body) = resp.into_parts();
        let max = self.cache.settings.max_object_bytes;
        let x_cache = self.cache.settings.x_cache;
        let too_big = body.size_hint().lower() > max;
        let out = if too_big {
            self.guard.finish(FillState::Pass);
            body
        } else if body.is_end_stream() {
            // Nobody polls an empty body: store it now.
            let pending = Pending {
                status: parts.status,
                headers: parts.headers.clone(),
                filler: self,
            };
            store(Some(pending), Vec::new());
            body
        } else {
            let pending = Pending {
                status: parts.status,
                headers: parts.headers.clone(),
                filler: self,
            };
            body::boxed(Tee {
                inner: body,
                chunks: Vec::new(),
                size: 0,
                max,
                pending: Some(pending),
            })
        };
        if x_cache {
            parts.headers.insert(
                super::respond::X_CACHE.clone(),
                http::HeaderValue::from_static(Status::Miss.as_str()),
            );
        }
        Response::from_parts(parts, out)
    }
}

struct Pending {
    status: StatusCode,
    headers: HeaderMap,
    filler: Filler,
}

pin_project_lite::pin_project! {
    struct Tee {
        #[pin]
        inner: Body,
        chunks: Vec<Bytes>,
        size: u64,
        max: u64,
        // `None` once stored, or given up (too large, failed); dropping it unfinished
        // tells the fill's waiters to retry.
        pending: Option<Pending>,
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let r = ready!(this.inner.as_mut().poll_frame(cx));
        match &r {
            Some(Ok(frame)) => {
                if let (Some(data), true) = (frame.data_ref(), this.pending.is_some()) {
                    *this.size += data.len() as u64;
                    if *this.size > *this.max {
                        this.chunks.clear();
                        if let Some(p) = this.pending.take() {
                            p.filler.guard.finish(FillState::Pass);
                        }
                    } else {
                        this.chunks.push(data.clone());
                    }
                }
                if this.inner.is_end_stream() {
                    store(this.pending.take(), std::mem::take(this.chunks));
                }
            }
            Some(Err(_)) => *this.pending = None,
            None => store(this.pending.take(), std::mem::take(this.chunks)),
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The whole body has gone by: store it and wake the fill's waiters.
fn store(pending: Option<Pending>, chunks: Vec<Bytes>) {
    let Some(p) = pending else { return };
    let body = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.into_iter().next().unwrap_or_default(),
        _ => {
            let mut b = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in chunks {
                b.extend_from_slice(&c);
            }
            b.freeze()
        }
    };
    let f = p.filler;
    let vary = secondary_key(&p.headers, &f.request);
    let obj = Object::new(p.status, p.headers, body, vary, f.meta, f.wall);
    f.cache.insert(f.guard.key(), obj);
    f.guard.finish(FillState::Stored);
}
