//! Helpers shared by the client's integration tests: the test world, polling with a
//! limit, and an event collector.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::net::SocketAddr;

use bytes::Bytes;
use flotilla_client::{Client, ClientConfig, ClientEvent, FleetClient};
use flotilla_game::{GameConfig, GameEvent, GameServer, WorldHandle};
use flotilla_wire::WorldId;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

/// How long a test waits for anything that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// The world the tests' game servers host.
pub fn arena() -> WorldId {
    WorldId::new("arena").unwrap()
}

/// Everything an event collector saw, with when it saw it.
pub type Seen<E> = Arc<Mutex<Vec<(Instant, E)>>>;

/// Collects a fleet client's events except the frequent `BatchApplied`.
pub fn collect(client: &FleetClient) -> (Seen<ClientEvent>, JoinHandle<()>) {
    let seen: Seen<ClientEvent> = Arc::default();
    let mut events = client.take_events().unwrap();
    let sink = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if !matches!(event, ClientEvent::BatchApplied { .. }) {
                sink.lock().unwrap().push((Instant::now(), event));
            }
        }
    });
    (seen, task)
}

/// The events `seen` holds, without their times.
pub fn events(seen: &Seen<ClientEvent>) -> Vec<ClientEvent> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(_, event)| event.clone())
        .collect()
}

/// Waits until `done()` holds, polling every 20 ms; panics with `what` after `limit`.
pub async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Until its game link is up a front-end answers `UnknownWorld`: asks the front-end at
/// `addr` for arena until it serves it.
pub async fn wait_until_serving(addr: SocketAddr) {
    let client = Client::connect(addr, ClientConfig::default())
        .await
        .unwrap();
    let mut events = client.take_events().unwrap();
    let deadline = Instant::now() + WAIT;
    'serving: loop {
        client.subscribe(arena(), None).unwrap();
        loop {
            match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
                ClientEvent::SnapshotApplied { .. } => break 'serving,
                ClientEvent::Unsubscribed { .. } => break,
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "{addr} never served arena");
        sleep(Duration::from_millis(50)).await;
    }
    client.close();
    client.closed().await;
}

/// A game server hosting `arena`, its events being collected.
pub async fn game_server() -> (GameServer, WorldHandle, Seen<GameEvent>) {
    let game = GameServer::bind("127.0.0.1:0", GameConfig::default())
        .await
        .unwrap();
    let world = game.add_world(arena(), Bytes::new()).unwrap();
    commit(&world, 0);
    let seen: Seen<GameEvent> = Arc::default();
    let mut events = game.take_events().unwrap();
    let sink = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            sink.lock().unwrap().push((Instant::now(), event));
        }
    });
    (game, world, seen)
}

/// Commits tick `tick`: a counter and one of 40 rotating keys.
pub fn commit(world: &WorldHandle, tick: u64) {
    let mut tx = world.begin();
    tx.set("tick", tick.to_string());
    tx.set(format!("k{}", tick % 40), format!("v{tick}"));
    tx.commit().unwrap();
}
