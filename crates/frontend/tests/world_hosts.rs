//! A world announced by several game servers: the front-end driven with recorded inputs and
//! explicit `now` while the host withdraws the world or its link is lost. Subscribers keep
//! their subscription and get the world from the fallback host; the world ends for them
//! (and leaves the directory) only when its last announcer is gone.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure.

use std::time::Duration;

use bytes::Bytes;
use flotilla_frontend::{ConnId, Frontend, FrontendConfig, GameId, Input, Output};
use flotilla_wire::{
    ClientToFrontend, Decoder, ErrorCode, FrontendToClient, FrontendToGame, GameToFrontend,
    Message, RawFrame, SnapshotPart, WorldId,
};
use flotilla_world::{Position, WorldState};

const MS: Duration = Duration::from_millis(1);

fn raw<M: Message>(message: &M) -> RawFrame {
    RawFrame::parse(message.encode_to_bytes(), 1 << 20).unwrap()
}

fn arena() -> WorldId {
    WorldId::new("arena").unwrap()
}

/// The description game server `game` gives the arena.
fn arena_info(game: u64) -> Bytes {
    Bytes::from(format!("{{\"name\":\"arena\",\"host\":{game}}}"))
}

/// A front-end and the clock of the inputs fed to it.
struct Harness {
    frontend: Frontend,
    now: flotilla_conn::Instant,
}

impl Harness {
    fn new() -> Self {
        Self {
            frontend: Frontend::new(&FrontendConfig::default(), 11),
            now: flotilla_conn::Instant::ZERO,
        }
    }

    /// Feeds one input at the current time (then moves the clock on by 1 ms) and returns
    /// the outputs. Like the front-end's event loop, it then writes every connection it
    /// queued frames for, telling the machine first (`ClientWriting`: the batches an
    /// observer is owed join its queue then); those outputs are returned too.
    fn feed(&mut self, input: Input) -> Vec<Output> {
        self.frontend.handle(self.now, input);
        let mut outputs: Vec<Output> = std::iter::from_fn(|| self.frontend.poll_output()).collect();
        let mut written = std::collections::HashSet::new();
        let mut at = 0;
        while let Some(output) = outputs.get(at) {
            at += 1;
            if let Output::SendToClient { conn, .. } = output
                && written.insert(*conn)
            {
                self.frontend.handle(self.now, Input::ClientWriting(*conn));
                outputs.extend(std::iter::from_fn(|| self.frontend.poll_output()));
            }
        }
        self.now += MS;
        outputs
    }

    /// Connects game server `game` and completes its handshake.
    fn game(&mut self, game: u64) {
        let outputs = self.feed(Input::GameConnected(GameId(game)));
        assert!(matches!(
            &to_game(&outputs, game)[..],
            [FrontendToGame::Hello { .. }]
        ));
        self.game_says(
            game,
            &GameToFrontend::Welcome {
                version: 1,
                server_id: format!("game-{game}"),
            },
        );
    }

    fn game_says(&mut self, game: u64, message: &GameToFrontend) -> Vec<Output> {
        self.feed(Input::GameFrame(GameId(game), raw(message)))
    }

    fn announce_arena(&mut self, game: u64, info: Bytes) -> Vec<Output> {
        self.game_says(
            game,
            &GameToFrontend::WorldAdded {
                world: arena(),
                info,
            },
        )
    }

    fn remove_arena(&mut self, game: u64) -> Vec<Output> {
        self.game_says(game, &GameToFrontend::WorldRemoved { world: arena() })
    }

    /// Connects client `conn` and completes its handshake.
    fn client(&mut self, conn: u64) {
        self.feed(Input::ClientConnected(ConnId(conn)));
        let outputs = self.client_says(
            conn,
            &ClientToFrontend::Hello {
                version: 1,
                session_token: None,
                client_name: format!("client-{conn}"),
            },
        );
        assert!(matches!(
            &to_client(&outputs, conn)[..],
            [FrontendToClient::Welcome { .. }]
        ));
    }

    fn client_says(&mut self, conn: u64, message: &ClientToFrontend) -> Vec<Output> {
        self.feed(Input::ClientFrame(ConnId(conn), raw(message)))
    }

    fn subscribe(&mut self, conn: u64, world: &WorldId) -> Vec<Output> {
        self.client_says(
            conn,
            &ClientToFrontend::Subscribe {
                world: world.clone(),
                since: None,
            },
        )
    }

    fn snapshot(&mut self, game: u64, state: &WorldState) -> Vec<Output> {
        self.game_says(
            game,
            &GameToFrontend::Snapshot {
                world: arena(),
                part: SnapshotPart::Whole,
                snapshot: state.snapshot(),
            },
        )
    }

    /// Game server `game` commits one batch setting `key` and sends it.
    fn batch(&mut self, game: u64, state: &mut WorldState, key: &str) -> Vec<Output> {
        let mut tx = state.begin();
        tx.set(key.to_owned(), format!("from game {game}"));
        let batch = tx.commit().unwrap();
        let frame = flotilla_wire::change_batch_frame(&arena(), &batch);
        self.feed(Input::GameFrame(
            GameId(game),
            RawFrame::parse(frame, 1 << 20).unwrap(),
        ))
    }

    fn subscriptions(&self, conn: u64) -> Vec<WorldId> {
        self.frontend
            .session(ConnId(conn))
            .unwrap()
            .subscriptions()
            .iter()
            .cloned()
            .collect()
    }

    fn replica_host(&self) -> Option<GameId> {
        self.frontend.replica(&arena()).and_then(|m| m.host())
    }
}

/// Frames sent to client `conn` among `outputs`, decoded.
fn to_client(outputs: &[Output], conn: u64) -> Vec<FrontendToClient> {
    let mut decoded = Vec::new();
    for output in outputs {
        if let Output::SendToClient { conn: c, bytes, .. } = output
            && c.0 == conn
        {
            let mut decoder = Decoder::default();
            decoder.feed(bytes);
            while let Some(message) = decoder.next_message().unwrap() {
                decoded.push(message);
            }
            assert_eq!(decoder.buffered_len(), 0);
        }
    }
    decoded
}

/// Frames sent to game server `game` among `outputs`, decoded.
fn to_game(outputs: &[Output], game: u64) -> Vec<FrontendToGame> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::SendToGame(g, bytes) if g.0 == game => {
                let mut decoder = Decoder::default();
                decoder.feed(bytes);
                decoder.next_message().unwrap()
            }
            _ => None,
        })
        .collect()
}

/// True if `outputs` close a client or a game link.
fn closes_anything(outputs: &[Output]) -> bool {
    outputs
        .iter()
        .any(|o| matches!(o, Output::CloseClient(..) | Output::CloseGame(..)))
}

/// The arena entry of the directory batches sent to `conn`: `Some(info)` for an upsert,
/// `None` for a removal; one per batch touching the arena.
fn directory_arena_changes(outputs: &[Output], conn: u64) -> Vec<Option<Bytes>> {
    let mut changes = Vec::new();
    for message in to_client(outputs, conn) {
        let FrontendToClient::ChangeBatch { world, batch } = message else {
            continue;
        };
        assert_eq!(world, WorldId::DIRECTORY);
        for (key, value) in &batch.upserts {
            if key.as_ref() == b"arena" {
                changes.push(Some(value.clone()));
            }
        }
        if batch.removes.iter().any(|key| key.as_ref() == b"arena") {
            changes.push(None);
        }
    }
    changes
}

/// Games 1 then 2 announce the arena (2 hosts it), client 1 watches the arena (fed by
/// game 2, with one batch applied) and client 2 watches the directory.
fn two_hosts_and_a_subscriber() -> (Harness, WorldState) {
    let mut h = Harness::new();
    h.game(1);
    h.game(2);
    h.client(1);
    h.client(2);
    h.subscribe(2, &WorldId::DIRECTORY);
    h.announce_arena(1, arena_info(1));
    let outputs = h.announce_arena(2, arena_info(2));
    assert_eq!(
        directory_arena_changes(&outputs, 2),
        vec![Some(arena_info(2))]
    );
    assert_eq!(h.frontend.router().host_of(&arena()), Some(GameId(2)));

    let outputs = h.subscribe(1, &arena());
    assert_eq!(
        to_game(&outputs, 2),
        vec![FrontendToGame::Subscribe {
            world: arena(),
            since: None
        }]
    );
    assert!(to_game(&outputs, 1).is_empty());
    let mut state = WorldState::with_entries(5, [("score", "0")]);
    let outputs = h.snapshot(2, &state);
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Snapshot { .. }]
    ));
    let outputs = h.batch(2, &mut state, "score");
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::ChangeBatch { .. }]
    ));
    (h, state)
}

#[test]
fn a_subscriber_keeps_its_world_when_the_host_link_is_lost() {
    let (mut h, _) = two_hosts_and_a_subscriber();

    // The host's link is lost: the replica resubscribes to game 1 from where it was.
    let outputs = h.feed(Input::GameClosed(GameId(2)));
    assert_eq!(
        to_game(&outputs, 1),
        vec![FrontendToGame::Subscribe {
            world: arena(),
            since: Some(Position { epoch: 5, seq: 1 })
        }]
    );
    assert!(to_game(&outputs, 2).is_empty(), "the link is gone");
    assert!(
        to_client(&outputs, 1).is_empty(),
        "no Unsubscribed: the subscription lives on"
    );
    assert!(!closes_anything(&outputs));
    assert_eq!(h.subscriptions(1), vec![arena()]);
    assert_eq!(h.replica_host(), Some(GameId(1)));
    assert_eq!(h.frontend.router().host_of(&arena()), Some(GameId(1)));
    // The directory keeps the arena, now with game 1's description.
    assert_eq!(
        directory_arena_changes(&outputs, 2),
        vec![Some(arena_info(1))]
    );
    assert_eq!(h.frontend.directory().get(&arena()), Some(&arena_info(1)));

    // Game 1 has its own history of the arena: its snapshot replaces the subscriber's copy.
    let mut state = WorldState::with_entries(9, [("score", "7")]);
    let outputs = h.snapshot(1, &state);
    let [
        FrontendToClient::Snapshot {
            world, snapshot, ..
        },
    ] = &to_client(&outputs, 1)[..]
    else {
        panic!("{outputs:?}")
    };
    assert_eq!(*world, arena());
    assert_eq!(snapshot.digest(), state.digest());
    let outputs = h.batch(1, &mut state, "score");
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::ChangeBatch { .. }]
    ));
    assert_eq!(
        h.frontend.replica(&arena()).unwrap().replica().digest(),
        state.digest()
    );

    // Inputs go to the fallback host.
    let outputs = h.client_says(
        1,
        &ClientToFrontend::Input {
            world: arena(),
            payload: Bytes::from_static(b"jump"),
        },
    );
    assert!(matches!(
        &to_game(&outputs, 1)[..],
        [FrontendToGame::Input { world, .. }] if *world == arena()
    ));

    // The last host's link is lost: the world waits for a game server to announce it
    // again (the resume grace), and with nobody doing so it ends for its subscriber.
    let outputs = h.feed(Input::GameClosed(GameId(1)));
    assert!(to_client(&outputs, 1).is_empty(), "{outputs:?}");
    assert_eq!(h.subscriptions(1), vec![arena()]);
    assert_eq!(h.frontend.router().host_of(&arena()), None);
    assert_eq!(directory_arena_changes(&outputs, 2), vec![None]);
    h.now += h.frontend.config().game_resume_grace;
    let outputs = h.feed(Input::Timeout);
    // (Keep-alive pings may come in the same turn.)
    assert!(
        to_client(&outputs, 1).iter().any(|m| matches!(
            m,
            FrontendToClient::Unsubscribed {
                code: ErrorCode::Unavailable,
                ..
            }
        )),
        "{outputs:?}"
    );
    assert!(h.subscriptions(1).is_empty());
    assert!(h.frontend.replica(&arena()).is_none());
    assert_eq!(h.frontend.directory().get(&arena()), None);
}

#[test]
fn the_host_withdrawing_a_world_falls_back_and_the_last_removal_ends_it() {
    let (mut h, mut old_state) = two_hosts_and_a_subscriber();

    // The fallback refreshes its description: no move, the directory still shows the
    // host's.
    let outputs = h.announce_arena(1, Bytes::from_static(b"{\"name\":\"arena\",\"v\":2}"));
    assert!(outputs.is_empty(), "{outputs:?}");
    assert_eq!(h.replica_host(), Some(GameId(2)));

    // The host stops announcing the arena: it falls back to game 1.
    let outputs = h.remove_arena(2);
    assert_eq!(
        to_game(&outputs, 1),
        vec![FrontendToGame::Subscribe {
            world: arena(),
            since: Some(Position { epoch: 5, seq: 1 })
        }]
    );
    assert_eq!(
        to_game(&outputs, 2),
        vec![FrontendToGame::Unsubscribe { world: arena() }]
    );
    assert!(to_client(&outputs, 1).is_empty());
    assert!(!closes_anything(&outputs));
    assert_eq!(h.subscriptions(1), vec![arena()]);
    assert_eq!(h.replica_host(), Some(GameId(1)));
    assert_eq!(
        directory_arena_changes(&outputs, 2),
        vec![Some(Bytes::from_static(b"{\"name\":\"arena\",\"v\":2}"))],
        "the fallback's latest description"
    );

    // A late batch from the old host is not forwarded.
    let outputs = h.batch(2, &mut old_state, "late");
    assert!(to_client(&outputs, 1).is_empty());

    // Game 1 answers the resubscription.
    let state = WorldState::with_entries(9, [("score", "7")]);
    let outputs = h.snapshot(1, &state);
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Snapshot { snapshot, .. }] if snapshot.digest() == state.digest()
    ));

    // The last announcer removes it: the world ends for its subscriber.
    let outputs = h.remove_arena(1);
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Unsubscribed {
            code: ErrorCode::UnknownWorld,
            ..
        }]
    ));
    assert!(h.subscriptions(1).is_empty());
    assert!(h.frontend.replica(&arena()).is_none());
    assert_eq!(directory_arena_changes(&outputs, 2), vec![None]);
    assert_eq!(h.frontend.router().world_count(), 0);
}

#[test]
fn losing_a_game_that_does_not_host_the_world_changes_nothing_for_its_subscribers() {
    let (mut h, mut state) = two_hosts_and_a_subscriber();
    h.game(3);

    // A game server that never announced the arena removes it: nothing happens.
    let outputs = h.remove_arena(3);
    assert!(outputs.is_empty(), "{outputs:?}");

    // The fallback's link is lost while game 2 hosts the arena.
    let outputs = h.feed(Input::GameClosed(GameId(1)));
    assert!(outputs.is_empty(), "{outputs:?}");
    assert_eq!(h.replica_host(), Some(GameId(2)));
    assert_eq!(h.frontend.router().host_of(&arena()), Some(GameId(2)));
    assert_eq!(h.frontend.directory().get(&arena()), Some(&arena_info(2)));
    let outputs = h.batch(2, &mut state, "level");
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::ChangeBatch { .. }]
    ));

    // With no fallback left, the host removing the arena ends it.
    let outputs = h.remove_arena(2);
    assert!(to_game(&outputs, 3).is_empty());
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Unsubscribed {
            code: ErrorCode::UnknownWorld,
            ..
        }]
    ));
    assert_eq!(directory_arena_changes(&outputs, 2), vec![None]);
}

#[test]
fn a_returning_game_server_takes_the_world_back() {
    let (mut h, _) = two_hosts_and_a_subscriber();
    h.feed(Input::GameClosed(GameId(2)));
    assert_eq!(h.replica_host(), Some(GameId(1)));

    // Game 2 reconnects and announces the arena again: the latest announcement wins.
    h.game(2);
    let outputs = h.announce_arena(2, arena_info(2));
    assert_eq!(
        to_game(&outputs, 2),
        vec![FrontendToGame::Subscribe {
            world: arena(),
            since: Some(Position { epoch: 5, seq: 1 })
        }]
    );
    assert_eq!(
        to_game(&outputs, 1),
        vec![FrontendToGame::Unsubscribe { world: arena() }]
    );
    assert!(to_client(&outputs, 1).is_empty());
    assert_eq!(h.replica_host(), Some(GameId(2)));
    assert_eq!(
        directory_arena_changes(&outputs, 2),
        vec![Some(arena_info(2))]
    );
    assert_eq!(
        h.frontend
            .router()
            .announcers_of(&arena())
            .collect::<Vec<_>>(),
        vec![GameId(1), GameId(2)]
    );
}

/// An input that cannot be delivered is not dropped in silence: the client is told the
/// world has no game server (and stays connected); an input for the front-end's own
/// `$directory` is counted, not answered (that world exists).
#[test]
fn an_input_for_a_world_nobody_hosts_is_answered() {
    let mut h = Harness::new();
    h.client(1);
    let input = |world: &str| ClientToFrontend::Input {
        world: WorldId::new(world).unwrap(),
        payload: Bytes::from_static(b"J"),
    };
    // No game server yet: "try again".
    let outputs = h.client_says(1, &input("arena"));
    assert!(
        matches!(
            &to_client(&outputs, 1)[..],
            [FrontendToClient::Unsubscribed { code: ErrorCode::Unavailable, text, .. }]
                if text == "input dropped: no game server is connected yet"
        ),
        "{outputs:?}"
    );
    // A game server that does not host it: the world does not exist.
    h.game(1);
    let outputs = h.client_says(1, &input("nosuch"));
    assert!(
        matches!(
            &to_client(&outputs, 1)[..],
            [FrontendToClient::Unsubscribed { code: ErrorCode::UnknownWorld, world, text }]
                if world.as_str() == "nosuch" && text == "input dropped: no game server hosts this world"
        ),
        "{outputs:?}"
    );
    assert!(!closes_anything(&outputs));
    let outputs = h.client_says(1, &input("$directory"));
    assert!(to_client(&outputs, 1).is_empty(), "{outputs:?}");
    assert_eq!(h.frontend.stats().inputs_dropped, 3);
    // Once hosted, an input goes to its game server.
    h.announce_arena(1, arena_info(1));
    let outputs = h.client_says(1, &input("arena"));
    assert!(to_client(&outputs, 1).is_empty(), "{outputs:?}");
    assert!(matches!(
        &to_game(&outputs, 1)[..],
        [FrontendToGame::Input { .. }]
    ));
}
