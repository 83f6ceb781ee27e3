//! Forwarding: every durable record that matches a filter is relayed, as it was received,
//! to upstream syslog servers (rsyslog, syslog-ng, another logd) through the flotilla
//! logger's own transports (UDP, TCP, TLS, RELP, with its random choice and failover).
//!
//! Forwarding never slows ingest: records come from the store's tail broadcast, and the
//! logger's queue is bounded (the oldest waiting message is dropped and counted when the
//! upstream cannot keep up). Lag of the broadcast is counted too.

// An I/O shell (relaying upstream): it runs a task.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::error::Error;
use crate::query::Matcher;
use crate::store::Store;

/// What to forward where.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Upstream collectors, in the logger's URL syntax
    /// (`relp://HOST:PORT,tcp://HOST:PORT?framing=octet`, ...).
    pub to: String,
    /// Only records matching this (everything by default).
    pub filter: crate::query::Query,
    /// Messages the logger may hold while the upstream is slow or down.
    pub queue: usize,
}

/// Counters of the forwarder.
#[derive(Debug, Default)]
pub struct ForwardStats {
    matched: AtomicU64,
    lagged_batches: AtomicU64,
}

/// A snapshot of the forwarder's counters.
#[derive(Debug, Clone, Serialize)]
pub struct ForwardSnapshot {
    /// The upstream collectors.
    pub to: String,
    /// Records that matched the filter and were handed to the logger.
    pub matched: u64,
    /// Messages the upstream acknowledged (RELP) or that were written to its socket.
    pub delivered: u64,
    /// Messages dropped because the logger's queue was full (upstream too slow or down).
    pub dropped: u64,
    /// Connection attempts to the upstream that failed.
    pub failures: u64,
    /// Batches of records missed because the forwarder fell behind the store.
    pub lagged_batches: u64,
}

/// A running forwarder.
pub struct Forwarder {
    logger: flotilla_logger::Logger,
    stats: Arc<ForwardStats>,
    to: String,
}

impl Forwarder {
    /// Starts the logger towards the upstream and a task relaying the store's durable
    /// records (on the current tokio runtime).
    pub fn start(store: &Store, config: ForwardConfig) -> Result<Forwarder, Error> {
        let matcher = Matcher::new(config.filter)?;
        let mut logger_config = flotilla_logger::Config::with_collectors(&config.to)
            .map_err(|e| Error::Config(format!("--forward {:?}: {e}", config.to)))?;
        logger_config.queue_capacity = config.queue.max(16);
        let logger = flotilla_logger::Logger::start(logger_config)
            .map_err(|e| Error::Config(format!("--forward {:?}: {e}", config.to)))?;
        let stats = Arc::new(ForwardStats::default());
        let mut rx = store.subscribe();
        let task_logger = logger.clone();
        let task_stats = stats.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(batch) => {
                        for (_, record) in batch.records.iter() {
                            if matcher.matches(record.received_at, &record.raw) {
                                task_stats.matched.fetch_add(1, Ordering::Relaxed);
                                task_logger.forward(&record.raw);
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        task_stats.lagged_batches.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!(missed_batches = n, "forwarding fell behind");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Forwarder {
            logger,
            stats,
            to: config.to,
        })
    }

    /// The counters now.
    pub fn snapshot(&self) -> ForwardSnapshot {
        let l = self.logger.stats();
        ForwardSnapshot {
            to: self.to.clone(),
            matched: self.stats.matched.load(Ordering::Relaxed),
            delivered: l.delivered,
            dropped: l.dropped,
            failures: l.failures,
            lagged_batches: self.stats.lagged_batches.load(Ordering::Relaxed),
        }
    }

    /// Sends what is queued (waiting at most `timeout`) and stops the logger.
    pub fn shutdown(&self, timeout: std::time::Duration) -> bool {
        self.logger.shutdown(timeout)
    }
}
