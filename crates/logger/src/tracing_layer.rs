//! A `tracing` layer: every event becomes one queued record; its `message` is the
//! text and its other fields become structured-data parameters.

use std::fmt::Write as _;

use flotilla_syslog::Severity;
use tracing_core::field::{Field, Visit};
use tracing_core::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

use crate::logger::Logger;
use crate::record::{FieldName, Record};

/// A [`tracing_subscriber::Layer`] that feeds a [`Logger`].
///
/// ```no_run
/// use tracing_subscriber::layer::SubscriberExt;
/// let logger = flotilla_logger::Logger::start(flotilla_logger::Config::with_collectors("udp://127.0.0.1:514")?)?;
/// let subscriber = tracing_subscriber::registry().with(flotilla_logger::TracingLayer::new(logger));
/// tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
/// # Ok::<(), flotilla_logger::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TracingLayer {
    logger: Logger,
}

impl TracingLayer {
    /// A layer sending every event to `logger`.
    pub fn new(logger: Logger) -> Self {
        Self { logger }
    }
}

fn severity_of(level: &Level) -> Severity {
    match *level {
        Level::ERROR => Severity::Error,
        Level::WARN => Severity::Warning,
        Level::INFO => Severity::Informational,
        _ => Severity::Debug,
    }
}

/// Collects an event's fields. The message is written first into its own buffer
/// and moved to the front at the end, so fields can arrive in any order.
struct FieldVisitor<'r> {
    record: &'r mut Record,
    message: String,
}

impl FieldVisitor<'_> {
    /// Whether the message arrives before any other field (tracing's usual
    /// order): then it is written in place, with no copy or shift.
    fn message_first(&self) -> bool {
        self.record.fields.is_empty() && self.record.text.is_empty()
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if self.message_first() {
                self.record.text.push_str(value);
                self.record.msg_len = self.record.text.len();
                return;
            }
            self.message.push_str(value);
        } else {
            self.record.text.push_str(value);
            self.record.close_field(FieldName::Static(field.name()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            if self.message_first() {
                let _ = write!(self.record.text, "{value:?}");
                self.record.msg_len = self.record.text.len();
                return;
            }
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.record.text, "{value:?}");
            self.record.close_field(FieldName::Static(field.name()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let _ = write!(self.record.text, "{value}");
        self.record.close_field(FieldName::Static(field.name()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let _ = write!(self.record.text, "{value}");
        self.record.close_field(FieldName::Static(field.name()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record
            .text
            .push_str(if value { "true" } else { "false" });
        self.record.close_field(FieldName::Static(field.name()));
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for TracingLayer {
    fn enabled(&self, metadata: &tracing_core::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        let level = match *metadata.level() {
            Level::ERROR => log::Level::Error,
            Level::WARN => log::Level::Warn,
            Level::INFO => log::Level::Info,
            Level::DEBUG => log::Level::Debug,
            Level::TRACE => log::Level::Trace,
        };
        level <= self.logger.config().max_level
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut record = self.logger.new_record(severity_of(metadata.level()), 64);
        record.msg_len = 0;
        let mut visitor = FieldVisitor {
            record: &mut record,
            message: String::new(),
        };
        event.record(&mut visitor);
        let message = std::mem::take(&mut visitor.message);
        if self.logger.config().include_target {
            record.text.push_str(metadata.target());
            record.close_field(FieldName::Static("target"));
        }
        if !message.is_empty() {
            // The message came after other fields: move it in front of them.
            let shift = message.len() + record.msg_len;
            record.text.insert_str(record.msg_len, &message);
            record.msg_len = shift;
            for (name, end) in &mut record.fields {
                *end += message.len();
                if let FieldName::Inline(name_end) = name {
                    *name_end += message.len();
                }
            }
        }
        self.logger.enqueue(record);
    }
}
