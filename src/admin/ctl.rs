//! `roost ctl`: the appcmd of roost, a small client of the admin API.
//!
//! `status` prints one line per pool (state, workers, queue/limit, active, rejected,
//! p99); `pools`, `requests`, `diagnose` print readable summaries; `--json` prints the
//! API's JSON instead. Exit codes: 0 ok, 1 the API answered an error, 3 the admin API
//! could not be reached.

use super::wire::{ActionDone, ApiError, PoolDoc, PoolList, RequestList, ServerDoc, WorkerDoc};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The admin API's base URL.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:9901",
        env = "ROOST_ADMIN"
    )]
    pub admin: String,
    /// Bearer token (admin.token).
    #[arg(long, global = true, env = "ROOST_ADMIN_TOKEN")]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// One line per pool: state, workers, queue/limit, active, rejected, p99 (since start
    /// and over the last minute).
    Status,
    /// Pools in detail: workers (pid, uptime, requests, memory), failures, recycles.
    Pools,
    /// In-flight requests (appcmd list requests).
    Requests {
        /// Only this pool's requests.
        #[arg(long)]
        pool: Option<String>,
        /// Only requests older than this (e.g. 500ms, 5s).
        #[arg(long, value_parser = humantime::parse_duration)]
        min_elapsed: Option<Duration>,
    },
    /// Recycle a pool's workers (overlapped).
    Recycle { pool: String },
    /// Start a stopped pool.
    Start { pool: String },
    /// Stop a pool (503 Disabled).
    Stop { pool: String },
    /// Reload the configuration file.
    Reload,
    /// Hitless binary upgrade (as SIGUSR2): start the binary now on disk with the
    /// listening sockets; this process drains and exits once it is ready.
    Upgrade,
    /// Explain why queues grow (thread-pool starvation, CPU, backend latency, limits).
    Diagnose,
    /// The response cache.
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Remove one URL (`--key host/path?query`) or every URL under `--prefix`.
    Purge {
        #[arg(long, conflicts_with = "prefix", required_unless_present = "prefix")]
        key: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
        /// Only this pool's cache (default: every pool's).
        #[arg(long)]
        pool: Option<String>,
    },
}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// Not reachable (connect refused, timeout, bad URL).
    Unreachable(String),
    /// The API answered with an error status.
    Api(u16, String),
}

/// A parsed `http://host:port[/base]` admin URL.
struct Target {
    authority: String,
    base: String,
}

fn parse_admin(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--admin {url:?}: only http:// URLs are supported"))?;
    let (authority, base) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("--admin {url:?}: no host"));
    }
    let authority = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        authority,
        base: base.to_string(),
    })
}

/// One call to the admin API; returns the JSON body.
pub async fn call(
    admin: &str,
    token: Option<&str>,
    method: http::Method,
    path: &str,
) -> Result<Value, CallError> {
    let t = parse_admin(admin).map_err(CallError::Unreachable)?;
    let connect = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&t.authority),
    )
    .await;
    let stream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(CallError::Unreachable(format!("{admin}: {e}"))),
        Err(_) => {
            return Err(CallError::Unreachable(format!(
                "{admin}: connect timed out"
            )))
        }
    };
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CallError::Unreachable(format!("{admin}: {e}")))?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("{}{}", t.base, path))
        .header(http::header::HOST, &t.authority)
        .header(http::header::USER_AGENT, "roost-ctl");
    if let Some(tok) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {tok}"));
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| CallError::Unreachable(e.to_string()))?;
    let work = async {
        let resp = tx
            .send_request(req)
            .await
            .map_err(|e| CallError::Unreachable(format!("{admin}: {e}")))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Unreachable(format!("{admin}: {e}")))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(
            |_| serde_json::json!({"error": String::from_utf8_lossy(&body).into_owned()}),
        );
        if status.is_success() {
            Ok(v)
        } else {
            let msg = serde_json::from_value::<ApiError>(v).map_or("error".into(), |e| e.error);
            Err(CallError::Api(status.as_u16(), msg))
        }
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .unwrap_or_else(|_| {
            Err(CallError::Unreachable(format!(
                "{admin}: no answer in 30 s"
            )))
        })
}

/// `roost ctl ...`.
pub fn run(args: CtlArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("roost ctl: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run_async(args))
}

async fn run_async(a: CtlArgs) -> ExitCode {
    use http::Method;
    let (method, path) = match &a.command {
        CtlCommand::Status | CtlCommand::Pools => (Method::GET, "/api/v1/pools".to_string()),
        CtlCommand::Requests { pool, min_elapsed } => {
            let mut q = Vec::new();
            if let Some(p) = pool {
                q.push(format!("pool={}", encode(p)));
            }
            if let Some(d) = min_elapsed {
                q.push(format!("minElapsedMs={}", d.as_millis()));
            }
            let qs = if q.is_empty() {
                String::new()
            } else {
                format!("?{}", q.join("&"))
            };
            (Method::GET, format!("/api/v1/requests{qs}"))
        }
        CtlCommand::Recycle { pool } => (
            Method::POST,
            format!("/api/v1/pools/{}/recycle", encode(pool)),
        ),
        CtlCommand::Start { pool } => (
            Method::POST,
            format!("/api/v1/pools/{}/start", encode(pool)),
        ),
        CtlCommand::Stop { pool } => (Method::POST, format!("/api/v1/pools/{}/stop", encode(pool))),
        CtlCommand::Reload => (Method::POST, "/api/v1/reload".to_string()),
        CtlCommand::Upgrade => (Method::POST, "/api/v1/upgrade".to_string()),
        CtlCommand::Diagnose => (Method::GET, "/api/v1/diagnose".to_string()),
        CtlCommand::Cache(CacheCommand::Purge { key, prefix, pool }) => {
            let q: Vec<String> = [("key", key), ("prefix", prefix), ("pool", pool)]
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
                .collect();
            (Method::POST, format!("/api/v1/cache/purge?{}", q.join("&")))
        }
    };
    match call(&a.admin, a.token.as_deref(), method, &path).await {
        Ok(v) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            match render(&a.command, v) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "roost ctl: the admin API's answer is not what this roost expects: {e}"
                    );
                    ExitCode::from(1)
                }
            }
        }
        Err(CallError::Unreachable(e)) => {
            eprintln!(
                "roost ctl: cannot reach the admin API ({e}).\n\
                 Is `roost serve` running, and is --admin (default http://127.0.0.1:9901) its admin.listen?"
            );
            ExitCode::from(3)
        }
        Err(CallError::Api(status, msg)) => {
            eprintln!("roost ctl: {msg} (HTTP {status})");
            ExitCode::from(1)
        }
    }
}

fn encode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

fn fmt_latency(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(s) if s.is_infinite() => ">120s".into(),
        Some(s) if s < 1.0 => format!("{:.1}ms", s * 1000.0),
        Some(s) => format!("{s:.1}s"),
    }
}

/// A value or `-`.
fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// Lay out rows in aligned columns.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        let _ = writeln!(out, "{}", s.join("  ").trim_end());
    };
    line(&mut out, header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(&mut out, r);
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Human-readable output of each command, from the API's JSON answer.
pub fn render(cmd: &CtlCommand, v: Value) -> Result<String, serde_json::Error> {
    Ok(match cmd {
        CtlCommand::Status => status_table(&serde_json::from_value(v)?),
        CtlCommand::Pools => pools_text(&serde_json::from_value(v)?),
        CtlCommand::Requests { .. } => requests_table(&serde_json::from_value(v)?),
        CtlCommand::Recycle { pool } => format!("{pool}: recycle started\n"),
        CtlCommand::Start { pool } | CtlCommand::Stop { pool } => {
            let done: ActionDone = serde_json::from_value(v)?;
            format!("{pool}: {}\n", done.state)
        }
        CtlCommand::Reload => "configuration reloaded\n".into(),
        CtlCommand::Cache(CacheCommand::Purge { .. }) => {
            format!("purged {} URL(s)\n", s(&v["purged"]))
        }
        CtlCommand::Upgrade => {
            "binary upgrade started: the new process takes over once ready (see the log)\n".into()
        }
        CtlCommand::Diagnose => render_diagnose(&v),
    })
}

/// `roost ctl status`: one line per pool.
fn status_table(list: &PoolList) -> String {
    let rows = list
        .pools
        .iter()
        .map(|p| {
            let workers = match p.kind.as_str() {
                "farm" => format!("{} servers", p.servers.len()),
                _ => p.workers.len().to_string(),
            };
            vec![
                p.name.clone(),
                p.state.clone(),
                workers,
                format!("{}/{}", p.queue.length, p.queue.limit),
                format!("{}/{}", p.active, p.capacity),
                p.rejected_total.to_string(),
                fmt_latency(p.latency.p99_seconds),
                fmt_latency(p.latency.recent_p99_seconds),
            ]
        })
        .collect();
    table(
        &[
            "POOL", "STATE", "WORKERS", "QUEUE", "ACTIVE", "REJECTED", "P99", "P99(1m)",
        ],
        rows,
    )
}

/// `roost ctl pools`: each pool, its workers or servers, its latest failures and recycles.
fn pools_text(list: &PoolList) -> String {
    let mut out = String::new();
    for p in &list.pools {
        let _ = writeln!(
            out,
            "{} ({}, {}): queue {}/{}, active {}/{}, arrivals {}, rejected {}",
            p.name,
            p.kind,
            p.state,
            p.queue.length,
            p.queue.limit,
            p.active,
            p.capacity,
            p.arrivals,
            p.rejected_total,
        );
        if !p.workers.is_empty() {
            for l in workers_table(&p.workers).lines() {
                let _ = writeln!(out, "  {l}");
            }
        }
        for srv in &p.servers {
            let _ = writeln!(out, "  {}", server_line(srv));
        }
        if let Some(o) = &p.ordering {
            let _ = writeln!(
                out,
                "  ordered by {}: {} keys with work, {} waiting behind their key, {} turns, p99 wait {}",
                o.key,
                o.keys,
                o.waiting,
                o.turns_total,
                fmt_latency(o.wait_p99_seconds),
            );
        }
        history_lines(&mut out, p);
    }
    out
}

fn workers_table(workers: &[WorkerDoc]) -> String {
    let rows = workers
        .iter()
        .map(|w| {
            let tp = w
                .sampled
                .as_ref()
                .and_then(|s| s.counters.worker_pools.get("default"));
            vec![
                or_dash(w.pid),
                w.state.clone(),
                format!("{:.0}s", w.uptime_s),
                w.requests.to_string(),
                w.active.to_string(),
                w.memory_kib
                    .map(|k| format!("{:.1}MiB", k as f64 / 1024.0))
                    .unwrap_or("-".into()),
                tp.map_or("-".into(), |tp| {
                    format!("{}/{} busy {}", tp.threads, tp.max, tp.busy)
                }),
            ]
        })
        .collect();
    table(
        &[
            "  PID", "STATE", "UPTIME", "REQUESTS", "ACTIVE", "MEMORY", "THREADS",
        ],
        rows,
    )
}

/// A farm server with the farm's state word; a plain member with its health flag.
fn server_line(srv: &ServerDoc) -> String {
    let (server, state, active, slots, served) = match srv {
        ServerDoc::Farm(f) => (&f.server, f.state.to_string(), f.active, f.slots, f.served),
        ServerDoc::Member(m) => {
            let state = if m.healthy { "healthy" } else { "UNHEALTHY" };
            (&m.server, state.to_string(), m.active, m.slots, m.requests)
        }
    };
    format!("server {server}: {state}, active {active}/{slots}, requests {served}")
}

/// The five latest failures and recycles, newest first.
fn history_lines(out: &mut String, p: &PoolDoc) {
    for f in p.last_failures.iter().rev().take(5) {
        let _ = writeln!(out, "  failure {} {}: {}", f.at, f.kind, f.detail);
    }
    for r in p.recycle_history.iter().rev().take(5) {
        let _ = writeln!(
            out,
            "  recycled {} ({}) worker {}",
            r.at, r.reason, r.worker
        );
    }
}

/// `roost ctl requests`: the in-flight requests.
fn requests_table(list: &RequestList) -> String {
    let rows = list
        .requests
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.pool.clone(),
                or_dash(r.worker_pid),
                r.state.to_string(),
                format!("{}ms", r.elapsed_ms),
                r.method.clone(),
                r.url.clone(),
            ]
        })
        .collect();
    table(
        &["ID", "POOL", "PID", "STATE", "ELAPSED", "METHOD", "URL"],
        rows,
    )
}

/// `roost ctl diagnose`: the findings, then the evidence snapshots kept.
fn render_diagnose(v: &Value) -> String {
    let empty = Vec::new();
    let findings = v["findings"].as_array().unwrap_or(&empty);
    let mut out = String::new();
    if findings.is_empty() {
        let _ = writeln!(
            out,
            "no problems found (last {:.0} s, {} samples)",
            v["window_seconds"].as_f64().unwrap_or(0.0),
            s(&v["samples"])
        );
    }
    for f in findings {
        let _ = writeln!(
            out,
            "[{}] {}: {}",
            s(&f["severity"]).to_uppercase(),
            s(&f["pool"]),
            s(&f["title"])
        );
        for e in f["evidence"].as_array().unwrap_or(&empty) {
            let _ = writeln!(out, "    - {}", s(e));
        }
        let _ = writeln!(out, "    advice: {}", s(&f["advice"]));
    }
    out + &render_snapshots(&v["snapshots"])
}

fn render_snapshots(v: &Value) -> String {
    let empty = Vec::new();
    let list = v["snapshots"].as_array().unwrap_or(&empty);
    let mut out = String::new();
    if v["dir"].is_null() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nevidence snapshots in {} ({} kept, newest first):",
        s(&v["dir"]),
        s(&v["keep"])
    );
    if list.is_empty() {
        out += "    none yet (written when a critical finding sets in)\n";
    }
    for e in list {
        let at = e["at_unix_ms"].as_u64().unwrap_or(0);
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
        let _ = writeln!(
            out,
            "    {}  {}  {}.json",
            humantime::format_rfc3339_seconds(when),
            s(&e["rule"]),
            s(&e["id"])
        );
    }
    if let Some(err) = v["last_error"].as_str() {
        let _ = writeln!(out, "    last write failed: {err}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        let t = parse_admin("http://127.0.0.1:9901").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.base.as_str()),
            ("127.0.0.1:9901", "")
        );
        let t = parse_admin("http://admin.local/roost/").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.base.as_str()),
            ("admin.local:80", "/roost")
        );
        assert!(parse_admin("https://x").is_err());
    }

    fn worker(pid: u32) -> serde_json::Value {
        serde_json::json!({"id": 1, "pid": pid, "uptime_s": 3.0, "requests": 5, "active": 0,
            "memory_kib": null, "state": "running"})
    }

    #[test]
    fn status_table() {
        let v = serde_json::json!({"pools": [{
            "name": "web", "kind": "garden", "state": "Started",
            "workers": [worker(10), worker(11)],
            "queue": {"length": 3, "limit": 1000, "oldest_seconds": 0.0, "timeout_seconds": 30.0},
            "capacity": 200, "active": 7, "members": 2, "usable_members": 2,
            "arrivals": 40, "completed": 33, "rejected": {"QueueFull": 12}, "rejected_total": 12,
            "latency": {"p50_seconds": 0.1, "p99_seconds": 0.25, "recent_window_seconds": 60.0,
                "recent_p50_seconds": null, "recent_p99_seconds": null},
            "servers": [], "last_failures": [], "recycle_history": [],
            "worker_starts_total": 2, "worker_failures_total": {}, "recycles_total": {}
        }]});
        let t = render(&CtlCommand::Status, v).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("POOL"));
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cols,
            ["web", "Started", "2", "3/1000", "7/200", "12", "250.0ms", "-"]
        );
    }

    #[test]
    fn an_answer_of_another_shape_is_an_error() {
        let v = serde_json::json!({"pools": [{"name": "web"}]});
        assert!(render(&CtlCommand::Status, v).is_err());
    }
}
