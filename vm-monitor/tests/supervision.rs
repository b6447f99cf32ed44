//! ptrace supervision: the process tree in Status, crash reports with the
//! fault address, and syscall tracing switched on and off at run time.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tonic::transport::Channel;
use vbet_proto::vbet::vm::v1 as pb;
use vbet_proto::vbet::vm::v1::vm_monitor_client::VmMonitorClient;

/// The state letter of a host process ("S", "R", "t" = stopped by a
/// tracer).
fn host_state(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("State:"))
        .map(|s| s.trim().chars().take(1).collect())
}

/// The innermost PID of a host process (its guest PID).
fn guest_pid_of(host: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{host}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|s| s.split_whitespace().last()?.parse().ok())
}

async fn processes(client: &mut VmMonitorClient<Channel>) -> Vec<pb::Process> {
    client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .processes
}

/// Starts a long command through Exec and keeps its stream.
async fn start(
    client: &mut VmMonitorClient<Channel>,
    script: &str,
) -> (
    u32,
    tokio::sync::mpsc::Sender<pb::ExecRequest>,
    tonic::Streaming<pb::ExecReply>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tx.send(pb::ExecRequest {
        kind: Some(pb::exec_request::Kind::Start(pb::ExecStart {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut replies = client
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let Some(pb::exec_reply::Kind::Started(pid)) = replies.message().await.unwrap().unwrap().kind
    else {
        panic!("no Started first");
    };
    (pid, tx, replies)
}

#[tokio::test]
async fn status_lists_every_process_of_the_vm_and_none_is_left_stopped() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("tree");
    let (mut vm, mut client) = TestVm::start(spec("t", &name, dir.path()), dir.path()).await;

    // A shell with two children, and a grandchild through a subshell.
    let (sh, tx, replies) = start(&mut client, "sleep 1001 & (sleep 1002; true) & wait").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let list = loop {
        let list = processes(&mut client).await;
        let has = |needle: &str| list.iter().any(|p| p.command == needle);
        if has("sleep 1001") && has("sleep 1002") {
            break list;
        }
        assert!(Instant::now() < deadline, "no sleeps in {list:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let init = list
        .iter()
        .find(|p| p.pid == 1)
        .expect("the init is listed");
    assert_eq!(init.ppid, 0);
    assert_eq!(init.host_pid, vm_status_init(&mut client).await);
    let find = |c: &str| list.iter().find(|p| p.command == c).unwrap().clone();
    let s1 = find("sleep 1001");
    assert_eq!(s1.ppid, sh, "{list:#?}");
    let s2 = find("sleep 1002");
    let subshell = list.iter().find(|p| p.pid == s2.ppid).expect("subshell");
    assert_eq!(subshell.ppid, sh);
    assert_eq!(list.iter().find(|p| p.pid == sh).unwrap().ppid, 1);
    for p in &list {
        // Host and guest PIDs are the same process; nothing sits in a
        // ptrace stop once the tree is idle.
        assert_eq!(guest_pid_of(p.host_pid), Some(p.pid), "{p:?}");
        poll(
            &format!("{p:?} to leave its stop"),
            Duration::from_secs(5),
            || (host_state(p.host_pid).as_deref() != Some("t")).then_some(()),
        );
    }

    client
        .signal(pb::SignalRequest {
            pid: sh,
            signal: libc::SIGKILL,
        })
        .await
        .unwrap();
    client
        .signal(pb::SignalRequest {
            pid: 0,
            signal: libc::SIGKILL,
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = processes(&mut client).await;
        if list.len() == 1 && list[0].pid == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "processes remain: {list:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((tx, replies, client));
    assert!(vm.stop().success());
}

async fn vm_status_init(client: &mut VmMonitorClient<Channel>) -> u32 {
    client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .init_pid
}

async fn next_crash(events: &mut tonic::Streaming<pb::Event>, command: &str) -> pb::ProcessExited {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("crash event in time")
            .unwrap()
            .expect("stream open");
        if let Some(pb::event::Kind::ProcessExited(p)) = e.kind {
            if p.crashed && p.command.ends_with(command) {
                return p;
            }
        }
    }
}

#[tokio::test]
async fn a_crash_of_any_guest_process_reports_its_fault_address() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("crash");
    let (mut vm, mut client) = TestVm::start(spec("t", &name, dir.path()), dir.path()).await;
    let mut events = client
        .events(pb::EventsRequest {})
        .await
        .unwrap()
        .into_inner();

    // A grandchild (not started through Exec) reads an unmapped address.
    let out = exec(
        &mut client,
        &[
            "/bin/sh",
            "-c",
            "python3 -c 'import ctypes; ctypes.string_at(0xdead000)'; echo $?",
        ],
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "139");
    let crash = next_crash(&mut events, "python3").await;
    assert_eq!(crash.signal_name, "SIGSEGV");
    assert_eq!(crash.status.unwrap().signal, libc::SIGSEGV);
    assert_eq!(crash.fault_address, 0xdead000);
    assert_eq!(crash.signal_code, 1, "SEGV_MAPERR");
    assert_eq!(crash.vm, name);
    assert!(crash.pid > 1 && crash.host_pid > 0, "{crash:?}");

    // A signal sent by a process has no fault address; abort() is a crash.
    let out = exec(&mut client, &["python3", "-c", "import os; os.abort()"]).await;
    assert_eq!(out.status.signal, libc::SIGABRT);
    let crash = next_crash(&mut events, "python3").await;
    assert_eq!(crash.pid, out.pid);
    assert_eq!(crash.signal_name, "SIGABRT");
    assert_eq!(crash.fault_address, 0);
    assert!(crash.signal_code <= 0);

    drop((client, events));
    assert!(vm.stop().success());
}

/// Trace events, one by one from their batches.
struct Events {
    stream: tonic::Streaming<pb::TraceBatch>,
    pending: std::collections::VecDeque<pb::TraceEvent>,
}

impl Events {
    async fn next(&mut self) -> pb::TraceEvent {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return e;
            }
            let batch = self.stream.message().await.unwrap().expect("stream open");
            assert_eq!(batch.dropped, 0, "a fast reader loses nothing");
            self.pending.extend(batch.events);
        }
    }
}

/// Trace events until `want` matches one (or the deadline).
async fn find_event(stream: &mut Events, want: impl Fn(&pb::TraceEvent) -> bool) -> pb::TraceEvent {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = tokio::time::timeout(left, stream.next())
            .await
            .expect("trace event in time");
        if want(&e) {
            return e;
        }
    }
}

#[tokio::test]
async fn tracing_streams_syscalls_and_off_stops_them() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("trc");
    let (mut vm, mut client) = TestVm::start(spec("t", &name, dir.path()), dir.path()).await;
    // A process that runs across the switch: traced once it is on.
    let (_, tx, replies) = start(
        &mut client,
        "while :; do cat /etc/hostname > /dev/null; sleep 0.05; done",
    )
    .await;

    let state = client
        .trace_on(pb::TraceOnRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(state.on);
    let mut stream = Events {
        stream: client
            .trace(pb::TraceRequest {})
            .await
            .unwrap()
            .into_inner(),
        pending: Default::default(),
    };
    let e = find_event(&mut stream, |e| {
        e.syscall == "openat" && e.args.contains("\"/etc/hostname\"")
    })
    .await;
    assert_eq!(e.command, "cat");
    assert!(e.ret >= 0 && e.error.is_empty(), "{e:?}");
    assert_eq!(e.vm, name);
    assert!(e.pid > 1 && e.host_pid > 0, "{e:?}");

    // A process started while tracing is on; a failure with its errno;
    // a write with its buffer.
    let out = exec(
        &mut client,
        &["/bin/sh", "-c", "echo traced-text; cat /nonexistent-file"],
    )
    .await;
    assert_eq!(out.status.code, 1);
    // The write comes first (echo), then the failed open.
    find_event(&mut stream, |e| {
        e.syscall == "write" && e.args.starts_with("1, \"traced-text\\n\", 12")
    })
    .await;
    let e = find_event(&mut stream, |e| {
        e.syscall == "openat" && e.args.contains("/nonexistent-file")
    })
    .await;
    assert_eq!(e.error, "ENOENT");
    assert_eq!(e.ret, -(libc::ENOENT as i64));
    let status = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.tracing);

    // Off: the stream goes quiet, and no process stays stopped.
    let state = client
        .trace_off(pb::TraceOffRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!state.on && state.events > 0);
    // Events already in flight may still arrive; then nothing.
    let quiet = async {
        loop {
            if tokio::time::timeout(Duration::from_millis(700), stream.next())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), quiet)
        .await
        .expect("the trace stream goes quiet after TraceOff");
    let after = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!after.tracing);
    for p in &after.processes {
        if host_state(p.host_pid).as_deref() == Some("t") {
            // Possibly caught in a fork or exec stop: it must move on.
            poll(
                &format!("{p:?} to leave its stop"),
                Duration::from_secs(5),
                || (host_state(p.host_pid).as_deref() != Some("t")).then_some(()),
            );
        }
    }
    assert_eq!(sh(&mut client, "echo done").await.trim(), "done");

    drop((tx, replies, stream, client));
    assert!(vm.stop().success());
}

#[tokio::test]
async fn the_trace_cli_switches_and_streams() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("trcli");
    let (mut vm, mut client) = TestVm::start(spec("t", &name, dir.path()), dir.path()).await;
    let api = vm.spec.api_socket();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(MONITOR)
            .arg("trace")
            .arg("--api")
            .arg(&api)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(cli(&["on"]).contains("tracing on"));
    let mut stream = std::process::Command::new(MONITOR)
        .arg("trace")
        .arg("--api")
        .arg(&api)
        .arg("stream")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = stream.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.contains("openat(") && line.contains("/etc/hostname") {
                return Some(line);
            }
        }
        None
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while !reader.is_finished() {
        sh(&mut client, "cat /etc/hostname").await;
        assert!(Instant::now() < deadline, "no openat line from the CLI");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stream.kill();
    let _ = stream.wait();
    let line = reader.join().unwrap().expect("an openat line");
    assert!(line.contains("cat"), "{line}");
    assert!(cli(&["off"]).contains("tracing off"));

    // A VM stops cleanly with tracing on, a busy process and a client
    // still streaming: nothing is left behind (or stopped).
    assert!(cli(&["on"]).contains("tracing on"));
    let (_, tx, replies) = start(&mut client, "while :; do echo x > /dev/null; done").await;
    let mut stream = client
        .trace(pb::TraceRequest {})
        .await
        .unwrap()
        .into_inner();
    let batch = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a batch in time")
        .unwrap()
        .expect("stream open");
    assert!(!batch.events.is_empty());
    drop((tx, replies, client));
    assert!(vm.stop().success());
    drop(stream);
}

#[tokio::test]
async fn a_slow_trace_client_loses_events_but_never_stalls_the_guest() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("trslow");
    let (mut vm, mut client) = TestVm::start(spec("t", &name, dir.path()), dir.path()).await;
    client.trace_on(pb::TraceOnRequest {}).await.unwrap();
    // A client that subscribes, then reads nothing while the guest makes
    // ~200k syscalls (more than the broadcast, the stream's queue and the
    // HTTP/2 windows hold).
    let mut stream = client
        .trace(pb::TraceRequest {})
        .await
        .unwrap()
        .into_inner();
    let started = Instant::now();
    let out = exec(
        &mut client,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=100000"],
    )
    .await;
    assert_eq!(
        out.status.code,
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Traced, 200k syscalls take a few seconds; a guest waiting for the
    // client would never finish.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    // Once it reads, the stream says what it lost (counted when the
    // stream catches up with the broadcast) ...
    let deadline = Instant::now() + Duration::from_secs(30);
    let lost = loop {
        let batch = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a batch in time")
            .unwrap()
            .expect("stream open");
        if batch.dropped > 0 {
            break batch.dropped;
        }
        assert!(Instant::now() < deadline, "no batch reports its losses");
    };
    // ... and so does the VM's tracing state.
    let state = client
        .trace_off(pb::TraceOffRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(state.events >= 200_000, "{state:?}");
    assert!(state.dropped >= lost, "{state:?} < {lost}");
    drop((stream, client));
    assert!(vm.stop().success());
}
