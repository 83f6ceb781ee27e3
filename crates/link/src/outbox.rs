//! The outbound queue of one connection and the writer task that drains it.
//!
//! Any task may queue encoded frames ([`Outbox::push`]); one writer task per connection
//! ([`run_writer`]) takes everything queued at once and writes it with as few syscalls as
//! possible (frames are gathered into one buffer of up to [`WRITE_CHUNK`] bytes), and ends
//! the connection after writing the final frame given to [`Outbox::close`].
//!
//! The outbox also holds the connection's [`KeepAlive`] machine (the one rule of
//! PROTOCOL.md section 7, from `flotilla-conn`): every push counts as sent, the reader
//! reports whole frames received ([`Outbox::on_received`]), and the reader's loop sleeps
//! until [`Outbox::keep_alive_deadline`] and does what [`Outbox::poll_keep_alive`] says
//! (send a ping, or close for silence).

use bytes::{Bytes, BytesMut};
use flotilla_conn::{Clock, KeepAlive, KeepAliveAction, KeepAliveConfig};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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

#[derive(Debug)]
struct OutboxState {
    queue: VecDeque<Outgoing>,
    queued_bytes: usize,
    closing: bool,
    keep_alive: KeepAlive,
}

/// The outbound queue of one connection, shared by every task that sends on it.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    notify: Notify,
    max_queued_bytes: usize,
    overload_frame: Bytes,
    clock: Clock,
    /// What this connection's writer wrote.
    pub counters: LinkCounters,
    totals: Arc<LinkCounters>,
}

impl Outbox {
    /// An empty outbox. Past `max_queued_bytes` queued, the queue is dropped and the
    /// connection closes after writing `overload_frame`. Everything written is also counted
    /// in `totals`. The connection is kept alive with `keep_alive`'s intervals from now,
    /// on `clock`'s time.
    pub fn new(
        max_queued_bytes: usize,
        overload_frame: Bytes,
        totals: Arc<LinkCounters>,
        clock: Clock,
        keep_alive: KeepAliveConfig,
    ) -> Self {
        Self {
            state: Mutex::new(OutboxState {
                queue: VecDeque::new(),
                queued_bytes: 0,
                closing: false,
                keep_alive: KeepAlive::new(keep_alive, clock.now()),
            }),
            notify: Notify::new(),
            max_queued_bytes,
            overload_frame,
            clock,
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
        // Read the clock before taking the lock that every sending task shares.
        let now = self.clock.now();
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
        state.keep_alive.on_sent(now);
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

    /// Changes the keep-alive intervals (a game server's pings start once the front-end's
    /// hello is accepted).
    pub fn set_keep_alive(&self, config: KeepAliveConfig) {
        self.lock().keep_alive.set_config(config);
    }

    /// A whole frame was received from the peer (or the reader stopped reading on purpose
    /// and resumed: that time is not the peer's silence).
    pub fn on_received(&self) {
        let now = self.clock.now();
        self.lock().keep_alive.on_received(now);
    }

    /// When the reader must call [`poll_keep_alive`](Self::poll_keep_alive) next, as an
    /// OS instant for `sleep_until`; `None` if never.
    pub fn keep_alive_deadline(&self) -> Option<std::time::Instant> {
        let at = self.lock().keep_alive.deadline()?;
        Some(self.clock.to_std(at))
    }

    /// What the keep-alive rule says now: a ping to push (built by the caller, who knows
    /// the link's direction), a close for silence, or nothing.
    pub fn poll_keep_alive(&self) -> Option<KeepAliveAction> {
        let now = self.clock.now();
        self.lock().keep_alive.poll(now)
    }

    /// Pings sent on this connection so far.
    pub fn pings_sent(&self) -> u64 {
        self.lock().keep_alive.pings_sent()
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
/// down) or a write fails.
pub async fn run_writer<W>(mut writer: W, outbox: Arc<Outbox>) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut pending: VecDeque<Outgoing> = VecDeque::new();
    let mut buffer = BytesMut::new();
    loop {
        let closing = outbox.take(&mut pending);
        if pending.is_empty() {
            if closing {
                break;
            }
            outbox.notify.notified().await;
            continue;
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
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    fn quiet() -> KeepAliveConfig {
        KeepAliveConfig::new(Duration::ZERO, Duration::MAX)
    }

    #[tokio::test]
    async fn frames_are_written_in_order_counted_and_the_link_closes_after_the_final_frame() {
        let (writer, mut reader) = tokio::io::duplex(1 << 20);
        let totals = Arc::new(LinkCounters::default());
        let outbox = Arc::new(Outbox::new(
            1 << 20,
            Bytes::from_static(b"OVER"),
            totals.clone(),
            Clock::start(),
            quiet(),
        ));
        let task = tokio::spawn(run_writer(writer, outbox.clone()));
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
        let outbox = Arc::new(Outbox::new(
            8,
            Bytes::from_static(b"OVER"),
            Arc::default(),
            Clock::start(),
            quiet(),
        ));
        outbox
            .push(Bytes::from_static(b"12345"), FrameKind::Other)
            .unwrap();
        assert_eq!(
            outbox.push(Bytes::from_static(b"67890"), FrameKind::Other),
            Err(PushError::Overloaded)
        );
        run_writer(writer, outbox.clone()).await.unwrap();
        let mut all = Vec::new();
        reader.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"OVER");
    }

    #[test]
    fn pushes_count_as_sent_and_the_deadline_follows_the_keep_alive_rule() {
        let clock = Clock::start();
        let outbox = Outbox::new(
            1 << 20,
            Bytes::new(),
            Arc::default(),
            clock,
            KeepAliveConfig::probing(
                Duration::from_secs(60),
                Duration::from_secs(60),
                Duration::from_secs(600),
            ),
        );
        let first = outbox.keep_alive_deadline().unwrap();
        assert_eq!(outbox.poll_keep_alive(), None, "nothing due yet");
        // A push moves the quiet-sending deadline; the probe (nothing received) stays.
        outbox
            .push(Bytes::from_static(b"x"), FrameKind::Other)
            .unwrap();
        assert_eq!(outbox.keep_alive_deadline().unwrap(), first);
        outbox.on_received();
        assert!(outbox.keep_alive_deadline().unwrap() >= first);
        assert_eq!(outbox.pings_sent(), 0);
        // Pings disabled, silence never closing: no deadline at all.
        outbox.set_keep_alive(quiet());
        assert_eq!(outbox.keep_alive_deadline(), None);
    }
}
