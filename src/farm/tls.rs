//! TLS to farm servers: a rustls client (ring provider only) that trusts the webpki roots
//! or a configured CA bundle, optionally presents a client certificate (mutual TLS), and
//! — only when asked, with a loud warning — skips verification.

use crate::config::files::{read_bounded, FileError, PEM_CAP};
use crate::config::model::FarmTls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::{Arc, OnceLock};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS client configuration for `https://` servers with no `farm.tls`: the webpki
/// roots, ring provider, HTTP/1.1 by ALPN.
pub fn default_tls_client() -> Arc<rustls::ClientConfig> {
    static CFG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        client_config(&FarmTls::default()).expect("the default TLS client needs no files")
    })
    .clone()
}

#[derive(Debug, thiserror::Error)]
pub enum TlsClientError {
    #[error("{0}")]
    Read(#[from] FileError),
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("TLS client configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, TlsClientError> {
    Ok(read_bounded(path, PEM_CAP)?)
}

fn certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, TlsClientError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsClientError::Pem {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsClientError::Pem {
            path: path.display().to_string(),
            message: "no PEM CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// Build the client configuration `farm.tls` describes (files are read now).
pub fn client_config(t: &FarmTls) -> Result<Arc<rustls::ClientConfig>, TlsClientError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = if t.insecure_skip_verify {
        tracing::warn!(
            "farm TLS: insecureSkipVerify is set — server certificates are NOT verified; \
             anyone on the network path can impersonate the farm's servers"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &t.ca_file {
            Some(ca) => {
                for c in certs(ca)? {
                    roots.add(c)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let mut cfg = match (&t.client_cert, &t.client_key) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert)?;
            let key_bytes = read(key)?;
            let key_der =
                PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsClientError::Pem {
                    path: key.display().to_string(),
                    message: e.to_string(),
                })?;
            builder.with_client_auth_cert(chain, key_der)?
        }
        _ => builder.with_no_client_auth(),
    };
    // The upstream client speaks HTTP/1.1 only.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The name sent by SNI and checked in the certificate: `serverName` if configured,
/// else `host` (a DNS name, or an IP address checked against IP SANs).
pub fn server_name(t: &FarmTls, host: &str) -> ServerName<'static> {
    let name = t.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string())
        .unwrap_or_else(|_| ServerName::try_from("invalid.invalid").expect("valid name"))
}

/// `insecureSkipVerify`: accepts any certificate, but still checks that the server holds
/// the key of the certificate it sent (handshake signatures), so the channel is at least
/// encrypted to whoever answered.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
