//! VXLAN trunks (RFC 7348): two switchds joined over UDP carry frames,
//! and a Linux `vxlan` device is a peer.

use std::time::Duration;

use vbet_tests::netns::Netns;
use vbet_tests::process::Spawned;
use vbet_tests::switch::{RawPort, SwitchDaemon, test_frame};
use vbet_tests::{bin, require, unique_name, wait_for};

/// A UDP port free on 127.0.0.1 right now.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_switches_joined_by_a_vxlan_trunk_carry_frames_both_ways() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_udp_port(), free_udp_port());
    let s1 = SwitchDaemon::start(
        "switchd",
        &dir.path().join("s1"),
        &["--vxlan", &format!("127.0.0.1:{p1},127.0.0.1:{p2},4242")],
    );
    let s2 = SwitchDaemon::start(
        "switchd",
        &dir.path().join("s2"),
        &["--vxlan", &format!("127.0.0.1:{p2},127.0.0.1:{p1},4242")],
    );
    let trunk = s1.api().ports();
    assert_eq!(trunk.len(), 1);
    assert!(
        trunk[0].description.starts_with("vxlan to 127.0.0.1:"),
        "{:?}",
        trunk[0].description
    );
    let (a, b) = (RawPort::connect(&s1.ctl()), RawPort::connect(&s2.ctl()));
    let (mac_a, mac_b) = ([2, 0, 0, 0, 0xa, 1], [2, 0, 0, 0, 0xb, 1]);
    // A broadcast floods across the trunk; then unicast both ways.
    a.send(&test_frame([0xff; 6], mac_a, b"hello over vxlan"));
    let got = b
        .recv_matching(Duration::from_secs(5), |f| f[6..12] == mac_a)
        .expect("the broadcast crossed the trunk");
    assert_eq!(&got[14..30], b"hello over vxlan");
    b.send(&test_frame(mac_a, mac_b, b"reply"));
    let got = a
        .recv_matching(Duration::from_secs(5), |f| f[6..12] == mac_b)
        .expect("the reply crossed the trunk");
    assert_eq!(&got[14..19], b"reply");
    // The trunk port counts like any other.
    let trunk = s1
        .api()
        .ports()
        .into_iter()
        .find(|p| p.description.starts_with("vxlan"))
        .unwrap();
    let counters = trunk.counters.unwrap();
    assert!(
        counters.rx_frames >= 1 && counters.tx_frames >= 1,
        "{counters:?}"
    );
}

/// An ARP request for `target` from `mac`/`ip`.
fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

#[test]
fn a_linux_vxlan_device_answers_through_a_switchd_trunk() {
    if !require(&["ip"]) {
        return;
    }
    // Two "hosts": namespace `ns` runs our switch, `linux` a vxlan device,
    // joined by a veth pair. (Linux hands frames for a local address to
    // its own vxlan devices only, so the peer must not be on our loopback.)
    let ns = Netns::new(&unique_name("vx"));
    let linux = Netns::new(&unique_name("vl"));
    ns.ip(&[
        "link",
        "add",
        "vxa",
        "type",
        "veth",
        "peer",
        "name",
        "vxb",
        "netns",
        &linux.name,
    ]);
    ns.ip(&["addr", "add", "10.97.0.1/24", "dev", "vxa"]);
    ns.ip(&["link", "set", "vxa", "up"]);
    linux.ip(&["addr", "add", "10.97.0.2/24", "dev", "vxb"]);
    linux.ip(&["link", "set", "vxb", "up"]);
    linux.ip(&[
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "local",
        "10.97.0.2",
        "remote",
        "10.97.0.1",
        "dstport",
        "4789",
        "nolearning",
    ]);
    linux.ip(&["addr", "add", "10.98.0.2/24", "dev", "vx0"]);
    linux.ip(&["link", "set", "vx0", "up"]);

    // Our switch, in the same namespace (its UDP socket on that loopback).
    let dir = tempfile::tempdir().unwrap();
    let sw = dir.path().join("sw");
    std::fs::create_dir_all(&sw).unwrap();
    let mut cmd = ns.command(bin("switchd").to_str().unwrap());
    cmd.arg("--dir")
        .arg(&sw)
        .args(["--vxlan", "10.97.0.1:4789,10.97.0.2:4789,42"]);
    let mut switch = Spawned::start("switchd", cmd, &dir.path().join("switchd.log"));
    let ctl = sw.join("ctl");
    wait_for("switchd to listen", Duration::from_secs(10), || {
        vbet_tests::listening(&ctl).then_some(())
    });
    // Our port's data socket is abstract, so per namespace: plug in from
    // a thread inside the switch's namespace.
    let netns = format!("/run/netns/{}", ns.name);
    let port = std::thread::spawn(move || {
        let ns = std::fs::File::open(netns).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        RawPort::connect(&sw)
    })
    .join()
    .unwrap();
    let mac = [2, 0, 0, 0, 0x98, 1];
    let reply = (0..10).find_map(|_| {
        port.send(&arp_request(mac, [10, 98, 0, 1], [10, 98, 0, 2]));
        port.recv_matching(Duration::from_millis(500), |f| {
            f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2]
        })
    });
    let reply = reply.expect("the Linux vxlan device answered our ARP request");
    assert_eq!(
        &reply[28..32],
        &[10, 98, 0, 2],
        "the reply is for 10.98.0.2"
    );
    assert_eq!(&reply[0..6], &mac, "the reply came back to us");
    switch.terminate(Duration::from_secs(5));
}
