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
    /// Severity: emerg, alert, crit, err, warning, notice, info, debug.
    #[arg(long, default_value = "notice")]
    severity: String,
    /// Facility: kern, user, mail, daemon, auth, syslog, ..., local0-local7.
    #[arg(long, default_value = "user")]
    facility: String,
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
    /// The message.
    message: String,
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
    let severity = Severity::from_name(&args.severity)
        .with_context(|| format!("unknown severity {:?}", args.severity))?;
    let facility = Facility::from_name(&args.facility)
        .with_context(|| format!("unknown facility {:?}", args.facility))?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let sd = parse_sd(&args.sd)?;
    let mut config = Config::with_collectors(&args.to)?;
    config.app_name = Some(args.app.clone());
    config.hostname = args.hostname.clone();
    config.facility = facility;
    config.use_clock = !args.no_clock;
    config.queue_capacity = config.queue_capacity.max(args.count.min(1 << 20) as usize);
    let logger = Logger::start(config)?;
    for i in 0..args.count {
        let mut elements = sd.clone();
        if args.count > 1 {
            elements.push(SdElement {
                id: "meta".into(),
                params: vec![SdParam {
                    name: "sequenceId".into(),
                    value: (i + 1).to_string(),
                }],
            });
        }
        logger.log_message(severity, args.msgid.as_deref(), &args.message, elements);
    }
    let delivered = logger.shutdown(Duration::from_secs_f64(args.timeout));
    let stats = logger.stats();
    if !delivered {
        bail!(
            "not everything was delivered within {} s: {} of {} delivered, {} dropped, {} connection failures",
            args.timeout,
            stats.delivered,
            stats.enqueued,
            stats.dropped,
            stats.failures
        );
    }
    eprintln!(
        "flotilla log: {} delivered, {} dropped",
        stats.delivered, stats.dropped
    );
    Ok(())
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
}
