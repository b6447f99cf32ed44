//! Fast mode on switchd, with raw ports of ours: a 64 KiB TCP superframe
//! from a fast port reaches another fast port whole, a plain port as
//! MTU-sized segments with correct checksums, and a fast VLAN trunk as
//! tagged segments (a TAP refuses GSO behind a tag). A header switchd
//! cannot honour for a plain port is dropped there and counted. Two
//! switchds joined by an uplink agree on fast mode too; a VXLAN trunk
//! carries the segments.

use std::time::Duration;

use vbet_port::client::connect_as;
use vbet_port::protocol::DataMode;
use vbet_port::vnet::{
    self, F_NEEDS_CSUM, GSO_TCPV4, GSO_UDP, VnetHeader, checksum, checksum_add, checksum_fold,
};
use vbet_proto::vbet::switch::v1::{SetPortRequest, Vlan};
use vbet_tests::require;
use vbet_tests::switch::{RawPort, SwitchDaemon};

const WAIT: Duration = Duration::from_millis(500);
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0x1f, 1];
const MSS: usize = 1448;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A TCP/IPv4 segment of `len` payload bytes as a TAP with TSO hands it
/// over: lengths of the whole, checksum field holding the pseudo-header
/// sum, a header asking for segmentation at MSS 1448.
fn superframe(len: usize, gso_type: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[2, 0, 0, 0, 0x1f, 0x99]); // unknown: flooded
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 0, 0x10, 0x00, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&[10, 87, 0, 1, 10, 87, 0, 2]);
    ip[2..4].copy_from_slice(&((40 + len) as u16).to_be_bytes());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5001u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&7u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // ACK, PSH
    tcp[14..16].copy_from_slice(&1024u16.to_be_bytes());
    let pseudo = checksum_fold(checksum_add(0, &ip[12..20]) + 6 + (20 + len) as u64);
    tcp[16..18].copy_from_slice(&pseudo.to_be_bytes());
    f.extend_from_slice(&tcp);
    f.extend_from_slice(&payload(len));
    let header = VnetHeader {
        flags: F_NEEDS_CSUM,
        gso_type,
        hdr_len: 54,
        gso_size: MSS as u16,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut packet = header.encode().to_vec();
    packet.extend_from_slice(&f);
    packet
}

/// Checks one plain segment (its IP header at `l3`) as a
/// receiver would and returns its payload.
fn check_segment(frame: &[u8], l3: usize) -> Vec<u8> {
    assert!(frame.len() <= l3 + 1500, "segment of {} bytes", frame.len());
    assert_eq!(checksum(&frame[l3..l3 + 20]), 0, "IPv4 header checksum");
    let total = u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]) as usize;
    assert_eq!(total, frame.len() - l3);
    let l4 = l3 + 20;
    let pseudo = checksum_add(0, &frame[l3 + 12..l3 + 20]) + 6 + (frame.len() - l4) as u64;
    assert_eq!(
        checksum_fold(checksum_add(pseudo, &frame[l4..])),
        0xffff,
        "TCP checksum"
    );
    frame[l4 + 20..].to_vec()
}

fn collect(port: &RawPort, skip: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(f) = port.recv_matching(WAIT, |f| {
        f.len() > skip + 12 && f[skip + 6..skip + 12] == MAC_A
    }) {
        got.push(f);
    }
    got
}

#[test]
fn a_superframe_reaches_fast_ports_whole_and_plain_ports_segmented() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sw = SwitchDaemon::start("switchd", &dir.path().join("sw"), &[]);
    let api = sw.api();
    let fast = || RawPort {
        port: connect_as(&sw.ctl(), DataMode::Fast).expect("plugs in"),
    };
    // Ports 1 to 4, in order: the sender, a fast access port, a plain
    // port, a fast trunk carrying VLAN 1 tagged.
    let a = fast();
    let b = fast();
    let c = RawPort::connect(&sw.ctl());
    let d = fast();
    let ports = api.wait_ports(4);
    let modes: Vec<bool> = ports.iter().map(|p| p.fast).collect();
    assert_eq!(modes, vec![true, true, false, true]);
    api.set_port(SetPortRequest {
        id: 4,
        vlan: Some(Vlan {
            access: 99,
            trunk: vec![1],
        }),
        ..Default::default()
    })
    .expect("SetPort vlan");

    let len = 20_001;
    let packet = superframe(len, GSO_TCPV4);
    a.send(&packet);

    // The fast access port: the very same datagram.
    let whole = collect(&b, vnet::HEADER_LEN);
    assert_eq!(whole, vec![packet.clone()], "fast port");

    // The plain port: MSS-sized segments that add up to the payload.
    let pieces = collect(&c, 0);
    assert_eq!(pieces.len(), len.div_ceil(MSS));
    let data: Vec<u8> = pieces.iter().flat_map(|f| check_segment(f, 14)).collect();
    assert_eq!(data, payload(len));
    let flags: Vec<u8> = pieces.iter().map(|f| f[14 + 20 + 13]).collect();
    assert!(
        flags[..flags.len() - 1].iter().all(|f| *f == 0x10),
        "{flags:02x?}"
    );
    assert_eq!(flags[flags.len() - 1], 0x18, "PSH on the last only");

    // The fast trunk: the same segments, tagged, each behind a plain
    // header.
    let tagged = collect(&d, vnet::HEADER_LEN);
    assert_eq!(tagged.len(), pieces.len());
    let mut data = Vec::new();
    for t in &tagged {
        assert!(VnetHeader::parse(t).unwrap().is_plain());
        let frame = &t[vnet::HEADER_LEN..];
        assert_eq!(frame[12..16], [0x81, 0x00, 0x00, 0x01], "tagged VLAN 1");
        data.extend(check_segment(frame, 18));
    }
    assert_eq!(data, payload(len));

    // Counters count frames without the header, at their size.
    let ports = api.ports();
    let rx = ports[0].counters.unwrap();
    assert_eq!(
        (rx.rx_frames, rx.rx_bytes),
        (1, (packet.len() - vnet::HEADER_LEN) as u64)
    );
    assert_eq!(ports[2].counters.unwrap().tx_frames, pieces.len() as u64);

    // UDP fragmentation offload is not honoured for a plain port: dropped
    // and counted there; a fast port still gets it as it is.
    a.send(&superframe(3000, GSO_UDP));
    assert_eq!(collect(&b, vnet::HEADER_LEN).len(), 1);
    assert!(collect(&c, 0).is_empty());
    let drops = api.ports()[2].counters.unwrap().drops.unwrap();
    assert_eq!(drops.offload, 1, "{drops:?}");
}

/// Two switchds joined by `--uplink` agree on fast mode: a superframe
/// crosses the uplink whole and is segmented only where it leaves by a
/// plain port of the far switch.
#[test]
fn an_uplink_between_two_switchds_is_fast() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let core = SwitchDaemon::start("switchd", &dir.path().join("core"), &[]);
    let core_ctl = core.ctl();
    let edge = SwitchDaemon::start(
        "switchd",
        &dir.path().join("edge"),
        &["--uplink", core_ctl.to_str().unwrap()],
    );
    let (core_api, edge_api) = (core.api(), edge.api());
    assert!(core_api.wait_ports(1)[0].fast, "the core's uplink port");
    assert!(edge_api.wait_ports(1)[0].fast, "the edge's uplink port");

    let a = RawPort {
        port: connect_as(&edge.ctl(), DataMode::Fast).expect("plugs in"),
    };
    let c = RawPort::connect(&core_ctl);
    edge_api.wait_ports(2);
    core_api.wait_ports(2);
    let len = 9_000;
    a.send(&superframe(len, GSO_TCPV4));
    let pieces = collect(&c, 0);
    assert_eq!(pieces.len(), len.div_ceil(MSS));
    let data: Vec<u8> = pieces.iter().flat_map(|f| check_segment(f, 14)).collect();
    assert_eq!(data, payload(len));
    // One datagram crossed the uplink.
    let uplink = &core_api.ports()[0];
    assert_eq!(uplink.counters.unwrap().rx_frames, 1, "{uplink:?}");
}

/// A VXLAN trunk to another host carries plain frames: a superframe from
/// a fast port crosses it as MSS-sized segments and arrives intact.
#[test]
fn a_superframe_crosses_a_vxlan_trunk_segmented() {
    if !require(&[]) {
        return;
    }
    let free = || {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (p1, p2) = (free(), free());
    let dir = tempfile::tempdir().unwrap();
    let s1 = SwitchDaemon::start(
        "switchd",
        &dir.path().join("s1"),
        &["--vxlan", &format!("127.0.0.1:{p1},127.0.0.1:{p2},4243")],
    );
    let s2 = SwitchDaemon::start(
        "switchd",
        &dir.path().join("s2"),
        &["--vxlan", &format!("127.0.0.1:{p2},127.0.0.1:{p1},4243")],
    );
    let a = RawPort {
        port: connect_as(&s1.ctl(), DataMode::Fast).expect("plugs in"),
    };
    let c = RawPort::connect(&s2.ctl());
    s1.api().wait_ports(2);
    s2.api().wait_ports(2);
    let len = 6_000;
    a.send(&superframe(len, GSO_TCPV4));
    let pieces = collect(&c, 0);
    assert_eq!(pieces.len(), len.div_ceil(MSS));
    let data: Vec<u8> = pieces.iter().flat_map(|f| check_segment(f, 14)).collect();
    assert_eq!(data, payload(len));
    let trunk = &s1.api().ports()[0];
    assert!(!trunk.fast, "a VXLAN trunk is plain");
    assert_eq!(trunk.counters.unwrap().tx_frames, pieces.len() as u64);
}
