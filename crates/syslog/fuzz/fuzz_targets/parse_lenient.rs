//! Fuzz target: `parse_lenient` never panics and only fails on empty input; a
//! lenient result that validates re-emits and re-parses strictly to the same message
//! (timestamp truncated to microseconds), and `sanitize` always makes it valid.
#![no_main]

use flotilla_syslog::{
    Error, LenientDefaults, Rfc3164Options, Timestamp, emit_3164, emit_5424, parse_lenient,
    parse_strict,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let defaults = LenientDefaults {
        now: data.first().map(|&b| {
            Timestamp::from_unix(i64::from(b) * 86_400 * 30, 0).unwrap_or(Timestamp::UNIX_EPOCH)
        }),
        utc_offset_minutes: data.get(1).map_or(0, |&b| i16::from(b as i8) * 10),
        ..LenientDefaults::default()
    };
    let parsed = match parse_lenient(data, &defaults) {
        Ok(parsed) => parsed,
        Err(error) => {
            assert_eq!(error, Error::EmptyInput);
            assert!(data.iter().all(|b| matches!(b, b'\n' | b'\r' | 0)));
            return;
        }
    };
    let _ = parsed.msg_str();
    let mut owned = parsed.to_owned();
    if owned.validate().is_ok() {
        let mut out = Vec::new();
        emit_5424(&owned, &mut out).expect("valid message must emit");
        let mut expected = owned.clone();
        expected.timestamp = expected.timestamp.map(Timestamp::truncated_to_micros);
        let reparsed = parse_strict(&out).expect("emitted message must parse strictly");
        assert_eq!(reparsed.to_owned(), expected);
    }
    owned.sanitize();
    assert_eq!(owned.validate(), Ok(()), "sanitized message must validate");
    let mut out = Vec::new();
    emit_5424(&owned, &mut out).expect("sanitized message must emit");
    let mut bsd = Vec::new();
    emit_3164(&owned, &Rfc3164Options::default(), &mut bsd)
        .expect("sanitized message must emit as 3164");
    assert!(bsd.len() <= 1024);
});
