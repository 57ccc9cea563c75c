//! The sd_notify protocol (systemd `Type=notify`): `READY=1` once roost is ready,
//! `RELOADING=1` … `READY=1` around a SIGHUP reload, `STOPPING=1` when the drain starts,
//! and `WATCHDOG=1` pings when the manager set `WATCHDOG_USEC` for this process.
//!
//! Every call is a no-op without `NOTIFY_SOCKET`. Worker processes never see the
//! variables: the supervisor removes them from the worker environment, so only the
//! front (the unit's main process) talks to the manager (`NotifyAccess=main`).
//! A failed send is logged and otherwise ignored: the service manager going away must
//! not take the traffic down with it.

use sd_notify::NotifyState;
use std::time::Duration;

/// The variables through which a service manager talks to its main process; workers
/// must not inherit them (a worker's `READY=1` would be taken for the front's).
pub const MANAGER_ENV: [&str; 8] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    super::upgrade::INHERIT_ENV,
    super::upgrade::READY_FD_ENV,
];

/// Whether a service manager listens (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty())
}

fn send(states: &[NotifyState<'_>]) {
    if !enabled() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// `READY=1` with a status line for `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` with `MONOTONIC_USEC` (systemd ≥ 253 wants it; 252 ignores it).
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    states.push(NotifyState::Status("reloading the configuration"));
    send(&states);
}

/// `STOPPING=1`: the drain has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// `MAINPID=` with `READY=1`, sent by the old process (still the main one, so
/// `NotifyAccess=main` accepts it) once the new one is ready after a binary upgrade.
/// The new process's own `READY=1`, sent before it was the main process, was ignored.
pub fn main_pid(pid: u32) {
    send(&[
        NotifyState::MainPid(pid),
        NotifyState::Ready,
        NotifyState::Status("serving (upgraded)"),
    ]);
}

/// A status line only (`STATUS=`), e.g. after a refused reload.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// Ping `WATCHDOG=1` at half the manager's interval, from a task on the runtime: a
/// wedged runtime stops the pings and the manager restarts roost. `None` when no
/// watchdog is set for this process (`WATCHDOG_PID` names another process, or unset).
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    if !enabled() {
        return None;
    }
    let interval = sd_notify::watchdog_enabled()?;
    let period = (interval / 2).max(Duration::from_millis(10));
    tracing::info!(interval = ?interval, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}
