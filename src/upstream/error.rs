//! Why a request to a member failed, and which [`Reason`] the client is given for it.
//! The classification lives here, beside the errors, so the proxy step only asks.

use crate::error::Reason;
use std::io;

/// Why a request to a member failed, and whether it can be retried elsewhere.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be made; the request was never sent.
    Connect(io::Error),
    /// The connection failed before any byte of the request was written.
    NotSent(io::Error),
    /// The request (idempotent, without a body) was written on a pooled connection that
    /// the member closed without answering, and a new connection then failed too. It can
    /// be sent again elsewhere, but it is a retry *after* a send.
    Unanswered(io::Error),
    /// The request was (at least partly) sent, then the exchange failed.
    Failed(io::Error),
    /// The member broke HTTP/1.1: a malformed or ambiguous response head.
    Protocol(io::Error),
    /// The client's request body failed (malformed chunk, stalled, cut short) before the
    /// member answered: the client's fault, not the member's.
    ClientBody(io::Error),
    /// No response head before the first-byte deadline.
    TimedOut,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "connect failed: {e}"),
            UpstreamError::NotSent(e) => write!(f, "connection closed before sending: {e}"),
            UpstreamError::Unanswered(e) => {
                write!(f, "sent on a connection closed unanswered, then: {e}")
            }
            UpstreamError::Failed(e) => write!(f, "upstream exchange failed: {e}"),
            UpstreamError::Protocol(e) => write!(f, "member broke HTTP/1.1: {e}"),
            UpstreamError::ClientBody(e) => write!(f, "client request body failed: {e}"),
            UpstreamError::TimedOut => write!(f, "no response before the first-byte timeout"),
        }
    }
}

impl std::error::Error for UpstreamError {}

impl UpstreamError {
    /// What the client is told (and the access log and rejection metrics record).
    pub fn reason(&self) -> Reason {
        match self {
            UpstreamError::Connect(_)
            | UpstreamError::NotSent(_)
            | UpstreamError::Unanswered(_)
            | UpstreamError::Failed(_) => Reason::ConnectFailed,
            UpstreamError::Protocol(_) => Reason::BadGateway,
            UpstreamError::TimedOut => Reason::BackendTimeout,
            // A malformed body is the client's 400; a stalled or cut one means the client
            // is gone (or as good as).
            UpstreamError::ClientBody(e) if is_invalid_data(e) => Reason::BadRequest,
            UpstreamError::ClientBody(_) => Reason::ClientGone,
        }
    }

    /// Whether the request was written to the member before this failure.
    pub fn was_sent(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unanswered(_) | UpstreamError::Failed(_) | UpstreamError::Protocol(_)
        )
    }

    /// Whether passive health counts the failure against the member: not a pooled
    /// connection it closed while idle, nor the client's own body.
    pub fn blames_member(&self) -> bool {
        !matches!(
            self,
            UpstreamError::NotSent(_) | UpstreamError::ClientBody(_)
        )
    }
}

/// Whether an error, or any error it wraps, is `InvalidData` (a framing error, not a
/// peer that stalled or went away). Errors arrive wrapped: upstream writer → body box.
pub fn is_invalid_data(e: &io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        match err.downcast_ref::<io::Error>() {
            Some(io) if io.kind() == io::ErrorKind::InvalidData => return true,
            Some(io) if io.get_ref().is_some() => cur = io.get_ref().map(|e| e as _),
            _ => cur = err.source(),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_names_its_reason() {
        let e = || io::Error::other("x");
        assert_eq!(UpstreamError::Connect(e()).reason(), Reason::ConnectFailed);
        assert_eq!(UpstreamError::Protocol(e()).reason(), Reason::BadGateway);
        assert_eq!(UpstreamError::TimedOut.reason(), Reason::BackendTimeout);
        let bad = io::Error::new(io::ErrorKind::InvalidData, "bad chunk");
        let wrapped = io::Error::other(Box::new(bad) as Box<dyn std::error::Error + Send + Sync>);
        assert_eq!(
            UpstreamError::ClientBody(wrapped).reason(),
            Reason::BadRequest
        );
        let cut = io::Error::new(io::ErrorKind::UnexpectedEof, "client closed");
        assert_eq!(UpstreamError::ClientBody(cut).reason(), Reason::ClientGone);
        assert!(UpstreamError::Unanswered(e()).was_sent());
        assert!(!UpstreamError::NotSent(e()).blames_member());
    }
}
