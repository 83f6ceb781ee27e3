//! Facility and severity: the two halves of the syslog PRI value (`facility * 8 + severity`).

/// Syslog facility (RFC 5424 table 1), codes 0-23.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Facility {
    /// 0: kernel messages.
    Kern = 0,
    /// 1: user-level messages.
    User,
    /// 2: mail system.
    Mail,
    /// 3: system daemons.
    Daemon,
    /// 4: security/authorization messages.
    Auth,
    /// 5: messages generated internally by syslogd.
    Syslog,
    /// 6: line printer subsystem.
    Lpr,
    /// 7: network news subsystem.
    News,
    /// 8: UUCP subsystem.
    Uucp,
    /// 9: clock daemon.
    Cron,
    /// 10: security/authorization messages (private).
    AuthPriv,
    /// 11: FTP daemon.
    Ftp,
    /// 12: NTP subsystem.
    Ntp,
    /// 13: log audit.
    Audit,
    /// 14: log alert.
    Alert,
    /// 15: clock daemon (note 2).
    Clock,
    /// 16: local use 0.
    Local0,
    /// 17: local use 1.
    Local1,
    /// 18: local use 2.
    Local2,
    /// 19: local use 3.
    Local3,
    /// 20: local use 4.
    Local4,
    /// 21: local use 5.
    Local5,
    /// 22: local use 6.
    Local6,
    /// 23: local use 7.
    Local7,
}

const FACILITIES: [Facility; 24] = [
    Facility::Kern,
    Facility::User,
    Facility::Mail,
    Facility::Daemon,
    Facility::Auth,
    Facility::Syslog,
    Facility::Lpr,
    Facility::News,
    Facility::Uucp,
    Facility::Cron,
    Facility::AuthPriv,
    Facility::Ftp,
    Facility::Ntp,
    Facility::Audit,
    Facility::Alert,
    Facility::Clock,
    Facility::Local0,
    Facility::Local1,
    Facility::Local2,
    Facility::Local3,
    Facility::Local4,
    Facility::Local5,
    Facility::Local6,
    Facility::Local7,
];

const FACILITY_NAMES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

impl Facility {
    /// All 24 facilities in code order.
    pub const ALL: [Facility; 24] = FACILITIES;

    /// The facility with this numeric code (0-23).
    pub fn from_code(code: u8) -> Option<Self> {
        FACILITIES.get(usize::from(code)).copied()
    }

    /// The numeric code (0-23).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The conventional lowercase name: `"kern"`, `"user"`, ... `"local7"`.
    pub fn name(self) -> &'static str {
        FACILITY_NAMES
            .get(usize::from(self.code()))
            .copied()
            .unwrap_or("user")
    }

    /// Parses a name as given by [`Facility::name`] (ASCII case-insensitive); also
    /// accepts `"security"` (old alias of auth) and `"cron"`/`"clock"` as their own.
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("security") {
            return Some(Facility::Auth);
        }
        FACILITY_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| FACILITIES.get(i).copied())
    }
}

/// Syslog severity (RFC 5424 table 2), codes 0-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Severity {
    /// 0: system is unusable.
    Emergency = 0,
    /// 1: action must be taken immediately.
    Alert,
    /// 2: critical conditions.
    Critical,
    /// 3: error conditions.
    Error,
    /// 4: warning conditions.
    Warning,
    /// 5: normal but significant condition.
    Notice,
    /// 6: informational messages.
    Informational,
    /// 7: debug-level messages.
    Debug,
}

const SEVERITIES: [Severity; 8] = [
    Severity::Emergency,
    Severity::Alert,
    Severity::Critical,
    Severity::Error,
    Severity::Warning,
    Severity::Notice,
    Severity::Informational,
    Severity::Debug,
];

const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

impl Severity {
    /// All 8 severities in code order (most severe first).
    pub const ALL: [Severity; 8] = SEVERITIES;

    /// The severity with this numeric code (0-7).
    pub fn from_code(code: u8) -> Option<Self> {
        SEVERITIES.get(usize::from(code)).copied()
    }

    /// The numeric code (0-7).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The conventional short name: `"emerg"`, `"alert"`, `"crit"`, `"err"`,
    /// `"warning"`, `"notice"`, `"info"`, `"debug"`.
    pub fn name(self) -> &'static str {
        SEVERITY_NAMES
            .get(usize::from(self.code()))
            .copied()
            .unwrap_or("notice")
    }

    /// Parses a short name (see [`Severity::name`]) or one of the long forms
    /// `"emergency"`, `"panic"`, `"critical"`, `"error"`, `"warn"`, `"informational"`
    /// (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        const ALIASES: [(&str, Severity); 6] = [
            ("emergency", Severity::Emergency),
            ("panic", Severity::Emergency),
            ("critical", Severity::Critical),
            ("error", Severity::Error),
            ("warn", Severity::Warning),
            ("informational", Severity::Informational),
        ];
        if let Some(i) = SEVERITY_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
        {
            return SEVERITIES.get(i).copied();
        }
        ALIASES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, s)| s)
    }
}

/// The PRI value `facility * 8 + severity` (0-191).
pub fn priority_value(facility: Facility, severity: Severity) -> u8 {
    facility.code() * 8 + severity.code()
}

/// Splits a PRI value (0-191) into facility and severity.
pub fn split_priority(value: u8) -> Option<(Facility, Severity)> {
    Some((
        Facility::from_code(value / 8)?,
        Severity::from_code(value % 8)?,
    ))
}
