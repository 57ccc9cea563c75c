//! The pool keys that shape its queue (issue 17): `queueDiscipline`, `queueTargetDelay`,
//! `queueInterval`, `rejectStatus`, `retryAfter: auto`, and (in their own files)
//! `fairness` and `priorities`. The model types live here, apart from the rest of the
//! pool (their checks in `validate/queue.rs`), so the queue can grow (fairness,
//! priority classes, ordering) without touching the pool's other sections.

use std::time::Duration;

/// The order in which a pool serves its waiting requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueDiscipline {
    /// Strict arrival order until `queueLength` or `queueTimeout` (HTTP.sys, IIS).
    #[default]
    Fifo,
    /// CoDel-style: when the minimum queue wait over an interval stays above the target,
    /// the queue is served newest first and requests that cannot be served in time are
    /// shed at once ("Fail at Scale", ACM Queue 2015).
    Adaptive,
}

impl QueueDiscipline {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueDiscipline::Fifo => "fifo",
            QueueDiscipline::Adaptive => "adaptive",
        }
    }
}

/// How a pool's queue orders, sheds and answers the requests it refuses.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePolicy {
    pub discipline: QueueDiscipline,
    /// `adaptive`: the queue wait a standing queue may keep (CoDel's target, 5 ms).
    pub target_delay: Duration,
    /// `adaptive`: the window whose minimum wait decides overload (CoDel's interval, 100 ms).
    pub interval: Duration,
    /// Status of `QueueFull` refusals: 503 (default) or 429.
    pub queue_full_status: u16,
    /// Status of `Shed` refusals: 503 (default) or 429.
    pub shed_status: u16,
    /// `retryAfter: auto`: `Retry-After` from the measured drain rate, not a constant.
    pub retry_after_auto: bool,
    /// `fairness`: sub-queues per application, header or client, served by weighted
    /// deficit round robin (`config/fairness.rs`).
    pub fairness: Option<super::fairness::Fairness>,
    /// `priorities`: the classes, highest first, with exactly one default class; empty
    /// without the key (`config/priority.rs`).
    pub priorities: Vec<super::priority::PriorityClass>,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        QueuePolicy {
            discipline: QueueDiscipline::Fifo,
            target_delay: Duration::from_millis(5),
            interval: Duration::from_millis(100),
            queue_full_status: 503,
            shed_status: 503,
            retry_after_auto: false,
            fairness: None,
            priorities: Vec::new(),
        }
    }
}
