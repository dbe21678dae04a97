//! Trace export as the bus sets it up, against real sockets: OTLP over HTTP/protobuf to
//! a real receiver, and a collector that accepts connections and never answers, which
//! must cost spans (dropped and counted), never the callers' time.

use std::time::Duration;

use aimbus_core::Config;
use aimbus_telemetry::metrics::SPANS_DROPPED;
use aimbus_telemetry::receiver::Receiver;
use aimbus_telemetry::{Process, Trace};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

fn config(overrides: &[(&str, &str)]) -> Config {
    let env = overrides
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()));
    Config::from_toml_str("test", "", env, ".".into()).unwrap()
}

/// Counters are recorded on the exporter's threads too: one process-wide recorder for
/// this test binary, installed by whichever test comes first. The tests run side by
/// side, so only counts no other test moves are asserted (the others never fill their
/// queues, so they drop nothing).
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: std::sync::OnceLock<Snapshotter> = std::sync::OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::set_global_recorder(recorder).unwrap();
        snapshotter
    })
}

fn counter(name: &str) -> u64 {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) if key.key().name() == name => Some(n),
            _ => None,
        })
        .unwrap_or(0)
}

/// Spans named `name` made under `subscriber`, one root each.
fn make_spans(subscriber: impl tracing::Subscriber + Send + Sync, name: &str, n: usize) {
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..n {
            let span = tracing::debug_span!("unit", otel.name = name, i);
            span.in_scope(|| {});
        }
    });
}

#[test]
fn spans_are_exported_over_http_protobuf() {
    let receiver = Receiver::start().unwrap();
    let config = config(&[
        ("AIMBUS_TELEMETRY__OTLP_ENDPOINT", &receiver.endpoint()),
        ("AIMBUS_TELEMETRY__OTLP_PROTOCOL", "http_protobuf"),
        ("AIMBUS_TELEMETRY__SERVICE_NAME", "http-exporter"),
    ]);
    let (subscriber, telemetry) = aimbus_telemetry::subscriber(&config, Process::Bus).unwrap();
    assert!(telemetry.exports_traces());
    make_spans(subscriber, "over http", 25);
    // Dropping the telemetry flushes the queue.
    drop(telemetry);
    let spans = receiver.spans();
    assert_eq!(spans.len(), 25, "{spans:#?}");
    assert!(spans.iter().all(|s| s.name == "over http"
        && s.service_name == "http-exporter"
        && s.parent_span_id.is_empty()));
    assert_eq!(spans[0].attribute("i"), Some("0"));
}

#[test]
fn a_collector_that_never_answers_costs_spans_not_time() {
    snapshotter();
    // Accepts connections, reads nothing, answers nothing.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", stalled.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let connections: Vec<_> = stalled.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(connections);
    });
    let config = config(&[
        ("AIMBUS_TELEMETRY__OTLP_ENDPOINT", &endpoint),
        ("AIMBUS_TELEMETRY__EXPORT_QUEUE_SIZE", "100"),
        ("AIMBUS_TELEMETRY__EXPORT_BATCH_SIZE", "10"),
        ("AIMBUS_TELEMETRY__EXPORT_INTERVAL_MS", "10"),
        ("AIMBUS_TELEMETRY__EXPORT_TIMEOUT_MS", "20000"),
    ]);
    let dropped_before = counter(SPANS_DROPPED);
    let (subscriber, telemetry) = aimbus_telemetry::subscriber(&config, Process::Bus).unwrap();
    // Many more spans than the queue holds, made while every export hangs: the loop ends
    // (nothing waits for the collector) and what did not fit is counted as dropped.
    make_spans(subscriber, "stalled", 10_000);
    let dropped = counter(SPANS_DROPPED) - dropped_before;
    assert!(
        (9_900..=10_000).contains(&dropped),
        "dropped {dropped} of 10000 with room for 100"
    );
    drop(telemetry);
    drop(held);
}

/// `sampling_ratio` decides for new traces only, before any span is made: at 0 no span
/// of a new trace is even built, yet its work still sends a `traceparent` (sampled flag
/// cleared) so downstream systems agree; a trace a caller sampled is continued and
/// exported, one the caller did not sample is passed on unsampled.
#[test]
fn sampling_is_decided_before_spans_exist_and_callers_decide_theirs() {
    struct Headers(&'static str);
    impl aimbus_telemetry::Extractor for Headers {
        fn get(&self, key: &str) -> Option<&str> {
            (key == "traceparent").then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent"]
        }
    }
    let receiver = Receiver::start().unwrap();
    let config = config(&[
        ("AIMBUS_TELEMETRY__OTLP_ENDPOINT", &receiver.endpoint()),
        ("AIMBUS_TELEMETRY__SAMPLING_RATIO", "0"),
    ]);
    let (subscriber, telemetry) = aimbus_telemetry::subscriber(&config, Process::Bus).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (built, unsampled_headers, passed_on) =
        tracing::subscriber::with_default(subscriber, || {
            let mut built = 0;
            let mut unsampled_headers = Vec::new();
            for _ in 0..10 {
                let trace = Trace::root(|| {
                    built += 1;
                    tracing::debug_span!("unit", otel.name = "new trace")
                });
                let headers = runtime.block_on(trace.instrument(async {
                    // A library's own root span inside unsampled work is not recorded either.
                    tracing::debug_span!("unit", otel.name = "foreign").in_scope(|| {});
                    aimbus_telemetry::context_headers()
                }));
                unsampled_headers.push(headers);
            }
            let continued = Trace::continued(
                &Headers("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                || tracing::debug_span!("unit", otel.name = "continued"),
            );
            continued.span().unwrap().in_scope(|| {});
            let declined = Trace::continued(
                &Headers("00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
                || panic!("a span made for a trace the caller did not sample"),
            );
            let passed_on = runtime
                .block_on(declined.instrument(async { aimbus_telemetry::context_headers() }));
            (built, unsampled_headers, passed_on)
        });
    drop(telemetry);
    assert_eq!(built, 0, "spans built for unsampled traces");
    for headers in &unsampled_headers {
        let (name, value) = &headers[0];
        assert_eq!(name, "traceparent");
        assert!(
            value.starts_with("00-") && value.ends_with("-00"),
            "{value}"
        );
    }
    assert_eq!(
        passed_on[0],
        (
            "traceparent".to_owned(),
            "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00".to_owned()
        )
    );
    let spans = receiver.spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].name, "continued");
    assert_eq!(spans[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(spans[0].parent_span_id, "00f067aa0ba902b7");
}

/// OpenTelemetry's own variables pick the collector (a signal-specific endpoint used as
/// it is), the protocol, the service name, headers and the sampler.
#[test]
fn opentelemetry_variables_choose_the_collector_protocol_name_and_sampler() {
    let receiver = Receiver::start().unwrap();
    let traces = format!("{}/v1/traces", receiver.endpoint());
    let otel = [
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SERVICE_NAME", "otel-named"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k%20v"),
    ];
    let (subscriber, telemetry) =
        aimbus_telemetry::subscriber(&config(&otel), Process::Bus).unwrap();
    make_spans(subscriber, "named by otel", 5);
    drop(telemetry);
    let spans = receiver.spans();
    assert_eq!(spans.len(), 5, "{spans:#?}");
    assert!(spans.iter().all(|s| s.service_name == "otel-named"));

    let off = [otel.as_slice(), &[("OTEL_TRACES_SAMPLER", "always_off")]].concat();
    let (subscriber, telemetry) =
        aimbus_telemetry::subscriber(&config(&off), Process::Bus).unwrap();
    make_spans(subscriber, "never sampled", 5);
    drop(telemetry);
    assert_eq!(receiver.spans().len(), 5, "always_off records nothing");
}
