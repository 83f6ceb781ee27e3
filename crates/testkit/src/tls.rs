//! Throw-away certificates for TLS peers, written as PEM files into their own
//! temporary folder: a self-signed server certificate ([`TestCertificate`]), or a
//! small PKI for mutual TLS ([`TestPki`]: a CA, a server certificate and a client
//! certificate signed by it).

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

/// A certificate (signed by a [`TestPki`]'s CA) and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl IssuedCertificate {
    /// The certificate, PEM-encoded, on disk.
    pub fn cert_pem_path(&self) -> &Path {
        &self.cert_path
    }

    /// The private key (PKCS#8), PEM-encoded, on disk.
    pub fn key_pem_path(&self) -> &Path {
        &self.key_path
    }
}

/// A throw-away PKI for mutual TLS: a CA (ECDSA P-256), a server certificate for
/// `localhost` and `127.0.0.1` (extended key usage serverAuth) and a client
/// certificate (CN `flotilla-test-client`, clientAuth), both signed by the CA.
/// The files are deleted when this value is dropped.
#[derive(Debug)]
pub struct TestPki {
    ca_path: PathBuf,
    server: IssuedCertificate,
    client: IssuedCertificate,
    _dir: TempDir,
}

fn certificate_error(error: rcgen::Error) -> Error {
    Error::Certificate(error.to_string())
}

impl TestPki {
    /// Generates the CA, the server and the client certificate.
    pub fn generate() -> Result<Self, Error> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let dir = tempfile::Builder::new()
            .prefix("flotilla-pki-")
            .tempdir()
            .map_err(Error::io("creating a temporary folder for a test PKI"))?;
        let write = |name: &str, pem: String| -> Result<PathBuf, Error> {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).map_err(Error::io(format!("writing {}", path.display())))?;
            Ok(path)
        };

        let ca_key = KeyPair::generate().map_err(certificate_error)?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(certificate_error)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "flotilla test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).map_err(certificate_error)?;
        let ca_path = write("ca.pem", ca.pem())?;

        let issue = |name: &str,
                     common_name: &str,
                     alt_names: Vec<String>,
                     usage: ExtendedKeyUsagePurpose|
         -> Result<IssuedCertificate, Error> {
            let key = KeyPair::generate().map_err(certificate_error)?;
            let mut params = CertificateParams::new(alt_names).map_err(certificate_error)?;
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            let cert = params
                .signed_by(&key, &ca, &ca_key)
                .map_err(certificate_error)?;
            Ok(IssuedCertificate {
                cert_path: write(&format!("{name}-cert.pem"), cert.pem())?,
                key_path: write(&format!("{name}-key.pem"), key.serialize_pem())?,
            })
        };
        let server = issue(
            "server",
            "localhost",
            vec!["localhost".to_string(), "127.0.0.1".to_string()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let client = issue(
            "client",
            "flotilla-test-client",
            vec!["flotilla-test-client".to_string()],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(TestPki {
            ca_path,
            server,
            client,
            _dir: dir,
        })
    }

    /// The CA certificate, PEM-encoded, on disk (trust it on both sides).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_path
    }

    /// The server certificate (for `localhost` and `127.0.0.1`) and its key.
    pub fn server(&self) -> &IssuedCertificate {
        &self.server
    }

    /// The client certificate and its key.
    pub fn client(&self) -> &IssuedCertificate {
        &self.client
    }
}
