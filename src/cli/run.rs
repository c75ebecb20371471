//! `arca run`: runs a command with secrets in its environment, for pipelines that read their
//! credentials from environment variables. The secrets are read once, at start; the
//! command replaces `arca` (exec), so its exit code is the command's.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::kv::SecretPath;
use super::{CliError, ClientOpts};

const RUN_HELP: &str = "\
Each --secret is [PREFIX=]PATH. Every key of the secret's latest version becomes a variable:
the key upper-cased, characters other than A-Z, 0-9 and _ replaced by _, after PREFIX_ when a
prefix is given. Values that are not strings are passed as JSON. Two secrets giving the same
variable, or a variable the environment already has (without --override), is an error: nothing
runs. No value is ever printed.

Examples:
  arca run --secret DB=secret/db/prod -- python train.py        # DB_USERNAME, DB_PASSWORD
  arca run --secret secret/api/stripe --secret secret/api/s3 -- ./deploy.sh";

/// `arca run [--secret [PREFIX=]PATH]... -- COMMAND [ARGS]...`
#[derive(Debug, Args)]
#[command(after_help = RUN_HELP)]
pub struct RunArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Mount path of the KV v2 engine; a PATH starting with it has it stripped
    #[arg(long, default_value = "secret", value_name = "MOUNT")]
    pub mount: String,
    /// A secret to export, as [PREFIX=]PATH; repeat for several
    #[arg(
        long = "secret",
        short = 's',
        value_name = "[PREFIX=]PATH",
        required = true
    )]
    pub secrets: Vec<String>,
    /// Let secrets replace variables already in the environment
    #[arg(long = "override")]
    pub override_env: bool,
    /// The command and its arguments (after `--`)
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The environment variable name for `key` of a secret exported with `prefix`.
pub fn var_name(prefix: Option<&str>, key: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                let c = c.to_ascii_uppercase();
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut name = match prefix {
        Some(p) => format!("{}_{}", clean(p), clean(key)),
        None => clean(key),
    };
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// Splits `[PREFIX=]PATH`.
pub fn parse_spec(spec: &str) -> Result<(Option<String>, String), CliError> {
    match spec.split_once('=') {
        Some((p, path)) if !p.is_empty() && !p.contains('/') => {
            Ok((Some(p.to_string()), path.to_string()))
        }
        Some(("", _)) => Err(CliError::Usage(format!(
            "--secret {spec:?}: the prefix before '=' is empty"
        ))),
        _ => Ok((None, spec.to_string())),
    }
}

/// The variables the secrets give; errors on clashes (between secrets, or with `existing`
/// unless `override_env`).
pub fn build_env(
    secrets: &[(Option<String>, String, serde_json::Map<String, Value>)],
    existing: &dyn Fn(&str) -> bool,
    override_env: bool,
) -> Result<BTreeMap<String, String>, CliError> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    for (prefix, path, data) in secrets {
        for (k, v) in data {
            let name = var_name(prefix.as_deref(), k);
            if name.is_empty() || name == "_" {
                return Err(CliError::Usage(format!(
                    "{path}: key {k:?} gives no usable variable name"
                )));
            }
            if let Some(other) = from.get(&name) {
                return Err(CliError::Usage(if other == path {
                    format!("two keys of {path} give the same variable {name}")
                } else {
                    format!(
                        "{name} would come from both {other} and {path}: give one of them a PREFIX="
                    )
                }));
            }
            if !override_env && existing(&name) {
                return Err(CliError::Usage(format!(
                    "{name} (from {path}) is already set in the environment: unset it, give the secret a PREFIX=, or pass --override"
                )));
            }
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if value.contains('\0') {
                return Err(CliError::Failed(format!(
                    "{path}: the value of {k:?} contains a NUL byte and cannot be an environment variable"
                )));
            }
            from.insert(name.clone(), path.clone());
            out.insert(name, value);
        }
    }
    Ok(out)
}

/// Runs `arca run ...`: on success it does not return (the command replaces this process).
pub fn run(args: RunArgs) -> ExitCode {
    match prepare(&args) {
        Ok(cmd) => exec(cmd, &args.command[0]),
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn prepare(args: &RunArgs) -> Result<std::process::Command, CliError> {
    let client = args.opts.client()?;
    let mut secrets = Vec::new();
    for spec in &args.secrets {
        let (prefix, path) = parse_spec(spec)?;
        let sp = SecretPath::parse_secret(&args.mount, &path)?;
        let shown = sp.display("data");
        let secret = client
            .kv(&sp.mount)
            .get(&sp.key, None)
            .map_err(CliError::api(format!("reading {shown}")))?;
        let data = secret.data.ok_or_else(|| {
            CliError::NotFound(format!(
                "{shown}: the latest version is deleted or destroyed"
            ))
        })?;
        secrets.push((prefix, shown, data));
    }
    let env = build_env(
        &secrets,
        &|n| std::env::var_os(n).is_some(),
        args.override_env,
    )?;
    let mut cmd = std::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    // The token that read the secrets is not the command's business.
    for v in ["ARCA_TOKEN", "VAULT_TOKEN"] {
        if !env.contains_key(v) {
            cmd.env_remove(v);
        }
    }
    cmd.envs(&env);
    Ok(cmd)
}

#[cfg(unix)]
fn exec(mut cmd: std::process::Command, name: &str) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    eprintln!("Error: running {name}: {err}");
    ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

#[cfg(not(unix))]
fn exec(mut cmd: std::process::Command, name: &str) -> ExitCode {
    match cmd.status() {
        Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("Error: running {name}: {e}");
            ExitCode::from(127)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn names_are_upper_case_and_safe() {
        assert_eq!(var_name(None, "password"), "PASSWORD");
        assert_eq!(var_name(Some("db"), "user-name"), "DB_USER_NAME");
        assert_eq!(var_name(None, "api.key"), "API_KEY");
        assert_eq!(var_name(None, "1st"), "_1ST");
        assert_eq!(var_name(Some("x"), "ü"), "X__");
    }

    #[test]
    fn specs_split_on_the_prefix() {
        assert_eq!(
            parse_spec("DB=secret/db/prod").unwrap(),
            (Some("DB".into()), "secret/db/prod".into())
        );
        assert_eq!(parse_spec("secret/db").unwrap(), (None, "secret/db".into()));
        // an '=' inside the path is not a prefix
        assert_eq!(
            parse_spec("secret/a=b").unwrap(),
            (None, "secret/a=b".into())
        );
        assert!(parse_spec("=secret/db").is_err());
    }

    #[test]
    fn clashes_are_refused_and_values_kept_exact() {
        let none = |_: &str| false;
        let a = (
            None,
            "secret/data/a".to_string(),
            obj(json!({"password": "p=1 x", "port": 5432, "tls": {"on": true}})),
        );
        let env = build_env(std::slice::from_ref(&a), &none, false).unwrap();
        assert_eq!(env["PASSWORD"], "p=1 x");
        assert_eq!(env["PORT"], "5432");
        assert_eq!(env["TLS"], r#"{"on":true}"#);
        let b = (
            None,
            "secret/data/b".to_string(),
            obj(json!({"Password": "q"})),
        );
        let err = build_env(&[a.clone(), b], &none, false).unwrap_err();
        assert!(err.to_string().contains("PASSWORD"), "{err}");
        let set = |n: &str| n == "PASSWORD";
        assert!(build_env(std::slice::from_ref(&a), &set, false).is_err());
        assert!(build_env(std::slice::from_ref(&a), &set, true).is_ok());
        let nul = (None, "s".to_string(), obj(json!({"k": "a\u{0}b"})));
        assert!(build_env(&[nul], &none, false).is_err());
    }
}
