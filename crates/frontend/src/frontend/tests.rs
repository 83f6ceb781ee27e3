//! Tests of the driver: recorded inputs with explicit `now`, outputs checked frame by frame.

use super::*;
use bytes::BytesMut;
use flotilla_wire::{ClientToFrontend, Decoder, SnapshotPart};
use flotilla_world::{Snapshot, WorldState};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn raw<M: Message>(message: &M) -> RawFrame {
    RawFrame::parse(message.encode_to_bytes(), 1 << 20).unwrap()
}

fn decode_client(bytes: &Bytes) -> Vec<FrontendToClient> {
    let mut decoder = Decoder::default();
    decoder.feed(bytes);
    let mut out = Vec::new();
    while let Some(message) = decoder.next_message().unwrap() {
        out.push(message);
    }
    assert_eq!(decoder.buffered_len(), 0);
    out
}

fn decode_game(bytes: &Bytes) -> FrontendToGame {
    let mut decoder = Decoder::default();
    decoder.feed(bytes);
    decoder.next_message().unwrap().unwrap()
}

fn arena() -> WorldId {
    WorldId::new("arena").unwrap()
}

/// A front-end plus the recorded inputs fed to it.
///
/// It plays the shell's part in writing: like the event loop, it writes every connection
/// it was given frames for (and tells the machine first, [`Input::ClientWriting`]),
/// except those in `blocked`, whose sockets it treats as full.
struct Harness {
    frontend: Frontend,
    now: Instant,
    recorded: Vec<(Instant, Input)>,
    /// Every output of the live run, in order.
    produced: Vec<Output>,
    /// Connections whose sockets take nothing: they are not written (no `ClientWriting`).
    blocked: std::collections::HashSet<u64>,
}

impl Harness {
    fn new(config: FrontendConfig) -> Self {
        Self {
            frontend: Frontend::new(&config, 7),
            now: Instant::ZERO,
            recorded: Vec::new(),
            produced: Vec::new(),
            blocked: Default::default(),
        }
    }

    fn default_config() -> Self {
        Self::new(FrontendConfig::default())
    }

    /// Feeds `input`, then writes the connections it queued frames for (see
    /// [`Harness`]); returns every output, the top-ups included.
    fn feed(&mut self, input: Input) -> Vec<Output> {
        let mut outputs = self.feed_alone(input);
        let mut written = std::collections::HashSet::new();
        let mut at = 0;
        while let Some(output) = outputs.get(at) {
            at += 1;
            if let Output::SendToClient { conn, .. } = output
                && !self.blocked.contains(&conn.0)
                && written.insert(*conn)
            {
                let conn = *conn;
                outputs.extend(self.feed_alone(Input::ClientWriting(conn)));
            }
        }
        outputs
    }

    /// Feeds `input` and returns its outputs, writing nothing.
    fn feed_alone(&mut self, input: Input) -> Vec<Output> {
        self.recorded.push((self.now, input.clone()));
        self.frontend.handle(self.now, input);
        let outputs: Vec<Output> = std::iter::from_fn(|| self.frontend.poll_output()).collect();
        self.produced.extend(outputs.iter().cloned());
        outputs
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Connects a client and completes its handshake; returns its session id.
    fn client(&mut self, conn: u64) -> SessionId {
        let conn = ConnId(conn);
        self.feed(Input::ClientConnected(conn));
        let outputs = self.feed(Input::ClientFrame(
            conn,
            raw(&ClientToFrontend::Hello {
                version: 1,
                session_token: None,
                client_name: format!("client-{}", conn.0),
            }),
        ));
        let Some(Output::SendToClient { bytes, .. }) = outputs.first() else {
            panic!("no welcome: {outputs:?}")
        };
        let [FrontendToClient::Welcome { session_token, .. }] = &decode_client(bytes)[..] else {
            panic!("not a welcome")
        };
        verify_token(&self.frontend.token_key.key, session_token).unwrap()
    }

    /// Connects a game server that hosts `worlds`.
    fn game(&mut self, game: u64, worlds: &[&str]) -> Vec<Output> {
        let game = GameId(game);
        let outputs = self.feed(Input::GameConnected(game));
        assert!(matches!(
            &outputs[..],
            [Output::SendToGame(g, hello)] if *g == game && matches!(decode_game(hello), FrontendToGame::Hello { .. })
        ));
        let mut all = self.feed(Input::GameFrame(
            game,
            raw(&GameToFrontend::Welcome {
                version: 1,
                server_id: "game".into(),
            }),
        ));
        for world in worlds {
            all.extend(self.feed(Input::GameFrame(
                game,
                raw(&GameToFrontend::WorldAdded {
                    world: WorldId::new(world).unwrap(),
                    info: Bytes::from(format!("{{\"name\":\"{world}\"}}")),
                }),
            )));
        }
        all
    }

    fn subscribe(&mut self, conn: u64, world: &WorldId, since: Option<Position>) -> Vec<Output> {
        self.feed(Input::ClientFrame(
            ConnId(conn),
            raw(&ClientToFrontend::Subscribe {
                world: world.clone(),
                since,
            }),
        ))
    }

    fn game_snapshot(&mut self, game: u64, world: &WorldId, state: &WorldState) -> Vec<Output> {
        self.feed(Input::GameFrame(
            GameId(game),
            raw(&GameToFrontend::Snapshot {
                world: world.clone(),
                part: SnapshotPart::Whole,
                snapshot: state.snapshot(),
            }),
        ))
    }

    /// The game commits one batch setting `key` and sends it; returns the frame bytes and
    /// the outputs.
    fn game_batch(
        &mut self,
        game: u64,
        world: &WorldId,
        state: &mut WorldState,
        key: &str,
    ) -> (Bytes, Vec<Output>) {
        let value = format!("{:0100}", state.seq());
        let mut tx = state.begin();
        tx.set(key.to_owned(), value);
        let batch = tx.commit().unwrap();
        let frame = flotilla_wire::change_batch_frame(world, &batch);
        let outputs = self.feed(Input::GameFrame(
            GameId(game),
            RawFrame::parse(frame.clone(), 1 << 20).unwrap(),
        ));
        (frame, outputs)
    }
}

/// Frames sent to `conn` among `outputs`, decoded.
fn to_client(outputs: &[Output], conn: u64) -> Vec<FrontendToClient> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::SendToClient { conn: c, bytes, .. } if c.0 == conn => {
                Some(decode_client(bytes))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

/// Frames sent to `game` among `outputs`, decoded.
fn to_game(outputs: &[Output], game: u64) -> Vec<FrontendToGame> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::SendToGame(g, bytes) if g.0 == game => Some(decode_game(bytes)),
            _ => None,
        })
        .collect()
}

/// Asserts that `outputs` tell connection `conn` its session was resumed elsewhere
/// (`Error{SessionMoved}`) and close it.
fn assert_taken_over(outputs: &[Output], conn: u64) {
    assert_eq!(
        to_client(outputs, conn),
        vec![FrontendToClient::Error {
            code: ErrorCode::SessionMoved,
            text: "session resumed on another connection".into()
        }]
    );
    assert!(outputs.contains(&Output::CloseClient(
        ConnId(conn),
        CloseReason::SessionMoved
    )));
}

#[test]
fn sessions_open_on_every_game_and_resume_with_their_token() {
    let mut h = Harness::default_config();
    h.game(1, &[]);
    h.feed(Input::ClientConnected(ConnId(1)));
    let outputs = h.feed(Input::ClientFrame(
        ConnId(1),
        raw(&ClientToFrontend::Hello {
            version: 1,
            session_token: None,
            client_name: "alice".into(),
        }),
    ));
    let [
        FrontendToClient::Welcome {
            session_token,
            resumed: false,
            server_id,
            ..
        },
    ] = &to_client(&outputs, 1)[..]
    else {
        panic!("{outputs:?}")
    };
    assert_eq!(server_id, "frontend");
    let session = verify_token(&h.frontend.token_key.key, session_token).unwrap();
    assert_eq!(
        to_game(&outputs, 1),
        vec![FrontendToGame::SessionOpened {
            session,
            client_name: "alice".into()
        }]
    );
    // A game server connecting later learns the open sessions after its handshake (held,
    // not opened: that must not move a session).
    let outputs = h.game(2, &[]);
    assert!(to_game(&outputs, 2).contains(&FrontendToGame::SessionHeld {
        session,
        client_name: "alice".into()
    }));

    // The client comes back on another connection with its token: same session.
    h.feed(Input::ClientConnected(ConnId(2)));
    let outputs = h.feed(Input::ClientFrame(
        ConnId(2),
        raw(&ClientToFrontend::Hello {
            version: 1,
            session_token: Some(session_token.clone()),
            client_name: "alice".into(),
        }),
    ));
    assert!(matches!(
        &to_client(&outputs, 2)[..],
        [FrontendToClient::Welcome { resumed: true, .. }]
    ));
    // The old connection is told why and closed, without a SessionClosed: the session
    // lives on.
    assert_taken_over(&outputs, 1);
    assert_eq!(h.frontend.stats().sessions_taken_over, 1);
    assert!(
        !to_game(&outputs, 1)
            .iter()
            .any(|m| matches!(m, FrontendToGame::SessionClosed { .. }))
    );
    assert_eq!(h.frontend.router().conn_of(session), Some(ConnId(2)));
    // Closing the new connection closes the session on every game server.
    let outputs = h.feed(Input::ClientClosed(ConnId(2)));
    assert_eq!(
        to_game(&outputs, 1),
        vec![FrontendToGame::SessionClosed { session }]
    );
    assert_eq!(
        to_game(&outputs, 2),
        vec![FrontendToGame::SessionClosed { session }]
    );
}

#[test]
fn inputs_are_routed_to_the_host_and_outputs_back_to_the_session() {
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    h.game(2, &["other"]);
    let alice = h.client(1);
    let bob = h.client(2);
    let outputs = h.feed(Input::ClientFrame(
        ConnId(2),
        raw(&ClientToFrontend::Input {
            world: arena(),
            payload: Bytes::from_static(b"left"),
        }),
    ));
    assert_eq!(
        to_game(&outputs, 1),
        vec![FrontendToGame::Input {
            world: arena(),
            session: bob,
            payload: Bytes::from_static(b"left")
        }]
    );
    assert!(to_game(&outputs, 2).is_empty());
    let outputs = h.feed(Input::GameFrame(
        GameId(1),
        raw(&GameToFrontend::Output {
            world: arena(),
            session: alice,
            payload: Bytes::from_static(b"you won"),
        }),
    ));
    assert_eq!(
        to_client(&outputs, 1),
        vec![FrontendToClient::Output {
            world: arena(),
            payload: Bytes::from_static(b"you won")
        }]
    );
    assert!(to_client(&outputs, 2).is_empty());
    // Input for a world nobody hosts is dropped, counted, and the client told.
    let outputs = h.feed(Input::ClientFrame(
        ConnId(1),
        raw(&ClientToFrontend::Input {
            world: WorldId::new("nowhere").unwrap(),
            payload: Bytes::new(),
        }),
    ));
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Unsubscribed {
            code: ErrorCode::UnknownWorld,
            ..
        }]
    ));
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    let stats = h.frontend.stats();
    assert_eq!(
        (
            stats.inputs_routed,
            stats.inputs_dropped,
            stats.outputs_routed
        ),
        (1, 1, 1)
    );
}

#[test]
fn the_factory_subscribes_upstream_once_and_unsubscribes_a_grace_period_after_the_last_observer() {
    // Shorter than the game link's idle timeout, so the harness's game need not ping.
    let mut h = Harness::new(FrontendConfig {
        replica_grace_period: 2000 * MS,
        ..FrontendConfig::default()
    });
    h.game(1, &["arena"]);
    h.client(1);
    h.client(2);
    let outputs = h.subscribe(1, &arena(), None);
    assert_eq!(
        to_game(&outputs, 1),
        vec![FrontendToGame::Subscribe {
            world: arena(),
            since: None
        }]
    );
    assert_eq!(h.frontend.stats().replicas, 1);
    let outputs = h.subscribe(2, &arena(), None);
    assert!(
        to_game(&outputs, 1).is_empty(),
        "one upstream subscription per front-end"
    );
    let outputs = h.feed(Input::ClientFrame(
        ConnId(1),
        raw(&ClientToFrontend::Unsubscribe { world: arena() }),
    ));
    assert!(outputs.is_empty());
    assert!(h.frontend.replica(&arena()).is_some());
    // The last observer leaves by disconnecting: the replica is kept for the grace period.
    let outputs = h.feed(Input::ClientClosed(ConnId(2)));
    assert!(
        !to_game(&outputs, 1).contains(&FrontendToGame::Unsubscribe { world: arena() }),
        "{outputs:?}"
    );
    assert_eq!(h.frontend.stats().replicas, 1);
    h.advance(1999 * MS);
    let outputs = h.feed(Input::Timeout);
    assert!(!to_game(&outputs, 1).contains(&FrontendToGame::Unsubscribe { world: arena() }));
    assert!(h.frontend.replica(&arena()).is_some());
    h.advance(MS);
    let outputs = h.feed(Input::Timeout);
    assert!(to_game(&outputs, 1).contains(&FrontendToGame::Unsubscribe { world: arena() }));
    assert!(h.frontend.replica(&arena()).is_none());
    assert_eq!(h.frontend.stats().replicas, 0);
}

#[test]
fn subscribe_unsubscribe_churn_within_the_grace_period_sends_nothing_upstream() {
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    h.client(1);
    h.subscribe(1, &arena(), None);
    let state = WorldState::with_entries(4, [("a", "1")]);
    h.game_snapshot(1, &arena(), &state);
    for round in 0..10 {
        let mut outputs = h.feed(Input::ClientFrame(
            ConnId(1),
            raw(&ClientToFrontend::Unsubscribe { world: arena() }),
        ));
        h.advance(100 * MS);
        outputs.extend(h.feed(Input::Timeout));
        outputs.extend(h.subscribe(1, &arena(), None));
        assert!(
            to_game(&outputs, 1).iter().all(|m| !matches!(
                m,
                FrontendToGame::Subscribe { .. } | FrontendToGame::Unsubscribe { .. }
            )),
            "round {round}: {outputs:?}"
        );
        // The live replica answers at once.
        let snapshots: Vec<_> = to_client(&outputs, 1)
            .into_iter()
            .filter(|m| matches!(m, FrontendToClient::Snapshot { .. }))
            .collect();
        assert_eq!(snapshots.len(), 1, "round {round}");
    }
}

#[test]
fn snapshots_and_batches_are_forwarded_byte_for_byte_and_shared() {
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    h.client(1);
    h.client(2);
    h.subscribe(1, &arena(), None);
    h.subscribe(2, &arena(), None);
    let mut state = WorldState::with_entries(99, [("a", "1")]);
    let snapshot_frame = GameToFrontend::Snapshot {
        world: arena(),
        part: SnapshotPart::Whole,
        snapshot: state.snapshot(),
    }
    .encode_to_bytes();
    let outputs = h.feed(Input::GameFrame(
        GameId(1),
        RawFrame::parse(snapshot_frame.clone(), 1 << 20).unwrap(),
    ));
    let sent: Vec<&Bytes> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::SendToClient {
                bytes,
                droppable: true,
                ..
            } => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|bytes| **bytes == snapshot_frame));

    let (frame, outputs) = h.game_batch(1, &arena(), &mut state, "b");
    let sent: Vec<&Bytes> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::SendToClient {
                bytes,
                droppable: true,
                ..
            } => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 2);
    // The very same buffer goes to both observers: encoded once (by the game server).
    assert!(
        sent.iter()
            .all(|bytes| **bytes == frame && bytes.as_ptr() == sent[0].as_ptr())
    );
    assert_eq!(
        h.frontend.replica(&arena()).unwrap().replica().digest(),
        state.digest()
    );
    assert_eq!(h.frontend.stats().batches_forwarded, 2);
}

#[test]
fn resuming_subscribers_get_ring_batches_or_a_snapshot() {
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    h.client(1);
    h.subscribe(1, &arena(), None);
    let mut state = WorldState::new(5);
    h.game_snapshot(1, &arena(), &state);
    let mut frames = Vec::new();
    for key in ["a", "b", "c"] {
        frames.push(h.game_batch(1, &arena(), &mut state, key).0);
    }
    h.client(2);
    let outputs = h.subscribe(2, &arena(), Some(Position { epoch: 5, seq: 1 }));
    let sent: Vec<Bytes> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::SendToClient { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sent, frames[1..].to_vec());
    h.client(3);
    let outputs = h.subscribe(3, &arena(), Some(Position { epoch: 4, seq: 3 }));
    let [FrontendToClient::Snapshot { snapshot, .. }] = &to_client(&outputs, 3)[..] else {
        panic!("{outputs:?}")
    };
    assert_eq!(snapshot.digest(), state.digest());
}

#[test]
fn unknown_worlds_are_answered_with_unsubscribed() {
    let mut h = Harness::default_config();
    h.client(1);
    // No game server connected yet: the front-end cannot know; "try again".
    let outputs = h.subscribe(1, &arena(), None);
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Unsubscribed {
            code: ErrorCode::Unavailable,
            ..
        }]
    ));
    // With a game server that does not announce it: it does not exist.
    h.game(1, &["other"]);
    let outputs = h.subscribe(1, &arena(), None);
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Unsubscribed {
            code: ErrorCode::UnknownWorld,
            ..
        }]
    ));
    assert!(
        h.frontend
            .session(ConnId(1))
            .unwrap()
            .subscriptions()
            .is_empty()
    );
}

#[test]
fn a_slow_observer_is_resynced_while_a_fast_one_gets_every_batch() {
    let config = FrontendConfig {
        send_budget: 1_000,
        ..FrontendConfig::default()
    };
    let mut h = Harness::new(config);
    h.game(1, &["arena"]);
    h.client(1); // fast
    h.client(2); // slow: never drains until the end
    h.subscribe(1, &arena(), None);
    h.subscribe(2, &arena(), None);
    let mut state = WorldState::new(1);
    let outputs = h.game_snapshot(1, &arena(), &state);
    let drained_fast: usize = outputs
        .iter()
        .filter_map(|o| match o {
            Output::SendToClient { conn, bytes, .. } if conn.0 == 1 => Some(bytes.len()),
            _ => None,
        })
        .sum();
    h.feed(Input::ClientDrained(ConnId(1), drained_fast + 200));

    let mut fast_batches = 0;
    let mut slow_batches = 0;
    let mut drops = 0;
    for i in 0..50 {
        let (_, outputs) = h.game_batch(1, &arena(), &mut state, &format!("k{i}"));
        for output in &outputs {
            match output {
                Output::SendToClient {
                    conn,
                    bytes,
                    droppable: true,
                } => {
                    if conn.0 == 1 {
                        fast_batches += 1;
                        h.feed(Input::ClientDrained(ConnId(1), bytes.len()));
                    } else {
                        slow_batches += 1;
                    }
                }
                Output::DropQueuedBatches(conn) => {
                    assert_eq!(conn.0, 2, "only the slow observer is dropped");
                    drops += 1;
                }
                _ => {}
            }
        }
    }
    assert_eq!(fast_batches, 50, "the fast observer gets every batch");
    assert_eq!(drops, 1, "the slow observer crosses its budget once");
    assert!(
        slow_batches < 10,
        "{slow_batches} batches queued past a 1,000-byte budget"
    );
    let stats = h.frontend.stats();
    assert_eq!(stats.congestions, 1);
    assert_eq!(stats.batches_dropped, 50 - slow_batches);
    assert_eq!(
        h.frontend.replica(&arena()).unwrap().subscriber(ConnId(2)),
        Some(SubscriberState::NeedsResync)
    );

    // The shell discards the queued batches and writes the rest: the slow observer drains
    // and gets one snapshot of the current state, then live batches again.
    let queued = h.frontend.session(ConnId(2)).unwrap().queued_bytes();
    let outputs = h.feed(Input::ClientDrained(ConnId(2), queued));
    let [FrontendToClient::Snapshot { snapshot, .. }] = &to_client(&outputs, 2)[..] else {
        panic!("{outputs:?}")
    };
    assert_eq!((snapshot.seq, snapshot.digest()), (50, state.digest()));
    assert_eq!(h.frontend.stats().resyncs, 1);
    // Once the snapshot is written, live batches flow again.
    let queued = h.frontend.session(ConnId(2)).unwrap().queued_bytes();
    assert!(h.feed(Input::ClientDrained(ConnId(2), queued)).is_empty());
    let (frame, outputs) = h.game_batch(1, &arena(), &mut state, "after");
    assert!(outputs.contains(&Output::SendToClient {
        conn: ConnId(2),
        bytes: frame,
        droppable: true
    }));
}

#[test]
fn the_directory_lists_announced_worlds_and_follows_game_losses() {
    let mut h = Harness::default_config();
    h.client(1);
    let outputs = h.subscribe(1, &WorldId::DIRECTORY, None);
    let [FrontendToClient::Snapshot { snapshot, .. }] = &to_client(&outputs, 1)[..] else {
        panic!("{outputs:?}")
    };
    assert!(snapshot.entries.is_empty());
    let epoch = snapshot.epoch;

    let outputs = h.game(1, &["arena"]);
    let [FrontendToClient::ChangeBatch { world, batch }] = &to_client(&outputs, 1)[..] else {
        panic!("{outputs:?}")
    };
    assert_eq!(*world, WorldId::DIRECTORY);
    assert_eq!((batch.epoch, batch.seq), (epoch, 1));
    assert_eq!(
        batch.upserts[0],
        (
            Bytes::from_static(b"arena"),
            Bytes::from_static(b"{\"name\":\"arena\"}")
        )
    );

    // A game server may not announce a reserved world.
    let outputs = h.feed(Input::GameFrame(
        GameId(1),
        raw(&GameToFrontend::WorldAdded {
            world: WorldId::new("$evil").unwrap(),
            info: Bytes::new(),
        }),
    ));
    assert!(outputs.is_empty());

    // Another observer watches the arena; the game server goes away. The directory says
    // so at once; the arena's observer keeps its subscription while the front-end waits
    // for a game server to announce the arena again (the resume grace).
    h.client(2);
    h.subscribe(2, &arena(), None);
    let outputs = h.feed(Input::GameClosed(GameId(1)));
    let [FrontendToClient::ChangeBatch { batch, .. }] = &to_client(&outputs, 1)[..] else {
        panic!("{outputs:?}")
    };
    assert_eq!(batch.removes, vec![Bytes::from_static(b"arena")]);
    assert!(to_client(&outputs, 2).is_empty(), "{outputs:?}");
    assert_eq!(h.frontend.stats().worlds_waiting_for_game, 1);
    // Nobody announces it within the grace: then it ends.
    let grace = h.frontend.config().game_resume_grace;
    h.advance(grace - MS);
    let outputs = h.feed(Input::Timeout);
    assert!(
        !to_client(&outputs, 2)
            .iter()
            .any(|m| matches!(m, FrontendToClient::Unsubscribed { .. })),
        "{outputs:?}"
    );
    h.advance(MS);
    let outputs = h.feed(Input::Timeout);
    assert!(matches!(
        &to_client(&outputs, 2)[..],
        [FrontendToClient::Unsubscribed {
            code: ErrorCode::Unavailable,
            ..
        }]
    ));
    assert_eq!(h.frontend.stats().worlds_waiting_for_game, 0);
    assert!(h.frontend.replica(&arena()).is_none());
    assert!(
        h.frontend
            .session(ConnId(2))
            .unwrap()
            .subscriptions()
            .is_empty()
    );
    assert!(h.frontend.directory().get(&arena()).is_none());
}

#[test]
fn world_removed_ends_its_subscriptions() {
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    h.client(1);
    h.subscribe(1, &arena(), None);
    let outputs = h.feed(Input::GameFrame(
        GameId(1),
        raw(&GameToFrontend::WorldRemoved { world: arena() }),
    ));
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Unsubscribed {
            code: ErrorCode::UnknownWorld,
            ..
        }]
    ));
    assert_eq!(h.frontend.router().host_of(&arena()), None);
}

#[test]
fn a_malformed_frame_closes_only_that_connection() {
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    h.client(1);
    h.client(2);
    h.client(3);
    h.subscribe(1, &arena(), None);
    h.subscribe(2, &arena(), None);
    let mut state = WorldState::new(3);
    h.game_snapshot(1, &arena(), &state);

    // Client 2's bytes cannot even be framed (the shell's decoder reports it).
    let outputs = h.feed(Input::ClientMalformed(
        ConnId(2),
        WireError::UnknownFrameType(0x7f),
    ));
    assert!(matches!(
        &to_client(&outputs, 2)[..],
        [FrontendToClient::Error {
            code: ErrorCode::Malformed,
            ..
        }]
    ));
    assert_eq!(
        outputs.last(),
        Some(&Output::CloseClient(
            ConnId(2),
            CloseReason::Protocol(ErrorCode::Malformed)
        ))
    );
    // Client 3 sends a well-framed Subscribe with a trailing byte.
    let mut bad = BytesMut::new();
    ClientToFrontend::Subscribe {
        world: arena(),
        since: None,
    }
    .encode(&mut bad);
    bad.extend_from_slice(&[0]);
    let len = u32::try_from(bad.len() - 4).unwrap();
    bad[..4].copy_from_slice(&len.to_be_bytes());
    let outputs = h.feed(Input::ClientFrame(
        ConnId(3),
        RawFrame::parse(bad.freeze(), 1 << 20).unwrap(),
    ));
    assert!(matches!(
        &to_client(&outputs, 3)[..],
        [FrontendToClient::Error {
            code: ErrorCode::Malformed,
            ..
        }]
    ));
    assert!(outputs.contains(&Output::CloseClient(
        ConnId(3),
        CloseReason::Protocol(ErrorCode::Malformed)
    )));
    assert!(h.frontend.session(ConnId(2)).is_none());
    assert!(h.frontend.session(ConnId(3)).is_none());

    // Client 1 goes on receiving batches.
    let (frame, outputs) = h.game_batch(1, &arena(), &mut state, "x");
    assert_eq!(
        outputs,
        vec![Output::SendToClient {
            conn: ConnId(1),
            bytes: frame,
            droppable: true
        }]
    );
    assert_eq!(h.frontend.stats().protocol_errors, 2);
}

#[test]
fn keep_alives_ping_quiet_clients_and_close_silent_ones() {
    // Worlds of a lost game link end at once here (no resume grace), so that the link's
    // loss below is the only cause of the unsubscription.
    // Pings every 2 s (the default is 20 s: the kernel watches the connection meanwhile).
    let mut h = Harness::new(FrontendConfig {
        game_resume_grace: Duration::ZERO,
        client_idle_timeout: 6000 * MS,
        client_ping_interval: 2000 * MS,
        ..FrontendConfig::default()
    });
    h.game(1, &["arena"]);
    h.client(1);
    h.subscribe(1, &arena(), None);
    h.advance(1000 * MS);
    // A game link's keep-alive is its keeper's, beside its socket (`GameLinkKeeper`): the
    // machine sends the game server nothing. The client is not pinged yet (2 s).
    let outputs = h.feed(Input::Timeout);
    assert!(to_game(&outputs, 1).is_empty());
    assert!(to_client(&outputs, 1).is_empty());
    h.advance(1000 * MS);
    let outputs = h.feed(Input::Timeout);
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Ping { nonce: 1 }]
    ));
    assert!(to_game(&outputs, 1).is_empty());
    // The client keeps answering; the game server falls silent and its keeper closes the
    // link, which the shell reports.
    h.feed(Input::ClientFrame(
        ConnId(1),
        raw(&ClientToFrontend::Pong { nonce: 1 }),
    ));
    h.advance(3000 * MS);
    h.feed(Input::ClientFrame(
        ConnId(1),
        raw(&ClientToFrontend::Ping { nonce: 9 }),
    ));
    let outputs = h.feed(Input::GameClosed(GameId(1)));
    assert!(to_client(&outputs, 1).iter().any(|m| matches!(
        m,
        FrontendToClient::Unsubscribed {
            code: ErrorCode::Unavailable,
            ..
        }
    )));
    // Then the client falls silent too.
    h.advance(6000 * MS);
    let outputs = h.feed(Input::Timeout);
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Error {
            code: ErrorCode::Timeout,
            ..
        }]
    ));
    assert_eq!(
        outputs.last(),
        Some(&Output::CloseClient(ConnId(1), CloseReason::IdleTimeout))
    );
    assert_eq!(h.frontend.stats().connections, 0);
}

#[test]
fn game_outputs_past_the_hard_limit_close_the_connection() {
    let config = FrontendConfig {
        send_budget: 100,
        max_queued_bytes: 300,
        ..FrontendConfig::default()
    };
    let mut h = Harness::new(config);
    h.game(1, &["arena"]);
    let session = h.client(1);
    let mut closed = false;
    for _ in 0..10 {
        let outputs = h.feed(Input::GameFrame(
            GameId(1),
            raw(&GameToFrontend::Output {
                world: arena(),
                session,
                payload: Bytes::from(vec![0u8; 50]),
            }),
        ));
        if outputs.contains(&Output::CloseClient(
            ConnId(1),
            CloseReason::Protocol(ErrorCode::Overloaded),
        )) {
            closed = true;
            break;
        }
    }
    assert!(closed);
}

/// A front-end (a small send budget) with one game server hosting `arena` and `other`,
/// `clients` subscribers of `arena` (client 2 also of the directory), fed `batches`
/// batches 50 ms apart with drains and timeouts, then 10 s of quiet. Returns the harness
/// (its recorded inputs) and every output.
///
/// It checks join tokens: client 1 joins `arena` as a player and sends an input, client 2
/// sends one without a token (refused), so recordings and checkpoints carry grants.
fn busy_harness(clients: u64, batches: u64) -> (FrontendConfig, Harness, Vec<Output>) {
    let signer = crate::JoinSigner::generate().unwrap();
    let config = FrontendConfig {
        send_budget: 2_000,
        join_keys: vec![signer.public_key()],
        // Pings among the outputs too.
        client_ping_interval: 2000 * MS,
        ..FrontendConfig::default()
    };
    let mut h = Harness::new(config.clone());
    h.feed(Input::WallClock {
        unix_millis: T0 * 1000,
    });
    h.game(1, &["arena", "other"]);
    for conn in 1..=clients {
        h.client(conn);
        h.subscribe(conn, &arena(), None);
    }
    join(&mut h, 1, token(&signer, &arena(), Role::Player, T0 + 60));
    assert_eq!(play(&mut h, 1, &arena()).0.len(), 1);
    assert!(play(&mut h, 2, &arena()).0.is_empty());
    h.subscribe(2, &WorldId::DIRECTORY, None);
    let mut state = WorldState::new(11);
    h.game_snapshot(1, &arena(), &state);
    let mut outputs = Vec::new();
    for i in 0..batches {
        h.advance(50 * MS);
        let (_, batch_outputs) = h.game_batch(1, &arena(), &mut state, &format!("k{}", i % 7));
        outputs.extend(batch_outputs);
        outputs.extend(h.feed(Input::ClientDrained(ConnId(1 + i % 3), 150)));
        outputs.extend(h.feed(Input::Timeout));
    }
    h.advance(10_000 * MS);
    outputs.extend(h.feed(Input::Timeout));
    (config, h, outputs)
}

#[test]
fn a_machine_restored_from_a_checkpoint_goes_on_as_the_original() {
    let (config, h, _) = busy_harness(6, 40);

    // Cut the recorded stream anywhere: the machine restored from a checkpoint there,
    // fed the rest, gives what the original gives (a restored machine's hash tables are
    // laid out anew, so the original is compared after its own round trip, as the
    // recorder does with the live machine).
    let recorded = h.recorded.clone();
    for cut in [
        1,
        recorded.len() / 3,
        recorded.len() / 2,
        recorded.len() - 1,
    ] {
        let mut original = Frontend::new(&config, 7);
        for (now, input) in &recorded[..cut] {
            original.handle(*now, input.clone());
        }
        let checkpoint = original.checkpoint().unwrap();
        let mut restored = Frontend::restore(&checkpoint).unwrap();
        assert_eq!(
            restored.checkpoint().unwrap(),
            checkpoint,
            "stable round trip"
        );
        assert_eq!(restored.stats(), original.stats());
        original = Frontend::restore(&checkpoint).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (now, input) in &recorded[cut..] {
            original.handle(*now, input.clone());
            restored.handle(*now, input.clone());
            a.extend(std::iter::from_fn(|| original.poll_output()));
            b.extend(std::iter::from_fn(|| restored.poll_output()));
        }
        assert_eq!(a, b, "cut at {cut}");
        assert_eq!(
            original.checkpoint().unwrap(),
            restored.checkpoint().unwrap()
        );
    }
    // Outputs not taken yet are part of the state.
    let mut pending = Frontend::new(&config, 7);
    for (now, input) in &recorded[..recorded.len() / 2] {
        pending.handle(*now, input.clone());
    }
    let mut restored = Frontend::restore(&pending.checkpoint().unwrap()).unwrap();
    let left: Vec<_> = std::iter::from_fn(|| pending.poll_output()).collect();
    assert!(!left.is_empty());
    assert_eq!(
        left,
        std::iter::from_fn(|| restored.poll_output()).collect::<Vec<_>>()
    );
    assert!(Frontend::restore(b"not a checkpoint").is_err());
}

#[test]
fn a_recorded_input_stream_replays_to_the_same_outputs() {
    let (config, h, first_run) = busy_harness(4, 120);

    // Replay the recorded stream into a fresh front-end with the same seed.
    let mut replay = Frontend::new(&config, 7);
    let mut all_first = Vec::new();
    let mut all_replay = Vec::new();
    let mut original = Frontend::new(&config, 7);
    for (now, input) in &h.recorded {
        original.handle(*now, input.clone());
        replay.handle(*now, input.clone());
        all_first.extend(std::iter::from_fn(|| original.poll_output()));
        all_replay.extend(std::iter::from_fn(|| replay.poll_output()));
    }
    assert!(all_first.len() > 100, "{} outputs", all_first.len());
    assert!(
        all_first
            .iter()
            .any(|o| matches!(o, Output::DropQueuedBatches(_)))
    );
    assert_eq!(all_first, all_replay);
    // And both equal what the live run produced, output for output.
    assert_eq!(all_first, h.produced);
    assert!(first_run.iter().all(|o| h.produced.contains(o)));
    assert_eq!(original.stats(), replay.stats());
    assert_eq!(original.stats(), h.frontend.stats());
    // A different seed mints different session ids: outputs differ.
    let mut other = Frontend::new(&config, 8);
    let mut all_other = Vec::new();
    for (now, input) in &h.recorded {
        other.handle(*now, input.clone());
        all_other.extend(std::iter::from_fn(|| other.poll_output()));
    }
    assert_ne!(all_first, all_other);
}

/// Says hello on a new connection with `token`; returns the welcome's token and `resumed`.
fn hello_with(h: &mut Harness, conn: u64, token: Option<Bytes>) -> (Bytes, bool) {
    h.feed(Input::ClientConnected(ConnId(conn)));
    let outputs = h.feed(Input::ClientFrame(
        ConnId(conn),
        raw(&ClientToFrontend::Hello {
            version: 1,
            session_token: token,
            client_name: "mallory".into(),
        }),
    ));
    match &to_client(&outputs, conn)[..] {
        [
            FrontendToClient::Welcome {
                session_token,
                resumed,
                ..
            },
        ] => (session_token.clone(), *resumed),
        other => panic!("no welcome: {other:?}"),
    }
}

#[test]
fn a_session_resumed_on_another_frontend_is_closed_here_with_an_explicit_error() {
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    let (token, _) = hello_with(&mut h, 1, None);
    h.subscribe(1, &arena(), None);
    let session = verify_token(&h.frontend.token_key.key, &token).unwrap();
    // Another front-end's SessionOpened moved the session: the game server says so.
    let outputs = h.feed(Input::GameFrame(
        GameId(1),
        raw(&GameToFrontend::SessionMoved { session }),
    ));
    assert_taken_over(&outputs, 1);
    assert_eq!(h.frontend.router().conn_of(session), None);
    assert_eq!(h.frontend.stats().sessions_taken_over, 1);
    // Its SessionClosed is harmless to the game server (the session is elsewhere).
    assert_eq!(
        to_game(&outputs, 1)
            .iter()
            .filter(|m| matches!(m, FrontendToGame::SessionClosed { .. }))
            .count(),
        1
    );
    // A session this front-end does not carry (already gone) changes nothing.
    let outputs = h.feed(Input::GameFrame(
        GameId(1),
        raw(&GameToFrontend::SessionMoved { session }),
    ));
    assert!(outputs.is_empty(), "{outputs:?}");
}

#[test]
fn a_forged_token_does_not_take_over_a_session() {
    let mut h = Harness::default_config();
    let victim = h.client(1);
    // Knowing the victim's id (worlds may publish it) is not enough: the tag must verify.
    let mut forged = victim.0.to_be_bytes().to_vec();
    forged.extend_from_slice(&[0u8; 32]);
    let (token, resumed) = hello_with(&mut h, 2, Some(Bytes::from(forged.clone())));
    assert!(!resumed);
    let attacker = verify_token(&h.frontend.token_key.key, &token).unwrap();
    assert_ne!(attacker, victim);
    assert_eq!(h.frontend.router().conn_of(victim), Some(ConnId(1)));
    // The old 16-byte format (id and anything) is refused too.
    let (_, resumed) = hello_with(&mut h, 3, Some(Bytes::from(forged[..16].to_vec())));
    assert!(!resumed);
    assert_eq!(h.frontend.router().conn_of(victim), Some(ConnId(1)));

    // A token minted by another front-end with the same key resumes; another key does not.
    let shared_key = crate::config::TokenKey::new([7; 32]);
    let config = FrontendConfig {
        token_key: shared_key.clone(),
        ..FrontendConfig::default()
    };
    let mut first = Harness::new(config.clone());
    let mut second = Harness::new(FrontendConfig {
        server_id: "fe-2".into(),
        ..config
    });
    let (token, _) = hello_with(&mut first, 1, None);
    let (_, resumed) = hello_with(&mut second, 1, Some(token.clone()));
    assert!(resumed, "same fleet key: the session resumes");
    let mut stranger = Harness::new(FrontendConfig {
        token_key: crate::config::TokenKey::new([8; 32]),
        ..FrontendConfig::default()
    });
    let (_, resumed) = hello_with(&mut stranger, 1, Some(token));
    assert!(!resumed, "another key: a new session");
}

/// `state`'s snapshot as upstream frames of at most `max_frame_len` bytes.
fn snapshot_parts(world: &WorldId, state: &WorldState, max_frame_len: usize) -> Vec<RawFrame> {
    let mut out = BytesMut::new();
    flotilla_wire::encode_snapshot(world, &state.snapshot(), max_frame_len, &mut out).unwrap();
    let mut decoder = Decoder::default();
    decoder.feed(&out);
    std::iter::from_fn(|| decoder.next_frame().unwrap()).collect()
}

fn big_world(keys: usize) -> WorldState {
    let mut state = WorldState::new(0xabc);
    let mut tx = state.begin();
    for key in 0..keys {
        tx.set(format!("k{key:04}"), format!("{key:0200}"));
    }
    tx.commit().unwrap();
    state
}

fn closes_game(outputs: &[Output]) -> bool {
    outputs
        .iter()
        .any(|output| matches!(output, Output::CloseGame(..)))
}

#[test]
fn leftover_snapshot_parts_after_a_resubscribe_do_not_close_the_game_link() {
    // No grace period: the machine is destroyed as its last observer leaves.
    let mut h = Harness::new(FrontendConfig {
        replica_grace_period: Duration::ZERO,
        ..FrontendConfig::default()
    });
    h.game(1, &["arena"]);
    h.client(1);
    let state = big_world(20);
    let parts = snapshot_parts(&arena(), &state, 1024);
    assert!(parts.len() >= 3, "{} parts", parts.len());

    h.subscribe(1, &arena(), None);
    // The first part reaches the machine; then its last observer leaves and comes back, so
    // the machine is destroyed and re-created while the other parts are in flight.
    let outputs = h.feed(Input::GameFrame(GameId(1), parts[0].clone()));
    assert!(!closes_game(&outputs));
    h.feed(Input::ClientFrame(
        ConnId(1),
        raw(&ClientToFrontend::Unsubscribe { world: arena() }),
    ));
    let outputs = h.subscribe(1, &arena(), None);
    assert!(to_game(&outputs, 1).contains(&FrontendToGame::Subscribe {
        world: arena(),
        since: None
    }));
    for part in &parts[1..] {
        let outputs = h.feed(Input::GameFrame(GameId(1), part.clone()));
        assert!(
            !closes_game(&outputs),
            "stale part closed the link: {outputs:?}"
        );
    }
    assert_eq!(h.frontend.stats().protocol_errors, 0);
    // The answer to the new subscription is served as usual.
    let mut answered = Vec::new();
    for part in &parts {
        answered.extend(h.feed(Input::GameFrame(GameId(1), part.clone())));
    }
    let snapshots = to_client(&answered, 1)
        .into_iter()
        .filter(|m| matches!(m, FrontendToClient::Snapshot { .. }))
        .count();
    assert_eq!(snapshots, parts.len());
    assert_eq!(
        h.frontend.replica(&arena()).unwrap().replica().position(),
        Some(state.position())
    );
}

#[test]
fn a_snapshot_larger_than_the_limit_closes_the_game_link_as_overloaded() {
    let mut h = Harness::new(FrontendConfig {
        max_snapshot_bytes: 2000,
        ..FrontendConfig::default()
    });
    h.game(1, &["arena"]);
    h.client(1);
    h.subscribe(1, &arena(), None);
    let parts = snapshot_parts(&arena(), &big_world(20), 1024);
    let mut outputs = Vec::new();
    for part in parts {
        outputs.extend(h.feed(Input::GameFrame(GameId(1), part)));
    }
    assert!(outputs.contains(&Output::CloseGame(
        GameId(1),
        CloseReason::Protocol(ErrorCode::Overloaded)
    )));
}

#[test]
fn discarded_bytes_do_not_resync_a_blocked_connection_only_writes_do() {
    let mut h = Harness::new(FrontendConfig {
        send_budget: 1_000,
        ..FrontendConfig::default()
    });
    h.game(1, &["arena"]);
    h.client(1);
    h.subscribe(1, &arena(), None);
    let mut state = WorldState::new(1);
    let outputs = h.game_snapshot(1, &arena(), &state);
    let written: usize = outputs
        .iter()
        .filter_map(|o| match o {
            Output::SendToClient { bytes, .. } => Some(bytes.len()),
            _ => None,
        })
        .sum();
    h.feed(Input::ClientDrained(ConnId(1), written + 200));
    // A socket that takes nothing: the first batch is queued, the ones after it are only
    // owed (no output, no bytes queued: a blocked observer costs nothing per batch).
    h.blocked.insert(1);
    let (first, outputs) = h.game_batch(1, &arena(), &mut state, "k");
    assert_eq!(to_client(&outputs, 1).len(), 1);
    for _ in 0..20 {
        let (_, outputs) = h.game_batch(1, &arena(), &mut state, "k");
        assert!(outputs.is_empty(), "{outputs:?}");
    }
    assert_eq!(
        h.frontend.session(ConnId(1)).unwrap().queued_bytes(),
        first.len()
    );
    // The socket proves writable and the shell is about to write: what it is owed is
    // past its budget, so it is congested and its queued batches are dropped.
    let outputs = h.feed_alone(Input::ClientWriting(ConnId(1)));
    assert_eq!(outputs, vec![Output::DropQueuedBatches(ConnId(1))]);
    assert_eq!(h.frontend.stats().congestions, 1);
    // The shell discards the queued batches: the budget is released, but the socket has
    // not taken a byte, so no snapshot is queued on it yet.
    let queued = h.frontend.session(ConnId(1)).unwrap().queued_bytes();
    let outputs = h.feed(Input::ClientDiscarded(ConnId(1), queued));
    assert!(outputs.is_empty(), "{outputs:?}");
    assert_eq!(h.frontend.session(ConnId(1)).unwrap().queued_bytes(), 0);
    assert!(h.frontend.session(ConnId(1)).unwrap().is_congested());
    assert_eq!(h.frontend.stats().resyncs, 0);
    // More batches while blocked: still dropped, still no snapshot.
    let (_, outputs) = h.game_batch(1, &arena(), &mut state, "k");
    assert!(to_client(&outputs, 1).is_empty());
    // The socket becomes writable (nothing left to write): now one resync snapshot.
    let outputs = h.feed(Input::ClientDrained(ConnId(1), 0));
    let [FrontendToClient::Snapshot { snapshot, .. }] = &to_client(&outputs, 1)[..] else {
        panic!("{outputs:?}")
    };
    assert_eq!(snapshot.digest(), state.digest());
    assert!(matches!(
        outputs[..],
        [Output::SendToClient {
            droppable: true,
            ..
        }]
    ));
    assert_eq!(h.frontend.stats().resyncs, 1);
}

#[test]
fn a_client_that_never_reads_cannot_queue_control_frames_without_bound() {
    let mut h = Harness::new(FrontendConfig {
        send_budget: 1_000,
        max_queued_bytes: 2_000,
        ..FrontendConfig::default()
    });
    h.client(1);
    // Pings answered with pongs that are never written.
    let mut closed = false;
    for nonce in 0..1_000 {
        let outputs = h.feed(Input::ClientFrame(
            ConnId(1),
            raw(&ClientToFrontend::Ping { nonce }),
        ));
        if outputs.contains(&Output::CloseClient(
            ConnId(1),
            CloseReason::Protocol(ErrorCode::Overloaded),
        )) {
            closed = true;
            break;
        }
    }
    assert!(closed, "pongs queued past the hard limit");
    assert!(h.frontend.session(ConnId(1)).is_none());

    // Repeated subscribes to an unknown world, same.
    h.client(2);
    let mut closed = false;
    for _ in 0..1_000 {
        let outputs = h.subscribe(2, &WorldId::new("nowhere").unwrap(), None);
        if outputs.contains(&Output::CloseClient(
            ConnId(2),
            CloseReason::Protocol(ErrorCode::Overloaded),
        )) {
            closed = true;
            break;
        }
    }
    assert!(closed, "Unsubscribed answers queued past the hard limit");

    // Repeated subscribes answered with snapshots, same.
    h.game(1, &["arena"]);
    h.client(3);
    h.subscribe(3, &arena(), None);
    h.game_snapshot(1, &arena(), &big_world(3));
    let mut closed = false;
    for _ in 0..1_000 {
        let outputs = h.subscribe(3, &arena(), None);
        if outputs.contains(&Output::CloseClient(
            ConnId(3),
            CloseReason::Protocol(ErrorCode::Overloaded),
        )) {
            closed = true;
            break;
        }
    }
    assert!(closed, "snapshots queued past the hard limit");
    assert_eq!(h.frontend.stats().connections, 0);
}

#[test]
fn a_compact_world_id_does_not_keep_the_receive_buffer_alive() {
    // A world id decoded from a frame is a slice of the connection's receive buffer.
    let buffer = Bytes::from(vec![b'w'; 4096]);
    let decoded = WorldId::from_bytes(buffer.slice(0..5)).unwrap();
    let compact = compact_world_id(decoded.clone());
    assert_eq!(compact, decoded);
    assert_eq!(compact.as_bytes().len(), 5);
    assert!(!buffer.as_ptr_range().contains(&compact.as_bytes().as_ptr()));
}

/// A client input of `len` payload bytes for `world`.
fn input_frame(world: &WorldId, len: usize) -> RawFrame {
    raw(&ClientToFrontend::Input {
        world: world.clone(),
        payload: Bytes::from(vec![b'x'; len]),
    })
}

#[test]
fn a_game_link_that_stops_reading_is_closed_as_overloaded_and_its_worlds_end() {
    let mut h = Harness::new(FrontendConfig {
        max_game_queued_bytes: 10_000,
        // Its worlds end at once rather than wait for the game server to come back.
        game_resume_grace: Duration::ZERO,
        ..FrontendConfig::default()
    });
    h.game(1, &["arena"]);
    h.client(1);
    h.client(2);
    h.subscribe(1, &arena(), None);
    // Client 2's inputs fill the link past its limit at 0 s; the shell writes some at 1 s.
    for _ in 0..20 {
        h.feed(Input::ClientFrame(ConnId(2), input_frame(&arena(), 1000)));
    }
    h.advance(1000 * MS);
    h.feed(Input::GameDrained(GameId(1), 500));
    // The game server keeps pinging, so it never looks idle; nothing more is written.
    let mut closed_at = None;
    for step in 1..=10 {
        h.advance(500 * MS);
        h.feed(Input::GameFrame(
            GameId(1),
            raw(&GameToFrontend::Ping { nonce: step }),
        ));
        let outputs = h.feed(Input::Timeout);
        if outputs.contains(&Output::CloseGame(
            GameId(1),
            CloseReason::Protocol(ErrorCode::Overloaded),
        )) {
            assert!(to_client(&outputs, 1).iter().any(|m| matches!(
                m,
                FrontendToClient::Unsubscribed {
                    code: ErrorCode::Unavailable,
                    ..
                }
            )));
            closed_at = Some(h.now);
            break;
        }
    }
    // The game idle timeout (3 s) after the last write (1 s).
    assert_eq!(closed_at, Some(Instant::ZERO + 4000 * MS));
    assert_eq!(h.frontend.stats().game_links_stalled, 1);
    assert_eq!(h.frontend.stats().games_ready, 0);
    // Both clients are still connected.
    assert_eq!(h.frontend.stats().connections, 2);
}

#[test]
fn a_client_must_say_hello_within_6_s_and_a_welcomed_one_that_only_listens_is_kept_a_minute() {
    // PROTOCOL.md section 7: a welcomed client's liveness is its kernel's business (the
    // shell's `TransportWatch`); the machine's frame-silence rule is a 60 s backstop.
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    h.feed(Input::ClientConnected(ConnId(2)));
    h.client(1);
    h.subscribe(1, &arena(), None);
    let mut closed = Vec::new();
    let end = h.now + Duration::from_secs(61);
    while let Some(at) = h.frontend.poll_timeout().filter(|at| *at <= end) {
        h.now = h.now.max(at);
        for output in h.feed(Input::Timeout) {
            if let Output::CloseClient(conn, reason) = output {
                closed.push((conn, reason, h.now));
            }
        }
    }
    assert_eq!(
        closed,
        vec![
            (
                ConnId(2),
                CloseReason::IdleTimeout,
                Instant::ZERO + 6000 * MS
            ),
            (
                ConnId(1),
                CloseReason::IdleTimeout,
                Instant::ZERO + 60_000 * MS
            ),
        ]
    );
}

#[test]
fn clients_are_not_timed_out_while_the_front_end_does_not_read_them() {
    let mut h = Harness::new(FrontendConfig {
        client_idle_timeout: 6000 * MS,
        ..FrontendConfig::default()
    });
    h.client(1);
    h.advance(1000 * MS);
    h.feed(Input::ClientReadingPaused);
    // Paused far past the client idle timeout (6 s): pinged, never closed.
    for _ in 0..40 {
        h.advance(500 * MS);
        let outputs = h.feed(Input::Timeout);
        assert!(
            !outputs
                .iter()
                .any(|output| matches!(output, Output::CloseClient(..))),
            "at {:?}: {outputs:?}",
            h.now
        );
    }
    h.feed(Input::ClientReadingResumed);
    let resumed_at = h.now;
    // From the resume on, a silent client gets the usual idle timeout.
    h.advance(5999 * MS);
    let outputs = h.feed(Input::Timeout);
    assert!(!outputs.contains(&Output::CloseClient(ConnId(1), CloseReason::IdleTimeout)));
    h.advance(MS);
    let outputs = h.feed(Input::Timeout);
    assert!(outputs.contains(&Output::CloseClient(ConnId(1), CloseReason::IdleTimeout)));
    assert_eq!(h.now - resumed_at, 6000 * MS);
}

/// `frame` parsed from a slice of a 64 KiB buffer (as a shell's reader delivers it), and
/// that buffer's address range.
fn in_large_buffer(frame: &Bytes) -> (RawFrame, std::ops::Range<*const u8>) {
    let mut decoder = Decoder::default();
    let buffer = decoder.buffer_mut();
    buffer.reserve(64 << 10);
    let start = buffer.as_ptr();
    let range = start..start.wrapping_add(buffer.capacity());
    buffer.extend_from_slice(frame);
    let raw = decoder.next_frame().unwrap().unwrap();
    assert!(range.contains(&raw.as_bytes().as_ptr()));
    (raw, range)
}

#[test]
fn kept_batches_and_snapshots_do_not_pin_the_read_buffer() {
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    h.client(1);
    h.subscribe(1, &arena(), None);
    let mut state = WorldState::with_entries(4, [("a", "1")]);
    let snapshot = GameToFrontend::Snapshot {
        world: arena(),
        part: SnapshotPart::Whole,
        snapshot: state.snapshot(),
    }
    .encode_to_bytes();
    let (frame, snapshot_buffer) = in_large_buffer(&snapshot);
    h.feed(Input::GameFrame(GameId(1), frame));
    // A new subscriber gets the kept snapshot frame: a copy, not the read buffer.
    h.client(2);
    let outputs = h.subscribe(2, &arena(), None);
    let Some(Output::SendToClient { bytes, .. }) = outputs.first() else {
        panic!("no snapshot: {outputs:?}")
    };
    assert_eq!(bytes, &snapshot);
    assert!(!snapshot_buffer.contains(&bytes.as_ptr()));
    let mut batch_buffers = Vec::new();
    for key in ["b", "c", "d"] {
        let mut tx = state.begin();
        tx.set(key.to_owned(), "value");
        let batch = tx.commit().unwrap();
        let (frame, range) = in_large_buffer(&flotilla_wire::change_batch_frame(&arena(), &batch));
        let outputs = h.feed(Input::GameFrame(GameId(1), frame));
        assert_eq!(to_client(&outputs, 1).len(), 1, "forwarded");
        batch_buffers.push(range);
    }
    let outside = |pointer: *const u8| {
        !snapshot_buffer.contains(&pointer) && batch_buffers.iter().all(|r| !r.contains(&pointer))
    };
    let machine = h.frontend.replica(&arena()).unwrap();
    let ring: Vec<_> = machine.replica().ring().iter().collect();
    assert_eq!(ring.len(), 3);
    for recent in ring {
        let encoded = recent.encoded.as_ref().unwrap();
        assert!(
            outside(encoded.as_ptr()),
            "the ring's frame pins a read buffer"
        );
        for (key, value) in &recent.batch.upserts {
            assert!(outside(key.as_ptr()) && outside(value.as_ptr()));
        }
    }
    for (key, value) in machine.replica().iter() {
        assert!(
            outside(key.as_ptr()) && outside(value.as_ptr()),
            "state pins a read buffer"
        );
    }
    // A resubscribe is served from the kept snapshot frame or a fresh encoding: neither
    // shares a read buffer either.
    let outputs = h.subscribe(1, &arena(), Some(Position { epoch: 99, seq: 0 }));
    let Some(Output::SendToClient { bytes, .. }) = outputs.first() else {
        panic!("no snapshot: {outputs:?}")
    };
    assert!(outside(bytes.as_ptr()));
}

#[test]
fn endless_empty_snapshot_parts_close_the_game_link() {
    let mut h = Harness::new(FrontendConfig {
        max_snapshot_bytes: 10_000,
        ..FrontendConfig::default()
    });
    h.game(1, &["arena"]);
    h.client(1);
    h.subscribe(1, &arena(), None);
    let part = |part, entries: usize| {
        raw(&GameToFrontend::Snapshot {
            world: arena(),
            part,
            snapshot: Snapshot {
                epoch: 1,
                seq: 1,
                entries: vec![(Bytes::new(), Bytes::new()); entries],
            },
        })
    };
    // Parts without entries count their frames; parts of empty entries count each entry.
    for entries in [0, 10] {
        h.feed(Input::GameFrame(
            GameId(1),
            part(SnapshotPart::First, entries),
        ));
        let mut closed = false;
        for _ in 0..10_000 {
            let outputs = h.feed(Input::GameFrame(
                GameId(1),
                part(SnapshotPart::Middle, entries),
            ));
            if outputs.contains(&Output::CloseGame(
                GameId(1),
                CloseReason::Protocol(ErrorCode::Overloaded),
            )) {
                closed = true;
                break;
            }
            let held = h.frontend.replica(&arena()).unwrap().snapshot_bytes_held();
            assert!(held <= 10_000, "{held} bytes held");
        }
        assert!(closed, "{entries} entries a part");
        // Reconnect for the next round.
        h.game(1, &["arena"]);
        h.subscribe(1, &arena(), None);
    }
}

#[test]
fn by_default_a_quiet_welcomed_client_is_pinged_after_20_s_not_before() {
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    h.client(1);
    // Every deadline before 20 s passes without a frame to the client.
    for _ in 0..19 {
        h.advance(1000 * MS);
        let outputs = h.feed(Input::Timeout);
        assert!(to_client(&outputs, 1).is_empty(), "{outputs:?}");
    }
    h.advance(999 * MS);
    assert!(to_client(&h.feed(Input::Timeout), 1).is_empty());
    h.advance(MS);
    let outputs = h.feed(Input::Timeout);
    assert!(
        matches!(&to_client(&outputs, 1)[..], [FrontendToClient::Ping { .. }]),
        "{outputs:?}"
    );
    assert_eq!(
        flotilla_wire::FRONTEND_PING_INTERVAL,
        Duration::from_secs(20)
    );
}

#[test]
fn poll_timeout_names_the_next_deadline_and_nothing_is_done_before_it() {
    let mut h = Harness::new(FrontendConfig {
        client_ping_interval: 2000 * MS,
        ..FrontendConfig::default()
    });
    assert_eq!(h.frontend.poll_timeout(), None, "nothing to wait for");
    h.game(1, &["arena"]);
    h.client(1);
    // The client is pinged after 2 s of quiet (a game link's keep-alive is its keeper's,
    // beside its socket: not the machine's).
    assert_eq!(h.frontend.poll_timeout(), Some(Instant::ZERO + 2000 * MS));
    h.advance(1999 * MS);
    assert!(
        h.feed(Input::Timeout).is_empty(),
        "an early Timeout is harmless"
    );
    h.advance(MS);
    let outputs = h.feed(Input::Timeout);
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Ping { nonce: 1 }]
    ));
    assert!(to_game(&outputs, 1).is_empty());
    assert_eq!(h.frontend.poll_timeout(), Some(Instant::ZERO + 4000 * MS));
}

#[test]
fn many_live_clients_cost_the_timer_heap_one_entry_each() {
    let mut h = Harness::new(FrontendConfig {
        client_idle_timeout: 6000 * MS,
        ..FrontendConfig::default()
    });
    let clients = 1_000u64;
    for conn in 1..=clients {
        h.client(conn);
    }
    // 30 virtual seconds: every client pings every second (so the front-end, answering,
    // never needs to ping them), and the shell feeds Timeout exactly when asked.
    let mut pings_to_clients = 0;
    let mut closes = 0;
    for second in 1..=30u64 {
        let until = Instant::ZERO + Duration::from_secs(second);
        while let Some(at) = h.frontend.poll_timeout().filter(|at| *at <= until) {
            h.now = h.now.max(at);
            for output in h.feed(Input::Timeout) {
                match output {
                    Output::CloseClient(..) => closes += 1,
                    Output::SendToClient { bytes, .. }
                        if decode_client(&bytes)
                            .iter()
                            .any(|m| matches!(m, FrontendToClient::Ping { .. })) =>
                    {
                        pings_to_clients += 1;
                    }
                    _ => {}
                }
            }
        }
        h.now = until;
        for conn in 1..=clients {
            h.feed(Input::ClientFrame(
                ConnId(conn),
                raw(&ClientToFrontend::Ping { nonce: second }),
            ));
        }
        assert!(
            h.frontend.deadlines.len() <= 2 * clients as usize,
            "{} timer entries for {clients} sessions",
            h.frontend.deadlines.len()
        );
    }
    assert_eq!((pings_to_clients, closes), (0, 0));
    // Then they all fall silent: each is pinged, then closed after 6 s, once.
    let mut closed = 0;
    let end = h.now + Duration::from_secs(7);
    while let Some(at) = h.frontend.poll_timeout().filter(|at| *at <= end) {
        h.now = h.now.max(at);
        closed += h
            .feed(Input::Timeout)
            .iter()
            .filter(|o| matches!(o, Output::CloseClient(_, CloseReason::IdleTimeout)))
            .count();
    }
    assert_eq!(closed, clients as usize);
    assert_eq!(h.frontend.stats().connections, 0);
    assert_eq!(h.frontend.poll_timeout(), None);
}

#[test]
fn a_lost_game_link_keeps_its_observers_and_resumes_from_the_replica_position() {
    // Every batch delivered as it came (no coalescing into the latest state), so that
    // what the observers get after the resume can be compared byte for byte.
    let mut h = Harness::new(FrontendConfig {
        coalesce_above: 0,
        ..FrontendConfig::default()
    });
    h.game(1, &["arena"]);
    h.client(1);
    h.subscribe(1, &arena(), None);
    let mut state = WorldState::new(5);
    {
        let mut tx = state.begin();
        tx.set("hp".to_owned(), "10".to_owned());
        tx.commit().unwrap();
    }
    h.game_snapshot(1, &arena(), &state);
    h.game_batch(1, &arena(), &mut state, "a");
    h.game_batch(1, &arena(), &mut state, "b");
    let position = h.frontend.replica(&arena()).unwrap().replica().position();
    assert!(position.is_some());

    // The game link blips: nothing is said to the observer.
    h.advance(100 * MS);
    let outputs = h.feed(Input::GameClosed(GameId(1)));
    assert!(to_client(&outputs, 1).is_empty(), "{outputs:?}");
    let stats = h.frontend.stats();
    assert_eq!(
        (
            stats.worlds_kept_after_game_loss,
            stats.worlds_waiting_for_game
        ),
        (1, 1)
    );

    // Meanwhile a new observer is served from the replica, with nothing sent upstream,
    // and an input is refused as undeliverable for now (not as an unknown world).
    h.client(2);
    let outputs = h.subscribe(2, &arena(), None);
    assert!(
        matches!(&to_client(&outputs, 2)[..], [FrontendToClient::Snapshot { world, .. }] if *world == arena()),
        "{outputs:?}"
    );
    let outputs = h.feed(Input::ClientFrame(ConnId(1), input_frame(&arena(), 10)));
    match &to_client(&outputs, 1)[..] {
        [FrontendToClient::Unsubscribed { code, text, .. }] => {
            assert_eq!(*code, ErrorCode::Unavailable);
            assert!(text.contains("reconnecting"), "{text}");
        }
        other => panic!("{other:?}"),
    }

    // The link comes back (a new connection to the same game server) and announces the
    // arena again: the replica resubscribes from its position.
    h.advance(400 * MS);
    let outputs = h.game(2, &["arena"]);
    assert!(
        to_game(&outputs, 2).contains(&FrontendToGame::Subscribe {
            world: arena(),
            since: position,
        }),
        "{outputs:?}"
    );
    let stats = h.frontend.stats();
    assert_eq!(
        (stats.worlds_resumed, stats.worlds_waiting_for_game),
        (1, 0)
    );
    // The game server sends what followed: both observers get it, byte for byte.
    let (frame, outputs) = h.game_batch(2, &arena(), &mut state, "c");
    for conn in [1, 2] {
        let sent: Vec<&Bytes> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::SendToClient { conn: c, bytes, .. } if c.0 == conn => Some(bytes),
                _ => None,
            })
            .collect();
        assert_eq!(sent, vec![&frame], "observer {conn}");
    }
    // Nothing expires when the grace would have: the world is hosted again.
    h.advance(5_000 * MS);
    let outputs = h.feed(Input::Timeout);
    assert!(
        !to_client(&outputs, 1)
            .iter()
            .any(|m| matches!(m, FrontendToClient::Unsubscribed { .. })),
        "{outputs:?}"
    );
    assert!(
        h.frontend
            .session(ConnId(1))
            .unwrap()
            .subscriptions()
            .contains(&arena())
    );
}

#[test]
fn a_connection_past_its_input_budget_is_closed_and_others_are_not() {
    let mut h = Harness::new(FrontendConfig {
        max_inputs_per_second: 10,
        input_burst: 5,
        ..FrontendConfig::default()
    });
    h.game(1, &["arena"]);
    h.client(1);
    h.client(2);
    // A burst of 5 passes.
    for _ in 0..5 {
        let outputs = h.feed(Input::ClientFrame(ConnId(1), input_frame(&arena(), 10)));
        assert_eq!(to_game(&outputs, 1).len(), 1, "{outputs:?}");
    }
    // The sixth at once is past the budget: Error{Overloaded}, and the connection closes.
    let outputs = h.feed(Input::ClientFrame(ConnId(1), input_frame(&arena(), 10)));
    // Not forwarded; the game server only hears that the session closed.
    assert!(
        matches!(
            &to_game(&outputs, 1)[..],
            [FrontendToGame::SessionClosed { .. }]
        ),
        "{outputs:?}"
    );
    match &to_client(&outputs, 1)[..] {
        [FrontendToClient::Error { code, text }] => {
            assert_eq!(*code, ErrorCode::Overloaded);
            assert_eq!(text, "more than 10 inputs a second (bursts of 5)");
        }
        other => panic!("{other:?}"),
    }
    // Closed for its input rate: the shell refuses its address for a while.
    assert!(outputs.contains(&Output::CloseClient(ConnId(1), CloseReason::InputRate)));
    assert_eq!(h.frontend.stats().clients_closed_for_input_rate, 1);
    // The other connection has a budget of its own; and the rate refills it: 10 a second.
    for _ in 0..5 {
        let outputs = h.feed(Input::ClientFrame(ConnId(2), input_frame(&arena(), 10)));
        assert_eq!(to_game(&outputs, 1).len(), 1, "{outputs:?}");
    }
    h.advance(100 * MS);
    let outputs = h.feed(Input::ClientFrame(ConnId(2), input_frame(&arena(), 10)));
    assert_eq!(to_game(&outputs, 1).len(), 1, "{outputs:?}");
    assert_eq!(h.frontend.stats().connections, 1);
}

/// The wall-clock time the join tests' front-ends are told at `now` zero (unix seconds).
const T0: u64 = 1_800_000_000;

/// A front-end checking join tokens of `keys` (anonymous observers as given), told the
/// wall-clock time (`T0` at `now` zero), with `arena` and `other` hosted and two clients.
fn join_harness(keys: &[&crate::JoinSigner], anonymous_observers: bool) -> Harness {
    let mut h = Harness::new(FrontendConfig {
        join_keys: keys.iter().map(|signer| signer.public_key()).collect(),
        anonymous_observers,
        ..FrontendConfig::default()
    });
    h.feed(Input::WallClock {
        unix_millis: T0 * 1000,
    });
    h.game(1, &["arena", "other"]);
    h.client(1);
    h.client(2);
    h
}

fn token(signer: &crate::JoinSigner, world: &WorldId, role: Role, expires_unix: u64) -> Bytes {
    signer
        .sign(&flotilla_wire::JoinClaims {
            expires_unix,
            role,
            world: world.clone(),
            subject: "ada".into(),
        })
        .unwrap()
}

fn join(h: &mut Harness, conn: u64, token: Bytes) -> Vec<FrontendToClient> {
    let outputs = h.feed(Input::ClientFrame(
        ConnId(conn),
        raw(&ClientToFrontend::Join { token }),
    ));
    to_client(&outputs, conn)
}

/// Sends an input for `world` from `conn`; returns what reached game 1 and what `conn` got.
fn play(
    h: &mut Harness,
    conn: u64,
    world: &WorldId,
) -> (Vec<FrontendToGame>, Vec<FrontendToClient>) {
    let outputs = h.feed(Input::ClientFrame(
        ConnId(conn),
        raw(&ClientToFrontend::Input {
            world: world.clone(),
            payload: Bytes::from_static(b"J"),
        }),
    ));
    (to_game(&outputs, 1), to_client(&outputs, conn))
}

/// Asserts that `answer` is the refusal of an input for `world`.
fn assert_input_refused(answer: &[FrontendToClient], world: &WorldId, why: &str) {
    match answer {
        [
            FrontendToClient::Refused {
                request: FrameType::Input,
                world: Some(w),
                code: ErrorCode::NotAllowed,
                text,
            },
        ] if w == world => assert!(text.contains(why), "{text}"),
        other => panic!("not an input refusal for {world}: {other:?}"),
    }
}

use flotilla_wire::Role;

#[test]
fn without_join_keys_nothing_needs_a_token() {
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    h.client(1);
    let (to_game, answer) = play(&mut h, 1, &arena());
    assert_eq!(to_game.len(), 1);
    assert!(answer.is_empty());
    // A token is read (not checked, the front-end has no key) and answered `Joined`.
    let signer = crate::JoinSigner::generate().unwrap();
    let answer = join(&mut h, 1, token(&signer, &arena(), Role::Observer, 5));
    assert_eq!(
        answer,
        vec![FrontendToClient::Joined {
            world: arena(),
            role: Role::Observer,
            expires_unix: 5
        }]
    );
    assert_eq!(play(&mut h, 1, &arena()).0.len(), 1, "still allowed");
    let answer = join(&mut h, 1, Bytes::from_static(b"junk"));
    assert!(matches!(
        &answer[..],
        [FrontendToClient::Refused {
            request: FrameType::Join,
            world: None,
            ..
        }]
    ));
    assert_eq!(h.frontend.stats().inputs_not_allowed, 0);
}

#[test]
fn with_join_keys_only_a_player_token_of_the_world_lets_inputs_through() {
    let signer = crate::JoinSigner::generate().unwrap();
    let mut h = join_harness(&[&signer], true);
    // No token: refused, not forwarded, the connection stays open.
    let (to_game, answer) = play(&mut h, 1, &arena());
    assert!(to_game.is_empty());
    assert_input_refused(&answer, &arena(), "no join token for arena");
    assert_eq!(h.frontend.stats().connections, 2);
    // Observers watch without a token (anonymous observers), and see no input.
    let outputs = h.subscribe(2, &arena(), None);
    assert!(to_client(&outputs, 2).is_empty(), "{outputs:?}");

    // An observer token does not let inputs through.
    let answer = join(&mut h, 1, token(&signer, &arena(), Role::Observer, T0 + 60));
    assert_eq!(
        answer,
        vec![FrontendToClient::Joined {
            world: arena(),
            role: Role::Observer,
            expires_unix: T0 + 60
        }]
    );
    let (to_game, answer) = play(&mut h, 1, &arena());
    assert!(to_game.is_empty());
    assert_input_refused(&answer, &arena(), "is an observer token");

    // A player token for another world does not either.
    join(
        &mut h,
        1,
        token(
            &signer,
            &WorldId::new("other").unwrap(),
            Role::Player,
            T0 + 60,
        ),
    );
    let (to_game, answer) = play(&mut h, 1, &arena());
    assert!(to_game.is_empty());
    assert_input_refused(&answer, &arena(), "is an observer token");

    // A player token for the world does, on its connection only.
    let answer = join(&mut h, 1, token(&signer, &arena(), Role::Player, T0 + 60));
    assert!(matches!(
        &answer[..],
        [FrontendToClient::Joined {
            role: Role::Player,
            ..
        }]
    ));
    let (to_game, answer) = play(&mut h, 1, &arena());
    assert!(answer.is_empty(), "{answer:?}");
    assert!(
        matches!(&to_game[..], [FrontendToGame::Input { world, .. }] if *world == arena()),
        "{to_game:?}"
    );
    let (to_game, answer) = play(&mut h, 2, &arena());
    assert!(to_game.is_empty());
    assert_input_refused(&answer, &arena(), "no join token");
    assert_eq!(play(&mut h, 1, &WorldId::new("other").unwrap()).0.len(), 1);

    // Until it expires (a minute later, by the wall clock the front-end was told).
    h.advance(Duration::from_secs(59));
    assert_eq!(play(&mut h, 1, &arena()).0.len(), 1);
    h.advance(Duration::from_secs(1));
    let (to_game, answer) = play(&mut h, 1, &arena());
    assert!(to_game.is_empty());
    assert_input_refused(&answer, &arena(), "has expired");
    let stats = h.frontend.stats();
    assert_eq!(
        (
            stats.joins_accepted,
            stats.joins_refused,
            stats.inputs_not_allowed
        ),
        (3, 0, 5)
    );
    assert_eq!(stats.inputs_routed, 3);
    // Inputs for `$directory` are still just dropped.
    let (to_game, answer) = play(&mut h, 1, &WorldId::DIRECTORY);
    assert!(to_game.is_empty() && answer.is_empty());
}

#[test]
fn expired_forged_and_foreign_tokens_are_refused_and_a_second_key_is_accepted() {
    let first = crate::JoinSigner::generate().unwrap();
    let second = crate::JoinSigner::generate().unwrap();
    let stranger = crate::JoinSigner::generate().unwrap();
    let mut h = join_harness(&[&first, &second], true);
    let refused = |answer: Vec<FrontendToClient>, why: &str| match &answer[..] {
        [
            FrontendToClient::Refused {
                request: FrameType::Join,
                code: ErrorCode::NotAllowed,
                text,
                ..
            },
        ] => assert!(text.contains(why), "{text} vs {why}"),
        other => panic!("not a join refusal: {other:?}"),
    };
    refused(
        join(&mut h, 1, token(&first, &arena(), Role::Player, T0)),
        "expired 0 s ago",
    );
    refused(
        join(&mut h, 1, token(&stranger, &arena(), Role::Player, T0 + 60)),
        "does not verify",
    );
    let mut forged = token(&first, &arena(), Role::Observer, T0 + 60).to_vec();
    forged[9] = Role::Player.to_u8(); // observer made player: the signature breaks
    refused(join(&mut h, 1, Bytes::from(forged)), "does not verify");
    refused(join(&mut h, 1, Bytes::from_static(&[1; 20])), "malformed");
    refused(
        join(
            &mut h,
            1,
            token(&first, &WorldId::DIRECTORY, Role::Player, T0 + 60),
        ),
        "front-end's own",
    );
    assert!(play(&mut h, 1, &arena()).0.is_empty(), "nothing granted");
    // Signed by the second configured key: accepted.
    let answer = join(&mut h, 1, token(&second, &arena(), Role::Player, T0 + 60));
    assert!(
        matches!(&answer[..], [FrontendToClient::Joined { .. }]),
        "{answer:?}"
    );
    assert_eq!(play(&mut h, 1, &arena()).0.len(), 1);
    let stats = h.frontend.stats();
    assert_eq!((stats.joins_accepted, stats.joins_refused), (1, 5));
    assert_eq!(stats.connections, 2, "refusals close nothing");
}

#[test]
fn a_front_end_that_does_not_know_the_time_refuses_every_token() {
    let signer = crate::JoinSigner::generate().unwrap();
    let mut h = Harness::new(FrontendConfig {
        join_keys: vec![signer.public_key()],
        ..FrontendConfig::default()
    });
    h.game(1, &["arena"]);
    h.client(1);
    let answer = join(&mut h, 1, token(&signer, &arena(), Role::Player, u64::MAX));
    assert!(
        matches!(&answer[..], [FrontendToClient::Refused { text, .. }] if text.contains("does not know the time")),
        "{answer:?}"
    );
    // Told the time (at 10 s after its origin), it checks expiries against it.
    h.advance(Duration::from_secs(10));
    h.feed(Input::WallClock {
        unix_millis: T0 * 1000,
    });
    assert_eq!(h.frontend.unix_time(h.now), Some(T0));
    h.advance(Duration::from_millis(2_500));
    assert_eq!(h.frontend.unix_time(h.now), Some(T0 + 2));
    let answer = join(&mut h, 1, token(&signer, &arena(), Role::Player, T0 + 3));
    assert!(
        matches!(&answer[..], [FrontendToClient::Joined { .. }]),
        "{answer:?}"
    );
    assert_eq!(play(&mut h, 1, &arena()).0.len(), 1);
}

#[test]
fn without_anonymous_observers_watching_needs_a_token_but_the_directory_does_not() {
    let signer = crate::JoinSigner::generate().unwrap();
    let mut h = join_harness(&[&signer], false);
    let outputs = h.subscribe(1, &arena(), None);
    match &to_client(&outputs, 1)[..] {
        [FrontendToClient::Unsubscribed { world, code, text }] => {
            assert_eq!((world, *code), (&arena(), ErrorCode::NotAllowed));
            assert!(text.contains("no join token"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(to_game(&outputs, 1).is_empty(), "nothing asked upstream");
    assert!(h.frontend.replica(&arena()).is_none());
    // The directory is open to all.
    let outputs = h.subscribe(1, &WorldId::DIRECTORY, None);
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Snapshot { .. }]
    ));
    // An observer token opens the world (not to inputs).
    join(&mut h, 1, token(&signer, &arena(), Role::Observer, T0 + 60));
    let outputs = h.subscribe(1, &arena(), None);
    assert!(to_client(&outputs, 1).is_empty(), "{outputs:?}");
    assert!(matches!(
        &to_game(&outputs, 1)[..],
        [FrontendToGame::Subscribe { .. }]
    ));
    assert!(play(&mut h, 1, &arena()).0.is_empty());
    // A player token opens it too.
    join(&mut h, 2, token(&signer, &arena(), Role::Player, T0 + 60));
    let outputs = h.subscribe(2, &arena(), None);
    assert!(to_client(&outputs, 2).is_empty(), "{outputs:?}");
    assert_eq!(h.frontend.stats().subscribes_not_allowed, 1);
}

#[test]
fn joins_past_their_budget_close_the_connection() {
    let signer = crate::JoinSigner::generate().unwrap();
    let mut h = join_harness(&[&signer], true);
    let garbage = Bytes::from_static(b"garbage");
    for _ in 0..crate::JOIN_BURST {
        assert_eq!(join(&mut h, 1, garbage.clone()).len(), 1);
    }
    let outputs = h.feed(Input::ClientFrame(
        ConnId(1),
        raw(&ClientToFrontend::Join { token: garbage }),
    ));
    assert!(outputs.contains(&Output::CloseClient(ConnId(1), CloseReason::InputRate)));
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Error { code: ErrorCode::Overloaded, text }] if text.contains("joins a second")
    ));
}

/// Plays the shell for `conn`'s queue, which is never written: frames are queued, and
/// `DropQueuedBatches` removes the droppable ones (reported back as discarded). Other
/// connections' frames are handed to `others`.
fn queue_without_writing(
    h: &mut Harness,
    conn: u64,
    outputs: Vec<Output>,
    queue: &mut Vec<(Bytes, bool)>,
    others: &mut Vec<Output>,
) {
    let mut work = std::collections::VecDeque::from(outputs);
    while let Some(output) = work.pop_front() {
        match output {
            Output::SendToClient {
                conn: to,
                bytes,
                droppable,
            } if to.0 == conn => queue.push((bytes, droppable)),
            Output::DropQueuedBatches(to) if to.0 == conn => {
                let dropped: usize = queue
                    .iter()
                    .filter(|(_, droppable)| *droppable)
                    .map(|(bytes, _)| bytes.len())
                    .sum();
                queue.retain(|(_, droppable)| !droppable);
                work.extend(h.feed(Input::ClientDiscarded(to, dropped)));
            }
            other => others.push(other),
        }
    }
}

#[test]
fn a_backed_up_observer_gets_the_latest_state_in_place_of_its_queued_batches() {
    let coalesce_above = 2_000;
    let mut h = Harness::new(FrontendConfig {
        coalesce_above,
        ..FrontendConfig::default()
    });
    h.game(1, &["arena"]);
    h.client(1); // its socket never takes anything
    h.client(2); // writes everything at once
    h.subscribe(1, &arena(), None);
    h.subscribe(2, &arena(), None);
    let mut state = WorldState::new(1);
    let mut queue = Vec::new();
    let mut others = Vec::new();
    let outputs = h.game_snapshot(1, &arena(), &state);
    queue_without_writing(&mut h, 1, outputs, &mut queue, &mut others);
    // Queued before the model started (the welcome): the machine counts it too.
    let before: usize = h.frontend.session(ConnId(1)).unwrap().queued_bytes()
        - queue.iter().map(|(bytes, _)| bytes.len()).sum::<usize>();
    let mut fast_batches = 0;
    let mut largest_queue = 0;
    for _ in 0..200 {
        // A 20 Hz world: the backed-up queue waits longer and longer.
        h.advance(50 * MS);
        let (_, outputs) = h.game_batch(1, &arena(), &mut state, "score");
        others.clear();
        queue_without_writing(&mut h, 1, outputs, &mut queue, &mut others);
        for output in &others {
            if let Output::SendToClient { conn, bytes, .. } = output
                && conn.0 == 2
            {
                fast_batches += to_client(std::slice::from_ref(output), 2).len();
                h.feed(Input::ClientDrained(ConnId(2), bytes.len()));
            }
        }
        let queued: usize = queue.iter().map(|(bytes, _)| bytes.len()).sum();
        assert_eq!(
            h.frontend.session(ConnId(1)).unwrap().queued_bytes(),
            before + queued,
            "the machine's count follows the shell's queue"
        );
        largest_queue = largest_queue.max(queued);
    }
    // The fast observer got every batch; the backed-up one never held much more than the
    // threshold: its batches were replaced by the latest state again and again.
    assert!(fast_batches >= 200, "{fast_batches}");
    let stats = h.frontend.stats();
    assert!(stats.coalesced >= 10, "{stats:?}");
    assert_eq!(stats.congestions, 0, "never near the send budget");
    assert!(
        largest_queue < coalesce_above + 1_000,
        "{largest_queue} bytes queued"
    );
    // What it holds, written at last, leaves its replica equal to the game's state.
    let mut replica = flotilla_world::Replica::new(flotilla_world::ReplicaConfig::CLIENT);
    let mut decoder = Decoder::default();
    for (bytes, _) in &queue {
        decoder.feed(bytes);
    }
    while let Some(message) = decoder.next_message::<FrontendToClient>().unwrap() {
        match message {
            FrontendToClient::Snapshot { snapshot, .. } => replica.apply_snapshot(snapshot),
            FrontendToClient::ChangeBatch { batch, .. } => {
                replica.apply_batch(batch).unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        (replica.seq(), replica.digest()),
        (state.seq(), state.digest())
    );
}

/// When an observer whose queue is never written is first coalesced, with batches every
/// 5 ms: how long after its queue began to wait (`None`: not within 200 ms). The world
/// holds `big` bytes under another key, which the snapshot carries and the batches do not.
fn first_coalescing_after(config: FrontendConfig, big: usize) -> Option<Duration> {
    let mut h = Harness::new(config);
    h.game(1, &["arena"]);
    h.client(1); // its welcome waits unwritten from now on
    let waiting_since = h.now;
    h.subscribe(1, &arena(), None);
    let mut state = WorldState::new(1);
    {
        let mut tx = state.begin();
        tx.set("map".to_owned(), "m".repeat(big));
        tx.commit().unwrap();
    }
    let mut queue = Vec::new();
    let mut others = Vec::new();
    let outputs = h.game_snapshot(1, &arena(), &state);
    queue_without_writing(&mut h, 1, outputs, &mut queue, &mut others);
    for _ in 0..40 {
        h.advance(5 * MS);
        let (_, outputs) = h.game_batch(1, &arena(), &mut state, "score");
        queue_without_writing(&mut h, 1, outputs, &mut queue, &mut others);
        if h.frontend.stats().coalesced > 0 {
            return Some(h.now.saturating_duration_since(waiting_since));
        }
    }
    None
}

#[test]
fn a_queue_that_waited_20_ms_and_outweighs_one_snapshot_gives_way_to_the_latest_state() {
    // The queue holds the welcome and a snapshot of a 2,000-byte world from the start:
    // more than one fresh snapshot, less than two. It is coalesced at the first batch
    // after it has waited 20 ms, not before.
    let config = FrontendConfig {
        coalesce_above: 1,
        ..FrontendConfig::default()
    };
    assert_eq!(COALESCE_AFTER_WAITING, Duration::from_millis(20));
    assert_eq!(
        first_coalescing_after(config.clone(), 2_000),
        Some(COALESCE_AFTER_WAITING)
    );
    // A `coalesce_above` larger than the snapshot decides: at 4,000 B the same queue is
    // under it at 20 ms, and grows past it only batch by batch.
    let above = first_coalescing_after(
        FrontendConfig {
            coalesce_above: 4_000,
            ..config.clone()
        },
        2_000,
    );
    assert!(
        above.is_none_or(|after| after > COALESCE_AFTER_WAITING),
        "{above:?}"
    );
    // Off is off.
    assert_eq!(
        first_coalescing_after(
            FrontendConfig {
                coalesce_above: 0,
                ..config
            },
            2_000
        ),
        None
    );
}

#[test]
fn coalescing_off_queues_every_batch_up_to_the_send_budget() {
    every_batch_is_queued(FrontendConfig {
        coalesce_above: 0,
        ..FrontendConfig::default()
    });
}

#[test]
fn a_burst_of_batches_is_not_coalesced_for_an_observer_that_is_not_behind() {
    // Coalescing on, but the batches all arrive at the same instant: the queue has not
    // waited, whatever its size.
    every_batch_is_queued(FrontendConfig {
        coalesce_above: 1_000,
        ..FrontendConfig::default()
    });
}

/// 200 batches at one instant to an observer that writes nothing: each is queued.
fn every_batch_is_queued(config: FrontendConfig) {
    let mut h = Harness::new(config);
    h.game(1, &["arena"]);
    h.client(1);
    h.subscribe(1, &arena(), None);
    let mut state = WorldState::new(1);
    let mut queue = Vec::new();
    let mut others = Vec::new();
    let outputs = h.game_snapshot(1, &arena(), &state);
    queue_without_writing(&mut h, 1, outputs, &mut queue, &mut others);
    for _ in 0..200 {
        let (_, outputs) = h.game_batch(1, &arena(), &mut state, "score");
        queue_without_writing(&mut h, 1, outputs, &mut queue, &mut others);
    }
    assert_eq!(queue.len(), 201, "the first snapshot and every batch");
    assert_eq!(h.frontend.stats().coalesced, 0);
}

/// Change batches among `outputs` for `conn`: `(seq of each, the bytes of each output)`.
fn batches_to(outputs: &[Output], conn: u64) -> (Vec<u64>, Vec<Bytes>) {
    let mut seqs = Vec::new();
    let mut sends = Vec::new();
    for output in outputs {
        if let Output::SendToClient {
            conn: to, bytes, ..
        } = output
            && to.0 == conn
        {
            for message in decode_client(bytes) {
                if let FrontendToClient::ChangeBatch { batch, .. } = message {
                    seqs.push(batch.seq);
                }
            }
            sends.push(bytes.clone());
        }
    }
    (seqs, sends)
}

#[test]
fn a_blocked_observer_gets_the_batches_since_its_last_write_joined_and_shared_before_its_next_write()
 {
    let mut h = Harness::default_config();
    h.game(1, &["arena"]);
    let mut state = WorldState::new(1);
    for conn in [1, 2] {
        h.client(conn);
        h.subscribe(conn, &arena(), None);
    }
    h.game_snapshot(1, &arena(), &state);
    h.blocked.extend([1, 2]);
    // The first batch goes to each observer at once; the next four only move what they
    // are owed.
    let (_, outputs) = h.game_batch(1, &arena(), &mut state, "a");
    assert_eq!(batches_to(&outputs, 1).0, vec![1]);
    assert_eq!(batches_to(&outputs, 2).0, vec![1]);
    for key in ["b", "c", "d", "e"] {
        let (_, outputs) = h.game_batch(1, &arena(), &mut state, key);
        assert!(outputs.is_empty(), "{outputs:?}");
    }
    assert_eq!(
        h.frontend.replica(&arena()).unwrap().subscriber(ConnId(1)),
        Some(SubscriberState::Queued(Position { epoch: 1, seq: 1 }))
    );
    // Before each write: batches 2 to 5 in one buffer, the same one for both observers.
    let first = h.feed_alone(Input::ClientWriting(ConnId(1)));
    let second = h.feed_alone(Input::ClientWriting(ConnId(2)));
    let (seqs, sends) = batches_to(&first, 1);
    assert_eq!(seqs, vec![2, 3, 4, 5]);
    let (seqs, others) = batches_to(&second, 2);
    assert_eq!(seqs, vec![2, 3, 4, 5]);
    assert_eq!((sends.len(), others.len()), (1, 1));
    assert_eq!(
        sends[0].as_ptr(),
        others[0].as_ptr(),
        "one joined buffer, shared"
    );
    assert_eq!(h.frontend.stats().batches_forwarded, 10);
    // Caught up: a second write adds nothing, and the next batch goes out at once again.
    assert!(h.feed_alone(Input::ClientWriting(ConnId(1))).is_empty());
    assert_eq!(
        h.frontend.replica(&arena()).unwrap().subscriber(ConnId(1)),
        Some(SubscriberState::Live)
    );
    let (_, outputs) = h.game_batch(1, &arena(), &mut state, "f");
    assert_eq!(batches_to(&outputs, 1).0, vec![6]);
}

/// A front-end whose rings hold 4 batches, and observer 1 of the arena, synced, whose
/// socket takes nothing from now on; and the game's state.
fn blocked_observer_of_a_small_ring(config: FrontendConfig) -> (Harness, WorldState) {
    let mut h = Harness::new(FrontendConfig {
        ring: flotilla_world::RingLimits {
            max_batches: 4,
            max_bytes: 1 << 20,
        },
        ..config
    });
    h.game(1, &["arena"]);
    h.client(1);
    h.subscribe(1, &arena(), None);
    let state = WorldState::new(1);
    h.game_snapshot(1, &arena(), &state);
    h.blocked.insert(1);
    (h, state)
}

#[test]
fn a_blocked_observer_whose_batches_left_the_ring_gets_the_latest_state_before_its_next_write() {
    let (mut h, mut state) = blocked_observer_of_a_small_ring(FrontendConfig::default());
    for i in 0..10 {
        h.game_batch(1, &arena(), &mut state, &format!("k{i}"));
    }
    let outputs = h.feed_alone(Input::ClientWriting(ConnId(1)));
    let [FrontendToClient::Snapshot { snapshot, .. }] = &to_client(&outputs, 1)[..] else {
        panic!("{outputs:?}")
    };
    assert_eq!(
        (snapshot.seq, snapshot.digest()),
        (state.seq(), state.digest())
    );
    assert_eq!(h.frontend.stats().resyncs, 1);
}

#[test]
fn repeated_stalls_past_the_ring_never_pile_snapshots_up_past_the_send_budget() {
    let (mut h, mut state) = blocked_observer_of_a_small_ring(FrontendConfig {
        send_budget: 2_000,
        ..FrontendConfig::default()
    });
    let stall = |h: &mut Harness, state: &mut WorldState| {
        for i in 0..10 {
            h.game_batch(1, &arena(), state, &format!("k{i}"));
        }
        // The socket proved writable but takes nothing: only the top-up is queued.
        h.feed_alone(Input::ClientWriting(ConnId(1)))
    };
    // The first stall: its batches left the ring, a snapshot (about 1.2 KB) takes their
    // place.
    let outputs = stall(&mut h, &mut state);
    assert!(matches!(
        &to_client(&outputs, 1)[..],
        [FrontendToClient::Snapshot { .. }]
    ));
    assert_eq!(h.frontend.stats().resyncs, 1);
    // The second, with the first snapshot still unwritten: a second one would pass the
    // budget. The connection is congested instead and resynced once it drains.
    let outputs = stall(&mut h, &mut state);
    assert_eq!(outputs, vec![Output::DropQueuedBatches(ConnId(1))]);
    assert!(h.frontend.session(ConnId(1)).unwrap().queued_bytes() <= 2_000);
    assert_eq!(h.frontend.stats().congestions, 1);
    let queued = h.frontend.session(ConnId(1)).unwrap().queued_bytes();
    h.feed_alone(Input::ClientDiscarded(ConnId(1), queued));
    let outputs = h.feed_alone(Input::ClientDrained(ConnId(1), 0));
    let [FrontendToClient::Snapshot { snapshot, .. }] = &to_client(&outputs, 1)[..] else {
        panic!("{outputs:?}")
    };
    assert_eq!(
        (snapshot.seq, snapshot.digest()),
        (state.seq(), state.digest())
    );
}

/// One observer of the property test below: what its shell queued and what it wrote.
#[derive(Default)]
struct ModelObserver {
    queue: Vec<(Bytes, bool)>,
    written: Vec<Bytes>,
}

/// Routes `outputs` into the observers' queues as a shell would (dropping droppable frames
/// on `DropQueuedBatches` and reporting them); other outputs are ignored.
fn route_to_queues(h: &mut Harness, outputs: Vec<Output>, observers: &mut [ModelObserver]) {
    let mut work = std::collections::VecDeque::from(outputs);
    while let Some(output) = work.pop_front() {
        match output {
            Output::SendToClient {
                conn,
                bytes,
                droppable,
            } => {
                if let Some(observer) = observers.get_mut(conn.0 as usize - 1) {
                    observer.queue.push((bytes, droppable));
                }
            }
            Output::DropQueuedBatches(conn) => {
                if let Some(observer) = observers.get_mut(conn.0 as usize - 1) {
                    let dropped: usize = observer
                        .queue
                        .iter()
                        .filter(|(_, droppable)| *droppable)
                        .map(|(bytes, _)| bytes.len())
                        .sum();
                    observer.queue.retain(|(_, droppable)| !droppable);
                    work.extend(h.feed_alone(Input::ClientDiscarded(conn, dropped)));
                }
            }
            _ => {}
        }
    }
}

/// The shell writes observer `index`: tells the machine, queues the top-up, writes the
/// whole queue and reports it.
fn write_observer(h: &mut Harness, index: usize, observers: &mut [ModelObserver]) {
    let conn = ConnId(index as u64 + 1);
    let outputs = h.feed_alone(Input::ClientWriting(conn));
    route_to_queues(h, outputs, observers);
    let observer = &mut observers[index];
    let written: usize = observer.queue.iter().map(|(bytes, _)| bytes.len()).sum();
    observer
        .written
        .extend(observer.queue.drain(..).map(|(bytes, _)| bytes));
    let outputs = h.feed_alone(Input::ClientDrained(conn, written));
    route_to_queues(h, outputs, observers);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever the order of batches and writes (and whether coalescing is on), every
    /// observer's written stream applies without a gap, and once all are written its
    /// replica is the game's state.
    #[test]
    fn every_observer_converges_whatever_the_writes(
        steps in proptest::collection::vec(0usize..6, 1..300),
        coalesce in proptest::bool::ANY,
    ) {
        let mut h = Harness::new(FrontendConfig {
            coalesce_above: if coalesce { 600 } else { 0 },
            send_budget: 4_000,
            ring: flotilla_world::RingLimits { max_batches: 16, max_bytes: 1 << 20 },
            ..FrontendConfig::default()
        });
        h.game(1, &["arena"]);
        let mut observers: Vec<ModelObserver> = (0..3).map(|_| ModelObserver::default()).collect();
        for conn in 1..=3u64 {
            h.client(conn);
            h.blocked.insert(conn);
            let outputs = h.subscribe(conn, &arena(), None);
            route_to_queues(&mut h, outputs, &mut observers);
        }
        let mut state = WorldState::new(1);
        let outputs = h.game_snapshot(1, &arena(), &state);
        route_to_queues(&mut h, outputs, &mut observers);
        for (i, step) in steps.iter().enumerate() {
            match step {
                0..=2 => {
                    h.advance(30 * MS);
                    let (_, outputs) = h.game_batch(1, &arena(), &mut state, &format!("k{}", i % 7));
                    route_to_queues(&mut h, outputs, &mut observers);
                }
                index => write_observer(&mut h, index - 3, &mut observers),
            }
        }
        for _ in 0..3 {
            for index in 0..3 {
                write_observer(&mut h, index, &mut observers);
            }
        }
        for observer in &observers {
            let mut replica = flotilla_world::Replica::new(flotilla_world::ReplicaConfig::CLIENT);
            let mut decoder = Decoder::default();
            for bytes in &observer.written {
                decoder.feed(bytes);
            }
            while let Some(message) = decoder.next_message::<FrontendToClient>().unwrap() {
                match message {
                    FrontendToClient::Snapshot { snapshot, .. } => replica.apply_snapshot(snapshot),
                    FrontendToClient::ChangeBatch { batch, .. } => {
                        let applied = replica.apply_batch(batch);
                        proptest::prop_assert!(applied.is_ok(), "{applied:?}");
                    }
                    _ => {}
                }
            }
            proptest::prop_assert_eq!(
                (replica.seq(), replica.digest()),
                (state.seq(), state.digest())
            );
        }
    }
}
