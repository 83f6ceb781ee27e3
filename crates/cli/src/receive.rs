//! `flotilla receive`: a thin alias of `flotilla logd` in the foreground that prints what
//! it receives.
//!
//! It runs a log-service node with the given listeners (`udp://`, `tcp://`, `relp://`,
//! `tls://…?cert=&key=`, as `flotilla logd --listen` takes them) on a temporary data
//! directory (removed at exit) or `--data DIR` (kept), no HTTP API unless `--http` asks
//! for one, and prints every record it stores as one JSON object a line (the form of
//! `flotilla logs query --json`, `flotilla_logd::RecordJson`), once it is durable. It
//! stops after `--count N` records, or at SIGINT/SIGTERM, syncing and sealing what it
//! accepted.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use flotilla_logd::listen::ListenSpec;
use flotilla_logd::record::now_nanos;
use flotilla_logd::server::{Server, ServerConfig};
use flotilla_logd::store::defaults_for;
use flotilla_logd::{Matcher, Query, Record, RecordJson};
use tokio::sync::broadcast::error::RecvError;

/// Arguments of `flotilla receive`.
#[derive(clap::Args, Debug)]
pub struct ReceiveArgs {
    /// Where to listen, comma-separated and/or repeated: udp://ADDR, tcp://ADDR,
    /// relp://ADDR, tls://ADDR?cert=PEM&key=PEM[&client_ca=PEM].
    #[arg(long = "listen", required = true)]
    listen: Vec<String>,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Keep what is received in this data directory (default: a temporary one, removed
    /// at exit). Query it afterwards with `flotilla logs query --data DIR`.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Also serve logd's HTTP API on this address (query, live tail, stats).
    #[arg(long, value_name = "IP:PORT")]
    http: Option<std::net::SocketAddr>,
}

/// Runs `flotilla receive`.
pub fn run(args: ReceiveArgs) -> Result<()> {
    let (data_dir, temporary) = match &args.data {
        Some(dir) => (dir.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("flotilla-receive-")
                .tempdir()
                .context("creating a temporary data directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut config = ServerConfig::new(&data_dir);
    config.listen = Vec::new();
    for url in &args.listen {
        config.listen.extend(ListenSpec::parse_list(url)?);
    }
    config.http = args.http;
    // Records received from now on are printed (an existing --data directory keeps its
    // older ones to itself).
    let started_at = now_nanos();
    let mut server = Server::start(config)
        .with_context(|| format!("starting logd on {}", data_dir.display()))?;
    let live = server.store().subscribe();
    for (url, _) in server.listener_addrs() {
        eprintln!("flotilla receive: listening on {url}");
    }
    if let Some(h) = server.http_addr() {
        eprintln!("flotilla receive: HTTP API on http://{h}");
    }
    match &temporary {
        Some(_) => eprintln!(
            "flotilla receive: data directory {} (temporary: removed at exit; --data DIR keeps it)",
            data_dir.display()
        ),
        None => eprintln!("flotilla receive: data directory {}", data_dir.display()),
    }
    let result = print_records(&server, live, started_at, args.count);
    server.shutdown();
    drop(temporary);
    result
}

/// Prints the records stored since `since` (ns), then each new one, until `count` were
/// printed or a signal arrives.
fn print_records(
    server: &Server,
    mut live: tokio::sync::broadcast::Receiver<std::sync::Arc<flotilla_logd::store::DurableBatch>>,
    since: i64,
    count: Option<u64>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stdout = std::io::stdout();
    let mut printer = Printer {
        out: stdout.lock(),
        printed: 0,
        last_id: None,
        count,
    };
    // What arrived before the subscription took effect comes from the store; from then
    // on the live feed (ids already printed are skipped).
    let since = Matcher::new(Query {
        since: Some(since),
        ..Query::default()
    })?;
    printer.catch_up(server, &since)?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        while !printer.done() {
            tokio::select! {
                batch = live.recv() => match batch {
                    Ok(batch) => {
                        for (id, record) in batch.records.iter() {
                            if printer.done() {
                                break;
                            }
                            printer.print(*id, record)?;
                        }
                    }
                    // Fell behind the live feed: what it missed is in the store.
                    Err(RecvError::Lagged(_)) => printer.catch_up(server, &since)?,
                    Err(RecvError::Closed) => break,
                },
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        Ok::<_, anyhow::Error>(())
    })
}

struct Printer<W: Write> {
    out: W,
    printed: u64,
    last_id: Option<u64>,
    count: Option<u64>,
}

impl<W: Write> Printer<W> {
    fn done(&self) -> bool {
        self.count.is_some_and(|c| self.printed >= c)
    }

    /// Prints a record unless it was printed already.
    fn print(&mut self, id: u64, record: &Record) -> Result<()> {
        if self.last_id.is_some_and(|last| id <= last) {
            return Ok(());
        }
        let json = RecordJson::from_record(id, record, &defaults_for(record.received_at));
        serde_json::to_writer(&mut self.out, &json)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        self.last_id = Some(id);
        self.printed += 1;
        Ok(())
    }

    /// Prints the stored records matching `matcher` not printed yet, oldest first.
    fn catch_up(&mut self, server: &Server, matcher: &Matcher) -> Result<()> {
        let mut failed = None;
        server.store().scan(matcher, false, &mut |id, record| {
            if self.done() {
                return false;
            }
            match self.print(id, record) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        failed.map_or(Ok(()), Err)
    }
}
