//! Loopback ports: finding free ones, and telling whether a port is bound (read from
//! `/proc/net`, so checking never disturbs the peer with a probe connection).

use crate::Error;
use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::{Mutex, PoisonError};

/// How many candidate ports [`free_port`] tries before giving up.
const FREE_PORT_ATTEMPTS: usize = 200;

/// A loopback port that is free for both TCP and UDP right now, and that this process
/// has not handed out before (so two peers of one test never collide).
///
/// It lies outside the kernel's ephemeral range (`ip_local_port_range`): tests restart
/// peers on the ports they were given, and a port from that range can meanwhile become
/// the source port of some outgoing connection (a logger's, a peer's HTTP client's) and
/// stay taken for as long as it lives.
pub fn free_port() -> Result<u16, Error> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let (low, high) = ephemeral_range();
    let below = low.saturating_sub(MIN_PORT);
    let above = u16::MAX.saturating_sub(high);
    for attempt in 0..FREE_PORT_ATTEMPTS {
        let pick = candidate(attempt) % (u32::from(below) + u32::from(above)).max(1);
        let port = match u16::try_from(pick) {
            Ok(p) if p < below => MIN_PORT + p,
            Ok(p) => high.saturating_add(1).saturating_add(p - below),
            Err(_) => continue,
        };
        if port < MIN_PORT || (low..=high).contains(&port) {
            continue;
        }
        let Ok(_tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) else {
            continue;
        };
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(Error::NoFreePort {
        attempts: FREE_PORT_ATTEMPTS,
    })
}

/// The lowest port [`free_port`] hands out (below are well-known and registered services).
const MIN_PORT: u16 = 10_000;

/// The kernel's ephemeral port range (Linux's default when it cannot be read).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// A pseudo-random number per attempt, different in every process (test processes run
/// side by side and must not pick the same ports in the same order).
fn candidate(attempt: usize) -> u32 {
    use std::hash::{BuildHasher, RandomState};
    static STATE: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let h = STATE
        .get_or_init(RandomState::new)
        .hash_one((std::process::id(), call, attempt));
    (h >> 32) as u32
}

/// The transport of a port a peer listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP listener (state LISTEN).
    Tcp,
    /// A bound UDP socket.
    Udp,
}

/// A port a peer is expected to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// TCP or UDP.
    pub transport: Transport,
    /// The port number.
    pub port: u16,
}

impl Listener {
    /// A TCP listener on `port`.
    pub fn tcp(port: u16) -> Self {
        Listener {
            transport: Transport::Tcp,
            port,
        }
    }

    /// A UDP socket on `port`.
    pub fn udp(port: u16) -> Self {
        Listener {
            transport: Transport::Udp,
            port,
        }
    }
}

/// Whether some socket is bound to `listener` (TCP: listening) on this machine.
pub fn is_bound(listener: Listener) -> Result<bool, Error> {
    let (tables, listen_only): (&[&str], bool) = match listener.transport {
        Transport::Tcp => (&["/proc/net/tcp", "/proc/net/tcp6"], true),
        Transport::Udp => (&["/proc/net/udp", "/proc/net/udp6"], false),
    };
    for table in tables {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            // tcp6/udp6 are missing when IPv6 is disabled.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(Error::io(format!("reading {table}"))(error)),
        };
        if table_has_port(&text, listener.port, listen_only) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a `/proc/net/{tcp,udp}[6]` table has a local address with `port` (in LISTEN
/// state, `0A`, when `listen_only`).
fn table_has_port(table: &str, port: u16, listen_only: bool) -> bool {
    let wanted = format!("{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut columns = line.split_whitespace();
        let _slot = columns.next();
        let local = columns.next().unwrap_or("");
        let _remote = columns.next();
        let state = columns.next().unwrap_or("");
        let local_port = local.rsplit(':').next().unwrap_or("");
        local_port.eq_ignore_ascii_case(&wanted) && (!listen_only || state == "0A")
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn table_parsing_finds_listening_port_only() {
        let table = "  sl  local_address rem_address   st tx_queue\n   0: 0100007F:3039 00000000:0000 0A 0\n   1: 0100007F:0050 0100007F:9C40 01 0\n";
        assert!(table_has_port(table, 12345, true));
        assert!(!table_has_port(table, 80, true));
        assert!(table_has_port(table, 80, false));
        assert!(!table_has_port(table, 81, false));
    }

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let first = free_port().unwrap();
        let second = free_port().unwrap();
        assert_ne!(first, second);
        TcpListener::bind((Ipv4Addr::LOCALHOST, first)).unwrap();
        UdpSocket::bind((Ipv4Addr::LOCALHOST, first)).unwrap();
    }

    #[test]
    fn bound_listener_is_seen() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(is_bound(Listener::tcp(port)).unwrap());
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = socket.local_addr().unwrap().port();
        assert!(is_bound(Listener::udp(port)).unwrap());
        drop(socket);
        assert!(!is_bound(Listener::udp(port)).unwrap());
    }
}
