//! The `tracing` layer adds the fields of the spans an event is in: one
//! `span@32473` element with the span path and `SPAN.FIELD` parameters, escaped
//! on the wire per RFC 5424 and within its name-length limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::time::Duration;

use common::{StreamKind, stream_collector};
use flotilla_logger::{Config, Logger, MAX_SPANS, TracingLayer};
use flotilla_syslog::{Framing, Message, SdElement, SdParam};
use tracing_subscriber::layer::SubscriberExt;

/// Runs `body` with a `TracingLayer` feeding a logger that sends to a loopback
/// collector (a logd node); returns every frame it stored, as raw text.
fn capture(body: impl FnOnce()) -> Vec<String> {
    let collector = stream_collector("127.0.0.1:0", StreamKind::Plain(Framing::LineFeed));
    let addr = collector.addr;
    let mut config = Config::with_collectors(&format!("tcp://{addr}?framing=lf")).unwrap();
    config.include_target = false;
    config.hostname = Some("h".into());
    config.app_name = Some("spans".into());
    let logger = Logger::start(config).unwrap();
    let subscriber = tracing_subscriber::registry().with(TracingLayer::new(logger.clone()));
    tracing::subscriber::with_default(subscriber, body);
    assert!(
        logger.shutdown(Duration::from_secs(10)),
        "{:?}",
        logger.stats()
    );
    // The logger's connection is closed: once the collector read it to its end, stop
    // it (everything made durable) and read what it stored.
    collector.wait_until_idle(Duration::from_secs(10));
    collector
        .stop_frames()
        .into_iter()
        .map(|frame| String::from_utf8(frame.to_vec()).unwrap())
        .collect()
}

fn parse(frame: &str) -> Message {
    flotilla_syslog::parse_strict(frame.as_bytes())
        .unwrap_or_else(|e| panic!("{frame:?}: {e}"))
        .to_owned()
}

fn element<'m>(m: &'m Message, id: &str) -> Option<&'m SdElement> {
    m.structured_data.iter().find(|e| e.id == id)
}

#[test]
fn an_event_inside_nested_spans_carries_their_fields() {
    let frames = capture(|| {
        tracing::info!("outside");
        let request = tracing::info_span!("request", id = 7, user = "ann");
        let _r = request.enter();
        tracing::info!("in request");
        let db = tracing::info_span!("db", table = "users", rows = tracing::field::Empty);
        db.record("rows", 3);
        let _d = db.enter();
        tracing::warn!(took_ms = 12, "query done");
    });
    assert_eq!(frames.len(), 3, "{frames:#?}");

    let outside = parse(&frames[0]);
    // Only the sequence id every RFC 5424 message carries.
    assert_eq!(outside.structured_data.len(), 1, "{outside:?}");
    assert_eq!(outside.structured_data[0].id, "meta", "{outside:?}");

    let in_request = parse(&frames[1]);
    let span = element(&in_request, "span@32473").expect("span element");
    assert_eq!(
        span.params,
        vec![
            SdParam::new("path", "request"),
            SdParam::new("request.id", "7"),
            SdParam::new("request.user", "ann"),
        ]
    );

    let done = parse(&frames[2]);
    assert_eq!(done.msg, b"query done");
    // The event's own fields first, then the spans', outermost first.
    assert_eq!(done.structured_data[0].id, "fields@32473");
    assert_eq!(
        done.structured_data[0].params,
        vec![SdParam::new("took_ms", "12")]
    );
    let span = element(&done, "span@32473").expect("span element");
    assert_eq!(
        span.params,
        vec![
            SdParam::new("path", "request/db"),
            SdParam::new("request.id", "7"),
            SdParam::new("request.user", "ann"),
            SdParam::new("db.table", "users"),
            SdParam::new("db.rows", "3"),
        ]
    );
}

#[test]
fn span_values_are_escaped_per_rfc5424() {
    let nasty = r#"a"b\c]d"#;
    let frames = capture(|| {
        let span = tracing::info_span!("io", path = nasty, note = tracing::field::Empty);
        span.record("note", "first");
        span.record("note", r#"then "quoted""#);
        let _s = span.enter();
        tracing::info!("read");
    });
    assert_eq!(frames.len(), 1, "{frames:#?}");
    // On the wire: `"`, `\` and `]` escaped with a backslash.
    assert!(
        frames[0]
            .contains(r#"[span@32473 path="io" io.path="a\"b\\c\]d" io.note="then \"quoted\""]"#),
        "{}",
        frames[0]
    );
    // And parsed back to the original values; a later record replaced the first.
    let m = parse(&frames[0]);
    let span = element(&m, "span@32473").unwrap();
    assert_eq!(span.params[1], SdParam::new("io.path", nasty));
    assert_eq!(span.params[2], SdParam::new("io.note", r#"then "quoted""#));
}

#[test]
fn long_names_and_deep_nesting_stay_within_limits() {
    let frames = capture(|| {
        let long = tracing::info_span!(
            "a_span_name_far_longer_than_thirty_two_characters",
            request_id = 1
        );
        let _l = long.enter();
        let mut guards = Vec::new();
        for _ in 0..MAX_SPANS + 4 {
            let span = tracing::info_span!("level", depth = 1);
            guards.push(span.entered());
        }
        tracing::info!("deep");
        drop(guards);
        tracing::info!("shallow");
    });
    assert_eq!(frames.len(), 2, "{frames:#?}");
    let deep = parse(&frames[0]);
    let span = element(&deep, "span@32473").unwrap();
    // Only the innermost MAX_SPANS spans.
    assert_eq!(span.params[0].value, vec!["level"; MAX_SPANS].join("/"));
    assert_eq!(span.params.len(), 1 + MAX_SPANS);
    let shallow = parse(&frames[1]);
    let span = element(&shallow, "span@32473").unwrap();
    let name = &span.params[1].name;
    // The field name kept whole, the span name cut: 32 characters in all.
    assert_eq!(name.len(), 32, "{name}");
    assert!(name.ends_with(".request_id"), "{name}");
    assert!(name.starts_with("a_span_name_far"), "{name}");
    assert_eq!(span.params[1].value, "1");
}
