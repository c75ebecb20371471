//! KV v2 endpoints under a mount (`secret/`), shapes per vault-api-subset.md §5.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest};
use serde_json::{json, Map, Value};

use super::audit::AuditVersion;
use super::request::{self, Ctx, Op};
use super::response::{self, ApiError, ApiResult};
use super::{blocking, json_body, AppState};
use crate::core::kv::{MetadataUpdate, ReadOutcome, VersionOp};
use crate::core::Error;

const MAX_CUSTOM_KEYS: usize = 64;
const MAX_CUSTOM_KEY_LEN: usize = 128;
const MAX_CUSTOM_VALUE_LEN: usize = 512;

pub async fn route(
    req: &HttpRequest,
    ctx: &Ctx,
    mount: &'static str,
    rest: &str,
    payload: web::Payload,
    st: &AppState,
    caller: &super::Caller,
) -> ApiResult {
    let (sub, path) = match rest.split_once('/') {
        Some((a, b)) => (a, b.to_string()),
        None => (rest, String::new()),
    };
    match sub {
        "data" => data(req, ctx, mount, path, payload, st).await,
        "metadata" => metadata(req, ctx, mount, path, payload, st).await,
        "delete" | "undelete" | "destroy" => versions(req, ctx, mount, sub, path, payload, st).await,
        "config" if path.is_empty() => config(req, ctx, mount, payload, st).await,
        "rotation" | "rotate" => super::rotation::kv_route(req, ctx, mount, sub, path, payload, st, caller).await,
        _ => Ok(response::raw(
            StatusCode::NOT_FOUND,
            &response::envelope(
                Value::Null,
                Some(vec![format!(
                    "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation."
                )]),
            ),
        )),
    }
}

/// PATCH bodies are JSON merge patches, and must say so (as Vault requires).
fn require_merge_patch(ctx: &Ctx) -> Result<(), ApiError> {
    let ct = ctx.content_type.as_deref().unwrap_or("");
    if ct.split(';').next().map(str::trim) != Some("application/merge-patch+json") {
        return Err(ApiError::status(
            415,
            format!("PATCH requires Content-Type of application/merge-patch+json, provided {ct}"),
        ));
    }
    Ok(())
}

fn options_cas(body: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    match body.get("options") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => request::field_u64(o, "cas"),
        Some(other) => Err(ApiError::bad(format!(
            "error converting input for field \"options\": expected a map, got {}",
            request::kind(other)
        ))),
    }
}

fn data_field(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    match body.get("data") {
        None | Some(Value::Null) => Err(ApiError::bad("no data provided")),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(other) => Err(ApiError::bad(format!(
            "error converting input for field \"data\": expected a map, got {}",
            request::kind(other)
        ))),
    }
}

fn version_query(ctx: &Ctx) -> Result<Option<u64>, ApiError> {
    match ctx.query("version") {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad(format!(
                "1 error occurred:\n\t* Field validation failed: error converting input for field \"version\": cannot parse '{v}' as int\n\n"
            ))
        }),
    }
}

async fn data(
    req: &HttpRequest,
    ctx: &Ctx,
    mount: &'static str,
    path: String,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    let vault = st.vault.clone();
    match ctx.op {
        Op::Read => {
            let version = version_query(ctx)?;
            match vault.kv_read(mount, &path, version)? {
                ReadOutcome::Found { data, metadata } => {
                    req.extensions_mut().insert(AuditVersion(metadata.version));
                    Ok(response::ok(json!({ "data": data, "metadata": metadata })))
                }
                ReadOutcome::Deleted { metadata } => Ok(response::raw(
                    StatusCode::NOT_FOUND,
                    &response::envelope(json!({ "data": null, "metadata": metadata }), None),
                )),
            }
        }
        Op::Write => {
            let body = json_body(req, payload, st).await?;
            let data = data_field(&body)?;
            let cas = options_cas(&body)?;
            // No blocking I/O here: the new version is synced with the outcome record,
            // before the response acknowledges it.
            let info = vault.kv_write_unsynced(mount, &path, &data, cas)?;
            super::defer_store_sync(req);
            {
                req.extensions_mut().insert(AuditVersion(info.version));
                Ok(response::ok(json!(info)))
            }
        }
        Op::Patch => {
            require_merge_patch(ctx)?;
            let body = json_body(req, payload, st).await?;
            let data = data_field(&body)?;
            let cas = options_cas(&body)?;
            match blocking(move || vault.kv_patch(mount, &path, &data, cas)).await {
                Ok(info) => {
                    req.extensions_mut().insert(AuditVersion(info.version));
                    Ok(response::ok(json!(info)))
                }
                Err(ApiError::Core(Error::NotFound)) => Err(ApiError::EmptyNotFound),
                Err(e) => Err(e),
            }
        }
        Op::Delete => {
            blocking(move || vault.kv_delete_latest(mount, &path)).await?;
            Ok(response::no_content())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `custom_metadata` of a metadata write, and (for PATCH) the keys a `null` removes.
type CustomMetadata = (Option<BTreeMap<String, String>>, Vec<String>);

fn custom_metadata(body: &Map<String, Value>) -> Result<CustomMetadata, ApiError> {
    let m = match body.get("custom_metadata") {
        None | Some(Value::Null) => return Ok((None, Vec::new())),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "error converting input for field \"custom_metadata\": expected a map, got {}",
                request::kind(other)
            )))
        }
    };
    if m.len() > MAX_CUSTOM_KEYS {
        return Err(ApiError::bad(format!(
            "custom_metadata: more than {MAX_CUSTOM_KEYS} keys"
        )));
    }
    let mut out = BTreeMap::new();
    let mut removed = Vec::new();
    for (k, v) in m {
        if v.is_null() {
            removed.push(k.clone());
            continue;
        }
        if k.is_empty() || k.len() > MAX_CUSTOM_KEY_LEN {
            return Err(ApiError::bad(format!(
                "custom_metadata: keys must be 1 to {MAX_CUSTOM_KEY_LEN} bytes"
            )));
        }
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(ApiError::bad(format!(
                    "error converting input for field \"custom_metadata\": value of {k:?} must be a string, got {}",
                    request::kind(other)
                )))
            }
        };
        if s.len() > MAX_CUSTOM_VALUE_LEN {
            return Err(ApiError::bad(format!(
                "custom_metadata: values must be at most {MAX_CUSTOM_VALUE_LEN} bytes"
            )));
        }
        out.insert(k.clone(), s);
    }
    Ok((Some(out), removed))
}

fn metadata_update(body: &Map<String, Value>) -> Result<MetadataUpdate, ApiError> {
    let (custom_metadata, remove_custom_metadata) = custom_metadata(body)?;
    Ok(MetadataUpdate {
        max_versions: request::field_u64(body, "max_versions")?,
        cas_required: request::field_bool(body, "cas_required")?,
        delete_version_after: request::field_duration(body, "delete_version_after")?,
        custom_metadata,
        remove_custom_metadata,
    })
}

async fn metadata(
    req: &HttpRequest,
    ctx: &Ctx,
    mount: &'static str,
    path: String,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    let vault = st.vault.clone();
    match ctx.op {
        Op::List => Ok(response::ok(
            json!({ "keys": vault.kv_list(mount, &path)? }),
        )),
        Op::Read => Ok(response::ok(
            vault.kv_read_metadata(mount, &path)?.to_json(),
        )),
        Op::Write | Op::Patch => {
            let merge = ctx.op == Op::Patch;
            if merge {
                require_merge_patch(ctx)?;
            }
            let body = json_body(req, payload, st).await?;
            let upd = metadata_update(&body)?;
            match blocking(move || vault.kv_write_metadata(mount, &path, &upd, merge)).await {
                Ok(()) => Ok(response::no_content()),
                Err(ApiError::Core(Error::NotFound)) if merge => Err(ApiError::EmptyNotFound),
                Err(e) => Err(e),
            }
        }
        Op::Delete => {
            blocking(move || vault.kv_delete_metadata(mount, &path)).await?;
            Ok(response::no_content())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn versions_field(body: &Map<String, Value>, op: &str) -> Result<Vec<u64>, ApiError> {
    let missing = || {
        ApiError::bad(if op == "delete" {
            "No version number provided"
        } else {
            "no version number provided"
        })
    };
    let arr = match body.get("versions") {
        None | Some(Value::Null) => return Err(missing()),
        Some(Value::Array(a)) => a.clone(),
        // hvac and curl users sometimes send "1,2" or a single number
        Some(Value::String(s)) => s
            .split(',')
            .filter(|x| !x.trim().is_empty())
            .map(|x| Value::String(x.trim().into()))
            .collect(),
        Some(n @ Value::Number(_)) => vec![n.clone()],
        Some(other) => {
            return Err(ApiError::bad(format!(
                "error converting input for field \"versions\": expected a list, got {}",
                request::kind(other)
            )))
        }
    };
    if arr.is_empty() {
        return Err(missing());
    }
    arr.iter()
        .map(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .map(|v| {
            v.ok_or_else(|| {
                ApiError::bad(
                    "error converting input for field \"versions\": expected unsigned ints",
                )
            })
        })
        .collect()
}

async fn versions(
    req: &HttpRequest,
    ctx: &Ctx,
    mount: &'static str,
    sub: &str,
    path: String,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    if ctx.op != Op::Write {
        return Err(ApiError::method_not_allowed());
    }
    let op = match sub {
        "delete" => VersionOp::Delete,
        "undelete" => VersionOp::Undelete,
        _ => VersionOp::Destroy,
    };
    let body = json_body(req, payload, st).await?;
    let vs = versions_field(&body, sub)?;
    let vault = st.vault.clone();
    blocking(move || vault.kv_versions(mount, &path, &vs, op)).await?;
    Ok(response::no_content())
}

async fn config(
    req: &HttpRequest,
    ctx: &Ctx,
    mount: &'static str,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    let vault = st.vault.clone();
    match ctx.op {
        Op::Read => Ok(response::ok(vault.kv_config(mount)?.to_json())),
        Op::Write => {
            let body = json_body(req, payload, st).await?;
            let upd = metadata_update(&body)?;
            blocking(move || vault.kv_write_config(mount, &upd)).await?;
            Ok(response::no_content())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}
