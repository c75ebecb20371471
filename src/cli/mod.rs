//! The `arca` command line (everything but `arca server`, which lives in `crate::server`).
//!
//! Argument structs are clap derives so `bin/arca.rs` only assembles them; each group
//! (`kv`, `operator`) runs through [`run_kv`] / [`run_operator`], which print errors as
//! `Error: <message>` on stderr and turn them into the exit codes documented in
//! [`LONG_ABOUT`].

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::client::{env_first, Client, ClientError, DEFAULT_ADDR};

pub mod audit;
pub mod kv;
pub mod login;
pub mod operator;
pub mod output;
pub mod policy;
pub mod role;
pub mod rotate;
pub mod run;
pub mod token;

pub use kv::{KvArgs, KvCommand, KvMetadataCommand};
pub use login::{LoginArgs, LoginCommand};
pub use operator::{OperatorArgs, OperatorCommand};
pub use policy::{PolicyArgs, PolicyCommand};
pub use role::{RoleArgs, RoleCommand};
pub use token::{TokenArgs, TokenCommand};

/// The top-level `arca --help` text: what the client commands use, and the exit codes.
pub const LONG_ABOUT: &str = "\
A self-hosted secrets vault with a Vault-compatible HTTP API.

`arca server` runs the server. The client commands (kv, run, operator, token, policy, role, login, rotate, audit) talk to the server at --address (env ARCA_ADDR, then \
VAULT_ADDR; default http://127.0.0.1:8200) and authenticate with the token in the environment \
variable ARCA_TOKEN (or VAULT_TOKEN). There is deliberately no --token flag: command lines are \
visible to every user of the machine (ps, /proc). For the same reason every command that takes \
a token or a secret id as an argument also accepts '-' to read it from standard input.

Exit codes (as the vault CLI):
  0  success
  1  error: the server refused or failed the request (permission denied, sealed, bad input), \
or could not be reached
  2  usage error (bad flags or arguments), or not found (missing secret, version or folder; \
deleted or destroyed version); `arca operator status`: the server is sealed";

/// Output format of the client commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Human-readable key/value tables.
    #[default]
    Table,
    /// The API's JSON (`data` of the response), pretty-printed.
    Json,
}

/// Connection and output flags shared by the client commands; accepted anywhere after `kv` or
/// `operator`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientOpts {
    /// Server address [env: ARCA_ADDR, then VAULT_ADDR] [default: http://127.0.0.1:8200]
    #[arg(long, global = true, value_name = "URL")]
    pub address: Option<String>,
    /// PEM file of CA certificates to trust for TLS [env: ARCA_CACERT, then VAULT_CACERT]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl ClientOpts {
    /// The server address and CA file: flags first, then the environment.
    pub fn resolved(&self) -> (String, Option<PathBuf>) {
        let addr = self
            .address
            .clone()
            .or_else(|| env_first(&["ARCA_ADDR", "VAULT_ADDR"]))
            .unwrap_or_else(|| DEFAULT_ADDR.to_string());
        let ca = self
            .ca_cert
            .clone()
            .or_else(|| env_first(&["ARCA_CACERT", "VAULT_CACERT"]).map(PathBuf::from));
        (addr, ca)
    }

    /// The client: flags first, then the environment. The token only ever comes from the
    /// environment.
    pub fn client(&self) -> Result<Client, CliError> {
        let (addr, ca) = self.resolved();
        Client::new(&addr, Client::token_from_env(), ca.as_deref()).map_err(|e| match e {
            ClientError::InvalidInput(m) => CliError::Usage(m),
            other => CliError::Failed(other.to_string()),
        })
    }
}

/// An error of a client command, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Missing secret, version or folder: exit 2.
    #[error("{0}")]
    NotFound(String),
    /// Any other failure: exit 1.
    #[error("{0}")]
    Failed(String),
    /// A failed API call, with what was being done: exit 1, or 2 for "not found".
    #[error("{context}: {source}")]
    Api {
        context: String,
        source: ClientError,
    },
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::NotFound(_) => 2,
            CliError::Api { source, .. } if source.is_not_found() => 2,
            CliError::Api { source, .. } => match source {
                ClientError::InvalidInput(_) => 2,
                _ => 1,
            },
            CliError::Failed(_) | CliError::Io(_) => 1,
        }
    }

    /// Wraps a client error with what was being done (`"reading secret/data/x"`).
    pub fn api(context: impl Into<String>) -> impl FnOnce(ClientError) -> CliError {
        let context = context.into();
        move |source| CliError::Api { context, source }
    }
}

/// Where a command writes and how.
pub struct Ctx<'a> {
    pub client: Client,
    pub format: Format,
    pub out: &'a mut dyn Write,
    /// Raw single values end with a newline only on a terminal (as `vault -field`), so
    /// `arca kv get --field password x > file` stores exactly the value.
    pub stdout_is_tty: bool,
}

impl Ctx<'_> {
    /// Prints `value` as pretty JSON.
    pub fn json<T: serde::Serialize>(&mut self, value: &T) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Failed(format!("encoding JSON output: {e}")))?;
        writeln!(self.out, "{text}")?;
        Ok(())
    }

    pub fn print(&mut self, text: &str) -> Result<(), CliError> {
        self.out.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// What a command returns on success: the exit code (0, or 2 for `operator status` on a
/// sealed server).
pub type CmdResult = Result<u8, CliError>;

fn finish(result: CmdResult, out: &mut dyn Write) -> ExitCode {
    // Flush before reporting so stdout and stderr come out in order on a terminal.
    let flushed = out.flush();
    match result.and_then(|code| flushed.map(|()| code).map_err(CliError::from)) {
        Ok(code) => ExitCode::from(code),
        // A closed pipe (`arca kv list x | head -1`) is not worth a message.
        Err(CliError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(1),
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn with_ctx(opts: &ClientOpts, f: impl FnOnce(&mut Ctx<'_>) -> CmdResult) -> ExitCode {
    with_client_ctx(opts.client(), opts, f)
}

fn with_client_ctx(
    client: Result<Client, CliError>,
    opts: &ClientOpts,
    f: impl FnOnce(&mut Ctx<'_>) -> CmdResult,
) -> ExitCode {
    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    let mut out = stdout.lock();
    let result = client.and_then(|client| {
        let mut ctx = Ctx {
            client,
            format: opts.format,
            out: &mut out,
            stdout_is_tty: tty,
        };
        f(&mut ctx)
    });
    finish(result, &mut out)
}

/// Runs `arca kv ...`.
pub fn run_kv(args: KvArgs) -> ExitCode {
    let KvArgs {
        opts,
        mount,
        command,
    } = args;
    with_ctx(&opts, |ctx| kv::run(ctx, &mount, command))
}

/// Runs `arca operator ...`.
pub fn run_operator(args: OperatorArgs) -> ExitCode {
    let OperatorArgs { opts, command } = args;
    with_ctx(&opts, |ctx| operator::run(ctx, command))
}

/// Runs `arca token ...`.
pub fn run_token(args: TokenArgs) -> ExitCode {
    let TokenArgs { opts, command } = args;
    with_ctx(&opts, |ctx| token::run(ctx, command))
}

/// Runs `arca policy ...`.
pub fn run_policy(args: PolicyArgs) -> ExitCode {
    let PolicyArgs { opts, command } = args;
    with_ctx(&opts, |ctx| policy::run(ctx, command))
}

/// Runs `arca role ...`.
pub fn run_role(args: RoleArgs) -> ExitCode {
    let RoleArgs { opts, command } = args;
    with_ctx(&opts, |ctx| role::run(ctx, command))
}

/// Runs `arca login ...`. The environment's token is not used: a login is how one gets a token.
pub fn run_login(args: LoginArgs) -> ExitCode {
    let LoginArgs { opts, command } = args;
    match command {
        LoginCommand::Approle(a) => with_ctx(&opts, |ctx| login::approle(ctx, &a)),
        LoginCommand::Cert(a) => with_client_ctx(login::cert_client(&opts, &a), &opts, |ctx| {
            login::cert(ctx, &a)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::NotFound("x".into()).exit_code(), 2);
        assert_eq!(CliError::Failed("x".into()).exit_code(), 1);
        let api = |source| CliError::Api {
            context: "reading".into(),
            source,
        };
        assert_eq!(api(ClientError::NotFound).exit_code(), 2);
        assert_eq!(api(ClientError::Sealed).exit_code(), 1);
        assert_eq!(api(ClientError::Transport("x".into())).exit_code(), 1);
        let denied = api(ClientError::Http {
            status: 403,
            errors: vec!["permission denied".into()],
        });
        assert_eq!(denied.exit_code(), 1);
        assert_eq!(denied.to_string(), "reading: permission denied (HTTP 403)");
    }
}
