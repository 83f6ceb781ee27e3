//! Fuzz target `decode`: arbitrary bytes, in arbitrary chunks, through the frame decoder
//! and every direction's message decoder. Must never panic; whatever decodes must
//! re-encode to bytes that decode to the same message; snapshot parts go through the
//! assembler; a `Join`'s token goes through the token decoder (and, decoded, re-signs to
//! the same bytes).
#![no_main]

use flotilla_wire::{
    ClientToFrontend, Decoder, FrontendToClient, FrontendToGame, GameToFrontend, JoinToken,
    Message, RawFrame, SnapshotAssembler,
};
use libfuzzer_sys::fuzz_target;

/// Checks that `message` survives a re-encode.
fn check_round_trip<M: Message + PartialEq + std::fmt::Debug>(message: &M) {
    let bytes = message.encode_to_bytes();
    let raw = RawFrame::parse(bytes, usize::MAX).expect("re-encoded frame parses");
    let again = M::decode(&raw).expect("re-encoded frame decodes");
    assert_eq!(&again, message);
}

/// Decodes `input` as messages of type `M`, fed in `chunk`-byte pieces.
fn drain<M: Message + PartialEq + std::fmt::Debug>(
    input: &[u8],
    chunk: usize,
    max_frame_len: usize,
    mut inspect: impl FnMut(&M),
) {
    let mut decoder = Decoder::new(max_frame_len);
    for piece in input.chunks(chunk.max(1)) {
        decoder.feed(piece);
        loop {
            match decoder.next_message::<M>() {
                Ok(Some(message)) => {
                    check_round_trip(&message);
                    inspect(&message);
                }
                Ok(None) => break,
                Err(_) => {
                    // Poisoned: every later call reports an error too.
                    assert!(decoder.next_frame().is_err());
                    return;
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control & 0x3f) + 1;
    let max_frame_len = if control & 0x40 == 0 { 1 << 20 } else { 64 };
    drain::<ClientToFrontend>(input, chunk, max_frame_len, |message| {
        if let ClientToFrontend::Join { token } = message
            && let Ok(decoded) = JoinToken::decode(token)
        {
            let again = decoded
                .claims()
                .sign_with(|_| *decoded.signature())
                .expect("a decoded token's claims encode");
            assert_eq!(&again, token);
        }
    });
    let mut assembler = SnapshotAssembler::new();
    drain::<FrontendToClient>(input, chunk, max_frame_len, |message| {
        if let FrontendToClient::Snapshot { part, snapshot, .. } = message {
            let _ = assembler.push(*part, snapshot.clone());
        }
    });
    drain::<FrontendToGame>(input, chunk, max_frame_len, |_| {});
    drain::<GameToFrontend>(input, chunk, max_frame_len, |_| {});
});
