//! Specs that cannot run fail with a clear message and create nothing.

mod common;

use std::path::PathBuf;

use common::*;
use vm_monitor::spec::{ByteSize, NicSpec, VmSpec, Wiring};

fn fails_cleanly(spec: &VmSpec, dir: &std::path::Path, message: &str) {
    let out = run_to_end(spec, dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{} started", spec.name);
    assert!(
        stderr.contains(message),
        "expected {message:?} in:\n{stderr}"
    );
    for dir in cgroup_dirs(spec) {
        assert!(!dir.exists(), "{} was created", dir.display());
    }
    assert!(!spec.api_socket().exists());
    assert!(!spec.staging_dir().exists());
    assert!(processes_with(&format!("{}.toml", spec.name)).is_empty());
}

#[test]
fn unknown_image() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("bad", &unique("img"), dir.path());
    s.image = "no-such-image".into();
    fails_cleanly(&s, dir.path(), "unknown image \"no-such-image\"");
    assert!(!s.run_dir().exists(), "the run dir was created");
}

#[test]
fn missing_switch_socket() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("bad", &unique("sw"), dir.path());
    s.nics.push(NicSpec {
        index: 0,
        mac: None,
        addresses: vec![],
        wiring: Wiring::Switch {
            ctl: dir.path().join("sw1.ctl"),
        },
    });
    fails_cleanly(&s, dir.path(), "does not exist — is the switch running?");
    assert!(!s.run_dir().exists());
}

#[test]
fn memory_too_small() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("bad", &unique("mem"), dir.path());
    s.resources.memory = Some(ByteSize(1 << 20));
    fails_cleanly(&s, dir.path(), "is too small");
    assert!(!s.run_dir().exists());
}

#[test]
fn invalid_toml_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("broken.toml");
    std::fs::write(&path, "name = \"x\"\nmemory = 5\n").unwrap();
    let out = std::process::Command::new(MONITOR)
        .args(["run", "--spec"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.toml") && stderr.contains("memory"),
        "{stderr}"
    );
}

#[tokio::test]
async fn name_clash_with_a_running_vm() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("clash");
    let (mut vm, client) = TestVm::start(spec("bad", &name, dir.path()), dir.path()).await;
    let other = tempfile::tempdir().unwrap();
    // Same lab and name, same run dir: the lock is held.
    let out = run_to_end(&spec("bad", &name, dir.path()), other.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("already running"), "{stderr}");
    // Same lab and name, another run dir: the cgroup is in use.
    let out = run_to_end(&spec("bad", &name, other.path()), other.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(!other.path().join("run").exists());
    // The first VM is unharmed.
    assert!(vm.spec.api_socket().exists());
    drop(client);
    assert!(vm.stop().success());
}

#[test]
fn layer_on_the_image_file_system() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("bad", &unique("layer"), dir.path());
    // The host root is the image; a layer beside it is refused by overlayfs.
    s.layer_dir = Some(dir.path().join("layer"));
    if std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(dir.path()).unwrap())
        != std::os::unix::fs::MetadataExt::dev(&std::fs::metadata("/").unwrap())
    {
        skip("the temp dir is not on the root file system");
        return;
    }
    fails_cleanly(
        &s,
        dir.path(),
        "is inside the image on the same file system",
    );
    assert!(!dir.path().join("layer").exists());
}

#[test]
fn host_wide_sysctl() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("bad", &unique("sysctl"), dir.path());
    s.sysctls.insert("kernel.panic".into(), "1".into());
    fails_cleanly(&s, dir.path(), "only network parameters");
    assert!(!s.run_dir().exists());
}
