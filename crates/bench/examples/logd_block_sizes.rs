//! Bytes per message of logd's blocks on the realistic messages of `bench logd`, for a few
//! block sizes and zstd levels, with the filter's share: how the storage defaults were
//! chosen. `cargo run --release -p flotilla-bench --example logd_block_sizes`
#![allow(clippy::unwrap_used)]

use flotilla_bench::logd::RealisticLog;
use flotilla_logd::block::BlockBuilder;
use flotilla_logd::{Record, Source};

fn main() {
    let n = 400_000u64;
    let mut generator = RealisticLog::new(7);
    let lines: Vec<String> = (0..n).map(|i| generator.line(7, i)).collect();
    let raw: usize = lines.iter().map(String::len).sum();
    println!("{n} messages, {:.1} B each", raw as f64 / n as f64);
    for level in [1, 3, 6, 9] {
        let mut data = 0usize;
        let mut filters = 0usize;
        let started = std::time::Instant::now();
        let mut b = BlockBuilder::new(1);
        for (i, line) in lines.iter().enumerate() {
            b.push(
                &Record {
                    received_at: 1_700_000_000_000_000_000 + i as i64 * 1_000,
                    source: Source::LOCAL,
                    flags: 0,
                    raw: line.clone().into_bytes().into(),
                },
                &flotilla_syslog::LenientDefaults::default(),
            );
            if b.is_full() || i + 1 == lines.len() {
                let sealed = b.seal(level).unwrap();
                data += sealed.compressed.len();
                filters += sealed.meta.filter.as_ref().map_or(0, |f| f.fingerprints.len());
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "level {level}: data {:.1} B/msg, filter {:.1} B/msg, {:.0}k msg/s (push+seal)",
            data as f64 / n as f64,
            filters as f64 / n as f64,
            n as f64 / secs / 1e3
        );
    }
}
