use std::path::PathBuf;

/// Everything that can go wrong between the registry and its store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unsupported registry database url `{0}`: expected sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot create the data directory {}", .path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the {backend} registry store")]
    Open {
        backend: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply the {backend} registry store's migrations")]
    Migrate {
        backend: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The store did not answer, or refused: a write was not committed.
    #[error("the registry store is unavailable")]
    Unavailable(#[from] sqlx::Error),
    /// Another writer (another node) changed the registry after it was read at
    /// `expected`: read the changes and check the write again.
    #[error("the registry changed after revision {expected}")]
    Stale { expected: i64 },
    #[error("stored system `{system_id}` cannot be read")]
    Corrupt {
        system_id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored timestamp {micros} µs of `{system_id}` is out of range")]
    BadTimestamp { system_id: String, micros: i64 },
}
