//! World ids: short UTF-8 names, cheap to clone and compare.

use std::fmt;

use bytes::Bytes;

use crate::MAX_WORLD_ID_LEN;
use crate::error::WireError;

/// The id of a world: 1 to [`MAX_WORLD_ID_LEN`] bytes of UTF-8, cheap to clone (shares
/// memory with the frame it was decoded from). Ids starting with `$` are reserved for
/// worlds the front-end itself publishes, such as [`WorldId::DIRECTORY`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WorldId(Bytes);

impl WorldId {
    /// `$directory`: the world the front-end publishes listing every world it can reach.
    /// Its keys are world ids; its values are the descriptions game servers gave in
    /// `WorldAdded`.
    pub const DIRECTORY: WorldId = WorldId(Bytes::from_static(b"$directory"));

    /// A world id from a name (copied).
    pub fn new(name: &str) -> Result<WorldId, WireError> {
        Self::check_len(name.len())?;
        Ok(WorldId(Bytes::copy_from_slice(name.as_bytes())))
    }

    /// A world id from bytes (not copied), checked for length and UTF-8.
    pub fn from_bytes(bytes: Bytes) -> Result<WorldId, WireError> {
        Self::check_len(bytes.len())?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(WireError::InvalidUtf8 { field: "world" });
        }
        Ok(WorldId(bytes))
    }

    fn check_len(len: usize) -> Result<(), WireError> {
        if (1..=MAX_WORLD_ID_LEN).contains(&len) {
            Ok(())
        } else {
            Err(WireError::BadWorldId { len })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Checked at construction: never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id's bytes (as they appear on the wire).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// True for ids starting with `$`, reserved for worlds published by front-ends.
    pub fn is_reserved(&self) -> bool {
        self.0.first() == Some(&b'$')
    }
}

impl fmt::Debug for WorldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for WorldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for WorldId {
    type Error = WireError;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        WorldId::new(name)
    }
}

impl TryFrom<String> for WorldId {
    type Error = WireError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::check_len(name.len())?;
        Ok(WorldId(Bytes::from(name)))
    }
}
