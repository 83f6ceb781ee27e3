//! The receiving side of RELP as a sans-I/O state machine: [`RelpServerSession`], one per
//! accepted connection.
//!
//! It behaves like librelp's server (rsyslog's imrelp):
//! - commands must arrive with transaction numbers 1, 2, 3, ... (wrapping after
//!   999,999,999); a number out of sequence is a fatal [`Error::UnexpectedTxnr`];
//! - `open` is answered `200 OK` followed by this side's offers (`relp_version=0`,
//!   `relp_software=...`, `commands=syslog`) when the client offers a numeric
//!   `relp_version` and the `syslog` command, else `500 ...`; a repeated `open` is answered
//!   `200 connection already open - ignored`;
//! - `syslog` before a successful `open` is answered `500 command disabled`;
//! - `close` is answered `200 OK`, followed by the `serverclose` hint, and the session ends
//!   (librelp answers `close` with empty data; `200 OK` is what the specification asks and
//!   what librelp's client parses without complaint);
//! - any other command is answered `500 unknown command` and the session goes on.
//!
//! **Acknowledgement.** With [`RelpServerConfig::auto_ack`] (the default) each `syslog` message
//! is answered `200 OK` as soon as it is decoded. Without it the shell answers each
//! [`RelpServerEvent::Syslog`] with [`ack`](RelpServerSession::ack) or
//! [`reject`](RelpServerSession::reject) once the message is safe (stored, forwarded); it may do
//! so in any order, and the session still transmits responses in command order, as RELP
//! requires, holding back answers that overtook an older, unanswered command.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::Error;
use crate::frame::{
    Command, DEFAULT_MAX_DATA_LEN, Frame, FrameDecoder, Response, encode_unchecked, next_txnr,
};
use crate::offer::{
    DEFAULT_SOFTWARE, check_syslog_offers, find_offer, validate_software, write_offers,
};

/// Settings of a [`RelpServerSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelpServerConfig {
    /// Largest frame data accepted (a larger DATALEN is a fatal error).
    pub max_data_len: usize,
    /// The `relp_software` offer sent back on `open`.
    pub software: String,
    /// Answer each `syslog` frame `200 OK` on receipt (true), or wait for `ack`/`reject`.
    pub auto_ack: bool,
}

impl Default for RelpServerConfig {
    fn default() -> Self {
        RelpServerConfig {
            max_data_len: DEFAULT_MAX_DATA_LEN,
            software: String::from(DEFAULT_SOFTWARE),
            auto_ack: true,
        }
    }
}

/// What happened, reported by [`RelpServerSession::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelpServerEvent {
    /// The client opened the session.
    Opened {
        /// The client's `relp_software` offer, if any (lossily decoded).
        client_software: Option<String>,
    },
    /// The client's `open` was refused (answered with 500); the client will give up.
    OpenRefused {
        /// Why.
        reason: Error,
    },
    /// One syslog message. Without `auto_ack`, answer it with `ack(txnr)` or `reject`.
    Syslog {
        /// The transaction number to acknowledge.
        txnr: u32,
        /// The message bytes as sent (no framing).
        message: Vec<u8>,
    },
    /// The client sent `close`; once the queued output is written, drop the connection.
    Closed,
    /// A fatal protocol error (also returned by `handle_input`): drop the connection.
    ProtocolError(Error),
}

#[derive(Debug)]
enum Reply {
    Ok,
    Text(Vec<u8>),
}

#[derive(Debug)]
struct Awaiting {
    txnr: u32,
    /// `None` until the shell answers (only for `syslog` without auto-ack).
    reply: Option<Reply>,
    is_close: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `open`.
    New,
    Open,
    /// `close` received: later frames are ignored.
    Closing,
    /// Ended (close answered, `close()` called, or protocol error).
    Closed,
}

/// The sans-I/O RELP receiver for one connection. See the [module documentation](self).
#[derive(Debug)]
pub struct RelpServerSession {
    decoder: FrameDecoder,
    core: Core,
}

#[derive(Debug)]
struct Core {
    config: RelpServerConfig,
    phase: Phase,
    expected_txnr: u32,
    awaiting: VecDeque<Awaiting>,
    /// Output ready to be written, in order.
    output: Vec<u8>,
    /// Frames in `output`.
    output_frames: usize,
    events: VecDeque<RelpServerEvent>,
    received: u64,
}

impl RelpServerSession {
    /// A session for a freshly accepted connection. Fails with [`Error::InvalidConfig`] for a
    /// software name that is empty, has a line break, or a comma-separated part over 255
    /// octets.
    pub fn new(config: RelpServerConfig) -> Result<Self, Error> {
        validate_software(&config.software)?;
        Ok(RelpServerSession {
            decoder: FrameDecoder::new(config.max_data_len),
            core: Core {
                config,
                phase: Phase::New,
                expected_txnr: 1,
                awaiting: VecDeque::new(),
                output: Vec::new(),
                output_frames: 0,
                events: VecDeque::new(),
                received: 0,
            },
        })
    }

    /// Feeds bytes read from the socket; results come from [`poll_event`](Self::poll_event)
    /// and responses from [`poll_transmit`](Self::poll_transmit). Bytes after `close` (or
    /// after the session ended) are discarded. A framing error or out-of-sequence TXNR ends
    /// the session, queues [`RelpServerEvent::ProtocolError`] and is returned: drop the
    /// connection.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if matches!(self.core.phase, Phase::Closing | Phase::Closed) {
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
                Ok(()) if matches!(self.core.phase, Phase::Closing | Phase::Closed) => {
                    self.decoder.reset();
                    return Ok(());
                }
                Ok(()) => {}
                Err(error) => {
                    self.decoder.reset();
                    self.core.phase = Phase::Closed;
                    self.core.awaiting.clear();
                    self.core
                        .events
                        .push_back(RelpServerEvent::ProtocolError(error.clone()));
                    return Err(error);
                }
            }
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<RelpServerEvent> {
        self.core.events.pop_front()
    }

    /// Appends every response (and hint) that may be sent now to `out`, in command order,
    /// and returns how many frames it appended.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        self.core.flush_ready();
        out.extend_from_slice(&self.core.output);
        self.core.output.clear();
        core::mem::take(&mut self.core.output_frames)
    }

    /// Acknowledges (`200 OK`) the `syslog` command `txnr` (only needed without auto-ack).
    /// Fails with [`Error::UnknownTxnr`] if that command is not awaiting an answer.
    pub fn ack(&mut self, txnr: u32) -> Result<(), Error> {
        self.core.answer(txnr, Reply::Ok)
    }

    /// Refuses the `syslog` command `txnr` with `500 TEXT` (line breaks in `text` are
    /// dropped, and it is cut to the 80 octets RELP allows). The client will not resend it. Fails with [`Error::UnknownTxnr`] if that
    /// command is not awaiting an answer.
    pub fn reject(&mut self, txnr: u32, text: &str) -> Result<(), Error> {
        let text = text.as_bytes();
        let text = text.get(..MAX_RESPONSE_TEXT).unwrap_or(text);
        let mut body = Vec::with_capacity(4 + text.len());
        Response {
            code: Response::ERROR,
            text,
            data: &[],
        }
        .encode(&mut body);
        self.core.answer(txnr, Reply::Text(body))
    }

    /// Ends the session from the server side: queues the `serverclose` hint after the
    /// responses that are ready (unanswered commands are dropped; the client resends those
    /// messages on its next connection). Later input is discarded.
    pub fn close(&mut self) {
        if self.core.phase == Phase::Closed {
            return;
        }
        self.core.flush_ready();
        self.core.awaiting.clear();
        self.core.push_output(0, b"serverclose", &[]);
        self.core.phase = Phase::Closed;
    }

    /// Whether the session has ended (after `close`, a client `close`, or a protocol error);
    /// write any remaining output, then drop the connection.
    pub fn is_closed(&self) -> bool {
        matches!(self.core.phase, Phase::Closed | Phase::Closing)
    }

    /// Whether the client's `open` was accepted.
    pub fn is_open(&self) -> bool {
        self.core.phase == Phase::Open
    }

    /// `syslog` messages received on this connection.
    pub fn received_count(&self) -> u64 {
        self.core.received
    }

    /// Commands received and not yet answered (awaiting `ack`/`reject`).
    pub fn unanswered_count(&self) -> usize {
        self.core
            .awaiting
            .iter()
            .filter(|entry| entry.reply.is_none())
            .count()
    }
}

impl Core {
    fn on_frame(&mut self, frame: &Frame<'_>) -> Result<(), Error> {
        if frame.txnr == 0 {
            // Hints are never answered; none is defined from client to server.
            return Ok(());
        }
        if frame.txnr != self.expected_txnr {
            return Err(Error::UnexpectedTxnr {
                expected: self.expected_txnr,
                received: frame.txnr,
            });
        }
        self.expected_txnr = next_txnr(frame.txnr);
        let txnr = frame.txnr;
        match frame.command {
            Command::Open => self.on_open(txnr, frame.data),
            Command::Syslog if self.phase == Phase::Open => {
                self.received += 1;
                let reply = self.config.auto_ack.then_some(Reply::Ok);
                self.push_awaiting(txnr, reply, false);
                self.events.push_back(RelpServerEvent::Syslog {
                    txnr,
                    message: frame.data.to_vec(),
                });
            }
            Command::Syslog => {
                self.push_awaiting(txnr, Some(text_reply("500 command disabled")), false);
            }
            Command::Close => {
                self.push_awaiting(txnr, Some(Reply::Ok), true);
                self.phase = Phase::Closing;
                self.events.push_back(RelpServerEvent::Closed);
            }
            Command::Rsp | Command::ServerClose | Command::Other(_) => {
                self.push_awaiting(txnr, Some(text_reply("500 unknown command")), false);
            }
        }
        Ok(())
    }

    fn on_open(&mut self, txnr: u32, offers: &[u8]) {
        if self.phase == Phase::Open {
            self.push_awaiting(
                txnr,
                Some(text_reply("200 connection already open - ignored")),
                false,
            );
            return;
        }
        match check_syslog_offers(offers) {
            Ok(()) => {
                let mut body = Vec::with_capacity(64 + self.config.software.len());
                body.extend_from_slice(b"200 OK\n");
                write_offers(&mut body, &self.config.software);
                self.push_awaiting(txnr, Some(Reply::Text(body)), false);
                self.phase = Phase::Open;
                let client_software = find_offer(offers, "relp_software")
                    .map(|offer| String::from_utf8_lossy(offer.value).into_owned());
                self.events
                    .push_back(RelpServerEvent::Opened { client_software });
            }
            Err(reason) => {
                let text = match reason {
                    Error::MissingOffer {
                        offer: "commands=syslog",
                    } => "500 required command not supported by client",
                    _ => "500 invalid relp_version offer",
                };
                self.push_awaiting(txnr, Some(text_reply(text)), false);
                self.events
                    .push_back(RelpServerEvent::OpenRefused { reason });
            }
        }
    }

    fn push_awaiting(&mut self, txnr: u32, reply: Option<Reply>, is_close: bool) {
        self.awaiting.push_back(Awaiting {
            txnr,
            reply,
            is_close,
        });
    }

    fn answer(&mut self, txnr: u32, reply: Reply) -> Result<(), Error> {
        let entry = self
            .awaiting
            .iter_mut()
            .find(|entry| entry.txnr == txnr && entry.reply.is_none())
            .ok_or(Error::UnknownTxnr { txnr })?;
        entry.reply = Some(reply);
        Ok(())
    }

    fn push_output(&mut self, txnr: u32, command: &[u8], data: &[u8]) {
        encode_unchecked(&mut self.output, txnr, command, data);
        self.output_frames += 1;
    }

    /// Moves answered commands at the head of the queue to the output, in order.
    fn flush_ready(&mut self) {
        while self
            .awaiting
            .front()
            .is_some_and(|entry| entry.reply.is_some())
        {
            let Some(entry) = self.awaiting.pop_front() else {
                break;
            };
            match &entry.reply {
                Some(Reply::Ok) | None => self.push_output(entry.txnr, b"rsp", b"200 OK"),
                Some(Reply::Text(body)) => self.push_output(entry.txnr, b"rsp", body),
            }
            if entry.is_close {
                self.push_output(0, b"serverclose", &[]);
                self.awaiting.clear();
                self.phase = Phase::Closed;
            }
        }
    }
}

/// The longest human-readable response text RELP allows (librelp reads no more).
const MAX_RESPONSE_TEXT: usize = 80;

fn text_reply(text: &str) -> Reply {
    Reply::Text(text.as_bytes().to_vec())
}
