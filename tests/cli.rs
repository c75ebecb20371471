//! The `arca` CLI against a real dev server: KV round trips, output formats, exit codes, and
//! that the token never shows up in any output.

mod common;

use common::{run_cmd, CliOutput, TestServer, ARCA};
use serde_json::json;
use std::process::Command;

/// Asserts that the token appears nowhere in what the command printed.
#[track_caller]
fn assert_no_token(out: &CliOutput, token: &str) {
    assert!(
        !out.stdout.contains(token) && !out.stderr.contains(token),
        "the token leaked: {out:#?}"
    );
}

#[test]
fn put_get_table_json_and_field() {
    let s = TestServer::spawn_dev();
    let out = s.run(&[
        "kv",
        "put",
        "secret/db/prod",
        "username=app",
        "password=p@ss=1",
    ]);
    out.ok();
    assert!(out.stdout.contains("Secret Path"), "{out:#?}");
    assert!(out.stdout.contains("secret/data/db/prod"), "{out:#?}");
    assert!(out.stdout.contains("version "), "{out:#?}");

    let out = s.run(&["kv", "get", "secret/db/prod"]);
    out.ok();
    let meta = out.stdout.find("= Metadata =").expect("metadata section");
    let data = out.stdout.find("= Data =").expect("data section");
    assert!(meta < data, "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["password", "p@ss=1"])),
        "{}",
        out.stdout
    );
    assert!(out
        .stdout
        .lines()
        .any(|l| l.split_whitespace().eq(["deletion_time", "n/a"])));

    let out = s.run(&["kv", "get", "--format", "json", "secret/db/prod"]);
    out.ok();
    let v = out.json();
    assert_eq!(v["data"], json!({"username": "app", "password": "p@ss=1"}));
    assert_eq!(v["metadata"]["version"], json!(1));
    assert_eq!(v["metadata"]["destroyed"], json!(false));

    // Raw value, no trailing newline when stdout is not a terminal.
    let out = s.run(&["kv", "get", "--field", "password", "secret/db/prod"]);
    out.ok();
    assert_eq!(out.stdout, "p@ss=1");
    let out = s.run(&["kv", "get", "--field", "nope", "secret/db/prod"]);
    out.expect_code(1);
    assert!(out.stderr.starts_with("Error: "), "{out:#?}");

    // A path relative to the mount, and flags after the path.
    let out = s.run(&["kv", "get", "db/prod", "--field", "username"]);
    out.ok();
    assert_eq!(out.stdout, "app");
    // JSON output of put is the version metadata.
    let out = s.run(&["kv", "put", "--format", "json", "secret/db/prod", "a=b"]);
    out.ok();
    assert_eq!(out.json()["version"], json!(2));
}

#[test]
fn put_from_file_and_stdin() {
    let s = TestServer::spawn_dev();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cert.pem");
    std::fs::write(&file, "line1\nline2\n").unwrap();
    let file_arg = format!("cert=@{}", file.display());
    s.run_stdin(
        &["kv", "put", "secret/app", &file_arg, "token=-"],
        "from stdin",
    )
    .ok();
    let v = s
        .run(&["kv", "get", "--format", "json", "secret/app"])
        .json();
    assert_eq!(
        v["data"],
        json!({"cert": "line1\nline2\n", "token": "from stdin"})
    );

    // A JSON object on stdin keeps value types.
    s.run_stdin(
        &["kv", "put", "secret/typed", "-"],
        r#"{"port": 5432, "tls": true}"#,
    )
    .ok();
    let v = s
        .run(&["kv", "get", "--format", "json", "secret/typed"])
        .json();
    assert_eq!(v["data"], json!({"port": 5432, "tls": true}));

    // Stdin can only be used once.
    s.run_stdin(&["kv", "put", "secret/x", "a=-", "b=-"], "v")
        .expect_code(2);
}

#[test]
fn versions_and_check_and_set() {
    let s = TestServer::spawn_dev();
    s.run(&["kv", "put", "secret/cfg", "v=1"]).ok();
    s.run(&["kv", "put", "--cas", "1", "secret/cfg", "v=2"])
        .ok();
    let out = s.run(&["kv", "put", "--cas", "1", "secret/cfg", "v=3"]);
    out.expect_code(1);
    assert!(out.stderr.contains("check-and-set"), "{out:#?}");
    let out = s.run(&["kv", "put", "--cas", "0", "secret/cfg", "v=3"]);
    out.expect_code(1);

    let out = s.run(&["kv", "get", "--version", "1", "--field", "v", "secret/cfg"]);
    out.ok();
    assert_eq!(out.stdout, "1");
    let out = s.run(&["kv", "get", "--field", "v", "secret/cfg"]);
    assert_eq!(out.stdout, "2");
    // A version that never existed: not found.
    s.run(&["kv", "get", "--version", "9", "secret/cfg"])
        .expect_code(2);
}

#[test]
fn patch_merges_and_missing_is_not_found() {
    let s = TestServer::spawn_dev();
    s.run(&["kv", "put", "secret/db", "user=u", "password=p1"])
        .ok();
    let out = s.run(&["kv", "patch", "secret/db", "password=p2", "host=h"]);
    out.ok();
    assert!(out.stdout.contains("Metadata"), "{out:#?}");
    let v = s
        .run(&["kv", "get", "--format", "json", "secret/db"])
        .json();
    assert_eq!(
        v["data"],
        json!({"user": "u", "password": "p2", "host": "h"})
    );
    assert_eq!(v["metadata"]["version"], json!(2));

    // A JSON null removes a key (merge patch).
    s.run_stdin(&["kv", "patch", "secret/db", "-"], r#"{"host": null}"#)
        .ok();
    let v = s
        .run(&["kv", "get", "--format", "json", "secret/db"])
        .json();
    assert_eq!(v["data"], json!({"user": "u", "password": "p2"}));

    let out = s.run(&["kv", "patch", "secret/nothing-here", "a=b"]);
    out.expect_code(2);
    assert!(out.stderr.starts_with("Error: "), "{out:#?}");
}

#[test]
fn list_folders() {
    let s = TestServer::spawn_dev();
    s.run(&["kv", "put", "secret/team/b", "k=v"]).ok();
    s.run(&["kv", "put", "secret/team/a", "k=v"]).ok();
    s.run(&["kv", "put", "secret/team/sub/c", "k=v"]).ok();

    let out = s.run(&["kv", "list", "secret/team"]);
    out.ok();
    assert_eq!(out.stdout, "Keys\n----\na\nb\nsub/\n");
    let out = s.run(&["kv", "list", "--format", "json", "secret/team/"]);
    out.ok();
    assert_eq!(out.json()["keys"], json!(["a", "b", "sub/"]));
    // The mount root.
    let out = s.run(&["kv", "list", "secret/"]);
    out.ok();
    assert!(out.stdout.lines().any(|l| l == "team/"), "{out:#?}");

    s.run(&["kv", "list", "secret/nowhere"]).expect_code(2);
}

#[test]
fn delete_undelete_destroy() {
    let s = TestServer::spawn_dev();
    s.run(&["kv", "put", "secret/k", "v=1"]).ok();
    s.run(&["kv", "put", "secret/k", "v=2"]).ok();

    // Soft delete of the latest version: reading it is "not found" but shows the metadata.
    let out = s.run(&["kv", "delete", "secret/k"]);
    out.ok();
    assert!(out.stdout.starts_with("Success!"), "{out:#?}");
    let out = s.run(&["kv", "get", "secret/k"]);
    out.expect_code(2);
    assert!(out.stdout.contains("deletion_time"), "{out:#?}");
    assert!(!out.stdout.contains("= Data ="), "{out:#?}");
    assert!(out.stderr.contains("deleted"), "{out:#?}");
    s.run(&["kv", "get", "--field", "v", "secret/k"])
        .expect_code(2);

    s.run(&["kv", "undelete", "--versions", "2", "secret/k"])
        .ok();
    let out = s.run(&["kv", "get", "--field", "v", "secret/k"]);
    out.ok();
    assert_eq!(out.stdout, "2");

    s.run(&["kv", "delete", "--versions", "1", "secret/k"]).ok();
    s.run(&["kv", "get", "--version", "1", "secret/k"])
        .expect_code(2);

    s.run(&["kv", "destroy", "--versions", "1,2", "secret/k"])
        .ok();
    let out = s.run(&["kv", "get", "secret/k"]);
    out.expect_code(2);
    assert!(out.stderr.contains("destroyed"), "{out:#?}");
    // Undelete does not bring destroyed data back.
    s.run(&["kv", "undelete", "--versions", "2", "secret/k"])
        .ok();
    s.run(&["kv", "get", "secret/k"]).expect_code(2);

    let v = s
        .run(&["kv", "metadata", "get", "--format", "json", "secret/k"])
        .json();
    assert_eq!(v["versions"]["1"]["destroyed"], json!(true));
    assert_eq!(v["versions"]["2"]["destroyed"], json!(true));

    // --versions is required for undelete/destroy: usage error.
    s.run(&["kv", "destroy", "secret/k"]).expect_code(2);
    s.run(&["kv", "undelete", "secret/k"]).expect_code(2);
}

#[test]
fn metadata_round_trip() {
    let s = TestServer::spawn_dev();
    s.run(&[
        "kv",
        "metadata",
        "put",
        "secret/m",
        "--max-versions",
        "3",
        "--cas-required",
        "true",
        "--delete-version-after",
        "1h",
        "--custom-metadata",
        "owner=ml",
        "--custom-metadata",
        "tier=gold",
    ])
    .ok();
    let v = s
        .run(&["kv", "metadata", "get", "--format", "json", "secret/m"])
        .json();
    assert_eq!(v["max_versions"], json!(3));
    assert_eq!(v["cas_required"], json!(true));
    // Go-style rendering ("1h0m0s") or as given: anything but the "never" default.
    assert_ne!(v["delete_version_after"], json!("0s"));
    assert_eq!(v["custom_metadata"], json!({"owner": "ml", "tier": "gold"}));

    // cas_required: a write without --cas is refused.
    s.run(&["kv", "put", "secret/m", "a=1"]).expect_code(1);
    s.run(&["kv", "put", "--cas", "0", "secret/m", "a=1"]).ok();
    s.run(&[
        "kv",
        "metadata",
        "put",
        "--cas-required",
        "false",
        "secret/m",
    ])
    .ok();
    s.run(&["kv", "put", "secret/m", "a=2"]).ok();

    let out = s.run(&["kv", "metadata", "get", "secret/m"]);
    out.ok();
    for needle in [
        "Metadata Path",
        "secret/metadata/m",
        "current_version",
        "Version 1",
        "Version 2",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {out:#?}");
    }
    // The typed client merges custom metadata with PATCH.
    s.client()
        .kv("secret")
        .metadata_patch("m", &json!({"custom_metadata": {"env": "prod"}}))
        .unwrap();
    let meta = s.client().kv("secret").metadata_get("m").unwrap();
    let custom = meta.custom_metadata.unwrap_or_default();
    assert_eq!(custom.get("env").map(String::as_str), Some("prod"));
    assert_eq!(custom.get("owner").map(String::as_str), Some("ml"));
    assert_eq!(custom.get("tier").map(String::as_str), Some("gold"));
    // The custom metadata shows in a version read too.
    let v = s.run(&["kv", "get", "--format", "json", "secret/m"]).json();
    assert_eq!(v["metadata"]["custom_metadata"]["owner"], json!("ml"));

    s.run(&["kv", "metadata", "delete", "secret/m"]).ok();
    s.run(&["kv", "get", "secret/m"]).expect_code(2);
    s.run(&["kv", "metadata", "get", "secret/m"]).expect_code(2);

    // Bad flag values are usage errors.
    s.run(&[
        "kv",
        "metadata",
        "put",
        "--cas-required",
        "maybe",
        "secret/m",
    ])
    .expect_code(2);
    s.run(&[
        "kv",
        "metadata",
        "put",
        "--custom-metadata",
        "novalue",
        "secret/m",
    ])
    .expect_code(2);
}

#[test]
fn exit_codes() {
    let s = TestServer::spawn_dev();
    // Missing secret: 2.
    let out = s.run(&["kv", "get", "secret/missing"]);
    out.expect_code(2);
    assert!(out.stderr.starts_with("Error: "), "{out:#?}");
    assert!(out.stdout.is_empty());

    // Bad token: 1, with the server's message.
    let out = run_cmd(
        s.cli_with_token(Some("not-a-valid-token"))
            .args(["kv", "get", "secret/missing"]),
        None,
    );
    out.expect_code(1);
    assert!(out.stderr.contains("permission denied"), "{out:#?}");
    assert_no_token(&out, "not-a-valid-token");
    // No token at all: 1.
    run_cmd(s.cli_with_token(None).args(["kv", "get", "secret/x"]), None).expect_code(1);

    // Usage errors: 2.
    s.run(&["kv", "put", "secret/x"]).expect_code(2);
    s.run(&["kv", "put", "secret/x", "novalue"]).expect_code(2);
    s.run(&["kv", "get"]).expect_code(2);
    s.run(&["kv", "get", "secret/"]).expect_code(2);
    s.run(&["kv", "frobnicate"]).expect_code(2);
    s.run(&["kv", "get", "--version", "abc", "secret/x"])
        .expect_code(2);
    s.run(&["kv", "get", "--token", "x", "secret/x"])
        .expect_code(2);
    s.run(&["kv", "get", "--format", "yaml", "secret/x"])
        .expect_code(2);
    s.run(&["kv", "get", "secret/a/../b"]).expect_code(2);
    s.run(&[]).expect_code(2);

    // Unreachable server: 1.
    let out = run_cmd(
        s.cli()
            .args(["kv", "get", "--address", "http://127.0.0.1:1", "secret/x"]),
        None,
    );
    out.expect_code(1);
    assert!(out.stderr.contains("connect"), "{out:#?}");
    // Bad address: usage.
    run_cmd(
        s.cli()
            .args(["kv", "get", "--address", "ftp://x", "secret/x"]),
        None,
    )
    .expect_code(2);
}

#[test]
fn help_everywhere() {
    let out = run_cmd(Command::new(ARCA).arg("--help"), None);
    out.ok();
    assert!(out.stdout.contains("Exit codes"), "{out:#?}");
    assert!(out.stdout.contains("ARCA_TOKEN"));
    for args in [
        &["kv", "--help"][..],
        &["kv", "put", "--help"],
        &["kv", "get", "--help"],
        &["kv", "patch", "--help"],
        &["kv", "list", "--help"],
        &["kv", "delete", "--help"],
        &["kv", "undelete", "--help"],
        &["kv", "destroy", "--help"],
        &["kv", "metadata", "--help"],
        &["kv", "metadata", "get", "--help"],
        &["kv", "metadata", "put", "--help"],
        &["kv", "metadata", "delete", "--help"],
        &["operator", "--help"],
        &["operator", "init", "--help"],
        &["operator", "unseal", "--help"],
        &["operator", "seal", "--help"],
        &["operator", "status", "--help"],
        &["operator", "rotate", "--help"],
        &["operator", "key-status", "--help"],
        &["server", "--help"],
    ] {
        let out = run_cmd(Command::new(ARCA).args(args), None);
        out.ok();
        assert!(out.stdout.contains("Usage: arca"), "{args:?}: {out:#?}");
        // A one-line description before the usage line.
        assert!(!out.stdout.starts_with("Usage"), "{args:?}: {out:#?}");
    }
}

#[test]
fn operator_status_seal_and_rotate() {
    let s = TestServer::spawn_dev();
    let out = s.run(&["operator", "status"]);
    out.ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["Sealed", "false"])),
        "{out:#?}"
    );
    let v = s.run(&["operator", "status", "--format", "json"]).json();
    assert_eq!(v["sealed"], json!(false));
    assert_eq!(v["initialized"], json!(true));

    // Already initialized: a server error.
    let out = s.run(&["operator", "init"]);
    out.expect_code(1);
    assert!(out.stderr.contains("already initialized"), "{out:#?}");
    s.run(&[
        "operator",
        "init",
        "--key-shares",
        "2",
        "--key-threshold",
        "3",
    ])
    .expect_code(2);

    let before = s.run(&["operator", "key-status", "--format", "json"]);
    before.ok();
    let term = before.json()["term"].as_u64().expect("term");
    let out = s.run(&["operator", "rotate"]);
    out.ok();
    assert!(out.stdout.contains("Key Term"), "{out:#?}");
    let after = s
        .run(&["operator", "key-status", "--format", "json"])
        .json();
    assert_eq!(after["term"].as_u64(), Some(term + 1));
    // Data written before the rotation still reads.
    s.run(&["kv", "put", "secret/r", "a=1"]).ok();
    s.run(&["operator", "rotate"]).ok();
    s.run(&["kv", "get", "secret/r"]).ok();

    // Seal needs a privileged token.
    run_cmd(
        s.cli_with_token(Some("bogus")).args(["operator", "seal"]),
        None,
    )
    .expect_code(1);
    let out = s.run(&["operator", "seal"]);
    out.ok();
    assert!(out.stdout.contains("sealed"), "{out:#?}");
    // Sealed: status exits 2 and still prints the table; other calls fail with 1.
    let out = s.run(&["operator", "status"]);
    out.expect_code(2);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["Sealed", "true"])),
        "{out:#?}"
    );
    let out = s.run(&["kv", "get", "secret/r"]);
    out.expect_code(1);
    assert!(out.stderr.contains("sealed"), "{out:#?}");

    // Unseal with a bad key: a server error, no key echoed back.
    let out = s.run(&["operator", "unseal", "not-a-key!"]);
    out.expect_code(1);
    let out = s.run_stdin(&["operator", "unseal"], "\n");
    out.expect_code(2);
    s.run(&["operator", "unseal", "--reset"]).ok();
}

#[test]
fn no_command_prints_the_token() {
    let s = TestServer::spawn_dev();
    let token = s.token.clone();
    assert!(!token.is_empty());
    let runs: Vec<Vec<&str>> = vec![
        vec!["kv", "put", "secret/t", "a=1"],
        vec!["kv", "get", "secret/t"],
        vec!["kv", "get", "--format", "json", "secret/t"],
        vec!["kv", "get", "secret/none"],
        vec!["kv", "patch", "secret/t", "b=2"],
        vec!["kv", "list", "secret/"],
        vec!["kv", "metadata", "get", "secret/t"],
        vec!["kv", "metadata", "put", "--max-versions", "2", "secret/t"],
        vec!["kv", "delete", "secret/t"],
        vec!["kv", "undelete", "--versions", "3", "secret/t"],
        vec!["kv", "destroy", "--versions", "1", "secret/t"],
        vec!["kv", "metadata", "delete", "secret/t"],
        vec!["kv", "put", "secret/x", "bad"],
        vec!["operator", "status"],
        vec!["operator", "key-status"],
        vec!["kv", "get", "--address", "http://127.0.0.1:1", "secret/x"],
    ];
    for args in runs {
        let out = s.run(&args);
        assert_no_token(&out, &token);
    }
}

#[test]
fn operator_init_unseal_seal() {
    let mut s = TestServer::spawn_prod();
    let out = s.run(&["operator", "status"]);
    out.expect_code(2);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["Initialized", "false"])),
        "{out:#?}"
    );

    let out = s.run(&[
        "operator",
        "init",
        "--key-shares",
        "3",
        "--key-threshold",
        "2",
        "--format",
        "json",
    ]);
    out.ok();
    let init = out.json();
    let keys: Vec<String> = init["keys_base64"]
        .as_array()
        .expect("keys_base64")
        .iter()
        .map(|k| k.as_str().expect("key").to_string())
        .collect();
    assert_eq!(keys.len(), 3);
    let hex_keys: Vec<String> = init["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k.as_str().expect("key").to_string())
        .collect();
    s.token = init["root_token"].as_str().expect("root token").to_string();

    let out = s.run(&["operator", "status"]);
    out.expect_code(2);
    assert!(out.stdout.contains("0/2"), "{out:#?}");

    // First share on the command line, progress 1/2; a reset forgets it.
    let out = s.run(&["operator", "unseal", &keys[0]]);
    out.ok();
    assert!(out.stdout.contains("1/2"), "{out:#?}");
    assert!(
        !out.stdout.contains(&keys[0]),
        "the key was echoed: {out:#?}"
    );
    let out = s.run(&["operator", "unseal", "--reset"]);
    out.ok();
    assert!(out.stdout.contains("0/2"), "{out:#?}");

    // Shares from standard input (not a terminal: read as a line), hex and base64 mixed.
    s.run_stdin(&["operator", "unseal"], &format!("{}\n", hex_keys[1]))
        .ok();
    let out = s.run_stdin(&["operator", "unseal", "-"], &format!("{}\n", keys[2]));
    out.ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["Sealed", "false"])),
        "{out:#?}"
    );
    s.run(&["operator", "status"]).ok();

    // The root token works; KV v2 is mounted at secret/.
    s.run(&["kv", "put", "secret/p", "a=1"]).ok();
    s.run(&["operator", "seal"]).ok();
    s.run(&["operator", "status"]).expect_code(2);
    s.run(&["kv", "get", "secret/p"]).expect_code(1);
    for k in &keys[..2] {
        s.run(&["operator", "unseal", k]).ok();
    }
    let out = s.run(&["kv", "get", "--field", "a", "secret/p"]);
    out.ok();
    assert_eq!(out.stdout, "1");

    // A restart comes back sealed, with the data.
    let dir = s.into_data_dir();
    let config = dir.path().join("arca-test.toml");
    let config = config.to_string_lossy().into_owned();
    let mut s = TestServer::spawn_with_args(
        dir,
        &["server", "--config", &config, "--listen", "127.0.0.1:0"],
    );
    s.token = init["root_token"].as_str().expect("root token").to_string();
    s.run(&["operator", "status"]).expect_code(2);
    for k in &keys[1..] {
        s.run(&["operator", "unseal", k]).ok();
    }
    let out = s.run(&["kv", "get", "--field", "a", "secret/p"]);
    out.ok();
    assert_eq!(out.stdout, "1");
}

#[test]
fn tls_with_ca_cert() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    let certs = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let ca_pem = certs.path().join("ca.pem");
    let crt = certs.path().join("server.crt");
    let key = certs.path().join("server.key");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&crt, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let config = certs.path().join("arca.toml");
    std::fs::write(
        &config,
        format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
            crt.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = config.to_string_lossy().into_owned();
    let s = TestServer::spawn_with_args(
        dir,
        &["server", "--config", &config, "--listen", "127.0.0.1:0"],
    );
    assert!(s.addr.starts_with("https://"), "{}", s.addr);
    let ca_arg = ca_pem.to_string_lossy().into_owned();

    // Unknown issuer without the CA: a connection error (1).
    let out = s.run(&["operator", "status"]);
    out.expect_code(1);
    // With --ca-cert, or ARCA_CACERT: the (uninitialized, so sealed) status, exit 2.
    let out = s.run(&["operator", "status", "--ca-cert", &ca_arg]);
    out.expect_code(2);
    assert!(out.stdout.contains("Initialized"), "{out:#?}");
    let out = run_cmd(
        s.cli()
            .env("ARCA_CACERT", &ca_arg)
            .args(["operator", "status"]),
        None,
    );
    out.expect_code(2);
}

#[test]
fn vault_environment_fallback() {
    let s = TestServer::spawn_dev();
    s.run(&["kv", "put", "secret/v", "a=1"]).ok();
    // VAULT_ADDR / VAULT_TOKEN when the ARCA_ variables are absent.
    let mut cmd = Command::new(ARCA);
    cmd.env_remove("ARCA_ADDR")
        .env_remove("ARCA_TOKEN")
        .env("VAULT_ADDR", &s.addr)
        .env("VAULT_TOKEN", &s.token)
        .args(["kv", "get", "--field", "a", "secret/v"]);
    let out = run_cmd(&mut cmd, None);
    out.ok();
    assert_eq!(out.stdout, "1");
    // ARCA_TOKEN wins over VAULT_TOKEN.
    let out = run_cmd(
        s.cli()
            .env("VAULT_TOKEN", "wrong")
            .args(["kv", "get", "--field", "a", "secret/v"]),
        None,
    );
    out.ok();
}

/// `arca run`: the command gets the secrets as variables (and not the token), keeps its exit
/// code; clashes, missing secrets, denied reads and a missing command fail before anything runs.
#[test]
fn run_exports_secrets_to_the_command() {
    let s = TestServer::spawn_dev();
    s.run(&[
        "kv",
        "put",
        "secret/db/prod",
        "username=app",
        "password=p@ss w=1",
    ])
    .ok();
    s.run(&["kv", "put", "secret/api/stripe", "key=sk_live_1", "user=x"])
        .ok();
    let out = s.run(&[
        "run",
        "--secret",
        "DB=secret/db/prod",
        "--secret",
        "STRIPE=secret/api/stripe",
        "--",
        "sh",
        "-c",
        "printf '%s|%s|%s|%s|%s' \"$DB_USERNAME\" \"$DB_PASSWORD\" \"$STRIPE_KEY\" \"${ARCA_TOKEN:-none}\" \"$STRIPE_USER\"; exit 7",
    ]);
    out.expect_code(7);
    assert_eq!(out.stdout, "app|p@ss w=1|sk_live_1|none|x");
    assert_no_token(&out, &s.token);

    // Without a prefix, `key` is KEY, which the environment has: refused (or --override).
    let out = run_cmd(
        s.cli()
            .env("KEY", "preset")
            .args(["run", "--secret", "secret/api/stripe", "--", "true"]),
        None,
    );
    out.expect_code(2);
    assert!(out.stderr.contains("KEY"), "{out:#?}");
    assert!(!out.stderr.contains("sk_live_1"), "{out:#?}");
    let out = run_cmd(
        s.cli().env("KEY", "preset").args([
            "run",
            "--override",
            "--secret",
            "secret/api/stripe",
            "--",
            "sh",
            "-c",
            "printf %s \"$KEY\"",
        ]),
        None,
    );
    out.ok();
    assert_eq!(out.stdout, "sk_live_1");
    // Two secrets giving the same variable: refused, nothing runs.
    s.run(&["kv", "put", "secret/db/other", "username=b"]).ok();
    let out = s.run(&[
        "run",
        "-s",
        "secret/db/prod",
        "-s",
        "secret/db/other",
        "--",
        "sh",
        "-c",
        "echo ran",
    ]);
    out.expect_code(2);
    assert!(!out.stdout.contains("ran"));
    // A missing secret is "not found" (2); a token without read is refused (1).
    let out = s.run(&["run", "-s", "X=secret/nope", "--", "true"]);
    out.expect_code(2);
    s.run(&["kv", "put", "secret/other/x", "a=b"]).ok();
    let c = s.client();
    let r = c
        .request(
            "PUT",
            "/v1/sys/policies/acl/db-only",
            Some(&json!({"policy": "path \"secret/data/db/*\" { capabilities = [\"read\"] }"})),
        )
        .unwrap();
    assert_eq!(r.status, 204);
    let t = c
        .request(
            "POST",
            "/v1/auth/token/create",
            Some(&json!({"policies": ["db-only"]})),
        )
        .unwrap();
    let job = t.json().unwrap()["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let out = run_cmd(
        Command::new(ARCA)
            .env("ARCA_ADDR", &s.addr)
            .env("ARCA_TOKEN", &job)
            .args(["run", "-s", "X=secret/other/x", "--", "true"]),
        None,
    );
    out.expect_code(1);
    assert!(out.stderr.contains("permission denied"), "{out:#?}");
    let out = run_cmd(
        Command::new(ARCA)
            .env("ARCA_ADDR", &s.addr)
            .env("ARCA_TOKEN", &job)
            .args([
                "run",
                "-s",
                "X=secret/db/prod",
                "--",
                "sh",
                "-c",
                "printf %s \"$X_USERNAME\"",
            ]),
        None,
    );
    out.ok();
    assert_eq!(out.stdout, "app");
    // A command that does not exist: 127, as a shell says.
    let out = s.run(&["run", "-s", "X=secret/db/prod", "--", "/nonexistent/cmd"]);
    out.expect_code(127);
    // No command at all is a usage error.
    s.run(&["run", "-s", "X=secret/db/prod"]).expect_code(2);
}
