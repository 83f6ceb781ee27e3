//! The lean readers: minimal, allocation-free decoders of the two protocols an observer
//! receives in the fan-out and connections benchmarks, with one shared code path.
//!
//! Both decoders work on a byte slice holding whatever has arrived, decode every
//! complete unit at its front, report [`LeanEvent`]s and return how many bytes they
//! consumed; [`StreamBuffer`] keeps the incomplete tail for the next read. Neither
//! builds messages: the flotilla reader reads the 5-byte frame header and, for a
//! `ChangeBatch` or a `Snapshot`, skips to the first value to take the publisher's
//! timestamp;
//! the NATS reader splits `MSG <subject> <sid> [reply] <len>\r\n<payload>\r\n` and
//! answers `PING` with `PONG`. The payload of both starts with the publish time, a
//! big-endian `u64` of nanoseconds since the Unix epoch.

use flotilla_wire::{ClientToFrontend, FrameType, HEADER_LEN, Message, PROTOCOL_VERSION, WorldId};

use crate::BenchError;

/// Bytes of the timestamp at the front of every benchmark payload.
pub const TIMESTAMP_LEN: usize = 8;

/// The longest NATS control line accepted (`INFO` lines are a few hundred bytes).
pub const MAX_NATS_LINE: usize = 64 * 1024;

/// The largest flotilla frame accepted (the protocol's default maximum).
pub const MAX_FLOTILLA_FRAME: usize = flotilla_wire::DEFAULT_MAX_FRAME_LEN;

/// Something an observer's decoder saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeanEvent {
    /// A published change arrived, stamped at publication (ns since the Unix epoch).
    Delivered {
        /// The publisher's timestamp.
        published_ns: u64,
    },
    /// The subscription is in place (flotilla: a snapshot arrived; NATS: the `PONG`
    /// answering the `PING` sent after `SUB`). For flotilla a later snapshot means the
    /// front-end resynced this observer (a slow one, or one whose queued batches were
    /// coalesced into the latest state).
    Subscribed {
        /// The state's timestamp (flotilla: the first entry's value starts with the
        /// publisher's timestamp; `None` for an empty world, a value too short, or NATS).
        published_ns: Option<u64>,
    },
    /// The server asked for a keep-alive answer: write these bytes back.
    Reply(Vec<u8>),
    /// The server reported an error (flotilla `Error` frame, NATS `-ERR`).
    ServerError,
}

/// The protocol an observer speaks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// flotilla frames from a front-end.
    Flotilla,
    /// NATS text protocol from nats-server.
    Nats,
}

impl Protocol {
    /// Decodes every complete unit at the front of `buf`, calling `on_event` for each
    /// event, and returns the number of bytes consumed (the rest is an incomplete unit).
    pub fn decode(
        self,
        buf: &[u8],
        on_event: &mut impl FnMut(LeanEvent),
    ) -> Result<usize, BenchError> {
        match self {
            Protocol::Flotilla => decode_flotilla(buf, on_event),
            Protocol::Nats => decode_nats(buf, on_event),
        }
    }

    /// The bytes a new observer sends right after connecting: flotilla `Hello` +
    /// `Subscribe{target}`; NATS `CONNECT` + `SUB target 1` + `PING`.
    pub fn handshake(self, target: &str) -> Result<Vec<u8>, BenchError> {
        match self {
            Protocol::Flotilla => {
                let world = WorldId::new(target)
                    .map_err(|e| BenchError::InvalidConfig(format!("world id {target:?}: {e}")))?;
                let mut out = bytes::BytesMut::new();
                ClientToFrontend::Hello {
                    version: PROTOCOL_VERSION,
                    session_token: None,
                    client_name: "bench-observer".into(),
                }
                .encode(&mut out);
                ClientToFrontend::Subscribe { world, since: None }.encode(&mut out);
                Ok(out.to_vec())
            }
            Protocol::Nats => {
                if target.is_empty() || target.bytes().any(|b| b.is_ascii_whitespace()) {
                    return Err(BenchError::InvalidConfig(format!(
                        "NATS subject {target:?} must be one non-empty token"
                    )));
                }
                Ok(format!(
                    "CONNECT {{\"verbose\":false,\"pedantic\":false,\"name\":\"bench-observer\"}}\r\nSUB {target} 1\r\nPING\r\n"
                )
                .into_bytes())
            }
        }
    }

    /// Bytes an observer sends now and then so a quiet server does not close it
    /// (flotilla front-ends close a welcomed client that sent no frame for 60 s). NATS
    /// needs none: the server pings and the reader answers.
    pub fn keepalive(self) -> Option<Vec<u8>> {
        match self {
            Protocol::Flotilla => Some(
                ClientToFrontend::Ping { nonce: 0 }
                    .encode_to_bytes()
                    .to_vec(),
            ),
            Protocol::Nats => None,
        }
    }
}

/// Reads an unsigned LEB128 varint at `*pos`; `Ok(None)` if `buf` ends first.
fn read_varint(buf: &[u8], pos: &mut usize) -> Result<Option<u64>, BenchError> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let Some(&byte) = buf.get(*pos) else {
            return Ok(None);
        };
        *pos += 1;
        if shift == 63 && byte > 1 {
            break;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(BenchError::Protocol("varint longer than 64 bits".into()))
}

/// Skips a `bytes` field (varint length + bytes) and returns the bytes.
fn read_bytes<'a>(body: &'a [u8], pos: &mut usize, what: &str) -> Result<&'a [u8], BenchError> {
    let truncated = || BenchError::Protocol(format!("frame truncated in {what}"));
    let len = read_varint(body, pos)?.ok_or_else(truncated)?;
    let len = usize::try_from(len).map_err(|_| truncated())?;
    let end = pos.checked_add(len).ok_or_else(truncated)?;
    let bytes = body.get(*pos..end).ok_or_else(truncated)?;
    *pos = end;
    Ok(bytes)
}

/// The publish timestamp of a `ChangeBatch` body: its first upsert's value starts with it.
/// `None` for a batch without upserts or with a value too short to carry one.
pub fn change_batch_timestamp(body: &[u8]) -> Result<Option<u64>, BenchError> {
    first_value_timestamp(body, "ChangeBatch", false)
}

/// The publish timestamp of a `Snapshot` body: its first entry's value starts with it.
/// `None` for a snapshot without entries or with a value too short to carry one.
pub fn snapshot_timestamp(body: &[u8]) -> Result<Option<u64>, BenchError> {
    first_value_timestamp(body, "Snapshot", true)
}

/// Both bodies are `world, epoch, seq, [part,] count, key, value, ...`: the timestamp at
/// the front of the first value.
fn first_value_timestamp(
    body: &[u8],
    what: &str,
    has_part: bool,
) -> Result<Option<u64>, BenchError> {
    let mut pos = 0;
    read_bytes(body, &mut pos, "world")?;
    pos += 8; // epoch
    let truncated = || BenchError::Protocol(format!("{what} truncated"));
    read_varint(body, &mut pos)?.ok_or_else(truncated)?; // seq
    if has_part {
        pos += 1;
    }
    let count = read_varint(body, &mut pos)?.ok_or_else(truncated)?;
    if count == 0 {
        return Ok(None);
    }
    read_bytes(body, &mut pos, "key")?;
    let value = read_bytes(body, &mut pos, "value")?;
    Ok(value
        .get(..TIMESTAMP_LEN)
        .and_then(|stamp| <[u8; TIMESTAMP_LEN]>::try_from(stamp).ok())
        .map(u64::from_be_bytes))
}

fn decode_flotilla(buf: &[u8], on_event: &mut impl FnMut(LeanEvent)) -> Result<usize, BenchError> {
    let mut consumed = 0;
    loop {
        let rest = buf.get(consumed..).unwrap_or_default();
        let Some(header) = rest.get(..HEADER_LEN) else {
            return Ok(consumed);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len == 0 || len > MAX_FLOTILLA_FRAME {
            return Err(BenchError::Protocol(format!(
                "frame length {len} out of range"
            )));
        }
        let total = 4 + len;
        let Some(frame) = rest.get(..total) else {
            return Ok(consumed);
        };
        let body = frame.get(HEADER_LEN..).unwrap_or_default();
        match FrameType::from_u8(header[4]) {
            Some(FrameType::ChangeBatch) => {
                if let Some(published_ns) = change_batch_timestamp(body)? {
                    on_event(LeanEvent::Delivered { published_ns });
                }
            }
            Some(FrameType::Snapshot) => on_event(LeanEvent::Subscribed {
                published_ns: snapshot_timestamp(body)?,
            }),
            Some(FrameType::Ping) => {
                let nonce = body
                    .get(..8)
                    .and_then(|n| <[u8; 8]>::try_from(n).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| BenchError::Protocol("short Ping".into()))?;
                on_event(LeanEvent::Reply(
                    ClientToFrontend::Pong { nonce }.encode_to_bytes().to_vec(),
                ));
            }
            Some(FrameType::Error) => on_event(LeanEvent::ServerError),
            Some(_) => {}
            None => {
                return Err(BenchError::Protocol(format!(
                    "unknown frame type 0x{:02x}",
                    header[4]
                )));
            }
        }
        consumed += total;
    }
}

fn decode_nats(buf: &[u8], on_event: &mut impl FnMut(LeanEvent)) -> Result<usize, BenchError> {
    let mut consumed = 0;
    loop {
        let rest = buf.get(consumed..).unwrap_or_default();
        let Some(line_len) = find_crlf(rest) else {
            if rest.len() > MAX_NATS_LINE {
                return Err(BenchError::Protocol("NATS line too long".into()));
            }
            return Ok(consumed);
        };
        let line = rest.get(..line_len).unwrap_or_default();
        let after_line = line_len + 2;
        if let Some(args) = line.strip_prefix(b"MSG ") {
            let len = args
                .rsplit(|&b| b == b' ')
                .next()
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| BenchError::Protocol("MSG line without a length".into()))?;
            let end = after_line
                .checked_add(len)
                .and_then(|end| end.checked_add(2))
                .ok_or_else(|| BenchError::Protocol("MSG length overflows".into()))?;
            let Some(unit) = rest.get(..end) else {
                return Ok(consumed);
            };
            let payload = unit.get(after_line..after_line + len).unwrap_or_default();
            if unit.get(end - 2..) != Some(b"\r\n".as_slice()) {
                return Err(BenchError::Protocol(
                    "MSG payload not followed by CRLF".into(),
                ));
            }
            if let Some(stamp) = payload
                .get(..TIMESTAMP_LEN)
                .and_then(|s| <[u8; TIMESTAMP_LEN]>::try_from(s).ok())
            {
                on_event(LeanEvent::Delivered {
                    published_ns: u64::from_be_bytes(stamp),
                });
            }
            consumed += end;
            continue;
        }
        match line {
            b"PING" => on_event(LeanEvent::Reply(b"PONG\r\n".to_vec())),
            b"PONG" => on_event(LeanEvent::Subscribed { published_ns: None }),
            _ if line.starts_with(b"-ERR") => on_event(LeanEvent::ServerError),
            _ => {} // INFO, +OK
        }
        consumed += after_line;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|pair| pair == b"\r\n")
}

/// The bytes of one connection that arrived but do not yet form a whole unit.
#[derive(Debug, Default)]
pub struct StreamBuffer {
    pending: Vec<u8>,
}

impl StreamBuffer {
    /// Decodes `chunk` (just read) after whatever was pending, keeping the new
    /// incomplete tail. Whole units straight from `chunk` are decoded without copying.
    pub fn feed(
        &mut self,
        protocol: Protocol,
        chunk: &[u8],
        on_event: &mut impl FnMut(LeanEvent),
    ) -> Result<(), BenchError> {
        if self.pending.is_empty() {
            let used = protocol.decode(chunk, on_event)?;
            self.pending
                .extend_from_slice(chunk.get(used..).unwrap_or_default());
        } else {
            self.pending.extend_from_slice(chunk);
            let used = protocol.decode(&self.pending, on_event)?;
            self.pending.drain(..used.min(self.pending.len()));
        }
        Ok(())
    }

    /// Bytes waiting for the rest of their unit.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// A benchmark payload of `len` bytes (at least [`TIMESTAMP_LEN`]): the timestamp, then
/// filler.
pub fn payload(published_ns: u64, len: usize) -> Vec<u8> {
    let mut out = vec![b'x'; len.max(TIMESTAMP_LEN)];
    if let Some(stamp) = out.get_mut(..TIMESTAMP_LEN) {
        stamp.copy_from_slice(&published_ns.to_be_bytes());
    }
    out
}

/// Now, in nanoseconds since the Unix epoch (CLOCK_REALTIME: comparable across the
/// processes of one machine).
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use flotilla_wire::{FrontendToClient, encode_snapshot};
    use flotilla_world::WorldState;

    /// A front-end's byte stream: welcome, snapshot, ping, three batches, error.
    fn flotilla_stream() -> (Vec<u8>, Vec<LeanEvent>) {
        let world = WorldId::new("fanout").unwrap();
        let mut state = WorldState::new(77);
        let mut out = Vec::new();
        out.extend_from_slice(
            &FrontendToClient::Welcome {
                version: 1,
                session_token: Bytes::from_static(b"tok"),
                resumed: false,
                server_id: "fe".into(),
            }
            .encode_to_bytes(),
        );
        let mut snap = bytes::BytesMut::new();
        encode_snapshot(&world, &state.snapshot(), 1 << 20, &mut snap).unwrap();
        out.extend_from_slice(&snap);
        out.extend_from_slice(&FrontendToClient::Ping { nonce: 9 }.encode_to_bytes());
        let mut expected = vec![
            LeanEvent::Subscribed { published_ns: None },
            LeanEvent::Reply(
                ClientToFrontend::Pong { nonce: 9 }
                    .encode_to_bytes()
                    .to_vec(),
            ),
        ];
        for stamp in [1u64, 1_700_000_000_123_456_789, u64::MAX] {
            let mut tx = state.begin();
            tx.set("k", payload(stamp, 100));
            let batch = tx.commit().unwrap();
            out.extend_from_slice(&flotilla_wire::change_batch_frame(&world, &batch));
            expected.push(LeanEvent::Delivered {
                published_ns: stamp,
            });
        }
        // A resync: the snapshot carries the latest state's timestamp.
        let mut snap = bytes::BytesMut::new();
        encode_snapshot(&world, &state.snapshot(), 1 << 20, &mut snap).unwrap();
        out.extend_from_slice(&snap);
        expected.push(LeanEvent::Subscribed {
            published_ns: Some(u64::MAX),
        });
        out.extend_from_slice(
            &FrontendToClient::Error {
                code: flotilla_wire::ErrorCode::Timeout,
                text: "bye".into(),
            }
            .encode_to_bytes(),
        );
        expected.push(LeanEvent::ServerError);
        (out, expected)
    }

    fn nats_stream() -> (Vec<u8>, Vec<LeanEvent>) {
        let mut out =
            b"INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n+OK\r\nPONG\r\n".to_vec();
        let mut expected = vec![LeanEvent::Subscribed { published_ns: None }];
        for (i, stamp) in [5u64, 1_700_000_000_000_000_001, 42]
            .into_iter()
            .enumerate()
        {
            let body = payload(stamp, 100);
            if i == 1 {
                out.extend_from_slice(
                    format!("MSG fanout 1 reply.to {}\r\n", body.len()).as_bytes(),
                );
            } else {
                out.extend_from_slice(format!("MSG fanout 1 {}\r\n", body.len()).as_bytes());
            }
            out.extend_from_slice(&body);
            out.extend_from_slice(b"\r\n");
            expected.push(LeanEvent::Delivered {
                published_ns: stamp,
            });
            if i == 0 {
                out.extend_from_slice(b"PING\r\n");
                expected.push(LeanEvent::Reply(b"PONG\r\n".to_vec()));
            }
        }
        out.extend_from_slice(b"-ERR 'Slow Consumer'\r\n");
        expected.push(LeanEvent::ServerError);
        (out, expected)
    }

    fn decode_in_chunks(
        protocol: Protocol,
        bytes: &[u8],
        cuts: &[usize],
    ) -> (Vec<LeanEvent>, usize) {
        let mut buffer = StreamBuffer::default();
        let mut events = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(start, bytes.len());
            buffer
                .feed(protocol, &bytes[start..cut], &mut |e| events.push(e))
                .unwrap();
            start = cut;
        }
        (events, buffer.pending_len())
    }

    #[test]
    fn flotilla_split_at_every_byte_boundary() {
        let (bytes, expected) = flotilla_stream();
        for cut in 0..=bytes.len() {
            let (events, pending) = decode_in_chunks(Protocol::Flotilla, &bytes, &[cut]);
            assert_eq!(events, expected, "cut at {cut}");
            assert_eq!(pending, 0);
        }
        // One byte at a time.
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(
            decode_in_chunks(Protocol::Flotilla, &bytes, &cuts).0,
            expected
        );
    }

    #[test]
    fn nats_split_at_every_byte_boundary() {
        let (bytes, expected) = nats_stream();
        for cut in 0..=bytes.len() {
            let (events, pending) = decode_in_chunks(Protocol::Nats, &bytes, &[cut]);
            assert_eq!(events, expected, "cut at {cut}");
            assert_eq!(pending, 0);
        }
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(decode_in_chunks(Protocol::Nats, &bytes, &cuts).0, expected);
    }

    proptest::proptest! {
        #[test]
        fn any_chunking_gives_the_same_events(mut cuts in proptest::collection::vec(0usize..1200, 0..12)) {
            cuts.sort_unstable();
            for (protocol, (bytes, expected)) in [(Protocol::Flotilla, flotilla_stream()), (Protocol::Nats, nats_stream())] {
                let (events, pending) = decode_in_chunks(protocol, &bytes, &cuts);
                proptest::prop_assert_eq!(events, expected);
                proptest::prop_assert_eq!(pending, 0);
            }
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut sink = |_e: LeanEvent| {};
        assert!(
            Protocol::Flotilla
                .decode(b"GET / HTTP/1.1\r\n\r\n", &mut sink)
                .is_err()
        );
        assert!(
            Protocol::Flotilla
                .decode(&[0, 0, 0, 0, 1], &mut sink)
                .is_err()
        );
        assert!(
            Protocol::Flotilla
                .decode(&[0, 0, 0, 1, 0xee], &mut sink)
                .is_err()
        );
        // A ChangeBatch whose body is cut short inside the frame.
        assert!(
            Protocol::Flotilla
                .decode(&[0, 0, 0, 3, 0x13, 5, b'a'], &mut sink)
                .is_err()
        );
        assert!(Protocol::Nats.decode(b"MSG a 1 x\r\n", &mut sink).is_err());
        assert!(
            Protocol::Nats
                .decode(b"MSG a 1 3\r\nabcXY", &mut sink)
                .is_err()
        );
        assert!(
            Protocol::Nats
                .decode(&vec![b'a'; MAX_NATS_LINE + 1], &mut sink)
                .is_err()
        );
        // Incomplete input is not an error: nothing consumed yet.
        assert_eq!(
            Protocol::Nats
                .decode(b"MSG a 1 3\r\nab", &mut sink)
                .unwrap(),
            0
        );
        assert_eq!(Protocol::Flotilla.decode(&[0, 0], &mut sink).unwrap(), 0);
    }

    #[test]
    fn handshakes_and_keepalives() {
        let hello = Protocol::Flotilla.handshake("fanout").unwrap();
        let mut decoder = flotilla_wire::Decoder::default();
        decoder.feed(&hello);
        let first: ClientToFrontend = decoder.next_message().unwrap().unwrap();
        assert!(matches!(first, ClientToFrontend::Hello { version: 1, .. }));
        let second: ClientToFrontend = decoder.next_message().unwrap().unwrap();
        assert!(matches!(
            second,
            ClientToFrontend::Subscribe { since: None, .. }
        ));
        assert!(Protocol::Flotilla.handshake("").is_err());
        let nats = String::from_utf8(Protocol::Nats.handshake("fanout").unwrap()).unwrap();
        assert!(nats.starts_with("CONNECT {") && nats.ends_with("SUB fanout 1\r\nPING\r\n"));
        assert!(Protocol::Nats.handshake("a b").is_err());
        assert!(Protocol::Flotilla.keepalive().is_some());
        assert!(Protocol::Nats.keepalive().is_none());
        assert_eq!(&payload(7, 3), &7u64.to_be_bytes());
        assert!(unix_now_ns() > 1_600_000_000_000_000_000);
    }
}
