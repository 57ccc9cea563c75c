//! The pool queue under contention and overload (issue 17): the lock-free fast path
//! keeps strict FIFO once anyone waits and loses no slot; the adaptive discipline sheds
//! under a standing queue and stops when the load goes; the rejection policy's status
//! and `Retry-After`; the queue keys' validation.

use crate::support::*;
use http::StatusCode;
use roost::error::Reason;
use roost::pool::{Member, PickKey, Pool};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A pool `p` from YAML (a farm of one unreachable server; tests add their own members).
fn pool_from(extra: &str) -> Arc<Pool> {
    let yaml = format!(
        "sites: [{{name: s, bindings: [{{listen: \"127.0.0.1:0\"}}], applications: [{{path: /, pool: p}}]}}]\n\
         pools:\n  p:\n{extra}    farm: {{servers: [{{address: \"127.0.0.1:9\"}}]}}\n"
    );
    let cfg = roost::config::load_str(&yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    Pool::new(&cfg.pools["p"])
}

fn member(label: &str, slots: usize) -> Arc<Member> {
    let client = roost::upstream::Client::new(
        roost::upstream::Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 9,
        },
        &roost::config::model::UpstreamTimeouts {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_secs(1),
            idle: Duration::from_secs(1),
        },
    );
    Member::new(label, None, client, slots, 1)
}

/// A waiting request gets the next free slot even while other threads hammer the fast
/// path at the moment the slot frees: once anyone waits, nobody passes it. Repeated,
/// so a race between a release and a lock-free acquire would show.
#[test]
fn a_waiter_is_never_passed_by_the_fast_path() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = pool_from("    queueLength: 1000\n");
        pool.add_member(member("a", 1));
        let order = Arc::new(AtomicU64::new(0));
        for round in 0..200 {
            let held = pool.acquire(&PickKey::default()).await.unwrap();
            let (p, o) = (pool.clone(), order.clone());
            let waiter = tokio::spawn(async move {
                let l = p.acquire(&PickKey::default()).await.unwrap();
                let at = o.fetch_add(1, Ordering::SeqCst);
                drop(l);
                at
            });
            while pool.queue_len() < 1 {
                tokio::task::yield_now().await;
            }
            // Two racers arrive after the waiter and try the fast path from other threads.
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    let (p, o) = (pool.clone(), order.clone());
                    tokio::spawn(async move {
                        let l = p.acquire(&PickKey::default()).await.unwrap();
                        let at = o.fetch_add(1, Ordering::SeqCst);
                        drop(l);
                        at
                    })
                })
                .collect();
            let base = order.load(Ordering::SeqCst);
            drop(held);
            let w = waiter.await.unwrap();
            assert_eq!(
                w, base,
                "round {round}: a later arrival took the slot first"
            );
            for r in racers {
                r.await.unwrap();
            }
        }
    });
}

/// Many threads acquire and release one slot as fast as they can: a release that
/// missed a waiter (a lost wake-up between the lock-free release and a request
/// queueing) would leave it waiting with the slot free, and it would time out.
#[test]
fn no_waiter_is_stranded_when_slots_free_without_the_lock() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = pool_from("    queueLength: 10000\n    queueTimeout: 20s\n");
        pool.add_member(member("a", 2));
        let done = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (p, d) = (pool.clone(), done.clone());
                tokio::spawn(async move {
                    for i in 0..2000u32 {
                        let l = p.acquire(&PickKey::default()).await;
                        assert!(l.is_ok(), "{:?}", l.err());
                        if i % 7 == 0 {
                            tokio::task::yield_now().await;
                        }
                        drop(l);
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(done.load(Ordering::Relaxed), 32_000);
        let s = pool.snapshot();
        assert_eq!((s.active, s.queue_length), (0, 0));
        assert_eq!(pool.counters().rejected_total(), 0);
        assert!(pool.members().iter().all(|m| m.active() == 0));
    });
}

/// `fifo` (the default) never sheds: under overload its requests wait out the queue.
#[tokio::test]
async fn fifo_pool_queues_and_never_sheds() {
    let pool = pool_from("    queueLength: 100\n");
    pool.add_member(member("a", 1));
    let held = pool.acquire(&PickKey::default()).await.unwrap();
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let p = pool.clone();
            tokio::spawn(async move { p.acquire(&PickKey::default()).await.map(drop) })
        })
        .collect();
    assert!(eventually(Duration::from_secs(5), || pool.queue_len() == 20).await);
    // Well past any adaptive interval: fifo keeps them all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pool.queue_len(), 20);
    assert!(!pool.shedding());
    drop(held);
    for w in waiters {
        assert!(w.await.unwrap().is_ok());
    }
    assert_eq!(pool.counters().rejected(Reason::Shed), 0);
    assert_eq!(pool.snapshot().discipline, "fifo");
}

/// Open-loop overload on a pool of 2 slots whose requests take 20 ms: the adaptive
/// discipline switches shedding on, refuses with 503 `Shed` and a `Retry-After`, keeps
/// the waits of the requests it serves short, and switches off once the load is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shedding_switches_on_and_off_with_the_load() {
    let be = Backend::start("a").await;
    let yaml = pool_yaml(
        &be.addr.to_string(),
        2,
        "    queueDiscipline: adaptive\n    queueTargetDelay: 5ms\n    queueInterval: 50ms\n    queueTimeout: 30s\n    retryAfter: auto",
        "",
    );
    let f = TestFront::start(&yaml).await;
    let pool = f.front.pool("p").unwrap();
    assert_eq!(pool.snapshot().discipline, "adaptive");

    // About 4x capacity (100/s), sent on a clock, not after answers (open loop).
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(2500));
    let mut seen_on = false;
    for _ in 0..1200 {
        tick.tick().await;
        let addr = f.addr;
        tasks.push(tokio::spawn(async move {
            let t = std::time::Instant::now();
            let (s, r, _) = get(addr, "x", "/slow?ms=20").await;
            (s, r, t.elapsed())
        }));
        seen_on |= pool.shedding();
    }
    let mut served = 0;
    let mut shed = 0;
    for t in tasks {
        let (s, r, _) = t.await.unwrap();
        match (s, r.as_deref()) {
            (StatusCode::OK, _) => served += 1,
            (StatusCode::SERVICE_UNAVAILABLE, Some("Shed")) => shed += 1,
            (StatusCode::SERVICE_UNAVAILABLE, Some("QueueFull")) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(seen_on, "never shed under 4x overload");
    assert!(shed > 0 && served > 0, "served {served}, shed {shed}");
    assert_eq!(pool.counters().rejected(Reason::Shed), shed);
    // The load is gone: after an interval with an empty queue, shedding is off.
    assert!(eventually(Duration::from_secs(10), || !pool.shedding()).await);
    assert!(pool.snapshot().shedding_seconds.is_none());
    let (s, _, _) = get(f.addr, "x", "/slow?ms=1").await;
    assert_eq!(s, StatusCode::OK);
}

/// `rejectStatus` turns `QueueFull` into 429, with a `Retry-After` from the drain rate
/// (`retryAfter: auto`), still within the 1..32 s clamp.
#[tokio::test]
async fn queue_full_can_answer_429_with_computed_retry_after() {
    let be = Backend::start("a").await;
    let yaml = pool_yaml(
        &be.addr.to_string(),
        1,
        "    queueLength: 1\n    queueTimeout: 30s\n    retryAfter: auto\n    rejectStatus: {QueueFull: 429}",
        "",
    );
    let f = TestFront::start(&yaml).await;
    let pool = f.front.pool("p").unwrap();
    let addr = f.addr;
    let _busy = tokio::spawn(async move { get(addr, "x", "/slow?ms=1500").await });
    assert!(eventually(Duration::from_secs(5), || pool.snapshot().active == 1).await);
    let _queued = tokio::spawn(async move { get(addr, "x", "/slow?ms=10").await });
    assert!(eventually(Duration::from_secs(5), || pool.queue_len() == 1).await);
    let mut tx = h1(f.addr).await;
    let resp = tx
        .send_request(
            http::Request::get("/")
                .header("host", "x")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["x-roost-reason"], "QueueFull");
    let ra: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=32).contains(&ra), "{ra}");
}

/// Each bad queue key is named with its value and why.
#[test]
fn bad_queue_keys_are_reported() {
    let yaml = "sites: [{name: s, bindings: [{listen: \"127.0.0.1:0\"}], applications: [{path: /, pool: p}]}]\n\
                pools:\n  p:\n    queueDiscipline: lifo\n    queueTargetDelay: 1s\n    queueInterval: 100ms\n    rejectStatus: {QueueTimeout: 429, Shed: 404}\n    farm: {servers: [{address: \"127.0.0.1:9\"}]}\n";
    let err = roost::config::load_str(yaml, "t.yaml")
        .unwrap_err()
        .to_string();
    for want in [
        "pools.p.queueDiscipline",
        "lifo",
        "expected one of fifo, adaptive",
        "pools.p.queueTargetDelay",
        "shorter than queueInterval",
        "pools.p.rejectStatus.QueueTimeout",
        "only QueueFull and Shed",
        "pools.p.rejectStatus.Shed",
        "expected 503 or 429",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
