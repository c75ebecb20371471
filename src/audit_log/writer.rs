//! The journal writer: one thread, group commit, repair after failures, rotation, retention,
//! checkpoints.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use chrono::{SecondsFormat, Utc};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::fs::{JournalFs, SegmentFile, StdFs};
use super::keys::{checkpoint_message, key_id, public_key_pem};
use super::mirror::Mirror;
use super::segment::{list_segments, segment_file_name};
use super::verify::walk_file;
use super::walker::{WalkOptions, Walker};
use super::{AuditError, JournalConfig, HEAD_KEY, RESERVED_TYPES};
use crate::store::Store;

/// How long the writer sleeps at most when every queued record waits for the store: it is
/// woken by the store's sync (`Store::on_sync`); this bounds the wait for a store that
/// does not call back.
const STORE_SYNC_WAIT: Duration = Duration::from_millis(5);

/// Longest the chain head in the store trails the journal while records keep coming.
const HEAD_STORE_INTERVAL: Duration = Duration::from_millis(50);

/// Most records written in one batch (one `fdatasync`).
const MAX_BATCH: usize = 4096;
/// Slack added to a checkpoint's promise beyond `checkpoint_every + MAX_BATCH`.
const PROMISE_SLACK: u64 = 16;

/// Proof that a record is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub seq: u64,
    /// Hex SHA-256 of the record's line.
    pub hash: String,
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JournalStats {
    /// Records made durable (caller records and the journal's own).
    pub records: u64,
    /// Batches made durable.
    pub batches: u64,
    /// Successful `fdatasync`s of segment files.
    pub fsyncs: u64,
    /// Batches that failed (their waiters got `Unavailable`).
    pub failed_batches: u64,
    /// Lines a mirror dropped because it was behind.
    pub mirror_dropped: u64,
    /// Failed `put`s of the head into the store (the journal itself was durable).
    pub head_store_errors: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    failed: AtomicU64,
    mirror_dropped: Arc<AtomicU64>,
    head_errors: AtomicU64,
}

enum SlotState {
    Pending,
    /// The waiter gave up (deadline): the batch holding it must not count as written.
    Abandoned,
    /// The writer has decided; the waiter can no longer give up.
    Claimed,
    Done(Result<Receipt, AuditError>),
    Taken,
}

struct Slot {
    state: Mutex<SlotState>,
    /// Its waiter blocks a thread (`append_blocking`, woken by `cv`) rather than a task
    /// (`append`, woken by `notify`). Only that one is woken: a condvar's notify is a
    /// system call even with nobody waiting.
    blocking: bool,
    cv: Condvar,
    notify: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (plain assignments).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slot {
    fn new(blocking: bool) -> Arc<Slot> {
        Arc::new(Slot {
            state: Mutex::new(SlotState::Pending),
            blocking,
            cv: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        })
    }
    fn finish(&self, r: Result<Receipt, AuditError>) {
        *lock(&self.state) = SlotState::Done(r);
        if self.blocking {
            self.cv.notify_all();
        } else {
            self.notify.notify_one();
        }
    }
    fn is_abandoned(&self) -> bool {
        matches!(*lock(&self.state), SlotState::Abandoned)
    }
    /// Pending -> Claimed; false if the waiter gave up.
    fn claim(&self) -> bool {
        let mut st = lock(&self.state);
        match *st {
            SlotState::Pending => {
                *st = SlotState::Claimed;
                true
            }
            _ => false,
        }
    }
}

fn take_done(st: &mut SlotState) -> Option<Result<Receipt, AuditError>> {
    if matches!(st, SlotState::Done(_)) {
        if let SlotState::Done(r) = std::mem::replace(st, SlotState::Taken) {
            return Some(r);
        }
    }
    None
}

fn deadline_error(d: Duration) -> AuditError {
    AuditError::Unavailable(format!("the record was not durable within {d:?}"))
}

struct Entry {
    /// From `record_body`.
    body: Vec<u8>,
    slot: Arc<Slot>,
    /// The record says a change happened: the store's writes up to this `Store::sync_start`
    /// ticket must be durable before the record is written.
    after_store_sync: Option<u64>,
}

#[derive(Default)]
struct Queue {
    entries: Vec<Entry>,
    shutdown: bool,
    /// The writer sleeps on `Shared::wake`: an append must wake it. While it works, it
    /// takes what is queued without being told (and a notify would cost a system call).
    writer_waiting: bool,
    /// A signing key handed over (vault unsealed), or `Some(None)` to drop it (sealed).
    key_change: Option<Option<SigningKey>>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    counters: Counters,
    head: Mutex<(u64, String)>,
    cfg: JournalConfig,
}

struct Inner {
    shared: Arc<Shared>,
    verifying_key: Mutex<Option<VerifyingKey>>,
    dir: PathBuf,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        shutdown(&self.shared, &self.thread);
    }
}

fn shutdown(shared: &Shared, thread: &Mutex<Option<JoinHandle<()>>>) {
    lock(&shared.queue).shutdown = true;
    shared.wake.notify_all();
    if let Some(h) = lock(thread).take() {
        if h.join().is_err() {
            tracing::error!("the audit writer thread panicked");
        }
    }
}

/// The journal. Cheap to clone (a handle); the writer stops when the last handle is dropped or
/// at [`Journal::close`].
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

/// Position of the chain: what the next record gets, and where it goes.
#[derive(Debug, Clone, Copy)]
struct ChainPos {
    next_seq: u64,
    prev: [u8; 32],
    offset: u64,
    since_checkpoint: u64,
}

struct Batch {
    buf: Vec<u8>,
    pos: ChainPos,
    records: u64,
    checkpointed: bool,
}

impl Batch {
    fn new(pos: ChainPos) -> Batch {
        Batch {
            buf: Vec::with_capacity(16 * 1024),
            pos,
            records: 0,
            checkpointed: false,
        }
    }
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A record as the JSON object that follows `seq` and `prev` in its line: `time` added if
/// missing, any `seq` or `prev` of the caller's dropped (the journal sets them). Run by the
/// appending thread, so the writer only chains and writes.
fn record_body(mut rec: Map<String, Value>) -> Vec<u8> {
    rec.remove("seq");
    rec.remove("prev");
    if !matches!(rec.get("time"), Some(Value::String(_))) {
        rec.insert("time".into(), json!(now_rfc3339()));
    }
    // Invariant: a map with string keys always serializes.
    serde_json::to_vec(&rec).expect("a JSON map serializes")
}

struct Writer {
    dir: PathBuf,
    cfg: JournalConfig,
    fs: Arc<dyn JournalFs>,
    /// `None` until the vault is unsealed: records are chained but checkpoints wait.
    key: Option<SigningKey>,
    key_id: String,
    file: Box<dyn SegmentFile>,
    seg_name: String,
    seg_created: SystemTime,
    /// The durable position.
    pos: ChainPos,
    /// The file may hold bytes past `pos.offset` (a failed batch): cut them first.
    needs_repair: bool,
    last_checkpoint: Instant,
    /// The chain head not yet put in the store, and when it last was (see `publish`).
    head_unstored: Option<String>,
    head_stored_at: Instant,
    head_store: Arc<dyn Store>,
    mirror: Option<Mirror>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Appends one of the journal's own records.
    fn push(&self, b: &mut Batch, rec: Map<String, Value>) -> Receipt {
        self.push_body(b, &record_body(rec))
    }

    /// Appends a record serialized by `record_body`: the line is `{"seq":..,"prev":..,`
    /// followed by the body's fields.
    fn push_body(&self, b: &mut Batch, body: &[u8]) -> Receipt {
        let seq = b.pos.next_seq;
        let start = b.buf.len();
        {
            use std::io::Write;
            // Invariant: writing to a Vec cannot fail.
            write!(
                b.buf,
                "{{\"seq\":{seq},\"prev\":\"{}\"",
                hex::encode(b.pos.prev)
            )
            .expect("writing to a Vec");
        }
        // Invariant: `record_body` makes a JSON object with at least `time`, so `body` is
        // `{` followed by fields and `}`.
        b.buf.push(b',');
        b.buf.extend_from_slice(&body[1..]);
        let hash: [u8; 32] = Sha256::digest(&b.buf[start..]).into();
        b.buf.push(b'\n');
        b.pos.offset += (b.buf.len() - start) as u64;
        b.pos.prev = hash;
        b.pos.next_seq += 1;
        b.pos.since_checkpoint += 1;
        b.records += 1;
        Receipt {
            seq,
            hash: hex::encode(hash),
        }
    }

    fn push_checkpoint(&self, b: &mut Batch) {
        let Some(key) = &self.key else {
            // No key yet (sealed): say so in the chain; the first checkpoint after the key
            // arrives signs the head, and with it every record written meanwhile.
            let mut m = Map::new();
            m.insert("type".into(), json!("key_pending"));
            self.push(b, m);
            b.pos.since_checkpoint = 0;
            return;
        };
        let seq = b.pos.next_seq;
        let head = hex::encode(b.pos.prev);
        let time = now_rfc3339();
        let next_by = seq + self.cfg.checkpoint_every + MAX_BATCH as u64 + PROMISE_SLACK;
        let msg = checkpoint_message(seq, seq - 1, &head, &time, next_by, &self.key_id);
        let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(&msg).to_bytes());
        let mut m = Map::new();
        m.insert("type".into(), json!("checkpoint"));
        m.insert("covers_seq".into(), json!(seq - 1));
        m.insert("head".into(), json!(head));
        m.insert("next_by_seq".into(), json!(next_by));
        m.insert("key_id".into(), json!(self.key_id));
        m.insert("sig".into(), json!(sig));
        m.insert("time".into(), json!(time));
        self.push(b, m);
        b.pos.since_checkpoint = 0;
        b.checkpointed = true;
    }

    fn repair(&mut self) -> Result<(), String> {
        if self.needs_repair {
            self.file
                .truncate(self.pos.offset)
                .map_err(|e| format!("cutting the journal back after a failed write: {e}"))?;
            self.needs_repair = false;
        }
        Ok(())
    }

    /// Writes and syncs a batch; on failure the file is marked for repair.
    fn commit(&mut self, b: &Batch) -> Result<(), String> {
        self.repair()?;
        if let Err(e) = self.file.append(&b.buf) {
            self.needs_repair = true;
            return Err(format!("writing the journal: {e}"));
        }
        if let Err(e) = self.file.sync_data() {
            self.needs_repair = true;
            return Err(format!("syncing the journal: {e}"));
        }
        self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes a durable batch the new position.
    fn publish(&mut self, b: Batch) {
        self.pos = b.pos;
        if b.checkpointed {
            self.last_checkpoint = Instant::now();
        }
        let c = &self.shared.counters;
        c.records.fetch_add(b.records, Ordering::Relaxed);
        c.batches.fetch_add(1, Ordering::Relaxed);
        let head = (self.pos.next_seq - 1, hex::encode(self.pos.prev));
        let value = json!({"seq": head.0, "hash": head.1, "segment": self.seg_name}).to_string();
        // The copy in the store (which catches a cut-off tail at open) is put at most every
        // HEAD_STORE_INTERVAL while records stream in, and whenever the writer goes idle:
        // a put per batch waited on the store's write lock behind every request's writes.
        self.head_unstored = Some(value);
        if self.head_stored_at.elapsed() >= HEAD_STORE_INTERVAL {
            self.store_head();
        }
        *lock(&self.shared.head) = head;
        if let Some(m) = &self.mirror {
            m.send(Arc::new(b.buf));
        }
    }

    /// Puts the newest chain head in the store (not synced: it is durable with the store's
    /// next sync).
    fn store_head(&mut self) {
        if let Some(value) = self.head_unstored.take() {
            if let Err(e) = self.head_store.put(HEAD_KEY, value.as_bytes()) {
                self.shared
                    .counters
                    .head_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "storing the audit head failed (the journal is durable)");
            }
            self.head_stored_at = Instant::now();
        }
    }

    /// Writes a batch of the journal's own records (checkpoint, retention...).
    fn write_own(&mut self, b: Batch) -> Result<(), String> {
        match self.commit(&b) {
            Ok(()) => {
                self.publish(b);
                Ok(())
            }
            Err(e) => {
                self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn checkpoint_now(&mut self) -> Result<(), String> {
        self.repair()?;
        let mut b = Batch::new(self.pos);
        self.push_checkpoint(&mut b);
        self.write_own(b)
    }

    fn rotation_due(&self) -> bool {
        self.pos.offset >= self.cfg.segment_max_bytes
            || self
                .seg_created
                .elapsed()
                .map(|a| a >= self.cfg.segment_max_age)
                .unwrap_or(false)
    }

    /// Closes the current segment with a checkpoint and starts the next one.
    fn rotate(&mut self) -> Result<(), String> {
        self.repair()?;
        if self.pos.since_checkpoint > 0 {
            self.checkpoint_now()?;
        }
        let name = segment_file_name(self.pos.next_seq);
        let path = self.dir.join(&name);
        let mut b = Batch::new(ChainPos {
            offset: 0,
            ..self.pos
        });
        let mut start = Map::new();
        start.insert("type".into(), json!("segment_start"));
        start.insert("prev_segment".into(), json!(self.seg_name));
        self.push(&mut b, start);
        self.push_checkpoint(&mut b);
        let created = (|| -> std::io::Result<Box<dyn SegmentFile>> {
            let mut f = self.fs.open_segment(&path)?;
            f.truncate(0)?;
            f.append(&b.buf)?;
            f.sync_data()?;
            self.fs.sync_dir(&self.dir)?;
            Ok(f)
        })();
        match created {
            Ok(f) => {
                self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                self.file = f;
                self.needs_repair = false;
                self.seg_name = name;
                self.seg_created = SystemTime::now();
                self.publish(b);
                self.retention();
                Ok(())
            }
            Err(e) => {
                let _ = self.fs.remove_file(&path);
                self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                Err(format!("starting segment {name}: {e}"))
            }
        }
    }

    /// Deletes the oldest closed segments past the retention limits, after a durable
    /// `retention` record that lets `verify` accept the missing prefix.
    fn retention(&mut self) {
        if let Err(e) = self.try_retention() {
            tracing::warn!(error = %e, "audit retention failed; will retry at the next rotation");
        }
    }

    fn try_retention(&mut self) -> Result<(), String> {
        let (max_age, max_bytes) = (self.cfg.retain_max_age, self.cfg.retain_max_bytes);
        if max_age.is_zero() && max_bytes == 0 {
            return Ok(());
        }
        let segs = list_segments(&self.dir).map_err(|e| e.to_string())?;
        let mut info = Vec::with_capacity(segs.len());
        let mut total = 0u64;
        for (seq, path) in segs {
            let md = std::fs::metadata(&path).map_err(|e| e.to_string())?;
            total += md.len();
            info.push((seq, path, md.len(), md.modified().ok()));
        }
        let now = SystemTime::now();
        let mut remove = 0usize;
        for (i, (_, path, len, mtime)) in info.iter().enumerate() {
            let is_current = path.file_name().and_then(|n| n.to_str()) == Some(&self.seg_name);
            if is_current || i + 1 >= info.len() {
                break;
            }
            let too_big = max_bytes > 0 && total > max_bytes;
            let too_old = !max_age.is_zero()
                && mtime
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age > max_age);
            if !(too_big || too_old) {
                break;
            }
            total -= len;
            remove = i + 1;
        }
        if remove == 0 {
            return Ok(());
        }
        let (kept_seq, kept_path, _, _) = &info[remove];
        let anchor = first_record_prev(kept_path)?;
        let names: Vec<String> = info[..remove]
            .iter()
            .filter_map(|(_, p, _, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        self.repair()?;
        let mut b = Batch::new(self.pos);
        let mut m = Map::new();
        m.insert("type".into(), json!("retention"));
        m.insert("removed_through_seq".into(), json!(kept_seq - 1));
        m.insert("anchor".into(), json!(anchor));
        m.insert("removed_segments".into(), json!(names));
        self.push(&mut b, m);
        self.write_own(b)?;
        for (_, path, _, _) in &info[..remove] {
            self.fs
                .remove_file(path)
                .map_err(|e| format!("removing {}: {e}", path.display()))?;
        }
        self.fs.sync_dir(&self.dir).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Whether a queued record can be written now: one that reports no change, or one whose
    /// change the store has synced (or failed to: it is answered then).
    fn any_ready(&self, entries: &[Entry]) -> bool {
        let mut oldest = None;
        for e in entries {
            match e.after_store_sync {
                None => return true,
                Some(t) => oldest = Some(oldest.map_or(t, |o: u64| o.min(t))),
            }
        }
        oldest.is_some_and(|t| !matches!(self.head_store.synced(t, Duration::ZERO), Ok(false)))
    }

    /// Splits off the entries whose store writes are not durable yet (they go back to the
    /// queue); fails those whose store sync failed.
    fn hold_back_unsynced(&self, live: &mut Vec<Entry>) -> Vec<Entry> {
        if live.iter().all(|e| e.after_store_sync.is_none()) {
            return Vec::new();
        }
        let mut held = Vec::new();
        let mut ready = Vec::with_capacity(live.len());
        for e in live.drain(..) {
            match e
                .after_store_sync
                .map(|t| self.head_store.synced(t, Duration::ZERO))
            {
                None | Some(Ok(true)) => ready.push(e),
                Some(Ok(false)) => held.push(e),
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "a change could not be made durable");
                    e.slot.finish(Err(AuditError::Unavailable(format!(
                        "the store could not make the change durable: {err}"
                    ))));
                }
            }
        }
        *live = ready;
        held
    }

    /// Writes queued records as one batch and answers their waiters. Returns the entries
    /// held back for their store sync, to be queued again.
    fn write_entries(&mut self, entries: Vec<Entry>) -> Vec<Entry> {
        let mut live: Vec<Entry> = entries
            .into_iter()
            .filter(|e| !e.slot.is_abandoned())
            .collect();
        let held = self.hold_back_unsynced(&mut live);
        if live.is_empty() {
            return held;
        }
        if self.rotation_due() {
            if let Err(e) = self.rotate() {
                tracing::warn!(error = %e, "audit segment rotation failed");
                for e2 in &live {
                    e2.slot.finish(Err(AuditError::Unavailable(e.clone())));
                }
                return held;
            }
        }
        let mut b = Batch::new(self.pos);
        let mut slots = Vec::with_capacity(live.len());
        let mut receipts = Vec::with_capacity(live.len());
        for e in live {
            receipts.push(self.push_body(&mut b, &e.body));
            slots.push(e.slot);
        }
        if b.pos.since_checkpoint >= self.cfg.checkpoint_every {
            self.push_checkpoint(&mut b);
        }
        let fail = |slots: &[Arc<Slot>], msg: String| {
            for s in slots {
                s.finish(Err(AuditError::Unavailable(msg.clone())));
            }
        };
        if let Err(e) = self.commit(&b) {
            self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, records = slots.len(), "audit batch failed");
            fail(&slots, e);
            return held;
        }
        // A waiter that gave up (deadline) was told "not written": then none of the batch is.
        let mut all_claimed = true;
        for s in &slots {
            all_claimed &= s.claim();
        }
        if !all_claimed {
            self.needs_repair = true;
            let _ = self.repair();
            self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                records = slots.len(),
                "audit batch exceeded the write deadline"
            );
            fail(&slots, deadline_error(self.cfg.write_deadline).to_string());
            return held;
        }
        self.publish(b);
        for (s, r) in slots.iter().zip(receipts) {
            s.finish(Ok(r));
        }
        held
    }

    /// Time-driven work: rotation by age, checkpoint by interval.
    fn maintain(&mut self) {
        if self.key.is_none() {
            // Without a key: no periodic checkpoints (and no rotation, which starts with one).
            return;
        }
        if self.rotation_due() && self.pos.since_checkpoint > 0 {
            if let Err(e) = self.rotate() {
                tracing::warn!(error = %e, "audit segment rotation failed");
            }
        }
        if self.pos.since_checkpoint > 0
            && self.last_checkpoint.elapsed() >= self.cfg.checkpoint_interval
        {
            if let Err(e) = self.checkpoint_now() {
                tracing::warn!(error = %e, "audit checkpoint failed");
            }
        }
    }

    fn run(mut self) {
        loop {
            let (entries, stop) = {
                let mut q = lock(&self.shared.queue);
                loop {
                    if let Some(change) = q.key_change.take() {
                        drop(q);
                        self.change_key(change);
                        q = lock(&self.shared.queue);
                        continue;
                    }
                    if q.shutdown || self.any_ready(&q.entries) {
                        break;
                    }
                    if self.head_unstored.is_some() {
                        // Going idle: store the head first (never under the queue lock).
                        drop(q);
                        self.store_head();
                        q = lock(&self.shared.queue);
                        continue;
                    }
                    // No key (sealed): no checkpoint can be written, so nothing is due.
                    let mut wait = if self.pos.since_checkpoint > 0 && self.key.is_some() {
                        self.cfg
                            .checkpoint_interval
                            .saturating_sub(self.last_checkpoint.elapsed())
                    } else {
                        Duration::from_secs(1)
                    };
                    if !q.entries.is_empty() {
                        // All of them wait for the store, whose sync wakes us (`on_sync`).
                        // Meanwhile new records are written at once: a slow or stuck store
                        // disk holds up only the records of its own changes.
                        wait = wait.min(STORE_SYNC_WAIT);
                    }
                    if wait.is_zero() {
                        break;
                    }
                    q.writer_waiting = true;
                    let (g, res) = self
                        .shared
                        .wake
                        .wait_timeout(q, wait.min(Duration::from_secs(1)))
                        .unwrap_or_else(|e| e.into_inner());
                    q = g;
                    q.writer_waiting = false;
                    if res.timed_out() {
                        break; // a checkpoint is due, or a store that does not call back
                    }
                }
                let n = q.entries.len().min(MAX_BATCH);
                let entries: Vec<Entry> = q.entries.drain(..n).collect();
                (entries, q.shutdown && q.entries.is_empty())
            };
            let held = self.write_entries(entries);
            let mut stop = stop;
            if !held.is_empty() {
                // Back at the front, ahead of newer records: written once their store sync is
                // (or dropped once their waiters give up). A shutdown waits for them too.
                let mut q = lock(&self.shared.queue);
                q.entries.splice(0..0, held);
                stop = false;
            }
            self.maintain();
            if stop {
                self.close();
                return;
            }
        }
    }

    /// A new key signs everything written while it was pending, at once; dropping the key
    /// (seal) first signs what the old key covers, then marks the unsigned stretch.
    fn change_key(&mut self, change: Option<SigningKey>) {
        match change {
            Some(k) => {
                self.key_id = key_id(&k.verifying_key());
                self.key = Some(k);
                if let Err(e) = self.checkpoint_now() {
                    tracing::warn!(error = %e, "audit checkpoint after the key arrived failed");
                }
            }
            None => {
                if self.key.is_some() && self.pos.since_checkpoint > 0 {
                    if let Err(e) = self.checkpoint_now() {
                        tracing::warn!(error = %e, "audit checkpoint before dropping the key failed");
                    }
                }
                self.key = None;
                self.key_id.clear();
                if let Err(e) = self.checkpoint_now() {
                    tracing::warn!(error = %e, "marking the audit key as pending failed");
                }
            }
        }
    }

    fn close(&mut self) {
        if self.pos.since_checkpoint > 0 && self.key.is_some() {
            if let Err(e) = self.checkpoint_now() {
                tracing::warn!(error = %e, "final audit checkpoint failed");
            }
        }
        self.store_head();
        if let Err(e) = self.head_store.sync() {
            tracing::warn!(error = %e, "syncing the audit head failed");
        }
    }
}

/// `prev` of the first record of a segment.
fn first_record_prev(path: &Path) -> Result<String, String> {
    let f = File::open(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut line = Vec::new();
    BufReader::new(f)
        .read_until(b'\n', &mut line)
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&line).map_err(|e| e.to_string())?;
    v.get("prev")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("{}: first record has no prev", path.display()))
}

/// `time` of the first record of a segment.
fn first_record_time(path: &Path) -> Option<SystemTime> {
    let f = File::open(path).ok()?;
    let mut line = Vec::new();
    BufReader::new(f).read_until(b'\n', &mut line).ok()?;
    let v: Value = serde_json::from_slice(&line).ok()?;
    let t = chrono::DateTime::parse_from_rfc3339(v.get("time")?.as_str()?).ok()?;
    Some(SystemTime::from(t.with_timezone(&Utc)))
}

fn read_head(store: &dyn Store) -> Result<Option<(u64, String)>, AuditError> {
    let Some(raw) = store
        .get(HEAD_KEY)
        .map_err(|e| AuditError::HeadStore(e.to_string()))?
    else {
        return Ok(None);
    };
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|e| AuditError::HeadStore(format!("unreadable head: {e}")))?;
    match (
        v.get("seq").and_then(Value::as_u64),
        v.get("hash").and_then(Value::as_str),
    ) {
        (Some(s), Some(h)) => Ok(Some((s, h.to_string()))),
        _ => Err(AuditError::HeadStore("unreadable head".into())),
    }
}

fn file_len_and_last_byte(path: &Path) -> std::io::Result<(u64, Option<u8>)> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok((0, None));
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok((len, Some(b[0])))
}

impl Journal {
    /// Opens (or creates) the journal in `dir`; see the module docs. Refuses a journal that
    /// ends before the head stored in `head_store` (`Truncated`) or whose last segment is
    /// damaged other than by a torn tail (`Corrupt`), unless `cfg.accept_truncation`.
    pub fn open(
        dir: &Path,
        cfg: JournalConfig,
        signing_key: SigningKey,
        head_store: Arc<dyn Store>,
    ) -> Result<Journal, AuditError> {
        Self::open_inner(dir, cfg, Some(signing_key), head_store, Arc::new(StdFs))
    }

    /// Opens the journal before the signing key is known (the vault starts sealed): records
    /// are chained and durable at once; checkpoints start when [`Journal::set_signing_key`]
    /// hands the key over. A `key_pending` record marks the stretch.
    pub fn open_unsigned(
        dir: &Path,
        cfg: JournalConfig,
        head_store: Arc<dyn Store>,
    ) -> Result<Journal, AuditError> {
        Self::open_inner(dir, cfg, None, head_store, Arc::new(StdFs))
    }

    /// Hands the signing key to a journal opened without one (or replaces it); the writer
    /// signs a checkpoint at once.
    pub fn set_signing_key(&self, key: SigningKey) {
        *lock(&self.inner.verifying_key) = Some(key.verifying_key());
        lock(&self.inner.shared.queue).key_change = Some(Some(key));
        self.inner.shared.wake.notify_all();
    }

    /// Drops the signing key (the vault was sealed): no key material stays in memory; records
    /// go on being chained, and the next key signs them.
    pub fn clear_signing_key(&self) {
        lock(&self.inner.shared.queue).key_change = Some(None);
        self.inner.shared.wake.notify_all();
    }

    /// [`Journal::open`] with the file operations of `fs` (tests inject faults with
    /// [`super::fs::FaultyFs`]).
    pub fn open_with_fs(
        dir: &Path,
        cfg: JournalConfig,
        signing_key: SigningKey,
        head_store: Arc<dyn Store>,
        fs: Arc<dyn JournalFs>,
    ) -> Result<Journal, AuditError> {
        Self::open_inner(dir, cfg, Some(signing_key), head_store, fs)
    }

    fn open_inner(
        dir: &Path,
        cfg: JournalConfig,
        signing_key: Option<SigningKey>,
        head_store: Arc<dyn Store>,
        fs: Arc<dyn JournalFs>,
    ) -> Result<Journal, AuditError> {
        cfg.validate()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| AuditError::io(format!("creating {}", dir.display()), e))?;
        let stored_head = read_head(head_store.as_ref())?;
        let verifying_key = signing_key.as_ref().map(SigningKey::verifying_key);
        let counters = Counters::default();
        let mirror = Mirror::start(cfg.mirror, counters.mirror_dropped.clone());
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            counters,
            head: Mutex::new((0, String::new())),
            cfg: cfg.clone(),
        });
        // The store's syncs wake the writer when records wait for them (`any_ready`).
        let weak = Arc::downgrade(&shared);
        head_store.on_sync(Arc::new(move || {
            let Some(shared) = weak.upgrade() else {
                return false;
            };
            let q = lock(&shared.queue);
            if q.writer_waiting && !q.entries.is_empty() {
                shared.wake.notify_one();
            }
            true
        }));
        let io = |ctx: String| move |e: std::io::Error| AuditError::io(ctx, e);

        let mut segs = list_segments(dir)?;
        let mut first_batch_own: Vec<Map<String, Value>> = Vec::new();
        let (file, seg_name, seg_created, pos) = loop {
            let Some((first_seq, path)) = segs.last().cloned() else {
                // A new journal.
                if let Some((hs, _)) = &stored_head {
                    if !cfg.accept_truncation {
                        return Err(AuditError::Truncated(format!(
                            "no segment in {} but the head kept in the database is seq {hs}; \
                             set accept_truncation to start a new journal",
                            dir.display()
                        )));
                    }
                    tracing::warn!(head = hs, "audit journal missing: starting a new one");
                }
                let name = segment_file_name(1);
                let file = fs
                    .open_segment(&dir.join(&name))
                    .map_err(io(format!("creating {name}")))?;
                let mut start = Map::new();
                start.insert("type".into(), json!("segment_start"));
                start.insert("prev_segment".into(), Value::Null);
                first_batch_own.push(start);
                break (
                    file,
                    name,
                    SystemTime::now(),
                    ChainPos {
                        next_seq: 1,
                        prev: [0u8; 32],
                        offset: 0,
                        since_checkpoint: 0,
                    },
                );
            };
            let name = segment_file_name(first_seq);
            let mut w = Walker::new(WalkOptions {
                key: None,
                expected_head: stored_head.clone(),
                allow_anchored_start: true,
            });
            walk_file(&mut w, &path, Some(first_seq), true)
                .map_err(io(format!("reading {}", path.display())))?;
            let (len, last_byte) =
                file_len_and_last_byte(&path).map_err(io(format!("reading {}", path.display())))?;
            let Some(last) = w.last.clone() else {
                if w.error.is_none() && segs.len() > 1 {
                    // Created by a rotation that did not complete: it holds no durable record.
                    fs.remove_file(&path)
                        .map_err(io(format!("removing {}", path.display())))?;
                    segs.pop();
                    continue;
                }
                return Err(AuditError::Corrupt(format!(
                    "{} holds no valid record",
                    path.display()
                )));
            };
            let mut torn_from = w.unmarked_tail.as_ref().map(|t| t.offset);
            if let Some((hs, _)) = &stored_head {
                if last.seq < *hs && !cfg.accept_truncation {
                    return Err(AuditError::Truncated(format!(
                        "the journal ends at seq {} ({} line {}) but the head kept in the \
                         database is seq {hs}: records were removed from its tail; run `arca \
                         audit verify`, or set accept_truncation to go on from seq {}",
                        last.seq, name, last.pos.line, last.seq
                    )));
                }
            }
            if let Some(err) = &w.error {
                let truncated = matches!(err.kind, super::TamperKind::Truncated);
                if !cfg.accept_truncation {
                    let msg = format!(
                        "{err}; run `arca audit verify`, or set accept_truncation to mark the \
                         damage and go on"
                    );
                    return Err(if truncated {
                        AuditError::Truncated(msg)
                    } else {
                        AuditError::Corrupt(msg)
                    });
                }
                tracing::warn!(error = %err, "audit journal damaged; accept_truncation is set");
                if !truncated && last.end < len {
                    torn_from = Some(last.end);
                }
            }
            let mut file = fs
                .open_segment(&path)
                .map_err(io(format!("opening {}", path.display())))?;
            let mut offset = last.end;
            if let Some(from) = torn_from {
                let mut end = len;
                if last_byte != Some(b'\n') {
                    file.append(b"\n")
                        .and_then(|()| file.sync_data())
                        .map_err(io(format!("marking the torn tail of {name}")))?;
                    end += 1;
                }
                tracing::warn!(segment = %name, offset = from, length = end - from,
                    "audit journal: torn tail after a crash, marked and skipped");
                let mut m = Map::new();
                m.insert("type".into(), json!("torn_tail"));
                m.insert("segment".into(), json!(name));
                m.insert("offset".into(), json!(from));
                m.insert("length".into(), json!(end - from));
                first_batch_own.push(m);
                offset = end;
            } else if !last.terminated {
                // A complete final record without its newline: keep it.
                file.append(b"\n")
                    .and_then(|()| file.sync_data())
                    .map_err(io(format!("terminating the last line of {name}")))?;
                offset = last.end + 1;
            }
            let created = first_record_time(&path).unwrap_or_else(SystemTime::now);
            break (
                file,
                name,
                created,
                ChainPos {
                    next_seq: last.seq + 1,
                    prev: last.hash,
                    offset,
                    since_checkpoint: u64::from(!last.is_checkpoint),
                },
            );
        };

        let mut writer = Writer {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            fs,
            key_id: verifying_key.as_ref().map(key_id).unwrap_or_default(),
            key: signing_key,
            file,
            seg_name,
            seg_created,
            pos,
            needs_repair: false,
            last_checkpoint: Instant::now(),
            head_unstored: None,
            head_stored_at: Instant::now(),
            head_store,
            mirror,
            shared: shared.clone(),
        };
        // Every open writes a checkpoint (after a segment_start or a torn_tail mark).
        let mut b = Batch::new(writer.pos);
        for m in first_batch_own {
            writer.push(&mut b, m);
        }
        writer.push_checkpoint(&mut b);
        writer
            .write_own(b)
            .map_err(|e| AuditError::Unavailable(format!("opening the journal: {e}")))?;
        if writer.pos.next_seq > 1 {
            if let Some((hs, _)) = &stored_head {
                if writer.pos.next_seq - 1 < *hs {
                    tracing::warn!(head = hs, "audit journal continues below the stored head");
                }
            }
        }
        writer.retention();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| AuditError::io("starting the audit writer thread", e))?;
        Ok(Journal {
            inner: Arc::new(Inner {
                shared,
                verifying_key: Mutex::new(verifying_key),
                dir: dir.to_path_buf(),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn enqueue(
        &self,
        record: Map<String, Value>,
        after_store_sync: Option<u64>,
        blocking: bool,
    ) -> Result<Arc<Slot>, AuditError> {
        if let Some(Value::String(t)) = record.get("type") {
            if RESERVED_TYPES.contains(&t.as_str()) {
                return Err(AuditError::InvalidRecord(format!(
                    "type {t:?} is reserved for the journal"
                )));
            }
        }
        let body = record_body(record);
        let shared = &self.inner.shared;
        let slot = Slot::new(blocking);
        let wake = {
            let mut q = lock(&shared.queue);
            if q.shutdown {
                return Err(AuditError::Closed);
            }
            if q.entries.len() >= shared.cfg.max_pending {
                return Err(AuditError::Unavailable(
                    "too many records waiting for the disk".into(),
                ));
            }
            q.entries.push(Entry {
                body,
                slot: slot.clone(),
                after_store_sync,
            });
            q.writer_waiting
        };
        if wake {
            shared.wake.notify_one();
        }
        Ok(slot)
    }

    /// Appends a record (already redacted) and waits until it is durable or the write deadline
    /// passes. Blocks the thread: from async code use [`Journal::append`].
    pub fn append_blocking(&self, record: Map<String, Value>) -> Result<Receipt, AuditError> {
        let deadline_len = self.inner.shared.cfg.write_deadline;
        let deadline = Instant::now() + deadline_len;
        let slot = self.enqueue(record, None, true)?;
        let mut st = lock(&slot.state);
        loop {
            if let Some(r) = take_done(&mut st) {
                return r;
            }
            if matches!(*st, SlotState::Pending) {
                let now = Instant::now();
                if now >= deadline {
                    *st = SlotState::Abandoned;
                    return Err(deadline_error(deadline_len));
                }
                st = slot
                    .cv
                    .wait_timeout(st, deadline - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            } else {
                st = slot.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Appends a record (already redacted): the journal adds `seq`, `prev` and `time` (if
    /// absent). Resolves once the line is durable (`Ok`), or with `Unavailable` if it could
    /// not be made durable within `write_deadline`; then the record is not in the journal.
    /// Needs a Tokio runtime with timers (actix has one).
    pub async fn append(&self, record: Map<String, Value>) -> Result<Receipt, AuditError> {
        self.append_inner(record, None).await
    }

    /// `append` for a record that reports a change already written to the store but not
    /// yet durable: `ticket` is from `Store::sync_start`, and the writer holds the record
    /// back (writing others meanwhile) until the store says the ticket is durable. The
    /// store syncs on its own thread while the journal goes on. If the store cannot sync,
    /// the record is not written and the answer is `Unavailable`.
    pub async fn append_after_store_sync(
        &self,
        record: Map<String, Value>,
        ticket: u64,
    ) -> Result<Receipt, AuditError> {
        self.append_inner(record, Some(ticket)).await
    }

    async fn append_inner(
        &self,
        record: Map<String, Value>,
        after_store_sync: Option<u64>,
    ) -> Result<Receipt, AuditError> {
        let deadline_len = self.inner.shared.cfg.write_deadline;
        let deadline = tokio::time::Instant::now() + deadline_len;
        let slot = self.enqueue(record, after_store_sync, false)?;
        loop {
            let claimed = {
                let mut st = lock(&slot.state);
                if let Some(r) = take_done(&mut st) {
                    return r;
                }
                if matches!(*st, SlotState::Pending) && tokio::time::Instant::now() >= deadline {
                    *st = SlotState::Abandoned;
                    return Err(deadline_error(deadline_len));
                }
                matches!(*st, SlotState::Claimed)
            };
            if claimed {
                slot.notify.notified().await;
            } else {
                let _ = tokio::time::timeout_at(deadline, slot.notify.notified()).await;
            }
        }
    }

    /// The key that verifies the checkpoints.
    /// `None` while the journal waits for its key (vault sealed since start).
    pub fn public_key(&self) -> Option<VerifyingKey> {
        *lock(&self.inner.verifying_key)
    }

    /// The public key as 64 hex digits.
    pub fn public_key_hex(&self) -> Option<String> {
        self.public_key().map(|k| hex::encode(k.as_bytes()))
    }

    /// The public key as a PEM `PUBLIC KEY` (for `GET /v1/sys/audit-log/public-key`).
    pub fn public_key_pem(&self) -> Option<String> {
        self.public_key().map(|k| public_key_pem(&k))
    }

    /// `(seq, hex hash)` of the last durable record.
    pub fn head(&self) -> (u64, String) {
        lock(&self.inner.shared.head).clone()
    }

    pub fn stats(&self) -> JournalStats {
        let c = &self.inner.shared.counters;
        JournalStats {
            records: c.records.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            failed_batches: c.failed.load(Ordering::Relaxed),
            mirror_dropped: c.mirror_dropped.load(Ordering::Relaxed),
            head_store_errors: c.head_errors.load(Ordering::Relaxed),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The segment files, oldest first (for export).
    pub fn segments(&self) -> Result<Vec<PathBuf>, AuditError> {
        Ok(list_segments(&self.inner.dir)?
            .into_iter()
            .map(|(_, p)| p)
            .collect())
    }

    /// Stops the writer after the queued records: writes a final checkpoint and syncs the
    /// head. Later appends fail with `Closed`. Also done when the last handle is dropped.
    pub fn close(&self) {
        shutdown(&self.inner.shared, &self.inner.thread);
    }
}
