//! An archive object's line (JSON a user or another tool may have written): parsing it
//! and rebuilding the record is an error or a record, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = serde_json::from_slice::<flotilla_logd::RecordJson>(data)
        && let Ok(record) = flotilla_logd::query::record_from_json(&json)
    {
        let _ = flotilla_logd::RecordJson::from_record(
            json.id,
            &record,
            &flotilla_logd::store::defaults_for(record.received_at),
        );
    }
    let _ = flotilla_logd::query::base64_decode(&String::from_utf8_lossy(data));
});
