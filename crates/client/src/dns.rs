//! Front-end lists from DNS: every A and AAAA record of one name, with a port.
//!
//! [`DnsFrontends`] says which name, which port, which name servers to ask (the system's,
//! from `/etc/resolv.conf`, or explicit addresses) and how long a resolution may take.
//! [`DnsResolver`] is the I/O around it (a hickory resolver on tokio): the
//! [`FleetClient`](crate::FleetClient) resolves at connect and again at the start of every
//! failover round, as its [`Failover`](crate::Failover) machine asks
//! ([`Step::Resolve`](crate::Step::Resolve)).
//!
//! Every resolution asks the name servers: the resolver caches nothing (no positive and
//! no negative caching, whatever the records' TTL), so a front-end removed from DNS is no
//! longer picked from the next failover round on, and a name that failed to resolve is
//! asked again. A resolution happens only at connect and once per failover round, so this
//! costs the name servers little.
//!
//! A resolution gives the addresses sorted and without duplicates, so a name server that
//! rotates its answers does not look like a changed list. It fails when the name does not
//! resolve, has no A or AAAA record, or the name servers do not answer within
//! [`DnsFrontends::timeout`].

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::Name;

use crate::error::ClientError;

/// Which name servers a [`DnsFrontends`] list is resolved with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NameServers {
    /// The system's: `/etc/resolv.conf` (name servers, search domains, options) and
    /// `/etc/hosts`. The default.
    #[default]
    System,
    /// These name servers only (UDP, with TCP for truncated answers), in this order; no
    /// search domains, no hosts file. For a private DNS service, or a test's dnsmasq on
    /// `127.0.0.1:PORT`.
    Addresses(Vec<SocketAddr>),
}

/// A front-end list taken from DNS: every A and AAAA record of `name`, each with `port`.
///
/// ```
/// use flotilla_client::{DnsFrontends, FleetConfig, FrontendSource};
///
/// // The system's name servers:
/// let config = FleetConfig::from_dns("frontends.example.net", 7400);
/// // A private DNS server:
/// let dns = DnsFrontends::new("frontends.example.net", 7400)
///     .with_name_servers(vec!["10.0.0.53:53".parse().unwrap()]);
/// let config = FleetConfig::from_source(dns);
/// assert!(matches!(config.frontends, FrontendSource::Dns(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFrontends {
    /// The name whose A and AAAA records are the front-ends.
    pub name: String,
    /// The front-ends' port.
    pub port: u16,
    /// The name servers to ask. Default: the system's.
    pub name_servers: NameServers,
    /// The longest one resolution may take, retries included; past it the resolution
    /// fails (the last good list is kept). Default 5 s.
    pub timeout: Duration,
}

impl DnsFrontends {
    /// Every A and AAAA record of `name`, with `port`, from the system's name servers.
    pub fn new(name: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            port,
            name_servers: NameServers::System,
            timeout: Duration::from_secs(5),
        }
    }

    /// The same, asking only these name servers.
    #[must_use]
    pub fn with_name_servers(mut self, name_servers: Vec<SocketAddr>) -> Self {
        self.name_servers = NameServers::Addresses(name_servers);
        self
    }

    /// The same, with this resolution timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Makes every lookup ask the name servers: no cache, and (should an entry be kept anyway)
/// positive and negative answers expire at once.
fn never_cache(options: &mut ResolverOpts) {
    options.cache_size = 0;
    options.positive_min_ttl = None;
    options.negative_min_ttl = None;
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
}

/// Resolves a [`DnsFrontends`] list (the shell around a hickory resolver).
#[derive(Clone)]
pub(crate) struct DnsResolver {
    resolver: TokioResolver,
    /// The name as parsed for the queries.
    query: Name,
    /// The name as configured, for errors and events.
    name: String,
    port: u16,
    timeout: Duration,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DnsResolver")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl DnsResolver {
    /// A resolver for `config`. Fails with [`ClientError::InvalidConfig`] on an empty or
    /// malformed name, an empty list of name servers, a zero timeout, or an unreadable
    /// system configuration.
    pub(crate) fn new(config: &DnsFrontends) -> Result<Self, ClientError> {
        let invalid = |what: String| ClientError::InvalidConfig {
            setting: "DNS front-ends",
            reason: what,
        };
        if config.name.trim().is_empty() {
            return Err(invalid("the name is empty".to_owned()));
        }
        if config.timeout.is_zero() {
            return Err(invalid("the resolution timeout is zero".to_owned()));
        }
        let query = Name::from_utf8(&config.name)
            .map_err(|error| invalid(format!("not a DNS name: {:?}: {error}", config.name)))?;
        let mut builder = match &config.name_servers {
            NameServers::System => TokioResolver::builder_tokio().map_err(|error| {
                invalid(format!("reading the system's DNS configuration: {error}"))
            })?,
            NameServers::Addresses(servers) => {
                if servers.is_empty() {
                    return Err(invalid("the list of name servers is empty".to_owned()));
                }
                let name_servers = servers
                    .iter()
                    .map(|server| {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = server.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = server.port();
                        NameServerConfig::new(server.ip(), true, vec![udp, tcp])
                    })
                    .collect();
                let mut builder = TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(name_servers),
                    TokioRuntimeProvider::default(),
                );
                let options = builder.options_mut();
                options.use_hosts_file = ResolveHosts::Never;
                // Two tries per server within the whole resolution's timeout.
                options.timeout = (config.timeout / 2).max(Duration::from_millis(1));
                options.attempts = 2;
                builder
            }
        };
        let options = builder.options_mut();
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        never_cache(options);
        let resolver = builder
            .build()
            .map_err(|error| invalid(format!("building the resolver: {error}")))?;
        Ok(Self {
            resolver,
            query,
            name: config.name.clone(),
            port: config.port,
            timeout: config.timeout,
        })
    }

    /// The name resolved, as configured.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Every A and AAAA record of the name, with the port: sorted, no duplicates, never
    /// empty. The error says what went wrong, for events and logs.
    pub(crate) async fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        let lookup =
            tokio::time::timeout(self.timeout, self.resolver.lookup_ip(self.query.clone()))
                .await
                .map_err(|_| format!("no answer within {:?}", self.timeout))?
                .map_err(|error| error.to_string())?;
        let mut addresses: Vec<SocketAddr> = lookup
            .iter()
            .map(|ip| SocketAddr::new(ip, self.port))
            .collect();
        addresses.sort_unstable();
        addresses.dedup();
        if addresses.is_empty() {
            return Err("no A or AAAA record".to_owned());
        }
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::{Arc, Mutex};

    use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
    use hickory_resolver::proto::rr::rdata::{A, SOA};
    use hickory_resolver::proto::rr::{RData, Record, RecordType};
    use tokio::net::UdpSocket;

    use super::*;

    /// The TTL of every answer of the fake name server: far longer than any test.
    const TTL: u32 = 300;

    const NAME: &str = "frontends.flotilla.test";

    /// A name server on loopback UDP answering the A queries of any name with the
    /// addresses in `records` (TTL 300 s); with none, NXDOMAIN with an SOA whose negative
    /// TTL is 300 s. AAAA queries get no record (with that SOA).
    async fn fake_name_server(records: Arc<Mutex<Vec<Ipv4Addr>>>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = vec![0; 4096];
            while let Ok((length, from)) = socket.recv_from(&mut buffer).await {
                let query = Message::from_vec(&buffer[..length]).unwrap();
                let mut response = Message::response(query.metadata.id, OpCode::Query);
                response.metadata.authoritative = true;
                response.metadata.recursion_available = true;
                response.add_queries(query.queries.clone());
                let addresses = records.lock().unwrap().clone();
                for question in &query.queries {
                    let name = question.name().clone();
                    if question.query_type() == RecordType::A && !addresses.is_empty() {
                        for ip in &addresses {
                            response.add_answer(Record::from_rdata(
                                name.clone(),
                                TTL,
                                RData::A(A(*ip)),
                            ));
                        }
                        continue;
                    }
                    if addresses.is_empty() {
                        response.metadata.response_code = ResponseCode::NXDomain;
                    }
                    let soa = SOA::new(
                        name.clone(),
                        name.clone(),
                        1,
                        TTL as i32,
                        TTL as i32,
                        TTL as i32,
                        TTL,
                    );
                    response.add_authority(Record::from_rdata(name, TTL, RData::SOA(soa)));
                }
                let bytes = response.to_vec().unwrap();
                socket.send_to(&bytes, from).await.unwrap();
            }
        });
        addr
    }

    fn resolver(server: SocketAddr) -> DnsResolver {
        DnsResolver::new(
            &DnsFrontends::new(NAME, 7400)
                .with_name_servers(vec![server])
                .with_timeout(Duration::from_secs(5)),
        )
        .unwrap()
    }

    fn frontend(last: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 7400)
    }

    #[tokio::test]
    async fn a_changed_record_is_seen_at_the_next_resolution_despite_its_ttl() {
        let records = Arc::new(Mutex::new(vec![Ipv4Addr::new(127, 0, 0, 2)]));
        let resolver = resolver(fake_name_server(Arc::clone(&records)).await);
        assert_eq!(resolver.resolve().await.unwrap(), vec![frontend(2)]);
        *records.lock().unwrap() = vec![Ipv4Addr::new(127, 0, 0, 4), Ipv4Addr::new(127, 0, 0, 3)];
        assert_eq!(
            resolver.resolve().await.unwrap(),
            vec![frontend(3), frontend(4)]
        );
    }

    #[tokio::test]
    async fn a_failed_resolution_is_asked_again_despite_its_negative_ttl() {
        let records = Arc::new(Mutex::new(Vec::new()));
        let resolver = resolver(fake_name_server(Arc::clone(&records)).await);
        assert!(resolver.resolve().await.is_err());
        *records.lock().unwrap() = vec![Ipv4Addr::new(127, 0, 0, 5)];
        assert_eq!(resolver.resolve().await.unwrap(), vec![frontend(5)]);
    }

    #[test]
    fn the_resolver_caches_nothing() {
        let resolver = resolver("127.0.0.1:53".parse().unwrap());
        let options = resolver.resolver.options();
        assert_eq!(options.cache_size, 0);
        assert_eq!(options.positive_max_ttl, Some(Duration::ZERO));
        assert_eq!(options.negative_max_ttl, Some(Duration::ZERO));
    }
}
