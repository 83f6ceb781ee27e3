//! Tests of the load tools against real receivers: syslog-ng's `loggen` into rsyslog as a
//! benchmark sink (TCP and UDP, RFC 5424 and RFC 3164, several connections), and
//! util-linux's `logger` into a JSON-writing rsyslog.
#![allow(clippy::unwrap_used)]

use flotilla_testkit::{
    Error, LoggenOptions, LoggenTransport, Logger, Rsyslog, run_loggen, run_logger, spawn_loggen,
};
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

#[test]
fn loggen_fills_the_rsyslog_sink() {
    let sink = Rsyslog::sink().udp().start().unwrap();
    assert_eq!(sink.line_count().unwrap(), 0);
    let config = std::fs::read_to_string(sink.config_path()).unwrap();
    assert!(config.contains("asyncWriting=\"on\""), "{config}");

    // RFC 5424, octet-counted, as fast as possible on two connections.
    let started = Instant::now();
    let report = run_loggen(&LoggenOptions {
        size: 300,
        connections: 2,
        count: Some(50_000),
        ..LoggenOptions::new(sink.tcp_addr())
    })
    .unwrap();
    assert_eq!(report.count, 100_000, "{}", report.output);
    assert_eq!(
        report.average_size,
        Some(304),
        "300 bytes plus the octet count"
    );
    assert!(report.rate > 0.0 && report.wall_rate() > 0.0, "{report:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(sink.wait_for_line_count(100_000, WAIT).unwrap(), 100_000);
    eprintln!(
        "loggen -> rsyslog sink: 100000 x 300 B in {:?} (loggen: {:.0} msg/s, wall {:.0} msg/s); all on disk after {:?}",
        report.elapsed,
        report.rate,
        report.wall_rate(),
        started.elapsed()
    );
    let lines = sink.lines().unwrap();
    assert!(lines[0].starts_with("<38>1 "), "{}", lines[0]);
    assert!(
        lines[0].contains(" localhost prg00000 1234 - - "),
        "{}",
        lines[0]
    );

    // RFC 3164 over TCP (LF framing), rate-limited, for a duration.
    let report = run_loggen(&LoggenOptions {
        rfc5424: false,
        size: 200,
        rate: Some(1000),
        count: None,
        duration_secs: Some(1),
        ..LoggenOptions::new(sink.tcp_addr())
    })
    .unwrap();
    assert!(report.count > 0 && report.count < 5000, "{report:?}");
    let total = 100_000 + report.count;
    assert_eq!(sink.wait_for_line_count(total, WAIT).unwrap(), total);

    // RFC 5424 over UDP, one message per datagram.
    let report = run_loggen(&LoggenOptions {
        transport: LoggenTransport::Udp,
        size: 200,
        rate: Some(2000),
        count: Some(200),
        ..LoggenOptions::new(local(sink.udp_port().unwrap()))
    })
    .unwrap();
    assert_eq!(report.count, 200);
    assert_eq!(
        sink.wait_for_line_count(total + 200, WAIT).unwrap(),
        total + 200
    );
    let last = sink.lines().unwrap().pop().unwrap();
    assert!(
        last.starts_with("<38>1 ") && !last.contains("200 <38>"),
        "{last}"
    );

    // Nothing more than what was sent shows up, and a timeout says how many there are.
    match sink.wait_for_line_count(total + 201, Duration::from_millis(1500)) {
        Err(Error::Timeout { got, .. }) => assert_eq!(got as u64, total + 200),
        other => panic!("expected a timeout, got {other:?}"),
    }
    sink.stop().unwrap();
}

#[test]
fn loggen_reports_a_target_that_is_not_there() {
    // A port nobody listens on (bound, then released).
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let result = run_loggen(&LoggenOptions::new(local(port)));
    match result {
        Err(Error::Program {
            program, reason, ..
        }) => {
            assert_eq!(program, "loggen");
            assert!(reason.contains("connect"), "{reason}");
        }
        other => panic!("expected a connection failure, got {other:?}"),
    }
    assert!(matches!(
        run_loggen(&LoggenOptions {
            size: 100,
            ..LoggenOptions::new(local(port))
        }),
        Err(Error::Config(_))
    ));
}

#[test]
fn loggen_is_killed_at_its_timeout_and_on_drop() {
    let sink = Rsyslog::sink().start().unwrap();
    let options = LoggenOptions {
        rate: Some(100),
        count: None,
        duration_secs: Some(60),
        timeout: Some(Duration::from_millis(800)),
        ..LoggenOptions::new(sink.tcp_addr())
    };
    let started = Instant::now();
    match run_loggen(&options) {
        Err(Error::Program { reason, .. }) => assert!(reason.contains("killed"), "{reason}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // A hang guard: the 800 ms timeout killed it rather than loggen running on.
    assert!(started.elapsed() < Duration::from_secs(20));

    let run = spawn_loggen(&options).unwrap();
    let pid = run.pid().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(run);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

fn line_with<'a>(lines: &'a [Value], needle: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["msg"].as_str().unwrap_or("").contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in {lines:#?}"))
}

#[test]
fn logger_sends_rfc5424_and_rfc3164() {
    let rsyslog = Rsyslog::builder()
        .udp()
        .tcp_octet_counted_or_lf()
        .start()
        .unwrap();
    let tcp = local(rsyslog.tcp_port().unwrap());
    let udp = local(rsyslog.udp_port().unwrap());

    Logger::tcp(tcp)
        .rfc5424()
        .octet_count()
        .tag("flotilla-test")
        .procid("4242")
        .msgid("MID7")
        .priority("local0.err")
        .sd_id("flotilla@32473")
        .sd_param("k=\"v\"")
        .send("octet counted from logger")
        .unwrap();
    Logger::tcp(tcp)
        .rfc5424_without("notq")
        .tag("lf-app")
        .send("lf framed from logger")
        .unwrap();
    Logger::udp(udp)
        .rfc3164()
        .tag("bsd-app")
        .send("bsd from logger")
        .unwrap();
    run_logger([
        "-n",
        "127.0.0.1",
        "-P",
        &udp.port().to_string(),
        "-d",
        "--rfc5424",
        "-t",
        "raw-args",
        "raw arguments",
    ])
    .unwrap();

    let lines = rsyslog.wait_for_lines(4, WAIT).unwrap();
    let counted = line_with(&lines, "octet counted from logger");
    assert_eq!(counted["inputname"], "imptcp");
    assert_eq!(counted["protocol_version"], "1");
    assert_eq!(counted["pri"], 16 * 8 + 3);
    assert_eq!(counted["app_name"], "flotilla-test");
    assert_eq!(counted["procid"], "4242");
    assert_eq!(counted["msgid"], "MID7");
    let sd = counted["structured_data"].as_str().unwrap();
    assert!(sd.contains("[timeQuality "), "{sd}");
    assert!(sd.contains("[flotilla@32473 k=\"v\"]"), "{sd}");
    let lf = line_with(&lines, "lf framed from logger");
    assert_eq!(lf["app_name"], "lf-app");
    assert_eq!(lf["structured_data"], "-", "notq: no timeQuality");
    let bsd = line_with(&lines, "bsd from logger");
    assert_eq!(bsd["protocol_version"], "0");
    assert_eq!(bsd["app_name"], "bsd-app");
    assert_eq!(line_with(&lines, "raw arguments")["app_name"], "raw-args");

    // Failures: a closed TCP port, no destination, a destination off loopback.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    match Logger::tcp(closed).send("nobody there") {
        Err(Error::Program { reason, output, .. }) => {
            assert!(reason.contains("exit status: 1"), "{reason}");
            assert!(output.contains("failed to connect"), "{output}");
        }
        other => panic!("expected a logger failure, got {other:?}"),
    }
    assert!(matches!(run_logger(["hello"]), Err(Error::Config(_))));
    assert!(matches!(
        Logger::udp("192.0.2.1:514".parse().unwrap()).send("x"),
        Err(Error::Config(_))
    ));
}
