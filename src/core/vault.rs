//! The vault core: seal lifecycle, keyring, token authentication. KV lives in `kv.rs` as
//! more methods on `Vault`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::clock::{rfc3339, Clock};
use super::crypto::{self, label, Algorithm, Key, Location};
use super::error::{Error, Result};
use super::keyring::Keyring;
use super::policy::{Acl, Policy};
use super::shamir;
use super::token::TokenEntry;
use crate::store::{Op, Store};

const SEAL_CONFIG: &[u8] = b"sys/seal-config";
const KEYRING: &[u8] = b"sys/keyring";
const AUTO_UNSEAL: &[u8] = b"sys/auto-unseal";
const AUTO_UNSEAL_LOC: Location<'static> = Location {
    kind: "auto-unseal",
    mount: "sys",
    path: "root-key",
    version: 0,
};

/// Stored in clear: no secret in it, and it must be readable while sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealConfig {
    pub secret_shares: u64,
    pub secret_threshold: u64,
    pub initialized_at: String,
    pub cluster_name: String,
    pub cluster_id: String,
}

enum State {
    Uninitialized,
    Sealed {
        shares: Vec<Zeroizing<Vec<u8>>>,
        nonce: String,
    },
    /// The root key stays in memory while unsealed (to re-encrypt the keyring on rotation)
    /// and is zeroized on seal.
    Unsealed {
        keyring: Arc<Keyring>,
        root: Key,
    },
}

/// What `GET sys/seal-status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    pub t: u64,
    pub n: u64,
    pub progress: u64,
    pub nonce: String,
    pub cluster_name: Option<String>,
    pub cluster_id: Option<String>,
}

/// The result of `init`: shown once, never stored.
pub struct InitOutput {
    pub keys: Vec<Zeroizing<Vec<u8>>>,
    pub root_token: Zeroizing<String>,
}

pub struct Vault {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    alg: Algorithm,
    state: RwLock<State>,
    auto_unseal: Option<Key>,
    /// Token HMAC -> entry, for tokens without a use limit. Cleared on seal and revoke.
    pub(crate) token_cache: RwLock<HashMap<[u8; 32], Arc<TokenEntry>>>,
    /// Serializes use-counting, renewal and revocation of one token (striped by HMAC).
    pub(crate) token_locks: Vec<Mutex<()>>,
    /// Revocation takes it exclusively; every path that reads a token and then writes or
    /// caches it (a use, a renewal, a cache fill, a child's create) takes it shared, so a
    /// revoke cannot fall between the read and the write and be undone by it. Taken after
    /// a token lock, never before one.
    pub(crate) revoke_guard: RwLock<()>,
    /// Parsed policies by name, and ACLs by policy set; cleared on any policy write.
    pub(crate) policy_cache: RwLock<HashMap<String, Arc<Policy>>>,
    pub(crate) acl_cache: RwLock<HashMap<Vec<String>, Arc<Acl>>>,
    /// Bumped by every policy write, so a cache fill racing a write is not kept.
    pub(crate) policy_gen: std::sync::atomic::AtomicU64,
    /// Serializes read-modify-write of one KV key's metadata (striped by path hash).
    pub(crate) kv_locks: Vec<Mutex<()>>,
    rotate_lock: Mutex<()>,
    /// Encryptions after which an AES-256-GCM term is replaced (`keyring_maintain`).
    aes_gcm_term_limit: std::sync::atomic::AtomicU64,
}

/// An AES-256-GCM term is replaced after this many encryptions: a quarter of the 2^32 that
/// random 96-bit nonces allow under one key. (Subkeys are per purpose and path, so no single
/// key comes near it; the count is per term, over all of them.)
pub const AES_GCM_TERM_LIMIT: u64 = 1 << 30;

/// What `Vault::keyring_maintain` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringUpkeep {
    Nothing,
    /// The count's bound in the store was raised.
    CountStored,
    /// An AES-256-GCM term reached its limit: this term replaced it.
    Rotated(u32),
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl Vault {
    /// Opens the vault on `store`. It starts uninitialized or sealed; call `auto_unseal` for
    /// unattended starts.
    pub fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        alg: Algorithm,
        auto_unseal: Option<Key>,
    ) -> Result<Vault> {
        let initialized = store.get(SEAL_CONFIG)?.is_some();
        let state = if initialized {
            State::Sealed {
                shares: Vec::new(),
                nonce: String::new(),
            }
        } else {
            State::Uninitialized
        };
        Ok(Vault {
            store,
            clock,
            alg,
            state: RwLock::new(state),
            auto_unseal,
            token_cache: RwLock::new(HashMap::new()),
            kv_locks: (0..64).map(|_| Mutex::new(())).collect(),
            token_locks: (0..64).map(|_| Mutex::new(())).collect(),
            revoke_guard: RwLock::new(()),
            policy_cache: RwLock::new(HashMap::new()),
            acl_cache: RwLock::new(HashMap::new()),
            policy_gen: std::sync::atomic::AtomicU64::new(0),
            rotate_lock: Mutex::new(()),
            aes_gcm_term_limit: std::sync::atomic::AtomicU64::new(AES_GCM_TERM_LIMIT),
        })
    }

    /// Starts syncing every store write made so far (see `Store::sync_start`).
    pub fn store_sync_start(&self) -> Result<u64> {
        Ok(self.store.sync_start()?)
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    fn seal_config(&self) -> Result<Option<SealConfig>> {
        match self.store.get(SEAL_CONFIG)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Internal(format!("seal config: {e}"))),
        }
    }

    pub fn is_initialized(&self) -> bool {
        !matches!(
            *self.state.read().unwrap_or_else(|p| p.into_inner()),
            State::Uninitialized
        )
    }

    pub fn is_sealed(&self) -> bool {
        !matches!(
            *self.state.read().unwrap_or_else(|p| p.into_inner()),
            State::Unsealed { .. }
        )
    }

    /// The keyring, or `Sealed`.
    pub fn keyring(&self) -> Result<Arc<Keyring>> {
        match &*self.state.read().unwrap_or_else(|p| p.into_inner()) {
            State::Unsealed { keyring, .. } => Ok(keyring.clone()),
            State::Uninitialized => Err(Error::Sealed),
            State::Sealed { .. } => Err(Error::Sealed),
        }
    }

    pub fn seal_status(&self) -> Result<SealStatus> {
        let cfg = self.seal_config()?;
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let (progress, nonce) = match &*st {
            State::Sealed { shares, nonce } => (shares.len() as u64, nonce.clone()),
            _ => (0, String::new()),
        };
        Ok(SealStatus {
            initialized: cfg.is_some(),
            sealed: !matches!(*st, State::Unsealed { .. }),
            t: cfg.as_ref().map(|c| c.secret_threshold).unwrap_or(0),
            n: cfg.as_ref().map(|c| c.secret_shares).unwrap_or(0),
            progress,
            nonce,
            cluster_name: cfg.as_ref().map(|c| c.cluster_name.clone()),
            cluster_id: cfg.as_ref().map(|c| c.cluster_id.clone()),
        })
    }

    /// Initializes a new vault: root key split into shares, first keyring term, root token.
    /// The vault stays sealed afterwards (as Vault does).
    pub fn init(
        &self,
        shares: u64,
        threshold: u64,
        root_token: Option<&str>,
    ) -> Result<InitOutput> {
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        if !matches!(*st, State::Uninitialized) || self.store.get(SEAL_CONFIG)?.is_some() {
            return Err(Error::bad("Vault is already initialized"));
        }
        shamir::validate(shares, threshold).map_err(|e| Error::bad(e.to_string()))?;
        let root = Key::generate();
        let keys = shamir::split(&root, shares as usize, threshold as usize)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let now = self.clock.now();
        let alg = self.alg;
        let keyring = Keyring::new(now, alg);
        let root_entry = TokenEntry::root(now);
        // A chosen root token does not carry its accessor: it is indexed by its HMAC.
        let (token, by_mac) = match root_token {
            Some(t) => (Zeroizing::new(t.to_string()), true),
            None => (
                super::token::generate_token_for(&root_entry.accessor),
                false,
            ),
        };
        let cfg = SealConfig {
            secret_shares: shares,
            secret_threshold: threshold,
            initialized_at: rfc3339(now),
            cluster_name: format!(
                "arca-cluster-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            cluster_id: uuid::Uuid::new_v4().to_string(),
        };
        let mut ops = vec![Op::Put(KEYRING.to_vec(), keyring.to_envelope(&root).0)];
        ops.extend(self.token_put_ops(
            &keyring,
            &keyring.token_hmac(token.as_bytes()),
            &root_entry,
            None,
            by_mac,
        )?);
        ops.push(Op::Put(
            super::token::LAYOUT.to_vec(),
            super::token::LAYOUT_NOW.to_vec(),
        ));
        ops.push(self.policy_put_op(&keyring, "default", super::policy::DEFAULT_POLICY)?);
        if let Some(kek) = &self.auto_unseal {
            let sub = crypto::derive(kek, label::AUTO_UNSEAL, "sys", "root-key");
            ops.push(Op::Put(
                AUTO_UNSEAL.to_vec(),
                crypto::seal(alg, 0, &sub, &AUTO_UNSEAL_LOC, root.expose()),
            ));
        }
        // The seal config goes in the same atomic batch: its presence means "initialized".
        ops.push(Op::Put(
            SEAL_CONFIG.to_vec(),
            serde_json::to_vec(&cfg).map_err(|e| Error::Internal(e.to_string()))?,
        ));
        self.store.batch(ops)?;
        self.store.sync()?;
        *st = State::Sealed {
            shares: Vec::new(),
            nonce: String::new(),
        };
        tracing::info!(shares, threshold, "vault initialized");
        Ok(InitOutput {
            keys,
            root_token: token,
        })
    }

    /// Submits one unseal share. Returns the new status. Wrong shares are detected only once
    /// the threshold is reached, and then progress resets, without saying which share was bad.
    pub fn unseal(&self, share: Zeroizing<Vec<u8>>) -> Result<SealStatus> {
        let cfg = self.seal_config()?.ok_or(Error::NotInitialized)?;
        {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            match &mut *st {
                State::Uninitialized => return Err(Error::NotInitialized),
                State::Unsealed { .. } => {}
                State::Sealed { shares, nonce } => {
                    if share.len() != shamir::SHARE_LEN {
                        return Err(Error::bad("'key' must be a valid unseal key share"));
                    }
                    if !shares.iter().any(|s| s[..] == share[..]) {
                        shares.push(share);
                    }
                    if nonce.is_empty() {
                        *nonce = uuid::Uuid::new_v4().to_string();
                    }
                    if (shares.len() as u64) >= cfg.secret_threshold {
                        let taken = std::mem::take(shares);
                        nonce.clear();
                        let opened = shamir::combine(&taken).ok().and_then(|root| {
                            self.open_keyring(&root).ok().flatten().map(|kr| (kr, root))
                        });
                        match opened {
                            Some((kr, root)) => {
                                self.prepare_keyring(&kr, &root)?;
                                *st = State::Unsealed {
                                    keyring: Arc::new(kr),
                                    root,
                                };
                                tracing::info!("vault unsealed");
                            }
                            None => {
                                return Err(Error::bad("unable to retrieve stored keys: the unseal key shares do not reconstruct the root key; progress was reset"));
                            }
                        }
                    }
                }
            }
        }
        self.seal_status()
    }

    /// What a keyring just opened needs before the vault counts as unsealed (so no request
    /// sees the store half-way): a new bound of its encryption count, ahead of the stored
    /// one it counts from, and the store upgrades that need the keyring. If either fails,
    /// the vault stays sealed and the unseal can be tried again.
    fn prepare_keyring(&self, kr: &Keyring, root: &Key) -> Result<()> {
        self.raise_count_bound(kr, root)?;
        if let Err(e) = self.token_layout_upgrade(kr) {
            tracing::error!(error = %e, "upgrading the token store failed: the vault stays sealed");
            return Err(e);
        }
        Ok(())
    }

    /// Stores `kr` with its count's bound `COUNT_RESERVE` ahead of the live count, durably.
    fn raise_count_bound(&self, kr: &Keyring, root: &Key) -> Result<()> {
        let (env, bound) = kr.to_envelope(root);
        self.store.put(KEYRING, &env)?;
        self.store.sync()?;
        kr.note_stored(bound);
        Ok(())
    }

    pub fn unseal_reset(&self) -> Result<SealStatus> {
        if let State::Sealed { shares, nonce } =
            &mut *self.state.write().unwrap_or_else(|p| p.into_inner())
        {
            shares.clear();
            nonce.clear();
        }
        self.seal_status()
    }

    fn open_keyring(&self, root: &Key) -> Result<Option<Keyring>> {
        let env = self
            .store
            .get(KEYRING)?
            .ok_or_else(|| Error::Internal("keyring record missing".into()))?;
        Ok(Keyring::from_envelope(root, &env, self.alg).ok())
    }

    /// Unseals with the configured auto-unseal key, if any. `Ok(false)` when none is configured.
    pub fn auto_unseal(&self) -> Result<bool> {
        let Some(kek) = &self.auto_unseal else {
            return Ok(false);
        };
        let Some(env) = self.store.get(AUTO_UNSEAL)? else {
            return Err(Error::bad(
                "auto-unseal key is configured but this vault was initialized without it",
            ));
        };
        let sub = crypto::derive(kek, label::AUTO_UNSEAL, "sys", "root-key");
        let raw = crypto::open(&sub, &AUTO_UNSEAL_LOC, &env)
            .map_err(|_| Error::bad("auto-unseal key does not match this vault"))?;
        let root = Key::from_slice(&raw)
            .ok_or_else(|| Error::Internal("auto-unseal record malformed".into()))?;
        let kr = self.open_keyring(&root)?.ok_or_else(|| {
            Error::Internal("keyring does not open with the auto-unseal root key".into())
        })?;
        self.prepare_keyring(&kr, &root)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = State::Unsealed {
            keyring: Arc::new(kr),
            root,
        };
        tracing::info!("vault unsealed with the auto-unseal key");
        Ok(true)
    }

    /// Seals: drops the keyring (its keys zeroize when the last in-flight request lets go).
    pub fn seal(&self) {
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        if matches!(*st, State::Unsealed { .. }) {
            *st = State::Sealed {
                shares: Vec::new(),
                nonce: String::new(),
            };
            tracing::info!("vault sealed");
        }
        self.token_cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Adds a keyring term (`sys/rotate`): new writes use it, old terms still decrypt.
    pub fn rotate_keyring(&self) -> Result<(u32, String)> {
        let _g = self.rotate_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.rotate_keyring_locked()
    }

    fn unsealed_keys(&self) -> Result<(Arc<Keyring>, Key)> {
        match &*self.state.read().unwrap_or_else(|p| p.into_inner()) {
            State::Unsealed { keyring, root } => Ok((keyring.clone(), root.clone())),
            _ => Err(Error::Sealed),
        }
    }

    fn rotate_keyring_locked(&self) -> Result<(u32, String)> {
        let (kr, root) = self.unsealed_keys()?;
        let next = kr.rotated(self.clock.now());
        // Durable before it is used: a value written under term n+1 must never outlive the
        // keyring record that knows term n+1.
        self.raise_count_bound(&next, &root)?;
        let out = (next.active_term(), next.installed_at());
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        if let State::Unsealed { keyring, .. } = &mut *st {
            *keyring = Arc::new(next);
        }
        tracing::info!(term = out.0, "keyring rotated");
        Ok(out)
    }

    pub fn key_status(&self) -> Result<(u32, String, usize)> {
        let kr = self.keyring()?;
        Ok((kr.active_term(), kr.installed_at(), kr.term_count()))
    }

    /// Keeps the stored bound of the active term's encryption count ahead of the live
    /// count (raised by `COUNT_RESERVE` when half of it is used), and replaces an AES-256-GCM
    /// term that reached `AES_GCM_TERM_LIMIT`. Run every few seconds: the bound must stay
    /// ahead of the count between runs (2^20 encryptions; arca writes about 13,000/s).
    pub fn keyring_maintain(&self) -> Result<KeyringUpkeep> {
        use std::sync::atomic::Ordering;
        let _g = self.rotate_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (kr, root) = self.unsealed_keys()?;
        let used = kr.encryptions();
        if kr.algorithm() == Algorithm::Aes256Gcm
            && used >= self.aes_gcm_term_limit.load(Ordering::Relaxed)
        {
            let (term, _) = self.rotate_keyring_locked()?;
            tracing::warn!(
                term,
                encryptions = used,
                "AES-256-GCM term reached its encryption limit: a new term is active"
            );
            return Ok(KeyringUpkeep::Rotated(term));
        }
        if used.saturating_add(super::keyring::COUNT_RESERVE / 2) < kr.stored_encryptions() {
            return Ok(KeyringUpkeep::Nothing);
        }
        self.raise_count_bound(&kr, &root)?;
        Ok(KeyringUpkeep::CountStored)
    }

    #[cfg(test)]
    pub(crate) fn set_aes_gcm_term_limit(&self, n: u64) {
        self.aes_gcm_term_limit
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Hex of a share, for the init output.
pub fn share_hex(s: &[u8]) -> String {
    hex::encode(s)
}

/// Base64 of a share, for the init output.
pub fn share_b64(s: &[u8]) -> String {
    b64(s)
}

/// Decodes a submitted share: hex or base64.
pub fn decode_share(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let s = s.trim();
    if let Ok(b) = hex::decode(s) {
        return Some(Zeroizing::new(b));
    }
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::ManualClock;
    use crate::core::kv::ReadOutcome;
    use crate::store::sled::SledStore;
    use serde_json::{json, Map, Value};

    fn data(i: usize) -> Map<String, Value> {
        match json!({ "n": i }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// An AES-256-GCM term is replaced once it has sealed its limit; what it sealed still
    /// opens; the count survives a seal and unseal (it never goes back).
    #[test]
    fn an_aes_gcm_term_is_replaced_at_its_encryption_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap());
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let v = Vault::open(store, clock, Algorithm::Aes256Gcm, Some(Key::generate())).unwrap();
        v.init(1, 1, None).unwrap();
        assert!(v.auto_unseal().unwrap());
        let start = v.keyring().unwrap().encryptions();
        assert!(
            start >= super::super::keyring::COUNT_RESERVE,
            "starts at the bound"
        );
        let limit = start + 100;
        v.set_aes_gcm_term_limit(limit);
        assert_eq!(v.keyring_maintain().unwrap(), KeyringUpkeep::Nothing);
        let mut i = 0;
        while v.keyring().unwrap().encryptions() < limit {
            v.kv_write("secret", &format!("a/{i}"), &data(i), None)
                .unwrap();
            i += 1;
            if v.keyring().unwrap().encryptions() < limit {
                assert_eq!(v.keyring_maintain().unwrap(), KeyringUpkeep::Nothing);
            }
        }
        let written = i;
        assert!(written >= 20, "{written}");
        assert_eq!(v.keyring_maintain().unwrap(), KeyringUpkeep::Rotated(2));
        assert_eq!(v.key_status().unwrap().0, 2);
        assert_eq!(v.keyring().unwrap().encryptions(), 0);
        // the new term was stored with its bound: nothing more to do
        v.set_aes_gcm_term_limit(AES_GCM_TERM_LIMIT);
        assert_eq!(v.keyring_maintain().unwrap(), KeyringUpkeep::Nothing);
        for i in 0..written {
            match v.kv_read("secret", &format!("a/{i}"), None).unwrap() {
                ReadOutcome::Found { data, .. } => assert_eq!(data["n"], json!(i)),
                _ => panic!("a/{i} does not open after the rotation"),
            }
        }
        let before = v.keyring().unwrap().encryptions();
        v.seal();
        assert!(v.auto_unseal().unwrap());
        assert!(v.keyring().unwrap().encryptions() > before);
    }

    /// The stored bound is raised once half of its lead is used; XChaCha20-Poly1305 terms
    /// (192-bit nonces) are never replaced for their count.
    #[test]
    fn the_count_bound_is_raised_ahead_and_xchacha_terms_stay() {
        use super::super::keyring::COUNT_RESERVE;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap());
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let v = Vault::open(
            store,
            clock,
            Algorithm::XChaCha20Poly1305,
            Some(Key::generate()),
        )
        .unwrap();
        v.init(1, 1, None).unwrap();
        assert!(v.auto_unseal().unwrap());
        v.set_aes_gcm_term_limit(1);
        let kr = v.keyring().unwrap();
        let bound = kr.stored_encryptions();
        assert!(bound > kr.encryptions());
        kr.add_encryptions(COUNT_RESERVE / 2 - 10);
        assert_eq!(v.keyring_maintain().unwrap(), KeyringUpkeep::Nothing);
        kr.add_encryptions(20);
        assert_eq!(v.keyring_maintain().unwrap(), KeyringUpkeep::CountStored);
        assert_eq!(kr.stored_encryptions(), kr.encryptions() + COUNT_RESERVE);
        assert_eq!(v.key_status().unwrap().0, 1, "no new term for XChaCha");
        // what was stored is what the next unseal starts from
        let stored = kr.stored_encryptions();
        v.seal();
        assert!(v.auto_unseal().unwrap());
        assert_eq!(v.keyring().unwrap().encryptions(), stored);
    }
}
