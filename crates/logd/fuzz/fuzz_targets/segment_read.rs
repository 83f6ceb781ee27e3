//! A segment file with arbitrary bytes (a corrupt disk, a half-written file): opening it
//! and reading every block it claims is an error or data, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("flotilla-logd-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("x-2024010100.seg");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(segment) = flotilla_logd::segment::Segment::open_sealed(&path) {
        for entry in &segment.blocks {
            if let Ok(block) = segment.read_block(entry) {
                for i in 0..block.len() {
                    let (_, record) = block.record(i);
                    let _ = flotilla_logd::RecordJson::from_record(
                        0,
                        &record,
                        &flotilla_logd::store::defaults_for(record.received_at),
                    );
                }
            }
        }
    }
});
