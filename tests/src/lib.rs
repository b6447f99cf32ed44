//! The harness of vBET's end-to-end tests: finding our binaries, running
//! daemons, UML guests and network namespaces as guards that clean up
//! when dropped (even when a test fails), and polling with deadlines.
//!
//! Tests need root and Debian's peers (user-mode-linux, uml-utilities,
//! vde2). Without them a test skips with a message, unless
//! `VBET_REQUIRE_ALL=1` (set by `scripts/test`), when it fails instead.
#![deny(unsafe_code)]

pub mod lab;
pub mod netns;
pub mod process;
pub mod switch;
pub mod uml;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Checks that we are root and that every program in `programs` is on
/// PATH. Returns false (the test should return early) when something is
/// missing, or panics if `VBET_REQUIRE_ALL=1`.
pub fn require(programs: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_owned());
    }
    for program in programs {
        if which(program).is_none() {
            missing.push((*program).to_owned());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("this test needs {}", missing.join(", "));
    if std::env::var_os("VBET_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("{message} (VBET_REQUIRE_ALL=1)");
    }
    eprintln!("SKIPPED: {message}");
    false
}

/// The full path of `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The path of one of the workspace's binaries (built by
/// `cargo build --workspace --bins`), next to the test executable's
/// `deps` directory.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("VBET_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A short unique name for a test's lab, namespaces and guests.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether a Unix stream socket at `path` accepts connections: its file
/// exists from bind(2) on, but a connect before listen(2) is refused.
pub fn listening(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after
/// `timeout` naming `what` was awaited.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
