//! `arca login ...`: exchange a credential for a token (AppRole role_id + secret_id, or a TLS
//! client certificate), like `vault write auth/approle/login` / `vault login -method=cert`.
//!
//! The token is printed, never stored: put it in ARCA_TOKEN for the next commands. The
//! ARCA_TOKEN of the environment is not sent with a login.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use super::token::{print_issued, print_warnings, secret_arg};
use super::{CliError, ClientOpts, CmdResult, Ctx};

/// `arca login`: flags and subcommand.
#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: LoginCommand,
}

#[derive(Debug, Subcommand)]
pub enum LoginCommand {
    /// Log in with an AppRole role_id and secret_id (auth/approle/login)
    #[command(after_help = APPROLE_HELP)]
    Approle(ApproleArgs),
    /// Log in with a TLS client certificate (auth/cert/login; the server must trust its CA)
    #[command(after_help = CERT_HELP)]
    Cert(CertArgs),
}

const APPROLE_HELP: &str = "\
Give the secret id on standard input with `--secret-id -`: an argument is visible to every \
user in `ps` and stays in the shell history.

Example (a training job):
  export ARCA_TOKEN=$(printf %s \"$SECRET_ID\" | \\
      arca login approle --role-id \"$ROLE_ID\" --secret-id - --field token)";

const CERT_HELP: &str = "\
The connection to the server must be https (--address, ARCA_ADDR); --ca-cert names the CA that \
signed the server's certificate. The client key never leaves this machine.

Example:
  export ARCA_TOKEN=$(arca login cert --role pipeline --client-cert job.pem --client-key job-key.pem --field token)";

#[derive(Debug, Args)]
pub struct ApproleArgs {
    /// The role's role_id (not a secret on its own)
    #[arg(long, value_name = "ID")]
    pub role_id: String,
    /// The secret_id, or '-' to read it from standard input (recommended)
    #[arg(long, value_name = "ID|-")]
    pub secret_id: String,
    /// Print only this field of the result (token, accessor, policies, ttl, renewable), raw
    #[arg(long, value_name = "FIELD")]
    pub field: Option<String>,
}

#[derive(Debug, Args)]
pub struct CertArgs {
    /// The role of the roles file to log in as (default: the one the certificate maps to)
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
    /// PEM file of the client certificate (and its chain)
    #[arg(long, value_name = "FILE")]
    pub client_cert: PathBuf,
    /// PEM file of the client certificate's private key
    #[arg(long, value_name = "FILE")]
    pub client_key: PathBuf,
    /// Print only this field of the result (token, accessor, policies, ttl, renewable), raw
    #[arg(long, value_name = "FIELD")]
    pub field: Option<String>,
}

/// The PEM identity reqwest wants: the private key followed by the certificate chain.
pub fn identity_pem(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p)
            .map_err(|e| CliError::Failed(format!("reading the {what} {}: {e}", p.display())))
    };
    let mut pem = Zeroizing::new(read(key, "client key")?);
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(&read(cert, "client certificate")?);
    Ok(pem)
}

/// Runs `arca login approle`.
pub fn approle(ctx: &mut Ctx<'_>, a: &ApproleArgs) -> CmdResult {
    if a.role_id == "-" {
        return Err(CliError::Usage(
            "--role-id cannot be read from standard input; give --secret-id - instead".into(),
        ));
    }
    let role_id = a.role_id.trim();
    if role_id.is_empty() {
        return Err(CliError::Usage("--role-id is empty".into()));
    }
    let secret_id = secret_arg(&a.secret_id, "secret id")?;
    let resp = ctx
        .client
        .approle_login(role_id, &secret_id)
        .map_err(CliError::api("logging in with AppRole"))?;
    print_warnings(&resp.warnings);
    print_issued(ctx, &resp.auth, a.field.as_deref())
}

/// Runs `arca login cert` (the client already presents the certificate).
pub fn cert(ctx: &mut Ctx<'_>, a: &CertArgs) -> CmdResult {
    let resp = ctx
        .client
        .cert_login(a.role.as_deref())
        .map_err(CliError::api("logging in with the client certificate"))?;
    print_warnings(&resp.warnings);
    print_issued(ctx, &resp.auth, a.field.as_deref())
}

/// The client for `arca login cert`: the address and CA of `opts`, with the certificate.
pub fn cert_client(opts: &ClientOpts, a: &CertArgs) -> Result<crate::client::Client, CliError> {
    let (addr, ca) = opts.resolved();
    let pem = identity_pem(&a.client_cert, &a.client_key)?;
    crate::client::Client::with_client_identity(&addr, ca.as_deref(), &pem).map_err(|e| match e {
        crate::client::ClientError::InvalidInput(m) => CliError::Usage(m),
        other => CliError::Failed(other.to_string()),
    })
}
