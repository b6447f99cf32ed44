//! A switchd or hubd under test, with a blocking client of its API.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::runtime::Runtime;
use vbet_proto::vbet::switch::v1 as pb;
use vbet_proto::vbet::switch::v1::switch_client::SwitchClient;

use crate::process::Spawned;
use crate::{bin, wait_for};

/// A running switchd or hubd whose control socket is `DIR/ctl` and API
/// socket `DIR/api`; terminated when dropped.
#[derive(Debug)]
pub struct SwitchDaemon {
    /// The process.
    pub process: Spawned,
    /// Its directory.
    pub dir: PathBuf,
}

impl SwitchDaemon {
    /// Starts `binary` ("switchd" or "hubd") in `dir` with extra flags, and
    /// waits until its API answers.
    pub fn start(binary: &str, dir: &Path, extra: &[&str]) -> SwitchDaemon {
        std::fs::create_dir_all(dir).expect("create switch dir");
        let mut cmd = Command::new(bin(binary));
        cmd.arg("--dir")
            .arg(dir)
            .arg("--api")
            .arg(dir.join("api"))
            .args(extra);
        cmd.env("RUST_LOG", "debug");
        let process = Spawned::start(binary, cmd, &dir.with_extension("log"));
        let daemon = SwitchDaemon {
            process,
            dir: dir.to_owned(),
        };
        let api = daemon.api();
        wait_for(
            &format!("{binary} to serve"),
            Duration::from_secs(10),
            || api.try_info().ok(),
        );
        daemon
    }

    /// The control socket.
    pub fn ctl(&self) -> PathBuf {
        self.dir.join("ctl")
    }

    /// A blocking client of its API.
    pub fn api(&self) -> SwitchApi {
        SwitchApi {
            path: self.dir.join("api"),
            rt: Runtime::new().expect("tokio runtime"),
        }
    }
}

/// A blocking client of a switch's gRPC API.
#[derive(Debug)]
pub struct SwitchApi {
    path: PathBuf,
    /// The runtime the calls run on.
    pub rt: Runtime,
}

impl SwitchApi {
    /// A connected async client.
    pub async fn client(
        path: &Path,
    ) -> Result<SwitchClient<tonic::transport::Channel>, tonic::transport::Error> {
        Ok(SwitchClient::new(vbet_proto::connect_unix(path).await?))
    }

    fn call<T>(
        &self,
        f: impl AsyncFnOnce(SwitchClient<tonic::transport::Channel>) -> Result<T, tonic::Status>,
    ) -> anyhow::Result<T> {
        self.rt.block_on(async {
            let client = Self::client(&self.path).await?;
            Ok(f(client).await?)
        })
    }

    /// GetInfo, or an error if the daemon does not answer.
    pub fn try_info(&self) -> anyhow::Result<pb::SwitchInfo> {
        self.call(async |mut c| Ok(c.get_info(pb::GetInfoRequest {}).await?.into_inner()))
    }

    /// GetInfo.
    pub fn info(&self) -> pb::SwitchInfo {
        self.try_info().expect("GetInfo")
    }

    /// ListPorts.
    pub fn ports(&self) -> Vec<pb::Port> {
        self.call(async |mut c| {
            Ok(c.list_ports(pb::ListPortsRequest {})
                .await?
                .into_inner()
                .ports)
        })
        .expect("ListPorts")
    }

    /// GetMacTable.
    pub fn macs(&self) -> pb::MacTable {
        self.call(async |mut c| {
            Ok(c.get_mac_table(pb::GetMacTableRequest {})
                .await?
                .into_inner())
        })
        .expect("GetMacTable")
    }

    /// SetPort.
    pub fn set_port(&self, request: pb::SetPortRequest) -> anyhow::Result<pb::Port> {
        self.call(async |mut c| Ok(c.set_port(request).await?.into_inner()))
    }

    /// StartFileCapture.
    pub fn start_file_capture(&self, port: u32, path: &Path) -> pb::FileCapture {
        let request = pb::StartFileCaptureRequest {
            port,
            snaplen: 0,
            path: path.display().to_string(),
        };
        self.call(async |mut c| Ok(c.start_file_capture(request).await?.into_inner()))
            .expect("StartFileCapture")
    }

    /// StopFileCapture.
    pub fn stop_file_capture(&self, id: u64) -> pb::FileCapture {
        self.call(async |mut c| {
            Ok(c.stop_file_capture(pb::StopFileCaptureRequest { id })
                .await?
                .into_inner())
        })
        .expect("StopFileCapture")
    }

    /// Waits until the switch has `n` ports.
    pub fn wait_ports(&self, n: usize) -> Vec<pb::Port> {
        wait_for(&format!("{n} ports"), Duration::from_secs(15), || {
            let ports = self.ports();
            (ports.len() == n).then_some(ports)
        })
    }
}

/// A port of ours on a switch, for injecting and observing raw frames.
#[derive(Debug)]
pub struct RawPort {
    /// The port.
    pub port: vbet_port::client::ClientPort,
}

impl RawPort {
    /// Plugs a port into the switch at `ctl` (socket or directory).
    pub fn connect(ctl: &Path) -> RawPort {
        let port = vbet_port::client::connect(ctl)
            .unwrap_or_else(|e| panic!("cannot plug into {}: {e}", ctl.display()));
        RawPort { port }
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) {
        self.port.data.send(frame).expect("send frame");
    }

    /// Receives one frame, or None within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.port
            .data
            .set_read_timeout(Some(timeout))
            .expect("set timeout");
        let mut buf = vec![0u8; 65536];
        match self.port.data.recv(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(_) => None,
        }
    }

    /// Receives frames until one satisfies `want`, or None within
    /// `timeout`.
    pub fn recv_matching(
        &self,
        timeout: Duration,
        want: impl Fn(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let frame = self.recv(left.max(Duration::from_millis(1)))?;
            if want(&frame) {
                return Some(frame);
            }
        }
    }
}

/// An Ethernet frame from `src` to `dst` with a test EtherType (0x88b5,
/// local experimental) and `payload`, padded to the 60-byte minimum.
pub fn test_frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.extend_from_slice(payload);
    frame.resize(frame.len().max(60), 0);
    frame
}
