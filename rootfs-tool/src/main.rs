//! `rootfs-tool`: builds, imports, exports and checks vBET root file system
//! images, and manages the copy-on-write layers VMs run on.

use std::process::ExitCode;

use clap::Parser;
use rootfs_tool::cli::{Cli, run};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rootfs-tool: {e:#}");
            ExitCode::FAILURE
        }
    }
}
