//! Client-side helpers over the orchestrator's API, shared by the CLI and
//! the experiments.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use vbet_proto::vbet::orchestrator::v1 as pb;
use vbet_proto::vbet::orchestrator::v1::orchestrator_client::OrchestratorClient;
use vbet_proto::vbet::port::v1 as port_pb;
use vbet_proto::vbet::vm::v1 as vm_pb;

use crate::layout::Layout;

/// Adds the bearer token (if any) to every request.
#[derive(Debug, Clone, Default)]
pub struct Auth(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// A connected client of the orchestrator.
pub type Client =
    OrchestratorClient<tonic::service::interceptor::InterceptedService<Channel, Auth>>;

/// Connects to a remote orchestrator over TCP with TLS, checking its
/// certificate against `ca` and presenting the token in `token_file`.
pub async fn connect_remote(url: &str, ca: &Path, token_file: &Path) -> anyhow::Result<Client> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let ca = std::fs::read(ca)
        .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("cannot read the token {}", token_file.display()))?;
    let header = format!("Bearer {}", token.trim())
        .parse()
        .context("the token holds characters a header cannot carry")?;
    let channel = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("{url:?} is not a URL"))?
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
        .context("bad TLS configuration")?
        .connect()
        .await
        .with_context(|| format!("cannot reach the orchestrator at {url}"))?;
    Ok(OrchestratorClient::with_interceptor(
        channel,
        Auth(Some(header)),
    ))
}

/// Connects to the orchestrator, starting one in the background if none
/// answers (and saying so on stderr).
pub async fn connect_or_start(layout: &Layout) -> anyhow::Result<Client> {
    use std::os::unix::process::CommandExt;
    let socket = layout.orchestrator_socket();
    if let Ok(channel) = vbet_proto::connect_unix(&socket).await {
        return Ok(OrchestratorClient::with_interceptor(
            channel,
            Auth::default(),
        ));
    }
    let exe = std::env::current_exe().context("cannot find vbet's own path")?;
    let orchestrator = exe.with_file_name("orchestrator");
    std::fs::create_dir_all(&layout.run_root).with_context(|| {
        format!(
            "cannot create {} (vbet needs root)",
            layout.run_root.display()
        )
    })?;
    let log_path = layout.run_root.join("orchestrator.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let child = std::process::Command::new(&orchestrator)
        .arg("--run-root")
        .arg(&layout.run_root)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", orchestrator.display()))?;
    eprintln!(
        "vbet: no orchestrator was running; started one in the background (pid {}, log {})",
        child.id(),
        log_path.display()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(channel) = vbet_proto::connect_unix(&socket).await {
            return Ok(OrchestratorClient::with_interceptor(
                channel,
                Auth::default(),
            ));
        }
        if Instant::now() >= deadline {
            bail!(
                "the orchestrator did not come up within 10 s; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A command running in a node, whose output arrives as it is written.
#[derive(Debug)]
pub struct Running {
    input: mpsc::Sender<pb::ExecRequest>,
    lab: String,
    node: String,
    /// Output chunks (stdout and stderr) until the command exits.
    pub output: mpsc::Receiver<Vec<u8>>,
    /// The exit code (128 + signal when killed), once it exits.
    pub exit: tokio::sync::oneshot::Receiver<i32>,
}

impl Running {
    /// Sends a signal to the command.
    pub async fn signal(&self, signal: i32) {
        let _ = self
            .input
            .send(exec_message(
                &self.lab,
                &self.node,
                vm_pb::exec_request::Kind::Signal(signal),
            ))
            .await;
    }
}

fn exec_message(lab: &str, node: &str, kind: vm_pb::exec_request::Kind) -> pb::ExecRequest {
    pb::ExecRequest {
        lab: lab.to_owned(),
        node: node.to_owned(),
        request: Some(vm_pb::ExecRequest { kind: Some(kind) }),
    }
}

/// Starts `argv` in `node` of `lab` with no input.
pub async fn spawn(
    client: &mut Client,
    lab: &str,
    node: &str,
    argv: &[&str],
) -> anyhow::Result<Running> {
    let (tx, rx) = mpsc::channel(8);
    let start = vm_pb::ExecStart {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    tx.send(exec_message(
        lab,
        node,
        vm_pb::exec_request::Kind::Start(start),
    ))
    .await?;
    tx.send(exec_message(
        lab,
        node,
        vm_pb::exec_request::Kind::StdinEof(true),
    ))
    .await?;
    let mut replies = client
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .with_context(|| format!("cannot run {argv:?} in {lab}/{node}"))?
        .into_inner();
    let (out_tx, out_rx) = mpsc::channel(64);
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut code = -1;
        while let Some(Ok(reply)) = replies.next().await {
            match reply.kind {
                Some(vm_pb::exec_reply::Kind::Stdout(d) | vm_pb::exec_reply::Kind::Stderr(d)) => {
                    let _ = out_tx.send(d).await;
                }
                Some(vm_pb::exec_reply::Kind::Exit(s)) => {
                    code = if s.signal != 0 {
                        128 + s.signal
                    } else {
                        s.code
                    };
                    break;
                }
                _ => {}
            }
        }
        let _ = exit_tx.send(code);
    });
    Ok(Running {
        input: tx,
        lab: lab.to_owned(),
        node: node.to_owned(),
        output: out_rx,
        exit: exit_rx,
    })
}

/// Runs `argv` in `node` of `lab` to the end; returns its exit code and
/// its output (stdout and stderr together).
pub async fn run(
    client: &mut Client,
    lab: &str,
    node: &str,
    argv: &[&str],
) -> anyhow::Result<(i32, String)> {
    let mut running = spawn(client, lab, node, argv).await?;
    let mut out = Vec::new();
    while let Some(chunk) = running.output.recv().await {
        out.extend(chunk);
    }
    let code = running.exit.await.unwrap_or(-1);
    Ok((code, String::from_utf8_lossy(&out).into_owned()))
}

/// Sets a cable's state.
pub async fn set_link_state(
    client: &mut Client,
    lab: &str,
    target: &str,
    state: port_pb::LinkState,
) -> anyhow::Result<pb::Cable> {
    Ok(client
        .set_link(pb::SetLinkRequest {
            lab: lab.to_owned(),
            target: target.to_owned(),
            state: Some(state as i32),
            impairment: None,
        })
        .await
        .with_context(|| format!("cannot set {target} {state:?}"))?
        .into_inner())
}

/// Deploys `file` as `lab`, printing progress lines on stderr.
pub async fn deploy(client: &mut Client, file: &Path, lab: &str) -> anyhow::Result<()> {
    let mut stream = client
        .deploy(deploy_request(file, lab)?)
        .await?
        .into_inner();
    while let Some(p) = stream.next().await {
        let p = p.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        if p.component.is_empty() {
            eprintln!("{}", p.message);
        }
    }
    Ok(())
}

/// A deploy of the topology `file` as `lab` (empty: its stem): the
/// topology checked here, and sent as text with every file it uses, so
/// that it deploys the same on an orchestrator on another host.
pub fn deploy_request(file: &Path, lab: &str) -> anyhow::Result<pb::DeployRequest> {
    let (_, bundle) =
        vbet_topology::bundle(file).map_err(|e| anyhow::anyhow!("{}", e.render(false)))?;
    Ok(pb::DeployRequest {
        lab: lab.to_owned(),
        topology_path: String::new(),
        topology: Some(pb::TopologyBundle {
            name: bundle.name,
            text: bundle.text,
            files: bundle.files.into_iter().collect(),
        }),
        part: None,
    })
}

/// Destroys `lab`, quietly.
pub async fn destroy(client: &mut Client, lab: &str) -> anyhow::Result<()> {
    let mut stream = client
        .destroy(pb::DestroyRequest {
            lab: lab.to_owned(),
            keep_layers: false,
        })
        .await?
        .into_inner();
    while let Some(p) = stream.next().await {
        p.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    }
    Ok(())
}
