//! Command-line flags shared by every client of the manager (executor, tui).

use std::path::PathBuf;

/// Where the manager is, how to trust it, and the operator token.
#[derive(clap::Args, Debug, Clone)]
pub struct ManagerArgs {
    /// Manager address, host:port (as written to the manager's --ready-file).
    #[arg(long)]
    pub manager: String,
    /// The manager's certificate (cert.pem in its data dir), pinned as the only trusted root.
    #[arg(long)]
    pub ca: PathBuf,
    /// Operator token (the `token` file in the manager's data dir).
    #[arg(long, env = "GRIDMATCH_TOKEN", hide_env_values = true)]
    pub token: String,
}
