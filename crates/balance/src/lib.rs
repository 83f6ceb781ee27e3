//! Client-side random balancing, sans-I/O.
//!
//! Every client holds the same list of servers (log collectors for the flotilla logger,
//! front-end servers for game clients), picks one uniformly at random with a well-seeded
//! generator, and on any failure picks another at random. There is no load-balancer box:
//! balance comes from the law of large numbers (for N clients over K servers each share
//! has a relative standard deviation of `sqrt((K-1)/N)`, under 1% for 100,000 clients over
//! 10 servers). Reconnect storms are avoided with exponential backoff with full jitter.
//!
//! * [`Balancer`]: the state machine (poll / on_connected / on_failure, `now` passed in).
//! * [`BackoffConfig`], [`backoff_ceiling`], [`full_jitter`]: the backoff arithmetic,
//!   usable on their own.
//! * [`pick_uniform`]: an unbiased uniform index.
//!
//! `no_std` with `alloc`; the default `std` feature adds OS seeding
//! ([`seed_from_os_entropy`], [`Balancer::with_os_entropy`]).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod backoff;
mod balancer;
mod error;
mod round;

pub use backoff::{BackoffConfig, backoff_ceiling, full_jitter};
pub use balancer::{Balancer, Decision, MAX_SERVERS};
pub use error::Error;

use rand::Rng;
use rand::distr::{Distribution, Uniform};

/// An index drawn uniformly from `0..n`, without modulo bias (Lemire's widening multiply
/// with rejection). Fails with [`Error::NoServers`] when `n` is 0.
pub fn pick_uniform<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Result<usize, Error> {
    Uniform::new(0, n)
        .map(|range| range.sample(rng))
        .map_err(|_| Error::NoServers)
}

/// A fresh 64-bit seed from the operating system's random source, for
/// [`Balancer::new`]. Never seed from the clock: clients started together would choose
/// together.
#[cfg(feature = "std")]
#[allow(clippy::disallowed_methods)] // The seed a shell passes in comes from here.
pub fn seed_from_os_entropy() -> Result<u64, Error> {
    getrandom::u64().map_err(Error::OsEntropy)
}
