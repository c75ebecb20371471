//! Request parsing: path decoding and traversal checks, query, token, body limits, JSON
//! limits, and Vault's weakly typed fields.

use std::time::Duration;

use actix_web::http::Method;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::response::ApiError;
use crate::config::Limits;
use crate::core::duration;

/// The operation, with `LIST` and `GET ?list=true` folded together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Head,
    List,
    Write,
    Patch,
    Delete,
    Other,
}

pub struct Ctx {
    pub op: Op,
    /// Decoded once, without the `/v1/` prefix; router, policy and store all see this.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub token: Option<Zeroizing<String>>,
    pub content_type: Option<String>,
}

impl Ctx {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" | "" => Some(false),
        _ => None,
    }
}

/// Checks the head of a request against the limits and parses it.
pub fn parse(req: &HttpRequest, limits: &Limits) -> Result<Ctx, ApiError> {
    let headers = req.headers();
    if headers.len() > limits.max_header_count {
        return Err(ApiError::status(431, "too many request headers"));
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > limits.max_header_bytes {
        return Err(ApiError::status(431, "request headers too large"));
    }
    let raw_path = req.uri().path();
    if raw_path.len() + req.query_string().len() > limits.max_path_bytes {
        return Err(ApiError::status(414, "request path too long"));
    }
    let decoded = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| ApiError::bad("invalid path: not valid UTF-8"))?;
    if decoded.contains('\0') {
        return Err(ApiError::bad("invalid path: contains a NUL byte"));
    }
    let Some(rest) = decoded.strip_prefix("/v1/") else {
        return Err(ApiError::not_found());
    };
    let trimmed = rest.strip_suffix('/').unwrap_or(rest);
    if trimmed
        .split('/')
        .any(|seg| seg == "." || seg == ".." || (seg.is_empty() && !trimmed.is_empty()))
    {
        return Err(ApiError::bad(
            "invalid path: empty, '.' or '..' segments are not allowed",
        ));
    }
    if rest.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad(
            "invalid path: control characters are not allowed",
        ));
    }

    let mut query = Vec::new();
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if k.contains('\0') || v.contains('\0') {
            return Err(ApiError::bad("invalid query: contains a NUL byte"));
        }
        query.push((k.into_owned(), v.into_owned()));
    }
    let list_q = match query.iter().find(|(k, _)| k == "list") {
        Some((_, v)) => {
            parse_bool(v).ok_or_else(|| ApiError::bad(format!("invalid value for list: {v:?}")))?
        }
        None => false,
    };
    let op = match *req.method() {
        Method::GET if list_q => Op::List,
        Method::GET => Op::Read,
        Method::HEAD => Op::Head,
        Method::POST | Method::PUT => Op::Write,
        Method::PATCH => Op::Patch,
        Method::DELETE => Op::Delete,
        ref m if m.as_str() == "LIST" => Op::List,
        _ => Op::Other,
    };

    let token = match headers.get("x-vault-token") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad("invalid X-Vault-Token header"))?
                .to_string(),
        ),
        None => headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string()),
    }
    .filter(|t| !t.is_empty())
    .map(Zeroizing::new);

    if let Some(ns) = headers.get("x-vault-namespace") {
        let ns = ns.to_str().unwrap_or("?");
        if !matches!(ns, "" | "/" | "root" | "root/") {
            return Err(ApiError::status(404, "namespace not found"));
        }
    }
    if headers.contains_key("x-vault-wrap-ttl") {
        return Err(ApiError::bad(
            "response wrapping is not supported by this server yet",
        ));
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string());
    Ok(Ctx {
        op,
        path: rest.to_string(),
        query,
        token,
        content_type,
    })
}

/// Reads the body under the size limit and the body timeout.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limits: &Limits,
) -> Result<web::Bytes, ApiError> {
    if let Some(len) = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limits.max_body_bytes {
            return Err(ApiError::status(
                413,
                format!(
                    "request body too large (limit {} bytes)",
                    limits.max_body_bytes
                ),
            ));
        }
    }
    let read = async {
        let mut buf = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad(format!("failed to read request body: {e}")))?;
            if buf.len() + chunk.len() > limits.max_body_bytes {
                return Err(ApiError::status(
                    413,
                    format!(
                        "request body too large (limit {} bytes)",
                        limits.max_body_bytes
                    ),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(Duration::from_millis(limits.body_timeout_ms), read).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::status(408, "timed out reading the request body")),
    }
}

/// Parses a body as JSON whatever the content type; empty = `{}`. Enforces depth and string
/// count limits before anything looks at the values.
pub fn parse_json(body: &[u8], limits: &Limits) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("failed to decode JSON input: {e}")))?;
    check_json_limits(&v, limits)?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad(
            "failed to decode JSON input: expected a JSON object",
        )),
    }
}

/// The depth and string-count limits of `parse_json`, for a body parsed elsewhere.
pub fn check_json_limits(v: &Value, limits: &Limits) -> Result<(), ApiError> {
    check_json(v, 1, limits, &mut 0)
}

fn check_json(
    v: &Value,
    depth: usize,
    limits: &Limits,
    strings: &mut usize,
) -> Result<(), ApiError> {
    if depth > limits.max_json_depth {
        return Err(ApiError::bad(format!(
            "JSON input nested too deeply (limit {})",
            limits.max_json_depth
        )));
    }
    let too_many = || {
        ApiError::bad(format!(
            "JSON input has too many strings (limit {})",
            limits.max_json_strings
        ))
    };
    match v {
        Value::String(_) => {
            *strings += 1;
            if *strings > limits.max_json_strings {
                return Err(too_many());
            }
        }
        Value::Array(a) => {
            for x in a {
                check_json(x, depth + 1, limits, strings)?;
            }
        }
        Value::Object(m) => {
            for (_, x) in m {
                *strings += 1;
                if *strings > limits.max_json_strings {
                    return Err(too_many());
                }
                check_json(x, depth + 1, limits, strings)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn conv_err(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad(format!(
        "error converting input for field \"{field}\": {why}"
    ))
}

/// An unsigned int field: number or numeric string ("7"), as Vault accepts.
pub fn field_u64(m: &Map<String, Value>, field: &str) -> Result<Option<u64>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| conv_err(field, format!("cannot parse '{n}' as an unsigned int"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| conv_err(field, format!("cannot parse '{s}' as int"))),
        Some(other) => Err(conv_err(
            field,
            format!("expected an int, got {}", kind(other)),
        )),
    }
}

pub fn field_bool(m: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => parse_bool(s)
            .map(Some)
            .ok_or_else(|| conv_err(field, format!("cannot parse '{s}' as bool"))),
        Some(Value::Number(n)) => Ok(Some(n.as_f64().unwrap_or(0.0) != 0.0)),
        Some(other) => Err(conv_err(
            field,
            format!("expected a bool, got {}", kind(other)),
        )),
    }
}

/// A duration field: int seconds or a Go duration string.
pub fn field_duration(m: &Map<String, Value>, field: &str) -> Result<Option<u64>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| conv_err(field, "expected a non-negative duration"))
            .and_then(|n| duration::check_seconds(n).map_err(ApiError::bad))
            .map(Some),
        Some(Value::String(s)) => duration::parse_seconds(s).map(Some).map_err(ApiError::bad),
        Some(other) => Err(conv_err(
            field,
            format!("expected a duration, got {}", kind(other)),
        )),
    }
}

/// A string field; scalars are stringified (Vault's weak typing).
pub fn field_string(m: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(conv_err(
            field,
            format!("expected a string, got {}", kind(other)),
        )),
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
