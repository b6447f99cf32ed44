//! Real UML guests (Debian's user-mode-linux) on our switchd and hubd.

use std::time::Duration;

use vbet_tests::require;
use vbet_tests::switch::{RawPort, SwitchDaemon};
use vbet_tests::uml::UmlGuest;

const MAC_A: &str = "02:00:00:00:0a:01";
const MAC_B: &str = "02:00:00:00:0a:02";

fn pinger(peer: &str, addr: &str, count: u32) -> String {
    format!(
        "ip addr add {addr}/24 dev eth0\n\
         ping -n -c {count} -i 0.2 -W 1 -w 30 {peer}\n\
         echo VBET-PING rc=$?\n\
         sleep 3"
    )
}

fn guests_ping_each_other(daemon: &str) {
    if !require(&["linux.uml", "busybox"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sw = SwitchDaemon::start(daemon, &dir.path().join("sw"), &[]);
    let a = UmlGuest::start(
        "a",
        dir.path(),
        MAC_A,
        &sw.ctl(),
        &pinger("10.9.0.2", "10.9.0.1", 3),
    );
    let b = UmlGuest::start(
        "b",
        dir.path(),
        MAC_B,
        &sw.ctl(),
        &pinger("10.9.0.1", "10.9.0.2", 3),
    );
    let api = sw.api();
    let ports = api.wait_ports(2);
    assert!(
        ports.iter().all(|p| p.peer_pid > 0),
        "SO_PEERCRED pids: {ports:?}"
    );
    for guest in [&a, &b] {
        let out = guest.wait_for_output("VBET-PING", Duration::from_secs(60));
        assert!(
            out.contains("VBET-PING rc=0"),
            "{daemon}: ping failed:\n{out}"
        );
        assert!(
            out.contains("3 received"),
            "{daemon}: replies missing:\n{out}"
        );
    }
    if daemon == "switchd" {
        let macs: Vec<String> = api.macs().entries.into_iter().map(|e| e.mac).collect();
        assert!(
            macs.contains(&MAC_A.to_owned()) && macs.contains(&MAC_B.to_owned()),
            "{macs:?}"
        );
    }
    let totals = api.info().totals.unwrap();
    assert!(totals.rx_frames >= 12, "{totals:?}");
}

#[test]
fn uml_guests_ping_through_switchd() {
    guests_ping_each_other("switchd");
}

#[test]
fn uml_guests_ping_through_hubd() {
    guests_ping_each_other("hubd");
}

/// Counts IPv4 frames with a unicast destination seen by a third port
/// while two guests ping each other.
fn unicast_seen_by_third_port(daemon: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let sw = SwitchDaemon::start(daemon, &dir.path().join("sw"), &[]);
    let observer = RawPort::connect(&sw.ctl());
    let a = UmlGuest::start(
        "a",
        dir.path(),
        MAC_A,
        &sw.ctl(),
        &pinger("10.9.1.2", "10.9.1.1", 5),
    );
    let _b = UmlGuest::start(
        "b",
        dir.path(),
        MAC_B,
        &sw.ctl(),
        &pinger("10.9.1.1", "10.9.1.2", 5),
    );
    let mut unicast_ipv4 = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !a.process.output().contains("VBET-PING") {
        assert!(
            std::time::Instant::now() < deadline,
            "guest a never finished pinging"
        );
        if let Some(frame) = observer.recv(Duration::from_millis(100)) {
            let unicast = frame[0] & 1 == 0;
            if unicast && frame[12..14] == [0x08, 0x00] {
                unicast_ipv4 += 1;
            }
        }
    }
    let out = a.process.output();
    assert!(
        out.contains("VBET-PING rc=0"),
        "{daemon}: ping failed:\n{out}"
    );
    unicast_ipv4
}

#[test]
fn hub_repeats_unicast_to_a_third_port_and_switch_does_not() {
    if !require(&["linux.uml", "busybox"]) {
        return;
    }
    let on_hub = unicast_seen_by_third_port("hubd");
    assert!(
        on_hub >= 10,
        "hub showed only {on_hub} unicast IPv4 frames to a bystander"
    );
    let on_switch = unicast_seen_by_third_port("switchd");
    assert_eq!(on_switch, 0, "switch leaked learned unicast to a bystander");
}
