//! The front's overload manager: a registry of open client connections, each with its
//! state, so that connection pressure falls first on connections that have not sent a
//! request head (after Envoy's overload manager and nginx's "reusable" connections).
//!
//! - Below `highWater` × `maxConnections` nothing changes.
//! - At or past it ("pressure"), a new connection gets the shorter
//!   `limits.overload.headerWaitTimeout` / `idleTimeout` (Envoy's `reduce_timeouts`), and a
//!   sweeper closes existing connections that have already outlived them: silent ones
//!   (TLS handshake, h2c sniff, first head) counted from their accept, idle keep-alive ones
//!   from when they went idle.
//! - At `maxConnections` a newcomer is not refused while a connection that has sent no
//!   head exists: the oldest such connection (by accept) is closed and its place given
//!   to the newcomer; failing that the longest-idle one. Only when every open connection
//!   has a request in flight is the newcomer closed at once.
//! - `maxConnectionsPerClient` refuses a client address's connection past the cap.
//!
//! Cost: a connection registers and deregisters once (one lock of one of 16 shards); a
//! state change on the request path is one relaxed atomic store, and the connection
//! watches its reclaim flag with an [`AtomicWaker`] only while it waits for a head.
//! Counting connections per state is left to the scrape (a scan), never kept on the hot
//! path.

use crate::config::model::Limits;
use arc_swap::ArcSwap;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// TLS handshake not finished.
    Handshake = 0,
    /// Accepted (and through TLS), no complete request head yet.
    AwaitingHead = 1,
    /// A request in flight.
    Active = 2,
    /// Between requests (HTTP/1.1 keep-alive; HTTP/2 with no stream open).
    Idle = 3,
}

impl ConnState {
    pub const ALL: [ConnState; 4] = [
        ConnState::Handshake,
        ConnState::AwaitingHead,
        ConnState::Active,
        ConnState::Idle,
    ];

    /// The `state` label of `roost_front_connections` (and the `reason` label of
    /// `roost_front_connections_reclaimed_total`: the state a reclaimed connection was in).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Handshake => "handshake",
            ConnState::AwaitingHead => "awaiting_head",
            ConnState::Active => "active",
            ConnState::Idle => "idle",
        }
    }

    fn from_word(w: u64) -> ConnState {
        ConnState::ALL[(w & 3) as usize]
    }

    fn sent_no_head(self) -> bool {
        matches!(self, ConnState::Handshake | ConnState::AwaitingHead)
    }
}

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `maxConnections` open and every one of them has a request in flight.
    MaxConnections = 0,
    /// The client address already holds `maxConnectionsPerClient`.
    PerClient = 1,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Refusal::MaxConnections, Refusal::PerClient];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::PerClient => "per_client",
        }
    }
}

const SHARDS: usize = 16;

/// One open connection as the registry sees it. The connection's task keeps it in a
/// [`Conn`]; HTTP/2's activity tracker holds a clone to report streams.
#[derive(Debug)]
pub struct Tracked {
    seq: u64,
    /// Set when the connection counts against the per-client cap.
    client: Option<IpAddr>,
    epoch: Instant,
    accepted_ms: u64,
    /// The state in the low two bits; above them the milliseconds (since the manager's
    /// epoch) of the accept, or of going idle for [`ConnState::Idle`].
    word: AtomicU64,
    reclaimed: AtomicBool,
    waker: AtomicWaker,
}

impl Tracked {
    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    pub fn state(&self) -> ConnState {
        ConnState::from_word(self.word.load(Ordering::Relaxed))
    }

    /// A request head arrived (HTTP/1.1) or a stream opened (HTTP/2).
    pub fn set_active(&self) {
        self.word.store(ConnState::Active as u64, Ordering::Relaxed);
    }

    /// The connection waits for its next request since `since`.
    pub fn set_idle(&self, since: Instant) {
        let w = (self.ms(since) << 2) | ConnState::Idle as u64;
        self.word.store(w, Ordering::Relaxed);
    }

    /// TLS is done; no head yet (the age still counts from the accept).
    pub fn set_awaiting_head(&self) {
        let w = (self.accepted_ms << 2) | ConnState::AwaitingHead as u64;
        self.word.store(w, Ordering::Relaxed);
    }

    /// Ready once the manager has taken this connection's place away: the connection
    /// should close at once (it no longer counts as open).
    pub fn poll_reclaimed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.reclaimed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.reclaimed.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    pub async fn reclaimed(&self) {
        poll_fn(|cx| self.poll_reclaimed(cx)).await
    }

    pub fn is_reclaimed(&self) -> bool {
        self.reclaimed.load(Ordering::Acquire)
    }

    /// How long it has been in a reclaimable state at `now_ms`, if it is in one.
    fn stale_for(&self, now_ms: u64) -> Option<(ConnState, u64)> {
        let w = self.word.load(Ordering::Relaxed);
        let st = ConnState::from_word(w);
        (st != ConnState::Active).then(|| (st, now_ms.saturating_sub(w >> 2)))
    }
}

/// A registered connection; dropping it (the connection's task ended) unregisters it.
pub struct Conn {
    tracked: Arc<Tracked>,
    manager: Arc<Manager>,
}

impl Conn {
    pub fn tracked(&self) -> &Arc<Tracked> {
        &self.tracked
    }
}

impl std::ops::Deref for Conn {
    type Target = Tracked;
    fn deref(&self) -> &Tracked {
        &self.tracked
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.manager.remove(&self.tracked);
    }
}

/// The settings a reload may change.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    max: usize,
    /// Open connections at which pressure starts (at least 1).
    high: usize,
    per_client: Option<usize>,
    head: Duration,
    idle: Duration,
}

impl Settings {
    fn of(l: &Limits) -> Settings {
        let high = (l.max_connections as f64 * l.overload.high_water).ceil() as usize;
        Settings {
            max: l.max_connections,
            high: high.clamp(1, l.max_connections.max(1)),
            per_client: l.max_connections_per_client,
            head: l.overload.header_wait_timeout,
            idle: l.overload.idle_timeout,
        }
    }
}

/// Counts for `/metrics` and the diagnosis.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub open: usize,
    pub max: usize,
    pub high_water: usize,
    /// Open connections by [`ConnState`] (indexed by its discriminant).
    pub by_state: [usize; 4],
    /// Reclaimed connections by the state they were in.
    pub reclaimed: [u64; 4],
    /// Refused connections by [`Refusal`].
    pub refused: [u64; 2],
}

type Shard = Mutex<BTreeMap<u64, Arc<Tracked>>>;

pub struct Manager {
    epoch: Instant,
    settings: ArcSwap<Settings>,
    next_seq: AtomicU64,
    open: AtomicUsize,
    shards: [Shard; SHARDS],
    clients: Mutex<HashMap<IpAddr, usize>>,
    reclaimed: [AtomicU64; 4],
    refused: [AtomicU64; 2],
    pressure: tokio::sync::Notify,
}

/// Limits for a connection accepted under pressure: the overload timeouts, never longer
/// than the normal ones. `connectionTimeout` bounds the idle wait and write stalls, so
/// both are shortened (as Envoy's `reduce_timeouts` shortens its stream idle timer).
pub fn pressured(l: &Limits) -> Limits {
    let mut l = l.clone();
    let head = l.overload.header_wait_timeout;
    l.header_wait_timeout = l.header_wait_timeout.min(head);
    l.tls_handshake_timeout = l.tls_handshake_timeout.min(head);
    l.connection_timeout = l.connection_timeout.min(l.overload.idle_timeout);
    l
}

impl Manager {
    pub fn new(limits: &Limits) -> Arc<Manager> {
        Arc::new(Manager {
            epoch: Instant::now(),
            settings: ArcSwap::from_pointee(Settings::of(limits)),
            next_seq: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            shards: std::array::from_fn(|_| Mutex::new(BTreeMap::new())),
            clients: Mutex::new(HashMap::new()),
            reclaimed: Default::default(),
            refused: Default::default(),
            pressure: tokio::sync::Notify::new(),
        })
    }

    /// Apply reloaded limits (the cap, the high-water mark, the per-client cap and the
    /// reduced timeouts); open connections stay.
    pub fn configure(&self, limits: &Limits) {
        self.settings.store(Arc::new(Settings::of(limits)));
    }

    /// Open connections (reclaimed ones no longer count, even while they close).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn shard(&self, seq: u64) -> &Shard {
        &self.shards[(seq as usize) % SHARDS]
    }

    /// Admit a connection just accepted from `ip`, in `state` (handshake or awaiting head).
    /// Returns it registered, and whether it arrived under pressure (it should use
    /// [`pressured`] limits). At `maxConnections` it takes the place of a connection
    /// that has sent no head, or else of an idle one.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, state: ConnState) -> Result<(Conn, bool), Refusal> {
        let s = self.settings.load();
        let client = match s.per_client {
            Some(cap) => {
                let mut m = self.clients.lock();
                let n = m.entry(ip).or_insert(0);
                if *n >= cap {
                    drop(m);
                    return Err(self.refuse(Refusal::PerClient));
                }
                *n += 1;
                Some(ip)
            }
            None => None,
        };
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        if open > s.max && !self.reclaim_one() {
            self.open.fetch_sub(1, Ordering::AcqRel);
            if let Some(ip) = client {
                self.release_client(ip);
            }
            return Err(self.refuse(Refusal::MaxConnections));
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let tracked = Arc::new(Tracked {
            seq,
            client,
            epoch: self.epoch,
            accepted_ms: now,
            word: AtomicU64::new((now << 2) | state as u64),
            reclaimed: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        self.shard(seq).lock().insert(seq, tracked.clone());
        let pressured = open >= s.high;
        if pressured {
            self.pressure.notify_one();
        }
        let conn = Conn {
            tracked,
            manager: self.clone(),
        };
        Ok((conn, pressured))
    }

    fn refuse(&self, why: Refusal) -> Refusal {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
        why
    }

    fn release_client(&self, ip: IpAddr) {
        let mut m = self.clients.lock();
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    /// Unregister `t` if it still is (a reclaimed connection was unregistered already).
    fn remove(&self, t: &Tracked) -> bool {
        if self.shard(t.seq).lock().remove(&t.seq).is_none() {
            return false;
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = t.client {
            self.release_client(ip);
        }
        true
    }

    /// Take `t`'s place away (if it is still registered and still not active) and tell
    /// its task to close.
    fn reclaim(&self, t: &Arc<Tracked>) -> bool {
        let state = {
            let mut shard = self.shard(t.seq).lock();
            let state = t.state();
            if state == ConnState::Active || shard.remove(&t.seq).is_none() {
                return false;
            }
            state
        };
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = t.client {
            self.release_client(ip);
        }
        self.reclaimed[state as usize].fetch_add(1, Ordering::Relaxed);
        t.reclaimed.store(true, Ordering::Release);
        t.waker.wake();
        tracing::debug!(state = state.as_str(), "connection reclaimed");
        true
    }

    /// Make room for one newcomer at the cap: the oldest connection that has sent no
    /// head, else the longest-idle one. A victim that turns active meanwhile is skipped.
    fn reclaim_one(&self) -> bool {
        for _ in 0..4 {
            let victim = self.oldest_without_head().or_else(|| self.longest_idle());
            match victim {
                Some(t) if self.reclaim(&t) => return true,
                Some(_) => continue,
                None => return false,
            }
        }
        false
    }

    fn oldest_without_head(&self) -> Option<Arc<Tracked>> {
        let mut best: Option<Arc<Tracked>> = None;
        for shard in &self.shards {
            let shard = shard.lock();
            // Shards are in accept order: the first silent one is the shard's oldest.
            let found = shard.values().find(|t| t.state().sent_no_head());
            if let Some(t) = found {
                if best.as_ref().is_none_or(|b| t.seq < b.seq) {
                    best = Some(t.clone());
                }
            }
        }
        best
    }

    fn longest_idle(&self) -> Option<Arc<Tracked>> {
        // Keyed by (idle since, accept order): ties go to the older connection.
        let mut best: Option<((u64, u64), Arc<Tracked>)> = None;
        for shard in &self.shards {
            for t in shard.lock().values() {
                let w = t.word.load(Ordering::Relaxed);
                let key = (w >> 2, t.seq);
                if ConnState::from_word(w) == ConnState::Idle
                    && best.as_ref().is_none_or(|(k, _)| key < *k)
                {
                    best = Some((key, t.clone()));
                }
            }
        }
        best.map(|(_, t)| t)
    }

    /// Under pressure, close what the reduced timeouts would have closed: connections
    /// silent for `headerWaitTimeout` since their accept, idle ones for `idleTimeout`,
    /// oldest first. Returns how many were reclaimed.
    pub fn sweep(&self) -> usize {
        let s = self.settings.load();
        if self.open() < s.high {
            return 0;
        }
        let now = self.now_ms();
        let (head, idle) = (s.head.as_millis() as u64, s.idle.as_millis() as u64);
        let mut stale: Vec<Arc<Tracked>> = Vec::new();
        for shard in &self.shards {
            for t in shard.lock().values() {
                let Some((st, age)) = t.stale_for(now) else {
                    continue;
                };
                if age >= if st.sent_no_head() { head } else { idle } {
                    stale.push(t.clone());
                }
            }
        }
        stale.sort_by_key(|t| t.seq);
        stale.iter().filter(|t| self.reclaim(t)).count()
    }

    /// The sweeper: idle until a connection is admitted under pressure, then sweeps
    /// every quarter of the shorter reduced timeout while the pressure lasts. Ends when
    /// the manager is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Manager> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(m) = weak.upgrade() else { return };
                if m.open() < m.settings.load().high {
                    // Re-check now and then, so a dropped manager ends the task.
                    let notified = m.pressure.notified();
                    let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
                    continue;
                }
                let n = m.sweep();
                if n > 0 {
                    tracing::info!(
                        reclaimed = n,
                        open = m.open(),
                        "connection pressure: reclaimed stale connections"
                    );
                }
                let s = m.settings.load_full();
                drop(m);
                let tick = (s.head.min(s.idle) / 4)
                    .clamp(Duration::from_millis(50), Duration::from_secs(1));
                tokio::time::sleep(tick).await;
            }
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        let s = self.settings.load();
        let mut by_state = [0usize; 4];
        for shard in &self.shards {
            for t in shard.lock().values() {
                by_state[t.state() as usize] += 1;
            }
        }
        Snapshot {
            open: self.open(),
            max: s.max,
            high_water: s.high,
            by_state,
            reclaimed: std::array::from_fn(|i| self.reclaimed[i].load(Ordering::Relaxed)),
            refused: std::array::from_fn(|i| self.refused[i].load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_client: Option<usize>, stale: Duration) -> Limits {
        Limits {
            max_request_header_bytes: 16384,
            header_wait_timeout: Duration::from_secs(120),
            connection_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(120),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: max,
            shutdown_grace: Duration::from_secs(1),
            max_connections_per_client: per_client,
            overload: crate::config::model::Overload {
                high_water: 0.5,
                header_wait_timeout: stale,
                idle_timeout: stale,
            },
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn admit(m: &Arc<Manager>, ip: IpAddr) -> Conn {
        m.admit(ip, ConnState::AwaitingHead).expect("admitted").0
    }

    #[test]
    fn at_the_cap_the_oldest_silent_then_the_longest_idle_make_room() {
        let m = Manager::new(&limits(4, None, Duration::from_secs(60)));
        let c: Vec<Conn> = (0..4).map(|_| admit(&m, A)).collect();
        c[0].set_active();
        let now = Instant::now();
        c[1].set_idle(now + Duration::from_secs(2));
        c[2].set_idle(now + Duration::from_secs(1));
        // c[3] is silent: it goes first although it is the newest.
        let d = admit(&m, A);
        assert!(c[3].is_reclaimed() && !c[2].is_reclaimed());
        d.set_active();
        // Then the longest idle (c[2]), then c[1]; the active one never.
        let e = admit(&m, A);
        assert!(c[2].is_reclaimed() && !c[1].is_reclaimed());
        e.set_active();
        let f = admit(&m, A);
        assert!(c[1].is_reclaimed());
        f.set_active();
        assert_eq!(
            m.admit(A, ConnState::AwaitingHead).err(),
            Some(Refusal::MaxConnections)
        );
        assert!(!c[0].is_reclaimed());
        let s = m.snapshot();
        assert_eq!((s.open, s.reclaimed, s.refused), (4, [0, 1, 0, 2], [1, 0]));
        assert_eq!(s.by_state, [0, 0, 4, 0]);
        drop(c);
        assert_eq!(m.open(), 3, "reclaimed ones were already uncounted");
    }

    #[test]
    fn per_client_cap_counts_each_address_and_gives_places_back() {
        let m = Manager::new(&limits(100, Some(2), Duration::from_secs(60)));
        let a1 = admit(&m, A);
        let _a2 = admit(&m, A);
        assert_eq!(
            m.admit(A, ConnState::Handshake).err(),
            Some(Refusal::PerClient)
        );
        let _b = admit(&m, B);
        drop(a1);
        let _a3 = admit(&m, A);
        assert_eq!(m.snapshot().refused, [0, 1]);
        assert!(m.clients.lock().values().all(|n| *n == 2 || *n == 1));
    }

    #[test]
    fn pressure_starts_at_the_high_water_mark_and_sweeps_only_stale_connections() {
        let m = Manager::new(&limits(10, None, Duration::from_millis(30)));
        let mut v = Vec::new();
        for i in 0..5 {
            let (c, pressured) = m.admit(A, ConnState::AwaitingHead).unwrap();
            assert_eq!(pressured, i == 4, "connection {i}");
            v.push(c);
        }
        v[0].set_active();
        v[1].set_idle(Instant::now());
        assert_eq!(
            m.sweep(),
            0,
            "nothing has outlived the reduced timeouts yet"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(m.sweep(), 4, "three silent and one idle");
        assert!(!v[0].is_reclaimed());
        // Below the mark nothing is swept.
        let late = admit(&m, A);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(m.sweep(), 0);
        assert!(!late.is_reclaimed());
    }

    #[test]
    fn pressured_limits_are_never_longer() {
        let l = limits(10, None, Duration::from_secs(5));
        let p = pressured(&l);
        assert_eq!(p.header_wait_timeout, Duration::from_secs(5));
        assert_eq!(p.connection_timeout, Duration::from_secs(5));
        assert_eq!(p.tls_handshake_timeout, Duration::from_secs(5));
        let mut short = l.clone();
        short.header_wait_timeout = Duration::from_secs(1);
        assert_eq!(
            pressured(&short).header_wait_timeout,
            Duration::from_secs(1)
        );
    }
}
