//! What a TCP/TLS listener does with a connection's bytes: split into chunks as the
//! network might deliver them, framed with the keep-all policy, every frame turned into
//! a record's JSON form and matched by a query. Never a panic, never a frame longer than
//! the limit, and the chunking never changes the frames.
#![no_main]
use flotilla_syslog::{FrameDecoder, Framing};
use libfuzzer_sys::fuzz_target;

fn frames(data: &[u8], chunk: usize) -> Vec<(Vec<u8>, bool)> {
    let mut d = FrameDecoder::new(Framing::Auto, 64).keep_all();
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        d.push(c);
        while let Some(Ok(f)) = d.next_frame() {
            out.push((f.to_vec(), d.last_frame_truncated()));
        }
    }
    while let Some(Ok(f)) = d.finish() {
        out.push((f.to_vec(), d.last_frame_truncated()));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let whole = frames(data, data.len());
    let pieces = frames(data, usize::from(chunk % 17) + 1);
    assert_eq!(whole, pieces);
    let matcher = flotilla_logd::Matcher::new(flotilla_logd::Query {
        grep: vec!["a-b".into()],
        severity_max_code: Some(4),
        ..Default::default()
    })
    .expect("a valid query");
    for (frame, truncated) in whole {
        assert!(frame.len() <= 64);
        let record = flotilla_logd::Record {
            received_at: 1_700_000_000_000_000_000,
            source: flotilla_logd::Source::LOCAL,
            flags: u8::from(truncated),
            raw: frame.into(),
        };
        let defaults = flotilla_logd::store::defaults_for(record.received_at);
        let json = flotilla_logd::RecordJson::from_record(1, &record, &defaults);
        let _ = serde_json::to_string(&json).expect("serializable");
        let _ = matcher.matches(record.received_at, &record.raw);
    }
});
