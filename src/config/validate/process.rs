//! `pools.<name>.processModel`: the worker processes a pool runs.

use super::*;

pub(super) fn validate_process_model(
    pm: Option<&RawProcessModel>,
    worker: Option<&RawWorker>,
    p: &str,
    wp: &str,
    ctx: &mut Ctx<'_>,
) -> ProcessModel {
    let f = |k: &str| format!("{p}.{k}");
    let get = |sel: fn(&RawProcessModel) -> &Leaf| pm.and_then(|pm| sel(pm).clone());
    let command = ctx.name(&get(|r| &r.command), &f("command"));
    let args = match pm {
        Some(pm) => ctx
            .texts(&pm.args, &f("args"))
            .into_iter()
            .map(|(_, a)| a)
            .collect(),
        None => Vec::new(),
    };
    let mut env = BTreeMap::new();
    if let Some(map) = pm.and_then(|pm| ctx.nested(&pm.env, &f("env"), "a map")) {
        for (k, v) in map {
            let ep = format!("{}.{k}", f("env"));
            if let Some(v) = ctx.text_of(&v.0, &ep) {
                env.insert(k.clone(), v);
            }
        }
    }
    let working_directory = ctx.path_buf(&get(|r| &r.working_directory), &f("workingDirectory"));
    if let Some(wd) = &working_directory {
        if !wd.is_dir() {
            let v = get(|r| &r.working_directory).map(|s| s.0);
            ctx.report(
                &f("workingDirectory"),
                v.as_ref(),
                format!("{} is not a directory", wd.display()),
            );
        }
    }
    let ping_path = match get(|r| &r.ping_path) {
        Some(l) => ctx.url_path(&Some(l), &f("pingPath")),
        // roost's own worker answers the built-in health path; another command's readiness
        // is a TCP connect unless told otherwise.
        None if command.is_none() => Some("/.roost/ping".to_string()),
        None => None,
    };
    let mut user = ctx.name(&get(|r| &r.user), &f("user"));
    if let Some(u) = &user {
        if !u.chars().all(|c| c.is_ascii_digit())
            && !matches!(nix::unistd::User::from_name(u), Ok(Some(_)))
        {
            ctx.report(
                &f("user"),
                get(|r| &r.user).map(|s| s.0).as_ref(),
                "no such user on this machine",
            );
            user = None;
        }
    }
    let mut group = ctx.name(&get(|r| &r.group), &f("group"));
    if let Some(g) = &group {
        if !g.chars().all(|c| c.is_ascii_digit())
            && !matches!(nix::unistd::Group::from_name(g), Ok(Some(_)))
        {
            ctx.report(
                &f("group"),
                get(|r| &r.group).map(|s| s.0).as_ref(),
                "no such group on this machine",
            );
            group = None;
        }
    }
    ProcessModel {
        command,
        args,
        env,
        working_directory,
        max_processes: ctx.usize(&get(|r| &r.max_processes), &f("maxProcesses"), 1, 1),
        max_concurrent_requests_per_process: ctx.usize(
            &get(|r| &r.max_concurrent_requests_per_process),
            &f("maxConcurrentRequestsPerProcess"),
            100,
            1,
        ),
        listen: ctx.choice(
            &get(|r| &r.listen),
            &f("listen"),
            &[("unix", WorkerListen::Unix), ("tcp", WorkerListen::Tcp)],
            WorkerListen::Unix,
        ),
        idle_timeout: ctx.duration(
            &get(|r| &r.idle_timeout),
            &f("idleTimeout"),
            dur(20 * 60),
            false,
        ),
        pinging_enabled: ctx.boolean(&get(|r| &r.pinging_enabled), &f("pingingEnabled"), true),
        ping_interval: ctx.duration(
            &get(|r| &r.ping_interval),
            &f("pingInterval"),
            dur(30),
            true,
        ),
        ping_response_time: ctx.duration(
            &get(|r| &r.ping_response_time),
            &f("pingResponseTime"),
            dur(90),
            true,
        ),
        ping_path,
        startup_time_limit: ctx.duration(
            &get(|r| &r.startup_time_limit),
            &f("startupTimeLimit"),
            dur(90),
            true,
        ),
        shutdown_time_limit: ctx.duration(
            &get(|r| &r.shutdown_time_limit),
            &f("shutdownTimeLimit"),
            dur(90),
            false,
        ),
        user,
        group,
        worker: validate_worker(worker, wp, ctx),
    }
}
