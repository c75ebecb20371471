//! A `Store` wrapper that injects I/O errors, for tests of "a failed write changes nothing
//! and gets a clear error".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{Op, Store, StoreError, StoreResult};

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    fail_writes: AtomicBool,
    fail_reads: AtomicBool,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FaultyStore {
            inner,
            fail_writes: AtomicBool::new(false),
            fail_reads: AtomicBool::new(false),
        }
    }
    pub fn fail_writes(&self, on: bool) {
        self.fail_writes.store(on, Ordering::SeqCst);
    }
    pub fn fail_reads(&self, on: bool) {
        self.fail_reads.store(on, Ordering::SeqCst);
    }
    fn w(&self) -> StoreResult<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Io("injected write failure".into()));
        }
        Ok(())
    }
    fn r(&self) -> StoreResult<()> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(StoreError::Io("injected read failure".into()));
        }
        Ok(())
    }
}

impl Store for FaultyStore {
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.r()?;
        self.inner.get(key)
    }
    fn put(&self, key: &[u8], value: &[u8]) -> StoreResult<()> {
        self.w()?;
        self.inner.put(key, value)
    }
    fn delete(&self, key: &[u8]) -> StoreResult<()> {
        self.w()?;
        self.inner.delete(key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.r()?;
        self.inner.scan_prefix(prefix)
    }
    fn keys_with_prefix(&self, prefix: &[u8]) -> StoreResult<Vec<Vec<u8>>> {
        self.r()?;
        self.inner.keys_with_prefix(prefix)
    }
    fn keys_in_range(&self, start: &[u8], end: &[u8]) -> StoreResult<Vec<Vec<u8>>> {
        self.r()?;
        self.inner.keys_in_range(start, end)
    }
    fn cas(&self, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> StoreResult<bool> {
        self.w()?;
        self.inner.cas(key, expected, new)
    }
    fn batch(&self, ops: Vec<Op>) -> StoreResult<()> {
        self.w()?;
        self.inner.batch(ops)
    }
    fn sync(&self) -> StoreResult<()> {
        self.w()?;
        self.inner.sync()
    }
    fn sync_start(&self) -> StoreResult<u64> {
        self.w()?;
        self.inner.sync_start()
    }
    fn synced(&self, ticket: u64, wait: std::time::Duration) -> StoreResult<bool> {
        self.w()?;
        self.inner.synced(ticket, wait)
    }
    fn on_sync(&self, f: super::SyncListener) {
        self.inner.on_sync(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sled::SledStore;

    #[test]
    fn faulty_store_passes_conformance_when_healthy_and_fails_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap());
        let f = FaultyStore::new(inner);
        crate::store::conformance::run(&f);
        f.fail_writes(true);
        assert!(f.put(b"x", b"y").is_err());
        f.fail_writes(false);
        assert_eq!(f.get(b"x").unwrap(), None);
    }
}
