//! The domain's one error enum. The HTTP layer maps each variant to a status in one table.

use crate::core::crypto::CryptoError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Vault is sealed")]
    Sealed,
    #[error("Vault is not initialized")]
    NotInitialized,
    /// A client mistake; the text is shown to the client as is (never contains a secret).
    #[error("{0}")]
    BadRequest(String),
    /// Missing token, unknown token, expired token.
    #[error("permission denied")]
    BadToken,
    /// Valid token, but the policy denies the operation.
    #[error("permission denied")]
    PermissionDenied,
    /// Valid token, but the request would widen its privileges (a child token with more
    /// policies, a longer TTL or more uses): 403 with the reason.
    #[error("{0}")]
    Forbidden(String),
    /// Not found, with no message (`404 {"errors":[]}`).
    #[error("not found")]
    NotFound,
    /// A stored record failed to decrypt or parse: corruption or tampering.
    #[error("stored data failed integrity check")]
    Integrity(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn bad(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }
}
