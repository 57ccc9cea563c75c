//! `GET /.roost/metrics`: the worker's counters in Prometheus text format, under the
//! contract's metric names (`roost_worker_*`), so a standalone worker can be scraped too.
//!
//! Labels: `pool` (the app pool from `ROOST_POOL`, else the app name), `pid`, and
//! `thread_pool` for the worker pools (`default` or a dedicated pool's name).

use super::gate::{GateCounters, WAIT_BUCKETS};
use super::threadpool::ThreadPoolCounters;
use std::fmt::Write;

/// What one scrape shows.
pub struct Snapshot<'a> {
    pub pool: &'a str,
    pub pid: u32,
    pub io_threads: usize,
    pub gate: GateCounters,
    pub thread_pools: Vec<ThreadPoolCounters>,
}

/// Escape a label value (backslash, quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(s: &Snapshot<'_>) -> String {
    let mut o = String::with_capacity(2048);
    let base = format!("pool=\"{}\",pid=\"{}\"", esc(s.pool), s.pid);
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP roost_{name} {help}");
        let _ = writeln!(o, "# TYPE roost_{name} {kind}");
    };
    family(
        &mut o,
        "worker_threads",
        "gauge",
        "Threads by kind (worker pools and the I/O pool).",
    );
    let _ = writeln!(
        o,
        "roost_worker_threads{{{base},kind=\"io\",thread_pool=\"io\"}} {}",
        s.io_threads
    );
    for p in &s.thread_pools {
        let _ = writeln!(
            o,
            "roost_worker_threads{{{base},kind=\"worker\",thread_pool=\"{}\"}} {}",
            esc(&p.name),
            p.threads
        );
    }
    family(
        &mut o,
        "worker_threads_busy",
        "gauge",
        "Worker pool threads running a work item.",
    );
    for p in &s.thread_pools {
        let _ = writeln!(
            o,
            "roost_worker_threads_busy{{{base},thread_pool=\"{}\"}} {}",
            esc(&p.name),
            p.busy
        );
    }
    family(
        &mut o,
        "worker_thread_goal",
        "gauge",
        "Threads the worker pool lets run work at once (hill climbing, starvation, blocking).",
    );
    for p in &s.thread_pools {
        let _ = writeln!(
            o,
            "roost_worker_thread_goal{{{base},thread_pool=\"{}\"}} {}",
            esc(&p.name),
            p.goal
        );
    }
    family(
        &mut o,
        "worker_work_items_queued",
        "gauge",
        "Work items waiting in a worker pool's queue.",
    );
    for p in &s.thread_pools {
        let _ = writeln!(
            o,
            "roost_worker_work_items_queued{{{base},thread_pool=\"{}\"}} {}",
            esc(&p.name),
            p.queued
        );
    }
    family(
        &mut o,
        "worker_thread_injections_total",
        "counter",
        "Thread-count increases by cause.",
    );
    for p in &s.thread_pools {
        let i = &p.injections;
        for (reason, v) in [
            ("hill_climbing", i.hill_climbing),
            ("starvation", i.starvation),
            ("blocking", i.blocking),
        ] {
            let _ = writeln!(
                o,
                "roost_worker_thread_injections_total{{{base},thread_pool=\"{}\",reason=\"{reason}\"}} {v}",
                esc(&p.name)
            );
        }
    }
    family(
        &mut o,
        "worker_work_items_completed_total",
        "counter",
        "Work items the worker pools completed.",
    );
    for p in &s.thread_pools {
        let _ = writeln!(
            o,
            "roost_worker_work_items_completed_total{{{base},thread_pool=\"{}\"}} {}",
            esc(&p.name),
            p.completed
        );
    }
    let g = &s.gate;
    family(
        &mut o,
        "worker_requests_current",
        "gauge",
        "Requests in the worker, queued and executing.",
    );
    let _ = writeln!(o, "roost_worker_requests_current{{{base}}} {}", g.current);
    family(
        &mut o,
        "worker_requests_queued",
        "gauge",
        "Requests waiting in the gate's queue.",
    );
    let _ = writeln!(o, "roost_worker_requests_queued{{{base}}} {}", g.queued);
    family(
        &mut o,
        "worker_requests_executing",
        "gauge",
        "Requests past the gate.",
    );
    let _ = writeln!(
        o,
        "roost_worker_requests_executing{{{base}}} {}",
        g.executing
    );
    family(
        &mut o,
        "worker_requests_rejected_total",
        "counter",
        "Requests refused at requestQueueLimit (503 ServerTooBusy).",
    );
    let _ = writeln!(
        o,
        "roost_worker_requests_rejected_total{{{base}}} {}",
        g.rejected
    );
    family(
        &mut o,
        "worker_requests_disconnected_total",
        "counter",
        "Queued requests whose client went away.",
    );
    let _ = writeln!(
        o,
        "roost_worker_requests_disconnected_total{{{base}}} {}",
        g.disconnected
    );
    family(
        &mut o,
        "worker_requests_completed_total",
        "counter",
        "Requests that went through the gate and finished.",
    );
    let _ = writeln!(
        o,
        "roost_worker_requests_completed_total{{{base}}} {}",
        g.completed
    );
    family(
        &mut o,
        "worker_request_wait_seconds",
        "histogram",
        "Time requests waited in the gate's queue before starting (0 when admitted at once).",
    );
    let mut cumulative = 0;
    for (i, n) in g.wait.buckets.iter().enumerate() {
        cumulative += n;
        let le = WAIT_BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(
            o,
            "roost_worker_request_wait_seconds_bucket{{{base},le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        o,
        "roost_worker_request_wait_seconds_sum{{{base}}} {}",
        g.wait.sum_seconds
    );
    let _ = writeln!(
        o,
        "roost_worker_request_wait_seconds_count{{{base}}} {}",
        g.wait.count
    );
    o
}
