//! RELP offers: the `name=value,value` lines exchanged in `open` and its response.
//!
//! The client's `open` data and the server's response (after `200 OK` and LF) hold one offer
//! per line, as librelp writes them:
//!
//! ```text
//! relp_version=0
//! relp_software=flotilla-relp,0.1.0
//! commands=syslog
//! ```
//!
//! rsyslog speaks the experimental protocol version 0, so that is what this crate offers.

use alloc::vec::Vec;

use crate::error::Error;

/// The protocol version rsyslog (librelp) speaks and this crate offers.
pub const RELP_VERSION: u32 = 0;

/// The longest offer value librelp keeps (longer values are cut by it).
pub const MAX_OFFER_VALUE_LEN: usize = 255;

/// The `relp_software` value this crate sends by default.
pub const DEFAULT_SOFTWARE: &str = concat!("flotilla-relp,", env!("CARGO_PKG_VERSION"));

/// One offer: a feature name and its raw value (everything after the first `=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer<'a> {
    /// The feature name, for example `relp_version`.
    pub name: &'a [u8],
    /// The raw value, possibly empty; [`Offer::values`] splits it at commas.
    pub value: &'a [u8],
}

impl<'a> Offer<'a> {
    /// The comma-separated values, skipping empty ones (as librelp does).
    pub fn values(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.value.split(|&b| b == b',').filter(|v| !v.is_empty())
    }

    /// The first value as a decimal number, if it is one.
    pub fn number(&self) -> Option<u32> {
        let first = self.values().next()?;
        if first.is_empty() || first.len() > 9 || !first.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            first
                .iter()
                .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0')),
        )
    }
}

/// The offers in `data`, one per LF-separated line (empty lines skipped).
pub fn parse_offers(data: &[u8]) -> impl Iterator<Item = Offer<'_>> {
    data.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| match line.iter().position(|&b| b == b'=') {
            Some(eq) => Offer {
                name: line.get(..eq).unwrap_or_default(),
                value: line.get(eq + 1..).unwrap_or_default(),
            },
            None => Offer {
                name: line,
                value: &[],
            },
        })
}

/// The first offer named `name` in `data`.
pub fn find_offer<'a>(data: &'a [u8], name: &str) -> Option<Offer<'a>> {
    parse_offers(data).find(|offer| offer.name == name.as_bytes())
}

/// Whether the offers in `data` have a usable `relp_version` and list `syslog` in `commands`;
/// the error names the first missing piece.
pub fn check_syslog_offers(data: &[u8]) -> Result<(), Error> {
    let version = find_offer(data, "relp_version").ok_or(Error::MissingOffer {
        offer: "relp_version",
    })?;
    if version.number().is_none() {
        return Err(Error::MissingOffer {
            offer: "numeric relp_version",
        });
    }
    let commands = find_offer(data, "commands").ok_or(Error::MissingOffer {
        offer: "commands=syslog",
    })?;
    if !commands.values().any(|command| command == b"syslog") {
        return Err(Error::MissingOffer {
            offer: "commands=syslog",
        });
    }
    Ok(())
}

/// Checks a `relp_software` value: not empty, no LF, and no comma-separated part longer
/// than librelp keeps.
pub(crate) fn validate_software(software: &str) -> Result<(), Error> {
    if software.is_empty() {
        return Err(Error::InvalidConfig {
            reason: "software name is empty",
        });
    }
    if software.bytes().any(|b| b == b'\n' || b == b'\r') {
        return Err(Error::InvalidConfig {
            reason: "software name contains a line break",
        });
    }
    if software
        .split(',')
        .any(|part| part.len() > MAX_OFFER_VALUE_LEN)
    {
        return Err(Error::InvalidConfig {
            reason: "software name has a part longer than 255 octets",
        });
    }
    Ok(())
}

/// Appends this crate's offers: `relp_version=0`, `relp_software=SOFTWARE`,
/// `commands=syslog`, separated by LF (no trailing LF), in librelp's order.
pub(crate) fn write_offers(out: &mut Vec<u8>, software: &str) {
    out.extend_from_slice(b"relp_version=0\nrelp_software=");
    out.extend_from_slice(software.as_bytes());
    out.extend_from_slice(b"\ncommands=syslog");
}
