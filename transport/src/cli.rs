//! Command-line flags shared by every client of the manager (executor, tui, user-sim,
//! fix-gateway), so they are spelled, defaulted and explained the same way everywhere.
//!
//! Defaults point at a manager started in the current directory with its default data dir, so
//! `manager` in one terminal and a client in another just work.

use std::path::{Path, PathBuf};

/// Where the manager is and how to trust it.
#[derive(clap::Args, Debug, Clone)]
pub struct ManagerArgs {
    /// Manager address, host:port (what the manager printed, or wrote to its --ready-file).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub manager: String,
    /// The manager's certificate (cert.pem in its data dir), pinned as the only trusted root.
    #[arg(long, default_value = "gridmatch-data/cert.pem")]
    pub ca: PathBuf,
}

/// The operator token, for executors, monitors and gateway sessions.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArg {
    /// Operator token: the value, or `@FILE` to read it from a file (the manager's data dir
    /// holds it in `token`).
    #[arg(
        long,
        env = "GRIDMATCH_TOKEN",
        hide_env_values = true,
        default_value = "@gridmatch-data/token"
    )]
    pub token: String,
}

impl TokenArg {
    /// The token itself (reads `@FILE`).
    pub fn resolve(&self) -> Result<String, SecretError> {
        read_secret(&self.token)
    }
}

/// A secret given on the command line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is empty", path.display())]
    Empty { path: PathBuf },
    #[error("the token is empty")]
    EmptyValue,
}

/// A secret given as a value or as `@FILE` (trimmed).
pub fn read_secret(value: &str) -> Result<String, SecretError> {
    match value.strip_prefix('@') {
        Some(path) => {
            let path = Path::new(path);
            let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                path: path.to_owned(),
                source,
            })?;
            let t = text.trim();
            if t.is_empty() {
                return Err(SecretError::Empty {
                    path: path.to_owned(),
                });
            }
            Ok(t.to_string())
        }
        None if value.trim().is_empty() => Err(SecretError::EmptyValue),
        None => Ok(value.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_values_or_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "abc\n").unwrap();
        assert_eq!(read_secret("xyz").unwrap(), "xyz");
        assert_eq!(read_secret(&format!("@{}", f.display())).unwrap(), "abc");
        let missing = read_secret("@/nonexistent/token").unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/token"), "{missing}");
        std::fs::write(&f, " \n").unwrap();
        assert!(read_secret(&format!("@{}", f.display())).is_err());
        assert!(read_secret("  ").is_err());
    }
}
