//! Tokens: issue, authenticate, look up, renew, revoke (with descendants), tidy; token roles.
//!
//! Tokens are 256-bit random strings with the `arca.` prefix that also carry their
//! accessor: `arca.<accessor>.<43 base64url characters>`. Only their HMAC (under a keyring
//! subkey) is stored. Store layout:
//! - `tok/acc/<accessor>`                 the entry, encrypted: token HMAC, then JSON
//! - `tok/id/<hmac hex>`                  -> accessor, only for tokens that do not carry
//!   their accessor (a root token chosen by the operator, tokens from before `tok/layout`)
//! - `tok/parent/<parent acc>/<child acc>` children, for cascading revocation
//! - `tok/exp/<unix secs, 20 digits>/<accessor>` expiry index, for tidy
//! - `tok/layout`                         "2" once every entry is stored by accessor
//! - `tokrole/<name>`                     token roles (encrypted)
//!
//! Accessors begin with their creation time, so a new token's three keys (entry, parent
//! index, expiry index) all land at the end of their ranges: no insert at a random place of
//! a large store. A presented token is found by the accessor it carries, and accepted only
//! if the HMAC stored with the entry matches (constant-time comparison).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
#[cfg(test)]
use std::sync::Mutex;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::crypto::{label, Key, Location};
use super::error::{Error, Result};
use super::keyring::Keyring;
use super::policies::is_root_name;
use super::policy::normalize_name;
use super::vault::Vault;
use crate::store::Op;

/// Vault's system default and maximum TTL: 768h.
pub const SYSTEM_MAX_TTL: u64 = 2_764_800;

const ID: &str = "tok/id/";
const ACC: &str = "tok/acc/";
/// Marks a store whose entries are all under `ACC` (see `Vault::token_layout_upgrade`).
pub(crate) const LAYOUT: &[u8] = b"tok/layout";
pub(crate) const LAYOUT_NOW: &[u8] = b"2";
const PARENT: &str = "tok/parent/";
const EXP: &str = "tok/exp/";
const ROLE: &str = "tokrole/";

/// A stored token (never the token itself). Empty fields are left out of the stored JSON
/// (every entry is written at each create, renewal and counted use).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenEntry {
    pub accessor: String,
    /// Sorted; `default` included unless `no_default_policy`; `["root"]` for root tokens.
    pub policies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<BTreeMap<String, String>>,
    pub creation_time: DateTime<Utc>,
    /// Seconds granted at creation (0 = no expiry).
    pub creation_ttl: u64,
    /// Seconds granted by the last creation or renewal.
    pub ttl: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<DateTime<Utc>>,
    /// Renewals never go past this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expire_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub explicit_max_ttl: u64,
    /// Remaining uses; 0 = unlimited.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_uses: u64,
    pub renewable: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub period: u64,
    pub orphan: bool,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_cidrs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renewal: Option<DateTime<Utc>>,
    /// token, approle, cert
    pub auth_method: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TokenEntry {
    pub fn root(now: DateTime<Utc>) -> TokenEntry {
        TokenEntry {
            accessor: generate_accessor(),
            policies: vec!["root".into()],
            parent: None,
            display_name: "root".into(),
            meta: None,
            creation_time: now,
            creation_ttl: 0,
            ttl: 0,
            expire_at: None,
            max_expire_at: None,
            explicit_max_ttl: 0,
            num_uses: 0,
            renewable: false,
            period: 0,
            orphan: true,
            path: "auth/token/root".into(),
            role: None,
            bound_cidrs: Vec::new(),
            last_renewal: None,
            auth_method: "token".into(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }

    pub fn remaining(&self, now: DateTime<Utc>) -> Option<u64> {
        self.expire_at
            .map(|e| (e - now).num_seconds().max(0) as u64)
    }

    fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expire_at.is_some_and(|e| e <= now)
    }

    fn cidr_allows(&self, remote: Option<IpAddr>) -> bool {
        if self.bound_cidrs.is_empty() {
            return true;
        }
        let Some(ip) = remote else { return false };
        self.bound_cidrs.iter().any(|c| cidr_contains(c, ip))
    }

    /// The contract's `lookup-self` data. `id` is the token when the caller presented it.
    pub fn lookup_json(&self, id: &str, now: DateTime<Utc>) -> serde_json::Value {
        let mut v = serde_json::json!({
            "accessor": self.accessor,
            "creation_time": self.creation_time.timestamp(),
            "creation_ttl": self.creation_ttl,
            "display_name": self.display_name,
            "entity_id": "",
            "expire_time": self.expire_at.map(super::clock::rfc3339),
            "explicit_max_ttl": self.explicit_max_ttl,
            "id": id,
            "issue_time": super::clock::rfc3339(self.creation_time),
            "meta": self.meta,
            "num_uses": self.num_uses,
            "orphan": self.orphan,
            "path": self.path,
            "policies": self.policies,
            "renewable": self.renewable,
            "ttl": self.remaining(now).unwrap_or(0),
            "type": "service",
        });
        if let Some(r) = &self.role {
            v["role"] = serde_json::json!(r);
        }
        if !self.bound_cidrs.is_empty() {
            v["bound_cidrs"] = serde_json::json!(self.bound_cidrs);
        }
        if let Some(t) = self.last_renewal {
            v["last_renewal"] = serde_json::json!(super::clock::rfc3339(t));
            v["last_renewal_time"] = serde_json::json!(t.timestamp());
        }
        if self.period > 0 {
            v["period"] = serde_json::json!(self.period);
        }
        v
    }

    /// The contract's `auth` block of a login or token create.
    pub fn auth_json(&self, token: &str) -> serde_json::Value {
        serde_json::json!({
            "client_token": token,
            "accessor": self.accessor,
            "policies": self.policies,
            "token_policies": self.policies,
            "metadata": self.meta,
            "lease_duration": self.ttl,
            "renewable": self.renewable,
            "entity_id": "",
            "token_type": "service",
            "orphan": self.orphan,
            "mfa_requirement": null,
            "num_uses": self.num_uses,
        })
    }
}

/// Is `ip` inside `cidr` (`10.0.0.0/8`, or a bare address)?
pub fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    if let Ok(net) = cidr.parse::<ipnet::IpNet>() {
        return net.contains(&ip);
    }
    cidr.parse::<IpAddr>().is_ok_and(|a| a == ip)
}

/// Parses and normalizes CIDRs (`127.0.0.1/32` -> `127.0.0.1`), as Vault shows them.
pub fn normalize_cidrs(list: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for c in list.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        if let Ok(ip) = c.parse::<IpAddr>() {
            out.push(ip.to_string());
        } else if let Ok(net) = c.parse::<ipnet::IpNet>() {
            let net = net.trunc();
            if net.prefix_len() == net.max_prefix_len() {
                out.push(net.addr().to_string());
            } else {
                out.push(net.to_string());
            }
        } else {
            return Err(Error::bad(format!("invalid CIDR block {c:?}")));
        }
    }
    Ok(out)
}

/// 256-bit random token with the `arca.` prefix that does not carry an accessor (the
/// dev server's root token, kept across restarts; it is found through the HMAC index).
pub fn generate_token() -> Zeroizing<String> {
    let k = Key::generate();
    Zeroizing::new(format!(
        "arca.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k.expose())
    ))
}

/// A new token for the entry with `accessor`: `arca.<accessor>.<256 random bits, base64url>`.
/// Knowing a token's accessor grants nothing (lookup-self shows it to the token's holder
/// anyway); the accessor does not lead to the token.
pub fn generate_token_for(accessor: &str) -> Zeroizing<String> {
    let k = Key::generate();
    let mut t = Zeroizing::new(String::with_capacity(5 + 24 + 1 + 43));
    t.push_str("arca.");
    t.push_str(accessor);
    t.push('.');
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(k.expose(), &mut t);
    t
}

/// The accessor a token carries (`generate_token_for`'s shape), if it has one.
fn accessor_in(token: &str) -> Option<&str> {
    let (acc, secret) = token.strip_prefix("arca.")?.split_once('.')?;
    (acc.len() == 24
        && acc.bytes().all(|b| b.is_ascii_alphanumeric())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(acc)
}

/// 24 letters and digits, like Vault's accessors (never starting with '-', which a command
/// line would take for a flag): 9 that count microseconds since 1970 in base 62 (digits,
/// then upper, then lower case: ASCII order, so later accessors sort after earlier ones),
/// then 15 random ones (about 89 bits) from the thread's CSPRNG (ChaCha, seeded and
/// reseeded from the OS). The store's indexes keyed by accessor (accessor -> token, a
/// parent's children, expiries) then grow at their end instead of at random places, which
/// kept token creation in cache on a large store.
pub fn generate_accessor() -> String {
    use rand::Rng;
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let mut out = [0u8; 24];
    for c in out[..9].iter_mut().rev() {
        *c = DIGITS[(micros % 62) as usize];
        micros /= 62;
    }
    let mut rng = rand::thread_rng();
    for c in out[9..].iter_mut() {
        *c = rng.sample(rand::distributions::Alphanumeric);
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// What a caller asks for when creating a token.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub policies: Option<Vec<String>>,
    pub ttl: Option<u64>,
    pub explicit_max_ttl: Option<u64>,
    pub num_uses: u64,
    pub renewable: Option<bool>,
    pub no_parent: bool,
    pub no_default_policy: bool,
    pub meta: Option<BTreeMap<String, String>>,
    pub display_name: Option<String>,
    pub period: Option<u64>,
    pub bound_cidrs: Vec<String>,
}

/// A token role (`auth/token/roles/:name`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TokenRole {
    pub name: String,
    pub allowed_policies: Vec<String>,
    pub disallowed_policies: Vec<String>,
    pub orphan: bool,
    pub renewable: bool,
    pub path_suffix: String,
    pub token_ttl: u64,
    pub token_max_ttl: u64,
    pub token_explicit_max_ttl: u64,
    pub token_period: u64,
    pub token_num_uses: u64,
    pub token_no_default_policy: bool,
    pub token_bound_cidrs: Vec<String>,
}

impl TokenRole {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "allowed_policies": self.allowed_policies,
            "allowed_policies_glob": [],
            "disallowed_policies": self.disallowed_policies,
            "disallowed_policies_glob": [],
            "allowed_entity_aliases": null,
            "orphan": self.orphan,
            "renewable": self.renewable,
            "path_suffix": self.path_suffix,
            "explicit_max_ttl": 0,
            "period": 0,
            "token_ttl": self.token_ttl,
            "token_max_ttl": self.token_max_ttl,
            "token_explicit_max_ttl": self.token_explicit_max_ttl,
            "token_period": self.token_period,
            "token_num_uses": self.token_num_uses,
            "token_no_default_policy": self.token_no_default_policy,
            "token_bound_cidrs": self.token_bound_cidrs,
            "token_type": "default-service",
        })
    }
}

/// What issuing a token produced. The token is shown once and never stored.
pub struct Issued {
    pub token: Zeroizing<String>,
    pub entry: TokenEntry,
    pub warnings: Vec<String>,
}

/// Who asks for a token, and how much they may do.
pub struct Issuer<'a> {
    /// The parent token (None for logins: AppRole, certificates).
    pub parent: Option<&'a TokenEntry>,
    /// Root, or sudo on the create path: may make orphans and periodic tokens.
    pub privileged: bool,
    /// Creation path shown by lookup (`auth/token/create`, `auth/approle/login`, ...).
    pub path: String,
    pub auth_method: &'static str,
}

fn dur(secs: u64) -> String {
    super::kv::go_duration(secs)
}

/// Test hook: runs between a read of the token with this HMAC and the write (or cache
/// fill) that follows it, to put a revoke in that window.
#[cfg(test)]
type RaceHook = (Option<[u8; 32]>, Option<Arc<dyn Fn() + Send + Sync>>);
#[cfg(test)]
static RACE_HOOK: Mutex<RaceHook> = Mutex::new((None, None));
#[cfg(test)]
fn set_race_hook(mac: [u8; 32], f: Arc<dyn Fn() + Send + Sync>) {
    *RACE_HOOK.lock().unwrap_or_else(|p| p.into_inner()) = (Some(mac), Some(f));
}
#[cfg(test)]
fn between_read_and_write(mac: &[u8; 32]) {
    let hook = {
        let h = RACE_HOOK.lock().unwrap_or_else(|p| p.into_inner());
        if h.0.as_ref() == Some(mac) {
            h.1.clone()
        } else {
            None
        }
    };
    if let Some(f) = hook {
        f();
    }
}
#[cfg(not(test))]
#[inline(always)]
fn between_read_and_write(_mac: &[u8; 32]) {}

fn lock_index(accessor: &str, n: usize) -> usize {
    // The accessor's last characters are random.
    let h = accessor
        .bytes()
        .rev()
        .take(4)
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    h % n
}

/// Where an entry is sealed: bound to its accessor, so it cannot be moved to another.
fn entry_loc(accessor: &str) -> Location<'_> {
    Location::new("token-entry", "auth/token", accessor, 0)
}

/// Where entries were sealed before `tok/layout` 2: bound to the token's HMAC.
fn legacy_loc(id: &str) -> Location<'_> {
    Location::new("token", "auth/token", id, 0)
}

fn valid_accessor(accessor: &str) -> bool {
    !accessor.is_empty() && !accessor.contains('/') && accessor.len() <= 128
}

fn same_mac(a: &[u8], b: &[u8; 32]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, &b[..]))
}

impl Vault {
    /// The store ops that write `entry` for the token with HMAC `mac`; `old` is the entry
    /// it replaces (None on creation). `by_mac`: the token does not carry its accessor, so
    /// it is also indexed by its HMAC.
    pub(crate) fn token_put_ops(
        &self,
        kr: &Keyring,
        mac: &[u8; 32],
        entry: &TokenEntry,
        old: Option<&TokenEntry>,
        by_mac: bool,
    ) -> Result<Vec<Op>> {
        let acc = &entry.accessor;
        let mut plain = Zeroizing::new(Vec::with_capacity(512));
        plain.extend_from_slice(mac);
        serde_json::to_writer(&mut *plain, entry).map_err(|e| Error::Internal(e.to_string()))?;
        let mut ops = Vec::with_capacity(4);
        ops.push(Op::Put(
            format!("{ACC}{acc}").into_bytes(),
            kr.seal(label::TOKEN_STORE, &entry_loc(acc), &plain),
        ));
        if by_mac {
            ops.push(Op::Put(
                format!("{ID}{}", hex::encode(mac)).into_bytes(),
                acc.clone().into_bytes(),
            ));
        }
        match old {
            None => {
                if let Some(p) = &entry.parent {
                    ops.push(Op::Put(
                        format!("{PARENT}{p}/{acc}").into_bytes(),
                        Vec::new(),
                    ));
                }
                if let Some(e) = entry.expire_at {
                    ops.push(Op::Put(exp_key(e, acc), Vec::new()));
                }
            }
            Some(o) if o.expire_at != entry.expire_at => {
                if let Some(e) = o.expire_at {
                    ops.push(Op::Delete(exp_key(e, acc)));
                }
                if let Some(e) = entry.expire_at {
                    ops.push(Op::Put(exp_key(e, acc), Vec::new()));
                }
            }
            Some(_) => {}
        }
        Ok(ops)
    }

    /// The entry stored under `accessor`, with the HMAC of its token.
    fn token_load_acc(
        &self,
        kr: &Keyring,
        accessor: &str,
    ) -> Result<Option<([u8; 32], TokenEntry)>> {
        if !valid_accessor(accessor) {
            return Ok(None);
        }
        let Some(env) = self.store.get(format!("{ACC}{accessor}").as_bytes())? else {
            return Ok(None);
        };
        let plain = Zeroizing::new(kr.open(label::TOKEN_STORE, &entry_loc(accessor), &env)?);
        if plain.len() < 32 {
            return Err(Error::Internal("token record too short".into()));
        }
        let mut mac = [0u8; 32];
        mac.copy_from_slice(&plain[..32]);
        let entry = serde_json::from_slice(&plain[32..])
            .map_err(|e| Error::Internal(format!("token record: {e}")))?;
        Ok(Some((mac, entry)))
    }

    /// Whether a token with `accessor` exists (expired or not), without decrypting it.
    fn token_exists(&self, accessor: &str) -> Result<bool> {
        Ok(valid_accessor(accessor)
            && self
                .store
                .get(format!("{ACC}{accessor}").as_bytes())?
                .is_some())
    }

    /// The entry of `token` (whose HMAC is `mac`): found by the accessor the token carries,
    /// else through the HMAC index; only if the stored HMAC matches.
    fn token_load(&self, kr: &Keyring, token: &str, mac: &[u8; 32]) -> Result<Option<TokenEntry>> {
        if let Some(acc) = accessor_in(token) {
            if let Some((m, e)) = self.token_load_acc(kr, acc)? {
                if same_mac(&m, mac) {
                    return Ok(Some(e));
                }
            }
        }
        let Some(acc) = self
            .store
            .get(format!("{ID}{}", hex::encode(mac)).as_bytes())?
        else {
            return Ok(None);
        };
        let acc = String::from_utf8(acc).map_err(|_| Error::Internal("token index".into()))?;
        Ok(match self.token_load_acc(kr, &acc)? {
            Some((m, e)) if same_mac(&m, mac) => Some(e),
            _ => None,
        })
    }

    /// Moves entries stored before `tok/layout` 2 (`tok/id/<hmac>` = entry, `tok/acc/<acc>`
    /// = hmac) to the present layout, in batches, then marks the store. Runs at unseal with
    /// the keyring just opened, before the vault serves; a store already marked costs one
    /// read. Safe to interrupt: a moved entry is not moved again.
    pub(crate) fn token_layout_upgrade(&self, kr: &Keyring) -> Result<usize> {
        if self.store.get(LAYOUT)?.as_deref() == Some(LAYOUT_NOW) {
            return Ok(0);
        }
        // No token request runs meanwhile: the vault is not unsealed yet, and none was in
        // flight from an earlier unseal (that one would have marked the store). So no token
        // lock or guard is taken here (the state lock is held by the unseal).
        let mut moved = 0;
        let mut ops = Vec::new();
        for (k, v) in self.store.scan_prefix(ACC.as_bytes())? {
            let is_old = v.len() == 64 && v.iter().all(u8::is_ascii_hexdigit);
            if !is_old {
                continue;
            }
            let acc = String::from_utf8_lossy(&k[ACC.len()..]).into_owned();
            let id = String::from_utf8_lossy(&v).into_owned();
            let mut mac = [0u8; 32];
            hex::decode_to_slice(&id, &mut mac)
                .map_err(|_| Error::Internal("token index".into()))?;
            let Some(env) = self.store.get(format!("{ID}{id}").as_bytes())? else {
                ops.push(Op::Delete(k)); // an index left by an interrupted revoke
                continue;
            };
            let json = Zeroizing::new(kr.open(label::TOKEN_STORE, &legacy_loc(&id), &env)?);
            let mut plain = Zeroizing::new(Vec::with_capacity(32 + json.len()));
            plain.extend_from_slice(&mac);
            plain.extend_from_slice(&json);
            ops.push(Op::Put(
                k,
                kr.seal(label::TOKEN_STORE, &entry_loc(&acc), &plain),
            ));
            ops.push(Op::Put(format!("{ID}{id}").into_bytes(), acc.into_bytes()));
            moved += 1;
            if ops.len() >= 1024 {
                self.store.batch(std::mem::take(&mut ops))?;
            }
        }
        ops.push(Op::Put(LAYOUT.to_vec(), LAYOUT_NOW.to_vec()));
        self.store.batch(ops)?;
        self.store.sync()?;
        if moved > 0 {
            tracing::info!(
                tokens = moved,
                "token entries moved to the accessor-keyed layout"
            );
        }
        Ok(moved)
    }

    /// Authenticates a token presented with a request from `remote`. Expired, revoked,
    /// unknown and CIDR-mismatched tokens are all `BadToken`. A token with `num_uses` has one
    /// use consumed durably before this returns; others cost no store write.
    pub fn authenticate(&self, token: &str, remote: Option<IpAddr>) -> Result<Arc<TokenEntry>> {
        let kr = self.keyring()?;
        let mac = kr.token_hmac(token.as_bytes());
        let now = self.now();
        let cached = self
            .token_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&mac)
            .cloned();
        if let Some(e) = cached {
            if e.expired(now) || !e.cidr_allows(remote) {
                return Err(Error::BadToken);
            }
            return Ok(e);
        }
        let accessor = {
            // Shared with revocation: a revoke between this read and the cache fill would
            // otherwise leave the revoked token in the cache.
            let _r = self.revoke_shared();
            let entry = self.token_load(&kr, token, &mac)?.ok_or(Error::BadToken)?;
            if entry.expired(now) || !entry.cidr_allows(remote) {
                return Err(Error::BadToken);
            }
            if entry.num_uses == 0 {
                between_read_and_write(&mac);
                let e = Arc::new(entry);
                self.token_cache
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(mac, e.clone());
                return Ok(e);
            }
            entry.accessor
        };
        // Use-limited: count under the token's lock, durably, before serving.
        let _g = self.token_locks[lock_index(&accessor, self.token_locks.len())]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let r = self.revoke_shared();
        let old = self.token_load(&kr, token, &mac)?.ok_or(Error::BadToken)?;
        if old.num_uses == 0 || old.expired(now) {
            return Err(Error::BadToken);
        }
        let mut entry = old.clone();
        entry.num_uses -= 1;
        between_read_and_write(&mac);
        if entry.num_uses == 0 {
            // The last use: revoke now (with descendants); this request is still served.
            drop(r);
            self.revoke_tree_locked(&kr, &entry.accessor)?;
        } else {
            // (A revoke waiting meanwhile finds the new count and deletes it.)
            self.store
                .batch(self.token_put_ops(&kr, &mac, &entry, Some(&old), false)?)?;
            drop(r);
            self.store.sync()?;
        }
        Ok(Arc::new(entry))
    }

    /// The fast path of `authenticate`: answers from the cache only (no store access).
    /// `Ok(None)` means "not cached": call `authenticate`.
    pub fn authenticate_cached(
        &self,
        token: &str,
        remote: Option<IpAddr>,
    ) -> Result<Option<Arc<TokenEntry>>> {
        let kr = self.keyring()?;
        let mac = kr.token_hmac(token.as_bytes());
        let cached = self
            .token_cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&mac)
            .cloned();
        match cached {
            Some(e) if e.expired(self.now()) || !e.cidr_allows(remote) => Err(Error::BadToken),
            other => Ok(other),
        }
    }

    /// Looks a token up without consuming a use (for `auth/token/lookup`). `BadToken` if it
    /// does not exist or has expired.
    pub fn token_lookup(&self, token: &str) -> Result<TokenEntry> {
        let kr = self.keyring()?;
        let e = self
            .token_load(&kr, token, &kr.token_hmac(token.as_bytes()))?
            .ok_or(Error::BadToken)?;
        if e.expired(self.now()) {
            return Err(Error::BadToken);
        }
        Ok(e)
    }

    pub fn token_lookup_accessor(&self, accessor: &str) -> Result<Option<TokenEntry>> {
        let kr = self.keyring()?;
        Ok(self
            .token_load_acc(&kr, accessor)?
            .map(|(_, e)| e)
            .filter(|e| !e.expired(self.now())))
    }

    /// Issues a token for `issuer` (a parent token or a login) as `req` asks, within the
    /// limits of the parent and of `role`. Durable when it returns.
    pub fn token_create(
        &self,
        issuer: &Issuer<'_>,
        req: TokenRequest,
        role: Option<&TokenRole>,
    ) -> Result<Issued> {
        let issued = self.token_create_unsynced(issuer, req, role)?;
        self.store.sync()?;
        Ok(issued)
    }

    /// `token_create` without the final sync: the caller must sync the store before it
    /// hands the token out (the HTTP layer leaves it to the outcome record). Does no
    /// blocking I/O.
    pub fn token_create_unsynced(
        &self,
        issuer: &Issuer<'_>,
        mut req: TokenRequest,
        role: Option<&TokenRole>,
    ) -> Result<Issued> {
        let kr = self.keyring()?;
        let now = self.now();
        let mut warnings = Vec::new();
        let parent = issuer.parent;
        let parent_root = parent.is_some_and(|p| p.is_root());

        if let Some(r) = role {
            req.no_parent |= r.orphan;
            req.no_default_policy |= r.token_no_default_policy;
            // The role's limits are caps: a request may ask for less, never for more (0 is
            // "none" on both sides).
            let cap = |asked: Option<u64>, limit: u64| match asked {
                Some(a) if a > 0 && limit > 0 => Some(a.min(limit)),
                Some(a) if a > 0 => Some(a),
                _ if limit > 0 => Some(limit),
                other => other,
            };
            req.period = cap(req.period, r.token_period);
            req.explicit_max_ttl = cap(req.explicit_max_ttl, r.token_explicit_max_ttl);
            req.num_uses = cap(Some(req.num_uses), r.token_num_uses).unwrap_or(0);
            if req.ttl.is_none() && r.token_ttl > 0 {
                req.ttl = Some(r.token_ttl);
            }
            if !super::approle::cidrs_within(&req.bound_cidrs, &r.token_bound_cidrs) {
                return Err(Error::Forbidden(
                    "bound_cidrs must lie within the token role's token_bound_cidrs".into(),
                ));
            }
            if req.bound_cidrs.is_empty() {
                req.bound_cidrs = r.token_bound_cidrs.clone();
            }
            if !r.renewable {
                req.renewable = Some(false);
            }
        }

        // Policies: requested, else the role's allowed ones, else the parent's.
        let mut policies: Vec<String> = match (&req.policies, role, parent) {
            (Some(p), _, _) => p
                .iter()
                .map(|n| normalize_name(n))
                .collect::<std::result::Result<_, _>>()?,
            (None, Some(r), _) => r.allowed_policies.clone(),
            (None, None, Some(p)) => p.policies.clone(),
            (None, None, None) => Vec::new(),
        };
        policies.sort();
        policies.dedup();
        let wants_root = policies.iter().any(|p| is_root_name(p));
        if wants_root && !parent_root {
            return Err(Error::Forbidden(
                "root tokens can only be created by a root token".into(),
            ));
        }
        if let Some(r) = role {
            let allowed = |p: &String| p == "default" || r.allowed_policies.contains(p);
            if !policies.iter().all(allowed)
                || policies.iter().any(|p| r.disallowed_policies.contains(p))
            {
                return Err(Error::bad(format!(
                    "token policies ({:?}) must be subset of the role's allowed policies ({:?}) or glob policies ([])",
                    policies, r.allowed_policies
                )));
            }
        } else if let Some(p) = parent {
            if !parent_root
                && !policies
                    .iter()
                    .all(|n| n == "default" || p.policies.contains(n))
            {
                return Err(Error::Forbidden(
                    "child policies must be subset of parent".into(),
                ));
            }
        }
        let is_root_token = wants_root;
        if is_root_token {
            policies = vec!["root".into()];
        } else {
            if !req.no_default_policy && !policies.iter().any(|p| p == "default") {
                policies.push("default".into());
                policies.sort();
            } else if req.no_default_policy {
                policies.retain(|p| p != "default");
            }
            for p in &policies {
                if p != "default" && self.policy_get(p)?.is_none() {
                    warnings.push(format!("Policy {p:?} does not exist"));
                }
            }
        }

        let orphan = req.no_parent || parent.is_none();
        if parent.is_some() && req.no_parent && !issuer.privileged {
            return Err(Error::Forbidden(
                "root or sudo privileges required to create orphan token".into(),
            ));
        }
        // A role's own period needs no privilege (it is capped to it above); any other does.
        if req.period.is_some_and(|p| p > 0)
            && parent.is_some()
            && !issuer.privileged
            && role.is_none_or(|r| r.token_period == 0)
        {
            return Err(Error::Forbidden(
                "root or sudo privileges required to create periodic token".into(),
            ));
        }

        // A parent revoked meanwhile (on its last use by this very request, say) issues
        // nothing: its children would escape every cascade, and `num_uses == 0` would read
        // as "unlimited" below. Held shared to the write, so no revoke of the parent falls
        // between this check and the child's parent index.
        let _r = parent.map(|_| self.revoke_shared());
        if let Some(p) = parent {
            if !self.token_exists(&p.accessor)? {
                return Err(Error::Forbidden("the parent token has been revoked".into()));
            }
        }

        // Uses: a child of a use-limited token gets no more uses than its parent has left.
        if let Some(p) = parent {
            if p.num_uses > 0 && (req.num_uses == 0 || req.num_uses > p.num_uses) {
                return Err(Error::Forbidden(format!(
                    "child token cannot have more uses than its parent has left ({})",
                    p.num_uses
                )));
            }
        }

        // TTLs.
        let period = req.period.unwrap_or(0);
        let explicit_max = req.explicit_max_ttl.unwrap_or(0);
        let parent_remaining = parent
            .filter(|_| !req.no_parent)
            .and_then(|p| p.remaining(now));
        let (ttl, expire_at, max_expire_at) = if is_root_token && req.ttl.is_none() && period == 0 {
            (0, None, None)
        } else {
            let mut ttl = if period > 0 {
                period
            } else {
                req.ttl.unwrap_or(SYSTEM_MAX_TTL)
            };
            if req.ttl.is_some_and(|t| t == 0) && period == 0 {
                ttl = SYSTEM_MAX_TTL;
            }
            let mut max = SYSTEM_MAX_TTL;
            if explicit_max > 0 {
                max = max.min(explicit_max);
            }
            if let Some(r) = role.filter(|r| r.token_max_ttl > 0) {
                max = max.min(r.token_max_ttl);
            }
            if period == 0 && ttl > max {
                warnings.push(format!(
                    "TTL of {:?} exceeded the effective max_ttl of {:?}; TTL value is capped accordingly",
                    dur(ttl),
                    dur(max)
                ));
                ttl = max;
            }
            if let Some(rem) = parent_remaining {
                if req.ttl.is_some() && ttl > rem {
                    return Err(Error::Forbidden(format!(
                        "child token TTL ({}) cannot exceed the parent's remaining lifetime ({})",
                        dur(ttl),
                        dur(rem)
                    )));
                }
                ttl = ttl.min(rem);
                max = max.min(rem);
            }
            let exp = now + Duration::seconds(ttl as i64);
            let max_at = if period > 0 && explicit_max == 0 && parent_remaining.is_none() {
                None
            } else {
                Some(now + Duration::seconds(max as i64))
            };
            (ttl, Some(exp), max_at)
        };

        let display_name = match (issuer.auth_method, &req.display_name) {
            ("token", Some(d)) if !d.is_empty() => format!("token-{}", sanitize_display(d)),
            ("token", _) => "token".to_string(),
            (m, Some(d)) if !d.is_empty() => format!("{m}-{}", sanitize_display(d)),
            (m, _) => m.to_string(),
        };

        let entry = TokenEntry {
            accessor: generate_accessor(),
            policies,
            parent: if orphan {
                None
            } else {
                parent.map(|p| p.accessor.clone())
            },
            display_name,
            meta: req.meta.filter(|m| !m.is_empty()),
            creation_time: now,
            creation_ttl: ttl,
            ttl,
            expire_at,
            max_expire_at,
            explicit_max_ttl: explicit_max,
            num_uses: req.num_uses,
            renewable: !is_root_token && req.renewable.unwrap_or(true) && expire_at.is_some(),
            period,
            orphan,
            path: issuer.path.clone(),
            role: role.map(|r| r.name.clone()),
            bound_cidrs: normalize_cidrs(&req.bound_cidrs)?,
            last_renewal: None,
            auth_method: issuer.auth_method.to_string(),
        };
        let token = generate_token_for(&entry.accessor);
        let mac = kr.token_hmac(token.as_bytes());
        self.store
            .batch(self.token_put_ops(&kr, &mac, &entry, None, false)?)?;
        Ok(Issued {
            token,
            entry,
            warnings,
        })
    }

    /// Renews `token` by `increment` seconds (or its last TTL). Never past its max; says
    /// so in a warning.
    pub fn token_renew(
        &self,
        token: &str,
        increment: Option<u64>,
    ) -> Result<(TokenEntry, Vec<String>)> {
        let kr = self.keyring()?;
        let mac = kr.token_hmac(token.as_bytes());
        let acc = self
            .token_load(&kr, token, &mac)?
            .ok_or(Error::BadToken)?
            .accessor;
        self.token_renew_acc(&kr, &acc, increment)
    }

    pub fn token_renew_accessor(
        &self,
        accessor: &str,
        increment: Option<u64>,
    ) -> Result<(TokenEntry, Vec<String>)> {
        let kr = self.keyring()?;
        self.token_renew_acc(&kr, accessor, increment)
    }

    fn token_renew_acc(
        &self,
        kr: &Keyring,
        accessor: &str,
        increment: Option<u64>,
    ) -> Result<(TokenEntry, Vec<String>)> {
        let now = self.now();
        let _g = self.token_locks[lock_index(accessor, self.token_locks.len())]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let r = self.revoke_shared();
        let (mac, old) = self.token_load_acc(kr, accessor)?.ok_or(Error::BadToken)?;
        if old.expired(now) {
            return Err(Error::BadToken);
        }
        if !old.renewable {
            return Err(Error::bad("lease is not renewable"));
        }
        let mut e = old.clone();
        let mut warnings = Vec::new();
        let mut ttl = if e.period > 0 {
            e.period
        } else {
            increment.filter(|i| *i > 0).unwrap_or(e.ttl)
        };
        if let Some(max_at) = e.max_expire_at {
            let left = (max_at - now).num_seconds().max(0) as u64;
            if ttl > left {
                warnings.push(format!(
                    "TTL of {:?} exceeded the effective max_ttl of {:?}; TTL value is capped accordingly",
                    dur(ttl),
                    dur(left)
                ));
                ttl = left;
            }
        }
        e.ttl = ttl;
        e.expire_at = Some(now + Duration::seconds(ttl as i64));
        e.last_renewal = Some(now);
        between_read_and_write(&mac);
        self.store
            .batch(self.token_put_ops(kr, &mac, &e, Some(&old), false)?)?;
        {
            let mut cache = self.token_cache.write().unwrap_or_else(|p| p.into_inner());
            if cache.contains_key(&mac) {
                cache.insert(mac, Arc::new(e.clone()));
            }
        }
        drop(r);
        self.store.sync()?;
        Ok((e, warnings))
    }

    /// Revokes a token and all its descendants. Unknown tokens: no-op.
    pub fn token_revoke(&self, token: &str) -> Result<()> {
        let kr = self.keyring()?;
        let mac = kr.token_hmac(token.as_bytes());
        let Some(e) = self.token_load(&kr, token, &mac)? else {
            return Ok(());
        };
        self.revoke_tree_locked(&kr, &e.accessor)
    }

    /// Revokes by accessor; `Ok(false)` when no such token.
    pub fn token_revoke_accessor(&self, accessor: &str) -> Result<bool> {
        let kr = self.keyring()?;
        if !self.token_exists(accessor)? {
            return Ok(false);
        }
        self.revoke_tree_locked(&kr, accessor)?;
        Ok(true)
    }

    /// Shared side of `Vault::revoke_guard`.
    fn revoke_shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.revoke_guard.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes the token with `accessor` and every descendant in one atomic batch, excluding
    /// every read-then-write of a token meanwhile (`Vault::revoke_guard`); then syncs.
    fn revoke_tree_locked(&self, kr: &Keyring, accessor: &str) -> Result<()> {
        if self.revoke_tree_unsynced(kr, accessor)? {
            self.store.sync()?;
        }
        Ok(())
    }

    /// `revoke_tree_locked` without the sync; true if anything was deleted.
    fn revoke_tree_unsynced(&self, kr: &Keyring, accessor: &str) -> Result<bool> {
        let _excl = self.revoke_guard.write().unwrap_or_else(|p| p.into_inner());
        let mut ops = Vec::new();
        let mut macs = Vec::new();
        let mut queue = vec![accessor.to_string()];
        let mut seen = std::collections::HashSet::new();
        while let Some(acc) = queue.pop() {
            if !seen.insert(acc.clone()) {
                continue;
            }
            let prefix = format!("{PARENT}{acc}/");
            for k in self.store.keys_with_prefix(prefix.as_bytes())? {
                ops.push(Op::Delete(k.clone()));
                queue.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
            }
            let Some((mac, e)) = self.token_load_acc(kr, &acc)? else {
                continue;
            };
            if let Some(exp) = e.expire_at {
                ops.push(Op::Delete(exp_key(exp, &acc)));
            }
            if let Some(p) = &e.parent {
                ops.push(Op::Delete(format!("{PARENT}{p}/{acc}").into_bytes()));
            }
            // (only a token that does not carry its accessor has this index; the entry does
            // not say which, so it is deleted in any case)
            ops.push(Op::Delete(format!("{ID}{}", hex::encode(mac)).into_bytes()));
            ops.push(Op::Delete(format!("{ACC}{acc}").into_bytes()));
            macs.push(mac);
        }
        // Out of the cache first: from here on no request authenticates with these tokens
        // (none can load them and cache them again meanwhile: the guard is held).
        let evict = || {
            let mut cache = self.token_cache.write().unwrap_or_else(|p| p.into_inner());
            for m in &macs {
                cache.remove(m);
            }
        };
        evict();
        if ops.is_empty() {
            return Ok(false);
        }
        self.store.batch(ops)?;
        evict();
        Ok(true)
    }

    /// Revokes every token that has expired by `now`; returns how many trees were removed.
    pub fn token_tidy(&self) -> Result<usize> {
        let kr = self.keyring()?;
        let now = self.now();
        let mut n = 0;
        // The expiry index up to now only: keys are `<EXP><20-digit unix secs>/...`.
        let upto = format!("{EXP}{:020}", now.timestamp().max(0) + 1);
        for k in self.store.keys_in_range(EXP.as_bytes(), upto.as_bytes())? {
            let rest = String::from_utf8_lossy(&k[EXP.len()..]).into_owned();
            let Some((secs, acc)) = rest.split_once('/') else {
                continue;
            };
            let Ok(secs) = secs.parse::<i64>() else {
                continue;
            };
            if secs > now.timestamp() {
                break; // keys are ordered by expiry
            }
            // one sync for the whole pass, not one per token
            self.revoke_tree_unsynced(&kr, acc)?;
            self.store.delete(&k)?;
            n += 1;
        }
        if n > 0 {
            self.store.sync()?;
            tracing::info!(tokens = n, "expired tokens tidied");
        }
        Ok(n)
    }

    // ---------------------------------------------------------------- token roles

    pub fn token_role_get(&self, name: &str) -> Result<Option<TokenRole>> {
        let kr = self.keyring()?;
        let name = normalize_name(name)?;
        let Some(env) = self.store.get(format!("{ROLE}{name}").as_bytes())? else {
            return Ok(None);
        };
        let json = kr.open(
            label::SYS,
            &Location::new("token-role", "auth/token", &name, 0),
            &env,
        )?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    pub fn token_role_put(&self, role: &TokenRole) -> Result<()> {
        let kr = self.keyring()?;
        let name = normalize_name(&role.name)?;
        let json = serde_json::to_vec(role).map_err(|e| Error::Internal(e.to_string()))?;
        let env = kr.seal(
            label::SYS,
            &Location::new("token-role", "auth/token", &name, 0),
            &json,
        );
        self.store.put(format!("{ROLE}{name}").as_bytes(), &env)?;
        self.store.sync()?;
        Ok(())
    }

    pub fn token_role_delete(&self, name: &str) -> Result<()> {
        let name = normalize_name(name)?;
        self.store.delete(format!("{ROLE}{name}").as_bytes())?;
        self.store.sync()?;
        Ok(())
    }

    pub fn token_role_list(&self) -> Result<Vec<String>> {
        self.keyring()?;
        let mut v: Vec<String> = self
            .store
            .keys_with_prefix(ROLE.as_bytes())?
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k[ROLE.len()..]).into_owned())
            .collect();
        v.sort();
        Ok(v)
    }
}

fn exp_key(at: DateTime<Utc>, accessor: &str) -> Vec<u8> {
    format!("{EXP}{:020}/{accessor}", at.timestamp().max(0)).into_bytes()
}

fn sanitize_display(d: &str) -> String {
    d.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::ManualClock;
    use crate::core::crypto::Algorithm;
    use crate::store::sled::SledStore;
    use crate::store::Store;

    struct F {
        v: Arc<Vault>,
        clock: Arc<ManualClock>,
        root: TokenEntry,
        _d: tempfile::TempDir,
    }

    fn fixture() -> F {
        let d = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(d.path(), 8 << 20).unwrap());
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let v = Vault::open(
            store,
            clock.clone(),
            Algorithm::XChaCha20Poly1305,
            Some(Key::generate()),
        )
        .unwrap();
        let out = v.init(1, 1, Some("root-tok")).unwrap();
        drop(out);
        v.auto_unseal().unwrap();
        let root = (*v.authenticate("root-tok", None).unwrap()).clone();
        F {
            v: Arc::new(v),
            clock,
            root,
            _d: d,
        }
    }

    fn issuer(p: &TokenEntry) -> Issuer<'_> {
        Issuer {
            parent: Some(p),
            privileged: p.is_root(),
            path: "auth/token/create".into(),
            auth_method: "token",
        }
    }

    fn req(policies: &[&str], ttl: Option<u64>) -> TokenRequest {
        TokenRequest {
            policies: Some(policies.iter().map(|s| s.to_string()).collect()),
            ttl,
            ..Default::default()
        }
    }

    #[test]
    fn child_limits_policies_ttl_uses_orphans() {
        let f = fixture();
        let a =
            f.v.token_create(&issuer(&f.root), req(&["dev", "ops"], Some(3600)), None)
                .unwrap();
        assert_eq!(a.entry.policies, vec!["default", "dev", "ops"]);
        assert_eq!(a.warnings.len(), 2, "{:?}", a.warnings);
        // subset ok, superset forbidden
        assert!(f
            .v
            .token_create(&issuer(&a.entry), req(&["dev"], Some(60)), None)
            .is_ok());
        let e =
            f.v.token_create(&issuer(&a.entry), req(&["dev", "admin"], Some(60)), None)
                .err()
                .unwrap();
        assert!(matches!(e, Error::Forbidden(_)), "{e:?}");
        assert!(matches!(
            f.v.token_create(&issuer(&a.entry), req(&["Root"], None), None),
            Err(Error::Forbidden(_))
        ));
        // longer TTL than the parent has left: forbidden; default TTL is capped to the parent's
        assert!(matches!(
            f.v.token_create(&issuer(&a.entry), req(&["dev"], Some(7200)), None),
            Err(Error::Forbidden(_))
        ));
        let c =
            f.v.token_create(&issuer(&a.entry), req(&["dev"], None), None)
                .unwrap();
        assert!(c.entry.ttl <= 3600);
        // orphans need privilege
        let mut r = req(&["dev"], Some(60));
        r.no_parent = true;
        assert!(matches!(
            f.v.token_create(&issuer(&a.entry), r, None),
            Err(Error::Forbidden(_))
        ));
        // uses
        let mut r = req(&["dev"], Some(60));
        r.num_uses = 2;
        let limited = f.v.token_create(&issuer(&a.entry), r, None).unwrap();
        let mut r = req(&["dev"], Some(60));
        r.num_uses = 3;
        assert!(matches!(
            f.v.token_create(&issuer(&limited.entry), r, None),
            Err(Error::Forbidden(_))
        ));
    }

    #[test]
    fn revoking_a_parent_revokes_descendants() {
        let f = fixture();
        let a =
            f.v.token_create(&issuer(&f.root), req(&["dev"], Some(3600)), None)
                .unwrap();
        let b =
            f.v.token_create(&issuer(&a.entry), req(&["dev"], Some(60)), None)
                .unwrap();
        let c =
            f.v.token_create(&issuer(&b.entry), req(&["dev"], Some(60)), None)
                .unwrap();
        assert!(f.v.authenticate(&c.token, None).is_ok());
        f.v.token_revoke(&a.token).unwrap();
        for t in [&a.token, &b.token, &c.token] {
            assert!(matches!(f.v.authenticate(t, None), Err(Error::BadToken)));
        }
    }

    #[test]
    fn accessors_are_24_letters_and_digits() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let a = generate_accessor();
            assert_eq!(a.len(), 24);
            assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
            assert!(seen.insert(a));
        }
        // later ones sort after earlier ones
        let a = generate_accessor();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = generate_accessor();
        assert!(a < b, "{a} {b}");
    }

    #[test]
    fn expiry_renewal_cap_and_tidy() {
        let f = fixture();
        let mut r = req(&["dev"], Some(60));
        r.explicit_max_ttl = Some(90);
        let a = f.v.token_create(&issuer(&f.root), r, None).unwrap();
        f.clock.advance(Duration::seconds(50));
        let (e, w) = f.v.token_renew(&a.token, Some(3600)).unwrap();
        assert_eq!(e.ttl, 40);
        assert_eq!(w.len(), 1, "{w:?}");
        f.clock.advance(Duration::seconds(41));
        assert!(matches!(
            f.v.authenticate(&a.token, None),
            Err(Error::BadToken)
        ));
        assert_eq!(f.v.token_tidy().unwrap(), 1);
        assert!(f
            .v
            .token_lookup_accessor(&a.entry.accessor)
            .unwrap()
            .is_none());
        assert!(matches!(
            f.v.token_renew("root-tok", None),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn num_uses_is_exact_under_concurrency() {
        let f = fixture();
        let mut r = req(&["dev"], Some(600));
        r.num_uses = 25;
        let t = f.v.token_create(&issuer(&f.root), r, None).unwrap();
        let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hs: Vec<_> = (0..50)
            .map(|_| {
                let (v, tok, ok) = (f.v.clone(), t.token.to_string(), ok.clone());
                std::thread::spawn(move || {
                    if v.authenticate(&tok, None).is_ok() {
                        ok.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(ok.load(std::sync::atomic::Ordering::SeqCst), 25);
        assert!(f.v.authenticate(&t.token, None).is_err());
    }

    /// A revoke that falls between a use's (renewal's, cache fill's) read of a token and
    /// its write is not undone by the write: the revoke waits for the write (the test hook
    /// starts the revoke right after the read and gives it 100 ms), then deletes the token.
    #[test]
    fn a_revoke_between_a_read_and_its_write_stays_revoked() {
        #[derive(Clone, Copy, Debug)]
        enum Path {
            Use,
            Renew,
            CacheFill,
        }
        let f = fixture();
        for path in [Path::Use, Path::Renew, Path::CacheFill] {
            let mut r = req(&["dev"], Some(600));
            r.num_uses = if matches!(path, Path::Use) { 5 } else { 0 };
            let t = f.v.token_create(&issuer(&f.root), r, None).unwrap();
            let kr = f.v.keyring().unwrap();
            let mac = kr.token_hmac(t.token.as_bytes());
            let revoker = Arc::new(Mutex::new(None));
            {
                let (v, acc, revoker) = (f.v.clone(), t.entry.accessor.clone(), revoker.clone());
                let fired = std::sync::atomic::AtomicBool::new(false);
                set_race_hook(
                    mac,
                    Arc::new(move || {
                        if fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
                            return;
                        }
                        let (v, acc) = (v.clone(), acc.clone());
                        let h = std::thread::spawn(move || v.token_revoke_accessor(&acc));
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        *revoker.lock().unwrap() = Some(h);
                    }),
                );
            }
            let served = match path {
                Path::Use | Path::CacheFill => f.v.authenticate(&t.token, None).is_ok(),
                Path::Renew => f.v.token_renew(&t.token, Some(60)).is_ok(),
            };
            set_race_hook(mac, Arc::new(|| {}));
            assert!(served, "{path:?}: the request that started first is served");
            let h = revoker.lock().unwrap().take().expect("the hook ran");
            assert!(
                h.join().unwrap().unwrap(),
                "{path:?}: the revoke found the token"
            );
            assert!(
                f.v.token_load(&kr, &t.token, &mac).unwrap().is_none(),
                "{path:?}: the write brought the revoked token back"
            );
            assert!(f.v.authenticate(&t.token, None).is_err(), "{path:?}");
            assert!(f
                .v
                .token_lookup_accessor(&t.entry.accessor)
                .unwrap()
                .is_none());
        }
    }

    #[test]
    fn bound_cidrs() {
        let f = fixture();
        let mut r = req(&["dev"], Some(600));
        r.bound_cidrs = vec!["10.0.0.0/8".into(), "127.0.0.1/32".into()];
        let t = f.v.token_create(&issuer(&f.root), r, None).unwrap();
        assert_eq!(t.entry.bound_cidrs, vec!["10.0.0.0/8", "127.0.0.1"]);
        assert!(f
            .v
            .authenticate(&t.token, Some("10.1.2.3".parse().unwrap()))
            .is_ok());
        assert!(f
            .v
            .authenticate(&t.token, Some("192.168.1.1".parse().unwrap()))
            .is_err());
        assert!(f.v.authenticate(&t.token, None).is_err());
    }

    #[test]
    fn roles_limit_policies() {
        let f = fixture();
        let role = TokenRole {
            name: "svc".into(),
            allowed_policies: vec!["dbread".into()],
            renewable: true,
            token_explicit_max_ttl: 7200,
            ..Default::default()
        };
        f.v.token_role_put(&role).unwrap();
        let role = f.v.token_role_get("svc").unwrap().unwrap();
        let t =
            f.v.token_create(&issuer(&f.root), TokenRequest::default(), Some(&role))
                .unwrap();
        assert_eq!(t.entry.policies, vec!["dbread", "default"]);
        assert_eq!(t.entry.role.as_deref(), Some("svc"));
        assert!(matches!(
            f.v.token_create(&issuer(&f.root), req(&["ops"], None), Some(&role)),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn tokens_carry_their_accessor_and_a_forged_secret_fails() {
        let f = fixture();
        let t =
            f.v.token_create(&issuer(&f.root), req(&["dev"], Some(600)), None)
                .unwrap();
        assert_eq!(accessor_in(&t.token), Some(t.entry.accessor.as_str()));
        assert_eq!(t.token.len(), 5 + 24 + 1 + 43);
        assert!(f.v.authenticate(&t.token, None).is_ok());
        // the right accessor with another secret, a truncated and an extended secret
        let forged = format!("arca.{}.{}", t.entry.accessor, "A".repeat(43));
        let short = t.token[..t.token.len() - 1].to_string();
        let long = format!("{}A", &*t.token);
        for bad in [&forged, &short, &long] {
            assert!(matches!(f.v.authenticate(bad, None), Err(Error::BadToken)));
            assert!(f.v.token_lookup(bad).is_err());
            f.v.token_revoke(bad).unwrap(); // unknown: a no-op
        }
        assert!(f.v.authenticate(&t.token, None).is_ok(), "still valid");
        // only an entry and its two indexes were written: no HMAC index
        let kr = f.v.keyring().unwrap();
        let mac = kr.token_hmac(t.token.as_bytes());
        assert!(f
            .v
            .store
            .get(format!("{ID}{}", hex::encode(mac)).as_bytes())
            .unwrap()
            .is_none());
        // the chosen root token ("root-tok") is found through its HMAC index
        assert!(f
            .v
            .store
            .get(format!("{ID}{}", hex::encode(kr.token_hmac(b"root-tok"))).as_bytes())
            .unwrap()
            .is_some());
        // an entry moved under another accessor does not open (sealed to its accessor)
        let other =
            f.v.token_create(&issuer(&f.root), req(&["dev"], Some(600)), None)
                .unwrap();
        let env =
            f.v.store
                .get(format!("{ACC}{}", t.entry.accessor).as_bytes())
                .unwrap()
                .unwrap();
        f.v.store
            .put(format!("{ACC}{}", other.entry.accessor).as_bytes(), &env)
            .unwrap();
        f.v.token_cache.write().unwrap().clear();
        assert!(f.v.authenticate(&other.token, None).is_err());
    }

    /// A store written before `tok/layout` 2 (entries under the token's HMAC) is moved to
    /// the accessor-keyed layout at unseal; its tokens keep working, children included.
    #[test]
    fn an_old_token_layout_is_upgraded_at_unseal() {
        let f = fixture();
        let kr = f.v.keyring().unwrap();
        let parent =
            f.v.token_create(&issuer(&f.root), req(&["dev"], Some(3600)), None)
                .unwrap();
        // Rewrite two tokens (the root and a child) the old way: old tokens had no accessor.
        let mut olds = Vec::new();
        for (i, e) in [f.root.clone(), parent.entry.clone()]
            .into_iter()
            .enumerate()
        {
            let old_token = format!("arca.old-token-{i}-{}", "x".repeat(30));
            let mac = kr.token_hmac(old_token.as_bytes());
            let id = hex::encode(mac);
            let json = serde_json::to_vec(&e).unwrap();
            f.v.store
                .batch(vec![
                    Op::Delete(
                        format!("{ID}{}", hex::encode(kr.token_hmac(b"root-tok"))).into_bytes(),
                    ),
                    Op::Put(
                        format!("{ID}{id}").into_bytes(),
                        kr.seal(label::TOKEN_STORE, &legacy_loc(&id), &json),
                    ),
                    Op::Put(format!("{ACC}{}", e.accessor).into_bytes(), id.into_bytes()),
                    Op::Delete(LAYOUT.to_vec()),
                ])
                .unwrap();
            olds.push((old_token, e));
        }
        f.v.seal();
        assert!(f.v.authenticate(&olds[0].0, None).is_err(), "sealed");
        f.v.auto_unseal().unwrap();
        assert_eq!(f.v.store.get(LAYOUT).unwrap().as_deref(), Some(LAYOUT_NOW));
        for (tok, e) in &olds {
            let got = f.v.authenticate(tok, None).unwrap();
            assert_eq!(got.accessor, e.accessor);
            assert_eq!(
                f.v.token_lookup_accessor(&e.accessor)
                    .unwrap()
                    .unwrap()
                    .policies,
                e.policies
            );
        }
        // a second unseal moves nothing
        assert_eq!(f.v.token_layout_upgrade(&kr).unwrap(), 0);
        // revoking the old root token revokes the child created before the upgrade
        f.v.token_revoke(&olds[0].0).unwrap();
        assert!(f.v.authenticate(&olds[1].0, None).is_err());
        assert!(f
            .v
            .token_lookup_accessor(&parent.entry.accessor)
            .unwrap()
            .is_none());
    }

    #[test]
    fn entries_leave_out_empty_fields_and_read_both_forms() {
        let e = TokenEntry::root(Utc::now());
        let short = serde_json::to_value(&e).unwrap();
        for k in [
            "parent",
            "meta",
            "role",
            "bound_cidrs",
            "last_renewal",
            "num_uses",
            "period",
        ] {
            assert!(short.get(k).is_none(), "{k} written: {short}");
        }
        assert_eq!(serde_json::from_value::<TokenEntry>(short).unwrap(), e);
        // the form written before (every field, empty ones as null, [] or 0) still reads
        let mut full = serde_json::to_value(&e).unwrap();
        let m = full.as_object_mut().unwrap();
        for k in [
            "parent",
            "meta",
            "role",
            "last_renewal",
            "expire_at",
            "max_expire_at",
        ] {
            m.insert(k.into(), serde_json::Value::Null);
        }
        m.insert("bound_cidrs".into(), serde_json::json!([]));
        for k in ["num_uses", "period", "explicit_max_ttl"] {
            m.insert(k.into(), serde_json::json!(0));
        }
        assert_eq!(serde_json::from_value::<TokenEntry>(full).unwrap(), e);
    }
}
