//! What a reload replaces in one atomic swap ([`State`]: configuration, pools, routes,
//! TLS acceptors, response caches) and how it is built from a configuration: pools are
//! kept by name across reloads, and a farm pool's members follow its `farm` section.

use super::router::HostRouter;
use super::tls;
use crate::config::model::{Backend, Config};
use crate::farm;
use crate::pool::Pool;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// What a reload replaces in one atomic swap.
pub struct State {
    pub config: Arc<Config>,
    pub pools: BTreeMap<String, Arc<Pool>>,
    /// By configured listen address: a handful at most, so a scan of addresses beats
    /// hashing one (SipHash of a `SocketAddr` was ~1 % of a request's instructions).
    routes: Vec<(SocketAddr, HostRouter<Arc<Pool>>)>,
    tls: HashMap<SocketAddr, TlsAcceptor>,
    /// Pools' response caches (empty: no lookup on the request path).
    pub caches: crate::cache::Caches,
    /// Pools' and applications' compression (empty: nothing on the request path).
    pub compression: crate::compress::Routes,
}

/// Why the front could not start, or a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("TLS on {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: tls::TlsError,
    },
    #[error("cannot start the front threads: {0}")]
    Threads(std::io::Error),
    #[error("{addr} is bound both with and without TLS; a listen address is one or the other")]
    MixedTls { addr: SocketAddr },
}

impl State {
    /// The router for a configured listen address.
    pub fn router(&self, listen: &SocketAddr) -> Option<&HostRouter<Arc<Pool>>> {
        self.routes
            .iter()
            .find(|(a, _)| a == listen)
            .map(|(_, r)| r)
    }

    /// The TLS acceptor for a configured listen address (`None`: plain TCP).
    pub fn acceptor(&self, listen: &SocketAddr) -> Option<TlsAcceptor> {
        self.tls.get(listen).cloned()
    }
}

/// Pools for `config`, keeping the existing pool object (queue, members, counters) for
/// every name that survives a reload.
pub(super) fn build_pools(
    config: &Config,
    old: &BTreeMap<String, Arc<Pool>>,
) -> BTreeMap<String, Arc<Pool>> {
    let mut pools = BTreeMap::new();
    for (name, cfg) in &config.pools {
        let pool = match old.get(name) {
            Some(p) => {
                p.reconfigure(cfg);
                p.clone()
            }
            None => Pool::new(cfg),
        };
        if let Backend::Farm(f) = &cfg.backend {
            farm::sync_members(&pool, f, &cfg.timeouts);
        }
        pools.insert(name.clone(), pool);
    }
    pools
}

pub(super) fn listen_addresses(config: &Config) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = config
        .sites
        .iter()
        .flat_map(|s| s.bindings.iter().map(|b| b.listen))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Routes and TLS acceptors for every listen address of `config`.
pub(super) fn build_state(
    config: Arc<Config>,
    pools: BTreeMap<String, Arc<Pool>>,
    caches: crate::cache::Caches,
) -> Result<State, StartError> {
    let mut routes = Vec::new();
    let mut tls_map = HashMap::new();
    for addr in listen_addresses(&config) {
        let sites: Vec<&crate::config::model::Site> = config
            .sites
            .iter()
            .filter(|s| s.bindings.iter().any(|b| b.listen == addr))
            .collect();
        let router = HostRouter::new(sites.iter().copied(), |name| {
            pools
                .get(name)
                .cloned()
                .expect("validated: every application names a pool")
        });
        routes.push((addr, router));
        // Every certificate of every binding on this address, for SNI.
        let bindings: Vec<_> = config
            .sites
            .iter()
            .flat_map(|s| s.bindings.iter())
            .filter(|b| b.listen == addr)
            .collect();
        let with_tls = bindings.iter().filter(|b| b.tls.is_some()).count();
        if with_tls > 0 && with_tls < bindings.len() {
            return Err(StartError::MixedTls { addr });
        }
        if with_tls > 0 {
            let merged = crate::config::model::Tls {
                certificates: bindings
                    .iter()
                    .flat_map(|b| {
                        b.tls
                            .as_ref()
                            .map(|t| t.certificates.clone())
                            .unwrap_or_default()
                    })
                    .collect(),
            };
            let cfg =
                tls::server_config(&merged).map_err(|source| StartError::Tls { addr, source })?;
            tls_map.insert(addr, TlsAcceptor::from(cfg));
        }
    }
    Ok(State {
        compression: crate::compress::Routes::build(&config),
        config,
        pools,
        routes,
        tls: tls_map,
        caches,
    })
}
