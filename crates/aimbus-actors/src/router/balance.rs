//! Picking one instance among several: round robin, least in flight by the power of two
//! choices, or weighted by each system's configured `weight`.

use std::collections::HashMap;

use aimbus_core::{LoadBalancingAlgorithm, SystemInfo};
use rand::Rng;

/// An instance the balancer may pick, with what the algorithms look at, and whatever
/// the caller keeps with it (`item`).
#[derive(Debug, Clone, Copy)]
pub struct Choice<'a, T> {
    pub system: &'a SystemInfo,
    pub in_flight: usize,
    pub item: T,
}

/// The `weight` in a system's configuration (a positive number), or 1.
pub fn weight_of(system: &SystemInfo) -> f64 {
    system
        .configuration
        .get("weight")
        .and_then(serde_json::Value::as_f64)
        .filter(|w| w.is_finite() && *w > 0.0)
        .unwrap_or(1.0)
}

#[derive(Debug)]
pub struct Balancer {
    algorithm: LoadBalancingAlgorithm,
    /// Round robin position per target.
    cursors: HashMap<String, usize>,
    /// Smooth weighted round robin (as nginx does) credit per system id.
    credit: HashMap<String, f64>,
}

impl Balancer {
    pub fn new(algorithm: LoadBalancingAlgorithm) -> Balancer {
        Balancer {
            algorithm,
            cursors: HashMap::new(),
            credit: HashMap::new(),
        }
    }

    /// Orders `choices` with the preferred instance first; the rest are what to try next.
    pub fn rank<'a, T>(
        &mut self,
        target: &str,
        mut choices: Vec<Choice<'a, T>>,
        rng: &mut impl Rng,
    ) -> Vec<Choice<'a, T>> {
        if choices.len() < 2 {
            return choices;
        }
        let first = match self.algorithm {
            LoadBalancingAlgorithm::RoundRobin => {
                let cursor = slot(&mut self.cursors, target);
                let first = *cursor % choices.len();
                *cursor = cursor.wrapping_add(1);
                first
            }
            LoadBalancingAlgorithm::LeastInFlight => {
                // Two random candidates, the less busy wins: near-best balance without
                // the herd a global minimum attracts.
                let a = rng.random_range(0..choices.len());
                let mut b = rng.random_range(0..choices.len() - 1);
                if b >= a {
                    b += 1;
                }
                if choices[b].in_flight < choices[a].in_flight {
                    b
                } else {
                    a
                }
            }
            LoadBalancingAlgorithm::Weighted => {
                let total: f64 = choices.iter().map(|c| weight_of(c.system)).sum();
                let mut best = 0;
                let mut best_credit = f64::MIN;
                for (i, choice) in choices.iter().enumerate() {
                    let credit = slot(&mut self.credit, &choice.system.system_id);
                    *credit += weight_of(choice.system);
                    if *credit > best_credit {
                        best_credit = *credit;
                        best = i;
                    }
                }
                if let Some(credit) = self.credit.get_mut(&choices[best].system.system_id) {
                    *credit -= total;
                }
                best
            }
        };
        choices.rotate_left(first);
        choices
    }

    /// Forgets a system that left the registry.
    pub fn forget(&mut self, system_id: &str) {
        self.credit.remove(system_id);
        self.cursors.remove(system_id);
    }
}

/// The entry for `key`, made on first use: a known key costs no allocation per message,
/// as `entry(key.to_owned())` would.
fn slot<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("just inserted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::json;

    fn system(id: &str, weight: f64) -> SystemInfo {
        serde_json::from_value(json!({
            "system_id": id, "system_type": "hhni", "name": id, "version": "1",
            "interfaces": {"rest_api": "http://localhost:1"},
            "configuration": {"weight": weight},
        }))
        .unwrap()
    }

    fn picks(
        algorithm: LoadBalancingAlgorithm,
        systems: &[(SystemInfo, usize)],
        n: usize,
    ) -> HashMap<String, usize> {
        let mut balancer = Balancer::new(algorithm);
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = HashMap::new();
        for _ in 0..n {
            let choices = systems
                .iter()
                .map(|(s, in_flight)| Choice {
                    system: s,
                    in_flight: *in_flight,
                    item: (),
                })
                .collect();
            let ranked = balancer.rank("hhni", choices, &mut rng);
            assert_eq!(
                ranked.len(),
                systems.len(),
                "every instance stays a candidate"
            );
            *counts
                .entry(ranked[0].system.system_id.clone())
                .or_default() += 1;
        }
        counts
    }

    #[test]
    fn round_robin_takes_turns() {
        let systems = [
            (system("a", 1.0), 0),
            (system("b", 1.0), 0),
            (system("c", 1.0), 0),
        ];
        let counts = picks(LoadBalancingAlgorithm::RoundRobin, &systems, 300);
        assert!(counts.values().all(|&n| n == 100), "{counts:?}");
    }

    #[test]
    fn least_in_flight_avoids_the_busy_instance() {
        let systems = [
            (system("a", 1.0), 50),
            (system("b", 1.0), 0),
            (system("c", 1.0), 0),
        ];
        let counts = picks(LoadBalancingAlgorithm::LeastInFlight, &systems, 3_000);
        // `a` wins only when both random candidates are `a`, which two distinct picks
        // never are.
        assert_eq!(counts.get("a"), None, "{counts:?}");
    }

    #[test]
    fn weighted_follows_the_configured_weights_smoothly() {
        let systems = [
            (system("a", 5.0), 0),
            (system("b", 1.0), 0),
            (system("c", 1.0), 0),
        ];
        let counts = picks(LoadBalancingAlgorithm::Weighted, &systems, 700);
        assert_eq!((counts["a"], counts["b"], counts["c"]), (500, 100, 100));
        assert_eq!(
            weight_of(&system("x", -3.0)),
            1.0,
            "nonsense weights count as 1"
        );
    }
}
