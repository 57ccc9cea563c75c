//! Lanes in the pool alone (members without sockets): one turn per key, handed on in
//! arrival order, the map emptied, lane waits counted as queued, the key's member only.

use super::*;
use crate::config::model::LoadBalancing;
use crate::pool::tests::pool_cfg;
use crate::pool::{Member, PickKey};
use crate::upstream::{Client, Endpoint};

fn ordered_pool(queue_length: usize, queue_timeout: Duration) -> Arc<Pool> {
    let mut cfg = pool_cfg(queue_length, queue_timeout, LoadBalancing::LeastRequests);
    cfg.ordering = Some(crate::config::ordering::Ordering {
        key: OrderingKey::ClientAddress,
    });
    Pool::new(&cfg)
}

fn member(label: &str, slots: usize) -> Arc<Member> {
    let timeouts = crate::config::model::UpstreamTimeouts {
        connect: Duration::from_secs(1),
        first_byte: Duration::from_secs(1),
        idle: Duration::from_secs(1),
    };
    let endpoint = Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port: 1,
    };
    Member::new(label, None, Client::new(endpoint, &timeouts), slots, 1)
}

/// Let spawned tasks run until `f` holds.
async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if f() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition never held");
}

#[tokio::test]
async fn one_turn_per_key_handed_on_in_arrival_order() {
    let pool = ordered_pool(100, Duration::from_secs(30));
    let first = pool.take_turn(b"k").await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (p, o) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let t = p.take_turn(b"k").await.unwrap();
            o.lock().push(i);
            drop(t);
        }));
        // Arrival order is the order each reached the lane.
        until(|| pool.ordered_waiting() == i + 1).await;
    }
    // Another key is not held up by `k`.
    let other = pool.take_turn(b"other").await.unwrap();
    assert_eq!(pool.ordered_keys(), 2);
    assert!(
        order.lock().is_empty(),
        "nobody runs while the turn is held"
    );
    drop(first);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    drop(other);
    assert_eq!(pool.ordered_keys(), 0, "a key without work leaves the map");
    assert_eq!(pool.ordered_waiting(), 0);
}

#[tokio::test]
async fn a_waiter_that_leaves_is_skipped_and_the_turn_moves_on() {
    let pool = ordered_pool(100, Duration::from_secs(30));
    let first = pool.take_turn(b"k").await.unwrap();
    let p = pool.clone();
    let gone = tokio::spawn(async move { p.take_turn(b"k").await.map(drop) });
    until(|| pool.ordered_waiting() == 1).await;
    let p = pool.clone();
    let next = tokio::spawn(async move { p.take_turn(b"k").await.map(|t| t.waited()) });
    until(|| pool.ordered_waiting() == 2).await;
    gone.abort();
    until(|| pool.ordered_waiting() == 1).await;
    assert_eq!(pool.counters().rejected(Reason::ClientGone), 1);
    drop(first);
    assert!(next.await.unwrap().is_ok());
    assert_eq!(pool.ordered_keys(), 0);
}

#[tokio::test]
async fn waiting_behind_a_key_counts_against_queue_length_and_timeout() {
    let pool = ordered_pool(2, Duration::from_millis(200));
    let _held = pool.take_turn(b"k").await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let p = pool.clone();
        waiters.push(tokio::spawn(
            async move { p.take_turn(b"k").await.map(drop) },
        ));
    }
    until(|| pool.ordered_waiting() == 2).await;
    assert_eq!(pool.take_turn(b"k").await.err(), Some(Reason::QueueFull));
    // The pool queue shares the limit: a request that must queue there is refused too.
    pool.add_member(member("a", 1));
    let _slot = pool.acquire(&PickKey::default()).await.unwrap();
    assert_eq!(
        pool.acquire(&PickKey::default()).await.err(),
        Some(Reason::QueueFull)
    );
    for w in waiters {
        assert_eq!(w.await.unwrap().err(), Some(Reason::QueueTimeout));
    }
    assert_eq!(pool.ordered_waiting(), 0);
    assert_eq!(pool.counters().rejected(Reason::QueueTimeout), 2);
}

#[tokio::test]
async fn an_ordered_request_waits_for_its_member_rather_than_spill() {
    let pool = ordered_pool(100, Duration::from_secs(30));
    let (a, b) = (member("a", 1), member("b", 1));
    pool.add_member(a.clone());
    pool.add_member(b.clone());
    let turn = pool.take_turn(b"k").await.unwrap();
    let key = PickKey {
        order: Some(turn.hash()),
        ..Default::default()
    };
    let lease = pool.acquire(&key).await.unwrap();
    let mine = lease.member().clone();
    let other = if Arc::ptr_eq(&mine, &a) { &b } else { &a };
    // The key's member is full; the other is free, but the request waits for its own.
    let p = pool.clone();
    let k = key.clone();
    let waiter = tokio::spawn(async move { p.acquire(&k).await.map(|l| l.member().label.clone()) });
    until(|| pool.queue_len() == 1).await;
    assert_eq!(other.active(), 0);
    drop(lease);
    assert_eq!(waiter.await.unwrap().unwrap(), mine.label);
    // Once the member leaves, the key goes to the one that remains.
    pool.remove_member(&mine);
    let lease = pool.acquire(&key).await.unwrap();
    assert!(Arc::ptr_eq(lease.member(), other));
}
