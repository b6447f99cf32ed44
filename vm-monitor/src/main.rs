//! `vm-monitor`: one process that is one vBET VM. See `vm-monitor --help`.

use clap::Parser;
use vm_monitor::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    // One malloc arena: a monitor's few threads allocate little, and every
    // extra arena is private memory in each of a host's thousand monitors.
    // SAFETY: mallopt only sets an allocator parameter; no thread exists yet.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = match cli.command {
        Command::Run(args) => vm_monitor::cli::run(args).map(|()| 0),
        Command::Exec(args) => vm_monitor::cli::exec(args),
        Command::Fault(args) => vm_monitor::cli::fault(args).map(|()| 0),
        Command::Trace(args) => vm_monitor::cli::trace(args).map(|()| 0),
        Command::Clock(args) => vm_monitor::cli::clock(args).map(|()| 0),
        Command::Cleanup(args) => vm_monitor::cli::cleanup(args).map(|()| 0),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("vm-monitor: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
