//! The sender thread: the only place where the logger does I/O.
//!
//! It drains the queue into a local batch, encodes and frames many messages per
//! write, keeps one connection to the collector chosen by the sans-I/O
//! [`Balancer`] (random pick, failover, backoff with full jitter), sends the
//! heartbeat and the "dropped N messages" notice, and tells `flush` waiters about
//! progress. While no collector is reachable, messages wait in the bounded queue
//! (whose drop policy then applies) and in the batch already taken from it.
//!
//! Every connection attempt, name resolution included, is bounded by
//! `connect_timeout`: a hung DNS lookup fails the attempt and the sender moves on
//! to the next collector (see `resolve.rs`).
//!
//! The thread marks itself as "inside the logger", so anything logged from it (for
//! example by rustls through the `log` crate) is dropped instead of recursing.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flotilla_balance::{Balancer, Decision};
use flotilla_relp::client::ClientSession;
use flotilla_syslog::{SdElement, SdParam, Severity};

use crate::encode::Encoder;
use crate::link::{Link, Scratch, Target};
use crate::logger::{ReentrancyGuard, Shared};
use crate::record::Record;
use crate::{Error, PEN_SUFFIX};

/// Most records taken from the queue at once.
const BATCH: usize = 4096;
/// Longest sleep when idle (bounds the heartbeat and shutdown latency).
const IDLE_SLEEP: Duration = Duration::from_millis(250);
/// Least time between two "dropped N messages" notices.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Starts the sender thread.
pub(crate) fn spawn(shared: Arc<Shared>, targets: Vec<Target>) -> Result<JoinHandle<()>, Error> {
    let seed = flotilla_balance::seed_from_os_entropy()
        .map_err(|e| Error::Config(format!("no OS entropy to seed the collector choice: {e}")))?;
    let balancer = Balancer::new(targets.len(), shared.config.backoff, seed)
        .map_err(|e| Error::Config(e.to_string()))?;
    let config = &shared.config;
    let app_name = config.app_name.clone().or_else(default_app_name);
    let hostname = config.hostname.clone().or_else(default_hostname);
    let encoder = Encoder::new(
        config.facility,
        hostname,
        app_name,
        Some(std::process::id().to_string()),
        config.fields_sd_id.clone(),
    );
    let now = Instant::now();
    let sender = Sender {
        next_heartbeat: config.heartbeat.and_then(|p| now.checked_add(p)),
        shared: shared.clone(),
        targets,
        balancer,
        encoder,
        link: None,
        relp_session: None,
        batch: VecDeque::with_capacity(BATCH),
        scratch: Scratch::default(),
        origin: now,
        reported_dropped: 0,
        last_drop_report: None,
        urgent_pending: false,
    };
    let handle = std::thread::Builder::new()
        .name("flotilla-logger".into())
        .spawn(move || sender.run())
        .map_err(Error::Spawn)?;
    let _ = shared.sender.set(handle.thread().clone());
    Ok(handle)
}

/// The executable's file name, the default APP-NAME.
pub(crate) fn default_app_name() -> Option<String> {
    let exe = std::env::args_os().next()?;
    let name = std::path::Path::new(&exe).file_name()?;
    Some(name.to_string_lossy().into_owned())
}

/// The system host name, the default HOSTNAME.
pub(crate) fn default_hostname() -> Option<String> {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    (!name.is_empty()).then_some(name)
}

struct Sender {
    shared: Arc<Shared>,
    targets: Vec<Target>,
    balancer: Balancer,
    encoder: Encoder,
    link: Option<(usize, Link)>,
    relp_session: Option<ClientSession>,
    batch: VecDeque<Record>,
    scratch: Scratch,
    origin: Instant,
    next_heartbeat: Option<Instant>,
    reported_dropped: u64,
    last_drop_report: Option<Instant>,
    /// A crash report is in the batch and not yet delivered.
    urgent_pending: bool,
}

impl Sender {
    fn run(mut self) {
        ReentrancyGuard::mark_thread_forever();
        let _ = self.shared.sender.set(std::thread::current());
        loop {
            let now = Instant::now();
            self.maybe_heartbeat(now);
            self.take_urgent();
            self.refill();
            let stopping = self.shared.shutdown.load(Ordering::SeqCst);
            // Unacknowledged RELP messages live in the link while connected, and in
            // the kept session between connections: both are work still to do.
            let unacked = self.link.as_ref().map_or(0, |(_, l)| l.unacknowledged())
                + self
                    .relp_session
                    .as_ref()
                    .map_or(0, ClientSession::unacked_count);
            if self.batch.is_empty() && unacked == 0 {
                if stopping {
                    break;
                }
                self.sleep(IDLE_SLEEP);
                continue;
            }
            if self.link.is_none() {
                let since = now.duration_since(self.origin);
                match self.balancer.poll(since) {
                    Decision::Connect(index) => self.connect(index),
                    Decision::WaitUntil(_) if self.urgent_pending => {
                        // A crash report does not wait out a backoff: try every
                        // collector once, now.
                        self.connect_any_now();
                        self.urgent_pending = false;
                    }
                    Decision::WaitUntil(at) => {
                        if stopping {
                            break;
                        }
                        // Back off for real: log calls do not cut this short (a
                        // full queue must not turn the wait into a spin); flush,
                        // shutdown and the panic hook do.
                        let wait = at.saturating_sub(since).min(IDLE_SLEEP);
                        std::thread::park_timeout(wait.max(Duration::from_millis(1)));
                    }
                    Decision::Connected(index) => {
                        // The balancer thinks we are connected but we are not:
                        // treat it as a lost connection.
                        self.balancer.on_failure(index, since);
                    }
                }
                continue;
            }
            self.maybe_report_drops(now);
            self.send_batch();
        }
        if let Some((_, link)) = self.link.take() {
            let delivered = link.close(&mut self.relp_session);
            self.shared.delivered.fetch_add(delivered, Ordering::AcqRel);
        }
        self.shared.notify_progress();
    }

    /// Moves a record from the urgent slot (the crash report) to the front of
    /// the batch, ahead of everything queued.
    fn take_urgent(&mut self) {
        let taken = match self.shared.urgent.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(record) = taken {
            self.batch.push_front(record);
            self.urgent_pending = true;
        }
    }

    /// Tries every collector once, starting at a random one, bypassing backoff.
    fn connect_any_now(&mut self) {
        let n = self.targets.len();
        let start = (std::process::id() as usize) % n.max(1);
        for k in 0..n {
            let index = (start + k) % n;
            self.connect(index);
            if self.link.is_some() {
                return;
            }
        }
    }

    /// Moves queued records into the local batch.
    fn refill(&mut self) {
        while self.batch.len() < BATCH {
            match self.shared.queue.pop() {
                Some(record) => self.batch.push_back(record),
                None => break,
            }
        }
    }

    /// Parks until woken by a log call, `flush`, `shutdown`, or `timeout`.
    fn sleep(&self, timeout: Duration) {
        let s = &self.shared;
        s.sender_sleeping.store(true, Ordering::SeqCst);
        if s.queue.is_empty() && !s.shutdown.load(Ordering::SeqCst) {
            std::thread::park_timeout(timeout);
        }
        s.sender_sleeping.store(false, Ordering::SeqCst);
    }

    fn connect(&mut self, index: usize) {
        let since = Instant::now().duration_since(self.origin);
        let Some(target) = self.targets.get_mut(index) else {
            self.balancer.on_failure(index, since);
            return;
        };
        // Failing over from RELP to another transport: what the RELP session still
        // holds unacknowledged goes first on the new link, so nothing is stranded.
        if !matches!(target.collector.transport, crate::Transport::Relp { .. })
            && let Some(session) = self.relp_session.as_mut()
        {
            for bytes in session.take_unacknowledged().into_iter().rev() {
                self.batch.push_front(Record::pre_encoded(bytes));
            }
        }
        let config = &self.shared.config;
        match Link::connect(
            target,
            &config.resolver,
            config.connect_timeout,
            config.write_timeout,
            &mut self.relp_session,
        ) {
            Ok(link) => {
                self.shared.connects.fetch_add(1, Ordering::Relaxed);
                self.balancer.on_connected(index, since);
                self.link = Some((index, link));
            }
            Err(e) => {
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                self.note_failure(index, &e);
                self.balancer.on_failure(index, since);
            }
        }
    }

    /// Keeps the failure's words for [`crate::Logger::last_failure`].
    fn note_failure(&self, index: usize, error: &dyn std::fmt::Display) {
        let collector = self.targets.get(index).map_or_else(String::new, |t| {
            format!(
                "{}://{}",
                t.collector.transport.scheme(),
                t.collector.address
            )
        });
        if let Ok(mut last) = self.shared.last_failure.lock() {
            *last = Some(format!("{collector}: {error}"));
        }
    }

    fn send_batch(&mut self) {
        let Some((index, mut link)) = self.link.take() else {
            return;
        };
        let format = self
            .targets
            .get(index)
            .map_or(crate::Format::Rfc5424, |t| t.collector.format);
        let sent = link.send(
            &mut self.batch,
            &mut self.encoder,
            format,
            &mut self.scratch,
        );
        let mut delivered = sent.delivered;
        let mut result = sent.result;
        if result.is_ok() {
            // RELP: wait for acknowledgements when the window is full, or when
            // nothing else is left to do but wait for them.
            let waiting = link.unacknowledged() > 0
                && (!self.batch.is_empty() || self.shared.queue.is_empty());
            if waiting {
                let acks = link.wait_acks(Duration::from_millis(20));
                delivered += acks.delivered;
                result = acks.result;
            }
        }
        if delivered > 0 {
            self.urgent_pending = false;
            self.shared.delivered.fetch_add(delivered, Ordering::AcqRel);
            self.shared.notify_progress();
        }
        match result {
            Ok(()) => self.link = Some((index, link)),
            Err(e) => {
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                self.note_failure(index, &e);
                link.abandon(&mut self.relp_session);
                let since = Instant::now().duration_since(self.origin);
                self.balancer.on_failure(index, since);
            }
        }
    }

    fn maybe_heartbeat(&mut self, now: Instant) {
        let (Some(due), Some(period)) = (self.next_heartbeat, self.shared.config.heartbeat) else {
            return;
        };
        if now < due {
            return;
        }
        self.next_heartbeat = now.checked_add(period);
        if self.batch.len() >= BATCH {
            // A long outage must not grow the batch past its bound.
            return;
        }
        let s = &self.shared;
        let uptime = now.duration_since(s.started).as_secs();
        let delivered = s.delivered.load(Ordering::Relaxed);
        let dropped = s.dropped();
        let time = s.config.use_clock.then(std::time::SystemTime::now);
        let mut record = Record::new(
            Severity::Informational,
            time,
            format!("heartbeat: up {uptime} s, {delivered} delivered, {dropped} dropped"),
        );
        record.msg_id = Some(Cow::Borrowed("HEARTBEAT"));
        record.extra_sd.push(SdElement {
            id: format!("heartbeat{PEN_SUFFIX}"),
            params: vec![
                param("uptime_s", uptime.to_string()),
                param("delivered", delivered.to_string()),
                param("dropped", dropped.to_string()),
                // The period lets a log service tell "silent" (several missed
                // heartbeats) from "quiet".
                param("interval_ms", period.as_millis().to_string()),
            ],
        });
        self.push_own(record);
    }

    fn maybe_report_drops(&mut self, now: Instant) {
        let total = self.shared.dropped();
        if total <= self.reported_dropped {
            return;
        }
        if let Some(last) = self.last_drop_report
            && now.duration_since(last) < DROP_REPORT_EVERY
        {
            return;
        }
        let count = total - self.reported_dropped;
        self.reported_dropped = total;
        self.last_drop_report = Some(now);
        let time = self
            .shared
            .config
            .use_clock
            .then(std::time::SystemTime::now);
        let mut record = Record::new(
            Severity::Warning,
            time,
            format!("flotilla-logger dropped {count} messages (queue full; {total} in all)"),
        );
        record.msg_id = Some(Cow::Borrowed("DROPPED"));
        record.extra_sd.push(SdElement {
            id: format!("dropped{PEN_SUFFIX}"),
            params: vec![
                param("count", count.to_string()),
                param("total", total.to_string()),
            ],
        });
        self.push_own(record);
    }

    /// Adds one of the logger's own messages (heartbeat, drop notice). They are
    /// counted apart (`own`), so that a flush waits for them without them
    /// counting towards what the application queued.
    fn push_own(&mut self, record: Record) {
        self.shared.own.fetch_add(1, Ordering::Relaxed);
        self.batch.push_back(record);
    }
}

fn param(name: &str, value: String) -> SdParam {
    SdParam {
        name: name.to_owned(),
        value,
    }
}
