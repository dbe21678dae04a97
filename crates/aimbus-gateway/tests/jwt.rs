//! The JWT attack set: each forged, stale or misdirected token is refused with 401, each
//! overreach with 403.

mod common;

use aimbus_gateway::Role;
use common::tokens::{claims, hs256, now};
use common::{SECRET, assert_problem, message, start, start_with_keys};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

async fn post_with(gw: &common::TestGateway, token: &str) -> reqwest::Response {
    gw.http
        .post(gw.url("/api/v1/messages"))
        .bearer_auth(token)
        .json(&message("cmc_001", "hhni_001", "data_request"))
        .send()
        .await
        .unwrap()
}

/// A verified token is remembered (a caller sends the same one with every request), but
/// only within its own validity: one that expires while remembered is refused at once.
#[actix_rt::test]
async fn a_remembered_token_is_refused_once_it_expires() {
    let gw = start("[security]\njwt_leeway_seconds = 0\n").await;
    let mut short = claims("cmc_001");
    short["exp"] = json!(now() + 2);
    let token = hs256(&short, SECRET.as_bytes());
    for _ in 0..3 {
        assert_eq!(post_with(&gw, &token).await.status(), 200);
    }
    while now() <= short["exp"].as_i64().unwrap() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let refused = post_with(&gw, &token).await;
    let detail = assert_problem(refused, 401, "unauthenticated").await;
    assert!(detail.contains("ExpiredSignature"), "{detail}");
    // Another token with the same claims but a forged signature never rides on the
    // remembered one.
    let forged = hs256(&claims("cmc_001"), b"another-secret-0123456789abcdef01234");
    assert_eq!(post_with(&gw, &forged).await.status(), 401);
}

#[actix_rt::test]
async fn forged_stale_and_misdirected_tokens_are_refused() {
    let gw = start("").await;
    let good = hs256(&claims("cmc_001"), SECRET.as_bytes());
    assert_eq!(
        post_with(&gw, &good).await.status(),
        200,
        "the control token works"
    );

    let cases = common::tokens::forged(&good);
    for (name, token, reason) in &cases {
        let r = post_with(&gw, token).await;
        assert_eq!(r.status(), 401, "{name}: {:?}", r.status());
        let detail = assert_problem(r, 401, "unauthenticated").await;
        assert!(detail.contains(reason), "{name}: {detail}");
    }
    let r = gw
        .http
        .post(gw.url("/api/v1/messages"))
        .json(&message("cmc_001", "hhni_001", "data_request"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthenticated").await;
    gw.stop().await;
}

#[actix_rt::test]
async fn roles_and_the_subject_bound_what_a_token_may_do() {
    let gw = start("").await;
    // A readonly token may not send.
    let readonly = gw.token("cmc_001", &[Role::Readonly]);
    assert_problem(post_with(&gw, &readonly).await, 403, "forbidden").await;
    // A publisher speaks for its own system (or its type), never for another.
    let spoofing = gw.token("hhni_001", &[Role::Publisher]);
    let detail = assert_problem(post_with(&gw, &spoofing).await, 403, "forbidden").await;
    assert!(detail.contains("speaks for `hhni_001`"), "{detail}");
    let r = gw
        .post_message("cmc_001", &message("cmc", "hhni_001", "data_request"))
        .await;
    assert_eq!(r.status(), 200, "the subject's own type may be the source");
    // Even an admin cannot impersonate.
    let admin = gw.token("ops_001", &[Role::Admin]);
    assert_problem(post_with(&gw, &admin).await, 403, "forbidden").await;
    // Unknown roles grant nothing.
    let mut odd = claims("cmc_001");
    odd["roles"] = json!(["superuser"]);
    let r = gw
        .http
        .get(gw.url("/api/v1/systems"))
        .bearer_auth(hs256(&odd, SECRET.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "forbidden").await;
    gw.stop().await;
}

#[actix_rt::test]
async fn pinned_public_key_algorithms_select_keys_by_kid_and_refuse_confusion() {
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let gw = start_with_keys(
        "[security]\njwt_algorithm = \"RS256\"\njwt_public_keys = { rsa-1 = \"rsa.pub.pem\" }\n",
        &keys,
    )
    .await;
    let private = std::fs::read(keys.join("rsa.key")).unwrap();
    let sign = |kid: Option<&str>| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(
            &header,
            &claims("cmc_001"),
            &EncodingKey::from_rsa_pem(&private).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(post_with(&gw, &sign(Some("rsa-1"))).await.status(), 200);
    for (name, token) in [
        ("unknown kid", sign(Some("rsa-9"))),
        ("no kid", sign(None)),
        // The classic confusion: HS256 keyed with the server's own public key.
        (
            "HS256 signed with the RSA public key",
            hs256(
                &claims("cmc_001"),
                &std::fs::read(keys.join("rsa.pub.pem")).unwrap(),
            ),
        ),
    ] {
        let r = post_with(&gw, &token).await;
        assert_eq!(r.status(), 401, "{name}");
        assert_problem(r, 401, "unauthenticated").await;
    }
    gw.stop().await;

    let gw = start_with_keys(
        "[security]\njwt_algorithm = \"EdDSA\"\njwt_public_keys = { ed-1 = \"ed.pub.pem\" }\n",
        &keys,
    )
    .await;
    let private = std::fs::read(keys.join("ed.key")).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed-1".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims("cmc_001"),
        &EncodingKey::from_ed_pem(&private).unwrap(),
    )
    .unwrap();
    assert_eq!(post_with(&gw, &token).await.status(), 200);
    gw.stop().await;
}

#[test]
fn a_missing_secret_file_is_created_random_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwt.secret");
    let first = aimbus_gateway::load_or_create_secret(&path, None).unwrap();
    assert_eq!(first.len(), 64);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        aimbus_gateway::load_or_create_secret(&path, None).unwrap(),
        first
    );
    let other = tempfile::tempdir().unwrap();
    let second = aimbus_gateway::load_or_create_secret(&other.path().join("s"), None).unwrap();
    assert_ne!(first, second);
    let short = aimbus_gateway::load_or_create_secret(&path, Some("short".into())).unwrap_err();
    assert!(short.to_string().contains("too short"), "{short}");
}
