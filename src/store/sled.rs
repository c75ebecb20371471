//! The sled backend: the only file that imports sled.

use std::path::Path;
use std::sync::{Condvar, Mutex};

use super::{Op, Store, StoreError, StoreResult};

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

/// Group commit for `sync`: callers take a ticket; one caller at a time runs
/// `db.flush()` for every ticket taken before it started, the others wait for it.
#[derive(Default)]
struct FlushState {
    requested: u64,
    completed: u64,
    in_progress: bool,
}

pub struct SledStore {
    db: sled::Db,
    flush: Mutex<FlushState>,
    flushed: Condvar,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. `cache_bytes` bounds sled's page cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // We flush explicitly (grouped) before acknowledging; the periodic flush is a
            // backstop for unacknowledged writes only.
            .flush_every_ms(Some(1000))
            .open()
            .map_err(io)?;
        Ok(SledStore {
            db,
            flush: Mutex::new(FlushState::default()),
            flushed: Condvar::new(),
        })
    }

    /// Bytes on disk, for status output.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.db.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> StoreResult<()> {
        self.db.insert(key, value).map_err(io)?;
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> StoreResult<()> {
        self.db.remove(key).map_err(io)?;
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.db
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io))
            .collect()
    }

    fn keys_with_prefix(&self, prefix: &[u8]) -> StoreResult<Vec<Vec<u8>>> {
        self.db
            .scan_prefix(prefix)
            .keys()
            .map(|r| r.map(|k| k.to_vec()).map_err(io))
            .collect()
    }

    fn cas(&self, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> StoreResult<bool> {
        match self.db.compare_and_swap(key, expected, new).map_err(io)? {
            Ok(()) => Ok(true),
            Err(_) => Ok(false),
        }
    }

    fn batch(&self, ops: Vec<Op>) -> StoreResult<()> {
        let mut b = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => b.insert(k, v),
                Op::Delete(k) => b.remove(k),
            }
        }
        self.db.apply_batch(b).map_err(io)
    }

    fn sync(&self) -> StoreResult<()> {
        let mut st = self.flush.lock().map_err(|_| StoreError::Closed)?;
        st.requested += 1;
        let ticket = st.requested;
        loop {
            if st.completed >= ticket {
                return Ok(());
            }
            if !st.in_progress {
                st.in_progress = true;
                let target = st.requested;
                drop(st);
                let res = self.db.flush();
                st = self.flush.lock().map_err(|_| StoreError::Closed)?;
                st.in_progress = false;
                if res.is_ok() {
                    st.completed = st.completed.max(target);
                }
                self.flushed.notify_all();
                res.map_err(io)?;
            } else {
                st = self.flushed.wait(st).map_err(|_| StoreError::Closed)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sled_passes_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 8 << 20).unwrap();
        crate::store::conformance::run(&s);
    }

    #[test]
    fn concurrent_syncs_all_return_and_data_persists() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap());
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        for j in 0..20 {
                            s.put(format!("k{i}-{j}").as_bytes(), b"v").unwrap();
                            s.sync().unwrap();
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        }
        let s = SledStore::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(s.keys_with_prefix(b"k").unwrap().len(), 16 * 20);
    }
}
