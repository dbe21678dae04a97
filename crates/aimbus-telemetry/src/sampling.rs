//! Sampling decided once, where a message enters the bus, before any span exists.
//!
//! `tracing-opentelemetry` builds every span in full (attributes, builder, the context
//! a child asks for) before the SDK's sampler runs, so a sampler inside the SDK makes an
//! unsampled message cost what a sampled one does. Here the decision comes first: an
//! entry (an HTTP request, an AMQP delivery, a direct `route`) asks [`Trace::root`] or
//! [`Trace::continued`], and a message that is not sampled gets no span on any hop. Its
//! [`Trace::Unsampled`] context travels instead, through the actor messages and, as a
//! task-local, under its work, so what the message publishes still carries a
//! `traceparent` (sampled flag cleared) and downstream systems agree.
//!
//! Spans the bus does not make through these functions (a handler's own, a library's)
//! are sampled by [`SampledSpans`], the trace layer's filter, also before they are built:
//! a child of a recorded span is recorded, none is inside an unsampled message's work,
//! and a root of its own is sampled as configured.

use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aimbus_core::{TelemetryConfig, TraceSampler};
use opentelemetry::Context as OtelContext;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler as SdkSampler, SamplingDecision, ShouldSample,
};
use tracing::Span;
use tracing::instrument::{Instrument, Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{self, Filter};
use tracing_subscriber::registry::LookupSpan;

use crate::propagation::PROPAGATOR;

tokio::task_local! {
    /// The context of the unsampled message whose work this task is doing.
    static UNSAMPLED: SpanContext;
}

thread_local! {
    /// Set while the bus makes a span it has decided to record, so the trace layer's
    /// filter lets it through whatever its parentage looks like.
    static DECIDED: Cell<bool> = const { Cell::new(false) };
}

/// The configured sampler, applied by the bus before it makes a span: OpenTelemetry's
/// own sampler, asked with the parent and trace id a span would have, so the bus decides
/// exactly as any SDK configured alike would.
#[derive(Debug, Clone)]
pub(crate) struct Sampler(Arc<SdkSampler>);

impl Sampler {
    pub(crate) fn new(settings: &TelemetryConfig) -> Sampler {
        Sampler::of(settings.sampler, settings.sampling_ratio)
    }

    fn of(kind: TraceSampler, ratio: f64) -> Sampler {
        let ratio = || SdkSampler::TraceIdRatioBased(ratio);
        let parent_based = |root| SdkSampler::ParentBased(Box::new(root));
        Sampler(Arc::new(match kind {
            TraceSampler::AlwaysOn => SdkSampler::AlwaysOn,
            TraceSampler::AlwaysOff => SdkSampler::AlwaysOff,
            TraceSampler::TraceIdRatio => ratio(),
            TraceSampler::ParentbasedAlwaysOn => parent_based(SdkSampler::AlwaysOn),
            TraceSampler::ParentbasedAlwaysOff => parent_based(SdkSampler::AlwaysOff),
            TraceSampler::ParentbasedTraceIdRatio => parent_based(ratio()),
        }))
    }

    fn samples(&self, parent: Option<&OtelContext>, trace_id: TraceId) -> bool {
        let result = self
            .0
            .should_sample(parent, trace_id, "", &SpanKind::Internal, &[], &[]);
        result.decision == SamplingDecision::RecordAndSample
    }

    /// Whether a new trace with this id is recorded.
    fn samples_root(&self, trace_id: TraceId) -> bool {
        self.samples(None, trace_id)
    }

    /// Whether work continuing a caller's trace is recorded: as the caller decided,
    /// unless the sampler is not parent-based.
    fn samples_child_of(&self, parent: &SpanContext) -> bool {
        let parent_context = OtelContext::new().with_remote_span_context(parent.clone());
        self.samples(Some(&parent_context), parent.trace_id())
    }
}

/// The configured sampler of the current subscriber; none when it exports no traces.
fn sampler() -> Option<Sampler> {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .downcast_ref::<SampledSpans>()
            .map(|s| s.sampler.clone())
    })
}

/// Makes a span the bus decided to record.
fn decided(make: impl FnOnce() -> Span) -> Span {
    let outer = DECIDED.replace(true);
    let span = make();
    DECIDED.set(outer);
    span
}

/// Whether one message's work is traced, decided where it entered.
#[derive(Debug, Clone)]
pub enum Trace {
    /// Recorded: the work happens in this span (disabled when nothing takes spans).
    Sampled(Span),
    /// Not recorded: no span is made for it anywhere; this context, its sampled flag
    /// cleared, is what downstream systems continue.
    Unsampled(SpanContext),
}

impl Trace {
    /// A new trace beginning here, sampled as configured; `make` runs only if it is.
    pub fn root(make: impl FnOnce() -> Span) -> Trace {
        match sampler() {
            // Nothing exports: the span serves logs alone, as any span would.
            None => Trace::Sampled(make()),
            Some(sampler) => root_by(&sampler, make),
        }
    }

    /// The trace `carrier`'s `traceparent` names (an HTTP request's headers, an AMQP
    /// message's), decided as the sampler says of a caller's trace, keeping its
    /// `tracestate` and baggage; a new trace when it names none.
    pub fn continued(carrier: &dyn Extractor, make: impl FnOnce() -> Span) -> Trace {
        let Some(sampler) = sampler() else {
            return Trace::Sampled(make());
        };
        let context = PROPAGATOR.extract(carrier);
        let parent = context.span().span_context().clone();
        if !parent.is_valid() {
            return root_by(&sampler, make);
        }
        if sampler.samples_child_of(&parent) {
            let span = decided(make);
            // Fails only when the span is disabled: then there is nothing to continue.
            let _ = span.set_parent(context);
            Trace::Sampled(span)
        } else {
            Trace::Unsampled(unsampled(&parent))
        }
    }

    /// The trace the current task works in: its span's, its unsampled message's, or a
    /// new one when it has neither. `make` makes the span for the work (a child of the
    /// current span, as spans made in it are) and runs only if the work is recorded.
    pub fn current(make: impl FnOnce() -> Span) -> Trace {
        if let Ok(context) = UNSAMPLED.try_with(SpanContext::clone) {
            return Trace::Unsampled(context);
        }
        // One look at the subscriber for both questions (no span handle is cloned).
        let (in_span, sampler) = tracing::dispatcher::get_default(|dispatch| {
            let in_span = dispatch.current_span().id().is_some();
            (
                in_span,
                dispatch
                    .downcast_ref::<SampledSpans>()
                    .map(|s| s.sampler.clone()),
            )
        });
        match (in_span, sampler) {
            (true, _) => Trace::Sampled(decided(make)),
            (false, None) => Trace::Sampled(make()),
            (false, Some(sampler)) => root_by(&sampler, make),
        }
    }

    /// A step of this trace's work: in a span `make` makes from this one (its explicit
    /// parent), or as unsampled as the rest.
    pub fn child(&self, make: impl FnOnce(&Span) -> Span) -> Trace {
        match self {
            Trace::Sampled(parent) if parent.is_disabled() => Trace::Sampled(Span::none()),
            Trace::Sampled(parent) => Trace::Sampled(decided(|| make(parent))),
            Trace::Unsampled(context) => Trace::Unsampled(context.clone()),
        }
    }

    /// The span work happens in: none when it is unsampled.
    pub fn into_span(self) -> Span {
        match self {
            Trace::Sampled(span) => span,
            Trace::Unsampled(_) => Span::none(),
        }
    }

    /// The span work is recorded in, if it is.
    pub fn span(&self) -> Option<&Span> {
        match self {
            Trace::Sampled(span) if !span.is_disabled() => Some(span),
            _ => None,
        }
    }

    /// Runs `future` in this trace: inside its span, or as unsampled work (what it
    /// publishes carries the unsampled context).
    pub fn instrument<F: Future>(self, future: F) -> Traced<F> {
        match self {
            Trace::Sampled(span) => Traced::Sampled {
                future: future.instrument(span),
            },
            Trace::Unsampled(context) => Traced::Unsampled {
                future: UNSAMPLED.scope(context, future),
            },
        }
    }
}

impl Default for Trace {
    /// Untraced work: no span, nothing to propagate.
    fn default() -> Trace {
        Trace::Sampled(Span::none())
    }
}

fn root_by(sampler: &Sampler, make: impl FnOnce() -> Span) -> Trace {
    let ids = RandomIdGenerator::default();
    let trace_id = ids.new_trace_id();
    if sampler.samples_root(trace_id) {
        return Trace::Sampled(decided(make));
    }
    Trace::Unsampled(SpanContext::new(
        trace_id,
        ids.new_span_id(),
        TraceFlags::default(),
        false,
        TraceState::default(),
    ))
}

/// `parent`, continued without being recorded: its ids and state, the sampled flag
/// cleared.
fn unsampled(parent: &SpanContext) -> SpanContext {
    SpanContext::new(
        parent.trace_id(),
        parent.span_id(),
        TraceFlags::default(),
        true,
        parent.trace_state().clone(),
    )
}

/// The unsampled context of the current task's work, if it is unsampled.
pub(crate) fn current_unsampled() -> Option<SpanContext> {
    UNSAMPLED.try_with(SpanContext::clone).ok()
}

pin_project_lite::pin_project! {
    /// A future run in a [`Trace`].
    #[project = TracedProjection]
    pub enum Traced<F> {
        Sampled { #[pin] future: Instrumented<F> },
        Unsampled { #[pin] future: tokio::task::futures::TaskLocalFuture<SpanContext, F> },
    }
}

impl<F: Future> Future for Traced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            TracedProjection::Sampled { future } => future.poll(cx),
            TracedProjection::Unsampled { future } => future.poll(cx),
        }
    }
}

/// The trace layer's filter: the exported targets, and sampling for spans the bus did
/// not decide itself, before they are built.
pub(crate) struct SampledSpans {
    pub(crate) targets: Targets,
    pub(crate) sampler: Sampler,
}

impl<S> Filter<S> for SampledSpans
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &tracing::Metadata<'_>, cx: &layer::Context<'_, S>) -> bool {
        if !Filter::<S>::enabled(&self.targets, meta, cx) {
            return false;
        }
        if !meta.is_span() || DECIDED.get() {
            return true;
        }
        // The current span as this layer sees it: one it records.
        if cx.lookup_current().is_some() {
            return true;
        }
        if current_unsampled().is_some() {
            return false;
        }
        self.sampler
            .samples_root(RandomIdGenerator::default().new_trace_id())
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        let interest = Filter::<S>::callsite_enabled(&self.targets, meta);
        // A span's fate depends on where it is made: asked each time.
        if meta.is_span() && !interest.is_never() {
            tracing::subscriber::Interest::sometimes()
        } else {
            interest
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Filter::<S>::max_level_hint(&self.targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(low: u64) -> TraceId {
        TraceId::from_bytes(((7u128 << 64) | u128::from(low)).to_be_bytes())
    }

    #[test]
    fn the_ratio_rule_is_opentelemetry_s() {
        // Below half of the range samples at 0.5, above does not; 0 and 1 are absolute.
        let ratio = |r| Sampler::of(TraceSampler::TraceIdRatio, r);
        assert!(ratio(0.5).samples_root(id(0x7fff_ffff_ffff_fffe)));
        assert!(!ratio(0.5).samples_root(id(0x8000_0000_0000_0000)));
        assert!(!ratio(0.0).samples_root(id(0)));
        assert!(ratio(1.0).samples_root(id(u64::MAX)));
    }

    #[test]
    fn parent_based_samplers_follow_the_caller_and_the_others_do_not() {
        let parent = |flags| {
            SpanContext::new(
                id(u64::MAX),
                opentelemetry::trace::SpanId::from_bytes([1; 8]),
                flags,
                true,
                TraceState::default(),
            )
        };
        let sampler = |kind| Sampler::of(kind, 0.0);
        let sampled = parent(TraceFlags::SAMPLED);
        let not = parent(TraceFlags::default());
        let ratio = sampler(TraceSampler::ParentbasedTraceIdRatio);
        assert!(ratio.samples_child_of(&sampled) && !ratio.samples_child_of(&not));
        assert!(!ratio.samples_root(id(0)));
        let plain = sampler(TraceSampler::TraceIdRatio);
        assert!(
            !plain.samples_child_of(&sampled),
            "ratio 0 whatever the caller said"
        );
        assert!(sampler(TraceSampler::AlwaysOn).samples_child_of(&not));
        assert!(!sampler(TraceSampler::ParentbasedAlwaysOff).samples_root(id(0)));
        assert!(sampler(TraceSampler::ParentbasedAlwaysOff).samples_child_of(&sampled));
    }

    #[test]
    fn an_unsampled_continuation_keeps_the_caller_s_ids_and_clears_the_flag() {
        let parent = SpanContext::new(
            id(3),
            opentelemetry::trace::SpanId::from_bytes([2; 8]),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let continued = unsampled(&parent);
        assert_eq!(
            (continued.trace_id(), continued.span_id()),
            (parent.trace_id(), parent.span_id())
        );
        assert!(!continued.is_sampled());
    }
}
