//! `flotilla logs`: the log service's client. `logs query` searches stored records, `logs
//! tail` shows the newest ones and, with `-f`, follows new ones as they arrive.
//!
//! Records come from a running logd over its HTTP API (`--logd URL`, default
//! `$FLOTILLA_LOGD`, else `http://127.0.0.1:7480`), or for `query` and `tail` without `-f`
//! straight from a data directory (`--data DIR`, read-only, fine while a logd writes it).
//! Output is one human-readable line per record, oldest first, or with `--json` one JSON
//! object per line with every field (see `flotilla_logd::query::RecordJson`).
//!
//! Filters (the same for both; see `flotilla_logd::query` for their exact meaning):
//! `--since`/`--until` (now, 30s, 15m, 1h, 7d, RFC 3339, @UNIX), `--host`, `--app`,
//! `--msgid`, `--procid` (repeatable: any of), `--severity` (`err`, `..err`, `warning..`,
//! `crit..warning`), `--sd ID.PARAM=VALUE`, `--grep WORDS`, `--substr TEXT` (repeatable: all
//! of), `--unparsed`.
//!
//! `logs tail -f` reads the tail's Server-Sent Events. When the connection to logd drops
//! (a restart, a network blip) or the tail falls behind, it reconnects with backoff and
//! resumes after the last record it printed (`after=ID` plus a backfill), so nothing is
//! printed twice and nothing in between is skipped (up to 100,000 records missed at once).
//!
//! A logd started with `--peers` answers for every node. A node that did not answer (it
//! is named in the `x-flotilla-nodes` header of a query, in the `nodes` event of a tail)
//! is reported on stderr, `warning: node http://… did not answer: …`, and the command
//! still succeeds: a partial answer is still an answer (the other nodes' records are
//! printed), and a node may well be down on purpose. Scripts that need every node can
//! look for the warning, or ask each node with `local=1` through the HTTP API.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use flotilla_logd::Record;
use flotilla_logd::http::{MAX_LIMIT, query_pairs, stats_from_headers};
use flotilla_logd::query::{Matcher, QuerySpec, QueryStats, RecordJson};
use flotilla_logd::sse::{SseEvent, SseParser};
use flotilla_logd::store::{ReadOnlyStore, Store, defaults_for};
use serde_json::Value;

/// Where `flotilla logd` serves its HTTP API by default.
pub const DEFAULT_LOGD: &str = "http://127.0.0.1:7480";

/// Records `logs query` prints without `--limit` (human output).
const DEFAULT_QUERY_LIMIT: usize = 100;

/// Records `logs query --json` prints without `--limit` (the HTTP API's default).
const DEFAULT_JSON_LIMIT: usize = 1000;

/// Longest wait for a TCP connection to logd.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest silence on a tail before the connection counts as dead (logd sends a
/// keep-alive comment every 15 s).
const TAIL_SILENCE: Duration = Duration::from_secs(45);

/// First wait before reconnecting a tail (doubled after each failed attempt).
const BACKOFF_MIN: Duration = Duration::from_millis(200);

/// Longest wait before reconnecting a tail.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Arguments of `flotilla logs`.
#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LogsCommand,
}

/// The subcommands of `flotilla logs`.
#[derive(clap::Subcommand, Debug)]
pub enum LogsCommand {
    /// Search stored records: the newest matches (--limit), oldest first.
    Query(QueryArgs),
    /// The fleet view: one row per service (host + app) with its state (up, silent,
    /// crashed, boot-looping), boots, heartbeats, crashes and errors.
    Fleet(crate::logs_fleet::FleetArgs),
    /// Firing alerts, recent notifications and delivery counters.
    Alerts(crate::logs_fleet::AlertsArgs),
    /// The newest matching records; with -f, then new ones as they arrive.
    Tail(TailArgs),
}

/// Which records: the filters shared by `logs query` and `logs tail`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterArgs {
    /// Received at or after: now, a duration ago (30s, 15m, 1h, 7d), RFC 3339 or @UNIX.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Received before (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// HOSTNAME is this (repeatable: any of them).
    #[arg(long, value_name = "HOST")]
    pub host: Vec<String>,
    /// APP-NAME is this (repeatable: any of them).
    #[arg(long, value_name = "APP")]
    pub app: Vec<String>,
    /// MSGID is this (repeatable: any of them).
    #[arg(long, value_name = "MSGID")]
    pub msgid: Vec<String>,
    /// PROCID is this (repeatable: any of them).
    #[arg(long, value_name = "PROCID")]
    pub procid: Vec<String>,
    /// Severity: a level (err), a level or more severe (..err), a level or less severe
    /// (warning..), or a range (crit..warning).
    #[arg(long, value_name = "RANGE")]
    pub severity: Option<String>,
    /// Structured data SD-ID.PARAM=VALUE (repeatable: all of them).
    #[arg(long, value_name = "ID.PARAM=VALUE")]
    pub sd: Vec<String>,
    /// Text occurring at word boundaries, case-sensitive (repeatable: all of them).
    #[arg(long, value_name = "TEXT")]
    pub grep: Vec<String>,
    /// Plain substring, case-sensitive; reads every block in the time range (repeatable:
    /// all of them).
    #[arg(long, value_name = "TEXT")]
    pub substr: Vec<String>,
    /// Only records stored raw (neither RFC 5424 nor RFC 3164).
    #[arg(long)]
    pub unparsed: bool,
}

impl FilterArgs {
    /// The query these flags describe (checked with `QuerySpec::to_query`).
    pub fn to_spec(&self) -> QuerySpec {
        QuerySpec {
            since: self.since.clone(),
            until: self.until.clone(),
            host: self.host.clone(),
            app: self.app.clone(),
            msgid: self.msgid.clone(),
            procid: self.procid.clone(),
            severity: self.severity.clone(),
            sd: self.sd.clone(),
            grep: self.grep.clone(),
            substr: self.substr.clone(),
            unparsed: self.unparsed,
        }
    }
}

/// Arguments of `flotilla logs query`.
#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// Which records.
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Read this data directory directly (read-only) instead of asking logd.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The logd to ask (its HTTP API). Not used with --data.
    #[arg(long, value_name = "URL", env = "FLOTILLA_LOGD", default_value = DEFAULT_LOGD)]
    pub logd: String,
    /// Print the newest N matches (default 100, with --json 1000); 0 = every match.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// One JSON object per line, every field.
    #[arg(long)]
    pub json: bool,
    /// Print the query's work (segments and blocks in range and opened, records scanned)
    /// to stderr.
    #[arg(long)]
    pub stats: bool,
    /// Search archived data instead: a directory or an S3-compatible bucket that
    /// `flotilla logd --archive URL` wrote (every node's objects under it), e.g.
    /// s3://bucket/prefix?endpoint=http://127.0.0.1:8333.
    #[arg(long, value_name = "URL", conflicts_with = "data")]
    pub archive: Option<String>,
}

/// Arguments of `flotilla logs tail`.
#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// Which records.
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Follow: after the newest N, print new records as they arrive (until Ctrl-C,
    /// --max or --timeout).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The logd to ask (its HTTP API).
    #[arg(long, value_name = "URL", env = "FLOTILLA_LOGD", default_value = DEFAULT_LOGD)]
    pub logd: String,
    /// Read this data directory directly instead of asking logd (not with -f).
    #[arg(long, value_name = "DIR", conflicts_with = "follow")]
    pub data: Option<PathBuf>,
    /// Print the newest N matches first (0: none).
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
    pub lines: usize,
    /// One JSON object per line, every field.
    #[arg(long)]
    pub json: bool,
    /// Stop after printing this many records.
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

/// Runs `flotilla logs`.
pub fn run(args: LogsArgs) -> Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut err = io::stderr();
    let result = run_with(args, &mut out, &mut err);
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe && result.is_ok() => {
            Err(anyhow!("writing to stdout: {e}"))
        }
        _ => result,
    }
}

/// Runs `flotilla logs`, printing records to `out` and notes to `err`.
fn run_with(args: LogsArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    match args.command {
        LogsCommand::Fleet(a) => crate::logs_fleet::fleet(&a, out, err),
        LogsCommand::Alerts(a) => crate::logs_fleet::alerts(&a, out, err),
        LogsCommand::Query(a) => {
            let spec = checked_spec(&a.filters)?;
            let limit = a.limit.unwrap_or(if a.json {
                DEFAULT_JSON_LIMIT
            } else {
                DEFAULT_QUERY_LIMIT
            });
            if let Some(url) = &a.archive {
                let mut printer = Printer::new(out, a.json, None, false);
                return query_archive(url, &spec, limit, a.stats, &mut printer, err);
            }
            let source = match a.data {
                Some(dir) => Source::Dir(dir),
                None => Source::Logd(base_url(&a.logd)?),
            };
            let mut printer = Printer::new(out, a.json, None, false);
            let stats = query(&source, &spec, limit, a.stats, &mut printer, err)?;
            finish_query(&printer, a.json, stats, err)
        }
        LogsCommand::Tail(a) => {
            let spec = checked_spec(&a.filters)?;
            let deadline = match a.timeout {
                Some(secs) if !(secs.is_finite() && secs >= 0.0) => {
                    bail!("--timeout {secs}: expected a number of seconds, 0 or more")
                }
                Some(secs) => Some(Instant::now() + Duration::from_secs_f64(secs)),
                None => None,
            };
            if a.follow {
                if spec.since.is_some() || spec.until.is_some() {
                    bail!(
                        "--since and --until do not apply to tail -f (it follows new records): \
                         use -n N for the newest N first, or `flotilla logs query`"
                    );
                }
                if a.lines > MAX_LIMIT {
                    bail!("-n {}: at most {MAX_LIMIT} with -f", a.lines);
                }
                let base = base_url(&a.logd)?;
                let mut printer = Printer::new(out, a.json, a.max, true);
                return follow(&base, &spec, a.lines, deadline, &mut printer, err);
            }
            let source = match a.data {
                Some(dir) => Source::Dir(dir),
                None => Source::Logd(base_url(&a.logd)?),
            };
            let mut printer = Printer::new(out, a.json, a.max, false);
            if a.lines == 0 || a.max == Some(0) {
                return Ok(());
            }
            query(&source, &spec, a.lines, false, &mut printer, err)?;
            finish_query(&printer, a.json, None, err)
        }
    }
}

/// The spec of the flags, checked here so a mistake is reported before any I/O.
fn checked_spec(filters: &FilterArgs) -> Result<QuerySpec> {
    let spec = filters.to_spec();
    spec.to_query(flotilla_logd::record::now_nanos())?;
    Ok(spec)
}

/// After a query: the "no matches" note and the statistics.
fn finish_query(
    printer: &Printer<'_>,
    json: bool,
    stats: Option<QueryStats>,
    err: &mut dyn Write,
) -> Result<()> {
    if printer.printed == 0 && !json && !printer.closed {
        let _ = writeln!(err, "no matching records");
    }
    if let Some(s) = stats {
        let _ = if json {
            writeln!(err, "{}", serde_json::json!({ "stats": s }))
        } else {
            writeln!(
                err,
                "query: {} of {} segments in range, {} of {} blocks opened, {} records \
                 scanned, {} matched{}",
                s.segments_in_range,
                s.segments_total,
                s.blocks_opened,
                s.blocks_in_range,
                s.records_scanned,
                s.matched,
                if s.corrupt_blocks > 0 {
                    format!(", {} corrupt blocks skipped", s.corrupt_blocks)
                } else {
                    String::new()
                }
            )
        };
    }
    Ok(())
}

/// A logd base URL: `http://HOST:PORT` (a bare `HOST:PORT` gets `http://`), no trailing
/// slash.
pub(crate) fn base_url(url: &str) -> Result<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let rest = rest.trim_end_matches('/');
    if scheme != "http" {
        bail!("--logd {url}: expected http://HOST:PORT (the {scheme}:// scheme is not supported)");
    }
    if rest.is_empty() {
        bail!("--logd {url:?}: no host (expected http://HOST:PORT)");
    }
    Ok(format!("http://{rest}"))
}

// ---------------------------------------------------------------------------------------
// Output.

/// Whether to go on reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

/// Prints records (human or JSON), counts them, stops at `max` or a closed pipe.
struct Printer<'a> {
    out: &'a mut dyn Write,
    json: bool,
    max: Option<u64>,
    flush_each: bool,
    printed: u64,
    /// The reader went away (broken pipe): stop quietly.
    closed: bool,
}

impl<'a> Printer<'a> {
    fn new(out: &'a mut dyn Write, json: bool, max: Option<u64>, flush_each: bool) -> Self {
        Printer {
            out,
            json,
            max,
            flush_each,
            printed: 0,
            closed: false,
        }
    }

    /// Prints one record; `line` is its JSON as received (printed as is with `--json`).
    fn record(&mut self, record: &RecordJson, line: Option<&str>) -> Result<Flow> {
        if self.closed || self.max.is_some_and(|m| self.printed >= m) {
            return Ok(Flow::Stop);
        }
        let written = if self.json {
            match line {
                Some(line) => writeln!(self.out, "{}", line.trim_end()),
                None => serde_json::to_string(record)
                    .map_err(io::Error::other)
                    .and_then(|s| writeln!(self.out, "{s}")),
            }
        } else {
            writeln!(self.out, "{}", escape_controls(&record.human_line()))
        };
        let written = written.and_then(|()| {
            if self.flush_each {
                self.out.flush()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                return Ok(Flow::Stop);
            }
            Err(e) => return Err(anyhow!("writing to stdout: {e}")),
        }
        self.printed += 1;
        Ok(if self.max.is_some_and(|m| self.printed >= m) {
            Flow::Stop
        } else {
            Flow::Go
        })
    }
}

/// Control characters (terminal escapes in a log line) shown as `\xNN`; tabs kept.
fn escape_controls(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return line.into();
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

// ---------------------------------------------------------------------------------------
// Queries.

/// Where records come from.
enum Source {
    /// A data directory, opened read-only.
    Dir(PathBuf),
    /// A logd's HTTP API (base URL).
    Logd(String),
}

/// Prints the newest `limit` matches (0: all), oldest first; returns the query's
/// statistics when `want_stats`.
fn query(
    source: &Source,
    spec: &QuerySpec,
    limit: usize,
    want_stats: bool,
    printer: &mut Printer<'_>,
    err: &mut dyn Write,
) -> Result<Option<QueryStats>> {
    let stats = match source {
        Source::Dir(dir) => Some(query_dir(dir, spec, limit, printer)?),
        Source::Logd(base) => query_logd(base, spec, limit, want_stats, printer, err)?,
    };
    Ok(stats.filter(|_| want_stats))
}

fn query_dir(
    dir: &std::path::Path,
    spec: &QuerySpec,
    limit: usize,
    printer: &mut Printer<'_>,
) -> Result<QueryStats> {
    let store: ReadOnlyStore = Store::open_read_only(dir)
        .with_context(|| format!("cannot read the data directory {}", dir.display()))?;
    let matcher = Matcher::new(spec.to_query(flotilla_logd::record::now_nanos())?)?;
    let json = |id: u64, record: &Record| {
        RecordJson::from_record(id, record, &defaults_for(record.received_at))
    };
    if limit == 0 {
        let mut failed = None;
        let stats = store.scan(&matcher, false, &mut |id, record| match printer
            .record(&json(id, record), None)
        {
            Ok(flow) => flow == Flow::Go,
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        return match failed {
            Some(e) => Err(e),
            None => Ok(stats),
        };
    }
    let (records, stats) = store.query(&matcher, Some(limit))?;
    for (id, record) in &records {
        if printer.record(&json(*id, record), None)? == Flow::Stop {
            break;
        }
    }
    Ok(stats)
}

/// `logs query --archive URL`: every archived object whose hour can hold a match, read
/// and matched here; with a limit, the newest N matches are printed, in time order.
fn query_archive(
    url: &str,
    spec: &QuerySpec,
    limit: usize,
    want_stats: bool,
    printer: &mut Printer<'_>,
    err: &mut dyn Write,
) -> Result<()> {
    let target = flotilla_logd::archive::ArchiveTarget::parse(url)?;
    let matcher = Matcher::new(spec.to_query(flotilla_logd::record::now_nanos())?)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut matches: Vec<RecordJson> = Vec::new();
    let stats = runtime.block_on(flotilla_logd::archive::query_archive(
        &target,
        &matcher,
        &mut |json| {
            matches.push(json);
            true
        },
    ))?;
    matches.sort_by_key(|j| (j.received_at_ns, j.id));
    let skip = if limit == 0 {
        0
    } else {
        matches.len().saturating_sub(limit)
    };
    for json in &matches[skip..] {
        if printer.record(json, None)? == Flow::Stop {
            break;
        }
    }
    if printer.printed == 0 && !printer.closed {
        let _ = writeln!(err, "no matching records in {url}");
    }
    if want_stats {
        let _ = writeln!(
            err,
            "archive: {} of {} objects read, {} records scanned, {} matched",
            stats.objects_read, stats.objects_total, stats.records_scanned, stats.matched
        );
    }
    Ok(())
}

/// An HTTP client for logd.
pub(crate) fn agent(per_read: Option<Duration>, global: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(per_read)
        .timeout_global(global)
        .build()
        .into()
}

/// The error of a non-2xx answer: its `{"error": ...}` message, or its body.
fn answer_error(base: &str, response: &mut ureq::http::Response<ureq::Body>) -> anyhow::Error {
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    anyhow!("logd at {base} answered {status}: {message}")
}

/// GET `base` + `path` with parameters; any 2xx answer is returned.
pub(crate) fn get(
    agent: &ureq::Agent,
    base: &str,
    path: &str,
    pairs: &[(&str, String)],
) -> Result<ureq::http::Response<ureq::Body>> {
    let mut response = agent
        .get(format!("{base}{path}"))
        .query_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
        .call()
        .map_err(|e| anyhow!("cannot reach logd at {base}: {e}"))?;
    if !response.status().is_success() {
        return Err(answer_error(base, &mut response));
    }
    Ok(response)
}

fn query_logd(
    base: &str,
    spec: &QuerySpec,
    limit: usize,
    want_stats: bool,
    printer: &mut Printer<'_>,
    err: &mut dyn Write,
) -> Result<Option<QueryStats>> {
    let agent = agent(None, None);
    let mut pairs = query_pairs(spec);
    // Above what logd returns at once: stream everything and keep the newest here.
    let keep_newest = (limit > MAX_LIMIT).then_some(limit);
    pairs.push((
        "limit",
        if keep_newest.is_some() {
            "0".to_string()
        } else {
            limit.to_string()
        },
    ));
    let response = get(&agent, base, "/api/query", &pairs)?;
    let stats = stats_from_headers(response.headers());
    if let Some(nodes) = response
        .headers()
        .get(flotilla_logd::peers::NODES_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        warn_down_nodes(nodes, &mut Vec::new(), err);
    }
    let mut reader = BufReader::new(response.into_body().into_reader());
    let mut ring: VecDeque<String> = VecDeque::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| anyhow!("connection to logd at {base} lost mid-answer: {e}"))?;
        if n == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        match keep_newest {
            Some(keep) => {
                if ring.len() == keep {
                    ring.pop_front();
                }
                ring.push_back(line.clone());
            }
            None => {
                if print_line(printer, &line, base)? == Flow::Stop {
                    break;
                }
            }
        }
    }
    for line in &ring {
        if print_line(printer, line, base)? == Flow::Stop {
            break;
        }
    }
    if stats.is_some() || !want_stats {
        return Ok(stats);
    }
    // A streamed answer carries no statistics: ask for them (a second pass).
    let mut pairs = query_pairs(spec);
    pairs.push(("limit", "0".to_string()));
    let mut response = get(&agent, base, "/api/query/stats", &pairs)?;
    let answer: Value = response
        .body_mut()
        .read_json()
        .map_err(|e| anyhow!("logd at {base}: unreadable statistics: {e}"))?;
    Ok(
        serde_json::from_value::<QueryStatsJson>(answer["stats"].clone())
            .ok()
            .map(QueryStats::from),
    )
}

/// The JSON form of [`QueryStats`] (which is only `Serialize`).
#[derive(serde::Deserialize)]
struct QueryStatsJson {
    segments_total: u64,
    segments_in_range: u64,
    blocks_in_range: u64,
    blocks_opened: u64,
    records_scanned: u64,
    matched: u64,
    corrupt_blocks: u64,
}

impl From<QueryStatsJson> for QueryStats {
    fn from(j: QueryStatsJson) -> Self {
        QueryStats {
            segments_total: j.segments_total,
            segments_in_range: j.segments_in_range,
            blocks_in_range: j.blocks_in_range,
            blocks_opened: j.blocks_opened,
            records_scanned: j.records_scanned,
            matched: j.matched,
            corrupt_blocks: j.corrupt_blocks,
        }
    }
}

/// Prints `warning: node URL did not answer: WHY` for each node of an `x-flotilla-nodes`
/// report (a JSON array) that is down and was not reported down already (`reported`
/// holds the URLs reported; a node that answers again is removed, with a note).
fn warn_down_nodes(report: &str, reported: &mut Vec<String>, err: &mut dyn Write) {
    let Ok(nodes) = serde_json::from_str::<Vec<flotilla_logd::peers::NodeReport>>(report) else {
        let _ = writeln!(
            err,
            "warning: unreadable report of the nodes asked: {report}"
        );
        return;
    };
    for n in nodes {
        let name = match &n.node {
            Some(id) => format!("{} ({id})", n.url),
            None => n.url.clone(),
        };
        if n.ok {
            if let Some(i) = reported.iter().position(|u| *u == n.url) {
                reported.remove(i);
                let _ = writeln!(err, "note: node {name} answers again");
            }
        } else if !reported.contains(&n.url) {
            reported.push(n.url.clone());
            let _ = writeln!(
                err,
                "warning: node {name} did not answer: {}",
                n.error.as_deref().unwrap_or("unknown error")
            );
        }
    }
}

/// Prints one JSON line of logd's answer.
fn print_line(printer: &mut Printer<'_>, line: &str, base: &str) -> Result<Flow> {
    let record: RecordJson = serde_json::from_str(line)
        .map_err(|e| anyhow!("logd at {base} sent a record that does not parse: {e}"))?;
    printer.record(&record, Some(line))
}

// ---------------------------------------------------------------------------------------
// Tail -f.

/// Reads Server-Sent Events line by line (the rules are `flotilla_logd::sse`'s).
struct SseReader<R> {
    reader: R,
    line: String,
    parser: SseParser,
}

impl<R: BufRead> SseReader<R> {
    fn new(reader: R) -> Self {
        SseReader {
            reader,
            line: String::new(),
            parser: SseParser::new(),
        }
    }

    /// The next event (comments skipped); `None` at the end of the stream.
    fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line)? == 0 {
                return Ok(None);
            }
            if let Some(event) = self.parser.line(&self.line) {
                return Ok(Some(event));
            }
        }
    }
}

/// How one tail connection ended.
enum Ended {
    /// Done: --max reached, stdout closed, or the deadline passed.
    Done,
    /// The connection dropped or ended (reconnect).
    Lost(String),
    /// The tail fell behind (reconnect at once, resuming from the store).
    Lagged(u64),
}

/// `tail -f`: backfill, then live records, reconnecting with backoff when logd goes away.
fn follow(
    base: &str,
    spec: &QuerySpec,
    lines: usize,
    deadline: Option<Instant>,
    printer: &mut Printer<'_>,
    err: &mut dyn Write,
) -> Result<()> {
    let remaining = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let expired = || deadline.is_some_and(|d| Instant::now() >= d);
    // Where "new" starts: records after this id are new to this tail. Resuming after it
    // when nothing was printed yet loses nothing that arrived meanwhile.
    let stats_agent = agent(None, remaining());
    let baseline: Option<u64> = get(&stats_agent, base, "/api/stats", &[])
        .and_then(|mut r| {
            r.body_mut()
                .read_json::<Value>()
                .map_err(|e| anyhow!("logd at {base}: unreadable statistics: {e}"))
        })?
        .get("next_id")
        .and_then(Value::as_u64)
        .map(|n| n.saturating_sub(1));
    // The last record printed, per node (a logd with --peers merges several nodes, each
    // numbering its own records).
    let mut last = TailCursor::default();
    let mut down_reported: Vec<String> = Vec::new();
    let mut connected_once = false;
    let mut backoff = BACKOFF_MIN;
    let mut outage_reported = false;
    loop {
        if expired() {
            return Ok(());
        }
        let mut pairs = query_pairs(spec);
        let after = match last.to_param() {
            Some(cursor) => Some(cursor),
            None if connected_once => baseline.map(|b| b.to_string()),
            None => None,
        };
        match after {
            Some(after) => {
                pairs.push(("backfill", MAX_LIMIT.to_string()));
                pairs.push(("after", after));
            }
            None if lines > 0 => pairs.push(("backfill", lines.to_string())),
            None => {}
        }
        let agent = agent(Some(TAIL_SILENCE), remaining());
        let response = agent
            .get(format!("{base}/api/tail"))
            .query_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
            .call();
        let ended = match response {
            Ok(mut r) if r.status().is_success() => {
                if outage_reported {
                    let _ = writeln!(err, "flotilla logs: reconnected to logd at {base}");
                    outage_reported = false;
                }
                connected_once = true;
                backoff = BACKOFF_MIN;
                read_tail(
                    r.body_mut().as_reader(),
                    &mut last,
                    printer,
                    &mut down_reported,
                    err,
                )?
            }
            Ok(mut r) if r.status().is_client_error() || !connected_once => {
                return Err(answer_error(base, &mut r));
            }
            Ok(mut r) => Ended::Lost(answer_error(base, &mut r).to_string()),
            Err(e) if !connected_once && !expired() => {
                bail!("cannot reach logd at {base}: {e}")
            }
            Err(e) => Ended::Lost(e.to_string()),
        };
        if expired() {
            return Ok(());
        }
        match ended {
            Ended::Done => return Ok(()),
            Ended::Lagged(n) => {
                let _ = writeln!(
                    err,
                    "flotilla logs: the tail fell behind logd ({n} batches); catching up from \
                     the store"
                );
            }
            Ended::Lost(why) => {
                if !outage_reported {
                    let _ = writeln!(
                        err,
                        "flotilla logs: lost the connection to logd at {base} ({why}); \
                         reconnecting"
                    );
                    outage_reported = true;
                }
                let wait = remaining().map_or(backoff, |r| r.min(backoff));
                std::thread::sleep(wait);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// The last record id printed from each node.
#[derive(Debug, Default)]
struct TailCursor {
    by_node: std::collections::BTreeMap<String, u64>,
}

impl TailCursor {
    /// Whether the record is new (after the last one printed from its node); notes it.
    fn advance(&mut self, record: &RecordJson) -> bool {
        let node = record.node.clone().unwrap_or_default();
        match self.by_node.get_mut(&node) {
            Some(last) if record.id <= *last => false,
            Some(last) => {
                *last = record.id;
                true
            }
            None => {
                self.by_node.insert(node, record.id);
                true
            }
        }
    }

    /// The `after` parameter that resumes after it: a record id (one node without a
    /// name, as an older logd sends) or `NODE=ID,…`.
    fn to_param(&self) -> Option<String> {
        if self.by_node.is_empty() {
            return None;
        }
        if let Some(id) = self.by_node.get("")
            && self.by_node.len() == 1
        {
            return Some(id.to_string());
        }
        Some(
            self.by_node
                .iter()
                .map(|(node, id)| format!("{node}={id}"))
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

/// Reads one tail connection's events, printing records after the last one printed from
/// their node, and warning about nodes that do not answer.
fn read_tail(
    body: impl io::Read,
    last: &mut TailCursor,
    printer: &mut Printer<'_>,
    down_reported: &mut Vec<String>,
    err: &mut dyn Write,
) -> Result<Ended> {
    let mut events = SseReader::new(BufReader::new(body));
    loop {
        let event = match events.next_event() {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(Ended::Lost("logd ended the tail".into())),
            Err(e) => return Ok(Ended::Lost(e.to_string())),
        };
        match event.event.as_str() {
            "record" => {
                let record: RecordJson = match serde_json::from_str(&event.data) {
                    Ok(r) => r,
                    Err(e) => bail!("logd sent a record that does not parse: {e}"),
                };
                if !last.advance(&record) {
                    continue;
                }
                if printer.record(&record, Some(&event.data))? == Flow::Stop {
                    return Ok(Ended::Done);
                }
            }
            "lagged" => {
                let missed = serde_json::from_str::<Value>(&event.data)
                    .ok()
                    .and_then(|v| v.get("missed_batches").and_then(Value::as_u64))
                    .unwrap_or(0);
                return Ok(Ended::Lagged(missed));
            }
            "nodes" => warn_down_nodes(&event.data, down_reported, err),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        logs: LogsArgs,
    }

    fn parse(args: &[&str]) -> Result<LogsCommand, clap::Error> {
        let mut argv = vec!["logs"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|c| c.logs.command)
    }

    fn query_args(args: &[&str]) -> QueryArgs {
        let mut argv = vec!["query"];
        argv.extend_from_slice(args);
        match parse(&argv).unwrap() {
            LogsCommand::Query(q) => q,
            other => panic!("{other:?}"),
        }
    }

    fn tail_args(args: &[&str]) -> TailArgs {
        let mut argv = vec!["tail"];
        argv.extend_from_slice(args);
        match parse(&argv).unwrap() {
            LogsCommand::Tail(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_become_the_query_spec() {
        let q = query_args(&[
            "--since",
            "1h",
            "--until",
            "@1700000000",
            "--host",
            "web-1",
            "--host",
            "web-2",
            "--app",
            "api",
            "--msgid",
            "REQ",
            "--procid",
            "42",
            "--severity",
            "..err",
            "--sd",
            "req@32473.user=u1",
            "--sd",
            "req@32473.path=/a b",
            "--grep",
            "timeout",
            "--grep",
            "id-7",
            "--substr",
            "fail",
            "--unparsed",
        ]);
        let spec = q.filters.to_spec();
        assert_eq!(
            spec,
            QuerySpec {
                since: Some("1h".into()),
                until: Some("@1700000000".into()),
                host: vec!["web-1".into(), "web-2".into()],
                app: vec!["api".into()],
                msgid: vec!["REQ".into()],
                procid: vec!["42".into()],
                severity: Some("..err".into()),
                sd: vec!["req@32473.user=u1".into(), "req@32473.path=/a b".into()],
                grep: vec!["timeout".into(), "id-7".into()],
                substr: vec!["fail".into()],
                unparsed: true,
            }
        );
        // The same flags on tail.
        let t = tail_args(&["--host", "web-1", "--severity", "warning..", "--unparsed"]);
        let spec = t.filters.to_spec();
        assert_eq!(spec.host, vec!["web-1".to_string()]);
        assert_eq!(spec.severity.as_deref(), Some("warning.."));
        assert!(spec.unparsed);
        assert!(spec.since.is_none() && spec.grep.is_empty());
        // No flags: everything.
        assert_eq!(query_args(&[]).filters.to_spec(), QuerySpec::default());
    }

    #[test]
    fn the_spec_resolves_to_the_query_logd_runs() {
        let q = query_args(&["--since", "@100", "--until", "@200", "--severity", "..err"]);
        let query = checked_spec(&q.filters)
            .unwrap()
            .to_query(1_000_000_000_000)
            .unwrap();
        assert_eq!(query.since, Some(100_000_000_000));
        assert_eq!(query.until, Some(200_000_000_000));
        assert_eq!(
            (query.severity_min_code, query.severity_max_code),
            (Some(0), Some(3))
        );
        for (flags, needle) in [
            (&["--severity", "loud"][..], "unknown severity"),
            (&["--since", "yesterday"], "bad time"),
            (&["--sd", "novalue"], "SD-ID.PARAM=VALUE"),
            (&["--grep", ""], "non-empty"),
            (&["--since", "1h", "--until", "2h"], "before"),
        ] {
            let e = checked_spec(&query_args(flags).filters).unwrap_err();
            assert!(e.to_string().contains(needle), "{flags:?}: {e}");
        }
    }

    #[test]
    fn defaults_and_flag_surface() {
        let q = query_args(&[]);
        if std::env::var_os("FLOTILLA_LOGD").is_none() {
            assert_eq!(q.logd, DEFAULT_LOGD);
        }
        assert_eq!(
            (q.limit, q.json, q.stats, q.data),
            (None, false, false, None)
        );
        let q = query_args(&["--data", "/tmp/d", "--limit", "0", "--json", "--stats"]);
        assert_eq!(q.data, Some(PathBuf::from("/tmp/d")));
        assert_eq!((q.limit, q.json, q.stats), (Some(0), true, true));
        let q = query_args(&["--logd", "http://10.0.0.1:7480"]);
        assert_eq!(q.logd, "http://10.0.0.1:7480");

        let t = tail_args(&[]);
        assert_eq!(
            (t.follow, t.lines, t.max, t.timeout),
            (false, 10, None, None)
        );
        let t = tail_args(&["-f", "-n", "3", "--max", "5", "--timeout", "1.5", "--json"]);
        assert_eq!(
            (t.follow, t.lines, t.max, t.timeout, t.json),
            (true, 3, Some(5), Some(1.5), true)
        );
        assert!(parse(&["tail", "-f", "--data", "/tmp/d"]).is_err());
        assert!(parse(&["query", "--limit", "-1"]).is_err());
        assert!(parse(&["query", "--bogus"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn logd_urls() {
        assert_eq!(
            base_url("http://127.0.0.1:7480/").unwrap(),
            "http://127.0.0.1:7480"
        );
        assert_eq!(
            base_url("logs.example:80").unwrap(),
            "http://logs.example:80"
        );
        assert!(
            base_url("https://x:1")
                .unwrap_err()
                .to_string()
                .contains("https://")
        );
        assert!(base_url("").is_err());
        assert!(base_url("http://").is_err());
    }

    #[test]
    fn server_sent_events_parse() {
        let text = ": opening comment\n\nevent: record\nid: 7\ndata: {\"a\":1}\n\n:keep-alive\n\n\
                    event:lagged\r\ndata:{\"missed_batches\":3}\r\n\r\ndata: one\ndata: two\n\n\
                    event: record\ndata: cut";
        let mut r = SseReader::new(text.as_bytes());
        assert_eq!(
            r.next_event().unwrap(),
            Some(SseEvent {
                event: "record".into(),
                id: Some("7".into()),
                data: "{\"a\":1}".into()
            })
        );
        assert_eq!(
            r.next_event().unwrap(),
            Some(SseEvent {
                event: "lagged".into(),
                id: None,
                data: "{\"missed_batches\":3}".into()
            })
        );
        assert_eq!(r.next_event().unwrap().unwrap().data, "one\ntwo");
        // An event cut by the end of the stream is not dispatched.
        assert_eq!(r.next_event().unwrap(), None);
    }

    #[test]
    fn control_characters_are_escaped_in_human_output() {
        assert_eq!(escape_controls("plain\ttext"), "plain\ttext");
        assert_eq!(escape_controls("red \u{1b}[31m!"), "red \\u{1b}[31m!");
    }

    // In-process logd (store + HTTP API on loopback) for the client paths below.
    struct Logd {
        store: Store,
        rt: tokio::runtime::Runtime,
        base: String,
        addr: std::net::SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: Option<tokio::task::JoinHandle<std::result::Result<(), flotilla_logd::Error>>>,
        dir: tempfile::TempDir,
    }

    impl Logd {
        fn start() -> Logd {
            let dir = tempfile::tempdir().unwrap();
            let mut config = flotilla_logd::StoreConfig::new(dir.path());
            config.commit_interval = Duration::from_millis(2);
            config.node_id = "n1".into();
            let store = Store::open(config).unwrap();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let mut logd = Logd {
                store,
                rt,
                base: String::new(),
                addr: "127.0.0.1:0".parse().unwrap(),
                stop: None,
                task: None,
                dir,
            };
            logd.serve();
            logd
        }

        /// Serves (again) on the same port.
        fn serve(&mut self) {
            let addr = self.addr;
            let listener = self
                .rt
                .block_on(async {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    loop {
                        match tokio::net::TcpListener::bind(addr).await {
                            Ok(l) => return Ok(l),
                            Err(e) if Instant::now() > deadline => return Err(e),
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                })
                .unwrap();
            self.addr = listener.local_addr().unwrap();
            self.base = format!("http://{}", self.addr);
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let state = flotilla_logd::http::HttpState::new(self.store.clone());
            self.task = Some(self.rt.spawn(flotilla_logd::http::serve(
                listener,
                state,
                async move {
                    let _ = rx.await;
                },
            )));
            self.stop = Some(tx);
        }

        fn stop_serving(&mut self) {
            if let Some(tx) = self.stop.take() {
                let _ = tx.send(());
            }
            if let Some(task) = self.task.take() {
                let _ = self
                    .rt
                    .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
            }
        }

        fn ingest(&self, lines: &[String]) {
            let records = lines
                .iter()
                .map(|l| Record {
                    received_at: flotilla_logd::record::now_nanos(),
                    source: flotilla_logd::Source::LOCAL,
                    flags: 0,
                    raw: l.clone().into_bytes().into(),
                })
                .collect();
            self.store.ingest().submit_blocking(records, true).unwrap();
        }
    }

    impl Drop for Logd {
        fn drop(&mut self) {
            self.stop_serving();
            self.store.shutdown();
        }
    }

    fn numbered(app: &str, range: std::ops::Range<usize>) -> Vec<String> {
        range
            .map(|i| format!("<14>1 - h1 {app} - - - n={i}"))
            .collect()
    }

    /// Runs `flotilla logs ARGS`: (result, stdout, stderr).
    fn run_logs(args: &[&str]) -> (Result<()>, String, String) {
        let mut argv = vec!["logs"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = run_with(cli.logs, &mut out, &mut err);
        (
            result,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn ns(stdout: &str) -> Vec<usize> {
        stdout
            .lines()
            .map(|l| {
                let msg = match serde_json::from_str::<RecordJson>(l) {
                    Ok(r) => r.msg,
                    Err(_) => l.rsplit_once(": ").unwrap().1.to_string(),
                };
                msg.strip_prefix("n=").unwrap().parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn query_over_http_and_from_the_data_directory() {
        let logd = Logd::start();
        logd.ingest(&numbered("api", 0..150));
        logd.ingest(&numbered("db", 150..160));
        let dir = logd.dir.path().to_str().unwrap().to_string();
        for source in [vec!["--logd", logd.base.as_str()], vec!["--data", &dir]] {
            let with = |extra: &[&str]| {
                let mut args = vec!["query"];
                args.extend_from_slice(&source);
                args.extend_from_slice(extra);
                run_logs(&args)
            };
            // Human output: the newest 100 by default, oldest first.
            let (r, out, err) = with(&["--app", "api"]);
            r.unwrap();
            assert_eq!(ns(&out), (50..150).collect::<Vec<_>>(), "{source:?}");
            assert!(out.lines().all(|l| l.contains(" h1 api ")), "{out}");
            assert!(err.is_empty(), "{err}");
            // JSON lines with every field; --limit 0 is everything.
            let (r, out, _) = with(&["--app", "db", "--json", "--limit", "0"]);
            r.unwrap();
            let records: Vec<RecordJson> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(records.len(), 10);
            assert_eq!(records[0].app_name.as_deref(), Some("db"));
            assert_eq!(records[0].severity, "info");
            let (r, out, _) = with(&["--limit", "0"]);
            r.unwrap();
            assert_eq!(ns(&out), (0..160).collect::<Vec<_>>());
            // No match: exit 0, a note on stderr (human output only).
            let (r, out, err) = with(&["--host", "nobody"]);
            r.unwrap();
            assert!(out.is_empty());
            assert_eq!(err.trim(), "no matching records");
            let (r, _, err) = with(&["--host", "nobody", "--json"]);
            r.unwrap();
            assert!(err.is_empty());
            // Statistics on stderr, with a limit and streamed.
            for limit in ["5", "0"] {
                let (r, out, err) = with(&["--grep", "n=7", "--stats", "--limit", limit]);
                r.unwrap();
                assert_eq!(ns(&out), vec![7]);
                assert!(
                    err.contains("records scanned, 1 matched"),
                    "{source:?}: {err}"
                );
            }
            // tail without -f: the newest N.
            let mut args = vec!["tail"];
            args.extend_from_slice(&source);
            args.extend_from_slice(&["-n", "3", "--app", "api"]);
            let (r, out, _) = run_logs(&args);
            r.unwrap();
            assert_eq!(ns(&out), vec![147, 148, 149]);
        }
        // Bad filters fail before any I/O, with logd's words.
        let (r, _, _) = run_logs(&["query", "--logd", &logd.base, "--severity", "loud"]);
        assert!(r.unwrap_err().to_string().contains("unknown severity"));
        let (r, _, _) = run_logs(&["tail", "-f", "--logd", &logd.base, "--since", "1h"]);
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("do not apply to tail -f")
        );
    }

    #[test]
    fn unreachable_logd_is_a_clear_error() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        for args in [
            vec!["query", "--logd", url.as_str()],
            vec!["tail", "-f", "--logd", url.as_str()],
        ] {
            let (r, _, _) = run_logs(&args);
            let e = r.unwrap_err().to_string();
            assert!(e.starts_with(&format!("cannot reach logd at {url}")), "{e}");
        }
        let (r, _, _) = run_logs(&["query", "--data", "/nonexistent/flotilla-logd-dir"]);
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains("not a logd data directory"), "{e}");
    }

    #[test]
    fn tail_follow_backfills_follows_and_resumes_after_a_restart() {
        let mut logd = Logd::start();
        logd.ingest(&numbered("api", 0..5));
        let base = logd.base.clone();
        let worker = std::thread::spawn(move || {
            run_logs(&[
                "tail",
                "-f",
                "--logd",
                &base,
                "-n",
                "2",
                "--app",
                "api",
                "--max",
                "12",
                "--timeout",
                "20",
            ])
        });
        // Live records once the tail is connected (it backfills n=3,4 first; should it
        // connect later, records are in the backfill or live, never both, never neither).
        std::thread::sleep(Duration::from_millis(300));
        logd.ingest(&numbered("api", 5..8));
        logd.ingest(&numbered("db", 100..103));
        std::thread::sleep(Duration::from_millis(300));
        // logd's HTTP goes away and comes back on the same port; meanwhile records arrive.
        logd.stop_serving();
        logd.ingest(&numbered("api", 8..11));
        std::thread::sleep(Duration::from_millis(500));
        logd.serve();
        std::thread::sleep(Duration::from_millis(300));
        logd.ingest(&numbered("api", 11..20));
        let (r, out, err) = worker.join().unwrap();
        r.unwrap();
        let got = ns(&out);
        assert_eq!(got.len(), 12, "{out}{err}");
        assert!((3..=6).contains(&got[0]), "{out}{err}");
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{out}{err}");
        assert!(err.contains("lost the connection"), "{err}");
        assert!(err.contains("reconnected"), "{err}");
    }

    #[test]
    fn tail_follow_stops_at_the_timeout_and_prints_json() {
        let logd = Logd::start();
        logd.ingest(&numbered("api", 0..3));
        let started = Instant::now();
        let (r, out, _) = run_logs(&[
            "tail",
            "-f",
            "--logd",
            &logd.base,
            "--json",
            "--timeout",
            "0.5",
        ]);
        r.unwrap();
        // A hang guard: `--timeout 0.5` ended the tail.
        assert!(started.elapsed() < Duration::from_secs(20));
        let records: Vec<RecordJson> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].node.as_deref(), Some("n1"));
        // -n 0: only what arrives after connecting.
        let base = logd.base.clone();
        let worker = std::thread::spawn(move || {
            run_logs(&[
                "tail",
                "-f",
                "--logd",
                &base,
                "-n",
                "0",
                "--max",
                "1",
                "--timeout",
                "10",
            ])
        });
        // New records until the tail has printed one (whenever it connected).
        let mut n = 3;
        while !worker.is_finished() {
            logd.ingest(&numbered("api", n..n + 1));
            n += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        let (r, out, _) = worker.join().unwrap();
        r.unwrap();
        let got = ns(&out);
        assert_eq!(got.len(), 1, "{out}");
        assert!(got[0] >= 3, "{out}");
    }
}
