//! The paper's §4.1 experiment, end to end with real FRR: OSPF
//! reconverges after every flap, and an unplugged cable is noticed sooner
//! than a silent failure.

use vbet_tests::lab::{LabHost, examples};
use vbet_tests::{require, unique_name};

#[test]
fn ospf_reconverges_and_carrier_loss_is_seen_before_silent_loss() {
    if !require(&["vtysh", "ping"]) {
        return;
    }
    let host = LabHost::start();
    let results = tempfile::tempdir().unwrap();
    let lab = unique_name("of");
    let topology = examples().join("paper-4.1-ospf.vbet");
    let out = host.vbet(&[
        "experiment",
        "ospf-flap",
        "--topology",
        topology.to_str().unwrap(),
        "--lab",
        &lab,
        "--flaps",
        "1",
        "--period",
        "6",
        "--results",
        results.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "experiment failed:\n{stdout}\n{stderr}"
    );

    let dir = std::fs::read_dir(results.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let csv = std::fs::read_to_string(dir.join("flaps.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    let column = |row: &[&str], i: usize| -> f64 {
        row[i]
            .parse()
            .unwrap_or_else(|_| panic!("missing value in column {i}: {csv}"))
    };
    let (carrier, silent) = (&rows[0], &rows[1]);
    assert_eq!((carrier[0], silent[0]), ("Carrier", "Silent"), "{csv}");
    // Withdrawn and restored in both cases: OSPF reconverged.
    for row in &rows {
        column(row, 4);
        column(row, 5);
    }
    let (carrier_detect, silent_detect) = (column(carrier, 4), column(silent, 4));
    assert!(
        carrier_detect < silent_detect,
        "carrier loss seen after {carrier_detect} s, silent loss after {silent_detect} s"
    );
    // The dead interval is 4 s: a silent failure cannot be seen sooner.
    assert!(
        silent_detect >= 3.5,
        "silent failure seen after {silent_detect} s"
    );
    assert!(dir.join("reachability.svg").exists() && dir.join("reachability.csv").exists());
    assert!(stdout.contains("ROUTE WITHDRAWN AFTER"), "{stdout}");
    assert!(
        !host.run_root.join(&lab).exists(),
        "the experiment left its lab"
    );
    host.assert_no_lab_processes();
}
