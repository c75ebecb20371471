//! `sys/policies/acl`, the legacy `sys/policy`, and `sys/capabilities-self`.

use actix_web::{web, HttpRequest};
use serde_json::{json, Value};

use super::request::{self, Ctx, Op};
use super::response::{self, ApiError, ApiResult};
use super::{blocking, json_body, AppState, Caller};

pub async fn route(
    req: &HttpRequest,
    ctx: &Ctx,
    rest: &str,
    payload: web::Payload,
    st: &AppState,
    caller: &Caller,
) -> ApiResult {
    let vault = st.vault.clone();
    if rest == "capabilities-self" {
        if ctx.op != Op::Write {
            return Err(ApiError::method_not_allowed());
        }
        let b = json_body(req, payload, st).await?;
        let mut paths = super::token::field_list(&b, "paths")?.unwrap_or_default();
        if let Some(p) = request::field_string(&b, "path")? {
            paths.push(p);
        }
        if paths.is_empty() {
            return Err(ApiError::bad("'path' or 'paths' must be specified"));
        }
        let mut data = serde_json::Map::new();
        for p in &paths {
            let p = p.trim_start_matches('/').to_string();
            let names: Vec<&str> = if caller.acl.is_root() {
                vec!["root"]
            } else {
                caller.acl.capabilities(&p).0.names()
            };
            data.insert(p, json!(names));
        }
        if paths.len() == 1 {
            if let Some(v) = data.values().next().cloned() {
                data.insert("capabilities".into(), v);
            }
        }
        return Ok(response::ok_with_top_level(Value::Object(data)));
    }

    let (legacy, name) = if let Some(n) = rest.strip_prefix("policies/acl") {
        (false, n.trim_start_matches('/'))
    } else {
        (
            true,
            rest.strip_prefix("policy")
                .unwrap_or("")
                .trim_start_matches('/'),
        )
    };
    if name.is_empty() {
        return match (ctx.op, legacy) {
            (Op::List, _) | (Op::Read, true) => {
                let keys = vault.policy_list()?;
                if legacy {
                    Ok(response::ok_with_top_level(
                        json!({ "keys": keys, "policies": keys }),
                    ))
                } else {
                    Ok(response::ok(json!({ "keys": keys })))
                }
            }
            _ => Err(ApiError::method_not_allowed()),
        };
    }
    match ctx.op {
        Op::Read => {
            let lname = name.trim().to_lowercase();
            let text = if lname == "root" {
                String::new()
            } else {
                vault
                    .policy_get(name)?
                    .ok_or_else(ApiError::not_found)?
                    .text
                    .clone()
            };
            if legacy {
                Ok(response::ok_with_top_level(
                    json!({ "name": lname, "rules": text }),
                ))
            } else {
                Ok(response::ok(json!({ "name": lname, "policy": text })))
            }
        }
        Op::Write => {
            let b = json_body(req, payload, st).await?;
            let mut warnings = Vec::new();
            let text = match request::field_string(&b, "policy")? {
                Some(t) if !t.trim().is_empty() => t,
                _ => match request::field_string(&b, "rules")? {
                    Some(t) if legacy && !t.trim().is_empty() => {
                        warnings
                            .push("'rules' is deprecated, please use 'policy' instead".to_string());
                        t
                    }
                    _ => return Err(ApiError::bad("'policy' parameter not supplied or empty")),
                },
            };
            let n = name.to_string();
            blocking(move || vault.policy_put(&n, &text)).await?;
            Ok(response::warnings_or_no_content(warnings))
        }
        Op::Delete => {
            let n = name.to_string();
            blocking(move || vault.policy_delete(&n)).await?;
            Ok(response::no_content())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}
