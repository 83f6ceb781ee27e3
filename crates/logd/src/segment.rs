//! Segments: immutable files of compressed blocks with an index at the end.
//!
//! While a segment is being filled it is `segments/<first_id>.open`: blocks are appended as
//! they complete (not synced: the write-ahead log still holds their records). Sealing writes
//! the index and footer, syncs, and renames it to
//! `segments/<first_id as 20 digits>-<hour as YYYYMMDDHH>.seg`. A `.open` file found at
//! start is removed: its records are replayed from the write-ahead log.
//!
//! Layout:
//! ```text
//! "FLSEG002"
//! block 0 bytes | block 1 bytes | ...                 (zstd frames)
//! index: n_blocks u32, then per block: offset u64, len u32, crc32c u32, BlockMeta
//! footer (24 bytes): index_offset u64 | index_len u32 | crc32c(index) u32 | "FLSEGEN2"
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::block::{BlockMeta, DecodedBlock, SealedBlock};
use crate::error::{Error, IoContext};
use crate::record::Reader;
use crate::wal::sync_dir;

const MAGIC: &[u8; 8] = b"FLSEG002";
const FOOTER_MAGIC: &[u8; 8] = b"FLSEGEN2";
const FOOTER_LEN: u64 = 24;

/// One block's place in its segment file and what the query knows of it.
#[derive(Debug, Clone)]
pub struct BlockEntry {
    /// Offset of the compressed bytes in the file.
    pub offset: u64,
    /// Length of the compressed bytes.
    pub len: u32,
    /// CRC32C of the compressed bytes.
    pub crc: u32,
    /// Statistics and filter.
    pub meta: BlockMeta,
}

/// A segment as queries see it: a file, its blocks, and their summary.
#[derive(Debug)]
pub struct Segment {
    /// Path of the file (`.seg` when sealed, `.open` while filling).
    pub path: PathBuf,
    /// The file, opened for reading.
    pub file: Arc<File>,
    /// Its blocks, in id order.
    pub blocks: Vec<BlockEntry>,
    /// Whether the file is sealed (immutable, with an index).
    pub sealed: bool,
    /// Size of the file in bytes.
    pub file_bytes: u64,
}

impl Segment {
    /// Id of the first record.
    pub fn first_id(&self) -> Option<u64> {
        self.blocks.first().map(|b| b.meta.first_id)
    }

    /// Id after the last record.
    pub fn end_id(&self) -> Option<u64> {
        self.blocks
            .last()
            .map(|b| b.meta.first_id + u64::from(b.meta.count))
    }

    /// Earliest received-at time.
    pub fn min_received(&self) -> i64 {
        self.blocks
            .iter()
            .map(|b| b.meta.min_received)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Latest received-at time.
    pub fn max_received(&self) -> i64 {
        self.blocks
            .iter()
            .map(|b| b.meta.max_received)
            .max()
            .unwrap_or(i64::MIN)
    }

    /// Number of records.
    pub fn records(&self) -> u64 {
        self.blocks.iter().map(|b| u64::from(b.meta.count)).sum()
    }

    /// The hour (Unix seconds) the segment was filled for: from its sealed file name
    /// (`...-YYYYMMDDHH.seg`), else the hour of its newest record.
    pub fn hour(&self) -> i64 {
        let from_name = self
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.rsplit_once('-'))
            .and_then(|(_, h)| {
                if h.len() != 10 {
                    return None;
                }
                let y: i32 = h.get(0..4)?.parse().ok()?;
                let m: u8 = h.get(4..6)?.parse().ok()?;
                let d: u8 = h.get(6..8)?.parse().ok()?;
                let hh: i64 = h.get(8..10)?.parse().ok()?;
                Some(flotilla_syslog::days_from_civil(y, m, d) * 86_400 + hh * 3600)
            });
        from_name.unwrap_or_else(|| {
            self.max_received()
                .div_euclid(1_000_000_000)
                .div_euclid(3600)
                * 3600
        })
    }

    /// Reads, checks and decodes one block.
    pub fn read_block(&self, entry: &BlockEntry) -> Result<DecodedBlock, Error> {
        let mut buf = vec![0u8; entry.len as usize];
        self.file
            .read_exact_at(&mut buf, entry.offset)
            .ctx(|| format!("reading a block of {}", self.path.display()))?;
        if crc32c::crc32c(&buf) != entry.crc {
            return Err(Error::Corrupt(format!(
                "{}: block at offset {} fails its checksum",
                self.path.display(),
                entry.offset
            )));
        }
        DecodedBlock::decode(&buf, &entry.meta)
    }

    /// Reads, checks and decodes one block with a reader's reusable context and buffers.
    pub fn read_block_with(
        &self,
        entry: &BlockEntry,
        reader: &mut crate::block::BlockReader,
    ) -> Result<DecodedBlock, Error> {
        reader.compressed.clear();
        reader.compressed.resize(entry.len as usize, 0);
        self.file
            .read_exact_at(&mut reader.compressed, entry.offset)
            .ctx(|| format!("reading a block of {}", self.path.display()))?;
        if crc32c::crc32c(&reader.compressed) != entry.crc {
            return Err(Error::Corrupt(format!(
                "{}: block at offset {} fails its checksum",
                self.path.display(),
                entry.offset
            )));
        }
        reader.decode(&entry.meta)
    }

    /// Opens a sealed segment file and reads its index.
    pub fn open_sealed(path: &Path) -> Result<Segment, Error> {
        let file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
        let file_bytes = file
            .metadata()
            .ctx(|| format!("reading the size of {}", path.display()))?
            .len();
        let corrupt = |what: &str| Error::Corrupt(format!("{}: {what}", path.display()));
        if file_bytes < MAGIC.len() as u64 + FOOTER_LEN {
            return Err(corrupt("too short for a segment"));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        file.read_exact_at(&mut footer, file_bytes - FOOTER_LEN)
            .ctx(|| format!("reading the footer of {}", path.display()))?;
        if &footer[16..24] != FOOTER_MAGIC {
            return Err(corrupt("no footer (not sealed?)"));
        }
        let mut r = Reader::new(&footer, "segment footer");
        let index_offset = r.u64()?;
        let index_len = r.u32()? as u64;
        let index_crc = r.u32()?;
        if index_offset
            .checked_add(index_len)
            .is_none_or(|end| end > file_bytes - FOOTER_LEN)
        {
            return Err(corrupt("index outside the file"));
        }
        let mut index = vec![0u8; index_len as usize];
        file.read_exact_at(&mut index, index_offset)
            .ctx(|| format!("reading the index of {}", path.display()))?;
        if crc32c::crc32c(&index) != index_crc {
            return Err(corrupt("index fails its checksum"));
        }
        let mut r = Reader::new(&index, "segment index");
        let n = r.u32()? as usize;
        let mut blocks = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            let offset = r.u64()?;
            let len = r.u32()?;
            let crc = r.u32()?;
            if offset.saturating_add(u64::from(len)) > index_offset {
                return Err(corrupt("block outside the data area"));
            }
            let meta = BlockMeta::decode(&mut r)?;
            blocks.push(BlockEntry {
                offset,
                len,
                crc,
                meta,
            });
        }
        Ok(Segment {
            path: path.to_path_buf(),
            file: Arc::new(file),
            blocks,
            sealed: true,
            file_bytes,
        })
    }
}

/// Writes a segment: blocks as they complete, then the index on [`seal`](Self::seal).
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    reader: Arc<File>,
    blocks: Vec<BlockEntry>,
    len: u64,
    /// The hour (Unix seconds, floored) whose records it holds.
    pub hour: i64,
}

impl SegmentWriter {
    /// Starts `segments/<first_id>.open`.
    pub fn create(dir: &Path, first_id: u64, hour: i64) -> Result<Self, Error> {
        let path = dir.join(format!("{first_id:020}.open"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(&path)
            .ctx(|| format!("creating {}", path.display()))?;
        file.write_all(MAGIC)
            .ctx(|| format!("writing {}", path.display()))?;
        let reader = Arc::new(File::open(&path).ctx(|| format!("opening {}", path.display()))?);
        Ok(SegmentWriter {
            dir: dir.to_path_buf(),
            path,
            file,
            reader,
            blocks: Vec::new(),
            len: MAGIC.len() as u64,
            hour,
        })
    }

    /// Number of blocks written.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Appends a block. On error the file is cut back, so the call can be retried.
    pub fn append(&mut self, block: &SealedBlock) -> Result<(), Error> {
        if let Err(e) = self.file.write_all_at(&block.compressed, self.len) {
            let _ = self.file.set_len(self.len);
            return Err(Error::io(format!("writing {}", self.path.display()), e));
        }
        self.blocks.push(BlockEntry {
            offset: self.len,
            len: block.compressed.len() as u32,
            crc: crc32c::crc32c(&block.compressed),
            meta: block.meta.clone(),
        });
        self.len += block.compressed.len() as u64;
        Ok(())
    }

    /// A view of the blocks written so far, for queries.
    pub fn view(&self) -> Segment {
        Segment {
            path: self.path.clone(),
            file: self.reader.clone(),
            blocks: self.blocks.clone(),
            sealed: false,
            file_bytes: self.len,
        }
    }

    /// Writes index and footer, syncs, renames to the sealed name and syncs the
    /// directory. On error the writer stays usable (the index is rewritten on retry).
    pub fn seal(&mut self) -> Result<Segment, Error> {
        let first_id = self.blocks.first().map_or(0, |b| b.meta.first_id);
        let mut index = Vec::new();
        index.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        for b in &self.blocks {
            index.extend_from_slice(&b.offset.to_le_bytes());
            index.extend_from_slice(&b.len.to_le_bytes());
            index.extend_from_slice(&b.crc.to_le_bytes());
            b.meta.encode(&mut index);
        }
        let mut tail = index.clone();
        tail.extend_from_slice(&self.len.to_le_bytes());
        tail.extend_from_slice(&(index.len() as u32).to_le_bytes());
        tail.extend_from_slice(&crc32c::crc32c(&index).to_le_bytes());
        tail.extend_from_slice(FOOTER_MAGIC);
        let result = self
            .file
            .write_all_at(&tail, self.len)
            .and_then(|()| self.file.sync_all());
        if let Err(e) = result {
            let _ = self.file.set_len(self.len);
            return Err(Error::io(format!("sealing {}", self.path.display()), e));
        }
        let (y, m, d, h) = hour_parts(self.hour);
        let sealed = self
            .dir
            .join(format!("{first_id:020}-{y:04}{m:02}{d:02}{h:02}.seg"));
        std::fs::rename(&self.path, &sealed)
            .ctx(|| format!("renaming {} to {}", self.path.display(), sealed.display()))?;
        sync_dir(&self.dir)?;
        let file_bytes = self.len + tail.len() as u64;
        Ok(Segment {
            path: sealed,
            file: self.reader.clone(),
            blocks: std::mem::take(&mut self.blocks),
            sealed: true,
            file_bytes,
        })
    }

    /// Removes the unsealed file (its records are still in the write-ahead log).
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// (year, month, day, hour) of a Unix time in seconds, UTC.
pub fn hour_parts(unix_secs: i64) -> (i64, u8, u8, i64) {
    let days = unix_secs.div_euclid(86_400);
    let (y, m, d) = flotilla_syslog::civil_from_days(days);
    (y, m, d, unix_secs.rem_euclid(86_400) / 3600)
}

/// Sealed segments and leftover `.open` files of `dir` (created if missing).
pub fn list_dir(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), Error> {
    std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    let mut sealed = Vec::new();
    let mut open = Vec::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let path = entry.ctx(|| format!("listing {}", dir.display()))?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("seg") => sealed.push(path),
            Some("open") => open.push(path),
            _ => {}
        }
    }
    sealed.sort();
    Ok((sealed, open))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockBuilder;
    use crate::record::{Record, Source};
    use bytes::Bytes;
    use flotilla_syslog::LenientDefaults;

    #[test]
    fn write_seal_reopen_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 1, 1_700_000_000 / 3600 * 3600).unwrap();
        let mut b = BlockBuilder::new(1);
        for block in 0..3 {
            for i in 0..100 {
                b.push(
                    &Record {
                        received_at: 1_700_000_000_000_000_000 + (block * 100 + i) as i64,
                        source: Source::LOCAL,
                        flags: 0,
                        raw: Bytes::from(format!("<13>block {block} line {i}")),
                    },
                    &LenientDefaults::default(),
                );
            }
            w.append(&b.seal(3).unwrap()).unwrap();
        }
        assert_eq!(w.view().blocks.len(), 3);
        let view = w.view();
        let decoded = view.read_block(&view.blocks[1]).unwrap();
        assert_eq!(&decoded.record(5).1.raw[..], b"<13>block 1 line 5");
        let sealed = w.seal().unwrap();
        assert!(sealed.path.to_string_lossy().ends_with("2023111422.seg"));
        assert_eq!(sealed.hour(), 1_700_000_000 / 3600 * 3600);
        let reopened = Segment::open_sealed(&sealed.path).unwrap();
        assert_eq!(reopened.records(), 300);
        assert_eq!(reopened.first_id(), Some(1));
        assert_eq!(reopened.end_id(), Some(301));
        let decoded = reopened.read_block(&reopened.blocks[2]).unwrap();
        assert_eq!(decoded.record(99).0, 300);
        // Corruption anywhere is an error, never a panic.
        let bytes = std::fs::read(&sealed.path).unwrap();
        for i in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            let p = dir.path().join("bad.seg");
            std::fs::write(&p, &bad).unwrap();
            if let Ok(seg) = Segment::open_sealed(&p) {
                for b in &seg.blocks {
                    let _ = seg.read_block(b);
                }
            }
        }
    }
}
