//! The streaming frame decoder: bytes in arbitrary pieces in, one binary byte stream and
//! control frames out.

use crate::frame::{MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, Opcode, apply_mask};
use crate::{WsError, close_code};

/// Which end of the connection a [`FrameDecoder`] decodes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Decodes what a client sent: every frame must be masked.
    Server,
    /// Decodes what a server sent: no frame may be masked.
    Client,
}

/// A decoded control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A Ping: answer with a Pong carrying the same payload (at most 125 bytes).
    Ping(Vec<u8>),
    /// A Pong (at most 125 bytes of payload).
    Pong(Vec<u8>),
    /// A Close: answer with a Close (echoing the code is customary) and close the
    /// connection. `code` is `None` for an empty Close payload.
    Close {
        /// The status code, already checked to be one a peer may send.
        code: Option<u16>,
        /// The reason, already checked to be UTF-8.
        reason: String,
    },
}

/// A sensible limit on the control frames one [`FrameDecoder::decode`] call may append.
pub const DEFAULT_MAX_PENDING_CONTROLS: u32 = 32;

/// What the decoder is in the middle of.
#[derive(Debug)]
enum Phase {
    /// Reading a frame header; `len` bytes of it are buffered in `bytes`.
    Header {
        bytes: [u8; MAX_HEADER_LEN],
        len: u8,
    },
    /// Reading a frame's payload.
    Payload {
        kind: PayloadKind,
        remaining: u64,
        mask: Option<[u8; 4]>,
        /// Position in the payload modulo 4: where the mask continues.
        mask_offset: u8,
    },
    /// A Close frame was decoded; all further input is ignored.
    Closed,
    /// Decoding failed; every further call returns this error.
    Failed(WsError),
}

impl Phase {
    const NEXT_HEADER: Phase = Phase::Header {
        bytes: [0; MAX_HEADER_LEN],
        len: 0,
    };
}

/// Where a frame's payload goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadKind {
    /// Binary message bytes: to the caller's data stream.
    Data,
    /// A Ping payload, gathered in the control buffer.
    Ping,
    /// A Pong payload, gathered in the control buffer.
    Pong,
    /// A Close payload, gathered in the control buffer.
    Close,
}

/// A frame header as it was on the wire, not yet checked.
#[derive(Debug, Clone, Copy)]
struct RawHeader {
    first_byte: u8,
    payload_len: u64,
    mask: Option<[u8; 4]>,
}

/// Decodes a stream of frames for one connection, incrementally (RFC 6455 §5).
///
/// Binary messages are flattened: the payloads of all Binary frames and of their
/// Continuation frames are appended, unmasked, to one byte stream, whatever the message
/// and frame boundaries. Text messages are refused ([`WsError::TextMessage`]). Control
/// frames are returned whole as [`Control`]s.
///
/// The decoder keeps at most a partial header (14 bytes, inline) and the partial payload of
/// one control frame (at most 125 bytes, on the heap only while that frame is incomplete),
/// so an idle decoder holds no heap memory and is small (56 bytes on 64-bit targets).
///
/// After a Close frame, the rest of the input (in that call and later ones) is ignored:
/// `decode` returns `Ok(())` and appends nothing. After an error, every later call returns
/// the same error and appends nothing.
#[derive(Debug)]
pub struct FrameDecoder {
    phase: Phase,
    /// The payload of the control frame being read; empty (no allocation) otherwise.
    control_payload: Vec<u8>,
    max_pending_controls: u32,
    role: Role,
    /// Whether a fragmented binary message is open (its last frame had no FIN).
    message_open: bool,
}

impl FrameDecoder {
    /// A decoder for the frames `role`'s peer sends.
    ///
    /// `max_pending_controls` bounds the memory a ping flood can make one
    /// [`decode`](FrameDecoder::decode) call use: a control frame that would make `controls`
    /// longer than this is [`WsError::TooManyControlFrames`] (so drain `controls` between
    /// calls). See [`DEFAULT_MAX_PENDING_CONTROLS`].
    #[must_use]
    pub fn new(role: Role, max_pending_controls: u32) -> FrameDecoder {
        FrameDecoder {
            phase: Phase::NEXT_HEADER,
            control_payload: Vec::new(),
            max_pending_controls,
            role,
            message_open: false,
        }
    }

    /// The role this decoder decodes for.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// Decodes all of `input`: binary payload bytes are appended to `data`, control frames
    /// to `controls`. Bytes of an incomplete header or control frame are kept for the next
    /// call.
    ///
    /// On error, the connection should be closed with a Close frame carrying
    /// [`WsError::close_code`]; payload decoded before the offending frame has been appended.
    pub fn decode(
        &mut self,
        input: &[u8],
        data: &mut Vec<u8>,
        controls: &mut Vec<Control>,
    ) -> Result<(), WsError> {
        let result = self.decode_frames(input, data, controls);
        if let Err(error) = result {
            self.phase = Phase::Failed(error);
            self.control_payload = Vec::new();
        }
        result
    }

    /// Whether no partial frame header or control frame is buffered (the decoder is
    /// between frames, in the middle of a binary frame's payload, closed or failed): the
    /// decoder then holds no heap memory and a caller may release its own buffers.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        match self.phase {
            Phase::Header { len, .. } => len == 0,
            Phase::Payload { kind, .. } => kind == PayloadKind::Data,
            Phase::Closed | Phase::Failed(_) => true,
        }
    }

    /// Whether a Close frame has been decoded (later input is ignored).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// The loop behind [`decode`](FrameDecoder::decode); an error is recorded by the caller.
    fn decode_frames(
        &mut self,
        mut input: &[u8],
        data: &mut Vec<u8>,
        controls: &mut Vec<Control>,
    ) -> Result<(), WsError> {
        loop {
            match &mut self.phase {
                Phase::Failed(error) => return Err(*error),
                Phase::Closed => return Ok(()),
                Phase::Header { bytes, len } => {
                    let header = if *len == 0 {
                        // Fast path: the whole header is in `input`, no copy.
                        match parse_header(input) {
                            Some((header, header_len)) => {
                                input = &input[header_len..];
                                header
                            }
                            None => {
                                // Shorter than the header needs, so at most 13 bytes.
                                bytes[..input.len()].copy_from_slice(input);
                                *len = input.len() as u8;
                                return Ok(());
                            }
                        }
                    } else {
                        let mut buffered = usize::from(*len);
                        loop {
                            let needed = header_len_needed(&bytes[..buffered]);
                            if buffered >= needed {
                                break;
                            }
                            let take = (needed - buffered).min(input.len());
                            if take == 0 {
                                *len = buffered as u8;
                                return Ok(());
                            }
                            bytes[buffered..buffered + take].copy_from_slice(&input[..take]);
                            buffered += take;
                            input = &input[take..];
                        }
                        *len = buffered as u8;
                        match parse_header(&bytes[..buffered]) {
                            Some((header, _)) => header,
                            None => return Ok(()),
                        }
                    };
                    self.start_frame(header, controls)?;
                }
                Phase::Payload {
                    kind,
                    remaining,
                    mask,
                    mask_offset,
                } => {
                    let take = usize::try_from(*remaining)
                        .map_or(input.len(), |remaining| remaining.min(input.len()));
                    let (chunk, rest) = input.split_at(take);
                    input = rest;
                    let target = match kind {
                        PayloadKind::Data => &mut *data,
                        _ => &mut self.control_payload,
                    };
                    let start = target.len();
                    target.extend_from_slice(chunk);
                    if let Some(mask) = mask {
                        apply_mask(&mut target[start..], *mask, usize::from(*mask_offset));
                        *mask_offset = ((usize::from(*mask_offset) + take) % 4) as u8;
                    }
                    *remaining -= take as u64;
                    if *remaining > 0 {
                        return Ok(());
                    }
                    let kind = *kind;
                    self.phase = Phase::NEXT_HEADER;
                    if kind != PayloadKind::Data {
                        self.finish_control(kind, controls)?;
                    }
                }
            }
        }
    }

    /// Checks a complete header against the protocol and this decoder's state, and moves
    /// to its payload.
    fn start_frame(&mut self, header: RawHeader, controls: &[Control]) -> Result<(), WsError> {
        let reserved_bits = (header.first_byte >> 4) & 0x7;
        if reserved_bits != 0 {
            return Err(WsError::ReservedBitsSet(reserved_bits));
        }
        let opcode = Opcode::try_from(header.first_byte & 0x0F)?;
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(WsError::UnmaskedFrame),
            (Role::Client, true) => return Err(WsError::MaskedFrame),
            _ => {}
        }
        if header.payload_len >> 63 != 0 {
            return Err(WsError::PayloadLengthOverflow);
        }
        let fin = header.first_byte & 0x80 != 0;
        let kind = match opcode {
            Opcode::Ping | Opcode::Pong | Opcode::Close => {
                if !fin {
                    return Err(WsError::FragmentedControlFrame);
                }
                if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(WsError::ControlFrameTooLong(header.payload_len));
                }
                if controls.len() >= self.max_pending_controls as usize {
                    return Err(WsError::TooManyControlFrames(self.max_pending_controls));
                }
                self.control_payload = Vec::with_capacity(header.payload_len as usize);
                match opcode {
                    Opcode::Ping => PayloadKind::Ping,
                    Opcode::Pong => PayloadKind::Pong,
                    _ => PayloadKind::Close,
                }
            }
            Opcode::Text => return Err(WsError::TextMessage),
            Opcode::Binary if self.message_open => return Err(WsError::UnfinishedMessage),
            Opcode::Continuation if !self.message_open => {
                return Err(WsError::UnexpectedContinuation);
            }
            Opcode::Binary | Opcode::Continuation => {
                self.message_open = !fin;
                PayloadKind::Data
            }
        };
        self.phase = Phase::Payload {
            kind,
            remaining: header.payload_len,
            mask: header.mask,
            mask_offset: 0,
        };
        Ok(())
    }

    /// Turns the complete control payload into a [`Control`].
    fn finish_control(
        &mut self,
        kind: PayloadKind,
        controls: &mut Vec<Control>,
    ) -> Result<(), WsError> {
        let payload = std::mem::take(&mut self.control_payload);
        let control = match kind {
            PayloadKind::Ping => Control::Ping(payload),
            PayloadKind::Pong => Control::Pong(payload),
            PayloadKind::Close | PayloadKind::Data => {
                let control = parse_close(payload)?;
                self.phase = Phase::Closed;
                control
            }
        };
        controls.push(control);
        Ok(())
    }
}

/// How many header bytes the frame starting with `prefix` has (2 until that is known).
fn header_len_needed(prefix: &[u8]) -> usize {
    match prefix {
        [_, second, ..] => {
            let extended_len = match second & 0x7F {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let mask_len = if second & 0x80 != 0 { 4 } else { 0 };
            2 + extended_len + mask_len
        }
        _ => 2,
    }
}

/// Parses the frame header at the start of `bytes`, or `None` if it is incomplete.
fn parse_header(bytes: &[u8]) -> Option<(RawHeader, usize)> {
    let header_len = header_len_needed(bytes);
    let header = bytes.get(..header_len)?;
    let (first_byte, second_byte) = (header[0], header[1]);
    let (payload_len, mut position) = match second_byte & 0x7F {
        126 => (u64::from(u16::from_be_bytes([header[2], header[3]])), 4),
        127 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&header[2..10]);
            (u64::from_be_bytes(len), 10)
        }
        short_len => (u64::from(short_len), 2),
    };
    let mask = if second_byte & 0x80 != 0 {
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&header[position..position + 4]);
        position += 4;
        Some(mask)
    } else {
        None
    };
    debug_assert_eq!(position, header_len);
    Some((
        RawHeader {
            first_byte,
            payload_len,
            mask,
        },
        header_len,
    ))
}

/// Parses a Close payload (RFC 6455 §5.5.1, §7.4).
fn parse_close(mut payload: Vec<u8>) -> Result<Control, WsError> {
    let code = match payload.as_slice() {
        [] => None,
        [_] => return Err(WsError::CloseFrameTooShort),
        [high, low, ..] => Some(u16::from_be_bytes([*high, *low])),
    };
    if let Some(code) = code {
        if !close_code::may_be_received(code) {
            return Err(WsError::InvalidCloseCode(code));
        }
        payload.drain(..2);
    }
    let reason = String::from_utf8(payload).map_err(|_| WsError::InvalidCloseReason)?;
    Ok(Control::Close { code, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{client_frame, close_payload, encode_header, server_frame};

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Decodes `input` in one call with a fresh decoder.
    fn decode_all(role: Role, input: &[u8]) -> (Result<(), WsError>, Vec<u8>, Vec<Control>) {
        let mut decoder = FrameDecoder::new(role, DEFAULT_MAX_PENDING_CONTROLS);
        let (mut data, mut controls) = (Vec::new(), Vec::new());
        let result = decoder.decode(input, &mut data, &mut controls);
        (result, data, controls)
    }

    /// Decodes `input` one byte at a time; stops at the first error.
    fn decode_bytewise(role: Role, input: &[u8]) -> (Result<(), WsError>, Vec<u8>, Vec<Control>) {
        let mut decoder = FrameDecoder::new(role, DEFAULT_MAX_PENDING_CONTROLS);
        let (mut data, mut controls) = (Vec::new(), Vec::new());
        for byte in input {
            if let Err(error) = decoder.decode(std::slice::from_ref(byte), &mut data, &mut controls)
            {
                return (Err(error), data, controls);
            }
        }
        (Ok(()), data, controls)
    }

    /// Asserts that `input` fails with `expected` for `role`, whole and byte by byte, and
    /// that the decoder keeps failing.
    fn assert_fails(role: Role, input: &[u8], expected: WsError) {
        assert_eq!(
            decode_all(role, input).0,
            Err(expected),
            "whole: {input:02x?}"
        );
        assert_eq!(
            decode_bytewise(role, input).0,
            Err(expected),
            "bytewise: {input:02x?}"
        );
        let mut decoder = FrameDecoder::new(role, DEFAULT_MAX_PENDING_CONTROLS);
        let (mut data, mut controls) = (Vec::new(), Vec::new());
        let _ = decoder.decode(input, &mut data, &mut controls);
        let before = (data.len(), controls.len());
        assert_eq!(
            decoder.decode(
                &server_frame(Opcode::Binary, b"more"),
                &mut data,
                &mut controls
            ),
            Err(expected)
        );
        assert_eq!((data.len(), controls.len()), before);
        assert!(decoder.is_idle());
    }

    /// A client frame with explicit FIN.
    fn masked(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut header = [0u8; MAX_HEADER_LEN];
        let header_len = encode_header(fin, opcode, payload.len() as u64, Some(MASK), &mut header);
        let mut frame = header[..header_len].to_vec();
        let start = frame.len();
        frame.extend_from_slice(payload);
        apply_mask(&mut frame[start..], MASK, 0);
        frame
    }

    #[test]
    fn decoder_is_small() {
        assert!(std::mem::size_of::<FrameDecoder>() <= 64);
        assert!(FrameDecoder::new(Role::Server, 1).is_idle());
    }

    #[test]
    fn rfc_text_examples_are_refused() {
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let masked_hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_fails(Role::Client, &unmasked, WsError::TextMessage);
        assert_fails(Role::Server, &masked_hello, WsError::TextMessage);
        assert_eq!(WsError::TextMessage.close_code(), 1003);
        // Wrong masking is reported before the opcode's content.
        assert_fails(Role::Server, &unmasked, WsError::UnmaskedFrame);
        assert_fails(Role::Client, &masked_hello, WsError::MaskedFrame);
        // The fragmented text example: refused at its first frame.
        let fragmented = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_fails(Role::Client, &fragmented, WsError::TextMessage);
    }

    #[test]
    fn rfc_examples_as_binary() {
        // The masked "Hello" example with the Binary opcode.
        let hello = [
            0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        for decode in [decode_all, decode_bytewise] {
            let (result, data, controls) = decode(Role::Server, &hello);
            assert_eq!(result, Ok(()));
            assert_eq!(data, b"Hello");
            assert!(controls.is_empty());
        }
        // The fragmented example with the Binary opcode, with the ping example in between.
        let stream = [
            &[0x02, 0x03, 0x48, 0x65, 0x6c][..],
            &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            &[0x80, 0x02, 0x6c, 0x6f],
            &[0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        ]
        .concat();
        for decode in [decode_all, decode_bytewise] {
            let (result, data, controls) = decode(Role::Client, &stream);
            assert_eq!(result, Ok(()));
            assert_eq!(data, b"Hello");
            assert_eq!(
                controls,
                [
                    Control::Ping(b"Hello".to_vec()),
                    Control::Pong(b"Hello".to_vec())
                ]
            );
        }
    }

    #[test]
    fn rfc_length_examples() {
        let payload_256: Vec<u8> = (0..=255).collect();
        let frame = server_frame(Opcode::Binary, &payload_256);
        assert_eq!(frame[..4], [0x82, 0x7E, 0x01, 0x00]);
        let (result, data, _) = decode_all(Role::Client, &frame);
        assert_eq!((result, data), (Ok(()), payload_256.clone()));

        let payload_64k: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
        let frame = server_frame(Opcode::Binary, &payload_64k);
        assert_eq!(
            frame[..10],
            [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
        );
        let (result, data, _) = decode_all(Role::Client, &frame);
        assert_eq!((result, data), (Ok(()), payload_64k.clone()));

        let frame = client_frame(Opcode::Binary, &payload_64k, MASK);
        for piece_len in [1, 3, 13, 4096] {
            let mut decoder = FrameDecoder::new(Role::Server, 1);
            let (mut data, mut controls) = (Vec::new(), Vec::new());
            for piece in frame.chunks(piece_len) {
                decoder
                    .decode(piece, &mut data, &mut controls)
                    .expect("valid frame");
            }
            assert_eq!(data, payload_64k);
            assert!(decoder.is_idle());
        }
    }

    #[test]
    fn zero_length_frames() {
        let stream = [
            client_frame(Opcode::Binary, b"", MASK),
            client_frame(Opcode::Ping, b"", MASK),
            client_frame(Opcode::Close, b"", MASK),
        ]
        .concat();
        for decode in [decode_all, decode_bytewise] {
            let (result, data, controls) = decode(Role::Server, &stream);
            assert_eq!(result, Ok(()));
            assert!(data.is_empty());
            assert_eq!(
                controls,
                [
                    Control::Ping(Vec::new()),
                    Control::Close {
                        code: None,
                        reason: String::new()
                    }
                ]
            );
        }
    }

    #[test]
    fn close_frames() {
        let close = client_frame(Opcode::Close, &close_payload(1000, "bye"), MASK);
        let after = client_frame(Opcode::Binary, b"ignored", MASK);
        let mut decoder = FrameDecoder::new(Role::Server, 4);
        let (mut data, mut controls) = (Vec::new(), Vec::new());
        decoder
            .decode(&[close, after.clone()].concat(), &mut data, &mut controls)
            .expect("valid");
        assert!(decoder.is_closed());
        assert!(data.is_empty());
        assert_eq!(
            controls,
            [Control::Close {
                code: Some(1000),
                reason: "bye".into()
            }]
        );
        decoder
            .decode(&after, &mut data, &mut controls)
            .expect("ignored after close");
        assert!(data.is_empty());
        assert_eq!(controls.len(), 1);

        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            let frame = server_frame(Opcode::Close, &close_payload(code, ""));
            let (result, _, controls) = decode_all(Role::Client, &frame);
            assert_eq!(result, Ok(()));
            assert_eq!(
                controls,
                [Control::Close {
                    code: Some(code),
                    reason: String::new()
                }]
            );
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let frame = server_frame(Opcode::Close, &close_payload(code, ""));
            assert_fails(Role::Client, &frame, WsError::InvalidCloseCode(code));
            assert_eq!(WsError::InvalidCloseCode(code).close_code(), 1002);
        }
        assert_fails(
            Role::Client,
            &server_frame(Opcode::Close, &[0x03]),
            WsError::CloseFrameTooShort,
        );
        assert_fails(
            Role::Client,
            &server_frame(Opcode::Close, &[0x03, 0xE8, 0xFF, 0xFE]),
            WsError::InvalidCloseReason,
        );
        assert_eq!(WsError::InvalidCloseReason.close_code(), 1007);
    }

    #[test]
    fn protocol_errors() {
        let binary = server_frame(Opcode::Binary, b"x");
        // RSV1, RSV2, RSV3.
        for (bit, reported) in [(0x40, 4), (0x20, 2), (0x10, 1)] {
            let mut frame = binary.clone();
            frame[0] |= bit;
            assert_fails(Role::Client, &frame, WsError::ReservedBitsSet(reported));
        }
        for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let mut frame = binary.clone();
            frame[0] = 0x80 | opcode;
            assert_fails(Role::Client, &frame, WsError::UnknownOpcode(opcode));
        }
        assert_fails(
            Role::Server,
            &server_frame(Opcode::Binary, b"x"),
            WsError::UnmaskedFrame,
        );
        assert_fails(
            Role::Client,
            &client_frame(Opcode::Binary, b"x", MASK),
            WsError::MaskedFrame,
        );
        assert_fails(
            Role::Server,
            &masked(false, Opcode::Ping, b"x"),
            WsError::FragmentedControlFrame,
        );
        assert_fails(
            Role::Server,
            &client_frame(Opcode::Ping, &[0; 126], MASK),
            WsError::ControlFrameTooLong(126),
        );
        assert_fails(
            Role::Client,
            &server_frame(Opcode::Pong, &[0; 70000]),
            WsError::ControlFrameTooLong(70000),
        );
        assert_fails(
            Role::Server,
            &masked(true, Opcode::Continuation, b"x"),
            WsError::UnexpectedContinuation,
        );
        assert_fails(
            Role::Server,
            &[
                masked(false, Opcode::Binary, b"x"),
                masked(true, Opcode::Binary, b"y"),
            ]
            .concat(),
            WsError::UnfinishedMessage,
        );
        assert_fails(
            Role::Server,
            &[
                masked(false, Opcode::Binary, b"x"),
                masked(true, Opcode::Text, b"y"),
            ]
            .concat(),
            WsError::TextMessage,
        );
        let overflow = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_fails(Role::Client, &overflow, WsError::PayloadLengthOverflow);
        for error in [
            WsError::ReservedBitsSet(4),
            WsError::UnknownOpcode(3),
            WsError::UnmaskedFrame,
            WsError::MaskedFrame,
            WsError::FragmentedControlFrame,
            WsError::ControlFrameTooLong(126),
            WsError::UnexpectedContinuation,
            WsError::UnfinishedMessage,
            WsError::PayloadLengthOverflow,
            WsError::CloseFrameTooShort,
        ] {
            assert_eq!(error.close_code(), 1002, "{error}");
        }
    }

    #[test]
    fn data_before_an_error_is_kept() {
        let stream = [
            client_frame(Opcode::Binary, b"kept", MASK),
            client_frame(Opcode::Text, b"refused", MASK),
        ]
        .concat();
        let (result, data, _) = decode_all(Role::Server, &stream);
        assert_eq!(result, Err(WsError::TextMessage));
        assert_eq!(data, b"kept");
    }

    #[test]
    fn ping_flood_is_bounded() {
        let ping = client_frame(Opcode::Ping, b"p", MASK);
        let mut decoder = FrameDecoder::new(Role::Server, 3);
        let (mut data, mut controls) = (Vec::new(), Vec::new());
        decoder
            .decode(&ping.repeat(3), &mut data, &mut controls)
            .expect("three fit");
        assert_eq!(controls.len(), 3);
        controls.clear();
        decoder
            .decode(&ping.repeat(3), &mut data, &mut controls)
            .expect("drained, three fit again");
        assert_eq!(
            decoder.decode(&ping, &mut data, &mut controls),
            Err(WsError::TooManyControlFrames(3))
        );
        assert_eq!(WsError::TooManyControlFrames(3).close_code(), 1008);
    }

    #[test]
    fn idle_only_between_buffered_parts() {
        let frame = client_frame(Opcode::Binary, b"Hello", MASK);
        let mut decoder = FrameDecoder::new(Role::Server, 4);
        let (mut data, mut controls) = (Vec::new(), Vec::new());
        decoder
            .decode(&frame[..3], &mut data, &mut controls)
            .expect("partial header");
        assert!(!decoder.is_idle());
        decoder
            .decode(&frame[3..8], &mut data, &mut controls)
            .expect("header and payload");
        assert!(decoder.is_idle(), "in a binary payload: nothing buffered");
        decoder
            .decode(&frame[8..], &mut data, &mut controls)
            .expect("rest");
        assert!(decoder.is_idle());
        assert_eq!(data, b"Hello");

        let ping = client_frame(Opcode::Ping, b"Hello", MASK);
        decoder
            .decode(&ping[..8], &mut data, &mut controls)
            .expect("partial ping");
        assert!(!decoder.is_idle());
        decoder
            .decode(&ping[8..], &mut data, &mut controls)
            .expect("rest of ping");
        assert!(decoder.is_idle());
        assert_eq!(controls, [Control::Ping(b"Hello".to_vec())]);
    }
}
