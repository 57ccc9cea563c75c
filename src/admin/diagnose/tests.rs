//! The decision tree on synthetic samples: each case is a condition the issue named, with
//! the cause it must produce (and the wrong causes it must not).

use super::*;
use crate::admin::cpu::MachineCpu;
use crate::admin::sampler::{
    BusyRouteView, GateView, InjectionsView, MemberView, PoolCpu, PoolSample, ThreadPoolView,
    WorkerCounters,
};
use crate::pool::Histogram;
use std::collections::BTreeMap;

pub(super) fn pool(queue: usize, active: usize, capacity: usize) -> PoolSample {
    PoolSample {
        name: "web".into(),
        state: "Started".into(),
        kind: "garden",
        queue_length: queue,
        queue_limit: 1000,
        queue_oldest_seconds: if queue > 0 { 2.0 } else { 0.0 },
        capacity,
        active,
        members: 1,
        arrivals: 0,
        completed: 0,
        rejected: BTreeMap::new(),
        duration: Histogram::default().snapshot(),
        queue_wait: Histogram::default().snapshot(),
        worker_failures_total: 0,
        ping_failures_total: 0,
        members_view: vec![],
        starting_seconds: vec![],
        startup_time_limit_seconds: 90.0,
        always_running: true,
        cpu: None,
        shedding_seconds: None,
        queue_state: Default::default(),
    }
}

fn with_cpu(mut p: PoolSample, used_cores: f64, cores: f64) -> PoolSample {
    p.cpu = Some(PoolCpu { used_cores, cores });
    p
}

fn worker(pid: u32, threads: usize, busy: usize, max: usize, starvation: u64) -> WorkerSample {
    let mut pools = BTreeMap::new();
    pools.insert(
        "default".to_string(),
        ThreadPoolView {
            threads,
            busy,
            queued: 5,
            goal: threads,
            min: 2,
            max,
            injections: InjectionsView {
                starvation,
                ..Default::default()
            },
            cpu_percent: 5,
            ..Default::default()
        },
    );
    WorkerSample {
        pool: "web".into(),
        pid,
        counters: WorkerCounters {
            pid,
            cpus: 2,
            worker_pools: pools,
            gate: GateView {
                request_queue_limit: 5000,
                executing: busy,
                completed: 100,
                ..Default::default()
            },
            ..Default::default()
        },
        cpu_percent: Some(1.0),
        unanswered: 0,
        process_state: Some('S'),
        runnable_threads: None,
    }
}

fn blocking_on(mut w: WorkerSample, route: &str, threads: usize, ms: f64) -> WorkerSample {
    w.counters.busy_routes = vec![BusyRouteView {
        route: route.into(),
        threads,
        avg_ms: ms,
        max_ms: ms,
    }];
    w
}

pub(super) fn sample(at: u64, p: PoolSample, w: Vec<WorkerSample>, machine: f64) -> Arc<Sample> {
    Arc::new(Sample {
        at_unix_ms: at,
        pools: vec![p],
        workers: w,
        machine: MachineCpu {
            busy: Some(machine),
            cores: 2,
        },
        front: Default::default(),
    })
}

/// Five samples half a second apart, built by `f(i)`.
fn series(f: impl Fn(u64) -> (PoolSample, Vec<WorkerSample>, f64)) -> Vec<Arc<Sample>> {
    (0..5)
        .map(|i| {
            let (p, w, m) = f(i);
            sample(i * 500, p, w, m)
        })
        .collect()
}

fn rules_of(r: &Report) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.rule).collect()
}

fn evidence(r: &Report) -> String {
    r.findings[0].evidence.join("\n")
}

#[test]
fn no_samples_no_findings() {
    assert!(diagnose(&[]).findings.is_empty());
}

#[test]
fn an_idle_pool_on_a_busy_machine_is_healthy() {
    let h = series(|_| {
        (
            with_cpu(pool(0, 0, 10), 0.01, 2.0),
            vec![worker(42, 2, 0, 8, 0)],
            1.0,
        )
    });
    let r = diagnose(&h);
    assert!(r.findings.is_empty(), "{r:?}");
}

#[test]
fn a_busy_pool_that_keeps_up_is_healthy() {
    // Every slot busy at times, CPU at 60 %, but nothing waits.
    let h = series(|i| {
        let mut w = worker(42, 4, 4, 100, 0);
        w.counters.worker_pools.get_mut("default").unwrap().queued = 0;
        (
            with_cpu(pool(0, 10 - (i as usize % 2), 10), 1.2, 2.0),
            vec![w],
            0.7,
        )
    });
    assert!(diagnose(&h).findings.is_empty(), "{:?}", diagnose(&h));
}

#[test]
fn threads_at_max_with_work_queued_is_max_threads_not_starvation() {
    // Busy follows the goal, below max; the threads themselves are at max.
    let h = series(|i| {
        let mut w = blocking_on(worker(42, 4, 3, 4, 2 + i), "/block", 3, 500.0);
        w.counters.worker_pools.get_mut("default").unwrap().goal = 3;
        let mut p = with_cpu(pool(3 + i as usize, 10, 10), 0.02, 2.0);
        p.arrivals = i * 10;
        (p, vec![w], 0.3)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["threadpool_at_max"]);
    let f = &r.findings[0];
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.advice.contains("maxWorkerThreads"), "{}", f.advice);
    // 20 requests/s × 0.5 s = about 10 threads.
    assert!(f.advice.contains("about 10"), "{}", f.advice);
    assert!(evidence(&r).contains("threads 4/4"));
    assert!(evidence(&r).contains("`/block` held 3 of 3 threads"));
}

#[test]
fn starvation_names_the_blocking_route_and_a_minimum() {
    // Threads climb 4 → 8 at the starvation rate, all busy, CPU nearly idle.
    let h = series(|i| {
        let t = 4 + i as usize;
        let w = blocking_on(worker(42, t, t, 100, 2 + i), "/block", t, 480.0);
        let mut p = with_cpu(pool(5 + i as usize, 10, 10), 0.03, 2.0);
        p.arrivals = i * 25;
        (p, vec![w], 0.2)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["threadpool_starvation"]);
    let f = &r.findings[0];
    assert!(f.title.contains("synchronous blocking"));
    assert!(
        evidence(&r).contains("4 starvation injections"),
        "{}",
        evidence(&r)
    );
    assert!(evidence(&r).contains("`/block` held 8 of 8 threads for 480 ms"));
    // 50 requests/s × 0.48 s = 24 threads.
    assert!(f.advice.contains("minWorkerThreads ≈ 24"), "{}", f.advice);
    assert!(f.symptoms.contains(&"saturated"));
}

#[test]
fn starvation_says_how_many_busy_threads_the_kernel_has_blocked() {
    let h = series(|i| {
        let t = 4 + i as usize;
        let mut w = blocking_on(worker(42, t, t, 100, 2 + i), "/block", t, 480.0);
        if let Some(p) = w.counters.worker_pools.get_mut("default") {
            p.blocked_detected = t;
        }
        let mut p = with_cpu(pool(5 + i as usize, 10, 10), 0.03, 2.0);
        p.arrivals = i * 25;
        (p, vec![w], 0.2)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["threadpool_starvation"]);
    assert!(
        evidence(&r).contains("8 of 8 busy threads blocked in the kernel (8 found by blocking detection, 0 hinted), on `/block`"),
        "{}",
        evidence(&r)
    );
}

#[test]
fn a_garden_using_its_cores_is_cpu_bound_never_starvation() {
    // Two workers each burning ~95 % of a core, on a 2-core machine: 1.9 of 2 cores,
    // although the thread pools also saw starvation injections.
    let h = series(|i| {
        let ws = vec![worker(1, 3, 3, 100, i), worker(2, 3, 3, 100, i)];
        (with_cpu(pool(8, 20, 20), 1.9, 2.0), ws, 0.97)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["cpu_bound"]);
    assert!(r.findings[0].advice.contains("more threads will not help"));
    assert!(
        evidence(&r).contains("1.90 of the 2 cores"),
        "{}",
        evidence(&r)
    );
}

#[test]
fn a_saturated_shared_machine_with_the_pool_among_its_users_is_cpu() {
    // Other processes take half the machine: the pool has 0.9 of 2 cores (45 %).
    let h = series(|i| {
        (
            with_cpu(pool(8, 20, 20), 0.9, 2.0),
            vec![worker(1, 3, 3, 100, i)],
            1.0,
        )
    });
    assert_eq!(rules_of(&diagnose(&h)), vec!["cpu_bound"]);
    // Crowded out: 0.4 of 2 cores (20 %), but that is 0.2 core for each busy thread.
    let h = series(|i| {
        (
            with_cpu(pool(8, 8, 8), 0.4, 2.0),
            vec![worker(1, 4, 2, 64, i)],
            1.0,
        )
    });
    assert_eq!(rules_of(&diagnose(&h)), vec!["cpu_bound"]);
    // Crowded out further (0.04 core per thread), but its busy threads are runnable.
    let h = series(|i| {
        let mut w = worker(1, 6, 5, 64, i);
        w.runnable_threads = Some(5);
        (with_cpu(pool(8, 8, 8), 0.2, 2.0), vec![w], 1.0)
    });
    assert_eq!(rules_of(&diagnose(&h)), vec!["cpu_bound"]);
    // The same machine with a pool that barely uses the CPU: its threads block.
    let h = series(|i| {
        let t = 3 + i as usize;
        (
            with_cpu(pool(8, 20, 20), 0.02, 2.0),
            vec![worker(1, t, t, 100, i)],
            1.0,
        )
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["threadpool_starvation"]);
    assert!(evidence(&r).contains("machine CPU at 80 % or more"));
}

#[test]
fn queue_full_is_reported_with_its_cause() {
    let h = series(|i| {
        let mut p = with_cpu(pool(1000, 20, 20), 1.95, 2.0);
        p.rejected.insert("QueueFull".into(), i * 40);
        (p, vec![worker(1, 3, 3, 100, 0)], 1.0)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["cpu_bound"]);
    let f = &r.findings[0];
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.symptoms, vec!["queue_full", "saturated"]);
    assert!(evidence(&r).contains("160 requests refused with 503 QueueFull"));
}

#[test]
fn a_full_gate_with_idle_threads_is_gate_bound_alone() {
    let h = series(|_| {
        let mut w = worker(42, 4, 1, 100, 0);
        w.counters.worker_pools.get_mut("default").unwrap().queued = 0;
        w.counters.gate = GateView {
            current: 12,
            queued: 10,
            executing: 2,
            executing_threads: 2,
            max_executing: 100,
            max_executing_threads: 2,
            request_queue_limit: 5000,
            ..Default::default()
        };
        // Every front slot busy too: that is the gate's doing, not a backend's.
        (with_cpu(pool(4, 12, 12), 0.05, 2.0), vec![w], 0.2)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["gate_bound"]);
    assert!(r.findings[0].evidence[0].contains("maxConcurrentThreadsPerCPU: 2/2"));
}

#[test]
fn a_stopped_worker_is_hung_not_backend_latency() {
    let h = series(|i| {
        let mut w = blocking_on(worker(42, 4, 4, 100, 0), "/cpu", 4, 30.0);
        w.unanswered = i as u32;
        w.process_state = Some('T');
        w.cpu_percent = Some(0.0);
        (with_cpu(pool(6, 10, 10), 0.0, 2.0), vec![w], 0.1)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["hung_worker"]);
    let e = evidence(&r);
    assert!(e.contains("unanswered in the last 4 samples"), "{e}");
    assert!(e.contains("process state T"), "{e}");
    assert!(e.contains("`/cpu` held 4 of 4 threads"), "{e}");
    // One missed answer from a running worker is not yet a hang.
    let mut w = worker(42, 2, 0, 100, 0);
    w.unanswered = 1;
    let h = series(|_| (pool(0, 0, 10), vec![w.clone()], 0.1));
    assert!(diagnose(&h).findings.is_empty());
}

#[test]
fn requests_that_never_finish_are_a_hang() {
    let h: Vec<_> = (0..10)
        .map(|i| {
            let w = blocking_on(worker(42, 2, 2, 100, 0), "/hang", 2, 1000.0 * i as f64);
            sample(i * 1000, pool(0, 2, 10), vec![w], 0.1)
        })
        .collect();
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["hung_worker"]);
    assert!(r.findings[0].title.contains("finishes no request"));
    assert!(
        evidence(&r).contains("none completed for 9 s"),
        "{}",
        evidence(&r)
    );
}

#[test]
fn a_slow_farm_server_is_named_by_its_latency() {
    let member = |label: &str, ms: f64, active| MemberView {
        label: label.into(),
        usable: true,
        state: "healthy".into(),
        active,
        slots: 4,
        latency_ewma_ms: ms,
        ..Default::default()
    };
    let h = series(|_| {
        let mut p = pool(10, 8, 8);
        p.kind = "farm";
        p.members_view = vec![
            member("10.0.0.1:80", 4.0, 4),
            member("10.0.0.2:80", 2000.0, 4),
        ];
        (p, vec![], 0.2)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["slow_server"]);
    assert!(r.findings[0].title.contains("10.0.0.2:80 is slow: 2000 ms"));
}

#[test]
fn all_slots_busy_with_idle_workers_is_backend_latency() {
    let h = series(|_| {
        let mut w = worker(42, 3, 0, 100, 0);
        w.counters.worker_pools.get_mut("default").unwrap().queued = 0;
        (with_cpu(pool(6, 10, 10), 0.02, 2.0), vec![w], 0.2)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["backend_latency"]);
}

#[test]
fn ejected_farm_server() {
    let h = series(|_| {
        let mut p = pool(0, 0, 4);
        p.kind = "farm";
        p.members_view = vec![MemberView {
            label: "127.0.0.1:9".into(),
            state: "ejected".into(),
            failed: 12,
            ejections: 1,
            ..Default::default()
        }];
        (p, vec![], 0.2)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["server_down"]);
    assert_eq!(r.findings[0].severity, Severity::Critical);
    let e = evidence(&r);
    assert!(
        e.contains("127.0.0.1:9 ejected by passive health") && e.contains("12 failed of 12"),
        "{e}"
    );
}

#[test]
fn a_server_failing_every_request_but_kept_in_rotation_is_named() {
    // Ejection held back (maxEjectionPercent reached): it fails all it gets.
    let h = series(|i| {
        let mut p = pool(0, 0, 4);
        p.kind = "farm";
        let m = |label: &str, served, failed| MemberView {
            label: label.into(),
            state: "healthy".into(),
            usable: true,
            served,
            failed,
            failure_streak: failed as u32,
            ejection_threshold: 5,
            ..Default::default()
        };
        p.members_view = vec![m("10.0.0.1:80", 50 + i * 10, 0), m("10.0.0.2:80", 7, i * 4)];
        (p, vec![], 0.2)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["server_down"]);
    let f = &r.findings[0];
    assert!(
        f.title.contains("10.0.0.2:80 fails every request"),
        "{f:#?}"
    );
    assert!(
        evidence(&r).contains("16 failed requests in the last 2 s"),
        "{f:#?}"
    );
}

#[test]
fn a_stopped_pool_says_how_many_requests_it_refused() {
    let mut p = pool(0, 0, 0);
    p.state = "Stopped".into();
    p.rejected.insert("Disabled".into(), 4);
    let mut before = p.clone();
    before.rejected.insert("Disabled".into(), 1);
    let r = diagnose(&[sample(0, before, vec![], 0.0), sample(1000, p, vec![], 0.0)]);
    assert_eq!(
        evidence(&r),
        "3 requests refused with 503 Disabled in the last 1 s"
    );
}

#[test]
fn workers_still_starting_say_how_long_against_the_limit() {
    let h = series(|i| {
        let mut p = pool(5, 0, 0);
        p.starting_seconds = vec![2.0 + i as f64 * 0.5];
        p.always_running = false;
        (p, vec![], 0.2)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["startup"]);
    let f = &r.findings[0];
    assert!(
        evidence(&r).contains("for 4.0 s of startupTimeLimit 90 s"),
        "{}",
        evidence(&r)
    );
    assert!(f.advice.contains("alwaysRunning") && f.advice.contains("overlapped"));
}

#[test]
fn gate_rejections_without_a_deeper_cause() {
    let h = series(|i| {
        let mut w = worker(42, 2, 0, 100, 0);
        w.counters.worker_pools.get_mut("default").unwrap().queued = 0;
        w.counters.gate.rejected = 10 + i * 5;
        (with_cpu(pool(0, 1, 10), 0.1, 2.0), vec![w], 0.2)
    });
    let r = diagnose(&h);
    assert_eq!(rules_of(&r), vec!["request_queue_limit"]);
    assert!(
        evidence(&r).contains("20 requests refused"),
        "{}",
        evidence(&r)
    );
}

#[test]
fn rapid_fail_offline_and_stopped() {
    let mut p = pool(0, 0, 0);
    p.state = "AppOffline".into();
    p.worker_failures_total = 5;
    let r = diagnose(&[sample(0, p.clone(), vec![], 0.0)]);
    assert_eq!(rules_of(&r), vec!["rapid_fail_offline"]);
    p.state = "Stopped".into();
    let r = diagnose(&[sample(0, p, vec![], 0.0)]);
    assert_eq!(rules_of(&r), vec!["stopped"]);
    assert_eq!(r.findings[0].severity, Severity::Info);
}

#[test]
fn old_samples_fall_out_of_the_window() {
    let mut p0 = pool(0, 0, 10);
    p0.rejected.insert("QueueFull".into(), 0);
    let mut p1 = pool(0, 0, 10);
    p1.rejected.insert("QueueFull".into(), 7);
    let h = vec![
        sample(0, p0, vec![], 0.0),
        sample(1000, p1.clone(), vec![], 0.0),
        sample(60_000, p1.clone(), vec![], 0.0),
        sample(61_000, p1, vec![], 0.0),
    ];
    assert!(diagnose(&h).findings.is_empty());
}

#[test]
fn one_noisy_sample_decides_nothing() {
    // A single sample with a queue among calm ones: no majority, no finding.
    let h = series(|i| {
        let q = if i == 3 { 6 } else { 0 };
        (
            with_cpu(pool(q, 10, 10), 0.02, 2.0),
            vec![worker(1, 2, 0, 100, 0)],
            0.2,
        )
    });
    let mut h = h;
    for s in &mut h {
        let s = Arc::make_mut(s);
        s.workers[0]
            .counters
            .worker_pools
            .get_mut("default")
            .unwrap()
            .queued = 0;
    }
    assert!(diagnose(&h).findings.is_empty(), "{:?}", diagnose(&h));
}
