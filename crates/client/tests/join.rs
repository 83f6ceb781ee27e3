//! Join tokens end to end: fleet clients over real front-ends that check tokens and a real
//! game server, on loopback TCP. A player's inputs reach the game (also after a failover,
//! the tokens being presented again to the new front-end); a client without a token, or
//! with one the front-ends refuse, is told so and its inputs never reach the game; with
//! anonymous observers off, watching needs a token too.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Seen, WAIT, arena, collect, events, game_server, until, wait_until_serving};

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flotilla_client::{ClientConfig, ClientEvent, FleetClient, FleetConfig};
use flotilla_frontend::{FrontendConfig, FrontendServer, JoinSigner};
use flotilla_game::GameEvent;
use flotilla_wire::{ErrorCode, JoinClaims, Role};
use tokio::time::sleep;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(signer: &JoinSigner, role: Role, expires_unix: u64) -> Bytes {
    signer
        .sign(&JoinClaims {
            expires_unix,
            role,
            world: arena(),
            subject: "tester".into(),
        })
        .unwrap()
}

/// A front-end of `game` checking tokens of `signer`.
async fn frontend(game: SocketAddr, signer: &JoinSigner, anonymous: bool) -> FrontendServer {
    FrontendServer::bind(FrontendConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        game_servers: vec![game.to_string()],
        join_keys: vec![signer.public_key()],
        anonymous_observers: anonymous,
        ..FrontendConfig::default()
    })
    .await
    .unwrap()
}

fn fleet(frontends: Vec<SocketAddr>, tokens: Vec<Bytes>, seed: u64) -> FleetConfig {
    FleetConfig {
        client: ClientConfig {
            join_tokens: tokens,
            ..ClientConfig::default()
        },
        seed: Some(seed),
        ..FleetConfig::new(frontends)
    }
}

/// The payloads of the inputs the game server received.
fn inputs(seen: &Seen<GameEvent>) -> Vec<Bytes> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|(_, event)| match event {
            GameEvent::Input { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

fn joined(seen: &Seen<ClientEvent>) -> usize {
    events(seen)
        .iter()
        .filter(|event| matches!(event, ClientEvent::Joined { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_player_token_gets_inputs_to_the_game_also_after_a_failover() {
    let signer = JoinSigner::generate().unwrap();
    let (game, _world, game_events) = game_server().await;
    let mut frontends = vec![
        Some(frontend(game.local_addr(), &signer, true).await),
        Some(frontend(game.local_addr(), &signer, true).await),
    ];
    let addrs: Vec<SocketAddr> = frontends
        .iter()
        .map(|f| f.as_ref().unwrap().local_addr())
        .collect();
    for addr in &addrs {
        // Anonymous observers: watching needs no token.
        wait_until_serving(*addr).await;
    }

    let expires = unix_now() + 600;
    let player_token = token(&signer, Role::Player, expires);
    let player = FleetClient::connect(fleet(addrs.clone(), vec![player_token], 1))
        .await
        .unwrap();
    let (player_seen, _task) = collect(&player);
    player.subscribe(arena(), None).unwrap();
    until("the player's Joined", WAIT, || joined(&player_seen) == 1).await;
    assert!(events(&player_seen).contains(&ClientEvent::Joined {
        world: arena(),
        role: Role::Player,
        expires_unix: expires
    }));
    player
        .send_input(&arena(), Bytes::from_static(b"player-1"))
        .unwrap();
    until("the player's input at the game", WAIT, || {
        inputs(&game_events).contains(&Bytes::from_static(b"player-1"))
    })
    .await;

    // No token: refused, never forwarded, the connection kept.
    let stranger = FleetClient::connect(fleet(addrs.clone(), Vec::new(), 2))
        .await
        .unwrap();
    let (stranger_seen, _task) = collect(&stranger);
    stranger
        .send_input(&arena(), Bytes::from_static(b"stranger"))
        .unwrap();
    // A token the front-ends refuse (another operator's key; an expired one).
    let other = JoinSigner::generate().unwrap();
    let forger = FleetClient::connect(fleet(
        addrs.clone(),
        vec![
            token(&other, Role::Player, unix_now() + 600),
            token(&signer, Role::Player, unix_now() - 1),
            token(&signer, Role::Observer, unix_now() + 600),
        ],
        3,
    ))
    .await
    .unwrap();
    let (forger_seen, _task) = collect(&forger);
    forger
        .send_input(&arena(), Bytes::from_static(b"forger"))
        .unwrap();
    until("the refusals", WAIT, || {
        let refused_input = |seen: &Seen<ClientEvent>| {
            events(seen).iter().any(|event| {
                matches!(event, ClientEvent::InputRefused { world, code: ErrorCode::NotAllowed, .. } if *world == arena())
            })
        };
        refused_input(&stranger_seen) && refused_input(&forger_seen)
    })
    .await;
    let refusals: Vec<String> = events(&forger_seen)
        .into_iter()
        .filter_map(|event| match event {
            ClientEvent::JoinRefused { world, code, text } => {
                assert_eq!((world, code), (Some(arena()), ErrorCode::NotAllowed));
                Some(text)
            }
            _ => None,
        })
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals[0].contains("does not verify"), "{refusals:?}");
    assert!(refusals[1].contains("expired"), "{refusals:?}");
    assert_eq!(joined(&forger_seen), 1, "the observer token is accepted");
    assert!(stranger.is_connected() && forger.is_connected());

    // The player fails over: the new front-end gets its token again, its inputs pass.
    let on = addrs
        .iter()
        .position(|addr| Some(*addr) == player.frontend_addr())
        .unwrap();
    frontends[on].take().unwrap().shutdown().await;
    until("the player's failover and second Joined", WAIT, || {
        joined(&player_seen) == 2
            && events(&player_seen)
                .iter()
                .any(|event| matches!(event, ClientEvent::Reconnected { resumed: true, .. }))
    })
    .await;
    player
        .send_input(&arena(), Bytes::from_static(b"player-2"))
        .unwrap();
    until("the player's input after the failover", WAIT, || {
        inputs(&game_events).contains(&Bytes::from_static(b"player-2"))
    })
    .await;
    // Nothing of the others ever reached the game.
    sleep(Duration::from_millis(200)).await;
    let received = inputs(&game_events);
    assert_eq!(
        received,
        vec![
            Bytes::from_static(b"player-1"),
            Bytes::from_static(b"player-2")
        ]
    );
    let survivor = frontends.iter().flatten().next().unwrap();
    assert!(survivor.stats().machine.inputs_not_allowed >= 1);
    for client in [&player, &stranger, &forger] {
        client.close();
        client.closed().await;
    }
    for server in frontends.into_iter().flatten() {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_anonymous_observers_watching_needs_a_token() {
    let signer = JoinSigner::generate().unwrap();
    let (game, _world, _game_events) = game_server().await;
    let server = frontend(game.local_addr(), &signer, false).await;
    let addrs = vec![server.local_addr()];

    // With an observer token the world is served (once the game link is up).
    let observer = FleetClient::connect(fleet(
        addrs.clone(),
        vec![token(&signer, Role::Observer, unix_now() + 600)],
        4,
    ))
    .await
    .unwrap();
    let (observer_seen, _task) = collect(&observer);
    observer.subscribe(arena(), None).unwrap();
    until("the observer's snapshot", WAIT, || {
        observer.position(&arena()).is_some()
    })
    .await;
    assert_eq!(joined(&observer_seen), 1);

    // Without one: `Unsubscribed{NotAllowed}`, the subscription ends, the connection stays.
    let anonymous = FleetClient::connect(fleet(addrs, Vec::new(), 5))
        .await
        .unwrap();
    let (anonymous_seen, _task) = collect(&anonymous);
    anonymous.subscribe(arena(), None).unwrap();
    until("the refusal", WAIT, || {
        events(&anonymous_seen).iter().any(|event| {
            matches!(event, ClientEvent::Unsubscribed { world, code: ErrorCode::NotAllowed, .. } if *world == arena())
        })
    })
    .await;
    assert!(anonymous.position(&arena()).is_none());
    assert!(anonymous.is_connected());
    // The directory stays open.
    anonymous
        .subscribe(flotilla_wire::WorldId::DIRECTORY, None)
        .unwrap();
    until("the directory", WAIT, || {
        anonymous
            .position(&flotilla_wire::WorldId::DIRECTORY)
            .is_some()
    })
    .await;
    assert_eq!(server.stats().machine.subscribes_not_allowed, 1);
    for client in [&observer, &anonymous] {
        client.close();
        client.closed().await;
    }
    server.shutdown().await;
}
