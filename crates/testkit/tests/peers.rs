//! Tests of the testkit against the real peers: rsyslog, syslog-ng and nats-server are
//! installed (if needed), started, fed hand-written syslog frames over std sockets, and
//! their JSON output checked field by field.
#![allow(clippy::unwrap_used)]

use flotilla_testkit::{
    Error, NatsServer, Rsyslog, SyslogNg, SyslogNgSource, TestCertificate, ensure_peers_installed,
};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// The RFC 5424 section 6.5 example 3 message, with a BOM and a tab in MSG.
const RFC5424_EXAMPLE: &[u8] = b"<165>1 2003-10-11T22:14:15.003123+02:00 mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"] \xef\xbb\xbfAn application event\tlog entry";
const EXAMPLE_SD: &str = "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]";

fn send_udp(port: u16, payload: &[u8]) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket
        .send_to(payload, (Ipv4Addr::LOCALHOST, port))
        .unwrap();
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

/// Finds the one line whose `msg` contains `needle`.
fn line_with<'a>(lines: &'a [Value], needle: &str) -> &'a Value {
    let found: Vec<&Value> = lines
        .iter()
        .filter(|line| line["msg"].as_str().unwrap_or("").contains(needle))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one line with {needle:?} in {lines:#?}"
    );
    found[0]
}

fn assert_example_fields(line: &Value) {
    assert_eq!(line["pri"], 165);
    assert_eq!(line["facility"], 20);
    assert_eq!(line["severity"], 5);
    assert_eq!(line["timestamp"], "2003-10-11T22:14:15.003123+02:00");
    assert_eq!(line["hostname"], "mymachine.example.com");
    assert_eq!(line["app_name"], "evntslog");
    assert_eq!(line["procid"], "1234");
    assert_eq!(line["msgid"], "ID47");
    assert_eq!(line["structured_data"], EXAMPLE_SD);
    assert_eq!(
        line["rawmsg"].as_str().unwrap().as_bytes(),
        RFC5424_EXAMPLE,
        "rawmsg is the frame as sent"
    );
}

fn process_is_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// A by-hand RELP session: open, one syslog command, close; returns the server's
/// responses.
fn relp_send(port: u16, message: &[u8]) -> String {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let offers = b"relp_version=0\nrelp_software=flotilla-testkit\ncommands=syslog";
    let mut open = format!("1 open {} ", offers.len()).into_bytes();
    open.extend_from_slice(offers);
    open.push(b'\n');
    writer.write_all(&open).unwrap();
    // The open response has a multi-line body: read its header, then exactly DATALEN
    // bytes and the trailer.
    let mut transcript = String::new();
    let read_frame = |reader: &mut BufReader<TcpStream>| {
        let mut header = Vec::new();
        let mut spaces = 0;
        while spaces < 3 {
            let mut byte = [0u8];
            reader.read_exact(&mut byte).unwrap();
            if byte[0] == b' ' {
                spaces += 1;
            }
            if byte[0] == b'\n' {
                break; // "TXNR rsp 0\n": no data.
            }
            header.push(byte[0]);
        }
        let header = String::from_utf8(header).unwrap();
        let length: usize = header.trim().rsplit(' ').next().unwrap().parse().unwrap();
        let mut data = vec![0u8; length];
        reader.read_exact(&mut data).unwrap();
        if length > 0 {
            let mut trailer = [0u8];
            reader.read_exact(&mut trailer).unwrap();
            assert_eq!(trailer[0], b'\n');
        }
        format!("{} {}", header.trim(), String::from_utf8_lossy(&data))
    };
    transcript.push_str(&read_frame(&mut reader));
    transcript.push('\n');
    let mut command = format!("2 syslog {} ", message.len()).into_bytes();
    command.extend_from_slice(message);
    command.push(b'\n');
    writer.write_all(&command).unwrap();
    transcript.push_str(&read_frame(&mut reader));
    transcript.push('\n');
    writer.write_all(b"3 close 0\n").unwrap();
    let mut rest = String::new();
    let _ = reader.read_line(&mut rest);
    transcript.push_str(&rest);
    transcript
}

fn tls_send(port: u16, certificate: &TestCertificate, bytes: &[u8]) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(
            certificate.cert_der().to_vec(),
        ))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    tls.write_all(bytes).unwrap();
    tls.flush().unwrap();
    tls.conn.send_close_notify();
    tls.conn.complete_io(&mut tls.sock).unwrap();
}

#[test]
fn install_script_is_idempotent() {
    ensure_peers_installed().unwrap();
    // A second run of the script itself (not the cached result) succeeds and installs,
    // updates, downloads or unpacks nothing: it only checks and says the peers are ready
    // (judged on what it did, not on how long it took on a loaded machine).
    let out = std::process::Command::new("bash")
        .arg(flotilla_testkit::install::install_script())
        .env("FLOTILLA_PEERS_VERBOSE", "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    for work in ["installing", "unpacking", "apt-get update", "stopping it"] {
        assert!(
            !said.contains(work),
            "a second run did some work ({work}): {said}"
        );
    }
    assert!(said.contains("peers ready"), "{said}");
}

#[test]
fn rsyslog_receives_every_field_over_udp_tcp_and_relp() {
    let rsyslog = Rsyslog::builder()
        .udp()
        .tcp_octet_counted_or_lf()
        .relp()
        .start()
        .unwrap();
    let udp = rsyslog.udp_port().unwrap();
    let tcp = rsyslog.tcp_port().unwrap();
    let relp = rsyslog.relp_port().unwrap();
    assert!(udp != tcp && tcp != relp);

    send_udp(udp, RFC5424_EXAMPLE);
    let line = &rsyslog.wait_for_lines(1, WAIT).unwrap()[0];
    assert_example_fields(line);
    assert_eq!(line["inputname"], "imudp");
    assert_eq!(line["protocol_version"], "1");
    assert_eq!(line["fromhost_ip"], "127.0.0.1");
    // rsyslog keeps the BOM at the start of MSG.
    assert_eq!(line["msg"], "\u{feff}An application event\tlog entry");

    // TCP: one octet-counted frame, then one LF-framed frame, on one connection.
    let mut bytes = octet_counted(
        b"<34>1 2024-01-02T03:04:05Z host-a app-a 77 MID [a@32473 k=\"v\\]\"] octet counted",
    );
    bytes.extend_from_slice(b"<13>1 - - - - - - lf framed\n");
    send_tcp(tcp, &bytes);
    let lines = rsyslog.wait_for_lines(3, WAIT).unwrap();
    let counted = line_with(&lines, "octet counted");
    assert_eq!(counted["inputname"], "imptcp");
    assert_eq!(counted["pri"], 34);
    // rsyslog writes the timestamp as sent (Z stays Z).
    assert_eq!(counted["timestamp"], "2024-01-02T03:04:05Z");
    assert_eq!(counted["hostname"], "host-a");
    assert_eq!(counted["app_name"], "app-a");
    assert_eq!(counted["procid"], "77");
    assert_eq!(counted["msgid"], "MID");
    assert_eq!(counted["structured_data"], "[a@32473 k=\"v\\]\"]");
    assert_eq!(counted["msg"], "octet counted");
    // rsyslog shows NIL fields as "-".
    let nil = line_with(&lines, "lf framed");
    for field in ["hostname", "app_name", "procid", "msgid", "structured_data"] {
        assert_eq!(nil[field], "-", "{field} in {nil}");
    }
    assert_eq!(nil["rawmsg"], "<13>1 - - - - - - lf framed");

    // RELP by hand: open, syslog, close, each acknowledged.
    let transcript = relp_send(relp, b"<14>1 - relp-host relp-app - - - over relp");
    assert!(transcript.starts_with("1 rsp "), "{transcript}");
    assert!(transcript.contains("200 OK"), "{transcript}");
    assert!(transcript.contains("2 rsp 6 200 OK"), "{transcript}");
    let lines = rsyslog.wait_for_lines(4, WAIT).unwrap();
    let relp_line = line_with(&lines, "over relp");
    assert_eq!(relp_line["inputname"], "imrelp");
    assert_eq!(relp_line["hostname"], "relp-host");
    assert_eq!(relp_line["app_name"], "relp-app");
    rsyslog.stop().unwrap();
}

#[test]
fn rsyslog_receives_rfc3164_with_leading_space_kept() {
    let rsyslog = Rsyslog::builder()
        .tcp_octet_counted_or_lf()
        .start()
        .unwrap();
    send_tcp(
        rsyslog.tcp_port().unwrap(),
        b"<13>Oct  3 04:05:06 host tag[77]: bsd message\n",
    );
    let line = &rsyslog.wait_for_lines(1, WAIT).unwrap()[0];
    assert_eq!(line["protocol_version"], "0");
    assert_eq!(line["hostname"], "host");
    assert_eq!(line["app_name"], "tag");
    assert_eq!(line["procid"], "77");
    assert_eq!(line["msg"], " bsd message");
}

#[test]
fn rsyslog_receives_over_tls() {
    let certificate = TestCertificate::generate().unwrap();
    let rsyslog = Rsyslog::builder()
        .tls(certificate.cert_pem_path(), certificate.key_pem_path())
        .start()
        .unwrap();
    tls_send(
        rsyslog.tls_port().unwrap(),
        &certificate,
        &octet_counted(b"<86>1 2024-05-06T07:08:09.123456Z tls-host tls-app 9 TLS - secret hello"),
    );
    let line = &rsyslog.wait_for_lines(1, WAIT).unwrap()[0];
    assert_eq!(line["inputname"], "imtcp");
    assert_eq!(line["timestamp"], "2024-05-06T07:08:09.123456Z");
    assert_eq!(line["hostname"], "tls-host");
    assert_eq!(line["msgid"], "TLS");
    assert_eq!(line["msg"], "secret hello");
}

#[test]
fn rsyslog_restart_keeps_port_and_output_file() {
    let mut rsyslog = Rsyslog::builder()
        .tcp_octet_counted_or_lf()
        .start()
        .unwrap();
    let port = rsyslog.tcp_port().unwrap();
    let first_pid = rsyslog.pid().unwrap();
    send_tcp(port, &octet_counted(b"<13>1 - - - - - - before restart"));
    rsyslog.wait_for_lines(1, WAIT).unwrap();

    rsyslog.kill().unwrap();
    assert!(process_is_gone(first_pid));
    assert_eq!(rsyslog.pid(), None);
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());

    rsyslog.restart().unwrap();
    let second_pid = rsyslog.pid().unwrap();
    assert_ne!(first_pid, second_pid);
    assert_eq!(rsyslog.tcp_port(), Some(port));
    send_tcp(port, &octet_counted(b"<13>1 - - - - - - after restart"));
    let lines = rsyslog.wait_for_lines(2, WAIT).unwrap();
    line_with(&lines, "before restart");
    line_with(&lines, "after restart");

    // restart() while running kills and restarts too.
    rsyslog.restart().unwrap();
    assert!(process_is_gone(second_pid));
    send_tcp(port, &octet_counted(b"<13>1 - - - - - - third life"));
    assert_eq!(rsyslog.wait_for_lines(3, WAIT).unwrap().len(), 3);
}

#[test]
fn dropping_handles_leaves_no_process_even_on_panic() {
    let rsyslog = Rsyslog::builder().udp().start().unwrap();
    let syslog_ng = SyslogNg::builder().rfc5424_udp().start().unwrap();
    let nats = NatsServer::start().unwrap();
    let pids = [
        rsyslog.pid().unwrap(),
        syslog_ng.pid().unwrap(),
        nats.pid().unwrap(),
    ];
    let dir = rsyslog.dir().to_path_buf();
    for pid in pids {
        assert!(!process_is_gone(pid));
    }
    drop((rsyslog, syslog_ng, nats));
    for pid in pids {
        assert!(process_is_gone(pid), "process {pid} still exists");
    }
    assert!(!dir.exists(), "the temporary folder is deleted");

    let (sender, receiver) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let rsyslog = Rsyslog::builder().udp().start().unwrap();
        sender.send(rsyslog.pid().unwrap()).unwrap();
        panic!("a failing test");
    })
    .join();
    assert!(outcome.is_err());
    let pid = receiver.recv().unwrap();
    assert!(
        process_is_gone(pid),
        "rsyslogd {pid} leaked by a panicking test"
    );
}

#[test]
fn builders_without_inputs_are_errors() {
    assert!(matches!(Rsyslog::builder().start(), Err(Error::Config(_))));
    assert!(matches!(SyslogNg::builder().start(), Err(Error::Config(_))));
}

#[test]
fn syslog_ng_receives_every_variant() {
    let certificate = TestCertificate::generate().unwrap();
    let syslog_ng = SyslogNg::builder()
        .all_plain()
        .rfc5424_tls(certificate.cert_pem_path(), certificate.key_pem_path())
        .start()
        .unwrap();
    let port = |source| syslog_ng.port(source).unwrap();

    send_udp(port(SyslogNgSource::Rfc5424Udp), RFC5424_EXAMPLE);
    let line = &syslog_ng.wait_for_lines(1, WAIT).unwrap()[0];
    assert_example_fields(line);
    assert_eq!(line["inputname"], "rfc5424_udp");
    assert_eq!(line["fromhost_ip"], "127.0.0.1");
    // syslog-ng strips the BOM from MSG (rawmsg keeps it) and parses the SD.
    assert_eq!(line["msg"], "An application event\tlog entry");
    assert_eq!(
        line["sd"],
        json!({
            "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
            "examplePriority@32473": {"class": "high"}
        })
    );

    let mut frames = octet_counted(
        b"<34>1 2024-01-02T03:04:05.5Z host-a app-a 77 MID [a@32473 k=\"v\\]\"] octet counted",
    );
    frames.extend(octet_counted(b"<34>1 - - - - - - nil fields"));
    send_tcp(port(SyslogNgSource::Rfc5424TcpOctetCounted), &frames);
    send_tcp(
        port(SyslogNgSource::Rfc5424TcpLf),
        b"<35>1 2024-01-02T03:04:05Z host-b app-b - - - lf framed 5424\n",
    );
    send_udp(
        port(SyslogNgSource::Rfc3164Udp),
        b"<13>Oct  3 04:05:06 host tag[77]: bsd udp",
    );
    send_tcp(
        port(SyslogNgSource::Rfc3164TcpLf),
        b"<13>Oct 13 04:05:06 host2 tag2: bsd tcp\n",
    );
    tls_send(
        port(SyslogNgSource::Rfc5424Tls),
        &certificate,
        &octet_counted(b"<86>1 - tls-host tls-app - - - over tls"),
    );
    let lines = syslog_ng.wait_for_lines(7, WAIT).unwrap();

    let counted = line_with(&lines, "octet counted");
    assert_eq!(counted["inputname"], "rfc5424_tcp_octet_counted");
    assert_eq!(counted["timestamp"], "2024-01-02T03:04:05.500000+00:00");
    assert_eq!(counted["hostname"], "host-a");
    assert_eq!(counted["procid"], "77");
    assert_eq!(counted["msgid"], "MID");
    // The escaped `\]` in the PARAM-VALUE arrives unescaped in the parsed SD.
    assert_eq!(counted["sd"], json!({"a@32473": {"k": "v]"}}));
    // syslog-ng shows NIL fields as empty strings, a NIL hostname as the sender's IP.
    let nil = line_with(&lines, "nil fields");
    for field in ["app_name", "procid", "msgid", "structured_data"] {
        assert_eq!(nil[field], "", "{field} in {nil}");
    }
    assert_eq!(nil["hostname"], "127.0.0.1");

    let lf = line_with(&lines, "lf framed 5424");
    assert_eq!(lf["inputname"], "rfc5424_tcp_lf");
    assert_eq!(lf["pri"], 35);
    assert_eq!(lf["hostname"], "host-b");

    let bsd_udp = line_with(&lines, "bsd udp");
    assert_eq!(bsd_udp["inputname"], "rfc3164_udp");
    assert_eq!(bsd_udp["app_name"], "tag");
    assert_eq!(bsd_udp["procid"], "77");
    assert_eq!(bsd_udp["msg"], "bsd udp");
    assert_eq!(bsd_udp["legacy_msghdr"], "tag[77]: ");
    let bsd_tcp = line_with(&lines, "bsd tcp");
    assert_eq!(bsd_tcp["inputname"], "rfc3164_tcp_lf");
    assert_eq!(bsd_tcp["hostname"], "host2");
    assert_eq!(bsd_tcp["app_name"], "tag2");

    let tls = line_with(&lines, "over tls");
    assert_eq!(tls["inputname"], "rfc5424_tls");
    assert_eq!(tls["hostname"], "tls-host");
}

#[test]
fn nats_server_answers_ping_with_pong() {
    let nats = NatsServer::start().unwrap();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
    let stream = TcpStream::connect(nats.addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    assert!(info.starts_with("INFO {"), "{info}");
    writer
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
        .unwrap();
    let mut pong = String::new();
    reader.read_line(&mut pong).unwrap();
    assert_eq!(pong, "PONG\r\n");
    nats.stop().unwrap();
}

/// Asks `server` for the A records of `name` with one hand-made UDP query and returns
/// the addresses of the answer (RFC 1035 section 4).
fn query_a_records(server: std::net::SocketAddr, name: &str) -> Vec<Ipv4Addr> {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]); // root, QTYPE A, QCLASS IN
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket.send_to(&query, server).unwrap();
    let mut answer = [0u8; 512];
    let len = socket.recv(&mut answer).unwrap();
    let answer = &answer[..len];
    assert_eq!(&answer[..2], &[0x12, 0x34], "answer to our query id");
    assert_eq!(answer[3] & 0x0f, 0, "RCODE NOERROR");
    let count = u16::from_be_bytes([answer[6], answer[7]]);
    // Skip the header and the echoed question; answers use a compressed name pointer.
    let mut at = query.len();
    let mut addresses = Vec::new();
    for _ in 0..count {
        assert_eq!(answer[at] & 0xc0, 0xc0, "compressed owner name");
        let rtype = u16::from_be_bytes([answer[at + 2], answer[at + 3]]);
        let rdlength = usize::from(u16::from_be_bytes([answer[at + 10], answer[at + 11]]));
        let data = &answer[at + 12..at + 12 + rdlength];
        if rtype == 1 {
            addresses.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 12 + rdlength;
    }
    addresses.sort();
    addresses
}

#[test]
fn dnsmasq_serves_every_address_of_a_name_and_takes_new_records() {
    let records = [
        ("fleet.flotilla.test", "127.0.0.2".parse().unwrap()),
        ("fleet.flotilla.test", "127.0.0.3".parse().unwrap()),
        ("other.flotilla.test", "127.0.0.9".parse().unwrap()),
    ];
    let mut dns = flotilla_testkit::Dnsmasq::start(&records).unwrap();
    assert_eq!(
        query_a_records(dns.addr(), "fleet.flotilla.test"),
        vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)],
        "{}",
        dns.log()
    );
    assert_eq!(
        query_a_records(dns.addr(), "other.flotilla.test"),
        vec![Ipv4Addr::new(127, 0, 0, 9)]
    );
    let port = dns.port();
    dns.set_records(&[("fleet.flotilla.test", "127.0.0.4".parse().unwrap())])
        .unwrap();
    assert_eq!(dns.port(), port);
    assert_eq!(
        query_a_records(dns.addr(), "fleet.flotilla.test"),
        vec![Ipv4Addr::new(127, 0, 0, 4)]
    );
    assert!(
        dns.log().contains("fleet.flotilla.test"),
        "queries are logged"
    );
    assert!(
        flotilla_testkit::Dnsmasq::start(&[("bad name", "127.0.0.1".parse().unwrap())]).is_err()
    );
    dns.stop().unwrap();
}
