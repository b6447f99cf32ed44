//! Each paper topology deploys, and every VM reaches every neighbour it
//! shares a link or a switch with (a ping matrix of IPv4 neighbours);
//! `vbet down` leaves nothing.

use std::collections::BTreeMap;

use vbet_tests::lab::{LabHost, examples, lab_cgroups};
use vbet_tests::{require, unique_name};

/// (node, address without prefix) of every IPv4 address, grouped by the
/// L2 segment it sits on: a switch's name, or the two ends of a cable.
fn segments(inspect: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let lab: serde_json::Value = serde_json::from_str(inspect).expect("inspect --json");
    let switches: Vec<String> = lab["switches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    let mut segments: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for node in lab["nodes"].as_array().unwrap() {
        let name = node["name"].as_str().unwrap();
        for (i, nic) in node["nics"].as_array().unwrap().iter().enumerate() {
            let peer = nic["peer"].as_str().unwrap();
            let Some((device, _)) = peer.rsplit_once(':') else {
                continue;
            };
            let here = format!("{name}:{}", i + 1);
            let segment = if switches.iter().any(|s| s == device) {
                device.to_owned()
            } else {
                let mut ends = [here.clone(), peer.to_owned()];
                ends.sort();
                ends.join("--")
            };
            for addr in nic["addresses"].as_array().unwrap() {
                let addr = addr.as_str().unwrap();
                if let Some((ip, _)) = addr.split_once('/').filter(|(ip, _)| ip.contains('.')) {
                    segments
                        .entry(segment.clone())
                        .or_default()
                        .push((name.to_owned(), ip.to_owned()));
                }
            }
        }
    }
    segments
}

fn ping_matrix(file: &str) {
    if !require(&["ping"]) {
        return;
    }
    let host = LabHost::start();
    let lab = unique_name("pm");
    let path = examples().join(file);
    host.vbet_ok(&["up", path.to_str().unwrap(), "--name", &lab]);
    let segments = segments(&host.vbet_ok(&["inspect", &lab, "--json"]));
    assert!(!segments.is_empty());
    let mut failures = Vec::new();
    let mut pings = 0;
    for members in segments.values() {
        for (from, _) in members {
            for (to, ip) in members.iter().filter(|(to, _)| to != from) {
                pings += 1;
                let out = host.vbet(&[
                    "exec",
                    &format!("{lab}/{from}"),
                    "--",
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    ip,
                ]);
                if !out.status.success() {
                    failures.push(format!("{from} -> {to} ({ip})"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{file}: {} of {pings} pings failed: {failures:?}",
        failures.len()
    );
    host.vbet_ok(&["down", &lab]);
    assert!(!host.run_root.join(&lab).exists());
    host.assert_no_lab_processes();
    assert_eq!(lab_cgroups(&lab), Vec::<std::path::PathBuf>::new());
}

#[test]
fn paper_2_2_ping_matrix() {
    ping_matrix("paper-2.2-switch.vbet");
}

#[test]
fn paper_4_1_ping_matrix() {
    ping_matrix("paper-4.1-ospf.vbet");
}

#[test]
fn paper_4_2_ping_matrix() {
    ping_matrix("paper-4.2-firewall.vbet");
}
