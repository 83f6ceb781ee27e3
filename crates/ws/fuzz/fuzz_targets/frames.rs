//! Fuzz target `frames`: arbitrary bytes through server-role and client-role frame
//! decoders, whole and split at an arbitrary point. Must never panic; splitting must not
//! change the outcome; memory stays bounded by the input (and the control limit); a failed
//! decoder keeps failing with the same error and a closed one ignores input.
#![no_main]

use flotilla_ws::{Control, FrameDecoder, MAX_CONTROL_PAYLOAD, Role, WsError};
use libfuzzer_sys::fuzz_target;

/// What one decoder produced.
type Outcome = (Result<(), WsError>, Vec<u8>, Vec<Control>);

/// Decodes `pieces` in order with a fresh decoder, stopping at the first error, then checks
/// the decoder's behaviour once failed or closed.
fn run(role: Role, max_controls: u32, pieces: &[&[u8]]) -> Outcome {
    let mut decoder = FrameDecoder::new(role, max_controls);
    let (mut data, mut controls) = (Vec::new(), Vec::new());
    let mut result = Ok(());
    for piece in pieces {
        result = decoder.decode(piece, &mut data, &mut controls);
        if result.is_err() {
            break;
        }
    }
    let input_len: usize = pieces.iter().map(|piece| piece.len()).sum();
    assert!(data.len() <= input_len);
    assert!(controls.len() <= max_controls as usize);
    for control in &controls {
        match control {
            Control::Ping(payload) | Control::Pong(payload) => {
                assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
            }
            Control::Close { reason, .. } => assert!(reason.len() <= MAX_CONTROL_PAYLOAD - 2),
        }
    }
    // Once failed or closed, more input changes nothing.
    if result.is_err() || decoder.is_closed() {
        assert!(decoder.is_idle());
        let (data_len, controls_len) = (data.len(), controls.len());
        let again = decoder.decode(pieces.concat().as_slice(), &mut data, &mut controls);
        assert_eq!(again, result);
        assert_eq!((data.len(), controls.len()), (data_len, controls_len));
    }
    (result, data, controls)
}

fuzz_target!(|data: &[u8]| {
    let Some((split_bytes, input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_be_bytes(*split_bytes)) % (input.len() + 1);
    let (head, tail) = input.split_at(split);
    for role in [Role::Server, Role::Client] {
        let whole = run(role, u32::MAX, &[input]);
        let split = run(role, u32::MAX, &[head, tail]);
        assert_eq!(whole, split);
        // A small control limit only ever turns success into TooManyControlFrames.
        let limited = run(role, 2, &[head, tail]);
        if limited.0.is_ok() {
            assert_eq!(limited, whole);
        } else if limited.0 != whole.0 {
            assert_eq!(limited.0, Err(WsError::TooManyControlFrames(2)));
        }
    }
});
