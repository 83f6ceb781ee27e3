//! Whatever bytes a write-ahead log file holds after a crash or corruption, recovery
//! decodes a valid prefix and never panics; re-encoding what it decoded gives a file that
//! decodes to the same records.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut records = Vec::new();
    let (valid, clean) = flotilla_logd::wal::decode_file(data, &mut records);
    assert!(valid as usize <= data.len());
    if clean {
        assert_eq!(valid as usize, data.len());
    }
    // The valid prefix alone decodes to the same records, cleanly.
    let mut again = Vec::new();
    let (valid2, clean2) = flotilla_logd::wal::decode_file(&data[..valid as usize], &mut again);
    assert_eq!(valid2, valid);
    assert!(clean2 || valid == 0);
    assert_eq!(again, records);
});
