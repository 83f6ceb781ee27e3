//! A connection flood past a front-end's file-descriptor limit: the client cap is derived
//! from the limit (with descriptors kept for the listener and game links), so every
//! connection is answered, `Welcome` or `Error{Overloaded}`, none is left hanging, and the
//! front-end can still dial its game server again when that one restarts mid-flood.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, free_port, next_message};
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_wire::{ClientToFrontend, Decoder, ErrorCode, FrontendToClient, Message, WorldId};

fn game(addr: &str) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["game", "--listen", addr, "--seconds", "120"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Connects and says hello; returns the stream once it is welcomed, `None` when it is told
/// `Overloaded`.
fn hello(addr: &str) -> Option<(TcpStream, Decoder)> {
    let mut stream = common::connect_and_hello(addr, "flood", Duration::from_secs(10));
    let mut decoder = Decoder::default();
    match next_message(&mut stream, &mut decoder) {
        Some(FrontendToClient::Welcome { .. }) => Some((stream, decoder)),
        Some(FrontendToClient::Error {
            code: ErrorCode::Overloaded,
            ..
        }) => None,
        other => panic!("neither Welcome nor Overloaded: {other:?}"),
    }
}

#[test]
fn a_flood_past_the_descriptor_limit_is_answered_and_the_game_link_survives() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("fleet.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    let game_addr = format!("127.0.0.1:{}", free_port());
    let frontend_addr = format!("127.0.0.1:{}", free_port());
    let mut game_process = game(&game_addr);
    // 400 descriptors: the cap is 400 - 256 - 4 (one game server) = 140 clients.
    let limit = 400;
    let cap = limit - 256 - 4;
    let _frontend = Running(
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "ulimit -n {limit} && exec \"$0\" frontend --listen {frontend_addr} \
                 --game {game_addr} --seconds 120 --token-key-file {}",
                key.display()
            ))
            .arg(env!("CARGO_BIN_EXE_flotilla"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&frontend_addr).is_err() {
        assert!(Instant::now() < deadline, "the front-end never listened");
        std::thread::sleep(Duration::from_millis(50));
    }

    // One observer of the arena first (once the front-end serves it).
    let arena = WorldId::new("arena-1").unwrap();
    let (mut observer, mut observer_decoder, first_epoch) = loop {
        let (mut stream, mut decoder) = hello(&frontend_addr).expect("room for the first");
        let subscribe = ClientToFrontend::Subscribe {
            world: arena.clone(),
            since: None,
        };
        stream.write_all(&subscribe.encode_to_bytes()).unwrap();
        match next_message(&mut stream, &mut decoder) {
            Some(FrontendToClient::Snapshot { snapshot, .. }) => {
                break (stream, decoder, snapshot.epoch);
            }
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "the front-end never served the arena"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };

    // The flood: twice the cap. Every connection is answered.
    let mut welcomed = Vec::new();
    let mut refused = 0;
    for _ in 0..2 * cap {
        match hello(&frontend_addr) {
            Some(connection) => welcomed.push(connection),
            None => refused += 1,
        }
    }
    eprintln!(
        "flood of {}: {} welcomed, {refused} told Overloaded (cap {cap}, observer included)",
        2 * cap,
        welcomed.len()
    );
    // The probes of the loop above may still be closing: at most the cap, at least most of it.
    assert!(
        welcomed.len() < cap,
        "{} welcomed past the cap",
        welcomed.len()
    );
    assert!(refused >= cap, "only {refused} refused");

    // The game server restarts mid-flood: the front-end dials it again (descriptors were
    // kept for that) and the observer gets the arena again.
    drop(game_process);
    game_process = game(&game_addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the observer never got the restarted game's arena"
        );
        match next_message(&mut observer, &mut observer_decoder) {
            // The restarted world: a new snapshot (a new epoch), after the front-end
            // resubscribed upstream on its new game link.
            Some(FrontendToClient::Snapshot {
                world, snapshot, ..
            }) if world == arena => {
                assert_ne!(
                    snapshot.epoch, first_epoch,
                    "not the restarted game's arena"
                );
                break;
            }
            Some(_) => {}
            None => panic!("the observer's connection ended"),
        }
    }
    drop(welcomed);
    drop(game_process);
}
