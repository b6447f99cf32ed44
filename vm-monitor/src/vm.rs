//! One VM's life: booting it (before any thread exists), running it (in the
//! async runtime) and tearing it down.
//!
//! What is left if the monitor is SIGKILLed, and who removes it:
//! - guest processes: the init has PR_SET_PDEATHSIG(SIGKILL) and also exits
//!   on EOF of its channel; when PID 1 of a PID namespace dies the kernel
//!   kills the rest;
//! - network namespace and TAPs: referenced only by the guest's processes
//!   and the monitor's fds, so they vanish with both;
//! - mounts: they live in the VM's mount namespace, which vanishes with
//!   its last process;
//! - the cgroup directories, socket files, staging directory and lock file:
//!   a reaper process, forked at boot before anything else exists, waits
//!   for EOF on a pipe that only the monitor holds; then it waits for the
//!   cgroup to empty and removes them all. It holds the VM's lock while it
//!   works, so a new VM of the same name waits for a clean slate. A spec
//!   may go without (`reaper = false`) when something else calls [`reap`]
//!   once the monitor is gone, as the orchestrator does for its labs.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use tokio::sync::{broadcast, watch};
use vbet_proto::vbet::vm::v1 as pb;

use crate::cgroup::{Cgroup, CgroupError, Hierarchy};
use crate::exec::Processes;
use crate::nic::{self, NicState};
use crate::spec::{SpecError, VmSpec, Wiring};
use crate::sys;

/// A failed boot or teardown.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A VM of that lab and name exists.
    #[error("VM {name} of lab {lab} is already running (lock {lock})")]
    NameClash {
        /// VM name.
        name: String,
        /// Lab.
        lab: String,
        /// The held lock file.
        lock: PathBuf,
    },
    /// The cgroup failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A NIC failed.
    #[error(transparent)]
    Nic(#[from] nic::NicError),
    /// The guest init reported a failure.
    #[error("building the VM failed in the guest: {0}")]
    Guest(String),
    /// Host I/O failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Teardown left things behind.
    #[error("teardown left things behind: {}", .0.join("; "))]
    Teardown(Vec<String>),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

/// A VM whose guest init runs (created before the async runtime).
pub struct Booted {
    spec: VmSpec,
    cgroup: Cgroup,
    init_pid: libc::pid_t,
    channel: OwnedFd,
    lock: Flock<File>,
    reaper: Option<Reaper>,
    started: Instant,
}

impl std::fmt::Debug for Booted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Booted")
            .field("name", &self.spec.name)
            .field("init_pid", &self.init_pid)
            .finish()
    }
}

/// Paths the VM creates on the host (removed at teardown or by the reaper).
fn host_paths(spec: &VmSpec) -> Vec<PathBuf> {
    let mut paths = vec![spec.api_socket(), spec.staging_dir()];
    for n in &spec.nics {
        if let Wiring::Wire { local, .. } = &n.wiring {
            paths.push(local.clone());
        }
    }
    paths
}

fn remove_path(path: &std::path::Path) -> Result<(), std::io::Error> {
    let r = if path.is_dir() {
        std::fs::remove_dir(path)
    } else {
        std::fs::remove_file(path)
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn try_lock(path: &std::path::Path) -> Result<Option<Flock<File>>, VmError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(format!("opening lock {}", path.display())))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(VmError::Io {
            what: format!("locking {}", path.display()),
            source: e.into(),
        }),
    }
}

/// Boots the VM: validates, takes the name, creates the cgroup, forks the
/// reaper and the guest init in new namespaces. Must run before any other
/// thread exists (no async runtime yet).
pub fn boot(spec: VmSpec) -> Result<Booted, VmError> {
    spec.validate()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(VmError::Io {
            what: "vm-monitor needs root (namespaces, cgroups, TAP devices)".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        });
    }
    let lower = spec.image_dir()?;
    let clash = || name_clash(&spec);
    let cgroup = cgroup_of(&spec)?;
    // Checks before creating anything: a held lock or a busy cgroup.
    if spec.lock_path().exists() {
        let held = std::fs::OpenOptions::new()
            .write(true)
            .open(spec.lock_path())
            .ok()
            .map(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err())
            .unwrap_or(false);
        if held {
            return Err(clash());
        }
    }
    if cgroup.in_use() {
        return Err(clash());
    }

    let run_dir = spec.run_dir();
    std::fs::create_dir_all(&run_dir)
        .map_err(io_err(format!("creating run dir {}", run_dir.display())))?;
    let lock = try_lock(&spec.lock_path())?.ok_or_else(clash)?;
    // From here on, everything made is undone on failure.
    let undo = |cgroup: &Cgroup, spec: &VmSpec| {
        let _ = cgroup.remove(Duration::from_secs(2));
        for p in host_paths(spec) {
            let _ = remove_path(&p);
        }
        let _ = std::fs::remove_file(spec.lock_path());
    };
    let result = (|| {
        cgroup.create(&spec.resources)?;
        std::fs::create_dir_all(spec.staging_dir())
            .map_err(io_err(format!("creating {}", spec.staging_dir().display())))?;
        // The reaper and the init share the monitor's pages until they
        // write them: give back what the monitor freed first.
        sys::release_free_heap();
        let reaper = if spec.reaper {
            Some(fork_reaper(&spec, &cgroup)?)
        } else {
            None
        };
        let (channel, guest_end) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| VmError::Io {
            what: "control socketpair".into(),
            source: e.into(),
        })?;
        let setup = crate::init::GuestSetup {
            channel: guest_end,
            hostname: spec.hostname().to_owned(),
            cgroup_procs: cgroup.procs_files(),
            steps: crate::rootfs::plan(&spec, &lower),
            faults: spec.faults,
            clock: spec.clock,
        };
        let flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET;
        match sys::fork_into_namespaces(flags).map_err(io_err("forking the guest init"))? {
            sys::Forked::Child => {
                drop(channel);
                drop(reaper);
                crate::init::guest_main(setup)
            }
            sys::Forked::Parent(pid) => {
                drop(setup);
                Ok((pid, channel, reaper))
            }
        }
    })();
    match result {
        Ok((init_pid, channel, reaper)) => Ok(Booted {
            spec,
            cgroup,
            init_pid,
            channel,
            lock,
            reaper,
            started: Instant::now(),
        }),
        Err(e) => {
            undo(&cgroup, &spec);
            drop(lock);
            Err(e)
        }
    }
}

/// The reaper process, seen from the monitor.
#[derive(Debug)]
pub struct Reaper {
    pid: libc::pid_t,
    pipe: OwnedFd,
}

impl Reaper {
    /// Tells the reaper the teardown is complete and waits for it to exit:
    /// it removes nothing (a new VM of the same name may already be
    /// creating those paths).
    fn dismiss(self) {
        let _ = nix::unistd::write(&self.pipe, b"c");
        drop(self.pipe);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
    }
}

/// Forks the reaper: it cleans up after the monitor unless dismissed.
fn fork_reaper(spec: &VmSpec, cgroup: &Cgroup) -> Result<Reaper, VmError> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| VmError::Io {
            what: "reaper pipe".into(),
            source: e.into(),
        })?;
    match sys::fork().map_err(io_err("forking the reaper"))? {
        sys::Forked::Child => {
            drop(write);
            let _ = nix::unistd::setsid();
            let _ = nix::sys::prctl::set_name(c"vbet-reaper");
            // Block until every copy of the write end is closed (the
            // monitor exited, however) or the monitor dismisses us.
            let mut byte = [0u8; 1];
            loop {
                match nix::unistd::read(&read, &mut byte) {
                    Ok(1) if byte[0] == b'c' => sys::exit_now(0),
                    Ok(1) | Err(nix::errno::Errno::EINTR) => continue,
                    _ => break,
                }
            }
            let _ = remove_remains(spec, cgroup, REAP_WAIT);
            sys::exit_now(0)
        }
        sys::Forked::Parent(pid) => {
            drop(read);
            Ok(Reaper { pid, pipe: write })
        }
    }
}

/// The error for a VM whose name is taken by a running one.
fn name_clash(spec: &VmSpec) -> VmError {
    VmError::NameClash {
        name: spec.name.clone(),
        lab: spec.lab.clone(),
        lock: spec.lock_path(),
    }
}

/// The VM's cgroup, on whichever hierarchy the host has.
fn cgroup_of(spec: &VmSpec) -> Result<Cgroup, VmError> {
    Ok(Cgroup::new(
        Hierarchy::detect(std::path::Path::new("/sys/fs/cgroup"))?,
        &spec.cgroup_name(),
    ))
}

/// How long a reaper waits for a dead VM's processes to leave its cgroup.
const REAP_WAIT: Duration = Duration::from_secs(10);

/// Does a reaper's work for a VM whose monitor is gone (spec `reaper =
/// false`): waits for its processes to end (their init dies with the
/// monitor, and the rest with the init), then removes its cgroups, sockets,
/// staging dir and lock file. Fails with what could not be removed, or
/// with a name clash when the VM still runs (its lock is held).
pub fn reap(spec: &VmSpec) -> Result<(), VmError> {
    if !spec.lock_path().exists() {
        return Ok(());
    }
    // Held while we work, as a reaper holds it: a VM of that name waits.
    let Some(_lock) = try_lock(&spec.lock_path())? else {
        return Err(name_clash(spec));
    };
    let cgroup = cgroup_of(spec)?;
    let errors = remove_remains(spec, &cgroup, REAP_WAIT);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(VmError::Teardown(errors))
    }
}

/// Removes the cgroup (once empty, waiting at most `wait`), the host paths
/// and the lock file of a VM that has ended; returns the failures.
fn remove_remains(spec: &VmSpec, cgroup: &Cgroup, wait: Duration) -> Vec<String> {
    let mut errors: Vec<String> = cgroup
        .remove(wait)
        .into_iter()
        .map(|e| e.to_string())
        .collect();
    for p in host_paths(spec) {
        if let Err(e) = remove_path(&p) {
            errors.push(format!("removing {}: {e}", p.display()));
        }
    }
    if let Err(e) = remove_path(&spec.lock_path()) {
        errors.push(format!("removing {}: {e}", spec.lock_path().display()));
    }
    errors
}

/// Removes what dead VMs of `lab` left behind when even their reaper was
/// killed: empty cgroups `vbet/LAB.*`, and in `run_dir` the lock, API
/// socket and staging directory of every VM whose lock nobody holds.
/// Returns what it removed; running VMs are untouched.
pub fn clean_stale(lab: &str, run_dir: &std::path::Path) -> Result<Vec<PathBuf>, VmError> {
    let mut removed = Vec::new();
    let hierarchy = Hierarchy::detect(std::path::Path::new("/sys/fs/cgroup"))?;
    let prefix = format!("{lab}.");
    let mut names = std::collections::BTreeSet::new();
    for dir in Cgroup::new(hierarchy.clone(), "x").dirs() {
        let Some(parent) = dir.parent() else { continue };
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(vm) = name.strip_prefix(&prefix) {
                if entry.path().is_dir() {
                    names.insert(vm.to_owned());
                }
            }
        }
    }
    for vm in names {
        let cgroup = Cgroup::new(hierarchy.clone(), &format!("{lab}.{vm}"));
        if !cgroup.in_use() && cgroup.remove(Duration::from_secs(1)).is_empty() {
            removed.push(cgroup.dirs()[0].clone());
        }
    }
    for entry in std::fs::read_dir(run_dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Some(vm) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".lock"))
            .map(str::to_owned)
        else {
            continue;
        };
        // Held: a monitor (or its reaper) is alive.
        let Some(lock) = try_lock(&path)? else {
            continue;
        };
        for p in [
            run_dir.join(format!("{vm}.sock")),
            run_dir.join(format!("{vm}.root")),
            path.clone(),
        ] {
            if p.exists() && remove_path(&p).is_ok() {
                removed.push(p);
            }
        }
        drop(lock);
    }
    Ok(removed)
}

/// What the API sees of a running VM.
pub struct Vm {
    /// The spec.
    pub spec: VmSpec,
    /// The cgroup.
    pub cgroup: Cgroup,
    /// Host PID of the guest init.
    pub init_pid: u32,
    /// When the boot started.
    pub started: Instant,
    /// Processes (the init's channel).
    pub procs: Processes,
    /// NICs.
    pub nics: Vec<Arc<NicState>>,
    /// State changes.
    pub state: watch::Sender<pb::VmState>,
    /// Events.
    pub events: broadcast::Sender<pb::Event>,
    /// Set by the Shutdown RPC: (grace).
    pub shutdown: watch::Sender<Option<Duration>>,
    /// Syscall fault rules.
    pub faults: crate::fault::SharedRules,
    /// The ptrace supervisor of every guest process.
    pub tracer: Arc<crate::tracer::Tracer>,
    lock: Mutex<Option<Flock<File>>>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("name", &self.spec.name).finish()
    }
}

impl Vm {
    /// Records a state change and tells the event stream.
    pub fn set_state(&self, state: pb::VmState) {
        self.state.send_replace(state);
        let _ = self.events.send(pb::Event {
            time_ms: crate::exec::now_ms(),
            kind: Some(pb::event::Kind::State(state as i32)),
        });
    }
}

/// How a VM's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Stopped on request (SIGTERM, Shutdown).
    Stopped,
    /// The guest powered off or halted (`reboot(2)`: the power button).
    PoweredOff,
    /// The guest rebooted (`reboot(2)` restart).
    Rebooted,
    /// The guest init ended by itself (killed, crashed).
    GuestExited,
}

fn finish(reaper: Option<Reaper>, errors: Vec<String>) -> Result<(), VmError> {
    if errors.is_empty() {
        if let Some(reaper) = reaper {
            reaper.dismiss();
        }
        Ok(())
    } else {
        // The reaper tries once more when we exit.
        drop(reaper);
        Err(VmError::Teardown(errors))
    }
}

/// Runs a booted VM until `stop` resolves, a Shutdown request, or the
/// guest's end; then tears it down. `ready` is called once the VM is ready.
pub async fn run(
    booted: Booted,
    stop: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(&Vm),
) -> Result<Ended, VmError> {
    let Booted {
        spec,
        cgroup,
        init_pid,
        channel,
        lock,
        reaper,
        started,
    } = booted;
    let (events, _) = broadcast::channel(256);
    // The tracer thread is the only waiter for the init and its
    // descendants; it learns of their stops through SIGCHLD, blocked here
    // (before any thread exists) so that every thread inherits the mask.
    sys::block_sigchld(true).map_err(io_err("blocking SIGCHLD"))?;
    let clock = spec.clock.is_virtual().then(|| {
        crate::clock::VirtualClock::new(
            crate::clock::HostNow::read(),
            spec.clock.realtime,
            spec.clock.monotonic,
            spec.clock.boottime,
            spec.clock.rate,
        )
    });
    let tracer = Arc::new(
        crate::tracer::Tracer::start(
            crate::tracer::TracerSetup {
                init_pid,
                vm: spec.name.clone(),
                clock,
            },
            events.clone(),
        )
        .map_err(io_err("starting the tracer thread"))?,
    );
    let init_exit = tracer.exit();
    let init_ended = |mut rx: watch::Receiver<Option<i32>>| async move {
        rx.wait_for(|s| s.is_some())
            .await
            .ok()
            .and_then(|s| *s)
            .unwrap_or(0)
    };
    let rules: crate::fault::SharedRules =
        Arc::new(Mutex::new(crate::fault::Rules::new(spec.faults)));
    let (setup_tx, mut setup_rx) = tokio::sync::oneshot::channel();
    let procs =
        Processes::start(channel, setup_tx, events.clone()).map_err(io_err("init channel"))?;

    let api_socket = spec.api_socket();
    let mut cleanup = Cleanup {
        spec: spec.clone(),
        cgroup: cgroup.clone(),
        init_pid,
        exit: init_exit.clone(),
        tracer: tracer.clone(),
    };
    let booting = async {
        let netns = match File::open(format!("/proc/{init_pid}/ns/net")) {
            Ok(f) => f,
            Err(e) => {
                // The init may already have died of a failed setup: its
                // reason is the one to give.
                if let Ok(Ok(Err(reason))) =
                    tokio::time::timeout(Duration::from_secs(5), &mut setup_rx).await
                {
                    return Err(VmError::Guest(reason));
                }
                return Err(io_err("opening the guest's network namespace")(e));
            }
        };
        let nics_plan = nic::plan(&spec);
        let routes = spec.routes.clone();
        let sysctls: Vec<_> = spec.sysctls.clone().into_iter().collect();
        let taps = tokio::task::spawn_blocking(move || {
            nic::create(OwnedFd::from(netns), nics_plan, routes, sysctls)
        })
        .await
        .map_err(|e| VmError::Io {
            what: "NIC setup".into(),
            source: std::io::Error::other(e),
        })??;
        let mut nics = Vec::new();
        for tap in taps {
            nics.push(nic::start(tap, events.clone()).await?);
        }
        match tokio::time::timeout(Duration::from_secs(60), &mut setup_rx).await {
            Ok(Ok(Ok(listener))) => match (listener, spec.faults) {
                (Some(l), true) => {
                    crate::fault::supervise(l, rules.clone(), init_pid as u32)
                        .map_err(io_err("starting the fault supervisor"))?;
                }
                (None, true) => {
                    return Err(VmError::Guest(
                        "the guest init sent no fault listener".into(),
                    ));
                }
                (_, false) => {}
            },
            Ok(Ok(Err(e))) => return Err(VmError::Guest(e)),
            Ok(Err(_)) => return Err(VmError::Guest("the guest init exited during setup".into())),
            Err(_) => return Err(VmError::Guest("setup timed out".into())),
        }
        // The guest has pivoted away from the staging directory.
        let _ = std::fs::remove_dir(spec.staging_dir());
        Ok::<_, VmError>(nics)
    };
    let nics = match booting.await {
        Ok(n) => n,
        Err(e) => {
            let errors = cleanup.kill_and_remove().await;
            drop(lock);
            let _ = finish(reaper, errors);
            return Err(e);
        }
    };
    let (state, _) = watch::channel(pb::VmState::Booting);
    let (shutdown, mut shutdown_rx) = watch::channel(None);
    let vm = Arc::new(Vm {
        spec: spec.clone(),
        cgroup: cgroup.clone(),
        init_pid: init_pid as u32,
        started,
        procs: procs.clone(),
        nics,
        state,
        events: events.clone(),
        shutdown,
        faults: rules,
        tracer: tracer.clone(),
        lock: Mutex::new(Some(lock)),
    });
    let (server_stop_tx, server_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = match crate::api::serve(vm.clone(), &api_socket, async {
        let _ = server_stop_rx.await;
    }) {
        Ok(s) => tokio::spawn(s),
        Err(e) => {
            let errors = cleanup.kill_and_remove().await;
            drop(vm.lock.lock().expect("not poisoned").take());
            let _ = finish(reaper, errors);
            return Err(e);
        }
    };
    for line in &spec.commands {
        if let Err(e) = crate::exec::start_command(&procs, line).await {
            tracing::warn!(command = %line, "start command failed: {e}");
        }
    }
    vm.set_state(pb::VmState::Running);
    let watchdog = (spec.watchdog.interval > 0.0).then(|| {
        tokio::spawn(watchdog(
            vm.clone(),
            Duration::from_secs_f64(spec.watchdog.interval),
            Duration::from_secs_f64(spec.watchdog.timeout),
            spec.watchdog.health.clone(),
        ))
    });
    ready(&vm);
    tracing::info!(vm = %spec.name, lab = %spec.lab, init_pid, "ready");

    let grace = tokio::select! {
        _ = stop => Some(Duration::from_secs(5)),
        g = shutdown_rx.wait_for(|s| s.is_some()) => g.ok().and_then(|g| *g),
        _ = init_ended(init_exit.clone()) => None,
    };
    if let Some(w) = watchdog {
        w.abort();
    }
    vm.set_state(pb::VmState::Stopping);
    if let Some(grace) = grace {
        tracing::info!(vm = %spec.name, "shutting down");
        let _ = procs.shutdown(grace).await;
        let waited = tokio::time::timeout(
            grace + Duration::from_secs(1),
            init_ended(init_exit.clone()),
        )
        .await;
        if waited.is_err() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(init_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    // The init's status (from the tracer, its only waiter) tells a power
    // button from a crash: the kernel ends a PID namespace whose process
    // called reboot(2) as if by SIGHUP (restart) or SIGINT (halt, power
    // off).
    let raw = init_ended(init_exit.clone()).await;
    let status = nix::sys::wait::WaitStatus::from_raw(nix::unistd::Pid::from_raw(init_pid), raw);
    let ended = match (grace, status) {
        (Some(_), _) => Ended::Stopped,
        (
            None,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGHUP, _)),
        ) => {
            tracing::info!(vm = %spec.name, "the guest rebooted");
            Ended::Rebooted
        }
        (
            None,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGINT, _)),
        ) => {
            tracing::info!(vm = %spec.name, "the guest powered off");
            Ended::PoweredOff
        }
        (None, other) => {
            tracing::warn!(vm = %spec.name, "the guest init ended: {other:?}");
            Ended::GuestExited
        }
    };
    vm.set_state(pb::VmState::Stopped);
    let _ = server_stop_tx.send(());
    // Clients get a moment to see the end; a stuck one does not hold the
    // teardown.
    let abort = server.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .is_err()
    {
        abort.abort();
    }
    let errors = cleanup.kill_and_remove().await;
    drop(vm.lock.lock().expect("not poisoned").take());
    finish(reaper, errors)?;
    Ok(ended)
}

/// Pings the guest init every `interval`, then runs the `health`
/// command if there is one; kills a hung init (no answer within
/// `timeout`, not frozen) or that of an unhealthy VM (three failed health
/// checks in a row), which ends the VM's run.
async fn watchdog(vm: Arc<Vm>, interval: Duration, timeout: Duration, health: Option<String>) {
    /// Failed health checks in a row that make a VM unhealthy.
    const UNHEALTHY_AFTER: u32 = 3;
    let mut failures = 0;
    loop {
        tokio::time::sleep(interval).await;
        let mut state = vm.state.subscribe();
        if *state.borrow_and_update() != pb::VmState::Running {
            continue;
        }
        let answered = vm.procs.ping(timeout).await;
        let healthy = match &health {
            Some(line) if answered => crate::exec::check_command(&vm.procs, line, timeout).await,
            _ => true,
        };
        // Frozen (or thawed, or stopping) meanwhile: not hung, not ill.
        if state.has_changed().unwrap_or(true) {
            failures = 0;
            continue;
        }
        if !answered {
            tracing::error!(vm = %vm.spec.name, ?timeout, "watchdog: the guest init is hung; killing it");
        } else if healthy {
            failures = 0;
            continue;
        } else {
            failures += 1;
            tracing::warn!(vm = %vm.spec.name, failures, "watchdog: the health command failed");
            if failures < UNHEALTHY_AFTER {
                continue;
            }
            tracing::error!(vm = %vm.spec.name, "watchdog: the VM is unhealthy; killing its init");
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(vm.init_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        return;
    }
}

struct Cleanup {
    spec: VmSpec,
    cgroup: Cgroup,
    init_pid: libc::pid_t,
    /// The init's wait status, from the tracer (set: its PID may belong to
    /// another process now).
    exit: watch::Receiver<Option<i32>>,
    tracer: Arc<crate::tracer::Tracer>,
}

impl Cleanup {
    /// Kills the guest (if alive), then removes everything on the host;
    /// keeps going past failures and returns them all.
    async fn kill_and_remove(&mut self) -> Vec<String> {
        if self.exit.borrow().is_none() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.init_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ =
                tokio::time::timeout(Duration::from_secs(10), self.exit.wait_for(|s| s.is_some()))
                    .await;
        }
        // The tracer ends once every tracee is gone (they die with the
        // init's PID namespace); nothing is left in a ptrace stop.
        let tracer = self.tracer.clone();
        let joined = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || tracer.join()),
        )
        .await;
        let mut errors = Vec::new();
        if joined.is_err() {
            errors.push("the tracer thread did not end: guest processes remain".to_owned());
        }
        let cgroup = self.cgroup.clone();
        errors.extend(
            tokio::task::spawn_blocking(move || cgroup.remove(Duration::from_secs(5)))
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|e| crate::error_chain(&e)),
        );
        for p in host_paths(&self.spec) {
            if let Err(e) = remove_path(&p) {
                errors.push(format!("removing {}: {e}", p.display()));
            }
        }
        if let Err(e) = remove_path(&self.spec.lock_path()) {
            errors.push(format!("removing {}: {e}", self.spec.lock_path().display()));
        }
        errors
    }
}
