//! The fleet view: which services send to this node, whether they are up, silent,
//! crashed or restarting in a loop, and what they last said about themselves.
//!
//! A sans-I/O state machine: the shell reduces every ingested record to an
//! [`Observation`] with [`observe`] (one parse) or [`observe_with_head`] (from the
//! indexer's parse), feeds it with
//! [`Fleet::handle`]`(now, FleetInput::Observe(..))`, drains [`FleetEvent`]s with
//! [`Fleet::poll_output`] (the alert engine consumes them) and sleeps until
//! [`Fleet::poll_timeout`] before sending [`FleetInput::Tick`]. Nothing here reads a clock
//! or does I/O: `now` is logd's received-at clock in ns since the Unix epoch.
//!
//! A service is keyed by (HOSTNAME, APP-NAME) as sent (a NIL or absent field is `-`; a
//! field longer than [`MAX_KEY_BYTES`] is cut there). Records that do not parse as
//! RFC 5424 or RFC 3164 (empty or unstructured frames) are **not attributed** to any
//! service: they have no header to say who sent them. What the flotilla logger sends is
//! recognised by MSGID *and* its structured-data element (`BOOT` + `boot@32473`,
//! `HEARTBEAT` + `heartbeat@32473`, `CRASH` + `crash@32473`), so that another sender's
//! MSGID alone does not count as a boot.
//!
//! The state rule is written once, in [`ServiceRow::state_at`] (the machine, merged
//! multi-node views and the HTTP API all use it). In order of precedence:
//! - `boot-looping`: at least `boot_loop_boots` boots within `boot_loop_window`;
//! - `crashed`: a crash message at or after the last boot (so no boot since);
//! - `silent`: a heartbeat interval is known and `now` is more than
//!   `silent_after_intervals` intervals after the last sign of life (the later of the last
//!   heartbeat and the last boot);
//! - `up`: otherwise (services that never heartbeat are up while they send, and stay so).
//!
//! Memory is bounded: at most [`FleetConfig::max_services`] services (records of further
//! services are counted in [`Fleet::services_dropped`]), "last hour" counters are 60
//! sparse buckets per service, strings taken from records are capped.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault};

use flotilla_syslog::{Format, Severity, parse_lenient};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{Xxh3, xxh3_128_with_seed};

use crate::query::defaults_for;
use crate::record::{Head, Record};

/// Nanoseconds per second.
const NS_PER_SEC: i64 = 1_000_000_000;
/// Longest HOSTNAME or APP-NAME kept (longer ones are cut at a character boundary).
pub const MAX_KEY_BYTES: usize = 255;
/// Longest version, pid, interface name or address kept.
const MAX_FIELD_BYTES: usize = 255;
/// Longest crash message kept.
const MAX_MESSAGE_BYTES: usize = 1024;
/// Most interfaces kept from one boot message.
const MAX_IPS: usize = 16;
/// Shortest heartbeat interval believed (a declared or inferred shorter one counts as
/// this): a sender cannot make the fleet judge it, and alert on it, many times a second.
const MIN_HEARTBEAT_INTERVAL: i64 = NS_PER_SEC;
/// Buckets of the "last hour" counters.
pub(crate) const COUNTER_BUCKETS: i64 = 60;
/// The flotilla logger's private enterprise number suffix of its SD-IDs.
const SD_BOOT: &str = "boot@32473";
const SD_IP: &str = "ip@32473";
const SD_HEARTBEAT: &str = "heartbeat@32473";
const SD_CRASH: &str = "crash@32473";
/// Version of [`FleetSnapshot`]'s layout.
const SNAPSHOT_FORMAT: u32 = 1;

/// A service's identity: HOSTNAME and APP-NAME as sent (`-` when NIL or absent).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceKey {
    /// HOSTNAME.
    pub host: String,
    /// APP-NAME.
    pub app: String,
}

impl ServiceKey {
    /// A key from its two parts.
    pub fn new(host: impl Into<String>, app: impl Into<String>) -> ServiceKey {
        ServiceKey {
            host: host.into(),
            app: app.into(),
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.host, self.app)
    }
}

/// What a record says, as far as the fleet is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservationKind {
    /// The flotilla logger's boot message (`BOOT` + `boot@32473`).
    Boot {
        /// `(interface, address/prefix)` pairs of `ip@32473`, in order.
        ip: Vec<(String, String)>,
        /// `boot@32473 version`.
        version: Option<String>,
        /// `boot@32473 pid`, else PROCID.
        pid: Option<String>,
    },
    /// A heartbeat (`HEARTBEAT` + `heartbeat@32473`).
    Heartbeat {
        /// `interval_ms` in ns, when the sender declares it.
        interval_ns: Option<i64>,
    },
    /// "About to crash" (`CRASH` + `crash@32473`).
    Crash {
        /// `crash@32473 message` (else the MSG).
        message: String,
    },
    /// A caught error (MSGID `ERROR`).
    Error,
    /// Any other record of a service.
    Other,
    /// A record with no header (empty or unstructured): attributed to no service.
    Unattributed,
}

/// One record reduced to what the fleet needs. Borrows HOSTNAME and APP-NAME from the
/// record, so that the common case (an [`ObservationKind::Other`] record of a known
/// service) allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation<'a> {
    /// The record's id in its node.
    pub id: u64,
    /// When logd received it (ns since the Unix epoch).
    pub received_at: i64,
    /// HOSTNAME (`-` when NIL, absent or unattributed).
    pub host: &'a str,
    /// APP-NAME (`-` when NIL, absent or unattributed).
    pub app: &'a str,
    /// Severity (the parser's default, notice, without a PRI).
    pub severity: Severity,
    /// What it says.
    pub kind: ObservationKind,
}

impl Observation<'_> {
    /// Whether it counts as an error: severity err or worse, or MSGID `ERROR`.
    pub fn is_error(&self) -> bool {
        !matches!(self.kind, ObservationKind::Unattributed)
            && (self.severity.code() <= Severity::Error.code()
                || matches!(self.kind, ObservationKind::Error))
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub(crate) fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn clip_owned(s: &str, max: usize) -> String {
    clip(s, max).to_string()
}

/// Reduces one record to an [`Observation`] (one `parse_lenient`; never panics, whatever
/// the bytes). See the module documentation for what is recognised.
pub fn observe(id: u64, record: &Record) -> Observation<'_> {
    match parse_lenient(&record.raw, &defaults_for(record.received_at)) {
        Ok(parsed) => observe_parsed(id, record, &parsed),
        // Only an empty frame does not parse.
        Err(_) => observe_head(id, record, &Head::unparsed(Severity::Notice)),
    }
}

/// The same [`Observation`] as [`observe`], from the header the indexer already parsed
/// (see [`crate::store::DurableBatch`]): only the flotilla logger's lifecycle messages,
/// whose structured data matters, are parsed again.
pub fn observe_with_head<'a>(id: u64, record: &'a Record, head: &Head) -> Observation<'a> {
    match head.msg_id(&record.raw) {
        Some(MSGID_BOOT | MSGID_HEARTBEAT | MSGID_CRASH) => observe(id, record),
        // The MSGID read once (each read checks its UTF-8 again).
        msg_id => observe_head_with(id, record, head, msg_id),
    }
}

/// MSGID of the flotilla logger's boot message.
const MSGID_BOOT: &str = "BOOT";
/// MSGID of its heartbeats.
const MSGID_HEARTBEAT: &str = "HEARTBEAT";
/// MSGID of its about-to-crash message.
const MSGID_CRASH: &str = "CRASH";
/// MSGID of its caught errors.
const MSGID_ERROR: &str = "ERROR";

/// What the header alone says: who sent it (nobody, for an unstructured frame), its
/// severity, and whether it is a caught error.
fn observe_head<'a>(id: u64, record: &'a Record, head: &Head) -> Observation<'a> {
    observe_head_with(id, record, head, head.msg_id(&record.raw))
}

/// [`observe_head`] with the record's MSGID already read from `head`.
fn observe_head_with<'a>(
    id: u64,
    record: &'a Record,
    head: &Head,
    msg_id: Option<&str>,
) -> Observation<'a> {
    let raw = &record.raw;
    let attributed = head.format != Format::Unstructured;
    Observation {
        id,
        received_at: record.received_at,
        host: match attributed {
            true => clip(head.hostname(raw).unwrap_or("-"), MAX_KEY_BYTES),
            false => "-",
        },
        app: match attributed {
            true => clip(head.app_name(raw).unwrap_or("-"), MAX_KEY_BYTES),
            false => "-",
        },
        severity: head.severity,
        kind: match (attributed, msg_id) {
            (false, _) => ObservationKind::Unattributed,
            (true, Some(MSGID_ERROR)) => ObservationKind::Error,
            (true, _) => ObservationKind::Other,
        },
    }
}

/// The observation of a parsed record: the header's, with the lifecycle messages'
/// structured data read.
fn observe_parsed<'a>(
    id: u64,
    record: &'a Record,
    parsed: &flotilla_syslog::ParsedMessage<'a>,
) -> Observation<'a> {
    let plain = observe_head(id, record, &Head::of(&record.raw, parsed));
    if matches!(plain.kind, ObservationKind::Unattributed) {
        return plain;
    }
    let sd = &parsed.structured_data;
    let param = |element: &str, name: &str| -> Option<String> {
        sd.get(element)
            .and_then(|e| e.param(name))
            .map(|p| clip_owned(&p.value(), MAX_FIELD_BYTES))
    };
    let kind = match parsed.msg_id {
        Some(MSGID_BOOT) if sd.get(SD_BOOT).is_some() => ObservationKind::Boot {
            ip: sd
                .get(SD_IP)
                .map(|e| {
                    e.params()
                        .take(MAX_IPS)
                        .map(|p| {
                            (
                                clip_owned(p.name, MAX_FIELD_BYTES),
                                clip_owned(&p.value(), MAX_FIELD_BYTES),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            version: param(SD_BOOT, "version"),
            pid: param(SD_BOOT, "pid")
                .or_else(|| parsed.proc_id.map(|p| clip_owned(p, MAX_FIELD_BYTES))),
        },
        Some(MSGID_HEARTBEAT) if sd.get(SD_HEARTBEAT).is_some() => ObservationKind::Heartbeat {
            interval_ns: sd
                .get(SD_HEARTBEAT)
                .and_then(|e| e.param("interval_ms"))
                .and_then(|p| p.value().trim().parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map(|ms| ms.max(1000))
                .map(|ms| {
                    i64::try_from(ms)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(1_000_000)
                }),
        },
        Some(MSGID_CRASH) if sd.get(SD_CRASH).is_some() => ObservationKind::Crash {
            message: sd
                .get(SD_CRASH)
                .and_then(|e| e.param("message"))
                .map(|p| clip_owned(&p.value(), MAX_MESSAGE_BYTES))
                .unwrap_or_else(|| {
                    clip_owned(&String::from_utf8_lossy(parsed.msg), MAX_MESSAGE_BYTES)
                }),
        },
        _ => return plain,
    };
    Observation { kind, ..plain }
}

/// The fleet's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetConfig {
    /// A service with a known heartbeat interval is silent after this many intervals
    /// without a heartbeat (default 3).
    pub silent_after_intervals: u32,
    /// Boots within [`FleetConfig::boot_loop_window`] that make a boot loop (default 3;
    /// 0 disables boot-loop detection).
    pub boot_loop_boots: u32,
    /// The boot-loop window in ns (default 10 minutes).
    pub boot_loop_window: i64,
    /// The window of the "last hour" counters in ns (default 1 hour), kept as 60 buckets.
    pub counter_window: i64,
    /// Most services tracked (default 100,000).
    pub max_services: usize,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            silent_after_intervals: 3,
            boot_loop_boots: 3,
            boot_loop_window: 600 * NS_PER_SEC,
            counter_window: 3600 * NS_PER_SEC,
            max_services: 100_000,
        }
    }
}

impl FleetConfig {
    fn bucket_width(&self) -> i64 {
        (self.counter_window / COUNTER_BUCKETS).max(1)
    }
}

/// A service's state (see the module documentation for the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    /// Sending, heartbeating on time (or not heartbeating at all).
    Up,
    /// Heartbeats stopped.
    Silent,
    /// Said it was about to crash and has not booted since.
    Crashed,
    /// Booted too often lately.
    BootLooping,
}

impl ServiceState {
    /// The name used in JSON: `up`, `silent`, `crashed`, `boot-looping`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceState::Up => "up",
            ServiceState::Silent => "silent",
            ServiceState::Crashed => "crashed",
            ServiceState::BootLooping => "boot-looping",
        }
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the fleet machine reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FleetEvent {
    /// A service's state changed. A new service starts as `up` (no event unless its
    /// first record already makes it something else).
    StateChanged {
        /// The service.
        key: ServiceKey,
        /// The state before.
        from: ServiceState,
        /// The state now.
        to: ServiceState,
        /// When (ns): the input's `now`, or the instant a deadline passed (a service
        /// becomes silent when its last sign of life is `k` intervals old).
        at: i64,
        /// Why, for humans (`crashed: <message>`, `no heartbeat for 3 intervals of
        /// 10s`, `3 boots within 600s`, `heartbeat resumed`, `booted`, ...).
        reason: String,
    },
    /// A service said it is about to crash.
    Crashed {
        /// The service.
        key: ServiceKey,
        /// The crash record's received-at time (ns).
        at: i64,
        /// The panic message.
        message: String,
    },
    /// A service booted.
    Booted {
        /// The service.
        key: ServiceKey,
        /// The boot record's received-at time (ns).
        at: i64,
    },
}

/// What the fleet machine takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetInput<'a> {
    /// One record (see [`observe`]).
    Observe(Observation<'a>),
    /// Time passed (call at [`Fleet::poll_timeout`]).
    Tick,
    /// Liveness of a service as seen by another logd node of the cluster: raises the
    /// liveness timestamps (never lowers them) and never touches counters. Creates the
    /// service if it is unknown here (within the service cap).
    PeerSeen {
        /// The service.
        key: ServiceKey,
        /// Its last heartbeat there (ns).
        last_heartbeat: Option<i64>,
        /// Its last record there (ns).
        last_message: Option<i64>,
        /// Its last boot there (ns).
        last_boot: Option<i64>,
        /// Its heartbeat interval there (ns); taken when that node's heartbeat is the
        /// newest, or when none is known here.
        heartbeat_interval: Option<i64>,
        /// Its last crash there, when newer than the one known here (so that a crash
        /// another node received makes the service crashed here, not silent).
        last_crash: Option<LastCrash>,
    },
}

/// The last crash of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCrash {
    /// Received-at time of the crash message (RFC 3339 in JSON).
    #[serde(with = "time")]
    pub at: i64,
    /// The panic message.
    pub message: String,
}

/// One service as the API shows it. Times are ns since the epoch in Rust and RFC 3339
/// strings (or `null`) in JSON; the JSON field order and names are what the web page and
/// the CLI read:
/// `{"host","app","state","first_boot","last_boot","boots_last_hour","ip","version",
/// "pid","last_heartbeat","heartbeat_interval_s","last_message","crashes","last_crash",
/// "errors_last_hour","records","recent_boots"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRow {
    /// HOSTNAME.
    pub host: String,
    /// APP-NAME.
    pub app: String,
    /// The state at the time the row was made (see [`ServiceRow::state_at`]).
    pub state: ServiceState,
    /// First boot seen.
    #[serde(with = "opt_time")]
    pub first_boot: Option<i64>,
    /// Last boot seen.
    #[serde(with = "opt_time")]
    pub last_boot: Option<i64>,
    /// Boots within the counter window ("last hour").
    pub boots_last_hour: u64,
    /// `(interface, address/prefix)` of the last boot (`[["eth0","10.0.0.2/24"],...]`).
    pub ip: Vec<(String, String)>,
    /// Version of the last boot.
    pub version: Option<String>,
    /// Process id of the last boot.
    pub pid: Option<String>,
    /// Last heartbeat.
    #[serde(with = "opt_time")]
    pub last_heartbeat: Option<i64>,
    /// Heartbeat interval in ns (declared `interval_ms`, else the gap between the last two
    /// heartbeats of the same process); seconds as a number in JSON.
    #[serde(rename = "heartbeat_interval_s", with = "opt_secs")]
    pub heartbeat_interval: Option<i64>,
    /// Last record of any kind.
    #[serde(with = "opt_time")]
    pub last_message: Option<i64>,
    /// Crash messages, in total.
    pub crashes: u64,
    /// The last crash.
    pub last_crash: Option<LastCrash>,
    /// Records of severity err or worse (or MSGID `ERROR`) within the counter window.
    pub errors_last_hour: u64,
    /// Records in total.
    pub records: u64,
    /// The latest boots (at most `boot_loop_boots`, oldest first): what the boot-loop
    /// rule needs, kept so that rows of several nodes can be merged.
    #[serde(with = "times")]
    pub recent_boots: Vec<i64>,
    /// When this node's watch of the service resumed after a gap in it (logd was down):
    /// the service is not called silent before this plus 3 intervals, since its
    /// heartbeats during the gap are unknown here. Absent in JSON when not set.
    #[serde(default, with = "opt_time", skip_serializing_if = "Option::is_none")]
    pub silence_floor: Option<i64>,
    /// Whether this node holds records of the service (rather than knowing it only from
    /// its peers). Only such a node raises the service's built-in alerts.
    #[serde(default = "yes")]
    pub local: bool,
}

fn yes() -> bool {
    true
}

/// The inputs of the state rule, borrowed from a row or a live service.
struct Liveness {
    /// No silence before this plus `k` intervals (see [`Fleet::resume`]).
    silence_floor: Option<i64>,
    last_boot: Option<i64>,
    last_heartbeat: Option<i64>,
    heartbeat_interval: Option<i64>,
    last_crash_at: Option<i64>,
    /// The `boot_loop_boots`-th most recent boot, when there were that many.
    loop_boot: Option<i64>,
}

impl Liveness {
    /// When the silence deadline is: the later of the last heartbeat and the last boot,
    /// plus `k` intervals. `None` without a heartbeat or an interval.
    fn silent_after(&self, config: &FleetConfig) -> Option<i64> {
        let (Some(heartbeat), Some(interval)) = (self.last_heartbeat, self.heartbeat_interval)
        else {
            return None;
        };
        let base = self.last_boot.map_or(heartbeat, |b| b.max(heartbeat));
        let base = self.silence_floor.map_or(base, |f| f.max(base));
        Some(base.saturating_add(interval.saturating_mul(i64::from(config.silent_after_intervals))))
    }

    /// The end (inclusive) of the current boot loop's window, if there is a loop candidate.
    fn loop_until(&self, config: &FleetConfig) -> Option<i64> {
        if config.boot_loop_boots == 0 {
            return None;
        }
        self.loop_boot
            .map(|b| b.saturating_add(config.boot_loop_window))
    }

    /// THE state rule.
    fn state_at(&self, now: i64, config: &FleetConfig) -> ServiceState {
        if self.loop_until(config).is_some_and(|until| now <= until) {
            ServiceState::BootLooping
        } else if self
            .last_crash_at
            .is_some_and(|c| self.last_boot.is_none_or(|b| c >= b))
        {
            ServiceState::Crashed
        } else if self.silent_after(config).is_some_and(|s| now > s) {
            ServiceState::Silent
        } else {
            ServiceState::Up
        }
    }

    /// The next instant after `now` at which [`Liveness::state_at`] may change without
    /// new input.
    fn next_change(&self, now: i64, config: &FleetConfig) -> Option<i64> {
        [
            self.silent_after(config).map(|s| s.saturating_add(1)),
            self.loop_until(config).map(|u| u.saturating_add(1)),
        ]
        .into_iter()
        .flatten()
        .filter(|&t| t > now)
        .min()
    }
}

/// The `n`-th most recent of `boots` (sorted oldest first).
fn nth_latest(
    boots: impl ExactSizeIterator<Item = i64> + DoubleEndedIterator,
    n: u32,
) -> Option<i64> {
    if n == 0 {
        return None;
    }
    boots.rev().nth(n as usize - 1)
}

impl ServiceRow {
    fn liveness(&self, config: &FleetConfig) -> Liveness {
        Liveness {
            silence_floor: self.silence_floor,
            last_boot: self.last_boot,
            last_heartbeat: self.last_heartbeat,
            heartbeat_interval: self.heartbeat_interval,
            last_crash_at: self.last_crash.as_ref().map(|c| c.at),
            loop_boot: nth_latest(self.recent_boots.iter().copied(), config.boot_loop_boots),
        }
    }

    /// The state of this service at `now` (the one state rule; see the module
    /// documentation).
    pub fn state_at(&self, now: i64, config: &FleetConfig) -> ServiceState {
        self.liveness(config).state_at(now, config)
    }

    /// The service's key.
    pub fn key(&self) -> ServiceKey {
        ServiceKey::new(&self.host, &self.app)
    }
}

/// Merges rows of the same services from several nodes: earliest first boot, latest
/// `last_*`, summed counters, IP configuration, version and pid of the latest boot, the
/// union of recent boots, and the state recomputed at `now`. Sorted by host, then app.
pub fn merge_rows(rows: Vec<ServiceRow>, now: i64, config: &FleetConfig) -> Vec<ServiceRow> {
    let mut merged: BTreeMap<(String, String), ServiceRow> = BTreeMap::new();
    for row in rows {
        match merged.entry((row.host.clone(), row.app.clone())) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(row);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let m = o.get_mut();
                let min = |a: Option<i64>, b: Option<i64>| match (a, b) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                // On a tie (a peer's copy of the same boot), the row that has the boot's
                // details wins.
                if row.last_boot > m.last_boot
                    || (row.last_boot == m.last_boot && m.ip.is_empty() && !row.ip.is_empty())
                {
                    m.ip = row.ip;
                    m.version = row.version;
                    m.pid = row.pid;
                }
                if row.last_heartbeat > m.last_heartbeat || m.heartbeat_interval.is_none() {
                    m.heartbeat_interval = row.heartbeat_interval.or(m.heartbeat_interval);
                }
                m.first_boot = min(m.first_boot, row.first_boot);
                m.last_boot = m.last_boot.max(row.last_boot);
                m.boots_last_hour = m.boots_last_hour.saturating_add(row.boots_last_hour);
                m.last_heartbeat = m.last_heartbeat.max(row.last_heartbeat);
                m.last_message = m.last_message.max(row.last_message);
                m.crashes = m.crashes.saturating_add(row.crashes);
                if row.last_crash.as_ref().map(|c| c.at) > m.last_crash.as_ref().map(|c| c.at) {
                    m.last_crash = row.last_crash;
                }
                m.errors_last_hour = m.errors_last_hour.saturating_add(row.errors_last_hour);
                m.silence_floor = m.silence_floor.max(row.silence_floor);
                m.local |= row.local;
                m.records = m.records.saturating_add(row.records);
                m.recent_boots.extend(row.recent_boots);
                m.recent_boots.sort_unstable();
                m.recent_boots.dedup();
            }
        }
    }
    let keep = config.boot_loop_boots as usize;
    merged
        .into_values()
        .map(|mut row| {
            let cut = row.recent_boots.len().saturating_sub(keep);
            row.recent_boots.drain(..cut);
            row.state = row.state_at(now, config);
            row
        })
        .collect()
}

/// Sparse per-bucket counts `(bucket index, count)`, oldest first, at most
/// [`COUNTER_BUCKETS`] entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Buckets(VecDeque<(i64, u32)>);

impl Buckets {
    /// Counts one event at `t` in buckets `width` ns wide.
    pub(crate) fn add(&mut self, t: i64, width: i64) {
        let idx = t.div_euclid(width);
        match self.0.back_mut() {
            Some((b, c)) if *b == idx => *c = c.saturating_add(1),
            Some((b, _)) if *b > idx => {
                // Out of order (rare): count it in its bucket if that is still kept.
                if idx <= *b - COUNTER_BUCKETS {
                    return;
                }
                match self.0.binary_search_by_key(&idx, |e| e.0) {
                    Ok(i) => {
                        if let Some(e) = self.0.get_mut(i) {
                            e.1 = e.1.saturating_add(1);
                        }
                    }
                    Err(i) => self.0.insert(i, (idx, 1)),
                }
            }
            _ => self.0.push_back((idx, 1)),
        }
        let newest = self.0.back().map_or(idx, |e| e.0);
        while self
            .0
            .front()
            .is_some_and(|e| e.0 <= newest - COUNTER_BUCKETS)
        {
            self.0.pop_front();
        }
    }

    /// Events in the 60 buckets ending with `now`'s.
    pub(crate) fn count(&self, now: i64, width: i64) -> u64 {
        let current = now.div_euclid(width);
        self.0
            .iter()
            .filter(|e| e.0 > current - COUNTER_BUCKETS)
            .map(|e| u64::from(e.1))
            .sum()
    }

    /// The oldest bucket's index.
    pub(crate) fn oldest(&self) -> Option<i64> {
        self.0.front().map(|e| e.0)
    }

    /// Drops the buckets outside the 60 ending with `now`'s.
    pub(crate) fn prune(&mut self, now: i64, width: i64) {
        let current = now.div_euclid(width);
        while self
            .0
            .front()
            .is_some_and(|e| e.0 <= current - COUNTER_BUCKETS)
        {
            self.0.pop_front();
        }
    }

    /// Whether no bucket is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One tracked service (the machine's form of a row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Service {
    host: String,
    app: String,
    first_boot: Option<i64>,
    last_boot: Option<i64>,
    recent_boots: VecDeque<i64>,
    boots: Buckets,
    ip: Vec<(String, String)>,
    version: Option<String>,
    pid: Option<String>,
    last_heartbeat: Option<i64>,
    /// The last heartbeat of the current process (cleared by a boot), to infer intervals.
    heartbeat_chain: Option<i64>,
    heartbeat_interval: Option<i64>,
    /// Up to date only in snapshots: the live value is in [`Fleet::hot`].
    last_message: Option<i64>,
    crashes: u64,
    last_crash: Option<LastCrash>,
    errors: Buckets,
    /// Up to date only in snapshots: the live value is in [`Fleet::hot`].
    records: u64,
    /// See [`ServiceRow::silence_floor`].
    #[serde(default)]
    silence_floor: Option<i64>,
    /// The state last reported.
    state: ServiceState,
    /// The timer registered for it.
    deadline: Option<i64>,
}

impl Service {
    fn new(host: &str, app: &str) -> Service {
        Service {
            host: host.to_string(),
            app: app.to_string(),
            first_boot: None,
            last_boot: None,
            recent_boots: VecDeque::new(),
            boots: Buckets::default(),
            ip: Vec::new(),
            version: None,
            pid: None,
            last_heartbeat: None,
            heartbeat_chain: None,
            heartbeat_interval: None,
            last_message: None,
            crashes: 0,
            last_crash: None,
            errors: Buckets::default(),
            records: 0,
            silence_floor: None,
            state: ServiceState::Up,
            deadline: None,
        }
    }

    fn key(&self) -> ServiceKey {
        ServiceKey::new(&self.host, &self.app)
    }

    fn liveness(&self, config: &FleetConfig) -> Liveness {
        Liveness {
            silence_floor: self.silence_floor,
            last_boot: self.last_boot,
            last_heartbeat: self.last_heartbeat,
            heartbeat_interval: self.heartbeat_interval,
            last_crash_at: self.last_crash.as_ref().map(|c| c.at),
            loop_boot: nth_latest(self.recent_boots.iter().copied(), config.boot_loop_boots),
        }
    }

    fn row(&self, hot: Hot, now: i64, config: &FleetConfig) -> ServiceRow {
        let width = config.bucket_width();
        ServiceRow {
            host: self.host.clone(),
            app: self.app.clone(),
            state: self.liveness(config).state_at(now, config),
            first_boot: self.first_boot,
            last_boot: self.last_boot,
            boots_last_hour: self.boots.count(now, width),
            ip: self.ip.clone(),
            version: self.version.clone(),
            pid: self.pid.clone(),
            last_heartbeat: self.last_heartbeat,
            heartbeat_interval: self.heartbeat_interval,
            last_message: hot.last_message(),
            crashes: self.crashes,
            last_crash: self.last_crash.clone(),
            errors_last_hour: self.errors.count(now, width),
            records: hot.records,
            recent_boots: self.recent_boots.iter().copied().collect(),
            silence_floor: self.silence_floor,
            local: hot.records > 0,
        }
    }

    /// Why it went from `from` to `to`.
    fn reason(&self, from: ServiceState, to: ServiceState, config: &FleetConfig) -> String {
        let secs = |ns: i64| format_secs(ns);
        match to {
            ServiceState::BootLooping => format!(
                "{} boots within {}",
                config.boot_loop_boots,
                secs(config.boot_loop_window)
            ),
            ServiceState::Crashed => format!(
                "crashed: {}",
                self.last_crash.as_ref().map_or("", |c| c.message.as_str())
            ),
            ServiceState::Silent => format!(
                "no heartbeat for {} intervals of {}",
                config.silent_after_intervals,
                self.heartbeat_interval.map_or_else(|| "?".into(), secs)
            ),
            ServiceState::Up => match from {
                ServiceState::BootLooping => format!(
                    "fewer than {} boots within {}",
                    config.boot_loop_boots,
                    secs(config.boot_loop_window)
                ),
                ServiceState::Crashed => "booted".into(),
                ServiceState::Silent
                    if self.last_boot.is_some() && self.last_boot >= self.last_heartbeat =>
                {
                    "booted".into()
                }
                _ => "heartbeat resumed".into(),
            },
        }
    }
}

/// `12s`, `1.5s`: a duration in seconds for humans.
pub(crate) fn format_secs(ns: i64) -> String {
    if ns % NS_PER_SEC == 0 {
        format!("{}s", ns / NS_PER_SEC)
    } else {
        format!("{}s", ns as f64 / 1e9)
    }
}

/// The fleet's persistent form (JSON in the data directory). Pending outputs are not
/// part of it: take it after draining [`Fleet::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSnapshot {
    /// Layout version (1).
    pub format: u32,
    /// The last record id observed (0: none); replay records with a larger id.
    pub through_id: u64,
    /// See [`Fleet::services_dropped`].
    pub services_dropped: u64,
    services: Vec<Service>,
}

/// Identifies services by a 128-bit keyed hash (XXH3 with a random seed) of HOSTNAME
/// and APP-NAME, so that finding a record's service touches neither string: with
/// thousands of services those lookups were the fleet view's largest cost. Two services
/// would share a row only if their fingerprints collided, about 1 in 2^128 per pair,
/// and the seed is unknown to senders.
#[derive(Debug, Clone)]
struct ServiceFingerprints {
    seed: u64,
}

impl ServiceFingerprints {
    fn new() -> ServiceFingerprints {
        ServiceFingerprints {
            seed: std::hash::RandomState::new().hash_one(0u8),
        }
    }

    fn of(&self, host: &str, app: &str) -> u128 {
        // HOSTNAME, 0xFF, APP-NAME: 0xFF never occurs in UTF-8, so pairs cannot run into
        // each other. Usual names fit the stack buffer (one-shot hashing is much cheaper
        // than the streaming hasher, which the rest use).
        let mut buf = [0u8; 128];
        let len = host.len() + 1 + app.len();
        if let Some(key) = buf.get_mut(..len) {
            let (h, rest) = key.split_at_mut(host.len());
            h.copy_from_slice(host.as_bytes());
            if let Some((sep, a)) = rest.split_first_mut() {
                *sep = 0xFF;
                a.copy_from_slice(app.as_bytes());
            }
            return xxh3_128_with_seed(key, self.seed);
        }
        let mut h = Xxh3::with_seed(self.seed);
        h.update(host.as_bytes());
        h.update(&[0xFF]);
        h.update(app.as_bytes());
        h.digest128()
    }
}

/// The map hasher for keys that are keyed hashes already: their low 64 bits are used.
#[derive(Debug, Default)]
struct PrehashedKey(u64);

impl std::hash::Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `u128` keys; correct (FNV-1a) for anything else.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

/// What every record of a service updates, kept apart from its [`Service`] so that this
/// one update per record touches a small array (16 bytes a service) that stays in the
/// CPU's cache, not a row of hundreds of bytes among thousands.
#[derive(Debug, Clone, Copy)]
struct Hot {
    records: u64,
    /// `i64::MIN`: none yet.
    last_message: i64,
}

impl Default for Hot {
    fn default() -> Hot {
        Hot {
            records: 0,
            last_message: i64::MIN,
        }
    }
}

impl Hot {
    fn last_message(self) -> Option<i64> {
        (self.last_message != i64::MIN).then_some(self.last_message)
    }
}

/// The fleet machine (see the module documentation).
#[derive(Debug, Clone)]
pub struct Fleet {
    config: FleetConfig,
    /// Services in the order they were first seen (the index is their timer id).
    services: Vec<Service>,
    /// Each service's per-record counters (same index).
    hot: Vec<Hot>,
    /// Fingerprint of (HOSTNAME, APP-NAME) → index.
    index: HashMap<u128, u32, BuildHasherDefault<PrehashedKey>>,
    /// Makes the fingerprints (seeded at random by the operating system).
    fingerprints: ServiceFingerprints,
    /// (deadline, service index).
    timers: BTreeSet<(i64, u32)>,
    outputs: VecDeque<FleetEvent>,
    through_id: u64,
    services_dropped: u64,
}

impl Fleet {
    /// An empty fleet.
    pub fn new(config: FleetConfig) -> Fleet {
        Fleet {
            config,
            services: Vec::new(),
            hot: Vec::new(),
            index: HashMap::default(),
            fingerprints: ServiceFingerprints::new(),
            timers: BTreeSet::new(),
            outputs: VecDeque::new(),
            through_id: 0,
            services_dropped: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// Services tracked.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether no service is tracked.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The last record id observed (0: none).
    pub fn through_id(&self) -> u64 {
        self.through_id
    }

    /// Records of services that were not tracked because [`FleetConfig::max_services`]
    /// were (each such record counts once: distinct services cannot be counted without
    /// the memory the cap saves).
    pub fn services_dropped(&self) -> u64 {
        self.services_dropped
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: i64, input: FleetInput<'_>) {
        self.run_timers(now);
        match input {
            FleetInput::Observe(observation) => self.observe_one(now, &observation),
            FleetInput::Tick => {}
            peer @ FleetInput::PeerSeen { .. } => self.peer_seen(now, peer),
        }
    }

    /// The next event, if any.
    pub fn poll_output(&mut self) -> Option<FleetEvent> {
        self.outputs.pop_front()
    }

    /// The next instant at which [`FleetInput::Tick`] would change a state.
    pub fn poll_timeout(&self) -> Option<i64> {
        self.timers.first().map(|t| t.0)
    }

    /// Every service at `now`, sorted by host, then app.
    pub fn rows(&self, now: i64) -> Vec<ServiceRow> {
        let mut rows: Vec<ServiceRow> = self
            .services
            .iter()
            .zip(&self.hot)
            .map(|(s, &hot)| s.row(hot, now, &self.config))
            .collect();
        rows.sort_by(|a, b| (&a.host, &a.app).cmp(&(&b.host, &b.app)));
        rows
    }

    /// One service at `now`.
    pub fn row(&self, host: &str, app: &str, now: i64) -> Option<ServiceRow> {
        let i = self.lookup(host, app)?;
        let hot = self.hot.get(i as usize).copied().unwrap_or_default();
        self.services
            .get(i as usize)
            .map(|s| s.row(hot, now, &self.config))
    }

    /// The persistent form.
    pub fn snapshot(&self) -> FleetSnapshot {
        FleetSnapshot {
            format: SNAPSHOT_FORMAT,
            through_id: self.through_id,
            services_dropped: self.services_dropped,
            services: self
                .services
                .iter()
                .zip(&self.hot)
                .map(|(s, hot)| Service {
                    records: hot.records,
                    last_message: hot.last_message(),
                    ..s.clone()
                })
                .collect(),
        }
    }

    /// A fleet from its persistent form (use the same config for an exact continuation;
    /// with another one, states are re-evaluated at the next input).
    pub fn restore(snapshot: FleetSnapshot, config: FleetConfig) -> Fleet {
        let mut fleet = Fleet::new(config);
        fleet.through_id = snapshot.through_id;
        fleet.services_dropped = snapshot.services_dropped;
        let keep = fleet.config.boot_loop_boots as usize;
        for mut service in snapshot.services {
            if fleet.services.len() >= fleet.config.max_services
                || fleet.lookup(&service.host, &service.app).is_some()
            {
                continue;
            }
            while service.recent_boots.len() > keep {
                service.recent_boots.pop_front();
            }
            let i = fleet.services.len() as u32;
            let key = fleet.fingerprints.of(&service.host, &service.app);
            fleet.index.insert(key, i);
            if let Some(d) = service.deadline {
                fleet.timers.insert((d, i));
            }
            fleet.hot.push(Hot {
                records: service.records,
                last_message: service.last_message.unwrap_or(i64::MIN),
            });
            fleet.services.push(service);
        }
        fleet
    }

    fn lookup(&self, host: &str, app: &str) -> Option<u32> {
        self.index.get(&self.fingerprints.of(host, app)).copied()
    }

    /// The index of a service, created if there is room.
    fn lookup_or_insert(&mut self, host: &str, app: &str) -> Option<u32> {
        if let Some(i) = self.lookup(host, app) {
            return Some(i);
        }
        if self.services.len() >= self.config.max_services {
            self.services_dropped += 1;
            return None;
        }
        let i = self.services.len() as u32;
        self.services.push(Service::new(host, app));
        self.hot.push(Hot::default());
        self.index.insert(self.fingerprints.of(host, app), i);
        Some(i)
    }

    fn run_timers(&mut self, now: i64) {
        while let Some(&(deadline, i)) = self.timers.first() {
            if deadline > now {
                break;
            }
            self.timers.pop_first();
            if let Some(s) = self.services.get_mut(i as usize) {
                s.deadline = None;
            }
            self.refresh(i, now, deadline);
        }
    }

    /// Re-evaluates a service's state at `now` (reporting a change as of `at`) and its
    /// timer.
    fn refresh(&mut self, i: u32, now: i64, at: i64) {
        let config = &self.config;
        let Some(service) = self.services.get_mut(i as usize) else {
            return;
        };
        let liveness = service.liveness(config);
        let state = liveness.state_at(now, config);
        if state != service.state {
            let from = service.state;
            service.state = state;
            // A service known only from peers (no record of it here) changes state
            // quietly: the node that holds its records reports it, not every node.
            if self.hot.get(i as usize).is_some_and(|h| h.records > 0) {
                self.outputs.push_back(FleetEvent::StateChanged {
                    key: service.key(),
                    from,
                    to: state,
                    at,
                    reason: service.reason(from, state, config),
                });
            }
        }
        let deadline = liveness.next_change(now, config);
        if deadline != service.deadline {
            if let Some(old) = service.deadline {
                self.timers.remove(&(old, i));
            }
            if let Some(new) = deadline {
                self.timers.insert((new, i));
            }
            service.deadline = deadline;
        }
    }

    fn observe_one(&mut self, now: i64, o: &Observation<'_>) {
        self.through_id = self.through_id.max(o.id);
        if o.kind == ObservationKind::Unattributed {
            return;
        }
        let Some(i) = self.lookup_or_insert(o.host, o.app) else {
            return;
        };
        let t = o.received_at;
        if let Some(hot) = self.hot.get_mut(i as usize) {
            hot.records += 1;
            hot.last_message = hot.last_message.max(t);
        }
        let plain = matches!(o.kind, ObservationKind::Other | ObservationKind::Error);
        if plain && !o.is_error() {
            // Most records: nothing else to update.
            return;
        }
        let config = &self.config;
        let width = config.bucket_width();
        let Some(service) = self.services.get_mut(i as usize) else {
            return;
        };
        if o.is_error() {
            service.errors.add(t, width);
        }
        match &o.kind {
            ObservationKind::Other | ObservationKind::Error | ObservationKind::Unattributed => {
                return;
            }
            ObservationKind::Boot { ip, version, pid } => {
                service.first_boot = Some(service.first_boot.map_or(t, |f| f.min(t)));
                if service.last_boot.is_none_or(|b| t >= b) {
                    service.last_boot = Some(t);
                    service.ip.clone_from(ip);
                    service.version.clone_from(version);
                    service.pid.clone_from(pid);
                    service.heartbeat_chain = None;
                }
                let keep = config.boot_loop_boots as usize;
                if keep > 0 {
                    let at = service.recent_boots.partition_point(|&b| b <= t);
                    service.recent_boots.insert(at, t);
                    while service.recent_boots.len() > keep {
                        service.recent_boots.pop_front();
                    }
                }
                service.boots.add(t, width);
                let key = service.key();
                self.outputs.push_back(FleetEvent::Booted { key, at: t });
            }
            ObservationKind::Heartbeat { interval_ns } => {
                if let Some(declared) = interval_ns {
                    service.heartbeat_interval = Some(*declared);
                } else if let Some(previous) = service.heartbeat_chain
                    && t > previous
                {
                    service.heartbeat_interval = Some((t - previous).max(MIN_HEARTBEAT_INTERVAL));
                }
                if service.heartbeat_chain.is_none_or(|p| t > p) {
                    service.heartbeat_chain = Some(t);
                }
                service.last_heartbeat = service.last_heartbeat.max(Some(t));
            }
            ObservationKind::Crash { message } => {
                service.crashes += 1;
                if service.last_crash.as_ref().is_none_or(|c| t >= c.at) {
                    service.last_crash = Some(LastCrash {
                        at: t,
                        message: message.clone(),
                    });
                }
                let key = service.key();
                self.outputs.push_back(FleetEvent::Crashed {
                    key,
                    at: t,
                    message: message.clone(),
                });
            }
        }
        self.refresh(i, now, now);
    }

    fn peer_seen(&mut self, now: i64, news: FleetInput<'_>) {
        let FleetInput::PeerSeen {
            key,
            last_heartbeat,
            last_message,
            last_boot,
            heartbeat_interval,
            last_crash,
        } = news
        else {
            return;
        };
        let host = clip(&key.host, MAX_KEY_BYTES);
        let app = clip(&key.app, MAX_KEY_BYTES);
        let Some(i) = self.lookup_or_insert(host, app) else {
            return;
        };
        let Some(service) = self.services.get_mut(i as usize) else {
            return;
        };
        let interval = heartbeat_interval.filter(|&v| v > 0);
        if interval.is_some()
            && (service.heartbeat_interval.is_none() || last_heartbeat > service.last_heartbeat)
        {
            service.heartbeat_interval = interval;
        }
        service.last_heartbeat = service.last_heartbeat.max(last_heartbeat);
        if let Some(hot) = self.hot.get_mut(i as usize)
            && let Some(t) = last_message
        {
            hot.last_message = hot.last_message.max(t);
        }
        if last_boot > service.last_boot {
            service.last_boot = last_boot;
            service.heartbeat_chain = None;
        }
        if service.first_boot.is_none() {
            service.first_boot = last_boot;
        }
        // A crash another node received: this node must not take the silence that
        // follows for a service that stopped heartbeating (the counters stay its own).
        if let Some(crash) = last_crash
            && service.last_crash.as_ref().is_none_or(|c| crash.at > c.at)
        {
            service.last_crash = Some(LastCrash {
                at: crash.at,
                message: clip_owned(&crash.message, MAX_MESSAGE_BYTES),
            });
        }
        self.refresh(i, now, now);
    }

    /// Resumes watching after a gap (logd was stopped; `stopped_at` is the last instant
    /// it watched, `now` the first it watches again). A service whose silence deadline
    /// fell within the gap is not called silent for it (its heartbeats during the gap
    /// were never seen here): its deadline becomes `now + grace + k` intervals. A
    /// service already silent before the gap stays silent.
    pub fn resume(&mut self, stopped_at: i64, now: i64, grace: i64) {
        let config = self.config.clone();
        for i in 0..self.services.len() {
            let Some(service) = self.services.get_mut(i) else {
                continue;
            };
            let deadline = service.liveness(&config).silent_after(&config);
            if deadline.is_some_and(|d| d > stopped_at && d <= now.saturating_add(grace)) {
                service.silence_floor = Some(now.saturating_add(grace));
                if let Ok(index) = u32::try_from(i) {
                    self.refresh(index, now, now);
                }
            }
        }
    }
}

/// Serde for an `i64` ns time as an RFC 3339 string.
pub(crate) mod time {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as RFC 3339.
    pub(crate) fn serialize<S: Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::query::format_ns(*ns))
    }

    /// Parses RFC 3339 (or `@secs`).
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        crate::query::parse_time(&text, 0).map_err(serde::de::Error::custom)
    }
}

/// Serde for an optional `i64` ns time as an RFC 3339 string or `null`.
pub(crate) mod opt_time {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as RFC 3339 or `null`.
    pub(crate) fn serialize<S: Serializer>(ns: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ns {
            Some(ns) => s.serialize_str(&crate::query::format_ns(*ns)),
            None => s.serialize_none(),
        }
    }

    /// Parses RFC 3339 (or `@secs`) or `null`.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| crate::query::parse_time(&text, 0).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Serde for a list of `i64` ns times as RFC 3339 strings.
mod times {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(list: &[i64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for ns in list {
            seq.serialize_element(&crate::query::format_ns(*ns))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| crate::query::parse_time(text, 0).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Serde for an optional `i64` ns duration as a number of seconds.
mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(ns: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ns {
            Some(ns) => s.serialize_f64(*ns as f64 / 1e9),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map(|s| (s * 1e9).round() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short names are hashed in one shot, long ones streamed: the same service must get
    /// the same fingerprint either way, and distinct ones distinct fingerprints.
    #[test]
    fn fingerprints_do_not_depend_on_the_hashing_path() {
        let f = ServiceFingerprints { seed: 42 };
        let long = "h".repeat(200);
        for (host, app) in [("web-1", "api"), (long.as_str(), "api"), ("", "")] {
            let mut joined = host.as_bytes().to_vec();
            joined.push(0xFF);
            joined.extend_from_slice(app.as_bytes());
            let mut streamed = Xxh3::with_seed(42);
            streamed.update(&joined);
            assert_eq!(f.of(host, app), streamed.digest128(), "{host:.10}");
            assert_eq!(f.of(host, app), xxh3_128_with_seed(&joined, 42));
        }
        assert_ne!(f.of("ab", "c"), f.of("a", "bc"));
        let mut fleet = Fleet::new(FleetConfig::default());
        assert_eq!(fleet.lookup_or_insert(&long, "x"), Some(0));
        assert_eq!(fleet.lookup_or_insert(&long, "x"), Some(0));
        assert_eq!(fleet.lookup_or_insert(&long, "y"), Some(1));
    }
}
