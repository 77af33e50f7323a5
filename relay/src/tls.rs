//! The relay's TLS: the configured `[tls]` certificate (or a self-signed one, dev and tests
//! only), for STARTTLS and, with `http.tls`, for HTTPS on the HTTP listener.

use crate::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert_file {path}: {message}")]
    Cert { path: String, message: String },
    #[error("tls.key_file {path}: {message}")]
    Key { path: String, message: String },
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The STARTTLS acceptor for `hostname`.
pub fn acceptor(config: &TlsConfig, hostname: &str) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(Arc::new(server_config(
        config, hostname,
    )?)))
}

/// The HTTPS acceptor for `hostname` (ALPN `http/1.1`: the listener speaks HTTP/1.1 only).
pub fn https_acceptor(config: &TlsConfig, hostname: &str) -> Result<TlsAcceptor, TlsError> {
    let mut server = server_config(config, hostname)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// Configured files when set, else a fresh self-signed certificate for `hostname`.
fn server_config(config: &TlsConfig, hostname: &str) -> Result<rustls::ServerConfig, TlsError> {
    let (certs, key) = if config.cert_file.as_os_str().is_empty() {
        tracing::warn!(
            hostname,
            "no [tls] certificate configured: using a self-signed one"
        );
        let cert = rcgen::generate_simple_self_signed(vec![hostname.to_string()])?;
        let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).map_err(|e| {
            TlsError::Key {
                path: "<self-signed>".into(),
                message: e.to_string(),
            }
        })?;
        (vec![cert.cert.der().clone()], key)
    } else {
        let cert_path = config.cert_file.display().to_string();
        let key_path = config.key_file.display().to_string();
        let certs = CertificateDer::pem_file_iter(&config.cert_file)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Cert {
                path: cert_path.clone(),
                message: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Cert {
                path: cert_path,
                message: "no certificate found".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(&config.key_file).map_err(|e| TlsError::Key {
            path: key_path,
            message: e.to_string(),
        })?;
        (certs, key)
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_and_bad_files() {
        acceptor(&TlsConfig::default(), "relay.test").expect("self-signed");
        let bad = TlsConfig {
            cert_file: "/nonexistent.pem".into(),
            key_file: "/nonexistent.key".into(),
        };
        let err = acceptor(&bad, "relay.test")
            .err()
            .expect("missing files fail");
        assert!(err.to_string().contains("tls.cert_file"));
    }
}
