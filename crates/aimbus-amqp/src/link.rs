use std::time::Duration;

use lapin::{Connection, Event};
use tokio_stream::StreamExt;

/// How often a connection's status is looked at, besides listening for its errors.
const STATUS_CHECK: Duration = Duration::from_millis(500);

/// Resolves once the connection is lost: an error event, or a status that is no longer
/// connected. Consumers do not always end when their connection dies, so whoever keeps
/// a connection alive waits on this as well.
pub async fn until_lost(connection: &Connection) {
    let events = connection.events_listener();
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
                if !connection.status().connected() {
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
