//! Several logd nodes answering as one (`flotilla logd --peers URL,…`).
//!
//! Each node keeps its own data directory; senders list every node (the flotilla logger
//! picks one at random and fails over, RELP for no loss). A query, a query's statistics
//! or a tail asked of any node covers every node:
//!
//! - the node asks every peer's HTTP API, and itself through its own HTTP address, with
//!   `local=1` (answer from this node only: no request is fanned out twice, so peers
//!   listing each other cannot loop);
//! - `/api/query` merges the peers' oldest-first JSON Lines by received-at time (a k-way
//!   merge; with a limit each node sends its newest N distinct records, duplicates it
//!   holds itself not counted, and the newest N distinct overall are kept, so a page of N
//!   is short only when no older match is left anywhere),
//!   `/api/query/stats` sums, `/api/tail` interleaves the live events as they arrive;
//! - every node asked is reported: the header [`NODES_HEADER`] (and, on a tail, the event
//!   `nodes`, sent first and again whenever a peer drops or comes back) holds
//!   `[{"node":"id","url":"…","ok":true,"matched":n},{"url":"…","ok":false,"error":"…"}]`.
//!   A node that is down costs at most [`CONNECT_TIMEOUT`], one that accepts connections
//!   but does not answer at most [`ANSWER_TIMEOUT`] (a tail shows the others meanwhile:
//!   its first `nodes` event comes at most 4 s after it started); either is reported,
//!   never silently missing;
//! - duplicates are shown once (the rule: [`dup_key`]).
//!
//! A peer URL that is this node itself (listing the same `--peers` on every node is the
//! simple way) is recognised by its address or by the node id its `/health` reports, and
//! asked only once.
//!
//! # Duplicates
//!
//! RELP resends what was not acknowledged when a connection broke, to whichever collector
//! the sender fails over to; a message stored by a node that died before acknowledging
//! it is then stored twice (on two nodes, or twice on one node after a reconnect). The
//! flotilla logger puts `[meta sequenceId="N"]` (RFC 5424 §7.3.1) in every message and a
//! resend is byte-identical, so: **two records are duplicates when both carry a `meta`
//! element with `sequenceId` in their structured data and their raw frames are
//! byte-equal** (compared by their 128-bit xxh3 hash, [`dup_key`], the one place the
//! rule is written; a message text that merely quotes `[meta sequenceId="N"]` does not
//! count). Records without a sequence id are never merged: two
//! equal lines from a sender that does not number its messages may well be two events.
//! The first copy in time order is kept. Duplicates are recognised within the last
//! [`DEDUP_WINDOW`] numbered records of a streamed answer or a tail (resends follow the
//! original closely); a limited answer is de-duplicated whole (its N records are N
//! distinct ones). Statistics
//! (`x-flotilla-matched`, `/api/query/stats`) count stored records, duplicates included.
//!
//! Between nodes, a `local=1` answer carries each numbered record's key as a last JSON
//! field `"dup":"<32 hex digits>"`; the merging node removes it, so merged answers have
//! exactly the fields of a single node's.
//!
//! # Tail cursors
//!
//! A merged tail's events carry as `id:` a cursor naming the last record id seen from
//! each node, `NODE=ID,NODE=ID`; `after=` and `Last-Event-ID` take it back (each node
//! resumes after its own entry; a node without an entry sends live records only). The
//! cursor passes every record received, duplicates left out included, so a resumed tail
//! does not show them again. When a peer's tail drops, it is reconnected with backoff and
//! resumed after the last record seen from it with a backfill of at most
//! [`crate::http::MAX_LIMIT`] records: what it stored meanwhile comes, the newest
//! `MAX_LIMIT` of it when it is more, and then the peer sends an event `lagged`
//! (`{"backfill_capped": n, "node": "…"}`, passed on to the client) saying that older
//! records were skipped (search for them).
//!
//! # Tail backfill
//!
//! `backfill=N` on a merged tail means the newest N matches over every node. Each node
//! is asked for its newest N; its tail ends that backfill with an event `backfilled`.
//! The merging node holds every node's backfill (and the live records that arrive
//! meanwhile) until each node has sent that event or is down, or the start deadline
//! passes; then it orders the backfills by received-at, shows the newest N (the older
//! ones only pass the cursor), then the live records held, then the rest as they come.

// An I/O shell (requests to peers): it times them out.
#![allow(clippy::disallowed_methods)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::error::Error;
use crate::query::QueryStats;
use crate::sse::{SseEvent, SseParser};

/// Longest wait for a TCP connection to a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for a peer's answer to start (its response head).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a limited query or a JSON request to a peer may take in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest silence on a peer's tail before it counts as dropped (tails send a keep-alive
/// comment every 15 s).
pub const TAIL_SILENCE: Duration = Duration::from_secs(45);

/// Numbered records remembered to recognise duplicates in a stream or tail.
pub const DEDUP_WINDOW: usize = 100_000;

/// The response header that reports the nodes asked.
pub const NODES_HEADER: &str = "x-flotilla-nodes";

/// First wait before reconnecting a peer's tail (doubled after each failure).
const BACKOFF_MIN: Duration = Duration::from_millis(200);

/// Longest wait before reconnecting a peer's tail.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Bytes of merged JSON lines sent at once.
const STREAM_CHUNK: usize = 64 * 1024;

/// Longest time merged lines wait in the buffer.
const STREAM_FLUSH: Duration = Duration::from_millis(200);

/// Lines a peer's reader hands to the merge at once.
const LINE_BATCH: usize = 512;

/// Longest wait, from its start, before a merged tail sends its first `nodes` event (and
/// the records held until then) although some source has not answered yet.
const START_WAIT: Duration = Duration::from_secs(4);

// ---------------------------------------------------------------------------------------
// The duplicate rule.

/// The duplicate key of a raw frame: its xxh3-128 hash when it carries a `meta` element
/// with a `sequenceId` parameter, else `None` (never a duplicate of anything). Two
/// records are duplicates when both have a key and the keys are equal.
pub fn dup_key(raw: &[u8]) -> Option<u128> {
    carries_sequence_id(raw).then(|| xxhash_rust::xxh3::xxh3_128(raw))
}

/// Whether a frame's structured data has a `meta` element with a `sequenceId` parameter.
///
/// A cheap scan, no full parse (it runs for every record): the structured data starts
/// after the header's sixth space-separated field (`<PRI>VERSION TIMESTAMP HOSTNAME
/// APP-NAME PROCID MSGID`, RFC 5424 §6) and is a run of `[ID PARAM="VALUE" …]` elements
/// (`\"`, `\\` and `\]` escaped in values); the message after it is never looked at, so
/// a message that merely quotes `[meta sequenceId="…"]` does not count.
fn carries_sequence_id(raw: &[u8]) -> bool {
    // Most records have no `[meta ` anywhere: one vectorised search settles those (the
    // watcher asks this of every record; six header scans cost it several times more).
    static META: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"[meta "));
    if META.find(raw).is_none() {
        return false;
    }
    // Past the six header fields.
    let mut at = 0;
    for _ in 0..6 {
        match memchr::memchr(b' ', &raw[at..]) {
            Some(i) => at += i + 1,
            None => return false,
        }
    }
    // Element by element: `at` is where the next one would start.
    while raw.get(at) == Some(&b'[') {
        let Some(end) = element_end(raw, at) else {
            return false;
        };
        if raw[at..end].starts_with(b"[meta ") && has_sequence_id(&raw[at + 6..end]) {
            return true;
        }
        at = end + 1;
    }
    false
}

/// The index of the `]` closing the element that starts at `raw[start]` (`[`): the first
/// one outside a quoted value.
fn element_end(raw: &[u8], start: usize) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in raw.iter().enumerate().skip(start + 1) {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b']' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Whether an element's parameters (`NAME="VALUE" …`, after the element's id) include
/// `sequenceId`.
fn has_sequence_id(params: &[u8]) -> bool {
    let mut rest = params;
    loop {
        while rest.first() == Some(&b' ') {
            rest = &rest[1..];
        }
        let Some(eq) = memchr::memchr(b'=', rest) else {
            return false;
        };
        if &rest[..eq] == b"sequenceId" {
            return rest.get(eq + 1) == Some(&b'"');
        }
        // Past this parameter's quoted value.
        let mut i = eq + 2;
        let mut escaped = false;
        while i < rest.len() {
            match rest[i] {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => break,
                _ => {}
            }
            i += 1;
        }
        if i >= rest.len() {
            return false;
        }
        rest = &rest[i + 1..];
    }
}

/// Remembers the last `capacity` keys seen.
#[derive(Debug)]
pub struct Dedup {
    seen: HashSet<u128>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl Dedup {
    /// A window of `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Dedup {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether a record with this key is to be shown: `true` for the first copy (and for
    /// any record without a key), `false` for a duplicate of one still remembered.
    pub fn first(&mut self, key: Option<u128>) -> bool {
        let Some(key) = key else { return true };
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

/// Bytes of the key field a `local=1` answer appends: `,"dup":"<32 hex>"`.
const DUP_FIELD_LEN: usize = 8 + 32 + 1;

/// Appends a JSON line's key field: `line` is one JSON object without its newline.
pub(crate) fn append_dup(line: &mut Vec<u8>, key: u128) {
    use std::io::Write as _;
    if line.last() == Some(&b'}') {
        line.pop();
        let _ = write!(line, ",\"dup\":\"{key:032x}\"}}");
    }
}

/// Splits a JSON line (no newline) into the line without its key field and the key.
pub(crate) fn split_dup(line: &[u8]) -> (&[u8], Option<u128>) {
    let n = line.len();
    if n < DUP_FIELD_LEN + 2 || line[n - 1] != b'}' {
        return (line, None);
    }
    let field = &line[n - 1 - DUP_FIELD_LEN..n - 1];
    if !field.starts_with(b",\"dup\":\"") || field[DUP_FIELD_LEN - 1] != b'"' {
        return (line, None);
    }
    let hex = &field[8..40];
    match std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u128::from_str_radix(h, 16).ok())
    {
        Some(key) => (&line[..n - 1 - DUP_FIELD_LEN], Some(key)),
        None => (line, None),
    }
}

/// Writes a line without its key field, with its closing brace and a newline.
fn push_public_line(out: &mut Vec<u8>, line: &[u8]) -> Option<u128> {
    let (body, key) = split_dup(line);
    out.extend_from_slice(body);
    if key.is_some() {
        out.push(b'}');
    }
    out.push(b'\n');
    key
}

/// The received-at time of a record's JSON line (its `received_at_ns` field).
fn received_at_ns(line: &[u8]) -> i64 {
    const FIELD: &[u8] = b"\"received_at_ns\":";
    let Some(at) = memchr::memmem::find(line, FIELD) else {
        return i64::MAX;
    };
    let rest = &line[at + FIELD.len()..];
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'-'))
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------
// Tail cursors.

/// Parses an `after` value: a record id (`Ok(None)` cursor) or `NODE=ID,…`.
pub(crate) fn parse_cursor(value: &str) -> Option<HashMap<String, u64>> {
    let mut map = HashMap::new();
    for part in value.split(',').filter(|p| !p.is_empty()) {
        let (node, id) = part.rsplit_once('=')?;
        map.insert(node.to_string(), id.trim().parse().ok()?);
    }
    (!map.is_empty()).then_some(map)
}

/// Formats a cursor, nodes in name order.
fn format_cursor(map: &HashMap<String, u64>) -> String {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort();
    entries
        .iter()
        .map(|(node, id)| format!("{node}={id}"))
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------------------
// The peers.

/// One node's answer to a request fanned out by [`Peers::get_json_all`].
#[derive(Debug, Clone)]
pub struct PeerAnswer {
    /// The peer's base URL (`http://HOST:PORT`).
    pub url: String,
    /// Its node id, when known (from its `/health`).
    pub node: Option<String>,
    /// Its JSON answer, or why there is none (unreachable, timed out, an error status).
    pub result: Result<Value, String>,
}

/// One node's line in the [`NODES_HEADER`] report.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct NodeReport {
    /// Its node id, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<String>,
    /// Its HTTP address.
    pub url: String,
    /// Whether it answered.
    pub ok: bool,
    /// Records it matched (a query with a limit: what it sent).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub matched: Option<u64>,
    /// Why it did not answer.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// The other nodes of a multi-node logd, and how to ask them.
#[derive(Debug)]
pub struct Peers {
    own_node: String,
    /// This node's own HTTP API (asked like a peer, with `local=1`).
    own_url: Option<String>,
    /// Every peer URL given (this node's own may be among them).
    urls: Vec<String>,
    client: reqwest::Client,
    /// Node ids learned from `/health`, by URL.
    nodes: Mutex<HashMap<String, String>>,
}

/// A source asked in a fan-out: a URL, and whether it is this node.
#[derive(Debug, Clone)]
struct Source {
    url: String,
    node: Option<String>,
}

/// Normalises a peer URL: `http://HOST:PORT` (a bare `HOST:PORT` gets `http://`).
fn base_url(url: &str) -> Result<String, Error> {
    let url = url.trim().trim_end_matches('/');
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Error::Config(format!(
            "peer {url:?}: expected http://HOST:PORT (a peer's HTTP API)"
        ))
    })?;
    if rest.is_empty() || rest.contains('/') {
        return Err(Error::Config(format!(
            "peer {url:?}: expected http://HOST:PORT (no path)"
        )));
    }
    Ok(url)
}

impl Peers {
    /// The peers of node `own_node` whose HTTP API listens on `own_http`. `urls` are the
    /// nodes' HTTP addresses (`http://HOST:PORT`; this node's own may be among them).
    pub fn new(
        urls: &[String],
        own_node: impl Into<String>,
        own_http: Option<SocketAddr>,
    ) -> Result<Peers, Error> {
        let own_url = own_http.map(|a| {
            let ip = if a.ip().is_unspecified() {
                match a {
                    SocketAddr::V4(_) => std::net::IpAddr::from([127, 0, 0, 1]),
                    SocketAddr::V6(_) => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                }
            } else {
                a.ip()
            };
            format!("http://{}", SocketAddr::new(ip, a.port()))
        });
        let mut list = Vec::new();
        for u in urls {
            let u = base_url(u)?;
            let is_own = own_http.is_some_and(|own| {
                u.strip_prefix("http://")
                    .and_then(|hp| hp.parse::<SocketAddr>().ok())
                    .is_some_and(|a| {
                        a.port() == own.port() && (a.ip() == own.ip() || own.ip().is_unspecified())
                    })
            }) || own_url.as_deref() == Some(u.as_str());
            if !is_own && !list.contains(&u) {
                list.push(u);
            }
        }
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|e| Error::Config(format!("peer HTTP client: {e}")))?;
        Ok(Peers {
            own_node: own_node.into(),
            own_url,
            urls: list,
            client,
            nodes: Mutex::new(HashMap::new()),
        })
    }

    /// This node's id.
    pub fn own_node(&self) -> &str {
        &self.own_node
    }

    /// The peer URLs (without this node's own address, when it was recognised by it).
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    fn known_node(&self, url: &str) -> Option<String> {
        self.nodes.lock().ok()?.get(url).cloned()
    }

    /// The node id behind `url` (asked once, then remembered).
    async fn node_of(&self, url: &str) -> Result<String, String> {
        if let Some(n) = self.known_node(url) {
            return Ok(n);
        }
        let answer = self
            .client
            .get(format!("{url}/health"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(describe)?;
        let value: Value = answer.json().await.map_err(describe)?;
        let node = value
            .get("node")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{url}/health names no node"))?
            .to_string();
        if let Ok(mut nodes) = self.nodes.lock() {
            nodes.insert(url.to_string(), node.clone());
        }
        Ok(node)
    }

    /// GETs `path_and_query` (e.g. `/api/fleet?local=1`) from every peer at once (not
    /// from this node itself) and returns each one's JSON answer or why there is none, in
    /// the order the peers were given. A peer that is down costs at most
    /// [`CONNECT_TIMEOUT`]; a whole request at most [`REQUEST_TIMEOUT`].
    pub async fn get_json_all(&self, path_and_query: &str) -> Vec<PeerAnswer> {
        let asks = self.urls.iter().map(|url| async move {
            match self.node_of(url).await {
                Ok(node) if node == self.own_node => None,
                Ok(node) => Some(PeerAnswer {
                    url: url.clone(),
                    node: Some(node),
                    result: self.get_json(url, path_and_query).await,
                }),
                Err(e) => Some(PeerAnswer {
                    url: url.clone(),
                    node: None,
                    result: Err(e),
                }),
            }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn get_json(&self, url: &str, path_and_query: &str) -> Result<Value, String> {
        let response = self
            .client
            .get(format!("{url}{path_and_query}"))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        let body = response.bytes().await.map_err(describe)?;
        if !status.is_success() {
            return Err(error_message(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| format!("answer is not JSON: {e}"))
    }

    /// The sources of a fan-out: this node (by its own address) and every peer that is
    /// not this node. Peers not yet known are asked for their node id; one that does not
    /// answer is returned with the error.
    async fn sources(&self) -> Vec<Result<Source, (String, String)>> {
        let mut out = Vec::new();
        if let Some(own) = &self.own_url {
            out.push(Ok(Source {
                url: own.clone(),
                node: Some(self.own_node.clone()),
            }));
        }
        let asks = self.urls.iter().map(|url| async move {
            match self.node_of(url).await {
                Ok(node) if node == self.own_node => None,
                Ok(node) => Some(Ok(Source {
                    url: url.clone(),
                    node: Some(node),
                })),
                Err(e) => Some(Err((url.clone(), e))),
            }
        });
        out.extend(
            futures_util::future::join_all(asks)
                .await
                .into_iter()
                .flatten(),
        );
        out
    }
}

/// A request error in words ("connection refused", "timed out", …).
fn describe(e: reqwest::Error) -> String {
    use std::error::Error as _;
    let mut cause: Option<&dyn std::error::Error> = e.source();
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text = format!("{text}: {s}");
        }
        cause = c.source();
    }
    text
}

/// The error of a non-2xx answer: its `{"error": …}` or its body.
fn error_message(status: reqwest::StatusCode, body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    format!("answered {status}: {message}")
}

/// The raw URL query without the keys that are set per fan-out, plus `local=1` and `extra`.
fn peer_query(raw: Option<&str>, drop: &[&str], extra: &[(&str, String)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if k != "local" && !drop.contains(&k.as_ref()) {
            out.append_pair(&k, &v);
        }
    }
    out.append_pair("local", "1");
    for (k, v) in extra {
        out.append_pair(k, v);
    }
    out.finish()
}

fn nodes_header(reports: &[NodeReport]) -> HeaderValue {
    let text = serde_json::to_string(reports).unwrap_or_else(|_| "[]".into());
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("[]"))
}

fn down(url: String, node: Option<String>, error: String) -> NodeReport {
    NodeReport {
        node,
        url,
        ok: false,
        matched: None,
        error: Some(error),
    }
}

// ---------------------------------------------------------------------------------------
// Queries.

/// The statistics headers summed.
fn add_stats(sum: &mut QueryStats, headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let get = |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.parse().ok() };
    sum.segments_total += get("x-flotilla-segments-total").unwrap_or(0);
    sum.segments_in_range += get("x-flotilla-segments-in-range").unwrap_or(0);
    sum.blocks_in_range += get("x-flotilla-blocks-in-range").unwrap_or(0);
    sum.blocks_opened += get("x-flotilla-blocks-opened").unwrap_or(0);
    sum.records_scanned += get("x-flotilla-records-scanned").unwrap_or(0);
    let matched = get("x-flotilla-matched");
    sum.matched += matched.unwrap_or(0);
    sum.corrupt_blocks += get("x-flotilla-corrupt-blocks").unwrap_or(0);
    matched
}

/// Sends one request to every source; returns the reports of the sources that could not
/// be asked and, for the others, their response (or the error).
async fn fan_out(
    peers: &Peers,
    path: &str,
    query: &str,
    timeout: Option<Duration>,
) -> Vec<(Source, Result<reqwest::Response, String>)> {
    let sources = peers.sources().await;
    let asks = sources.into_iter().map(|s| async move {
        let source = match s {
            Ok(source) => source,
            Err((url, e)) => {
                return (Source { url, node: None }, Err(e));
            }
        };
        let mut request = peers.client.get(format!("{}{path}?{query}", source.url));
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        let answer = match tokio::time::timeout(ANSWER_TIMEOUT, request.send()).await {
            Err(_) => Err("no answer in time".to_string()),
            Ok(Err(e)) => Err(describe(e)),
            Ok(Ok(r)) if r.status().is_success() => Ok(r),
            Ok(Ok(r)) => {
                let status = r.status();
                let body = r.bytes().await.unwrap_or_default();
                Err(error_message(status, &body))
            }
        };
        (source, answer)
    });
    futures_util::future::join_all(asks).await
}

/// `/api/query` over every node (the request named no `local`).
pub(crate) async fn query(
    peers: Arc<Peers>,
    raw: Option<String>,
    limit: usize,
    shutdown: Option<watch::Receiver<bool>>,
) -> Response {
    let query = peer_query(raw.as_deref(), &[], &[]);
    if limit == 0 {
        return stream_query(&peers, &query, shutdown).await;
    }
    let answers = fan_out(&peers, "/api/query", &query, Some(REQUEST_TIMEOUT)).await;
    let mut reports = Vec::new();
    let mut stats = QueryStats::default();
    // (received-at, node order, line order, line)
    let mut lines: Vec<(i64, usize, usize, Bytes)> = Vec::new();
    for (i, (source, answer)) in answers.into_iter().enumerate() {
        let result = match answer {
            Ok(r) => {
                let matched = add_stats(&mut stats, r.headers());
                r.bytes().await.map(|b| (b, matched)).map_err(describe)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((body, matched)) => {
                let mut n = 0u64;
                for (j, line) in body
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .enumerate()
                {
                    lines.push((received_at_ns(line), i, j, body.slice_ref(line)));
                    n += 1;
                }
                reports.push(NodeReport {
                    node: source.node,
                    url: source.url,
                    ok: true,
                    matched: Some(matched.unwrap_or(n)),
                    error: None,
                });
            }
            Err(e) => reports.push(down(source.url, source.node, e)),
        }
    }
    lines.sort_by_key(|(t, i, j, _)| (*t, *i, *j));
    let mut dedup = Dedup::new(usize::MAX);
    let mut kept: Vec<Bytes> = lines
        .into_iter()
        .filter(|(_, _, _, line)| dedup.first(split_dup(line).1))
        .map(|(_, _, _, line)| line)
        .collect();
    if kept.len() > limit {
        kept.drain(..kept.len() - limit);
    }
    let mut body = Vec::with_capacity(kept.iter().map(|l| l.len() + 1).sum());
    for line in &kept {
        push_public_line(&mut body, line);
    }
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    for (name, value) in [
        ("x-flotilla-segments-total", stats.segments_total),
        ("x-flotilla-segments-in-range", stats.segments_in_range),
        ("x-flotilla-blocks-in-range", stats.blocks_in_range),
        ("x-flotilla-blocks-opened", stats.blocks_opened),
        ("x-flotilla-records-scanned", stats.records_scanned),
        ("x-flotilla-matched", stats.matched),
        ("x-flotilla-corrupt-blocks", stats.corrupt_blocks),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    headers.insert(NODES_HEADER, nodes_header(&reports));
    response
}

/// Lines of one node's streamed answer, in batches.
type LineBatch = Result<Vec<(i64, Bytes)>, String>;

/// Reads a streamed answer's lines into batches for the merge.
async fn read_lines(response: reqwest::Response, tx: mpsc::Sender<LineBatch>) {
    let mut body = response.bytes_stream();
    let mut partial: Vec<u8> = Vec::new();
    let mut batch = Vec::with_capacity(LINE_BATCH);
    loop {
        let chunk = tokio::select! {
            chunk = body.next() => chunk,
            () = tx.closed() => return,
        };
        match chunk {
            None => break,
            Some(Err(e)) => {
                let _ = tx.send(Err(describe(e))).await;
                return;
            }
            Some(Ok(bytes)) => {
                let mut rest: Bytes = if partial.is_empty() {
                    bytes
                } else {
                    partial.extend_from_slice(&bytes);
                    Bytes::from(std::mem::take(&mut partial))
                };
                while let Some(nl) = memchr::memchr(b'\n', &rest) {
                    let line = rest.slice(..nl);
                    rest = rest.slice(nl + 1..);
                    if line.is_empty() {
                        continue;
                    }
                    batch.push((received_at_ns(&line), line));
                    if batch.len() >= LINE_BATCH
                        && tx
                            .send(Ok(std::mem::replace(
                                &mut batch,
                                Vec::with_capacity(LINE_BATCH),
                            )))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                partial.extend_from_slice(&rest);
            }
        }
    }
    if !partial.is_empty() {
        batch.push((received_at_ns(&partial), Bytes::from(partial)));
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch)).await;
    }
}

/// `limit=0` over every node: a k-way merge of the nodes' oldest-first streams.
async fn stream_query(
    peers: &Peers,
    query: &str,
    shutdown: Option<watch::Receiver<bool>>,
) -> Response {
    let answers = fan_out(peers, "/api/query", query, None).await;
    let mut reports = Vec::new();
    let mut inputs = Vec::new();
    for (source, answer) in answers {
        match answer {
            Ok(r) => {
                let (tx, rx) = mpsc::channel::<LineBatch>(4);
                tokio::spawn(read_lines(r, tx));
                inputs.push(rx);
                reports.push(NodeReport {
                    node: source.node,
                    url: source.url,
                    ok: true,
                    matched: None,
                    error: None,
                });
            }
            Err(e) => reports.push(down(source.url, source.node, e)),
        }
    }
    let (out_tx, out_rx) = mpsc::channel::<Result<Bytes, String>>(8);
    tokio::spawn(merge(inputs, out_tx));
    let mut response = Response::new(crate::http::streamed_body(out_rx, shutdown));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(NODES_HEADER, nodes_header(&reports));
    response
}

/// Merges oldest-first line streams by received-at time, drops duplicates, and sends
/// chunks of public lines. A node's stream failing midway cuts the answer off.
async fn merge(
    mut inputs: Vec<mpsc::Receiver<LineBatch>>,
    out: mpsc::Sender<Result<Bytes, String>>,
) {
    let mut heads: Vec<VecDeque<(i64, Bytes)>> = inputs.iter().map(|_| VecDeque::new()).collect();
    let mut done = vec![false; inputs.len()];
    let mut dedup = Dedup::new(DEDUP_WINDOW);
    let mut buf: Vec<u8> = Vec::with_capacity(STREAM_CHUNK + 4096);
    let mut last_flush = Instant::now();
    loop {
        // Every unfinished input needs a line at hand before the oldest can be chosen.
        for i in 0..inputs.len() {
            while heads[i].is_empty() && !done[i] {
                if !buf.is_empty() && last_flush.elapsed() >= STREAM_FLUSH {
                    last_flush = Instant::now();
                    if out
                        .send(Ok(Bytes::from(std::mem::take(&mut buf))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                match inputs[i].recv().await {
                    Some(Ok(batch)) => heads[i].extend(batch),
                    Some(Err(e)) => {
                        let _ = out
                            .send(Err(format!("a node's answer broke off: {e}")))
                            .await;
                        return;
                    }
                    None => done[i] = true,
                }
            }
        }
        let mut best: Option<usize> = None;
        for (i, h) in heads.iter().enumerate() {
            if let Some((t, _)) = h.front()
                && best.is_none_or(|b| *t < heads[b].front().map_or(i64::MAX, |x| x.0))
            {
                best = Some(i);
            }
        }
        let Some(i) = best else { break };
        if let Some((_, line)) = heads[i].pop_front()
            && dedup.first(split_dup(&line).1)
        {
            push_public_line(&mut buf, &line);
        }
        if buf.len() >= STREAM_CHUNK {
            last_flush = Instant::now();
            if out
                .send(Ok(Bytes::from(std::mem::take(&mut buf))))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    if !buf.is_empty() {
        let _ = out.send(Ok(Bytes::from(buf))).await;
    }
}

/// `/api/query/stats` over every node: the statistics and counts summed (duplicates
/// counted), with the nodes asked in [`NODES_HEADER`] and under `"nodes"`.
pub(crate) async fn query_stats(peers: Arc<Peers>, raw: Option<String>) -> Response {
    let query = peer_query(raw.as_deref(), &[], &[]);
    let answers = fan_out(&peers, "/api/query/stats", &query, Some(REQUEST_TIMEOUT)).await;
    let mut reports = Vec::new();
    let mut sum: HashMap<String, u64> = HashMap::new();
    let mut matched = 0u64;
    for (source, answer) in answers {
        let value = match answer {
            Ok(r) => r.json::<Value>().await.map_err(describe),
            Err(e) => Err(e),
        };
        match value {
            Ok(v) => {
                let m = v.get("matched").and_then(Value::as_u64).unwrap_or(0);
                matched += m;
                if let Some(Value::Object(stats)) = v.get("stats") {
                    for (k, n) in stats {
                        *sum.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
                    }
                }
                reports.push(NodeReport {
                    node: source.node,
                    url: source.url,
                    ok: true,
                    matched: Some(m),
                    error: None,
                });
            }
            Err(e) => reports.push(down(source.url, source.node, e)),
        }
    }
    let stats: serde_json::Map<String, Value> =
        sum.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
    let mut response =
        axum::Json(json!({ "stats": stats, "matched": matched, "nodes": reports })).into_response();
    response
        .headers_mut()
        .insert(NODES_HEADER, nodes_header(&reports));
    response
}

// ---------------------------------------------------------------------------------------
// Tails.

/// What a peer's tail task reports.
enum TailItem {
    /// The source is connected (again).
    Up(usize, Option<String>),
    /// The source dropped or could not be reached.
    Down(usize, String),
    /// A record event's data (a JSON line, with its key field), and whether it is part of
    /// its source's backfill.
    Record(String, bool),
    /// The source's backfill is complete: what follows is live.
    Backfilled(usize),
    /// A peer's tail fell behind.
    Lagged(String),
}

/// Reads events from an SSE body; `None` when it ends.
struct SseReader {
    body: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: Vec<u8>,
    parser: SseParser,
}

impl SseReader {
    async fn next(&mut self) -> Result<Option<SseEvent>, String> {
        loop {
            while let Some(nl) = memchr::memchr(b'\n', &self.buf) {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                if let Some(event) = self.parser.line(&String::from_utf8_lossy(&line)) {
                    return Ok(Some(event));
                }
            }
            match tokio::time::timeout(TAIL_SILENCE, self.body.next()).await {
                Err(_) => return Err("silent for too long".into()),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(describe(e)),
                Ok(Some(Ok(bytes))) => self.buf.extend_from_slice(&bytes),
            }
        }
    }
}

/// The id and node of a record's JSON line.
#[derive(serde::Deserialize)]
struct RecordHead {
    id: u64,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    received_at_ns: i64,
}

/// Follows one source's tail, reconnecting with backoff, until the merged tail is gone.
#[allow(clippy::too_many_arguments)]
async fn follow_source(
    peers: Arc<Peers>,
    index: usize,
    url: String,
    node: Option<String>,
    filters: String,
    backfill: usize,
    mut after: Option<String>,
    tx: mpsc::Sender<TailItem>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut first = true;
    let mut node = node;
    // Last record id seen from this source, once a record came.
    let mut last: Option<u64> = None;
    // Records are backfill until the first connection's `backfilled` event.
    let mut in_backfill = true;
    loop {
        if tx.is_closed() {
            return;
        }
        let mut extra = Vec::new();
        match (last, &after) {
            (Some(id), _) => {
                extra.push(("after", id.to_string()));
                extra.push(("backfill", crate::http::MAX_LIMIT.to_string()));
            }
            (None, Some(cursor)) => {
                extra.push(("after", cursor.clone()));
                extra.push(("backfill", crate::http::MAX_LIMIT.to_string()));
            }
            (None, None) if first && backfill > 0 => {
                extra.push(("backfill", backfill.to_string()));
            }
            (None, None) => {}
        }
        let query = peer_query(Some(&filters), &[], &extra);
        // A peer that accepts the connection but never answers costs ANSWER_TIMEOUT, then
        // counts as down (and is tried again), like any other failure.
        let request = peers.client.get(format!("{url}/api/tail?{query}")).send();
        let sent = tokio::select! {
            r = tokio::time::timeout(ANSWER_TIMEOUT, request) => r,
            () = tx.closed() => return,
        };
        let why = match sent {
            Err(_) => "no answer in time".to_string(),
            Ok(Ok(r)) if r.status().is_success() => {
                if node.is_none() {
                    node = peers.known_node(&url);
                }
                if tx.send(TailItem::Up(index, node.clone())).await.is_err() {
                    return;
                }
                backoff = BACKOFF_MIN;
                let mut reader = SseReader {
                    body: Box::pin(r.bytes_stream()),
                    buf: Vec::new(),
                    parser: SseParser::new(),
                };
                loop {
                    let event = tokio::select! {
                        e = reader.next() => e,
                        () = tx.closed() => return,
                    };
                    match event {
                        Ok(Some(e)) if e.event == "record" => {
                            if let Ok(head) = serde_json::from_str::<RecordHead>(&e.data) {
                                last = Some(head.id);
                                after = None;
                                if node.is_none() {
                                    node = head.node;
                                }
                            }
                            if tx
                                .send(TailItem::Record(e.data, in_backfill))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Ok(Some(e)) if e.event == crate::http::BACKFILLED_EVENT => {
                            if in_backfill {
                                in_backfill = false;
                                if tx.send(TailItem::Backfilled(index)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(Some(e)) if e.event == "lagged" => {
                            if tx.send(TailItem::Lagged(e.data)).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break "the tail ended".to_string(),
                        Err(e) => break e,
                    }
                }
            }
            Ok(Ok(r)) => {
                let status = r.status();
                let body = r.bytes().await.unwrap_or_default();
                error_message(status, &body)
            }
            Ok(Err(e)) => describe(e),
        };
        first = false;
        // A reconnection resumes after the last record: nothing more is backfill.
        in_backfill = false;
        if tx.send(TailItem::Down(index, why)).await.is_err() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = tx.closed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The merged tail's state between events.
struct MergedTail {
    rx: mpsc::Receiver<TailItem>,
    reports: Vec<NodeReport>,
    /// Sources that reported their first status.
    heard: Vec<bool>,
    started: bool,
    /// When the first `nodes` event is sent even if some source was not heard from yet
    /// (one deadline for the whole start: records arriving meanwhile do not push it back).
    start_by: tokio::time::Instant,
    /// Records received before the first `nodes` event.
    held: VecDeque<Event>,
    /// Sources whose backfill is complete (or that are down).
    backfilled: Vec<bool>,
    /// The sources' backfill records, until every backfill is complete: then they are
    /// merged by received-at and the newest `keep` go first.
    backfill: Vec<(RecordHead, String, Option<u128>)>,
    /// Live records that came before every backfill was complete (shown after them).
    live_pending: Vec<(RecordHead, String, Option<u128>)>,
    /// How many backfill records to show (`backfill=N` without a cursor); all of them
    /// when resuming after a cursor.
    keep: usize,
    backfill_done: bool,
    dedup: Dedup,
    cursor: HashMap<String, u64>,
    shutdown: Option<watch::Receiver<bool>>,
}

fn nodes_event(reports: &[NodeReport]) -> Event {
    Event::default()
        .event("nodes")
        .data(serde_json::to_string(reports).unwrap_or_else(|_| "[]".into()))
}

/// `/api/tail` over every node (the request named no `local`). `filters` is the raw
/// query; `cursor` the `after`/`Last-Event-ID` value, if any.
pub(crate) async fn tail(
    peers: Arc<Peers>,
    raw: Option<String>,
    backfill: usize,
    cursor: Option<String>,
    shutdown: Option<watch::Receiver<bool>>,
) -> Response {
    let filters = {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
            if !matches!(k.as_ref(), "after" | "backfill" | "local") {
                out.append_pair(&k, &v);
            }
        }
        out.finish()
    };
    let own = peers.own_node().to_string();
    // A plain record id names a record of this node.
    let cursor = cursor.map(|c| {
        if c.trim().parse::<u64>().is_ok() {
            format!("{own}={}", c.trim())
        } else {
            c
        }
    });
    let mut cursor_map = cursor.as_deref().and_then(parse_cursor).unwrap_or_default();
    cursor_map.retain(|_, id| *id > 0);
    let sources = peers.sources().await;
    let (tx, rx) = mpsc::channel::<TailItem>(1024);
    let mut reports = Vec::new();
    let mut heard = Vec::new();
    let mut backfilled = Vec::new();
    let keep = if cursor.is_some() {
        usize::MAX
    } else {
        backfill
    };
    for (index, s) in sources.into_iter().enumerate() {
        let (url, node) = match s {
            Ok(source) => (source.url, source.node),
            Err((url, e)) => {
                // Unknown node: its tail is tried (and reported) like any other.
                tracing::debug!(peer = %url, error = %e, "peer not reached");
                (url, None)
            }
        };
        reports.push(NodeReport {
            node: node.clone(),
            url: url.clone(),
            ok: false,
            matched: None,
            error: Some("connecting".into()),
        });
        heard.push(false);
        backfilled.push(false);
        tokio::spawn(follow_source(
            peers.clone(),
            index,
            url,
            node,
            filters.clone(),
            backfill,
            cursor.clone(),
            tx.clone(),
        ));
    }
    drop(tx);
    let state = MergedTail {
        rx,
        reports,
        heard,
        started: false,
        start_by: tokio::time::Instant::now() + START_WAIT,
        held: VecDeque::new(),
        backfilled,
        backfill: Vec::new(),
        live_pending: Vec::new(),
        keep,
        backfill_done: false,
        dedup: Dedup::new(DEDUP_WINDOW),
        cursor: cursor_map,
        shutdown,
    };
    Sse::new(merged_stream(state))
        .keep_alive(KeepAlive::new().interval(crate::http::TAIL_KEEP_ALIVE))
        .into_response()
}

fn merged_stream(
    state: MergedTail,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let opening = stream::once(async { Ok(Event::default().comment("flotilla logd tail")) });
    let rest = stream::unfold(state, |mut t| async move {
        loop {
            if t.started
                && let Some(event) = t.held.pop_front()
            {
                return Some((Ok(event), t));
            }
            let item = tokio::select! {
                () = crate::http::wait_shutdown(&mut t.shutdown) => return None,
                () = tokio::time::sleep_until(t.start_by), if !t.started => {
                    // Some source is slow to answer: report what is known.
                    finish_backfill(&mut t);
                    t.started = true;
                    return Some((Ok(nodes_event(&t.reports)), t));
                }
                item = t.rx.recv() => item?,
            };
            match item {
                TailItem::Up(i, node) => {
                    let r = &mut t.reports[i];
                    let changed = !r.ok;
                    r.ok = true;
                    r.error = None;
                    if node.is_some() {
                        r.node = node;
                    }
                    t.heard[i] = true;
                    if let Some(event) = status_change(&mut t, changed) {
                        return Some((Ok(event), t));
                    }
                }
                TailItem::Down(i, why) => {
                    let r = &mut t.reports[i];
                    let changed = r.ok || !t.heard[i];
                    r.ok = false;
                    r.error = Some(why);
                    t.heard[i] = true;
                    t.backfilled[i] = true;
                    if let Some(event) = status_change(&mut t, changed) {
                        return Some((Ok(event), t));
                    }
                }
                TailItem::Backfilled(i) => {
                    t.backfilled[i] = true;
                    if let Some(event) = status_change(&mut t, false) {
                        return Some((Ok(event), t));
                    }
                }
                TailItem::Lagged(data) => {
                    let event = Event::default().event("lagged").data(data);
                    if t.started {
                        return Some((Ok(event), t));
                    }
                    t.held.push_back(event);
                }
                TailItem::Record(data, in_backfill) => {
                    let (line, key) = split_dup(data.as_bytes());
                    let line = if key.is_some() {
                        let mut s = String::from_utf8_lossy(line).into_owned();
                        s.push('}');
                        s
                    } else {
                        data
                    };
                    let Ok(head) = serde_json::from_str::<RecordHead>(&line) else {
                        continue;
                    };
                    if !t.backfill_done {
                        match in_backfill {
                            true => t.backfill.push((head, line, key)),
                            false => t.live_pending.push((head, line, key)),
                        }
                        continue;
                    }
                    let Some(event) = shown_record(&mut t, &head, line, key) else {
                        continue;
                    };
                    if t.started {
                        return Some((Ok(event), t));
                    }
                    t.held.push_back(event);
                }
            }
        }
    });
    opening.chain(rest)
}

/// The `nodes` event to send after a status report, if one is due: the first once every
/// source was heard from, then one per change.
fn status_change(t: &mut MergedTail, changed: bool) -> Option<Event> {
    if !t.started {
        if t.heard.iter().all(|h| *h) && t.backfilled.iter().all(|b| *b) {
            finish_backfill(t);
            t.started = true;
            return Some(nodes_event(&t.reports));
        }
        return None;
    }
    changed.then(|| nodes_event(&t.reports))
}

/// A record to show: the cursor passes it, and it becomes an event unless it duplicates
/// one shown already.
fn shown_record(
    t: &mut MergedTail,
    head: &RecordHead,
    line: String,
    key: Option<u128>,
) -> Option<Event> {
    // The cursor passes every record received, shown or not: a duplicate left out here
    // must not come back after a resume with this cursor.
    pass_cursor(t, head);
    if !t.dedup.first(key) {
        return None;
    }
    Some(
        Event::default()
            .event("record")
            .id(format_cursor(&t.cursor))
            .data(line),
    )
}

fn pass_cursor(t: &mut MergedTail, head: &RecordHead) {
    if let Some(node) = &head.node {
        let last = t.cursor.entry(node.clone()).or_insert(0);
        *last = (*last).max(head.id);
    }
}

/// Every source's backfill, merged: ordered by received-at over all nodes, the newest
/// `keep` shown (the older ones only pass the cursor), then the live records that came
/// meanwhile, in their order.
fn finish_backfill(t: &mut MergedTail) {
    if t.backfill_done {
        return;
    }
    t.backfill_done = true;
    let mut records = std::mem::take(&mut t.backfill);
    records.sort_by(|a, b| {
        (a.0.received_at_ns, &a.0.node, a.0.id).cmp(&(b.0.received_at_ns, &b.0.node, b.0.id))
    });
    let skip = records.len().saturating_sub(t.keep);
    for (n, (head, line, key)) in records.into_iter().enumerate() {
        if n < skip {
            pass_cursor(t, &head);
        } else if let Some(event) = shown_record(t, &head, line, key) {
            t.held.push_back(event);
        }
    }
    for (head, line, key) in std::mem::take(&mut t.live_pending) {
        if let Some(event) = shown_record(t, &head, line, key) {
            t.held.push_back(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duplicate_rule() {
        let a = b"<14>1 2024-01-01T00:00:00Z h app - - [meta sequenceId=\"7\"] hi";
        let b = b"<14>1 2024-01-01T00:00:00Z h app - - [x@1 a=\"b\"][meta sequenceId=\"7\"] hi";
        let plain = b"<14>1 2024-01-01T00:00:00Z h app - - - hi";
        assert!(dup_key(a).is_some());
        assert_eq!(dup_key(a), dup_key(&a[..]));
        assert_ne!(dup_key(a), dup_key(b));
        assert_eq!(dup_key(plain), None);
        assert!(dup_key(b"<14>1 - h a - - [meta language=\"en\" sequenceId=\"1\"] x").is_some());
        // Not in the meta element.
        assert_eq!(
            dup_key(b"<14>1 - h a - - [meta x=\"1\"][y sequenceId=\"1\"] x"),
            None
        );
        // Only the structured data counts: a message quoting the element does not.
        assert_eq!(
            dup_key(b"<14>1 - h a - - - see [meta sequenceId=\"1\"] in the docs"),
            None
        );
        assert_eq!(
            dup_key(b"<14>1 - h a - - [x@1 a=\"b\"] quoting [meta sequenceId=\"1\"]"),
            None
        );
        // Nor does a value of another element or of another parameter.
        assert_eq!(
            dup_key(b"<14>1 - h a - - [x@1 a=\"[meta sequenceId=\\\"1\\\"\\]\"] m"),
            None
        );
        assert_eq!(
            dup_key(b"<14>1 - h a - - [meta x=\" sequenceId=\\\"1\\\"\"] m"),
            None
        );
        // Escapes inside values are skipped; no message at all is fine.
        assert!(
            dup_key(b"<14>1 - h a - - [x@1 a=\"q\\\"]\"][meta a=\"\\]\" sequenceId=\"2\"]")
                .is_some()
        );
        assert_eq!(dup_key(b"<14>1 - h a - -"), None);
        assert_eq!(dup_key(b"[meta sequenceId=\"1\"]"), None);
        let mut d = Dedup::new(2);
        assert!(d.first(Some(1)));
        assert!(!d.first(Some(1)));
        assert!(d.first(None));
        assert!(d.first(None));
        assert!(d.first(Some(2)));
        assert!(d.first(Some(3)));
        assert!(d.first(Some(1)), "forgotten past the window");
    }

    #[test]
    fn key_fields_round_trip() {
        let mut line = br#"{"id":1,"received_at_ns":42,"node":"n"}"#.to_vec();
        append_dup(&mut line, 0xabc);
        let (body, key) = split_dup(&line);
        assert_eq!(key, Some(0xabc));
        let mut out = Vec::new();
        push_public_line(&mut out, &line);
        assert_eq!(out, b"{\"id\":1,\"received_at_ns\":42,\"node\":\"n\"}\n");
        assert_eq!(received_at_ns(body), 42);
        let plain = br#"{"id":1,"node":"n"}"#;
        assert_eq!(split_dup(plain), (&plain[..], None));
    }

    /// The `id:` and event name of each event of a merged tail fed `items`.
    fn merged_events(items: Vec<TailItem>, sources: usize) -> Vec<(String, Option<String>)> {
        merged_events_keeping(items, sources, None)
    }

    /// As [`merged_events`]; with `keep` the sources' backfills are merged and the newest
    /// `keep` shown (without it, every source starts with its backfill done).
    fn merged_events_keeping(
        items: Vec<TailItem>,
        sources: usize,
        keep: Option<usize>,
    ) -> Vec<(String, Option<String>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (tx, rx) = mpsc::channel(items.len().max(1));
            for item in items {
                tx.send(item).await.unwrap();
            }
            drop(tx);
            let state = MergedTail {
                rx,
                reports: (0..sources)
                    .map(|i| down(format!("http://127.0.0.1:{i}"), None, "connecting".into()))
                    .collect(),
                heard: vec![false; sources],
                started: false,
                start_by: tokio::time::Instant::now() + START_WAIT,
                held: VecDeque::new(),
                backfilled: vec![keep.is_none(); sources],
                backfill: Vec::new(),
                live_pending: Vec::new(),
                keep: keep.unwrap_or(usize::MAX),
                backfill_done: keep.is_none(),
                dedup: Dedup::new(DEDUP_WINDOW),
                cursor: HashMap::new(),
                shutdown: None,
            };
            let body = Sse::new(merged_stream(state)).into_response().into_body();
            let text = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let text = String::from_utf8(text.to_vec()).unwrap();
            text.split("\n\n")
                .filter_map(|block| {
                    let mut event = None;
                    let mut id = None;
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = Some(v.trim().to_string());
                        } else if let Some(v) = line.strip_prefix("id:") {
                            id = Some(v.trim().to_string());
                        }
                    }
                    Some((event?, id))
                })
                .collect()
        })
    }

    fn record_line(node: &str, id: u64, key: Option<u128>) -> TailItem {
        let mut line =
            format!(r#"{{"id":{id},"received_at_ns":{id},"node":"{node}"}}"#).into_bytes();
        if let Some(key) = key {
            append_dup(&mut line, key);
        }
        TailItem::Record(String::from_utf8(line).unwrap(), false)
    }

    /// A record of `node` received at `ns`, part of the backfill or live.
    fn timed_record(node: &str, id: u64, ns: i64, backfill: bool) -> TailItem {
        TailItem::Record(
            format!(r#"{{"id":{id},"received_at_ns":{ns},"node":"{node}"}}"#),
            backfill,
        )
    }

    #[test]
    fn a_merged_backfill_is_the_newest_n_over_every_node_in_time_order() {
        let events = merged_events_keeping(
            vec![
                TailItem::Up(0, Some("a".into())),
                TailItem::Up(1, Some("b".into())),
                timed_record("a", 1, 10, true),
                timed_record("b", 1, 5, true),
                timed_record("a", 2, 30, true),
                timed_record("b", 2, 20, true),
                TailItem::Backfilled(0),
                // Live from a while b's backfill is not complete: shown after it.
                timed_record("a", 3, 40, false),
                TailItem::Backfilled(1),
                timed_record("b", 3, 50, false),
            ],
            2,
            Some(2),
        );
        let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(
            names,
            ["nodes", "record", "record", "record", "record"],
            "{events:?}"
        );
        let ids: Vec<Option<&str>> = events[1..].iter().map(|(_, id)| id.as_deref()).collect();
        // b's 20 and a's 30 are the newest two of the backfills (a's 10 and b's 5 only
        // pass the cursor), then the live ones.
        assert_eq!(
            ids,
            [
                Some("a=1,b=2"),
                Some("a=2,b=2"),
                Some("a=3,b=2"),
                Some("a=3,b=3")
            ]
        );
    }

    #[test]
    fn a_merged_tail_cursor_passes_duplicates_left_out() {
        let events = merged_events(
            vec![
                TailItem::Up(0, Some("a".into())),
                TailItem::Up(1, Some("b".into())),
                record_line("a", 1, Some(7)),
                // b's copy of a's record: not shown, but b's place moves past it.
                record_line("b", 5, Some(7)),
                record_line("a", 2, None),
            ],
            2,
        );
        let records: Vec<_> = events.iter().filter(|(e, _)| e == "record").collect();
        assert_eq!(records.len(), 2, "{events:?}");
        assert_eq!(records[0].1.as_deref(), Some("a=1"));
        assert_eq!(
            records[1].1.as_deref(),
            Some("a=2,b=5"),
            "a resume with this cursor must not send b's copy again"
        );
    }

    #[test]
    fn cursors() {
        let c = parse_cursor("a=1,b-2=30").unwrap();
        assert_eq!(c["a"], 1);
        assert_eq!(c["b-2"], 30);
        assert_eq!(format_cursor(&c), "a=1,b-2=30");
        assert!(parse_cursor("12").is_none());
        assert!(parse_cursor("a=x").is_none());
    }

    #[test]
    fn peer_urls() {
        let own: SocketAddr = "127.0.0.1:7481".parse().unwrap();
        let p = Peers::new(
            &[
                "http://127.0.0.1:7481".into(),
                "127.0.0.1:7482".into(),
                "http://127.0.0.1:7483/".into(),
            ],
            "n1",
            Some(own),
        )
        .unwrap();
        assert_eq!(p.urls(), ["http://127.0.0.1:7482", "http://127.0.0.1:7483"]);
        assert!(Peers::new(&["https://x:1".into()], "n", None).is_err());
        assert!(Peers::new(&["http://x:1/api".into()], "n", None).is_err());
    }
}
