//! `priorities`: a pool's requests in classes, highest first (issue 17 item 3).
//!
//! ```yaml
//! priorities:
//!   - {name: critical, path: /api/pay}       # path prefix, on segment boundaries
//!   - {name: normal}                         # no match rule: the default class
//!   - {name: bulk, header: "X-Bulk: 1"}      # "Name: value", or "Name" for present
//! ```
//!
//! A request takes the first class, in list order, whose rules it matches (`path` and
//! `header` together must both match); a request no class matches takes the default
//! class, the one entry without rules. Without such an entry an implicit `default` class
//! ranks last. The queue dispatches a higher class before any lower one, and when it is
//! full an arriving request evicts the lowest-class waiter the queue would serve last
//! (`pool/priority.rs`).
//!
//! The model type; the raw keys are in `raw/priority.rs`, their checks in
//! `validate/priority.rs`.

/// The most classes a pool may have (each is a lane in the queue and a metric label).
pub const MAX_CLASSES: usize = 8;

/// One priority class. Both rules absent: the default class.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityClass {
    pub name: String,
    /// A path prefix (`/api/pay` matches `/api/pay` and `/api/pay/x`, not `/api/payx`).
    pub path: Option<String>,
    /// A header, and the value it must have (`None`: present with any value).
    pub header: Option<(http::HeaderName, Option<http::HeaderValue>)>,
}

impl PriorityClass {
    pub fn is_default(&self) -> bool {
        self.path.is_none() && self.header.is_none()
    }
}
