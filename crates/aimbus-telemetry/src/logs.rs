//! Log lines that name their trace: every event inside a traced span carries the span's
//! `trace_id` and `span_id`, so a log line leads to its trace in Jaeger and back.

use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt;
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The subscriber, once installed. Events are formatted while their dispatch is busy,
/// when `tracing::dispatcher::get_default` answers with no subscriber at all, so the
/// formatter keeps its own (weak) handle, taken when the subscriber is registered.
#[derive(Clone, Default)]
pub struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

impl DispatchSlot {
    /// A layer that fills the slot when the subscriber it is part of is installed. It
    /// takes no span and no event: a layer without a filter would make every callsite
    /// of every crate (lapin's TRACE events, the bus's DEBUG spans) live with tracing
    /// off, each then built and asked of the other layers' filters.
    pub fn filler<S: Subscriber + for<'a> LookupSpan<'a>>(&self) -> impl Layer<S> + use<S> {
        SlotFiller(self.clone()).with_filter(LevelFilter::OFF)
    }

    /// The ids of the event's span: its explicit parent, or the thread's current span.
    /// Asked of the whole subscriber, not of the log layer: the bus's spans are at
    /// DEBUG, below what the log layer takes at the usual levels, yet an event inside
    /// one still belongs to its trace.
    fn ids(&self, event: &Event<'_>) -> Option<(String, String)> {
        let dispatch = self.0.get()?.upgrade()?;
        let span = match event.parent() {
            Some(parent) => parent.clone(),
            None if event.is_contextual() => dispatch.current_span().id()?.clone(),
            None => return None,
        };
        let context = tracing_opentelemetry::get_otel_context(&span, &dispatch)?;
        let span = context.span();
        let span_context = span.span_context();
        span_context.is_valid().then(|| {
            (
                span_context.trace_id().to_string(),
                span_context.span_id().to_string(),
            )
        })
    }
}

struct SlotFiller(DispatchSlot);

impl<S: Subscriber> Layer<S> for SlotFiller {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.0.set(subscriber.downgrade());
    }
}

/// How the ids join a line: JSON objects get more members, text more `key=value` fields
/// at the end.
#[derive(Clone, Copy)]
pub enum Shape {
    Json,
    Text,
}

/// Formats with `inner`, then adds the bus node's id (when the process is one) and the
/// trace ids of the event's span, if it is traced.
pub struct WithTraceIds<F> {
    pub inner: F,
    pub slot: DispatchSlot,
    pub shape: Shape,
    /// An identifier (checked by the configuration), so it needs no escaping.
    pub node_id: Option<Arc<str>>,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let ids = self.slot.ids(event);
        if ids.is_none() && self.node_id.is_none() {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(3);
        if let Some(node_id) = &self.node_id {
            fields.push(("node_id", node_id));
        }
        if let Some((trace_id, span_id)) = &ids {
            fields.push(("trace_id", trace_id));
            fields.push(("span_id", span_id));
        }
        match self.shape {
            Shape::Json => match line.strip_prefix('{') {
                Some(rest) => {
                    writer.write_char('{')?;
                    for (key, value) in fields {
                        write!(writer, "\"{key}\":\"{value}\",")?;
                    }
                    writer.write_str(rest)
                }
                None => writer.write_str(&line),
            },
            Shape::Text => {
                writer.write_str(line.strip_suffix('\n').unwrap_or(&line))?;
                for (key, value) in fields {
                    write!(writer, " {key}={value}")?;
                }
                writeln!(writer)
            }
        }
    }
}
