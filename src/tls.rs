//! TLS for both listeners: the PEM files of `--tls-cert`, `--tls-key` and
//! `--tls-client-ca`, read and checked once at start, so that a missing,
//! unreadable or mismatched file stops browserd with its name instead of
//! failing every handshake later; and what each listener gets from them:
//! tonic's server config for gRPC, a rustls config for the relay.
//!
//! Mutual TLS is for gRPC only. The relay's clients (Playwright,
//! Puppeteer, chromiumoxide) cannot easily present a client certificate,
//! and each connect_url already carries a token signed for its session.
//!
//! Everything runs on rustls' ring provider, the one tonic and sqlx use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::Config;

/// How long a gRPC client has to finish its TLS handshake. Without a bound,
/// a client that opens connections and never speaks holds a handshake task
/// each for ever.
const GRPC_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    // `error` is in the message, and not a `source`: `browserd serve`
    // prints the chain, which would say it twice.
    #[error("cannot read {flag} {path}: {error}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{flag} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { flag: &'static str, path: PathBuf },
    #[error("{flag} {path} is not valid PEM: {reason}")]
    BadPem {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("--tls-key {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    NoKey { path: PathBuf, reason: String },
    #[error("cannot serve --tls-cert {cert} with --tls-key {key}: {reason}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        reason: rustls::Error,
    },
    #[error("--tls-client-ca {path} holds no usable CA certificate: {reason}")]
    ClientCa { path: PathBuf, reason: String },
}

/// The server side of TLS, for both listeners.
#[derive(Clone)]
pub struct ServerTls {
    /// For tonic, which builds its own rustls config from the same PEM.
    pub grpc: ServerTlsConfig,
    /// For the relay: HTTP/1.1 only (WebSocket upgrades and discovery).
    pub relay: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The TLS `config` asks for, or `None` when it gives no certificate.
    /// `config` is checked already: the key comes with the certificate.
    pub fn from_config(config: &Config) -> Result<Option<Self>, TlsError> {
        let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else {
            return Ok(None);
        };
        let cert_pem = read("--tls-cert", cert_path)?;
        let key_pem = read("--tls-key", key_path)?;
        let chain = certificates("--tls-cert", cert_path, &cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let identity_error = |reason| TlsError::Identity {
            cert: cert_path.clone(),
            key: key_path.clone(),
            reason,
        };
        // Building the relay's config is also the check that the key is the
        // certificate's: rustls compares their public keys.
        let mut relay = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(identity_error)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(identity_error)?;
        relay.alpn_protocols = vec![b"http/1.1".to_vec()];

        let mut grpc = ServerTlsConfig::new()
            .identity(Identity::from_pem(&cert_pem, &key_pem))
            .timeout(GRPC_HANDSHAKE_TIMEOUT);
        if let Some(ca_path) = &config.tls_client_ca {
            let ca_pem = read("--tls-client-ca", ca_path)?;
            check_client_ca(ca_path, &ca_pem)?;
            grpc = grpc.client_ca_root(Certificate::from_pem(ca_pem));
        }
        Ok(Some(Self {
            grpc,
            relay: Arc::new(relay),
        }))
    }
}

/// How this node reaches other nodes' `https://` gRPC: their certificates
/// checked against `--cluster-ca-cert` (default: the system's roots), and,
/// when this node asks its own clients for certificates (mutual TLS, so
/// its peers presumably do too), its own `--tls-cert` presented.
pub fn peer_client(config: &Config) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    let mut tls = tonic::transport::ClientTlsConfig::new();
    tls = match &config.cluster_ca_cert {
        Some(path) => {
            let pem = read("--cluster-ca-cert", path)?;
            certificates("--cluster-ca-cert", path, &pem)?;
            tls.ca_certificate(Certificate::from_pem(pem))
        }
        None => tls.with_native_roots(),
    };
    if let (Some(_), Some(cert), Some(key)) =
        (&config.tls_client_ca, &config.tls_cert, &config.tls_key)
    {
        tls = tls.identity(Identity::from_pem(
            read("--tls-cert", cert)?,
            read("--tls-key", key)?,
        ));
    }
    Ok(tls)
}

/// The provider of every rustls config browserd builds. Given explicitly:
/// a process-wide default would be one more thing to install in order.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        flag,
        path: path.to_owned(),
        error,
    })
}

fn certificates(
    flag: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            flag,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            flag,
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// Builds, and drops, the verifier tonic will build from the same file:
/// tonic skips certificates it cannot parse and would only fail at serve
/// time, without the file's name.
fn check_client_ca(path: &Path, pem: &[u8]) -> Result<(), TlsError> {
    let refused = |reason: String| TlsError::ClientCa {
        path: path.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates("--tls-client-ca", path, pem)? {
        roots.add(cert).map_err(|e| refused(e.to_string()))?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| refused(e.to_string()))?;
    Ok(())
}
