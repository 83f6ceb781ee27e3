//! The version rule of every hello/welcome exchange (PROTOCOL.md section 2): the
//! connecting side offers its version, the accepting side answers with the version both
//! will speak or refuses, and the connecting side checks the answer with the same rule.

use core::ops::RangeInclusive;

use crate::Error;

/// The version both sides speak when the peer offers `offered` and this side speaks
/// `supported`: the offered one if this side still speaks it. A later version of this side
/// answers an older peer with the peer's version, so old peers keep working; a peer newer
/// than this side is refused (it will answer our hello with a version we speak instead).
///
/// Used both ways: by the accepting side on a hello, and by the connecting side on the
/// welcome's version.
pub fn negotiate_version(offered: u32, supported: RangeInclusive<u32>) -> Result<u32, Error> {
    if supported.contains(&offered) {
        Ok(offered)
    } else {
        Err(Error::UnsupportedVersion {
            offered,
            oldest: *supported.start(),
            newest: *supported.end(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn a_supported_version_is_answered_with_itself() {
        assert_eq!(negotiate_version(1, 1..=1), Ok(1));
        assert_eq!(negotiate_version(2, 1..=3), Ok(2));
    }

    #[test]
    fn other_versions_are_refused_with_what_this_side_speaks() {
        let error = negotiate_version(7, 1..=1).unwrap_err();
        assert_eq!(
            error.to_string(),
            "protocol version 7 is not supported (this side speaks 1)"
        );
        let error = negotiate_version(0, 1..=2).unwrap_err();
        assert_eq!(
            error.to_string(),
            "protocol version 0 is not supported (this side speaks 1 to 2)"
        );
    }
}
