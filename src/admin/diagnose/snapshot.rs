//! Evidence capture: when a critical finding fires, the sampler writes what an operator
//! would want to have seen at that moment — the findings, the requests in flight (route,
//! state, elapsed), each worker's threads (state by thread, busy routes, thread pools,
//! gate), every pool's queue and members, and the CPU — as one JSON file in
//! `diagnose.snapshotDir` (off unless set). The newest `diagnose.snapshotKeep` files
//! stay; older ones are deleted.
//!
//! Writes are rate-limited: one per onset (a critical `(pool, rule)` that was not
//! critical at the previous evaluation), and never more than one per [`MIN_INTERVAL`]; an
//! onset inside the interval is written once the interval is over, if it still holds. A
//! folder that cannot be written is a logged warning (and `last_error` in the listing),
//! never a failure of the sampler.

use super::{Report, Severity};
use crate::admin::sample::{Sample, WorkerSample};
use crate::config::model::Diagnose;
use crate::front::inflight::RequestInfo;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// At most one snapshot per this long, however often critical findings come and go.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// In-flight requests kept in a snapshot (the longest-running first).
const MAX_REQUESTS: usize = 500;
/// Snapshot files are `roost-snapshot-<unix ms, 13 digits>-<rule>.json`; nothing else in
/// the folder is ever listed or deleted.
const PREFIX: &str = "roost-snapshot-";

type Key = (String, &'static str);

/// Decides when a report's critical findings deserve a snapshot.
#[derive(Debug, Default)]
pub struct Trigger {
    /// The critical `(pool, rule)`s at the previous evaluation.
    active: Vec<Key>,
    /// Onsets not captured yet (held back by the interval), while they last.
    pending: Vec<Key>,
    last_write: Option<Instant>,
}

impl Trigger {
    /// The index of the finding to capture now, if any.
    pub fn due(&mut self, report: &Report, now: Instant) -> Option<usize> {
        let critical: Vec<Key> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Critical)
            .map(|f| (f.pool.clone(), f.rule))
            .collect();
        for k in &critical {
            if !self.active.contains(k) && !self.pending.contains(k) {
                self.pending.push(k.clone());
            }
        }
        self.pending.retain(|k| critical.contains(k));
        self.active = critical;
        let first = self.pending.first()?;
        if self
            .last_write
            .is_some_and(|t| now.saturating_duration_since(t) < MIN_INTERVAL)
        {
            return None;
        }
        let i = report
            .findings
            .iter()
            .position(|f| f.pool == first.0 && f.rule == first.1);
        // The snapshot carries every finding: the other pending onsets are in it too.
        self.pending.clear();
        self.last_write = Some(now);
        i
    }
}

/// The sampler's snapshot state.
#[derive(Debug, Default)]
pub struct Recorder {
    trigger: Mutex<Trigger>,
    last_error: Mutex<Option<String>>,
}

impl Recorder {
    /// After a sample: diagnose, and write a snapshot when a critical finding set in.
    pub async fn observe(
        &self,
        cfg: &Diagnose,
        history: &[std::sync::Arc<Sample>],
        requests: impl FnOnce() -> Vec<RequestInfo>,
    ) {
        let (Some(dir), Some(sample)) = (cfg.snapshot_dir.clone(), history.last()) else {
            return;
        };
        let report = super::diagnose(history);
        let Some(i) = self.trigger.lock().due(&report, Instant::now()) else {
            return;
        };
        let doc = document(&report, i, sample, requests());
        let keep = cfg.snapshot_keep;
        let rule = report.findings[i].rule;
        let at = sample.at_unix_ms;
        let written = tokio::task::spawn_blocking(move || write(&dir, keep, at, rule, &doc)).await;
        match written {
            Ok(Ok(path)) => {
                tracing::warn!(path = %path.display(), rule, "diagnose: critical finding, evidence snapshot written");
                *self.last_error.lock() = None;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "diagnose: cannot write the evidence snapshot");
                *self.last_error.lock() = Some(e);
            }
            Err(e) => tracing::warn!(error = %e, "diagnose: snapshot task failed"),
        }
    }

    /// `GET /api/v1/diagnose/snapshots` (and the `snapshots` of `/api/v1/diagnose`).
    pub fn list_json(&self, cfg: &Diagnose) -> Value {
        let Some(dir) = &cfg.snapshot_dir else {
            return json!({
                "dir": null,
                "keep": cfg.snapshot_keep,
                "snapshots": [],
                "note": "evidence snapshots are off: set diagnose.snapshotDir",
            });
        };
        json!({
            "dir": dir,
            "keep": cfg.snapshot_keep,
            "interval_seconds": MIN_INTERVAL.as_secs(),
            "snapshots": list(dir),
            "last_error": *self.last_error.lock(),
        })
    }
}

/// One snapshot file in a listing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    /// The file name without `.json` (what `GET /api/v1/diagnose/snapshots/{id}` takes).
    pub id: String,
    pub at_unix_ms: u64,
    pub rule: String,
    pub bytes: u64,
}

fn parse_name(name: &str) -> Option<(u64, String)> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(".json")?;
    let (ms, rule) = rest.split_once('-')?;
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    (ms.len() == 13 && rule.chars().all(ok)).then_some((ms.parse().ok()?, rule.to_string()))
}

/// The snapshot files in `dir`, newest first (nothing if it does not exist yet).
pub fn list(dir: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (at_unix_ms, rule) = parse_name(&name)?;
            Some(Entry {
                id: name.trim_end_matches(".json").to_string(),
                at_unix_ms,
                rule,
                bytes: e.metadata().ok()?.len(),
            })
        })
        .collect();
    out.sort_by(|a, b| b.id.cmp(&a.id));
    out
}

/// The text of snapshot `id` (only a name this module writes is ever opened).
pub fn read(dir: &Path, id: &str) -> Option<String> {
    let name = format!("{}.json", id.trim_end_matches(".json"));
    parse_name(&name)?;
    std::fs::read_to_string(dir.join(name)).ok()
}

/// Write `doc` as a new snapshot (complete or not at all: written aside, then renamed)
/// and delete all but the newest `keep`.
pub fn write(
    dir: &Path,
    keep: usize,
    at_unix_ms: u64,
    rule: &str,
    doc: &Value,
) -> Result<PathBuf, String> {
    let shown = dir.display();
    std::fs::create_dir_all(dir).map_err(|e| format!("diagnose.snapshotDir {shown}: {e}"))?;
    let name = format!("{PREFIX}{at_unix_ms:013}-{rule}.json");
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let body = serde_json::to_vec_pretty(doc).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("diagnose.snapshotDir {shown}: {e}")
        })?;
    for old in list(dir).iter().skip(keep.max(1)) {
        let _ = std::fs::remove_file(dir.join(format!("{}.json", old.id)));
    }
    Ok(path)
}

/// The snapshot document: the finding that set it off, every finding, and the state
/// behind them.
pub fn document(
    report: &Report,
    trigger: usize,
    sample: &Sample,
    mut requests: Vec<RequestInfo>,
) -> Value {
    let at = UNIX_EPOCH + Duration::from_millis(sample.at_unix_ms);
    let t = &report.findings[trigger];
    requests.sort_by_key(|r| std::cmp::Reverse(r.elapsed_ms));
    let count = requests.len();
    let rows: Vec<Value> = requests.iter().take(MAX_REQUESTS).map(request).collect();
    json!({
        "at_unix_ms": sample.at_unix_ms,
        "at": humantime::format_rfc3339_millis(at).to_string(),
        "trigger": {"pool": t.pool, "rule": t.rule, "title": t.title},
        "window_seconds": report.window_seconds,
        "findings": report.findings,
        "requests": {"count": count, "shown": rows.len(), "rows": rows},
        "pools": sample.pools.iter().map(pool).collect::<Vec<_>>(),
        "workers": sample.workers.iter().map(worker).collect::<Vec<_>>(),
        "cpu": {
            "machine_busy": sample.machine.busy,
            "machine_cores": sample.machine.cores,
            "pools": sample.pools.iter().filter_map(|p| p.cpu.map(|c| json!({
                "pool": p.name, "used_cores": c.used_cores, "cores": c.cores, "share": c.share(),
            }))).collect::<Vec<_>>(),
        },
    })
}

fn request(r: &RequestInfo) -> Value {
    let route = r.url.split(['?', '#']).next().unwrap_or_default();
    json!({
        "id": r.id, "pool": r.pool, "worker_pid": r.worker_pid, "method": r.method,
        "route": route, "url": r.url, "state": r.state, "elapsed_ms": r.elapsed_ms,
    })
}

fn pool(p: &crate::admin::sample::PoolSample) -> Value {
    json!({
        "name": p.name, "state": p.state, "kind": p.kind,
        "queue": {"length": p.queue_length, "limit": p.queue_limit,
                  "oldest_seconds": p.queue_oldest_seconds},
        "active": p.active, "capacity": p.capacity,
        "arrivals_total": p.arrivals, "completed_total": p.completed, "rejected_total": p.rejected,
        "worker_failures_total": p.worker_failures_total,
        "members": p.members_view,
        "starting_seconds": p.starting_seconds,
    })
}

fn worker(w: &WorkerSample) -> Value {
    let threads = thread_states(w.pid);
    let mut by_state = std::collections::BTreeMap::<String, usize>::new();
    for t in &threads {
        *by_state.entry(t.state.to_string()).or_default() += 1;
    }
    json!({
        "pid": w.pid, "pool": w.pool,
        "process_state": w.process_state.map(String::from),
        "cpu_percent": w.cpu_percent,
        "unanswered_samples": w.unanswered,
        "runnable_threads": w.runnable_threads,
        "thread_states": by_state,
        "threads": threads,
        "thread_pools": w.counters.worker_pools,
        "gate": w.counters.gate,
        "busy_routes": w.counters.busy_routes,
        "uptime_seconds": w.counters.uptime_seconds,
    })
}

/// One OS thread of a worker as `/proc/PID/task/TID/stat` shows it.
#[derive(Debug, Serialize)]
pub struct ThreadState {
    pub tid: u32,
    pub name: String,
    /// `R` running, `S` sleeping, `D` blocked in the kernel, `T` stopped, ...
    pub state: char,
}

/// Every thread of `pid` (empty if the process is gone).
pub fn thread_states(pid: u32) -> Vec<ThreadState> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<ThreadState> = tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let s = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let (open, close) = (s.find('(')?, s.rfind(')')?);
            let state = s[close + 1..].split_whitespace().next()?.chars().next()?;
            Some(ThreadState {
                tid,
                name: s[open + 1..close].to_string(),
                state,
            })
        })
        .collect();
    out.sort_by_key(|t| t.tid);
    out
}

#[cfg(test)]
mod tests;
