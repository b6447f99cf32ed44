//! Interoperation with Debian's peers: VDE's `vde_plug2tap` on our switch,
//! and our client side on `uml_switch` and `vde_switch` (where an offer of
//! fast mode goes unnoticed and the port stays plain).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vbet_port::client::connect_as;
use vbet_port::protocol::DataMode;
use vbet_port::vnet;
use vbet_tests::netns::TapEndpoint;
use vbet_tests::process::Spawned;
use vbet_tests::switch::{RawPort, SwitchDaemon, test_frame};
use vbet_tests::uml::UmlGuest;
use vbet_tests::{listening, require, unique_name, wait_for};

#[test]
fn vde_plug2tap_endpoint_and_uml_guest_ping_through_switchd() {
    if !require(&["linux.uml", "busybox", "vde_plug2tap", "ip"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sw = SwitchDaemon::start("switchd", &dir.path().join("sw"), &[]);
    let tap = TapEndpoint::new(&unique_name("vbt"), &sw.dir, "10.9.2.1/24", dir.path());
    let guest = UmlGuest::start(
        "g",
        dir.path(),
        "02:00:00:00:0b:02",
        &sw.ctl(),
        "ip addr add 10.9.2.2/24 dev eth0\nping -n -c 3 -i 0.2 -W 1 -w 30 10.9.2.1\necho VBET-PING rc=$?",
    );
    let out = guest.wait_for_output("VBET-PING", Duration::from_secs(60));
    assert!(
        out.contains("VBET-PING rc=0"),
        "UML could not ping the VDE endpoint:\n{out}"
    );
    let ping = tap.ping("10.9.2.2", 1, "0.2");
    let ports = sw.api().ports();
    let vde = ports.iter().find(|p| p.peer_pid == tap.plug.pid().as_raw());
    let vde = vde.unwrap_or_else(|| panic!("no port from vde_plug2tap in {ports:?}"));
    assert!(
        vde.description.contains("vde_plug2tap") || !vde.description.is_empty(),
        "{vde:?}"
    );
    drop(ping);
}

/// Two of our client ports on the switch at `ctl` exchange a broadcast
/// and then a unicast frame. Port `a` offers fast mode and must end up in
/// `expect` (fast on switchd, plain on every other switch); port `b` is
/// plain. In fast mode `a`'s frames carry a virtio-net header both ways,
/// and switchd adds and strips it for `b`.
fn our_clients_exchange_frames(ctl: &Path, expect: DataMode) {
    let a = RawPort {
        port: connect_as(ctl, DataMode::Fast).expect("a plugs in"),
    };
    assert_eq!(a.port.mode, expect, "mode agreed with {}", ctl.display());
    let b = RawPort::connect(ctl);
    let h = if expect == DataMode::Fast {
        vnet::HEADER_LEN
    } else {
        0
    };
    let mac_a = [2, 0, 0, 0, 0x0c, 1];
    let mac_b = [2, 0, 0, 0, 0x0c, 2];
    let mut packet = vec![0u8; h];
    packet.extend_from_slice(&test_frame([0xff; 6], mac_a, b"hello all"));
    a.send(&packet);
    let got = b
        .recv_matching(Duration::from_secs(5), |f| f[6..12] == mac_a)
        .expect("b got a's broadcast");
    assert_eq!(&got[14..23], b"hello all");
    b.send(&test_frame(mac_a, mac_b, b"hello a"));
    let got = a
        .recv_matching(Duration::from_secs(5), |f| {
            f.len() > h + 12 && f[h + 6..h + 12] == mac_b
        })
        .expect("a got b's unicast");
    assert!(
        got[..h].iter().all(|b| *b == 0),
        "a plain frame has a plain header"
    );
    assert_eq!(&got[h + 14..h + 21], b"hello a");
}

#[test]
fn our_client_works_with_switchd() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sw = SwitchDaemon::start("switchd", &dir.path().join("sw"), &[]);
    our_clients_exchange_frames(&sw.ctl(), DataMode::Fast);
}

#[test]
fn our_client_works_with_uml_switch() {
    if !require(&["uml_switch"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("ctl");
    let mut cmd = Command::new("uml_switch");
    cmd.arg("-unix").arg(&ctl);
    let _switch = Spawned::start("uml_switch", cmd, &dir.path().join("uml_switch.log"));
    wait_for("uml_switch to listen", Duration::from_secs(5), || {
        listening(&ctl).then_some(())
    });
    our_clients_exchange_frames(&ctl, DataMode::Plain);
}

#[test]
fn our_client_works_with_vde_switch() {
    if !require(&["vde_switch"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sw = dir.path().join("vde");
    let mut cmd = Command::new("vde_switch");
    cmd.arg("-s").arg(&sw);
    let _switch = Spawned::start("vde_switch", cmd, &dir.path().join("vde_switch.log"));
    wait_for("vde_switch to listen", Duration::from_secs(5), || {
        listening(&sw.join("ctl")).then_some(())
    });
    our_clients_exchange_frames(&sw, DataMode::Plain);
}
