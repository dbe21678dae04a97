use std::sync::Arc;

use aimbus_core::{Keyring, SigningKeys};

/// What the bridge does to what crosses the broker.
#[derive(Debug, Clone, Default)]
pub struct BridgeSecurity {
    /// Seals payloads on the hop to systems and opens sealed ones coming in
    /// (`security.enable_encryption`).
    pub keyring: Option<Arc<Keyring>>,
    /// Checks the signatures of ingress messages.
    pub signing_keys: Option<Arc<SigningKeys>>,
    /// Dead-letters unsigned ingress messages.
    pub require_signed: bool,
}
