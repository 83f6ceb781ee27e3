//! Host-name resolution for collector addresses, bounded by the connect budget.
//!
//! The system resolver (`getaddrinfo` behind [`ToSocketAddrs`]) blocks and has no
//! timeout of its own: a dead name server in `resolv.conf` holds it for many
//! seconds. The sender must never wait that long (it would hold up failover to
//! the next collector and the crash report), so a name is resolved on a
//! short-lived helper thread and the sender waits for it at most until the
//! connection attempt's deadline. A lookup still running at the deadline is not
//! killed (it cannot be) but abandoned: the attempt fails (counted in
//! [`Stats::failures`](crate::Stats)), the sender moves on, and the next attempt
//! to the same collector waits for that same lookup instead of starting another
//! one, so a hung name server costs at most one thread per collector.
//!
//! IP literals (`127.0.0.1:514`, `[::1]:514`) never reach a resolver.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Instant;

use crate::logger::ReentrancyGuard;

/// The signature of a resolution function: `"host:port"` in, addresses out.
pub type ResolveFn = dyn Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// How collector host names are turned into socket addresses.
///
/// The default is the system resolver. A custom one (for tests, or for a service
/// with its own name service) is any function of `"host:port"`; it runs on a
/// helper thread and may block: the sender never waits for it longer than
/// [`Config::connect_timeout`](crate::Config::connect_timeout).
#[derive(Clone, Default)]
pub struct Resolver {
    custom: Option<Arc<ResolveFn>>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.custom.is_some() {
            "Resolver(custom)"
        } else {
            "Resolver(system)"
        })
    }
}

impl Resolver {
    /// The system resolver (`getaddrinfo`), the default.
    pub fn system() -> Self {
        Self::default()
    }

    /// A custom resolution function of `"host:port"`.
    pub fn custom(
        resolve: impl Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            custom: Some(Arc::new(resolve)),
        }
    }

    /// Resolves `address` (`host:port`) now, blocking, without any time bound.
    pub fn resolve(&self, address: &str) -> io::Result<Vec<SocketAddr>> {
        match &self.custom {
            Some(resolve) => resolve(address),
            None => Ok(address.to_socket_addrs()?.collect()),
        }
    }
}

type Answer = io::Result<Vec<SocketAddr>>;

/// The resolution state of one collector: at most one lookup in flight.
#[derive(Default)]
pub(crate) struct Lookup {
    /// The answer channel of a lookup that outlived an earlier attempt.
    pending: Option<Receiver<Answer>>,
}

impl Lookup {
    /// Resolves `address` with `resolver`, waiting at most until `deadline`.
    /// A lookup that is still running at the deadline is kept for the next call.
    pub fn resolve(
        &mut self,
        resolver: &Resolver,
        address: &str,
        deadline: Instant,
    ) -> io::Result<Vec<SocketAddr>> {
        if let Ok(literal) = address.parse::<SocketAddr>() {
            return Ok(vec![literal]);
        }
        let answers = match self.pending.take() {
            Some(answers) => answers,
            None => spawn_lookup(resolver, address)?,
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        match answers.recv_timeout(wait) {
            Ok(Ok(addresses)) if addresses.is_empty() => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{address} resolved to no address"),
            )),
            Ok(Ok(addresses)) => Ok(addresses),
            Ok(Err(e)) => Err(io::Error::new(
                e.kind(),
                format!("the name in {address} did not resolve: {e}"),
            )),
            Err(RecvTimeoutError::Timeout) => {
                self.pending = Some(answers);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("resolving {address} took longer than connect_timeout"),
                ))
            }
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::other(format!(
                "resolving {address}: the resolver gave no answer"
            ))),
        }
    }

    /// Whether a lookup from an earlier attempt is still awaited.
    #[cfg(test)]
    fn is_pending(&self) -> bool {
        self.pending.is_some()
    }
}

/// Starts one lookup on its own thread; the answer arrives on the channel.
fn spawn_lookup(resolver: &Resolver, address: &str) -> io::Result<Receiver<Answer>> {
    let (tx, rx) = mpsc::sync_channel(1);
    let resolver = resolver.clone();
    let address = address.to_owned();
    std::thread::Builder::new()
        .name("flotilla-logger-dns".into())
        .spawn(move || {
            // Anything the resolver logs is dropped, as on the sender thread.
            ReentrancyGuard::mark_thread_forever();
            // The sender may have given up waiting: then nobody listens.
            let _ = tx.send(resolver.resolve(&address));
        })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn ip_literals_never_reach_the_resolver() {
        let resolver = Resolver::custom(|_| panic!("must not be called"));
        let mut lookup = Lookup::default();
        let deadline = Instant::now() + Duration::from_secs(1);
        let v4 = lookup
            .resolve(&resolver, "127.0.0.1:514", deadline)
            .unwrap();
        assert_eq!(v4, vec!["127.0.0.1:514".parse().unwrap()]);
        let v6 = lookup.resolve(&resolver, "[::1]:514", deadline).unwrap();
        assert_eq!(v6, vec!["[::1]:514".parse().unwrap()]);
    }

    #[test]
    fn a_hung_lookup_is_abandoned_at_the_deadline_and_reused() {
        let release = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let resolver = {
            let (release, calls) = (release.clone(), calls.clone());
            Resolver::custom(move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(vec!["127.0.0.1:601".parse().unwrap()])
            })
        };
        let mut lookup = Lookup::default();
        for _ in 0..3 {
            let start = Instant::now();
            let err = lookup
                .resolve(
                    &resolver,
                    "hung.test:601",
                    start + Duration::from_millis(100),
                )
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "{:?}",
                start.elapsed()
            );
            assert!(lookup.is_pending());
        }
        // One thread for three attempts: the hung lookup was waited on again.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        release.store(true, Ordering::SeqCst);
        let got = lookup
            .resolve(
                &resolver,
                "hung.test:601",
                Instant::now() + Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(got, vec!["127.0.0.1:601".parse().unwrap()]);
        assert!(!lookup.is_pending());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failures_and_empty_answers_are_errors() {
        let mut lookup = Lookup::default();
        let deadline = Instant::now() + Duration::from_secs(5);
        let empty = Resolver::custom(|_| Ok(Vec::new()));
        let err = lookup
            .resolve(&empty, "nothing.test:1", deadline)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let failing = Resolver::custom(|_| Err(io::Error::other("no such host")));
        let err = lookup
            .resolve(&failing, "bad.test:1", deadline)
            .unwrap_err();
        assert!(err.to_string().contains("no such host"), "{err}");
        let panicking = Resolver::custom(|_| panic!("resolver bug"));
        let err = lookup
            .resolve(&panicking, "bug.test:1", deadline)
            .unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err}");
    }

    #[test]
    fn the_system_resolver_resolves_localhost() {
        let mut lookup = Lookup::default();
        let got = lookup
            .resolve(
                &Resolver::system(),
                "localhost:514",
                Instant::now() + Duration::from_secs(5),
            )
            .unwrap();
        assert!(
            got.iter().all(|a| a.ip().is_loopback() && a.port() == 514),
            "{got:?}"
        );
    }
}
