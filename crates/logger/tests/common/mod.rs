//! In-process collectors for the logger's tests: TCP (any framing), TLS, RELP,
//! UDP and Unix datagram receivers on loopback that parse every message strictly
//! (RFC 5424) or leniently and keep them for assertions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flotilla_syslog::{FrameDecoder, Framing, LenientDefaults, Message};

/// Messages received so far.
pub type Inbox = Arc<Mutex<Vec<Message>>>;

fn store(inbox: &Inbox, bytes: &[u8]) {
    let parsed = flotilla_syslog::parse_strict(bytes)
        .or_else(|_| flotilla_syslog::parse_lenient(bytes, &LenientDefaults::default()))
        .unwrap_or_else(|e| {
            panic!(
                "unparsable message {:?}: {e}",
                String::from_utf8_lossy(bytes)
            )
        });
    inbox.lock().unwrap().push(parsed.to_owned());
}

/// A running collector; dropping it stops it and closes its connections.
pub struct Collector {
    pub addr: SocketAddr,
    pub inbox: Inbox,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    pub fn count(&self) -> usize {
        self.inbox.lock().unwrap().len()
    }

    pub fn messages(&self) -> Vec<Message> {
        self.inbox.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived (panics after `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.count();
            if got >= n {
                return self.messages();
            }
            assert!(
                Instant::now() < deadline,
                "only {got} of {n} messages arrived"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How a stream collector reads its connections.
#[derive(Clone)]
pub enum StreamKind {
    Plain(Framing),
    Tls(Arc<rustls::ServerConfig>),
    Relp,
    /// RELP that answers `open` but never acknowledges a message.
    RelpNoAck,
}

/// A TCP-based collector on `addr` (use port 0 for a fresh one).
pub fn stream_collector(addr: &str, kind: StreamKind) -> Collector {
    let listener = TcpListener::bind(addr).unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let inbox: Inbox = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let thread = {
        let (inbox, stop, conns) = (inbox.clone(), stop.clone(), conns.clone());
        std::thread::spawn(move || {
            let mut readers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                        conns.lock().unwrap().push(s.try_clone().unwrap());
                        let (inbox, stop, kind) = (inbox.clone(), stop.clone(), kind.clone());
                        readers.push(std::thread::spawn(move || serve(s, kind, &inbox, &stop)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for r in readers {
                let _ = r.join();
            }
        })
    };
    Collector {
        addr,
        inbox,
        stop,
        conns,
        thread: Some(thread),
    }
}

fn read_some(s: &mut dyn Read, buf: &mut [u8], stop: &AtomicBool) -> Option<usize> {
    loop {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        match s.read(buf) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return None,
        }
    }
}

fn serve(mut s: TcpStream, kind: StreamKind, inbox: &Inbox, stop: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    match kind {
        StreamKind::Plain(framing) => {
            let mut dec = FrameDecoder::new(framing, 1 << 20);
            while let Some(n) = read_some(&mut s, &mut buf, stop) {
                dec.push(&buf[..n]);
                while let Some(f) = dec.next_frame() {
                    store(inbox, f.expect("valid frame"));
                }
            }
        }
        StreamKind::Tls(config) => {
            let conn = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, s);
            let mut dec = FrameDecoder::new(Framing::OctetCounting, 1 << 20);
            while let Some(n) = read_some(&mut tls, &mut buf, stop) {
                dec.push(&buf[..n]);
                while let Some(f) = dec.next_frame() {
                    store(inbox, f.expect("valid frame"));
                }
            }
        }
        StreamKind::Relp | StreamKind::RelpNoAck => {
            let config = flotilla_relp::ServerConfig {
                auto_ack: matches!(kind, StreamKind::Relp),
                ..flotilla_relp::ServerConfig::default()
            };
            let mut session = flotilla_relp::ServerSession::new(config).unwrap();
            let mut out = Vec::new();
            while let Some(n) = read_some(&mut s, &mut buf, stop) {
                if session.handle_input(&buf[..n]).is_err() {
                    return;
                }
                while let Some(ev) = session.poll_event() {
                    if let flotilla_relp::ServerEvent::Syslog { message, .. } = ev {
                        store(inbox, &message);
                    }
                }
                out.clear();
                session.poll_transmit(&mut out);
                if s.write_all(&out).is_err() {
                    return;
                }
            }
        }
    }
}

/// A UDP collector on loopback.
pub fn udp_collector() -> Collector {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    datagram_collector(addr, move |buf| sock.recv(buf))
}

/// A Unix datagram collector at `path`.
pub fn unix_collector(path: &std::path::Path) -> Collector {
    let sock = UnixDatagram::bind(path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    datagram_collector("127.0.0.1:9".parse().unwrap(), move |buf| sock.recv(buf))
}

fn datagram_collector(
    addr: SocketAddr,
    mut recv: impl FnMut(&mut [u8]) -> std::io::Result<usize> + Send + 'static,
) -> Collector {
    let inbox: Inbox = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (inbox, stop) = (inbox.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                if let Ok(n) = recv(&mut buf) {
                    store(&inbox, &buf[..n]);
                }
            }
        })
    };
    Collector {
        addr,
        inbox,
        stop,
        conns: Arc::default(),
        thread: Some(thread),
    }
}

/// A self-signed certificate for `localhost`, its PEM file, and a server config.
pub struct TlsFixture {
    pub dir: tempfile::TempDir,
    pub ca_path: std::path::PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn tls_fixture() -> TlsFixture {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, cert.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    TlsFixture {
        dir,
        ca_path,
        server: Arc::new(server),
    }
}

/// A rustls server config that requires a client certificate signed by the
/// PKI's CA, with the PKI's server certificate.
pub fn mutual_tls_server(pki: &flotilla_testkit::TestPki) -> Arc<rustls::ServerConfig> {
    let read_certs = |path: &std::path::Path| {
        let pem = std::fs::read(path).unwrap();
        rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(pki.ca_pem_path()) {
        roots.add(cert).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let key_pem = std::fs::read(pki.server().key_pem_path()).unwrap();
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .unwrap()
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(pki.server().cert_pem_path()), key)
        .unwrap();
    Arc::new(server)
}
