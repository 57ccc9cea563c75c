//! A per-member pool of HTTP/1.1 connections.

use super::connector::{dial, Endpoint};
use crate::body::Body;
use crate::config::model::UpstreamTimeouts;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use parking_lot::Mutex;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a request to a member failed, and whether it can be retried elsewhere.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be made; the request was never sent and is handed back.
    Connect(io::Error, Box<http::Request<Body>>),
    /// A pooled connection was closed before the request was written; handed back.
    NotSent(hyper::Error, Box<http::Request<Body>>),
    /// The request was (at least partly) sent, then the exchange failed.
    Failed(hyper::Error),
}

impl UpstreamError {
    /// The request, if it was never sent and so may be retried.
    pub fn into_request(self) -> Option<http::Request<Body>> {
        match self {
            UpstreamError::Connect(_, r) | UpstreamError::NotSent(_, r) => Some(*r),
            UpstreamError::Failed(_) => None,
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e, _) => write!(f, "connect failed: {e}"),
            UpstreamError::NotSent(e, _) => write!(f, "connection closed before sending: {e}"),
            UpstreamError::Failed(e) => write!(f, "upstream exchange failed: {e}"),
        }
    }
}

struct Idle {
    tx: http1::SendRequest<Body>,
    since: Instant,
}

struct Inner {
    endpoint: Endpoint,
    connect_timeout: Duration,
    idle_timeout: Duration,
    first_byte_timeout: Duration,
    /// Last in, first out: the most recently used connection is the likeliest alive.
    idle: Mutex<Vec<Idle>>,
}

/// Pooled HTTP/1.1 connections to one member endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Idle connections kept per member; beyond it a finished connection is closed.
const MAX_IDLE: usize = 1024;

impl Client {
    pub fn new(endpoint: Endpoint, timeouts: &UpstreamTimeouts) -> Client {
        Client {
            inner: Arc::new(Inner {
                endpoint,
                connect_timeout: timeouts.connect,
                idle_timeout: timeouts.idle,
                first_byte_timeout: timeouts.first_byte,
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    pub fn first_byte_timeout(&self) -> Duration {
        self.inner.first_byte_timeout
    }

    /// Idle pooled connections right now (for tests and the admin API).
    pub fn idle_connections(&self) -> usize {
        self.inner.idle.lock().len()
    }

    /// Send a request (origin-form URI, headers already rewritten by the front).
    /// The response body hands its connection back to the pool when it ends.
    pub async fn send(
        &self,
        req: http::Request<Body>,
    ) -> Result<http::Response<UpstreamBody>, UpstreamError> {
        let mut req = req;
        // Try pooled connections first; a stale one gives the request back untouched.
        while let Some(mut tx) = self.checkout_idle() {
            if tx.ready().await.is_err() {
                continue;
            }
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(self.attach(resp, tx)),
                Err(mut e) => match e.take_message() {
                    Some(r) => {
                        req = r;
                        continue;
                    }
                    None => return Err(UpstreamError::Failed(e.into_error())),
                },
            }
        }
        let mut tx = match self.connect().await {
            Ok(tx) => tx,
            Err(e) => return Err(UpstreamError::Connect(e, Box::new(req))),
        };
        match tx.try_send_request(req).await {
            Ok(resp) => Ok(self.attach(resp, tx)),
            Err(mut e) => match e.take_message() {
                Some(r) => Err(UpstreamError::NotSent(e.into_error(), Box::new(r))),
                None => Err(UpstreamError::Failed(e.into_error())),
            },
        }
    }

    fn checkout_idle(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.inner.idle.lock();
        while let Some(c) = idle.pop() {
            if c.tx.is_closed() || c.since.elapsed() > self.inner.idle_timeout {
                continue;
            }
            return Some(c.tx);
        }
        None
    }

    async fn connect(&self) -> io::Result<http1::SendRequest<Body>> {
        let io = match tokio::time::timeout(
            self.inner.connect_timeout,
            dial(self.inner.endpoint.clone()),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        };
        let (tx, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(async move {
            // Errors here surface to the request through its response or body.
            let _ = conn.with_upgrades().await;
        });
        Ok(tx)
    }

    /// Keep the sender with the response body; it returns to the pool when the body ends.
    fn attach(
        &self,
        resp: http::Response<Incoming>,
        tx: http1::SendRequest<Body>,
    ) -> http::Response<UpstreamBody> {
        // An empty body (204, HEAD, `content-length: 0`) may never be polled by the
        // server side, so its connection goes back now.
        let back = if resp.body().is_end_stream() {
            self.put_back(tx);
            None
        } else {
            Some((self.clone(), tx))
        };
        resp.map(|body| UpstreamBody { body, back })
    }

    fn put_back(&self, tx: http1::SendRequest<Body>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.inner.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }
}

pin_project_lite::pin_project! {
    /// A member's response body. When it has been read to its end, its connection goes
    /// back to the member's pool; dropped half-read, the connection is closed instead
    /// (hyper cannot reuse it), which is what a client that went away needs.
    pub struct UpstreamBody {
        #[pin]
        body: Incoming,
        back: Option<(Client, http1::SendRequest<Body>)>,
    }
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let r = this.body.as_mut().poll_frame(cx);
        // The server side stops polling once `is_end_stream()` says so (a sized body's
        // last frame), so the end is noticed here too, not only at `Ready(None)`.
        let ended = match &r {
            std::task::Poll::Ready(None) => true,
            std::task::Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            _ => false,
        };
        if ended {
            if let Some((client, tx)) = this.back.take() {
                client.put_back(tx);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
