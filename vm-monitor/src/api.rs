//! The `VmMonitor` gRPC service (with health and reflection), served on
//! the VM's Unix socket.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status};
use vbet_port::capture::PcapEncoder;
use vbet_port::impair::Impairment;
use vbet_port::link::LinkState;
use vbet_proto::vbet::port::v1 as port_pb;
use vbet_proto::vbet::vm::v1 as pb;
use vbet_proto::vbet::vm::v1::vm_monitor_server::{VmMonitor, VmMonitorServer};

use crate::nic::{self, NicState};
use crate::vm::{Vm, VmError};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The service over one VM.
#[derive(Debug, Clone)]
pub struct Api {
    vm: Arc<Vm>,
}

fn nic_status(n: &NicState) -> pb::Nic {
    pb::Nic {
        index: n.plan.index,
        name: n.plan.name.clone(),
        mac: nic::format_mac(&n.plan.mac),
        link_state: n.port.state().to_proto() as i32,
        wiring: match &n.plan.wiring {
            crate::spec::Wiring::Switch { ctl } => format!("switch {}", ctl.display()),
            crate::spec::Wiring::Wire { remote, .. } => format!("wire {}", remote.display()),
            crate::spec::Wiring::Vxlan { remote, vni, .. } => format!("vxlan {remote} vni {vni}"),
            crate::spec::Wiring::None => "none".into(),
        },
        counters: Some(n.port.counters().snapshot()),
        egress: Some(n.port.inbound.impairment().to_proto()),
        ingress: Some(n.port.outbound.impairment().to_proto()),
        attached: n.attached(),
    }
}

impl Api {
    /// The service over `vm`.
    pub fn new(vm: Arc<Vm>) -> Self {
        Api { vm }
    }

    fn status_now(&self) -> pb::VmStatus {
        let vm = &self.vm;
        let u = vm.cgroup.usage();
        pb::VmStatus {
            name: vm.spec.name.clone(),
            lab: vm.spec.lab.clone(),
            state: *vm.state.borrow() as i32,
            init_pid: vm.init_pid,
            monitor_pid: std::process::id(),
            uptime_ms: vm.started.elapsed().as_millis() as u64,
            pids: vm.procs.pids(),
            nics: vm.nics.iter().map(|n| nic_status(n)).collect(),
            resources: Some(pb::Resources {
                memory_bytes: u.memory,
                memory_limit_bytes: u.memory_limit,
                cpu_usage_ns: u.cpu_ns,
                pids: u.pids,
                pids_limit: u.pids_limit,
            }),
            hostname: vm.spec.hostname().to_owned(),
            processes: vm.tracer.processes(),
            tracing: vm.tracer.tracing(),
        }
    }

    async fn set_frozen(&self, frozen: bool) -> Result<Response<pb::VmStatus>, Status> {
        let cg = self.vm.cgroup.clone();
        tokio::task::spawn_blocking(move || cg.set_frozen(frozen))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(crate::error_chain(&e)))?;
        self.vm.set_state(if frozen {
            pb::VmState::Frozen
        } else {
            pb::VmState::Running
        });
        Ok(Response::new(self.status_now()))
    }
}

#[tonic::async_trait]
impl VmMonitor for Api {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::VmStatus>, Status> {
        Ok(Response::new(self.status_now()))
    }

    type ExecStream = BoxStream<pb::ExecReply>;

    async fn exec(
        &self,
        request: Request<tonic::Streaming<pb::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = request.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("Exec needs a first message with `start`"))?;
        let Some(pb::exec_request::Kind::Start(start)) = first.kind else {
            return Err(Status::invalid_argument(
                "the first Exec message must be `start`",
            ));
        };
        if start.argv.is_empty() {
            return Err(Status::invalid_argument("`start.argv` is empty"));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(crate::exec::session(
            self.vm.procs.clone(),
            start,
            input,
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn signal(
        &self,
        request: Request<pb::SignalRequest>,
    ) -> Result<Response<pb::SignalReply>, Status> {
        let r = request.into_inner();
        self.vm
            .procs
            .signal(r.pid as i32, r.signal)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::SignalReply {}))
    }

    async fn freeze(
        &self,
        _: Request<pb::FreezeRequest>,
    ) -> Result<Response<pb::VmStatus>, Status> {
        self.set_frozen(true).await
    }

    async fn thaw(&self, _: Request<pb::ThawRequest>) -> Result<Response<pb::VmStatus>, Status> {
        self.set_frozen(false).await
    }

    async fn set_link(
        &self,
        request: Request<pb::SetLinkRequest>,
    ) -> Result<Response<pb::Nic>, Status> {
        let r = request.into_inner();
        let nic = self
            .vm
            .nics
            .iter()
            .find(|n| n.plan.index == r.nic)
            .ok_or_else(|| Status::not_found(format!("the VM has no eth{}", r.nic)))?;
        let impairment = |i: &Option<port_pb::Impairment>| {
            i.as_ref()
                .map(Impairment::from_proto)
                .transpose()
                .map_err(|e| Status::invalid_argument(e.to_string()))
        };
        let (egress, ingress) = (impairment(&r.egress)?, impairment(&r.ingress)?);
        let state = match port_pb::LinkState::try_from(r.state) {
            Ok(port_pb::LinkState::Unspecified) => None,
            Ok(s) => Some(LinkState::from_proto(s)),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown link state {}",
                    r.state
                )));
            }
        };
        if let Some(i) = egress {
            nic.port.inbound.set_impairment(i);
        }
        if let Some(i) = ingress {
            nic.port.outbound.set_impairment(i);
        }
        if let Some(s) = state {
            nic.set_link(s)
                .map_err(|e| Status::internal(crate::error_chain(&e)))?;
            let _ = self.vm.events.send(pb::Event {
                time_ms: crate::exec::now_ms(),
                kind: Some(pb::event::Kind::LinkChanged(pb::LinkChanged {
                    nic: r.nic,
                    state: r.state,
                })),
            });
        }
        Ok(Response::new(nic_status(nic)))
    }

    type CaptureStream = BoxStream<port_pb::PcapChunk>;

    async fn capture(
        &self,
        request: Request<pb::CaptureRequest>,
    ) -> Result<Response<Self::CaptureStream>, Status> {
        let index = request.into_inner().nic;
        let nic = self
            .vm
            .nics
            .iter()
            .find(|n| n.plan.index == index)
            .ok_or_else(|| Status::not_found(format!("the VM has no eth{index}")))?;
        let id = nic.capture_id();
        let mut frames = nic.capture.subscribe();
        let mut encoder = PcapEncoder::new(0);
        let header = encoder.take();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            if tx
                .send(Ok(port_pb::PcapChunk { data: header }))
                .await
                .is_err()
            {
                return;
            }
            loop {
                match frames.recv().await {
                    Ok(frame) if frame.matches(id) => {
                        encoder.push(&frame);
                        let data = encoder.take();
                        if tx.send(Ok(port_pb::PcapChunk { data })).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn shutdown(
        &self,
        request: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownReply>, Status> {
        let ms = match request.into_inner().timeout_ms {
            0 => 5000,
            ms => ms,
        };
        self.vm
            .shutdown
            .send_replace(Some(std::time::Duration::from_millis(u64::from(ms))));
        Ok(Response::new(pb::ShutdownReply {}))
    }

    async fn add_fault(
        &self,
        request: Request<pb::AddFaultRequest>,
    ) -> Result<Response<pb::FaultRule>, Status> {
        let rule = request
            .into_inner()
            .rule
            .ok_or_else(|| Status::invalid_argument("AddFault needs a `rule`"))?;
        let added = self
            .vm
            .faults
            .lock()
            .expect("not poisoned")
            .add(rule)
            .map_err(|e| match e {
                crate::fault::RuleError::Off => Status::failed_precondition(e.to_string()),
                _ => Status::invalid_argument(e.to_string()),
            })?;
        tracing::info!(id = added.id, syscall = %added.syscall, "fault rule added");
        Ok(Response::new(added))
    }

    async fn list_faults(
        &self,
        _: Request<pb::ListFaultsRequest>,
    ) -> Result<Response<pb::ListFaultsReply>, Status> {
        let rules = self.vm.faults.lock().expect("not poisoned");
        Ok(Response::new(pb::ListFaultsReply {
            rules: rules.list(),
            faultable: rules.faultable(),
        }))
    }

    async fn remove_fault(
        &self,
        request: Request<pb::RemoveFaultRequest>,
    ) -> Result<Response<pb::RemoveFaultReply>, Status> {
        let id = request.into_inner().id;
        self.vm
            .faults
            .lock()
            .expect("not poisoned")
            .remove(id)
            .map_err(|e| Status::not_found(e.to_string()))?;
        tracing::info!(id, "fault rule removed");
        Ok(Response::new(pb::RemoveFaultReply {}))
    }

    async fn trace_on(
        &self,
        _: Request<pb::TraceOnRequest>,
    ) -> Result<Response<pb::TraceState>, Status> {
        self.vm.tracer.set_tracing(true);
        tracing::info!("syscall tracing on");
        Ok(Response::new(self.vm.tracer.trace_state()))
    }

    async fn trace_off(
        &self,
        _: Request<pb::TraceOffRequest>,
    ) -> Result<Response<pb::TraceState>, Status> {
        self.vm.tracer.set_tracing(false);
        tracing::info!("syscall tracing off");
        Ok(Response::new(self.vm.tracer.trace_state()))
    }

    type TraceStream = BoxStream<pb::TraceBatch>;

    async fn trace(
        &self,
        _: Request<pb::TraceRequest>,
    ) -> Result<Response<Self::TraceStream>, Status> {
        let mut events = self.vm.tracer.subscribe();
        let tracer = self.vm.tracer.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::TryRecvError;
            // The broadcast never waits for us: a slow client lags, and
            // loses (and counts) what it could not take. We collect on a
            // timer rather than waiting on the broadcast: a waiting
            // receiver would make the tracer wake this thread at every
            // syscall (a context switch each, on a small machine the
            // tracee's time); every 10 ms, what accumulated goes out as
            // one message.
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut dropped = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tx.closed() => return,
                }
                loop {
                    let mut batch = pb::TraceBatch::default();
                    let mut closed = false;
                    while batch.events.len() < 1024 {
                        match events.try_recv() {
                            Ok(e) => batch.events.push(e),
                            Err(TryRecvError::Lagged(n)) => {
                                dropped += n;
                                tracer.count_dropped(n);
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Closed) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                    let full = batch.events.len() == 1024;
                    if !batch.events.is_empty() {
                        batch.dropped = dropped;
                        if tx.send(Ok(batch)).await.is_err() {
                            return;
                        }
                    }
                    if closed {
                        return;
                    }
                    if !full {
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn set_clock(
        &self,
        request: Request<pb::SetClockRequest>,
    ) -> Result<Response<pb::ClockState>, Status> {
        let r = request.into_inner();
        match self.vm.tracer.set_clock(r.realtime_offset, r.rate) {
            None => Err(Status::failed_precondition(
                "this VM has no virtual clock: set `clock.realtime`, `clock.rate` or \
                 `clock.settable = true` in its spec and restart it",
            )),
            Some(Err(e)) => Err(Status::invalid_argument(e.to_string())),
            Some(Ok(state)) => {
                tracing::info!(
                    offset = state.realtime_offset,
                    rate = state.rate,
                    "clock set"
                );
                Ok(Response::new(state))
            }
        }
    }

    async fn get_clock(
        &self,
        _: Request<pb::GetClockRequest>,
    ) -> Result<Response<pb::ClockState>, Status> {
        Ok(Response::new(self.vm.tracer.clock_state()))
    }

    type EventsStream = BoxStream<pb::Event>;

    async fn events(
        &self,
        _: Request<pb::EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let stream =
            BroadcastStream::new(self.vm.events.subscribe()).filter_map(|e| e.ok().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Binds the API socket (mode 0600) and returns the server future, which
/// ends when `stop` resolves.
pub fn serve(
    vm: Arc<Vm>,
    socket: &Path,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, VmError> {
    let io = |what: String| move |source| VmError::Io { what, source };
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)
        .map_err(io(format!("binding {}", socket.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("chmod {}", socket.display())))?;
    let reflection = vbet_proto::reflection::Reflection::new();
    let (reporter, health) = tonic_health::server::health_reporter();
    let api = Api::new(vm);
    Ok(async move {
        reporter.set_serving::<VmMonitorServer<Api>>().await;
        let result = tonic::transport::Server::builder()
            .trace_fn(|req| tracing::info_span!("rpc", path = %req.uri().path()))
            .add_service(health)
            .add_service(reflection)
            .add_service(VmMonitorServer::new(api))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop)
            .await;
        if let Err(e) = result {
            tracing::error!("API server: {}", crate::error_chain(&e));
        }
    })
}
