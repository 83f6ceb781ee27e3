//! `flotilla`: the one binary on top of the flotilla crates.
//!
//! Subcommands: `demo` (the main job: a game server, front-ends, bots and
//! observers), `frontend` and `game` (run one role), `log` (a command-line syslog
//! sender through the flotilla logger), `logger-demo` (a sealed service's logging),
//! `receive` (a small syslog receiver that prints what it gets), `watch` (a fleet
//! client that follows one world), and `bench`
//! (benchmarks with JSON output).
#![forbid(unsafe_code)]

mod arena;
mod bench;
mod demo;
mod logd;
mod logger_demo;
mod receive;
mod roles;
mod send;
mod watch;

use clap::{Parser, Subcommand};

/// flotilla: fleets of small, single-purpose, replaceable services.
#[derive(Parser, Debug)]
#[command(name = "flotilla", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the demo: one game server with arena worlds, three front-ends, bot
    /// players and observers; a status line per second and a summary.
    Demo(demo::DemoArgs),
    /// Run a front-end server.
    Frontend(roles::FrontendArgs),
    /// Run a game server hosting arena worlds.
    Game(roles::GameArgs),
    /// Run the logger demo: a sealed service logging to two local collectors, with
    /// failover, an error and a crash report.
    LoggerDemo(logger_demo::DemoArgs),
    /// Send syslog messages through the flotilla logger (like util-linux `logger`,
    /// plus RELP, TLS and failover).
    Log(send::LogArgs),
    /// Run a log-service node: receives syslog (UDP, TCP, TLS, RELP), stores it durably,
    /// serves queries, live tails, stats and metrics over HTTP.
    Logd(logd::LogdArgs),
    /// Receive syslog on TCP and/or UDP and print each message (one JSON object a line).
    Receive(ReceiveArgs),
    /// Watch a world through a fleet of front-ends (random pick, failover): its snapshot,
    /// a status line per second, failovers. Default world: `$directory`.
    Watch(watch::WatchArgs),
    /// Benchmarks; each prints a JSON summary.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
}

#[derive(clap::Args, Debug)]
struct ReceiveArgs {
    /// Where to listen: tcp://ADDR or udp://ADDR (repeatable).
    #[arg(long = "listen", required = true)]
    listen: Vec<String>,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Frontend(args) => roles::frontend(args),
        Command::Game(args) => roles::game(args),
        Command::LoggerDemo(args) => logger_demo::run(args),
        Command::Log(args) => send::run(args),
        Command::Logd(args) => logd::run(args),
        Command::Receive(args) => receive_main(args),
        Command::Watch(args) => watch::run(args),
        Command::Bench { which } => bench::run(which),
    };
    if let Err(e) = result {
        eprintln!("flotilla: error: {e:#}");
        std::process::exit(1);
    }
}

fn receive_main(args: ReceiveArgs) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut listeners = Vec::new();
    for url in &args.listen {
        let l = receive::Listener::start(url, tx.clone())?;
        eprintln!("flotilla receive: listening on {url} ({})", l.addr);
        listeners.push(l);
    }
    drop(tx);
    for (seen, message) in (1u64..).zip(rx) {
        println!("{}", serde_json::to_string(&message)?);
        if args.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}
