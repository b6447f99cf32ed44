//! The host's network software runs in a VM: FRR, nftables, tcpdump,
//! iperf3.

mod common;

use std::path::Path;

use common::*;
use vm_monitor::spec::{FileSpec, NicSpec, Wiring};

#[tokio::test]
async fn frr_nft_tcpdump_iperf3() {
    if !can_run() {
        return;
    }
    for tool in [
        "/usr/lib/frr/frrinit.sh",
        "/usr/sbin/nft",
        "/usr/bin/tcpdump",
        "/usr/bin/iperf3",
    ] {
        if !Path::new(tool).exists() {
            skip(&format!("{tool} is not installed"));
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = unique("sw");
    let (a, b) = (unique("r"), unique("h"));
    let wire = |name: &str, addr: &str, local: &str, remote: &str| {
        let mut s = spec(&lab, name, dir.path());
        s.nics.push(NicSpec {
            index: 0,
            mac: None,
            addresses: vec![addr.into()],
            wiring: Wiring::Wire {
                local: dir.path().join(local),
                remote: dir.path().join(remote),
            },
        });
        s
    };
    let mut spec_a = wire(&a, "10.83.0.1/24", "a", "b");
    spec_a.files.push(FileSpec {
        path: "/etc/frr/daemons".into(),
        content: "zebra=yes\nospfd=yes\nvtysh_enable=yes\n\
                  zebra_options=\"  -A 127.0.0.1 -s 90000000\"\n\
                  ospfd_options=\"  -A 127.0.0.1\"\n"
            .into(),
        mode: 0o640,
    });
    spec_a.files.push(FileSpec {
        path: "/etc/frr/frr.conf".into(),
        content: "router ospf\n network 10.83.0.0/24 area 0\n".into(),
        mode: 0o640,
    });
    spec_a.commands.push("/usr/lib/frr/frrinit.sh start".into());
    let mut spec_b = wire(&b, "10.83.0.2/24", "b", "a");
    spec_b.commands.push("iperf3 -s -D".into());
    let (mut vm_a, mut ca) = TestVm::start(spec_a, dir.path()).await;
    let (mut vm_b, mut cb) = TestVm::start(spec_b, dir.path()).await;

    // FRR's OSPF comes up (watchfrr starts the daemons in the background).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = exec(&mut ca, &["vtysh", "-c", "show ip ospf"]).await;
        if String::from_utf8_lossy(&out.stdout).contains("OSPF Routing Process") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ospfd did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // nftables, in the VM's own network namespace.
    let tables = sh(&mut ca, "nft add table inet vbet && nft list tables").await;
    assert!(tables.contains("table inet vbet"), "{tables}");
    let host = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&host.stdout).contains("table inet vbet"));

    // tcpdump sees the guest's own traffic.
    let capture = sh(
        &mut cb,
        "tcpdump -i eth0 -n -c 1 icmp 2>/dev/null & sleep 1; ping -c 3 -W 1 10.83.0.1 >/dev/null; wait",
    )
    .await;
    assert!(capture.contains("ICMP echo"), "{capture}");

    // iperf3 across the wire, where 64 KiB TCP segments travel whole
    // (offload between two monitors): the capture shows frames over 1514
    // bytes.
    let mut capture = ca
        .capture(vbet_proto::vbet::vm::v1::CaptureRequest { nic: 0 })
        .await
        .unwrap()
        .into_inner();
    let _header = capture.message().await.unwrap().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = exec(&mut ca, &["iperf3", "-c", "10.83.0.2", "-t", "1"]).await;
        if out.status.code == 0 {
            assert!(String::from_utf8_lossy(&out.stdout).contains("receiver"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "iperf3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let mut largest = 0u32;
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(std::time::Duration::from_millis(500), capture.message()).await
    {
        // One pcap record per chunk: ts (8 bytes), caplen, origlen.
        if chunk.data.len() >= 16 {
            largest = largest.max(u32::from_ne_bytes(chunk.data[12..16].try_into().unwrap()));
        }
        if largest > 1514 {
            break;
        }
    }
    assert!(largest > 1514, "no segment over 1514 bytes: offload is off");
    drop(capture);

    drop((ca, cb));
    assert!(vm_a.stop().success());
    assert!(vm_b.stop().success());
}
