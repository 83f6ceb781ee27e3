//! The sending side of RELP as a sans-I/O state machine: [`RelpClientSession`].
//!
//! The session owns every message from [`send`](RelpClientSession::send) until the server
//! acknowledges it, across any number of connections. The shell owns the socket:
//!
//! ```text
//! connect socket          -> session.connect()
//! loop:
//!     session.send(msg)?   (as long as it returns Ok; QueueFull means "wait for acks")
//!     session.poll_transmit(&mut out); write out (one syscall), out.clear()
//!     read bytes           -> session.handle_input(&bytes)
//!     while let Some(ev) = session.poll_event() { ... }
//! socket error / EOF      -> session.connection_lost(); reconnect later; session.connect()
//! shutting down           -> wait (with a timeout) until session.is_idle(),
//!                            then session.close(&mut out), write out, read until Closed
//! ```
//!
//! Rules the session follows:
//! - **Queue.** [`send`](RelpClientSession::send) accepts a message while fewer than
//!   [`RelpClientConfig::capacity`] messages are unacknowledged (pending + in flight), else it
//!   returns [`Error::QueueFull`] and keeps nothing. Messages are accepted in any state,
//!   connected or not.
//! - **Window.** At most [`RelpClientConfig::window`] `syslog` frames are in flight (sent on
//!   this connection, not yet answered); [`poll_transmit`](RelpClientSession::poll_transmit)
//!   sends more as responses free the window.
//! - **Order and resend.** Messages go out in [`send`] order. When a connection ends
//!   ([`connection_lost`](RelpClientSession::connection_lost), `serverclose`, a protocol error),
//!   every in-flight message goes back to the front of the queue, in its original order; on
//!   the next connection they are sent again, with new transaction numbers, only after the
//!   server has answered `open`, and before any newer message. Delivery is therefore
//!   at-least-once: a message whose response was lost with the connection arrives twice.
//! - **Rejection.** A response other than 200 to a `syslog` frame drops the message and
//!   reports [`RelpClientEvent::Rejected`] with its bytes: rsyslog answers 500 only for permanent
//!   conditions (for example the `syslog` command being disabled), so resending would fail
//!   again.
//! - **Time.** The session has no clock. The shell applies its own timeouts (for the `open`
//!   response, for flushing) and reports a dead connection with `connection_lost`.
//!
//! [`send`]: RelpClientSession::send

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::Error;
use crate::frame::{
    Command, DEFAULT_MAX_DATA_LEN, Frame, FrameDecoder, MAX_DATALEN, Response, encode_unchecked,
    next_txnr,
};
use crate::offer::{DEFAULT_SOFTWARE, check_syslog_offers, validate_software, write_offers};

/// Identifies a message accepted by [`RelpClientSession::send`]; ids increase by one per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(u64);

impl MessageId {
    /// The id as a number (the first message of a session is 0).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Settings of a [`RelpClientSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelpClientConfig {
    /// Most `syslog` frames in flight on one connection (librelp's default: 128).
    pub window: usize,
    /// Most unacknowledged messages held (pending + in flight); at least `window`.
    pub capacity: usize,
    /// Longest message accepted by `send`, at most 999,999,999. Keep it at or below the
    /// server's limit (imrelp's `maxDataSize`, by default rsyslog's `maxMessageSize`),
    /// beyond which imrelp truncates (or, in `oversizeMode="abort"`, drops the connection).
    pub max_message_len: usize,
    /// Longest `rsp` data accepted from the server.
    pub max_response_len: usize,
    /// The `relp_software` offer: `name[,version[,url]]`.
    pub software: String,
}

impl Default for RelpClientConfig {
    fn default() -> Self {
        RelpClientConfig {
            window: 128,
            capacity: 1024,
            max_message_len: DEFAULT_MAX_DATA_LEN,
            max_response_len: 64 * 1024,
            software: String::from(DEFAULT_SOFTWARE),
        }
    }
}

/// What happened, reported by [`RelpClientSession::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelpClientEvent {
    /// The server accepted `open`: messages flow from now on.
    Opened,
    /// The server acknowledged the `count` messages with ids `first`, `first + 1`, ...
    /// (consecutive acknowledgements are merged into one event).
    Acked {
        /// The first acknowledged id.
        first: MessageId,
        /// How many consecutive ids were acknowledged.
        count: u64,
    },
    /// The server refused a message; it is dropped, not resent.
    Rejected {
        /// The refused message.
        id: MessageId,
        /// The response code (not 200).
        code: u16,
        /// The server's text, lossily decoded.
        text: String,
        /// The message bytes, handed back.
        message: Vec<u8>,
    },
    /// The server sent `serverclose`: the shell must drop the connection (in-flight messages
    /// are already queued for resending).
    ServerClosed,
    /// The server answered `close`: the shell may drop the connection.
    Closed,
    /// A fatal protocol error (also returned by `handle_input`): the shell must drop the
    /// connection (in-flight messages are already queued for resending).
    ProtocolError(Error),
}

/// Where the current connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelpClientState {
    /// No connection: call `connect` once a socket is up.
    Disconnected,
    /// `open` queued or sent, response not yet received.
    Opening,
    /// Session established: messages flow.
    Open,
    /// `close` sent, response not yet received.
    Closing,
}

/// Counters of a [`RelpClientSession`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelpClientStats {
    /// `syslog` frames transmitted, resends included.
    pub sent: u64,
    /// Of those, transmissions of a message sent before on an earlier connection.
    pub resent: u64,
    /// Messages acknowledged with 200.
    pub acked: u64,
    /// Messages refused by the server (and dropped).
    pub rejected: u64,
    /// Connections opened (`open` acknowledged).
    pub connections: u64,
    /// Messages waiting to be transmitted on the current (or next) connection.
    pub pending: usize,
    /// Messages transmitted on the current connection, awaiting a response.
    pub in_flight: usize,
}

#[derive(Debug)]
struct Message {
    id: MessageId,
    bytes: Vec<u8>,
    transmissions: u32,
}

#[derive(Debug)]
struct InFlight {
    txnr: u32,
    message: Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connection {
    Disconnected,
    Opening { open_txnr: u32 },
    Open,
    Closing { close_txnr: u32 },
}

/// The sans-I/O RELP sender. See the [module documentation](self) for the rules it follows.
#[derive(Debug)]
pub struct RelpClientSession {
    decoder: FrameDecoder,
    core: Core,
}

/// Everything but the decoder, so frames borrowed from the decoder can drive it.
#[derive(Debug)]
struct Core {
    config: RelpClientConfig,
    connection: Connection,
    /// The transaction number for the next command on this connection.
    txnr: u32,
    /// Control frames (`open`) waiting for `poll_transmit`.
    control: Vec<u8>,
    pending: VecDeque<Message>,
    in_flight: VecDeque<InFlight>,
    events: VecDeque<RelpClientEvent>,
    next_id: u64,
    stats: RelpClientStats,
}

impl RelpClientSession {
    /// A session with no connection yet. Fails with [`Error::InvalidConfig`] for a zero
    /// window, a capacity below the window, a maximum above 999,999,999, or a software name
    /// that is empty, has a line break, or has a comma-separated part over 255 octets.
    pub fn new(config: RelpClientConfig) -> Result<Self, Error> {
        if config.window == 0 {
            return Err(Error::InvalidConfig {
                reason: "window must be at least 1",
            });
        }
        if config.capacity < config.window {
            return Err(Error::InvalidConfig {
                reason: "capacity must be at least the window",
            });
        }
        if config.max_message_len > MAX_DATALEN {
            return Err(Error::InvalidConfig {
                reason: "max_message_len must be at most 999999999",
            });
        }
        validate_software(&config.software)?;
        Ok(RelpClientSession {
            decoder: FrameDecoder::new(config.max_response_len),
            core: Core {
                config,
                connection: Connection::Disconnected,
                txnr: 1,
                control: Vec::new(),
                pending: VecDeque::new(),
                in_flight: VecDeque::new(),
                events: VecDeque::new(),
                next_id: 0,
                stats: RelpClientStats::default(),
            },
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &RelpClientConfig {
        &self.core.config
    }

    /// Starts a new connection on a freshly connected socket: queues `open` (TXNR 1) for
    /// [`poll_transmit`](Self::poll_transmit). Messages, including those in flight on an
    /// earlier connection, are sent once the server has answered `open`. Calling it while a
    /// connection is active first ends that one, as [`connection_lost`](Self::connection_lost).
    pub fn connect(&mut self) {
        if self.core.connection != Connection::Disconnected {
            self.connection_lost();
        }
        self.decoder.reset();
        let core = &mut self.core;
        core.control.clear();
        let mut offers = Vec::with_capacity(64 + core.config.software.len());
        write_offers(&mut offers, &core.config.software);
        let open_txnr = 1;
        encode_unchecked(&mut core.control, open_txnr, b"open", &offers);
        core.txnr = next_txnr(open_txnr);
        core.connection = Connection::Opening { open_txnr };
    }

    /// Accepts one formatted syslog message (RFC 5424 or 3164 bytes, no framing) for
    /// delivery. Fails with [`Error::QueueFull`] when `capacity` messages are already
    /// unacknowledged, or [`Error::MessageTooLarge`]; the message is not kept then.
    pub fn send(&mut self, message: impl Into<Vec<u8>>) -> Result<MessageId, Error> {
        let bytes = message.into();
        let core = &mut self.core;
        if bytes.len() > core.config.max_message_len {
            return Err(Error::MessageTooLarge {
                len: bytes.len(),
                max: core.config.max_message_len,
            });
        }
        if core.unacked() >= core.config.capacity {
            return Err(Error::QueueFull {
                capacity: core.config.capacity,
            });
        }
        let id = MessageId(core.next_id);
        core.next_id += 1;
        core.pending.push_back(Message {
            id,
            bytes,
            transmissions: 0,
        });
        Ok(id)
    }

    /// Appends every frame that may be sent now to `out` (the queued `open`, then, once the
    /// session is open, `syslog` frames while the window has room) and returns how many
    /// frames it appended.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let core = &mut self.core;
        let mut frames = 0;
        if !core.control.is_empty() {
            out.extend_from_slice(&core.control);
            core.control.clear();
            frames += 1;
        }
        if core.connection != Connection::Open {
            return frames;
        }
        while core.in_flight.len() < core.config.window {
            let Some(mut message) = core.pending.pop_front() else {
                break;
            };
            let txnr = core.take_txnr();
            encode_unchecked(out, txnr, b"syslog", &message.bytes);
            if message.transmissions > 0 {
                core.stats.resent += 1;
            }
            message.transmissions = message.transmissions.saturating_add(1);
            core.stats.sent += 1;
            core.in_flight.push_back(InFlight { txnr, message });
            frames += 1;
        }
        frames
    }

    /// Feeds bytes read from the socket. Responses acknowledge or reject messages,
    /// `serverclose` ends the connection; results are reported through
    /// [`poll_event`](Self::poll_event). Bytes arriving while no connection is active (or
    /// after the connection ended within this call) are discarded.
    ///
    /// A framing error or protocol violation is fatal for the connection: the session acts
    /// as if [`connection_lost`](Self::connection_lost) had been called, queues
    /// [`RelpClientEvent::ProtocolError`], and returns the error; the shell must drop the socket.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if self.core.connection == Connection::Disconnected {
            return Ok(());
        }
        self.decoder.push(bytes);
        loop {
            let outcome = match self.decoder.next_frame() {
                Ok(Some(frame)) => self.core.on_frame(&frame),
                Ok(None) => return Ok(()),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(()) if self.core.connection == Connection::Disconnected => {
                    self.decoder.reset();
                    return Ok(());
                }
                Ok(()) => {}
                Err(error) => {
                    self.connection_lost();
                    self.core
                        .events
                        .push_back(RelpClientEvent::ProtocolError(error.clone()));
                    return Err(error);
                }
            }
        }
    }

    /// The next event, oldest first. Poll after every `handle_input`.
    pub fn poll_event(&mut self) -> Option<RelpClientEvent> {
        self.core.events.pop_front()
    }

    /// The shell reports that the connection broke (error, EOF, timeout): in-flight messages
    /// go back to the front of the queue for the next connection. Harmless when already
    /// disconnected.
    pub fn connection_lost(&mut self) {
        self.decoder.reset();
        self.core.drop_connection();
    }

    /// Ends the current connection (as [`connection_lost`](Self::connection_lost)) and
    /// hands back every unacknowledged message, in-flight ones first, in their original
    /// order, leaving the session empty. For a shell that fails over to a collector that
    /// does not speak RELP: the messages are not lost, the shell sends them another way.
    pub fn take_unacknowledged(&mut self) -> Vec<Vec<u8>> {
        self.connection_lost();
        let core = &mut self.core;
        let mut out = Vec::with_capacity(core.unacked());
        // connection_lost put the in-flight messages back in front, in order.
        out.extend(core.pending.drain(..).map(|m| m.bytes));
        out
    }

    /// Starts a graceful end of an open session: appends a `close` frame to `out` and returns
    /// true. Messages still pending stay queued (for a later connection); responses to
    /// in-flight messages are still processed until the server answers `close`
    /// ([`RelpClientEvent::Closed`]). In any state other than open, appends nothing and returns false
    /// (the shell simply drops the socket).
    pub fn close(&mut self, out: &mut Vec<u8>) -> bool {
        let core = &mut self.core;
        if core.connection != Connection::Open {
            return false;
        }
        let close_txnr = core.take_txnr();
        encode_unchecked(out, close_txnr, b"close", &[]);
        core.connection = Connection::Closing { close_txnr };
        true
    }

    /// Whether every accepted message has been acknowledged or rejected.
    pub fn is_idle(&self) -> bool {
        self.core.unacked() == 0
    }

    /// Whether the session is open (messages can flow).
    pub fn is_open(&self) -> bool {
        self.core.connection == Connection::Open
    }

    /// The state of the current connection.
    pub fn state(&self) -> RelpClientState {
        match self.core.connection {
            Connection::Disconnected => RelpClientState::Disconnected,
            Connection::Opening { .. } => RelpClientState::Opening,
            Connection::Open => RelpClientState::Open,
            Connection::Closing { .. } => RelpClientState::Closing,
        }
    }

    /// Messages accepted and neither acknowledged nor rejected (pending + in flight).
    pub fn unacked_count(&self) -> usize {
        self.core.unacked()
    }

    /// Messages transmitted on the current connection and awaiting a response.
    pub fn in_flight_count(&self) -> usize {
        self.core.in_flight.len()
    }

    /// Messages waiting for transmission.
    pub fn pending_count(&self) -> usize {
        self.core.pending.len()
    }

    /// How many more messages `send` accepts right now.
    pub fn free_capacity(&self) -> usize {
        self.core
            .config
            .capacity
            .saturating_sub(self.core.unacked())
    }

    /// The counters.
    pub fn stats(&self) -> RelpClientStats {
        RelpClientStats {
            pending: self.core.pending.len(),
            in_flight: self.core.in_flight.len(),
            ..self.core.stats
        }
    }
}

impl Core {
    fn unacked(&self) -> usize {
        self.pending.len() + self.in_flight.len()
    }

    fn take_txnr(&mut self) -> u32 {
        let txnr = self.txnr;
        self.txnr = next_txnr(txnr);
        txnr
    }

    fn drop_connection(&mut self) {
        while let Some(entry) = self.in_flight.pop_back() {
            self.pending.push_front(entry.message);
        }
        self.control.clear();
        self.connection = Connection::Disconnected;
    }

    fn on_frame(&mut self, frame: &Frame<'_>) -> Result<(), Error> {
        match frame.command {
            Command::Rsp => self.on_response(frame.txnr, frame.data),
            Command::ServerClose => {
                self.drop_connection();
                self.events.push_back(RelpClientEvent::ServerClosed);
                Ok(())
            }
            other => Err(Error::UnexpectedCommand {
                command: String::from(other.as_str()),
            }),
        }
    }

    fn on_response(&mut self, txnr: u32, data: &[u8]) -> Result<(), Error> {
        match self.connection {
            Connection::Opening { open_txnr } if txnr == open_txnr => {
                let response = Response::parse(data)?;
                if !response.is_ok() {
                    return Err(Error::OpenRejected {
                        code: response.code,
                        text: String::from_utf8_lossy(response.text).into_owned(),
                    });
                }
                check_syslog_offers(response.data)?;
                self.connection = Connection::Open;
                self.stats.connections += 1;
                self.events.push_back(RelpClientEvent::Opened);
                Ok(())
            }
            Connection::Closing { close_txnr } if txnr == close_txnr => {
                // librelp answers close with an empty rsp; any answer ends the session.
                self.drop_connection();
                self.events.push_back(RelpClientEvent::Closed);
                Ok(())
            }
            Connection::Open | Connection::Closing { .. } => self.on_message_response(txnr, data),
            Connection::Opening { .. } | Connection::Disconnected => {
                Err(Error::UnexpectedResponse { txnr })
            }
        }
    }

    fn on_message_response(&mut self, txnr: u32, data: &[u8]) -> Result<(), Error> {
        // rsyslog answers in order, so the match is almost always the oldest entry.
        let position = self
            .in_flight
            .iter()
            .position(|entry| entry.txnr == txnr)
            .ok_or(Error::UnexpectedResponse { txnr })?;
        let response = Response::parse(data)?;
        let Some(entry) = self.in_flight.remove(position) else {
            return Err(Error::UnexpectedResponse { txnr });
        };
        let id = entry.message.id;
        if response.is_ok() {
            self.stats.acked += 1;
            if let Some(RelpClientEvent::Acked { first, count }) = self.events.back_mut()
                && first.0.checked_add(*count) == Some(id.0)
            {
                *count += 1;
                return Ok(());
            }
            self.events.push_back(RelpClientEvent::Acked {
                first: id,
                count: 1,
            });
        } else {
            self.stats.rejected += 1;
            self.events.push_back(RelpClientEvent::Rejected {
                id,
                code: response.code,
                text: String::from_utf8_lossy(response.text).into_owned(),
                message: entry.message.bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a test failure.
mod tests {
    use super::*;
    use crate::frame::MAX_TXNR;

    #[test]
    fn transaction_numbers_wrap_from_max_to_one_within_a_connection() {
        let mut client = RelpClientSession::new(RelpClientConfig::default()).unwrap();
        client.connect();
        let mut out = Vec::new();
        client.poll_transmit(&mut out);
        client
            .handle_input(b"1 rsp 53 200 OK\nrelp_version=0\nrelp_software=x\ncommands=syslog\n")
            .unwrap();
        assert_eq!(client.poll_event(), Some(RelpClientEvent::Opened));
        client.core.txnr = MAX_TXNR;
        client.send(b"a".to_vec()).unwrap();
        client.send(b"b".to_vec()).unwrap();
        out.clear();
        assert_eq!(client.poll_transmit(&mut out), 2);
        assert_eq!(out, b"999999999 syslog 1 a\n1 syslog 1 b\n");
        client
            .handle_input(b"999999999 rsp 6 200 OK\n1 rsp 6 200 OK\n")
            .unwrap();
        assert_eq!(
            client.poll_event(),
            Some(RelpClientEvent::Acked {
                first: MessageId(0),
                count: 2
            })
        );
        assert!(client.is_idle());
    }
}
