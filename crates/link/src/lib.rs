//! Tokio link plumbing shared by `flotilla-game` and `flotilla-client`.
//!
//! Both sides of a game-server or client link queue encoded frames from several
//! tasks and drain them with one writer task per connection; [`outbox`] is that
//! queue and writer, written once. (The front-end has its own, different shell:
//! one event loop owning many connections.)
#![forbid(unsafe_code)]

pub mod outbox;
pub mod stream;
