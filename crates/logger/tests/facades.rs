//! The `log` and `tracing` front doors, installed globally in this test binary
//! (one global logger per process), and the re-entrancy guard: rustls logs through
//! `log` from inside the sender thread, and those calls must be dropped, not sent
//! or recursed into.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::time::Duration;

use common::{StreamKind, stream_collector, tls_fixture};
use flotilla_logger::{Config, Severity};
use flotilla_syslog::SdParam;
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn log_and_tracing_fields_become_structured_data_and_self_logging_is_suppressed() {
    let fx = tls_fixture();
    let c = stream_collector("127.0.0.1:0", StreamKind::Tls(fx.server.clone()));
    let mut config = Config::with_collectors(&format!(
        "tls://{}?ca={}&name=localhost",
        c.addr,
        fx.ca_path.display()
    ))
    .unwrap();
    config.app_name = Some("facades".into());
    // Trace: rustls's own debug/trace logging reaches our `log` implementation
    // from the sender thread.
    config.max_level = log::LevelFilter::Trace;
    let logger = flotilla_logger::init(config).unwrap();

    log::warn!(user = 42, action = "login"; "user {} logged in", "ann");
    log::debug!("plain debug");
    let subscriber =
        tracing_subscriber::registry().with(flotilla_logger::TracingLayer::new(logger.clone()));
    tracing::subscriber::with_default(subscriber, || {
        tracing::error!(user = 7, ok = false, ratio = 0.5, "tracing {}", "event");
    });
    assert!(
        logger.flush(Duration::from_secs(10)),
        "{:?}",
        logger.stats()
    );

    let got = c.wait_for(4, Duration::from_secs(10));
    let got: Vec<_> = got
        .into_iter()
        .filter(|m| {
            !m.structured_data
                .iter()
                .flat_map(|e| e.params.iter())
                .any(|p| p.name == "target" && p.value.starts_with("rustls"))
        })
        .collect();
    // The boot message from init(), then ours, in order.
    assert_eq!(got[0].msg_id.as_deref(), Some("BOOT"));
    let by_text = |t: &str| {
        got.iter()
            .find(|m| m.msg == t.as_bytes())
            .unwrap_or_else(|| panic!("no {t:?} in {got:#?}"))
    };
    let w = by_text("user ann logged in");
    assert_eq!(w.severity, Severity::Warning);
    let params = &w.structured_data[0].params;
    assert_eq!(w.structured_data[0].id, "fields@32473");
    assert!(params.contains(&SdParam::new("user", "42")));
    assert!(params.contains(&SdParam::new("action", "login")));
    assert!(params.contains(&SdParam::new("target", "facades")));
    assert_eq!(by_text("plain debug").severity, Severity::Debug);
    let t = by_text("tracing event");
    assert_eq!(t.severity, Severity::Error);
    let params = &t.structured_data[0].params;
    assert!(params.contains(&SdParam::new("user", "7")));
    assert!(params.contains(&SdParam::new("ok", "false")));
    assert!(params.contains(&SdParam::new("ratio", "0.5")));

    // The in-test TLS *server* also logs through rustls from its own threads:
    // those messages are legitimate. What the sender thread's TLS *client* said
    // was dropped and counted instead (rustls logs every handshake at debug).
    let stats = logger.stats();
    assert!(stats.suppressed > 0, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    logger.shutdown(Duration::from_secs(2));
}
