//! `flotilla watch`: a fleet client on the command line. It takes the fleet's front-end
//! list (addresses, or every A/AAAA record of a DNS name), picks a front-end at random,
//! watches one world (by default `$directory`, the worlds the fleet serves) and prints
//! what happens, one line per event: the front-end it is on, the snapshot, a status line
//! per second (position, entries, digest, batches), failovers. Text lines are logfmt
//! (`time=… event=… key=value`, values quoted where needed); with `--json` every line is
//! one JSON object. A world the fleet does not serve is an error that lists the worlds
//! it serves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flotilla_client::ErrorCode;
use flotilla_client::{ClientEvent, DnsFrontends, FleetClient, FleetConfig, FleetStats};
use flotilla_game::WorldId;
use serde_json::{Value, json};

/// Arguments of `flotilla watch`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The world to watch; `$directory` lists the worlds the fleet serves.
    #[arg(default_value = "$directory")]
    world: String,
    /// The fleet's front-ends, comma-separated ADDR:PORT, or tls://ADDR:PORT for all of
    /// them over TLS (every client gets the same list).
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "dns",
        conflicts_with = "dns"
    )]
    frontends: Vec<String>,
    /// Or: every A/AAAA record of this name, as NAME:PORT (or tls://NAME:PORT).
    #[arg(long)]
    dns: Option<String>,
    /// The certificate authorities (PEM) that sign the front-ends' TLS certificates;
    /// needed for tls://.
    #[arg(long, value_name = "PEM")]
    ca: Option<std::path::PathBuf>,
    /// The name the front-ends' TLS certificates must carry (default: the DNS name, or the
    /// first front-end's IP address).
    #[arg(long)]
    tls_name: Option<String>,
    /// Join tokens (from `flotilla join-token`, base64url; comma-separated or repeated),
    /// presented to every front-end the client connects to: needed to watch where the
    /// front-ends run with --no-anonymous-observers.
    #[arg(long, value_delimiter = ',', value_name = "TOKEN")]
    join_token: Vec<String>,
    /// Name servers to ask for `--dns`, comma-separated ADDR:PORT (default: the system's).
    #[arg(long, value_delimiter = ',', requires = "dns")]
    name_server: Vec<SocketAddr>,
    /// Stop after this many seconds (default: until interrupted).
    #[arg(long)]
    seconds: Option<f64>,
    /// Print the world's entries (one `event=entry` line each; values as text when they
    /// are printable UTF-8, else hex) after the snapshot and every status line.
    #[arg(long)]
    entries: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// Runs `flotilla watch`.
pub fn run(args: WatchArgs) -> Result<()> {
    if let Some(seconds) = args.seconds
        && !(seconds.is_finite() && seconds > 0.0)
    {
        bail!("--seconds must be positive");
    }
    let world = WorldId::new(&args.world).with_context(|| format!("world {:?}", args.world))?;
    let (tls, frontends) = parse_frontends(&args.frontends)?;
    let (dns_tls, dns) = match &args.dns {
        Some(dns) => match dns.strip_prefix("tls://") {
            Some(rest) => (true, Some(rest.to_owned())),
            None => (false, Some(dns.clone())),
        },
        None => (false, None),
    };
    let mut config = match &dns {
        Some(name_port) => {
            let (name, port) = name_port
                .rsplit_once(':')
                .with_context(|| format!("--dns {name_port:?}: expected NAME:PORT"))?;
            let port: u16 = port
                .parse()
                .with_context(|| format!("--dns {name_port:?}: bad port"))?;
            let mut dns = DnsFrontends::new(name, port);
            if !args.name_server.is_empty() {
                dns = dns.with_name_servers(args.name_server.clone());
            }
            FleetConfig::from_source(dns)
        }
        None => FleetConfig::new(frontends.clone()),
    };
    if tls || dns_tls {
        let ca = args.ca.as_deref().context(
            "tls:// front-ends need --ca PEM (the authority that signs their certificates)",
        )?;
        let name = match (&args.tls_name, &dns, frontends.first()) {
            (Some(name), _, _) => name.clone(),
            (None, Some(name_port), _) => name_port
                .rsplit_once(':')
                .map_or(name_port.clone(), |(name, _)| name.to_owned()),
            (None, None, Some(first)) => first.ip().to_string(),
            (None, None, None) => bail!("no front-end given"),
        };
        config.client.tls = Some(flotilla_client::ClientTls::from_ca_file(ca, &name)?);
    }
    config.client.client_name = "flotilla-watch".into();
    for (index, token) in args.join_token.iter().enumerate() {
        let token = flotilla_client::join_token_from_text(token)
            .with_context(|| format!("--join-token number {}", index + 1))?;
        config.client.join_tokens.push(token);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(watch(args, world, config))
}

/// Parses `--frontends`: every address plain (`ADDR:PORT`) or every one TLS
/// (`tls://ADDR:PORT`). Returns whether they are TLS, and the addresses.
pub fn parse_frontends(list: &[String]) -> Result<(bool, Vec<SocketAddr>)> {
    let tls = list
        .first()
        .is_some_and(|first| first.starts_with("tls://"));
    let addresses = list
        .iter()
        .map(|entry| {
            let (is_tls, addr) = match entry.strip_prefix("tls://") {
                Some(addr) => (true, addr),
                None => (false, entry.as_str()),
            };
            if is_tls != tls {
                bail!("--frontends mixes tls:// and plain addresses ({entry:?})");
            }
            addr.parse::<SocketAddr>().with_context(|| {
                format!("--frontends {entry:?}: expected ADDR:PORT or tls://ADDR:PORT")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((tls, addresses))
}

async fn watch(args: WatchArgs, world: WorldId, config: FleetConfig) -> Result<()> {
    let out = Printer { json: args.json };
    out.line(
        "connecting",
        json!({
            "frontends": match &args.dns {
                Some(name) => format!("every address of {name}"),
                None => args.frontends.join(","),
            },
            "pick": "random",
        }),
    );
    let client = FleetClient::connect(config)
        .await
        .context("connecting to the fleet")?;
    out.line(
        "connected",
        json!({
            "frontend": client.frontend_addr().map(|a| a.to_string()),
            "server_id": client.server_id(),
        }),
    );
    client.subscribe(world.clone(), None)?;
    let mut events = client.take_events().context("client events")?;
    let deadline = args
        .seconds
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
    let mut status = tokio::time::interval(Duration::from_secs(1));
    status.tick().await;
    let mut batches_since_status = 0u64;
    let mut had_snapshot = false;
    let started = Instant::now();
    loop {
        let sleep_until_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep_until_deadline => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = status.tick() => {
                out.line("status", status_fields(&client, &world, batches_since_status));
                if args.entries {
                    out.entries(&client, &world);
                }
                batches_since_status = 0;
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                match event {
                    ClientEvent::BatchApplied { .. } => batches_since_status += 1,
                    ClientEvent::SnapshotApplied { position, .. } => {
                        had_snapshot = true;
                        let mut fields = status_fields(&client, &world, 0);
                        fields["epoch"] = json!(position.epoch);
                        out.line("snapshot", fields);
                        if args.entries {
                            out.entries(&client, &world);
                        }
                    }
                    ClientEvent::Unsubscribed { world: w, code, text } => {
                        out.line("unsubscribed", json!({
                            "world": w.as_str(), "code": format!("{code:?}"), "text": text,
                        }));
                        if w == world && code == ErrorCode::NotAllowed {
                            client.close();
                            bail!(
                                "the fleet does not let this client watch {:?}: {text} (give \
                                 --join-token a token for it)",
                                world.as_str()
                            );
                        }
                        if w == world && !had_snapshot && code == ErrorCode::UnknownWorld {
                            let served = served_worlds(&client, &mut events).await;
                            client.close();
                            bail!(
                                "the fleet serves no world {:?} (it serves: {})",
                                world.as_str(),
                                if served.is_empty() { "none yet".to_owned() } else { served.join(", ") }
                            );
                        }
                    }
                    ClientEvent::Joined { world: w, role, expires_unix } => {
                        out.line("joined", json!({
                            "world": w.as_str(), "role": role.as_str(), "expires_unix": expires_unix,
                        }));
                    }
                    ClientEvent::JoinRefused { world: w, code, text } => {
                        out.line("join_refused", json!({
                            "world": w.as_ref().map(WorldId::as_str), "code": format!("{code:?}"), "text": text,
                        }));
                    }
                    ClientEvent::Resubscribing { code, attempt, delay, .. } => {
                        out.line("resubscribing", json!({
                            "code": format!("{code:?}"), "attempt": attempt, "in_ms": delay.as_millis(),
                        }));
                    }
                    ClientEvent::FrontendLost { from, server_id, reason } => {
                        out.line("frontend_lost", json!({
                            "frontend": from.to_string(), "server_id": server_id, "reason": format!("{reason:?}"),
                        }));
                    }
                    ClientEvent::ConnectFailed { addr, error, failed_rounds } => {
                        out.line("connect_failed", json!({
                            "frontend": addr.to_string(), "error": error, "failed_rounds": failed_rounds,
                        }));
                    }
                    ClientEvent::Reconnected { to, server_id, resumed, after } => {
                        out.line("reconnected", json!({
                            "frontend": to.to_string(), "server_id": server_id,
                            "resumed": resumed, "after_ms": after.as_millis(),
                        }));
                    }
                    ClientEvent::Disconnected { reason } => {
                        out.line("disconnected", json!({ "reason": format!("{reason:?}") }));
                        break;
                    }
                    other => out.line("event", json!({ "event": format!("{other:?}") })),
                }
            }
        }
    }
    let stats: FleetStats = client.stats();
    let mut fields = status_fields(&client, &world, batches_since_status);
    fields["seconds"] = json!(started.elapsed().as_secs_f64());
    fields["reconnects"] = json!(stats.reconnects);
    fields["failed_attempts"] = json!(stats.failed_attempts);
    out.line("end", fields);
    client.close();
    Ok(())
}

/// The world ids of the fleet's `$directory` (subscribed to for this, waited for up to
/// 3 s), sorted.
async fn served_worlds(
    client: &FleetClient,
    events: &mut flotilla_client::ClientEvents,
) -> Vec<String> {
    let directory = WorldId::DIRECTORY;
    if client.subscribe(directory.clone(), None).is_err() {
        return Vec::new();
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        // A replica has a position once its snapshot is in.
        let listed = client.position(&directory).and_then(|_| {
            client.with_replica(&directory, |replica| {
                replica.iter().map(|(key, _)| text(key)).collect::<Vec<_>>()
            })
        });
        if let Some(mut worlds) = listed {
            worlds.sort();
            return worlds;
        }
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Vec::new(),
        }
    }
}

/// The replica's position, size and digest.
fn status_fields(client: &FleetClient, world: &WorldId, batches: u64) -> Value {
    let position = client.position(world);
    let mut fields = json!({
        "world": world.as_str(),
        "frontend": client.frontend_addr().map(|a| a.to_string()),
        "seq": position.map(|p| p.seq),
        "digest": client.digest(world).map(|d| format!("{d:016x}")),
        "batches": batches,
    });
    if let Some(count) = client.with_replica(world, |replica| replica.len()) {
        fields["len"] = json!(count);
    }
    fields
}

/// Bytes as text when they are printable UTF-8, else as hex.
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Prints events as text or JSON lines.
struct Printer {
    json: bool,
}

impl Printer {
    /// One line: `time=… event=… key=value …` (logfmt), or one JSON object with `time`
    /// and `event`.
    fn line(&self, event: &str, mut fields: Value) {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let time = flotilla_logd::query::format_ns(now_ns);
        if self.json {
            fields["time"] = json!(time);
            fields["event"] = json!(event);
            println!("{fields}");
        } else {
            let mut line = format!("time={time} event={event}");
            if let Some(map) = fields.as_object() {
                for (key, value) in map.iter().filter(|(_, v)| !v.is_null()) {
                    let value = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    line.push(' ');
                    line.push_str(key);
                    line.push('=');
                    line.push_str(&logfmt_value(&value));
                }
            }
            println!("{line}");
        }
    }

    /// One `entry` line per entry of the world's replica, in key order.
    fn entries(&self, client: &FleetClient, world: &WorldId) {
        let entries = client
            .with_replica(world, |replica| {
                replica
                    .iter()
                    .map(|(key, value)| (text(key), text(value)))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for (key, value) in entries {
            self.line(
                "entry",
                json!({ "world": world.as_str(), "key": key, "value": value }),
            );
        }
    }
}

/// A logfmt value: as it is when it has no space, `=`, quote or control character (and is
/// not empty), else in double quotes with `"` and `\` escaped.
fn logfmt_value(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    if plain {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c if c.is_control() => quoted.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::logfmt_value;

    #[test]
    fn logfmt_values_are_quoted_when_needed() {
        assert_eq!(logfmt_value("arena-1"), "arena-1");
        assert_eq!(
            logfmt_value("arena 1: 20 wanderers"),
            "\"arena 1: 20 wanderers\""
        );
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
        assert_eq!(logfmt_value("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(logfmt_value("back\\slash"), "\"back\\\\slash\"");
    }
}
