//! The access log: one line per request, W3C extended (IIS's format) or JSON lines,
//! written by a dedicated thread so the request path never does file I/O.
//!
//! Lines go through a bounded channel; if the writer falls behind, lines are dropped and
//! counted rather than slowing requests (the count is logged when it changes).

use super::record::RequestRecord;
use crate::config::model::{AccessLog, AccessLogFormat};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

const CHANNEL: usize = 65_536;

const W3C_FIELDS: &str = "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port c-ip cs(User-Agent) sc-status time-taken x-pool x-pid x-queue-ms x-reason";

enum Msg {
    Line(String),
    Flush(std::sync::mpsc::Sender<()>),
}

pub struct AccessLogger {
    tx: SyncSender<Msg>,
    format: AccessLogFormat,
    dropped: Arc<AtomicU64>,
}

impl AccessLogger {
    pub fn start(cfg: &AccessLog) -> AccessLogger {
        let (tx, rx) = sync_channel::<Msg>(CHANNEL);
        let path = cfg.path.clone();
        let format = cfg.format;
        let dropped = Arc::new(AtomicU64::new(0));
        let _ = std::thread::Builder::new()
            .name("roost-access-log".into())
            .spawn(move || {
                let mut out: Box<dyn Write + Send> = match &path {
                    Some(p) => match std::fs::OpenOptions::new().create(true).append(true).open(p) {
                        Ok(f) => Box::new(std::io::BufWriter::new(f)),
                        Err(e) => {
                            tracing::error!(path = %p.display(), error = %e, "cannot open access log; logging to stdout");
                            Box::new(std::io::stdout())
                        }
                    },
                    None => Box::new(std::io::stdout()),
                };
                if format == AccessLogFormat::W3c {
                    let _ = writeln!(out, "#Software: roost {}", env!("CARGO_PKG_VERSION"));
                    let _ = writeln!(out, "{W3C_FIELDS}");
                }
                // Write what is queued, flush once the burst is drained: one syscall
                // per burst, and a quiet server's log is always on disk.
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(msg) = next {
                        match msg {
                            Msg::Line(l) => {
                                let _ = out.write_all(l.as_bytes());
                            }
                            Msg::Flush(done) => {
                                let _ = out.flush();
                                let _ = done.send(());
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                    let _ = out.flush();
                }
                let _ = out.flush();
            });
        AccessLogger {
            tx,
            format,
            dropped,
        }
    }

    pub fn write(&self, rec: &RequestRecord) {
        let line = match self.format {
            AccessLogFormat::W3c => w3c_line(rec),
            AccessLogFormat::Json => json_line(rec),
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Msg::Line(line)) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "access log writer is behind; lines dropped");
            }
        }
    }

    /// Wait (bounded) until every line written so far is on disk.
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(2));
        }
    }
}

fn dash(s: Option<&str>) -> String {
    match s {
        Some(v) if !v.is_empty() => v.replace(' ', "+"),
        _ => "-".to_string(),
    }
}

/// When the request arrived: the record keeps only its duration (the request path reads
/// the monotonic clock, not the wall clock), so the log works it out when it writes.
fn started(r: &RequestRecord) -> std::time::SystemTime {
    std::time::SystemTime::now()
        .checked_sub(r.elapsed)
        .unwrap_or(std::time::UNIX_EPOCH)
}

fn user_agent(r: &RequestRecord) -> Option<&str> {
    r.user_agent.as_ref().and_then(|v| v.to_str().ok())
}

fn w3c_line(r: &RequestRecord) -> String {
    let ts = humantime::format_rfc3339_millis(started(r)).to_string();
    let (date, time) = ts
        .trim_end_matches('Z')
        .split_once('T')
        .unwrap_or((&ts, ""));
    format!(
        "{date} {time} {} {} {} {} {} {} {} {} {} {} {} {} {}\n",
        r.local.ip(),
        r.method.as_ref().map_or("-", |m| m.as_str()),
        dash(r.target.as_ref().map(|t| t.path())),
        dash(r.target.as_ref().and_then(|t| t.query())),
        r.local.port(),
        r.peer.ip(),
        dash(user_agent(r)),
        r.status,
        r.elapsed.as_millis(),
        dash(r.pool.as_deref()),
        r.worker_pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into()),
        r.queue_wait
            .map(|d| d.as_millis().to_string())
            .unwrap_or_else(|| "-".into()),
        r.reason.map(|x| x.as_str()).unwrap_or("-"),
    )
}

fn json_line(r: &RequestRecord) -> String {
    let v = serde_json::json!({
        "time": humantime::format_rfc3339_millis(started(r)).to_string(),
        "method": r.method.as_ref().map(|m| m.as_str()),
        "path": r.target.as_ref().map(|t| t.path()),
        "query": r.target.as_ref().and_then(|t| t.query()),
        "status": r.status,
        "elapsed_ms": r.elapsed.as_secs_f64() * 1000.0,
        "client": r.peer.ip().to_string(),
        "server": r.local.to_string(),
        "user_agent": user_agent(r),
        "pool": r.pool.as_deref(),
        "worker_pid": r.worker_pid,
        "queue_wait_ms": r.queue_wait.map(|d| d.as_secs_f64() * 1000.0),
        "reason": r.reason.map(|x| x.as_str()),
        "cache": r.cache.map(|c| c.as_str()),
    });
    let mut s = v.to_string();
    s.push('\n');
    s
}
