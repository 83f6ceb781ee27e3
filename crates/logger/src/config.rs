//! Logger configuration: built in code, or parsed from one string such as
//! `FLOTILLA_LOG=relp://10.0.0.5:2514,tls://logs.example:6514?ca=/etc/ca.pem`.
//!
//! Collector URLs (comma-separated, one chosen at random, failover between them):
//!
//! | scheme | URL | parameters |
//! |---|---|---|
//! | UDP (RFC 5426) | `udp://HOST:PORT` | `max_size=N` |
//! | TCP (RFC 6587) | `tcp://HOST:PORT` | `framing=octet\|lf` |
//! | TLS (RFC 5425) | `tls://HOST:PORT?ca=PEM` | `name=DNSNAME`, `cert=PEM&key=PEM` (client certificate: mutual TLS) |
//! | RELP | `relp://HOST:PORT` | `window=N` |
//! | Unix datagram | `unix:///dev/log` | `max_size=N` |
//!
//! Every scheme takes `format=5424|3164`. HOST is an IP literal (`127.0.0.1`,
//! `[::1]`) or a name; a name is resolved at each connection attempt within
//! [`Config::connect_timeout`] (see [`Resolver`]).
//!
//! Every setting is checked when the configuration is built: an unknown scheme,
//! an unknown query parameter, a missing port, an unreadable CA file, a client
//! certificate without its key (or the reverse) is a loud [`Error`] at start-up,
//! never a silent downgrade. [`Config::validate`] also loads every TLS file, so
//! a file that is not PEM, or a key that does not match its certificate, fails
//! there too.

use std::path::PathBuf;
use std::time::Duration;

use flotilla_balance::BackoffConfig;
use flotilla_syslog::Facility;

use crate::Error;
use crate::resolve::Resolver;

/// The environment variable read by [`Config::from_env`].
pub const ENV_VAR: &str = "FLOTILLA_LOG";

/// Which syslog format a collector receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// RFC 5424, the structured syslog protocol (the default).
    Rfc5424,
    /// RFC 3164, the older BSD format (no structured data, 1024-byte limit).
    Rfc3164,
}

/// How messages are delimited on a stream transport (RFC 6587).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFraming {
    /// `LEN SP MSG`: transparent, the default and the only choice for TLS.
    OctetCounting,
    /// `MSG LF`: non-transparent; a line feed inside a message is replaced by a space.
    LineFeed,
}

/// The transport used to reach one collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One message per UDP datagram (RFC 5426), truncated to `max_size` bytes.
    Udp {
        /// Largest datagram sent; longer messages are truncated at the end.
        max_size: usize,
    },
    /// Plain TCP (RFC 6587).
    Tcp {
        /// Framing of each message.
        framing: StreamFraming,
    },
    /// TLS over TCP (RFC 5425): octet counting, rustls, certificate validation,
    /// optionally a client certificate (mutual TLS).
    Tls {
        /// PEM file with the CA certificates trusted for this collector.
        ca: PathBuf,
        /// The name checked against the collector's certificate (defaults to the host).
        server_name: String,
        /// The client certificate presented when the collector asks for one
        /// (mutual TLS); `None` sends none.
        client: Option<ClientIdentity>,
    },
    /// A local Unix datagram socket such as `/dev/log`.
    Unix {
        /// Largest datagram sent; longer messages are truncated at the end.
        max_size: usize,
    },
    /// RELP, rsyslog's acknowledged protocol: nothing is lost across a collector restart.
    Relp {
        /// Messages in flight without an acknowledgement.
        window: usize,
    },
}

impl Transport {
    /// The URL scheme of this transport (`udp`, `tcp`, `tls`, `unix`, `relp`).
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Udp { .. } => "udp",
            Transport::Tcp { .. } => "tcp",
            Transport::Tls { .. } => "tls",
            Transport::Unix { .. } => "unix",
            Transport::Relp { .. } => "relp",
        }
    }
}

/// A TLS client certificate and its private key, both PEM files: the logger's
/// identity towards collectors that require client certificates (mutual TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// PEM file with the client certificate, then any intermediate certificates.
    pub cert: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// One log collector: where it is, how to reach it, and in which format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collector {
    /// `host:port` for network transports, a socket path for `unix`.
    pub address: String,
    /// The transport and its settings.
    pub transport: Transport,
    /// The syslog format sent to this collector.
    pub format: Format,
}

/// What a full queue does with a new message. Either way the drop is counted and
/// reported later in one message ("dropped N messages").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropPolicy {
    /// Keep the newest messages: a full queue discards its oldest entry (the default:
    /// the last words before a crash matter most).
    DropOldest,
    /// Keep the oldest messages: a full queue refuses the new one.
    DropNewest,
}

/// The whole logger configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Collectors to choose from at random, with failover between them.
    pub collectors: Vec<Collector>,
    /// APP-NAME of every message (default: the executable's file name).
    pub app_name: Option<String>,
    /// The service's version, reported in the boot message.
    pub app_version: Option<String>,
    /// Add the `log`/`tracing` target as a `target` field of every message.
    pub include_target: bool,
    /// HOSTNAME of every message (default: the system host name).
    pub hostname: Option<String>,
    /// Facility of every message.
    pub facility: Facility,
    /// Least severe `log` level forwarded.
    pub max_level: log::LevelFilter,
    /// Capacity of the bounded queue between the application and the sender, in
    /// messages. It is also the buffer kept while no collector is reachable.
    pub queue_capacity: usize,
    /// What a full queue does.
    pub drop_policy: DropPolicy,
    /// Failover and reconnect backoff between collectors.
    pub backoff: BackoffConfig,
    /// Send a heartbeat message this often, so a log service can notice silence.
    pub heartbeat: Option<Duration>,
    /// Stamp messages with the system clock; `false` sends the NILVALUE timestamp
    /// (RFC 5424 requires it from hosts without a trustworthy clock).
    pub use_clock: bool,
    /// Bound on a connection attempt: host-name resolution, TCP connect, TLS
    /// handshake (and, when the collector asks for a client certificate, up to
    /// 300 ms waiting for it to refuse ours), RELP `open`.
    pub connect_timeout: Duration,
    /// Bound on one blocking write; a collector slower than this is failed over.
    pub write_timeout: Duration,
    /// Bound on delivering the "about to crash" message from the panic hook.
    pub crash_timeout: Duration,
    /// Include a backtrace summary in the crash message.
    pub crash_backtrace: bool,
    /// SD-ID of the element that carries `log`/`tracing` fields.
    pub fields_sd_id: String,
    /// SD-ID of the element that carries the fields of the `tracing` spans an
    /// event is in (see [`TracingLayer`](crate::TracingLayer)).
    pub span_sd_id: String,
    /// How collector host names are resolved (the system resolver by default);
    /// every lookup is bounded by `connect_timeout`.
    pub resolver: Resolver,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            collectors: Vec::new(),
            app_name: None,
            app_version: None,
            include_target: true,
            hostname: None,
            facility: Facility::User,
            max_level: log::LevelFilter::Info,
            queue_capacity: 16_384,
            drop_policy: DropPolicy::DropOldest,
            backoff: BackoffConfig::default(),
            heartbeat: None,
            use_clock: true,
            connect_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            crash_timeout: Duration::from_secs(2),
            crash_backtrace: true,
            fields_sd_id: "fields@32473".to_owned(),
            span_sd_id: "span@32473".to_owned(),
            resolver: Resolver::system(),
        }
    }
}

/// Longest timeout or period accepted (a day): beyond it, a typo, not a wish.
pub const MAX_PERIOD: Duration = Duration::from_secs(86_400);
/// Largest UDP payload (65,535 - 8 UDP - 20 IPv4 header bytes).
pub const MAX_UDP_SIZE: usize = 65_507;
/// Largest Unix datagram accepted as `max_size`.
pub const MAX_UNIX_SIZE: usize = 1 << 20;

/// Checks a collector built in code by the same rules as the URL parser.
fn check_collector(c: &Collector) -> Result<(), Error> {
    let bad = |why: String| {
        Err(Error::Collector {
            collector: c.address.clone(),
            reason: why,
        })
    };
    match &c.transport {
        Transport::Tls { ca, client, .. } => {
            let mut files = vec![("ca", ca)];
            if let Some(identity) = client {
                files.push(("cert", &identity.cert));
                files.push(("key", &identity.key));
            }
            for (what, path) in files {
                match std::fs::metadata(path) {
                    Ok(meta) if meta.is_file() => {}
                    Ok(_) => return bad(format!("tls {what}={} is not a file", path.display())),
                    Err(e) => return bad(format!("tls {what}={}: {e}", path.display())),
                }
            }
            check_host_port(&c.address).map_err(|e| Error::Collector {
                collector: c.address.clone(),
                reason: e.to_string(),
            })
        }
        Transport::Udp { max_size } if !(1..=MAX_UDP_SIZE).contains(max_size) => {
            bad(format!("udp max_size must be in 1..={MAX_UDP_SIZE}"))
        }
        Transport::Unix { max_size } if !(1..=MAX_UNIX_SIZE).contains(max_size) => {
            bad(format!("unix max_size must be in 1..={MAX_UNIX_SIZE}"))
        }
        Transport::Relp { window: 0 } => bad("relp window must be at least 1".into()),
        Transport::Unix { .. } if c.address.is_empty() => bad("unix socket path is empty".into()),
        Transport::Unix { .. } => Ok(()),
        _ => check_host_port(&c.address).map_err(|e| Error::Collector {
            collector: c.address.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Default RELP window.
pub const DEFAULT_RELP_WINDOW: usize = 1024;
/// Default largest UDP datagram: below the common 1500-byte Ethernet MTU, so no
/// IP fragmentation (RFC 5426 section 3.2).
pub const DEFAULT_UDP_MAX: usize = 1_400;
/// Default largest Unix datagram.
pub const DEFAULT_UNIX_MAX: usize = 8_192;

impl Config {
    /// A configuration with the given collectors and defaults for the rest.
    pub fn with_collectors(spec: &str) -> Result<Self, Error> {
        Ok(Self {
            collectors: parse_collectors(spec)?,
            ..Self::default()
        })
    }

    /// Reads the collectors from the `FLOTILLA_LOG` environment variable.
    /// A missing or empty variable is an error: a logger without a destination is
    /// a configuration mistake, not something to hide.
    pub fn from_env() -> Result<Self, Error> {
        let spec = std::env::var(ENV_VAR).map_err(|_| Error::EnvNotSet { var: ENV_VAR })?;
        Self::with_collectors(&spec)
    }

    /// Checks settings that do not come from a URL.
    pub fn validate(&self) -> Result<(), Error> {
        if self.collectors.is_empty() {
            return Err(Error::NoCollector { given: None });
        }
        if self.queue_capacity == 0 {
            return Err(Error::Setting {
                setting: "queue_capacity",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(period) = self.heartbeat
            && (period.is_zero() || period > MAX_PERIOD)
        {
            return Err(Error::Setting {
                setting: "heartbeat",
                reason: format!("period must be between 1 ns and {} s", MAX_PERIOD.as_secs()),
            });
        }
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if value.is_zero() || value > MAX_PERIOD {
                return Err(Error::Setting {
                    setting: name,
                    reason: format!("must be between 1 ns and {} s", MAX_PERIOD.as_secs()),
                });
            }
        }
        for c in &self.collectors {
            check_collector(c)?;
        }
        let mut probe =
            flotilla_syslog::Message::new(self.facility, flotilla_syslog::Severity::Notice, "");
        probe.structured_data.push(flotilla_syslog::SdElement {
            id: self.fields_sd_id.clone(),
            params: Vec::new(),
        });
        probe.validate().map_err(|e| Error::Setting {
            setting: "fields_sd_id",
            reason: format!("{:?} is not a valid SD-ID: {e}", self.fields_sd_id),
        })?;
        if let Some(element) = probe.structured_data.first_mut() {
            element.id.clone_from(&self.span_sd_id);
        }
        probe.validate().map_err(|e| Error::Setting {
            setting: "span_sd_id",
            reason: format!("{:?} is not a valid SD-ID: {e}", self.span_sd_id),
        })?;
        if self.span_sd_id == self.fields_sd_id {
            return Err(Error::Setting {
                setting: "span_sd_id",
                reason: format!(
                    "and fields_sd_id are both {:?}: an SD-ID may appear once per message",
                    self.span_sd_id
                ),
            });
        }
        // Load every TLS file now (certificates, keys, key/certificate match), so
        // a broken one is a start-up error, not a silent connection failure.
        for c in &self.collectors {
            crate::link::tls_client_config(&c.transport)?;
        }
        Ok(())
    }
}

/// Parses a comma-separated list of collector URLs.
///
/// Schemes: `udp`, `tcp`, `tls`, `relp`, `unix`. Query parameters:
/// `format=5424|3164` (all), `framing=octet|lf` (tcp), `max_size=N` (udp, unix),
/// `ca=PATH`, `name=DNSNAME`, `cert=PATH` and `key=PATH` (tls; `cert` and `key`
/// go together: a client certificate for collectors that require one),
/// `window=N` (relp).
pub fn parse_collectors(spec: &str) -> Result<Vec<Collector>, Error> {
    let mut out = Vec::new();
    for item in spec.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        out.push(parse_collector(item)?);
    }
    if out.is_empty() {
        return Err(Error::NoCollector {
            given: Some(spec.to_owned()),
        });
    }
    Ok(out)
}

/// Parses one collector URL, e.g. `tls://logs.example:6514?ca=/etc/ca.pem`.
pub fn parse_collector(url: &str) -> Result<Collector, Error> {
    let bad = |why: String| Error::Collector {
        collector: url.to_owned(),
        reason: why,
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected SCHEME://ADDRESS (udp, tcp, tls, relp or unix)".into()))?;
    let (address, query) = match rest.split_once('?') {
        Some((a, q)) => (a, q),
        None => (rest, ""),
    };
    let mut params: Vec<(&str, &str)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad(format!("query parameter {pair:?} has no '='")))?;
        if params.iter().any(|(seen, _)| *seen == k) {
            return Err(bad(format!("query parameter {k:?} given twice")));
        }
        params.push((k, v));
    }
    let take = |params: &mut Vec<(&str, &str)>, key: &str| -> Option<String> {
        let pos = params.iter().position(|(k, _)| *k == key)?;
        Some(params.remove(pos).1.to_owned())
    };
    let parse_usize = |key: &str, value: String| -> Result<usize, Error> {
        value
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad(format!("{key}={value:?} is not a positive integer")))
    };

    let format = match take(&mut params, "format").as_deref() {
        None | Some("5424") | Some("rfc5424") => Format::Rfc5424,
        Some("3164") | Some("rfc3164") | Some("bsd") => Format::Rfc3164,
        Some(other) => return Err(bad(format!("format={other:?}: expected 5424 or 3164"))),
    };
    if !matches!(scheme, "udp" | "tcp" | "tls" | "relp" | "unix") {
        return Err(bad(format!(
            "unknown scheme {scheme:?}: expected udp, tcp, tls, relp or unix"
        )));
    }
    let is_unix = scheme == "unix";
    if !is_unix {
        check_host_port(address).map_err(bad)?;
    } else if address.is_empty() {
        return Err(bad("unix socket path is empty".into()));
    }
    let transport = match scheme {
        "udp" => Transport::Udp {
            max_size: match take(&mut params, "max_size") {
                Some(v) => parse_usize("max_size", v)?,
                None => DEFAULT_UDP_MAX,
            },
        },
        "unix" => Transport::Unix {
            max_size: match take(&mut params, "max_size") {
                Some(v) => parse_usize("max_size", v)?,
                None => DEFAULT_UNIX_MAX,
            },
        },
        "tcp" => Transport::Tcp {
            framing: match take(&mut params, "framing").as_deref() {
                None | Some("octet") | Some("octet-counting") => StreamFraming::OctetCounting,
                Some("lf") => StreamFraming::LineFeed,
                Some(other) => {
                    return Err(bad(format!("framing={other:?}: expected octet or lf")));
                }
            },
        },
        "tls" => {
            let ca = take(&mut params, "ca").map(PathBuf::from).ok_or_else(|| {
                bad("tls needs ca=PATH (a PEM file of trusted CA certificates)".into())
            })?;
            if let Err(e) = std::fs::metadata(&ca) {
                return Err(bad(format!("ca={}: {e}", ca.display())));
            }
            let server_name = match take(&mut params, "name") {
                Some(n) => n,
                None => host_of(address).to_owned(),
            };
            let client = match (take(&mut params, "cert"), take(&mut params, "key")) {
                (None, None) => None,
                (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
                    Some(ClientIdentity {
                        cert: PathBuf::from(cert),
                        key: PathBuf::from(key),
                    })
                }
                (Some(_), Some(_)) => {
                    return Err(bad("tls cert= and key= must not be empty".into()));
                }
                (Some(_), None) => {
                    return Err(bad(
                        "tls cert=PATH needs key=PATH (the client certificate's private key)"
                            .into(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(bad(
                        "tls key=PATH needs cert=PATH (the client certificate)".into()
                    ));
                }
            };
            Transport::Tls {
                ca,
                server_name,
                client,
            }
        }
        "relp" => Transport::Relp {
            window: match take(&mut params, "window") {
                Some(v) => parse_usize("window", v)?,
                None => DEFAULT_RELP_WINDOW,
            },
        },
        other => {
            return Err(bad(format!(
                "unknown scheme {other:?}: expected udp, tcp, tls, relp or unix"
            )));
        }
    };
    if let Some((k, _)) = params.first() {
        return Err(bad(format!("unknown query parameter {k:?} for {scheme}")));
    }
    let collector = Collector {
        address: address.to_owned(),
        transport,
        format,
    };
    check_collector(&collector).map_err(|e| match e {
        Error::Collector { reason, .. } => bad(reason),
        other => other,
    })?;
    Ok(collector)
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(address: &str) -> &str {
    let host = match address.rsplit_once(':') {
        Some((h, _)) => h,
        None => address,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

fn check_host_port(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("address {address:?} needs a port (HOST:PORT)"))?;
    if host.is_empty() {
        return Err(format!("address {address:?} has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("port {port:?} is not a number in 1..=65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let spec = format!(
            "relp://10.0.0.5:2514,tls://logs.example:6514?ca={}",
            ca.path().display()
        );
        let list = parse_collectors(&spec).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].address, "10.0.0.5:2514");
        assert_eq!(
            list[0].transport,
            Transport::Relp {
                window: DEFAULT_RELP_WINDOW
            }
        );
        match &list[1].transport {
            Transport::Tls {
                ca: path,
                server_name,
                client,
            } => {
                assert_eq!(path, ca.path());
                assert_eq!(server_name, "logs.example");
                assert_eq!(client, &None);
            }
            other => panic!("expected tls, got {other:?}"),
        }
    }

    #[test]
    fn every_scheme_and_parameter() {
        let c = parse_collector("udp://[::1]:514?max_size=512&format=3164").unwrap();
        assert_eq!(c.transport, Transport::Udp { max_size: 512 });
        assert_eq!(c.format, Format::Rfc3164);
        let c = parse_collector("tcp://127.0.0.1:601?framing=lf").unwrap();
        assert_eq!(
            c.transport,
            Transport::Tcp {
                framing: StreamFraming::LineFeed
            }
        );
        let c = parse_collector("unix:///dev/log").unwrap();
        assert_eq!(c.address, "/dev/log");
        assert_eq!(
            c.transport,
            Transport::Unix {
                max_size: DEFAULT_UNIX_MAX
            }
        );
        let c = parse_collector("relp://h:1?window=7").unwrap();
        assert_eq!(c.transport, Transport::Relp { window: 7 });
    }

    #[test]
    fn mistakes_are_loud() {
        for bad in [
            "",
            "tcp://host",
            "tcp://:514",
            "tcp://host:0",
            "tcp://host:99999",
            "ftp://host:1",
            "host:514",
            "tcp://h:1?framing=nul",
            "tcp://h:1?frameing=lf",
            "tcp://h:1?format=json",
            "udp://h:1?max_size=0",
            "udp://h:1?max_size=70000",
            "udp://h:1?max_size=12&max_size=13",
            "tls://h:1",
            "tls://h:1?ca=/nonexistent/ca.pem",
            "relp://h:1?window=x",
            "tcp://h:1?lf",
        ] {
            let err = parse_collectors(bad).expect_err(bad);
            let text = err.to_string();
            assert!(!text.is_empty(), "{bad}");
        }
    }

    /// A CA, two certificates and their keys as PEM files.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for name in ["a", "b"] {
                let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
                std::fs::write(dir.path().join(format!("{name}.pem")), c.cert.pem()).unwrap();
                std::fs::write(
                    dir.path().join(format!("{name}.key")),
                    c.key_pair.serialize_pem(),
                )
                .unwrap();
            }
            std::fs::write(dir.path().join("junk.pem"), "not pem at all").unwrap();
            Self { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }
    }

    #[test]
    fn tls_client_certificate_parameters() {
        let f = Files::new();
        let url = format!(
            "tls://logs.example:6514?ca={}&cert={}&key={}",
            f.path("a.pem"),
            f.path("b.pem"),
            f.path("b.key")
        );
        let c = parse_collector(&url).unwrap();
        let Transport::Tls { client, .. } = &c.transport else {
            panic!("expected tls, got {c:?}");
        };
        assert_eq!(
            client,
            &Some(ClientIdentity {
                cert: f.path("b.pem").into(),
                key: f.path("b.key").into(),
            })
        );
        let config = Config {
            collectors: vec![c],
            ..Config::default()
        };
        config.validate().unwrap();
    }

    #[test]
    fn tls_client_certificate_mistakes_are_loud() {
        let f = Files::new();
        let ca = f.path("a.pem");
        for (url, why) in [
            (
                format!("tls://h:1?ca={ca}&cert={}", f.path("b.pem")),
                "needs key",
            ),
            (
                format!("tls://h:1?ca={ca}&key={}", f.path("b.key")),
                "needs cert",
            ),
            (format!("tls://h:1?ca={ca}&cert=&key="), "must not be empty"),
            (
                format!(
                    "tls://h:1?ca={ca}&cert={}&key={}",
                    f.path("nope.pem"),
                    f.path("b.key")
                ),
                "cert=",
            ),
            (
                format!(
                    "tls://h:1?ca={ca}&cert={}&key={}",
                    f.path("b.pem"),
                    f.path("nope.key")
                ),
                "key=",
            ),
            (
                format!(
                    "tls://h:1?ca={ca}&cert={}&key={}",
                    f.dir.path().display(),
                    f.path("b.key")
                ),
                "not a file",
            ),
        ] {
            let err = parse_collector(&url).expect_err(&url).to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
        // Files that exist but are wrong fail in validate (and so at start-up).
        let client = |cert: &str, key: &str| Config {
            collectors: vec![Collector {
                address: "h:1".into(),
                transport: Transport::Tls {
                    ca: ca.clone().into(),
                    server_name: "h".into(),
                    client: Some(ClientIdentity {
                        cert: f.path(cert).into(),
                        key: f.path(key).into(),
                    }),
                },
                format: Format::Rfc5424,
            }],
            ..Config::default()
        };
        for (cert, key, why) in [
            ("b.pem", "a.key", "do not go together"),
            ("junk.pem", "b.key", "no PEM certificate"),
            ("b.pem", "junk.pem", "no PEM private key"),
            ("b.pem", "nope.key", "nope.key"),
        ] {
            let err = client(cert, key).validate().expect_err(cert).to_string();
            assert!(err.contains(why), "{cert} {key}: {err}");
        }
        client("b.pem", "b.key").validate().unwrap();
    }

    #[test]
    fn validate_rejects_empty_and_bad_settings() {
        let mut c = Config::default();
        assert!(c.validate().is_err());
        c.collectors = parse_collectors("udp://127.0.0.1:514").unwrap();
        c.validate().unwrap();
        c.queue_capacity = 0;
        assert!(c.validate().is_err());
        c.queue_capacity = 1;
        c.fields_sd_id = "bad id".into();
        assert!(c.validate().is_err());
        c.fields_sd_id = "fields@32473".into();
        c.validate().unwrap();
        c.span_sd_id = "bad]id".into();
        assert!(c.validate().is_err());
        c.span_sd_id = "fields@32473".into();
        assert!(c.validate().is_err(), "same SD-ID as the fields");
        c.span_sd_id = "span@32473".into();
        c.validate().unwrap();
        for broken in [
            Config {
                connect_timeout: Duration::ZERO,
                ..c.clone()
            },
            Config {
                write_timeout: Duration::MAX,
                ..c.clone()
            },
            Config {
                heartbeat: Some(Duration::MAX),
                ..c.clone()
            },
            Config {
                collectors: vec![Collector {
                    address: "h:1".into(),
                    transport: Transport::Udp { max_size: 0 },
                    format: Format::Rfc5424,
                }],
                ..c.clone()
            },
            Config {
                collectors: vec![Collector {
                    address: "h:1".into(),
                    transport: Transport::Relp { window: 0 },
                    format: Format::Rfc5424,
                }],
                ..c.clone()
            },
            Config {
                collectors: vec![Collector {
                    address: "no-port".into(),
                    transport: Transport::Tcp {
                        framing: StreamFraming::LineFeed,
                    },
                    format: Format::Rfc5424,
                }],
                ..c.clone()
            },
        ] {
            assert!(broken.validate().is_err(), "{broken:?}");
        }
    }
}
