//! HTTP layer: one dispatch function (Vault's routing needs the custom `LIST` verb and
//! mount-relative paths, so the route table is a `match` you can grep), thin handlers that
//! parse, call `core`, and shape the response.

pub mod kv;
pub mod request;
pub mod response;
pub mod sys;

use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::Limits;
use crate::core::{Error, Principal, Vault};
use request::Ctx;
use response::{ApiError, ApiResult};

/// Shared state of all workers.
pub struct AppState {
    pub vault: Arc<Vault>,
    pub limits: Limits,
}

/// Mounts the API on an actix `App`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.default_service(web::to(dispatch));
}

async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let resp = match route(&req, payload, &st).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // The path never carries a secret (tokens are refused in paths and queries).
    tracing::debug!(
        method = %req.method(),
        path = %req.uri().path(),
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

/// Authenticates the caller. Until policies land, only root tokens are authorized.
fn authorize(ctx: &Ctx, vault: &Vault) -> Result<Arc<Principal>, ApiError> {
    let token = ctx.token.as_ref().ok_or(Error::BadToken)?;
    let p = vault.authenticate(token)?;
    if !p.is_root() {
        return Err(Error::PermissionDenied.into());
    }
    Ok(p)
}

async fn route(req: &HttpRequest, payload: web::Payload, st: &AppState) -> ApiResult {
    let ctx = request::parse(req, &st.limits)?;
    let vault = &st.vault;
    let path = ctx.path.clone();
    let (first, rest) = match path.split_once('/') {
        Some((a, b)) => (a, b),
        None => (path.as_str(), ""),
    };

    // Unauthenticated endpoints first: they work sealed and uninitialized.
    if first == "sys" {
        match rest {
            "health" => return sys::health(&ctx, vault),
            "seal-status" => return sys::seal_status(&ctx, vault),
            "init" => return sys::init(req, &ctx, payload, st).await,
            "unseal" => return sys::unseal(req, &ctx, payload, st).await,
            "seal" if vault.is_sealed() => return sys::already_sealed(&ctx),
            _ => {}
        }
    }
    if vault.is_sealed() {
        return Err(Error::Sealed.into());
    }
    let _principal = authorize(&ctx, vault)?;

    match first {
        "sys" => sys::route(req, &ctx, rest, payload, st).await,
        "secret" => kv::route(req, &ctx, "secret", rest, payload, st).await,
        _ => Err(ApiError::status(
            404,
            format!("no handler for route \"{path}\". route entry not found."),
        )),
    }
}

/// Reads and parses the request body as a JSON object.
pub(crate) async fn json_body(
    req: &HttpRequest,
    payload: web::Payload,
    st: &AppState,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let body = request::read_body(req, payload, &st.limits).await?;
    request::parse_json(&body, &st.limits)
}

/// Runs blocking work (anything that writes and syncs the store) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    match web::block(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(Error::Internal("blocking task failed".into()).into()),
    }
}
