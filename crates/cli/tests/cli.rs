//! The `flotilla` binary end to end: `flotilla log` into a real rsyslog over RELP
//! with structured data and a count, loud errors for bad settings, `flotilla receive` (a
//! logd in the foreground) printing what `flotilla log` sent, and the roles' boot messages
//! in an in-process logd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_testkit::{Rsyslog, ensure_peers_installed};
use serde_json::Value;

fn flotilla() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
}

/// Runs `cmd` and checks that it succeeded (its stderr in the failure message).
fn succeed(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A child process that is killed and reaped when dropped, so a failing test leaves no
/// process behind.
struct Running(Option<std::process::Child>);

impl Running {
    fn spawn(command: &mut Command) -> Self {
        Self(Some(command.spawn().unwrap()))
    }

    /// Waits for the whole output (the process is then gone).
    fn wait_with_output(mut self) -> std::process::Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().unwrap()
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn log_sends_numbered_messages_with_structured_data_to_rsyslog_over_relp() {
    ensure_peers_installed().unwrap();
    let rsyslog = Rsyslog::builder().relp().start().unwrap();
    let out = flotilla()
        .args([
            "log",
            "--to",
            &format!("relp://127.0.0.1:{}", rsyslog.relp_port().unwrap()),
            "--app",
            "cli-test",
            "--severity",
            "err",
            "--facility",
            "local7",
            "--msgid",
            "DEPLOY",
            "--sd",
            "origin:ip=10.0.0.1",
            "--sd",
            "origin:software=flotilla",
            "--count",
            "50",
            "deploy finished",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = rsyslog.wait_for_lines(50, Duration::from_secs(20)).unwrap();
    assert_eq!(lines.len(), 50);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["app_name"], "cli-test");
        assert_eq!(line["msgid"], "DEPLOY");
        assert_eq!(line["msg"].as_str().unwrap().trim(), "deploy finished");
        let pri = line["pri"]
            .as_i64()
            .or_else(|| line["pri"].as_str().and_then(|s| s.parse().ok()))
            .unwrap();
        assert_eq!(pri, 23 * 8 + 3);
        let sd = line["structured_data"].as_str().unwrap();
        assert!(
            sd.starts_with(r#"[origin ip="10.0.0.1" software="flotilla"]"#),
            "{sd}"
        );
        assert!(
            sd.contains(&format!("[meta sequenceId=\"{}\"]", i + 1)),
            "{sd}"
        );
    }
}

#[test]
fn bad_settings_are_loud_errors() {
    for (args, needle) in [
        (vec!["log", "--to", "tcp://127.0.0.1", "x"], "needs a port"),
        (
            vec!["log", "--to", "tcp://127.0.0.1:1?framing=nul", "x"],
            "framing",
        ),
        (vec!["log", "--to", "tls://127.0.0.1:1", "x"], "ca=PATH"),
        (
            vec![
                "log",
                "--to",
                "udp://127.0.0.1:1",
                "--severity",
                "loud",
                "x",
            ],
            "severity",
        ),
        (
            vec![
                "log",
                "--to",
                "udp://127.0.0.1:1",
                "--sd",
                "bad id:k=v",
                "x",
            ],
            "--sd",
        ),
        (
            vec![
                "frontend",
                "--listen",
                "127.0.0.1:0",
                "--game",
                "127.0.0.1:1",
                "--client-ping-ms",
                "70000",
            ],
            "ping intervals must be shorter than idle timeouts",
        ),
        (vec!["watch", "--dns", "no-port.example"], "NAME:PORT"),
        (vec!["watch", "arena-1"], "--frontends"),
        (
            vec!["demo", "--frontends", "1", "--kill-frontend-at", "1"],
            "at least 2 front-ends",
        ),
        (vec!["demo", "--linger=-1"], "--linger"),
        (
            vec!["log", "--to", "foo://x", "x"],
            "unknown scheme \"foo\"",
        ),
    ] {
        let out = flotilla().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// A port in use: the error names the address and says its cause once, not twice.
#[test]
fn an_error_names_its_address_and_says_its_cause_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let out = flotilla()
        .args(["logd", "--listen", &format!("tcp://127.0.0.1:{port}")])
        .args(["--http", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("tcp://127.0.0.1:{port}")), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
}

#[test]
fn an_unreachable_collector_is_reported_not_hidden() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = flotilla()
        .args([
            "log",
            "--to",
            &format!("tcp://127.0.0.1:{port}"),
            "--timeout",
            "0.5",
            "lost",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not everything was delivered"));
}

#[test]
fn receive_prints_what_log_sends() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut receiver = Running::spawn(
        flotilla()
            .args([
                "receive",
                "--listen",
                &format!("tcp://127.0.0.1:{port}"),
                "--count",
                "3",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // Wait for "listening" on stderr.
    let mut stderr = BufReader::new(receiver.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    let sent = flotilla()
        .args([
            "log",
            "--to",
            &format!("tcp://127.0.0.1:{port}?framing=lf"),
            "--count",
            "3",
            "--msgid",
            "HELLO",
            "--sd",
            "origin:ip=10.0.0.1",
            "hello receiver",
        ])
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let out = receiver.wait_with_output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One logd record (RecordJson) a line, in arrival order.
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["msg"], "hello receiver", "{l}");
        assert_eq!(l["app_name"], "flotilla-log", "{l}");
        assert_eq!(l["msg_id"], "HELLO", "{l}");
        assert_eq!(l["severity"], "notice", "{l}");
        assert_eq!(l["format"], "rfc5424", "{l}");
        assert_eq!(l["transport"], "tcp", "{l}");
        assert_eq!(l["truncated"], false, "{l}");
        assert_eq!(l["structured_data"]["origin"]["ip"], "10.0.0.1", "{l}");
        assert_eq!(
            l["structured_data"]["meta"]["sequenceId"],
            (i + 1).to_string(),
            "{l}"
        );
        assert!(l["id"].as_u64().is_some() && l["received_at_ns"].as_i64().is_some());
    }
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["id"].as_u64() < w[1]["id"].as_u64())
    );
}

#[test]
fn the_roles_log_boot_messages_with_their_ip_configuration() {
    // The collector: a logd node in this process (TCP on loopback, a temporary store).
    let data = tempfile::tempdir().unwrap();
    let mut config = flotilla_logd::server::ServerConfig::new(data.path());
    config.listen = flotilla_logd::listen::ListenSpec::parse_list("tcp://127.0.0.1:0").unwrap();
    config.http = None;
    let mut logd = flotilla_logd::server::Server::start(config).unwrap();
    let collector = logd.addr_of("tcp").unwrap();
    let game_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = format!("tcp://{collector}");
    let mut game = Running::spawn(
        flotilla()
            .args([
                "game",
                "--listen",
                &format!("127.0.0.1:{game_port}"),
                "--seconds",
                "3",
                "--log",
                &log,
            ])
            .stderr(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(300));
    let frontend = flotilla()
        .args([
            "frontend",
            "--listen",
            "127.0.0.1:0",
            "--game",
            &format!("127.0.0.1:{game_port}"),
            "--id",
            "fe-test",
            "--seconds",
            "1",
            "--log",
            &log,
        ])
        .output()
        .unwrap();
    assert!(
        frontend.status.success(),
        "{}",
        String::from_utf8_lossy(&frontend.stderr)
    );
    assert!(game.wait().unwrap().success());
    // Both processes are gone: their connections are read to the end, then the store
    // makes everything durable.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while logd.listener_stats().iter().any(|l| l.connections_open > 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "connections still open"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    logd.shutdown();
    let everything = flotilla_logd::Matcher::new(flotilla_logd::Query::default()).unwrap();
    let (records, _) = logd.store().query(&everything, None).unwrap();
    let got: Vec<String> = records
        .iter()
        .map(|(_, r)| String::from_utf8_lossy(&r.raw).into_owned())
        .collect();
    for app in ["flotilla-game", "flotilla-frontend"] {
        let boot = got
            .iter()
            .find(|m| m.contains(app) && m.contains(" BOOT "))
            .unwrap_or_else(|| panic!("no boot message from {app} in {got:#?}"));
        assert!(
            boot.contains("booted and awake") && boot.contains("lo=\"127.0.0.1/8\""),
            "{boot}"
        );
    }
    assert!(
        got.iter()
            .any(|m| m.contains("flotilla-frontend") && m.contains("fe-test")),
        "{got:#?}"
    );
}

/// Waits (at most 20 s) until the front-end at `addr` lists `world` in its `$directory`.
fn wait_until_serving(addr: &str, world: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "{addr} never served {world}"
            );
            let Ok(client) = flotilla_client::Client::connect(addr, Default::default()).await
            else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let directory = flotilla_wire::WorldId::DIRECTORY;
            client.subscribe(directory.clone(), None).unwrap();
            for _ in 0..20 {
                if client.get(&directory, world.as_bytes()).is_some() {
                    client.close();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            client.close();
        }
    });
}

/// Reads lines from `reader` until one is a JSON object whose `event` is `wanted`.
fn next_event(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    wanted: &str,
) -> serde_json::Value {
    for line in lines {
        let line = line.unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if value["event"] == wanted {
            return value;
        }
    }
    panic!("flotilla watch ended before a {wanted:?} line");
}

#[test]
fn watch_follows_a_world_across_a_killed_frontend_and_resumes_its_session() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let game_addr = format!("127.0.0.1:{}", port());
    let mut game = Running::spawn(
        flotilla()
            .args(["game", "--listen", &game_addr, "--seconds", "20"])
            .stderr(Stdio::null()),
    );
    let frontend_addrs = [
        format!("127.0.0.1:{}", port()),
        format!("127.0.0.1:{}", port()),
    ];
    let mut frontends: Vec<Running> = frontend_addrs
        .iter()
        .map(|addr| {
            Running::spawn(
                flotilla()
                    .args([
                        "frontend",
                        "--listen",
                        addr,
                        "--game",
                        &game_addr,
                        "--seconds",
                        "20",
                    ])
                    .arg("--token-key-file")
                    .arg(&key)
                    .stderr(Stdio::null()),
            )
        })
        .collect();
    for addr in &frontend_addrs {
        wait_until_serving(addr, "arena-1");
    }
    let list = frontend_addrs.join(",");
    let mut watch = Running::spawn(
        flotilla()
            .args([
                "watch",
                "arena-1",
                "--frontends",
                &list,
                "--seconds",
                "6",
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut lines = std::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let connected = next_event(&mut lines, "connected");
    let first = connected["frontend"].as_str().unwrap().to_owned();
    let snapshot = next_event(&mut lines, "snapshot");
    assert_eq!(snapshot["world"], "arena-1");
    assert!(snapshot["len"].as_u64().unwrap() > 0, "{snapshot}");
    next_event(&mut lines, "status");
    // Kill the front-end the watcher is on: it must move to the other one and resume.
    let victim = frontend_addrs.iter().position(|a| *a == first).unwrap();
    frontends[victim].kill().unwrap();
    frontends[victim].wait().unwrap();
    let lost = next_event(&mut lines, "frontend_lost");
    assert_eq!(lost["frontend"], first.as_str());
    let reconnected = next_event(&mut lines, "reconnected");
    assert_eq!(reconnected["frontend"], frontend_addrs[1 - victim].as_str());
    assert_eq!(reconnected["resumed"], true, "{reconnected}");
    let end = next_event(&mut lines, "end");
    assert_eq!(end["reconnects"], 1, "{end}");
    assert_eq!(end["frontend"], frontend_addrs[1 - victim].as_str());
    assert!(
        end["seq"].as_u64().unwrap() > snapshot["seq"].as_u64().unwrap(),
        "the world went on: {end}"
    );
    assert!(watch.wait().unwrap().success());
    // Text output: logfmt lines with a time, no entries without --entries.
    let survivor = frontend_addrs[1 - victim].as_str();
    let text = succeed(flotilla().args([
        "watch",
        "arena-1",
        "--frontends",
        survivor,
        "--seconds",
        "1.5",
    ]));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        assert!(line.starts_with("time=20"), "{line}");
        assert!(line.contains(" event="), "{line}");
        assert!(!line.contains("entries"), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("event=snapshot")), "{text}");
    // A world the fleet does not serve: an error that lists those it serves.
    let unknown = flotilla()
        .args([
            "watch",
            "no-such-world",
            "--frontends",
            survivor,
            "--seconds",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("the fleet serves no world \"no-such-world\" (it serves: arena-1"),
        "{err}"
    );
    for mut child in frontends {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = game.kill();
    let _ = game.wait();
}

/// SIGTERM stops a role cleanly: it says why on stderr and in its log (the collector gets
/// "shutting down: SIGTERM"), drains, and exits 0 (not 143, silently).
#[test]
fn roles_stop_cleanly_on_sigterm() {
    for role in ["game", "frontend"] {
        let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let log = format!("udp://{}", collector.local_addr().unwrap());
        let mut cmd = flotilla();
        cmd.arg(role)
            .args(["--listen", "127.0.0.1:0", "--log", &log]);
        if role == "frontend" {
            cmd.args(["--game", "127.0.0.1:1"]);
        }
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "{role} ended early"
            );
        }
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{role} did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        assert_eq!(status.code(), Some(0), "{role}: {rest}");
        assert!(rest.contains("SIGTERM: shutting down"), "{role}: {rest}");
        // The collector heard it too (among the boot message and the rest).
        let mut heard = Vec::new();
        let mut buf = [0u8; 65_536];
        while let Ok(n) = collector.recv(&mut buf) {
            heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert!(
            heard.iter().any(|m| m.contains("shutting down: SIGTERM")),
            "{role}: {heard:#?}"
        );
    }
}

/// `flotilla log` like logger(1): words form one message, `-p FACILITY.LEVEL`, and
/// without a message (or with `-`) each non-empty line of standard input is one.
#[test]
fn log_takes_words_priorities_and_stdin_like_logger_1() {
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let to = format!("udp://{}", collector.local_addr().unwrap());
    let mut buf = [0u8; 65_536];
    let mut recv = || {
        let n = collector.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    succeed(flotilla().args([
        "log",
        "--to",
        &to,
        "-p",
        "local0.warning",
        "hello",
        "brave",
        "world",
    ]));
    let m = recv();
    assert!(m.starts_with("<132>1 "), "{m}");
    assert!(m.ends_with(" hello brave world"), "{m}");

    for args in [vec!["log", "--to", &to, "-"], vec!["log", "--to", &to]] {
        let mut child = flotilla()
            .args(&args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            child.stdin.as_mut().unwrap(),
            b"first line\n\nsecond line\r\n",
        )
        .unwrap();
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (a, b) = (recv(), recv());
        assert!(
            a.contains("sequenceId=\"1\"") && a.ends_with(" first line"),
            "{a}"
        );
        assert!(
            b.contains("sequenceId=\"2\"") && b.ends_with(" second line"),
            "{b}"
        );
    }
}

/// `flotilla keygen` makes a key file a front-end accepts, private to its owner, and
/// never overwrites one without --force.
#[test]
fn keygen_makes_a_key_the_front_end_reads() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token.key");
    succeed(flotilla().args(["keygen", "--out"]).arg(&key));
    let text = std::fs::read_to_string(&key).unwrap();
    assert_eq!(text.trim().len(), 64, "{text}");
    assert!(text.trim().bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = flotilla()
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text, "kept");
    succeed(
        flotilla()
            .args([
                "frontend",
                "--listen",
                "127.0.0.1:0",
                "--game",
                "127.0.0.1:1",
            ])
            .args(["--seconds", "0.3", "--token-key-file"])
            .arg(&key),
    );
}

/// A front-end whose game server is unreachable says so on stderr, with or without a
/// log collector.
#[test]
fn a_front_end_says_when_its_game_server_is_unreachable() {
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let log = format!("udp://{}", collector.local_addr().unwrap());
    for with_log in [false, true] {
        let mut cmd = flotilla();
        cmd.args([
            "frontend",
            "--listen",
            "127.0.0.1:0",
            "--game",
            "127.0.0.1:1",
        ])
        .args(["--seconds", "1.5"]);
        if with_log {
            cmd.args(["--log", &log]);
        }
        let out = succeed(&mut cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("warning: cannot connect to game server 127.0.0.1:1"),
            "with log {with_log}: {err}"
        );
    }
}

/// When nothing was delivered, `flotilla log` says why, naming the collector: a name that
/// did not resolve, a refused connection.
#[test]
fn log_says_why_nothing_was_delivered() {
    for (to, cause) in [
        ("tcp://nohost.invalid:514", "did not resolve"),
        ("tcp://127.0.0.1:1", "refused"),
    ] {
        let out = flotilla()
            .args(["log", "--to", to, "--timeout", "1.5", "hello"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{to}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("last failure: {to}: ")) && err.contains(cause),
            "{to}: {err}"
        );
    }
}

#[test]
fn sim_failover_prints_the_same_json_for_the_same_seed_and_says_what_happened() {
    let args = [
        "sim",
        "failover",
        "--seed",
        "5",
        "--frontends",
        "3",
        "--clients",
        "600",
        "--kill",
        "1",
        "--json",
    ];
    let first = succeed(flotilla().args(args));
    let second = succeed(flotilla().args(args));
    assert_eq!(first.stdout, second.stdout);
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(report["clients"], 600);
    assert_eq!(report["killed"].as_array().unwrap().len(), 1);
    assert_eq!(report["moved"], report["resumed"]);
    assert_eq!(report["replicas_converged"], 600);
    assert!(String::from_utf8_lossy(&first.stderr).contains("per simulated second"));
    let other = succeed(flotilla().args([
        "sim",
        "failover",
        "--seed",
        "6",
        "--frontends",
        "3",
        "--clients",
        "600",
        "--json",
    ]));
    assert_ne!(first.stdout, other.stdout);
    // The text form, and a scenario that cannot be run.
    let text = succeed(flotilla().args(["sim", "failover", "--clients", "50"]));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("without a front-end (virtual ms)"), "{text}");
    let bad = flotilla()
        .args(["sim", "failover", "--frontends", "2", "--kill", "3"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("cannot kill 3"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn a_front_end_records_its_run_and_replay_checks_it() {
    use flotilla_wire::{ClientToFrontend, Message, PROTOCOL_VERSION};
    use std::io::{Read, Write};

    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("rec");
    let port = flotilla_testkit::free_port().unwrap();
    let game = flotilla_testkit::free_port().unwrap();
    let frontend = Running::spawn(
        flotilla()
            .args(["frontend", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--game", &format!("127.0.0.1:{game}"), "--seconds", "3"])
            .arg("--record")
            .arg(&record)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    // A client says hello and gets its welcome; another sends garbage and is refused.
    let connect = || {
        for _ in 0..100 {
            if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                return stream;
            }
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        panic!("the front-end did not listen");
    };
    let mut client = connect();
    let hello = ClientToFrontend::Hello {
        version: PROTOCOL_VERSION,
        session_token: None,
        client_name: "recorded".into(),
    };
    client.write_all(&hello.encode_to_bytes()).unwrap();
    let mut welcome = [0u8; 16];
    client.read_exact(&mut welcome).unwrap();
    let mut garbage = connect();
    garbage.write_all(&[0, 0, 0, 1, 0xEE]).unwrap();
    let mut rest = Vec::new();
    let _ = garbage.read_to_end(&mut rest);
    drop(client);
    // The front-end stops after --seconds and finishes its recording.
    assert!(frontend.wait_with_output().status.success());
    let out = succeed(flotilla().arg("replay").arg(&record).arg("--json"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mismatch"], serde_json::Value::Null, "{report}");
    assert!(report["inputs"].as_u64().unwrap() >= 4, "{report}");
    assert!(report["outputs_checked"].as_u64().unwrap() >= 2, "{report}");
    let text = succeed(flotilla().arg("replay").arg(&record));
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("every output is identical"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    let missing = flotilla()
        .arg("replay")
        .arg(dir.path().join("nothing"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no recording in"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn sim_balance_compares_the_ways_of_choosing_and_draws_them() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("balance.svg");
    let out = succeed(
        flotilla()
            .args(["sim", "balance", "--clients", "4000", "--json", "--svg"])
            .arg(&svg),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = report["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "os-seeded",
            "time-seeded",
            "dns-round-robin",
            "power-of-two"
        ]
    );
    assert_eq!(report["strategies"][0]["settled"]["within_4_sigma"], true);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let text = succeed(flotilla().args(["sim", "balance", "--clients", "4000"]));
    assert!(String::from_utf8_lossy(&text.stdout).contains("os-seeded"));
}

/// A role whose `--log` collector is down says so on stderr (once, with the cause), and
/// says again when the collector answers.
#[test]
fn roles_warn_while_their_log_collector_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = format!("tcp://127.0.0.1:{port}");
    let mut game = Running::spawn(
        flotilla()
            .args(["game", "--listen", "127.0.0.1:0", "--log", &log])
            .args(["--log-heartbeat-ms", "300"])
            .stderr(Stdio::piped()),
    );
    let mut stderr = BufReader::new(game.0.as_mut().unwrap().stderr.take().unwrap());
    let mut line = String::new();
    let mut seen = String::new();
    while !line.contains("cannot reach its log collectors") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
    }
    assert!(
        line.contains(&format!("{log}: Connection refused")),
        "{line}"
    );
    // The collector comes up: the role says its collectors answer again.
    let collector = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = collector.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut sink = [0u8; 4096];
        while matches!(std::io::Read::read(&mut s, &mut sink), Ok(n) if n > 0) {}
    });
    while !line.contains("log collectors answer again") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
    }
    drop(game);
    let _ = reader.join();
}
