//! `GET /.roost/metrics`: the worker's counters under the contract's metric names
//! (`roost_worker_*`), so a standalone worker can be scraped too. Encoded by
//! prometheus-client (OpenMetrics text), like the front's `/metrics` in `admin::metrics`.
//!
//! Labels: `pool` (the app pool from `ROOST_POOL`, else the app name), `pid`, and
//! `thread_pool` for the worker pools (`default` or a dedicated pool's name).

use super::gate::{GateCounters, WAIT_BUCKETS};
use super::threadpool::ThreadPoolCounters;
use crate::metrics_text::{Family, Labels, Value};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use crate::metrics_text::CONTENT_TYPE;

/// What one scrape shows.
#[derive(Debug)]
pub struct Snapshot {
    pub pool: String,
    pub pid: u32,
    pub io_threads: usize,
    pub gate: GateCounters,
    pub thread_pools: Vec<ThreadPoolCounters>,
}

/// Encode `s` to text (prefix `roost_`).
pub fn render(s: Snapshot) -> String {
    // A registry per scrape: the snapshot is taken by the caller on the serving runtime
    // (the I/O thread count comes from its handle), and a scrape is rare.
    let mut registry = Registry::with_prefix("roost");
    registry.register_collector(Box::new(SnapshotCollector(s)));
    crate::metrics_text::render(&registry, 4096)
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        for f in thread_pool_families(s).iter().chain(&gate_families(s)) {
            f.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// The `pool` and `pid` labels every family carries, then `extra`.
fn labels(s: &Snapshot, extra: &[(&'static str, &str)]) -> Labels {
    let mut l = vec![("pool", s.pool.clone()), ("pid", s.pid.to_string())];
    l.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    l
}

/// Threads (the I/O pool's and each worker pool's), goals, blocking, queued and
/// completed work items, injections by cause.
fn thread_pool_families(s: &Snapshot) -> [Family<'static>; 7] {
    use MetricType::{Counter, Gauge};
    let mut threads = Family::new(
        "worker_threads",
        "Threads by kind (worker pools and the I/O pool).",
        Gauge,
    );
    let mut busy = Family::new(
        "worker_threads_busy",
        "Worker pool threads running a work item.",
        Gauge,
    );
    let mut goal = Family::new(
        "worker_thread_goal",
        "Threads the worker pool lets run work at once (hill climbing, starvation, blocking).",
        Gauge,
    );
    let mut blocked = Family::new(
        "worker_threads_blocked",
        "Busy worker pool threads blocked: source=hinted inside blocking(), source=detected \
         found blocked in the kernel by the gate thread without a hint.",
        Gauge,
    );
    let mut items_queued = Family::new(
        "worker_work_items_queued",
        "Work items waiting in a worker pool's queue.",
        Gauge,
    );
    let mut injections = Family::new(
        "worker_thread_injections",
        "Thread-count increases by cause.",
        Counter,
    );
    let mut items_completed = Family::new(
        "worker_work_items_completed",
        "Work items the worker pools completed.",
        Counter,
    );
    let io = labels(s, &[("kind", "io"), ("thread_pool", "io")]);
    threads.push(io, Value::Gauge(s.io_threads as i64));
    for p in &s.thread_pools {
        let tp = |extra: &[(&'static str, &str)]| {
            let mut l = labels(s, &[("thread_pool", &p.name)]);
            l.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
            l
        };
        let kind = labels(s, &[("kind", "worker"), ("thread_pool", &p.name)]);
        threads.push(kind, Value::Gauge(p.threads as i64));
        busy.push(tp(&[]), Value::Gauge(p.busy as i64));
        goal.push(tp(&[]), Value::Gauge(p.goal as i64));
        for (source, v) in [("hinted", p.blocked), ("detected", p.blocked_detected)] {
            blocked.push(tp(&[("source", source)]), Value::Gauge(v as i64));
        }
        items_queued.push(tp(&[]), Value::Gauge(p.queued as i64));
        let i = &p.injections;
        for (reason, v) in [
            ("hill_climbing", i.hill_climbing),
            ("starvation", i.starvation),
            ("blocking", i.blocking),
            ("blocking_detected", i.blocking_detected),
        ] {
            injections.push(tp(&[("reason", reason)]), Value::Counter(v));
        }
        items_completed.push(tp(&[]), Value::Counter(p.completed));
    }
    [
        threads,
        busy,
        goal,
        blocked,
        items_queued,
        injections,
        items_completed,
    ]
}

/// The gate: requests current, queued, executing, refused, gone, completed, and the
/// wait time.
fn gate_families(s: &Snapshot) -> [Family<'_>; 7] {
    use MetricType::{Counter, Gauge, Histogram};
    let g = &s.gate;
    let one = |name, help, kind, v| {
        let mut f = Family::new(name, help, kind);
        f.push(labels(s, &[]), v);
        f
    };
    let wait = Value::Histogram {
        bounds: &WAIT_BUCKETS,
        counts: &g.wait.buckets,
        sum_seconds: g.wait.sum_seconds,
        count: g.wait.count,
    };
    [
        one(
            "worker_requests_current",
            "Requests in the worker, queued and executing.",
            Gauge,
            Value::Gauge(g.current as i64),
        ),
        one(
            "worker_requests_queued",
            "Requests waiting in the gate's queue.",
            Gauge,
            Value::Gauge(g.queued as i64),
        ),
        one(
            "worker_requests_executing",
            "Requests past the gate.",
            Gauge,
            Value::Gauge(g.executing as i64),
        ),
        one(
            "worker_requests_rejected",
            "Requests refused at requestQueueLimit (503 ServerTooBusy).",
            Counter,
            Value::Counter(g.rejected),
        ),
        one(
            "worker_requests_disconnected",
            "Queued requests whose client went away.",
            Counter,
            Value::Counter(g.disconnected),
        ),
        one(
            "worker_requests_completed",
            "Requests that went through the gate and finished.",
            Counter,
            Value::Counter(g.completed),
        ),
        one(
            "worker_request_wait_seconds",
            "Time requests waited in the gate's queue before starting (0 when admitted at once).",
            Histogram,
            wait,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::gate::WaitCounters;
    use crate::worker::threadpool::Injections;
    use std::collections::BTreeMap;

    /// The samples the hand-written encoder (before prometheus-client) produced for
    /// [`snapshot`], captured from it: the names, labels and values must not change. (Since
    /// then added: `worker_threads_blocked` and the `blocking_detected` injection reason.)
    const HAND_WRITTEN: &str = r#"
roost_worker_threads{pool="web",pid="4242",kind="io",thread_pool="io"} 2
roost_worker_threads{pool="web",pid="4242",kind="worker",thread_pool="default"} 10
roost_worker_threads{pool="web",pid="4242",kind="worker",thread_pool="reports"} 15
roost_worker_threads_busy{pool="web",pid="4242",thread_pool="default"} 20
roost_worker_threads_busy{pool="web",pid="4242",thread_pool="reports"} 25
roost_worker_thread_goal{pool="web",pid="4242",thread_pool="default"} 40
roost_worker_thread_goal{pool="web",pid="4242",thread_pool="reports"} 45
roost_worker_threads_blocked{pool="web",pid="4242",thread_pool="default",source="hinted"} 2
roost_worker_threads_blocked{pool="web",pid="4242",thread_pool="default",source="detected"} 3
roost_worker_threads_blocked{pool="web",pid="4242",thread_pool="reports",source="hinted"} 7
roost_worker_threads_blocked{pool="web",pid="4242",thread_pool="reports",source="detected"} 8
roost_worker_work_items_queued{pool="web",pid="4242",thread_pool="default"} 30
roost_worker_work_items_queued{pool="web",pid="4242",thread_pool="reports"} 35
roost_worker_thread_injections_total{pool="web",pid="4242",thread_pool="default",reason="hill_climbing"} 60
roost_worker_thread_injections_total{pool="web",pid="4242",thread_pool="default",reason="starvation"} 70
roost_worker_thread_injections_total{pool="web",pid="4242",thread_pool="default",reason="blocking"} 80
roost_worker_thread_injections_total{pool="web",pid="4242",thread_pool="default",reason="blocking_detected"} 90
roost_worker_thread_injections_total{pool="web",pid="4242",thread_pool="reports",reason="hill_climbing"} 65
roost_worker_thread_injections_total{pool="web",pid="4242",thread_pool="reports",reason="starvation"} 75
roost_worker_thread_injections_total{pool="web",pid="4242",thread_pool="reports",reason="blocking"} 85
roost_worker_thread_injections_total{pool="web",pid="4242",thread_pool="reports",reason="blocking_detected"} 95
roost_worker_work_items_completed_total{pool="web",pid="4242",thread_pool="default"} 50
roost_worker_work_items_completed_total{pool="web",pid="4242",thread_pool="reports"} 55
roost_worker_requests_current{pool="web",pid="4242"} 7
roost_worker_requests_queued{pool="web",pid="4242"} 3
roost_worker_requests_executing{pool="web",pid="4242"} 4
roost_worker_requests_rejected_total{pool="web",pid="4242"} 11
roost_worker_requests_disconnected_total{pool="web",pid="4242"} 13
roost_worker_requests_completed_total{pool="web",pid="4242"} 12
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="0.0001"} 1
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="0.0005"} 3
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="0.001"} 6
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="0.005"} 10
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="0.01"} 15
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="0.05"} 21
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="0.1"} 28
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="0.5"} 36
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="1"} 45
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="5"} 55
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="10"} 66
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="30"} 78
roost_worker_request_wait_seconds_bucket{pool="web",pid="4242",le="+Inf"} 91
roost_worker_request_wait_seconds_sum{pool="web",pid="4242"} 1.25
roost_worker_request_wait_seconds_count{pool="web",pid="4242"} 91
"#;

    fn thread_pool(name: &str, k: usize) -> ThreadPoolCounters {
        ThreadPoolCounters {
            name: name.into(),
            threads: 10 + k,
            busy: 20 + k,
            idle: 0,
            queued: 30 + k,
            blocked: 2 + k,
            blocked_detected: 3 + k,
            goal: 40 + k,
            min: 1,
            max: 100,
            completed: 50 + k as u64,
            panicked: 0,
            injections: Injections {
                hill_climbing: 60 + k as u64,
                starvation: 70 + k as u64,
                blocking: 80 + k as u64,
                blocking_detected: 90 + k as u64,
            },
            retirements: 0,
            cpu_percent: 0,
            last_transition: None,
        }
    }

    fn snapshot(pool: &str) -> Snapshot {
        Snapshot {
            pool: pool.into(),
            pid: 4242,
            io_threads: 2,
            gate: GateCounters {
                current: 7,
                queued: 3,
                executing: 4,
                executing_threads: 2,
                rejected: 11,
                completed: 12,
                disconnected: 13,
                request_queue_limit: 5000,
                max_executing: 0,
                max_executing_threads: 0,
                wait: WaitCounters {
                    count: 91,
                    queued: 9,
                    sum_seconds: 1.25,
                    avg_seconds: 0.0,
                    max_seconds: 0.0,
                    last_seconds: 0.0,
                    // Distinct per bucket, so a shifted bound shows.
                    buckets: (1..=WAIT_BUCKETS.len() as u64 + 1).collect(),
                },
            },
            thread_pools: vec![thread_pool("default", 0), thread_pool("reports", 5)],
        }
    }

    type Key = (String, BTreeMap<String, String>);

    /// One sample line: name, labels (values unescaped; `le` normalised as a number, since
    /// `1` and `1.0` are the same bound), value.
    fn parse_sample(line: &str) -> (Key, f64) {
        let name_end = line.find(['{', ' ']).expect(line);
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            loop {
                let (start, c) = chars.next().expect(line);
                if c == '}' {
                    rest = &body[start + 1..];
                    break;
                }
                if c == ',' {
                    continue;
                }
                let eq = start + body[start..].find("=\"").expect(line);
                let key = body[start..eq].to_string();
                while chars.next().expect(line).0 < eq + 1 {}
                let mut value = String::new();
                loop {
                    match chars.next().expect(line).1 {
                        '"' => break,
                        '\\' => match chars.next().expect(line).1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        c => value.push(c),
                    }
                }
                if key == "le" && value != "+Inf" {
                    value = value.parse::<f64>().expect(line).to_string();
                }
                labels.insert(key, value);
            }
        }
        let value = rest.trim().parse::<f64>().expect(line);
        ((name, labels), value)
    }

    fn samples(text: &str) -> BTreeMap<Key, f64> {
        let mut out = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (k, v) = parse_sample(line);
            assert!(out.insert(k, v).is_none(), "duplicate sample {line}");
        }
        out
    }

    fn get(s: &BTreeMap<Key, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = (name.to_string(), labels);
        *s.get(&key)
            .unwrap_or_else(|| panic!("no {key:?} in {s:#?}"))
    }

    #[test]
    fn same_samples_as_the_hand_written_exposition() {
        let text = render(snapshot("web"));
        let new = samples(&text);
        let old = samples(HAND_WRITTEN);
        assert_eq!(old.len(), 44);
        assert_eq!(new, old, "{text}");

        let base = [("pool", "web"), ("pid", "4242")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            v
        };
        let io = with(&[("kind", "io"), ("thread_pool", "io")]);
        assert_eq!(get(&new, "roost_worker_threads", &io), 2.0);
        let reports = with(&[("kind", "worker"), ("thread_pool", "reports")]);
        assert_eq!(get(&new, "roost_worker_threads", &reports), 15.0);
        let default = with(&[("thread_pool", "default")]);
        assert_eq!(get(&new, "roost_worker_threads_busy", &default), 20.0);
        assert_eq!(get(&new, "roost_worker_thread_goal", &default), 40.0);
        assert_eq!(get(&new, "roost_worker_work_items_queued", &default), 30.0);
        assert_eq!(
            get(&new, "roost_worker_work_items_completed_total", &default),
            50.0
        );
        let starvation = with(&[("thread_pool", "reports"), ("reason", "starvation")]);
        assert_eq!(
            get(&new, "roost_worker_thread_injections_total", &starvation),
            75.0
        );
        let detected = with(&[("thread_pool", "reports"), ("reason", "blocking_detected")]);
        assert_eq!(
            get(&new, "roost_worker_thread_injections_total", &detected),
            95.0
        );
        let blocked = with(&[("thread_pool", "default"), ("source", "detected")]);
        assert_eq!(get(&new, "roost_worker_threads_blocked", &blocked), 3.0);
        assert_eq!(get(&new, "roost_worker_requests_queued", &base), 3.0);
        assert_eq!(
            get(&new, "roost_worker_requests_rejected_total", &base),
            11.0
        );
        // Buckets are cumulative, ending with +Inf at the count.
        let bucket = |le: &'static str| {
            get(
                &new,
                "roost_worker_request_wait_seconds_bucket",
                &with(&[("le", le)]),
            )
        };
        assert_eq!(bucket("0.0001"), 1.0);
        assert_eq!(bucket("0.0005"), 3.0);
        assert_eq!(bucket("1"), 45.0);
        assert_eq!(bucket("30"), 78.0);
        assert_eq!(bucket("+Inf"), 91.0);
        assert_eq!(
            get(&new, "roost_worker_request_wait_seconds_count", &base),
            91.0
        );
        assert_eq!(
            get(&new, "roost_worker_request_wait_seconds_sum", &base),
            1.25
        );
    }

    #[test]
    fn families_are_typed_and_the_exposition_ends() {
        let text = render(snapshot("web"));
        for family in [
            "# TYPE roost_worker_threads gauge",
            "# TYPE roost_worker_requests_queued gauge",
            // OpenMetrics names a counter family without `_total`; its samples have it.
            "# TYPE roost_worker_requests_rejected counter",
            "# TYPE roost_worker_thread_injections counter",
            "# TYPE roost_worker_request_wait_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == family), "{family}\n{text}");
        }
        assert_eq!(text.lines().last(), Some("# EOF"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let pool = "a\"b\\c\nd";
        let text = render(snapshot(pool));
        assert!(
            text.contains(r#"roost_worker_requests_queued{pool="a\"b\\c\nd",pid="4242"} 3"#),
            "{text}"
        );
        // Still one sample a line, and the value reads back.
        let s = samples(&text);
        assert_eq!(s.len(), 44);
        assert_eq!(
            get(
                &s,
                "roost_worker_requests_queued",
                &[("pool", pool), ("pid", "4242")]
            ),
            3.0
        );
    }
}
