//! A tiny sealed service: it boots, serves, logs a caught error and then panics on
//! purpose. Its log stream is the only window into it.
//!
//! ```sh
//! flotilla receive --listen tcp://127.0.0.1:6601 &
//! FLOTILLA_LOG=tcp://127.0.0.1:6601 cargo run --release -p flotilla-logger --example sealed_service
//! ```
//!
//! Environment: `FLOTILLA_LOG` (collectors, required), `SERVE_MS` (how long to
//! serve, default 300).
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = flotilla_logger::Config::from_env()?;
    config.app_name = Some("sealed-service".into());
    config.app_version = Some(env!("CARGO_PKG_VERSION").into());
    // Loud at start-up: a bad FLOTILLA_LOG never reaches this line.
    let logger = flotilla_logger::init(config)?;

    // Serve: an echo service on loopback, exercised by ourselves.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    log::info!(addr = addr.to_string(); "serving echo");
    let serve_for = Duration::from_millis(
        std::env::var("SERVE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    );
    let server = std::thread::spawn(move || -> std::io::Result<u32> {
        let mut served = 0;
        for stream in listener.incoming() {
            let mut stream = stream?;
            let mut buf = [0u8; 64];
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            stream.write_all(buf.get(..n).unwrap_or(&[]))?;
            served += 1;
        }
        Ok(served)
    });
    let started = Instant::now();
    let mut requests = 0u32;
    while started.elapsed() < serve_for {
        let mut c = TcpStream::connect(addr)?;
        c.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf)?;
        requests += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    TcpStream::connect(addr)?; // an empty connection ends the server loop
    let served = server.join().map_err(|_| "server thread panicked")??;
    log::info!(requests = requests, served = served; "served requests");

    // A caught error, logged with its cause chain.
    if let Err(e) = std::fs::read("/nonexistent/flotilla/config.toml") {
        logger.error("reading the configuration failed", &e);
    }

    // And the end every operator fears: the panic hook reports it first.
    let table: Vec<u32> = Vec::new();
    let index = requests as usize;
    panic!(
        "on purpose: index {index} out of a table of {}",
        table.len()
    );
}
