//! The front-end shell on real loopback TCP, between a tiny in-test game server (speaking
//! flotilla-wire frames directly) and raw test clients.

// Tests and benchmarks are shells: they drive real time, sockets and tasks.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use flotilla_frontend::{FrontendConfig, FrontendServer};
use flotilla_wire::{
    ClientToFrontend, Decoder, ErrorCode, FrontendToClient, FrontendToGame, GameToFrontend,
    Message, SnapshotAssembler, SnapshotPart, WorldId,
};
use flotilla_world::{Replica, ReplicaConfig, WorldState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const WAIT: Duration = Duration::from_secs(10);

fn arena() -> WorldId {
    WorldId::new("arena").unwrap()
}

/// What the test asks the fake game server to do.
enum Command {
    /// Commit one batch setting `key` to `value` and send it if subscribed.
    Commit(String, String),
    /// Report the world's digest.
    Digest(oneshot::Sender<u64>),
}

/// A game server hosting the world `arena`: snapshots on subscribe, batches on command,
/// outputs echoing each input ("echo:" + payload) to the sending session.
struct FakeGame {
    addr: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
}

impl FakeGame {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(Self::serve(listener, rx));
        Self { addr, commands }
    }

    async fn serve(listener: TcpListener, mut commands: mpsc::UnboundedReceiver<Command>) {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let mut decoder = Decoder::default();
        let mut world = WorldState::new(0xfeed);
        let mut subscribed = false;
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                read = reader.read(&mut buf) => {
                    let Ok(n) = read else { return };
                    if n == 0 {
                        return;
                    }
                    decoder.feed(&buf[..n]);
                    while let Some(message) = decoder.next_message::<FrontendToGame>().unwrap() {
                        let reply: Vec<Bytes> = match message {
                            FrontendToGame::Hello { .. } => vec![
                                GameToFrontend::Welcome { version: 1, server_id: "fake-game".into() }.encode_to_bytes(),
                                GameToFrontend::WorldAdded { world: arena(), info: Bytes::from_static(b"{\"kind\":\"arena\"}") }.encode_to_bytes(),
                            ],
                            FrontendToGame::Subscribe { world: w, .. } if w == arena() => {
                                subscribed = true;
                                vec![GameToFrontend::Snapshot { world: arena(), part: SnapshotPart::Whole, snapshot: world.snapshot() }.encode_to_bytes()]
                            }
                            FrontendToGame::Subscribe { world: w, .. } => vec![GameToFrontend::WorldRemoved { world: w }.encode_to_bytes()],
                            FrontendToGame::Unsubscribe { .. } => {
                                subscribed = false;
                                vec![]
                            }
                            FrontendToGame::Input { world: w, session, payload } => {
                                let mut echo = b"echo:".to_vec();
                                echo.extend_from_slice(&payload);
                                vec![GameToFrontend::Output { world: w, session, payload: Bytes::from(echo) }.encode_to_bytes()]
                            }
                            FrontendToGame::Ping { nonce } => vec![GameToFrontend::Pong { nonce }.encode_to_bytes()],
                            _ => vec![],
                        };
                        for frame in reply {
                            writer.write_all(&frame).await.unwrap();
                        }
                    }
                }
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Commit(key, value)) => {
                        let mut tx = world.begin();
                        tx.set(key, value);
                        let batch = tx.commit().unwrap();
                        if subscribed {
                            writer.write_all(&flotilla_wire::change_batch_frame(&arena(), &batch)).await.unwrap();
                        }
                    }
                    Some(Command::Digest(reply)) => {
                        let _ = reply.send(world.digest());
                    }
                },
            }
        }
    }

    fn commit(&self, key: &str, value: &str) {
        self.commands
            .send(Command::Commit(key.to_owned(), value.to_owned()))
            .unwrap();
    }

    async fn digest(&self) -> u64 {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Digest(tx)).unwrap();
        rx.await.unwrap()
    }
}

/// A raw client: a socket and a decoder, nothing else.
struct TestClient {
    stream: TcpStream,
    decoder: Decoder,
}

impl TestClient {
    /// The client vanishes as if its machine died: its kernel drops every segment that
    /// arrives from now on (a socket filter of one instruction, `ret #0`), so nothing
    /// the front-end sends is acknowledged, and the socket is not closed (no FIN, no
    /// reset).
    fn vanish(&self) {
        const BPF_RET_K: u16 = 0x06;
        let drop_everything = [libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        socket2::SockRef::from(&self.stream)
            .attach_filter(&drop_everything)
            .unwrap();
    }

    async fn connect(addr: SocketAddr, name: &str) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut client = Self {
            stream,
            decoder: Decoder::default(),
        };
        client
            .send(&ClientToFrontend::Hello {
                version: 1,
                session_token: None,
                client_name: name.into(),
            })
            .await;
        match client.recv().await {
            Some(FrontendToClient::Welcome { resumed: false, .. }) => {}
            other => panic!("no welcome: {other:?}"),
        }
        client
    }

    async fn send(&mut self, message: &ClientToFrontend) {
        self.stream
            .write_all(&message.encode_to_bytes())
            .await
            .unwrap();
    }

    /// The next frame other than a keep-alive ping (answered), `None` at EOF.
    async fn recv(&mut self) -> Option<FrontendToClient> {
        loop {
            if let Some(message) = self.decoder.next_message::<FrontendToClient>().unwrap() {
                if let FrontendToClient::Ping { nonce } = message {
                    self.send(&ClientToFrontend::Pong { nonce }).await;
                    continue;
                }
                return Some(message);
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
                .await
                .expect("nothing received in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    /// Subscribes to the directory and waits until it lists `world`.
    async fn wait_for_directory_entry(&mut self, world: &WorldId) {
        self.send(&ClientToFrontend::Subscribe {
            world: WorldId::DIRECTORY,
            since: None,
        })
        .await;
        loop {
            match self.recv().await {
                Some(FrontendToClient::Snapshot { snapshot, .. })
                    if snapshot
                        .entries
                        .iter()
                        .any(|(key, _)| key == world.as_bytes()) =>
                {
                    break;
                }
                Some(FrontendToClient::ChangeBatch { batch, .. })
                    if batch.upserts.iter().any(|(key, _)| key == world.as_bytes()) =>
                {
                    break;
                }
                Some(_) => {}
                None => panic!("closed while waiting for the directory"),
            }
        }
        self.send(&ClientToFrontend::Unsubscribe {
            world: WorldId::DIRECTORY,
        })
        .await;
    }

    /// Subscribes to `world` and returns a replica synced from its snapshot.
    async fn subscribe(&mut self, world: &WorldId) -> Replica {
        self.send(&ClientToFrontend::Subscribe {
            world: world.clone(),
            since: None,
        })
        .await;
        let mut assembler = SnapshotAssembler::new();
        loop {
            match self.recv().await {
                Some(FrontendToClient::Snapshot {
                    world: w,
                    part,
                    snapshot,
                }) if w == *world => {
                    if let Some(snapshot) = assembler.push(part, snapshot).unwrap() {
                        let mut replica = Replica::new(ReplicaConfig::CLIENT);
                        replica.apply_snapshot(snapshot);
                        return replica;
                    }
                }
                // Late directory batches may still arrive.
                Some(FrontendToClient::ChangeBatch { world: w, .. }) if w == WorldId::DIRECTORY => {
                }
                other => panic!("expected a snapshot, got {other:?}"),
            }
        }
    }

    /// Applies `count` batches of `world` to `replica`.
    async fn apply_batches(&mut self, world: &WorldId, replica: &mut Replica, count: usize) {
        let mut applied = 0;
        while applied < count {
            match self.recv().await {
                Some(FrontendToClient::ChangeBatch { world: w, batch }) if w == *world => {
                    replica.apply_batch(batch).unwrap();
                    applied += 1;
                }
                Some(FrontendToClient::ChangeBatch { world: w, .. }) if w == WorldId::DIRECTORY => {
                }
                other => panic!("expected a batch, got {other:?}"),
            }
        }
    }
}

async fn start_frontend(game: &FakeGame) -> FrontendServer {
    start_frontend_with(game, FrontendConfig::default()).await
}

async fn start_frontend_with(game: &FakeGame, defaults: FrontendConfig) -> FrontendServer {
    let config = FrontendConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        game_servers: vec![game.addr.to_string()],
        server_id: "fe-test".into(),
        seed: Some(1),
        ..defaults
    };
    FrontendServer::bind(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_follow_the_world_inputs_round_trip_and_garbage_closes_one_connection() {
    let test = async {
        let game = FakeGame::start().await;
        let frontend = start_frontend(&game).await;
        let addr = frontend.local_addr();

        let mut alice = TestClient::connect(addr, "alice").await;
        alice.wait_for_directory_entry(&arena()).await;
        let mut bob = TestClient::connect(addr, "bob").await;
        let mut mallory = TestClient::connect(addr, "mallory").await;

        let mut alice_world = alice.subscribe(&arena()).await;
        let mut bob_world = bob.subscribe(&arena()).await;
        for i in 0..5 {
            game.commit(&format!("ship/{i}"), &format!("{i},{i}"));
        }
        alice.apply_batches(&arena(), &mut alice_world, 5).await;
        bob.apply_batches(&arena(), &mut bob_world, 5).await;
        let digest = game.digest().await;
        assert_eq!(alice_world.digest(), digest);
        assert_eq!(bob_world.digest(), digest);

        // Input to the game server and its output back to the same session.
        alice
            .send(&ClientToFrontend::Input {
                world: arena(),
                payload: Bytes::from_static(b"steer left"),
            })
            .await;
        assert_eq!(
            alice.recv().await,
            Some(FrontendToClient::Output {
                world: arena(),
                payload: Bytes::from_static(b"echo:steer left")
            })
        );

        // Garbage (an HTTP request) on one socket: an Error frame, then that socket closes.
        mallory
            .stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        match mallory.recv().await {
            Some(FrontendToClient::Error { code, .. }) => {
                assert!(
                    matches!(code, ErrorCode::FrameTooLarge | ErrorCode::Malformed),
                    "{code:?}"
                )
            }
            other => panic!("expected an error frame, got {other:?}"),
        }
        assert_eq!(
            mallory.recv().await,
            None,
            "the garbage connection is closed"
        );

        // The others go on.
        for i in 5..8 {
            game.commit(&format!("ship/{i}"), "moved");
        }
        alice.apply_batches(&arena(), &mut alice_world, 3).await;
        bob.apply_batches(&arena(), &mut bob_world, 3).await;
        let digest = game.digest().await;
        assert_eq!(alice_world.digest(), digest);
        assert_eq!(bob_world.digest(), digest);

        // The machine's counters are published at the end of the event loop's turn, just
        // after its writes: a client may read the last batch a moment before they are.
        let mut stats = frontend.stats();
        for _ in 0..500 {
            if stats.machine.batches_forwarded >= 16 && stats.machine.protocol_errors >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            stats = frontend.stats();
        }
        assert_eq!(stats.accepted, 3);
        assert_eq!(stats.game_connects, 1);
        assert!(stats.machine.protocol_errors >= 1);
        assert!(stats.machine.batches_forwarded >= 16);
        assert!(stats.bytes_written > 0);
        frontend.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test timed out");
}

/// PROTOCOL.md section 7: the front-end's kernel tells it that a client vanished (its TCP
/// acknowledged nothing for 6 s), whether the front-end was streaming to it or it was
/// quiet; a client that only listens, sending no frame at all, keeps its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_clients_are_closed_by_the_kernel_and_a_client_that_only_listens_stays() {
    let test = async {
        let game = FakeGame::start().await;
        let frontend = start_frontend(&game).await;
        let addr = frontend.local_addr();
        let mut streaming = TestClient::connect(addr, "streaming").await;
        streaming.wait_for_directory_entry(&arena()).await;
        let mut listening = TestClient::connect(addr, "listening").await;
        let quiet = TestClient::connect(addr, "quiet").await;
        streaming.subscribe(&arena()).await;
        let mut listening_world = listening.subscribe(&arena()).await;
        streaming.vanish();
        quiet.vanish();
        let started = std::time::Instant::now();
        let mut commits = 0;
        // A batch every 50 ms; the listener reads them and sends nothing.
        while frontend.stats().clients_vanished < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not noticed: {:?}",
                frontend.stats()
            );
            commits += 1;
            game.commit(&format!("ship/{commits}"), "1,1");
            listening
                .apply_batches(&arena(), &mut listening_world, 1)
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The kernel's verdict (the frame-silence backstop would take 60 s).
        let noticed_after = started.elapsed();
        for _ in 0..3 {
            commits += 1;
            game.commit(&format!("ship/{commits}"), "2,2");
        }
        listening
            .apply_batches(&arena(), &mut listening_world, 3)
            .await;
        assert_eq!(listening_world.digest(), game.digest().await);
        let stats = frontend.stats();
        assert_eq!(stats.clients_vanished, 2, "{stats:?}");
        assert_eq!(stats.machine.connections, 1, "{stats:?}");
        eprintln!("vanished clients closed {noticed_after:?} after they vanished");
        frontend.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_game_server_unsubscribes_its_observers_after_the_resume_grace() {
    let test = async {
        let game = FakeGame::start().await;
        let grace = Duration::from_millis(300);
        let frontend = start_frontend_with(
            &game,
            FrontendConfig {
                game_resume_grace: grace,
                ..FrontendConfig::default()
            },
        )
        .await;
        let mut alice = TestClient::connect(frontend.local_addr(), "alice").await;
        alice.wait_for_directory_entry(&arena()).await;
        alice.subscribe(&arena()).await;
        // Dropping the command channel ends the fake game server's task and its socket;
        // it never comes back, so once the grace is over the world ends.
        drop(game);
        let lost = tokio::time::Instant::now();
        loop {
            match alice.recv().await {
                Some(FrontendToClient::Unsubscribed { world, code, .. }) => {
                    assert_eq!((world, code), (arena(), ErrorCode::Unavailable));
                    assert!(lost.elapsed() >= grace, "ended before the grace was over");
                    break;
                }
                Some(FrontendToClient::ChangeBatch { world, .. })
                    if world == WorldId::DIRECTORY => {}
                other => panic!("expected Unsubscribed, got {other:?}"),
            }
        }
        frontend.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_flooder_is_closed_and_the_other_players_inputs_go_on() {
    // IPv4: the flooder's address is then dropped by the listener's kernel filter.
    input_flood("127.0.0.1:0", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_flooder_over_ipv6_is_closed_and_refused_with_an_error() {
    // IPv6 (not filtered in the kernel): accepted, told why, closed.
    input_flood("[::1]:0", false).await;
}

/// Mallory floods inputs on a front-end listening on `listen` and is closed; reconnecting
/// from the same address is refused (by the kernel, `refused_in_kernel`: no answer at
/// all; else accepted and told `Error{Overloaded}`); Alice's inputs go on.
async fn input_flood(listen: &str, refused_in_kernel: bool) {
    let test = async {
        let game = FakeGame::start().await;
        let frontend = FrontendServer::bind(FrontendConfig {
            listen: listen.parse().unwrap(),
            game_servers: vec![game.addr.to_string()],
            server_id: "fe-test".into(),
            seed: Some(1),
            ..FrontendConfig::default()
        })
        .await
        .unwrap();
        let addr = frontend.local_addr();
        let mut alice = TestClient::connect(addr, "alice").await;
        alice.wait_for_directory_entry(&arena()).await;
        let mallory = TestClient::connect(addr, "mallory").await;

        // Mallory sends inputs as fast as the socket takes them: far more than the
        // default budget (2,000 a second, bursts of 2,000).
        let input = ClientToFrontend::Input {
            world: arena(),
            payload: Bytes::from_static(b"x"),
        }
        .encode_to_bytes();
        let flood: Vec<u8> = input
            .iter()
            .copied()
            .cycle()
            .take(input.len() * 200_000)
            .collect();
        let (mut reader, mut writer) = mallory.stream.into_split();
        let flooder = tokio::spawn(async move {
            // The front-end closes the connection partway: the write fails then.
            let _ = writer.write_all(&flood).await;
        });
        let mut decoder = mallory.decoder;
        let closing = loop {
            if let Some(message) = decoder.next_message::<FrontendToClient>().unwrap() {
                match message {
                    FrontendToClient::Error { code, text } => break (code, text),
                    // The echoes of the inputs within the budget.
                    FrontendToClient::Output { .. } | FrontendToClient::Ping { .. } => continue,
                    other => panic!("unexpected {other:?}"),
                }
            }
            let mut buf = vec![0u8; 64 * 1024];
            let read = tokio::time::timeout(WAIT, reader.read(&mut buf))
                .await
                .expect("the flooder hears from the front-end")
                .unwrap_or(0);
            assert!(read > 0, "closed without an Error frame");
            decoder.feed(&buf[..read]);
        };
        assert_eq!(closing.0, ErrorCode::Overloaded, "{}", closing.1);
        assert!(closing.1.contains("inputs a second"), "{}", closing.1);
        let _ = flooder.await;

        // Reconnecting to burst again does not work: the address is refused for a while
        // (connections already open, like alice's, are not touched).
        if refused_in_kernel {
            // Its SYN goes unanswered: the attempt cannot complete.
            let attempt =
                tokio::time::timeout(Duration::from_millis(700), TcpStream::connect(addr)).await;
            assert!(attempt.is_err(), "the flooder reconnected: {attempt:?}");
        } else {
            refused_with_an_error(addr).await;
        }

        // Alice's input still makes its round trip.
        alice
            .send(&ClientToFrontend::Input {
                world: arena(),
                payload: Bytes::from_static(b"after the flood"),
            })
            .await;
        loop {
            match alice.recv().await {
                Some(FrontendToClient::Output { payload, .. }) => {
                    assert_eq!(payload, Bytes::from_static(b"echo:after the flood"));
                    break;
                }
                Some(FrontendToClient::ChangeBatch { world, .. })
                    if world == WorldId::DIRECTORY => {}
                other => panic!("expected alice's output, got {other:?}"),
            }
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        while frontend.stats().machine.clients_closed_for_input_rate != 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                frontend.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        frontend.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test timed out");
}

/// Connects to `addr` and expects to be told `Error{Overloaded}` (the address flooded).
async fn refused_with_an_error(addr: SocketAddr) {
    let mut again = TcpStream::connect(addr).await.unwrap();
    let mut decoder = Decoder::default();
    let refusal = loop {
        if let Some(message) = decoder.next_message::<FrontendToClient>().unwrap() {
            break message;
        }
        let mut buf = vec![0u8; 4096];
        let read = tokio::time::timeout(WAIT, again.read(&mut buf))
            .await
            .expect("the front-end answers the reconnect")
            .unwrap_or(0);
        assert!(read > 0, "closed without an Error frame");
        decoder.feed(&buf[..read]);
    };
    assert!(
        matches!(
            &refusal,
            FrontendToClient::Error { code: ErrorCode::Overloaded, text }
                if text.contains("flooded inputs")
        ),
        "{refusal:?}"
    );
}
