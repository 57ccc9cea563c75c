//! `roost serve`: load the configuration, start the front (and what runs beside it),
//! then follow signals — SIGHUP reloads, SIGTERM/SIGINT drain and exit.

use crate::config;
use crate::front::Front;
use crate::ops::{notify, Phase, Readiness};
use crate::pool::PoolHooks;
use crate::supervisor::{Supervisor, SupervisorOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Start logging: `RUST_LOG` filters (default `info`); `ROOST_LOG_FORMAT=json` for JSON lines.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colours only on a terminal: a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if std::env::var("ROOST_LOG_FORMAT").is_ok_and(|v| v == "json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Everything `serve` started, for in-process callers (tests, embedding).
pub struct Running {
    pub front: Arc<Front>,
    pub supervisor: Arc<Supervisor>,
    pub config_path: PathBuf,
    /// The admin listener (metrics, API, dashboard); never shares the front's listeners.
    pub admin: crate::admin::Admin,
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartFailure {
    /// The configuration is invalid (exit 2, like `roost check`).
    #[error("invalid configuration:\n{0}")]
    Config(config::ConfigErrors),
    #[error("{0}")]
    Front(#[from] crate::front::StartError),
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
}

/// Load `path` (or the embedded default when it does not exist) and start serving.
pub async fn start(path: &Path) -> Result<Running, StartFailure> {
    let (cfg, source) = config::load_default_or_file(path).map_err(StartFailure::Config)?;
    tracing::info!(config = %source, "configuration loaded");
    let overrides = applied_overrides(std::env::vars_os());
    if !overrides.is_empty() {
        tracing::info!(overrides = %overrides.join(" "), "ROOST_ environment overrides applied");
    }
    let roost_exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("roost"));
    let supervisor = Supervisor::new(SupervisorOptions {
        roost_exe,
        runtime_dir: None,
    });
    let hooks: Vec<Arc<dyn PoolHooks>> = vec![supervisor.clone(), crate::farm::FarmHooks::new()];
    let admin_cfg = cfg.admin.clone();
    let workers = cfg.workers.resolve();
    let threads =
        crate::runtime::Threads::spawn(workers).map_err(crate::front::StartError::Threads)?;
    tracing::info!(workers, "front threads started");
    let front = Front::start_on(cfg, hooks, threads).await?;
    let (f, p) = (front.clone(), path.to_path_buf());
    let reloader: crate::admin::Reloader = Arc::new(move || {
        let (f, p) = (f.clone(), p.clone());
        Box::pin(async move { reload_from(&f, &p).await })
    });
    let admin = crate::admin::Admin::start(
        &admin_cfg,
        crate::admin::AdminContext {
            front: front.clone(),
            supervisor: Some(supervisor.clone()),
            reload: Some(reloader),
        },
    )
    .await?;
    let token = if admin_cfg.token.is_some() {
        "?token=<admin.token>"
    } else {
        ""
    };
    tracing::info!("dashboard: http://{}/{token}", admin.addr());
    Ok(Running {
        front,
        supervisor,
        config_path: path.to_path_buf(),
        admin,
    })
}

/// Reload from disk; a bad file is reported and the running configuration stays.
pub async fn reload(running: &Running) -> Result<(), String> {
    reload_from(&running.front, &running.config_path).await
}

async fn reload_from(front: &Arc<Front>, path: &Path) -> Result<(), String> {
    let (cfg, _) = config::load_default_or_file(path).map_err(|e| e.to_string())?;
    front.reload(cfg).await.map_err(|e| e.to_string())
}

/// The `serve` subcommand: exit 0 after a graceful stop, 2 on a bad config, 1 otherwise.
pub async fn run(path: &Path) -> ExitCode {
    // Recorded before anything can replace the file: what SIGUSR2 starts.
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("roost"));
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let running = match start(path).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("roost: {e}");
            return match e {
                StartFailure::Config(_) => ExitCode::from(2),
                StartFailure::Front(_) | StartFailure::Admin(_) => ExitCode::from(1),
            };
        }
    };
    crate::ops::upgrade::close_unused();
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined2()),
    ) else {
        eprintln!("roost: cannot install signal handlers");
        return ExitCode::from(1);
    };
    crate::ops::upgrade::arm();
    let readiness = running.admin.readiness().clone();
    let _watchdog = notify::spawn_watchdog();
    let announcer = tokio::spawn(announce_ready(readiness.clone()));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload_on_signal(&running, &readiness).await,
            _ = usr2.recv() => if upgrade(&running, &exe, &args).await {
                break;
            },
        }
    }
    announcer.abort();
    // Unready first (/readyz 503, systemd STOPPING=1), then drain. The admin listeners
    // stay up while the front drains, so the drain can be watched and probed.
    readiness.set_draining();
    notify::stopping();
    let grace = running.front.limits().shutdown_grace;
    running.front.shutdown(grace).await;
    running.supervisor.shutdown().await;
    running.admin.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Tell the service manager (and the log) once roost is ready: listeners bound and
/// the first worker of every `alwaysRunning` pool answering.
async fn announce_ready(readiness: Arc<Readiness>) {
    if readiness.wait_ready().await == Phase::Ready {
        tracing::info!("ready");
        notify::ready("serving");
        crate::ops::upgrade::report_ready();
    }
}

/// SIGHUP: reload, wrapped in `RELOADING=1` … `READY=1` once roost has been ready (a
/// refused reload still ends with `READY=1`, as the old configuration keeps serving).
async fn reload_on_signal(running: &Running, readiness: &Readiness) {
    let announce = readiness.is_ready();
    if announce {
        notify::reloading();
    }
    let status = match reload(running).await {
        Ok(()) => "serving".to_string(),
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration:\n{e}");
            "serving; the last reload was refused (see the log)".to_string()
        }
    };
    if announce {
        notify::ready(&status);
    }
}

/// The `ROOST_` variables that override configuration keys (those naming a top-level
/// section, as the loader takes them), as `NAME=value`; a token's value is hidden.
pub fn applied_overrides(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<String> {
    const SECTIONS: [&str; 5] = ["sites", "pools", "limits", "admin", "log"];
    let mut out: Vec<String> = vars
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| {
            k.strip_prefix("ROOST_")
                .and_then(|rest| rest.split("__").next())
                .is_some_and(|first| SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(first)))
        })
        .map(|(k, v)| {
            let secret = k.to_ascii_uppercase().contains("TOKEN");
            format!("{k}={}", if secret { "<hidden>" } else { v.as_str() })
        })
        .collect();
    out.sort();
    out
}

/// SIGUSR2: start the new binary with the listening sockets and wait until it is ready.
/// True when it is: this process then drains and exits. On failure it keeps serving.
async fn upgrade(running: &Running, exe: &Path, args: &[std::ffi::OsString]) -> bool {
    tracing::info!(exe = %exe.display(), "binary upgrade: starting the new process");
    notify::reloading();
    let mut fds = running.front.listener_fds();
    fds.extend(running.admin.listener_fds());
    let handover = crate::ops::upgrade::Handover {
        exe,
        args,
        config: &running.config_path,
        fds,
    };
    match crate::ops::upgrade::start_new(handover).await {
        Ok(pid) => {
            tracing::info!(
                pid,
                "binary upgrade: the new process is ready; draining this one"
            );
            notify::main_pid(pid);
            true
        }
        Err(e) => {
            tracing::error!("binary upgrade refused, this process keeps serving: {e}");
            notify::ready("serving; the last binary upgrade failed (see the log)");
            false
        }
    }
}
