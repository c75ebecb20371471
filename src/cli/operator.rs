//! `arca operator ...`: init, unseal, seal, status and keyring rotation, like `vault operator`.

use std::io::{self, BufRead, IsTerminal};

use clap::{Args, Subcommand};
use serde_json::Value;
use zeroize::Zeroizing;

use super::output::{render_value, table};
use super::{CliError, ClientOpts, CmdResult, Ctx, Format};
use crate::client::{InitResponse, SealStatus};

/// `arca operator`: flags and subcommand.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: OperatorCommand,
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Initialize a new server: create the root key and split it into unseal keys
    Init(InitArgs),
    /// Give one unseal key share (prompted without echo when KEY is omitted)
    Unseal(UnsealArgs),
    /// Seal the server: forget the root key until it is unsealed again (root token)
    Seal,
    /// Show the seal status (exit code 2 when sealed)
    Status,
    /// Add a new encryption key term: new writes use it, existing data stays readable
    Rotate,
    /// Show the active encryption key term
    KeyStatus,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Number of unseal key shares to create
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub key_shares: u32,
    /// Number of shares needed to unseal
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub key_threshold: u32,
}

#[derive(Debug, Args)]
pub struct UnsealArgs {
    /// Unseal key share, hex or base64 ('-' reads it from standard input). Omit it to be
    /// prompted: a key on the command line is visible in `ps` and the shell history
    #[arg(value_name = "KEY", conflicts_with = "reset")]
    pub key: Option<String>,
    /// Discard the key shares given so far
    #[arg(long)]
    pub reset: bool,
}

/// Runs one `arca operator` subcommand.
pub fn run(ctx: &mut Ctx<'_>, command: OperatorCommand) -> CmdResult {
    match command {
        OperatorCommand::Init(a) => init(ctx, &a),
        OperatorCommand::Unseal(a) => unseal(ctx, a),
        OperatorCommand::Seal => {
            ctx.client
                .sys_seal()
                .map_err(CliError::api("sealing the server"))?;
            if ctx.format == Format::Table {
                ctx.print("Success! arca is sealed.\n")?;
            }
            Ok(0)
        }
        OperatorCommand::Status => {
            let status = ctx
                .client
                .sys_seal_status()
                .map_err(CliError::api("reading the seal status"))?;
            print_status(ctx, &status)?;
            Ok(if status.sealed { 2 } else { 0 })
        }
        OperatorCommand::Rotate => {
            ctx.client
                .sys_rotate()
                .map_err(CliError::api("rotating the encryption key"))?;
            let status = ctx
                .client
                .sys_key_status()
                .map_err(CliError::api("reading the key status"))?;
            match ctx.format {
                Format::Json => ctx.json(&status)?,
                Format::Table => {
                    ctx.print("Success! Rotated key\n\n")?;
                    ctx.print(&key_status_table(&status))?;
                }
            }
            Ok(0)
        }
        OperatorCommand::KeyStatus => {
            let status = ctx
                .client
                .sys_key_status()
                .map_err(CliError::api("reading the key status"))?;
            match ctx.format {
                Format::Json => ctx.json(&status)?,
                Format::Table => ctx.print(&key_status_table(&status))?,
            }
            Ok(0)
        }
    }
}

fn init(ctx: &mut Ctx<'_>, a: &InitArgs) -> CmdResult {
    if a.key_shares == 0 || a.key_threshold == 0 || a.key_threshold > a.key_shares {
        return Err(CliError::Usage(format!(
            "--key-threshold ({}) must be between 1 and --key-shares ({})",
            a.key_threshold, a.key_shares
        )));
    }
    let resp = ctx
        .client
        .sys_init(a.key_shares, a.key_threshold)
        .map_err(CliError::api("initializing the server"))?;
    match ctx.format {
        Format::Json => ctx.json(&resp)?,
        Format::Table => {
            let text = Zeroizing::new(init_text(&resp, a.key_threshold));
            ctx.print(&text)?;
        }
    }
    Ok(0)
}

/// The table output of `operator init` (holds the keys and the root token: it is meant to be
/// read once by the operator).
fn init_text(resp: &InitResponse, threshold: u32) -> String {
    let keys = if resp.keys_base64.is_empty() {
        &resp.keys
    } else {
        &resp.keys_base64
    };
    let mut text = String::new();
    for (i, k) in keys.iter().enumerate() {
        text.push_str(&format!("Unseal Key {}: {k}\n", i + 1));
    }
    text.push_str(&format!("\nInitial Root Token: {}\n\n", resp.root_token));
    text.push_str(&format!(
        "arca initialized with {} key shares and a key threshold of {threshold}. Distribute the\n\
         key shares above to different operators and store them securely. Whenever the server\n\
         is sealed, restarted or stopped, {threshold} of these keys must be given\n\
         (`arca operator unseal`) before it serves requests again.\n\n\
         The root token has every permission: use it to set up policies and tokens, then\n\
         revoke it.\n",
        keys.len()
    ));
    text
}

fn unseal(ctx: &mut Ctx<'_>, a: UnsealArgs) -> CmdResult {
    let status = if a.reset {
        ctx.client
            .sys_unseal_reset()
            .map_err(CliError::api("resetting the unseal progress"))?
    } else {
        let key = match a.key {
            Some(k) if k == "-" => read_key_from_stdin()?,
            Some(k) => Zeroizing::new(k),
            None if io::stdin().is_terminal() => Zeroizing::new(
                rpassword::prompt_password("Unseal Key (will be hidden): ")
                    .map_err(|e| CliError::Failed(format!("reading the unseal key: {e}")))?,
            ),
            None => read_key_from_stdin()?,
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(CliError::Usage("no unseal key given".into()));
        }
        ctx.client
            .sys_unseal(key)
            .map_err(CliError::api("unsealing the server"))?
    };
    print_status(ctx, &status)?;
    Ok(0)
}

fn read_key_from_stdin() -> Result<Zeroizing<String>, CliError> {
    let mut line = Zeroizing::new(String::new());
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Failed(format!("reading the unseal key: {e}")))?;
    Ok(line)
}

fn print_status(ctx: &mut Ctx<'_>, s: &SealStatus) -> Result<(), CliError> {
    match ctx.format {
        Format::Json => ctx.json(s),
        Format::Table => ctx.print(&table(&status_rows(s))),
    }
}

/// The rows of `operator status`, named as `vault status` names them.
pub fn status_rows(s: &SealStatus) -> Vec<(String, String)> {
    let mut rows = vec![
        ("Seal Type", s.seal_type.clone()),
        ("Initialized", s.initialized.to_string()),
        ("Sealed", s.sealed.to_string()),
        ("Total Shares", s.n.to_string()),
        ("Threshold", s.t.to_string()),
    ];
    if s.sealed {
        rows.push(("Unseal Progress", format!("{}/{}", s.progress, s.t)));
        let nonce = if s.nonce.is_empty() { "n/a" } else { &s.nonce };
        rows.push(("Unseal Nonce", nonce.to_string()));
    }
    rows.push(("Version", s.version.clone()));
    if let Some(st) = &s.storage_type {
        rows.push(("Storage Type", st.clone()));
    }
    if let Some(name) = &s.cluster_name {
        rows.push(("Cluster Name", name.clone()));
    }
    if let Some(id) = &s.cluster_id {
        rows.push(("Cluster ID", id.clone()));
    }
    rows.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `sys/key-status` as a table, with the vault CLI's labels for the known fields.
pub fn key_status_table(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return format!("{}\n", render_value(v));
    };
    let label = |k: &str| match k {
        "term" => "Key Term".to_string(),
        "install_time" => "Install Time".to_string(),
        "encryptions" => "Encryption Count".to_string(),
        other => title_case(other),
    };
    let order = ["term", "install_time", "encryptions"];
    let mut rows: Vec<(String, String)> = order
        .iter()
        .filter_map(|k| obj.get(*k).map(|v| (label(k), render_value(v))))
        .collect();
    let mut rest: Vec<_> = obj
        .iter()
        .filter(|(k, _)| !order.contains(&k.as_str()))
        .map(|(k, v)| (label(k), render_value(v)))
        .collect();
    rest.sort();
    rows.extend(rest);
    table(&rows)
}

/// `key_term` -> `Key Term`.
fn title_case(key: &str) -> String {
    key.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(sealed: bool) -> SealStatus {
        serde_json::from_value(json!({
            "type": "shamir", "initialized": true, "sealed": sealed, "t": 3, "n": 5,
            "progress": 1, "nonce": if sealed { "abc" } else { "" }, "version": "0.1.0",
            "storage_type": "sled"
        }))
        .unwrap()
    }

    #[test]
    fn status_rows_follow_vault() {
        let rows = status_rows(&status(true));
        let get = |k: &str| rows.iter().find(|r| r.0 == k).map(|r| r.1.clone());
        assert_eq!(get("Sealed").as_deref(), Some("true"));
        assert_eq!(get("Unseal Progress").as_deref(), Some("1/3"));
        assert_eq!(get("Unseal Nonce").as_deref(), Some("abc"));
        assert_eq!(get("Storage Type").as_deref(), Some("sled"));
        let rows = status_rows(&status(false));
        assert!(!rows.iter().any(|r| r.0 == "Unseal Progress"));
    }

    #[test]
    fn key_status_labels() {
        let t = key_status_table(&json!({"term": 2, "install_time": "t", "extra": 1}));
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[2].starts_with("Key Term") && lines[2].ends_with('2'),
            "{t}"
        );
        assert!(lines[3].starts_with("Install Time"), "{t}");
        assert!(lines[4].starts_with("Extra"), "{t}");
        assert_eq!(title_case("data_key_terms"), "Data Key Terms");
    }

    #[test]
    fn init_text_lists_keys() {
        let r = InitResponse {
            keys: vec!["aa".into(), "bb".into()],
            keys_base64: vec!["qg==".into(), "uw==".into()],
            root_token: "s.root".into(),
        };
        let t = init_text(&r, 2);
        assert!(
            t.starts_with("Unseal Key 1: qg==\nUnseal Key 2: uw==\n"),
            "{t}"
        );
        assert!(t.contains("Initial Root Token: s.root"));
        assert!(t.contains("2 key shares and a key threshold of 2"));
    }
}
