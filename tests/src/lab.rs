//! An orchestrator under test, with its own run root, driven through the
//! real `vbet` CLI; every lab it holds is brought down and the
//! orchestrator ended when the guard drops.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::Spawned;
use crate::{bin, wait_for};

/// A running orchestrator whose labs live under a private run root.
#[derive(Debug)]
pub struct LabHost {
    /// The orchestrator process.
    pub orchestrator: Spawned,
    /// The run root.
    pub run_root: PathBuf,
    _dir: tempfile::TempDir,
}

impl LabHost {
    /// Starts an orchestrator in a fresh run root.
    pub fn start() -> LabHost {
        LabHost::start_with_env(&[])
    }

    /// Starts an orchestrator in a fresh run root with extra environment
    /// variables (such as `VBET_IMAGE_STORE`).
    pub fn start_with_env(env: &[(&str, &Path)]) -> LabHost {
        LabHost::start_with(env, &[])
    }

    /// Starts an orchestrator in a fresh run root with extra environment
    /// variables and extra flags.
    pub fn start_with(env: &[(&str, &Path)], flags: &[&str]) -> LabHost {
        let dir = tempfile::Builder::new()
            .prefix("vb")
            .tempdir()
            .expect("temp dir");
        let run_root = dir.path().join("run");
        let mut cmd = Command::new(bin("orchestrator"));
        cmd.arg("--run-root").arg(&run_root);
        for (key, value) in env {
            cmd.env(key, value);
        }
        cmd.args(flags);
        let orchestrator =
            Spawned::start("orchestrator", cmd, &dir.path().join("orchestrator.log"));
        let socket = run_root.join("orchestrator.sock");
        wait_for("the orchestrator's socket", Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&socket)
                .ok()
                .map(|_| ())
        });
        LabHost {
            orchestrator,
            run_root,
            _dir: dir,
        }
    }

    /// Starts a new orchestrator on the same run root (after the first one
    /// ended).
    pub fn restart_orchestrator(&mut self) {
        let mut cmd = Command::new(bin("orchestrator"));
        cmd.arg("--run-root").arg(&self.run_root);
        let log = self.orchestrator.log.with_extension("2.log");
        self.orchestrator = Spawned::start("orchestrator", cmd, &log);
        let socket = self.run_root.join("orchestrator.sock");
        wait_for(
            "the new orchestrator's socket",
            Duration::from_secs(10),
            || {
                std::os::unix::net::UnixStream::connect(&socket)
                    .ok()
                    .map(|_| ())
            },
        );
    }

    /// Runs `vbet ARGS…` against this orchestrator.
    pub fn vbet(&self, args: &[&str]) -> Output {
        vbet(&self.run_root, args)
    }

    /// Runs `vbet ARGS…` and panics unless it succeeds; returns stdout.
    pub fn vbet_ok(&self, args: &[&str]) -> String {
        let out = self.vbet(args);
        assert!(
            out.status.success(),
            "vbet {args:?} failed ({:?}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Panics if any process of this run root's labs is still running.
    pub fn assert_no_lab_processes(&self) {
        let left = self.lab_processes();
        assert!(left.is_empty(), "left running: {left:?}");
    }

    /// Processes whose command line mentions this run root (the lab's
    /// daemons and monitors), other than the orchestrator itself.
    pub fn lab_processes(&self) -> Vec<String> {
        processes_mentioning(&self.run_root)
            .into_iter()
            .filter(|(pid, _)| *pid != self.orchestrator.pid().as_raw() as u32)
            .map(|(pid, cmd)| format!("{pid} {cmd}"))
            .collect()
    }
}

impl Drop for LabHost {
    fn drop(&mut self) {
        // A test may have ended the orchestrator: start one again (its
        // own, ended below) so the labs are brought down, rather than
        // letting `vbet` start one in the background that nobody ends.
        if self.orchestrator.exited().is_some() {
            let mut cmd = Command::new(bin("orchestrator"));
            cmd.arg("--run-root").arg(&self.run_root);
            let log = self.orchestrator.log.with_extension("cleanup.log");
            self.orchestrator = Spawned::start("orchestrator", cmd, &log);
            let socket = self.run_root.join("orchestrator.sock");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::os::unix::net::UnixStream::connect(&socket).is_err()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Ok(out) = Command::new(bin("vbet"))
            .env("VBET_RUN_ROOT", &self.run_root)
            .args(["ls", "--json"])
            .output()
            && let Ok(labs) = serde_json_names(&out.stdout)
        {
            for lab in labs {
                let _ = self.vbet(&["down", &lab]);
            }
        }
        self.orchestrator.terminate(Duration::from_secs(5));
    }
}

/// A self-signed certificate for `localhost` with its key, and a bearer
/// token, written into `dir`: what an orchestrator on TCP needs.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate (PEM); also the CA clients check it against.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// A file holding the token.
    pub token: PathBuf,
}

impl TlsFiles {
    /// Makes them in `dir`.
    pub fn new(dir: &Path) -> TlsFiles {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            token: dir.join("token"),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        std::fs::write(&files.key, signing_key.serialize_pem()).expect("write key");
        std::fs::write(&files.token, "a-token-for-the-test-hosts\n").expect("write token");
        files
    }

    /// The orchestrator flags that serve on TCP at 127.0.0.1:`port`.
    pub fn listen_flags(&self, port: u16) -> Vec<String> {
        vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
            "--token-file".into(),
            self.token.display().to_string(),
        ]
    }
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The `name` fields of a JSON array of objects (no JSON dependency: the
/// shape is ours and simple).
fn serde_json_names(bytes: &[u8]) -> Result<Vec<String>, ()> {
    let text = String::from_utf8_lossy(bytes);
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"name\": \""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_owned)
        .collect())
}

/// Runs `vbet ARGS…` with `run_root`.
pub fn vbet(run_root: &Path, args: &[&str]) -> Output {
    Command::new(bin("vbet"))
        .env("VBET_RUN_ROOT", run_root)
        .args(args)
        .output()
        .expect("run vbet")
}

/// (pid, command line) of every process whose command line contains
/// `needle`.
pub fn processes_mentioning(needle: &Path) -> Vec<(u32, String)> {
    let needle = needle.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// The repository's `examples/` directory.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The cgroup directories of lab `lab`'s VMs that exist now (cgroup v2 and
/// v1 layouts).
pub fn lab_cgroups(lab: &str) -> Vec<PathBuf> {
    let prefix = format!("{lab}.");
    let mut found = Vec::new();
    for controller in [
        "", "memory", "cpu", "cpuacct", "pids", "freezer", "devices", "unified",
    ] {
        let parent = Path::new("/sys/fs/cgroup").join(controller).join("vbet");
        for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) && entry.path().is_dir() {
                found.push(entry.path());
            }
        }
    }
    found
}
