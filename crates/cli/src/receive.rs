//! A small syslog receiver: TCP (RFC 6587, framing detected per frame) and UDP
//! listeners on loopback or any address, each message parsed leniently.
//!
//! It backs `flotilla receive`, the demo's collectors and the benchmark's sink.
//! One broken connection or frame never affects another: a bad frame is reported
//! and skipped, a broken connection is closed alone. (The full log service,
//! `flotilla logd`, comes later and will replace this for storage and search.)

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_syslog::{FrameDecoder, Framing, LenientDefaults, ParsedMessage};
use serde::Serialize;

/// Largest frame accepted on TCP.
pub const MAX_FRAME: usize = 64 * 1024;

/// One received message, decoded for display and checks.
#[derive(Clone, Debug, Serialize)]
pub struct Received {
    /// Which listener got it (its address).
    pub listener: String,
    /// `rfc5424`, `rfc3164` or `unstructured`.
    pub format: String,
    /// Facility name.
    pub facility: String,
    /// Severity name.
    pub severity: String,
    /// RFC 3339 timestamp, if any.
    pub timestamp: Option<String>,
    /// HOSTNAME.
    pub hostname: Option<String>,
    /// APP-NAME.
    pub app_name: Option<String>,
    /// PROCID.
    pub proc_id: Option<String>,
    /// MSGID.
    pub msg_id: Option<String>,
    /// Structured data: `(id, [(name, value)])`.
    pub structured_data: Vec<(String, Vec<(String, String)>)>,
    /// MSG, lossily decoded.
    pub msg: String,
}

impl Received {
    fn from_parsed(listener: &str, m: &ParsedMessage<'_>) -> Self {
        let owned = m.to_owned();
        let timestamp = owned.timestamp.map(|t| {
            let mut out = Vec::new();
            t.write_rfc3339(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        });
        Self {
            listener: listener.to_owned(),
            format: format!("{:?}", m.format).to_lowercase(),
            facility: owned.facility.name().to_owned(),
            severity: owned.severity.name().to_owned(),
            timestamp,
            hostname: owned.hostname,
            app_name: owned.app_name,
            proc_id: owned.proc_id,
            msg_id: owned.msg_id,
            structured_data: owned
                .structured_data
                .into_iter()
                .map(|e| {
                    (
                        e.id,
                        e.params.into_iter().map(|p| (p.name, p.value)).collect(),
                    )
                })
                .collect(),
            msg: String::from_utf8_lossy(&owned.msg).into_owned(),
        }
    }

    /// The value of parameter `name` in element `id`, if present.
    pub fn param(&self, id: &str, name: &str) -> Option<&str> {
        self.structured_data
            .iter()
            .filter(|(eid, _)| eid == id)
            .flat_map(|(_, params)| params.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running TCP or UDP listener. Dropping it (or [`Listener::stop`]) closes the
/// listening socket and every connection it accepted.
pub struct Listener {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    threads: Vec<JoinHandle<()>>,
    /// Frames that could not be decoded or parsed.
    pub errors: Arc<AtomicU64>,
}

impl Listener {
    /// Listens on `url` (`tcp://ADDR` or `udp://ADDR`) and sends every message to `out`.
    pub fn start(url: &str, out: Sender<Received>) -> Result<Listener> {
        let (scheme, address) = url.split_once("://").with_context(|| {
            format!("listen address {url:?}: expected tcp://ADDR or udp://ADDR")
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(Mutex::new(Vec::new()));
        match scheme {
            "tcp" => {
                let listener =
                    TcpListener::bind(address).with_context(|| format!("binding tcp {address}"))?;
                let addr = listener.local_addr()?;
                listener.set_nonblocking(true)?;
                let thread = {
                    let stop = stop.clone();
                    let errors = errors.clone();
                    let connections = connections.clone();
                    std::thread::Builder::new()
                        .name(format!("receive-{addr}"))
                        .spawn(move || {
                            accept_loop(listener, addr, stop, errors, connections, out)
                        })?
                };
                Ok(Listener {
                    addr,
                    stop,
                    connections,
                    threads: vec![thread],
                    errors,
                })
            }
            "udp" => {
                let socket =
                    UdpSocket::bind(address).with_context(|| format!("binding udp {address}"))?;
                let addr = socket.local_addr()?;
                socket.set_read_timeout(Some(Duration::from_millis(50)))?;
                let thread = {
                    let stop = stop.clone();
                    let errors = errors.clone();
                    std::thread::Builder::new()
                        .name(format!("receive-{addr}"))
                        .spawn(move || udp_loop(socket, addr, stop, errors, out))?
                };
                Ok(Listener {
                    addr,
                    stop,
                    connections,
                    threads: vec![thread],
                    errors,
                })
            }
            other => bail!("listen scheme {other:?}: expected tcp or udp"),
        }
    }

    /// Closes the listener and all its connections, and waits for its threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(conns) = self.connections.lock() {
            for c in conns.iter() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    out: Sender<Received>,
) {
    let name = format!("tcp://{addr}");
    let mut readers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                if let (Ok(mut conns), Ok(clone)) = (connections.lock(), stream.try_clone()) {
                    conns.push(clone);
                }
                let (stop, errors, out, name) =
                    (stop.clone(), errors.clone(), out.clone(), name.clone());
                if let Ok(t) = std::thread::Builder::new()
                    .name("receive-conn".into())
                    .spawn(move || read_stream(stream, &name, &stop, &errors, &out))
                {
                    readers.push(t);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    drop(listener);
    for t in readers {
        let _ = t.join();
    }
}

fn read_stream(
    mut stream: TcpStream,
    name: &str,
    stop: &AtomicBool,
    errors: &AtomicU64,
    out: &Sender<Received>,
) {
    let mut decoder = FrameDecoder::new(Framing::Auto, MAX_FRAME);
    let mut buf = vec![0u8; 64 * 1024];
    let defaults = LenientDefaults::default();
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(_) => break,
        };
        decoder.push(buf.get(..n).unwrap_or(&[]));
        while let Some(frame) = decoder.next_frame() {
            deliver(frame, name, &defaults, errors, out);
        }
    }
    if let Some(frame) = decoder.finish() {
        deliver(frame, name, &defaults, errors, out);
    }
}

fn deliver(
    frame: Result<&[u8], flotilla_syslog::Error>,
    name: &str,
    defaults: &LenientDefaults,
    errors: &AtomicU64,
    out: &Sender<Received>,
) {
    match frame.and_then(|f| flotilla_syslog::parse_lenient(f, defaults)) {
        Ok(parsed) => {
            let _ = out.send(Received::from_parsed(name, &parsed));
        }
        Err(_) => {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn udp_loop(
    socket: UdpSocket,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    out: Sender<Received>,
) {
    let name = format!("udp://{addr}");
    let defaults = LenientDefaults::default();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) {
        match socket.recv(&mut buf) {
            Ok(n) => deliver(
                Ok(buf.get(..n).unwrap_or(&[])),
                &name,
                &defaults,
                &errors,
                &out,
            ),
            Err(_) => continue,
        }
    }
}
