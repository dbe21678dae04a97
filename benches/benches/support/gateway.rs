//! What the benches that load the bus's APIs share: the token secret and a publisher's
//! token, the limits that keep a bench measuring the path rather than refusals, and the
//! latency histogram.
// Each bench uses a part of this module.
#![allow(dead_code)]

use std::time::Duration;

use aimbus_core::Config;
use aimbus_gateway::{Authenticator, Role, TokenRequest};
use hdrhistogram::Histogram;

const SECRET: &[u8] = b"bench-secret-0123456789abcdef0123456789abcdef";

/// The shipped defaults (authentication on) with limits no bench reaches and no health
/// checks: TOML to put before a bench's own settings.
pub const UNLIMITED: &str = r#"
[core]
max_concurrent_requests = 10000
max_concurrent_requests_per_system = 10000
[rate_limiting]
rate_limit_requests_per_minute = 10000000
rate_limit_burst_size = 1000000
[monitoring]
health_check_interval_seconds = 3600
"#;

/// The authenticator of a bench's gateway.
pub fn authenticator(config: &Config) -> Authenticator {
    Authenticator::new(config.security(), Some(SECRET.to_vec()), ".".as_ref()).unwrap()
}

/// A token for `cmc_001` as a publisher, valid for the bench's hour.
pub fn publisher_token(auth: &Authenticator) -> String {
    auth.mint(&TokenRequest {
        subject: "cmc_001".into(),
        roles: vec![Role::Publisher],
        ttl: Duration::from_secs(3600),
    })
    .unwrap()
}

/// Latencies in µs, up to a minute.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}
