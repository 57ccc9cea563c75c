//! The future hyper keeps for one request (`Worker::start` makes it), and the response body
//! it hands over.
//!
//! The common case, an async handler admitted at once, is a [`HandlerFuture`] polled in
//! place next to its gate admission: no box and no `async fn` state machine around it, so
//! the future hyper stores and moves per request stays under 128 bytes. Answers known at
//! once (the `/.roost/` endpoints, 404s, refusals) are handed over as they are; the rest
//! (waiting in the gate's queue, sync handlers on a worker pool) runs in a boxed future,
//! which is what those paths cost before. [`Served`] is hyper's service future itself: it
//! builds the final response (a [`HeldBody`]) where the handler's response comes out, so
//! the response is not moved again by a `map` around it.

use super::app::{self, Response};
use super::body::Body;
use super::inline_future::HandlerFuture;
use super::timer::ResponseDone;
use futures_util::future::BoxFuture;
use http::StatusCode;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response and the admission its body must hold until it is sent (none for answers
/// that were never admitted: `/.roost/` endpoints, refusals, panics). The admission's
/// type (`A`) is the server's; here it is only held and dropped.
pub(super) type Answer<A> = (Response, Option<A>);

pin_project_lite::pin_project! {
    /// One request being served (see the module docs).
    pub(super) struct Served<A> {
        #[pin]
        state: State<A>,
        // Marks the end of the response for the connection's header timeout.
        done: Option<ResponseDone>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<A> {
        /// An admitted async handler. `held` is taken when it finishes.
        Running {
            #[pin]
            fut: HandlerFuture,
            held: Option<A>,
        },
        /// Answered already (boxed: rare, and it keeps this future small).
        Ready { answer: Option<Box<Response>> },
        /// Queued in the gate, or a sync handler.
        Boxed { fut: BoxFuture<'static, Answer<A>> },
    }
}

impl<A> Served<A> {
    pub(super) fn running(fut: HandlerFuture, held: A) -> Self {
        Served::new(State::Running {
            fut,
            held: Some(held),
        })
    }

    pub(super) fn ready(resp: Response) -> Self {
        Served::new(State::Ready {
            answer: Some(Box::new(resp)),
        })
    }

    pub(super) fn boxed(fut: impl Future<Output = Answer<A>> + Send + 'static) -> Self {
        Served::new(State::Boxed { fut: Box::pin(fut) })
    }

    fn new(state: State<A>) -> Self {
        Served { state, done: None }
    }

    /// The response's body will mark `done` when hyper is through with it.
    pub(super) fn on_done(mut self, done: ResponseDone) -> Self {
        self.done = Some(done);
        self
    }
}

impl<A> Future for Served<A> {
    type Output = Result<http::Response<HeldBody<A>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (resp, held) = match this.state.project() {
            StateProj::Running { fut, held } => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(resp)) => (resp, held.take()),
                    Err(_) => {
                        // The admission ends here: a panicking handler ends its request.
                        // hyper does not poll a finished future again.
                        tracing::error!("async handler panicked");
                        drop(held.take());
                        (handler_panicked(), None)
                    }
                }
            }
            StateProj::Ready { answer } => {
                let resp = answer
                    .take()
                    .expect("a served request polled after it finished");
                (*resp, None)
            }
            StateProj::Boxed { fut } => match fut.as_mut().poll(cx) {
                Poll::Ready(answer) => answer,
                Poll::Pending => return Poll::Pending,
            },
        };
        let done = this.done.take();
        Poll::Ready(Ok(resp.map(|inner| HeldBody { inner, held, done })))
    }
}

pub(super) fn handler_panicked() -> Response {
    app::status(StatusCode::INTERNAL_SERVER_ERROR, "handler panicked")
}

pin_project_lite::pin_project! {
    /// A response body, the admission it holds until it is finished or dropped, and the
    /// mark that starts its connection's wait for the next request head when it goes.
    pub(super) struct HeldBody<A> {
        #[pin]
        inner: Body,
        held: Option<A>,
        done: Option<ResponseDone>,
    }
}

impl<A: Send + Sync + 'static> HeldBody<A> {
    /// As the app API's body: the body itself when it holds nothing, boxed otherwise.
    pub(super) fn into_body(self) -> Body {
        if self.held.is_none() && self.done.is_none() {
            self.inner
        } else {
            Body::wrap(self)
        }
    }
}

impl<A> http_body::Body for HeldBody<A> {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
