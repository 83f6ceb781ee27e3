//! The sender thread: the only place where the logger does I/O.
//!
//! It drains the queue into a local batch, encodes and frames many messages per
//! write, keeps one connection to a collector, and tells `flush` waiters about
//! progress. What to do when is the `no_std` sans-I/O [`SenderPolicy`]
//! (`flotilla-logger-core`): which collector (random pick, failover, backoff with full
//! jitter), the crash report's bypass of a backoff, RELP hand-over, the heartbeat and the
//! "dropped N messages" notice, when to wait for RELP acknowledgements. While no collector is reachable, messages wait in the bounded queue
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
use std::time::Duration;

use flotilla_conn::{Clock, Machine};
use flotilla_logger_core::{PolicyConfig, SenderAction, SenderEvent, SenderPolicy};
use flotilla_relp::client::RelpClientSession;
use flotilla_syslog::{SdElement, SdParam, Severity};

use crate::encode::Encoder;
use crate::link::{Delivery, Link, Scratch, Target};
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
    let seed =
        flotilla_balance::seed_from_os_entropy().map_err(|e| Error::Entropy(e.to_string()))?;
    let config = &shared.config;
    let clock = Clock::process();
    let policy = SenderPolicy::new(
        PolicyConfig {
            relp: targets
                .iter()
                .map(|t| matches!(t.collector.transport, crate::Transport::Relp { .. }))
                .collect(),
            backoff: config.backoff,
            heartbeat: config.heartbeat,
            drop_report_every: DROP_REPORT_EVERY,
        },
        seed,
        clock.now(),
    )
    .map_err(|e| Error::Setting {
        setting: "collectors",
        reason: e.to_string(),
    })?;
    let app_name = config.app_name.clone().or_else(default_app_name);
    let hostname = config.hostname.clone().or_else(default_hostname);
    let encoder = Encoder::new(
        config.facility,
        hostname,
        app_name,
        Some(std::process::id().to_string()),
        config.fields_sd_id.clone(),
    );
    let sender = Sender {
        shared: shared.clone(),
        targets,
        policy,
        clock,
        encoder,
        link: None,
        relp_session: None,
        batch: VecDeque::with_capacity(BATCH),
        scratch: Scratch::default(),
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
    /// Every decision (which collector, when, heartbeats, drop notices, the crash
    /// report's bypass, RELP hand-over) is this sans-I/O machine's.
    policy: SenderPolicy,
    clock: Clock,
    encoder: Encoder,
    link: Option<(usize, Link)>,
    relp_session: Option<RelpClientSession>,
    batch: VecDeque<Record>,
    scratch: Scratch,
}

impl Sender {
    fn run(mut self) {
        ReentrancyGuard::mark_thread_forever();
        let _ = self.shared.sender.set(std::thread::current());
        loop {
            let now = self.clock.now();
            self.take_urgent(now);
            self.refill();
            self.policy
                .handle(now, SenderEvent::Dropped(self.shared.dropped()));
            self.act();
            let stopping = self.shared.shutdown.load(Ordering::SeqCst);
            let pending = !self.batch.is_empty() || self.unacknowledged() > 0;
            self.policy.handle(now, SenderEvent::Pending(pending));
            if !pending {
                if stopping {
                    break;
                }
                self.sleep(now);
                continue;
            }
            self.act();
            if self.link.is_none() {
                if stopping {
                    break;
                }
                // Back off for real: log calls do not cut this short (a full queue must
                // not turn the wait into a spin); flush, shutdown and the panic hook do.
                std::thread::park_timeout(self.wait(now).max(Duration::from_millis(1)));
                continue;
            }
            self.send_batch();
        }
        if let Some((_, link)) = self.link.take() {
            let kind = link.delivery();
            let ended = link.close(&mut self.relp_session);
            self.count_delivered(kind, ended.delivered);
            self.shared
                .maybe_unread
                .fetch_add(ended.maybe_unread, Ordering::Relaxed);
        }
        self.shared.notify_progress();
    }

    /// Unacknowledged messages (RELP: by the collector; TCP, TLS: by its TCP) live in the
    /// link while connected, and RELP's in the kept session between connections: all are
    /// work still to do.
    fn unacknowledged(&self) -> usize {
        self.link.as_ref().map_or(0, |(_, l)| l.unacknowledged())
            + self
                .relp_session
                .as_ref()
                .map_or(0, RelpClientSession::unacked_count)
    }

    /// Does what the policy asks (connections, heartbeats, drop notices) until it asks
    /// nothing more.
    fn act(&mut self) {
        while let Some(action) = self.policy.poll_output() {
            match action {
                SenderAction::Connect {
                    collector,
                    hand_over_relp,
                    ..
                } => self.connect(collector, hand_over_relp),
                SenderAction::Heartbeat { uptime, period } => self.heartbeat(uptime, period),
                SenderAction::ReportDrops { count, total } => self.report_drops(count, total),
            }
        }
    }

    /// How long until the policy's next deadline (at most [`IDLE_SLEEP`]).
    fn wait(&self, now: flotilla_conn::Instant) -> Duration {
        self.policy
            .poll_timeout()
            .map_or(IDLE_SLEEP, |at| (at - now).min(IDLE_SLEEP))
    }

    /// Moves a record from the urgent slot (the crash report) to the front of
    /// the batch, ahead of everything queued.
    fn take_urgent(&mut self, now: flotilla_conn::Instant) {
        let taken = match self.shared.urgent.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(record) = taken {
            self.batch.push_front(record);
            self.policy.handle(now, SenderEvent::CrashReport);
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

    /// Parks until woken by a log call, `flush`, `shutdown`, or the policy's next
    /// deadline (a heartbeat).
    fn sleep(&self, now: flotilla_conn::Instant) {
        let s = &self.shared;
        s.sender_sleeping.store(true, Ordering::SeqCst);
        if s.queue.is_empty() && !s.shutdown.load(Ordering::SeqCst) {
            std::thread::park_timeout(self.wait(now).max(Duration::from_millis(1)));
        }
        s.sender_sleeping.store(false, Ordering::SeqCst);
    }

    fn connect(&mut self, index: usize, hand_over_relp: bool) {
        let Some(target) = self.targets.get_mut(index) else {
            let now = self.clock.now();
            self.policy.handle(now, SenderEvent::ConnectFailed(index));
            return;
        };
        // Failing over from RELP to another transport: what the RELP session still
        // holds unacknowledged goes first on the new link, so nothing is stranded.
        if hand_over_relp && let Some(session) = self.relp_session.as_mut() {
            for bytes in session.take_unacknowledged().into_iter().rev() {
                self.batch.push_front(Record::pre_encoded(bytes));
            }
        }
        let config = &self.shared.config;
        let result = Link::connect(
            target,
            &config.resolver,
            config.connect_timeout,
            config.write_timeout,
            &mut self.relp_session,
        );
        let now = self.clock.now();
        match result {
            Ok(link) => {
                self.shared.connects.fetch_add(1, Ordering::Relaxed);
                self.link = Some((index, link));
                self.policy.handle(now, SenderEvent::Connected(index));
            }
            Err(e) => {
                self.note_failure(index, &e);
                self.policy.handle(now, SenderEvent::ConnectFailed(index));
                // Counted once the policy has taken it in (its backoff is set): whoever
                // waits on the counter sees the sender's state after the failure.
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
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
        let kind = sent.kind;
        if let Some(resent) = link.relp_resent() {
            self.shared.resent_relp.store(resent, Ordering::Relaxed);
        }
        if sent.truncated > 0 {
            self.shared
                .truncated
                .fetch_add(sent.truncated, Ordering::Relaxed);
        }
        let mut delivered = sent.delivered;
        let mut result = sent.result;
        if result.is_ok()
            && SenderPolicy::should_wait_for_acks(
                link.unacknowledged(),
                self.batch.is_empty(),
                self.shared.queue.is_empty(),
            )
        {
            let acks = link.wait_acks(Duration::from_millis(20));
            delivered += acks.delivered;
            result = acks.result;
        }
        let now = self.clock.now();
        let failed = match result {
            Ok(()) => {
                self.link = Some((index, link));
                false
            }
            Err(e) => {
                // What the collector's TCP took before the failure still counts; the
                // rest goes back to the batch, for the next connection.
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                self.note_failure(index, &e);
                let ended = link.abandon(&mut self.relp_session, &mut self.batch, &e);
                delivered += ended.delivered;
                self.shared
                    .resent_stream
                    .fetch_add(ended.given_back, Ordering::Relaxed);
                self.shared
                    .maybe_unread
                    .fetch_add(ended.maybe_unread, Ordering::Relaxed);
                true
            }
        };
        if delivered > 0 {
            self.policy.handle(now, SenderEvent::Delivered(delivered));
            self.count_delivered(kind, delivered);
        }
        if failed {
            self.policy.handle(now, SenderEvent::LinkFailed(index));
        }
    }

    /// Adds delivered messages to the total and to the counter of their kind.
    fn count_delivered(&self, kind: Delivery, delivered: u64) {
        if delivered == 0 {
            return;
        }
        let counter = match kind {
            Delivery::Acknowledged => &self.shared.acknowledged,
            Delivery::TakenByTcp => &self.shared.taken_by_tcp,
            Delivery::Written => &self.shared.written,
            Delivery::Sent => &self.shared.sent,
        };
        counter.fetch_add(delivered, Ordering::AcqRel);
        self.shared.delivered.fetch_add(delivered, Ordering::AcqRel);
        self.shared.notify_progress();
    }

    fn heartbeat(&mut self, uptime: Duration, period: Duration) {
        if self.batch.len() >= BATCH {
            // A long outage must not grow the batch past its bound.
            return;
        }
        let s = &self.shared;
        let uptime = uptime.as_secs();
        let delivered = s.delivered.load(Ordering::Relaxed);
        let dropped = s.dropped();
        #[allow(clippy::disallowed_methods)] // the shell stamps its own messages
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

    fn report_drops(&mut self, count: u64, total: u64) {
        #[allow(clippy::disallowed_methods)] // the shell stamps its own messages
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
