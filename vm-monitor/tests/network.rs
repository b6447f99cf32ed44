//! Two VMs on a direct wire ping each other; link down shows NO-CARRIER
//! and stops traffic, up restores it.

mod common;

use std::time::Duration;

use common::*;
use vbet_proto::vbet::port::v1::LinkState;
use vbet_proto::vbet::vm::v1 as pb;
use vm_monitor::spec::{NicSpec, Wiring};

fn wired(
    lab: &str,
    name: &str,
    dir: &std::path::Path,
    addr: &str,
    local: &str,
    remote: &str,
) -> vm_monitor::spec::VmSpec {
    let mut s = spec(lab, name, dir);
    s.nics.push(NicSpec {
        index: 0,
        mac: None,
        addresses: vec![addr.into()],
        wiring: Wiring::Wire {
            local: dir.join(local),
            remote: dir.join(remote),
        },
    });
    s
}

async fn ping_ok(
    client: &mut vbet_proto::vbet::vm::v1::vm_monitor_client::VmMonitorClient<
        tonic::transport::Channel,
    >,
    to: &str,
) -> bool {
    let out = exec(client, &["ping", "-c", "1", "-W", "1", to]).await;
    out.status.code == 0
}

#[tokio::test]
async fn two_vms_on_a_direct_wire() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = unique("net");
    let (a, b) = (unique("a"), unique("b"));
    let (mut vm_a, mut ca) = TestVm::start(
        wired(&lab, &a, dir.path(), "10.77.0.1/24", "a.eth0", "b.eth0"),
        dir.path(),
    )
    .await;
    let (mut vm_b, mut cb) = TestVm::start(
        wired(&lab, &b, dir.path(), "10.77.0.2/24", "b.eth0", "a.eth0"),
        dir.path(),
    )
    .await;

    // The MAC is the stable one derived from lab, VM and index.
    let mac = vm_monitor::nic::format_mac(&vm_monitor::nic::derive_mac(&lab, &a, 0));
    assert_eq!(
        sh(&mut ca, "cat /sys/class/net/eth0/address").await.trim(),
        mac
    );

    // ARP may need a first try: poll with a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ping_ok(&mut ca, "10.77.0.2").await {
        assert!(tokio::time::Instant::now() < deadline, "A cannot ping B");
    }
    assert!(ping_ok(&mut cb, "10.77.0.1").await, "B cannot ping A");

    // Unplug A's cable: the guest sees NO-CARRIER, pings fail.
    let nic = ca
        .set_link(pb::SetLinkRequest {
            nic: 0,
            state: LinkState::Down as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nic.link_state, LinkState::Down as i32);
    let link = sh(&mut ca, "ip link show eth0").await;
    assert!(link.contains("NO-CARRIER"), "{link}");
    assert!(
        !ping_ok(&mut cb, "10.77.0.1").await,
        "traffic passed a down link"
    );

    // Plug it back.
    ca.set_link(pb::SetLinkRequest {
        nic: 0,
        state: LinkState::Up as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ping_ok(&mut cb, "10.77.0.1").await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the link did not come back"
        );
    }
    let link = sh(&mut ca, "ip link show eth0").await;
    assert!(!link.contains("NO-CARRIER"), "{link}");

    // Counters moved.
    let status = ca.status(pb::StatusRequest {}).await.unwrap().into_inner();
    let counters = status.nics[0].counters.unwrap();
    assert!(
        counters.rx_frames > 0 && counters.tx_frames > 0,
        "{counters:?}"
    );
    assert!(counters.drops.unwrap().link_down > 0);

    drop((ca, cb));
    assert!(vm_a.stop().success());
    assert!(vm_b.stop().success());
}
