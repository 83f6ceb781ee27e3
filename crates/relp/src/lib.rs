//! Sans-I/O RELP, rsyslog's Reliable Event Logging Protocol (`imrelp`/`omrelp`, librelp).
//!
//! RELP carries syslog messages over TCP and acknowledges each one, so a sender knows which
//! messages reached the collector and can resend the others after a reconnect: nothing is
//! lost when the collector restarts. This crate speaks the protocol as librelp 1.11 (rsyslog
//! 8.2302) does, without doing any I/O itself:
//!
//! - [`frame`]: the wire format, `TXNR SP COMMAND SP DATALEN [SP DATA] LF`, with an encoder
//!   and an incremental decoder, plus the `rsp` data format.
//! - [`offer`]: the `name=value` offers exchanged by `open`.
//! - [`client`]: [`RelpClientSession`], the sender (used by the flotilla logger): window,
//!   acknowledgements, resend of unacknowledged messages on the next connection.
//! - [`server`]: [`RelpServerSession`], the receiver for one connection (used by the flotilla
//!   log service, and as an in-process peer in tests).
//!
//! The sessions take bytes in (`handle_input`), hand bytes out (`poll_transmit`, ready for
//! one write call) and report what happened (`poll_event`). They never touch sockets,
//! clocks or threads, so a blocking thread or an async task can drive them alike. The crate
//! is `no_std` and needs only `alloc`.
//!
//! ```
//! use flotilla_relp::{RelpClientConfig, RelpClientSession, RelpClientEvent, RelpServerConfig, RelpServerEvent, RelpServerSession};
//!
//! let mut client = RelpClientSession::new(RelpClientConfig::default())?;
//! let mut server = RelpServerSession::new(RelpServerConfig::default())?;
//! let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
//!
//! client.connect();
//! let id = client.send(b"<13>1 2024-01-01T00:00:00Z host app - - - hello".to_vec())?;
//! for _ in 0..2 {
//!     client.poll_transmit(&mut to_server);
//!     server.handle_input(&to_server)?;
//!     to_server.clear();
//!     server.poll_transmit(&mut to_client);
//!     client.handle_input(&to_client)?;
//!     to_client.clear();
//! }
//! assert!(matches!(server.poll_event(), Some(RelpServerEvent::Opened { .. })));
//! assert!(matches!(server.poll_event(), Some(RelpServerEvent::Syslog { .. })));
//! assert_eq!(client.poll_event(), Some(RelpClientEvent::Opened));
//! assert_eq!(client.poll_event(), Some(RelpClientEvent::Acked { first: id, count: 1 }));
//! assert!(client.is_idle());
//! # Ok::<(), flotilla_relp::Error>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod client;
mod error;
pub mod frame;
pub mod offer;
pub mod server;

pub use client::{
    MessageId, RelpClientConfig, RelpClientEvent, RelpClientSession, RelpClientState,
    RelpClientStats,
};
pub use error::{Error, FrameField};
pub use frame::{Command, Frame, FrameDecoder, Response};
pub use server::{RelpServerConfig, RelpServerEvent, RelpServerSession};
