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

/// Serves the orchestrator on `layout`'s socket until `shutdown`
/// completes; `ready` is called once it serves.
pub async fn run(
    layout: Layout,
    bin_dir: PathBuf,
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

    let orchestrator = Arc::new(Orchestrator::new(layout.clone(), bin_dir));
    tokio::spawn(orchestrator.clone().watch());
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<OrchestratorServer<OrchestratorService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vbet_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
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
    let _ = std::fs::remove_file(&socket);
    served.context("the API server failed")?;
    Ok(())
}
