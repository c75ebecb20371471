//! `arca token ...`: create, look up, renew and revoke tokens, and show a token's capabilities,
//! like `vault token`.
//!
//! A token is printed only by the commands whose job is to hand one out (`token create`,
//! `role token`, `login`); lookups and renewals never print the token they were given (the
//! `id` of a lookup and the `client_token` of a renewal are left out).

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Read};

use clap::{ArgAction, ArgGroup, Args, Subcommand};
use serde_json::Value;
use zeroize::Zeroizing;

use super::output::{object_rows, table};
use super::{CliError, ClientOpts, CmdResult, Ctx, Format};
use crate::client::{TokenAuth, TokenCreateRequest, TokenTarget};

/// `arca token`: flags and subcommand.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token: a child of the caller's token (ARCA_TOKEN), or of a token role (--role)
    #[command(after_help = CREATE_HELP)]
    Create(CreateArgs),
    /// Show a token's properties: the caller's own (no argument), another token, or --accessor
    #[command(after_help = TOKEN_ARG_HELP)]
    Lookup(LookupArgs),
    /// Extend a token's lease: the caller's own (no argument), another token, or --accessor
    #[command(after_help = TOKEN_ARG_HELP)]
    Renew(RenewArgs),
    /// Revoke a token and all its children: another token, --accessor, or --self
    #[command(after_help = TOKEN_ARG_HELP)]
    Revoke(RevokeArgs),
    /// Show the caller's capabilities on one or more API paths (sys/capabilities-self)
    Capabilities(CapabilitiesArgs),
}

const CREATE_HELP: &str = "\
A child token can only get a subset of its parent's policies, a TTL no longer than the parent \
has left and no more uses; orphans (--orphan) need root or sudo. A token role (--role) decides \
the allowed policies and limits instead.

The new token is printed (table or JSON); with --field token only the token, for scripts:
  ARCA_TOKEN=$(arca token create --role data-scientist --ttl 15m --field token) ...

Examples:
  arca token create --policy dbread --ttl 1h --meta job=train
  arca token create --role service-account --ttl 15m --num-uses 10";

const TOKEN_ARG_HELP: &str = "\
TOKEN is read from standard input when it is '-' (recommended: a token on the command line is \
visible to every user in `ps` and stays in the shell history):
  printf %s \"$OTHER_TOKEN\" | arca token lookup -
--accessor names a token by its accessor instead, which is not a secret.";

/// Flags shared by `token create` and `role token`.
#[derive(Debug, Clone, Default, Args)]
pub struct CreateFlags {
    /// Policy to attach; repeat or comma-separate for several (default: the parent's, or the
    /// role's allowed policies)
    #[arg(long = "policy", value_name = "NAME", value_delimiter = ',')]
    pub policies: Vec<String>,
    /// Time to live, e.g. 15m, 1h, 3600 (default: the role's, else 768h)
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Hard limit on the token's life: renewals never go past it
    #[arg(long, value_name = "DURATION")]
    pub explicit_max_ttl: Option<String>,
    /// Make a periodic token, renewable by this period forever (root or sudo, or a role)
    #[arg(long, value_name = "DURATION")]
    pub period: Option<String>,
    /// Number of requests the token may serve (0: unlimited)
    #[arg(long, value_name = "N")]
    pub num_uses: Option<u64>,
    /// Create a token with no parent, not revoked with the caller's token (root or sudo)
    #[arg(long)]
    pub orphan: bool,
    /// Name shown by lookups (prefixed with "token-")
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// Metadata attached to the token, key=value; repeat for several
    #[arg(long, value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Do not attach the default policy
    #[arg(long)]
    pub no_default_policy: bool,
    /// Whether the token can be renewed
    #[arg(long, value_name = "BOOL", action = ArgAction::Set)]
    pub renewable: Option<bool>,
    /// Print only this field of the result (token, accessor, policies, ttl, renewable), raw
    #[arg(long, value_name = "FIELD")]
    pub field: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Create the token against this token role (auth/token/create/ROLE)
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    #[command(flatten)]
    pub flags: CreateFlags,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// The token to look up, or '-' to read it from standard input (default: the caller's own)
    #[arg(value_name = "TOKEN|-", conflicts_with = "accessor")]
    pub token: Option<String>,
    /// Look the token up by its accessor
    #[arg(long, value_name = "ACCESSOR")]
    pub accessor: Option<String>,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The token to renew, or '-' to read it from standard input (default: the caller's own)
    #[arg(value_name = "TOKEN|-", conflicts_with = "accessor")]
    pub token: Option<String>,
    /// Renew the token with this accessor
    #[arg(long, value_name = "ACCESSOR")]
    pub accessor: Option<String>,
    /// New TTL counted from now, e.g. 30m (default: the last granted TTL); never past the max
    #[arg(long, value_name = "DURATION")]
    pub increment: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["token", "accessor", "self_"])))]
pub struct RevokeArgs {
    /// The token to revoke, or '-' to read it from standard input
    #[arg(value_name = "TOKEN|-")]
    pub token: Option<String>,
    /// Revoke the token with this accessor
    #[arg(long, value_name = "ACCESSOR")]
    pub accessor: Option<String>,
    /// Revoke the caller's own token (ARCA_TOKEN)
    #[arg(long = "self")]
    pub self_: bool,
}

#[derive(Debug, Args)]
pub struct CapabilitiesArgs {
    /// API paths without /v1/, e.g. secret/data/db/prod
    #[arg(value_name = "PATH", required = true, num_args = 1..)]
    pub paths: Vec<String>,
}

/// Runs one `arca token` subcommand.
pub fn run(ctx: &mut Ctx<'_>, command: TokenCommand) -> CmdResult {
    match command {
        TokenCommand::Create(a) => create(ctx, a.role.as_deref(), &a.flags),
        TokenCommand::Lookup(a) => lookup(ctx, a),
        TokenCommand::Renew(a) => renew(ctx, a),
        TokenCommand::Revoke(a) => revoke(ctx, a),
        TokenCommand::Capabilities(a) => capabilities(ctx, &a.paths),
    }
}

// ---------------------------------------------------------------------- shared helpers

/// A secret given as an argument: `-` reads it from standard input (up to the end, trimmed).
/// On a terminal, `-` prompts without echo.
pub(super) fn secret_arg(value: &str, what: &str) -> Result<Zeroizing<String>, CliError> {
    if value == "-" && io::stdin().is_terminal() {
        let typed = Zeroizing::new(
            rpassword::prompt_password(format!("{what} (will be hidden): "))
                .map_err(|e| CliError::Failed(format!("reading the {what}: {e}")))?,
        );
        return secret_arg_from(&typed, what, &mut io::empty());
    }
    secret_arg_from(value, what, &mut io::stdin().lock())
}

pub(super) fn secret_arg_from(
    value: &str,
    what: &str,
    stdin: &mut dyn Read,
) -> Result<Zeroizing<String>, CliError> {
    let s = if value == "-" {
        let mut buf = Zeroizing::new(String::new());
        stdin.read_to_string(&mut buf).map_err(|e| {
            CliError::Failed(format!("reading the {what} from standard input: {e}"))
        })?;
        Zeroizing::new(buf.trim().to_string())
    } else {
        Zeroizing::new(value.trim().to_string())
    };
    if s.is_empty() {
        return Err(CliError::Usage(format!("the {what} is empty")));
    }
    Ok(s)
}

/// Checks a duration flag here, so a typo is a usage error (exit 2) and not a server error.
pub(super) fn duration_flag(
    flag: &str,
    value: &Option<String>,
) -> Result<Option<String>, CliError> {
    match value {
        None => Ok(None),
        Some(v) => crate::core::duration::parse_seconds(v)
            .map(|_| Some(v.trim().to_string()))
            .map_err(|e| CliError::Usage(format!("--{flag}: {e}"))),
    }
}

/// Server warnings go to stderr, as the vault CLI prints them.
pub(super) fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("WARNING! {w}");
    }
}

/// A TTL in seconds as the vault CLI shows it (`15m`, `1h30m`, `∞` for none).
pub(super) fn ttl_text(secs: u64) -> String {
    if secs == 0 {
        return "∞".to_string();
    }
    let full = crate::core::kv::go_duration(secs);
    // "1h0m0s" -> "1h", "15m0s" -> "15m"
    let trimmed = full
        .strip_suffix("0m0s")
        .filter(|s| s.ends_with('h'))
        .or_else(|| full.strip_suffix("0s").filter(|s| s.ends_with('m')))
        .unwrap_or(&full);
    trimmed.to_string()
}

fn list_text(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// The rows of an auth block; the token row only when `with_token`.
fn auth_rows(auth: &TokenAuth, with_token: bool) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if with_token {
        rows.push(("token".to_string(), auth.client_token.clone()));
    }
    rows.push(("accessor".to_string(), auth.accessor.clone()));
    rows.push(("policies".to_string(), list_text(&auth.policies)));
    rows.push(("ttl".to_string(), ttl_text(auth.lease_duration)));
    rows.push(("renewable".to_string(), auth.renewable.to_string()));
    rows.push(("orphan".to_string(), auth.orphan.to_string()));
    if auth.num_uses > 0 {
        rows.push(("num_uses".to_string(), auth.num_uses.to_string()));
    }
    if let Some(meta) = &auth.metadata {
        for (k, v) in meta {
            rows.push((format!("meta_{k}"), v.clone()));
        }
    }
    rows
}

/// The auth block as JSON, without the token unless `with_token`.
fn auth_json(auth: &TokenAuth, with_token: bool) -> Result<Value, CliError> {
    let mut v = serde_json::to_value(auth)
        .map_err(|e| CliError::Failed(format!("encoding JSON output: {e}")))?;
    if !with_token {
        if let Some(o) = v.as_object_mut() {
            o.remove("client_token");
        }
    }
    Ok(v)
}

/// Prints a freshly issued token: table, JSON (the auth block), or one `field` raw.
pub(super) fn print_issued(ctx: &mut Ctx<'_>, auth: &TokenAuth, field: Option<&str>) -> CmdResult {
    if let Some(f) = field {
        let value = match f {
            "token" | "client_token" => Zeroizing::new(auth.client_token.clone()),
            "accessor" | "token_accessor" => Zeroizing::new(auth.accessor.clone()),
            "policies" | "token_policies" => Zeroizing::new(list_text(&auth.policies)),
            "ttl" | "lease_duration" | "token_duration" => {
                Zeroizing::new(auth.lease_duration.to_string())
            }
            "renewable" | "token_renewable" => Zeroizing::new(auth.renewable.to_string()),
            other => {
                return Err(CliError::Usage(format!(
                "unknown --field {other:?}: expected token, accessor, policies, ttl or renewable"
            )))
            }
        };
        ctx.print(&value)?;
        if ctx.stdout_is_tty {
            ctx.print("\n")?;
        }
        return Ok(0);
    }
    match ctx.format {
        Format::Json => ctx.json(&auth_json(auth, true)?)?,
        Format::Table => {
            let text = Zeroizing::new(table(&auth_rows(auth, true)));
            ctx.print(&text)?;
        }
    }
    Ok(0)
}

fn parse_meta(args: &[String]) -> Result<Option<BTreeMap<String, String>>, CliError> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut out = BTreeMap::new();
    for a in args {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            _ => {
                return Err(CliError::Usage(format!(
                    "invalid --meta {:?}: expected KEY=VALUE",
                    a.split_once('=').map(|(k, _)| k).unwrap_or(a)
                )))
            }
        }
    }
    Ok(Some(out))
}

/// The create request of the flags.
pub(super) fn create_request(f: &CreateFlags) -> Result<TokenCreateRequest, CliError> {
    let policies: Vec<String> = f
        .policies
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    Ok(TokenCreateRequest {
        policies: (!policies.is_empty()).then_some(policies),
        ttl: duration_flag("ttl", &f.ttl)?,
        explicit_max_ttl: duration_flag("explicit-max-ttl", &f.explicit_max_ttl)?,
        period: duration_flag("period", &f.period)?,
        num_uses: f.num_uses,
        no_parent: f.orphan,
        no_default_policy: f.no_default_policy,
        renewable: f.renewable,
        display_name: f.display_name.clone(),
        meta: parse_meta(&f.meta)?,
    })
}

// ---------------------------------------------------------------------- commands

/// `token create` and `role token`.
pub(super) fn create(ctx: &mut Ctx<'_>, role: Option<&str>, f: &CreateFlags) -> CmdResult {
    let req = create_request(f)?;
    let context = match role {
        Some(r) => format!("creating a token of role {r}"),
        None => "creating a token".to_string(),
    };
    let resp = ctx
        .client
        .token_create(role, &req)
        .map_err(CliError::api(context))?;
    print_warnings(&resp.warnings);
    print_issued(ctx, &resp.auth, f.field.as_deref())
}

/// Lookup data without the token itself (`id`): the caller did not ask to print it.
fn print_lookup(ctx: &mut Ctx<'_>, mut data: Value) -> CmdResult {
    if let Some(o) = data.as_object_mut() {
        o.remove("id");
    }
    match ctx.format {
        Format::Json => ctx.json(&data)?,
        Format::Table => match data.as_object() {
            Some(o) => ctx.print(&table(&object_rows(o)))?,
            None => return Err(CliError::Failed("the server sent no token data".into())),
        },
    }
    Ok(0)
}

fn lookup(ctx: &mut Ctx<'_>, a: LookupArgs) -> CmdResult {
    let data = match (&a.token, &a.accessor) {
        (Some(t), _) => {
            let t = secret_arg(t, "token")?;
            ctx.client
                .token_lookup(&t)
                .map_err(CliError::api("looking up the token"))?
        }
        (None, Some(acc)) => ctx
            .client
            .token_lookup_accessor(acc)
            .map_err(CliError::api(format!("looking up accessor {acc}")))?,
        (None, None) => ctx
            .client
            .token_lookup_self()
            .map_err(CliError::api("looking up the caller's token"))?,
    };
    print_lookup(ctx, data)
}

fn renew(ctx: &mut Ctx<'_>, a: RenewArgs) -> CmdResult {
    let increment = duration_flag("increment", &a.increment)?;
    let token = a
        .token
        .as_deref()
        .map(|t| secret_arg(t, "token"))
        .transpose()?;
    let target = match (&token, &a.accessor) {
        (Some(t), _) => TokenTarget::Token(t),
        (None, Some(acc)) => TokenTarget::Accessor(acc),
        (None, None) => TokenTarget::SelfToken,
    };
    let resp = ctx
        .client
        .token_renew(target, increment.as_deref())
        .map_err(CliError::api("renewing the token"))?;
    print_warnings(&resp.warnings);
    match ctx.format {
        Format::Json => ctx.json(&auth_json(&resp.auth, false)?)?,
        Format::Table => ctx.print(&table(&auth_rows(&resp.auth, false)))?,
    }
    Ok(0)
}

fn revoke(ctx: &mut Ctx<'_>, a: RevokeArgs) -> CmdResult {
    let token = a
        .token
        .as_deref()
        .map(|t| secret_arg(t, "token"))
        .transpose()?;
    let (target, what) = match (&token, &a.accessor) {
        (Some(t), _) => (TokenTarget::Token(t), "the token".to_string()),
        (None, Some(acc)) => (TokenTarget::Accessor(acc), format!("accessor {acc}")),
        (None, None) => (TokenTarget::SelfToken, "the caller's token".to_string()),
    };
    let warnings = ctx
        .client
        .token_revoke(target)
        .map_err(CliError::api(format!("revoking {what}")))?;
    print_warnings(&warnings);
    if ctx.format == Format::Table {
        ctx.print("Success! Revoked token (if it existed)\n")?;
    }
    Ok(0)
}

fn capabilities(ctx: &mut Ctx<'_>, paths: &[String]) -> CmdResult {
    let caps = ctx
        .client
        .capabilities_self(paths)
        .map_err(CliError::api("reading capabilities"))?;
    match ctx.format {
        Format::Json => ctx.json(&caps)?,
        Format::Table if caps.len() == 1 => {
            // One path: just the capabilities, as `vault token capabilities` prints them.
            let line = caps
                .values()
                .next()
                .map(|c| c.join(", "))
                .unwrap_or_default();
            ctx.print(&format!("{line}\n"))?;
        }
        Format::Table => {
            let rows: Vec<(String, String)> = caps
                .iter()
                .map(|(p, c)| (p.clone(), c.join(", ")))
                .collect();
            ctx.print(&super::output::table(&rows))?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_from_stdin_is_trimmed() {
        let mut input = io::Cursor::new(b"arca.abc\n".to_vec());
        assert_eq!(
            secret_arg_from("-", "token", &mut input).unwrap().as_str(),
            "arca.abc"
        );
        let mut empty = io::empty();
        assert_eq!(
            secret_arg_from("x ", "token", &mut empty).unwrap().as_str(),
            "x"
        );
        let mut blank = io::Cursor::new(b"\n".to_vec());
        let e = secret_arg_from("-", "token", &mut blank).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn ttl_rendering() {
        assert_eq!(ttl_text(0), "∞");
        assert_eq!(ttl_text(900), "15m");
        assert_eq!(ttl_text(3600), "1h");
        assert_eq!(ttl_text(5400), "1h30m");
        assert_eq!(ttl_text(3601), "1h0m1s");
        assert_eq!(ttl_text(45), "45s");
        assert_eq!(ttl_text(2_764_800), "768h");
    }

    #[test]
    fn create_flags_to_request() {
        let f = CreateFlags {
            policies: vec!["a".into(), " b ".into(), "".into()],
            ttl: Some("15m".into()),
            meta: vec!["job=train".into(), "k=v=w".into()],
            num_uses: Some(3),
            orphan: true,
            ..Default::default()
        };
        let r = create_request(&f).unwrap();
        assert_eq!(r.policies, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(r.meta.as_ref().unwrap()["k"], "v=w");
        let body = serde_json::to_value(&r).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"policies":["a","b"],"ttl":"15m","num_uses":3,"no_parent":true,
                "meta":{"job":"train","k":"v=w"}})
        );
        let bad = CreateFlags {
            ttl: Some("abc".into()),
            ..Default::default()
        };
        assert_eq!(create_request(&bad).unwrap_err().exit_code(), 2);
        let bad = CreateFlags {
            meta: vec!["novalue".into()],
            ..Default::default()
        };
        assert_eq!(create_request(&bad).unwrap_err().exit_code(), 2);
    }
}
