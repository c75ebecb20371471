//! `arca role ...`: token roles (`auth/token/roles`) and the roles file of the server
//! (`sys/roles`): list, read, reload, and hand out a token of a role.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::output::{list as list_text, object_rows, render_value, table};
use super::token::{create, print_warnings, CreateFlags};
use super::{CliError, ClientOpts, CmdResult, Ctx, Format};

/// `arca role`: flags and subcommand.
#[derive(Debug, Args)]
pub struct RoleArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: RoleCommand,
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// List the token roles (exit code 2 when there is none)
    List,
    /// Show a token role: allowed policies and token limits
    Read(NameArg),
    /// Show the roles declared in the server's roles file, as loaded (sys/roles)
    File,
    /// Re-read the server's roles file without a restart (sys/roles/reload)
    Reload,
    /// Create a token of a role: the same as `arca token create --role NAME`
    #[command(after_help = TOKEN_HELP)]
    Token(RoleTokenArgs),
}

const TOKEN_HELP: &str = "\
The role decides the allowed policies and the TTL limits; the flags can only narrow them.

Example: hand a pipeline a 15-minute token of the service-account role
  ARCA_TOKEN=$(arca role token service-account --ttl 15m --field token) ./pipeline";

#[derive(Debug, Args)]
pub struct NameArg {
    /// Role name
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct RoleTokenArgs {
    /// Role name
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub flags: CreateFlags,
}

/// Runs one `arca role` subcommand.
pub fn run(ctx: &mut Ctx<'_>, command: RoleCommand) -> CmdResult {
    match command {
        RoleCommand::List => list(ctx),
        RoleCommand::Read(a) => read(ctx, &a.name),
        RoleCommand::File => file(ctx),
        RoleCommand::Reload => reload(ctx),
        RoleCommand::Token(a) => create(ctx, Some(&a.name), &a.flags),
    }
}

fn list(ctx: &mut Ctx<'_>) -> CmdResult {
    let keys = match ctx.client.token_role_list() {
        Ok(k) => k,
        Err(e) if e.is_not_found() => {
            return Err(CliError::NotFound("no token roles".into()));
        }
        Err(e) => return Err(CliError::api("listing token roles")(e)),
    };
    match ctx.format {
        Format::Json => ctx.json(&keys)?,
        Format::Table => ctx.print(&list_text("Keys", &keys))?,
    }
    Ok(0)
}

fn read(ctx: &mut Ctx<'_>, name: &str) -> CmdResult {
    let data = ctx
        .client
        .token_role_read(name)
        .map_err(CliError::api(format!("reading token role {}", name.trim())))?;
    print_data(ctx, &data)
}

/// A `data` object as a table (or JSON); anything else as JSON text.
fn print_data(ctx: &mut Ctx<'_>, data: &Value) -> CmdResult {
    match (ctx.format, data) {
        (Format::Table, Value::Object(o)) => ctx.print(&table(&object_rows(o)))?,
        (Format::Table, Value::Null) => {}
        (Format::Table, other) => ctx.print(&format!("{}\n", render_value(other)))?,
        (Format::Json, d) => ctx.json(d)?,
    }
    Ok(0)
}

fn file(ctx: &mut Ctx<'_>) -> CmdResult {
    let resp = ctx
        .client
        .sys_roles()
        .map_err(CliError::api("reading the roles file"))?;
    print_warnings(&resp.warnings);
    // Roles by name (`{"roles": {...}}` or the map itself): one table per role.
    let roles = match resp.data.get("roles") {
        Some(Value::Object(r)) if !r.is_empty() => Some(r.clone()),
        Some(_) => None,
        None => match &resp.data {
            Value::Object(o) if !o.is_empty() && o.values().all(Value::is_object) => {
                Some(o.clone())
            }
            _ => None,
        },
    };
    match (ctx.format, roles) {
        (Format::Table, Some(roles)) => {
            // Where the roles came from, then one section per role.
            let mut out = String::new();
            if let Value::Object(o) = &resp.data {
                let head: serde_json::Map<String, Value> = o
                    .iter()
                    .filter(|(k, _)| k.as_str() != "roles" && k.as_str() != "keys")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !head.is_empty() {
                    out.push_str(&table(&object_rows(&head)));
                    out.push('\n');
                }
            }
            for (name, role) in &roles {
                let body = role
                    .as_object()
                    .map(|o| table(&object_rows(o)))
                    .unwrap_or_default();
                out.push_str(&super::output::section(name, &body));
                out.push('\n');
            }
            ctx.print(&out)?;
            Ok(0)
        }
        (Format::Table, None) if resp.data.get("keys").is_some() => {
            ctx.print("No roles are loaded from a roles file\n")?;
            Ok(0)
        }
        _ => print_data(ctx, &resp.data),
    }
}

fn reload(ctx: &mut Ctx<'_>) -> CmdResult {
    let resp = ctx
        .client
        .sys_roles_reload()
        .map_err(CliError::api("reloading the roles file"))?;
    print_warnings(&resp.warnings);
    match ctx.format {
        Format::Json => ctx.json(&resp.data)?,
        Format::Table => {
            ctx.print("Success! Reloaded the roles file\n")?;
            if let Value::Object(o) = &resp.data {
                ctx.print(&table(&object_rows(o)))?;
            }
        }
    }
    Ok(0)
}
