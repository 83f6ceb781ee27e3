//! Property tests: random binary messages, randomly fragmented and interleaved with pings
//! and pongs, encoded by one side and decoded by the other from randomly split reads.

use flotilla_ws::{
    Control, FrameDecoder, MAX_HEADER_LEN, Opcode, Role, apply_mask, close_payload, encode_header,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// One frame of a binary message, optionally followed by a control frame.
#[derive(Debug, Clone)]
struct Fragment {
    payload: Vec<u8>,
    mask: [u8; 4],
    /// A Ping (`true`) or Pong (`false`) with this payload, sent after the fragment.
    control_after: Option<(bool, Vec<u8>, [u8; 4])>,
}

/// Encodes one frame, masked for `Role::Server` decoders (what a client sends).
fn frame(decoder_role: Role, fin: bool, opcode: Opcode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mask = (decoder_role == Role::Server).then_some(mask);
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(fin, opcode, payload.len() as u64, mask, &mut header);
    let mut bytes = header[..header_len].to_vec();
    bytes.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut bytes[header_len..], mask, 0);
    }
    bytes
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => prop::collection::vec(any::<u8>(), 0..40),
        8 => prop::collection::vec(any::<u8>(), 100..300),
        1 => prop::collection::vec(any::<u8>(), 65_000..66_000),
    ]
}

fn fragment() -> impl Strategy<Value = Fragment> {
    let control = prop::option::weighted(
        0.3,
        (
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..=125),
            any::<[u8; 4]>(),
        ),
    );
    (payload(), any::<[u8; 4]>(), control).prop_map(|(payload, mask, control_after)| Fragment {
        payload,
        mask,
        control_after,
    })
}

/// Messages (each a non-empty list of fragments).
fn messages() -> impl Strategy<Value = Vec<Vec<Fragment>>> {
    prop::collection::vec(prop::collection::vec(fragment(), 1..5), 0..6)
}

/// Encodes `messages` (and a final Close when `close` is set); returns the stream, the
/// expected data and the expected controls.
fn encode(
    decoder_role: Role,
    messages: &[Vec<Fragment>],
    close: Option<u16>,
) -> (Vec<u8>, Vec<u8>, Vec<Control>) {
    let (mut stream, mut data, mut controls) = (Vec::new(), Vec::new(), Vec::new());
    for message in messages {
        for (index, fragment) in message.iter().enumerate() {
            let opcode = if index == 0 {
                Opcode::Binary
            } else {
                Opcode::Continuation
            };
            let fin = index + 1 == message.len();
            stream.extend(frame(
                decoder_role,
                fin,
                opcode,
                &fragment.payload,
                fragment.mask,
            ));
            data.extend_from_slice(&fragment.payload);
            if let Some((is_ping, payload, mask)) = &fragment.control_after {
                let opcode = if *is_ping { Opcode::Ping } else { Opcode::Pong };
                stream.extend(frame(decoder_role, true, opcode, payload, *mask));
                controls.push(if *is_ping {
                    Control::Ping(payload.clone())
                } else {
                    Control::Pong(payload.clone())
                });
            }
        }
    }
    if let Some(code) = close {
        stream.extend(frame(
            decoder_role,
            true,
            Opcode::Close,
            &close_payload(code, "done"),
            [9, 8, 7, 6],
        ));
        controls.push(Control::Close {
            code: Some(code),
            reason: "done".into(),
        });
        // Ignored: after the Close.
        stream.extend(frame(
            decoder_role,
            true,
            Opcode::Binary,
            b"late",
            [1, 1, 1, 1],
        ));
    }
    (stream, data, controls)
}

/// Feeds `stream` to a decoder in pieces cut at `cuts`, draining controls after each call.
fn decode_split(decoder_role: Role, stream: &[u8], cuts: &[Index]) -> (Vec<u8>, Vec<Control>) {
    let mut positions: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
    positions.push(0);
    positions.push(stream.len());
    positions.sort_unstable();
    let mut decoder = FrameDecoder::new(decoder_role, 1000);
    let (mut data, mut controls, mut pending) = (Vec::new(), Vec::new(), Vec::new());
    for window in positions.windows(2) {
        decoder
            .decode(&stream[window[0]..window[1]], &mut data, &mut pending)
            .expect("valid stream");
        controls.append(&mut pending);
    }
    assert!(decoder.is_idle());
    (data, controls)
}

fn check(decoder_role: Role, messages: &[Vec<Fragment>], close: Option<u16>, cuts: &[Index]) {
    let (stream, expected_data, expected_controls) = encode(decoder_role, messages, close);
    let (data, controls) = decode_split(decoder_role, &stream, cuts);
    assert_eq!(data, expected_data);
    assert_eq!(controls, expected_controls);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn client_frames_into_server_decoder(
        messages in messages(),
        close in prop::option::of(prop_oneof![Just(1000u16), Just(1001), 3000..5000u16]),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        check(Role::Server, &messages, close, &cuts);
    }

    #[test]
    fn server_frames_into_client_decoder(
        messages in messages(),
        close in prop::option::of(prop_oneof![Just(1000u16), Just(1001), 3000..5000u16]),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        check(Role::Client, &messages, close, &cuts);
    }

    /// Splitting never changes the outcome, even for garbage: same data, controls and error.
    #[test]
    fn splitting_does_not_change_garbage_outcome(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        cut in any::<Index>(),
        server in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let cut = cut.index(bytes.len() + 1);
        let mut whole = FrameDecoder::new(role, 1000);
        let (mut whole_data, mut whole_controls) = (Vec::new(), Vec::new());
        let whole_result = whole.decode(&bytes, &mut whole_data, &mut whole_controls);
        let mut split = FrameDecoder::new(role, 1000);
        let (mut split_data, mut split_controls) = (Vec::new(), Vec::new());
        let split_result = split
            .decode(&bytes[..cut], &mut split_data, &mut split_controls)
            .and_then(|()| split.decode(&bytes[cut..], &mut split_data, &mut split_controls));
        prop_assert_eq!(whole_result, split_result);
        prop_assert_eq!(whole_data, split_data);
        prop_assert_eq!(whole_controls, split_controls);
    }
}
