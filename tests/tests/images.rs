//! VMs booted on an image of the store: a busybox image built by
//! rootfs-tool, two VMs on it that run busybox's `ip` and ping each other.

use std::process::Command;

use vbet_tests::lab::LabHost;
use vbet_tests::{bin, require, unique_name};

#[test]
fn vms_boot_on_a_busybox_image_and_ping_each_other() {
    if !require(&["busybox"]) {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let built = Command::new(bin("rootfs-tool"))
        .arg("--store")
        .arg(store.path())
        .args(["build", "bb", "--from", "busybox"])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let host = LabHost::start_with_env(&[("VBET_IMAGE_STORE", store.path())]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bb.vbet");
    std::fs::write(
        &file,
        "sw = alloc(switch)\n\
         a = attach(alloc(host), alloc(NIC, addr = \"10.50.0.1/24\"))\n\
         b = attach(alloc(host), alloc(NIC, addr = \"10.50.0.2/24\"))\n\
         set(a, image = \"bb\")\nset(b, image = \"bb\")\n\
         link(sw, a, b)\n",
    )
    .unwrap();
    let lab = unique_name("bb");
    host.vbet_ok(&["up", file.to_str().unwrap(), "--name", &lab]);
    let node = format!("{lab}/a");
    let ip = host.vbet_ok(&["exec", &node, "--", "busybox", "ip", "addr", "show", "eth0"]);
    assert!(ip.contains("10.50.0.1/24"), "{ip}");
    // The root is the image, not the host's: no /usr/lib there.
    let ls = host.vbet(&["exec", &node, "--", "ls", "/usr/lib"]);
    assert!(!ls.status.success(), "the VM sees the host's /usr/lib");
    host.vbet_ok(&[
        "exec",
        &node,
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "10.50.0.2",
    ]);

    // An image the store does not have is refused before anything starts.
    let bad = dir.path().join("missing.vbet");
    std::fs::write(
        &bad,
        "h = attach(alloc(host), alloc(NIC))\nset(h, image = \"nosuch\")\n",
    )
    .unwrap();
    let out = host.vbet(&["up", bad.to_str().unwrap(), "--name", "missing"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nosuch"), "{err}");
    assert!(!host.run_root.join("missing").exists());
    // The image is leased while the lab runs: removing it is refused.
    let rm = || {
        Command::new(bin("rootfs-tool"))
            .arg("--store")
            .arg(store.path())
            .args(["rm", "bb"])
            .output()
            .unwrap()
    };
    let refused = rm();
    assert!(!refused.status.success(), "an image in use was removed");
    host.vbet_ok(&["down", &lab]);
    let removed = rm();
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
}
