//! The paper's §4.3 experiment, end to end: a Chord ring of real
//! `chord-peer` processes in VMs; every lookup succeeds within about
//! log2 N hops, before and after churn.

use vbet_tests::lab::{LabHost, examples};
use vbet_tests::{require, unique_name};

#[test]
fn chord_lookups_succeed_in_log_n_hops_through_churn() {
    chord_experiment("kill");
}

#[test]
fn chord_survives_peers_silenced_by_fault_injection() {
    chord_experiment("fault");
}

fn chord_experiment(churn_with: &str) {
    if !require(&["pkill", "setsid"]) {
        return;
    }
    let host = LabHost::start();
    let results = tempfile::tempdir().unwrap();
    let lab = unique_name("ch");
    let topology = examples().join("paper-4.3-chord.vbet");
    let out = host.vbet(&[
        "experiment",
        "chord",
        "--topology",
        topology.to_str().unwrap(),
        "--lab",
        &lab,
        "--peers",
        "16",
        "--lookups",
        "100",
        "--churn",
        "0.25",
        "--churn-with",
        churn_with,
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
    let csv = std::fs::read_to_string(dir.join("phases.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 4, "{csv}");
    for row in &rows {
        if row[0] == "right after churn" {
            continue;
        }
        assert_eq!(row[2], row[3], "lookups failed in phase {}: {csv}", row[0]);
        let mean: f64 = row[4].parse().unwrap();
        assert!(
            mean <= 4.0,
            "mean {mean} hops > log2 16 in phase {}",
            row[0]
        );
    }
    assert!(
        !host.run_root.join(&lab).exists(),
        "the experiment left its lab"
    );
    host.assert_no_lab_processes();
}
