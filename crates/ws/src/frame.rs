//! Frame encoding (RFC 6455 §5.2): opcodes, headers, masking and whole frames.

use crate::WsError;

/// The longest frame header: 2 bytes, an 8-byte extended length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest payload of a control frame (Close, Ping, Pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (the low 4 bits of its first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// `0x0`: a further fragment of the open message.
    Continuation,
    /// `0x1`: the first frame of a UTF-8 text message.
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: the closing handshake.
    Close,
    /// `0x9`: a ping; answer with a Pong carrying the same payload.
    Ping,
    /// `0xA`: a pong.
    Pong,
}

impl Opcode {
    /// The opcode with this 4-bit value, or `None` for a reserved value.
    #[must_use]
    pub fn from_u8(value: u8) -> Option<Opcode> {
        match value {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// The opcode's 4-bit value.
    #[must_use]
    pub fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (Close, Ping, Pong).
    #[must_use]
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

impl From<Opcode> for u8 {
    fn from(opcode: Opcode) -> u8 {
        opcode.as_u8()
    }
}

impl TryFrom<u8> for Opcode {
    type Error = WsError;

    fn try_from(value: u8) -> Result<Opcode, WsError> {
        Opcode::from_u8(value).ok_or(WsError::UnknownOpcode(value))
    }
}

/// Writes a frame header into `out` and returns its length (2 to 14 bytes).
///
/// The length uses the shortest form: 7 bits up to 125, 16 bits up to 65535, 64 bits
/// beyond. `payload_len` must be below 2^63 (RFC 6455 §5.2). With `mask`, the MASK bit and
/// the key are written; masking the payload itself is the caller's job ([`apply_mask`]).
pub fn encode_header(
    fin: bool,
    opcode: Opcode,
    payload_len: u64,
    mask: Option<[u8; 4]>,
    out: &mut [u8; MAX_HEADER_LEN],
) -> usize {
    debug_assert!(payload_len >> 63 == 0, "payload length must be below 2^63");
    out[0] = if fin { 0x80 } else { 0 } | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut len = match payload_len {
        0..=125 => {
            // The match arm bounds the value to 7 bits.
            out[1] = mask_bit | payload_len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&payload_len.to_be_bytes());
            10
        }
    };
    if let Some(mask) = mask {
        out[len..len + 4].copy_from_slice(&mask);
        len += 4;
    }
    len
}

/// XORs `bytes` with the masking key (RFC 6455 §5.3), starting at position `offset` of the
/// masked payload (so a payload can be (un)masked in pieces). Masking twice restores the
/// bytes.
pub fn apply_mask(bytes: &mut [u8], mask: [u8; 4], offset: usize) {
    let rotated = mask_rotated(mask, offset);
    let [k0, k1, k2, k3] = rotated;
    // The key repeated twice in memory order: XOR-ing 8 bytes at a time is endian-neutral.
    let wide_key = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let (words, tail) = bytes.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ wide_key).to_ne_bytes();
    }
    for (byte, key_byte) in tail.iter_mut().zip(rotated.iter().cycle()) {
        *byte ^= key_byte;
    }
}

/// The masking key as seen from position `offset` of the payload.
fn mask_rotated(mask: [u8; 4], offset: usize) -> [u8; 4] {
    let mut rotated = mask;
    rotated.rotate_left(offset % 4);
    rotated
}

/// A whole unfragmented frame (FIN set) from a server: unmasked.
#[must_use]
pub fn server_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(true, opcode, payload.len() as u64, None, &mut header);
    let mut frame = Vec::with_capacity(header_len + payload.len());
    frame.extend_from_slice(&header[..header_len]);
    frame.extend_from_slice(payload);
    frame
}

/// A whole unfragmented frame (FIN set) from a client: masked with `mask` (which a real
/// client draws at random for every frame).
#[must_use]
pub fn client_frame(opcode: Opcode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(true, opcode, payload.len() as u64, Some(mask), &mut header);
    let mut frame = Vec::with_capacity(header_len + payload.len());
    frame.extend_from_slice(&header[..header_len]);
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[header_len..], mask, 0);
    frame
}

/// The payload of a Close frame: the big-endian code, then the UTF-8 reason, cut at a
/// character boundary so the payload fits the 125-byte control frame limit.
#[must_use]
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut reason_len = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(reason_len) {
        reason_len -= 1;
    }
    let mut payload = Vec::with_capacity(2 + reason_len);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..reason_len]);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_round_trip() {
        for value in 0..=0xFFu8 {
            match Opcode::from_u8(value) {
                Some(opcode) => {
                    assert_eq!(u8::from(opcode), value);
                    assert_eq!(Opcode::try_from(value), Ok(opcode));
                    assert_eq!(opcode.is_control(), value >= 8);
                }
                None => assert_eq!(Opcode::try_from(value), Err(WsError::UnknownOpcode(value))),
            }
        }
    }

    #[test]
    fn rfc_examples_encode() {
        assert_eq!(
            server_frame(Opcode::Text, b"Hello"),
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            client_frame(Opcode::Text, b"Hello", [0x37, 0xfa, 0x21, 0x3d]),
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
        assert_eq!(
            server_frame(Opcode::Ping, b"Hello"),
            [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        let mut header = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_header(false, Opcode::Text, 3, None, &mut header), 2);
        assert_eq!(header[..2], [0x01, 0x03]);
        assert_eq!(
            encode_header(true, Opcode::Continuation, 2, None, &mut header),
            2
        );
        assert_eq!(header[..2], [0x80, 0x02]);
    }

    #[test]
    fn header_length_forms() {
        let mut header = [0u8; MAX_HEADER_LEN];
        let cases: [(u64, &[u8]); 6] = [
            (0, &[0x82, 0x00]),
            (125, &[0x82, 125]),
            (126, &[0x82, 126, 0x00, 126]),
            (256, &[0x82, 126, 0x01, 0x00]),
            (65535, &[0x82, 126, 0xFF, 0xFF]),
            (65536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ];
        for (len, expected) in cases {
            let header_len = encode_header(true, Opcode::Binary, len, None, &mut header);
            assert_eq!(&header[..header_len], expected, "length {len}");
        }
        let header_len = encode_header(
            true,
            Opcode::Binary,
            (1 << 63) - 1,
            Some([1, 2, 3, 4]),
            &mut header,
        );
        assert_eq!(header_len, MAX_HEADER_LEN);
        assert_eq!(
            header,
            [
                0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4
            ]
        );
    }

    #[test]
    fn mask_in_pieces_matches_bytewise() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let original: Vec<u8> = (0..100u8).collect();
        let expected: Vec<u8> = original
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ mask[i % 4])
            .collect();
        for split in 0..original.len() {
            let mut bytes = original.clone();
            let (head, tail) = bytes.split_at_mut(split);
            apply_mask(head, mask, 0);
            apply_mask(tail, mask, split);
            assert_eq!(bytes, expected, "split at {split}");
        }
    }

    #[test]
    fn close_payload_fits_control_frame() {
        assert_eq!(close_payload(1000, "bye"), [0x03, 0xE8, b'b', b'y', b'e']);
        assert_eq!(close_payload(1001, ""), [0x03, 0xE9]);
        let long = "é".repeat(100);
        let payload = close_payload(1000, &long);
        assert_eq!(payload.len(), 124);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
