//! Blocks: up to [`BLOCK_RECORDS`] records stored column by column and compressed with
//! zstd, plus the [`BlockMeta`] that lets a query skip a block without opening it
//! (time range, severities seen, a binary-fuse filter of every token and field value).
//!
//! Uncompressed layout (all integers little-endian, varints LEB128):
//! ```text
//! count            u32
//! base_received_at i64      then count zigzag varint deltas (first delta from base)
//! n_sources        varint   then n_sources sources (transport, family, ip, port)
//! source index     count varints
//! flags            count bytes
//! raw length       count varints
//! raw bytes        concatenated
//! ```

use std::sync::Arc;

use flotilla_syslog::{LenientDefaults, ParsedMessage, parse_lenient};
use xorf::{BinaryFuse8, Filter};

use crate::error::Error;
use crate::record::{
    Head, Reader, Record, Source, put_source, put_varint, read_source, unzigzag, zigzag,
};
use crate::tokens::{
    FieldTag, HashSet64, LONG_TOKEN, field_hash, for_each_token, long_token_hash, token_hash,
};

/// Records per block (the last block of a segment may hold fewer).
pub const BLOCK_RECORDS: usize = 4096;

/// Uncompressed bytes after which a block is closed early (big messages).
pub const BLOCK_MAX_BYTES: usize = 4 << 20;

/// What a query needs to know about a block without opening it.
#[derive(Debug, Clone)]
pub struct BlockMeta {
    /// Id of the first record (ids are consecutive within a block).
    pub first_id: u64,
    /// Number of records.
    pub count: u32,
    /// Earliest and latest received-at time (ns).
    pub min_received: i64,
    /// Latest received-at time (ns).
    pub max_received: i64,
    /// Bit `n` set when a record of severity `n` is in the block.
    pub severities: u8,
    /// Records stored raw because they did not parse as RFC 5424 or RFC 3164.
    pub unparsed: u32,
    /// Records cut to the frame limit.
    pub truncated: u32,
    /// Uncompressed size of the records' raw bytes.
    pub raw_bytes: u64,
    /// Filter of token and field hashes (`None`: the block had nothing to index).
    pub filter: Option<Arc<BinaryFuse8>>,
    /// A second filter of the long tokens only (at least [`LONG_TOKEN`] bytes: ids,
    /// hashes, the rare words searched for most), with hashes of their own: a long token
    /// must pass both, so a block is opened for nothing about 1 time in 65,536 instead of
    /// 1 in 256, for about one extra byte per record.
    pub long_filter: Option<Arc<BinaryFuse8>>,
}

impl BlockMeta {
    /// Whether the filter says the hash may be in the block.
    #[inline]
    pub fn may_contain(&self, hash: u64) -> bool {
        self.filter.as_ref().is_none_or(|f| f.contains(&hash))
    }

    /// Whether the long-token filter says the (long-token) hash may be in the block.
    #[inline]
    pub fn may_contain_long(&self, long_hash: u64) -> bool {
        self.long_filter
            .as_ref()
            .is_none_or(|f| f.contains(&long_hash))
    }

    /// Appends the encoded form (used in segment indexes).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.first_id.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.min_received.to_le_bytes());
        out.extend_from_slice(&self.max_received.to_le_bytes());
        out.push(self.severities);
        out.extend_from_slice(&self.unparsed.to_le_bytes());
        out.extend_from_slice(&self.truncated.to_le_bytes());
        out.extend_from_slice(&self.raw_bytes.to_le_bytes());
        encode_filter(self.filter.as_deref(), out);
        encode_filter(self.long_filter.as_deref(), out);
    }

    /// Reads what [`encode`](Self::encode) wrote, checking the filter's shape so that a
    /// lookup can never index outside it.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<BlockMeta, Error> {
        let first_id = r.u64()?;
        let count = r.u32()?;
        let min_received = r.i64()?;
        let max_received = r.i64()?;
        let severities = r.u8()?;
        let unparsed = r.u32()?;
        let truncated = r.u32()?;
        let raw_bytes = r.u64()?;
        let filter = decode_filter(r)?;
        let long_filter = decode_filter(r)?;
        Ok(BlockMeta {
            first_id,
            count,
            min_received,
            max_received,
            severities,
            unparsed,
            truncated,
            raw_bytes,
            filter,
            long_filter,
        })
    }
}

fn encode_filter(filter: Option<&BinaryFuse8>, out: &mut Vec<u8>) {
    match filter {
        None => out.push(0),
        Some(f) => {
            out.push(1);
            let d = &f.descriptor;
            out.extend_from_slice(&d.seed.to_le_bytes());
            out.extend_from_slice(&d.segment_length.to_le_bytes());
            out.extend_from_slice(&d.segment_length_mask.to_le_bytes());
            out.extend_from_slice(&d.segment_count_length.to_le_bytes());
            put_varint(out, f.fingerprints.len() as u64);
            out.extend_from_slice(&f.fingerprints);
        }
    }
}

/// Reads what [`encode_filter`] wrote, checking the filter's shape so that a lookup can
/// never index outside it.
fn decode_filter(r: &mut Reader<'_>) -> Result<Option<Arc<BinaryFuse8>>, Error> {
    match r.u8()? {
        0 => Ok(None),
        1 => {
            let seed = r.u64()?;
            let segment_length = r.u32()?;
            let segment_length_mask = r.u32()?;
            let segment_count_length = r.u32()?;
            let len = r.len(1 << 30)?;
            let fingerprints: Box<[u8]> = r.bytes(len)?.into();
            // Lookups index up to segment_count_length + 2 * segment_length.
            let reach = u64::from(segment_count_length) + 2 * u64::from(segment_length);
            if segment_length == 0
                || !segment_length.is_power_of_two()
                || segment_length_mask != segment_length - 1
                || reach > len as u64
            {
                return Err(r.corrupt("filter shape"));
            }
            Ok(Some(Arc::new(BinaryFuse8 {
                descriptor: xorf::Descriptor {
                    seed,
                    segment_length,
                    segment_length_mask,
                    segment_count_length,
                },
                fingerprints,
            })))
        }
        _ => Err(r.corrupt("filter kind")),
    }
}

/// Builds a filter of distinct keys (`None` for none).
fn build_filter(keys: &[u64]) -> Result<Option<Arc<BinaryFuse8>>, Error> {
    if keys.is_empty() {
        return Ok(None);
    }
    BinaryFuse8::try_from(keys)
        .map(|f| Some(Arc::new(f)))
        .map_err(|e| Error::Corrupt(format!("building a block filter failed: {e}")))
}

/// A finished block: its metadata and its compressed bytes.
#[derive(Debug, Clone)]
pub struct SealedBlock {
    /// What a query checks first.
    pub meta: BlockMeta,
    /// The zstd-compressed columns.
    pub compressed: Vec<u8>,
}

/// Collects records into the columns of one block, and their token hashes.
#[derive(Debug)]
pub struct BlockBuilder {
    first_id: u64,
    received: Vec<i64>,
    sources: Vec<Source>,
    source_index: Vec<u32>,
    flags: Vec<u8>,
    lens: Vec<u32>,
    raw: Vec<u8>,
    hashes: HashSet64,
    long_hashes: HashSet64,
    severities: u8,
    unparsed: u32,
    truncated: u32,
    /// The uncompressed block being sealed, kept for the next block's seal.
    plain: Vec<u8>,
    /// The zstd context, kept across blocks with its level: a context per block cost
    /// its allocation and table set-up every 4,096 records.
    compressor: Option<(i32, ZstdContext)>,
}

/// A zstd compression context (a newtype for `Debug`).
struct ZstdContext(zstd::bulk::Compressor<'static>);

impl std::fmt::Debug for ZstdContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZstdContext")
    }
}

impl BlockBuilder {
    /// An empty builder whose first record will get `first_id`.
    pub fn new(first_id: u64) -> Self {
        BlockBuilder {
            first_id,
            received: Vec::with_capacity(BLOCK_RECORDS),
            sources: Vec::new(),
            source_index: Vec::with_capacity(BLOCK_RECORDS),
            flags: Vec::with_capacity(BLOCK_RECORDS),
            lens: Vec::with_capacity(BLOCK_RECORDS),
            raw: Vec::with_capacity(BLOCK_RECORDS * 256),
            hashes: HashSet64::new(),
            long_hashes: HashSet64::new(),
            severities: 0,
            unparsed: 0,
            truncated: 0,
            plain: Vec::new(),
            compressor: None,
        }
    }

    /// Makes an empty builder's first record get `first_id`, keeping its buffers and
    /// hash tables (a new builder per block cost the indexer a megabyte of fresh memory
    /// and the regrowth of its tables every 4,096 records). Does nothing to a builder
    /// that holds records.
    pub fn start_at(&mut self, first_id: u64) {
        if self.is_empty() {
            self.first_id = first_id;
        }
    }

    /// Records added so far.
    pub fn len(&self) -> usize {
        self.received.len()
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// Id the next record gets.
    pub fn next_id(&self) -> u64 {
        self.first_id + self.received.len() as u64
    }

    /// Records added so far that did not parse (stored raw).
    pub fn unparsed(&self) -> u32 {
        self.unparsed
    }

    /// Whether the block is full (by count or by size).
    pub fn is_full(&self) -> bool {
        self.received.len() >= BLOCK_RECORDS || self.raw.len() >= BLOCK_MAX_BYTES
    }

    /// Adds one record: its columns, and the hashes of its tokens and fields. Returns the
    /// header it parsed.
    pub fn push(&mut self, record: &Record, defaults: &LenientDefaults) -> Head {
        self.received.push(record.received_at);
        let index = match self.sources.iter().rposition(|s| *s == record.source) {
            Some(i) => i,
            None => {
                self.sources.push(record.source);
                self.sources.len() - 1
            }
        };
        self.source_index.push(index as u32);
        self.flags.push(record.flags);
        if record.flags & crate::record::FLAG_TRUNCATED != 0 {
            self.truncated += 1;
        }
        self.lens.push(record.raw.len() as u32);
        self.raw.extend_from_slice(&record.raw);
        let hashes = &mut self.hashes;
        let long_hashes = &mut self.long_hashes;
        for_each_token(&record.raw, |t| {
            let h = token_hash(t);
            hashes.insert(h);
            if t.len() >= LONG_TOKEN {
                long_hashes.insert(long_token_hash(h));
            }
        });
        match parse_lenient(&record.raw, defaults) {
            Ok(parsed) => {
                self.severities |= 1 << (parsed.severity as u8);
                if parsed.format == flotilla_syslog::Format::Unstructured {
                    self.unparsed += 1;
                }
                insert_field_hashes(&mut self.hashes, &parsed);
                Head::of(&record.raw, &parsed)
            }
            Err(_) => {
                // Only an empty frame fails to parse: it is kept (flagged) as it is.
                self.unparsed += 1;
                self.severities |= 1 << (defaults.severity as u8);
                Head::unparsed(defaults.severity)
            }
        }
    }

    /// Compresses the columns and builds the filter; the builder is left empty, ready
    /// for the records that follow.
    pub fn seal(&mut self, zstd_level: i32) -> Result<SealedBlock, Error> {
        let count = self.received.len();
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        plain.reserve(self.raw.len() + count * 8 + 64);
        plain.extend_from_slice(&(count as u32).to_le_bytes());
        let base = self.received.first().copied().unwrap_or(0);
        plain.extend_from_slice(&base.to_le_bytes());
        let mut prev = base;
        for &t in &self.received {
            put_varint(&mut plain, zigzag(t.wrapping_sub(prev)));
            prev = t;
        }
        put_varint(&mut plain, self.sources.len() as u64);
        for s in &self.sources {
            put_source(&mut plain, s);
        }
        for &i in &self.source_index {
            put_varint(&mut plain, u64::from(i));
        }
        plain.extend_from_slice(&self.flags);
        for &l in &self.lens {
            put_varint(&mut plain, u64::from(l));
        }
        plain.extend_from_slice(&self.raw);
        let compressor = match &mut self.compressor {
            Some((level, context)) if *level == zstd_level => context,
            slot => {
                let context = zstd::bulk::Compressor::new(zstd_level)
                    .map_err(|e| Error::io("creating a zstd context", e))?;
                &mut slot.insert((zstd_level, ZstdContext(context))).1
            }
        };
        let compressed = compressor
            .0
            .compress(&plain)
            .map_err(|e| Error::io("compressing a block", e))?;
        self.plain = plain;
        let filter = build_filter(&self.hashes.drain())?;
        let long_filter = build_filter(&self.long_hashes.drain())?;
        let meta = BlockMeta {
            first_id: self.first_id,
            count: count as u32,
            min_received: self.received.iter().copied().min().unwrap_or(0),
            max_received: self.received.iter().copied().max().unwrap_or(0),
            severities: self.severities,
            unparsed: self.unparsed,
            truncated: self.truncated,
            raw_bytes: self.raw.len() as u64,
            filter,
            long_filter,
        };
        self.first_id += count as u64;
        self.received.clear();
        self.sources.clear();
        self.source_index.clear();
        self.flags.clear();
        self.lens.clear();
        self.raw.clear();
        self.severities = 0;
        self.unparsed = 0;
        self.truncated = 0;
        Ok(SealedBlock { meta, compressed })
    }

    /// The records not yet sealed, with their ids (for queries of the newest data).
    pub fn records(&self) -> impl Iterator<Item = (u64, Record)> + '_ {
        let mut offset = 0usize;
        (0..self.received.len()).map(move |i| {
            let len = self.lens[i] as usize;
            let raw = bytes::Bytes::copy_from_slice(&self.raw[offset..offset + len]);
            offset += len;
            (
                self.first_id + i as u64,
                Record {
                    received_at: self.received[i],
                    source: self.sources[self.source_index[i] as usize],
                    flags: self.flags[i],
                    raw,
                },
            )
        })
    }
}

/// Adds the field hashes of a parsed message to `set`.
fn insert_field_hashes(set: &mut HashSet64, parsed: &ParsedMessage<'_>) {
    if let Some(h) = parsed.hostname {
        set.insert(field_hash(FieldTag::Host, h.as_bytes()));
    }
    if let Some(a) = parsed.app_name {
        set.insert(field_hash(FieldTag::App, a.as_bytes()));
    }
    if let Some(m) = parsed.msg_id {
        set.insert(field_hash(FieldTag::MsgId, m.as_bytes()));
    }
    if let Some(p) = parsed.proc_id {
        set.insert(field_hash(FieldTag::ProcId, p.as_bytes()));
    }
    let mut buf = Vec::new();
    for element in parsed.structured_data.iter() {
        for param in element.params() {
            buf.clear();
            buf.extend_from_slice(element.id.as_bytes());
            buf.push(b'.');
            buf.extend_from_slice(param.name.as_bytes());
            buf.push(b'=');
            buf.extend_from_slice(param.value().as_bytes());
            set.insert(field_hash(FieldTag::SdParam, &buf));
        }
    }
}

/// A decompressed block: records are read from it by index.
#[derive(Debug)]
pub struct DecodedBlock {
    first_id: u64,
    received: Vec<i64>,
    sources: Vec<Source>,
    source_index: Vec<u32>,
    flags: Vec<u8>,
    /// (start, end) of each record in `raw`.
    spans: Vec<(usize, usize)>,
    raw: Vec<u8>,
}

/// What reading blocks again and again reuses: a zstd decompression context and the
/// buffers (a query keeps one per thread, so reading a block allocates almost nothing).
pub struct BlockReader {
    dctx: zstd::bulk::Decompressor<'static>,
    /// Compressed bytes as read from the file.
    pub compressed: Vec<u8>,
    plain: Vec<u8>,
}

impl std::fmt::Debug for BlockReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockReader").finish_non_exhaustive()
    }
}

impl BlockReader {
    /// A reader with empty buffers.
    pub fn new() -> Result<BlockReader, Error> {
        Ok(BlockReader {
            dctx: zstd::bulk::Decompressor::new()
                .map_err(|e| Error::io("creating a zstd context", e))?,
            compressed: Vec::new(),
            plain: Vec::new(),
        })
    }

    /// Decompresses and decodes `self.compressed` (a block described by `meta`).
    pub fn decode(&mut self, meta: &BlockMeta) -> Result<DecodedBlock, Error> {
        let capacity = (meta.raw_bytes as usize)
            .saturating_add(meta.count as usize * 48)
            .saturating_add(1 << 16)
            .min(1 << 30);
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        plain.reserve(capacity);
        self.dctx
            .decompress_to_buffer(&self.compressed[..], &mut plain)
            .map_err(|e| Error::Corrupt(format!("block {}: {e}", meta.first_id)))?;
        DecodedBlock::from_plain(plain, meta)
    }

    /// Takes a block's buffer back for the next read.
    pub fn recycle(&mut self, block: DecodedBlock) {
        self.plain = block.raw;
    }
}

impl DecodedBlock {
    /// Decompresses and decodes a block; `meta` says how many records to expect.
    pub fn decode(compressed: &[u8], meta: &BlockMeta) -> Result<DecodedBlock, Error> {
        let capacity = (meta.raw_bytes as usize)
            .saturating_add(meta.count as usize * 48)
            .saturating_add(1 << 16)
            .min(1 << 30);
        let plain = zstd::bulk::decompress(compressed, capacity)
            .map_err(|e| Error::Corrupt(format!("block {}: {e}", meta.first_id)))?;
        DecodedBlock::from_plain(plain, meta)
    }

    /// Decodes the columns of a decompressed block.
    fn from_plain(plain: Vec<u8>, meta: &BlockMeta) -> Result<DecodedBlock, Error> {
        let mut r = Reader::new(&plain, "block");
        let count = r.u32()? as usize;
        if count != meta.count as usize {
            return Err(r.corrupt("record count differs from the index"));
        }
        let mut received = Vec::with_capacity(count);
        let mut prev = r.i64()?;
        for _ in 0..count {
            prev = prev.wrapping_add(unzigzag(r.varint()?));
            received.push(prev);
        }
        let n_sources = r.len(count.max(1))?;
        let mut sources = Vec::with_capacity(n_sources);
        for _ in 0..n_sources {
            sources.push(read_source(&mut r)?);
        }
        let mut source_index = Vec::with_capacity(count);
        for _ in 0..count {
            let i = r.len(n_sources.saturating_sub(1))?;
            source_index.push(i as u32);
        }
        let flags = r.bytes(count)?.to_vec();
        let mut lens = Vec::with_capacity(count);
        for _ in 0..count {
            lens.push(r.len(crate::MAX_RECORD_BYTES)?);
        }
        let header = plain.len() - r_remaining(&r, &plain);
        let mut spans = Vec::with_capacity(count);
        let mut at = header;
        for len in lens {
            let end = at + len;
            if end > plain.len() {
                return Err(Error::Corrupt(format!(
                    "block {}: raw bytes past the end",
                    meta.first_id
                )));
            }
            spans.push((at, end));
            at = end;
        }
        Ok(DecodedBlock {
            first_id: meta.first_id,
            received,
            sources,
            source_index,
            flags,
            spans,
            raw: plain,
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.received.len()
    }

    /// Whether the block has no record.
    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// The received-at time of record `i`.
    pub fn received_at(&self, i: usize) -> i64 {
        self.received[i]
    }

    /// The raw bytes of record `i`.
    pub fn raw(&self, i: usize) -> &[u8] {
        let (s, e) = self.spans[i];
        &self.raw[s..e]
    }

    /// Indexes of the records whose bytes contain `needle`'s text, in order: the block's
    /// frames are searched as one buffer, then each hit is mapped to its record.
    pub fn records_containing(&self, needle: &memchr::memmem::Finder<'_>) -> Vec<usize> {
        let (Some(&(start, _)), Some(&(_, end))) = (self.spans.first(), self.spans.last()) else {
            return Vec::new();
        };
        let region = &self.raw[start..end];
        let mut out: Vec<usize> = Vec::new();
        let mut from = 0;
        while let Some(pos) = needle.find(&region[from..]) {
            let at = start + from + pos;
            // The record whose span holds `at`.
            let i = self.spans.partition_point(|&(_, e)| e <= at);
            if i < self.spans.len() && out.last() != Some(&i) {
                out.push(i);
            }
            // Continue after this record: one hit per record is enough.
            let next = self.spans.get(i).map_or(end, |&(_, e)| e);
            from = next.max(at + 1) - start;
            if from >= region.len() {
                break;
            }
        }
        out
    }

    /// The id of record `i`.
    pub fn id(&self, i: usize) -> u64 {
        self.first_id + i as u64
    }

    /// Record `i`, with its id (its raw bytes copied out of the block).
    pub fn record(&self, i: usize) -> (u64, Record) {
        (
            self.id(i),
            Record {
                received_at: self.received[i],
                source: self.sources[self.source_index[i] as usize],
                flags: self.flags[i],
                raw: bytes::Bytes::copy_from_slice(self.raw(i)),
            },
        )
    }
}

/// Bytes of `plain` not yet read by `r`.
fn r_remaining(r: &Reader<'_>, plain: &[u8]) -> usize {
    plain.len() - r.position()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Transport;
    use bytes::Bytes;

    fn record(i: usize) -> Record {
        Record {
            received_at: 1_700_000_000_000_000_000 + i as i64 * 1000,
            source: Source {
                transport: if i.is_multiple_of(2) {
                    Transport::Tcp
                } else {
                    Transport::Udp
                },
                addr: format!("127.0.0.{}:{}", i % 3 + 1, 5000 + i % 7)
                    .parse()
                    .unwrap(),
            },
            flags: u8::from(i.is_multiple_of(5)),
            raw: Bytes::from(format!(
                "<{}>1 2024-05-06T07:08:09Z host-{} app{} {} MSG{} [ex@32473 k=\"v{}\"] line {i} id-{i:08x}",
                8 + i % 8,
                i % 4,
                i % 3,
                i,
                i % 2,
                i % 9
            )),
        }
    }

    #[test]
    fn block_round_trip_and_filter() {
        let defaults = LenientDefaults::default();
        let mut b = BlockBuilder::new(100);
        let records: Vec<Record> = (0..1000).map(record).collect();
        for r in &records {
            b.push(r, &defaults);
        }
        let pending: Vec<_> = b.records().collect();
        assert_eq!(pending.len(), 1000);
        assert_eq!(pending[7], (107, records[7].clone()));
        let sealed = b.seal(3).unwrap();
        assert!(b.is_empty());
        assert_eq!(b.next_id(), 1100);
        assert_eq!(sealed.meta.count, 1000);
        assert_eq!(sealed.meta.truncated, 200);
        let decoded = DecodedBlock::decode(&sealed.compressed, &sealed.meta).unwrap();
        for (i, r) in records.iter().enumerate() {
            assert_eq!(decoded.record(i), (100 + i as u64, r.clone()));
        }
        // Searching the block's bytes once finds exactly the records that hold a text.
        for needle in [&b"id-000003e7"[..], b"line 1", b"host-3", b"nowhere"] {
            let finder = memchr::memmem::Finder::new(needle);
            let want: Vec<usize> = (0..1000)
                .filter(|&i| finder.find(&records[i].raw).is_some())
                .collect();
            assert_eq!(decoded.records_containing(&finder), want);
        }
        // Every token and field is in the filter.
        assert!(sealed.meta.may_contain(token_hash(b"id")));
        assert!(sealed.meta.may_contain(token_hash(b"000003e7")));
        assert!(
            sealed
                .meta
                .may_contain_long(long_token_hash(token_hash(b"000003e7")))
        );
        assert!(
            sealed
                .meta
                .may_contain(field_hash(FieldTag::Host, b"host-3"))
        );
        assert!(
            sealed
                .meta
                .may_contain(field_hash(FieldTag::SdParam, b"ex@32473.k=v8"))
        );
        // Round trip of the meta.
        let mut enc = Vec::new();
        sealed.meta.encode(&mut enc);
        let meta = BlockMeta::decode(&mut Reader::new(&enc, "meta")).unwrap();
        assert!(meta.may_contain(token_hash(b"000003e7")));
        assert_eq!(meta.count, 1000);
        // A corrupt block is an error, never a panic.
        let mut bad = sealed.compressed.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        let _ = DecodedBlock::decode(&bad, &sealed.meta);
        for cut in [0, 1, 10, enc.len() / 2, enc.len() - 1] {
            assert!(BlockMeta::decode(&mut Reader::new(&enc[..cut], "meta")).is_err());
        }
    }
}
#[cfg(test)]
mod long_tests {
    use super::*;
    #[test]
    fn long_filter_holds_long_tokens() {
        let mut b = BlockBuilder::new(1);
        for i in 0..100u64 {
            b.push(
                &Record {
                    received_at: 1,
                    source: crate::record::Source::LOCAL,
                    flags: 0,
                    raw: format!("<13>1 - h a - - - x req-{:016x}", i * 7919)
                        .into_bytes()
                        .into(),
                },
                &flotilla_syslog::LenientDefaults::default(),
            );
        }
        let s = b.seal(1).unwrap();
        let lf = s.meta.long_filter.as_ref().map(|f| f.fingerprints.len());
        assert!(lf.unwrap_or(0) > 100, "{lf:?}");
    }
}
