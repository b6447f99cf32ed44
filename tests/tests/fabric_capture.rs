//! Captures to a pcap file that tcpdump reads, and as a pcap stream.

use std::process::Command;
use std::time::Duration;

use tokio_stream::StreamExt;
use vbet_proto::vbet::switch::v1::CaptureRequest;
use vbet_tests::netns::TapEndpoint;
use vbet_tests::switch::{SwitchApi, SwitchDaemon};
use vbet_tests::{require, unique_name};

#[test]
fn file_and_stream_captures_hold_the_icmp_exchange() {
    if !require(&["vde_plug2tap", "ip", "ping", "tcpdump"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sw = SwitchDaemon::start("switchd", &dir.path().join("sw"), &[]);
    let a = TapEndpoint::new(&unique_name("vbt"), &sw.dir, "10.9.20.1/24", dir.path());
    let _b = TapEndpoint::new(&unique_name("vbt"), &sw.dir, "10.9.20.2/24", dir.path());
    let api = sw.api();
    api.wait_ports(2);

    let pcap = dir.path().join("all.pcap");
    let capture = api.start_file_capture(0, &pcap);

    // A stream capture of every port, collected on the side.
    let api_path = sw.dir.join("api");
    let streamed = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut client = SwitchApi::client(&api_path).await.unwrap();
            let mut stream = client
                .capture(CaptureRequest {
                    port: 0,
                    snaplen: 0,
                })
                .await
                .unwrap()
                .into_inner();
            let mut bytes = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while icmp_frames(&bytes) < 6 {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(Ok(chunk))) => bytes.extend(chunk.data),
                    _ => break,
                }
            }
            bytes
        })
    });
    // Let the stream subscribe before traffic flows.
    vbet_tests::wait_for(
        "the stream capture to start",
        Duration::from_secs(5),
        || {
            let out = a.ping("10.9.20.2", 1, "0.2");
            (out.received == 1).then_some(())
        },
    );
    let ping = a.ping("10.9.20.2", 3, "0.2");
    assert_eq!(ping.received, 3, "{}", ping.output);
    let stopped = api.stop_file_capture(capture.id);
    assert!(stopped.frames >= 6, "{stopped:?}");

    let out = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&pcap)
        .arg("icmp")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ICMP echo request") && text.contains("ICMP echo reply"),
        "{text}"
    );

    let bytes = streamed.join().unwrap();
    assert!(
        icmp_frames(&bytes) >= 6,
        "stream held {} ICMP frames",
        icmp_frames(&bytes)
    );
}

/// Counts IPv4 ICMP frames in a pcap byte stream (tolerating a partial
/// last record).
fn icmp_frames(pcap: &[u8]) -> usize {
    let Ok(mut reader) = pcap_file::pcap::PcapReader::new(pcap) else {
        return 0;
    };
    let mut n = 0;
    while let Some(Ok(packet)) = reader.next_packet() {
        let d = &packet.data;
        if d.len() > 23 && d[12..14] == [0x08, 0x00] && d[23] == 1 {
            n += 1;
        }
    }
    n
}
