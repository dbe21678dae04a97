//! Installing the process's subscriber: logs on standard error (JSON or text, level
//! from the seed's `log_level`, `RUST_LOG` winning) and, when `enable_tracing` is on,
//! spans exported over OTLP by a batch exporter with a bounded queue.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use aimbus_core::{Config, LogFormat, OtlpProtocol, TelemetryConfig};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::Error;
use crate::export;
use crate::logs::{DispatchSlot, Shape, WithTraceIds};
use crate::sampling::{SampledSpans, Sampler};

/// Crates whose spans are never exported: the exporter's own HTTP/2, gRPC and HTTP
/// stack (exporting would feed itself) and the AMQP client's internals.
const UNTRACED_TARGETS: [&str; 8] = [
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "lapin",
];

/// Which spans are exported: everything but [`UNTRACED_TARGETS`], so the spans of a
/// service built on the SDK travel with the bus's own. Events from DEBUG up inside
/// a traced span (a retry and its reason) become events of that span.
fn traced() -> Targets {
    UNTRACED_TARGETS.iter().fold(
        Targets::new().with_default(tracing::Level::DEBUG),
        |targets, target| targets.with_target(*target, tracing::level_filters::LevelFilter::OFF),
    )
}

/// Keeps export running; dropping it flushes what is queued and stops the exporter.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// The gRPC exporter's own runtime, apart from the bus's threads.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "spans still queued at shutdown could not be exported");
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What the process is, which decides whether and as what it exports traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The bus: exports as `telemetry.service_name`.
    Bus,
    /// AIM-OS systems served by this process: exports as `<service_name>-systems`, so
    /// their spans stand apart from the bus's in Jaeger.
    Systems,
    /// A one-shot command: logs only.
    Command,
}

/// Installs the global subscriber. Traces are exported by serving processes when
/// `monitoring.enable_tracing` is on.
pub fn init(config: &Config, process: Process) -> Result<Telemetry, Error> {
    let (subscriber, telemetry) = subscriber(config, process)?;
    subscriber.try_init().map_err(|_| Error::AlreadyInstalled)?;
    if telemetry.exports_traces() {
        let settings = config.telemetry();
        tracing::info!(
            endpoint = %settings.otlp_endpoint,
            protocol = ?settings.otlp_protocol,
            sampling_ratio = settings.sampling_ratio,
            "exporting traces over otlp"
        );
    }
    Ok(telemetry)
}

/// lapin warns of every message the broker returns with the whole message, body bytes
/// included; the bus counts and logs returns itself (without the body), so lapin's own
/// line is never let through, whatever `RUST_LOG` says.
const LAPIN_RETURNS: &str = "lapin::returned_messages=error";

/// What is logged: `RUST_LOG` when set, the configured level otherwise; never lapin's
/// dump of a returned message.
fn log_filter(config: &Config) -> EnvFilter {
    let level = config.monitoring().log_level.as_str().to_ascii_lowercase();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    filter.add_directive(LAPIN_RETURNS.parse().expect("a valid directive"))
}

/// The subscriber [`init`] installs, for a caller that installs it itself (for one
/// thread, with `tracing::subscriber::set_default`, as the benches do).
pub fn subscriber(
    config: &Config,
    process: Process,
) -> Result<(impl tracing::Subscriber + Send + Sync + use<>, Telemetry), Error> {
    let settings = config.telemetry();
    let filter = log_filter(config);
    let json = match settings.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let slot = DispatchSlot::default();
    // The bus names its node on every line, so lines of several nodes can be told apart.
    let node_id = config.cluster().node_id.as_str();
    let bus_node =
        (process == Process::Bus && !node_id.is_empty()).then(|| Arc::<str>::from(node_id));
    let logs = log_layer(json, &slot, bus_node.clone(), std::io::stderr).with_filter(filter);
    let service_name = match process {
        Process::Bus => Some(settings.service_name.clone()),
        Process::Systems => Some(format!("{}-systems", settings.service_name)),
        Process::Command => None,
    };
    let (traces, telemetry) = match service_name.filter(|_| config.monitoring().enable_tracing) {
        Some(service_name) => {
            let (provider, runtime) =
                tracer_provider(settings, &service_name, bus_node.as_deref())?;
            let layer = trace_layer(provider.tracer("aimbus"), Sampler::new(settings));
            let telemetry = Telemetry {
                provider: Some(provider),
                runtime,
            };
            (Some(layer), telemetry)
        }
        None => {
            let telemetry = Telemetry {
                provider: None,
                runtime: None,
            };
            (None, telemetry)
        }
    };
    let subscriber = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .with(slot.filler());
    Ok((subscriber, telemetry))
}

/// Log lines, as JSON or text, with the trace ids of traced spans spliced in.
fn log_layer<W>(
    json: bool,
    slot: &DispatchSlot,
    node_id: Option<Arc<str>>,
    writer: W,
) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let slot = slot.clone();
    if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .map_event_format(|inner| WithTraceIds {
                inner,
                slot,
                shape: Shape::Json,
                node_id,
            })
            .boxed()
    } else {
        // Plain text: the trace ids are spliced into each formatted line, where colour
        // codes would be in the way.
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .map_event_format(|inner| WithTraceIds {
                inner,
                slot,
                shape: Shape::Text,
                node_id,
            })
            .boxed()
    }
}

/// Spans to OpenTelemetry, with fewer attributes per span than the defaults: routing
/// pays for each.
fn trace_layer<S>(tracer: opentelemetry_sdk::trace::Tracer, sampler: Sampler) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        // Context crosses boundaries through the spans themselves (see `propagation`),
        // so entering a span need not attach an OpenTelemetry context each time a
        // future is polled.
        .with_context_activation(false)
        .with_filter(SampledSpans {
            targets: traced(),
            sampler,
        })
}

type Provider = (SdkTracerProvider, Option<tokio::runtime::Runtime>);

fn tracer_provider(
    settings: &TelemetryConfig,
    service_name: &str,
    node_id: Option<&str>,
) -> Result<Provider, Error> {
    let timeout = Duration::from_millis(settings.export_timeout_ms);
    let failed = |endpoint: &str, error: opentelemetry_otlp::ExporterBuildError| Error::Exporter {
        endpoint: endpoint.to_owned(),
        reason: error.to_string(),
    };
    let (exporter, runtime) = match settings.otlp_protocol {
        OtlpProtocol::Grpc => {
            // tonic needs a Tokio runtime for its connection; the exporter gets one of
            // its own so a busy bus never delays export, nor export the bus.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-export")
                .enable_all()
                .build()?;
            let _entered = runtime.enter();
            let endpoint = match settings.otlp_traces_endpoint.as_str() {
                "" => settings.otlp_endpoint.as_str(),
                traces => traces,
            };
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (name, value) in &settings.otlp_headers {
                let name =
                    tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                        .map_err(|_| Error::Header(name.clone()))?;
                let value = value.parse().map_err(|_| Error::Header(name.to_string()))?;
                metadata.insert(name, value);
            }
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_metadata(metadata)
                .with_timeout(timeout)
                .build()
                .map_err(|e| failed(endpoint, e))?;
            (exporter, Some(runtime))
        }
        OtlpProtocol::HttpProtobuf => {
            // A signal-specific endpoint is used as it is, as OpenTelemetry specifies.
            let endpoint = match settings.otlp_traces_endpoint.as_str() {
                "" => traces_url(&settings.otlp_endpoint),
                traces => traces.to_owned(),
            };
            let headers = settings.otlp_headers.clone().into_iter().collect();
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_headers(headers)
                .with_endpoint(&endpoint)
                .with_timeout(timeout)
                .build()
                .map_err(|e| failed(&endpoint, e))?;
            (exporter, None)
        }
    };
    let (admission, exporter) = export::bounded(exporter, settings.export_queue_size);
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                // Room for what the admission lets in plus the batch on its way out, so
                // only the admission ever drops (and counts).
                .with_max_queue_size(settings.export_queue_size + settings.export_batch_size)
                .with_max_export_batch_size(settings.export_batch_size)
                .with_scheduled_delay(Duration::from_millis(settings.export_interval_ms))
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(admission.around(batch))
        // Sampling happens before spans are made (see `sampling`): what reaches the
        // SDK is recorded, unless a caller's context says otherwise.
        .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
            opentelemetry_sdk::trace::Sampler::AlwaysOn,
        )))
        .with_resource(resource(settings, service_name, node_id))
        .build();
    Ok((provider, runtime))
}

fn resource(settings: &TelemetryConfig, service_name: &str, node_id: Option<&str>) -> Resource {
    // The configured ones first: the bus's own below win where a key is set twice.
    let mut attributes: Vec<KeyValue> = settings
        .resource_attributes
        .iter()
        .filter(|(key, _)| key.as_str() != "service.name")
        .map(|(key, value)| KeyValue::new(key.clone(), value.clone()))
        .collect();
    attributes.push(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if let Some(host) = aimbus_core::host_name() {
        attributes.push(KeyValue::new("host.name", host));
    }
    if let Some(node_id) = node_id {
        attributes.push(KeyValue::new("service.instance.id", node_id.to_owned()));
    }
    attributes.push(KeyValue::new("process.pid", i64::from(std::process::id())));
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attributes(attributes)
        .build()
}

/// OTLP/HTTP takes spans at `/v1/traces`; a base URL gets the path appended.
fn traces_url(endpoint: &str) -> String {
    if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing::level_filters::LevelFilter;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Lines {
        type Writer = Lines;
        fn make_writer(&'w self) -> Lines {
            self.clone()
        }
    }

    #[test]
    fn lapin_s_dump_of_a_returned_message_is_never_logged() {
        let lines = Lines::default();
        let slot = DispatchSlot::default();
        let filter = log_filter(&Config::default());
        let subscriber = tracing_subscriber::registry()
            .with(log_layer(false, &slot, None, lines.clone()).with_filter(filter))
            .with(slot.filler());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "lapin::returned_messages", message = ?b"secret body", "Server returned us a message");
            tracing::warn!(target: "aimbus_amqp::publisher", "kept");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("kept"), "{text}");
        assert!(!text.contains("returned us"), "{text}");
    }

    /// Logs `outside` with no span, then `inside` within a traced span; returns the
    /// lines and the span's ids.
    fn log_around_a_span(json: bool) -> (Vec<String>, String, String) {
        let lines = Lines::default();
        let slot = DispatchSlot::default();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(log_layer(json, &slot, None, lines.clone()).with_filter(LevelFilter::INFO))
            .with(trace_layer(
                provider.tracer("test"),
                Sampler::new(&TelemetryConfig::default()),
            ))
            .with(slot.filler());
        let ids = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            // At DEBUG, below the log layer's level, as the bus's spans are.
            let span = tracing::debug_span!("work");
            let _entered = span.enter();
            tracing::info!(answer = 42, "inside");
            use opentelemetry::trace::TraceContextExt;
            let context = span.context();
            let span_context = context.span().span_context().clone();
            (
                span_context.trace_id().to_string(),
                span_context.span_id().to_string(),
            )
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        (text.lines().map(str::to_owned).collect(), ids.0, ids.1)
    }

    #[test]
    fn json_lines_inside_a_traced_span_carry_its_ids() {
        let (lines, trace_id, span_id) = log_around_a_span(true);
        let events: Vec<serde_json::Value> = lines
            .iter()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(events[0]["fields"]["message"], "outside");
        assert!(events[0].get("trace_id").is_none(), "{}", events[0]);
        assert_eq!(events[1]["fields"]["message"], "inside");
        assert_eq!(events[1]["fields"]["answer"], 42);
        assert_eq!(events[1]["trace_id"], trace_id.as_str());
        assert_eq!(events[1]["span_id"], span_id.as_str());
    }

    #[test]
    fn text_lines_inside_a_traced_span_end_with_its_ids() {
        let (lines, trace_id, span_id) = log_around_a_span(false);
        assert!(lines[0].ends_with("outside"), "{}", lines[0]);
        assert!(
            lines[1].ends_with(&format!("answer=42 trace_id={trace_id} span_id={span_id}")),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn a_bus_node_names_itself_on_every_line() {
        for json in [true, false] {
            let lines = Lines::default();
            let slot = DispatchSlot::default();
            let node = Some(Arc::<str>::from("node-a"));
            let subscriber = tracing_subscriber::registry()
                .with(log_layer(json, &slot, node, lines.clone()).with_filter(LevelFilter::INFO))
                .with(slot.filler());
            tracing::subscriber::with_default(subscriber, || tracing::info!(n = 1, "hello"));
            let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
            if json {
                let event: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
                assert_eq!(event["node_id"], "node-a", "{text}");
                assert_eq!(event["fields"]["message"], "hello");
            } else {
                assert!(text.trim_end().ends_with("n=1 node_id=node-a"), "{text}");
            }
        }
    }

    #[test]
    fn http_endpoints_get_the_traces_path_once() {
        assert_eq!(
            super::traces_url("http://jaeger:4318"),
            "http://jaeger:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://jaeger:4318/"),
            "http://jaeger:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
