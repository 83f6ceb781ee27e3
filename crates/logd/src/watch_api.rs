//! The HTTP answers of the watcher ([`crate::watch`]): `GET /api/fleet` (the fleet view)
//! and `GET /api/alerts` (firing alerts, recent notifications, delivery counters).
//!
//! Both take one optional parameter, `local=1`: answer from this node only. Without it,
//! a node with peers asks every peer for its `local=1` answer and merges:
//! - fleet rows of the same service (host + app) are merged by
//!   [`crate::fleet::merge_rows`] (earliest first boot, latest last boot, heartbeat and
//!   message, summed counters, the state computed again from the merged row);
//! - firing alerts are merged by fingerprint (the same labels on two nodes are one alert,
//!   with the earliest start); recent notifications are merged by time.
//!
//! Every answer lists the nodes asked under `"nodes"`: `{"node","url","ok","error"}`; a
//! node that did not answer is listed with `ok: false` and why, never silently missing.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use std::sync::Arc;

use crate::alerts::Alert;
use crate::fleet::{ServiceRow, merge_rows};
use crate::http::HttpState;
use crate::peers::NodeReport;
use crate::query::format_ns;
use crate::record::now_nanos;
use crate::watch::Watch;

/// Most recent notifications returned by `/api/alerts`.
const RECENT_LIMIT: usize = 200;

/// Parses the query string of `/api/fleet` and `/api/alerts`: `local` only.
pub fn parse_local(raw: Option<&str>) -> Result<bool, String> {
    let mut local = false;
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "local" => {
                local = match value.as_ref() {
                    "" | "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    other => {
                        return Err(format!(
                            "parameter \"local\": expected 1, true, yes, 0, false or no, not {other:?}"
                        ));
                    }
                }
            }
            other => return Err(format!("unknown parameter {other:?} (accepted: local)")),
        }
    }
    Ok(local)
}

/// This node's line in `"nodes"`.
fn own_node(state: &HttpState) -> NodeReport {
    NodeReport {
        node: Some(state.store.config().node_id.clone()),
        url: "(this node)".to_string(),
        ok: true,
        matched: None,
        error: None,
    }
}

/// A peer's line in `"nodes"`.
fn peer_node(url: String, node: Option<String>, error: Option<String>) -> NodeReport {
    NodeReport {
        node,
        url,
        ok: error.is_none(),
        matched: None,
        error,
    }
}

/// Runs `f` with the watcher off the async workers: its locks are held while a batch of
/// records is fed, which must not stall the tasks that serve ingest.
async fn with_watch<T: Send + 'static>(
    watch: &Arc<Watch>,
    f: impl FnOnce(&Watch) -> T + Send + 'static,
) -> Result<T, String> {
    let watch = watch.clone();
    tokio::task::spawn_blocking(move || f(&watch))
        .await
        .map_err(|e| format!("the watcher's answer failed: {e}"))
}

/// The `/api/fleet` answer.
pub async fn fleet(state: &HttpState, local: bool) -> Result<Value, String> {
    let watch = state
        .watch
        .as_ref()
        .ok_or_else(|| "this logd runs without the fleet view".to_string())?;
    let (mut rows, config) = with_watch(watch, |w| (w.fleet_rows(), w.fleet_config())).await?;
    let mut nodes = vec![own_node(state)];
    if !local && let Some(peers) = &state.peers {
        let mut merged = false;
        for answer in peers.get_json_all("/api/fleet?local=1").await {
            match answer.result.and_then(|body| {
                serde_json::from_value::<Vec<ServiceRow>>(
                    body.get("services").cloned().unwrap_or(Value::Null),
                )
                .map_err(|e| format!("unexpected answer: {e}"))
            }) {
                Ok(theirs) => {
                    rows.extend(theirs);
                    merged = true;
                    nodes.push(peer_node(answer.url, answer.node, None));
                }
                Err(e) => nodes.push(peer_node(answer.url, answer.node, Some(e))),
            }
        }
        if merged {
            rows = merge_rows(rows, now_nanos(), &config);
        }
    }
    Ok(json!({
        "now": format_ns(now_nanos()),
        "services": rows,
        "nodes": nodes,
    }))
}

/// The `/api/alerts` answer.
pub async fn alerts(state: &HttpState, local: bool) -> Result<Value, String> {
    let watch = state
        .watch
        .as_ref()
        .ok_or_else(|| "this logd runs without alerts".to_string())?;
    let ((mut firing, mut recent), own_deliveries) =
        with_watch(watch, |w| (w.alerts(), w.deliveries())).await?;
    let mut nodes = vec![own_node(state)];
    let mut deliveries = json!({ state.store.config().node_id.clone(): own_deliveries });
    if !local && let Some(peers) = &state.peers {
        for answer in peers.get_json_all("/api/alerts?local=1").await {
            let parsed = answer.result.and_then(|body| {
                let list = |key: &str| {
                    serde_json::from_value::<Vec<Alert>>(
                        body.get(key).cloned().unwrap_or(Value::Null),
                    )
                    .map_err(|e| format!("unexpected answer: {e}"))
                };
                Ok((
                    list("firing")?,
                    list("recent")?,
                    body.get("deliveries").cloned(),
                ))
            });
            match parsed {
                Ok((f, r, d)) => {
                    firing.extend(f);
                    recent.extend(r);
                    if let (Some(Value::Object(theirs)), Some(ours)) =
                        (d, deliveries.as_object_mut())
                    {
                        ours.extend(theirs);
                    }
                    nodes.push(peer_node(answer.url, answer.node, None));
                }
                Err(e) => nodes.push(peer_node(answer.url, answer.node, Some(e))),
            }
        }
        firing = merge_firing(firing);
        recent = merge_recent(recent);
    }
    Ok(json!({
        "firing": firing,
        "recent": recent,
        "deliveries": deliveries,
        "nodes": nodes,
    }))
}

/// Firing alerts of several nodes: one per fingerprint, with the earliest start.
fn merge_firing(alerts: Vec<Alert>) -> Vec<Alert> {
    let mut by_fingerprint: BTreeMap<String, Alert> = BTreeMap::new();
    for a in alerts {
        match by_fingerprint.get_mut(&a.fingerprint) {
            Some(kept) if kept.starts_at <= a.starts_at => {}
            _ => {
                by_fingerprint.insert(a.fingerprint.clone(), a);
            }
        }
    }
    let mut out: Vec<Alert> = by_fingerprint.into_values().collect();
    out.sort_by_key(|a| a.starts_at);
    out
}

/// Recent notifications of several nodes, oldest first, the same notification (same
/// fingerprint, status and start) once, at most [`RECENT_LIMIT`].
fn merge_recent(mut alerts: Vec<Alert>) -> Vec<Alert> {
    let at = |a: &Alert| a.ends_at.unwrap_or(a.starts_at);
    alerts.sort_by_key(|a| (at(a), a.fingerprint.clone()));
    alerts.dedup_by(|a, b| {
        a.fingerprint == b.fingerprint && a.status == b.status && a.starts_at == b.starts_at
    });
    let excess = alerts.len().saturating_sub(RECENT_LIMIT);
    alerts.drain(..excess);
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertStatus;

    fn alert(fp: &str, start: i64, end: Option<i64>) -> Alert {
        Alert {
            name: "X".into(),
            labels: BTreeMap::new(),
            summary: String::new(),
            starts_at: start,
            ends_at: end,
            status: if end.is_some() {
                AlertStatus::Resolved
            } else {
                AlertStatus::Firing
            },
            fingerprint: fp.into(),
            node: "n".into(),
        }
    }

    #[test]
    fn firing_alerts_of_several_nodes_are_one_per_fingerprint() {
        let merged = merge_firing(vec![
            alert("a", 20, None),
            alert("a", 10, None),
            alert("b", 5, None),
        ]);
        assert_eq!(
            merged
                .iter()
                .map(|a| (a.fingerprint.as_str(), a.starts_at))
                .collect::<Vec<_>>(),
            vec![("b", 5), ("a", 10)]
        );
    }

    #[test]
    fn recent_notifications_merge_by_time_without_repeats() {
        let merged = merge_recent(vec![
            alert("a", 10, Some(30)),
            alert("a", 10, None),
            alert("a", 10, Some(30)),
            alert("b", 20, None),
        ]);
        assert_eq!(
            merged
                .iter()
                .map(|a| (a.fingerprint.as_str(), a.status))
                .collect::<Vec<_>>(),
            vec![
                ("a", AlertStatus::Firing),
                ("b", AlertStatus::Firing),
                ("a", AlertStatus::Resolved)
            ]
        );
    }

    #[test]
    fn only_local_is_accepted() {
        assert_eq!(parse_local(None), Ok(false));
        assert_eq!(parse_local(Some("local=1")), Ok(true));
        assert_eq!(parse_local(Some("local")), Ok(true));
        assert!(parse_local(Some("local=maybe")).is_err());
        assert!(parse_local(Some("host=x")).is_err());
    }
}
