//! TLS on client links (`tls://` front-ends): which certificate authorities to trust and
//! which name the front-ends' certificates must carry.

use std::sync::Arc;

use rustls_pki_types::ServerName;

use crate::error::ClientError;

/// TLS settings of a client: every front-end of the list is reached over TLS and must
/// present a certificate for [`server_name`](Self::server_name) signed by one of the
/// trusted authorities.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the certificate authorities of `ca_pem` (PEM, one or more certificates) and
    /// expects certificates for `server_name` (a DNS name or an IP address).
    pub fn from_ca_pem(ca_pem: &[u8], server_name: &str) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidConfig {
            setting: "TLS",
            reason,
        };
        let config = flotilla_link::stream::client_config_from_ca_pem(ca_pem)
            .map_err(|error| invalid(error.0))?;
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|error| invalid(format!("server name {server_name:?}: {error}")))?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// [`from_ca_pem`](Self::from_ca_pem) with the PEM read from `path`.
    pub fn from_ca_file(path: &std::path::Path, server_name: &str) -> Result<Self, ClientError> {
        let pem = std::fs::read(path).map_err(|error| ClientError::InvalidConfig {
            setting: "TLS",
            reason: format!("reading {}: {error}", path.display()),
        })?;
        Self::from_ca_pem(&pem, server_name)
    }

    /// The name front-end certificates must carry.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }

    /// Runs the TLS handshake over `stream`.
    pub(crate) async fn connect(
        &self,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<flotilla_link::stream::LinkStream> {
        let stream = self
            .connector
            .connect(self.server_name.clone(), stream)
            .await?;
        Ok(flotilla_link::stream::LinkStream::ClientTls(Box::new(
            stream,
        )))
    }
}
