//! Which route each busy worker-pool thread is running, and since when: the evidence that
//! lets a diagnosis say "`/block` held 25 of 25 threads for 480 ms on average" instead of
//! only "the pool is starved". Tracked at the dispatch layer (the job a sync handler
//! becomes), so the thread pool itself stays unaware of HTTP.

pub use super::counters::BusyRoute;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The threads running handlers right now, by ticket.
#[derive(Default)]
pub struct BusyRoutes {
    next: AtomicU64,
    running: Mutex<HashMap<u64, (Arc<str>, Instant)>>,
}

/// Removes its thread from [`BusyRoutes`] when the handler returns (or panics).
pub struct BusyGuard {
    owner: Arc<BusyRoutes>,
    ticket: u64,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.owner.running.lock().remove(&self.ticket);
    }
}

impl BusyRoutes {
    /// The calling thread starts running `route`.
    pub fn enter(self: &Arc<Self>, route: Arc<str>) -> BusyGuard {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        self.running.lock().insert(ticket, (route, Instant::now()));
        BusyGuard {
            owner: self.clone(),
            ticket,
        }
    }

    /// Busy threads grouped by route, most threads first.
    pub fn snapshot(&self) -> Vec<BusyRoute> {
        let now = Instant::now();
        let mut by: BTreeMap<Arc<str>, (usize, f64, f64)> = BTreeMap::new();
        for (route, since) in self.running.lock().values() {
            let ms = now.duration_since(*since).as_secs_f64() * 1000.0;
            let e = by.entry(route.clone()).or_default();
            e.0 += 1;
            e.1 += ms;
            e.2 = e.2.max(ms);
        }
        let mut out: Vec<BusyRoute> = by
            .into_iter()
            .map(|(route, (threads, sum, max))| BusyRoute {
                route: route.to_string(),
                threads,
                avg_ms: (sum / threads as f64).round(),
                max_ms: max.round(),
            })
            .collect();
        out.sort_by(|a, b| b.threads.cmp(&a.threads).then(a.route.cmp(&b.route)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_threads_are_grouped_by_route_and_leave_when_done() {
        let b = Arc::new(BusyRoutes::default());
        let block: Arc<str> = "/block".into();
        let g1 = b.enter(block.clone());
        let g2 = b.enter(block);
        let g3 = b.enter("/cpu".into());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let s = b.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].route.as_str(), s[0].threads), ("/block", 2));
        assert!(s[0].avg_ms >= 20.0 && s[0].max_ms >= s[0].avg_ms, "{s:?}");
        assert_eq!((s[1].route.as_str(), s[1].threads), ("/cpu", 1));
        drop((g1, g3));
        let s = b.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].threads, 1);
        drop(g2);
        assert!(b.snapshot().is_empty());
    }
}
