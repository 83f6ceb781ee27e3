//! The front-end system on real loopback TCP: a game server, front-ends and
//! clients, as the tests ask:
//! - every observer's replica equals the game server's state (digests);
//! - the game server's sent-batch count does not grow with the number of observers;
//! - a world's replica on a front-end lives from its first subscriber to its last;
//! - a slow observer (stops reading) is resynced; the others get every batch;
//! - garbage on one client socket closes that connection only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flotilla_client::{Client, ClientConfig, ReplicaMode};
use flotilla_frontend::{FrontendConfig, FrontendServer};
use flotilla_game::{GameConfig, GameServer, WorldHandle, WorldId};
use flotilla_wire::{ClientToFrontend, Decoder, FrontendToClient, Message};
use flotilla_world::{Replica, ReplicaConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const LIMIT: Duration = Duration::from_secs(20);

/// Waits until `check` holds (polling), failing the test after `LIMIT`.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn game_with_world(name: &str) -> (GameServer, WorldHandle, WorldId) {
    let game = GameServer::bind("127.0.0.1:0", GameConfig::default())
        .await
        .unwrap();
    let id = WorldId::new(name).unwrap();
    let world = game
        .add_world(id.clone(), Bytes::from_static(b"test world"))
        .unwrap();
    let mut tx = world.begin();
    tx.set("seed", "0");
    tx.commit().unwrap();
    (game, world, id)
}

async fn frontend(game: &GameServer, id: &str, send_budget: usize) -> FrontendServer {
    let config = FrontendConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        game_servers: vec![game.local_addr().to_string()],
        server_id: id.into(),
        send_budget,
        // Short, so the lifecycle test sees the replica go soon after its last subscriber.
        replica_grace_period: Duration::from_millis(300),
        ..FrontendConfig::default()
    };
    let fe = FrontendServer::bind(config).await.unwrap();
    until("the front-end to reach the game server", || async {
        game.stats().frontends.iter().any(|f| f.name == id)
    })
    .await;
    fe
}

fn batches_sent_to(game: &GameServer, fe: &str) -> u64 {
    game.stats()
        .frontends
        .iter()
        .find(|f| f.name == fe)
        .map_or(0, |f| f.batches_sent)
}

async fn observers(fe: &FrontendServer, world: &WorldId, n: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for i in 0..n {
        let config = ClientConfig {
            client_name: format!("observer-{i}"),
            mode: ReplicaMode::Full,
            ..ClientConfig::default()
        };
        let c = Client::connect(fe.local_addr(), config).await.unwrap();
        c.subscribe(world.clone(), None).unwrap();
        clients.push(c);
    }
    clients
}

async fn all_synced(clients: &[Client], world: &WorldHandle) {
    let id = world.id().clone();
    until("every replica to equal the game state", || {
        let want = (world.position(), world.digest());
        let ok = clients
            .iter()
            .all(|c| c.position(&id) == Some(want.0) && c.digest(&id) == Some(want.1));
        async move { ok }
    })
    .await;
}

/// Commits `n` batches, each changing one `value_len`-byte value (never a no-op).
fn commit_n(world: &WorldHandle, n: usize, value_len: usize) {
    for _ in 0..n {
        let seq = world.position().seq;
        let mut value = vec![(seq % 251) as u8; value_len];
        value[..8].copy_from_slice(&seq.to_le_bytes());
        let mut tx = world.begin();
        tx.set(format!("k{}", seq % 10), value);
        tx.set("tick", seq.to_string());
        tx.commit().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_batches_do_not_grow_with_observers_and_replicas_match() {
    let (game, world, id) = game_with_world("arena").await;
    let mut sent = Vec::new();
    for (fe_id, n) in [("fe-one", 1), ("fe-many", 40)] {
        let fe = frontend(&game, fe_id, 1 << 20).await;
        let clients = observers(&fe, &id, n).await;
        all_synced(&clients, &world).await;
        let before = batches_sent_to(&game, fe_id);
        commit_n(&world, 50, 100);
        all_synced(&clients, &world).await;
        sent.push(batches_sent_to(&game, fe_id) - before);
        for c in &clients {
            assert_eq!(c.counters(&id).unwrap().resyncs, 0);
        }
        for c in clients {
            c.close();
        }
        fe.shutdown().await;
    }
    assert_eq!(
        sent,
        vec![50, 50],
        "one batch per commit per front-end, for 1 and for 40 observers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_replica_lives_from_its_first_subscriber_to_its_last() {
    let (game, world, id) = game_with_world("lifecycle").await;
    let fe = frontend(&game, "fe-life", 1 << 20).await;
    let subscriptions = |game: &GameServer| {
        game.stats()
            .frontends
            .iter()
            .map(|f| f.subscriptions)
            .sum::<usize>()
    };
    assert_eq!(fe.stats().machine.replicas, 0);
    assert_eq!(subscriptions(&game), 0);
    let a = observers(&fe, &id, 1).await;
    until("a replica and an upstream subscription", || {
        let ok = fe.stats().machine.replicas == 1 && subscriptions(&game) == 1;
        async move { ok }
    })
    .await;
    let b = observers(&fe, &id, 1).await;
    all_synced(&a, &world).await;
    all_synced(&b, &world).await;
    assert_eq!(
        fe.stats().machine.replicas,
        1,
        "one replica per world, not per subscriber"
    );
    assert_eq!(subscriptions(&game), 1);
    a[0].unsubscribe(&id).unwrap();
    commit_n(&world, 3, 10);
    all_synced(&b, &world).await;
    assert_eq!(fe.stats().machine.replicas, 1, "b still watches");
    b[0].unsubscribe(&id).unwrap();
    until("the replica and the upstream subscription to go", || {
        let ok = fe.stats().machine.replicas == 0 && subscriptions(&game) == 0;
        async move { ok }
    })
    .await;
    fe.shutdown().await;
}

/// A raw observer that says hello, subscribes, and then reads only when told to.
struct RawObserver {
    stream: tokio::net::TcpStream,
    decoder: Decoder,
    replica: Replica,
}

impl RawObserver {
    async fn connect(fe: &FrontendServer, world: &WorldId, rcvbuf: u32) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(rcvbuf).unwrap();
        let mut stream = socket.connect(fe.local_addr()).await.unwrap();
        let mut out = BytesMut::new();
        ClientToFrontend::Hello {
            version: flotilla_wire::PROTOCOL_VERSION,
            session_token: None,
            client_name: "raw".into(),
        }
        .encode(&mut out);
        ClientToFrontend::Subscribe {
            world: world.clone(),
            since: None,
        }
        .encode(&mut out);
        stream.write_all(&out).await.unwrap();
        Self {
            stream,
            decoder: Decoder::default(),
            replica: Replica::new(ReplicaConfig::CLIENT),
        }
    }

    /// Reads and applies frames until the replica reaches `want` (digest).
    async fn read_until(&mut self, want: u64, snapshots: &mut u32) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut assembler = flotilla_wire::SnapshotAssembler::new();
        while self.replica.is_synced().then(|| self.replica.digest()) != Some(want) {
            let n = tokio::time::timeout(LIMIT, self.stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(
                n > 0,
                "the front-end closed the slow observer instead of resyncing it"
            );
            self.decoder.feed(&buf[..n]);
            while let Some(msg) = self.decoder.next_message::<FrontendToClient>().unwrap() {
                match msg {
                    FrontendToClient::Snapshot { part, snapshot, .. } => {
                        if let Some(whole) = assembler.push(part, snapshot).unwrap() {
                            *snapshots += 1;
                            self.replica.apply_snapshot(whole);
                        }
                    }
                    FrontendToClient::ChangeBatch { batch, .. } if self.replica.is_synced() => {
                        self.replica.apply_batch(batch).unwrap();
                    }
                    FrontendToClient::Ping { nonce } => {
                        let mut out = BytesMut::new();
                        ClientToFrontend::Pong { nonce }.encode(&mut out);
                        self.stream.write_all(&out).await.unwrap();
                    }
                    _ => {}
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_observer_is_resynced_and_the_others_get_every_batch() {
    let (game, world, id) = game_with_world("busy").await;
    let fe = frontend(&game, "fe-slow", 256 * 1024).await;
    let fast = observers(&fe, &id, 3).await;
    let mut slow = RawObserver::connect(&fe, &id, 4096).await;
    all_synced(&fast, &world).await;
    let start_seq = world.position().seq;
    // 8 MB of changes at a pace the readers keep up with: far more than the slow
    // observer's budget and socket buffers.
    let total = 1_000;
    for chunk in 0..total / 10 {
        commit_n(&world, 10, 8 * 1024);
        if chunk % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    all_synced(&fast, &world).await;
    for c in &fast {
        let counters = c.counters(&id).unwrap();
        assert_eq!(counters.resyncs, 0, "a fast observer was never resynced");
        assert_eq!(
            counters.snapshots, 1,
            "only the initial snapshot: {counters:?}"
        );
        assert!(counters.applied >= total as u64, "{counters:?}");
    }
    assert_eq!(world.position().seq, start_seq + total as u64);
    // Held back: while its socket is full, the batches it misses are owed, not queued
    // (or, past its budget, dropped): what is queued stays within the budget.
    let stats = fe.stats().machine;
    assert!(
        stats.bytes_queued <= 256 * 1024,
        "the slow observer was not held back: {stats:?}"
    );
    // The slow observer reads again: it catches up through a fresh snapshot.
    let mut snapshots = 0;
    slow.read_until(world.digest(), &mut snapshots).await;
    assert!(
        snapshots >= 2,
        "initial snapshot plus at least one resync snapshot, got {snapshots}"
    );
    assert!(fe.stats().machine.resyncs >= 1, "{:?}", fe.stats().machine);
    fe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_one_socket_closes_that_connection_only() {
    let (game, world, id) = game_with_world("calm").await;
    let fe = frontend(&game, "fe-garbage", 1 << 20).await;
    let good = observers(&fe, &id, 2).await;
    all_synced(&good, &world).await;
    let mut bad = tokio::net::TcpStream::connect(fe.local_addr())
        .await
        .unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    // The front-end answers with an Error frame (or nothing) and closes.
    tokio::time::timeout(LIMIT, bad.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    if !rest.is_empty() {
        let mut d = Decoder::default();
        d.feed(&rest);
        match d.next_message::<FrontendToClient>() {
            Ok(Some(FrontendToClient::Error { .. })) => {}
            other => panic!("expected an Error frame before the close, got {other:?}"),
        }
    }
    commit_n(&world, 20, 50);
    all_synced(&good, &world).await;
    assert!(good.iter().all(Client::is_connected));
    assert!(fe.stats().machine.protocol_errors >= 1);
    fe.shutdown().await;
}
