//! High availability of `flotilla logd`: three nodes on loopback, each with its own data
//! directory and `--peers` listing all three; the flotilla logger sends 100,000 numbered
//! messages over RELP to all three (it picks one at random and fails over); one node is
//! killed with SIGKILL mid-stream and restarted on the same data directory and ports.
//! Every message the logger reports acknowledged is then found through each node's
//! `/api/query`, exactly once; while the node is down, the others report it in
//! `x-flotilla-nodes` (and in a tail's `nodes` event).
//!
//! Loopback only; every process started is killed on drop (`LogdProcess`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap: a panic is a test failure.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flotilla_bench::logd::{LogdProcess, http_get};
use flotilla_logger::{Config, Logger};
use flotilla_syslog::Severity;
use serde_json::Value;

const MESSAGES: usize = 100_000;
const KILL_AFTER: usize = 30_000;

fn flotilla_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flotilla"))
}

/// Free loopback TCP ports (bound and released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

struct Node {
    data: PathBuf,
    relp: u16,
    http: u16,
}

impl Node {
    fn start(&self, peers: &str) -> LogdProcess {
        // A restart may race the kernel releasing the ports: retry briefly.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match LogdProcess::spawn(
                &flotilla_exe(),
                &self.data,
                &format!("relp://127.0.0.1:{}", self.relp),
                &format!("127.0.0.1:{}", self.http),
                &["--peers", peers],
            ) {
                Ok(p) => return p,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("logd did not start ({e}); retrying");
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => panic!("logd on {} does not start: {e}", self.data.display()),
            }
        }
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The `x-flotilla-nodes` report of an answer.
fn nodes_report(headers: &[(String, String)]) -> Vec<Value> {
    let text = headers
        .iter()
        .find(|(k, _)| k == "x-flotilla-nodes")
        .map(|(_, v)| v.clone())
        .expect("an x-flotilla-nodes header");
    serde_json::from_str(&text).expect("x-flotilla-nodes is JSON")
}

/// The message numbers of a node's merged, streamed answer (`limit=0`), with the report.
fn numbers_via(http: u16) -> (Vec<usize>, Vec<Value>) {
    let (body, headers) =
        http_get(addr(http), "/api/query?app=ha-test&limit=0").expect("a merged query");
    let mut numbers = Vec::new();
    let mut last_ns = i64::MIN;
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        // Merged oldest first.
        let ns = v["received_at_ns"].as_i64().unwrap();
        assert!(ns >= last_ns, "out of order: {line}");
        last_ns = ns;
        assert!(v.get("dup").is_none(), "key field leaked: {line}");
        let msg = v["msg"].as_str().unwrap();
        if let Some(n) = msg.strip_prefix("ha-msg ") {
            numbers.push(n.parse().unwrap());
        }
    }
    (numbers, nodes_report(&headers))
}

fn records_of(http: u16) -> u64 {
    http_get(addr(http), "/api/stats")
        .ok()
        .and_then(|(b, _)| serde_json::from_str::<Value>(&b).ok())
        .and_then(|v| v["records"].as_u64())
        .unwrap_or(0)
}

/// A merged tail of node `http` (`/api/tail?QUERY`): its events as (name, data), read for
/// 20 s at most.
fn tail_events(http: u16, query: &str) -> impl Iterator<Item = (String, String)> + use<> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let response = agent
        .get(format!("http://127.0.0.1:{http}/api/tail?{query}"))
        .call()
        .expect("a merged tail");
    let mut reader = BufReader::new(response.into_body().into_reader());
    let mut event = String::new();
    std::iter::from_fn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "tail ended");
            let l = line.trim_end();
            if let Some(e) = l.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = l.strip_prefix("data:") {
                return Some((event.clone(), d.trim().to_string()));
            }
        }
    })
}

/// Reads a tail's events until the first `nodes` event; returns its data.
fn first_nodes_event(http: u16) -> Value {
    let (_, data) = tail_events(http, "app=ha-test")
        .find(|(event, _)| event == "nodes")
        .unwrap();
    serde_json::from_str(&data).unwrap()
}

/// The first `n` records of a merged tail with `backfill=n` (their messages), checked to
/// be in received-at order.
fn tail_backfill(http: u16, n: usize) -> Vec<String> {
    let records: Vec<Value> = tail_events(http, &format!("app=ha-test&backfill={n}"))
        .filter(|(event, _)| event == "record")
        .take(n)
        .map(|(_, data)| serde_json::from_str(&data).unwrap())
        .collect();
    let times: Vec<i64> = records
        .iter()
        .map(|v| v["received_at_ns"].as_i64().unwrap())
        .collect();
    assert!(times.is_sorted(), "backfill out of order: {times:?}");
    records
        .iter()
        .map(|v| v["msg"].as_str().unwrap().to_string())
        .collect()
}

fn check_once(numbers: &[usize], via: &str) {
    let mut seen = vec![0u32; MESSAGES];
    for &n in numbers {
        seen[n] += 1;
    }
    let missing: Vec<usize> = (0..MESSAGES).filter(|&n| seen[n] == 0).collect();
    let twice: Vec<usize> = (0..MESSAGES).filter(|&n| seen[n] > 1).collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "via {via}: {} missing (first {:?}), {} more than once (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        twice.len(),
        &twice[..twice.len().min(10)]
    );
}

#[test]
fn three_nodes_one_killed_every_acknowledged_message_is_found_once_through_each() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let relp = free_ports(3);
    let http = free_ports(3);
    let nodes: Vec<Node> = (0..3)
        .map(|i| Node {
            data: dir.path().join(format!("node{i}")),
            relp: relp[i],
            http: http[i],
        })
        .collect();
    let peers = http
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut running: Vec<Option<LogdProcess>> =
        nodes.iter().map(|n| Some(n.start(&peers))).collect();

    // Each data directory has its own node id, kept across restarts.
    let ids: Vec<String> = nodes
        .iter()
        .map(|n| {
            std::fs::read_to_string(n.data.join("node.id"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );

    let collectors = relp
        .iter()
        .map(|p| format!("relp://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut config = Config::with_collectors(&collectors).unwrap();
    config.app_name = Some("ha-test".into());
    config.hostname = Some("ha-host".into());
    config.queue_capacity = MESSAGES * 2;
    config.heartbeat = None;
    let logger = Logger::start(config).unwrap();

    for i in 0..KILL_AFTER {
        logger.log(Severity::Informational, &format!("ha-msg {i:06}"), &[]);
    }
    // Mid-stream: once some of it is stored, kill the node that has the most.
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.iter().map(|&p| records_of(p)).sum::<u64>() < (KILL_AFTER / 3) as u64 {
        assert!(Instant::now() < deadline, "nothing stored in 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let victim = (0..3).max_by_key(|&i| records_of(http[i])).unwrap();
    let before = records_of(http[victim]);
    running[victim].take().unwrap().kill9();
    eprintln!(
        "killed node {victim} ({}) with {before} records stored",
        ids[victim]
    );
    for i in KILL_AFTER..MESSAGES {
        logger.log(Severity::Informational, &format!("ha-msg {i:06}"), &[]);
    }

    // While it is down: the others answer, and name it as not answering.
    let other = (victim + 1) % 3;
    let t = Instant::now();
    let (_, report) = numbers_via(http[other]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a dead node cost {:?}",
        t.elapsed()
    );
    let dead_url = format!("http://127.0.0.1:{}", http[victim]);
    assert_eq!(report.len(), 3, "{report:?}");
    let dead: Vec<&Value> = report.iter().filter(|n| n["ok"] == false).collect();
    assert_eq!(dead.len(), 1, "{report:?}");
    assert_eq!(dead[0]["url"], dead_url.as_str(), "{report:?}");
    assert!(dead[0]["error"].as_str().is_some_and(|e| !e.is_empty()));
    // The same through a limited query, statistics, a tail, and the CLI's warning.
    let (_, headers) = http_get(addr(http[other]), "/api/query?app=ha-test&limit=10").unwrap();
    assert!(
        nodes_report(&headers)
            .iter()
            .any(|n| n["url"] == dead_url.as_str() && n["ok"] == false)
    );
    let (stats, _) = http_get(addr(http[other]), "/api/query/stats?app=ha-test&limit=0").unwrap();
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert!(
        stats["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["url"] == dead_url.as_str() && n["ok"] == false),
        "{stats}"
    );
    let tail_nodes = first_nodes_event(http[other]);
    assert!(
        tail_nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["url"] == dead_url.as_str() && n["ok"] == false),
        "{tail_nodes}"
    );
    let cli = std::process::Command::new(flotilla_exe())
        .args([
            "logs", "query", "--app", "ha-test", "--limit", "5", "--logd",
        ])
        .arg(format!("http://127.0.0.1:{}", http[other]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(cli.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("warning: node {dead_url}")) && stderr.contains("did not answer"),
        "{stderr}"
    );

    // Back on the same data directory and ports.
    running[victim] = Some(nodes[victim].start(&peers));
    assert_eq!(
        std::fs::read_to_string(nodes[victim].data.join("node.id"))
            .unwrap()
            .trim(),
        ids[victim]
    );
    assert!(
        logger.flush(Duration::from_secs(120)),
        "not everything acknowledged: {:?}",
        logger.stats()
    );
    let stats = logger.stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert!(stats.delivered >= MESSAGES as u64, "{stats:?}");
    logger.shutdown(Duration::from_secs(5));

    // Stored per node (duplicates included) and through each node, merged, once each.
    let stored: Vec<u64> = http
        .iter()
        .map(|&p| {
            let (b, _) = http_get(addr(p), "/api/query/stats?app=ha-test&limit=0&local=1").unwrap();
            serde_json::from_str::<Value>(&b).unwrap()["matched"]
                .as_u64()
                .unwrap()
        })
        .collect();
    eprintln!(
        "stored per node {stored:?}: {} duplicates",
        stored.iter().sum::<u64>() as i64 - MESSAGES as i64
    );
    for (i, &p) in http.iter().enumerate() {
        let (numbers, report) = numbers_via(p);
        assert!(report.iter().all(|n| n["ok"] == true), "{report:?}");
        assert_eq!(report.len(), 3, "{report:?}");
        check_once(&numbers, &format!("node {i}"));
    }

    // A merged tail's backfill is the newest N over every node (not N of each), merged
    // by received-at: the same records, in the same order, as the merged query's newest N.
    let (body, _) = http_get(addr(http[0]), "/api/query?app=ha-test&limit=50").unwrap();
    let newest: Vec<String> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["msg"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(newest.len(), 50);
    assert_eq!(tail_backfill(http[0], 50), newest);
    drop(running);
    eprintln!("done in {:?}", started.elapsed());
}
