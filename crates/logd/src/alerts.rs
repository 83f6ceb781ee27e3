//! The alert engine: rules (TOML) over the records a node ingests and over the fleet's
//! state changes, and the notifications they produce.
//!
//! A sans-I/O state machine like [`crate::fleet::Fleet`]: the shell feeds every record
//! ([`AlertInput::Record`], user rules) and every fleet event ([`AlertInput::Fleet`],
//! built-in alerts), drains [`Notification`]s with [`AlertEngine::poll_output`] (handed to
//! the notifier), and sends [`AlertInput::Tick`] at [`AlertEngine::poll_timeout`].
//!
//! # Rules file
//!
//! ```toml
//! [builtin]            # all on when the section or the file is absent
//! crash = true         # ServiceCrashed: fleet state crashed; resolves when it boots again
//! heartbeat = true     # HeartbeatStopped: fleet state silent; resolves when it heartbeats
//! boot_loop = { boots = 3, within = "10m" }   # BootLoop (or true / false)
//!
//! [[rule]]
//! name = "disk-errors"                 # the alertname label
//! match = { severity = "..err", app = ["api"], grep = ["disk full"] }
//! threshold = { count = 10, window = "5m" }
//! group_by = ["host", "app"]           # default; [] for one group
//! labels = { severity = "page", team = "infra" }
//! summary = "{count} disk errors on {host}/{app} in {window}"
//! throttle = "1h"
//! resolve_after = "5m"
//!
//! [[notify]]
//! alertmanager = "http://127.0.0.1:9093"
//! [[notify]]
//! webhook = "http://127.0.0.1:8080/hook"
//! format = "slack"                     # or "alertmanager" (the default)
//! [[notify]]
//! command = ["/usr/local/bin/page", "--urgent"]
//! ```
//!
//! Unknown keys are errors; errors name the rule and its line.
//!
//! - `match`: the query filter of `flotilla logs` / `/api/query` (see [`crate::query`]):
//!   `host`, `app`, `msgid`, `procid` (a string or a list: any of), `severity` (`err`,
//!   `..err`, `warning..`, `crit..warning`), `sd` (`ID.PARAM=VALUE`, all of), `grep`
//!   (words, all of), `substr` (all of). Absent: every record matches.
//! - `group_by`: `host`, `app`, `msgid`, `procid`, `severity`, `sd:ID.PARAM`; each becomes
//!   a label (`sd:ID.PARAM` as `sd_` + ID and PARAM with every character other than
//!   a letter, digit or `_` replaced by `_`). Default `["host", "app"]`.
//! - Kinds: **match** (no `threshold`, no `absence`): fires at the first match of a
//!   group, resolves `resolve_after` (default 5m) after its last match. **threshold**:
//!   fires when a group has at least `count` matches within `window` (60 buckets of
//!   `window / 60`), resolves when it has fewer for `resolve_after` (default 0).
//!   **absence**: fires when a group that matched once sends nothing matching for `for`;
//!   resolves at its next match (`resolve_after` is not allowed).
//! - `throttle`: at most one *firing* notification per group per this long; an alert
//!   that re-fires within it is notified when the throttle ends if it still holds then.
//!   Resolutions are always notified (for alerts that were notified).
//! - `summary` placeholders (rendered once, when the alert fires): `{name}`, `{count}`
//!   (matches: within the window for a threshold; for a match rule the one that fired
//!   it, so 1), `{window}`, `{for}`, `{group}`
//!   (`host=a, app=b`), `{msg}` (the triggering record's MSG, cut to 200 bytes), `{host}`,
//!   `{app}`, `{msgid}`, `{procid}`, `{severity}`, `{sd:ID.PARAM}` (from the triggering
//!   record, or the group for absence rules; `-` when unknown); `{{` and `}}` are
//!   braces.
//!
//! Built-ins follow the fleet's states (see [`crate::fleet`]): a state's alert fires
//! when a service enters it and resolves when it leaves it. Because the states are
//! exclusive (boot-looping before crashed before silent), a crashed service does not
//! also fire HeartbeatStopped, and a service in a boot loop fires BootLoop once rather
//! than ServiceCrashed at every crash. The boot-loop parameters configure the fleet:
//! build its config with [`RuleSet::fleet_config`].
//!
//! Labels: `alertname`, the group's labels (`host` and `app` for built-ins), the rule's
//! labels (built-ins: `severity` = `critical` or `warning`). The node's name is carried
//! in [`Alert::node`], not in the labels, so that nodes of one cluster give the same
//! alert the same fingerprint (Alertmanager merges them).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use flotilla_syslog::{ParsedMessage, parse_lenient};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::Error;
use crate::fleet::{
    Buckets, COUNTER_BUCKETS, FleetConfig, FleetEvent, ServiceKey, ServiceState, clip,
};
use crate::query::{Matcher, Query, QuerySpec, defaults_for, parse_duration};
use crate::record::Record;

/// Notifications kept for [`AlertEngine::recent`].
pub const RECENT: usize = 200;
/// Most groups one rule tracks; matches of further groups are counted in
/// [`AlertEngine::groups_dropped`].
pub const MAX_GROUPS_PER_RULE: usize = 10_000;
/// Longest group value kept (cut at a character boundary).
const MAX_GROUP_VALUE: usize = 255;
/// Longest `{msg}`.
const MAX_MSG: usize = 200;
/// Default `resolve_after` of match rules.
const DEFAULT_RESOLVE_AFTER: i64 = 300 * 1_000_000_000;
/// Version of [`AlertSnapshot`]'s layout.
const SNAPSHOT_FORMAT: u32 = 1;

/// The built-in alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Builtin {
    /// `ServiceCrashed`: the service is in state crashed.
    ServiceCrashed,
    /// `HeartbeatStopped`: the service is in state silent.
    HeartbeatStopped,
    /// `BootLoop`: the service is in state boot-looping.
    BootLoop,
}

impl Builtin {
    /// The alert's name (its `alertname`).
    pub fn name(self) -> &'static str {
        match self {
            Builtin::ServiceCrashed => "ServiceCrashed",
            Builtin::HeartbeatStopped => "HeartbeatStopped",
            Builtin::BootLoop => "BootLoop",
        }
    }

    /// The built-in that follows a fleet state.
    fn for_state(state: ServiceState) -> Option<Builtin> {
        match state {
            ServiceState::Crashed => Some(Builtin::ServiceCrashed),
            ServiceState::Silent => Some(Builtin::HeartbeatStopped),
            ServiceState::BootLooping => Some(Builtin::BootLoop),
            ServiceState::Up => None,
        }
    }

    fn severity(self) -> &'static str {
        match self {
            Builtin::HeartbeatStopped => "warning",
            Builtin::ServiceCrashed | Builtin::BootLoop => "critical",
        }
    }
}

/// Which built-ins are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builtins {
    /// ServiceCrashed.
    pub crash: bool,
    /// HeartbeatStopped.
    pub heartbeat: bool,
    /// BootLoop and its parameters (`None`: off).
    pub boot_loop: Option<BootLoop>,
}

impl Default for Builtins {
    fn default() -> Self {
        Builtins {
            crash: true,
            heartbeat: true,
            boot_loop: Some(BootLoop::default()),
        }
    }
}

impl Builtins {
    fn enabled(&self, builtin: Builtin) -> bool {
        match builtin {
            Builtin::ServiceCrashed => self.crash,
            Builtin::HeartbeatStopped => self.heartbeat,
            Builtin::BootLoop => self.boot_loop.is_some(),
        }
    }
}

/// What makes a boot loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootLoop {
    /// Boots (at least 2)...
    pub boots: u32,
    /// ... within this long (ns).
    pub within: i64,
}

impl Default for BootLoop {
    fn default() -> Self {
        let fleet = FleetConfig::default();
        BootLoop {
            boots: fleet.boot_loop_boots,
            within: fleet.boot_loop_window,
        }
    }
}

/// What a rule watches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Fires at a group's first match.
    Match,
    /// Fires when a group has `count` matches within `window` (ns).
    Threshold {
        /// Matches.
        count: u64,
        /// Window (ns).
        window: i64,
    },
    /// Fires when a group that matched sends nothing matching for `for_ns`.
    Absence {
        /// Silence that fires (ns).
        for_ns: i64,
    },
}

/// A field a rule groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupKey {
    /// HOSTNAME.
    Host,
    /// APP-NAME.
    App,
    /// MSGID.
    MsgId,
    /// PROCID.
    ProcId,
    /// Severity name.
    Severity,
    /// A structured-data parameter.
    Sd {
        /// SD-ID.
        id: String,
        /// PARAM-NAME.
        param: String,
    },
}

impl GroupKey {
    fn parse(spec: &str) -> Option<GroupKey> {
        Some(match spec {
            "host" => GroupKey::Host,
            "app" => GroupKey::App,
            "msgid" => GroupKey::MsgId,
            "procid" => GroupKey::ProcId,
            "severity" => GroupKey::Severity,
            _ => {
                let (id, param) = spec.strip_prefix("sd:")?.rsplit_once('.')?;
                if id.is_empty() || param.is_empty() {
                    return None;
                }
                GroupKey::Sd {
                    id: id.to_string(),
                    param: param.to_string(),
                }
            }
        })
    }

    /// The label this key becomes.
    pub fn label(&self) -> String {
        match self {
            GroupKey::Host => "host".into(),
            GroupKey::App => "app".into(),
            GroupKey::MsgId => "msgid".into(),
            GroupKey::ProcId => "procid".into(),
            GroupKey::Severity => "severity".into(),
            GroupKey::Sd { id, param } => format!("sd_{id}_{param}")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
        }
    }

    /// The key's value in a parsed record (`-` when absent).
    fn value(&self, parsed: Option<&ParsedMessage<'_>>) -> String {
        let Some(p) = parsed else {
            return match self {
                GroupKey::Severity => flotilla_syslog::LenientDefaults::default()
                    .severity
                    .name()
                    .to_string(),
                _ => "-".to_string(),
            };
        };
        let text = match self {
            GroupKey::Host => p.hostname.unwrap_or("-").into(),
            GroupKey::App => p.app_name.unwrap_or("-").into(),
            GroupKey::MsgId => p.msg_id.unwrap_or("-").into(),
            GroupKey::ProcId => p.proc_id.unwrap_or("-").into(),
            GroupKey::Severity => p.severity.name().into(),
            GroupKey::Sd { id, param } => sd_value(p, id, param),
        };
        clip(&text, MAX_GROUP_VALUE).to_string()
    }
}

fn sd_value(p: &ParsedMessage<'_>, id: &str, param: &str) -> String {
    p.structured_data
        .iter()
        .filter(|e| e.id == id)
        .find_map(|e| e.param(param))
        .map_or_else(|| "-".to_string(), |v| v.value().into_owned())
}

/// One piece of a summary template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Name,
    Count,
    Window,
    For,
    Group,
    Msg,
    Field(GroupKey),
}

/// Where a webhook's body is shaped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"text": "..."}` (Slack and compatible).
    Slack,
    /// Alertmanager's webhook body.
    Alertmanager,
}

/// A `[[notify]]` target (delivered by the notifier, validated here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    /// A Prometheus Alertmanager (base URL).
    Alertmanager {
        /// `http://` or `https://` URL.
        url: String,
    },
    /// A webhook.
    Webhook {
        /// `http://` or `https://` URL.
        url: String,
        /// Its body's shape.
        format: WebhookFormat,
    },
    /// A program and its arguments.
    Command {
        /// At least the program.
        argv: Vec<String>,
    },
}

/// One user rule, checked and prepared.
#[derive(Debug)]
pub struct Rule {
    /// Its name: the `alertname` label.
    pub name: String,
    /// Line of its `[[rule]]` in the file (1-based; 0 when unknown).
    pub line: usize,
    /// Its filter.
    pub query: Query,
    matcher: Matcher,
    /// Its kind.
    pub kind: RuleKind,
    /// Group keys, in order.
    pub group_by: Vec<GroupKey>,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// The summary template as written (or the default one).
    pub summary: String,
    pieces: Vec<Piece>,
    /// The window or `for` as written (for `{window}` and `{for}`).
    duration_text: String,
    /// Throttle (ns).
    pub throttle: Option<i64>,
    /// Resolve delay (ns).
    pub resolve_after: i64,
}

impl Rule {
    /// What must stay the same for a restored group to keep its meaning.
    fn signature(&self) -> String {
        format!("{:?}|{:?}", self.kind, self.group_by)
    }

    fn bucket_width(&self) -> i64 {
        match self.kind {
            RuleKind::Threshold { window, .. } => (window / COUNTER_BUCKETS).max(1),
            _ => 1,
        }
    }
}

/// Alert rules, built-ins and notification targets.
#[derive(Debug)]
pub struct RuleSet {
    /// Built-ins.
    pub builtin: Builtins,
    /// User rules, in file order.
    pub rules: Vec<Rule>,
    /// Targets.
    pub notify: Vec<NotifyTarget>,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet::builtin_only()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    builtin: Option<RawBuiltin>,
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
    #[serde(default)]
    notify: Vec<toml::Spanned<RawNotify>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table with crash, heartbeat, boot_loop"
)]
struct RawBuiltin {
    crash: Option<bool>,
    heartbeat: Option<bool>,
    boot_loop: Option<toml::Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[rule]] table")]
struct RawRule {
    name: String,
    #[serde(rename = "match")]
    filter: Option<RawMatch>,
    threshold: Option<RawThreshold>,
    absence: Option<RawAbsence>,
    group_by: Option<Vec<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    summary: Option<String>,
    throttle: Option<String>,
    resolve_after: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { severity = \"..err\", grep = [\"disk full\"] }"
)]
struct RawMatch {
    severity: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    host: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    app: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    msgid: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    procid: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    sd: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    grep: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    substr: Vec<String>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table { count = N, window = \"5m\" }"
)]
struct RawThreshold {
    count: u64,
    window: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table { for = \"10m\" }")]
struct RawAbsence {
    #[serde(rename = "for")]
    for_: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[notify]] table")]
struct RawNotify {
    alertmanager: Option<String>,
    webhook: Option<String>,
    format: Option<String>,
    command: Option<Vec<String>>,
}

/// A string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element::<String>()? {
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Visitor)
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .get(..offset.min(text.len()))
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
        + 1
}

fn duration(text: &str, what: &str) -> Result<i64, String> {
    match parse_duration(text.trim()) {
        Some(ns) if ns > 0 => Ok(ns),
        _ => Err(format!(
            "{what} = {text:?}: expected a positive duration such as 500ms, 30s, 5m, 1h, 7d"
        )),
    }
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses a summary template.
fn parse_template(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        literal.push_str(rest.get(..i).unwrap_or_default());
        let tail = rest.get(i..).unwrap_or_default();
        if let Some(after) = tail.strip_prefix("{{") {
            literal.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            literal.push('}');
            rest = after;
        } else if let Some(after) = tail.strip_prefix('{') {
            let end = after
                .find('}')
                .ok_or_else(|| format!("summary: unclosed {{ in {text:?}"))?;
            let name = after.get(..end).unwrap_or_default();
            let piece = match name {
                "name" => Piece::Name,
                "count" => Piece::Count,
                "window" => Piece::Window,
                "for" => Piece::For,
                "group" => Piece::Group,
                "msg" => Piece::Msg,
                _ => Piece::Field(GroupKey::parse(name).ok_or_else(|| {
                    format!(
                        "summary: unknown placeholder {{{name}}} (name, count, window, for, group, \
                         msg, host, app, msgid, procid, severity, sd:ID.PARAM)"
                    )
                })?),
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
            rest = after.get(end + 1..).unwrap_or_default();
        } else {
            return Err(format!(
                "summary: lone }} in {text:?} (write }}}} for a brace)"
            ));
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

impl RuleSet {
    /// The built-ins with their defaults, no user rule, no target.
    pub fn builtin_only() -> RuleSet {
        RuleSet {
            builtin: Builtins::default(),
            rules: Vec::new(),
            notify: Vec::new(),
        }
    }

    /// Parses and checks a rules file (see the module documentation). Errors are
    /// [`Error::Config`] naming the rule, the key and the line.
    pub fn parse(text: &str) -> Result<RuleSet, Error> {
        let raw: RawFile =
            toml::from_str(text).map_err(|e| Error::Config(format!("alert rules: {e}")))?;
        let mut set = RuleSet::builtin_only();
        if let Some(b) = raw.builtin {
            set.builtin.crash = b.crash.unwrap_or(true);
            set.builtin.heartbeat = b.heartbeat.unwrap_or(true);
            if let Some(spanned) = b.boot_loop {
                let line = line_of(text, spanned.span().start);
                let err = |what: String| {
                    Error::Config(format!(
                        "alert rules: [builtin] boot_loop (line {line}): {what}"
                    ))
                };
                set.builtin.boot_loop = match spanned.into_inner() {
                    toml::Value::Boolean(true) => Some(BootLoop::default()),
                    toml::Value::Boolean(false) => None,
                    toml::Value::Table(table) => {
                        let mut boot_loop = BootLoop::default();
                        for (key, value) in table {
                            match (key.as_str(), value) {
                                ("boots", toml::Value::Integer(n)) if (2..=1000).contains(&n) => {
                                    boot_loop.boots = n as u32;
                                }
                                ("boots", v) => {
                                    return Err(err(format!(
                                        "boots = {v}: expected an integer from 2 to 1000"
                                    )));
                                }
                                ("within", toml::Value::String(s)) => {
                                    boot_loop.within = duration(&s, "within").map_err(err)?;
                                }
                                ("within", v) => {
                                    return Err(err(format!(
                                        "within = {v}: expected a duration string such as \"10m\""
                                    )));
                                }
                                (other, _) => {
                                    return Err(err(format!(
                                        "unknown key {other:?} (expected boots, within)"
                                    )));
                                }
                            }
                        }
                        Some(boot_loop)
                    }
                    other => {
                        return Err(err(format!(
                            "expected true, false or {{ boots = N, within = \"10m\" }}, not {other}"
                        )));
                    }
                };
            }
        }
        for spanned in raw.rule {
            let line = line_of(text, spanned.span().start);
            let raw_rule = spanned.into_inner();
            let name = raw_rule.name.clone();
            let rule = Self::build_rule(raw_rule, line).map_err(|what| {
                Error::Config(format!("alert rules: rule {name:?} (line {line}): {what}"))
            })?;
            if set.rules.iter().any(|r| r.name == rule.name) {
                return Err(Error::Config(format!(
                    "alert rules: rule {name:?} (line {line}): another rule has this name"
                )));
            }
            set.rules.push(rule);
        }
        for spanned in raw.notify {
            let line = line_of(text, spanned.span().start);
            let target = Self::build_notify(spanned.into_inner()).map_err(|what| {
                Error::Config(format!("alert rules: notify (line {line}): {what}"))
            })?;
            set.notify.push(target);
        }
        Ok(set)
    }

    fn build_rule(raw: RawRule, line: usize) -> Result<Rule, String> {
        if raw.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        if [
            Builtin::ServiceCrashed,
            Builtin::HeartbeatStopped,
            Builtin::BootLoop,
        ]
        .iter()
        .any(|b| b.name() == raw.name)
        {
            return Err("name is a built-in alert's".into());
        }
        let m = raw.filter.unwrap_or_default();
        let spec = QuerySpec {
            host: m.host,
            app: m.app,
            msgid: m.msgid,
            procid: m.procid,
            severity: m.severity,
            sd: m.sd,
            grep: m.grep,
            substr: m.substr,
            ..QuerySpec::default()
        };
        let query = spec.to_query(0).map_err(|e| format!("match: {e}"))?;
        let matcher = Matcher::new(query.clone()).map_err(|e| format!("match: {e}"))?;
        let (kind, duration_text) = match (raw.threshold, raw.absence) {
            (Some(_), Some(_)) => {
                return Err("threshold and absence exclude each other".into());
            }
            (Some(t), None) => {
                if t.count == 0 {
                    return Err("threshold.count must be at least 1".into());
                }
                (
                    RuleKind::Threshold {
                        count: t.count,
                        window: duration(&t.window, "threshold.window")?,
                    },
                    t.window,
                )
            }
            (None, Some(a)) => (
                RuleKind::Absence {
                    for_ns: duration(&a.for_, "absence.for")?,
                },
                a.for_,
            ),
            (None, None) => (RuleKind::Match, String::new()),
        };
        let mut group_by = Vec::new();
        for spec in raw
            .group_by
            .unwrap_or_else(|| vec!["host".into(), "app".into()])
        {
            let key = GroupKey::parse(&spec).ok_or_else(|| {
                format!(
                    "group_by: unknown key {spec:?} (host, app, msgid, procid, severity or sd:ID.PARAM)"
                )
            })?;
            if group_by.iter().any(|k: &GroupKey| k.label() == key.label()) {
                return Err(format!("group_by: {spec:?} is given twice"));
            }
            group_by.push(key);
        }
        for label in raw.labels.keys() {
            if !valid_label_name(label) {
                return Err(format!(
                    "labels: {label:?} is not a label name ([A-Za-z_][A-Za-z0-9_]*)"
                ));
            }
            if label == "alertname" || group_by.iter().any(|k| k.label() == *label) {
                return Err(format!(
                    "labels: {label:?} is already set (alertname or a group_by key)"
                ));
            }
        }
        let summary = raw.summary.unwrap_or_else(|| {
            match kind {
                RuleKind::Match => "{name}: {count} matching records from {group}",
                RuleKind::Threshold { .. } => {
                    "{name}: {count} matching records in {window} from {group}"
                }
                RuleKind::Absence { .. } => "{name}: nothing matching for {for} from {group}",
            }
            .to_string()
        });
        let pieces = parse_template(&summary)?;
        let throttle = raw
            .throttle
            .as_deref()
            .map(|t| duration(t, "throttle"))
            .transpose()?;
        let resolve_after = match (kind, raw.resolve_after.as_deref()) {
            (RuleKind::Absence { .. }, Some(_)) => {
                return Err("resolve_after: absence rules resolve at the next match".into());
            }
            (_, Some(text)) => duration(text, "resolve_after")?,
            (RuleKind::Match, None) => DEFAULT_RESOLVE_AFTER,
            (_, None) => 0,
        };
        Ok(Rule {
            name: raw.name,
            line,
            query,
            matcher,
            kind,
            group_by,
            labels: raw.labels,
            summary,
            pieces,
            duration_text,
            throttle,
            resolve_after,
        })
    }

    fn build_notify(raw: RawNotify) -> Result<NotifyTarget, String> {
        let url = |u: String| -> Result<String, String> {
            if u.starts_with("http://") || u.starts_with("https://") {
                Ok(u)
            } else {
                Err(format!("{u:?}: expected an http:// or https:// URL"))
            }
        };
        if raw.format.is_some() && raw.webhook.is_none() {
            return Err("format is for webhook targets".into());
        }
        match (raw.alertmanager, raw.webhook, raw.command) {
            (Some(u), None, None) => Ok(NotifyTarget::Alertmanager { url: url(u)? }),
            (None, Some(u), None) => Ok(NotifyTarget::Webhook {
                url: url(u)?,
                format: match raw.format.as_deref() {
                    None | Some("alertmanager") => WebhookFormat::Alertmanager,
                    Some("slack") => WebhookFormat::Slack,
                    Some(other) => {
                        return Err(format!(
                            "format = {other:?}: expected \"slack\" or \"alertmanager\""
                        ));
                    }
                },
            }),
            (None, None, Some(argv)) => {
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return Err("command must name a program".into());
                }
                Ok(NotifyTarget::Command { argv })
            }
            _ => Err("give exactly one of alertmanager, webhook, command".into()),
        }
    }

    /// `base` with the boot-loop parameters of `[builtin] boot_loop`, so that the
    /// fleet's boot-looping state and the BootLoop alert agree. With the built-in off,
    /// the fleet has no boot-looping state either: a crash-looping service then stays
    /// `crashed` (and ServiceCrashed fires) instead of entering a state nobody alerts on.
    pub fn fleet_config(&self, base: FleetConfig) -> FleetConfig {
        match self.builtin.boot_loop {
            Some(b) => FleetConfig {
                boot_loop_boots: b.boots,
                boot_loop_window: b.within,
                ..base
            },
            None => FleetConfig {
                boot_loop_boots: 0,
                ..base
            },
        }
    }
}

/// Whether an alert is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Firing.
    Firing,
    /// Resolved.
    Resolved,
}

/// An alert, as notified and as the API shows it (times RFC 3339 in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The alert's name (`alertname`).
    pub name: String,
    /// Labels: `alertname`, the group's labels, the rule's labels.
    pub labels: BTreeMap<String, String>,
    /// One line for humans.
    pub summary: String,
    /// When its condition began (ns).
    #[serde(with = "crate::fleet::time")]
    pub starts_at: i64,
    /// When it resolved (ns), for a resolved alert.
    #[serde(with = "crate::fleet::opt_time")]
    pub ends_at: Option<i64>,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Hex xxh3 of the labels: the same alert has the same fingerprint on every node.
    pub fingerprint: String,
    /// The node that raised it.
    pub node: String,
}

/// Hex xxh3-64 of `labels` (`k=v` lines in key order).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut text = String::new();
    for (k, v) in labels {
        text.push_str(k);
        text.push('\u{0}');
        text.push_str(v);
        text.push('\u{1}');
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// What the engine hands to the notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The alert that fired or resolved.
    pub alert: Alert,
}

/// What the alert engine takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertInput<'a> {
    /// An ingested record and its id (user rules).
    Record(u64, &'a Record),
    /// A fleet event (built-ins; only `StateChanged` matters).
    Fleet(FleetEvent),
    /// Time passed (call at [`AlertEngine::poll_timeout`]).
    Tick,
}

/// One group of one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Group {
    /// The condition holds (as far as the engine's deadlines go).
    active: bool,
    /// A firing notification went out for the current activation.
    notified: bool,
    starts_at: i64,
    summary: String,
    last_fired: Option<i64>,
    last_match: Option<i64>,
    /// Matches since activation (match rules).
    count: u64,
    buckets: Buckets,
    /// Threshold: when the count fell below it while active.
    false_since: Option<i64>,
    deadline: Option<i64>,
}

impl Group {
    fn new() -> Group {
        Group {
            active: false,
            notified: false,
            starts_at: 0,
            summary: String::new(),
            last_fired: None,
            last_match: None,
            count: 0,
            buckets: Buckets::default(),
            false_since: None,
            deadline: None,
        }
    }
}

/// The groups of one rule in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RuleState {
    rule: String,
    signature: String,
    groups: Vec<(Vec<String>, Group)>,
    /// Its firing alerts, to resolve them if the rule is gone at restore.
    firing: Vec<Alert>,
}

/// The engine's persistent form (JSON in the data directory); take it after draining
/// [`AlertEngine::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSnapshot {
    /// Layout version (1).
    pub format: u32,
    /// The last record id fed (0: none); replay records with a larger id.
    pub through_id: u64,
    /// The latest `now` the engine saw.
    pub last_now: i64,
    /// See [`AlertEngine::groups_dropped`].
    pub groups_dropped: u64,
    rules: Vec<RuleState>,
    builtins: Vec<(Builtin, ServiceKey, Alert)>,
    recent: Vec<Alert>,
}

/// The alert engine (see the module documentation).
#[derive(Debug)]
pub struct AlertEngine {
    rules: RuleSet,
    node: String,
    /// Per rule: group values → state.
    groups: Vec<BTreeMap<Vec<String>, Group>>,
    /// Firing built-ins.
    builtins: BTreeMap<(Builtin, ServiceKey), Alert>,
    /// (deadline, rule index, group values).
    timers: BTreeSet<(i64, usize, Vec<String>)>,
    outputs: VecDeque<Notification>,
    recent: VecDeque<Alert>,
    through_id: u64,
    last_now: i64,
    groups_dropped: u64,
}

/// What a summary is rendered from.
struct Context<'a, 'b> {
    count: u64,
    key: &'a [String],
    parsed: Option<&'a ParsedMessage<'b>>,
}

impl AlertEngine {
    /// An engine for `rules` on node `node`.
    pub fn new(rules: RuleSet, node: String) -> AlertEngine {
        let groups = rules.rules.iter().map(|_| BTreeMap::new()).collect();
        AlertEngine {
            rules,
            node,
            groups,
            builtins: BTreeMap::new(),
            timers: BTreeSet::new(),
            outputs: VecDeque::new(),
            recent: VecDeque::new(),
            through_id: 0,
            last_now: i64::MIN,
            groups_dropped: 0,
        }
    }

    /// The rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The last record id fed (0: none).
    pub fn through_id(&self) -> u64 {
        self.through_id
    }

    /// Matches not tracked because a rule had [`MAX_GROUPS_PER_RULE`] groups.
    pub fn groups_dropped(&self) -> u64 {
        self.groups_dropped
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: i64, input: AlertInput<'_>) {
        self.last_now = self.last_now.max(now);
        self.run_timers(now);
        match input {
            AlertInput::Record(id, record) => self.record(now, id, record),
            AlertInput::Fleet(event) => self.fleet(event),
            AlertInput::Tick => {}
        }
    }

    /// The next notification, if any.
    pub fn poll_output(&mut self) -> Option<Notification> {
        self.outputs.pop_front()
    }

    /// The next instant at which [`AlertInput::Tick`] would change something (a window
    /// moving, an absence, a throttle or a `resolve_after` ending).
    pub fn poll_timeout(&self) -> Option<i64> {
        self.timers.first().map(|t| t.0)
    }

    /// The alerts firing now (notified, not resolved): user rules in file order, then
    /// built-ins.
    pub fn firing(&self) -> Vec<Alert> {
        let mut out = Vec::new();
        for (ri, groups) in self.groups.iter().enumerate() {
            for (key, group) in groups {
                if group.active && group.notified {
                    out.push(self.alert(ri, key, group, None));
                }
            }
        }
        out.extend(self.builtins.values().cloned());
        out
    }

    /// The last [`RECENT`] notifications' alerts, oldest first.
    pub fn recent(&self) -> Vec<Alert> {
        self.recent.iter().cloned().collect()
    }

    /// The persistent form.
    pub fn snapshot(&self) -> AlertSnapshot {
        AlertSnapshot {
            format: SNAPSHOT_FORMAT,
            through_id: self.through_id,
            last_now: self.last_now,
            groups_dropped: self.groups_dropped,
            rules: self
                .rules
                .rules
                .iter()
                .zip(&self.groups)
                .enumerate()
                .map(|(ri, (rule, groups))| RuleState {
                    rule: rule.name.clone(),
                    signature: rule.signature(),
                    groups: groups.iter().map(|(k, g)| (k.clone(), g.clone())).collect(),
                    firing: groups
                        .iter()
                        .filter(|(_, g)| g.active && g.notified)
                        .map(|(k, g)| self.alert(ri, k, g, None))
                        .collect(),
                })
                .collect(),
            builtins: self
                .builtins
                .iter()
                .map(|((b, k), a)| (*b, k.clone(), a.clone()))
                .collect(),
            recent: self.recent.iter().cloned().collect(),
        }
    }

    /// An engine from its persistent form. Groups of rules that are gone (or whose kind
    /// or grouping changed) are dropped, their firing alerts resolved (queued as
    /// notifications); so are firing built-ins that `rules` turned off.
    pub fn restore(snapshot: AlertSnapshot, rules: RuleSet, node: String) -> AlertEngine {
        let mut engine = AlertEngine::new(rules, node);
        engine.through_id = snapshot.through_id;
        engine.last_now = snapshot.last_now;
        engine.groups_dropped = snapshot.groups_dropped;
        engine.recent = snapshot.recent.into_iter().collect();
        let end = snapshot.last_now;
        for state in snapshot.rules {
            let found = engine
                .rules
                .rules
                .iter()
                .position(|r| r.name == state.rule && r.signature() == state.signature);
            match found {
                Some(ri) => {
                    for (key, group) in state.groups {
                        if let Some(d) = group.deadline {
                            engine.timers.insert((d, ri, key.clone()));
                        }
                        if let Some(groups) = engine.groups.get_mut(ri) {
                            groups.insert(key, group);
                        }
                    }
                }
                None => {
                    for alert in state.firing {
                        engine.emit(Alert {
                            ends_at: Some(end),
                            status: AlertStatus::Resolved,
                            ..alert
                        });
                    }
                }
            }
        }
        for (builtin, key, alert) in snapshot.builtins {
            if engine.rules.builtin.enabled(builtin) {
                engine.builtins.insert((builtin, key), alert);
            } else {
                engine.emit(Alert {
                    ends_at: Some(end),
                    status: AlertStatus::Resolved,
                    ..alert
                });
            }
        }
        engine
    }

    fn emit(&mut self, alert: Alert) {
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(alert.clone());
        self.outputs.push_back(Notification { alert });
    }

    fn labels(&self, ri: usize, key: &[String]) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        if let Some(rule) = self.rules.rules.get(ri) {
            labels.insert("alertname".to_string(), rule.name.clone());
            for (k, v) in rule.group_by.iter().zip(key) {
                labels.insert(k.label(), v.clone());
            }
            for (k, v) in &rule.labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        labels
    }

    fn alert(&self, ri: usize, key: &[String], group: &Group, ends_at: Option<i64>) -> Alert {
        let labels = self.labels(ri, key);
        Alert {
            name: self
                .rules
                .rules
                .get(ri)
                .map_or_else(String::new, |r| r.name.clone()),
            fingerprint: fingerprint(&labels),
            labels,
            summary: group.summary.clone(),
            starts_at: group.starts_at,
            ends_at,
            status: if ends_at.is_some() {
                AlertStatus::Resolved
            } else {
                AlertStatus::Firing
            },
            node: self.node.clone(),
        }
    }

    fn render(rule: &Rule, ctx: &Context<'_, '_>) -> String {
        let mut out = String::new();
        for piece in &rule.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Name => out.push_str(&rule.name),
                Piece::Count => out.push_str(&ctx.count.to_string()),
                Piece::Window | Piece::For => out.push_str(&rule.duration_text),
                Piece::Group => {
                    if rule.group_by.is_empty() {
                        out.push_str("all");
                    }
                    for (i, (k, v)) in rule.group_by.iter().zip(ctx.key).enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        out.push_str(&k.label());
                        out.push('=');
                        out.push_str(v);
                    }
                }
                Piece::Msg => match ctx.parsed {
                    Some(p) => {
                        out.push_str(clip(String::from_utf8_lossy(p.msg).trim_end(), MAX_MSG))
                    }
                    None => out.push('-'),
                },
                Piece::Field(field) => {
                    if let Some(i) = rule.group_by.iter().position(|k| k == field) {
                        out.push_str(ctx.key.get(i).map_or("-", String::as_str));
                    } else if ctx.parsed.is_some() {
                        out.push_str(&field.value(ctx.parsed));
                    } else {
                        out.push('-');
                    }
                }
            }
        }
        out
    }

    fn fleet(&mut self, event: FleetEvent) {
        let FleetEvent::StateChanged {
            key,
            from,
            to,
            at,
            reason,
        } = event
        else {
            return;
        };
        if let Some(builtin) = Builtin::for_state(from)
            && let Some(alert) = self.builtins.remove(&(builtin, key.clone()))
        {
            self.emit(Alert {
                ends_at: Some(at),
                status: AlertStatus::Resolved,
                ..alert
            });
        }
        if let Some(builtin) = Builtin::for_state(to)
            && self.rules.builtin.enabled(builtin)
            && !self.builtins.contains_key(&(builtin, key.clone()))
        {
            let mut labels = BTreeMap::new();
            labels.insert("alertname".to_string(), builtin.name().to_string());
            labels.insert("host".to_string(), key.host.clone());
            labels.insert("app".to_string(), key.app.clone());
            labels.insert("severity".to_string(), builtin.severity().to_string());
            let alert = Alert {
                name: builtin.name().to_string(),
                fingerprint: fingerprint(&labels),
                labels,
                summary: format!("{key}: {reason}"),
                starts_at: at,
                ends_at: None,
                status: AlertStatus::Firing,
                node: self.node.clone(),
            };
            self.builtins.insert((builtin, key), alert.clone());
            self.emit(alert);
        }
    }

    fn record(&mut self, now: i64, id: u64, record: &Record) {
        self.through_id = self.through_id.max(id);
        let t = record.received_at;
        let mut parsed_once: Option<Option<ParsedMessage<'_>>> = None;
        for ri in 0..self.rules.rules.len() {
            let Some(rule) = self.rules.rules.get(ri) else {
                break;
            };
            if !rule.matcher.matches(t, &record.raw) {
                continue;
            }
            let parsed = parsed_once
                .get_or_insert_with(|| parse_lenient(&record.raw, &defaults_for(t)).ok())
                .as_ref();
            let key: Vec<String> = rule.group_by.iter().map(|k| k.value(parsed)).collect();
            let width = rule.bucket_width();
            let Some(groups) = self.groups.get_mut(ri) else {
                break;
            };
            if !groups.contains_key(&key) && groups.len() >= MAX_GROUPS_PER_RULE {
                self.groups_dropped += 1;
                continue;
            }
            let group = groups.entry(key.clone()).or_insert_with(Group::new);
            match rule.kind {
                RuleKind::Match => {
                    group.last_match = group.last_match.max(Some(t));
                    if group.active {
                        group.count += 1;
                    } else if t.saturating_add(rule.resolve_after) > now {
                        group.active = true;
                        group.notified = false;
                        group.starts_at = t;
                        group.count = 1;
                        group.summary = Self::render(
                            rule,
                            &Context {
                                count: 1,
                                key: &key,
                                parsed,
                            },
                        );
                    }
                }
                RuleKind::Threshold { count, .. } => {
                    group.buckets.add(t, width);
                    group.buckets.prune(now, width);
                    let n = group.buckets.count(now, width);
                    if n >= count {
                        group.false_since = None;
                        if !group.active {
                            group.active = true;
                            group.notified = false;
                            group.starts_at = t;
                            group.summary = Self::render(
                                rule,
                                &Context {
                                    count: n,
                                    key: &key,
                                    parsed,
                                },
                            );
                        }
                    }
                }
                RuleKind::Absence { .. } => {
                    group.last_match = group.last_match.max(Some(t));
                    if group.active {
                        group.active = false;
                        if group.notified {
                            group.notified = false;
                            let alert = self.alert_for(ri, &key, Some(t));
                            if let Some(alert) = alert {
                                self.emit(alert);
                            }
                        }
                    }
                }
            }
            self.settle(ri, key, now);
        }
    }

    /// The alert of a group as it stands (`ends_at` for a resolution).
    fn alert_for(&self, ri: usize, key: &[String], ends_at: Option<i64>) -> Option<Alert> {
        let group = self.groups.get(ri)?.get(key)?;
        Some(self.alert(ri, key, group, ends_at))
    }

    fn run_timers(&mut self, now: i64) {
        while let Some((deadline, _, _)) = self.timers.first() {
            if *deadline > now {
                break;
            }
            let Some((deadline, ri, key)) = self.timers.pop_first() else {
                break;
            };
            if let Some(g) = self.groups.get_mut(ri).and_then(|g| g.get_mut(&key)) {
                g.deadline = None;
                let Some(rule) = self.rules.rules.get(ri) else {
                    continue;
                };
                match rule.kind {
                    RuleKind::Match => {}
                    RuleKind::Threshold { count, .. } => {
                        let width = rule.bucket_width();
                        g.buckets.prune(now, width);
                        if g.active && g.buckets.count(now, width) < count {
                            g.false_since.get_or_insert(deadline);
                        }
                    }
                    RuleKind::Absence { for_ns } => {
                        if let Some(last) = g.last_match
                            && !g.active
                            && now >= last.saturating_add(for_ns)
                        {
                            g.active = true;
                            g.notified = false;
                            g.starts_at = last.saturating_add(for_ns);
                            g.summary = Self::render(
                                rule,
                                &Context {
                                    count: 0,
                                    key: &key,
                                    parsed: None,
                                },
                            );
                        }
                    }
                }
            }
            self.settle(ri, key, now);
        }
    }

    /// After a group changed or a deadline passed: resolves what is over, notifies what
    /// the throttle lets through, forgets idle groups, and sets the group's timer.
    fn settle(&mut self, ri: usize, key: Vec<String>, now: i64) {
        let Some(rule) = self.rules.rules.get(ri) else {
            return;
        };
        let Some(group) = self.groups.get_mut(ri).and_then(|g| g.get_mut(&key)) else {
            return;
        };
        // Resolution.
        let resolve_at = match rule.kind {
            RuleKind::Match => group
                .last_match
                .map(|m| m.saturating_add(rule.resolve_after)),
            RuleKind::Threshold { .. } => group
                .false_since
                .map(|f| f.saturating_add(rule.resolve_after)),
            RuleKind::Absence { .. } => None,
        };
        let mut resolved = None;
        if group.active
            && let Some(at) = resolve_at
            && now >= at
        {
            group.active = false;
            group.false_since = None;
            if group.notified {
                group.notified = false;
                resolved = Some(at);
            }
        }
        // Throttle.
        let mut fire = false;
        if group.active
            && !group.notified
            && rule
                .throttle
                .zip(group.last_fired)
                .is_none_or(|(throttle, last)| now >= last.saturating_add(throttle))
        {
            group.notified = true;
            group.last_fired = Some(now);
            fire = true;
        }
        // Next deadline.
        let throttle_end = rule
            .throttle
            .zip(group.last_fired)
            .map(|(throttle, last)| last.saturating_add(throttle))
            .filter(|&end| end > now);
        let width = rule.bucket_width();
        let deadline = [
            throttle_end,
            match rule.kind {
                RuleKind::Match => group.active.then_some(resolve_at).flatten(),
                RuleKind::Threshold { .. } => group
                    .buckets
                    .oldest()
                    .map(|b| b.saturating_add(COUNTER_BUCKETS).saturating_mul(width)),
                RuleKind::Absence { for_ns } => (!group.active)
                    .then(|| group.last_match.map(|m| m.saturating_add(for_ns)))
                    .flatten(),
            },
            if group.active { resolve_at } else { None },
        ]
        .into_iter()
        .flatten()
        .filter(|&d| d > now)
        .min();
        let idle = !group.active
            && group.buckets.is_empty()
            && throttle_end.is_none()
            && !matches!(rule.kind, RuleKind::Absence { .. });
        let old = group.deadline;
        group.deadline = if idle { None } else { deadline };
        let new = group.deadline;
        if old != new {
            if let Some(d) = old {
                self.timers.remove(&(d, ri, key.clone()));
            }
            if let Some(d) = new {
                self.timers.insert((d, ri, key.clone()));
            }
        }
        if let Some(at) = resolved
            && let Some(alert) = self.alert_for(ri, &key, Some(at))
        {
            self.emit(alert);
        }
        if fire && let Some(alert) = self.alert_for(ri, &key, None) {
            self.emit(alert);
        }
        if idle && let Some(groups) = self.groups.get_mut(ri) {
            groups.remove(&key);
        }
    }
}
