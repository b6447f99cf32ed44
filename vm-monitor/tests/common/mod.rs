//! Helpers of the root tests: unique names, a monitor process per VM that
//! is stopped and checked for leftovers even when a test fails.
#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use vbet_proto::vbet::vm::v1 as pb;
use vbet_proto::vbet::vm::v1::vm_monitor_client::VmMonitorClient;
use vm_monitor::spec::VmSpec;

pub const MONITOR: &str = env!("CARGO_BIN_EXE_vm-monitor");

/// Skips a test for `why`, unless `VBET_REQUIRE_ALL` is set (CI installs
/// every peer, so a skip there is a failure).
pub fn skip(why: &str) {
    if std::env::var_os("VBET_REQUIRE_ALL").is_some_and(|v| v != "0") {
        panic!("cannot skip under VBET_REQUIRE_ALL: {why}");
    }
    eprintln!("skipped: {why}");
}

/// Whether the test can run (root, namespaces, TAP); prints why not.
pub fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() {
        skip("needs root");
        return false;
    }
    if !Path::new("/dev/net/tun").exists() {
        skip("needs /dev/net/tun");
        return false;
    }
    true
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}{}x{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 10_000
    )
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A spec for a test VM, with its own run directory.
pub fn spec(lab: &str, name: &str, dir: &Path) -> VmSpec {
    let mut spec = VmSpec::named(name);
    spec.lab = lab.into();
    spec.run_dir = Some(dir.join("run"));
    spec
}

/// A running monitor; stopped (SIGKILL if need be) and checked on drop.
pub struct TestVm {
    pub spec: VmSpec,
    pub child: Option<Child>,
    pub spec_path: PathBuf,
}

pub fn write_spec(spec: &VmSpec, dir: &Path) -> PathBuf {
    let path = dir.join(format!("{}.toml", spec.name));
    std::fs::write(&path, toml::to_string(spec).unwrap()).unwrap();
    path
}

/// Runs the monitor on `spec` and returns its output once it exits (for
/// specs that must fail).
pub fn run_to_end(spec: &VmSpec, dir: &Path) -> std::process::Output {
    let path = write_spec(spec, dir);
    let child = Command::new(MONITOR)
        .args(["run", "--spec"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

impl TestVm {
    /// Starts a monitor and waits until its VM is running.
    pub async fn start(spec: VmSpec, dir: &Path) -> (TestVm, VmMonitorClient<Channel>) {
        let spec_path = write_spec(&spec, dir);
        let log = std::fs::File::create(dir.join(format!("{}.log", spec.name))).unwrap();
        let child = Command::new(MONITOR)
            .args(["run", "--spec"])
            .arg(&spec_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut vm = TestVm {
            spec,
            child: Some(child),
            spec_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = vm.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.join(format!("{}.log", vm.spec.name)))
                    .unwrap_or_default();
                panic!("monitor exited during boot ({status}):\n{log}");
            }
            if let Ok(mut client) = vm_monitor::client::connect(&vm.spec.api_socket()).await {
                if let Ok(s) = client.status(pb::StatusRequest {}).await {
                    if s.get_ref().state == pb::VmState::Running as i32 {
                        return (vm, client);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "VM {} did not become ready",
                vm.spec.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits for the monitor's exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let status = poll("monitor exit", Duration::from_secs(20), || {
            child.try_wait().unwrap()
        });
        assert_no_leftovers(&self.spec, &self.spec_path);
        status
    }

    /// SIGKILLs the monitor and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for TestVm {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Processes whose command line mentions `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                found.push(pid);
            }
        }
    }
    found
}

/// The cgroup directories the VM would use (v1 and v2 layouts).
pub fn cgroup_dirs(spec: &VmSpec) -> Vec<PathBuf> {
    let name = spec.cgroup_name();
    let mut dirs = vec![Path::new("/sys/fs/cgroup/vbet").join(&name)];
    for c in [
        "memory", "cpu", "cpuacct", "pids", "freezer", "devices", "unified",
    ] {
        dirs.push(Path::new("/sys/fs/cgroup").join(c).join("vbet").join(&name));
    }
    dirs
}

/// Waits until nothing of the VM is left on the host: processes, cgroup,
/// sockets, lock, staging directory, mounts.
pub fn assert_no_leftovers(spec: &VmSpec, spec_path: &Path) {
    let needle = spec_path.to_string_lossy().into_owned();
    poll("the VM's processes to go", Duration::from_secs(20), || {
        processes_with(&needle).is_empty().then_some(())
    });
    for dir in cgroup_dirs(spec) {
        poll(
            &format!("{} to go", dir.display()),
            Duration::from_secs(20),
            || (!dir.exists()).then_some(()),
        );
    }
    let mut paths = vec![spec.api_socket(), spec.lock_path(), spec.staging_dir()];
    for n in &spec.nics {
        if let vm_monitor::spec::Wiring::Wire { local, .. } = &n.wiring {
            paths.push(local.clone());
        }
    }
    for p in paths {
        poll(
            &format!("{} to go", p.display()),
            Duration::from_secs(20),
            || (!p.exists()).then_some(()),
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&spec.name),
        "host mounts mention {}:\n{mounts}",
        spec.name
    );
}

/// Runs a command in the VM, panicking on RPC errors.
pub async fn exec(
    client: &mut VmMonitorClient<Channel>,
    argv: &[&str],
) -> vm_monitor::client::Output {
    vm_monitor::client::exec(client, argv, b"").await.unwrap()
}

/// Runs a command and returns its stdout as text, asserting exit 0.
pub async fn sh(client: &mut VmMonitorClient<Channel>, script: &str) -> String {
    let out = exec(client, &["/bin/sh", "-c", script]).await;
    assert_eq!(
        out.status.code,
        0,
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
