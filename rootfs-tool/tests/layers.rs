//! Root integration tests of copy-on-write layers: create speed, diff
//! (whiteouts and opaque directories from a real overlay), commit.

mod common;

use std::time::{Duration, Instant};

use rootfs_tool::Layer;
use rootfs_tool::diff::ChangeKind;
use rootfs_tool::digest::digest_tree;
use rootfs_tool::layer::LayerError;
use rootfs_tool::mounts;

use common::{check, mounted_layer, run_in, setup};

#[test]
fn creating_a_layer_takes_under_5_ms() {
    let Some(env) = setup("creating_a_layer_takes_under_5_ms") else {
        return;
    };
    env.busybox_image("bb");
    for tmpfs in [None, Some(64u64 << 20)] {
        let n = 20;
        let mut total = Duration::ZERO;
        for i in 0..n {
            let dir = env.path().join(format!("l{i}-{}", tmpfs.is_some()));
            let t = Instant::now();
            let layer = Layer::create(&env.store, "bb", &dir, tmpfs).unwrap();
            total += t.elapsed();
            layer.remove().unwrap();
        }
        let avg = total / n;
        eprintln!("layer create (tmpfs: {tmpfs:?}): {avg:?} on average");
        assert!(
            avg < Duration::from_millis(5),
            "layer create took {avg:?} (target 5 ms)"
        );
    }
}

fn diff_and_commit(tmpfs: Option<u64>) {
    let test = format!("diff_and_commit(tmpfs={tmpfs:?})");
    let Some(env) = setup(&test) else {
        return;
    };
    let base = env.busybox_image("bb");
    let (layer, root) = mounted_layer(&env, "bb", "vm", tmpfs);
    let script = "set -e
        echo hello > /etc/motd
        echo '10.0.0.1 r1' >> /etc/hosts
        rm /etc/group
        chmod 600 /etc/passwd
        rm -rf /usr/sbin && mkdir /usr/sbin && echo new > /usr/sbin/tool
        rm /bin/ls && ln -s /bin/busybox /bin/ls
        mkdir -p /srv/www && echo page > /srv/www/index.html
        rm -rf /var/tmp";
    check(
        &run_in(&root, &["/bin/sh", "-c", script]),
        "changing the guest",
    );

    // Real overlay bookkeeping was made.
    let upper = layer.upper();
    let group = std::fs::symlink_metadata(upper.join("etc/group")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(
        group.file_type().is_char_device() && group.rdev() == 0,
        "whiteout expected"
    );
    assert_eq!(
        xattr::get(upper.join("usr/sbin"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(b"y".as_slice())
    );

    let merged = digest_tree(&root).unwrap();
    let changes = layer.diff().unwrap();
    let find = |path: &str| changes.iter().find(|c| c.path == path).map(|c| c.kind);
    assert_eq!(find("/etc/motd"), Some(ChangeKind::Added));
    assert_eq!(find("/etc/hosts"), Some(ChangeKind::Modified));
    assert_eq!(find("/etc/group"), Some(ChangeKind::Deleted));
    assert_eq!(find("/etc/passwd"), Some(ChangeKind::Modified));
    assert_eq!(find("/usr/sbin/tool"), Some(ChangeKind::Added));
    assert_eq!(find("/bin/ls"), Some(ChangeKind::Modified));
    assert_eq!(find("/srv"), Some(ChangeKind::Added));
    assert_eq!(find("/srv/www/index.html"), Some(ChangeKind::Added));
    assert_eq!(find("/var/tmp"), Some(ChangeKind::Deleted));
    // Lower entries hidden by the opaque /usr/sbin are deleted.
    let sbin_deleted = base
        .rootfs
        .join("usr/sbin")
        .read_dir()
        .unwrap()
        .map(|e| format!("/usr/sbin/{}", e.unwrap().file_name().to_string_lossy()))
        .all(|p| find(&p) == Some(ChangeKind::Deleted));
    assert!(sbin_deleted, "{changes:?}");
    // Unchanged things are not listed (copied-up parents, untouched files).
    assert_eq!(find("/etc"), None);
    assert_eq!(find("/bin/busybox"), None);

    // The layer cannot be removed while its overlay is mounted.
    assert!(matches!(
        Layer::open(layer.dir()).unwrap().remove(),
        Err(LayerError::Mounted { .. })
    ));

    mounts::unmount(&root).unwrap();
    let committed = layer.commit(&env.store, "bb-changed", false).unwrap();
    assert_eq!(
        committed.manifest.digest, merged.digest,
        "commit must equal the overlay's view"
    );
    assert_eq!(committed.manifest.parent.as_deref(), Some("bb"));
    assert!(env.store.verify("bb-changed").unwrap().ok());
    // The base image is untouched.
    assert!(env.store.verify("bb").unwrap().ok());

    // A fresh layer over the committed image shows the changes and no diff.
    let (layer2, root2) = mounted_layer(&env, "bb-changed", "vm2", tmpfs);
    let out = run_in(&root2, &["/bin/cat", "/etc/motd", "/srv/www/index.html"]);
    check(&out, "reading the committed image");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\npage\n");
    assert!(layer2.diff().unwrap().is_empty());
    assert_eq!(digest_tree(&root2).unwrap().digest, merged.digest);

    mounts::unmount(&root2).unwrap();
    layer2.remove().unwrap();
    layer.remove().unwrap();
    env.assert_store_clean(&["bb", "bb-changed"]);
    assert!(mounts::mounts_under(env.path()).unwrap().is_empty());
}

#[test]
fn diff_commit_round_trip_on_disk() {
    diff_and_commit(None);
}

#[test]
fn diff_commit_round_trip_on_tmpfs() {
    diff_and_commit(Some(32 << 20));
}

#[test]
fn tmpfs_layers_are_size_limited() {
    let Some(env) = setup("tmpfs_layers_are_size_limited") else {
        return;
    };
    env.busybox_image("bb");
    let (_layer, root) = mounted_layer(&env, "bb", "small", Some(1 << 20));
    let out = run_in(
        &root,
        &[
            "/bin/sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1024 count=4096 2>&1; echo rc=$?",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("No space left") && !text.contains("rc=0"),
        "{text}"
    );
}

#[test]
fn a_replaced_image_is_noticed_by_its_layers() {
    let Some(env) = setup("a_replaced_image_is_noticed_by_its_layers") else {
        return;
    };
    use rootfs_tool::archive::{export, import};
    env.busybox_image("bb");
    let first = env.path().join("first.tar");
    export(&env.store, "bb", &first).unwrap();
    import(&env.store, "other", &first, false).unwrap();
    let layer = Layer::create(&env.store, "other", &env.path().join("l"), None).unwrap();
    assert!(layer.overlay_options().is_ok());
    // Re-importing the same tree keeps the digest: the layer still fits.
    import(&env.store, "other", &first, true).unwrap();
    assert!(layer.overlay_options().is_ok());
    // A different tree under the same name does not.
    std::fs::write(env.store.root().join("bb/rootfs/etc/hostname"), "changed\n").unwrap();
    let second = env.path().join("second.tar");
    export(&env.store, "bb", &second).unwrap();
    import(&env.store, "other", &second, true).unwrap();
    let err = layer.overlay_options().unwrap_err();
    assert!(matches!(err, LayerError::ImageChanged { .. }), "{err}");
    assert!(err.to_string().contains("create it again"), "{err}");
    layer.remove().unwrap();
}

#[test]
fn a_layer_over_the_host_image_keeps_the_host_untouched() {
    let Some(env) = common::env("a_layer_over_the_host_image_keeps_the_host_untouched") else {
        return;
    };
    let (layer, root) = mounted_layer(&env, rootfs_tool::HOST_IMAGE, "h", Some(16 << 20));
    let marker = format!("/etc/vbet-layer-test-{}", std::process::id());
    let out = run_in(
        &root,
        &[
            "/bin/sh",
            "-c",
            &format!("ip -br link && echo x > {marker}"),
        ],
    );
    check(&out, "host tools in a guest on the host image");
    assert!(String::from_utf8_lossy(&out.stdout).contains("lo "));
    assert!(
        !std::path::Path::new(&marker).exists(),
        "the guest wrote to the host"
    );
    let changes = layer.diff().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.path == marker && c.kind == ChangeKind::Added),
        "{changes:?}"
    );
    assert!(matches!(
        layer.commit(&env.store, "hostcopy", false),
        Err(LayerError::HostCommit { .. })
    ));
    mounts::unmount(&root).unwrap();
    layer.remove().unwrap();
}
