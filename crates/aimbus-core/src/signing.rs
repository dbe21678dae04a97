//! Signatures of ingress messages: HMAC-SHA256, with a key per source system, over a
//! canonical form of the envelope that any language can build without re-encoding the
//! body: `v1`, the message id, source, target and message type, and the SHA-256 of the
//! body bytes exactly as published, one per line.

use std::collections::BTreeMap;
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::secret_file::{decode_hex, encode_hex};
use crate::{Error, IntegrationMessage};

type HmacSha256 = Hmac<Sha256>;

/// The only scheme so far; a signature reads `v1=<64 hex digits>`.
const SCHEME: &str = "v1";

/// The signing keys file: `[keys]` with one `<source_system> = "<hex key>"` per sender.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningKeysFile {
    keys: BTreeMap<String, String>,
}

pub struct SigningKeys {
    by_source: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("SigningKeys")
            .field("sources", &self.by_source.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SigningKeys {
    pub fn from_toml_str(origin: &str, text: &str) -> Result<SigningKeys, Error> {
        let error = |reason: String| Error::Keyring {
            path: origin.to_owned(),
            reason,
        };
        let file: SigningKeysFile = toml::from_str(text).map_err(|e| error(e.to_string()))?;
        let mut by_source = BTreeMap::new();
        for (source, hex) in file.keys {
            let key = decode_hex(&hex).filter(|k| k.len() >= 32).ok_or_else(|| {
                error(format!(
                    "the key of `{source}` must be at least 64 hex digits (32 bytes)"
                ))
            })?;
            by_source.insert(source, key);
        }
        Ok(SigningKeys { by_source })
    }

    pub fn load(path: &Path) -> Result<SigningKeys, Error> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Keyring {
            path: origin.clone(),
            reason: e.to_string(),
        })?;
        SigningKeys::from_toml_str(&origin, &text)
    }

    /// The signature of `message` published as `body`, with its source's key.
    pub fn sign(&self, message: &IntegrationMessage, body: &[u8]) -> Option<String> {
        let key = self.by_source.get(&message.source_system)?;
        let tag = mac(key, message, body).finalize().into_bytes();
        Some(format!("{SCHEME}={}", encode_hex(&tag)))
    }

    /// Checks `signature` (the header's value, if any). Without one, the message passes
    /// only when signatures are not `required`; a wrong one never passes.
    pub fn verify(
        &self,
        message: &IntegrationMessage,
        body: &[u8],
        signature: Option<&str>,
        required: bool,
    ) -> Result<(), Error> {
        let Some(signature) = signature else {
            return if required {
                Err(Error::BadSignature("the message is not signed".into()))
            } else {
                Ok(())
            };
        };
        let refused = |reason: &str| Error::BadSignature(reason.to_owned());
        let key = self
            .by_source
            .get(&message.source_system)
            .ok_or_else(|| refused(&format!("no signing key for `{}`", message.source_system)))?;
        let hex = signature
            .strip_prefix("v1=")
            .ok_or_else(|| refused("expected `v1=<hex>`"))?;
        let tag = decode_hex(hex).ok_or_else(|| refused("the signature is not hex"))?;
        // Constant-time comparison, by the MAC itself.
        mac(key, message, body)
            .verify_slice(&tag)
            .map_err(|_| refused("it does not match the message"))
    }
}

fn mac(key: &[u8], message: &IntegrationMessage, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&canonical(message, body));
    mac
}

/// The signed text: scheme, id, source, target, type and the body's SHA-256, one per line.
pub fn canonical(message: &IntegrationMessage, body: &[u8]) -> Vec<u8> {
    let digest = encode_hex(&Sha256::digest(body));
    [
        SCHEME,
        &message.message_id,
        &message.source_system,
        &message.target_system,
        &message.message_type,
        &digest,
    ]
    .join("\n")
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys() -> SigningKeys {
        let text = format!("[keys]\ncmc_001 = \"{}\"\n", "ab".repeat(32));
        SigningKeys::from_toml_str("test", &text).unwrap()
    }

    fn message() -> IntegrationMessage {
        let payload = json!({"q": 1}).as_object().unwrap().clone();
        IntegrationMessage::new("cmc_001", "hhni_001", "data_request", payload)
    }

    #[test]
    fn a_signature_binds_the_envelope_and_the_body() {
        let keys = keys();
        let message = message();
        let body = br#"{"some":"body"}"#;
        let signature = keys.sign(&message, body).unwrap();
        assert!(
            signature.starts_with("v1=") && signature.len() == 67,
            "{signature}"
        );
        keys.verify(&message, body, Some(&signature), true).unwrap();
        let mut other = message.clone();
        other.target_system = "vif_001".into();
        let mut spoofed = message.clone();
        spoofed.source_system = "vif_001".into();
        let flipped = format!("v1={}", "0".repeat(64));
        for (name, m, b, s) in [
            (
                "another body",
                &message,
                &b"{}"[..],
                Some(signature.as_str()),
            ),
            (
                "another target",
                &other,
                &body[..],
                Some(signature.as_str()),
            ),
            (
                "a source without a key",
                &spoofed,
                &body[..],
                Some(signature.as_str()),
            ),
            ("a wrong tag", &message, &body[..], Some(flipped.as_str())),
            ("another scheme", &message, &body[..], Some("v2=00")),
            ("unsigned, where required", &message, &body[..], None),
        ] {
            let error = keys.verify(m, b, s, true).unwrap_err();
            assert_eq!(
                error.kind(),
                crate::ErrorKind::Unauthorised,
                "{name}: {error}"
            );
        }
        keys.verify(&message, body, None, false).unwrap();
    }

    #[test]
    fn short_or_malformed_keys_are_refused() {
        for text in ["[keys]\ncmc_001 = \"abcd\"\n", "[keys]\ncmc_001 = \"zz\"\n"] {
            let error = SigningKeys::from_toml_str("k.toml", text).unwrap_err();
            assert!(error.to_string().contains("64 hex digits"), "{error}");
        }
    }
}
