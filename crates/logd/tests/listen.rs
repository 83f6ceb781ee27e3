//! Listeners end to end in one process: real sockets on loopback into a real store in a
//! temporary directory; what is stored is read back with queries.

// Tests and benchmarks are shells: they drive real time, sockets and tasks.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap: a panic is a test failure.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use flotilla_logd::listen::{ListenOptions, ListenSpec, Listeners};
use flotilla_logd::query::{Matcher, Query};
use flotilla_logd::{Store, StoreConfig};
use flotilla_relp::{RelpClientConfig, RelpClientEvent, RelpClientSession};

struct Node {
    _dir: tempfile::TempDir,
    store: Store,
    listeners: Listeners,
    rt: tokio::runtime::Runtime,
}

fn start(max_frame: usize) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let specs =
        ListenSpec::parse_list("udp://127.0.0.1:0,tcp://127.0.0.1:0,relp://127.0.0.1:0").unwrap();
    let listeners = rt
        .block_on(Listeners::start(
            &specs,
            store.ingest(),
            ListenOptions {
                max_frame,
                ..ListenOptions::default()
            },
        ))
        .unwrap();
    Node {
        _dir: dir,
        store,
        listeners,
        rt,
    }
}

impl Node {
    fn all(&self) -> Vec<flotilla_logd::RecordJson> {
        let (records, _) = self
            .store
            .query(&Matcher::new(Query::default()).unwrap(), None)
            .unwrap();
        records
            .iter()
            .map(|(id, r)| {
                flotilla_logd::RecordJson::from_record(
                    *id,
                    r,
                    &flotilla_logd::store::defaults_for(r.received_at),
                )
            })
            .collect()
    }

    fn wait_for(&self, n: usize) -> Vec<flotilla_logd::RecordJson> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = self.all();
            if all.len() >= n || Instant::now() > deadline {
                return all;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.listeners.shutdown();
        self.store.shutdown();
        let _ = &self.rt;
    }
}

#[test]
fn tcp_framing_detected_per_frame_oversize_truncated_partial_kept() {
    let node = start(600);
    let addr = node.listeners.addr_of("tcp").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    let m1 = "<34>1 2024-01-01T00:00:00Z host-a app-a 1 ID1 [x@32473 k=\"v\"] octet counted";
    let big = format!("<13>1 - host-b big - - - {}", "x".repeat(1000));
    let mut out = Vec::new();
    out.extend_from_slice(format!("{} {m1}", m1.len()).as_bytes());
    out.extend_from_slice(b"<13>Jan  2 03:04:05 host-c tag[9]: lf framed\n");
    out.extend_from_slice(b"garbage \xff\xfe not syslog\n");
    out.extend_from_slice(format!("{} {big}", big.len()).as_bytes());
    out.extend_from_slice(b"2024-05-05 a line that starts with digits\n");
    out.extend_from_slice(b"<13>1 - host-d partial - - - never finished");
    s.write_all(&out).unwrap();
    drop(s);
    let got = node.wait_for(6);
    assert_eq!(got.len(), 6, "{got:#?}");
    assert_eq!(got[0].hostname.as_deref(), Some("host-a"));
    assert_eq!(got[0].msg, "octet counted");
    assert_eq!(got[0].structured_data["x@32473"]["k"], "v");
    assert_eq!(got[0].transport, "tcp");
    assert_eq!(got[1].format, "rfc3164");
    assert_eq!(got[1].app_name.as_deref(), Some("tag"));
    assert_eq!(got[2].format, "unparsed");
    assert!(got[2].raw_base64.is_some());
    assert!(got[3].truncated);
    assert_eq!(got[3].hostname.as_deref(), Some("host-b"));
    assert_eq!(got[4].msg, "2024-05-05 a line that starts with digits");
    assert!(!got[4].truncated);
    // The connection closed inside an LF frame: what arrived is kept.
    assert_eq!(got[5].msg, "never finished");
    let stats = node.listeners.snapshot();
    let tcp = stats.iter().find(|s| s.url.starts_with("tcp")).unwrap();
    assert_eq!(tcp.frames, 6);
    assert_eq!(tcp.oversize_truncated, 1);
    let st = node.store.stats();
    assert_eq!(st.records, 6);
    assert_eq!(st.unparsed, 2, "{st:?}");
    assert_eq!(st.truncated, 1);
}

#[test]
fn udp_datagrams_are_records_with_source() {
    let node = start(600);
    let addr = node.listeners.addr_of("udp").unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..50 {
        sock.send_to(format!("<14>1 - h app - - - udp {i}").as_bytes(), addr)
            .unwrap();
    }
    sock.send_to(&vec![b'y'; 2000], addr).unwrap();
    let got = node.wait_for(51);
    assert_eq!(got.len(), 51);
    assert_eq!(got[0].source, sock.local_addr().unwrap().to_string());
    assert_eq!(got[0].transport, "udp");
    assert!(got[50].truncated);
    assert_eq!(got[50].msg.len(), 600);
}

#[test]
fn relp_acknowledges_after_durable_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let mut listeners = rt
        .block_on(Listeners::start(
            &ListenSpec::parse_list("relp://127.0.0.1:0").unwrap(),
            store.ingest(),
            ListenOptions::default(),
        ))
        .unwrap();
    let addr = listeners.addr_of("relp").unwrap();
    let mut session = RelpClientSession::new(RelpClientConfig::default()).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    session.connect();
    let total = 2000u64;
    let mut sent = 0u64;
    let mut acked = 0u64;
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked < total && Instant::now() < deadline {
        while sent < total && session.is_open() && session.free_capacity() > 0 {
            session
                .send(format!("<13>1 - relp-host app - SEQ - seq={sent}").into_bytes())
                .unwrap();
            sent += 1;
        }
        out.clear();
        session.poll_transmit(&mut out);
        if !out.is_empty() {
            sock.write_all(&out).unwrap();
        }
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0, "logd closed the RELP connection");
        session.handle_input(&buf[..n]).unwrap();
        while let Some(ev) = session.poll_event() {
            if let RelpClientEvent::Acked { count, .. } = ev {
                acked += count;
            }
        }
    }
    assert_eq!(acked, total);
    // Everything acknowledged is durable: stop without a clean shutdown of the store's
    // segments (drop the listeners, reopen the directory in a second store after this
    // one's shutdown) and count.
    listeners.shutdown();
    store.shutdown();
    drop(store);
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let (records, _) = store
        .query(
            &Matcher::new(Query {
                msgid: vec!["SEQ".into()],
                ..Query::default()
            })
            .unwrap(),
            None,
        )
        .unwrap();
    assert_eq!(records.len() as u64, total);
    let st = listeners.snapshot();
    assert_eq!(st[0].relp_acked, total);
    store.shutdown();
}

#[test]
fn a_stalled_client_does_not_hold_up_others() {
    let node = start(64 * 1024);
    let addr = node.listeners.addr_of("tcp").unwrap();
    // 200 connections that each send half a frame and stay.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"500 <13>1 - stalled").unwrap();
            s
        })
        .collect();
    let mut s = TcpStream::connect(addr).unwrap();
    for i in 0..100 {
        s.write_all(format!("<13>1 - busy app - - - line {i}\n").as_bytes())
            .unwrap();
    }
    drop(s);
    let got = node.wait_for(100);
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|r| r.hostname.as_deref() == Some("busy")));
    drop(idle);
    // The stalled frames are kept, flagged truncated, when their connections close.
    let got = node.wait_for(300);
    assert_eq!(got.len(), 300);
    assert_eq!(got.iter().filter(|r| r.truncated).count(), 200);
}
