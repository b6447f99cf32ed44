//! The Debian build (mmdebstrap or debootstrap from the host's mirror): slow
//! (minutes) and needs the mirror, so it is not in the default run:
//!
//! ```text
//! cargo test -p rootfs-tool --test debian -- --ignored --nocapture
//! ```
//!
//! Its last result is recorded in docs/rootfs.md.

mod common;

use std::time::Instant;

use rootfs_tool::build::{self, BuildRequest, Role, Source};

use common::{check, mounted_layer, run_in};

#[test]
#[ignore = "slow: builds a Debian router image from the mirror (run with --ignored)"]
fn debian_router_image_builds_runs_and_rebuilds_instantly() {
    let Some(env) = common::env("debian_router_image_builds_runs_and_rebuilds_instantly") else {
        return;
    };
    let mut req = BuildRequest::new("router", Source::Debian { suite: None });
    req.role = Some(Role::Router);
    req.packages = vec!["iperf3".into()];
    let progress = indicatif::ProgressBar::hidden();

    let t = Instant::now();
    let first = build::build(&env.store, &req, &progress).unwrap_or_else(|e| panic!("{e}"));
    let m = &first.image.manifest;
    eprintln!(
        "debian router image: built in {:?}, {} MiB, {} entries, {} ({})",
        t.elapsed(),
        m.size >> 20,
        m.entries,
        m.digest,
        m.source
    );
    assert!(!first.cached);
    assert_eq!(m.role.as_deref(), Some("router"));
    assert_eq!(m.sysctls["net.ipv4.ip_forward"], "1");
    assert!(m.packages.contains(&"frr".to_string()) && m.packages.contains(&"iperf3".to_string()));
    let rootfs = &first.image.rootfs;
    assert!(rootfs.join("usr/lib/frr/zebra").exists(), "frr installed");
    assert!(rootfs.join("etc/sysctl.d/90-vbet-role.conf").is_file());

    // Same inputs again: nothing is built.
    let t = Instant::now();
    let again = build::build(&env.store, &req, &progress).unwrap();
    eprintln!("rebuild with the same inputs: {:?}", t.elapsed());
    assert!(again.cached);
    assert!(t.elapsed().as_secs() < 2);
    // Same inputs, another name: a copy of the first (hard links).
    req.name = "router2".into();
    let t = Instant::now();
    let twin = build::build(&env.store, &req, &progress).unwrap();
    eprintln!("same inputs under another name: {:?}", t.elapsed());
    assert_eq!(twin.image.manifest.digest, first.image.manifest.digest);
    assert!(env.store.verify("router2").unwrap().ok());

    // A guest on it: iproute2 and the role's sysctls, through the image's init.
    let (_layer, root) = mounted_layer(&env, "router", "r1", Some(256 << 20));
    let out = run_in(
        &root,
        &[
            "/init",
            "/bin/sh",
            "-c",
            "ip -br link; sysctl -n net.ipv4.ip_forward",
        ],
    );
    check(&out, "ip and sysctl in the Debian guest");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("lo ") && text.trim_end().ends_with('1'),
        "{text}"
    );
}
