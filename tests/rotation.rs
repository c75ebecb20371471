//! Rotation against the real binary, a private PostgreSQL cluster (SCRAM auth, so a login test
//! proves something) and the machine's MariaDB. Crash points use the test-only
//! `ARCA_TEST_CRASH_AT`, fake time the test-only `ARCA_TEST_CLOCK_OFFSET_SECS`.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, DEV_ROOT_TOKEN};
use serde_json::{json, Value};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const PG_ADMIN_PW: &str = "admin-pw-Zx9";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A private PostgreSQL 15 cluster with scram-sha-256 for every connection; stopped on drop.
struct Pg {
    dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Pg {
    fn start() -> Pg {
        let dir = tempfile::Builder::new()
            .prefix("arca-pg-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PG_ADMIN_PW).unwrap();
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/initdb"))
            .args(["--auth=scram-sha-256", "-U", "postgres", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {out:?}");
        let mut pg = Pg {
            dir,
            data,
            port: free_port(),
            child: None,
        };
        pg.run();
        pg
    }

    fn run(&mut self) {
        let child = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.login("postgres", PG_ADMIN_PW) {
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fast shutdown (SIGINT to the postmaster).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{PG_BIN}/pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn login(&self, user: &str, pw: &str) -> bool {
        let port = self.port;
        rt().block_on(async move {
            let mut cfg = tokio_postgres::Config::new();
            cfg.host("127.0.0.1")
                .port(port)
                .user(user)
                .password(pw)
                .dbname("postgres")
                .connect_timeout(Duration::from_secs(3));
            match cfg.connect(tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    client.simple_query("SELECT 1").await.is_ok()
                }
                Err(_) => false,
            }
        })
    }

    fn exec(&self, sql: &str) {
        let port = self.port;
        let sql = sql.to_string();
        rt().block_on(async move {
            let mut cfg = tokio_postgres::Config::new();
            cfg.host("127.0.0.1")
                .port(port)
                .user("postgres")
                .password(PG_ADMIN_PW)
                .dbname("postgres");
            let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client.batch_execute(&sql).await.unwrap();
        })
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

const FAST_ENV: &[(&str, &str)] = &[
    ("ARCA_ROTATION_JITTER_WINDOW", "0s"),
    ("ARCA_ROTATION_TEST_LOGIN_DELAY_MS", "50"),
    ("ARCA_ROTATION_TEST_LOGIN_ATTEMPTS", "3"),
    ("ARCA_ROTATION_BACKOFF", "1s"),
    ("ARCA_ROTATION_BACKOFF_MAX", "1s"),
    ("ARCA_ROTATION_MAX_ATTEMPTS", "2"),
    ("ARCA_ROTATION_RECONCILE_INTERVAL", "1s"),
    ("ARCA_ROTATION_DB_TIMEOUT", "3s"),
];

fn spawn(dir: tempfile::TempDir, extra: &[(&str, &str)]) -> TestServer {
    let mut env: Vec<(&str, &str)> = FAST_ENV.to_vec();
    env.extend_from_slice(extra);
    TestServer::spawn_with_args_env(
        dir,
        &[
            "server",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--dev-root-token",
            DEV_ROOT_TOKEN,
        ],
        &env,
    )
}

fn req(s: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let r = s.client().request(method, path, body.as_ref()).unwrap();
    (r.status, r.json().unwrap_or(Value::Null))
}

fn put_secret(s: &TestServer, path: &str, data: Value) {
    let (st, b) = req(
        s,
        "POST",
        &format!("/v1/secret/data/{path}"),
        Some(json!({ "data": data })),
    );
    assert_eq!(st, 200, "{b}");
}

fn read_secret(s: &TestServer, path: &str, version: Option<u64>) -> (u64, Value) {
    let q = version.map(|v| format!("?version={v}")).unwrap_or_default();
    let (st, b) = req(s, "GET", &format!("/v1/secret/data/{path}{q}"), None);
    assert_eq!(st, 200, "{b}");
    (
        b["data"]["metadata"]["version"].as_u64().unwrap(),
        b["data"]["data"].clone(),
    )
}

fn set_policy(s: &TestServer, path: &str, policy: Value) {
    let (st, b) = req(
        s,
        "PUT",
        &format!("/v1/secret/rotation/{path}"),
        Some(policy),
    );
    assert_eq!(st, 204, "{b}");
}

fn rotate(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    req(s, "POST", &format!("/v1/secret/rotate/{path}"), Some(body))
}

fn state(s: &TestServer, path: &str) -> Value {
    let (st, b) = req(s, "GET", &format!("/v1/secret/rotation/{path}"), None);
    assert_eq!(st, 200, "{b}");
    b["data"].clone()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pw(v: &Value) -> String {
    v["password"].as_str().unwrap().to_string()
}

const HOSTILE: &str = "app\"; DROP ROLE postgres; -- $$ x' y";

#[test]
fn postgres_single_user_hostile_name_and_kill9_at_every_step() {
    let pg = Pg::start();
    pg.exec(&format!(
        "CREATE ROLE {} LOGIN PASSWORD 'start-pw'",
        pg_ident(HOSTILE)
    ));
    assert!(pg.login(HOSTILE, "start-pw"));
    let mut s = spawn(tempfile::tempdir().unwrap(), &[]);
    put_secret(
        &s,
        "db/prod",
        json!({"username": HOSTILE, "password": "start-pw"}),
    );
    set_policy(
        &s,
        "db/prod",
        json!({"target":"postgres","connection":{"host":"127.0.0.1","port":pg.port,"username":HOSTILE}}),
    );
    // happy path: the new password logs in, the old one no longer does
    let (st, b) = rotate(&s, "db/prod", json!({}));
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["data"]["version"], 2);
    let (_, cur) = read_secret(&s, "db/prod", None);
    assert!(pg.login(HOSTILE, &pw(&cur)));
    assert!(!pg.login(HOSTILE, "start-pw"));
    assert!(pg.login("postgres", PG_ADMIN_PW), "no injection");
    let (_, prev) = read_secret(&s, "db/prod", Some(1));
    assert_eq!(pw(&prev), "start-pw");
    assert!(
        !s.output().contains(&pw(&cur)),
        "password in the server log"
    );

    let mut version = 2;
    for step in ["pending", "set", "tested", "promoted"] {
        let dir = s.into_data_dir();
        s = spawn(dir, &[("ARCA_TEST_CRASH_AT", step)]);
        let r = s
            .client()
            .request("POST", "/v1/secret/rotate/db/prod", Some(&json!({})));
        assert!(
            r.is_err() || r.as_ref().unwrap().status != 200,
            "{step}: {r:?}"
        );
        assert!(
            s.wait_exit(Duration::from_secs(10)).is_some(),
            "{step}: server aborted"
        );
        let dir = s.into_data_dir();
        s = spawn(dir, &[]);
        // the reconciler resumes at start (or there was nothing left to do after `promoted`)
        wait_for(
            &format!("resume after {step}"),
            Duration::from_secs(30),
            || state(&s, "db/prod")["state"] == "idle",
        );
        let (v, cur) = read_secret(&s, "db/prod", None);
        assert_eq!(v, version + 1, "{step}: exactly one new version");
        version = v;
        assert!(
            pg.login(HOSTILE, &pw(&cur)),
            "{step}: current credential logs in"
        );
    }
    let (st, b) = req(&s, "GET", "/v1/sys/rotation/status", None);
    assert_eq!(st, 200);
    assert_eq!(b["data"]["secrets"][0]["state"], "idle");
}

#[test]
fn postgres_alternating_users_keep_previous_and_concurrent_triggers_rotate_once() {
    let pg = Pg::start();
    let (u1, u2) = ("alt a'1; $$", "alt \"b\" 2");
    pg.exec(&format!(
        "CREATE ROLE {} LOGIN PASSWORD 'p1'; CREATE ROLE {} LOGIN PASSWORD 'unused'",
        pg_ident(u1),
        pg_ident(u2)
    ));
    let s = spawn(tempfile::tempdir().unwrap(), &[]);
    put_secret(
        &s,
        "pg/admin",
        json!({"username":"postgres","password":PG_ADMIN_PW}),
    );
    put_secret(&s, "db/alt", json!({"username": u1, "password": "p1"}));
    set_policy(
        &s,
        "db/alt",
        json!({"target":"postgres","strategy":"alternating-users","connection":{"host":"127.0.0.1","port":pg.port,"users":[u1,u2],"admin_secret":"pg/admin"}}),
    );
    assert_eq!(rotate(&s, "db/alt", json!({})).0, 200);
    let (_, cur) = read_secret(&s, "db/alt", None);
    assert_eq!(cur["username"], u2);
    assert!(pg.login(u2, &pw(&cur)));
    assert!(pg.login(u1, "p1"), "previous credential still works");
    // two manual triggers at once: one rotates, the other sees the lease
    let (a, b) = std::thread::scope(|sc| {
        let t1 = sc.spawn(|| rotate(&s, "db/alt", json!({})).0);
        let t2 = sc.spawn(|| rotate(&s, "db/alt", json!({})).0);
        (t1.join().unwrap(), t2.join().unwrap())
    });
    let mut codes = [a, b];
    codes.sort();
    assert!(codes == [200, 409] || codes == [200, 200], "{codes:?}");
    let (v, cur2) = read_secret(&s, "db/alt", None);
    let expected = if codes == [200, 409] { 3 } else { 4 };
    assert_eq!(v, expected);
    assert!(pg.login(cur2["username"].as_str().unwrap(), &pw(&cur2)));
    let (_, prev) = read_secret(&s, "db/alt", Some(v - 1));
    assert!(pg.login(prev["username"].as_str().unwrap(), &pw(&prev)));
}

#[test]
fn postgres_down_retries_then_failed_then_resume() {
    let mut pg = Pg::start();
    pg.exec("CREATE ROLE app LOGIN PASSWORD 'pw0'");
    let s = spawn(tempfile::tempdir().unwrap(), &[]);
    put_secret(&s, "db/down", json!({"username":"app","password":"pw0"}));
    set_policy(
        &s,
        "db/down",
        json!({"target":"postgres","connection":{"host":"127.0.0.1","port":pg.port,"username":"app"}}),
    );
    pg.stop();
    let (st, b) = rotate(&s, "db/down", json!({}));
    assert_eq!(st, 502, "{b}");
    // the reconciler retries after the backoff, then stops in `failed`
    wait_for("failed state", Duration::from_secs(20), || {
        state(&s, "db/down")["state"] == "failed"
    });
    let st8 = state(&s, "db/down");
    assert!(!st8["last_error"].as_str().unwrap().is_empty());
    let m = s
        .client()
        .request("GET", "/v1/sys/rotation/metrics", None)
        .unwrap();
    assert!(m.body.contains("arca_rotation_failed 1"), "{}", m.body);
    let (_, b) = req(&s, "GET", "/v1/sys/rotation/status", None);
    assert_eq!(b["data"]["failed"], 1);
    assert_eq!(read_secret(&s, "db/down", None).0, 1);
    pg.run();
    let (st, b) = rotate(&s, "db/down", json!({"resume": true}));
    assert_eq!(st, 200, "{b}");
    let (_, cur) = read_secret(&s, "db/down", None);
    assert!(pg.login("app", &pw(&cur)));
    assert!(!pg.login("app", "pw0"));
}

fn mysql(sql: &str) {
    let out = Command::new("mariadb")
        .args(["-uroot", "-h127.0.0.1", "-P3306", "-e", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {out:?}");
}

fn my_login(user: &str, pw: &str) -> bool {
    let (user, pw) = (user.to_string(), pw.to_string());
    rt().block_on(async move {
        use mysql_async::prelude::Queryable;
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(3306)
            .user(Some(user))
            .pass(Some(pw))
            .prefer_socket(false);
        match mysql_async::Conn::new(opts).await {
            Ok(mut c) => {
                let ok = c.query_drop("SELECT 1").await.is_ok();
                let _ = c.disconnect().await;
                ok
            }
            Err(_) => false,
        }
    })
}

fn my_q(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

struct MyUsers(Vec<String>);
impl Drop for MyUsers {
    fn drop(&mut self) {
        for u in &self.0 {
            let _ = Command::new("mariadb")
                .args(["-uroot", "-h127.0.0.1", "-P3306", "-e"])
                .arg(format!("DROP USER IF EXISTS {}@'%'", my_q(u)))
                .output();
        }
    }
}

#[test]
fn mariadb_single_and_alternating_users() {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let single = format!("arca_s{tag}'; --");
    let (a, b) = (format!("arca_a{tag}"), format!("arca_b{tag} $$"));
    let _cleanup = MyUsers(vec![single.clone(), a.clone(), b.clone()]);
    for (u, p) in [(&single, "s0"), (&a, "a0"), (&b, "b0")] {
        mysql(&format!(
            "CREATE USER {}@'%' IDENTIFIED BY {}",
            my_q(u),
            my_q(p)
        ));
    }
    assert!(my_login(&single, "s0"));
    let s = spawn(tempfile::tempdir().unwrap(), &[]);
    put_secret(
        &s,
        "my/single",
        json!({"username": single, "password": "s0"}),
    );
    set_policy(
        &s,
        "my/single",
        json!({"target":"mysql","generator":{"symbols":true,"length":24},"connection":{"host":"127.0.0.1","username":single}}),
    );
    let (st, body) = rotate(&s, "my/single", json!({}));
    assert_eq!(st, 200, "{body}");
    let (_, cur) = read_secret(&s, "my/single", None);
    assert!(my_login(&single, &pw(&cur)));
    assert!(!my_login(&single, "s0"));

    put_secret(&s, "my/admin", json!({"username":"root","password":""}));
    put_secret(&s, "my/alt", json!({"username": a, "password": "a0"}));
    set_policy(
        &s,
        "my/alt",
        json!({"target":"mysql","strategy":"alternating-users","connection":{"host":"127.0.0.1","users":[a,b],"admin_secret":"my/admin"}}),
    );
    let (st, body) = rotate(&s, "my/alt", json!({}));
    assert_eq!(st, 200, "{body}");
    let (_, cur) = read_secret(&s, "my/alt", None);
    assert_eq!(cur["username"], b.as_str());
    assert!(my_login(&b, &pw(&cur)));
    assert!(my_login(&a, "a0"), "previous credential still works");
}

#[test]
fn due_date_passed_while_down_rotates_once_and_restarts_never_double() {
    let s = spawn(tempfile::tempdir().unwrap(), &[]);
    put_secret(&s, "api/key", json!({"password":"v1"}));
    set_policy(
        &s,
        "api/key",
        json!({"period":"24h","generator":{"type":"bytes","length":16,"encoding":"base64"}}),
    );
    let p = state(&s, "api/key");
    assert_eq!(p["state"], "idle");
    assert_eq!(p["period"], "24h0m0s");
    // restarts before the due date: nothing happens
    let dir = s.into_data_dir();
    let s = spawn(dir, &[("ARCA_TEST_CLOCK_OFFSET_SECS", "43200")]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(read_secret(&s, "api/key", None).0, 1);
    // down for 3 days: rotates once at start
    let dir = s.into_data_dir();
    let s = spawn(dir, &[("ARCA_TEST_CLOCK_OFFSET_SECS", "259200")]);
    wait_for("rotation at start", Duration::from_secs(10), || {
        read_secret(&s, "api/key", None).0 == 2
    });
    let dir = s.into_data_dir();
    let s = spawn(dir, &[("ARCA_TEST_CLOCK_OFFSET_SECS", "262800")]);
    std::thread::sleep(Duration::from_millis(1500));
    let (v, cur) = read_secret(&s, "api/key", None);
    assert_eq!(v, 2, "restart after the rotation does not rotate again");
    assert_eq!(pw(&cur).len(), 24);
}

#[test]
fn http_validation_cli_and_commands_never_through_the_api() {
    let s = spawn(tempfile::tempdir().unwrap(), &[]);
    let (st, b) = req(&s, "GET", "/v1/secret/rotation/nope", None);
    assert_eq!((st, b), (404, json!({"errors": []})));
    for bad in [
        json!({"target":"command","command":"x","program":"/bin/sh"}),
        json!({"target":"command","command":"/bin/sh"}),
        json!({"period":"1s"}),
        json!({"generator":{"length":3}}),
        json!({"target":"postgres","connection":{"host":"h","username":"a\u{1}"}}),
    ] {
        let (st, b) = req(&s, "PUT", "/v1/secret/rotation/x", Some(bad.clone()));
        assert_eq!(st, 400, "{bad}: {b}");
        assert!(!b["errors"][0].as_str().unwrap().is_empty());
        assert_eq!(req(&s, "GET", "/v1/secret/rotation/x", None).0, 404);
    }
    // CLI
    s.run(&[
        "rotate",
        "policy",
        "set",
        "secret/cli/k",
        "--period",
        "720h",
        "--length",
        "20",
    ])
    .ok();
    let out = s.run(&[
        "rotate",
        "policy",
        "get",
        "secret/cli/k",
        "--format",
        "json",
    ]);
    out.ok();
    assert_eq!(out.json()["period"], "720h0m0s");
    let out = s.run(&["rotate", "now", "secret/cli/k", "--format", "json"]);
    out.ok();
    assert_eq!(out.json()["version"], 1);
    let (_, cur) = read_secret(&s, "cli/k", None);
    assert_eq!(pw(&cur).len(), 20);
    let out = s.run(&["rotate", "status"]);
    out.ok();
    assert!(out.stdout.contains("secret/cli/k"), "{}", out.stdout);
    s.run(&["rotate", "resume", "secret/cli/k"]).expect_code(1);
    s.run(&["rotate", "policy", "get", "secret/cli/none"])
        .expect_code(2);
    s.run(&["rotate", "policy", "delete", "secret/cli/k"]).ok();
    s.run(&["rotate", "now", "nomount"]).expect_code(2);
    let _ = Path::new("/");
}
