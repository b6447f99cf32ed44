//! `chord-peer`: a Chord peer for vBET's §4.3 experiment, and the client
//! commands that query a ring. See `docs/chord.md`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use vbet_chord::rpc::RpcConfig;
use vbet_chord::{Id, PeerConfig, commands, peer};

#[derive(Parser)]
#[command(
    version,
    about = "A Chord peer (Stoica et al. 2001) over UDP, and a client for it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a peer until SIGTERM or SIGINT.
    Serve {
        /// Address to receive on (the peer's own address; its id is its hash).
        #[arg(long)]
        bind: SocketAddr,
        /// A peer of the ring to join through; without it, start a new ring.
        #[arg(long)]
        join: Option<SocketAddr>,
        /// Period of stabilize, check_predecessor and fix_fingers, in ms.
        #[arg(long, default_value_t = 200)]
        stabilize_ms: u64,
        /// Hash this address for the node id instead of --bind.
        #[arg(long)]
        id_from: Option<SocketAddr>,
        /// Length of the successor list (1 to 16).
        #[arg(long, default_value_t = 8)]
        successors: usize,
        /// Wait for an answer from another peer, per attempt, in ms.
        #[arg(long, default_value_t = 300)]
        rpc_timeout_ms: u64,
        /// Attempts after the first before a peer is taken as dead.
        #[arg(long, default_value_t = 2)]
        retries: u32,
    },
    /// Ask a peer to resolve keys; one line per key. Fails if any lookup fails.
    Lookup {
        #[command(flatten)]
        via: Via,
        /// Keys: `0x` and up to 8 hex digits is an id; anything else is hashed.
        #[arg(required_unless_present = "random", conflicts_with = "random")]
        keys: Vec<String>,
        /// Look up this many random ids instead.
        #[arg(long)]
        random: Option<usize>,
        /// Seed for --random.
        #[arg(long, default_value_t = 0, requires = "random")]
        seed: u64,
    },
    /// Print a peer's id, predecessor, successor list and finger table.
    Status {
        #[command(flatten)]
        via: Via,
    },
    /// Walk the ring along successors; succeed iff it closes after exactly
    /// --expect peers in increasing id order.
    Check {
        #[command(flatten)]
        via: Via,
        /// The number of peers the ring should have.
        #[arg(long)]
        expect: usize,
    },
}

#[derive(Args)]
struct Via {
    /// The peer to ask.
    #[arg(long)]
    via: SocketAddr,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
    /// Wait for each answer, in ms (a lookup answer waits for the whole lookup).
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
}

impl Via {
    fn rpc(&self) -> RpcConfig {
        RpcConfig {
            timeout: Duration::from_millis(self.timeout_ms),
            retries: 1,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse().command).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Serve {
            bind,
            join,
            stabilize_ms,
            id_from,
            successors,
            rpc_timeout_ms,
            retries,
        } => {
            let config = PeerConfig {
                join,
                id_from,
                stabilize: Duration::from_millis(stabilize_ms.max(1)),
                successors,
                rpc: RpcConfig {
                    timeout: Duration::from_millis(rpc_timeout_ms.max(1)),
                    retries,
                },
                ..PeerConfig::new(bind)
            };
            peer::run(config, shutdown_signal()?)
                .await
                .context("cannot run the peer")?;
            Ok(true)
        }
        Command::Lookup {
            via,
            keys,
            random,
            seed,
        } => {
            let ids = match random {
                Some(n) => commands::random_keys(n, seed),
                None => keys.iter().map(|k| Id::of_key(k)).collect(),
            };
            commands::lookup(via.via, &ids, via.json, via.rpc(), &mut out).await
        }
        Command::Status { via } => {
            commands::status(via.via, via.json, via.rpc(), &mut out).await?;
            Ok(true)
        }
        Command::Check { via, expect } => {
            commands::check(via.via, expect, via.json, via.rpc(), &mut out).await
        }
    }
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
