//! `flotilla`: the one binary on top of the flotilla crates.
//!
//! Subcommands: `demo` (the main job: a game server, front-ends, bots and
//! observers, every role logging to an in-process log service), `frontend` and `game`
//! (run one role), `log` (a command-line syslog sender through the flotilla logger),
//! `logger-demo` (a sealed service's logging, with two log-service nodes as collectors),
//! `logd` (run a log-service node: syslog listeners, durable store, HTTP API), `logs`
//! (query and tail a log service: stored records, live), `receive` (an alias of `logd` in
//! the foreground that prints each record it stores as a JSON line), `watch` (a fleet
//! client that follows one world), and `bench` (benchmarks with JSON output).
#![forbid(unsafe_code)]

mod arena;
mod bench;
mod demo;
mod demo_logd;
mod logd;
mod logger_demo;
mod logs;
mod logs_fleet;
mod receive;
mod roles;
mod send;
mod sim;
mod watch;

use clap::{Parser, Subcommand};

/// flotilla: fleets of small, single-purpose, replaceable services.
#[derive(Parser, Debug)]
#[command(
    name = "flotilla",
    version,
    about = "flotilla runs fleets of small, single-purpose, replaceable services: stateless \
             game front-ends that clients balance over at random (demo, frontend, game, \
             watch, sim), a syslog logger for sealed services (log, logger-demo) and the log \
             service that stores, searches, tails and alerts on what they send (logd, logs, \
             receive)"
)]
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
    Frontend(Box<roles::FrontendArgs>),
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
    /// Query and tail a log service: stored records, live.
    Logs(logs::LogsArgs),
    /// Receive syslog (UDP, TCP, RELP, TLS) into a log-service node in the foreground and
    /// print each record (one JSON object a line); an alias of `logd` for a quick look.
    Receive(receive::ReceiveArgs),
    /// Watch a world through a fleet of front-ends (random pick, failover): its snapshot,
    /// a status line per second, failovers. Default world: `$directory`.
    Watch(watch::WatchArgs),
    /// Make a session-token key for a fleet of front-ends (64 hex digits from the OS's
    /// secure random source): every front-end of a fleet reads the same file with
    /// `--token-key-file`. Same as `openssl rand -hex 32`. With --join: the operator's
    /// join-token signing key instead (its public key goes to `frontend --join-key`).
    Keygen(roles::KeygenArgs),
    /// Sign a join token (the operator's permission for one player or observer of one
    /// world, until an expiry) with a key from `flotilla keygen --join`; prints it as
    /// base64url, for a client's `--join-token`.
    JoinToken(roles::JoinTokenArgs),
    /// Re-run a front-end's recording (`flotilla frontend --record DIR`) offline and check
    /// every output against the recorded run.
    Replay(roles::ReplayArgs),
    /// Deterministic simulations of a fleet (the real machines, a virtual network, one
    /// seed, virtual time): `flotilla sim failover --seed 7 --clients 10000 --json`.
    Sim {
        #[command(subcommand)]
        which: sim::SimCommand,
    },
    /// Benchmarks; each prints a JSON summary.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Frontend(args) => roles::frontend(*args),
        Command::Game(args) => roles::game(args),
        Command::LoggerDemo(args) => logger_demo::run(args),
        Command::Log(args) => send::run(args),
        Command::Logd(args) => logd::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Receive(args) => receive::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Keygen(args) => roles::keygen(args),
        Command::JoinToken(args) => roles::join_token(args),
        Command::Replay(args) => roles::replay(args),
        Command::Sim { which } => sim::run(which),
        Command::Bench { which } => bench::run(which),
    };
    if let Err(e) = result {
        eprintln!("flotilla: error: {}", error_chain(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, each said once: an error whose message already ends with its
/// cause's (`binding tcp://…: Address already in use`) does not repeat it.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.ends_with(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}
