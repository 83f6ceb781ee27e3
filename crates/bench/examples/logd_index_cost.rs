//! What logd's indexer spends per record, alone on one core, split by step: tokenizing
//! and hashing the words, and the whole of `BlockBuilder::push` (words, fields, parse)
//! and `seal` (zstd and the filters). Two shapes of line: syslog-ng's `loggen` (what
//! `flotilla bench logd` ingests) and the realistic lines of its query part.
//!
//! `cargo run --release -p flotilla-bench --example logd_index_cost`
#![allow(clippy::unwrap_used, clippy::expect_used)] // An example: a panic is a failure.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use flotilla_bench::logd::RealisticLog;
use flotilla_logd::block::BlockBuilder;
use flotilla_logd::query::defaults_for;
use flotilla_logd::tokens::{HashSet64, for_each_token, token_hash};
use flotilla_logd::{Record, Source};

const RECORDS: usize = 1_000_000;

fn loggen_line(i: usize) -> String {
    // The shape `loggen --syslog-proto --size=200` sends (BOM before MSG).
    format!(
        "<38>1 2026-12-06T14:36:22+00:00 localhost prg00000 1234 - - \u{feff}seq: {i:010}, \
         thread: {:04}, runid: 1796567772, stamp: 2026-12-06T14:36:22 \
         PADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPAD",
        i % 2
    )
}

fn measure(name: &str, records: &[Record]) {
    let t0 = records[0].received_at;
    let defaults = defaults_for(t0);
    let n = records.len() as f64;

    let start = Instant::now();
    let mut acc = 0u64;
    for r in records {
        for_each_token(&r.raw, |t| acc = acc.wrapping_add(t.len() as u64));
    }
    black_box(acc);
    let tok_ns = start.elapsed().as_nanos() as f64 / n;
    let start = Instant::now();
    for r in records {
        for_each_token(&r.raw, |t| acc = acc.wrapping_add(token_hash(t)));
    }
    black_box(acc);
    let hash_ns = start.elapsed().as_nanos() as f64 / n;
    println!("{name:9} tokens only {tok_ns:6.0}   tokens+hash {hash_ns:6.0}");
    let mut set = HashSet64::new();
    let start = Instant::now();
    for r in records {
        for_each_token(&r.raw, |t| set.insert(token_hash(t)));
        if set.len() > 60_000 {
            black_box(set.drain());
        }
    }
    let words_ns = start.elapsed().as_nanos() as f64 / n;

    let mut builder = BlockBuilder::new(1);
    let start = Instant::now();
    for r in records {
        black_box(builder.push(r, &defaults));
        if builder.is_full() {
            black_box(builder.seal(1).unwrap());
        }
    }
    let all_ns = start.elapsed().as_nanos() as f64 / n;
    println!("{name:9} words+hashes {words_ns:6.0} ns/record   push+seal {all_ns:6.0} ns/record");
}

fn main() {
    let t0: i64 = 1_796_567_782_000_000_000;
    let record = |i: usize, raw: String| Record {
        received_at: t0 + i as i64 * 2_000,
        source: Source::LOCAL,
        flags: 0,
        raw: Bytes::from(raw),
    };
    let loggen: Vec<Record> = (0..RECORDS).map(|i| record(i, loggen_line(i))).collect();
    let mut log = RealisticLog::new(7);
    let realistic: Vec<Record> = (0..RECORDS)
        .map(|i| record(i, log.line(7, i as u64)))
        .collect();
    for _ in 0..2 {
        measure("loggen", &loggen);
        measure("realistic", &realistic);
    }
}
