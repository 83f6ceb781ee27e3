//! Join tokens: the operator's signed permission for one subject to act in one world, as
//! a player (inputs) or an observer (watching), until an expiry.
//!
//! The format is written here once (PROTOCOL.md, "Join tokens"); the signature itself
//! (Ed25519) is made and checked by the crates that hold keys (the front-end verifies,
//! the operator's tools sign), over [`JoinToken::signing_input`].
//!
//! ```text
//! token   = payload || signature (64 bytes, Ed25519)
//! payload = version u8 (1) | expires u64be (unix seconds) | role u8 (0 observer, 1 player)
//!         | world (`bytes` of 1..=255 UTF-8 bytes) | subject (`text`, at most 64 bytes)
//! signed  = "flotilla-join-v1" || payload
//! text    = base64url of the token, without padding
//! ```

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use crate::body::{put_bytes, read_world};
use crate::error::WireError;
use crate::frame::{FrameType, Reader};
use crate::world_id::WorldId;

/// The version byte of the tokens this crate writes and reads.
pub const JOIN_TOKEN_VERSION: u8 = 1;

/// What a token's signature covers before its payload: a domain separator, so that a
/// signature made for anything else with the operator's key is never a valid token.
pub const JOIN_SIGNING_CONTEXT: &[u8; 16] = b"flotilla-join-v1";

/// Bytes of a token's signature (Ed25519).
pub const JOIN_SIGNATURE_LEN: usize = 64;

/// The longest subject (the player's name), in bytes of UTF-8.
pub const MAX_JOIN_SUBJECT_LEN: usize = 64;

/// The longest token: version, expiry, role, the longest world id and subject with their
/// length prefixes, and the signature.
pub const MAX_JOIN_TOKEN_LEN: usize =
    1 + 8 + 1 + 2 + crate::MAX_WORLD_ID_LEN + 1 + MAX_JOIN_SUBJECT_LEN + JOIN_SIGNATURE_LEN;

/// What a join token lets its holder do in its world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Role {
    /// Watch the world (subscribe), where the front-end does not let anyone watch.
    Observer,
    /// Watch the world and send it inputs.
    Player,
}

impl Role {
    /// The role's byte on the wire and in tokens: 0 observer, 1 player.
    pub fn to_u8(self) -> u8 {
        match self {
            Role::Observer => 0,
            Role::Player => 1,
        }
    }

    /// The role of a byte, if assigned.
    pub fn from_u8(byte: u8) -> Option<Role> {
        match byte {
            0 => Some(Role::Observer),
            1 => Some(Role::Player),
            _ => None,
        }
    }

    /// True when the role may send inputs.
    pub fn may_send_inputs(self) -> bool {
        self == Role::Player
    }

    /// The role's name: `observer` or `player`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Observer => "observer",
            Role::Player => "player",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = WireError;

    /// `observer` or `player`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "observer" => Ok(Role::Observer),
            "player" => Ok(Role::Player),
            _ => Err(WireError::BadJoinToken {
                reason: "a role is `observer` or `player`",
            }),
        }
    }
}

/// What a join token says: who may do what in which world, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinClaims {
    /// The end of the token's validity, in seconds since the Unix epoch (UTC): the token is
    /// valid while the verifier's clock reads less than this.
    pub expires_unix: u64,
    /// Player (inputs) or observer.
    pub role: Role,
    /// The one world the token is for.
    pub world: WorldId,
    /// Whom the operator issued it to (a player's name, for logs): at most
    /// [`MAX_JOIN_SUBJECT_LEN`] bytes.
    pub subject: String,
}

impl JoinClaims {
    /// The token's payload (what follows the context in the signed message and precedes
    /// the signature). Fails when the subject is too long.
    pub fn payload(&self) -> Result<Bytes, WireError> {
        if self.subject.len() > MAX_JOIN_SUBJECT_LEN {
            return Err(WireError::BadJoinToken {
                reason: "the subject is longer than 64 bytes",
            });
        }
        let mut out = BytesMut::with_capacity(MAX_JOIN_TOKEN_LEN);
        out.put_u8(JOIN_TOKEN_VERSION);
        out.put_u64(self.expires_unix);
        out.put_u8(self.role.to_u8());
        put_bytes(&mut out, self.world.as_bytes());
        put_bytes(&mut out, self.subject.as_bytes());
        Ok(out.freeze())
    }

    /// Makes a whole token: `sign` gets the bytes to sign
    /// ([`JoinToken::signing_input`]'s) and returns their Ed25519 signature.
    pub fn sign_with(
        &self,
        sign: impl FnOnce(&[u8]) -> [u8; JOIN_SIGNATURE_LEN],
    ) -> Result<Bytes, WireError> {
        let payload = self.payload()?;
        let signature = sign(&signing_input(&payload));
        let mut token = BytesMut::with_capacity(payload.len() + JOIN_SIGNATURE_LEN);
        token.put_slice(&payload);
        token.put_slice(&signature);
        Ok(token.freeze())
    }
}

/// The context followed by `payload`.
fn signing_input(payload: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(JOIN_SIGNING_CONTEXT.len() + payload.len());
    input.extend_from_slice(JOIN_SIGNING_CONTEXT);
    input.extend_from_slice(payload);
    input
}

/// A decoded join token: its claims, and what its signature must verify over. Decoding
/// checks the format only; whether the signature verifies (under which key) and whether
/// the token has expired are the verifier's to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    claims: JoinClaims,
    payload: Bytes,
    signature: [u8; JOIN_SIGNATURE_LEN],
}

impl JoinToken {
    /// Decodes a token's bytes (as carried by a `Join` frame).
    pub fn decode(token: &Bytes) -> Result<JoinToken, WireError> {
        if token.len() > MAX_JOIN_TOKEN_LEN {
            return Err(WireError::BadJoinToken {
                reason: "longer than any join token",
            });
        }
        let Some(payload_len) = token.len().checked_sub(JOIN_SIGNATURE_LEN) else {
            return Err(WireError::BadJoinToken {
                reason: "shorter than a signature",
            });
        };
        let payload = token.slice(..payload_len);
        let mut signature = [0u8; JOIN_SIGNATURE_LEN];
        signature.copy_from_slice(&token[payload_len..]);
        let mut reader = Reader::over(payload.clone(), FrameType::Join);
        let version = reader.u8("token.version")?;
        if version != JOIN_TOKEN_VERSION {
            return Err(WireError::JoinTokenVersion(version));
        }
        let expires_unix = reader.u64_be("token.expires")?;
        let tag = reader.u8("token.role")?;
        let role = Role::from_u8(tag).ok_or(WireError::BadTag {
            field: "token.role",
            tag,
        })?;
        // A compact copy: a grant keeps the id past the frame it came in.
        let world = read_world(&mut reader)?;
        let world = WorldId::new(world.as_str()).unwrap_or(world);
        let subject = reader.text("token.subject")?;
        if subject.len() > MAX_JOIN_SUBJECT_LEN {
            return Err(WireError::BadJoinToken {
                reason: "the subject is longer than 64 bytes",
            });
        }
        reader.finish()?;
        Ok(JoinToken {
            claims: JoinClaims {
                expires_unix,
                role,
                world,
                subject,
            },
            payload,
            signature,
        })
    }

    /// What the token says.
    pub fn claims(&self) -> &JoinClaims {
        &self.claims
    }

    /// The token's signature.
    pub fn signature(&self) -> &[u8; JOIN_SIGNATURE_LEN] {
        &self.signature
    }

    /// The bytes the signature must verify over: [`JOIN_SIGNING_CONTEXT`] followed by the
    /// payload exactly as received.
    pub fn signing_input(&self) -> Vec<u8> {
        signing_input(&self.payload)
    }
}

/// A token's text form (what `flotilla join-token` prints): base64url without padding.
pub fn join_token_to_text(token: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
}

/// A token from its text form ([`join_token_to_text`]); surrounding whitespace is ignored.
/// Checks the encoding only: decode the bytes with [`JoinToken::decode`].
pub fn join_token_from_text(text: &str) -> Result<Bytes, WireError> {
    let text = text.trim();
    if text.len() > MAX_JOIN_TOKEN_LEN.div_ceil(3) * 4 {
        return Err(WireError::BadJoinToken {
            reason: "longer than any join token",
        });
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map(Bytes::from)
        .map_err(|_| WireError::BadJoinToken {
            reason: "not base64url without padding",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> JoinClaims {
        JoinClaims {
            expires_unix: 1_700_000_000,
            role: Role::Player,
            world: WorldId::new("arena-1").unwrap(),
            subject: "ada".into(),
        }
    }

    #[test]
    fn a_token_round_trips_through_bytes_and_text() {
        let mut seen = Vec::new();
        let token = claims()
            .sign_with(|input| {
                seen = input.to_vec();
                [7; 64]
            })
            .unwrap();
        let decoded = JoinToken::decode(&token).unwrap();
        assert_eq!(decoded.claims(), &claims());
        assert_eq!(decoded.signature(), &[7; 64]);
        assert_eq!(decoded.signing_input(), seen);
        assert!(seen.starts_with(b"flotilla-join-v1\x01"));
        let text = join_token_to_text(&token);
        assert!(!text.contains('=') && !text.contains('+') && !text.contains('/'));
        assert_eq!(join_token_from_text(&format!(" {text}\n")).unwrap(), token);
        // The layout, byte by byte.
        let mut expected = vec![1];
        expected.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        expected.extend_from_slice(&[1, 7]);
        expected.extend_from_slice(b"arena-1");
        expected.extend_from_slice(&[3]);
        expected.extend_from_slice(b"ada");
        expected.extend_from_slice(&[7; 64]);
        assert_eq!(token.as_ref(), expected.as_slice());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let token = claims().sign_with(|_| [0; 64]).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "shorter than a signature"),
            (token[..70].to_vec(), "truncated"),
            ([&[2u8][..], &token[1..]].concat(), "version 2"),
            (
                {
                    let mut t = token.to_vec();
                    t[9] = 5;
                    t
                },
                "bad tag 5",
            ),
            (
                {
                    let mut t = token[..token.len() - 64].to_vec();
                    t.push(0);
                    t.extend_from_slice(&[0; 64]);
                    t
                },
                "trailing",
            ),
            (vec![0; MAX_JOIN_TOKEN_LEN + 1], "longer than any"),
        ];
        for (bytes, expected) in cases {
            let error = JoinToken::decode(&Bytes::from(bytes)).unwrap_err();
            assert!(
                error.to_string().contains(expected),
                "{error} vs {expected}"
            );
        }
        let long = JoinClaims {
            subject: "x".repeat(65),
            ..claims()
        };
        assert!(long.sign_with(|_| [0; 64]).is_err());
        assert!(join_token_from_text("not base64!").is_err());
        assert!(
            join_token_from_text("AAAA==").is_err(),
            "padding is refused"
        );
        assert_eq!("player".parse::<Role>().unwrap(), Role::Player);
        assert_eq!("observer".parse::<Role>().unwrap(), Role::Observer);
        assert!("admin".parse::<Role>().is_err());
    }
}
