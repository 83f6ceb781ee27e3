//! `flotilla log` against collectors that misbehave: what it says it delivered, and its
//! exit code, are exactly what it can know. "Delivered" over TCP means taken by the
//! collector's TCP (every byte acknowledged by it), over RELP acknowledged by the
//! collector, over UDP sent without feedback; and a collector that resets the connection
//! after its TCP took messages may not have read them, so that run fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const TCP_KIND: &str = "taken by the collector's TCP (not acknowledged by the collector: \
                        plain syslog has no acknowledgements)";

fn log(args: &[&str]) -> (i32, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("log")
        .args(args)
        .output()
        .unwrap();
    assert!(out.stdout.is_empty(), "{out:?}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A collector on a thread of its own; stopped (and joined) when dropped.
struct Collector {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Accepts connections and runs `serve` on each, one at a time.
    fn start(serve: impl Fn(TcpStream, &AtomicBool) + Send + 'static) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                            serve(s, &stop);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Collector {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads until the peer closes (or the collector stops).
fn read_all(mut s: TcpStream, stop: &AtomicBool) {
    let mut buf = [0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// The number just before `what` in `text`.
fn number_before(text: &str, what: &str) -> u64 {
    let at = text
        .find(what)
        .unwrap_or_else(|| panic!("{what:?} in {text}"));
    text[..at]
        .trim_end()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number before {what:?} in {text}"))
}

#[test]
fn a_collector_that_reads_everything_took_every_message() {
    let collector = Collector::start(read_all);
    let (code, err) = log(&["--to", &collector.url("tcp"), "--count", "5000", "hello"]);
    assert_eq!(
        err,
        format!("flotilla log: 5000 delivered, 0 dropped; of the delivered: 5000 {TCP_KIND}\n")
    );
    assert_eq!(code, 0);
}

#[test]
fn a_collector_that_never_reads_is_not_said_to_have_taken_what_it_did_not() {
    let collector = Collector::start(|s, stop| {
        // Holds the connection, reads nothing.
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(s);
    });
    let (code, err) = log(&[
        "--to",
        &collector.url("tcp"),
        "--count",
        "200000",
        "--timeout",
        "2",
        "a message long enough to fill the collector's buffers before the count runs out",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("flotilla: error: not everything was delivered within 2 s: "),
        "{err}"
    );
    let delivered = number_before(&err, "of 200000 delivered, 0 dropped");
    let taken = number_before(&err, TCP_KIND);
    assert_eq!(delivered, taken, "{err}");
    assert!(delivered < 200_000, "{err}");
}

#[test]
fn a_collector_that_resets_the_connection_fails_the_run() {
    let collector = Collector::start(|mut s, _| {
        // Waits for the first bytes (so its TCP has taken them), then closes with the
        // rest unread: the kernel resets the connection.
        let mut one = [0u8; 1];
        let _ = s.read(&mut one);
        drop(s);
    });
    let (code, err) = log(&["--to", &collector.url("tcp"), "--count", "1", "hello"]);
    assert_eq!(
        err,
        format!(
            "flotilla: error: 1 delivered, 0 dropped, but the collector reset the connection \
             after its TCP took 1 of them, so it may not have read those; of the delivered: \
             1 {TCP_KIND}\n"
        )
    );
    assert_eq!(code, 1);
}

#[test]
fn a_relp_collector_that_never_acknowledges_delivers_nothing() {
    let collector = Collector::start(|mut s, stop| {
        let mut session = flotilla_relp::RelpServerSession::new(flotilla_relp::RelpServerConfig {
            auto_ack: false,
            ..flotilla_relp::RelpServerConfig::default()
        })
        .unwrap();
        let mut buf = [0u8; 65536];
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if session.handle_input(&buf[..n]).is_err() {
                        return;
                    }
                    // Only the answer to `open` is ever written: no message is acknowledged.
                    out.clear();
                    session.poll_transmit(&mut out);
                    if !out.is_empty() && s.write_all(&out).is_err() {
                        return;
                    }
                    while session.poll_event().is_some() {}
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    });
    let url = collector.url("relp");
    let (code, err) = log(&["--to", &url, "--count", "3", "--timeout", "1", "hello"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with(
            "flotilla: error: not everything was delivered within 1 s: 0 of 3 delivered, 0 dropped, "
        ),
        "{err}"
    );
    assert!(!err.contains("of the delivered"), "{err}");
}

#[test]
fn nothing_listening_is_a_refused_connection() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let (code, err) = log(&["--to", &url, "--timeout", "0.5", "lost"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with(
            "flotilla: error: not everything was delivered within 0.5 s: 0 of 1 delivered, 0 dropped, "
        ),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            " connection failures; last failure: {url}: Connection refused (os error 111)\n"
        )),
        "{err}"
    );
}

#[test]
fn an_unresolvable_name_says_so() {
    let (code, err) = log(&["--to", "tcp://nohost.invalid:514", "--timeout", "2", "lost"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with(
            "flotilla: error: not everything was delivered within 2 s: 0 of 1 delivered, 0 dropped, "
        ),
        "{err}"
    );
    assert!(
        err.contains("; last failure: tcp://nohost.invalid:514: the name in nohost.invalid:514 did not resolve"),
        "{err}"
    );
}

#[test]
fn an_oversize_datagram_is_reported_truncated() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("udp://{}", socket.local_addr().unwrap());
    let long = "x".repeat(5000);
    let (code, err) = log(&["--to", &url, &long]);
    assert_eq!(
        err,
        "flotilla log: 1 delivered, 0 dropped; of the delivered: 1 sent as datagrams, without \
         feedback, 1 of them truncated to the datagram size limit\n"
    );
    assert_eq!(code, 0);
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).unwrap();
    assert!(n < 5000, "the datagram was cut ({n} bytes)");
}
