//! The JWT attack set: each forged, stale or misdirected token is refused with 401, each
//! overreach with 403.

mod common;

use aimbus_gateway::Role;
use common::{SECRET, assert_problem, message, start, start_with_keys};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Valid claims for `sub`, to be spoiled one at a time.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": "aimbus", "aud": "aimbus", "exp": now() + 600, "roles": ["publisher"]})
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    // RFC 4648 base64url without padding, written out so the forgeries below do not depend
    // on the library under test.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

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

    // (case, token, what the refusal must say)
    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    let body = b64(claims("cmc_001").to_string().as_bytes());
    cases.push((
        "alg none",
        format!("{}.{body}.", b64(br#"{"alg":"none","typ":"JWT"}"#)),
        "none",
    ));
    cases.push((
        "bad signature",
        hs256(&claims("cmc_001"), b"another-secret-0123456789abcdef01234"),
        "InvalidSignature",
    ));
    let mut expired = claims("cmc_001");
    expired["exp"] = json!(now() - 120);
    cases.push((
        "expired beyond the leeway",
        hs256(&expired, SECRET.as_bytes()),
        "ExpiredSignature",
    ));
    let mut early = claims("cmc_001");
    early["nbf"] = json!(now() + 600);
    cases.push((
        "not yet valid",
        hs256(&early, SECRET.as_bytes()),
        "ImmatureSignature",
    ));
    let mut string_exp = claims("cmc_001");
    string_exp["exp"] = json!((now() + 600).to_string());
    cases.push((
        "exp as a string",
        hs256(&string_exp, SECRET.as_bytes()),
        "exp",
    ));
    let mut no_exp = claims("cmc_001");
    no_exp.as_object_mut().unwrap().remove("exp");
    cases.push(("missing exp", hs256(&no_exp, SECRET.as_bytes()), "exp"));
    let mut wrong_iss = claims("cmc_001");
    wrong_iss["iss"] = json!("someone-else");
    cases.push((
        "wrong iss",
        hs256(&wrong_iss, SECRET.as_bytes()),
        "InvalidIssuer",
    ));
    let mut wrong_aud = claims("cmc_001");
    wrong_aud["aud"] = json!("another-service");
    cases.push((
        "wrong aud",
        hs256(&wrong_aud, SECRET.as_bytes()),
        "InvalidAudience",
    ));
    let mut no_aud = claims("cmc_001");
    no_aud.as_object_mut().unwrap().remove("aud");
    cases.push(("missing aud", hs256(&no_aud, SECRET.as_bytes()), "aud"));
    // The payload of a valid readonly token swapped for one claiming admin.
    let mut readonly = claims("cmc_001");
    readonly["roles"] = json!(["readonly"]);
    let genuine = hs256(&readonly, SECRET.as_bytes());
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut escalated = claims("cmc_001");
    escalated["roles"] = json!(["admin", "publisher"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(escalated.to_string().as_bytes()),
        parts[2]
    );
    cases.push(("role claim escalation", forged, "InvalidSignature"));
    cases.push((
        "oversized token",
        format!("{good}{}", "A".repeat(5000)),
        "longer than",
    ));
    cases.push(("garbage", "not-a-token".into(), "InvalidToken"));

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
