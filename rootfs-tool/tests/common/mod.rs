//! Shared setup of rootfs-tool's root integration tests: a unique temporary
//! store per test, a guard that unmounts everything under it (even when the
//! test fails), busybox-static, and "guests" run on an overlay.
//!
//! A guest today is the image's `/init` run with `unshare` (own mount and
//! network namespaces) and `chroot` into the overlay; when vm-monitor can
//! boot VMs, [`Guest::start`] is the one place to switch over.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use rootfs_tool::build::{self, BUSYBOX_PATHS, BuildRequest, Source};
use rootfs_tool::mounts;
use rootfs_tool::{Image, ImageStore, Layer};

/// A test's private world: a temporary directory holding a store, layers
/// and mount points. Dropping it unmounts everything below it first.
pub struct TestEnv {
    pub store: ImageStore,
    tmp: tempfile::TempDir,
}

impl TestEnv {
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A directory inside the environment (created).
    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Builds a busybox image.
    pub fn busybox_image(&self, name: &str) -> Image {
        let req = BuildRequest::new(name, Source::Busybox);
        build::build(&self.store, &req, &indicatif::ProgressBar::hidden())
            .expect("busybox build")
            .image
    }

    /// Whether the store holds nothing but what an empty store has: no
    /// image (but `keep`), no build directory.
    pub fn assert_store_clean(&self, keep: &[&str]) {
        let mut names: Vec<String> = std::fs::read_dir(self.store.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && !keep.contains(&n.as_str()))
            .collect();
        names.sort();
        assert!(names.is_empty(), "left in the store: {names:?}");
        let tmp: Vec<_> = std::fs::read_dir(self.store.root().join(".tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(tmp.is_empty(), "left in the store's .tmp: {tmp:?}");
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Err(e) = mounts::unmount_all_under(self.tmp.path()) {
            eprintln!("cleanup: {e}");
        }
        let left = mounts::mounts_under(self.tmp.path()).unwrap_or_default();
        if !left.is_empty() {
            // Never let TempDir's removal walk into a mounted tree.
            eprintln!(
                "cleanup: mounts left under {}: {left:?}",
                self.tmp.path().display()
            );
            let keep = std::mem::replace(&mut self.tmp, tempfile::tempdir().unwrap());
            let _ = keep.keep();
        }
    }
}

/// Says why a test is skipped; with `VBET_REQUIRE_ALL` set (as CI does,
/// having installed everything), a skip is a failure instead.
pub fn skip(test: &str, why: &str) {
    if std::env::var_os("VBET_REQUIRE_ALL").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{test} cannot run: {why} (VBET_REQUIRE_ALL is set)");
    }
    eprintln!("SKIP {test}: {why}");
}

/// Installs Debian packages with apt-get (quietly; errors show up as the
/// package still missing).
pub fn apt_install(packages: &[&str]) {
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status();
}

/// A fresh environment, or `None` (after saying why) when not root.
pub fn env(test: &str) -> Option<TestEnv> {
    if !nix::unistd::geteuid().is_root() {
        skip(
            test,
            "needs root (mounts, chroot, device nodes); run the tests as root",
        );
        return None;
    }
    let tmp = tempfile::Builder::new()
        .prefix("rootfs-tool-test.")
        .tempdir()
        .unwrap();
    let store = ImageStore::open(tmp.path().join("store")).unwrap();
    Some(TestEnv { store, tmp })
}

static INSTALL: Once = Once::new();

/// busybox-static, installed with apt-get if missing; `None` (after saying
/// why) when it cannot be had.
pub fn busybox(test: &str) -> Option<PathBuf> {
    let find = || {
        BUSYBOX_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    };
    if find().is_none() {
        INSTALL.call_once(|| {
            eprintln!("{test}: installing busybox-static");
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-q", "busybox-static"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        });
    }
    let found = find();
    if found.is_none() {
        eprintln!(
            "SKIP {test}: busybox-static is not installed and could not be (apt-get install -y busybox-static)"
        );
    }
    found
}

/// Root and busybox, or `None` after saying why not.
pub fn setup(test: &str) -> Option<TestEnv> {
    let env = env(test)?;
    busybox(test)?;
    Some(env)
}

/// A layer over `image` mounted on `target` (both inside the environment).
pub fn mounted_layer(
    env: &TestEnv,
    image: &str,
    name: &str,
    tmpfs: Option<u64>,
) -> (Layer, PathBuf) {
    let layer = Layer::create(
        &env.store,
        image,
        &env.path().join(format!("{name}.layer")),
        tmpfs,
    )
    .unwrap();
    let target = env.dir(&format!("{name}.root"));
    layer.mount_overlay(&target).unwrap();
    (layer, target)
}

/// Runs a command in a root directory with its own mount and network
/// namespaces, and waits for it.
pub fn run_in(root: &Path, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["--mount", "--net", "chroot"])
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// A running guest: the image's init in its own mount and network
/// namespaces, chrooted into its overlay. Killed (its whole process group)
/// when dropped.
pub struct Guest {
    child: Option<Child>,
    pid: u32,
    pub root: PathBuf,
}

impl Guest {
    /// Starts `/init ARGS…` in `root`.
    pub fn start(root: &Path, args: &[&str]) -> Guest {
        use std::os::unix::process::CommandExt;
        let child = Command::new("unshare")
            .args(["--mount", "--net", "chroot"])
            .arg(root)
            .arg("/init")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let guest = Guest {
            pid: child.id(),
            child: Some(child),
            root: root.to_path_buf(),
        };
        guest.wait_for_own_netns();
        guest
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn wait_for_own_netns(&self) {
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match std::fs::read_link(format!("/proc/{}/ns/net", self.pid())) {
                Ok(ns) if ns != mine => return,
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        panic!("guest {} never got its own network namespace", self.pid());
    }

    /// Runs the guest's own busybox inside its network namespace.
    pub fn busybox(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.pid().to_string(),
                "--net",
                "--root",
                "/bin/busybox",
            ])
            .args(args)
            .output()
            .unwrap()
    }

    /// Waits for the guest to end, with a deadline.
    pub fn wait(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let child = self.child.as_mut().expect("running guest");
            if child.try_wait().unwrap().is_some() {
                let child = self.child.take().expect("running guest");
                return child.wait_with_output().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("guest {} did not finish within {limit:?}", self.pid());
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // The guest's whole process group (it was started as its leader
        // and is not reaped yet, so the id is still ours).
        if let Some(mut child) = self.child.take() {
            let pgid = nix::unistd::Pid::from_raw(self.pid as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Deletes a host network interface when dropped (if it is still there).
pub struct LinkGuard(pub String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

pub fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
