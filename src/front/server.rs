//! The front as a whole: listeners, the accept loop with its connection cap, the routing
//! state that a reload swaps atomically, and graceful shutdown.
//!
//! Accept path: a listener accepts → the connection cap admits (or closes at once) →
//! TLS handshake under `tlsHandshakeTimeout` (or the h2c sniff under `headerWaitTimeout`)
//! → [`super::connection::serve`] → per request [`super::proxy::handle`].

use super::connection::{self, Activity, Protocol};
use super::inflight::Registry;
use super::overload::{self, Conn, ConnState};
use super::proxy;
use super::record::{ConnInfo, RequestRecord};
use super::serving::Serving;
use super::state::{build_pools, build_state, listen_addresses, StartError, State};
use super::tls;
use crate::config::model::{Config, Limits};
use crate::pool::{Pool, PoolHooks};
use crate::runtime::Threads;
use bytes::BytesMut;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

struct ListenerHandle {
    bound: SocketAddr,
    stop: watch::Sender<bool>,
    /// The listening socket (each front thread accepts on a duplicate of it), kept for a
    /// binary upgrade to hand down.
    socket: std::net::TcpListener,
}

pub struct Front {
    /// What each request reads and records (the state a reload swaps, the access log).
    serving: Arc<Serving>,
    /// Requests in flight: the same registry as `serving`'s (for the admin API).
    pub inflight: Arc<Registry>,
    /// Open connections: the cap, pressure, reclaiming (`front::overload`).
    connections: Arc<overload::Manager>,
    shutdown: watch::Sender<bool>,
    listeners: Mutex<BTreeMap<SocketAddr, ListenerHandle>>,
    hooks: Mutex<Vec<Arc<dyn PoolHooks>>>,
    /// Serializes reloads (SIGHUP and the admin API may race).
    reload_lock: tokio::sync::Mutex<()>,
    /// The threads connections are accepted and served on (`workers`).
    threads: Arc<Threads>,
    /// Accept loops still running ([`AcceptLoop`]): shutdown waits for them to end
    /// before it counts open connections, so one accepted at the last moment is counted.
    accept_loops: AtomicUsize,
}

impl Front {
    /// Build pools and routes from `config` and bind every listener, serving on the
    /// caller's runtime. Nothing is served until it returns; on error nothing stays bound.
    pub async fn start(
        config: Config,
        hooks: Vec<Arc<dyn PoolHooks>>,
    ) -> Result<Arc<Front>, StartError> {
        Self::start_on(config, hooks, Threads::current()).await
    }

    /// [`Front::start`], serving on `threads` (what `roost serve` runs: `workers`
    /// front threads, each accepting on every listener).
    pub async fn start_on(
        config: Config,
        hooks: Vec<Arc<dyn PoolHooks>>,
        threads: Arc<Threads>,
    ) -> Result<Arc<Front>, StartError> {
        let config = Arc::new(config);
        let pools = build_pools(&config, &BTreeMap::new());
        let caches = crate::cache::Caches::build(&config, None);
        let state = build_state(config.clone(), pools, caches)?;
        let access_log = config
            .log
            .access
            .as_ref()
            .map(super::access_log::AccessLogger::start);
        let serving = Arc::new(Serving::new(state, access_log));
        let (shutdown, _) = watch::channel(false);
        let front = Arc::new(Front {
            inflight: serving.inflight.clone(),
            serving,
            connections: overload::Manager::new(&config.limits),
            shutdown,
            listeners: Mutex::new(BTreeMap::new()),
            hooks: Mutex::new(hooks),
            reload_lock: tokio::sync::Mutex::new(()),
            threads,
            accept_loops: AtomicUsize::new(0),
        });
        let bound = bind_all(&config)?;
        front.connections.spawn_sweeper();
        for (addr, listener) in bound {
            front.spawn_listener(addr, listener);
        }
        let state = front.state();
        for (name, pool) in &state.pools {
            for h in front.hooks.lock().iter() {
                h.pool_added(pool, &state.config.pools[name], None);
            }
        }
        Ok(front)
    }

    /// Register a hook after start (it is told about every current pool at once).
    pub fn add_hook(&self, hook: Arc<dyn PoolHooks>) {
        let state = self.state();
        for (name, pool) in &state.pools {
            hook.pool_added(pool, &state.config.pools[name], None);
        }
        self.hooks.lock().push(hook);
    }

    pub fn state(&self) -> arc_swap::Guard<Arc<State>> {
        self.serving.state()
    }

    pub fn config(&self) -> Arc<Config> {
        self.state().config.clone()
    }

    pub fn limits(&self) -> Limits {
        self.serving.limits()
    }

    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.state().pools.get(name).cloned()
    }

    /// `(configured, bound)` listen addresses; they differ when the config says port 0.
    pub fn bound_addresses(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.listeners
            .lock()
            .iter()
            .map(|(a, h)| (*a, h.bound))
            .collect()
    }

    /// `(configured address, fd)` of every listening socket (valid until shutdown).
    pub fn listener_fds(&self) -> Vec<(SocketAddr, std::os::fd::RawFd)> {
        self.listeners
            .lock()
            .iter()
            .map(|(a, h)| (*a, std::os::fd::AsRawFd::as_raw_fd(&h.socket)))
            .collect()
    }

    /// The threads connections are served on, with their open connections.
    pub fn threads(&self) -> &Threads {
        &self.threads
    }

    /// Open client connections.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }

    /// The connection registry (states, reclaim and refusal counts).
    pub fn connections(&self) -> &overload::Manager {
        &self.connections
    }

    /// Apply a new configuration without dropping connections: pools are kept by name
    /// (their queues and members survive), routes and certificates swap atomically,
    /// listeners are added and removed. On error the running configuration stays.
    pub async fn reload(self: &Arc<Self>, config: Config) -> Result<(), StartError> {
        let _serial = self.reload_lock.lock().await;
        let old = self.serving.state_full();
        let config = Arc::new(config);
        let pools = build_pools(&config, &old.pools);
        let caches = crate::cache::Caches::build(&config, Some(&old.caches));
        let state = build_state(config.clone(), pools, caches)?;
        // Bind new addresses before swapping, so a bind failure changes nothing.
        let current: Vec<SocketAddr> = self.listeners.lock().keys().copied().collect();
        let wanted = listen_addresses(&config);
        let mut new_listeners = Vec::new();
        for addr in wanted.iter().filter(|a| !current.contains(a)) {
            new_listeners.push((*addr, bind(*addr)?));
        }
        self.serving.store(state);
        self.connections.configure(&config.limits);
        for (addr, l) in new_listeners {
            self.spawn_listener(addr, l);
        }
        let removed: Vec<SocketAddr> = current
            .into_iter()
            .filter(|a| !wanted.contains(a))
            .collect();
        for addr in removed {
            if let Some(h) = self.listeners.lock().remove(&addr) {
                let _ = h.stop.send(true);
                tracing::info!(listen = %addr, "listener removed");
            }
        }
        let new = self.serving.state_full();
        let hooks = self.hooks.lock().clone();
        for (name, pool) in &new.pools {
            let prev = old.config.pools.get(name);
            if prev != Some(&new.config.pools[name]) {
                for h in &hooks {
                    h.pool_added(pool, &new.config.pools[name], prev);
                }
            }
        }
        for (name, pool) in &old.pools {
            if !new.pools.contains_key(name) {
                pool.set_state(crate::pool::PoolState::Stopped);
                for h in &hooks {
                    h.pool_removed(pool);
                }
            }
        }
        tracing::info!(pools = new.pools.len(), "configuration reloaded");
        Ok(())
    }

    fn spawn_listener(self: &Arc<Self>, addr: SocketAddr, socket: std::net::TcpListener) {
        let bound = socket.local_addr().unwrap_or(addr);
        let (stop, stop_rx) = watch::channel(false);
        tracing::info!(listen = %addr, bound = %bound, threads = self.threads.len(), "listening");
        // Every thread accepts on its own duplicate of the one socket: one accept queue
        // per binding (what an upgrade hands down), registered with each thread's reactor.
        for i in 0..self.threads.len() {
            let dup = match socket.try_clone() {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(listen = %addr, thread = i, error = %e, "cannot share the listening socket");
                    continue;
                }
            };
            let (front, stop_rx) = (self.clone(), stop_rx.clone());
            // Counted from here, not from when the task first runs: a shutdown in
            // between still waits for it.
            let counted = AcceptLoop::enter(self);
            self.threads.spawn_on(i, async move {
                let _counted = counted;
                match TcpListener::from_std(dup) {
                    Ok(l) => front.accept_loop(i, addr, l, stop_rx).await,
                    Err(e) => {
                        tracing::error!(listen = %addr, error = %e, "cannot register the listener")
                    }
                }
            });
        }
        self.listeners.lock().insert(
            addr,
            ListenerHandle {
                bound,
                stop,
                socket,
            },
        );
    }

    async fn accept_loop(
        self: Arc<Self>,
        thread: usize,
        listen: SocketAddr,
        listener: TcpListener,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut shutdown = self.shutdown.subscribe();
        // A shutdown sent before this loop subscribed would never show as a change.
        if *shutdown.borrow_and_update() {
            return;
        }
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = stop.changed() => return,
                _ = shutdown.changed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) if is_resource_exhaustion(&e) => {
                    // Out of file descriptors or memory: back off instead of spinning;
                    // the pending connections wait in the kernel backlog.
                    tracing::warn!(listen = %listen, error = %e, "accept failed, backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(listen = %listen, error = %e, "accept failed");
                    continue;
                }
            };
            self.accepted(thread, listen, stream, peer);
        }
    }

    /// Admit an accepted connection and start it on its thread: this one, or the least
    /// loaded one when this thread holds more than its share.
    fn accepted(
        self: &Arc<Self>,
        thread: usize,
        listen: SocketAddr,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        let acceptor = self.state().acceptor(&listen);
        let first = match acceptor {
            Some(_) => ConnState::Handshake,
            None => ConnState::AwaitingHead,
        };
        // At `maxConnections` a connection that has sent nothing (or an idle one)
        // makes room; if every one is busy, close at once, as HTTP.sys does, rather
        // than let the process run out of descriptors.
        let (conn, pressured) = match self.connections.admit(peer.ip(), first) {
            Ok(x) => x,
            Err(why) => {
                tracing::debug!(peer = %peer, why = why.as_str(), "connection refused");
                return;
            }
        };
        let to = self.threads.place(thread);
        let held = self.threads.hold(to);
        let front = self.clone();
        if to == thread {
            tokio::spawn(async move {
                let _held = held;
                front
                    .connection(listen, stream, peer, acceptor, conn, pressured)
                    .await;
            });
            return;
        }
        // Moved to another thread's reactor: the socket is taken off this one's.
        let Ok(std) = stream.into_std() else { return };
        self.threads.spawn_on(to, async move {
            let _held = held;
            let Ok(stream) = TcpStream::from_std(std) else {
                return;
            };
            front
                .connection(listen, stream, peer, acceptor, conn, pressured)
                .await;
        });
    }

    /// One client connection. The task's future is sized for the plain HTTP/1.1 path
    /// (every idle keep-alive connection holds one): TLS state and hyper's HTTP/2
    /// connection are boxed, or each plain connection would carry ~12 KiB of their room.
    ///
    /// `conn` is the connection's place in the registry (dropped when the task ends);
    /// under pressure the connection runs on the overload timeouts.
    async fn connection(
        self: Arc<Self>,
        listen: SocketAddr,
        stream: TcpStream,
        peer: SocketAddr,
        acceptor: Option<TlsAcceptor>,
        conn: Conn,
        pressured: bool,
    ) {
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(listen);
        let mut limits = self.limits();
        if pressured {
            limits = overload::pressured(&limits);
        }
        let shutdown = self.shutdown.subscribe();
        let mut info = ConnInfo {
            listen,
            local,
            peer,
            tls: false,
        };
        if let Some(acceptor) = acceptor {
            info.tls = true;
            let served = async move {
                let hs = tokio::select! {
                    r = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)) => r,
                    _ = conn.reclaimed() => return,
                };
                let tls_stream = match hs {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %peer, "TLS handshake timed out");
                        return;
                    }
                };
                conn.set_awaiting_head();
                let protocol = match tls_stream.get_ref().1.alpn_protocol() {
                    Some(p) if p == tls::ALPN_H2 => Protocol::Http2,
                    _ => Protocol::Http1,
                };
                self.serve(
                    tls_stream,
                    BytesMut::new(),
                    protocol,
                    info,
                    &limits,
                    shutdown,
                    &conn,
                )
                .await;
            };
            return Box::pin(served).await;
        }
        let sniffed = tokio::select! {
            r = connection::sniff(&stream, limits.header_wait_timeout) => r,
            _ = conn.reclaimed() => return,
        };
        let Some((protocol, first)) = sniffed else {
            tracing::debug!(peer = %peer, "connection closed before a request");
            return;
        };
        self.serve(stream, first, protocol, info, &limits, shutdown, &conn)
            .await;
    }

    /// HTTP/1.1 goes through roost's own server loop, HTTP/2 through hyper's.
    #[allow(clippy::too_many_arguments)]
    async fn serve<I>(
        self: &Arc<Self>,
        io: I,
        first: BytesMut,
        protocol: Protocol,
        conn: ConnInfo,
        limits: &Limits,
        shutdown: watch::Receiver<bool>,
        track: &Conn,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match protocol {
            Protocol::Http1 => {
                let serving = self.serving.clone();
                // Shared, not copied into the task: the connection's task future is what
                // an idle keep-alive connection costs, and `ConnInfo` is ~100 bytes.
                let conn = Arc::new(conn);
                let handler = {
                    let conn = conn.clone();
                    move |req| proxy::handle(serving.clone(), *conn, None, req)
                };
                let serving = self.serving.clone();
                let refused = move |r: super::h1::Refused| {
                    let rec = RequestRecord {
                        method: None,
                        target: None,
                        local: conn.local,
                        peer: conn.peer,
                        user_agent: None,
                        status: r.status.as_u16(),
                        elapsed: r.elapsed,
                        pool: None,
                        worker_pid: None,
                        queue_wait: None,
                        reason: r.reason,
                        cache: None,
                    };
                    serving.record(&rec, None);
                };
                super::h1::serve(io, first, limits, handler, refused, shutdown, track).await;
            }
            Protocol::Http2 => {
                // An HTTP/2 connection with no stream open is idle (it sent its preface).
                track.set_idle(Instant::now());
                let activity = Activity::tracked(track.tracked().clone());
                let svc = proxy::Service {
                    front: self.serving.clone(),
                    conn: Arc::new(conn),
                    activity: activity.clone(),
                };
                let io = crate::rewind::Rewind::new(first.freeze(), io);
                Box::pin(connection::serve_h2(io, limits, activity, svc, shutdown)).await;
            }
        }
    }

    /// Stop accepting, let in-flight requests finish within `grace`, then return.
    /// Keep-alive connections close after their current response; HTTP/2 ones get GOAWAY.
    pub async fn shutdown(&self, grace: Duration) {
        tracing::info!(grace = ?grace, open = self.open_connections(), "shutting down");
        let _ = self.shutdown.send(true);
        // Close the listening sockets (each thread's duplicate goes with its accept loop):
        // new connections are refused instead of waiting in a backlog nobody accepts from.
        drop(std::mem::take(&mut *self.listeners.lock()));
        let deadline = Instant::now() + grace;
        // A loop may have just accepted: it admits the connection (counted open) before
        // it looks at the shutdown again. Counting before every loop has ended could
        // see none open and exit with that connection unserved (a binary upgrade shares
        // the socket, so connections keep arriving until the moment each loop stops).
        while self.accept_loops.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        while self.open_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.open_connections();
        if left > 0 {
            tracing::warn!(
                connections = left,
                "grace period over; closing remaining connections"
            );
        }
        let hooks = self.hooks.lock().clone();
        for pool in self.state().pools.values() {
            for h in &hooks {
                h.pool_removed(pool);
            }
        }
        self.serving.flush_log();
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

fn bind_all(config: &Config) -> Result<Vec<(SocketAddr, std::net::TcpListener)>, StartError> {
    listen_addresses(config)
        .into_iter()
        .map(|a| Ok((a, bind(a)?)))
        .collect()
}

/// Bind with SO_REUSEADDR (restart without TIME_WAIT trouble) and a deep backlog.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    // A binary upgrade hands the same socket down: never a new sibling on the port.
    if let Some(l) = crate::ops::upgrade::take_listener(addr) {
        return Ok(l);
    }
    let mk = || -> io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(4096)?;
        Ok(socket.into())
    };
    mk().map_err(|source| StartError::Bind { addr, source })
}

/// One running accept loop, counted in [`Front`]'s `accept_loops` until dropped (the loop
/// ended, or its task was dropped before it ran).
struct AcceptLoop(Arc<Front>);

impl AcceptLoop {
    fn enter(front: &Arc<Front>) -> AcceptLoop {
        front.accept_loops.fetch_add(1, Ordering::AcqRel);
        AcceptLoop(front.clone())
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.0.accept_loops.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shutdown does not count open connections (and so does not return) while an accept
    /// loop still runs: that loop may hold a connection it accepted and has not admitted
    /// yet. Once the last loop ends, shutdown goes on.
    #[tokio::test]
    async fn shutdown_waits_for_every_accept_loop_to_end() {
        let yaml = "sites: [{name: s, bindings: [{listen: \"127.0.0.1:0\"}], applications: [{path: /, pool: p}]}]\n\
                    pools:\n  p:\n    farm: {servers: [{address: \"127.0.0.1:9\"}]}\n";
        let cfg = crate::config::load_str(yaml, "t.yaml").unwrap();
        let front = Front::start(cfg, vec![]).await.unwrap();
        // Stands for a loop that has just accepted and not yet looked at the shutdown.
        let busy_loop = AcceptLoop::enter(&front);
        let f = front.clone();
        let mut stopping = tokio::spawn(async move { f.shutdown(Duration::from_secs(30)).await });
        let early = tokio::time::timeout(Duration::from_millis(300), &mut stopping).await;
        assert!(early.is_err(), "shutdown returned while an accept loop ran");
        drop(busy_loop);
        tokio::time::timeout(Duration::from_secs(10), stopping)
            .await
            .expect("shutdown goes on once the last accept loop ends")
            .unwrap();
        assert_eq!(front.accept_loops.load(Ordering::Acquire), 0);
    }
}
