//! The [`Logger`] handle: the application-side half of the logger.
//!
//! A log call captures the message into a [`Record`], pushes it onto a bounded
//! lock-free queue and, only if the sender thread is asleep, wakes it. It never
//! waits for I/O and never takes a lock. Everything else happens on the sender
//! thread (see `sender.rs`).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_queue::ArrayQueue;
use flotilla_syslog::{SdElement, SdParam, Severity};

use crate::config::{Config, DropPolicy};
use crate::record::Record;
use crate::{Error, PEN_SUFFIX};

thread_local! {
    /// Set while this thread is inside the logger (the sender thread always, the
    /// panic hook while reporting). Log calls made then are dropped and counted:
    /// the logger never logs about itself, so it can never recurse.
    static IN_LOGGER: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as being inside the logger until the guard drops.
pub(crate) struct ReentrancyGuard {
    was: bool,
}

impl ReentrancyGuard {
    /// Enters the logger; `None` if this thread is already inside it.
    pub fn enter() -> Option<Self> {
        let was = IN_LOGGER.with(|f| f.replace(true));
        if was { None } else { Some(Self { was }) }
    }

    /// Marks the current thread as inside the logger for good (the sender thread).
    pub fn mark_thread_forever() {
        IN_LOGGER.with(|f| f.set(true));
    }
}

impl Drop for ReentrancyGuard {
    fn drop(&mut self) {
        IN_LOGGER.with(|f| f.set(self.was));
    }
}

/// Whether the current thread is inside the logger.
pub(crate) fn inside_logger() -> bool {
    IN_LOGGER.with(|f| f.get())
}

/// Counters describing what the logger did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages accepted into the queue.
    pub enqueued: u64,
    /// Messages delivered: the sum of the four counters below, which say what each
    /// delivery means (the logger may have failed over between transports).
    pub delivered: u64,
    /// Delivered over RELP: acknowledged by the collector.
    pub acknowledged: u64,
    /// Delivered over TCP or TLS: every byte acknowledged by the collector's TCP (the
    /// collector may still lose what it never read; TCP cannot tell).
    pub taken_by_tcp: u64,
    /// Delivered over TCP or TLS where the system cannot tell what the peer's TCP took
    /// (not Linux): written to the socket, nothing more known.
    pub written: u64,
    /// Delivered over UDP or a Unix socket: sent as a datagram, without feedback.
    pub sent: u64,
    /// Datagrams cut to the transport's size limit (counted in `sent`).
    pub truncated: u64,
    /// Of `taken_by_tcp`: messages taken on connections the collector then reset (a
    /// collector resets when it closes with data unread), so it may not have read them.
    pub maybe_unread: u64,
    /// Messages sent (or to be sent) again on a new connection because the one before
    /// ended before they were acknowledged (RELP: by the collector; TCP, TLS: by its TCP).
    pub resent: u64,
    /// Messages dropped because the queue was full.
    pub dropped: u64,
    /// Log calls ignored because they came from inside the logger itself.
    pub suppressed: u64,
    /// Connections opened to collectors.
    pub connects: u64,
    /// Connection attempts or connections that failed.
    pub failures: u64,
}

/// State shared between the handles and the sender thread.
pub(crate) struct Shared {
    pub queue: ArrayQueue<Record>,
    /// The crash report, sent ahead of everything queued.
    pub urgent: Mutex<Option<Record>>,
    pub config: Config,
    /// Records accepted into the queue (or the urgent slot).
    pub enqueued: AtomicU64,
    /// Records delivered (see [`Stats::delivered`]), the logger's own messages
    /// included; the sum of the four counters that follow.
    pub delivered: AtomicU64,
    /// Delivered: acknowledged over RELP.
    pub acknowledged: AtomicU64,
    /// Delivered: taken by the collector's TCP.
    pub taken_by_tcp: AtomicU64,
    /// Delivered: written to a stream, nothing more known.
    pub written: AtomicU64,
    /// Delivered: sent as datagrams.
    pub sent: AtomicU64,
    /// Datagrams cut to the size limit.
    pub truncated: AtomicU64,
    /// Taken by the collector's TCP on connections it then reset.
    pub maybe_unread: AtomicU64,
    /// TCP/TLS messages given back to the batch when their connection failed.
    pub resent_stream: AtomicU64,
    /// The RELP session's count of resent messages (it lives across connections).
    pub resent_relp: AtomicU64,
    /// Accepted records later pushed out of a full queue (drop-oldest).
    pub displaced: AtomicU64,
    /// Records refused by a full queue (drop-newest) or after shutdown.
    pub refused: AtomicU64,
    /// The logger's own messages (heartbeat, drop notice) added by the sender.
    pub own: AtomicU64,
    pub suppressed: AtomicU64,
    pub connects: AtomicU64,
    pub failures: AtomicU64,
    /// The last failure, with its collector (`tcp://host:port: cause`).
    pub last_failure: Mutex<Option<String>>,
    pub sender_sleeping: AtomicBool,
    pub shutdown: AtomicBool,
    pub sender: OnceLock<Thread>,
    pub flush_waiters: AtomicU64,
    pub flush_lock: Mutex<()>,
    pub flush_cv: Condvar,
}

impl Shared {
    /// Wakes the sender thread if it sleeps.
    pub fn wake_sender(&self) {
        if self.sender_sleeping.load(Ordering::SeqCst)
            && let Some(t) = self.sender.get()
        {
            t.unpark();
        }
    }

    /// Accepted records that need no more work: delivered or pushed out. The
    /// logger's own messages are subtracted, so a flush also waits for those
    /// created before it settles, and refused records never count.
    pub fn settled(&self) -> u64 {
        (self.delivered.load(Ordering::Acquire) + self.displaced.load(Ordering::Acquire))
            .saturating_sub(self.own.load(Ordering::Acquire))
    }

    /// Every message lost to a full queue or a shutdown.
    pub fn dropped(&self) -> u64 {
        self.displaced.load(Ordering::Relaxed) + self.refused.load(Ordering::Relaxed)
    }

    /// Tells flush waiters that progress was made.
    pub fn notify_progress(&self) {
        if self.flush_waiters.load(Ordering::Acquire) > 0 {
            let _guard = self.flush_lock.lock();
            self.flush_cv.notify_all();
        }
    }
}

/// A handle to a running logger. Cheap to clone; every clone feeds the same
/// queue and sender thread.
#[derive(Clone)]
pub struct Logger {
    pub(crate) shared: Arc<Shared>,
    join: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Starts the logger with `config`, installs it as the global `log` logger and the
/// panic hook, and sends the boot message. The usual one-line set-up.
pub fn init(config: Config) -> Result<Logger, Error> {
    init_with(config, |logger| Box::new(logger))
}

/// As [`init`], with the global `log` logger made by `wrap` around this one: e.g. one
/// that also prints warnings on stderr (the `flotilla` roles do).
pub fn init_with(
    config: Config,
    wrap: impl FnOnce(Logger) -> Box<dyn log::Log>,
) -> Result<Logger, Error> {
    let max_level = config.max_level;
    let logger = Logger::start(config)?;
    if log::set_boxed_logger(wrap(logger.clone())).is_err() {
        logger.shutdown(Duration::ZERO);
        return Err(Error::AlreadyInstalled);
    }
    log::set_max_level(max_level);
    crate::lifecycle::install_panic_hook(logger.clone());
    logger.boot();
    Ok(logger)
}

impl Logger {
    /// Checks `config`, prepares every collector (loading TLS roots) and starts
    /// the sender thread. Nothing is connected yet: connecting happens in the
    /// background, so start-up never waits for a collector.
    pub fn start(config: Config) -> Result<Logger, Error> {
        config.validate()?;
        let targets = config
            .collectors
            .iter()
            .cloned()
            .map(crate::link::Target::prepare)
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(config.queue_capacity),
            urgent: Mutex::new(None),
            config,
            enqueued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            taken_by_tcp: AtomicU64::new(0),
            written: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            maybe_unread: AtomicU64::new(0),
            resent_stream: AtomicU64::new(0),
            resent_relp: AtomicU64::new(0),
            displaced: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            own: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            sender_sleeping: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sender: OnceLock::new(),
            flush_waiters: AtomicU64::new(0),
            flush_lock: Mutex::new(()),
            flush_cv: Condvar::new(),
        });
        let join = crate::sender::spawn(shared.clone(), targets)?;
        Ok(Logger {
            shared,
            join: Arc::new(Mutex::new(Some(join))),
        })
    }

    /// The configuration this logger runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The last connection or send failure, with the collector it concerned
    /// (`tcp://logs.example:514: …`): what `Stats::failures` counts, in words.
    pub fn last_failure(&self) -> Option<String> {
        self.shared
            .last_failure
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default()
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            enqueued: s.enqueued.load(Ordering::Relaxed),
            delivered: s.delivered.load(Ordering::Relaxed),
            acknowledged: s.acknowledged.load(Ordering::Relaxed),
            taken_by_tcp: s.taken_by_tcp.load(Ordering::Relaxed),
            written: s.written.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            truncated: s.truncated.load(Ordering::Relaxed),
            maybe_unread: s.maybe_unread.load(Ordering::Relaxed),
            resent: s.resent_stream.load(Ordering::Relaxed) + s.resent_relp.load(Ordering::Relaxed),
            dropped: s.dropped(),
            suppressed: s.suppressed.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
        }
    }

    fn now(&self) -> Option<SystemTime> {
        self.shared.config.use_clock.then(SystemTime::now)
    }

    /// Queues a message with `severity`, `text` and `fields` (which become
    /// structured-data parameters). Returns at once, whatever the collectors do.
    pub fn log(&self, severity: Severity, text: &str, fields: &[(&str, &str)]) {
        let mut record = Record::new(severity, self.now(), text.to_owned());
        for (name, value) in fields {
            let name = record.push_inline_name(name);
            record.text.push_str(value);
            record.close_field(name);
        }
        self.enqueue(record);
    }

    /// Queues a message with an explicit MSGID and structured-data elements (as
    /// `flotilla log --sd` does). Invalid names are sanitised by the documented rule
    /// of `flotilla_syslog::Message::sanitize`, never refused.
    pub fn log_message(
        &self,
        severity: Severity,
        msg_id: Option<&str>,
        text: &str,
        structured_data: Vec<SdElement>,
    ) {
        let mut record = Record::new(severity, self.now(), text.to_owned());
        record.msg_id = msg_id.map(|id| Cow::Owned(id.to_owned()));
        record.extra_sd = structured_data;
        self.enqueue(record);
    }

    /// Queues a message that is already a syslog message (RFC 5424 or RFC 3164, without
    /// framing), to be sent as it is: a log service relaying what it received. The
    /// transport adds its framing; bytes that are not UTF-8 are replaced (U+FFFD).
    pub fn forward(&self, message: &[u8]) {
        let end = message
            .iter()
            .rposition(|&b| !matches!(b, b'\n' | b'\r' | 0))
            .map_or(0, |i| i + 1);
        if end == 0 {
            return;
        }
        self.enqueue(Record::pre_encoded(message[..end].to_vec()));
    }

    /// Creates an empty record stamped now, for adapters that fill it themselves.
    pub(crate) fn new_record(&self, severity: Severity, capacity: usize) -> Record {
        Record::new(severity, self.now(), String::with_capacity(capacity))
    }

    /// Pushes a record onto the queue, applying the drop policy.
    pub(crate) fn enqueue(&self, record: Record) {
        let s = &self.shared;
        if inside_logger() {
            s.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if s.shutdown.load(Ordering::Relaxed) {
            s.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match s.config.drop_policy {
            DropPolicy::DropOldest => {
                s.enqueued.fetch_add(1, Ordering::Relaxed);
                if s.queue.force_push(record).is_some() {
                    s.displaced.fetch_add(1, Ordering::Relaxed);
                }
            }
            DropPolicy::DropNewest => {
                if s.queue.push(record).is_ok() {
                    s.enqueued.fetch_add(1, Ordering::Relaxed);
                } else {
                    s.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        s.wake_sender();
    }

    /// Puts a record that must go first (the crash report) in the urgent slot: the
    /// sender sends it ahead of everything queued, without waiting out a backoff.
    pub(crate) fn enqueue_urgent(&self, record: Record) {
        let s = &self.shared;
        s.enqueued.fetch_add(1, Ordering::Relaxed);
        let previous = match s.urgent.lock() {
            Ok(mut slot) => slot.replace(record),
            Err(poisoned) => poisoned.into_inner().replace(record),
        };
        if let Some(previous) = previous {
            // Two crash reports at once (two threads panicking): keep both.
            if s.queue.force_push(previous).is_some() {
                s.displaced.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(t) = s.sender.get() {
            t.unpark();
        }
    }

    /// Sends "booted and awake" with the version, hostname, pid and the IP
    /// configuration (interfaces and addresses) as structured data.
    pub fn boot(&self) {
        let record = crate::lifecycle::boot_record(self);
        self.enqueue(record);
    }

    /// Logs a caught error at `err` severity with its whole cause chain, both in
    /// the text ("a: b: c") and as structured data (`[error@32473 cause0=… cause1=…]`).
    pub fn error(&self, context: &str, err: &(dyn std::error::Error + 'static)) {
        let mut text = String::with_capacity(128);
        text.push_str(context);
        let mut params = Vec::new();
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        let mut depth = 0;
        while let Some(e) = current {
            let _ = write!(text, ": {e}");
            params.push(SdParam {
                name: format!("cause{depth}"),
                value: e.to_string(),
            });
            depth += 1;
            current = e.source();
            if depth >= 16 {
                break;
            }
        }
        let mut record = Record::new(Severity::Error, self.now(), text);
        record.msg_id = Some(Cow::Borrowed("ERROR"));
        record.extra_sd.push(SdElement {
            id: format!("error{PEN_SUFFIX}"),
            params,
        });
        self.enqueue(record);
    }

    /// Waits until every message queued before this call is delivered or dropped,
    /// or until `timeout`. Returns `true` if everything was settled.
    pub fn flush(&self, timeout: Duration) -> bool {
        let s = &self.shared;
        let target = s.enqueued.load(Ordering::Acquire);
        // `None`: a timeout too large to represent means "no deadline".
        let deadline = Instant::now().checked_add(timeout);
        s.flush_waiters.fetch_add(1, Ordering::AcqRel);
        if let Some(t) = s.sender.get() {
            t.unpark();
        }
        let mut guard = match s.flush_lock.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let done = loop {
            if s.settled() >= target {
                break true;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break false;
            }
            // Short waits: progress notifications can race with this check.
            let wait = deadline.map_or(Duration::from_millis(10), |d| {
                (d - now).min(Duration::from_millis(10))
            });
            guard = match s.flush_cv.wait_timeout(guard, wait) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
            if let Some(t) = s.sender.get() {
                t.unpark();
            }
        };
        drop(guard);
        s.flush_waiters.fetch_sub(1, Ordering::AcqRel);
        done
    }

    /// Flushes with `timeout`, then stops the sender thread (closing connections
    /// gracefully: TLS close_notify, RELP close). Returns `true` if everything queued
    /// was delivered. Later log calls are counted as dropped.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let flushed = self.flush(timeout);
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.shared.sender.get() {
            t.unpark();
        }
        let handle = match self.join.lock() {
            Ok(mut j) => j.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle {
            // The sender closes its connection gracefully; give it a moment.
            let join_by = deadline
                .and_then(|d| d.checked_add(Duration::from_millis(500)))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
            while !handle.is_finished() && Instant::now() < join_by {
                std::thread::sleep(Duration::from_millis(2));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        flushed
    }
}
