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
    /// Also serve the API on TCP (with TLS and a bearer token; all three
    /// of --tls-cert, --tls-key and --token-file are then required).
    #[arg(long, value_name = "ADDR:PORT", requires_all = ["tls_cert", "tls_key", "token_file"])]
    listen: Option<std::net::SocketAddr>,
    /// The TLS certificate chain (PEM) for --listen.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM) for --listen.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// A file holding the bearer token TCP clients must present.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// This host's name in topologies: nodes with `host = "NAME"` (or no
    /// `host`) run here.
    #[arg(long, value_name = "NAME", env = "VBET_HOST_NAME")]
    host_name: Option<String>,
    /// Another host's orchestrator, which runs the nodes whose `host` is
    /// NAME. Repeatable; reached with TLS and a token only.
    #[arg(
        long,
        value_name = "NAME=https://HOST:PORT",
        env = "VBET_PEERS",
        value_delimiter = ',',
        requires_all = ["peer_ca", "peer_token_file"]
    )]
    peer: Vec<orchestrator::peers::Peer>,
    /// The CA certificate (PEM) the peers' certificates are checked against.
    #[arg(long, value_name = "FILE", env = "VBET_PEER_CA")]
    peer_ca: Option<PathBuf>,
    /// A file holding the token presented to the peers.
    #[arg(long, value_name = "FILE", env = "VBET_PEER_TOKEN_FILE")]
    peer_token_file: Option<PathBuf>,
    /// The address peers send this host's VXLAN traffic to (default: the
    /// address this host reaches the peer from).
    #[arg(long, value_name = "IP")]
    vxlan_address: Option<std::net::IpAddr>,
    /// UDP ports for the VXLAN ends of cables between hosts.
    #[arg(long, value_name = "LOW-HIGH", default_value = "47000-48999", value_parser = orchestrator::peers::parse_port_range)]
    vxlan_ports: (u16, u16),
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
    // Its children (switches, monitors) inherit the raised limit.
    if let Err(e) = vbet_port::socket::raise_open_file_limit() {
        tracing::warn!("cannot raise the open-file limit: {e}");
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
    let tcp = match (args.listen, args.tls_cert, args.tls_key, args.token_file) {
        (Some(listen), Some(cert), Some(key), Some(token_file)) => {
            Some(orchestrator::daemon::TcpApi {
                listen,
                cert,
                key,
                token_file,
            })
        }
        _ => None,
    };
    let peers = orchestrator::peers::Peers {
        own_name: args.host_name,
        peers: args.peer.into_iter().map(|p| (p.name.clone(), p)).collect(),
        ca: args.peer_ca,
        token_file: args.peer_token_file,
        vxlan_address: args.vxlan_address,
        vxlan_ports: args.vxlan_ports,
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(orchestrator::daemon::run(
                layout,
                bin_dir,
                tcp,
                peers,
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
