//! 100,000 random and mutated bodies against the real gateway: no panic, no 5xx, and it
//! still serves afterwards. `AIMBUS_ROBUSTNESS_CASES` changes the count.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aimbus_core::{Codec, Format, IntegrationMessage};
use aimbus_gateway::Role;
use common::{message, start};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// How a valid body is spoiled.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1..32usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
    ]
}

fn apply(mut body: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = body.len().max(1);
        match m {
            Mutation::Flip { at, bits } => {
                if let Some(b) = body.get_mut(at % len) {
                    *b ^= bits;
                }
            }
            Mutation::Truncate { at } => body.truncate(at % len),
            Mutation::Insert { at, bytes } => {
                let at = (at % len).min(body.len());
                body.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete { at, len: n } => {
                let at = (at % len).min(body.len());
                let end = (at + n).min(body.len());
                body.drain(at..end);
            }
        }
    }
    body
}

/// A body and the content type it is sent with.
fn case(json: Vec<u8>, msgpack: Vec<u8>) -> impl Strategy<Value = (Vec<u8>, &'static str)> {
    let content_type = prop_oneof![
        Just("application/json"),
        Just("application/msgpack"),
        Just("application/json; charset=utf-8"),
    ];
    let mutated_json =
        prop::collection::vec(mutation(), 1..4).prop_map(move |m| apply(json.clone(), &m));
    let mutated_msgpack =
        prop::collection::vec(mutation(), 1..4).prop_map(move |m| apply(msgpack.clone(), &m));
    let random = prop::collection::vec(any::<u8>(), 0..2048);
    (
        prop_oneof![mutated_json, mutated_msgpack, random],
        content_type,
    )
}

#[actix_rt::test]
async fn random_and_mutated_bodies_get_4xx_never_5xx() {
    let cases: usize = std::env::var("AIMBUS_ROBUSTNESS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let gw = Arc::new(start("[rate_limiting]\nenable_rate_limiting = false\n").await);
    let codec = Codec::new(aimbus_core::Config::default().decode_limits());
    let valid: IntegrationMessage =
        serde_json::from_value(message("cmc_001", "hhni_001", "data_request")).unwrap();
    let strategy = case(
        codec.encode(Format::Json, &valid).unwrap(),
        codec.encode(Format::MessagePack, &valid).unwrap(),
    );
    let mut runner = TestRunner::deterministic();
    let bodies: Vec<(Vec<u8>, &'static str)> = (0..cases)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();

    let token = gw.token("cmc_001", &[Role::Publisher]);
    let next = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(bodies);
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (gw, token, next, bodies, statuses) = (
                Arc::clone(&gw),
                token.clone(),
                Arc::clone(&next),
                Arc::clone(&bodies),
                Arc::clone(&statuses),
            );
            actix_rt::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((body, content_type)) = bodies.get(i) else {
                        return;
                    };
                    let response = gw
                        .http
                        .post(gw.url("/api/v1/messages"))
                        .bearer_auth(&token)
                        .header("content-type", *content_type)
                        .body(body.clone())
                        .send()
                        .await
                        .expect("the gateway answers every request");
                    let status = response.status().as_u16();
                    assert!(
                        status < 500,
                        "case {i} ({content_type}, {body:?}) got {status}: {}",
                        response.text().await.unwrap_or_default()
                    );
                    *statuses.lock().unwrap().entry(status).or_insert(0usize) += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    eprintln!("robustness: {cases} bodies, statuses {statuses:?}");
    assert_eq!(statuses.values().sum::<usize>(), cases);
    let errors: usize = statuses
        .iter()
        .filter(|(s, _)| (400..500).contains(*s))
        .map(|(_, n)| n)
        .sum();
    assert!(errors > cases * 9 / 10, "mostly refused: {statuses:?}");
    let healthy = gw.http.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(healthy.status(), 200, "still serving");
}
