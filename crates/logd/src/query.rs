//! Queries: the filter a user gives (`--since`, `--host`, `--grep`, ...), how it prunes
//! segments and blocks without opening them, how it matches one record, and the JSON and
//! human forms of a matching record.
//!
//! Semantics:
//! - `since`/`until` bound the **received-at** time (logd's clock, always present), half
//!   open: `since <= t < until`.
//! - `host`, `app`, `msgid`, `procid`: exact, case-sensitive; given several times, any of
//!   them matches. `sd` (`ID.PARAM=VALUE`): that parameter has that (unescaped) value; given
//!   several times, all must match.
//! - `severity`: a range of levels, `err` (exactly), `..err` (err or more severe),
//!   `warning..` (warning or less severe), `crit..warning`.
//! - `grep`: the text occurs in the frame at word boundaries (where the text begins or ends
//!   with a letter, digit or `_`, the frame must not continue the word there); case
//!   sensitive; given several times, all must occur. `substr`: plain substring, no
//!   boundaries (never uses the filters, so it reads every block in the time range).

use std::fmt::Write as _;

use flotilla_syslog::{Format, LenientDefaults, Severity, Timestamp, parse_lenient};
use serde::Serialize;

use crate::block::BlockMeta;
use crate::error::Error;
use crate::record::{FLAG_TRUNCATED, Record, Source, Transport};
use crate::tokens::{FieldTag, field_hash, find_words, text_long_token_hashes, text_token_hashes};

/// A query's filter. Every part is optional; an empty query matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Query {
    /// Received at or after (ns since the Unix epoch).
    pub since: Option<i64>,
    /// Received before (ns since the Unix epoch).
    pub until: Option<i64>,
    /// HOSTNAME is one of these.
    #[serde(default)]
    pub host: Vec<String>,
    /// APP-NAME is one of these.
    #[serde(default)]
    pub app: Vec<String>,
    /// MSGID is one of these.
    #[serde(default)]
    pub msgid: Vec<String>,
    /// PROCID is one of these.
    #[serde(default)]
    pub procid: Vec<String>,
    /// Most severe level accepted (code; 0 = emerg).
    pub severity_min_code: Option<u8>,
    /// Least severe level accepted (code; 7 = debug).
    pub severity_max_code: Option<u8>,
    /// Every `SD-ID.PARAM=VALUE` must be present.
    #[serde(default)]
    pub sd: Vec<String>,
    /// Every text must occur at word boundaries.
    #[serde(default)]
    pub grep: Vec<String>,
    /// Every text must occur as a plain substring.
    #[serde(default)]
    pub substr: Vec<String>,
    /// Only records stored raw (not parsed as RFC 5424 or RFC 3164).
    #[serde(default)]
    pub unparsed_only: bool,
}

/// A query as text, the way the command line and the HTTP API take it. Converted with
/// [`QuerySpec::to_query`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct QuerySpec {
    /// Start: `now`, a duration ago (`1h`), RFC 3339, or `@UNIX`.
    pub since: Option<String>,
    /// End (exclusive), same forms.
    pub until: Option<String>,
    /// HOSTNAME (any of).
    #[serde(default)]
    pub host: Vec<String>,
    /// APP-NAME (any of).
    #[serde(default)]
    pub app: Vec<String>,
    /// MSGID (any of).
    #[serde(default)]
    pub msgid: Vec<String>,
    /// PROCID (any of).
    #[serde(default)]
    pub procid: Vec<String>,
    /// Severity range: `err`, `..err`, `warning..`, `crit..warning`.
    pub severity: Option<String>,
    /// `SD-ID.PARAM=VALUE` (all of).
    #[serde(default)]
    pub sd: Vec<String>,
    /// Words at word boundaries (all of).
    #[serde(default)]
    pub grep: Vec<String>,
    /// Plain substrings (all of).
    #[serde(default)]
    pub substr: Vec<String>,
    /// Only records stored raw.
    #[serde(default)]
    pub unparsed: bool,
}

impl QuerySpec {
    /// Resolves times against `now_ns` and checks every part.
    pub fn to_query(&self, now_ns: i64) -> Result<Query, Error> {
        let (severity_min_code, severity_max_code) = match &self.severity {
            Some(s) => {
                let (lo, hi) = parse_severity_range(s)?;
                (Some(lo), Some(hi))
            }
            None => (None, None),
        };
        let query = Query {
            since: self
                .since
                .as_deref()
                .map(|s| parse_time(s, now_ns))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|s| parse_time(s, now_ns))
                .transpose()?,
            host: self.host.clone(),
            app: self.app.clone(),
            msgid: self.msgid.clone(),
            procid: self.procid.clone(),
            severity_min_code,
            severity_max_code,
            sd: self.sd.clone(),
            grep: self.grep.clone(),
            substr: self.substr.clone(),
            unparsed_only: self.unparsed,
        };
        // Checks the rest (SD syntax, empty texts, time order).
        Matcher::new(query.clone())?;
        Ok(query)
    }
}

/// Counters of one query's work: what was pruned and what was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueryStats {
    /// Segments the store had (sealed and open).
    pub segments_total: u64,
    /// Segments whose time range overlapped the query's.
    pub segments_in_range: u64,
    /// Blocks in the segments in range.
    pub blocks_in_range: u64,
    /// Blocks read and decompressed.
    pub blocks_opened: u64,
    /// Records looked at.
    pub records_scanned: u64,
    /// Records that matched (up to the limit).
    pub matched: u64,
    /// Corrupt blocks skipped (with an error logged).
    pub corrupt_blocks: u64,
}

/// A [`Query`] prepared for evaluation: hashes computed, finders built.
#[derive(Debug)]
pub struct Matcher {
    query: Query,
    /// Hashes every one of which a block must (maybe) contain.
    required: Vec<u64>,
    /// Long-token keys every one of which a block's long-token filter must (maybe) hold.
    required_long: Vec<u64>,
    /// Groups of hashes of which a block must (maybe) contain one.
    any_of: Vec<Vec<u64>>,
    grep: Vec<memchr::memmem::Finder<'static>>,
    substr: Vec<memchr::memmem::Finder<'static>>,
    sd: Vec<(String, String, String)>,
    severity_mask: u8,
    needs_parse: bool,
}

impl Matcher {
    /// Checks the query and prepares it.
    pub fn new(query: Query) -> Result<Matcher, Error> {
        let mut required = Vec::new();
        let mut required_long = Vec::new();
        for text in &query.grep {
            if text.is_empty() {
                return Err(Error::Query("--grep needs a non-empty text".into()));
            }
            required.extend(text_token_hashes(text.as_bytes()));
            required_long.extend(text_long_token_hashes(text.as_bytes()));
        }
        let mut sd = Vec::new();
        for spec in &query.sd {
            let (key, value) = spec.split_once('=').ok_or_else(|| {
                Error::Query(format!("--sd {spec:?}: expected SD-ID.PARAM=VALUE"))
            })?;
            let (id, param) = key.rsplit_once('.').ok_or_else(|| {
                Error::Query(format!("--sd {spec:?}: expected SD-ID.PARAM=VALUE"))
            })?;
            if id.is_empty() || param.is_empty() {
                return Err(Error::Query(format!(
                    "--sd {spec:?}: SD-ID and PARAM must not be empty"
                )));
            }
            required.push(field_hash(FieldTag::SdParam, spec.as_bytes()));
            sd.push((id.to_string(), param.to_string(), value.to_string()));
        }
        let mut any_of = Vec::new();
        for (tag, values) in [
            (FieldTag::Host, &query.host),
            (FieldTag::App, &query.app),
            (FieldTag::MsgId, &query.msgid),
            (FieldTag::ProcId, &query.procid),
        ] {
            if !values.is_empty() {
                any_of.push(
                    values
                        .iter()
                        .map(|v| field_hash(tag, v.as_bytes()))
                        .collect(),
                );
            }
        }
        let lo = query.severity_min_code.unwrap_or(0);
        let hi = query.severity_max_code.unwrap_or(7);
        if lo > 7 || hi > 7 || lo > hi {
            return Err(Error::Query(format!(
                "severity range {lo}..{hi} is empty or out of 0..7"
            )));
        }
        let severity_mask = (lo..=hi).fold(0u8, |m, c| m | (1 << c));
        if let (Some(s), Some(u)) = (query.since, query.until)
            && s >= u
        {
            return Err(Error::Query("--since must be before --until".into()));
        }
        let grep = query
            .grep
            .iter()
            .map(|t| memchr::memmem::Finder::new(t.as_bytes()).into_owned())
            .collect();
        let substr = query
            .substr
            .iter()
            .map(|t| memchr::memmem::Finder::new(t.as_bytes()).into_owned())
            .collect();
        let needs_parse =
            !any_of.is_empty() || !sd.is_empty() || severity_mask != 0xff || query.unparsed_only;
        required.sort_unstable();
        required.dedup();
        Ok(Matcher {
            query,
            required,
            required_long,
            any_of,
            grep,
            substr,
            sd,
            severity_mask,
            needs_parse,
        })
    }

    /// The query.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// Whether a time range `[min, max]` (ns, inclusive) can hold a match.
    pub fn time_overlaps(&self, min: i64, max: i64) -> bool {
        self.query.since.is_none_or(|s| max >= s) && self.query.until.is_none_or(|u| min < u)
    }

    /// Whether a block may hold a match (false: skip it without reading).
    pub fn block_may_match(&self, meta: &BlockMeta) -> bool {
        if !self.time_overlaps(meta.min_received, meta.max_received) {
            return false;
        }
        if meta.severities & self.severity_mask == 0 {
            return false;
        }
        if self.query.unparsed_only && meta.unparsed == 0 {
            return false;
        }
        self.required.iter().all(|&h| meta.may_contain(h))
            && self.required_long.iter().all(|&h| meta.may_contain_long(h))
            && self
                .any_of
                .iter()
                .all(|group| group.iter().any(|&h| meta.may_contain(h)))
    }

    /// The needle every match must contain (the longest `--grep` or `--substr` text), if
    /// any: a block can be searched for it once before records are looked at one by one.
    pub fn prefilter(&self) -> Option<&memchr::memmem::Finder<'static>> {
        self.grep
            .iter()
            .chain(self.substr.iter())
            .max_by_key(|f| f.needle().len())
    }

    /// Whether one record (received at `received_at`, ns) matches.
    pub fn matches(&self, received_at: i64, raw: &[u8]) -> bool {
        if !self.time_overlaps(received_at, received_at) {
            return false;
        }
        if !self.grep.iter().all(|f| find_words(raw, f.needle(), f)) {
            return false;
        }
        if !self.substr.iter().all(|f| f.find(raw).is_some()) {
            return false;
        }
        if !self.needs_parse {
            return true;
        }
        let defaults = &defaults_for(received_at);
        let Ok(parsed) = parse_lenient(raw, defaults) else {
            // An empty frame: it has the default severity and no fields.
            return self.any_of.is_empty()
                && self.sd.is_empty()
                && self.severity_mask & (1 << defaults.severity as u8) != 0;
        };
        if self.query.unparsed_only && parsed.format != Format::Unstructured {
            return false;
        }
        if self.severity_mask & (1 << parsed.severity as u8) == 0 {
            return false;
        }
        let q = &self.query;
        let one_of = |want: &[String], have: Option<&str>| {
            want.is_empty() || have.is_some_and(|h| want.iter().any(|w| w == h))
        };
        one_of(&q.host, parsed.hostname)
            && one_of(&q.app, parsed.app_name)
            && one_of(&q.msgid, parsed.msg_id)
            && one_of(&q.procid, parsed.proc_id)
            && self.sd.iter().all(|(id, param, value)| {
                parsed
                    .structured_data
                    .iter()
                    .filter(|e| e.id == id)
                    .any(|e| e.params().any(|p| p.name == param && p.value() == *value))
            })
    }
}

/// Parsing defaults for a record received at `received_at` (ns): an RFC 3164 timestamp
/// (no year) gets the year that puts it closest to the arrival time.
pub fn defaults_for(received_at: i64) -> LenientDefaults {
    LenientDefaults {
        now: Timestamp::from_unix(received_at.div_euclid(1_000_000_000), 0).ok(),
        ..LenientDefaults::default()
    }
}

/// Parses a severity range: `err`, `..err`, `warning..`, `crit..warning`.
/// Returns (most severe code, least severe code).
pub fn parse_severity_range(spec: &str) -> Result<(u8, u8), Error> {
    let level = |s: &str, default: u8| -> Result<u8, Error> {
        if s.is_empty() {
            return Ok(default);
        }
        Severity::from_name(s)
            .map(Severity::code)
            .or_else(|| s.parse::<u8>().ok().filter(|&c| c <= 7))
            .ok_or_else(|| {
                Error::Query(format!(
                    "unknown severity {s:?} (emerg, alert, crit, err, warning, notice, info, debug or 0-7)"
                ))
            })
    };
    match spec.split_once("..") {
        Some((a, b)) => {
            let lo = level(a, 0)?;
            let hi = level(b, 7)?;
            if lo > hi {
                return Err(Error::Query(format!(
                    "severity range {spec:?} is empty: write the more severe level first"
                )));
            }
            Ok((lo, hi))
        }
        None => {
            let c = level(spec, 0)?;
            Ok((c, c))
        }
    }
}

/// Parses a point in time: `now`, a duration ago (`90s`, `15m`, `1h`, `7d`, `2w`), an
/// RFC 3339 timestamp, or Unix seconds (`@1700000000`). Returns ns since the epoch.
pub fn parse_time(spec: &str, now_ns: i64) -> Result<i64, Error> {
    let spec = spec.trim();
    if spec == "now" {
        return Ok(now_ns);
    }
    if let Some(secs) = spec.strip_prefix('@') {
        let s: f64 = secs
            .parse()
            .map_err(|_| Error::Query(format!("bad Unix time {spec:?}")))?;
        return Ok((s * 1e9) as i64);
    }
    if let Some(d) = parse_duration(spec) {
        return Ok(now_ns.saturating_sub(d));
    }
    let ts = flotilla_syslog::parse_lenient(
        format!("<13>1 {spec} - - - - -").as_bytes(),
        &LenientDefaults::default(),
    )
    .ok()
    .and_then(|p| p.timestamp)
    .ok_or_else(|| {
        Error::Query(format!(
            "bad time {spec:?}: use now, a duration ago (30s, 15m, 1h, 7d), RFC 3339 or @UNIX"
        ))
    })?;
    Ok(ts.unix_seconds() * 1_000_000_000 + i64::from(ts.nanos()))
}

/// Parses `90s`, `15m`, `1h`, `7d`, `2w`, `500ms` into nanoseconds.
pub fn parse_duration(spec: &str) -> Option<i64> {
    let digits = spec.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (n, unit) = spec.split_at(digits);
    let n: f64 = n.parse().ok()?;
    let unit_ns: f64 = match unit {
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        "d" => 86_400e9,
        "w" => 604_800e9,
        _ => return None,
    };
    Some((n * unit_ns) as i64)
}

/// The JSON form of a stored record (one object per line with `--json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RecordJson {
    /// The record's id in its node (consecutive in arrival order).
    pub id: u64,
    /// When logd received it (RFC 3339, UTC, nanoseconds).
    pub received_at: String,
    /// Received-at time in ns since the Unix epoch.
    pub received_at_ns: i64,
    /// Peer address.
    pub source: String,
    /// `udp`, `tcp`, `tls`, `relp` or `local`.
    pub transport: String,
    /// `rfc5424`, `rfc3164` or `unparsed`.
    pub format: String,
    /// Facility name.
    pub facility: String,
    /// Severity name.
    pub severity: String,
    /// TIMESTAMP as sent (RFC 3339), if any.
    pub timestamp: Option<String>,
    /// HOSTNAME.
    pub hostname: Option<String>,
    /// APP-NAME.
    pub app_name: Option<String>,
    /// PROCID.
    pub proc_id: Option<String>,
    /// MSGID.
    pub msg_id: Option<String>,
    /// STRUCTURED-DATA: `{SD-ID: {PARAM: VALUE}}` (values unescaped).
    pub structured_data: serde_json::Map<String, serde_json::Value>,
    /// MSG (invalid UTF-8 replaced; see `raw_base64`).
    pub msg: String,
    /// The frame was cut to the size limit.
    pub truncated: bool,
    /// The whole frame, base64, when it is not valid UTF-8 (so no byte is lost).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_base64: Option<String>,
    /// The frame as received, when it is valid UTF-8 (archive objects only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw: Option<String>,
    /// The node that stored it (set when a query covers several nodes or an archive).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<String>,
}

/// RFC 3339 with nanoseconds, UTC.
pub fn format_ns(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    match Timestamp::from_unix(secs, nanos) {
        Ok(ts) => {
            let p = ts.local_parts();
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                p.year, p.month, p.day, p.hour, p.minute, p.second, nanos
            )
        }
        Err(_) => format!("@{secs}.{nanos:09}"),
    }
}

fn timestamp_string(ts: &Timestamp) -> String {
    let mut out = Vec::new();
    ts.write_rfc3339(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

impl RecordJson {
    /// Builds the JSON form of a record.
    pub fn from_record(id: u64, record: &Record, defaults: &LenientDefaults) -> RecordJson {
        let raw = &record.raw[..];
        let parsed = parse_lenient(raw, defaults).ok();
        let format = match parsed.as_ref().map(|p| p.format) {
            Some(Format::Rfc5424) => "rfc5424",
            Some(Format::Rfc3164) => "rfc3164",
            _ => "unparsed",
        };
        let owned = |s: Option<&str>| s.map(str::to_string);
        let mut sd = serde_json::Map::new();
        if let Some(p) = &parsed {
            for element in p.structured_data.iter() {
                let entry = sd
                    .entry(element.id.to_string())
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if let serde_json::Value::Object(params) = entry {
                    for param in element.params() {
                        params.insert(
                            param.name.to_string(),
                            serde_json::Value::String(param.value().into_owned()),
                        );
                    }
                }
            }
        }
        let valid_utf8 = std::str::from_utf8(raw).is_ok();
        RecordJson {
            id,
            received_at: format_ns(record.received_at),
            received_at_ns: record.received_at,
            source: record.source.addr.to_string(),
            transport: record.source.transport.name().to_string(),
            format: format.to_string(),
            facility: parsed
                .as_ref()
                .map_or(defaults.facility, |p| p.facility)
                .name()
                .to_string(),
            severity: parsed
                .as_ref()
                .map_or(defaults.severity, |p| p.severity)
                .name()
                .to_string(),
            timestamp: parsed
                .as_ref()
                .and_then(|p| p.timestamp.as_ref())
                .map(timestamp_string),
            hostname: parsed.as_ref().and_then(|p| owned(p.hostname)),
            app_name: parsed.as_ref().and_then(|p| owned(p.app_name)),
            proc_id: parsed.as_ref().and_then(|p| owned(p.proc_id)),
            msg_id: parsed.as_ref().and_then(|p| owned(p.msg_id)),
            structured_data: sd,
            msg: parsed.as_ref().map_or_else(
                || String::from_utf8_lossy(raw).into_owned(),
                |p| String::from_utf8_lossy(p.msg).into_owned(),
            ),
            truncated: record.flags & FLAG_TRUNCATED != 0,
            raw_base64: (!valid_utf8).then(|| base64_encode(raw)),
            raw: None,
            node: None,
        }
    }

    /// One human-readable line: `time host app[pid] severity msgid [sd] msg`.
    pub fn human_line(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "{}",
            &self.received_at[..23.min(self.received_at.len())]
        );
        out.push('Z');
        if let Some(node) = &self.node {
            let _ = write!(out, " @{node}");
        }
        let _ = write!(
            out,
            " {} {}",
            self.hostname.as_deref().unwrap_or("-"),
            self.app_name.as_deref().unwrap_or("-")
        );
        if let Some(pid) = &self.proc_id {
            let _ = write!(out, "[{pid}]");
        }
        let _ = write!(out, " {}.{}", self.facility, self.severity);
        if let Some(m) = &self.msg_id {
            let _ = write!(out, " {m}");
        }
        if !self.structured_data.is_empty() {
            let _ = write!(
                out,
                " {}",
                serde_json::Value::Object(self.structured_data.clone())
            );
        }
        let _ = write!(out, ": {}", self.msg.trim_end());
        if self.truncated {
            out.push_str(" [truncated]");
        }
        if self.format == "unparsed" {
            out.push_str(" [unparsed]");
        }
        out
    }
}

/// Rebuilds the stored record from its archive form.
pub fn record_from_json(json: &RecordJson) -> Result<Record, Error> {
    let raw: Vec<u8> = match (&json.raw_base64, &json.raw) {
        (Some(b64), _) => base64_decode(b64)
            .ok_or_else(|| Error::Archive(format!("record {}: bad raw_base64", json.id)))?,
        (None, Some(raw)) => raw.as_bytes().to_vec(),
        (None, None) => {
            return Err(Error::Archive(format!(
                "record {}: neither raw nor raw_base64",
                json.id
            )));
        }
    };
    let transport = match json.transport.as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        "relp" => Transport::Relp,
        _ => Transport::Local,
    };
    Ok(Record {
        received_at: json.received_at_ns,
        source: Source {
            transport,
            addr: json.source.parse().unwrap_or(Source::LOCAL.addr),
        },
        flags: if json.truncated { FLAG_TRUNCATED } else { 0 },
        raw: bytes::Bytes::from(raw),
    })
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Source;
    use bytes::Bytes;

    fn m(q: Query, raw: &str) -> bool {
        Matcher::new(q).unwrap().matches(10, raw.as_bytes())
    }

    #[test]
    fn severity_ranges() {
        assert_eq!(parse_severity_range("err").unwrap(), (3, 3));
        assert_eq!(parse_severity_range("..err").unwrap(), (0, 3));
        assert_eq!(parse_severity_range("warning..").unwrap(), (4, 7));
        assert_eq!(parse_severity_range("crit..warn").unwrap(), (2, 4));
        assert!(parse_severity_range("warning..err").is_err());
        assert!(parse_severity_range("loud").is_err());
    }

    #[test]
    fn times() {
        let now = 1_000_000_000_000_000_000;
        assert_eq!(parse_time("1h", now).unwrap(), now - 3_600_000_000_000);
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(
            parse_time("2024-01-01T00:00:00Z", now).unwrap(),
            1_704_067_200_000_000_000
        );
        assert_eq!(parse_time("@1.5", now).unwrap(), 1_500_000_000);
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn record_matching() {
        let line = r#"<11>1 2024-01-01T00:00:00Z web-1 api 42 REQ [req@32473 id="a\"b" user="u1"] failed id-7 for user"#;
        assert!(m(Query::default(), line));
        assert!(m(
            Query {
                host: vec!["web-1".into()],
                ..Default::default()
            },
            line
        ));
        assert!(!m(
            Query {
                host: vec!["web".into()],
                ..Default::default()
            },
            line
        ));
        assert!(m(
            Query {
                app: vec!["x".into(), "api".into()],
                ..Default::default()
            },
            line
        ));
        assert!(m(
            Query {
                msgid: vec!["REQ".into()],
                ..Default::default()
            },
            line
        ));
        assert!(m(
            Query {
                procid: vec!["42".into()],
                ..Default::default()
            },
            line
        ));
        assert!(m(
            Query {
                sd: vec!["req@32473.id=a\"b".into()],
                ..Default::default()
            },
            line
        ));
        assert!(!m(
            Query {
                sd: vec!["req@32473.id=ab".into()],
                ..Default::default()
            },
            line
        ));
        assert!(m(
            Query {
                grep: vec!["id-7".into()],
                ..Default::default()
            },
            line
        ));
        assert!(!m(
            Query {
                grep: vec!["id-".into(), "fail".into()],
                ..Default::default()
            },
            line
        ));
        assert!(m(
            Query {
                substr: vec!["fail".into()],
                ..Default::default()
            },
            line
        ));
        let (lo, hi) = parse_severity_range("..err").unwrap();
        let sev = |lo, hi| Query {
            severity_min_code: Some(lo),
            severity_max_code: Some(hi),
            ..Default::default()
        };
        assert!(m(sev(lo, hi), line));
        assert!(!m(sev(4, 7), line));
        assert!(m(
            Query {
                since: Some(10),
                until: Some(11),
                ..Default::default()
            },
            line
        ));
        assert!(!m(
            Query {
                since: Some(11),
                ..Default::default()
            },
            line
        ));
        assert!(m(
            Query {
                unparsed_only: true,
                ..Default::default()
            },
            "garbage \u{1} line"
        ));
        assert!(!m(
            Query {
                unparsed_only: true,
                ..Default::default()
            },
            line
        ));
    }

    #[test]
    fn bad_queries_are_errors() {
        assert!(
            Matcher::new(Query {
                sd: vec!["novalue".into()],
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            Matcher::new(Query {
                grep: vec![String::new()],
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            Matcher::new(Query {
                since: Some(5),
                until: Some(5),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn json_form_keeps_every_field_and_bytes() {
        let record = Record {
            received_at: 1_704_067_200_123_456_789,
            source: Source { transport: crate::Transport::Tcp, addr: "[::1]:5000".parse().unwrap() },
            flags: FLAG_TRUNCATED,
            raw: Bytes::from_static(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\"] An application event \xff"),
        };
        let j = RecordJson::from_record(9, &record, &LenientDefaults::default());
        assert_eq!(j.received_at, "2024-01-01T00:00:00.123456789Z");
        assert_eq!(j.source, "[::1]:5000");
        assert_eq!(j.facility, "local4");
        assert_eq!(j.severity, "notice");
        assert_eq!(j.hostname.as_deref(), Some("mymachine.example.com"));
        assert_eq!(j.msg_id.as_deref(), Some("ID47"));
        assert_eq!(j.proc_id, None);
        assert_eq!(
            j.structured_data["exampleSDID@32473"]["eventSource"],
            "Application"
        );
        assert!(j.truncated);
        assert!(j.raw_base64.is_some());
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
        assert_eq!(base64_encode(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        for data in [&b""[..], b"f", b"fo", b"foo", b"\xff\x00\xfe\x01"] {
            assert_eq!(base64_decode(&base64_encode(data)).as_deref(), Some(data));
        }
        assert_eq!(base64_decode("Zm9v!"), None);
    }
}
