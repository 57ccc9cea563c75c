//! What the front records of a request, and the connection it came on: one home that
//! the server, the proxy step and the access log all import (none of them imports
//! another for it).

use crate::body::Body;
use crate::error::Reason;
use http::uri::PathAndQuery;
use http::{header, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the front knows about the connection a request arrived on.
#[derive(Clone, Copy)]
pub struct ConnInfo {
    /// The configured listen address (the router's key).
    pub listen: SocketAddr,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub tls: bool,
}

/// A finished request, as the access log and counters see it. Its fields share the
/// request's own buffers (method, target, user agent) and the pool's name: building one
/// copies no string.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// `None` for a request refused before its head could be read (400, 431, 408).
    pub method: Option<http::Method>,
    /// Path and query as the client sent them (`None` as for `method`).
    pub target: Option<PathAndQuery>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub user_agent: Option<http::HeaderValue>,
    pub status: u16,
    pub elapsed: Duration,
    pub pool: Option<Arc<str>>,
    pub worker_pid: Option<u32>,
    pub queue_wait: Option<Duration>,
    pub reason: Option<Reason>,
    /// What the pool's response cache did (`None`: the pool has no cache).
    pub cache: Option<crate::cache::Status>,
}

/// The rejection that closes the connection instead of answering
/// (`loadBalancerCapabilities: TcpLevel`): a load balancer in front sees a TCP failure.
#[derive(Debug, thiserror::Error)]
#[error("connection closed instead of answering: {0}")]
pub struct CloseConnection(pub Reason);

impl RequestRecord {
    /// The record of a request as it arrived (status and timings filled in later). The
    /// user agent is only looked up when an access log will write it (`logged`).
    pub(super) fn of(req: &Request<Body>, conn: &ConnInfo, logged: bool) -> RequestRecord {
        RequestRecord {
            method: Some(req.method().clone()),
            target: Some(
                req.uri()
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/")),
            ),
            local: conn.local,
            peer: conn.peer,
            user_agent: logged
                .then(|| req.headers().get(header::USER_AGENT).cloned())
                .flatten(),
            status: 0,
            elapsed: Duration::ZERO,
            pool: None,
            worker_pid: None,
            queue_wait: None,
            reason: None,
            cache: None,
        }
    }
}
