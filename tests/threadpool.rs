//! Integration tests of the worker thread pool (`roost::worker::threadpool`): real threads,
//! real blocking, loose timing bounds (the suite must pass on a loaded 2-core machine).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use roost::worker::threadpool::{RunError, ThreadPool, ThreadPoolConfig, Transition};

/// A latch the test opens to let blocked work items finish.
#[derive(Clone, Default)]
struct Latch(Arc<(Mutex<bool>, Condvar)>);

impl Latch {
    fn wait(&self) {
        let (m, cv) = &*self.0;
        let mut open = m.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    }
    fn open(&self) {
        let (m, cv) = &*self.0;
        *m.lock().unwrap() = true;
        cv.notify_all();
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A config whose behaviour does not depend on the machine: CPU load from other processes
/// must not slow starvation injection, and blocking steps do not depend on the core count.
fn cfg(name: &str, min: usize, max: usize) -> ThreadPoolConfig {
    let mut c = ThreadPoolConfig::new(name, min, max);
    c.starvation_cpu_percent = 101;
    c.blocking_threads_without_delay = 2;
    c.blocking_threads_per_delay_step = 2;
    c
}

#[test]
fn min_threads_start_at_once_and_are_kept() {
    let mut c = cfg("it-min", 4, 16);
    c.idle_timeout = Some(Duration::from_millis(100));
    let pool = ThreadPool::new(c);
    let counters = pool.counters();
    assert_eq!(counters.threads, 4, "min threads are created by new()");
    assert_eq!(counters.goal, 4);
    // Idle retirement never goes below min.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(pool.counters().threads, 4);
    pool.shutdown();
}

#[test]
fn max_is_never_exceeded_under_a_flood() {
    let max = 4;
    let mut c = cfg("it-flood", 1, max);
    c.gate_interval = Duration::from_millis(20); // starvation as aggressive as it gets
    c.gate_tolerance = Duration::from_millis(5);
    let pool = ThreadPool::new(c);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let items = 300;
    for i in 0..items {
        let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
        pool.spawn(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let work = || std::thread::sleep(Duration::from_millis(2));
            // Half the items also ask for blocking compensation.
            if i % 2 == 0 {
                roost::worker::blocking(work);
            } else {
                work();
            }
            running.fetch_sub(1, Ordering::SeqCst);
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    let mut max_threads_seen = 0;
    let finished = wait_until(Duration::from_secs(20), || {
        let c = pool.counters();
        max_threads_seen = max_threads_seen.max(c.threads);
        assert!(c.goal <= max, "goal {} > max", c.goal);
        assert!(c.busy <= max, "busy {} > max", c.busy);
        done.load(Ordering::SeqCst) == items
    });
    assert!(finished, "flood did not drain");
    assert!(max_threads_seen <= max, "threads {max_threads_seen} > max");
    assert!(peak.load(Ordering::SeqCst) <= max);
    assert!(
        peak.load(Ordering::SeqCst) >= 2,
        "the flood should have used more than one thread"
    );
    assert_eq!(pool.counters().completed, items as u64);
    pool.shutdown();
}

/// Start `n` items that block until the latch opens; `hint` wraps the wait in `blocking`.
fn block_items(pool: &ThreadPool, latch: &Latch, n: usize, hint: bool) {
    for _ in 0..n {
        let latch = latch.clone();
        pool.spawn(move || {
            if hint {
                roost::worker::blocking(|| latch.wait());
            } else {
                latch.wait();
            }
        });
    }
}

#[test]
fn starvation_grows_a_blocked_pool_at_about_two_threads_per_second() {
    let min = 2;
    let mut c = cfg("it-starve", min, 64);
    c.blocking_detection = false; // starvation alone is under test
    let pool = ThreadPool::new(c);
    let latch = Latch::default();
    let start = Instant::now();
    block_items(&pool, &latch, 20, false);
    // Observe for a while; the pool must grow, but no faster than one thread per gate tick.
    let mut grew = false;
    while start.elapsed() < Duration::from_millis(2200) {
        let c = pool.counters();
        let elapsed = start.elapsed().as_secs_f64();
        let allowed = min as f64 + elapsed / 0.5 + 2.0;
        assert!(
            (c.busy as f64) <= allowed,
            "{} busy after {elapsed:.2} s (allowed {allowed:.1})",
            c.busy
        );
        assert_eq!(c.injections.blocking, 0);
        grew |= c.busy > min;
        std::thread::sleep(Duration::from_millis(20));
    }
    let grew = grew || wait_until(Duration::from_secs(5), || pool.counters().busy > min);
    assert!(grew, "starvation never injected a thread");
    let c = pool.counters();
    eprintln!("starvation: {} busy after {:?}", c.busy, start.elapsed());
    assert!(c.injections.starvation >= 1);
    assert!(pool
        .transitions()
        .iter()
        .any(|t| t.transition == Transition::Starvation));
    latch.open();
    assert!(wait_until(Duration::from_secs(5), || pool
        .counters()
        .completed
        == 20));
    pool.shutdown();
}

#[test]
fn blocking_hints_inject_faster_than_starvation() {
    let min = 2;
    let n = 12;
    let mut c = cfg("it-starved", min, 64);
    c.blocking_detection = false; // the unhinted pool has only starvation to help it
    let starved = ThreadPool::new(c);
    let hinted = ThreadPool::new(cfg("it-hinted", min, 64));
    let (l1, l2) = (Latch::default(), Latch::default());
    let start = Instant::now();
    block_items(&starved, &l1, n, false);
    block_items(&hinted, &l2, n, true);
    // min 2 + 2 without delay at once, then one per 25..250 ms step: all 12 in well under 2 s
    // on an idle box; starvation alone needs ~5 s for the same.
    assert!(
        wait_until(Duration::from_secs(10), || hinted.counters().busy == n),
        "hinted pool did not absorb the burst: {:?}",
        hinted.counters()
    );
    let hinted_time = start.elapsed();
    let starved_busy = starved.counters().busy;
    eprintln!("hinted pool: {n} busy after {hinted_time:?}; starvation-only pool: {starved_busy}");
    assert!(
        starved_busy < n,
        "starvation alone reached {starved_busy} in {hinted_time:?}"
    );
    let hc = hinted.counters();
    assert!(hc.injections.blocking >= (n - min) as u64, "{hc:?}");
    assert_eq!(hc.blocked, n);
    assert!(hinted
        .transitions()
        .iter()
        .any(|t| t.transition == Transition::CooperativeBlocking));

    // Unblocking takes back what blocking added (goal returns to min), nothing more.
    l2.open();
    assert!(wait_until(Duration::from_secs(5), || {
        let c = hinted.counters();
        c.blocked == 0 && c.goal == min && c.completed == n as u64
    }));
    l1.open();
    assert!(wait_until(Duration::from_secs(10), || starved
        .counters()
        .completed
        == n as u64));
    starved.shutdown();
    hinted.shutdown();
}

#[test]
fn idle_threads_retire_but_not_below_min() {
    let mut c = cfg("it-retire", 1, 8);
    c.idle_timeout = Some(Duration::from_millis(200));
    let pool = ThreadPool::new(c);
    let latch = Latch::default();
    block_items(&pool, &latch, 6, true);
    assert!(
        wait_until(Duration::from_secs(10), || pool.counters().busy == 6),
        "{:?}",
        pool.counters()
    );
    assert!(pool.counters().threads >= 6);
    latch.open();
    assert!(
        wait_until(Duration::from_secs(10), || pool.counters().threads == 1),
        "{:?}",
        pool.counters()
    );
    let c = pool.counters();
    assert!(c.retirements >= 5, "{c:?}");
    assert_eq!(c.goal, 1);
    // The survivor still works.
    let (tx, rx) = std::sync::mpsc::channel();
    pool.spawn(move || tx.send(()).unwrap());
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    pool.shutdown();
}

#[test]
fn raising_the_limits_absorbs_a_burst_at_once() {
    // Reference scenario 7: max = 2 holds the third item back; raising min/max starts it
    // without waiting for starvation.
    let mut c = cfg("it-limits", 2, 2);
    c.gate_interval = Duration::from_secs(30); // no starvation help in this test
    let pool = ThreadPool::new(c);
    let latch = Latch::default();
    let started = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let (latch, started) = (latch.clone(), started.clone());
        pool.spawn(move || {
            started.fetch_add(1, Ordering::SeqCst);
            latch.wait();
        });
    }
    assert!(wait_until(Duration::from_secs(5), || started
        .load(Ordering::SeqCst)
        == 2));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(started.load(Ordering::SeqCst), 2, "max must hold the third");
    assert_eq!(pool.counters().queued, 1);
    pool.set_limits(3, 3);
    assert!(
        wait_until(Duration::from_secs(5), || started.load(Ordering::SeqCst)
            == 3),
        "raising min did not start the queued item"
    );
    assert_eq!(pool.counters().threads, 3);
    latch.open();
    pool.shutdown();
}

#[tokio::test]
async fn run_returns_values_and_contains_panics() {
    let pool = ThreadPool::new(cfg("it-run", 1, 2));
    assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    let err = pool.run(|| -> u32 { panic!("boom") }).await.unwrap_err();
    assert_eq!(err, RunError::Panicked("boom".into()));
    // The thread survived and keeps serving.
    let name = pool
        .run(|| std::thread::current().name().unwrap_or("").to_string())
        .await
        .unwrap();
    assert!(name.starts_with("it-run-"), "{name}");
    assert!(pool
        .run(roost::worker::threadpool::is_pool_thread)
        .await
        .unwrap());
    let c = pool.counters();
    assert_eq!(c.panicked, 1);
    let p = pool.clone();
    tokio::task::spawn_blocking(move || p.shutdown())
        .await
        .unwrap();
    assert_eq!(pool.run(|| 1).await, Err(RunError::ShutDown));
}

#[test]
fn counters_serialize_with_the_contract_fields() {
    let pool = ThreadPool::new(cfg("it-json", 2, 4));
    let v = serde_json::to_value(pool.counters()).unwrap();
    for key in [
        "name",
        "threads",
        "busy",
        "idle",
        "queued",
        "goal",
        "min",
        "max",
        "completed",
        "injections",
        "retirements",
        "last_transition",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert!(v.get("blocked_detected").is_some(), "{v}");
    for key in [
        "hill_climbing",
        "starvation",
        "blocking",
        "blocking_detected",
    ] {
        assert!(
            v["injections"].get(key).is_some(),
            "missing injections.{key}"
        );
    }
    assert_eq!(v["name"], "it-json");
    pool.shutdown();
}

#[test]
fn hill_climbing_adds_threads_for_latency_bound_work() {
    // Items sleep 10 ms without any hint, and the queue never runs dry: throughput grows
    // with threads, so the controller should climb. The CPU veto is lifted so other
    // processes on the box cannot freeze it; starvation is off so only hill climbing acts.
    let min = 2;
    let mut c = cfg("it-hc", min, 40);
    c.starvation_detection = false;
    c.blocking_detection = false; // sleeping items would be detected: only hill climbing
    c.hill_climbing_config.cpu_high_percent = 101;
    let pool = ThreadPool::new(c);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Keep ~100 items queued.
    let feeder = {
        let (pool, stop) = (pool.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                while pool.counters().queued < 100 {
                    pool.spawn(|| std::thread::sleep(Duration::from_millis(10)));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let climbed = wait_until(Duration::from_secs(9), || pool.counters().goal >= min + 4);
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    let c = pool.counters();
    eprintln!("hill climbing: {c:?}");
    assert!(climbed, "goal did not climb: {c:?}");
    assert!(c.injections.hill_climbing >= 4, "{c:?}");
    assert_eq!(c.injections.starvation, 0);
    pool.set_limits(1, 1); // let the backlog drain quickly-ish, then stop
    pool.shutdown();
}

#[test]
fn cpu_bound_flood_keeps_the_goal_near_the_core_count() {
    // Reference scenario 1 with the real defaults (CPU veto at 95 %, starvation on): 1 ms
    // spinning items keep every core busy, so extra threads cannot raise throughput.
    let cores = roost::worker::threadpool::cores();
    let pool = ThreadPool::new(ThreadPoolConfig::new("it-cpu", cores, 64));
    let spin = || {
        let end = Instant::now() + Duration::from_millis(1);
        let mut x = 0u64;
        while Instant::now() < end {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    };
    let start = Instant::now();
    let mut goals = Vec::new();
    let mut most_detected = 0;
    while start.elapsed() < Duration::from_secs(4) {
        while pool.counters().queued < 50 {
            pool.spawn(spin);
        }
        let c = pool.counters();
        most_detected = most_detected.max(c.blocked_detected);
        if start.elapsed() > Duration::from_secs(2) {
            goals.push(c.goal);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mean = goals.iter().sum::<usize>() as f64 / goals.len() as f64;
    let c = pool.counters();
    eprintln!("cpu-bound: cores {cores}, mean goal {mean:.2} over the last 2 s; {c:?}");
    assert!(
        mean <= cores as f64 + 3.0,
        "mean goal {mean} with {cores} cores"
    );
    // Blocking detection is on (the default) and must leave running threads alone.
    assert_eq!(most_detected, 0, "{c:?}");
    assert_eq!(c.injections.blocking_detected, 0, "{c:?}");
    pool.set_limits(1, 1);
    pool.shutdown();
}

/// Submit `n` items that sleep `ms` without a hint; returns a counter of finished items.
fn sleep_items(pool: &ThreadPool, n: usize, ms: u64) -> Arc<AtomicUsize> {
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..n {
        let done = done.clone();
        pool.spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    done
}

#[test]
fn unhinted_blocking_burst_is_detected_and_drains_much_faster() {
    // 40 items sleeping 200 ms on min 2: 4 s on 2 threads. Without detection neither
    // starvation (something is dequeued every ~100 ms) nor hill climbing (its first move
    // needs ~9 accepted samples of >= 7 completions) can help much in that time; with it
    // the pool grows within a few samples. Both pools run at once, so load from other
    // processes weighs on both alike.
    let (n, ms, min) = (40, 200, 2);
    let mut off = cfg("it-det-off", min, 64);
    off.blocking_detection = false;
    let off = ThreadPool::new(off);
    let on = ThreadPool::new(cfg("it-det-on", min, 64));
    let start = Instant::now();
    let done_off = sleep_items(&off, n, ms);
    let done_on = sleep_items(&on, n, ms);
    assert!(wait_until(Duration::from_secs(30), || done_on
        .load(Ordering::SeqCst)
        == n));
    let t_on = start.elapsed();
    assert!(wait_until(Duration::from_secs(30), || done_off
        .load(Ordering::SeqCst)
        == n));
    let t_off = start.elapsed();
    let (c_on, c_off) = (on.counters(), off.counters());
    eprintln!("detection on: {t_on:?} {c_on:?}\ndetection off: {t_off:?} {c_off:?}");
    assert!(c_on.injections.blocking_detected >= 2, "{c_on:?}");
    assert_eq!(c_on.injections.blocking, 0, "no hints were given");
    assert!(on
        .transitions()
        .iter()
        .any(|t| t.transition == Transition::BlockingDetected));
    assert_eq!(c_off.injections.blocking_detected, 0, "{c_off:?}");
    assert!(
        t_on * 2 < t_off,
        "detection on drained in {t_on:?}, off in {t_off:?}"
    );
    on.shutdown();
    off.shutdown();
}

#[test]
fn goal_drops_back_to_min_once_detected_threads_run_again() {
    // Starvation and hill climbing off: every goal change here is blocking detection's.
    let (n, min) = (8, 2);
    let mut c = cfg("it-det-back", min, 32);
    c.starvation_detection = false;
    c.hill_climbing = false;
    let pool = ThreadPool::new(c);
    let latch = Latch::default();
    block_items(&pool, &latch, n, false);
    assert!(
        wait_until(Duration::from_secs(20), || pool.counters().busy == n),
        "detection did not start all blocked items: {:?}",
        pool.counters()
    );
    // The last items started once the queue was empty: the count may lag but not exceed.
    let c = pool.counters();
    assert!(c.goal >= n && c.goal <= min + n, "{c:?}");
    assert!(
        c.blocked_detected >= n - min && c.blocked_detected <= n,
        "{c:?}"
    );
    assert!(c.injections.blocking_detected >= (n - min) as u64, "{c:?}");
    assert_eq!(c.blocked, 0);
    latch.open();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let c = pool.counters();
            c.goal == min && c.blocked_detected == 0 && c.completed == n as u64
        }),
        "goal did not come back to min: {:?}",
        pool.counters()
    );
    pool.shutdown();
}

#[test]
fn detection_switched_off_adds_no_threads_for_unhinted_blocking() {
    let run = |detect: bool| {
        let mut c = cfg(if detect { "it-sw-on" } else { "it-sw-off" }, 2, 32);
        c.starvation_detection = false;
        c.hill_climbing = false;
        c.blocking_detection = detect;
        c.blocking_detection_interval = Duration::from_millis(20);
        let pool = ThreadPool::new(c);
        let latch = Latch::default();
        block_items(&pool, &latch, 6, false);
        // Long enough for dozens of 20 ms samples, even on a loaded box.
        let grew = wait_until(Duration::from_millis(1500), || pool.counters().busy > 2);
        let c = pool.counters();
        latch.open();
        pool.shutdown();
        (grew, c)
    };
    let (grew, c) = run(false);
    assert!(!grew, "{c:?}");
    assert_eq!((c.goal, c.busy, c.blocked_detected), (2, 2, 0), "{c:?}");
    assert_eq!(c.injections.blocking_detected, 0);
    let (grew, c) = run(true);
    assert!(grew, "the same pool with detection on must grow: {c:?}");
}

/// Submit `2 * half` items alternating a 150 ms sleep (no hint) and a 20 ms spin.
fn mixed_items(pool: &ThreadPool, half: usize) -> Arc<AtomicUsize> {
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..2 * half {
        let done = done.clone();
        pool.spawn(move || {
            if i % 2 == 0 {
                std::thread::sleep(Duration::from_millis(150));
            } else {
                let end = Instant::now() + Duration::from_millis(20);
                let mut x = 0u64;
                while Instant::now() < end {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    done
}

#[test]
fn mixed_burst_drains_faster_with_no_more_threads_than_hints_would_add() {
    // Half the items spin (state R), half sleep. Detection may only count sleepers, so the
    // goal stays within min + sleepers, the most the hinted path would reach.
    let (half, min) = (30, 2);
    let mk = |name: &str, detect: bool| {
        let mut c = cfg(name, min, 64);
        c.starvation_detection = false;
        c.hill_climbing = false;
        c.blocking_detection = detect;
        ThreadPool::new(c)
    };
    let (on, off) = (mk("it-mix-on", true), mk("it-mix-off", false));
    let start = Instant::now();
    let done_on = mixed_items(&on, half);
    let done_off = mixed_items(&off, half);
    let mut peak_goal = 0;
    let drained = wait_until(Duration::from_secs(30), || {
        peak_goal = peak_goal.max(on.counters().goal);
        done_on.load(Ordering::SeqCst) == 2 * half
    });
    let t_on = start.elapsed();
    assert!(drained, "{:?}", on.counters());
    assert!(wait_until(Duration::from_secs(30), || done_off
        .load(Ordering::SeqCst)
        == 2 * half));
    let t_off = start.elapsed();
    let c = on.counters();
    eprintln!("mixed: on {t_on:?} (peak goal {peak_goal}), off {t_off:?}; {c:?}");
    assert!(c.injections.blocking_detected >= 1, "{c:?}");
    assert!(peak_goal <= min + half, "peak goal {peak_goal}");
    assert!(t_on < t_off, "on {t_on:?} vs off {t_off:?}");
    on.shutdown();
    off.shutdown();
}
