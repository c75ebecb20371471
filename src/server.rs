//! `arca server`: builds the store, the vault core and the HTTP server, and runs until a signal.

use std::path::PathBuf;

/// Flags of `arca server`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Development mode: plain HTTP, KV v2 at secret/, initialized and unsealed, root token printed.
    #[arg(long)]
    pub dev: bool,
    /// Production mode: read this TOML config (see config/arca.toml).
    #[arg(long, value_name = "FILE", conflicts_with = "dev")]
    pub config: Option<PathBuf>,
    /// Address to listen on (dev default 127.0.0.1:8200). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory (dev default: a fresh temporary directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Fixed root token for dev mode.
    #[arg(long, value_name = "TOKEN", env = "ARCA_DEV_ROOT_TOKEN", hide_env_values = true)]
    pub dev_root_token: Option<String>,
    /// Log format: text (default) or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

pub fn run(_args: ServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
