//! `vbet shell`: an interactive terminal in a node, over Exec with a pty.
//! The local terminal is put in raw mode (and restored, whatever happens);
//! keystrokes go to the node, the node's screen comes back, and window
//! size changes follow.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use anyhow::{Context, bail};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::StreamExt;
use vbet_proto::vbet::orchestrator::v1 as pb;
use vbet_proto::vbet::vm::v1 as vm_pb;

use crate::client::Client;

/// Restores the terminal's settings when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved =
            termios::tcgetattr(stdin.as_fd()).context("cannot read the terminal's settings")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).context("cannot set raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

fn window() -> Option<vm_pb::WindowSize> {
    terminal_size::terminal_size().map(|(w, h)| vm_pb::WindowSize {
        rows: u32::from(h.0),
        cols: u32::from(w.0),
    })
}

/// Runs an interactive program (a login shell by default) in `node`;
/// returns its exit code.
pub async fn run(
    client: &mut Client,
    lab: &str,
    node: &str,
    argv: Vec<String>,
) -> anyhow::Result<ExitCode> {
    if !std::io::stdin().is_terminal() {
        bail!("vbet shell needs a terminal; use `vbet exec {lab}/{node} -- COMMAND` from scripts");
    }
    let argv = if argv.is_empty() {
        vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "if [ -x /bin/bash ]; then exec /bin/bash -l; else exec /bin/sh -l; fi".to_owned(),
        ]
    } else {
        argv
    };
    let message = |kind| pb::ExecRequest {
        lab: lab.to_owned(),
        node: node.to_owned(),
        request: Some(vm_pb::ExecRequest { kind: Some(kind) }),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    tx.send(message(vm_pb::exec_request::Kind::Start(
        vm_pb::ExecStart {
            argv,
            env: [(
                "TERM".to_owned(),
                std::env::var("TERM").unwrap_or_else(|_| "xterm".into()),
            )]
            .into(),
            tty: true,
            window: window(),
            ..Default::default()
        },
    )))
    .await?;
    let mut replies = client
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let raw = RawMode::enter()?;
    let input = {
        let tx = tx.clone();
        let (lab, node) = (lab.to_owned(), node.to_owned());
        tokio::spawn(async move {
            let message = |kind| pb::ExecRequest {
                lab: lab.clone(),
                node: node.clone(),
                request: Some(vm_pb::ExecRequest { kind: Some(kind) }),
            };
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 4096];
            let mut winch = signal(SignalKind::window_change()).ok();
            loop {
                tokio::select! {
                    read = stdin.read(&mut buf) => match read {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(message(vm_pb::exec_request::Kind::StdinEof(true))).await;
                            break;
                        }
                        Ok(n) => {
                            if tx.send(message(vm_pb::exec_request::Kind::Stdin(buf[..n].to_vec()))).await.is_err() {
                                break;
                            }
                        }
                    },
                    Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                        if let Some(size) = window() {
                            let _ = tx.send(message(vm_pb::exec_request::Kind::Resize(size))).await;
                        }
                    }
                }
            }
        })
    };
    let mut stdout = std::io::stdout();
    let mut code = 0;
    while let Some(reply) = replies.next().await {
        match reply?.kind {
            Some(vm_pb::exec_reply::Kind::Stdout(d) | vm_pb::exec_reply::Kind::Stderr(d)) => {
                stdout.write_all(&d)?;
                stdout.flush()?;
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
    input.abort();
    drop(raw);
    drop(tx);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
