//! The store's write-ahead log: what makes a write durable and a batch atomic.
//!
//! sled 0.34 makes every atomic batch write and `sync_file_range` its I/O buffer twice (its
//! `pin_log`), and every `flush` once more, on its own I/O threads; that was most of the cost
//! of a token create. So sled holds the data and answers reads, and this log holds the
//! durability:
//!
//! - every change (put, delete, batch, a successful compare-and-swap as the value it set) is
//!   one record, appended with `write(2)` under the order lock *before* sled sees it, so
//!   whatever sled may have written out is in the log too (a `kill -9` loses neither);
//! - `sync` makes every record written so far durable with one `fdatasync`, shared by all
//!   concurrent callers (group commit);
//! - a checkpoint starts a new segment, flushes sled (which then holds everything of the
//!   older segments) and deletes the older segments;
//! - at open, the segments left by a crash are replayed in order into sled. Records are
//!   blind writes (a CAS is logged as what it wrote), so replaying them on top of any state
//!   sled recovered gives the state of the last complete record. A torn tail (length or
//!   checksum wrong) ends the replay: it was never acknowledged.
//!
//! Record: `u32 payload length | u32 CRC-32 of the payload | payload`, little endian.
//! Payload: `u32 op count`, then per op `u8 tag (1 put, 2 delete) | u32 key length | key`
//! and for a put `u32 value length | value`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{Op, StoreError, StoreResult};

const PUT: u8 = 1;
const DELETE: u8 = 2;
const HEADER: usize = 8;
/// Longest record accepted at replay (a larger length is a torn or corrupt tail).
const MAX_RECORD: usize = 256 << 20;

fn io(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> StoreResult<MutexGuard<'_, T>> {
    m.lock().map_err(|_| StoreError::Closed)
}

/// Encodes ops as one record.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let size: usize = ops
        .iter()
        .map(|op| match op {
            Op::Put(k, v) => 9 + k.len() + v.len(),
            Op::Delete(k) => 5 + k.len(),
        })
        .sum();
    let mut buf = Vec::with_capacity(HEADER + 4 + size);
    buf.extend_from_slice(&[0u8; HEADER]);
    buf.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        match op {
            Op::Put(k, v) => {
                buf.push(PUT);
                buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
                buf.extend_from_slice(k);
                buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                buf.extend_from_slice(v);
            }
            Op::Delete(k) => {
                buf.push(DELETE);
                buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
                buf.extend_from_slice(k);
            }
        }
    }
    let payload_len = (buf.len() - HEADER) as u32;
    let crc = crc32fast::hash(&buf[HEADER..]);
    buf[0..4].copy_from_slice(&payload_len.to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    buf
}

fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if p.len() < n {
        return None;
    }
    let (a, b) = p.split_at(n);
    *p = b;
    Some(a)
}

fn take_u32(p: &mut &[u8]) -> Option<u32> {
    take(p, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn decode_payload(mut p: &[u8]) -> Option<Vec<Op>> {
    let n = take_u32(&mut p)? as usize;
    let mut ops = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let tag = take(&mut p, 1)?[0];
        let klen = take_u32(&mut p)? as usize;
        let k = take(&mut p, klen)?.to_vec();
        match tag {
            PUT => {
                let vlen = take_u32(&mut p)? as usize;
                ops.push(Op::Put(k, take(&mut p, vlen)?.to_vec()));
            }
            DELETE => ops.push(Op::Delete(k)),
            _ => return None,
        }
    }
    p.is_empty().then_some(ops)
}

/// Splits a segment into its complete records; the second value is false when the segment
/// ends in a torn or corrupt record (everything from there on is ignored).
pub fn decode_segment(data: &[u8]) -> (Vec<Vec<Op>>, bool) {
    let (out, valid) = decode_prefix(data);
    (out, valid == data.len())
}

/// The complete records at the start of a segment, and how many bytes they take.
pub fn decode_prefix(all: &[u8]) -> (Vec<Vec<Op>>, usize) {
    let mut out = Vec::new();
    let mut data = all;
    while !data.is_empty() {
        if data.len() < HEADER {
            break;
        }
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let crc = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
        if len > MAX_RECORD || data.len() < HEADER + len {
            break;
        }
        let payload = &data[HEADER..HEADER + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        match decode_payload(payload) {
            Some(ops) => out.push(ops),
            None => break,
        }
        data = &data[HEADER + len..];
    }
    (out, all.len() - data.len())
}

fn segment_name(n: u64) -> String {
    format!("{n:016x}.wal")
}

/// Segment numbers present in `dir`, ascending (none if `dir` does not exist yet).
pub fn segments(dir: &Path) -> StoreResult<Vec<u64>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("listing the write-ahead log", e)),
    };
    for e in entries {
        let e = e.map_err(|e| io("listing the write-ahead log", e))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(hexnum) = name.strip_suffix(".wal") {
            if let Ok(n) = u64::from_str_radix(hexnum, 16) {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(segment_name(n))
}

fn sync_dir(dir: &Path) -> StoreResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing the write-ahead log directory", e))
}

/// The writing side. Appends go through `Wal::order` (the order lock); syncs are run by
/// the log's own thread, one `fdatasync` for every write made before it starts.
pub struct Wal {
    dir: PathBuf,
    order: Arc<Mutex<Tail>>,
    sync: Arc<SyncShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The open segment; its mutex is the order lock of all writes.
pub struct Tail {
    file: Arc<File>,
    seg: u64,
    /// Bytes written since the log was opened (all segments): the log's logical end.
    written: u64,
    /// Bytes in the open segment.
    seg_bytes: u64,
    /// Set when the log and sled may disagree (a partial record that could not be cut off,
    /// or a logged write sled failed to apply): nothing more is written until a restart.
    broken: Option<String>,
}

#[derive(Default)]
struct SyncState {
    /// Highest logical offset a waiter needs durable.
    requested: u64,
    /// Logical offset known durable.
    synced: u64,
    /// A failed `fdatasync`: the log cannot promise anything after it.
    failed: Option<String>,
    stop: bool,
    /// The sync thread sleeps on `work`. While it syncs it looks at `requested` again
    /// before sleeping, so it need not be told (a notify is a system call).
    idle: bool,
    /// Threads sleeping on `done`.
    waiters: usize,
}

struct SyncShared {
    /// Called after each published sync (see `Store::on_sync`).
    listeners: Mutex<Vec<super::SyncListener>>,
    state: Mutex<SyncState>,
    /// Wakes the sync thread.
    work: Condvar,
    /// Wakes the waiters.
    done: Condvar,
}

impl Tail {
    /// Appends one record. If the write does not complete (a full disk), what it wrote is
    /// cut off again, so the next record follows the last whole one; if even that fails,
    /// the log stays failed (a torn record in the middle would end every later replay).
    pub fn append(&mut self, ops: &[Op]) -> StoreResult<()> {
        if let Some(e) = &self.broken {
            return Err(StoreError::Io(e.clone()));
        }
        let rec = encode(ops);
        if rec.len() - HEADER > MAX_RECORD {
            return Err(StoreError::Io(format!(
                "a write of {} bytes is larger than the write-ahead log takes ({MAX_RECORD})",
                rec.len()
            )));
        }
        if let Err(e) = (&*self.file).write_all(&rec) {
            let msg = format!("writing the write-ahead log: {e}");
            if let Err(e2) = self.file.set_len(self.seg_bytes) {
                self.broken = Some(format!("{msg}; cutting off the partial record: {e2}"));
            }
            return Err(StoreError::Io(msg));
        }
        self.written += rec.len() as u64;
        self.seg_bytes += rec.len() as u64;
        Ok(())
    }

    pub fn seg_bytes(&self) -> u64 {
        self.seg_bytes
    }

    /// Why the log refuses writes, if it does.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Refuses every later write: the log holds a record the store could not apply, so
    /// only a restart (which replays it) brings the two back together.
    pub fn fail(&mut self, why: String) {
        self.broken.get_or_insert(why);
    }
}

impl Wal {
    /// Opens a new segment numbered `next` in `dir` (created if missing) and starts the
    /// sync thread. Replay of older segments is the caller's job, before this.
    pub fn create(dir: &Path, next: u64) -> StoreResult<Wal> {
        fs::create_dir_all(dir).map_err(|e| io("creating the write-ahead log directory", e))?;
        let file = open_segment(dir, next)?;
        let order = Arc::new(Mutex::new(Tail {
            file: Arc::new(file),
            seg: next,
            written: 0,
            seg_bytes: 0,
            broken: None,
        }));
        let sync = Arc::new(SyncShared {
            listeners: Mutex::new(Vec::new()),
            state: Mutex::new(SyncState::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let thread = {
            let (order, sync) = (order.clone(), sync.clone());
            std::thread::Builder::new()
                .name("store-wal-sync".into())
                .spawn(move || sync_loop(&order, &sync))
                .map_err(|e| io("starting the write-ahead log thread", e))?
        };
        Ok(Wal {
            dir: dir.to_path_buf(),
            order,
            sync,
            thread: Some(thread),
        })
    }

    /// The order lock: hold it while appending and applying, so the log's order is sled's.
    pub fn order(&self) -> StoreResult<MutexGuard<'_, Tail>> {
        lock(&self.order)
    }

    /// Asks the sync thread for everything written so far; returns the offset to wait for,
    /// or `None` if it is durable already.
    fn request(&self) -> StoreResult<Option<u64>> {
        let target = self.order()?.written;
        let mut st = lock(&self.sync.state)?;
        if let Some(e) = &st.failed {
            return Err(StoreError::Io(e.clone()));
        }
        if st.synced >= target {
            return Ok(None);
        }
        if st.requested < target {
            st.requested = target;
            if st.idle {
                self.sync.work.notify_one();
            }
        }
        Ok(Some(target))
    }

    /// Asks the sync thread for every record appended so far, without waiting; the
    /// returned ticket is what `synced` compares with.
    pub fn sync_start(&self) -> StoreResult<u64> {
        Ok(self.request()?.unwrap_or(0))
    }

    /// See `Store::on_sync`.
    pub fn on_sync(&self, f: super::SyncListener) {
        self.sync
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(f);
    }

    /// Whether everything up to `ticket` is durable; waits up to `wait` for it.
    pub fn synced(&self, ticket: u64, wait: std::time::Duration) -> StoreResult<bool> {
        self.wait_synced(ticket, Some(std::time::Instant::now() + wait))
    }

    /// Waits until `ticket` is durable (`Ok(true)`), the log fails, or `deadline` passes
    /// (`Ok(false)`; `None`: no deadline).
    fn wait_synced(&self, ticket: u64, deadline: Option<std::time::Instant>) -> StoreResult<bool> {
        let mut st = lock(&self.sync.state)?;
        loop {
            if let Some(e) = &st.failed {
                return Err(StoreError::Io(e.clone()));
            }
            if st.synced >= ticket {
                return Ok(true);
            }
            if st.stop {
                return Err(StoreError::Closed);
            }
            let wait = match deadline {
                None => None,
                Some(d) => {
                    let now = std::time::Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    Some(d - now)
                }
            };
            st.waiters += 1;
            // A poisoned lock still hands the guard back: the count is put right before
            // the error goes up (a count left too high would only cost extra notifies).
            let (guard, poisoned) = match wait {
                None => match self.sync.done.wait(st) {
                    Ok(g) => (g, false),
                    Err(p) => (p.into_inner(), true),
                },
                Some(w) => match self.sync.done.wait_timeout(st, w) {
                    Ok((g, _)) => (g, false),
                    Err(p) => (p.into_inner().0, true),
                },
            };
            st = guard;
            st.waiters -= 1;
            if poisoned {
                return Err(StoreError::Closed);
            }
        }
    }

    /// Makes every record appended before this call durable; blocks until it is. Concurrent
    /// callers share one `fdatasync` (group commit).
    pub fn sync(&self) -> StoreResult<()> {
        let ticket = self.sync_start()?;
        self.wait_synced(ticket, None).map(|_| ())
    }

    /// Closes the open segment (synced) and opens the next one. Returns the number of the
    /// closed segment: it and every older one may be deleted once sled is flushed.
    /// Called with the order lock held, so no record is in flight.
    pub fn rotate(&self, tail: &mut Tail) -> StoreResult<u64> {
        if let Some(e) = &tail.broken {
            return Err(StoreError::Io(e.clone()));
        }
        if let Err(e) = tail.file.sync_data() {
            // As for the sync thread: after a failed fsync nothing later may be promised.
            let msg = format!("syncing the write-ahead log: {e}");
            tail.fail(msg.clone());
            publish(&self.sync, 0, Err(msg.clone()));
            return Err(StoreError::Io(msg));
        }
        let file = open_segment(&self.dir, tail.seg + 1)?;
        let closed = tail.seg;
        tail.file = Arc::new(file);
        tail.seg += 1;
        tail.seg_bytes = 0;
        // Everything written so far is durable: let waiting syncs through.
        {
            let mut st = lock(&self.sync.state)?;
            st.synced = st.synced.max(tail.written);
        }
        self.sync.done.notify_all();
        notify_listeners(&self.sync);
        Ok(closed)
    }

    /// Deletes segments up to and including `upto`.
    pub fn remove_upto(&self, upto: u64) -> StoreResult<()> {
        for n in segments(&self.dir)? {
            if n <= upto {
                fs::remove_file(segment_path(&self.dir, n))
                    .map_err(|e| io("removing a write-ahead log segment", e))?;
            }
        }
        sync_dir(&self.dir)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Ok(mut st) = self.sync.state.lock() {
            st.stop = true;
        }
        self.sync.work.notify_all();
        self.sync.done.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sync thread: while someone waits, `fdatasync` the open segment and publish the
/// offset it covers.
fn sync_loop(order: &Mutex<Tail>, sync: &SyncShared) {
    loop {
        {
            let mut st = sync.state.lock().unwrap_or_else(|e| e.into_inner());
            while st.requested <= st.synced && !st.stop {
                st.idle = true;
                st = sync.work.wait(st).unwrap_or_else(|e| e.into_inner());
                st.idle = false;
            }
            if st.stop {
                return;
            }
        }
        let (file, upto, broken) = {
            let t = order.lock().unwrap_or_else(|e| e.into_inner());
            (t.file.clone(), t.written, t.broken.clone())
        };
        // A segment closed meanwhile was synced by `rotate` before the next one took writes.
        let res = match broken {
            Some(e) => Err(e),
            None => file
                .sync_data()
                .map_err(|e| format!("syncing the write-ahead log: {e}")),
        };
        publish(sync, upto, res);
    }
}

/// Records the result of an `fdatasync` that covered the log up to `upto`, and wakes the
/// waiters.
fn publish(sync: &SyncShared, upto: u64, res: Result<(), String>) {
    let waiters = {
        let mut st = sync.state.lock().unwrap_or_else(|e| e.into_inner());
        match res {
            Ok(()) => {
                st.synced = st.synced.max(upto);
            }
            Err(e) => {
                tracing::error!(error = %e, "the write-ahead log cannot be made durable; writes fail from now on");
                st.failed = Some(e);
            }
        }
        st.waiters
    };
    if waiters > 0 {
        sync.done.notify_all();
    }
    notify_listeners(sync);
}

fn notify_listeners(sync: &SyncShared) {
    let mut listeners = sync.listeners.lock().unwrap_or_else(|e| e.into_inner());
    listeners.retain(|f| f());
}

fn open_segment(dir: &Path, n: u64) -> StoreResult<File> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, n))
        .map_err(|e| io("opening a write-ahead log segment", e))?;
    sync_dir(dir)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<Op> {
        vec![
            Op::Put(b"a".to_vec(), b"1".to_vec()),
            Op::Delete(b"b".to_vec()),
            Op::Put(b"".to_vec(), vec![7; 1000]),
        ]
    }

    fn same(a: &[Op], b: &[Op]) -> bool {
        format!("{a:?}") == format!("{b:?}")
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Op::Put(k1, v1), Op::Put(k2, v2)) => k1 == k2 && v1 == v2,
                (Op::Delete(k1), Op::Delete(k2)) => k1 == k2,
                _ => false,
            })
    }

    #[test]
    fn records_round_trip() {
        let mut seg = encode(&ops());
        seg.extend(encode(&[Op::Delete(b"x".to_vec())]));
        let (recs, clean) = decode_segment(&seg);
        assert!(clean);
        assert_eq!(recs.len(), 2);
        assert!(same(&recs[0], &ops()));
        assert!(same(&recs[1], &[Op::Delete(b"x".to_vec())]));
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_replay() {
        let first = encode(&ops());
        let second = encode(&[Op::Put(b"k".to_vec(), b"v".to_vec())]);
        let mut seg = first.clone();
        seg.extend(&second);
        // every cut inside the second record keeps exactly the first
        for cut in first.len() + 1..seg.len() {
            let (recs, clean) = decode_segment(&seg[..cut]);
            assert_eq!(recs.len(), 1, "cut at {cut}");
            assert!(!clean);
        }
        // a flipped bit in the second record's payload is caught by its checksum
        let mut bad = seg.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let (recs, clean) = decode_segment(&bad);
        assert_eq!(recs.len(), 1);
        assert!(!clean);
        // an absurd length is not trusted
        let mut huge = first.clone();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 12]);
        assert_eq!(decode_segment(&huge).0.len(), 1);
    }

    #[test]
    fn sync_covers_what_was_written_and_rotation_keeps_order() {
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::create(d.path(), 5).unwrap();
        {
            let mut t = wal.order().unwrap();
            t.append(&ops()).unwrap();
        }
        wal.sync().unwrap();
        let closed = {
            let mut t = wal.order().unwrap();
            let c = wal.rotate(&mut t).unwrap();
            t.append(&[Op::Delete(b"a".to_vec())]).unwrap();
            c
        };
        wal.sync().unwrap();
        assert_eq!(closed, 5);
        assert_eq!(segments(d.path()).unwrap(), vec![5, 6]);
        let s5 = fs::read(segment_path(d.path(), 5)).unwrap();
        let s6 = fs::read(segment_path(d.path(), 6)).unwrap();
        assert_eq!(decode_segment(&s5).0.len(), 1);
        assert_eq!(decode_segment(&s6).0.len(), 1);
        wal.remove_upto(5).unwrap();
        assert_eq!(segments(d.path()).unwrap(), vec![6]);
    }

    /// A listener hears of every sync, sees the ticket durable when it is called, and is
    /// dropped once it says so.
    #[test]
    fn sync_listeners_are_called_after_the_sync_and_can_leave() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let d = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::create(d.path(), 1).unwrap());
        let calls = Arc::new(AtomicU64::new(0));
        let synced_at_call = Arc::new(AtomicU64::new(0));
        {
            let (calls, seen, w) = (calls.clone(), synced_at_call.clone(), Arc::downgrade(&wal));
            wal.on_sync(Arc::new(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(w) = w.upgrade() {
                    let t = w.sync.state.lock().unwrap().synced;
                    seen.store(t, Ordering::SeqCst);
                }
                n < 2
            }));
        }
        let mut first = 0;
        for i in 0..3 {
            wal.order().unwrap().append(&ops()).unwrap();
            let ticket = wal.sync_start().unwrap();
            assert!(wal
                .synced(ticket, std::time::Duration::from_secs(10))
                .unwrap());
            if i == 0 {
                first = ticket;
            }
            // the listener runs just after the waiters are woken
            let t0 = std::time::Instant::now();
            while calls.load(Ordering::SeqCst) < (i + 1).min(2)
                && t0.elapsed() < std::time::Duration::from_secs(5)
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        assert!(first > 0 && synced_at_call.load(Ordering::SeqCst) >= first);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "called until it returned false"
        );
    }
}
