//! Rules shared by messages and systems. Identifiers travel in AMQP routing keys, queue
//! names, HTTP paths and log lines, so they are held to a small safe alphabet.

use crate::Error;

/// Longest accepted identifier (message id, system id, type, capability), in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Highest message priority; AMQP queues are declared with `x-max-priority` 10 (0–9).
pub const MAX_PRIORITY: u8 = 9;
/// AMQP 0-9-1 caps queue names at 255 bytes.
const MAX_QUEUE_NAME_LEN: usize = 255;
const MAX_TEXT_LEN: usize = 256;

/// The bytes an identifier may hold: ASCII letters, digits and `_ - . :`.
static IDENTIFIER_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':');
        b += 1;
    }
    table
};

/// Checks that `value` is a non-empty identifier of ASCII letters, digits and `_ - . :`.
pub fn identifier(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(Error::invalid(
            field,
            format!("is {} bytes long; the limit is {MAX_ID_LEN}", value.len()),
        ));
    }
    let allowed = |b: u8| IDENTIFIER_BYTES[usize::from(b)];
    // Bytes through a table, not chars: this runs four times on every message, and
    // anything non-ASCII is refused.
    if value.bytes().all(allowed) {
        return Ok(());
    }
    let bad = value
        .chars()
        .find(|c| !c.is_ascii() || !allowed(*c as u8))
        .unwrap_or_default();
    Err(Error::invalid(
        field,
        format!("contains {bad:?}; use ASCII letters, digits, '_', '-', '.' or ':'"),
    ))
}

/// Checks free text shown to people (a system's name): present, bounded, printable.
pub fn text(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.len() > MAX_TEXT_LEN {
        return Err(Error::invalid(
            field,
            format!("is {} bytes long; the limit is {MAX_TEXT_LEN}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "contains control characters"));
    }
    Ok(())
}

pub fn priority(value: u8) -> Result<(), Error> {
    if value > MAX_PRIORITY {
        return Err(Error::invalid(
            "priority",
            format!("is {value}; expected 0 to {MAX_PRIORITY}"),
        ));
    }
    Ok(())
}

/// An AMQP queue name: what a system's `amqp` interface and a message's `reply_to` hold.
pub fn queue_name(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.len() > MAX_QUEUE_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!(
                "is {} bytes long; AMQP queue names are at most {MAX_QUEUE_NAME_LEN}",
                value.len()
            ),
        ));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(
            field,
            "contains whitespace or control characters",
        ));
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host, as a `rest_api` interface holds.
pub fn http_url(field: &str, value: &str) -> Result<(), Error> {
    let url = url::Url::parse(value)
        .map_err(|e| Error::invalid(field, format!("`{value}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(
            field,
            format!(
                "`{value}` has scheme `{}`; expected http or https",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(field, format!("`{value}` has no host")));
    }
    Ok(())
}

/// `host:port`, with IPv6 hosts in brackets (`[::1]:50051`), as a `grpc` interface holds.
pub fn host_port(field: &str, value: &str) -> Result<(), Error> {
    let expected = || {
        Error::invalid(
            field,
            format!("`{value}` is not host:port (for example localhost:8002 or [::1]:8002)"),
        )
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(expected)?;
    let port: u16 = port.parse().map_err(|_| expected())?;
    if port == 0 {
        return Err(expected());
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => url::Host::parse(host).is_ok() && !host.is_empty() && !host.contains(':'),
    };
    if !host_ok {
        return Err(expected());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in [
            "cmc_001",
            "a",
            "x.y-z:1",
            "550e8400-e29b-41d4-a716-446655440000",
        ] {
            identifier("id", ok).unwrap();
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(identifier("id", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn interfaces() {
        http_url("rest_api", "http://localhost:8001").unwrap();
        http_url("rest_api", "https://cmc.example:443/base").unwrap();
        for bad in ["localhost:8001", "ftp://x", "http://", "not a url"] {
            assert!(http_url("rest_api", bad).is_err(), "{bad:?} accepted");
        }
        host_port("grpc", "localhost:8002").unwrap();
        host_port("grpc", "10.0.0.1:50051").unwrap();
        host_port("grpc", "[::1]:50051").unwrap();
        for bad in [
            "localhost",
            ":8002",
            "host:0",
            "host:99999",
            "::1:80",
            "a b:1",
        ] {
            assert!(host_port("grpc", bad).is_err(), "{bad:?} accepted");
        }
        queue_name("amqp", "aimbus.system.cmc_001").unwrap();
        assert!(queue_name("amqp", "").is_err());
        assert!(queue_name("amqp", "has space").is_err());
    }

    #[test]
    fn priorities() {
        priority(0).unwrap();
        priority(9).unwrap();
        assert!(priority(10).is_err());
    }
}
