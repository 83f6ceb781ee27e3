//! The messages every sealed service must send: "booted and awake" with its IP
//! configuration, and "about to crash" from the panic hook.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::panic::PanicHookInfo;

use flotilla_syslog::{SdElement, SdParam, Severity};

use crate::PEN_SUFFIX;
use crate::logger::{Logger, ReentrancyGuard};
use crate::record::Record;

/// Longest backtrace summary put into a crash message.
const BACKTRACE_MAX: usize = 2048;
/// Most backtrace frames summarised.
const BACKTRACE_FRAMES: usize = 24;

/// The host's interfaces and addresses as `(interface, address/prefix)` pairs,
/// loopback included, sorted by interface name. Empty if they cannot be read.
pub fn ip_configuration() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .map(|iface| {
                let addr = match &iface.addr {
                    if_addrs::IfAddr::V4(v4) => format!("{}/{}", v4.ip, v4.prefixlen),
                    if_addrs::IfAddr::V6(v6) => format!("{}/{}", v6.ip, v6.prefixlen),
                };
                (iface.name, addr)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Builds the boot message.
pub(crate) fn boot_record(logger: &Logger) -> Record {
    let config = logger.config();
    let app = config
        .app_name
        .clone()
        .or_else(crate::sender::default_app_name)
        .unwrap_or_else(|| "-".into());
    let version = config
        .app_version
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let host = config
        .hostname
        .clone()
        .or_else(crate::sender::default_hostname)
        .unwrap_or_else(|| "-".into());
    let pid = std::process::id();
    let ips = ip_configuration();
    let mut text = format!("booted and awake: {app} {version} on {host}, pid {pid}, ip");
    if ips.is_empty() {
        text.push_str(" unknown");
    }
    for (iface, addr) in &ips {
        let _ = write!(text, " {iface}={addr}");
    }
    let time = config.use_clock.then(std::time::SystemTime::now);
    let mut record = Record::new(Severity::Notice, time, text);
    record.msg_id = Some(Cow::Borrowed("BOOT"));
    record.extra_sd.push(SdElement {
        id: format!("boot{PEN_SUFFIX}"),
        params: vec![
            param("version", version),
            param("hostname", host),
            param("pid", pid.to_string()),
            param("logger", env!("CARGO_PKG_VERSION").to_owned()),
        ],
    });
    // One parameter per address, named after its interface (RFC 5424 allows a
    // PARAM-NAME to repeat within an element).
    record.extra_sd.push(SdElement {
        id: format!("ip{PEN_SUFFIX}"),
        params: ips
            .into_iter()
            .map(|(name, value)| SdParam { name, value })
            .collect(),
    });
    record
}

/// Installs a panic hook that sends "about to crash" with the panic message, its
/// location, the thread and a backtrace summary, and waits (at most the configured
/// `crash_timeout`) until it is delivered. The previous hook runs afterwards.
///
/// A re-entrancy guard makes a panic inside the logger (or inside the hook) skip
/// the report instead of recursing.
pub fn install_panic_hook(logger: Logger) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(_guard) = ReentrancyGuard::enter() {
            let record = crash_record(&logger, info);
            logger.enqueue_urgent(record);
            logger.flush(logger.config().crash_timeout);
        }
        previous(info);
    }));
}

fn crash_record(logger: &Logger, info: &PanicHookInfo<'_>) -> Record {
    let payload = info.payload();
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(panic payload is not a string)".to_owned()
    };
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_else(|| "unknown".to_owned());
    let thread = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned();
    let mut params = vec![
        param("message", message.clone()),
        param("location", location.clone()),
        param("thread", thread.clone()),
    ];
    if logger.config().crash_backtrace {
        params.push(param("backtrace", backtrace_summary()));
    }
    let text = format!("about to crash: panic in thread '{thread}' at {location}: {message}");
    let time = logger.config().use_clock.then(std::time::SystemTime::now);
    let mut record = Record::new(Severity::Critical, time, text);
    record.msg_id = Some(Cow::Borrowed("CRASH"));
    record.extra_sd.push(SdElement {
        id: format!("crash{PEN_SUFFIX}"),
        params,
    });
    record
}

/// The first frames of the current backtrace, one `function (file:line)` per
/// frame separated by " | ", without the panic machinery's own frames.
fn backtrace_summary() -> String {
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    let mut out = String::new();
    let mut frames = 0;
    let mut lines = trace.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        // Frames look like "12: crate::function" followed by "at src/file.rs:10:5".
        let Some((_, function)) = line.split_once(": ") else {
            continue;
        };
        if !line.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let at = lines
            .peek()
            .filter(|next| next.starts_with("at "))
            .map(|next| next.trim_start_matches("at ").to_owned());
        if is_machinery(function) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(" | ");
        }
        out.push_str(function);
        if let Some(at) = at {
            let _ = write!(out, " ({at})");
        }
        frames += 1;
        if frames >= BACKTRACE_FRAMES || out.len() >= BACKTRACE_MAX {
            break;
        }
    }
    if out.len() > BACKTRACE_MAX {
        let mut cut = BACKTRACE_MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    if out.is_empty() {
        out.push_str("unavailable");
    }
    out
}

fn is_machinery(function: &str) -> bool {
    const SKIP: [&str; 8] = [
        "std::backtrace",
        "std::panicking",
        "std::panic",
        "core::panicking",
        "core::panic",
        "rust_begin_unwind",
        "flotilla_logger::lifecycle",
        "<alloc::boxed::Box<F,A> as core::ops::function::Fn",
    ];
    SKIP.iter().any(|p| function.starts_with(p))
}

fn param(name: &str, value: String) -> SdParam {
    SdParam {
        name: name.to_owned(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_configuration_includes_loopback() {
        let ips = ip_configuration();
        assert!(
            ips.iter().any(|(_, a)| a == "127.0.0.1/8"),
            "loopback missing from {ips:?}"
        );
    }

    #[test]
    fn backtrace_summary_is_bounded_and_skips_machinery() {
        let s = backtrace_summary();
        assert!(s.len() <= BACKTRACE_MAX);
        assert!(!s.contains("std::backtrace"), "{s}");
    }
}
