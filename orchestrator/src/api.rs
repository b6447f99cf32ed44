//! The `Orchestrator` gRPC service over an [`Orchestrator`].

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use vbet_proto::vbet::orchestrator::v1 as pb;
use vbet_proto::vbet::orchestrator::v1::orchestrator_server::Orchestrator as Service;
use vbet_proto::vbet::port::v1 as port_pb;
use vbet_proto::vbet::vm::v1 as vm_pb;

use crate::lab::{HostPart, LabError, Located, Orchestrator, TopologySource, summaries};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The gRPC face of an orchestrator.
#[derive(Debug)]
pub struct OrchestratorService {
    inner: Arc<Orchestrator>,
}

impl OrchestratorService {
    /// Serves `inner`.
    pub fn new(inner: Arc<Orchestrator>) -> OrchestratorService {
        OrchestratorService { inner }
    }
}

/// Who answers for a node: its monitor, or (on another host) that
/// host's orchestrator.
/// A client of a node's monitor.
type MonitorClient =
    vbet_proto::vbet::vm::v1::vm_monitor_client::VmMonitorClient<tonic::transport::Channel>;

enum NodeClient {
    Here(MonitorClient),
    Peer(crate::client::Client),
}

impl OrchestratorService {
    /// A client of the monitor of a node, or of the peer it runs on.
    async fn monitor(&self, node: Option<&pb::NodeRef>) -> Result<NodeClient, Status> {
        let node = node.ok_or_else(|| Status::invalid_argument("name the lab and the node"))?;
        let api = match self
            .inner
            .locate(&node.lab, &node.node)
            .await
            .map_err(status)?
        {
            Located::Here(api) => api,
            Located::Peer(host) => {
                return Ok(NodeClient::Peer(peer_client(&self.inner, &host).await?));
            }
        };
        vm_monitor::client::connect(&api)
            .await
            .map(NodeClient::Here)
            .map_err(|e| {
                Status::unavailable(format!(
                    "node {}: its monitor does not answer: {e}",
                    node.node
                ))
            })
    }
}

impl OrchestratorService {
    /// Passes a call about a node to its monitor (`here`), or to the peer
    /// orchestrator that runs it (`peer`, which notes its own events). A
    /// call answered here becomes the lab event `event` gives, if any.
    async fn pass<T>(
        &self,
        node: Option<&pb::NodeRef>,
        here: impl AsyncFnOnce(MonitorClient) -> Result<Response<T>, Status>,
        peer: impl AsyncFnOnce(crate::client::Client) -> Result<Response<T>, Status>,
        event: impl FnOnce(&T) -> Option<(&'static str, String)>,
    ) -> Result<Response<T>, Status> {
        let client = match self.monitor(node).await? {
            NodeClient::Here(client) => client,
            NodeClient::Peer(client) => return peer(client).await,
        };
        let reply = here(client).await?;
        if let (Some(node), Some((kind, message))) = (node, event(reply.get_ref())) {
            self.inner.emit(&node.lab, &node.node, kind, &message);
        }
        Ok(reply)
    }
}

/// The part of a multi-host lab a peer asks for.
fn host_part(part: pb::HostPart) -> Result<HostPart, Status> {
    let vxlan = part
        .cables
        .into_iter()
        .map(|(label, c)| {
            let addr = |a: &str| {
                a.parse().map_err(|_| {
                    Status::invalid_argument(format!("cable {label}: {a:?} is not IP:PORT"))
                })
            };
            let cable = crate::plan::VxlanCable {
                vni: c.vni,
                a: addr(&c.a)?,
                b: addr(&c.b)?,
            };
            Ok((label, cable))
        })
        .collect::<Result<_, Status>>()?;
    if part.host.is_empty() {
        return Err(Status::invalid_argument("a host part must name its host"));
    }
    Ok(HostPart {
        host: part.host,
        leader: part.leader,
        vxlan,
    })
}

/// A client of the orchestrator on `host`, where a node of a multi-host
/// lab runs.
async fn peer_client(inner: &Orchestrator, host: &str) -> Result<crate::client::Client, Status> {
    inner
        .peers()
        .connect(host)
        .await
        .map_err(|e| Status::unavailable(format!("{e:#}")))
}

fn status(e: LabError) -> Status {
    let message = e.to_string();
    match e {
        LabError::NotFound(_) => Status::not_found(message),
        LabError::Exists(_) => Status::already_exists(message),
        LabError::Invalid(_)
        | LabError::BadName(_)
        | LabError::Plan(_)
        | LabError::Target { .. } => Status::invalid_argument(message),
        _ => Status::failed_precondition(message),
    }
}

/// Runs a deploy or destroy in the background, streaming its progress and
/// ending the stream with the error if it failed.
fn progress_stream<F>(
    work: impl FnOnce(mpsc::Sender<pb::Progress>) -> F + Send + 'static,
) -> BoxStream<pb::Progress>
where
    F: std::future::Future<Output = Result<(), LabError>> + Send + 'static,
{
    let (out_tx, out_rx) = mpsc::channel(64);
    let (tx, mut rx) = mpsc::channel::<pb::Progress>(64);
    tokio::spawn(async move {
        let forward = {
            let out_tx = out_tx.clone();
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    let _ = out_tx.send(Ok(p)).await;
                }
            })
        };
        let result = work(tx).await;
        let _ = forward.await;
        if let Err(e) = result {
            let _ = out_tx.send(Err(status(e))).await;
        }
    });
    Box::pin(ReceiverStream::new(out_rx))
}

#[tonic::async_trait]
impl Service for OrchestratorService {
    type DeployStream = BoxStream<pb::Progress>;

    async fn deploy(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<Self::DeployStream>, Status> {
        let req = request.into_inner();
        let source = match req.topology {
            Some(t) => TopologySource::Bundle(vbet_topology::Bundle {
                name: t.name,
                text: t.text,
                files: t.files.into_iter().collect(),
            }),
            None => {
                let path = PathBuf::from(&req.topology_path);
                if !path.is_absolute() {
                    return Err(Status::invalid_argument(format!(
                        "topology path {} must be absolute (or send the topology itself)",
                        path.display()
                    )));
                }
                TopologySource::Path(path)
            }
        };
        let part = req.part.map(host_part).transpose()?;
        let inner = self.inner.clone();
        Ok(Response::new(progress_stream(move |tx| async move {
            let lab = (!req.lab.is_empty()).then_some(req.lab.as_str());
            inner.deploy_part(lab, &source, part, &tx).await.map(|_| ())
        })))
    }

    type DestroyStream = BoxStream<pb::Progress>;

    async fn destroy(
        &self,
        request: Request<pb::DestroyRequest>,
    ) -> Result<Response<Self::DestroyStream>, Status> {
        let req = request.into_inner();
        self.inner.lab(&req.lab).await.map_err(status)?;
        let inner = self.inner.clone();
        Ok(Response::new(progress_stream(move |tx| async move {
            inner.destroy(&req.lab, &tx).await
        })))
    }

    async fn list_labs(
        &self,
        _: Request<pb::ListLabsRequest>,
    ) -> Result<Response<pb::ListLabsResponse>, Status> {
        let labs = summaries(&self.inner.labs().await);
        Ok(Response::new(pb::ListLabsResponse { labs }))
    }

    async fn inspect_lab(
        &self,
        request: Request<pb::InspectLabRequest>,
    ) -> Result<Response<pb::Lab>, Status> {
        let lab = self
            .inner
            .inspect(&request.into_inner().lab)
            .await
            .map_err(status)?;
        Ok(Response::new(lab))
    }

    type ExecStream = BoxStream<vm_pb::ExecReply>;

    async fn exec(
        &self,
        request: Request<Streaming<pb::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.ok_or_else(|| {
            Status::invalid_argument("Exec needs a first message naming the node")
        })?;
        let api = match self
            .inner
            .locate(&first.lab, &first.node)
            .await
            .map_err(status)?
        {
            Located::Here(api) => api,
            Located::Peer(host) => {
                // The node's own orchestrator runs it; the stream passes through.
                let mut peer = peer_client(&self.inner, &host).await?;
                let rest = incoming.filter_map(Result::ok);
                let replies = peer
                    .exec(tokio_stream::iter([first]).chain(rest))
                    .await?
                    .into_inner();
                return Ok(Response::new(Box::pin(replies)));
            }
        };
        let mut client = vm_monitor::client::connect(&api).await.map_err(|e| {
            Status::unavailable(format!(
                "node {}: its monitor does not answer: {e}",
                first.node
            ))
        })?;
        let mut head = first.request;
        // vBET's own programs are on the PATH of exec'd commands too.
        if let Some(vm_pb::ExecRequest {
            kind: Some(vm_pb::exec_request::Kind::Start(start)),
        }) = head.as_mut()
            && self.inner.layout().tools.is_some()
        {
            start.env.entry("PATH".to_owned()).or_insert_with(|| {
                format!(
                    "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    crate::plan::TOOLS_IN_VM
                )
            });
        }
        let head = tokio_stream::iter(head);
        let rest = incoming.filter_map(|m| m.ok().and_then(|m| m.request));
        let replies = client.exec(head.chain(rest)).await?.into_inner();
        Ok(Response::new(Box::pin(replies)))
    }

    async fn set_link(
        &self,
        request: Request<pb::SetLinkRequest>,
    ) -> Result<Response<pb::Cable>, Status> {
        let req = request.into_inner();
        let state = req
            .state
            .map(|s| {
                port_pb::LinkState::try_from(s)
                    .map_err(|_| Status::invalid_argument(format!("unknown link state {s}")))
            })
            .transpose()?;
        let cable = self
            .inner
            .set_link(&req.lab, &req.target, state, req.impairment)
            .await
            .map_err(status)?;
        Ok(Response::new(cable))
    }

    type EventsStream = BoxStream<pb::LabEvent>;

    async fn events(
        &self,
        request: Request<pb::EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let lab = request.into_inner().lab;
        if !lab.is_empty() {
            self.inner.lab(&lab).await.map_err(status)?;
        }
        let rx = self
            .inner
            .events((!lab.is_empty()).then_some(lab.as_str()))
            .await;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok))))
    }

    async fn add_fault(
        &self,
        request: Request<pb::AddFaultRequest>,
    ) -> Result<Response<vm_pb::FaultRule>, Status> {
        let req = request.into_inner();
        let rule = req.rule.clone();
        self.pass(
            req.node.as_ref(),
            async |mut c| c.add_fault(vm_pb::AddFaultRequest { rule }).await,
            async |mut p| p.add_fault(req.clone()).await,
            |rule| Some(("fault", format!("rule {} added: {}", rule.id, rule.syscall))),
        )
        .await
    }

    async fn list_faults(
        &self,
        request: Request<pb::NodeRef>,
    ) -> Result<Response<vm_pb::ListFaultsReply>, Status> {
        let node = request.into_inner();
        self.pass(
            Some(&node),
            async |mut c| c.list_faults(vm_pb::ListFaultsRequest {}).await,
            async |mut p| p.list_faults(node.clone()).await,
            |_| None,
        )
        .await
    }

    async fn remove_fault(
        &self,
        request: Request<pb::RemoveFaultRequest>,
    ) -> Result<Response<vm_pb::RemoveFaultReply>, Status> {
        let req = request.into_inner();
        let id = req.id;
        self.pass(
            req.node.as_ref(),
            async |mut c| c.remove_fault(vm_pb::RemoveFaultRequest { id }).await,
            async |mut p| p.remove_fault(req.clone()).await,
            |_| Some(("fault", format!("rule {id} removed"))),
        )
        .await
    }

    async fn trace_on(
        &self,
        request: Request<pb::NodeRef>,
    ) -> Result<Response<vm_pb::TraceState>, Status> {
        let node = request.into_inner();
        self.pass(
            Some(&node),
            async |mut c| c.trace_on(vm_pb::TraceOnRequest {}).await,
            async |mut p| p.trace_on(node.clone()).await,
            |_| Some(("trace", "syscall tracing on".to_owned())),
        )
        .await
    }

    async fn trace_off(
        &self,
        request: Request<pb::NodeRef>,
    ) -> Result<Response<vm_pb::TraceState>, Status> {
        let node = request.into_inner();
        self.pass(
            Some(&node),
            async |mut c| c.trace_off(vm_pb::TraceOffRequest {}).await,
            async |mut p| p.trace_off(node.clone()).await,
            |_| Some(("trace", "syscall tracing off".to_owned())),
        )
        .await
    }

    type TraceStream = BoxStream<vm_pb::TraceBatch>;

    async fn trace(
        &self,
        request: Request<pb::NodeRef>,
    ) -> Result<Response<Self::TraceStream>, Status> {
        let node = request.into_inner();
        let stream = self
            .pass(
                Some(&node),
                async |mut c| c.trace(vm_pb::TraceRequest {}).await,
                async |mut p| p.trace(node.clone()).await,
                |_| None,
            )
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(stream)))
    }

    async fn set_clock(
        &self,
        request: Request<pb::SetClockRequest>,
    ) -> Result<Response<vm_pb::ClockState>, Status> {
        let req = request.into_inner();
        let clock = req.clock.unwrap_or_default();
        self.pass(
            req.node.as_ref(),
            async |mut c| c.set_clock(clock).await,
            async |mut p| p.set_clock(req.clone()).await,
            |state| {
                Some((
                    "clock",
                    format!(
                        "clock set: {:+.3} s from the host's, rate {}",
                        state.realtime_offset, state.rate
                    ),
                ))
            },
        )
        .await
    }

    async fn get_clock(
        &self,
        request: Request<pb::NodeRef>,
    ) -> Result<Response<vm_pb::ClockState>, Status> {
        let node = request.into_inner();
        self.pass(
            Some(&node),
            async |mut c| c.get_clock(vm_pb::GetClockRequest {}).await,
            async |mut p| p.get_clock(node.clone()).await,
            |_| None,
        )
        .await
    }

    async fn read_log(
        &self,
        request: Request<pb::NodeRef>,
    ) -> Result<Response<pb::LogText>, Status> {
        let node = request.into_inner();
        let record = self.inner.lab(&node.lab).await.map_err(status)?;
        if let Some(host) = record.placement.host_of(&node.node)
            && record.placement.part_of.is_none()
        {
            let mut peer = peer_client(&self.inner, host).await?;
            return peer.read_log(node).await;
        }
        let known = record.vms.iter().any(|v| v.name == node.node)
            || record.switches.iter().any(|s| s.name == node.node);
        if !known {
            return Err(Status::not_found(format!(
                "lab {} has no node or switch named {} here",
                node.lab, node.node
            )));
        }
        let path = self.inner.layout().log(&node.lab, &node.node);
        let text = std::fs::read(&path)
            .map_err(|e| Status::not_found(format!("no log at {}: {e}", path.display())))?;
        Ok(Response::new(pb::LogText {
            text: String::from_utf8_lossy(&text).into_owned(),
        }))
    }

    type CaptureStream = BoxStream<port_pb::PcapChunk>;

    async fn capture(
        &self,
        request: Request<pb::CaptureRequest>,
    ) -> Result<Response<Self::CaptureStream>, Status> {
        let req = request.into_inner();
        let (node, nic) = req
            .target
            .rsplit_once(':')
            .and_then(|(node, nic)| {
                let n = match nic.strip_prefix("eth") {
                    Some(k) => k.parse::<u32>().ok(),
                    None => nic.parse::<u32>().ok().and_then(|n| n.checked_sub(1)),
                }?;
                Some((node.to_owned(), n))
            })
            .ok_or_else(|| {
                Status::invalid_argument(format!("{:?} is not a NIC; write NODE:ethN", req.target))
            })?;
        let api = match self.inner.locate(&req.lab, &node).await.map_err(status)? {
            Located::Here(api) => api,
            Located::Peer(host) => {
                let mut peer = peer_client(&self.inner, &host).await?;
                let stream = peer.capture(req).await?.into_inner();
                return Ok(Response::new(Box::pin(stream)));
            }
        };
        let mut client = vm_monitor::client::connect(&api)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let stream = client
            .capture(vm_pb::CaptureRequest { nic })
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(stream)))
    }
}
