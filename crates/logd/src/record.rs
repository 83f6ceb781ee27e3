//! The record: one received syslog frame with what logd knows about its arrival
//! (received-at time, source address, transport, flags), and its binary encodings.
//!
//! A record keeps the frame's bytes exactly as received (after the transport's framing is
//! removed): nothing a sender wrote is lost, non-UTF-8 bytes included. Fields (host, app,
//! severity, ...) are parsed from those bytes with `flotilla_syslog::parse_lenient`, once at
//! ingest for the block statistics and again at query time for the matching records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use flotilla_syslog::{Format, ParsedMessage, Severity};

use crate::error::Error;

/// How a record reached logd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Transport {
    /// A UDP datagram.
    Udp = 1,
    /// Plain TCP (RFC 6587 octet counting or LF framing, detected per frame).
    Tcp = 2,
    /// TLS (RFC 5425).
    Tls = 3,
    /// RELP (acknowledged after the fsync that covers it).
    Relp = 4,
    /// Written locally (tests, the bench's loader, imports).
    Local = 5,
}

impl Transport {
    /// The lowercase name (`udp`, `tcp`, `tls`, `relp`, `local`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Relp => "relp",
            Transport::Local => "local",
        }
    }

    /// The transport with this code.
    pub fn from_code(code: u8) -> Option<Transport> {
        Some(match code {
            1 => Transport::Udp,
            2 => Transport::Tcp,
            3 => Transport::Tls,
            4 => Transport::Relp,
            5 => Transport::Local,
            _ => return None,
        })
    }
}

/// Record flag: the frame was longer than the listener's limit and was cut (see
/// STORAGE.md, "Oversize frames").
pub const FLAG_TRUNCATED: u8 = 1;

/// Where a record came from: transport and peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    /// The transport.
    pub transport: Transport,
    /// The peer's address (`0.0.0.0:0` when there is none, e.g. a local import).
    pub addr: SocketAddr,
}

impl Source {
    /// A source for records written locally.
    pub const LOCAL: Source = Source {
        transport: Transport::Local,
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    };
}

/// One record: what a listener hands to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When logd received it, in nanoseconds since the Unix epoch.
    pub received_at: i64,
    /// Where it came from.
    pub source: Source,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// The frame as received (framing removed).
    pub raw: Bytes,
}

impl Record {
    /// Bytes this record takes in memory queues (used for back-pressure accounting).
    pub fn weight(&self) -> usize {
        self.raw.len() + 64
    }
}

/// A record's header as the indexer parsed it: severity, syntax, and where HOSTNAME,
/// APP-NAME and MSGID lie in [`Record::raw`], so that later stages (the fleet view) read
/// them without parsing the frame a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The severity (the parsing default when the frame has no PRI).
    pub severity: Severity,
    /// Which syntax the frame was read as.
    pub format: Format,
    host: Span,
    app: Span,
    msg_id: Span,
}

/// A byte range of `raw` (`len == 0`: the field is absent or NIL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(raw: &[u8], field: Option<&str>) -> Span {
        let Some(field) = field else {
            return Span::default();
        };
        // The parser's fields borrow from `raw`: the offset is their distance from its
        // start (checked, so a field from elsewhere is simply absent).
        let start = (field.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
        match (u32::try_from(start), u32::try_from(field.len())) {
            (Ok(s), Ok(l)) if start.saturating_add(field.len()) <= raw.len() => {
                Span { start: s, len: l }
            }
            _ => Span::default(),
        }
    }

    fn get<'a>(&self, raw: &'a [u8]) -> Option<&'a str> {
        if self.len == 0 {
            return None;
        }
        let start = self.start as usize;
        let bytes = raw.get(start..start.checked_add(self.len as usize)?)?;
        std::str::from_utf8(bytes).ok()
    }
}

impl Head {
    /// The head of `raw` from its parse (`parsed` must borrow from `raw`).
    pub fn of(raw: &[u8], parsed: &ParsedMessage<'_>) -> Head {
        Head {
            severity: parsed.severity,
            format: parsed.format,
            host: Span::of(raw, parsed.hostname),
            app: Span::of(raw, parsed.app_name),
            msg_id: Span::of(raw, parsed.msg_id),
        }
    }

    /// The head of a frame that did not parse at all (an empty one).
    pub fn unparsed(severity: Severity) -> Head {
        Head {
            severity,
            format: Format::Unstructured,
            host: Span::default(),
            app: Span::default(),
            msg_id: Span::default(),
        }
    }

    /// HOSTNAME, if any (`raw` is the record's frame).
    pub fn hostname<'a>(&self, raw: &'a [u8]) -> Option<&'a str> {
        self.host.get(raw)
    }

    /// APP-NAME, if any.
    pub fn app_name<'a>(&self, raw: &'a [u8]) -> Option<&'a str> {
        self.app.get(raw)
    }

    /// MSGID, if any.
    pub fn msg_id<'a>(&self, raw: &'a [u8]) -> Option<&'a str> {
        self.msg_id.get(raw)
    }
}

/// Appends `value` as a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Zigzag encoding of a signed delta.
pub(crate) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub(crate) fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// A bounds-checked reader over an encoded buffer; every read past the end is
/// [`Error::Corrupt`] with the given context.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn corrupt(&self, detail: &str) -> Error {
        Error::Corrupt(format!("{}: {detail} at offset {}", self.what, self.pos))
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.corrupt("length overflow"))?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.corrupt("unexpected end"))?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Error> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Error> {
        Ok(self.u64()? as i64)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Error> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.corrupt("varint too long"))
    }

    pub(crate) fn len(&mut self, max: usize) -> Result<usize, Error> {
        let n = self.varint()?;
        if n > max as u64 {
            return Err(self.corrupt("length out of range"));
        }
        Ok(n as usize)
    }
}

/// Appends a source: transport code, address family, address bytes, port.
pub(crate) fn put_source(out: &mut Vec<u8>, source: &Source) {
    out.push(source.transport as u8);
    match source.addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&source.addr.port().to_le_bytes());
}

/// Reads what [`put_source`] wrote.
pub(crate) fn read_source(r: &mut Reader<'_>) -> Result<Source, Error> {
    let transport = Transport::from_code(r.u8()?).ok_or_else(|| r.corrupt("unknown transport"))?;
    let ip = match r.u8()? {
        4 => {
            let b = r.bytes(4)?;
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
        6 => {
            let b = r.bytes(16)?;
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return Err(r.corrupt("unknown address family")),
    };
    let port = r.u16()?;
    Ok(Source {
        transport,
        addr: SocketAddr::new(ip, port),
    })
}

/// Appends one record in the write-ahead log's form.
pub(crate) fn put_wal_record(out: &mut Vec<u8>, record: &Record) {
    out.extend_from_slice(&record.received_at.to_le_bytes());
    put_source(out, &record.source);
    out.push(record.flags);
    put_varint(out, record.raw.len() as u64);
    out.extend_from_slice(&record.raw);
}

/// Reads what [`put_wal_record`] wrote.
pub(crate) fn read_wal_record(r: &mut Reader<'_>) -> Result<Record, Error> {
    let received_at = r.i64()?;
    let source = read_source(r)?;
    let flags = r.u8()?;
    let len = r.len(crate::MAX_RECORD_BYTES)?;
    let raw = Bytes::copy_from_slice(r.bytes(len)?);
    Ok(Record {
        received_at,
        source,
        flags,
        raw,
    })
}

/// Current time in nanoseconds since the Unix epoch (for the shells: machines are given
/// `now`).
#[allow(clippy::disallowed_methods)] // The one clock read the shells share.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_record_round_trip_v4_and_v6() {
        for addr in ["10.1.2.3:514", "[2001:db8::1]:6514"] {
            let record = Record {
                received_at: 1_700_000_000_123_456_789,
                source: Source {
                    transport: Transport::Relp,
                    addr: addr.parse().unwrap(),
                },
                flags: FLAG_TRUNCATED,
                raw: Bytes::from_static(b"<14>1 - - - - - - \xff\xfe bytes"),
            };
            let mut buf = Vec::new();
            put_wal_record(&mut buf, &record);
            let mut r = Reader::new(&buf, "test");
            assert_eq!(read_wal_record(&mut r).unwrap(), record);
            assert!(r.is_empty());
            // Every truncation is an error, never a panic.
            for cut in 0..buf.len() {
                let mut r = Reader::new(&buf[..cut], "test");
                assert!(read_wal_record(&mut r).is_err());
            }
        }
    }

    #[test]
    fn zigzag_round_trips() {
        for v in [0i64, 1, -1, i64::MAX, i64::MIN, 123_456_789, -987_654_321] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
