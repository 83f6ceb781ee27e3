//! RFC 6587 framing of syslog messages on a byte stream (TCP, TLS): octet counting
//! (`MSG-LEN SP MSG`) and non-transparent LF framing (`MSG LF`), with an incremental
//! sans-I/O [`FrameDecoder`] that takes bytes in arbitrary chunks.

use alloc::vec::Vec;

use crate::error::Error;

/// Longest MSG-LEN accepted, in digits (more than any `usize` needs).
const MAX_COUNT_DIGITS: usize = 20;

/// Appends `frame` with octet-counting framing: `MSG-LEN SP MSG` (RFC 6587 3.4.1).
///
/// MSG-LEN must start with a non-zero digit, so an empty frame has no encoding: an
/// empty `frame` appends nothing.
pub fn encode_octet_counted(frame: &[u8], out: &mut Vec<u8>) {
    if frame.is_empty() {
        return;
    }
    let mut digits = [0u8; MAX_COUNT_DIGITS];
    let mut at = digits.len();
    let mut len = frame.len();
    while len > 0 && at > 0 {
        at -= 1;
        digits[at] = b'0' + (len % 10) as u8;
        len /= 10;
    }
    out.reserve(digits.len() - at + 1 + frame.len());
    out.extend_from_slice(&digits[at..]);
    out.push(b' ');
    out.extend_from_slice(frame);
}

/// Appends `frame` with LF framing: `MSG LF` (RFC 6587 3.4.2).
///
/// A frame containing LF would split in two on the wire, and an empty frame would be
/// skipped by the receiver: both are errors (nothing is escaped), and `out` is left as
/// it was. Use octet counting for messages that may contain LF.
pub fn encode_lf(frame: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    if frame.is_empty() {
        return Err(Error::EmptyFrame);
    }
    if let Some(offset) = frame.iter().position(|&b| b == b'\n') {
        return Err(Error::FrameContainsLf { offset });
    }
    out.reserve(frame.len() + 1);
    out.extend_from_slice(frame);
    out.push(b'\n');
    Ok(())
}

/// Which framing a [`FrameDecoder`] expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Every frame is `MSG-LEN SP MSG`.
    OctetCounting,
    /// Every frame ends with LF; empty lines are skipped. A CR before the LF stays in
    /// the frame (`parse_lenient` trims it).
    LineFeed,
    /// Decided per frame by its first byte (RFC 6587 3.4.3 heuristics): a digit means
    /// octet counting, anything else (normally `<`) means LF framing.
    Auto,
}

/// What the decoder is discarding after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Nothing,
    /// The rest of an oversize octet-counted frame.
    Bytes(u64),
    /// Up to and including the next LF.
    ThroughLf,
}

/// Incremental RFC 6587 frame decoder: [`push`](FrameDecoder::push) bytes as they
/// arrive, then call [`next_frame`](FrameDecoder::next_frame) until it returns `None`.
///
/// Errors are reported once each and the stream goes on:
/// - an oversize frame (more than `max_frame_len` octets) gives
///   [`Error::FrameTooLong`]; for octet counting exactly MSG-LEN octets are then
///   skipped, for LF framing everything through the next LF, so nothing else is lost;
/// - a malformed octet count (leading zero, no SP after the digits, more than 20
///   digits) gives [`Error::InvalidOctetCount`]; as the frame boundary is then
///   unknown, everything through the next LF is dropped (this resynchronises senders
///   that end messages with LF; others should be disconnected).
///
/// Memory stays bounded by `max_frame_len` plus one pushed chunk as long as frames
/// are drained after each push.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    framing: Framing,
    max_frame_len: usize,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out or discarded.
    start: usize,
    /// Bytes after `start` already known to hold no LF (avoids rescans).
    lf_scanned: usize,
    skip: Skip,
    /// Stream offset of `buf[start]`.
    stream_offset: u64,
    eof: bool,
    /// Keep every byte: truncate instead of dropping (see [`FrameDecoder::keep_all`]).
    keep_all: bool,
    /// The frame last returned was cut.
    last_truncated: bool,
}

enum Step {
    Frame(usize, usize),
    Fail(Error),
    NeedMore,
    Again,
}

impl FrameDecoder {
    /// A decoder for `framing` that rejects frames longer than `max_frame_len` octets
    /// (RFC 5424 receivers must take 480 and should take 2048).
    pub fn new(framing: Framing, max_frame_len: usize) -> Self {
        FrameDecoder {
            framing,
            max_frame_len,
            buf: Vec::new(),
            start: 0,
            lf_scanned: 0,
            skip: Skip::Nothing,
            stream_offset: 0,
            eof: false,
            keep_all: false,
            last_truncated: false,
        }
    }

    /// A receiver's policy that loses nothing it can keep (the log service's):
    /// - an oversize frame is returned **truncated** to its first `max_frame_len` octets
    ///   (the rest of it is skipped: MSG-LEN octets for octet counting, through the next LF
    ///   for LF framing), and [`last_frame_truncated`](Self::last_frame_truncated) says so;
    /// - with [`Framing::Auto`], a frame that starts with a digit but has no valid
    ///   `MSG-LEN SP` is read as an LF-framed line (what rsyslog does), not dropped;
    /// - a stream that ends inside an octet-counted frame returns the octets received,
    ///   flagged truncated.
    pub fn keep_all(mut self) -> Self {
        self.keep_all = true;
        self
    }

    /// Whether the frame last returned by [`next_frame`](Self::next_frame) or
    /// [`finish`](Self::finish) was cut (only with [`keep_all`](Self::keep_all)).
    pub fn last_frame_truncated(&self) -> bool {
        self.last_truncated
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
        self.apply_skip();
        self.compact();
    }

    /// Bytes received and not yet returned or discarded.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame (borrowed from the decoder's buffer), an error for a bad
    /// frame (reported once, then skipped), or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<&[u8], Error>> {
        loop {
            match self.step() {
                Step::Again => continue,
                Step::NeedMore => return None,
                Step::Fail(error) => return Some(Err(error)),
                Step::Frame(from, to) => {
                    return Some(Ok(self.buf.get(from..to).unwrap_or_default()));
                }
            }
        }
    }

    /// Marks the end of the stream and returns the next frame like
    /// [`next_frame`](FrameDecoder::next_frame), now also the trailing unterminated line
    /// of LF framing, or [`Error::TruncatedFrame`] for an incomplete octet-counted frame.
    /// Call it (or `next_frame`) until it returns `None`.
    pub fn finish(&mut self) -> Option<Result<&[u8], Error>> {
        self.eof = true;
        self.next_frame()
    }

    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        if self.start >= self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..self.start);
        }
        self.start = 0;
    }

    fn advance(&mut self, count: usize) {
        self.start += count;
        self.lf_scanned = 0;
        self.stream_offset += count as u64;
    }

    fn available(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    fn apply_skip(&mut self) {
        match self.skip {
            Skip::Nothing => {}
            Skip::Bytes(remaining) => {
                let available = self.buffered_len();
                let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
                self.advance(take);
                let left = remaining - take as u64;
                self.skip = if left == 0 {
                    Skip::Nothing
                } else {
                    Skip::Bytes(left)
                };
            }
            Skip::ThroughLf => match self.available().iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.advance(i + 1);
                    self.skip = Skip::Nothing;
                }
                None => self.advance(self.buffered_len()),
            },
        }
    }

    fn step(&mut self) -> Step {
        self.last_truncated = false;
        self.apply_skip();
        if self.skip != Skip::Nothing {
            return Step::NeedMore;
        }
        let Some(&first) = self.available().first() else {
            return Step::NeedMore;
        };
        let octet_counting = match self.framing {
            Framing::OctetCounting => true,
            Framing::LineFeed => false,
            Framing::Auto => first.is_ascii_digit(),
        };
        if octet_counting {
            self.step_octet_counted()
        } else {
            self.step_lf()
        }
    }

    fn step_lf(&mut self) -> Step {
        let available = self.available();
        let scanned = self.lf_scanned.min(available.len());
        let found = available
            .get(scanned..)
            .unwrap_or_default()
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| i + scanned);
        let max = self.max_frame_len;
        match found {
            Some(0) => {
                self.advance(1);
                Step::Again
            }
            Some(len) => {
                let from = self.start;
                self.advance(len + 1);
                if len > max && self.keep_all {
                    self.last_truncated = true;
                    Step::Frame(from, from + max)
                } else if len > max {
                    Step::Fail(Error::FrameTooLong { len, max })
                } else {
                    Step::Frame(from, from + len)
                }
            }
            None => {
                let len = available.len();
                if len > max {
                    let from = self.start;
                    self.advance(len);
                    self.skip = Skip::ThroughLf;
                    if self.keep_all {
                        self.last_truncated = true;
                        return Step::Frame(from, from + max);
                    }
                    Step::Fail(Error::FrameTooLong { len, max })
                } else if self.eof {
                    let from = self.start;
                    self.advance(len);
                    Step::Frame(from, from + len)
                } else {
                    self.lf_scanned = len;
                    Step::NeedMore
                }
            }
        }
    }

    fn step_octet_counted(&mut self) -> Step {
        let available = self.available();
        let digits = available
            .iter()
            .take(MAX_COUNT_DIGITS + 1)
            .take_while(|b| b.is_ascii_digit())
            .count();
        let malformed = |reason: &'static str| Error::InvalidOctetCount {
            offset: self.stream_offset,
            reason,
        };
        let error = if available.first() == Some(&b'0') {
            Some(malformed("MSG-LEN starts with 0"))
        } else if digits == 0 {
            Some(malformed("expected a MSG-LEN digit"))
        } else if digits > MAX_COUNT_DIGITS {
            Some(malformed("MSG-LEN has more than 20 digits"))
        } else if digits == available.len() {
            if self.eof {
                Some(malformed("stream ended inside MSG-LEN"))
            } else {
                return Step::NeedMore;
            }
        } else if available.get(digits) != Some(&b' ') {
            Some(malformed("expected SP after MSG-LEN"))
        } else {
            None
        };
        if let Some(error) = error {
            if self.keep_all && self.framing == Framing::Auto {
                // Not an octet count after all: a line that starts with a digit.
                return self.step_lf();
            }
            self.skip = Skip::ThroughLf;
            return Step::Fail(error);
        }
        let len = available
            .get(..digits)
            .unwrap_or_default()
            .iter()
            .fold(0u64, |acc, &b| {
                acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
            });
        let max = self.max_frame_len;
        let header = digits + 1;
        if len > max as u64 && self.keep_all {
            let body = available.len() - header;
            if body >= max || self.eof {
                let take = body.min(max);
                let from = self.start + header;
                self.advance(header + take);
                self.skip = Skip::Bytes(len - take as u64);
                self.last_truncated = true;
                return Step::Frame(from, from + take);
            }
            return Step::NeedMore;
        }
        if len > max as u64 {
            self.advance(header);
            self.skip = Skip::Bytes(len);
            return Step::Fail(Error::FrameTooLong {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max,
            });
        }
        // len <= max_frame_len, so it fits in usize.
        let len = len as usize;
        if available.len() - header < len {
            if self.eof && self.keep_all {
                let from = self.start + header;
                let to = self.start + available.len();
                self.advance(available.len());
                self.last_truncated = true;
                return Step::Frame(from, to);
            }
            if self.eof {
                let received = available.len() - header;
                self.advance(available.len());
                return Step::Fail(Error::TruncatedFrame {
                    expected: len,
                    received,
                });
            }
            return Step::NeedMore;
        }
        let from = self.start + header;
        self.advance(header + len);
        Step::Frame(from, from + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn drain(decoder: &mut FrameDecoder) -> Vec<Result<Vec<u8>, Error>> {
        let mut frames = Vec::new();
        while let Some(frame) = decoder.next_frame() {
            frames.push(frame.map(<[u8]>::to_vec));
        }
        frames
    }

    fn drain_flagged(decoder: &mut FrameDecoder, finish: bool) -> Vec<(Vec<u8>, bool)> {
        let mut frames = Vec::new();
        loop {
            let next = if finish {
                decoder.finish()
            } else {
                decoder.next_frame()
            };
            match next {
                Some(Ok(f)) => {
                    let f = f.to_vec();
                    frames.push((f, decoder.last_frame_truncated()));
                }
                Some(Err(e)) => panic!("keep_all returned an error: {e:?}"),
                None => return frames,
            }
        }
    }

    #[test]
    fn keep_all_truncates_and_keeps_lines_that_start_with_digits() {
        let mut d = FrameDecoder::new(Framing::Auto, 4).keep_all();
        d.push(b"6 abcdef2 ok");
        assert_eq!(
            drain_flagged(&mut d, false),
            vec![(b"abcd".to_vec(), true), (b"ok".to_vec(), false)]
        );
        d.push(b"abcdefgh\nxy\n2024-01 line\n");
        assert_eq!(
            drain_flagged(&mut d, false),
            vec![
                (b"abcd".to_vec(), true),
                (b"xy".to_vec(), false),
                (b"2024".to_vec(), true)
            ]
        );
        // Octet-counted frame cut by the end of the stream: what arrived, flagged.
        d.push(b"9 abc");
        assert_eq!(drain_flagged(&mut d, false), vec![]);
        assert_eq!(drain_flagged(&mut d, true), vec![(b"abc".to_vec(), true)]);
        // Oversize octet-counted frame split across pushes.
        let mut d = FrameDecoder::new(Framing::Auto, 4).keep_all();
        d.push(b"10 ab");
        assert_eq!(drain_flagged(&mut d, false), vec![]);
        d.push(b"cdefghij3 xyz");
        assert_eq!(
            drain_flagged(&mut d, false),
            vec![(b"abcd".to_vec(), true), (b"xyz".to_vec(), false)]
        );
    }

    #[test]
    fn octet_counting_basics() {
        let mut out = Vec::new();
        encode_octet_counted(b"hello", &mut out);
        encode_octet_counted(b"", &mut out);
        encode_octet_counted(b"a\nb", &mut out);
        assert_eq!(out, b"5 hello3 a\nb");
        let mut d = FrameDecoder::new(Framing::OctetCounting, 100);
        d.push(&out);
        assert_eq!(
            drain(&mut d),
            vec![Ok(b"hello".to_vec()), Ok(b"a\nb".to_vec())]
        );
        assert_eq!(d.buffered_len(), 0);
    }

    #[test]
    fn leading_zero_rejected_then_resync_at_lf() {
        let mut d = FrameDecoder::new(Framing::OctetCounting, 100);
        d.push(b"05 hello\n3 abc");
        let frames = drain(&mut d);
        assert_eq!(
            frames,
            vec![
                Err(Error::InvalidOctetCount {
                    offset: 0,
                    reason: "MSG-LEN starts with 0"
                }),
                Ok(b"abc".to_vec())
            ]
        );
    }

    #[test]
    fn oversize_octet_counted_skips_exactly() {
        let mut d = FrameDecoder::new(Framing::OctetCounting, 4);
        d.push(b"6 abc");
        assert_eq!(
            drain(&mut d),
            vec![Err(Error::FrameTooLong { len: 6, max: 4 })]
        );
        d.push(b"def2 ok4 four");
        assert_eq!(
            drain(&mut d),
            vec![Ok(b"ok".to_vec()), Ok(b"four".to_vec())]
        );
    }

    #[test]
    fn lf_oversize_and_finish() {
        let mut d = FrameDecoder::new(Framing::LineFeed, 4);
        d.push(b"abcd\n\nabcde");
        assert_eq!(
            drain(&mut d),
            vec![
                Ok(b"abcd".to_vec()),
                Err(Error::FrameTooLong { len: 5, max: 4 })
            ]
        );
        d.push(b"fgh\nxy\nz");
        assert_eq!(drain(&mut d), vec![Ok(b"xy".to_vec())]);
        assert_eq!(
            d.finish().map(|r| r.map(<[u8]>::to_vec)),
            Some(Ok(b"z".to_vec()))
        );
        assert!(d.finish().is_none());
    }

    #[test]
    fn truncated_octet_frame_at_eof() {
        let mut d = FrameDecoder::new(Framing::Auto, 100);
        d.push(b"<1>x\n10 abc");
        assert_eq!(drain(&mut d), vec![Ok(b"<1>x".to_vec())]);
        assert_eq!(
            d.finish().map(|r| r.map(<[u8]>::to_vec)),
            Some(Err(Error::TruncatedFrame {
                expected: 10,
                received: 3
            }))
        );
        assert!(d.finish().is_none());
    }

    #[test]
    fn encode_lf_rules() {
        let mut out = b"x".to_vec();
        assert_eq!(
            encode_lf(b"a\nb", &mut out),
            Err(Error::FrameContainsLf { offset: 1 })
        );
        assert_eq!(encode_lf(b"", &mut out), Err(Error::EmptyFrame));
        assert_eq!(out, b"x");
        encode_lf(b"ab", &mut out).unwrap();
        assert_eq!(out, b"xab\n");
    }
}
