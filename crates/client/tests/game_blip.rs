//! A blip of the game link, end to end: a real game server, a real front-end whose game
//! link runs through a TCP relay the test can cut, and a fleet client watching the world.
//! When the relay drops the link (both sockets closed mid-stream, the game server still
//! up), the front-end keeps the world's replica and its observer, dials again, and when the
//! game server announces the world on the new link resubscribes from the replica's
//! position: the observer is never unsubscribed, gets the batches it missed (no new
//! snapshot) and its replica matches the game server's.
#![allow(clippy::unwrap_used)]

mod common;

use common::{WAIT, arena, collect, events, until, wait_until_serving};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_client::{ClientEvent, FleetClient, FleetConfig};
use flotilla_frontend::{FrontendConfig, FrontendServer};
use flotilla_game::{GameConfig, GameServer, WorldHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP relay to `target`; [`Relay::cut`] closes every connection relayed so far (new ones
/// are still accepted).
struct Relay {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepted: Arc<Mutex<u64>>,
    acceptor: JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted: Arc<Mutex<u64>> = Arc::default();
        let acceptor = {
            let links = Arc::clone(&links);
            let accepted = Arc::clone(&accepted);
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    *accepted.lock().unwrap() += 1;
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            })
        };
        Self {
            addr,
            links,
            accepted,
            acceptor,
        }
    }

    /// Drops every relayed connection (both of its sockets close).
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn accepted(&self) -> u64 {
        *self.accepted.lock().unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

/// Commits a batch every 20 ms until `stop` is set.
fn start_committer(world: &WorldHandle, stop: &Arc<AtomicBool>) -> JoinHandle<()> {
    let world = world.clone();
    let stop = Arc::clone(stop);
    tokio::spawn(async move {
        let mut tick = 1u64;
        let mut interval = tokio::time::interval(Duration::from_millis(20));
        while !stop.load(Ordering::Relaxed) {
            interval.tick().await;
            let mut tx = world.begin();
            tx.set("tick", tick.to_string());
            tx.set(format!("k{}", tick % 40), format!("v{tick}"));
            tx.commit().unwrap();
            tick += 1;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_link_blip_keeps_observers_subscribed_and_resumes_from_their_position() {
    let game = GameServer::bind("127.0.0.1:0", GameConfig::default())
        .await
        .unwrap();
    let world = game.add_world(arena(), Bytes::new()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let committer = start_committer(&world, &stop);
    let relay = Relay::start(game.local_addr()).await;
    let frontend = FrontendServer::bind(FrontendConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        game_servers: vec![relay.addr.to_string()],
        server_id: "fe-blip".into(),
        ..FrontendConfig::default()
    })
    .await
    .unwrap();
    wait_until_serving(frontend.local_addr()).await;

    let client = FleetClient::connect(FleetConfig::new(vec![frontend.local_addr()]))
        .await
        .unwrap();
    let (seen, _collector) = collect(&client);
    client.subscribe(arena(), None).unwrap();
    until("the observer's first snapshot", WAIT, || {
        client.counters(&arena()).is_some_and(|c| c.snapshots == 1)
    })
    .await;
    let before = client.position(&arena()).unwrap();

    // The blip.
    let links_before = relay.accepted();
    relay.cut();
    until(
        "the front-end to resume the world on a new link",
        WAIT,
        || frontend.stats().machine.worlds_resumed >= 1,
    )
    .await;
    assert!(
        relay.accepted() > links_before,
        "the front-end dialled again"
    );
    let stats = frontend.stats().machine;
    assert_eq!(stats.worlds_kept_after_game_loss, 1, "{stats:?}");
    assert_eq!(stats.worlds_waiting_for_game, 0, "{stats:?}");

    // The observer carries on: its replica follows the game server again.
    let target = world.position().seq + 10;
    until(
        "the observer to follow the world after the blip",
        WAIT,
        || {
            client
                .position(&arena())
                .is_some_and(|p| p.epoch == before.epoch && p.seq >= target)
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    committer.await.unwrap();
    let last = world.position();
    until("the observer to catch up with the last batch", WAIT, || {
        client.position(&arena()) == Some(last)
    })
    .await;
    assert_eq!(client.digest(&arena()), Some(world.digest()));
    // From its position: the batches it missed, not a new snapshot.
    let counters = client.counters(&arena()).unwrap();
    assert_eq!(counters.snapshots, 1, "{counters:?}");
    let seen = events(&seen);
    assert!(
        !seen.iter().any(|event| matches!(
            event,
            ClientEvent::Unsubscribed { .. }
                | ClientEvent::Resubscribing { .. }
                | ClientEvent::FrontendLost { .. }
        )),
        "the observer noticed the blip: {seen:?}"
    );
    client.close();
    client.closed().await;
    frontend.shutdown().await;
}
