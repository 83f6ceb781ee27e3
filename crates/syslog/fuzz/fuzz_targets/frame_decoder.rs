//! Fuzz target: the RFC 6587 frame decoder, in every framing mode, fed the input in
//! chunks whose size comes from the first byte, never panics, never returns a frame
//! over the maximum, keeps its buffer bounded, and drains completely at the end.
#![no_main]

use flotilla_syslog::{FrameDecoder, Framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control % 32) + 1;
    let max = usize::from(control / 32) * 16;
    for framing in [Framing::OctetCounting, Framing::LineFeed, Framing::Auto] {
        let mut decoder = FrameDecoder::new(framing, max);
        for piece in rest.chunks(chunk) {
            decoder.push(piece);
            while let Some(frame) = decoder.next_frame() {
                if let Ok(frame) = frame {
                    assert!(frame.len() <= max);
                    if framing == Framing::LineFeed {
                        assert!(!frame.is_empty() && !frame.contains(&b'\n'));
                    }
                }
            }
            assert!(decoder.buffered_len() <= max + chunk + 22);
        }
        let mut guard = 0;
        while decoder.finish().is_some() {
            guard += 1;
            assert!(guard <= rest.len() + 1, "finish must terminate");
        }
        assert_eq!(decoder.buffered_len(), 0);
    }
});
