//! Export that never holds the bus up: finished spans wait in a bounded queue for the
//! batch exporter, and when it is full (the collector is slow or away) new spans are
//! dropped and counted instead of waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};

use crate::metrics;

/// Spans ended and not yet through an export request, shared by the processor that
/// admits them and the exporter that sends them.
#[derive(Debug)]
struct Backlog {
    spans: AtomicUsize,
    capacity: usize,
    /// Whether the last export failed, so a failing collector is logged once, and its
    /// recovery once, not every batch.
    failing: AtomicBool,
}

/// Admits finished spans into `inner` (the SDK's batch processor) while the backlog has
/// room. The SDK's own queue drops silently; this one keeps the count as a metric.
#[derive(Debug)]
pub struct BoundedProcessor<P> {
    inner: P,
    backlog: Arc<Backlog>,
}

/// Sends batches through `inner` and counts what was exported or failed.
#[derive(Debug)]
pub struct CountingExporter<E> {
    inner: E,
    backlog: Arc<Backlog>,
}

/// A processor and an exporter sharing one backlog of `capacity` spans. The inner
/// batch processor's queue must hold at least `capacity` spans, so only this one drops.
pub fn bounded<E: SpanExporter>(exporter: E, capacity: usize) -> (Admission, CountingExporter<E>) {
    let backlog = Arc::new(Backlog {
        spans: AtomicUsize::new(0),
        capacity,
        failing: AtomicBool::new(false),
    });
    let exporter = CountingExporter {
        inner: exporter,
        backlog: Arc::clone(&backlog),
    };
    (Admission(backlog), exporter)
}

/// The admitting half of [`bounded`], made into a processor once the batch processor
/// around the exporter exists.
pub struct Admission(Arc<Backlog>);

impl Admission {
    pub fn around<P: SpanProcessor>(self, inner: P) -> BoundedProcessor<P> {
        BoundedProcessor {
            inner,
            backlog: self.0,
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for BoundedProcessor<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let backlog = &self.backlog;
        if backlog.spans.fetch_add(1, Ordering::AcqRel) >= backlog.capacity {
            backlog.spans.fetch_sub(1, Ordering::AcqRel);
            ::metrics::counter!(metrics::SPANS_DROPPED).increment(1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    // Without it the batch processor, and so every exported span, would lack the
    // resource (service.name and the rest).
    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.backlog.spans.fetch_sub(spans, Ordering::AcqRel);
        let name = match &result {
            Ok(()) => {
                if self.backlog.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("trace export resumed");
                }
                metrics::SPANS_EXPORTED
            }
            Err(error) => {
                if !self.backlog.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(%error, "trace export failed; spans are lost (and counted in aimbus_trace_spans_failed_total) until the collector answers");
                }
                metrics::SPANS_FAILED
            }
        };
        ::metrics::counter!(name).increment(spans as u64);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A collector that takes everything.
    #[derive(Debug)]
    struct Accepting;

    impl SpanExporter for Accepting {
        async fn export(&self, _: Vec<SpanData>) -> OTelSdkResult {
            Ok(())
        }
    }

    /// A processor that keeps nothing, standing for a batch processor that is not
    /// exporting (collector away): the backlog only grows.
    #[derive(Debug)]
    struct Stalled;

    impl SpanProcessor for Stalled {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}
        fn on_end(&self, _: SpanData) {}
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    fn span() -> SpanData {
        use opentelemetry::trace::{SpanContext, SpanKind, Status};
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "test".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn a_full_backlog_drops_and_counts_and_export_makes_room() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || {
            let (admission, exporter) = bounded(Accepting, 2);
            let processor = admission.around(Stalled);
            for _ in 0..5 {
                processor.on_end(span());
            }
            assert_eq!(processor.backlog.spans.load(Ordering::Acquire), 2);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime
                .block_on(exporter.export(vec![span(), span()]))
                .unwrap();
            assert_eq!(processor.backlog.spans.load(Ordering::Acquire), 0);
            processor.on_end(span());
            assert_eq!(processor.backlog.spans.load(Ordering::Acquire), 1);
        });
        let counts: std::collections::HashMap<String, u64> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                metrics_util::debugging::DebugValue::Counter(n) => {
                    Some((key.key().name().to_owned(), n))
                }
                _ => None,
            })
            .collect();
        assert_eq!(counts[metrics::SPANS_DROPPED], 3);
        assert_eq!(counts[metrics::SPANS_EXPORTED], 2);
    }
}
