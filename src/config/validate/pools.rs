//! `pools.<name>`: queue settings and the sections around the backend (recycling,
//! failure); the backend itself is in `process.rs`, `worker.rs` or `farm.rs`.

use super::ctx::{dur, At, Ctx, KeyPath, Sub};
use super::farm::validate_farm;
use super::parse::parse_time_of_day;
use super::process::validate_process_model;
use super::{cache, ordering, queue};
use crate::config::leaf::Leaf;
use crate::config::model::{
    Backend, Failure, LoadBalancerCapabilities, Pool, Recycling, StartMode, UpstreamTimeouts,
};
use crate::config::raw::{RawConfig, RawFailure, RawPeriodicRestart, RawPool, RawRecycling};
use crate::config::threads::joined;
use serde_json::Value;
use std::collections::BTreeMap;

/// Pools past this many are checked in two halves on two threads (issue 12).
const SPLIT_ABOVE: usize = 512;

pub(super) fn validate_pools(raw: &RawConfig, ctx: &mut Ctx<'_>) -> BTreeMap<String, Pool> {
    let entries: Vec<(&str, &RawPool)> = ctx
        .entries(&raw.pools, "pools", "a pool (a map)")
        .into_iter()
        .map(|(name, rp)| (name, &**rp))
        .collect();
    if entries.len() <= SPLIT_ABOVE {
        return one_by_one(&entries, ctx).into_iter().collect();
    }
    let (first, second) = entries.split_at(entries.len() / 2);
    let mut other = ctx.fork();
    let (mut pools, rest) = std::thread::scope(|s| {
        let rest = s.spawn(|| one_by_one(second, &mut other));
        (one_by_one(first, ctx), joined(rest))
    });
    // In entry order, so the problems read as if one thread had found them.
    ctx.problems.append(&mut other.problems);
    pools.extend(rest);
    pools.into_iter().collect()
}

fn one_by_one(entries: &[(&str, &RawPool)], ctx: &mut Ctx<'_>) -> Vec<(String, Pool)> {
    let mut pools = Vec::with_capacity(entries.len());
    for &(name, rp) in entries {
        let pp = &Sub("pools", name);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            // Pool names become socket file names and metric labels.
            ctx.report(
                pp,
                None,
                "pool names may use only letters, digits, `-`, `_` and `.`",
            );
        }
        pools.push((name.to_string(), validate_pool(name, pp, rp, ctx)));
    }
    pools
}

pub(super) fn validate_pool(name: &str, pp: &dyn KeyPath, rp: &RawPool, ctx: &mut Ctx<'_>) -> Pool {
    let queue_length = ctx.usize(&rp.queue_length, &Sub(pp, "queueLength"), 1000, 1);
    let queue_timeout = ctx.duration(&rp.queue_timeout, &Sub(pp, "queueTimeout"), dur(120), false);
    let start_mode = ctx.choice(
        &rp.start_mode,
        &Sub(pp, "startMode"),
        &[
            ("onDemand", StartMode::OnDemand),
            ("alwaysRunning", StartMode::AlwaysRunning),
        ],
        StartMode::OnDemand,
    );
    let retry_after = ctx.duration(
        &queue::retry_after_leaf(&rp.retry_after),
        &Sub(pp, "retryAfter"),
        dur(5),
        false,
    );
    let queue = queue::validate(rp, pp, ctx);

    let timeouts = validate_timeouts(rp, pp, ctx);
    let initialization_pages = validate_initialization_pages(rp, pp, ctx);
    let backend = validate_backend(rp, pp, ctx);

    Pool {
        name: name.to_string(),
        queue_length,
        queue_timeout,
        queue,
        start_mode,
        backend,
        recycling: validate_recycling(
            ctx.nested(&rp.recycling, &Sub(pp, "recycling"), "a map"),
            &Sub(&pp, "recycling"),
            ctx,
        ),
        failure: validate_failure(
            ctx.nested(&rp.failure, &Sub(pp, "failure"), "a map"),
            &Sub(&pp, "failure"),
            ctx,
        ),
        retry_after,
        timeouts,
        initialization_pages,
        cache: ctx
            .nested(&rp.cache, &Sub(pp, "cache"), "a map")
            .and_then(|c| cache::validate_section(c, &Sub(&pp, "cache"), ctx)),
        ordering: ctx
            .nested(&rp.ordering, &Sub(pp, "ordering"), "a map")
            .and_then(|o| ordering::validate(o, &Sub(&pp, "ordering"), ctx)),
    }
}

pub(super) fn validate_recycling(
    r: Option<&RawRecycling>,
    p: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> Recycling {
    let disallow = ctx.boolean(
        &r.and_then(|r| r.disallow_overlapping_rotation.clone()),
        &Sub(p, "disallowOverlappingRotation"),
        false,
    );
    let pp = Sub(&p, "periodicRestart");
    let pr = r.and_then(|r| ctx.nested(&r.periodic_restart, &pp, "a map"));
    let get = |sel: fn(&RawPeriodicRestart) -> &Leaf| pr.and_then(|pr| sel(pr).clone());
    let mut schedule = Vec::new();
    let sp = Sub(&pp, "schedule");
    if let Some(list) = pr.and_then(|pr| ctx.nested(&pr.schedule, &sp, "a list")) {
        for (i, t) in list.iter().enumerate() {
            match t.0.as_str().and_then(parse_time_of_day) {
                Some(secs) => schedule.push(secs),
                None => ctx.report(
                    &format!("{sp}[{i}]"),
                    Some(&t.0),
                    "not a time of day (write \"HH:MM\", e.g. \"03:00\")",
                ),
            }
        }
        schedule.sort_unstable();
        schedule.dedup();
    }
    Recycling {
        disallow_overlapping_rotation: disallow,
        time: ctx.duration(&get(|r| &r.time), &Sub(&pp, "time"), dur(29 * 3600), false),
        requests: ctx.uint(&get(|r| &r.requests), &Sub(&pp, "requests"), 0, 0),
        private_memory_kib: ctx.uint(
            &get(|r| &r.private_memory),
            &Sub(&pp, "privateMemory"),
            0,
            0,
        ),
        schedule,
    }
}

pub(super) fn validate_failure(
    r: Option<&RawFailure>,
    p: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> Failure {
    let get = |sel: fn(&RawFailure) -> &Leaf| r.and_then(|r| sel(r).clone());
    Failure {
        rapid_fail_protection: ctx.boolean(
            &get(|r| &r.rapid_fail_protection),
            &Sub(p, "rapidFailProtection"),
            true,
        ),
        rapid_fail_protection_interval: ctx.duration(
            &get(|r| &r.rapid_fail_protection_interval),
            &Sub(p, "rapidFailProtectionInterval"),
            dur(5 * 60),
            true,
        ),
        rapid_fail_protection_max_crashes: ctx.u32(
            &get(|r| &r.rapid_fail_protection_max_crashes),
            &Sub(p, "rapidFailProtectionMaxCrashes"),
            5,
            1,
        ),
        load_balancer_capabilities: ctx.choice(
            &get(|r| &r.load_balancer_capabilities),
            &Sub(p, "loadBalancerCapabilities"),
            &[
                ("HttpLevel", LoadBalancerCapabilities::HttpLevel),
                ("TcpLevel", LoadBalancerCapabilities::TcpLevel),
            ],
            LoadBalancerCapabilities::HttpLevel,
        ),
    }
}

/// `timeouts` toward the pool's members: connect, first byte, idle connection.
fn validate_timeouts(rp: &RawPool, pp: &dyn KeyPath, ctx: &mut Ctx<'_>) -> UpstreamTimeouts {
    let tp = Sub(&pp, "timeouts");
    let t = ctx.nested(&rp.timeouts, &tp, "a map");
    UpstreamTimeouts {
        connect: ctx.duration(
            &t.and_then(|t| t.connect.clone()),
            &Sub(&tp, "connect"),
            dur(10),
            true,
        ),
        first_byte: ctx.duration(
            &t.and_then(|t| t.first_byte.clone()),
            &Sub(&tp, "firstByte"),
            dur(120),
            true,
        ),
        idle: ctx.duration(
            &t.and_then(|t| t.idle.clone()),
            &Sub(&tp, "idle"),
            dur(90),
            true,
        ),
    }
}

/// `initializationPages`: paths (each starting with `/`) a new worker is warmed with.
fn validate_initialization_pages(rp: &RawPool, pp: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Vec<String> {
    let mut initialization_pages = Vec::new();
    let path = Sub(pp, "initializationPages");
    for (i, page) in ctx.texts(&rp.initialization_pages, &path) {
        if page.starts_with('/') {
            initialization_pages.push(page);
        } else {
            ctx.report(
                &At(&path, i),
                Some(&Value::String(page)),
                "must start with `/`",
            );
        }
    }
    initialization_pages
}

/// What serves the pool: a `farm` of remote servers, or local workers (`processModel`,
/// `worker`); never both, and a farm takes no worker settings.
fn validate_backend(rp: &RawPool, pp: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Backend {
    let fp = Sub(&pp, "farm");
    let pmp = Sub(&pp, "processModel");
    let wp = Sub(&pp, "worker");
    let farm = ctx.nested(&rp.farm, &fp, "a map");
    let pm = ctx.nested(&rp.process_model, &pmp, "a map");
    let worker = ctx.nested(&rp.worker, &wp, "a map");
    if farm.is_some() && pm.is_some() {
        ctx.report(
            pp,
            None,
            "a pool has either `farm` (remote servers) or `processModel` (local workers), not both",
        );
    }
    match farm {
        Some(f) => {
            if worker.is_some() {
                ctx.report(&wp, None, "worker settings apply only to pools of local workers (processModel), not to a farm");
            }
            if let Some(pm) = pm {
                // Still check it, so every mistake shows up in one run.
                validate_process_model(Some(pm), worker, &pmp, &wp, ctx);
            }
            Backend::Farm(validate_farm(f, &fp, ctx))
        }
        None => Backend::Garden(validate_process_model(pm, worker, &pmp, &wp, ctx)),
    }
}
