//! Deterministic simulation of a flotilla fleet.
//!
//! An in-process fleet — one game server, N front-ends, M clients — runs the project's real
//! sans-I/O machines ([`flotilla_frontend::Frontend`], [`flotilla_client::ClientMachine`],
//! the game SDK's [`flotilla_game::machine`]) over a virtual network with latency, jitter,
//! loss, partitions and process kills, in virtual time, from one seed. Nothing reads a
//! clock or the OS's randomness: the same seed gives the same run, event for event (each
//! run reports a digest of every event it handled).
//!
//! [`run_failover`] is the scenario behind `flotilla sim failover`: front-ends are killed
//! mid-run and the report says how many clients moved, how many resumed their session on
//! another front-end, how long each was without one (virtual milliseconds), and whether
//! every replica converged to the game server's state.
//!
//! [`run_balance`] is `flotilla sim balance`: the real choice code under several ways of
//! choosing (OS-seeded, time-seeded, DNS round-robin behind caching resolvers, two
//! choices), how evenly clients spread, and where they go when a server dies;
//! [`render_svg`] draws it.
#![forbid(unsafe_code)]

mod balance;
mod failover;
mod fleet;
mod game;

pub use balance::{
    BalanceReport, BalanceScenario, Spread, StrategyReport, render_svg, run_balance,
};
pub use failover::{FailoverReport, FailoverScenario, Outage, run_failover};
pub use fleet::{FleetShape, NetworkModel};
