//! `pools.<name>.worker`: the built-in worker's thread pools, routes and blocking detection.

use super::ctx::{Ctx, KeyPath, Sub};
use super::parse::{cores, leaf_value};
use crate::config::leaf::Leaf;
use crate::config::model::{NamedThreadPool, WorkerSettings, DEFAULT_BLOCKING_DETECTION_INTERVAL};
use crate::config::raw::RawWorker;
use crate::config::tree::suggest;
use std::collections::BTreeMap;
use std::time::Duration;

pub(super) fn validate_worker(
    w: Option<&RawWorker>,
    p: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> WorkerSettings {
    let get = |sel: fn(&RawWorker) -> &Leaf| w.and_then(|w| sel(w).clone());
    let app = ctx
        .name(&get(|r| &r.app), &Sub(&p, "app"))
        .unwrap_or_else(|| "demo".to_string());
    let min_worker_threads = ctx.opt_usize(
        &get(|r| &r.min_worker_threads),
        &Sub(&p, "minWorkerThreads"),
        1,
    );
    let max_worker_threads = ctx.opt_usize(
        &get(|r| &r.max_worker_threads),
        &Sub(&p, "maxWorkerThreads"),
        1,
    );
    if let (Some(min), Some(max)) = (min_worker_threads, max_worker_threads) {
        if min > max {
            let v = get(|r| &r.min_worker_threads).map(|s| s.0);
            ctx.report(
                &Sub(&p, "minWorkerThreads"),
                v.as_ref(),
                format!("must not exceed maxWorkerThreads ({max})"),
            );
        }
    }
    let io_threads = ctx.opt_usize(&get(|r| &r.io_threads), &Sub(&p, "ioThreads"), 1);
    let request_queue_limit = ctx.usize(
        &get(|r| &r.request_queue_limit),
        &Sub(&p, "requestQueueLimit"),
        5000,
        1,
    );
    let max_concurrent_requests_per_cpu = ctx.usize(
        &get(|r| &r.max_concurrent_requests_per_cpu),
        &Sub(&p, "maxConcurrentRequestsPerCPU"),
        5000,
        0,
    );
    let max_concurrent_threads_per_cpu = ctx.usize(
        &get(|r| &r.max_concurrent_threads_per_cpu),
        &Sub(&p, "maxConcurrentThreadsPerCPU"),
        0,
        0,
    );

    let pools = validate_thread_pools(w, p, ctx);
    let routes = validate_routes(w, p, &pools, ctx);
    let (blocking_detection, blocking_detection_interval) = validate_blocking_detection(w, p, ctx);
    WorkerSettings {
        app,
        min_worker_threads,
        max_worker_threads,
        io_threads,
        request_queue_limit,
        max_concurrent_requests_per_cpu,
        max_concurrent_threads_per_cpu,
        pools,
        routes,
        blocking_detection,
        blocking_detection_interval,
    }
}

/// `worker.pools`: named thread pools (`min` ≤ `max`, `max` defaulting to the cores).
fn validate_thread_pools(
    w: Option<&RawWorker>,
    p: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> BTreeMap<String, NamedThreadPool> {
    let mut pools = BTreeMap::new();
    if let Some(w) = w {
        let pp = Sub(&p, "pools");
        for (name, rp) in ctx.entries(&w.pools, &pp, "a thread pool (a map with min, max)") {
            let np = Sub(&pp, name);
            let min = ctx.usize(&rp.min, &Sub(&np, "min"), 1, 1);
            let max = ctx.usize(&rp.max, &Sub(&np, "max"), min.max(cores()), 1);
            if min > max {
                ctx.report(
                    &Sub(&np, "min"),
                    leaf_value(&rp.min),
                    format!("must not exceed max ({max})"),
                );
            }
            pools.insert(name.to_string(), NamedThreadPool { min, max });
        }
    }
    pools
}

/// `worker.routes`: path prefix → one of the named thread `pools`.
fn validate_routes(
    w: Option<&RawWorker>,
    p: &dyn KeyPath,
    pools: &BTreeMap<String, NamedThreadPool>,
    ctx: &mut Ctx<'_>,
) -> BTreeMap<String, String> {
    let mut routes = BTreeMap::new();
    if let Some(map) = w.and_then(|w| ctx.nested(&w.routes, &Sub(&p, "routes"), "a map")) {
        for (prefix, target) in map {
            let rp = format!("{}.{prefix}", Sub(&p, "routes"));
            if !prefix.starts_with('/') {
                ctx.report(&rp, None, "a route prefix must start with `/`");
                continue;
            }
            let Some(t) = ctx.text_of(&target.0, &rp) else {
                continue;
            };
            if !pools.contains_key(&t) {
                let msg = match suggest(&t, pools.keys().map(String::as_str)) {
                    Some(s) => format!("no such worker thread pool (did you mean `{s}`?)"),
                    None => format!(
                        "no such worker thread pool (define it under {})",
                        Sub(&p, "pools")
                    ),
                };
                ctx.report(&rp, Some(&target.0), msg);
                continue;
            }
            routes.insert(prefix.clone(), t);
        }
    }
    routes
}

/// `worker.blockingDetection` (bool, default true) and `worker.blockingDetectionInterval`
/// (1 ms to 10 s, default 50 ms): below 1 ms the monitor would mostly measure itself; a
/// period beyond 10 s would react after a typical burst is over.
pub(super) fn validate_blocking_detection(
    w: Option<&RawWorker>,
    p: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> (bool, Duration) {
    const DEFAULT: Duration = DEFAULT_BLOCKING_DETECTION_INTERVAL;
    let get = |sel: fn(&RawWorker) -> &Leaf| w.and_then(|w| sel(w).clone());
    let on = ctx.boolean(
        &get(|r| &r.blocking_detection),
        &Sub(p, "blockingDetection"),
        true,
    );
    let key = Sub(&p, "blockingDetectionInterval");
    let raw = get(|r| &r.blocking_detection_interval);
    let interval = ctx.duration(&raw, &key, DEFAULT, true);
    let range = Duration::from_millis(1)..=Duration::from_secs(10);
    if !range.contains(&interval) {
        let why = format!("must be between 1ms and 10s (got {interval:?})");
        ctx.report(&key, raw.as_ref().map(|s| &s.0), why);
        return (on, DEFAULT);
    }
    (on, interval)
}
