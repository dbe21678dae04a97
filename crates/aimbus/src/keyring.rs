//! The payload keyring `serve` and `systems simulate` share, when encryption is on, and
//! the signing keys the ingress checks.

use std::sync::Arc;

use aimbus_core::{Config, Keyring, SigningKeys};

/// Age of the primary encryption key, in days.
pub const PRIMARY_KEY_AGE_DAYS: &str = "aimbus_encryption_primary_key_age_days";

/// The keyring named by `security.encryption_keyring_file` (created when missing), or
/// none when `security.enable_encryption` is off. A primary key older than
/// `key_rotation_days` is logged as a warning and shown by a gauge.
pub fn load(config: &Config) -> Result<Option<Arc<Keyring>>, aimbus_core::Error> {
    let security = config.security();
    if !security.enable_encryption {
        return Ok(None);
    }
    let path = config.resolve_path(&security.encryption_keyring_file);
    let keyring = Keyring::load_or_create(&path)?;
    let age_days = keyring.primary_age(chrono::Utc::now()).num_days();
    ::metrics::gauge!(PRIMARY_KEY_AGE_DAYS).set(age_days as f64);
    if age_days > i64::from(security.key_rotation_days) {
        tracing::warn!(
            key_id = keyring.primary_id(),
            age_days,
            key_rotation_days = security.key_rotation_days,
            keyring = %path.display(),
            "the primary encryption key is due for rotation: add a new primary key to the keyring"
        );
    }
    Ok(Some(Arc::new(keyring)))
}

/// The signing keys `security.signing_keys_file` names, if it names a file.
pub fn signing_keys(config: &Config) -> Result<Option<Arc<SigningKeys>>, aimbus_core::Error> {
    let file = &config.security().signing_keys_file;
    if file.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(SigningKeys::load(
        &config.resolve_path(file),
    )?)))
}
