//! `auth/approle/...` endpoints, and `sys/auth` (where AppRole shows as enabled).
//!
//! AppRole is always mounted at `approle/` (like KV at `secret/`): the dev server, the CLI and
//! tests need no enabling step. `POST sys/auth/approle` is still accepted once (204, then
//! `path is already in use`) so clients that enable it first work unchanged, and it makes
//! `approle/` show in `GET sys/auth`.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::request::{self, Ctx, Op};
use super::response::{self, ApiError, ApiResult};
use super::token::field_list;
use super::{blocking, json_body, AppState, Caller};
use crate::core::approle::{AppRole, RoleUpdate, SecretIdRequest};
use crate::core::Error;

/// `POST auth/approle/login` (unauthenticated).
pub async fn login(
    req: &HttpRequest,
    ctx: &Ctx,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    if ctx.op != Op::Write {
        return Err(ApiError::method_not_allowed());
    }
    let b = json_body(req, payload, st).await?;
    let role_id = Zeroizing::new(request::field_string(&b, "role_id")?.unwrap_or_default());
    let secret_id = Zeroizing::new(request::field_string(&b, "secret_id")?.unwrap_or_default());
    let remote = req.peer_addr().map(|a| a.ip());
    // No blocking I/O here: the secret_id use and the token are synced with the outcome
    // record, before the response (the only place the token exists) leaves.
    let issued = st
        .vault
        .approle_login_unsynced(&role_id, &secret_id, remote);
    super::defer_store_sync(req);
    let issued = issued?;
    Ok(response::auth(
        issued.entry.auth_json(&issued.token),
        issued.warnings,
    ))
}

fn no_route(rest: &str) -> ApiError {
    ApiError::status(
        404,
        format!("no handler for route \"auth/approle/{rest}\". route entry not found."),
    )
}

/// The role named in the path, or `404 role "x" does not exist`.
fn role_or_404(st: &AppState, name: &str) -> Result<AppRole, ApiError> {
    st.vault
        .approle_role_get(name)?
        .ok_or_else(|| ApiError::status(404, format!("role {name:?} does not exist")))
}

fn accessor_missing(acc: &str) -> ApiError {
    ApiError::status(
        404,
        format!("failed to find accessor entry for secret_id_accessor: {acc:?}"),
    )
}

fn required(b: &Map<String, Value>, field: &str) -> Result<Zeroizing<String>, ApiError> {
    match request::field_string(b, field)? {
        Some(s) if !s.trim().is_empty() => Ok(Zeroizing::new(s.trim().to_string())),
        _ => Err(ApiError::bad(format!("missing {field}"))),
    }
}

/// Authenticated `auth/approle/...` paths (`rest` is after `auth/approle/`).
pub async fn route(
    req: &HttpRequest,
    ctx: &Ctx,
    rest: &str,
    payload: web::Payload,
    st: &AppState,
    _caller: &Caller,
) -> ApiResult {
    let vault = st.vault.clone();
    if matches!(rest, "role" | "role/") {
        return match ctx.op {
            Op::List => {
                let keys = vault.approle_role_list()?;
                if keys.is_empty() {
                    return Err(ApiError::not_found());
                }
                Ok(response::ok(json!({ "keys": keys })))
            }
            _ => Err(ApiError::method_not_allowed()),
        };
    }
    let Some(after) = rest.strip_prefix("role/") else {
        return Err(no_route(rest));
    };
    let (name, sub) = match after.split_once('/') {
        Some((n, s)) => (n, s.strip_suffix('/').unwrap_or(s)),
        None => (after, ""),
    };
    match sub {
        "" => role_crud(req, ctx, name, payload, st).await,
        "role-id" => match ctx.op {
            Op::Read => {
                let role = vault
                    .approle_role_get(name)?
                    .ok_or_else(ApiError::not_found)?;
                Ok(response::ok(json!({ "role_id": role.role_id })))
            }
            Op::Write => {
                let b = json_body(req, payload, st).await?;
                let id = required(&b, "role_id")?;
                let n = name.to_string();
                blocking(move || vault.approle_set_role_id(&n, &id))
                    .await
                    .map_err(|e| match e {
                        ApiError::Core(Error::NotFound) => {
                            ApiError::status(404, format!("role {name:?} does not exist"))
                        }
                        other => other,
                    })?;
                Ok(response::no_content())
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        "secret-id" | "custom-secret-id" => match ctx.op {
            Op::Write => {
                let b = json_body(req, payload, st).await?;
                let mut sreq = secret_id_request(&b)?;
                if sub == "custom-secret-id" {
                    sreq.secret_id = Some(required(&b, "secret_id")?);
                }
                let role = role_or_404(st, name)?;
                let (sid, e) =
                    blocking(move || vault.approle_secret_id_create(&role, sreq)).await?;
                Ok(response::ok(json!({
                    "secret_id": sid.as_str(),
                    "secret_id_accessor": e.accessor,
                    "secret_id_num_uses": e.num_uses,
                    "secret_id_ttl": e.ttl,
                })))
            }
            Op::List if sub == "secret-id" => {
                let role = role_or_404(st, name)?;
                let keys = vault.approle_secret_id_list(&role)?;
                if keys.is_empty() {
                    return Err(ApiError::not_found());
                }
                Ok(response::ok(json!({ "keys": keys })))
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        "secret-id/lookup" => match ctx.op {
            Op::Write => {
                let b = json_body(req, payload, st).await?;
                let sid = required(&b, "secret_id")?;
                let role = role_or_404(st, name)?;
                match vault.approle_secret_id_lookup(&role, &sid)? {
                    Some(e) => Ok(response::ok(e.to_json())),
                    // Vault answers an unknown secret_id with no data: 204.
                    None => Ok(response::no_content()),
                }
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        "secret-id/destroy" => match ctx.op {
            Op::Write | Op::Delete => {
                let b = json_body(req, payload, st).await?;
                let sid = required(&b, "secret_id")?;
                let role = role_or_404(st, name)?;
                blocking(move || vault.approle_secret_id_destroy(&role, &sid)).await?;
                Ok(response::no_content())
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        "secret-id-accessor/lookup" => match ctx.op {
            Op::Write => {
                let b = json_body(req, payload, st).await?;
                let acc = required(&b, "secret_id_accessor")?;
                let role = role_or_404(st, name)?;
                match vault.approle_secret_id_lookup_accessor(&role, &acc)? {
                    Some(e) => Ok(response::ok(e.to_json())),
                    None => Err(accessor_missing(&acc)),
                }
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        "secret-id-accessor/destroy" => match ctx.op {
            Op::Write | Op::Delete => {
                let b = json_body(req, payload, st).await?;
                let acc = required(&b, "secret_id_accessor")?;
                let role = role_or_404(st, name)?;
                let a = acc.clone();
                if blocking(move || vault.approle_secret_id_destroy_accessor(&role, &a)).await? {
                    Ok(response::no_content())
                } else {
                    Err(accessor_missing(&acc))
                }
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        _ => Err(no_route(rest)),
    }
}

/// `role/:name`: write (create or update), read, delete.
async fn role_crud(
    req: &HttpRequest,
    ctx: &Ctx,
    name: &str,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    let vault = st.vault.clone();
    match ctx.op {
        Op::Read => Ok(response::ok(
            vault
                .approle_role_get(name)?
                .ok_or_else(ApiError::not_found)?
                .to_json(),
        )),
        Op::Write => {
            let b = json_body(req, payload, st).await?;
            let upd = role_update(&b)?;
            let n = name.to_string();
            blocking(move || vault.approle_role_write(&n, upd)).await?;
            Ok(response::no_content())
        }
        Op::Delete => {
            let n = name.to_string();
            blocking(move || vault.approle_role_delete(&n)).await?;
            Ok(response::no_content())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn role_update(b: &Map<String, Value>) -> Result<RoleUpdate, ApiError> {
    let dur = |f: &str| request::field_duration(b, f);
    Ok(RoleUpdate {
        role_id: request::field_string(b, "role_id")?.filter(|s| !s.trim().is_empty()),
        bind_secret_id: request::field_bool(b, "bind_secret_id")?,
        secret_id_bound_cidrs: field_list(b, "secret_id_bound_cidrs")?
            .or(field_list(b, "bound_cidr_list")?),
        secret_id_num_uses: request::field_u64(b, "secret_id_num_uses")?,
        secret_id_ttl: dur("secret_id_ttl")?,
        local_secret_ids: request::field_bool(b, "enable_local_secret_ids")?,
        // `policies` and `period` are Vault's deprecated aliases.
        token_policies: field_list(b, "token_policies")?.or(field_list(b, "policies")?),
        token_ttl: dur("token_ttl")?,
        token_max_ttl: dur("token_max_ttl")?,
        token_explicit_max_ttl: dur("token_explicit_max_ttl")?,
        token_num_uses: request::field_u64(b, "token_num_uses")?,
        token_period: dur("token_period")?.or(dur("period")?),
        token_no_default_policy: request::field_bool(b, "token_no_default_policy")?,
        token_bound_cidrs: field_list(b, "token_bound_cidrs")?,
        token_type: request::field_string(b, "token_type")?,
    })
}

/// `metadata` arrives as a JSON-encoded string (hvac); a JSON object is refused, as OB does.
pub fn field_metadata(b: &Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    match b.get("metadata") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(BTreeMap::new()),
        Some(Value::String(s)) => {
            let m: BTreeMap<String, String> = serde_json::from_str(s).map_err(|e| {
                ApiError::bad(format!(
                    "failed to parse metadata: expected a JSON object of strings: {e}"
                ))
            })?;
            if m.contains_key("role_name") {
                return Err(ApiError::bad(
                    "metadata: \"role_name\" is reserved (it is set to the role's name at login)",
                ));
            }
            Ok(m)
        }
        Some(other) => Err(ApiError::bad(format!(
            "error converting input for field \"metadata\": expected type 'string', got unconvertible type '{}'",
            match other {
                Value::Object(_) => "map[string]interface {}",
                Value::Array(_) => "[]interface {}",
                _ => request::kind(other),
            }
        ))),
    }
}

fn secret_id_request(b: &Map<String, Value>) -> Result<SecretIdRequest, ApiError> {
    Ok(SecretIdRequest {
        secret_id: None,
        metadata: field_metadata(b)?,
        cidr_list: field_list(b, "cidr_list")?.unwrap_or_default(),
        token_bound_cidrs: field_list(b, "token_bound_cidrs")?.unwrap_or_default(),
        num_uses: request::field_u64(b, "num_uses")?,
        ttl: request::field_duration(b, "ttl")?,
    })
}

fn token_auth_entry() -> Value {
    json!({
        "type": "token", "description": "token based credentials",
        "accessor": "auth_token_00000000", "uuid": "00000000-0000-0000-0000-00000000000b",
        "local": false, "seal_wrap": false, "external_entropy_access": false,
        "plugin_version": "",
        "running_plugin_version": concat!("v", env!("CARGO_PKG_VERSION"), "+builtin.arca"),
        "running_sha256": "", "deprecation_status": "supported", "options": null,
        "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false,
                   "token_type": "default-service"},
    })
}

fn approle_auth_entry(m: &crate::core::approle::AuthMount) -> Value {
    json!({
        "type": "approle", "description": m.description,
        "accessor": m.accessor, "uuid": m.uuid,
        "local": false, "seal_wrap": false, "external_entropy_access": false,
        "plugin_version": "",
        "running_plugin_version": concat!("v", env!("CARGO_PKG_VERSION"), "+builtin.arca"),
        "running_sha256": "", "deprecation_status": "supported", "options": {},
        "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false,
                   "token_type": "default-service"},
    })
}

/// `sys/auth` and `sys/auth/:path` (`rest` is after `sys/`, i.e. `auth` or `auth/...`).
pub async fn sys_auth(
    req: &HttpRequest,
    ctx: &Ctx,
    rest: &str,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    let vault = st.vault.clone();
    let path = rest
        .strip_prefix("auth")
        .unwrap_or(rest)
        .trim_matches('/')
        .to_string();
    match (path.as_str(), ctx.op) {
        ("", Op::Read) => {
            let mut data = Map::new();
            data.insert("token/".into(), token_auth_entry());
            if let Some(m) = vault.approle_mount()? {
                data.insert("approle/".into(), approle_auth_entry(&m));
            }
            Ok(response::ok_with_top_level(Value::Object(data)))
        }
        ("token", Op::Read) => Ok(response::ok_with_top_level(token_auth_entry())),
        ("token", Op::Write) => Err(ApiError::bad("path is already in use at token/")),
        ("approle", Op::Read) => match vault.approle_mount()? {
            Some(m) => Ok(response::ok_with_top_level(approle_auth_entry(&m))),
            None => Err(ApiError::bad("No auth engine at approle/")),
        },
        ("approle", Op::Write) => {
            let b = json_body(req, payload, st).await?;
            let ty = request::field_string(&b, "type")?.unwrap_or_default();
            if !ty.is_empty() && ty != "approle" {
                return Err(ApiError::bad(format!(
                    "arca serves only the approle auth method at approle/ (got type {ty:?})"
                )));
            }
            let desc = request::field_string(&b, "description")?.unwrap_or_default();
            blocking(move || vault.approle_enable(&desc)).await?;
            Ok(response::no_content())
        }
        ("approle", Op::Delete) => {
            blocking(move || vault.approle_disable()).await?;
            Ok(response::no_content())
        }
        ("" | "token" | "approle", _) => Err(ApiError::method_not_allowed()),
        (other, Op::Write) => Err(ApiError::bad(format!(
            "arca supports the approle auth method at approle/ only, not {other:?}"
        ))),
        _ => Err(ApiError::status(
            404,
            format!("no handler for route \"sys/{rest}\". route entry not found."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn metadata_is_a_json_string() {
        let m = field_metadata(&obj(json!({"metadata": "{\"job\":\"etl\"}"}))).unwrap();
        assert_eq!(m["job"], "etl");
        assert!(field_metadata(&obj(json!({}))).unwrap().is_empty());
        assert!(field_metadata(&obj(json!({"metadata": ""})))
            .unwrap()
            .is_empty());
        let e = field_metadata(&obj(json!({"metadata": {"job": "etl"}}))).unwrap_err();
        assert!(format!("{e:?}").contains("expected type 'string'"), "{e:?}");
        assert!(field_metadata(&obj(json!({"metadata": "[1]"}))).is_err());
        assert!(field_metadata(&obj(json!({"metadata": "{\"role_name\":\"x\"}"}))).is_err());
    }

    #[test]
    fn role_update_takes_comma_strings_and_arrays() {
        let u = role_update(&obj(json!({
            "token_policies": "dbread,default",
            "token_bound_cidrs": ["127.0.0.0/8", "::1/128"],
            "token_ttl": "10m", "token_max_ttl": 1800, "secret_id_num_uses": "5",
            "bind_secret_id": "true",
        })))
        .unwrap();
        assert_eq!(u.token_policies.unwrap(), vec!["dbread", "default"]);
        assert_eq!(u.token_bound_cidrs.unwrap(), vec!["127.0.0.0/8", "::1/128"]);
        assert_eq!(u.token_ttl, Some(600));
        assert_eq!(u.token_max_ttl, Some(1800));
        assert_eq!(u.secret_id_num_uses, Some(5));
        assert_eq!(u.bind_secret_id, Some(true));
        assert!(u.secret_id_ttl.is_none());
        assert!(role_update(&obj(json!({"token_ttl": "abc"}))).is_err());
    }
}
