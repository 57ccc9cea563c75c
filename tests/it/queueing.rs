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
    let sampler = roost::admin::sampler::Sampler::new(f.front.clone(), None);
    sampler.sample_once().await;

    // About 4x capacity (100/s), sent on a clock, not after answers (open loop).
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(2500));
    let mut seen_on = false;
    let mut told = None;
    for i in 0..1200 {
        tick.tick().await;
        let addr = f.addr;
        tasks.push(tokio::spawn(async move {
            let t = std::time::Instant::now();
            let (s, r, _) = get(addr, "x", "/slow?ms=20").await;
            (s, r, t.elapsed())
        }));
        seen_on |= pool.shedding();
        // Once it has shed for a while, the diagnosis and the metrics say so.
        if told.is_none() && i >= 800 && pool.shedding() {
            sampler.sample_once().await;
            let report = roost::admin::diagnose::diagnose(&sampler.history());
            let metrics =
                roost::admin::metrics::render(&roost::admin::metrics::registry(sampler.clone()));
            told = Some((report, metrics));
        }
    }
    let (report, metrics) = told.expect("shedding at the end of the load");
    let finding = report
        .findings
        .iter()
        .find(|f| f.pool == "p")
        .expect("a finding");
    assert!(finding.symptoms.contains(&"shedding"), "{finding:?}");
    let ev = finding.evidence.join("\n");
    for want in [
        "shedding since ",
        "because the queue wait stayed above target 5 ms",
        " 50 ms)",
    ] {
        assert!(ev.contains(want), "{want:?} not in {ev}");
    }
    for want in [
        "roost_pool_queue_shedding{pool=\"p\"} 1",
        "roost_pool_queue_discipline{pool=\"p\",discipline=\"adaptive\"} 1",
        "roost_pool_queue_sheds_total{pool=\"p\",cause=\"overload\"}",
    ] {
        assert!(metrics.contains(want), "{want:?} not in metrics");
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

/// GET with extra headers over a fresh connection.
async fn get_with(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>) {
    let mut tx = h1(addr).await;
    let mut req = http::Request::get(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tx.send_request(req.body(empty()).unwrap()).await.unwrap();
    let (s, r, _) = read(resp).await;
    (s, r)
}

/// Two sites (hosts `a` and `b`), each with its root application on pool `p` of one
/// slot: two applications sharing a pool.
fn two_apps_yaml(backend: &str, pool: &str) -> String {
    format!(
        "sites:\n\
         \x20 - {{name: sa, hostNames: [a], bindings: [{{listen: \"127.0.0.1:0\"}}], applications: [{{path: /, pool: p}}]}}\n\
         \x20 - {{name: sb, hostNames: [b], bindings: [{{listen: \"127.0.0.1:0\"}}], applications: [{{path: /, pool: p}}]}}\n\
         pools:\n  p:\n{pool}    farm: {{servers: [{{address: \"{backend}\", maxConcurrentRequests: 1}}]}}\n"
    )
}

/// A noisy application floods a one-slot pool (more than its queue holds); a quiet one
/// sends a few requests after it. With `fairness: {by: application}` the quiet one still
/// gets its place in the full queue (the noisy one's newest waiters are shed) and is
/// served every other turn, instead of after the whole flood as in FIFO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fairness_holds_a_noisy_application_to_its_share() {
    let be = Backend::start("a").await;
    let yaml = two_apps_yaml(
        &be.addr.to_string(),
        "    queueLength: 30\n    queueTimeout: 60s\n    fairness: {by: application, weights: {sa/: 1, sb/: 1}}\n",
    );
    let f = TestFront::start(&yaml).await;
    let pool = f.front.pool("p").unwrap();
    let addr = f.addr;
    let send = |host: &'static str, id: String, ms: u32| {
        tokio::spawn(async move {
            let path = format!("/slow?ms={ms}&id={id}");
            get_with(addr, host, &path, &[]).await
        })
    };
    let holder = send("a", "hold".into(), 500);
    assert!(eventually(Duration::from_secs(5), || pool.snapshot().active == 1).await);
    let noisy: Vec<_> = (0..40).map(|i| send("a", format!("a{i}"), 5)).collect();
    let full = || pool.counters().rejected(Reason::QueueFull) == 10;
    assert!(eventually(Duration::from_secs(10), || pool.queue_len() == 30 && full()).await);
    let fair_sheds = || pool.snapshot().queue_state.sheds.get("fairness").copied();
    let mut quiet = Vec::new();
    for i in 0..10 {
        // One at a time, so their arrival order is their numbering.
        quiet.push(send("b", format!("b{i}"), 5));
        assert!(
            eventually(Duration::from_secs(10), || fair_sheds() == Some(i + 1)).await,
            "each quiet arrival takes a noisy waiter's place: {:?}",
            pool.snapshot().queue_state
        );
    }
    assert_eq!(pool.snapshot().queue_state.flows, 2);
    assert_eq!(holder.await.unwrap().0, StatusCode::OK);
    let mut noisy_by = std::collections::BTreeMap::new();
    for t in noisy {
        let (s, r) = t.await.unwrap();
        *noisy_by.entry((s.as_u16(), r)).or_insert(0) += 1;
    }
    for t in quiet {
        assert_eq!(t.await.unwrap(), (StatusCode::OK, None));
    }
    let want: std::collections::BTreeMap<_, _> = [
        ((200, None), 20),
        ((503, Some("QueueFull".to_string())), 10),
        ((503, Some("Shed".to_string())), 10),
    ]
    .into();
    assert_eq!(noisy_by, want);
    // The order the backend saw: after the holder, the quiet application every other
    // turn (FIFO would put all of it after the 20 noisy waiters).
    let order: Vec<String> = be.arrivals.lock().clone();
    assert_eq!(order.len(), 31);
    let first20 = &order[1..21];
    let quiet_served = first20.iter().filter(|id| id.starts_with('b')).count();
    assert_eq!(quiet_served, 10, "dispatch order {order:?}");
    // FIFO inside each sub-queue.
    let bs: Vec<&String> = order.iter().filter(|id| id.starts_with('b')).collect();
    let mut sorted = bs.clone();
    sorted.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
    assert_eq!(bs, sorted);
}

/// With `priorities`, a higher class is dispatched before lower ones, and a full queue
/// makes room for an arrival by shedding the newest waiter of a lower class (`Shed`);
/// an arrival of the lowest class meets a full queue as `QueueFull`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_dispatch_higher_classes_first_and_shed_the_lowest() {
    let be = Backend::start("a").await;
    let yaml = pool_yaml(
        &be.addr.to_string(),
        1,
        "    queueLength: 4\n    queueTimeout: 60s\n    priorities:\n      - {name: critical, header: \"X-Critical: 1\"}\n      - {name: normal}\n      - {name: bulk, header: \"X-Bulk: 1\"}\n",
        "",
    );
    let f = TestFront::start(&yaml).await;
    let pool = f.front.pool("p").unwrap();
    let addr = f.addr;
    let send = |id: &'static str, header: Option<(&'static str, &'static str)>, ms: u32| {
        tokio::spawn(async move {
            let path = format!("/slow?ms={ms}&id={id}");
            let h: Vec<(&str, &str)> = header.into_iter().collect();
            get_with(addr, "x", &path, &h).await
        })
    };
    let bulk = Some(("x-bulk", "1"));
    let critical = Some(("x-critical", "1"));
    let queued = |n: usize| {
        let p = pool.clone();
        move || p.queue_len() == n
    };
    let holder = send("hold", None, 500);
    assert!(eventually(Duration::from_secs(5), || pool.snapshot().active == 1).await);
    let mut bulks = Vec::new();
    for id in ["b1", "b2", "b3", "b4"] {
        bulks.push(send(id, bulk, 5));
        // One at a time, so "newest" is well defined.
        let n = bulks.len();
        assert!(eventually(Duration::from_secs(5), queued(n)).await);
    }
    let sheds = || {
        pool.snapshot()
            .queue_state
            .sheds
            .get("priority")
            .copied()
            .unwrap_or(0)
    };
    let c1 = send("c1", critical, 5);
    assert!(eventually(Duration::from_secs(5), || sheds() == 1).await);
    let c2 = send("c2", critical, 5);
    assert!(eventually(Duration::from_secs(5), || sheds() == 2).await);
    let n1 = send("n1", None, 5);
    assert!(eventually(Duration::from_secs(5), || sheds() == 3).await);
    let (s, r) = send("b5", bulk, 5).await.unwrap();
    assert_eq!(
        (s, r.as_deref()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("QueueFull"))
    );
    let classes: Vec<(String, usize)> = pool
        .snapshot()
        .queue_state
        .classes
        .into_iter()
        .map(|c| (c.name, c.queued))
        .collect();
    let want = [("critical", 2), ("normal", 1), ("bulk", 1)].map(|(n, q)| (n.to_string(), q));
    assert_eq!(classes, want);
    assert_eq!(holder.await.unwrap().0, StatusCode::OK);
    let mut statuses = Vec::new();
    for t in bulks.into_iter().chain([c1, c2, n1]) {
        let (s, r) = t.await.unwrap();
        statuses.push(format!("{} {}", s.as_u16(), r.unwrap_or_default()));
    }
    // b1 kept its place; b4, b3, b2 (newest first) gave theirs to c1, c2, n1.
    assert_eq!(
        statuses,
        ["200 ", "503 Shed", "503 Shed", "503 Shed", "200 ", "200 ", "200 "]
    );
    assert_eq!(*be.arrivals.lock(), ["hold", "c1", "c2", "n1", "b1"]);
    // Each class's queue wait is measured apart.
    let waits: Vec<(String, u64)> = pool
        .class_waits()
        .into_iter()
        .map(|(n, h)| (n, h.count))
        .collect();
    let want = [("critical", 2), ("normal", 2), ("bulk", 1)].map(|(n, c)| (n.to_string(), c));
    assert_eq!(waits, want);
}

/// Bad `fairness` and `priorities` keys are named with their value and why.
#[test]
fn bad_fairness_and_priority_keys_are_reported() {
    let yaml = "sites: [{name: s, bindings: [{listen: \"127.0.0.1:0\"}], applications: [{path: /, pool: p}]}]\n\
                pools:\n  p:\n    fairness: {by: cookie, weights: {a: 0}, defaultWeight: x}\n    priorities:\n      - {name: hi, path: api}\n      - {name: \"bad name\"}\n      - {name: bulk, header: \"X Bulk: 1\"}\n      - {name: a}\n      - {name: b}\n    farm: {servers: [{address: \"127.0.0.1:9\"}]}\n";
    let err = roost::config::load_str(yaml, "t.yaml")
        .unwrap_err()
        .to_string();
    for want in [
        "pools.p.fairness.by",
        "cookie",
        "expected application, clientAddress, or header:NAME",
        "pools.p.fairness.weights.a",
        "expected a whole number from 1 to 1000",
        "pools.p.fairness.defaultWeight",
        "pools.p.priorities[0].path",
        "starts with `/`",
        "pools.p.priorities[1].name",
        "only letters, digits",
        "pools.p.priorities[2].header",
        "not a header name",
        "pools.p.priorities[4]",
        "only one default class",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // `header:NAME` and `{header: NAME}` both name a header.
    for by in ["\"header:X-Tenant\"", "{header: X-Tenant}", "clientAddress"] {
        let ok = format!(
            "sites: [{{name: s, bindings: [{{listen: \"127.0.0.1:0\"}}], applications: [{{path: /, pool: p}}]}}]\n\
             pools:\n  p:\n    fairness: {{by: {by}}}\n    farm: {{servers: [{{address: \"127.0.0.1:9\"}}]}}\n"
        );
        let cfg = roost::config::load_str(&ok, "t.yaml").unwrap_or_else(|e| panic!("{by}: {e}"));
        assert!(cfg.pools["p"].queue.fairness.is_some());
    }
}

/// A `weights` key no request can have is reported (a typo's weight would silently never
/// apply): with `by: application` it must name an application of this pool, with
/// `by: clientAddress` an IP address, kept in the form a request's key takes.
#[test]
fn fairness_weight_keys_must_be_keys_a_request_can_have() {
    let yaml = |by: &str, weights: &str| {
        format!(
            "sites:\n  - name: shop\n    bindings: [{{listen: \"127.0.0.1:0\"}}]\n    applications:\n      - {{path: /, pool: p}}\n      - {{path: /api, pool: p}}\n      - {{path: /admin, pool: q}}\n\
             pools:\n  p:\n    fairness: {{by: {by}, weights: {weights}}}\n    farm: {{servers: [{{address: \"127.0.0.1:9\"}}]}}\n  q:\n    farm: {{servers: [{{address: \"127.0.0.1:9\"}}]}}\n"
        )
    };
    let err = roost::config::load_str(
        &yaml("application", "{shop/api: 3, shop/apx: 2, shop/admin: 2}"),
        "t.yaml",
    )
    .unwrap_err()
    .to_string();
    for want in [
        "pools.p.fairness.weights.shop/apx",
        "pools.p.fairness.weights.shop/admin",
        "not an application of pool `p`",
        "shop/, shop/api",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        !err.contains("weights.shop/api:"),
        "a real key is fine:\n{err}"
    );
    let cfg = roost::config::load_str(&yaml("application", "{shop/api: 3, shop/: 1}"), "t.yaml")
        .expect("keys of the pool's applications");
    let f = cfg.pools["p"].queue.fairness.as_ref().unwrap();
    assert_eq!(f.weight_of("shop/api"), 3);

    let err = roost::config::load_str(&yaml("clientAddress", "{shop/api: 3}"), "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected an IP address"), "{err}");
    let cfg = roost::config::load_str(
        &yaml("clientAddress", "{\"0:0::1\": 4, \" 10.0.0.7\": 2}"),
        "t.yaml",
    )
    .expect("IP addresses");
    let f = cfg.pools["p"].queue.fairness.as_ref().unwrap();
    assert_eq!((f.weight_of("::1"), f.weight_of("10.0.0.7")), (4, 2));

    // Header values can be anything.
    roost::config::load_str(&yaml("\"header:X-Tenant\"", "{acme: 3}"), "t.yaml")
        .expect("any header value");
}
