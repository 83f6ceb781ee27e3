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

/// Runs a game server, a recording front-end and 6 clients for `ticks` commits and inputs
/// (each input `payload` bytes, echoed back as an output), paced by `pace`; every replica
/// ends in sync and every input is echoed before the front-end stops.
async fn recorded_run(settings: RecordSettings, ticks: u32, payload: usize, pace: Duration) {
    let arena = WorldId::new("arena").unwrap();
    let game = GameServer::bind("127.0.0.1:0", GameConfig::default())
        .await
        .unwrap();
    let world = game.add_world(arena.clone(), Bytes::new()).unwrap();
    let mut game_events = game.take_events().unwrap();
    let frontend = FrontendServer::bind(FrontendConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        game_servers: vec![game.local_addr().to_string()],
        record: Some(settings),
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
    for tick in 0..ticks {
        let mut tx = world.begin();
        tx.set(format!("k{}", tick % 5), tick.to_string());
        tx.commit().unwrap();
        let player = &clients[tick as usize % clients.len()];
        let mut input = format!("move {tick} ").into_bytes();
        input.resize(payload.max(input.len()), b'.');
        player.send_input(&arena, Bytes::from(input)).unwrap();
        tokio::time::sleep(pace).await;
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
    assert_eq!(outputs, ticks, "every input echoed");
    drop(clients);
    frontend.shutdown().await;
    echo.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_multi_client_run_replays_output_for_output() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RecordSettings::new(dir.path().join("rec"), 64 << 20);
    recorded_run(settings, 40, 0, Duration::from_millis(25)).await;

    let report = replay(&dir.path().join("rec")).unwrap();
    assert_eq!(report.mismatch, None, "{report:?}");
    assert!(!report.torn_tail, "{report:?}");
    assert!(report.inputs > 100, "{report:?}");
    assert!(report.outputs_checked > 240, "{report:?}");

    // A recording that does not match its machine is caught: change one bit of the last
    // outputs record's digest and the replay names the input after which it differs.
    let file = dir.path().join("rec").join("record-000001.bin");
    let mut data = std::fs::read(&file).unwrap();
    let (payload, _) = *records_with_tag(&data, b'O')
        .last()
        .expect("an outputs record");
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

/// Offset of the payload of every record with `tag` in a recording file.
fn records_with_tag(data: &[u8], tag: u8) -> Vec<(usize, usize)> {
    let mut at = flotilla_frontend::record::MAGIC.len();
    let mut found = Vec::new();
    while at + 5 <= data.len() {
        let len = u32::from_le_bytes(data[at + 1..at + 5].try_into().unwrap()) as usize;
        if data[at] == tag {
            found.push((at + 5, len));
        }
        at += 5 + len;
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotating_recording_keeps_the_newest_files_and_replays_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    // Files of 16 KiB of records (after their checkpoint) within 128 KiB: a run of ~600
    // inputs of 300 bytes (and their echoes, batches and pings) fills many, and only the
    // newest few are kept.
    let settings = RecordSettings {
        dir: rec.clone(),
        max_bytes: 128 << 10,
        file_bytes: 16 << 10,
    };
    recorded_run(settings, 600, 300, Duration::from_millis(2)).await;

    let mut files: Vec<_> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert!(
        !files.contains(&"record-000001.bin".to_owned()),
        "the oldest files were deleted: {files:?}"
    );
    let total: u64 = files
        .iter()
        .map(|name| std::fs::metadata(rec.join(name)).unwrap().len())
        .sum();
    // Within the bound, give or take the newest file's last records.
    assert!(
        total <= (128 << 10) + (64 << 10),
        "{total} bytes in {files:?}"
    );
    assert!(files.len() >= 2, "{files:?}");

    let report = replay(&rec).unwrap();
    assert_eq!(report.mismatch, None, "{report:?}");
    assert!(!report.torn_tail, "{report:?}");
    assert!(
        report.started_from.contains(&files[0]),
        "starts at the oldest file's checkpoint: {report:?}"
    );
    assert_eq!(report.files as usize, files.len(), "{report:?}");
    assert!(report.checkpoints_checked >= 1, "{report:?}");
    assert!(
        report.inputs > 100 && report.outputs_checked > 100,
        "{report:?}"
    );

    // A machine that drifted from the recorded one is caught at the next checkpoint:
    // change one byte of the second file's checkpoint (the state it records).
    let second = rec.join(&files[1]);
    let mut data = std::fs::read(&second).unwrap();
    let (at, len) = records_with_tag(&data, b'C')[0];
    data[at + len / 2] ^= 0x40;
    std::fs::write(&second, &data).unwrap();
    let report = replay(&rec).unwrap();
    let mismatch = report.mismatch.expect("the changed state is caught");
    assert!(mismatch.input.contains(&files[1]), "{mismatch:?}");
}
