//! Writing frames, and the body layouts shared by several directions.
//!
//! Every body layout is written and read by exactly one pair of functions here, so frames
//! that several directions share (ping, pong, error, subscribe, snapshot, change batch)
//! are byte for byte the same wherever they travel.

use bytes::{BufMut, Bytes, BytesMut};
use flotilla_world::{ChangeBatch, Position, Snapshot};

use crate::error::{ErrorCode, WireError};
use crate::frame::{FrameType, Reader};
use crate::world_id::WorldId;

/// Appends an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// The encoded length of a varint.
pub(crate) fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends length-prefixed bytes.
pub(crate) fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.put_slice(bytes);
}

/// The encoded length of length-prefixed bytes.
pub(crate) fn bytes_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// Appends one whole frame: header, then the body written by `body`.
pub(crate) fn frame(out: &mut BytesMut, frame_type: FrameType, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(frame_type as u8);
    body(out);
    // A frame over u32::MAX bytes cannot be represented: announce u32::MAX, which every
    // receiver rejects as too large rather than misreading the stream.
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    if let Some(prefix) = out.get_mut(start..start + 4) {
        prefix.copy_from_slice(&len.to_be_bytes());
    }
}

pub(crate) fn read_world(reader: &mut Reader) -> Result<WorldId, WireError> {
    WorldId::from_bytes(reader.bytes("world")?)
}

pub(crate) fn put_nonce(out: &mut BytesMut, nonce: u64) {
    out.put_u64(nonce);
}

pub(crate) fn read_nonce(reader: &mut Reader) -> Result<u64, WireError> {
    reader.u64_be("nonce")
}

pub(crate) fn put_code_text(out: &mut BytesMut, code: ErrorCode, text: &str) {
    put_varint(out, u64::from(code.to_u16()));
    put_bytes(out, text.as_bytes());
}

pub(crate) fn read_code_text(reader: &mut Reader) -> Result<(ErrorCode, String), WireError> {
    let code = ErrorCode::from_u16(reader.varint_u16("code")?);
    let text = reader.text("text")?;
    Ok((code, text))
}

pub(crate) fn put_subscribe(out: &mut BytesMut, world: &WorldId, since: Option<Position>) {
    put_bytes(out, world.as_bytes());
    match since {
        None => out.put_u8(0),
        Some(position) => {
            out.put_u8(1);
            out.put_u64(position.epoch);
            put_varint(out, position.seq);
        }
    }
}

pub(crate) fn read_subscribe(
    reader: &mut Reader,
) -> Result<(WorldId, Option<Position>), WireError> {
    let world = read_world(reader)?;
    let since = if reader.flag("since")? {
        let epoch = reader.u64_be("since.epoch")?;
        let seq = reader.varint("since.seq")?;
        Some(Position { epoch, seq })
    } else {
        None
    };
    Ok((world, since))
}

/// Which part of a possibly multi-frame snapshot a `Snapshot` frame carries.
///
/// A snapshot too large for one frame is sent as `First`, any number of `Middle`, then
/// `Last`, all with the same epoch and seq and nothing else for that world in between;
/// [`SnapshotAssembler`](crate::SnapshotAssembler) puts them back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotPart {
    /// The whole snapshot in one frame (tag 3).
    Whole,
    /// The first part (tag 1).
    First,
    /// A part between the first and the last (tag 0).
    Middle,
    /// The last part (tag 2).
    Last,
}

impl SnapshotPart {
    /// The tag byte on the wire (bit 0: first, bit 1: last).
    pub fn to_u8(self) -> u8 {
        match self {
            SnapshotPart::Middle => 0,
            SnapshotPart::First => 1,
            SnapshotPart::Last => 2,
            SnapshotPart::Whole => 3,
        }
    }

    /// The part for a tag byte.
    pub fn from_u8(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(SnapshotPart::Middle),
            1 => Some(SnapshotPart::First),
            2 => Some(SnapshotPart::Last),
            3 => Some(SnapshotPart::Whole),
            _ => None,
        }
    }
}

fn put_snapshot_header(
    out: &mut BytesMut,
    world: &WorldId,
    epoch: u64,
    seq: u64,
    part: SnapshotPart,
    count: usize,
) {
    put_bytes(out, world.as_bytes());
    out.put_u64(epoch);
    put_varint(out, seq);
    out.put_u8(part.to_u8());
    put_varint(out, count as u64);
}

fn put_entries<'a>(out: &mut BytesMut, entries: impl Iterator<Item = &'a (Bytes, Bytes)>) {
    for (key, value) in entries {
        put_bytes(out, key);
        put_bytes(out, value);
    }
}

pub(crate) fn put_snapshot_body(
    out: &mut BytesMut,
    world: &WorldId,
    part: SnapshotPart,
    snapshot: &Snapshot,
) {
    put_snapshot_header(
        out,
        world,
        snapshot.epoch,
        snapshot.seq,
        part,
        snapshot.entries.len(),
    );
    put_entries(out, snapshot.entries.iter());
}

pub(crate) fn read_snapshot(
    reader: &mut Reader,
) -> Result<(WorldId, SnapshotPart, Snapshot), WireError> {
    let world = read_world(reader)?;
    let epoch = reader.u64_be("epoch")?;
    let seq = reader.varint("seq")?;
    let tag = reader.u8("part")?;
    let part = SnapshotPart::from_u8(tag).ok_or(WireError::BadTag { field: "part", tag })?;
    let count = reader.count(2, "entries")?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let key = reader.bytes("entry.key")?;
        let value = reader.bytes("entry.value")?;
        entries.push((key, value));
    }
    Ok((
        world,
        part,
        Snapshot {
            epoch,
            seq,
            entries,
        },
    ))
}

pub(crate) fn put_change_batch_body(out: &mut BytesMut, world: &WorldId, batch: &ChangeBatch) {
    put_bytes(out, world.as_bytes());
    out.put_u64(batch.epoch);
    put_varint(out, batch.seq);
    put_varint(out, batch.upserts.len() as u64);
    put_entries(out, batch.upserts.iter());
    put_varint(out, batch.removes.len() as u64);
    for key in &batch.removes {
        put_bytes(out, key);
    }
}

pub(crate) fn read_change_batch(reader: &mut Reader) -> Result<(WorldId, ChangeBatch), WireError> {
    let world = read_world(reader)?;
    let epoch = reader.u64_be("epoch")?;
    let seq = reader.varint("seq")?;
    let upsert_count = reader.count(2, "upserts")?;
    let mut upserts = Vec::with_capacity(upsert_count);
    for _ in 0..upsert_count {
        let key = reader.bytes("upsert.key")?;
        let value = reader.bytes("upsert.value")?;
        upserts.push((key, value));
    }
    let remove_count = reader.count(1, "removes")?;
    let mut removes = Vec::with_capacity(remove_count);
    for _ in 0..remove_count {
        removes.push(reader.bytes("remove.key")?);
    }
    Ok((
        world,
        ChangeBatch {
            epoch,
            seq,
            upserts,
            removes,
        },
    ))
}

/// Appends one `ChangeBatch` frame for `world`. The same bytes are valid from a game
/// server to a front-end and from a front-end to a client.
///
/// A batch must fit in one frame: keep ticks below the peers' maximum frame size.
pub fn encode_change_batch(world: &WorldId, batch: &ChangeBatch, out: &mut BytesMut) {
    frame(out, FrameType::ChangeBatch, |out| {
        put_change_batch_body(out, world, batch)
    });
}

/// One `ChangeBatch` frame for `world` as shareable bytes: encode once, clone the `Bytes`
/// (a reference count) for every observer.
pub fn change_batch_frame(world: &WorldId, batch: &ChangeBatch) -> Bytes {
    let mut out = BytesMut::new();
    encode_change_batch(world, batch, &mut out);
    out.freeze()
}

/// Appends `snapshot` of `world` as one `Snapshot` frame ([`SnapshotPart::Whole`]) or, if
/// it would exceed `max_frame_len`, as several parts each within it. Returns the number of
/// frames written.
///
/// Fails with [`WireError::FrameTooLarge`] (writing nothing) if a single entry cannot fit
/// in a frame of `max_frame_len`.
pub fn encode_snapshot(
    world: &WorldId,
    snapshot: &Snapshot,
    max_frame_len: usize,
    out: &mut BytesMut,
) -> Result<usize, WireError> {
    let header_len = 1
        + bytes_len(world.as_bytes().len())
        + 8
        + varint_len(snapshot.seq)
        + 1
        + varint_len(snapshot.entries.len() as u64);
    if header_len > max_frame_len {
        return Err(WireError::FrameTooLarge {
            len: header_len,
            max: max_frame_len,
        });
    }
    let entry_len = |(key, value): &(Bytes, Bytes)| bytes_len(key.len()) + bytes_len(value.len());
    // Split the entries into chunks that each fit in one frame.
    let mut chunks: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut used = header_len;
    for (index, entry) in snapshot.entries.iter().enumerate() {
        let len = entry_len(entry);
        if header_len + len > max_frame_len {
            return Err(WireError::FrameTooLarge {
                len: header_len + len,
                max: max_frame_len,
            });
        }
        if used + len > max_frame_len {
            chunks.push(start..index);
            start = index;
            used = header_len;
        }
        used += len;
    }
    chunks.push(start..snapshot.entries.len());
    let last = chunks.len() - 1;
    for (index, range) in chunks.iter().enumerate() {
        let part = match (index == 0, index == last) {
            (true, true) => SnapshotPart::Whole,
            (true, false) => SnapshotPart::First,
            (false, true) => SnapshotPart::Last,
            (false, false) => SnapshotPart::Middle,
        };
        let entries = snapshot.entries.get(range.clone()).unwrap_or_default();
        frame(out, FrameType::Snapshot, |out| {
            put_snapshot_header(
                out,
                world,
                snapshot.epoch,
                snapshot.seq,
                part,
                entries.len(),
            );
            put_entries(out, entries.iter());
        });
    }
    Ok(chunks.len())
}

/// Puts multi-frame snapshots of one world back together.
///
/// Feed it every `Snapshot` frame of that world in order; it returns the snapshot when
/// complete. [`push`](Self::push) is strict: parts out of order (a middle without a first,
/// a first or whole while another is half done, parts of different positions) are a
/// [`WireError::SnapshotOutOfOrder`]. [`offer`](Self::offer) is tolerant, for receivers
/// that reset their view of a world while parts may still be in flight (an unsubscribe and
/// resubscribe, a world moving to another host): a new first part supersedes a half-done
/// snapshot and parts that cannot belong to the snapshot being assembled are reported
/// [`PartOutcome::Stale`]. Both enforce the byte limit of
/// [`with_max_bytes`](Self::with_max_bytes), which counts keys, values and
/// [`SNAPSHOT_ENTRY_OVERHEAD_BYTES`](crate::SNAPSHOT_ENTRY_OVERHEAD_BYTES) per entry.
#[derive(Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SnapshotAssembler {
    partial: Option<Snapshot>,
    /// Bytes charged for the half-done snapshot (see [`entry_bytes`]).
    partial_bytes: usize,
    max_bytes: usize,
}

impl Default for SnapshotAssembler {
    fn default() -> Self {
        Self::with_max_bytes(crate::DEFAULT_MAX_SNAPSHOT_BYTES)
    }
}

/// What [`SnapshotAssembler::offer`] did with one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartOutcome {
    /// The snapshot is complete.
    Complete(Snapshot),
    /// A part was added: more to come.
    Incomplete,
    /// The part cannot belong to the snapshot being assembled (no first part was seen, or
    /// it has another position): it was ignored, and any half-done snapshot dropped.
    Stale,
}

/// The memory charged for `snapshot`'s entries: keys, values and
/// [`SNAPSHOT_ENTRY_OVERHEAD_BYTES`](crate::SNAPSHOT_ENTRY_OVERHEAD_BYTES) per entry.
fn entry_bytes(snapshot: &Snapshot) -> usize {
    snapshot.entries.iter().fold(0usize, |sum, (key, value)| {
        sum.saturating_add(key.len())
            .saturating_add(value.len())
            .saturating_add(crate::SNAPSHOT_ENTRY_OVERHEAD_BYTES)
    })
}

impl SnapshotAssembler {
    /// An assembler with nothing in progress and the default limit
    /// ([`DEFAULT_MAX_SNAPSHOT_BYTES`](crate::DEFAULT_MAX_SNAPSHOT_BYTES)).
    pub fn new() -> Self {
        Self::default()
    }

    /// An assembler refusing snapshots whose keys, values and per-entry overhead exceed
    /// `max_bytes`.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Self {
            partial: None,
            partial_bytes: 0,
            max_bytes,
        }
    }

    /// The byte limit of one snapshot (keys, values and per-entry overhead).
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Bytes charged so far for the half-received snapshot (keys, values and
    /// [`SNAPSHOT_ENTRY_OVERHEAD_BYTES`](crate::SNAPSHOT_ENTRY_OVERHEAD_BYTES) per entry);
    /// 0 when none is in progress.
    pub fn partial_bytes(&self) -> usize {
        self.partial_bytes
    }

    /// Entries of the half-received snapshot; 0 when none is in progress.
    pub fn partial_entries(&self) -> usize {
        self.partial
            .as_ref()
            .map_or(0, |partial| partial.entries.len())
    }

    /// True while a multi-frame snapshot is half received.
    pub fn is_assembling(&self) -> bool {
        self.partial.is_some()
    }

    /// Drops a half-received snapshot (for example after an unsubscribe).
    pub fn reset(&mut self) {
        self.partial = None;
        self.partial_bytes = 0;
    }

    /// Adds one part; returns the whole snapshot once its last part is in.
    pub fn push(
        &mut self,
        part: SnapshotPart,
        snapshot: Snapshot,
    ) -> Result<Option<Snapshot>, WireError> {
        match (part, self.partial.is_some()) {
            (SnapshotPart::Whole | SnapshotPart::First, true) => {
                self.reset();
                Err(WireError::SnapshotOutOfOrder {
                    reason: "a new snapshot started before the last part of the previous one",
                })
            }
            (SnapshotPart::Middle | SnapshotPart::Last, false) => {
                Err(WireError::SnapshotOutOfOrder {
                    reason: "a snapshot part arrived without a first part",
                })
            }
            _ => match self.offer(part, snapshot)? {
                PartOutcome::Complete(snapshot) => Ok(Some(snapshot)),
                PartOutcome::Incomplete => Ok(None),
                PartOutcome::Stale => Err(WireError::SnapshotOutOfOrder {
                    reason: "snapshot parts of different positions",
                }),
            },
        }
    }

    /// Adds one part, tolerating parts of a snapshot the receiver no longer waits for:
    /// a first (or whole) part starts over, a middle or last part without a matching first
    /// is [`PartOutcome::Stale`]. Only the byte limit is an error (the half-done snapshot is
    /// dropped).
    pub fn offer(
        &mut self,
        part: SnapshotPart,
        snapshot: Snapshot,
    ) -> Result<PartOutcome, WireError> {
        let bytes = entry_bytes(&snapshot);
        match part {
            SnapshotPart::Whole => {
                self.reset();
                self.check_limit(bytes)?;
                Ok(PartOutcome::Complete(snapshot))
            }
            SnapshotPart::First => {
                self.reset();
                self.check_limit(bytes)?;
                self.partial_bytes = bytes;
                self.partial = Some(snapshot);
                Ok(PartOutcome::Incomplete)
            }
            SnapshotPart::Middle | SnapshotPart::Last => {
                let Some(partial) = self.partial.as_ref() else {
                    return Ok(PartOutcome::Stale);
                };
                if partial.position() != snapshot.position() {
                    self.reset();
                    return Ok(PartOutcome::Stale);
                }
                let total = self.partial_bytes.saturating_add(bytes);
                if let Err(error) = self.check_limit(total) {
                    self.reset();
                    return Err(error);
                }
                self.partial_bytes = total;
                if let Some(partial) = self.partial.as_mut() {
                    partial.entries.extend(snapshot.entries);
                }
                if part == SnapshotPart::Last {
                    self.partial_bytes = 0;
                    Ok(self
                        .partial
                        .take()
                        .map_or(PartOutcome::Stale, PartOutcome::Complete))
                } else {
                    Ok(PartOutcome::Incomplete)
                }
            }
        }
    }

    fn check_limit(&self, bytes: usize) -> Result<(), WireError> {
        if bytes > self.max_bytes {
            return Err(WireError::SnapshotTooLarge {
                bytes,
                max: self.max_bytes,
            });
        }
        Ok(())
    }
}
