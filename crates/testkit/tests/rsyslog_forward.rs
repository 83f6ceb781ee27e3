//! Tests of rsyslog as a forwarder: a real rsyslog receives on imptcp and forwards with
//! omfwd (TCP octet-counted, UDP) and omrelp to a second real rsyslog, which writes JSON
//! lines; RELP forwarding survives the target being killed and restarted.
#![allow(clippy::unwrap_used)]

use flotilla_testkit::{Error, Rsyslog, RsyslogForward};
use serde_json::Value;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

const RFC5424_EXAMPLE: &[u8] = b"<165>1 2003-10-11T22:14:15.003123+02:00 mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\"] An application event";

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn octet_counted(payload: &[u8]) -> Vec<u8> {
    let mut frame = format!("{} ", payload.len()).into_bytes();
    frame.extend_from_slice(payload);
    frame
}

fn send_tcp(port: u16, bytes: &[u8]) {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream.write_all(bytes).unwrap();
    stream.flush().unwrap();
}

fn with_input<'a>(lines: &'a [Value], input: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["inputname"] == input)
        .unwrap_or_else(|| panic!("no line from {input} in {lines:#?}"))
}

#[test]
fn forwarder_sends_rfc5424_over_tcp_udp_and_relp() {
    let receiver = Rsyslog::builder()
        .udp()
        .tcp_octet_counted_or_lf()
        .relp()
        .start()
        .unwrap();
    let forwarder = Rsyslog::builder()
        .tcp_octet_counted_or_lf()
        .forward_tcp(local(receiver.tcp_port().unwrap()))
        .forward_udp(local(receiver.udp_port().unwrap()))
        .forward_relp(local(receiver.relp_port().unwrap()))
        .start()
        .unwrap();
    assert_eq!(forwarder.forwards().len(), 3);
    assert!(matches!(forwarder.forwards()[2], RsyslogForward::Relp(_)));
    let config = std::fs::read_to_string(forwarder.config_path()).unwrap();
    assert!(config.contains("TCP_Framing=\"octet-counted\""), "{config}");
    assert!(
        config.contains("action.resumeRetryCount=\"-1\""),
        "{config}"
    );

    send_tcp(
        forwarder.tcp_port().unwrap(),
        &octet_counted(RFC5424_EXAMPLE),
    );
    // The forwarder itself still writes what it received.
    assert_eq!(forwarder.wait_for_lines(1, WAIT).unwrap().len(), 1);
    let lines = receiver.wait_for_lines(3, WAIT).unwrap();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for input in ["imptcp", "imudp", "imrelp"] {
        let line = with_input(&lines, input);
        assert_eq!(line["pri"], 165, "{line}");
        assert_eq!(line["timestamp"], "2003-10-11T22:14:15.003123+02:00");
        assert_eq!(line["hostname"], "mymachine.example.com");
        assert_eq!(line["app_name"], "evntslog");
        assert_eq!(line["procid"], "1234");
        assert_eq!(line["msgid"], "ID47");
        assert_eq!(
            line["structured_data"],
            "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\"]"
        );
        assert_eq!(line["protocol_version"], "1");
        // RSYSLOG_SyslogProtocol23Format ends with LF; the receiver drops it.
        assert_eq!(line["msg"], "An application event", "{line}");
    }
}

#[test]
fn relp_forwarding_resends_after_the_target_restarts() {
    let mut receiver = Rsyslog::builder().relp().start().unwrap();
    let forwarder = Rsyslog::builder()
        .tcp_octet_counted_or_lf()
        .forward_relp(local(receiver.relp_port().unwrap()))
        .start()
        .unwrap();
    let input = forwarder.tcp_port().unwrap();
    send_tcp(input, &octet_counted(b"<13>1 - host app - - - message 0"));
    receiver.wait_for_lines(1, WAIT).unwrap();

    receiver.kill().unwrap();
    let mut frames = Vec::new();
    for n in 1..=20 {
        frames.extend(octet_counted(
            format!("<13>1 - host app - - - message {n}").as_bytes(),
        ));
    }
    send_tcp(input, &frames);
    forwarder.wait_for_lines(21, WAIT).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    receiver.restart().unwrap();

    let lines = receiver
        .wait_for_lines(21, Duration::from_secs(20))
        .unwrap();
    for n in 0..=20 {
        let wanted = format!("message {n}");
        assert!(
            lines.iter().any(|line| line["msg"] == wanted.as_str()),
            "{wanted} missing from {lines:#?}\n--- forwarder log ---\n{}",
            forwarder.log()
        );
    }
}

#[test]
fn forwarding_off_loopback_is_refused() {
    let result = Rsyslog::builder()
        .udp()
        .forward_tcp("192.0.2.1:514".parse().unwrap())
        .start();
    assert!(matches!(result, Err(Error::Config(_))), "{result:?}");
}

#[test]
fn relp_forwarding_loses_nothing_when_the_target_dies_mid_stream() {
    const COUNT: usize = 3000;
    let mut receiver = Rsyslog::builder().relp().start().unwrap();
    let forwarder = Rsyslog::builder()
        .tcp_octet_counted_or_lf()
        .forward_relp(local(receiver.relp_port().unwrap()))
        .start()
        .unwrap();
    let mut frames = Vec::new();
    for n in 0..COUNT {
        frames.extend(octet_counted(
            format!("<13>1 - host app - - - stream {n:05}").as_bytes(),
        ));
    }
    send_tcp(forwarder.tcp_port().unwrap(), &frames);
    // Kill the target while the stream is arriving.
    receiver.wait_for_lines(1, WAIT).unwrap();
    receiver.kill().unwrap();
    let before = receiver.lines().unwrap().len();
    receiver.restart().unwrap();

    let lines = receiver
        .wait_for_lines(COUNT, Duration::from_secs(20))
        .unwrap();
    let mut seen: Vec<&str> = lines
        .iter()
        .filter_map(|line| line["msg"].as_str())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen.len(),
        COUNT,
        "{} lines before the kill, {} after the restart ({} distinct)",
        before,
        lines.len(),
        seen.len()
    );
    eprintln!(
        "relp mid-stream: {before} lines before the kill, {} in all, {} duplicates",
        lines.len(),
        lines.len() - COUNT
    );
}
