//! `flotilla demo` end to end, small: the front-end it shuts down shows up in logd's fleet
//! view as silent with HeartbeatStopped firing, the game server that crashes on purpose
//! (a `flotilla game --crash-after` process) as crashed with ServiceCrashed firing, the
//! other roles as up; and the page whose URL the summary prints stays up for `--linger`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process that is killed and reaped when dropped, so a failing test leaves no
/// process behind.
struct Running(std::process::Child);

impl Running {
    /// Waits (bounded) for the process to end by itself; `when` names the moment for
    /// the failure message.
    fn exit_within(&mut self, bound: Duration, when: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the demo did not end {when}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` from `http://ADDR/`: the status line and the body.
fn get(page: &str, path: &str) -> (String, String) {
    let addr = page
        .strip_prefix("http://")
        .and_then(|a| a.strip_suffix('/'))
        .unwrap_or_else(|| panic!("page URL {page:?}"));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// `(name, host, app)` of each alert in `list`.
fn alerts(list: &Value) -> Vec<(String, String, String)> {
    let s = |a: &Value, k: &str| a[k].as_str().unwrap_or("").to_owned();
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                s(a, "name"),
                s(&a["labels"], "host"),
                s(&a["labels"], "app"),
            )
        })
        .collect()
}

#[test]
fn the_demo_shows_the_shut_down_front_end_and_the_crashed_game_server_in_logds_fleet_view() {
    let started = Instant::now();
    let mut demo = Running(
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args([
                "demo",
                "--duration",
                "2",
                "--bots",
                "4",
                "--observers",
                "20",
                "--json",
                "--linger",
                "3",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(demo.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let summary: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the demo's summary is not JSON ({e}): {line:?}"));
    let logd = &summary["logd"];

    // The fleet view: fe-1 (shut down half-way, its logger stopped with it) is silent;
    // game-2 (its own process, panicked on purpose) is crashed; the others are up.
    let rows: BTreeMap<(String, String), &Value> = logd["fleet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            ((s("host"), s("app")), r)
        })
        .collect();
    let row = |host: &str, app: &str| {
        *rows
            .get(&(host.to_owned(), app.to_owned()))
            .unwrap_or_else(|| panic!("no row {host}/{app} in {rows:?}"))
    };
    assert_eq!(summary["failover"]["frontend"], "fe-1", "{summary}");
    assert_eq!(
        row("fe-1", "flotilla-frontend")["state"],
        "silent",
        "{rows:?}"
    );
    let game2 = row("game-2", "flotilla-game");
    assert_eq!(game2["state"], "crashed", "{game2}");
    assert_eq!(game2["crashes"], 1, "{game2}");
    assert_eq!(game2["boots_last_hour"], 1, "{game2}");
    assert!(
        game2["last_crash"]
            .as_str()
            .unwrap()
            .contains("on purpose: --crash-after"),
        "{game2}"
    );
    for (host, app) in [
        ("fe-2", "flotilla-frontend"),
        ("fe-3", "flotilla-frontend"),
        ("game-1", "flotilla-game"),
    ] {
        let r = row(host, app);
        assert_eq!(r["state"], "up", "{r}");
        assert!(r["last_heartbeat"].is_string(), "{r}");
    }
    let crashed = &summary["crashed_game"];
    assert_eq!(crashed["host"], "game-2", "{summary}");
    assert_eq!(crashed["exit_code"], 101, "{summary}");

    // The alerts: exactly these two fire, each notified once.
    let want = [
        (
            "HeartbeatStopped".to_owned(),
            "fe-1".to_owned(),
            "flotilla-frontend".to_owned(),
        ),
        (
            "ServiceCrashed".to_owned(),
            "game-2".to_owned(),
            "flotilla-game".to_owned(),
        ),
    ];
    let mut firing = alerts(&logd["alerts"]["firing"]);
    firing.sort();
    assert_eq!(firing, want, "{}", logd["alerts"]);
    let mut recent = alerts(&logd["alerts"]["recent"]);
    recent.sort();
    assert_eq!(recent, want, "{}", logd["alerts"]);

    // The page and the API stay up while the demo lingers.
    let page = logd["page"].as_str().unwrap();
    let (status, body) = get(page, "/");
    assert!(status.contains(" 200 "), "{status}");
    assert!(body.contains("<html"), "{body}");
    let (status, body) = get(page, "/api/fleet");
    assert!(status.contains(" 200 "), "{status}: {body}");
    let fleet: Value = serde_json::from_str(&body).unwrap();
    let state = |host: &str| {
        fleet["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["host"] == host)
            .map(|r| r["state"].clone())
    };
    assert_eq!(state("fe-1"), Some("silent".into()), "{fleet}");
    assert_eq!(state("game-2"), Some("crashed".into()), "{fleet}");

    // Then it ends by itself, successfully, and the page is gone.
    let status = demo.exit_within(Duration::from_secs(30), "after --linger");
    let mut err = String::new();
    demo.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the demo did not linger: {:?}",
        started.elapsed()
    );
    let addr = page.trim_start_matches("http://").trim_end_matches('/');
    assert!(
        TcpStream::connect(addr).is_err(),
        "the page outlived the demo"
    );
    let _ = std::fs::remove_dir_all(logd["data_dir"].as_str().unwrap());
}

/// Ctrl-C (SIGINT) mid-run: the demo stops, prints the summary of the run so far and a
/// FAIL line naming the interruption, and exits 1.
#[test]
fn ctrl_c_prints_the_partial_summary_and_fails() {
    let mut demo = Running(
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args([
                "demo",
                "--duration",
                "60",
                "--observers",
                "10",
                "--bots",
                "3",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(demo.0.stdout.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    // Wait for the first status line: the run is under way.
    while !line.contains("clients per front-end:") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "ended early: {seen}"
        );
        seen.push_str(&line);
    }
    let kill = Command::new("kill")
        .args(["-INT", &demo.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = demo.exit_within(Duration::from_secs(30), "after Ctrl-C");
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(rest.contains("interrupted (Ctrl-C)"), "{rest}");
    assert!(rest.contains("flotilla demo: summary"), "{rest}");
    assert!(rest.contains("replicas equal to the game state:"), "{rest}");
    let last = rest.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("flotilla demo: FAIL: interrupted by Ctrl-C after "),
        "{rest}"
    );
}
