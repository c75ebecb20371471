//! The sled backend: the only file that imports sled. Durability and batch atomicity come
//! from the write-ahead log in `wal.rs`; sled holds the data and answers reads.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use super::wal::{self, Wal};
use super::{Op, Store, StoreError, StoreResult};

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

/// Directory of the write-ahead log, inside sled's directory (sled ignores it).
const WAL_DIR: &str = "arca-wal";
/// A checkpoint (sled flush, older log segments deleted) when the open segment is this big...
const CHECKPOINT_BYTES: u64 = 64 << 20;
/// ...or this old and not empty.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);

struct Shared {
    db: sled::Db,
    wal: Wal,
    /// Scans take it shared; a batch of several ops is applied under it exclusively, so no
    /// scan sees half a batch. (A single `get` needs no lock.)
    view: RwLock<()>,
    /// Serializes checkpoints (the background one, `checkpoint`, and the one at drop).
    checkpointing: Mutex<()>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
}

pub struct SledStore {
    shared: Arc<Shared>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

/// How long `open` waits for sled's file lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl SledStore {
    /// Opens (or creates) the store in `dir`. `cache_bytes` bounds sled's page cache.
    /// Replays what a crash left in the write-ahead log first.
    pub fn open(dir: &Path, cache_bytes: u64) -> StoreResult<Self> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // Durability is the log's; sled is flushed at checkpoints only.
            .flush_every_ms(None);
        // sled locks its file (flock). A store closed a moment ago may still hold the lock
        // briefly (sled's I/O threads finishing, or a child process forked meanwhile that
        // has not exec'd yet): retry for a few seconds before calling the store busy.
        let started = std::time::Instant::now();
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && started.elapsed() < LOCK_WAIT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(io)?,
            }
        };
        let wal_dir = dir.join(WAL_DIR);
        let existing = wal::segments(&wal_dir)?;
        let mut replayed = 0usize;
        let read = |n: u64| {
            std::fs::read(wal::segment_path(&wal_dir, n))
                .map_err(|e| StoreError::Io(format!("reading the write-ahead log: {e}")))
        };
        for (i, n) in existing.iter().enumerate() {
            let path = wal::segment_path(&wal_dir, *n);
            let data = read(*n)?;
            let (records, valid) = wal::decode_prefix(&data);
            if valid < data.len() {
                // Only the last written segment can end in a torn record: older ones were
                // synced whole before the next one took writes (a later segment may exist
                // but be empty, if a start was cut short). Dropping what follows a bad record
                // in the middle would drop acknowledged writes: refuse to start instead.
                for later in &existing[i + 1..] {
                    if !read(*later)?.is_empty() {
                        return Err(StoreError::Io(format!(
                            "write-ahead log segment {} is damaged before its end (not a torn \
                             last write); refusing to start without the writes after it",
                            path.display()
                        )));
                    }
                }
                tracing::warn!(
                    segment = n,
                    "the write-ahead log ends in an incomplete record (a write that was never acknowledged); it is dropped"
                );
                // Cut it off now, so a crash before the log is folded into sled cannot
                // leave it in the middle of the log.
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| {
                        f.set_len(valid as u64)?;
                        f.sync_all()
                    })
                    .map_err(|e| {
                        StoreError::Io(format!("cutting the torn end off the write-ahead log: {e}"))
                    })?;
            }
            for ops in records {
                apply(&db, ops)?;
                replayed += 1;
            }
        }
        if replayed > 0 {
            tracing::info!(records = replayed, "write-ahead log replayed");
        }
        let next = existing.last().map_or(0, |n| n + 1);
        let wal = Wal::create(&wal_dir, next)?;
        if !existing.is_empty() {
            db.flush().map_err(io)?;
            wal.remove_upto(next - 1)?;
        }
        let shared = Arc::new(Shared {
            db,
            wal,
            view: RwLock::new(()),
            checkpointing: Mutex::new(()),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        let checkpointer = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(weak))
            .map_err(|e| StoreError::Io(format!("starting the checkpoint thread: {e}")))?;
        Ok(SledStore {
            shared,
            checkpointer: Some(checkpointer),
        })
    }

    /// Flushes sled and drops the log segments it now covers.
    pub fn checkpoint(&self) -> StoreResult<()> {
        self.shared.checkpoint()
    }

    fn read_view(&self) -> StoreResult<std::sync::RwLockReadGuard<'_, ()>> {
        self.shared.view.read().map_err(|_| StoreError::Closed)
    }

    /// Logs `ops` and applies them, in log order. A batch is applied under the `view` lock.
    fn write(&self, ops: Vec<Op>) -> StoreResult<()> {
        let mut tail = self.shared.wal.order()?;
        tail.append(&ops)?;
        let _excl = if ops.len() > 1 {
            Some(self.shared.view.write().map_err(|_| StoreError::Closed)?)
        } else {
            None
        };
        apply_logged(&self.shared.db, &mut tail, ops)
    }
}

/// `apply` for ops already in the log: if sled fails, the log is ahead of sled, so the log
/// refuses further writes until a restart replays it.
fn apply_logged(db: &sled::Db, tail: &mut wal::Tail, ops: Vec<Op>) -> StoreResult<()> {
    let res = apply(db, ops);
    if let Err(e) = &res {
        tail.fail(format!(
            "the store failed after the write-ahead log took a write ({e}); restart to replay it"
        ));
    }
    res
}

/// Applies ops to sled one by one (not as a sled batch: the log makes them atomic).
fn apply(db: &sled::Db, ops: Vec<Op>) -> StoreResult<()> {
    for op in ops {
        match op {
            Op::Put(k, v) => {
                db.insert(k, v).map_err(io)?;
            }
            Op::Delete(k) => {
                db.remove(k).map_err(io)?;
            }
        }
    }
    Ok(())
}

impl Shared {
    fn checkpoint(&self) -> StoreResult<()> {
        let _one = self.checkpointing.lock().map_err(|_| StoreError::Closed)?;
        let closed = {
            let mut tail = self.wal.order()?;
            if let Some(e) = tail.broken() {
                // The log may hold what sled lacks: keep every segment for the replay.
                return Err(StoreError::Io(e.to_string()));
            }
            if tail.seg_bytes() == 0 {
                return Ok(());
            }
            self.wal.rotate(&mut tail)?
        };
        // Everything in the closed segments was applied to sled under the order lock.
        self.db.flush().map_err(io)?;
        self.wal.remove_upto(closed)
    }
}

fn checkpoint_loop(weak: Weak<Shared>) {
    let mut last = Instant::now();
    loop {
        let Some(sh) = weak.upgrade() else { return };
        {
            let stop = sh.stop.lock().unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
            let (stop, _) = sh
                .stop_cv
                .wait_timeout(stop, Duration::from_secs(1))
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
        let due = match sh.wal.order() {
            Ok(t) => {
                t.seg_bytes() >= CHECKPOINT_BYTES
                    || (t.seg_bytes() > 0 && last.elapsed() >= CHECKPOINT_EVERY)
            }
            Err(_) => return,
        };
        if due {
            match sh.checkpoint() {
                Ok(()) => last = Instant::now(),
                Err(e) => {
                    tracing::warn!(error = %e, "store checkpoint failed (the log keeps every write)")
                }
            }
        }
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.stop_cv.notify_all();
        if let Some(t) = self.checkpointer.take() {
            let _ = t.join();
        }
        // A clean close leaves an empty log, so the next open replays nothing.
        if let Err(e) = self.shared.checkpoint() {
            tracing::warn!(error = %e, "store checkpoint at close failed (the log keeps every write)");
        }
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        // One key is before or after any batch anyway: no `view` lock.
        Ok(self.shared.db.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> StoreResult<()> {
        self.write(vec![Op::Put(key.to_vec(), value.to_vec())])
    }

    fn delete(&self, key: &[u8]) -> StoreResult<()> {
        self.write(vec![Op::Delete(key.to_vec())])
    }

    fn scan_prefix(&self, prefix: &[u8]) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let _v = self.read_view()?;
        self.shared
            .db
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io))
            .collect()
    }

    fn keys_with_prefix(&self, prefix: &[u8]) -> StoreResult<Vec<Vec<u8>>> {
        let _v = self.read_view()?;
        self.shared
            .db
            .scan_prefix(prefix)
            .keys()
            .map(|r| r.map(|k| k.to_vec()).map_err(io))
            .collect()
    }

    fn keys_in_range(&self, start: &[u8], end: &[u8]) -> StoreResult<Vec<Vec<u8>>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let _v = self.read_view()?;
        self.shared
            .db
            .range(start..end)
            .keys()
            .map(|r| r.map(|k| k.to_vec()).map_err(io))
            .collect()
    }

    fn cas(&self, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> StoreResult<bool> {
        // Compared and logged under the order lock: the log records what was written.
        let mut tail = self.shared.wal.order()?;
        let current = self.shared.db.get(key).map_err(io)?;
        if current.as_deref() != expected {
            return Ok(false);
        }
        let op = match new {
            Some(v) => Op::Put(key.to_vec(), v.to_vec()),
            None => Op::Delete(key.to_vec()),
        };
        tail.append(std::slice::from_ref(&op))?;
        apply_logged(&self.shared.db, &mut tail, vec![op])?;
        Ok(true)
    }

    fn batch(&self, ops: Vec<Op>) -> StoreResult<()> {
        if ops.is_empty() {
            return Ok(());
        }
        self.write(ops)
    }

    fn sync(&self) -> StoreResult<()> {
        self.shared.wal.sync()
    }

    fn sync_start(&self) -> StoreResult<u64> {
        self.shared.wal.sync_start()
    }

    fn synced(&self, ticket: u64, wait: std::time::Duration) -> StoreResult<bool> {
        self.shared.wal.synced(ticket, wait)
    }

    fn on_sync(&self, f: super::SyncListener) {
        self.shared.wal.on_sync(f)
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

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let t = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &t);
            } else {
                std::fs::copy(e.path(), t).unwrap();
            }
        }
    }

    /// A copy of the directory taken while the store is open (nothing flushed by sled, no
    /// clean close) is what a `kill -9` leaves: the log brings every synced write back,
    /// batches whole.
    #[test]
    fn the_log_brings_back_synced_writes_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let crash = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("s"), 8 << 20).unwrap();
        s.put(b"gone", b"x").unwrap();
        s.delete(b"gone").unwrap();
        for i in 0..200u32 {
            s.batch(vec![
                Op::Put(format!("a/{i:03}").into_bytes(), vec![1; 300]),
                Op::Put(format!("b/{i:03}").into_bytes(), vec![2; 300]),
            ])
            .unwrap();
        }
        assert!(s.cas(b"c", None, Some(b"1")).unwrap());
        assert!(!s.cas(b"c", None, Some(b"2")).unwrap());
        s.sync().unwrap();
        copy_dir(&dir.path().join("s"), &crash.path().join("s"));
        drop(s);
        let r = SledStore::open(&crash.path().join("s"), 8 << 20).unwrap();
        assert_eq!(r.keys_with_prefix(b"a/").unwrap().len(), 200);
        assert_eq!(r.keys_with_prefix(b"b/").unwrap().len(), 200);
        assert_eq!(r.get(b"c").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(r.get(b"gone").unwrap(), None);
        // the replayed log was folded into sled and removed
        assert_eq!(
            wal::segments(&crash.path().join("s").join(WAL_DIR))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_torn_tail_is_dropped_and_everything_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let crash = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("s"), 8 << 20).unwrap();
        s.put(b"k1", b"v1").unwrap();
        s.batch(vec![
            Op::Put(b"k2".to_vec(), b"v2".to_vec()),
            Op::Put(b"k3".to_vec(), b"v3".to_vec()),
        ])
        .unwrap();
        s.sync().unwrap();
        copy_dir(&dir.path().join("s"), &crash.path().join("s"));
        drop(s);
        // cut the last record (the batch) in half
        let wal_dir = crash.path().join("s").join(WAL_DIR);
        let seg = wal::segment_path(&wal_dir, *wal::segments(&wal_dir).unwrap().last().unwrap());
        let data = std::fs::read(&seg).unwrap();
        std::fs::write(&seg, &data[..data.len() - 5]).unwrap();
        let r = SledStore::open(&crash.path().join("s"), 8 << 20).unwrap();
        assert_eq!(r.get(b"k1").unwrap().as_deref(), Some(&b"v1"[..]));
        // sled never saw the batch durably and the log lost its tail: neither half is there
        assert_eq!(r.get(b"k2").unwrap(), None);
        assert_eq!(r.get(b"k3").unwrap(), None);
    }

    #[test]
    fn checkpoints_fold_the_log_into_sled() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 8 << 20).unwrap();
        for i in 0..50u32 {
            s.put(&i.to_be_bytes(), b"v").unwrap();
        }
        s.sync().unwrap();
        s.checkpoint().unwrap();
        let segs = wal::segments(&dir.path().join(WAL_DIR)).unwrap();
        assert_eq!(segs.len(), 1);
        let open =
            std::fs::metadata(wal::segment_path(&dir.path().join(WAL_DIR), segs[0])).unwrap();
        assert_eq!(open.len(), 0);
        drop(s);
        let r = SledStore::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(r.keys_with_prefix(b"").unwrap().len(), 50);
    }

    #[test]
    fn a_damaged_older_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let crash = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("s"), 8 << 20).unwrap();
        s.put(b"k1", b"v1").unwrap();
        // close the first segment without folding it into sled (what a crash mid-checkpoint
        // leaves): rotate only
        {
            let mut tail = s.shared.wal.order().unwrap();
            s.shared.wal.rotate(&mut tail).unwrap();
        }
        s.put(b"k2", b"v2").unwrap();
        s.sync().unwrap();
        copy_dir(&dir.path().join("s"), &crash.path().join("s"));
        drop(s);
        let wal_dir = crash.path().join("s").join(WAL_DIR);
        let first = wal::segment_path(&wal_dir, wal::segments(&wal_dir).unwrap()[0]);
        let mut data = std::fs::read(&first).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        std::fs::write(&first, &data).unwrap();
        let err = SledStore::open(&crash.path().join("s"), 8 << 20)
            .err()
            .expect("a damaged older segment must not open");
        assert!(err.to_string().contains("damaged"), "{err}");
        // and nothing was deleted: both segments are still there to be looked at
        assert_eq!(wal::segments(&wal_dir).unwrap().len(), 2);
    }

    #[test]
    fn a_torn_segment_followed_by_an_empty_one_opens() {
        // What a start cut short after a crash leaves: segment k torn, k+1 created empty.
        let dir = tempfile::tempdir().unwrap();
        let crash = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("s"), 8 << 20).unwrap();
        s.put(b"k1", b"v1").unwrap();
        s.put(b"k2", b"v2").unwrap();
        s.sync().unwrap();
        copy_dir(&dir.path().join("s"), &crash.path().join("s"));
        drop(s);
        let wal_dir = crash.path().join("s").join(WAL_DIR);
        let last = *wal::segments(&wal_dir).unwrap().last().unwrap();
        let seg = wal::segment_path(&wal_dir, last);
        let data = std::fs::read(&seg).unwrap();
        std::fs::write(&seg, &data[..data.len() - 3]).unwrap();
        std::fs::write(wal::segment_path(&wal_dir, last + 1), b"").unwrap();
        let r = SledStore::open(&crash.path().join("s"), 8 << 20).unwrap();
        assert_eq!(r.get(b"k1").unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(r.get(b"k2").unwrap(), None);
    }
}
