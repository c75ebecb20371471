//! The `arca` binary: the server and the client commands.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A self-hosted secrets vault with a Vault-compatible HTTP API.
#[derive(Debug, Parser)]
#[command(
    name = "arca",
    version,
    about = "A self-hosted secrets vault with a Vault-compatible HTTP API",
    long_about = arca::cli::LONG_ABOUT
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the arca server
    Server(arca::server::ServerArgs),
    /// Read and write secrets in a KV v2 mount
    Kv(arca::cli::KvArgs),
    /// Run a command with secrets in its environment: arca run --secret DB=secret/db/prod -- CMD
    Run(arca::cli::run::RunArgs),
    /// Operate the server: init, unseal, seal, status, key rotation
    Operator(arca::cli::OperatorArgs),
    /// Create, look up, renew and revoke tokens; show a token's capabilities
    Token(arca::cli::TokenArgs),
    /// Write, read, list and delete ACL policies
    Policy(arca::cli::PolicyArgs),
    /// Token roles and the roles file: list, read, reload, and a token of a role
    Role(arca::cli::RoleArgs),
    /// Exchange an AppRole secret id or a TLS client certificate for a token
    Login(arca::cli::LoginArgs),
    /// Secret rotation: policies, rotate now, resume/abort, status
    Rotate(arca::cli::rotate::RotateArgs),
    /// Audit journal: verify it offline, export it, see who read a secret
    Audit(arca::cli::audit::AuditArgs),
}

fn main() -> ExitCode {
    // Usage errors exit with 2 and --help/--version with 0 (clap's codes, as the vault CLI).
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => match arca::server::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Kv(args) => arca::cli::run_kv(args),
        Command::Run(args) => arca::cli::run::run(args),
        Command::Operator(args) => arca::cli::run_operator(args),
        Command::Token(args) => arca::cli::run_token(args),
        Command::Policy(args) => arca::cli::run_policy(args),
        Command::Role(args) => arca::cli::run_role(args),
        Command::Login(args) => arca::cli::run_login(args),
        Command::Rotate(args) => arca::cli::rotate::run(args),
        Command::Audit(args) => arca::cli::audit::run_audit(args),
    }
}
