//! The alert engine: the rules file, built-ins driven by the fleet, user rules
//! (threshold, absence, match with resolve_after, throttle), snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap: a panic is a test failure.

use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_logd::alerts::{
    Alert, AlertEngine, AlertInput, AlertSnapshot, AlertStatus, BootLoop, GroupKey, NotifyTarget,
    RuleKind, RuleSet, WebhookFormat, fingerprint,
};
use flotilla_logd::fleet::{Fleet, FleetConfig, FleetInput, observe};
use flotilla_logd::{Record, Source};

const S: i64 = 1_000_000_000;
/// 2023-11-14T22:13:20Z (a multiple of 5 s).
const T0: i64 = 1_700_000_000 * S;

fn rec(at: i64, frame: &str) -> Record {
    Record {
        received_at: at,
        source: Source::LOCAL,
        flags: 0,
        raw: Bytes::from(frame.to_string()),
    }
}

fn boot(host: &str, app: &str, pid: u32) -> String {
    format!(
        "<13>1 2023-11-14T22:13:20.000Z {host} {app} {pid} BOOT [boot@32473 version=\"1.2.3\" \
         hostname=\"{host}\" pid=\"{pid}\" logger=\"0.1.0\"][ip@32473 eth0=\"10.0.0.2/24\"] \
         booted and awake: {app} 1.2.3 on {host}, pid {pid}, ip eth0=10.0.0.2/24"
    )
}

fn heartbeat(host: &str, app: &str) -> String {
    format!(
        "<14>1 2023-11-14T22:13:30.000Z {host} {app} 4242 HEARTBEAT [heartbeat@32473 \
         uptime_s=\"10\" delivered=\"5\" dropped=\"0\" interval_ms=\"10000\"] heartbeat: up 10 \
         s, 5 delivered, 0 dropped"
    )
}

fn crash(host: &str, app: &str, message: &str) -> String {
    format!(
        "<10>1 2023-11-14T22:13:40.000Z {host} {app} 4242 CRASH [crash@32473 \
         message=\"{message}\" location=\"src/main.rs:10:5\" thread=\"main\"] about to crash: \
         panic in thread 'main' at src/main.rs:10:5: {message}"
    )
}

fn line(host: &str, app: &str, pri: u8, text: &str) -> String {
    format!("<{pri}>1 2023-11-14T22:13:35.000Z {host} {app} 4242 - - {text}")
}

/// A fleet and an engine wired like the shell wires them.
struct Sim {
    fleet: Fleet,
    engine: AlertEngine,
    id: u64,
    out: Vec<Alert>,
}

impl Sim {
    fn new(rules: RuleSet) -> Sim {
        let config = rules.fleet_config(FleetConfig::default());
        Sim {
            fleet: Fleet::new(config),
            engine: AlertEngine::new(rules, "n1".into()),
            id: 0,
            out: Vec::new(),
        }
    }

    fn rules(text: &str) -> Sim {
        Sim::new(RuleSet::parse(text).unwrap())
    }

    fn pump(&mut self, now: i64) {
        while let Some(event) = self.fleet.poll_output() {
            self.engine.handle(now, AlertInput::Fleet(event));
        }
        while let Some(n) = self.engine.poll_output() {
            self.out.push(n.alert);
        }
    }

    fn advance(&mut self, t: i64) {
        loop {
            let next = [self.fleet.poll_timeout(), self.engine.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(d) = next.filter(|&d| d <= t) else {
                break;
            };
            self.fleet.handle(d, FleetInput::Tick);
            self.pump(d);
            self.engine.handle(d, AlertInput::Tick);
            self.pump(d);
        }
    }

    fn feed(&mut self, t: i64, frame: &str) {
        self.advance(t);
        self.id += 1;
        let record = rec(t, frame);
        self.fleet
            .handle(t, FleetInput::Observe(observe(self.id, &record)));
        self.pump(t);
        self.engine.handle(t, AlertInput::Record(self.id, &record));
        self.pump(t);
    }

    /// (status, name, host-or-group, starts_at, ends_at) of what was notified.
    fn take(&mut self) -> Vec<(AlertStatus, String, String, i64, Option<i64>)> {
        std::mem::take(&mut self.out)
            .into_iter()
            .map(|a| {
                let who = a
                    .labels
                    .iter()
                    .filter(|(k, _)| ["host", "app"].contains(&k.as_str()))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                (a.status, a.name, who, a.starts_at, a.ends_at)
            })
            .collect()
    }
}

use AlertStatus::{Firing, Resolved};

fn n(
    status: AlertStatus,
    name: &str,
    who: &str,
    starts: i64,
    ends: Option<i64>,
) -> (AlertStatus, String, String, i64, Option<i64>) {
    (status, name.into(), who.into(), starts, ends)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_crash_fires_once_and_resolves_at_the_next_boot() {
    let mut sim = Sim::new(RuleSet::builtin_only());
    sim.feed(T0, &boot("web-1", "api", 1));
    sim.feed(T0 + 10 * S, &heartbeat("web-1", "api"));
    sim.feed(T0 + 12 * S, &crash("web-1", "api", "boom"));
    let l = labels(&[
        ("alertname", "ServiceCrashed"),
        ("host", "web-1"),
        ("app", "api"),
        ("severity", "critical"),
    ]);
    let firing = Alert {
        name: "ServiceCrashed".into(),
        fingerprint: fingerprint(&l),
        labels: l,
        summary: "web-1/api: crashed: boom".into(),
        starts_at: T0 + 12 * S,
        ends_at: None,
        status: Firing,
        node: "n1".into(),
    };
    assert_eq!(sim.out, vec![firing.clone()]);
    assert_eq!(sim.engine.firing(), vec![firing.clone()]);
    sim.out.clear();
    // Its heartbeats stopped an hour ago: crashed, so no HeartbeatStopped.
    sim.feed(T0 + 3600 * S, &boot("web-1", "api", 2));
    let resolved = Alert {
        ends_at: Some(T0 + 3600 * S),
        status: Resolved,
        ..firing.clone()
    };
    assert_eq!(sim.out, vec![resolved.clone()]);
    assert!(sim.engine.firing().is_empty());
    assert_eq!(sim.engine.recent(), vec![firing, resolved]);
}

#[test]
fn stopped_heartbeats_fire_once_and_resolve_when_they_resume() {
    let mut sim = Sim::new(RuleSet::builtin_only());
    sim.feed(T0, &boot("web-1", "api", 1));
    sim.feed(T0 + 10 * S, &heartbeat("web-1", "api"));
    sim.feed(T0 + 20 * S, &heartbeat("web-1", "api"));
    sim.advance(T0 + 600 * S);
    assert_eq!(sim.out.len(), 1);
    assert_eq!(
        sim.out[0].summary,
        "web-1/api: no heartbeat for 3 intervals of 10s"
    );
    assert_eq!(sim.out[0].labels["severity"], "warning");
    assert_eq!(
        sim.take(),
        vec![n(
            Firing,
            "HeartbeatStopped",
            "app=api,host=web-1",
            T0 + 50 * S + 1,
            None
        )]
    );
    sim.feed(T0 + 610 * S, &heartbeat("web-1", "api"));
    assert_eq!(
        sim.take(),
        vec![n(
            Resolved,
            "HeartbeatStopped",
            "app=api,host=web-1",
            T0 + 50 * S + 1,
            Some(T0 + 610 * S)
        )]
    );
}

#[test]
fn a_boot_loop_fires_boot_loop_once() {
    let mut sim = Sim::new(RuleSet::builtin_only());
    for i in 0..5 {
        sim.feed(T0 + i * 60 * S, &boot("h", "a", i as u32));
        sim.feed(T0 + (i * 60 + 1) * S, &crash("h", "a", "boom"));
    }
    sim.advance(T0 + 1999 * S);
    sim.feed(T0 + 2000 * S, &boot("h", "a", 9));
    let w = "app=a,host=h";
    let end = T0 + 720 * S + 1; // third latest boot (T0+120 s) + 10 min
    assert_eq!(
        sim.take(),
        vec![
            // Before the third boot, nothing says it is a loop.
            n(Firing, "ServiceCrashed", w, T0 + S, None),
            n(Resolved, "ServiceCrashed", w, T0 + S, Some(T0 + 60 * S)),
            n(Firing, "ServiceCrashed", w, T0 + 61 * S, None),
            n(
                Resolved,
                "ServiceCrashed",
                w,
                T0 + 61 * S,
                Some(T0 + 120 * S)
            ),
            n(Firing, "BootLoop", w, T0 + 120 * S, None),
            // Boots 4 and 5 and their crashes: nothing. The loop ends; still crashed.
            n(Resolved, "BootLoop", w, T0 + 120 * S, Some(end)),
            n(Firing, "ServiceCrashed", w, end, None),
            n(Resolved, "ServiceCrashed", w, end, Some(T0 + 2000 * S)),
        ]
    );
}

#[test]
fn builtins_can_be_turned_off_and_tuned() {
    let rules = RuleSet::parse(
        "[builtin]\ncrash = false\nheartbeat = false\nboot_loop = { boots = 2, within = \"1m\" }\n",
    )
    .unwrap();
    assert_eq!(
        rules.builtin.boot_loop,
        Some(BootLoop {
            boots: 2,
            within: 60 * S
        })
    );
    let config = rules.fleet_config(FleetConfig::default());
    assert_eq!(
        (config.boot_loop_boots, config.boot_loop_window),
        (2, 60 * S)
    );
    let mut sim = Sim::new(rules);
    sim.feed(T0, &heartbeat("h", "a"));
    sim.feed(T0 + S, &crash("h", "a", "x"));
    sim.feed(T0 + 2 * S, &boot("h", "a", 1));
    sim.feed(T0 + 3 * S, &boot("h", "a", 2));
    sim.advance(T0 + 3600 * S);
    assert_eq!(
        sim.take(),
        vec![
            n(Firing, "BootLoop", "app=a,host=h", T0 + 3 * S, None),
            n(
                Resolved,
                "BootLoop",
                "app=a,host=h",
                T0 + 3 * S,
                Some(T0 + 62 * S + 1)
            ),
        ]
    );
    let mut sim = Sim::rules("[builtin]\nboot_loop = false\n");
    for i in 0..4 {
        sim.feed(T0 + i * S, &boot("h", "a", 1));
    }
    assert!(sim.take().is_empty());
    // With the boot-loop built-in off, a crash loop is still seen: each crash is a
    // ServiceCrashed (resolved by the next boot), never swallowed by a boot-looping
    // state nobody alerts on.
    let mut sim = Sim::rules("[builtin]\nboot_loop = false\n");
    for i in 0..4 {
        sim.feed(T0 + 10 * i * S, &boot("h", "a", 1));
        sim.feed(T0 + 10 * i * S + S, &crash("h", "a", "boom"));
    }
    let fired = sim
        .take()
        .iter()
        .filter(|(status, name, ..)| *status == Firing && name == "ServiceCrashed")
        .count();
    assert_eq!(fired, 4);
}

const DISK: &str = r#"
[[rule]]
name = "disk-errors"
match = { severity = "..err", grep = ["disk full"] }
threshold = { count = 3, window = "5m" }
labels = { team = "infra" }
summary = "{count} disk errors on {host}/{app} in {window}"
"#;

#[test]
fn a_threshold_fires_per_group_and_resolves_when_the_window_moves_on() {
    let mut sim = Sim::rules(DISK);
    let err = |host: &str| line(host, "api", 11, "write failed: disk full on /data");
    sim.feed(T0, &err("web-1"));
    sim.feed(T0 + 5 * S, &err("web-2"));
    sim.feed(T0 + 6 * S, &err("web-2"));
    sim.feed(
        T0 + 8 * S,
        &line("web-1", "api", 14, "disk full, but only info"),
    );
    sim.feed(T0 + 9 * S, &line("web-1", "api", 11, "disk fullness"));
    sim.feed(T0 + 10 * S, &err("web-1"));
    assert!(sim.out.is_empty());
    sim.feed(T0 + 20 * S, &err("web-1"));
    assert_eq!(sim.out.len(), 1);
    let a = &sim.out[0];
    assert_eq!(a.summary, "3 disk errors on web-1/api in 5m");
    assert_eq!(
        a.labels,
        labels(&[
            ("alertname", "disk-errors"),
            ("host", "web-1"),
            ("app", "api"),
            ("team", "infra")
        ])
    );
    sim.feed(T0 + 30 * S, &err("web-1"));
    sim.feed(T0 + 100 * S, &err("web-2"));
    sim.advance(T0 + 3600 * S);
    assert_eq!(
        sim.take(),
        vec![
            n(
                Firing,
                "disk-errors",
                "app=api,host=web-1",
                T0 + 20 * S,
                None
            ),
            n(
                Firing,
                "disk-errors",
                "app=api,host=web-2",
                T0 + 100 * S,
                None
            ),
            // 60 buckets of 5 s: web-2's first error leaves the window at T0+305 s, web-1's
            // second (it had four) at T0+310 s.
            n(
                Resolved,
                "disk-errors",
                "app=api,host=web-2",
                T0 + 100 * S,
                Some(T0 + 305 * S)
            ),
            n(
                Resolved,
                "disk-errors",
                "app=api,host=web-1",
                T0 + 20 * S,
                Some(T0 + 310 * S)
            ),
        ]
    );
    assert_eq!(sim.engine.poll_timeout(), None);
}

#[test]
fn an_absence_fires_per_group_that_was_seen() {
    let mut sim = Sim::rules(
        r#"
[[rule]]
name = "quiet"
match = { app = "api" }
absence = { for = "2m" }
group_by = ["host"]
"#,
    );
    sim.feed(T0, &line("web-1", "api", 14, "ok"));
    sim.feed(T0 + 30 * S, &line("web-2", "api", 14, "ok"));
    sim.feed(T0 + 60 * S, &line("web-1", "api", 14, "ok"));
    sim.feed(T0 + 61 * S, &line("web-3", "other", 14, "not matching"));
    sim.advance(T0 + 199 * S);
    sim.feed(T0 + 200 * S, &line("web-1", "api", 14, "back"));
    sim.advance(T0 + 250 * S);
    assert_eq!(
        sim.out[0].summary,
        "quiet: nothing matching for 2m from host=web-2"
    );
    assert_eq!(
        sim.take(),
        vec![
            n(Firing, "quiet", "host=web-2", T0 + 150 * S, None),
            n(Firing, "quiet", "host=web-1", T0 + 180 * S, None),
            n(
                Resolved,
                "quiet",
                "host=web-1",
                T0 + 180 * S,
                Some(T0 + 200 * S)
            ),
        ]
    );
    assert_eq!(sim.engine.firing().len(), 1);
    // web-1 is watched again.
    assert_eq!(sim.engine.poll_timeout(), Some(T0 + 320 * S));
}

#[test]
fn a_match_rule_resolves_after_resolve_after_without_a_match() {
    let mut sim = Sim::rules(
        r#"
[[rule]]
name = "segfaults"
match = { grep = "segfault" }
group_by = []
resolve_after = "1m"
summary = "{name}: {msg} ({host}, {severity})"
"#,
    );
    sim.feed(T0, &line("web-1", "api", 10, "segfault at 0x0"));
    sim.feed(T0 + 30 * S, &line("web-2", "api", 10, "segfault again"));
    sim.feed(T0 + 100 * S, &line("web-2", "api", 10, "segfault later"));
    assert_eq!(
        sim.out[0].summary,
        "segfaults: segfault at 0x0 (web-1, crit)"
    );
    assert_eq!(sim.out[0].labels, labels(&[("alertname", "segfaults")]));
    assert_eq!(
        sim.take(),
        vec![
            n(Firing, "segfaults", "", T0, None),
            n(Resolved, "segfaults", "", T0, Some(T0 + 90 * S)),
            n(Firing, "segfaults", "", T0 + 100 * S, None),
        ]
    );
    // A default of 5 minutes without resolve_after.
    let mut sim = Sim::rules("[[rule]]\nname = \"x\"\nmatch = { grep = \"oops\" }\n");
    sim.feed(T0, &line("h", "a", 14, "oops"));
    sim.advance(T0 + 3600 * S);
    assert_eq!(
        sim.take(),
        vec![
            n(Firing, "x", "app=a,host=h", T0, None),
            n(Resolved, "x", "app=a,host=h", T0, Some(T0 + 300 * S)),
        ]
    );
}

#[test]
fn throttle_allows_one_notification_per_group_per_period() {
    let rules = r#"
[[rule]]
name = "oops"
match = { grep = "oops" }
resolve_after = "1m"
throttle = "10m"
"#;
    let mut sim = Sim::rules(rules);
    sim.feed(T0, &line("h", "a", 14, "oops"));
    // Again after it resolved, within the throttle, and still going when it ends.
    // Another group (h2, at T0+130 s) is not throttled by this one.
    let mut feeds: Vec<(i64, &str)> = (120..=650).step_by(50).map(|t| (t, "h")).collect();
    feeds.push((130, "h2"));
    feeds.sort();
    for (t, host) in feeds {
        sim.feed(T0 + t * S, &line(host, "a", 14, "oops"));
    }
    sim.advance(T0 + 3600 * S);
    assert_eq!(
        sim.take(),
        vec![
            n(Firing, "oops", "app=a,host=h", T0, None),
            n(Resolved, "oops", "app=a,host=h", T0, Some(T0 + 60 * S)),
            n(Firing, "oops", "app=a,host=h2", T0 + 130 * S, None),
            n(
                Resolved,
                "oops",
                "app=a,host=h2",
                T0 + 130 * S,
                Some(T0 + 190 * S)
            ),
            n(Firing, "oops", "app=a,host=h", T0 + 120 * S, None),
            n(
                Resolved,
                "oops",
                "app=a,host=h",
                T0 + 120 * S,
                Some(T0 + 680 * S)
            ),
        ]
    );
    // Within the throttle and over before it ends: never notified.
    let mut sim = Sim::rules(rules);
    sim.feed(T0, &line("h", "a", 14, "oops"));
    sim.feed(T0 + 120 * S, &line("h", "a", 14, "oops"));
    sim.advance(T0 + 3600 * S);
    assert_eq!(
        sim.take(),
        vec![
            n(Firing, "oops", "app=a,host=h", T0, None),
            n(Resolved, "oops", "app=a,host=h", T0, Some(T0 + 60 * S)),
        ]
    );
    assert_eq!(sim.engine.poll_timeout(), None);
}

#[test]
fn a_snapshot_and_the_rest_equal_the_uninterrupted_run() {
    let rules = format!(
        "{DISK}\n[[rule]]\nname = \"quiet\"\nmatch = {{ app = \"api\" }}\nabsence = {{ for = \"2m\" }}\n\
         [[rule]]\nname = \"oops\"\nmatch = {{ grep = \"oops\" }}\nthrottle = \"5m\"\nresolve_after = \"1m\"\n"
    );
    let mut frames: Vec<(i64, String)> = Vec::new();
    for i in 0..40i64 {
        let t = T0 + i * 17 * S;
        let host = format!("web-{}", i % 3);
        frames.push((
            t,
            match i % 7 {
                0 => boot(&host, "api", i as u32),
                1 => heartbeat(&host, "api"),
                2 => crash(&host, "api", "boom"),
                3 | 4 => line(&host, "api", 11, "disk full"),
                5 => line(&host, "job", 14, "oops"),
                _ => "garbage".to_string(),
            },
        ));
    }
    let end = T0 + 3 * 3600 * S;
    let mut whole = Sim::rules(&rules);
    for (t, f) in &frames {
        whole.feed(*t, f);
    }
    whole.advance(end);
    assert!(whole.out.len() > 10, "{}", whole.out.len());
    for split in 0..frames.len() {
        let mut first = Sim::rules(&rules);
        for (t, f) in &frames[..split] {
            first.feed(*t, f);
        }
        let fleet = serde_json::to_string(&first.fleet.snapshot()).unwrap();
        let engine = serde_json::to_string(&first.engine.snapshot()).unwrap();
        let rules_set = RuleSet::parse(&rules).unwrap();
        let config = rules_set.fleet_config(FleetConfig::default());
        let mut second = Sim {
            fleet: Fleet::restore(serde_json::from_str(&fleet).unwrap(), config),
            engine: AlertEngine::restore(
                serde_json::from_str::<AlertSnapshot>(&engine).unwrap(),
                rules_set,
                "n1".into(),
            ),
            id: first.id,
            out: first.out.clone(),
        };
        assert_eq!(second.engine.through_id(), split as u64);
        for (t, f) in &frames[split..] {
            second.feed(*t, f);
        }
        second.advance(end);
        assert_eq!(second.out, whole.out, "split at {split}");
        assert_eq!(second.engine.firing(), whole.engine.firing());
        assert_eq!(second.engine.recent(), whole.engine.recent());
    }
}

#[test]
fn restoring_without_a_rule_resolves_its_alerts() {
    let mut sim = Sim::rules("[[rule]]\nname = \"x\"\nmatch = { grep = \"oops\" }\n");
    sim.feed(T0, &line("h", "a", 14, "oops"));
    let fired = sim.out.pop().unwrap();
    let snapshot = sim.engine.snapshot();
    let mut engine = AlertEngine::restore(snapshot, RuleSet::builtin_only(), "n1".into());
    let resolved = engine.poll_output().unwrap().alert;
    assert_eq!(
        resolved,
        Alert {
            ends_at: Some(T0),
            status: Resolved,
            ..fired
        }
    );
    assert!(engine.firing().is_empty());
}

#[test]
fn the_documented_rules_file_parses() {
    let text = r#"
[builtin]
crash = true
heartbeat = true
boot_loop = { boots = 4, within = "15m" }

[[rule]]
name = "disk-errors"
match = { severity = "..err", host = ["a"], app = ["api"], msgid = ["X"], grep = ["disk full"], sd = ["req@32473.user=u1"] }
threshold = { count = 10, window = "5m" }
group_by = ["host", "app", "sd:req@32473.user"]
labels = { severity = "page", team = "infra" }
summary = "{count} disk errors on {host}/{app} in {window} {{literal}}"
throttle = "1h"
resolve_after = "5m"

[[rule]]
name = "gone"
absence = { for = "10m" }

[[notify]]
alertmanager = "http://127.0.0.1:9093"
[[notify]]
webhook = "http://127.0.0.1:8080/hook"
format = "slack"
[[notify]]
command = ["/usr/local/bin/page", "--urgent"]
"#;
    let set = RuleSet::parse(text).unwrap();
    assert!(set.builtin.crash && set.builtin.heartbeat);
    assert_eq!(
        set.builtin.boot_loop,
        Some(BootLoop {
            boots: 4,
            within: 900 * S
        })
    );
    let r = &set.rules[0];
    assert_eq!(r.name, "disk-errors");
    assert_eq!(r.line, 7);
    assert_eq!(
        r.kind,
        RuleKind::Threshold {
            count: 10,
            window: 300 * S
        }
    );
    assert_eq!(
        r.group_by,
        vec![
            GroupKey::Host,
            GroupKey::App,
            GroupKey::Sd {
                id: "req@32473".into(),
                param: "user".into()
            }
        ]
    );
    assert_eq!(r.group_by[2].label(), "sd_req_32473_user");
    assert_eq!(
        (r.query.severity_min_code, r.query.severity_max_code),
        (Some(0), Some(3))
    );
    assert_eq!(r.query.sd, vec!["req@32473.user=u1".to_string()]);
    assert_eq!(r.throttle, Some(3600 * S));
    assert_eq!(r.resolve_after, 300 * S);
    assert_eq!(set.rules[1].kind, RuleKind::Absence { for_ns: 600 * S });
    assert_eq!(set.rules[1].line, 17);
    assert_eq!(
        set.notify,
        vec![
            NotifyTarget::Alertmanager {
                url: "http://127.0.0.1:9093".into()
            },
            NotifyTarget::Webhook {
                url: "http://127.0.0.1:8080/hook".into(),
                format: WebhookFormat::Slack
            },
            NotifyTarget::Command {
                argv: vec!["/usr/local/bin/page".into(), "--urgent".into()]
            },
        ]
    );
    // The summary's braces and the sd group key.
    let mut sim = Sim::new(set);
    for i in 0..10 {
        sim.feed(
            T0 + i * S,
            "<11>1 - a api - X [req@32473 user=\"u1\"] disk full",
        );
    }
    assert_eq!(
        sim.out[0].summary,
        "10 disk errors on a/api in 5m {literal}"
    );
    assert_eq!(sim.out[0].labels["sd_req_32473_user"], "u1");
    assert_eq!(sim.out[0].labels["severity"], "page");
    // No file, or an empty one: the built-ins.
    let empty = RuleSet::parse("").unwrap();
    assert_eq!(empty.builtin, RuleSet::builtin_only().builtin);
    assert!(empty.rules.is_empty() && empty.notify.is_empty());
}

#[test]
fn mistakes_are_reported_with_the_rule_the_key_and_the_line() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[[rule]]\nname = \"a\"\ncolour = \"red\"\n",
            &["colour", "line 3"],
        ),
        (
            "[builtin]\ncrash = true\nloud = true\n",
            &["loud", "line 3"],
        ),
        ("[something]\n", &["something"]),
        (
            "[[rule]]\nname = \"a\"\nthreshold = { count = 1, window = \"1m\" }\nabsence = { for = \"1m\" }\n",
            &[
                "rule \"a\" (line 1)",
                "threshold and absence exclude each other",
            ],
        ),
        (
            "\n[[rule]]\nname = \"a\"\nthreshold = { count = 2, window = \"soon\" }\n",
            &["rule \"a\" (line 2)", "threshold.window = \"soon\""],
        ),
        (
            "[[rule]]\nname = \"a\"\nthreshold = { count = 2 }\n",
            &["window", "line"],
        ),
        (
            "[[rule]]\nname = \"a\"\ngroup_by = [\"colour\"]\n",
            &["rule \"a\"", "group_by", "colour"],
        ),
        (
            "[[rule]]\nname = \"a\"\nsummary = \"{hots}\"\n",
            &["rule \"a\"", "{hots}"],
        ),
        (
            "[[rule]]\nname = \"a\"\nsummary = \"a } b\"\n",
            &["rule \"a\"", "lone }"],
        ),
        (
            "[[rule]]\nname = \"a\"\nlabels = { \"bad-name\" = \"x\" }\n",
            &["bad-name"],
        ),
        (
            "[[rule]]\nname = \"a\"\ngroup_by = [\"severity\"]\nlabels = { severity = \"page\" }\n",
            &["labels", "severity", "already set"],
        ),
        (
            "[[rule]]\nname = \"a\"\nmatch = { severity = \"loud\" }\n",
            &["rule \"a\"", "match", "loud"],
        ),
        (
            "[[rule]]\nname = \"a\"\nmatch = { sd = \"novalue\" }\n",
            &["rule \"a\"", "novalue"],
        ),
        (
            "[[rule]]\nname = \"a\"\nmatch = { hostname = \"x\" }\n",
            &["hostname", "line"],
        ),
        (
            "[[rule]]\nname = \"a\"\n[[rule]]\nname = \"a\"\n",
            &["rule \"a\" (line 3)", "another rule"],
        ),
        ("[[rule]]\nname = \"BootLoop\"\n", &["built-in"]),
        (
            "[[rule]]\nname = \"a\"\nabsence = { for = \"1m\" }\nresolve_after = \"1m\"\n",
            &["resolve_after"],
        ),
        ("[[rule]]\nname = \"a\"\nthrottle = \"0s\"\n", &["throttle"]),
        (
            "[builtin]\nboot_loop = { boots = 1 }\n",
            &["boot_loop", "boots"],
        ),
        (
            "[builtin]\nboot_loop = { tries = 3 }\n",
            &["boot_loop", "tries"],
        ),
        (
            "[[notify]]\nalertmanager = \"x\"\nwebhook = \"http://y\"\n",
            &["notify (line 1)", "exactly one"],
        ),
        (
            "[[notify]]\nwebhook = \"ftp://y\"\n",
            &["notify", "http://"],
        ),
        (
            "[[notify]]\nwebhook = \"http://y\"\nformat = \"teams\"\n",
            &["teams"],
        ),
        ("[[notify]]\ncommand = []\n", &["command"]),
        (
            "[[notify]]\nalertmanager = \"http://y\"\nformat = \"slack\"\n",
            &["format"],
        ),
        (
            "[[rule]]\nname = \"a\"\n[[rule]]\nname = \"b\"\nthreshold = 3\n",
            &["line 5"],
        ),
    ];
    for (text, wanted) in cases {
        let err = RuleSet::parse(text).expect_err(text).to_string();
        for w in *wanted {
            assert!(err.contains(w), "{text:?}: {err:?} lacks {w:?}");
        }
    }
}
