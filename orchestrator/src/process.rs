//! The processes of a lab: started detached (they outlive the
//! orchestrator), recognised by PID and command line, ended by PID.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Starts `program args…` in its own process group with stdin from
/// /dev/null and stdout and stderr appended to `log`. The child is reaped
/// by a background task while this process lives; after that it is
/// re-parented and lives on. Returns its PID.
pub fn spawn_detached(program: &Path, args: &[String], log: &Path) -> std::io::Result<u32> {
    spawn_detached_with(program, args, log, &[])
}

/// [`spawn_detached`] with extra environment variables.
pub fn spawn_detached_with(
    program: &Path,
    args: &[String],
    log: &Path,
    env: &[(&str, String)],
) -> std::io::Result<u32> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    await_command_line(pid);
    Ok(pid)
}

/// Waits (briefly) until `pid`'s command line is its new program's.
/// `spawn` returns once `execve` has passed its point of no return, but
/// the kernel sets the new command line a moment later: until then
/// `/proc/PID/cmdline` is empty and [`is_ours`] would say no — and a
/// rollback right after a spawn would leave that process behind.
fn await_command_line(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether `pid` is a process that has not exited (or is a zombie). Only
/// safe for children we have not reaped yet: their PID cannot be reused.
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// Whether `pid` is a live (not zombie) process whose command line
/// contains `marker` — so a reused PID is never mistaken for ours.
pub fn is_ours(pid: u32, marker: &str) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'));
    !zombie && String::from_utf8_lossy(&cmdline).contains(marker)
}

/// Sends SIGTERM to `pid` (if it is ours) and waits up to `grace` for it
/// to exit, then SIGKILLs it. Returns whether it had to be killed.
pub async fn terminate(pid: u32, marker: &str, grace: Duration) -> bool {
    if !is_ours(pid, marker) {
        return false;
    }
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    if wait_gone(pid, marker, grace).await {
        return false;
    }
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    wait_gone(pid, marker, Duration::from_secs(5)).await;
    true
}

/// Waits up to `timeout` for `pid` to be gone; true if it is.
pub async fn wait_gone(pid: u32, marker: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_ours(pid, marker) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawns_recognises_and_terminates() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let pid = spawn_detached(Path::new("/bin/sleep"), &["30".into()], &log).unwrap();
        assert!(is_ours(pid, "sleep"));
        assert!(!is_ours(pid, "not-this-one"));
        assert!(!terminate(pid, "sleep", Duration::from_secs(5)).await);
        assert!(!is_ours(pid, "sleep"));
    }
}
