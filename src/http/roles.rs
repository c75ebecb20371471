//! `sys/roles` (the roles of the roles file and their settings) and `sys/roles/reload`.
//!
//! The dispatcher has already checked the ACL capability on the path (`read` on `sys/roles`,
//! `update` on `sys/roles/reload`); reloading also needs `sudo` on `sys/roles/reload`.

use actix_web::{web, HttpRequest};
use serde_json::{json, Map, Value};

use super::request::{Ctx, Op};
use super::response::{self, ApiError, ApiResult};
use super::{blocking, json_body, AppState};
use crate::core::policy::Caps;
use crate::core::roles::RolesSource;
use crate::core::{Error, Vault};

const RELOAD: &str = "sys/roles/reload";

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
            let _ = json_body(req, payload, st).await?;
            let token = ctx.token.clone().ok_or(Error::BadToken)?;
            let v = vault.clone();
            if !blocking(move || has_sudo(&v, &token)).await? {
                return Err(Error::PermissionDenied.into());
            }
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

/// Root, or `sudo` on `sys/roles/reload`. Looks the token up without consuming a use (the
/// dispatcher already counted this request).
fn has_sudo(vault: &Vault, token: &str) -> Result<bool, Error> {
    let entry = vault.token_lookup(token)?;
    let acl = vault.acl(&entry.policies)?;
    Ok(acl.check(RELOAD, Caps::UPDATE, true).allowed)
}
