//! A throw-away self-signed certificate for TLS peers (valid for `localhost` and
//! `127.0.0.1`), written as PEM files into its own temporary folder.

use crate::Error;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A self-signed certificate and its private key, as PEM files and as DER bytes.
/// The files are deleted when this value is dropped.
#[derive(Debug)]
pub struct TestCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
    _dir: TempDir,
}

impl TestCertificate {
    /// Generates a fresh ECDSA P-256 certificate for `localhost` and `127.0.0.1`.
    pub fn generate() -> Result<Self, Error> {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|error| Error::Certificate(error.to_string()))?;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-cert-")
            .tempdir()
            .map_err(Error::io("creating a temporary folder for a certificate"))?;
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, certified.cert.pem())
            .map_err(Error::io(format!("writing {}", cert_path.display())))?;
        std::fs::write(&key_path, certified.key_pair.serialize_pem())
            .map_err(Error::io(format!("writing {}", key_path.display())))?;
        Ok(TestCertificate {
            cert_path,
            key_path,
            cert_der: certified.cert.der().to_vec(),
            key_der: certified.key_pair.serialize_der(),
            _dir: dir,
        })
    }

    /// The certificate, PEM-encoded, on disk.
    pub fn cert_pem_path(&self) -> &Path {
        &self.cert_path
    }

    /// The private key (PKCS#8), PEM-encoded, on disk.
    pub fn key_pem_path(&self) -> &Path {
        &self.key_path
    }

    /// The certificate, DER-encoded (e.g. to trust it in a rustls client).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The private key, PKCS#8 DER-encoded.
    pub fn key_der(&self) -> &[u8] {
        &self.key_der
    }
}
