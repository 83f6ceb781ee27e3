//! The write-ahead log: the durability boundary. Every batch of records is appended as one
//! checksummed entry; one `fdatasync` covers every entry written since the previous one
//! (group commit). A RELP message is acknowledged only after the sync that covers it.
//!
//! Files: `wal/<generation as 16 hex digits>.wal`, each starting with the 16-byte header
//! `FLWAL001` + generation (u64 LE). Entries:
//! ```text
//! payload_len u32 | crc32c(payload) u32 | payload = first_id u64, count u32, records...
//! ```
//! Recovery reads the files in generation order and stops at the first entry that is short
//! or fails its checksum: in the newest file that is a torn tail (the file is cut there); in
//! an older file it is corruption, reported, and the rest of that file is skipped.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext};
use crate::record::{Reader, Record, put_wal_record, read_wal_record};

const MAGIC: &[u8; 8] = b"FLWAL001";
const HEADER_LEN: u64 = 16;
/// Largest entry accepted when reading (a larger length is corruption).
const MAX_ENTRY: usize = 256 << 20;

/// What recovery found in the write-ahead log.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Every record of every valid entry, in order, with its id.
    pub records: Vec<(u64, Record)>,
    /// Bytes cut from the newest file's torn tail.
    pub torn_tail_bytes: u64,
    /// Corrupt entries found in older files (the rest of such a file is skipped).
    pub corrupt_entries: u64,
    /// Generations found (oldest first).
    pub generations: Vec<u64>,
}

/// The open write-ahead log.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    file: File,
    generation: u64,
    /// Length of the file up to the last successful write.
    written: u64,
    /// Length of the file up to the last successful sync.
    synced: u64,
    /// Encoded entries not yet written.
    buf: Vec<u8>,
    /// Bytes appended to this generation (written or buffered).
    generation_bytes: u64,
}

fn wal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:016x}.wal"))
}

/// Generations of the `.wal` files in `dir`, oldest first.
fn list_generations(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(hex) = name.strip_suffix(".wal")
            && let Ok(g) = u64::from_str_radix(hex, 16)
        {
            out.push(g);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Syncs a directory so that a created, renamed or removed entry is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}

impl Wal {
    /// Opens the log in `dir` (created if missing): recovers every file, cuts a torn tail,
    /// and starts a new generation for what follows.
    pub fn open(dir: &Path) -> Result<(Wal, Recovered), Error> {
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        let generations = list_generations(dir)?;
        let mut recovered = Recovered {
            generations: generations.clone(),
            ..Recovered::default()
        };
        let newest = generations.last().copied();
        for &g in &generations {
            let path = wal_path(dir, g);
            let (valid_len, file_len, clean) = read_file(&path, &mut recovered.records)?;
            if !clean {
                if Some(g) == newest {
                    recovered.torn_tail_bytes += file_len - valid_len;
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .ctx(|| format!("opening {}", path.display()))?;
                    f.set_len(valid_len)
                        .and_then(|()| f.sync_all())
                        .ctx(|| format!("cutting the torn tail of {}", path.display()))?;
                    tracing::warn!(
                        file = %path.display(),
                        cut = file_len - valid_len,
                        "write-ahead log: torn tail cut"
                    );
                } else {
                    recovered.corrupt_entries += 1;
                    tracing::error!(
                        file = %path.display(),
                        at = valid_len,
                        "write-ahead log: corrupt entry in an older file; the rest of it is skipped"
                    );
                }
            }
        }
        let generation = newest.map_or(1, |g| g + 1);
        let wal = Wal::create(dir, generation)?;
        Ok((wal, recovered))
    }

    /// Reads every valid record of the log in `dir` without changing anything (no tail
    /// is cut, no generation started): for read-only queries of a live data directory.
    pub fn read_only(dir: &Path) -> Result<Vec<(u64, Record)>, Error> {
        let mut records = Vec::new();
        if !dir.exists() {
            return Ok(records);
        }
        for g in list_generations(dir)? {
            read_file(&wal_path(dir, g), &mut records)?;
        }
        Ok(records)
    }

    fn create(dir: &Path, generation: u64) -> Result<Wal, Error> {
        let path = wal_path(dir, generation);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .ctx(|| format!("creating {}", path.display()))?;
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&generation.to_le_bytes());
        file.write_all(&header)
            .and_then(|()| file.sync_all())
            .ctx(|| format!("writing {}", path.display()))?;
        sync_dir(dir)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            file,
            generation,
            written: HEADER_LEN,
            synced: HEADER_LEN,
            buf: Vec::with_capacity(1 << 20),
            generation_bytes: 0,
        })
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes appended to the current generation so far.
    pub fn generation_bytes(&self) -> u64 {
        self.generation_bytes
    }

    /// Whether entries were appended since the last successful sync.
    pub fn has_unsynced(&self) -> bool {
        !self.buf.is_empty() || self.written > self.synced
    }

    /// Appends one entry (buffered; [`sync`](Self::sync) writes and syncs it).
    pub fn append(&mut self, first_id: u64, records: &[Record]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; 8]);
        self.buf.extend_from_slice(&first_id.to_le_bytes());
        self.buf
            .extend_from_slice(&(records.len() as u32).to_le_bytes());
        for r in records {
            put_wal_record(&mut self.buf, r);
        }
        let payload = &self.buf[start + 8..];
        let len = payload.len() as u32;
        let crc = crc32c::crc32c(payload);
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.generation_bytes += (self.buf.len() - start) as u64;
    }

    /// Writes what is buffered without syncing (lets the kernel start early).
    pub fn write_buffered(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        match self.file.write_all(&self.buf) {
            Ok(()) => {
                self.written += self.buf.len() as u64;
                self.buf.clear();
                Ok(())
            }
            Err(e) => {
                // A partial write leaves garbage after `written`: cut it so that a retry
                // (or recovery) sees a clean end. The buffer is kept for the retry.
                self.undo_partial_write();
                Err(Error::io(
                    format!("writing {}", wal_path(&self.dir, self.generation).display()),
                    e,
                ))
            }
        }
    }

    fn undo_partial_write(&mut self) {
        let _ = self.file.set_len(self.written);
        let _ = self.file.seek(SeekFrom::Start(self.written));
    }

    /// Writes what is buffered and syncs the file: afterwards every appended entry
    /// survives a crash. On error nothing appended is lost from memory; call again.
    pub fn sync(&mut self) -> Result<(), Error> {
        self.write_buffered()?;
        if self.written == self.synced {
            return Ok(());
        }
        self.file
            .sync_data()
            .ctx(|| format!("syncing {}", wal_path(&self.dir, self.generation).display()))?;
        self.synced = self.written;
        Ok(())
    }

    /// Syncs, then starts a new generation; returns the generation just closed. Files of
    /// closed generations are removed with [`remove_through`](Self::remove_through) once
    /// what they hold is durable elsewhere.
    pub fn rotate(&mut self) -> Result<u64, Error> {
        self.sync()?;
        let old = self.generation;
        let new = Wal::create(&self.dir, old + 1)?;
        *self = new;
        Ok(old)
    }

    /// Removes the files of every generation up to and including `generation`.
    pub fn remove_through(&self, generation: u64) -> Result<(), Error> {
        for g in list_generations(&self.dir)? {
            if g <= generation && g != self.generation {
                let path = wal_path(&self.dir, g);
                std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
            }
        }
        sync_dir(&self.dir)
    }
}

/// Reads one file's valid entries into `out`. Returns (valid length, file length, clean).
fn read_file(path: &Path, out: &mut Vec<(u64, Record)>) -> Result<(u64, u64, bool), Error> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .ctx(|| format!("reading {}", path.display()))?;
    let (valid, clean) = decode_file(&data, out);
    Ok((valid, data.len() as u64, clean))
}

/// Decodes the bytes of one write-ahead log file: every valid entry's records go to
/// `out`. Returns (length of the valid prefix, whether the file ends cleanly there).
/// Never panics, whatever the bytes.
pub fn decode_file(data: &[u8], out: &mut Vec<(u64, Record)>) -> (u64, bool) {
    if data.len() < HEADER_LEN as usize || &data[..8] != MAGIC {
        // A file cut before its header was fully written holds nothing.
        return (0, data.is_empty());
    }
    let mut at = HEADER_LEN as usize;
    loop {
        if at == data.len() {
            return (at as u64, true);
        }
        let Some(head) = data.get(at..at + 8) else {
            return (at as u64, false);
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_ENTRY {
            return (at as u64, false);
        }
        let Some(payload) = data.get(at + 8..at + 8 + len) else {
            return (at as u64, false);
        };
        if crc32c::crc32c(payload) != crc {
            return (at as u64, false);
        }
        match decode_entry(payload) {
            Ok(records) => out.extend(records),
            // A checksummed entry that does not decode was written by a different
            // version or is corrupt: stop here like for a checksum failure.
            Err(_) => return (at as u64, false),
        }
        at += 8 + len;
    }
}

/// Decodes one entry's payload (first id, count, records).
pub fn decode_entry(payload: &[u8]) -> Result<Vec<(u64, Record)>, Error> {
    let mut r = Reader::new(payload, "write-ahead log entry");
    let first_id = r.u64()?;
    let count = r.u32()? as usize;
    let mut records = Vec::with_capacity(count.min(1 << 16));
    for i in 0..count {
        records.push((first_id + i as u64, read_wal_record(&mut r)?));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Source;
    use bytes::Bytes;

    fn records(n: usize, tag: &str) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                received_at: i as i64,
                source: Source::LOCAL,
                flags: 0,
                raw: Bytes::from(format!("<13>{tag} message {i}")),
            })
            .collect()
    }

    #[test]
    fn append_sync_recover() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, rec) = Wal::open(dir.path()).unwrap();
        assert!(rec.records.is_empty());
        wal.append(1, &records(3, "a"));
        wal.append(4, &records(2, "b"));
        wal.sync().unwrap();
        drop(wal);
        let (wal, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(rec.records.len(), 5);
        assert_eq!(rec.records[3].0, 4);
        assert_eq!(&rec.records[4].1.raw[..], b"<13>b message 1");
        assert_eq!(rec.torn_tail_bytes, 0);
        assert_eq!(wal.generation(), 2);
    }

    #[test]
    fn torn_tail_is_cut_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(1, &records(2, "a"));
        wal.sync().unwrap();
        let good_len = std::fs::metadata(wal_path(dir.path(), 1)).unwrap().len();
        wal.append(3, &records(2, "b"));
        wal.sync().unwrap();
        drop(wal);
        let full = std::fs::read(wal_path(dir.path(), 1)).unwrap();
        for cut in good_len as usize..full.len() {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(wal_path(d.path(), 1), &full[..cut]).unwrap();
            let (_, rec) = Wal::open(d.path()).unwrap();
            assert_eq!(rec.records.len(), 2, "cut at {cut}");
            assert_eq!(rec.torn_tail_bytes, (cut as u64) - good_len);
            assert_eq!(
                std::fs::metadata(wal_path(d.path(), 1)).unwrap().len(),
                good_len
            );
        }
        // A flipped byte in the last entry is a torn tail too.
        let d = tempfile::tempdir().unwrap();
        let mut bad = full.clone();
        let last = bad.len() - 3;
        bad[last] ^= 1;
        std::fs::write(wal_path(d.path(), 1), &bad).unwrap();
        let (_, rec) = Wal::open(d.path()).unwrap();
        assert_eq!(rec.records.len(), 2);
    }

    #[test]
    fn rotate_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(1, &records(1, "a"));
        let old = wal.rotate().unwrap();
        assert_eq!(old, 1);
        wal.append(2, &records(1, "b"));
        wal.sync().unwrap();
        wal.remove_through(old).unwrap();
        drop(wal);
        let (_, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(rec.records.len(), 1);
        assert_eq!(rec.records[0].0, 2);
    }
}
