//! Writes the seed corpus of the wire fuzz target (`crates/wire/fuzz/seeds/`): one valid
//! frame of every type and direction, and a few multi-frame streams, each behind the
//! target's control byte (chunk size, frame limit).
//!
//! `cargo run -p flotilla-wire --example fuzz_seeds -- crates/wire/fuzz/seeds`

use bytes::{Bytes, BytesMut};
use flotilla_wire::{
    ClientToFrontend, ErrorCode, FrameType, FrontendToClient, FrontendToGame, GameToFrontend,
    JoinClaims, Message, Role, SessionId, WorldId, change_batch_frame, encode_snapshot,
};
use flotilla_world::WorldState;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: fuzz_seeds DIR")?;
    std::fs::create_dir_all(&dir)?;
    let world = WorldId::new("arena")?;
    let mut state = WorldState::new(42);
    let mut tx = state.begin();
    tx.set(Bytes::from_static(b"x"), Bytes::from_static(b"1"));
    tx.set(Bytes::from_static(b"y"), Bytes::from_static(b"2"));
    let batch = tx.commit().ok_or("empty batch")?;
    let batch_frame = change_batch_frame(&world, &batch);
    let mut snapshot = BytesMut::new();
    encode_snapshot(&world, &state.snapshot(), 1 << 20, &mut snapshot)?;
    let mut split_snapshot = BytesMut::new();
    encode_snapshot(&world, &state.snapshot(), 40, &mut split_snapshot)?;
    let token = Bytes::from_static(&[7; 40]);
    let join_token = JoinClaims {
        expires_unix: 1_800_000_000,
        role: Role::Player,
        world: world.clone(),
        subject: "seed".into(),
    }
    .sign_with(|_| [9; 64])?;
    let frames: Vec<(&str, Bytes)> = vec![
        (
            "c2f-hello",
            ClientToFrontend::Hello {
                version: 1,
                session_token: Some(token.clone()),
                client_name: "seed".into(),
            }
            .encode_to_bytes(),
        ),
        (
            "c2f-subscribe",
            ClientToFrontend::Subscribe {
                world: world.clone(),
                since: Some(batch.position()),
            }
            .encode_to_bytes(),
        ),
        (
            "c2f-unsubscribe",
            ClientToFrontend::Unsubscribe {
                world: world.clone(),
            }
            .encode_to_bytes(),
        ),
        (
            "c2f-input",
            ClientToFrontend::Input {
                world: world.clone(),
                payload: Bytes::from_static(b"J"),
            }
            .encode_to_bytes(),
        ),
        (
            "c2f-join",
            ClientToFrontend::Join { token: join_token }.encode_to_bytes(),
        ),
        (
            "c2f-ping",
            ClientToFrontend::Ping { nonce: 3 }.encode_to_bytes(),
        ),
        (
            "c2f-error",
            ClientToFrontend::Error {
                code: ErrorCode::Timeout,
                text: "silent".into(),
            }
            .encode_to_bytes(),
        ),
        (
            "f2c-welcome",
            FrontendToClient::Welcome {
                version: 1,
                session_token: token,
                resumed: true,
                server_id: "fe-1".into(),
            }
            .encode_to_bytes(),
        ),
        (
            "f2c-output",
            FrontendToClient::Output {
                world: world.clone(),
                payload: Bytes::from_static(b"ok"),
            }
            .encode_to_bytes(),
        ),
        (
            "f2c-unsubscribed",
            FrontendToClient::Unsubscribed {
                world: world.clone(),
                code: ErrorCode::Unavailable,
                text: "gone".into(),
            }
            .encode_to_bytes(),
        ),
        (
            "f2c-joined",
            FrontendToClient::Joined {
                world: world.clone(),
                role: Role::Observer,
                expires_unix: 1_800_000_000,
            }
            .encode_to_bytes(),
        ),
        (
            "f2c-refused",
            FrontendToClient::Refused {
                request: FrameType::Input,
                world: Some(world.clone()),
                code: ErrorCode::NotAllowed,
                text: "no player token".into(),
            }
            .encode_to_bytes(),
        ),
        (
            "f2c-pong",
            FrontendToClient::Pong { nonce: 3 }.encode_to_bytes(),
        ),
        ("batch", batch_frame.clone()),
        ("snapshot", snapshot.clone().freeze()),
        ("snapshot-parts", split_snapshot.freeze()),
        (
            "f2g-hello",
            FrontendToGame::Hello {
                version: 1,
                frontend_id: "fe-1".into(),
            }
            .encode_to_bytes(),
        ),
        (
            "f2g-input",
            FrontendToGame::Input {
                world: world.clone(),
                session: SessionId(9),
                payload: Bytes::from_static(b"J"),
            }
            .encode_to_bytes(),
        ),
        (
            "f2g-session-opened",
            FrontendToGame::SessionOpened {
                session: SessionId(9),
                client_name: "seed".into(),
            }
            .encode_to_bytes(),
        ),
        (
            "f2g-session-held",
            FrontendToGame::SessionHeld {
                session: SessionId(9),
                client_name: "seed".into(),
            }
            .encode_to_bytes(),
        ),
        (
            "f2g-session-closed",
            FrontendToGame::SessionClosed {
                session: SessionId(9),
            }
            .encode_to_bytes(),
        ),
        (
            "g2f-welcome",
            GameToFrontend::Welcome {
                version: 1,
                server_id: "game".into(),
            }
            .encode_to_bytes(),
        ),
        (
            "g2f-world-added",
            GameToFrontend::WorldAdded {
                world: world.clone(),
                info: Bytes::from_static(b"{}"),
            }
            .encode_to_bytes(),
        ),
        (
            "g2f-world-removed",
            GameToFrontend::WorldRemoved {
                world: world.clone(),
            }
            .encode_to_bytes(),
        ),
        (
            "g2f-output",
            GameToFrontend::Output {
                world: world.clone(),
                session: SessionId(9),
                payload: Bytes::from_static(b"ok"),
            }
            .encode_to_bytes(),
        ),
        (
            "g2f-session-moved",
            GameToFrontend::SessionMoved {
                session: SessionId(9),
            }
            .encode_to_bytes(),
        ),
    ];
    let mut stream = Vec::new();
    for (name, frame) in &frames {
        for (suffix, control) in [("", 0u8), ("-chunked", 0x05), ("-small-limit", 0x40)] {
            let mut seed = vec![control];
            seed.extend_from_slice(frame);
            std::fs::write(format!("{dir}/{name}{suffix}"), seed)?;
        }
        stream.extend_from_slice(frame);
    }
    let mut all = vec![0x07];
    all.extend_from_slice(&stream);
    std::fs::write(format!("{dir}/every-frame-in-one-stream"), all)?;
    println!("{} seeds in {dir}", frames.len() * 3 + 1);
    Ok(())
}
