//! The sans-I/O connection core shared by every flotilla link.
//!
//! Every protocol machine of the workspace follows one contract ([`Machine`]): inputs in
//! with [`Machine::handle`]`(now, input)`, outputs out with [`Machine::poll_output`], and
//! the next instant it needs to be woken at from [`Machine::poll_timeout`]. Shells (tokio
//! tasks, threads, the simulator) pump bytes and time; they sleep until the next deadline
//! instead of scanning periodically. Time is one type, [`Instant`]: nanoseconds since an
//! origin the shell chooses (its start, or virtual time zero in a simulation).
//!
//! The rules every link of the wire protocol shares are written here once:
//! - [`KeepAlive`]: ping after a quiet interval, probe a peer not heard from, close after
//!   silence (PROTOCOL.md section 7), used by the front-end's client sessions and game
//!   links, the game-server SDK's front-end links and the client's connection;
//! - [`negotiate_version`]: the hello/welcome version rule (PROTOCOL.md section 2);
//! - [`Deadlines`]: a lazy min-heap of per-connection deadlines, so a machine holding
//!   100,000 connections answers `poll_timeout` without looking at each one;
//! - [`RateBudget`]: a token bucket (the front-end's per-connection input budget).
//!
//! `no_std` with `alloc`; the default `std` feature adds [`Clock`], which maps the OS's
//! monotonic clock onto [`Instant`] for shells.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod budget;
mod deadlines;
mod error;
mod keepalive;
mod machine;
mod time;
mod version;

pub use budget::RateBudget;
pub use deadlines::Deadlines;
pub use error::Error;
pub use keepalive::{KeepAlive, KeepAliveAction, KeepAliveConfig, silence_text};
pub use machine::{Machine, Timeout};
#[cfg(feature = "std")]
pub use time::Clock;
pub use time::Instant;
pub use version::negotiate_version;
