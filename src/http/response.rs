//! Responses in Vault's shapes, and the one table from errors to HTTP statuses.

use actix_web::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Value};

use crate::core::Error;

/// An error on its way to the client.
#[derive(Debug)]
pub enum ApiError {
    /// `{"errors":[...]}` with this status.
    Status(StatusCode, Vec<String>),
    /// 404 with an empty body (PATCH of a missing KV key).
    EmptyNotFound,
    Core(Error),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Core(e)
    }
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::Status(StatusCode::BAD_REQUEST, vec![msg.into()])
    }
    pub fn status(code: u16, msg: impl Into<String>) -> Self {
        ApiError::Status(
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            vec![msg.into()],
        )
    }
    pub fn method_not_allowed() -> Self {
        ApiError::Status(StatusCode::METHOD_NOT_ALLOWED, vec![])
    }
    pub fn not_found() -> Self {
        ApiError::Status(StatusCode::NOT_FOUND, vec![])
    }

    /// The error -> status table. Internal details go to the log, never to the client.
    pub fn into_response(self) -> HttpResponse {
        let (code, msgs) = match self {
            ApiError::Status(c, m) => (c, m),
            ApiError::EmptyNotFound => return empty(StatusCode::NOT_FOUND),
            ApiError::Core(e) => match e {
                Error::Sealed => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    vec!["Vault is sealed".into()],
                ),
                Error::NotInitialized => (
                    StatusCode::BAD_REQUEST,
                    vec!["Vault is not initialized".into()],
                ),
                Error::BadRequest(m) => (StatusCode::BAD_REQUEST, vec![m]),
                Error::BadToken => (StatusCode::FORBIDDEN, vec!["permission denied".into()]),
                Error::PermissionDenied => (
                    StatusCode::FORBIDDEN,
                    vec!["1 error occurred:\n\t* permission denied\n\n".into()],
                ),
                Error::Forbidden(m) => (StatusCode::FORBIDDEN, vec![m]),
                Error::NotFound => (StatusCode::NOT_FOUND, vec![]),
                Error::Integrity(e) => {
                    tracing::error!(error = %e, "stored record failed its integrity check");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        vec!["internal error: stored data failed integrity check".into()],
                    )
                }
                Error::Store(e) => {
                    tracing::error!(error = %e, "storage error");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        vec!["storage unavailable".into()],
                    )
                }
                Error::Internal(m) => {
                    tracing::error!(error = %m, "internal error");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        vec!["internal error".into()],
                    )
                }
            },
        };
        raw(code, &json!({ "errors": msgs }))
    }
}

fn headers(b: &mut actix_web::HttpResponseBuilder) {
    // Exactly `application/json`: hvac parses error bodies only for that exact value.
    b.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    b.insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")));
}

/// A raw JSON body (no envelope).
pub fn raw(code: StatusCode, body: &Value) -> HttpResponse {
    let mut b = HttpResponse::build(code);
    headers(&mut b);
    b.body(serde_json::to_vec(body).unwrap_or_default())
}

/// A response with no body (204, or the empty 404), still typed as JSON.
pub fn empty(code: StatusCode) -> HttpResponse {
    let mut b = HttpResponse::build(code);
    headers(&mut b);
    b.finish()
}

pub fn no_content() -> HttpResponse {
    empty(StatusCode::NO_CONTENT)
}

tokio::task_local! {
    /// The id of the request being served: the same in the response envelope and the audit
    /// records, so an auditor can match them.
    pub static REQUEST_ID: String;
}

/// A random v4 UUID from the thread-local CSPRNG (no system call per request).
pub fn new_request_id() -> String {
    use rand::Rng;
    uuid::Builder::from_random_bytes(rand::thread_rng().gen())
        .into_uuid()
        .to_string()
}

/// The current request's id (a fresh one outside a request).
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| new_request_id())
}

/// The eight-key envelope of every non-status response.
pub fn envelope(data: Value, warnings: Option<Vec<String>>) -> Value {
    json!({
        "request_id": request_id(),
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": warnings,
        "auth": null,
    })
}

/// An envelope with an `auth` block (logins, token create and renew).
pub fn auth(auth: Value, warnings: Vec<String>) -> HttpResponse {
    let mut env = envelope(
        Value::Null,
        if warnings.is_empty() {
            None
        } else {
            Some(warnings)
        },
    );
    env["auth"] = auth;
    raw(StatusCode::OK, &env)
}

/// 200 with `data: null` and warnings, or 204 when there is nothing to say (§1).
pub fn warnings_or_no_content(warnings: Vec<String>) -> HttpResponse {
    if warnings.is_empty() {
        no_content()
    } else {
        raw(StatusCode::OK, &envelope(Value::Null, Some(warnings)))
    }
}

pub fn ok(data: Value) -> HttpResponse {
    raw(StatusCode::OK, &envelope(data, None))
}

/// An envelope whose `data` keys are also copied to the top level (legacy sys endpoints).
pub fn ok_with_top_level(data: Value) -> HttpResponse {
    let mut env = envelope(data.clone(), None);
    if let (Value::Object(top), Value::Object(d)) = (&mut env, data) {
        for (k, v) in d {
            top.entry(k).or_insert(v);
        }
    }
    raw(StatusCode::OK, &env)
}

pub type ApiResult = Result<HttpResponse, ApiError>;
