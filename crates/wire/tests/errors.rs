//! Every decode error, provoked by a crafted input; random bytes never panic the decoder.

use bytes::{BufMut, Bytes, BytesMut};
use flotilla_wire::{
    ClientToFrontend, Decoder, Direction, ErrorCode, FrameType, FrontendToClient, FrontendToGame,
    GameToFrontend, Message, RawFrame, WireError, WorldId,
};
use proptest::prelude::*;

/// A frame with the given type byte and body.
fn frame(frame_type: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u32(body.len() as u32 + 1);
    out.put_u8(frame_type);
    out.put_slice(body);
    out.freeze()
}

/// Decodes one whole frame as `M`.
fn decode<M: Message>(bytes: Bytes) -> Result<M, WireError> {
    M::decode(&RawFrame::parse(bytes, 1 << 20)?)
}

/// A length-prefixed field.
fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

fn hello_body(magic: &[u8], version: &[u8], name: &[u8]) -> Vec<u8> {
    let mut body = magic.to_vec();
    body.extend_from_slice(version);
    body.push(0); // no session token
    body.extend(field(name));
    body
}

#[test]
fn oversize_length_is_refused_from_the_header_alone() {
    let mut decoder = Decoder::new(1000);
    decoder.feed(&[0, 0, 3, 233]); // 1001
    assert_eq!(
        decoder.next_frame(),
        Err(WireError::FrameTooLarge {
            len: 1001,
            max: 1000
        })
    );
    assert_eq!(
        WireError::FrameTooLarge { len: 0, max: 0 }.code(),
        ErrorCode::FrameTooLarge
    );
}

#[test]
fn an_http_request_is_not_mistaken_for_frames() {
    let mut decoder = Decoder::default();
    decoder.feed(b"GET / HTTP/1.1\r\n\r\n");
    assert!(matches!(
        decoder.next_frame(),
        Err(WireError::FrameTooLarge { .. })
    ));
}

#[test]
fn empty_frame_is_refused() {
    let mut decoder = Decoder::default();
    decoder.feed(&[0, 0, 0, 0]);
    assert_eq!(decoder.next_frame(), Err(WireError::EmptyFrame));
}

#[test]
fn incomplete_frame_is_refused_by_one_shot_parse() {
    assert_eq!(
        RawFrame::parse(Bytes::from_static(&[0, 0, 0, 9, 3, 1]), 100),
        Err(WireError::IncompleteFrame { len: 6 })
    );
    assert!(matches!(
        RawFrame::parse(Bytes::from_static(&[0, 0, 0, 1, 3, 0]), 100),
        Err(WireError::TrailingBytes { count: 1, .. })
    ));
}

#[test]
fn unknown_frame_type_is_refused_before_the_body_arrives() {
    let mut decoder = Decoder::default();
    decoder.feed(&[0, 0, 1, 0, 0xee]);
    assert_eq!(decoder.next_frame(), Err(WireError::UnknownFrameType(0xee)));
    assert_eq!(
        WireError::UnknownFrameType(0xee).code(),
        ErrorCode::Malformed
    );
}

#[test]
fn frame_from_the_wrong_direction_is_refused() {
    let hello = ClientToFrontend::Hello {
        version: 1,
        session_token: None,
        client_name: "bot".into(),
    }
    .encode_to_bytes();
    let error = decode::<FrontendToClient>(hello.clone()).unwrap_err();
    assert_eq!(
        error,
        WireError::UnexpectedFrameType {
            frame_type: FrameType::Hello,
            direction: Direction::FrontendToClient
        }
    );
    assert_eq!(error.code(), ErrorCode::UnexpectedFrame);
    assert!(decode::<GameToFrontend>(hello).is_err());
}

#[test]
fn truncated_and_trailing_bodies_are_refused() {
    assert_eq!(
        decode::<ClientToFrontend>(frame(0x03, &[1, 2, 3])),
        Err(WireError::Truncated {
            frame_type: FrameType::Ping,
            field: "nonce"
        })
    );
    assert_eq!(
        decode::<ClientToFrontend>(frame(0x03, &[0; 9])),
        Err(WireError::TrailingBytes {
            frame_type: FrameType::Ping,
            count: 1
        })
    );
    // A payload length running past the body.
    let mut body = field(b"w");
    body.extend_from_slice(&[10, 1, 2]);
    assert_eq!(
        decode::<ClientToFrontend>(frame(0x14, &body)),
        Err(WireError::Truncated {
            frame_type: FrameType::Input,
            field: "payload"
        })
    );
}

#[test]
fn lying_counts_are_refused_without_allocating() {
    // A change batch claiming 2^62 upserts in a body of a few bytes.
    let mut body = field(b"w");
    body.extend_from_slice(&[0; 8]); // epoch
    body.push(1); // seq
    body.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    assert_eq!(
        decode::<GameToFrontend>(frame(0x13, &body)),
        Err(WireError::Truncated {
            frame_type: FrameType::ChangeBatch,
            field: "upserts"
        })
    );
}

#[test]
fn bad_varints_are_refused() {
    let subscribe_with_seq = |seq: &[u8]| {
        let mut body = field(b"w");
        body.push(1);
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(seq);
        frame(0x10, &body)
    };
    let bad = Err(WireError::BadVarint { field: "since.seq" });
    // Longer than 10 bytes.
    assert_eq!(
        decode::<ClientToFrontend>(subscribe_with_seq(&[0x80; 11])),
        bad
    );
    // Overflows 64 bits in its 10th byte.
    let mut overflow = vec![0xff; 9];
    overflow.push(0x02);
    assert_eq!(
        decode::<ClientToFrontend>(subscribe_with_seq(&overflow)),
        bad
    );
    // Not minimal.
    assert_eq!(
        decode::<ClientToFrontend>(subscribe_with_seq(&[0x81, 0x00])),
        bad
    );
    // The largest u64 is fine.
    let mut max = vec![0xff; 9];
    max.push(0x01);
    let ok = decode::<ClientToFrontend>(subscribe_with_seq(&max)).unwrap();
    assert!(matches!(ok, ClientToFrontend::Subscribe { since: Some(p), .. } if p.seq == u64::MAX));
}

#[test]
fn out_of_range_integers_are_refused() {
    // Version 2^32 does not fit u32.
    let body = hello_body(b"FLTL", &[0x80, 0x80, 0x80, 0x80, 0x10], b"bot");
    assert_eq!(
        decode::<ClientToFrontend>(frame(0x01, &body)),
        Err(WireError::OutOfRange { field: "version" })
    );
    // Error code 70000 does not fit u16.
    assert_eq!(
        decode::<FrontendToClient>(frame(0x05, &[0xf0, 0xa2, 0x04, 0])),
        Err(WireError::OutOfRange { field: "code" })
    );
}

#[test]
fn invalid_utf8_text_is_refused() {
    let body = hello_body(b"FLTL", &[1], &[0xff, 0xfe]);
    assert_eq!(
        decode::<ClientToFrontend>(frame(0x01, &body)),
        Err(WireError::InvalidUtf8 {
            field: "client_name"
        })
    );
    assert_eq!(
        decode::<ClientToFrontend>(frame(0x11, &field(&[0xc3]))),
        Err(WireError::InvalidUtf8 { field: "world" })
    );
}

#[test]
fn bad_tags_are_refused() {
    let mut subscribe = field(b"w");
    subscribe.push(2);
    assert_eq!(
        decode::<FrontendToGame>(frame(0x10, &subscribe)),
        Err(WireError::BadTag {
            field: "since",
            tag: 2
        })
    );
    let mut snapshot = field(b"w");
    snapshot.extend_from_slice(&[0; 8]);
    snapshot.extend_from_slice(&[0, 7, 0]); // seq, part 7, count
    assert_eq!(
        decode::<GameToFrontend>(frame(0x12, &snapshot)),
        Err(WireError::BadTag {
            field: "part",
            tag: 7
        })
    );
    let mut welcome = vec![1];
    welcome.extend(field(b"token"));
    welcome.push(9);
    welcome.extend(field(b"fe-1"));
    assert_eq!(
        decode::<FrontendToClient>(frame(0x02, &welcome)),
        Err(WireError::BadTag {
            field: "resumed",
            tag: 9
        })
    );
    let mut joined = field(b"w");
    joined.push(2); // role
    joined.extend_from_slice(&[0; 8]);
    assert_eq!(
        decode::<FrontendToClient>(frame(0x18, &joined)),
        Err(WireError::BadTag {
            field: "role",
            tag: 2
        })
    );
    // `Refused` names a request a client can make: not a `Welcome` (0x02), not 0x99.
    for request in [0x02, 0x99] {
        let mut refused = vec![request, 0];
        refused.extend([10]);
        refused.extend(field(b"no"));
        assert_eq!(
            decode::<FrontendToClient>(frame(0x19, &refused)),
            Err(WireError::BadTag {
                field: "request",
                tag: request
            })
        );
    }
    let mut refused = vec![0x17, 2];
    refused.extend([10]);
    refused.extend(field(b"no"));
    assert_eq!(
        decode::<FrontendToClient>(frame(0x19, &refused)),
        Err(WireError::BadTag {
            field: "world",
            tag: 2
        })
    );
}

#[test]
fn bad_world_ids_are_refused() {
    assert_eq!(
        decode::<GameToFrontend>(frame(0x23, &[0])),
        Err(WireError::BadWorldId { len: 0 })
    );
    let mut long = vec![0x80, 0x02]; // 256
    long.extend_from_slice(&[b'w'; 256]);
    assert_eq!(
        decode::<GameToFrontend>(frame(0x23, &long)),
        Err(WireError::BadWorldId { len: 256 })
    );
    assert_eq!(WorldId::new(""), Err(WireError::BadWorldId { len: 0 }));
    assert!(WorldId::new(&"w".repeat(255)).is_ok());
    assert!(WorldId::DIRECTORY.is_reserved());
    assert_eq!(WorldId::DIRECTORY.as_str(), "$directory");
}

#[test]
fn bad_magic_is_refused() {
    let body = hello_body(b"HTTP", &[1], b"bot");
    assert_eq!(
        decode::<ClientToFrontend>(frame(0x01, &body)),
        Err(WireError::BadMagic)
    );
    let mut game_hello = b"FLTX".to_vec();
    game_hello.push(1);
    game_hello.extend(field(b"fe"));
    assert_eq!(
        decode::<FrontendToGame>(frame(0x20, &game_hello)),
        Err(WireError::BadMagic)
    );
}

#[test]
fn a_decoder_stays_poisoned_after_an_error() {
    let mut decoder = Decoder::default();
    decoder.feed(&frame(0x03, &[1, 2, 3]));
    let error = decoder.next_message::<ClientToFrontend>().unwrap_err();
    decoder.feed(&ClientToFrontend::Ping { nonce: 1 }.encode_to_bytes());
    assert_eq!(
        decoder.next_message::<ClientToFrontend>(),
        Err(error.clone())
    );
    assert_eq!(decoder.next_frame(), Err(error));
}

#[test]
fn an_idle_decoder_releases_its_buffer() {
    let mut decoder = Decoder::default();
    decoder.feed(&ClientToFrontend::Ping { nonce: 1 }.encode_to_bytes()[..6]);
    assert!(decoder.next_frame().unwrap().is_none());
    assert!(!decoder.release_idle_buffer());
    decoder.feed(&ClientToFrontend::Ping { nonce: 1 }.encode_to_bytes()[6..]);
    assert!(decoder.next_frame().unwrap().is_some());
    assert!(decoder.release_idle_buffer());
    assert_eq!(decoder.buffer_mut().capacity(), 0);
}

/// Decodes everything in `input` (fed in `chunk`-sized pieces) as `M` until an error.
fn drain<M: Message + PartialEq + std::fmt::Debug>(
    input: &[u8],
    chunk: usize,
    max_frame_len: usize,
) {
    let mut decoder = Decoder::new(max_frame_len);
    for piece in input.chunks(chunk.max(1)) {
        decoder.feed(piece);
        loop {
            match decoder.next_message::<M>() {
                Ok(Some(message)) => {
                    // Whatever decodes re-encodes to something that decodes the same.
                    let again = RawFrame::parse(message.encode_to_bytes(), usize::MAX)
                        .and_then(|raw| M::decode(&raw));
                    assert_eq!(again.ok().as_ref(), Some(&message));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512), chunk in 1usize..64) {
        drain::<ClientToFrontend>(&input, chunk, 256);
        drain::<FrontendToClient>(&input, chunk, 256);
        drain::<FrontendToGame>(&input, chunk, 256);
        drain::<GameToFrontend>(&input, chunk, 256);
    }

    /// Random bodies behind valid headers reach the body decoders.
    #[test]
    fn random_bodies_never_panic(
        frame_type in prop::sample::select(FrameType::ALL.to_vec()),
        body in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let bytes = frame(frame_type as u8, &body);
        drain::<ClientToFrontend>(&bytes, bytes.len(), 1 << 20);
        drain::<FrontendToClient>(&bytes, bytes.len(), 1 << 20);
        drain::<FrontendToGame>(&bytes, bytes.len(), 1 << 20);
        drain::<GameToFrontend>(&bytes, bytes.len(), 1 << 20);
    }
}
