//! The simulated fleet: a game server, front-ends and clients (the real machines) over a
//! virtual network, driven by one event queue in virtual time.
//!
//! The network is a set of TCP-like connections. Bytes sent at `t` arrive at
//! `t + latency + jitter`, never before bytes sent earlier on the same direction (TCP
//! keeps order); with probability `loss` a send is "lost once" and arrives a
//! retransmission timeout later. A partitioned front-end's traffic, either way, waits until
//! the partition heals (TCP retransmits; the keep-alive rules decide meanwhile). A killed
//! front-end process is gone at once: the kernel answers its peers with resets (after one
//! latency), and connection attempts to it are refused; with `silent_kills` the machine
//! vanishes instead, and peers only have silence.
//!
//! Every event handled is folded into a 64-bit FNV-1a digest (its time, kind, endpoint
//! and bytes), so two runs of one seed can be compared event by event.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use flotilla_client::{ClientInput, ClientMachine, ClientMachineConfig, ClientOutput, ReplicaMode};
use flotilla_conn::{Instant, KeepAliveConfig, Machine};
use flotilla_frontend::{
    ConnId, Frontend, FrontendConfig, GameId, GameLinkKeeper, Heard, Input, KeeperAction, Output,
    TokenKey,
};
use flotilla_wire::{CLIENT_MAX_FRAME_LEN, DEFAULT_MAX_FRAME_LEN, Decoder, WorldId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::game::{GameInput, GameNode, GameOutput};

/// How the network behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkModel {
    /// One-way latency.
    pub latency: Duration,
    /// Up to this much more, uniformly.
    pub jitter: Duration,
    /// Probability that a send needs one retransmission.
    pub loss: f64,
    /// The retransmission delay of a lost send.
    pub retransmit_after: Duration,
}

impl Default for NetworkModel {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            loss: 0.0,
            retransmit_after: Duration::from_millis(200),
        }
    }
}

/// Which node an endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Node {
    Game,
    Frontend(usize),
    Client(usize),
}

/// One simulated connection: `a` connected to `b`.
#[derive(Debug)]
struct Conn {
    a: Node,
    b: Node,
    /// The front-end's id for it: the client's `ConnId`, or the game link's `GameId`.
    frontend_local: u64,
    /// The latest delivery time scheduled in each direction (a→b, b→a).
    last: [Instant; 2],
    /// False once either side closed it or died.
    open: bool,
}

/// A client's story, for the report.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientLog {
    pub(crate) welcomes: u32,
    pub(crate) frontend_at_kill: Option<usize>,
    pub(crate) lost_at: Option<Instant>,
    pub(crate) back_at: Option<Instant>,
    pub(crate) resumed_after_kill: Option<bool>,
    pub(crate) losses: u32,
    pub(crate) batches: u64,
    pub(crate) gave_up: bool,
}

#[derive(Debug)]
enum Event {
    Deliver { conn: u64, to_b: bool, bytes: Bytes },
    Syn { conn: u64 },
    SynAck { conn: u64, ok: bool },
    Fin { conn: u64, to_b: bool },
    Wake { node: Node },
    Kill { frontend: usize },
    Partition { frontend: usize, until: Instant },
    Commit,
    StopCommits,
    ClientInputs,
    GameDial { frontend: usize },
}

/// A front-end's link to the game server, as its shell holds it.
struct GameConn {
    /// The simulated connection.
    sim_conn: u64,
    /// The front-end's `GameId` for it.
    game: u64,
    decoder: Decoder,
    /// The link's keep-alive, beside its socket as in the real shell (it pings the game
    /// server and closes a silent one; the front-end's machine does not).
    keeper: GameLinkKeeper,
}

struct FrontendNode {
    machine: Frontend,
    alive: bool,
    clients: HashMap<u64, (u64, Decoder)>,
    game_conn: Option<GameConn>,
    next_conn: u64,
    partitioned_until: Option<Instant>,
}

struct ClientNode {
    machine: ClientMachine,
    conn: Option<u64>,
    log: ClientLog,
}

/// What a fleet is made of.
#[derive(Debug, Clone)]
pub struct FleetShape {
    /// Front-ends.
    pub frontends: usize,
    /// Clients, each subscribed to the one world.
    pub clients: usize,
    /// The game's tick (one committed batch each).
    pub tick: Duration,
    /// Each client sends an input this often (zero: never).
    pub input_every: Duration,
    /// The network.
    pub network: NetworkModel,
    /// Killed front-ends vanish without resets (a machine lost, not a process).
    pub silent_kills: bool,
}

/// The simulated fleet.
pub(crate) struct Fleet {
    pub(crate) now: Instant,
    events: BTreeMap<(Instant, u64), Event>,
    sequence: u64,
    rng: SmallRng,
    network: NetworkModel,
    silent_kills: bool,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    pub(crate) game: GameNode,
    frontends: Vec<FrontendNode>,
    clients: Vec<ClientNode>,
    wake_at: HashMap<Node, Instant>,
    commits: bool,
    tick: Duration,
    input_every: Duration,
    world: WorldId,
    digest: u64,
    pub(crate) events_handled: u64,
    /// Inputs the applications handed to their clients.
    pub(crate) inputs_sent: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// A well-mixed seed for part `index` of the run (SplitMix64).
pub(crate) fn derive_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Fleet {
    /// A fleet of `shape` from `seed`; front-ends dial the game and clients connect at
    /// their first timeout (time zero).
    pub(crate) fn new(seed: u64, shape: &FleetShape) -> Result<Self, String> {
        let world = WorldId::new("arena").map_err(|e| e.to_string())?;
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&derive_seed(seed, 900 + i as u64).to_be_bytes());
        }
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let token_key = TokenKey::from_hex(&hex).map_err(|e| e.to_string())?;
        let frontends = (0..shape.frontends)
            .map(|i| {
                let config = FrontendConfig {
                    server_id: format!("fe-{i}"),
                    token_key: token_key.clone(),
                    ..FrontendConfig::default()
                };
                FrontendNode {
                    machine: Frontend::new(&config, derive_seed(seed, 1000 + i as u64)),
                    alive: true,
                    clients: HashMap::new(),
                    game_conn: None,
                    next_conn: 1,
                    partitioned_until: None,
                }
            })
            .collect::<Vec<_>>();
        let clients = (0..shape.clients)
            .map(|j| {
                let config = ClientMachineConfig {
                    client_name: format!("client-{j}"),
                    mode: ReplicaMode::Full,
                    ..ClientMachineConfig::default()
                };
                ClientMachine::new(
                    shape.frontends,
                    config,
                    derive_seed(seed, 100_000 + j as u64),
                )
                .map(|machine| ClientNode {
                    machine,
                    conn: None,
                    log: ClientLog::default(),
                })
                .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let game = GameNode::new(
            world.clone(),
            derive_seed(seed, 7),
            KeepAliveConfig::new(
                flotilla_wire::GAME_PING_INTERVAL,
                flotilla_wire::GAME_IDLE_TIMEOUT,
            ),
        );
        let mut fleet = Self {
            now: Instant::ZERO,
            events: BTreeMap::new(),
            sequence: 0,
            rng: SmallRng::seed_from_u64(derive_seed(seed, 1)),
            network: shape.network,
            silent_kills: shape.silent_kills,
            conns: HashMap::new(),
            next_conn: 1,
            game,
            frontends,
            clients,
            wake_at: HashMap::new(),
            commits: true,
            tick: shape.tick,
            input_every: shape.input_every,
            world,
            digest: FNV_OFFSET,
            events_handled: 0,
            inputs_sent: 0,
        };
        for i in 0..shape.frontends {
            fleet.schedule(Instant::ZERO, Event::GameDial { frontend: i });
        }
        for j in 0..shape.clients {
            let world = fleet.world.clone();
            fleet.feed_client(j, ClientInput::Subscribe(world, None));
        }
        fleet.schedule(Instant::ZERO + shape.tick, Event::Commit);
        if !shape.input_every.is_zero() {
            fleet.schedule(Instant::ZERO + shape.input_every, Event::ClientInputs);
        }
        Ok(fleet)
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.sequence += 1;
        self.events.insert((at, self.sequence), event);
    }

    fn note(&mut self, tag: u8, id: u64, bytes: &[u8]) {
        self.digest = fnv(self.digest, &self.now.as_nanos().to_le_bytes());
        self.digest = fnv(self.digest, &[tag]);
        self.digest = fnv(self.digest, &id.to_le_bytes());
        self.digest = fnv(self.digest, bytes);
    }

    /// The digest of every event so far.
    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }

    pub(crate) fn kill_at(&mut self, at: Instant, frontend: usize) {
        self.schedule(at, Event::Kill { frontend });
    }

    pub(crate) fn partition_at(&mut self, at: Instant, frontend: usize, until: Instant) {
        self.schedule(at, Event::Partition { frontend, until });
    }

    pub(crate) fn stop_commits_at(&mut self, at: Instant) {
        self.schedule(at, Event::StopCommits);
    }

    pub(crate) fn alive_frontends(&self) -> Vec<usize> {
        (0..self.frontends.len())
            .filter(|i| self.frontends[*i].alive)
            .collect()
    }

    pub(crate) fn client_logs(&self) -> impl Iterator<Item = &ClientLog> {
        self.clients.iter().map(|c| &c.log)
    }

    pub(crate) fn client_digests(&self) -> impl Iterator<Item = Option<u64>> + '_ {
        self.clients
            .iter()
            .map(|c| c.machine.session().digest(&self.world))
    }

    pub(crate) fn debug_unconverged(&self, game_digest: u64) {
        for (j, c) in self.clients.iter().enumerate() {
            if c.machine.session().digest(&self.world) != Some(game_digest) {
                eprintln!(
                    "client {j}: at {:?} pos {:?} counters {:?} connected {:?} log {:?}",
                    self.now,
                    c.machine.session().position(&self.world),
                    c.machine.session().counters(&self.world),
                    c.machine.connected_to(),
                    c.log
                );
            }
        }
    }

    pub(crate) fn client_frontend(&self, client: usize) -> Option<usize> {
        self.clients[client].machine.connected_to()
    }

    pub(crate) fn rng_pick(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    /// Runs every event up to `until`.
    pub(crate) fn run_until(&mut self, until: Instant) {
        while let Some(entry) = self.events.first_entry() {
            let (at, _) = *entry.key();
            if at > until {
                break;
            }
            let event = entry.remove();
            self.now = at;
            self.events_handled += 1;
            self.handle(event);
        }
        self.now = until;
    }

    fn partitioned(&self, node: Node, at: Instant) -> Option<Instant> {
        match node {
            Node::Frontend(i) => self.frontends[i]
                .partitioned_until
                .filter(|until| *until > at),
            _ => None,
        }
    }

    /// Schedules `bytes` from one side of `conn` to the other.
    fn send(&mut self, conn_id: u64, to_b: bool, bytes: Bytes) {
        let now = self.now;
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        if !conn.open {
            return;
        }
        let (from, to) = if to_b {
            (conn.a, conn.b)
        } else {
            (conn.b, conn.a)
        };
        let mut at = now;
        for node in [from, to] {
            if let Some(until) = self.partitioned(node, now) {
                at = at.max(until);
            }
        }
        at += self.network.latency;
        if !self.network.jitter.is_zero() {
            let jitter = self
                .rng
                .random_range(0..=self.network.jitter.as_nanos() as u64);
            at += Duration::from_nanos(jitter);
        }
        if self.network.loss > 0.0 && self.rng.random_bool(self.network.loss.min(1.0)) {
            at += self.network.retransmit_after;
        }
        let direction = usize::from(!to_b);
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        at = at.max(conn.last[direction]);
        conn.last[direction] = at;
        self.schedule(
            at,
            Event::Deliver {
                conn: conn_id,
                to_b,
                bytes,
            },
        );
    }

    /// Closes `conn` from one side: the other side hears of it after what was sent.
    fn close(&mut self, conn_id: u64, to_b: bool) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if !conn.open {
            return;
        }
        conn.open = false;
        let direction = usize::from(!to_b);
        let at = conn.last[direction].max(self.now + self.network.latency);
        self.schedule(
            at,
            Event::Fin {
                conn: conn_id,
                to_b,
            },
        );
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver { conn, to_b, bytes } => {
                self.note(1, conn, &bytes);
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                let target = if to_b { c.b } else { c.a };
                let local = c.frontend_local;
                match target {
                    Node::Game => self.feed_game(GameInput::Bytes(conn, bytes)),
                    Node::Frontend(i) => {
                        if !self.frontends[i].alive {
                            return;
                        }
                        if to_b {
                            self.frontend_from_client(i, local, &bytes);
                        } else {
                            self.frontend_from_game(i, local, &bytes);
                        }
                    }
                    Node::Client(j) => {
                        if self.clients[j].conn == Some(conn) {
                            self.feed_client(j, ClientInput::Received(bytes));
                        }
                    }
                }
            }
            Event::Syn { conn } => {
                self.note(2, conn, &[]);
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                let (b, a) = (c.b, c.a);
                let accepted = match b {
                    Node::Frontend(i) => self.frontends[i].alive,
                    Node::Game => true,
                    Node::Client(_) => false,
                };
                if !accepted {
                    if !self.silent_kills {
                        let at = self.now + self.network.latency;
                        self.schedule(at, Event::SynAck { conn, ok: false });
                    }
                    return;
                }
                match (a, b) {
                    (Node::Client(_), Node::Frontend(i)) => {
                        let fe = &mut self.frontends[i];
                        let local = fe.next_conn;
                        fe.next_conn += 1;
                        fe.clients
                            .insert(local, (conn, Decoder::new(CLIENT_MAX_FRAME_LEN)));
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.frontend_local = local;
                        }
                        self.feed_frontend(i, Input::ClientConnected(ConnId(local)));
                    }
                    (Node::Frontend(_), Node::Game) => {
                        self.feed_game(GameInput::Opened(conn));
                    }
                    _ => {}
                }
                let at = self.now + self.network.latency;
                self.schedule(at, Event::SynAck { conn, ok: true });
            }
            Event::SynAck { conn, ok } => {
                self.note(3, conn, &[u8::from(ok)]);
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                match c.a {
                    Node::Client(j) => {
                        if self.clients[j].conn != Some(conn) {
                            return;
                        }
                        if ok {
                            self.feed_client(j, ClientInput::Connected);
                        } else {
                            self.clients[j].conn = None;
                            self.conns.remove(&conn);
                            self.feed_client(
                                j,
                                ClientInput::ConnectFailed("connection refused".into()),
                            );
                        }
                    }
                    Node::Frontend(i) => {
                        if !self.frontends[i].alive {
                            return;
                        }
                        if ok {
                            let game = c.frontend_local;
                            self.feed_frontend(i, Input::GameConnected(GameId(game)));
                        } else {
                            self.frontends[i].game_conn = None;
                            self.redial(i);
                        }
                    }
                    Node::Game => {}
                }
            }
            Event::Fin { conn, to_b } => {
                self.note(4, conn, &[u8::from(to_b)]);
                let Some(c) = self.conns.remove(&conn) else {
                    return;
                };
                let target = if to_b { c.b } else { c.a };
                match target {
                    Node::Game => self.feed_game(GameInput::Closed(conn)),
                    Node::Frontend(i) => {
                        if !self.frontends[i].alive {
                            return;
                        }
                        if to_b {
                            if self.frontends[i]
                                .clients
                                .remove(&c.frontend_local)
                                .is_some()
                            {
                                self.feed_frontend(
                                    i,
                                    Input::ClientClosed(ConnId(c.frontend_local)),
                                );
                            }
                        } else if self.frontends[i]
                            .game_conn
                            .as_ref()
                            .is_some_and(|link| link.sim_conn == conn)
                        {
                            self.frontends[i].game_conn = None;
                            self.feed_frontend(i, Input::GameClosed(GameId(c.frontend_local)));
                            self.redial(i);
                        }
                    }
                    Node::Client(j) => {
                        if self.clients[j].conn == Some(conn) {
                            self.clients[j].conn = None;
                            self.feed_client(j, ClientInput::Closed);
                        }
                    }
                }
            }
            Event::Wake { node } => {
                if self.wake_at.get(&node) != Some(&self.now) {
                    return; // stale: rescheduled earlier, or already handled
                }
                self.wake_at.remove(&node);
                self.note(5, node_id(node), &[]);
                match node {
                    Node::Game => self.feed_game(GameInput::Timeout),
                    Node::Frontend(i) => {
                        if self.frontends[i].alive {
                            self.keep_game_link(i);
                            self.feed_frontend(i, Input::Timeout);
                        }
                    }
                    Node::Client(j) => self.feed_client(j, ClientInput::Timeout),
                }
            }
            Event::Kill { frontend } => {
                self.note(6, frontend as u64, &[]);
                self.kill(frontend);
            }
            Event::Partition { frontend, until } => {
                self.note(7, frontend as u64, &until.as_nanos().to_le_bytes());
                self.frontends[frontend].partitioned_until = Some(until);
            }
            Event::Commit => {
                if !self.commits {
                    return;
                }
                self.note(8, 0, &[]);
                self.feed_game(GameInput::Commit);
                let at = self.now + self.tick;
                self.schedule(at, Event::Commit);
            }
            Event::StopCommits => self.commits = false,
            Event::ClientInputs => {
                if !self.commits {
                    return;
                }
                self.note(9, 0, &[]);
                for j in 0..self.clients.len() {
                    let world = self.world.clone();
                    let payload = Bytes::from(format!("input {j}"));
                    self.inputs_sent += 1;
                    self.feed_client(j, ClientInput::SendInput { world, payload });
                }
                let at = self.now + self.input_every;
                self.schedule(at, Event::ClientInputs);
            }
            Event::GameDial { frontend } => {
                self.note(10, frontend as u64, &[]);
                if !self.frontends[frontend].alive || self.frontends[frontend].game_conn.is_some() {
                    return;
                }
                let conn = self.open_conn(Node::Frontend(frontend), Node::Game);
                let game = conn; // the front-end's GameId: unique per link
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.frontend_local = game;
                }
                let keep_alive = KeepAliveConfig::new(
                    flotilla_wire::GAME_PING_INTERVAL,
                    flotilla_wire::GAME_IDLE_TIMEOUT,
                );
                self.frontends[frontend].game_conn = Some(GameConn {
                    sim_conn: conn,
                    game,
                    decoder: Decoder::new(DEFAULT_MAX_FRAME_LEN),
                    keeper: GameLinkKeeper::new(self.now, keep_alive),
                });
            }
        }
    }

    fn redial(&mut self, frontend: usize) {
        let at = self.now + Duration::from_millis(250);
        self.schedule(at, Event::GameDial { frontend });
    }

    fn open_conn(&mut self, a: Node, b: Node) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                a,
                b,
                frontend_local: 0,
                last: [self.now; 2],
                open: true,
            },
        );
        let mut at = self.now + self.network.latency;
        for node in [a, b] {
            if let Some(until) = self.partitioned(node, self.now) {
                at = at.max(until + self.network.latency);
            }
        }
        self.schedule(at, Event::Syn { conn: id });
        id
    }

    fn kill(&mut self, frontend: usize) {
        let fe = &mut self.frontends[frontend];
        if !fe.alive {
            return;
        }
        fe.alive = false;
        for client in &mut self.clients {
            if client.machine.connected_to() == Some(frontend) {
                client.log.frontend_at_kill = Some(frontend);
            }
        }
        let mut touching: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.a == Node::Frontend(frontend) || c.b == Node::Frontend(frontend))
            .map(|(id, _)| *id)
            .collect();
        touching.sort_unstable();
        for id in touching {
            if self.silent_kills {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.open = false;
                }
            } else {
                let to_b = self
                    .conns
                    .get(&id)
                    .is_some_and(|c| c.a == Node::Frontend(frontend));
                self.close(id, to_b);
            }
        }
        self.wake_at.remove(&Node::Frontend(frontend));
    }

    fn frontend_from_client(&mut self, i: usize, local: u64, bytes: &[u8]) {
        let inputs = match self.frontends[i].clients.get_mut(&local) {
            Some((_, decoder)) => frames_to_inputs(
                decoder,
                bytes,
                |frame| Input::ClientFrame(ConnId(local), frame),
                |error| Input::ClientMalformed(ConnId(local), error),
            ),
            None => Vec::new(),
        };
        for input in inputs {
            self.feed_frontend(i, input);
        }
    }

    fn frontend_from_game(&mut self, i: usize, game: u64, bytes: &[u8]) {
        let now = self.now;
        let inputs = match self.frontends[i].game_conn.as_mut() {
            Some(link) if link.game == game => frames_to_inputs(
                &mut link.decoder,
                bytes,
                |frame| Input::GameFrame(GameId(game), frame),
                |error| Input::GameMalformed(GameId(game), error),
            ),
            _ => Vec::new(),
        };
        for input in inputs {
            // The link's reader shows every frame to the keeper first: pings are answered
            // there, pongs end there.
            if let Input::GameFrame(_, frame) = &input {
                let Some(link) = self.frontends[i].game_conn.as_mut() else {
                    return;
                };
                match link.keeper.on_frame(now, frame) {
                    Heard::Forward => {}
                    Heard::Answer(pong) => {
                        link.keeper.on_sent(now);
                        let sim_conn = link.sim_conn;
                        self.send(sim_conn, true, pong);
                        continue;
                    }
                    Heard::Consumed => continue,
                }
            }
            self.feed_frontend(i, input);
        }
        self.wake_frontend(i);
    }

    /// Does what front-end `i`'s game-link keeper says is due: a ping, or closing a
    /// silent game server (the shell then tells the machine the link is gone).
    fn keep_game_link(&mut self, i: usize) {
        let now = self.now;
        while let Some(link) = self.frontends[i].game_conn.as_mut() {
            let sim_conn = link.sim_conn;
            let game = link.game;
            match link.keeper.poll(now) {
                None => return,
                Some(KeeperAction::Ping(ping)) => self.send(sim_conn, true, ping),
                Some(KeeperAction::Close { error_frame, .. }) => {
                    self.send(sim_conn, true, error_frame);
                    self.close(sim_conn, true);
                    self.frontends[i].game_conn = None;
                    self.feed_frontend(i, Input::GameClosed(GameId(game)));
                    self.redial(i);
                    return;
                }
            }
        }
    }

    /// Schedules front-end `i`'s next wake-up: its machine's deadline or its game-link
    /// keeper's, whichever comes first.
    fn wake_frontend(&mut self, i: usize) {
        let keeper = self.frontends[i]
            .game_conn
            .as_ref()
            .and_then(|link| link.keeper.deadline());
        let machine = self.frontends[i].machine.poll_timeout();
        let next = match (keeper, machine) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.wake(Node::Frontend(i), next);
    }

    fn feed_frontend(&mut self, i: usize, input: Input) {
        let now = self.now;
        self.frontends[i].machine.handle(now, input);
        loop {
            let mut reports = Vec::new();
            while let Some(output) = self.frontends[i].machine.poll_output() {
                match output {
                    Output::SendToClient { conn, bytes, .. } => {
                        let len = bytes.len();
                        if let Some((sim_conn, _)) = self.frontends[i].clients.get(&conn.0) {
                            let sim_conn = *sim_conn;
                            self.send(sim_conn, false, bytes);
                        }
                        // The simulated socket takes everything at once. Like the real
                        // shell, it writes every connection it queued for, and tells the
                        // machine first (which adds the batches a queued observer is owed).
                        reports.push(Input::ClientDrained(conn, len));
                        reports.push(Input::ClientWriting(conn));
                    }
                    Output::DropQueuedBatches(conn) => {
                        reports.push(Input::ClientDiscarded(conn, 0));
                    }
                    Output::CloseClient(conn, _) => {
                        if let Some((sim_conn, _)) = self.frontends[i].clients.remove(&conn.0) {
                            self.close(sim_conn, false);
                        }
                    }
                    Output::SendToGame(game, bytes) => {
                        let len = bytes.len();
                        if let Some(link) = self.frontends[i].game_conn.as_mut()
                            && link.game == game.0
                        {
                            link.keeper.on_sent(now);
                            let sim_conn = link.sim_conn;
                            self.send(sim_conn, true, bytes);
                        }
                        reports.push(Input::GameDrained(game, len));
                    }
                    Output::CloseGame(game, _) => {
                        if let Some(link) = self.frontends[i]
                            .game_conn
                            .take_if(|link| link.game == game.0)
                        {
                            self.close(link.sim_conn, true);
                            self.redial(i);
                        }
                    }
                }
            }
            if reports.is_empty() {
                break;
            }
            for report in reports {
                self.frontends[i].machine.handle(now, report);
            }
        }
        self.wake_frontend(i);
    }

    fn feed_game(&mut self, input: GameInput) {
        let now = self.now;
        self.game.handle(now, input);
        while let Some(output) = self.game.poll_output() {
            match output {
                GameOutput::Send(conn, bytes) => self.send(conn, false, bytes),
                GameOutput::Close(conn) => self.close(conn, false),
            }
        }
        let next = self.game.poll_timeout();
        self.wake(Node::Game, next);
    }

    fn feed_client(&mut self, j: usize, input: ClientInput) {
        let now = self.now;
        self.clients[j].machine.handle(now, input);
        while let Some(output) = self.clients[j].machine.poll_output() {
            match output {
                ClientOutput::Connect(frontend) => {
                    let conn = self.open_conn(Node::Client(j), Node::Frontend(frontend));
                    self.clients[j].conn = Some(conn);
                }
                ClientOutput::Send(bytes) => {
                    if let Some(conn) = self.clients[j].conn {
                        self.send(conn, true, bytes);
                    }
                }
                ClientOutput::Close => {
                    if let Some(conn) = self.clients[j].conn.take() {
                        self.close(conn, true);
                    }
                }
                ClientOutput::Welcomed { resumed, .. } => {
                    let log = &mut self.clients[j].log;
                    log.welcomes += 1;
                    if log.frontend_at_kill.is_some()
                        && log.back_at.is_none()
                        && log.lost_at.is_some()
                    {
                        log.back_at = Some(now);
                        log.resumed_after_kill = Some(resumed);
                    }
                }
                ClientOutput::Lost { .. } => {
                    let log = &mut self.clients[j].log;
                    log.losses += 1;
                    if log.frontend_at_kill.is_some() && log.lost_at.is_none() {
                        log.lost_at = Some(now);
                    }
                }
                ClientOutput::ConnectFailed { .. } => {}
                ClientOutput::Ended { reason } => {
                    if matches!(reason, flotilla_client::DisconnectReason::GaveUp { .. }) {
                        self.clients[j].log.gave_up = true;
                    }
                }
                // A fixed list: never asked.
                ClientOutput::Resolve => {}
                ClientOutput::Event(event) => {
                    if matches!(event, flotilla_client::ClientEvent::BatchApplied { .. }) {
                        self.clients[j].log.batches += 1;
                    }
                }
            }
        }
        let next = self.clients[j].machine.poll_timeout();
        self.wake(Node::Client(j), next);
    }

    /// Keeps one wake-up per node at its machine's next deadline (earlier ones replace
    /// later ones; stale ones are skipped when they come up).
    fn wake(&mut self, node: Node, next: Option<Instant>) {
        let Some(at) = next else { return };
        let at = at.max(self.now);
        if self
            .wake_at
            .get(&node)
            .is_some_and(|current| *current <= at)
        {
            return;
        }
        self.wake_at.insert(node, at);
        self.schedule(at, Event::Wake { node });
    }
}

/// What the front-end's shell feeds its machine for `bytes` read from one connection:
/// every whole frame, then the framing error that poisons the decoder, if any.
fn frames_to_inputs(
    decoder: &mut Decoder,
    bytes: &[u8],
    frame: impl Fn(flotilla_wire::RawFrame) -> Input,
    malformed: impl Fn(flotilla_wire::WireError) -> Input,
) -> Vec<Input> {
    decoder.feed(bytes);
    let mut inputs = Vec::new();
    loop {
        match decoder.next_frame() {
            Ok(Some(raw)) => inputs.push(frame(raw)),
            Ok(None) => return inputs,
            Err(error) => {
                inputs.push(malformed(error));
                return inputs;
            }
        }
    }
}

fn node_id(node: Node) -> u64 {
    match node {
        Node::Game => 0,
        Node::Frontend(i) => 1 + i as u64,
        Node::Client(j) => 1_000_000 + j as u64,
    }
}
