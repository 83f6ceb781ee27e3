//! `flotilla logd` as a process, fed by real senders (util-linux `logger`, syslog-ng's
//! `loggen`, rsyslog forwarding with omfwd and omrelp, the flotilla logger over every
//! transport), killed with SIGKILL mid-stream, starved of disk, flooded with garbage and
//! idle connections; what it stored is read back with `flotilla logs query`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap: a panic is a test failure.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flotilla_bench::logd::{LogdProcess, http_get, relp_load};
use flotilla_testkit::{LoggenOptions, LoggenTransport, Logger, Rsyslog, TestCertificate};
use serde_json::Value;

fn flotilla_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flotilla"))
}

fn start(dir: &Path, listen: &str, extra: &[&str]) -> LogdProcess {
    flotilla_testkit::ensure_peers_installed().expect("peers");
    LogdProcess::spawn(
        &flotilla_exe(),
        &dir.join("data"),
        listen,
        "127.0.0.1:0",
        extra,
    )
    .expect("logd starts")
}

/// `flotilla logs query --logd URL --json ARGS...`, parsed.
fn query(logd: &LogdProcess, args: &[&str]) -> Vec<Value> {
    let out = Command::new(flotilla_exe())
        .args(["logs", "query", "--json", "--limit", "0", "--logd"])
        .arg(format!("http://{}", logd.http))
        .args(args)
        .output()
        .expect("flotilla logs query runs");
    assert!(
        out.status.success(),
        "logs query {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn wait_for(logd: &LogdProcess, what: &str, n: usize, args: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = query(logd, args);
        if got.len() >= n || Instant::now() > deadline {
            assert_eq!(
                got.len(),
                n,
                "{what}: {got:#?}\nlogd stderr: {}",
                logd.stderr()
            );
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn flotilla_log(to: &str, args: &[&str]) {
    let out = Command::new(flotilla_exe())
        .args(["log", "--to", to])
        .args(args)
        .output()
        .expect("flotilla log runs");
    assert!(
        out.status.success(),
        "flotilla log --to {to} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn real_senders_every_message_stored_with_exact_fields() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCertificate::generate().unwrap();
    let cert_pem = cert.cert_pem_path().to_path_buf();
    let key_pem = cert.key_pem_path().to_path_buf();
    let listen = format!(
        "udp://127.0.0.1:0,tcp://127.0.0.1:0,relp://127.0.0.1:0,tls://127.0.0.1:0?cert={}&key={}",
        cert_pem.display(),
        key_pem.display()
    );
    let logd = start(dir.path(), &listen, &[]);
    let udp = logd.addr("udp").unwrap();
    let tcp = logd.addr("tcp").unwrap();
    let relp = logd.addr("relp").unwrap();
    let tls = logd.addr("tls").unwrap();

    // util-linux logger: RFC 5424 and RFC 3164, UDP and TCP octet counting.
    Logger::tcp(tcp)
        .rfc5424()
        .octet_count()
        .tag("ul-tcp")
        .priority("local3.warning")
        .msgid("ULT")
        .sd_id("check@32473")
        .sd_param("case=\"tcp\"")
        .send("util-linux over tcp")
        .unwrap();
    Logger::udp(udp)
        .rfc5424()
        .tag("ul-udp")
        .msgid("ULU")
        .send("util-linux over udp")
        .unwrap();
    Logger::udp(udp)
        .rfc3164()
        .tag("ul-bsd")
        .send("util-linux bsd over udp")
        .unwrap();
    Logger::tcp(tcp)
        .rfc3164()
        .octet_count()
        .tag("ul-bsd-tcp")
        .send("util-linux bsd over tcp")
        .unwrap();
    let got = wait_for(&logd, "logger tcp 5424", 1, &["--msgid", "ULT"]);
    let r = &got[0];
    assert_eq!(r["app_name"], "ul-tcp");
    assert_eq!(r["severity"], "warning");
    assert_eq!(r["facility"], "local3");
    assert_eq!(r["format"], "rfc5424");
    assert_eq!(r["transport"], "tcp");
    assert_eq!(r["structured_data"]["check@32473"]["case"], "tcp");
    assert_eq!(r["msg"], "util-linux over tcp");
    assert!(r["timestamp"].is_string() && r["hostname"].is_string());
    let got = wait_for(&logd, "logger udp 5424", 1, &["--msgid", "ULU"]);
    assert_eq!(got[0]["transport"], "udp");
    assert_eq!(got[0]["msg"], "util-linux over udp");
    let got = wait_for(&logd, "logger udp 3164", 1, &["--app", "ul-bsd"]);
    assert_eq!(got[0]["format"], "rfc3164");
    assert_eq!(got[0]["msg"], "util-linux bsd over udp");
    wait_for(&logd, "logger tcp 3164", 1, &["--app", "ul-bsd-tcp"]);

    // loggen: 2,000 RFC 5424 messages over TCP.
    let mut o = LoggenOptions::new(tcp);
    o.transport = LoggenTransport::Tcp;
    o.count = Some(2000);
    o.size = 200;
    let report = flotilla_testkit::run_loggen(&o).unwrap();
    assert_eq!(report.count, 2000);
    let got = wait_for(&logd, "loggen", 2000, &["--grep", "seq"]);
    assert!(got.iter().all(|r| r["format"] == "rfc5424"));

    // The flotilla logger over every transport.
    for (scheme, addr) in [("udp", udp), ("tcp", tcp), ("relp", relp)] {
        flotilla_log(
            &format!("{scheme}://{addr}"),
            &[
                "--app",
                &format!("fl-{scheme}"),
                "--msgid",
                "FL",
                "--sd",
                &format!("origin:transport={scheme}"),
                "--count",
                "10",
                "hello from the flotilla logger",
            ],
        );
    }
    flotilla_log(
        &format!("tls://{tls}?ca={}&name=localhost", cert_pem.display()),
        &[
            "--app",
            "fl-tls",
            "--msgid",
            "FL",
            "--count",
            "10",
            "hello over tls",
        ],
    );
    for scheme in ["udp", "tcp", "relp", "tls"] {
        let got = wait_for(
            &logd,
            &format!("flotilla logger over {scheme}"),
            10,
            &["--app", &format!("fl-{scheme}")],
        );
        let seqs: BTreeSet<String> = got
            .iter()
            .map(|r| {
                r["structured_data"]["meta"]["sequenceId"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(seqs.len(), 10, "{scheme}");
        assert!(got.iter().all(|r| r["transport"] == scheme));
        if scheme != "tls" {
            assert!(
                got.iter()
                    .all(|r| r["structured_data"]["origin"]["transport"] == scheme)
            );
        }
    }

    // rsyslog forwarding: omfwd over TCP (octet counted) and UDP, omrelp.
    for (name, forward) in [
        (
            "omfwd-tcp",
            Rsyslog::builder()
                .tcp_octet_counted_or_lf()
                .forward_tcp(tcp),
        ),
        (
            "omfwd-udp",
            Rsyslog::builder()
                .tcp_octet_counted_or_lf()
                .forward_udp(udp),
        ),
        (
            "omrelp",
            Rsyslog::builder()
                .tcp_octet_counted_or_lf()
                .forward_relp(relp),
        ),
    ] {
        let rsyslog = forward.start().unwrap();
        let input = SocketAddr::from(([127, 0, 0, 1], rsyslog.tcp_port().unwrap()));
        let mut s = TcpStream::connect(input).unwrap();
        for i in 0..100 {
            writeln!(s, "<14>1 2024-02-03T04:05:06.789Z fwd-host {name} 77 FWD [f@32473 n=\"{i}\"] forwarded {i}").unwrap();
        }
        drop(s);
        let got = wait_for(&logd, name, 100, &["--app", name]);
        let ns: BTreeSet<u64> = got
            .iter()
            .map(|r| {
                r["structured_data"]["f@32473"]["n"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(ns.len(), 100, "{name}");
        assert!(
            got.iter()
                .all(|r| r["hostname"] == "fwd-host" && r["msg_id"] == "FWD"),
            "{name}: {:?}",
            got[0]
        );
        drop(rsyslog);
    }
    logd.stop().unwrap();
}

/// Every sequence number in records of `app` (`[meta sequenceId=N]` or `seq=N` text).
fn seqs_of(records: &[Value]) -> BTreeSet<u64> {
    records
        .iter()
        .filter_map(|r| {
            r["structured_data"]["meta"]["sequenceId"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| {
                    r["msg"]
                        .as_str()
                        .and_then(|m| m.rsplit("seq=").next())
                        .and_then(|s| s.split_whitespace().next())
                        .and_then(|s| s.parse().ok())
                })
        })
        .collect()
}

fn free_port() -> u16 {
    flotilla_testkit::free_port().unwrap()
}

fn wait_records(logd: &LogdProcess, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(s) = logd.stats()
            && s["records"].as_u64().unwrap_or(0) >= n
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("logd never reached {n} records");
}

#[test]
fn kill9_during_a_relp_stream_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let relp_port = free_port();
    let listen = format!("relp://127.0.0.1:{relp_port}");
    let logd = start(dir.path(), &listen, &[]);

    // 1. The flotilla logger: 100,000 numbered messages; logd is killed mid-stream and
    //    restarted on the same port; the logger resends what was not acknowledged.
    let sender = std::thread::spawn({
        let to = format!("relp://127.0.0.1:{relp_port}");
        move || {
            Command::new(flotilla_exe())
                .args([
                    "log",
                    "--to",
                    &to,
                    "--app",
                    "fl-kill",
                    "--count",
                    "100000",
                    "--timeout",
                    "60",
                    "numbered",
                ])
                .output()
                .unwrap()
        }
    });
    wait_records(&logd, 20_000);
    logd.kill9();
    let logd = start(dir.path(), &listen, &[]);
    let out = sender.join().unwrap();
    assert!(
        out.status.success(),
        "flotilla log: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("100000 delivered"));
    let got = query(&logd, &["--app", "fl-kill"]);
    let seqs = seqs_of(&got);
    assert_eq!(
        seqs.len(),
        100_000,
        "missing: {:?}",
        (1..=100_000u64)
            .filter(|s| !seqs.contains(s))
            .take(10)
            .collect::<Vec<_>>()
    );

    // 2. rsyslog omrelp (an action queue with endless retries): 100,000 messages fed to
    //    rsyslog, logd killed mid-stream and restarted; all arrive.
    let relp = SocketAddr::from(([127, 0, 0, 1], relp_port));
    let rsyslog = Rsyslog::builder()
        .tcp_octet_counted_or_lf()
        .forward_relp(relp)
        .start()
        .unwrap();
    let input = SocketAddr::from(([127, 0, 0, 1], rsyslog.tcp_port().unwrap()));
    let before = logd.stats().unwrap()["records"].as_u64().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut s = TcpStream::connect(input).unwrap();
        let mut buf = Vec::new();
        for i in 1..=100_000u64 {
            writeln!(buf, "<14>1 - rs-host rs-kill - SEQ - seq={i}").unwrap();
        }
        s.write_all(&buf).unwrap();
    });
    wait_records(&logd, before + 20_000);
    logd.kill9();
    let logd = start(dir.path(), &listen, &[]);
    feeder.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let seqs = loop {
        let seqs = seqs_of(&query(&logd, &["--app", "rs-kill"]));
        if seqs.len() == 100_000 || Instant::now() > deadline {
            break seqs;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(seqs.len(), 100_000, "rsyslog log: {}", rsyslog.log());
    drop(rsyslog);
    logd.stop().unwrap();
}

/// Mounts a tmpfs of `mib` MiB at `dir` (removed on drop).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: PathBuf, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs (the tests run as root)");
        assert!(
            status.success(),
            "mounting a tmpfs at {} failed",
            dir.display()
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_acknowledging_corrupts_nothing_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(dir.path().join("small"), 32);
    // Leave about 6 MiB free.
    let filler = fs.0.join("filler");
    std::fs::write(&filler, vec![0u8; 26 << 20]).unwrap();
    let logd = LogdProcess::spawn(
        &flotilla_exe(),
        &fs.0.join("data"),
        "relp://127.0.0.1:0",
        "127.0.0.1:0",
        &[],
    )
    .unwrap();
    let relp = logd.relp;
    // 60,000 messages of ~300 bytes: ~18 MiB, far more than the free space.
    let load = std::thread::spawn(move || relp_load(relp, 60_000, 1, 300));
    // logd notices, says so, and stops acknowledging.
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let stats = logd.stats().unwrap();
        if stats["error"].is_string() {
            break stats;
        }
        assert!(
            Instant::now() < deadline,
            "logd never reported the full disk: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        health["error"].as_str().unwrap().contains("disk full"),
        "{health}"
    );
    let stuck_at = health["records"].as_u64().unwrap();
    let h = http_get(logd.http, "/health");
    assert!(h.is_err(), "/health must not be 200 while the disk is full");
    assert!(
        logd.stderr().contains("disk full"),
        "stderr: {}",
        logd.stderr()
    );
    std::thread::sleep(Duration::from_millis(500));
    let still = logd.stats().unwrap()["records"].as_u64().unwrap();
    assert!(
        still <= stuck_at + 5_000,
        "logd kept storing with a full disk: {stuck_at} -> {still}"
    );
    // Free the space: logd resumes by itself and every message is acknowledged.
    std::fs::remove_file(&filler).unwrap();
    let (acked, _) = load.join().unwrap().unwrap();
    assert_eq!(acked, 60_000);
    let h = http_get(logd.http, "/health");
    assert!(h.is_ok(), "/health after space was freed: {h:?}");
    let data = logd.data.clone();
    logd.stop().unwrap();
    // Nothing corrupt, nothing lost: reopened, the store holds every acknowledged message.
    let store = flotilla_logd::Store::open_read_only(&data).unwrap();
    let matcher = flotilla_logd::Matcher::new(flotilla_logd::Query::default()).unwrap();
    let mut seqs = BTreeSet::new();
    let stats = store
        .scan(&matcher, false, &mut |_, r| {
            let text = String::from_utf8_lossy(&r.raw);
            let words: Vec<&str> = text.split_whitespace().collect();
            // "<13>1 - relp-bench load CONN SEQ - N pad"
            seqs.insert((words[4].to_string(), words[7].to_string()));
            true
        })
        .unwrap();
    assert_eq!(stats.corrupt_blocks, 0);
    assert_eq!(seqs.len(), 60_000);
}

#[test]
fn garbage_oversize_stalled_and_2000_idle_connections_harm_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let logd = start(
        dir.path(),
        "tcp://127.0.0.1:0,udp://127.0.0.1:0",
        &["--max-frame", "1024"],
    );
    let tcp = logd.tcp;
    let rss_before = flotilla_bench::procstat::read_memory(logd.pid())
        .unwrap()
        .rss;
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(tcp).unwrap())
        .collect();
    // A client that never finishes its frame, garbage, an oversize frame.
    let mut stalled = TcpStream::connect(tcp).unwrap();
    stalled
        .write_all(b"900 <13>1 - stalled app - - - this frame never ends")
        .unwrap();
    let mut bad = TcpStream::connect(tcp).unwrap();
    bad.write_all(b"\x00\x01\x02 binary garbage \xff\xfe\n")
        .unwrap();
    bad.write_all(b"99999999999999999999999 nonsense count\n")
        .unwrap();
    let big = format!("<13>1 - big app - - - {}", "z".repeat(5000));
    bad.write_all(format!("{} {big}", big.len()).as_bytes())
        .unwrap();
    drop(bad);
    // A well-behaved sender alongside is unaffected.
    let mut good = TcpStream::connect(tcp).unwrap();
    for i in 0..1000 {
        writeln!(good, "<13>1 - good-host good - - - line {i}").unwrap();
    }
    drop(good);
    wait_for(&logd, "the good sender", 1000, &["--host", "good-host"]);
    let garbage = wait_for(&logd, "garbage kept raw", 2, &["--unparsed"]);
    assert!(garbage.iter().any(|r| r["raw_base64"].is_string()));
    let big = wait_for(&logd, "oversize kept truncated", 1, &["--host", "big"]);
    assert_eq!(big[0]["truncated"], true);
    let rss = flotilla_bench::procstat::read_memory(logd.pid())
        .unwrap()
        .rss;
    assert!(
        rss < rss_before + (100 << 20),
        "2,000 idle connections cost {} MiB",
        (rss - rss_before) >> 20
    );
    let stats = logd.stats().unwrap();
    let tcp_stats = &stats["listeners"][0];
    assert!(
        tcp_stats["connections_open"].as_u64().unwrap() >= 2001,
        "{tcp_stats}"
    );
    assert!(tcp_stats["oversize_truncated"].as_u64().unwrap() >= 1);
    drop(stalled);
    wait_for(
        &logd,
        "the stalled frame, kept truncated",
        1,
        &["--host", "stalled"],
    );
    drop(idle);
    logd.stop().unwrap();
}

#[test]
fn sealed_segments_are_archived_to_s3_and_searched_back() {
    let weed = flotilla_testkit::Weed::start().unwrap();
    weed.create_bucket("logs").unwrap();
    let archive = format!("s3://logs/fleet?endpoint={}", weed.endpoint());
    let dir = tempfile::tempdir().unwrap();
    let logd = start(
        dir.path(),
        "tcp://127.0.0.1:0",
        &[
            "--archive",
            &archive,
            "--archive-every-secs",
            "1",
            "--node-id",
            "node-a",
        ],
    );
    let mut s = TcpStream::connect(logd.tcp).unwrap();
    for i in 0..500 {
        writeln!(
            s,
            "<11>1 - arch-host arch-app - ARC [a@32473 i=\"{i}\"] archived line {i} tok-{i:04}"
        )
        .unwrap();
    }
    writeln!(s, "<13>1 - arch-host arch-app - ARC - caf\u{e9} \u{1F680}").unwrap();
    s.write_all(b"<13>1 - arch-host arch-app - ARC - bytes \xff\xfe kept\n")
        .unwrap();
    drop(s);
    wait_for(&logd, "stored", 502, &["--app", "arch-app"]);
    // Stopping seals the open segment; a restart archives it within a second.
    logd.stop().unwrap();
    let logd = start(
        dir.path(),
        "tcp://127.0.0.1:0",
        &[
            "--archive",
            &archive,
            "--archive-every-secs",
            "1",
            "--node-id",
            "node-a",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let keys = loop {
        let keys = weed.list_objects("logs").unwrap();
        if !keys.is_empty() && logd.stats().unwrap()["archived_segments"].as_u64() >= Some(1) {
            break keys;
        }
        assert!(
            Instant::now() < deadline,
            "nothing archived: {}",
            logd.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        keys.iter().all(|k| k.starts_with("fleet/node-a/dt=")
            && k.contains("/hour=")
            && k.ends_with(".jsonl.zst")),
        "{keys:?}"
    );
    // Any tool reads it: zstd JSON Lines with every field and the raw frame.
    let object = weed.get_object("logs", &keys[0]).unwrap();
    let plain = zstd_decode(&object);
    let first: Value = serde_json::from_str(plain.lines().next().unwrap()).unwrap();
    assert_eq!(first["hostname"], "arch-host");
    assert_eq!(first["node"], "node-a");
    assert!(
        first["raw"]
            .as_str()
            .unwrap()
            .starts_with("<11>1 - arch-host")
    );
    // flotilla logs query --archive finds a rare token, and the non-UTF-8 line whole.
    let out = Command::new(flotilla_exe())
        .args([
            "logs",
            "query",
            "--json",
            "--archive",
            &archive,
            "--grep",
            "tok-0417",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["structured_data"]["a@32473"]["i"], "417");
    assert_eq!(lines[0]["severity"], "err");
    let out = Command::new(flotilla_exe())
        .args([
            "logs",
            "query",
            "--json",
            "--archive",
            &archive,
            "--grep",
            "kept",
        ])
        .output()
        .unwrap();
    let line: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert!(line["raw_base64"].is_string(), "{line}");
    logd.stop().unwrap();
}

/// Decompresses one zstd frame (an archive object).
fn zstd_decode(data: &[u8]) -> String {
    String::from_utf8(zstd::stream::decode_all(data).unwrap()).unwrap()
}

#[test]
fn forwarding_relays_what_matches_to_rsyslog_over_relp() {
    let upstream = Rsyslog::builder().relp().start().unwrap();
    let relp = SocketAddr::from(([127, 0, 0, 1], upstream.relp_port().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let logd = start(
        dir.path(),
        "tcp://127.0.0.1:0",
        &[
            "--forward",
            &format!("relp://{relp}"),
            "--forward-severity",
            "..warning",
        ],
    );
    let mut s = TcpStream::connect(logd.tcp).unwrap();
    for i in 0..200u32 {
        let sev = i % 8;
        writeln!(
            s,
            "<{}>1 2024-03-04T05:06:07Z fw-host fw-app - FW [f@32473 i=\"{i}\"] forwarded? {i}",
            8 + sev
        )
        .unwrap();
    }
    drop(s);
    wait_for(&logd, "stored", 200, &["--app", "fw-app"]);
    // Severities 0..=4 of 200 round-robin: 125 go upstream, exactly as received.
    let lines = upstream
        .wait_for_lines(125, Duration::from_secs(30))
        .unwrap();
    assert_eq!(lines.len(), 125);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        upstream.lines().unwrap().len(),
        125,
        "only matching records are forwarded"
    );
    assert!(
        lines.iter().all(|l| l["hostname"] == "fw-host"),
        "{:?}",
        lines[0]
    );
    let stats = logd.stats().unwrap();
    assert_eq!(stats["listeners"]["forward"]["matched"], 125, "{stats}");
    logd.stop().unwrap();
}
