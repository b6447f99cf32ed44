//! Signal, Freeze/Thaw, Events and health through the VM's API socket.

mod common;

use std::time::Duration;

use common::*;
use vbet_proto::vbet::vm::v1 as pb;

#[tokio::test]
async fn signal_freeze_thaw_and_events() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("api");
    let (mut vm, mut client) = TestVm::start(spec("api", &name, dir.path()), dir.path()).await;
    let mut events = client
        .events(pb::EventsRequest {})
        .await
        .unwrap()
        .into_inner();

    // A long process, signalled by its guest PID.
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tx.send(pb::ExecRequest {
        kind: Some(pb::exec_request::Kind::Start(pb::ExecStart {
            argv: vec!["sleep".into(), "1000".into()],
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut replies = client
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let Some(pb::exec_reply::Kind::Started(pid)) = replies.message().await.unwrap().unwrap().kind
    else {
        panic!("no Started first");
    };
    let status = client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.pids.contains(&pid), "{:?} lacks {pid}", status.pids);

    // Frozen, then thawed.
    let frozen = client
        .freeze(pb::FreezeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(frozen.state, pb::VmState::Frozen as i32);
    let thawed = client.thaw(pb::ThawRequest {}).await.unwrap().into_inner();
    assert_eq!(thawed.state, pb::VmState::Running as i32);

    client
        .signal(pb::SignalRequest {
            pid,
            signal: libc::SIGTERM,
        })
        .await
        .unwrap();
    let exit = loop {
        let r = tokio::time::timeout(Duration::from_secs(10), replies.message())
            .await
            .expect("exit in time")
            .unwrap()
            .expect("stream open");
        if let Some(pb::exec_reply::Kind::Exit(s)) = r.kind {
            break s;
        }
    };
    assert_eq!(exit.signal, libc::SIGTERM);
    drop(tx);

    // A crash is reported as one.
    let out = exec(&mut client, &["/bin/sh", "-c", "kill -SEGV $$"]).await;
    assert_eq!(out.status.signal, libc::SIGSEGV);
    let crashed = loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("event in time")
            .unwrap()
            .expect("stream open");
        if let Some(pb::event::Kind::ProcessExited(p)) = e.kind {
            if p.pid == out.pid {
                break p;
            }
        }
    };
    assert!(crashed.crashed);
    assert_eq!(crashed.command, "/bin/sh");

    // Health and reflection answer on the same socket.
    let channel = tonic::transport::Endpoint::from_static("http://x")
        .connect_with_connector(tower::service_fn({
            let socket = vm.spec.api_socket();
            move |_| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }
        }))
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "vbet.vm.v1.VmMonitor".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    drop((client, events, replies, health));
    assert!(vm.stop().success());
}

#[tokio::test]
async fn freeze_stops_a_counting_program_and_thaw_resumes_it() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    let name = unique("frz");
    let mut s = spec("frz", &name, dir.path());
    s.hostfs = vec![vm_monitor::spec::Share {
        src: shared.path().to_owned(),
        dst: "/mnt/count".into(),
        mode: vm_monitor::spec::ShareMode::Rw,
    }];
    let (mut vm, mut client) = TestVm::start(s, dir.path()).await;
    // A counter the host can read without entering the VM.
    sh(
        &mut client,
        "(i=0; while true; do i=$((i+1)); echo $i > /mnt/count/n.tmp; mv /mnt/count/n.tmp /mnt/count/n; done) >/dev/null 2>&1 &",
    )
    .await;
    let count = || {
        std::fs::read_to_string(shared.path().join("n"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let moving = |from: u64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if count().is_some_and(|n| n > from + 10) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    assert!(moving(0).await, "the counter never counted");

    let frozen = client
        .freeze(pb::FreezeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(frozen.state, pb::VmState::Frozen as i32);
    // Frozen: over a window of half a second, not one step.
    let at_freeze = count().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count().unwrap(), at_freeze, "a frozen VM kept counting");

    client.thaw(pb::ThawRequest {}).await.unwrap();
    assert!(
        moving(at_freeze).await,
        "the counter did not resume after thaw"
    );
    vm.stop();
}
