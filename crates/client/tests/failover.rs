//! Fleet clients over real front-ends and a real game server on loopback TCP: random
//! spread, failover with session resume when a front-end shuts down, every front-end
//! down (give up, or retry until one is back), and failover on an `Error` frame from a
//! (fake) front-end.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{WAIT, arena, collect, commit, game_server, until, wait_until_serving};

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_balance::BackoffConfig;
use flotilla_client::{
    ClientConfig, ClientError, ClientEvent, DisconnectReason, FailoverPolicy, FleetClient,
    FleetConfig,
};
use flotilla_frontend::{FrontendConfig, FrontendServer};
use flotilla_game::{FrontendId, GameEvent, WorldHandle};
use flotilla_wire::{ClientToFrontend, Decoder, ErrorCode, FrontendToClient, Message, SessionId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

/// The session id inside a token (PROTOCOL.md section 2: 8 bytes big-endian, then a MAC).
fn session_id(token: &Bytes) -> SessionId {
    SessionId(u64::from_be_bytes(token[..8].try_into().unwrap()))
}

/// Commits a batch every 20 ms until `stop` is set.
fn start_committer(world: &WorldHandle, stop: &Arc<AtomicBool>) -> JoinHandle<()> {
    let world = world.clone();
    let stop = Arc::clone(stop);
    tokio::spawn(async move {
        let mut tick = 1;
        let mut interval = tokio::time::interval(Duration::from_millis(20));
        while !stop.load(Ordering::Relaxed) {
            interval.tick().await;
            commit(&world, tick);
            tick += 1;
        }
    })
}

/// Waits until `world` has committed `batches` more batches (the committer's pace);
/// panics naming `when` if it does not within [`WAIT`].
async fn world_moves_on(world: &WorldHandle, batches: u64, when: &str) {
    let from = world.position().seq;
    until(
        &format!("the world to move on {batches} batches {when}"),
        WAIT,
        || world.position().seq >= from + batches,
    )
    .await;
}

/// A front-end of the game server at `game` listening on `listen`, once it serves `arena`.
async fn frontend(listen: SocketAddr, game: SocketAddr, id: &str) -> FrontendServer {
    let started = Instant::now();
    let server = loop {
        let config = FrontendConfig {
            listen,
            game_servers: vec![game.to_string()],
            server_id: id.to_owned(),
            ..FrontendConfig::default()
        };
        match FrontendServer::bind(config).await {
            Ok(server) => break server,
            // Rebinding the port of a front-end that just shut down may take a moment.
            Err(error) if started.elapsed() < WAIT => {
                eprintln!("binding {listen}: {error}");
                sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("binding {listen}: {error}"),
        }
    };
    wait_until_serving(server.local_addr()).await;
    server
}

/// Three front-ends of the game server at `game` (`fe-0`..`fe-2`, each in a slot that a
/// test empties when it shuts one down) and their addresses.
async fn three_frontends(game: SocketAddr) -> (Vec<Option<FrontendServer>>, Vec<SocketAddr>) {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut frontends = Vec::new();
    for index in 0..3 {
        frontends.push(Some(frontend(any_port, game, &format!("fe-{index}")).await));
    }
    let addrs = frontends
        .iter()
        .map(|fe| fe.as_ref().unwrap().local_addr())
        .collect();
    (frontends, addrs)
}

fn fleet_config(frontends: Vec<SocketAddr>, name: String, seed: u64) -> FleetConfig {
    FleetConfig {
        client: ClientConfig {
            client_name: name,
            ..ClientConfig::default()
        },
        seed: Some(seed),
        ..FleetConfig::new(frontends)
    }
}

/// True when `client`'s replica of arena is exactly the game's world.
fn in_sync(client: &FleetClient, world: &WorldHandle) -> bool {
    client.position(&arena()) == Some(world.position())
        && client.digest(&arena()) == Some(world.digest())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_spread_over_the_fleet_and_fail_over_with_their_session() {
    let (game, world, game_events) = game_server().await;
    let game_addr = game.local_addr();
    let (mut frontends, addrs) = three_frontends(game_addr).await;
    let stop = Arc::new(AtomicBool::new(false));
    let committer = start_committer(&world, &stop);

    // 30 clients, each with its own (deterministic) seed.
    let mut clients = Vec::new();
    for index in 0..30u64 {
        let config = fleet_config(addrs.clone(), format!("fleet-{index}"), 1000 + index);
        let client = FleetClient::connect(config).await.unwrap();
        let (seen, collector) = collect(&client);
        client.subscribe(arena(), None).unwrap();
        clients.push((client, seen, collector));
    }
    until("every replica synced", WAIT, || {
        clients
            .iter()
            .all(|(client, ..)| client.digest(&arena()).is_some())
    })
    .await;

    // (1) The clients spread over all three front-ends.
    let mut per_frontend: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for (client, ..) in &clients {
        let addr = client.frontend_addr().unwrap();
        let index = addrs.iter().position(|a| *a == addr).unwrap();
        assert_eq!(client.server_id().unwrap(), format!("fe-{index}"));
        *per_frontend.entry(addr).or_default() += 1;
    }
    assert_eq!(per_frontend.len(), 3, "spread: {per_frontend:?}");
    let victim = addrs[0];
    let moved: Vec<usize> = (0..clients.len())
        .filter(|&i| clients[i].0.frontend_addr() == Some(victim))
        .collect();
    assert!(!moved.is_empty());
    let sessions: Vec<SessionId> = clients
        .iter()
        .map(|(client, ..)| session_id(&client.session_token().unwrap()))
        .collect();
    let snapshots_before: Vec<u64> = clients
        .iter()
        .map(|(client, ..)| client.counters(&arena()).unwrap().snapshots)
        .collect();

    // Let the world move on for a while (15 batches) before and after the loss.
    world_moves_on(&world, 15, "before the loss").await;
    let seq_at_shutdown = world.position().seq;

    // (2) fe-0 shuts down: its clients reconnect elsewhere within 2 s, same session.
    let shutdown_at = Instant::now();
    frontends[0].take().unwrap().shutdown().await;
    until("every moved client reconnected", WAIT, || {
        moved
            .iter()
            .all(|&i| clients[i].0.stats().reconnects == 1 && clients[i].0.is_connected())
    })
    .await;
    for &i in &moved {
        let (client, seen, _) = &clients[i];
        let seen = seen.lock().unwrap();
        let lost = seen.iter().find_map(|(_, event)| match event {
            ClientEvent::FrontendLost { from, reason, .. } => Some((*from, reason.clone())),
            _ => None,
        });
        let (from, reason) =
            lost.unwrap_or_else(|| panic!("client {i}: no FrontendLost: {seen:?}"));
        assert_eq!(from, victim);
        assert!(
            matches!(
                reason,
                DisconnectReason::PeerError {
                    code: ErrorCode::ShuttingDown,
                    ..
                } | DisconnectReason::PeerClosed
                    | DisconnectReason::Io(_)
            ),
            "client {i}: {reason:?}"
        );
        let reconnected = seen.iter().find_map(|(at, event)| match event {
            ClientEvent::Reconnected {
                to,
                server_id,
                resumed,
                after,
            } => Some((*at, *to, server_id.clone(), *resumed, *after)),
            _ => None,
        });
        let (at, to, server_id, resumed, after) =
            reconnected.unwrap_or_else(|| panic!("client {i}: no Reconnected: {seen:?}"));
        assert!(to != victim && addrs.contains(&to), "client {i}: to {to}");
        assert_eq!(Some(to), client.frontend_addr());
        assert_eq!(Some(server_id), client.server_id());
        assert!(resumed, "client {i}: session not resumed");
        assert!(
            after < Duration::from_secs(2),
            "client {i}: outage {after:?}"
        );
        assert!(
            at.duration_since(shutdown_at) < Duration::from_secs(2),
            "client {i}: reconnected {:?} after the shutdown began",
            at.duration_since(shutdown_at)
        );
        assert_eq!(session_id(&client.session_token().unwrap()), sessions[i]);
        let stats = client.stats();
        assert_eq!((stats.connection_losses, stats.reconnects), (1, 1));
    }
    for (i, (client, ..)) in clients.iter().enumerate() {
        if !moved.contains(&i) {
            assert_eq!(client.stats().reconnects, 0, "client {i} was not on fe-0");
        }
    }

    world_moves_on(&world, 15, "after the failover").await;

    // (4) An input sent after the failover reaches the game server with the same session.
    for &i in &moved {
        clients[i]
            .0
            .send_input(&arena(), Bytes::from(format!("after-{i}")))
            .unwrap();
    }
    until("the inputs after failover", WAIT, || {
        let events = game_events.lock().unwrap();
        moved.iter().all(|&i| {
            events.iter().any(|(_, event)| {
                matches!(event, GameEvent::Input { world, session, payload }
                    if *world == arena() && *session == sessions[i]
                        && payload == &Bytes::from(format!("after-{i}")))
            })
        })
    })
    .await;
    // The game server saw each moved session open again, from another front-end.
    {
        let events = game_events.lock().unwrap();
        for &i in &moved {
            let opened: Vec<FrontendId> = events
                .iter()
                .filter_map(|(_, event)| match event {
                    GameEvent::SessionOpened {
                        session, frontend, ..
                    } if *session == sessions[i] => Some(*frontend),
                    _ => None,
                })
                .collect();
            let distinct: BTreeSet<FrontendId> = opened.iter().copied().collect();
            assert!(
                opened.len() >= 2 && distinct.len() >= 2,
                "client {i}: SessionOpened from {opened:?}"
            );
        }
    }

    // After a quiet moment every replica equals the game's world; the moved ones went on
    // from the new front-end's ring, without a new snapshot.
    stop.store(true, Ordering::Relaxed);
    committer.await.unwrap();
    until("every replica equal to the world", WAIT, || {
        clients.iter().all(|(client, ..)| in_sync(client, &world))
    })
    .await;
    assert!(
        world.position().seq >= seq_at_shutdown + 10,
        "the world kept committing through the failover"
    );
    for &i in &moved {
        let snapshots = clients[i].0.counters(&arena()).unwrap().snapshots;
        assert_eq!(
            snapshots, snapshots_before[i],
            "client {i}: resumed from the ring, no snapshot"
        );
    }

    for (client, _, collector) in clients {
        client.close();
        timeout(WAIT, client.closed()).await.unwrap();
        assert!(client.is_closed());
        timeout(WAIT, collector).await.unwrap().unwrap();
    }
    for fe in frontends.into_iter().flatten() {
        fe.shutdown().await;
    }
    game.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_frontend_is_down_clients_report_it_give_up_or_wait_for_one() {
    let (game, world, game_events) = game_server().await;
    let game_addr = game.local_addr();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut frontends = Vec::new();
    for index in 0..2 {
        frontends.push(frontend(any_port, game_addr, &format!("fe-{index}")).await);
    }
    let addrs: Vec<SocketAddr> = frontends.iter().map(FrontendServer::local_addr).collect();
    let fast = |max_failed_rounds| FailoverPolicy {
        backoff: BackoffConfig {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(100),
            immediate_failovers: true,
            stable_after: Duration::from_secs(5),
        },
        max_failed_rounds,
    };
    let patient = FleetClient::connect(FleetConfig {
        failover: fast(None),
        max_pending_inputs: 3,
        ..fleet_config(addrs.clone(), "patient".to_owned(), 1)
    })
    .await
    .unwrap();
    let quitter = FleetClient::connect(FleetConfig {
        failover: fast(Some(2)),
        ..fleet_config(addrs.clone(), "quitter".to_owned(), 2)
    })
    .await
    .unwrap();
    let (patient_seen, _patient_collector) = collect(&patient);
    let (quitter_seen, _quitter_collector) = collect(&quitter);
    for client in [&patient, &quitter] {
        client.subscribe(arena(), None).unwrap();
    }
    commit(&world, 1);
    until("both synced", WAIT, || {
        in_sync(&patient, &world) && in_sync(&quitter, &world)
    })
    .await;
    let session = session_id(&patient.session_token().unwrap());

    for fe in frontends {
        fe.shutdown().await;
    }
    // The quitter gives up after 2 failed rounds and says so.
    timeout(WAIT, quitter.closed()).await.unwrap();
    assert!(quitter.is_closed());
    until("GaveUp reported", WAIT, || {
        quitter_seen.lock().unwrap().iter().any(|(_, event)| {
            matches!(
                event,
                ClientEvent::Disconnected {
                    reason: DisconnectReason::GaveUp {
                        failed_rounds: 2,
                        ..
                    }
                }
            )
        })
    })
    .await;
    assert!(matches!(
        quitter.send_input(&arena(), "late"),
        Err(ClientError::NotConnected)
    ));
    assert!(quitter.stats().failed_attempts >= 3);

    // The patient one keeps trying, reports each failure, and queues inputs (bounded).
    until("failed attempts reported", WAIT, || {
        patient_seen.lock().unwrap().iter().any(|(_, event)| {
            matches!(event, ClientEvent::ConnectFailed { failed_rounds, .. } if *failed_rounds >= 3)
        })
    })
    .await;
    assert!(!patient.is_connected());
    assert_eq!(patient.frontend_addr(), None);
    assert_eq!(
        patient.digest(&arena()),
        Some(world.digest()),
        "replica kept"
    );
    for n in 0..3 {
        patient.send_input(&arena(), format!("queued-{n}")).unwrap();
    }
    assert!(matches!(
        patient.send_input(&arena(), "one too many"),
        Err(ClientError::InputQueueFull { inputs: 3, .. })
    ));
    let stats = patient.stats();
    assert_eq!((stats.inputs_queued, stats.inputs_refused), (3, 1));
    commit(&world, 2);

    // A front-end comes back on its old address: the client resumes there, sends what it
    // queued (in order) and catches up.
    let back = frontend(addrs[1], game_addr, "fe-1-again").await;
    until("reconnected", WAIT, || {
        patient.is_connected() && in_sync(&patient, &world)
    })
    .await;
    assert_eq!(patient.frontend_addr(), Some(addrs[1]));
    assert!(
        patient_seen
            .lock()
            .unwrap()
            .iter()
            .any(|(_, event)| matches!(
                event,
                ClientEvent::Reconnected { to, resumed: true, .. } if *to == addrs[1]
            ))
    );
    until("the queued inputs", WAIT, || {
        let payloads: Vec<Bytes> = game_events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, event)| match event {
                GameEvent::Input {
                    session: from,
                    payload,
                    ..
                } if *from == session => Some(payload.clone()),
                _ => None,
            })
            .collect();
        payloads
            == ["queued-0", "queued-1", "queued-2"].map(|text| Bytes::from_static(text.as_bytes()))
    })
    .await;
    assert_eq!(patient.stats().reconnects, 1);
    patient.close();
    timeout(WAIT, patient.closed()).await.unwrap();

    // Connecting to a fleet that is entirely down fails with a clear error.
    let dead: Vec<SocketAddr> = {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        vec![a.local_addr().unwrap(), b.local_addr().unwrap()]
    };
    let error = timeout(
        WAIT,
        FleetClient::connect(FleetConfig {
            failover: fast(Some(2)),
            ..fleet_config(dead, "nobody".to_owned(), 3)
        }),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::GaveUp {
                failed_rounds: 2,
                ..
            }
        ),
        "{error}"
    );
    assert!(matches!(
        FleetClient::connect(FleetConfig::new(Vec::new())).await,
        Err(ClientError::InvalidConfig { .. })
    ));
    back.shutdown().await;
    game.shutdown();
}

/// A fake front-end's side of one connection.
struct FakeConnection {
    stream: TcpStream,
    decoder: Decoder,
}

impl FakeConnection {
    async fn send(&mut self, message: FrontendToClient) {
        self.stream
            .write_all(&message.encode_to_bytes())
            .await
            .unwrap();
    }

    /// The next frame that is not a ping.
    async fn recv(&mut self) -> ClientToFrontend {
        loop {
            if let Some(frame) = self.decoder.next_frame().unwrap() {
                let message = ClientToFrontend::decode(&frame).unwrap();
                if !matches!(message, ClientToFrontend::Ping { .. }) {
                    return message;
                }
                continue;
            }
            self.decoder.buffer_mut().reserve(4096);
            let read = timeout(WAIT, self.stream.read_buf(self.decoder.buffer_mut()))
                .await
                .unwrap()
                .unwrap();
            assert!(read > 0, "client closed");
        }
    }
}

/// Fake front-ends on loopback; their accepted connections, tagged with their index.
struct FakeFleet {
    addrs: Vec<SocketAddr>,
    accepted: Arc<Mutex<Vec<(usize, FakeConnection)>>>,
}

impl FakeFleet {
    async fn start(count: usize) -> Self {
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let mut addrs = Vec::new();
        for index in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(listener.local_addr().unwrap());
            let accepted = Arc::clone(&accepted);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.lock().unwrap().push((
                        index,
                        FakeConnection {
                            stream,
                            decoder: Decoder::default(),
                        },
                    ));
                }
            });
        }
        Self { addrs, accepted }
    }

    /// The next accepted connection (within 10 s).
    async fn next(&self) -> (usize, FakeConnection) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(connection) = self.accepted.lock().unwrap().pop() {
                return connection;
            }
            assert!(Instant::now() < deadline, "no connection");
            sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Reads `connection`'s hello and welcomes it as `fake-{index}` with `token`.
async fn welcome(index: usize, connection: &mut FakeConnection, token: &Bytes) -> Option<Bytes> {
    let presented = match connection.recv().await {
        ClientToFrontend::Hello { session_token, .. } => session_token,
        other => panic!("expected Hello, got {other:?}"),
    };
    connection
        .send(FrontendToClient::Welcome {
            version: 1,
            session_token: token.clone(),
            resumed: presented.is_some(),
            server_id: format!("fake-{index}"),
        })
        .await;
    presented
}

#[tokio::test]
async fn a_silent_frontend_times_out_and_the_client_moves() {
    let fakes = FakeFleet::start(2).await;
    let token = Bytes::from_static(b"silent-session");
    let mut config = fleet_config(fakes.addrs.clone(), "impatient".to_owned(), 9);
    config.client.ping_interval = Duration::from_millis(50);
    config.client.idle_timeout = Duration::from_millis(300);
    let client_task = tokio::spawn(FleetClient::connect(config));
    let (first_index, mut first) = fakes.next().await;
    assert_eq!(welcome(first_index, &mut first, &token).await, None);
    let client = client_task.await.unwrap().unwrap();
    let (seen, _collector) = collect(&client);
    // The first front-end never answers the pings: after 300 ms of silence the client
    // gives up on it and resumes on the other one.
    let (second_index, mut second) = fakes.next().await;
    assert_ne!(second_index, first_index);
    assert_eq!(
        welcome(second_index, &mut second, &token).await,
        Some(token)
    );
    until("Reconnected", WAIT, || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(_, event)| matches!(event, ClientEvent::Reconnected { resumed: true, .. }))
    })
    .await;
    let events: Vec<ClientEvent> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, e)| e.clone())
        .collect();
    assert!(
        matches!(
            &events[..],
            [
                ClientEvent::FrontendLost {
                    reason: DisconnectReason::Timeout,
                    ..
                },
                ClientEvent::Reconnected { after, .. },
            ] if *after < Duration::from_secs(2)
        ),
        "{events:?}"
    );
    assert_eq!(client.server_id(), Some(format!("fake-{second_index}")));
    drop(first);
    client.close();
    timeout(WAIT, client.closed()).await.unwrap();
}

#[tokio::test]
async fn an_overloaded_error_moves_the_session_to_another_frontend() {
    // Two fake front-ends: whichever the client picks first welcomes it, sends a batch of
    // history and then `Error{Overloaded}`; the other must see a hello with the same
    // token and a subscribe from the last position.
    let fakes = FakeFleet::start(2).await;
    let addrs = fakes.addrs.clone();
    let take_connection = || fakes.next();
    let mut world = flotilla_world::WorldState::new(77);
    let mut tx = world.begin();
    tx.set("a", "1");
    let first_batch = tx.commit().unwrap();
    let client_task = tokio::spawn(FleetClient::connect(fleet_config(
        addrs.clone(),
        "solo".to_owned(),
        5,
    )));
    let (first_index, mut first) = take_connection().await;
    assert!(matches!(
        first.recv().await,
        ClientToFrontend::Hello {
            session_token: None,
            ..
        }
    ));
    let token = Bytes::from_static(b"session-token-of-fake-fe");
    first
        .send(FrontendToClient::Welcome {
            version: 1,
            session_token: token.clone(),
            resumed: false,
            server_id: format!("fake-{first_index}"),
        })
        .await;
    let client = client_task.await.unwrap().unwrap();
    let (seen, _collector) = collect(&client);
    client.subscribe(arena(), None).unwrap();
    assert_eq!(
        first.recv().await,
        ClientToFrontend::Subscribe {
            world: arena(),
            since: None
        }
    );
    let mut snapshot_bytes = bytes::BytesMut::new();
    let empty = flotilla_world::WorldState::new(77);
    flotilla_wire::encode_snapshot(&arena(), &empty.snapshot(), 1 << 20, &mut snapshot_bytes)
        .unwrap();
    first.stream.write_all(&snapshot_bytes).await.unwrap();
    first
        .stream
        .write_all(&flotilla_wire::change_batch_frame(&arena(), &first_batch))
        .await
        .unwrap();
    until("the batch applied", WAIT, || {
        client.position(&arena()) == Some(world.position())
    })
    .await;
    first
        .send(FrontendToClient::Error {
            code: ErrorCode::Overloaded,
            text: "full".to_owned(),
        })
        .await;

    let (second_index, mut second) = take_connection().await;
    assert_ne!(
        second_index, first_index,
        "failover picks the other front-end"
    );
    match second.recv().await {
        ClientToFrontend::Hello { session_token, .. } => {
            assert_eq!(session_token, Some(token.clone()))
        }
        other => panic!("expected Hello, got {other:?}"),
    }
    second
        .send(FrontendToClient::Welcome {
            version: 1,
            session_token: token,
            resumed: true,
            server_id: format!("fake-{second_index}"),
        })
        .await;
    assert_eq!(
        second.recv().await,
        ClientToFrontend::Subscribe {
            world: arena(),
            since: Some(world.position())
        }
    );
    until("Reconnected", WAIT, || {
        seen.lock().unwrap().iter().any(|(_, event)| {
            matches!(
                event,
                ClientEvent::Reconnected { to, resumed: true, server_id, .. }
                    if *to == addrs[second_index] && *server_id == format!("fake-{second_index}")
            )
        })
    })
    .await;
    assert!(seen.lock().unwrap().iter().any(|(_, event)| matches!(
        event,
        ClientEvent::FrontendLost {
            reason: DisconnectReason::PeerError {
                code: ErrorCode::Overloaded,
                ..
            },
            ..
        }
    )));
    // Live batches continue on the new connection.
    let mut tx = world.begin();
    tx.set("b", "2");
    let next = tx.commit().unwrap();
    second
        .stream
        .write_all(&flotilla_wire::change_batch_frame(&arena(), &next))
        .await
        .unwrap();
    until("the next batch", WAIT, || {
        client.digest(&arena()) == Some(world.digest())
    })
    .await;
    client.send_input(&arena(), "hi").unwrap();
    assert_eq!(
        second.recv().await,
        ClientToFrontend::Input {
            world: arena(),
            payload: Bytes::from_static(b"hi")
        }
    );
    client.close();
    timeout(WAIT, client.closed()).await.unwrap();
    assert!(seen.lock().unwrap().iter().any(|(_, event)| matches!(
        event,
        ClientEvent::Disconnected {
            reason: DisconnectReason::Closed
        }
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_sending_keeps_a_healthy_frontend() {
    // No subscription and no world traffic: the front-end has nothing to say, and the
    // client sends an input every 100 ms, so its writer is never quiet long enough to
    // ping. It must still hear the front-end within its idle timeout (1.5 s).
    let (game, _world, game_events) = game_server().await;
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let fe = frontend(any_port, game.local_addr(), "fe-0").await;
    let client = FleetClient::connect(fleet_config(vec![fe.local_addr()], "busy".to_owned(), 7))
        .await
        .unwrap();
    let (seen, _collector) = collect(&client);
    let session = session_id(&client.session_token().unwrap());
    let started = Instant::now();
    let mut sent = 0u32;
    while started.elapsed() < Duration::from_secs(3) {
        client
            .send_input(&arena(), format!("input-{sent}"))
            .unwrap();
        sent += 1;
        // Deliberate pacing (an input every 100 ms for 3 s), not synchronisation.
        sleep(Duration::from_millis(100)).await;
    }
    assert!(
        common::events(&seen).is_empty(),
        "{:?}",
        common::events(&seen)
    );
    let stats = client.stats();
    assert_eq!((stats.connection_losses, stats.reconnects), (0, 0));
    assert!(client.is_connected());
    until("every input at the game server", WAIT, || {
        let count = game_events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, event)| {
                matches!(event, GameEvent::Input { session: from, .. } if *from == session)
            })
            .count();
        count == sent as usize
    })
    .await;
    client.close();
    timeout(WAIT, client.closed()).await.unwrap();
    fe.shutdown().await;
    game.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_does_not_wait_for_an_application_that_reads_no_events() {
    let (game, world, _game_events) = game_server().await;
    let game_addr = game.local_addr();
    let (mut frontends, addrs) = three_frontends(game_addr).await;
    let stop = Arc::new(AtomicBool::new(false));
    let committer = start_committer(&world, &stop);
    let small_queue = |name: &str, seed| {
        let mut config = fleet_config(addrs.clone(), name.to_owned(), seed);
        config.client.event_queue = 8;
        config
    };
    // One never takes its events; the other takes them and never reads them.
    let untaken = FleetClient::connect(small_queue("untaken", 21))
        .await
        .unwrap();
    let unread = FleetClient::connect(small_queue("unread", 22))
        .await
        .unwrap();
    let _unread_events = unread.take_events().unwrap();
    let clients = [&untaken, &unread];
    for client in clients {
        client.subscribe(arena(), None).unwrap();
    }
    until("both event queues full", WAIT, || {
        clients
            .iter()
            .all(|client| client.digest(&arena()).is_some() && client.stats().events_dropped > 0)
    })
    .await;
    // Shut down every front-end in use; one stays.
    let doomed: BTreeSet<SocketAddr> = clients
        .iter()
        .map(|client| client.frontend_addr().unwrap())
        .collect();
    let alive = *addrs.iter().find(|addr| !doomed.contains(addr)).unwrap();
    for (index, addr) in addrs.iter().enumerate() {
        if doomed.contains(addr) {
            frontends[index].take().unwrap().shutdown().await;
        }
    }
    // (One may move twice: onto the other doomed front-end before its shutdown.)
    until("both failed over", WAIT, || {
        clients.iter().all(|client| {
            client.stats().reconnects >= 1
                && client.is_connected()
                && client.frontend_addr() == Some(alive)
        })
    })
    .await;
    // The replicas go on from the new front-end.
    stop.store(true, Ordering::Relaxed);
    committer.await.unwrap();
    until("replicas equal to the world", WAIT, || {
        clients.iter().all(|client| in_sync(client, &world))
    })
    .await;
    for client in clients {
        client.close();
        timeout(WAIT, client.closed()).await.unwrap();
    }
    for fe in frontends.into_iter().flatten() {
        fe.shutdown().await;
    }
    game.shutdown();
}

#[tokio::test]
async fn outputs_wait_for_the_application_but_the_failover_does_not() {
    // An application with a one-event queue that reads nothing: the first output fills
    // the queue, the second waits in the fleet client, the third in the connection's
    // queue; the connection's own queue drops the replica notifications that follow. The
    // front-end then closes: the client fails over at once, and when the application
    // finally reads, it gets the three outputs in order, then the failover events.
    let fakes = FakeFleet::start(2).await;
    let token = Bytes::from_static(b"output-session");
    let mut config = fleet_config(fakes.addrs.clone(), "slow-reader".to_owned(), 11);
    config.client.event_queue = 1;
    let client_task = tokio::spawn(FleetClient::connect(config));
    let (first_index, mut first) = fakes.next().await;
    assert_eq!(welcome(first_index, &mut first, &token).await, None);
    let client = client_task.await.unwrap().unwrap();
    client.subscribe(arena(), None).unwrap();
    assert!(matches!(
        first.recv().await,
        ClientToFrontend::Subscribe { .. }
    ));
    for n in 0..3 {
        first
            .send(FrontendToClient::Output {
                world: arena(),
                payload: Bytes::from(format!("output-{n}")),
            })
            .await;
    }
    let mut world = flotilla_world::WorldState::new(5);
    let mut snapshot = bytes::BytesMut::new();
    flotilla_wire::encode_snapshot(&arena(), &world.snapshot(), 1 << 20, &mut snapshot).unwrap();
    first.stream.write_all(&snapshot).await.unwrap();
    const BATCHES: u64 = 5;
    for n in 0..BATCHES {
        let mut tx = world.begin();
        tx.set("n", n.to_string());
        let batch = tx.commit().unwrap();
        first
            .stream
            .write_all(&flotilla_wire::change_batch_frame(&arena(), &batch))
            .await
            .unwrap();
    }
    until("the replica caught up", WAIT, || {
        client.digest(&arena()) == Some(world.digest())
    })
    .await;
    drop(first);

    let (second_index, mut second) = fakes.next().await;
    assert_ne!(second_index, first_index);
    assert_eq!(
        welcome(second_index, &mut second, &token).await,
        Some(token.clone())
    );
    assert_eq!(
        second.recv().await,
        ClientToFrontend::Subscribe {
            world: arena(),
            since: Some(world.position())
        }
    );
    until("reconnected", WAIT, || {
        client.is_connected() && client.stats().reconnects == 1
    })
    .await;
    // The snapshot and batch notifications the connection dropped are counted.
    assert!(
        client.stats().events_dropped > BATCHES,
        "{:?}",
        client.stats()
    );
    let mut events = client.take_events().unwrap();
    let mut received = Vec::new();
    for _ in 0..5 {
        received.push(timeout(WAIT, events.recv()).await.unwrap().unwrap());
    }
    let outputs: Vec<ClientEvent> = (0..3)
        .map(|n| ClientEvent::Output {
            world: arena(),
            payload: Bytes::from(format!("output-{n}")),
        })
        .collect();
    assert_eq!(received[..3], outputs[..], "{received:?}");
    assert!(
        matches!(
            &received[3..],
            [
                ClientEvent::FrontendLost {
                    reason: DisconnectReason::PeerClosed | DisconnectReason::Io(_),
                    ..
                },
                ClientEvent::Reconnected { resumed: true, .. },
            ]
        ),
        "{received:?}"
    );
    client.close();
    timeout(WAIT, client.closed()).await.unwrap();
}

#[tokio::test]
async fn a_connection_stuck_writing_is_left_without_waiting_for_its_flush() {
    // The first front-end welcomes the client, then neither reads nor writes: the client's
    // inputs fill the socket buffers, and its writer is stuck. The idle timeout (300 ms)
    // ends the connection; the fleet client moves on at once, not after the bounded flush
    // of what is still queued (1 s).
    let fakes = FakeFleet::start(2).await;
    let token = Bytes::from_static(b"stuck-session");
    let mut config = fleet_config(fakes.addrs.clone(), "stuck".to_owned(), 13);
    config.client.ping_interval = Duration::from_millis(50);
    config.client.idle_timeout = Duration::from_millis(300);
    config.client.max_queued_bytes = 128 << 20;
    let client_task = tokio::spawn(FleetClient::connect(config));
    let (first_index, mut first) = fakes.next().await;
    assert_eq!(welcome(first_index, &mut first, &token).await, None);
    let client = client_task.await.unwrap().unwrap();
    let welcomed = Instant::now();
    let (seen, _collector) = collect(&client);
    let payload = Bytes::from(vec![7u8; 64 * 1024]);
    for _ in 0..512 {
        client.send_input(&arena(), payload.clone()).unwrap();
    }
    let (second_index, mut second) = fakes.next().await;
    assert_ne!(second_index, first_index);
    assert_eq!(
        welcome(second_index, &mut second, &token).await,
        Some(token)
    );
    until("Reconnected", WAIT, || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(_, event)| matches!(event, ClientEvent::Reconnected { .. }))
    })
    .await;
    let lost_at = seen
        .lock()
        .unwrap()
        .iter()
        .find_map(|(at, event)| {
            matches!(
                event,
                ClientEvent::FrontendLost {
                    reason: DisconnectReason::Timeout,
                    ..
                }
            )
            .then_some(*at)
        })
        .unwrap();
    // The silence was noticed (a `Timeout` loss, asserted above) and, as a hang guard,
    // well within the test's bound. How soon is the keep-alive rule's business, checked
    // in virtual time (flotilla-conn's KeepAlive tests, `flotilla sim failover`), not
    // against a loaded machine's clock with 32 MiB queued.
    let after = lost_at.duration_since(welcomed);
    assert!(after < WAIT, "lost after {after:?}");
    drop(first);
    client.close();
    timeout(WAIT, client.closed()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_taken_over_on_another_frontend_ends_the_victim_with_an_explicit_error() {
    // A live client's token replayed on another front-end takes the session over. The
    // victim's connection must not stay open, silently receiving nothing: the game server
    // tells the victim's front-end, which closes it with Error{SessionMoved}, and the
    // victim's fleet client ends (failing over would push the other holder off in turn).
    let (game, world, _seen) = game_server().await;
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let fe_victim = frontend(any_port, game.local_addr(), "fe-victim").await;
    let fe_thief = frontend(any_port, game.local_addr(), "fe-thief").await;
    let victim = FleetClient::connect(fleet_config(
        vec![fe_victim.local_addr()],
        "victim".to_owned(),
        7,
    ))
    .await
    .unwrap();
    let mut events = victim.take_events().unwrap();
    victim.subscribe(arena(), None).unwrap();
    until("the victim's replica", WAIT, || in_sync(&victim, &world)).await;
    let token = victim.session_token().unwrap();

    let thief = flotilla_client::Client::connect(
        fe_thief.local_addr(),
        ClientConfig {
            client_name: "thief".to_owned(),
            session_token: Some(token.clone()),
            ..ClientConfig::default()
        },
    )
    .await
    .unwrap();
    assert!(thief.resumed(), "the token resumes the session");

    let reason = timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(ClientEvent::Disconnected { reason }) => break reason,
                Some(_) => {}
                None => panic!("events ended without Disconnected"),
            }
        }
    })
    .await
    .expect("the victim is told");
    assert!(
        matches!(
            &reason,
            DisconnectReason::PeerError {
                code: ErrorCode::SessionMoved,
                ..
            }
        ),
        "{reason:?}"
    );
    timeout(WAIT, victim.closed()).await.unwrap();
    assert_eq!(victim.stats().reconnects, 0, "no fight over the session");
    // The front-end publishes its counters after its turns.
    until("the victim's front-end counts the takeover", WAIT, || {
        fe_victim.stats().machine.sessions_taken_over == 1
    })
    .await;
    // The session's outputs go to the connection that carries it now.
    let session = session_id(&token);
    let mut thief_events = thief.take_events().unwrap();
    until("the game routes the session to the thief's front-end", WAIT, || {
        game.send_output(&arena(), session, Bytes::from_static(b"yours"))
            .is_ok()
            && matches!(
                thief_events.try_recv(),
                Some(ClientEvent::Output { ref payload, .. }) if payload == &Bytes::from_static(b"yours")
            )
    })
    .await;
    game.shutdown();
}
