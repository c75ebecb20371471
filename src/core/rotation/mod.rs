//! Secret rotation: per-secret rotation policies, due dates, the persisted rotation state
//! machine, and rotators (vault-only, PostgreSQL, MySQL/MariaDB, external command).
//!
//! Storage (keys in clear, records encrypted with AAD bound to mount/path):
//! - `rot/r/<mount>/<path>`                   the record: policy + state (+ pending credential)
//! - `rot/due/<unix secs, 20 digits>/<mount>/<path>`  due index (empty value): the reconciler
//!   finds due secrets by prefix scans over this index, never by reading every record
//! - `rot/l/<mount>/<path>`                   the lease (owner, expiry; no secret, clear)
//!
//! The state machine (every step persisted and synced before the next side effect):
//! `idle` -> `pending` (new credential stored encrypted) -> `set` (the target accepted it) ->
//! `tested` (a login with it worked) -> promoted (new KV version + `idle` + next due date, one
//! atomic batch). A failed attempt keeps the same pending credential and retries with backoff;
//! after `max_attempts` the record is `failed` until an operator resumes or aborts it.

pub mod generator;
pub mod policy;
pub mod rotators;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::clock::{rfc3339, Clock};
use super::crypto::{label, Location};
use super::error::{Error, Result};
use super::kv::ReadOutcome;
use super::vault::Vault;
use crate::store::Op;
use policy::{Policy, Strategy, Target};
use rotators::{External, Login, Mysql, Postgres, Rotator, SetPassword};

/// A credential in memory: zeroized on drop, never printed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// An external command declared in the config file (`[rotation.commands.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    pub timeout_secs: u64,
}

/// Validated rotation settings (from the `[rotation]` section of the config).
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_period_secs: u64,
    pub jitter_secs: u64,
    pub max_attempts: u32,
    pub backoff_secs: u64,
    pub backoff_max_secs: u64,
    pub test_login_attempts: u32,
    pub test_login_delay_ms: u64,
    pub lease_ttl_secs: u64,
    pub max_concurrent: usize,
    pub db_timeout_secs: u64,
    pub commands: BTreeMap<String, CommandSpec>,
    /// TEST ONLY (`ARCA_TEST_CRASH_AT`): abort the process right after this step is durable
    /// (`pending`, `set`, `tested`, `promoted`).
    pub crash_at: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_period_secs: 90 * 86_400,
            jitter_secs: 3_600,
            max_attempts: 5,
            backoff_secs: 30,
            backoff_max_secs: 3_600,
            test_login_attempts: 5,
            test_login_delay_ms: 500,
            lease_ttl_secs: 300,
            max_concurrent: 4,
            db_timeout_secs: 10,
            commands: BTreeMap::new(),
            crash_at: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Idle,
    Pending,
    Set,
    Tested,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Pending => "pending",
            Phase::Set => "set",
            Phase::Tested => "tested",
            Phase::Failed => "failed",
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Pending {
    pub username: String,
    pub password: Secret,
    pub started_at: String,
    pub trigger: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub rotated_at: String,
    pub username: String,
    pub trigger: String,
}

const HISTORY_LEN: usize = 20;

/// Everything stored about one secret's rotation.
#[derive(Clone, Serialize, Deserialize)]
pub struct Record {
    pub policy: Policy,
    pub phase: Phase,
    pub failed_phase: Option<Phase>,
    pub pending: Option<Pending>,
    pub attempts: u32,
    pub last_error: String,
    /// Unix seconds of the next scheduled rotation.
    pub next_rotation_at: i64,
    /// The time under which the due index holds this secret (`None`: not indexed, i.e.
    /// failed). Idle: `next_rotation_at`; in progress: the next attempt.
    pub due_at: Option<i64>,
    pub last_rotation: String,
    pub last_version: u64,
    pub rotations: u64,
    pub history: Vec<HistoryEntry>,
}

impl Record {
    /// The JSON of `GET secret/rotation/:path` (never the pending credential).
    pub fn to_json(&self, now: i64) -> Value {
        let mut v = self.policy.to_json();
        if let Value::Object(m) = &mut v {
            m.insert("state".into(), json!(self.phase.as_str()));
            m.insert(
                "failed_step".into(),
                json!(self.failed_phase.map(|p| p.as_str())),
            );
            m.insert("attempts".into(), json!(self.attempts));
            m.insert("last_error".into(), json!(self.last_error));
            m.insert(
                "next_rotation_at".into(),
                json!(unix_rfc3339(self.next_rotation_at)),
            );
            m.insert(
                "next_attempt_at".into(),
                json!(self.due_at.map(unix_rfc3339)),
            );
            m.insert("overdue".into(), json!(self.overdue(now)));
            m.insert("last_rotation".into(), json!(self.last_rotation));
            m.insert("last_version".into(), json!(self.last_version));
            m.insert("rotations".into(), json!(self.rotations));
            m.insert("history".into(), json!(self.history));
        }
        v
    }

    pub fn overdue(&self, now: i64) -> bool {
        self.phase != Phase::Idle || self.next_rotation_at <= now
    }
}

/// One row of `sys/rotation/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    pub path: String,
    pub period: String,
    pub target: Target,
    pub strategy: Strategy,
    pub state: &'static str,
    pub last_rotation: String,
    pub last_version: u64,
    pub next_rotation_at: String,
    pub overdue: bool,
    pub attempts: u32,
    pub last_error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// Why a rotation did not produce a new version.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("no rotation policy for this secret")]
    NotFound,
    #[error("a rotation of this secret is already in progress")]
    Busy,
    #[error("not due yet")]
    NotDue,
    /// This attempt failed; the rotation is retried with backoff.
    #[error("rotation attempt failed (will retry): {0}")]
    Attempt(String),
    /// The rotation stopped in the `failed` state.
    #[error("rotation failed; resume or abort it: {0}")]
    Failed(String),
    #[error(transparent)]
    Core(#[from] Error),
}

impl From<crate::store::StoreError> for RotateError {
    fn from(e: crate::store::StoreError) -> Self {
        RotateError::Core(e.into())
    }
}

/// What one reconciler pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassReport {
    pub due: usize,
    pub rotated: usize,
    pub failed: usize,
    pub busy: usize,
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

pub fn unix_rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(rfc3339)
        .unwrap_or_default()
}

fn rec_key(mount: &str, path: &str) -> Vec<u8> {
    format!("rot/r/{mount}/{path}").into_bytes()
}

fn due_key(t: i64, mount: &str, path: &str) -> Vec<u8> {
    format!("rot/due/{:020}/{mount}/{path}", t.max(0)).into_bytes()
}

fn lease_key(mount: &str, path: &str) -> Vec<u8> {
    format!("rot/l/{mount}/{path}").into_bytes()
}

/// Key prefixes of the due index covering exactly the times `0..=now` (at most 20 * 9 + 1
/// prefixes, each scan returning only due entries).
fn due_prefixes(now: i64) -> Vec<String> {
    let n = format!("{:020}", now.max(0));
    let mut out = Vec::new();
    for (i, c) in n.bytes().enumerate() {
        for d in b'0'..c {
            out.push(format!("rot/due/{}{}", &n[..i], d as char));
        }
    }
    out.push(format!("rot/due/{n}/"));
    out
}

/// Deterministic jitter in `0..window` for one secret and one base time, so thousands of
/// secrets with the same period spread out, and a recomputation gives the same answer.
pub fn jitter(mount: &str, path: &str, base: i64, window: u64) -> i64 {
    if window == 0 {
        return 0;
    }
    let h = Sha256::digest(format!("{mount}\0{path}\0{base}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    (u64::from_be_bytes(b) % window) as i64
}

/// Backoff before attempt `attempts + 1`: base * 2^(attempts-1), capped.
pub fn backoff(settings: &Settings, attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(30);
    let secs = settings.backoff_secs.saturating_mul(1u64 << exp);
    secs.min(settings.backoff_max_secs.max(settings.backoff_secs)) as i64
}

struct Lease {
    key: Vec<u8>,
    value: Mutex<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct LeaseRec {
    boot: String,
    run: String,
    expires: i64,
}

/// The rotators behind one dispatch (static, so the `async fn`s of the trait stay `Send`).
enum AnyRotator {
    None,
    Pg(Postgres),
    My(Mysql),
    Ext(External),
    #[cfg(test)]
    Fake(Arc<fake::FakeDb>),
}

impl AnyRotator {
    async fn set_password(&self, req: &SetPassword<'_>) -> std::result::Result<(), String> {
        match self {
            AnyRotator::None => Ok(()),
            AnyRotator::Pg(r) => r.set_password(req).await,
            AnyRotator::My(r) => r.set_password(req).await,
            AnyRotator::Ext(r) => r.set_password(req).await,
            #[cfg(test)]
            AnyRotator::Fake(r) => r.set_password(req).await,
        }
    }
    async fn test_login(
        &self,
        user: &str,
        pw: &Secret,
        secret: &str,
    ) -> std::result::Result<(), String> {
        match self {
            AnyRotator::None => Ok(()),
            AnyRotator::Pg(r) => r.test_login(user, pw, secret).await,
            AnyRotator::My(r) => r.test_login(user, pw, secret).await,
            AnyRotator::Ext(r) => r.test_login(user, pw, secret).await,
            #[cfg(test)]
            AnyRotator::Fake(r) => r.test_login(user, pw, secret).await,
        }
    }
}

/// Process-wide counters for the metrics endpoint.
#[derive(Default)]
pub struct Counters {
    pub rotations: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub passes: AtomicU64,
}

/// The rotation engine of one vault.
pub struct Rotation {
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// Identifies this process: a lease of another boot is stale (sled allows one process per
    /// store, so its owner is dead).
    boot: String,
    locks: Vec<Mutex<()>>,
    pub counters: Counters,
    /// The runtime rotations run on (set by the scheduler), so HTTP workers never block on
    /// store syncs or database round trips.
    runtime: Mutex<Option<tokio::runtime::Handle>>,
    /// Where every persisted step is reported (the audit journal), set by the server.
    events: std::sync::OnceLock<EventSink>,
    #[cfg(test)]
    fake: Option<Arc<fake::FakeDb>>,
}

/// Receives `(action, fields)` for every persisted rotation step; never a password.
pub type EventSink = Arc<dyn Fn(&str, serde_json::Map<String, Value>) + Send + Sync>;

impl Rotation {
    pub fn new(vault: Arc<Vault>, clock: Arc<dyn Clock>, settings: Settings) -> Rotation {
        Rotation {
            vault,
            clock,
            settings,
            boot: uuid::Uuid::new_v4().to_string(),
            locks: (0..64).map(|_| Mutex::new(())).collect(),
            counters: Counters::default(),
            runtime: Mutex::new(None),
            events: std::sync::OnceLock::new(),
            #[cfg(test)]
            fake: None,
        }
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    pub fn set_runtime(&self, h: tokio::runtime::Handle) {
        *self.runtime.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    pub fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    fn lock(&self, mount: &str, path: &str) -> std::sync::MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (mount, path).hash(&mut h);
        let i = (h.finish() as usize) % self.locks.len();
        self.locks[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn crash_point(&self, step: &str) {
        if self.settings.crash_at.as_deref() == Some(step) {
            tracing::error!(
                step,
                "ARCA_TEST_CRASH_AT reached: aborting the process (test only)"
            );
            std::process::abort();
        }
    }

    // ------------------------------------------------------------ records

    pub fn load(&self, mount: &str, path: &str) -> Result<Option<Record>> {
        let kr = self.vault.keyring()?;
        let Some(env) = self.vault.store.get(&rec_key(mount, path))? else {
            return Ok(None);
        };
        let json = kr.open(label::KV, &Location::new("rotation", mount, path, 0), &env)?;
        serde_json::from_slice(&json).map(Some).map_err(internal)
    }

    /// The ops that store `rec` and move its due index entry from `old_due`.
    fn record_ops(
        &self,
        mount: &str,
        path: &str,
        old_due: Option<i64>,
        rec: &Record,
    ) -> Result<Vec<Op>> {
        let kr = self.vault.keyring()?;
        let json = zeroize::Zeroizing::new(serde_json::to_vec(rec).map_err(internal)?);
        let mut ops = vec![Op::Put(
            rec_key(mount, path),
            kr.seal(label::KV, &Location::new("rotation", mount, path, 0), &json),
        )];
        if old_due != rec.due_at {
            if let Some(t) = old_due {
                ops.push(Op::Delete(due_key(t, mount, path)));
            }
            if let Some(t) = rec.due_at {
                ops.push(Op::Put(due_key(t, mount, path), Vec::new()));
            }
        }
        Ok(ops)
    }

    fn save(&self, mount: &str, path: &str, old_due: Option<i64>, rec: &Record) -> Result<()> {
        let ops = self.record_ops(mount, path, old_due, rec)?;
        self.vault.store.batch(ops)?;
        self.vault.store.sync()?;
        self.emit(mount, path, rec);
        Ok(())
    }

    /// Reports where to send step events (the audit journal); the first sink set wins.
    pub fn set_event_sink(&self, sink: EventSink) {
        let _ = self.events.set(sink);
    }

    /// One event per persisted step: path, state, attempts, last error (already scrubbed of
    /// passwords), version; never the pending credential.
    pub(crate) fn emit(&self, mount: &str, path: &str, rec: &Record) {
        if let Some(sink) = self.events.get() {
            let mut m = serde_json::Map::new();
            m.insert("path".into(), json!(format!("{mount}/data/{path}")));
            m.insert("state".into(), json!(rec.phase.as_str()));
            m.insert("attempts".into(), json!(rec.attempts));
            m.insert("last_error".into(), json!(rec.last_error));
            m.insert("version".into(), json!(rec.last_version));
            m.insert(
                "outcome".into(),
                json!(if rec.phase == Phase::Failed {
                    "error"
                } else {
                    "allowed"
                }),
            );
            sink("rotation-step", m);
        }
    }

    fn next_due(&self, mount: &str, path: &str, base: i64, period: u64) -> i64 {
        let t = base.saturating_add(period as i64);
        t + jitter(mount, path, t, self.settings.jitter_secs)
    }

    /// Sets or replaces the policy of a secret. The first due date counts from the current
    /// version's creation (now if the secret does not exist yet). Refused while a rotation is
    /// in progress.
    pub fn set_policy(&self, mount: &str, path: &str, policy: Policy) -> Result<Record> {
        crate::core::kv::validate_key_path(path)?;
        let _g = self.lock(mount, path);
        let now = self.now();
        let old = self.load(mount, path)?;
        let rec = match old {
            Some(r) if matches!(r.phase, Phase::Pending | Phase::Set | Phase::Tested) => {
                return Err(Error::bad(format!(
                    "a rotation of this secret is in progress (state {}); wait for it or abort it",
                    r.phase.as_str()
                )))
            }
            Some(mut r) => {
                let old_due = r.due_at;
                let period_changed = r.policy.period_secs != policy.period_secs;
                r.policy = policy;
                if period_changed && r.phase == Phase::Idle {
                    let base = chrono::DateTime::parse_from_rfc3339(&r.last_rotation)
                        .map(|t| t.timestamp())
                        .unwrap_or_else(|_| self.version_created(mount, path).unwrap_or(now));
                    r.next_rotation_at = self.next_due(mount, path, base, r.policy.period_secs);
                    r.due_at = Some(r.next_rotation_at);
                }
                self.save(mount, path, old_due, &r)?;
                r
            }
            None => {
                let base = self.version_created(mount, path).unwrap_or(now);
                let next = self.next_due(mount, path, base, policy.period_secs);
                let r = Record {
                    policy,
                    phase: Phase::Idle,
                    failed_phase: None,
                    pending: None,
                    attempts: 0,
                    last_error: String::new(),
                    next_rotation_at: next,
                    due_at: Some(next),
                    last_rotation: String::new(),
                    last_version: 0,
                    rotations: 0,
                    history: Vec::new(),
                };
                self.save(mount, path, None, &r)?;
                r
            }
        };
        Ok(rec)
    }

    /// Sets the policy of many secrets that have none yet (existing ones are skipped), in
    /// batches with one sync at the end: bulk onboarding and benchmarks. Returns how many were set.
    pub fn set_policies_bulk(&self, mount: &str, items: Vec<(String, Policy)>) -> Result<usize> {
        let now = self.now();
        let mut n = 0;
        for chunk in items.chunks(1000) {
            let mut ops = Vec::new();
            for (path, policy) in chunk {
                crate::core::kv::validate_key_path(path)?;
                if self.vault.store.get(&rec_key(mount, path))?.is_some() {
                    continue;
                }
                let base = self.version_created(mount, path).unwrap_or(now);
                let next = self.next_due(mount, path, base, policy.period_secs);
                let r = Record {
                    policy: policy.clone(),
                    phase: Phase::Idle,
                    failed_phase: None,
                    pending: None,
                    attempts: 0,
                    last_error: String::new(),
                    next_rotation_at: next,
                    due_at: Some(next),
                    last_rotation: String::new(),
                    last_version: 0,
                    rotations: 0,
                    history: Vec::new(),
                };
                ops.extend(self.record_ops(mount, path, None, &r)?);
                n += 1;
            }
            self.vault.store.batch(ops)?;
        }
        self.vault.store.sync()?;
        Ok(n)
    }

    fn version_created(&self, mount: &str, path: &str) -> Option<i64> {
        let meta = self.vault.kv_read_metadata(mount, path).ok()?;
        let v = meta.versions.get(&meta.current_version)?;
        chrono::DateTime::parse_from_rfc3339(&v.created_time)
            .ok()
            .map(|t| t.timestamp())
    }

    /// Removes the policy (refused while a rotation is in progress; allowed when failed).
    pub fn delete_policy(&self, mount: &str, path: &str) -> Result<()> {
        let _g = self.lock(mount, path);
        let Some(r) = self.load(mount, path)? else {
            return Ok(());
        };
        if matches!(r.phase, Phase::Pending | Phase::Set | Phase::Tested) {
            return Err(Error::bad(format!(
                "a rotation of this secret is in progress (state {}); wait for it or abort it",
                r.phase.as_str()
            )));
        }
        let mut ops = vec![Op::Delete(rec_key(mount, path))];
        if let Some(t) = r.due_at {
            ops.push(Op::Delete(due_key(t, mount, path)));
        }
        self.vault.store.batch(ops)?;
        self.vault.store.sync()?;
        Ok(())
    }

    // ------------------------------------------------------------ leases

    fn acquire(&self, mount: &str, path: &str) -> Result<Option<Lease>> {
        let key = lease_key(mount, path);
        for _ in 0..4 {
            let now = self.now();
            let mine = serde_json::to_vec(&LeaseRec {
                boot: self.boot.clone(),
                run: uuid::Uuid::new_v4().to_string(),
                expires: now + self.settings.lease_ttl_secs as i64,
            })
            .map_err(internal)?;
            let cur = self.vault.store.get(&key)?;
            if let Some(c) = &cur {
                let stale = serde_json::from_slice::<LeaseRec>(c)
                    .map(|l| l.expires <= now || l.boot != self.boot)
                    .unwrap_or(true);
                if !stale {
                    return Ok(None);
                }
            }
            if self.vault.store.cas(&key, cur.as_deref(), Some(&mine))? {
                return Ok(Some(Lease {
                    key,
                    value: Mutex::new(mine),
                }));
            }
        }
        Ok(None)
    }

    /// Extends the lease; `Busy` if another owner took it (ours expired).
    fn renew(&self, lease: &Lease) -> std::result::Result<(), RotateError> {
        let mut v = lease.value.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec: LeaseRec = serde_json::from_slice(&v).map_err(internal)?;
        rec.expires = self.now() + self.settings.lease_ttl_secs as i64;
        let new = serde_json::to_vec(&rec).map_err(internal)?;
        if !self.vault.store.cas(&lease.key, Some(&v), Some(&new))? {
            return Err(RotateError::Busy);
        }
        *v = new;
        Ok(())
    }

    fn release(&self, lease: &Lease) {
        let v = lease.value.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.vault.store.cas(&lease.key, Some(&v), None) {
            tracing::warn!(error = %e, "releasing a rotation lease failed (it expires by itself)");
        }
    }

    // ------------------------------------------------------------ operators

    /// `failed` -> the step that failed, attempts reset, due now.
    pub fn resume(&self, mount: &str, path: &str) -> Result<()> {
        let _g = self.lock(mount, path);
        let mut r = self.load(mount, path)?.ok_or(Error::NotFound)?;
        if r.phase != Phase::Failed {
            return Err(Error::bad(format!(
                "nothing to resume: the rotation is {}",
                r.phase.as_str()
            )));
        }
        let old = r.due_at;
        r.phase = r.failed_phase.take().unwrap_or(Phase::Pending);
        r.attempts = 0;
        r.due_at = Some(self.now());
        self.save(mount, path, old, &r)?;
        tracing::info!(mount, path, "rotation resumed by an operator");
        Ok(())
    }

    /// Drops an unfinished or failed rotation (and its pending credential); the next one is a
    /// whole period away. Returns warnings.
    pub fn abort(&self, mount: &str, path: &str) -> std::result::Result<Vec<String>, RotateError> {
        let lease = self.acquire(mount, path)?.ok_or(RotateError::Busy)?;
        let res = (|| {
            let _g = self.lock(mount, path);
            let mut r = self.load(mount, path)?.ok_or(RotateError::NotFound)?;
            if r.phase == Phase::Idle {
                return Err(Error::bad("nothing to abort: no rotation in progress").into());
            }
            let mut warnings = Vec::new();
            let reached = r.failed_phase.unwrap_or(r.phase);
            if r.policy.target != Target::None
                && r.policy.strategy == Strategy::SingleUser
                && reached != Phase::Idle
            {
                warnings.push("the target may already hold the aborted pending password: check that the current credential still logs in".to_string());
            }
            let old = r.due_at;
            let now = self.now();
            r.phase = Phase::Idle;
            r.failed_phase = None;
            r.pending = None;
            r.attempts = 0;
            r.next_rotation_at = self.next_due(mount, path, now, r.policy.period_secs);
            r.due_at = Some(r.next_rotation_at);
            self.save(mount, path, old, &r)?;
            tracing::warn!(mount, path, "rotation aborted by an operator");
            Ok(warnings)
        })();
        self.release(&lease);
        res
    }

    // ------------------------------------------------------------ the state machine

    /// Runs (or resumes) the rotation of one secret to completion under its lease. Returns
    /// the new KV version.
    pub async fn rotate(
        &self,
        mount: &str,
        path: &str,
        trigger: Trigger,
    ) -> std::result::Result<u64, RotateError> {
        let lease = self.acquire(mount, path)?.ok_or(RotateError::Busy)?;
        let res = self.drive(mount, path, trigger, &lease).await;
        self.release(&lease);
        res
    }

    /// `rotate` on the engine's runtime when it has one.
    pub async fn rotate_on_runtime(
        self: &Arc<Self>,
        mount: String,
        path: String,
        trigger: Trigger,
    ) -> std::result::Result<u64, RotateError> {
        match self.runtime() {
            Some(h) => {
                let me = self.clone();
                h.spawn(async move { me.rotate(&mount, &path, trigger).await })
                    .await
                    .map_err(|e| RotateError::Core(internal(format!("rotation task: {e}"))))?
            }
            None => self.rotate(&mount, &path, trigger).await,
        }
    }

    async fn drive(
        &self,
        mount: &str,
        path: &str,
        trigger: Trigger,
        lease: &Lease,
    ) -> std::result::Result<u64, RotateError> {
        let secret = format!("{mount}/{path}");
        let mut first = true;
        loop {
            self.renew(lease)?;
            let rec = self.load(mount, path)?.ok_or(RotateError::NotFound)?;
            let now = self.now();
            if first && trigger == Trigger::Schedule && rec.due_at.is_none_or(|d| d > now) {
                return Err(RotateError::NotDue);
            }
            first = false;
            match rec.phase {
                Phase::Failed => return Err(RotateError::Failed(rec.last_error)),
                Phase::Idle if rec.policy.target == Target::None => {
                    // No side effect outside the store: generate and promote in one batch.
                    let pending = Pending {
                        username: String::new(),
                        password: rec.policy.generator.generate(),
                        started_at: rfc3339(self.clock.now()),
                        trigger: trigger.as_str().into(),
                    };
                    return self.promote(mount, path, Some(pending), trigger);
                }
                Phase::Idle => self.begin(mount, path, trigger)?,
                Phase::Pending => {
                    let pending = rec
                        .pending
                        .clone()
                        .ok_or_else(|| internal("pending state without a credential"))?;
                    let rotator = self.rotator(&rec.policy)?;
                    let logins = match self.logins(mount, path, &rec, &pending) {
                        Ok(l) => l,
                        Err(e) => return Err(self.fail(mount, path, e.to_string())?),
                    };
                    let self_change = rec.policy.strategy == Strategy::SingleUser
                        && rec.policy.connection.admin_secret.is_empty();
                    let req = SetPassword {
                        user: &pending.username,
                        new_password: &pending.password,
                        logins: &logins,
                        self_change,
                        secret: &secret,
                    };
                    match rotator.set_password(&req).await {
                        Ok(()) => self.advance(mount, path, Phase::Pending, Phase::Set)?,
                        Err(e) => {
                            return Err(self.fail(
                                mount,
                                path,
                                format!("setting the password: {e}"),
                            )?)
                        }
                    }
                }
                Phase::Set => {
                    let pending = rec
                        .pending
                        .clone()
                        .ok_or_else(|| internal("set state without a credential"))?;
                    let rotator = self.rotator(&rec.policy)?;
                    let mut last = String::new();
                    let mut ok = false;
                    for i in 0..self.settings.test_login_attempts.max(1) {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(
                                self.settings.test_login_delay_ms,
                            ))
                            .await;
                            self.renew(lease)?;
                        }
                        match rotator
                            .test_login(&pending.username, &pending.password, &secret)
                            .await
                        {
                            Ok(()) => {
                                ok = true;
                                break;
                            }
                            Err(e) => last = e,
                        }
                    }
                    if ok {
                        self.advance(mount, path, Phase::Set, Phase::Tested)?;
                    } else {
                        // Back to `pending`: the next attempt sets the same password again.
                        self.advance(mount, path, Phase::Set, Phase::Pending)?;
                        return Err(self.fail(
                            mount,
                            path,
                            format!("login with the new password failed: {last}"),
                        )?);
                    }
                }
                Phase::Tested => return self.promote(mount, path, None, trigger),
            }
        }
    }

    fn rotator(&self, p: &Policy) -> Result<AnyRotator> {
        #[cfg(test)]
        if let Some(f) = &self.fake {
            if p.target != Target::None {
                return Ok(AnyRotator::Fake(f.clone()));
            }
        }
        let c = &p.connection;
        let timeout = Duration::from_secs(self.settings.db_timeout_secs.max(1));
        Ok(match p.target {
            Target::None => AnyRotator::None,
            Target::Postgres => AnyRotator::Pg(Postgres {
                host: c.host.clone(),
                port: c.port,
                database: c.database.clone(),
                timeout,
            }),
            Target::Mysql => AnyRotator::My(Mysql {
                host: c.host.clone(),
                port: c.port,
                database: c.database.clone(),
                user_host: c.user_host.clone(),
                timeout,
            }),
            Target::Command => {
                let spec = self.settings.commands.get(&p.command).ok_or_else(|| {
                    Error::bad(format!(
                        "command {:?} is no longer declared in the config file",
                        p.command
                    ))
                })?;
                AnyRotator::Ext(External {
                    name: p.command.clone(),
                    spec: spec.clone(),
                })
            }
        })
    }

    fn read_live(&self, mount: &str, path: &str) -> Result<Option<Map<String, Value>>> {
        match self.vault.kv_read(mount, path, None) {
            Ok(ReadOutcome::Found {
                data: Value::Object(m),
                ..
            }) => Ok(Some(m)),
            Ok(_) | Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn field(m: &Map<String, Value>, k: &str) -> Option<String> {
        m.get(k).and_then(|v| v.as_str()).map(str::to_string)
    }

    /// The credentials `set_password` may connect with.
    fn logins(
        &self,
        mount: &str,
        path: &str,
        rec: &Record,
        pending: &Pending,
    ) -> Result<Vec<Login>> {
        let c = &rec.policy.connection;
        if rec.policy.target == Target::Command {
            return Ok(Vec::new());
        }
        if !c.admin_secret.is_empty() {
            let admin = self.read_live(mount, &c.admin_secret)?.ok_or_else(|| {
                Error::bad(format!(
                    "the admin secret {mount}/{} is missing or deleted",
                    c.admin_secret
                ))
            })?;
            let (Some(u), Some(p)) = (
                Self::field(&admin, "username"),
                Self::field(&admin, "password"),
            ) else {
                return Err(Error::bad(format!(
                    "the admin secret {mount}/{} needs string fields username and password",
                    c.admin_secret
                )));
            };
            return Ok(vec![Login {
                username: u,
                password: Secret::new(p),
            }]);
        }
        // Single user, changing its own password: the current password, then the pending
        // one (a crash may have happened after the database applied it).
        let mut out = Vec::new();
        if let Some(cur) = self.read_live(mount, path)? {
            if let Some(p) = Self::field(&cur, "password") {
                out.push(Login {
                    username: pending.username.clone(),
                    password: Secret::new(p),
                });
            }
        }
        out.push(Login {
            username: pending.username.clone(),
            password: pending.password.clone(),
        });
        Ok(out)
    }

    /// idle -> pending: the new credential is durable (encrypted) before any side effect.
    fn begin(&self, mount: &str, path: &str, trigger: Trigger) -> Result<()> {
        {
            let _g = self.lock(mount, path);
            let mut r = self.load(mount, path)?.ok_or(Error::NotFound)?;
            if r.phase != Phase::Idle {
                return Ok(());
            }
            let username = match r.policy.strategy {
                Strategy::SingleUser => {
                    if !r.policy.connection.username.is_empty() {
                        r.policy.connection.username.clone()
                    } else {
                        self.read_live(mount, path)?
                            .and_then(|m| Self::field(&m, "username"))
                            .unwrap_or_default()
                    }
                }
                Strategy::AlternatingUsers => {
                    let users = &r.policy.connection.users;
                    let cur = self
                        .read_live(mount, path)?
                        .and_then(|m| Self::field(&m, "username"));
                    // The idle user: the one the secret does not point at now.
                    if cur.as_deref() == users.first().map(String::as_str) {
                        users.get(1).cloned().unwrap_or_default()
                    } else {
                        users.first().cloned().unwrap_or_default()
                    }
                }
            };
            let old = r.due_at;
            r.pending = Some(Pending {
                username,
                password: r.policy.generator.generate(),
                started_at: rfc3339(self.clock.now()),
                trigger: trigger.as_str().into(),
            });
            r.phase = Phase::Pending;
            r.attempts = 0;
            r.last_error.clear();
            // Indexed as due now, so a restart resumes it at once.
            r.due_at = Some(self.now());
            self.save(mount, path, old, &r)?;
        }
        self.crash_point("pending");
        Ok(())
    }

    fn advance(&self, mount: &str, path: &str, from: Phase, to: Phase) -> Result<()> {
        {
            let _g = self.lock(mount, path);
            let mut r = self.load(mount, path)?.ok_or(Error::NotFound)?;
            if r.phase != from {
                return Err(internal(format!(
                    "rotation state moved from {} under the lease",
                    from.as_str()
                )));
            }
            r.phase = to;
            let old = r.due_at;
            if to == Phase::Tested || to == Phase::Set {
                r.due_at = Some(self.now());
            }
            self.save(mount, path, old, &r)?;
        }
        if to != Phase::Pending {
            self.crash_point(to.as_str());
        }
        Ok(())
    }

    /// Counts a failed attempt: backoff, or `failed` after `max_attempts`.
    fn fail(&self, mount: &str, path: &str, err: String) -> Result<RotateError> {
        let _g = self.lock(mount, path);
        let mut r = self.load(mount, path)?.ok_or(Error::NotFound)?;
        let old = r.due_at;
        r.attempts += 1;
        r.last_error = err.clone();
        self.counters
            .failed_attempts
            .fetch_add(1, Ordering::Relaxed);
        let out = if r.attempts >= self.settings.max_attempts.max(1) {
            r.failed_phase = Some(r.phase);
            r.phase = Phase::Failed;
            r.due_at = None;
            tracing::error!(mount, path, attempts = r.attempts, error = %err, "rotation failed: stopped until an operator resumes or aborts it");
            RotateError::Failed(err)
        } else {
            let next = self.now() + backoff(&self.settings, r.attempts);
            r.due_at = Some(next);
            tracing::warn!(mount, path, attempts = r.attempts, error = %err, retry_at = %unix_rfc3339(next), "rotation attempt failed");
            RotateError::Attempt(err)
        };
        self.save(mount, path, old, &r)?;
        Ok(out)
    }

    /// tested -> promoted: a new KV version with `username`/`password`, written in the same
    /// atomic batch as the idle record and its next due date. The old version stays readable
    /// with `?version=`.
    fn promote(
        &self,
        mount: &str,
        path: &str,
        direct: Option<Pending>,
        trigger: Trigger,
    ) -> std::result::Result<u64, RotateError> {
        let info = {
            let _g = self.lock(mount, path);
            let r = self.load(mount, path)?.ok_or(RotateError::NotFound)?;
            let pending = match (&direct, r.phase) {
                (Some(p), Phase::Idle) => p.clone(),
                (None, Phase::Tested) => r
                    .pending
                    .clone()
                    .ok_or_else(|| internal("tested state without a credential"))?,
                _ => {
                    return Err(
                        internal(format!("promotion from state {}", r.phase.as_str())).into(),
                    )
                }
            };
            let now = self.now();
            let now_s = rfc3339(self.clock.now());
            let pw = pending.password.clone();
            let user = pending.username.clone();
            self.vault.kv_write_with_ops(
                mount,
                path,
                move |cur| {
                    let mut m = cur.unwrap_or_default();
                    if !user.is_empty() {
                        m.insert("username".into(), Value::String(user));
                    }
                    m.insert("password".into(), Value::String(pw.expose().to_string()));
                    Ok(m)
                },
                |version| {
                    let mut n = r.clone();
                    n.phase = Phase::Idle;
                    n.failed_phase = None;
                    n.pending = None;
                    n.attempts = 0;
                    n.last_error.clear();
                    n.last_rotation = now_s.clone();
                    n.last_version = version;
                    n.rotations += 1;
                    n.history.push(HistoryEntry {
                        version,
                        rotated_at: now_s.clone(),
                        username: pending.username.clone(),
                        trigger: pending.trigger.clone(),
                    });
                    if n.history.len() > HISTORY_LEN {
                        n.history.remove(0);
                    }
                    n.next_rotation_at = self.next_due(mount, path, now, n.policy.period_secs);
                    n.due_at = Some(n.next_rotation_at);
                    self.record_ops(mount, path, r.due_at, &n)
                },
            )?
        };
        self.counters.rotations.fetch_add(1, Ordering::Relaxed);
        if let Ok(Some(r)) = self.load(mount, path) {
            self.emit(mount, path, &r);
        }
        tracing::info!(
            mount,
            path,
            version = info.version,
            trigger = trigger.as_str(),
            "secret rotated"
        );
        self.crash_point("promoted");
        Ok(info.version)
    }

    // ------------------------------------------------------------ reconciler

    /// Due entries `(index time, mount, path)`, oldest first, from prefix scans of the due
    /// index that never touch an entry that is not due.
    pub fn due_entries(&self, now: i64) -> Result<Vec<(i64, String, String)>> {
        let mut out = Vec::new();
        for prefix in due_prefixes(now) {
            for k in self.vault.store.keys_with_prefix(prefix.as_bytes())? {
                let s = String::from_utf8_lossy(&k["rot/due/".len()..]).into_owned();
                let Some((t, rest)) = s.split_once('/') else {
                    continue;
                };
                let Some((mount, path)) = rest.split_once('/') else {
                    continue;
                };
                if let Ok(t) = t.parse::<i64>() {
                    out.push((t, mount.to_string(), path.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// Removes a due index entry that no record points at.
    fn drop_stale_index(&self, t: i64, mount: &str, path: &str) -> Result<()> {
        let _g = self.lock(mount, path);
        let rec = self.load(mount, path)?;
        if rec.and_then(|r| r.due_at) != Some(t) {
            self.vault.store.delete(&due_key(t, mount, path))?;
        }
        Ok(())
    }

    /// One reconciler pass: rotates everything due, at most `max_concurrent` at a time.
    pub async fn reconcile(self: &Arc<Self>) -> Result<PassReport> {
        let mut report = PassReport::default();
        if self.vault.is_sealed() {
            return Ok(report);
        }
        self.counters.passes.fetch_add(1, Ordering::Relaxed);
        let due = self.due_entries(self.now())?;
        report.due = due.len();
        let mut set = tokio::task::JoinSet::new();
        let max = self.settings.max_concurrent.max(1);
        let tally = |r: Option<
            std::result::Result<std::result::Result<u64, RotateError>, tokio::task::JoinError>,
        >,
                     report: &mut PassReport| {
            match r {
                Some(Ok(Ok(_))) => report.rotated += 1,
                Some(Ok(Err(RotateError::Busy))) => report.busy += 1,
                Some(Ok(Err(RotateError::NotDue)))
                | Some(Ok(Err(RotateError::NotFound)))
                | None => {}
                Some(Ok(Err(_))) => report.failed += 1,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "rotation task panicked");
                    report.failed += 1
                }
            }
        };
        for (t, mount, path) in due {
            while set.len() >= max {
                tally(set.join_next().await, &mut report);
            }
            let me = self.clone();
            set.spawn(async move {
                let r = me.rotate(&mount, &path, Trigger::Schedule).await;
                if matches!(r, Err(RotateError::NotDue) | Err(RotateError::NotFound)) {
                    if let Err(e) = me.drop_stale_index(t, &mount, &path) {
                        tracing::warn!(error = %e, "cleaning the rotation due index failed");
                    }
                }
                r
            });
        }
        while let Some(r) = set.join_next().await {
            tally(Some(r), &mut report);
        }
        if report.due > 0 {
            tracing::info!(
                due = report.due,
                rotated = report.rotated,
                failed = report.failed,
                busy = report.busy,
                "rotation reconciler pass"
            );
        }
        Ok(report)
    }

    // ------------------------------------------------------------ status

    /// Every secret under rotation: failed first, then overdue, then by next due date.
    pub fn status(&self) -> Result<Vec<StatusEntry>> {
        let kr = self.vault.keyring()?;
        let now = self.now();
        let mut rows = Vec::new();
        for (k, env) in self.vault.store.scan_prefix(b"rot/r/")? {
            let s = String::from_utf8_lossy(&k["rot/r/".len()..]).into_owned();
            let Some((mount, path)) = s.split_once('/') else {
                continue;
            };
            let json = kr.open(label::KV, &Location::new("rotation", mount, path, 0), &env)?;
            let r: Record = serde_json::from_slice(&json).map_err(internal)?;
            rows.push((
                r.phase == Phase::Failed,
                r.overdue(now),
                r.next_rotation_at,
                StatusEntry {
                    path: format!("{mount}/{path}"),
                    period: crate::core::kv::go_duration(r.policy.period_secs),
                    target: r.policy.target,
                    strategy: r.policy.strategy,
                    state: r.phase.as_str(),
                    last_rotation: r.last_rotation.clone(),
                    last_version: r.last_version,
                    next_rotation_at: unix_rfc3339(r.next_rotation_at),
                    overdue: r.overdue(now),
                    attempts: r.attempts,
                    last_error: r.last_error.clone(),
                },
            ));
        }
        rows.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(b.1.cmp(&a.1))
                .then(a.2.cmp(&b.2))
                .then(a.3.path.cmp(&b.3.path))
        });
        Ok(rows.into_iter().map(|r| r.3).collect())
    }

    /// Prometheus-style text lines.
    pub fn metrics(&self) -> Result<String> {
        let rows = self.status()?;
        let failed = rows.iter().filter(|r| r.state == "failed").count();
        let overdue = rows.iter().filter(|r| r.overdue).count();
        Ok(format!(
            "# TYPE arca_rotation_failed gauge\narca_rotation_failed {failed}\n\
             # TYPE arca_rotation_overdue gauge\narca_rotation_overdue {overdue}\n\
             # TYPE arca_rotation_secrets gauge\narca_rotation_secrets {}\n\
             # TYPE arca_rotations_total counter\narca_rotations_total {}\n\
             # TYPE arca_rotation_failed_attempts_total counter\narca_rotation_failed_attempts_total {}\n\
             # TYPE arca_rotation_reconciler_passes_total counter\narca_rotation_reconciler_passes_total {}\n",
            rows.len(),
            self.counters.rotations.load(Ordering::Relaxed),
            self.counters.failed_attempts.load(Ordering::Relaxed),
            self.counters.passes.load(Ordering::Relaxed),
        ))
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
