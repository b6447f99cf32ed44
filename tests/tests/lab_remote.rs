//! The orchestrator's API on TCP: TLS and a bearer token, or nothing.

use std::process::Command;

use vbet_tests::lab::{LabHost, examples};
use vbet_tests::{bin, require, unique_name};

#[test]
fn the_cli_works_over_tls_with_the_token_and_is_refused_without() {
    if !require(&["ping"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token-for-the-test\n").unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-right-token-at-all\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let host = LabHost::start_with(
        &[],
        &[
            "--listen",
            &listen,
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--token-file",
            token.to_str().unwrap(),
        ],
    );
    let url = format!("https://localhost:{port}");
    let remote = |token: &std::path::Path, args: &[&str]| {
        // No VBET_RUN_ROOT: the local socket is not used at all.
        Command::new(bin("vbet"))
            .args([
                "--remote",
                &url,
                "--ca",
                cert_path.to_str().unwrap(),
                "--token-file",
            ])
            .arg(token)
            .args(args)
            .env_remove("VBET_RUN_ROOT")
            .output()
            .unwrap()
    };
    let lab = unique_name("tls");
    let file = examples().join("paper-2.2-switch.vbet");
    let up = remote(&token, &["up", file.to_str().unwrap(), "--name", &lab]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let node = format!("{lab}/host1");
    let ping = remote(
        &token,
        &[
            "exec",
            &node,
            "--",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.22.0.2",
        ],
    );
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stderr)
    );

    // Logs come through the API too.
    let logs = remote(&token, &["logs", &node]);
    assert!(
        logs.status.success() && !logs.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );

    // A topology of several files, sent as text: it exists only here.
    let topo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(topo.path().join("parts")).unwrap();
    std::fs::write(
        topo.path().join("two.vbet"),
        "include \"parts/hosts.vbet\"\nlink(NIC(a,1), NIC(b,1))\n",
    )
    .unwrap();
    std::fs::write(
        topo.path().join("parts/hosts.vbet"),
        "a = alloc(host, nics=1)\nb = alloc(host, nics=1)\n\
         set(NIC(a,1), addr=\"10.61.0.1/24\")\nset(NIC(b,1), addr=\"10.61.0.2/24\")\n\
         file(a, \"/etc/vbet-motd\", path=\"motd.txt\")\n",
    )
    .unwrap();
    std::fs::write(topo.path().join("parts/motd.txt"), "placed over TLS\n").unwrap();
    let sent = unique_name("txt");
    let main = topo.path().join("two.vbet");
    let up = remote(&token, &["up", main.to_str().unwrap(), "--name", &sent]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let a = format!("{sent}/a");
    let cat = remote(&token, &["exec", &a, "--", "cat", "/etc/vbet-motd"]);
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "placed over TLS\n");
    let ping = remote(
        &token,
        &["exec", &a, "--", "ping", "-c", "1", "-W", "2", "10.61.0.2"],
    );
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let down = remote(&token, &["down", &sent]);
    assert!(down.status.success());
    // A mistake is reported at its file, line and column, from here.
    std::fs::write(topo.path().join("parts/hosts.vbet"), "a = alloc(hots)\n").unwrap();
    let bad = remote(&token, &["up", main.to_str().unwrap()]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("hosts.vbet:1:"), "{err}");

    let refused = remote(&wrong, &["ls"]);
    assert!(!refused.status.success(), "a wrong token was accepted");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let plain = Command::new(bin("vbet"))
        .args(["--remote", &url, "ls"])
        .env_remove("VBET_RUN_ROOT")
        .output()
        .unwrap();
    assert!(!plain.status.success(), "--remote without credentials ran");

    let down = remote(&token, &["down", &lab]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    host.assert_no_lab_processes();
}
