//! `flotilla watch`: a fleet client on the command line. It takes the fleet's front-end
//! list (addresses, or every A/AAAA record of a DNS name), picks a front-end at random,
//! watches one world (by default `$directory`, the worlds the fleet serves) and prints
//! what happens, one line per event: the front-end it is on, the snapshot, a status line
//! per second (position, entries, digest, batches), failovers. With `--json` every line
//! is one JSON object.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flotilla_client::{ClientEvent, DnsFrontends, FleetClient, FleetConfig, FleetStats};
use flotilla_game::WorldId;
use serde_json::{Value, json};

/// Arguments of `flotilla watch`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The world to watch; `$directory` lists the worlds the fleet serves.
    #[arg(default_value = "$directory")]
    world: String,
    /// The fleet's front-ends, comma-separated ADDR:PORT (every client gets the same list).
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "dns",
        conflicts_with = "dns"
    )]
    frontends: Vec<SocketAddr>,
    /// Or: every A/AAAA record of this name, as NAME:PORT.
    #[arg(long)]
    dns: Option<String>,
    /// Name servers to ask for `--dns`, comma-separated ADDR:PORT (default: the system's).
    #[arg(long, value_delimiter = ',', requires = "dns")]
    name_server: Vec<SocketAddr>,
    /// Stop after this many seconds (default: until interrupted).
    #[arg(long)]
    seconds: Option<f64>,
    /// Print the world's entries (key = value, values as text when they are UTF-8) on
    /// the snapshot and with every status line.
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
    let mut config = match &args.dns {
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
        None => FleetConfig::new(args.frontends.clone()),
    };
    config.client.client_name = "flotilla-watch".into();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(watch(args, world, config))
}

async fn watch(args: WatchArgs, world: WorldId, config: FleetConfig) -> Result<()> {
    let out = Printer { json: args.json };
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
                out.line("status", status_fields(&client, &world, args.entries, batches_since_status));
                batches_since_status = 0;
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                match event {
                    ClientEvent::BatchApplied { .. } => batches_since_status += 1,
                    ClientEvent::SnapshotApplied { position, .. } => {
                        let mut fields = status_fields(&client, &world, true, 0);
                        fields["epoch"] = json!(position.epoch);
                        if !args.entries && fields["entries"].as_array().is_some_and(|e| e.len() > 50) {
                            fields["entries"] = json!("(more than 50; --entries shows them)");
                        }
                        out.line("snapshot", fields);
                    }
                    ClientEvent::Unsubscribed { code, text, .. } => {
                        out.line("unsubscribed", json!({ "code": format!("{code:?}"), "text": text }));
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
    let mut fields = status_fields(&client, &world, false, batches_since_status);
    fields["seconds"] = json!(started.elapsed().as_secs_f64());
    fields["reconnects"] = json!(stats.reconnects);
    fields["failed_attempts"] = json!(stats.failed_attempts);
    out.line("end", fields);
    client.close();
    Ok(())
}

/// The replica's position, size and digest, and its entries when asked for.
fn status_fields(client: &FleetClient, world: &WorldId, entries: bool, batches: u64) -> Value {
    let position = client.position(world);
    let mut fields = json!({
        "world": world.as_str(),
        "frontend": client.frontend_addr().map(|a| a.to_string()),
        "seq": position.map(|p| p.seq),
        "digest": client.digest(world).map(|d| format!("{d:016x}")),
        "batches": batches,
    });
    let listed = client.with_replica(world, |replica| {
        let count = replica.len();
        let shown: Vec<Value> = if entries {
            replica
                .iter()
                .map(|(key, value)| json!([text(key), text(value)]))
                .collect()
        } else {
            Vec::new()
        };
        (count, shown)
    });
    if let Some((count, shown)) = listed {
        fields["len"] = json!(count);
        if entries {
            fields["entries"] = json!(shown);
        }
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
    fn line(&self, event: &str, mut fields: Value) {
        if self.json {
            fields["event"] = json!(event);
            println!("{fields}");
        } else {
            let rest = fields
                .as_object()
                .map(|map| {
                    map.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| match v {
                            Value::String(s) => format!("{k}={s}"),
                            other => format!("{k}={other}"),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            println!("{event:<14} {rest}");
        }
    }
}
