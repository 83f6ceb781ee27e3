//! The client against a fake front-end written with flotilla-wire frames over loopback TCP,
//! (proptest) against a real game server through a pass-through fake front-end, and
//! against a real front-end and game server that restarts.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flotilla_client::{
    Client, ClientConfig, ClientEvent, ClientEvents, DisconnectReason, ReplicaMode,
};
use flotilla_wire::{
    ClientToFrontend, Decoder, ErrorCode, FrameType, FrontendToClient, FrontendToGame,
    GameToFrontend, Message, RawFrame, SnapshotPart, WorldId, change_batch_frame, encode_snapshot,
};
use flotilla_world::WorldState;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// The front-end side of one client connection.
struct FakeFrontend {
    stream: TcpStream,
    decoder: Decoder,
}

impl FakeFrontend {
    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, message: FrontendToClient) {
        self.send_bytes(&message.encode_to_bytes()).await;
    }

    async fn recv_frame(&mut self) -> Option<RawFrame> {
        loop {
            if let Some(frame) = self.decoder.next_frame().unwrap() {
                return Some(frame);
            }
            self.decoder.buffer_mut().reserve(4096);
            let read = timeout(WAIT, self.stream.read_buf(self.decoder.buffer_mut()))
                .await
                .expect("frame within 5 s")
                .unwrap();
            if read == 0 {
                return None;
            }
        }
    }

    /// The next frame that is not a ping.
    async fn recv(&mut self) -> ClientToFrontend {
        loop {
            let frame = self.recv_frame().await.expect("connection open");
            let message = ClientToFrontend::decode(&frame).unwrap();
            if !matches!(message, ClientToFrontend::Ping { .. }) {
                return message;
            }
        }
    }
}

/// Starts a client against a fake front-end; returns both after the handshake.
async fn connected(config: ClientConfig) -> (Client, ClientEvents, FakeFrontend) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frontend = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut fe = FakeFrontend {
            stream,
            decoder: Decoder::default(),
        };
        match fe.recv().await {
            ClientToFrontend::Hello {
                version,
                session_token,
                client_name,
            } => {
                assert_eq!(version, 1);
                assert_eq!(session_token, None);
                assert_eq!(client_name, "tester");
            }
            other => panic!("expected Hello, got {other:?}"),
        }
        fe.send(FrontendToClient::Welcome {
            version: 1,
            session_token: Bytes::from_static(b"token-1"),
            resumed: false,
            server_id: "fe-test".to_owned(),
        })
        .await;
        fe
    });
    let client = Client::connect(addr, config).await.unwrap();
    let fe = frontend.await.unwrap();
    let events = client.take_events().unwrap();
    (client, events, fe)
}

fn config() -> ClientConfig {
    ClientConfig {
        client_name: "tester".to_owned(),
        ..ClientConfig::default()
    }
}

async fn next_event(events: &mut ClientEvents) -> ClientEvent {
    timeout(WAIT, events.recv())
        .await
        .expect("event within 5 s")
        .expect("events open")
}

fn arena() -> WorldId {
    WorldId::new("arena").unwrap()
}

fn commit(world: &mut WorldState, changes: &[(&str, Option<&str>)]) -> flotilla_world::ChangeBatch {
    let mut tx = world.begin();
    for (key, value) in changes {
        match value {
            Some(value) => tx.set(key.to_string(), value.to_string()),
            None => tx.remove(key.to_string()),
        }
    }
    tx.commit().unwrap()
}

#[tokio::test]
async fn handshake_keeps_the_session_token() {
    let (client, _events, _fe) = connected(config()).await;
    assert_eq!(client.session_token(), &Bytes::from_static(b"token-1"));
    assert!(!client.resumed());
    assert_eq!(client.server_id(), "fe-test");
    assert!(client.is_connected());
    assert_eq!(
        client.with_session(|session| session.session_token().cloned()),
        Some(Bytes::from_static(b"token-1"))
    );
}

#[tokio::test]
async fn refused_and_wrong_version_handshakes_fail() {
    for answer in [
        FrontendToClient::Error {
            code: ErrorCode::Overloaded,
            text: "full".to_owned(),
        },
        FrontendToClient::Welcome {
            version: 9,
            session_token: Bytes::new(),
            resumed: false,
            server_id: String::new(),
        },
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let expected = answer.clone();
        let frontend = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut fe = FakeFrontend {
                stream,
                decoder: Decoder::default(),
            };
            fe.recv().await;
            fe.send(answer).await;
            // Keeps the connection open until the client, having read the answer, hangs
            // up (EOF; `recv_frame` gives up after 5 s).
            while fe.recv_frame().await.is_some() {}
        });
        let error = Client::connect(addr, config()).await.unwrap_err();
        timeout(WAIT, frontend)
            .await
            .expect("the client hangs up after a refused handshake")
            .unwrap();
        match expected {
            FrontendToClient::Error { .. } => {
                assert!(matches!(
                    error,
                    flotilla_client::ClientError::Refused {
                        code: ErrorCode::Overloaded,
                        ..
                    }
                ));
            }
            _ => assert!(matches!(
                error,
                flotilla_client::ClientError::UnsupportedVersion(9)
            )),
        }
    }
}

#[tokio::test]
async fn snapshot_and_batches_build_the_replica() {
    let (client, mut events, mut fe) = connected(config()).await;
    let arena = arena();
    let mut world = WorldState::new(42);
    commit(&mut world, &[("a", Some("1")), ("b", Some("2"))]);

    client.subscribe(arena.clone(), None).unwrap();
    assert_eq!(
        fe.recv().await,
        ClientToFrontend::Subscribe {
            world: arena.clone(),
            since: None
        }
    );
    let mut out = BytesMut::new();
    encode_snapshot(&arena, &world.snapshot(), 1 << 20, &mut out).unwrap();
    fe.send_bytes(&out).await;
    match next_event(&mut events).await {
        ClientEvent::SnapshotApplied {
            world: id,
            position,
            ..
        } => {
            assert_eq!((id, position), (arena.clone(), world.position()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(client.digest(&arena), Some(world.digest()));

    for step in 0..10u32 {
        let batch = commit(
            &mut world,
            &[
                ("a", Some(&step.to_string())),
                ("b", (step % 2 == 0).then_some("x")),
            ],
        );
        fe.send_bytes(&change_batch_frame(&arena, &batch)).await;
        match next_event(&mut events).await {
            ClientEvent::BatchApplied {
                world: id,
                position,
                ..
            } => {
                assert_eq!((id, position), (arena.clone(), batch.position()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(client.digest(&arena), Some(world.digest()));
    assert_eq!(client.position(&arena), Some(world.position()));
    assert_eq!(client.get(&arena, b"a"), Some(Bytes::from_static(b"9")));
    let counters = client.counters(&arena).unwrap();
    assert_eq!(
        (counters.snapshots, counters.batches, counters.applied),
        (1, 10, 10)
    );
    assert!(client.stats().frames_received >= 11);

    // A duplicate is ignored; a gap asks for a fresh snapshot.
    let old = commit(&mut world, &[("c", Some("3"))]);
    let skipped = commit(&mut world, &[("d", Some("4"))]);
    fe.send_bytes(&change_batch_frame(&arena, &skipped)).await;
    assert_eq!(
        next_event(&mut events).await,
        ClientEvent::Resyncing {
            world: arena.clone()
        }
    );
    assert_eq!(
        fe.recv().await,
        ClientToFrontend::Subscribe {
            world: arena.clone(),
            since: None
        }
    );
    // Batches before the snapshot are ignored, then the snapshot resyncs.
    fe.send_bytes(&change_batch_frame(&arena, &old)).await;
    let mut out = BytesMut::new();
    encode_snapshot(&arena, &world.snapshot(), 1 << 20, &mut out).unwrap();
    fe.send_bytes(&out).await;
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::SnapshotApplied { .. }
    ));
    assert_eq!(client.digest(&arena), Some(world.digest()));

    // Unsubscribe drops the replica and tells the front-end.
    client.unsubscribe(&arena).unwrap();
    assert_eq!(
        fe.recv().await,
        ClientToFrontend::Unsubscribe {
            world: arena.clone()
        }
    );
    assert_eq!(client.digest(&arena), None);
}

#[tokio::test]
async fn multi_part_snapshots_are_assembled() {
    let (client, mut events, mut fe) = connected(config()).await;
    let arena = arena();
    let mut world = WorldState::new(7);
    let mut tx = world.begin();
    for index in 0..50 {
        tx.set(format!("entity/{index:02}"), format!("{index}").repeat(10));
    }
    tx.commit().unwrap();
    client.subscribe(arena.clone(), None).unwrap();
    fe.recv().await;
    let mut out = BytesMut::new();
    let parts = encode_snapshot(&arena, &world.snapshot(), 300, &mut out).unwrap();
    assert!(parts > 3, "{parts} parts");
    // Send the parts one by one, checking the replica is untouched until the last.
    let mut decoder = Decoder::default();
    decoder.feed(&out);
    let mut sent = 0;
    while let Some(frame) = decoder.next_frame().unwrap() {
        assert_eq!(frame.frame_type(), FrameType::Snapshot);
        fe.send_bytes(frame.as_bytes()).await;
        sent += 1;
        if sent < parts {
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(client.digest(&arena), None);
        }
    }
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::SnapshotApplied { .. }
    ));
    assert_eq!(client.digest(&arena), Some(world.digest()));
    assert_eq!(
        client.with_replica(&arena, |replica| replica.len()),
        Some(50)
    );

    // A middle part without a first is a leftover of a snapshot the client no longer waits
    // for (PROTOCOL.md section 4): ignored, the connection and the replica stay as they are.
    let mut out = BytesMut::new();
    FrontendToClient::Snapshot {
        world: arena.clone(),
        part: SnapshotPart::Middle,
        snapshot: world.snapshot(),
    }
    .encode(&mut out);
    fe.send_bytes(&out).await;
    client.send_input(&arena, "still-here").unwrap();
    match fe.recv().await {
        ClientToFrontend::Input { payload, .. } => assert_eq!(&payload[..], b"still-here"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(client.is_connected());
    assert_eq!(client.digest(&arena), Some(world.digest()));
}

#[tokio::test]
async fn inputs_go_out_outputs_come_in_pings_are_answered() {
    let (client, mut events, mut fe) = connected(config()).await;
    let arena = arena();
    client
        .send_input(&arena, Bytes::from_static(b"steer-left"))
        .unwrap();
    assert_eq!(
        fe.recv().await,
        ClientToFrontend::Input {
            world: arena.clone(),
            payload: Bytes::from_static(b"steer-left")
        }
    );
    fe.send(FrontendToClient::Output {
        world: arena.clone(),
        payload: Bytes::from_static(b"you-win"),
    })
    .await;
    assert_eq!(
        next_event(&mut events).await,
        ClientEvent::Output {
            world: arena.clone(),
            payload: Bytes::from_static(b"you-win")
        }
    );
    fe.send(FrontendToClient::Ping { nonce: 4242 }).await;
    assert_eq!(fe.recv().await, ClientToFrontend::Pong { nonce: 4242 });

    fe.send(FrontendToClient::Unsubscribed {
        world: arena.clone(),
        code: ErrorCode::UnknownWorld,
        text: "gone".to_owned(),
    })
    .await;
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Unsubscribed {
            code: ErrorCode::UnknownWorld,
            ..
        }
    ));

    // A fatal error from the front-end ends the connection with its reason.
    fe.send(FrontendToClient::Error {
        code: ErrorCode::ShuttingDown,
        text: "bye".to_owned(),
    })
    .await;
    assert_eq!(
        next_event(&mut events).await,
        ClientEvent::Disconnected {
            reason: DisconnectReason::PeerError {
                code: ErrorCode::ShuttingDown,
                text: "bye".to_owned()
            }
        }
    );
}

#[tokio::test]
async fn keep_alive_pings_then_idle_timeout_closes() {
    let (client, mut events, mut fe) = connected(ClientConfig {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        ..config()
    })
    .await;
    let started = std::time::Instant::now();
    let mut pings = 0;
    let code = loop {
        let frame = fe.recv_frame().await.expect("open until the error");
        match ClientToFrontend::decode(&frame).unwrap() {
            ClientToFrontend::Ping { .. } => pings += 1,
            ClientToFrontend::Error { code, .. } => break code,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, ErrorCode::Timeout);
    // One probe is out at a time: the silent front-end gets exactly one before the close
    // (the quiet-side ping, every 20 s, does not come due in 400 ms).
    assert_eq!(pings, 1, "{pings} pings");
    assert!(fe.recv_frame().await.is_none());
    assert_eq!(
        next_event(&mut events).await,
        ClientEvent::Disconnected {
            reason: DisconnectReason::Timeout
        }
    );
    // A hang guard only: the 1.5 s rule itself is checked in virtual time (flotilla-conn's
    // KeepAlive tests and the simulator), not against a loaded machine's clock.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!client.is_connected());
}

#[tokio::test]
async fn count_only_mode_keeps_counters_and_positions() {
    let (client, mut events, mut fe) = connected(ClientConfig {
        mode: ReplicaMode::CountOnly,
        ..config()
    })
    .await;
    let arena = arena();
    let mut world = WorldState::new(3);
    client.subscribe(arena.clone(), None).unwrap();
    fe.recv().await;
    let mut out = BytesMut::new();
    encode_snapshot(&arena, &world.snapshot(), 1 << 20, &mut out).unwrap();
    for step in 0..5u32 {
        let batch = commit(&mut world, &[("k", Some(&step.to_string()))]);
        flotilla_wire::encode_change_batch(&arena, &batch, &mut out);
    }
    fe.send_bytes(&out).await;
    let mut batches = 0;
    while batches < 5 {
        if let ClientEvent::BatchApplied { .. } = next_event(&mut events).await {
            batches += 1;
        }
    }
    let counters = client.counters(&arena).unwrap();
    assert_eq!(
        (counters.snapshots, counters.batches, counters.applied),
        (1, 5, 5)
    );
    assert_eq!(counters.bytes, out.len() as u64);
    assert!(counters.last_received.is_some());
    assert_eq!(client.position(&arena), Some(world.position()));
    assert_eq!(client.digest(&arena), None, "no replica in count-only mode");
    client.close();
    assert_eq!(
        next_event(&mut events).await,
        ClientEvent::Disconnected {
            reason: DisconnectReason::Closed
        }
    );
}

#[tokio::test]
async fn a_frontend_trickling_bytes_without_whole_frames_is_closed() {
    let (client, mut events, mut fe) = connected(ClientConfig {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(500),
        ..config()
    })
    .await;
    // One byte every 100 ms of a frame long enough never to complete during the test:
    // bytes keep arriving, whole frames do not, so the front-end counts as silent.
    let frame = FrontendToClient::Output {
        world: arena(),
        payload: Bytes::from(vec![7u8; 200]),
    }
    .encode_to_bytes();
    let mut trickle = frame.iter();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let mut sent = 0;
    let code = loop {
        tokio::select! {
            _ = tick.tick() => {
                let byte = *trickle.next().expect("closed before the frame completes");
                if fe.stream.write_all(&[byte]).await.is_ok() {
                    sent += 1;
                }
            }
            frame = fe.recv_frame() => {
                match ClientToFrontend::decode(&frame.expect("an Error before EOF")).unwrap() {
                    ClientToFrontend::Ping { .. } => {}
                    ClientToFrontend::Error { code, .. } => break code,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    };
    assert_eq!(code, ErrorCode::Timeout);
    assert_eq!(
        next_event(&mut events).await,
        ClientEvent::Disconnected {
            reason: DisconnectReason::Timeout
        }
    );
    assert!(sent >= 4, "trickled only {sent} bytes");
    // Closed before the trickled frame completed (the check above); the elapsed time is
    // only a hang guard, as the idle rule is checked in virtual time elsewhere.
    assert!(sent < frame.len());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "closed after {:?}",
        started.elapsed()
    );
    assert!(!client.is_connected());
}

#[tokio::test]
async fn outputs_are_not_dropped_when_the_application_reads_slowly() {
    const QUEUE: u64 = 8;
    let (client, mut events, mut fe) = connected(ClientConfig {
        event_queue: QUEUE as usize,
        ..config()
    })
    .await;
    const OUTPUTS: u32 = 500;
    let mut out = BytesMut::new();
    for index in 0..OUTPUTS {
        FrontendToClient::Output {
            world: arena(),
            payload: Bytes::from(index.to_be_bytes().to_vec()),
        }
        .encode(&mut out);
    }
    fe.send_bytes(&out).await;
    // The application is busy: it reads nothing until the client has received more
    // outputs than the queue (8) holds, so the queue is full and the reader waits.
    wait_for_frames(
        &client,
        QUEUE + 1,
        "more outputs than the event queue holds",
    )
    .await;
    for index in 0..OUTPUTS {
        assert_eq!(
            next_event(&mut events).await,
            ClientEvent::Output {
                world: arena(),
                payload: Bytes::from(index.to_be_bytes().to_vec()),
            }
        );
        if index % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(client.stats().events_dropped, 0);
    assert!(client.is_connected());
    // The reader is reading again: a ping is answered.
    fe.send(FrontendToClient::Ping { nonce: 77 }).await;
    assert_eq!(fe.recv().await, ClientToFrontend::Pong { nonce: 77 });
    // Closing while the queue is full ends the connection (the reader is not stuck).
    let received = client.stats().frames_received;
    fe.send_bytes(&out).await;
    wait_for_frames(
        &client,
        received + QUEUE + 1,
        "more outputs than the event queue holds, again",
    )
    .await;
    client.close();
    timeout(WAIT, client.closed())
        .await
        .expect("closes while the queue is full");
    assert!(!client.is_connected());
}

/// Waits until `client` has received at least `frames` frames since its handshake
/// (at most 5 s); panics naming `what` did not happen.
async fn wait_for_frames(client: &Client, frames: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let received = client.stats().frames_received;
        if received >= frames {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {WAIT:?} for {what}: {received} of {frames} frames received"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Commits `changes` (key, value) to a hosted world.
fn commit_game(world: &flotilla_game::WorldHandle, changes: &[(&str, &str)]) {
    let mut tx = world.begin();
    for (key, value) in changes {
        tx.set(key.to_string(), value.to_string());
    }
    tx.commit().unwrap();
}

/// Reads events into `seen` until `done(client)` holds (at most 15 s).
async fn until(
    client: &Client,
    events: &mut ClientEvents,
    seen: &mut Vec<ClientEvent>,
    what: &str,
    done: impl Fn(&Client) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done(client) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 15 s for {what}; events: {seen:?}"
        );
        if let Ok(Some(event)) = timeout(Duration::from_millis(50), events.recv()).await {
            seen.push(event);
        }
    }
}

#[tokio::test]
async fn a_game_server_restart_is_survived_without_the_application() {
    use flotilla_frontend::{FrontendConfig, FrontendServer};
    use flotilla_game::{GameConfig, GameServer};

    let arena = arena();
    let game = GameServer::bind("127.0.0.1:0", GameConfig::default())
        .await
        .unwrap();
    let game_addr = game.local_addr();
    let world = game.add_world(arena.clone(), Bytes::new()).unwrap();
    commit_game(&world, &[("a", "1"), ("b", "2")]);
    let frontend = FrontendServer::bind(FrontendConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        game_servers: vec![game_addr.to_string()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = Client::connect(frontend.local_addr(), config())
        .await
        .unwrap();
    let mut events = client.take_events().unwrap();
    let mut seen = Vec::new();

    // The front-end may not know the world yet (its game link is still connecting): an
    // UnknownWorld for a world never served ends that subscription; try again.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        client.subscribe(arena.clone(), None).unwrap();
        match next_event(&mut events).await {
            ClientEvent::SnapshotApplied { .. } => break,
            ClientEvent::Unsubscribed {
                code: ErrorCode::UnknownWorld,
                ..
            } if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // A front-end with no game link yet answers Unavailable: the client retries
            // by itself.
            ClientEvent::Resubscribing { .. } | ClientEvent::Unsubscribed { .. }
                if tokio::time::Instant::now() < deadline => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    commit_game(&world, &[("a", "3")]);
    let want = (world.position(), world.digest());
    until(
        &client,
        &mut events,
        &mut seen,
        "the first sync",
        |client| (client.position(&arena), client.digest(&arena)) == (Some(want.0), Some(want.1)),
    )
    .await;

    // The game server goes away: the front-end tells its observers the world is
    // unavailable; the client keeps its replica and waits.
    drop(world);
    game.shutdown();
    drop(game);
    until(&client, &mut events, &mut seen, "Resubscribing", |client| {
        client.is_waiting(&arena)
    })
    .await;
    assert_eq!(
        client.digest(&arena),
        Some(want.1),
        "replica kept while waiting"
    );
    assert_eq!(client.position(&arena), Some(want.0));

    // A new game server on the same port: a new history (epoch) of the same world.
    let started = tokio::time::Instant::now();
    let game = loop {
        match GameServer::bind(game_addr, GameConfig::default()).await {
            Ok(game) => break game,
            // The old accept loop may hold the port for a moment.
            Err(error) if started.elapsed() < WAIT => {
                eprintln!("rebinding {game_addr}: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("rebinding {game_addr}: {error}"),
        }
    };
    let world = game.add_world(arena.clone(), Bytes::new()).unwrap();
    commit_game(&world, &[("a", "new"), ("c", "4")]);
    assert_ne!(world.position().epoch, want.0.epoch);

    // Without the application doing anything, the replica becomes the new state...
    let want = (world.position(), world.digest());
    until(
        &client,
        &mut events,
        &mut seen,
        "the resync after the restart",
        |client| (client.position(&arena), client.digest(&arena)) == (Some(want.0), Some(want.1)),
    )
    .await;
    assert!(!client.is_waiting(&arena));
    // ...and follows live batches again.
    commit_game(&world, &[("b", "5")]);
    let want = (world.position(), world.digest());
    until(&client, &mut events, &mut seen, "a live batch", |client| {
        (client.position(&arena), client.digest(&arena)) == (Some(want.0), Some(want.1))
    })
    .await;
    assert!(client.get(&arena, b"b").is_some());
    assert!(
        seen.iter().any(|event| matches!(
            event,
            ClientEvent::Resubscribing { world, code: ErrorCode::Unavailable, attempt: 1, .. } if *world == arena
        )),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|event| matches!(event, ClientEvent::Unsubscribed { .. })),
        "{seen:?}"
    );
    assert!(client.is_connected());
    client.close();
    frontend.shutdown().await;
}

/// A pass-through front-end: one client, one game server; subscribes and inputs go up,
/// snapshots, batches and outputs come down (batches and snapshots byte for byte).
async fn pass_through(listener: TcpListener, game: std::net::SocketAddr) {
    let (client_stream, _) = listener.accept().await.unwrap();
    let (mut client_read, mut client_write) = client_stream.into_split();
    let game_stream = TcpStream::connect(game).await.unwrap();
    let (mut game_read, mut game_write) = game_stream.into_split();
    game_write
        .write_all(
            &FrontendToGame::Hello {
                version: 1,
                frontend_id: "pass".to_owned(),
            }
            .encode_to_bytes(),
        )
        .await
        .unwrap();
    let up = tokio::spawn(async move {
        let mut decoder = Decoder::default();
        let mut buf = [0u8; 4096];
        loop {
            let read = client_read.read(&mut buf).await.unwrap_or(0);
            if read == 0 {
                return;
            }
            decoder.feed(&buf[..read]);
            while let Some(message) = decoder.next_message::<ClientToFrontend>().unwrap() {
                let upstream = match message {
                    ClientToFrontend::Hello { .. } => None,
                    ClientToFrontend::Subscribe { world, since } => {
                        Some(FrontendToGame::Subscribe { world, since })
                    }
                    ClientToFrontend::Input { world, payload } => Some(FrontendToGame::Input {
                        world,
                        session: flotilla_wire::SessionId(1),
                        payload,
                    }),
                    _ => None,
                };
                if let Some(upstream) = upstream
                    && game_write
                        .write_all(&upstream.encode_to_bytes())
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
    });
    let welcome = FrontendToClient::Welcome {
        version: 1,
        session_token: Bytes::from_static(b"t"),
        resumed: false,
        server_id: "pass".to_owned(),
    };
    client_write
        .write_all(&welcome.encode_to_bytes())
        .await
        .unwrap();
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = game_read.read(&mut buf).await.unwrap_or(0);
        if read == 0 {
            break;
        }
        decoder.feed(&buf[..read]);
        while let Some(frame) = decoder.next_frame().unwrap() {
            if matches!(
                frame.frame_type(),
                FrameType::Snapshot | FrameType::ChangeBatch
            ) {
                // Forwarded unchanged: the same bytes are valid on the client link.
                GameToFrontend::decode(&frame).unwrap();
                if client_write.write_all(frame.as_bytes()).await.is_err() {
                    up.abort();
                    return;
                }
            }
        }
    }
    up.abort();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random commit sequences: a client replica fed by a real game server through a
    /// pass-through front-end ends with the game server's digest.
    #[test]
    fn client_replica_matches_game_server(
        ticks in proptest::collection::vec(
            proptest::collection::vec((0u8..12, proptest::option::of(0u8..4)), 0..6),
            1..30,
        ),
        subscribe_after in 0usize..30,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let game = flotilla_game::GameServer::bind("127.0.0.1:0", flotilla_game::GameConfig::default())
                .await
                .unwrap();
            let arena = arena();
            let world = game.add_world(arena.clone(), Bytes::new()).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(pass_through(listener, game.local_addr()));
            let client = Client::connect(addr, config()).await.unwrap();
            let mut events = client.take_events().unwrap();
            let split = subscribe_after.min(ticks.len());
            let run = |changes: &[(u8, Option<u8>)]| {
                let mut tx = world.begin();
                for (key, value) in changes {
                    match value {
                        Some(value) => tx.set(format!("k{key}"), vec![*value; usize::from(*key)]),
                        None => tx.remove(format!("k{key}")),
                    }
                }
                tx.commit().unwrap();
            };
            for changes in &ticks[..split] {
                run(changes);
            }
            client.subscribe(arena.clone(), None).unwrap();
            for changes in &ticks[split..] {
                run(changes);
            }
            let target = world.position();
            timeout(WAIT, async {
                while client.position(&arena) != Some(target) {
                    events.recv().await.unwrap();
                }
            })
            .await
            .expect("replica catches up within 5 s");
            assert_eq!(client.digest(&arena), Some(world.digest()));
        });
    }
}
