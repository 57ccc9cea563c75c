//! Request coalescing (nginx `proxy_cache_lock`, ARR request consolidation): the first
//! miss on a key becomes its fill's leader and goes to the member; later misses on the
//! key wait, without a queue slot, for the fill's outcome, signalled once (never polled).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How a fill ended, as its waiters see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillState {
    Pending,
    /// The response was stored: look up again.
    Stored,
    /// The response may not be stored (uncacheable or too large): each waiter goes to
    /// the member on its own, at once (no serial hand-over as in nginx).
    Pass,
    /// The member failed: serve stale if allowed, else go on your own.
    Failed,
    /// The leader went away mid-fill (its client left): compete for a new fill.
    Retry,
}

#[derive(Default)]
pub struct Fills {
    map: Mutex<HashMap<Arc<str>, watch::Sender<FillState>>>,
}

pub enum Join {
    Leader(FillGuard),
    Waiter(watch::Receiver<FillState>),
}

impl Fills {
    /// Lead a fill of `key`, or wait for the one under way.
    pub fn join(self: &Arc<Self>, key: &Arc<str>) -> Join {
        let mut map = self.map.lock();
        if let Some(tx) = map.get(key) {
            return Join::Waiter(tx.subscribe());
        }
        let (tx, _) = watch::channel(FillState::Pending);
        map.insert(key.clone(), tx);
        Join::Leader(FillGuard {
            fills: self.clone(),
            key: key.clone(),
            done: false,
        })
    }

    /// Whether a fill of `key` is under way (a stale-while-revalidate refresh need not
    /// start another).
    pub fn busy(&self, key: &str) -> bool {
        self.map.lock().contains_key(key)
    }

    /// Fills under way.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Wait (bounded) for a fill's outcome; `None` when it took longer than `limit`.
pub async fn wait(mut rx: watch::Receiver<FillState>, limit: Duration) -> Option<FillState> {
    let r = tokio::time::timeout(limit, rx.wait_for(|s| *s != FillState::Pending)).await;
    match r {
        Ok(Ok(s)) => Some(*s),
        // The sender is always told before it is dropped; a closed channel is a retry.
        Ok(Err(_)) => Some(FillState::Retry),
        Err(_) => None,
    }
}

/// The leader's hold on a fill; dropping it unfinished tells waiters to retry.
pub struct FillGuard {
    fills: Arc<Fills>,
    key: Arc<str>,
    done: bool,
}

impl FillGuard {
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    pub fn finish(mut self, state: FillState) {
        self.end(state);
    }

    fn end(&mut self, state: FillState) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(tx) = self.fills.map.lock().remove(&self.key) {
            tx.send_replace(state);
        }
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        self.end(FillState::Retry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_and_waiters_hear_the_outcome() {
        let fills = Arc::new(Fills::default());
        let key: Arc<str> = Arc::from("k");
        let Join::Leader(g) = fills.join(&key) else {
            panic!("first is the leader")
        };
        let Join::Waiter(rx) = fills.join(&key) else {
            panic!("second waits")
        };
        g.finish(FillState::Stored);
        assert_eq!(
            wait(rx, Duration::from_secs(5)).await,
            Some(FillState::Stored)
        );
        assert!(fills.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_leader_means_retry_and_a_slow_one_a_timeout() {
        let fills = Arc::new(Fills::default());
        let key: Arc<str> = Arc::from("k");
        let Join::Leader(g) = fills.join(&key) else {
            panic!()
        };
        let Join::Waiter(rx) = fills.join(&key) else {
            panic!()
        };
        assert_eq!(wait(rx.clone(), Duration::from_millis(10)).await, None);
        drop(g);
        assert_eq!(
            wait(rx, Duration::from_secs(5)).await,
            Some(FillState::Retry)
        );
    }
}
