//! Join tokens at the front-end: the operator's public keys ([`JoinKey`]), the check of a
//! presented token ([`verify`]), and the operator's signing key ([`JoinSigner`], for
//! `flotilla keygen --join` and `flotilla join-token`).
//!
//! The token format is `flotilla_wire`'s ([`JoinToken`], [`JoinClaims`]); this module adds
//! the cryptography (Ed25519, `ring`). A front-end holds public keys only: a compromised
//! front-end cannot mint tokens. PROTOCOL.md ("Join tokens", "Threat model") has the rules.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use flotilla_wire::{JOIN_SIGNATURE_LEN, JoinClaims, JoinToken, WorldId};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

use crate::error::FrontendError;

/// An operator's public key for join tokens (Ed25519, 32 bytes). A front-end accepts a
/// token signed by any of its [`join_keys`](crate::FrontendConfig::join_keys), so a key is
/// rotated by adding the new one, waiting out the old tokens' expiry, then removing the old.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct JoinKey([u8; 32]);

impl JoinKey {
    /// A key from its 32 bytes.
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from its text form: 64 hex digits (what `flotilla keygen --join` prints),
    /// surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Self, FrontendError> {
        crate::config::parse_hex32(text)
            .map(Self)
            .ok_or(FrontendError::InvalidJoinKey(
                "a join key is 64 hex digits (32 bytes)",
            ))
    }

    /// Several keys separated by commas or whitespace (`--join-key A,B`, a key file with
    /// one key a line; `#` starts a comment to the end of its line). At least one.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, FrontendError> {
        let keys = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default())
            .flat_map(|line| line.split([',', ' ', '\t']))
            .filter(|word| !word.is_empty())
            .map(Self::from_hex)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(FrontendError::InvalidJoinKey("no join key given"));
        }
        Ok(keys)
    }

    /// The text form [`JoinKey::from_hex`] reads: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// True when `signature` over `message` verifies under this key.
    fn verifies(&self, message: &[u8], signature: &[u8; JOIN_SIGNATURE_LEN]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for JoinKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinKey({})", self.to_hex())
    }
}

impl fmt::Display for JoinKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A key is written as its 64 hex digits (in recordings' headers).
impl serde::Serialize for JoinKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for JoinKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        JoinKey::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a front-end did not accept a join token: the world it names (when the token can be
/// read that far) and a text for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The token's world, if it could be decoded.
    pub world: Option<WorldId>,
    /// What is wrong, for the client (the `Refused` frame's text).
    pub text: String,
}

/// Checks a presented token, cheapest checks first: its format, its world (not one of the
/// front-end's own `$` worlds), its expiry against `unix_now` (seconds since the Unix
/// epoch; `None` while the front-end does not know the wall-clock time, which refuses
/// every token), then its signature under any of `keys`. Returns its claims.
///
/// With no keys at all the front-end checks nothing and needs no token (everything is
/// allowed there): a well-formed token is answered with its claims, unverified.
pub fn verify(
    keys: &[JoinKey],
    token: &Bytes,
    unix_now: Option<u64>,
) -> Result<JoinClaims, Refusal> {
    let decoded = JoinToken::decode(token).map_err(|error| Refusal {
        world: None,
        text: format!("malformed join token: {error}"),
    })?;
    let claims = decoded.claims();
    let refuse = |text: String| Refusal {
        world: Some(claims.world.clone()),
        text,
    };
    if claims.world.is_reserved() {
        return Err(refuse(format!(
            "join token for {}: worlds starting with `$` are the front-end's own",
            claims.world
        )));
    }
    if keys.is_empty() {
        return Ok(claims.clone());
    }
    let Some(unix_now) = unix_now else {
        return Err(refuse(
            "this front-end does not know the time yet: try again".to_owned(),
        ));
    };
    if claims.expires_unix <= unix_now {
        return Err(refuse(format!(
            "join token for {} expired {} s ago",
            claims.world,
            unix_now - claims.expires_unix
        )));
    }
    let message = decoded.signing_input();
    if !keys
        .iter()
        .any(|key| key.verifies(&message, decoded.signature()))
    {
        return Err(refuse(format!(
            "join token for {}: the signature does not verify under this front-end's keys",
            claims.world
        )));
    }
    Ok(claims.clone())
}

/// The operator's private key for join tokens (Ed25519). Keep it off the front-ends: they
/// need only its public key ([`JoinSigner::public_key`]).
pub struct JoinSigner {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

/// The PEM label of a PKCS#8 private key.
const PEM_LABEL: &str = "PRIVATE KEY";

/// The DER bytes of the first `PRIVATE KEY` block of a PEM text.
fn pem_body(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let after = &text[text.find(&begin)? + begin.len()..];
    let body: String = after[..after.find(&end)?]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

impl JoinSigner {
    /// A new key from the operating system's secure random source.
    pub fn generate() -> Result<Self, FrontendError> {
        let random = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&random)
            .map_err(|_| FrontendError::Entropy("the OS random source failed".into()))?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// A key from its PKCS#8 (DER) bytes (v2, as written here, or v1 as OpenSSL writes).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, FrontendError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|error| {
            FrontendError::InvalidJoinSigner(format!("not an Ed25519 PKCS#8 key: {error}"))
        })?;
        Ok(Self {
            pair,
            pkcs8: der.to_vec(),
        })
    }

    /// Reads a key file: PEM (`-----BEGIN PRIVATE KEY-----`, as written by
    /// [`write_new_file`](Self::write_new_file) or `openssl genpkey -algorithm ed25519`) or
    /// raw PKCS#8 DER.
    pub fn read_file(path: &Path) -> Result<Self, FrontendError> {
        let bytes = std::fs::read(path).map_err(|error| {
            FrontendError::InvalidJoinSigner(format!("reading {}: {error}", path.display()))
        })?;
        let in_file = |error: FrontendError| match error {
            FrontendError::InvalidJoinSigner(text) => {
                FrontendError::InvalidJoinSigner(format!("{}: {text}", path.display()))
            }
            other => other,
        };
        if bytes.starts_with(b"-----BEGIN") {
            let der = pem_body(&bytes).ok_or_else(|| {
                in_file(FrontendError::InvalidJoinSigner(
                    "no PKCS#8 private key (-----BEGIN PRIVATE KEY-----) in it".into(),
                ))
            })?;
            Self::from_pkcs8(&der).map_err(in_file)
        } else {
            Self::from_pkcs8(&bytes).map_err(in_file)
        }
    }

    /// The key as PEM text (PKCS#8).
    pub fn to_pem(&self) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(&self.pkcs8);
        let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
        pem
    }

    /// Writes the key to a new file (refused if it exists), readable by its owner only.
    pub fn write_new_file(&self, path: &Path) -> Result<(), FrontendError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|error| {
            FrontendError::InvalidJoinSigner(format!("creating {}: {error}", path.display()))
        })?;
        file.write_all(self.to_pem().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|error| {
                FrontendError::InvalidJoinSigner(format!("writing {}: {error}", path.display()))
            })
    }

    /// The public key front-ends verify this key's tokens with.
    pub fn public_key(&self) -> JoinKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        JoinKey(key)
    }

    /// A signed token of `claims` (its bytes; `flotilla_wire::join_token_to_text` gives
    /// the text form). Fails only for a subject longer than 64 bytes.
    pub fn sign(&self, claims: &JoinClaims) -> Result<Bytes, FrontendError> {
        claims
            .sign_with(|input| {
                let mut signature = [0u8; JOIN_SIGNATURE_LEN];
                signature.copy_from_slice(self.pair.sign(input).as_ref());
                signature
            })
            .map_err(|error| FrontendError::InvalidJoinSigner(error.to_string()))
    }
}

impl fmt::Debug for JoinSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinSigner(public {})", self.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_wire::Role;

    fn claims(expires_unix: u64) -> JoinClaims {
        JoinClaims {
            expires_unix,
            role: Role::Player,
            world: WorldId::new("arena").unwrap(),
            subject: "ada".into(),
        }
    }

    #[test]
    fn tokens_verify_under_any_configured_key_until_they_expire() {
        let first = JoinSigner::generate().unwrap();
        let second = JoinSigner::generate().unwrap();
        let keys = [first.public_key(), second.public_key()];
        let token = second.sign(&claims(1_000)).unwrap();
        assert_eq!(verify(&keys, &token, Some(999)).unwrap(), claims(1_000));
        let refusal = verify(&keys, &token, Some(1_000)).unwrap_err();
        assert!(refusal.text.contains("expired 0 s ago"), "{refusal:?}");
        assert_eq!(refusal.world, Some(WorldId::new("arena").unwrap()));
        let refusal = verify(&keys, &token, None).unwrap_err();
        assert!(
            refusal.text.contains("does not know the time"),
            "{refusal:?}"
        );
        // Another key: refused; one flipped bit: refused.
        let refusal = verify(&[first.public_key()], &token, Some(5)).unwrap_err();
        assert!(refusal.text.contains("does not verify"), "{refusal:?}");
        let mut forged = token.to_vec();
        forged[1] ^= 1; // the expiry
        assert!(verify(&keys, &Bytes::from(forged), Some(5)).is_err());
        let refusal = verify(&keys, &Bytes::from_static(b"junk"), Some(5)).unwrap_err();
        assert_eq!(refusal.world, None);
        assert!(
            refusal.text.starts_with("malformed join token"),
            "{refusal:?}"
        );
        // Without keys nothing is checked (but the format).
        assert_eq!(verify(&[], &token, None).unwrap(), claims(1_000));
        // The front-end's own worlds take no tokens.
        let directory = JoinClaims {
            world: WorldId::DIRECTORY,
            ..claims(1_000)
        };
        assert!(verify(&keys, &first.sign(&directory).unwrap(), Some(5)).is_err());
    }

    #[test]
    fn keys_read_and_write_their_text_forms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("join.pem");
        let signer = JoinSigner::generate().unwrap();
        signer.write_new_file(&path).unwrap();
        assert!(signer.write_new_file(&path).is_err(), "never overwritten");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = JoinSigner::read_file(&path).unwrap();
        assert_eq!(again.public_key(), signer.public_key());
        std::fs::write(dir.path().join("der"), &signer.pkcs8).unwrap();
        let der = JoinSigner::read_file(&dir.path().join("der")).unwrap();
        assert_eq!(der.public_key(), signer.public_key());
        std::fs::write(dir.path().join("bad"), "-----BEGIN NOTHING-----\n").unwrap();
        let error = JoinSigner::read_file(&dir.path().join("bad")).unwrap_err();
        assert!(error.to_string().contains("bad"), "{error}");

        let key = signer.public_key();
        assert_eq!(JoinKey::from_hex(&key.to_hex()).unwrap(), key);
        let list = format!("{key}, {}\n# old key\n{}", key.to_hex(), "ab".repeat(32));
        assert_eq!(JoinKey::parse_list(&list).unwrap().len(), 3);
        assert!(JoinKey::parse_list(" # nothing\n").is_err());
        assert!(JoinKey::from_hex("abc").is_err());
        assert!(JoinKey::from_hex(&"zz".repeat(32)).is_err());
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<JoinKey>(&json).unwrap(), key);
    }
}
