/// Errors of setting the gateway up (requests are answered with a [`crate::Problem`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("jwt secret: {0}")]
    Secret(String),
    #[error("jwt key `{kid}` ({path}): {reason}")]
    PublicKey {
        kid: String,
        path: String,
        reason: String,
    },
    #[error("cannot mint a token: {0}")]
    Mint(String),
    #[error("http client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("metrics exporter: {0}")]
    Metrics(String),
    #[error("grpc server: {0}")]
    GrpcServer(#[source] tonic::transport::Error),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
}
