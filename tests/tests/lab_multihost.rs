//! A lab on two hosts: two orchestrators on this machine, each with its
//! own run root; "a" receives the topology and drives "b" over TCP with
//! TLS and a token. Cables between them ride VXLAN on 127.0.0.1.

use vbet_tests::lab::{LabHost, TlsFiles, free_tcp_port};
use vbet_tests::{require, unique_name};

/// Both hosts: b serves on TCP, a knows b as its peer.
fn two_hosts(dir: &std::path::Path) -> (LabHost, LabHost) {
    let tls = TlsFiles::new(dir);
    let port = free_tcp_port();
    let listen = tls.listen_flags(port);
    let listen: Vec<&str> = listen.iter().map(String::as_str).collect();
    let b = LabHost::start_with(&[], &listen);
    let peer = format!("b=https://localhost:{port}");
    let a = LabHost::start_with(
        &[],
        &[
            "--host-name",
            "a",
            "--peer",
            &peer,
            "--peer-ca",
            tls.cert.to_str().unwrap(),
            "--peer-token-file",
            tls.token.to_str().unwrap(),
        ],
    );
    (a, b)
}

const TOPOLOGY: &str = "\
sw = alloc(switch, host = \"b\")
sw2 = alloc(switch)
a1 = attach(alloc(host), alloc(NIC, addr = \"10.70.0.1/24\"), alloc(NIC, addr = \"10.71.0.1/24\"))
a2 = attach(alloc(host, host = \"a\"), alloc(NIC, addr = \"10.70.0.2/24\"))
a3 = attach(alloc(host), alloc(NIC, addr = \"10.70.0.5/24\"))
b1 = attach(alloc(host, host = \"b\"), alloc(NIC, addr = \"10.70.0.3/24\"), alloc(NIC, addr = \"10.71.0.2/24\"))
b2 = attach(alloc(host, host = \"b\"), alloc(NIC, addr = \"10.70.0.4/24\"))
link(sw, a1, a2, b1, b2)
link(NIC(sw2), NIC(sw))
link(sw2, a3)
link(NIC(a1,2), NIC(b1,2))
";

/// Pings every address from `node` (through host a), with a retry for
/// the first ARP.
fn pings(a: &LabHost, lab: &str, node: &str, targets: &[&str]) -> std::process::Output {
    let script = format!(
        "for t in {}; do ping -c 1 -W 2 $t >/dev/null || ping -c 1 -W 2 $t || exit 1; done",
        targets.join(" ")
    );
    a.vbet(&["exec", &format!("{lab}/{node}"), "--", "sh", "-c", &script])
}

#[test]
fn a_lab_on_two_hosts_pings_across_them_and_leaves_nothing() {
    if !require(&["ping"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts(dir.path());
    let file = dir.path().join("two-hosts.vbet");
    std::fs::write(&file, TOPOLOGY).unwrap();
    let lab = unique_name("mh");
    a.vbet_ok(&["up", file.to_str().unwrap(), "--name", &lab]);

    // Each host runs its own part; a counts them all.
    assert!(b.vbet_ok(&["ls"]).contains(&lab));
    let ls = a.vbet_ok(&["ls", "--json"]);
    assert!(ls.contains("\"nodes\": 5"), "{ls}");
    let inspect = a.vbet_ok(&["inspect", &lab, "--json"]);
    for node in ["a1", "a2", "a3", "b1", "b2"] {
        assert!(
            inspect.contains(&format!("\"{node}\"")),
            "{node} missing: {inspect}"
        );
    }
    assert!(inspect.contains("\"host\": \"b\""), "{inspect}");
    assert!(a.vbet_ok(&["inspect", &lab]).contains("running on b"));
    assert!(b.run_root.join(&lab).join("b1.sock").exists());
    assert!(!b.run_root.join(&lab).join("a1.sock").exists());

    // Every VM reaches every other: across the switch on b (from a over
    // VXLAN), the trunk between the two switches, and the direct cable.
    let all = [
        "10.70.0.1",
        "10.70.0.2",
        "10.70.0.3",
        "10.70.0.4",
        "10.70.0.5",
    ];
    for node in ["a1", "a2", "a3", "b1", "b2"] {
        let out = pings(&a, &lab, node, &all);
        assert!(
            out.status.success(),
            "{node}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(pings(&a, &lab, "a1", &["10.71.0.2"]).status.success());
    assert!(pings(&a, &lab, "b1", &["10.71.0.1"]).status.success());

    // A capture of a NIC on b, asked of a.
    let pcap = dir.path().join("b1.pcap");
    let mut capture = std::process::Command::new(vbet_tests::bin("vbet"))
        .env("VBET_RUN_ROOT", &a.run_root)
        .args(["capture", &format!("{lab}/b1:eth1"), "-w"])
        .arg(&pcap)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(pings(&a, &lab, "a1", &["10.71.0.2"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    capture.kill().unwrap();
    capture.wait().unwrap();
    let bytes = std::fs::read(&pcap).unwrap_or_default();
    assert!(bytes.len() > 24 + 16 + 60, "captured {} bytes", bytes.len());

    // Logs of a node on b come from b.
    let log = a.vbet_ok(&["logs", &format!("{lab}/b2")]);
    assert!(!log.is_empty());

    // Link control reaches the far end: the cable between hosts unplugged.
    a.vbet_ok(&["link", "a1 b1", "down"]);
    let b1 = b.vbet_ok(&[
        "exec",
        &format!("{lab}/b1"),
        "--",
        "ip",
        "link",
        "show",
        "eth1",
    ]);
    assert!(b1.contains("NO-CARRIER"), "{b1}");
    assert!(!pings(&a, &lab, "a1", &["10.71.0.2"]).status.success());
    a.vbet_ok(&["link", "a1 b1", "up"]);
    assert!(pings(&a, &lab, "a1", &["10.71.0.2"]).status.success());

    // …and the trunk between the switches of the two hosts.
    a.vbet_ok(&["link", "sw2 sw", "down"]);
    assert!(!pings(&a, &lab, "a3", &["10.70.0.4"]).status.success());
    a.vbet_ok(&["link", "sw2 sw", "up"]);
    assert!(pings(&a, &lab, "a3", &["10.70.0.4"]).status.success());

    a.vbet_ok(&["down", &lab]);
    assert!(!b.vbet_ok(&["ls"]).contains(&lab));
    assert!(!a.run_root.join(&lab).exists());
    assert!(!b.run_root.join(&lab).exists());
    a.assert_no_lab_processes();
    b.assert_no_lab_processes();
}

#[test]
fn a_failure_on_one_host_rolls_back_both() {
    if !require(&["ping"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts(dir.path());
    let file = dir.path().join("broken.vbet");
    std::fs::write(
        &file,
        "sw = alloc(switch)\n\
         a1 = attach(alloc(host), alloc(NIC, addr = \"10.72.0.1/24\"))\n\
         b1 = attach(alloc(host, host = \"b\", memory = \"1M\"), alloc(NIC, addr = \"10.72.0.2/24\"))\n\
         link(sw, a1, b1)\n",
    )
    .unwrap();
    let lab = unique_name("rb");
    let out = a.vbet(&["up", file.to_str().unwrap(), "--name", &lab]);
    assert!(!out.status.success(), "a 1 MiB VM booted on b");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host b") && err.contains("b1"), "{err}");
    assert!(!a.run_root.join(&lab).exists());
    assert!(!b.run_root.join(&lab).exists());
    a.assert_no_lab_processes();
    b.assert_no_lab_processes();

    // A lab of the same name that b holds on its own is not b's part,
    // and a failed deploy leaves it alone.
    let own = dir.path().join("own.vbet");
    std::fs::write(&own, "solo = alloc(host)\n").unwrap();
    b.vbet_ok(&["up", own.to_str().unwrap(), "--name", &lab]);
    std::fs::write(
        &file,
        "a1 = alloc(host, nics = 1)\nb1 = alloc(host, nics = 1, host = \"b\")\nlink(NIC(a1,1), NIC(b1,1))\n",
    )
    .unwrap();
    let out = a.vbet(&["up", file.to_str().unwrap(), "--name", &lab]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert!(b.vbet_ok(&["inspect", &lab]).contains("solo"));
    b.vbet_ok(&["down", &lab]);

    // A host nobody knows is refused before anything starts.
    std::fs::write(&file, "x = alloc(host, host = \"nowhere\")\n").unwrap();
    let out = a.vbet(&["up", file.to_str().unwrap(), "--name", &lab]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
    assert!(!a.run_root.join(&lab).exists());
}

#[test]
fn a_leader_can_run_nothing_itself_and_cables_join_two_peers() {
    if !require(&["ping"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::new(dir.path());
    let serve = |port: u16| {
        let flags = tls.listen_flags(port);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        LabHost::start_with(&[], &flags)
    };
    let (pb, pc) = (free_tcp_port(), free_tcp_port());
    let (b, c) = (serve(pb), serve(pc));
    let peers = format!("b=https://localhost:{pb},c=https://localhost:{pc}");
    let a = LabHost::start_with(
        &[
            ("VBET_PEERS", std::path::Path::new(&peers)),
            ("VBET_PEER_CA", &tls.cert),
            ("VBET_PEER_TOKEN_FILE", &tls.token),
        ],
        &[],
    );
    let file = dir.path().join("peers-only.vbet");
    std::fs::write(
        &file,
        "x = attach(alloc(host, host = \"b\"), alloc(NIC, addr = \"10.73.0.1/24\"))\n\
         y = attach(alloc(host, host = \"c\"), alloc(NIC, addr = \"10.73.0.2/24\"))\n\
         link(x, y)\n",
    )
    .unwrap();
    let lab = unique_name("pp");
    a.vbet_ok(&["up", file.to_str().unwrap(), "--name", &lab]);
    assert!(pings(&a, &lab, "x", &["10.73.0.2"]).status.success());
    assert!(pings(&a, &lab, "y", &["10.73.0.1"]).status.success());
    a.vbet_ok(&["down", &lab]);
    for host in [&a, &b, &c] {
        assert!(!host.run_root.join(&lab).exists());
        host.assert_no_lab_processes();
    }
}
