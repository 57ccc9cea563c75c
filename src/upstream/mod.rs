//! Upstream: the connection to a pool member (a local worker over a Unix socket or TCP,
//! or a farm server over TCP/TLS), with pooled keep-alive connections.
//!
//! Each member owns one [`Client`], so its idle connections are pooled per member and
//! closed when the member leaves its pool.

mod connector;

pub use connector::{Connector, Endpoint, UpstreamIo};

use crate::body::Body;
use crate::config::model::UpstreamTimeouts;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// A pooled HTTP/1.1 client bound to one member's endpoint.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<Connector, Body>,
    endpoint: Endpoint,
    first_byte_timeout: Duration,
}

impl Client {
    pub fn new(endpoint: Endpoint, timeouts: &UpstreamTimeouts) -> Client {
        let connector = Connector::new(endpoint.clone(), timeouts.connect);
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(timeouts.idle)
            .pool_max_idle_per_host(1024)
            // Members are HTTP/1.1 servers; the front speaks h2 to clients only.
            .http1_preserve_header_case(false)
            .set_host(false)
            .build(connector);
        Client {
            inner,
            endpoint,
            first_byte_timeout: timeouts.first_byte,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn first_byte_timeout(&self) -> Duration {
        self.first_byte_timeout
    }

    /// The URI authority used for this member's requests; the pool key of the inner client.
    pub fn authority(&self) -> &'static str {
        // Every Client talks to exactly one endpoint, so one constant key is enough.
        "member"
    }

    /// Send a request whose URI is origin-form (`/path?query`). The inner client needs an
    /// absolute URI for its pool key; the connector ignores it and dials the endpoint.
    pub async fn send(
        &self,
        mut req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        let pq = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let scheme = if self.endpoint.is_tls() { "https" } else { "http" };
        let uri = format!("{scheme}://{}{pq}", self.authority());
        *req.uri_mut() = uri.parse().expect("origin-form path makes a valid URI");
        self.inner.request(req).await
    }
}
