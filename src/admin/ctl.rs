//! `roost ctl`: the appcmd of roost, a small client of the admin API.
//!
//! `status` prints one line per pool (state, workers, queue/limit, active, rejected,
//! p99); `pools`, `requests`, `diagnose` print readable summaries; `--json` prints the
//! API's JSON instead. Exit codes: 0 ok, 1 the API answered an error, 3 the admin API
//! could not be reached.

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
            let msg = v["error"].as_str().unwrap_or("error").to_string();
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
            } else {
                print!("{}", render(&a.command, &v));
            }
            ExitCode::SUCCESS
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

fn fmt_latency(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(s) if s.is_infinite() => ">120s".into(),
        Some(s) if s < 1.0 => format!("{:.1}ms", s * 1000.0),
        Some(s) => format!("{s:.1}s"),
    }
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

/// Human-readable output of each command.
pub fn render(cmd: &CtlCommand, v: &Value) -> String {
    let empty = Vec::new();
    match cmd {
        CtlCommand::Status => {
            let rows = v["pools"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|p| {
                    let workers = if p["kind"] == "farm" {
                        let servers = p["servers"].as_array().map(|a| a.len()).unwrap_or(0);
                        format!("{servers} servers")
                    } else {
                        p["workers"]
                            .as_array()
                            .map(|a| a.len())
                            .unwrap_or(0)
                            .to_string()
                    };
                    vec![
                        s(&p["name"]),
                        s(&p["state"]),
                        workers,
                        format!("{}/{}", s(&p["queue"]["length"]), s(&p["queue"]["limit"])),
                        format!("{}/{}", s(&p["active"]), s(&p["capacity"])),
                        s(&p["rejected_total"]),
                        fmt_latency(&p["latency"]["p99_seconds"]),
                        fmt_latency(&p["latency"]["recent_p99_seconds"]),
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
        CtlCommand::Pools => {
            let mut out = String::new();
            for p in v["pools"].as_array().unwrap_or(&empty) {
                let _ = writeln!(
                    out,
                    "{} ({}, {}): queue {}/{}, active {}/{}, arrivals {}, rejected {}",
                    s(&p["name"]),
                    s(&p["kind"]),
                    s(&p["state"]),
                    s(&p["queue"]["length"]),
                    s(&p["queue"]["limit"]),
                    s(&p["active"]),
                    s(&p["capacity"]),
                    s(&p["arrivals"]),
                    s(&p["rejected_total"]),
                );
                let workers = p["workers"].as_array().unwrap_or(&empty);
                if !workers.is_empty() {
                    let rows = workers
                        .iter()
                        .map(|w| {
                            let tp = w["counters"]["worker_pools"]["default"].clone();
                            vec![
                                s(&w["pid"]),
                                s(&w["state"]),
                                format!("{:.0}s", w["uptime_s"].as_f64().unwrap_or(0.0)),
                                s(&w["requests"]),
                                s(&w["active"]),
                                w["memory_kib"]
                                    .as_u64()
                                    .map(|k| format!("{:.1}MiB", k as f64 / 1024.0))
                                    .unwrap_or("-".into()),
                                if tp.is_null() {
                                    "-".into()
                                } else {
                                    format!(
                                        "{}/{} busy {}",
                                        s(&tp["threads"]),
                                        s(&tp["max"]),
                                        s(&tp["busy"])
                                    )
                                },
                            ]
                        })
                        .collect();
                    for l in table(
                        &[
                            "  PID", "STATE", "UPTIME", "REQUESTS", "ACTIVE", "MEMORY", "THREADS",
                        ],
                        rows,
                    )
                    .lines()
                    {
                        let _ = writeln!(out, "  {l}");
                    }
                }
                for srv in p["servers"].as_array().unwrap_or(&empty) {
                    let _ = writeln!(
                        out,
                        "  server {}: {}, active {}/{}, requests {}",
                        s(&srv["server"]),
                        // The farm's state word when present, else the health flag.
                        match srv["state"].as_str() {
                            Some(st) => st.to_string(),
                            None if srv["healthy"] == true => "healthy".into(),
                            None => "UNHEALTHY".into(),
                        },
                        s(&srv["active"]),
                        s(&srv["slots"]),
                        s(if srv["served"].is_null() {
                            &srv["requests"]
                        } else {
                            &srv["served"]
                        }),
                    );
                }
                for f in p["last_failures"]
                    .as_array()
                    .unwrap_or(&empty)
                    .iter()
                    .rev()
                    .take(5)
                {
                    let _ = writeln!(
                        out,
                        "  failure {} {}: {}",
                        s(&f["at"]),
                        s(&f["kind"]),
                        s(&f["detail"])
                    );
                }
                for r in p["recycle_history"]
                    .as_array()
                    .unwrap_or(&empty)
                    .iter()
                    .rev()
                    .take(5)
                {
                    let _ = writeln!(
                        out,
                        "  recycled {} ({}) worker {}",
                        s(&r["at"]),
                        s(&r["reason"]),
                        s(&r["worker"])
                    );
                }
            }
            out
        }
        CtlCommand::Requests { .. } => {
            let rows = v["requests"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|r| {
                    vec![
                        s(&r["id"]),
                        s(&r["pool"]),
                        s(&r["worker_pid"]),
                        s(&r["state"]),
                        format!("{}ms", s(&r["elapsed_ms"])),
                        s(&r["method"]),
                        s(&r["url"]),
                    ]
                })
                .collect();
            table(
                &["ID", "POOL", "PID", "STATE", "ELAPSED", "METHOD", "URL"],
                rows,
            )
        }
        CtlCommand::Recycle { pool } => format!("{pool}: recycle started\n"),
        CtlCommand::Start { pool } => format!("{pool}: {}\n", s(&v["state"])),
        CtlCommand::Stop { pool } => format!("{pool}: {}\n", s(&v["state"])),
        CtlCommand::Reload => "configuration reloaded\n".into(),
        CtlCommand::Cache(CacheCommand::Purge { .. }) => {
            format!("purged {} URL(s)\n", s(&v["purged"]))
        }
        CtlCommand::Upgrade => {
            "binary upgrade started: the new process takes over once ready (see the log)\n".into()
        }
        CtlCommand::Diagnose => {
            let findings = v["findings"].as_array().unwrap_or(&empty);
            if findings.is_empty() {
                return format!(
                    "no problems found (last {:.0} s, {} samples)\n",
                    v["window_seconds"].as_f64().unwrap_or(0.0),
                    s(&v["samples"])
                );
            }
            let mut out = String::new();
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
            out
        }
    }
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

    #[test]
    fn status_table() {
        let v = serde_json::json!({"pools": [{
            "name": "web", "kind": "garden", "state": "Started",
            "workers": [{}, {}], "queue": {"length": 3, "limit": 1000},
            "active": 7, "capacity": 200, "rejected_total": 12,
            "latency": {"p99_seconds": 0.25, "recent_p99_seconds": null}
        }]});
        let t = render(&CtlCommand::Status, &v);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("POOL"));
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cols,
            ["web", "Started", "2", "3/1000", "7/200", "12", "250.0ms", "-"]
        );
    }
}
