//! The demo's game: "arena" worlds, entities moving on a 2D field at 20 ticks/s.
//!
//! Non-player entities (`n/<i>`) wander at random; a player joins by sending the
//! input `J` and gets its own entity (`p/<session>`), steers it with `S dx dy`
//! (two signed bytes), and leaves when its session closes. Every tick each world
//! commits one change batch with the entities that moved. Values are 8 bytes:
//! `x` and `y` as little-endian `f32`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_game::{GameEvent, GameEvents, GameServer, SessionId, WorldHandle, WorldId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Side of the square field.
const FIELD: f32 = 1000.0;

/// Commit times of recent batches per world, to measure observer lag.
#[derive(Default)]
pub struct CommitLog {
    recent: Mutex<HashMap<String, VecDeque<(u64, Instant)>>>,
}

impl CommitLog {
    const KEEP: usize = 1024;

    fn record(&self, world: &str, seq: u64, at: Instant) {
        if let Ok(mut map) = self.recent.lock() {
            let ring = map.entry(world.to_owned()).or_default();
            if ring.len() == Self::KEEP {
                ring.pop_front();
            }
            ring.push_back((seq, at));
        }
    }

    /// When batch `seq` of `world` was committed, if still remembered.
    pub fn committed_at(&self, world: &str, seq: u64) -> Option<Instant> {
        let map = self.recent.lock().ok()?;
        let ring = map.get(world)?;
        let first = ring.front()?.0;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        ring.get(index)
            .filter(|(s, _)| *s == seq)
            .map(|(_, at)| *at)
    }
}

#[derive(Clone, Copy)]
struct Entity {
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
}

impl Entity {
    fn step(&mut self, dt: f32) {
        self.x += self.vx * dt;
        self.y += self.vy * dt;
        if !(0.0..=FIELD).contains(&self.x) {
            self.vx = -self.vx;
            self.x = self.x.clamp(0.0, FIELD);
        }
        if !(0.0..=FIELD).contains(&self.y) {
            self.vy = -self.vy;
            self.y = self.y.clamp(0.0, FIELD);
        }
    }

    fn encode(&self) -> Bytes {
        let mut v = Vec::with_capacity(8);
        v.extend_from_slice(&self.x.to_le_bytes());
        v.extend_from_slice(&self.y.to_le_bytes());
        Bytes::from(v)
    }
}

struct Arena {
    handle: WorldHandle,
    npcs: Vec<Entity>,
    players: HashMap<SessionId, Entity>,
    /// Players whose session closed, with when their entity goes: a session that opens
    /// again before then (its client failed over to another front-end, whose
    /// `SessionOpened` can arrive after the old front-end's `SessionClosed`) keeps it.
    leaving: HashMap<SessionId, Instant>,
    left: Vec<SessionId>,
}

/// How long a player's entity outlives its closed session (see `Arena::leaving`): a
/// client that fails over is back within a second or two.
const RESUME_GRACE: Duration = Duration::from_secs(5);

/// Runs the arena game on `server` until `stop` turns true: hosts `worlds` worlds
/// named `arena-1`…, each with `npcs` wandering entities, ticking every `tick`.
pub async fn run(
    server: Arc<GameServer>,
    mut events: GameEvents,
    worlds: usize,
    npcs: usize,
    tick: Duration,
    commits: Arc<CommitLog>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut arenas = Vec::new();
    for i in 1..=worlds {
        let id = WorldId::new(&format!("arena-{i}"))?;
        let info = Bytes::from(format!(
            "arena {i}: {npcs} wanderers, field {FIELD}x{FIELD}"
        ));
        let handle = server.add_world(id, info)?;
        let npcs = (0..npcs)
            .map(|_| Entity {
                x: rng.random_range(0.0..FIELD),
                y: rng.random_range(0.0..FIELD),
                vx: rng.random_range(-50.0..50.0),
                vy: rng.random_range(-50.0..50.0),
            })
            .collect();
        arenas.push(Arena {
            handle,
            npcs,
            players: HashMap::new(),
            leaving: HashMap::new(),
            left: Vec::new(),
        });
    }
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let dt = tick.as_secs_f32();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return Ok(());
        }
        while let Some(event) = events.try_recv() {
            apply_event(&server, &mut arenas, event);
        }
        let now = Instant::now();
        for arena in &mut arenas {
            let gone: Vec<SessionId> = arena
                .leaving
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(session, _)| *session)
                .collect();
            for session in gone {
                arena.leaving.remove(&session);
                if arena.players.remove(&session).is_some() {
                    arena.left.push(session);
                }
            }
            let mut tx = arena.handle.begin();
            for (i, npc) in arena.npcs.iter_mut().enumerate() {
                npc.step(dt);
                tx.set(format!("n/{i}"), npc.encode());
            }
            for (session, player) in arena.players.iter_mut() {
                player.step(dt);
                tx.set(format!("p/{}", session.0), player.encode());
            }
            for session in arena.left.drain(..) {
                tx.remove(format!("p/{}", session.0));
            }
            let at = Instant::now();
            match tx.commit() {
                Ok(Some(position)) => commits.record(arena.handle.id().as_str(), position.seq, at),
                Ok(None) => {}
                Err(e) => log::error!(world = arena.handle.id().as_str(); "commit failed: {e}"),
            }
        }
    }
}

fn apply_event(server: &GameServer, arenas: &mut [Arena], event: GameEvent) {
    match event {
        GameEvent::Input {
            world,
            session,
            payload,
        } => {
            let Some(arena) = arenas.iter_mut().find(|a| *a.handle.id() == world) else {
                return;
            };
            match payload.first() {
                Some(b'J') => {
                    arena.players.insert(
                        session,
                        Entity {
                            x: FIELD / 2.0,
                            y: FIELD / 2.0,
                            vx: 0.0,
                            vy: 0.0,
                        },
                    );
                    let hello = Bytes::from(format!("you are p/{}", session.0));
                    if let Err(e) = server.send_output(&world, session, hello) {
                        log::warn!("output to session {} failed: {e}", session.0);
                    }
                }
                Some(b'S') if payload.len() >= 3 => {
                    if let Some(p) = arena.players.get_mut(&session) {
                        p.vx = f32::from(payload[1] as i8) * 2.0;
                        p.vy = f32::from(payload[2] as i8) * 2.0;
                    }
                }
                _ => log::warn!(world = world.as_str(); "unknown input from session {}", session.0),
            }
        }
        GameEvent::SessionClosed { session } => {
            let at = Instant::now() + RESUME_GRACE;
            for arena in arenas.iter_mut() {
                if arena.players.contains_key(&session) {
                    arena.leaving.insert(session, at);
                }
            }
        }
        GameEvent::SessionOpened { session, .. } => {
            // Back (on another front-end, or the same one): the entity stays.
            for arena in arenas.iter_mut() {
                arena.leaving.remove(&session);
            }
        }
        GameEvent::FrontendConnected { .. } | GameEvent::FrontendDisconnected { .. } => {}
    }
}
