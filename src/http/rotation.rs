//! Rotation endpoints: `secret/rotation/:path` (the policy of one secret),
//! `secret/rotate/:path` (rotate now / resume / abort), `sys/rotation/...` (status).
//! (Filled in by the rotation work.)

use actix_web::{web, HttpRequest};

use super::request::Ctx;
use super::response::{ApiError, ApiResult};
use super::AppState;

/// `sub` is `rotation` or `rotate`; `path` is the secret's path under the mount.
pub async fn kv_route(
    _req: &HttpRequest,
    _ctx: &Ctx,
    mount: &str,
    sub: &str,
    path: String,
    _payload: web::Payload,
    _st: &AppState,
) -> ApiResult {
    Err(ApiError::status(
        404,
        format!("no handler for route \"{mount}/{sub}/{path}\". route entry not found."),
    ))
}

/// `rest` is what follows `sys/rotation` (e.g. `/status`).
pub async fn sys_route(
    _req: &HttpRequest,
    _ctx: &Ctx,
    rest: &str,
    _payload: web::Payload,
    _st: &AppState,
) -> ApiResult {
    Err(ApiError::status(
        404,
        format!("no handler for route \"sys/rotation{rest}\". route entry not found."),
    ))
}
