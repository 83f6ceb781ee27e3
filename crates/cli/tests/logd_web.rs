//! The web page `flotilla logd` serves, tested in a real browser: a `flotilla logd` process
//! fed real syslog over TCP, its page opened in headless Chromium (Debian `chromium`,
//! driven over the DevTools protocol by `flotilla_testkit::Chromium`), and what the page
//! shows read back from its DOM: a search shows exactly the expected rows and pages back
//! through older ones, the live tail shows a message sent after the page opened (and
//! pauses and resumes without losing one), the fleet view shows a service that sent a
//! BOOT then a CRASH as crashed, and the alerts view renders what `/api/alerts` says.
//!
//! With `FLOTILLA_SCREENSHOTS=1` the tests also write `docs/img/logd-search.png`,
//! `logd-tail.png`, `logd-fleet.png` and `logd-alerts.png`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap: a panic is a test failure.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla_bench::logd::{LogdProcess, http_get};
use flotilla_testkit::{Chromium, Page};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn flotilla_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flotilla"))
}

fn start(dir: &Path) -> LogdProcess {
    LogdProcess::spawn(
        &flotilla_exe(),
        &dir.join("data"),
        "tcp://127.0.0.1:0",
        "127.0.0.1:0",
        &[],
    )
    .expect("logd starts")
}

fn browser() -> Chromium {
    Chromium::launch().expect("headless chromium starts")
}

/// Where screenshots go, when `FLOTILLA_SCREENSHOTS` is set (to anything but `0`).
fn screenshot_path(name: &str) -> Option<PathBuf> {
    let on = std::env::var("FLOTILLA_SCREENSHOTS").is_ok_and(|v| !v.is_empty() && v != "0");
    on.then(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/img")
            .join(name)
    })
}

fn screenshot(page: &Page, name: &str) {
    if let Some(path) = screenshot_path(name) {
        page.screenshot(&path).expect("screenshot");
        eprintln!("wrote {}", path.display());
    }
}

/// Now as RFC 3339 with microseconds (what RFC 5424 allows), UTC.
fn now_rfc3339() -> String {
    let ns = flotilla_logd::record::now_nanos();
    let full = flotilla_logd::query::format_ns(ns); // 9 fraction digits
    format!("{}Z", &full[..26])
}

/// An RFC 5424 line: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`.
fn line(pri: u8, host: &str, app: &str, procid: &str, msgid: &str, sd: &str, msg: &str) -> String {
    format!(
        "<{pri}>1 {} {host} {app} {procid} {msgid} {sd} {msg}",
        now_rfc3339()
    )
}

/// Sends lines over one TCP connection (LF framing).
fn send_tcp(addr: SocketAddr, lines: &[String]) {
    let mut s = TcpStream::connect(addr).expect("connect to logd's tcp listener");
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    s.write_all(buf.as_bytes()).expect("send");
    s.flush().unwrap();
}

/// Records matching `query` (URL query string) through the API.
fn api_query(logd: &LogdProcess, query: &str) -> Vec<Value> {
    let (body, _) = http_get(logd.http, &format!("/api/query?limit=0&{query}")).unwrap();
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `/api/query?QUERY` as it is (the query sets its own limit).
fn api_page(logd: &LogdProcess, query: &str) -> Vec<Value> {
    let (body, _) = http_get(logd.http, &format!("/api/query?{query}")).unwrap();
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_stored(logd: &LogdProcess, query: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = api_query(logd, query).len();
        if got >= n {
            assert_eq!(got, n, "records matching {query}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {n} records matching {query} stored\n{}",
            logd.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET status code and body of a path (no error on non-200).
fn get_status(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The rows of a records table as `[time, host, app, procid, msgid, severity, msg, sd]`.
fn table_rows(page: &Page, tbody: &str) -> Vec<Vec<String>> {
    let js = format!(
        "[...document.querySelectorAll('#{tbody} tr')].map(tr => [...tr.cells].map(td => td.textContent))"
    );
    serde_json::from_value(page.eval(&js).unwrap()).unwrap()
}

/// The page logged no exception, no Content-Security-Policy violation and loaded nothing
/// that failed, except the 404s of APIs this logd may not have yet.
fn assert_clean_console(page: &Page) {
    let bad: Vec<String> = page
        .console()
        .into_iter()
        .filter(|l| {
            l.starts_with("exception")
                || l.contains("Content Security Policy")
                || (l.starts_with("log.error")
                    && !l.contains("/api/fleet")
                    && !l.contains("/api/alerts")
                    // The filter the test makes the API refuse on purpose.
                    && !l.contains("not-an-sd"))
        })
        .collect();
    assert!(bad.is_empty(), "the page logged errors: {bad:#?}");
}

/// A small, realistic mix: two web servers' api and nginx, a database, a billing job.
fn populate(logd: &LogdProcess) -> usize {
    let mut lines = Vec::new();
    for i in 0..6 {
        let host = if i % 2 == 0 { "web-1" } else { "web-2" };
        lines.push(line(
            134,
            host,
            "nginx",
            "812",
            "ACCESS",
            &format!(
                "[http@32473 method=\"GET\" path=\"/api/orders/{}\" status=\"200\" ms=\"{}\"]",
                1000 + i,
                12 + i * 3
            ),
            &format!("GET /api/orders/{} 200 {} ms", 1000 + i, 12 + i * 3),
        ));
        lines.push(line(
            134,
            host,
            "api",
            "4021",
            "-",
            &format!("[req@32473 id=\"req-{i:04x}\" user=\"u{}\"]", 40 + i),
            &format!("order {} loaded for u{}", 1000 + i, 40 + i),
        ));
    }
    lines.push(line(
        132,
        "web-2",
        "api",
        "4021",
        "-",
        "[req@32473 id=\"req-0099\" user=\"u7\"]",
        "slow query: 812 ms for orders by customer",
    ));
    lines.push(line(
        131,
        "web-1",
        "api",
        "4021",
        "-",
        "[req@32473 id=\"req-00a1\" user=\"u9\"][error@32473 cause=\"connection reset by peer\"]",
        "payment provider unreachable: connection reset by peer",
    ));
    lines.push(line(
        133,
        "db-1",
        "postgres",
        "77",
        "-",
        "-",
        "checkpoint complete: wrote 1423 buffers (8.7%)",
    ));
    lines.push(line(
        132,
        "db-1",
        "postgres",
        "77",
        "-",
        "-",
        "autovacuum: table orders: 312 dead tuples removed",
    ));
    for (i, amount) in ["19.90", "250.00", "7.45"].iter().enumerate() {
        lines.push(line(
            134,
            "batch-1",
            "billing",
            "9001",
            "INVOICE",
            &format!(
                "[invoice@32473 number=\"INV-{}\" amount=\"{amount}\" currency=\"EUR\"]",
                7001 + i
            ),
            &format!("invoice INV-{} issued: {amount} EUR", 7001 + i),
        ));
    }
    lines.push(line(
        134,
        "batch-1",
        "billing",
        "9001",
        "-",
        "-",
        "billing run started for 3 customers",
    ));
    let n = lines.len();
    send_tcp(logd.tcp, &lines);
    wait_stored(logd, "", n);
    n
}

#[test]
fn page_is_served_with_types_and_etag() {
    let dir = tempfile::tempdir().unwrap();
    let logd = start(dir.path());
    for (path, ty) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let (body, headers) = http_get(logd.http, path).unwrap();
        let get = |k: &str| {
            headers
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert!(get("content-type").starts_with(ty), "{path}: {headers:?}");
        assert_eq!(get("cache-control"), "no-cache");
        assert!(get("etag").starts_with('"'), "{path}: {headers:?}");
        assert!(!body.is_empty());
        // Nothing from elsewhere: no absolute URL to another origin in the page's files.
        assert!(
            !body.contains("http://") && !body.contains("https://") && !body.contains("//cdn"),
            "{path} refers to another origin"
        );
    }
    // The API still answers unknown paths with its JSON 404.
    let (status, body) = get_status(logd.http, "/nope");
    assert_eq!(status, 404);
    assert!(body.contains("error"), "{body}");
}

#[test]
fn search_shows_exactly_the_matches_and_pages_back() {
    let dir = tempfile::tempdir().unwrap();
    let logd = start(dir.path());
    let stored = populate(&logd);
    let browser = browser();
    let base = format!("http://{}/", logd.http);

    // A link with filters in the hash: the billing job's invoices, not its other line.
    let page = browser
        .open(&format!("{base}#search?app=billing&grep=invoice"))
        .unwrap();
    page.wait_for(
        "document.querySelector('#search').dataset.state === 'done'",
        WAIT,
    )
    .unwrap();
    let rows = table_rows(&page, "search-rows");
    assert_eq!(rows.len(), 3, "{rows:#?}");
    // Newest first.
    let msgs: Vec<&str> = rows.iter().map(|r| r[6].as_str()).collect();
    assert_eq!(
        msgs,
        [
            "invoice INV-7003 issued: 7.45 EUR",
            "invoice INV-7002 issued: 250.00 EUR",
            "invoice INV-7001 issued: 19.90 EUR",
        ]
    );
    for r in &rows {
        assert_eq!(r[1], "batch-1");
        assert_eq!(r[2], "billing");
        assert_eq!(r[3], "9001");
        assert_eq!(r[4], "INVOICE");
        assert_eq!(r[5], "info");
        assert!(
            r[7].contains("invoice@32473") && r[7].contains("currency=\"EUR\""),
            "{r:?}"
        );
    }
    assert_eq!(
        page.eval("document.querySelector('#search-rows').dataset.rows")
            .unwrap(),
        "3"
    );
    // The form shows the filters of the link.
    assert_eq!(
        page.eval("document.querySelector('#f-app').value").unwrap(),
        "billing"
    );
    assert_eq!(
        page.eval("document.querySelector('#f-grep').value")
            .unwrap(),
        "invoice"
    );

    // Typing filters and submitting: severity and SD; the hash follows.
    page.eval(
        "(() => { const f = document.querySelector('#filters');
           f.elements.app.value = ''; f.elements.grep.value = '';
           f.elements.severity.value = '..warning'; f.elements.host.value = 'web-1 web-2';
           f.requestSubmit(); })()",
    )
    .unwrap();
    page.wait_for(
        "document.querySelector('#search').dataset.state === 'done' && \
         location.hash.includes('severity')",
        WAIT,
    )
    .unwrap();
    let rows = table_rows(&page, "search-rows");
    let msgs: Vec<&str> = rows.iter().map(|r| r[6].as_str()).collect();
    assert_eq!(
        msgs,
        [
            "payment provider unreachable: connection reset by peer",
            "slow query: 812 ms for orders by customer",
        ]
    );
    assert_eq!(rows[0][5], "err");
    assert_eq!(rows[1][5], "warning");
    let hash = page.eval("location.hash").unwrap();
    assert_eq!(hash, "#search?host=web-1&host=web-2&severity=..warning");
    // A filter the API refuses is reported, not a crash.
    page.eval(
        "(() => { const f = document.querySelector('#filters');
           f.elements.sd.value = 'not-an-sd'; f.requestSubmit(); })()",
    )
    .unwrap();
    page.wait_for(
        "document.querySelector('#search').dataset.state === 'error'",
        WAIT,
    )
    .unwrap();
    let error = page
        .eval("document.querySelector('#search-error').textContent")
        .unwrap();
    assert!(error.as_str().unwrap().contains("400"), "{error}");

    // A screenshot of a search with some variety in it.
    page.navigate(&format!("{base}#search?since=1h")).unwrap();
    page.wait_for(
        "document.querySelector('#search').dataset.state === 'done'",
        WAIT,
    )
    .unwrap();
    assert_eq!(table_rows(&page, "search-rows").len(), stored);
    screenshot(&page, "logd-search.png");
    assert_clean_console(&page);

    // Paging back through 230 records, 50 at a time, sent in one burst (many share a
    // received-at microsecond): every one shown once.
    let bulk: Vec<String> = (0..230)
        .map(|i| {
            line(
                134,
                "gen-1",
                "bulk",
                "1",
                "-",
                "-",
                &format!("bulk record {i:03}"),
            )
        })
        .collect();
    send_tcp(logd.tcp, &bulk);
    wait_stored(&logd, "app=bulk", 230);
    let page = browser
        .open(&format!("{base}#search?app=bulk&limit=50"))
        .unwrap();
    page.wait_for(
        "document.querySelector('#search').dataset.state === 'done'",
        WAIT,
    )
    .unwrap();
    assert_eq!(table_rows(&page, "search-rows").len(), 50);
    for pages in 2..=5 {
        page.eval("document.querySelector('#search-older').click()")
            .unwrap();
        page.wait_for(
            &format!(
                "document.querySelector('#search').dataset.state === 'done' && \
                 document.querySelectorAll('#search-rows tr').length >= {}",
                (pages * 50).min(230)
            ),
            WAIT,
        )
        .unwrap();
    }
    let rows = table_rows(&page, "search-rows");
    let msgs: Vec<String> = rows.iter().map(|r| r[6].clone()).collect();
    let expected: Vec<String> = (0..230)
        .rev()
        .map(|i| format!("bulk record {i:03}"))
        .collect();
    assert_eq!(msgs, expected);
    page.wait_for(
        "document.querySelector('#search-older').hidden && \
         !document.querySelector('#search-end').hidden",
        WAIT,
    )
    .unwrap();
    // The count of every match, from /api/query/stats.
    page.eval("document.querySelector('#search-count').click()")
        .unwrap();
    page.wait_for(
        "document.querySelector('#search').dataset.total === '230'",
        WAIT,
    )
    .unwrap();
    assert_clean_console(&page);
}

#[test]
fn tail_shows_messages_sent_after_the_page_opened() {
    let dir = tempfile::tempdir().unwrap();
    let logd = start(dir.path());
    let stored = populate(&logd);
    let browser = browser();
    let page = browser
        .open(&format!("http://{}/#tail?app=api", logd.http))
        .unwrap();
    page.wait_for(
        "document.querySelector('#tail').dataset.state === 'live'",
        WAIT,
    )
    .unwrap();
    // The backfill: the newest api lines already stored (8 of them).
    page.wait_for(
        "document.querySelector('#tail-rows').dataset.rows === '8'",
        WAIT,
    )
    .unwrap();

    // Sent now: one for the tail's filter, one not.
    send_tcp(
        logd.tcp,
        &[
            line(134, "web-1", "nginx", "812", "-", "-", "not for this tail"),
            line(
                131,
                "web-2",
                "api",
                "4021",
                "-",
                "[req@32473 id=\"req-live\"]",
                "live one: sent after the page opened",
            ),
        ],
    );
    page.wait_for(
        "document.querySelector('#tail-rows').dataset.rows === '9'",
        WAIT,
    )
    .unwrap();
    let rows = table_rows(&page, "tail-rows");
    assert_eq!(rows[0][6], "live one: sent after the page opened");
    assert_eq!(rows[0][1], "web-2");
    assert!(rows[0][7].contains("req-live"));
    assert!(rows.iter().all(|r| r[2] == "api"), "{rows:#?}");

    // Paused, nothing is added; resumed, what arrived meanwhile comes, once.
    page.eval("document.querySelector('#tail-toggle').click()")
        .unwrap();
    page.wait_for(
        "document.querySelector('#tail').dataset.state === 'paused'",
        WAIT,
    )
    .unwrap();
    send_tcp(
        logd.tcp,
        &[line(
            134,
            "web-1",
            "api",
            "4021",
            "-",
            "-",
            "sent while paused",
        )],
    );
    wait_stored(&logd, "grep=paused", 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        page.eval("document.querySelector('#tail-rows').dataset.rows")
            .unwrap(),
        "9"
    );
    page.eval("document.querySelector('#tail-toggle').click()")
        .unwrap();
    page.wait_for(
        "document.querySelector('#tail-rows').dataset.rows === '10'",
        WAIT,
    )
    .unwrap();
    page.wait_for(
        "document.querySelector('#tail').dataset.state === 'live'",
        WAIT,
    )
    .unwrap();
    send_tcp(
        logd.tcp,
        &[line(
            134,
            "web-2",
            "api",
            "4021",
            "-",
            "-",
            "after the resume",
        )],
    );
    page.wait_for(
        "document.querySelector('#tail-rows').dataset.rows === '11'",
        WAIT,
    )
    .unwrap();
    let rows = table_rows(&page, "tail-rows");
    assert_eq!(rows[0][6], "after the resume");
    assert_eq!(rows[1][6], "sent while paused");
    assert_eq!(rows[2][6], "live one: sent after the page opened");

    // The screenshot: everything, live.
    let all = browser
        .open(&format!("http://{}/#tail", logd.http))
        .unwrap();
    all.wait_for(
        "document.querySelector('#tail').dataset.state === 'live'",
        WAIT,
    )
    .unwrap();
    send_tcp(
        logd.tcp,
        &[
            line(
                134,
                "web-1",
                "nginx",
                "812",
                "ACCESS",
                "[http@32473 method=\"POST\" path=\"/api/checkout\" status=\"201\" ms=\"48\"]",
                "POST /api/checkout 201 48 ms",
            ),
            line(
                132,
                "web-1",
                "api",
                "4021",
                "-",
                "[req@32473 id=\"req-00c3\" user=\"u12\"]",
                "retrying payment provider (attempt 2 of 3)",
            ),
        ],
    );
    // The backfill (everything so far: 4 records sent above) and the 2 just sent.
    all.wait_for(
        &format!(
            "document.querySelector('#tail-rows').dataset.rows === '{}'",
            stored + 4 + 2
        ),
        WAIT,
    )
    .unwrap();
    // Past the new rows' highlight.
    std::thread::sleep(Duration::from_millis(1500));
    screenshot(&all, "logd-tail.png");
    assert_clean_console(&page);
    assert_clean_console(&all);
}

/// With peers, the page's Resume gives back the merged tail's cursor (`NODE=ID,…`), so
/// every node continues after its own last record: what a peer stored while the tail was
/// paused comes too.
#[test]
fn tail_resume_with_peers_continues_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let a = start(&dir_a);
    let peer = format!("http://{}", a.http);
    let b = LogdProcess::spawn(
        &flotilla_exe(),
        &dir_b.join("data"),
        "tcp://127.0.0.1:0",
        "127.0.0.1:0",
        &["--peers", &peer],
    )
    .expect("logd with a peer starts");
    let say = |logd: &LogdProcess, msg: &str| {
        send_tcp(
            logd.tcp,
            &[line(134, "web-1", "resume", "1", "-", "-", msg)],
        );
    };
    // More records on b, so that b's ids are the larger ones.
    say(&a, "a before");
    for i in 0..3 {
        say(&b, &format!("b before {i}"));
    }
    wait_stored(&a, "app=resume&local=1", 1);
    wait_stored(&b, "app=resume&local=1", 3);
    let browser = browser();
    let page = browser
        .open(&format!("http://{}/#tail?app=resume", b.http))
        .unwrap();
    page.wait_for(
        "document.querySelector('#tail').dataset.state === 'live' && \
         document.querySelector('#tail-rows').dataset.rows === '4'",
        WAIT,
    )
    .unwrap();
    page.eval("document.querySelector('#tail-toggle').click()")
        .unwrap();
    page.wait_for(
        "document.querySelector('#tail').dataset.state === 'paused'",
        WAIT,
    )
    .unwrap();
    say(&a, "a while paused");
    say(&b, "b while paused");
    wait_stored(&a, "app=resume&local=1", 2);
    wait_stored(&b, "app=resume&local=1", 4);
    page.eval("document.querySelector('#tail-toggle').click()")
        .unwrap();
    page.wait_for(
        "document.querySelector('#tail-rows').dataset.rows === '6'",
        WAIT,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let rows = table_rows(&page, "tail-rows");
    let mut msgs: Vec<&str> = rows.iter().map(|r| r[6].as_str()).collect();
    msgs.sort_unstable();
    assert_eq!(
        msgs,
        [
            "a before",
            "a while paused",
            "b before 0",
            "b before 1",
            "b before 2",
            "b while paused"
        ],
        "each record once, from both nodes"
    );
    assert_clean_console(&page);
}

#[test]
fn fleet_shows_a_crashed_service_and_alerts_render() {
    let dir = tempfile::tempdir().unwrap();
    let logd = start(dir.path());
    populate(&logd);
    let boot = |host: &str, app: &str, pid: &str, ip: &str| {
        line(
            133,
            host,
            app,
            pid,
            "BOOT",
            &format!(
                "[boot@32473 version=\"1.4.2\" hostname=\"{host}\" pid=\"{pid}\" logger=\"0.1.0\"]\
                 [ip@32473 eth0=\"{ip}\" lo=\"127.0.0.1/8\"]"
            ),
            &format!(
                "booted and awake: {app} 1.4.2 on {host}, pid {pid}, ip eth0={ip} lo=127.0.0.1/8"
            ),
        )
    };
    let heartbeat = |host: &str, app: &str, pid: &str| {
        line(
            134,
            host,
            app,
            pid,
            "HEARTBEAT",
            "[heartbeat@32473 uptime_s=\"60\" delivered=\"42\" dropped=\"0\" interval_ms=\"10000\"]",
            "heartbeat: up 60 s, 42 delivered, 0 dropped",
        )
    };
    send_tcp(
        logd.tcp,
        &[
            boot("node-1", "arena", "4100", "10.0.0.11/24"),
            heartbeat("node-1", "arena", "4100"),
            boot("node-2", "arena", "4200", "10.0.0.12/24"),
            heartbeat("node-2", "arena", "4200"),
            boot("node-7", "arena", "4242", "10.0.0.17/24"),
            line(
                130,
                "node-7",
                "arena",
                "4242",
                "CRASH",
                "[crash@32473 message=\"index out of bounds: the len is 3 but the index is 7\" \
                 location=\"src/world.rs:88:17\" thread=\"main\"]",
                "about to crash: panic in thread 'main' at src/world.rs:88:17: \
                 index out of bounds: the len is 3 but the index is 7",
            ),
        ],
    );
    wait_stored(&logd, "app=arena", 6);
    let browser = browser();
    let base = format!("http://{}/", logd.http);
    let (fleet_status, _) = get_status(logd.http, "/api/fleet");
    let page = browser.open(&format!("{base}#fleet")).unwrap();
    if fleet_status == 404 {
        // This logd has no fleet view yet: the page says so instead of failing.
        page.wait_for(
            "document.querySelector('#fleet').dataset.state === 'unavailable'",
            WAIT,
        )
        .unwrap();
        let text = page
            .eval("document.querySelector('#fleet-message').textContent")
            .unwrap();
        assert!(text.as_str().unwrap().contains("not available"), "{text}");
        eprintln!("GET /api/fleet is 404 on this logd: the crashed-service check was skipped");
    } else {
        page.wait_for(
            "document.querySelector('#fleet').dataset.state === 'ok' && \
             document.querySelector('#fleet-rows tr[data-host=\"node-7\"][data-app=\"arena\"]')",
            WAIT,
        )
        .unwrap();
        page.wait_for(
            "document.querySelector('#fleet-rows tr[data-host=\"node-7\"][data-app=\"arena\"]')\
             .dataset.state === 'crashed'",
            WAIT,
        )
        .unwrap();
        let cells = page
            .eval(
                "[...document.querySelector('#fleet-rows tr[data-host=\"node-7\"]').cells]\
                 .map(td => td.textContent)",
            )
            .unwrap();
        let cells: Vec<String> = serde_json::from_value(cells).unwrap();
        assert_eq!(cells[0], "crashed", "{cells:?}");
        assert!(
            cells.iter().any(|c| c.contains("index out of bounds")),
            "{cells:?}"
        );
        let color = page
            .eval(
                "getComputedStyle(document.querySelector('#fleet-rows tr[data-host=\"node-7\"] .state')).color",
            )
            .unwrap();
        assert_eq!(color, "rgb(198, 40, 40)", "crashed is red");
        for host in ["node-1", "node-2"] {
            let state = page
                .eval(&format!(
                    "document.querySelector('#fleet-rows tr[data-host=\"{host}\"][data-app=\"arena\"]').dataset.state"
                ))
                .unwrap();
            assert_eq!(state, "up", "{host}");
        }
        // Sorted worst first by default: the crashed service is the first row.
        assert_eq!(
            page.eval("document.querySelector('#fleet-rows tr').dataset.host")
                .unwrap(),
            "node-7"
        );
        screenshot(&page, "logd-fleet.png");
        // A row opens the search for its host and app.
        page.eval("document.querySelector('#fleet-rows tr[data-host=\"node-7\"]').click()")
            .unwrap();
        page.wait_for(
            "document.body.dataset.view === 'search' && \
             document.querySelector('#search').dataset.state === 'done'",
            WAIT,
        )
        .unwrap();
        let rows = table_rows(&page, "search-rows");
        assert_eq!(rows.len(), 2, "{rows:#?}");
        assert_eq!(rows[0][4], "CRASH");
        assert_eq!(rows[1][4], "BOOT");
        assert_eq!(
            page.eval("location.hash").unwrap(),
            "#search?host=node-7&app=arena"
        );
    }

    let (alerts_status, alerts_body) = get_status(logd.http, "/api/alerts");
    let page = browser.open(&format!("{base}#alerts")).unwrap();
    if alerts_status == 404 {
        page.wait_for(
            "document.querySelector('#alerts').dataset.state === 'unavailable'",
            WAIT,
        )
        .unwrap();
        eprintln!(
            "GET /api/alerts is 404 on this logd: only the 'not available' notice was checked"
        );
    } else {
        page.wait_for(
            "document.querySelector('#alerts').dataset.state === 'ok'",
            WAIT,
        )
        .unwrap();
        // The page shows what the API says (the built-in crash alert, once it fires).
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, body) = get_status(logd.http, "/api/alerts");
            let api: Value = serde_json::from_str(&body)
                .unwrap_or_else(|_| panic!("/api/alerts is not JSON: {alerts_body}"));
            let firing = api["firing"].as_array().map_or(0, Vec::len);
            let shown = page
                .eval("Number(document.querySelector('#alerts-firing').dataset.rows)")
                .unwrap();
            if firing > 0 && shown == firing {
                let names = page
                    .eval("[...document.querySelectorAll('#alerts-firing tr')].map(tr => tr.dataset.name)")
                    .unwrap();
                let api_names: Vec<Value> = api["firing"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["name"].clone())
                    .collect();
                let mut names: Vec<Value> = serde_json::from_value(names).unwrap();
                let mut api_names = api_names;
                names.sort_by_key(Value::to_string);
                api_names.sort_by_key(Value::to_string);
                assert_eq!(names, api_names);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the alerts view shows {shown} firing, the API {firing}: {body}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    screenshot(&page, "logd-alerts.png");
    assert_clean_console(&page);
}

/// The page over a million stored messages: it never loads them all. A search shows the
/// newest page of matches (the newest record first), pages back, and counts every match
/// exactly as the API does; the unfiltered view shows the newest records.
#[test]
fn search_is_usable_over_a_million_stored_messages() {
    const STORED: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let logd = start(dir.path());
    flotilla_bench::logd::send_realistic(logd.tcp, 0x1065, STORED, 2).unwrap();
    logd.wait_for_records(STORED, Duration::from_secs(120))
        .unwrap();
    // Durable is not yet searchable: wait until the indexer has every record.
    let deadline = Instant::now() + Duration::from_secs(120);
    while logd.stats().unwrap()["indexed"].as_u64().unwrap_or(0) < STORED {
        assert!(Instant::now() < deadline, "not every record got indexed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let browser = browser();
    let base = format!("http://{}/", logd.http);

    // Every stored record: the newest 100, newest first.
    let newest = api_page(&logd, "limit=100");
    let t = Instant::now();
    let page = browser.open(&format!("{base}#search")).unwrap();
    page.wait_for(
        "document.querySelector('#search').dataset.state === 'done'",
        WAIT,
    )
    .unwrap();
    eprintln!("newest 100 of {STORED}: {:?} to open and show", t.elapsed());
    let rows = table_rows(&page, "search-rows");
    assert_eq!(rows.len(), 100);
    let shown: Vec<&str> = rows.iter().map(|r| r[6].as_str()).collect();
    // The API answers oldest first, the page shows newest first.
    let expected: Vec<&str> = newest
        .iter()
        .rev()
        .map(|r| r["msg"].as_str().unwrap())
        .collect();
    assert_eq!(shown, expected);

    // A common word: a page, the next page, and the count of all its matches.
    let matched = {
        let (status, body) = get_status(logd.http, "/api/query/stats?grep=timeout&limit=0");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["matched"]
            .as_u64()
            .unwrap()
    };
    assert!(matched > 10_000, "{matched}");
    page.navigate(&format!("{base}#search?grep=timeout"))
        .unwrap();
    page.wait_for(
        "document.querySelector('#search').dataset.state === 'done' && \
         location.hash.includes('timeout')",
        WAIT,
    )
    .unwrap();
    let first = table_rows(&page, "search-rows");
    assert_eq!(first.len(), 100);
    assert!(first.iter().all(|r| r[6].contains("timeout")), "{first:?}");
    page.eval("document.querySelector('#search-older').click()")
        .unwrap();
    page.wait_for(
        "document.querySelector('#search').dataset.state === 'done' && \
         document.querySelectorAll('#search-rows tr').length >= 200",
        WAIT,
    )
    .unwrap();
    let two = table_rows(&page, "search-rows");
    assert_eq!(two.len(), 200);
    assert_eq!(two[..100], first[..], "the first page stays on top");
    let api: Vec<String> = api_page(&logd, "grep=timeout&limit=200")
        .iter()
        .rev()
        .map(|r| r["msg"].as_str().unwrap().to_string())
        .collect();
    let paged: Vec<String> = two.iter().map(|r| r[6].clone()).collect();
    assert_eq!(paged, api);
    page.eval("document.querySelector('#search-count').click()")
        .unwrap();
    page.wait_for(
        &format!("document.querySelector('#search').dataset.total === '{matched}'"),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_clean_console(&page);
}
