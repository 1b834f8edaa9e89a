//! Log output of the project's binaries (the migrator's command line, the API): one format,
//! to standard error, coloured on a terminal, filtered by `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the process's log subscriber: `RUST_LOG` if set, else `default_filter`. `verbose`
/// also shows each line's target. Does nothing if a subscriber is installed already.
pub fn init_tracing(default_filter: &str, verbose: bool) {
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose)
        .try_init();
}
