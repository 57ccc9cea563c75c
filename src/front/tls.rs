//! TLS termination with rustls (ring provider): certificates per binding, chosen by SNI.

use crate::config::files::{read_bounded, PEM_CAP};
use crate::config::model::Tls;
use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// ALPN protocols offered, in preference order.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_H1: &[u8] = b"http/1.1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("reading private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("building TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Picks a certificate by SNI: exact name, then `*.suffix`, then the default.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        for (suffix, k) in &self.wildcard {
            if name.len() > suffix.len() && name.ends_with(suffix.as_str()) {
                return Some(k.clone());
            }
        }
        Some(self.default.clone())
    }
}

fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    // Bounded reads: a configured path may name a FIFO or a device (see config::files).
    let cert_err = |reason: String| TlsError::Cert {
        path: cert.display().to_string(),
        reason,
    };
    let key_err = |reason: String| TlsError::Key {
        path: key.display().to_string(),
        reason,
    };
    let cert_pem = read_bounded(cert, PEM_CAP).map_err(|e| cert_err(e.to_string()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.display().to_string(),
            reason: "no PEM certificate found".into(),
        });
    }
    let key_pem = read_bounded(key, PEM_CAP).map_err(|e| key_err(e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| key_err(e.to_string()))?;
    let signing = ring::sign::any_supported_type(&key_der).map_err(|e| key_err(e.to_string()))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// Build the server configuration for one binding.
pub fn server_config(tls: &Tls) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut exact = HashMap::new();
    let mut wildcard = Vec::new();
    let mut default = None;
    for c in &tls.certificates {
        let key = Arc::new(load_certified_key(&c.cert, &c.key)?);
        if c.server_names.is_empty() {
            default.get_or_insert_with(|| key.clone());
        }
        for n in &c.server_names {
            let n = n.to_ascii_lowercase();
            match n.strip_prefix('*') {
                Some(suffix) => wildcard.push((suffix.to_string(), key.clone())),
                None => {
                    exact.entry(n).or_insert_with(|| key.clone());
                }
            }
        }
        // Without an explicit default, the first certificate answers clients without SNI.
        if default.is_none() {
            default = Some(key.clone());
        }
    }
    let default = default.ok_or_else(|| TlsError::Cert {
        path: String::new(),
        reason: "a TLS binding needs at least one certificate".into(),
    })?;
    wildcard.sort_by_key(|b: &(String, _)| std::cmp::Reverse(b.0.len()));
    let resolver = SniResolver {
        exact,
        wildcard,
        default,
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_H1.to_vec()];
    Ok(Arc::new(cfg))
}
