//! Byte-level storage behind a trait, so the domain never sees sled.
//!
//! Every backend must pass `conformance::run` (see tests at the bottom of `sled.rs`).
//! Keys are ordered bytes; values are opaque (always envelopes written by `core::crypto`,
//! except the few records that must be readable while sealed, which hold no secrets).

pub mod faulty;
pub mod sled;
pub mod wal;

use std::fmt;

/// Errors of the storage layer. Converted to `core::Error::Store` at the domain edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O error: {0}")]
    Io(String),
    #[error("storage is closed")]
    Closed,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One write of an atomic batch.
#[derive(Clone)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

impl fmt::Debug for Op {
    // Values are ciphertext, but keep them out of logs anyway: only keys and sizes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put(k, v) => write!(
                f,
                "Put({:?}, {} bytes)",
                String::from_utf8_lossy(k),
                v.len()
            ),
            Op::Delete(k) => write!(f, "Delete({:?})", String::from_utf8_lossy(k)),
        }
    }
}

/// The storage contract. Implementations are thread-safe and cheap to clone behind `Arc`.
///
/// Writes are atomic but not yet durable when they return: call `sync` (which groups the
/// flushes of concurrent callers) before acknowledging a write to a client.
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;
    fn put(&self, key: &[u8], value: &[u8]) -> StoreResult<()>;
    fn delete(&self, key: &[u8]) -> StoreResult<()>;
    /// All entries whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Keys only (cheaper than `scan_prefix` for listings), in key order.
    fn keys_with_prefix(&self, prefix: &[u8]) -> StoreResult<Vec<Vec<u8>>>;
    /// Keys in `[start, end)`, in key order (an index read up to a bound, without the rest).
    fn keys_in_range(&self, start: &[u8], end: &[u8]) -> StoreResult<Vec<Vec<u8>>>;
    /// Compare-and-swap: set `key` to `new` only if its current value equals `expected`
    /// (`None` = absent). Returns `Ok(false)` when the comparison failed.
    fn cas(&self, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> StoreResult<bool>;
    /// Apply all ops atomically.
    fn batch(&self, ops: Vec<Op>) -> StoreResult<()>;
    /// Make every write that returned before this call durable (fsync). Concurrent callers
    /// share one flush.
    fn sync(&self) -> StoreResult<()>;
    /// Starts making every write that returned before this call durable, without waiting;
    /// returns a ticket for `synced`. The default syncs at once.
    fn sync_start(&self) -> StoreResult<u64> {
        self.sync().map(|()| 0)
    }
    /// Whether the writes before `ticket` (from `sync_start`) are durable, waiting up to
    /// `wait` for them (zero: no wait). A failed sync is an error.
    fn synced(&self, ticket: u64, wait: std::time::Duration) -> StoreResult<bool> {
        let _ = (ticket, wait);
        Ok(true)
    }
    /// Registers `f` to be called (on the syncing thread) after every sync that `synced`
    /// may now see, failed ones included: a waiter can sleep on its own condition instead
    /// of blocking in `synced`. `f` returns false once it is no longer wanted. `f` must not
    /// write to the store. The default never calls it (its `sync_start` syncs at once); a
    /// caller polls `synced` now and then all the same.
    fn on_sync(&self, f: SyncListener) {
        let _ = f;
    }
}

/// See `Store::on_sync`.
pub type SyncListener = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// A conformance suite any `Store` must pass. Called from each backend's tests.
#[cfg(test)]
pub mod conformance {
    use super::*;

    pub fn run(s: &dyn Store) {
        assert_eq!(s.get(b"a").unwrap(), None);
        s.put(b"a", b"1").unwrap();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        s.put(b"a", b"2").unwrap();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        s.delete(b"a").unwrap();
        assert_eq!(s.get(b"a").unwrap(), None);
        s.delete(b"never").unwrap();

        s.batch(vec![
            Op::Put(b"p/b".to_vec(), b"B".to_vec()),
            Op::Put(b"p/a".to_vec(), b"A".to_vec()),
            Op::Put(b"q/a".to_vec(), b"Q".to_vec()),
            Op::Put(b"p/c".to_vec(), b"C".to_vec()),
            Op::Delete(b"p/c".to_vec()),
        ])
        .unwrap();
        let scanned = s.scan_prefix(b"p/").unwrap();
        assert_eq!(
            scanned,
            vec![
                (b"p/a".to_vec(), b"A".to_vec()),
                (b"p/b".to_vec(), b"B".to_vec())
            ]
        );
        assert_eq!(
            s.keys_with_prefix(b"p/").unwrap(),
            vec![b"p/a".to_vec(), b"p/b".to_vec()]
        );
        assert!(s.scan_prefix(b"zz").unwrap().is_empty());
        assert_eq!(
            s.keys_in_range(b"p/", b"p/b").unwrap(),
            vec![b"p/a".to_vec()]
        );
        assert_eq!(s.keys_in_range(b"p/", b"q/a").unwrap().len(), 2);
        assert!(s.keys_in_range(b"p/b", b"p/a").unwrap().is_empty());

        assert!(s.cas(b"c", None, Some(b"1")).unwrap());
        assert!(!s.cas(b"c", None, Some(b"2")).unwrap());
        assert!(!s.cas(b"c", Some(b"9"), Some(b"2")).unwrap());
        assert!(s.cas(b"c", Some(b"1"), Some(b"2")).unwrap());
        assert_eq!(s.get(b"c").unwrap().as_deref(), Some(&b"2"[..]));
        assert!(s.cas(b"c", Some(b"2"), None).unwrap());
        assert_eq!(s.get(b"c").unwrap(), None);
        s.sync().unwrap();
    }
}
