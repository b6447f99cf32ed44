//! A VM boots; Exec runs commands with stdin, output and exit codes, and a
//! shell on a pty.

mod common;

use std::time::Duration;

use common::*;
use vbet_proto::vbet::vm::v1 as pb;

#[tokio::test]
async fn exec_runs_commands_in_the_vm() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("ex");
    let (mut vm, mut client) = TestVm::start(spec("t", &name, dir.path()), dir.path()).await;

    let out = exec(&mut client, &["hostname"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), name);
    assert_eq!(out.status, pb::ExitStatus { code: 0, signal: 0 });

    let out = vm_monitor::client::exec(&mut client, &["cat"], b"hello\nworld\n")
        .await
        .unwrap();
    assert_eq!(out.stdout, b"hello\nworld\n");

    let out = exec(&mut client, &["/bin/sh", "-c", "echo oops >&2; exit 3"]).await;
    assert_eq!(out.status.code, 3);
    assert_eq!(out.stderr, b"oops\n");

    let out = exec(&mut client, &["/bin/sh", "-c", "kill -9 $$"]).await;
    assert_eq!(out.status.signal, 9);

    let err = vm_monitor::client::exec(&mut client, &["/no/such/program"], b"")
        .await
        .unwrap_err();
    assert!(err.message().contains("/no/such/program"), "{err}");

    // Too large a request is refused, not lost.
    let huge = "x".repeat(300 * 1024);
    let err = vm_monitor::client::exec(&mut client, &["echo", &huge], b"")
        .await
        .unwrap_err();
    assert!(err.message().contains("the limit is"), "{err}");
    assert_eq!(sh(&mut client, "echo still here").await, "still here\n");

    // The process runs as a child of the guest init, in the VM's PID
    // namespace, as the user asked for.
    assert_eq!(sh(&mut client, "echo $PPID").await.trim(), "1");
    let out = exec(&mut client, &["id", "-u"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");

    // Orphans are reaped by the guest init: no zombie stays.
    sh(&mut client, "(sleep 0.1 &) ; true").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let states = sh(&mut client, "ps -e -o stat=").await;
        // Left: the init, the shell and ps; no zombie.
        let zombie = states.lines().any(|l| l.trim_start().starts_with('Z'));
        if !zombie && states.lines().count() <= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "zombies or orphans left:\n{states}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // In the VM's cgroup, seen through its cgroup namespace as the root.
    let cgroups = sh(&mut client, "cat /proc/self/cgroup").await;
    for line in cgroups
        .lines()
        .filter(|l| !l.contains("name=systemd") && !l.starts_with("0::"))
    {
        if ["memory", "pids", "cpu", "freezer"]
            .iter()
            .any(|c| line.contains(c))
        {
            assert!(line.ends_with(":/"), "not at the VM's cgroup root: {line}");
        }
    }
    let host_pid = {
        // The exec'd process's host PID: find it through the init's children.
        let status = client
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        status.init_pid
    };
    let host_cgroups = std::fs::read_to_string(format!("/proc/{host_pid}/cgroup")).unwrap();
    assert!(
        host_cgroups.contains(&format!("/vbet/t.{name}")),
        "the guest init is not in the VM's cgroup: {host_cgroups}"
    );

    // The command-line client.
    let mut cli = std::process::Command::new(MONITOR)
        .args(["exec", "--api"])
        .arg(vm.spec.api_socket())
        .args(["--", "/bin/sh", "-c", "tr a-z A-Z; exit 7"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    cli.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let out = tokio::task::spawn_blocking(move || cli.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.stdout, b"SHOUT\n");
    assert_eq!(out.status.code(), Some(7));

    let status = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.name, name);
    assert_eq!(status.state, pb::VmState::Running as i32);

    drop(client);
    assert!(vm.stop().success());
}

#[tokio::test]
async fn a_shell_on_a_pty() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("pty");
    let (mut vm, mut client) = TestVm::start(spec("t", &name, dir.path()), dir.path()).await;

    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(pb::ExecRequest {
        kind: Some(pb::exec_request::Kind::Start(pb::ExecStart {
            argv: vec!["/bin/sh".into()],
            tty: true,
            window: Some(pb::WindowSize {
                rows: 40,
                cols: 100,
            }),
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
    let stdin = |s: &str| pb::ExecRequest {
        kind: Some(pb::exec_request::Kind::Stdin(s.as_bytes().to_vec())),
    };
    tx.send(stdin("tty; stty size; echo sum=$((40+2))\n"))
        .await
        .unwrap();
    let mut screen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !screen.contains("sum=42") {
        let reply = tokio::time::timeout_at(deadline, replies.message())
            .await
            .expect("shell output in time")
            .unwrap()
            .expect("stream open");
        if let Some(pb::exec_reply::Kind::Stdout(d)) = reply.kind {
            screen.push_str(&String::from_utf8_lossy(&d));
        }
    }
    assert!(screen.contains("/dev/pts/0"), "{screen}");
    assert!(screen.contains("40 100"), "{screen}");
    tx.send(stdin("exit 5\n")).await.unwrap();
    let code = loop {
        let reply = tokio::time::timeout_at(deadline, replies.message())
            .await
            .expect("exit in time")
            .unwrap()
            .expect("stream open");
        if let Some(pb::exec_reply::Kind::Exit(s)) = reply.kind {
            break s.code;
        }
    };
    assert_eq!(code, 5);
    drop(tx);
    drop(client);
    assert!(vm.stop().success());
}
