use std::time::Duration;

use lapin::{Channel, Connection, Event};
use tokio_stream::{Stream, StreamExt};

/// How often a connection's status is looked at, besides listening for its errors.
const STATUS_CHECK: Duration = Duration::from_millis(500);

/// Resolves once the connection is lost: an error event, or a status that is no longer
/// connected. Consumers do not always end when their connection dies, so whoever keeps
/// a connection alive waits on this as well.
pub async fn until_lost(connection: &Connection) {
    lost(connection.events_listener(), || {
        connection.status().connected()
    })
    .await;
}

/// As [`until_lost`], for a task that outlives the borrow of its connection: it watches
/// the connection's events and the status of `channel`, one of its channels.
pub fn until_channel_lost(
    connection: &Connection,
    channel: Channel,
) -> impl Future<Output = ()> + Send + 'static {
    let events = connection.events_listener();
    async move { lost(events, move || channel.status().connected()).await }
}

async fn lost(events: impl Stream<Item = Event>, connected: impl Fn() -> bool) {
    tokio::pin!(events);
    let mut tick = tokio::time::interval(STATUS_CHECK);
    loop {
        tokio::select! {
            event = events.next() => {
                if matches!(event, None | Some(Event::Error(_))) {
                    return;
                }
            }
            _ = tick.tick() => {
                if !connected() {
                    return;
                }
            }
        }
    }
}

/// Closes a connection we are leaving, without waiting long for a broker that is gone.
pub async fn close(connection: &Connection) {
    let closing = connection.close(200, "reconnecting".into());
    let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
}
