//! TLS client configuration (rustls with the `ring` provider).
//!
//! The connection itself is driven sans-IO in `conn.rs`: ciphertext from the
//! io_uring receive buffer goes into `rustls::ClientConnection::read_tls`,
//! plaintext comes out of its reader as slices (`BufRead::fill_buf`), and
//! the records rustls wants to send are written into the connection's send
//! buffer for an io_uring send.
//!
//! Trust: by default the system root store (`rustls-native-certs`, which
//! reads the distribution's bundle and honours `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`), because trading hosts manage their CAs; or only the CAs
//! of a PEM file named in the config. SNI and hostname verification are
//! always on (rustls' WebPKI verifier): a certificate for another name is
//! refused with `InvalidCertificate(NotValidForName..)`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Where trust anchors come from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum RootSource {
    /// The operating system's store (see the module doc).
    #[default]
    System,
    /// Only the CA certificates in this PEM file.
    CaFile(PathBuf),
}

/// Why a TLS client configuration could not be built.
#[derive(Debug)]
pub enum TlsSetupError {
    /// The system store yielded no usable certificate.
    NoSystemRoots { errors: Vec<String> },
    /// The CA file could not be read or parsed.
    CaFile { path: PathBuf, error: String },
    /// The CA file holds no certificate rustls accepts as a trust anchor.
    NoUsableCa { path: PathBuf, ignored: usize },
    /// rustls refused the protocol configuration.
    Rustls(rustls::Error),
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSetupError::NoSystemRoots { errors } => write!(
                f,
                "no CA certificate found in the system store (set SSL_CERT_FILE or give a CA file): {}",
                errors.join("; ")
            ),
            TlsSetupError::CaFile { path, error } => {
                write!(f, "CA file {}: {error}", path.display())
            }
            TlsSetupError::NoUsableCa { path, ignored } => write!(
                f,
                "CA file {}: no usable CA certificate ({ignored} unparsable)",
                path.display()
            ),
            TlsSetupError::Rustls(e) => write!(f, "TLS configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsSetupError {}

/// Loads the trust anchors of `source`.
pub fn root_store(source: &RootSource) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    match source {
        RootSource::System => {
            let res = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(res.certs);
            if added == 0 {
                return Err(TlsSetupError::NoSystemRoots {
                    errors: res.errors.iter().map(|e| e.to_string()).collect(),
                });
            }
        }
        RootSource::CaFile(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| TlsSetupError::CaFile {
                    path: path.clone(),
                    error: e.to_string(),
                })?;
            let (added, ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsSetupError::NoUsableCa {
                    path: path.clone(),
                    ignored,
                });
            }
        }
    }
    Ok(roots)
}

/// A client configuration trusting `source`, TLS 1.2 and 1.3, ALPN
/// `http/1.1` (we speak nothing else), no client certificate.
pub fn client_config(source: &RootSource) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let roots = root_store(source)?;
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsSetupError::Rustls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_file_is_named_in_the_error() {
        let e = client_config(&RootSource::CaFile("/nonexistent/ca.pem".into())).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("tickring-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("empty.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = client_config(&RootSource::CaFile(p.clone())).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(e, TlsSetupError::NoUsableCa { .. }), "{e}");
    }
}
