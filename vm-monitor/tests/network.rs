//! Two VMs on a direct wire ping each other; link down shows NO-CARRIER
//! and stops traffic, up restores it; bulk TCP crosses intact in fast mode.

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
        addresses: addr.split(',').map(String::from).collect(),
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
        wired(
            &lab,
            &a,
            dir.path(),
            "10.77.0.1/24,fd00:77::1/64",
            "a.eth0",
            "b.eth0",
        ),
        dir.path(),
    )
    .await;
    let (mut vm_b, mut cb) = TestVm::start(
        wired(
            &lab,
            &b,
            dir.path(),
            "10.77.0.2/24,fd00:77::2/64",
            "b.eth0",
            "a.eth0",
        ),
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
    // IPv6 works at once (no duplicate address detection delay).
    assert!(
        ping_ok(&mut cb, "fd00:77::1").await,
        "B cannot ping A over IPv6"
    );

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

#[tokio::test]
async fn impairments_and_capture_on_a_nic() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = unique("imp");
    let (a, b) = (unique("a"), unique("b"));
    let (mut vm_a, mut ca) = TestVm::start(
        wired(&lab, &a, dir.path(), "10.82.0.1/24", "a.eth0", "b.eth0"),
        dir.path(),
    )
    .await;
    let (mut vm_b, cb) = TestVm::start(
        wired(&lab, &b, dir.path(), "10.82.0.2/24", "b.eth0", "a.eth0"),
        dir.path(),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ping_ok(&mut ca, "10.82.0.2").await {
        assert!(tokio::time::Instant::now() < deadline, "A cannot ping B");
    }

    // Capture A's eth0 while it pings.
    let mut capture = ca
        .capture(pb::CaptureRequest { nic: 0 })
        .await
        .unwrap()
        .into_inner();
    let header = capture.message().await.unwrap().unwrap().data;
    assert_eq!(&header[..4], &0xa1b2_c3d4u32.to_ne_bytes(), "pcap magic");

    // 80 ms of delay on what A sends.
    let nic = ca
        .set_link(pb::SetLinkRequest {
            nic: 0,
            egress: Some(vbet_proto::vbet::port::v1::Impairment {
                delay_us: 80_000,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nic.egress.unwrap().delay_us, 80_000);
    let out = sh(&mut ca, "ping -c 1 -W 2 10.82.0.2").await;
    let rtt: f64 = out
        .split("time=")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no RTT in {out}"));
    assert!(rtt >= 80.0, "RTT {rtt} ms under an 80 ms delay");

    let frames = tokio::time::timeout(Duration::from_secs(5), capture.message())
        .await
        .expect("a captured frame in time")
        .unwrap()
        .unwrap();
    assert!(frames.data.len() > 16 + 14, "a pcap record with a frame");

    // Total loss: nothing passes, the carrier stays up.
    ca.set_link(pb::SetLinkRequest {
        nic: 0,
        egress: Some(vbet_proto::vbet::port::v1::Impairment {
            loss_percent: 100.0,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        !ping_ok(&mut ca, "10.82.0.2").await,
        "a ping passed 100% loss"
    );
    let status = ca.status(pb::StatusRequest {}).await.unwrap().into_inner();
    assert!(status.nics[0].counters.unwrap().drops.unwrap().loss > 0);

    // Black hole: the carrier stays up, nothing passes.
    ca.set_link(pb::SetLinkRequest {
        nic: 0,
        state: LinkState::Blackhole as i32,
        egress: Some(Default::default()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        !sh(&mut ca, "ip link show eth0")
            .await
            .contains("NO-CARRIER")
    );
    assert!(
        !ping_ok(&mut ca, "10.82.0.2").await,
        "a ping passed a black hole"
    );

    drop((ca, cb, capture));
    assert!(vm_a.stop().success());
    assert!(vm_b.stop().success());
}

type Client = pb::vm_monitor_client::VmMonitorClient<tonic::transport::Channel>;

/// Sends 16 MiB of random bytes over TCP from `from` to `to` (at
/// `to_addr`) and checks they arrive intact.
async fn bulk_tcp_intact(from: &mut Client, to: &mut Client, to_addr: &str) {
    let port = 5000;
    sh(
        to,
        &format!(
            "(socat -u TCP6-LISTEN:{port},reuseaddr,ipv6only=0 - | sha256sum > /tmp/rx.part \
             && mv /tmp/rx.part /tmp/rx) >/dev/null 2>&1 &"
        ),
    )
    .await;
    let sent = sh(
        from,
        &format!(
            "head -c {} /dev/urandom > /tmp/tx && \
             socat -u FILE:/tmp/tx TCP:{to_addr}:{port},retry=100,interval=0.1 && \
             sha256sum < /tmp/tx",
            16 << 20
        ),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        let out = exec(to, &["cat", "/tmp/rx"]).await;
        if out.status.code == 0 {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing received");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let digest = |s: &str| s.split_whitespace().next().unwrap_or_default().to_owned();
    assert_eq!(digest(&got), digest(&sent), "{to_addr}: data corrupted");
    sh(to, "rm -f /tmp/rx").await;
}

/// A direct wire is always in fast mode: 64 KiB TCP segments (IPv4 and
/// IPv6) cross as one datagram each and arrive intact.
#[tokio::test]
async fn two_vms_on_a_wire_carry_bulk_tcp_intact_in_fast_mode() {
    if !can_run() {
        return;
    }
    if !std::path::Path::new("/usr/bin/socat").exists() {
        skip("socat is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = unique("bulk");
    let (a, b) = (unique("a"), unique("b"));
    let addrs = |n: u8| format!("10.86.0.{n}/24,fd00:86::{n}/64");
    let (mut vm_a, mut ca) = TestVm::start(
        wired(&lab, &a, dir.path(), &addrs(1), "a.eth0", "b.eth0"),
        dir.path(),
    )
    .await;
    let (mut vm_b, mut cb) = TestVm::start(
        wired(&lab, &b, dir.path(), &addrs(2), "b.eth0", "a.eth0"),
        dir.path(),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !ping_ok(&mut ca, "10.86.0.2").await {
        assert!(tokio::time::Instant::now() < deadline, "A cannot ping B");
    }
    bulk_tcp_intact(&mut ca, &mut cb, "10.86.0.2").await;
    bulk_tcp_intact(&mut cb, &mut ca, "[fd00:86::1]").await;

    // Superframes crossed: the guest's frames average over 1514 bytes.
    let status = ca.status(pb::StatusRequest {}).await.unwrap().into_inner();
    let c = status.nics[0].counters.unwrap();
    assert!(c.rx_bytes / c.rx_frames.max(1) > 1514, "{c:?}");
    assert!(c.tx_bytes / c.tx_frames.max(1) > 1514, "{c:?}");

    drop((ca, cb));
    assert!(vm_a.stop().success());
    assert!(vm_b.stop().success());
}
