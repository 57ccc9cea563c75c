//! One error vocabulary: every response roost generates itself comes from here.
//!
//! Each [`Reason`] maps to a status, a `Retry-After` where it is a 503, and the
//! `x-roost-reason` header (after HTTP.sys httperr.log). The access log records the same
//! name, so an operator can grep one word from the client's response to the log line.

use crate::body::{self, Body};
use http::{header, HeaderValue, Response, StatusCode};
use std::time::Duration;

/// Header naming why roost answered a request itself.
pub const REASON_HEADER: &str = "x-roost-reason";
/// [`REASON_HEADER`] as a header name, for maps (no parsing of the string per use).
pub static REASON_HEADER_NAME: http::HeaderName = http::HeaderName::from_static(REASON_HEADER);

/// Why roost answered instead of an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The pool's queue was at `queueLength`.
    QueueFull,
    /// The request waited in the pool queue past `queueTimeout`.
    QueueTimeout,
    /// The pool's adaptive discipline shed the request: the queue stood above its target
    /// delay, and this request would not have been served in time.
    Shed,
    /// Rapid-fail protection stopped the pool.
    AppOffline,
    /// An operator stopped the pool.
    Disabled,
    /// A worker's `requestQueueLimit` was reached.
    ServerTooBusy,
    /// No connection to the member could be made, or it failed before a response.
    ConnectFailed,
    /// The member broke HTTP (a malformed or ambiguous response head).
    BadGateway,
    /// The member did not answer within the first-byte timeout.
    BackendTimeout,
    /// No site/application matched, or the path is reserved.
    NoRoute,
    /// The client went away before it was answered (logged only).
    ClientGone,
    /// The request was malformed (framing, Host, headers).
    BadRequest,
    /// Request line plus headers were too large.
    HeadersTooLarge,
}

/// Which side is at fault, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::QueueFull,
        Reason::QueueTimeout,
        Reason::Shed,
        Reason::AppOffline,
        Reason::Disabled,
        Reason::ServerTooBusy,
        Reason::ConnectFailed,
        Reason::BadGateway,
        Reason::BackendTimeout,
        Reason::NoRoute,
        Reason::ClientGone,
        Reason::BadRequest,
        Reason::HeadersTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::QueueFull => "QueueFull",
            Reason::QueueTimeout => "QueueTimeout",
            Reason::Shed => "Shed",
            Reason::AppOffline => "AppOffline",
            Reason::Disabled => "Disabled",
            Reason::ServerTooBusy => "ServerTooBusy",
            Reason::ConnectFailed => "ConnectFailed",
            Reason::BadGateway => "BadGateway",
            Reason::BackendTimeout => "BackendTimeout",
            Reason::NoRoute => "NoRoute",
            Reason::ClientGone => "ClientGone",
            Reason::BadRequest => "BadRequest",
            Reason::HeadersTooLarge => "HeadersTooLarge",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Reason::QueueFull
            | Reason::QueueTimeout
            | Reason::Shed
            | Reason::AppOffline
            | Reason::Disabled
            | Reason::ServerTooBusy => StatusCode::SERVICE_UNAVAILABLE,
            Reason::ConnectFailed | Reason::BadGateway => StatusCode::BAD_GATEWAY,
            Reason::BackendTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reason::NoRoute => StatusCode::NOT_FOUND,
            // 499 is nginx's "client closed request"; it is only ever logged.
            Reason::ClientGone => StatusCode::from_u16(499).expect("valid status"),
            Reason::BadRequest => StatusCode::BAD_REQUEST,
            Reason::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    pub fn side(self) -> Side {
        match self {
            Reason::ClientGone | Reason::BadRequest | Reason::HeadersTooLarge | Reason::NoRoute => {
                Side::Client
            }
            Reason::ConnectFailed
            | Reason::BadGateway
            | Reason::BackendTimeout
            | Reason::ServerTooBusy => Side::Upstream,
            Reason::QueueFull
            | Reason::QueueTimeout
            | Reason::Shed
            | Reason::AppOffline
            | Reason::Disabled => Side::Internal,
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The response roost sends for this reason. `retry_after` is used for 503s.
    pub fn response(self, retry_after: Duration) -> Response<Body> {
        self.response_as(self.status(), retry_after)
    }

    /// [`Reason::response`] with the status a pool's `rejectStatus` chose (a 429 also
    /// carries `Retry-After`, RFC 6585 section 4).
    pub fn response_as(self, status: StatusCode, retry_after: Duration) -> Response<Body> {
        let text = format!("{} {}\n", status.as_u16(), self.as_str());
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(&REASON_HEADER_NAME, HeaderValue::from_static(self.as_str()));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            // Whole seconds, rounded up: a computed 1.2 s must not invite a retry at 1 s.
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_503_has_retry_after_and_reason() {
        for r in Reason::ALL {
            let resp = r.response(Duration::from_secs(5));
            assert_eq!(resp.headers()[REASON_HEADER], r.as_str());
            if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
            }
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
    }
}
