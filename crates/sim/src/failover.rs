//! The failover scenario: kill front-ends mid-run, measure how clients carry on.

use std::time::Duration;

use flotilla_conn::Instant;
use serde::Serialize;

use crate::fleet::{Fleet, FleetShape, NetworkModel};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FailoverScenario {
    /// Everything random (picks, jitter, loss, which front-ends die) comes from it.
    pub seed: u64,
    /// The fleet.
    pub shape: FleetShape,
    /// How many front-ends are killed.
    pub kill: usize,
    /// When (virtual time since the start).
    pub kill_at: Duration,
    /// Front-ends (among the survivors) cut off from everyone at `kill_at`.
    pub partition: usize,
    /// For how long.
    pub partition_for: Duration,
    /// The whole run.
    pub duration: Duration,
}

impl Default for FailoverScenario {
    fn default() -> Self {
        Self {
            seed: 1,
            shape: FleetShape {
                frontends: 4,
                clients: 1_000,
                tick: Duration::from_millis(100),
                input_every: Duration::from_secs(1),
                network: NetworkModel::default(),
                silent_kills: false,
            },
            kill: 1,
            kill_at: Duration::from_secs(3),
            partition: 0,
            partition_for: Duration::from_secs(1),
            duration: Duration::from_secs(10),
        }
    }
}

/// Time without a front-end, in virtual milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Outage {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Longest.
    pub max_ms: f64,
}

/// What a run showed. The same seed and scenario give the same report, byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailoverReport {
    /// The seed.
    pub seed: u64,
    /// Front-ends at the start.
    pub frontends: usize,
    /// Clients.
    pub clients: usize,
    /// The front-ends killed (indices).
    pub killed: Vec<usize>,
    /// The front-ends partitioned (indices).
    pub partitioned: Vec<usize>,
    /// Clients connected to a killed front-end when it died.
    pub moved: usize,
    /// Of those, clients welcomed by another front-end with their session resumed.
    pub resumed: usize,
    /// Of those, clients welcomed with a new session (token not recognised).
    pub not_resumed: usize,
    /// Of those, clients still without a front-end at the end.
    pub stranded: usize,
    /// Clients not on a killed front-end that lost their connection anyway.
    pub other_losses: usize,
    /// Clients that gave up.
    pub gave_up: usize,
    /// From the kill to noticing it (virtual ms), for moved clients.
    pub noticed: Outage,
    /// From the kill to a welcome elsewhere (virtual ms): time without a front-end.
    pub without_frontend: Outage,
    /// Clients whose replica equals the game server's state at the end.
    pub replicas_converged: usize,
    /// Sessions the game server saw move to another front-end.
    pub sessions_moved_upstream: u64,
    /// Inputs the clients' applications sent.
    pub inputs_sent: u64,
    /// Inputs the game server received. An input written to a connection that dies
    /// before the front-end forwarded it is lost (at most once, PROTOCOL.md); inputs
    /// sent between front-ends are queued and sent after the next welcome.
    pub inputs_received: u64,
    /// Clients per surviving front-end at the end (index, clients).
    pub clients_per_frontend: Vec<(usize, usize)>,
    /// Events handled.
    pub events: u64,
    /// Virtual time simulated.
    pub virtual_ms: u64,
    /// FNV-1a digest of every event handled (time, kind, endpoint, bytes), hex.
    pub event_digest: String,
}

fn outage(mut samples: Vec<Duration>) -> Outage {
    if samples.is_empty() {
        return Outage::default();
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1000.0
    };
    Outage {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: samples.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

/// Runs the scenario. Fails only for a scenario that cannot be built (no front-ends, more
/// kills than front-ends).
pub fn run_failover(scenario: &FailoverScenario) -> Result<FailoverReport, String> {
    let shape = &scenario.shape;
    if shape.frontends == 0 {
        return Err("a fleet needs at least one front-end".into());
    }
    if scenario.kill + scenario.partition > shape.frontends {
        return Err(format!(
            "cannot kill {} and partition {} of {} front-ends",
            scenario.kill, scenario.partition, shape.frontends
        ));
    }
    let mut fleet = Fleet::new(scenario.seed, shape)?;
    let kill_at = Instant::ZERO + scenario.kill_at;
    let end = Instant::ZERO + scenario.duration;
    // Commits stop 2 s before the end so that every replica can settle.
    fleet.stop_commits_at(end - Duration::from_secs(2));
    fleet.run_until(kill_at);
    let mut alive = fleet.alive_frontends();
    let mut killed = Vec::new();
    for _ in 0..scenario.kill {
        let pick = fleet.rng_pick(alive.len());
        killed.push(alive.remove(pick));
    }
    killed.sort_unstable();
    let mut partitioned = Vec::new();
    for _ in 0..scenario.partition {
        let pick = fleet.rng_pick(alive.len());
        partitioned.push(alive.remove(pick));
    }
    partitioned.sort_unstable();
    for frontend in &killed {
        fleet.kill_at(kill_at, *frontend);
    }
    for frontend in &partitioned {
        fleet.partition_at(kill_at, *frontend, kill_at + scenario.partition_for);
    }
    fleet.run_until(end);

    let game_digest = fleet.game.digest();
    let mut moved = 0;
    let mut resumed = 0;
    let mut not_resumed = 0;
    let mut stranded = 0;
    let mut other_losses = 0;
    let mut gave_up = 0;
    let mut noticed = Vec::new();
    let mut without = Vec::new();
    for log in fleet.client_logs() {
        if log.gave_up {
            gave_up += 1;
        }
        if log.frontend_at_kill.is_some() {
            moved += 1;
            if let Some(lost) = log.lost_at {
                noticed.push(lost - kill_at);
            }
            match (log.back_at, log.resumed_after_kill) {
                (Some(back), Some(true)) => {
                    resumed += 1;
                    without.push(back - kill_at);
                }
                (Some(back), _) => {
                    not_resumed += 1;
                    without.push(back - kill_at);
                }
                (None, _) => stranded += 1,
            }
        } else if log.losses > 0 {
            other_losses += 1;
        }
    }
    let replicas_converged = fleet
        .client_digests()
        .filter(|digest| *digest == Some(game_digest))
        .count();
    if std::env::var_os("FLOTILLA_SIM_DEBUG").is_some() {
        fleet.debug_unconverged(game_digest);
    }
    let mut per_frontend = vec![0usize; shape.frontends];
    for client in 0..shape.clients {
        if let Some(frontend) = fleet.client_frontend(client) {
            per_frontend[frontend] += 1;
        }
    }
    let clients_per_frontend = fleet
        .alive_frontends()
        .into_iter()
        .map(|i| (i, per_frontend[i]))
        .collect();
    Ok(FailoverReport {
        seed: scenario.seed,
        frontends: shape.frontends,
        clients: shape.clients,
        killed,
        partitioned,
        moved,
        resumed,
        not_resumed,
        stranded,
        other_losses,
        gave_up,
        noticed: outage(noticed),
        without_frontend: outage(without),
        replicas_converged,
        sessions_moved_upstream: fleet.game.sessions_moved,
        inputs_sent: fleet.inputs_sent,
        inputs_received: fleet.game.inputs,
        clients_per_frontend,
        events: fleet.events_handled,
        virtual_ms: scenario.duration.as_millis() as u64,
        event_digest: format!("{:016x}", fleet.digest()),
    })
}
