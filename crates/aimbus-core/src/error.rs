use std::fmt;

/// Everything that can go wrong in `aimbus-core`: decoding untrusted bytes, validating
/// messages and systems, loading configuration, and changing the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("message nests deeper than the limit of {limit} levels")]
    TooDeep { limit: usize },
    #[error("unsupported content type `{0}`: expected application/json or application/msgpack")]
    UnsupportedContentType(String),
    #[error("cannot decode {format}: {reason}")]
    Decode {
        format: &'static str,
        reason: String,
    },
    #[error("cannot encode {format}: {reason}")]
    Encode {
        format: &'static str,
        reason: String,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("system `{system_id}` version {version} is already registered")]
    DuplicateSystem { system_id: String, version: String },
    #[error("system `{0}` is not registered")]
    UnknownSystem(String),
    #[error("system `{system_id}` depends on `{dependency}`, which is not registered")]
    UnknownDependency {
        system_id: String,
        dependency: String,
    },
    #[error("dependency cycle: {}", .cycle.join(" -> "))]
    DependencyCycle { cycle: Vec<String> },
    #[error("{origin}: `{key}`: {problem}")]
    Config {
        origin: String,
        key: String,
        problem: String,
    },
    #[error("{path}: {reason}")]
    ConfigFile { path: String, reason: String },
    /// A sealed payload that does not open: tampered, or under a key we do not hold.
    #[error("sealed payload refused: {0}")]
    Unsealable(String),
    /// An ingress message whose signature is missing (where required) or wrong.
    #[error("signature refused: {0}")]
    BadSignature(String),
    #[error("keyring {path}: {reason}")]
    Keyring { path: String, reason: String },
}

/// The broad class of an [`Error`], for callers that map errors onto protocol answers
/// (an HTTP status, a dead-letter reason) without matching every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes are not a message: too large, too deep, wrong content type, malformed.
    Malformed,
    /// The message or system is well formed but breaks a rule.
    Invalid,
    /// The registry already holds this system at this version.
    Conflict,
    /// The named system is not registered.
    NotFound,
    /// Configuration that cannot be used.
    Config,
    /// Our own value could not be serialized: a bug, not bad input.
    Internal,
    /// A sealed payload failed authentication.
    Unauthorised,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::TooLarge { .. }
            | Error::TooDeep { .. }
            | Error::UnsupportedContentType(_)
            | Error::Decode { .. } => ErrorKind::Malformed,
            Error::Invalid { .. }
            | Error::UnknownDependency { .. }
            | Error::DependencyCycle { .. } => ErrorKind::Invalid,
            Error::DuplicateSystem { .. } => ErrorKind::Conflict,
            Error::UnknownSystem(_) => ErrorKind::NotFound,
            Error::Config { .. } | Error::ConfigFile { .. } | Error::Keyring { .. } => {
                ErrorKind::Config
            }
            Error::Unsealable(_) | Error::BadSignature(_) => ErrorKind::Unauthorised,
            Error::Encode { .. } => ErrorKind::Internal,
        }
    }

    pub fn is_config_error(&self) -> bool {
        self.kind() == ErrorKind::Config
    }

    pub(crate) fn invalid(field: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Error::Invalid {
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }
}
