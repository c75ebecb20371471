//! Integration tests of the real server binary: seal lifecycle, production mode over TLS,
//! restarts, durability under `kill -9`, request limits, and secrets kept out of logs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use arca::client::Client;
use common::TestServer;
use serde_json::{json, Value};

fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("arca-it-")
        .tempdir()
        .unwrap()
}

/// Writes a production config into `dir` and returns its path.
fn prod_config(dir: &Path, extra: &str) -> String {
    let p = dir.join("arca.toml");
    std::fs::write(
        &p,
        format!("listen = \"127.0.0.1:0\"\ntls_disable = true\n{extra}\n"),
    )
    .unwrap();
    p.to_string_lossy().into_owned()
}

fn spawn_prod(dir: tempfile::TempDir, extra: &str) -> TestServer {
    let cfg = prod_config(dir.path(), extra);
    TestServer::spawn_with_args(dir, &["server", "--config", &cfg])
}

fn body(r: &arca::client::ApiResponse) -> Value {
    r.json().unwrap_or(Value::Null)
}

#[test]
fn seal_lifecycle_init_unseal_seal_and_restart() {
    let srv = spawn_prod(temp(), "");
    let anon = srv.client_without_token();

    let h = anon.request("GET", "/v1/sys/health", None).unwrap();
    assert_eq!(h.status, 501, "uninitialized health: {}", h.body);
    assert_eq!(body(&h)["initialized"], false);
    assert_eq!(
        anon.request("GET", "/v1/sys/init", None)
            .unwrap()
            .json()
            .unwrap(),
        json!({"initialized": false})
    );
    // data endpoints refuse before init
    assert_eq!(
        anon.request("GET", "/v1/secret/data/x", None)
            .unwrap()
            .status,
        503
    );

    // bad seal configurations change nothing
    for (req, msg) in [
        (
            json!({"secret_shares": 0, "secret_threshold": 0}),
            "shares must be at least one",
        ),
        (
            json!({"secret_shares": 2, "secret_threshold": 3}),
            "threshold cannot be larger than shares",
        ),
        (
            json!({"secret_shares": "x", "secret_threshold": 1}),
            "secret_shares",
        ),
    ] {
        let r = anon.request("PUT", "/v1/sys/init", Some(&req)).unwrap();
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains(msg), "{}", r.body);
    }
    assert_eq!(
        anon.request("GET", "/v1/sys/init", None)
            .unwrap()
            .json()
            .unwrap()["initialized"],
        false
    );

    let init = anon
        .request(
            "PUT",
            "/v1/sys/init",
            Some(&json!({"secret_shares": 3, "secret_threshold": 2})),
        )
        .unwrap();
    assert_eq!(init.status, 200, "{}", init.body);
    let init = body(&init);
    let keys: Vec<String> = init["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let keys_b64: Vec<String> = init["keys_base64"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let root = init["root_token"].as_str().unwrap().to_string();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.len() == 66), "33-byte shares in hex");
    assert!(root.starts_with("arca."));
    let again = anon
        .request(
            "PUT",
            "/v1/sys/init",
            Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .unwrap();
    assert_eq!(again.status, 400);
    assert!(again.body.contains("already initialized"));

    // initialized and sealed
    assert_eq!(
        anon.request("GET", "/v1/sys/health", None).unwrap().status,
        503
    );
    assert_eq!(
        anon.request("HEAD", "/v1/sys/health", None).unwrap().status,
        503
    );
    assert_eq!(
        anon.request("GET", "/v1/sys/health?sealedcode=299", None)
            .unwrap()
            .status,
        299
    );
    let rootc = srv.client_without_token().with_token(Some(root.clone()));
    let r = rootc.request("GET", "/v1/secret/data/x", None).unwrap();
    assert_eq!(
        (r.status, r.errors()),
        (503, vec!["Vault is sealed".to_string()])
    );

    // not hex/base64
    let r = anon
        .request("PUT", "/v1/sys/unseal", Some(&json!({"key": "not a key!"})))
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.errors(),
        vec!["'key' must be a valid hex or base64 string".to_string()]
    );
    // one share: progress 1, a nonce; the same share again: unchanged
    let s = body(
        &anon
            .request("PUT", "/v1/sys/unseal", Some(&json!({"key": keys[0]})))
            .unwrap(),
    );
    assert_eq!(
        (
            s["sealed"].clone(),
            s["progress"].clone(),
            s["t"].clone(),
            s["n"].clone()
        ),
        (json!(true), json!(1), json!(2), json!(3))
    );
    assert!(!s["nonce"].as_str().unwrap().is_empty());
    let s = body(
        &anon
            .request("PUT", "/v1/sys/unseal", Some(&json!({"key": keys[0]})))
            .unwrap(),
    );
    assert_eq!(s["progress"], 1);
    // reset
    let s = body(
        &anon
            .request("PUT", "/v1/sys/unseal", Some(&json!({"reset": true})))
            .unwrap(),
    );
    assert_eq!(s["progress"], 0);

    // a foreign share (right length, wrong polynomial) at the threshold: 400, progress reset,
    // and the message does not say which share was wrong
    let mut foreign = hex::decode(&keys[2]).unwrap();
    foreign[5] ^= 0x55;
    anon.request("PUT", "/v1/sys/unseal", Some(&json!({"key": keys[0]})))
        .unwrap();
    let r = anon
        .request(
            "PUT",
            "/v1/sys/unseal",
            Some(&json!({"key": hex::encode(&foreign)})),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("unable to retrieve stored keys"));
    assert!(!r.body.contains(&keys[0]) && !r.body.contains(&hex::encode(&foreign)));
    let s = body(&anon.request("GET", "/v1/sys/seal-status", None).unwrap());
    assert_eq!(
        (s["sealed"].clone(), s["progress"].clone()),
        (json!(true), json!(0))
    );

    // right shares, one in base64
    anon.request("PUT", "/v1/sys/unseal", Some(&json!({"key": keys[1]})))
        .unwrap();
    let s = body(
        &anon
            .request("PUT", "/v1/sys/unseal", Some(&json!({"key": keys_b64[2]})))
            .unwrap(),
    );
    assert_eq!(
        (
            s["sealed"].clone(),
            s["progress"].clone(),
            s["nonce"].clone()
        ),
        (json!(false), json!(0), json!(""))
    );
    assert_eq!(
        anon.request("GET", "/v1/sys/health", None).unwrap().status,
        200
    );
    // already unsealed: 200 with status
    assert_eq!(
        anon.request("PUT", "/v1/sys/unseal", Some(&json!({"key": keys[0]})))
            .unwrap()
            .status,
        200
    );

    // the root token works; the KV mount exists in production mode too
    let w = rootc
        .request(
            "PUT",
            "/v1/secret/data/db/prod",
            Some(&json!({"data": {"password": "pw-1"}})),
        )
        .unwrap();
    assert_eq!(w.status, 200, "{}", w.body);

    // seal needs a token; then everything but the status endpoints is 503
    assert_eq!(
        anon.request("PUT", "/v1/sys/seal", None).unwrap().status,
        403
    );
    assert_eq!(
        rootc.request("PUT", "/v1/sys/seal", None).unwrap().status,
        204
    );
    assert_eq!(
        rootc
            .request("GET", "/v1/secret/data/db/prod", None)
            .unwrap()
            .status,
        503
    );
    assert_eq!(
        rootc.request("PUT", "/v1/sys/seal", None).unwrap().status,
        204,
        "sealing a sealed vault"
    );
    assert_eq!(
        anon.request("GET", "/v1/sys/seal-status", None)
            .unwrap()
            .status,
        200
    );

    // restart: sealed again, shares still open it, the data is there
    let dir = srv.into_data_dir();
    let srv = spawn_prod(dir, "");
    let anon = srv.client_without_token();
    assert_eq!(
        anon.request("GET", "/v1/sys/health", None).unwrap().status,
        503
    );
    anon.request("PUT", "/v1/sys/unseal", Some(&json!({"key": keys[2]})))
        .unwrap();
    anon.request("PUT", "/v1/sys/unseal", Some(&json!({"key": keys[0]})))
        .unwrap();
    let rootc = srv.client_without_token().with_token(Some(root.clone()));
    let r = rootc
        .request("GET", "/v1/secret/data/db/prod", None)
        .unwrap();
    assert_eq!(body(&r)["data"]["data"]["password"], "pw-1");
    // the shares and root token never reach the server's log
    let out = srv.output();
    assert!(
        !out.contains(&root) && !keys.iter().any(|k| out.contains(k.as_str())),
        "secret material in the log:\n{out}"
    );
}

#[test]
fn auto_unseal_from_key_file_survives_restart() {
    let dir = temp();
    let keyfile = dir.path().join("auto-unseal.key");
    std::fs::write(&keyfile, hex::encode([7u8; 32])).unwrap();
    let extra = format!("auto_unseal_key_file = \"{}\"", keyfile.display());
    let srv = spawn_prod(dir, &extra);
    let anon = srv.client_without_token();
    let init = body(
        &anon
            .request(
                "PUT",
                "/v1/sys/init",
                Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .unwrap(),
    );
    let root = init["root_token"].as_str().unwrap().to_string();
    assert_eq!(
        anon.request("GET", "/v1/sys/health", None).unwrap().status,
        200,
        "unsealed right after init"
    );
    let c = anon.with_token(Some(root.clone()));
    assert_eq!(
        c.request(
            "PUT",
            "/v1/secret/data/a",
            Some(&json!({"data": {"k": "v"}}))
        )
        .unwrap()
        .status,
        200
    );
    let dir = srv.into_data_dir();
    // restart with the other AEAD: old values stay readable, new ones use AES-256-GCM
    let srv = spawn_prod(dir, &format!("{extra}\nencryption = \"aes-256-gcm\""));
    let c = srv.client_without_token().with_token(Some(root));
    assert_eq!(
        c.request("GET", "/v1/sys/health", None).unwrap().status,
        200,
        "unsealed at start"
    );
    assert_eq!(
        body(&c.request("GET", "/v1/secret/data/a", None).unwrap())["data"]["data"]["k"],
        "v"
    );
    let ks = body(&c.request("GET", "/v1/sys/key-status", None).unwrap());
    assert_eq!(ks["data"]["encryption"], "aes-256-gcm");
    let w = c.request(
        "PUT",
        "/v1/secret/data/a",
        Some(&json!({"data": {"k": "v2"}})),
    );
    assert_eq!(w.unwrap().status, 200);
    let v1 = body(
        &c.request("GET", "/v1/secret/data/a?version=1", None)
            .unwrap(),
    );
    assert_eq!(v1["data"]["data"]["k"], "v");
    let v2 = body(&c.request("GET", "/v1/secret/data/a", None).unwrap());
    assert_eq!(v2["data"]["data"]["k"], "v2");
    // the share still works after a seal
    assert_eq!(c.request("PUT", "/v1/sys/seal", None).unwrap().status, 204);
    let s = body(
        &c.request(
            "PUT",
            "/v1/sys/unseal",
            Some(&json!({"key": init["keys"][0]})),
        )
        .unwrap(),
    );
    assert_eq!(s["sealed"], false);
}

#[test]
fn dev_restart_keeps_data_and_root_token() {
    let srv = TestServer::spawn_dev();
    let token = srv.token.clone();
    let c = srv.client();
    c.request(
        "PUT",
        "/v1/secret/data/keep",
        Some(&json!({"data": {"v": 1}})),
    )
    .unwrap();
    let dir = srv.into_data_dir();
    let srv = TestServer::spawn_dev_in(dir);
    assert_eq!(srv.token, token);
    let r = srv
        .client()
        .request("GET", "/v1/secret/data/keep", None)
        .unwrap();
    assert_eq!(body(&r)["data"]["data"]["v"], 1);
}

#[test]
fn only_the_root_token_is_accepted_and_never_from_the_query() {
    let srv = TestServer::spawn_dev();
    let c = srv.client();
    c.request(
        "PUT",
        "/v1/secret/data/t",
        Some(&json!({"data": {"a": "b"}})),
    )
    .unwrap();
    let anon = srv.client_without_token();
    for (headers, want) in [
        (vec![], 403),
        (vec![("X-Vault-Token", "arca.forged-token")], 403),
        (
            vec![(
                "Authorization",
                format!("Bearer {}", srv.token).leak() as &str,
            )],
            200,
        ),
        (
            vec![(
                "Authorization",
                format!("bearer {}", srv.token).leak() as &str,
            )],
            403,
        ),
    ] {
        let r = anon
            .request_with_headers("GET", "/v1/secret/data/t", &headers, None)
            .unwrap();
        assert_eq!(r.status, want, "{headers:?}: {}", r.body);
        if want == 403 {
            assert_eq!(r.errors(), vec!["permission denied".to_string()]);
        }
    }
    let r = anon
        .request(
            "GET",
            &format!("/v1/secret/data/t?token={}", srv.token),
            None,
        )
        .unwrap();
    assert_eq!(r.status, 403);
    // unknown mounts: 404 with Vault's message for the root token
    let r = c.request("GET", "/v1/nomount/x", None).unwrap();
    assert_eq!(
        r.errors(),
        vec!["no handler for route \"nomount/x\". route entry not found.".to_string()]
    );
    // namespaces: only the root forms
    let r = c
        .request_with_headers(
            "GET",
            "/v1/secret/data/t",
            &[("X-Vault-Namespace", "team-a")],
            None,
        )
        .unwrap();
    assert_eq!(
        (r.status, r.errors()),
        (404, vec!["namespace not found".to_string()])
    );
    let r = c
        .request_with_headers(
            "GET",
            "/v1/secret/data/t",
            &[("X-Vault-Namespace", "root/")],
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn keyring_rotation_over_http() {
    let srv = TestServer::spawn_dev();
    let c = srv.client();
    c.request(
        "PUT",
        "/v1/secret/data/r",
        Some(&json!({"data": {"v": "old"}})),
    )
    .unwrap();
    let ks = body(&c.request("GET", "/v1/sys/key-status", None).unwrap());
    assert_eq!(ks["data"]["term"], 1);
    assert_eq!(
        c.request("PUT", "/v1/sys/rotate", None).unwrap().status,
        204
    );
    let ks = body(&c.request("GET", "/v1/sys/key-status", None).unwrap());
    assert_eq!(ks["data"]["term"], 2);
    assert!(ks["data"]["install_time"].as_str().unwrap().ends_with('Z'));
    // Encryptions under the active term are counted (Vault's `encryptions`)...
    let count = |c: &Client| {
        body(&c.request("GET", "/v1/sys/key-status", None).unwrap())["data"]["encryptions"]
            .as_u64()
            .expect("encryptions")
    };
    let before = count(&c);
    c.request(
        "PUT",
        "/v1/secret/data/r",
        Some(&json!({"data": {"v": "new"}})),
    )
    .unwrap();
    let after_write = count(&c);
    assert!(after_write > before, "{before} -> {after_write}");
    let dir = srv.into_data_dir();
    let srv = TestServer::spawn_dev_in(dir);
    let c = srv.client();
    assert_eq!(
        body(&c.request("GET", "/v1/sys/key-status", None).unwrap())["data"]["term"],
        2
    );
    // ...and the count never goes back across a restart (it resumes from a stored bound).
    assert!(count(&c) > after_write);
    assert_eq!(
        body(
            &c.request("GET", "/v1/secret/data/r?version=1", None)
                .unwrap()
        )["data"]["data"]["v"],
        "old"
    );
    assert_eq!(
        body(&c.request("GET", "/v1/secret/data/r", None).unwrap())["data"]["data"]["v"],
        "new"
    );
    assert_eq!(
        srv.client_without_token()
            .request("PUT", "/v1/sys/rotate", None)
            .unwrap()
            .status,
        403
    );
}

#[test]
fn plaintext_never_reaches_the_data_directory() {
    let canary = "CANARY-c0ffee-5e1f";
    let srv = TestServer::spawn_dev();
    let c = srv.client();
    for i in 0..20 {
        let r = c
            .request(
                "PUT",
                &format!("/v1/secret/data/app/{i}"),
                Some(&json!({"data": {"password": format!("{canary}-{i}")}})),
            )
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let token = srv.token.clone();
    let dir = srv.into_data_dir();
    let mut files = 0;
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                continue;
            }
            files += 1;
            let bytes = std::fs::read(e.path()).unwrap();
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "plaintext in {}",
                e.path().display()
            );
            if !e.path().ends_with("dev-mode.json") {
                assert!(
                    !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                    "token in {}",
                    e.path().display()
                );
            }
        }
    }
    assert!(files > 1);
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut srv = TestServer::spawn_dev();
    let acked = common::load_then_kill9(&mut srv, 8, 300, |c, w, i| {
        let key = format!("load/w{w}-{}", i % 5);
        let val = format!("w{w}-i{i}");
        let r = c
            .request(
                "PUT",
                &format!("/v1/secret/data/{key}"),
                Some(&json!({"data": {"v": val}})),
            )
            .ok()?;
        let v = r.json().filter(|_| r.status == 200)?["data"]["version"].as_u64()?;
        Some((key, v, val))
    });
    let dir = srv.into_data_dir();
    let srv = TestServer::spawn_dev_in(dir);
    let c = srv.client();
    for (key, version, val) in &acked {
        let r = c
            .request(
                "GET",
                &format!("/v1/secret/data/{key}?version={version}"),
                None,
            )
            .unwrap();
        let got = body(&r);
        // max_versions (10) may have pruned old versions of a key; the newest must all be there
        if r.status == 404 {
            let meta = body(
                &c.request("GET", &format!("/v1/secret/metadata/{key}"), None)
                    .unwrap(),
            );
            let oldest = meta["data"]["oldest_version"].as_u64().unwrap();
            assert!(
                *version < oldest,
                "acknowledged {key} v{version} lost (oldest kept {oldest})"
            );
            continue;
        }
        assert_eq!(got["data"]["data"]["v"], json!(val), "{key} v{version}");
    }
}

/// Token creates and AppRole logins sync their writes with the outcome record: every token
/// a client received before a `kill -9` works after the restart, and so does the count of a
/// limited secret_id (never more logins than its uses, acknowledged ones all counted).
#[test]
fn acknowledged_tokens_and_logins_survive_kill_9() {
    let mut srv = TestServer::spawn_dev();
    let c = srv.client();
    let ok = |r: arca::client::ApiResponse| {
        assert!(r.status < 300, "{} {:?}", r.status, r.json());
        body(&r)
    };
    ok(c.request(
        "POST",
        "/v1/auth/approle/role/job",
        Some(&json!({"token_ttl": "1h"})),
    )
    .unwrap());
    let role_id = ok(c
        .request("GET", "/v1/auth/approle/role/job/role-id", None)
        .unwrap())["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = ok(c
        .request(
            "POST",
            "/v1/auth/approle/role/job/secret-id",
            Some(&json!({})),
        )
        .unwrap())["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let limited = ok(c
        .request(
            "POST",
            "/v1/auth/approle/role/job/secret-id",
            Some(&json!({"num_uses": 100000})),
        )
        .unwrap())["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let acked = common::load_then_kill9(&mut srv, 6, 300, move |c, w, i| {
        let r = match w % 3 {
            0 => c.request("POST", "/v1/auth/token/create", Some(&json!({"ttl": "1h"}))),
            1 => c.request(
                "POST",
                "/v1/auth/approle/login",
                Some(&json!({"role_id": role_id, "secret_id": secret_id})),
            ),
            _ => c.request(
                "POST",
                "/v1/auth/approle/login",
                Some(&json!({"role_id": role_id, "secret_id": limited})),
            ),
        }
        .ok()?;
        let t = r.json().filter(|_| r.status == 200)?["auth"]["client_token"]
            .as_str()?
            .to_string();
        Some((w % 3, i, t))
    });
    let dir = srv.into_data_dir();
    let srv = TestServer::spawn_dev_in(dir);
    let limited_logins = acked.iter().filter(|(kind, _, _)| *kind == 2).count() as u64;
    for (_, _, t) in &acked {
        let r = arca::client::Client::new(&srv.addr, Some(t.clone()), None)
            .unwrap()
            .request("GET", "/v1/auth/token/lookup-self", None)
            .unwrap();
        assert_eq!(r.status, 200, "an acknowledged token is gone after kill -9");
    }
    // The limited secret_id has at most 100000 - (acknowledged logins) uses left.
    let c = srv.client();
    let accessors = body(
        &c.request("LIST", "/v1/auth/approle/role/job/secret-id", None)
            .unwrap(),
    );
    let mut left = None;
    for acc in accessors["data"]["keys"].as_array().unwrap() {
        let e = body(
            &c.request(
                "POST",
                "/v1/auth/approle/role/job/secret-id-accessor/lookup",
                Some(&json!({"secret_id_accessor": acc})),
            )
            .unwrap(),
        );
        if e["data"]["secret_id_num_uses"].as_u64() != Some(0) {
            left = e["data"]["secret_id_num_uses"].as_u64();
        }
    }
    let left = left.expect("the limited secret_id");
    assert!(
        left <= 100000 - limited_logins,
        "{limited_logins} acknowledged logins but {left} uses left"
    );
}

/// Sends raw bytes and returns what came back (status line and all).
fn raw_http(addr: &str, req: &[u8], wait: Duration) -> String {
    let hostport = addr.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn request_limits_give_clear_errors_and_change_nothing() {
    let dir = temp();
    // production mode with auto-unseal and small timeouts
    let keyfile = dir.path().join("k");
    std::fs::write(&keyfile, hex::encode([9u8; 32])).unwrap();
    let extra = format!(
        "auto_unseal_key_file = \"{}\"\n[limits]\nhead_timeout_ms = 700\nbody_timeout_ms = 700\nmax_body_bytes = 65536\n",
        keyfile.display()
    );
    let srv = spawn_prod(dir, &extra);
    let anon = srv.client_without_token();
    let root = body(
        &anon
            .request(
                "PUT",
                "/v1/sys/init",
                Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .unwrap(),
    )["root_token"]
        .as_str()
        .unwrap()
        .to_string();
    let c = anon.with_token(Some(root.clone()));
    assert_eq!(
        c.request(
            "PUT",
            "/v1/secret/data/lim",
            Some(&json!({"data": {"v": "orig"}}))
        )
        .unwrap()
        .status,
        200
    );
    let unchanged = |c: &Client| {
        let m = body(&c.request("GET", "/v1/secret/metadata/lim", None).unwrap());
        assert_eq!(
            m["data"]["current_version"], 1,
            "a rejected request changed the secret"
        );
    };

    // 413: body too large
    let big = json!({"data": {"v": "x".repeat(70_000)}});
    let r = c.request("PUT", "/v1/secret/data/lim", Some(&big)).unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    // 400: nesting and string count
    let mut deep = json!("leaf");
    for _ in 0..40 {
        deep = json!({ "d": deep });
    }
    let r = c
        .request("PUT", "/v1/secret/data/lim", Some(&json!({"data": deep})))
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("nested too deeply"));
    let many: serde_json::Map<String, Value> =
        (0..5100).map(|i| (format!("k{i}"), json!("v"))).collect();
    let r = c
        .request("PUT", "/v1/secret/data/lim", Some(&json!({"data": many})))
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    // 400: malformed JSON, wrong types
    for raw in [
        &b"{not json"[..],
        b"[1,2]",
        b"{\"data\": \"str\"}",
        b"{\"data\": {\"a\":1}, \"options\": {\"cas\": \"x\"}}",
        b"\xff\xfe",
    ] {
        let r = c
            .request_with_headers(
                "PUT",
                "/v1/secret/data/lim",
                &[("Content-Type", "application/json")],
                Some(raw),
            )
            .unwrap();
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(raw),
            r.body
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // 414: path too long
    let r = c
        .request(
            "GET",
            &format!("/v1/secret/data/{}", "a".repeat(2000)),
            None,
        )
        .unwrap();
    assert_eq!(r.status, 414);
    // 431: too many headers
    let hdrs: Vec<(String, String)> = (0..70).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let hdr_refs: Vec<(&str, &str)> = hdrs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        c.request_with_headers("GET", "/v1/secret/data/lim", &hdr_refs, None)
            .unwrap()
            .status,
        431
    );
    // 400: traversal and dot segments, in every encoding, after decoding once
    for p in [
        "/v1/secret/data/a/../lim",
        "/v1/secret/data/a/%2e%2e/lim",
        "/v1/secret/data/a/%2E%2e/lim",
        "/v1/secret/data/a/.%2e/lim",
        "/v1/secret/data/./lim",
        "/v1/secret/data/a/%2e/lim",
        "/v1/secret/data/a//lim",
        "/v1/secret/data/a%00b",
        "/v1/secret/data/%ff%fe",
    ] {
        let resp = raw_http(
            &srv.addr,
            format!(
                "GET {p} HTTP/1.1\r\nHost: x\r\nX-Vault-Token: {root}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
            Duration::from_secs(5),
        );
        assert_eq!(status_of(&resp), 400, "{p}: {resp}");
    }
    // a double-encoded dot segment is a literal name, not a traversal: plain 404
    let r = c
        .request("GET", "/v1/secret/data/a/%252e%252e/lim", None)
        .unwrap();
    assert_eq!(r.status, 404);
    // 408: a body that never finishes
    let resp = raw_http(
        &srv.addr,
        format!("PUT /v1/secret/data/lim HTTP/1.1\r\nHost: x\r\nX-Vault-Token: {root}\r\nContent-Length: 100\r\n\r\n{{\"data\":").as_bytes(),
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&resp), 408, "{resp}");
    // 408: a head that never finishes
    let resp = raw_http(
        &srv.addr,
        b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(5),
    );
    assert!(resp.is_empty() || status_of(&resp) == 408, "{resp}");
    // 405: unsupported method on a known path
    assert_eq!(
        c.request("PATCH", "/v1/sys/seal-status", Some(&json!({})))
            .unwrap()
            .status,
        405
    );
    unchanged(&c);
    // the server survived all of it
    assert_eq!(
        anon.request("GET", "/v1/sys/health", None).unwrap().status,
        200
    );
}

#[test]
fn logs_never_contain_secret_values_or_tokens_even_at_trace() {
    let dir = temp();
    let srv = TestServer::spawn_with_args_env(
        dir,
        &[
            "server",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--dev-root-token",
            common::DEV_ROOT_TOKEN,
            "--log-format",
            "json",
        ],
        &[("RUST_LOG", "trace")],
    );
    let canary = "CANARY-LOG-8d1e2f";
    let c = srv.client();
    c.request(
        "PUT",
        "/v1/secret/data/l",
        Some(&json!({"data": {"password": canary}})),
    )
    .unwrap();
    c.request("GET", "/v1/secret/data/l", None).unwrap();
    c.request(
        "PUT",
        "/v1/secret/data/l",
        Some(&json!({"data": {"password": canary}, "options": {"cas": 99}})),
    )
    .unwrap();
    srv.client_without_token()
        .with_token(Some(format!("{canary}-token")))
        .request("GET", "/v1/secret/data/l", None)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = srv.output();
    assert!(out.contains("\"level\""), "json logs expected:\n{out}");
    assert!(!out.contains(canary), "canary in the log:\n{out}");
    // the dev server prints its root token once for the user (Root Token + export lines), never in a log line
    for line in out.lines().filter(|l| l.contains(common::DEV_ROOT_TOKEN)) {
        assert!(
            line.starts_with("Root Token:") || line.starts_with("export ARCA_TOKEN="),
            "token in log line: {line}"
        );
    }
}

#[test]
fn sigterm_lets_in_flight_requests_finish_and_flushes() {
    let mut srv = TestServer::spawn_dev();
    let token = srv.token.clone();
    let hostport = srv.addr.trim_start_matches("http://").to_string();
    let body = br#"{"data":{"v":"written-during-shutdown"}}"#;
    let mut s = TcpStream::connect(&hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "PUT /v1/secret/data/graceful HTTP/1.1\r\nHost: x\r\nX-Vault-Token: {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let st = std::process::Command::new("kill")
        .args(["-TERM", &srv.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&body[10..]).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert_eq!(
        status_of(&out),
        200,
        "in-flight request during shutdown: {out}"
    );
    let exit = srv
        .wait_exit(Duration::from_secs(20))
        .expect("server exits after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}\n{}", srv.output());
    assert!(srv.output().contains("arca stopped"));
    let dir = srv.into_data_dir();
    let srv = TestServer::spawn_dev_in(dir);
    let r = srv
        .client()
        .request("GET", "/v1/secret/data/graceful", None)
        .unwrap();
    assert_eq!(
        body_json(&r)["data"]["data"]["v"],
        "written-during-shutdown"
    );
}

fn body_json(r: &arca::client::ApiResponse) -> Value {
    r.json().unwrap_or(Value::Null)
}

/// Production mode over TLS with a generated CA and certificate.
#[test]
fn production_mode_over_tls_only() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = temp();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(dir.path().join("server.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), leaf_key.serialize_pem()).unwrap();
    let cfg = dir.path().join("arca.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ntls_cert_file = \"{0}/server.crt\"\ntls_key_file = \"{0}/server.key\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let cfg = cfg.to_string_lossy().into_owned();
    let ca_copy = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(&ca_pem, ca_copy.path()).unwrap();
    let srv = TestServer::spawn_with_args(dir, &["server", "--config", &cfg]);
    assert!(srv.addr.starts_with("https://"), "{}", srv.addr);

    let anon = Client::new(&srv.addr, None, Some(ca_copy.path())).unwrap();
    let init = body_json(
        &anon
            .request(
                "PUT",
                "/v1/sys/init",
                Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .unwrap(),
    );
    let s = body_json(
        &anon
            .request(
                "PUT",
                "/v1/sys/unseal",
                Some(&json!({"key": init["keys"][0]})),
            )
            .unwrap(),
    );
    assert_eq!(s["sealed"], false);
    let c = anon.with_token(Some(init["root_token"].as_str().unwrap().to_string()));
    assert_eq!(
        c.request(
            "PUT",
            "/v1/secret/data/tls",
            Some(&json!({"data": {"a": "b"}}))
        )
        .unwrap()
        .status,
        200
    );
    assert_eq!(
        body_json(&c.request("GET", "/v1/secret/data/tls", None).unwrap())["data"]["data"]["a"],
        "b"
    );

    // a client that does not trust the CA gets no answer
    assert!(Client::new(&srv.addr, None, None)
        .unwrap()
        .request("GET", "/v1/sys/health", None)
        .is_err());

    let hostport = srv.addr.trim_start_matches("https://").to_string();
    // plain HTTP to the TLS port gets no data
    let mut s = TcpStream::connect(&hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        !text.contains("initialized") && !text.starts_with("HTTP/1.1 200"),
        "plain HTTP got: {text}"
    );

    // a TLS 1.1 ClientHello (no supported_versions extension) is refused with an alert
    let mut hello = vec![0x01, 0, 0, 0, 0x03, 0x02];
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2f, 0x00, 0x2f]); // cipher suites
    hello.extend_from_slice(&[0x01, 0x00]); // compression: null
    let hs_len = (hello.len() - 4) as u32;
    hello[1..4].copy_from_slice(&hs_len.to_be_bytes()[1..]);
    let mut record = vec![0x16, 0x03, 0x02];
    record.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    record.extend_from_slice(&hello);
    let mut s = TcpStream::connect(&hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&record).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(!out.is_empty(), "no answer to a TLS 1.1 hello");
    assert_eq!(out[0], 0x15, "expected a TLS alert record, got {out:02x?}");
}
