//! Upstream: the connection to a pool member (a local worker over a Unix socket or TCP,
//! or a farm server over TCP/TLS), with pooled keep-alive connections.
//!
//! Each member owns one [`Client`], so its idle connections are pooled per member and
//! closed when the member leaves its pool. The pool is our own (not hyper-util's legacy
//! client) for one reason: a request that was never written — the connect failed, or a
//! pooled connection turned out closed — comes back to the caller intact, so the front
//! can retry it on another member without buffering its body.

mod client;
mod connector;

pub use crate::h1::{Forwarded, X_FORWARDED_FOR};
pub use client::{Client, ForwardError, Upgraded, UpstreamBody, UpstreamError};
pub use connector::Endpoint;
