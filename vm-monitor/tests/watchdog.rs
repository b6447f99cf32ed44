//! The watchdog: a hung guest init is killed and the VM boots again per
//! its restart policy; a frozen VM is not hung.

mod common;

use std::time::Duration;

use common::*;
use vbet_proto::vbet::vm::v1 as pb;
use vm_monitor::spec::RestartPolicy;

async fn status(spec: &vm_monitor::spec::VmSpec) -> Option<pb::VmStatus> {
    let mut client = vm_monitor::client::connect(&spec.api_socket()).await.ok()?;
    Some(client.status(pb::StatusRequest {}).await.ok()?.into_inner())
}

/// Waits (30 s at most) until the VM runs again with another init than
/// `first`'s; returns its status.
async fn booted_again(spec: &vm_monitor::spec::VmSpec, first: &pb::VmStatus) -> pb::VmStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = status(spec).await
            && s.init_pid != first.init_pid
            && s.state == pb::VmState::Running as i32
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the VM did not boot again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_hung_init_is_killed_and_the_vm_boots_again() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("t", &unique("wd"), dir.path());
    spec.restart = RestartPolicy::Always;
    spec.watchdog.interval = 0.2;
    spec.watchdog.timeout = 1.5;
    let (mut vm, mut client) = TestVm::start(spec.clone(), dir.path()).await;
    let first = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();

    // Frozen for longer than interval + timeout: not hung.
    client.freeze(pb::FreezeRequest {}).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    client.thaw(pb::ThawRequest {}).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let now = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.init_pid, first.init_pid, "a frozen VM was restarted");

    // A stopped init does not answer: killed, and the VM boots again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.init_pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let again = booted_again(&spec, &first).await;
    assert_eq!(again.monitor_pid, first.monitor_pid);
    let log = std::fs::read_to_string(dir.path().join(format!("{}.log", spec.name))).unwrap();
    assert!(log.contains("watchdog: the guest init is hung"), "{log}");
    vm.stop();
}

#[tokio::test]
async fn an_unhealthy_vm_boots_again() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("t", &unique("hc"), dir.path());
    spec.restart = RestartPolicy::Always;
    spec.watchdog.interval = 0.2;
    spec.watchdog.timeout = 2.0;
    spec.watchdog.health = Some("test -e /run/healthy".into());
    spec.commands = vec!["touch /run/healthy".into()];
    let (mut vm, mut client) = TestVm::start(spec.clone(), dir.path()).await;
    let first = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();

    // Healthy for a dozen checks: the same init.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let now = status(&spec).await.unwrap();
    assert_eq!(now.init_pid, first.init_pid, "a healthy VM was restarted");

    // Ill: after three failed checks, killed and booted again.
    sh(&mut client, "rm /run/healthy").await;
    booted_again(&spec, &first).await;
    let log = std::fs::read_to_string(dir.path().join(format!("{}.log", spec.name))).unwrap();
    assert!(log.contains("watchdog: the VM is unhealthy"), "{log}");
    vm.stop();
}
