//! The relay's TLS: the configured `[tls]` certificate (or a self-signed one, dev and tests
//! only), for STARTTLS and, with `http.tls`, for HTTPS on the HTTP listener.

use crate::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
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

/// The certificate new handshakes get. `reload` swaps it without touching sessions already
/// running, so a renewed certificate (certbot) needs no restart.
pub struct Certificate {
    config: TlsConfig,
    hostname: String,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of the files the current certificate came from.
    loaded_from: Mutex<Option<(SystemTime, SystemTime)>>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("cert_file", &self.config.cert_file)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Loads the configured files, else makes a self-signed certificate for `hostname`.
    pub fn load(config: &TlsConfig, hostname: &str) -> Result<Arc<Self>, TlsError> {
        let stamp = file_times(config);
        let key = certified_key(config, hostname)?;
        Ok(Arc::new(Self {
            config: config.clone(),
            hostname: hostname.to_string(),
            current: RwLock::new(Arc::new(key)),
            loaded_from: Mutex::new(stamp),
        }))
    }

    /// Whether the configured files changed since they were last loaded.
    pub fn changed_on_disk(&self) -> bool {
        if self.config.cert_file.as_os_str().is_empty() {
            return false;
        }
        let now = file_times(&self.config);
        now.is_some() && self.loaded_from.lock().map(|l| *l != now).unwrap_or(true)
    }

    /// Reads the files again and uses them for new handshakes; on an error the certificate in
    /// use stays (a half-written renewal must not take TLS down).
    pub fn reload(&self) -> Result<(), TlsError> {
        if self.config.cert_file.as_os_str().is_empty() {
            // Self-signed (dev, tests): nothing on disk to re-read.
            return Ok(());
        }
        let stamp = file_times(&self.config);
        let key = certified_key(&self.config, &self.hostname)?;
        if let Ok(mut c) = self.current.write() {
            *c = Arc::new(key);
        }
        if let Ok(mut l) = self.loaded_from.lock() {
            *l = stamp;
        }
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The STARTTLS acceptor serving `cert`.
pub fn acceptor(cert: &Arc<Certificate>) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(Arc::new(server_config(cert)?)))
}

/// The HTTPS acceptor serving `cert` (ALPN `http/1.1`: the listener speaks HTTP/1.1 only).
pub fn https_acceptor(cert: &Arc<Certificate>) -> Result<TlsAcceptor, TlsError> {
    let mut server = server_config(cert)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_config(cert: &Arc<Certificate>) -> Result<rustls::ServerConfig, TlsError> {
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert.clone()))
}

fn file_times(config: &TlsConfig) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&config.cert_file)?, m(&config.key_file)?))
}

/// Configured files when set, else a fresh self-signed certificate for `hostname`.
fn certified_key(config: &TlsConfig, hostname: &str) -> Result<CertifiedKey, TlsError> {
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
    let key_path = config.key_file.display().to_string();
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| TlsError::Key {
        path: if config.key_file.as_os_str().is_empty() {
            "<self-signed>".into()
        } else {
            key_path
        },
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_and_bad_files() {
        acceptor(&Certificate::load(&TlsConfig::default(), "relay.test").expect("self-signed"))
            .expect("acceptor");
        let bad = TlsConfig {
            cert_file: "/nonexistent.pem".into(),
            key_file: "/nonexistent.key".into(),
            ..Default::default()
        };
        let Err(err) = Certificate::load(&bad, "relay.test") else {
            panic!("missing files fail");
        };
        assert!(err.to_string().contains("tls.cert_file"));
    }
}
