//! A minimal stand-in for the worker thread pool, with the same API as
//! `worker::threadpool` (built on its own branch), so the server compiles and runs before
//! that lands. It grows on demand up to `max` and retires idle threads; no hill climbing.

use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug, Clone)]
pub struct ThreadPoolConfig {
    pub name: String,
    pub min: usize,
    pub max: usize,
}

impl ThreadPoolConfig {
    pub fn new(name: impl Into<String>, min: usize, max: usize) -> Self {
        ThreadPoolConfig {
            name: name.into(),
            min,
            max: max.max(min).max(1),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("the task panicked")]
pub struct TaskPanicked;

#[derive(Debug, Clone, Serialize)]
pub struct Counters {
    pub threads: usize,
    pub busy: usize,
    pub queued: usize,
    pub goal: usize,
    pub min: usize,
    pub max: usize,
    pub completed: u64,
    pub injections: BTreeMap<&'static str, u64>,
}

struct State {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    min: usize,
    max: usize,
    shutdown: bool,
}

pub struct ThreadPool {
    name: String,
    state: Mutex<State>,
    cv: Condvar,
    completed: AtomicU64,
    injected: AtomicU64,
}

impl ThreadPool {
    pub fn new(cfg: ThreadPoolConfig) -> Arc<ThreadPool> {
        let pool = Arc::new(ThreadPool {
            name: cfg.name,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                min: cfg.min,
                max: cfg.max,
                shutdown: false,
            }),
            cv: Condvar::new(),
            completed: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        });
        for _ in 0..cfg.min {
            pool.state.lock().threads += 1;
            pool.start_thread();
        }
        pool
    }

    fn start_thread(self: &Arc<Self>) {
        let me = self.clone();
        std::thread::Builder::new()
            .name(format!("roost-{}", self.name))
            .spawn(move || me.thread_main())
            .expect("spawn worker thread");
    }

    fn thread_main(self: Arc<Self>) {
        let mut st = self.state.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                let _ = catch_unwind(AssertUnwindSafe(job));
                self.completed.fetch_add(1, Ordering::Relaxed);
                st = self.state.lock();
                continue;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let timed_out = self
                .cv
                .wait_for(&mut st, Duration::from_secs(20))
                .timed_out();
            st.idle -= 1;
            if timed_out && st.queue.is_empty() && st.threads > st.min {
                break;
            }
        }
        st.threads -= 1;
    }

    pub fn spawn<F: FnOnce() + Send + 'static>(self: &Arc<Self>, f: F) {
        let mut st = self.state.lock();
        st.queue.push_back(Box::new(f));
        if st.idle >= st.queue.len() {
            self.cv.notify_one();
        } else if st.threads < st.max {
            st.threads += 1;
            self.injected.fetch_add(1, Ordering::Relaxed);
            drop(st);
            self.start_thread();
        }
    }

    pub async fn run<F, R>(self: &Arc<Self>, f: F) -> Result<R, TaskPanicked>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            _ => Err(TaskPanicked),
        }
    }

    pub fn set_limits(&self, min: usize, max: usize) {
        let mut st = self.state.lock();
        st.min = min;
        st.max = max.max(min).max(1);
    }

    pub fn counters(&self) -> Counters {
        let st = self.state.lock();
        let mut injections = BTreeMap::new();
        injections.insert("demand", self.injected.load(Ordering::Relaxed));
        Counters {
            threads: st.threads,
            busy: st.threads - st.idle,
            queued: st.queue.len(),
            goal: st.threads,
            min: st.min,
            max: st.max,
            completed: self.completed.load(Ordering::Relaxed),
            injections,
        }
    }

    pub fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.cv.notify_all();
    }
}

/// Run `f`, which may block; the real pool uses this hint to add a thread at once.
pub fn blocking<F: FnOnce() -> R, R>(f: F) -> R {
    f()
}
