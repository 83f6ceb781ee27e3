//! The outbound queue of one connection and the writer task that drains it.
//!
//! Any task may queue encoded frames ([`Outbox::push`]); one writer task per connection
//! ([`run_writer`]) takes everything queued at once and writes it with as few syscalls as
//! possible (frames are gathered into one buffer of up to [`WRITE_CHUNK`] bytes). The writer
//! also sends a `Ping` after a quiet interval (nothing written), and ends the connection
//! after writing the final frame given to [`Outbox::close`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Frames are gathered into one write of at most this many bytes.
pub const WRITE_CHUNK: usize = 64 * 1024;

/// A write buffer grown past this is released after use, so idle links hold little memory.
const KEEP_BUFFER: usize = 4 * 1024;

/// What a queued item is, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// One `ChangeBatch` frame.
    Batch,
    /// One snapshot, possibly several frames.
    Snapshot,
    /// Anything else.
    Other,
}

/// One queued item: one or more whole frames.
#[derive(Debug)]
struct Outgoing {
    bytes: Bytes,
    kind: FrameKind,
    frames: u64,
}

/// Counters of what a writer actually wrote.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// `ChangeBatch` frames written.
    pub batches: AtomicU64,
    /// Snapshots written (a multi-part snapshot counts once).
    pub snapshots: AtomicU64,
    /// Frames written, of every kind.
    pub frames: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
}

impl LinkCounters {
    fn add(&self, item: &Outgoing) {
        match item.kind {
            FrameKind::Batch => self.batches.fetch_add(1, Ordering::Relaxed),
            FrameKind::Snapshot => self.snapshots.fetch_add(1, Ordering::Relaxed),
            FrameKind::Other => 0,
        };
        self.frames.fetch_add(item.frames, Ordering::Relaxed);
        self.bytes
            .fetch_add(item.bytes.len() as u64, Ordering::Relaxed);
    }
}

/// Why a push was refused. Exhaustive on purpose: every caller maps each reason to its
/// own error, and a new reason must make them decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The connection is closing or closed.
    Closed,
    /// The queue exceeded its byte budget: the connection is now closing.
    Overloaded,
}

#[derive(Debug, Default)]
struct OutboxState {
    queue: VecDeque<Outgoing>,
    queued_bytes: usize,
    closing: bool,
}

/// The outbound queue of one connection, shared by every task that sends on it.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    notify: Notify,
    max_queued_bytes: usize,
    overload_frame: Bytes,
    pings_enabled: AtomicBool,
    /// What this connection's writer wrote.
    pub counters: LinkCounters,
    totals: Arc<LinkCounters>,
}

impl Outbox {
    /// An empty outbox. Past `max_queued_bytes` queued, the queue is dropped and the
    /// connection closes after writing `overload_frame`. Everything written is also counted
    /// in `totals`.
    pub fn new(max_queued_bytes: usize, overload_frame: Bytes, totals: Arc<LinkCounters>) -> Self {
        Self {
            state: Mutex::new(OutboxState::default()),
            notify: Notify::new(),
            max_queued_bytes,
            overload_frame,
            pings_enabled: AtomicBool::new(false),
            counters: LinkCounters::default(),
            totals,
        }
    }

    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        // A poisoned lock only means another task panicked mid-push: the queue is still a
        // valid VecDeque, keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues one frame.
    pub fn push(&self, bytes: Bytes, kind: FrameKind) -> Result<(), PushError> {
        self.push_frames(bytes, kind, 1)
    }

    /// Queues `frames` whole frames given as one buffer.
    pub fn push_frames(&self, bytes: Bytes, kind: FrameKind, frames: u64) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.closing {
            return Err(PushError::Closed);
        }
        if state.queued_bytes.saturating_add(bytes.len()) > self.max_queued_bytes {
            state.queue.clear();
            state.queued_bytes = 0;
            state.closing = true;
            state.queue.push_back(Outgoing {
                bytes: self.overload_frame.clone(),
                kind: FrameKind::Other,
                frames: 1,
            });
            drop(state);
            self.notify.notify_one();
            return Err(PushError::Overloaded);
        }
        state.queued_bytes += bytes.len();
        state.queue.push_back(Outgoing {
            bytes,
            kind,
            frames,
        });
        drop(state);
        self.notify.notify_one();
        Ok(())
    }

    /// Closes the connection after what is queued and, if given, one final frame (an
    /// `Error`). Later pushes are refused.
    pub fn close(&self, final_frame: Option<Bytes>) {
        let mut state = self.lock();
        if state.closing {
            return;
        }
        state.closing = true;
        if let Some(bytes) = final_frame {
            state.queued_bytes += bytes.len();
            state.queue.push_back(Outgoing {
                bytes,
                kind: FrameKind::Other,
                frames: 1,
            });
        }
        drop(state);
        self.notify.notify_one();
    }

    /// Lets the writer send keep-alive pings (once the handshake is done).
    pub fn enable_pings(&self) {
        self.pings_enabled.store(true, Ordering::Relaxed);
    }

    /// Moves everything queued into `into`; returns whether the connection is closing.
    fn take(&self, into: &mut VecDeque<Outgoing>) -> bool {
        let mut state = self.lock();
        std::mem::swap(&mut state.queue, into);
        state.queued_bytes = 0;
        state.closing
    }
}

/// Drains `outbox` into `writer` until the outbox is closed (then shuts the write side
/// down) or a write fails. After `ping_interval` without writing anything, writes
/// `make_ping(nonce)` if pings are enabled.
pub async fn run_writer<W, P>(
    mut writer: W,
    outbox: Arc<Outbox>,
    ping_interval: Duration,
    make_ping: P,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    P: Fn(u64) -> Bytes,
{
    let mut pending: VecDeque<Outgoing> = VecDeque::new();
    let mut buffer = BytesMut::new();
    let mut nonce: u64 = 0;
    loop {
        let closing = outbox.take(&mut pending);
        if pending.is_empty() {
            if closing {
                break;
            }
            if tokio::time::timeout(ping_interval, outbox.notify.notified())
                .await
                .is_err()
                && outbox.pings_enabled.load(Ordering::Relaxed)
            {
                nonce = nonce.wrapping_add(1);
                pending.push_back(Outgoing {
                    bytes: make_ping(nonce),
                    kind: FrameKind::Other,
                    frames: 1,
                });
            } else {
                continue;
            }
        }
        while let Some(item) = pending.pop_front() {
            if item.bytes.len() >= WRITE_CHUNK {
                if !buffer.is_empty() {
                    writer.write_all(&buffer).await?;
                    buffer.clear();
                }
                writer.write_all(&item.bytes).await?;
            } else {
                if buffer.len() + item.bytes.len() > WRITE_CHUNK {
                    writer.write_all(&buffer).await?;
                    buffer.clear();
                }
                buffer.extend_from_slice(&item.bytes);
            }
            outbox.counters.add(&item);
            outbox.totals.add(&item);
        }
        if !buffer.is_empty() {
            writer.write_all(&buffer).await?;
            buffer.clear();
        }
        if buffer.capacity() > KEEP_BUFFER {
            buffer = BytesMut::new();
        }
        if pending.capacity() > 64 {
            pending = VecDeque::new();
        }
        if closing {
            break;
        }
    }
    writer.flush().await?;
    writer.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn frames_are_written_in_order_counted_and_the_link_closes_after_the_final_frame() {
        let (writer, mut reader) = tokio::io::duplex(1 << 20);
        let totals = Arc::new(LinkCounters::default());
        let outbox = Arc::new(Outbox::new(
            1 << 20,
            Bytes::from_static(b"OVER"),
            totals.clone(),
        ));
        let task = tokio::spawn(run_writer(
            writer,
            outbox.clone(),
            Duration::from_secs(60),
            |_| Bytes::from_static(b"PING"),
        ));
        outbox
            .push(Bytes::from_static(b"a"), FrameKind::Batch)
            .unwrap();
        outbox
            .push_frames(Bytes::from_static(b"bc"), FrameKind::Snapshot, 2)
            .unwrap();
        outbox
            .push(Bytes::from_static(b"d"), FrameKind::Other)
            .unwrap();
        outbox.close(Some(Bytes::from_static(b"END")));
        assert_eq!(
            outbox.push(Bytes::from_static(b"late"), FrameKind::Other),
            Err(PushError::Closed)
        );
        task.await.unwrap().unwrap();
        let mut all = Vec::new();
        reader.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"abcdEND");
        assert_eq!(outbox.counters.batches.load(Ordering::Relaxed), 1);
        assert_eq!(outbox.counters.snapshots.load(Ordering::Relaxed), 1);
        assert_eq!(totals.frames.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn an_overloaded_queue_is_dropped_and_the_overload_frame_ends_the_link() {
        let (writer, mut reader) = tokio::io::duplex(1 << 20);
        let outbox = Arc::new(Outbox::new(8, Bytes::from_static(b"OVER"), Arc::default()));
        outbox
            .push(Bytes::from_static(b"12345"), FrameKind::Other)
            .unwrap();
        assert_eq!(
            outbox.push(Bytes::from_static(b"67890"), FrameKind::Other),
            Err(PushError::Overloaded)
        );
        run_writer(writer, outbox.clone(), Duration::from_secs(60), |_| {
            Bytes::new()
        })
        .await
        .unwrap();
        let mut all = Vec::new();
        reader.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"OVER");
    }
}
