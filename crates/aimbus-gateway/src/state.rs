use std::sync::{Arc, Mutex};

use aimbus_actors::router::RateLimiter;
use aimbus_actors::{RegistryHandle, RouterHandle};
use aimbus_bridge::Bridge;
use aimbus_core::{Codec, Config, Keyring};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::{Authenticator, Caller};
use crate::problem::Problem;

/// Everything a request handler needs, shared by every worker of the server.
pub struct Gateway {
    pub(crate) router: RouterHandle,
    pub(crate) registry: RegistryHandle,
    pub(crate) codec: Codec,
    pub(crate) auth: Authenticator,
    /// Enqueues `Prefer: respond-async` messages; without it they are refused with 503.
    pub(crate) bridge: Option<Arc<Bridge>>,
    /// Requests per token subject; `None` when rate limiting is off.
    limiter: Option<Mutex<RateLimiter>>,
    pub(crate) max_body_bytes: usize,
    pub(crate) metrics: Option<PrometheusHandle>,
    /// Compress responses for clients that accept it (`performance.enable_compression`).
    pub(crate) compress: bool,
    /// Opens sealed payloads (refusing tampered ones) and seals their replies.
    pub(crate) keyring: Option<Arc<Keyring>>,
}

impl Gateway {
    pub fn new(
        config: &Config,
        router: RouterHandle,
        registry: RegistryHandle,
        auth: Authenticator,
    ) -> Gateway {
        let limits = config.rate_limiting();
        Gateway {
            router,
            registry,
            codec: Codec::new(config.decode_limits()),
            auth,
            bridge: None,
            limiter: limits.enable_rate_limiting.then(|| {
                Mutex::new(RateLimiter::new(
                    limits.rate_limit_requests_per_minute,
                    limits.rate_limit_burst_size,
                ))
            }),
            max_body_bytes: config.decode_limits().max_bytes,
            metrics: None,
            compress: config.performance().enable_compression,
            keyring: None,
        }
    }

    /// Serves `Prefer: respond-async` by enqueueing on this bridge's ingress.
    pub fn with_bridge(mut self, bridge: Arc<Bridge>) -> Gateway {
        self.bridge = Some(bridge);
        self
    }

    /// Opens sealed payloads with this keyring (`security.enable_encryption`).
    pub fn with_keyring(mut self, keyring: Arc<Keyring>) -> Gateway {
        self.keyring = Some(keyring);
        self
    }

    /// Serves `/metrics` from this exporter.
    pub fn with_metrics(mut self, metrics: PrometheusHandle) -> Gateway {
        self.metrics = Some(metrics);
        self
    }

    /// Authenticates the request and charges its subject's rate limit.
    pub(crate) fn caller(&self, request: &actix_web::HttpRequest) -> Result<Caller, Problem> {
        let header = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION);
        self.caller_of(header.map(|h| h.as_bytes()))
    }

    /// The caller an `Authorization` value names, its subject's rate limit charged.
    pub(crate) fn caller_of(&self, authorization: Option<&[u8]>) -> Result<Caller, Problem> {
        let caller = self.auth.authenticate(authorization)?;
        if let (Some(limiter), Some(subject)) = (&self.limiter, &caller.subject) {
            let now = tokio::time::Instant::now();
            let acquired = limiter.lock().expect("limiter lock").acquire(subject, now);
            if let Err(after) = acquired {
                ::metrics::counter!(crate::metrics::RATE_LIMITED).increment(1);
                return Err(Problem::rate_limited(
                    format!("`{subject}` sent more requests than its rate allows"),
                    after,
                ));
            }
        }
        Ok(caller)
    }
}
