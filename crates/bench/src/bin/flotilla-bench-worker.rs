//! `flotilla-bench-worker`: the benchmark worker processes without the rest of the
//! `flotilla` binary (used by this crate's integration tests; `flotilla bench worker …`
//! runs the same code).
#![forbid(unsafe_code)]

use clap::Parser;

/// Runs one benchmark worker.
#[derive(Parser, Debug)]
#[command(name = "flotilla-bench-worker")]
struct Cli {
    #[command(subcommand)]
    worker: flotilla_bench::WorkerArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(error) = flotilla_bench::worker_main(cli.worker) {
        eprintln!("flotilla-bench-worker: {error}");
        std::process::exit(1);
    }
}
