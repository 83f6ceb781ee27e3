//! Fleet clients whose front-end list is every A record of one DNS name, served by a real
//! dnsmasq on loopback (flotilla-testkit), over real front-ends listening on 127.0.0.2,
//! .3, .4 and .5 with the same port, and a real game server: the clients spread over the
//! advertised front-ends, fail over and resume when one shuts down, follow the records
//! when they change (and keep the last list when the name stops resolving), and a name
//! that does not resolve ends `connect` with a clear error within the configured bounds.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Seen, WAIT, arena, collect, events, until, wait_until_serving};

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flotilla_balance::BackoffConfig;
use flotilla_client::{
    ClientConfig, ClientError, ClientEvent, DnsFrontends, FailoverPolicy, FleetClient, FleetConfig,
};
use flotilla_frontend::{FrontendConfig, FrontendServer};
use flotilla_game::{GameConfig, GameServer, WorldHandle};
use flotilla_testkit::Dnsmasq;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

/// The name whose A records are the front-ends.
const NAME: &str = "frontends.flotilla.test";

/// 127.0.0.`last`.
fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// `NAME` with one A record per address.
fn records(ips: &[IpAddr]) -> Vec<(&'static str, IpAddr)> {
    ips.iter().map(|ip| (NAME, *ip)).collect()
}

/// A game server hosting `arena`, with a task committing a batch every 20 ms until `stop`.
async fn game_server(stop: &Arc<AtomicBool>) -> (GameServer, WorldHandle, JoinHandle<()>) {
    let game = GameServer::bind("127.0.0.1:0", GameConfig::default())
        .await
        .unwrap();
    let world = game.add_world(arena(), Bytes::new()).unwrap();
    let committer = {
        let world = world.clone();
        let stop = Arc::clone(stop);
        tokio::spawn(async move {
            let mut tick = 0u64;
            let mut interval = tokio::time::interval(Duration::from_millis(20));
            while !stop.load(Ordering::Relaxed) {
                interval.tick().await;
                let mut tx = world.begin();
                tx.set("tick", tick.to_string());
                tx.commit().unwrap();
                tick += 1;
            }
        })
    };
    (game, world, committer)
}

async fn bind_frontend(listen: SocketAddr, game: SocketAddr) -> Option<FrontendServer> {
    let config = FrontendConfig {
        listen,
        game_servers: vec![game.to_string()],
        server_id: format!("fe-{}", listen.ip()),
        ..FrontendConfig::default()
    };
    match FrontendServer::bind(config).await {
        Ok(server) => Some(server),
        Err(error) => {
            eprintln!("binding {listen}: {error}");
            None
        }
    }
}

/// Front-ends on 127.0.0.`last` for each of `lasts`, all on one port (retrying with
/// another port when one of the addresses has it taken), once each serves `arena`.
async fn frontends(lasts: &[u8], game: SocketAddr) -> (u16, BTreeMap<IpAddr, FrontendServer>) {
    for _ in 0..20 {
        let Some(first) = bind_frontend(SocketAddr::new(loopback(lasts[0]), 0), game).await else {
            continue;
        };
        let port = first.local_addr().port();
        let mut servers = BTreeMap::from([(loopback(lasts[0]), first)]);
        for &last in &lasts[1..] {
            match bind_frontend(SocketAddr::new(loopback(last), port), game).await {
                Some(server) => {
                    servers.insert(loopback(last), server);
                }
                None => break,
            }
        }
        if servers.len() == lasts.len() {
            for server in servers.values() {
                wait_until_serving(server.local_addr()).await;
            }
            return (port, servers);
        }
        for (_, server) in servers {
            server.shutdown().await;
        }
    }
    panic!("no port free on every one of {lasts:?}");
}

/// A front-end on `listen` again (the port of one that just shut down may take a moment),
/// once it serves `arena`.
async fn rebind(listen: SocketAddr, game: SocketAddr) -> FrontendServer {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(server) = bind_frontend(listen, game).await {
            wait_until_serving(server.local_addr()).await;
            return server;
        }
        assert!(Instant::now() < deadline, "could not bind {listen} again");
        sleep(Duration::from_millis(50)).await;
    }
}

/// A fleet client of `NAME` asking `dns`, subscribed to arena.
async fn dns_client(
    dns: SocketAddr,
    port: u16,
    index: u64,
) -> (FleetClient, Seen<ClientEvent>, JoinHandle<()>) {
    let config = FleetConfig {
        client: ClientConfig {
            client_name: format!("dns-{index}"),
            ..ClientConfig::default()
        },
        seed: Some(5000 + index),
        ..FleetConfig::from_source(
            DnsFrontends::new(NAME, port)
                .with_name_servers(vec![dns])
                .with_timeout(Duration::from_secs(2)),
        )
    };
    let client = FleetClient::connect(config).await.unwrap();
    let (seen, collector) = collect(&client);
    client.subscribe(arena(), None).unwrap();
    (client, seen, collector)
}

/// Every address `client`'s events show it trying or reaching.
fn addresses_used(seen: &Seen<ClientEvent>) -> BTreeSet<SocketAddr> {
    events(seen)
        .iter()
        .filter_map(|event| match event {
            ClientEvent::ConnectFailed { addr, .. } => Some(*addr),
            ClientEvent::Reconnected { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

/// Shuts `server` down and waits until every client that was on it is resumed on another
/// front-end; returns their indices.
async fn fail_over_from(
    victim: SocketAddr,
    server: FrontendServer,
    clients: &[(FleetClient, Seen<ClientEvent>, JoinHandle<()>)],
) -> Vec<usize> {
    let moved: Vec<usize> = (0..clients.len())
        .filter(|&i| clients[i].0.frontend_addr() == Some(victim))
        .collect();
    assert!(!moved.is_empty(), "no client on {victim}");
    let reconnects_before: Vec<u64> = moved
        .iter()
        .map(|&i| clients[i].0.stats().reconnects)
        .collect();
    server.shutdown().await;
    until("the clients of the victim resumed elsewhere", WAIT, || {
        moved.iter().zip(&reconnects_before).all(|(&i, &before)| {
            let client = &clients[i].0;
            client.stats().reconnects == before + 1
                && client.is_connected()
                && client.frontend_addr() != Some(victim)
        })
    })
    .await;
    for &i in &moved {
        let seen = events(&clients[i].1);
        let resumed = seen.iter().rev().find_map(|event| match event {
            ClientEvent::Reconnected { resumed, .. } => Some(*resumed),
            _ => None,
        });
        assert_eq!(resumed, Some(true), "client {i}: {seen:?}");
        assert!(
            seen.iter().any(
                |event| matches!(event, ClientEvent::FrontendLost { from, .. } if *from == victim)
            ),
            "client {i}: no FrontendLost from {victim}"
        );
    }
    moved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_follow_the_frontends_of_a_dns_name() {
    let stop = Arc::new(AtomicBool::new(false));
    let (game, world, committer) = game_server(&stop).await;
    // Four front-ends on one port; DNS advertises the first three.
    let (port, mut servers) = frontends(&[2, 3, 4, 5], game.local_addr()).await;
    let addr = |last: u8| SocketAddr::new(loopback(last), port);
    let initial = records(&[loopback(2), loopback(3), loopback(4)]);
    let mut dns = tokio::task::spawn_blocking(move || Dnsmasq::start(&initial).unwrap())
        .await
        .unwrap();
    let dns_addr = dns.addr();

    // (1) 30 clients of the name spread over the three advertised front-ends.
    let mut clients = Vec::new();
    for index in 0..30 {
        clients.push(dns_client(dns_addr, port, index).await);
    }
    until("every replica synced", WAIT, || {
        clients
            .iter()
            .all(|(client, ..)| client.digest(&arena()).is_some())
    })
    .await;
    let advertised = vec![addr(2), addr(3), addr(4)];
    let mut per_frontend: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for (i, (client, seen, _)) in clients.iter().enumerate() {
        assert_eq!(client.frontends(), advertised, "client {i}");
        let stats = client.stats();
        assert_eq!(
            (stats.frontend_list_changes, stats.resolve_failures),
            (1, 0)
        );
        let on = client.frontend_addr().unwrap();
        assert_eq!(client.server_id().unwrap(), format!("fe-{}", on.ip()));
        *per_frontend.entry(on).or_default() += 1;
        assert!(events(seen).iter().any(|event| matches!(
            event,
            ClientEvent::FrontendsResolved { name, frontends } if name == NAME && *frontends == advertised
        )));
    }
    eprintln!("spread over {advertised:?}: {per_frontend:?}");
    assert_eq!(
        per_frontend.keys().copied().collect::<Vec<_>>(),
        advertised,
        "spread over all three, none on the unadvertised fourth: {per_frontend:?}"
    );

    // (2) 127.0.0.2 shuts down (still in DNS): its clients resume on .3 or .4.
    let victim = servers.remove(&loopback(2)).unwrap();
    let moved = fail_over_from(addr(2), victim, &clients).await;
    for &i in &moved {
        let on = clients[i].0.frontend_addr().unwrap();
        assert!(on == addr(3) || on == addr(4), "client {i} on {on}");
        assert_eq!(
            clients[i].0.frontends(),
            advertised,
            "the list did not change"
        );
    }

    // (3) DNS drops .3 (alive) and adds .5. The clients on .3 stay (DNS only steers the
    // next pick); when .4 shuts down its clients re-resolve and go to .5 (.2 and .4 are
    // down), never to .3, although it is up; a new client also lands on .5.
    let changed = records(&[loopback(2), loopback(4), loopback(5)]);
    dns = tokio::task::spawn_blocking(move || {
        dns.set_records(&changed).unwrap();
        dns
    })
    .await
    .unwrap();
    let new_list = vec![addr(2), addr(4), addr(5)];
    let on_three: Vec<usize> = (0..clients.len())
        .filter(|&i| clients[i].0.frontend_addr() == Some(addr(3)))
        .collect();
    assert!(!on_three.is_empty());
    let used_before: Vec<BTreeSet<SocketAddr>> = clients
        .iter()
        .map(|(_, seen, _)| addresses_used(seen))
        .collect();
    let victim = servers.remove(&loopback(4)).unwrap();
    let moved = fail_over_from(addr(4), victim, &clients).await;
    assert!(moved.len() >= 5, "enough clients to tell: {}", moved.len());
    for &i in &moved {
        let (client, seen, _) = &clients[i];
        assert_eq!(client.frontend_addr(), Some(addr(5)), "client {i}");
        assert_eq!(client.frontends(), new_list, "client {i}");
        let used_now = addresses_used(seen);
        let used_since: Vec<&SocketAddr> = used_now.difference(&used_before[i]).collect();
        assert!(
            !used_since.contains(&&addr(3)),
            "client {i} tried the dropped address: {used_since:?}"
        );
        assert!(events(seen).iter().any(|event| matches!(
            event,
            ClientEvent::FrontendsResolved { frontends, .. } if *frontends == new_list
        )));
    }
    for &i in &on_three {
        let client = &clients[i].0;
        assert_eq!(
            client.frontend_addr(),
            Some(addr(3)),
            "client {i} kept its front-end"
        );
        assert_eq!(
            client.frontends(),
            advertised,
            "client {i} had no reason to resolve"
        );
    }
    let newcomer = dns_client(dns_addr, port, 100).await;
    until("the new client connected", WAIT, || {
        newcomer.0.is_connected()
    })
    .await;
    assert_eq!(newcomer.0.frontend_addr(), Some(addr(5)));
    assert_eq!(newcomer.0.frontends(), new_list);
    assert!(!addresses_used(&newcomer.1).contains(&addr(3)));
    clients.push(newcomer);

    // (3b) The name stops resolving (no records) and .4 comes back; then .3 shuts down:
    // its clients report the failed resolution, keep their last good list (.2, .3, .4)
    // and resume on .4.
    dns = tokio::task::spawn_blocking(move || {
        dns.set_records(&[]).unwrap();
        dns
    })
    .await
    .unwrap();
    servers.insert(loopback(4), rebind(addr(4), game.local_addr()).await);
    let victim = servers.remove(&loopback(3)).unwrap();
    let moved = fail_over_from(addr(3), victim, &clients).await;
    assert_eq!(moved, on_three);
    for &i in &moved {
        let (client, seen, _) = &clients[i];
        assert_eq!(client.frontend_addr(), Some(addr(4)), "client {i}");
        assert_eq!(
            client.frontends(),
            advertised,
            "client {i}: the last good list"
        );
        assert!(client.stats().resolve_failures >= 1, "client {i}");
        if i == moved[0] {
            eprintln!(
                "client {i} after the name stopped resolving: {:?}",
                client.stats()
            );
        }
        assert!(events(seen).iter().any(|event| matches!(
            event,
            ClientEvent::ResolveFailed { name, error } if name == NAME && !error.is_empty()
        )));
    }
    // Every client ends on .4 or .5 with the world's state.
    stop.store(true, Ordering::Relaxed);
    committer.await.unwrap();
    until("every replica equal to the world", WAIT, || {
        clients.iter().all(|(client, ..)| {
            let on = client.frontend_addr();
            (on == Some(addr(4)) || on == Some(addr(5)))
                && client.digest(&arena()) == Some(world.digest())
        })
    })
    .await;

    for (client, _, collector) in clients {
        client.close();
        timeout(WAIT, client.closed()).await.unwrap();
        timeout(WAIT, collector).await.unwrap().unwrap();
    }
    for (_, server) in servers {
        server.shutdown().await;
    }
    game.shutdown();
    tokio::task::spawn_blocking(move || dns.stop().unwrap())
        .await
        .unwrap();
}

/// Quick retries, so a failing `connect` ends fast.
fn quick_policy(max_failed_rounds: u32) -> FailoverPolicy {
    FailoverPolicy {
        backoff: BackoffConfig {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(50),
            immediate_failovers: true,
            stable_after: Duration::from_secs(5),
        },
        max_failed_rounds: Some(max_failed_rounds),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_ends_connect_with_a_clear_error_in_time() {
    // A name the DNS server does not know.
    let dns = tokio::task::spawn_blocking(|| Dnsmasq::start(&records(&[loopback(2)])).unwrap())
        .await
        .unwrap();
    let started = Instant::now();
    let config = FleetConfig {
        failover: quick_policy(3),
        ..FleetConfig::from_source(
            DnsFrontends::new("missing.flotilla.test", 7400).with_name_servers(vec![dns.addr()]),
        )
    };
    let error = timeout(WAIT, FleetClient::connect(config))
        .await
        .unwrap()
        .unwrap_err();
    // A hang guard: the failover policy's rounds (counted below) ended the attempt.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    match &error {
        ClientError::Unresolved {
            name,
            failed_rounds,
            error: cause,
        } => {
            assert_eq!(name, "missing.flotilla.test");
            assert_eq!(*failed_rounds, 3);
            assert!(!cause.is_empty());
        }
        other => panic!("expected Unresolved, got {other:?}"),
    }
    eprintln!("unknown name: {error}");
    assert!(
        error.to_string().contains("missing.flotilla.test"),
        "{error}"
    );

    // A name server that never answers: each resolution ends at the configured timeout.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let started = Instant::now();
    let config = FleetConfig {
        failover: quick_policy(2),
        ..FleetConfig::from_source(
            DnsFrontends::new(NAME, 7400)
                .with_name_servers(vec![silent.local_addr().unwrap()])
                .with_timeout(Duration::from_millis(300)),
        )
    };
    let error = timeout(WAIT, FleetClient::connect(config))
        .await
        .unwrap()
        .unwrap_err();
    let took = started.elapsed();
    eprintln!("silent name server, after {took:?}: {error}");
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(3),
        "two resolutions of at most 300 ms each (and a short backoff): {took:?}"
    );
    assert!(
        matches!(&error, ClientError::Unresolved { failed_rounds: 2, error, .. }
            if error.contains("no answer within")),
        "{error:?}"
    );

    // Unusable settings fail at once.
    for dns_config in [
        DnsFrontends::new("", 7400).with_name_servers(vec![dns.addr()]),
        DnsFrontends::new(NAME, 7400).with_name_servers(Vec::new()),
        DnsFrontends::new(NAME, 7400)
            .with_name_servers(vec![dns.addr()])
            .with_timeout(Duration::ZERO),
    ] {
        let result = FleetClient::connect(FleetConfig::from_source(dns_config.clone())).await;
        assert!(
            matches!(result, Err(ClientError::InvalidConfig { .. })),
            "{dns_config:?}: {result:?}"
        );
    }
    drop(silent);
    tokio::task::spawn_blocking(move || dns.stop().unwrap())
        .await
        .unwrap();
}
