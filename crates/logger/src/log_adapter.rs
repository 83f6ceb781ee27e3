//! The [`log::Log`] implementation: `log::info!(user = 42; "msg")` becomes one
//! queued record whose key-values become structured-data parameters.

use std::fmt::Write as _;

use flotilla_syslog::Severity;

use crate::logger::Logger;
use crate::record::{FieldName, Record};

/// Maps a `log` level to a syslog severity.
pub(crate) fn severity_of(level: log::Level) -> Severity {
    match level {
        log::Level::Error => Severity::Error,
        log::Level::Warn => Severity::Warning,
        log::Level::Info => Severity::Informational,
        log::Level::Debug | log::Level::Trace => Severity::Debug,
    }
}

struct KeyValues<'r> {
    record: &'r mut Record,
}

impl<'kvs> log::kv::VisitSource<'kvs> for KeyValues<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let name = self.record.push_inline_name(key.as_str());
        let _ = write!(self.record.text, "{value}");
        self.record.close_field(name);
        Ok(())
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.config().max_level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut queued = self.new_record(severity_of(record.level()), 64);
        match record.args().as_str() {
            Some(s) => queued.text.push_str(s),
            None => {
                let _ = write!(queued.text, "{}", record.args());
            }
        }
        queued.msg_len = queued.text.len();
        let _ = record.key_values().visit(&mut KeyValues {
            record: &mut queued,
        });
        if self.config().include_target {
            queued.text.push_str(record.target());
            queued.close_field(FieldName::Static("target"));
        }
        self.enqueue(queued);
    }

    fn flush(&self) {
        Logger::flush(self, self.config().write_timeout);
    }
}
