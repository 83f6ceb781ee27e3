//! The logger against in-process collectors on loopback (log-service nodes, see
//! `common`): every transport, every field intact, failover, RELP across a collector
//! restart, drop accounting.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::time::Duration;

use common::{StreamKind, stream_collector, tls_fixture, udp_collector, unix_collector};
use flotilla_logger::{Config, DropPolicy, Logger, Severity};
use flotilla_syslog::{Facility, Framing, SdElement, SdParam};

const WAIT: Duration = Duration::from_secs(10);

fn config(spec: &str) -> Config {
    let mut c = Config::with_collectors(spec).unwrap();
    c.app_name = Some("svc".into());
    c.hostname = Some("host-a".into());
    c.facility = Facility::Local4;
    c.include_target = false;
    c
}

/// Waits until `done()` holds, polling every millisecond; panics naming `what` after
/// [`WAIT`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {WAIT:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn check_fields(m: &flotilla_syslog::Message, text: &str) {
    assert_eq!(m.facility, Facility::Local4);
    assert_eq!(m.severity, Severity::Warning);
    assert_eq!(m.hostname.as_deref(), Some("host-a"));
    assert_eq!(m.app_name.as_deref(), Some("svc"));
    assert_eq!(
        m.proc_id.as_deref(),
        Some(std::process::id().to_string().as_str())
    );
    assert!(m.timestamp.is_some());
    assert_eq!(m.msg, text.as_bytes());
    let sd = &m.structured_data[0];
    assert_eq!(sd.id, "fields@32473");
    assert_eq!(sd.params[0], SdParam::new("user", "ann \"the\" ]admin["));
    assert_eq!(sd.params[1], SdParam::new("path", "C:\\temp"));
}

fn send_and_check(spec: &str, collector: &common::Collector) {
    let logger = Logger::start(config(spec)).unwrap();
    for i in 0..100 {
        logger.log(
            Severity::Warning,
            &format!("message {i} with ünïcode"),
            &[("user", "ann \"the\" ]admin["), ("path", "C:\\temp")],
        );
    }
    assert!(logger.shutdown(WAIT), "not flushed: {:?}", logger.stats());
    let got = collector.wait_for(100, WAIT);
    assert_eq!(got.len(), 100);
    for (i, m) in got.iter().enumerate() {
        check_fields(m, &format!("message {i} with ünïcode"));
    }
    // Each message carries `[meta sequenceId="N"]`, N counting up per logger.
    let seqs: Vec<u32> = got
        .iter()
        .map(|m| {
            let meta = m.structured_data.iter().find(|e| e.id == "meta").unwrap();
            meta.params[0].value.parse().unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let stats = logger.stats();
    assert_eq!(stats.delivered, 100);
    assert_eq!(stats.dropped, 0);
}

/// Checks the framing on the wire (the collector takes either): a message with an LF
/// inside arrives whole, with its LF kept under octet counting (`lf_kept`), or turned
/// into a space under LF framing.
fn check_framing(spec: &str, collector: &common::Collector, lf_kept: bool) {
    let before = collector.count();
    let logger = Logger::start(config(spec)).unwrap();
    logger.log(Severity::Warning, "two\nlines", &[]);
    assert!(logger.shutdown(WAIT), "not flushed: {:?}", logger.stats());
    let got = collector.wait_for(before + 1, WAIT);
    assert_eq!(got.len(), before + 1);
    let want: &[u8] = if lf_kept { b"two\nlines" } else { b"two lines" };
    assert_eq!(got[before].msg, want);
}

#[test]
fn tcp_octet_counting_keeps_every_field() {
    let c = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::OctetCounting));
    send_and_check(&format!("tcp://{}", c.addr), &c);
    check_framing(&format!("tcp://{}", c.addr), &c, true);
}

#[test]
fn tcp_lf_framing_keeps_every_field() {
    let c = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::LineFeed));
    send_and_check(&format!("tcp://{}?framing=lf", c.addr), &c);
    check_framing(&format!("tcp://{}?framing=lf", c.addr), &c, false);
}

#[test]
fn udp_keeps_every_field() {
    let c = udp_collector();
    send_and_check(&format!("udp://{}", c.addr), &c);
}

#[test]
fn unix_datagram_keeps_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let c = unix_collector(&path);
    send_and_check(&format!("unix://{}", path.display()), &c);
}

#[test]
fn tls_keeps_every_field() {
    let fx = tls_fixture();
    let c = stream_collector("127.0.0.1:0", StreamKind::Tls(fx.server.clone()));
    let spec = format!(
        "tls://{}?ca={}&name=localhost",
        c.addr,
        fx.ca_path.display()
    );
    send_and_check(&spec, &c);
    // RFC 5425: octet counting.
    check_framing(&spec, &c, true);
}

#[test]
fn relp_keeps_every_field() {
    let c = stream_collector("127.0.0.1:0", StreamKind::Relp);
    send_and_check(&format!("relp://{}", c.addr), &c);
}

#[test]
fn tls_with_an_untrusted_certificate_is_never_sent_to() {
    let fx = tls_fixture();
    let other = tls_fixture(); // a different self-signed CA
    let c = stream_collector("127.0.0.1:0", StreamKind::Tls(fx.server.clone()));
    let spec = format!(
        "tls://{}?ca={}&name=localhost",
        c.addr,
        other.ca_path.display()
    );
    let logger = Logger::start(config(&spec)).unwrap();
    logger.log(Severity::Warning, "secret", &[]);
    assert!(!logger.flush(Duration::from_millis(500)));
    assert!(logger.stats().failures > 0);
    assert_eq!(c.count(), 0);
    logger.shutdown(Duration::from_millis(100));
}

#[test]
fn rfc3164_format_over_tcp() {
    let c = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::Auto));
    let logger =
        Logger::start(config(&format!("tcp://{}?format=3164&framing=lf", c.addr))).unwrap();
    logger.log(Severity::Error, "disk on fire", &[]);
    assert!(logger.shutdown(WAIT));
    let got = c.wait_for(1, WAIT);
    assert_eq!(got[0].app_name.as_deref(), Some("svc"));
    assert_eq!(got[0].severity, Severity::Error);
    assert!(String::from_utf8_lossy(&got[0].msg).contains("disk on fire"));
}

#[test]
fn fails_over_when_the_collector_in_use_stops() {
    let a = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::OctetCounting));
    let b = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::OctetCounting));
    let logger = Logger::start(config(&format!("tcp://{},tcp://{}", a.addr, b.addr))).unwrap();
    for i in 0..50 {
        logger.log(Severity::Warning, &format!("before {i}"), &[]);
    }
    assert!(logger.flush(WAIT));
    // Written means sent, not yet stored: wait until the 50 are stored somewhere.
    let deadline = std::time::Instant::now() + WAIT;
    while a.count() + b.count() < 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} + {} of 50 messages stored",
            a.count(),
            b.count()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (in_use, other) = if a.count() > 0 { (a, b) } else { (b, a) };
    assert_eq!(in_use.count(), 50);
    in_use.stop();
    // The first writes after the stop may vanish into the dead socket (plain TCP
    // has no acknowledgements); keep logging until the other collector hears us.
    let mut i = 0;
    while other.count() == 0 {
        logger.log(Severity::Warning, &format!("after {i}"), &[]);
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
        assert!(i < 2_000, "no failover: {:?}", logger.stats());
    }
    for j in 0..50 {
        logger.log(Severity::Warning, &format!("settled {j}"), &[]);
    }
    assert!(logger.shutdown(WAIT));
    let got = other.wait_for(50, WAIT);
    assert!(got.iter().any(|m| m.msg == b"settled 49"));
    assert!(logger.stats().failures >= 1);
}

#[test]
fn relp_loses_nothing_across_a_collector_restart() {
    let first = stream_collector("127.0.0.1:0", StreamKind::Relp);
    let addr = first.addr;
    let mut cfg = config(&format!("relp://{addr}"));
    cfg.backoff.base = Duration::from_millis(20);
    cfg.backoff.cap = Duration::from_millis(100);
    cfg.queue_capacity = 100_000;
    let logger = Logger::start(cfg).unwrap();
    let total = 20_000;
    for i in 0..total / 2 {
        logger.log(Severity::Warning, &i.to_string(), &[]);
    }
    // Once the stream is going (the first collector has stored some of it), stop the
    // collector in the middle of it.
    wait_until("the first collector to store a message", || {
        first.count() > 0
    });
    let failures = logger.stats().failures;
    // Everything the first collector stored (and so could have acknowledged).
    let before = first.stop();
    for i in total / 2..total {
        logger.log(Severity::Warning, &i.to_string(), &[]);
    }
    // The logger finds the collector gone and is refused while nothing listens: two
    // failures (the lost connection and a reconnect, or two reconnects).
    wait_until(
        "the logger to fail twice while the collector is down",
        || logger.stats().failures >= failures + 2,
    );
    let second = stream_collector(&addr.to_string(), StreamKind::Relp);
    assert!(
        logger.shutdown(Duration::from_secs(30)),
        "{:?}",
        logger.stats()
    );
    let mut seen = vec![false; total];
    for m in before.iter().chain(second.messages().iter()) {
        let n: usize = String::from_utf8_lossy(&m.msg).parse().unwrap();
        seen[n] = true;
    }
    let missing: Vec<usize> = (0..total).filter(|&n| !seen[n]).collect();
    assert!(
        missing.is_empty(),
        "{} missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(logger.stats().dropped, 0);
}

#[test]
fn a_full_queue_drops_counts_and_reports_later() {
    // Nothing listens yet: messages pile up in a queue of 10.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config(&format!("tcp://127.0.0.1:{port}"));
    cfg.queue_capacity = 10;
    cfg.drop_policy = DropPolicy::DropOldest;
    cfg.backoff.base = Duration::from_millis(10);
    cfg.backoff.cap = Duration::from_millis(50);
    let logger = Logger::start(cfg).unwrap();
    for i in 0..1000 {
        logger.log(Severity::Warning, &format!("m{i}"), &[]);
    }
    let stats = logger.stats();
    // Only the queue (10) and what the sender already took out of it survive.
    assert!(stats.dropped > 0, "{stats:?}");
    let c = stream_collector(
        &format!("127.0.0.1:{port}"),
        StreamKind::Plain(Framing::OctetCounting),
    );
    assert!(logger.shutdown(WAIT), "{:?}", logger.stats());
    let got = c.wait_for(2, WAIT);
    // The newest message survived (drop-oldest)...
    assert!(got.iter().any(|m| m.msg == b"m999"));
    // ...and one message says how many were lost.
    let notice = got
        .iter()
        .find(|m| m.msg_id.as_deref() == Some("DROPPED"))
        .expect("a DROPPED notice");
    let count: u64 = notice.structured_data[0].params[0].value.parse().unwrap();
    assert_eq!(count, logger.stats().dropped);
}

#[test]
fn drop_newest_keeps_the_oldest() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config(&format!("tcp://127.0.0.1:{port}"));
    cfg.queue_capacity = 5;
    cfg.drop_policy = DropPolicy::DropNewest;
    cfg.backoff.base = Duration::from_millis(10);
    let logger = Logger::start(cfg).unwrap();
    for i in 0..100 {
        logger.log(Severity::Warning, &format!("m{i}"), &[]);
    }
    let c = stream_collector(
        &format!("127.0.0.1:{port}"),
        StreamKind::Plain(Framing::OctetCounting),
    );
    assert!(logger.shutdown(WAIT));
    let got = c.wait_for(2, WAIT);
    assert!(got.iter().any(|m| m.msg == b"m0"));
    assert!(!got.iter().any(|m| m.msg == b"m99"));
}

#[test]
fn explicit_structured_data_msgid_and_clockless_host() {
    let c = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::OctetCounting));
    let mut cfg = config(&format!("tcp://{}", c.addr));
    cfg.use_clock = false;
    let logger = Logger::start(cfg).unwrap();
    logger.log_message(
        Severity::Notice,
        Some("ID47"),
        "hello",
        vec![SdElement {
            id: "origin".into(),
            params: vec![SdParam::new("ip", "10.0.0.1")],
        }],
    );
    assert!(logger.shutdown(WAIT));
    let m = &c.wait_for(1, WAIT)[0];
    assert_eq!(m.timestamp, None, "clockless hosts send NILVALUE");
    assert_eq!(m.msg_id.as_deref(), Some("ID47"));
    assert_eq!(m.structured_data[0].id, "origin");
}

#[test]
fn heartbeat_is_sent_periodically() {
    let c = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::OctetCounting));
    let mut cfg = config(&format!("tcp://{}", c.addr));
    cfg.heartbeat = Some(Duration::from_millis(100));
    let logger = Logger::start(cfg).unwrap();
    let got = c.wait_for(2, WAIT);
    assert!(got.iter().all(|m| m.msg_id.as_deref() == Some("HEARTBEAT")));
    assert_eq!(got[0].structured_data[0].id, "heartbeat@32473");
    logger.shutdown(WAIT);
}

#[test]
fn boot_message_carries_the_ip_configuration() {
    let c = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::OctetCounting));
    let mut cfg = config(&format!("tcp://{}", c.addr));
    cfg.app_version = Some("1.2.3".into());
    let logger = Logger::start(cfg).unwrap();
    logger.boot();
    assert!(logger.shutdown(WAIT));
    let m = &c.wait_for(1, WAIT)[0];
    assert_eq!(m.msg_id.as_deref(), Some("BOOT"));
    let text = String::from_utf8_lossy(&m.msg);
    assert!(
        text.starts_with("booted and awake: svc 1.2.3 on host-a"),
        "{text}"
    );
    assert!(text.contains("lo=127.0.0.1/8"), "{text}");
    let boot = m
        .structured_data
        .iter()
        .find(|e| e.id == "boot@32473")
        .unwrap();
    assert!(boot.params.contains(&SdParam::new("version", "1.2.3")));
    assert!(
        boot.params
            .contains(&SdParam::new("pid", std::process::id().to_string()))
    );
    let ip = m
        .structured_data
        .iter()
        .find(|e| e.id == "ip@32473")
        .unwrap();
    assert!(ip.params.contains(&SdParam::new("lo", "127.0.0.1/8")));
}

#[test]
fn caught_errors_carry_their_cause_chain() {
    let c = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::OctetCounting));
    let logger = Logger::start(config(&format!("tcp://{}", c.addr))).unwrap();
    let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "no such table");
    let outer = Wrapped(inner);
    logger.error("loading failed", &outer);
    assert!(logger.shutdown(WAIT));
    let m = &c.wait_for(1, WAIT)[0];
    assert_eq!(m.severity, Severity::Error);
    assert_eq!(m.msg_id.as_deref(), Some("ERROR"));
    assert_eq!(
        String::from_utf8_lossy(&m.msg),
        "loading failed: wrapped: no such table: no such table"
    );
    let e = &m.structured_data[0];
    assert_eq!(e.id, "error@32473");
    assert_eq!(e.params.last().unwrap().value, "no such table");
}

#[derive(Debug)]
struct Wrapped(std::io::Error);
impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wrapped: {}", self.0)
    }
}
impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn start_up_mistakes_are_loud() {
    assert!(Logger::start(Config::default()).is_err());
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = Logger::start(
        Config::with_collectors(&format!("tls://127.0.0.1:1?ca={}", empty.display())).unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

#[test]
fn logging_never_blocks_when_no_collector_answers() {
    // A listener that accepts and never reads: the kernel buffers fill, writes
    // would block; the application thread must not.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(&format!("tcp://{}", l.local_addr().unwrap()));
    cfg.queue_capacity = 1000;
    cfg.write_timeout = Duration::from_millis(200);
    let logger = Logger::start(cfg).unwrap();
    let big = "x".repeat(4000);
    for _ in 0..20_000 {
        logger.log(Severity::Warning, &big, &[]);
    }
    // 80 MB offered to a collector that reads nothing: most must be dropped, and
    // the loop finished (it would hang forever if a log call blocked).
    let stats = logger.stats();
    assert!(stats.dropped > 0, "{stats:?}");
    assert!(stats.enqueued >= 20_000, "{stats:?}");
    logger.shutdown(Duration::from_millis(300));
    drop(l);
}

#[test]
fn failing_over_from_relp_to_tcp_strands_no_unacknowledged_message() {
    // A RELP collector that takes messages but never acknowledges them...
    let relp = stream_collector("127.0.0.1:0", StreamKind::RelpNoAck);
    // ...and a TCP collector that is not up yet.
    let tcp_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config(&format!("relp://{},tcp://127.0.0.1:{tcp_port}", relp.addr));
    cfg.backoff.base = Duration::from_millis(10);
    cfg.backoff.cap = Duration::from_millis(50);
    let logger = Logger::start(cfg).unwrap();
    for i in 0..10 {
        logger.log(Severity::Warning, &format!("held {i}"), &[]);
    }
    relp.wait_for(10, WAIT);
    assert!(
        !logger.flush(Duration::from_millis(100)),
        "nothing was acknowledged yet"
    );
    let tcp = stream_collector(
        &format!("127.0.0.1:{tcp_port}"),
        StreamKind::Plain(Framing::OctetCounting),
    );
    relp.stop();
    assert!(logger.flush(WAIT), "{:?}", logger.stats());
    let got = tcp.wait_for(10, WAIT);
    for i in 0..10 {
        assert!(
            got.iter().any(|m| m.msg == format!("held {i}").as_bytes()),
            "held {i} lost"
        );
    }
    logger.shutdown(WAIT);
}

#[test]
fn an_oversize_message_over_relp_is_cut_not_stuck() {
    let c = stream_collector("127.0.0.1:0", StreamKind::Relp);
    let logger = Logger::start(config(&format!("relp://{}", c.addr))).unwrap();
    let huge = "z".repeat(300 * 1024);
    logger.log(Severity::Warning, &huge, &[]);
    logger.log(Severity::Warning, "after", &[]);
    assert!(logger.shutdown(WAIT), "{:?}", logger.stats());
    let got = c.wait_for(2, WAIT);
    assert!(got[0].msg.len() < huge.len() && got[0].msg.len() > 100 * 1024);
    assert_eq!(got[1].msg, b"after");
}

#[test]
fn a_relp_collector_that_stops_acknowledging_is_failed_over() {
    let stalled = stream_collector("127.0.0.1:0", StreamKind::RelpNoAck);
    let tcp_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config(&format!(
        "relp://{},tcp://127.0.0.1:{tcp_port}",
        stalled.addr
    ));
    cfg.write_timeout = Duration::from_millis(300);
    cfg.backoff.base = Duration::from_millis(10);
    let logger = Logger::start(cfg).unwrap();
    for i in 0..10 {
        logger.log(Severity::Warning, &format!("stalled {i}"), &[]);
    }
    stalled.wait_for(10, WAIT);
    // The RELP collector keeps its connection open and says nothing: after the
    // acknowledgement timeout the logger gives up on it and moves on.
    let tcp = stream_collector(
        &format!("127.0.0.1:{tcp_port}"),
        StreamKind::Plain(Framing::OctetCounting),
    );
    assert!(logger.flush(WAIT), "{:?}", logger.stats());
    let got = tcp.wait_for(10, WAIT);
    assert!((0..10).all(|i| {
        got.iter()
            .any(|m| m.msg == format!("stalled {i}").as_bytes())
    }));
    logger.shutdown(WAIT);
}

/// CPU time (user + system) of this process, from /proc/self/stat, in seconds.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn an_outage_with_a_full_queue_does_not_spin_the_sender() {
    // Nobody listens; the queue is full after a few messages; the backoff is long.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config(&format!("tcp://127.0.0.1:{port}"));
    cfg.queue_capacity = 8;
    cfg.backoff.base = Duration::from_secs(2);
    cfg.backoff.cap = Duration::from_secs(2);
    let logger = Logger::start(cfg).unwrap();
    for i in 0..5_000 {
        logger.log(Severity::Warning, &format!("m{i}"), &[]);
    }
    // A busy loop would burn about a second of CPU here; waiting burns nothing.
    let before = process_cpu_seconds();
    for i in 0..100 {
        logger.log(Severity::Warning, &format!("late {i}"), &[]);
        std::thread::sleep(Duration::from_millis(10));
    }
    let used = process_cpu_seconds() - before;
    assert!(
        used < 0.5,
        "the sender used {used:.2} s of CPU in a 1 s outage"
    );
    logger.shutdown(Duration::from_millis(10));
}

#[test]
fn refused_messages_do_not_make_flush_return_early() {
    let c = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::OctetCounting));
    let mut cfg = config(&format!("tcp://{}", c.addr));
    cfg.queue_capacity = 4;
    cfg.drop_policy = DropPolicy::DropNewest;
    let logger = Logger::start(cfg).unwrap();
    for i in 0..1000 {
        logger.log(Severity::Warning, &format!("m{i}"), &[]);
    }
    assert!(logger.flush(WAIT));
    let stats = logger.stats();
    // Everything accepted was delivered; the refused ones were never "enqueued".
    assert_eq!(stats.enqueued + stats.dropped, 1000, "{stats:?}");
    let got = c.wait_for(stats.enqueued as usize, WAIT);
    assert!(got.len() as u64 >= stats.enqueued);
    logger.shutdown(WAIT);
}

/// A resolver for which every `*.hang` name blocks until `release` is set (like a
/// name server that never answers), and which counts its calls.
fn hanging_resolver(
    release: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    calls: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> flotilla_logger::Resolver {
    use std::sync::atomic::Ordering;
    let (release, calls) = (release.clone(), calls.clone());
    flotilla_logger::Resolver::custom(move |address| {
        calls.fetch_add(1, Ordering::SeqCst);
        if address
            .split(':')
            .next()
            .is_some_and(|h| h.ends_with(".hang"))
        {
            while !release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            return Err(std::io::Error::other("released"));
        }
        flotilla_logger::Resolver::system().resolve(address)
    })
}

#[test]
fn a_hung_name_lookup_fails_over_to_the_next_collector_within_connect_timeout() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let release = std::sync::Arc::new(AtomicBool::new(false));
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let c = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::Auto));
    // Three collectors whose names never resolve, one that works: whichever the
    // random pick starts with, the working one is reached after at most three
    // abandoned lookups of connect_timeout each.
    let spec = format!(
        "tcp://a.hang:601,tcp://b.hang:601,tcp://c.hang:601,tcp://{}",
        c.addr
    );
    let mut cfg = config(&spec);
    cfg.connect_timeout = Duration::from_millis(300);
    cfg.resolver = hanging_resolver(&release, &calls);
    let logger = Logger::start(cfg).unwrap();
    logger.log(Severity::Warning, "after the hung lookups", &[]);
    // The hung lookups never return until released at the end: delivering at all means
    // each was abandoned at its connect deadline and the sender moved on.
    assert!(logger.flush(WAIT), "{:?}", logger.stats());
    let stats = logger.stats();
    assert_eq!(stats.delivered, 1, "{stats:?}");
    assert!(stats.failures <= 3, "{stats:?}");
    assert_eq!(c.wait_for(1, WAIT)[0].msg, b"after the hung lookups");
    // The IP literal never went through the resolver: only the hung names did.
    assert_eq!(calls.load(Ordering::SeqCst) as u64, stats.failures);
    logger.shutdown(Duration::from_secs(1));
    release.store(true, Ordering::SeqCst);
}

#[test]
fn a_hung_name_lookup_costs_one_thread_not_one_per_attempt() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let release = std::sync::Arc::new(AtomicBool::new(false));
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let mut cfg = config("tcp://only.hang:601");
    cfg.connect_timeout = Duration::from_millis(50);
    cfg.backoff.base = Duration::from_millis(10);
    cfg.backoff.cap = Duration::from_millis(20);
    cfg.resolver = hanging_resolver(&release, &calls);
    let logger = Logger::start(cfg).unwrap();
    logger.log(Severity::Warning, "never sent", &[]);
    assert!(!logger.flush(Duration::from_millis(800)));
    let stats = logger.stats();
    // The sender kept trying (it was never stuck in the lookup)...
    assert!(stats.failures >= 4, "{stats:?}");
    // ...and every attempt waited for the same lookup.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The crash path is not held up either: shutdown returns promptly.
    let start = std::time::Instant::now();
    logger.shutdown(Duration::from_millis(100));
    // Generous: a sender stuck in the lookup would never return before the release.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    release.store(true, Ordering::SeqCst);
}

#[test]
fn a_collector_named_localhost_is_resolved_and_reached() {
    let c = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::Auto));
    let spec = format!("tcp://localhost:{}", c.addr.port());
    send_and_check(&spec, &c);
}

#[test]
fn mutual_tls_sends_the_client_certificate_and_a_refusal_is_a_failure() {
    let pki = flotilla_testkit::TestPki::generate().unwrap();
    let c = stream_collector(
        "127.0.0.1:0",
        StreamKind::Tls(common::mutual_tls_server(&pki)),
    );
    let base = format!(
        "tls://{}?ca={}&name=localhost",
        c.addr,
        pki.ca_pem_path().display()
    );
    // Without a certificate: the TLS 1.3 server refuses after our handshake is
    // done; that must be a failed connection, nothing counted as delivered.
    let logger = Logger::start(config(&base)).unwrap();
    logger.log(Severity::Warning, "secret", &[]);
    assert!(!logger.flush(Duration::from_millis(800)));
    let stats = logger.stats();
    assert!(stats.failures > 0, "{stats:?}");
    assert_eq!(stats.delivered, 0, "{stats:?}");
    assert_eq!(stats.connects, 0, "{stats:?}");
    logger.shutdown(Duration::from_millis(100));
    assert_eq!(c.count(), 0);
    // With the client certificate: everything arrives intact.
    let spec = format!(
        "{base}&cert={}&key={}",
        pki.client().cert_pem_path().display(),
        pki.client().key_pem_path().display()
    );
    send_and_check(&spec, &c);
}
