//! Alert delivery: Prometheus Alertmanager (its v2 API), webhooks (Slack-compatible
//! `{"text": …}` or an Alertmanager-style JSON body) and commands.
//!
//! The alert engine's notifications are handed to [`Notifier::send`], which never
//! blocks: each target has its own bounded queue and its own task. A failed delivery
//! is retried with exponential backoff (250 ms doubling to 30 s) until it succeeds; what
//! does not fit in a queue ([`QUEUE_LIMIT`]) is dropped oldest first and counted. A
//! delivery the target refuses for good (an HTTP 4xx other than 408 and 429, a command
//! that cannot be started) is not retried: it is dropped, counted as `rejected`, and the
//! error kept, so one bad notification never holds up the ones behind it. A command runs
//! once per notification, and each is removed from the queue as soon as it succeeded.
//! Nothing here can slow ingest down: the worst a dead target costs is its queue.
//!
//! Alertmanager forgets a firing alert whose `endsAt` passed (by default 5 minutes after
//! the last time it was sent), so the watcher re-sends every firing alert to
//! Alertmanager targets every [`ALERTMANAGER_RESEND`]; a resolved alert is sent once, with
//! `endsAt` set to the time it resolved.

// An I/O shell (deliveries): it times retries and backs off.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::alerts::{Alert, AlertStatus, NotifyTarget, WebhookFormat};
use crate::query::format_ns;

/// Most notifications waiting for one target; beyond, the oldest is dropped (counted).
pub const QUEUE_LIMIT: usize = 10_000;

/// How often firing alerts are sent to Alertmanager again (its default `resolve_timeout`
/// is 5 minutes).
pub const ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);

/// First retry delay after a failed delivery; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Bound on one HTTP delivery.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one command run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Most notifications delivered in one request.
const BATCH: usize = 64;

/// A target as text, for counters and logs (`alertmanager http://…`).
pub fn describe(target: &NotifyTarget) -> String {
    match target {
        NotifyTarget::Alertmanager { url } => format!("alertmanager {url}"),
        NotifyTarget::Webhook { url, format } => format!("webhook {url} ({format:?})"),
        NotifyTarget::Command { argv } => format!("command {}", argv.join(" ")),
    }
}

/// How an alert is written for each kind of target.
trait AlertForms {
    fn status_text(&self) -> &'static str;
    fn alertmanager_json(&self, generator_url: &str) -> Value;
    fn webhook_entry(&self, generator_url: &str) -> Value;
    fn text_line(&self) -> String;
}

impl AlertForms for Alert {
    /// `firing` or `resolved`.
    fn status_text(&self) -> &'static str {
        match self.status {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }

    /// The alert in Alertmanager's v2 API form (`POST /api/v2/alerts`).
    fn alertmanager_json(&self, generator_url: &str) -> Value {
        let mut v = json!({
            "labels": self.labels,
            "annotations": {"summary": self.summary},
            "startsAt": format_ns(self.starts_at),
            "generatorURL": generator_url,
        });
        if let (AlertStatus::Resolved, Some(end), Some(o)) =
            (self.status, self.ends_at, v.as_object_mut())
        {
            // Alertmanager refuses an end before the start (400).
            o.insert("endsAt".into(), json!(format_ns(end.max(self.starts_at))));
        }
        v
    }

    /// The alert as an entry of Alertmanager's webhook body.
    fn webhook_entry(&self, generator_url: &str) -> Value {
        json!({
            "status": self.status_text(),
            "labels": self.labels,
            "annotations": {"summary": self.summary},
            "startsAt": format_ns(self.starts_at),
            "endsAt": self.ends_at.map_or_else(
                || "0001-01-01T00:00:00Z".to_string(),
                |e| format_ns(e.max(self.starts_at))
            ),
            "generatorURL": generator_url,
            "fingerprint": self.fingerprint,
        })
    }

    /// One line: `[FIRING] ServiceCrashed: …`.
    fn text_line(&self) -> String {
        format!(
            "[{}] {}: {}",
            self.status_text().to_uppercase(),
            self.name,
            self.summary
        )
    }
}

/// An Alertmanager-style webhook body (`version` 4) for `alerts`.
pub fn webhook_body(alerts: &[Alert], generator_url: &str) -> Value {
    let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
        "firing"
    } else {
        "resolved"
    };
    // Labels shared by every alert.
    let mut common: BTreeMap<String, String> =
        alerts.first().map(|a| a.labels.clone()).unwrap_or_default();
    for a in alerts.iter().skip(1) {
        common.retain(|k, v| a.labels.get(k) == Some(v));
    }
    json!({
        "version": "4",
        "status": status,
        "receiver": "flotilla-logd",
        "groupKey": format!("{{}}:{}", serde_json::to_string(&common).unwrap_or_default()),
        "truncatedAlerts": 0,
        "groupLabels": {},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": generator_url,
        "alerts": alerts.iter().map(|a| a.webhook_entry(generator_url)).collect::<Vec<_>>(),
    })
}

/// Counters of one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryStats {
    /// The target, as text (`alertmanager http://…`).
    pub target: String,
    /// Notifications delivered.
    pub delivered: u64,
    /// Failed attempts (each retried).
    pub failed_attempts: u64,
    /// Notifications dropped because the queue was full.
    pub dropped: u64,
    /// Notifications the target refused for good (not retried).
    pub rejected: u64,
    /// Notifications waiting.
    pub pending: u64,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
}

struct Queue {
    target: NotifyTarget,
    state: Mutex<QueueState>,
    wake: Notify,
}

/// A target's waiting notifications, each with its number in the queue, and counters.
#[derive(Default)]
struct QueueState {
    pending: VecDeque<(u64, Alert)>,
    next_number: u64,
    stats: DeliveryStats,
}

/// Delivers notifications to every target, each on its own task.
pub struct Notifier {
    queues: Vec<Arc<Queue>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Notifier {
    /// Starts one delivery task per target on `runtime`. `generator_url` (logd's page)
    /// goes into every alert as its source.
    pub fn start(
        targets: Vec<NotifyTarget>,
        generator_url: String,
        runtime: &tokio::runtime::Handle,
    ) -> Notifier {
        let client = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .ok();
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for target in targets {
            let queue = Arc::new(Queue {
                state: Mutex::new(QueueState {
                    stats: DeliveryStats {
                        target: describe(&target),
                        ..DeliveryStats::default()
                    },
                    ..QueueState::default()
                }),
                target,
                wake: Notify::new(),
            });
            queues.push(queue.clone());
            let client = client.clone();
            let generator_url = generator_url.clone();
            tasks.push(runtime.spawn(async move {
                deliver_loop(queue, client, generator_url).await;
            }));
        }
        Notifier { queues, tasks }
    }

    /// Queues notifications for every target (never blocks).
    pub fn send(&self, alerts: &[Alert]) {
        self.send_where(alerts, |_| true);
    }

    /// Queues notifications for the Alertmanager targets only (the periodic re-send of
    /// firing alerts).
    pub fn send_to_alertmanagers(&self, alerts: &[Alert]) {
        self.send_where(alerts, |t| matches!(t, NotifyTarget::Alertmanager { .. }));
    }

    fn send_where(&self, alerts: &[Alert], wanted: impl Fn(&NotifyTarget) -> bool) {
        if alerts.is_empty() {
            return;
        }
        for queue in &self.queues {
            if !wanted(&queue.target) {
                continue;
            }
            if let Ok(mut state) = queue.state.lock() {
                for a in alerts {
                    if state.pending.len() >= QUEUE_LIMIT {
                        state.pending.pop_front();
                        state.stats.dropped += 1;
                    }
                    let number = state.next_number;
                    state.next_number += 1;
                    state.pending.push_back((number, a.clone()));
                }
                state.stats.pending = state.pending.len() as u64;
            }
            queue.wake.notify_one();
        }
    }

    /// The targets' counters.
    pub fn stats(&self) -> Vec<DeliveryStats> {
        self.queues
            .iter()
            .filter_map(|q| q.state.lock().ok().map(|s| s.stats.clone()))
            .collect()
    }

    /// Whether there are no targets.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Waits (at most `timeout`) until every queue is empty: what was queued has been
    /// delivered, or is still failing.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pending: u64 = self.stats().iter().map(|s| s.pending).sum();
            if pending == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn deliver_loop(queue: Arc<Queue>, client: Option<reqwest::Client>, generator_url: String) {
    let mut backoff = RETRY_FIRST;
    loop {
        // A command runs once per notification: one at a time, so that a failure never
        // runs the ones before it again.
        let batch_size = match queue.target {
            NotifyTarget::Command { .. } => 1,
            _ => BATCH,
        };
        let (last, batch): (u64, Vec<Alert>) = match queue.state.lock() {
            Ok(state) => {
                let taken: Vec<&(u64, Alert)> = state.pending.iter().take(batch_size).collect();
                (
                    taken.last().map_or(0, |(n, _)| *n),
                    taken.into_iter().map(|(_, a)| a.clone()).collect(),
                )
            }
            Err(_) => return,
        };
        if batch.is_empty() {
            queue.wake.notified().await;
            continue;
        }
        let result = deliver(&queue.target, client.as_ref(), &generator_url, &batch).await;
        let retry = {
            let Ok(mut state) = queue.state.lock() else {
                return;
            };
            match result {
                Ok(()) => {
                    // What was delivered leaves the queue (entries dropped meanwhile for
                    // lack of room are already gone).
                    while state.pending.front().is_some_and(|(n, _)| *n <= last) {
                        state.pending.pop_front();
                    }
                    state.stats.delivered += batch.len() as u64;
                    state.stats.pending = state.pending.len() as u64;
                    state.stats.last_error = None;
                    false
                }
                Err(Failure::Permanent(e)) => {
                    while state.pending.front().is_some_and(|(n, _)| *n <= last) {
                        state.pending.pop_front();
                    }
                    state.stats.rejected += batch.len() as u64;
                    state.stats.pending = state.pending.len() as u64;
                    tracing::error!(target = %describe(&queue.target), error = %e, "alert delivery refused; not retried");
                    state.stats.last_error = Some(e);
                    false
                }
                Err(Failure::Retry(e)) => {
                    state.stats.failed_attempts += 1;
                    tracing::warn!(target = %describe(&queue.target), error = %e, retry_in = ?backoff, "alert delivery failed");
                    state.stats.last_error = Some(e);
                    true
                }
            }
        };
        if retry {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        } else {
            backoff = RETRY_FIRST;
        }
    }
}

/// Why a delivery failed.
enum Failure {
    /// Worth retrying (unreachable, timed out, 5xx, 408, 429, a command that failed).
    Retry(String),
    /// The target refuses it for good (4xx, a command that cannot be started).
    Permanent(String),
}

async fn deliver(
    target: &NotifyTarget,
    client: Option<&reqwest::Client>,
    generator_url: &str,
    batch: &[Alert],
) -> Result<(), Failure> {
    match target {
        NotifyTarget::Alertmanager { url } => {
            let body: Vec<Value> = batch
                .iter()
                .map(|a| a.alertmanager_json(generator_url))
                .collect();
            let url = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
            post_json(client, &url, &Value::Array(body)).await
        }
        NotifyTarget::Webhook {
            url,
            format: WebhookFormat::Slack,
        } => {
            let text: Vec<String> = batch.iter().map(AlertForms::text_line).collect();
            post_json(client, url, &json!({ "text": text.join("\n") })).await
        }
        NotifyTarget::Webhook {
            url,
            format: WebhookFormat::Alertmanager,
        } => post_json(client, url, &webhook_body(batch, generator_url)).await,
        NotifyTarget::Command { argv } => {
            for alert in batch {
                run_command(argv, alert, generator_url).await?;
            }
            Ok(())
        }
    }
}

async fn post_json(
    client: Option<&reqwest::Client>,
    url: &str,
    body: &Value,
) -> Result<(), Failure> {
    let client =
        client.ok_or_else(|| Failure::Retry("no HTTP client (TLS set-up failed)".to_string()))?;
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| Failure::Retry(format!("POST {url}: {}", error_chain(&e))))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let text: String = text.chars().take(300).collect();
    let message = format!("POST {url}: HTTP {status}: {text}");
    let code = status.as_u16();
    if status.is_client_error() && code != 408 && code != 429 {
        Err(Failure::Permanent(message))
    } else {
        Err(Failure::Retry(message))
    }
}

async fn run_command(argv: &[String], alert: &Alert, generator_url: &str) -> Result<(), Failure> {
    use tokio::io::AsyncWriteExt as _;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Failure::Permanent("empty command".to_string()))?;
    // An environment value cannot hold a NUL byte (a summary can: it quotes records).
    let env = |v: &str| v.replace('\0', " ");
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("FLOTILLA_ALERT_NAME", env(&alert.name))
        .env("FLOTILLA_ALERT_STATUS", alert.status_text())
        .env("FLOTILLA_ALERT_SUMMARY", env(&alert.summary))
        .env(
            "FLOTILLA_ALERT_LABELS",
            serde_json::to_string(&alert.labels).unwrap_or_default(),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::Permanent(format!("starting {program}: {e}")))?;
    let body = webhook_body(std::slice::from_ref(alert), generator_url).to_string();
    if let Some(mut stdin) = child.stdin.take() {
        // A program that does not read its input is not an error.
        let _ = stdin.write_all(body.as_bytes()).await;
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Err(_) => Err(Failure::Retry(format!(
            "{program} ran longer than {COMMAND_TIMEOUT:?}"
        ))),
        Ok(Err(e)) => Err(Failure::Retry(format!("waiting for {program}: {e}"))),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr: String = stderr.trim().chars().take(300).collect();
            Err(Failure::Retry(format!(
                "{program} exited with {}: {stderr}",
                out.status
            )))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
