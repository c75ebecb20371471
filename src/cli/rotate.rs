//! `arca rotate ...`: rotation policies, rotate now, resume/abort, status.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::output::{object_rows, table};
use super::{CliError, ClientOpts, CmdResult, Ctx, Format};
use crate::client::encode_key;

/// `arca rotate`: flags and subcommand.
#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: RotateCommand,
}

#[derive(Debug, Subcommand)]
pub enum RotateCommand {
    /// Read, set or remove the rotation policy of a secret
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Rotate a secret now (same steps and guarantees as the schedule); prints the new version
    Now(PathArg),
    /// Resume a failed rotation from the step that failed
    Resume(PathArg),
    /// Abort an unfinished or failed rotation (its pending credential is dropped)
    Abort(PathArg),
    /// Every secret under rotation: failed and overdue first
    Status,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show a secret's rotation policy and state
    Get(PathArg),
    /// Set a secret's rotation policy (replaces it)
    Set(Box<PolicySetArgs>),
    /// Remove a secret's rotation policy (the secret itself stays)
    Delete(PathArg),
}

#[derive(Debug, Args)]
pub struct PathArg {
    /// Secret path, e.g. secret/db/prod
    #[arg(value_name = "PATH")]
    pub path: String,
}

#[derive(Debug, Args)]
pub struct PolicySetArgs {
    /// Secret path, e.g. secret/db/prod
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Rotation period (e.g. 2160h, 720h); default: the server's rotation.default_period
    #[arg(long, value_name = "DURATION")]
    pub period: Option<String>,
    /// none (the vault value alone), postgres, mysql, or command
    #[arg(long, default_value = "none")]
    pub target: String,
    /// Name of a [rotation.commands.NAME] entry of the server's config (target command)
    #[arg(long, value_name = "NAME")]
    pub command: Option<String>,
    /// single-user or alternating-users
    #[arg(long, default_value = "single-user")]
    pub strategy: String,
    /// Generator: password or bytes
    #[arg(long = "generator", value_name = "TYPE")]
    pub generator: Option<String>,
    /// Password length or number of random bytes
    #[arg(long, value_name = "N")]
    pub length: Option<u64>,
    /// Character classes of passwords, comma-separated: lower,upper,digits,symbols
    #[arg(long, value_name = "CLASSES")]
    pub classes: Option<String>,
    /// Characters never to use in passwords
    #[arg(long, value_name = "CHARS")]
    pub exclude: Option<String>,
    /// Encoding of random bytes: hex or base64
    #[arg(long, value_name = "ENC")]
    pub encoding: Option<String>,
    /// Database host
    #[arg(long)]
    pub host: Option<String>,
    /// Database port
    #[arg(long)]
    pub port: Option<u16>,
    /// Database name
    #[arg(long)]
    pub database: Option<String>,
    /// The user of a single-user rotation
    #[arg(long)]
    pub username: Option<String>,
    /// The two users of an alternating-users rotation, comma-separated
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub users: Vec<String>,
    /// Path of the secret holding the admin credential (username, password), same mount
    #[arg(long, value_name = "PATH")]
    pub admin_secret: Option<String>,
    /// MySQL/MariaDB account host part (default %)
    #[arg(long, value_name = "HOST")]
    pub user_host: Option<String>,
}

/// `secret/db/prod` -> (`secret`, `db/prod`).
fn split(path: &str) -> Result<(String, String), CliError> {
    let p = path.trim_start_matches('/');
    match p.split_once('/') {
        Some((m, k)) if !m.is_empty() && !k.is_empty() => Ok((m.to_string(), k.to_string())),
        _ => Err(CliError::Usage(format!(
            "PATH must be MOUNT/KEY, e.g. secret/db/prod, not {path:?}"
        ))),
    }
}

fn api(mount: &str, op: &str, key: &str) -> Result<String, CliError> {
    let enc = encode_key(key).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(format!("/v1/{mount}/{op}/{enc}"))
}

fn call(
    ctx: &Ctx<'_>,
    method: &str,
    path: &str,
    body: Option<&Value>,
    what: &str,
) -> Result<Option<Value>, CliError> {
    let resp = ctx
        .client
        .request(method, path, body)
        .map_err(CliError::api(what))?;
    let resp = resp.error_for_status().map_err(CliError::api(what))?;
    Ok(resp.json())
}

fn policy_body(a: &PolicySetArgs) -> Value {
    let mut body = Map::new();
    if let Some(p) = &a.period {
        body.insert("period".into(), json!(p));
    }
    body.insert("target".into(), json!(a.target));
    body.insert("strategy".into(), json!(a.strategy));
    if let Some(c) = &a.command {
        body.insert("command".into(), json!(c));
    }
    let mut g = Map::new();
    if let Some(t) = &a.generator {
        g.insert("type".into(), json!(t));
    }
    if let Some(n) = a.length {
        g.insert("length".into(), json!(n));
    }
    if let Some(c) = &a.classes {
        let set: Vec<&str> = c.split(',').map(str::trim).collect();
        for class in ["lower", "upper", "digits", "symbols"] {
            g.insert(class.into(), json!(set.contains(&class)));
        }
    }
    if let Some(x) = &a.exclude {
        g.insert("exclude".into(), json!(x));
    }
    if let Some(e) = &a.encoding {
        g.insert("encoding".into(), json!(e));
    }
    if !g.is_empty() {
        body.insert("generator".into(), Value::Object(g));
    }
    let mut c = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            c.insert(k.into(), v);
        }
    };
    put("host", a.host.as_ref().map(|v| json!(v)));
    put("port", a.port.map(|v| json!(v)));
    put("database", a.database.as_ref().map(|v| json!(v)));
    put("username", a.username.as_ref().map(|v| json!(v)));
    put("users", (!a.users.is_empty()).then(|| json!(a.users)));
    put("admin_secret", a.admin_secret.as_ref().map(|v| json!(v)));
    put("user_host", a.user_host.as_ref().map(|v| json!(v)));
    if !c.is_empty() {
        body.insert("connection".into(), Value::Object(c));
    }
    Value::Object(body)
}

fn data_of(v: Option<Value>) -> Value {
    v.and_then(|v| v.get("data").cloned())
        .unwrap_or(Value::Null)
}

fn print_data(ctx: &mut Ctx<'_>, data: &Value) -> CmdResult {
    match ctx.format {
        Format::Json => ctx.json(data)?,
        Format::Table => {
            let map = data.as_object().cloned().unwrap_or_default();
            let text = table(&object_rows(&map));
            ctx.print(&text)?;
        }
    }
    Ok(0)
}

/// The status table: one row per secret, failed and overdue first (the server's order).
pub fn status_table(rows: &[Value]) -> String {
    let cols = [
        "Path",
        "State",
        "Period",
        "Last rotation",
        "Next due",
        "Overdue",
        "Last error",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| match r.get(k) {
                Some(Value::String(s)) if s.is_empty() => "-".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "-".to_string(),
                Some(v) => v.to_string(),
            };
            vec![
                s("path"),
                s("state"),
                s("period"),
                s("last_rotation"),
                s("next_rotation_at"),
                s("overdue"),
                s("last_error"),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = cols.iter().map(|c| c.len()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |row: &[String]| {
        let mut l = String::new();
        for (i, c) in row.iter().enumerate() {
            l.push_str(c);
            if i + 1 < row.len() {
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 4));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let header: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
    let dashes: Vec<String> = cols.iter().map(|c| "-".repeat(c.len())).collect();
    let mut out = line(&header) + &line(&dashes);
    for r in &cells {
        out.push_str(&line(r));
    }
    out
}

pub fn exec(ctx: &mut Ctx<'_>, command: RotateCommand) -> CmdResult {
    match command {
        RotateCommand::Policy(PolicyCommand::Get(a)) => {
            let (m, k) = split(&a.path)?;
            let v = call(
                ctx,
                "GET",
                &api(&m, "rotation", &k)?,
                None,
                &format!("reading the rotation policy of {}", a.path),
            )?;
            print_data(ctx, &data_of(v))
        }
        RotateCommand::Policy(PolicyCommand::Set(a)) => {
            let (m, k) = split(&a.path)?;
            let body = policy_body(&a);
            call(
                ctx,
                "PUT",
                &api(&m, "rotation", &k)?,
                Some(&body),
                &format!("setting the rotation policy of {}", a.path),
            )?;
            ctx.print(&format!("Success! Rotation policy set for {}\n", a.path))?;
            Ok(0)
        }
        RotateCommand::Policy(PolicyCommand::Delete(a)) => {
            let (m, k) = split(&a.path)?;
            call(
                ctx,
                "DELETE",
                &api(&m, "rotation", &k)?,
                None,
                &format!("deleting the rotation policy of {}", a.path),
            )?;
            ctx.print(&format!(
                "Success! Rotation policy removed from {}\n",
                a.path
            ))?;
            Ok(0)
        }
        RotateCommand::Now(a) => rotate(ctx, &a.path, json!({}), "rotating"),
        RotateCommand::Resume(a) => rotate(
            ctx,
            &a.path,
            json!({"resume": true}),
            "resuming the rotation of",
        ),
        RotateCommand::Abort(a) => rotate(
            ctx,
            &a.path,
            json!({"abort": true}),
            "aborting the rotation of",
        ),
        RotateCommand::Status => {
            let v = call(
                ctx,
                "GET",
                "/v1/sys/rotation/status",
                None,
                "reading the rotation status",
            )?;
            let data = data_of(v);
            match ctx.format {
                Format::Json => ctx.json(&data)?,
                Format::Table => {
                    let rows = data
                        .get("secrets")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if rows.is_empty() {
                        ctx.print("No secrets under rotation.\n")?;
                    } else {
                        let t = status_table(&rows);
                        ctx.print(&t)?;
                    }
                }
            }
            Ok(0)
        }
    }
}

fn rotate(ctx: &mut Ctx<'_>, path: &str, body: Value, what: &str) -> CmdResult {
    let (m, k) = split(path)?;
    let v = call(
        ctx,
        "POST",
        &api(&m, "rotate", &k)?,
        Some(&body),
        &format!("{what} {path}"),
    )?;
    let data = data_of(v);
    match ctx.format {
        Format::Json => ctx.json(&data)?,
        Format::Table => match data.get("version") {
            Some(ver) => ctx.print(&format!("Success! {path} rotated: version {ver}\n"))?,
            None => ctx.print(&format!("Success! Rotation of {path} aborted\n"))?,
        },
    }
    Ok(0)
}

/// Runs `arca rotate ...`.
pub fn run(args: RotateArgs) -> ExitCode {
    let RotateArgs { opts, command } = args;
    super::with_ctx(&opts, |ctx| exec(ctx, command))
}
