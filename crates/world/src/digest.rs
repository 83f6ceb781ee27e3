//! A stable 64-bit digest of a world, for comparing replicas (tests, demo summaries).

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// An incremental FNV-1a 64-bit hasher (stable across platforms and releases).
struct Fnv1a(u64);

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.write(&value.to_le_bytes());
    }
}

/// The digest of a world given as `(epoch, seq, entries)`, entries **sorted by key** with
/// unique keys (as [`WorldState`](crate::WorldState), [`Replica`](crate::Replica) and
/// [`Snapshot`](crate::Snapshot) hold them).
///
/// FNV-1a 64 over the ASCII bytes `flotilla-world-v1`, `epoch`, `seq`, each key and value
/// prefixed by its length, then the entry count (all integers little-endian `u64`); the
/// exact definition, with test values, is PROTOCOL.md section 10. Stable: equal worlds
/// give equal digests on every platform and release. Not cryptographic.
pub fn digest_entries<'a, I, K, V>(epoch: u64, seq: u64, entries: I) -> u64
where
    I: IntoIterator<Item = (&'a K, &'a V)>,
    K: AsRef<[u8]> + ?Sized + 'a,
    V: AsRef<[u8]> + ?Sized + 'a,
{
    let mut hasher = Fnv1a(FNV_OFFSET);
    hasher.write(b"flotilla-world-v1");
    hasher.write_u64(epoch);
    hasher.write_u64(seq);
    let mut count: u64 = 0;
    for (key, value) in entries {
        let (key, value) = (key.as_ref(), value.as_ref());
        hasher.write_u64(key.len() as u64);
        hasher.write(key);
        hasher.write_u64(value.len() as u64);
        hasher.write(value);
        count += 1;
    }
    hasher.write_u64(count);
    hasher.0
}

#[cfg(test)]
mod tests {
    use super::digest_entries;

    /// The test values PROTOCOL.md section 10 gives a client writer: they must stay true.
    #[test]
    fn protocol_md_test_values() {
        let none: [(&[u8], &[u8]); 0] = [];
        assert_eq!(
            digest_entries(0, 0, none.iter().map(|(k, v)| (*k, *v))),
            0x4c7b_991d_c570_6b8f
        );
        assert_eq!(
            digest_entries(7, 0, none.iter().map(|(k, v)| (*k, *v))),
            0x3de5_f87b_978b_02e8
        );
        let one: [(&[u8], &[u8]); 1] = [(b"player/1", b"x=3,y=4")];
        assert_eq!(
            digest_entries(7, 1, one.iter().map(|(k, v)| (*k, *v))),
            0x8c95_906a_b8af_f3d2
        );
        let two: [(&[u8], &[u8]); 2] = [(b"a", b"1"), (b"b", b"")];
        assert_eq!(
            digest_entries(7, 2, two.iter().map(|(k, v)| (*k, *v))),
            0x3e16_7a3d_ddf3_1649
        );
    }
}
