//! `sys/roles` (the roles of the roles file and their settings) and `sys/roles/reload`.
//!
//! The dispatcher has already checked the ACL capability on the path (`read` on `sys/roles`,
//! `update` on `sys/roles/reload`); reloading also needs `sudo` on `sys/roles/reload`.

use actix_web::{web, HttpRequest};
use serde_json::{json, Map, Value};

use super::request::{Ctx, Op};
use super::response::{self, ApiError, ApiResult};
use super::{blocking, json_body, AppState};
use crate::core::roles::RolesSource;

/// `rest` is `roles` or `roles/reload` (after `sys/`).
pub async fn route(
    req: &HttpRequest,
    ctx: &Ctx,
    rest: &str,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    let vault = st.vault.clone();
    match (rest, ctx.op) {
        ("roles", Op::Read | Op::List) => {
            let m = blocking(move || vault.roles_managed()).await?;
            let roles: Map<String, Value> = m
                .roles
                .iter()
                .map(|(k, r)| (k.clone(), r.to_json()))
                .collect();
            Ok(response::ok(json!({
                "keys": m.roles.keys().collect::<Vec<_>>(),
                "roles": roles,
                "source": m.source,
                "loaded_at": m.loaded_at.map(crate::core::clock::rfc3339),
            })))
        }
        ("roles/reload", Op::Write) => {
            // Root or sudo on sys/roles/reload: checked by the dispatch (`needs_sudo`).
            let _ = json_body(req, payload, st).await?;
            let src = req
                .app_data::<web::Data<RolesSource>>()
                .map(|d| d.get_ref().clone())
                .unwrap_or_default();
            let r = blocking(move || {
                let report = vault.roles_reload(&src);
                match &report {
                    Ok(r) => tracing::info!(
                        roles = r.roles.len(),
                        written = r.written.len(),
                        removed = r.removed.len(),
                        "roles file reloaded (sys/roles/reload)"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "roles file rejected (sys/roles/reload); nothing changed"
                    ),
                }
                report
            })
            .await?;
            Ok(response::ok(json!({
                "roles": r.roles,
                "written": r.written,
                "removed": r.removed,
            })))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}
