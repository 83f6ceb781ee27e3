//! Record and replay: the inputs a live front-end's machine was fed, with their `now`,
//! re-run offline against the same machine, every output checked.
//!
//! `flotilla frontend --record DIR` writes, into `DIR`, files `record-000001.bin`,
//! `record-000002.bin`, ... (a new one after [`RecordSettings::file_bytes`] of records), each
//! starting with [`MAGIC`] and holding records `tag (u8) | length (u32 LE) | payload`:
//!
//! - `H` (first record of the first file): the front-end's configuration and its seed as
//!   JSON (this includes the fleet's token key: a recording is as secret as the key file,
//!   and is written with mode 0600);
//! - `C` (first record of every later file): a checkpoint, the machine's whole state
//!   ([`Frontend::checkpoint`], postcard; it holds the token key too);
//! - `I`: one input: `now` (u64 LE nanoseconds) and the input's encoding (below);
//! - `O`: the outputs the shell took between two inputs: their count (u32 LE) and the
//!   XXH3-128 of their encoding (the connection or link, the bytes, the flags), so a replay
//!   compares every output bit for bit without storing the fan-out's copies.
//!
//! The recording rotates within a bound (`--record-max-mb`, [`RecordSettings::max_bytes`]):
//! when a new file starts, the oldest files are deleted while all of them together hold
//! more than the bound, so the directory keeps the newest part of the run (what led to a
//! crash, say). A replay starts at the oldest file left: from the header if it is the
//! first, from its checkpoint otherwise. A process that dies mid-write leaves a torn last
//! record; a replay stops there and says so.
//!
//! [`replay`] runs a recording: a machine made from the header or the first checkpoint,
//! each input fed at its `now`, each `O` record checked against what the machine gives,
//! and at each later checkpoint the machine's state compared byte for byte with the
//! recorded one; the first difference is reported with the input that produced it.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use flotilla_conn::Instant;
use flotilla_wire::{RawFrame, WireError};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::config::FrontendConfig;
use crate::error::FrontendError;
use crate::frontend::{Frontend, Input, Output};
use crate::ids::{ConnId, GameId};

/// The first bytes of every recording file. The digit is the format: checkpoints are
/// postcard, which reads fields by position, so a change to the machine's state (format 2:
/// the welcomed clients' keep-alive, the handshake and transport timeouts) makes older
/// recordings unreadable, and they are refused as such.
pub const MAGIC: &[u8; 8] = b"FLTREC2\n";

/// The start shared by every format's [`MAGIC`].
const MAGIC_FAMILY: &[u8; 6] = b"FLTREC";

/// The largest recording file [`RecordSettings::new`] chooses.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The smallest recording file: a file is only closed past this many bytes.
pub const MIN_FILE_BYTES: u64 = 16 << 10;

/// Where and how much to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSettings {
    /// The directory (created if missing; must not hold a recording already).
    pub dir: PathBuf,
    /// The bound of all files together: past it, the oldest files are deleted (the newest
    /// file is always kept, even if it alone is larger).
    pub max_bytes: u64,
    /// A file is closed and the next one started (with a checkpoint) once this many bytes
    /// of records follow its own checkpoint (at least [`MIN_FILE_BYTES`]).
    pub file_bytes: u64,
}

impl RecordSettings {
    /// Records into `dir` within `max_bytes`, in files of an eighth of that (between
    /// [`MIN_FILE_BYTES`] and [`MAX_FILE_BYTES`]), so that rotating deletes a small part
    /// of what is kept.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        Self {
            dir: dir.into(),
            max_bytes,
            file_bytes: (max_bytes / 8).clamp(MIN_FILE_BYTES, MAX_FILE_BYTES),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    seed: u64,
    config: FrontendConfig,
}

const TAG_HEADER: u8 = b'H';
const TAG_INPUT: u8 = b'I';
const TAG_OUTPUTS: u8 = b'O';
const TAG_CHECKPOINT: u8 = b'C';

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn encode_error(error: &WireError, out: &mut Vec<u8>) -> Result<(), FrontendError> {
    match error {
        WireError::FrameTooLarge { len, max } => {
            out.push(0);
            put_u64(out, *len as u64);
            put_u64(out, *max as u64);
        }
        WireError::EmptyFrame => out.push(1),
        WireError::UnknownFrameType(code) => {
            out.push(2);
            out.push(*code);
        }
        // The shells' decoders produce only the three framing errors above.
        other => {
            return Err(FrontendError::Record(format!(
                "cannot record the framing error {other:?}"
            )));
        }
    }
    Ok(())
}

/// Encodes one input (the `I` record's payload after `now`).
pub fn encode_input(input: &Input, out: &mut Vec<u8>) -> Result<(), FrontendError> {
    match input {
        Input::ClientConnected(conn) => {
            out.push(0);
            put_u64(out, conn.0);
        }
        Input::ClientFrame(conn, frame) => {
            out.push(1);
            put_u64(out, conn.0);
            put_bytes(out, frame.as_bytes());
        }
        Input::ClientMalformed(conn, error) => {
            out.push(2);
            put_u64(out, conn.0);
            encode_error(error, out)?;
        }
        Input::ClientDrained(conn, bytes) => {
            out.push(3);
            put_u64(out, conn.0);
            put_u64(out, *bytes as u64);
        }
        Input::ClientWriting(conn) => {
            out.push(15);
            put_u64(out, conn.0);
        }
        Input::ClientDiscarded(conn, bytes) => {
            out.push(4);
            put_u64(out, conn.0);
            put_u64(out, *bytes as u64);
        }
        Input::ClientClosed(conn) => {
            out.push(5);
            put_u64(out, conn.0);
        }
        Input::GameConnected(game) => {
            out.push(6);
            put_u64(out, game.0);
        }
        Input::GameFrame(game, frame) => {
            out.push(7);
            put_u64(out, game.0);
            put_bytes(out, frame.as_bytes());
        }
        Input::GameMalformed(game, error) => {
            out.push(8);
            put_u64(out, game.0);
            encode_error(error, out)?;
        }
        Input::GameClosed(game) => {
            out.push(9);
            put_u64(out, game.0);
        }
        Input::GameDrained(game, bytes) => {
            out.push(10);
            put_u64(out, game.0);
            put_u64(out, *bytes as u64);
        }
        Input::ClientReadingPaused => out.push(11),
        Input::ClientReadingResumed => out.push(12),
        Input::Timeout => out.push(13),
        Input::WallClock { unix_millis } => {
            out.push(14);
            put_u64(out, *unix_millis);
        }
    }
    Ok(())
}

/// Reads what [`encode_input`] wrote.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrontendError> {
        if self.bytes.len() < n {
            return Err(FrontendError::Record("an input record is cut short".into()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FrontendError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, FrontendError> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }

    fn bytes(&mut self) -> Result<Bytes, FrontendError> {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(self.take(4)?);
        let len = u32::from_le_bytes(raw) as usize;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    fn frame(&mut self) -> Result<RawFrame, FrontendError> {
        let bytes = self.bytes()?;
        RawFrame::parse(bytes, usize::MAX)
            .map_err(|error| FrontendError::Record(format!("a recorded frame: {error}")))
    }

    fn error(&mut self) -> Result<WireError, FrontendError> {
        Ok(match self.u8()? {
            0 => WireError::FrameTooLarge {
                len: self.u64()? as usize,
                max: self.u64()? as usize,
            },
            1 => WireError::EmptyFrame,
            2 => WireError::UnknownFrameType(self.u8()?),
            other => {
                return Err(FrontendError::Record(format!(
                    "unknown framing error {other} in an input record"
                )));
            }
        })
    }
}

/// Decodes one input (what [`encode_input`] wrote).
pub fn decode_input(bytes: &[u8]) -> Result<Input, FrontendError> {
    let mut r = Reader { bytes };
    let input = match r.u8()? {
        0 => Input::ClientConnected(ConnId(r.u64()?)),
        1 => Input::ClientFrame(ConnId(r.u64()?), r.frame()?),
        2 => Input::ClientMalformed(ConnId(r.u64()?), r.error()?),
        3 => Input::ClientDrained(ConnId(r.u64()?), r.u64()? as usize),
        4 => Input::ClientDiscarded(ConnId(r.u64()?), r.u64()? as usize),
        5 => Input::ClientClosed(ConnId(r.u64()?)),
        6 => Input::GameConnected(GameId(r.u64()?)),
        7 => Input::GameFrame(GameId(r.u64()?), r.frame()?),
        8 => Input::GameMalformed(GameId(r.u64()?), r.error()?),
        9 => Input::GameClosed(GameId(r.u64()?)),
        10 => Input::GameDrained(GameId(r.u64()?), r.u64()? as usize),
        11 => Input::ClientReadingPaused,
        12 => Input::ClientReadingResumed,
        13 => Input::Timeout,
        14 => Input::WallClock {
            unix_millis: r.u64()?,
        },
        15 => Input::ClientWriting(ConnId(r.u64()?)),
        other => {
            return Err(FrontendError::Record(format!("unknown input kind {other}")));
        }
    };
    if !r.bytes.is_empty() {
        return Err(FrontendError::Record(format!(
            "{} bytes left after an input record",
            r.bytes.len()
        )));
    }
    Ok(input)
}

/// Folds outputs into the `O` record's count and digest.
#[derive(Default)]
pub struct OutputDigest {
    hasher: Xxh3,
    count: u32,
}

impl OutputDigest {
    /// Adds one output.
    pub fn add(&mut self, output: &Output) {
        let h = &mut self.hasher;
        match output {
            Output::SendToClient {
                conn,
                bytes,
                droppable,
            } => {
                h.update(&[0, u8::from(*droppable)]);
                h.update(&conn.0.to_le_bytes());
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
            Output::DropQueuedBatches(conn) => {
                h.update(&[1]);
                h.update(&conn.0.to_le_bytes());
            }
            Output::CloseClient(conn, reason) => {
                h.update(&[2]);
                h.update(&conn.0.to_le_bytes());
                h.update(format!("{reason:?}").as_bytes());
            }
            Output::SendToGame(game, bytes) => {
                h.update(&[3]);
                h.update(&game.0.to_le_bytes());
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
            Output::CloseGame(game, reason) => {
                h.update(&[4]);
                h.update(&game.0.to_le_bytes());
                h.update(format!("{reason:?}").as_bytes());
            }
        }
        self.count += 1;
    }

    /// The count and digest of what was added since the last call; `None` if nothing.
    pub fn take(&mut self) -> Option<(u32, u128)> {
        if self.count == 0 {
            return None;
        }
        let result = (self.count, self.hasher.digest128());
        *self = Self::default();
        Some(result)
    }
}

/// Writes a recording as the shell feeds its machine. Never fails the front-end: an I/O
/// error stops the recording (logged once).
///
/// It rotates: once a file holds [`RecordSettings::file_bytes`] of records after its
/// checkpoint, the next one starts with
/// a checkpoint of the machine ([`Frontend::checkpoint`]) and the oldest files are deleted
/// while all of them hold more than [`RecordSettings::max_bytes`]. So the directory keeps
/// the newest stretch of the run, and a replay starts at the oldest checkpoint left.
pub struct Recorder {
    dir: PathBuf,
    file: Option<BufWriter<File>>,
    file_index: u32,
    /// Bytes written to the current file after its checkpoint: what fills a file (a large
    /// machine state does not make every file full at once).
    file_records_bytes: u64,
    file_limit: u64,
    /// The files on disk, oldest first: index and size.
    files: VecDeque<(u32, u64)>,
    /// Their total size.
    total_bytes: u64,
    max_bytes: u64,
    outputs: OutputDigest,
    scratch: Vec<u8>,
    stopped: Option<String>,
    inputs: u64,
    checkpoints: u64,
    files_deleted: u64,
}

fn open_file(dir: &Path, index: u32) -> std::io::Result<BufWriter<File>> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = BufWriter::with_capacity(1 << 20, options.open(file_path(dir, index))?);
    file.write_all(MAGIC)?;
    Ok(file)
}

fn file_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("record-{index:06}.bin"))
}

/// The recording files in `dir`, by index (any gap is the caller's to judge).
fn recording_files(dir: &Path) -> Result<Vec<u32>, FrontendError> {
    let entries = fs::read_dir(dir)
        .map_err(|error| FrontendError::Record(format!("reading {}: {error}", dir.display())))?;
    let mut indices = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| {
            FrontendError::Record(format!("reading {}: {error}", dir.display()))
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(index) = name
            .strip_prefix("record-")
            .and_then(|rest| rest.strip_suffix(".bin"))
            .and_then(|digits| digits.parse::<u32>().ok())
        {
            indices.push(index);
        }
    }
    indices.sort_unstable();
    Ok(indices)
}

impl Recorder {
    /// Starts a recording of a machine made with `config` and `seed` in `settings.dir`
    /// (created if missing; refused if it already holds a recording).
    pub fn create(
        settings: &RecordSettings,
        config: &FrontendConfig,
        seed: u64,
    ) -> Result<Self, FrontendError> {
        let dir = settings.dir.clone();
        let failed = |what: &str, error: std::io::Error| {
            FrontendError::Record(format!("{what} {}: {error}", dir.display()))
        };
        fs::create_dir_all(&dir).map_err(|e| failed("creating", e))?;
        if let Some(first) = recording_files(&dir)?.first() {
            return Err(FrontendError::Record(format!(
                "{} already holds a recording ({}): choose an empty directory",
                dir.display(),
                file_path(&dir, *first).display()
            )));
        }
        let file = open_file(&dir, 1).map_err(|e| failed("writing to", e))?;
        let header = serde_json::to_vec(&Header {
            version: 1,
            seed,
            config: config.clone(),
        })
        .map_err(|error| FrontendError::Record(format!("recording header: {error}")))?;
        let mut recorder = Self {
            dir,
            file: Some(file),
            file_index: 1,
            file_records_bytes: 0,
            file_limit: settings.file_bytes.max(MIN_FILE_BYTES),
            files: VecDeque::from([(1, MAGIC.len() as u64)]),
            total_bytes: MAGIC.len() as u64,
            max_bytes: settings.max_bytes,
            outputs: OutputDigest::default(),
            scratch: Vec::new(),
            stopped: None,
            inputs: 0,
            checkpoints: 0,
            files_deleted: 0,
        };
        recorder.write(TAG_HEADER, &header);
        if let Some(reason) = &recorder.stopped {
            return Err(FrontendError::Record(reason.clone()));
        }
        Ok(recorder)
    }

    /// Why recording stopped, if it did.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// Inputs recorded.
    pub fn inputs(&self) -> u64 {
        self.inputs
    }

    /// Checkpoints written (one per file after the first).
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }

    /// Old files deleted to stay within the bound.
    pub fn files_deleted(&self) -> u64 {
        self.files_deleted
    }

    /// Records one input about to be fed at `now` to `machine` (after the outputs taken
    /// since the last one). When the file is full, the next one starts with a checkpoint
    /// of `machine`, and `machine` becomes the machine made from it (see below).
    ///
    /// A restored machine behaves as the original does, but its hash tables are laid out
    /// anew, so it may visit connections in another order than the original would have.
    /// The live machine is therefore replaced by the restored one, exactly as a replay
    /// starting at that checkpoint makes it: from there on both run the same code on the
    /// same state. This costs a pause of one checkpoint's write and read per file.
    pub fn input(&mut self, now: Instant, input: &Input, machine: &mut Frontend) {
        if self.stopped.is_some() {
            return;
        }
        self.flush_outputs();
        if self.file_records_bytes >= self.file_limit {
            self.rotate(machine);
            if self.stopped.is_some() {
                return;
            }
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        put_u64(&mut scratch, now.as_nanos());
        match encode_input(input, &mut scratch) {
            Ok(()) => {
                self.write(TAG_INPUT, &scratch);
                self.inputs += 1;
            }
            Err(error) => self.stop(error.to_string()),
        }
        self.scratch = scratch;
    }

    /// Records one output the shell took from the machine.
    pub fn output(&mut self, output: &Output) {
        if self.stopped.is_none() {
            self.outputs.add(output);
        }
    }

    /// Writes what is buffered to the file (at shutdown; also safe to call any time).
    pub fn finish(&mut self) {
        if self.stopped.is_none() {
            self.flush_outputs();
        }
        if let Some(file) = self.file.as_mut()
            && let Err(error) = file.flush()
        {
            self.stopped = Some(format!("flushing the recording: {error}"));
        }
    }

    fn flush_outputs(&mut self) {
        if let Some((count, digest)) = self.outputs.take() {
            let mut payload = [0u8; 20];
            payload[..4].copy_from_slice(&count.to_le_bytes());
            payload[4..].copy_from_slice(&digest.to_le_bytes());
            self.write(TAG_OUTPUTS, &payload);
        }
    }

    fn stop(&mut self, reason: String) {
        log::warn!("recording into {} stopped: {reason}", self.dir.display());
        if let Some(file) = self.file.as_mut() {
            let _ = file.flush();
        }
        self.stopped = Some(reason);
    }

    /// Closes the full file, starts the next with a checkpoint of `machine` (which becomes
    /// the restored machine), and deletes the oldest files past the bound.
    fn rotate(&mut self, machine: &mut Frontend) {
        if let Some(mut file) = self.file.take()
            && let Err(error) = file.flush()
        {
            return self.stop(format!("writing the recording: {error}"));
        }
        let checkpoint = match machine
            .checkpoint()
            .and_then(|bytes| Frontend::restore(&bytes).map(|restored| (bytes, restored)))
        {
            Ok((bytes, restored)) => {
                *machine = restored;
                bytes
            }
            Err(error) => return self.stop(error.to_string()),
        };
        self.file_index += 1;
        match open_file(&self.dir, self.file_index) {
            Ok(file) => {
                self.file = Some(file);
                self.total_bytes += MAGIC.len() as u64;
                self.files.push_back((self.file_index, MAGIC.len() as u64));
            }
            Err(error) => return self.stop(format!("starting a recording file: {error}")),
        }
        self.write(TAG_CHECKPOINT, &checkpoint);
        self.file_records_bytes = 0;
        self.checkpoints += 1;
        while self.total_bytes > self.max_bytes && self.files.len() > 1 {
            let Some((index, bytes)) = self.files.pop_front() else {
                break;
            };
            if let Err(error) = fs::remove_file(file_path(&self.dir, index)) {
                return self.stop(format!("deleting an old recording file: {error}"));
            }
            self.total_bytes -= bytes;
            self.files_deleted += 1;
        }
    }

    fn write(&mut self, tag: u8, payload: &[u8]) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let len = 5 + payload.len() as u64;
        let Ok(payload_len) = u32::try_from(payload.len()) else {
            return self.stop(format!("a record of {} bytes is too large", payload.len()));
        };
        let written = file
            .write_all(&[tag])
            .and_then(|()| file.write_all(&payload_len.to_le_bytes()))
            .and_then(|()| file.write_all(payload));
        if let Err(error) = written {
            return self.stop(format!("writing the recording: {error}"));
        }
        self.file_records_bytes += len;
        self.total_bytes += len;
        if let Some(last) = self.files.back_mut() {
            last.1 += len;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Where a replay found the machine behave differently from the recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The input after which the outputs differ (1 = the first input replayed), or the
    /// number of inputs replayed before a checkpoint that differs.
    pub after_input: u64,
    /// That input, in words (or which checkpoint).
    pub input: String,
    /// What the recording says: count and digest of the outputs (of the state, for a
    /// checkpoint: its length and XXH3-128).
    pub recorded: (u32, String),
    /// What the replay produced.
    pub replayed: (u32, String),
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Recording files read.
    pub files: u32,
    /// Where the replay started: `"the beginning"`, or the file whose checkpoint it
    /// started from (older files were rotated away).
    pub started_from: String,
    /// Inputs fed.
    pub inputs: u64,
    /// Outputs compared with the recording.
    pub outputs_checked: u64,
    /// Checkpoints met after the start whose state the replayed machine matched byte for
    /// byte.
    pub checkpoints_checked: u64,
    /// The virtual span replayed (first to last input's `now`), in milliseconds.
    pub span_ms: u64,
    /// True when the recording ended with a torn record (the process stopped mid-write).
    pub torn_tail: bool,
    /// The first difference, if any.
    pub mismatch: Option<Mismatch>,
}

fn describe(input: &Input) -> String {
    match input {
        Input::ClientFrame(conn, frame) => {
            format!(
                "ClientFrame({conn:?}, {:?}, {} bytes)",
                frame.frame_type(),
                frame.as_bytes().len()
            )
        }
        Input::GameFrame(game, frame) => {
            format!(
                "GameFrame({game:?}, {:?}, {} bytes)",
                frame.frame_type(),
                frame.as_bytes().len()
            )
        }
        other => format!("{other:?}"),
    }
}

fn state_digest(state: &[u8]) -> (u32, String) {
    (
        u32::try_from(state.len()).unwrap_or(u32::MAX),
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(state)),
    )
}

/// Replays the recording in `dir` from its oldest file (the beginning, or the checkpoint
/// that file starts with): every input into the machine, every output checked, and the
/// machine's state checked against every later checkpoint.
pub fn replay(dir: &Path) -> Result<ReplayReport, FrontendError> {
    let mut report = ReplayReport {
        files: 0,
        started_from: String::new(),
        inputs: 0,
        outputs_checked: 0,
        checkpoints_checked: 0,
        span_ms: 0,
        torn_tail: false,
        mismatch: None,
    };
    let indices = if dir.is_dir() {
        recording_files(dir)?
    } else {
        Vec::new()
    };
    let Some(&first_index) = indices.first() else {
        return Err(FrontendError::Record(format!(
            "no recording in {} (no record-NNNNNN.bin)",
            dir.display()
        )));
    };
    if let Some(gap) = indices.windows(2).find(|pair| pair[1] != pair[0] + 1) {
        return Err(FrontendError::Record(format!(
            "the recording in {} has a gap after {}",
            dir.display(),
            file_path(dir, gap[0]).display()
        )));
    }
    let mut machine: Option<Frontend> = None;
    let mut last_input = String::new();
    let mut first_now: Option<u64> = None;
    for &index in &indices {
        let path = file_path(dir, index);
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut file| file.read_to_end(&mut data))
            .map_err(|error| {
                FrontendError::Record(format!("reading {}: {error}", path.display()))
            })?;
        report.files += 1;
        if !data.starts_with(MAGIC) {
            return Err(FrontendError::Record(
                match data
                    .get(..MAGIC.len())
                    .filter(|m| m.starts_with(MAGIC_FAMILY))
                {
                    Some(other) => format!(
                        "{} was recorded in format {} and this flotilla reads format {}: \
                         replay it with the version of flotilla that recorded it",
                        path.display(),
                        char::from(other[MAGIC_FAMILY.len()]),
                        char::from(MAGIC[MAGIC_FAMILY.len()]),
                    ),
                    None => format!("{} is not a flotilla front-end recording", path.display()),
                },
            ));
        }
        let mut at = MAGIC.len();
        while at < data.len() {
            if data.len() - at < 5 {
                report.torn_tail = true;
                break;
            }
            let tag = data[at];
            let mut raw = [0u8; 4];
            raw.copy_from_slice(&data[at + 1..at + 5]);
            let len = u32::from_le_bytes(raw) as usize;
            if data.len() - at - 5 < len {
                report.torn_tail = true;
                break;
            }
            let payload = &data[at + 5..at + 5 + len];
            at += 5 + len;
            match (tag, machine.as_mut()) {
                (TAG_HEADER, None) if index == 1 => {
                    let header: Header = serde_json::from_slice(payload).map_err(|error| {
                        FrontendError::Record(format!("the recording's header: {error}"))
                    })?;
                    machine = Some(Frontend::new(&header.config, header.seed));
                    report.started_from = "the beginning".to_owned();
                }
                (TAG_CHECKPOINT, None) if index == first_index => {
                    machine = Some(Frontend::restore(payload)?);
                    report.started_from = format!("the checkpoint of {}", path.display());
                }
                (TAG_CHECKPOINT, Some(frontend)) => {
                    // The live machine was replaced by this checkpoint's restore here;
                    // the replayed one must have reached the very same state.
                    let replayed = frontend.checkpoint()?;
                    if replayed != payload {
                        report.mismatch = Some(Mismatch {
                            after_input: report.inputs,
                            input: format!("the checkpoint of {}", path.display()),
                            recorded: state_digest(payload),
                            replayed: state_digest(&replayed),
                        });
                        return Ok(report);
                    }
                    *frontend = Frontend::restore(payload)?;
                    report.checkpoints_checked += 1;
                }
                (TAG_INPUT, Some(frontend)) => {
                    if payload.len() < 8 {
                        return Err(FrontendError::Record("an input record is cut short".into()));
                    }
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(&payload[..8]);
                    let nanos = u64::from_le_bytes(raw);
                    let input = decode_input(&payload[8..])?;
                    last_input = describe(&input);
                    frontend.handle(Instant::from_nanos(nanos), input);
                    report.inputs += 1;
                    let first = *first_now.get_or_insert(nanos);
                    report.span_ms = nanos.saturating_sub(first) / 1_000_000;
                }
                (TAG_OUTPUTS, Some(frontend)) => {
                    if payload.len() != 20 {
                        return Err(FrontendError::Record(
                            "an outputs record is not 20 bytes".into(),
                        ));
                    }
                    let mut raw = [0u8; 4];
                    raw.copy_from_slice(&payload[..4]);
                    let count = u32::from_le_bytes(raw);
                    let mut raw = [0u8; 16];
                    raw.copy_from_slice(&payload[4..]);
                    let digest = u128::from_le_bytes(raw);
                    let mut replayed = OutputDigest::default();
                    let mut produced = 0;
                    while produced < count {
                        let Some(output) = frontend.poll_output() else {
                            break;
                        };
                        replayed.add(&output);
                        produced += 1;
                    }
                    let (got_count, got_digest) = replayed.take().unwrap_or((0, 0));
                    if (got_count, got_digest) != (count, digest) {
                        report.mismatch = Some(Mismatch {
                            after_input: report.inputs,
                            input: last_input.clone(),
                            recorded: (count, format!("{digest:032x}")),
                            replayed: (got_count, format!("{got_digest:032x}")),
                        });
                        return Ok(report);
                    }
                    report.outputs_checked += u64::from(count);
                }
                (TAG_HEADER, _) => {
                    return Err(FrontendError::Record(format!(
                        "a header out of place in {}",
                        path.display()
                    )));
                }
                (TAG_CHECKPOINT, None) | (_, None) => {
                    return Err(FrontendError::Record(format!(
                        "{} starts with neither the recording's header nor a checkpoint",
                        path.display()
                    )));
                }
                (other, _) => {
                    return Err(FrontendError::Record(format!("unknown record tag {other}")));
                }
            }
        }
        if report.torn_tail {
            break;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_wire::{ClientToFrontend, Message, PROTOCOL_VERSION};

    #[test]
    fn every_input_kind_round_trips() {
        let frame = RawFrame::parse(
            ClientToFrontend::Hello {
                version: PROTOCOL_VERSION,
                session_token: None,
                client_name: "x".into(),
            }
            .encode_to_bytes(),
            1 << 20,
        )
        .unwrap();
        let inputs = [
            Input::ClientConnected(ConnId(1)),
            Input::ClientFrame(ConnId(2), frame.clone()),
            Input::ClientMalformed(ConnId(3), WireError::FrameTooLarge { len: 9, max: 4 }),
            Input::ClientMalformed(ConnId(3), WireError::EmptyFrame),
            Input::GameMalformed(GameId(3), WireError::UnknownFrameType(0x77)),
            Input::ClientDrained(ConnId(4), 100),
            Input::ClientDiscarded(ConnId(5), 7),
            Input::ClientWriting(ConnId(6)),
            Input::ClientClosed(ConnId(6)),
            Input::GameConnected(GameId(1)),
            Input::GameFrame(GameId(1), frame),
            Input::GameClosed(GameId(1)),
            Input::GameDrained(GameId(1), 5),
            Input::ClientReadingPaused,
            Input::ClientReadingResumed,
            Input::Timeout,
            Input::WallClock {
                unix_millis: 1_700_000_000_123,
            },
        ];
        for input in inputs {
            let mut out = Vec::new();
            encode_input(&input, &mut out).unwrap();
            assert_eq!(decode_input(&out).unwrap(), input);
        }
        assert!(decode_input(&[99]).is_err());
        assert!(decode_input(&[1, 0]).is_err());
    }

    #[test]
    fn a_recording_of_another_format_or_none_at_all_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(file_path(dir.path(), 1), b"FLTREC1\nHxxxx").unwrap();
        let error = replay(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("recorded in format 1 and this flotilla reads format 2"),
            "{error}"
        );
        std::fs::write(file_path(dir.path(), 1), b"not one").unwrap();
        let error = replay(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("is not a flotilla front-end recording"),
            "{error}"
        );
    }

    /// A recording with the wall clock, joins (accepted and refused) and inputs (allowed
    /// and not) replays with every output checked, across a rotation's checkpoint.
    #[test]
    fn a_recording_with_join_tokens_replays() {
        use flotilla_wire::{GameToFrontend, JoinClaims, Role, WorldId};
        let signer = crate::JoinSigner::generate().unwrap();
        let config = FrontendConfig {
            join_keys: vec![signer.public_key()],
            ..FrontendConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let settings = RecordSettings {
            dir: dir.path().join("rec"),
            max_bytes: 1 << 30,
            file_bytes: MIN_FILE_BYTES,
        };
        let mut recorder = Recorder::create(&settings, &config, 3).unwrap();
        let mut machine = Frontend::new(&config, 3);
        let mut now = Instant::from_millis(5);
        let mut feed = |now: Instant, input: Input, machine: &mut Frontend| {
            recorder.input(now, &input, machine);
            machine.handle(now, input);
            while let Some(output) = machine.poll_output() {
                recorder.output(&output);
            }
        };
        let frame = |message: &dyn Fn() -> Bytes| RawFrame::parse(message(), 1 << 20).unwrap();
        let arena = WorldId::new("arena").unwrap();
        feed(
            now,
            Input::WallClock {
                unix_millis: 1_800_000_000_000,
            },
            &mut machine,
        );
        feed(now, Input::GameConnected(GameId(1)), &mut machine);
        for message in [
            GameToFrontend::Welcome {
                version: 1,
                server_id: "game".into(),
            },
            GameToFrontend::WorldAdded {
                world: arena.clone(),
                info: Bytes::new(),
            },
        ] {
            let raw = frame(&|| message.encode_to_bytes());
            feed(now, Input::GameFrame(GameId(1), raw), &mut machine);
        }
        // Enough rounds to rotate (a checkpoint holding grants) a few times.
        for conn in 1..=120u64 {
            now += std::time::Duration::from_millis(100);
            let conn_id = ConnId(conn);
            feed(now, Input::ClientConnected(conn_id), &mut machine);
            let hello = ClientToFrontend::Hello {
                version: PROTOCOL_VERSION,
                session_token: None,
                client_name: format!("c{conn}"),
            };
            let token = if conn % 3 == 0 {
                Bytes::from_static(b"not a token")
            } else {
                signer
                    .sign(&JoinClaims {
                        expires_unix: 1_800_000_000 + conn,
                        role: if conn % 2 == 0 {
                            Role::Player
                        } else {
                            Role::Observer
                        },
                        world: arena.clone(),
                        subject: format!("p{conn}"),
                    })
                    .unwrap()
            };
            let messages = [
                hello,
                ClientToFrontend::Join { token },
                ClientToFrontend::Input {
                    world: arena.clone(),
                    payload: Bytes::from_static(b"J"),
                },
            ];
            for message in messages {
                let raw = frame(&|| message.encode_to_bytes());
                feed(now, Input::ClientFrame(conn_id, raw), &mut machine);
            }
        }
        let stats = machine.stats();
        assert!(
            stats.joins_accepted > 0 && stats.joins_refused > 0,
            "{stats:?}"
        );
        assert!(
            stats.inputs_routed > 0 && stats.inputs_not_allowed > 0,
            "{stats:?}"
        );
        recorder.finish();
        assert!(recorder.checkpoints() > 0, "rotated");
        let report = replay(&settings.dir).unwrap();
        assert_eq!(report.mismatch, None);
        assert_eq!(report.inputs, recorder.inputs());
        assert!(report.outputs_checked > 300, "{report:?}");
    }
}
