//! Running the orchestrator: its API socket, health and reflection, and a
//! clean shutdown. Labs are separate processes and outlive it.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use vbet_proto::vbet::orchestrator::v1::orchestrator_server::OrchestratorServer;

use crate::api::OrchestratorService;
use crate::lab::Orchestrator;
use crate::layout::Layout;

/// Serving the API on TCP too: always with TLS and a bearer token.
#[derive(Debug, Clone)]
pub struct TcpApi {
    /// Address to listen on.
    pub listen: std::net::SocketAddr,
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// A file holding the token clients must present (`Bearer TOKEN`).
    pub token_file: PathBuf,
}

/// Refuses requests without the right bearer token.
#[derive(Clone)]
struct TokenCheck(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match request.metadata().get("authorization") {
            Some(given) if given == self.0 => Ok(request),
            Some(_) => Err(tonic::Status::unauthenticated("wrong bearer token")),
            None => Err(tonic::Status::unauthenticated(
                "a bearer token is required on TCP (vbet --token-file FILE)",
            )),
        }
    }
}

/// Serves the orchestrator on `layout`'s socket (and, if asked, on TCP
/// with TLS and a token) until `shutdown` completes, driving `peers` for
/// multi-host labs; `ready` is called once it serves.
pub async fn run(
    layout: Layout,
    bin_dir: PathBuf,
    tcp: Option<TcpApi>,
    peers: crate::peers::Peers,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(&layout.run_root)
        .with_context(|| format!("cannot create {}", layout.run_root.display()))?;
    let socket = layout.orchestrator_socket();
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            anyhow::bail!(
                "an orchestrator already serves {}; stop it first",
                socket.display()
            );
        }
        std::fs::remove_file(&socket)
            .with_context(|| format!("cannot remove stale socket {}", socket.display()))?;
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let listener = UnixListener::bind(&socket);
    nix::sys::stat::umask(old);
    let listener = listener.with_context(|| format!("cannot listen on {}", socket.display()))?;

    let orchestrator = Arc::new(Orchestrator::new(layout.clone(), bin_dir).with_peers(peers));
    tokio::spawn(orchestrator.clone().watch());
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<OrchestratorServer<OrchestratorService>>()
        .await;
    let reflection = vbet_proto::reflection::Reflection::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tcp_server = match tcp {
        Some(tcp) => {
            let cert = std::fs::read(&tcp.cert)
                .with_context(|| format!("cannot read the certificate {}", tcp.cert.display()))?;
            let key = std::fs::read(&tcp.key)
                .with_context(|| format!("cannot read the key {}", tcp.key.display()))?;
            let token = std::fs::read_to_string(&tcp.token_file)
                .with_context(|| format!("cannot read the token {}", tcp.token_file.display()))?;
            anyhow::ensure!(
                token.trim().len() >= 16,
                "the token in {} is shorter than 16 characters",
                tcp.token_file.display()
            );
            let expected = format!("Bearer {}", token.trim())
                .parse()
                .context("the token holds characters a header cannot carry")?;
            let tls = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(cert, key));
            let tcp_reflection = reflection.clone();
            let mut stop = stop_rx.clone();
            let service = OrchestratorServer::new(OrchestratorService::new(orchestrator.clone()));
            let router = tonic::transport::Server::builder()
                .tls_config(tls)
                .context("bad TLS configuration")?
                .layer(tonic::service::InterceptorLayer::new(TokenCheck(expected)))
                .add_service(tcp_reflection)
                .add_service(service);
            tracing::info!(listen = %tcp.listen, "serving on TCP with TLS and a token");
            Some(tokio::spawn(router.serve_with_shutdown(
                tcp.listen,
                async move {
                    let _ = stop.changed().await;
                },
            )))
        }
        None => None,
    };
    tracing::info!(socket = %socket.display(), "serving");
    ready();
    let served = tonic::transport::Server::builder()
        .trace_fn(|request| tracing::info_span!("rpc", path = %request.uri().path()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(OrchestratorServer::new(OrchestratorService::new(
            orchestrator,
        )))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = stop_tx.send(true);
    if let Some(server) = tcp_server {
        let _ = server.await;
    }
    let _ = std::fs::remove_file(&socket);
    served.context("the API server failed")?;
    Ok(())
}
