//! Root file systems: hostfs shares, a persistent writable layer, and an
//! image that is a directory.

mod common;

use std::path::Path;

use common::*;
use vm_monitor::spec::{Share, ShareMode};

#[tokio::test]
async fn hostfs_shares_and_a_persistent_layer() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("given"), "from the host\n").unwrap();
    // The layer must not be on the image's (the host root's) file system.
    if !Path::new("/dev/shm").is_dir() {
        skip("needs a tmpfs at /dev/shm for the layer");
        return;
    }
    let layer = tempfile::tempdir_in("/dev/shm").unwrap();
    let name = unique("fs");
    let mut s = spec("fs", &name, dir.path());
    s.layer_dir = Some(layer.path().to_owned());
    s.hostfs = vec![
        Share {
            src: rw.path().to_owned(),
            dst: "/mnt/rw".into(),
            mode: ShareMode::Rw,
        },
        Share {
            src: ro.path().to_owned(),
            dst: "/mnt/ro".into(),
            mode: ShareMode::Ro,
        },
    ];
    let (mut vm, mut client) = TestVm::start(s, dir.path()).await;

    sh(&mut client, "echo from the vm > /mnt/rw/out").await;
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out")).unwrap(),
        "from the vm\n"
    );
    assert_eq!(
        sh(&mut client, "cat /mnt/ro/given").await,
        "from the host\n"
    );
    let out = exec(&mut client, &["/bin/sh", "-c", "echo x > /mnt/ro/nope"]).await;
    assert_ne!(out.status.code, 0, "wrote to a read-only share");
    assert!(!ro.path().join("nope").exists());

    // Shares bring no setuid programs or device nodes.
    let mounts = sh(&mut client, "grep ' /mnt/rw ' /proc/self/mounts").await;
    assert!(
        mounts.contains("nosuid") && mounts.contains("nodev"),
        "{mounts}"
    );

    // Device nodes in the VM's root: only the VM's own devices open (the
    // devices cgroup), whatever nodes an image holds.
    let upper = layer.path().join("upper/root");
    std::fs::create_dir_all(&upper).unwrap();
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    mknod(
        &upper.join("null-node"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    mknod(
        &upper.join("kmsg-node"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 11),
    )
    .unwrap();
    if Path::new("/sys/fs/cgroup/devices").is_dir() {
        sh(&mut client, "echo x > /root/null-node").await;
        let out = exec(&mut client, &["head", "-c", "1", "/root/kmsg-node"]).await;
        assert_ne!(
            out.status.code, 0,
            "the VM opened a device it was not given"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not permitted"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // What the VM writes elsewhere lands in its layer, not on the host.
    sh(&mut client, "echo kept > /root/state").await;
    assert!(
        !Path::new("/root/state").exists()
            || std::fs::read_to_string("/root/state").unwrap() != "kept\n"
    );
    assert_eq!(
        std::fs::read_to_string(layer.path().join("upper/root/state")).unwrap(),
        "kept\n"
    );
    drop(client);
    assert!(vm.stop().success());
}

#[tokio::test]
async fn an_image_directory() {
    if !can_run() {
        return;
    }
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        skip("no busybox for a test image");
        return;
    };
    // A static busybox is a whole userland.
    let ldd = std::process::Command::new("ldd").arg(busybox).output();
    let is_static = ldd.is_ok_and(|o| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        text.contains("not a dynamic") || text.contains("statically linked")
    });
    if !is_static {
        skip("busybox is not static");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(image.path().join("bin")).unwrap();
    std::fs::copy(busybox, image.path().join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "ls", "hostname", "echo"] {
        std::os::unix::fs::symlink("busybox", image.path().join("bin").join(applet)).unwrap();
    }
    std::fs::create_dir_all(image.path().join("etc")).unwrap();
    std::fs::write(
        image.path().join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\n",
    )
    .unwrap();
    let name = unique("img");
    let mut s = spec("fs", &name, dir.path());
    s.image = image.path().to_string_lossy().into_owned();
    // A layer beside the image, on the same file system, is fine.
    let layer = tempfile::tempdir().unwrap();
    s.layer_dir = Some(layer.path().to_owned());
    let (mut vm, mut client) = TestVm::start(s, dir.path()).await;
    let listing = sh(&mut client, "ls /bin").await;
    assert!(listing.contains("busybox"), "{listing}");
    assert!(
        !listing.contains("bash"),
        "the host's /bin shows through: {listing}"
    );
    assert_eq!(sh(&mut client, "hostname").await.trim(), name);
    sh(&mut client, "echo private > /etc/motd").await;
    assert!(
        !image.path().join("etc/motd").exists(),
        "the VM wrote into the image"
    );
    assert_eq!(
        std::fs::read_to_string(layer.path().join("upper/etc/motd")).unwrap(),
        "private\n"
    );
    drop(client);
    assert!(vm.stop().success());
}
