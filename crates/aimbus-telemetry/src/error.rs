/// Errors of telemetry setup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot build the otlp exporter for `{endpoint}`: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("cannot start the otlp export runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    /// A `telemetry.otlp_headers` entry gRPC metadata cannot carry (its value is not
    /// shown: headers carry credentials).
    #[error("the otlp header `{0}` cannot be sent as grpc metadata")]
    Header(String),
}
