//! The HTTP API of logd (axum, HTTP/1.1): queries, live tails, statistics, health and
//! Prometheus metrics. Examples below use logd's default HTTP address, `127.0.0.1:7480`.
//!
//! # Filters
//!
//! `/api/query`, `/api/query/stats` and `/api/tail` take the filters of
//! [`QuerySpec`] as URL query parameters (see [`crate::query`] for
//! their meaning). `host`, `app`, `msgid`, `procid` (any of), `sd`, `grep` and `substr` (all
//! of) may be given several times; `since`, `until`, `severity`, `unparsed`, `limit`,
//! `backfill` and `after` at most once. Values must not be empty (except `unparsed`).
//! An unknown parameter, a value given twice or a value that does not parse is answered
//! `400 Bad Request` with a JSON body `{"error": "..."}` saying what is wrong.
//!
//! | parameter | form |
//! |---|---|
//! | `since`, `until` | `now`, a duration ago (`90s`, `15m`, `1h`, `7d`), RFC 3339, `@UNIX` (query only) |
//! | `host`, `app`, `msgid`, `procid` | exact value |
//! | `severity` | `err`, `..err`, `warning..`, `crit..warning` |
//! | `sd` | `SD-ID.PARAM=VALUE` |
//! | `grep`, `substr` | text |
//! | `unparsed` | `1`/`true`/`yes` (or no value), `0`/`false`/`no` |
//! | `limit` | records (query only): default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`], `0` = every match, streamed |
//! | `backfill` | tail only: first the newest N matches (at most [`MAX_LIMIT`]) |
//! | `after` | tail only: skip records whose id is at most this (resume after a dropped connection), or a multi-node tail's cursor `NODE=ID,NODE=ID` (each node resumes after its entry; a node without one sends live records only); the `Last-Event-ID` header does the same |
//! | `local` | `1`: answer from this node only, even with `--peers` (what nodes ask each other) |
//!
//! # Several nodes
//!
//! With peers ([`HttpState::peers`], `flotilla logd --peers URL,…`), `/api/query`,
//! `/api/query/stats` and `/api/tail` without `local=1` cover every node (see
//! [`crate::peers`]): records are merged by received-at time and carry their `node`;
//! a duplicate (both records carry `[meta sequenceId="N"]` and their frames are
//! byte-equal: a RELP resend after a failover) is shown once, on one node as across
//! several; and every node asked is reported in the response header `x-flotilla-nodes`,
//! a JSON array: `[{"node":"id","url":"http://…","ok":true,"matched":n},
//! {"url":"http://…","ok":false,"error":"cannot connect: …"}]` (`matched`: what a
//! limited query got from the node, or its count in `/api/query/stats`). A node that is
//! down is reported there, never silently missing; a partial answer is still `200`. A
//! node that cannot be connected to within 2 s, or does not start answering within 30 s,
//! is counted down.
//!
//! # Endpoints
//!
//! - `GET /api/query?FILTERS&limit=N`: matching records as JSON Lines
//!   (`application/x-ndjson`), one [`RecordJson`] a line (with `node` set), oldest first.
//!   With a limit (default [`DEFAULT_LIMIT`]) the newest N matches are returned (N
//!   distinct ones: a duplicate shown once is not counted, so fewer than N means that no
//!   older match is left) and the
//!   query's [`QueryStats`] are in the headers `x-flotilla-segments-total`,
//!   `x-flotilla-segments-in-range`, `x-flotilla-blocks-in-range`,
//!   `x-flotilla-blocks-opened`, `x-flotilla-records-scanned`, `x-flotilla-matched` and
//!   `x-flotilla-corrupt-blocks` (summed over the nodes with peers; duplicates counted).
//!   With `limit=0` every match is streamed, oldest first,
//!   in bounded memory (no statistics headers: they are not known before the body); if
//!   the scan fails or logd shuts down midway the response is cut off (an incomplete
//!   chunked body), never silently short.
//!
//!   ```sh
//!   curl 'http://127.0.0.1:7480/api/query?since=1h&host=web-1&host=web-2&severity=..err&limit=50'
//!   curl 'http://127.0.0.1:7480/api/query?sd=req@32473.user=u1&grep=timeout&limit=0'
//!   # values with spaces, & or + must be percent-encoded:
//!   curl -G http://127.0.0.1:7480/api/query --data-urlencode 'grep=connection reset'
//!   ```
//! - `GET /api/query/stats?FILTERS&limit=N`: the same query without the records:
//!   `{"stats": QueryStats, "matched": n}` (`limit=0`: counts every match). With peers:
//!   summed over the nodes (duplicates counted), plus `"nodes"` (as `x-flotilla-nodes`).
//!
//!   ```sh
//!   curl 'http://127.0.0.1:7480/api/query/stats?since=1d&grep=panic&limit=0'
//!   ```
//! - `GET /api/tail?FILTERS&backfill=N&after=ID`: Server-Sent Events. Each matching record
//!   made durable from now on is an event `record` (`id:` the record's id, `data:` its
//!   [`RecordJson`]); with `backfill=N` the newest N matches come first, then live ones,
//!   with no duplicate and no gap. When the tail falls more than 1,024 store batches
//!   behind, an event `lagged` with `{"missed_batches": n}` says so; when a tail resumed
//!   with `after` has more matches after it than `backfill` (the newest N come), an event
//!   `lagged` with `{"backfill_capped": N, "node": "…"}` comes first: the older ones were
//!   skipped. A comment is sent
//!   first and every [`TAIL_KEEP_ALIVE`]. The stream ends when logd shuts down.
//!
//!   With peers the tail follows every node: an event `nodes` comes first (once every
//!   node answered or failed to, at most 4 s) and again whenever a node drops or comes
//!   back, its data the `x-flotilla-nodes` array; a dropped node is reconnected with
//!   backoff and resumed after the last record seen from it. Records come as they
//!   arrive from each node, each `id:` a cursor `NODE=ID,…` of the last record seen
//!   from every node (give it back as `after=` or `Last-Event-ID`); `backfill=N` is the
//!   newest N over every node, merged by received-at (each node's tail, asked with
//!   `local=1`, ends its backfill with an event `backfilled`, so the merging node knows
//!   when every backfill is in).
//!
//!   ```sh
//!   curl -N 'http://127.0.0.1:7480/api/tail?app=api&severity=..warning&backfill=20'
//!   ```
//! - `GET /api/stats`: the store's [`StoreStats`] as JSON plus
//!   `"listeners"`: the listeners' counters ([`HttpState::extra_stats`]; when it returns
//!   an object whose only key is `listeners`, that key's value is used), and, when the
//!   fleet view and alerts run, `"watch"`: the watcher's [`crate::watch::WatchStats`].
//!
//!   ```sh
//!   curl http://127.0.0.1:7480/api/stats
//!   ```
//! - `GET /health`: `200 {"status":"ok","node":...}`, or `503 {"status":"error","error":
//!   ...,"node":...}` while the store cannot write (e.g. the disk is full).
//!
//!   ```sh
//!   curl -f http://127.0.0.1:7480/health
//!   ```
//! - `GET /metrics`: Prometheus text exposition format 0.0.4 (see [`metrics_text`] for
//!   every metric name).
//!
//!   ```sh
//!   curl http://127.0.0.1:7480/metrics
//!   ```
//! - `GET /api/fleet[?local=1]`: the fleet view, `{"now", "services": [row…], "nodes":
//!   [{"node","url","ok","error"}…]}`, one row per service (host + app; see
//!   [`crate::fleet::ServiceRow`] for the fields: state `up`, `silent`, `crashed` or
//!   `boot-looping`, boots, heartbeats, crashes, errors, IP configuration); with peers,
//!   every node's rows merged (see [`crate::watch_api`]). `404` when logd runs without
//!   the watcher (`--no-watch`).
//! - `GET /api/alerts[?local=1]`: `{"firing": [alert…], "recent": [alert…], "deliveries":
//!   {node: [counters…]}, "nodes": […]}` (see [`crate::alerts::Alert`] and
//!   [`crate::notify::DeliveryStats`]).
//!
//!   ```sh
//!   curl http://127.0.0.1:7480/api/fleet
//!   curl http://127.0.0.1:7480/api/alerts
//!   ```
//! - `GET /` (and `/app.js`, `/style.css`): the web page (see [`crate::web`]).
//!
//! Any other path is `404` with a JSON error listing the endpoints.

// An I/O shell (the HTTP API): it times requests and waits on the network.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{self, Stream};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::error::Error;
use crate::query::{Matcher, QuerySpec, QueryStats, RecordJson};
use crate::record::{Record, now_nanos};
use crate::store::{Store, StoreStats, defaults_for};

/// Records `/api/query` returns when the request names no `limit`.
pub const DEFAULT_LIMIT: usize = 1000;

/// The event a `local=1` tail sends after its backfill (possibly empty), before live
/// records.
pub(crate) const BACKFILLED_EVENT: &str = "backfilled";

/// Largest `limit` and `backfill` accepted (they are held in memory); `limit=0` streams
/// any number of records instead.
pub const MAX_LIMIT: usize = 100_000;

/// Interval of a tail's keep-alive comments.
pub const TAIL_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Bytes of JSON lines a streamed query sends at once.
const STREAM_CHUNK: usize = 64 * 1024;

/// Longest time a matched line waits in a streamed query's buffer.
const STREAM_FLUSH: Duration = Duration::from_millis(200);

/// Chunks of a streamed query buffered between the scan and the connection.
const STREAM_CHANNEL: usize = 8;

/// What the HTTP API serves.
#[derive(Clone)]
pub struct HttpState {
    /// The store queried and tailed.
    pub store: Store,
    /// The listeners' counters, reported by `/api/stats` under `"listeners"` and by
    /// `/metrics` as `flotilla_logd_listener_*`.
    pub extra_stats: Arc<dyn Fn() -> Value + Send + Sync>,
    /// The other nodes (`flotilla logd --peers`): queries and tails without `local=1`
    /// cover them too (see [`crate::peers`]). `None`: this node alone.
    pub peers: Option<Arc<crate::peers::Peers>>,
    /// The fleet view and alerts (`/api/fleet`, `/api/alerts`); `None`: not running.
    pub watch: Option<Arc<crate::watch::Watch>>,
}

impl HttpState {
    /// A state with no listener counters (`extra_stats` returns `{}`).
    pub fn new(store: Store) -> Self {
        HttpState {
            store,
            extra_stats: Arc::new(|| json!({})),
            peers: None,
            watch: None,
        }
    }

    /// The listeners' counters as reported: `extra_stats()`, or the value of its
    /// `listeners` key when that is its only key.
    pub fn listeners(&self) -> Value {
        match (self.extra_stats)() {
            Value::Object(mut map) if map.len() == 1 && map.contains_key("listeners") => {
                map.remove("listeners").unwrap_or(Value::Null)
            }
            other => other,
        }
    }
}

/// The router's state: what is served and when to stop long responses.
#[derive(Clone)]
struct App {
    state: HttpState,
    /// Becomes `true` when [`serve`] shuts down (`None`: never).
    shutdown: Option<watch::Receiver<bool>>,
}

/// The API's routes. Tails and streamed queries served through this router run until the
/// client goes away or the store closes; [`serve`] also ends them at shutdown.
pub fn router(state: HttpState) -> Router {
    build_router(App {
        state,
        shutdown: None,
    })
}

fn build_router(app: App) -> Router {
    Router::new()
        .route("/api/query", get(query))
        .route("/api/query/stats", get(query_stats))
        .route("/api/tail", get(tail))
        .route("/api/stats", get(stats))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/fleet", get(fleet))
        .route("/api/alerts", get(alerts))
        .merge(crate::web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting,
/// ends open tails and streamed queries, and returns once every connection is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    use axum::serve::ListenerExt as _;
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = build_router(App {
        state,
        shutdown: Some(stop_rx),
    });
    // Tail events are small: send each at once.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "http: cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await
        .map_err(|e| Error::io(format!("serving the HTTP API on {addr}"), e))
}

/// The URL query parameters that express `spec` (what [`router`]'s endpoints parse back
/// into the same spec); values are not yet percent-encoded.
pub fn query_pairs(spec: &QuerySpec) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    if let Some(s) = &spec.since {
        pairs.push(("since", s.clone()));
    }
    if let Some(s) = &spec.until {
        pairs.push(("until", s.clone()));
    }
    for (key, values) in [
        ("host", &spec.host),
        ("app", &spec.app),
        ("msgid", &spec.msgid),
        ("procid", &spec.procid),
    ] {
        pairs.extend(values.iter().map(|v| (key, v.clone())));
    }
    if let Some(s) = &spec.severity {
        pairs.push(("severity", s.clone()));
    }
    for (key, values) in [
        ("sd", &spec.sd),
        ("grep", &spec.grep),
        ("substr", &spec.substr),
    ] {
        pairs.extend(values.iter().map(|v| (key, v.clone())));
    }
    if spec.unparsed {
        pairs.push(("unparsed", "1".to_string()));
    }
    pairs
}

// ---------------------------------------------------------------------------------------
// Errors and parameters.

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Query(_) | Error::Config(_) => ApiError::bad_request(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

/// Which endpoint parameters are parsed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Query,
    Tail,
}

const QUERY_KEYS: &str =
    "since, until, host, app, msgid, procid, severity, sd, grep, substr, unparsed, limit, local";
const TAIL_KEYS: &str =
    "host, app, msgid, procid, severity, sd, grep, substr, unparsed, backfill, after, local";

/// A request's parameters.
#[derive(Debug, Default)]
struct Params {
    spec: QuerySpec,
    limit: Option<usize>,
    backfill: Option<usize>,
    after: Option<u64>,
    /// `after` as given: a record id or a multi-node cursor `NODE=ID,…`.
    after_raw: Option<String>,
    /// `local=1`: answer from this node only (what a node asks its peers).
    local: bool,
}

/// Parses the raw URL query of a request for `endpoint`.
fn parse_params(raw: Option<&str>, endpoint: Endpoint) -> Result<Params, ApiError> {
    let mut p = Params::default();
    let mut unparsed: Option<bool> = None;
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let key = key.as_ref();
        let value = value.into_owned();
        if value.is_empty() && key != "unparsed" && key != "local" {
            return Err(ApiError::bad_request(format!(
                "parameter {key:?} has an empty value"
            )));
        }
        let once = |key: &str, given: bool| {
            if given {
                Err(ApiError::bad_request(format!(
                    "parameter {key:?} is given more than once"
                )))
            } else {
                Ok(())
            }
        };
        let tail_only = |key: &str| {
            ApiError::bad_request(format!(
                "parameter {key:?} is only accepted by /api/tail (accepted here: {QUERY_KEYS})"
            ))
        };
        let query_only = |key: &str| {
            ApiError::bad_request(format!(
                "parameter {key:?} is not accepted by /api/tail: a tail follows new records \
                 (use backfill=N for the newest N first; accepted: {TAIL_KEYS})"
            ))
        };
        match key {
            "since" | "until" | "limit" if endpoint == Endpoint::Tail => {
                return Err(query_only(key));
            }
            "backfill" | "after" if endpoint == Endpoint::Query => return Err(tail_only(key)),
            "since" => {
                once(key, p.spec.since.is_some())?;
                p.spec.since = Some(value);
            }
            "until" => {
                once(key, p.spec.until.is_some())?;
                p.spec.until = Some(value);
            }
            "severity" => {
                once(key, p.spec.severity.is_some())?;
                p.spec.severity = Some(value);
            }
            "host" => p.spec.host.push(value),
            "app" => p.spec.app.push(value),
            "msgid" => p.spec.msgid.push(value),
            "procid" => p.spec.procid.push(value),
            "sd" => p.spec.sd.push(value),
            "grep" => p.spec.grep.push(value),
            "substr" => p.spec.substr.push(value),
            "unparsed" => {
                once(key, unparsed.is_some())?;
                unparsed = Some(match value.as_str() {
                    "" | "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "parameter \"unparsed\": expected 1, true, yes, 0, false or no, not {value:?}"
                        )));
                    }
                });
            }
            "limit" => {
                once(key, p.limit.is_some())?;
                let n = parse_count(key, &value)?;
                if n > MAX_LIMIT {
                    return Err(ApiError::bad_request(format!(
                        "limit {n} is above the most a query returns at once ({MAX_LIMIT}); \
                         use limit=0 to stream every match"
                    )));
                }
                p.limit = Some(n);
            }
            "backfill" => {
                once(key, p.backfill.is_some())?;
                let n = parse_count(key, &value)?;
                if n > MAX_LIMIT {
                    return Err(ApiError::bad_request(format!(
                        "backfill {n} is above the most a tail sends first ({MAX_LIMIT})"
                    )));
                }
                p.backfill = Some(n);
            }
            "after" => {
                once(key, p.after_raw.is_some())?;
                p.after = parse_after(key, &value)?;
                p.after_raw = Some(value);
            }
            "local" => {
                p.local = match value.as_str() {
                    "" | "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "parameter \"local\": expected 1, true, yes, 0, false or no, not {value:?}"
                        )));
                    }
                };
            }
            _ => {
                let accepted = match endpoint {
                    Endpoint::Query => QUERY_KEYS,
                    Endpoint::Tail => TAIL_KEYS,
                };
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {key:?} (accepted: {accepted})"
                )));
            }
        }
    }
    p.spec.unparsed = unparsed.unwrap_or(false);
    Ok(p)
}

fn parse_count(key: &str, value: &str) -> Result<usize, ApiError> {
    value.parse::<usize>().map_err(|_| {
        ApiError::bad_request(format!(
            "parameter {key:?}: expected a whole number of records, not {value:?}"
        ))
    })
}

/// An `after` value: a record id, or a multi-node tail's cursor `NODE=ID,…` (checked
/// here, resolved by the tail: `None` until then).
fn parse_after(key: &str, value: &str) -> Result<Option<u64>, ApiError> {
    if let Ok(id) = value.trim().parse::<u64>() {
        return Ok(Some(id));
    }
    if crate::peers::parse_cursor(value).is_some() {
        return Ok(None);
    }
    Err(ApiError::bad_request(format!(
        "{key}: expected a record id (a whole number) or a cursor NODE=ID,NODE=ID, not {value:?}"
    )))
}

/// The id a tail resumes after on this node: a record id as is, or this node's entry of
/// a cursor (0 when it has none).
fn resolve_after(raw: &str, node: &str) -> u64 {
    if let Ok(id) = raw.trim().parse::<u64>() {
        return id;
    }
    crate::peers::parse_cursor(raw)
        .and_then(|c| c.get(node).copied())
        .unwrap_or(0)
}

/// Checks a spec and prepares its matcher (times resolved against now).
fn matcher_for(spec: &QuerySpec) -> Result<Matcher, ApiError> {
    let query = spec.to_query(now_nanos())?;
    Ok(Matcher::new(query)?)
}

/// Runs store work on the blocking pool (it reads and decompresses files).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(ApiError::internal(format!("query task failed: {e}"))),
    }
}

/// The JSON form of a stored record, as every endpoint sends it.
fn record_json(id: u64, record: &Record, node: &str) -> RecordJson {
    let mut json = RecordJson::from_record(id, record, &defaults_for(record.received_at));
    json.node = Some(node.to_string());
    json
}

/// Appends one JSON line; with `key`, a `local=1` answer's duplicate key field (see
/// [`crate::peers`]).
fn write_json_line(out: &mut Vec<u8>, id: u64, record: &Record, node: &str, key: Option<u128>) {
    let start = out.len();
    match serde_json::to_writer(&mut *out, &record_json(id, record, node)) {
        Ok(()) => {
            if let Some(key) = key {
                crate::peers::append_dup(out, key);
            }
            out.push(b'\n');
        }
        Err(e) => {
            out.truncate(start);
            tracing::warn!(id, error = %e, "http: record not serialisable, skipped");
        }
    }
}

/// Waits until `serve` shuts down (forever without a signal; at once if it is gone).
/// A response body of the chunks `rx` delivers. An error, or logd shutting down, cuts
/// it off (an incomplete chunked body), so a client never takes a partial answer for a
/// whole one.
pub(crate) fn streamed_body(
    rx: mpsc::Receiver<Result<Bytes, String>>,
    shutdown: Option<watch::Receiver<bool>>,
) -> Body {
    let body = stream::unfold(
        (rx, shutdown, false),
        |(mut rx, mut shutdown, failed)| async move {
            if failed {
                return None;
            }
            tokio::select! {
                item = rx.recv() => match item {
                    Some(Ok(chunk)) => Some((Ok(chunk), (rx, shutdown, false))),
                    Some(Err(message)) => {
                        Some((Err(std::io::Error::other(message)), (rx, shutdown, true)))
                    }
                    None => None,
                },
                () = wait_shutdown(&mut shutdown) => Some((
                    Err(std::io::Error::other("logd is shutting down")),
                    (rx, shutdown, true),
                )),
            }
        },
    );
    Body::from_stream(body)
}

/// Completes when logd shuts down (never, without a shutdown signal).
pub(crate) async fn wait_shutdown(rx: &mut Option<watch::Receiver<bool>>) {
    match rx {
        None => std::future::pending::<()>().await,
        Some(rx) => {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Queries.

/// A statistics header's name and its value's getter.
type StatsHeader = (&'static str, fn(&QueryStats) -> u64);

/// The statistics headers of a limited query.
const STATS_HEADERS: [StatsHeader; 7] = [
    ("x-flotilla-segments-total", |s| s.segments_total),
    ("x-flotilla-segments-in-range", |s| s.segments_in_range),
    ("x-flotilla-blocks-in-range", |s| s.blocks_in_range),
    ("x-flotilla-blocks-opened", |s| s.blocks_opened),
    ("x-flotilla-records-scanned", |s| s.records_scanned),
    ("x-flotilla-matched", |s| s.matched),
    ("x-flotilla-corrupt-blocks", |s| s.corrupt_blocks),
];

/// Reads the statistics headers of a `/api/query` response (`None` when they are
/// absent, as for a streamed query).
pub fn stats_from_headers(headers: &HeaderMap) -> Option<QueryStats> {
    let get = |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.parse().ok() };
    Some(QueryStats {
        segments_total: get("x-flotilla-segments-total")?,
        segments_in_range: get("x-flotilla-segments-in-range")?,
        blocks_in_range: get("x-flotilla-blocks-in-range")?,
        blocks_opened: get("x-flotilla-blocks-opened")?,
        records_scanned: get("x-flotilla-records-scanned")?,
        matched: get("x-flotilla-matched")?,
        corrupt_blocks: get("x-flotilla-corrupt-blocks")?,
    })
}

const NDJSON: &str = "application/x-ndjson";

async fn query(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let params = parse_params(raw.as_deref(), Endpoint::Query)?;
    let matcher = matcher_for(&params.spec)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !params.local
        && let Some(peers) = &app.state.peers
    {
        return Ok(crate::peers::query(peers.clone(), raw, limit, app.shutdown).await);
    }
    let store = app.state.store.clone();
    let node = store.config().node_id.clone();
    let local = params.local;
    if limit == 0 {
        return Ok(stream_query(store, matcher, node, local, app.shutdown));
    }
    let (body, stats) = blocking(move || {
        // The newest `limit` distinct matches. Duplicates this node holds (a RELP resend
        // after a reconnect) are shown once and not counted, so the scan goes on past
        // them: a page shorter than `limit` means no older match is left.
        let mut records = Vec::new();
        let mut distinct = crate::peers::Dedup::new(usize::MAX);
        let mut n = 0usize;
        let stats = store.scan(&matcher, true, &mut |id, record| {
            let key = crate::peers::dup_key(&record.raw);
            if distinct.first(key) {
                n += 1;
            }
            records.push((id, record.clone(), key));
            n < limit
        })?;
        let mut body = Vec::with_capacity(n * 320);
        // Oldest first; of copies, the first in time is the one shown (as everywhere).
        let mut dedup = crate::peers::Dedup::new(usize::MAX);
        for (id, record, key) in records.iter().rev() {
            if dedup.first(*key) {
                write_json_line(&mut body, *id, record, &node, key.filter(|_| local));
            }
        }
        Ok((body, stats))
    })
    .await?;
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    for (name, get) in STATS_HEADERS {
        headers.insert(name, HeaderValue::from(get(&stats)));
    }
    Ok(response)
}

/// Every match, oldest first, scanned on the blocking pool and sent through a bounded
/// channel: memory stays bounded, and the scan stops when the client goes away.
fn stream_query(
    store: Store,
    matcher: Matcher,
    node: String,
    local: bool,
    shutdown: Option<watch::Receiver<bool>>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, String>>(STREAM_CHANNEL);
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(STREAM_CHUNK + 4096);
        let mut last_flush = Instant::now();
        let mut gone = false;
        let mut dedup = crate::peers::Dedup::new(crate::peers::DEDUP_WINDOW);
        let result = store.scan(&matcher, false, &mut |id, record| {
            let key = crate::peers::dup_key(&record.raw);
            if !dedup.first(key) {
                return true;
            }
            write_json_line(&mut buf, id, record, &node, key.filter(|_| local));
            if buf.len() >= STREAM_CHUNK || last_flush.elapsed() >= STREAM_FLUSH {
                last_flush = Instant::now();
                let chunk = Bytes::from(std::mem::take(&mut buf));
                if tx.blocking_send(Ok(chunk)).is_err() {
                    gone = true;
                    return false;
                }
            }
            true
        });
        if gone {
            return;
        }
        match result {
            Ok(_) => {
                if !buf.is_empty() {
                    let _ = tx.blocking_send(Ok(Bytes::from(buf)));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "http: streamed query failed");
                let _ = tx.blocking_send(Err(format!("query failed: {e}")));
            }
        }
    });
    (
        [(header::CONTENT_TYPE, NDJSON)],
        streamed_body(rx, shutdown),
    )
        .into_response()
}

async fn query_stats(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = parse_params(raw.as_deref(), Endpoint::Query)?;
    let matcher = matcher_for(&params.spec)?;
    if !params.local
        && let Some(peers) = &app.state.peers
    {
        return Ok(crate::peers::query_stats(peers.clone(), raw).await);
    }
    let store = app.state.store.clone();
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT) as u64;
    let (stats, matched) = blocking(move || {
        let mut matched = 0u64;
        // Newest first, like a limited query, so the work counted is the same.
        let stats = store.scan(&matcher, true, &mut |_, _| {
            matched += 1;
            limit == 0 || matched < limit
        })?;
        Ok((stats, matched))
    })
    .await?;
    Ok(axum::Json(json!({ "stats": stats, "matched": matched })).into_response())
}

// ---------------------------------------------------------------------------------------
// Tails.

/// A tail's state between events.
struct Tail {
    rx: broadcast::Receiver<Arc<crate::store::DurableBatch>>,
    matcher: Arc<Matcher>,
    /// Events ready to send (the opening comment, the backfill, a live batch's matches).
    queue: VecDeque<Event>,
    /// Records with an id up to this one were sent already (or were not wanted).
    last_id: u64,
    node: String,
    /// `local=1`: events carry the duplicate key field (a node asking its peers).
    local: bool,
    shutdown: Option<watch::Receiver<bool>>,
}

fn record_event(id: u64, record: &Record, node: &str, local: bool) -> Option<Event> {
    let json = serde_json::to_vec(&record_json(id, record, node)).map(|mut data| {
        if local && let Some(key) = crate::peers::dup_key(&record.raw) {
            crate::peers::append_dup(&mut data, key);
        }
        String::from_utf8_lossy(&data).into_owned()
    });
    match json {
        Ok(data) => Some(
            Event::default()
                .event("record")
                .id(id.to_string())
                .data(data),
        ),
        Err(e) => {
            tracing::warn!(id, error = %e, "http: record not serialisable, skipped");
            None
        }
    }
}

async fn tail(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut params = parse_params(raw.as_deref(), Endpoint::Tail)?;
    if params.after_raw.is_none()
        && let Some(value) = headers.get("last-event-id")
    {
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("Last-Event-ID: not a record id"))?;
        params.after = parse_after("Last-Event-ID", value.trim())?;
        params.after_raw = Some(value.trim().to_string());
    }
    let matcher = Arc::new(matcher_for(&params.spec)?);
    if !params.local
        && let Some(peers) = &app.state.peers
    {
        return Ok(crate::peers::tail(
            peers.clone(),
            raw,
            params.backfill.unwrap_or(0),
            params.after_raw,
            app.shutdown,
        )
        .await);
    }
    let store = app.state.store.clone();
    let node = store.config().node_id.clone();
    let local = params.local;
    if params.after.is_none()
        && let Some(cursor) = &params.after_raw
    {
        // A multi-node cursor: this node's entry; none: live records only.
        params.after = Some(resolve_after(cursor, &node));
        if params.after == Some(0) {
            params.backfill = None;
        }
    }
    // Subscribe before the backfill query: records are visible to queries before they are
    // published to tails, so each record is in the backfill, in the live feed, or in both
    // (then skipped by id), never in neither.
    let rx = store.subscribe();
    let after = params.after.unwrap_or(0);
    let mut last_id = after;
    let mut queue = VecDeque::new();
    queue.push_back(Event::default().comment("flotilla logd tail"));
    let backfill = params.backfill.unwrap_or(0);
    if backfill > 0 {
        let m = matcher.clone();
        let (records, capped) = blocking(move || {
            let mut out = Vec::new();
            let mut capped = false;
            // Newest first: ids decrease, so the scan stops at the first one already seen.
            store.scan(&m, true, &mut |id, record| {
                if id <= after {
                    return false;
                }
                if out.len() == backfill {
                    // Resuming: one more match after `after` means some are skipped.
                    capped = true;
                    return false;
                }
                out.push((id, record.clone()));
                out.len() < backfill || after > 0
            })?;
            out.reverse();
            Ok((out, capped))
        })
        .await?;
        if capped {
            tracing::debug!(after, backfill, "http: a resumed tail skips older records");
            queue.push_back(
                Event::default()
                    .event("lagged")
                    .data(json!({ "backfill_capped": backfill, "node": node }).to_string()),
            );
        }
        for (id, record) in &records {
            queue.extend(record_event(*id, record, &node, local));
            last_id = last_id.max(*id);
        }
    }
    if local {
        // A node merging several tails needs to know where this one's backfill ends (it
        // keeps the newest N over every node, not N of each).
        queue.push_back(Event::default().event(BACKFILLED_EVENT).data("{}"));
    }
    let tail = Tail {
        rx,
        matcher,
        queue,
        last_id,
        node,
        local,
        shutdown: app.shutdown,
    };
    Ok(Sse::new(tail_stream(tail))
        .keep_alive(KeepAlive::new().interval(TAIL_KEEP_ALIVE))
        .into_response())
}

fn tail_stream(tail: Tail) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    stream::unfold(tail, |mut t| async move {
        loop {
            if let Some(event) = t.queue.pop_front() {
                return Some((Ok(event), t));
            }
            tokio::select! {
                () = wait_shutdown(&mut t.shutdown) => return None,
                received = t.rx.recv() => match received {
                    Ok(batch) => {
                        for (id, record) in batch.records.iter() {
                            if *id <= t.last_id {
                                continue;
                            }
                            t.last_id = *id;
                            if t.matcher.matches(record.received_at, &record.raw) {
                                t.queue.extend(record_event(*id, record, &t.node, t.local));
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed_batches = n, "http: a tail fell behind");
                        t.queue.push_back(
                            Event::default()
                                .event("lagged")
                                .data(json!({ "missed_batches": n }).to_string()),
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    })
}

// ---------------------------------------------------------------------------------------
// Statistics, health, metrics.

/// The `/api/stats` document: the store's statistics plus `"listeners"`.
fn stats_json(state: &HttpState, stats: &StoreStats) -> Value {
    let mut value = match serde_json::to_value(stats) {
        Ok(v) => v,
        Err(e) => json!({ "error": format!("statistics not serialisable: {e}") }),
    };
    if let Value::Object(map) = &mut value {
        map.insert("listeners".into(), state.listeners());
        if let Some(watch) = &state.watch {
            map.insert(
                "watch".into(),
                serde_json::to_value(watch.stats()).unwrap_or(Value::Null),
            );
        }
    }
    value
}

async fn stats(State(app): State<App>) -> Response {
    let stats = app.state.store.stats();
    axum::Json(stats_json(&app.state, &stats)).into_response()
}

async fn fleet(State(app): State<App>, RawQuery(raw): RawQuery) -> Response {
    watch_answer(&app, raw, false).await
}

async fn alerts(State(app): State<App>, RawQuery(raw): RawQuery) -> Response {
    watch_answer(&app, raw, true).await
}

/// `/api/fleet` or `/api/alerts` (see [`crate::watch_api`]).
async fn watch_answer(app: &App, raw: Option<String>, alerts: bool) -> Response {
    let local = match crate::watch_api::parse_local(raw.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": e }))).into_response();
        }
    };
    let answer = if alerts {
        crate::watch_api::alerts(&app.state, local).await
    } else {
        crate::watch_api::fleet(&app.state, local).await
    };
    match answer {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, axum::Json(json!({ "error": e }))).into_response(),
    }
}

async fn health(State(app): State<App>) -> Response {
    let stats = app.state.store.stats();
    match stats.error {
        None => (
            StatusCode::OK,
            axum::Json(json!({ "status": "ok", "node": stats.node_id })),
        )
            .into_response(),
        Some(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "error", "error": error, "node": stats.node_id })),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let stats = app.state.store.stats();
    let text = metrics_text(&stats, &app.state.listeners());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no such endpoint: {}; endpoints: GET /api/query, /api/query/stats, /api/tail, \
             /api/stats, /api/fleet, /api/alerts, /health, /metrics, / (the web page)",
            uri.path()
        ),
    }
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("{} takes GET only", uri.path()),
    }
}

/// A sample's value: integers stay exact.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Num::Int(v) => write!(f, "{v}"),
            Num::Float(v) if v.is_nan() => f.write_str("NaN"),
            Num::Float(v) if v.is_infinite() => f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" }),
            Num::Float(v) => write!(f, "{v}"),
        }
    }
}

impl From<u64> for Num {
    fn from(v: u64) -> Self {
        Num::Int(i128::from(v))
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num::Float(v)
    }
}

/// A label value escaped for the text format.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes the text exposition format.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(String, String)], value: Num) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Into<Num>) {
        self.family(name, kind, help);
        self.sample(name, &[], value.into());
    }
}

/// The `/metrics` document (Prometheus text format 0.0.4).
///
/// Store metrics (all prefixed `flotilla_logd_`):
/// `up` (gauge, 1 while the store can write, 0 when [`StoreStats::error`] is set),
/// `info{node}` (gauge, 1), `uptime_seconds`, `records_total`, `indexed_total`, `bytes_total`,
/// `batches_total`, `syncs_total`, `sync_seconds_mean` (gauge), `records_per_sync`
/// (gauge), `blocks_sealed_total`, `segments_sealed_total`, `segments_dropped_total`,
/// `segments` (gauge), `segment_bytes` (gauge), `stored_records` (gauge),
/// `unparsed_total`, `truncated_total`, `write_errors_total`, `recovered_records` (gauge),
/// `torn_tail_bytes` (gauge), `rejected_while_closed_total`, `queue_used_bytes` (gauge),
/// `queue_capacity_bytes` (gauge); per source address (label `source`, `other` for the
/// sources past the store's limit): `source_records_total`, `source_bytes_total`,
/// `source_unparsed_total`, `source_truncated_total`, `source_last_received_seconds`
/// (gauge).
///
/// Listener metrics: every number (booleans as 0/1) in `listeners` becomes
/// `flotilla_logd_listener_<path>`, where `<path>` is the field's name (nested objects'
/// names joined with `_`, sanitised to `[a-zA-Z0-9_]`). An array's elements get a label:
/// `url` (their `url` string field), else `name`, else `index`; an object all of whose
/// values are objects is keyed by listener: label `listener` = key. A metric is a gauge
/// when its name contains `open`, `active`, `current`, `used`, `capacity`, `queue` or
/// `in_flight`, otherwise a counter. So `{"listeners":[{"url":"tcp://127.0.0.1:6514",
/// "connections_open":1,"frames":10}]}` gives
/// `flotilla_logd_listener_connections_open{url="tcp://127.0.0.1:6514"} 1` (gauge) and
/// `flotilla_logd_listener_frames{url="tcp://127.0.0.1:6514"} 10` (counter).
pub fn metrics_text(stats: &StoreStats, listeners: &Value) -> String {
    let mut e = Exposition { out: String::new() };
    let p = "flotilla_logd_";
    let up = u64::from(stats.error.is_none());
    e.single(
        &format!("{p}up"),
        "gauge",
        "1 while the store can write, 0 while it cannot (see /health)",
        up,
    );
    e.family(&format!("{p}info"), "gauge", "This logd: its node name");
    e.sample(
        &format!("{p}info"),
        &[("node".into(), stats.node_id.clone())],
        Num::Int(1),
    );
    let counters: [(&str, &str, u64); 12] = [
        (
            "records_total",
            "Records stored (after their fsync)",
            stats.records,
        ),
        (
            "indexed_total",
            "Records made searchable (records_total minus this is the indexing backlog)",
            stats.indexed,
        ),
        (
            "bytes_total",
            "Raw bytes of the records stored",
            stats.bytes,
        ),
        (
            "batches_total",
            "Batches received from the listeners",
            stats.batches,
        ),
        (
            "syncs_total",
            "Group commits (fdatasync of the write-ahead log)",
            stats.syncs,
        ),
        ("blocks_sealed_total", "Blocks written", stats.blocks_sealed),
        (
            "segments_sealed_total",
            "Segments sealed",
            stats.segments_sealed,
        ),
        (
            "segments_dropped_total",
            "Segments removed by retention",
            stats.segments_dropped,
        ),
        (
            "unparsed_total",
            "Records stored raw because they did not parse",
            stats.unparsed,
        ),
        (
            "truncated_total",
            "Records cut to the frame size limit",
            stats.truncated,
        ),
        (
            "write_errors_total",
            "Failed writes or syncs (each retried)",
            stats.write_errors,
        ),
        (
            "rejected_while_closed_total",
            "Records refused because the store was closing",
            stats.rejected_while_closed,
        ),
    ];
    for (name, help, value) in counters {
        e.single(&format!("{p}{name}"), "counter", help, value);
    }
    let gauges: [(&str, &str, Num); 10] = [
        (
            "uptime_seconds",
            "Seconds since the store opened",
            stats.uptime_secs.into(),
        ),
        (
            "sync_seconds_mean",
            "Mean duration of one group commit, in seconds",
            (stats.sync_mean_micros / 1e6).into(),
        ),
        (
            "records_per_sync",
            "Records per group commit, on average",
            stats.records_per_sync.into(),
        ),
        ("segments", "Sealed segments on disk", stats.segments.into()),
        (
            "segment_bytes",
            "Bytes of the sealed and open segment files",
            stats.segment_bytes.into(),
        ),
        (
            "stored_records",
            "Records in sealed segments",
            stats.stored_records.into(),
        ),
        (
            "recovered_records",
            "Records recovered from the write-ahead log at start",
            stats.recovered_records.into(),
        ),
        (
            "torn_tail_bytes",
            "Bytes cut from a torn write-ahead log tail at start",
            stats.torn_tail_bytes.into(),
        ),
        (
            "queue_used_bytes",
            "Bytes of records received and not yet written",
            stats.queue_used_bytes.into(),
        ),
        (
            "queue_capacity_bytes",
            "Memory budget for records received and not yet written",
            stats.queue_capacity_bytes.into(),
        ),
    ];
    for (name, help, value) in gauges {
        e.single(&format!("{p}{name}"), "gauge", help, value);
    }
    type Getter = fn(&crate::store::SourceCounters) -> Num;
    let per_source: [(&str, &str, &str, Getter); 5] = [
        (
            "source_records_total",
            "counter",
            "Records stored, per source address",
            |c| c.records.into(),
        ),
        (
            "source_bytes_total",
            "counter",
            "Raw bytes stored, per source address",
            |c| c.bytes.into(),
        ),
        (
            "source_unparsed_total",
            "counter",
            "Records stored raw, per source address",
            |c| c.unparsed.into(),
        ),
        (
            "source_truncated_total",
            "counter",
            "Records cut to the frame limit, per source address",
            |c| c.truncated.into(),
        ),
        (
            "source_last_received_seconds",
            "gauge",
            "Receive time of the last record, per source address (Unix seconds)",
            |c| (c.last_received_ns as f64 / 1e9).into(),
        ),
    ];
    for (name, kind, help, get) in per_source {
        let name = format!("{p}{name}");
        e.family(&name, kind, help);
        for (source, counters) in &stats.sources {
            e.sample(&name, &[("source".into(), source.clone())], get(counters));
        }
    }
    let mut families = Families::new();
    flatten_listeners(listeners, &mut Vec::new(), &[], &mut families);
    for (path, samples) in families {
        let name = format!("{p}listener_{path}");
        let gauge = [
            "open",
            "active",
            "current",
            "used",
            "capacity",
            "queue",
            "in_flight",
        ]
        .iter()
        .any(|w| path.contains(w));
        e.family(
            &name,
            if gauge { "gauge" } else { "counter" },
            &format!("Listener statistic {path} (from the listeners' counters)"),
        );
        for (labels, value) in samples {
            e.sample(&name, &labels, value);
        }
    }
    e.out
}

/// A sample's labels (name, value).
type Labels = Vec<(String, String)>;

/// Listener metric families: name suffix → samples.
type Families = BTreeMap<String, Vec<(Labels, Num)>>;

/// `[a-zA-Z0-9_]` only.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Adds a label, renaming it when an outer level used the name already.
fn with_label(labels: &[(String, String)], name: &str, value: String) -> Vec<(String, String)> {
    let mut out = labels.to_vec();
    let mut label = name.to_string();
    let mut n = 2;
    while out.iter().any(|(k, _)| *k == label) {
        label = format!("{name}_{n}");
        n += 1;
    }
    out.push((label, value));
    out
}

/// Collects every number in the listeners' counters (rules: [`metrics_text`]).
fn flatten_listeners(
    value: &Value,
    path: &mut Vec<String>,
    labels: &[(String, String)],
    out: &mut Families,
) {
    let name = || {
        if path.is_empty() {
            "value".to_string()
        } else {
            path.join("_")
        }
    };
    match value {
        Value::Number(n) => {
            let num = if let Some(v) = n.as_u64() {
                Num::Int(i128::from(v))
            } else if let Some(v) = n.as_i64() {
                Num::Int(i128::from(v))
            } else {
                Num::Float(n.as_f64().unwrap_or(f64::NAN))
            };
            out.entry(name()).or_default().push((labels.to_vec(), num));
        }
        Value::Bool(b) => {
            out.entry(name())
                .or_default()
                .push((labels.to_vec(), Num::Int(i128::from(*b))));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
                let labels = if let Some(url) = text("url") {
                    with_label(labels, "url", url)
                } else if let Some(n) = text("name") {
                    with_label(labels, "name", n)
                } else {
                    with_label(labels, "index", i.to_string())
                };
                flatten_listeners(item, path, &labels, out);
            }
        }
        Value::Object(map) => {
            let keyed = !map.is_empty() && map.values().all(Value::is_object);
            for (key, v) in map {
                if keyed {
                    let labels = with_label(labels, "listener", key.clone());
                    flatten_listeners(v, path, &labels, out);
                } else {
                    path.push(sanitize(key));
                    flatten_listeners(v, path, labels, out);
                    path.pop();
                }
            }
        }
        Value::String(_) | Value::Null => {}
    }
}
