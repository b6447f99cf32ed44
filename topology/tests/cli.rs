//! The `vbet-topology` binary: exit codes and output.

use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vbet-topology"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn check_prints_a_summary() {
    let (ok, out, _) = run(&["check", &example("paper-4.1-ospf.vbet")]);
    assert!(ok);
    assert!(out.starts_with("5 nodes, 0 switches/hubs, 8 NICs"), "{out}");
    assert!(out.contains("eth1 192.168.1.1/24 -> r2 eth0"), "{out}");
}

#[test]
fn check_prints_every_error_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.vbet");
    std::fs::write(&bad, "h = alloc(hots)\nlink(h, g)\n").unwrap();
    let (ok, _, err) = run(&["check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("bad.vbet:1:11: error: unknown name `hots`"),
        "{err}"
    );
    assert!(err.contains("did you mean `host`?"), "{err}");
    assert!(
        err.contains("bad.vbet:2:9: error: unknown name `g`"),
        "{err}"
    );
    assert!(err.contains("2 errors in topology"), "{err}");
}

#[test]
fn toml_prints_canonical_toml() {
    let (ok, out, _) = run(&["toml", &example("paper-2.2-switch.vbet")]);
    assert!(ok);
    assert!(
        out.contains("[[cables]]\nname = \"cable1\"\na = \"switch1:1\"\nb = \"host1:1\""),
        "{out}"
    );
}
