//! Syscall faults by rule, at run time, in a VM with `faults = true`:
//! observed in the behaviour of guest programs, and gone once removed.

mod common;

use common::*;
use vbet_proto::vbet::vm::v1 as pb;

const UDP_SENDS: &str = r#"
import errno, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ok = nobufs = 0
for i in range(200):
    try:
        s.sendto(b"x", ("127.0.0.1", 9))
        ok += 1
    except OSError as e:
        if e.errno != errno.ENOBUFS:
            raise
        nobufs += 1
print(ok, nobufs)
"#;

const CONNECTS: &str = r#"
import socket
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
port = srv.getsockname()[1]
out = []
for i in range(6):
    c = socket.socket()
    try:
        c.connect(("127.0.0.1", port))
        out.append("ok")
    except ConnectionRefusedError:
        out.append("refused")
    c.close()
print(" ".join(out))
"#;

fn python_ok() -> bool {
    if std::process::Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success())
    {
        return true;
    }
    skip("needs python3 on the host image");
    false
}

async fn add(
    client: &mut vbet_proto::vbet::vm::v1::vm_monitor_client::VmMonitorClient<
        tonic::transport::Channel,
    >,
    rule: pb::FaultRule,
) -> u64 {
    client
        .add_fault(pb::AddFaultRequest { rule: Some(rule) })
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn remove(
    client: &mut vbet_proto::vbet::vm::v1::vm_monitor_client::VmMonitorClient<
        tonic::transport::Channel,
    >,
    id: u64,
) {
    client
        .remove_fault(pb::RemoveFaultRequest { id })
        .await
        .unwrap();
}

async fn udp_counts(
    client: &mut vbet_proto::vbet::vm::v1::vm_monitor_client::VmMonitorClient<
        tonic::transport::Channel,
    >,
) -> (u32, u32) {
    let out = sh(client, &format!("python3 -c '{UDP_SENDS}'")).await;
    let mut it = out.split_whitespace().map(|w| w.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[tokio::test]
async fn injected_faults_are_seen_by_guest_programs() {
    if !can_run() || !python_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("flt");
    let mut spec = spec("t", &name, dir.path());
    spec.faults = true;
    let (mut vm, mut client) = TestVm::start(spec, dir.path()).await;

    // No rule: everything works.
    assert_eq!(udp_counts(&mut client).await, (200, 0));

    // sendto fails with ENOBUFS about 30% of the time (binomial, n = 200:
    // σ ≈ 6.5, so 30..90 is far beyond 4σ).
    let id = add(
        &mut client,
        pb::FaultRule {
            syscall: "sendto".into(),
            probability: Some(0.3),
            error_number: libc::ENOBUFS,
            ..Default::default()
        },
    )
    .await;
    let (ok, nobufs) = udp_counts(&mut client).await;
    assert_eq!(ok + nobufs, 200);
    assert!((30..=90).contains(&nobufs), "{nobufs} ENOBUFS of 200");
    let listed = client
        .list_faults(pb::ListFaultsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.faultable.iter().any(|s| s == "sendto"));
    assert_eq!(listed.rules.len(), 1);
    assert_eq!(listed.rules[0].fired, u64::from(nobufs));
    remove(&mut client, id).await;
    assert_eq!(udp_counts(&mut client).await, (200, 0));

    // openat fails with EIO for cat only.
    sh(&mut client, "echo hello > /tmp/f").await;
    let id = add(
        &mut client,
        pb::FaultRule {
            syscall: "openat".into(),
            command: "cat".into(),
            error_number: libc::EIO,
            ..Default::default()
        },
    )
    .await;
    let out = exec(&mut client, &["cat", "/tmp/f"]).await;
    assert_ne!(out.status.code, 0, "cat succeeded under the rule");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Input/output error"), "{err}");
    let out = exec(&mut client, &["head", "/tmp/f"]).await;
    assert_eq!(out.status.code, 0);
    assert_eq!(out.stdout, b"hello\n");
    remove(&mut client, id).await;
    let out = exec(&mut client, &["cat", "/tmp/f"]).await;
    assert_eq!(out.stdout, b"hello\n");

    // Every third connect is refused; this time through the CLI.
    let api = vm.spec.api_socket();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(MONITOR)
            .arg("fault")
            .arg("--api")
            .arg(&api)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let id = cli(&[
        "add",
        "--syscall",
        "connect",
        "--every",
        "3",
        "--errno",
        "ECONNREFUSED",
    ]);
    let id = id.trim();
    let out = sh(&mut client, &format!("python3 -c '{CONNECTS}'")).await;
    assert_eq!(out.trim(), "ok ok refused ok ok refused");
    let listing = cli(&["ls"]);
    assert!(
        listing.contains("connect every=3 errno=ECONNREFUSED matched=6 fired=2"),
        "{listing}"
    );
    cli(&["rm", id]);
    let out = sh(&mut client, &format!("python3 -c '{CONNECTS}'")).await;
    assert_eq!(out.trim(), "ok ok ok ok ok ok");

    // A delay: cat's openat waits 300 ms, then runs.
    let id = add(
        &mut client,
        pb::FaultRule {
            syscall: "openat".into(),
            command: "cat".into(),
            after: 2,
            delay_ms: 300,
            ..Default::default()
        },
    )
    .await;
    let t = std::time::Instant::now();
    let out = exec(&mut client, &["cat", "/tmp/f"]).await;
    assert_eq!(out.stdout, b"hello\n");
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    remove(&mut client, id).await;

    // A signal: cat gets SIGUSR1 at its third openat (its default action
    // ends it); a rule for another PID leaves it alone.
    let id = add(
        &mut client,
        pb::FaultRule {
            syscall: "openat".into(),
            command: "cat".into(),
            after: 2,
            every: 1,
            signal: libc::SIGUSR1,
            ..Default::default()
        },
    )
    .await;
    let other = add(
        &mut client,
        pb::FaultRule {
            syscall: "openat".into(),
            pid: 99_999,
            error_number: libc::EIO,
            ..Default::default()
        },
    )
    .await;
    let out = exec(&mut client, &["cat", "/tmp/f"]).await;
    assert_eq!(out.status.signal, libc::SIGUSR1, "{out:?}");
    remove(&mut client, id).await;
    let out = exec(&mut client, &["cat", "/tmp/f"]).await;
    assert_eq!(out.stdout, b"hello\n");
    remove(&mut client, other).await;

    // Bad rules are refused with a reason.
    for (rule, says) in [
        ("nosuch", "unknown syscall"),
        ("getppid", "cannot be faulted"),
    ] {
        let err = client
            .add_fault(pb::AddFaultRequest {
                rule: Some(pb::FaultRule {
                    syscall: rule.into(),
                    error_number: libc::EIO,
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert!(err.message().contains(says), "{err}");
    }
    vm.stop();
}

#[tokio::test]
async fn faults_are_off_unless_the_spec_asks() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("fof");
    let (mut vm, mut client) = TestVm::start(spec("t", &name, dir.path()), dir.path()).await;
    let err = client
        .add_fault(pb::AddFaultRequest {
            rule: Some(pb::FaultRule {
                syscall: "sendto".into(),
                error_number: libc::EIO,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("faults = true"), "{err}");
    // No filter: the guest's /proc says one seccomp filter layer less.
    let out = sh(&mut client, "grep Seccomp_filters /proc/self/status").await;
    assert_eq!(out.split_whitespace().last(), Some("2"), "{out}");
    vm.stop();
}
