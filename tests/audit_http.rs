//! The audit journal as users reach it: every request recorded through the real server,
//! values never in clear, fail-closed on an unwritable disk, `kill -9` under load, export
//! over HTTP, and offline verification with the published key.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arca::client::Client;
use common::{run_cmd, TestServer, ARCA};
use serde_json::{json, Value};

fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("arca-audit-")
        .tempdir()
        .unwrap()
}

fn body(r: &arca::client::ApiResponse) -> Value {
    r.json().unwrap_or(Value::Null)
}

/// Every journal record, in order, from the segment files under `dir`.
fn records(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                out.push(v);
            }
        }
    }
    out
}

fn journal_text(dir: &Path) -> String {
    let mut s = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        s.push_str(&String::from_utf8_lossy(
            &std::fs::read(e.unwrap().path()).unwrap(),
        ));
    }
    s
}

fn sigterm(srv: &mut TestServer) {
    let st = std::process::Command::new("kill")
        .args(["-TERM", &srv.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        srv.wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "{}",
        srv.output()
    );
}

/// Every leaf of `v` is an HMAC (or `redacted`), never a clear value.
fn all_leaves_hashed(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().all(all_leaves_hashed),
        Value::Array(a) => a.iter().all(all_leaves_hashed),
        Value::String(s) => s.starts_with("hmac-sha256:") || s == "redacted",
        _ => false,
    }
}

#[test]
fn every_request_is_recorded_and_no_value_is_in_clear() {
    let mut srv = TestServer::spawn_dev();
    let c = srv.client();
    let anon = srv.client_without_token();
    let canary_s = "CANARY-str-4f1e9a";
    let canary_n: u64 = 918_273_645_546_372;
    let canary_f = 31_415.926_535;
    let secret = json!({"data": {
        "password": canary_s,
        "pin": canary_n,
        "ratio": canary_f,
        "enabled": true,
        "nothing": null,
        "list": [canary_s, canary_n, false],
        "nested": {"deep": {"key": canary_s}},
    }});
    let sent = std::cell::Cell::new(0usize);
    let call = |client: &Client, m: &str, p: &str, b: Option<&Value>| {
        sent.set(sent.get() + 1);
        client.request(m, p, b).unwrap()
    };
    assert_eq!(
        call(&c, "PUT", "/v1/secret/data/app/db", Some(&secret)).status,
        200
    );
    assert_eq!(call(&c, "GET", "/v1/secret/data/app/db", None).status, 200);
    assert_eq!(
        call(&c, "LIST", "/v1/secret/metadata/app", None).status,
        200
    );
    assert_eq!(
        call(&anon, "GET", "/v1/secret/data/app/db", None).status,
        403
    );
    let forged = anon.with_token(Some("arca.CANARY-forged-token".into()));
    assert_eq!(
        call(&forged, "GET", "/v1/secret/data/app/db", None).status,
        403
    );
    assert_eq!(
        call(&c, "GET", "/v1/secret/data/app/nope", None).status,
        404
    );
    assert_eq!(
        call(&c, "PATCH", "/v1/sys/seal-status", Some(&json!({}))).status,
        405
    );
    assert_eq!(call(&anon, "GET", "/v1/sys/health", None).status, 200);
    let child = call(
        &c,
        "POST",
        "/v1/auth/token/create",
        Some(&json!({"policies": ["default"], "ttl": "10m"})),
    );
    let child_token = body(&child)["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let childc = anon.with_token(Some(child_token.clone()));
    assert_eq!(
        call(&childc, "GET", "/v1/secret/data/app/db", None).status,
        403
    );
    assert_eq!(
        call(&childc, "GET", "/v1/auth/token/lookup-self", None).status,
        200
    );
    // an old client's token-in-the-path: refused, and the token is echoed nowhere
    let r = call(
        &c,
        "GET",
        &format!("/v1/auth/token/lookup/{child_token}"),
        None,
    );
    assert_eq!(r.status, 404);
    assert!(!r.body.contains(&child_token));
    // malformed: bad JSON, invalid path; each still one record
    let r = c
        .request_with_headers(
            "PUT",
            "/v1/secret/data/app/x",
            &[("Content-Type", "application/json")],
            Some(b"{bad json"),
        )
        .unwrap();
    sent.set(sent.get() + 1);
    assert_eq!(r.status, 400);
    let r = c.request("GET", "/v1/secret/data/a%00b", None).unwrap();
    sent.set(sent.get() + 1);
    assert_eq!(r.status, 400);
    // the audit-hash endpoint finds the canary's HMAC in the log
    let h = call(
        &c,
        "POST",
        "/v1/sys/audit-hash/file",
        Some(&json!({"input": canary_s})),
    );
    let canary_hash = body(&h)["data"]["hash"].as_str().unwrap().to_string();
    assert!(canary_hash.starts_with("hmac-sha256:"));
    // sinks are config-only
    assert_eq!(
        call(
            &c,
            "PUT",
            "/v1/sys/audit/file2",
            Some(&json!({"type": "file"}))
        )
        .status,
        400
    );
    assert_eq!(
        body(&call(&c, "GET", "/v1/sys/audit", None))["data"]["file/"]["type"],
        "file"
    );

    let root = srv.token.clone();
    let audit_dir = srv.data_path().join("audit");
    sigterm(&mut srv);

    let recs = records(&audit_dir);
    let responses: Vec<&Value> = recs.iter().filter(|r| r["type"] == "response").collect();
    // the harness's readiness probe (sys/health) came before our first request
    let harness = responses
        .iter()
        .take_while(|r| r["path"] == "sys/health")
        .count();
    assert_eq!(
        responses.len() - harness,
        sent.get(),
        "one outcome record per request"
    );
    let text = journal_text(&audit_dir);
    let log = srv.output();
    for clear in [
        canary_s.to_string(),
        canary_n.to_string(),
        "31415.926".to_string(),
        child_token.clone(),
        root,
        "CANARY-forged-token".into(),
    ] {
        assert!(!text.contains(&clear), "{clear} in the journal");
        assert!(
            !log.lines().any(|l| l.contains(&clear)
                && !l.starts_with("Root Token")
                && !l.starts_with("export ")),
            "{clear} in the log"
        );
    }
    // the write's intent came before its outcome, and carries the body, every leaf hashed
    let write_intent = recs
        .iter()
        .find(|r| r["type"] == "request" && r["path"] == "secret/data/app/db")
        .unwrap();
    let write_outcome = recs
        .iter()
        .find(|r| {
            r["type"] == "response"
                && r["path"] == "secret/data/app/db"
                && r["operation"] == "create"
        })
        .unwrap();
    assert!(write_intent["seq"].as_u64() < write_outcome["seq"].as_u64());
    assert_eq!(write_intent["request_id"], write_outcome["request_id"]);
    assert!(
        all_leaves_hashed(&write_intent["request"]["body"]),
        "{}",
        write_intent["request"]["body"]
    );
    assert!(
        text.contains(&canary_hash),
        "the audit-hash value is searchable in the journal"
    );
    // the read names actor, version, outcome, policy rule, address
    let read = responses
        .iter()
        .find(|r| {
            r["path"] == "secret/data/app/db" && r["operation"] == "read" && r["status"] == 200
        })
        .unwrap();
    assert_eq!(read["version"], 1);
    assert_eq!(read["actor"]["display_name"], "root");
    assert_eq!(read["outcome"], "allowed");
    assert_eq!(read["policy"], "root");
    assert_eq!(read["remote_addr"], "127.0.0.1");
    let denied: Vec<_> = responses
        .iter()
        .filter(|r| r["outcome"] == "denied")
        .collect();
    assert_eq!(
        denied.len(),
        3,
        "anonymous, forged and the child's ACL denial"
    );
    assert!(
        denied.iter().any(|r| r["actor"]["display_name"] == "token"),
        "the child token is named when its ACL denies"
    );
    assert!(responses
        .iter()
        .any(|r| r["status"] == 400 && r["outcome"] == "error"));
}

fn mount_tmpfs(dir: &Path, size: &str) -> TmpfsGuard {
    std::fs::create_dir_all(dir).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .expect("run mount");
    assert!(
        st.success(),
        "this test needs root to mount a small tmpfs (a full disk) at {}",
        dir.display()
    );
    TmpfsGuard(dir.to_path_buf())
}

struct TmpfsGuard(PathBuf);

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_audit_disk_fails_closed_then_recovers_without_a_gap() {
    let dir = temp();
    let audit_dir = dir.path().join("audit-disk");
    let _mnt = mount_tmpfs(&audit_dir, "1m");
    let cfg = dir.path().join("arca.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ntls_disable = true\n[audit]\ndir = \"{}\"\nwrite_deadline = \"2s\"\n",
            audit_dir.display()
        ),
    )
    .unwrap();
    let keyfile = dir.path().join("k");
    std::fs::write(&keyfile, hex::encode([3u8; 32])).unwrap();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let mut srv = TestServer::spawn_with_args_env(
        tempfile::tempdir().unwrap(),
        &["server", "--config", &cfg_s],
        &[("ARCA_AUTO_UNSEAL_KEY", &hex::encode([3u8; 32]))],
    );
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
    let c = anon.with_token(Some(init["root_token"].as_str().unwrap().to_string()));
    assert_eq!(
        c.request(
            "PUT",
            "/v1/secret/data/db/prod",
            Some(&json!({"data": {"password": "VALUE-before"}}))
        )
        .unwrap()
        .status,
        200
    );

    // fill the audit filesystem
    let filler = audit_dir.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    // reads return no secret, writes change nothing
    for _ in 0..3 {
        let r = c.request("GET", "/v1/secret/data/db/prod", None).unwrap();
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(!r.body.contains("VALUE-before"));
        assert!(r.body.contains("audit journal unavailable"));
    }
    let w = c
        .request(
            "PUT",
            "/v1/secret/data/db/prod",
            Some(&json!({"data": {"password": "VALUE-during"}})),
        )
        .unwrap();
    assert_eq!(w.status, 503);

    // the disk recovers: service resumes by itself
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = c.request("GET", "/v1/secret/data/db/prod", None).unwrap();
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        body(&r)["data"]["data"]["password"],
        "VALUE-before",
        "the refused write changed nothing"
    );
    assert_eq!(body(&r)["data"]["metadata"]["version"], 1);

    let pk = body(
        &c.request("GET", "/v1/sys/audit-log/public-key", None)
            .unwrap(),
    );
    let pk_file = dir.path().join("audit.pub");
    std::fs::write(&pk_file, pk["data"]["public_key"].as_str().unwrap()).unwrap();
    sigterm(&mut srv);
    // the chain continues without a gap, and checks out with the published key
    let out = run_cmd(
        std::process::Command::new(ARCA)
            .args(["audit", "verify", "--public-key"])
            .arg(&pk_file)
            .arg(&audit_dir),
        None,
    );
    assert_eq!(out.code, 0, "{out:#?}");
    let seqs: Vec<u64> = records(&audit_dir)
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gap in {seqs:?}");
}

#[test]
fn kill_9_under_load_leaves_a_journal_that_verifies_and_covers_every_acknowledged_request() {
    let mut srv = TestServer::spawn_dev();
    let c = srv.client();
    let pk = body(
        &c.request("GET", "/v1/sys/audit-log/public-key", None)
            .unwrap(),
    );
    let pk_pem = pk["data"]["public_key"].as_str().unwrap().to_string();
    let acked = common::load_then_kill9(&mut srv, 6, 300, |c, w, i| {
        let r = if i % 2 == 0 {
            c.request(
                "PUT",
                &format!("/v1/secret/data/load/{w}"),
                Some(&json!({"data": {"i": i}})),
            )
        } else {
            c.request("GET", &format!("/v1/secret/data/load/{w}"), None)
        }
        .ok()?;
        let j = r.json().filter(|_| r.status == 200)?;
        j["request_id"].as_str().map(str::to_string)
    });
    let dir = srv.into_data_dir();
    // restart: the journal reopens (marking a torn tail if any) and goes on
    let mut srv = TestServer::spawn_dev_in(dir);
    assert_eq!(
        srv.client()
            .request("GET", "/v1/sys/health", None)
            .unwrap()
            .status,
        200
    );
    let audit_dir = srv.data_path().join("audit");
    sigterm(&mut srv);
    let recorded: HashSet<String> = records(&audit_dir)
        .iter()
        .filter(|r| r["type"] == "response")
        .filter_map(|r| r["request_id"].as_str().map(str::to_string))
        .collect();
    for id in &acked {
        assert!(
            recorded.contains(id),
            "acknowledged request {id} has no record"
        );
    }
    let pk_file = srv.data_path().join("audit.pub");
    std::fs::write(&pk_file, pk_pem).unwrap();
    let out = run_cmd(
        std::process::Command::new(ARCA)
            .args(["audit", "verify", "--public-key"])
            .arg(&pk_file)
            .arg(&audit_dir),
        None,
    );
    assert_eq!(out.code, 0, "{out:#?}");
}

#[test]
fn export_over_http_filters_and_quotes_and_needs_its_own_capability() {
    let srv = TestServer::spawn_dev();
    let c = srv.client();
    let odd = "odd,\"quoted\" name";
    let enc = "odd%2C%22quoted%22%20name";
    assert_eq!(
        c.request(
            "PUT",
            &format!("/v1/secret/data/{enc}"),
            Some(&json!({"data": {"a": "b"}}))
        )
        .unwrap()
        .status,
        200
    );
    assert_eq!(
        c.request("GET", &format!("/v1/secret/data/{enc}"), None)
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        c.request("GET", "/v1/secret/data/db/prod", None)
            .unwrap()
            .status,
        404
    );
    let anon = srv.client_without_token();
    assert_eq!(
        anon.request("GET", "/v1/secret/data/db/prod", None)
            .unwrap()
            .status,
        403
    );

    let r = c
        .request(
            "GET",
            "/v1/sys/audit-log/export?format=csv&path=secret/data/odd*&operation=read",
            None,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    let mut rd = csv::Reader::from_reader(r.body.as_bytes());
    let headers = rd.headers().unwrap().clone();
    let path_col = headers.iter().position(|h| h == "path").unwrap();
    let rows: Vec<csv::StringRecord> = rd.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), 1, "{}", r.body);
    assert_eq!(&rows[0][path_col], &format!("secret/data/{odd}"));
    assert_eq!(r.body.lines().count(), 2, "one physical line per record");

    let r = c
        .request("GET", "/v1/sys/audit-log/export?outcome=denied", None)
        .unwrap();
    let lines: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.body);
    assert_eq!(lines[0]["actor"]["display_name"], "anonymous");
    let r = c
        .request(
            "GET",
            "/v1/sys/audit-log/export?actor=root&path=secret/data/db/*",
            None,
        )
        .unwrap();
    assert!(r.body.lines().count() >= 1);
    assert!(r
        .body
        .lines()
        .all(|l| l.contains("\"display_name\":\"root\"")));
    assert_eq!(
        c.request("GET", "/v1/sys/audit-log/export?from=yesterday", None)
            .unwrap()
            .status,
        400
    );

    // a policy with export but no secret values: the compliance officer's shape
    let policy = "path \"sys/audit-log/export\" { capabilities = [\"read\"] }\npath \"secret/metadata/*\" { capabilities = [\"read\", \"list\"] }";
    assert_eq!(
        c.request(
            "PUT",
            "/v1/sys/policies/acl/auditor",
            Some(&json!({"policy": policy}))
        )
        .unwrap()
        .status,
        204
    );
    let t = body(
        &c.request(
            "POST",
            "/v1/auth/token/create",
            Some(&json!({"policies": ["auditor"]})),
        )
        .unwrap(),
    );
    let auditor = anon.with_token(Some(
        t["auth"]["client_token"].as_str().unwrap().to_string(),
    ));
    assert_eq!(
        auditor
            .request("GET", "/v1/sys/audit-log/export?operation=read", None)
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        auditor
            .request("GET", &format!("/v1/secret/data/{enc}"), None)
            .unwrap()
            .status,
        403
    );
    // a token without the capability gets nothing
    let t = body(
        &c.request(
            "POST",
            "/v1/auth/token/create",
            Some(&json!({"policies": ["default"]})),
        )
        .unwrap(),
    );
    let plain = anon.with_token(Some(
        t["auth"]["client_token"].as_str().unwrap().to_string(),
    ));
    assert_eq!(
        plain
            .request("GET", "/v1/sys/audit-log/export", None)
            .unwrap()
            .status,
        403
    );
}

#[test]
fn offline_verify_names_an_edited_record() {
    let mut srv = TestServer::spawn_dev();
    let c = srv.client();
    for i in 0..5 {
        c.request(
            "PUT",
            &format!("/v1/secret/data/v/{i}"),
            Some(&json!({"data": {"i": i}})),
        )
        .unwrap();
    }
    let pk = body(
        &c.request("GET", "/v1/sys/audit-log/public-key", None)
            .unwrap(),
    );
    let audit_dir = srv.data_path().join("audit");
    sigterm(&mut srv);
    let pk_file = srv.data_path().join("audit.pub");
    std::fs::write(&pk_file, pk["data"]["public_key"].as_str().unwrap()).unwrap();
    let verify = || {
        run_cmd(
            std::process::Command::new(ARCA)
                .args(["audit", "verify", "--public-key"])
                .arg(&pk_file)
                .arg(&audit_dir),
            None,
        )
    };
    assert_eq!(verify().code, 0);
    // an auditor's nightmare: somebody rewrote who wrote secret/data/v/3
    let seg = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&seg).unwrap();
    let edited = text.replacen(
        "\"path\":\"secret/data/v/3\"",
        "\"path\":\"secret/data/v/9\"",
        1,
    );
    assert_ne!(text, edited);
    std::fs::write(&seg, edited).unwrap();
    let out = verify();
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stdout.contains("line") || out.stderr.contains("line"),
        "{out:#?}"
    );
}

#[test]
fn rotation_steps_are_background_events_in_the_journal() {
    let mut srv = TestServer::spawn_dev();
    let c = srv.client();
    assert_eq!(
        c.request(
            "PUT",
            "/v1/secret/data/svc/api",
            Some(&json!({"data": {"password": "OLD-VALUE-7c1"}}))
        )
        .unwrap()
        .status,
        200
    );
    let r = c
        .request(
            "PUT",
            "/v1/secret/rotation/svc/api",
            Some(&json!({"target": "none", "period": "24h"})),
        )
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    let r = c
        .request("POST", "/v1/secret/rotate/svc/api", Some(&json!({})))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let new_version = body(&r)["data"]["version"].as_u64().unwrap();
    let new_password = body(&c.request("GET", "/v1/secret/data/svc/api", None).unwrap())["data"]
        ["data"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    let audit_dir = srv.data_path().join("audit");
    sigterm(&mut srv);
    let recs = records(&audit_dir);
    let steps: Vec<&Value> = recs
        .iter()
        .filter(|r| r["type"] == "event" && r["operation"] == "rotation-step")
        .collect();
    assert!(!steps.is_empty(), "no rotation step in the journal");
    assert!(steps.iter().all(|s| s["path"] == "secret/data/svc/api"));
    assert!(
        steps
            .iter()
            .any(|s| s["version"] == new_version && s["state"] == "idle"),
        "{steps:?}"
    );
    let text = journal_text(&audit_dir);
    assert!(!text.contains(&new_password) && !text.contains("OLD-VALUE-7c1"));
}

#[test]
fn the_stdout_mirror_copies_records_without_clear_values() {
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
        ],
        &[("ARCA_AUDIT_MIRROR", "stdout")],
    );
    let c = srv.client();
    assert_eq!(
        c.request(
            "PUT",
            "/v1/secret/data/m/x",
            Some(&json!({"data": {"pw": "MIRROR-CANARY-1"}}))
        )
        .unwrap()
        .status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !srv.output().contains("\"path\":\"secret/data/m/x\"") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = srv.output();
    let mirrored: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("\"path\":\"secret/data/m/x\""))
        .collect();
    assert!(
        mirrored.len() >= 2,
        "intent and outcome mirrored to stdout:\n{out}"
    );
    assert!(!out.contains("MIRROR-CANARY-1"));
}

/// CPU ticks (1/100 s) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_sealed_server_with_pending_records_stays_idle() {
    let srv = TestServer::spawn_with_args_env(
        temp(),
        &[
            "server",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--dev-root-token",
            common::DEV_ROOT_TOKEN,
        ],
        &[("ARCA_AUDIT_CHECKPOINT_INTERVAL", "1")],
    );
    let c = srv.client();
    assert_eq!(c.request("PUT", "/v1/sys/seal", None).unwrap().status, 204);
    // records written while sealed cannot be checkpointed: the writer must wait, not spin
    for _ in 0..3 {
        assert_eq!(
            c.request("GET", "/v1/sys/seal-status", None)
                .unwrap()
                .status,
            200
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = cpu_ticks(srv.pid());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(srv.pid()) - t0;
    assert!(
        used < 60,
        "an idle sealed server used {used} CPU ticks in 3 s"
    );
}

/// The store's write-ahead log on a full disk: a write fails (5xx) and changes nothing,
/// reads go on; once there is room again, writes work without a restart, and what was
/// acknowledged is there after one.
#[test]
fn a_full_store_log_disk_refuses_writes_then_recovers() {
    let data = temp();
    let wal = data.path().join("store").join("arca-wal");
    let _mnt = mount_tmpfs(&wal, "1m");
    let mut srv = TestServer::spawn_dev_in(data);
    let c = srv.client();
    let put = |v: &str| {
        c.request(
            "PUT",
            "/v1/secret/data/db/prod",
            Some(&json!({"data": {"password": v}})),
        )
        .unwrap()
    };
    assert_eq!(put("VALUE-before").status, 200);
    let filler = wal.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }
    for _ in 0..3 {
        let r = put("VALUE-during");
        assert!(r.status >= 500, "{} {}", r.status, r.body);
        assert!(!r.body.contains("VALUE-during"));
    }
    let r = c.request("GET", "/v1/secret/data/db/prod", None).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(body(&r)["data"]["data"]["password"], "VALUE-before");
    assert_eq!(body(&r)["data"]["metadata"]["version"], 1);

    std::fs::remove_file(&filler).unwrap();
    let r = put("VALUE-after");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(body(&r)["data"]["version"], 2);
    sigterm(&mut srv);
    let srv = TestServer::spawn_dev_in(srv.into_data_dir());
    let r = srv
        .client()
        .request("GET", "/v1/secret/data/db/prod", None)
        .unwrap();
    assert_eq!(body(&r)["data"]["data"]["password"], "VALUE-after");
    assert_eq!(body(&r)["data"]["metadata"]["version"], 2);
}
