//! Processes in the VM, from the monitor's side: the monitor's end of the
//! init's control channel (requests out, replies and exits in) and the
//! Exec sessions that bridge a gRPC stream to a process's stdio or pty.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use vbet_proto::vbet::vm::v1 as pb;

use crate::init::{FromInit, ToInit};

/// A failed process operation.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The guest init is gone.
    #[error("the VM's init is gone")]
    InitGone,
    /// The init could not start the process.
    #[error("{0}")]
    Spawn(String),
    /// Pipes or the pty failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How a process ended: (code, signal).
pub type Exit = (i32, i32);

enum Cmd {
    Spawn {
        msg: ToInit,
        fds: Vec<OwnedFd>,
        reply: oneshot::Sender<Result<(i32, Option<OwnedFd>), String>>,
        exit: oneshot::Sender<Exit>,
        command: String,
    },
    Send(ToInit),
    Ping(oneshot::Sender<()>),
}

/// The monitor's handle on the init's channel.
#[derive(Clone)]
pub struct Processes {
    tx: mpsc::Sender<Cmd>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    live: Arc<Mutex<HashMap<i32, String>>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Processes {
    /// Starts the channel task. `setup` receives the init's first message
    /// (setup done or failed); `events` gets process exits.
    pub fn start(
        channel: OwnedFd,
        setup: oneshot::Sender<Result<Option<OwnedFd>, String>>,
        events: broadcast::Sender<pb::Event>,
    ) -> std::io::Result<Self> {
        nix::fcntl::fcntl(
            &channel,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        let fd = crate::sys::async_fd(channel)?;
        let (tx, rx) = mpsc::channel(64);
        let live = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(channel_task(fd, rx, setup, events, live.clone()));
        Ok(Processes {
            tx,
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            live,
        })
    }

    /// Guest PIDs of the live processes started through the channel.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .live
            .lock()
            .expect("not poisoned")
            .keys()
            .map(|p| *p as u32)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Starts a process; returns its guest PID, its pty master (for a tty)
    /// and a receiver of its exit.
    pub async fn spawn(
        &self,
        start: &pb::ExecStart,
        fds: Vec<OwnedFd>,
    ) -> Result<(i32, Option<OwnedFd>, oneshot::Receiver<Exit>), ExecError> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tty = start.tty.then(|| {
            let w = start
                .window
                .unwrap_or(pb::WindowSize { rows: 24, cols: 80 });
            (
                w.rows.min(u16::MAX as u32) as u16,
                w.cols.min(u16::MAX as u32) as u16,
            )
        });
        let mut env: Vec<(String, String)> = start.env.clone().into_iter().collect();
        env.sort();
        let msg = ToInit::Spawn {
            id,
            argv: start.argv.clone(),
            env,
            cwd: start.cwd.clone(),
            user: start.user.clone(),
            tty,
        };
        // One packet per message: a request the init could not read whole
        // would never be answered.
        let size = serde_json::to_vec(&msg)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > crate::init::MAX_MESSAGE {
            return Err(ExecError::Spawn(format!(
                "the command line and environment take {size} bytes; the limit is {}",
                crate::init::MAX_MESSAGE
            )));
        }
        let (reply, reply_rx) = oneshot::channel();
        let (exit, exit_rx) = oneshot::channel();
        self.tx
            .send(Cmd::Spawn {
                msg,
                fds,
                reply,
                exit,
                command: start.argv.first().cloned().unwrap_or_default(),
            })
            .await
            .map_err(|_| ExecError::InitGone)?;
        let (pid, master) = reply_rx
            .await
            .map_err(|_| ExecError::InitGone)?
            .map_err(ExecError::Spawn)?;
        Ok((pid, master, exit_rx))
    }

    /// Sends a signal to a guest PID (0: every process but the init).
    pub async fn signal(&self, pid: i32, signal: i32) -> Result<(), ExecError> {
        self.tx
            .send(Cmd::Send(ToInit::Signal { pid, signal }))
            .await
            .map_err(|_| ExecError::InitGone)
    }

    /// Whether the init answers a ping within `timeout` (the watchdog).
    pub async fn ping(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let asked = async {
            self.tx.send(Cmd::Ping(tx)).await.ok()?;
            rx.await.ok()
        };
        matches!(tokio::time::timeout(timeout, asked).await, Ok(Some(())))
    }

    /// Asks the init to stop everything and exit.
    pub async fn shutdown(&self, grace: Duration) -> Result<(), ExecError> {
        self.tx
            .send(Cmd::Send(ToInit::Shutdown {
                grace_ms: grace.as_millis() as u64,
            }))
            .await
            .map_err(|_| ExecError::InitGone)
    }
}

async fn send_msg(fd: &AsyncFd<OwnedFd>, msg: &ToInit, fds: &[RawFd]) -> std::io::Result<()> {
    loop {
        let mut guard = fd.writable().await?;
        match guard.try_io(|fd| crate::init::send(fd.get_ref(), msg, fds)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn channel_task(
    fd: AsyncFd<OwnedFd>,
    mut rx: mpsc::Receiver<Cmd>,
    setup: oneshot::Sender<Result<Option<OwnedFd>, String>>,
    events: broadcast::Sender<pb::Event>,
    live: Arc<Mutex<HashMap<i32, String>>>,
) {
    let mut setup = Some(setup);
    #[allow(clippy::type_complexity)]
    let mut pending: HashMap<u64, (oneshot::Sender<_>, oneshot::Sender<Exit>, String)> =
        HashMap::new();
    let mut exits: HashMap<i32, oneshot::Sender<Exit>> = HashMap::new();
    let mut pings: HashMap<u64, oneshot::Sender<()>> = HashMap::new();
    let mut next_ping = 0u64;
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => return,
                Some(Cmd::Send(msg)) => {
                    if send_msg(&fd, &msg, &[]).await.is_err() {
                        return;
                    }
                }
                Some(Cmd::Ping(reply)) => {
                    next_ping += 1;
                    // Unanswered pings of a hung init are dropped with it.
                    pings.retain(|_, r| !r.is_closed());
                    pings.insert(next_ping, reply);
                    if send_msg(&fd, &ToInit::Ping { seq: next_ping }, &[]).await.is_err() {
                        return;
                    }
                }
                Some(Cmd::Spawn { msg, fds, reply, exit, command }) => {
                    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
                    let id = match &msg { ToInit::Spawn { id, .. } => *id, _ => 0 };
                    if let Err(e) = send_msg(&fd, &msg, &raw).await {
                        let _ = reply.send(Err(format!("sending to the VM's init: {e}")));
                        continue;
                    }
                    drop(fds);
                    pending.insert(id, (reply, exit, command));
                }
            },
            ready = fd.readable() => {
                let Ok(mut guard) = ready else { return };
                let got = guard.try_io(|fd| crate::init::recv::<FromInit>(fd.get_ref()));
                let Ok(result) = got else { continue };
                let (msg, mut fds) = match result {
                    Ok(Some(m)) => m,
                    // EOF: the init died. Dropping the senders tells every
                    // waiter.
                    Ok(None) => {
                        if let Some(s) = setup.take() {
                            let _ = s.send(Err("the guest init exited during setup".into()));
                        }
                        return;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => continue,
                    Err(_) => return,
                };
                match msg {
                    FromInit::SetupDone => {
                        if let Some(s) = setup.take() { let _ = s.send(Ok(fds.pop())); }
                    }
                    FromInit::SetupFailed { error } => {
                        if let Some(s) = setup.take() { let _ = s.send(Err(error)); }
                    }
                    FromInit::Spawned { id, pid } => {
                        if let Some((reply, exit, command)) = pending.remove(&id) {
                            exits.insert(pid, exit);
                            live.lock().expect("not poisoned").insert(pid, command);
                            let _ = reply.send(Ok((pid, fds.pop())));
                        }
                    }
                    FromInit::Pong { seq } => {
                        if let Some(reply) = pings.remove(&seq) {
                            let _ = reply.send(());
                        }
                    }
                    FromInit::SpawnFailed { id, error } => {
                        if let Some((reply, _, _)) = pending.remove(&id) {
                            let _ = reply.send(Err(error));
                        }
                    }
                    FromInit::Exited { pid, code, signal } => {
                        let command = live.lock().expect("not poisoned").remove(&pid).unwrap_or_default();
                        if let Some(exit) = exits.remove(&pid) {
                            let _ = exit.send((code, signal));
                        }
                        // Crashes (of every guest process, with the fault
                        // address) are the tracer's to report.
                        if crate::tracer::is_crash_signal(signal) {
                            continue;
                        }
                        let _ = events.send(pb::Event {
                            time_ms: now_ms(),
                            kind: Some(pb::event::Kind::ProcessExited(pb::ProcessExited {
                                pid: pid as u32,
                                command,
                                status: Some(pb::ExitStatus { code, signal }),
                                ..Default::default()
                            })),
                        });
                    }
                }
            }
        }
    }
}

type Out = mpsc::Sender<Result<pb::ExecReply, tonic::Status>>;

fn reply(kind: pb::exec_reply::Kind) -> Result<pb::ExecReply, tonic::Status> {
    Ok(pb::ExecReply { kind: Some(kind) })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ExecError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ExecError::Io {
        what: "creating a pipe",
        source: e.into(),
    })
}

/// Runs one Exec session to its end: starts the process, pumps `input`
/// into it and its output to `out`, and sends the exit status last.
pub async fn session(
    procs: Processes,
    start: pb::ExecStart,
    mut input: tonic::Streaming<pb::ExecRequest>,
    out: Out,
) {
    if let Err(e) = session_inner(&procs, start, &mut input, &out).await {
        let _ = out
            .send(Err(match e {
                ExecError::Spawn(m) => tonic::Status::failed_precondition(m),
                other => tonic::Status::internal(other.to_string()),
            }))
            .await;
    }
}

async fn session_inner(
    procs: &Processes,
    start: pb::ExecStart,
    input: &mut tonic::Streaming<pb::ExecRequest>,
    out: &Out,
) -> Result<(), ExecError> {
    let io = |what| move |source| ExecError::Io { what, source };
    if start.tty {
        let (pid, master, exit) = procs.spawn(&start, Vec::new()).await?;
        let master = master.ok_or(ExecError::Spawn("the init sent no pty".into()))?;
        let _ = out
            .send(reply(pb::exec_reply::Kind::Started(pid as u32)))
            .await;
        nix::fcntl::fcntl(
            &master,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| ExecError::Io {
            what: "pty",
            source: e.into(),
        })?;
        let master = Arc::new(crate::sys::async_fd(master).map_err(io("registering the pty"))?);
        let reader = tokio::spawn(pump_pty(master.clone(), out.clone()));
        let writer = async {
            while let Ok(Some(req)) = input.message().await {
                match req.kind {
                    Some(pb::exec_request::Kind::Stdin(data))
                        if write_all_fd(&master, &data).await.is_err() =>
                    {
                        break;
                    }
                    Some(pb::exec_request::Kind::StdinEof(_)) => {
                        let _ = write_all_fd(&master, &[4]).await;
                    }
                    Some(pb::exec_request::Kind::Resize(w)) => {
                        let _ = crate::sys::set_window_size(
                            master.get_ref(),
                            w.rows as u16,
                            w.cols as u16,
                        );
                    }
                    Some(pb::exec_request::Kind::Signal(s)) => {
                        let _ = procs.signal(pid, s).await;
                    }
                    _ => {}
                }
            }
            // The client is gone: hang up, as a closed terminal would.
            let _ = procs.signal(pid, libc::SIGHUP).await;
            std::future::pending::<()>().await
        };
        let status = tokio::select! {
            e = exit => e.map_err(|_| ExecError::InitGone)?,
            _ = writer => unreachable!(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        let _ = out
            .send(reply(pb::exec_reply::Kind::Exit(pb::ExitStatus {
                code: status.0,
                signal: status.1,
            })))
            .await;
        return Ok(());
    }
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (pid, _, exit) = procs.spawn(&start, vec![in_r, out_w, err_w]).await?;
    let _ = out
        .send(reply(pb::exec_reply::Kind::Started(pid as u32)))
        .await;
    let stdout =
        tokio::net::unix::pipe::Receiver::from_owned_fd(out_r).map_err(io("stdout pipe"))?;
    let stderr =
        tokio::net::unix::pipe::Receiver::from_owned_fd(err_r).map_err(io("stderr pipe"))?;
    let mut stdin =
        Some(tokio::net::unix::pipe::Sender::from_owned_fd(in_w).map_err(io("stdin pipe"))?);
    let r1 = tokio::spawn(pump(stdout, out.clone(), true));
    let r2 = tokio::spawn(pump(stderr, out.clone(), false));
    let writer = async {
        while let Ok(Some(req)) = input.message().await {
            match req.kind {
                Some(pb::exec_request::Kind::Stdin(data)) => {
                    if let Some(s) = stdin.as_mut() {
                        if s.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Some(pb::exec_request::Kind::StdinEof(_)) => stdin = None,
                Some(pb::exec_request::Kind::Signal(s)) => {
                    let _ = procs.signal(pid, s).await;
                }
                _ => {}
            }
        }
        // The client half-closed: so does stdin.
        stdin = None;
        std::future::pending::<()>().await
    };
    let status = tokio::select! {
        e = exit => e.map_err(|_| ExecError::InitGone)?,
        _ = writer => unreachable!(),
    };
    // Output still in the pipes comes first; a daemon that kept them open
    // does not hold the exit status back for long.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = r1.await;
        let _ = r2.await;
    })
    .await;
    let _ = out
        .send(reply(pb::exec_reply::Kind::Exit(pb::ExitStatus {
            code: status.0,
            signal: status.1,
        })))
        .await;
    Ok(())
}

async fn pump(mut from: tokio::net::unix::pipe::Receiver, out: Out, stdout: bool) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = buf[..n].to_vec();
                let kind = if stdout {
                    pb::exec_reply::Kind::Stdout(data)
                } else {
                    pb::exec_reply::Kind::Stderr(data)
                };
                if out.send(reply(kind)).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn pump_pty(master: Arc<AsyncFd<OwnedFd>>, out: Out) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let Ok(mut guard) = master.readable().await else {
            return;
        };
        match guard
            .try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from))
        {
            Err(_would_block) => continue,
            // EIO: every holder of the pty's slave side is gone.
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => {
                if out
                    .send(reply(pb::exec_reply::Kind::Stdout(buf[..n].to_vec())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn write_all_fd(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        match guard
            .try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from))
        {
            Err(_would_block) => continue,
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(())
}

/// Starts a spec command (`/bin/sh -c LINE`) with its output logged.
pub async fn start_command(procs: &Processes, line: &str) -> Result<i32, ExecError> {
    let start = pb::ExecStart {
        argv: vec!["/bin/sh".into(), "-c".into(), line.into()],
        ..Default::default()
    };
    let (in_r, in_w) = pipe()?;
    drop(in_w);
    let (out_r, out_w) = pipe()?;
    let err_w = out_w.try_clone().map_err(|source| ExecError::Io {
        what: "dup",
        source,
    })?;
    let (pid, _, exit) = procs.spawn(&start, vec![in_r, out_w, err_w]).await?;
    let line = line.to_owned();
    let output =
        tokio::net::unix::pipe::Receiver::from_owned_fd(out_r).map_err(|source| ExecError::Io {
            what: "command pipe",
            source,
        })?;
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(output).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            tracing::info!(pid, command = %line, "{l}");
        }
        if let Ok((code, signal)) = exit.await {
            tracing::info!(pid, command = %line, code, signal, "start command ended");
        }
    });
    Ok(pid)
}

/// Runs a health command (`/bin/sh -c LINE`, no input, output dropped)
/// and says whether it exited 0 within `timeout`; one that overruns is
/// killed.
pub async fn check_command(procs: &Processes, line: &str, timeout: Duration) -> bool {
    let start = pb::ExecStart {
        argv: vec!["/bin/sh".into(), "-c".into(), line.into()],
        ..Default::default()
    };
    let Ok((in_r, in_w)) = pipe() else {
        return false;
    };
    drop(in_w);
    let Ok((out_r, out_w)) = pipe() else {
        return false;
    };
    drop(out_r);
    let Ok(err_w) = out_w.try_clone() else {
        return false;
    };
    let Ok((pid, _, exit)) = procs.spawn(&start, vec![in_r, out_w, err_w]).await else {
        return false;
    };
    match tokio::time::timeout(timeout, exit).await {
        Ok(Ok((code, signal))) => code == 0 && signal == 0,
        Ok(Err(_)) => false,
        Err(_) => {
            let _ = procs.signal(pid, libc::SIGKILL).await;
            false
        }
    }
}
