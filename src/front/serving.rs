//! The front as each request sees it ([`Serving`]): the [`State`] a reload swaps, the
//! in-flight registry, and the record of every finished request (the pool's counters and
//! the access log), with the answers roost gives itself. The server owns one and hands
//! it to every connection; the proxy step takes it, never the server.

use super::access_log::AccessLogger;
use super::inflight::Registry;
use super::record::{CloseConnection, RequestRecord};
use super::state::State;
use crate::body::{Body, BoxError};
use crate::cache::Status as CacheStatus;
use crate::config::model::Limits;
use crate::error::{Reason, Side};
use crate::pool::{Pool, QueueTag};
use arc_swap::ArcSwap;
use http::Response;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Aligned: every request clones the `Arc` (its counts get their own cache lines, apart
/// from the state pointer each request reads).
#[repr(align(128))]
pub struct Serving {
    state: ArcSwap<State>,
    /// Requests in flight (`/api/v1/requests`).
    pub inflight: Arc<Registry>,
    access_log: Option<AccessLogger>,
}

impl Serving {
    pub(super) fn new(state: State, access_log: Option<AccessLogger>) -> Serving {
        Serving {
            state: ArcSwap::from_pointee(state),
            inflight: Arc::new(Registry::default()),
            access_log,
        }
    }

    pub fn state(&self) -> arc_swap::Guard<Arc<State>> {
        self.state.load()
    }

    /// The state as it stands, kept (a reload compares it with the next).
    pub(super) fn state_full(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// A reload's new state, seen by every request that starts after it.
    pub(super) fn store(&self, state: State) {
        self.state.store(Arc::new(state));
    }

    pub fn limits(&self) -> Limits {
        self.state.load().config.limits.clone()
    }

    /// Whether finished requests are written to an access log.
    pub(super) fn logs(&self) -> bool {
        self.access_log.is_some()
    }

    /// Count and log a finished request.
    pub(super) fn record(&self, rec: &RequestRecord, pool: Option<&Arc<Pool>>) {
        if let Some(p) = pool {
            p.counters().observe_response(rec.status, rec.elapsed);
        }
        if let Some(log) = &self.access_log {
            log.write(rec);
        }
    }

    /// Write out what the access log holds (at shutdown).
    pub(super) fn flush_log(&self) {
        if let Some(log) = &self.access_log {
            log.flush();
        }
    }

    /// Answer a request from the cache, and record it.
    pub(super) fn served(
        &self,
        mut rec: RequestRecord,
        started: Instant,
        pool: &Arc<Pool>,
        resp: Response<Body>,
        status: CacheStatus,
    ) -> Response<Body> {
        rec.status = resp.status().as_u16();
        rec.cache = Some(status);
        rec.elapsed = started.elapsed();
        self.record(&rec, Some(pool));
        resp
    }

    /// Refuse a request: roost's own response, or for a client that is gone (`499` is
    /// only ever logged) a close, so no invented status reaches the wire.
    pub(super) fn refuse(
        &self,
        rec: RequestRecord,
        started: Instant,
        reason: Reason,
        by: Option<ByPool<'_>>,
    ) -> Result<Response<Body>, BoxError> {
        let resp = self.reject(rec, started, reason, by);
        if reason == Reason::ClientGone {
            return Err(Box::new(CloseConnection(reason)));
        }
        Ok(resp)
    }

    /// Answer a request roost refuses itself, and record it.
    fn reject(
        &self,
        mut rec: RequestRecord,
        started: Instant,
        reason: Reason,
        by: Option<ByPool<'_>>,
    ) -> Response<Body> {
        let pool = by.map(|b| b.pool);
        let resp = match by {
            Some(ByPool { pool: p, tag }) => {
                reason.response_as(p.reject_status(reason), p.retry_after_for(reason, tag))
            }
            None => reason.response(Duration::from_secs(5)),
        };
        rec.status = resp.status().as_u16();
        rec.reason = Some(reason);
        rec.elapsed = started.elapsed();
        if let Some(p) = pool {
            // The pool counts its own refusals (queue, state); failures to get an answer
            // from a member are counted here, each under its own reason.
            if reason.side() == Side::Upstream {
                p.counters().reject(reason);
            }
        }
        self.record(&rec, pool);
        resp
    }
}

/// The pool refusing a request, and the request's place in its queue: a refused request's
/// `Retry-After` (`retryAfter: auto`) counts only the waiters its class would wait behind.
#[derive(Clone, Copy)]
pub(super) struct ByPool<'a> {
    pub pool: &'a Arc<Pool>,
    pub tag: Option<&'a QueueTag>,
}

impl<'a> ByPool<'a> {
    pub fn of(pool: &'a Arc<Pool>, tag: Option<&'a QueueTag>) -> Self {
        ByPool { pool, tag }
    }
}
