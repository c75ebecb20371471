//! HTTP layer: one dispatch function (Vault's routing needs the custom `LIST` verb and
//! mount-relative paths, so the route table is a `match` you can grep), thin handlers that
//! parse, call `core`, and shape the response.

pub mod approle;
pub mod audit;
pub mod cert;
pub mod kv;
pub mod policy;
pub mod request;
pub mod response;
pub mod roles;
pub mod rotation;
pub mod sys;
pub mod token;

use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

use crate::config::Limits;
use std::net::IpAddr;

use crate::core::policy::{Acl, Caps};
use crate::core::{Error, TokenEntry, Vault};
use request::{Ctx, Op};
use response::{ApiError, ApiResult};

/// Shared state of all workers.
pub struct AppState {
    pub vault: Arc<Vault>,
    pub limits: Limits,
    pub audit: Arc<audit::Audit>,
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
    st.audit.sync_keys(&st.vault);
    let mut info = audit::RequestInfo::new(&req, &st.audit, st.vault.now());
    let mut intent_written = false;
    let id = info.request_id.clone();
    let served = response::REQUEST_ID.scope(
        id,
        route(&req, payload, &st, &mut info, &mut intent_written),
    );
    let resp = match served.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // An unseal or seal in this request changes which audit keys exist.
    st.audit.sync_keys(&st.vault);
    let version = req.extensions().get::<audit::AuditVersion>().map(|v| v.0);
    let rec = info.outcome(resp.status(), version, started.elapsed(), intent_written);
    // The outcome is durable before the response (and any secret in it) leaves; so are the
    // store writes of a handler that left them to this point (`defer_store_sync`).
    let deferred = req.extensions().get::<StoreSyncDeferred>().is_some();
    let appended = if deferred {
        match st.vault.store_sync_start() {
            Ok(ticket) => st.audit.append_after_store_sync(rec, ticket).await,
            Err(e) => {
                tracing::error!(error = %e, "the store cannot sync a change");
                Err(audit::outcome_unknown())
            }
        }
    } else {
        st.audit.append(rec).await
    };
    let resp = match appended {
        Ok(()) => resp,
        Err(e) => e.into_response(),
    };
    // The path never carries a secret (tokens are refused in paths and queries).
    tracing::debug!(
        method = %req.method(),
        path = %info.path,
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

/// Marks a request whose store writes are made but not synced: the dispatch syncs them
/// with the outcome record, before the response leaves (see `Audit::append_after_store_sync`).
struct StoreSyncDeferred;

/// Leaves the sync of this request's store writes to the outcome record: the response
/// still acknowledges nothing that is not durable. (Other requests may see the writes
/// before they are durable, as with any store write between its apply and its sync.)
pub(crate) fn defer_store_sync(req: &HttpRequest) {
    req.extensions_mut().insert(StoreSyncDeferred);
}

/// The authenticated caller of a request.
pub struct Caller {
    pub entry: Arc<TokenEntry>,
    pub token: zeroize::Zeroizing<String>,
    pub acl: Arc<Acl>,
    pub remote: Option<IpAddr>,
}

fn op_name(cap: Caps) -> &'static str {
    match cap {
        c if c == Caps::CREATE => "create",
        c if c == Caps::READ => "read",
        c if c == Caps::UPDATE => "update",
        c if c == Caps::PATCH => "patch",
        c if c == Caps::DELETE => "delete",
        c if c == Caps::LIST => "list",
        _ => "other",
    }
}

impl Caller {
    /// Root, or `sudo` on `path`.
    pub fn has_sudo(&self, path: &str) -> bool {
        self.acl.is_root() || self.acl.capabilities(path).0.contains(Caps::SUDO)
    }
}

/// Paths where a write is `create` when the target does not exist and `update` when it does
/// (§9 of the contract); `None` elsewhere.
fn target_exists(vault: &Vault, path: &str) -> Result<Option<bool>, Error> {
    if let Some(rest) = path
        .strip_prefix("secret/data/")
        .or_else(|| path.strip_prefix("secret/metadata/"))
    {
        return vault.kv_exists("secret", rest).map(Some);
    }
    if let Some(name) = path.strip_prefix("auth/approle/role/") {
        if !name.contains('/') {
            return vault.approle_role_exists(name).map(Some);
        }
    }
    if let Some(name) = path.strip_prefix("auth/token/roles/") {
        return vault.token_role_get(name).map(|r| Some(r.is_some()));
    }
    Ok(None)
}

/// Paths that need `sudo` besides the capability.
fn needs_sudo(path: &str) -> bool {
    matches!(
        path,
        "sys/seal" | "sys/rotate" | "sys/key-status" | "sys/audit" | "sys/roles/reload"
    ) || path.starts_with("sys/audit/")
}

/// The capability a request needs, and the path it is checked on.
fn required(ctx: &Ctx, vault: &Vault) -> Result<(Caps, String), Error> {
    let path = ctx.path.clone();
    Ok(match ctx.op {
        Op::Read | Op::Head => (Caps::READ, path),
        Op::List => {
            // LIST is checked on the folder with a trailing '/'
            let p = if path.ends_with('/') {
                path
            } else {
                format!("{path}/")
            };
            (Caps::LIST, p)
        }
        Op::Delete => (Caps::DELETE, path),
        Op::Patch => (Caps::PATCH, path),
        // hvac reads lookup-self with GET; POST does the same and needs the same grant
        Op::Write if path == "auth/token/lookup-self" => (Caps::READ, path),
        Op::Write => match target_exists(vault, &path)? {
            Some(false) => (Caps::CREATE, path),
            _ => (Caps::UPDATE, path),
        },
        Op::Other => (Caps::NONE, path),
    })
}

/// Authenticates the token and checks the ACL. Token failures are `permission denied`;
/// an ACL denial is the multierror form (§2).
async fn authorize(
    req: &HttpRequest,
    ctx: &Ctx,
    st: &AppState,
    info: &mut audit::RequestInfo,
) -> Result<Caller, ApiError> {
    let token = ctx.token.clone().ok_or(Error::BadToken)?;
    let remote = req.peer_addr().map(|a| a.ip());
    let vault = st.vault.clone();
    let entry = match vault.authenticate_cached(&token, remote)? {
        Some(e) => e,
        // Not cached: a use-limited token writes its count durably, off the async workers.
        None => {
            let t = token.clone();
            blocking(move || vault.authenticate(&t, remote)).await?
        }
    };
    info.set_actor(&entry);
    let acl = st.vault.acl(&entry.policies)?;
    let (cap, path) = required(ctx, &st.vault)?;
    if cap.is_empty() {
        return Err(ApiError::method_not_allowed());
    }
    info.operation = op_name(cap);
    let d = acl.check(&path, cap, needs_sudo(&ctx.path));
    info.policy = d.rule.clone();
    if !d.allowed {
        return Err(Error::PermissionDenied.into());
    }
    Ok(Caller {
        entry,
        token,
        acl,
        remote,
    })
}

fn is_change(op: Op) -> bool {
    matches!(op, Op::Write | Op::Patch | Op::Delete)
}

/// Writes the intent record of a change; nothing is changed unless it is durable.
async fn intent(
    st: &AppState,
    info: &audit::RequestInfo,
    written: &mut bool,
) -> Result<(), ApiError> {
    st.audit.append(info.intent()).await?;
    *written = true;
    Ok(())
}

async fn route(
    req: &HttpRequest,
    payload: web::Payload,
    st: &AppState,
    info: &mut audit::RequestInfo,
    intent_written: &mut bool,
) -> ApiResult {
    let ctx = request::parse(req, &st.limits)?;
    info.set_ctx(&ctx, &st.audit, None);
    // Bodies of changes are read first, so the intent record can carry them (HMAC'd).
    let payload = if is_change(ctx.op) {
        audit::take_body(req, payload, st, info).await?
    } else {
        payload
    };
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
            "init" | "unseal" if is_change(ctx.op) => {
                intent(st, info, intent_written).await?;
                return if rest == "init" {
                    sys::init(req, &ctx, payload, st).await
                } else {
                    sys::unseal(req, &ctx, payload, st).await
                };
            }
            "init" => return sys::init(req, &ctx, payload, st).await,
            "unseal" => return sys::unseal(req, &ctx, payload, st).await,
            "seal" if vault.is_sealed() => return sys::already_sealed(&ctx),
            _ => {}
        }
    }
    if vault.is_sealed() {
        return Err(Error::Sealed.into());
    }
    // Logins: the credential is in the body (or the TLS session), not a token.
    match path.as_str() {
        "auth/approle/login" | "auth/cert/login" => {
            info.operation = "login";
            intent(st, info, intent_written).await?;
            return if path == "auth/approle/login" {
                approle::login(req, &ctx, payload, st).await
            } else {
                cert::login(req, &ctx, payload, st).await
            };
        }
        _ => {}
    }
    let caller = authorize(req, &ctx, st, info).await?;
    if is_change(ctx.op) {
        intent(st, info, intent_written).await?;
    }

    match first {
        "sys"
            if rest.starts_with("policies/")
                || rest == "policy"
                || rest.starts_with("policy/")
                || rest == "capabilities-self" =>
        {
            policy::route(req, &ctx, rest, payload, st, &caller).await
        }
        "sys"
            if rest == "audit"
                || rest.starts_with("audit/")
                || rest.starts_with("audit-hash/")
                || rest.starts_with("audit-log/") =>
        {
            audit::route(req, &ctx, rest, payload, st).await
        }
        "sys" => sys::route(req, &ctx, rest, payload, st).await,
        "secret" => kv::route(req, &ctx, "secret", rest, payload, st, &caller).await,
        "auth" if rest.starts_with("approle/") => {
            approle::route(req, &ctx, &rest["approle/".len()..], payload, st, &caller).await
        }
        "auth" if rest.starts_with("token/") => {
            token::route(req, &ctx, &rest["token/".len()..], payload, st, &caller).await
        }
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
