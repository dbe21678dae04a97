//! Tokens for the JWT attack set, shared by the HTTP and the gRPC API's tests.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::SECRET;

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Valid claims for `sub`, to be spoiled one at a time.
pub fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": "aimbus", "aud": "aimbus", "exp": now() + 600, "roles": ["publisher"]})
}

pub fn hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
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

/// Forged, stale and misdirected tokens for `cmc_001`, each with what its refusal must
/// say; `good` is a valid one (the oversized case extends it).
pub fn forged(good: &str) -> Vec<(&'static str, String, &'static str)> {
    let mut cases: Vec<(&'static str, String, &'static str)> = Vec::new();
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

    cases
}
