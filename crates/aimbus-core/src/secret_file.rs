//! Files holding secrets (the jwt secret, the payload keyring): created once with
//! random content and mode 0600, then read by every process of the bus; and the hex
//! their keys are written in.

use std::io::Write;
use std::path::Path;

/// The file's text, or — when it is missing — `make()` written to a new file only its
/// owner can read. When two processes start together, the second reads what the first
/// wrote rather than overwriting it.
pub fn read_or_create_private(
    path: &Path,
    make: impl FnOnce() -> String,
) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        read => return read,
    }
    let text = make();
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut file) => {
            file.write_all(text.as_bytes())?;
            Ok(text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // The other process may still be writing it.
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::fs::read_to_string(path)
        }
        Err(e) => Err(e),
    }
}

/// `bytes` random bytes, as hex.
pub fn random_hex(bytes: usize) -> String {
    encode_hex(
        &(0..bytes)
            .map(|_| rand::random::<u8>())
            .collect::<Vec<u8>>(),
    )
}

pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes `text` spells in hex (surrounding whitespace ignored), or `None`.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
