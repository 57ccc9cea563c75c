//! `roost worker`: the command line of a worker process.
//!
//! The supervisor and a person start it the same way: without `--listen`, the address
//! comes from the handshake environment (`ROOST_LISTEN`, or `PORT`). Flags use the config
//! names (`maxWorkerThreads` → `--max-worker-threads`).

use super::apps;
use super::listen::Listen;
use super::settings::{default_max_worker_threads, PoolLimits, Settings};
use crate::config::model::WorkerSettings;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

/// `roost worker` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Built-in app to run: demo, hello, or static:DIR (serve a directory).
    #[arg(long, default_value = "demo")]
    pub app: String,
    /// unix:PATH or tcp:IP:PORT; default: $ROOST_LISTEN, else tcp:127.0.0.1:$PORT.
    #[arg(long)]
    pub listen: Option<Listen>,
    /// Threads the default worker pool keeps (default: core count).
    #[arg(long)]
    pub min_worker_threads: Option<usize>,
    /// Most threads of the default worker pool (default: 32 per core, at most 1024).
    #[arg(long)]
    pub max_worker_threads: Option<usize>,
    /// Threads of the I/O pool (default: core count).
    #[arg(long)]
    pub io_threads: Option<usize>,
    /// Requests in the worker (queued + executing) before 503 ServerTooBusy.
    #[arg(long, default_value_t = 5000)]
    pub request_queue_limit: usize,
    /// Executing requests per core; the rest wait in the FIFO queue.
    #[arg(long, default_value_t = 5000)]
    pub max_concurrent_requests_per_cpu: usize,
    /// Worker-pool threads executing requests per core (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub max_concurrent_threads_per_cpu: usize,
    /// A dedicated worker pool, NAME=MIN:MAX (repeatable).
    #[arg(long = "thread-pool", value_name = "NAME=MIN:MAX")]
    pub thread_pools: Vec<PoolSpec>,
    /// Run sync handlers under PREFIX on pool POOL, PREFIX=POOL (repeatable).
    #[arg(long = "route", value_name = "PREFIX=POOL")]
    pub routes: Vec<RouteSpec>,
    /// Core count the per-CPU limits multiply (default: the cores this process may use).
    #[arg(long)]
    pub cpus: Option<usize>,
    /// How long a graceful stop waits for in-flight requests.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Add threads for busy pool threads found blocked in the kernel without a hint.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub blocking_detection: bool,
    /// How often the pools look for blocked busy threads while work is queued (1ms..10s).
    #[arg(long, default_value = "50ms", value_parser = parse_detection_interval)]
    pub blocking_detection_interval: Duration,
}

/// `--blocking-detection-interval`: a duration from 1 ms to 10 s (as the config checks).
fn parse_detection_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    if d < Duration::from_millis(1) || d > Duration::from_secs(10) {
        return Err(format!("{s:?}: must be between 1ms and 10s"));
    }
    Ok(d)
}

/// `--thread-pool NAME=MIN:MAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    pub name: String,
    pub limits: PoolLimits,
}

impl FromStr for PoolSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not NAME=MIN:MAX");
        let (name, range) = s.split_once('=').ok_or_else(bad)?;
        let (min, max) = range.split_once(':').ok_or_else(bad)?;
        let min: usize = min.trim().parse().map_err(|_| bad())?;
        let max: usize = max.trim().parse().map_err(|_| bad())?;
        if name.is_empty() || max == 0 || min > max {
            return Err(format!("{s:?}: need a name and 0 <= MIN <= MAX, MAX >= 1"));
        }
        Ok(PoolSpec {
            name: name.to_string(),
            limits: PoolLimits { min, max },
        })
    }
}

/// `--route PREFIX=POOL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub prefix: String,
    pub pool: String,
}

impl FromStr for RouteSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((prefix, pool)) if prefix.starts_with('/') && !pool.is_empty() => Ok(RouteSpec {
                prefix: prefix.to_string(),
                pool: pool.to_string(),
            }),
            _ => Err(format!("{s:?} is not /PREFIX=POOL")),
        }
    }
}

impl WorkerArgs {
    /// The resolved settings these flags describe.
    pub fn settings(&self) -> Settings {
        let mut d = Settings::default();
        if let Some(n) = self.cpus {
            d.cpus = n.max(1);
        }
        let min = self.min_worker_threads.unwrap_or(d.cpus);
        Settings {
            min_worker_threads: min,
            max_worker_threads: self
                .max_worker_threads
                .unwrap_or_else(|| default_max_worker_threads(d.cpus, min))
                .max(min)
                .max(1),
            io_threads: self.io_threads.unwrap_or(d.cpus).max(1),
            request_queue_limit: self.request_queue_limit,
            max_concurrent_requests_per_cpu: self.max_concurrent_requests_per_cpu,
            max_concurrent_threads_per_cpu: self.max_concurrent_threads_per_cpu,
            thread_pools: self
                .thread_pools
                .iter()
                .map(|p| (p.name.clone(), p.limits))
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| (r.prefix.clone(), r.pool.clone()))
                .collect(),
            shutdown_timeout: self.shutdown_timeout,
            blocking_detection: self.blocking_detection,
            blocking_detection_interval: self.blocking_detection_interval,
            ..d
        }
    }
}

/// The `roost worker` arguments that reproduce a pool's `worker` settings, for the
/// supervisor's command line (the address travels in `ROOST_LISTEN`, not here).
pub fn command_args(w: &WorkerSettings) -> Vec<String> {
    let mut a = vec!["worker".to_string(), "--app".into(), w.app.clone()];
    let mut flag = |name: &str, v: String| {
        a.push(format!("--{name}"));
        a.push(v);
    };
    if let Some(n) = w.min_worker_threads {
        flag("min-worker-threads", n.to_string());
    }
    if let Some(n) = w.max_worker_threads {
        flag("max-worker-threads", n.to_string());
    }
    if let Some(n) = w.io_threads {
        flag("io-threads", n.to_string());
    }
    flag("request-queue-limit", w.request_queue_limit.to_string());
    flag(
        "max-concurrent-requests-per-cpu",
        w.max_concurrent_requests_per_cpu.to_string(),
    );
    flag(
        "max-concurrent-threads-per-cpu",
        w.max_concurrent_threads_per_cpu.to_string(),
    );
    for (name, p) in &w.pools {
        flag("thread-pool", format!("{name}={}:{}", p.min, p.max));
    }
    for (prefix, pool) in &w.routes {
        flag("route", format!("{prefix}={pool}"));
    }
    flag("blocking-detection", w.blocking_detection.to_string());
    flag(
        "blocking-detection-interval",
        humantime::format_duration(w.blocking_detection_interval).to_string(),
    );
    a
}

/// Run `roost worker`: 0 after a graceful stop, 1 on a runtime failure, 2 on bad usage.
pub fn run(args: WorkerArgs) -> ExitCode {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    // Under the supervisor (which sets ROOST_WORKER_ID) each line is re-logged by the
    // front with its own timestamp, pool and pid: a second timestamp is only noise.
    let _ = if std::env::var_os("ROOST_WORKER_ID").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
    let listen = match args
        .listen
        .clone()
        .map(Ok)
        .or_else(|| Listen::from_env().transpose())
    {
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            eprintln!("roost worker: {e}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!("roost worker: no address: pass --listen unix:PATH|tcp:ADDR, or set ROOST_LISTEN or PORT");
            return ExitCode::from(2);
        }
    };
    let settings = args.settings();
    let builder = match apps::builtin(&args.app, settings.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("roost worker: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        app = %args.app,
        pool = std::env::var("ROOST_POOL").unwrap_or_default(),
        worker_id = std::env::var("ROOST_WORKER_ID").unwrap_or_default(),
        min_worker_threads = settings.min_worker_threads,
        max_worker_threads = settings.max_worker_threads,
        io_threads = settings.io_threads,
        request_queue_limit = settings.request_queue_limit,
        max_executing = settings.max_executing(),
        max_executing_threads = settings.max_executing_threads(),
        blocking_detection = settings.blocking_detection,
        blocking_detection_interval = ?settings.blocking_detection_interval,
        "worker starting"
    );
    match builder.run(listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "worker failed");
            eprintln!("roost worker: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_args_round_trip_to_the_same_settings() {
        use crate::config::model::NamedThreadPool;
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: Cmd,
        }
        #[derive(clap::Subcommand)]
        enum Cmd {
            Worker(WorkerArgs),
        }
        let w = WorkerSettings {
            app: "demo".into(),
            min_worker_threads: Some(3),
            max_worker_threads: None,
            io_threads: Some(1),
            request_queue_limit: 10,
            max_concurrent_requests_per_cpu: 4,
            max_concurrent_threads_per_cpu: 2,
            pools: [("slow".to_string(), NamedThreadPool { min: 1, max: 2 })].into(),
            routes: [("/slow".to_string(), "slow".to_string())].into(),
            blocking_detection: false,
            blocking_detection_interval: Duration::from_millis(120),
        };
        let mut argv = vec!["roost".to_string()];
        argv.extend(command_args(&w));
        let Cmd::Worker(args) = Cli::try_parse_from(argv).unwrap().cmd;
        assert_eq!(args.app, "demo");
        assert_eq!(args.settings(), Settings::from(&w));
    }

    #[test]
    fn pool_and_route_specs() {
        let p: PoolSpec = "slow=2:8".parse().unwrap();
        assert_eq!(p.name, "slow");
        assert_eq!(p.limits, PoolLimits { min: 2, max: 8 });
        assert!("slow=8:2".parse::<PoolSpec>().is_err());
        assert!("slow".parse::<PoolSpec>().is_err());
        let r: RouteSpec = "/slow=slow".parse().unwrap();
        assert_eq!((r.prefix.as_str(), r.pool.as_str()), ("/slow", "slow"));
        assert!("slow=slow".parse::<RouteSpec>().is_err());
    }
}
