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
mod error;

pub use crate::h1::{Forwarded, X_FORWARDED_FOR};
pub use client::{Client, ForwardError, Upgraded, UpstreamBody};
pub use connector::Endpoint;
pub use error::{is_invalid_data, UpstreamError};

/// Why a pooled member connection was closed instead of reused
/// (`roost_upstream_connections_discarded_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// The member sent bytes no request asked for: after a complete response, or while
    /// the connection sat idle. Reusing it would hand them to the next request.
    StrayBytes,
    /// The member closed the idle connection (or it failed).
    Closed,
    /// It sat idle longer than the member's idle timeout.
    IdleTimeout,
}

impl Discard {
    pub const ALL: [Discard; 3] = [Discard::StrayBytes, Discard::Closed, Discard::IdleTimeout];

    pub fn as_str(self) -> &'static str {
        match self {
            Discard::StrayBytes => "stray_bytes",
            Discard::Closed => "closed",
            Discard::IdleTimeout => "idle_timeout",
        }
    }

    /// Connections discarded for this reason since start, across all members.
    pub fn count(self) -> u64 {
        DISCARDED[self as usize].load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn record(self) {
        DISCARDED[self as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

static DISCARDED: [std::sync::atomic::AtomicU64; 3] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 3];

/// Requests a member client sent again on its own (`roost_upstream_retries_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Written on a pooled connection the member closed without answering (the
    /// keep-alive race), then sent again: a retry after a send, not a connect failure.
    AfterSend,
}

impl Retry {
    pub fn as_str(self) -> &'static str {
        match self {
            Retry::AfterSend => "after_send",
        }
    }

    pub fn count(self) -> u64 {
        RETRIES.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn record(self) {
        RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

static RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
