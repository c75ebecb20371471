//! The audit journal: an append-only, tamper-evident log of every request, and the offline
//! tools over it (verification and export).
//!
//! # Format
//! Segment files `audit-<first seq, 20 digits>.jsonl` in one directory. Each line is one JSON
//! object (a *record*) ending in `\n`. The journal adds to every record:
//! - `seq`: a gap-free counter starting at 1;
//! - `prev`: hex SHA-256 of the exact bytes of the previous line (without its `\n`); the first
//!   record of the journal has 64 zeros;
//! - `time` (RFC 3339 UTC with nanoseconds) when the caller did not set one.
//!
//! Records the journal writes itself (their `type` is reserved; callers cannot use it):
//! - `segment_start`: first record of every segment, naming the previous segment
//!   (`prev_segment`); its `prev` links to the last record of that segment.
//! - `checkpoint`: `covers_seq` (= seq - 1), `head` (= prev: the hash of record `covers_seq`),
//!   `next_by_seq` (the seq by which the next checkpoint will have been written), `key_id` and
//!   `sig`, an Ed25519 signature over [`checkpoint_message`]. One follows every
//!   `segment_start`, one is written every `checkpoint_every` records or `checkpoint_interval`,
//!   at every open and at a clean close. A chain recomputed without the key fails at the next
//!   checkpoint; deleting checkpoints breaks the signed `next_by_seq` promise.
//! - `torn_tail`: written at open after a crash mid-append; names the byte range (`segment`,
//!   `offset`, `length`) of the unparsable tail it skips. The torn bytes stay in the file
//!   (terminated by a `\n`), as evidence; `verify` reports them and does not fail.
//! - `retention`: written (durably) before old segments are deleted: `removed_through_seq` and
//!   `anchor` (the hash the first kept segment's `prev` must have). `verify` accepts a journal
//!   that starts after seq 1 only if such a record accounts for the missing prefix, so removing
//!   a segment by hand is detected while retention is not.
//!
//! # Durability
//! One writer thread drains the queue, writes every queued line, `fdatasync`s once per batch,
//! then releases the waiters (group commit). A failed write or sync, or a batch that outlives
//! `write_deadline`, fails every waiter of the batch with [`AuditError::Unavailable`]; the file
//! is truncated back to the last durable offset before anything else is written, so the chain
//! goes on without a gap or a half record.
//!
//! The head `(seq, hash)` is also `put` into the store under `audit/head`, at most every
//! 50 ms while batches stream in and whenever the writer goes idle, without a store `sync`
//! of its own: the journal file is the durable source of truth, the stored head only lets
//! `open` and `verify` notice a truncated tail. It reaches the disk with the store's next
//! sync (any acknowledged write), and is synced at a clean close. So a head behind the
//! journal is normal, a head ahead of it is a truncation; records appended shortly before a
//! crash are covered by the journal and the signed checkpoints only.
//!
//! A record that reports a change (`append_after_store_sync`) waits in the queue until the
//! store has synced that change; the writer does not block on it: the store calls it back
//! after each sync (`Store::on_sync`), and records of other requests are written meanwhile.
pub mod config;
pub mod export;
pub mod fs;
mod keys;
mod mirror;
mod redact;
mod segment;
pub mod verify;
mod walker;
mod writer;

pub use config::{JournalConfig, MirrorKind};
pub use export::{export, ExportFilter, ExportFormat, CSV_COLUMNS};
pub use keys::{checkpoint_message, key_id, parse_public_key, public_key_pem};
pub use redact::{canonical_json, hmac_value, redact};
pub use segment::{list_segments, segment_file_name, segment_paths};
pub use verify::{
    verify, verify_with, BadRecord, TamperKind, TornTail, VerifyOptions, VerifyReport,
};
pub use writer::{Journal, JournalStats, Receipt};

/// Key of the chain head in the store.
pub const HEAD_KEY: &[u8] = b"audit/head";
/// `prev` of the very first record.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Record types written by the journal itself; `append` refuses them.
pub const RESERVED_TYPES: [&str; 5] = [
    "segment_start",
    "checkpoint",
    "torn_tail",
    "retention",
    "key_pending",
];

/// The one error type of the audit journal.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The record could not be made durable (I/O error, full disk, hung disk past the
    /// deadline, queue full). The request must be refused (503); nothing was written.
    #[error("audit journal unavailable: {0}")]
    Unavailable(String),
    /// An I/O error outside the append path (open, verify, export).
    #[error("audit journal: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The journal ends before the head stored by the server: refused unless
    /// `accept_truncation` is set.
    #[error("audit journal truncated: {0}")]
    Truncated(String),
    /// The journal's last segment is damaged or altered (not only a torn tail).
    #[error("audit journal damaged: {0}")]
    Corrupt(String),
    /// The caller passed a record the journal cannot take (reserved type...).
    #[error("invalid audit record: {0}")]
    InvalidRecord(String),
    /// Bad key, bad filter, bad configuration.
    #[error("{0}")]
    Invalid(String),
    /// The head store failed at open.
    #[error("audit head store: {0}")]
    HeadStore(String),
    /// The journal was shut down.
    #[error("audit journal is closed")]
    Closed,
}

impl AuditError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> AuditError {
        AuditError::Io {
            context: context.into(),
            source,
        }
    }

    /// True for the errors that must turn a request into a 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AuditError::Unavailable(_) | AuditError::Closed)
    }
}
