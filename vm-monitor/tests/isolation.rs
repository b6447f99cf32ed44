//! What one VM does stays in it: files, hostname, processes, memory.

mod common;

use common::*;
use vbet_proto::vbet::vm::v1 as pb;
use vm_monitor::spec::ByteSize;

#[tokio::test]
async fn vms_are_isolated_from_the_host_and_each_other() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = unique("iso");
    let (a, b) = (unique("a"), unique("b"));
    let mut spec_a = spec(&lab, &a, dir.path());
    spec_a.resources.memory = Some(ByteSize(48 << 20));
    spec_a.resources.pids = Some(64);
    spec_a.files.push(vm_monitor::spec::FileSpec {
        path: "/etc/vbet-test/placed".into(),
        content: "placed by the spec\n".into(),
        mode: 0o600,
    });
    // A network parameter of A's own, set before its NICs come up.
    let host_arp_ignore =
        std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/arp_ignore").unwrap();
    let a_arp_ignore = if host_arp_ignore.trim() == "2" {
        "1"
    } else {
        "2"
    };
    spec_a
        .sysctls
        .insert("net.ipv4.conf.all.arp_ignore".into(), a_arp_ignore.into());
    let (mut vm_a, mut ca) = TestVm::start(spec_a, dir.path()).await;
    assert_eq!(
        sh(&mut ca, "cat /proc/sys/net/ipv4/conf/all/arp_ignore")
            .await
            .trim(),
        a_arp_ignore
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/arp_ignore").unwrap(),
        host_arp_ignore,
        "the VM's sysctl reached the host"
    );
    let (mut vm_b, mut cb) = TestVm::start(spec(&lab, &b, dir.path()), dir.path()).await;

    // Files: written in A, seen neither on the host nor in B.
    let marker = format!("/etc/{}", unique("marker"));
    sh(&mut ca, &format!("echo secret > {marker}; cat {marker}")).await;
    assert!(
        !std::path::Path::new(&marker).exists(),
        "the write reached the host"
    );
    let out = exec(&mut cb, &["cat", &marker]).await;
    assert_ne!(out.status.code, 0, "B sees A's file");
    assert_eq!(
        sh(
            &mut ca,
            "cat /etc/vbet-test/placed; stat -c %a /etc/vbet-test/placed"
        )
        .await,
        "placed by the spec\n600\n"
    );

    // Its own namespaces, time included.
    for ns in ["mnt", "uts", "ipc", "pid", "net", "cgroup", "time"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let guest = sh(&mut ca, &format!("readlink /proc/self/ns/{ns}")).await;
        assert_ne!(
            guest.trim(),
            host.to_string_lossy(),
            "{ns} namespace shared with the host"
        );
    }

    // Hostnames differ.
    assert_eq!(sh(&mut ca, "hostname").await.trim(), a);
    assert_eq!(sh(&mut cb, "hostname").await.trim(), b);

    // Processes: only the VM's own (its init, the shell, ps).
    let ps = sh(&mut ca, "ps -e -o pid= -o comm=").await;
    let pids: Vec<&str> = ps.lines().collect();
    assert!(
        pids.len() <= 4,
        "ps shows more than the VM's processes:\n{ps}"
    );
    assert!(ps.lines().next().unwrap().trim().starts_with("1 "), "{ps}");

    // The host is out of reach: no modules, no clock, no mounts.
    let out = exec(&mut ca, &["/bin/sh", "-c", "date -s 2001-01-01"]).await;
    assert_ne!(out.status.code, 0, "the VM set the host's clock");
    let out = exec(&mut ca, &["/bin/sh", "-c", "mount -t tmpfs none /mnt"]).await;
    assert_ne!(out.status.code, 0, "the VM mounted a file system");

    let out = exec(&mut ca, &["unshare", "--user", "true"]).await;
    assert_ne!(out.status.code, 0, "the VM made a user namespace");
    let out = exec(
        &mut ca,
        &["/bin/sh", "-c", "echo 1 > /proc/sys/kernel/panic"],
    )
    .await;
    assert_ne!(out.status.code, 0, "the VM changed a host-wide sysctl");
    sh(&mut ca, "echo 1 > /proc/sys/net/ipv4/ip_forward").await;
    // CAP_SYS_ADMIN (bit 21) is kept for FRR, but mounting stays denied
    // (above) and so does unmounting what hides the host.
    let bnd = sh(&mut ca, "grep CapBnd /proc/self/status | cut -f2").await;
    let bnd = u64::from_str_radix(bnd.trim(), 16).unwrap();
    assert_ne!(bnd & (1 << 21), 0, "CapBnd {bnd:x}");
    assert_eq!(bnd & (1 << 27), 0, "CAP_MKNOD kept: CapBnd {bnd:x}");
    let out = exec(&mut ca, &["/bin/sh", "-c", "umount -l /proc"]).await;
    assert_ne!(out.status.code, 0, "the VM unmounted /proc");
    assert_ne!(bnd & (1 << 12), 0, "CAP_NET_ADMIN kept");
    // Another user.
    let start = pb::ExecStart {
        argv: vec!["id".into(), "-u".into()],
        user: "nobody".into(),
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tx.send(pb::ExecRequest {
        kind: Some(pb::exec_request::Kind::Start(start)),
    })
    .await
    .unwrap();
    let mut replies = ca
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut stdout = Vec::new();
    while let Some(r) = replies.message().await.unwrap() {
        match r.kind {
            Some(pb::exec_reply::Kind::Stdout(d)) => stdout.extend(d),
            Some(pb::exec_reply::Kind::Exit(_)) => break,
            _ => {}
        }
    }
    drop(tx);
    assert_eq!(String::from_utf8_lossy(&stdout).trim(), "65534");

    // Memory: an allocation past the limit dies in the VM, the VM lives on.
    let out = exec(
        &mut ca,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"],
    )
    .await;
    assert!(
        out.status.signal == 9 || out.status.code != 0,
        "200M allocated under a 48M limit: {:?}",
        out.status
    );
    assert_eq!(sh(&mut ca, "echo alive").await, "alive\n");
    let status = ca.status(pb::StatusRequest {}).await.unwrap().into_inner();
    let res = status.resources.unwrap();
    assert_eq!(res.memory_limit_bytes, 48 << 20);
    assert_eq!(res.pids_limit, 64);
    assert!(res.memory_bytes > 0);

    drop((ca, cb));
    assert!(vm_a.stop().success());
    assert!(vm_b.stop().success());
}
