//! The fleet view: observations from real logger frames, states and their events, rows
//! and their JSON, merging, counters, the service cap, snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap: a panic is a test failure.

use bytes::Bytes;
use flotilla_logd::fleet::{
    Fleet, FleetConfig, FleetEvent, FleetInput, FleetSnapshot, LastCrash, ObservationKind,
    ServiceKey, ServiceRow, ServiceState, merge_rows, observe,
};
use flotilla_logd::{Record, Source};
use flotilla_syslog::Severity;
use proptest::prelude::*;
use serde_json::json;

const S: i64 = 1_000_000_000;
/// 2023-11-14T22:13:20Z.
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
         hostname=\"{host}\" pid=\"{pid}\" logger=\"0.1.0\"][ip@32473 eth0=\"10.0.0.2/24\" \
         lo=\"127.0.0.1/8\"] booted and awake: {app} 1.2.3 on {host}, pid {pid}, ip \
         eth0=10.0.0.2/24 lo=127.0.0.1/8"
    )
}

fn heartbeat(host: &str, app: &str, interval_ms: Option<u64>) -> String {
    let interval = interval_ms.map_or(String::new(), |ms| format!(" interval_ms=\"{ms}\""));
    format!(
        "<14>1 2023-11-14T22:13:30.000Z {host} {app} 4242 HEARTBEAT [heartbeat@32473 \
         uptime_s=\"10\" delivered=\"5\" dropped=\"0\"{interval}] heartbeat: up 10 s, 5 \
         delivered, 0 dropped"
    )
}

fn crash(host: &str, app: &str, message: &str) -> String {
    format!(
        "<10>1 2023-11-14T22:13:40.000Z {host} {app} 4242 CRASH [crash@32473 \
         message=\"{message}\" location=\"src/main.rs:10:5\" thread=\"main\" \
         backtrace=\"app::main (src/main.rs:10:5)\"] about to crash: panic in thread 'main' at \
         src/main.rs:10:5: {message}"
    )
}

fn error(host: &str, app: &str) -> String {
    format!("<11>1 2023-11-14T22:13:35.000Z {host} {app} 4242 ERROR - disk full on /data")
}

fn info(host: &str, app: &str) -> String {
    format!("<14>1 2023-11-14T22:13:36.000Z {host} {app} 4242 - - request served")
}

/// A fleet with its inputs numbered and its events collected.
struct Sim {
    fleet: Fleet,
    id: u64,
    events: Vec<FleetEvent>,
}

impl Sim {
    fn new(config: FleetConfig) -> Sim {
        Sim {
            fleet: Fleet::new(config),
            id: 0,
            events: Vec::new(),
        }
    }

    /// Ticks at every deadline up to `t`, then feeds `frame` received at `t`.
    fn feed(&mut self, t: i64, frame: &str) {
        self.advance(t);
        self.id += 1;
        let record = rec(t, frame);
        self.fleet
            .handle(t, FleetInput::Observe(observe(self.id, &record)));
        self.drain();
    }

    /// Ticks at every deadline up to `t`.
    fn advance(&mut self, t: i64) {
        while let Some(d) = self.fleet.poll_timeout().filter(|&d| d <= t) {
            self.fleet.handle(d, FleetInput::Tick);
            self.drain();
        }
    }

    fn drain(&mut self) {
        while let Some(e) = self.fleet.poll_output() {
            self.events.push(e);
        }
    }

    fn take(&mut self) -> Vec<FleetEvent> {
        std::mem::take(&mut self.events)
    }
}

fn key(host: &str, app: &str) -> ServiceKey {
    ServiceKey::new(host, app)
}

fn changed(
    k: &ServiceKey,
    from: ServiceState,
    to: ServiceState,
    at: i64,
    reason: &str,
) -> FleetEvent {
    FleetEvent::StateChanged {
        key: k.clone(),
        from,
        to,
        at,
        reason: reason.into(),
    }
}

#[test]
fn observe_reads_what_the_logger_sends() {
    let r = rec(T0, &boot("web-1", "api", 4242));
    let o = observe(7, &r);
    assert_eq!(
        (o.id, o.received_at, o.host, o.app),
        (7, T0, "web-1", "api")
    );
    assert_eq!(o.severity, Severity::Notice);
    assert_eq!(
        o.kind,
        ObservationKind::Boot {
            ip: vec![
                ("eth0".into(), "10.0.0.2/24".into()),
                ("lo".into(), "127.0.0.1/8".into())
            ],
            version: Some("1.2.3".into()),
            pid: Some("4242".into()),
        }
    );
    let r = rec(T0, &heartbeat("web-1", "api", Some(2500)));
    assert_eq!(
        observe(1, &r).kind,
        ObservationKind::Heartbeat {
            interval_ns: Some(2_500_000_000)
        }
    );
    let r = rec(T0, &heartbeat("web-1", "api", None));
    assert_eq!(
        observe(1, &r).kind,
        ObservationKind::Heartbeat { interval_ns: None }
    );
    let r = rec(T0, &crash("web-1", "api", "index out of bounds: \\\"x\\\""));
    let o = observe(1, &r);
    assert_eq!(
        o.kind,
        ObservationKind::Crash {
            message: "index out of bounds: \"x\"".into()
        }
    );
    assert_eq!(o.severity, Severity::Critical);
    assert!(o.is_error());
    let r = rec(T0, &error("web-1", "api"));
    let o = observe(1, &r);
    assert_eq!(o.kind, ObservationKind::Error);
    assert!(o.is_error());
    let r = rec(T0, &info("web-1", "api"));
    let o = observe(1, &r);
    assert_eq!(o.kind, ObservationKind::Other);
    assert!(!o.is_error());
    // rsyslog-style RFC 3164 from another sender: attributed, an error by severity.
    let r = rec(
        T0,
        "<27>Nov 14 22:13:20 db-1 postgres[77]: FATAL: out of disk",
    );
    let o = observe(1, &r);
    assert_eq!(
        (o.host, o.app, o.kind.clone()),
        ("db-1", "postgres", ObservationKind::Other)
    );
    assert!(o.is_error());
    // A BOOT MSGID without the logger's element is not a boot; NIL fields are "-".
    let r = rec(T0, "<13>1 - - - - BOOT - booting");
    let o = observe(1, &r);
    assert_eq!((o.host, o.app, o.kind), ("-", "-", ObservationKind::Other));
    // No header at all: attributed to nobody.
    for raw in ["just some text", ""] {
        let r = rec(T0, raw);
        assert_eq!(observe(1, &r).kind, ObservationKind::Unattributed);
    }
}

#[test]
fn a_service_whose_heartbeat_stops_goes_silent_once_and_comes_back() {
    let mut sim = Sim::new(FleetConfig::default());
    let k = key("web-1", "api");
    sim.feed(T0, &boot("web-1", "api", 4242));
    sim.feed(T0 + 10 * S, &heartbeat("web-1", "api", Some(10_000)));
    sim.feed(T0 + 20 * S, &heartbeat("web-1", "api", Some(10_000)));
    assert_eq!(
        sim.take(),
        vec![FleetEvent::Booted {
            key: k.clone(),
            at: T0
        }]
    );
    // Silent once the last heartbeat is more than 3 intervals old.
    assert_eq!(sim.fleet.poll_timeout(), Some(T0 + 50 * S + 1));
    sim.advance(T0 + 50 * S);
    assert!(sim.take().is_empty());
    sim.advance(T0 + 300 * S);
    assert_eq!(
        sim.take(),
        vec![changed(
            &k,
            ServiceState::Up,
            ServiceState::Silent,
            T0 + 50 * S + 1,
            "no heartbeat for 3 intervals of 10s"
        )]
    );
    assert_eq!(sim.fleet.poll_timeout(), None);
    assert_eq!(
        sim.fleet.row("web-1", "api", T0 + 300 * S).unwrap().state,
        ServiceState::Silent
    );
    // Other records are not heartbeats.
    sim.feed(T0 + 301 * S, &info("web-1", "api"));
    assert!(sim.take().is_empty());
    sim.feed(T0 + 310 * S, &heartbeat("web-1", "api", Some(10_000)));
    assert_eq!(
        sim.take(),
        vec![changed(
            &k,
            ServiceState::Silent,
            ServiceState::Up,
            T0 + 310 * S,
            "heartbeat resumed"
        )]
    );
}

#[test]
fn without_interval_ms_the_interval_is_the_gap_between_heartbeats() {
    let mut sim = Sim::new(FleetConfig::default());
    sim.feed(T0, &boot("h", "a", 1));
    sim.feed(T0 + 7 * S, &heartbeat("h", "a", None));
    // One heartbeat: no interval yet, so never silent.
    assert_eq!(sim.fleet.poll_timeout(), None);
    sim.feed(T0 + 12 * S, &heartbeat("h", "a", None));
    let row = sim.fleet.row("h", "a", T0 + 12 * S).unwrap();
    assert_eq!(row.heartbeat_interval, Some(5 * S));
    assert_eq!(sim.fleet.poll_timeout(), Some(T0 + 27 * S + 1));
    // A restart: the gap across it is not an interval.
    sim.feed(T0 + 20 * S, &boot("h", "a", 2));
    sim.feed(T0 + 120 * S, &heartbeat("h", "a", None));
    assert_eq!(
        sim.fleet
            .row("h", "a", T0 + 120 * S)
            .unwrap()
            .heartbeat_interval,
        Some(5 * S)
    );
    sim.feed(T0 + 122 * S, &heartbeat("h", "a", None));
    assert_eq!(
        sim.fleet
            .row("h", "a", T0 + 122 * S)
            .unwrap()
            .heartbeat_interval,
        Some(2 * S)
    );
}

#[test]
fn a_crash_is_crashed_until_the_next_boot_and_never_silent() {
    let mut sim = Sim::new(FleetConfig::default());
    let k = key("web-1", "api");
    sim.feed(T0, &boot("web-1", "api", 4242));
    sim.feed(T0 + 10 * S, &heartbeat("web-1", "api", Some(10_000)));
    sim.feed(T0 + 12 * S, &crash("web-1", "api", "boom"));
    assert_eq!(
        sim.take(),
        vec![
            FleetEvent::Booted {
                key: k.clone(),
                at: T0
            },
            FleetEvent::Crashed {
                key: k.clone(),
                at: T0 + 12 * S,
                message: "boom".into()
            },
            changed(
                &k,
                ServiceState::Up,
                ServiceState::Crashed,
                T0 + 12 * S,
                "crashed: boom"
            ),
        ]
    );
    // Its heartbeats stopped, but it is crashed, not silent.
    sim.advance(T0 + 3600 * S);
    assert!(sim.take().is_empty());
    assert_eq!(sim.fleet.poll_timeout(), None);
    sim.feed(T0 + 3600 * S, &boot("web-1", "api", 4243));
    assert_eq!(
        sim.take(),
        vec![
            FleetEvent::Booted {
                key: k.clone(),
                at: T0 + 3600 * S
            },
            changed(
                &k,
                ServiceState::Crashed,
                ServiceState::Up,
                T0 + 3600 * S,
                "booted"
            ),
        ]
    );
    let row = sim.fleet.row("web-1", "api", T0 + 3600 * S).unwrap();
    assert_eq!(row.pid.as_deref(), Some("4243"));
    assert_eq!(row.crashes, 1);
}

#[test]
fn a_boot_loop_is_one_state_until_it_ends() {
    let mut sim = Sim::new(FleetConfig::default());
    let k = key("h", "a");
    for i in 0..3 {
        sim.feed(T0 + i * 60 * S, &boot("h", "a", 100 + i as u32));
        sim.feed(T0 + (i * 60 + 1) * S, &crash("h", "a", "boom"));
    }
    let states: Vec<_> = sim
        .take()
        .into_iter()
        .filter_map(|e| match e {
            FleetEvent::StateChanged {
                from,
                to,
                at,
                reason,
                ..
            } => Some((from, to, at, reason)),
            _ => None,
        })
        .collect();
    use ServiceState::*;
    assert_eq!(
        states,
        vec![
            (Up, Crashed, T0 + S, "crashed: boom".to_string()),
            (Crashed, Up, T0 + 60 * S, "booted".to_string()),
            (Up, Crashed, T0 + 61 * S, "crashed: boom".to_string()),
            (
                Crashed,
                BootLooping,
                T0 + 120 * S,
                "3 boots within 600s".to_string()
            ),
        ]
    );
    // More boots and crashes inside the loop change nothing.
    sim.feed(T0 + 180 * S, &boot("h", "a", 200));
    sim.feed(T0 + 181 * S, &crash("h", "a", "boom"));
    assert!(
        sim.take()
            .iter()
            .all(|e| !matches!(e, FleetEvent::StateChanged { .. }))
    );
    // The loop ends when fewer than 3 boots are within 10 minutes: the last boot at
    // T0+180 s and the third latest at T0+60 s.
    assert_eq!(sim.fleet.poll_timeout(), Some(T0 + 660 * S + 1));
    sim.advance(T0 + 2000 * S);
    assert_eq!(
        sim.take(),
        vec![changed(
            &k,
            BootLooping,
            Crashed,
            T0 + 660 * S + 1,
            "crashed: boom"
        )]
    );
    let row = sim.fleet.row("h", "a", T0 + 2000 * S).unwrap();
    assert_eq!(row.crashes, 4);
    assert_eq!(row.boots_last_hour, 4);
    assert_eq!(row.first_boot, Some(T0));
    assert_eq!(row.last_boot, Some(T0 + 180 * S));
}

#[test]
fn rows_have_the_documented_json_shape() {
    let mut sim = Sim::new(FleetConfig::default());
    sim.feed(T0, &boot("web-1", "api", 4242));
    sim.feed(T0 + 10 * S, &heartbeat("web-1", "api", Some(10_000)));
    sim.feed(T0 + 15 * S, &error("web-1", "api"));
    sim.feed(T0 + 16 * S, &info("web-1", "api"));
    sim.feed(T0 + 20 * S, &crash("web-1", "api", "boom"));
    sim.feed(T0 + 21 * S, &info("db-1", "postgres"));
    let rows = sim.fleet.rows(T0 + 30 * S);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].host.as_str(), rows[1].host.as_str()),
        ("db-1", "web-1")
    );
    let text = serde_json::to_string(&rows[1]).unwrap();
    assert!(
        text.starts_with(r#"{"host":"web-1","app":"api","state":"crashed","first_boot":"#),
        "{text}"
    );
    let boot_at = "2023-11-14T22:13:20.000000000Z";
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        json!({
            "host": "web-1", "app": "api", "state": "crashed",
            "first_boot": boot_at, "last_boot": boot_at, "boots_last_hour": 1,
            "ip": [["eth0", "10.0.0.2/24"], ["lo", "127.0.0.1/8"]],
            "version": "1.2.3", "pid": "4242",
            "last_heartbeat": "2023-11-14T22:13:30.000000000Z", "heartbeat_interval_s": 10.0,
            "last_message": "2023-11-14T22:13:40.000000000Z",
            "crashes": 1,
            "last_crash": {"at": "2023-11-14T22:13:40.000000000Z", "message": "boom"},
            "errors_last_hour": 2, "records": 5,
            "recent_boots": [boot_at], "local": true,
        })
    );
    assert_eq!(
        serde_json::to_value(&rows[0]).unwrap(),
        json!({
            "host": "db-1", "app": "postgres", "state": "up",
            "first_boot": null, "last_boot": null, "boots_last_hour": 0, "ip": [],
            "version": null, "pid": null, "last_heartbeat": null, "heartbeat_interval_s": null,
            "last_message": "2023-11-14T22:13:41.000000000Z", "crashes": 0, "last_crash": null,
            "errors_last_hour": 0, "records": 1, "recent_boots": [], "local": true,
        })
    );
    // Rows read back from JSON (as from a peer node) are the same rows.
    let back: ServiceRow = serde_json::from_str(&text).unwrap();
    assert_eq!(back, rows[1]);
}

#[test]
fn last_hour_counters_forget_after_an_hour() {
    let mut sim = Sim::new(FleetConfig::default());
    for i in 0..5 {
        sim.feed(T0 + i * S, &error("h", "a"));
    }
    sim.feed(T0 + 1800 * S, &error("h", "a"));
    let count = |sim: &Sim, t: i64| sim.fleet.row("h", "a", t).unwrap().errors_last_hour;
    assert_eq!(count(&sim, T0 + 1800 * S), 6);
    // T0 is 20 s into its minute; the minute leaves the window 60 minutes after it began.
    assert_eq!(count(&sim, T0 + 3579 * S), 6);
    assert_eq!(count(&sim, T0 + 3580 * S), 1);
    assert_eq!(count(&sim, T0 + 5400 * S), 0);
    assert_eq!(sim.fleet.row("h", "a", T0).unwrap().records, 6);
}

#[test]
fn merged_rows_of_several_nodes() {
    let config = FleetConfig::default();
    let mut a = Sim::new(config.clone());
    a.feed(T0, &boot("web-1", "api", 1));
    a.feed(T0 + 10 * S, &heartbeat("web-1", "api", Some(10_000)));
    a.feed(T0 + 11 * S, &error("web-1", "api"));
    let mut b = Sim::new(config.clone());
    b.feed(
        T0 + 100 * S,
        &boot("web-1", "api", 2).replace("10.0.0.2/24", "10.0.0.9/24"),
    );
    b.feed(T0 + 105 * S, &heartbeat("web-1", "api", Some(5_000)));
    b.feed(T0 + 106 * S, &crash("web-1", "api", "later"));
    b.feed(T0 + 107 * S, &info("db-1", "pg"));
    let now = T0 + 110 * S;
    let mut rows = a.fleet.rows(now);
    rows.extend(b.fleet.rows(now));
    let merged = merge_rows(rows, now, &config);
    assert_eq!(merged.len(), 2);
    let m = &merged[1];
    assert_eq!((m.host.as_str(), m.app.as_str()), ("web-1", "api"));
    assert_eq!(m.first_boot, Some(T0));
    assert_eq!(m.last_boot, Some(T0 + 100 * S));
    assert_eq!(m.boots_last_hour, 2);
    assert_eq!(m.pid.as_deref(), Some("2"));
    assert_eq!(m.ip[0], ("eth0".to_string(), "10.0.0.9/24".to_string()));
    assert_eq!(m.last_heartbeat, Some(T0 + 105 * S));
    assert_eq!(m.heartbeat_interval, Some(5 * S));
    assert_eq!(m.last_message, Some(T0 + 106 * S));
    assert_eq!(m.crashes, 1);
    assert_eq!(m.last_crash.as_ref().unwrap().message, "later");
    assert_eq!(m.errors_last_hour, 2);
    assert_eq!(m.records, 6);
    assert_eq!(m.recent_boots, vec![T0, T0 + 100 * S]);
    assert_eq!(m.state, ServiceState::Crashed);
    // A third boot elsewhere makes the merged view a boot loop.
    let mut c = Sim::new(config.clone());
    c.feed(T0 + 200 * S, &boot("web-1", "api", 3));
    let mut rows = merged.clone();
    rows.extend(c.fleet.rows(T0 + 200 * S));
    let merged = merge_rows(rows, T0 + 200 * S, &config);
    assert_eq!(merged[1].state, ServiceState::BootLooping);
    // Once the loop's window is over: its last heartbeat (5 s interval) is long gone.
    assert_eq!(
        merged[1].state_at(T0 + 601 * S, &config),
        ServiceState::Silent
    );
}

#[test]
fn peers_raise_liveness_but_not_counters() {
    let mut sim = Sim::new(FleetConfig::default());
    let k = key("web-1", "api");
    sim.feed(T0, &heartbeat("web-1", "api", Some(10_000)));
    sim.advance(T0 + 100 * S);
    assert_eq!(sim.take().len(), 1);
    // The service moved to another node, which still hears it.
    sim.fleet.handle(
        T0 + 100 * S,
        FleetInput::PeerSeen {
            key: k.clone(),
            last_heartbeat: Some(T0 + 95 * S),
            last_message: Some(T0 + 96 * S),
            last_boot: None,
            heartbeat_interval: Some(10 * S),
            last_crash: None,
        },
    );
    sim.drain();
    assert_eq!(
        sim.take(),
        vec![changed(
            &k,
            ServiceState::Silent,
            ServiceState::Up,
            T0 + 100 * S,
            "heartbeat resumed"
        )]
    );
    let row = sim.fleet.row("web-1", "api", T0 + 100 * S).unwrap();
    assert_eq!(row.records, 1);
    assert_eq!(row.last_message, Some(T0 + 96 * S));
    // Older news never lowers anything.
    sim.fleet.handle(
        T0 + 101 * S,
        FleetInput::PeerSeen {
            key: k.clone(),
            last_heartbeat: Some(T0),
            last_message: Some(T0),
            last_boot: None,
            heartbeat_interval: None,
            last_crash: None,
        },
    );
    let row = sim.fleet.row("web-1", "api", T0 + 101 * S).unwrap();
    assert_eq!(row.last_heartbeat, Some(T0 + 95 * S));
    assert_eq!(sim.fleet.poll_timeout(), Some(T0 + 125 * S + 1));
}

#[test]
fn services_known_only_from_peers_change_state_quietly() {
    // No record of web-9 here: its peers' news never makes this node alert for it.
    let mut sim = Sim::new(FleetConfig::default());
    let k = key("web-9", "api");
    sim.fleet.handle(
        T0,
        FleetInput::PeerSeen {
            key: k.clone(),
            last_heartbeat: Some(T0),
            last_message: Some(T0),
            last_boot: Some(T0),
            heartbeat_interval: Some(10 * S),
            last_crash: None,
        },
    );
    sim.advance(T0 + 100 * S);
    assert!(sim.take().is_empty());
    let row = sim.fleet.row("web-9", "api", T0 + 100 * S).unwrap();
    assert_eq!(row.state, ServiceState::Silent);
    assert!(!row.local);
}

#[test]
fn a_crash_another_node_received_is_not_silence_here() {
    let mut sim = Sim::new(FleetConfig::default());
    let k = key("web-1", "api");
    sim.feed(T0, &heartbeat("web-1", "api", Some(10_000)));
    sim.fleet.handle(
        T0 + 5 * S,
        FleetInput::PeerSeen {
            key: k.clone(),
            last_heartbeat: Some(T0 + 4 * S),
            last_message: Some(T0 + 5 * S),
            last_boot: None,
            heartbeat_interval: Some(10 * S),
            last_crash: Some(LastCrash {
                at: T0 + 5 * S,
                message: "boom".into(),
            }),
        },
    );
    sim.advance(T0 + 100 * S);
    let row = sim.fleet.row("web-1", "api", T0 + 100 * S).unwrap();
    assert_eq!(row.state, ServiceState::Crashed);
    assert_eq!(row.crashes, 0, "counters stay this node's own");
    assert!(
        sim.take().iter().all(|e| !matches!(
            e,
            FleetEvent::StateChanged {
                to: ServiceState::Silent,
                ..
            }
        )),
        "never silent"
    );
}

#[test]
fn a_gap_in_the_watch_does_not_make_services_silent() {
    let mut sim = Sim::new(FleetConfig::default());
    sim.feed(T0, &heartbeat("up-1", "api", Some(10_000)));
    sim.feed(T0, &heartbeat("quiet-1", "api", Some(10_000)));
    sim.feed(T0 + 20 * S, &heartbeat("up-1", "api", Some(10_000)));
    // quiet-1 falls silent while logd still watches (deadline T0 + 30 s).
    sim.advance(T0 + 40 * S);
    sim.take();
    // logd stops at T0 + 40 s and comes back at T0 + 600 s: up-1's deadline (T0 + 50 s)
    // fell in the gap.
    sim.fleet.resume(T0 + 40 * S, T0 + 600 * S, 0);
    sim.drain();
    assert!(sim.take().is_empty());
    assert_eq!(
        sim.fleet.row("up-1", "api", T0 + 600 * S).unwrap().state,
        ServiceState::Up
    );
    assert_eq!(
        sim.fleet.row("quiet-1", "api", T0 + 600 * S).unwrap().state,
        ServiceState::Silent
    );
    // Its heartbeats resumed: it stays up; had they not, silent 3 intervals later.
    sim.feed(T0 + 605 * S, &heartbeat("up-1", "api", Some(10_000)));
    sim.advance(T0 + 620 * S);
    assert!(sim.take().is_empty());
    sim.advance(T0 + 700 * S);
    let events = sim.take();
    assert_eq!(events.len(), 1, "{events:?}");
}

#[test]
fn the_service_table_is_capped() {
    let mut sim = Sim::new(FleetConfig {
        max_services: 3,
        ..FleetConfig::default()
    });
    for i in 0..10 {
        sim.feed(T0 + i * S, &info(&format!("h{i}"), "a"));
    }
    sim.feed(T0 + 20 * S, &info("h0", "a"));
    assert_eq!(sim.fleet.len(), 3);
    assert_eq!(sim.fleet.services_dropped(), 7);
    assert_eq!(sim.fleet.row("h0", "a", T0).unwrap().records, 2);
    assert_eq!(sim.fleet.through_id(), 11);
}

#[test]
fn snapshot_round_trips_through_json() {
    let mut sim = Sim::new(FleetConfig::default());
    sim.feed(T0, &boot("web-1", "api", 4242));
    sim.feed(T0 + 10 * S, &heartbeat("web-1", "api", Some(10_000)));
    sim.feed(T0 + 12 * S, &error("web-1", "api"));
    let snap = sim.fleet.snapshot();
    assert_eq!(snap.through_id, 3);
    let text = serde_json::to_string(&snap).unwrap();
    let back: FleetSnapshot = serde_json::from_str(&text).unwrap();
    assert_eq!(back, snap);
    let restored = Fleet::restore(back, FleetConfig::default());
    assert_eq!(restored.rows(T0 + 20 * S), sim.fleet.rows(T0 + 20 * S));
    assert_eq!(restored.poll_timeout(), sim.fleet.poll_timeout());
}

/// One step of a generated history.
#[derive(Debug, Clone)]
struct Step {
    dt_s: i64,
    op: u8,
    service: u8,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0i64..90, 0u8..8, 0u8..3).prop_map(|(dt_s, op, service)| Step { dt_s, op, service }),
        1..80,
    )
}

/// Runs `steps` on `sim` from `start` (returns the time reached).
fn run(sim: &mut Sim, steps: &[Step], mut t: i64) -> i64 {
    for step in steps {
        t += step.dt_s * S;
        let host = format!("h{}", step.service);
        let frame = match step.op {
            0 => boot(&host, "a", 1),
            1 => heartbeat(&host, "a", Some(10_000)),
            2 => heartbeat(&host, "a", None),
            3 => crash(&host, "a", "boom"),
            4 => error(&host, "a"),
            5 => info(&host, "a"),
            6 => "garbage without a header".to_string(),
            _ => {
                sim.advance(t);
                continue;
            }
        };
        sim.feed(t, &frame);
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn observe_and_handle_never_panic(raw in prop::collection::vec(any::<u8>(), 0..300)) {
        let record = Record { received_at: T0, source: Source::LOCAL, flags: 0, raw: Bytes::from(raw) };
        let mut fleet = Fleet::new(FleetConfig::default());
        fleet.handle(T0, FleetInput::Observe(observe(1, &record)));
        let _ = fleet.rows(T0);
    }

    #[test]
    fn observe_never_panics_on_damaged_logger_frames(cut in 0usize..400, tail in ".{0,40}") {
        for frame in [boot("h", "a", 1), heartbeat("h", "a", Some(5)), crash("h", "a", "x")] {
            let mut bytes = frame.as_bytes()[..cut.min(frame.len())].to_vec();
            bytes.extend_from_slice(tail.as_bytes());
            let record = Record { received_at: T0, source: Source::LOCAL, flags: 0, raw: Bytes::from(bytes) };
            let _ = observe(1, &record);
        }
    }

    #[test]
    fn a_snapshot_and_the_rest_equal_the_uninterrupted_run(steps in steps(), split in 0usize..80) {
        let split = split.min(steps.len());
        let mut whole = Sim::new(FleetConfig::default());
        let t = run(&mut whole, &steps[..split], T0);
        whole.take();
        let end = run(&mut whole, &steps[split..], t);
        whole.advance(end + 3600 * S);

        let mut first = Sim::new(FleetConfig::default());
        let t2 = run(&mut first, &steps[..split], T0);
        prop_assert_eq!(t, t2);
        let text = serde_json::to_string(&first.fleet.snapshot()).unwrap();
        let snapshot: FleetSnapshot = serde_json::from_str(&text).unwrap();
        let mut second = Sim {
            fleet: Fleet::restore(snapshot, FleetConfig::default()),
            id: first.id,
            events: Vec::new(),
        };
        let end2 = run(&mut second, &steps[split..], t2);
        second.advance(end2 + 3600 * S);

        prop_assert_eq!(&second.events, &whole.events);
        prop_assert_eq!(second.fleet.rows(end + 3600 * S), whole.fleet.rows(end + 3600 * S));
        prop_assert_eq!(second.fleet.snapshot(), whole.fleet.snapshot());
    }
}

/// The header the store's indexer parses for `record` (what the watcher is fed).
fn indexer_head(record: &Record) -> flotilla_logd::Head {
    let mut builder = flotilla_logd::block::BlockBuilder::new(1);
    builder.push(
        record,
        &flotilla_logd::query::defaults_for(record.received_at),
    )
}

/// The watcher observes from the indexer's parse; it must see exactly what a parse of its
/// own would (the rule is `observe`'s).
#[test]
fn observing_from_the_indexers_head_equals_observing_from_the_frame() {
    let frames = [
        boot("web-1", "api", 4242),
        heartbeat("web-1", "api", Some(2500)),
        heartbeat("web-1", "api", None),
        crash("web-1", "api", "boom"),
        error("web-1", "api"),
        info("web-1", "api"),
        "<27>Nov 14 22:13:20 db-1 postgres[77]: FATAL: out of disk".to_string(),
        "<13>1 - - - - BOOT - booting".to_string(),
        "<13>1 - h a - CRASH - no element".to_string(),
        "<11>1 2023-11-14T22:13:20Z h a - ERROR - failed".to_string(),
        "<11>1 2023-11-14T22:13:20Z [2001:db8::1] a - ERROR".to_string(),
        format!(
            "<14>1 - {} {} - - - long names",
            "h".repeat(600),
            "a".repeat(600)
        ),
        "just some text".to_string(),
        String::new(),
    ];
    for frame in &frames {
        let r = rec(T0, frame);
        assert_eq!(
            flotilla_logd::fleet::observe_with_head(3, &r, &indexer_head(&r)),
            observe(3, &r),
            "{frame:?}"
        );
    }
}

proptest! {
    #[test]
    fn observing_from_the_head_equals_observing_any_bytes(
        raw in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "<[0-9]{1,3}>1 [-0-9TZ:.]{1,30} [a-z-]{1,5} [a-z-]{1,5} [0-9-]{1,3} (BOOT|HEARTBEAT|CRASH|ERROR|-|x) .{0,40}"
                .prop_map(String::into_bytes),
        ]
    ) {
        let r = Record { received_at: T0, source: Source::LOCAL, flags: 0, raw: Bytes::from(raw) };
        prop_assert_eq!(
            flotilla_logd::fleet::observe_with_head(3, &r, &indexer_head(&r)),
            observe(3, &r)
        );
    }
}
