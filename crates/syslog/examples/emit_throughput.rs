//! Measures emit_5424 and parse_strict speed for a typical message (timestamp, hostname,
//! app, procid, msgid, one SD element with two params, 40-byte msg).
//! Run: `cargo run --release -p flotilla-syslog --example emit_throughput`.

// Tests and benchmarks are shells: they drive real time, sockets and tasks.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use flotilla_syslog::{Facility, Message, SdElement, Severity, Timestamp, emit_5424, parse_strict};

fn main() -> Result<(), flotilla_syslog::Error> {
    let message = Message::new(Facility::Local0, Severity::Informational, "x".repeat(40))
        .with_timestamp(Timestamp::from_unix(1_764_000_000, 123_456_000)?)
        .with_hostname("fe-17.eu-west.example.net")
        .with_app_name("frontend")
        .with_proc_id("4242")
        .with_msg_id("SESSION")
        .with_sd_element(
            SdElement::new("session@32473")
                .with_param("player", "p-1234567")
                .with_param("world", "lobby"),
        );
    let iterations = 2_000_000u32;
    let mut out = Vec::with_capacity(512);
    let started = Instant::now();
    for _ in 0..iterations {
        out.clear();
        emit_5424(black_box(&message), &mut out)?;
        black_box(&out);
    }
    let emit_ns = started.elapsed().as_nanos() as f64 / f64::from(iterations);
    let started = Instant::now();
    for _ in 0..iterations {
        black_box(parse_strict(black_box(&out))?);
    }
    let parse_ns = started.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!(
        "{} bytes: emit_5424 {emit_ns:.0} ns/msg, parse_strict {parse_ns:.0} ns/msg",
        out.len()
    );
    Ok(())
}
