use super::*;
use crate::config::model::{
    Backend, Failure, Farm, LoadBalancerCapabilities, Recycling, StartMode, UpstreamTimeouts,
};
use crate::upstream::{Client, Endpoint};

pub(crate) fn pool_cfg(
    queue_length: usize,
    queue_timeout: Duration,
    lb: LoadBalancing,
) -> model::Pool {
    model::Pool {
        name: "p".into(),
        queue_length,
        queue_timeout,
        queue: Default::default(),
        start_mode: StartMode::OnDemand,
        backend: Backend::Farm(Farm {
            servers: vec![],
            load_balancing: lb,
            health_check: None,
            affinity: None,
            outlier_detection: None,
            slow_start: Duration::ZERO,
            retries: Default::default(),
            tls: Default::default(),
            discovery: None,
        }),
        recycling: Recycling {
            disallow_overlapping_rotation: false,
            time: Duration::ZERO,
            requests: 0,
            private_memory_kib: 0,
            schedule: vec![],
        },
        failure: Failure {
            rapid_fail_protection: true,
            rapid_fail_protection_interval: Duration::from_secs(300),
            rapid_fail_protection_max_crashes: 5,
            load_balancer_capabilities: LoadBalancerCapabilities::HttpLevel,
        },
        retry_after: Duration::from_secs(5),
        timeouts: timeouts(),
        initialization_pages: vec![],
        cache: None,
        ordering: None,
    }
}

fn timeouts() -> UpstreamTimeouts {
    UpstreamTimeouts {
        connect: Duration::from_secs(1),
        first_byte: Duration::from_secs(1),
        idle: Duration::from_secs(1),
    }
}

fn member(label: &str, slots: usize, weight: u32) -> Arc<Member> {
    let client = Client::new(
        Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 1,
        },
        &timeouts(),
    );
    Member::new(label, None, client, slots, weight)
}

#[tokio::test]
async fn free_slot_is_taken_at_once_and_released_on_drop() {
    let pool = Pool::new(&pool_cfg(
        10,
        Duration::from_secs(5),
        LoadBalancing::RoundRobin,
    ));
    let m = member("a", 2, 1);
    pool.add_member(m.clone());
    let l1 = pool.acquire(&PickKey::default()).await.unwrap();
    let _l2 = pool.acquire(&PickKey::default()).await.unwrap();
    assert_eq!(m.active(), 2);
    assert_eq!(l1.queue_wait(), Duration::ZERO);
    drop(l1);
    assert_eq!(m.active(), 1);
}

#[tokio::test]
async fn queue_full_rejects_at_once() {
    let pool = Pool::new(&pool_cfg(
        2,
        Duration::from_secs(30),
        LoadBalancing::RoundRobin,
    ));
    pool.add_member(member("a", 1, 1));
    let _held = pool.acquire(&PickKey::default()).await.unwrap();
    let p1 = pool.clone();
    let p2 = pool.clone();
    let w1 = tokio::spawn(async move { p1.acquire(&PickKey::default()).await.map(|_| ()) });
    let w2 = tokio::spawn(async move { p2.acquire(&PickKey::default()).await.map(|_| ()) });
    while pool.queue_len() < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        pool.acquire(&PickKey::default()).await.err(),
        Some(Reason::QueueFull)
    );
    assert_eq!(pool.counters().rejected(Reason::QueueFull), 1);
    w1.abort();
    w2.abort();
}

#[tokio::test]
async fn waiters_are_served_in_arrival_order() {
    let pool = Pool::new(&pool_cfg(
        100,
        Duration::from_secs(30),
        LoadBalancing::RoundRobin,
    ));
    pool.add_member(member("a", 1, 1));
    let held = pool.acquire(&PickKey::default()).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let p = pool.clone();
        let o = order.clone();
        tasks.push(tokio::spawn(async move {
            let lease = p.acquire(&PickKey::default()).await.unwrap();
            o.lock().push(i);
            tokio::task::yield_now().await;
            drop(lease);
        }));
        // Each waiter is queued before the next one arrives.
        while pool.queue_len() < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock(), (0..20).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn queue_timeout_rejects_and_leaves_queue() {
    let pool = Pool::new(&pool_cfg(
        10,
        Duration::from_millis(500),
        LoadBalancing::RoundRobin,
    ));
    pool.add_member(member("a", 1, 1));
    let _held = pool.acquire(&PickKey::default()).await.unwrap();
    let r = pool.acquire(&PickKey::default()).await;
    assert_eq!(r.err(), Some(Reason::QueueTimeout));
    assert_eq!(pool.queue_len(), 0);
}

#[tokio::test]
async fn abandoned_waiter_frees_its_place() {
    let pool = Pool::new(&pool_cfg(
        1,
        Duration::from_secs(30),
        LoadBalancing::RoundRobin,
    ));
    let m = member("a", 1, 1);
    pool.add_member(m.clone());
    let held = pool.acquire(&PickKey::default()).await.unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.acquire(&PickKey::default()).await.map(|_| ()) });
    while pool.queue_len() < 1 {
        tokio::task::yield_now().await;
    }
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(pool.queue_len(), 0);
    assert_eq!(pool.counters().rejected(Reason::ClientGone), 1);
    // Its place is free again: a new request can queue, and gets the slot.
    let p = pool.clone();
    let next =
        tokio::spawn(async move { p.acquire(&PickKey::default()).await.map(|l| l.queue_wait()) });
    while pool.queue_len() < 1 {
        tokio::task::yield_now().await;
    }
    drop(held);
    assert!(next.await.unwrap().is_ok());
    assert_eq!(m.active(), 0);
}

#[tokio::test]
async fn stopped_pool_rejects_waiting_and_new_requests() {
    let pool = Pool::new(&pool_cfg(
        10,
        Duration::from_secs(30),
        LoadBalancing::RoundRobin,
    ));
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.acquire(&PickKey::default()).await.map(|_| ()) });
    while pool.queue_len() < 1 {
        tokio::task::yield_now().await;
    }
    pool.set_state(PoolState::AppOffline);
    assert_eq!(waiter.await.unwrap().err(), Some(Reason::AppOffline));
    pool.set_state(PoolState::Stopped);
    assert_eq!(
        pool.acquire(&PickKey::default()).await.err(),
        Some(Reason::Disabled)
    );
}

#[tokio::test]
async fn demand_fires_when_a_request_waits_without_members() {
    let pool = Pool::new(&pool_cfg(
        10,
        Duration::from_secs(30),
        LoadBalancing::RoundRobin,
    ));
    let p = pool.clone();
    let waiter = tokio::spawn(async move {
        p.acquire(&PickKey::default())
            .await
            .map(|l| l.member().label.clone())
    });
    tokio::time::timeout(Duration::from_secs(5), pool.demanded())
        .await
        .unwrap();
    pool.add_member(member("late", 1, 1));
    assert_eq!(waiter.await.unwrap().unwrap(), "late");
}

#[tokio::test]
async fn smooth_weighted_round_robin_spreads_by_weight() {
    let pool = Pool::new(&pool_cfg(
        10,
        Duration::from_secs(30),
        LoadBalancing::RoundRobin,
    ));
    pool.add_member(member("a", 100, 5));
    pool.add_member(member("b", 100, 1));
    pool.add_member(member("c", 100, 1));
    let mut seq = String::new();
    for _ in 0..7 {
        let l = pool.acquire(&PickKey::default()).await.unwrap();
        seq.push_str(&l.member().label);
    }
    assert_eq!(seq, "aabacaa");
}

#[tokio::test]
async fn least_requests_prefers_idle_member_and_drained_member_gets_nothing() {
    let pool = Pool::new(&pool_cfg(
        10,
        Duration::from_secs(30),
        LoadBalancing::LeastRequests,
    ));
    let a = member("a", 10, 1);
    let b = member("b", 10, 1);
    pool.add_member(a.clone());
    pool.add_member(b.clone());
    let l1 = pool.acquire(&PickKey::default()).await.unwrap();
    let l2 = pool.acquire(&PickKey::default()).await.unwrap();
    assert_ne!(l1.member().label, l2.member().label);
    pool.drain_member(&a);
    for _ in 0..5 {
        let l = pool.acquire(&PickKey::default()).await.unwrap();
        assert_eq!(l.member().label, "b");
    }
}

#[tokio::test]
async fn backups_only_when_no_primary_is_usable() {
    let pool = Pool::new(&pool_cfg(
        10,
        Duration::from_secs(30),
        LoadBalancing::RoundRobin,
    ));
    let a = member("a", 10, 1);
    let bk = member("backup", 10, 1);
    bk.set_backup(true);
    pool.add_member(a.clone());
    pool.add_member(bk);
    assert_eq!(
        pool.acquire(&PickKey::default())
            .await
            .unwrap()
            .member()
            .label,
        "a"
    );
    a.set_healthy(false);
    assert_eq!(
        pool.acquire(&PickKey::default())
            .await
            .unwrap()
            .member()
            .label,
        "backup"
    );
}

#[tokio::test]
async fn hash_is_consistent_when_a_member_joins() {
    let pool = Pool::new(&pool_cfg(
        10,
        Duration::from_secs(30),
        LoadBalancing::Hash(model::HashKey::ClientAddress),
    ));
    for l in ["a", "b", "c", "d"] {
        pool.add_member(member(l, 10_000, 1));
    }
    let mut before = Vec::new();
    for k in 0..1000u64 {
        let key = PickKey {
            hash: Some(hash_key(&k.to_le_bytes())),
            affinity: None,
            avoid: None,
            order: None,
        };
        before.push(pool.acquire(&key).await.unwrap().member().label.clone());
    }
    pool.add_member(member("e", 10_000, 1));
    let mut moved = 0;
    for k in 0..1000u64 {
        let key = PickKey {
            hash: Some(hash_key(&k.to_le_bytes())),
            affinity: None,
            avoid: None,
            order: None,
        };
        let now = pool.acquire(&key).await.unwrap().member().label.clone();
        if now != before[k as usize] {
            assert_eq!(now, "e", "a key moved between old members");
            moved += 1;
        }
    }
    // About a fifth of the keys move to the new member.
    assert!((100..350).contains(&moved), "moved {moved}");
}

#[tokio::test]
async fn idle_for_is_zero_while_active() {
    let pool = Pool::new(&pool_cfg(
        10,
        Duration::from_secs(30),
        LoadBalancing::RoundRobin,
    ));
    pool.add_member(member("a", 1, 1));
    let l = pool.acquire(&PickKey::default()).await.unwrap();
    assert_eq!(pool.idle_for(), Duration::ZERO);
    drop(l);
    let snap = pool.snapshot();
    assert_eq!(snap.active, 0);
    assert_eq!(snap.arrivals, 1);
}

#[tokio::test]
async fn retries_are_counted_apart_from_arrivals() {
    let pool = Pool::new(&pool_cfg(
        10,
        Duration::from_secs(5),
        LoadBalancing::RoundRobin,
    ));
    pool.add_member(member("a", 4, 1));
    pool.add_member(member("b", 4, 1));
    let first = pool.acquire(&PickKey::default()).await.unwrap();
    let retry = PickKey {
        avoid: Some(first.member().label.clone()),
        ..PickKey::default()
    };
    let second = pool.acquire(&retry).await.unwrap();
    assert_ne!(second.member().label, first.member().label);
    let c = pool.counters();
    assert_eq!(c.arrivals.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(c.retries.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// With `priorities` and `retryAfter: auto`, a refused request's `Retry-After` counts the
/// waiters of its class and the classes above it, not the lower classes queued behind it:
/// a critical request refused while 30 bulk requests wait is told to come back at once.
#[tokio::test]
async fn retry_after_counts_only_the_waiters_ahead_of_the_class() {
    let yaml = "sites: [{name: s, bindings: [{listen: \"127.0.0.1:0\"}], applications: [{path: /, pool: p}]}]\n\
                pools:\n  p:\n    queueLength: 100\n    queueTimeout: 60s\n    retryAfter: auto\n    priorities:\n      - {name: critical, header: \"X-Critical: 1\"}\n      - {name: bulk}\n    farm: {servers: [{address: \"127.0.0.1:9\"}]}\n";
    let cfg = crate::config::load_str(yaml, "t.yaml").unwrap();
    let pool = Pool::new(&cfg.pools["p"]);
    pool.add_member(member("a", 1, 1));
    let tag_of = |critical: bool| {
        let mut headers = http::HeaderMap::new();
        if critical {
            headers.insert("x-critical", http::HeaderValue::from_static("1"));
        }
        pool.tag(&RequestFacts {
            site: "s",
            app_path: "/",
            path: "/",
            headers: &headers,
            peer: std::net::Ipv4Addr::LOCALHOST.into(),
        })
    };
    let (critical, bulk) = (tag_of(true), tag_of(false));
    let _held = pool.acquire(&PickKey::default()).await.unwrap();
    let mut waiters = Vec::new();
    for tag in std::iter::once(&critical).chain(std::iter::repeat_n(&bulk, 30)) {
        let (p, t) = (pool.clone(), tag.clone());
        waiters.push(tokio::spawn(async move {
            p.acquire_as(&PickKey::default(), t.as_ref(), Duration::ZERO)
                .await
                .map(drop)
        }));
        let n = waiters.len();
        while pool.queue_len() < n {
            tokio::task::yield_now().await;
        }
    }
    // A measured drain rate of 10 requests a second.
    {
        let mut inner = pool.inner.lock();
        let t0 = Instant::now();
        inner.queue.drain.observe(t0, 0);
        inner.queue.drain.observe(t0 + Duration::from_secs(1), 10);
    }
    let ra = |tag: &Option<QueueTag>| pool.retry_after_for(Reason::QueueTimeout, tag.as_ref());
    assert_eq!(
        ra(&critical),
        Duration::from_secs(1),
        "1 waiter ahead: the floor"
    );
    let bulk_ra = ra(&bulk).as_secs_f64();
    assert!(
        (3.0..3.2).contains(&bulk_ra),
        "31 waiters at 10/s: {bulk_ra}"
    );
    // Not an overload refusal: the configured constant.
    assert_eq!(
        pool.retry_after_for(Reason::Disabled, critical.as_ref()),
        pool.retry_after()
    );
    for w in waiters {
        w.abort();
    }
}
