//! Root integration tests of images: busybox build and guests on it,
//! import/export, leases, failed builds. Each test skips (saying why) when
//! not run as root or when busybox-static cannot be had.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rootfs_tool::archive;
use rootfs_tool::build::{self, BuildError, BuildRequest, Source};
use rootfs_tool::store::StoreError;

use common::{Guest, LinkGuard, check, mounted_layer, run_in, setup};

#[test]
fn busybox_image_builds_fast_and_runs_busybox_ip_in_an_overlay() {
    let Some(env) = setup("busybox_image_builds_fast_and_runs_busybox_ip_in_an_overlay") else {
        return;
    };
    let t = Instant::now();
    let image = env.busybox_image("bb");
    let took = t.elapsed();
    eprintln!("busybox image built in {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "busybox build took {took:?} (target 5 s)"
    );
    assert!(env.store.verify("bb").unwrap().ok());
    assert_eq!(image.manifest.init.as_deref(), Some("/init"));

    let (layer, root) = mounted_layer(&env, "bb", "vm1", Some(16 << 20));
    // A guest in its own namespaces: init sets up loopback, `busybox ip`
    // shows it.
    let out = run_in(&root, &["/init", "/bin/busybox", "ip", "link"]);
    check(&out, "busybox ip link in the guest");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lo:") && text.contains("UP"), "{text}");
    // What the guest writes lands in its layer, never in the image.
    let out = run_in(&root, &["/bin/sh", "-c", "echo hello > /etc/motd"]);
    check(&out, "writing in the guest");
    assert!(layer.upper().join("etc/motd").is_file());
    assert!(!image.rootfs.join("etc/motd").exists());
    assert!(env.store.verify("bb").unwrap().ok());
}

#[test]
fn two_guests_on_one_busybox_image_ping_each_other() {
    let Some(env) = setup("two_guests_on_one_busybox_image_ping_each_other") else {
        return;
    };
    env.busybox_image("bb");
    let _lease_a = env.store.acquire("bb", "test.a").unwrap();
    let _lease_b = env.store.acquire("bb", "test.b").unwrap();
    let (_la, root_a) = mounted_layer(&env, "bb", "a", Some(8 << 20));
    let (_lb, root_b) = mounted_layer(&env, "bb", "b", None);

    let b = Guest::start(&root_b, &["/bin/busybox", "sleep", "30"]);
    let script = "for i in $(seq 50); do ip link show eth0 >/dev/null 2>&1 && break; sleep 0.1; done; \
                  ip addr add 10.199.0.1/24 dev eth0 && ip link set eth0 up || exit 2; \
                  for i in $(seq 20); do ping -c 1 -W 1 10.199.0.2 && exit 0; done; exit 1";
    let a = Guest::start(&root_a, &["/bin/sh", "-c", script]);

    // The cable: a veth pair, one end in each guest's network namespace.
    let tag = std::process::id() % 100_000;
    let (ea, eb) = (format!("vbt{tag}a"), format!("vbt{tag}b"));
    let _ga = LinkGuard(ea.clone());
    let _gb = LinkGuard(eb.clone());
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        check(&out, &format!("ip {}", args.join(" ")));
    };
    ip(&["link", "add", &ea, "type", "veth", "peer", "name", &eb]);
    ip(&[
        "link",
        "set",
        &ea,
        "netns",
        &a.pid().to_string(),
        "name",
        "eth0",
    ]);
    ip(&[
        "link",
        "set",
        &eb,
        "netns",
        &b.pid().to_string(),
        "name",
        "eth0",
    ]);
    check(
        &b.busybox(&["ip", "addr", "add", "10.199.0.2/24", "dev", "eth0"]),
        "address b",
    );
    check(
        &b.busybox(&["ip", "link", "set", "eth0", "up"]),
        "eth0 up in b",
    );

    let out = a.wait(Duration::from_secs(30));
    check(&out, "guest a pinging guest b");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 packets received"), "{text}");
    // Both guests' layers hold their leases on the image.
    assert!(matches!(
        env.store.remove("bb"),
        Err(StoreError::InUse { .. })
    ));
}

fn round_trip(env: &common::TestEnv, file: &str) {
    let archive_path = env.path().join(file);
    let name = format!("copy-{}", file.replace('.', "-"));
    archive::export(&env.store, "bb", &archive_path).unwrap();
    let imported = archive::import(&env.store, &name, &archive_path, false).unwrap();
    let original = env.store.get("bb").unwrap();
    assert_eq!(imported.manifest.digest, original.manifest.digest, "{file}");
    assert!(env.store.verify(&name).unwrap().ok());
    // Device nodes, setuid bits and symlinks came back.
    let meta = std::fs::symlink_metadata(imported.rootfs.join("dev/null")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(meta.file_type().is_char_device() || !original.rootfs.join("dev/null").exists());
    assert!(
        std::fs::symlink_metadata(imported.rootfs.join("sbin/ip"))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn import_export_round_trip_keeps_the_digest() {
    let Some(env) = setup("import_export_round_trip_keeps_the_digest") else {
        return;
    };
    env.busybox_image("bb");
    for file in ["bb.tar", "bb.tar.gz", "bb.tar.zst"] {
        round_trip(&env, file);
    }
    // Importing under an existing name is refused and leaves nothing.
    let err = archive::import(&env.store, "bb", &env.path().join("bb.tar"), false).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    env.assert_store_clean(&["bb", "copy-bb-tar", "copy-bb-tar-gz", "copy-bb-tar-zst"]);
}

#[test]
fn rm_is_refused_while_a_vm_holds_a_lease() {
    let Some(env) = setup("rm_is_refused_while_a_vm_holds_a_lease") else {
        return;
    };
    env.busybox_image("bb");
    let lease = env.store.acquire("bb", "lab1.r1").unwrap();
    assert_eq!(lease.rootfs(), env.store.root().join("bb/rootfs"));
    let err = env.store.remove("bb").unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("lab1.r1"), "{err}");

    // Another process (the CLI) sees the lease too.
    let out = Command::new(env!("CARGO_BIN_EXE_rootfs-tool"))
        .args(["--store"])
        .arg(env.store.root())
        .args(["rm", "bb"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by lab1.r1"), "{stderr}");
    // Replacing it is refused as well.
    let mut req = BuildRequest::new("bb", Source::Busybox);
    req.replace = true;
    let err = build::build(&env.store, &req, &indicatif::ProgressBar::hidden()).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");

    drop(lease);
    env.store.remove("bb").unwrap();
    assert!(!env.store.contains("bb"));
    env.assert_store_clean(&[]);
}

#[test]
fn failed_builds_leave_nothing_in_the_store() {
    let Some(env) = setup("failed_builds_leave_nothing_in_the_store") else {
        return;
    };
    // An injected failure midway: a "busybox" that cannot list its applets,
    // after the skeleton and the binary are already in the staging tree.
    let fake = env.path().join("fake-busybox");
    std::fs::write(&fake, "#!/bin/sh\necho 'no applets' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut req = BuildRequest::new("broken", Source::Busybox);
    req.busybox = Some(fake);
    let err = build::build(&env.store, &req, &indicatif::ProgressBar::hidden()).unwrap_err();
    assert!(matches!(err, BuildError::BusyboxApplets { .. }), "{err}");
    assert!(!env.store.contains("broken"));
    env.assert_store_clean(&[]);

    // A failing debootstrap (a suite that does not exist), when a bootstrap
    // tool is installed.
    let have_tool = || {
        ["mmdebstrap", "debootstrap"].iter().any(|t| {
            Path::new("/usr/bin").join(t).exists() || Path::new("/usr/sbin").join(t).exists()
        })
    };
    if !have_tool() {
        eprintln!("installing mmdebstrap");
        common::apt_install(&["mmdebstrap"]);
    }
    if !have_tool() {
        common::skip(
            "failed_builds_leave_nothing_in_the_store (debian:nosuchsuite)",
            "neither mmdebstrap nor debootstrap is installed and mmdebstrap could not be",
        );
        return;
    }
    let req = BuildRequest::new(
        "nosuch",
        Source::Debian {
            suite: Some("nosuchsuite".into()),
        },
    );
    let t = Instant::now();
    let err = build::build(&env.store, &req, &indicatif::ProgressBar::hidden()).unwrap_err();
    eprintln!("debian:nosuchsuite failed in {:?}: {err}", t.elapsed());
    assert!(matches!(err, BuildError::Bootstrap { .. }), "{err}");
    assert!(err.to_string().contains("nosuchsuite"), "{err}");
    assert!(!env.store.contains("nosuch"));
    env.assert_store_clean(&[]);
}

#[test]
fn cli_builds_lists_and_verifies() {
    let Some(env) = setup("cli_builds_lists_and_verifies") else {
        return;
    };
    let tool = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rootfs-tool"))
            .env("VBET_IMAGE_STORE", env.store.root())
            .args(args)
            .output()
            .unwrap()
    };
    check(
        &tool(&["build", "mini", "--from", "busybox"]),
        "rootfs-tool build",
    );
    let out = tool(&["list", "--json"]);
    check(&out, "rootfs-tool list --json");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["host", "mini"]);
    check(&tool(&["verify", "mini"]), "rootfs-tool verify");
    // Tampering is caught.
    std::fs::write(env.store.root().join("mini/rootfs/etc/hosts"), "tampered\n").unwrap();
    let out = tool(&["verify", "mini"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));
    // Unknown images are a clear error.
    let out = tool(&["inspect", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not in store"));
    let out = tool(&["build", "x", "--from", "busybox", "--packages", "frr"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("need --from debian"));
}
