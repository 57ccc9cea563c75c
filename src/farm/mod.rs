//! Web farms (the ARR role): a pool's members are remote servers from `farm.servers`.
//!
//! This module turns the configured servers into pool members and keeps them in step
//! with a reloaded configuration (unchanged servers keep their member, connections and
//! counters; removed ones drain).

use crate::config::model::{Farm, Server, UpstreamTimeouts};
use crate::pool::{Member, Pool};
use crate::upstream::{Client, Endpoint};
use rustls_pki_types::ServerName;
use std::sync::{Arc, OnceLock};

/// The TLS client configuration for `https://` servers: the webpki roots, ring provider.
pub fn default_tls_client() -> Arc<rustls::ClientConfig> {
    static CFG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(cfg)
    })
    .clone()
}

/// The endpoint for one configured server.
pub fn endpoint(server: &Server) -> Endpoint {
    if server.tls {
        let server_name = ServerName::try_from(server.host.clone())
            .unwrap_or_else(|_| ServerName::try_from("localhost").expect("valid name"));
        Endpoint::Tls {
            host: server.host.clone(),
            port: server.port,
            server_name,
            config: default_tls_client(),
        }
    } else {
        Endpoint::Tcp {
            host: server.host.clone(),
            port: server.port,
        }
    }
}

pub fn member_for(server: &Server, timeouts: &UpstreamTimeouts) -> Arc<Member> {
    let client = Client::new(endpoint(server), timeouts);
    let m = Member::new(
        server.address.clone(),
        None,
        client,
        server.max_concurrent_requests,
        server.weight,
    );
    m.set_backup(server.backup);
    m
}

/// Make the pool's members match `farm`: servers whose address is unchanged keep their
/// member (capacity updated); new ones join; the rest drain and leave.
pub fn sync_members(pool: &Pool, farm: &Farm, timeouts: &UpstreamTimeouts) {
    let existing = pool.members();
    for server in &farm.servers {
        match existing.iter().find(|m| m.label == server.address) {
            Some(m) => {
                m.set_capacity(server.max_concurrent_requests, server.weight);
                m.set_backup(server.backup);
            }
            None => pool.add_member(member_for(server, timeouts)),
        }
    }
    for m in existing {
        if !farm.servers.iter().any(|s| s.address == m.label) {
            pool.remove_member(&m);
        }
    }
    pool.refresh();
}
