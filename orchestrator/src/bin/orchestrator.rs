//! `orchestrator`: holds vBET labs and serves the Orchestrator gRPC API
//! on RUN_ROOT/orchestrator.sock.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use orchestrator::layout::{DEFAULT_RUN_ROOT, Layout};

/// Serve the vBET orchestrator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where labs live; the API socket is RUN_ROOT/orchestrator.sock.
    #[arg(long, default_value = DEFAULT_RUN_ROOT, env = "VBET_RUN_ROOT")]
    run_root: PathBuf,
    /// Where switchd, hubd and vm-monitor are (default: beside this binary).
    #[arg(long, env = "VBET_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    if args.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let bin_dir = args.bin_dir.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin"))
    });
    let layout = Layout {
        run_root: args.run_root,
        tools: None,
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(orchestrator::daemon::run(
                layout,
                bin_dir,
                switchd::shutdown_signal(),
                || {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                },
            ))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
