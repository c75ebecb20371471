//! AppRole end to end against the real server: role CRUD and role-id shapes, secret-id
//! generation / lookup / destroy / list, login to a token with exactly the role's policies,
//! exact secret_id_num_uses under concurrency, expiry, CIDR bindings, ACL on the role paths,
//! token TTLs and renewal caps, and `sys/auth`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use arca::client::{ApiResponse, Client};
use common::TestServer;
use serde_json::{json, Value};

fn body(r: &ApiResponse) -> Value {
    r.json().unwrap_or(Value::Null)
}

#[track_caller]
fn expect(r: ApiResponse, status: u16) -> Value {
    assert_eq!(r.status, status, "unexpected answer: {}", r.body);
    body(&r)
}

fn call(c: &Client, method: &str, path: &str, b: Option<Value>) -> ApiResponse {
    c.request(method, path, b.as_ref()).expect("transport")
}

/// Creates role `name` with `fields` (hvac style), returns its role_id.
fn make_role(c: &Client, name: &str, fields: Value) -> String {
    expect(
        call(
            c,
            "POST",
            &format!("/v1/auth/approle/role/{name}"),
            Some(fields),
        ),
        204,
    );
    let v = expect(
        call(
            c,
            "GET",
            &format!("/v1/auth/approle/role/{name}/role-id"),
            None,
        ),
        200,
    );
    v["data"]["role_id"].as_str().unwrap().to_string()
}

fn secret_id(c: &Client, name: &str, fields: Value) -> Value {
    expect(
        call(
            c,
            "POST",
            &format!("/v1/auth/approle/role/{name}/secret-id"),
            Some(fields),
        ),
        200,
    )["data"]
        .clone()
}

fn login(srv: &TestServer, role_id: &str, secret_id: &str) -> ApiResponse {
    call(
        &srv.client_without_token(),
        "POST",
        "/v1/auth/approle/login",
        Some(json!({"role_id": role_id, "secret_id": secret_id})),
    )
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn role_crud_and_role_id_shapes() {
    let srv = TestServer::spawn_dev();
    let c = srv.client();

    // missing role: plain 404s
    let r = call(&c, "GET", "/v1/auth/approle/role/ml", None);
    assert_eq!((r.status, body(&r)), (404, json!({"errors": []})));
    let r = call(&c, "GET", "/v1/auth/approle/role/ml/role-id", None);
    assert_eq!((r.status, body(&r)), (404, json!({"errors": []})));
    assert_eq!(call(&c, "LIST", "/v1/auth/approle/role", None).status, 404);

    // hvac sends list fields as comma-joined strings
    expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml",
            Some(json!({
                "token_policies": "dbread,default",
                "token_bound_cidrs": "127.0.0.1/32,::1/128",
                "token_ttl": "10m", "token_max_ttl": 1800,
                "secret_id_ttl": "1h", "secret_id_num_uses": "5",
                "secret_id_bound_cidrs": "",
            })),
        ),
        204,
    );
    let v = expect(call(&c, "GET", "/v1/auth/approle/role/ml", None), 200);
    for k in [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    ] {
        assert!(v.get(k).is_some(), "envelope key {k} missing: {v}");
    }
    assert_eq!(
        v["data"],
        json!({
            "bind_secret_id": true, "local_secret_ids": false, "secret_id_bound_cidrs": null,
            "secret_id_num_uses": 5, "secret_id_ttl": 3600,
            "token_bound_cidrs": ["127.0.0.1", "::1"], "token_explicit_max_ttl": 0,
            "token_max_ttl": 1800, "token_no_default_policy": false, "token_num_uses": 0,
            "token_period": 0, "token_policies": ["dbread", "default"],
            "token_strictly_bind_ip": false, "token_ttl": 600, "token_type": "default",
        })
    );
    // JSON arrays work as well; an update keeps what it does not name
    expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml",
            Some(json!({"token_policies": ["a", "b"]})),
        ),
        204,
    );
    let d = expect(call(&c, "GET", "/v1/auth/approle/role/ml", None), 200)["data"].clone();
    assert_eq!(d["token_policies"], json!(["a", "b"]));
    assert_eq!(d["token_ttl"], 600);

    // role_id: a UUID, stable across updates, settable
    let rid = expect(
        call(&c, "GET", "/v1/auth/approle/role/ml/role-id", None),
        200,
    )["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rid.len(), 36, "{rid}");
    expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml",
            Some(json!({"token_ttl": 60})),
        ),
        204,
    );
    let again = expect(
        call(&c, "GET", "/v1/auth/approle/role/ml/role-id", None),
        200,
    );
    assert_eq!(again["data"]["role_id"], json!(rid));
    expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml/role-id",
            Some(json!({"role_id": "ml-custom-id"})),
        ),
        204,
    );
    let v = expect(
        call(&c, "GET", "/v1/auth/approle/role/ml/role-id", None),
        200,
    );
    assert_eq!(v["data"], json!({"role_id": "ml-custom-id"}));
    let r = call(
        &c,
        "POST",
        "/v1/auth/approle/role/ml/role-id",
        Some(json!({})),
    );
    assert_eq!(
        (r.status, r.errors()),
        (400, vec!["missing role_id".to_string()])
    );

    // bad input
    let r = call(
        &c,
        "POST",
        "/v1/auth/approle/role/bad",
        Some(json!({"token_ttl": "abc"})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = call(
        &c,
        "POST",
        "/v1/auth/approle/role/bad",
        Some(json!({"token_ttl": 100, "token_max_ttl": 10})),
    );
    assert_eq!(r.status, 400, "{}", r.body);

    make_role(&c, "second", json!({}));
    let v = expect(call(&c, "LIST", "/v1/auth/approle/role", None), 200);
    assert_eq!(v["data"]["keys"], json!(["ml", "second"]));
    let v = expect(
        call(&c, "GET", "/v1/auth/approle/role?list=true", None),
        200,
    );
    assert_eq!(v["data"]["keys"], json!(["ml", "second"]));

    expect(call(&c, "DELETE", "/v1/auth/approle/role/ml", None), 204);
    expect(call(&c, "DELETE", "/v1/auth/approle/role/ml", None), 204);
    assert_eq!(
        call(&c, "GET", "/v1/auth/approle/role/ml", None).status,
        404
    );
    let v = expect(call(&c, "LIST", "/v1/auth/approle/role", None), 200);
    assert_eq!(v["data"]["keys"], json!(["second"]));
    assert_eq!(
        call(&c, "PATCH", "/v1/auth/approle/role/second", None).status,
        405
    );
}

#[test]
fn secret_id_generation_lookup_list_destroy() {
    let srv = TestServer::spawn_dev();
    let c = srv.client();
    make_role(
        &c,
        "ml",
        json!({"secret_id_num_uses": 5, "secret_id_ttl": 3600}),
    );

    let r = call(
        &c,
        "POST",
        "/v1/auth/approle/role/nope/secret-id",
        Some(json!({})),
    );
    assert_eq!(
        (r.status, r.errors()),
        (404, vec!["role \"nope\" does not exist".to_string()])
    );
    assert_eq!(
        call(&c, "LIST", "/v1/auth/approle/role/ml/secret-id", None).status,
        404
    );
    // metadata is a JSON-encoded string; an object is refused as OB does
    let r = call(
        &c,
        "POST",
        "/v1/auth/approle/role/ml/secret-id",
        Some(json!({"metadata": {"job": "etl"}})),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.errors()[0].contains("expected type 'string'"),
        "{}",
        r.body
    );

    let d = secret_id(
        &c,
        "ml",
        json!({"metadata": "{\"job\":\"etl\"}", "cidr_list": "127.0.0.1/32", "token_bound_cidrs": ""}),
    );
    assert_eq!(
        keys(&d),
        [
            "secret_id",
            "secret_id_accessor",
            "secret_id_num_uses",
            "secret_id_ttl"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    assert_eq!(d["secret_id_num_uses"], 5);
    assert_eq!(d["secret_id_ttl"], 3600);
    let sid = d["secret_id"].as_str().unwrap().to_string();
    let acc = d["secret_id_accessor"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 36);
    assert_ne!(sid, acc);
    let d2 = secret_id(&c, "ml", json!({}));
    let acc2 = d2["secret_id_accessor"].as_str().unwrap().to_string();

    let v = expect(
        call(&c, "LIST", "/v1/auth/approle/role/ml/secret-id", None),
        200,
    );
    let listed: BTreeSet<String> = v["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, [acc.clone(), acc2.clone()].into_iter().collect());
    assert!(
        !v.to_string().contains(&sid),
        "a listing never shows a secret_id"
    );

    let look = expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml/secret-id/lookup",
            Some(json!({"secret_id": sid})),
        ),
        200,
    )["data"]
        .clone();
    assert_eq!(look["secret_id_accessor"], json!(acc));
    assert_eq!(look["metadata"], json!({"job": "etl"}));
    assert_eq!(look["cidr_list"], json!(["127.0.0.1"]));
    assert_eq!(look["secret_id_num_uses"], 5);
    assert_eq!(look["secret_id_ttl"], 3600);
    for k in [
        "creation_time",
        "expiration_time",
        "last_updated_time",
        "token_bound_cidrs",
    ] {
        assert!(look.get(k).is_some(), "{k} missing: {look}");
    }
    assert!(!look.to_string().contains(&sid));
    let by_acc = expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml/secret-id-accessor/lookup",
            Some(json!({"secret_id_accessor": acc})),
        ),
        200,
    );
    assert_eq!(by_acc["data"]["metadata"], json!({"job": "etl"}));
    // unknown secret_id: no data (204); unknown accessor: 404
    expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml/secret-id/lookup",
            Some(json!({"secret_id": "00000000-0000-0000-0000-000000000000"})),
        ),
        204,
    );
    assert_eq!(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml/secret-id-accessor/lookup",
            Some(json!({"secret_id_accessor": "nope"})),
        )
        .status,
        404
    );
    let r = call(
        &c,
        "POST",
        "/v1/auth/approle/role/ml/secret-id/lookup",
        Some(json!({})),
    );
    assert_eq!(
        (r.status, r.errors()),
        (400, vec!["missing secret_id".to_string()])
    );

    // destroy by secret_id, then by accessor
    expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml/secret-id/destroy",
            Some(json!({"secret_id": sid})),
        ),
        204,
    );
    expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml/secret-id/lookup",
            Some(json!({"secret_id": sid})),
        ),
        204,
    );
    expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml/secret-id-accessor/destroy",
            Some(json!({"secret_id_accessor": acc2})),
        ),
        204,
    );
    assert_eq!(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/ml/secret-id-accessor/destroy",
            Some(json!({"secret_id_accessor": acc2})),
        )
        .status,
        404
    );
    assert_eq!(
        call(&c, "LIST", "/v1/auth/approle/role/ml/secret-id", None).status,
        404
    );
    let rid = expect(
        call(&c, "GET", "/v1/auth/approle/role/ml/role-id", None),
        200,
    )["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = login(&srv, &rid, &sid);
    assert_eq!(
        (r.status, r.errors()),
        (400, vec!["invalid role or secret ID".to_string()])
    );

    // deleting the role takes its secret ids along, even if the name comes back
    let d3 = secret_id(&c, "ml", json!({}));
    expect(call(&c, "DELETE", "/v1/auth/approle/role/ml", None), 204);
    make_role(&c, "ml", json!({"role_id": rid}));
    let r = login(&srv, &rid, d3["secret_id"].as_str().unwrap());
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn login_gives_exactly_the_roles_policies() {
    let srv = TestServer::spawn_dev();
    let c = srv.client();
    expect(
        call(
            &c,
            "PUT",
            "/v1/sys/policies/acl/ml-read",
            Some(json!({"policy": "path \"secret/data/ml/*\" { capabilities = [\"read\"] }"})),
        ),
        204,
    );
    for p in ["ml/model", "finance/payroll"] {
        let r = call(
            &c,
            "POST",
            &format!("/v1/secret/data/{p}"),
            Some(json!({"data": {"k": "v"}})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let rid = make_role(
        &c,
        "ml",
        json!({"token_policies": "ml-read", "token_ttl": "10m", "token_max_ttl": "30m"}),
    );
    let sid = secret_id(&c, "ml", json!({"metadata": "{\"job\":\"train\"}"}))["secret_id"]
        .as_str()
        .unwrap()
        .to_string();

    // errors first: none of them consume anything
    let anon = srv.client_without_token();
    let cases = [
        (
            json!({"role_id": rid, "secret_id": "wrong"}),
            "invalid role or secret ID",
        ),
        (
            json!({"role_id": "wrong", "secret_id": sid}),
            "invalid role or secret ID",
        ),
        (json!({"role_id": rid}), "missing secret_id"),
        (json!({"secret_id": sid}), "missing role_id"),
    ];
    for (b, msg) in cases {
        let r = call(&anon, "POST", "/v1/auth/approle/login", Some(b));
        assert_eq!(
            (r.status, r.errors()),
            (400, vec![msg.to_string()]),
            "{}",
            r.body
        );
    }

    let v = expect(login(&srv, &rid, &sid), 200);
    assert_eq!(v["data"], Value::Null);
    let a = &v["auth"];
    assert_eq!(a["policies"], json!(["default", "ml-read"]));
    assert_eq!(a["token_policies"], json!(["default", "ml-read"]));
    assert_eq!(a["metadata"], json!({"role_name": "ml", "job": "train"}));
    assert_eq!(a["lease_duration"], 600);
    assert_eq!(a["renewable"], true);
    assert_eq!(a["orphan"], true);
    assert_eq!(a["token_type"], "service");
    assert_eq!(a["entity_id"], "");
    assert_eq!(a["num_uses"], 0);
    assert!(a.get("mfa_requirement").is_some());
    let tok = a["client_token"].as_str().unwrap().to_string();
    assert!(!srv.output().contains(&tok), "the token must not be logged");
    assert!(
        !srv.output().contains(&sid),
        "the secret_id must not be logged"
    );

    let t = c.with_token(Some(tok));
    let me = expect(call(&t, "GET", "/v1/auth/token/lookup-self", None), 200)["data"].clone();
    assert_eq!(me["path"], "auth/approle/login");
    assert_eq!(me["display_name"], "approle");
    assert_eq!(me["orphan"], true);
    assert_eq!(me["meta"]["role_name"], "ml");
    let r = call(&t, "GET", "/v1/secret/data/ml/model", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(body(&r)["data"]["data"], json!({"k": "v"}));
    assert_eq!(
        call(&t, "GET", "/v1/secret/data/finance/payroll", None).status,
        403
    );
    assert_eq!(
        call(
            &t,
            "POST",
            "/v1/secret/data/ml/model",
            Some(json!({"data": {"k": "x"}}))
        )
        .status,
        403
    );
    // the login is unauthenticated: a sent token is ignored, a bad one does not matter
    let bad = c.with_token(Some("arca.not-a-token".into()));
    let r = call(
        &bad,
        "POST",
        "/v1/auth/approle/login",
        Some(json!({"role_id": rid, "secret_id": sid})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn secret_id_uses_are_exact_under_concurrency_and_expiry_is_enforced() {
    let srv = TestServer::spawn_dev();
    let c = srv.client();
    let rid = make_role(&c, "once", json!({"secret_id_num_uses": 1}));
    let sid = secret_id(&c, "once", json!({}))["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let anon = srv.client_without_token();
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let (anon, rid, sid) = (anon.clone(), rid.clone(), sid.clone());
            std::thread::spawn(move || {
                let r = anon
                    .request(
                        "POST",
                        "/v1/auth/approle/login",
                        Some(&json!({"role_id": rid, "secret_id": sid})),
                    )
                    .unwrap();
                if r.status != 200 {
                    assert_eq!(r.status, 400, "{}", r.body);
                    assert_eq!(r.errors(), vec!["invalid role or secret ID".to_string()]);
                }
                r.status
            })
        })
        .collect();
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|s| *s == 200)
        .count();
    assert_eq!(ok, 1, "exactly one login may use a one-use secret_id");
    assert_eq!(
        call(&c, "LIST", "/v1/auth/approle/role/once/secret-id", None).status,
        404,
        "a used-up secret_id is gone"
    );

    // three uses, sequentially; lookup shows the remaining count
    let rid3 = make_role(&c, "three", json!({"secret_id_num_uses": 3}));
    let sid3 = secret_id(&c, "three", json!({}))["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    expect(login(&srv, &rid3, &sid3), 200);
    let look = expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/three/secret-id/lookup",
            Some(json!({"secret_id": sid3})),
        ),
        200,
    );
    assert_eq!(look["data"]["secret_id_num_uses"], 2);
    expect(login(&srv, &rid3, &sid3), 200);
    expect(login(&srv, &rid3, &sid3), 200);
    let r = login(&srv, &rid3, &sid3);
    assert_eq!(
        (r.status, r.errors()),
        (400, vec!["invalid role or secret ID".to_string()])
    );

    // expiry
    let ridx = make_role(&c, "short", json!({"secret_id_ttl": "1s"}));
    let sidx = secret_id(&c, "short", json!({}))["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let r = login(&srv, &ridx, &sidx);
    assert_eq!(
        (r.status, r.errors()),
        (400, vec!["invalid role or secret ID".to_string()])
    );
    expect(
        call(
            &c,
            "POST",
            "/v1/auth/approle/role/short/secret-id/lookup",
            Some(json!({"secret_id": sidx})),
        ),
        204,
    );
}

#[test]
fn bound_cidrs_refuse_other_addresses() {
    let srv = TestServer::spawn_dev();
    let c = srv.client();
    // secret_id_bound_cidrs: the login itself is refused
    let rid = make_role(&c, "far", json!({"secret_id_bound_cidrs": "10.0.0.0/8"}));
    let sid = secret_id(&c, "far", json!({}))["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = login(&srv, &rid, &sid);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.errors()[0].contains("unauthorized"), "{}", r.body);
    // a secret_id's own cidr_list must lie inside the role's
    let r = call(
        &c,
        "POST",
        "/v1/auth/approle/role/far/secret-id",
        Some(json!({"cidr_list": "127.0.0.1/32"})),
    );
    assert_eq!(r.status, 400, "{}", r.body);

    // token_bound_cidrs elsewhere: no usable token from here
    let rid = make_role(&c, "tokfar", json!({"token_bound_cidrs": "10.0.0.0/8"}));
    let sid = secret_id(&c, "tokfar", json!({}))["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = login(&srv, &rid, &sid);
    assert_eq!(
        (r.status, r.errors()),
        (403, vec!["permission denied".to_string()])
    );

    // secret-id cidr_list elsewhere
    let rid = make_role(&c, "open", json!({}));
    let sid = secret_id(&c, "open", json!({"cidr_list": "10.0.0.0/8"}))["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(login(&srv, &rid, &sid).status, 400);

    // bound to here: works, and the token carries the binding
    let rid = make_role(&c, "near", json!({"token_bound_cidrs": "127.0.0.1/32"}));
    let sid = secret_id(&c, "near", json!({}))["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = expect(login(&srv, &rid, &sid), 200);
    let t = c.with_token(Some(v["auth"]["client_token"].as_str().unwrap().into()));
    let me = expect(call(&t, "GET", "/v1/auth/token/lookup-self", None), 200);
    assert_eq!(me["data"]["bound_cidrs"], json!(["127.0.0.1"]));
}

#[test]
fn role_paths_need_policy() {
    let srv = TestServer::spawn_dev();
    let c = srv.client();
    make_role(&c, "ml", json!({}));
    expect(
        call(
            &c,
            "PUT",
            "/v1/sys/policies/acl/approle-reader",
            Some(
                json!({"policy": "path \"auth/approle/role/+/role-id\" { capabilities = [\"read\"] }"}),
            ),
        ),
        204,
    );
    let mk = |policies: Value| {
        let v = expect(
            call(
                &c,
                "POST",
                "/v1/auth/token/create",
                Some(json!({"policies": policies, "ttl": "10m"})),
            ),
            200,
        );
        c.with_token(Some(v["auth"]["client_token"].as_str().unwrap().into()))
    };
    let nobody = mk(json!(["default"]));
    for (m, p, b) in [
        (
            "POST",
            "/v1/auth/approle/role/ml",
            Some(json!({"token_ttl": 1})),
        ),
        ("POST", "/v1/auth/approle/role/new", Some(json!({}))),
        ("GET", "/v1/auth/approle/role/ml", None),
        ("DELETE", "/v1/auth/approle/role/ml", None),
        ("LIST", "/v1/auth/approle/role", None),
        ("GET", "/v1/auth/approle/role/ml/role-id", None),
        (
            "POST",
            "/v1/auth/approle/role/ml/secret-id",
            Some(json!({})),
        ),
        (
            "POST",
            "/v1/sys/auth/approle",
            Some(json!({"type": "approle"})),
        ),
    ] {
        let r = call(&nobody, m, p, b);
        assert_eq!(r.status, 403, "{m} {p}: {}", r.body);
    }
    let reader = mk(json!(["approle-reader"]));
    expect(
        call(&reader, "GET", "/v1/auth/approle/role/ml/role-id", None),
        200,
    );
    assert_eq!(
        call(
            &reader,
            "POST",
            "/v1/auth/approle/role/ml/secret-id",
            Some(json!({}))
        )
        .status,
        403
    );
    assert_eq!(
        call(&reader, "GET", "/v1/auth/approle/role/ml", None).status,
        403
    );
    // a bad token on the family
    let bad = c.with_token(Some("arca.forged".into()));
    let r = call(&bad, "GET", "/v1/auth/approle/role/ml", None);
    assert_eq!(
        (r.status, r.errors()),
        (403, vec!["permission denied".to_string()])
    );
}

#[test]
fn token_ttls_and_renewal_cap() {
    let srv = TestServer::spawn_dev();
    let c = srv.client();
    let rid = make_role(
        &c,
        "ttl",
        json!({"token_ttl": "60s", "token_max_ttl": "90s", "token_num_uses": 0}),
    );
    let sid = secret_id(&c, "ttl", json!({}))["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = expect(login(&srv, &rid, &sid), 200);
    assert_eq!(v["auth"]["lease_duration"], 60);
    let t = c.with_token(Some(v["auth"]["client_token"].as_str().unwrap().into()));
    let me = expect(call(&t, "GET", "/v1/auth/token/lookup-self", None), 200)["data"].clone();
    assert_eq!(me["creation_ttl"], 60);
    assert!(me["ttl"].as_u64().unwrap() <= 60);
    let r = expect(
        call(
            &t,
            "POST",
            "/v1/auth/token/renew-self",
            Some(json!({"increment": "1h"})),
        ),
        200,
    );
    let granted = r["auth"]["lease_duration"].as_u64().unwrap();
    assert!((85..=90).contains(&granted), "capped at token_max_ttl: {r}");
    assert!(
        r["warnings"][0].as_str().unwrap().contains("max_ttl"),
        "the cap is reported: {r}"
    );

    // default TTL without token_ttl: the max, else the system default
    let rid = make_role(&c, "nottl", json!({}));
    let sid = secret_id(&c, "nottl", json!({}))["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = expect(login(&srv, &rid, &sid), 200);
    assert_eq!(v["auth"]["lease_duration"], 2_764_800);

    // token_num_uses: the token serves exactly that many requests
    let rid = make_role(&c, "uses", json!({"token_num_uses": 2}));
    let sid = secret_id(&c, "uses", json!({}))["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = expect(login(&srv, &rid, &sid), 200);
    assert_eq!(v["auth"]["num_uses"], 2);
    let t = c.with_token(Some(v["auth"]["client_token"].as_str().unwrap().into()));
    expect(call(&t, "GET", "/v1/auth/token/lookup-self", None), 200);
    expect(call(&t, "GET", "/v1/auth/token/lookup-self", None), 200);
    assert_eq!(
        call(&t, "GET", "/v1/auth/token/lookup-self", None).status,
        403
    );
}

#[test]
fn sys_auth_enable_and_list() {
    let srv = TestServer::spawn_dev();
    let c = srv.client();
    let v = expect(call(&c, "GET", "/v1/sys/auth", None), 200);
    assert_eq!(v["data"]["token/"]["type"], "token");
    assert_eq!(
        v["token/"]["type"], "token",
        "data is copied to the top level"
    );
    assert!(v["data"].get("approle/").is_none());

    expect(
        call(
            &c,
            "POST",
            "/v1/sys/auth/approle",
            Some(json!({"type": "approle", "local": false, "description": "jobs"})),
        ),
        204,
    );
    let r = call(
        &c,
        "POST",
        "/v1/sys/auth/approle",
        Some(json!({"type": "approle"})),
    );
    assert_eq!(
        (r.status, r.errors()),
        (400, vec!["path is already in use at approle/".to_string()])
    );
    let v = expect(call(&c, "GET", "/v1/sys/auth", None), 200);
    let e = &v["data"]["approle/"];
    assert_eq!(e["type"], "approle");
    assert_eq!(e["description"], "jobs");
    assert!(e["accessor"].as_str().unwrap().starts_with("auth_approle_"));
    assert_eq!(e["config"]["token_type"], "default-service");
    assert_eq!(v["approle/"]["type"], "approle");
    assert_eq!(
        call(
            &c,
            "POST",
            "/v1/sys/auth/userpass",
            Some(json!({"type": "userpass"}))
        )
        .status,
        400
    );
    // AppRole works whether or not it was enabled; disabling wipes its roles, as Vault does
    make_role(&c, "ml", json!({}));
    expect(call(&c, "DELETE", "/v1/sys/auth/approle", None), 204);
    assert_eq!(
        call(&c, "GET", "/v1/auth/approle/role/ml", None).status,
        404
    );
    expect(
        call(
            &c,
            "POST",
            "/v1/sys/auth/approle",
            Some(json!({"type": "approle"})),
        ),
        204,
    );
}
