//! Log set-up shared by switchd and hubd.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Starts logging to stderr: `RUST_LOG` filters (default `info`); plain
/// lines without colour unless stderr is a terminal, or JSON.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
