//! `auth/approle/...` endpoints. (Filled in by the AppRole work.)

use actix_web::{web, HttpRequest};

use super::request::Ctx;
use super::response::{ApiError, ApiResult};
use super::{AppState, Caller};

/// `POST auth/approle/login` (unauthenticated).
pub async fn login(
    _req: &HttpRequest,
    _ctx: &Ctx,
    _payload: web::Payload,
    _st: &AppState,
) -> ApiResult {
    Err(ApiError::status(
        404,
        "no handler for route \"auth/approle/login\". route entry not found.",
    ))
}

/// Authenticated `auth/approle/...` paths (`rest` is after `auth/approle/`).
pub async fn route(
    _req: &HttpRequest,
    _ctx: &Ctx,
    rest: &str,
    _payload: web::Payload,
    _st: &AppState,
    _caller: &Caller,
) -> ApiResult {
    Err(ApiError::status(
        404,
        format!("no handler for route \"auth/approle/{rest}\". route entry not found."),
    ))
}
