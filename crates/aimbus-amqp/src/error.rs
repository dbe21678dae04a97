/// Errors of the RabbitMQ bridge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (nack) on `{exchange}` with key `{routing_key}`")]
    Nacked {
        exchange: String,
        routing_key: String,
    },
    #[error("no queue is bound to `{exchange}` with key `{routing_key}`: the message was returned")]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    #[error(transparent)]
    Codec(#[from] aimbus_core::Error),
    #[error("not connected to the broker")]
    NotConnected,
}
