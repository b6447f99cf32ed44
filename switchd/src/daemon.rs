//! Running a switch or hub: the control socket, the API socket, and a
//! clean shutdown that leaves no socket file behind.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use vbet_port::forward::Forwarding;
use vbet_port::protocol::RequestError;
use vbet_port::server::{
    BindError, ControlSocket, HandshakeError, bind_private, read_request, reclaim_stale, reply,
};
use vbet_port::socket::peer_credentials;
use vbet_proto::vbet::switch::v1::switch_server::SwitchServer;

use crate::api::SwitchService;
use crate::config::{Config, ConfigError};
use crate::fabric::{Fabric, FabricConfig, PortError};

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not be set up.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The API server failed.
    #[error("gRPC API server on {path} failed")]
    Api {
        /// The API socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// A VXLAN trunk could not be set up.
    #[error("cannot set up the VXLAN trunk {endpoint}")]
    Vxlan {
        /// The trunk.
        endpoint: vbet_port::vxlan::Endpoint,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs a switch (or hub) until `shutdown` completes, then removes every
/// port and socket file. `ready` is called once it serves.
pub async fn run(
    config: Config,
    mode: Forwarding,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(),
) -> Result<(), DaemonError> {
    let socket_mode = config.socket_mode()?;
    let ctl = ControlSocket::bind(&config.ctl, socket_mode)?;
    let fabric = Fabric::new(FabricConfig {
        mode,
        max_ports: config.max_ports,
        max_frame: config.max_frame,
        mac_capacity: config.mac_capacity,
        mac_aging: Duration::from_secs(config.mac_aging),
        data_prefix: config.ctl.clone(),
        socket_mode,
    });
    let service = Arc::new(SwitchService::new(fabric.clone(), config.ctl.clone()));
    let api = match &config.api {
        Some(path) => Some(ApiSocket::bind(path, socket_mode)?),
        None => None,
    };

    for endpoint in config.vxlan_trunks()? {
        let vxlan = vbet_port::vxlan::VxlanSocket::bind(endpoint)
            .await
            .map_err(|source| DaemonError::Vxlan { endpoint, source })?;
        let port = fabric.add_vxlan(vxlan).map_err(|e| DaemonError::Vxlan {
            endpoint,
            source: std::io::Error::other(e),
        })?;
        tracing::info!(port = port.id, %endpoint, "VXLAN trunk");
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ports = tokio::spawn(accept_ports(fabric.clone(), ctl, stop_rx.clone()));
    let uplinks: Vec<_> = config
        .uplinks
        .iter()
        .map(|target| tokio::spawn(uplink(fabric.clone(), target.clone(), stop_rx.clone())))
        .collect();
    let server = api.as_ref().map(|api| {
        tokio::spawn(serve_api(
            api.take_listener(),
            service.clone(),
            api.path.clone(),
            stop_rx,
        ))
    });
    tracing::info!(
        kind = mode.name(),
        ctl = %config.ctl.display(),
        api = ?config.api,
        "serving"
    );
    ready();
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = ports.await;
    for task in uplinks {
        let _ = task.await;
    }
    service.stop_file_captures().await;
    fabric.remove_all();
    if let Some(server) = server {
        if let Ok(Err(e)) = server.await {
            return Err(e);
        }
    }
    drop(api);
    Ok(())
}

/// The API socket file, removed when dropped.
struct ApiSocket {
    path: PathBuf,
    listener: std::sync::Mutex<Option<UnixListener>>,
}

impl ApiSocket {
    fn bind(path: &std::path::Path, mode: u32) -> Result<ApiSocket, BindError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| BindError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        reclaim_stale(path)?;
        let listener = bind_private(path, mode, |p| UnixListener::bind(p)).map_err(|source| {
            BindError::Bind {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(ApiSocket {
            path: path.to_owned(),
            listener: std::sync::Mutex::new(Some(listener)),
        })
    }

    fn take_listener(&self) -> UnixListener {
        self.listener
            .lock()
            .expect("listener poisoned")
            .take()
            .expect("listener taken once")
    }
}

impl Drop for ApiSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_api(
    listener: UnixListener,
    service: Arc<SwitchService>,
    path: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SwitchServer<Arc<SwitchService>>>()
        .await;
    let reflection = vbet_proto::reflection::Reflection::new();
    tonic::transport::Server::builder()
        .trace_fn(|request| tracing::info_span!("rpc", path = %request.uri().path()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(SwitchServer::from_arc(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            let _ = stop.changed().await;
        })
        .await
        .map_err(|source| DaemonError::Api { path, source })
}

async fn accept_ports(
    fabric: Arc<Fabric>,
    ctl: ControlSocket,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = ctl.accept() => match accepted {
                Ok(stream) => {
                    tokio::spawn(handshake(fabric.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// Keeps a port plugged into the switch at `target`, plugging in again
/// (backing off up to a second) whenever that switch is not there.
async fn uplink(
    fabric: Arc<Fabric>,
    target: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut wait = Duration::from_millis(20);
    loop {
        let path = target.clone();
        let connected = tokio::select! {
            c = tokio::task::spawn_blocking(move || {
                vbet_port::client::connect_as(&path, vbet_port::protocol::DataMode::Fast)
            }) => c,
            _ = stop.changed() => return,
        };
        match connected {
            Ok(Ok(client)) => match fabric.add_uplink(client) {
                Ok((port, mut ctl)) => {
                    wait = Duration::from_millis(20);
                    tracing::info!(port = port.id, target = %target.display(), "uplink plugged in");
                    let mut byte = [0u8; 1];
                    tokio::select! {
                        _ = tokio::io::AsyncReadExt::read(&mut ctl, &mut byte) => {}
                        _ = stop.changed() => {
                            fabric.remove_port(port.id);
                            return;
                        }
                    }
                    tracing::warn!(target = %target.display(), "the uplink's switch went away");
                    fabric.remove_port(port.id);
                }
                Err(e) => {
                    tracing::warn!(target = %target.display(), error = %e, "cannot add the uplink")
                }
            },
            Ok(Err(e)) => {
                tracing::debug!(target = %target.display(), error = %e, "uplink not plugged in yet")
            }
            Err(_) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

/// Turns a control connection into a port, or refuses it (closing the
/// connection, as the protocol has no error reply), counting why.
async fn handshake(fabric: Arc<Fabric>, mut stream: tokio::net::UnixStream) {
    let peer = peer_credentials(&stream).unwrap_or_default();
    let errors = &fabric.errors;
    let request = match read_request(&mut stream).await {
        Ok(request) => request,
        Err(e) => {
            let counter = match &e {
                HandshakeError::Short(_) | HandshakeError::Io(_) => &errors.short_request,
                HandshakeError::Request(RequestError::Short(_)) => &errors.short_request,
                HandshakeError::Request(RequestError::BadMagic(_)) => &errors.bad_magic,
                HandshakeError::Request(RequestError::BadVersion(_)) => &errors.bad_version,
                HandshakeError::Request(RequestError::BadType(_) | RequestError::BadAddress(_)) => {
                    &errors.bad_request_type
                }
            };
            counter.fetch_add(1, Relaxed);
            tracing::warn!(peer_pid = peer.pid, error = %e, "refused a port request");
            return;
        }
    };
    let (port, addr) = match fabric.add_port(&request, peer) {
        Ok(added) => added,
        Err(e) => {
            let counter = match e {
                PortError::Exhausted(_) => &errors.ports_exhausted,
                PortError::Unreachable { .. } | PortError::DataSocket { .. } => {
                    &errors.unreachable_peer
                }
            };
            counter.fetch_add(1, Relaxed);
            tracing::warn!(peer_pid = peer.pid, error = %e, "refused a port request");
            return;
        }
    };
    if let Err(e) = reply(&mut stream, &addr).await {
        tracing::warn!(port = port.id, error = %e, "client left during the handshake");
        fabric.remove_port(port.id);
        return;
    }
    tracing::info!(
        port = port.id,
        peer_pid = peer.pid,
        peer = %request.data_addr,
        description = %request.description,
        "port opened"
    );
    fabric.watch_control(port.id, stream);
}
