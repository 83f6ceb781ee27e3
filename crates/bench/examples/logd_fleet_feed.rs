//! How long the fleet view takes per record, alone on one core: 10,000 services' traffic
//! (the shape of `flotilla bench logd`'s fleet part) parsed by the indexer's block
//! builder, then observed and fed to the fleet machine. Prints ns per record for each
//! step.
//!
//! `cargo run --release -p flotilla-bench --example logd_fleet_feed`
#![allow(clippy::unwrap_used, clippy::expect_used)] // An example: a panic is a failure.

use std::time::Instant;

use bytes::Bytes;
use flotilla_logd::block::BlockBuilder;
use flotilla_logd::fleet::{Fleet, FleetConfig, FleetInput, observe, observe_with_head};
use flotilla_logd::query::defaults_for;
use flotilla_logd::{Record, Source};

fn main() {
    const SERVICES: usize = 10_000;
    const RECORDS: usize = 2_000_000;
    let t0: i64 = 1_700_000_000_000_000_000;
    let records: Vec<Record> = (0..RECORDS)
        .map(|i| {
            // A pseudo-random service per record, as 10,000 senders interleave.
            let s = (i.wrapping_mul(2_654_435_761) >> 3) % SERVICES;
            let raw = format!(
                "<14>1 2023-11-14T22:13:20.{:06}Z host-{:04}.prod.example.com app-{:02} 4242 - - \
                 GET /api/v1/items/{i} 200 12ms user=u{s} req-{i:016x}",
                i % 1_000_000,
                s / 12,
                s % 12
            );
            Record {
                received_at: t0 + i as i64 * 2_000,
                source: Source::LOCAL,
                flags: 0,
                raw: Bytes::from(raw),
            }
        })
        .collect();
    let defaults = defaults_for(t0);
    let mut builder = BlockBuilder::new(1);
    let start = Instant::now();
    let mut heads = Vec::with_capacity(RECORDS);
    for r in &records {
        heads.push(builder.push(r, &defaults));
        if builder.is_full() {
            builder.seal(1).unwrap();
        }
    }
    let index_ns = start.elapsed().as_nanos() as f64 / RECORDS as f64;

    for round in 0..2 {
        let mut fleet = Fleet::new(FleetConfig::default());
        let start = Instant::now();
        for (i, r) in records.iter().enumerate() {
            let o = if round == 0 {
                observe(i as u64 + 1, r)
            } else {
                observe_with_head(i as u64 + 1, r, &heads[i])
            };
            fleet.handle(r.received_at, FleetInput::Observe(o));
        }
        let ns = start.elapsed().as_nanos() as f64 / RECORDS as f64;
        println!(
            "{}: {ns:.0} ns/record ({} services)",
            if round == 0 {
                "observe (own parse) + handle"
            } else {
                "observe_with_head + handle"
            },
            fleet.len()
        );
    }
    println!("indexing (block builder, seal): {index_ns:.0} ns/record");
}
