//! Hitless binary upgrade (SIGUSR2), in nginx's and tableflip's shape: the running front
//! starts the new binary beside itself with its listening sockets inherited (fd numbers
//! by configured address in `ROOST_INHERIT_FDS`), waits for the new process to report
//! ready over a pipe (`ROOST_UPGRADE_READY_FD`), then stops accepting, drains and exits.
//!
//! - The same sockets pass down, never new `SO_REUSEPORT` siblings: one accept queue per
//!   binding, so nothing queued is lost when the old process closes its copy.
//! - Workers stay with their generation: the new front starts its own (an overlapped
//!   recycle across processes); the old front's drain ends its own.
//! - The new binary is the path recorded at start (not `/proc/self/exe`, which points at
//!   the deleted inode after a package upgrade); it must pass `roost check` first. If it
//!   fails to start or is not ready in [`READY_TIMEOUT`], it is killed and the old front
//!   keeps serving: it never stopped accepting.
//! - Refused as PID 1, and with `ROOST_UPGRADE=off` (the container image sets it): when
//!   the container's main process exits the container ends, taking the new process with
//!   it. Roll the pods instead.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const INHERIT_ENV: &str = "ROOST_INHERIT_FDS";
pub const READY_FD_ENV: &str = "ROOST_UPGRADE_READY_FD";
/// How long the new process has to become ready (tableflip's default).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

static INHERITED: parking_lot::Mutex<Option<HashMap<SocketAddr, RawFd>>> =
    parking_lot::Mutex::new(None);

/// `127.0.0.1:8080=3,[::]:443=4` → address → fd.
pub fn parse_inherit(v: &str) -> HashMap<SocketAddr, RawFd> {
    v.split(',')
        .filter_map(|kv| {
            let (a, fd) = kv.rsplit_once('=')?;
            Some((a.parse().ok()?, fd.parse().ok()?))
        })
        .collect()
}

fn with_inherited<T>(f: impl FnOnce(&mut HashMap<SocketAddr, RawFd>) -> T) -> T {
    let mut g = INHERITED.lock();
    let map = g.get_or_insert_with(|| {
        std::env::var(INHERIT_ENV)
            .map(|v| parse_inherit(&v))
            .unwrap_or_default()
    });
    f(map)
}

/// The listening socket the previous generation handed down for `addr`, if any. The fd
/// is checked to be a listening TCP socket and made close-on-exec again (workers must
/// not inherit it).
pub fn take_listener(addr: SocketAddr) -> Option<std::net::TcpListener> {
    let fd = with_inherited(|m| m.remove(&addr))?;
    let ok = nix::sys::socket::getsockopt(
        &unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::sys::socket::sockopt::AcceptConn,
    )
    .unwrap_or(false);
    if !ok {
        tracing::warn!(listen = %addr, fd, "inherited fd is not a listening socket; binding anew");
        return None;
    }
    // SAFETY: the fd was handed to this process for this address and nothing else owns it.
    let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        l.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let _ = l.set_nonblocking(true);
    tracing::info!(listen = %addr, fd, "listening socket inherited from the previous process");
    Some(l)
}

/// Close inherited sockets the new configuration did not use.
pub fn close_unused() {
    with_inherited(|m| {
        for (addr, fd) in m.drain() {
            tracing::info!(listen = %addr, "inherited socket not in the configuration: closed");
            // SAFETY: handed to this process and taken by nobody.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    });
}

/// Tell the old process this one is ready (no-op when not started by an upgrade).
pub fn report_ready() {
    let Some(fd) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    else {
        return;
    };
    // SAFETY: the fd was handed down for this one message; taken once (the env is read
    // once per process: serve calls this once).
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let _ = f.write_all(b"R");
}

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("refused: roost is PID 1 (a container); roll the container instead")]
    Pid1,
    #[error(
        "refused: ROOST_UPGRADE=off (a container image: when roost exits, so does the container)"
    )]
    Off,
    #[error("the new binary {0} fails `roost check`:\n{1}")]
    Check(PathBuf, String),
    #[error("cannot start {0}: {1}")]
    Spawn(PathBuf, std::io::Error),
    #[error("the new process did not become ready within {0:?}; it was stopped")]
    NotReady(Duration),
}

/// What the old process hands down.
pub struct Handover<'a> {
    pub exe: &'a Path,
    pub args: &'a [std::ffi::OsString],
    pub config: &'a Path,
    /// Listening sockets by configured address (front bindings and admin listeners).
    pub fds: Vec<(SocketAddr, RawFd)>,
}

/// Start the new generation and wait until it is ready. Returns its pid.
pub async fn start_new(h: Handover<'_>) -> Result<u32, UpgradeError> {
    if std::process::id() == 1 {
        return Err(UpgradeError::Pid1);
    }
    if std::env::var("ROOST_UPGRADE").is_ok_and(|v| v == "off") {
        return Err(UpgradeError::Off);
    }
    let exe = h.exe.to_path_buf();
    let check = tokio::process::Command::new(&exe)
        .arg("check")
        .arg("-c")
        .arg(h.config)
        .output()
        .await
        .map_err(|e| UpgradeError::Spawn(exe.clone(), e))?;
    if !check.status.success() {
        let err = String::from_utf8_lossy(&check.stderr).into_owned();
        return Err(UpgradeError::Check(exe, err));
    }
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| UpgradeError::Spawn(exe.clone(), e.into()))?;
    let mut child =
        spawn(&h, &exe, write_end.as_raw_fd()).map_err(|e| UpgradeError::Spawn(exe.clone(), e))?;
    drop(write_end);
    let pid = child.id().unwrap_or(0);
    let waited = tokio::task::spawn_blocking(move || wait_byte(read_end, READY_TIMEOUT));
    if waited.await.unwrap_or(false) {
        // Not ours to reap or kill any more: it outlives this process.
        std::mem::forget(child);
        return Ok(pid);
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    Err(UpgradeError::NotReady(READY_TIMEOUT))
}

fn spawn(h: &Handover<'_>, exe: &Path, ready_fd: RawFd) -> std::io::Result<tokio::process::Child> {
    let inherit: Vec<String> = h.fds.iter().map(|(a, fd)| format!("{a}={fd}")).collect();
    let mut keep: Vec<RawFd> = h.fds.iter().map(|(_, fd)| *fd).collect();
    keep.push(ready_fd);
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(h.args)
        .env(INHERIT_ENV, inherit.join(","))
        .env(READY_FD_ENV, ready_fd.to_string())
        // WATCHDOG_PID names this process; without it the new one takes WATCHDOG_USEC
        // as its own and keeps pinging once it is the unit's main process.
        .env_remove("WATCHDOG_PID")
        .kill_on_drop(false);
    // SAFETY: only fcntl between fork and exec (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            for fd in &keep {
                if libc::fcntl(*fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Block until one byte arrives on `fd` (true) or EOF / the timeout (false).
fn wait_byte(fd: OwnedFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut pfd = [PollFd::new(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd.as_raw_fd()) },
        PollFlags::POLLIN,
    )];
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(&mut pfd, ms) {
        Ok(n) if n > 0 => {
            let mut b = [0u8; 1];
            matches!(std::fs::File::from(fd).read(&mut b), Ok(1))
        }
        _ => false,
    }
}

/// Set once `roost serve` handles SIGUSR2: only then may the admin API ask for an upgrade
/// (in any other process the signal's default action would end it).
static ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `roost serve` has installed its SIGUSR2 handler.
pub fn arm() {
    ARMED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Start a binary upgrade as SIGUSR2 does (`roost ctl upgrade`, `POST /api/v1/upgrade`).
pub fn request() -> Result<(), &'static str> {
    if !ARMED.load(std::sync::atomic::Ordering::SeqCst) {
        return Err("a binary upgrade is only available in `roost serve`");
    }
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGUSR2)
        .map_err(|_| "could not signal this process")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherit_list_parses_v4_and_v6() {
        let m = parse_inherit("127.0.0.1:8080=3,[::1]:443=4,bad,x=5");
        assert_eq!(m.len(), 2);
        assert_eq!(m[&"127.0.0.1:8080".parse().unwrap()], 3);
        assert_eq!(m[&"[::1]:443".parse().unwrap()], 4);
    }
}
