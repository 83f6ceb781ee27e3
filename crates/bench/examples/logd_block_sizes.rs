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
        let mut long_filters = 0usize;
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
                filters += sealed
                    .meta
                    .filter
                    .as_ref()
                    .map_or(0, |f| f.fingerprints.len());
                long_filters += sealed
                    .meta
                    .long_filter
                    .as_ref()
                    .map_or(0, |f| f.fingerprints.len());
            }
        }
        let secs = started.elapsed().as_secs_f64();
        if level == 1 {
            // Read back: decompress, decode, search the bytes once (what a query pays
            // for a block its filter could not rule out).
            let mut b2 = BlockBuilder::new(1);
            for (i, line) in lines.iter().take(4096).enumerate() {
                b2.push(
                    &Record {
                        received_at: 1_700_000_000_000_000_000 + i as i64 * 1_000,
                        source: Source::LOCAL,
                        flags: 0,
                        raw: line.clone().into_bytes().into(),
                    },
                    &flotilla_syslog::LenientDefaults::default(),
                );
            }
            let sealed = b2.seal(level).unwrap();
            let finder = memchr::memmem::Finder::new(b"req-0123456789abcdef");
            let t = std::time::Instant::now();
            let rounds = 200;
            for _ in 0..rounds {
                let d =
                    flotilla_logd::block::DecodedBlock::decode(&sealed.compressed, &sealed.meta)
                        .unwrap();
                assert!(d.records_containing(&finder).is_empty());
            }
            let t2 = std::time::Instant::now();
            for _ in 0..rounds {
                let _ = zstd::bulk::decompress(&sealed.compressed, 4 << 20).unwrap();
            }
            println!(
                "  read back one block of 4,096: {:.0} us (zstd alone {:.0} us)",
                t.elapsed().as_secs_f64() * 1e6 / rounds as f64
                    - t2.elapsed().as_secs_f64() * 1e6 / rounds as f64
                    + t2.elapsed().as_secs_f64() * 1e6 / rounds as f64,
                t2.elapsed().as_secs_f64() * 1e6 / rounds as f64
            );
        }
        println!(
            "level {level}: data {:.1} B/msg, filters {:.1} + {:.1} (long tokens) B/msg, {:.0}k msg/s (push+seal)",
            data as f64 / n as f64,
            filters as f64 / n as f64,
            long_filters as f64 / n as f64,
            n as f64 / secs / 1e3
        );
    }
}
