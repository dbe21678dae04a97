//! Sealed payloads over HTTP: opened and answered sealed, refused when tampered with,
//! and still opened after a key rotation.

mod common;

use std::sync::Arc;

use aimbus_core::{IntegrationMessage, Keyring, SEALED_FIELD};
use aimbus_gateway::Role;
use common::{assert_problem, message, start_sealed};
use serde_json::{Value, json};

fn keyring(keys: &[(&str, &str, bool)]) -> Keyring {
    let text: String = keys
        .iter()
        .map(|(id, byte, primary)| {
            format!(
                "[[keys]]\nid = \"{id}\"\nkey = \"{}\"\ncreated = \"2026-11-01T00:00:00Z\"\nprimary = {primary}\n",
                byte.repeat(32)
            )
        })
        .collect();
    Keyring::from_toml_str("test", &text).unwrap()
}

fn sealed_message(keys: &Keyring) -> IntegrationMessage {
    let mut m: IntegrationMessage =
        serde_json::from_value(message("cmc_001", "hhni_001", "status_update")).unwrap();
    m.payload = json!({"secret": "launch codes"})
        .as_object()
        .unwrap()
        .clone();
    keys.seal(&mut m).unwrap();
    m
}

#[actix_rt::test]
async fn a_sealed_message_is_opened_routed_and_answered_sealed() {
    let keys = Arc::new(keyring(&[("k1", "11", true)]));
    let gw = start_sealed(Arc::clone(&keys)).await;
    let sent = sealed_message(&keys);
    assert!(
        !serde_json::to_string(&sent)
            .unwrap()
            .contains("launch codes")
    );
    let response = gw
        .post_message("cmc_001", &serde_json::to_value(&sent).unwrap())
        .await;
    assert_eq!(response.status(), 200);
    let mut reply: IntegrationMessage = response.json().await.unwrap();
    assert!(
        reply.payload.contains_key(SEALED_FIELD),
        "{:?}",
        reply.payload
    );
    keys.open(&mut reply).unwrap();
    assert_eq!(
        reply.payload["secret"], "launch codes",
        "the echo system saw the plaintext"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn a_tampered_sealed_payload_is_refused_with_400() {
    let keys = Arc::new(keyring(&[("k1", "11", true)]));
    let gw = start_sealed(Arc::clone(&keys)).await;
    let token = gw.token("cmc_001", &[Role::Publisher]);
    let post = |body: Value| {
        gw.http
            .post(gw.url("/api/v1/messages"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let sent = serde_json::to_value(sealed_message(&keys)).unwrap();
    let mut moved = sent.clone();
    moved["target_system"] = json!("cmc_001");
    let mut flipped = sent.clone();
    let ciphertext = flipped["payload"][SEALED_FIELD]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = if ciphertext.starts_with('A') {
        "B"
    } else {
        "A"
    };
    flipped["payload"][SEALED_FIELD]["ciphertext"] = json!(format!("{first}{}", &ciphertext[1..]));
    let mut unknown_key = sent.clone();
    unknown_key["payload"][SEALED_FIELD]["kid"] = json!("k7");
    for (name, body) in [
        ("moved to another target", moved),
        ("ciphertext", flipped),
        ("unknown key", unknown_key),
    ] {
        let detail = assert_problem(post(body).await.unwrap(), 400, "tampered").await;
        assert!(
            detail.contains("sealed payload refused"),
            "{name}: {detail}"
        );
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn after_a_rotation_messages_under_the_old_key_still_open() {
    let old = keyring(&[("k1", "11", true)]);
    let early = sealed_message(&old);
    let rotated = Arc::new(keyring(&[("k1", "11", false), ("k2", "22", true)]));
    let gw = start_sealed(Arc::clone(&rotated)).await;
    let response = gw
        .post_message("cmc_001", &serde_json::to_value(&early).unwrap())
        .await;
    assert_eq!(response.status(), 200);
    let mut reply: IntegrationMessage = response.json().await.unwrap();
    assert_eq!(
        reply.payload[SEALED_FIELD]["kid"], "k2",
        "replies use the new primary"
    );
    rotated.open(&mut reply).unwrap();
    assert_eq!(reply.payload["secret"], "launch codes");
    gw.stop().await;
}
