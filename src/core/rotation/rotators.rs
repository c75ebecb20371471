//! Rotators: what changes a credential outside the vault and proves the new one works.
//!
//! PostgreSQL gets a SCRAM-SHA-256 verifier computed here, so the clear password never reaches
//! the server (nor its statement log). MySQL/MariaDB gets the `mysql_native_password` hash
//! (`IDENTIFIED BY PASSWORD '*…'`, or `IDENTIFIED WITH mysql_native_password AS '*…'` on
//! MySQL 8), never the clear password: a server that accepts neither form fails the rotation
//! visibly rather than receive it. External commands get the password on stdin, never in
//! argv or the environment.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{CommandSpec, Secret};

/// A username and its password.
pub struct Login {
    pub username: String,
    pub password: Secret,
}

/// One `set_password` request.
pub struct SetPassword<'a> {
    /// The user whose password changes.
    pub user: &'a str,
    pub new_password: &'a Secret,
    /// Credentials to connect with, tried in order (admin; or the user's current password,
    /// then the pending one, when a crash may have applied it already).
    pub logins: &'a [Login],
    /// The user changes its own password (connected as itself).
    pub self_change: bool,
    /// `mount/path` of the secret, for commands.
    pub secret: &'a str,
}

/// A credential target. Implementations must be idempotent: setting the same password twice
/// is harmless (resume after a crash repeats the last step).
// Only used through static dispatch (`AnyRotator`), where `Send` of the futures is inferred.
#[allow(async_fn_in_trait)]
pub trait Rotator {
    async fn set_password(&self, req: &SetPassword<'_>) -> Result<(), String>;
    async fn test_login(&self, user: &str, password: &Secret, secret: &str) -> Result<(), String>;
}

/// Removes any occurrence of a password from an error text (drivers may echo a statement).
pub fn scrub(msg: &str, secrets: &[&str]) -> String {
    let mut out = msg.to_string();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s, "<redacted>");
        }
    }
    out
}

// ---------------------------------------------------------------- PostgreSQL

/// `"name"` with embedded quotes doubled: safe for any name without NUL.
pub fn pg_ident(name: &str) -> Result<String, String> {
    if name.contains('\0') {
        return Err("name contains a NUL byte".into());
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `'text'` with quotes doubled, as an `E''`-free standard string. Refuses backslashes and NUL
/// so the result is the same whatever `standard_conforming_strings` says.
pub fn pg_literal(text: &str) -> Result<String, String> {
    if text.contains('\0') || text.contains('\\') {
        return Err("literal contains a NUL byte or a backslash".into());
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

/// RFC 5802/7677 verifier as PostgreSQL stores it:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
/// Generated passwords are printable ASCII, for which SASLprep is the identity.
pub fn scram_sha256_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let hmac = |key: &[u8], msg: &[u8]| -> [u8; 32] {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail here.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(msg);
        m.finalize().into_bytes().into()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let server_key = hmac(&salted, b"Server Key");
    salted.iter_mut().for_each(|b| *b = 0);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64(salt),
        b64(&stored_key),
        b64(&server_key)
    )
}

pub struct Postgres {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub timeout: Duration,
}

impl Postgres {
    async fn connect(
        &self,
        user: &str,
        password: &Secret,
    ) -> Result<tokio_postgres::Client, String> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .user(user)
            .password(password.expose())
            .connect_timeout(self.timeout)
            .application_name("arca-rotation");
        let fut = cfg.connect(tokio_postgres::NoTls);
        let (client, connection) = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| format!("connecting to {}:{} timed out", self.host, self.port))?
            .map_err(|e| pg_error(&e, &[password.expose()]))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

fn pg_error(e: &tokio_postgres::Error, secrets: &[&str]) -> String {
    let text = match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    };
    scrub(&text, secrets)
}

impl Rotator for Postgres {
    async fn set_password(&self, req: &SetPassword<'_>) -> Result<(), String> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let verifier = scram_sha256_verifier(req.new_password.expose(), &salt, 4096);
        let stmt = format!(
            "ALTER ROLE {} PASSWORD {}",
            pg_ident(req.user)?,
            pg_literal(&verifier)?
        );
        let mut last = String::from("no credential to connect with");
        for login in req.logins {
            let client = match self.connect(&login.username, &login.password).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let run = tokio::time::timeout(self.timeout, client.batch_execute(&stmt)).await;
            return match run {
                Err(_) => Err("ALTER ROLE timed out".into()),
                Ok(Err(e)) => Err(pg_error(&e, &[req.new_password.expose()])),
                Ok(Ok(())) => Ok(()),
            };
        }
        Err(last)
    }

    async fn test_login(&self, user: &str, password: &Secret, _secret: &str) -> Result<(), String> {
        let client = self.connect(user, password).await?;
        tokio::time::timeout(self.timeout, client.simple_query("SELECT 1"))
            .await
            .map_err(|_| "test query timed out".to_string())?
            .map_err(|e| pg_error(&e, &[password.expose()]))?;
        Ok(())
    }
}

// ---------------------------------------------------------------- MySQL / MariaDB

/// `'text'` for a session in `NO_BACKSLASH_ESCAPES` mode (set before every statement), where
/// doubling the quote is the only escape. NUL refused.
pub fn my_literal(text: &str) -> Result<String, String> {
    if text.contains('\0') {
        return Err("literal contains a NUL byte".into());
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

const MY_NO_BACKSLASH: &str =
    "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'NO_BACKSLASH_ESCAPES')";

pub struct Mysql {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user_host: String,
    pub timeout: Duration,
}

impl Mysql {
    async fn connect(&self, user: &str, password: &Secret) -> Result<mysql_async::Conn, String> {
        let mut b = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(user.to_string()))
            .pass(Some(password.expose().to_string()))
            .prefer_socket(false);
        if !self.database.is_empty() {
            b = b.db_name(Some(self.database.clone()));
        }
        tokio::time::timeout(self.timeout, mysql_async::Conn::new(b))
            .await
            .map_err(|_| format!("connecting to {}:{} timed out", self.host, self.port))?
            .map_err(|e| scrub(&e.to_string(), &[password.expose()]))
    }
}

impl Rotator for Mysql {
    async fn set_password(&self, req: &SetPassword<'_>) -> Result<(), String> {
        use mysql_async::prelude::Queryable;
        let hash = my_literal(&mysql_native_hash(req.new_password.expose()))?;
        let account = if req.self_change {
            "CURRENT_USER()".to_string()
        } else {
            format!("{}@{}", my_literal(req.user)?, my_literal(&self.user_host)?)
        };
        // Only hashed forms: MariaDB / MySQL 5.7, then MySQL 8 (native plugin).
        let stmt = format!("ALTER USER {account} IDENTIFIED BY PASSWORD {hash}");
        let stmt_mysql8 =
            format!("ALTER USER {account} IDENTIFIED WITH mysql_native_password AS {hash}");
        let secrets = [req.new_password.expose()];
        let mut last = String::from("no credential to connect with");
        for login in req.logins {
            let mut conn = match self.connect(&login.username, &login.password).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let self_change = req.self_change;
            let hash_ref = &hash;
            let run = async {
                conn.query_drop(MY_NO_BACKSLASH).await?;
                match conn.query_drop(stmt.as_str()).await {
                    // MariaDB wants CREATE USER for ALTER USER even on oneself; SET PASSWORD
                    // for the current user needs no privilege and takes the hash as is.
                    Err(_) if self_change => {
                        match conn.query_drop(format!("SET PASSWORD = {hash_ref}")).await {
                            Err(_) => conn.query_drop(stmt_mysql8.as_str()).await,
                            ok => ok,
                        }
                    }
                    Err(_) => conn.query_drop(stmt_mysql8.as_str()).await,
                    other => other,
                }
            };
            let res = tokio::time::timeout(self.timeout, run).await;
            let _ = conn.disconnect().await;
            return match res {
                Err(_) => Err("ALTER USER timed out".into()),
                Ok(Err(e)) => Err(scrub(&e.to_string(), &secrets)),
                Ok(Ok(())) => Ok(()),
            };
        }
        Err(last)
    }

    async fn test_login(&self, user: &str, password: &Secret, _secret: &str) -> Result<(), String> {
        use mysql_async::prelude::Queryable;
        let mut conn = self.connect(user, password).await?;
        let r = tokio::time::timeout(self.timeout, conn.query_drop("SELECT 1")).await;
        let _ = conn.disconnect().await;
        r.map_err(|_| "test query timed out".to_string())?
            .map_err(|e| scrub(&e.to_string(), &[password.expose()]))
    }
}

/// MySQL's `mysql_native_password` hash: `*` + upper-case hex of SHA1(SHA1(password)).
pub fn mysql_native_hash(password: &str) -> String {
    use sha1::Sha1;
    let stage1 = Sha1::digest(password.as_bytes());
    let stage2 = Sha1::digest(stage1);
    format!("*{}", hex::encode_upper(stage2))
}

// ---------------------------------------------------------------- external command

/// Runs a command declared in the config file. The password goes to stdin; the action
/// (`set` or `test`), the user and the secret's path are in `ARCA_ROTATION_*` variables; the
/// rest of arca's environment (which may hold the auto-unseal key) is not passed on, except
/// `PATH`, `HOME` and `LANG`. Exit status 0 means success.
pub struct External {
    pub name: String,
    pub spec: CommandSpec,
}

impl External {
    async fn run(
        &self,
        action: &str,
        user: &str,
        password: &Secret,
        secret: &str,
    ) -> Result<(), String> {
        let spec = self.spec.clone();
        let name = self.name.clone();
        let (action, user, secret) = (action.to_string(), user.to_string(), secret.to_string());
        let input = Secret::new(password.expose().to_string());
        let task = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let mut cmd = Command::new(&spec.program);
            cmd.args(&spec.args).env_clear();
            for keep in ["PATH", "HOME", "LANG"] {
                if let Ok(v) = std::env::var(keep) {
                    cmd.env(keep, v);
                }
            }
            cmd.env("ARCA_ROTATION_ACTION", &action)
                .env("ARCA_ROTATION_USERNAME", &user)
                .env("ARCA_ROTATION_SECRET", &secret)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("command {name:?}: cannot start: {e}"))?;
            if let Some(mut stdin) = child.stdin.take() {
                // A command that does not read stdin closes the pipe: not an error by itself.
                let _ = stdin.write_all(input.expose().as_bytes());
                let _ = stdin.write_all(b"\n");
            }
            let deadline =
                std::time::Instant::now() + Duration::from_secs(spec.timeout_secs.max(1));
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if status.success() {
                            return Ok(());
                        }
                        let mut err = String::new();
                        if let Some(mut e) = child.stderr.take() {
                            use std::io::Read;
                            let _ = e.by_ref().take(2048).read_to_string(&mut err);
                        }
                        let err = scrub(err.trim(), &[input.expose()]);
                        return Err(format!(
                            "command {name:?} ({action}) failed with {status}: {err}"
                        ));
                    }
                    Ok(None) if std::time::Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(format!("command {name:?} ({action}) timed out"));
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    Err(e) => return Err(format!("command {name:?}: {e}")),
                }
            }
        });
        task.await.map_err(|e| format!("command task: {e}"))?
    }
}

impl Rotator for External {
    async fn set_password(&self, req: &SetPassword<'_>) -> Result<(), String> {
        self.run("set", req.user, req.new_password, req.secret)
            .await
    }
    async fn test_login(&self, user: &str, password: &Secret, secret: &str) -> Result<(), String> {
        self.run("test", user, password, secret).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mysql_native_hash_matches_the_server() {
        // SELECT PASSWORD('password') on MySQL 5.7 / MariaDB
        assert_eq!(
            super::mysql_native_hash("password"),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
    }

    use super::*;

    #[test]
    fn scram_verifier_matches_postgres() {
        // RFC 7677's example (password "pencil", its salt, 4096 rounds); the expected keys were
        // computed independently with Python's hashlib/hmac. A real PostgreSQL login with a
        // verifier from this function is in tests/rotation.rs.
        let salt = base64::engine::general_purpose::STANDARD
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap();
        let v = scram_sha256_verifier("pencil", &salt, 4096);
        let parts: Vec<&str> = v.split('$').collect();
        assert_eq!(parts[0], "SCRAM-SHA-256");
        assert_eq!(parts[1], "4096:W22ZaJ0SNY7soEsUEjb6gQ==");
        assert_eq!(
            parts[2],
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn quoting_is_injection_safe() {
        assert_eq!(pg_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert_eq!(
            pg_ident("x; DROP ROLE y; $$").unwrap(),
            "\"x; DROP ROLE y; $$\""
        );
        assert!(pg_ident("a\0").is_err());
        assert_eq!(pg_literal("it's").unwrap(), "'it''s'");
        assert!(pg_literal("a\\b").is_err());
        assert_eq!(my_literal("o'r 1=1 --").unwrap(), "'o''r 1=1 --'");
        assert_eq!(scrub("near 'hunter2'", &["hunter2"]), "near '<redacted>'");
    }

    #[tokio::test]
    async fn external_command_gets_password_on_stdin_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "read -r pw; printf '%s|%s|%s|%s|%s' \"$ARCA_ROTATION_ACTION\" \"$ARCA_ROTATION_USERNAME\" \"$pw\" \"$*\" \"${{ARCA_SECRET_CANARY:-none}}\" > {}",
            out.display()
        );
        std::env::set_var("ARCA_SECRET_CANARY", "leaked");
        let ext = External {
            name: "t".into(),
            spec: CommandSpec {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), script, "sh".into(), "arg1".into()],
                timeout_secs: 5,
            },
        };
        let pw = Secret::new("s3cr3t pw".into());
        ext.set_password(&SetPassword {
            user: "bob",
            new_password: &pw,
            logins: &[],
            self_change: true,
            secret: "secret/x",
        })
        .await
        .unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(got, "set|bob|s3cr3t pw|arg1|none");
        let fail = External {
            name: "f".into(),
            spec: CommandSpec {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), "cat >&2; exit 3".into()],
                timeout_secs: 5,
            },
        };
        let e = fail.test_login("bob", &pw, "secret/x").await.unwrap_err();
        assert!(e.contains("failed"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
