//! The four RFC 5424 section 6.5 examples: strict parsing with every field checked,
//! and emission of the equivalent `Message` giving the exact bytes.
#![allow(clippy::unwrap_used)] // tests may unwrap

use flotilla_syslog::{
    Facility, Format, Message, SdElement, Severity, Timestamp, emit_5424, parse_strict,
};

const EXAMPLE_1: &[u8] = b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8";
const EXAMPLE_2: &[u8] = b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nothing.";
const EXAMPLE_3: &[u8] = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry...";
const EXAMPLE_4: &[u8] = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]";

fn ts_2003_10_11() -> Timestamp {
    Timestamp::from_unix(1_065_910_455, 3_000_000).unwrap()
}

fn event_sd() -> SdElement {
    SdElement::new("exampleSDID@32473")
        .with_param("iut", "3")
        .with_param("eventSource", "Application")
        .with_param("eventID", "1011")
}

fn emitted(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    emit_5424(message, &mut out).unwrap();
    out
}

#[test]
fn example_1_no_structured_data() {
    let p = parse_strict(EXAMPLE_1).unwrap();
    assert_eq!(p.format, Format::Rfc5424);
    assert_eq!(p.facility, Facility::Auth);
    assert_eq!(p.severity, Severity::Critical);
    assert_eq!(p.timestamp, Some(ts_2003_10_11()));
    assert_eq!(p.hostname, Some("mymachine.example.com"));
    assert_eq!(p.app_name, Some("su"));
    assert_eq!(p.proc_id, None);
    assert_eq!(p.msg_id, Some("ID47"));
    assert!(p.structured_data.is_empty());
    assert!(p.msg_bom);
    assert_eq!(
        p.msg_str(),
        Some("'su root' failed for lonvick on /dev/pts/8")
    );

    let m = Message::new(
        Facility::Auth,
        Severity::Critical,
        "'su root' failed for lonvick on /dev/pts/8",
    )
    .with_timestamp(ts_2003_10_11())
    .with_hostname("mymachine.example.com")
    .with_app_name("su")
    .with_msg_id("ID47")
    .with_bom(true);
    assert_eq!(p.to_owned(), m);
    assert_eq!(emitted(&m), EXAMPLE_1);
}

#[test]
fn example_2_offset_and_microseconds() {
    let p = parse_strict(EXAMPLE_2).unwrap();
    assert_eq!(p.facility, Facility::Local4);
    assert_eq!(p.severity, Severity::Notice);
    let ts = p.timestamp.unwrap();
    assert_eq!(ts.unix_seconds(), 1_061_727_255);
    assert_eq!(ts.nanos(), 3_000);
    assert_eq!(ts.offset_minutes(), -420);
    assert_eq!(p.hostname, Some("192.0.2.1"));
    assert_eq!(p.app_name, Some("myproc"));
    assert_eq!(p.proc_id, Some("8710"));
    assert_eq!(p.msg_id, None);
    assert!(p.structured_data.is_empty());
    assert!(!p.msg_bom);
    assert_eq!(p.msg, b"%% It's time to make the do-nothing.");

    let m = Message::new(
        Facility::Local4,
        Severity::Notice,
        "%% It's time to make the do-nothing.",
    )
    .with_timestamp(
        Timestamp::from_unix(1_061_727_255, 3_000)
            .unwrap()
            .with_offset_minutes(-420)
            .unwrap(),
    )
    .with_hostname("192.0.2.1")
    .with_app_name("myproc")
    .with_proc_id("8710");
    assert_eq!(p.to_owned(), m);
    assert_eq!(emitted(&m), EXAMPLE_2);
}

#[test]
fn example_3_structured_data_and_msg() {
    let p = parse_strict(EXAMPLE_3).unwrap();
    assert_eq!(p.facility, Facility::Local4);
    assert_eq!(p.severity, Severity::Notice);
    assert_eq!(p.timestamp, Some(ts_2003_10_11()));
    assert_eq!(p.hostname, Some("mymachine.example.com"));
    assert_eq!(p.app_name, Some("evntslog"));
    assert_eq!(p.proc_id, None);
    assert_eq!(p.msg_id, Some("ID47"));
    let elements: Vec<_> = p.structured_data.iter().collect();
    assert_eq!(elements.len(), 1);
    assert_eq!(elements[0].id, "exampleSDID@32473");
    let params: Vec<_> = elements[0]
        .params()
        .map(|q| (q.name, q.value().into_owned()))
        .collect();
    assert_eq!(
        params,
        [
            ("iut", "3".to_string()),
            ("eventSource", "Application".to_string()),
            ("eventID", "1011".to_string())
        ]
    );
    assert_eq!(
        p.structured_data
            .get("exampleSDID@32473")
            .and_then(|e| e.param("eventID"))
            .map(|q| q.raw_value),
        Some("1011")
    );
    assert!(p.msg_bom);
    assert_eq!(p.msg_str(), Some("An application event log entry..."));

    let m = Message::new(
        Facility::Local4,
        Severity::Notice,
        "An application event log entry...",
    )
    .with_timestamp(ts_2003_10_11())
    .with_hostname("mymachine.example.com")
    .with_app_name("evntslog")
    .with_msg_id("ID47")
    .with_sd_element(event_sd())
    .with_bom(true);
    assert_eq!(p.to_owned(), m);
    assert_eq!(emitted(&m), EXAMPLE_3);
}

#[test]
fn example_4_structured_data_only() {
    let p = parse_strict(EXAMPLE_4).unwrap();
    assert_eq!(p.facility, Facility::Local4);
    assert_eq!(p.severity, Severity::Notice);
    assert_eq!(p.timestamp, Some(ts_2003_10_11()));
    assert_eq!(p.hostname, Some("mymachine.example.com"));
    assert_eq!(p.app_name, Some("evntslog"));
    assert_eq!(p.proc_id, None);
    assert_eq!(p.msg_id, Some("ID47"));
    let ids: Vec<_> = p.structured_data.iter().map(|e| e.id).collect();
    assert_eq!(ids, ["exampleSDID@32473", "examplePriority@32473"]);
    assert_eq!(
        p.structured_data
            .get("examplePriority@32473")
            .and_then(|e| e.param("class"))
            .map(|q| q.value()),
        Some("high".into())
    );
    assert!(p.msg.is_empty());
    assert!(!p.msg_bom);

    let m = Message::new(Facility::Local4, Severity::Notice, Vec::new())
        .with_timestamp(ts_2003_10_11())
        .with_hostname("mymachine.example.com")
        .with_app_name("evntslog")
        .with_msg_id("ID47")
        .with_sd_element(event_sd())
        .with_sd_element(SdElement::new("examplePriority@32473").with_param("class", "high"));
    assert_eq!(p.to_owned(), m);
    assert_eq!(emitted(&m), EXAMPLE_4);
}
