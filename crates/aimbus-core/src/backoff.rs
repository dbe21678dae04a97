//! Waits that grow, with jitter. Every loop that waits before trying again (the bridge,
//! the SDK's worker and client reconnecting, the router between attempts) draws its waits
//! here, so clients that failed together do not all try again in the same instant.

use std::time::Duration;

use rand::Rng;

/// Each wait is scaled by a random factor in `1 ± JITTER`.
pub const JITTER: f64 = 0.2;

/// `delay` scaled by a random factor in `1 ± JITTER`; saturates at `Duration::MAX`
/// instead of overflowing, whatever the delay.
pub fn jitter(delay: Duration, rng: &mut impl Rng) -> Duration {
    let factor = rng.random_range(1.0 - JITTER..=1.0 + JITTER);
    Duration::try_from_secs_f64(delay.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// Reconnect waits: doubling from `first` up to `max`, each one jittered; `reset` once
/// connected again.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// First wait of a reconnect loop.
    pub const RECONNECT_FIRST: Duration = Duration::from_millis(200);
    /// Longest wait of a reconnect loop.
    pub const RECONNECT_MAX: Duration = Duration::from_secs(10);

    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// How a connection to the broker is tried again: 200 ms doubling to 10 s.
    pub fn reconnect() -> Backoff {
        Backoff::new(Self::RECONNECT_FIRST, Self::RECONNECT_MAX)
    }

    /// The wait before the next try (jittered), doubling the one after.
    pub fn next_wait(&mut self) -> Duration {
        let wait = jitter(self.next, &mut rand::rng());
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// Back to the first wait, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reconnect_waits_double_to_the_cap_jittered_and_reset() {
        let mut backoff = Backoff::reconnect();
        let within = |wait: Duration, base: f64| {
            let s = wait.as_secs_f64();
            s >= base * (1.0 - JITTER) - 1e-9 && s <= base * (1.0 + JITTER) + 1e-9
        };
        for base in [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0] {
            let wait = backoff.next_wait();
            assert!(within(wait, base), "{wait:?} not within 20% of {base}");
        }
        backoff.reset();
        assert!(within(backoff.next_wait(), 0.2));
    }

    #[test]
    fn waits_drawn_together_differ() {
        let waits: Vec<Duration> = (0..16).map(|_| Backoff::reconnect().next_wait()).collect();
        assert!(waits.iter().any(|w| *w != waits[0]), "no jitter: {waits:?}");
    }

    proptest! {
        #[test]
        fn jitter_never_panics_and_saturates(nanos in any::<u64>(), secs in any::<u64>(), seed in any::<u64>()) {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            let delay = Duration::new(secs, (nanos % 1_000_000_000) as u32);
            let wait = jitter(delay, &mut rng);
            let base = delay.as_secs_f64();
            let within = (base * (1.0 - JITTER) - 1e-9..=base * (1.0 + JITTER) + 1e-9)
                .contains(&wait.as_secs_f64());
            prop_assert!(wait == Duration::MAX || within, "{delay:?} became {wait:?}");
            prop_assert!(jitter(Duration::MAX, &mut rng) <= Duration::MAX);
        }
    }
}
