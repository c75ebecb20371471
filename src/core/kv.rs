//! KV v2: versioned secrets with metadata, check-and-set, soft delete, destroy.
//!
//! Storage layout (keys in clear, values encrypted with AAD bound to mount/path/version/kind):
//! - `kv/<mount>/m/<path>`            metadata of one key (`KeyMeta`)
//! - `kv/<mount>/d/<path>\0<ver BE>` data of one version
//! - `kv/<mount>/config`              mount configuration (`MountConfig`)

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::clock::{parse_rfc3339, rfc3339};
use super::crypto::{label, Location};
use super::error::{Error, Result};
use super::vault::Vault;
use crate::store::Op;

pub const DEFAULT_MAX_VERSIONS: u64 = 10;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VersionMeta {
    pub created_time: String,
    /// "" when not deleted; a time in the future means "deleted at that time".
    pub deletion_time: String,
    pub destroyed: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyMeta {
    pub created_time: String,
    pub updated_time: String,
    pub current_version: u64,
    pub oldest_version: u64,
    pub max_versions: u64,
    pub cas_required: bool,
    /// seconds; 0 = never
    pub delete_version_after: u64,
    pub custom_metadata: Option<BTreeMap<String, String>>,
    pub versions: BTreeMap<u64, VersionMeta>,
    #[serde(default)]
    pub current_metadata_version: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MountConfig {
    pub max_versions: u64,
    pub cas_required: bool,
    pub delete_version_after: u64,
}

/// The version metadata block of the contract (`data` of a write, `data.metadata` of a read).
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub created_time: String,
    pub custom_metadata: Option<BTreeMap<String, String>>,
    pub deletion_time: String,
    pub destroyed: bool,
    pub version: u64,
}

/// The outcome of a read.
#[derive(Debug)]
pub enum ReadOutcome {
    Found {
        data: Value,
        metadata: VersionInfo,
    },
    /// Soft-deleted or destroyed: a 404 that still carries the metadata.
    Deleted {
        metadata: VersionInfo,
    },
}

/// Fields of a metadata write; `None` leaves the stored value as is.
#[derive(Debug, Default, Clone)]
pub struct MetadataUpdate {
    pub max_versions: Option<u64>,
    pub cas_required: Option<bool>,
    pub delete_version_after: Option<u64>,
    pub custom_metadata: Option<BTreeMap<String, String>>,
    /// Keys to remove from custom_metadata (PATCH with `null` values).
    pub remove_custom_metadata: Vec<String>,
}

/// Which versions an operation targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOp {
    Delete,
    Undelete,
    Destroy,
}

fn meta_key(mount: &str, path: &str) -> Vec<u8> {
    format!("kv/{mount}/m/{path}").into_bytes()
}

fn data_key(mount: &str, path: &str, version: u64) -> Vec<u8> {
    let mut k = format!("kv/{mount}/d/{path}\0").into_bytes();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn config_key(mount: &str) -> Vec<u8> {
    format!("kv/{mount}/config").into_bytes()
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// Duration seconds in Vault's Go style for responses: "0s", "1h0m0s".
pub fn go_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

impl KeyMeta {
    fn is_deleted(v: &VersionMeta, now: chrono::DateTime<chrono::Utc>) -> bool {
        if v.deletion_time.is_empty() {
            return false;
        }
        parse_rfc3339(&v.deletion_time)
            .map(|t| t <= now)
            .unwrap_or(true)
    }

    fn info(&self, version: u64) -> Option<VersionInfo> {
        self.versions.get(&version).map(|v| VersionInfo {
            created_time: v.created_time.clone(),
            custom_metadata: self.custom_metadata.clone(),
            deletion_time: v.deletion_time.clone(),
            destroyed: v.destroyed,
            version,
        })
    }

    /// The contract's `GET secret/metadata/:path` body.
    pub fn to_json(&self) -> Value {
        let versions: Map<String, Value> = self
            .versions
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    serde_json::json!({"created_time": v.created_time, "deletion_time": v.deletion_time, "destroyed": v.destroyed}),
                )
            })
            .collect();
        serde_json::json!({
            "cas_required": self.cas_required,
            "created_time": self.created_time,
            "current_version": self.current_version,
            "custom_metadata": self.custom_metadata,
            "delete_version_after": go_duration(self.delete_version_after),
            "max_versions": self.max_versions,
            "oldest_version": self.oldest_version,
            "updated_time": self.updated_time,
            "versions": versions,
            "current_metadata_version": self.current_metadata_version,
            "metadata_cas_required": false,
        })
    }
}

impl MountConfig {
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "cas_required": self.cas_required,
            "delete_version_after": go_duration(self.delete_version_after),
            "max_versions": self.max_versions,
            "metadata_cas_required": false,
        })
    }
}

/// Checks a KV key path: non-empty, no trailing '/', no empty or dot segments.
pub fn validate_key_path(path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(Error::bad("missing path"));
    }
    if path.ends_with('/') {
        return Err(Error::bad("cannot write to a path ending in '/'"));
    }
    Ok(())
}

impl Vault {
    fn kv_lock(&self, mount: &str, path: &str) -> std::sync::MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (mount, path).hash(&mut h);
        let i = (h.finish() as usize) % self.kv_locks.len();
        self.kv_locks[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_meta(&self, mount: &str, path: &str) -> Result<Option<KeyMeta>> {
        let kr = self.keyring()?;
        let Some(env) = self.store.get(&meta_key(mount, path))? else {
            return Ok(None);
        };
        let json = kr.open(label::KV, &Location::new("kv-meta", mount, path, 0), &env)?;
        serde_json::from_slice(&json).map(Some).map_err(internal)
    }

    fn meta_op(&self, mount: &str, path: &str, meta: &KeyMeta) -> Result<Op> {
        let kr = self.keyring()?;
        let json = zeroize::Zeroizing::new(serde_json::to_vec(meta).map_err(internal)?);
        Ok(Op::Put(
            meta_key(mount, path),
            kr.seal(label::KV, &Location::new("kv-meta", mount, path, 0), &json),
        ))
    }

    /// The mount's configuration (defaults when never written).
    pub fn kv_config(&self, mount: &str) -> Result<MountConfig> {
        let kr = self.keyring()?;
        let Some(env) = self.store.get(&config_key(mount))? else {
            return Ok(MountConfig::default());
        };
        let json = kr.open(label::KV, &Location::new("kv-config", mount, "", 0), &env)?;
        serde_json::from_slice(&json).map_err(internal)
    }

    pub fn kv_write_config(&self, mount: &str, upd: &MetadataUpdate) -> Result<()> {
        let kr = self.keyring()?;
        let _g = self.kv_lock(mount, "");
        let mut cfg = self.kv_config(mount)?;
        if let Some(v) = upd.max_versions {
            cfg.max_versions = v;
        }
        if let Some(v) = upd.cas_required {
            cfg.cas_required = v;
        }
        if let Some(v) = upd.delete_version_after {
            cfg.delete_version_after = v;
        }
        let json = serde_json::to_vec(&cfg).map_err(internal)?;
        self.store.put(
            &config_key(mount),
            &kr.seal(label::KV, &Location::new("kv-config", mount, "", 0), &json),
        )?;
        drop(_g);
        self.store.sync()?;
        Ok(())
    }

    /// Reads a version (`None` or 0 = latest).
    pub fn kv_read(&self, mount: &str, path: &str, version: Option<u64>) -> Result<ReadOutcome> {
        let meta = self.load_meta(mount, path)?.ok_or(Error::NotFound)?;
        let v = match version {
            None | Some(0) => meta.current_version,
            Some(v) => v,
        };
        let vm = meta.versions.get(&v).ok_or(Error::NotFound)?;
        let info = meta.info(v).ok_or(Error::NotFound)?;
        if vm.destroyed || KeyMeta::is_deleted(vm, self.now()) {
            return Ok(ReadOutcome::Deleted { metadata: info });
        }
        let kr = self.keyring()?;
        let env = self
            .store
            .get(&data_key(mount, path, v))?
            .ok_or(Error::NotFound)?;
        let json = kr.open(label::KV, &Location::new("kv-data", mount, path, v), &env)?;
        let data: Value = serde_json::from_slice(&json).map_err(internal)?;
        Ok(ReadOutcome::Found {
            data,
            metadata: info,
        })
    }

    /// Writes a new version. `cas`: `Some(0)` only if absent, `Some(n)` only if current is n.
    pub fn kv_write(
        &self,
        mount: &str,
        path: &str,
        data: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<VersionInfo> {
        let info = self.kv_write_unsynced(mount, path, data, cas)?;
        self.store.sync()?;
        Ok(info)
    }

    /// `kv_write` without the final sync: the caller syncs the store before it
    /// acknowledges the write (the HTTP layer leaves it to the outcome record).
    pub fn kv_write_unsynced(
        &self,
        mount: &str,
        path: &str,
        data: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<VersionInfo> {
        validate_key_path(path)?;
        let guard = self.kv_lock(mount, path);
        let existing = self.load_meta(mount, path)?;
        self.kv_write_locked(mount, path, existing, data, cas, guard, Vec::new())
    }

    /// `extra`: more ops for the same atomic batch (rotation promotion). Not synced: the
    /// caller syncs.
    #[allow(clippy::too_many_arguments)] // private; one call site per writer kind
    fn kv_write_locked(
        &self,
        mount: &str,
        path: &str,
        existing: Option<KeyMeta>,
        data: &Map<String, Value>,
        cas: Option<u64>,
        guard: std::sync::MutexGuard<'_, ()>,
        extra: Vec<Op>,
    ) -> Result<VersionInfo> {
        let cfg = self.kv_config(mount)?;
        let now = self.now();
        let now_s = rfc3339(now);
        let mut meta = existing.unwrap_or_else(|| KeyMeta {
            created_time: now_s.clone(),
            current_metadata_version: 1,
            ..Default::default()
        });
        let cas_required = cfg.cas_required || meta.cas_required;
        match cas {
            None if cas_required => {
                return Err(Error::bad("check-and-set parameter required for this call"))
            }
            Some(c) if c != meta.current_version => {
                return Err(Error::bad(
                    "check-and-set parameter did not match the current version",
                ))
            }
            _ => {}
        }
        let version = meta.current_version + 1;
        let dav = if meta.delete_version_after > 0 {
            meta.delete_version_after
        } else {
            cfg.delete_version_after
        };
        let deletion_time = if dav > 0 {
            rfc3339(now + chrono::Duration::seconds(dav as i64))
        } else {
            String::new()
        };
        meta.versions.insert(
            version,
            VersionMeta {
                created_time: now_s.clone(),
                deletion_time,
                destroyed: false,
            },
        );
        meta.current_version = version;
        meta.updated_time = now_s;
        let max = match (meta.max_versions, cfg.max_versions) {
            (0, 0) => DEFAULT_MAX_VERSIONS,
            (0, m) => m,
            (m, _) => m,
        };
        let kr = self.keyring()?;
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(data).map_err(internal)?);
        let mut ops = vec![Op::Put(
            data_key(mount, path, version),
            kr.seal(
                label::KV,
                &Location::new("kv-data", mount, path, version),
                &plain,
            ),
        )];
        let mut pruned = false;
        while meta.versions.len() as u64 > max {
            let Some((&oldest, _)) = meta.versions.iter().next() else {
                break;
            };
            meta.versions.remove(&oldest);
            ops.push(Op::Delete(data_key(mount, path, oldest)));
            pruned = true;
        }
        // As Vault: 0 until versions were pruned, then the oldest kept.
        if pruned {
            if let Some((&oldest, _)) = meta.versions.iter().next() {
                meta.oldest_version = oldest;
            }
        }
        ops.push(self.meta_op(mount, path, &meta)?);
        ops.extend(extra);
        self.store.batch(ops)?;
        drop(guard);
        meta.info(version)
            .ok_or_else(|| internal("written version missing"))
    }

    /// RFC 7396 merge patch on the latest version. Missing key or deleted latest -> NotFound.
    pub fn kv_patch(
        &self,
        mount: &str,
        path: &str,
        patch: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<VersionInfo> {
        validate_key_path(path)?;
        let guard = self.kv_lock(mount, path);
        let meta = self.load_meta(mount, path)?.ok_or(Error::NotFound)?;
        let current = match self.kv_read_version_locked(mount, path, &meta)? {
            Some(v) => v,
            None => return Err(Error::NotFound),
        };
        let mut merged = Value::Object(current);
        merge_patch(&mut merged, &Value::Object(patch.clone()));
        let Value::Object(m) = merged else {
            return Err(internal("merge produced a non-object"));
        };
        let info = self.kv_write_locked(mount, path, Some(meta), &m, cas, guard, Vec::new())?;
        self.store.sync()?;
        Ok(info)
    }

    fn kv_read_version_locked(
        &self,
        mount: &str,
        path: &str,
        meta: &KeyMeta,
    ) -> Result<Option<Map<String, Value>>> {
        let v = meta.current_version;
        let Some(vm) = meta.versions.get(&v) else {
            return Ok(None);
        };
        if vm.destroyed || KeyMeta::is_deleted(vm, self.now()) {
            return Ok(None);
        }
        let kr = self.keyring()?;
        let Some(env) = self.store.get(&data_key(mount, path, v))? else {
            return Ok(None);
        };
        let json = kr.open(label::KV, &Location::new("kv-data", mount, path, v), &env)?;
        match serde_json::from_slice(&json).map_err(internal)? {
            Value::Object(m) => Ok(Some(m)),
            _ => Err(internal("stored version is not an object")),
        }
    }

    /// Soft-deletes the latest version (`DELETE secret/data/:path`).
    pub fn kv_delete_latest(&self, mount: &str, path: &str) -> Result<()> {
        let guard = self.kv_lock(mount, path);
        let Some(meta) = self.load_meta(mount, path)? else {
            return Ok(());
        };
        let v = meta.current_version;
        self.kv_versions_locked(mount, path, meta, &[v], VersionOp::Delete, guard)
    }

    /// Delete, undelete or destroy specific versions. Unknown key or versions: no-op.
    pub fn kv_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
        op: VersionOp,
    ) -> Result<()> {
        let guard = self.kv_lock(mount, path);
        let Some(meta) = self.load_meta(mount, path)? else {
            return Ok(());
        };
        self.kv_versions_locked(mount, path, meta, versions, op, guard)
    }

    fn kv_versions_locked(
        &self,
        mount: &str,
        path: &str,
        mut meta: KeyMeta,
        versions: &[u64],
        op: VersionOp,
        guard: std::sync::MutexGuard<'_, ()>,
    ) -> Result<()> {
        let now = self.now();
        let mut ops = Vec::new();
        let mut changed = false;
        for v in versions {
            let Some(vm) = meta.versions.get_mut(v) else {
                continue;
            };
            match op {
                VersionOp::Delete => {
                    if !vm.destroyed && !KeyMeta::is_deleted(vm, now) {
                        vm.deletion_time = rfc3339(now);
                        changed = true;
                    }
                }
                VersionOp::Undelete => {
                    if !vm.destroyed && !vm.deletion_time.is_empty() {
                        vm.deletion_time = String::new();
                        changed = true;
                    }
                }
                VersionOp::Destroy => {
                    if !vm.destroyed {
                        vm.destroyed = true;
                        ops.push(Op::Delete(data_key(mount, path, *v)));
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            return Ok(());
        }
        meta.updated_time = rfc3339(now);
        ops.push(self.meta_op(mount, path, &meta)?);
        self.store.batch(ops)?;
        drop(guard);
        self.store.sync()?;
        Ok(())
    }

    /// Does the key have metadata (for create-versus-update ACL checks)?
    pub fn kv_exists(&self, mount: &str, path: &str) -> Result<bool> {
        self.keyring()?;
        Ok(self.store.get(&meta_key(mount, path))?.is_some())
    }

    pub fn kv_read_metadata(&self, mount: &str, path: &str) -> Result<KeyMeta> {
        self.load_meta(mount, path)?.ok_or(Error::NotFound)
    }

    /// Writes metadata fields (creates empty metadata if the key does not exist). With
    /// `merge_custom`, custom_metadata keys are merged (PATCH) instead of replaced.
    pub fn kv_write_metadata(
        &self,
        mount: &str,
        path: &str,
        upd: &MetadataUpdate,
        merge_custom: bool,
    ) -> Result<()> {
        validate_key_path(path)?;
        let guard = self.kv_lock(mount, path);
        let now = rfc3339(self.now());
        let existing = self.load_meta(mount, path)?;
        if merge_custom && existing.is_none() {
            return Err(Error::NotFound);
        }
        let mut meta = existing.unwrap_or_else(|| KeyMeta {
            created_time: now.clone(),
            ..Default::default()
        });
        if let Some(v) = upd.max_versions {
            meta.max_versions = v;
        }
        if let Some(v) = upd.cas_required {
            meta.cas_required = v;
        }
        if let Some(v) = upd.delete_version_after {
            meta.delete_version_after = v;
        }
        if let Some(c) = &upd.custom_metadata {
            if merge_custom {
                let m = meta.custom_metadata.get_or_insert_with(BTreeMap::new);
                m.extend(c.clone());
                for k in &upd.remove_custom_metadata {
                    m.remove(k);
                }
                if m.is_empty() {
                    meta.custom_metadata = None;
                }
            } else {
                meta.custom_metadata = if c.is_empty() { None } else { Some(c.clone()) };
            }
        }
        meta.updated_time = now;
        meta.current_metadata_version += 1;
        let op = self.meta_op(mount, path, &meta)?;
        self.store.batch(vec![op])?;
        drop(guard);
        self.store.sync()?;
        Ok(())
    }

    /// Removes all versions and the metadata of a key.
    pub fn kv_delete_metadata(&self, mount: &str, path: &str) -> Result<()> {
        let guard = self.kv_lock(mount, path);
        let Some(meta) = self.load_meta(mount, path)? else {
            return Ok(());
        };
        let mut ops: Vec<Op> = meta
            .versions
            .keys()
            .map(|v| Op::Delete(data_key(mount, path, *v)))
            .collect();
        ops.push(Op::Delete(meta_key(mount, path)));
        self.store.batch(ops)?;
        drop(guard);
        self.store.sync()?;
        Ok(())
    }

    /// Direct children of a folder: keys, and sub-folders with a trailing '/', sorted.
    /// An empty result is `NotFound` (Vault never returns an empty list).
    pub fn kv_list(&self, mount: &str, folder: &str) -> Result<Vec<String>> {
        self.keyring()?;
        let folder = folder.trim_end_matches('/');
        let prefix = if folder.is_empty() {
            format!("kv/{mount}/m/")
        } else {
            format!("kv/{mount}/m/{folder}/")
        };
        let mut out = BTreeSet::new();
        for k in self.store.keys_with_prefix(prefix.as_bytes())? {
            let rest = &k[prefix.len()..];
            let rest = String::from_utf8_lossy(rest);
            match rest.find('/') {
                Some(i) => out.insert(format!("{}/", &rest[..i])),
                None => out.insert(rest.into_owned()),
            };
        }
        if out.is_empty() {
            return Err(Error::NotFound);
        }
        Ok(out.into_iter().collect())
    }
}

// ---- rotation hook (used by core::rotation; keep separate from the KV API above) ----
impl Vault {
    /// Writes a new version built by `build` from the current live data (`None` if absent or
    /// deleted), with the ops `extra(new_version)` in the same atomic batch. A system write:
    /// `cas_required` does not apply (the version is computed under the key's lock).
    pub(crate) fn kv_write_with_ops(
        &self,
        mount: &str,
        path: &str,
        build: impl FnOnce(Option<Map<String, Value>>) -> Result<Map<String, Value>>,
        extra: impl FnOnce(u64) -> Result<Vec<Op>>,
    ) -> Result<VersionInfo> {
        validate_key_path(path)?;
        let guard = self.kv_lock(mount, path);
        let existing = self.load_meta(mount, path)?;
        let current = match &existing {
            Some(m) => self.kv_read_version_locked(mount, path, m)?,
            None => None,
        };
        let data = build(current)?;
        let cur_version = existing.as_ref().map(|m| m.current_version).unwrap_or(0);
        let ops = extra(cur_version + 1)?;
        let info =
            self.kv_write_locked(mount, path, existing, &data, Some(cur_version), guard, ops)?;
        self.store.sync()?;
        Ok(info)
    }
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::ManualClock;
    use crate::core::crypto::Algorithm;
    use crate::store::sled::SledStore;
    use crate::store::Store;
    use serde_json::json;
    use std::sync::Arc;

    struct Fixture {
        vault: Vault,
        store: Arc<dyn Store>,
        clock: Arc<ManualClock>,
        _dir: tempfile::TempDir,
    }

    fn vault() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap());
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let kek = crate::core::crypto::Key::generate();
        let v = Vault::open(
            store.clone(),
            clock.clone(),
            Algorithm::XChaCha20Poly1305,
            Some(kek),
        )
        .unwrap();
        v.init(1, 1, None).unwrap();
        assert!(v.auto_unseal().unwrap());
        Fixture {
            vault: v,
            store,
            clock,
            _dir: dir,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn merge_patch_rfc7396_examples() {
        let mut t = json!({"a":"b","c":{"d":"e","f":"g"}});
        merge_patch(&mut t, &json!({"a":"z","c":{"f":null}}));
        assert_eq!(t, json!({"a":"z","c":{"d":"e"}}));
        let mut t = json!({"a":[1]});
        merge_patch(&mut t, &json!({"a":{"b":"c"}}));
        assert_eq!(t, json!({"a":{"b":"c"}}));
    }

    #[test]
    fn go_duration_format() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(3600), "1h0m0s");
        assert_eq!(go_duration(90), "1m30s");
    }

    #[test]
    fn write_read_versions_and_cas() {
        let f = vault();
        let v = &f.vault;
        assert_eq!(
            v.kv_write("secret", "db/prod", &obj(json!({"p":"1"})), None)
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            v.kv_write("secret", "db/prod", &obj(json!({"p":"2"})), Some(1))
                .unwrap()
                .version,
            2
        );
        let e = v
            .kv_write("secret", "db/prod", &obj(json!({"p":"3"})), Some(1))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "check-and-set parameter did not match the current version"
        );
        assert!(v
            .kv_write("secret", "db/prod", &obj(json!({})), Some(0))
            .is_err());
        match v.kv_read("secret", "db/prod", Some(1)).unwrap() {
            ReadOutcome::Found { data, metadata } => {
                assert_eq!(data, json!({"p":"1"}));
                assert_eq!(metadata.version, 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            v.kv_read("secret", "db/prod", Some(9)),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            v.kv_read("secret", "nope", None),
            Err(Error::NotFound)
        ));
    }

    #[test]
    fn plaintext_never_in_raw_store_bytes() {
        let f = vault();
        f.vault
            .kv_write(
                "secret",
                "db/prod",
                &obj(json!({"password":"CANARY-7f3a9c"})),
                None,
            )
            .unwrap();
        for (k, v) in f.store.scan_prefix(b"").unwrap() {
            assert!(
                !v.windows(13).any(|w| w == b"CANARY-7f3a9c"),
                "plaintext in value of {:?}",
                String::from_utf8_lossy(&k)
            );
            assert!(!k.windows(13).any(|w| w == b"CANARY-7f3a9c"));
        }
    }

    #[test]
    fn copied_ciphertext_fails_to_open() {
        let f = vault();
        let v = &f.vault;
        v.kv_write("secret", "a", &obj(json!({"x":"1"})), None)
            .unwrap();
        v.kv_write("secret", "b", &obj(json!({"x":"2"})), None)
            .unwrap();
        v.kv_write("secret", "b", &obj(json!({"x":"3"})), None)
            .unwrap();
        // copy a's version 1 over b's version 1, and b's version 2 over its version 1
        let a1 = f.store.get(&data_key("secret", "a", 1)).unwrap().unwrap();
        f.store.put(&data_key("secret", "b", 1), &a1).unwrap();
        assert!(matches!(
            v.kv_read("secret", "b", Some(1)),
            Err(Error::Integrity(_))
        ));
        let b2 = f.store.get(&data_key("secret", "b", 2)).unwrap().unwrap();
        f.store.put(&data_key("secret", "b", 1), &b2).unwrap();
        assert!(matches!(
            v.kv_read("secret", "b", Some(1)),
            Err(Error::Integrity(_))
        ));
        // metadata copied to another key
        let am = f.store.get(&meta_key("secret", "a")).unwrap().unwrap();
        f.store.put(&meta_key("secret", "b"), &am).unwrap();
        assert!(matches!(
            v.kv_read("secret", "b", None),
            Err(Error::Integrity(_))
        ));
    }

    #[test]
    fn delete_undelete_destroy_and_max_versions() {
        let f = vault();
        let v = &f.vault;
        for i in 0..12 {
            v.kv_write("secret", "k", &obj(json!({"i": i})), None)
                .unwrap();
        }
        let m = v.kv_read_metadata("secret", "k").unwrap();
        assert_eq!(m.versions.len(), 10);
        assert_eq!(m.oldest_version, 3);
        assert!(matches!(
            v.kv_read("secret", "k", Some(1)),
            Err(Error::NotFound)
        ));
        v.kv_delete_latest("secret", "k").unwrap();
        assert!(matches!(
            v.kv_read("secret", "k", None).unwrap(),
            ReadOutcome::Deleted { .. }
        ));
        v.kv_versions("secret", "k", &[12], VersionOp::Undelete)
            .unwrap();
        assert!(matches!(
            v.kv_read("secret", "k", None).unwrap(),
            ReadOutcome::Found { .. }
        ));
        v.kv_versions("secret", "k", &[11], VersionOp::Destroy)
            .unwrap();
        match v.kv_read("secret", "k", Some(11)).unwrap() {
            ReadOutcome::Deleted { metadata } => assert!(metadata.destroyed),
            other => panic!("{other:?}"),
        }
        assert!(f.store.get(&data_key("secret", "k", 11)).unwrap().is_none());
        v.kv_versions("secret", "k", &[11], VersionOp::Undelete)
            .unwrap();
        assert!(matches!(
            v.kv_read("secret", "k", Some(11)).unwrap(),
            ReadOutcome::Deleted { .. }
        ));
    }

    #[test]
    fn delete_version_after_uses_the_clock() {
        let f = vault();
        let v = &f.vault;
        v.kv_write_metadata(
            "secret",
            "t",
            &MetadataUpdate {
                delete_version_after: Some(60),
                ..Default::default()
            },
            false,
        )
        .unwrap();
        v.kv_write("secret", "t", &obj(json!({"a":1})), None)
            .unwrap();
        assert!(matches!(
            v.kv_read("secret", "t", None).unwrap(),
            ReadOutcome::Found { .. }
        ));
        f.clock.advance(chrono::Duration::seconds(61));
        assert!(matches!(
            v.kv_read("secret", "t", None).unwrap(),
            ReadOutcome::Deleted { .. }
        ));
    }

    #[test]
    fn list_direct_children_sorted() {
        let f = vault();
        let v = &f.vault;
        for p in ["db/prod", "db/dev", "db/sub/x", "other"] {
            v.kv_write("secret", p, &obj(json!({})), None).unwrap();
        }
        assert_eq!(
            v.kv_list("secret", "db").unwrap(),
            vec!["dev", "prod", "sub/"]
        );
        assert_eq!(
            v.kv_list("secret", "db/").unwrap(),
            vec!["dev", "prod", "sub/"]
        );
        assert_eq!(v.kv_list("secret", "").unwrap(), vec!["db/", "other"]);
        assert!(matches!(v.kv_list("secret", "nope"), Err(Error::NotFound)));
        assert!(matches!(
            v.kv_list("secret", "db/prod"),
            Err(Error::NotFound)
        ));
    }

    #[test]
    fn patch_merges_and_requires_live_latest() {
        let f = vault();
        let v = &f.vault;
        assert!(matches!(
            v.kv_patch("secret", "p", &obj(json!({"a":1})), None),
            Err(Error::NotFound)
        ));
        v.kv_write("secret", "p", &obj(json!({"a":"1","b":"2"})), None)
            .unwrap();
        let info = v
            .kv_patch("secret", "p", &obj(json!({"b":null,"c":"3"})), Some(1))
            .unwrap();
        assert_eq!(info.version, 2);
        match v.kv_read("secret", "p", None).unwrap() {
            ReadOutcome::Found { data, .. } => assert_eq!(data, json!({"a":"1","c":"3"})),
            other => panic!("{other:?}"),
        }
        v.kv_delete_latest("secret", "p").unwrap();
        assert!(matches!(
            v.kv_patch("secret", "p", &obj(json!({"a":1})), None),
            Err(Error::NotFound)
        ));
    }

    #[test]
    fn cas_required_from_mount_config() {
        let f = vault();
        let v = &f.vault;
        v.kv_write_config(
            "secret",
            &MetadataUpdate {
                cas_required: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
        let e = v
            .kv_write("secret", "c", &obj(json!({})), None)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "check-and-set parameter required for this call"
        );
        v.kv_write("secret", "c", &obj(json!({})), Some(0)).unwrap();
    }

    #[test]
    fn sealed_vault_refuses_kv() {
        let f = vault();
        f.vault
            .kv_write("secret", "s", &obj(json!({"a":"b"})), None)
            .unwrap();
        f.vault.seal();
        assert!(matches!(
            f.vault.kv_read("secret", "s", None),
            Err(Error::Sealed)
        ));
        assert!(f.vault.auto_unseal().unwrap());
        assert!(matches!(
            f.vault.kv_read("secret", "s", None).unwrap(),
            ReadOutcome::Found { .. }
        ));
    }

    #[test]
    fn keyring_rotation_keeps_old_versions_readable() {
        let f = vault();
        let v = &f.vault;
        v.kv_write("secret", "r", &obj(json!({"a":"old"})), None)
            .unwrap();
        let (term, _) = v.rotate_keyring().unwrap();
        assert_eq!(term, 2);
        v.kv_write("secret", "r", &obj(json!({"a":"new"})), None)
            .unwrap();
        v.seal();
        assert!(v.auto_unseal().unwrap());
        assert_eq!(v.key_status().unwrap().0, 2);
        assert!(matches!(
            v.kv_read("secret", "r", Some(1)).unwrap(),
            ReadOutcome::Found { .. }
        ));
        assert!(matches!(
            v.kv_read("secret", "r", Some(2)).unwrap(),
            ReadOutcome::Found { .. }
        ));
    }
}
