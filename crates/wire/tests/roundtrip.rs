//! Every frame type survives encode -> decode (in random chunks) unchanged; shared frames
//! are byte-identical across directions; snapshots split and reassemble.

use bytes::{Bytes, BytesMut};
use flotilla_wire::{
    ClientToFrontend, Decoder, Direction, ErrorCode, FrameType, FrontendToClient, FrontendToGame,
    GameToFrontend, JoinClaims, JoinToken, Message, RawFrame, Role, SNAPSHOT_ENTRY_OVERHEAD_BYTES,
    SessionId, SnapshotAssembler, SnapshotPart, WorldId, encode_snapshot, join_token_from_text,
    join_token_to_text,
};
use flotilla_world::{ChangeBatch, Position, Snapshot};
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,20}"
}

fn world() -> impl Strategy<Value = WorldId> {
    prop_oneof![
        Just(WorldId::DIRECTORY),
        "[a-z0-9\\-é]{1,30}".prop_map(|name| WorldId::new(&name).expect("valid world id")),
        Just(WorldId::new(&"w".repeat(255)).expect("255 bytes is allowed")),
    ]
}

fn code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        (1u16..=12).prop_map(ErrorCode::from_u16),
        (13u16..).prop_map(ErrorCode::Other),
        Just(ErrorCode::Other(0))
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Observer), Just(Role::Player)]
}

/// A request a client can make, as `Refused` names it.
fn request() -> impl Strategy<Value = FrameType> {
    prop::sample::select(
        FrameType::ALL
            .iter()
            .copied()
            .filter(|t| t.allowed(Direction::ClientToFrontend))
            .collect::<Vec<_>>(),
    )
}

fn position() -> impl Strategy<Value = Option<Position>> {
    prop::option::of((any::<u64>(), any::<u64>()).prop_map(|(epoch, seq)| Position { epoch, seq }))
}

fn entries() -> impl Strategy<Value = Vec<(Bytes, Bytes)>> {
    prop::collection::vec((bytes(), bytes()), 0..10)
}

fn batch() -> impl Strategy<Value = ChangeBatch> {
    (
        any::<u64>(),
        any::<u64>(),
        entries(),
        prop::collection::vec(bytes(), 0..10),
    )
        .prop_map(|(epoch, seq, upserts, removes)| ChangeBatch {
            epoch,
            seq,
            upserts,
            removes,
        })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (any::<u64>(), any::<u64>(), entries()).prop_map(|(epoch, seq, entries)| Snapshot {
        epoch,
        seq,
        entries,
    })
}

fn part() -> impl Strategy<Value = SnapshotPart> {
    prop_oneof![
        Just(SnapshotPart::Whole),
        Just(SnapshotPart::First),
        Just(SnapshotPart::Middle),
        Just(SnapshotPart::Last)
    ]
}

fn client_to_frontend() -> impl Strategy<Value = ClientToFrontend> {
    prop_oneof![
        (any::<u32>(), prop::option::of(bytes()), text()).prop_map(
            |(version, session_token, client_name)| {
                ClientToFrontend::Hello {
                    version,
                    session_token,
                    client_name,
                }
            }
        ),
        any::<u64>().prop_map(|nonce| ClientToFrontend::Ping { nonce }),
        any::<u64>().prop_map(|nonce| ClientToFrontend::Pong { nonce }),
        (world(), position())
            .prop_map(|(world, since)| ClientToFrontend::Subscribe { world, since }),
        world().prop_map(|world| ClientToFrontend::Unsubscribe { world }),
        (world(), bytes()).prop_map(|(world, payload)| ClientToFrontend::Input { world, payload }),
        bytes().prop_map(|token| ClientToFrontend::Join { token }),
        (code(), text()).prop_map(|(code, text)| ClientToFrontend::Error { code, text }),
    ]
}

fn frontend_to_client() -> impl Strategy<Value = FrontendToClient> {
    prop_oneof![
        (any::<u32>(), bytes(), any::<bool>(), text()).prop_map(
            |(version, session_token, resumed, server_id)| {
                FrontendToClient::Welcome {
                    version,
                    session_token,
                    resumed,
                    server_id,
                }
            }
        ),
        any::<u64>().prop_map(|nonce| FrontendToClient::Ping { nonce }),
        any::<u64>().prop_map(|nonce| FrontendToClient::Pong { nonce }),
        (world(), part(), snapshot()).prop_map(|(world, part, snapshot)| {
            FrontendToClient::Snapshot {
                world,
                part,
                snapshot,
            }
        }),
        (world(), batch())
            .prop_map(|(world, batch)| FrontendToClient::ChangeBatch { world, batch }),
        (world(), bytes()).prop_map(|(world, payload)| FrontendToClient::Output { world, payload }),
        (world(), code(), text()).prop_map(|(world, code, text)| FrontendToClient::Unsubscribed {
            world,
            code,
            text
        }),
        (world(), role(), any::<u64>()).prop_map(|(world, role, expires_unix)| {
            FrontendToClient::Joined {
                world,
                role,
                expires_unix,
            }
        }),
        (request(), prop::option::of(world()), code(), text()).prop_map(
            |(request, world, code, text)| FrontendToClient::Refused {
                request,
                world,
                code,
                text,
            }
        ),
        (code(), text()).prop_map(|(code, text)| FrontendToClient::Error { code, text }),
    ]
}

fn frontend_to_game() -> impl Strategy<Value = FrontendToGame> {
    prop_oneof![
        (any::<u32>(), text()).prop_map(|(version, frontend_id)| FrontendToGame::Hello {
            version,
            frontend_id
        }),
        any::<u64>().prop_map(|nonce| FrontendToGame::Ping { nonce }),
        any::<u64>().prop_map(|nonce| FrontendToGame::Pong { nonce }),
        (world(), position()).prop_map(|(world, since)| FrontendToGame::Subscribe { world, since }),
        world().prop_map(|world| FrontendToGame::Unsubscribe { world }),
        (world(), any::<u64>(), bytes()).prop_map(|(world, session, payload)| {
            FrontendToGame::Input {
                world,
                session: SessionId(session),
                payload,
            }
        }),
        (any::<u64>(), text()).prop_map(|(session, client_name)| FrontendToGame::SessionOpened {
            session: SessionId(session),
            client_name
        }),
        (any::<u64>(), text()).prop_map(|(session, client_name)| FrontendToGame::SessionHeld {
            session: SessionId(session),
            client_name
        }),
        any::<u64>().prop_map(|session| FrontendToGame::SessionClosed {
            session: SessionId(session)
        }),
        (code(), text()).prop_map(|(code, text)| FrontendToGame::Error { code, text }),
    ]
}

fn game_to_frontend() -> impl Strategy<Value = GameToFrontend> {
    prop_oneof![
        (any::<u32>(), text())
            .prop_map(|(version, server_id)| GameToFrontend::Welcome { version, server_id }),
        any::<u64>().prop_map(|nonce| GameToFrontend::Ping { nonce }),
        any::<u64>().prop_map(|nonce| GameToFrontend::Pong { nonce }),
        (world(), bytes()).prop_map(|(world, info)| GameToFrontend::WorldAdded { world, info }),
        world().prop_map(|world| GameToFrontend::WorldRemoved { world }),
        (world(), part(), snapshot()).prop_map(|(world, part, snapshot)| {
            GameToFrontend::Snapshot {
                world,
                part,
                snapshot,
            }
        }),
        (world(), batch()).prop_map(|(world, batch)| GameToFrontend::ChangeBatch { world, batch }),
        (world(), any::<u64>(), bytes()).prop_map(|(world, session, payload)| {
            GameToFrontend::Output {
                world,
                session: SessionId(session),
                payload,
            }
        }),
        any::<u64>().prop_map(|session| GameToFrontend::SessionMoved {
            session: SessionId(session)
        }),
        (code(), text()).prop_map(|(code, text)| GameToFrontend::Error { code, text }),
    ]
}

/// Encodes all messages into one stream, feeds it to a decoder in chunks of the given
/// sizes (cycled), and returns the decoded messages.
fn through_decoder<M: Message>(messages: &[M], chunk_sizes: &[usize]) -> Vec<M> {
    let mut stream = BytesMut::new();
    for message in messages {
        let before = stream.len();
        message.encode(&mut stream);
        // encode_to_bytes gives the same bytes.
        assert_eq!(&stream[before..], &message.encode_to_bytes()[..]);
    }
    let mut decoder = Decoder::default();
    let mut decoded = Vec::new();
    let mut offset = 0;
    let mut sizes = chunk_sizes.iter().cycle();
    while offset < stream.len() {
        let size = (*sizes.next().expect("chunk sizes are not empty"))
            .max(1)
            .min(stream.len() - offset);
        decoder.feed(&stream[offset..offset + size]);
        offset += size;
        while let Some(message) = decoder.next_message::<M>().expect("valid frames decode") {
            decoded.push(message);
        }
    }
    assert_eq!(decoder.buffered_len(), 0);
    decoded
}

proptest! {
    #[test]
    fn client_to_frontend_round_trips(
        messages in prop::collection::vec(client_to_frontend(), 1..8),
        chunks in prop::collection::vec(1usize..64, 1..8),
    ) {
        prop_assert_eq!(through_decoder(&messages, &chunks), messages);
    }

    #[test]
    fn frontend_to_client_round_trips(
        messages in prop::collection::vec(frontend_to_client(), 1..8),
        chunks in prop::collection::vec(1usize..64, 1..8),
    ) {
        prop_assert_eq!(through_decoder(&messages, &chunks), messages);
    }

    #[test]
    fn frontend_to_game_round_trips(
        messages in prop::collection::vec(frontend_to_game(), 1..8),
        chunks in prop::collection::vec(1usize..64, 1..8),
    ) {
        prop_assert_eq!(through_decoder(&messages, &chunks), messages);
    }

    #[test]
    fn game_to_frontend_round_trips(
        messages in prop::collection::vec(game_to_frontend(), 1..8),
        chunks in prop::collection::vec(1usize..64, 1..8),
    ) {
        prop_assert_eq!(through_decoder(&messages, &chunks), messages);
    }

    /// The forwarding fast path: what a game server sends is byte for byte what a client
    /// must receive, so the front-end forwards the raw frame.
    #[test]
    fn game_frames_forward_unchanged_to_clients(world in world(), batch in batch(), part in part(), snapshot in snapshot(), nonce in any::<u64>(), code in code(), text in text()) {
        let pairs = [
            (
                GameToFrontend::ChangeBatch { world: world.clone(), batch: batch.clone() }.encode_to_bytes(),
                FrontendToClient::ChangeBatch { world: world.clone(), batch: batch.clone() },
            ),
            (
                GameToFrontend::Snapshot { world: world.clone(), part, snapshot: snapshot.clone() }.encode_to_bytes(),
                FrontendToClient::Snapshot { world: world.clone(), part, snapshot },
            ),
            (GameToFrontend::Ping { nonce }.encode_to_bytes(), FrontendToClient::Ping { nonce }),
            (GameToFrontend::Pong { nonce }.encode_to_bytes(), FrontendToClient::Pong { nonce }),
            (
                GameToFrontend::Error { code, text: text.clone() }.encode_to_bytes(),
                FrontendToClient::Error { code, text },
            ),
        ];
        for (game_bytes, client_message) in pairs {
            prop_assert_eq!(&game_bytes, &client_message.encode_to_bytes());
            let raw = RawFrame::parse(game_bytes.clone(), 1 << 20).unwrap();
            prop_assert_eq!(FrontendToClient::decode(&raw).unwrap(), client_message);
        }
        prop_assert_eq!(
            flotilla_wire::change_batch_frame(&world, &batch),
            GameToFrontend::ChangeBatch { world, batch }.encode_to_bytes()
        );
    }

    /// Big snapshots split into frames within the limit and reassemble exactly.
    #[test]
    fn snapshots_split_and_reassemble(
        snapshot in (any::<u64>(), any::<u64>(), prop::collection::vec((bytes(), bytes()), 0..60))
            .prop_map(|(epoch, seq, entries)| Snapshot { epoch, seq, entries }),
        max_frame_len in 120usize..2000,
    ) {
        let world = WorldId::new("big").unwrap();
        let mut out = BytesMut::new();
        let frames = encode_snapshot(&world, &snapshot, max_frame_len, &mut out).unwrap();
        let mut decoder = Decoder::new(max_frame_len);
        decoder.feed(&out);
        let mut assembler = SnapshotAssembler::new();
        let mut seen = 0;
        let mut result = None;
        while let Some(raw) = decoder.next_frame().unwrap() {
            prop_assert!(raw.len() - 4 <= max_frame_len);
            seen += 1;
            let FrontendToClient::Snapshot { world: got, part, snapshot: piece } = FrontendToClient::decode(&raw).unwrap() else {
                panic!("not a snapshot");
            };
            prop_assert_eq!(&got, &world);
            prop_assert!(result.is_none());
            result = assembler.push(part, piece).unwrap();
        }
        prop_assert_eq!(seen, frames);
        prop_assert_eq!(result, Some(snapshot));
        prop_assert!(!assembler.is_assembling());
    }
}

#[test]
fn every_frame_type_is_refused_outside_its_directions() {
    let directions = [
        Direction::ClientToFrontend,
        Direction::FrontendToClient,
        Direction::FrontendToGame,
        Direction::GameToFrontend,
    ];
    for frame_type in FrameType::ALL {
        let allowed: Vec<_> = directions
            .iter()
            .filter(|d| frame_type.allowed(**d))
            .collect();
        assert!(!allowed.is_empty(), "{frame_type:?} is allowed nowhere");
        // A frame of this type with an empty body.
        let raw = RawFrame::parse(Bytes::from(vec![0, 0, 0, 1, *frame_type as u8]), 16).unwrap();
        let results = [
            (
                Direction::ClientToFrontend,
                ClientToFrontend::decode(&raw).err(),
            ),
            (
                Direction::FrontendToClient,
                FrontendToClient::decode(&raw).err(),
            ),
            (
                Direction::FrontendToGame,
                FrontendToGame::decode(&raw).err(),
            ),
            (
                Direction::GameToFrontend,
                GameToFrontend::decode(&raw).err(),
            ),
        ];
        for (direction, error) in results {
            let unexpected = matches!(
                error,
                Some(flotilla_wire::WireError::UnexpectedFrameType { .. })
            );
            assert_eq!(
                unexpected,
                !frame_type.allowed(direction),
                "{frame_type:?} {direction:?} {error:?}"
            );
        }
    }
}

#[test]
fn snapshot_assembler_rejects_parts_out_of_order() {
    let at = |seq| Snapshot {
        epoch: 1,
        seq,
        entries: Vec::new(),
    };
    let mut assembler = SnapshotAssembler::new();
    assert!(assembler.push(SnapshotPart::Middle, at(1)).is_err());
    assert!(assembler.push(SnapshotPart::Last, at(1)).is_err());
    assert_eq!(assembler.push(SnapshotPart::First, at(1)), Ok(None));
    assert!(assembler.push(SnapshotPart::Last, at(2)).is_err());
    assert!(!assembler.is_assembling());
    assert_eq!(assembler.push(SnapshotPart::First, at(1)), Ok(None));
    assert!(assembler.push(SnapshotPart::Whole, at(1)).is_err());
    assert_eq!(assembler.push(SnapshotPart::Whole, at(3)), Ok(Some(at(3))));
}

#[test]
fn the_tolerant_assembler_ignores_stale_parts_and_restarts_on_a_first_part() {
    use flotilla_wire::PartOutcome;
    let at = |seq, key: &'static str| Snapshot {
        epoch: 1,
        seq,
        entries: vec![(Bytes::from_static(key.as_bytes()), Bytes::from_static(b"v"))],
    };
    let mut assembler = SnapshotAssembler::new();
    // Leftover parts of a snapshot whose first part went to a machine since reset.
    assert_eq!(
        assembler.offer(SnapshotPart::Middle, at(1, "a")),
        Ok(PartOutcome::Stale)
    );
    assert_eq!(
        assembler.offer(SnapshotPart::Last, at(1, "b")),
        Ok(PartOutcome::Stale)
    );
    // A first part while another is half done supersedes it.
    assert_eq!(
        assembler.offer(SnapshotPart::First, at(1, "a")),
        Ok(PartOutcome::Incomplete)
    );
    assert_eq!(
        assembler.offer(SnapshotPart::First, at(2, "a")),
        Ok(PartOutcome::Incomplete)
    );
    // A part of another position is stale and drops the half-done one.
    assert_eq!(
        assembler.offer(SnapshotPart::Last, at(3, "z")),
        Ok(PartOutcome::Stale)
    );
    assert!(!assembler.is_assembling());
    assert_eq!(
        assembler.offer(SnapshotPart::First, at(4, "a")),
        Ok(PartOutcome::Incomplete)
    );
    let Ok(PartOutcome::Complete(whole)) = assembler.offer(SnapshotPart::Last, at(4, "b")) else {
        panic!("not complete")
    };
    assert_eq!(whole.entries.len(), 2);
}

#[test]
fn the_assembler_refuses_snapshots_past_its_byte_limit() {
    let part = |key: &'static str| Snapshot {
        epoch: 1,
        seq: 1,
        entries: vec![(
            Bytes::from_static(key.as_bytes()),
            Bytes::from(vec![0u8; 40]),
        )],
    };
    // Each part costs 1 + 40 bytes of key and value plus the per-entry overhead.
    let per_part = 41 + SNAPSHOT_ENTRY_OVERHEAD_BYTES;
    let mut assembler = SnapshotAssembler::with_max_bytes(2 * per_part + 10);
    assert_eq!(assembler.push(SnapshotPart::First, part("a")), Ok(None));
    assert_eq!(assembler.push(SnapshotPart::Middle, part("b")), Ok(None));
    assert_eq!(assembler.partial_bytes(), 2 * per_part);
    assert_eq!(assembler.partial_entries(), 2);
    let error = assembler.push(SnapshotPart::Last, part("c")).unwrap_err();
    assert!(matches!(
        error,
        flotilla_wire::WireError::SnapshotTooLarge { max, bytes }
            if max == 2 * per_part + 10 && bytes == 3 * per_part
    ));
    assert_eq!(error.code(), flotilla_wire::ErrorCode::Overloaded);
    assert!(
        !assembler.is_assembling(),
        "the half-done snapshot is dropped"
    );
    let mut big = part("a");
    big.entries
        .push((Bytes::from_static(b"x"), Bytes::from(vec![0u8; 100])));
    assert!(assembler.push(SnapshotPart::Whole, big).is_err());
}

#[test]
fn empty_entries_count_their_memory_against_the_limit() {
    // An entry with an empty key and value is 2 bytes on the wire but two `Bytes` in
    // memory: the overhead must cover that, and the limit must bound such entries.
    assert!(SNAPSHOT_ENTRY_OVERHEAD_BYTES >= std::mem::size_of::<(Bytes, Bytes)>());
    let empties = |count| Snapshot {
        epoch: 1,
        seq: 1,
        entries: vec![(Bytes::new(), Bytes::new()); count],
    };
    let max = 10 * SNAPSHOT_ENTRY_OVERHEAD_BYTES;
    let mut assembler = SnapshotAssembler::with_max_bytes(max);
    assert_eq!(assembler.push(SnapshotPart::First, empties(4)), Ok(None));
    assert_eq!(assembler.push(SnapshotPart::Middle, empties(6)), Ok(None));
    assert_eq!(assembler.partial_bytes(), max);
    let error = assembler
        .push(SnapshotPart::Middle, empties(1))
        .unwrap_err();
    assert!(matches!(
        error,
        flotilla_wire::WireError::SnapshotTooLarge { bytes, .. }
            if bytes == max + SNAPSHOT_ENTRY_OVERHEAD_BYTES
    ));
    assert!(!assembler.is_assembling());
    assert_eq!(assembler.partial_bytes(), 0);
    assert!(
        SnapshotAssembler::with_max_bytes(max)
            .push(SnapshotPart::Whole, empties(11))
            .is_err()
    );
}

#[test]
fn a_compact_frame_owns_exactly_its_bytes() {
    let frame = GameToFrontend::Ping { nonce: 7 }.encode_to_bytes();
    let mut decoder = Decoder::default();
    decoder.feed(&frame);
    let raw = decoder.next_frame().unwrap().unwrap();
    let compact = raw.to_compact();
    assert_eq!(compact, raw);
    assert_ne!(compact.as_bytes().as_ptr(), raw.as_bytes().as_ptr());
    assert_eq!(compact.len(), frame.len());
}

#[test]
fn a_large_announced_frame_reserves_memory_only_step_by_step() {
    let mut decoder = Decoder::new(1 << 20);
    // A header announcing a 1 MiB frame of a valid type, then nothing.
    let mut header = Vec::from((1u32 << 20).to_be_bytes());
    header.push(0x05);
    decoder.feed(&header);
    assert_eq!(decoder.next_frame(), Ok(None));
    assert!(
        decoder.buffer_mut().capacity() <= flotilla_wire::DECODER_GROW_STEP + 64,
        "reserved {} bytes for 5 received",
        decoder.buffer_mut().capacity()
    );
}

#[test]
fn an_entry_too_large_for_any_frame_is_refused_without_output() {
    let world = WorldId::new("w").unwrap();
    let snapshot = Snapshot {
        epoch: 1,
        seq: 1,
        entries: vec![(Bytes::from_static(b"k"), Bytes::from(vec![0u8; 500]))],
    };
    let mut out = BytesMut::new();
    let error = encode_snapshot(&world, &snapshot, 100, &mut out).unwrap_err();
    assert!(matches!(
        error,
        flotilla_wire::WireError::FrameTooLarge { max: 100, .. }
    ));
    assert!(out.is_empty());
}

proptest! {
    #[test]
    fn join_tokens_round_trip(
        expires_unix in any::<u64>(),
        role in role(),
        world in world(),
        subject in "\\PC{0,16}",
        signature in prop::array::uniform32(any::<u8>()),
    ) {
        let claims = JoinClaims { expires_unix, role, world, subject };
        let mut signed = Vec::new();
        let token = claims
            .sign_with(|input| {
                signed = input.to_vec();
                let mut full = [0u8; 64];
                full[..32].copy_from_slice(&signature);
                full
            })
            .unwrap();
        let decoded = JoinToken::decode(&token).unwrap();
        prop_assert_eq!(decoded.claims(), &claims);
        prop_assert_eq!(&decoded.signature()[..32], &signature[..]);
        prop_assert_eq!(decoded.signing_input(), signed);
        let text = join_token_to_text(&token);
        prop_assert_eq!(join_token_from_text(&text).unwrap(), token.clone());
        // In a Join frame, through the decoder.
        let frame = ClientToFrontend::Join { token: token.clone() }.encode_to_bytes();
        let raw = RawFrame::parse(frame, 1 << 16).unwrap();
        prop_assert_eq!(ClientToFrontend::decode(&raw).unwrap(), ClientToFrontend::Join { token });
    }

    #[test]
    fn random_tokens_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), text in "\\PC{0,80}") {
        let _ = JoinToken::decode(&Bytes::from(bytes));
        let _ = join_token_from_text(&text);
    }
}
