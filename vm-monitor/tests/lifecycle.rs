//! The monitor is the VM: killed, it leaves nothing behind; asked to shut
//! down, it stops cleanly.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;
use vbet_proto::vbet::vm::v1 as pb;
use vm_monitor::spec::{NicSpec, Wiring};

/// Every process's network namespace inode.
fn netns_in_use() -> Vec<u64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::metadata(e.path().join("ns/net")).ok())
        .map(|m| m.ino())
        .collect()
}

#[tokio::test]
async fn sigkill_of_the_monitor_leaves_nothing() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("kill");
    let mut s = spec("life", &name, dir.path());
    s.resources.memory = Some(vm_monitor::spec::ByteSize(64 << 20));
    s.nics.push(NicSpec {
        index: 0,
        mac: None,
        addresses: vec!["10.78.0.1/24".into()],
        wiring: Wiring::Wire {
            local: dir.path().join(format!("{name}.eth0")),
            remote: dir.path().join("nobody.eth0"),
        },
    });
    s.commands.push("sleep 1000".into());
    let (mut vm, mut client) = TestVm::start(s, dir.path()).await;
    sh(&mut client, "sleep 1000 & echo started").await;
    let status = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let init = status.init_pid;
    let netns = std::fs::metadata(format!("/proc/{init}/ns/net"))
        .unwrap()
        .ino();
    assert!(cgroup_dirs(&vm.spec).iter().any(|d| d.exists()));
    drop(client);

    vm.kill();

    // The guest, its namespaces, cgroup, sockets and files all go.
    poll("the guest init to die", Duration::from_secs(10), || {
        (!std::path::Path::new(&format!("/proc/{init}")).exists()
            || std::fs::metadata(format!("/proc/{init}/ns/net"))
                .map(|m| m.ino())
                .ok()
                != Some(netns))
        .then_some(())
    });
    poll(
        "the VM's network namespace to go",
        Duration::from_secs(10),
        || (!netns_in_use().contains(&netns)).then_some(()),
    );
    assert_no_leftovers(&vm.spec, &vm.spec_path);
}

#[tokio::test]
async fn shutdown_request_stops_the_vm() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("down");
    let mut s = spec("life", &name, dir.path());
    // A process that ignores SIGTERM is killed after the grace time.
    s.commands
        .push("trap '' TERM; while :; do sleep 1; done".into());
    let (mut vm, mut client) = TestVm::start(s, dir.path()).await;
    let mut events = client
        .events(pb::EventsRequest {})
        .await
        .unwrap()
        .into_inner();
    client
        .shutdown(pb::ShutdownRequest { timeout_ms: 300 })
        .await
        .unwrap();
    let mut states = Vec::new();
    while let Ok(Ok(Some(e))) =
        tokio::time::timeout(Duration::from_secs(10), events.message()).await
    {
        if let Some(pb::event::Kind::State(s)) = e.kind {
            states.push(s);
        }
    }
    assert!(
        states.contains(&(pb::VmState::Stopping as i32)),
        "{states:?}"
    );
    drop(client);
    let mut child = vm.child.take().unwrap();
    let status = poll("monitor exit", Duration::from_secs(10), || {
        child.try_wait().unwrap()
    });
    assert!(status.success());
    assert_no_leftovers(&vm.spec, &vm.spec_path);
}

#[tokio::test]
async fn restart_policy_boots_the_guest_again() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("again");
    let mut s = spec("life", &name, dir.path());
    s.restart = vm_monitor::spec::RestartPolicy::Always;
    let (mut vm, mut client) = TestVm::start(s, dir.path()).await;
    let marker = sh(&mut client, "echo x > /etc/marker; echo ok").await;
    assert_eq!(marker, "ok\n");
    let before = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    drop(client);

    // The guest dies behind the monitor's back.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before.init_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (after, mut client) = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the VM did not come back"
        );
        if let Ok(mut c) = vm_monitor::client::connect(&vm.spec.api_socket()).await {
            if let Ok(s) = c.status(pb::StatusRequest {}).await {
                let s = s.into_inner();
                if s.init_pid != before.init_pid && s.state == pb::VmState::Running as i32 {
                    break (s, c);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        after.monitor_pid, before.monitor_pid,
        "the monitor kept its PID"
    );
    assert_eq!(after.monitor_pid, vm.pid());
    // A fresh boot: the writable layer was the old VM's.
    let out = exec(&mut client, &["cat", "/etc/marker"]).await;
    assert_ne!(out.status.code, 0);
    drop(client);
    assert!(vm.stop().success());
}

#[tokio::test]
async fn cleanup_after_monitor_and_reaper_were_killed() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = unique("stale");
    let name = unique("v");
    let (mut vm, client) = TestVm::start(spec(&lab, &name, dir.path()), dir.path()).await;
    drop(client);
    // Kill the reaper first, then the monitor: nobody cleans up.
    let needle = vm.spec_path.to_string_lossy().into_owned();
    for pid in processes_with(&needle) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "vbet-reaper" {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
    }
    vm.kill();
    poll("the guest to die", Duration::from_secs(10), || {
        processes_with(&needle).is_empty().then_some(())
    });
    // ... all of it: an exiting init has no command line any more but is
    // still in its cgroup until it is reaped (by the host's init, now).
    poll("the VM's cgroup to empty", Duration::from_secs(20), || {
        cgroup_dirs(&vm.spec)
            .iter()
            .all(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .map(|p| p.trim().is_empty())
                    .unwrap_or(true)
            })
            .then_some(())
    });
    assert!(vm.spec.lock_path().exists() || cgroup_dirs(&vm.spec).iter().any(|d| d.exists()));

    let out = std::process::Command::new(MONITOR)
        .args(["cleanup", "--lab", &lab, "--run-dir"])
        .arg(vm.spec.run_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_leftovers(&vm.spec, &vm.spec_path);
}

#[tokio::test]
async fn ready_is_notified_to_systemd() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("notify");
    let s = spec("life", &name, dir.path());
    let notify = dir.path().join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let path = write_spec(&s, dir.path());
    let mut child = std::process::Command::new(MONITOR)
        .args(["run", "--spec"])
        .arg(&path)
        .env("NOTIFY_SOCKET", &notify)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf);
    // By READY=1 the VM serves and runs.
    let ready = n
        .as_ref()
        .map(|n| String::from_utf8_lossy(&buf[..*n]).into_owned());
    let status = match vm_monitor::client::connect(&s.api_socket()).await {
        Ok(mut c) => c
            .status(pb::StatusRequest {})
            .await
            .map(|r| r.into_inner().state)
            .ok(),
        Err(_) => None,
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let exit = poll("monitor exit", Duration::from_secs(20), || {
        child.try_wait().unwrap()
    });
    assert!(ready.unwrap().contains("READY=1"));
    assert_eq!(status, Some(pb::VmState::Running as i32));
    assert!(exit.success());
    assert_no_leftovers(&s, &path);
}

#[tokio::test]
async fn reboot_and_poweroff_in_the_guest_are_its_power_button() {
    if !can_run() {
        return;
    }
    if !std::path::Path::new("/bin/busybox").exists() {
        skip("needs busybox for reboot -f and poweroff -f");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("power");
    // restart = never: a reboot boots again all the same.
    let (mut vm, mut client) = TestVm::start(spec("life", &name, dir.path()), dir.path()).await;
    let before = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    // The Exec itself ends with the VM.
    let _ = vm_monitor::client::exec(&mut client, &["/bin/busybox", "reboot", "-f"], b"").await;
    drop(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the VM did not reboot"
        );
        if let Ok(mut c) = vm_monitor::client::connect(&vm.spec.api_socket()).await {
            if let Ok(s) = c.status(pb::StatusRequest {}).await {
                let s = s.into_inner();
                if s.init_pid != before.init_pid && s.state == pb::VmState::Running as i32 {
                    break c;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Power off: the monitor ends, cleanly.
    let _ = vm_monitor::client::exec(&mut client, &["/bin/busybox", "poweroff", "-f"], b"").await;
    drop(client);
    let mut child = vm.child.take().unwrap();
    let status = poll("monitor exit", Duration::from_secs(20), || {
        child.try_wait().unwrap()
    });
    assert!(status.success(), "{status}");
    assert_no_leftovers(&vm.spec, &vm.spec_path);
}
