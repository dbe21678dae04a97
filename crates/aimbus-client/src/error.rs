use std::time::Duration;

/// Errors of the SDK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Amqp(#[from] aimbus_amqp::Error),
    #[error("no reply within {0:?}")]
    NoReply(Duration),
    #[error(transparent)]
    Message(#[from] aimbus_core::Error),
    #[error("grpc server: {0}")]
    GrpcServer(#[source] tonic::transport::Error),
}

impl From<lapin::Error> for Error {
    fn from(error: lapin::Error) -> Error {
        Error::Amqp(error.into())
    }
}
