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
