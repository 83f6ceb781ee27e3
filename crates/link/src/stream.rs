//! A link's byte stream, plain TCP or TLS over it, split into the read half its reader
//! loop owns and the write half its writer task owns: what the client SDK (`tls://`
//! front-ends) and the game server (`--tls-cert`) read and write through.

use std::future::Future as _;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// An open link: plain TCP, or TLS (either side) over it.
#[derive(Debug)]
pub enum LinkStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS, this side the client.
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS, this side the server.
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl LinkStream {
    /// Splits the link into its read and write halves.
    pub fn split(self) -> (LinkReader, LinkWriter) {
        match self {
            Self::Plain(stream) => {
                let (reader, writer) = stream.into_split();
                (LinkReader::Plain(reader), LinkWriter::Plain(writer))
            }
            Self::ClientTls(stream) => {
                let (reader, writer) = tokio::io::split(*stream);
                (LinkReader::ClientTls(reader), LinkWriter::ClientTls(writer))
            }
            Self::ServerTls(stream) => {
                let (reader, writer) = tokio::io::split(*stream);
                (LinkReader::ServerTls(reader), LinkWriter::ServerTls(writer))
            }
        }
    }
}

/// The read half of a [`LinkStream`].
#[derive(Debug)]
pub enum LinkReader {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// TLS, this side the client.
    ClientTls(ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS, this side the server.
    ServerTls(ReadHalf<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl LinkReader {
    /// Reads into `buffer`'s spare capacity; 0 at the end of the stream.
    pub async fn read_buf(&mut self, buffer: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Plain(half) => half.read_buf(buffer).await,
            Self::ClientTls(half) => half.read_buf(buffer).await,
            Self::ServerTls(half) => half.read_buf(buffer).await,
        }
    }

    /// Reads what is already waiting (decrypted, for TLS) without waiting: `WouldBlock`
    /// when nothing is. A reader woken by its keep-alive timer calls it first, so that
    /// bytes that arrived while the process was starved are not taken for silence.
    pub fn try_read_buf(&mut self, buffer: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Plain(half) => half.try_read_buf(buffer),
            Self::ClientTls(half) => poll_once(half, buffer),
            Self::ServerTls(half) => poll_once(half, buffer),
        }
    }
}

/// Polls one read of `reader` once, with a waker that does nothing.
fn poll_once<R: AsyncRead + Unpin>(reader: &mut R, buffer: &mut BytesMut) -> io::Result<usize> {
    let mut read = std::pin::pin!(reader.read_buf(buffer));
    match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// The write half of a [`LinkStream`].
#[derive(Debug)]
pub enum LinkWriter {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS, this side the client.
    ClientTls(WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS, this side the server.
    ServerTls(WriteHalf<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncWrite for LinkWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(half) => Pin::new(half).poll_write(cx, buf),
            Self::ClientTls(half) => Pin::new(half).poll_write(cx, buf),
            Self::ServerTls(half) => Pin::new(half).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(half) => Pin::new(half).poll_flush(cx),
            Self::ClientTls(half) => Pin::new(half).poll_flush(cx),
            Self::ServerTls(half) => Pin::new(half).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(half) => Pin::new(half).poll_shutdown(cx),
            Self::ClientTls(half) => Pin::new(half).poll_shutdown(cx),
            Self::ServerTls(half) => Pin::new(half).poll_shutdown(cx),
        }
    }
}

/// Moves the plaintext rustls holds (`available` bytes, from
/// `IoState::plaintext_bytes_to_read`) to the end of `out`, through `reader`.
pub fn take_plaintext(
    mut reader: rustls::Reader<'_>,
    available: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    use std::io::Read as _;
    if available == 0 {
        return Ok(());
    }
    let start = out.len();
    out.resize(start + available, 0);
    let read = reader.read(out.get_mut(start..).unwrap_or_default());
    out.truncate(start + *read.as_ref().unwrap_or(&0));
    read.map(drop)
}

/// Why TLS settings could not be built from their PEM files.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsSetupError(pub String);

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|error| TlsSetupError(format!("{}: {error}", path.display())))
}

/// A TLS server configuration from a certificate chain and a private key (PEM files):
/// the one reading of them for the front-end's client listeners and the game server.
pub fn server_config_from_pem(
    cert: &Path,
    key: &Path,
) -> Result<rustls::ServerConfig, TlsSetupError> {
    let certs = rustls_pemfile::certs(&mut &read_pem(cert)?[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsSetupError(format!("{}: {error}", cert.display())))?;
    if certs.is_empty() {
        return Err(TlsSetupError(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let private_key = rustls_pemfile::private_key(&mut &read_pem(key)?[..])
        .map_err(|error| TlsSetupError(format!("{}: {error}", key.display())))?
        .ok_or_else(|| TlsSetupError(format!("{}: no private key found", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| TlsSetupError(error.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, private_key)
    .map_err(|error| TlsSetupError(format!("certificate and key: {error}")))?;
    // Session tickets would cost every connection a post-handshake message and state;
    // links reconnect rarely (failover), a full handshake then is fine.
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A TLS client configuration trusting the certificate authorities of a PEM file.
pub fn client_config_from_ca_pem(ca_pem: &[u8]) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        let cert = cert.map_err(|error| TlsSetupError(format!("CA certificate: {error}")))?;
        roots
            .add(cert)
            .map_err(|error| TlsSetupError(format!("CA certificate: {error}")))?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError("no CA certificate found".to_owned()));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| TlsSetupError(error.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Reads `path` and trusts the authorities in it ([`client_config_from_ca_pem`]).
pub fn client_config_from_ca_file(path: &Path) -> Result<rustls::ClientConfig, TlsSetupError> {
    client_config_from_ca_pem(&read_pem(path)?)
}
