//! The gRPC API (`aimbus.v1.Bus`) of a real gateway on 127.0.0.1:0: a request routed as
//! `POST /api/v1/messages` routes it, the same token rules over the `authorization`
//! metadata (the JWT attack set), limits, errors as statuses with standard details, and
//! `Watch` streaming the registry's changes.

mod common;

use aimbus_gateway::Role;
use aimbus_grpc::pb;
use common::tokens::{claims, forged, hs256};
use common::{SECRET, TestGateway, start};
use serde_json::json;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

fn message(source: &str, target: &str, payload: serde_json::Value) -> pb::IntegrationMessage {
    let message = aimbus_core::IntegrationMessage::new(
        source,
        target,
        "data_request",
        payload.as_object().unwrap().clone(),
    );
    aimbus_grpc::to_proto(&message)
}

fn with_token<T>(body: T, token: &str) -> Request<T> {
    let mut request = Request::new(body);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn request(
    gw: &TestGateway,
    token: &str,
    body: pb::IntegrationMessage,
) -> Result<pb::IntegrationMessage, Status> {
    let mut bus = gw.bus().await;
    bus.request(with_token(body, token))
        .await
        .map(tonic::Response::into_inner)
}

/// The problem type a status's `ErrorInfo` names.
fn problem_type(status: &Status) -> String {
    let info = status
        .get_details_error_info()
        .expect("an ErrorInfo detail");
    assert_eq!(info.domain, "aimbus");
    info.metadata["type"].clone()
}

#[actix_rt::test]
async fn a_request_is_routed_and_answered_with_the_system_s_reply() {
    let gw = start("").await;
    let token = gw.token("cmc_001", &[Role::Publisher]);
    let sent = message("cmc_001", "hhni_001", json!({"q": "x", "n": 3}));
    let mut bus = gw.bus().await;
    let response = bus.request(with_token(sent.clone(), &token)).await.unwrap();
    assert_eq!(response.metadata().get("x-served-by").unwrap(), "hhni_001");
    let reply = aimbus_grpc::from_proto(response.into_inner(), 32).unwrap();
    assert_eq!(
        reply.correlation_id.as_deref(),
        Some(sent.message_id.as_str())
    );
    assert_eq!(reply.source_system, "hhni_001");
    assert_eq!(reply.payload["served_type"], "data_request");
    assert_eq!(reply.payload["n"], 3);
    // Counted and timed beside the HTTP API's requests.
    let metrics = gw
        .http
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = metrics.lines().any(|line| {
        line.starts_with("aimbus_grpc_requests_total{")
            && line.contains(r#"method="Request""#)
            && line.contains(r#"code="OK""#)
    });
    assert!(counted, "{metrics}");
    assert!(metrics.contains("aimbus_grpc_request_duration_seconds_bucket{"));
    gw.stop().await;
}

#[actix_rt::test]
async fn errors_are_statuses_with_the_problem_s_type() {
    let gw = start("").await;
    let token = gw.token("cmc_001", &[Role::Publisher]);
    let unknown = request(
        &gw,
        &token,
        message("cmc_001", "nobody_001", json!({"q": 1})),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_eq!(problem_type(&unknown), "urn:aimbus:problem:unknown-system");

    let empty = request(&gw, &token, message("cmc_001", "hhni_001", json!({})))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");
    assert!(empty.message().contains("payload"), "{empty:?}");

    // Without the broker bridge nothing can be enqueued: refused, never accepted and lost.
    let mut bus = gw.bus().await;
    let send = bus
        .send(with_token(
            message("cmc_001", "hhni_001", json!({"q": 1})),
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(send.code(), Code::Unavailable, "{send:?}");
    assert_eq!(problem_type(&send), "urn:aimbus:problem:async-unavailable");
    let info = send.get_details_error_info().unwrap();
    assert_eq!(info.reason, "ASYNC_UNAVAILABLE");
    gw.stop().await;
}

#[actix_rt::test]
async fn oversized_and_overdeep_messages_are_refused_and_the_api_keeps_serving() {
    let gw = start("[limits]\nmax_message_bytes = 65536\nmax_nesting_depth = 8\n").await;
    let token = gw.token("cmc_001", &[Role::Publisher]);
    let big = message("cmc_001", "hhni_001", json!({"blob": "x".repeat(70_000)}));
    let refused = request(&gw, &token, big).await.unwrap_err();
    // tonic's code for a message over the decoding limit, naming the limit.
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("65536"), "{refused:?}");

    let mut deep = json!({"leaf": 1});
    for _ in 0..10 {
        deep = json!({"inner": deep});
    }
    let refused = request(&gw, &token, message("cmc_001", "hhni_001", deep))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("nests deeper than 8"),
        "{refused:?}"
    );

    let fine = request(&gw, &token, message("cmc_001", "hhni_001", json!({"q": 1})))
        .await
        .unwrap();
    assert_eq!(fine.source_system, "hhni_001");
    gw.stop().await;
}

#[actix_rt::test]
async fn the_jwt_attack_set_is_refused_over_metadata() {
    let gw = start("").await;
    let good = hs256(&claims("cmc_001"), SECRET.as_bytes());
    let body = || message("cmc_001", "hhni_001", json!({"q": 1}));
    request(&gw, &good, body())
        .await
        .expect("the control token works");
    for (name, token, reason) in forged(&good) {
        let refused = request(&gw, &token, body()).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{name}: {refused:?}");
        assert!(refused.message().contains(reason), "{name}: {refused:?}");
        assert_eq!(problem_type(&refused), "urn:aimbus:problem:unauthenticated");
    }
    let mut bus = gw.bus().await;
    let anonymous = bus.request(Request::new(body())).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // Roles and the subject bound what a token may do, as over HTTP.
    let readonly = gw.token("cmc_001", &[Role::Readonly]);
    let refused = request(&gw, &readonly, body()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let spoofing = gw.token("hhni_001", &[Role::Publisher, Role::Admin]);
    let refused = request(&gw, &spoofing, body()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("speaks for `hhni_001`"),
        "{refused:?}"
    );
    // Watching needs at least readonly.
    let refused = bus
        .watch(Request::new(pb::WatchRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    gw.stop().await;
}

#[actix_rt::test]
async fn watch_streams_the_registry_then_its_changes() {
    let gw = start("").await;
    let readonly = gw.token("ops_001", &[Role::Readonly]);
    let mut bus = gw.bus().await;
    let mut all = bus
        .watch(with_token(pb::WatchRequest::default(), &readonly))
        .await
        .unwrap()
        .into_inner();
    let mut snapshot = Vec::new();
    for _ in 0..2 {
        let event = all.message().await.unwrap().unwrap();
        assert_eq!(event.kind, "system_registered");
        snapshot.push(event.system_id);
    }
    snapshot.sort();
    assert_eq!(snapshot, ["cmc_001", "hhni_001"]);
    let only_new = pb::WatchRequest {
        system_ids: vec!["seg_001".into()],
    };
    let mut filtered = bus
        .watch(with_token(only_new, &readonly))
        .await
        .unwrap()
        .into_inner();

    let new_system = serde_json::to_value(common::system("seg_001", "seg")).unwrap();
    let created = gw
        .http
        .post(gw.url("/api/v1/systems"))
        .bearer_auth(gw.token("ops_001", &[Role::Admin]))
        .json(&new_system)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    for stream in [&mut all, &mut filtered] {
        let event = stream.message().await.unwrap().unwrap();
        assert_eq!(
            (event.kind.as_str(), event.system_id.as_str()),
            ("system_registered", "seg_001")
        );
        let json = aimbus_grpc::payload_of(event.event.unwrap(), 32).unwrap();
        assert_eq!(json["system"]["system_type"], "seg");
    }
    // Stopping ends the watches instead of waiting for them forever.
    gw.stop().await;
    let end = all.message().await.unwrap_err();
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
}
