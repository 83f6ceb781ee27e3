//! `flotilla logs fleet` and `flotilla logs alerts`: the log service's fleet view (one row
//! per service: state, boots, heartbeats, crashes, errors) and its alerts, asked from a
//! logd's HTTP API (`/api/fleet`, `/api/alerts`; with peers, every node's view merged).

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, anyhow};
use flotilla_logd::alerts::Alert;
use flotilla_logd::fleet::ServiceRow;
use flotilla_logd::query::format_ns;
use flotilla_logd::record::now_nanos;
use serde_json::Value;

use crate::logs::{DEFAULT_LOGD, agent, base_url, get};

/// Arguments of `flotilla logs fleet`.
#[derive(clap::Args, Debug)]
pub struct FleetArgs {
    /// The logd to ask (its HTTP API).
    #[arg(long, value_name = "URL", env = "FLOTILLA_LOGD", default_value = DEFAULT_LOGD)]
    pub logd: String,
    /// Print logd's answer as JSON (`services`, `nodes`).
    #[arg(long)]
    pub json: bool,
    /// Only services in this state: up, silent, crashed, boot-looping.
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
}

/// Arguments of `flotilla logs alerts`.
#[derive(clap::Args, Debug)]
pub struct AlertsArgs {
    /// The logd to ask (its HTTP API).
    #[arg(long, value_name = "URL", env = "FLOTILLA_LOGD", default_value = DEFAULT_LOGD)]
    pub logd: String,
    /// Print logd's answer as JSON (`firing`, `recent`, `deliveries`, `nodes`).
    #[arg(long)]
    pub json: bool,
}

const STATES: [&str; 4] = ["up", "silent", "crashed", "boot-looping"];

/// Runs `flotilla logs fleet`.
pub fn fleet(args: &FleetArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    if let Some(s) = &args.state
        && !STATES.contains(&s.as_str())
    {
        return Err(anyhow!(
            "--state {s:?}: expected one of {}",
            STATES.join(", ")
        ));
    }
    let base = base_url(&args.logd)?;
    let body = fetch(&base, "/api/fleet")?;
    warn_nodes(&body, err);
    if args.json {
        writeln!(out, "{body}")?;
        return Ok(());
    }
    let rows: Vec<ServiceRow> =
        serde_json::from_value(body.get("services").cloned().unwrap_or(Value::Null))
            .map_err(|e| anyhow!("logd at {base} answered an unexpected fleet view: {e}"))?;
    let rows: Vec<&ServiceRow> = rows
        .iter()
        .filter(|r| args.state.as_deref().is_none_or(|s| r.state.name() == s))
        .collect();
    if rows.is_empty() {
        let _ = writeln!(err, "no services");
        return Ok(());
    }
    let now = now_nanos();
    let table: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.state.name().to_string(),
                r.host.clone(),
                r.app.clone(),
                ago(r.last_boot, now),
                r.boots_last_hour.to_string(),
                ago(r.last_heartbeat, now),
                ago(r.last_message, now),
                r.crashes.to_string(),
                r.errors_last_hour.to_string(),
                r.ip.iter()
                    .filter(|(iface, _)| iface != "lo")
                    .map(|(iface, addr)| format!("{iface}={addr}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    let header = [
        "STATE",
        "HOST",
        "APP",
        "LAST BOOT",
        "BOOTS/1h",
        "HEARTBEAT",
        "LAST MESSAGE",
        "CRASHES",
        "ERRORS/1h",
        "IP",
    ];
    let mut widths = header.map(str::len);
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&header))?;
    for row in &table {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
    }
    for r in rows {
        if let Some(c) = &r.last_crash
            && r.state.name() == "crashed"
        {
            writeln!(
                out,
                "{}/{} crashed {}: {}",
                r.host,
                r.app,
                ago(Some(c.at), now),
                c.message
            )?;
        }
    }
    Ok(())
}

/// Runs `flotilla logs alerts`.
pub fn alerts(args: &AlertsArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let base = base_url(&args.logd)?;
    let body = fetch(&base, "/api/alerts")?;
    warn_nodes(&body, err);
    if args.json {
        writeln!(out, "{body}")?;
        return Ok(());
    }
    let list = |key: &str| -> Result<Vec<Alert>> {
        serde_json::from_value(body.get(key).cloned().unwrap_or(Value::Null))
            .map_err(|e| anyhow!("logd at {base} answered unexpected alerts: {e}"))
    };
    let firing = list("firing")?;
    let recent = list("recent")?;
    let now = now_nanos();
    if firing.is_empty() {
        writeln!(out, "no alert firing")?;
    } else {
        writeln!(out, "firing:")?;
        for a in &firing {
            writeln!(
                out,
                "  {} (since {}): {}",
                a.name,
                ago(Some(a.starts_at), now),
                a.summary
            )?;
        }
    }
    if !recent.is_empty() {
        writeln!(out, "recent notifications (oldest first):")?;
        for a in &recent {
            let at = a.ends_at.unwrap_or(a.starts_at);
            writeln!(
                out,
                "  {}  {:<8}  {}: {}",
                format_ns(at),
                if a.ends_at.is_some() {
                    "resolved"
                } else {
                    "firing"
                },
                a.name,
                a.summary
            )?;
        }
    }
    if let Some(Value::Object(nodes)) = body.get("deliveries") {
        for (node, targets) in nodes {
            for t in targets.as_array().into_iter().flatten() {
                let field = |k: &str| t.get(k).and_then(Value::as_u64).unwrap_or(0);
                let mut line = format!(
                    "delivery ({node}) {}: {} delivered, {} failed attempts, {} pending, {} dropped",
                    t.get("target").and_then(Value::as_str).unwrap_or("?"),
                    field("delivered"),
                    field("failed_attempts"),
                    field("pending"),
                    field("dropped"),
                );
                if let Some(e) = t.get("last_error").and_then(Value::as_str) {
                    line.push_str(&format!("; last error: {e}"));
                }
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}

fn fetch(base: &str, path: &str) -> Result<Value> {
    let agent = agent(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)));
    let mut response = get(&agent, base, path, &[])?;
    response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_json::<Value>()
        .map_err(|e| anyhow!("logd at {base} answered {path} with something that is not JSON: {e}"))
}

/// Names every node that did not answer (a partial view is still printed).
fn warn_nodes(body: &Value, err: &mut dyn Write) {
    for node in body
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if node.get("ok").and_then(Value::as_bool) == Some(false) {
            let _ = writeln!(
                err,
                "warning: node {} did not answer: {} (its services are missing from this view)",
                node.get("url").and_then(Value::as_str).unwrap_or("?"),
                node.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error"),
            );
        }
    }
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`, or `-`.
fn ago(at: Option<i64>, now: i64) -> String {
    let Some(at) = at else {
        return "-".to_string();
    };
    let secs = (now - at).max(0) / 1_000_000_000;
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        let s = 1_000_000_000;
        assert_eq!(ago(None, 0), "-");
        assert_eq!(ago(Some(0), 5 * s), "5s ago");
        assert_eq!(ago(Some(0), 300 * s), "5m ago");
        assert_eq!(ago(Some(0), 3 * 3600 * s), "3h ago");
        assert_eq!(ago(Some(0), 3 * 86_400 * s), "3d ago");
    }
}
