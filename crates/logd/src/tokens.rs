//! Tokens and their hashes: what the per-block filters hold and what a query looks up.
//!
//! A **word character** is a letter or digit of any script (Unicode alphanumeric) or `_`;
//! everything else separates words: punctuation, spaces, symbols, a byte-order mark, bytes
//! that are not valid UTF-8. A **token** is a maximal run of word characters; it is hashed (xxh3) on at most its first [`MAX_TOKEN_HASHED`] bytes. Field values (host,
//! app, msgid, SD params) are hashed whole with a one-byte field tag, so `host=web-1` and
//! the word `web` never collide.
//!
//! A `--grep TEXT` query matches TEXT at word boundaries (see [`find_words`]); then every
//! token of TEXT is a whole token of any matching line, so a block whose filter lacks one of
//! them cannot match.

use xxhash_rust::xxh3::xxh3_64;

/// Tokens longer than this are hashed on their first this many bytes (on both sides).
pub const MAX_TOKEN_HASHED: usize = 128;

/// Tokens of at least this many bytes also go into a block's second, long-token filter.
pub const LONG_TOKEN: usize = 8;

/// The long-token filter's key of a token, from its hash (a bijection, so that the two
/// filters' false positives are independent).
#[inline]
pub fn long_token_hash(token_hash: u64) -> u64 {
    token_hash.rotate_left(29) ^ 0x9E37_79B9_7F4A_7C15
}

/// The long-token keys of a query text's long tokens.
pub fn text_long_token_hashes(text: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    for_each_token(text, |t| {
        if t.len() >= LONG_TOKEN {
            out.push(long_token_hash(token_hash(t)));
        }
    });
    out.sort_unstable();
    out.dedup();
    out
}

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

/// Whether the ASCII byte `b` belongs to a word.
#[inline]
pub fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The length of the UTF-8 character starting at `text[i]`, and whether it is a word
/// character (a letter or digit of any script, or `_`). A byte that does not start a valid
/// UTF-8 character counts as a 1-byte separator.
#[inline]
pub fn char_at(text: &[u8], i: usize) -> (usize, bool) {
    let b = text[i];
    if b < 0x80 {
        return (1, is_word_byte(b));
    }
    // The byte-order mark (many senders put it before MSG) is the most common
    // non-ASCII character here: no table lookup for it.
    if b == 0xEF && text.get(i + 1..i + 3) == Some(&[0xBB, 0xBF][..]) {
        return (3, false);
    }
    let len = match b {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (1, false),
    };
    match text
        .get(i..i + len)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|s| s.chars().next())
    {
        Some(c) => (len, c.is_alphanumeric()),
        None => (1, false),
    }
}

/// Whether the character that ends just before `text[i]` is a word character.
fn word_before(text: &[u8], i: usize) -> bool {
    if i == 0 {
        return false;
    }
    // Back over at most 3 continuation bytes to the start of the character.
    let mut start = i - 1;
    while start > 0 && i - start < 4 && text[start] & 0xC0 == 0x80 {
        start -= 1;
    }
    let (len, word) = char_at(text, start);
    start + len == i && word
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

/// How [`for_each_token`] classes a byte: an ASCII separator, an ASCII word byte, or the
/// first byte of something that is not ASCII (decided by [`char_at`]).
const SEPARATOR: u8 = 0;
const WORD: u8 = 1;
const NOT_ASCII: u8 = 2;

/// The class of every byte value (see [`SEPARATOR`], [`WORD`], [`NOT_ASCII`]).
static BYTE_CLASS: [u8; 256] = {
    let mut table = [SEPARATOR; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = if byte >= 0x80 {
            NOT_ASCII
        } else if byte.is_ascii_alphanumeric() || byte == b'_' {
            WORD
        } else {
            SEPARATOR
        };
        b += 1;
    }
    table
};

/// Calls `f` with each token of `text`.
///
/// Runs of ASCII are classed by a table, a byte at a time in tight loops; only bytes of
/// 0x80 and above go through [`char_at`]. This is the indexer's hottest loop (every byte
/// of every stored line): the table made it several times faster than classing each
/// byte through `char_at`'s branches (`cargo run --release -p flotilla-bench --example
/// logd_index_cost`).
#[inline]
pub fn for_each_token(text: &[u8], mut f: impl FnMut(&[u8])) {
    let n = text.len();
    let mut i = 0;
    while i < n {
        // Skip separators: ASCII ones in a tight loop, others one character at a time.
        match BYTE_CLASS[usize::from(text[i])] {
            SEPARATOR => {
                i += 1;
                continue;
            }
            NOT_ASCII => {
                let (len, word) = char_at(text, i);
                if !word {
                    i += len;
                    continue;
                }
            }
            _ => {}
        }
        // A token starts at `i`: extend it over word bytes and word characters.
        let start = i;
        loop {
            while i < n && BYTE_CLASS[usize::from(text[i])] == WORD {
                i += 1;
            }
            if i < n && text[i] >= 0x80 {
                let (len, word) = char_at(text, i);
                if word {
                    i += len;
                    continue;
                }
            }
            break;
        }
        f(&text[start..i]);
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
    if needle.is_empty() {
        return true;
    }
    let check_start = char_at(needle, 0).1;
    let check_end = word_before(needle, needle.len());
    let mut from = 0;
    while let Some(pos) = finder.find(&haystack[from..]) {
        let at = from + pos;
        let end = at + needle.len();
        let start_ok = !check_start || !word_before(haystack, at);
        let end_ok = !check_end || end == haystack.len() || !char_at(haystack, end).1;
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

/// Positions of [`HashSet64`]'s cache of recent values (8 KiB).
const RECENT_SLOTS: usize = 1024;

/// A set of 64-bit hashes (open addressing, linear probing): collects a block's distinct
/// token hashes cheaply, as most tokens repeat within a block.
#[derive(Debug, Clone)]
pub struct HashSet64 {
    /// The last value seen at each of [`RECENT_SLOTS`] positions: most tokens of a line
    /// were in the line before, and finding them here (in L1 cache) skips a probe of the
    /// big table, whose random reads were the indexer's costliest instruction.
    recent: Box<[u64; RECENT_SLOTS]>,
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
            recent: Box::new([0; RECENT_SLOTS]),
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
        let recent = &mut self.recent[(value >> 52) as usize & (RECENT_SLOTS - 1)];
        if *recent == value {
            return;
        }
        *recent = value;
        self.insert_into_table(value);
    }

    #[inline]
    fn insert_into_table(&mut self, value: u64) {
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
            self.insert_into_table(v);
        }
    }

    /// The values, in no particular order; the set is emptied. It keeps its table, up to
    /// [`HashSet64::KEPT_SLOTS`], as the next block usually needs as many: growing again
    /// from scratch for every block cost the indexer about 3% of its time.
    pub fn drain(&mut self) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::with_capacity(self.len() + 1);
        out.extend(self.slots.iter().copied().filter(|&v| v != 0));
        if self.has_zero {
            out.push(0);
        }
        if self.slots.len() > Self::KEPT_SLOTS {
            self.slots = vec![0; Self::KEPT_SLOTS];
        } else {
            self.slots.fill(0);
        }
        self.len = 0;
        self.has_zero = false;
        self.recent.fill(0);
        out
    }

    /// The largest table kept across [`HashSet64::drain`] (1 MiB).
    pub const KEPT_SLOTS: usize = 1 << 17;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tokenizer as first written (a character at a time): the table-driven
    /// [`for_each_token`] must cut exactly the same tokens, as stored filters hold their
    /// hashes.
    fn reference_tokens(text: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut start = None;
        let mut i = 0;
        while i < text.len() {
            let (len, word) = char_at(text, i);
            if word {
                if start.is_none() {
                    start = Some(i);
                }
            } else if let Some(s) = start.take() {
                out.push(text[s..i].to_vec());
            }
            i += len;
        }
        if let Some(s) = start {
            out.push(text[s..].to_vec());
        }
        out
    }

    fn tokens(text: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for_each_token(text, |t| out.push(t.to_vec()));
        out
    }

    proptest::proptest! {
        #[test]
        fn table_tokenizer_cuts_what_the_reference_cuts(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            text in "\\PC{0,80}",
        ) {
            proptest::prop_assert_eq!(tokens(&bytes), reference_tokens(&bytes));
            proptest::prop_assert_eq!(tokens(text.as_bytes()), reference_tokens(text.as_bytes()));
            // Mixed: valid UTF-8 cut at arbitrary points around raw bytes.
            let mut mixed = text.as_bytes().to_vec();
            mixed.extend_from_slice(&bytes);
            mixed.extend_from_slice(text.as_bytes());
            proptest::prop_assert_eq!(tokens(&mixed), reference_tokens(&mixed));
        }
    }

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
    fn separators_beyond_ascii() {
        assert_eq!(words("\u{feff}seq: 1"), ["seq", "1"]);
        assert_eq!(words("a\u{a0}b—c"), ["a", "b", "c"]);
        let mut bytes = b"ab\xffcd".to_vec();
        bytes.extend_from_slice("日本語 x".as_bytes());
        let mut out = Vec::new();
        for_each_token(&bytes, |t| out.push(t.to_vec()));
        assert_eq!(
            out,
            [
                b"ab".to_vec(),
                "cd日本語".as_bytes().to_vec(),
                b"x".to_vec()
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
        // A byte-order mark or a non-breaking space separates words; letters do not.
        assert!(check("\u{feff}seq: 1", "seq"));
        assert!(check("a\u{a0}seq", "seq"));
        assert!(!check("éseq", "seq"));
        assert!(check("café au lait", "café"));
        assert!(!check("cafés", "café"));
        assert!(check("x \u{fffd}\u{fffd} y", "y"));
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
