//! The vBET switch and hub daemons.
//!
//! One process serves one switch or hub: a control socket speaking the
//! uml_switch/VDE port protocol version 3 (so UML kernels, VDE tools, QEMU
//! and vBET VMs plug in unchanged), a [`fabric::Fabric`] that moves frames
//! between ports, and the `Switch` gRPC API ([`api::SwitchService`]).
//! switchd and hubd differ only in the forwarding decision.
#![deny(unsafe_code)]

pub mod api;
pub mod config;
pub mod daemon;
pub mod fabric;
pub mod logging;

use std::process::ExitCode;

use clap::Parser;
use vbet_port::forward::Forwarding;

use crate::config::{Args, Config};

/// The whole of a daemon's `main`: flags, configuration, logging, runtime,
/// signals, readiness; errors become one message and exit code 1.
pub fn main_for(mode: Forwarding) -> ExitCode {
    let args = Args::parse();
    let env_prefix = match mode {
        Forwarding::Switch => "SWITCHD",
        Forwarding::Hub => "HUBD",
    };
    let config = match Config::load(&args, env_prefix) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    if args.show_config {
        print!("{}", toml::to_string(&config).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    logging::init(config.log_format);
    if let Err(e) = vbet_port::socket::raise_open_file_limit() {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    raise_priority();
    // One thread, as uml_switch and vde_switch: a frame is forwarded by
    // the thread that read it, with no hand-off between workers.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let result = runtime.block_on(daemon::run(config, mode, shutdown_signal(), || {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// The nice value a switch runs at when it may: ahead of the guests it
/// carries. Without it, a thousand VMs booting on two cores left a switch
/// a few percent of a CPU, and their own port handshakes waited half a
/// minute.
const NICE: i32 = -10;

/// Lowers this process's nice value to [`NICE`] (root only; otherwise it
/// stays as it was, with a note in the log).
fn raise_priority() {
    if let Err(e) = vbet_port::socket::raise_priority(NICE) {
        tracing::info!("running at the default priority: {e}");
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Prints an error with its whole chain of causes, once.
fn fail(error: &dyn std::error::Error) -> ExitCode {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
