//! The `arca` binary: the server and the client commands.

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
    /// Operate the server: init, unseal, seal, status, key rotation
    Operator(arca::cli::OperatorArgs),
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
        Command::Operator(args) => arca::cli::run_operator(args),
    }
}
