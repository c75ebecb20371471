//! Rotation endpoints: `secret/rotation/:path` (the policy of one secret),
//! `secret/rotate/:path` (rotate now / resume / abort), `sys/rotation/...` (status, metrics).

use std::sync::{Arc, OnceLock};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::request::{self, Ctx, Op};
use super::response::{self, ApiError, ApiResult};
use super::{blocking, json_body, AppState, Caller};
use crate::core::policy::Caps;
use crate::core::rotation::policy::{Policy, Target};
use crate::core::rotation::{RotateError, Rotation, Settings, Trigger};
use crate::core::Error;

/// The process's rotation engine. Installed by `scheduler::start`; a server built without the
/// scheduler (tests of the HTTP layer alone) gets one with default settings on first use.
static ENGINE: OnceLock<Arc<Rotation>> = OnceLock::new();

pub fn install(engine: Arc<Rotation>) {
    if ENGINE.set(engine).is_err() {
        tracing::warn!("a rotation engine was already installed; keeping the first");
    }
}

fn engine(st: &AppState) -> Arc<Rotation> {
    ENGINE
        .get_or_init(|| {
            Arc::new(Rotation::new(
                st.vault.clone(),
                st.vault.clock.clone(),
                Settings::default(),
            ))
        })
        .clone()
}

fn rotate_error(e: RotateError) -> ApiError {
    match e {
        RotateError::NotFound => ApiError::not_found(),
        RotateError::Busy => ApiError::status(409, e.to_string()),
        RotateError::NotDue => ApiError::bad(e.to_string()),
        RotateError::Attempt(_) | RotateError::Failed(_) => ApiError::status(502, e.to_string()),
        RotateError::Core(e) => e.into(),
    }
}

/// The caller's policies must allow `read` on `path` (the ACL the dispatch authorized it
/// with: no second token lookup, which a token on its last use would fail).
fn caller_can_read(caller: &Caller, path: &str) -> bool {
    caller.acl.check(path, Caps::READ, false).allowed
}

/// `sub` is `rotation` or `rotate`; `path` is the secret's path under the mount.
#[allow(clippy::too_many_arguments)] // the route's context, as every handler gets it, plus the caller
pub async fn kv_route(
    req: &HttpRequest,
    ctx: &Ctx,
    mount: &str,
    sub: &str,
    path: String,
    payload: web::Payload,
    st: &AppState,
    caller: &Caller,
) -> ApiResult {
    if path.is_empty() || path.ends_with('/') {
        return Err(ApiError::bad("missing secret path"));
    }
    let eng = engine(st);
    let mount = mount.to_string();
    match (sub, ctx.op) {
        ("rotation", Op::Read) => {
            let rec = eng.load(&mount, &path)?.ok_or_else(ApiError::not_found)?;
            Ok(response::ok(rec.to_json(eng.now())))
        }
        ("rotation", Op::Write) => {
            let body = json_body(req, payload, st).await?;
            let policy = Policy::from_json(
                &body,
                eng.settings.default_period_secs,
                &eng.settings.commands,
            )
            .map_err(ApiError::bad)?;
            // A database target logs in with the secret's password or the admin secret's:
            // whoever points it at a host must be allowed to read those.
            if policy.target != Target::None {
                let mut need = vec![format!("{mount}/data/{path}")];
                if !policy.connection.admin_secret.is_empty() {
                    need.push(format!("{mount}/data/{}", policy.connection.admin_secret));
                }
                for p in need {
                    if !caller_can_read(caller, &p) {
                        return Err(ApiError::status(
                            403,
                            format!("a rotation policy with a target needs read on {p}"),
                        ));
                    }
                }
            }
            blocking(move || eng.set_policy(&mount, &path, policy).map(|_| ())).await?;
            Ok(response::no_content())
        }
        ("rotation", Op::Delete) => {
            blocking(move || eng.delete_policy(&mount, &path)).await?;
            Ok(response::no_content())
        }
        ("rotate", Op::Write) => {
            let body = json_body(req, payload, st).await?;
            let resume = request::field_bool(&body, "resume")?.unwrap_or(false);
            let abort = request::field_bool(&body, "abort")?.unwrap_or(false);
            if let Some(k) = body
                .keys()
                .find(|k| !matches!(k.as_str(), "resume" | "abort"))
            {
                return Err(ApiError::bad(format!("unknown field {k:?}")));
            }
            if resume && abort {
                return Err(ApiError::bad("resume and abort are exclusive"));
            }
            if abort {
                let e2 = eng.clone();
                let (m2, p2) = (mount.clone(), path.clone());
                let warnings = match web::block(move || e2.abort(&m2, &p2)).await {
                    Ok(r) => r.map_err(rotate_error)?,
                    Err(_) => return Err(Error::Internal("blocking task failed".into()).into()),
                };
                return Ok(response::raw(
                    StatusCode::OK,
                    &response::envelope(
                        json!({"state": "idle", "aborted": true}),
                        if warnings.is_empty() {
                            None
                        } else {
                            Some(warnings)
                        },
                    ),
                ));
            }
            if resume {
                let e2 = eng.clone();
                let (m2, p2) = (mount.clone(), path.clone());
                blocking(move || e2.resume(&m2, &p2)).await?;
            }
            let version = eng
                .rotate_on_runtime(mount.clone(), path.clone(), Trigger::Manual)
                .await
                .map_err(rotate_error)?;
            Ok(response::ok(json!({ "version": version })))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `rest` is what follows `sys/rotation` (e.g. `/status`).
pub async fn sys_route(
    _req: &HttpRequest,
    ctx: &Ctx,
    rest: &str,
    _payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    let eng = engine(st);
    match (rest, ctx.op) {
        ("/status", Op::Read) => {
            let rows = blocking(move || eng.status()).await?;
            let failed = rows.iter().filter(|r| r.state == "failed").count();
            let overdue = rows.iter().filter(|r| r.overdue).count();
            Ok(response::ok(json!({
                "secrets": rows,
                "failed": failed,
                "overdue": overdue,
            })))
        }
        ("/metrics", Op::Read) => {
            let text = blocking(move || eng.metrics()).await?;
            Ok(HttpResponse::Ok()
                .insert_header(("content-type", "text/plain; version=0.0.4"))
                .insert_header(("cache-control", "no-store"))
                .body(text))
        }
        (_, Op::Read) | (_, Op::Write) | (_, Op::List) => Err(ApiError::status(
            404,
            format!("no handler for route \"sys/rotation{rest}\". route entry not found."),
        )),
        _ => Err(ApiError::method_not_allowed()),
    }
}
