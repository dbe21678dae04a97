//! Payload encryption: AES-256-GCM under a keyring of named keys, one of them primary.
//! A sealed payload is a map with one entry, [`SEALED_FIELD`], holding the key id, a
//! random 96-bit nonce and the ciphertext; the message's id, source and target are bound
//! as associated data, so a sealed payload moved to another message does not open.
//! Older keys stay in the keyring to open what they sealed; only the primary seals.

use std::collections::BTreeMap;
use std::path::Path;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::secret_file::{decode_hex, random_hex, read_or_create_private};
use crate::{Error, IntegrationMessage};

/// The one field of a sealed payload.
pub const SEALED_FIELD: &str = "$aimbus_sealed";
const ALGORITHM: &str = "AES-256-GCM";
const NONCE_BYTES: usize = 12;

/// What a sealed payload holds, borrowed from it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed<'a> {
    alg: &'a str,
    kid: &'a str,
    nonce: &'a str,
    ciphertext: &'a str,
}

/// The keyring file: `[[keys]]` entries with `id`, `key` (64 hex digits), `created`
/// (RFC 3339) and, on exactly one, `primary = true`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    keys: Vec<KeyFileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileEntry {
    id: String,
    key: String,
    created: DateTime<Utc>,
    #[serde(default)]
    primary: bool,
}

struct KeyEntry {
    cipher: Aes256Gcm,
    created: DateTime<Utc>,
}

pub struct Keyring {
    keys: BTreeMap<String, KeyEntry>,
    primary: String,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Keyring")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("primary", &self.primary)
            .finish()
    }
}

impl Keyring {
    /// Reads a keyring file; `origin` names it in errors.
    pub fn from_toml_str(origin: &str, text: &str) -> Result<Keyring, Error> {
        let error = |reason: String| Error::Keyring {
            path: origin.to_owned(),
            reason,
        };
        let file: KeyringFile = toml::from_str(text).map_err(|e| error(e.to_string()))?;
        let mut keys = BTreeMap::new();
        let mut primary = None;
        for entry in file.keys {
            let bytes: [u8; 32] = decode_hex(&entry.key)
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| {
                error(format!(
                    "key `{}` must be 64 hex digits (32 bytes), for example from `openssl rand -hex 32`",
                    entry.id
                ))
            })?;
            if entry.primary && primary.replace(entry.id.clone()).is_some() {
                return Err(error(
                    "more than one key is primary; mark exactly one".into(),
                ));
            }
            let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(bytes));
            let created = entry.created;
            if keys
                .insert(entry.id.clone(), KeyEntry { cipher, created })
                .is_some()
            {
                return Err(error(format!("key id `{}` appears twice", entry.id)));
            }
        }
        let primary =
            primary.ok_or_else(|| error("no key is primary; mark one `primary = true`".into()))?;
        Ok(Keyring { keys, primary })
    }

    /// Reads the keyring at `path`, creating it (mode 0600) with one random primary key
    /// when it is missing.
    pub fn load_or_create(path: &Path) -> Result<Keyring, Error> {
        let origin = path.display().to_string();
        let text = read_or_create_private(path, || new_keyring_text("k1")).map_err(|e| {
            Error::Keyring {
                path: origin.clone(),
                reason: e.to_string(),
            }
        })?;
        Keyring::from_toml_str(&origin, &text)
    }

    pub fn primary_id(&self) -> &str {
        &self.primary
    }

    /// How old the primary key is at `now`.
    pub fn primary_age(&self, now: DateTime<Utc>) -> chrono::Duration {
        now - self.keys[&self.primary].created
    }

    /// Whether `payload` is sealed.
    pub fn is_sealed(payload: &Map<String, Value>) -> bool {
        payload.len() == 1 && payload.contains_key(SEALED_FIELD)
    }

    /// Replaces the message's payload by its sealed form under the primary key. A
    /// payload already sealed is left as it is.
    pub fn seal(&self, message: &mut IntegrationMessage) -> Result<(), Error> {
        if Keyring::is_sealed(&message.payload) {
            return Ok(());
        }
        message.payload = self.sealed_payload(message)?;
        Ok(())
    }

    /// A copy of the message with its payload sealed, made without copying the plain
    /// payload (the caller keeps the plain message, for retries and the cache).
    pub fn sealed_copy(&self, message: &IntegrationMessage) -> Result<IntegrationMessage, Error> {
        let mut sealed = message.without_payload();
        sealed.payload = if Keyring::is_sealed(&message.payload) {
            message.payload.clone()
        } else {
            self.sealed_payload(message)?
        };
        Ok(sealed)
    }

    /// The payload sealed: serialized once into a buffer this thread reuses, encrypted
    /// there in place (AES-GCM through the CPU's AES and carry-less multiply instructions,
    /// which the `aes` and `polyval` crates detect at run time), then base64url-encoded.
    fn sealed_payload(&self, message: &IntegrationMessage) -> Result<Map<String, Value>, Error> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let key = &self.keys[&self.primary];
        let aad = associated_data(message);
        let ciphertext = BUFFER.with_borrow_mut(|buffer| {
            buffer.clear();
            serde_json::to_writer(&mut *buffer, &message.payload).map_err(|e| Error::Encode {
                format: "json",
                reason: e.to_string(),
            })?;
            key.cipher
                .encrypt_in_place(&Nonce::from(nonce), &aad, buffer)
                .map_err(|_| Error::Encode {
                    format: "aes-gcm",
                    reason: "encryption failed".into(),
                })?;
            let text = URL_SAFE_NO_PAD.encode(&buffer[..]);
            shrink(buffer);
            Ok::<_, Error>(text)
        })?;
        let sealed = serde_json::json!({
            "alg": ALGORITHM,
            "kid": self.primary,
            "nonce": URL_SAFE_NO_PAD.encode(nonce),
            "ciphertext": ciphertext,
        });
        Ok(Map::from_iter([(SEALED_FIELD.to_owned(), sealed)]))
    }

    /// Replaces a sealed payload by what it holds; a payload not sealed is left as it is.
    /// A payload that was tampered with, moved to another message, or sealed under a key
    /// this keyring lacks is refused (and left as it was).
    pub fn open(&self, message: &mut IntegrationMessage) -> Result<(), Error> {
        if !Keyring::is_sealed(&message.payload) {
            return Ok(());
        }
        let sealed = message
            .payload
            .remove(SEALED_FIELD)
            .expect("checked sealed");
        match self.opened(message, &sealed) {
            Ok(payload) => {
                message.payload = payload;
                Ok(())
            }
            Err(error) => {
                message.payload.insert(SEALED_FIELD.to_owned(), sealed);
                Err(error)
            }
        }
    }

    /// What `sealed` holds, decrypted in place in a buffer this thread reuses.
    fn opened(
        &self,
        message: &IntegrationMessage,
        sealed: &Value,
    ) -> Result<Map<String, Value>, Error> {
        let refused = |reason: &str| Error::Unsealable(reason.to_owned());
        let sealed = Sealed::deserialize(sealed)
            .map_err(|e| refused(&format!("not a sealed payload: {e}")))?;
        if sealed.alg != ALGORITHM {
            return Err(refused(&format!(
                "algorithm `{}` is not {ALGORITHM}",
                sealed.alg
            )));
        }
        let key = self
            .keys
            .get(sealed.kid)
            .ok_or_else(|| refused(&format!("unknown key id `{}`", sealed.kid)))?;
        let nonce: [u8; NONCE_BYTES] = URL_SAFE_NO_PAD
            .decode(sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| refused("the nonce is not 96 bits of base64url"))?;
        let aad = associated_data(message);
        BUFFER.with_borrow_mut(|buffer| {
            buffer.clear();
            URL_SAFE_NO_PAD
                .decode_vec(sealed.ciphertext, buffer)
                .map_err(|_| refused("the ciphertext is not base64url"))?;
            key.cipher
                .decrypt_in_place(&Nonce::from(nonce), &aad, buffer)
                .map_err(|_| {
                    refused("authentication failed (tampered, or not for this message)")
                })?;
            let payload = serde_json::from_slice(buffer)
                .map_err(|e| refused(&format!("the plaintext is not a JSON object: {e}")));
            shrink(buffer);
            payload
        })
    }
}

/// Buffers above this are not kept for the next payload: one huge message must not
/// hold its memory on the thread for good.
const KEPT_BUFFER_BYTES: usize = 1 << 20;

thread_local! {
    /// The plaintext and ciphertext of the payload being sealed or opened on this thread.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn shrink(buffer: &mut Vec<u8>) {
    if buffer.capacity() > KEPT_BUFFER_BYTES {
        *buffer = Vec::new();
    }
}

/// The message's identity bound to its payload: id, source and target, unambiguously
/// separated (none of them may hold a control character).
fn associated_data(message: &IntegrationMessage) -> Vec<u8> {
    [
        message.message_id.as_str(),
        &message.source_system,
        &message.target_system,
    ]
    .join("\u{1f}")
    .into_bytes()
}

/// A keyring file text with one fresh random primary key named `id`.
pub fn new_keyring_text(id: &str) -> String {
    let file = KeyringFile {
        keys: vec![KeyFileEntry {
            id: id.to_owned(),
            key: random_hex(32),
            created: Utc::now(),
            primary: true,
        }],
    };
    format!(
        "# AES-256-GCM payload keys. Add a new key with `primary = true` (and drop that flag\n\
         # from the old one) to rotate; keep old keys while messages sealed under them may\n\
         # still arrive.\n{}",
        toml::to_string(&file).expect("plain values serialize")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keyring(entries: &[(&str, bool)]) -> (Keyring, String) {
        let mut text = String::new();
        for (i, (id, primary)) in entries.iter().enumerate() {
            text.push_str(&format!(
                "[[keys]]\nid = \"{id}\"\nkey = \"{}\"\ncreated = \"2026-0{}-01T00:00:00Z\"\nprimary = {primary}\n",
                format!("{:02x}", i + 1).repeat(32),
                i + 1,
            ));
        }
        (Keyring::from_toml_str("test", &text).unwrap(), text)
    }

    fn message() -> IntegrationMessage {
        let payload = json!({"secret": "the answer", "n": 42})
            .as_object()
            .unwrap()
            .clone();
        IntegrationMessage::new("cmc_001", "hhni_001", "data_request", payload)
    }

    fn sealed_field<'a>(message: &'a mut IntegrationMessage, field: &str) -> &'a mut Value {
        &mut message.payload.get_mut(SEALED_FIELD).unwrap()[field]
    }

    #[test]
    fn a_sealed_payload_is_opaque_and_opens_to_the_original() {
        let (keys, _) = keyring(&[("k1", true)]);
        let original = message();
        let mut sealed = original.clone();
        keys.seal(&mut sealed).unwrap();
        assert!(Keyring::is_sealed(&sealed.payload));
        let text = serde_json::to_string(&sealed.payload).unwrap();
        assert!(!text.contains("the answer"), "{text}");
        let mut again = original.clone();
        keys.seal(&mut again).unwrap();
        assert_ne!(sealed.payload, again.payload, "a fresh nonce every time");
        keys.open(&mut sealed).unwrap();
        assert_eq!(sealed.payload, original.payload);
        let mut plain = original.clone();
        keys.open(&mut plain).unwrap();
        assert_eq!(
            plain.payload, original.payload,
            "a plain payload is left alone"
        );
    }

    #[test]
    fn tampering_with_any_part_is_refused() {
        let (keys, _) = keyring(&[("k1", true), ("k0", false)]);
        let mut sealed = message();
        keys.seal(&mut sealed).unwrap();
        let flip = |text: &str| {
            let mut bytes = URL_SAFE_NO_PAD.decode(text).unwrap();
            bytes[0] ^= 1;
            URL_SAFE_NO_PAD.encode(bytes)
        };
        let mut cases: Vec<(&str, IntegrationMessage)> = Vec::new();
        let mut m = sealed.clone();
        let c = flip(sealed_field(&mut m, "ciphertext").as_str().unwrap());
        *sealed_field(&mut m, "ciphertext") = json!(c);
        cases.push(("ciphertext", m));
        let mut m = sealed.clone();
        let n = flip(sealed_field(&mut m, "nonce").as_str().unwrap());
        *sealed_field(&mut m, "nonce") = json!(n);
        cases.push(("nonce", m));
        let mut m = sealed.clone();
        *sealed_field(&mut m, "kid") = json!("k0");
        cases.push(("key id swapped for another key", m));
        let mut m = sealed.clone();
        *sealed_field(&mut m, "kid") = json!("k9");
        cases.push(("unknown key id", m));
        let mut m = sealed.clone();
        *sealed_field(&mut m, "alg") = json!("none");
        cases.push(("algorithm", m));
        let mut m = sealed.clone();
        m.message_id = "another-id".into();
        cases.push(("message id (associated data)", m));
        let mut m = sealed.clone();
        m.source_system = "vif_001".into();
        cases.push(("source (associated data)", m));
        let mut m = sealed.clone();
        m.target_system = "seg_001".into();
        cases.push(("target (associated data)", m));
        let mut m = sealed.clone();
        *sealed_field(&mut m, "nonce") = json!("short");
        cases.push(("nonce length", m));
        for (part, mut m) in cases {
            let before = m.payload.clone();
            let error = keys.open(&mut m).unwrap_err();
            assert_eq!(
                error.kind(),
                crate::ErrorKind::Unauthorised,
                "{part}: {error}"
            );
            assert_eq!(
                m.payload, before,
                "{part}: a refused payload is left as it was"
            );
        }
    }

    #[test]
    fn a_sealed_copy_leaves_the_plain_message_and_opens_as_sealing_in_place_would() {
        let (keys, _) = keyring(&[("k1", true)]);
        let plain = message();
        let mut copy = keys.sealed_copy(&plain).unwrap();
        assert_eq!(plain.payload, message().payload);
        assert!(Keyring::is_sealed(&copy.payload));
        assert_eq!(
            (&copy.message_id, &copy.source_system, &copy.target_system),
            (
                &plain.message_id,
                &plain.source_system,
                &plain.target_system
            )
        );
        // A copy of a sealed message stays sealed as it is, not sealed twice.
        let again = keys.sealed_copy(&copy).unwrap();
        assert_eq!(again.payload, copy.payload);
        keys.open(&mut copy).unwrap();
        assert_eq!(copy.payload, plain.payload);
        // Payloads larger than the kept buffer seal and open the same.
        let mut big = message();
        big.payload
            .insert("blob".into(), json!("x".repeat(2 * KEPT_BUFFER_BYTES)));
        let expected = big.payload.clone();
        keys.seal(&mut big).unwrap();
        keys.open(&mut big).unwrap();
        assert_eq!(big.payload, expected);
    }

    #[test]
    fn after_rotation_old_messages_still_open_and_new_ones_use_the_new_key() {
        let (old, _) = keyring(&[("k1", true)]);
        let mut early = message();
        old.seal(&mut early).unwrap();
        let (rotated, _) = keyring(&[("k1", false), ("k2", true)]);
        let mut late = message();
        rotated.seal(&mut late).unwrap();
        assert_eq!(sealed_field(&mut late, "kid"), "k2");
        rotated.open(&mut early).unwrap();
        assert_eq!(early.payload["n"], 42);
        // The old keyring cannot open what the new key sealed.
        assert!(old.open(&mut late).is_err());
    }

    #[test]
    fn keyring_files_are_checked_and_created_private() {
        for (text, says) in [
            (
                "[[keys]]\nid = \"a\"\nkey = \"abc\"\ncreated = \"2026-01-01T00:00:00Z\"\nprimary = true\n",
                "64 hex digits",
            ),
            (
                "[[keys]]\nid = \"a\"\nkey = \"00000000000000000000000000000000000000000000000000000000000000aa\"\ncreated = \"2026-01-01T00:00:00Z\"\n",
                "no key is primary",
            ),
        ] {
            let error = Keyring::from_toml_str("k.toml", text).unwrap_err();
            assert!(error.to_string().contains(says), "{error}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.toml");
        let made = Keyring::load_or_create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let read = Keyring::load_or_create(&path).unwrap();
        let mut m = message();
        made.seal(&mut m).unwrap();
        read.open(&mut m).unwrap();
        assert_eq!(m.payload["n"], 42);
        assert!(made.primary_age(Utc::now()) < chrono::Duration::minutes(1));
    }
}
