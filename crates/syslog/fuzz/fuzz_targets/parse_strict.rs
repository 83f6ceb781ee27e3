//! Fuzz target: `parse_strict` never panics, and whatever it accepts turns into a
//! valid `Message` that re-emits and re-parses to the same message.
#![no_main]

use flotilla_syslog::{emit_5424, parse_strict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = parse_strict(data) else {
        return;
    };
    let _ = parsed.msg_str();
    for element in parsed.structured_data.iter() {
        for param in element.params() {
            let _ = param.value();
        }
    }
    let owned = parsed.to_owned();
    assert_eq!(
        owned.validate(),
        Ok(()),
        "strictly parsed message must validate"
    );
    let mut out = Vec::new();
    emit_5424(&owned, &mut out).expect("valid message must emit");
    let reparsed = parse_strict(&out).expect("emitted message must parse strictly");
    // Emission keeps microseconds; strict input has at most 6 fraction digits.
    assert_eq!(reparsed.to_owned(), owned, "round trip changed the message");
});
