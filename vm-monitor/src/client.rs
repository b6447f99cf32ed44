//! A small client of the VM's API, for manual use
//! (`vm-monitor exec --api SOCK -- cmd`) and for tests.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};
use vbet_proto::vbet::vm::v1 as pb;
use vbet_proto::vbet::vm::v1::vm_monitor_client::VmMonitorClient;

/// A client of a VM's API.
pub type MonitorClient = VmMonitorClient<Channel>;

/// Connects to the API socket of a VM.
pub async fn connect(socket: &Path) -> Result<MonitorClient, tonic::transport::Error> {
    let socket: PathBuf = socket.to_owned();
    let channel = Endpoint::from_static("http://vm-monitor.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(VmMonitorClient::new(channel))
}

/// What a finished Exec produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Guest PID.
    pub pid: u32,
    /// Standard output (with a tty: everything).
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub status: pb::ExitStatus,
}

/// Runs `argv` in the VM with `stdin` as its input and collects its output.
pub async fn exec(
    client: &mut VmMonitorClient<Channel>,
    argv: &[&str],
    stdin: &[u8],
) -> Result<Output, tonic::Status> {
    let start = pb::ExecStart {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut requests = vec![pb::ExecRequest {
        kind: Some(pb::exec_request::Kind::Start(start)),
    }];
    if !stdin.is_empty() {
        requests.push(pb::ExecRequest {
            kind: Some(pb::exec_request::Kind::Stdin(stdin.to_vec())),
        });
    }
    requests.push(pb::ExecRequest {
        kind: Some(pb::exec_request::Kind::StdinEof(true)),
    });
    // Keep the request stream open until the process ends, so that the
    // server does not see a half-close as the end of the session.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for r in requests {
        let _ = tx.send(r).await;
    }
    let mut replies = client
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut out = Output::default();
    while let Some(reply) = replies.message().await? {
        match reply.kind {
            Some(pb::exec_reply::Kind::Started(pid)) => out.pid = pid,
            Some(pb::exec_reply::Kind::Stdout(d)) => out.stdout.extend(d),
            Some(pb::exec_reply::Kind::Stderr(d)) => out.stderr.extend(d),
            Some(pb::exec_reply::Kind::Exit(s)) => {
                out.status = s;
                drop(tx);
                return Ok(out);
            }
            None => {}
        }
    }
    Err(tonic::Status::aborted(
        "the Exec stream ended without an exit status",
    ))
}

/// Puts the terminal on stdin in raw mode until dropped.
struct RawMode(nix::sys::termios::Termios);

impl RawMode {
    fn enter() -> Option<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}

/// Runs `argv` with this process's stdin, stdout and stderr; with `tty`,
/// on a pty in the VM with this terminal in raw mode and its size
/// followed. Returns the exit code (128 + signal when killed).
pub async fn exec_stdio(
    client: &mut VmMonitorClient<Channel>,
    argv: &[String],
    tty: bool,
) -> Result<i32, tonic::Status> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let window = crate::sys::window_size(&std::io::stdin()).map(|(rows, cols)| pb::WindowSize {
        rows: rows.into(),
        cols: cols.into(),
    });
    let _raw = if tty { RawMode::enter() } else { None };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let _ = tx
        .send(pb::ExecRequest {
            kind: Some(pb::exec_request::Kind::Start(pb::ExecStart {
                argv: argv.to_vec(),
                tty,
                window,
                env: std::env::var("TERM")
                    .ok()
                    .filter(|_| tty)
                    .map(|t| ("TERM".to_string(), t))
                    .into_iter()
                    .collect(),
                ..Default::default()
            })),
        })
        .await;
    if tty {
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some((rows, cols)) = crate::sys::window_size(&std::io::stdin()) {
                    let resize = pb::exec_request::Kind::Resize(pb::WindowSize {
                        rows: rows.into(),
                        cols: cols.into(),
                    });
                    if tx
                        .send(pb::ExecRequest { kind: Some(resize) })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
    let input = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let kind = match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => pb::exec_request::Kind::StdinEof(true),
                Ok(n) => pb::exec_request::Kind::Stdin(buf[..n].to_vec()),
            };
            let eof = matches!(kind, pb::exec_request::Kind::StdinEof(_));
            if tx.send(pb::ExecRequest { kind: Some(kind) }).await.is_err() || eof {
                break;
            }
        }
        // Keep the stream open until the session ends.
        tx.closed().await;
    });
    let mut replies = client
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    while let Some(reply) = replies.message().await? {
        match reply.kind {
            Some(pb::exec_reply::Kind::Stdout(d)) => {
                let _ = stdout.write_all(&d).await;
                let _ = stdout.flush().await;
            }
            Some(pb::exec_reply::Kind::Stderr(d)) => {
                let _ = stderr.write_all(&d).await;
            }
            Some(pb::exec_reply::Kind::Exit(s)) => {
                input.abort();
                return Ok(if s.signal != 0 {
                    128 + s.signal
                } else {
                    s.code
                });
            }
            _ => {}
        }
    }
    Err(tonic::Status::aborted(
        "the Exec stream ended without an exit status",
    ))
}
