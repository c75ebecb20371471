//! Every request in the audit journal: an intent record before a change, an outcome record
//! before any response leaves (so no secret is returned and no change acknowledged unless its
//! record is durable), events for background actions, and the auditors' endpoints
//! (`sys/audit-hash`, `sys/audit-log/public-key`, `sys/audit-log/export`).
//!
//! Values are never written in clear: request bodies, query values and header values are
//! HMAC-SHA256'd leaf by leaf under the audit key (`hmac-sha256:<hex>`). Identities, paths,
//! operations, statuses and versions stay in clear so the log can be searched. While the
//! vault is sealed there is no audit key: values are then replaced by `"redacted"`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::request::{self, Ctx, Op};
use super::response::{self, ApiError, ApiResult};
use super::{json_body, AppState};
use crate::audit_log::{self, ExportFilter, ExportFormat, Journal};
use crate::core::clock::rfc3339;
use crate::core::crypto::label;
use crate::core::{TokenEntry, Vault};
use crate::store::Store;

/// The journal plus the keys it needs, which exist only while the vault is unsealed.
pub struct Audit {
    journal: Journal,
    hmac_key: RwLock<Option<Zeroizing<[u8; 32]>>>,
    keyed: AtomicBool,
}

/// Raised when the outcome of a change whose store writes were left to it (see
/// `append_after_store_sync`) cannot be made durable: the change was made, but whether it
/// survives is not known, and the journal has its intent record only.
pub fn outcome_unknown() -> ApiError {
    ApiError::status(
        503,
        "the change was made but could not be confirmed durable or recorded: it may or may not be in effect",
    )
}

/// Raised when a record cannot be made durable: the request gets 503.
pub fn unavailable() -> ApiError {
    ApiError::status(
        503,
        "audit journal unavailable: the request was not recorded and not performed",
    )
}

impl Audit {
    /// Opens the journal (in `dir`) before the vault is unsealed; keys arrive with
    /// `sync_keys`.
    pub fn open(
        dir: &std::path::Path,
        cfg: audit_log::JournalConfig,
        store: Arc<dyn Store>,
    ) -> Result<Audit, audit_log::AuditError> {
        Ok(Audit {
            journal: Journal::open_unsigned(dir, cfg, store)?,
            hmac_key: RwLock::new(None),
            keyed: AtomicBool::new(false),
        })
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Derives the audit keys after an unseal, drops them after a seal. Cheap when nothing
    /// changed (one atomic load and the vault's state).
    pub fn sync_keys(&self, vault: &Vault) {
        let sealed = vault.is_sealed();
        let keyed = self.keyed.load(Ordering::Acquire);
        if !sealed && !keyed {
            let Ok(kr) = vault.keyring() else { return };
            let mut hk = Zeroizing::new([0u8; 32]);
            hk.copy_from_slice(kr.stable_subkey(label::AUDIT_HMAC).expose());
            let seed = kr.stable_subkey(label::AUDIT_SIGNING);
            self.journal
                .set_signing_key(ed25519_dalek::SigningKey::from_bytes(seed.expose()));
            *self.hmac_key.write().unwrap_or_else(|p| p.into_inner()) = Some(hk);
            self.keyed.store(true, Ordering::Release);
        } else if sealed && keyed {
            *self.hmac_key.write().unwrap_or_else(|p| p.into_inner()) = None;
            self.journal.clear_signing_key();
            self.keyed.store(false, Ordering::Release);
        }
    }

    /// Every leaf of `v` HMAC'd under the audit key (or `"redacted"` while sealed).
    pub fn redact(&self, v: &Value) -> Value {
        match &*self.hmac_key.read().unwrap_or_else(|p| p.into_inner()) {
            Some(k) => audit_log::redact(v, k),
            None => blank(v),
        }
    }

    /// The HMAC of one value, for `sys/audit-hash`; `None` while sealed.
    pub fn hash(&self, v: &Value) -> Option<String> {
        self.hmac_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|k| audit_log::hmac_value(k, v))
    }

    /// Appends a record and waits until it is durable.
    pub async fn append(&self, rec: Map<String, Value>) -> Result<(), ApiError> {
        match self.journal.append(rec).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "audit record not durable: request refused");
                Err(unavailable())
            }
        }
    }

    /// `append` for the outcome of a request whose store writes are not synced yet
    /// (`ticket` from `Store::sync_start`): the record waits in the journal's queue until
    /// they are durable, while the store syncs on its own thread.
    pub async fn append_after_store_sync(
        &self,
        rec: Map<String, Value>,
        ticket: u64,
    ) -> Result<(), ApiError> {
        match self.journal.append_after_store_sync(rec, ticket).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "change or its audit outcome not durable");
                Err(outcome_unknown())
            }
        }
    }

    /// A background action (token tidy, rotation step, ...), appended durably.
    pub fn event_blocking(&self, action: &str, fields: Map<String, Value>) {
        let mut rec = fields;
        rec.insert("type".into(), json!("event"));
        rec.insert("operation".into(), json!(action));
        rec.insert("actor".into(), json!({"display_name": "arca", "auth_method": "internal", "accessor": "", "policies": []}));
        if let Err(e) = self.journal.append_blocking(rec) {
            tracing::error!(error = %e, action, "audit event not durable");
        }
    }
}

fn blank(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), blank(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(blank).collect()),
        _ => json!("redacted"),
    }
}

/// What one request contributes to its records, filled as it goes through the layers.
pub struct RequestInfo {
    pub request_id: String,
    pub time: String,
    pub remote: String,
    pub method: String,
    pub path: String,
    pub operation: &'static str,
    pub actor: Value,
    pub policy: Option<String>,
    pub body: Option<Value>,
    pub query: Option<Value>,
    pub headers: Value,
}

impl RequestInfo {
    pub fn new(
        req: &HttpRequest,
        audit: &Audit,
        now: chrono::DateTime<chrono::Utc>,
    ) -> RequestInfo {
        let mut headers = Map::new();
        for (k, v) in req.headers() {
            let val = json!(String::from_utf8_lossy(v.as_bytes()));
            headers.insert(k.as_str().to_string(), audit.redact(&val));
        }
        let query: Map<String, Value> = form_urlencoded::parse(req.query_string().as_bytes())
            .map(|(k, v)| (k.into_owned(), json!(v)))
            .collect();
        RequestInfo {
            request_id: response::new_request_id(),
            time: rfc3339(now),
            remote: req
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default(),
            method: req.method().to_string(),
            path: Self::sanitize(audit, req.uri().path().trim_start_matches("/v1/")),
            operation: "unknown",
            actor: anonymous(),
            policy: None,
            body: None,
            query: if query.is_empty() {
                None
            } else {
                Some(audit.redact(&Value::Object(query)))
            },
            headers: Value::Object(headers),
        }
    }

    /// A token (or accessor) put in a URL path by an old client (`auth/token/lookup/<token>`)
    /// is never recorded or logged in clear: the segment after such a route is HMAC'd.
    fn sanitize(audit: &Audit, path: &str) -> String {
        const TOKEN_ROUTES: [&str; 7] = [
            "auth/token/lookup/",
            "auth/token/revoke/",
            "auth/token/renew/",
            "auth/token/lookup-accessor/",
            "auth/token/revoke-accessor/",
            "auth/token/renew-accessor/",
            "auth/token/revoke-orphan/",
        ];
        for r in TOKEN_ROUTES {
            if let Some(rest) = path.strip_prefix(r) {
                if !rest.is_empty() {
                    let hashed = audit.redact(&json!(rest));
                    return format!("{r}{}", hashed.as_str().unwrap_or("redacted"));
                }
            }
        }
        path.to_string()
    }

    pub fn set_ctx(&mut self, ctx: &Ctx, audit: &Audit, exists: Option<bool>) {
        self.path = Self::sanitize(audit, &ctx.path);
        self.operation = match (ctx.op, exists) {
            (Op::Read, _) => "read",
            (Op::Head, _) => "head",
            (Op::List, _) => "list",
            (Op::Write, Some(false)) => "create",
            (Op::Write, _) => "update",
            (Op::Patch, _) => "patch",
            (Op::Delete, _) => "delete",
            (Op::Other, _) => "other",
        };
    }

    pub fn set_actor(&mut self, e: &TokenEntry) {
        self.actor = json!({
            "accessor": e.accessor,
            "display_name": e.display_name,
            "policies": e.policies,
            "role": e.role,
            "auth_method": e.auth_method,
        });
    }

    fn base(&self, ty: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("type".into(), json!(ty));
        m.insert(
            "time".into(),
            json!(if ty == "request" {
                self.time.clone()
            } else {
                rfc3339(chrono::Utc::now())
            }),
        );
        m.insert("request_id".into(), json!(self.request_id));
        m.insert("actor".into(), self.actor.clone());
        m.insert("operation".into(), json!(self.operation));
        m.insert("method".into(), json!(self.method));
        m.insert("path".into(), json!(self.path));
        m.insert("remote_addr".into(), json!(self.remote));
        m
    }

    /// The record written before a change is made.
    pub fn intent(&self) -> Map<String, Value> {
        let mut m = self.base("request");
        m.insert(
            "request".into(),
            json!({"body": self.body, "query": self.query, "headers": self.headers}),
        );
        if let Some(p) = &self.policy {
            m.insert("policy".into(), json!(p));
        }
        m
    }

    /// The record written after the request, before its response leaves.
    pub fn outcome(
        &self,
        status: StatusCode,
        version: Option<u64>,
        elapsed: Duration,
        intent_written: bool,
    ) -> Map<String, Value> {
        let mut m = self.base("response");
        let outcome = if status.is_success() || status.is_informational() || status.is_redirection()
        {
            "allowed"
        } else if status == StatusCode::FORBIDDEN {
            "denied"
        } else {
            "error"
        };
        m.insert("outcome".into(), json!(outcome));
        m.insert("status".into(), json!(status.as_u16()));
        m.insert("policy".into(), json!(self.policy));
        m.insert("version".into(), json!(version));
        m.insert(
            "duration_ms".into(),
            json!((elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0),
        );
        if !intent_written {
            // Reads and refused requests have no intent record: their request goes here.
            m.insert(
                "request".into(),
                json!({"body": self.body, "query": self.query, "headers": self.headers}),
            );
        }
        m
    }
}

fn anonymous() -> Value {
    json!({"accessor": "", "display_name": "anonymous", "policies": [], "auth_method": ""})
}

/// The KV version a handler read or wrote, for the outcome record.
#[derive(Clone, Copy)]
pub struct AuditVersion(pub u64);

/// Reads the body up front (under the limits) so the intent record can carry it, and hands
/// the handler an equivalent payload.
pub async fn take_body(
    req: &HttpRequest,
    payload: web::Payload,
    st: &AppState,
    info: &mut RequestInfo,
) -> Result<web::Payload, ApiError> {
    use actix_web::FromRequest;
    let bytes = request::read_body(req, payload, &st.limits).await?;
    if !bytes.is_empty() {
        info.body = Some(match serde_json::from_slice::<Value>(&bytes) {
            // The JSON limits before one HMAC per leaf, not after.
            Ok(v) => {
                request::check_json_limits(&v, &st.limits)?;
                st.audit.redact(&v)
            }
            Err(_) => json!({"unparsed_bytes": bytes.len()}),
        });
    }
    let mut dp = actix_web::dev::Payload::from(bytes);
    web::Payload::from_request(req, &mut dp)
        .await
        .map_err(|_| ApiError::status(500, "internal error"))
}

// ---------------------------------------------------------------- auditors' endpoints

/// `sys/audit-hash/:name`, `sys/audit-log/public-key`, `sys/audit-log/export`, `sys/audit`.
pub async fn route(
    req: &HttpRequest,
    ctx: &Ctx,
    rest: &str,
    payload: web::Payload,
    st: &AppState,
) -> ApiResult {
    let audit = &st.audit;
    match (rest, ctx.op) {
        ("audit" | "audit/", Op::Read) => Ok(response::ok_with_top_level(json!({
            "file/": {
                "type": "file",
                "description": "arca's durable, hash-chained journal (configured in the config file)",
                "local": false,
                "path": "file/",
                "options": {"file_path": audit.journal.dir().display().to_string()},
            }
        }))),
        (p, Op::Write) if p.starts_with("audit/") => Err(ApiError::bad(
            "cannot enable audit device via API; use declarative, config-based audit device management instead",
        )),
        (p, Op::Delete) if p.starts_with("audit/") => Err(ApiError::bad(
            "cannot disable audit device via API; use declarative, config-based audit device management instead",
        )),
        (p, Op::Write) if p.starts_with("audit-hash/") => {
            let b = json_body(req, payload, st).await?;
            let input = b.get("input").cloned().ok_or_else(|| ApiError::bad("missing input"))?;
            let hash = audit.hash(&input).ok_or_else(|| ApiError::from(crate::core::Error::Sealed))?;
            Ok(response::ok(json!({ "hash": hash })))
        }
        ("audit-log/public-key", Op::Read) => {
            let (seq, hash) = audit.journal.head();
            Ok(response::ok(json!({
                "public_key": audit.journal.public_key_pem(),
                "public_key_hex": audit.journal.public_key_hex(),
                "algorithm": "ed25519",
                "head_seq": seq,
                "head_hash": hash,
            })))
        }
        ("audit-log/export", Op::Read) => export(ctx, st),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Streams the filtered journal; constant memory whatever its size.
fn export(ctx: &Ctx, st: &AppState) -> ApiResult {
    let format: ExportFormat = match ctx.query("format") {
        None | Some("") => ExportFormat::Jsonl,
        Some(f) => f
            .parse()
            .map_err(|e: audit_log::AuditError| ApiError::bad(e.to_string()))?,
    };
    let pairs: Vec<(&str, &str)> = ctx
        .query
        .iter()
        .filter(|(k, _)| k != "format")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let filter: ExportFilter =
        ExportFilter::from_pairs(pairs).map_err(|e| ApiError::bad(e.to_string()))?;
    let paths: Vec<PathBuf> = st.audit.journal.segments().map_err(|_| unavailable())?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(16);
    std::thread::spawn(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(64 * 1024),
        };
        let res = audit_log::export(&paths, &filter, format, &mut w);
        let _ = std::io::Write::flush(&mut w);
        if let Err(e) = res {
            tracing::warn!(error = %e, "audit export failed");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let ct = match format {
        ExportFormat::Csv => "text/csv; charset=utf-8",
        ExportFormat::Jsonl => "application/x-ndjson",
    };
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(HttpResponse::Ok()
        .insert_header(("content-type", ct))
        .insert_header(("cache-control", "no-store"))
        .streaming(stream))
}

struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<web::Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = web::Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}
