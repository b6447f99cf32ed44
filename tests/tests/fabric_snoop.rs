//! Multicast-listener snooping in switchd: membership reports reach only
//! the ports a querier was heard on; queries and multicast data flood.

use std::time::Duration;

use vbet_tests::require;
use vbet_tests::switch::{RawPort, SwitchDaemon, test_frame};

const ALL_MLD_ROUTERS: [u8; 6] = [0x33, 0x33, 0, 0, 0, 0x16];
const ALL_NODES: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const SOLICITED: [u8; 6] = [0x33, 0x33, 0xff, 0, 0, 9];

/// An IPv6 frame from `src` to `dst` carrying ICMPv6 type `kind` behind a
/// hop-by-hop header, as MLD messages travel.
fn icmpv6(dst: [u8; 6], src: [u8; 6], kind: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 16, 0, 1]);
    f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, src[5]]);
    f.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16]);
    f.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
    f.extend_from_slice(&[kind, 0, 0, 0, 0, 0, 0, 0]);
    f
}

/// Receives on `port` until the sentinel broadcast from `src`, and says
/// whether an ICMPv6 message of type `kind` came before it (frames of one
/// port are forwarded in order, so "not before the sentinel" is "not").
fn got_before_sentinel(port: &RawPort, src: [u8; 6], kind: u8, sentinel: &[u8]) -> bool {
    let seen = std::cell::Cell::new(false);
    port.recv_matching(Duration::from_secs(5), |f| {
        if f.len() > 62 && f[6..12] == src && f[12..14] == [0x86, 0xdd] && f[62] == kind {
            seen.set(true);
        }
        f[..6] == [0xff; 6] && f[6..12] == src && f[14..14 + sentinel.len()] == *sentinel
    })
    .expect("the sentinel broadcast");
    seen.get()
}

#[test]
fn reports_go_to_querier_ports_only() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sw = SwitchDaemon::start("switchd", &dir.path().join("sw"), &[]);
    let (a, b, c) = (
        RawPort::connect(&sw.ctl()),
        RawPort::connect(&sw.ctl()),
        RawPort::connect(&sw.ctl()),
    );
    let (mac_a, mac_c) = ([2, 0, 0, 0, 0x5e, 1], [2, 0, 0, 0, 0x5e, 3]);

    // No querier yet: A's report goes nowhere.
    a.send(&icmpv6(ALL_MLD_ROUTERS, mac_a, 143));
    a.send(&test_frame([0xff; 6], mac_a, b"first"));
    assert!(!got_before_sentinel(&b, mac_a, 143, b"first"));
    assert!(!got_before_sentinel(&c, mac_a, 143, b"first"));

    // C queries (a multicast router behind it); the query floods.
    c.send(&icmpv6(ALL_NODES, mac_c, 130));
    c.send(&test_frame([0xff; 6], mac_c, b"query"));
    assert!(got_before_sentinel(&b, mac_c, 130, b"query"));
    assert!(got_before_sentinel(&a, mac_c, 130, b"query"));

    // Now A's report reaches C, and still not B.
    a.send(&icmpv6(ALL_MLD_ROUTERS, mac_a, 143));
    a.send(&test_frame([0xff; 6], mac_a, b"second"));
    assert!(got_before_sentinel(&c, mac_a, 143, b"second"));
    assert!(!got_before_sentinel(&b, mac_a, 143, b"second"));

    // Multicast data (a neighbour solicitation) floods as ever.
    a.send(&icmpv6(SOLICITED, mac_a, 135));
    a.send(&test_frame([0xff; 6], mac_a, b"third"));
    assert!(got_before_sentinel(&b, mac_a, 135, b"third"));
    assert!(got_before_sentinel(&c, mac_a, 135, b"third"));
}

/// An MLDv2 report from `src` joining the all-routers group ff02::2.
fn joins_all_routers(src: [u8; 6]) -> Vec<u8> {
    let mut f = ALL_MLD_ROUTERS.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 36, 0, 1]);
    f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, src[5]]);
    f.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16]);
    f.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
    f.extend_from_slice(&[143, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[
        4, 0, 0, 0, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
    ]);
    f
}

#[test]
fn router_solicitations_go_to_routers_only() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sw = SwitchDaemon::start("switchd", &dir.path().join("sw"), &[]);
    let (host, other, router) = (
        RawPort::connect(&sw.ctl()),
        RawPort::connect(&sw.ctl()),
        RawPort::connect(&sw.ctl()),
    );
    let (mac_h, mac_r) = ([2, 0, 0, 0, 0x5f, 1], [2, 0, 0, 0, 0x5f, 3]);
    let all_routers = [0x33, 0x33, 0, 0, 0, 2];

    // No router yet: a solicitation reaches nobody.
    host.send(&icmpv6(all_routers, mac_h, 133));
    host.send(&test_frame([0xff; 6], mac_h, b"first"));
    assert!(!got_before_sentinel(&other, mac_h, 133, b"first"));
    assert!(!got_before_sentinel(&router, mac_h, 133, b"first"));

    // A router joins ff02::2; then solicitations reach it, and only it.
    router.send(&joins_all_routers(mac_r));
    router.send(&test_frame([0xff; 6], mac_r, b"joined"));
    other
        .recv_matching(Duration::from_secs(5), |f| {
            f[6..12] == mac_r && f[14..20] == *b"joined"
        })
        .expect("the router's sentinel");
    host.send(&icmpv6(all_routers, mac_h, 133));
    host.send(&test_frame([0xff; 6], mac_h, b"second"));
    assert!(got_before_sentinel(&router, mac_h, 133, b"second"));
    assert!(!got_before_sentinel(&other, mac_h, 133, b"second"));
}

#[test]
fn a_hub_repeats_reports_too() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = SwitchDaemon::start("hubd", &dir.path().join("hub"), &[]);
    let (a, b) = (RawPort::connect(&hub.ctl()), RawPort::connect(&hub.ctl()));
    let mac_a = [2, 0, 0, 0, 0x5e, 1];
    a.send(&icmpv6(ALL_MLD_ROUTERS, mac_a, 143));
    a.send(&test_frame([0xff; 6], mac_a, b"hub"));
    assert!(got_before_sentinel(&b, mac_a, 143, b"hub"));
}
