//! 802.1Q on switchd: access ports keep VLANs apart, a trunk carries them
//! tagged, and frames of VLANs a port does not carry are dropped.

use std::time::Duration;

use vbet_proto::vbet::switch::v1::{SetPortRequest, Vlan};
use vbet_tests::require;
use vbet_tests::switch::{RawPort, SwitchDaemon, test_frame};

const WAIT: Duration = Duration::from_millis(500);

fn tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&vid.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

#[test]
fn access_ports_are_isolated_and_a_trunk_carries_tagged_frames() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sw = SwitchDaemon::start("switchd", &dir.path().join("sw"), &[]);
    let api = sw.api();
    // Connected one after another, they get ports 1, 2 and 3.
    let a = RawPort::connect(&sw.ctl());
    let b = RawPort::connect(&sw.ctl());
    let c = RawPort::connect(&sw.ctl());
    let ports = api.wait_ports(3);
    assert_eq!(
        ports.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let vlan = |id: u32, access: u32, trunk: Vec<u32>| {
        api.set_port(SetPortRequest {
            id,
            vlan: Some(Vlan { access, trunk }),
            ..Default::default()
        })
        .expect("SetPort vlan");
    };
    vlan(1, 10, vec![]);
    vlan(2, 10, vec![]);
    vlan(3, 20, vec![]);

    let mac_a = [2, 0, 0, 0, 0x10, 1];
    let from_a = |payload: &[u8]| test_frame([0xff; 6], mac_a, payload);
    let is_from_a = |f: &[u8]| f[6..12] == mac_a;
    a.send(&from_a(b"vlan 10"));
    assert!(
        b.recv_matching(WAIT, is_from_a).is_some(),
        "same VLAN did not pass"
    );
    assert!(
        c.recv_matching(WAIT, is_from_a).is_none(),
        "VLAN 10 leaked into VLAN 20"
    );

    // C becomes a trunk for VLAN 10 (native VLAN 1).
    vlan(3, 1, vec![10]);
    a.send(&from_a(b"to the trunk"));
    let got = c
        .recv_matching(WAIT, is_from_a)
        .expect("the trunk got nothing");
    assert_eq!(
        got[12..16],
        [0x81, 0x00, 0x00, 10],
        "not tagged with VLAN 10: {got:02x?}"
    );
    let plain = b
        .recv_matching(WAIT, is_from_a)
        .expect("the access port got nothing");
    assert_eq!(plain[12..14], [0x88, 0xb5], "access port got a tag");

    // Tagged frames from the trunk reach the access ports untagged; a VLAN
    // the trunk does not carry is dropped and counted.
    let mac_c = [2, 0, 0, 0, 0x10, 3];
    c.send(&tagged(&test_frame([0xff; 6], mac_c, b"from trunk"), 10));
    let got = a
        .recv_matching(WAIT, |f| f[6..12] == mac_c)
        .expect("trunk to access failed");
    assert_eq!(got[12..14], [0x88, 0xb5]);
    c.send(&tagged(&test_frame([0xff; 6], mac_c, b"vlan 30"), 30));
    assert!(a.recv_matching(WAIT, |f| f[6..12] == mac_c).is_none());
    let drops = api
        .ports()
        .into_iter()
        .find(|p| p.id == 3)
        .unwrap()
        .counters
        .unwrap()
        .drops
        .unwrap();
    assert_eq!(drops.vlan, 1, "{drops:?}");
    // A bad VLAN id is refused.
    assert!(
        api.set_port(SetPortRequest {
            id: 1,
            vlan: Some(Vlan {
                access: 5000,
                trunk: vec![]
            }),
            ..Default::default()
        })
        .is_err()
    );
}
