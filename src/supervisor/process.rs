//! One worker process: the command line, the handshake environment, the private
//! runtime directory, spawning (own process group, optional identity switch), the task
//! that owns the child and reports its exit, output logging, health probes and memory.

use crate::body;
use crate::config::model::{self, ProcessModel};
use crate::upstream::{Client, Endpoint};
use http_body_util::BodyExt;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

/// What the supervisor asks of a running child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sig {
    /// SIGTERM to the process group: please finish and exit.
    Term,
    /// SIGKILL to the process group.
    Kill,
}

/// Where one worker listens, decided before it is spawned.
#[derive(Debug, Clone)]
pub(crate) enum Listen {
    Unix(PathBuf),
    Tcp(u16),
}

impl Listen {
    pub(crate) fn endpoint(&self) -> Endpoint {
        match self {
            Listen::Unix(p) => Endpoint::Unix(p.clone()),
            Listen::Tcp(port) => Endpoint::Tcp {
                host: "127.0.0.1".to_string(),
                port: *port,
            },
        }
    }

    /// The `ROOST_LISTEN` value of the handshake.
    pub(crate) fn env_value(&self) -> String {
        match self {
            Listen::Unix(p) => format!("unix:{}", p.display()),
            Listen::Tcp(port) => format!("tcp:127.0.0.1:{port}"),
        }
    }
}

/// Built-in workers answer here; other commands use `pingPath` or a plain connect.
pub(crate) const BUILTIN_PING_PATH: &str = "/.roost/ping";

/// The readiness/health path of a pool's workers (`None` = a connect is enough).
pub(crate) fn ping_path(pm: &ProcessModel) -> Option<String> {
    match (&pm.ping_path, &pm.command) {
        (Some(p), _) => Some(p.clone()),
        (None, None) => Some(BUILTIN_PING_PATH.to_string()),
        (None, Some(_)) => None,
    }
}

/// The full command of one worker: program, arguments, environment, directory.
#[derive(Debug, Clone)]
pub(crate) struct SpawnSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

pub(crate) fn spawn_spec(
    cfg: &model::Pool,
    pm: &ProcessModel,
    roost_exe: &Path,
    listen: &Listen,
    worker_id: u64,
) -> SpawnSpec {
    let (program, mut args) = match &pm.command {
        Some(c) => (PathBuf::from(c), Vec::new()),
        // The worker module owns its flags (and tests that they parse back).
        None => (
            roost_exe.to_path_buf(),
            crate::worker::cli::command_args(&pm.worker),
        ),
    };
    args.extend(pm.args.iter().cloned());
    let mut env: Vec<(String, String)> =
        pm.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    // The handshake comes last so a configured `env` cannot break it.
    env.push(("ROOST_LISTEN".to_string(), listen.env_value()));
    env.push(("ROOST_POOL".to_string(), cfg.name.clone()));
    env.push(("ROOST_WORKER_ID".to_string(), worker_id.to_string()));
    if let Listen::Tcp(port) = listen {
        env.push(("PORT".to_string(), port.to_string()));
    }
    SpawnSpec {
        program,
        args,
        env,
        cwd: pm.working_directory.clone(),
    }
}

/// A free loopback port: bind port 0, read it, close. Another process could take it in
/// between; the worker then fails to start and is retried like any failed start.
pub(crate) fn free_tcp_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// uid/gid to run a pool's workers as, resolved from `user`/`group` names (or numbers).
/// Only root can switch; otherwise the names are ignored with a warning by the caller.
pub(crate) fn resolve_identity(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<(u32, u32)>, String> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("not running as root".to_string());
    }
    let mut uid = nix::unistd::getuid().as_raw();
    let mut gid = nix::unistd::getgid().as_raw();
    if let Some(u) = user {
        let found = match u.parse::<u32>() {
            Ok(n) => nix::unistd::User::from_uid(n.into()),
            Err(_) => nix::unistd::User::from_name(u),
        }
        .map_err(|e| format!("user {u}: {e}"))?
        .ok_or_else(|| format!("user {u}: no such user"))?;
        uid = found.uid.as_raw();
        gid = found.gid.as_raw();
    }
    if let Some(g) = group {
        let found = match g.parse::<u32>() {
            Ok(n) => nix::unistd::Group::from_gid(n.into()),
            Err(_) => nix::unistd::Group::from_name(g),
        }
        .map_err(|e| format!("group {g}: {e}"))?
        .ok_or_else(|| format!("group {g}: no such group"))?;
        gid = found.gid.as_raw();
    }
    Ok(Some((uid, gid)))
}

/// Create (or adopt) a private directory: mode 0700 (0711 when another uid must reach a
/// subdirectory), owned by us, never through a symlink. Refusing a directory someone
/// else owns matters in /tmp, where another user could plant one to catch our sockets.
///
/// `inside_own_dir`: the directory sits in one we made private, so if another uid owns
/// it, that is our own doing (a pool once ran as that user) and it is taken back.
pub(crate) fn ensure_private_dir(
    path: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
    inside_own_dir: bool,
) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::DirBuilder::new().mode(mode).create(path)?;
        }
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            path.display()
        )));
    }
    let euid = nix::unistd::geteuid().as_raw();
    let want = owner.unwrap_or((euid, nix::unistd::getegid().as_raw()));
    if meta.uid() != euid && meta.uid() != want.0 && !inside_own_dir {
        return Err(io::Error::other(format!(
            "{} is owned by uid {}, not us",
            path.display(),
            meta.uid()
        )));
    }
    if owner.is_some() || meta.uid() != want.0 {
        std::os::unix::fs::chown(path, Some(want.0), Some(want.1))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Can `uid` pass through every directory down to `dir`? Checked up front because the
/// alternative is a worker failing to bind its socket with a bare "permission denied".
/// (Group permissions are not considered: a directory must be world-traversable or
/// owned by the uid.)
pub(crate) fn check_reachable(dir: &Path, uid: u32) -> Result<(), String> {
    for d in dir.ancestors() {
        if d.as_os_str().is_empty() {
            continue;
        }
        let meta = std::fs::metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
        let mode = meta.permissions().mode();
        let ok = mode & 0o001 != 0 || (meta.uid() == uid && mode & 0o100 != 0);
        if !ok {
            return Err(format!(
                "workers run as uid {uid} cannot reach their sockets: {} has mode {:o}; \
                 choose a runtime directory under a traversable path",
                d.display(),
                mode & 0o777
            ));
        }
    }
    Ok(())
}

/// A child that was spawned (its signal handle went to `on_spawn`).
pub(crate) struct Spawned {
    pub pid: u32,
    /// Becomes `Some(how it ended)` when the child has been reaped.
    pub exited: watch::Receiver<Option<String>>,
}

/// Spawn a worker in its own process group (so a signal reaches anything it forked),
/// with kill-on-drop as the last line of defence, and start the task that owns it.
/// `on_spawn` runs once the child exists; `on_exit` runs once, from that task, when
/// the child has been reaped and its `socket` (if any) removed.
pub(crate) fn spawn(
    spec: &SpawnSpec,
    identity: Option<(u32, u32)>,
    pool: &str,
    socket: Option<PathBuf>,
    on_spawn: impl FnOnce(u32, mpsc::UnboundedSender<Sig>),
    on_exit: impl FnOnce(String) + Send + 'static,
) -> io::Result<Spawned> {
    let mut child = command(spec, identity).spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("child exited before its pid was read"))?;
    log_output(&mut child, pool, pid);
    let (ctl, ctl_rx) = mpsc::unbounded_channel::<Sig>();
    let (exited_tx, exited) = watch::channel(None);
    // Told before the task that reports the exit exists, so "spawned" always comes
    // before "exited" to whoever listens.
    on_spawn(pid, ctl);
    tokio::spawn(async move {
        let how = own(child, pid, ctl_rx).await;
        if let Some(sock) = socket {
            let _ = tokio::fs::remove_file(sock).await;
        }
        let _ = exited_tx.send(Some(how.clone()));
        on_exit(how);
    });
    Ok(Spawned { pid, exited })
}

/// The worker's command: its own process group, no service-manager variables, piped
/// output, the pool's identity, and a parent-death signal.
fn command(spec: &SpawnSpec, identity: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(&spec.program);
    // Only the front talks to the service manager (sd_notify, socket activation).
    for k in crate::ops::notify::MANAGER_ENV {
        cmd.env_remove(k);
    }
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    if let Some((uid, gid)) = identity {
        // std sets the gid first, drops supplementary groups, then sets the uid.
        cmd.uid(uid).gid(gid);
    }
    // If the front dies without stopping its workers (SIGKILL, OOM kill), they get
    // SIGTERM from the kernel and drain instead of lingering as orphans. Set after the
    // identity switch (a credential change clears it); the getppid check closes the race
    // with a front that died between fork and prctl. The spawning thread is a runtime
    // worker thread, which lives as long as the front.
    let parent = std::process::id();
    // SAFETY: the closure only makes async-signal-safe calls (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other(
                    "the front exited before the worker started",
                ));
            }
            Ok(())
        });
    }
    cmd
}

/// Log the worker's stdout and stderr lines under its pool and pid.
fn log_output(child: &mut Child, pool: &str, pid: u32) {
    if let Some(out) = child.stdout.take() {
        tokio::spawn(super::output::log_lines(
            out,
            pool.to_string(),
            pid,
            "stdout",
        ));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(super::output::log_lines(
            err,
            pool.to_string(),
            pid,
            "stderr",
        ));
    }
}

/// Own the child until it is reaped: pass the manager's signals to its group, then kill
/// what it left behind. Returns how it ended.
async fn own(mut child: Child, pid: u32, mut ctl_rx: mpsc::UnboundedReceiver<Sig>) -> String {
    let mut ctl_open = true;
    let how = loop {
        tokio::select! {
            st = child.wait() => {
                break match st {
                    Ok(st) => st.to_string(),
                    Err(e) => format!("wait failed: {e}"),
                };
            }
            sig = ctl_rx.recv(), if ctl_open => match sig {
                // The child is not reaped yet (its wait did not complete), so its pid,
                // which is also its process group id, cannot have been reused.
                Some(s) => signal_group(pid, s),
                None => ctl_open = false,
            },
        }
    };
    // Whatever the worker forked and left behind goes with it. The group id stays
    // reserved while any member lives, so this cannot hit an unrelated process.
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    how
}

fn signal_group(pid: u32, s: Sig) {
    let sig = match s {
        Sig::Term => Signal::SIGTERM,
        Sig::Kill => Signal::SIGKILL,
    };
    if let Err(e) = killpg(Pid::from_raw(pid as i32), sig) {
        tracing::debug!(pid, error = %e, "signal to worker group failed");
    }
}

/// One health probe: `GET path` answered 2xx (or, with `any_status`, answered at all),
/// or a plain connect when there is no path. Bounded by `limit`.
pub(crate) async fn probe(
    client: &Client,
    path: Option<&str>,
    limit: Duration,
    any_status: bool,
) -> Result<(), String> {
    let work = async {
        match path {
            None => connect(client.endpoint()).await,
            Some(p) => {
                let status = get(client, p).await?;
                if status.is_success() || any_status {
                    Ok(())
                } else {
                    Err(format!("{p} answered {status}"))
                }
            }
        }
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        )),
    }
}

/// `GET path` on a worker, reading the whole (small) body so the connection is reused.
pub(crate) async fn get(client: &Client, path: &str) -> Result<http::StatusCode, String> {
    let req = http::Request::get(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::USER_AGENT, "roost-supervisor")
        .body(body::empty())
        .map_err(|e| format!("bad path {path:?}: {e}"))?;
    let resp = client.send(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("reading {path}: {e}"))?;
    Ok(status)
}

async fn connect(endpoint: &Endpoint) -> Result<(), String> {
    match endpoint {
        Endpoint::Unix(p) => tokio::net::UnixStream::connect(p).await.map(drop),
        Endpoint::Tcp { host, port } | Endpoint::Tls { host, port, .. } => {
            tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map(drop)
        }
    }
    .map_err(|e| format!("connect {endpoint}: {e}"))
}

/// Has the process exited (a zombie not yet reaped, or gone)? Only the process task
/// reaps our children, so until it has, the pid cannot belong to anyone else.
pub(crate) async fn is_dead(pid: u32) -> bool {
    match tokio::fs::read_to_string(format!("/proc/{pid}/stat")).await {
        Ok(stat) => matches!(stat_state(&stat), Some('Z') | Some('X') | None),
        Err(_) => true,
    }
}

/// The state letter of a /proc/PID/stat line (after the command name, which may itself
/// contain spaces and parentheses).
fn stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Private memory of a process in KiB (IIS "private bytes"): Private_Clean +
/// Private_Dirty from smaps_rollup, or VmRSS where smaps_rollup is missing.
pub(crate) async fn private_memory_kib(pid: u32) -> Option<u64> {
    if let Ok(s) = tokio::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).await {
        let v = sum_fields(&s, &["Private_Clean:", "Private_Dirty:"]);
        if v.is_some() {
            return v;
        }
    }
    let s = tokio::fs::read_to_string(format!("/proc/{pid}/status"))
        .await
        .ok()?;
    sum_fields(&s, &["VmRSS:"])
}

/// Sum `Name:   123 kB` lines of a /proc file; `None` when none is present.
pub(crate) fn sum_fields(text: &str, names: &[&str]) -> Option<u64> {
    let mut total = None;
    for line in text.lines() {
        for n in names {
            if let Some(rest) = line.strip_prefix(n) {
                if let Some(v) = rest
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    *total.get_or_insert(0) += v;
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dead_and_live_processes_are_told_apart() {
        assert_eq!(stat_state("42 (a) b) Z 1 2"), Some('Z'));
        assert_eq!(stat_state("42 (x) S 1"), Some('S'));
        assert!(!is_dead(std::process::id()).await);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped: a zombie, and so already dead.
        let start = std::time::Instant::now();
        while !is_dead(pid).await {
            assert!(start.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.wait().unwrap();
        assert!(is_dead(pid).await);
    }

    #[test]
    fn proc_fields_are_summed() {
        let text = "Rss:  100 kB\nPrivate_Clean:   12 kB\nPrivate_Dirty:  30 kB\n";
        assert_eq!(
            sum_fields(text, &["Private_Clean:", "Private_Dirty:"]),
            Some(42)
        );
        assert_eq!(sum_fields(text, &["VmRSS:"]), None);
    }

    #[tokio::test]
    async fn own_memory_is_readable() {
        let kib = private_memory_kib(std::process::id()).await.unwrap();
        assert!(kib > 0);
    }

    #[test]
    fn private_dir_is_0700_and_refuses_a_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rt/pool");
        ensure_private_dir(&p, 0o700, None, false).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Adopting an existing directory fixes its mode.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&p, 0o700, None, false).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let f = d.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(ensure_private_dir(&f, 0o700, None, false).is_err());
    }
}
