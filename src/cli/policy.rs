//! `arca policy ...`: write, read, list and delete ACL policies (`sys/policies/acl`), like
//! `vault policy`.

use std::io::{self, Read};
use std::path::Path;

use clap::{Args, Subcommand};
use serde_json::json;

use super::token::print_warnings;
use super::{CliError, ClientOpts, CmdResult, Ctx, Format};

/// `arca policy`: flags and subcommand.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create or replace a policy from an HCL (or JSON) file, or standard input ('-')
    #[command(after_help = WRITE_HELP)]
    Write(WriteArgs),
    /// Print a policy's text
    Read(NameArg),
    /// List the policy names
    List,
    /// Delete a policy (no error if it does not exist; `default` and `root` cannot be deleted)
    Delete(NameArg),
}

const WRITE_HELP: &str = "\
Names are lowercased by the server; `root` (in any spelling) cannot be written. A policy takes \
effect at once for every token that carries its name.

Example:
  arca policy write dbread - <<'EOF'
  path \"secret/data/db/*\"     { capabilities = [\"read\"] }
  path \"secret/metadata/db/*\" { capabilities = [\"list\"] }
  EOF";

#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Policy name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// File holding the policy (HCL or JSON), or '-' for standard input
    #[arg(value_name = "FILE|-")]
    pub file: String,
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// Policy name
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// Runs one `arca policy` subcommand.
pub fn run(ctx: &mut Ctx<'_>, command: PolicyCommand) -> CmdResult {
    match command {
        PolicyCommand::Write(a) => write(ctx, &a),
        PolicyCommand::Read(a) => read(ctx, &a.name),
        PolicyCommand::List => list(ctx),
        PolicyCommand::Delete(a) => delete(ctx, &a.name),
    }
}

fn read_policy_text(file: &str, stdin: &mut dyn Read) -> Result<String, CliError> {
    let text = if file == "-" {
        let mut s = String::new();
        stdin
            .read_to_string(&mut s)
            .map_err(|e| CliError::Failed(format!("reading standard input: {e}")))?;
        s
    } else {
        std::fs::read_to_string(Path::new(file))
            .map_err(|e| CliError::Failed(format!("reading {file}: {e}")))?
    };
    if text.trim().is_empty() {
        return Err(CliError::Usage(format!(
            "the policy in {} is empty",
            if file == "-" { "standard input" } else { file }
        )));
    }
    Ok(text)
}

fn write(ctx: &mut Ctx<'_>, a: &WriteArgs) -> CmdResult {
    let text = read_policy_text(&a.file, &mut io::stdin().lock())?;
    let warnings = ctx
        .client
        .policy_write(&a.name, &text)
        .map_err(CliError::api(format!("writing policy {}", a.name.trim())))?;
    print_warnings(&warnings);
    let name = a.name.trim().to_lowercase();
    match ctx.format {
        Format::Json => ctx.json(&json!({ "name": name }))?,
        Format::Table => ctx.print(&format!("Success! Uploaded policy: {name}\n"))?,
    }
    Ok(0)
}

fn read(ctx: &mut Ctx<'_>, name: &str) -> CmdResult {
    let data = ctx
        .client
        .policy_read(name)
        .map_err(CliError::api(format!("reading policy {}", name.trim())))?;
    match ctx.format {
        Format::Json => ctx.json(&data)?,
        Format::Table => {
            // The text exactly as stored, so `arca policy read x > x.hcl` round-trips.
            let text = data
                .get("policy")
                .and_then(|p| p.as_str())
                .ok_or_else(|| CliError::Failed("the server sent no policy text".into()))?;
            ctx.print(text)?;
            if !text.ends_with('\n') && !text.is_empty() {
                ctx.print("\n")?;
            }
        }
    }
    Ok(0)
}

fn list(ctx: &mut Ctx<'_>) -> CmdResult {
    let names = ctx
        .client
        .policy_list()
        .map_err(CliError::api("listing policies"))?;
    match ctx.format {
        Format::Json => ctx.json(&names)?,
        Format::Table => {
            // One name a line, as `vault policy list`: easy to grep and loop over.
            let mut out = String::new();
            for n in &names {
                out.push_str(n);
                out.push('\n');
            }
            ctx.print(&out)?;
        }
    }
    Ok(0)
}

fn delete(ctx: &mut Ctx<'_>, name: &str) -> CmdResult {
    ctx.client
        .policy_delete(name)
        .map_err(CliError::api(format!("deleting policy {}", name.trim())))?;
    let name = name.trim().to_lowercase();
    match ctx.format {
        Format::Json => ctx.json(&json!({ "name": name }))?,
        Format::Table => ctx.print(&format!("Success! Deleted policy: {name}\n"))?,
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_text_from_stdin_and_files() {
        let mut stdin = io::Cursor::new(b"path \"a/*\" { capabilities = [\"read\"] }\n".to_vec());
        assert!(read_policy_text("-", &mut stdin).unwrap().contains("a/*"));
        let mut blank = io::Cursor::new(b"  \n".to_vec());
        assert_eq!(
            read_policy_text("-", &mut blank).unwrap_err().exit_code(),
            2
        );
        let e = read_policy_text("/nonexistent/p.hcl", &mut io::empty()).unwrap_err();
        assert_eq!(e.exit_code(), 1);
    }
}
