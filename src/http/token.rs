//! `auth/token/...`: create (child, orphan, against a role), lookup, renew, revoke, roles.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest};
use serde_json::{json, Map, Value};

use super::request::{self, Ctx, Op};
use super::response::{self, ApiError, ApiResult};
use super::{blocking, json_body, AppState, Caller};
use crate::core::token::{Issuer, TokenRequest, TokenRole};
use crate::core::Error;

/// A list field: JSON array, or a comma-separated string (hvac sends both).
pub fn field_list(m: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.trim().to_string()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(ApiError::bad(format!(
                    "error converting input for field \"{field}\": expected strings, got {}",
                    request::kind(other)
                ))),
            })
            .filter(|r| !matches!(r, Ok(s) if s.is_empty()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(Value::String(s)) => Ok(Some(
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
        )),
        Some(other) => Err(ApiError::bad(format!(
            "error converting input for field \"{field}\": expected a list, got {}",
            request::kind(other)
        ))),
    }
}

/// `meta`: a map whose values are stringified (Vault's weak typing).
fn field_meta(m: &Map<String, Value>) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    match m.get("meta") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(_) | Value::Bool(_) => v.to_string(),
                    other => {
                        return Err(ApiError::bad(format!(
                            "error converting input for field \"meta\": value of {k:?} must be a string, got {}",
                            request::kind(other)
                        )))
                    }
                };
                Ok((k.clone(), s))
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(other) => Err(ApiError::bad(format!(
            "error converting input for field \"meta\": expected a map, got {}",
            request::kind(other)
        ))),
    }
}

fn token_request(b: &Map<String, Value>) -> Result<TokenRequest, ApiError> {
    if let Some(t) = request::field_string(b, "type")? {
        if t != "service" && t != "default" && !t.is_empty() {
            return Err(ApiError::bad(format!(
                "token type {t:?} is not supported (only service tokens)"
            )));
        }
    }
    if b.get("id").is_some_and(|v| !v.is_null() && v != "") {
        return Err(ApiError::bad("choosing the token ID is not supported"));
    }
    let policies = match b.get("policies") {
        // OB takes a string as ONE name ("a,b" -> policy "a,b")
        Some(Value::String(s)) => Some(vec![s.clone()]),
        _ => field_list(b, "policies")?,
    };
    Ok(TokenRequest {
        policies,
        ttl: request::field_duration(b, "ttl")?,
        explicit_max_ttl: request::field_duration(b, "explicit_max_ttl")?,
        num_uses: request::field_u64(b, "num_uses")?.unwrap_or(0),
        renewable: request::field_bool(b, "renewable")?,
        no_parent: request::field_bool(b, "no_parent")?.unwrap_or(false),
        no_default_policy: request::field_bool(b, "no_default_policy")?.unwrap_or(false),
        meta: field_meta(b)?,
        display_name: request::field_string(b, "display_name")?,
        period: request::field_duration(b, "period")?,
        bound_cidrs: field_list(b, "bound_cidrs")?.unwrap_or_default(),
    })
}

fn required_string(
    b: &Map<String, Value>,
    field: &str,
    missing: &str,
) -> Result<zeroize::Zeroizing<String>, ApiError> {
    match request::field_string(b, field)? {
        Some(s) if !s.is_empty() => Ok(zeroize::Zeroizing::new(s)),
        _ => Err(ApiError::bad(missing.to_string())),
    }
}

pub async fn route(
    req: &HttpRequest,
    ctx: &Ctx,
    rest: &str,
    payload: web::Payload,
    st: &AppState,
    caller: &Caller,
) -> ApiResult {
    let vault = st.vault.clone();
    let now = vault.now();
    match (rest, ctx.op) {
        ("create" | "create-orphan", Op::Write) => {
            let mut treq = token_request(&json_body(req, payload, st).await?)?;
            treq.no_parent |= rest == "create-orphan";
            create(req, st, caller, treq, None, format!("auth/token/{rest}")).await
        }
        (r, Op::Write) if r.starts_with("create/") => {
            let name = &r["create/".len()..];
            let treq = token_request(&json_body(req, payload, st).await?)?;
            let role = vault
                .token_role_get(name)?
                .ok_or_else(|| ApiError::bad(format!("unknown role {name}")))?;
            create(
                req,
                st,
                caller,
                treq,
                Some(role),
                format!("auth/token/create/{name}"),
            )
            .await
        }
        ("lookup-self", Op::Read | Op::Write) => {
            Ok(response::ok(caller.entry.lookup_json(&caller.token, now)))
        }
        ("lookup", Op::Write) => {
            let b = json_body(req, payload, st).await?;
            match request::field_string(&b, "token")?.filter(|t| !t.is_empty()) {
                None => Ok(response::ok(caller.entry.lookup_json(&caller.token, now))),
                Some(t) => {
                    let t = zeroize::Zeroizing::new(t);
                    let e = vault.token_lookup(&t).map_err(|e| match e {
                        Error::BadToken => ApiError::status(403, "bad token"),
                        other => other.into(),
                    })?;
                    Ok(response::ok(e.lookup_json(&t, now)))
                }
            }
        }
        ("lookup-accessor", Op::Write) => {
            let b = json_body(req, payload, st).await?;
            let acc = required_string(&b, "accessor", "missing accessor")?;
            let e = vault
                .token_lookup_accessor(&acc)?
                .ok_or_else(|| ApiError::bad("1 error occurred:\n\t* invalid accessor\n\n"))?;
            Ok(response::ok(e.lookup_json("", now)))
        }
        ("renew-self", Op::Write) => {
            let b = json_body(req, payload, st).await?;
            let inc = request::field_duration(&b, "increment")?;
            let t = caller.token.clone();
            let (e, w) = blocking(move || vault.token_renew(&t, inc)).await?;
            Ok(response::auth(e.auth_json(&caller.token), w))
        }
        ("renew", Op::Write) => {
            let b = json_body(req, payload, st).await?;
            let t = required_string(&b, "token", "missing token")?;
            let inc = request::field_duration(&b, "increment")?;
            let t2 = t.clone();
            let (e, w) = blocking(move || vault.token_renew(&t2, inc)).await?;
            Ok(response::auth(e.auth_json(&t), w))
        }
        ("renew-accessor", Op::Write) => {
            let b = json_body(req, payload, st).await?;
            let acc = required_string(&b, "accessor", "missing accessor")?;
            let inc = request::field_duration(&b, "increment")?;
            let (e, w) = blocking(move || vault.token_renew_accessor(&acc, inc)).await?;
            Ok(response::auth(e.auth_json(""), w))
        }
        ("revoke-self", Op::Write) => {
            let t = caller.token.clone();
            blocking(move || vault.token_revoke(&t)).await?;
            Ok(response::no_content())
        }
        ("revoke", Op::Write) => {
            let b = json_body(req, payload, st).await?;
            let t = required_string(&b, "token", "missing token ID")?;
            blocking(move || vault.token_revoke(&t)).await?;
            Ok(response::no_content())
        }
        ("revoke-accessor", Op::Write) => {
            let b = json_body(req, payload, st).await?;
            let acc = required_string(&b, "accessor", "missing accessor")?;
            let found = blocking(move || vault.token_revoke_accessor(&acc)).await?;
            Ok(response::warnings_or_no_content(if found {
                vec![]
            } else {
                vec!["No token found with this accessor".into()]
            }))
        }
        ("roles" | "roles/", Op::List) => {
            let keys = vault.token_role_list()?;
            if keys.is_empty() {
                return Err(ApiError::not_found());
            }
            Ok(response::ok(json!({ "keys": keys })))
        }
        (r, op) if r.starts_with("roles/") => {
            let name = &r["roles/".len()..];
            match op {
                Op::Read => Ok(response::ok(
                    vault
                        .token_role_get(name)?
                        .ok_or_else(ApiError::not_found)?
                        .to_json(),
                )),
                Op::Write => {
                    let b = json_body(req, payload, st).await?;
                    let mut role = vault.token_role_get(name)?.unwrap_or(TokenRole {
                        name: name.to_lowercase(),
                        renewable: true,
                        ..Default::default()
                    });
                    role.name = name.to_lowercase();
                    if let Some(v) = field_list(&b, "allowed_policies")? {
                        role.allowed_policies = normalize_names(v)?;
                    }
                    if let Some(v) = field_list(&b, "disallowed_policies")? {
                        role.disallowed_policies = normalize_names(v)?;
                    }
                    if let Some(v) = request::field_bool(&b, "orphan")? {
                        role.orphan = v;
                    }
                    if let Some(v) = request::field_bool(&b, "renewable")? {
                        role.renewable = v;
                    }
                    if let Some(v) = request::field_string(&b, "path_suffix")? {
                        role.path_suffix = v;
                    }
                    for (f, slot) in [
                        ("token_ttl", &mut role.token_ttl),
                        ("token_max_ttl", &mut role.token_max_ttl),
                        ("token_explicit_max_ttl", &mut role.token_explicit_max_ttl),
                        ("token_period", &mut role.token_period),
                    ] {
                        if let Some(v) = request::field_duration(&b, f)? {
                            *slot = v;
                        }
                    }
                    if let Some(v) = request::field_u64(&b, "token_num_uses")? {
                        role.token_num_uses = v;
                    }
                    if let Some(v) = request::field_bool(&b, "token_no_default_policy")? {
                        role.token_no_default_policy = v;
                    }
                    if let Some(v) = field_list(&b, "token_bound_cidrs")? {
                        role.token_bound_cidrs = crate::core::token::normalize_cidrs(&v)?;
                    }
                    blocking(move || vault.token_role_put(&role)).await?;
                    Ok(response::no_content())
                }
                Op::Delete => {
                    let n = name.to_string();
                    blocking(move || vault.token_role_delete(&n)).await?;
                    Ok(response::no_content())
                }
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        _ => Err(ApiError::status(
            404,
            // Never echo the rest: old clients put tokens in paths (lookup/<token>).
            "no handler for this route under auth/token/ (tokens go in the body or a header, never in the path)",
        )),
    }
}

fn normalize_names(v: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut out = v
        .iter()
        .map(|n| crate::core::policy::normalize_name(n).map_err(|e| ApiError::bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

async fn create(
    req: &HttpRequest,
    st: &AppState,
    caller: &Caller,
    treq: TokenRequest,
    role: Option<TokenRole>,
    path: String,
) -> ApiResult {
    let vault = st.vault.clone();
    let parent = caller.entry.clone();
    let privileged = caller.has_sudo(&path) || caller.has_sudo("auth/token/create-orphan");
    // No blocking I/O here: the token's writes are synced with the outcome record, before
    // the response (the only place the token exists) leaves.
    let issuer = Issuer {
        parent: Some(&parent),
        privileged,
        path,
        auth_method: "token",
    };
    // (Its only write is its last step: an error means nothing was written.)
    let issued = vault.token_create_unsynced(&issuer, treq, role.as_ref())?;
    super::defer_store_sync(req);
    Ok(response::auth(
        issued.entry.auth_json(&issued.token),
        issued.warnings,
    ))
}
