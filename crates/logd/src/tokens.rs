//! Tokens and their hashes: what the per-block filters hold and what a query looks up.
//!
//! A **word byte** is an ASCII letter or digit, `_`, or any byte ≥ 0x80 (so UTF-8 words and
//! stray non-UTF-8 bytes stay inside words). A **token** is a maximal run of word bytes; it
//! is hashed (xxh3) on at most its first [`MAX_TOKEN_HASHED`] bytes. Field values (host,
//! app, msgid, SD params) are hashed whole with a one-byte field tag, so `host=web-1` and
//! the word `web` never collide.
//!
//! A `--grep TEXT` query matches TEXT at word boundaries (see [`find_words`]); then every
//! token of TEXT is a whole token of any matching line, so a block whose filter lacks one of
//! them cannot match.

use xxhash_rust::xxh3::xxh3_64;

/// Tokens longer than this are hashed on their first this many bytes (on both sides).
pub const MAX_TOKEN_HASHED: usize = 128;

/// Field tags of hashed field values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FieldTag {
    /// HOSTNAME.
    Host = 1,
    /// APP-NAME.
    App = 2,
    /// MSGID.
    MsgId = 3,
    /// An SD parameter, hashed as `SD-ID.PARAM=VALUE`.
    SdParam = 4,
    /// PROCID.
    ProcId = 5,
}

/// Whether `b` belongs to a word.
#[inline]
pub fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The hash of one token.
#[inline]
pub fn token_hash(token: &[u8]) -> u64 {
    xxh3_64(&token[..token.len().min(MAX_TOKEN_HASHED)])
}

/// The hash of a field value with its tag.
pub fn field_hash(tag: FieldTag, value: &[u8]) -> u64 {
    // A seed per field keeps field hashes apart from token hashes and from each other.
    xxhash_rust::xxh3::xxh3_64_with_seed(value, 0x6c6f_6764_0000 + tag as u64)
}

/// Calls `f` with each token of `text`.
#[inline]
pub fn for_each_token(text: &[u8], mut f: impl FnMut(&[u8])) {
    let mut start = None;
    for (i, &b) in text.iter().enumerate() {
        if is_word_byte(b) {
            if start.is_none() {
                start = Some(i);
            }
        } else if let Some(s) = start.take() {
            f(&text[s..i]);
        }
    }
    if let Some(s) = start {
        f(&text[s..]);
    }
}

/// The distinct token hashes of a query text.
pub fn text_token_hashes(text: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    for_each_token(text, |t| out.push(token_hash(t)));
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether `needle` occurs in `haystack` at word boundaries: where the needle begins
/// (ends) with a word byte, the byte before (after) the occurrence must not be one.
pub fn find_words(haystack: &[u8], needle: &[u8], finder: &memchr::memmem::Finder<'_>) -> bool {
    let (Some(&first), Some(&last)) = (needle.first(), needle.last()) else {
        return true;
    };
    let check_start = is_word_byte(first);
    let check_end = is_word_byte(last);
    let mut from = 0;
    while let Some(pos) = finder.find(&haystack[from..]) {
        let at = from + pos;
        let end = at + needle.len();
        let start_ok = !check_start || at == 0 || !is_word_byte(haystack[at - 1]);
        let end_ok = !check_end || end == haystack.len() || !is_word_byte(haystack[end]);
        if start_ok && end_ok {
            return true;
        }
        from = at + 1;
        if from >= haystack.len() {
            break;
        }
    }
    false
}

/// A set of 64-bit hashes (open addressing, linear probing): collects a block's distinct
/// token hashes cheaply, as most tokens repeat within a block.
#[derive(Debug, Clone)]
pub struct HashSet64 {
    slots: Vec<u64>,
    len: usize,
    has_zero: bool,
}

impl Default for HashSet64 {
    fn default() -> Self {
        Self::new()
    }
}

impl HashSet64 {
    /// An empty set.
    pub fn new() -> Self {
        HashSet64 {
            slots: vec![0; 1 << 12],
            len: 0,
            has_zero: false,
        }
    }

    /// Number of distinct values.
    pub fn len(&self) -> usize {
        self.len + usize::from(self.has_zero)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a value.
    #[inline]
    pub fn insert(&mut self, value: u64) {
        if value == 0 {
            self.has_zero = true;
            return;
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = (value as usize) & mask;
        loop {
            let slot = self.slots[i];
            if slot == value {
                return;
            }
            if slot == 0 {
                self.slots[i] = value;
                self.len += 1;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let doubled = vec![0; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.len = 0;
        for v in old.into_iter().filter(|&v| v != 0) {
            self.insert(v);
        }
    }

    /// The values, in no particular order; the set is emptied.
    pub fn drain(&mut self) -> Vec<u64> {
        let mut out: Vec<u64> = self.slots.iter().copied().filter(|&v| v != 0).collect();
        if self.has_zero {
            out.push(0);
        }
        self.slots.clear();
        self.slots.resize(1 << 12, 0);
        self.len = 0;
        self.has_zero = false;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_token(text.as_bytes(), |t| {
            out.push(String::from_utf8_lossy(t).into_owned())
        });
        out
    }

    #[test]
    fn tokens_split_on_punctuation_and_keep_utf8() {
        assert_eq!(
            words("<13>1 2024-01-02T03:04:05Z web-1 app - - req=ab12 größe ok."),
            [
                "13", "1", "2024", "01", "02T03", "04", "05Z", "web", "1", "app", "req", "ab12",
                "größe", "ok"
            ]
        );
    }

    #[test]
    fn word_boundaries() {
        let check = |hay: &str, needle: &str| {
            let f = memchr::memmem::Finder::new(needle.as_bytes());
            find_words(hay.as_bytes(), needle.as_bytes(), &f)
        };
        assert!(check("a connection reset", "connection"));
        assert!(!check("a connections reset", "connection"));
        assert!(check("xconnection connection", "connection"));
        assert!(check("error: disk", "error:"));
        assert!(check("id=abc-123 done", "abc-123"));
        assert!(!check("id=abc-1234 done", "abc-123"));
        assert!(check("end abc", "abc"));
    }

    #[test]
    fn hash_set_dedups_across_growth() {
        let mut set = HashSet64::new();
        for round in 0..3 {
            for v in 0..10_000u64 {
                set.insert(v.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            }
            assert_eq!(set.len(), 10_000, "round {round}");
        }
        let mut values = set.drain();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), 10_000);
        assert!(set.is_empty());
    }
}
