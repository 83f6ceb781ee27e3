//! A `tracing` layer: every event becomes one queued record; its `message` is the
//! text and its other fields become structured-data parameters. The fields of the
//! spans the event is in go into a second element.
//!
//! # Span fields
//!
//! A span's fields are captured when the span is created and when
//! `Span::record` sets one (a later value replaces the earlier one), kept in the
//! span's extensions in the `tracing_subscriber` registry, and added to every
//! event inside the span as ONE structured-data element (RFC 5424 allows an
//! SD-ID once per message, so nested spans share it), by default
//! `span@32473` ([`Config::span_sd_id`](crate::Config::span_sd_id)):
//!
//! ```text
//! [span@32473 path="request/db" request.id="7" db.table="users"]
//! ```
//!
//! - `path`: the span names from the outermost to the innermost, joined by `/`;
//! - then each span's fields, outermost span first, named `SPAN.FIELD`. A name
//!   longer than the 32 characters RFC 5424 allows keeps the whole field name and
//!   as much of the span name as fits (`.FIELD` alone if even that is too long;
//!   then the field name is cut at 32). Two spans with the same name and field
//!   give the parameter twice, outermost first (RFC 5424 allows repeated names).
//! - At most the [`MAX_SPANS`] innermost spans are included.
//!
//! Names and values follow the same rules as event fields: invalid name
//! characters are replaced by the documented `flotilla_syslog` sanitising rule,
//! and `"`, `\` and `]` in values are escaped on the wire.
//!
//! Recording span fields needs a subscriber that stores spans (`LookupSpan`),
//! such as `tracing_subscriber::registry()`.

use std::fmt::Write as _;

use flotilla_syslog::{SdElement, SdParam, Severity};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record as SpanValues};
use tracing_core::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::logger::Logger;
use crate::record::{FieldName, Record};

/// Most spans (the innermost ones) whose fields are added to an event.
pub const MAX_SPANS: usize = 16;

/// Longest PARAM-NAME RFC 5424 allows.
const MAX_PARAM_NAME: usize = 32;

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

/// The fields recorded for one span, in the span's registry extensions.
#[derive(Debug, Default)]
struct SpanFields {
    values: Vec<(&'static str, String)>,
}

impl SpanFields {
    /// Sets `name` to `value` (a recorded value replaces the earlier one).
    fn set(&mut self, name: &'static str, value: String) {
        match self.values.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.values.push((name, value)),
        }
    }
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field.name(), format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), value.to_string());
    }
}

/// `SPAN.FIELD`, shortened to RFC 5424's 32 characters by cutting the span name
/// (never the field name) where needed.
fn span_param_name(span: &str, field: &str) -> String {
    let room = MAX_PARAM_NAME.saturating_sub(field.len() + 1);
    let mut name = String::with_capacity(MAX_PARAM_NAME);
    for c in span.chars() {
        if name.len() + c.len_utf8() > room {
            break;
        }
        name.push(c);
    }
    name.push('.');
    name.push_str(field);
    name
}

/// The span element of an event inside the spans of `scope` (innermost first).
fn span_element<S>(
    sd_id: &str,
    scope: tracing_subscriber::registry::Scope<'_, S>,
) -> Option<SdElement>
where
    S: for<'a> LookupSpan<'a>,
{
    let mut spans: Vec<_> = scope.take(MAX_SPANS).collect();
    if spans.is_empty() {
        return None;
    }
    spans.reverse(); // outermost first
    let mut path = String::new();
    for span in &spans {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(span.name());
    }
    let mut params = vec![SdParam {
        name: "path".to_owned(),
        value: path,
    }];
    for span in &spans {
        let extensions = span.extensions();
        let Some(fields) = extensions.get::<SpanFields>() else {
            continue;
        };
        for (field, value) in &fields.values {
            params.push(SdParam {
                name: span_param_name(span.name(), field),
                value: value.clone(),
            });
        }
    }
    Some(SdElement {
        id: sd_id.to_owned(),
        params,
    })
}

impl<S> tracing_subscriber::Layer<S> for TracingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            // Another flotilla layer on the same registry recorded them already.
            Some(fields) => attrs.record(fields),
            None => {
                let mut fields = SpanFields::default();
                attrs.record(&mut fields);
                extensions.insert(fields);
            }
        }
    }

    fn on_record(&self, id: &Id, values: &SpanValues<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            Some(fields) => values.record(fields),
            None => {
                let mut fields = SpanFields::default();
                values.record(&mut fields);
                extensions.insert(fields);
            }
        }
    }

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

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
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
        if let Some(scope) = ctx.event_scope(event) {
            record
                .extra_sd
                .extend(span_element(&self.logger.config().span_sd_id, scope));
        }
        self.logger.enqueue(record);
    }
}
