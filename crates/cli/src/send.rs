//! `flotilla log`: sends messages through the flotilla logger from the command
//! line, then flushes and reports what was delivered.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_logger::{Config, Facility, Logger, Severity};
use flotilla_syslog::{SdElement, SdParam};

/// Arguments of `flotilla log`.
#[derive(clap::Args, Debug)]
pub struct LogArgs {
    /// Collectors: URL[,URL...], e.g. relp://127.0.0.1:2514,tcp://127.0.0.1:601?framing=lf.
    /// Schemes udp, tcp, tls (?ca=PEM&name=DNS&cert=PEM&key=PEM), relp, unix; ?format=5424|3164.
    #[arg(long, env = "FLOTILLA_LOG")]
    to: String,
    /// APP-NAME.
    #[arg(long, default_value = "flotilla-log")]
    app: String,
    /// HOSTNAME (default: this host's name).
    #[arg(long)]
    hostname: Option<String>,
    /// Severity: emerg, alert, crit, err, warning, notice, info, debug, or 0-7.
    #[arg(long, default_value = "notice")]
    severity: String,
    /// Facility: kern, user, mail, daemon, auth, syslog, ..., local0-local7, or 0-23.
    #[arg(long, default_value = "user")]
    facility: String,
    /// Priority as logger(1) takes it: FACILITY.LEVEL (`local0.warning`, `16.4`) or the
    /// numeric PRI (0-191); sets both --facility and --severity.
    #[arg(short = 'p', long, conflicts_with_all = ["severity", "facility"])]
    priority: Option<String>,
    /// MSGID.
    #[arg(long)]
    msgid: Option<String>,
    /// Structured data parameter ID:NAME=VALUE (repeatable; same ID = same element).
    #[arg(long = "sd")]
    sd: Vec<String>,
    /// Send the message this many times (with a `seq` parameter in [meta]).
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Send the NILVALUE timestamp (for hosts without a trustworthy clock).
    #[arg(long)]
    no_clock: bool,
    /// Longest wait for delivery before giving up, in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// The message: its words joined by spaces, as logger(1) does. Without one, or with
    /// `-`, every non-empty line of standard input is a message.
    message: Vec<String>,
}

/// A severity by name (see `--severity`) or number 0-7; the error lists the valid ones.
fn parse_severity(text: &str) -> Result<Severity> {
    if let Ok(code) = text.parse::<u8>() {
        return Severity::from_code(code).with_context(|| format!("severity {code}: expected 0-7"));
    }
    Severity::from_name(text).with_context(|| {
        let names: Vec<&str> = Severity::ALL.iter().map(|s| s.name()).collect();
        format!(
            "unknown severity {text:?}: expected one of {} or 0-7",
            names.join(", ")
        )
    })
}

/// A facility by name (see `--facility`) or number 0-23; the error lists the valid ones.
fn parse_facility(text: &str) -> Result<Facility> {
    if let Ok(code) = text.parse::<u8>() {
        return Facility::from_code(code)
            .with_context(|| format!("facility {code}: expected 0-23"));
    }
    Facility::from_name(text).with_context(|| {
        let names: Vec<&str> = Facility::ALL.iter().map(|f| f.name()).collect();
        format!(
            "unknown facility {text:?}: expected one of {} or 0-23",
            names.join(", ")
        )
    })
}

/// `-p`: `FACILITY.LEVEL` or a numeric PRI.
fn parse_priority(text: &str) -> Result<(Facility, Severity)> {
    if let Ok(pri) = text.parse::<u16>() {
        let (facility, severity) = u8::try_from(pri)
            .ok()
            .and_then(flotilla_syslog::split_priority)
            .with_context(|| format!("-p {pri}: a numeric priority is 0-191"))?;
        return Ok((facility, severity));
    }
    let (facility, level) = text.split_once('.').with_context(|| {
        format!("-p {text:?}: expected FACILITY.LEVEL (e.g. local0.warning) or 0-191")
    })?;
    Ok((parse_facility(facility)?, parse_severity(level)?))
}

/// Parses `ID:NAME=VALUE` items into elements, merging items with the same ID.
pub fn parse_sd(items: &[String]) -> Result<Vec<SdElement>> {
    let mut elements: Vec<SdElement> = Vec::new();
    for item in items {
        let (id, param) = item
            .split_once(':')
            .with_context(|| format!("--sd {item:?}: expected ID:NAME=VALUE"))?;
        let (name, value) = param
            .split_once('=')
            .with_context(|| format!("--sd {item:?}: expected ID:NAME=VALUE"))?;
        let param = SdParam {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        match elements.iter_mut().find(|e| e.id == id) {
            Some(e) => e.params.push(param),
            None => elements.push(SdElement {
                id: id.to_owned(),
                params: vec![param],
            }),
        }
    }
    // Invalid names are a loud error here: the user typed them.
    for e in &elements {
        let mut probe = flotilla_syslog::Message::new(Facility::User, Severity::Notice, "");
        probe.structured_data.push(e.clone());
        probe
            .validate()
            .with_context(|| format!("--sd element {:?} is not valid RFC 5424", e.id))?;
    }
    Ok(elements)
}

/// Runs `flotilla log`.
pub fn run(args: LogArgs) -> Result<()> {
    let (facility, severity) = match &args.priority {
        Some(p) => parse_priority(p)?,
        None => (
            parse_facility(&args.facility)?,
            parse_severity(&args.severity)?,
        ),
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let sd = parse_sd(&args.sd)?;
    // No message, or `-`: every non-empty line of standard input, sent as it is read.
    let from_stdin = args.message.is_empty() || args.message == ["-"];
    let numbered = from_stdin || args.count > 1;
    let mut config = Config::with_collectors(&args.to)?;
    config.app_name = Some(args.app.clone());
    config.hostname = args.hostname.clone();
    config.facility = facility;
    config.use_clock = !args.no_clock;
    config.queue_capacity = config.queue_capacity.max(args.count.min(1 << 20) as usize);
    let capacity = config.queue_capacity as u64;
    let logger = Logger::start(config)?;
    let mut sequence = 0u64;
    let mut send = |message: &str| {
        for _ in 0..args.count {
            sequence += 1;
            let mut elements = sd.clone();
            if numbered {
                elements.push(SdElement {
                    id: "meta".into(),
                    params: vec![SdParam {
                        name: "sequenceId".into(),
                        value: sequence.to_string(),
                    }],
                });
            }
            logger.log_message(severity, args.msgid.as_deref(), message, elements);
        }
    };
    if from_stdin {
        for line in std::io::stdin().lines() {
            let line = line.context("reading standard input")?;
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            send(line);
            // A pipe can outrun the collectors: wait rather than let the queue overflow.
            let st = logger.stats();
            if st.enqueued.saturating_sub(st.delivered + st.dropped) > capacity / 2 {
                logger.flush(Duration::from_secs_f64(args.timeout));
            }
        }
    } else {
        send(&args.message.join(" "));
    }
    let delivered = logger.shutdown(Duration::from_secs_f64(args.timeout));
    let stats = logger.stats();
    if delivered && stats.maybe_unread > 0 {
        bail!(
            "{} delivered, {} dropped, but the collector reset the connection after its TCP took {} of them, so it may not have read those{}",
            stats.delivered,
            stats.dropped,
            stats.maybe_unread,
            delivery_kinds(&stats),
        );
    }
    if !delivered {
        let last = logger
            .last_failure()
            .map_or_else(String::new, |f| format!("; last failure: {f}"));
        bail!(
            "not everything was delivered within {} s: {} of {} delivered, {} dropped, {} connection failures{last}{}",
            args.timeout,
            stats.delivered,
            stats.enqueued,
            stats.dropped,
            stats.failures,
            delivery_kinds(&stats),
        );
    }
    eprintln!(
        "flotilla log: {} delivered, {} dropped{}",
        stats.delivered,
        stats.dropped,
        delivery_kinds(&stats),
    );
    Ok(())
}

/// What "delivered" meant, kind by kind (only the kinds that occurred), as a tail
/// `; of the delivered: ...`:
/// a TCP collector's TCP taking a message is not the collector acknowledging it, and a
/// datagram is sent without any feedback.
fn delivery_kinds(stats: &flotilla_logger::Stats) -> String {
    let mut parts = Vec::new();
    if stats.acknowledged > 0 {
        parts.push(format!(
            "{} acknowledged by the collector (RELP)",
            stats.acknowledged
        ));
    }
    if stats.taken_by_tcp > 0 {
        parts.push(format!(
            "{} taken by the collector's TCP (not acknowledged by the collector: plain syslog has no acknowledgements)",
            stats.taken_by_tcp
        ));
    }
    if stats.written > 0 {
        parts.push(format!(
            "{} written to the socket (this system cannot tell what the collector's TCP took)",
            stats.written
        ));
    }
    if stats.sent > 0 {
        let truncated = match stats.truncated {
            0 => String::new(),
            t => format!(", {t} of them truncated to the datagram size limit"),
        };
        parts.push(format!(
            "{} sent as datagrams, without feedback{truncated}",
            stats.sent
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; of the delivered: {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_items_merge_by_id_and_bad_names_are_refused() {
        let sd = parse_sd(&[
            "origin:ip=10.0.0.1".into(),
            "meta:sequenceId=1".into(),
            "origin:software=a=b".into(),
        ])
        .unwrap();
        assert_eq!(sd.len(), 2);
        assert_eq!(sd[0].params.len(), 2);
        assert_eq!(sd[0].params[1].value, "a=b");
        assert!(parse_sd(&["no-colon".into()]).is_err());
        assert!(parse_sd(&["id:novalue".into()]).is_err());
        assert!(parse_sd(&["bad id:x=1".into()]).is_err());
    }

    #[test]
    fn priorities_as_logger_1_takes_them() {
        assert_eq!(
            parse_priority("local0.warning").unwrap(),
            (Facility::Local0, Severity::Warning)
        );
        assert_eq!(
            parse_priority("16.4").unwrap(),
            (Facility::Local0, Severity::Warning)
        );
        assert_eq!(
            parse_priority("134").unwrap(),
            (Facility::Local0, Severity::Informational)
        );
        assert_eq!(parse_severity("3").unwrap(), Severity::Error);
        for bad in ["192", "local0", "local9.info", "user.loud"] {
            assert!(parse_priority(bad).is_err(), "{bad}");
        }
        let e = parse_severity("loud").unwrap_err().to_string();
        assert!(
            e.contains("emerg") && e.contains("debug") && e.contains("0-7"),
            "{e}"
        );
        assert!(parse_severity("8").is_err());
    }
}
