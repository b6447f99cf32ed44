//! The guest init (PID 1 of the VM) and the control channel between it and
//! the monitor.
//!
//! The init is a fork of the monitor made before any thread exists. It
//! joins the VM's cgroup, builds the root, applies the seccomp policy and
//! drops capabilities, then serves the monitor: it starts processes (so
//! every guest process is its descendant and shares its namespaces, root,
//! cgroup, capabilities and filter), signals them, reaps every zombie and
//! reports the exits of the processes it started. It dies with the monitor
//! (PR_SET_PDEATHSIG, and EOF on the channel); when it dies the kernel kills
//! every process of the VM.
//!
//! The channel is a `SOCK_SEQPACKET` socketpair: one JSON message per
//! packet, file descriptors (stdio pipes, a pty master) as SCM_RIGHTS.
//! Messages from the init are input from the guest and are treated as
//! untrusted by the monitor.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::rootfs::Step;
use crate::sys;

/// The largest control message.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// What the monitor asks of the init.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToInit {
    /// Start a process. Without `tty`, three fds come along: stdin, stdout,
    /// stderr.
    Spawn {
        /// Request id, echoed in the reply.
        id: u64,
        /// Program and arguments.
        argv: Vec<String>,
        /// Extra environment.
        env: Vec<(String, String)>,
        /// Working directory ("" = the user's home or /).
        cwd: String,
        /// User name or uid ("" = root).
        user: String,
        /// Run on a new pty of this size (rows, cols); the reply carries
        /// the master.
        tty: Option<(u16, u16)>,
    },
    /// Send a signal (pid 0: every process but the init).
    Signal {
        /// Guest PID.
        pid: i32,
        /// Signal number.
        signal: i32,
    },
    /// Are you alive? (the watchdog); answered with `Pong`.
    Ping {
        /// Echoed.
        seq: u64,
    },
    /// SIGTERM everything, SIGKILL after `grace_ms`, then exit.
    Shutdown {
        /// Grace time.
        grace_ms: u64,
    },
}

/// What the init tells the monitor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromInit {
    /// The root is built and the policy applied: the guest can run.
    SetupDone,
    /// Building the VM failed; the init exits.
    SetupFailed {
        /// The error chain.
        error: String,
    },
    /// A process started (with a pty master attached for tty requests).
    Spawned {
        /// Request id.
        id: u64,
        /// Guest PID.
        pid: i32,
    },
    /// A process could not start.
    SpawnFailed {
        /// Request id.
        id: u64,
        /// Why.
        error: String,
    },
    /// The answer to `Ping`.
    Pong {
        /// The ping's.
        seq: u64,
    },
    /// A started process ended.
    Exited {
        /// Guest PID.
        pid: i32,
        /// Exit code (when it exited).
        code: i32,
        /// Signal that killed it (0 if none).
        signal: i32,
    },
}

/// Sends one message with fds.
pub fn send<T: Serialize>(sock: &impl AsRawFd, msg: &T, fds: &[RawFd]) -> std::io::Result<()> {
    let data = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    sys::send_with_fds(sock, &data, fds)
}

/// Receives one message; `Ok(None)` when the peer closed.
pub fn recv<T: for<'de> Deserialize<'de>>(
    sock: &impl AsRawFd,
) -> std::io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let (n, fds) = sys::recv_with_fds(sock, &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..n])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Some((msg, fds)))
}

/// Everything the guest init needs, prepared by the monitor before the fork.
#[derive(Debug)]
pub struct GuestSetup {
    /// The init's end of the control channel.
    pub channel: OwnedFd,
    /// Hostname.
    pub hostname: String,
    /// `cgroup.procs` files to join.
    pub cgroup_procs: Vec<PathBuf>,
    /// Root file system steps.
    pub steps: Vec<Step>,
    /// Install the fault filter ([`crate::seccomp::FAULTABLE`]) and hand
    /// its listener to the monitor with `SetupDone`.
    pub faults: bool,
    /// Clock offsets for the guest's time namespace.
    pub clock: crate::spec::ClockSpec,
}

/// Runs the guest init; never returns.
pub fn guest_main(setup: GuestSetup) -> ! {
    let channel = setup.channel.try_clone();
    match prepare(&setup) {
        Ok(listener) => {
            let fds: Vec<RawFd> = listener.iter().map(|l| l.as_raw_fd()).collect();
            if send(&setup.channel, &FromInit::SetupDone, &fds).is_err() {
                sys::exit_now(1);
            }
            // Only the monitor holds the listener.
            drop(listener);
            serve(setup.channel)
        }
        Err(error) => {
            if let Ok(ch) = channel {
                let _ = send(&ch, &FromInit::SetupFailed { error }, &[]);
            }
            sys::exit_now(1)
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Builds the VM from the inside; returns the fault filter's listener
/// when the VM has one.
fn prepare(setup: &GuestSetup) -> Result<Option<OwnedFd>, String> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    // `ps` in the VM shows the init's command line (the monitor's); its
    // name at least says what it is.
    let _ = nix::sys::prctl::set_name(c"vbet-init");
    for procs in &setup.cgroup_procs {
        std::fs::write(procs, "0")
            .map_err(|e| format!("joining cgroup {}: {e}", procs.display()))?;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| format!("new cgroup namespace: {e}"))?;
    // A time namespace for the guest's processes (the init's children),
    // where the kernel has one: the seam for clock offsets.
    match nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(
        libc::CLONE_NEWTIME,
    )) {
        // Offsets can be set until the first process enters the
        // namespace (our first child); we still hold CAP_SYS_TIME.
        Ok(()) if !setup.clock.is_zero() => {
            std::fs::write("/proc/self/timens_offsets", setup.clock.timens_offsets())
                .map_err(|e| format!("setting the clock offsets {:?}: {e}", setup.clock))?;
        }
        Ok(()) => {}
        Err(nix::errno::Errno::EINVAL) if !setup.clock.is_zero() => {
            return Err("clock offsets need time namespaces (Linux 5.6)".into());
        }
        Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(format!("new time namespace: {e}")),
    }
    nix::unistd::sethostname(&setup.hostname).map_err(|e| format!("sethostname: {e}"))?;
    crate::rootfs::apply(&setup.steps).map_err(|e| chain(&e))?;
    // The monitor's stdio (a terminal, the journal) is not the guest's
    // business: the init reports through its channel only.
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("opening /dev/null: {e}"))?;
    nix::unistd::dup2_stdin(&null)
        .and_then(|()| nix::unistd::dup2_stdout(&null))
        .and_then(|()| nix::unistd::dup2_stderr(&null))
        .map_err(|e| format!("stdio to /dev/null: {e}"))?;
    crate::seccomp::install_guest_policy().map_err(|e| chain(&e))?;
    crate::caps::drop_guest_caps().map_err(|e| chain(&e))?;
    // The guest's clock syscalls go to the tracer (which seized us before
    // we start any process).
    if setup.clock.is_virtual() {
        crate::seccomp::install_clock_filter().map_err(|e| chain(&e))?;
    }
    // Last: from here on every faultable syscall of the init waits for the
    // monitor, which has no listener until SetupDone carries it (on the
    // channel, which the filter exempts).
    if setup.faults {
        let listener = crate::seccomp::install_fault_filter(setup.channel.as_raw_fd())
            .map_err(|e| chain(&e))?;
        return Ok(Some(listener));
    }
    Ok(None)
}

struct User {
    uid: u32,
    gid: u32,
    name: String,
    home: String,
}

fn lookup_user(user: &str) -> Result<User, String> {
    let user = if user.is_empty() { "0" } else { user };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            continue;
        }
        if f[0] == user || f[2] == user {
            return Ok(User {
                uid: f[2]
                    .parse()
                    .map_err(|_| format!("bad uid in /etc/passwd for {}", f[0]))?,
                gid: f[3]
                    .parse()
                    .map_err(|_| format!("bad gid in /etc/passwd for {}", f[0]))?,
                name: f[0].into(),
                home: f[5].into(),
            });
        }
    }
    match user.parse::<u32>() {
        Ok(uid) => Ok(User {
            uid,
            gid: uid,
            name: user.into(),
            home: "/".into(),
        }),
        Err(_) => Err(format!("no user {user:?} in the VM's /etc/passwd")),
    }
}

fn open_pty(rows: u16, cols: u16) -> Result<(OwnedFd, OwnedFd), String> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| format!("opening /dev/ptmx: {e}"))?;
    nix::pty::grantpt(&master).map_err(|e| format!("grantpt: {e}"))?;
    nix::pty::unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| format!("ptsname: {e}"))?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&name)
        .map_err(|e| format!("opening {name}: {e}"))?
        .into();
    let master: OwnedFd = master.into();
    let _ = sys::set_window_size(&master, rows.max(1), cols.max(1));
    Ok((master, slave))
}

/// Starts a process; returns its PID and, for a tty, the pty master.
fn spawn(req: &ToInit, mut fds: Vec<OwnedFd>) -> Result<(i32, Option<OwnedFd>), String> {
    let ToInit::Spawn {
        argv,
        env,
        cwd,
        user,
        tty,
        ..
    } = req
    else {
        return Err("not a spawn request".into());
    };
    if argv.is_empty() {
        return Err("empty argv".into());
    }
    let user = lookup_user(user)?;
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .current_dir(if cwd.is_empty() { "/" } else { cwd })
        .uid(user.uid)
        .gid(user.gid);
    let mut master = None;
    if let Some((rows, cols)) = tty {
        let (m, slave) = open_pty(*rows, *cols)?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("dup: {e}"));
        cmd.stdin(Stdio::from(dup(&slave)?))
            .stdout(Stdio::from(dup(&slave)?))
            .stderr(Stdio::from(slave))
            .env("TERM", "xterm-256color");
        sys::command_with_controlling_tty(&mut cmd);
        master = Some(m);
    } else {
        if fds.len() != 3 {
            return Err(format!("expected 3 stdio fds, got {}", fds.len()));
        }
        let stderr = fds.pop().expect("3 fds");
        let stdout = fds.pop().expect("3 fds");
        let stdin = fds.pop().expect("3 fds");
        cmd.stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .process_group(0);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    Ok((child.id() as i32, master))
}

/// The init's service loop: requests from the monitor, SIGCHLD.
fn serve(channel: OwnedFd) -> ! {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    if mask.thread_block().is_err() {
        sys::exit_now(1);
    }
    let Ok(sigfd) = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
    else {
        sys::exit_now(1)
    };
    let mut started: HashSet<i32> = HashSet::new();
    let mut shutdown: Option<Instant> = None;
    loop {
        // Reap every zombie; report the ones we started.
        let mut no_children = false;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => report(&channel, &mut started, pid, code, 0),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    report(&channel, &mut started, pid, 0, sig as i32)
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    no_children = true;
                    break;
                }
            }
        }
        let mut timeout = nix::poll::PollTimeout::NONE;
        if let Some(deadline) = shutdown {
            if no_children {
                sys::exit_now(0);
            }
            let now = Instant::now();
            if now >= deadline {
                let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
                timeout = nix::poll::PollTimeout::from(50u16);
            } else {
                let left = (deadline - now).as_millis().min(10_000) as u16;
                timeout = nix::poll::PollTimeout::from(left.max(1));
            }
        }
        let mut fds = [
            nix::poll::PollFd::new(channel.as_fd(), nix::poll::PollFlags::POLLIN),
            nix::poll::PollFd::new(sigfd.as_fd(), nix::poll::PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => sys::exit_now(1),
        }
        let chan_ready = fds[0].any().unwrap_or(false);
        let sig_ready = fds[1].any().unwrap_or(false);
        if sig_ready {
            while let Ok(Some(_)) = sigfd.read_signal() {}
        }
        if !chan_ready {
            continue;
        }
        let (req, fds) = match recv::<ToInit>(&channel) {
            Ok(Some(m)) => m,
            // The monitor is gone: so is the VM.
            Ok(None) => sys::exit_now(0),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => continue,
            Err(_) => sys::exit_now(1),
        };
        match &req {
            ToInit::Spawn { id, .. } => {
                let reply = match spawn(&req, fds) {
                    Ok((pid, master)) => {
                        started.insert(pid);
                        let fds: Vec<RawFd> = master.iter().map(|m| m.as_raw_fd()).collect();
                        send(&channel, &FromInit::Spawned { id: *id, pid }, &fds)
                    }
                    Err(error) => send(&channel, &FromInit::SpawnFailed { id: *id, error }, &[]),
                };
                if reply.is_err() {
                    sys::exit_now(1);
                }
            }
            ToInit::Signal { pid, signal } => {
                let target = if *pid == 0 { -1 } else { *pid };
                if let Ok(sig) = Signal::try_from(*signal) {
                    let _ = nix::sys::signal::kill(Pid::from_raw(target), sig);
                }
            }
            ToInit::Ping { seq } => {
                if send(&channel, &FromInit::Pong { seq: *seq }, &[]).is_err() {
                    sys::exit_now(1);
                }
            }
            ToInit::Shutdown { grace_ms } => {
                let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGTERM);
                shutdown = Some(Instant::now() + Duration::from_millis(*grace_ms));
            }
        }
    }
}

fn report(channel: &OwnedFd, started: &mut HashSet<i32>, pid: Pid, code: i32, signal: i32) {
    let pid = pid.as_raw();
    if started.remove(&pid) && send(channel, &FromInit::Exited { pid, code, signal }, &[]).is_err()
    {
        sys::exit_now(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_a_socketpair_with_fds() {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let file = tempfile::tempfile().unwrap();
        send(
            &a,
            &FromInit::Spawned { id: 7, pid: 42 },
            &[file.as_raw_fd()],
        )
        .unwrap();
        let (msg, fds) = recv::<FromInit>(&b).unwrap().unwrap();
        assert!(matches!(msg, FromInit::Spawned { id: 7, pid: 42 }));
        assert_eq!(fds.len(), 1);
        drop(a);
        assert!(recv::<FromInit>(&b).unwrap().is_none());
    }
}
