//! The fleet view and the built-in alerts of `flotilla logd`, end to end: real sealed
//! services (`flotilla game` processes logging through the flotilla logger over RELP)
//! crash on purpose, are killed with SIGKILL, and are restarted in a loop; logd's alerts
//! go to a real Prometheus Alertmanager (its v2 API) and to a webhook of the test. Each
//! built-in fires exactly once for its scenario, shows up in Alertmanager, and resolves
//! (Alertmanager itself then notifies the resolution). The fleet view and the firing
//! alerts survive a restart of logd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap: a panic is a test failure.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_bench::logd::{LogdProcess, http_get};
use flotilla_testkit::Alertmanager;
use serde_json::Value;

fn flotilla_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flotilla"))
}

/// A webhook receiver: every POSTed JSON body, in order.
struct Hook {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    /// Requests answered 500 (the first `fail_first` ones).
    failed: Arc<Mutex<usize>>,
}

impl Hook {
    fn start() -> Hook {
        Hook::failing_first(0)
    }

    /// A receiver that answers the first `fail_first` requests with 500.
    fn failing_first(fail_first: usize) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(0usize));
        let store = bodies.clone();
        let failures = failed.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let store = store.clone();
                let failures = failures.clone();
                std::thread::spawn(move || serve_one(stream, &store, &failures, fail_first));
            }
        });
        Hook {
            url,
            bodies,
            failed,
        }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Reads HTTP/1.1 requests with a Content-Length body and answers 200 to each.
fn serve_one(
    stream: std::net::TcpStream,
    store: &Mutex<Vec<Value>>,
    failed: &Mutex<usize>,
    fail_first: usize,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        {
            let mut failed = failed.lock().unwrap();
            if *failed < fail_first {
                *failed += 1;
                if writer
                    .write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nnope",
                    )
                    .is_err()
                {
                    return;
                }
                continue;
            }
        }
        if let Ok(v) = serde_json::from_slice(&body) {
            store.lock().unwrap().push(v);
        }
        if writer
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
            )
            .is_err()
        {
            return;
        }
    }
}

/// A `flotilla game` process logging to logd over RELP with fast heartbeats.
fn game(relp: &str, host: &str, heartbeat_ms: u64, extra: &[&str]) -> Child {
    Command::new(flotilla_exe())
        .args([
            "game",
            "--listen",
            "127.0.0.1:0",
            "--worlds",
            "1",
            "--npcs",
            "2",
        ])
        .args(["--log", &format!("relp://{relp}")])
        .args(["--log-hostname", host])
        .args(["--log-heartbeat-ms", &heartbeat_ms.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flotilla game starts")
}

/// Kills and reaps a child (ignores one that already ended).
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            kill(c);
        }
    }
}

fn json_get(logd: &LogdProcess, path: &str) -> Value {
    let (body, _headers) = http_get(logd.http, path).expect("logd answers 200");
    serde_json::from_str(&body).expect("JSON")
}

/// The fleet row of a host (app flotilla-game).
fn row(logd: &LogdProcess, host: &str) -> Option<Value> {
    json_get(logd, "/api/fleet")["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == host && r["app"] == "flotilla-game")
        .cloned()
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Notifications logd sent to the webhook (Alertmanager-style bodies), flattened to
/// `(alertname, host, status)`.
fn notified(hook: &Hook) -> Vec<(String, String, String)> {
    hook.bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["labels"]["host"].as_str().unwrap_or("").to_string(),
                a["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn count(events: &[(String, String, String)], name: &str, host: &str, status: &str) -> usize {
    events
        .iter()
        .filter(|(n, h, s)| n == name && h == host && s == status)
        .count()
}

/// Alertmanager's active alerts as `(alertname, host)`.
fn in_alertmanager(am: &Alertmanager) -> Vec<(String, String)> {
    am.alerts()
        .unwrap()
        .iter()
        .filter(|a| a["status"]["state"] == "active")
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["labels"]["host"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Alerts Alertmanager itself notified (its webhook receiver) with `status`, as
/// `(alertname, host)`.
fn notified_by_alertmanager(hook: &Hook, status: &str) -> Vec<(String, String)> {
    hook.bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["status"] == status)
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["labels"]["host"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn fired_by_alertmanager(hook: &Hook) -> Vec<(String, String)> {
    notified_by_alertmanager(hook, "firing")
}

fn resolved_by_alertmanager(hook: &Hook) -> Vec<(String, String)> {
    notified_by_alertmanager(hook, "resolved")
}

fn write_rules(dir: &Path, hook: &str) -> PathBuf {
    let path = dir.join("alerts.toml");
    std::fs::write(
        &path,
        format!(
            "[builtin]\ncrash = true\nheartbeat = true\nboot_loop = {{ boots = 3, within = \"12s\" }}\n\n\
             [[notify]]\nwebhook = \"{hook}\"\nformat = \"alertmanager\"\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn built_in_alerts_fire_once_reach_alertmanager_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let am_hook = Hook::start();
    let am = Alertmanager::start(Some(&am_hook.url)).expect("alertmanager starts");
    let logd_hook = Hook::start();
    let rules = write_rules(dir.path(), &logd_hook.url);
    let rules_arg = rules.display().to_string();
    let am_url = am.url();
    let extra = [
        "--alerts",
        rules_arg.as_str(),
        "--alertmanager",
        am_url.as_str(),
    ];
    let logd = LogdProcess::spawn(
        &flotilla_exe(),
        &dir.path().join("data"),
        "relp://127.0.0.1:0",
        "127.0.0.1:0",
        &extra,
    )
    .expect("logd starts");
    let relp = logd.addr("relp").unwrap().to_string();
    let mut children = Children(Vec::new());

    // 1. A sealed service that crashes: it boots, heartbeats, says it is about to crash.
    children
        .0
        .push(game(&relp, "crash-host", 300, &["--crash-after", "1"]));
    // 2. A service killed with SIGKILL: its heartbeat stops.
    children.0.push(game(&relp, "kill-host", 300, &[]));
    // 3. A service restarted in a loop: 3 boots within the window.
    for _ in 0..3 {
        let mut c = game(&relp, "loop-host", 60_000, &[]);
        wait_until("a loop-host boot", Duration::from_secs(20), || {
            let boots =
                row(&logd, "loop-host").map_or(0, |r| r["boots_last_hour"].as_u64().unwrap());
            (boots > 0).then_some(())
        });
        std::thread::sleep(Duration::from_millis(700));
        kill(&mut c);
    }
    wait_until("kill-host heartbeats", Duration::from_secs(20), || {
        row(&logd, "kill-host").and_then(|r| r["last_heartbeat"].as_str().map(|_| ()))
    });
    kill(&mut children.0[1]);

    // Each built-in fires, once, and Alertmanager holds it.
    let expected = [
        ("ServiceCrashed", "crash-host"),
        ("HeartbeatStopped", "kill-host"),
        ("BootLoop", "loop-host"),
    ];
    wait_until(
        "the three alerts in Alertmanager",
        Duration::from_secs(30),
        || {
            let held = in_alertmanager(&am);
            expected
                .iter()
                .all(|(n, h)| held.contains(&(n.to_string(), h.to_string())))
                .then_some(())
        },
    );
    // ... and notified them through its own receiver.
    wait_until(
        "Alertmanager notifying the three alerts",
        Duration::from_secs(30),
        || {
            let fired = fired_by_alertmanager(&am_hook);
            expected
                .iter()
                .all(|(n, h)| fired.contains(&(n.to_string(), h.to_string())))
                .then_some(())
        },
    );
    assert_eq!(row(&logd, "crash-host").unwrap()["state"], "crashed");
    assert_eq!(row(&logd, "kill-host").unwrap()["state"], "silent");
    assert_eq!(row(&logd, "loop-host").unwrap()["state"], "boot-looping");
    let crash = row(&logd, "crash-host").unwrap();
    assert!(
        crash["last_crash"]["message"]
            .as_str()
            .unwrap()
            .contains("on purpose: --crash-after"),
        "{crash}"
    );
    assert!(
        crash["ip"].as_array().is_some_and(|ip| !ip.is_empty()),
        "{crash}"
    );

    // The fleet view and firing alerts survive a restart of logd (SIGKILL, even).
    logd.kill9();
    let logd = LogdProcess::spawn(
        &flotilla_exe(),
        &dir.path().join("data"),
        &format!("relp://{relp}"),
        "127.0.0.1:0",
        &extra,
    )
    .expect("logd restarts");
    assert_eq!(row(&logd, "crash-host").unwrap()["state"], "crashed");
    let firing: Vec<(String, String)> = json_get(&logd, "/api/alerts")["firing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["labels"]["host"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (n, h) in &expected {
        assert!(
            firing.contains(&(n.to_string(), h.to_string())),
            "{firing:?}"
        );
    }

    // Resolutions: the crashed service boots again and heartbeats; the killed one comes
    // back; the loop stops and its window passes.
    children.0.push(game(&relp, "crash-host", 300, &[]));
    children.0.push(game(&relp, "kill-host", 300, &[]));
    wait_until(
        "every alert resolved by logd",
        Duration::from_secs(40),
        || {
            let events = notified(&logd_hook);
            expected
                .iter()
                .all(|(n, h)| count(&events, n, h, "resolved") == 1)
                .then_some(())
        },
    );
    wait_until(
        "Alertmanager notifying the resolutions",
        Duration::from_secs(30),
        || {
            let resolved = resolved_by_alertmanager(&am_hook);
            let held = in_alertmanager(&am);
            expected
                .iter()
                .all(|(n, h)| {
                    let key = (n.to_string(), h.to_string());
                    resolved.contains(&key) && !held.contains(&key)
                })
                .then_some(())
        },
    );

    // Exactly once each: one firing and one resolved notification per scenario, and no
    // other alert (a crashed service is not also "silent"; a boot loop is one alert, not
    // one per boot).
    let events = notified(&logd_hook);
    let mut tally: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for e in &events {
        *tally.entry(e.clone()).or_default() += 1;
    }
    let mut want: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (n, h) in &expected {
        want.insert((n.to_string(), h.to_string(), "firing".into()), 1);
        want.insert((n.to_string(), h.to_string(), "resolved".into()), 1);
    }
    assert_eq!(tally, want, "logd's notifications: {events:?}");
    let deliveries = json_get(&logd, "/api/alerts")["deliveries"].clone();
    let node_stats = deliveries
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    for target in node_stats.as_array().unwrap() {
        assert_eq!(target["pending"], 0, "{target}");
    }
    logd.kill9();
    drop(children);
    am.stop().unwrap();
}

#[test]
fn bad_alert_rules_stop_logd_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("alerts.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"x\"\nmatch = { severity = \"loud\" }\n",
    )
    .unwrap();
    let out = Command::new(flotilla_exe())
        .args(["logd", "--data"])
        .arg(dir.path().join("data"))
        .args([
            "--listen",
            "tcp://127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--alerts",
        ])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("alerts.toml") && stderr.contains("loud"),
        "stderr: {stderr}"
    );
}

/// User rules end to end: a threshold rule and an absence rule from a TOML file, matched
/// against records sent over TCP, delivered to a Slack-style webhook that fails at first
/// (retried with backoff, failures counted) and to a command (the Alertmanager-style body
/// on its standard input).
#[test]
fn user_rules_fire_and_reach_a_failing_webhook_and_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::failing_first(2);
    let command_out = dir.path().join("command-out");
    let rules = dir.path().join("alerts.toml");
    std::fs::write(
        &rules,
        format!(
            r#"[builtin]
crash = false
heartbeat = false

[[rule]]
name = "PaymentErrors"
match = {{ app = ["api"], severity = "..err", grep = ["payment"] }}
threshold = {{ count = 3, window = "1m" }}
group_by = ["host"]
labels = {{ severity = "page" }}
summary = "{{count}} payment errors on {{host}} in {{window}}"

[[rule]]
name = "BatchSilent"
match = {{ app = ["batch"] }}
absence = {{ for = "2s" }}
group_by = ["host"]

[[notify]]
webhook = "{url}"
format = "slack"

[[notify]]
command = ["sh", "-c", "cat >> {out}; echo >> {out}"]
"#,
            url = hook.url,
            out = command_out.display()
        ),
    )
    .unwrap();
    let rules_arg = rules.display().to_string();
    let logd = LogdProcess::spawn(
        &flotilla_exe(),
        &dir.path().join("data"),
        "tcp://127.0.0.1:0",
        "127.0.0.1:0",
        &["--alerts", rules_arg.as_str()],
    )
    .expect("logd starts");
    let tcp = logd.addr("tcp").unwrap();
    let mut conn = std::net::TcpStream::connect(tcp).unwrap();
    let line = |host: &str, app: &str, pri: u8, msg: &str| {
        format!("<{pri}>1 2026-12-06T10:00:00Z {host} {app} 1 - - {msg}\n")
    };
    // Two errors on web-1 (under the threshold), one on web-2, a batch run, noise.
    for text in [
        line("web-1", "api", 11, "payment provider unreachable"),
        line("web-1", "api", 11, "payment provider unreachable"),
        line("web-2", "api", 11, "payment provider unreachable"),
        line("web-1", "api", 14, "payment ok"),
        line("web-1", "api", 11, "disk full"),
        line("job-1", "batch", 14, "run started"),
    ] {
        conn.write_all(text.as_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        json_get(&logd, "/api/alerts")["firing"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing may fire yet"
    );
    // The third error on web-1 crosses the threshold for web-1 only.
    conn.write_all(line("web-1", "api", 11, "payment provider unreachable").as_bytes())
        .unwrap();
    let texts = |hook: &Hook| -> Vec<String> {
        hook.bodies()
            .iter()
            .filter_map(|b| b["text"].as_str().map(str::to_string))
            .collect()
    };
    wait_until(
        "both alerts on the webhook",
        Duration::from_secs(30),
        || {
            let t = texts(&hook).join("\n");
            (t.contains("PaymentErrors") && t.contains("BatchSilent")).then_some(())
        },
    );
    let all = texts(&hook).join("\n");
    assert!(
        all.contains("[FIRING] PaymentErrors: 3 payment errors on web-1 in 1m"),
        "{all}"
    );
    assert!(
        !all.contains("web-2"),
        "web-2 is under the threshold: {all}"
    );
    assert!(all.contains("[FIRING] BatchSilent"), "{all}");
    // The first two deliveries failed, were retried and counted.
    assert_eq!(*hook.failed.lock().unwrap(), 2);
    let alerts = json_get(&logd, "/api/alerts");
    let targets: Vec<Value> = alerts["deliveries"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .collect();
    let webhook = targets
        .iter()
        .find(|t| t["target"].as_str().unwrap().starts_with("webhook"))
        .unwrap();
    assert!(
        webhook["failed_attempts"].as_u64().unwrap() >= 2,
        "{webhook}"
    );
    assert!(webhook["delivered"].as_u64().unwrap() >= 2, "{webhook}");
    // The command got the Alertmanager-style body of each notification.
    let out = wait_until("the command's output", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&command_out).unwrap_or_default();
        (text.contains("PaymentErrors") && text.contains("BatchSilent")).then_some(text)
    });
    let bodies: Vec<Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON body per run"))
        .collect();
    let payment = bodies
        .iter()
        .find(|b| b["alerts"][0]["labels"]["alertname"] == "PaymentErrors")
        .unwrap();
    assert_eq!(payment["version"], "4");
    assert_eq!(payment["status"], "firing");
    assert_eq!(payment["alerts"][0]["labels"]["host"], "web-1");
    assert_eq!(payment["alerts"][0]["labels"]["severity"], "page");
    // The batch job speaks again: its absence resolves.
    conn.write_all(line("job-1", "batch", 14, "run finished").as_bytes())
        .unwrap();
    wait_until("BatchSilent resolved", Duration::from_secs(30), || {
        texts(&hook)
            .iter()
            .any(|t| t.contains("[RESOLVED] BatchSilent"))
            .then_some(())
    });
    logd.kill9();
}
