//! `sys/` endpoints: health, seal lifecycle, keyring rotation, mounts.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use serde_json::{json, Value};

use super::request::{self, Ctx, Op};
use super::response::{self, ApiError, ApiResult};
use super::{blocking, json_body, AppState};
use crate::core::vault::{decode_share, share_b64, share_hex};
use crate::core::Vault;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn code_override(ctx: &Ctx, name: &str, default: u16) -> Result<u16, ApiError> {
    match ctx.query(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| ApiError::bad(format!("invalid value for {name}: {v:?}"))),
    }
}

/// `GET|HEAD sys/health`: 200 active, 501 uninitialized, 503 sealed (query overrides).
pub fn health(ctx: &Ctx, vault: &Vault) -> ApiResult {
    if !matches!(ctx.op, Op::Read | Op::Head) {
        return Err(ApiError::method_not_allowed());
    }
    let st = vault.seal_status()?;
    let now = vault.now().timestamp();
    let (code, body) = if !st.initialized {
        (
            code_override(ctx, "uninitcode", 501)?,
            json!({"initialized": false, "sealed": true, "standby": true, "replication_performance_mode": "unknown",
                   "replication_dr_mode": "unknown", "server_time_utc": now, "version": VERSION}),
        )
    } else if st.sealed {
        (
            code_override(ctx, "sealedcode", 503)?,
            json!({"initialized": true, "sealed": true, "standby": true, "replication_performance_mode": "unknown",
                   "replication_dr_mode": "unknown", "server_time_utc": now, "version": VERSION}),
        )
    } else {
        (
            code_override(ctx, "activecode", 200)?,
            json!({"initialized": true, "sealed": false, "standby": false, "replication_performance_mode": "disabled",
                   "replication_dr_mode": "disabled", "server_time_utc": now, "version": VERSION,
                   "cluster_name": st.cluster_name, "cluster_id": st.cluster_id}),
        )
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    if ctx.op == Op::Head {
        return Ok(response::empty(status));
    }
    Ok(response::raw(status, &body))
}

fn seal_status_body(vault: &Vault) -> Result<Value, ApiError> {
    let s = vault.seal_status()?;
    let mut body = json!({
        "type": "shamir", "initialized": s.initialized, "sealed": s.sealed, "t": s.t, "n": s.n,
        "progress": s.progress, "nonce": s.nonce, "recovery_seal": false, "version": VERSION,
        "migration": false, "storage_type": "sled",
    });
    if s.initialized {
        body["cluster_name"] = json!(s.cluster_name);
        body["cluster_id"] = json!(s.cluster_id);
    }
    Ok(body)
}

pub fn seal_status(ctx: &Ctx, vault: &Vault) -> ApiResult {
    if ctx.op != Op::Read {
        return Err(ApiError::method_not_allowed());
    }
    Ok(response::raw(StatusCode::OK, &seal_status_body(vault)?))
}

/// `GET sys/init` tells; `PUT sys/init` initializes and returns the shares and root token once.
pub async fn init(req: &HttpRequest, ctx: &Ctx, payload: web::Payload, st: &AppState) -> ApiResult {
    match ctx.op {
        Op::Read => Ok(response::raw(
            StatusCode::OK,
            &json!({"initialized": st.vault.is_initialized()}),
        )),
        Op::Write => {
            let body = json_body(req, payload, st).await?;
            for unsupported in ["pgp_keys", "root_token_pgp_key", "recovery_pgp_keys"] {
                match body.get(unsupported) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) if s.is_empty() => {}
                    Some(Value::Array(a)) if a.is_empty() => {}
                    Some(_) => {
                        return Err(ApiError::bad(format!(
                            "{unsupported} is not supported by arca"
                        )))
                    }
                }
            }
            let shares = request::field_u64(&body, "secret_shares")?.unwrap_or(0);
            let threshold = request::field_u64(&body, "secret_threshold")?.unwrap_or(0);
            let vault = st.vault.clone();
            let out = blocking(move || {
                let out = vault.init(shares, threshold, None)?;
                // With an auto-unseal key configured the vault unseals at once, as it will at
                // every start.
                vault.auto_unseal()?;
                Ok(out)
            })
            .await?;
            let body = json!({
                "keys": out.keys.iter().map(|k| share_hex(k)).collect::<Vec<_>>(),
                "keys_base64": out.keys.iter().map(|k| share_b64(k)).collect::<Vec<_>>(),
                "root_token": out.root_token.as_str(),
            });
            Ok(response::raw(StatusCode::OK, &body))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `PUT sys/unseal` with `{"key": ...}` or `{"reset": true}`.
pub async fn unseal(
    req: &HttpRequest,
    ctx: &Ctx,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    if ctx.op != Op::Write {
        return Err(ApiError::method_not_allowed());
    }
    let body = json_body(req, payload, st).await?;
    let vault = st.vault.clone();
    if request::field_bool(&body, "reset")?.unwrap_or(false) {
        vault.unseal_reset()?;
        return Ok(response::raw(StatusCode::OK, &seal_status_body(&vault)?));
    }
    let key = match body.get("key") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::bad(
                "'key' must be specified in request body as JSON, or 'reset' set to true",
            ))
        }
    };
    let share = decode_share(&key)
        .ok_or_else(|| ApiError::bad("'key' must be a valid hex or base64 string"))?;
    drop(zeroize::Zeroizing::new(key));
    let v2 = vault.clone();
    blocking(move || v2.unseal(share)).await?;
    Ok(response::raw(StatusCode::OK, &seal_status_body(&vault)?))
}

/// `PUT sys/seal` on a sealed vault: nothing to do.
pub fn already_sealed(ctx: &Ctx) -> ApiResult {
    match ctx.op {
        Op::Write => Ok(response::no_content()),
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn mount_entry() -> Value {
    json!({
        "type": "kv", "options": {"version": "2"}, "description": "key/value secret storage",
        "accessor": "kv_secret", "uuid": "00000000-0000-0000-0000-00000000000a", "local": false,
        "seal_wrap": false, "external_entropy_access": false, "plugin_version": "",
        "running_plugin_version": concat!("v", env!("CARGO_PKG_VERSION"), "+builtin.arca"),
        "running_sha256": "", "deprecation_status": "supported",
        "config": {"default_lease_ttl": 0, "force_no_cache": false, "max_lease_ttl": 0}
    })
}

/// Authenticated `sys/` paths.
pub async fn route(
    req: &HttpRequest,
    ctx: &Ctx,
    rest: &str,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    let vault = st.vault.clone();
    match rest {
        "seal" => match ctx.op {
            Op::Write => {
                vault.seal();
                Ok(response::no_content())
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        "rotate" => match ctx.op {
            Op::Write => {
                let _ = json_body(req, payload, st).await?;
                blocking(move || vault.rotate_keyring()).await?;
                Ok(response::no_content())
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        "key-status" => match ctx.op {
            Op::Read => {
                let (term, installed, terms) = vault.key_status()?;
                let kr = vault.keyring()?;
                Ok(response::ok_with_top_level(json!({
                    "term": term, "install_time": installed, "terms": terms,
                    "encryption": kr.algorithm(),
                    // Vault's field: encryptions under the active term (here an upper bound
                    // after a restart; see the keyring's docs)
                    "encryptions": kr.encryptions(),
                })))
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        "mounts" => match ctx.op {
            Op::Read => Ok(response::ok_with_top_level(
                json!({ "secret/": mount_entry() }),
            )),
            _ => Err(ApiError::method_not_allowed()),
        },
        "mounts/secret" | "mounts/secret/" => match ctx.op {
            Op::Read => Ok(response::ok_with_top_level(mount_entry())),
            Op::Write => Err(ApiError::bad("path is already in use at secret/")),
            _ => Err(ApiError::method_not_allowed()),
        },
        "mounts/secret/tune" => match ctx.op {
            Op::Read => Ok(response::ok_with_top_level(json!({
                "default_lease_ttl": 2_764_800, "max_lease_ttl": 2_764_800, "force_no_cache": false,
                "description": "key/value secret storage", "options": {"version": "2"}
            }))),
            _ => Err(ApiError::method_not_allowed()),
        },
        p if p == "internal/ui/mounts/secret" || p.starts_with("internal/ui/mounts/secret/") => {
            match ctx.op {
                Op::Read => {
                    let mut e = mount_entry();
                    e["path"] = json!("secret/");
                    Ok(response::ok(e))
                }
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        p if p == "rotation" || p.starts_with("rotation/") => {
            super::rotation::sys_route(req, ctx, &p["rotation".len()..], payload, st).await
        }
        "roles" | "roles/reload" => super::roles::route(req, ctx, rest, payload, st).await,
        p if p == "auth" || p.starts_with("auth/") => {
            super::approle::sys_auth(req, ctx, rest, payload, st).await
        }
        _ => Err(ApiError::status(
            404,
            format!("no handler for route \"sys/{rest}\". route entry not found."),
        )),
    }
}
