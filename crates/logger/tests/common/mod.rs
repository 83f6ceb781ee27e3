//! The logger tests' collectors: log-service nodes (`flotilla_logd`) in this process, on
//! loopback, each with a temporary data directory. What a test inspects is what logd
//! stored, parsed strictly (RFC 5424) or else leniently.
//!
//! TCP (octet counting or LF framing, detected per frame), TLS, RELP and UDP are logd's
//! own listeners. Two collectors logd does not have are small feeders writing into a
//! logd store: a Unix datagram socket, and a RELP server that takes messages and never
//! acknowledges them (a stalled collector).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_logd::listen::{ListenOptions, ListenSpec};
use flotilla_logd::record::now_nanos;
use flotilla_logd::server::{Server, ServerConfig};
use flotilla_logd::{
    FLAG_TRUNCATED, Matcher, Query, Record, Source, Store, StoreConfig, Transport,
};
use flotilla_syslog::{Framing, LenientDefaults, Message};

/// Longest frame a collector keeps whole; a longer one fails the test.
const MAX_FRAME: usize = 1 << 20;

/// A running collector; dropping it stops it and closes its connections.
pub struct Collector {
    pub addr: SocketAddr,
    store: Store,
    /// Id of the first record this collector stored.
    first_id: u64,
    server: Option<Server>,
    feeder: Option<Feeder>,
    _dir: tempfile::TempDir,
}

impl Collector {
    /// Messages stored so far (durable and visible to queries).
    pub fn count(&self) -> usize {
        (self.store.stats().next_id - self.first_id) as usize
    }

    /// Every message stored so far, in arrival order. Panics on a message that was cut
    /// or does not parse.
    pub fn messages(&self) -> Vec<Message> {
        self.raw_frames()
            .iter()
            .map(|bytes| {
                flotilla_syslog::parse_strict(bytes)
                    .or_else(|_| flotilla_syslog::parse_lenient(bytes, &LenientDefaults::default()))
                    .unwrap_or_else(|e| {
                        panic!(
                            "unparsable message {:?}: {e}",
                            String::from_utf8_lossy(bytes)
                        )
                    })
                    .to_owned()
            })
            .collect()
    }

    /// Every frame stored so far, as received (framing removed), in arrival order.
    /// Panics on a frame that was cut.
    pub fn raw_frames(&self) -> Vec<Bytes> {
        let everything = Matcher::new(Query::default()).unwrap();
        let (records, _) = self.store.query(&everything, None).unwrap();
        records
            .into_iter()
            .map(|(_, r)| {
                assert_eq!(
                    r.flags & FLAG_TRUNCATED,
                    0,
                    "a frame longer than {MAX_FRAME} bytes: {:?}…",
                    String::from_utf8_lossy(&r.raw[..200.min(r.raw.len())])
                );
                r.raw
            })
            .collect()
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

    /// Waits until nobody is connected (every connection read to its end), up to
    /// `timeout`.
    pub fn wait_until_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Some(server) = &self.server
            && server
                .listener_stats()
                .iter()
                .any(|l| l.connections_open > 0)
        {
            assert!(Instant::now() < deadline, "connections still open");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the collector (closing its listener and every connection; what it
    /// accepted is made durable) and returns every message it stored.
    pub fn stop(mut self) -> Vec<Message> {
        self.shutdown();
        self.messages()
    }

    /// Like [`stop`](Self::stop), returning the frames as received.
    pub fn stop_frames(mut self) -> Vec<Bytes> {
        self.shutdown();
        self.raw_frames()
    }

    fn shutdown(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.shutdown();
        }
        if let Some(feeder) = self.feeder.take() {
            feeder.stop();
        }
        self.store.shutdown();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Certificate, key and (for client certificates) CA files of a TLS listener.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// How a stream collector reads its connections.
#[derive(Clone)]
pub enum StreamKind {
    /// Plain TCP. logd detects the framing of each frame; the framing asked for is
    /// checked by the tests themselves (an LF inside a message survives octet counting
    /// and becomes a space with LF framing).
    Plain(Framing),
    Tls(TlsFiles),
    Relp,
    /// RELP that answers `open` but never acknowledges a message.
    RelpNoAck,
}

fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("flotilla-logger-test-")
        .tempdir()
        .unwrap()
}

/// A logd node with one listener.
fn node(spec: ListenSpec) -> Collector {
    let dir = data_dir();
    let mut config = ServerConfig::new(dir.path());
    config.listen = vec![spec];
    config.http = None;
    config.worker_threads = 1;
    config.listen_options = ListenOptions {
        max_frame: MAX_FRAME,
        ..ListenOptions::default()
    };
    config.store.commit_interval = Duration::from_millis(2);
    let server = Server::start(config).unwrap();
    let (_, addr) = server.listener_addrs()[0];
    let store = server.store().clone();
    Collector {
        addr,
        first_id: store.stats().next_id,
        store,
        server: Some(server),
        feeder: None,
        _dir: dir,
    }
}

/// A logd store without listeners, for the feeders.
fn bare_store() -> (Store, tempfile::TempDir) {
    let dir = data_dir();
    let mut config = StoreConfig::new(dir.path());
    config.commit_interval = Duration::from_millis(2);
    (Store::open(config).unwrap(), dir)
}

/// A TCP-based collector on `addr` (use port 0 for a fresh one).
pub fn stream_collector(addr: &str, kind: StreamKind) -> Collector {
    let addr: SocketAddr = addr.parse().unwrap();
    match kind {
        StreamKind::Plain(_) => node(ListenSpec::Tcp(addr)),
        StreamKind::Relp => node(ListenSpec::Relp(addr)),
        StreamKind::Tls(files) => node(ListenSpec::Tls {
            addr,
            cert: files.cert,
            key: files.key,
            client_ca: files.client_ca,
        }),
        StreamKind::RelpNoAck => relp_no_ack(addr),
    }
}

/// A UDP collector on loopback.
pub fn udp_collector() -> Collector {
    node(ListenSpec::Udp("127.0.0.1:0".parse().unwrap()))
}

/// Hands one received frame to a store.
fn store_frame(store: &Store, frame: &[u8], transport: Transport, peer: SocketAddr) {
    let record = Record {
        received_at: now_nanos(),
        source: Source {
            transport,
            addr: peer,
        },
        flags: 0,
        raw: Bytes::copy_from_slice(frame),
    };
    store.ingest().submit_blocking(vec![record], false).unwrap();
}

/// A Unix datagram collector at `path` (logd has no Unix listener: a socket feeding a
/// logd store).
pub fn unix_collector(path: &std::path::Path) -> Collector {
    let (store, dir) = bare_store();
    let sock = UnixDatagram::bind(path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let peer = Source::LOCAL.addr;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    store_frame(&store, &buf[..n], Transport::Local, peer);
                }
            }
        })
    };
    Collector {
        addr: "127.0.0.1:9".parse().unwrap(),
        first_id: store.stats().next_id,
        store,
        server: None,
        feeder: Some(Feeder {
            stop,
            conns: Arc::default(),
            thread: Some(thread),
        }),
        _dir: dir,
    }
}

/// A feeder's thread, its stop flag and the connections it accepted.
struct Feeder {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl Feeder {
    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A RELP server that answers `open` and stores every message, but never acknowledges
/// one (logd acknowledges after the fsync; this one stands for a stalled collector).
fn relp_no_ack(addr: SocketAddr) -> Collector {
    let (store, dir) = bare_store();
    let listener = TcpListener::bind(addr).unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let thread = {
        let (store, stop, conns) = (store.clone(), stop.clone(), conns.clone());
        std::thread::spawn(move || {
            let mut readers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, peer)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                        conns.lock().unwrap().push(s.try_clone().unwrap());
                        let (store, stop) = (store.clone(), stop.clone());
                        readers.push(std::thread::spawn(move || {
                            serve_relp_no_ack(s, peer, &store, &stop)
                        }));
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
        first_id: store.stats().next_id,
        store,
        server: None,
        feeder: Some(Feeder {
            stop,
            conns,
            thread: Some(thread),
        }),
        _dir: dir,
    }
}

fn serve_relp_no_ack(mut s: TcpStream, peer: SocketAddr, store: &Store, stop: &AtomicBool) {
    let config = flotilla_relp::RelpServerConfig {
        auto_ack: false,
        ..flotilla_relp::RelpServerConfig::default()
    };
    let mut session = flotilla_relp::RelpServerSession::new(config).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let n = match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        };
        if session.handle_input(&buf[..n]).is_err() {
            return;
        }
        while let Some(ev) = session.poll_event() {
            if let flotilla_relp::RelpServerEvent::Syslog { message, .. } = ev {
                store_frame(store, &message, Transport::Relp, peer);
            }
        }
        out.clear();
        session.poll_transmit(&mut out);
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

/// A self-signed certificate for `localhost`: its PEM files, and the listener's files.
pub struct TlsFixture {
    pub dir: tempfile::TempDir,
    pub ca_path: PathBuf,
    pub server: TlsFiles,
}

pub fn tls_fixture() -> TlsFixture {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, cert.cert.pem()).unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    TlsFixture {
        server: TlsFiles {
            cert: ca_path.clone(),
            key: key_path,
            client_ca: None,
        },
        dir,
        ca_path,
    }
}

/// The listener's files for TLS that requires a client certificate signed by the PKI's
/// CA, with the PKI's server certificate.
pub fn mutual_tls_server(pki: &flotilla_testkit::TestPki) -> TlsFiles {
    TlsFiles {
        cert: pki.server().cert_pem_path().to_path_buf(),
        key: pki.server().key_pem_path().to_path_buf(),
        client_ca: Some(pki.ca_pem_path().to_path_buf()),
    }
}
