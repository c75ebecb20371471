//! Access control end to end, against the real binary (issue 3 §4): the user flows (operator →
//! policy → token role → scoped token; child tokens for a training job; AppRole), forged,
//! expired, revoked and parent-revoked tokens, privilege escalation attempts, path traversal,
//! exact `num_uses` under concurrency and across a restart, a bad token on every endpoint
//! family, the ACL decision table in practice, and the CLI (`token`, `policy`, `role`, `login`)
//! with its exit codes and without ever printing a token it was not asked to print.
//!
//! Tests named `approle_*` need the AppRole backend: they FAIL (never skip) while
//! `auth/approle/...` is missing, with a message saying so.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use arca::client::{ApiResponse, Client};
use common::{run_cmd, CliOutput, TestServer};
use serde_json::{json, Value};

/// The body of a token failure (§2).
const BAD_TOKEN: &str = "permission denied";
/// The body of an ACL denial (§2).
const ACL_DENIED: &str = "1 error occurred:\n\t* permission denied\n\n";

// ---------------------------------------------------------------------- helpers

#[track_caller]
fn expect(resp: &ApiResponse, status: u16) -> Value {
    assert_eq!(
        resp.status, status,
        "expected HTTP {status}, got {}: {}",
        resp.status, resp.body
    );
    resp.json().unwrap_or(Value::Null)
}

#[track_caller]
fn expect_bad_token(resp: &ApiResponse) {
    assert_eq!(resp.status, 403, "expected a token failure: {}", resp.body);
    assert_eq!(resp.errors(), vec![BAD_TOKEN.to_string()], "{}", resp.body);
}

#[track_caller]
fn expect_acl_denied(resp: &ApiResponse) {
    assert_eq!(resp.status, 403, "expected an ACL denial: {}", resp.body);
    assert_eq!(resp.errors(), vec![ACL_DENIED.to_string()], "{}", resp.body);
}

#[track_caller]
fn expect_error(resp: &ApiResponse, status: u16, text: &str) {
    assert_eq!(resp.status, status, "{}", resp.body);
    assert!(
        resp.errors().iter().any(|e| e.contains(text)),
        "expected an error containing {text:?}: {}",
        resp.body
    );
}

fn req(c: &Client, method: &str, path: &str, body: Option<Value>) -> ApiResponse {
    c.request(method, path, body.as_ref()).expect("request")
}

#[track_caller]
fn put_policy(root: &Client, name: &str, hcl: &str) {
    let r = req(
        root,
        "PUT",
        &format!("/v1/sys/policies/acl/{name}"),
        Some(json!({ "policy": hcl })),
    );
    assert_eq!(r.status, 204, "writing policy {name}: {}", r.body);
}

#[track_caller]
fn kv_put(c: &Client, key: &str, data: Value) {
    let r = req(
        c,
        "PUT",
        &format!("/v1/secret/data/{key}"),
        Some(json!({ "data": data })),
    );
    assert_eq!(r.status, 200, "writing {key}: {}", r.body);
}

/// A token issued by `parent` (`create` body as given); returns (token, accessor, auth block).
#[track_caller]
fn create_token(parent: &Client, path: &str, body: Value) -> (String, String, Value) {
    let r = req(parent, "POST", path, Some(body));
    let v = expect(&r, 200);
    let auth = v["auth"].clone();
    let token = auth["client_token"]
        .as_str()
        .expect("client_token")
        .to_string();
    let accessor = auth["accessor"].as_str().expect("accessor").to_string();
    (token, accessor, auth)
}

fn as_token(s: &TestServer, token: &str) -> Client {
    s.client().with_token(Some(token.to_string()))
}

/// One raw HTTP/1.1 request, byte for byte: no client-side URL normalisation (reqwest would
/// resolve `..` and `%2e%2e` before sending).
fn raw_http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let hostport = addr.strip_prefix("http://").expect("http address");
    let mut stream = TcpStream::connect(hostport).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(t) = token {
        head.push_str(&format!("X-Vault-Token: {t}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body.as_bytes()).expect("write body");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[track_caller]
fn assert_no_secret(out: &CliOutput, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !out.stdout.contains(s) && !out.stderr.contains(s),
            "a token the command was not asked to print leaked: {out:#?}"
        );
    }
}

/// The AppRole backend is there (else fail, loudly: these tests must not pass by skipping).
#[track_caller]
fn require_approle(root: &Client) {
    let r = req(
        root,
        "POST",
        "/v1/sys/auth/approle",
        Some(json!({"type": "approle"})),
    );
    assert!(
        r.status == 204 || (r.status == 400 && r.body.contains("already in use")),
        "AppRole is missing: enabling it (POST sys/auth/approle) answered {}: {}",
        r.status,
        r.body
    );
    let r = req(root, "LIST", "/v1/auth/approle/role", None);
    assert!(
        r.status == 200 || (r.status == 404 && r.errors().is_empty()),
        "AppRole is missing: LIST auth/approle/role answered {}: {}",
        r.status,
        r.body
    );
}

const DATASETS_READ: &str = r#"
path "secret/data/datasets/*" { capabilities = ["read"] }
path "secret/metadata/datasets/*" { capabilities = ["list"] }
"#;

// ---------------------------------------------------------------------- user flows

/// Operator writes a policy, creates a token role, hands out a token of that role; the token
/// reads what it may and gets 403 elsewhere.
#[test]
fn operator_hands_out_a_token_of_a_role() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    kv_put(
        &root,
        "datasets/imagenet",
        json!({"url": "s3://bucket/imagenet"}),
    );
    kv_put(&root, "models/prod", json!({"key": "model-secret"}));
    put_policy(&root, "ds-read", DATASETS_READ);
    let r = req(
        &root,
        "POST",
        "/v1/auth/token/roles/trainer",
        Some(json!({"allowed_policies": ["ds-read"], "token_explicit_max_ttl": "2h"})),
    );
    expect(&r, 204);
    let role = expect(
        &req(&root, "GET", "/v1/auth/token/roles/trainer", None),
        200,
    );
    assert_eq!(role["data"]["allowed_policies"], json!(["ds-read"]));
    assert_eq!(role["data"]["token_explicit_max_ttl"], json!(7200));

    let (token, _, auth) = create_token(
        &root,
        "/v1/auth/token/create/trainer",
        json!({"ttl": "15m"}),
    );
    assert!(token.starts_with("arca."), "{token}");
    assert_eq!(auth["policies"], json!(["default", "ds-read"]));
    assert_eq!(auth["lease_duration"], json!(900));
    let t = as_token(&s, &token);

    // What it may do.
    let v = expect(
        &req(&t, "GET", "/v1/secret/data/datasets/imagenet", None),
        200,
    );
    assert_eq!(v["data"]["data"]["url"], json!("s3://bucket/imagenet"));
    let v = expect(&req(&t, "LIST", "/v1/secret/metadata/datasets", None), 200);
    assert_eq!(v["data"]["keys"], json!(["imagenet"]));
    let v = expect(&req(&t, "GET", "/v1/auth/token/lookup-self", None), 200);
    assert_eq!(v["data"]["role"], json!("trainer"));
    assert_eq!(v["data"]["path"], json!("auth/token/create/trainer"));
    assert_eq!(v["data"]["policies"], json!(["default", "ds-read"]));
    // Within its scope a missing item is 404, not 403.
    expect(
        &req(&t, "GET", "/v1/secret/data/datasets/missing", None),
        404,
    );

    // And nothing else.
    for (method, path, body) in [
        ("GET", "/v1/secret/data/models/prod", None),
        (
            "PUT",
            "/v1/secret/data/datasets/imagenet",
            Some(json!({"data": {"x": "y"}})),
        ),
        ("DELETE", "/v1/secret/data/datasets/imagenet", None),
        ("LIST", "/v1/secret/metadata/models", None),
        ("LIST", "/v1/sys/policies/acl", None),
        ("GET", "/v1/sys/policies/acl/ds-read", None),
        ("POST", "/v1/auth/token/create", Some(json!({}))),
        ("POST", "/v1/auth/token/create/trainer", Some(json!({}))),
        ("GET", "/v1/auth/token/roles/trainer", None),
        ("PUT", "/v1/sys/seal", None),
        ("GET", "/v1/sys/mounts", None),
        ("GET", "/v1/nomount/x", None),
    ] {
        expect_acl_denied(&req(&t, method, path, body));
    }
    // The secret was not changed by the denied write.
    let v = expect(
        &req(&root, "GET", "/v1/secret/data/datasets/imagenet", None),
        200,
    );
    assert_eq!(v["data"]["metadata"]["version"], json!(1));

    // The role bounds what can be asked for (contract §6).
    expect_error(
        &req(
            &root,
            "POST",
            "/v1/auth/token/create/trainer",
            Some(json!({"policies": ["ds-read", "admin"]})),
        ),
        400,
        "must be subset of the role's allowed policies",
    );
    expect_error(
        &req(&root, "POST", "/v1/auth/token/create/nope", Some(json!({}))),
        400,
        "unknown role nope",
    );
    // The explicit max of the role caps the TTL.
    let (_, _, auth) = create_token(
        &root,
        "/v1/auth/token/create/trainer",
        json!({"ttl": "10h"}),
    );
    assert_eq!(auth["lease_duration"], json!(7200));
}

/// A job launcher holds a token that may create children; it exchanges it for a short-lived,
/// narrower child for the training job. Revoking the launcher's token kills the job's.
#[test]
fn child_token_exchange_for_a_training_job() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    kv_put(&root, "datasets/cifar", json!({"pw": "cifar-pw"}));
    kv_put(&root, "experiments/e1", json!({"lr": "0.1"}));
    put_policy(&root, "ds-read", DATASETS_READ);
    put_policy(
        &root,
        "launcher",
        r#"
path "auth/token/create" { capabilities = ["update"] }
path "secret/data/experiments/*" { capabilities = ["read", "create", "update"] }
"#,
    );
    let (launcher, launcher_acc, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["launcher", "ds-read"], "ttl": "1h"}),
    );
    let l = as_token(&s, &launcher);
    let (job, job_acc, auth) = create_token(
        &l,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"], "ttl": "10m", "num_uses": 5, "meta": {"job": "train-42"},
               "display_name": "train-42"}),
    );
    assert_eq!(auth["policies"], json!(["default", "ds-read"]));
    assert_eq!(auth["orphan"], json!(false));
    assert_eq!(auth["num_uses"], json!(5));
    assert_eq!(auth["metadata"], json!({"job": "train-42"}));
    let j = as_token(&s, &job);
    let v = expect(&req(&j, "GET", "/v1/secret/data/datasets/cifar", None), 200);
    assert_eq!(v["data"]["data"]["pw"], json!("cifar-pw"));
    // The job may not do what the launcher may.
    expect_acl_denied(&req(&j, "GET", "/v1/secret/data/experiments/e1", None));
    expect_acl_denied(&req(&j, "POST", "/v1/auth/token/create", Some(json!({}))));
    let v = expect(&req(&j, "GET", "/v1/auth/token/lookup-self", None), 200);
    assert_eq!(v["data"]["display_name"], json!("token-train-42"));
    assert_eq!(v["data"]["meta"], json!({"job": "train-42"}));
    assert!(v["data"]["ttl"].as_u64().unwrap() <= 600);
    // The launcher sees its child by accessor (as root would) only if allowed: it is not.
    expect_acl_denied(&req(
        &l,
        "POST",
        "/v1/auth/token/lookup-accessor",
        Some(json!({"accessor": job_acc})),
    ));

    // Revoking the parent revokes the child at once.
    expect(
        &req(
            &root,
            "POST",
            "/v1/auth/token/revoke-accessor",
            Some(json!({"accessor": launcher_acc})),
        ),
        204,
    );
    expect_bad_token(&req(&l, "GET", "/v1/auth/token/lookup-self", None));
    expect_bad_token(&req(&j, "GET", "/v1/secret/data/datasets/cifar", None));
}

/// AppRole end to end: an operator sets up a role for a pipeline, the pipeline logs in with
/// role_id + secret_id and gets a token of the role's policies; a used-up secret id fails.
#[test]
fn approle_pipeline_logs_in_and_reads_its_credentials() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    require_approle(&root);
    kv_put(&root, "pipelines/etl/db", json!({"password": "etl-db-pw"}));
    kv_put(&root, "pipelines/other/db", json!({"password": "other-pw"}));
    put_policy(
        &root,
        "etl",
        r#"path "secret/data/pipelines/etl/*" { capabilities = ["read"] }"#,
    );
    let r = req(
        &root,
        "POST",
        "/v1/auth/approle/role/etl",
        Some(
            json!({"token_policies": "etl", "token_ttl": "10m", "token_max_ttl": "30m",
                    "secret_id_num_uses": 2, "secret_id_ttl": "1h"}),
        ),
    );
    expect(&r, 204);
    let v = expect(
        &req(&root, "GET", "/v1/auth/approle/role/etl/role-id", None),
        200,
    );
    let role_id = v["data"]["role_id"].as_str().expect("role_id").to_string();
    let v = expect(
        &req(
            &root,
            "POST",
            "/v1/auth/approle/role/etl/secret-id",
            Some(json!({"metadata": "{\"job\":\"etl\"}"})),
        ),
        200,
    );
    let secret_id = v["data"]["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_string();
    assert_eq!(v["data"]["secret_id_num_uses"], json!(2));

    // Login is unauthenticated: no token needed (and a bad one is ignored).
    let anon = s.client_without_token();
    let v = expect(
        &req(
            &anon,
            "POST",
            "/v1/auth/approle/login",
            Some(json!({"role_id": role_id, "secret_id": secret_id})),
        ),
        200,
    );
    let auth = &v["auth"];
    assert_eq!(auth["policies"], json!(["default", "etl"]));
    assert_eq!(auth["lease_duration"], json!(600));
    assert_eq!(auth["orphan"], json!(true));
    assert_eq!(auth["metadata"]["role_name"], json!("etl"));
    assert_eq!(auth["metadata"]["job"], json!("etl"));
    let token = auth["client_token"].as_str().unwrap().to_string();
    let t = as_token(&s, &token);
    let v = expect(
        &req(&t, "GET", "/v1/secret/data/pipelines/etl/db", None),
        200,
    );
    assert_eq!(v["data"]["data"]["password"], json!("etl-db-pw"));
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/pipelines/other/db", None));
    let v = expect(&req(&t, "GET", "/v1/auth/token/lookup-self", None), 200);
    assert_eq!(v["data"]["path"], json!("auth/approle/login"));

    // Second use through the CLI, secret id on stdin; the third use fails cleanly.
    let out = run_cmd(
        s.cli_with_token(None).args([
            "login",
            "approle",
            "--role-id",
            &role_id,
            "--secret-id",
            "-",
            "--format",
            "json",
        ]),
        Some(&secret_id),
    );
    out.ok();
    let v = out.json();
    let t2 = v["client_token"]
        .as_str()
        .expect("client_token in the JSON auth block")
        .to_string();
    assert_eq!(v["policies"], json!(["default", "etl"]));
    assert_no_secret(&out, &[&secret_id, &s.token]);
    expect(
        &req(
            &as_token(&s, &t2),
            "GET",
            "/v1/secret/data/pipelines/etl/db",
            None,
        ),
        200,
    );
    let out = run_cmd(
        s.cli_with_token(None).args([
            "login",
            "approle",
            "--role-id",
            &role_id,
            "--secret-id",
            "-",
        ]),
        Some(&secret_id),
    );
    out.expect_code(1);
    assert!(out.stderr.contains("invalid role or secret ID"), "{out:#?}");
    assert_no_secret(&out, &[&secret_id]);
    expect_error(
        &req(
            &anon,
            "POST",
            "/v1/auth/approle/login",
            Some(json!({"role_id": role_id, "secret_id": secret_id})),
        ),
        400,
        "invalid role or secret ID",
    );
    // A forged secret id, and a bad token on the AppRole admin paths.
    expect_error(
        &req(
            &anon,
            "POST",
            "/v1/auth/approle/login",
            Some(json!({"role_id": role_id, "secret_id": "00000000-0000-0000-0000-000000000000"})),
        ),
        400,
        "invalid role or secret ID",
    );
    expect_acl_denied(&req(&t, "GET", "/v1/auth/approle/role/etl/role-id", None));
    expect_acl_denied(&req(
        &t,
        "POST",
        "/v1/auth/approle/role/etl/secret-id",
        Some(json!({})),
    ));
}

/// AppRole tokens are orphans capped at token_max_ttl; a secret id with a TTL expires.
#[test]
fn approle_secret_id_expiry_and_token_limits() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    require_approle(&root);
    put_policy(&root, "ds-read", DATASETS_READ);
    expect(
        &req(
            &root,
            "POST",
            "/v1/auth/approle/role/short",
            Some(
                json!({"token_policies": ["ds-read"], "token_ttl": 60, "token_max_ttl": 90, "secret_id_ttl": "1s"}),
            ),
        ),
        204,
    );
    let role_id = expect(
        &req(&root, "GET", "/v1/auth/approle/role/short/role-id", None),
        200,
    )["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sid = |root: &Client| {
        expect(
            &req(root, "POST", "/v1/auth/approle/role/short/secret-id", None),
            200,
        )["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let fresh = sid(&root);
    let stale = sid(&root);
    let anon = s.client_without_token();
    let v = expect(
        &req(
            &anon,
            "POST",
            "/v1/auth/approle/login",
            Some(json!({"role_id": role_id, "secret_id": fresh})),
        ),
        200,
    );
    let token = v["auth"]["client_token"].as_str().unwrap().to_string();
    // Renewal never goes past token_max_ttl.
    let v = expect(
        &req(
            &as_token(&s, &token),
            "POST",
            "/v1/auth/token/renew-self",
            Some(json!({"increment": "1h"})),
        ),
        200,
    );
    assert!(v["auth"]["lease_duration"].as_u64().unwrap() <= 90, "{v}");
    thread::sleep(Duration::from_millis(2100));
    expect_error(
        &req(
            &anon,
            "POST",
            "/v1/auth/approle/login",
            Some(json!({"role_id": role_id, "secret_id": stale})),
        ),
        400,
        "invalid role or secret ID",
    );
}

// ---------------------------------------------------------------------- bad tokens

#[test]
fn forged_expired_revoked_and_parent_revoked_tokens_are_refused() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    kv_put(&root, "datasets/a", json!({"k": "v"}));
    put_policy(&root, "ds-read", DATASETS_READ);
    put_policy(
        &root,
        "spawner",
        r#"path "auth/token/create" { capabilities = ["update"] }"#,
    );
    let path = "/v1/secret/data/datasets/a";

    // Forged: well-formed, random, truncated, the root token with a character changed.
    let (real, _, real_auth) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"]}),
    );
    expect(&req(&as_token(&s, &real), "GET", path, None), 200);
    // A token carries its accessor: arca.<accessor>.<43 base64url characters>. Its accessor
    // with another token's secret (or another secret) is refused.
    let acc = real_auth["accessor"].as_str().unwrap();
    let secret = real
        .strip_prefix(&format!("arca.{acc}."))
        .unwrap_or_else(|| panic!("{real} does not carry its accessor {acc}"));
    assert_eq!(secret.len(), 43);
    let (other, _, other_auth) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"]}),
    );
    let other_secret = other.rsplit('.').next().unwrap();
    let other_acc = other_auth["accessor"].as_str().unwrap();
    let mut flipped = real.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let mut root_variant = s.token.clone();
    root_variant.push('x');
    for forged in [
        "arca.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        "s.1Kc1RXP7oSBZ9LIRmKPkSOcA".to_string(),
        real[..real.len() - 1].to_string(),
        flipped,
        root_variant,
        s.token.to_uppercase(),
        format!(" {real}x"),
        format!("arca.{acc}.{other_secret}"),
        format!("arca.{other_acc}.{secret}"),
        format!("arca.{acc}.{}", "A".repeat(43)),
    ] {
        expect_bad_token(&req(&as_token(&s, &forged), "GET", path, None));
    }
    // No token; the Bearer scheme is case-sensitive; a token in the query is never accepted.
    let anon = s.client_without_token();
    expect_bad_token(&req(&anon, "GET", path, None));
    let bearer = format!("Bearer {real}");
    let r = anon
        .request_with_headers("GET", path, &[("Authorization", &bearer)], None)
        .unwrap();
    expect(&r, 200);
    let lower = format!("bearer {real}");
    let r = anon
        .request_with_headers("GET", path, &[("Authorization", &lower)], None)
        .unwrap();
    expect_bad_token(&r);
    for q in ["token", "X-Vault-Token", "x-vault-token", "client_token"] {
        let r = req(&anon, "GET", &format!("{path}?{q}={real}"), None);
        assert!(
            r.status == 403 || r.status == 400,
            "token accepted from ?{q}=: {}",
            r.body
        );
        assert!(!r.body.contains(&real));
    }

    // Expired.
    let (short, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"], "ttl": "1s"}),
    );
    let t = as_token(&s, &short);
    thread::sleep(Duration::from_millis(2100));
    expect_bad_token(&req(&t, "GET", path, None));
    expect_bad_token(&req(&t, "GET", "/v1/auth/token/lookup-self", None));
    expect_bad_token(&req(&t, "POST", "/v1/auth/token/renew-self", None));
    expect_error(
        &req(
            &root,
            "POST",
            "/v1/auth/token/lookup",
            Some(json!({"token": short})),
        ),
        403,
        "bad token",
    );

    // Revoked (by token, by accessor, by itself).
    for how in ["revoke", "revoke-accessor", "revoke-self"] {
        let (tok, acc, _) = create_token(
            &root,
            "/v1/auth/token/create",
            json!({"policies": ["ds-read"]}),
        );
        let t = as_token(&s, &tok);
        expect(&req(&t, "GET", path, None), 200);
        let r = match how {
            "revoke" => req(
                &root,
                "POST",
                "/v1/auth/token/revoke",
                Some(json!({"token": tok})),
            ),
            "revoke-accessor" => req(
                &root,
                "POST",
                "/v1/auth/token/revoke-accessor",
                Some(json!({"accessor": acc})),
            ),
            _ => req(&t, "POST", "/v1/auth/token/revoke-self", None),
        };
        expect(&r, 204);
        expect_bad_token(&req(&t, "GET", path, None));
        expect_bad_token(&req(&t, "GET", "/v1/auth/token/lookup-self", None));
        expect_error(
            &req(
                &root,
                "POST",
                "/v1/auth/token/lookup",
                Some(json!({"token": tok})),
            ),
            403,
            "bad token",
        );
        // Revoking again is fine.
        expect(
            &req(
                &root,
                "POST",
                "/v1/auth/token/revoke",
                Some(json!({"token": tok})),
            ),
            204,
        );
    }

    // Parent revoked: children and grandchildren go with it; an orphan does not.
    let (parent, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read", "spawner"]}),
    );
    let p = as_token(&s, &parent);
    let (child, _, _) = create_token(
        &p,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read", "spawner"]}),
    );
    let c = as_token(&s, &child);
    let (grandchild, _, _) = create_token(
        &c,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"]}),
    );
    let g = as_token(&s, &grandchild);
    let (orphan, _, _) = create_token(
        &root,
        "/v1/auth/token/create-orphan",
        json!({"policies": ["ds-read"]}),
    );
    let o = as_token(&s, &orphan);
    for t in [&p, &c, &g, &o] {
        expect(&req(t, "GET", path, None), 200);
    }
    expect(&req(&p, "POST", "/v1/auth/token/revoke-self", None), 204);
    for t in [&p, &c, &g] {
        expect_bad_token(&req(t, "GET", path, None));
    }
    expect(&req(&o, "GET", path, None), 200);

    // Token failures never echo the token.
    let r = req(&as_token(&s, "arca.forged-token-value"), "GET", path, None);
    assert!(!r.body.contains("forged-token-value"));
    for (_, v) in r.headers.iter() {
        assert!(!v.to_str().unwrap_or("").contains("forged-token-value"));
    }
}

/// A bad token gets `403 permission denied` on every endpoint family, before any routing or
/// validation.
#[test]
fn bad_token_on_every_endpoint_family() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    put_policy(&root, "ds-read", DATASETS_READ);
    let (revoked, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"]}),
    );
    expect(
        &req(
            &root,
            "POST",
            "/v1/auth/token/revoke",
            Some(json!({"token": revoked})),
        ),
        204,
    );
    let (expired, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"], "ttl": "1s"}),
    );
    let (used_up, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"], "num_uses": 1}),
    );
    expect(
        &req(
            &as_token(&s, &used_up),
            "GET",
            "/v1/auth/token/lookup-self",
            None,
        ),
        200,
    );
    thread::sleep(Duration::from_millis(2100));

    let endpoints: Vec<(&str, &str, Option<Value>)> = vec![
        // sys
        ("GET", "/v1/sys/mounts", None),
        ("GET", "/v1/sys/mounts/secret/tune", None),
        ("GET", "/v1/sys/auth", None),
        (
            "POST",
            "/v1/sys/auth/approle",
            Some(json!({"type": "approle"})),
        ),
        ("GET", "/v1/sys/audit", None),
        ("PUT", "/v1/sys/seal", None),
        ("PUT", "/v1/sys/rotate", None),
        ("GET", "/v1/sys/key-status", None),
        ("GET", "/v1/sys/roles", None),
        ("PUT", "/v1/sys/roles/reload", None),
        (
            "POST",
            "/v1/sys/capabilities-self",
            Some(json!({"paths": ["secret/data/x"]})),
        ),
        ("GET", "/v1/sys/internal/ui/mounts/secret", None),
        // sys/policies (acl and legacy)
        ("LIST", "/v1/sys/policies/acl", None),
        ("GET", "/v1/sys/policies/acl/default", None),
        (
            "PUT",
            "/v1/sys/policies/acl/evil",
            Some(json!({"policy": "path \"*\" { capabilities = [\"sudo\"] }"})),
        ),
        ("DELETE", "/v1/sys/policies/acl/ds-read", None),
        ("GET", "/v1/sys/policy", None),
        ("GET", "/v1/sys/policy/default", None),
        (
            "PUT",
            "/v1/sys/policy/evil",
            Some(json!({"rules": "path \"*\" { capabilities = [\"sudo\"] }"})),
        ),
        // secret: data, metadata, config, delete/undelete/destroy
        ("GET", "/v1/secret/data/x", None),
        (
            "PUT",
            "/v1/secret/data/x",
            Some(json!({"data": {"a": "b"}})),
        ),
        (
            "PATCH",
            "/v1/secret/data/x",
            Some(json!({"data": {"a": "b"}})),
        ),
        ("DELETE", "/v1/secret/data/x", None),
        ("GET", "/v1/secret/metadata/x", None),
        ("LIST", "/v1/secret/metadata/", None),
        ("GET", "/v1/secret/metadata/?list=true", None),
        (
            "POST",
            "/v1/secret/metadata/x",
            Some(json!({"max_versions": 1})),
        ),
        ("DELETE", "/v1/secret/metadata/x", None),
        ("GET", "/v1/secret/config", None),
        (
            "POST",
            "/v1/secret/config",
            Some(json!({"max_versions": 1})),
        ),
        (
            "POST",
            "/v1/secret/delete/x",
            Some(json!({"versions": [1]})),
        ),
        (
            "POST",
            "/v1/secret/undelete/x",
            Some(json!({"versions": [1]})),
        ),
        (
            "POST",
            "/v1/secret/destroy/x",
            Some(json!({"versions": [1]})),
        ),
        ("GET", "/v1/secret/foo", None),
        // auth/token
        ("GET", "/v1/auth/token/lookup-self", None),
        ("POST", "/v1/auth/token/lookup-self", None),
        (
            "POST",
            "/v1/auth/token/lookup",
            Some(json!({"token": s.token})),
        ),
        (
            "POST",
            "/v1/auth/token/lookup-accessor",
            Some(json!({"accessor": "x"})),
        ),
        ("POST", "/v1/auth/token/create", Some(json!({}))),
        ("POST", "/v1/auth/token/create-orphan", Some(json!({}))),
        ("POST", "/v1/auth/token/create/somerole", Some(json!({}))),
        ("POST", "/v1/auth/token/renew-self", None),
        (
            "POST",
            "/v1/auth/token/renew",
            Some(json!({"token": s.token})),
        ),
        ("POST", "/v1/auth/token/revoke-self", None),
        (
            "POST",
            "/v1/auth/token/revoke",
            Some(json!({"token": s.token})),
        ),
        (
            "POST",
            "/v1/auth/token/revoke-accessor",
            Some(json!({"accessor": "x"})),
        ),
        ("LIST", "/v1/auth/token/roles", None),
        ("GET", "/v1/auth/token/roles/r", None),
        (
            "POST",
            "/v1/auth/token/roles/r",
            Some(json!({"allowed_policies": ["root"]})),
        ),
        ("DELETE", "/v1/auth/token/roles/r", None),
        // auth/approle (admin paths; login is unauthenticated)
        ("LIST", "/v1/auth/approle/role", None),
        ("GET", "/v1/auth/approle/role/r", None),
        (
            "POST",
            "/v1/auth/approle/role/r",
            Some(json!({"token_policies": "root"})),
        ),
        ("GET", "/v1/auth/approle/role/r/role-id", None),
        ("POST", "/v1/auth/approle/role/r/secret-id", Some(json!({}))),
        ("LIST", "/v1/auth/approle/role/r/secret-id", None),
        ("DELETE", "/v1/auth/approle/role/r", None),
        // anything else
        ("GET", "/v1/cubbyhole/x", None),
        ("GET", "/v1/nomount/x", None),
        ("GET", "/v1/auth/nosuch/x", None),
    ];
    let bad: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        (
            "forged",
            Some("arca.0123456789abcdefghijABCDEFGHIJ0123456789abc".to_string()),
        ),
        ("revoked", Some(revoked.clone())),
        ("expired", Some(expired.clone())),
        ("used up", Some(used_up.clone())),
    ];
    let mut failures = Vec::new();
    for (what, token) in &bad {
        let c = s.client().with_token(token.clone());
        for (method, path, body) in &endpoints {
            let r = req(&c, method, path, body.clone());
            if r.status != 403 || r.errors() != vec![BAD_TOKEN.to_string()] {
                failures.push(format!(
                    "{what}: {method} {path} -> {} {}",
                    r.status, r.body
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "not refused as a bad token:\n{}",
        failures.join("\n")
    );
    // Nothing was changed by any of them.
    expect(
        &req(&root, "GET", "/v1/sys/policies/acl/ds-read", None),
        200,
    );
    expect(&req(&root, "GET", "/v1/sys/policies/acl/evil", None), 404);
    expect(&req(&root, "GET", "/v1/auth/token/lookup-self", None), 200);
    assert!(!s.client_without_token().sys_health().unwrap().sealed);
}

// ---------------------------------------------------------------------- escalation

#[test]
fn child_tokens_cannot_widen_their_parent() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    put_policy(&root, "ds-read", DATASETS_READ);
    put_policy(
        &root,
        "admin",
        r#"path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#,
    );
    put_policy(
        &root,
        "spawner",
        r#"path "auth/token/create*" { capabilities = ["update"] }"#,
    );
    let (parent, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read", "spawner"], "ttl": "60s"}),
    );
    let p = as_token(&s, &parent);

    // More policies than the parent.
    for policies in [
        json!(["ds-read", "admin"]),
        json!(["admin"]),
        json!(["root"]),
        json!(["Root"]),
        json!(["ds-read", " root"]),
    ] {
        let r = req(
            &p,
            "POST",
            "/v1/auth/token/create",
            Some(json!({"policies": policies})),
        );
        assert_eq!(r.status, 403, "child with {policies}: {}", r.body);
    }
    // A longer TTL than the parent has left.
    for ttl in [json!("2h"), json!(3600), json!("61s")] {
        let r = req(
            &p,
            "POST",
            "/v1/auth/token/create",
            Some(json!({"policies": ["ds-read"], "ttl": ttl})),
        );
        assert_eq!(r.status, 403, "child with ttl {ttl}: {}", r.body);
    }
    // An orphan (or a periodic token) needs sudo.
    let r = req(
        &p,
        "POST",
        "/v1/auth/token/create",
        Some(json!({"policies": ["ds-read"], "no_parent": true})),
    );
    expect_error(
        &r,
        403,
        "root or sudo privileges required to create orphan token",
    );
    let r = req(
        &p,
        "POST",
        "/v1/auth/token/create-orphan",
        Some(json!({"policies": ["ds-read"]})),
    );
    expect_error(
        &r,
        403,
        "root or sudo privileges required to create orphan token",
    );
    let r = req(
        &p,
        "POST",
        "/v1/auth/token/create",
        Some(json!({"policies": ["ds-read"], "period": "1h"})),
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // Within the limits it works, and the child never outlives its parent.
    let (_, _, auth) = create_token(
        &p,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"], "ttl": "30s"}),
    );
    assert_eq!(auth["policies"], json!(["default", "ds-read"]));
    assert_eq!(auth["lease_duration"], json!(30));
    let (child, _, auth) = create_token(&p, "/v1/auth/token/create", json!({}));
    assert!(auth["lease_duration"].as_u64().unwrap() <= 60, "{auth}");
    // Renewing the child cannot push it past the parent either.
    let r = req(
        &as_token(&s, &child),
        "POST",
        "/v1/auth/token/renew-self",
        Some(json!({"increment": "2h"})),
    );
    let v = expect(&r, 200);
    assert!(v["auth"]["lease_duration"].as_u64().unwrap() <= 60, "{v}");

    // A use-limited parent cannot make an unlimited child, or one with more uses.
    let (limited, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read", "spawner"], "num_uses": 3}),
    );
    let l = as_token(&s, &limited);
    let r = req(
        &l,
        "POST",
        "/v1/auth/token/create",
        Some(json!({"policies": ["ds-read"]})),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = req(
        &l,
        "POST",
        "/v1/auth/token/create",
        Some(json!({"policies": ["ds-read"], "num_uses": 5})),
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn a_token_cannot_edit_its_own_policy() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    let original =
        r#"path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }"#;
    put_policy(&root, "itself", original);
    let (tok, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["itself"]}),
    );
    let t = as_token(&s, &tok);
    kv_put(&t, "mine", json!({"a": "b"}));
    let widened = json!({"policy": r#"path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#});
    expect_acl_denied(&req(
        &t,
        "PUT",
        "/v1/sys/policies/acl/itself",
        Some(widened.clone()),
    ));
    expect_acl_denied(&req(
        &t,
        "POST",
        "/v1/sys/policies/acl/ITSELF",
        Some(widened.clone()),
    ));
    expect_acl_denied(&req(
        &t,
        "PUT",
        "/v1/sys/policy/itself",
        Some(widened.clone()),
    ));
    expect_acl_denied(&req(
        &t,
        "PUT",
        "/v1/sys/policies/acl/other",
        Some(widened.clone()),
    ));
    expect_acl_denied(&req(&t, "DELETE", "/v1/sys/policies/acl/itself", None));
    expect_acl_denied(&req(
        &t,
        "PUT",
        "/v1/sys/policies/acl/default",
        Some(widened),
    ));
    let v = expect(&req(&root, "GET", "/v1/sys/policies/acl/itself", None), 200);
    assert_eq!(v["data"]["policy"], json!(original));
    expect_acl_denied(&req(&t, "GET", "/v1/sys/mounts", None));

    // `create` alone on sys/policies/acl/* cannot add a policy either (always `update`, §9).
    put_policy(
        &root,
        "pol-create",
        r#"path "sys/policies/acl/*" { capabilities = ["create"] }"#,
    );
    let (tc, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["pol-create"]}),
    );
    expect_acl_denied(&req(
        &as_token(&s, &tc),
        "PUT",
        "/v1/sys/policies/acl/brand-new",
        Some(json!({"policy": "path \"a\" { capabilities = [\"read\"] }"})),
    ));
}

#[test]
fn root_names_and_default_policy_are_protected() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    let body = json!({"policy": r#"path "*" { capabilities = ["read"] }"#});
    for name in [
        "root",
        "Root",
        "ROOT",
        "%20root",
        "root%20",
        "%20ROOT%20",
        "rOoT",
    ] {
        for prefix in ["/v1/sys/policies/acl/", "/v1/sys/policy/"] {
            let r = req(&root, "PUT", &format!("{prefix}{name}"), Some(body.clone()));
            assert_eq!(r.status, 400, "{prefix}{name}: {}", r.body);
            assert_eq!(
                r.errors(),
                vec!["cannot update \"root\" policy".to_string()],
                "{prefix}{name}"
            );
        }
        let r = req(
            &root,
            "DELETE",
            &format!("/v1/sys/policies/acl/{name}"),
            None,
        );
        expect_error(&r, 400, "cannot delete \"root\" policy");
    }
    let v = expect(&req(&root, "GET", "/v1/sys/policies/acl/root", None), 200);
    assert_eq!(v["data"]["policy"], json!(""));
    for name in ["default", "Default", "DEFAULT"] {
        let r = req(
            &root,
            "DELETE",
            &format!("/v1/sys/policies/acl/{name}"),
            None,
        );
        assert_eq!(r.status, 400, "{name}: {}", r.body);
        assert_eq!(r.errors(), vec!["cannot delete default policy".to_string()]);
        let r = req(&root, "DELETE", &format!("/v1/sys/policy/{name}"), None);
        expect_error(&r, 400, "cannot delete default policy");
    }
    expect(
        &req(&root, "GET", "/v1/sys/policies/acl/default", None),
        200,
    );
    // default is editable, and names are lowercased.
    put_policy(&root, "UPPER", r#"path "a/*" { capabilities = ["read"] }"#);
    let v = expect(&req(&root, "GET", "/v1/sys/policies/acl/upper", None), 200);
    assert_eq!(v["data"]["name"], json!("upper"));
    let v = expect(&req(&root, "LIST", "/v1/sys/policies/acl", None), 200);
    let keys = v["data"]["keys"].as_array().unwrap().clone();
    assert!(
        keys.contains(&json!("upper")) && keys.contains(&json!("default")),
        "{v}"
    );
    assert!(!keys.contains(&json!("UPPER")));
    assert_eq!(keys.last(), Some(&json!("root")));
    // Malformed policies are refused with the reason.
    let r = req(
        &root,
        "PUT",
        "/v1/sys/policies/acl/bad",
        Some(json!({"policy": r#"path "x" { capabilities = ["fly"] }"#})),
    );
    expect_error(&r, 400, "invalid capability");
    let r = req(
        &root,
        "PUT",
        "/v1/sys/policies/acl/bad",
        Some(json!({"policy": "path \"x\" { capabilities = [\"read\" }"})),
    );
    expect_error(&r, 400, "failed to parse policy");
    expect_error(
        &req(&root, "PUT", "/v1/sys/policies/acl/bad", Some(json!({}))),
        400,
        "'policy' parameter not supplied or empty",
    );
    // A non-root parent cannot give out root under any spelling (and root tokens only come from root).
    put_policy(
        &root,
        "spawner",
        r#"path "auth/token/create" { capabilities = ["update"] }"#,
    );
    let (sp, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["spawner"]}),
    );
    for name in ["root", "Root", " root", "ROOT "] {
        let r = req(
            &as_token(&s, &sp),
            "POST",
            "/v1/auth/token/create",
            Some(json!({"policies": [name]})),
        );
        assert_eq!(r.status, 403, "{name:?}: {}", r.body);
    }
}

// ---------------------------------------------------------------------- traversal

/// A token allowed `secret/data/public/*` cannot reach `private/` through `..`, `%2e%2e`,
/// mixed case, `./` or double slashes: each such request is refused and reads nothing.
#[test]
fn path_traversal_cannot_reach_ungranted_paths() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    kv_put(&root, "public/a", json!({"v": "public-value"}));
    kv_put(&root, "private/x", json!({"v": "TOPSECRET-private"}));
    kv_put(&root, "PUBLIC/x", json!({"v": "TOPSECRET-upper"}));
    put_policy(
        &root,
        "public",
        r#"
path "secret/data/public/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/public/*" { capabilities = ["list", "read"] }
"#,
    );
    let (tok, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["public"]}),
    );
    let (st, body) = raw_http(&s.addr, "GET", "/v1/secret/data/public/a", Some(&tok), "");
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("public-value"));

    let dotted = [
        "/v1/secret/data/public/../private/x",
        "/v1/secret/data/public/%2e%2e/private/x",
        "/v1/secret/data/public/%2E%2E/private/x",
        "/v1/secret/data/public/%2e./private/x",
        "/v1/secret/data/public/.%2E/private/x",
        "/v1/secret/data/public/..%2fprivate/x",
        "/v1/secret/data/public%2f..%2fprivate%2fx",
        "/v1/secret/data/public/./../private/x",
        "/v1/secret/data/public/%2e/../private/x",
        "/v1/secret/data/public/../../data/private/x",
        "/v1/secret/data/public/x/../../private/x",
        "/v1/secret/data/public//../private/x",
        "/v1/secret/data/public/./a",
        "/v1/secret/data/public//a",
        "/v1/secret/data//private/x",
        "/v1/secret//data/private/x",
        "/v1//secret/data/private/x",
        "/v1/secret/data/public/%2e%2e%2fprivate%2fx",
        "/v1/secret/metadata/public/../private/x",
        "/v1/secret/data/public/..",
        "/v1/secret/data/public/.",
    ];
    let mut failures = Vec::new();
    for path in dotted {
        let (st, body) = raw_http(&s.addr, "GET", path, Some(&tok), "");
        if st != 400 || body.contains("TOPSECRET") {
            failures.push(format!("GET {path} -> {st} {body}"));
        }
        // The same with root: the path itself is refused, whoever asks.
        let (st, body) = raw_http(&s.addr, "GET", path, Some(&s.token), "");
        if st != 400 || body.contains("TOPSECRET") {
            failures.push(format!("GET {path} (root) -> {st} {body}"));
        }
        // A write through the same path changes nothing.
        let (st, body) = raw_http(
            &s.addr,
            "PUT",
            path,
            Some(&tok),
            r#"{"data":{"v":"overwritten"}}"#,
        );
        if st != 400 {
            failures.push(format!("PUT {path} -> {st} {body}"));
        }
    }
    // Other spellings of `private` or `public`: not the granted prefix, so denied (403), or a
    // different literal key inside `public/` (404); never the private value.
    for path in [
        "/v1/secret/data/PUBLIC/x",
        "/v1/secret/data/Public/../private/x",
        "/v1/secret/data/public/%252e%252e/private/x",
        "/v1/secret/data/public/..%5cprivate%5cx",
        "/v1/secret/data/public/...%2fprivate/x",
        "/v1/secret/data/public/%2e%2e%5cprivate/x",
        "/v1/SECRET/data/public/a",
        "/v1/secret/DATA/public/a",
    ] {
        let (st, body) = raw_http(&s.addr, "GET", path, Some(&tok), "");
        if !(st == 400 || st == 403 || st == 404) || body.contains("TOPSECRET") {
            failures.push(format!("GET {path} -> {st} {body}"));
        }
    }
    let (st, body) = raw_http(&s.addr, "GET", "/v1/secret/data/PUBLIC/x", Some(&tok), "");
    if st != 403 {
        failures.push(format!("mixed case GET -> {st} {body}"));
    }
    assert!(
        failures.is_empty(),
        "traversal not refused:\n{}",
        failures.join("\n")
    );
    let v = expect(&req(&root, "GET", "/v1/secret/data/private/x", None), 200);
    assert_eq!(v["data"]["data"]["v"], json!("TOPSECRET-private"));
    assert_eq!(v["data"]["metadata"]["version"], json!(1));
    // LIST cannot climb either.
    let (st, _) = raw_http(
        &s.addr,
        "LIST",
        "/v1/secret/metadata/public/..",
        Some(&tok),
        "",
    );
    assert_eq!(st, 400);
    let (st, _) = raw_http(&s.addr, "LIST", "/v1/secret/metadata/", Some(&tok), "");
    assert_eq!(st, 403);
}

// ---------------------------------------------------------------------- num_uses

fn concurrent_successes(c: &Client, path: &str, n: usize) -> (usize, Vec<String>) {
    let ok = Arc::new(AtomicUsize::new(0));
    let odd = Arc::new(std::sync::Mutex::new(Vec::new()));
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let c = c.clone();
            let ok = ok.clone();
            let odd = odd.clone();
            let barrier = barrier.clone();
            let path = path.to_string();
            thread::spawn(move || {
                barrier.wait();
                let r = c.request("GET", &path, None).expect("request");
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else if r.status != 403 || r.errors() != vec![BAD_TOKEN.to_string()] {
                    odd.lock().unwrap().push(format!("{} {}", r.status, r.body));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let odd = odd.lock().unwrap().clone();
    (ok.load(Ordering::SeqCst), odd)
}

#[test]
fn num_uses_is_exact_under_100_concurrent_requests() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    kv_put(&root, "datasets/a", json!({"k": "v"}));
    put_policy(&root, "ds-read", DATASETS_READ);
    let (tok, _, auth) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"], "num_uses": 10}),
    );
    assert_eq!(auth["num_uses"], json!(10));
    let t = as_token(&s, &tok);
    let (ok, odd) = concurrent_successes(&t, "/v1/secret/data/datasets/a", 100);
    assert!(odd.is_empty(), "unexpected answers: {odd:?}");
    assert_eq!(
        ok, 10,
        "a 10-use token served {ok} of 100 concurrent requests"
    );
    expect_bad_token(&req(&t, "GET", "/v1/secret/data/datasets/a", None));
    expect_error(
        &req(
            &root,
            "POST",
            "/v1/auth/token/lookup",
            Some(json!({"token": tok})),
        ),
        403,
        "bad token",
    );

    // Every request counts, lookup-self included, and the count shown is after the decrement.
    let (tok, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"], "num_uses": 3}),
    );
    let t = as_token(&s, &tok);
    let v = expect(&req(&t, "GET", "/v1/auth/token/lookup-self", None), 200);
    assert_eq!(v["data"]["num_uses"], json!(2));
    // A denied request spends a use too (the token was valid).
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/other", None));
    expect(&req(&t, "GET", "/v1/secret/data/datasets/a", None), 200);
    expect_bad_token(&req(&t, "GET", "/v1/secret/data/datasets/a", None));
}

#[test]
fn num_uses_and_expiry_survive_a_restart() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    kv_put(&root, "datasets/a", json!({"k": "v"}));
    put_policy(&root, "ds-read", DATASETS_READ);
    let (tok, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"], "num_uses": 10}),
    );
    let (tok2, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"], "num_uses": 10}),
    );
    let (short, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"], "ttl": "3s"}),
    );
    let (revoked, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"]}),
    );
    let (lasting, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"], "ttl": "1h"}),
    );
    expect(
        &req(
            &root,
            "POST",
            "/v1/auth/token/revoke",
            Some(json!({"token": revoked})),
        ),
        204,
    );
    let t = as_token(&s, &tok);
    for i in 0..5 {
        expect(&req(&t, "GET", "/v1/secret/data/datasets/a", None), 200);
        let _ = i;
    }
    let t2 = as_token(&s, &tok2);
    let (ok, odd) = concurrent_successes(&t2, "/v1/secret/data/datasets/a", 5);
    assert!(odd.is_empty() && ok == 5, "{ok} {odd:?}");

    // kill -9 and start again on the same data.
    let dir = s.into_data_dir();
    thread::sleep(Duration::from_millis(3100));
    let s = TestServer::spawn_dev_in(dir);
    let t = as_token(&s, &tok);
    for i in 0..5 {
        let r = req(&t, "GET", "/v1/secret/data/datasets/a", None);
        assert_eq!(
            r.status,
            200,
            "use {} of the remaining 5 after the restart: {}",
            i + 1,
            r.body
        );
    }
    expect_bad_token(&req(&t, "GET", "/v1/secret/data/datasets/a", None));
    // The remaining 5 uses of the other token, under 50 concurrent requests.
    let (ok, odd) = concurrent_successes(&as_token(&s, &tok2), "/v1/secret/data/datasets/a", 50);
    assert!(odd.is_empty(), "{odd:?}");
    assert_eq!(
        ok, 5,
        "after a restart a token with 5 uses left served {ok} requests"
    );
    // Expired and revoked tokens stay refused; a valid one still works.
    expect_bad_token(&req(
        &as_token(&s, &short),
        "GET",
        "/v1/secret/data/datasets/a",
        None,
    ));
    expect_bad_token(&req(
        &as_token(&s, &revoked),
        "GET",
        "/v1/secret/data/datasets/a",
        None,
    ));
    expect(
        &req(
            &as_token(&s, &lasting),
            "GET",
            "/v1/secret/data/datasets/a",
            None,
        ),
        200,
    );
}

// ---------------------------------------------------------------------- ACL decision table

/// One token with `policies`, and the status of each (method, path) it tries.
fn token_with(s: &TestServer, policies: &[&str]) -> Client {
    let (tok, _, _) = create_token(
        &s.client(),
        "/v1/auth/token/create",
        json!({"policies": policies}),
    );
    as_token(s, &tok)
}

#[test]
fn acl_decisions_in_practice() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    for key in [
        "shared/a",
        "db/prod",
        "other/a",
        "ok/x",
        "team/prod",
        "ml/prod",
        "e/prod",
        "e/prox",
        "c/existing",
        "u/existing",
        "p/k",
    ] {
        kv_put(&root, key, json!({"k": key}));
    }
    kv_put(&root, "x/public/a", json!({"k": "a"}));
    kv_put(&root, "x/private/b", json!({"k": "b"}));

    // Deny wins on the same pattern, also across policies.
    put_policy(
        &root,
        "shared-read",
        r#"path "secret/data/shared/*" { capabilities = ["read"] }"#,
    );
    put_policy(
        &root,
        "shared-deny",
        r#"path "secret/data/shared/*" { capabilities = ["deny"] }"#,
    );
    let t = token_with(&s, &["shared-read", "shared-deny"]);
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/shared/a", None));
    let t = token_with(&s, &["shared-read"]);
    expect(&req(&t, "GET", "/v1/secret/data/shared/a", None), 200);

    // The most specific pattern wins; capabilities are not unioned across patterns.
    put_policy(
        &root,
        "specific",
        r#"
path "secret/data/*" { capabilities = ["read"] }
path "secret/data/db/*" { capabilities = ["create", "update"] }
"#,
    );
    let t = token_with(&s, &["specific"]);
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/db/prod", None));
    expect(
        &req(
            &t,
            "PUT",
            "/v1/secret/data/db/prod",
            Some(json!({"data": {"a": "b"}})),
        ),
        200,
    );
    expect(&req(&t, "GET", "/v1/secret/data/other/a", None), 200);
    let caps = t
        .capabilities_self(&["secret/data/db/prod".into(), "secret/data/other/a".into()])
        .unwrap();
    assert_eq!(
        caps["secret/data/db/prod"],
        vec!["create".to_string(), "update".to_string()]
    );
    assert_eq!(caps["secret/data/other/a"], vec!["read".to_string()]);

    // A deny on a less specific pattern does not block a more specific grant.
    put_policy(
        &root,
        "deny-broad",
        r#"
path "secret/data/*" { capabilities = ["deny"] }
path "secret/data/ok/*" { capabilities = ["read"] }
"#,
    );
    let t = token_with(&s, &["deny-broad"]);
    expect(&req(&t, "GET", "/v1/secret/data/ok/x", None), 200);
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/other/a", None));

    // `+` is one segment; a later first wildcard wins; exact beats glob.
    put_policy(
        &root,
        "segments",
        r#"
path "secret/data/+/prod" { capabilities = ["read"] }
path "secret/data/team/*" { capabilities = ["deny"] }
path "secret/data/e/prod" { capabilities = ["create"] }
path "secret/data/e/pro*" { capabilities = ["read"] }
"#,
    );
    let t = token_with(&s, &["segments"]);
    expect(&req(&t, "GET", "/v1/secret/data/ml/prod", None), 200);
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/team/prod", None));
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/ml/sub/prod", None));
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/e/prod", None));
    expect(&req(&t, "GET", "/v1/secret/data/e/prox", None), 200);

    // LIST on a folder denied by `x/private/*`.
    put_policy(
        &root,
        "folders",
        r#"
path "secret/metadata/x/*" { capabilities = ["list"] }
path "secret/metadata/x/private/*" { capabilities = ["deny"] }
"#,
    );
    let t = token_with(&s, &["folders"]);
    let v = expect(&req(&t, "LIST", "/v1/secret/metadata/x", None), 200);
    assert_eq!(v["data"]["keys"], json!(["private/", "public/"]));
    expect(&req(&t, "LIST", "/v1/secret/metadata/x/public", None), 200);
    expect_acl_denied(&req(&t, "LIST", "/v1/secret/metadata/x/private", None));
    expect_acl_denied(&req(&t, "LIST", "/v1/secret/metadata/x/private/", None));
    expect_acl_denied(&req(
        &t,
        "GET",
        "/v1/secret/metadata/x/private?list=true",
        None,
    ));

    // patch is separate from update.
    put_policy(
        &root,
        "upd",
        r#"path "secret/data/p/*" { capabilities = ["read", "update"] }"#,
    );
    put_policy(
        &root,
        "pat",
        r#"path "secret/data/p/*" { capabilities = ["patch"] }"#,
    );
    let t = token_with(&s, &["upd"]);
    expect_acl_denied(&req(
        &t,
        "PATCH",
        "/v1/secret/data/p/k",
        Some(json!({"data": {"n": "1"}})),
    ));
    expect(
        &req(
            &t,
            "PUT",
            "/v1/secret/data/p/k",
            Some(json!({"data": {"n": "2"}})),
        ),
        200,
    );
    let t = token_with(&s, &["pat"]);
    expect(
        &req(
            &t,
            "PATCH",
            "/v1/secret/data/p/k",
            Some(json!({"data": {"n": "3"}})),
        ),
        200,
    );
    expect_acl_denied(&req(
        &t,
        "PUT",
        "/v1/secret/data/p/k",
        Some(json!({"data": {"n": "4"}})),
    ));

    // create vs update depends on whether the key exists.
    put_policy(
        &root,
        "create-only",
        r#"path "secret/data/c/*" { capabilities = ["create"] }"#,
    );
    put_policy(
        &root,
        "update-only",
        r#"path "secret/data/u/*" { capabilities = ["update"] }"#,
    );
    let t = token_with(&s, &["create-only"]);
    expect(
        &req(
            &t,
            "PUT",
            "/v1/secret/data/c/new",
            Some(json!({"data": {"a": "1"}})),
        ),
        200,
    );
    expect_acl_denied(&req(
        &t,
        "PUT",
        "/v1/secret/data/c/new",
        Some(json!({"data": {"a": "2"}})),
    ));
    expect_acl_denied(&req(
        &t,
        "PUT",
        "/v1/secret/data/c/existing",
        Some(json!({"data": {"a": "2"}})),
    ));
    let t = token_with(&s, &["update-only"]);
    expect_acl_denied(&req(
        &t,
        "PUT",
        "/v1/secret/data/u/new",
        Some(json!({"data": {"a": "1"}})),
    ));
    expect(
        &req(
            &t,
            "PUT",
            "/v1/secret/data/u/existing",
            Some(json!({"data": {"a": "2"}})),
        ),
        200,
    );

    // A policy change applies at once to tokens that carry it; unknown names grant nothing.
    let t = token_with(&s, &["shared-read", "does-not-exist"]);
    expect(&req(&t, "GET", "/v1/secret/data/shared/a", None), 200);
    put_policy(
        &root,
        "shared-read",
        r#"path "secret/data/elsewhere/*" { capabilities = ["read"] }"#,
    );
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/shared/a", None));
    expect(
        &req(&root, "DELETE", "/v1/sys/policies/acl/shared-read", None),
        204,
    );
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/shared/a", None));
}

// ---------------------------------------------------------------------- CLI

#[test]
fn cli_policy_round_trip() {
    let s = TestServer::spawn_dev();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ds.hcl");
    std::fs::write(&file, DATASETS_READ).unwrap();
    let file = file.to_str().unwrap();

    let out = s.run(&["policy", "write", "ds-read", file]);
    out.ok();
    assert_eq!(out.stdout, "Success! Uploaded policy: ds-read\n");
    let out = s.run_stdin(
        &["policy", "write", "From-Stdin", "-"],
        "path \"a/*\" { capabilities = [\"read\"] }\n",
    );
    out.ok();
    assert!(out.stdout.contains("from-stdin"), "{out:#?}");
    let out = s.run(&["policy", "read", "ds-read"]);
    out.ok();
    assert_eq!(out.stdout, DATASETS_READ);
    let out = s.run(&["policy", "read", "--format", "json", "DS-READ"]);
    out.ok();
    assert_eq!(out.json()["policy"], json!(DATASETS_READ));
    assert_eq!(out.json()["name"], json!("ds-read"));
    let out = s.run(&["policy", "list"]);
    out.ok();
    let names: Vec<&str> = out.stdout.lines().collect();
    assert!(
        names.contains(&"default") && names.contains(&"ds-read") && names.contains(&"from-stdin"),
        "{out:#?}"
    );
    let out = s.run(&["policy", "list", "--format", "json"]);
    out.ok();
    assert!(out.json().as_array().unwrap().contains(&json!("root")));

    // Errors: not found 2, refused 1, usage 2.
    s.run(&["policy", "read", "nope"]).expect_code(2);
    let out = s.run(&["policy", "delete", "default"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("cannot delete default policy"),
        "{out:#?}"
    );
    for name in ["root", "Root", " root"] {
        let out = s.run(&["policy", "write", name, file]);
        out.expect_code(1);
        assert!(
            out.stderr.contains("cannot update \"root\" policy"),
            "{out:#?}"
        );
    }
    let out = s.run_stdin(
        &["policy", "write", "bad", "-"],
        "path \"x\" { capabilities = [\"fly\"] }",
    );
    out.expect_code(1);
    assert!(out.stderr.contains("invalid capability"), "{out:#?}");
    s.run(&["policy", "write", "x", "/nonexistent/x.hcl"])
        .expect_code(1);
    s.run_stdin(&["policy", "write", "x", "-"], "")
        .expect_code(2);
    s.run(&["policy", "write", "x"]).expect_code(2);
    s.run(&["policy"]).expect_code(2);
    s.run(&["policy", "frobnicate"]).expect_code(2);
    s.run(&["policy", "write", "a/b", file]).expect_code(2);

    let out = s.run(&["policy", "delete", "from-stdin"]);
    out.ok();
    assert_eq!(out.stdout, "Success! Deleted policy: from-stdin\n");
    s.run(&["policy", "read", "from-stdin"]).expect_code(2);

    // Without rights: exit 1, permission denied.
    let (tok, _, _) = create_token(
        &s.client(),
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"]}),
    );
    let out = run_cmd(
        s.cli_with_token(Some(&tok))
            .args(["policy", "write", "ds-read", file]),
        None,
    );
    out.expect_code(1);
    assert!(out.stderr.contains("permission denied"), "{out:#?}");
    assert_no_secret(&out, &[&tok, &s.token]);
    let out = run_cmd(s.cli_with_token(None).args(["policy", "list"]), None);
    out.expect_code(1);
}

#[test]
fn cli_token_round_trip_never_prints_unasked_tokens() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    kv_put(&root, "datasets/a", json!({"k": "v"}));
    put_policy(&root, "ds-read", DATASETS_READ);
    let root_tok = s.token.clone();

    // create: table, JSON, --field
    let out = s.run(&[
        "token",
        "create",
        "--policy",
        "ds-read",
        "--ttl",
        "15m",
        "--meta",
        "job=train",
        "--display-name",
        "trainer",
        "--num-uses",
        "50",
    ]);
    out.ok();
    let row = |out: &CliOutput, key: &str| -> String {
        out.stdout
            .lines()
            .find_map(|l| {
                let mut parts = l.splitn(2, char::is_whitespace);
                (parts.next() == Some(key)).then(|| parts.next().unwrap_or("").trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {key} row: {out:#?}"))
    };
    let tok = row(&out, "token");
    assert!(tok.starts_with("arca."), "{out:#?}");
    assert_eq!(row(&out, "policies"), "[default ds-read]");
    assert_eq!(row(&out, "ttl"), "15m");
    assert_eq!(row(&out, "renewable"), "true");
    assert_eq!(row(&out, "num_uses"), "50");
    assert_eq!(row(&out, "meta_job"), "train");
    let acc = row(&out, "accessor");
    assert_no_secret(&out, &[&root_tok]);

    let out = s.run(&[
        "token",
        "create",
        "--policy",
        "ds-read",
        "--format",
        "json",
        "--no-default-policy",
    ]);
    out.ok();
    let v = out.json();
    assert!(v["client_token"].as_str().unwrap().starts_with("arca."));
    assert_eq!(v["policies"], json!(["ds-read"]));
    assert_eq!(v["metadata"], Value::Null);
    assert_no_secret(&out, &[&root_tok, &tok]);

    let out = s.run(&[
        "token", "create", "--policy", "ds-read", "--ttl", "10m", "--field", "token",
    ]);
    out.ok();
    let tok2 = out.stdout.clone();
    assert!(
        tok2.starts_with("arca.") && !tok2.contains('\n'),
        "{out:#?}"
    );
    expect(
        &req(
            &as_token(&s, &tok2),
            "GET",
            "/v1/secret/data/datasets/a",
            None,
        ),
        200,
    );

    // lookup: self, by token on stdin, by accessor. Never the token itself.
    let out = run_cmd(s.cli_with_token(Some(&tok)).args(["token", "lookup"]), None);
    out.ok();
    assert_eq!(row(&out, "display_name"), "token-trainer");
    assert!(row(&out, "policies").contains("ds-read"));
    assert_no_secret(&out, &[&tok]);
    let out = s.run_stdin(&["token", "lookup", "-"], &format!("{tok}\n"));
    out.ok();
    assert_eq!(row(&out, "accessor"), acc);
    assert_no_secret(&out, &[&tok, &root_tok]);
    let out = s.run(&["token", "lookup", "--format", "json", "--accessor", &acc]);
    out.ok();
    assert_eq!(out.json()["display_name"], json!("token-trainer"));
    assert!(out.json().get("id").is_none());
    assert_no_secret(&out, &[&tok, &root_tok]);
    let out = s.run(&["token", "lookup", "--format", "json"]);
    out.ok();
    assert_eq!(out.json()["policies"], json!(["root"]));
    assert_no_secret(&out, &[&root_tok]);
    let out = s.run_stdin(&["token", "lookup", "-"], "arca.forged");
    out.expect_code(1);
    assert!(out.stderr.contains("bad token"), "{out:#?}");
    assert_no_secret(&out, &["arca.forged", &root_tok]);
    s.run(&["token", "lookup", "--accessor", "nope"])
        .expect_code(1);
    s.run(&["token", "lookup", "-", "--accessor", &acc])
        .expect_code(2);

    // renew: self, by token on stdin, by accessor.
    let out = run_cmd(
        s.cli_with_token(Some(&tok))
            .args(["token", "renew", "--increment", "5m"]),
        None,
    );
    out.ok();
    assert_eq!(row(&out, "ttl"), "5m");
    assert_no_secret(&out, &[&tok]);
    let out = s.run_stdin(
        &[
            "token",
            "renew",
            "-",
            "--increment",
            "6m",
            "--format",
            "json",
        ],
        &tok,
    );
    out.ok();
    assert_eq!(out.json()["lease_duration"], json!(360));
    assert!(out.json().get("client_token").is_none());
    assert_no_secret(&out, &[&tok, &root_tok]);
    let out = s.run(&["token", "renew", "--accessor", &acc, "--increment", "7m"]);
    out.ok();
    assert_eq!(row(&out, "ttl"), "7m");
    s.run(&["token", "renew", "--increment", "soon"])
        .expect_code(2);
    let out = s.run(&["token", "renew"]);
    out.expect_code(1);
    assert!(out.stderr.contains("lease is not renewable"), "{out:#?}");

    // capabilities
    let out = run_cmd(
        s.cli_with_token(Some(&tok))
            .args(["token", "capabilities", "secret/data/datasets/a"]),
        None,
    );
    out.ok();
    assert_eq!(out.stdout, "read\n");
    let out = run_cmd(
        s.cli_with_token(Some(&tok)).args([
            "token",
            "capabilities",
            "--format",
            "json",
            "secret/data/datasets/a",
            "secret/data/x",
        ]),
        None,
    );
    out.ok();
    assert_eq!(
        out.json(),
        json!({"secret/data/datasets/a": ["read"], "secret/data/x": ["deny"]})
    );
    assert_no_secret(&out, &[&tok]);
    s.run(&["token", "capabilities"]).expect_code(2);

    // Escalation through the CLI: exit 1 with the reason.
    let out = run_cmd(
        s.cli_with_token(Some(&tok))
            .args(["token", "create", "--policy", "root"]),
        None,
    );
    out.expect_code(1);
    assert_no_secret(&out, &[&tok]);
    s.run(&["token", "create", "--ttl", "abc"]).expect_code(2);
    s.run(&["token", "create", "--meta", "novalue"])
        .expect_code(2);
    s.run(&["token", "create", "--num-uses", "-1"])
        .expect_code(2);

    // revoke: by token on stdin, by accessor, self; exactly one target required.
    s.run(&["token", "revoke"]).expect_code(2);
    s.run(&["token", "revoke", "--self", "--accessor", &acc])
        .expect_code(2);
    let out = s.run_stdin(&["token", "revoke", "-"], &tok2);
    out.ok();
    assert_eq!(out.stdout, "Success! Revoked token (if it existed)\n");
    assert_no_secret(&out, &[&tok2, &root_tok]);
    expect_bad_token(&req(
        &as_token(&s, &tok2),
        "GET",
        "/v1/auth/token/lookup-self",
        None,
    ));
    let out = s.run(&["token", "revoke", "--accessor", &acc]);
    out.ok();
    expect_bad_token(&req(
        &as_token(&s, &tok),
        "GET",
        "/v1/auth/token/lookup-self",
        None,
    ));
    let out = s.run(&["token", "revoke", "--accessor", "unknown-accessor"]);
    out.ok();
    assert!(
        out.stderr.contains("No token found with this accessor"),
        "{out:#?}"
    );
    let (tok3, _, _) = create_token(
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ds-read"]}),
    );
    let out = run_cmd(
        s.cli_with_token(Some(&tok3))
            .args(["token", "revoke", "--self"]),
        None,
    );
    out.ok();
    assert_no_secret(&out, &[&tok3]);
    expect_bad_token(&req(
        &as_token(&s, &tok3),
        "GET",
        "/v1/auth/token/lookup-self",
        None,
    ));
    // Using a revoked token from the CLI: exit 1, the token not echoed.
    let out = run_cmd(
        s.cli_with_token(Some(&tok3)).args(["token", "lookup"]),
        None,
    );
    out.expect_code(1);
    assert!(out.stderr.contains("permission denied"), "{out:#?}");
    assert_no_secret(&out, &[&tok3]);
}

#[test]
fn cli_role_round_trip() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    kv_put(&root, "datasets/a", json!({"k": "v"}));
    put_policy(&root, "ds-read", DATASETS_READ);
    let out = s.run(&["role", "list"]);
    out.expect_code(2);
    expect(
        &req(
            &root,
            "POST",
            "/v1/auth/token/roles/trainer",
            Some(json!({"allowed_policies": "ds-read", "token_explicit_max_ttl": "1h"})),
        ),
        204,
    );
    let out = s.run(&["role", "list"]);
    out.ok();
    assert_eq!(out.stdout, "Keys\n----\ntrainer\n");
    let out = s.run(&["role", "list", "--format", "json"]);
    out.ok();
    assert_eq!(out.json(), json!(["trainer"]));
    let out = s.run(&["role", "read", "trainer"]);
    out.ok();
    assert!(
        out.stdout.lines().any(|l| l
            .split_whitespace()
            .eq(["allowed_policies", "[\"ds-read\"]"])),
        "{out:#?}"
    );
    let out = s.run(&["role", "read", "--format", "json", "trainer"]);
    out.ok();
    assert_eq!(out.json()["token_explicit_max_ttl"], json!(3600));
    s.run(&["role", "read", "nope"]).expect_code(2);

    // `role token` is `token create --role`.
    let out = s.run(&[
        "role", "token", "trainer", "--ttl", "15m", "--field", "token",
    ]);
    out.ok();
    let tok = out.stdout.clone();
    let t = as_token(&s, &tok);
    expect(&req(&t, "GET", "/v1/secret/data/datasets/a", None), 200);
    let v = expect(&req(&t, "GET", "/v1/auth/token/lookup-self", None), 200);
    assert_eq!(v["data"]["role"], json!("trainer"));
    assert_eq!(
        v["data"]["ttl"].as_u64().map(|t| t <= 900 && t > 890),
        Some(true)
    );
    let out = s.run(&["token", "create", "--role", "trainer", "--format", "json"]);
    out.ok();
    assert_eq!(out.json()["policies"], json!(["default", "ds-read"]));
    assert_eq!(out.json()["lease_duration"], json!(3600));
    let out = s.run(&["role", "token", "trainer", "--policy", "admin"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("must be subset of the role's allowed policies"),
        "{out:#?}"
    );
    let out = s.run(&["role", "token", "nope"]);
    out.expect_code(1);
    assert!(out.stderr.contains("unknown role nope"), "{out:#?}");
    assert_no_secret(&out, &[&s.token]);
    s.run(&["role", "token"]).expect_code(2);
}

fn example_roles() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/roles.toml"),
    )
    .expect("config/roles.toml")
}

/// The shipped roles file end to end through the CLI: the operator loads it, lists and reads
/// the roles, hands a data scientist a 15-minute token, edits the file and reloads it.
#[test]
fn cli_roles_file_flow() {
    let dir = tempfile::Builder::new()
        .prefix("arca-access-")
        .tempdir()
        .unwrap();
    let roles = dir.path().join("roles.toml");
    std::fs::write(&roles, example_roles()).unwrap();
    let roles_s = roles.to_string_lossy().into_owned();
    let s = TestServer::spawn_with_args_env(
        dir,
        &[
            "server",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--dev-root-token",
            common::DEV_ROOT_TOKEN,
        ],
        &[("ARCA_ROLES_FILE", &roles_s)],
    );
    let root = s.client();
    kv_put(&root, "datasets/imagenet", json!({"url": "s3://imagenet"}));
    kv_put(&root, "models/prod", json!({"key": "model-key"}));

    let out = s.run(&["role", "list"]);
    out.ok();
    for r in [
        "compliance-officer",
        "data-scientist",
        "mlops-engineer",
        "service-account",
    ] {
        assert!(out.stdout.lines().any(|l| l == r), "{r} missing: {out:#?}");
    }
    let out = s.run(&["role", "file"]);
    out.ok();
    assert!(out.stdout.contains(" data-scientist "), "{out:#?}");
    assert!(
        out.stdout.contains(&roles_s),
        "the source file is shown: {out:#?}"
    );
    let out = s.run(&["role", "file", "--format", "json"]);
    out.ok();
    assert!(
        out.json()["roles"]["service-account"].is_object(),
        "{out:#?}"
    );
    let out = s.run(&["role", "read", "--format", "json", "data-scientist"]);
    out.ok();
    assert!(out.json()["allowed_policies"]
        .as_array()
        .unwrap()
        .contains(&json!("role-data-scientist")));

    // A data scientist's token: data sets yes, models no.
    let out = s.run(&[
        "role",
        "token",
        "data-scientist",
        "--ttl",
        "15m",
        "--field",
        "token",
    ]);
    out.ok();
    let ds_token = out.stdout.clone();
    let t = as_token(&s, &ds_token);
    expect(
        &req(&t, "GET", "/v1/secret/data/datasets/imagenet", None),
        200,
    );
    expect(
        &req(
            &t,
            "PUT",
            "/v1/secret/data/experiments/e1",
            Some(json!({"data": {"lr": "0.1"}})),
        ),
        200,
    );
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/models/prod", None));
    let v = expect(&req(&t, "GET", "/v1/auth/token/lookup-self", None), 200);
    assert!(v["data"]["ttl"].as_u64().unwrap() <= 900);
    // Compliance: metadata yes, values never.
    let out = s.run(&[
        "token",
        "create",
        "--role",
        "compliance-officer",
        "--field",
        "token",
    ]);
    out.ok();
    let c = as_token(&s, &out.stdout);
    expect(
        &req(&c, "GET", "/v1/secret/metadata/datasets/imagenet", None),
        200,
    );
    expect_acl_denied(&req(&c, "GET", "/v1/secret/data/datasets/imagenet", None));
    // The role's limits hold through the CLI too.
    let out = s.run(&[
        "role",
        "token",
        "service-account",
        "--policy",
        "role-data-scientist",
    ]);
    out.expect_code(1);

    // Edit the file (drop mlops-engineer) and reload without a restart.
    let text = example_roles();
    let cut = text.find("[roles.mlops-engineer]").unwrap();
    let end = text.find("[roles.compliance-officer]").unwrap();
    std::fs::write(&roles, format!("{}{}", &text[..cut], &text[end..])).unwrap();
    let out = s.run(&["role", "reload"]);
    out.ok();
    assert!(
        out.stdout.starts_with("Success! Reloaded the roles file"),
        "{out:#?}"
    );
    assert!(
        out.stdout.contains("mlops-engineer"),
        "the removed role is reported: {out:#?}"
    );
    let out = s.run(&["role", "list", "--format", "json"]);
    out.ok();
    assert!(
        !out.json()
            .as_array()
            .unwrap()
            .contains(&json!("mlops-engineer")),
        "{out:#?}"
    );
    s.run(&["role", "token", "mlops-engineer"]).expect_code(1);
    // A malformed file is refused and changes nothing.
    std::fs::write(&roles, "[roles.broken]\ntoken_ttl = \"soon\"\n").unwrap();
    let out = s.run(&["role", "reload"]);
    out.expect_code(1);
    s.run(&["role", "read", "data-scientist"]).ok();
    // Without sudo: refused.
    let out = run_cmd(
        s.cli_with_token(Some(&ds_token)).args(["role", "reload"]),
        None,
    );
    out.expect_code(1);
    assert!(out.stderr.contains("permission denied"), "{out:#?}");
}

/// A test CA and the certificates it signs (rcgen).
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let ca = p.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    /// (certificate PEM, key PEM) of a client certificate with common name `cn`.
    fn client(&self, cn: &str) -> (String, String) {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// `arca login cert` against a TLS server that trusts a client CA: a mapped certificate gets a
/// token of its role, an unmapped or untrusted one gets nothing (exit 1).
#[test]
fn cli_login_cert() {
    let dir = tempfile::Builder::new()
        .prefix("arca-access-")
        .tempdir()
        .unwrap();
    let d = dir.path().to_path_buf();
    let server_pki = Pki::new("access test server CA");
    let client_pki = Pki::new("access test client CA");
    let other_pki = Pki::new("an untrusted CA");
    let skey = rcgen::KeyPair::generate().unwrap();
    let scert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&skey, &server_pki.ca, &server_pki.ca_key)
            .unwrap();
    std::fs::write(d.join("server.crt"), scert.pem()).unwrap();
    std::fs::write(d.join("server.key"), skey.serialize_pem()).unwrap();
    std::fs::write(d.join("server-ca.pem"), server_pki.ca.pem()).unwrap();
    std::fs::write(d.join("client-ca.pem"), client_pki.ca.pem()).unwrap();
    std::fs::write(d.join("roles.toml"), example_roles()).unwrap();
    std::fs::write(d.join("unseal.key"), hex::encode([7u8; 32])).unwrap();
    let write_pair = |name: &str, (cert, key): (String, String)| {
        std::fs::write(d.join(format!("{name}.pem")), cert).unwrap();
        std::fs::write(d.join(format!("{name}.key")), key).unwrap();
    };
    write_pair("worker", client_pki.client("w7.etl.pipelines.ml.internal"));
    write_pair("nobody", client_pki.client("nobody.example"));
    write_pair("forged", other_pki.client("w7.etl.pipelines.ml.internal"));
    let cfg = d.join("arca.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ntls_cert_file = \"{0}/server.crt\"\ntls_key_file = \"{0}/server.key\"\ntls_client_ca_file = \"{0}/client-ca.pem\"\nroles_file = \"{0}/roles.toml\"\nauto_unseal_key_file = \"{0}/unseal.key\"\n",
            d.display()
        ),
    )
    .unwrap();
    let ca = d.join("server-ca.pem");
    let cfg = cfg.to_string_lossy().into_owned();
    let s = TestServer::spawn_with_args(dir, &["server", "--config", &cfg]);
    assert!(s.addr.starts_with("https://"), "{}", s.addr);
    let anon = Client::new(&s.addr, None, Some(&ca)).unwrap();
    let init = expect(
        &req(
            &anon,
            "PUT",
            "/v1/sys/init",
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        ),
        200,
    );
    let root_token = init["root_token"].as_str().unwrap().to_string();
    let root = anon.with_token(Some(root_token.clone()));
    // The roles file is applied at the (automatic) unseal.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while req(&root, "GET", "/v1/auth/token/roles/service-account", None).status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the roles file was never applied"
        );
        thread::sleep(Duration::from_millis(100));
    }
    kv_put(&root, "pipelines/etl/db", json!({"password": "etl-pass"}));

    let ca_s = ca.to_string_lossy().into_owned();
    let pem = |n: &str| d.join(format!("{n}.pem")).to_string_lossy().into_owned();
    let key = |n: &str| d.join(format!("{n}.key")).to_string_lossy().into_owned();
    let login = |name: &str, extra: &[&str]| {
        let mut cmd = s.cli_with_token(Some(&root_token));
        cmd.args([
            "login",
            "cert",
            "--ca-cert",
            &ca_s,
            "--client-cert",
            &pem(name),
            "--client-key",
            &key(name),
        ])
        .args(extra);
        run_cmd(&mut cmd, None)
    };

    let out = login("worker", &[]);
    out.ok();
    assert!(
        out.stdout.contains("[default role-service-account]"),
        "{out:#?}"
    );
    assert_no_secret(&out, &[&root_token]);
    let out = login("worker", &["--role", "service-account", "--format", "json"]);
    out.ok();
    let v = out.json();
    assert_eq!(v["metadata"]["role"], json!("service-account"));
    assert!(v["lease_duration"].as_u64().unwrap() <= 900);
    let tok = v["client_token"].as_str().unwrap().to_string();
    let t = Client::new(&s.addr, Some(tok.clone()), Some(&ca)).unwrap();
    let got = expect(
        &req(&t, "GET", "/v1/secret/data/pipelines/etl/db", None),
        200,
    );
    assert_eq!(got["data"]["data"]["password"], json!("etl-pass"));
    expect_acl_denied(&req(&t, "GET", "/v1/secret/data/datasets/x", None));
    let out = login("worker", &["--field", "token"]);
    out.ok();
    assert!(out.stdout.starts_with("arca.") && out.stdout != tok);

    // A role the certificate does not map, a certificate no role maps, another CA.
    let out = login("worker", &["--role", "mlops-engineer"]);
    out.expect_code(1);
    assert!(out.stderr.contains("invalid certificate"), "{out:#?}");
    let out = login("nobody", &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("invalid certificate"), "{out:#?}");
    let out = login("forged", &[]);
    out.expect_code(1);
    assert!(out.stdout.is_empty(), "{out:#?}");
    // Key and certificate that do not belong together, or are not PEM.
    let mut cmd = s.cli_with_token(None);
    cmd.args([
        "login",
        "cert",
        "--ca-cert",
        &ca_s,
        "--client-cert",
        &ca_s,
        "--client-key",
        &ca_s,
    ]);
    let out = run_cmd(&mut cmd, None);
    assert!(out.code == 1 || out.code == 2, "{out:#?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn cli_help_everywhere_and_usage_errors() {
    let s = TestServer::spawn_dev();
    for args in [
        vec!["token", "--help"],
        vec!["token", "create", "--help"],
        vec!["token", "lookup", "--help"],
        vec!["token", "renew", "--help"],
        vec!["token", "revoke", "--help"],
        vec!["token", "capabilities", "--help"],
        vec!["policy", "--help"],
        vec!["policy", "write", "--help"],
        vec!["policy", "read", "--help"],
        vec!["policy", "list", "--help"],
        vec!["policy", "delete", "--help"],
        vec!["role", "--help"],
        vec!["role", "list", "--help"],
        vec!["role", "read", "--help"],
        vec!["role", "reload", "--help"],
        vec!["role", "file", "--help"],
        vec!["role", "token", "--help"],
        vec!["login", "--help"],
        vec!["login", "approle", "--help"],
        vec!["login", "cert", "--help"],
    ] {
        let out = s.run(&args);
        out.ok();
        assert!(out.stdout.contains("Usage:"), "{args:?}: {out:#?}");
        assert!(
            out.stdout.contains("--format") || args.len() == 2 && args[1] == "--help",
            "{args:?}"
        );
    }
    for args in [["token", "lookup"], ["token", "renew"], ["token", "revoke"]] {
        let out = s.run(&[args[0], args[1], "--help"]);
        assert!(out.stdout.contains("standard input"), "{args:?}: {out:#?}");
    }
    let out = s.run(&["login", "approle", "--help"]);
    assert!(out.stdout.contains("--secret-id -"), "{out:#?}");
    let out = s.run(&["--help"]);
    for cmd in ["token", "policy", "role", "login"] {
        assert!(out.stdout.contains(cmd), "{out:#?}");
    }
    s.run(&["login"]).expect_code(2);
    s.run(&["login", "approle", "--role-id", "x"])
        .expect_code(2);
    s.run(&["login", "cert", "--client-cert", "/nonexistent.pem"])
        .expect_code(2);
    let out = s.run(&[
        "login",
        "cert",
        "--client-cert",
        "/nonexistent.pem",
        "--client-key",
        "/nonexistent.key",
    ]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("/nonexistent.key") || out.stderr.contains("/nonexistent.pem"),
        "{out:#?}"
    );
    s.run(&["token", "create", "--format", "yaml"])
        .expect_code(2);
}

/// `arca login approle`: table and `--field token` output; the secret id never shows up in any
/// output, whether given on stdin or (discouraged) on the command line.
#[test]
fn approle_cli_login_keeps_the_secret_id_out_of_output() {
    let s = TestServer::spawn_dev();
    let root = s.client();
    require_approle(&root);
    put_policy(&root, "ds-read", DATASETS_READ);
    expect(
        &req(
            &root,
            "POST",
            "/v1/auth/approle/role/cli",
            Some(json!({"token_policies": "ds-read"})),
        ),
        204,
    );
    let role_id = expect(
        &req(&root, "GET", "/v1/auth/approle/role/cli/role-id", None),
        200,
    )["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = expect(
        &req(&root, "POST", "/v1/auth/approle/role/cli/secret-id", None),
        200,
    )["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Table output: the token (asked for), never the secret id or the caller's token.
    let out = run_cmd(
        s.cli().args([
            "login",
            "approle",
            "--role-id",
            &role_id,
            "--secret-id",
            "-",
        ]),
        Some(&format!("{secret_id}\n")),
    );
    out.ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("token ") && l.contains("arca.")),
        "{out:#?}"
    );
    assert!(out.stdout.contains("[default ds-read]"), "{out:#?}");
    assert_no_secret(&out, &[&secret_id, &s.token]);
    let out = run_cmd(
        s.cli_with_token(None).args([
            "login",
            "approle",
            "--role-id",
            &role_id,
            "--secret-id",
            "bogus-secret-id",
        ]),
        None,
    );
    out.expect_code(1);
    assert_no_secret(&out, &["bogus-secret-id"]);
    let out = run_cmd(
        s.cli_with_token(None).args([
            "login",
            "approle",
            "--role-id",
            &role_id,
            "--secret-id",
            "-",
            "--field",
            "token",
        ]),
        Some(&secret_id),
    );
    out.ok();
    expect(
        &req(
            &as_token(&s, &out.stdout),
            "GET",
            "/v1/auth/token/lookup-self",
            None,
        ),
        200,
    );
}

/// A token role's limits are caps on what a create against it may ask for.
#[test]
fn token_role_limits_are_caps() {
    let s = TestServer::spawn_dev();
    let c = s.client();
    let r = c
        .request(
            "POST",
            "/v1/auth/token/roles/capped",
            Some(&json!({
                "allowed_policies": ["default"],
                "token_explicit_max_ttl": "1h",
                "token_max_ttl": "2h",
                "token_num_uses": 5,
                "token_bound_cidrs": ["127.0.0.1/32"],
            })),
        )
        .unwrap();
    assert!(r.status < 300, "{}", r.body);
    let create = |body: serde_json::Value| {
        c.request("POST", "/v1/auth/token/create/capped", Some(&body))
            .unwrap()
    };
    let r = create(json!({"explicit_max_ttl": 0, "num_uses": 100, "ttl": "30m"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let acc = r.json().unwrap()["auth"]["accessor"]
        .as_str()
        .unwrap()
        .to_string();
    let l = c
        .request(
            "POST",
            "/v1/auth/token/lookup-accessor",
            Some(&json!({"accessor": acc})),
        )
        .unwrap();
    let d = &l.json().unwrap()["data"];
    assert_eq!(d["explicit_max_ttl"], json!(3600), "{d}");
    assert_eq!(d["num_uses"], json!(5), "{d}");
    assert_eq!(d["bound_cidrs"], json!(["127.0.0.1"]), "{d}");
    // asking for less is fine; wider CIDRs are refused
    let r = create(json!({"explicit_max_ttl": "10m", "num_uses": 2}));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = create(json!({"bound_cidrs": ["0.0.0.0/0"]}));
    assert_eq!(r.status, 403, "{}", r.body);
    // a duration past any date is a bad request, not a crash of the handler
    for period in [json!(100_000_000_000_000u64), json!("3000000h")] {
        let r = c
            .request(
                "POST",
                "/v1/auth/token/create",
                Some(&json!({"period": period})),
            )
            .unwrap();
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains("out of range"), "{}", r.body);
    }
}

/// A token on its last use cannot mint a child (it is revoked by that very use).
#[test]
fn a_token_on_its_last_use_issues_no_child() {
    let s = TestServer::spawn_dev();
    let c = s.client();
    let r = c
        .request(
            "POST",
            "/v1/auth/token/create",
            Some(&json!({"policies": ["root"], "num_uses": 2})),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json().unwrap()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let limited = c.with_token(Some(t));
    let first = limited
        .request(
            "POST",
            "/v1/auth/token/create",
            Some(&json!({"num_uses": 1})),
        )
        .unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let last = limited
        .request("POST", "/v1/auth/token/create", Some(&json!({})))
        .unwrap();
    assert_eq!(last.status, 403, "{}", last.body);
    assert!(!last.body.contains("client_token"));
}
