//! Process plumbing shared by the binaries: tracing setup, shutdown signals, the exit status.

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); colours only on a terminal and
/// never with `NO_COLOR` set, so log files stay greppable.
pub fn init_tracing() {
    init_tracing_at("info");
}

/// [`init_tracing`] with another default level when `RUST_LOG` is unset.
pub fn init_tracing_at(default_level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// A binary's exit status from what its run returned. An error is printed as
/// `BINARY: error: ...`, its whole context chain on one line (`{:#}`) and no backtrace: at a
/// binary's edge it is mostly an operator's mistake (a flag, a file, an address).
pub fn exit_code<E: std::fmt::Display>(
    binary: &str,
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary}: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
