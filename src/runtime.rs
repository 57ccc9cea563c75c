//! The front's threads: thread-per-core, as nginx's workers and HAProxy's threads.
//!
//! `workers: N` OS threads, each with its own current-thread tokio runtime. A client
//! connection lives on one thread from accept to close, and so do the member
//! connections it uses (the upstream client keeps its idle connections per thread, see
//! [`shard`]): the request path takes no lock another thread contends for and wakes no
//! task on another thread. tokio's multi-thread runtime cost about half again as much CPU
//! per request on small responses (work stealing, cross-thread wake-ups; BENCHMARKS.md).
//!
//! Admin, supervisor, health checks and reloads stay on the runtime that started the
//! front; they are not on the request path.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::runtime::Handle;

thread_local! {
    /// This thread's index among the front threads; `usize::MAX` on any other thread.
    static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// How many front threads this process runs (0 before any started).
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// The front thread the caller runs on, if it is one.
pub fn current() -> Option<usize> {
    let i = INDEX.with(Cell::get);
    (i != usize::MAX).then_some(i)
}

/// How many per-thread shards a structure kept per front thread needs: one per front
/// thread plus one shared by every other thread (the admin runtime, health checks,
/// tests that run the front on their own runtime).
pub fn shards() -> usize {
    COUNT.load(Ordering::Relaxed) + 1
}

/// The caller's shard, below [`shards`]`()` (a structure sized before the threads
/// started clamps it: see [`shard_in`]).
pub fn shard() -> usize {
    current().unwrap_or_else(|| COUNT.load(Ordering::Relaxed))
}

/// The caller's shard in a structure of `len` shards: the last one serves every thread
/// the structure was not sized for.
pub fn shard_in(len: usize) -> usize {
    match current() {
        Some(i) if i + 1 < len => i,
        _ => len - 1,
    }
}

/// `workers: auto`: the CPUs this process may use (affinity mask, cgroup CPU quota),
/// as `std::thread::available_parallelism` reads them.
pub fn auto_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One thread's place: the runtime to spawn on and the connections it holds, which the
/// accept hand-off reads to keep the threads balanced.
pub struct Thread {
    handle: Handle,
    open: AtomicUsize,
}

impl Thread {
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Client connections this thread holds.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// The set of threads a front accepts and serves on.
pub struct Threads {
    threads: Vec<Thread>,
    /// Dropped with the set: every thread's runtime then finishes its `block_on` and its
    /// tasks are dropped. Empty when the set borrows the caller's runtime.
    _stop: Option<tokio::sync::watch::Sender<()>>,
}

impl Threads {
    /// The caller's runtime as the only "thread": the front serves where it was started.
    /// What tests and embedders get from `Front::start`.
    pub fn current() -> Arc<Threads> {
        Arc::new(Threads {
            threads: vec![Thread {
                handle: Handle::current(),
                open: AtomicUsize::new(0),
            }],
            _stop: None,
        })
    }

    /// Start `n` front threads (at least one), each on a current-thread runtime.
    pub fn spawn(n: usize) -> std::io::Result<Arc<Threads>> {
        let n = n.max(1);
        let (stop, stop_rx) = tokio::sync::watch::channel(());
        let mut threads = Vec::with_capacity(n);
        COUNT.fetch_max(n, Ordering::Relaxed);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            threads.push(Thread {
                handle: rt.handle().clone(),
                open: AtomicUsize::new(0),
            });
            let mut stop_rx = stop_rx.clone();
            std::thread::Builder::new()
                .name(format!("roost-front-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(i));
                    rt.block_on(async move {
                        let _ = stop_rx.changed().await;
                    });
                })?;
        }
        Ok(Arc::new(Threads {
            threads,
            _stop: Some(stop),
        }))
    }

    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    pub fn get(&self, i: usize) -> &Thread {
        &self.threads[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Thread> {
        self.threads.iter()
    }

    /// Run `fut` on thread `i`.
    pub fn spawn_on<F>(&self, i: usize, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.threads[i].handle.spawn(fut);
    }

    /// Where a connection accepted on thread `here` should run: `here`, unless it holds
    /// more than its share, then the thread with the fewest connections (HAProxy's
    /// accept hand-off). The slack keeps most connections on the thread that accepted
    /// them (a hand-off costs a re-registration and a cross-thread wake-up) while no
    /// thread can pile up more than a few more than the least loaded one.
    pub fn place(&self, here: usize) -> usize {
        if self.threads.len() == 1 {
            return here;
        }
        let mine = self.threads[here].open();
        let (least, fewest) = self
            .threads
            .iter()
            .enumerate()
            .map(|(i, t)| (i, t.open()))
            .min_by_key(|&(_, n)| n)
            .unwrap_or((here, mine));
        let total: usize = self.threads.iter().map(Thread::open).sum();
        let slack = (total / (8 * self.threads.len())).max(1);
        if mine > fewest + slack {
            least
        } else {
            here
        }
    }

    /// Count a connection on thread `i` until the guard drops.
    pub fn hold(self: &Arc<Self>, i: usize) -> Held {
        self.threads[i].open.fetch_add(1, Ordering::Relaxed);
        Held {
            threads: self.clone(),
            i,
        }
    }
}

/// A connection counted on its thread.
pub struct Held {
    threads: Arc<Threads>,
    i: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.threads.threads[self.i]
            .open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_past_its_share_hands_off_to_the_least_loaded() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _g = rt.enter();
        let threads = Arc::new(Threads {
            threads: (0..2)
                .map(|_| Thread {
                    handle: Handle::current(),
                    open: AtomicUsize::new(0),
                })
                .collect(),
            _stop: None,
        });
        let mut held = Vec::new();
        // Thread 0 accepts everything: placement spreads it.
        for _ in 0..100 {
            let to = threads.place(0);
            held.push(threads.hold(to));
        }
        let (a, b) = (threads.get(0).open(), threads.get(1).open());
        assert_eq!(a + b, 100);
        // The slack at 100 connections over 2 threads is 100 / 16 = 6.
        assert!(a.abs_diff(b) <= 2 * 6 + 1, "{a} / {b}");
        drop(held);
        assert_eq!(threads.get(0).open() + threads.get(1).open(), 0);
    }

    #[test]
    fn front_threads_know_their_index_and_serve_spawned_work() {
        let threads = Threads::spawn(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..2 {
            let tx = tx.clone();
            threads.spawn_on(i, async move {
                tx.send((i, current())).unwrap();
            });
        }
        let mut got: Vec<_> = (0..2).map(|_| rx.recv().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![(0, Some(0)), (1, Some(1))]);
        assert_eq!(current(), None);
        assert!(shards() >= 3);
    }
}
