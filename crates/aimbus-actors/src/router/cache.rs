//! Replies to cacheable message types, keyed by target, message type and a canonical hash
//! of the payload, bounded in bytes and expiring after `cache_ttl_seconds`; with
//! `distributed_cache_enabled`, backed by a tier shared between nodes ([`SharedCache`]).

use std::sync::Arc;
use std::time::Duration;

use aimbus_core::{CachingConfig, Config, EvictionPolicy, IntegrationMessage};
use moka::sync::Cache;

use super::shared_cache::SharedCache;
use crate::metrics;
use crate::transport::Reply;

#[derive(Debug, Clone)]
pub struct CachedReply {
    pub reply: Reply,
    pub served_by: Arc<str>,
}

pub type CacheKey = [u8; 32];

#[derive(Clone)]
pub struct ResponseCache {
    entries: Cache<CacheKey, Arc<CachedReply>>,
    cacheable: Arc<[String]>,
    shared: Option<SharedCache>,
}

impl ResponseCache {
    /// The cache `caching` describes, with its shared tier when one is configured.
    pub fn for_config(config: &Config) -> Result<ResponseCache, redis::RedisError> {
        let mut cache = ResponseCache::new(config.caching());
        if config.caching().distributed_cache_enabled {
            cache.shared = Some(SharedCache::new(config)?);
        }
        Ok(cache)
    }

    /// The local tier alone.
    pub fn new(config: &CachingConfig) -> ResponseCache {
        let policy = match config.cache_eviction_policy {
            EvictionPolicy::Lru => moka::policy::EvictionPolicy::lru(),
            EvictionPolicy::Lfu => moka::policy::EvictionPolicy::tiny_lfu(),
        };
        let entries = Cache::builder()
            .max_capacity(config.cache_max_size_mb.saturating_mul(1024 * 1024))
            .weigher(|key: &CacheKey, value: &Arc<CachedReply>| {
                let bytes = key.len() + value.served_by.len() + value.reply.weight();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .time_to_live(Duration::from_secs(config.cache_ttl_seconds))
            .eviction_policy(policy)
            .build();
        ResponseCache {
            entries,
            cacheable: config.cacheable_message_types.clone().into(),
            shared: None,
        }
    }

    /// The tier shared between nodes, if there is one.
    pub fn shared(&self) -> Option<&SharedCache> {
        self.shared.as_ref()
    }

    /// The key for a message, if its type is cacheable. The payload is hashed as
    /// serialized JSON, whose object keys serde_json keeps sorted: the same payload
    /// always hashes the same, whatever order its fields arrived in.
    pub fn key(&self, message: &IntegrationMessage) -> Option<CacheKey> {
        if !self.cacheable.contains(&message.message_type) {
            return None;
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(message.target_system.as_bytes());
        hasher.update(&[0]);
        hasher.update(message.message_type.as_bytes());
        hasher.update(&[0]);
        // Serialized straight into the hasher: no copy of the payload per message.
        serde_json::to_writer(&mut hasher, &message.payload).ok()?;
        Some(*hasher.finalize().as_bytes())
    }

    pub fn get(&self, key: &CacheKey) -> Option<Arc<CachedReply>> {
        let hit = self.entries.get(key);
        let name = if hit.is_some() {
            metrics::CACHE_HITS
        } else {
            metrics::CACHE_MISSES
        };
        ::metrics::counter!(name).increment(1);
        hit
    }

    /// Keeps a reply here, and for the other nodes in the shared tier (in the background:
    /// the answer does not wait for Redis).
    pub fn insert(&self, key: CacheKey, reply: CachedReply) {
        let reply = Arc::new(reply);
        if let Some(shared) = self.shared.clone() {
            let reply = Arc::clone(&reply);
            tokio::spawn(async move { shared.put(&key, &reply).await });
        }
        self.entries.insert(key, reply);
    }

    /// Keeps a reply the shared tier gave, here only.
    pub fn insert_local(&self, key: CacheKey, reply: Arc<CachedReply>) {
        self.entries.insert(key, reply);
    }

    /// Bytes held now (after pending evictions run).
    pub fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(target: &str, message_type: &str, payload: serde_json::Value) -> IntegrationMessage {
        IntegrationMessage::new(
            "cmc_001",
            target,
            message_type,
            payload.as_object().unwrap().clone(),
        )
    }

    #[test]
    fn only_cacheable_types_have_keys_and_equal_payloads_share_one() {
        let cache = ResponseCache::new(&CachingConfig::default());
        assert!(
            cache
                .key(&message("hhni", "status_update", json!({"a": 1})))
                .is_none()
        );
        let a = cache
            .key(&message(
                "hhni",
                "data_request",
                json!({"a": 1, "b": [1, 2]}),
            ))
            .unwrap();
        let b = cache
            .key(&message(
                "hhni",
                "data_request",
                json!({"b": [1, 2], "a": 1}),
            ))
            .unwrap();
        assert_eq!(a, b, "field order does not matter");
        let other_target = cache
            .key(&message(
                "vif",
                "data_request",
                json!({"a": 1, "b": [1, 2]}),
            ))
            .unwrap();
        assert_ne!(a, other_target);
    }

    #[test]
    fn the_byte_budget_bounds_the_cache() {
        let config = CachingConfig {
            cache_max_size_mb: 1,
            ..CachingConfig::default()
        };
        let cache = ResponseCache::new(&config);
        let big = "x".repeat(64 * 1024);
        for i in 0..64 {
            let key = cache
                .key(&message("hhni", "data_request", json!({"i": i})))
                .unwrap();
            let payload = json!({"blob": big}).as_object().unwrap().clone();
            cache.insert(
                key,
                CachedReply {
                    reply: Reply::new(payload),
                    served_by: "hhni_001".into(),
                },
            );
        }
        assert!(
            cache.weighted_size() <= 1024 * 1024,
            "{}",
            cache.weighted_size()
        );
    }
}
