//! The front-end machines' cost per routed message, without any I/O.
//!
//! - `route/input_and_output`: one client input routed to the game server and the game's
//!   output routed back to the client (two routed messages per iteration).
//! - `fanout/batch_to_1000_observers`: one 100-byte change batch applied to a replica and
//!   queued for 1,000 observers, each written after every batch (a front-end that keeps
//!   up).
//! - `fanout/10_batches_per_write_to_1000_observers`: ten batches applied, then each of
//!   the 1,000 observers written once (a front-end whose writes fall behind its reads: the
//!   last nine are added to each queue in one piece before the write); throughput counts
//!   the 10,000 deliveries.
//! - `checkpoint/round_trip_10000_observers`: the pause a rotating recording costs at each
//!   new file: the whole machine (10,000 subscribed observers, a world with a full ring)
//!   written as a checkpoint and restored from it.
// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_frontend::{ConnId, Frontend, FrontendConfig, GameId, Input, Output};
use flotilla_wire::{
    ClientToFrontend, Decoder, FrontendToClient, GameToFrontend, Message, RawFrame, SnapshotPart,
    WorldId,
};
use flotilla_world::WorldState;

fn raw<M: Message>(message: &M) -> RawFrame {
    RawFrame::parse(message.encode_to_bytes(), 1 << 20).expect("valid frame")
}

fn drain(frontend: &mut Frontend) -> usize {
    let mut queued = 0;
    while let Some(output) = frontend.poll_output() {
        if let Output::SendToClient { bytes, .. } = output {
            queued += bytes.len();
        }
    }
    queued
}

/// A front-end with one game server hosting `arena` and `clients` welcomed clients.
fn setup(clients: u64) -> (Frontend, WorldId, Vec<Bytes>) {
    let mut frontend = Frontend::new(&FrontendConfig::default(), 1);
    let now = flotilla_conn::Instant::ZERO;
    let arena = WorldId::new("arena").expect("world id");
    frontend.handle(now, Input::GameConnected(GameId(1)));
    frontend.handle(
        now,
        Input::GameFrame(
            GameId(1),
            raw(&GameToFrontend::Welcome {
                version: 1,
                server_id: "game".into(),
            }),
        ),
    );
    frontend.handle(
        now,
        Input::GameFrame(
            GameId(1),
            raw(&GameToFrontend::WorldAdded {
                world: arena.clone(),
                info: Bytes::new(),
            }),
        ),
    );
    let mut tokens = Vec::new();
    for conn in 1..=clients {
        frontend.handle(now, Input::ClientConnected(ConnId(conn)));
        frontend.handle(
            now,
            Input::ClientFrame(
                ConnId(conn),
                raw(&ClientToFrontend::Hello {
                    version: 1,
                    session_token: None,
                    client_name: "bench".into(),
                }),
            ),
        );
        while let Some(output) = frontend.poll_output() {
            if let Output::SendToClient { bytes, .. } = output {
                let mut decoder = Decoder::default();
                decoder.feed(&bytes);
                if let Ok(Some(FrontendToClient::Welcome { session_token, .. })) =
                    decoder.next_message()
                {
                    tokens.push(session_token);
                }
            }
        }
        frontend.handle(now, Input::ClientDrained(ConnId(conn), 1 << 20));
    }
    (frontend, arena, tokens)
}

fn session_of(token: &Bytes) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&token[..8]);
    u64::from_be_bytes(id)
}

fn route(c: &mut Criterion) {
    let (mut frontend, arena, tokens) = setup(1);
    let session = flotilla_wire::SessionId(session_of(&tokens[0]));
    let input = raw(&ClientToFrontend::Input {
        world: arena.clone(),
        payload: Bytes::from_static(b"steer:left,speed:3"),
    });
    let output = raw(&GameToFrontend::Output {
        world: arena,
        session,
        payload: Bytes::from_static(b"ack:42"),
    });
    let now = flotilla_conn::Instant::from_millis(1);
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(2));
    group.bench_function("input_and_output", |b| {
        b.iter(|| {
            frontend.handle(now, Input::ClientFrame(ConnId(1), input.clone()));
            let mut sent = 0;
            while let Some(out) = frontend.poll_output() {
                sent += 1;
                black_box(out);
            }
            frontend.handle(now, Input::GameFrame(GameId(1), output.clone()));
            let queued = drain(&mut frontend);
            frontend.handle(now, Input::ClientDrained(ConnId(1), queued));
            black_box(sent)
        })
    });
    group.finish();
}

/// A front-end whose `observers` clients all watch `arena`, the world's snapshot applied.
fn subscribed(observers: u64) -> (Frontend, WorldId, WorldState, flotilla_conn::Instant) {
    let (mut frontend, arena, _) = setup(observers);
    let now = flotilla_conn::Instant::from_millis(1);
    for conn in 1..=observers {
        frontend.handle(
            now,
            Input::ClientFrame(
                ConnId(conn),
                raw(&ClientToFrontend::Subscribe {
                    world: arena.clone(),
                    since: None,
                }),
            ),
        );
    }
    let world = WorldState::new(9);
    frontend.handle(
        now,
        Input::GameFrame(
            GameId(1),
            raw(&GameToFrontend::Snapshot {
                world: arena.clone(),
                part: SnapshotPart::Whole,
                snapshot: world.snapshot(),
            }),
        ),
    );
    (frontend, arena, world, now)
}

fn fanout(c: &mut Criterion) {
    const OBSERVERS: u64 = 1000;
    let (mut frontend, arena, mut world, now) = subscribed(OBSERVERS);
    drain(&mut frontend);
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(OBSERVERS));
    let mut counter: u64 = 0;
    group.bench_function("batch_to_1000_observers", |b| {
        b.iter(|| {
            counter += 1;
            let mut tx = world.begin();
            tx.set("entity/1", format!("{counter:0100}"));
            let batch = tx.commit().expect("a change");
            let frame = RawFrame::parse(flotilla_wire::change_batch_frame(&arena, &batch), 1 << 20)
                .expect("valid frame");
            frontend.handle(now, Input::GameFrame(GameId(1), frame));
            let mut per_conn = 0;
            while let Some(output) = frontend.poll_output() {
                if let Output::SendToClient { bytes, .. } = output {
                    per_conn = bytes.len();
                }
            }
            // Every observer is written (the machine is told first, as the shell does).
            for conn in 1..=OBSERVERS {
                frontend.handle(now, Input::ClientWriting(ConnId(conn)));
                frontend.handle(now, Input::ClientDrained(ConnId(conn), per_conn));
            }
        })
    });
    group.throughput(Throughput::Elements(OBSERVERS * 10));
    group.bench_function("10_batches_per_write_to_1000_observers", |b| {
        b.iter(|| {
            for _ in 0..10 {
                counter += 1;
                let mut tx = world.begin();
                tx.set("entity/1", format!("{counter:0100}"));
                let batch = tx.commit().expect("a change");
                let frame =
                    RawFrame::parse(flotilla_wire::change_batch_frame(&arena, &batch), 1 << 20)
                        .expect("valid frame");
                frontend.handle(now, Input::GameFrame(GameId(1), frame));
            }
            let mut queued = vec![0usize; OBSERVERS as usize + 1];
            let take = |frontend: &mut Frontend, queued: &mut Vec<usize>| {
                while let Some(output) = frontend.poll_output() {
                    if let Output::SendToClient { conn, bytes, .. } = output
                        && let Some(slot) = queued.get_mut(conn.0 as usize)
                    {
                        *slot += bytes.len();
                    }
                }
            };
            take(&mut frontend, &mut queued);
            for conn in 1..=OBSERVERS {
                frontend.handle(now, Input::ClientWriting(ConnId(conn)));
                take(&mut frontend, &mut queued);
                let written = std::mem::take(&mut queued[conn as usize]);
                frontend.handle(now, Input::ClientDrained(ConnId(conn), written));
            }
        })
    });
    group.finish();
}

fn checkpoint(c: &mut Criterion) {
    const OBSERVERS: u64 = 10_000;
    let (mut frontend, arena, mut world, now) = subscribed(OBSERVERS);
    // A full ring: 256 batches of a 300-byte change.
    for tick in 0..300u32 {
        let mut tx = world.begin();
        tx.set(format!("entity/{}", tick % 50), format!("{tick:0300}"));
        let batch = tx.commit().expect("a change");
        let frame = RawFrame::parse(flotilla_wire::change_batch_frame(&arena, &batch), 1 << 20)
            .expect("valid frame");
        frontend.handle(now, Input::GameFrame(GameId(1), frame));
        drain(&mut frontend);
    }
    let size = frontend.checkpoint().expect("checkpoint").len();
    eprintln!("checkpoint of {OBSERVERS} observers: {size} bytes");
    let mut group = c.benchmark_group("checkpoint");
    group.sample_size(20);
    group.bench_function("round_trip_10000_observers", |b| {
        b.iter(|| {
            let bytes = frontend.checkpoint().expect("checkpoint");
            black_box(Frontend::restore(&bytes).expect("restore"))
        })
    });
    group.finish();
}

criterion_group!(benches, route, fanout, checkpoint);
criterion_main!(benches);
