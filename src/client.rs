//! Typed HTTP client shared by the CLI and the tests.
//!
//! Speaks the Vault-compatible API of `vault-api-subset.md`: a generic [`Client::request`] for
//! any endpoint (tests use it to check exact status codes and bodies) and typed helpers for the
//! sys and KV v2 endpoints the CLI needs.
//!
//! The client is blocking (`reqwest::blocking`); do not call it from inside an async runtime.
//!
//! The token is sent as `X-Vault-Token` and marked sensitive; it never appears in an error
//! message or in `Debug` output. Redirects are not followed, so the token is never forwarded to
//! another host.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

/// Address used when neither an argument nor the environment names one.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8200";
/// Header carrying the client token.
pub const TOKEN_HEADER: &str = "X-Vault-Token";
/// Content type that `PATCH` requests must carry.
pub const MERGE_PATCH_JSON: &str = "application/merge-patch+json";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Characters escaped in a path segment: everything but RFC 3986 unreserved characters, so a
/// key containing `?`, `#`, `%` or spaces reaches the server as one literal segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Errors of the client. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-success status (other than a bare 404 or "sealed").
    #[error("{}", describe_http(*status, errors))]
    Http { status: u16, errors: Vec<String> },
    /// `404` with no message: the secret, version or folder does not exist.
    #[error("not found")]
    NotFound,
    /// `503 Vault is sealed`.
    #[error("the server is sealed")]
    Sealed,
    /// The request never got an HTTP answer (connection refused, TLS failure, timeout...).
    #[error("{0}")]
    Transport(String),
    /// A bad argument: unparsable address, unreadable CA file, invalid path or header.
    #[error("{0}")]
    InvalidInput(String),
    /// The server answered with a body that does not have the expected shape.
    #[error("unexpected response from the server: {0}")]
    Decode(String),
}

impl ClientError {
    /// True for "does not exist" answers: a bare 404, or a 404 carrying a message (unknown
    /// mount, unknown role...).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ClientError::NotFound | ClientError::Http { status: 404, .. }
        )
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            ClientError::NotFound => Some(404),
            ClientError::Sealed => Some(503),
            _ => None,
        }
    }
}

/// Renders a server error: the `errors` texts (Go multierror wrappers removed) and the status.
fn describe_http(status: u16, errors: &[String]) -> String {
    let msgs: Vec<String> = errors
        .iter()
        .flat_map(|e| unwrap_multierror(e))
        .filter(|m| !m.is_empty())
        .collect();
    if msgs.is_empty() {
        format!("server returned HTTP {status}")
    } else {
        format!("{} (HTTP {status})", msgs.join("; "))
    }
}

/// `"1 error occurred:\n\t* permission denied\n\n"` -> `["permission denied"]`; other texts are
/// returned trimmed.
pub fn unwrap_multierror(msg: &str) -> Vec<String> {
    let trimmed = msg.trim();
    let first = trimmed.lines().next().unwrap_or_default();
    if first.ends_with("occurred:") && first.contains("error") {
        trimmed
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().strip_prefix("* "))
            .map(|l| l.trim().to_string())
            .collect()
    } else {
        vec![trimmed.to_string()]
    }
}

/// A raw answer of the server.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl ApiResponse {
    /// The body as JSON; `None` when empty or not JSON.
    pub fn json(&self) -> Option<Value> {
        if self.body.trim().is_empty() {
            return None;
        }
        serde_json::from_str(&self.body).ok()
    }

    /// The `errors` array of an error body (empty if absent).
    pub fn errors(&self) -> Vec<String> {
        self.json()
            .and_then(|v| match v.get("errors") {
                Some(Value::Array(items)) => Some(
                    items
                        .iter()
                        .map(|e| match e {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The value of a response header, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Maps a non-success answer to the matching [`ClientError`].
    pub fn error_for_status(self) -> Result<ApiResponse, ClientError> {
        if self.is_success() {
            return Ok(self);
        }
        let errors = self.errors();
        Err(match self.status {
            404 if errors.iter().all(|e| e.trim().is_empty()) => ClientError::NotFound,
            503 if errors.iter().any(|e| e.contains("sealed")) => ClientError::Sealed,
            status => ClientError::Http { status, errors },
        })
    }

    /// The whole body parsed as `T` (raw sys endpoints such as seal-status).
    fn parse<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_str(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The envelope's `data` parsed as `T`.
    fn data<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        let mut v = self
            .json()
            .ok_or_else(|| ClientError::Decode("expected a JSON body".into()))?;
        match v.get_mut("data").map(Value::take) {
            Some(Value::Null) | None => Err(ClientError::Decode("response has no data".into())),
            Some(d) => serde_json::from_value(d).map_err(|e| ClientError::Decode(e.to_string())),
        }
    }
}

/// The blocking HTTP client.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<Zeroizing<String>>,
    http: reqwest::blocking::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The certificates of a PEM CA file (`--ca-cert`); a file without one is an error, not
/// a silent fall-back to the system's roots.
pub fn ca_certs(path: &Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let pem = std::fs::read(path).map_err(|e| {
        ClientError::InvalidInput(format!("reading CA file {}: {e}", path.display()))
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        ClientError::InvalidInput(format!("parsing CA file {}: {e}", path.display()))
    })?;
    if certs.is_empty() {
        return Err(ClientError::InvalidInput(format!(
            "CA file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reads the first non-empty variable among `names`.
/// The first of the environment variables `names` that is set and not blank.
pub fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| std::env::var(n).ok())
        .find(|v| !v.trim().is_empty())
}

impl Client {
    /// A client for the server at `addr` (`http://` or `https://` URL). `ca_file` is a PEM
    /// bundle of extra trusted roots for TLS.
    pub fn new(
        addr: &str,
        token: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<Client, ClientError> {
        let url = reqwest::Url::parse(addr.trim())
            .map_err(|e| ClientError::InvalidInput(format!("invalid address {addr:?}: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(ClientError::InvalidInput(format!(
                "invalid address {addr:?}: the scheme must be http or https"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ClientError::InvalidInput(format!(
                "invalid address {addr:?}: no query or fragment allowed"
            )));
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        let mut builder = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("arca-client/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            for cert in ca_certs(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::InvalidInput(format!("building the HTTP client: {e}")))?;
        Ok(Client {
            base,
            token: token.filter(|t| !t.is_empty()).map(Zeroizing::new),
            http,
        })
    }

    /// The token named by `ARCA_TOKEN`, else `VAULT_TOKEN`.
    pub fn token_from_env() -> Option<String> {
        env_first(&["ARCA_TOKEN", "VAULT_TOKEN"]).map(|t| t.trim().to_string())
    }

    /// The same client (connection pool and TLS settings) with another token.
    pub fn with_token(&self, token: Option<String>) -> Client {
        Client {
            base: self.base.clone(),
            token: token.filter(|t| !t.is_empty()).map(Zeroizing::new),
            http: self.http.clone(),
        }
    }

    /// The server address, without a trailing `/`.
    pub fn address(&self) -> &str {
        &self.base
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Sends `method` (any verb, including `LIST`) to `path` (e.g. `/v1/secret/data/x?version=2`)
    /// with an optional JSON body. `PATCH` bodies are sent as `application/merge-patch+json`.
    /// Any status is returned as `Ok`; only transport failures are errors.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, ClientError> {
        // The encoded body may hold secrets: wipe our copy once sent.
        let bytes = body
            .map(|b| serde_json::to_vec(b).map(Zeroizing::new))
            .transpose()
            .map_err(|e| ClientError::InvalidInput(format!("encoding the body: {e}")))?;
        self.request_with_headers(method, path, &[], bytes.as_ref().map(|b| b.as_slice()))
    }

    /// Like [`Client::request`] with a raw body and extra headers, which replace the defaults
    /// (`Content-Type`, and `X-Vault-Token` when given).
    pub fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<ApiResponse, ClientError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ClientError::InvalidInput(format!("invalid HTTP method {method:?}")))?;
        if !path.starts_with('/') {
            return Err(ClientError::InvalidInput(format!(
                "request path must start with '/': {path:?}"
            )));
        }
        let mut map = HeaderMap::new();
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(token.as_str()).map_err(|_| {
                ClientError::InvalidInput(
                    "the token contains characters not allowed in a header".into(),
                )
            })?;
            value.set_sensitive(true);
            map.insert(TOKEN_HEADER, value);
        }
        if body.is_some() {
            let ct = if method == reqwest::Method::PATCH {
                MERGE_PATCH_JSON
            } else {
                "application/json"
            };
            map.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ClientError::InvalidInput(format!("invalid header name {name:?}")))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                ClientError::InvalidInput(format!("invalid value for header {name}"))
            })?;
            if name.as_str().eq_ignore_ascii_case(TOKEN_HEADER)
                || name == reqwest::header::AUTHORIZATION
            {
                value.set_sensitive(true);
            }
            map.insert(name, value);
        }
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.clone(), &url).headers(map);
        if let Some(b) = body {
            req = req.body(b.to_vec());
        }
        let resp = req.send().map_err(|e| transport_error(&method, path, e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().map_err(|e| transport_error(&method, path, e))?;
        Ok(ApiResponse {
            status,
            headers,
            body,
        })
    }

    /// `request` then [`ApiResponse::error_for_status`].
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, ClientError> {
        self.request(method, path, body)?.error_for_status()
    }

    // ------------------------------------------------------------------ sys

    /// `GET /v1/sys/init`: whether the server is initialized.
    pub fn sys_init_status(&self) -> Result<bool, ClientError> {
        #[derive(Deserialize)]
        struct Init {
            initialized: bool,
        }
        Ok(self
            .call("GET", "/v1/sys/init", None)?
            .parse::<Init>()?
            .initialized)
    }

    /// `PUT /v1/sys/init`: creates the root key, split into `shares` unseal keys of which
    /// `threshold` unseal the server.
    pub fn sys_init(&self, shares: u32, threshold: u32) -> Result<InitResponse, ClientError> {
        let body = json!({"secret_shares": shares, "secret_threshold": threshold});
        self.call("PUT", "/v1/sys/init", Some(&body))?.parse()
    }

    /// `PUT /v1/sys/unseal` with one key share (hex or base64).
    pub fn sys_unseal(&self, key: &str) -> Result<SealStatus, ClientError> {
        let body = json!({ "key": key });
        self.call("PUT", "/v1/sys/unseal", Some(&body))?.parse()
    }

    /// `PUT /v1/sys/unseal {"reset":true}`: forgets the shares given so far.
    pub fn sys_unseal_reset(&self) -> Result<SealStatus, ClientError> {
        let body = json!({ "reset": true });
        self.call("PUT", "/v1/sys/unseal", Some(&body))?.parse()
    }

    /// `PUT /v1/sys/seal` (root or sudo token).
    pub fn sys_seal(&self) -> Result<(), ClientError> {
        self.call("PUT", "/v1/sys/seal", None).map(drop)
    }

    /// `GET /v1/sys/seal-status`.
    pub fn sys_seal_status(&self) -> Result<SealStatus, ClientError> {
        self.call("GET", "/v1/sys/seal-status", None)?.parse()
    }

    /// `GET /v1/sys/health`. The non-200 codes that describe a state (sealed 503, not
    /// initialized 501, standby 429/472/473) are answers, not errors: see [`Health::status`].
    pub fn sys_health(&self) -> Result<Health, ClientError> {
        let resp = self.request("GET", "/v1/sys/health", None)?;
        match resp.status {
            200 | 429 | 472 | 473 | 501 | 503 if resp.json().is_some() => {
                let mut h: Health = resp.parse()?;
                h.status = resp.status;
                Ok(h)
            }
            _ => resp.error_for_status().and_then(|r| r.parse()),
        }
    }

    /// `GET /v1/sys/key-status`: the active keyring term. Returns the envelope's `data`
    /// (or the raw body when the server sends no envelope).
    pub fn sys_key_status(&self) -> Result<Value, ClientError> {
        let resp = self.call("GET", "/v1/sys/key-status", None)?;
        let body = resp
            .json()
            .ok_or_else(|| ClientError::Decode("expected a JSON body".into()))?;
        Ok(envelope_data_or_body(body))
    }

    /// `PUT /v1/sys/rotate`: adds a keyring term. Returns the `data` of a 200 answer, or
    /// `Value::Null` for 204.
    pub fn sys_rotate(&self) -> Result<Value, ClientError> {
        let resp = self.call("PUT", "/v1/sys/rotate", None)?;
        Ok(resp
            .json()
            .map(envelope_data_or_body)
            .unwrap_or(Value::Null))
    }

    // ------------------------------------------------------------------ kv v2

    /// The KV v2 engine mounted at `mount` (e.g. `"secret"`).
    pub fn kv<'a>(&'a self, mount: &'a str) -> KvV2<'a> {
        KvV2 {
            client: self,
            mount,
        }
    }
}

fn envelope_data_or_body(body: Value) -> Value {
    match body.get("data") {
        Some(d) if !d.is_null() => d.clone(),
        _ => body,
    }
}

/// A transport error without the URL (which could carry user info) but with the cause chain.
fn transport_error(method: &reqwest::Method, path: &str, e: reqwest::Error) -> ClientError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut msg = format!("{method} {}: {kind}", strip_query(path));
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    let mut last = String::new();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !last.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        last = text;
        source = s.source();
    }
    ClientError::Transport(msg)
}

fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// Percent-encodes each `/`-separated segment of `key`. Rejects `.` and `..` segments, which
/// URL normalisation would otherwise resolve on the client side.
pub fn encode_key(key: &str) -> Result<String, ClientError> {
    let mut out = Vec::new();
    for seg in key.split('/') {
        if seg == "." || seg == ".." {
            return Err(ClientError::InvalidInput(format!(
                "invalid secret path {key:?}: '.' and '..' segments are not allowed"
            )));
        }
        out.push(utf8_percent_encode(seg, SEGMENT).to_string());
    }
    Ok(out.join("/"))
}

/// The API path of a KV v2 operation: `/v1/<mount>/<op>/<key>` (`op` is `data`, `metadata`,
/// `delete`, `undelete` or `destroy`).
pub fn kv_api_path(mount: &str, op: &str, key: &str) -> Result<String, ClientError> {
    let mount = mount.trim_matches('/');
    if mount.is_empty() {
        return Err(ClientError::InvalidInput("empty mount path".into()));
    }
    Ok(format!(
        "/v1/{}/{op}/{}",
        encode_key(mount)?,
        encode_key(key.trim_start_matches('/'))?
    ))
}

// ---------------------------------------------------------------------- typed bodies

/// `GET /v1/sys/seal-status` and the answer of `PUT /v1/sys/unseal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealStatus {
    #[serde(rename = "type", default)]
    pub seal_type: String,
    pub initialized: bool,
    pub sealed: bool,
    /// Threshold: shares needed to unseal.
    #[serde(default)]
    pub t: u32,
    /// Number of shares.
    #[serde(default)]
    pub n: u32,
    /// Shares given so far in the current unseal attempt.
    #[serde(default)]
    pub progress: u32,
    #[serde(default)]
    pub nonce: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_type: Option<String>,
    /// Fields this client does not model (kept for `--format json`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `PUT /v1/sys/init` answer. Its `Debug` output hides the keys and the root token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct InitResponse {
    /// Unseal key shares, hex.
    pub keys: Vec<String>,
    /// The same shares, base64.
    #[serde(default)]
    pub keys_base64: Vec<String>,
    pub root_token: String,
}

impl fmt::Debug for InitResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitResponse")
            .field("keys", &format_args!("<{} redacted>", self.keys.len()))
            .field("root_token", &"<redacted>")
            .finish()
    }
}

/// `GET /v1/sys/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// The HTTP status of the answer (200 active, 503 sealed, 501 not initialized, ...).
    #[serde(skip)]
    pub status: u16,
    pub initialized: bool,
    pub sealed: bool,
    #[serde(default)]
    pub standby: bool,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_time_utc: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Metadata of one KV version (the answer of a write, and `metadata` of a read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMetadata {
    #[serde(default)]
    pub created_time: String,
    #[serde(default)]
    pub custom_metadata: Option<BTreeMap<String, String>>,
    /// RFC 3339 time of the soft delete, `""` if not deleted.
    #[serde(default)]
    pub deletion_time: String,
    #[serde(default)]
    pub destroyed: bool,
    pub version: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A KV v2 read. `data` is `None` when the version is soft-deleted or destroyed (the server
/// answers 404 with the metadata in that case).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvSecret {
    pub data: Option<Map<String, Value>>,
    pub metadata: VersionMetadata,
}

impl KvSecret {
    /// True when the version exists but its data was deleted or destroyed.
    pub fn is_deleted(&self) -> bool {
        self.data.is_none()
    }
}

/// State of one version in the key metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionState {
    #[serde(default)]
    pub created_time: String,
    #[serde(default)]
    pub deletion_time: String,
    #[serde(default)]
    pub destroyed: bool,
}

/// `GET /v1/<mount>/metadata/<key>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvMetadata {
    #[serde(default)]
    pub cas_required: bool,
    #[serde(default)]
    pub created_time: String,
    #[serde(default)]
    pub current_version: u64,
    #[serde(default)]
    pub custom_metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub delete_version_after: String,
    #[serde(default)]
    pub max_versions: u64,
    #[serde(default)]
    pub oldest_version: u64,
    #[serde(default)]
    pub updated_time: String,
    /// Retained versions by number.
    #[serde(default)]
    pub versions: BTreeMap<u64, VersionState>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `POST /v1/<mount>/metadata/<key>`: fields left `None` keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cas_required: Option<bool>,
    /// Go-style duration (`"1h"`, `"30m"`) or seconds; `"0s"` disables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_version_after: Option<String>,
    /// Replaces the whole custom metadata map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_metadata: Option<BTreeMap<String, String>>,
}

/// Typed helpers for a KV v2 mount; from [`Client::kv`]. Keys are relative to the mount
/// (`"db/prod"`).
#[derive(Debug, Clone, Copy)]
pub struct KvV2<'a> {
    client: &'a Client,
    mount: &'a str,
}

impl KvV2<'_> {
    fn path(&self, op: &str, key: &str) -> Result<String, ClientError> {
        if key.trim_matches('/').is_empty() {
            return Err(ClientError::InvalidInput("empty secret path".into()));
        }
        kv_api_path(self.mount, op, key)
    }

    /// Writes a new version. `cas`: `Some(0)` only creates, `Some(n)` only if the current
    /// version is `n`.
    pub fn put(
        &self,
        key: &str,
        data: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<VersionMetadata, ClientError> {
        let mut body = json!({ "data": data });
        if let Some(cas) = cas {
            body["options"] = json!({ "cas": cas });
        }
        self.client
            .call("PUT", &self.path("data", key)?, Some(&body))?
            .data()
    }

    /// Reads the latest version, or `version`. A deleted or destroyed version is `Ok` with
    /// `data: None`; a key or version that never existed is [`ClientError::NotFound`].
    pub fn get(&self, key: &str, version: Option<u64>) -> Result<KvSecret, ClientError> {
        let mut path = self.path("data", key)?;
        if let Some(v) = version {
            path.push_str(&format!("?version={v}"));
        }
        let resp = self.client.request("GET", &path, None)?;
        if resp.status == 404 {
            // A deleted or destroyed version: 404 carrying the envelope with the metadata.
            if let Some(Value::Object(d)) = resp
                .json()
                .and_then(|mut b| b.get_mut("data").map(Value::take))
            {
                if d.get("metadata").is_some_and(Value::is_object) {
                    return serde_json::from_value(Value::Object(d))
                        .map_err(|e| ClientError::Decode(e.to_string()));
                }
            }
        }
        resp.error_for_status()?.data()
    }

    /// Merges `data` into the latest version (RFC 7396: a `null` value removes the key) and
    /// writes the result as a new version.
    pub fn patch(
        &self,
        key: &str,
        data: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<VersionMetadata, ClientError> {
        let mut body = json!({ "data": data });
        if let Some(cas) = cas {
            body["options"] = json!({ "cas": cas });
        }
        self.client
            .call("PATCH", &self.path("data", key)?, Some(&body))?
            .data()
    }

    /// Lists the direct children of folder `key` (`""` for the mount root); folders end in
    /// `/`. An empty or missing folder is [`ClientError::NotFound`].
    pub fn list(&self, key: &str) -> Result<Vec<String>, ClientError> {
        let folder = key.trim_matches('/');
        let path = if folder.is_empty() {
            format!(
                "{}/",
                kv_api_path(self.mount, "metadata", "")?.trim_end_matches('/')
            )
        } else {
            format!("{}/", kv_api_path(self.mount, "metadata", folder)?)
        };
        #[derive(Deserialize)]
        struct Keys {
            keys: Vec<String>,
        }
        Ok(self.client.call("LIST", &path, None)?.data::<Keys>()?.keys)
    }

    /// Soft-deletes the latest version (`DELETE .../data/<key>`).
    pub fn delete_latest(&self, key: &str) -> Result<(), ClientError> {
        self.client
            .call("DELETE", &self.path("data", key)?, None)
            .map(drop)
    }

    /// Soft-deletes the given versions.
    pub fn delete_versions(&self, key: &str, versions: &[u64]) -> Result<(), ClientError> {
        self.versions_op("delete", key, versions)
    }

    /// Restores soft-deleted versions.
    pub fn undelete(&self, key: &str, versions: &[u64]) -> Result<(), ClientError> {
        self.versions_op("undelete", key, versions)
    }

    /// Permanently removes the data of the given versions.
    pub fn destroy(&self, key: &str, versions: &[u64]) -> Result<(), ClientError> {
        self.versions_op("destroy", key, versions)
    }

    fn versions_op(&self, op: &str, key: &str, versions: &[u64]) -> Result<(), ClientError> {
        let body = json!({ "versions": versions });
        self.client
            .call("POST", &self.path(op, key)?, Some(&body))
            .map(drop)
    }

    /// Reads the key's metadata and version list.
    pub fn metadata_get(&self, key: &str) -> Result<KvMetadata, ClientError> {
        self.client
            .call("GET", &self.path("metadata", key)?, None)?
            .data()
    }

    /// Updates the key's metadata (creates it if the key does not exist yet).
    pub fn metadata_put(&self, key: &str, update: &MetadataUpdate) -> Result<(), ClientError> {
        let body = serde_json::to_value(update)
            .map_err(|e| ClientError::InvalidInput(format!("encoding the body: {e}")))?;
        self.client
            .call("POST", &self.path("metadata", key)?, Some(&body))
            .map(drop)
    }

    /// Merges `custom_metadata` keys (and any other given field) into the key's metadata
    /// (`PATCH` with `application/merge-patch+json`).
    pub fn metadata_patch(&self, key: &str, patch: &Value) -> Result<(), ClientError> {
        self.client
            .call("PATCH", &self.path("metadata", key)?, Some(patch))
            .map(drop)
    }

    /// Deletes the key: all versions and its metadata.
    pub fn metadata_delete(&self, key: &str) -> Result<(), ClientError> {
        self.client
            .call("DELETE", &self.path("metadata", key)?, None)
            .map(drop)
    }
}

// ---- access
//
// Typed helpers for tokens, policies, token roles, the roles file and the logins (AppRole,
// TLS client certificate). Bodies that carry a token or a secret id are built here and
// wiped once sent; answers that carry a token keep it in a [`Zeroizing`] string whose
// `Debug` output is redacted.

/// The `auth` block of a login, a token create or a renewal (§3 of the contract).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenAuth {
    /// The token (wiped when the value is dropped). Empty when the server did not send one.
    #[serde(default)]
    pub client_token: String,
    #[serde(default)]
    pub accessor: String,
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub token_policies: Vec<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The TTL in seconds (0: no expiry).
    #[serde(default)]
    pub lease_duration: u64,
    #[serde(default)]
    pub renewable: bool,
    #[serde(default)]
    pub orphan: bool,
    #[serde(default)]
    pub num_uses: u64,
    /// Fields this client does not model (`entity_id`, `token_type`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Drop for TokenAuth {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.client_token);
    }
}

impl fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuth")
            .field("client_token", &"<redacted>")
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .finish()
    }
}

/// An answer carrying an `auth` block, with the server's warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthResponse {
    pub auth: TokenAuth,
    pub warnings: Vec<String>,
}

/// Body of `POST /v1/auth/token/create[/:role]`: fields left `None` are not sent (the server
/// or the role decides).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TokenCreateRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// Go-style duration (`"15m"`) or seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explicit_max_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_uses: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_parent: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_default_policy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<BTreeMap<String, String>>,
}

/// An answer that is `data` or nothing (204), with the server's warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct DataResponse {
    /// `Value::Null` for a 204 or a `data: null` answer.
    pub data: Value,
    pub warnings: Vec<String>,
}

impl ApiResponse {
    /// The envelope's `warnings` (empty when `null` or absent).
    pub fn warnings(&self) -> Vec<String> {
        self.json()
            .and_then(|v| match v.get("warnings") {
                Some(Value::Array(w)) => Some(
                    w.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn auth_response(&self) -> Result<AuthResponse, ClientError> {
        let mut v = self
            .json()
            .ok_or_else(|| ClientError::Decode("expected a JSON body".into()))?;
        let auth = match v.get_mut("auth").map(Value::take) {
            Some(a @ Value::Object(_)) => {
                serde_json::from_value(a).map_err(|e| ClientError::Decode(e.to_string()))?
            }
            _ => return Err(ClientError::Decode("response has no auth block".into())),
        };
        Ok(AuthResponse {
            auth,
            warnings: self.warnings(),
        })
    }

    fn data_response(&self) -> DataResponse {
        let data = self
            .json()
            .and_then(|mut v| v.get_mut("data").map(Value::take))
            .unwrap_or(Value::Null);
        DataResponse {
            data,
            warnings: self.warnings(),
        }
    }
}

/// Percent-encodes a name used as one path segment (policy, role). Rejects names that would
/// change the path (`/`, `.`, `..`, empty).
pub fn encode_name(what: &str, name: &str) -> Result<String, ClientError> {
    let n = name.trim();
    if n.is_empty() || n == "." || n == ".." || n.contains('/') {
        return Err(ClientError::InvalidInput(format!(
            "invalid {what} name {name:?}"
        )));
    }
    Ok(utf8_percent_encode(n, SEGMENT).to_string())
}

/// `{"token": ..}`-style bodies: encoded here so the copy holding the secret is wiped.
fn secret_body(fields: &[(&str, &str)], extra: Option<(&str, Value)>) -> Zeroizing<Vec<u8>> {
    let mut m = Map::new();
    for (k, v) in fields {
        m.insert((*k).to_string(), Value::String((*v).to_string()));
    }
    if let Some((k, v)) = extra {
        m.insert(k.to_string(), v);
    }
    let v = Value::Object(m);
    // Encoding a map of strings and plain values cannot fail.
    let bytes = Zeroizing::new(serde_json::to_vec(&v).unwrap_or_default());
    // Wipe the strings of the intermediate value too.
    if let Value::Object(mut m) = v {
        for (_, val) in m.iter_mut() {
            if let Value::String(s) = val {
                zeroize::Zeroize::zeroize(s);
            }
        }
    }
    bytes
}

impl Client {
    /// The same as [`Client::new`], presenting a TLS client certificate (`identity_pem`: the
    /// PEM private key and certificate chain, concatenated) for `auth/cert/login`.
    pub fn with_client_identity(
        addr: &str,
        ca_file: Option<&Path>,
        identity_pem: &[u8],
    ) -> Result<Client, ClientError> {
        // Validate the address the same way as `new`.
        let base = Client::new(addr, None, ca_file)?.base;
        let identity = reqwest::Identity::from_pem(identity_pem).map_err(|e| {
            ClientError::InvalidInput(format!("parsing the client certificate or key: {e}"))
        })?;
        let mut builder = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("arca-client/", env!("CARGO_PKG_VERSION")))
            .identity(identity);
        if let Some(path) = ca_file {
            for cert in ca_certs(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::InvalidInput(format!("building the HTTP client: {e}")))?;
        Ok(Client {
            base,
            token: None,
            http,
        })
    }

    fn call_raw(&self, method: &str, path: &str, body: &[u8]) -> Result<ApiResponse, ClientError> {
        self.request_with_headers(method, path, &[], Some(body))?
            .error_for_status()
    }

    // ------------------------------------------------------------------ tokens

    /// `POST /v1/auth/token/create` (or `create/<role>`).
    pub fn token_create(
        &self,
        role: Option<&str>,
        req: &TokenCreateRequest,
    ) -> Result<AuthResponse, ClientError> {
        let path = match role {
            Some(r) => format!("/v1/auth/token/create/{}", encode_name("role", r)?),
            None => "/v1/auth/token/create".to_string(),
        };
        let body = serde_json::to_value(req)
            .map_err(|e| ClientError::InvalidInput(format!("encoding the body: {e}")))?;
        self.call("POST", &path, Some(&body))?.auth_response()
    }

    /// `GET /v1/auth/token/lookup-self`: the caller's token (`data`, `id` included).
    pub fn token_lookup_self(&self) -> Result<Value, ClientError> {
        Ok(self
            .call("GET", "/v1/auth/token/lookup-self", None)?
            .data_response()
            .data)
    }

    /// `POST /v1/auth/token/lookup {"token": ..}`.
    pub fn token_lookup(&self, token: &str) -> Result<Value, ClientError> {
        let body = secret_body(&[("token", token)], None);
        Ok(self
            .call_raw("POST", "/v1/auth/token/lookup", &body)?
            .data_response()
            .data)
    }

    /// `POST /v1/auth/token/lookup-accessor {"accessor": ..}`.
    pub fn token_lookup_accessor(&self, accessor: &str) -> Result<Value, ClientError> {
        let body = json!({ "accessor": accessor });
        Ok(self
            .call("POST", "/v1/auth/token/lookup-accessor", Some(&body))?
            .data_response()
            .data)
    }

    /// `POST /v1/auth/token/renew-self`, `renew` (with `token`) or `renew-accessor`.
    pub fn token_renew(
        &self,
        target: TokenTarget<'_>,
        increment: Option<&str>,
    ) -> Result<AuthResponse, ClientError> {
        let inc = increment.map(|i| ("increment", Value::String(i.to_string())));
        let (path, body) = match target {
            TokenTarget::SelfToken => ("/v1/auth/token/renew-self", secret_body(&[], inc)),
            TokenTarget::Token(t) => ("/v1/auth/token/renew", secret_body(&[("token", t)], inc)),
            TokenTarget::Accessor(a) => (
                "/v1/auth/token/renew-accessor",
                secret_body(&[("accessor", a)], inc),
            ),
        };
        self.call_raw("POST", path, &body)?.auth_response()
    }

    /// `POST /v1/auth/token/revoke-self`, `revoke` or `revoke-accessor`. Returns the
    /// server's warnings (an unknown accessor is a warning, not an error).
    pub fn token_revoke(&self, target: TokenTarget<'_>) -> Result<Vec<String>, ClientError> {
        let (path, body) = match target {
            TokenTarget::SelfToken => ("/v1/auth/token/revoke-self", secret_body(&[], None)),
            TokenTarget::Token(t) => ("/v1/auth/token/revoke", secret_body(&[("token", t)], None)),
            TokenTarget::Accessor(a) => (
                "/v1/auth/token/revoke-accessor",
                secret_body(&[("accessor", a)], None),
            ),
        };
        Ok(self.call_raw("POST", path, &body)?.warnings())
    }

    /// `POST /v1/sys/capabilities-self`: the caller's capabilities on each path.
    pub fn capabilities_self(
        &self,
        paths: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, ClientError> {
        let body = json!({ "paths": paths });
        let data = self
            .call("POST", "/v1/sys/capabilities-self", Some(&body))?
            .data_response()
            .data;
        let mut out = BTreeMap::new();
        for p in paths {
            let key = p.trim_start_matches('/');
            let caps: Vec<String> = data
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(key.to_string(), caps);
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ policies

    /// `PUT /v1/sys/policies/acl/<name>`. Returns the server's warnings.
    pub fn policy_write(&self, name: &str, policy: &str) -> Result<Vec<String>, ClientError> {
        let path = format!("/v1/sys/policies/acl/{}", encode_name("policy", name)?);
        let body = json!({ "policy": policy });
        Ok(self.call("PUT", &path, Some(&body))?.warnings())
    }

    /// `GET /v1/sys/policies/acl/<name>`: `data` (`name`, `policy`).
    pub fn policy_read(&self, name: &str) -> Result<Value, ClientError> {
        let path = format!("/v1/sys/policies/acl/{}", encode_name("policy", name)?);
        Ok(self.call("GET", &path, None)?.data_response().data)
    }

    /// `LIST /v1/sys/policies/acl`.
    pub fn policy_list(&self) -> Result<Vec<String>, ClientError> {
        #[derive(Deserialize)]
        struct Keys {
            keys: Vec<String>,
        }
        Ok(self
            .call("LIST", "/v1/sys/policies/acl", None)?
            .data::<Keys>()?
            .keys)
    }

    /// `DELETE /v1/sys/policies/acl/<name>` (absent: no error).
    pub fn policy_delete(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/v1/sys/policies/acl/{}", encode_name("policy", name)?);
        self.call("DELETE", &path, None).map(drop)
    }

    // ------------------------------------------------------------------ roles

    /// `LIST /v1/auth/token/roles` (a server with no role answers 404: [`ClientError::NotFound`]).
    pub fn token_role_list(&self) -> Result<Vec<String>, ClientError> {
        #[derive(Deserialize)]
        struct Keys {
            keys: Vec<String>,
        }
        Ok(self
            .call("LIST", "/v1/auth/token/roles", None)?
            .data::<Keys>()?
            .keys)
    }

    /// `GET /v1/auth/token/roles/<name>`.
    pub fn token_role_read(&self, name: &str) -> Result<Value, ClientError> {
        let path = format!("/v1/auth/token/roles/{}", encode_name("role", name)?);
        Ok(self.call("GET", &path, None)?.data_response().data)
    }

    /// `GET /v1/sys/roles`: the roles of the roles file, as the server loaded them.
    pub fn sys_roles(&self) -> Result<DataResponse, ClientError> {
        Ok(self.call("GET", "/v1/sys/roles", None)?.data_response())
    }

    /// `PUT /v1/sys/roles/reload`: re-reads the roles file.
    pub fn sys_roles_reload(&self) -> Result<DataResponse, ClientError> {
        Ok(self
            .call("PUT", "/v1/sys/roles/reload", None)?
            .data_response())
    }

    // ------------------------------------------------------------------ logins

    /// `POST /v1/auth/approle/login` (sent without a token).
    pub fn approle_login(
        &self,
        role_id: &str,
        secret_id: &str,
    ) -> Result<AuthResponse, ClientError> {
        let body = secret_body(&[("role_id", role_id), ("secret_id", secret_id)], None);
        self.with_token(None)
            .call_raw("POST", "/v1/auth/approle/login", &body)?
            .auth_response()
    }

    /// `POST /v1/auth/cert/login` with the TLS client certificate of this client (see
    /// [`Client::with_client_identity`]); `role` picks one of the roles the certificate maps to.
    pub fn cert_login(&self, role: Option<&str>) -> Result<AuthResponse, ClientError> {
        let body = match role {
            Some(r) => json!({ "name": r }),
            None => json!({}),
        };
        self.with_token(None)
            .call("POST", "/v1/auth/cert/login", Some(&body))?
            .auth_response()
    }
}

/// Which token a renew or revoke applies to.
#[derive(Clone, Copy)]
pub enum TokenTarget<'a> {
    /// The client's own token (`*-self`).
    SelfToken,
    /// Another token, by value.
    Token(&'a str),
    /// Another token, by accessor.
    Accessor(&'a str),
}

impl fmt::Debug for TokenTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenTarget::SelfToken => f.write_str("SelfToken"),
            TokenTarget::Token(_) => f.write_str("Token(<redacted>)"),
            TokenTarget::Accessor(a) => write!(f, "Accessor({a:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> ApiResponse {
        ApiResponse {
            status,
            headers: HeaderMap::new(),
            body: body.to_string(),
        }
    }

    #[test]
    fn debug_redacts_token() {
        let c = Client::new("http://127.0.0.1:1", Some("s.supersecret".into()), None).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("supersecret"), "{dbg}");
        assert!(dbg.contains("redacted"));
        let c2 = c.with_token(None);
        assert!(!c2.has_token());
    }

    #[test]
    fn init_response_debug_redacts() {
        let r = InitResponse {
            keys: vec!["abcd".into()],
            keys_base64: vec!["q80=".into()],
            root_token: "s.rootroot".into(),
        };
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("rootroot") && !dbg.contains("abcd"), "{dbg}");
    }

    #[test]
    fn rejects_bad_addresses() {
        assert!(matches!(
            Client::new("ftp://x", None, None),
            Err(ClientError::InvalidInput(_))
        ));
        assert!(Client::new("not a url", None, None).is_err());
        let c = Client::new("https://vault.example:8200/", None, None).unwrap();
        assert_eq!(c.address(), "https://vault.example:8200");
    }

    #[test]
    fn transport_error_hides_token() {
        // Port 1 on localhost: connection refused.
        let c = Client::new("http://127.0.0.1:1", Some("s.tok-xyz".into()), None).unwrap();
        let err = c.request("GET", "/v1/sys/health", None).unwrap_err();
        assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("tok-xyz"), "{text}");
        assert!(text.contains("GET /v1/sys/health"), "{text}");
    }

    #[test]
    fn status_mapping() {
        assert!(matches!(
            resp(404, r#"{"errors":[]}"#).error_for_status(),
            Err(ClientError::NotFound)
        ));
        assert!(matches!(
            resp(404, "").error_for_status(),
            Err(ClientError::NotFound)
        ));
        let e = resp(404, r#"{"errors":["no handler for route"]}"#)
            .error_for_status()
            .unwrap_err();
        assert!(e.is_not_found());
        assert!(matches!(e, ClientError::Http { status: 404, .. }));
        assert!(matches!(
            resp(503, r#"{"errors":["Vault is sealed"]}"#).error_for_status(),
            Err(ClientError::Sealed)
        ));
        let e = resp(
            403,
            r#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#,
        )
        .error_for_status()
        .unwrap_err();
        assert_eq!(e.to_string(), "permission denied (HTTP 403)");
        assert_eq!(e.status(), Some(403));
        let e = resp(405, r#"{"errors":[]}"#)
            .error_for_status()
            .unwrap_err();
        assert_eq!(e.to_string(), "server returned HTTP 405");
        assert!(resp(204, "").error_for_status().is_ok());
    }

    #[test]
    fn multierror_unwrapping() {
        assert_eq!(
            unwrap_multierror("2 errors occurred:\n\t* a\n\t* b\n\n"),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(unwrap_multierror(" plain "), vec!["plain".to_string()]);
    }

    #[test]
    fn errors_and_json() {
        let r = resp(400, r#"{"errors":["one", 2]}"#);
        assert_eq!(r.errors(), vec!["one".to_string(), "2".to_string()]);
        assert!(resp(204, "").json().is_none());
        assert!(resp(200, "{}").errors().is_empty());
    }

    #[test]
    fn kv_paths_are_encoded() {
        assert_eq!(
            kv_api_path("secret", "data", "db/prod").unwrap(),
            "/v1/secret/data/db/prod"
        );
        assert_eq!(
            kv_api_path("/secret/", "metadata", "/a b/c?d#e%").unwrap(),
            "/v1/secret/metadata/a%20b/c%3Fd%23e%25"
        );
        assert!(kv_api_path("secret", "data", "a/../b").is_err());
        assert!(kv_api_path("secret", "data", "./b").is_err());
        assert!(kv_api_path("", "data", "b").is_err());
        assert_eq!(
            kv_api_path("secret", "metadata", "").unwrap(),
            "/v1/secret/metadata/"
        );
    }

    #[test]
    fn parses_kv_read_and_metadata() {
        let r = resp(
            200,
            r#"{"request_id":"x","data":{"data":{"a":"b","n":1},"metadata":{"created_time":"t","custom_metadata":null,"deletion_time":"","destroyed":false,"version":3}}}"#,
        );
        let s: KvSecret = r.data().unwrap();
        assert_eq!(s.metadata.version, 3);
        assert_eq!(s.data.unwrap()["n"], json!(1));

        let m = resp(
            200,
            r#"{"data":{"cas_required":false,"created_time":"t","current_version":2,"custom_metadata":{"o":"ml"},"delete_version_after":"0s","max_versions":0,"oldest_version":0,"updated_time":"u","versions":{"1":{"created_time":"t","deletion_time":"","destroyed":true},"2":{"created_time":"t","deletion_time":"","destroyed":false}},"current_metadata_version":1}}"#,
        );
        let m: KvMetadata = m.data().unwrap();
        assert!(m.versions[&1].destroyed);
        assert_eq!(m.extra["current_metadata_version"], json!(1));
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["versions"]["2"]["destroyed"], json!(false));
        assert_eq!(back["current_metadata_version"], json!(1));
    }

    #[test]
    fn metadata_update_omits_unset_fields() {
        let u = MetadataUpdate {
            max_versions: Some(3),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            json!({"max_versions": 3})
        );
    }
}
