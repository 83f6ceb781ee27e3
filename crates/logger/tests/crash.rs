//! The panic hook's crash report, in its own test binary (the hook is process-wide):
//! it goes out ahead of everything queued, and without waiting out a backoff.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::time::Duration;

use common::{StreamKind, stream_collector};
use flotilla_logger::{Config, Logger, Severity};
use flotilla_syslog::Framing;

#[test]
fn the_crash_report_jumps_the_queue_and_the_backoff() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = Config::with_collectors(&format!("tcp://127.0.0.1:{port}")).unwrap();
    cfg.app_name = Some("crashy".into());
    // A long backoff: without the urgent path the report would wait it out. The delay is
    // drawn with full jitter from [0, base]: an hour makes one shorter than this test's
    // few milliseconds practically impossible (with 20 s, 1 run in 40 drew less than the
    // collector's start-up, reconnected normally and sent the queue first).
    cfg.backoff.base = Duration::from_secs(3600);
    cfg.backoff.cap = Duration::from_secs(3600);
    cfg.crash_timeout = Duration::from_secs(5);
    let logger = Logger::start(cfg).unwrap();
    flotilla_logger::install_panic_hook(logger.clone());
    for i in 0..100 {
        logger.log(Severity::Notice, &format!("before {i}"), &[]);
    }
    // Wait for the first connection attempt to fail (nothing listens yet): the backoff
    // has started.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while logger.stats().failures == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first connection attempt never failed: {:?}",
            logger.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let collector = stream_collector(
        &format!("127.0.0.1:{port}"),
        StreamKind::Plain(Framing::OctetCounting),
    );
    let started = std::time::Instant::now();
    let joined = std::thread::Builder::new()
        .name("doomed".into())
        .spawn(|| panic!("on purpose: the reactor core is melting"))
        .unwrap()
        .join();
    assert!(joined.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the hook is bounded by crash_timeout"
    );
    let got = collector.wait_for(1, Duration::from_secs(10));
    let first = &got[0];
    assert_eq!(
        first.msg_id.as_deref(),
        Some("CRASH"),
        "the crash report goes first: {first:?}"
    );
    let text = String::from_utf8_lossy(&first.msg);
    assert!(
        text.contains("about to crash") && text.contains("reactor core is melting"),
        "{text}"
    );
    assert!(text.contains("'doomed'"), "{text}");
    logger.shutdown(Duration::from_secs(5));
}
