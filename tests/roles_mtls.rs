//! Integration tests of the roles file (load, token roles, reload over HTTP and SIGHUP) and of
//! mTLS logins (`auth/cert/login`) against the real server binary.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arca::client::{ApiResponse, Client};
use common::TestServer;
use serde_json::{json, Value};

const INVALID_CERT: &str = "invalid certificate or no client certificate supplied";

fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("arca-roles-")
        .tempdir()
        .unwrap()
}

fn example_roles() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/roles.toml"))
        .unwrap()
}

fn body(r: &ApiResponse) -> Value {
    r.json().unwrap_or(Value::Null)
}

#[track_caller]
fn status(c: &Client, method: &str, path: &str, b: Option<Value>) -> u16 {
    c.request(method, path, b.as_ref()).unwrap().status
}

/// A token of token role `role`, created by `c`.
#[track_caller]
fn role_token(c: &Client, role: &str) -> Client {
    let r = c
        .request(
            "POST",
            &format!("/v1/auth/token/create/{role}"),
            Some(&json!({})),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let t = body(&r)["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    c.with_token(Some(t))
}

fn role_names(c: &Client) -> Vec<String> {
    let r = c.request("GET", "/v1/sys/roles", None).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    body(&r)["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Polls until `f` holds (or panics after 15 s).
#[track_caller]
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A dev server whose roles file is a copy of the shipped example in `dir`.
fn dev_with_roles() -> (TestServer, PathBuf) {
    let dir = temp();
    let roles = dir.path().join("roles.toml");
    std::fs::write(&roles, example_roles()).unwrap();
    let roles_s = roles.to_string_lossy().into_owned();
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
        &[("ARCA_ROLES_FILE", &roles_s)],
    );
    (srv, roles)
}

#[test]
fn example_roles_grant_exactly_their_rules() {
    let (srv, _roles) = dev_with_roles();
    let root = srv.client();
    let mut names = role_names(&root);
    names.sort();
    assert_eq!(
        names,
        [
            "compliance-officer",
            "data-scientist",
            "mlops-engineer",
            "service-account"
        ]
    );
    let listed = body(&root.request("GET", "/v1/sys/roles", None).unwrap());
    assert_eq!(
        listed["data"]["roles"]["service-account"]["token_policies"],
        json!(["role-service-account"])
    );
    assert_eq!(listed["data"]["roles"]["service-account"]["token_ttl"], 900);
    // the generated policy and token role are ordinary ones
    let p = body(
        &root
            .request("GET", "/v1/sys/policies/acl/role-service-account", None)
            .unwrap(),
    );
    assert!(
        p["data"]["policy"]
            .as_str()
            .unwrap()
            .contains("secret/data/pipelines/etl/*"),
        "{p}"
    );
    let tr = body(
        &root
            .request("GET", "/v1/auth/token/roles/service-account", None)
            .unwrap(),
    );
    assert_eq!(
        tr["data"]["allowed_policies"],
        json!(["role-service-account"])
    );

    for (path, v) in [
        ("/v1/secret/data/pipelines/etl/db", "etl-pass"),
        ("/v1/secret/data/datasets/x", "dataset-key"),
    ] {
        assert_eq!(
            status(&root, "PUT", path, Some(json!({"data": {"v": v}}))),
            200
        );
    }

    // service-account: reads its pipeline's credentials and nothing else
    let sa = role_token(&root, "service-account");
    let me = body(
        &sa.request("GET", "/v1/auth/token/lookup-self", None)
            .unwrap(),
    );
    assert_eq!(
        me["data"]["policies"],
        json!(["default", "role-service-account"])
    );
    assert_eq!(me["data"]["role"], "service-account");
    assert!(me["data"]["ttl"].as_u64().unwrap() <= 900);
    let r = sa
        .request("GET", "/v1/secret/data/pipelines/etl/db", None)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(body(&r)["data"]["data"]["v"], "etl-pass");
    assert_eq!(status(&sa, "GET", "/v1/secret/data/datasets/x", None), 403);
    assert_eq!(
        status(
            &sa,
            "PUT",
            "/v1/secret/data/pipelines/etl/db",
            Some(json!({"data": {"v": "x"}}))
        ),
        403
    );
    // no child with more policies, no other role's token, no roles admin
    assert_eq!(
        status(
            &sa,
            "POST",
            "/v1/auth/token/create",
            Some(json!({"policies": ["role-data-scientist"]}))
        ),
        403
    );
    assert_eq!(
        status(
            &sa,
            "POST",
            "/v1/auth/token/create/data-scientist",
            Some(json!({}))
        ),
        403
    );
    assert_eq!(status(&sa, "GET", "/v1/sys/roles", None), 403);
    assert_eq!(status(&sa, "PUT", "/v1/sys/roles/reload", None), 403);
    // the role's token role refuses policies outside the role
    assert_eq!(
        status(
            &root,
            "POST",
            "/v1/auth/token/create/service-account",
            Some(json!({"policies": ["role-data-scientist"]}))
        ),
        400
    );

    // compliance-officer: metadata yes, values never
    let co = role_token(&root, "compliance-officer");
    assert_eq!(
        status(&co, "GET", "/v1/secret/metadata/datasets/x", None),
        200
    );
    assert_eq!(
        status(&co, "LIST", "/v1/secret/metadata/datasets", None),
        200
    );
    assert_eq!(status(&co, "GET", "/v1/secret/data/datasets/x", None), 403);
    assert_eq!(
        status(&co, "GET", "/v1/secret/data/pipelines/etl/db", None),
        403
    );

    // data-scientist: read/write datasets, list their metadata, not the pipeline
    let ds = role_token(&root, "data-scientist");
    assert_eq!(
        status(
            &ds,
            "PUT",
            "/v1/secret/data/datasets/y",
            Some(json!({"data": {"v": "1"}}))
        ),
        200
    );
    assert_eq!(status(&ds, "GET", "/v1/secret/data/datasets/x", None), 200);
    assert_eq!(
        status(&ds, "LIST", "/v1/secret/metadata/datasets", None),
        200
    );
    assert_eq!(
        status(&ds, "GET", "/v1/secret/data/pipelines/etl/db", None),
        403
    );

    // plain HTTP: no certificate, no token
    let r = srv
        .client_without_token()
        .request("POST", "/v1/auth/cert/login", Some(&json!({})))
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(body(&r), json!({"errors": [INVALID_CERT]}));
}

#[test]
fn reload_over_http_and_sighup_changes_new_tokens_and_rejects_bad_files() {
    let (srv, roles) = dev_with_roles();
    let root = srv.client();
    assert_eq!(
        status(
            &root,
            "PUT",
            "/v1/secret/data/datasets/x",
            Some(json!({"data": {"v": "1"}}))
        ),
        200
    );
    let sa_before = role_token(&root, "service-account");
    assert_eq!(
        status(&sa_before, "GET", "/v1/secret/data/datasets/x", None),
        403
    );

    // edit: service-account may also read datasets; compliance-officer leaves the file
    let edited = example_roles()
        .replace(
            "\"secret/data/pipelines/etl/*\" = [\"read\"]",
            "\"secret/data/pipelines/etl/*\" = [\"read\"]\n\"secret/data/datasets/*\" = [\"read\"]",
        )
        .replace(
            "[roles.compliance-officer.rules]",
            "[roles.compliance-officer-gone.rules]",
        )
        .replace(
            "[roles.compliance-officer]",
            "[roles.compliance-officer-gone]",
        );
    std::fs::write(&roles, &edited).unwrap();
    // reloading needs sudo: a token with update but no sudo on the path is refused
    assert_eq!(
        status(
            &root,
            "PUT",
            "/v1/sys/policies/acl/reloader",
            Some(json!({"policy": "path \"sys/roles/reload\" { capabilities = [\"update\"] }"}))
        ),
        204
    );
    let r = root
        .request(
            "POST",
            "/v1/auth/token/create",
            Some(&json!({"policies": ["reloader"]})),
        )
        .unwrap();
    let no_sudo = root.with_token(Some(
        body(&r)["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_string(),
    ));
    assert_eq!(status(&no_sudo, "PUT", "/v1/sys/roles/reload", None), 403);
    assert!(role_names(&root).contains(&"compliance-officer".to_string()));

    let r = root.request("PUT", "/v1/sys/roles/reload", None).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let names = role_names(&root);
    assert!(names.contains(&"compliance-officer-gone".to_string()));
    assert!(!names.contains(&"compliance-officer".to_string()));
    // with sudo it works, also for a token on its one and only use
    assert_eq!(
        status(
            &root,
            "PUT",
            "/v1/sys/policies/acl/reloader-sudo",
            Some(
                json!({"policy": "path \"sys/roles/reload\" { capabilities = [\"update\", \"sudo\"] }"})
            )
        ),
        204
    );
    let r = root
        .request(
            "POST",
            "/v1/auth/token/create",
            Some(&json!({"policies": ["reloader-sudo"], "num_uses": 1})),
        )
        .unwrap();
    let once = root.with_token(Some(
        body(&r)["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_string(),
    ));
    assert_eq!(status(&once, "PUT", "/v1/sys/roles/reload", None), 200);
    assert_eq!(status(&once, "PUT", "/v1/sys/roles/reload", None), 403);
    let sa_after = role_token(&root, "service-account");
    assert_eq!(
        status(&sa_after, "GET", "/v1/secret/data/datasets/x", None),
        200
    );
    assert_eq!(
        status(
            &root,
            "POST",
            "/v1/auth/token/create/compliance-officer",
            Some(json!({}))
        ),
        400,
        "the removed role's token role is gone"
    );
    assert_eq!(
        status(
            &root,
            "GET",
            "/v1/sys/policies/acl/role-compliance-officer",
            None
        ),
        404
    );
    // idempotent
    let r = body(&root.request("PUT", "/v1/sys/roles/reload", None).unwrap());
    assert_eq!(r["data"]["written"], json!([]));
    assert_eq!(r["data"]["removed"], json!([]));

    // a malformed file: 400 naming the role and field, nothing changes
    let before =
        body(&root.request("GET", "/v1/sys/roles", None).unwrap())["data"]["roles"].clone();
    std::fs::write(
        &roles,
        edited.replace("token_ttl = \"15m\"", "token_ttl = \"fifteen minutes\""),
    )
    .unwrap();
    let r = root.request("PUT", "/v1/sys/roles/reload", None).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let err = r.errors().join(" ");
    assert!(
        err.contains("role \"service-account\"") && err.contains("token_ttl"),
        "{err}"
    );
    assert_eq!(
        body(&root.request("GET", "/v1/sys/roles", None).unwrap())["data"]["roles"],
        before
    );
    assert_eq!(
        status(&sa_after, "GET", "/v1/secret/data/datasets/x", None),
        200
    );

    // SIGHUP: a bad file is logged and changes nothing; a good one is applied
    let hup = || {
        let st = std::process::Command::new("kill")
            .args(["-HUP", &srv.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    hup();
    eventually("the SIGHUP rejection in the log", || {
        srv.output().contains("roles file rejected")
    });
    assert_eq!(
        body(&root.request("GET", "/v1/sys/roles", None).unwrap())["data"]["roles"],
        before
    );
    std::fs::write(
        &roles,
        format!(
            "{}\n[roles.nightly]\nrules = {{ \"secret/data/nightly/*\" = [\"read\"] }}\n",
            example_roles()
        ),
    )
    .unwrap();
    hup();
    eventually("the SIGHUP reload", || {
        role_names(&root).contains(&"nightly".to_string())
    });
    let names = role_names(&root);
    assert!(names.contains(&"compliance-officer".to_string()));
    assert!(!names.contains(&"compliance-officer-gone".to_string()));
    let sa = role_token(&root, "service-account");
    assert_eq!(status(&sa, "GET", "/v1/secret/data/datasets/x", None), 403);
    assert_eq!(
        status(&root, "GET", "/v1/sys/health", None),
        200,
        "still serving after SIGHUPs"
    );
    // tokens never reach the log
    let out = srv.output();
    for c in [&sa, &sa_after, &no_sudo] {
        let t = body(
            &c.request("GET", "/v1/auth/token/lookup-self", None)
                .unwrap(),
        )["data"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!out.contains(&t));
    }
}

#[test]
fn a_malformed_roles_file_stops_the_start() {
    let dir = temp();
    let roles = dir.path().join("roles.toml");
    std::fs::write(&roles, "[roles.a]\nrules = { \"x/*\" = [\"raed\"] }\n").unwrap();
    let out = std::process::Command::new(common::ARCA)
        .args(["server", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("ARCA_ROLES_FILE", &roles)
        .env_remove("ARCA_DEV_ROOT_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("role \"a\"") && err.contains("raed"), "{err}");
}

// ------------------------------------------------------------------------------ mTLS

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

    /// A client certificate + key, PEM, for reqwest's `Identity`.
    fn client(&self, cn: &str, dns: &[&str], expired: bool) -> Vec<u8> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem()).into_bytes()
    }
}

fn tls_client(ca_pem: &str, identity: Option<&[u8]>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10));
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id).unwrap());
    }
    b.build().unwrap()
}

fn cert_login(
    c: &reqwest::blocking::Client,
    addr: &str,
    body: Value,
) -> reqwest::Result<(u16, Value)> {
    let r = c
        .post(format!("{addr}/v1/auth/cert/login"))
        .json(&body)
        .send()?;
    let st = r.status().as_u16();
    Ok((st, r.json().unwrap_or(Value::Null)))
}

#[test]
fn mtls_login_maps_verified_certificates_to_roles() {
    let dir = temp();
    let d = dir.path().to_path_buf();
    let server_pki = Pki::new("arca test server CA");
    let client_pki = Pki::new("arca test client CA");
    let other_pki = Pki::new("somebody else's CA");
    let skey = rcgen::KeyPair::generate().unwrap();
    let scert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&skey, &server_pki.ca, &server_pki.ca_key)
            .unwrap();
    std::fs::write(d.join("server.crt"), scert.pem()).unwrap();
    std::fs::write(d.join("server.key"), skey.serialize_pem()).unwrap();
    std::fs::write(d.join("client-ca.pem"), client_pki.ca.pem()).unwrap();
    std::fs::write(d.join("roles.toml"), example_roles()).unwrap();
    std::fs::write(d.join("unseal.key"), hex::encode([9u8; 32])).unwrap();
    let cfg = d.join("arca.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ntls_cert_file = \"{0}/server.crt\"\ntls_key_file = \"{0}/server.key\"\ntls_client_ca_file = \"{0}/client-ca.pem\"\nroles_file = \"{0}/roles.toml\"\nauto_unseal_key_file = \"{0}/unseal.key\"\n",
            d.display()
        ),
    )
    .unwrap();
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), server_pki.ca.pem()).unwrap();
    let cfg = cfg.to_string_lossy().into_owned();
    let srv = TestServer::spawn_with_args(dir, &["server", "--config", &cfg]);
    assert!(srv.addr.starts_with("https://"), "{}", srv.addr);

    // init (auto-unseal: unsealed at once); the roles file is applied at that unseal
    let anon = Client::new(&srv.addr, None, Some(ca_file.path())).unwrap();
    let init = body(
        &anon
            .request(
                "PUT",
                "/v1/sys/init",
                Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .unwrap(),
    );
    let root = anon.with_token(Some(init["root_token"].as_str().unwrap().to_string()));
    eventually("the roles file applied at unseal", || {
        role_names(&root).len() == 4
    });
    assert_eq!(
        status(
            &root,
            "PUT",
            "/v1/secret/data/pipelines/etl/db",
            Some(json!({"data": {"v": "etl-pass"}}))
        ),
        200
    );

    let ca_pem = server_pki.ca.pem();
    let addr = srv.addr.clone();

    // a certificate whose CN the service-account role maps
    let worker = client_pki.client("w1.etl.pipelines.ml.internal", &[], false);
    let c = tls_client(&ca_pem, Some(&worker));
    let (st, b) = cert_login(&c, &addr, json!({})).unwrap();
    assert_eq!(st, 200, "{b}");
    let auth = &b["auth"];
    assert_eq!(auth["policies"], json!(["default", "role-service-account"]));
    assert_eq!(
        auth["metadata"]["common_name"],
        "w1.etl.pipelines.ml.internal"
    );
    assert_eq!(auth["metadata"]["role"], "service-account");
    assert!(auth["lease_duration"].as_u64().unwrap() <= 900);
    let tok = root.with_token(Some(auth["client_token"].as_str().unwrap().to_string()));
    let me = body(
        &tok.request("GET", "/v1/auth/token/lookup-self", None)
            .unwrap(),
    );
    assert_eq!(
        me["data"]["display_name"],
        "cert-w1-etl-pipelines-ml-internal"
    );
    assert_eq!(me["data"]["path"], "auth/cert/login");
    assert_eq!(me["data"]["orphan"], true);
    assert_eq!(
        body(
            &tok.request("GET", "/v1/secret/data/pipelines/etl/db", None)
                .unwrap()
        )["data"]["data"]["v"],
        "etl-pass"
    );
    assert_eq!(status(&tok, "GET", "/v1/secret/data/datasets/x", None), 403);
    // naming the role works; naming a role that does not map the certificate does not
    let (st, _) = cert_login(&c, &addr, json!({"name": "service-account"})).unwrap();
    assert_eq!(st, 200);
    let (st, b) = cert_login(&c, &addr, json!({"name": "mlops-engineer"})).unwrap();
    assert_eq!((st, b), (400, json!({"errors": [INVALID_CERT]})));

    // a DNS SAN mapping (mlops-engineer)
    let deployer = client_pki.client("deploy-bot", &["deployer.ml.internal"], false);
    let (st, b) = cert_login(&tls_client(&ca_pem, Some(&deployer)), &addr, json!({})).unwrap();
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["auth"]["policies"],
        json!(["default", "role-mlops-engineer"])
    );

    // a trusted certificate that no role maps
    let nobody = client_pki.client("nobody.example", &["nobody.example"], false);
    let (st, b) = cert_login(&tls_client(&ca_pem, Some(&nobody)), &addr, json!({})).unwrap();
    assert_eq!((st, b), (400, json!({"errors": [INVALID_CERT]})));
    // two labels under the wildcard do not match
    let deep = client_pki.client("a.w1.etl.pipelines.ml.internal", &[], false);
    let (st, _) = cert_login(&tls_client(&ca_pem, Some(&deep)), &addr, json!({})).unwrap();
    assert_eq!(st, 400);

    // no client certificate at all
    let (st, b) = cert_login(&tls_client(&ca_pem, None), &addr, json!({})).unwrap();
    assert_eq!((st, b), (400, json!({"errors": [INVALID_CERT]})));
    // ... while the rest of the API works without one
    assert_eq!(
        tls_client(&ca_pem, None)
            .get(format!("{addr}/v1/sys/health"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // the right names from another CA: the handshake fails, no answer at all
    let forged = other_pki.client("w1.etl.pipelines.ml.internal", &[], false);
    assert!(cert_login(&tls_client(&ca_pem, Some(&forged)), &addr, json!({})).is_err());
    // an expired certificate of the right CA: the handshake fails too
    let expired = client_pki.client("w1.etl.pipelines.ml.internal", &[], true);
    assert!(cert_login(&tls_client(&ca_pem, Some(&expired)), &addr, json!({})).is_err());

    // the log says who logged in, never the token
    let t = auth["client_token"].as_str().unwrap();
    assert!(!srv.output().contains(t));
    assert!(srv.output().contains("certificate login"));
}
