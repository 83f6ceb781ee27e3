//! The HTTP API end to end: a store on a temporary directory served on loopback, asked
//! with a real HTTP client (queries, errors, tails with backfill, stats, health, metrics,
//! shutdown with open tails).

// Tests and benchmarks are shells: they drive real time, sockets and tasks.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap: a panic is a test failure.

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flotilla_logd::http::{self, HttpState};
use flotilla_logd::query::QuerySpec;
use flotilla_logd::{Error, Record, RecordJson, Source, Store, StoreConfig};
use serde_json::{Value, json};

const NODE: &str = "test-node";

/// A served store. Dropping it stops the server and the store.
struct Server {
    base: String,
    store: Store,
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), Error>>>,
    _dir: tempfile::TempDir,
}

fn start() -> Server {
    start_with_peers(None)
}

/// A served store; with `peers`, queries and tails without `local=1` go through
/// [`flotilla_logd::peers`] (this node asked through its own address, and these).
fn start_with_peers(peers: Option<&[String]>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.node_id = NODE.into();
    config.commit_interval = Duration::from_millis(2);
    let store = Store::open(config).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let peers = peers.map(|urls| {
        Arc::new(
            flotilla_logd::peers::Peers::new(urls, NODE, Some(listener.local_addr().unwrap()))
                .unwrap(),
        )
    });
    let state = HttpState {
        peers,
        extra_stats: Arc::new(|| {
            json!({"listeners": [
                {"url": "tcp://127.0.0.1:6514", "connections_open": 1, "connections_total": 3,
                 "frames": 10, "bytes": 1234, "tls": false},
                {"url": "udp://127.0.0.1:514", "connections_open": 0, "frames": 7,
                 "udp_dropped": 2}
            ]})
        }),
        ..HttpState::new(store.clone())
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Server {
        base,
        store,
        rt,
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

impl Server {
    /// Stores frames (each its own record, received `step` apart from `t0`), durably.
    fn ingest_at(&self, t0: i64, step: i64, lines: &[&[u8]]) {
        let records: Vec<Record> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| Record {
                received_at: t0 + step * i as i64,
                source: Source::LOCAL,
                flags: 0,
                raw: line.to_vec().into(),
            })
            .collect();
        self.store.ingest().submit_blocking(records, true).unwrap();
    }

    fn ingest(&self, lines: &[&[u8]]) {
        self.ingest_at(flotilla_logd::record::now_nanos(), 1, lines);
    }

    /// Stops serving; returns how long `serve` took to return.
    fn stop(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
            if !std::thread::panicking() {
                result
                    .expect("serve returns after shutdown")
                    .unwrap()
                    .unwrap();
            }
        }
        started.elapsed()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        self.store.shutdown();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// GET with parameters (percent-encoded here); returns status, headers and body.
fn get(url: &str, params: &[(&str, &str)]) -> (u16, http_headers::Headers, String) {
    let mut response = agent()
        .get(url)
        .query_pairs(params.iter().copied())
        .call()
        .unwrap();
    let status = response.status().as_u16();
    let headers = http_headers::Headers(response.headers().clone());
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap();
    (status, headers, body)
}

mod http_headers {
    /// Response headers (the `http` crate's map, through ureq).
    pub struct Headers(pub ureq::http::HeaderMap);

    impl Headers {
        pub fn str(&self, name: &str) -> Option<&str> {
            self.0.get(name).and_then(|v| v.to_str().ok())
        }
    }
}

/// Request parameters, owned.
type Params = Vec<(&'static str, String)>;

/// One request parameter.
type Param<'a> = (&'a str, &'a str);

fn records(body: &str) -> Vec<RecordJson> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The test set: (frame, what it is). Indexes are used by the assertions.
const LINES: [&[u8]; 7] = [
    br#"<11>1 2024-01-01T00:00:00Z web-1 api 42 REQ [req@32473 user="u1" path="/a&b c=d"] failed id-7 for user"#,
    br#"<14>1 2024-01-01T00:00:01Z web-2 api 43 REQ [req@32473 user="u2"] ok id-8"#,
    b"<12>1 2024-01-01T00:00:02Z db-1 postgres 7 - - checkpoint starting",
    b"<10>1 2024-01-01T00:00:03Z web-1 worker 9 JOB - crit timeout in job",
    b"garbage without any header",
    b"<13>Jan  1 00:00:04 web-3 cron[5]: rfc3164 line",
    b"<14>1 - web-1 api - - - bytes \xff\xfe",
];

/// A server with [`LINES`] received one second apart from a whole second 10 minutes ago.
fn with_lines() -> (Server, i64) {
    let server = start();
    let t0_secs = flotilla_logd::record::now_nanos() / 1_000_000_000 - 600;
    server.ingest_at(t0_secs * 1_000_000_000, 1_000_000_000, &LINES);
    (server, t0_secs)
}

/// Which of [`LINES`] a query returned (ids start at 1 in a fresh store).
fn which(body: &str) -> Vec<u64> {
    records(body).iter().map(|r| r.id - 1).collect()
}

#[test]
fn query_filters_return_exactly_the_matches() {
    let (server, t0) = with_lines();
    let q = server.url("/api/query");

    let (status, headers, body) = get(&q, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers.str("content-type"), Some("application/x-ndjson"));
    assert_eq!(which(&body), vec![0, 1, 2, 3, 4, 5, 6]);
    let all = records(&body);
    let first = &all[0];
    assert_eq!(first.node.as_deref(), Some(NODE));
    assert_eq!(first.hostname.as_deref(), Some("web-1"));
    assert_eq!(first.app_name.as_deref(), Some("api"));
    assert_eq!(first.proc_id.as_deref(), Some("42"));
    assert_eq!(first.msg_id.as_deref(), Some("REQ"));
    assert_eq!(first.severity, "err");
    assert_eq!(first.facility, "user");
    assert_eq!(first.format, "rfc5424");
    assert_eq!(first.transport, "local");
    assert_eq!(first.msg, "failed id-7 for user");
    assert_eq!(first.structured_data["req@32473"]["path"], "/a&b c=d");
    assert_eq!(first.received_at_ns, t0 * 1_000_000_000);
    assert_eq!(all[4].format, "unparsed");
    assert_eq!(all[5].format, "rfc3164");
    assert!(all[6].raw_base64.is_some());
    // Statistics headers on a limited query.
    assert_eq!(headers.str("x-flotilla-matched"), Some("7"));
    assert_eq!(headers.str("x-flotilla-records-scanned"), Some("7"));
    assert!(headers.str("x-flotilla-segments-in-range").is_some());
    assert!(headers.str("x-flotilla-blocks-opened").is_some());
    let stats = http::stats_from_headers(&headers.0).unwrap();
    assert_eq!(stats.matched, 7);

    let cases: Vec<(Params, Vec<u64>)> = vec![
        (
            vec![("host", "web-1".into()), ("host", "web-2".into())],
            vec![0, 1, 3, 6],
        ),
        (vec![("app", "api".into())], vec![0, 1, 6]),
        (vec![("msgid", "JOB".into())], vec![3]),
        (vec![("procid", "7".into())], vec![2]),
        (vec![("severity", "..err".into())], vec![0, 3]),
        (vec![("severity", "warning..notice".into())], vec![2, 4, 5]),
        (vec![("sd", "req@32473.user=u1".into())], vec![0]),
        (vec![("sd", "req@32473.path=/a&b c=d".into())], vec![0]),
        (
            vec![
                ("sd", "req@32473.user=u1".into()),
                ("sd", "req@32473.user=u2".into()),
            ],
            vec![],
        ),
        (vec![("grep", "timeout".into())], vec![3]),
        (vec![("grep", "time".into())], vec![]),
        (vec![("substr", "eckpoi".into())], vec![2]),
        (vec![("unparsed", "1".into())], vec![4]),
        (
            vec![("unparsed", "false".into())],
            vec![0, 1, 2, 3, 4, 5, 6],
        ),
        (
            vec![
                ("since", format!("@{}", t0 + 2)),
                ("until", format!("@{}", t0 + 4)),
            ],
            vec![2, 3],
        ),
        (vec![("until", "1h".into())], vec![]),
        (
            vec![("since", "1h".into()), ("app", "api".into())],
            vec![0, 1, 6],
        ),
        (vec![("limit", "2".into())], vec![5, 6]),
        (vec![("app", "api".into()), ("limit", "1".into())], vec![6]),
        (vec![("limit", "0".into())], vec![0, 1, 2, 3, 4, 5, 6]),
        (
            vec![("limit", "0".into()), ("host", "web-1".into())],
            vec![0, 3, 6],
        ),
    ];
    for (params, want) in cases {
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, body) = get(&q, &p);
        assert_eq!(status, 200, "{params:?}: {body}");
        assert_eq!(which(&body), want, "{params:?}");
    }

    // The stats endpoint runs the same query without the records.
    let (status, _, body) = get(&server.url("/api/query/stats"), &[("app", "api")]);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["matched"], 3);
    assert_eq!(v["stats"]["matched"], 3);
    assert_eq!(v["stats"]["records_scanned"], 7);
    let (_, _, body) = get(
        &server.url("/api/query/stats"),
        &[("app", "api"), ("limit", "1")],
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["matched"], 1);
    let (_, _, body) = get(&server.url("/api/query/stats"), &[("limit", "0")]);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["matched"], 7);
}

#[test]
fn query_pairs_round_trip_through_the_api() {
    let (server, _) = with_lines();
    let spec = QuerySpec {
        since: Some("1d".into()),
        host: vec!["web-1".into(), "web-9".into()],
        app: vec!["api".into()],
        severity: Some("..err".into()),
        sd: vec!["req@32473.path=/a&b c=d".into()],
        grep: vec!["id-7".into()],
        substr: vec!["for user".into()],
        ..Default::default()
    };
    let pairs = http::query_pairs(&spec);
    let p: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, body) = get(&server.url("/api/query"), &p);
    assert_eq!(status, 200, "{body}");
    assert_eq!(which(&body), vec![0]);
    let unparsed = QuerySpec {
        unparsed: true,
        ..Default::default()
    };
    assert_eq!(
        http::query_pairs(&unparsed),
        vec![("unparsed", "1".to_string())]
    );
}

#[test]
fn streamed_query_returns_everything_in_order() {
    let server = start();
    let n = 20_000usize;
    let lines: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            format!(
                "<14>1 - host-{} app - - - record number {i} {}",
                i % 3,
                "x".repeat(i % 50)
            )
            .into_bytes()
        })
        .collect();
    for chunk in lines.chunks(2000) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        server.ingest(&refs);
    }
    server.store.seal_now().unwrap();
    server.ingest(&[b"<14>1 - host-0 app - - - after the seal"]);
    let (status, headers, body) = get(&server.url("/api/query"), &[("limit", "0")]);
    assert_eq!(status, 200);
    assert_eq!(
        headers.str("x-flotilla-matched"),
        None,
        "streamed: no stats headers"
    );
    let got = records(&body);
    assert_eq!(got.len(), n + 1);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.id, i as u64 + 1);
    }
    assert_eq!(got[n].msg, "after the seal");
    let (_, _, body) = get(
        &server.url("/api/query"),
        &[("limit", "0"), ("host", "host-1")],
    );
    assert_eq!(records(&body).len(), (0..n).filter(|i| i % 3 == 1).count());
    // A client that goes away mid-stream does not hold anything up.
    let mut response = agent()
        .get(&server.url("/api/query"))
        .query("limit", "0")
        .call()
        .unwrap();
    let mut reader = BufReader::new(response.body_mut().as_reader());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    drop(reader);
    drop(response);
    let (status, _, _) = get(&server.url("/health"), &[]);
    assert_eq!(status, 200);
}

#[test]
fn bad_requests_get_a_clear_400() {
    let (server, _) = with_lines();
    let cases: [(&str, &[Param], &str); 16] = [
        (
            "/api/query",
            &[("bogus", "1")],
            "unknown parameter \"bogus\"",
        ),
        ("/api/query", &[("severity", "loud")], "unknown severity"),
        ("/api/query", &[("since", "yesterday")], "bad time"),
        ("/api/query", &[("limit", "abc")], "whole number"),
        ("/api/query", &[("limit", "-1")], "whole number"),
        (
            "/api/query",
            &[("limit", "1"), ("limit", "2")],
            "more than once",
        ),
        ("/api/query", &[("host", "")], "empty value"),
        ("/api/query", &[("sd", "novalue")], "SD-ID.PARAM=VALUE"),
        ("/api/query", &[("since", "1h"), ("until", "2h")], "before"),
        ("/api/query", &[("limit", "100001")], "limit=0"),
        ("/api/query", &[("unparsed", "maybe")], "expected 1"),
        (
            "/api/query",
            &[("backfill", "3")],
            "only accepted by /api/tail",
        ),
        ("/api/query/stats", &[("grep", "")], "empty value"),
        ("/api/tail", &[("since", "1h")], "not accepted by /api/tail"),
        ("/api/tail", &[("after", "x")], "record id"),
        ("/api/tail", &[("backfill", "1000000")], "backfill"),
    ];
    for (path, params, needle) in cases {
        let (status, headers, body) = get(&server.url(path), params);
        assert_eq!(status, 400, "{path} {params:?}: {body}");
        assert_eq!(headers.str("content-type"), Some("application/json"));
        let v: Value = serde_json::from_str(&body).unwrap();
        let message = v["error"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{path} {params:?}: {message:?} lacks {needle:?}"
        );
    }
    let (status, _, body) = get(&server.url("/nope"), &[]);
    assert_eq!(status, 404);
    assert!(body.contains("no such endpoint"), "{body}");
    let response = agent().post(&server.url("/api/query")).send("x").unwrap();
    assert_eq!(response.status().as_u16(), 405);
    // The server is unharmed.
    let (status, _, body) = get(&server.url("/api/query"), &[]);
    assert_eq!(status, 200);
    assert_eq!(records(&body).len(), 7);
}

/// One server-sent event.
#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

impl SseEvent {
    fn record(&self) -> RecordJson {
        assert_eq!(self.event, "record", "{self:?}");
        let r: RecordJson = serde_json::from_str(&self.data).unwrap();
        assert_eq!(self.id.as_deref(), Some(r.id.to_string().as_str()));
        r
    }
}

/// A tail being read on its own thread.
struct TailReader {
    rx: mpsc::Receiver<Option<SseEvent>>,
}

impl TailReader {
    fn open(url: &str, params: &[(&str, &str)], last_event_id: Option<&str>) -> TailReader {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut request = agent.get(url).query_pairs(params.iter().copied());
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.call().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let reader = BufReader::new(response.into_body().into_reader());
            let (mut event, mut id, mut data) = (String::new(), None, String::new());
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if line.is_empty() {
                    if !data.is_empty() || !event.is_empty() {
                        let e = SseEvent {
                            event: std::mem::take(&mut event),
                            id: id.take(),
                            data: std::mem::take(&mut data),
                        };
                        if tx.send(Some(e)).is_err() {
                            return;
                        }
                    }
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim_start().to_string();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim_start().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            let _ = tx.send(None);
        });
        TailReader { rx }
    }

    /// The next event; panics after 10 s.
    fn next(&self) -> SseEvent {
        match self.rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Some(e)) => e,
            Ok(None) => panic!("the tail ended"),
            Err(e) => panic!("no event: {e}"),
        }
    }

    /// Whether nothing arrives for `wait`.
    fn quiet_for(&self, wait: Duration) -> bool {
        matches!(
            self.rx.recv_timeout(wait),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    }

    /// Whether the stream ends within `wait`.
    fn ends_within(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

#[test]
fn tail_sends_matching_records_as_they_arrive() {
    let server = start();
    server.ingest(&[b"<14>1 - h1 api - - - before the tail"]);
    let tail = TailReader::open(&server.url("/api/tail"), &[("app", "api")], None);
    server.ingest(&[
        b"<14>1 - h1 api - - - one",
        b"<14>1 - h1 db - - - not for this tail",
        b"<11>1 - h2 api - - - two",
    ]);
    let one = tail.next().record();
    let two = tail.next().record();
    assert_eq!((one.msg.as_str(), two.msg.as_str()), ("one", "two"));
    assert_eq!(one.node.as_deref(), Some(NODE));
    assert_eq!(two.severity, "err");
    assert!(one.id < two.id);
    assert!(tail.quiet_for(Duration::from_millis(300)));
    // A severity-filtered tail alongside.
    let errors = TailReader::open(&server.url("/api/tail"), &[("severity", "..err")], None);
    server.ingest(&[b"<14>1 - h1 api - - - three", b"<11>1 - h1 x - - - four"]);
    assert_eq!(tail.next().record().msg, "three");
    assert_eq!(errors.next().record().msg, "four");
    assert!(errors.quiet_for(Duration::from_millis(200)));
}

fn numbered(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range
        .map(|i| format!("<14>1 - h seq - - - n={i}").into_bytes())
        .collect()
}

fn n_of(r: &RecordJson) -> usize {
    r.msg.strip_prefix("n=").unwrap().parse().unwrap()
}

#[test]
fn tail_backfill_then_live_without_duplicates() {
    let server = start();
    let first = numbered(0..5);
    server.ingest(&first.iter().map(Vec::as_slice).collect::<Vec<_>>());
    server.ingest(&[b"<14>1 - h other - - - not matching"]);
    let tail = TailReader::open(
        &server.url("/api/tail"),
        &[("app", "seq"), ("backfill", "3")],
        None,
    );
    let back: Vec<usize> = (0..3).map(|_| n_of(&tail.next().record())).collect();
    assert_eq!(back, vec![2, 3, 4]);
    let more = numbered(5..8);
    server.ingest(&more.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let live: Vec<usize> = (0..3).map(|_| n_of(&tail.next().record())).collect();
    assert_eq!(live, vec![5, 6, 7]);
    assert!(tail.quiet_for(Duration::from_millis(200)));

    // Resuming after an id (parameter or Last-Event-ID): only what came after it.
    let (_, _, body) = get(&server.url("/api/query"), &[("app", "seq")]);
    let all = records(&body);
    let after = all[5].id.to_string();
    for (params, header) in [
        (
            vec![
                ("app", "seq"),
                ("backfill", "100"),
                ("after", after.as_str()),
            ],
            None,
        ),
        (
            vec![("app", "seq"), ("backfill", "100")],
            Some(after.as_str()),
        ),
    ] {
        let tail = TailReader::open(&server.url("/api/tail"), &params, header);
        let got: Vec<usize> = (0..2).map(|_| n_of(&tail.next().record())).collect();
        assert_eq!(got, vec![6, 7]);
        assert!(tail.quiet_for(Duration::from_millis(200)));
    }
}

#[test]
fn tail_backfill_while_writing_has_no_gap_and_no_duplicate() {
    let server = start();
    let total = 400usize;
    let stop = Arc::new(AtomicBool::new(false));
    let (progress_tx, progress_rx) = mpsc::channel::<usize>();
    let ingest = server.store.ingest();
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for (i, line) in numbered(0..total).into_iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let record = Record {
                    received_at: flotilla_logd::record::now_nanos(),
                    source: Source::LOCAL,
                    flags: 0,
                    raw: line.into(),
                };
                ingest.submit_blocking(vec![record], i % 2 == 0).unwrap();
                let _ = progress_tx.send(i);
            }
        })
    };
    // Connect while records are being written.
    while progress_rx.recv_timeout(Duration::from_secs(10)).unwrap() < 100 {}
    let tail = TailReader::open(
        &server.url("/api/tail"),
        &[("app", "seq"), ("backfill", "1000")],
        None,
    );
    let mut seen: Vec<usize> = Vec::new();
    let mut ids: Vec<u64> = Vec::new();
    while seen.last() != Some(&(total - 1)) {
        let r = tail.next().record();
        seen.push(n_of(&r));
        ids.push(r.id);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(seen, (0..total).collect::<Vec<_>>(), "gap or duplicate");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(tail.quiet_for(Duration::from_millis(200)));
}

#[test]
fn stats_health_and_metrics() {
    let (server, _) = with_lines();
    let (status, headers, body) = get(&server.url("/health"), &[]);
    assert_eq!(status, 200);
    assert_eq!(headers.str("content-type"), Some("application/json"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({"status": "ok", "node": NODE}));

    let (status, _, body) = get(&server.url("/api/stats"), &[]);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["node_id"], NODE);
    assert_eq!(v["records"], 7);
    assert_eq!(v["unparsed"], 1);
    assert!(v["error"].is_null());
    assert_eq!(v["listeners"][0]["url"], "tcp://127.0.0.1:6514");
    assert_eq!(v["listeners"][1]["udp_dropped"], 2);

    let (status, headers, text) = get(&server.url("/metrics"), &[]);
    assert_eq!(status, 200);
    assert_eq!(
        headers.str("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for want in [
        "# TYPE flotilla_logd_records_total counter",
        "flotilla_logd_records_total 7\n",
        "flotilla_logd_indexed_total 7\n",
        "flotilla_logd_up 1\n",
        "flotilla_logd_info{node=\"test-node\"} 1\n",
        "flotilla_logd_unparsed_total 1\n",
        "flotilla_logd_write_errors_total 0\n",
        "# TYPE flotilla_logd_sync_seconds_mean gauge",
        "# TYPE flotilla_logd_segments gauge",
        "# TYPE flotilla_logd_queue_capacity_bytes gauge",
        "flotilla_logd_source_records_total{source=\"0.0.0.0\"} 7\n",
        "# TYPE flotilla_logd_listener_connections_open gauge",
        "flotilla_logd_listener_connections_open{url=\"tcp://127.0.0.1:6514\"} 1\n",
        "flotilla_logd_listener_connections_open{url=\"udp://127.0.0.1:514\"} 0\n",
        "# TYPE flotilla_logd_listener_frames counter",
        "flotilla_logd_listener_frames{url=\"udp://127.0.0.1:514\"} 7\n",
        "flotilla_logd_listener_tls{url=\"tcp://127.0.0.1:6514\"} 0\n",
        "flotilla_logd_listener_udp_dropped{url=\"udp://127.0.0.1:514\"} 2\n",
    ] {
        assert!(text.contains(want), "metrics lack {want:?}:\n{text}");
    }
    check_exposition(&text);
}

/// Every line is a comment or `name{labels} value`, and each family's samples follow its
/// HELP and TYPE lines.
fn check_exposition(text: &str) {
    let mut typed: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(!typed.iter().any(|t| t == name), "family {name} twice");
            typed.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(
            value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value),
            "{line}"
        );
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert_eq!(typed.last().map(String::as_str), Some(name), "{line}");
    }
}

#[test]
fn listener_metrics_from_other_shapes() {
    let server = start();
    let stats = server.store.stats();
    let keyed = json!({
        "tcp": {"frames": 3, "errors": {"frame": 1}},
        "relp \"main\"": {"frames": 4, "in_flight": 2}
    });
    let text = http::metrics_text(&stats, &keyed);
    for want in [
        "flotilla_logd_listener_frames{listener=\"tcp\"} 3\n",
        "flotilla_logd_listener_frames{listener=\"relp \\\"main\\\"\"} 4\n",
        "flotilla_logd_listener_errors_frame{listener=\"tcp\"} 1\n",
        "# TYPE flotilla_logd_listener_in_flight gauge",
    ] {
        assert!(text.contains(want), "metrics lack {want:?}:\n{text}");
    }
    check_exposition(&text);
    let flat = http::metrics_text(&stats, &json!({"udp_dropped": 5, "ratio": 0.5}));
    assert!(
        flat.contains("flotilla_logd_listener_udp_dropped 5\n"),
        "{flat}"
    );
    assert!(
        flat.contains("flotilla_logd_listener_ratio 0.5\n"),
        "{flat}"
    );
    check_exposition(&flat);
    // The default: no listener metrics at all.
    let none = http::metrics_text(&stats, &json!({}));
    assert!(!none.contains("flotilla_logd_listener_"));
    check_exposition(&none);
}

#[test]
fn shutdown_ends_open_tails() {
    let mut server = start();
    let tail = TailReader::open(&server.url("/api/tail"), &[], None);
    server.ingest(&[b"<14>1 - h a - - - hello"]);
    assert_eq!(tail.next().record().msg, "hello");
    let took = server.stop();
    // A hang guard (a tail must not hold the server open), not a timing target.
    assert!(
        took < Duration::from_secs(20),
        "serve took {took:?} to stop"
    );
    assert!(tail.ends_within(Duration::from_secs(5)));
}

#[test]
fn router_serves_without_serve() {
    // The router alone (e.g. mounted in another server).
    let server = start();
    let app = http::router(HttpState::new(server.store.clone()));
    let listener = server
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = server
        .rt
        .spawn(async move { axum::serve(listener, app).await });
    let (status, _, body) = get(&format!("{base}/health"), &[]);
    assert_eq!(status, 200, "{body}");
    let (_, _, body) = get(&format!("{base}/api/stats"), &[]);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["listeners"], json!({}));
    task.abort();
}

/// `[meta sequenceId="i"]` frames of app `dup`, message `n=i`.
fn sequenced(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range
        .map(|i| format!("<14>1 - h dup - - [meta sequenceId=\"{i}\"] n={i}").into_bytes())
        .collect()
}

fn slices(frames: &[Vec<u8>]) -> Vec<&[u8]> {
    frames.iter().map(Vec::as_slice).collect()
}

#[test]
fn a_limited_query_returns_n_distinct_records_past_duplicates() {
    // Through the peers' path (this node asked as a peer) and on the node alone.
    let server = start_with_peers(Some(&[]));
    let frames = sequenced(0..10);
    server.ingest(&slices(&frames));
    // The newest three stored again (a RELP resend after a reconnect).
    server.ingest(&slices(&frames[7..]));
    for local in [false, true] {
        let mut params = vec![("app", "dup"), ("limit", "5")];
        if local {
            params.push(("local", "1"));
        }
        let (status, _, body) = get(&server.url("/api/query"), &params);
        assert_eq!(status, 200, "{body}");
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let msgs: Vec<&str> = lines.iter().map(|r| r["msg"].as_str().unwrap()).collect();
        assert_eq!(
            msgs,
            ["n=5", "n=6", "n=7", "n=8", "n=9"],
            "local={local}: a page of 5 is 5 distinct records"
        );
        // Of the copies, the first stored is the one shown (ids 1..=10 are the first).
        assert!(
            lines.iter().all(|r| r["id"].as_u64().unwrap() <= 10),
            "{body}"
        );
        // Fewer than asked only when nothing older is left.
        params[1] = ("limit", "20");
        let (_, _, body) = get(&server.url("/api/query"), &params);
        assert_eq!(body.lines().count(), 10, "local={local}: {body}");
    }
}

#[test]
fn a_resumed_tail_says_when_its_backfill_skipped_records() {
    let server = start();
    let frames = numbered(0..10);
    server.ingest(&slices(&frames));
    let (_, _, body) = get(&server.url("/api/query"), &[("app", "seq")]);
    let ids: Vec<String> = records(&body).iter().map(|r| r.id.to_string()).collect();
    // Resumed after n=2 with room for 3: n=3..=6 are skipped, and the tail says so.
    let tail = TailReader::open(
        &server.url("/api/tail"),
        &[
            ("app", "seq"),
            ("after", ids[2].as_str()),
            ("backfill", "3"),
        ],
        None,
    );
    let lagged = tail.next();
    assert_eq!(lagged.event, "lagged", "{lagged:?}");
    let data: Value = serde_json::from_str(&lagged.data).unwrap();
    assert_eq!(data, json!({"backfill_capped": 3, "node": NODE}));
    let got: Vec<usize> = (0..3).map(|_| n_of(&tail.next().record())).collect();
    assert_eq!(got, [7, 8, 9]);
    assert!(tail.quiet_for(Duration::from_millis(200)));
    // Exactly room for what came after: nothing skipped, nothing said.
    for (after, backfill) in [(&ids[6], "3"), (&ids[6], "100")] {
        let tail = TailReader::open(
            &server.url("/api/tail"),
            &[
                ("app", "seq"),
                ("after", after.as_str()),
                ("backfill", backfill),
            ],
            None,
        );
        let got: Vec<usize> = (0..3).map(|_| n_of(&tail.next().record())).collect();
        assert_eq!(got, [7, 8, 9]);
        assert!(tail.quiet_for(Duration::from_millis(200)));
    }
}

#[test]
fn a_merged_tail_resumed_past_the_backfill_cap_says_so() {
    let server = start_with_peers(Some(&[]));
    server.ingest(&[b"<14>1 - h cap - - - first"]);
    // More than a resume fetches back (MAX_LIMIT) after the cursor.
    let n = http::MAX_LIMIT + 3;
    for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
        let frames: Vec<Vec<u8>> = chunk
            .iter()
            .map(|i| format!("<14>1 - h cap - - - n={i}").into_bytes())
            .collect();
        server.ingest(&slices(&frames));
    }
    let tail = TailReader::open(
        &server.url("/api/tail"),
        &[("app", "cap"), ("after", format!("{NODE}=1").as_str())],
        None,
    );
    let nodes = tail.next();
    assert_eq!(nodes.event, "nodes", "{nodes:?}");
    let lagged = tail.next();
    assert_eq!(lagged.event, "lagged", "{lagged:?}");
    let data: Value = serde_json::from_str(&lagged.data).unwrap();
    assert_eq!(data["backfill_capped"], http::MAX_LIMIT);
    assert_eq!(data["node"], NODE);
    let first = tail.next();
    assert_eq!(first.event, "record");
    let r: RecordJson = serde_json::from_str(&first.data).unwrap();
    assert_eq!(r.msg, "n=3", "the newest MAX_LIMIT come");
}

#[test]
fn a_peer_that_accepts_but_never_answers_does_not_stall_a_merged_tail() {
    // Accepts connections and never writes a byte.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("http://{}", hung.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hung.incoming() {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => return,
            }
        }
    });
    let server = start_with_peers(Some(std::slice::from_ref(&hung_url)));
    // This node streams all along: records keep arriving from it.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let ingest = server.store.ingest();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let record = Record {
                    received_at: flotilla_logd::record::now_nanos(),
                    source: Source::LOCAL,
                    flags: 0,
                    raw: format!("<14>1 - h beat - - - n={i}").into_bytes().into(),
                };
                ingest.submit_blocking(vec![record], true).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let tail = TailReader::open(&server.url("/api/tail"), &[("app", "beat")], None);
    let opened = Instant::now();
    // The first event: the nodes, the silent one not ok, within the start wait (4 s).
    let nodes = tail.next();
    assert_eq!(nodes.event, "nodes", "{nodes:?}");
    assert!(
        opened.elapsed() < Duration::from_secs(8),
        "{:?}",
        opened.elapsed()
    );
    let reports: Vec<Value> = serde_json::from_str(&nodes.data).unwrap();
    assert_eq!(reports.len(), 2, "{reports:?}");
    let report = |url: &str| reports.iter().find(|r| r["url"] == url).unwrap().clone();
    assert_eq!(report(&server.base)["ok"], true, "{reports:?}");
    assert_eq!(report(&hung_url)["ok"], false, "{reports:?}");
    // Then this node's records, held meanwhile and live.
    for _ in 0..3 {
        let e = tail.next();
        assert_eq!(e.event, "record", "{e:?}");
        let r: RecordJson = serde_json::from_str(&e.data).unwrap();
        assert_eq!(r.app_name.as_deref(), Some("beat"));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}
