//! `auth/cert/login`: a verified TLS client certificate mapped to a role. (Filled in by the
//! mTLS work.)

use actix_web::{web, HttpRequest};

use super::request::Ctx;
use super::response::{ApiError, ApiResult};
use super::AppState;

/// `POST auth/cert/login` (unauthenticated: the certificate is the credential).
pub async fn login(
    _req: &HttpRequest,
    _ctx: &Ctx,
    _payload: web::Payload,
    _st: &AppState,
) -> ApiResult {
    Err(ApiError::status(
        404,
        "no handler for route \"auth/cert/login\". route entry not found.",
    ))
}
