//! DNS discovery: `discovery.dns` (`name:port`) is resolved every `interval`; each A/AAAA
//! record becomes a server (`ip:port`), records that vanish drain and leave — no reload.
//! An empty or failed answer keeps the current servers (a DNS hiccup must not empty
//! the farm).

use super::server::{ServerRt, Spec};
use super::{reconcile, FarmState};
use crate::pool::FarmPolicy;
use crate::pool::Pool;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

/// The discovery loop of one farm pool; ends when the pool is gone or has no discovery.
pub(crate) async fn run(weak: Weak<Pool>, fs: Arc<FarmState>) {
    loop {
        let Some(pool) = weak.upgrade() else {
            return;
        };
        let d = fs.config().farm.discovery.clone();
        let Some(d) = d.filter(|_| fs.is_active()) else {
            return;
        };
        drop(pool);
        let answer = tokio::net::lookup_host((d.host.as_str(), d.port)).await;
        let Some(pool) = weak.upgrade() else {
            return;
        };
        match answer {
            Ok(addrs) => {
                let addrs: BTreeSet<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    tracing::warn!(pool = pool.name(), dns = %d.dns, "DNS answered no addresses; keeping the current servers");
                } else {
                    apply(&pool, &fs, &addrs);
                }
            }
            Err(e) => {
                tracing::warn!(pool = pool.name(), dns = %d.dns, error = %e, "DNS lookup failed; keeping the current servers");
            }
        }
        drop(pool);
        tokio::time::sleep(d.interval).await;
    }
}

/// Make the discovered servers of `pool` exactly `addrs` (configured servers with the
/// same address stay configured ones).
pub(crate) fn apply(pool: &Arc<Pool>, fs: &FarmState, addrs: &BTreeSet<SocketAddr>) {
    if !fs.is_active() {
        return;
    }
    let cfg = fs.config();
    let Some(d) = cfg.farm.discovery.as_ref() else {
        return;
    };
    let label = |a: &SocketAddr| {
        if d.tls {
            format!("https://{a}")
        } else {
            a.to_string()
        }
    };
    let wanted: Vec<(String, &SocketAddr)> = addrs.iter().map(|a| (label(a), a)).collect();
    let mut changed = false;
    {
        let mut servers = fs.servers.lock();
        servers.retain(|l, rt| {
            let keep = !rt.spec.lock().discovered || wanted.iter().any(|(w, _)| w == l);
            if !keep {
                tracing::info!(pool = pool.name(), server = %l, "no longer in DNS");
                changed = true;
            }
            keep
        });
        for (l, a) in &wanted {
            let spec = Spec {
                address: l.clone(),
                host: a.ip().to_string(),
                port: a.port(),
                tls: d.tls,
                name: d.host.clone(),
                slots: d.max_concurrent_requests,
                weight: d.weight,
                backup: false,
                discovered: true,
            };
            match servers.get(l) {
                Some(rt) => {
                    let mut s = rt.spec.lock();
                    if s.discovered && *s != spec {
                        *s = spec;
                        changed = true;
                    }
                }
                None => {
                    tracing::info!(pool = pool.name(), server = %l, dns = %d.dns, "discovered server joins");
                    servers.insert(l.clone(), Arc::new(ServerRt::new(spec)));
                    changed = true;
                }
            }
        }
    }
    if changed {
        reconcile(pool, fs, false);
    }
}
