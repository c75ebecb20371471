//! AppRole: roles with role_id / secret_id pairs that log in to short-lived orphan tokens.
//!
//! Store layout (role names and accessors in clear, credentials only as keyed HMACs):
//! - `approle/role/<name>`                         the role (encrypted)
//! - `approle/rid/<hmac(role_id) hex>`             -> role name
//! - `approle/sid/<role uuid>/<hmac(secret_id) hex>` a secret_id entry (encrypted)
//! - `approle/acc/<role uuid>/<accessor>`          -> hmac hex (accessor index)
//! - `approle/exp/<unix secs, 20 digits>/<role uuid>/<accessor>` expiry index, for tidy
//! - `approle/mount`                               the `sys/auth` entry (clear, no secret)
//!
//! Secret ids live under the role's random `uuid`, not its name: deleting a role and creating
//! one with the same name never revives the old secret ids.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::clock::rfc3339;
use super::crypto::{self, Location};
use super::error::{Error, Result};
use super::keyring::Keyring;
use super::policies::is_root_name;
use super::policy::normalize_name;
use super::token::{cidr_contains, normalize_cidrs, Issued, Issuer, TokenRequest, SYSTEM_MAX_TTL};
use super::vault::Vault;
use crate::store::Op;

const ROLE: &str = "approle/role/";
const RID: &str = "approle/rid/";
const SID: &str = "approle/sid/";
const ACC: &str = "approle/acc/";
const EXP: &str = "approle/exp/";
const MOUNT: &[u8] = b"approle/mount";

/// Keyring purposes (HKDF labels) of this module.
const PURPOSE_STORE: &str = "arca/approle/v1";
const PURPOSE_SECRET_ID_HMAC: &str = "arca/approle-secret-id/v1";
const PURPOSE_ROLE_ID_HMAC: &str = "arca/approle-role-id/v1";

/// The one answer to every credential failure at login, so a caller learns nothing about
/// which half was wrong.
pub const INVALID_CREDENTIALS: &str = "invalid role or secret ID";

/// Serializes use-counting and destruction of one secret_id (striped by its HMAC). Process-wide:
/// a stripe only ever guards a read-modify-write of one store record.
static SECRET_ID_LOCKS: [Mutex<()>; 64] = [const { Mutex::new(()) }; 64];
/// Serializes role writes, deletions and role_id changes (rare; keeps the role_id index exact).
static ROLE_LOCK: Mutex<()> = Mutex::new(());

/// An AppRole role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppRole {
    pub name: String,
    /// Random per role creation; secret ids are stored under it.
    pub uuid: String,
    pub role_id: String,
    pub bind_secret_id: bool,
    pub secret_id_bound_cidrs: Vec<String>,
    /// Uses of each new secret_id; 0 = unlimited.
    pub secret_id_num_uses: u64,
    /// Seconds each new secret_id lives; 0 = no expiry.
    pub secret_id_ttl: u64,
    pub local_secret_ids: bool,
    pub token_policies: Vec<String>,
    pub token_ttl: u64,
    pub token_max_ttl: u64,
    pub token_explicit_max_ttl: u64,
    pub token_num_uses: u64,
    pub token_period: u64,
    pub token_no_default_policy: bool,
    pub token_bound_cidrs: Vec<String>,
    pub token_type: String,
}

impl AppRole {
    /// The contract's `GET auth/approle/role/:name` data.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "bind_secret_id": self.bind_secret_id,
            "local_secret_ids": self.local_secret_ids,
            "secret_id_bound_cidrs": if self.secret_id_bound_cidrs.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::json!(self.secret_id_bound_cidrs)
            },
            "secret_id_num_uses": self.secret_id_num_uses,
            "secret_id_ttl": self.secret_id_ttl,
            "token_bound_cidrs": self.token_bound_cidrs,
            "token_explicit_max_ttl": self.token_explicit_max_ttl,
            "token_max_ttl": self.token_max_ttl,
            "token_no_default_policy": self.token_no_default_policy,
            "token_num_uses": self.token_num_uses,
            "token_period": self.token_period,
            "token_policies": self.token_policies,
            "token_strictly_bind_ip": false,
            "token_ttl": self.token_ttl,
            "token_type": self.token_type,
        })
    }

    /// The max TTL a login token gets (0 = the system max), and the TTL it starts with.
    fn token_ttls(&self) -> (u64, u64) {
        let max = [self.token_max_ttl, self.token_explicit_max_ttl]
            .into_iter()
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(0);
        let ttl = if self.token_ttl > 0 {
            self.token_ttl
        } else if max > 0 {
            max.min(SYSTEM_MAX_TTL)
        } else {
            SYSTEM_MAX_TTL
        };
        (max, ttl)
    }
}

/// A role write: `None` keeps the stored value (or the default for a new role).
#[derive(Debug, Clone, Default)]
pub struct RoleUpdate {
    pub role_id: Option<String>,
    pub bind_secret_id: Option<bool>,
    pub secret_id_bound_cidrs: Option<Vec<String>>,
    pub secret_id_num_uses: Option<u64>,
    pub secret_id_ttl: Option<u64>,
    pub local_secret_ids: Option<bool>,
    pub token_policies: Option<Vec<String>>,
    pub token_ttl: Option<u64>,
    pub token_max_ttl: Option<u64>,
    pub token_explicit_max_ttl: Option<u64>,
    pub token_num_uses: Option<u64>,
    pub token_period: Option<u64>,
    pub token_no_default_policy: Option<bool>,
    pub token_bound_cidrs: Option<Vec<String>>,
    pub token_type: Option<String>,
}

/// A stored secret_id (never the secret_id itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecretIdEntry {
    pub accessor: String,
    pub metadata: BTreeMap<String, String>,
    pub cidr_list: Vec<String>,
    pub token_bound_cidrs: Vec<String>,
    pub creation_time: DateTime<Utc>,
    pub expiration_time: Option<DateTime<Utc>>,
    pub last_updated_time: DateTime<Utc>,
    /// Remaining uses; 0 = unlimited.
    pub num_uses: u64,
    pub ttl: u64,
}

impl SecretIdEntry {
    fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expiration_time.is_some_and(|e| e <= now)
    }

    /// The data of `secret-id/lookup` and `secret-id-accessor/lookup`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "cidr_list": self.cidr_list,
            "creation_time": rfc3339(self.creation_time),
            "expiration_time": self
                .expiration_time
                .map(rfc3339)
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "last_updated_time": rfc3339(self.last_updated_time),
            "metadata": self.metadata,
            "secret_id_accessor": self.accessor,
            "secret_id_num_uses": self.num_uses,
            "secret_id_ttl": self.ttl,
            "token_bound_cidrs": self.token_bound_cidrs,
        })
    }
}

/// What a caller asks for when generating a secret_id.
#[derive(Debug, Clone, Default)]
pub struct SecretIdRequest {
    /// A caller-chosen secret_id (`custom-secret-id`); generated when `None`.
    pub secret_id: Option<Zeroizing<String>>,
    pub metadata: BTreeMap<String, String>,
    pub cidr_list: Vec<String>,
    pub token_bound_cidrs: Vec<String>,
    pub num_uses: Option<u64>,
    pub ttl: Option<u64>,
}

/// The `sys/auth` entry of the AppRole mount (no secret in it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthMount {
    pub accessor: String,
    pub uuid: String,
    pub description: String,
}

/// AppRole role names: 1-128 characters of `[a-z0-9_.@-]` (lowercased), as Vault's
/// `GenericNameRegex` allows, so they are safe as store-key and path segments.
pub fn normalize_role_name(name: &str) -> Result<String> {
    let n = name.trim().to_lowercase();
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@');
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if n.is_empty()
        || n.len() > 128
        || !n.chars().all(ok_char)
        || !edge(n.chars().next())
        || !edge(n.chars().last())
    {
        return Err(Error::bad(format!(
            "invalid role name {name:?}: 1-128 letters, digits, '_', '-', '.' or '@', starting and ending with a letter, digit or '_'"
        )));
    }
    Ok(n)
}

/// Every CIDR of `inner` lies inside some CIDR of `outer` (an empty `outer` allows all).
pub fn cidrs_within(inner: &[String], outer: &[String]) -> bool {
    if outer.is_empty() {
        return true;
    }
    inner.iter().all(|i| {
        let Ok(inet) = parse_net(i) else {
            return false;
        };
        outer
            .iter()
            .filter_map(|o| parse_net(o).ok())
            .any(|onet| onet.contains(&inet))
    })
}

fn parse_net(s: &str) -> std::result::Result<ipnet::IpNet, ()> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    s.parse::<ipnet::IpNet>().map_err(|_| ())
}

/// `remote` is inside one of `cidrs` (an empty list allows every address, none allows none).
fn remote_allowed(cidrs: &[String], remote: Option<IpAddr>) -> bool {
    if cidrs.is_empty() {
        return true;
    }
    remote.is_some_and(|ip| cidrs.iter().any(|c| cidr_contains(c, ip)))
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

fn lock_for(mac: &[u8; 32]) -> std::sync::MutexGuard<'static, ()> {
    let i = (u16::from_be_bytes([mac[0], mac[1]]) as usize) % SECRET_ID_LOCKS.len();
    SECRET_ID_LOCKS[i].lock().unwrap_or_else(|p| p.into_inner())
}

fn role_loc(name: &str) -> Location<'_> {
    Location::new("approle-role", "auth/approle", name, 0)
}

fn sid_path(role_uuid: &str, mac_hex: &str) -> String {
    format!("{role_uuid}/{mac_hex}")
}

fn sid_key(role_uuid: &str, mac_hex: &str) -> Vec<u8> {
    format!("{SID}{role_uuid}/{mac_hex}").into_bytes()
}

fn acc_key(role_uuid: &str, accessor: &str) -> Vec<u8> {
    format!("{ACC}{role_uuid}/{accessor}").into_bytes()
}

fn exp_key(at: DateTime<Utc>, role_uuid: &str, accessor: &str) -> Vec<u8> {
    format!("{EXP}{:020}/{role_uuid}/{accessor}", at.timestamp().max(0)).into_bytes()
}

fn secret_id_hmac(kr: &Keyring, secret_id: &str) -> [u8; 32] {
    crypto::hmac_sha256(
        &kr.stable_subkey(PURPOSE_SECRET_ID_HMAC),
        secret_id.as_bytes(),
    )
}

fn role_id_key(kr: &Keyring, role_id: &str) -> Vec<u8> {
    let mac = crypto::hmac_sha256(&kr.stable_subkey(PURPOSE_ROLE_ID_HMAC), role_id.as_bytes());
    format!("{RID}{}", hex::encode(mac)).into_bytes()
}

fn validate_role_id(id: &str) -> Result<()> {
    if id.trim().is_empty() {
        return Err(Error::bad("missing role_id"));
    }
    if id.len() > 256 || id.chars().any(|c| c.is_control()) {
        return Err(Error::bad(
            "invalid role_id: at most 256 characters, no control characters",
        ));
    }
    Ok(())
}

fn normalize_policies(list: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in list.iter().filter(|p| !p.trim().is_empty()) {
        if is_root_name(p) {
            return Err(Error::bad(
                "token_policies: the root policy cannot be granted by an AppRole login",
            ));
        }
        out.push(normalize_name(p)?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl Vault {
    /// Does the AppRole role exist (for create-versus-update ACL checks)?
    pub fn approle_role_exists(&self, name: &str) -> Result<bool> {
        self.keyring()?;
        let Ok(name) = normalize_role_name(name) else {
            return Ok(false);
        };
        Ok(self
            .store
            .get(format!("{ROLE}{name}").as_bytes())?
            .is_some())
    }

    pub fn approle_role_get(&self, name: &str) -> Result<Option<AppRole>> {
        let kr = self.keyring()?;
        let Ok(name) = normalize_role_name(name) else {
            return Ok(None);
        };
        self.role_load(&kr, &name)
    }

    fn role_load(&self, kr: &Keyring, name: &str) -> Result<Option<AppRole>> {
        let Some(env) = self.store.get(format!("{ROLE}{name}").as_bytes())? else {
            return Ok(None);
        };
        let json = kr.open(PURPOSE_STORE, &role_loc(name), &env)?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| internal(format!("approle role record: {e}")))
    }

    fn role_put_op(&self, kr: &Keyring, role: &AppRole) -> Result<Op> {
        let json = Zeroizing::new(serde_json::to_vec(role).map_err(internal)?);
        Ok(Op::Put(
            format!("{ROLE}{}", role.name).into_bytes(),
            kr.seal(PURPOSE_STORE, &role_loc(&role.name), &json),
        ))
    }

    /// Creates or updates a role. A new role gets a random role_id unless one is given.
    pub fn approle_role_write(&self, name: &str, upd: RoleUpdate) -> Result<AppRole> {
        self.role_write(name, upd, false)
    }

    /// `must_exist`: `NotFound` instead of creating (checked under the role lock).
    fn role_write(&self, name: &str, upd: RoleUpdate, must_exist: bool) -> Result<AppRole> {
        let kr = self.keyring()?;
        let name = normalize_role_name(name)?;
        let _g = ROLE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.role_load(&kr, &name)?;
        if must_exist && old.is_none() {
            return Err(Error::NotFound);
        }
        let mut r = old.clone().unwrap_or_else(|| AppRole {
            name: name.clone(),
            uuid: uuid::Uuid::new_v4().to_string(),
            role_id: uuid::Uuid::new_v4().to_string(),
            bind_secret_id: true,
            secret_id_bound_cidrs: Vec::new(),
            secret_id_num_uses: 0,
            secret_id_ttl: 0,
            local_secret_ids: false,
            token_policies: Vec::new(),
            token_ttl: 0,
            token_max_ttl: 0,
            token_explicit_max_ttl: 0,
            token_num_uses: 0,
            token_period: 0,
            token_no_default_policy: false,
            token_bound_cidrs: Vec::new(),
            token_type: "default".into(),
        });
        if let Some(v) = upd.bind_secret_id {
            r.bind_secret_id = v;
        }
        if let Some(v) = &upd.secret_id_bound_cidrs {
            r.secret_id_bound_cidrs = normalize_cidrs(v)?;
        }
        if let Some(v) = upd.secret_id_num_uses {
            r.secret_id_num_uses = v;
        }
        if let Some(v) = upd.secret_id_ttl {
            r.secret_id_ttl = v;
        }
        if let Some(v) = upd.local_secret_ids {
            // Vault: only settable at creation.
            if old.is_none() {
                r.local_secret_ids = v;
            }
        }
        if let Some(v) = &upd.token_policies {
            r.token_policies = normalize_policies(v)?;
        }
        if let Some(v) = upd.token_ttl {
            r.token_ttl = v;
        }
        if let Some(v) = upd.token_max_ttl {
            r.token_max_ttl = v;
        }
        if let Some(v) = upd.token_explicit_max_ttl {
            r.token_explicit_max_ttl = v;
        }
        if let Some(v) = upd.token_num_uses {
            r.token_num_uses = v;
        }
        if let Some(v) = upd.token_period {
            r.token_period = v;
        }
        if let Some(v) = upd.token_no_default_policy {
            r.token_no_default_policy = v;
        }
        if let Some(v) = &upd.token_bound_cidrs {
            r.token_bound_cidrs = normalize_cidrs(v)?;
        }
        if let Some(t) = &upd.token_type {
            r.token_type = match t.trim() {
                "" | "default" => "default".into(),
                "service" | "default-service" => "service".into(),
                "batch" | "default-batch" => {
                    return Err(Error::bad(
                        "token_type \"batch\" is not supported (only service tokens)",
                    ))
                }
                other => return Err(Error::bad(format!("invalid 'token_type' value {other:?}"))),
            };
        }
        if r.token_max_ttl > 0 && r.token_ttl > r.token_max_ttl {
            return Err(Error::bad(
                "token_ttl should not be greater than token_max_ttl",
            ));
        }
        if r.token_ttl > SYSTEM_MAX_TTL || r.token_max_ttl > SYSTEM_MAX_TTL {
            return Err(Error::bad(format!(
                "token_ttl and token_max_ttl cannot exceed the system max TTL of {SYSTEM_MAX_TTL} seconds"
            )));
        }
        if !r.bind_secret_id && r.secret_id_bound_cidrs.is_empty() && r.token_bound_cidrs.is_empty()
        {
            return Err(Error::bad(
                "at least one constraint should be enabled on the role",
            ));
        }

        let mut ops = Vec::new();
        if let Some(id) = upd
            .role_id
            .map(|id| id.trim().to_string())
            .filter(|id| Some(id) != old.as_ref().map(|o| &o.role_id))
        {
            validate_role_id(&id)?;
            let new_key = role_id_key(&kr, &id);
            if self.store.get(&new_key)?.is_some() {
                return Err(Error::bad("role_id already in use"));
            }
            if let Some(o) = &old {
                ops.push(Op::Delete(role_id_key(&kr, &o.role_id)));
            }
            r.role_id = id;
        }
        ops.push(Op::Put(
            role_id_key(&kr, &r.role_id),
            name.clone().into_bytes(),
        ));
        ops.push(self.role_put_op(&kr, &r)?);
        self.store.batch(ops)?;
        self.store.sync()?;
        Ok(r)
    }

    /// Sets a role's role_id (`POST role/:name/role-id`). `NotFound` when the role is missing.
    pub fn approle_set_role_id(&self, name: &str, role_id: &str) -> Result<()> {
        validate_role_id(role_id)?;
        self.role_write(
            name,
            RoleUpdate {
                role_id: Some(role_id.to_string()),
                ..Default::default()
            },
            true,
        )
        .map(|_| ())
    }

    /// Deletes a role, its role_id and every secret_id it issued. Absent: no-op.
    pub fn approle_role_delete(&self, name: &str) -> Result<()> {
        let kr = self.keyring()?;
        let Ok(name) = normalize_role_name(name) else {
            return Ok(());
        };
        let _g = ROLE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let Some(role) = self.role_load(&kr, &name)? else {
            return Ok(());
        };
        let mut ops = vec![
            Op::Delete(format!("{ROLE}{name}").into_bytes()),
            Op::Delete(role_id_key(&kr, &role.role_id)),
        ];
        // Expiry index entries left behind are dropped by tidy (their accessor is gone).
        for prefix in [
            format!("{SID}{}/", role.uuid),
            format!("{ACC}{}/", role.uuid),
        ] {
            ops.extend(
                self.store
                    .keys_with_prefix(prefix.as_bytes())?
                    .into_iter()
                    .map(Op::Delete),
            );
        }
        self.store.batch(ops)?;
        self.store.sync()?;
        Ok(())
    }

    pub fn approle_role_list(&self) -> Result<Vec<String>> {
        self.keyring()?;
        Ok(self
            .store
            .keys_with_prefix(ROLE.as_bytes())?
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k[ROLE.len()..]).into_owned())
            .collect())
    }

    // ------------------------------------------------------------------ secret ids

    fn sid_load(
        &self,
        kr: &Keyring,
        role_uuid: &str,
        mac: &[u8; 32],
    ) -> Result<Option<SecretIdEntry>> {
        let mac_hex = hex::encode(mac);
        let Some(env) = self.store.get(&sid_key(role_uuid, &mac_hex))? else {
            return Ok(None);
        };
        let path = sid_path(role_uuid, &mac_hex);
        let json = kr.open(
            PURPOSE_STORE,
            &Location::new("approle-secret-id", "auth/approle", &path, 0),
            &env,
        )?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| internal(format!("approle secret_id record: {e}")))
    }

    fn sid_put_op(
        &self,
        kr: &Keyring,
        role_uuid: &str,
        mac: &[u8; 32],
        e: &SecretIdEntry,
    ) -> Result<Op> {
        let mac_hex = hex::encode(mac);
        let path = sid_path(role_uuid, &mac_hex);
        let json = Zeroizing::new(serde_json::to_vec(e).map_err(internal)?);
        Ok(Op::Put(
            sid_key(role_uuid, &mac_hex),
            kr.seal(
                PURPOSE_STORE,
                &Location::new("approle-secret-id", "auth/approle", &path, 0),
                &json,
            ),
        ))
    }

    fn sid_delete_ops(role_uuid: &str, mac: &[u8; 32], e: &SecretIdEntry) -> Vec<Op> {
        let mut ops = vec![
            Op::Delete(sid_key(role_uuid, &hex::encode(mac))),
            Op::Delete(acc_key(role_uuid, &e.accessor)),
        ];
        if let Some(at) = e.expiration_time {
            ops.push(Op::Delete(exp_key(at, role_uuid, &e.accessor)));
        }
        ops
    }

    fn mac_of_sid_accessor(&self, role_uuid: &str, accessor: &str) -> Result<Option<[u8; 32]>> {
        if accessor.is_empty() || accessor.contains('/') {
            return Ok(None);
        }
        let Some(h) = self.store.get(&acc_key(role_uuid, accessor))? else {
            return Ok(None);
        };
        let raw = hex::decode(&h).map_err(|_| internal("approle accessor index corrupt"))?;
        raw.try_into()
            .map(Some)
            .map_err(|_| internal("approle accessor index corrupt"))
    }

    /// Generates (or stores a caller-chosen) secret_id for `role`. Returns the secret_id, shown
    /// once, and its entry.
    pub fn approle_secret_id_create(
        &self,
        role: &AppRole,
        req: SecretIdRequest,
    ) -> Result<(Zeroizing<String>, SecretIdEntry)> {
        let kr = self.keyring()?;
        let now = self.now();
        let cidr_list = normalize_cidrs(&req.cidr_list)?;
        if !cidrs_within(&cidr_list, &role.secret_id_bound_cidrs) {
            return Err(Error::bad(
                "failed to validate CIDR blocks: cidr_list must be a subset of the role's secret_id_bound_cidrs",
            ));
        }
        let token_bound_cidrs = normalize_cidrs(&req.token_bound_cidrs)?;
        if !cidrs_within(&token_bound_cidrs, &role.token_bound_cidrs) {
            return Err(Error::bad(
                "failed to validate CIDR blocks: token_bound_cidrs must be a subset of the role's token_bound_cidrs",
            ));
        }
        let num_uses = match req.num_uses {
            None => role.secret_id_num_uses,
            Some(n) => {
                if role.secret_id_num_uses > 0 && (n == 0 || n > role.secret_id_num_uses) {
                    return Err(Error::bad(
                        "num_uses cannot be higher than the role's secret_id_num_uses",
                    ));
                }
                n
            }
        };
        let ttl = match req.ttl {
            None => role.secret_id_ttl,
            Some(t) => {
                if role.secret_id_ttl > 0 && (t == 0 || t > role.secret_id_ttl) {
                    return Err(Error::bad(
                        "ttl cannot be longer than the role's secret_id_ttl",
                    ));
                }
                t
            }
        };
        let secret_id = match req.secret_id {
            Some(s) if !s.trim().is_empty() => s,
            Some(_) => return Err(Error::bad("missing secret_id")),
            None => Zeroizing::new(uuid::Uuid::new_v4().to_string()),
        };
        let mac = secret_id_hmac(&kr, &secret_id);
        let entry = SecretIdEntry {
            accessor: uuid::Uuid::new_v4().to_string(),
            metadata: req.metadata,
            cidr_list,
            token_bound_cidrs,
            creation_time: now,
            expiration_time: (ttl > 0).then(|| now + Duration::seconds(ttl as i64)),
            last_updated_time: now,
            num_uses,
            ttl,
        };
        let _g = lock_for(&mac);
        if self.sid_load(&kr, &role.uuid, &mac)?.is_some() {
            return Err(Error::bad("secret_id is already registered"));
        }
        let mut ops = vec![
            self.sid_put_op(&kr, &role.uuid, &mac, &entry)?,
            Op::Put(
                acc_key(&role.uuid, &entry.accessor),
                hex::encode(mac).into_bytes(),
            ),
        ];
        if let Some(at) = entry.expiration_time {
            ops.push(Op::Put(
                exp_key(at, &role.uuid, &entry.accessor),
                Vec::new(),
            ));
        }
        self.store.batch(ops)?;
        self.store.sync()?;
        Ok((secret_id, entry))
    }

    /// Looks a secret_id of `role` up without consuming a use. Expired: `None`.
    pub fn approle_secret_id_lookup(
        &self,
        role: &AppRole,
        secret_id: &str,
    ) -> Result<Option<SecretIdEntry>> {
        let kr = self.keyring()?;
        let mac = secret_id_hmac(&kr, secret_id);
        Ok(self
            .sid_load(&kr, &role.uuid, &mac)?
            .filter(|e| !e.expired(self.now())))
    }

    pub fn approle_secret_id_lookup_accessor(
        &self,
        role: &AppRole,
        accessor: &str,
    ) -> Result<Option<SecretIdEntry>> {
        let kr = self.keyring()?;
        let Some(mac) = self.mac_of_sid_accessor(&role.uuid, accessor)? else {
            return Ok(None);
        };
        Ok(self
            .sid_load(&kr, &role.uuid, &mac)?
            .filter(|e| !e.expired(self.now())))
    }

    /// Destroys a secret_id of `role`; unknown: no-op.
    pub fn approle_secret_id_destroy(&self, role: &AppRole, secret_id: &str) -> Result<()> {
        let kr = self.keyring()?;
        let mac = secret_id_hmac(&kr, secret_id);
        self.sid_destroy_mac(&kr, &role.uuid, &mac).map(|_| ())
    }

    /// Destroys by accessor; `Ok(false)` when there is no such accessor.
    pub fn approle_secret_id_destroy_accessor(
        &self,
        role: &AppRole,
        accessor: &str,
    ) -> Result<bool> {
        let kr = self.keyring()?;
        let Some(mac) = self.mac_of_sid_accessor(&role.uuid, accessor)? else {
            return Ok(false);
        };
        if !self.sid_destroy_mac(&kr, &role.uuid, &mac)? {
            // A dangling accessor index entry: drop it too.
            self.store.delete(&acc_key(&role.uuid, accessor))?;
            self.store.sync()?;
        }
        Ok(true)
    }

    fn sid_destroy_mac(&self, kr: &Keyring, role_uuid: &str, mac: &[u8; 32]) -> Result<bool> {
        let _g = lock_for(mac);
        let Some(e) = self.sid_load(kr, role_uuid, mac)? else {
            return Ok(false);
        };
        self.store.batch(Self::sid_delete_ops(role_uuid, mac, &e))?;
        self.store.sync()?;
        Ok(true)
    }

    /// Accessors of the secret_ids of `role`, sorted.
    pub fn approle_secret_id_list(&self, role: &AppRole) -> Result<Vec<String>> {
        self.keyring()?;
        let prefix = format!("{ACC}{}/", role.uuid);
        Ok(self
            .store
            .keys_with_prefix(prefix.as_bytes())?
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect())
    }

    // ------------------------------------------------------------------ login

    /// Logs in with `role_id` and `secret_id` from `remote`: an orphan token with the role's
    /// token settings. Every credential failure is the same `400 invalid role or secret ID`;
    /// a use of the secret_id is consumed durably (and exactly, under concurrency) before the
    /// token is issued.
    pub fn approle_login(
        &self,
        role_id: &str,
        secret_id: &str,
        remote: Option<IpAddr>,
    ) -> Result<Issued> {
        let issued = self.approle_login_unsynced(role_id, secret_id, remote)?;
        self.store.sync()?;
        Ok(issued)
    }

    /// `approle_login` without the final sync (of the secret_id use and the token): the
    /// caller syncs the store before it hands the token out. No blocking I/O besides
    /// store reads.
    pub fn approle_login_unsynced(
        &self,
        role_id: &str,
        secret_id: &str,
        remote: Option<IpAddr>,
    ) -> Result<Issued> {
        let kr = self.keyring()?;
        let role_id = role_id.trim();
        if role_id.is_empty() {
            return Err(Error::bad("missing role_id"));
        }
        let invalid = || Error::bad(INVALID_CREDENTIALS);
        let Some(name) = self.store.get(&role_id_key(&kr, role_id))? else {
            return Err(invalid());
        };
        let name =
            String::from_utf8(name).map_err(|_| internal("approle role_id index corrupt"))?;
        let role = self.role_load(&kr, &name)?.ok_or_else(invalid)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            role.role_id.as_bytes(),
            role_id.as_bytes(),
        )) {
            return Err(invalid());
        }
        let now = self.now();

        let mut meta = BTreeMap::new();
        let mut token_cidrs = role.token_bound_cidrs.clone();
        let mut consume = None;
        if role.bind_secret_id {
            let secret_id = secret_id.trim();
            if secret_id.is_empty() {
                return Err(Error::bad("missing secret_id"));
            }
            let mac = secret_id_hmac(&kr, secret_id);
            let entry = self.sid_load(&kr, &role.uuid, &mac)?.ok_or_else(invalid)?;
            if entry.expired(now) {
                return Err(invalid());
            }
            if !cidrs_within(&entry.cidr_list, &role.secret_id_bound_cidrs) {
                return Err(Error::bad(
                    "failed to verify the CIDR restrictions set on the secret ID: not a subset of the role's",
                ));
            }
            if !remote_allowed(&entry.cidr_list, remote) {
                return Err(Error::bad(format!(
                    "source address {:?} unauthorized through CIDR restrictions on the secret ID",
                    remote.map(|r| r.to_string()).unwrap_or_default()
                )));
            }
            if !entry.token_bound_cidrs.is_empty() {
                token_cidrs = entry.token_bound_cidrs.clone();
            }
            meta = entry.metadata.clone();
            if entry.num_uses > 0 {
                consume = Some(mac);
            }
        }
        if !remote_allowed(&role.secret_id_bound_cidrs, remote) {
            return Err(Error::bad(format!(
                "source address {:?} unauthorized through CIDR restrictions on the role",
                remote.map(|r| r.to_string()).unwrap_or_default()
            )));
        }
        if !remote_allowed(&token_cidrs, remote) {
            // The token could not be used from here anyway; issue none.
            return Err(Error::BadToken);
        }

        if let Some(mac) = consume {
            // Re-read under the lock: another login may have used the last use meanwhile.
            let _g = lock_for(&mac);
            let mut e = self.sid_load(&kr, &role.uuid, &mac)?.ok_or_else(invalid)?;
            if e.expired(self.now()) {
                return Err(invalid());
            }
            let ops = if e.num_uses <= 1 {
                Self::sid_delete_ops(&role.uuid, &mac, &e)
            } else {
                e.num_uses -= 1;
                e.last_updated_time = self.now();
                vec![self.sid_put_op(&kr, &role.uuid, &mac, &e)?]
            };
            // Durable with the token, before it is handed out (the caller's sync).
            self.store.batch(ops)?;
        }

        meta.insert("role_name".into(), role.name.clone());
        let (max, ttl) = role.token_ttls();
        let period = role.token_period;
        let treq = TokenRequest {
            policies: Some(role.token_policies.clone()),
            ttl: Some(if period > 0 { period } else { ttl }),
            // Periodic tokens are bounded only by an explicit max (as Vault does).
            explicit_max_ttl: if period > 0 {
                (role.token_explicit_max_ttl > 0).then_some(role.token_explicit_max_ttl)
            } else {
                (max > 0).then_some(max)
            },
            num_uses: role.token_num_uses,
            renewable: Some(true),
            no_parent: true,
            no_default_policy: role.token_no_default_policy,
            meta: Some(meta),
            display_name: None,
            period: (period > 0).then_some(period),
            bound_cidrs: token_cidrs,
        };
        self.token_create_unsynced(
            &Issuer {
                parent: None,
                privileged: false,
                path: "auth/approle/login".into(),
                auth_method: "approle",
            },
            treq,
            None,
        )
    }

    /// Removes every expired secret_id; returns how many were removed.
    pub fn approle_tidy(&self) -> Result<usize> {
        let kr = self.keyring()?;
        let now = self.now();
        let mut n = 0;
        // The expiry index up to now only: keys are `<EXP><20-digit unix secs>/...`.
        let upto = format!("{EXP}{:020}", now.timestamp().max(0) + 1);
        for k in self.store.keys_in_range(EXP.as_bytes(), upto.as_bytes())? {
            let rest = String::from_utf8_lossy(&k[EXP.len()..]).into_owned();
            let mut parts = rest.splitn(3, '/');
            let (Some(secs), Some(role_uuid), Some(acc)) =
                (parts.next(), parts.next(), parts.next())
            else {
                self.store.delete(&k)?;
                continue;
            };
            let Ok(secs) = secs.parse::<i64>() else {
                self.store.delete(&k)?;
                continue;
            };
            if secs > now.timestamp() {
                break; // keys are ordered by expiry
            }
            match self.mac_of_sid_accessor(role_uuid, acc)? {
                Some(mac) => {
                    let _g = lock_for(&mac);
                    let ops = match self.sid_load(&kr, role_uuid, &mac)? {
                        Some(e) if e.expired(now) => {
                            n += 1;
                            Self::sid_delete_ops(role_uuid, &mac, &e)
                        }
                        // Expires later within this second: the next tidy takes it.
                        Some(_) => continue,
                        None => vec![Op::Delete(k.clone()), Op::Delete(acc_key(role_uuid, acc))],
                    };
                    self.store.batch(ops)?;
                }
                None => self.store.delete(&k)?,
            }
        }
        self.store.sync()?;
        if n > 0 {
            tracing::info!(secret_ids = n, "expired AppRole secret_ids tidied");
        }
        Ok(n)
    }

    // ------------------------------------------------------------------ sys/auth

    /// The `sys/auth` entry of `approle/`, when it was enabled. AppRole works either way.
    pub fn approle_mount(&self) -> Result<Option<AuthMount>> {
        self.keyring()?;
        match self.store.get(MOUNT)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| internal(format!("approle mount record: {e}"))),
        }
    }

    /// Enables `approle/` in `sys/auth`; `path is already in use` the second time.
    pub fn approle_enable(&self, description: &str) -> Result<AuthMount> {
        let _g = ROLE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        if self.approle_mount()?.is_some() {
            return Err(Error::bad("path is already in use at approle/"));
        }
        let m = AuthMount {
            accessor: format!(
                "auth_approle_{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            uuid: uuid::Uuid::new_v4().to_string(),
            description: description.to_string(),
        };
        self.store
            .put(MOUNT, &serde_json::to_vec(&m).map_err(internal)?)?;
        self.store.sync()?;
        Ok(m)
    }

    /// Disables `approle/` as Vault does: every role and secret_id is removed.
    pub fn approle_disable(&self) -> Result<()> {
        self.keyring()?;
        for name in self.approle_role_list()? {
            self.approle_role_delete(&name)?;
        }
        let _g = ROLE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut ops: Vec<Op> = Vec::new();
        for prefix in [RID, SID, ACC, EXP] {
            ops.extend(
                self.store
                    .keys_with_prefix(prefix.as_bytes())?
                    .into_iter()
                    .map(Op::Delete),
            );
        }
        ops.push(Op::Delete(MOUNT.to_vec()));
        self.store.batch(ops)?;
        self.store.sync()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::ManualClock;
    use crate::core::crypto::{Algorithm, Key};
    use crate::store::sled::SledStore;
    use crate::store::Store;
    use std::sync::Arc;

    struct F {
        v: Arc<Vault>,
        clock: Arc<ManualClock>,
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
        drop(v.init(1, 1, Some("root-tok")).unwrap());
        v.auto_unseal().unwrap();
        F {
            v: Arc::new(v),
            clock,
            _d: d,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn local() -> Option<IpAddr> {
        Some("127.0.0.1".parse().unwrap())
    }

    #[test]
    fn role_names() {
        assert_eq!(normalize_role_name(" ML-Train_1 ").unwrap(), "ml-train_1");
        assert_eq!(normalize_role_name("a.b@c").unwrap(), "a.b@c");
        for bad in ["", "a/b", "-x", "x-", "a b", "a\tb", &"a".repeat(129)] {
            assert!(normalize_role_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cidr_subsets() {
        assert!(cidrs_within(
            &s(&["10.1.0.0/16", "10.2.3.4"]),
            &s(&["10.0.0.0/8"])
        ));
        assert!(!cidrs_within(&s(&["11.0.0.1"]), &s(&["10.0.0.0/8"])));
        assert!(!cidrs_within(&s(&["10.0.0.0/7"]), &s(&["10.0.0.0/8"])));
        assert!(cidrs_within(&s(&["1.2.3.4"]), &[]));
        assert!(cidrs_within(&[], &s(&["10.0.0.0/8"])));
        assert!(remote_allowed(&[], None));
        assert!(!remote_allowed(&s(&["127.0.0.1"]), None));
        assert!(remote_allowed(&s(&["127.0.0.0/8"]), local()));
    }

    #[test]
    fn token_ttls_from_role() {
        let f = fixture();
        let r =
            f.v.approle_role_write(
                "r",
                RoleUpdate {
                    token_ttl: Some(600),
                    token_max_ttl: Some(1800),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(r.token_ttls(), (1800, 600));
        let r =
            f.v.approle_role_write(
                "r",
                RoleUpdate {
                    token_ttl: Some(0),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(r.token_ttls(), (1800, 1800));
        let r =
            f.v.approle_role_write(
                "r",
                RoleUpdate {
                    token_max_ttl: Some(0),
                    token_explicit_max_ttl: Some(90),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(r.token_ttls(), (90, 90));
        assert!(f
            .v
            .approle_role_write(
                "r",
                RoleUpdate {
                    token_ttl: Some(100),
                    token_max_ttl: Some(50),
                    ..Default::default()
                }
            )
            .is_err());
    }

    #[test]
    fn role_crud_and_role_id() {
        let f = fixture();
        assert!(!f.v.approle_role_exists("ml").unwrap());
        let r =
            f.v.approle_role_write(
                "ML",
                RoleUpdate {
                    token_policies: Some(s(&["dbread", "Default", "dbread"])),
                    token_bound_cidrs: Some(s(&["127.0.0.1/32"])),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(r.name, "ml");
        assert_eq!(r.token_policies, s(&["dbread", "default"]));
        assert_eq!(r.token_bound_cidrs, s(&["127.0.0.1"]));
        assert!(f.v.approle_role_exists("Ml").unwrap());
        // role_id is stable across updates
        let r2 =
            f.v.approle_role_write(
                "ml",
                RoleUpdate {
                    token_ttl: Some(60),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(r.role_id, r2.role_id);
        assert_eq!(r2.token_policies, s(&["dbread", "default"]));
        // custom role_id, unique across roles
        f.v.approle_set_role_id("ml", "my-role-id").unwrap();
        assert_eq!(
            f.v.approle_role_get("ml").unwrap().unwrap().role_id,
            "my-role-id"
        );
        f.v.approle_role_write("other", RoleUpdate::default())
            .unwrap();
        assert!(matches!(
            f.v.approle_set_role_id("other", "my-role-id"),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            f.v.approle_set_role_id("nope", "x"),
            Err(Error::NotFound)
        ));
        assert_eq!(f.v.approle_role_list().unwrap(), s(&["ml", "other"]));
        // root can never be granted; bind_secret_id=false needs a CIDR constraint
        assert!(f
            .v
            .approle_role_write(
                "x",
                RoleUpdate {
                    token_policies: Some(s(&["Root"])),
                    ..Default::default()
                }
            )
            .is_err());
        assert!(f
            .v
            .approle_role_write(
                "x",
                RoleUpdate {
                    bind_secret_id: Some(false),
                    ..Default::default()
                }
            )
            .is_err());
        f.v.approle_role_delete("ml").unwrap();
        assert!(f.v.approle_role_get("ml").unwrap().is_none());
        assert!(f.v.approle_login("my-role-id", "x", local()).is_err());
    }

    #[test]
    fn login_consumes_uses_exactly_and_secret_ids_die_with_their_role() {
        let f = fixture();
        let role =
            f.v.approle_role_write(
                "ml",
                RoleUpdate {
                    token_policies: Some(s(&["dbread"])),
                    token_ttl: Some(600),
                    token_max_ttl: Some(1200),
                    secret_id_num_uses: Some(1),
                    ..Default::default()
                },
            )
            .unwrap();
        let mut md = BTreeMap::new();
        md.insert("job".to_string(), "etl".to_string());
        let (sid, entry) =
            f.v.approle_secret_id_create(
                &role,
                SecretIdRequest {
                    metadata: md,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(entry.num_uses, 1);
        assert_eq!(
            f.v.approle_secret_id_list(&role).unwrap(),
            vec![entry.accessor.clone()]
        );
        let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hs: Vec<_> = (0..20)
            .map(|_| {
                let (v, rid, sid, ok) = (
                    f.v.clone(),
                    role.role_id.clone(),
                    sid.to_string(),
                    ok.clone(),
                );
                std::thread::spawn(move || match v.approle_login(&rid, &sid, local()) {
                    Ok(t) => {
                        assert_eq!(t.entry.policies, s(&["dbread", "default"]));
                        assert_eq!(t.entry.ttl, 600);
                        assert!(t.entry.orphan);
                        assert_eq!(t.entry.display_name, "approle");
                        assert_eq!(t.entry.path, "auth/approle/login");
                        let m = t.entry.meta.unwrap();
                        assert_eq!(m["role_name"], "ml");
                        assert_eq!(m["job"], "etl");
                        ok.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(Error::BadRequest(m)) => assert_eq!(m, INVALID_CREDENTIALS),
                    Err(e) => panic!("{e:?}"),
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(ok.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(f.v.approle_secret_id_list(&role).unwrap().is_empty());

        // a secret_id does not survive its role being recreated under the same name
        let (sid2, _) =
            f.v.approle_secret_id_create(&role, SecretIdRequest::default())
                .unwrap();
        f.v.approle_role_delete("ml").unwrap();
        let again = f.v.approle_role_write("ml", RoleUpdate::default()).unwrap();
        f.v.approle_set_role_id("ml", &role.role_id).unwrap();
        assert!(f
            .v
            .approle_secret_id_lookup(&again, &sid2)
            .unwrap()
            .is_none());
        assert!(f.v.approle_login(&role.role_id, &sid2, local()).is_err());
    }

    #[test]
    fn expiry_tidy_cidrs_and_errors() {
        let f = fixture();
        let role =
            f.v.approle_role_write(
                "ml",
                RoleUpdate {
                    secret_id_ttl: Some(60),
                    ..Default::default()
                },
            )
            .unwrap();
        let (sid, e) =
            f.v.approle_secret_id_create(&role, SecretIdRequest::default())
                .unwrap();
        assert_eq!(e.ttl, 60);
        assert!(f.v.approle_secret_id_lookup(&role, &sid).unwrap().is_some());
        assert!(f
            .v
            .approle_secret_id_lookup_accessor(&role, &e.accessor)
            .unwrap()
            .is_some());
        // longer than the role allows
        assert!(f
            .v
            .approle_secret_id_create(
                &role,
                SecretIdRequest {
                    ttl: Some(120),
                    ..Default::default()
                }
            )
            .is_err());
        f.clock.advance(Duration::seconds(61));
        assert!(matches!(
            f.v.approle_login(&role.role_id, &sid, local()),
            Err(Error::BadRequest(m)) if m == INVALID_CREDENTIALS
        ));
        assert_eq!(f.v.approle_tidy().unwrap(), 1);
        assert!(f.v.approle_secret_id_list(&role).unwrap().is_empty());
        assert_eq!(f.v.approle_tidy().unwrap(), 0);

        // missing fields
        assert!(
            matches!(f.v.approle_login("", "x", local()), Err(Error::BadRequest(m)) if m == "missing role_id")
        );
        assert!(
            matches!(f.v.approle_login(&role.role_id, " ", local()), Err(Error::BadRequest(m)) if m == "missing secret_id")
        );
        assert!(
            matches!(f.v.approle_login("nope", "x", local()), Err(Error::BadRequest(m)) if m == INVALID_CREDENTIALS)
        );

        // CIDRs: the role's secret_id_bound_cidrs, then token_bound_cidrs
        let bound =
            f.v.approle_role_write(
                "bound",
                RoleUpdate {
                    secret_id_bound_cidrs: Some(s(&["10.0.0.0/8"])),
                    ..Default::default()
                },
            )
            .unwrap();
        let (sid, _) =
            f.v.approle_secret_id_create(&bound, SecretIdRequest::default())
                .unwrap();
        assert!(matches!(
            f.v.approle_login(&bound.role_id, &sid, local()),
            Err(Error::BadRequest(_))
        ));
        assert!(f
            .v
            .approle_login(&bound.role_id, &sid, Some("10.1.2.3".parse().unwrap()))
            .is_ok());
        assert!(f
            .v
            .approle_secret_id_create(
                &bound,
                SecretIdRequest {
                    cidr_list: s(&["192.168.0.0/16"]),
                    ..Default::default()
                }
            )
            .is_err());
        let tb =
            f.v.approle_role_write(
                "tb",
                RoleUpdate {
                    token_bound_cidrs: Some(s(&["10.0.0.0/8"])),
                    ..Default::default()
                },
            )
            .unwrap();
        let (sid, _) =
            f.v.approle_secret_id_create(&tb, SecretIdRequest::default())
                .unwrap();
        assert!(matches!(
            f.v.approle_login(&tb.role_id, &sid, local()),
            Err(Error::BadToken)
        ));
        let t =
            f.v.approle_login(&tb.role_id, &sid, Some("10.9.9.9".parse().unwrap()))
                .unwrap();
        assert_eq!(t.entry.bound_cidrs, s(&["10.0.0.0/8"]));

        // destroy by secret_id and by accessor
        let (a, _) =
            f.v.approle_secret_id_create(&role, SecretIdRequest::default())
                .unwrap();
        let (_, be) =
            f.v.approle_secret_id_create(&role, SecretIdRequest::default())
                .unwrap();
        f.v.approle_secret_id_destroy(&role, &a).unwrap();
        assert!(f
            .v
            .approle_secret_id_destroy_accessor(&role, &be.accessor)
            .unwrap());
        assert!(!f
            .v
            .approle_secret_id_destroy_accessor(&role, &be.accessor)
            .unwrap());
        assert!(f.v.approle_secret_id_list(&role).unwrap().is_empty());
    }

    #[test]
    fn mount_enable_once() {
        let f = fixture();
        assert!(f.v.approle_mount().unwrap().is_none());
        let m = f.v.approle_enable("").unwrap();
        assert!(m.accessor.starts_with("auth_approle_"));
        assert!(matches!(f.v.approle_enable(""), Err(Error::BadRequest(_))));
        f.v.approle_role_write("ml", RoleUpdate::default()).unwrap();
        f.v.approle_disable().unwrap();
        assert!(f.v.approle_role_list().unwrap().is_empty());
        assert!(f.v.approle_enable("").is_ok());
    }
}
