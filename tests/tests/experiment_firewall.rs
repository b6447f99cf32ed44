//! The paper's §4.2 experiment, end to end with real nftables: the probe
//! matrix matches the intended policy, and a wrong rule is caught.

use vbet_tests::lab::{LabHost, examples};
use vbet_tests::{require, unique_name};

#[test]
fn firewall_matrix_matches_policy_and_a_wrong_rule_is_caught() {
    if !require(&["nft", "nc", "ping", "busybox"]) {
        return;
    }
    let host = LabHost::start();
    let results = tempfile::tempdir().unwrap();
    let topology = examples().join("paper-4.2-firewall.vbet");
    let run = |extra: &[&str]| {
        let lab = unique_name("fw");
        let mut args = vec![
            "experiment",
            "firewall",
            "--topology",
            topology.to_str().unwrap(),
            "--lab",
            &lab,
            "--results",
            results.path().to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = host.vbet(&args);
        assert!(
            !host.run_root.join(&lab).exists(),
            "the experiment left its lab"
        );
        out
    };

    let good = run(&[]);
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        stdout.contains("All 15 probes match the policy"),
        "{stdout}"
    );
    assert_eq!(stdout.matches(" ok").count(), 15, "{stdout}");

    let bad = run(&["--wrong-rule", "fw3"]);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(
        bad.status.code(),
        Some(3),
        "a wrong rule went unnoticed:\n{stdout}"
    );
    assert!(stdout.contains("3 of 15 probes DO NOT match"), "{stdout}");
    assert!(
        stdout.contains("client3 -> tcp/22: forbidden but it passed"),
        "{stdout}"
    );
    host.assert_no_lab_processes();
}
