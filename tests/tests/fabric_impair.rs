//! Port state and impairments set over the API measurably apply, seen by
//! real endpoints (namespaces plugged in by Debian's `vde_plug2tap`).

use vbet_proto::vbet::port::v1::{Impairment, LinkState};
use vbet_proto::vbet::switch::v1::SetPortRequest;
use vbet_tests::netns::TapEndpoint;
use vbet_tests::switch::SwitchDaemon;
use vbet_tests::{require, unique_name};

struct Pair {
    sw: SwitchDaemon,
    a: TapEndpoint,
    b: TapEndpoint,
    _dir: tempfile::TempDir,
}

impl Pair {
    fn new(net: u8) -> Option<Pair> {
        if !require(&["vde_plug2tap", "ip", "ping"]) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let sw = SwitchDaemon::start("switchd", &dir.path().join("sw"), &[]);
        let a = TapEndpoint::new(
            &unique_name("vbt"),
            &sw.dir,
            &format!("10.9.{net}.1/24"),
            dir.path(),
        );
        let b = TapEndpoint::new(
            &unique_name("vbt"),
            &sw.dir,
            &format!("10.9.{net}.2/24"),
            dir.path(),
        );
        sw.api().wait_ports(2);
        Some(Pair {
            sw,
            a,
            b,
            _dir: dir,
        })
    }

    /// The switch port `vde_plug2tap` of endpoint b is on.
    fn port_of_b(&self) -> u32 {
        let pid = self.b.plug.pid().as_raw();
        let ports = self.sw.api().ports();
        ports
            .iter()
            .find(|p| p.peer_pid == pid)
            .unwrap_or_else(|| panic!("no port with peer pid {pid}: {ports:?}"))
            .id
    }

    fn set(&self, request: SetPortRequest) {
        self.sw.api().set_port(request).expect("SetPort");
    }
}

#[test]
fn delay_shows_in_ping_rtt_and_clears() {
    let Some(pair) = Pair::new(10) else { return };
    let target = "10.9.10.2";
    let before = pair.a.ping(target, 3, "0.2");
    assert_eq!(before.received, 3, "baseline: {}", before.output);
    let port = pair.port_of_b();
    pair.set(SetPortRequest {
        id: port,
        egress: Some(Impairment {
            delay_us: 50_000,
            ..Default::default()
        }),
        ..Default::default()
    });
    let delayed = pair.a.ping(target, 5, "0.2");
    let (min, _, max) = delayed
        .rtt_ms
        .unwrap_or_else(|| panic!("no replies: {}", delayed.output));
    assert!(min >= 50.0, "50 ms delay but min RTT {min} ms");
    assert!(max < 150.0, "max RTT {max} ms is far past the 50 ms delay");
    pair.set(SetPortRequest {
        id: port,
        egress: Some(Impairment::default()),
        ..Default::default()
    });
    let after = pair.a.ping(target, 3, "0.2");
    let (_, avg, _) = after.rtt_ms.expect("replies after clearing");
    assert!(avg < 20.0, "delay not cleared: avg {avg} ms");
}

#[test]
fn full_loss_stops_traffic_and_down_up_restores_it() {
    let Some(pair) = Pair::new(11) else { return };
    let target = "10.9.11.2";
    let port = pair.port_of_b();
    assert_eq!(pair.a.ping(target, 2, "0.2").received, 2);
    pair.set(SetPortRequest {
        id: port,
        ingress: Some(Impairment {
            loss_percent: 100.0,
            ..Default::default()
        }),
        ..Default::default()
    });
    let lost = pair.a.ping(target, 5, "0.2");
    assert_eq!(
        lost.received, 0,
        "100% loss let replies through: {}",
        lost.output
    );
    let api = pair.sw.api();
    let counters = api
        .ports()
        .into_iter()
        .find(|p| p.id == port)
        .unwrap()
        .counters
        .unwrap();
    assert!(
        counters.drops.unwrap().loss >= 5,
        "loss drops not counted: {counters:?}"
    );

    pair.set(SetPortRequest {
        id: port,
        ingress: Some(Impairment::default()),
        state: Some(LinkState::Down as i32),
        ..Default::default()
    });
    assert_eq!(
        pair.a.ping(target, 3, "0.2").received,
        0,
        "a down port passed traffic"
    );
    pair.set(SetPortRequest {
        id: port,
        state: Some(LinkState::Up as i32),
        ..Default::default()
    });
    let restored = pair.a.ping(target, 3, "0.2");
    assert_eq!(
        restored.received, 3,
        "up did not restore traffic: {}",
        restored.output
    );
}

#[test]
fn rate_limit_and_bad_values() {
    let Some(pair) = Pair::new(12) else { return };
    let port = pair.port_of_b();
    // 100 kbit/s: a 1000-byte ping (1042-byte frame) takes ~83 ms to serialise.
    pair.set(SetPortRequest {
        id: port,
        egress: Some(Impairment {
            rate_bps: 100_000,
            ..Default::default()
        }),
        ..Default::default()
    });
    let out = pair.a.ns.exec(
        "ping",
        &[
            "-n",
            "-q",
            "-c",
            "3",
            "-i",
            "0.3",
            "-s",
            "1000",
            "10.9.12.2",
        ],
    );
    let ping = vbet_tests::netns::Ping::parse(&String::from_utf8_lossy(&out.stdout));
    let (min, _, _) = ping
        .rtt_ms
        .unwrap_or_else(|| panic!("no replies: {}", ping.output));
    assert!(min >= 80.0, "rate limit not applied: min RTT {min} ms");
    let err = pair
        .sw
        .api()
        .set_port(SetPortRequest {
            id: port,
            egress: Some(Impairment {
                loss_percent: 150.0,
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("150"), "{err}");
    assert!(
        pair.sw
            .api()
            .set_port(SetPortRequest {
                id: 999,
                ..Default::default()
            })
            .is_err()
    );
}
