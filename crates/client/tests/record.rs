//! Record and replay against real components: a game server (the SDK), a front-end
//! recording its machine's inputs, several clients watching and playing over loopback
//! TCP; then the recording is replayed offline and every output checked.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure.

use std::time::Duration;

use bytes::Bytes;
use flotilla_client::{Client, ClientConfig, ClientEvent};
use flotilla_frontend::record::{RecordSettings, replay};
use flotilla_frontend::{FrontendConfig, FrontendServer};
use flotilla_game::{GameConfig, GameServer};
use flotilla_wire::WorldId;
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_multi_client_run_replays_output_for_output() {
    let dir = tempfile::tempdir().unwrap();
    let arena = WorldId::new("arena").unwrap();
    let game = GameServer::bind("127.0.0.1:0", GameConfig::default())
        .await
        .unwrap();
    let world = game.add_world(arena.clone(), Bytes::new()).unwrap();
    let mut game_events = game.take_events().unwrap();
    let frontend = FrontendServer::bind(FrontendConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        game_servers: vec![game.local_addr().to_string()],
        record: Some(RecordSettings {
            dir: dir.path().join("rec"),
            max_bytes: 64 << 20,
        }),
        ..FrontendConfig::default()
    })
    .await
    .unwrap();
    // Outputs echo every input back to its session.
    let game = std::sync::Arc::new(game);
    let echo = {
        let game = std::sync::Arc::clone(&game);
        tokio::spawn(async move {
            while let Some(event) = game_events.recv().await {
                if let flotilla_game::GameEvent::Input {
                    world,
                    session,
                    payload,
                } = event
                {
                    let _ = game.send_output(&world, session, payload);
                }
            }
        })
    };
    let mut clients = Vec::new();
    for i in 0..6 {
        let client = Client::connect(
            frontend.local_addr(),
            ClientConfig {
                client_name: format!("player-{i}"),
                ..ClientConfig::default()
            },
        )
        .await
        .unwrap();
        client.subscribe(arena.clone(), None).unwrap();
        clients.push(client);
    }
    for tick in 0..40u32 {
        let mut tx = world.begin();
        tx.set(format!("k{}", tick % 5), tick.to_string());
        tx.commit().unwrap();
        let player = &clients[tick as usize % clients.len()];
        player
            .send_input(&arena, Bytes::from(format!("move {tick}")))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Every client in sync, and every echo back, before the front-end stops.
    timeout(Duration::from_secs(10), async {
        loop {
            if clients
                .iter()
                .all(|c| c.digest(&arena) == Some(world.digest()))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("replicas in sync");
    let mut outputs = 0;
    for client in &clients {
        let mut events = client.take_events().unwrap();
        while let Ok(Some(event)) = timeout(Duration::from_millis(200), events.recv()).await {
            if matches!(event, ClientEvent::Output { .. }) {
                outputs += 1;
            }
        }
    }
    assert_eq!(outputs, 40, "every input echoed");
    drop(clients);
    frontend.shutdown().await;
    echo.abort();

    let report = replay(&dir.path().join("rec")).unwrap();
    assert_eq!(report.mismatch, None, "{report:?}");
    assert!(!report.torn_tail, "{report:?}");
    assert!(report.inputs > 100, "{report:?}");
    assert!(report.outputs_checked > 240, "{report:?}");

    // A recording that does not match its machine is caught: change one bit of the last
    // outputs record's digest and the replay names the input after which it differs.
    let file = dir.path().join("rec").join("record-000001.bin");
    let mut data = std::fs::read(&file).unwrap();
    let mut at = flotilla_frontend::record::MAGIC.len();
    let mut last_outputs = None;
    while at + 5 <= data.len() {
        let len = u32::from_le_bytes(data[at + 1..at + 5].try_into().unwrap()) as usize;
        if data[at] == b'O' {
            last_outputs = Some(at + 5);
        }
        at += 5 + len;
    }
    let payload = last_outputs.expect("an outputs record");
    data[payload + 4] ^= 0x01; // the digest's first byte (after the u32 count)
    std::fs::write(&file, &data).unwrap();
    let report = replay(&dir.path().join("rec")).unwrap();
    let mismatch = report.mismatch.expect("the changed digest is caught");
    assert!(mismatch.after_input > 0 && mismatch.after_input <= report.inputs);
    assert_eq!(
        mismatch.recorded.0, mismatch.replayed.0,
        "same count, other bytes"
    );
}
