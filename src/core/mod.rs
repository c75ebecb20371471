//! The domain. Imports no actix, no sled, no cron.
pub mod approle;
pub mod clock;
pub mod crypto;
pub mod duration;
pub mod error;
pub mod keyring;
pub mod kv;
pub mod policies;
pub mod policy;
pub mod roles;
pub mod rotation;
pub mod shamir;
pub mod token;
pub mod vault;

pub use error::{Error, Result};
pub use token::TokenEntry;
pub use vault::Vault;
