use actix::MailboxError;

/// Errors of the actor layer: the registry's own, or the actor being unreachable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] aimbus_core::Error),
    #[error("the registry actor has stopped")]
    RegistryStopped,
    #[error("system `{0}` has no running actor")]
    SystemActorDown(String),
}

impl Error {
    pub(crate) fn from_mailbox(_: MailboxError) -> Error {
        // `send` without a timeout only fails when the receiving actor is gone.
        Error::RegistryStopped
    }
}
