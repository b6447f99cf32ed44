//! Two VMs whose NICs are joined by a VXLAN cable (RFC 7348) over
//! 127.0.0.1 ping each other, and the cable's link state still rules.

mod common;

use std::time::Duration;

use common::*;
use vbet_proto::vbet::port::v1::LinkState;
use vbet_proto::vbet::vm::v1 as pb;
use vm_monitor::spec::{NicSpec, Wiring};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn vxlan(
    lab: &str,
    name: &str,
    dir: &std::path::Path,
    addr: &str,
    local: u16,
    remote: u16,
) -> vm_monitor::spec::VmSpec {
    let mut s = spec(lab, name, dir);
    s.nics.push(NicSpec {
        index: 0,
        mac: None,
        addresses: vec![addr.to_owned()],
        wiring: Wiring::Vxlan {
            local: ([127, 0, 0, 1], local).into(),
            remote: ([127, 0, 0, 1], remote).into(),
            vni: 4711,
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
    exec(client, &["ping", "-c", "1", "-W", "1", to])
        .await
        .status
        .code
        == 0
}

#[tokio::test]
async fn two_vms_on_a_vxlan_cable() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = unique("vx");
    let (pa, pb_) = (free_udp_port(), free_udp_port());
    let (mut vm_a, mut ca) = TestVm::start(
        vxlan(&lab, &unique("a"), dir.path(), "10.79.0.1/24", pa, pb_),
        dir.path(),
    )
    .await;
    let (mut vm_b, mut cb) = TestVm::start(
        vxlan(&lab, &unique("b"), dir.path(), "10.79.0.2/24", pb_, pa),
        dir.path(),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ping_ok(&mut ca, "10.79.0.2").await {
        assert!(tokio::time::Instant::now() < deadline, "A cannot ping B");
    }
    assert!(ping_ok(&mut cb, "10.79.0.1").await, "B cannot ping A");
    let status = ca.status(pb::StatusRequest {}).await.unwrap().into_inner();
    assert!(
        status.nics[0].wiring.starts_with("vxlan 127.0.0.1:"),
        "{:?}",
        status.nics[0].wiring
    );
    assert!(status.nics[0].attached);

    // Unplugged: NO-CARRIER in A and nothing passes.
    ca.set_link(pb::SetLinkRequest {
        nic: 0,
        state: LinkState::Down as i32,
        egress: None,
        ingress: None,
    })
    .await
    .unwrap();
    assert!(
        sh(&mut ca, "ip link show eth0")
            .await
            .contains("NO-CARRIER")
    );
    assert!(
        !ping_ok(&mut cb, "10.79.0.1").await,
        "a ping crossed an unplugged cable"
    );
    vm_a.stop();
    vm_b.stop();
}

#[test]
fn a_vxlan_wiring_reads_from_a_spec() {
    let nic: NicSpec = toml::from_str(
        "index = 0\n\
         wiring = { kind = \"vxlan\", local = \"127.0.0.1:4790\", remote = \"127.0.0.1:4791\", vni = 42 }\n",
    )
    .unwrap();
    assert_eq!(
        nic.wiring,
        Wiring::Vxlan {
            local: ([127, 0, 0, 1], 4790).into(),
            remote: ([127, 0, 0, 1], 4791).into(),
            vni: 42,
        }
    );
    let dir = tempfile::tempdir().unwrap();
    let mut bad = vxlan("l", "n", dir.path(), "10.79.0.1/24", 1, 2);
    bad.nics[0].wiring = Wiring::Vxlan {
        local: ([127, 0, 0, 1], 1).into(),
        remote: ([127, 0, 0, 1], 2).into(),
        vni: 1 << 24,
    };
    assert!(bad.validate().is_err(), "a 25-bit VNI passed");
}
