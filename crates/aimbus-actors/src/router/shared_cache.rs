//! The response cache's second tier, shared between bus nodes in Redis: a reply one node
//! cached is served by every node, under the local tier's TTL. Redis is a help, never a
//! dependency: a lookup or a store that fails or takes longer than
//! `caching.distributed_cache_timeout_ms` is skipped (and counted), the request goes on
//! with the local tier, and after a failure Redis is left alone for a second rather than
//! asked again by every request. Going away and coming back are each logged once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aimbus_core::Config;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Mutex;
use tokio::time::Instant;

use super::cache::{CacheKey, CachedReply};
use crate::metrics;
use crate::transport::Reply;

/// After a failure, Redis is not asked again for this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct SharedCache {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    /// `<namespace>:reply:`, so buses in other namespaces on one Redis never share replies.
    prefix: String,
    ttl_seconds: u64,
    max_entry_bytes: u64,
    timeout: Duration,
    up: AtomicBool,
    /// Until then, Redis is not asked (it failed moments ago). A plain mutex: it is never
    /// held across an await, and an async one would cost every lookup more.
    resting_until: Mutex<Option<Instant>>,
}

impl SharedCache {
    /// Connects lazily: Redis need not answer for the bus to start.
    pub fn new(config: &Config) -> Result<SharedCache, redis::RedisError> {
        let caching = config.caching();
        let timeout = Duration::from_millis(caching.distributed_cache_timeout_ms);
        let client = redis::Client::open(caching.redis_url.as_str())?;
        // One reconnect attempt per call at most: the rest period spaces the next ones.
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, manager)?;
        Ok(SharedCache {
            inner: Arc::new(Inner {
                connection,
                prefix: format!("{}:reply:", config.amqp().namespace),
                ttl_seconds: caching.cache_ttl_seconds,
                max_entry_bytes: caching.cache_max_size_mb.saturating_mul(1024 * 1024),
                timeout,
                up: AtomicBool::new(true),
                resting_until: Mutex::new(None),
            }),
        })
    }

    fn redis_key(&self, key: &CacheKey) -> String {
        use std::fmt::Write;
        // Written into one buffer: this runs on every lookup.
        let mut name = String::with_capacity(self.inner.prefix.len() + 64);
        name.push_str(&self.inner.prefix);
        for byte in key {
            let _ = write!(name, "{byte:02x}");
        }
        name
    }

    /// Whether Redis answered the last call.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// The reply another node (or this one) cached; `None` on a miss and whenever Redis
    /// cannot answer in time.
    pub async fn get(&self, key: &CacheKey) -> Option<CachedReply> {
        let name = self.redis_key(key);
        let mut connection = self.inner.connection.clone();
        let found: Option<Vec<u8>> = self.call(async move { connection.get(name).await }).await?;
        let hit = found.and_then(|bytes| decode(&bytes));
        let counter = if hit.is_some() {
            metrics::CACHE_SHARED_HITS
        } else {
            metrics::CACHE_SHARED_MISSES
        };
        ::metrics::counter!(counter).increment(1);
        hit
    }

    /// Stores a reply for every node, under the TTL; a reply larger than the cache's whole
    /// byte budget is not stored, as the local tier would not keep it either.
    pub async fn put(&self, key: &CacheKey, reply: &CachedReply) {
        let bytes = encode(reply);
        if bytes.len() as u64 > self.inner.max_entry_bytes {
            return;
        }
        let name = self.redis_key(key);
        let ttl = self.inner.ttl_seconds;
        let mut connection = self.inner.connection.clone();
        self.call(async move { connection.set_ex::<_, _, ()>(name, bytes, ttl).await })
            .await;
    }

    /// Runs one Redis call within the timeout, unless Redis is resting; records whether
    /// it answered.
    async fn call<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        let resting = *self.inner.resting_until.lock().expect("rest lock");
        if resting.is_some_and(|until| Instant::now() < until) {
            ::metrics::counter!(metrics::CACHE_SHARED_FALLBACKS).increment(1);
            return None;
        }
        let outcome = match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.inner.timeout)),
        };
        match outcome {
            Ok(value) => {
                if !self.inner.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("the shared response cache (Redis) answers again");
                }
                Some(value)
            }
            Err(error) => {
                ::metrics::counter!(metrics::CACHE_SHARED_FALLBACKS).increment(1);
                *self.inner.resting_until.lock().expect("rest lock") =
                    Some(Instant::now() + RETRY_AFTER);
                if self.inner.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, "the shared response cache (Redis) is away; serving from the local cache until it returns");
                }
                None
            }
        }
    }
}

fn encode(reply: &CachedReply) -> Vec<u8> {
    let entry = serde_json::json!({
        "served_by": reply.served_by,
        "payload": reply.reply.payload,
    });
    serde_json::to_vec(&entry).unwrap_or_default()
}

/// An entry this version cannot read is a miss.
fn decode(bytes: &[u8]) -> Option<CachedReply> {
    let mut entry: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let served_by = entry.get("served_by")?.as_str()?.into();
    let serde_json::Value::Object(payload) = entry.get_mut("payload")?.take() else {
        return None;
    };
    Some(CachedReply {
        reply: Reply::new(payload),
        served_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_entry_reads_back_as_it_was_stored() {
        let reply = CachedReply {
            reply: Reply::new(
                json!({"answer": [1, 2], "ok": true})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            served_by: "hhni_001".into(),
        };
        let read = decode(&encode(&reply)).unwrap();
        assert_eq!((read.reply, read.served_by), (reply.reply, reply.served_by));
        assert!(decode(b"{\"payload\": 3}").is_none());
    }
}
