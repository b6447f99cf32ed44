//! Misbehaving peers are refused, counted and logged while the daemon
//! keeps serving everyone else; stale sockets are reclaimed; SIGTERM
//! leaves no socket file.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use vbet_port::protocol::{MAGIC, RawSockAddr, Request};
use vbet_tests::switch::{RawPort, SwitchDaemon, test_frame};
use vbet_tests::{bin, require, wait_for};

/// Sends `bytes` as a port request and reports whether the daemon closed
/// the connection without a reply.
fn refused(ctl: &std::path::Path, bytes: &[u8]) -> bool {
    let mut stream = UnixStream::connect(ctl).unwrap();
    stream.write_all(bytes).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply.is_empty()
}

fn header(magic: u32, version: u32, kind: u32) -> Vec<u8> {
    let addr = RawSockAddr::abstract_name(b"vbet-test-nobody-binds-this");
    let mut bytes = Request::new_port(addr, "").encode();
    bytes[0..4].copy_from_slice(&magic.to_ne_bytes());
    bytes[4..8].copy_from_slice(&version.to_ne_bytes());
    bytes[8..12].copy_from_slice(&kind.to_ne_bytes());
    bytes
}

#[test]
fn bad_requests_are_refused_counted_and_the_daemon_keeps_serving() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sw = SwitchDaemon::start("switchd", &dir.path().join("sw"), &["--mac-capacity", "64"]);
    let ctl = sw.ctl();
    let api = sw.api();

    // A client that connects and says nothing must not hold others up.
    let _staller = UnixStream::connect(&ctl).unwrap();

    assert!(refused(&ctl, &[0x41; 200]), "garbage accepted");
    assert!(refused(&ctl, &[1, 2, 3]), "short request accepted");
    assert!(refused(&ctl, &header(MAGIC, 2, 0)), "version 2 accepted");
    assert!(
        refused(&ctl, &header(0xdead_beef, 3, 0)),
        "bad magic accepted"
    );
    assert!(
        refused(&ctl, &header(MAGIC, 3, 7)),
        "request type 7 accepted"
    );
    // A well-formed request whose data socket nobody listens on.
    assert!(
        refused(&ctl, &header(MAGIC, 3, 0)),
        "unreachable peer accepted"
    );

    let errors = wait_for("errors counted", Duration::from_secs(5), || {
        let e = api.info().protocol_errors.unwrap();
        (e.unreachable_peer >= 1 && e.bad_request_type >= 1).then_some(e)
    });
    assert!(errors.bad_magic >= 2, "{errors:?}");
    assert_eq!(errors.bad_version, 1, "{errors:?}");
    assert_eq!(errors.short_request, 1, "{errors:?}");

    // Good clients still work, next to the staller.
    let a = RawPort::connect(&ctl);
    let b = RawPort::connect(&ctl);
    let mac_a = [2, 0, 0, 0, 0x0d, 1];
    a.send(&test_frame([0xff; 6], mac_a, b"still here"));
    assert!(
        b.recv_matching(Duration::from_secs(5), |f| f[6..12] == mac_a)
            .is_some()
    );

    // Runt and oversize datagrams are dropped and counted.
    a.send(&[1, 2, 3, 4, 5]);
    a.send(&vec![0u8; 9000]);
    let drops = wait_for("runt and oversize counted", Duration::from_secs(5), || {
        let d = api.info().totals.unwrap().drops.unwrap();
        (d.runt >= 1 && d.oversize >= 1).then_some(d)
    });
    assert_eq!((drops.runt, drops.oversize), (1, 1));

    // A MAC flood cannot grow the table past its bound.
    for n in 0..1000u32 {
        let b = n.to_be_bytes();
        a.send(&test_frame(
            [0xff; 6],
            [2, 0xee, b[0], b[1], b[2], b[3]],
            b"flood",
        ));
    }
    wait_for("the flood to be forwarded", Duration::from_secs(10), || {
        (api.info().totals.unwrap().rx_frames >= 1000).then_some(())
    });
    let info = api.info();
    assert!(info.mac_entries <= 64, "table grew to {}", info.mac_entries);

    // A client that vanishes takes its port with it.
    drop(b);
    api.wait_ports(1);
    drop(a);
    api.wait_ports(0);
}

#[test]
fn stale_socket_is_reclaimed_and_a_live_one_is_not_taken() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let swdir = dir.path().join("sw");
    std::fs::create_dir_all(&swdir).unwrap();
    // A socket file nobody listens on, as a crashed daemon leaves.
    drop(std::os::unix::net::UnixListener::bind(swdir.join("ctl")).unwrap());
    assert!(swdir.join("ctl").exists());
    let sw = SwitchDaemon::start("switchd", &swdir, &[]);
    let _port = RawPort::connect(&sw.ctl());

    let second = Command::new(bin("switchd"))
        .arg("--dir")
        .arg(&swdir)
        .output()
        .unwrap();
    assert!(
        !second.status.success(),
        "a second daemon took a live socket"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use"), "unclear error: {stderr}");
    assert_eq!(sw.api().ports().len(), 1, "the live daemon lost its port");
}

#[test]
fn sigterm_exits_cleanly_and_removes_every_socket_file() {
    if !require(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let swdir = dir.path().join("sw");
    let mut sw = SwitchDaemon::start("hubd", &swdir, &[]);
    let port = RawPort::connect(&sw.ctl());
    sw.api().wait_ports(1);
    let status = sw
        .process
        .terminate(Duration::from_secs(10))
        .expect("exit on SIGTERM");
    assert!(status.success(), "{status:?}: {}", sw.process.output());
    let left: Vec<_> = std::fs::read_dir(&swdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // The port's data socket is gone: sending fails.
    assert!(port.port.data.send(&[0u8; 60]).is_err());
}

#[test]
fn health_and_reflection_services_answer() {
    if !require(&[]) {
        return;
    }
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().unwrap();
    let sw = SwitchDaemon::start("switchd", &dir.path().join("sw"), &[]);
    let api = sw.dir.join("api");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = vbet_proto::connect_unix(&api).await.unwrap();
        let health = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: "vbet.switch.v1.Switch".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(health.status, 1, "not SERVING: {health:?}");
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let reply = replies.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("no service list: {reply:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.contains(&"vbet.switch.v1.Switch".to_owned()),
            "{names:?}"
        );
    });
}
