//! `pools.<name>.processModel`: the worker processes a pool runs.

use super::ctx::{dur, Ctx, KeyPath, Sub};
use super::parse::leaf_value;
use super::worker::validate_worker;
use crate::config::leaf::Leaf;
use crate::config::model::{ProcessModel, WorkerListen};
use crate::config::raw::{RawProcessModel, RawWorker};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn validate_process_model(
    pm: Option<&RawProcessModel>,
    worker: Option<&RawWorker>,
    p: &dyn KeyPath,
    wp: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> ProcessModel {
    let get = |sel: fn(&RawProcessModel) -> &Leaf| pm.and_then(|pm| sel(pm).clone());
    let command = ctx.name(&get(|r| &r.command), &Sub(&p, "command"));
    let args = validate_args(pm, &Sub(&p, "args"), ctx);
    let env = validate_env(pm, &Sub(&p, "env"), ctx);
    let working_directory = validate_working_directory(
        &get(|r| &r.working_directory),
        &Sub(&p, "workingDirectory"),
        ctx,
    );
    let ping_path = match get(|r| &r.ping_path) {
        Some(l) => ctx.url_path(&Some(l), &Sub(&p, "pingPath")),
        // roost's own worker answers the built-in health path; another command's
        // readiness is a TCP connect unless told otherwise.
        None => command.is_none().then(|| "/.roost/ping".to_string()),
    };
    let user = validate_account(
        &get(|r| &r.user),
        &Sub(&p, "user"),
        "user",
        ctx,
        user_exists,
    );
    let group = validate_account(
        &get(|r| &r.group),
        &Sub(&p, "group"),
        "group",
        ctx,
        group_exists,
    );
    let t = validate_timings(pm, p, ctx);
    ProcessModel {
        command,
        args,
        env,
        working_directory,
        max_processes: ctx.usize(&get(|r| &r.max_processes), &Sub(&p, "maxProcesses"), 1, 1),
        max_concurrent_requests_per_process: ctx.usize(
            &get(|r| &r.max_concurrent_requests_per_process),
            &Sub(&p, "maxConcurrentRequestsPerProcess"),
            100,
            1,
        ),
        listen: ctx.choice(
            &get(|r| &r.listen),
            &Sub(&p, "listen"),
            &[("unix", WorkerListen::Unix), ("tcp", WorkerListen::Tcp)],
            WorkerListen::Unix,
        ),
        idle_timeout: t.idle_timeout,
        pinging_enabled: t.pinging_enabled,
        ping_interval: t.ping_interval,
        ping_response_time: t.ping_response_time,
        ping_path,
        startup_time_limit: t.startup_time_limit,
        shutdown_time_limit: t.shutdown_time_limit,
        user,
        group,
        worker: validate_worker(worker, wp, ctx),
    }
}

/// The health-ping switch and the lifetime timings of `processModel` (`p`), with IIS's
/// defaults.
struct Timings {
    idle_timeout: Duration,
    pinging_enabled: bool,
    ping_interval: Duration,
    ping_response_time: Duration,
    startup_time_limit: Duration,
    shutdown_time_limit: Duration,
}

fn validate_timings(pm: Option<&RawProcessModel>, p: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Timings {
    let get = |sel: fn(&RawProcessModel) -> &Leaf| pm.and_then(|pm| sel(pm).clone());
    Timings {
        idle_timeout: ctx.duration(
            &get(|r| &r.idle_timeout),
            &Sub(&p, "idleTimeout"),
            dur(20 * 60),
            false,
        ),
        pinging_enabled: ctx.boolean(
            &get(|r| &r.pinging_enabled),
            &Sub(&p, "pingingEnabled"),
            true,
        ),
        ping_interval: ctx.duration(
            &get(|r| &r.ping_interval),
            &Sub(&p, "pingInterval"),
            dur(30),
            true,
        ),
        ping_response_time: ctx.duration(
            &get(|r| &r.ping_response_time),
            &Sub(&p, "pingResponseTime"),
            dur(90),
            true,
        ),
        startup_time_limit: ctx.duration(
            &get(|r| &r.startup_time_limit),
            &Sub(&p, "startupTimeLimit"),
            dur(90),
            true,
        ),
        shutdown_time_limit: ctx.duration(
            &get(|r| &r.shutdown_time_limit),
            &Sub(&p, "shutdownTimeLimit"),
            dur(90),
            false,
        ),
    }
}

/// `processModel.args` (`ap` is its key path): the command's arguments, as strings.
fn validate_args(pm: Option<&RawProcessModel>, ap: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Vec<String> {
    let Some(pm) = pm else {
        return Vec::new();
    };
    ctx.texts(&pm.args, ap)
        .into_iter()
        .map(|(_, a)| a)
        .collect()
}

/// `processModel.env` (`ep` is its key path): names to string values.
fn validate_env(
    pm: Option<&RawProcessModel>,
    ep: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let Some(map) = pm.and_then(|pm| ctx.nested(&pm.env, ep, "a map")) {
        for (k, v) in map {
            if let Some(v) = ctx.text_of(&v.0, &Sub(ep, k)) {
                env.insert(k.clone(), v);
            }
        }
    }
    env
}

/// `processModel.workingDirectory`, which must be a directory now (checked at load, so
/// a typo fails the config rather than every worker start).
fn validate_working_directory(
    leaf: &Leaf,
    path: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> Option<PathBuf> {
    let wd = ctx.path_buf(leaf, path)?;
    if !wd.is_dir() {
        ctx.report(
            path,
            leaf_value(leaf),
            format!("{} is not a directory", wd.display()),
        );
    }
    Some(wd)
}

/// `processModel.user` or `.group` (`what`): a number, or a name `exists` finds on this
/// machine; an unknown name is reported and dropped.
fn validate_account(
    leaf: &Leaf,
    path: &dyn KeyPath,
    what: &str,
    ctx: &mut Ctx<'_>,
    exists: impl Fn(&str) -> bool,
) -> Option<String> {
    let name = ctx.name(leaf, path)?;
    if name.chars().all(|c| c.is_ascii_digit()) || exists(&name) {
        return Some(name);
    }
    ctx.report(
        path,
        leaf_value(leaf),
        format!("no such {what} on this machine"),
    );
    None
}

fn user_exists(name: &str) -> bool {
    matches!(nix::unistd::User::from_name(name), Ok(Some(_)))
}

fn group_exists(name: &str) -> bool {
    matches!(nix::unistd::Group::from_name(name), Ok(Some(_)))
}
