//! ptrace supervision of the guest: one dedicated thread of the monitor
//! seizes the guest init and, through PTRACE_O_TRACEFORK/VFORK/CLONE, every
//! process and thread of the VM. It is the only waiter for all of them
//! (`waitpid(-1, __WALL | __WNOTHREAD)`: a thread of the same process that
//! waited for the init could steal its ptrace stops), and hands the init's
//! exit status to the rest of the monitor.
//!
//! What stops, and what it costs:
//! - always: fork, vfork, clone, exec, exit, signal delivery, group stops
//!   (the process tree, crash reports with the fault address);
//! - tracing on (`TraceOn`): every syscall entry and exit (PTRACE_SYSCALL),
//!   streamed as [`pb::TraceEvent`]s through a bounded broadcast;
//! - a VM with a virtual clock: its clock syscalls, sent to the tracer by a
//!   seccomp filter (`SECCOMP_RET_TRACE`, [`crate::seccomp::clock_filter`])
//!   and emulated in that one stop; and at each exec the new image's
//!   `AT_SYSINFO_EHDR` is zeroed so that libc makes real syscalls instead
//!   of reading the vDSO.
//!
//! Everything else runs at native speed. The thread talks to the async
//! runtime through a command channel and an eventfd; it sleeps in `poll`
//! on that eventfd and a signalfd for SIGCHLD (blocked in every thread of
//! the monitor, see [`crate::sys::block_sigchld`]) — or, while tracing,
//! directly in `waitpid`, as strace does (stops come at every syscall then,
//! and a command is seen at the next one). It never leaves a tracee
//! stopped: a stop is a `Stopped` value that resuming consumes and that
//! resumes the tracee if dropped (group stops get PTRACE_LISTEN), tracees
//! are seized with PTRACE_O_EXITKILL, and the thread runs until the last
//! tracee is gone.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{broadcast, watch};
use vbet_proto::vbet::vm::v1 as pb;

use crate::clock::{Family, HostNow, VirtualClock};
use crate::sys;

/// Signals whose deaths are crashes.
const CRASH_SIGNALS: [i32; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// Whether dying of `signal` is a crash.
pub fn is_crash_signal(signal: i32) -> bool {
    CRASH_SIGNALS.contains(&signal)
}

/// How many trace events a stream may lag before it loses some.
const TRACE_BUFFER: usize = 4096;

/// A process of the VM, as the tracer knows it.
#[derive(Debug, Clone, Default)]
struct ProcInfo {
    guest_pid: u32,
    host_ppid: i32,
    comm: String,
    cmdline: String,
}

impl ProcInfo {
    fn argv0(&self) -> String {
        self.cmdline
            .split(' ')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.comm)
            .to_owned()
    }
}

/// State shared between the tracer thread and the API.
#[derive(Debug)]
struct Shared {
    vm: String,
    procs: Mutex<BTreeMap<i32, ProcInfo>>,
    tracing: AtomicBool,
    trace: vbet_port::fanout::Fanout<pb::TraceEvent>,
    traced: AtomicU64,
    dropped: AtomicU64,
    clock: Option<Mutex<VirtualClock>>,
}

enum Cmd {
    Trace(bool),
}

/// The monitor's handle on the tracer thread.
#[derive(Debug)]
pub struct Tracer {
    shared: Arc<Shared>,
    cmds: std::sync::mpsc::Sender<Cmd>,
    wake: Arc<nix::sys::eventfd::EventFd>,
    exit: watch::Receiver<Option<i32>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Trace(on) => write!(f, "Trace({on})"),
        }
    }
}

/// What the tracer needs to know about the VM.
#[derive(Debug, Clone)]
pub struct TracerSetup {
    /// Host PID of the guest init (a child of the calling process).
    pub init_pid: i32,
    /// The VM's name (in events).
    pub vm: String,
    /// The virtual clock, if the VM has one.
    pub clock: Option<VirtualClock>,
}

impl Tracer {
    /// Starts the tracer thread and waits until it has seized the init
    /// (before the init starts any process). SIGCHLD must be blocked in
    /// every thread ([`sys::block_sigchld`] before any thread exists).
    /// When the init cannot be seized (it died already), the thread
    /// only waits for it.
    pub fn start(
        setup: TracerSetup,
        events: broadcast::Sender<pb::Event>,
    ) -> std::io::Result<Tracer> {
        let shared = Arc::new(Shared {
            vm: setup.vm.clone(),
            procs: Mutex::new(BTreeMap::new()),
            tracing: AtomicBool::new(false),
            trace: vbet_port::fanout::Fanout::new(TRACE_BUFFER),
            traced: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            clock: setup.clock.clone().map(Mutex::new),
        });
        let wake = Arc::new(
            nix::sys::eventfd::EventFd::from_flags(
                nix::sys::eventfd::EfdFlags::EFD_CLOEXEC
                    | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
            )
            .map_err(std::io::Error::from)?,
        );
        let (cmds, cmd_rx) = std::sync::mpsc::channel();
        let (exit_tx, exit) = watch::channel(None);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vbet-tracer".into())
            .spawn({
                let shared = shared.clone();
                let wake = wake.clone();
                move || {
                    let mut t = Thread {
                        shared,
                        events,
                        exit: exit_tx,
                        init: setup.init_pid,
                        init_exited: false,
                        tracees: HashMap::new(),
                        crashes: HashMap::new(),
                        tracing: false,
                    };
                    t.run(cmd_rx, &wake, ready_tx)
                }
            })?;
        let _ = ready_rx.recv();
        Ok(Tracer {
            shared,
            cmds,
            wake,
            exit,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The init's raw wait status, once it has ended.
    pub fn exit(&self) -> watch::Receiver<Option<i32>> {
        self.exit.clone()
    }

    /// Waits (blocking) for the thread's end: every tracee is gone.
    pub fn join(&self) {
        if let Some(t) = self.thread.lock().expect("not poisoned").take() {
            let _ = t.join();
        }
    }

    fn send(&self, cmd: Cmd) {
        if self.cmds.send(cmd).is_ok() {
            let _ = self.wake.write(1);
        }
    }

    /// Turns syscall tracing on or off.
    pub fn set_tracing(&self, on: bool) {
        self.shared.tracing.store(on, Ordering::SeqCst);
        self.send(Cmd::Trace(on));
    }

    /// Tracing state and counters.
    pub fn trace_state(&self) -> pb::TraceState {
        pb::TraceState {
            on: self.shared.tracing.load(Ordering::SeqCst),
            events: self.shared.traced.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }

    /// Whether tracing is on.
    pub fn tracing(&self) -> bool {
        self.shared.tracing.load(Ordering::SeqCst)
    }

    /// A new subscriber to the trace events.
    pub fn subscribe(&self) -> broadcast::Receiver<pb::TraceEvent> {
        self.shared.trace.subscribe()
    }

    /// Counts events a slow stream lost.
    pub fn count_dropped(&self, n: u64) {
        self.shared.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// The processes of the VM, by guest PID, with their parents as they
    /// are now.
    pub fn processes(&self) -> Vec<pb::Process> {
        let procs = self.shared.procs.lock().expect("not poisoned").clone();
        let guest_of: HashMap<i32, u32> = procs.iter().map(|(h, p)| (*h, p.guest_pid)).collect();
        let mut list: Vec<pb::Process> = procs
            .iter()
            .map(|(host, p)| {
                let ppid = read_status(*host).map(|s| s.ppid).unwrap_or(p.host_ppid);
                pb::Process {
                    pid: p.guest_pid,
                    host_pid: *host as u32,
                    ppid: guest_of.get(&ppid).copied().unwrap_or(0),
                    command: if p.cmdline.is_empty() {
                        p.comm.clone()
                    } else {
                        p.cmdline.clone()
                    },
                }
            })
            .collect();
        list.sort_by_key(|p| p.pid);
        list
    }

    /// The virtual clock's state (`enabled` false without one).
    pub fn clock_state(&self) -> pb::ClockState {
        let now = HostNow::read();
        let Some(clock) = &self.shared.clock else {
            return pb::ClockState {
                enabled: false,
                realtime_offset: 0.0,
                rate: 1.0,
                guest_realtime: now.realtime as f64 / 1e9,
                host_realtime: now.realtime as f64 / 1e9,
            };
        };
        let clock = clock.lock().expect("not poisoned");
        let guest = clock.read(Family::Realtime, now);
        pb::ClockState {
            enabled: true,
            realtime_offset: (guest - now.realtime) as f64 / 1e9,
            rate: clock.rate(),
            guest_realtime: guest as f64 / 1e9,
            host_realtime: now.realtime as f64 / 1e9,
        }
    }

    /// Changes the virtual clock; None when the VM has none.
    pub fn set_clock(
        &self,
        offset: Option<f64>,
        rate: Option<f64>,
    ) -> Option<Result<pb::ClockState, crate::clock::ClockError>> {
        let clock = self.shared.clock.as_ref()?;
        let r = clock
            .lock()
            .expect("not poisoned")
            .set(HostNow::read(), offset, rate);
        Some(r.map(|()| self.clock_state()))
    }
}

/// What /proc/TID/status says of a task.
#[derive(Debug, Default)]
struct TaskStatus {
    tgid: i32,
    ppid: i32,
    guest_tid: u32,
    name: String,
}

fn read_status(tid: i32) -> Option<TaskStatus> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let mut s = TaskStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Name" => s.name = value.to_owned(),
            "Tgid" => s.tgid = value.parse().ok()?,
            "PPid" => s.ppid = value.parse().ok()?,
            // The innermost namespace's ID is the last.
            "NSpid" => s.guest_tid = value.split_whitespace().last()?.parse().ok()?,
            _ => {}
        }
    }
    Some(s)
}

fn read_cmdline(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut text: String = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if text.len() > 256 {
        let mut cut = 256;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// One traced thread.
#[derive(Debug)]
struct Tracee {
    tgid: i32,
    guest_tid: u32,
    /// The syscall it is in, when tracing caught its entry.
    entry: Option<Entry>,
}

#[derive(Debug)]
struct Entry {
    nr: u64,
    args: String,
    at: Instant,
}

/// A tracee in a ptrace stop (the typestate): ptrace's queries and
/// register operations exist only on it, and resuming (or listening)
/// consumes it. Dropping one unresumed resumes it, so no path of the
/// tracer can leave a tracee stopped.
struct Stopped {
    pid: i32,
    /// Resume with PTRACE_SYSCALL (tracing) rather than PTRACE_CONT.
    syscalls: bool,
    resumed: bool,
}

impl Stopped {
    /// PTRACE_GETEVENTMSG.
    fn event_msg(&self) -> std::io::Result<u64> {
        sys::ptrace_event_msg(self.pid)
    }

    /// The signal of a signal-delivery stop: (number, si_code, si_addr).
    fn siginfo(&self) -> std::io::Result<(i32, i32, u64)> {
        sys::ptrace_siginfo(self.pid)
    }

    /// The syscall of a syscall or seccomp stop.
    fn syscall_info(&self) -> std::io::Result<sys::SyscallStop> {
        sys::ptrace_syscall_info(self.pid)
    }

    #[cfg(target_arch = "x86_64")]
    fn regs(&self) -> std::io::Result<libc::user_regs_struct> {
        sys::ptrace_getregs(self.pid)
    }

    #[cfg(target_arch = "x86_64")]
    fn set_regs(&self, regs: &libc::user_regs_struct) -> std::io::Result<()> {
        sys::ptrace_setregs(self.pid, regs)
    }

    /// Resumes it, delivering `signal` (0: none).
    fn resume(mut self, signal: i32) {
        self.resumed = true;
        let _ = sys::ptrace_resume(self.pid, signal, self.syscalls);
    }

    /// Leaves it in its group stop, reporting the next event (PTRACE_LISTEN).
    fn listen(mut self) {
        self.resumed = true;
        let _ = sys::ptrace_listen(self.pid);
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.resumed {
            let _ = sys::ptrace_resume(self.pid, 0, self.syscalls);
        }
    }
}

/// The tracer thread's state.
struct Thread {
    shared: Arc<Shared>,
    events: broadcast::Sender<pb::Event>,
    exit: watch::Sender<Option<i32>>,
    init: i32,
    init_exited: bool,
    tracees: HashMap<i32, Tracee>,
    /// Crash signals seen at signal-delivery stops, by thread group:
    /// (signal, si_code, si_addr).
    crashes: HashMap<i32, (i32, i32, u64)>,
    tracing: bool,
}

const OPTIONS: libc::c_int = libc::PTRACE_O_TRACESYSGOOD
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACEEXIT
    | libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_EXITKILL;

impl Thread {
    fn run(
        &mut self,
        cmds: std::sync::mpsc::Receiver<Cmd>,
        wake: &nix::sys::eventfd::EventFd,
        ready: std::sync::mpsc::Sender<()>,
    ) {
        let _ = sys::block_sigchld(true);
        let mut mask = nix::sys::signal::SigSet::empty();
        mask.add(nix::sys::signal::Signal::SIGCHLD);
        let sigfd = nix::sys::signalfd::SignalFd::with_flags(
            &mask,
            nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
        );
        let sigfd = match sigfd {
            Ok(fd) => sys::ptrace_seize(self.init, OPTIONS).map(|()| fd),
            Err(e) => Err(e.into()),
        };
        let sigfd = match sigfd {
            Ok(fd) => fd,
            Err(e) => {
                // The init died already (a failed setup): be its waiter.
                tracing::warn!("cannot trace the guest init: {e}; only waiting for it");
                let _ = ready.send(());
                let status = sys::wait_pid(self.init).unwrap_or(0);
                self.exit.send_replace(Some(status));
                return;
            }
        };
        self.register(self.init, None);
        // Seized before it names itself (it is a fork of the monitor).
        if let Some(p) = self
            .shared
            .procs
            .lock()
            .expect("not poisoned")
            .get_mut(&self.init)
        {
            "vbet-init".clone_into(&mut p.comm);
        }
        let _ = ready.send(());
        loop {
            while let Ok(cmd) = cmds.try_recv() {
                match cmd {
                    Cmd::Trace(on) => self.set_tracing(on),
                }
            }
            // While tracing, stops come at every syscall: wait for them
            // directly, as strace does (a command is seen at the next
            // stop, which is soon, or is TraceOff, which only ever acts at
            // a tracee's next stop anyway).
            if self.tracing {
                match sys::wait_tracees(true) {
                    Ok(Some((pid, status))) => self.handle(pid, status),
                    Ok(None) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(_) => {
                        if !self.init_exited {
                            self.exit.send_replace(Some(0));
                        }
                        return;
                    }
                }
                continue;
            }
            loop {
                match sys::wait_tracees(false) {
                    Ok(Some((pid, status))) => self.handle(pid, status),
                    Ok(None) => break,
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                    Err(_) => {
                        // ECHILD: no tracee left.
                        if !self.init_exited {
                            self.exit.send_replace(Some(0));
                        }
                        return;
                    }
                }
            }
            let mut fds = [
                nix::poll::PollFd::new(sigfd.as_fd(), nix::poll::PollFlags::POLLIN),
                nix::poll::PollFd::new(wake.as_fd(), nix::poll::PollFlags::POLLIN),
            ];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
            // Only what is ready: every syscall counts when tracing.
            let (signalled, woken) = (fds[0].any().unwrap_or(true), fds[1].any().unwrap_or(true));
            if signalled {
                while let Ok(Some(_)) = sigfd.read_signal() {}
            }
            if woken {
                let _ = wake.read();
            }
        }
    }

    fn set_tracing(&mut self, on: bool) {
        if self.tracing == on {
            return;
        }
        self.tracing = on;
        if on {
            // Each stops (PTRACE_EVENT_STOP) and is resumed with
            // PTRACE_SYSCALL. Off needs nothing: each tracee's next stop
            // resumes it with PTRACE_CONT.
            for tid in self.tracees.keys() {
                let _ = sys::ptrace_interrupt(*tid);
            }
        } else {
            for t in self.tracees.values_mut() {
                t.entry = None;
            }
        }
    }

    /// Records a new task (from /proc); a thread group leader is a process.
    fn register(&mut self, tid: i32, parent: Option<i32>) {
        let status = read_status(tid).unwrap_or_default();
        let tgid = if status.tgid == 0 { tid } else { status.tgid };
        self.tracees.insert(
            tid,
            Tracee {
                tgid,
                guest_tid: status.guest_tid,
                entry: None,
            },
        );
        if tgid == tid {
            let mut procs = self.shared.procs.lock().expect("not poisoned");
            let inherited = parent
                .and_then(|p| self.tracees.get(&p))
                .and_then(|p| procs.get(&p.tgid))
                .map(|p| p.cmdline.clone());
            let cmdline = inherited.unwrap_or_else(|| read_cmdline(tid));
            procs.insert(
                tid,
                ProcInfo {
                    guest_pid: status.guest_tid,
                    host_ppid: status.ppid,
                    comm: status.name,
                    cmdline,
                },
            );
        }
    }

    fn handle(&mut self, pid: i32, status: libc::c_int) {
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            self.ended(pid, status);
            return;
        }
        if !libc::WIFSTOPPED(status) {
            return;
        }
        if !self.tracees.contains_key(&pid) {
            // A new child's first stop, before its parent's fork event.
            self.register(pid, None);
        }
        let stop = Stopped {
            pid,
            syscalls: self.tracing,
            resumed: false,
        };
        let signal = libc::WSTOPSIG(status);
        let event = status >> 16;
        match event {
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                if let Ok(child) = stop.event_msg() {
                    let child = child as i32;
                    // Already known when its first stop came first (then
                    // it was read from /proc, and it may have exec'd since).
                    if !self.tracees.contains_key(&child) {
                        self.register(child, Some(pid));
                    }
                }
                stop.resume(0);
            }
            libc::PTRACE_EVENT_EXEC => {
                if let Ok(former) = stop.event_msg() {
                    let former = former as i32;
                    if former != pid {
                        self.tracees.remove(&former);
                    }
                }
                if let Some(t) = self.tracees.get_mut(&pid) {
                    t.entry = None;
                }
                let status = read_status(pid).unwrap_or_default();
                if let Some(p) = self
                    .shared
                    .procs
                    .lock()
                    .expect("not poisoned")
                    .get_mut(&pid)
                {
                    p.comm = status.name;
                    p.cmdline = read_cmdline(pid);
                }
                if self.shared.clock.is_some() {
                    if let Err(e) = hide_vdso(&stop) {
                        tracing::debug!(pid, "cannot hide the vDSO: {e}");
                    }
                }
                stop.resume(0);
            }
            libc::PTRACE_EVENT_EXIT => stop.resume(0),
            libc::PTRACE_EVENT_SECCOMP => {
                self.seccomp_stop(&stop);
                stop.resume(0);
            }
            sys::PTRACE_EVENT_STOP => {
                if signal == libc::SIGTRAP {
                    // PTRACE_INTERRUPT or a new child's first stop.
                    stop.resume(0);
                } else {
                    // A group stop (SIGSTOP, SIGTSTP…): stay stopped, as
                    // without a tracer, until SIGCONT.
                    stop.listen();
                }
            }
            0 if signal == libc::SIGTRAP | 0x80 => {
                self.syscall_stop(&stop);
                stop.resume(0);
            }
            0 => {
                // Signal-delivery stop: note crash signals (with the
                // fault address, only known here) and deliver it.
                if is_crash_signal(signal) {
                    if let Ok((_, code, addr)) = stop.siginfo() {
                        let tgid = self.tracees.get(&pid).map(|t| t.tgid).unwrap_or(pid);
                        self.crashes.insert(tgid, (signal, code, addr));
                    }
                }
                stop.resume(signal);
            }
            _ => stop.resume(0),
        }
    }

    fn ended(&mut self, pid: i32, status: libc::c_int) {
        let tracee = self.tracees.remove(&pid);
        if pid == self.init {
            self.init_exited = true;
            self.exit.send_replace(Some(status));
        }
        let Some(tracee) = tracee else { return };
        if tracee.tgid != pid {
            return;
        }
        let info = self.shared.procs.lock().expect("not poisoned").remove(&pid);
        let crash = self.crashes.remove(&pid);
        if !libc::WIFSIGNALED(status) {
            return;
        }
        let signal = libc::WTERMSIG(status);
        if !is_crash_signal(signal) {
            return;
        }
        let info = info.unwrap_or_default();
        let (code, addr) = match crash {
            Some((s, code, addr)) if s == signal => (code, if code > 0 { addr } else { 0 }),
            _ => (0, 0),
        };
        tracing::warn!(
            vm = %self.shared.vm,
            pid = info.guest_pid,
            command = %info.cmdline,
            signal,
            fault_address = format_args!("{addr:#x}"),
            "a guest process crashed"
        );
        let _ = self.events.send(pb::Event {
            time_ms: crate::exec::now_ms(),
            kind: Some(pb::event::Kind::ProcessExited(pb::ProcessExited {
                pid: info.guest_pid,
                command: info.argv0(),
                status: Some(pb::ExitStatus { code: 0, signal }),
                crashed: true,
                host_pid: pid as u32,
                fault_address: addr,
                signal_code: code,
                signal_name: signal_name(signal),
                vm: self.shared.vm.clone(),
            })),
        });
    }

    /// A syscall entry or exit while tracing.
    fn syscall_stop(&mut self, stop: &Stopped) {
        if !self.tracing {
            return;
        }
        let pid = stop.pid;
        let Ok(info) = stop.syscall_info() else {
            return;
        };
        match info {
            sys::SyscallStop::Entry { nr, args } => {
                let text = crate::syscalls::decode(pid, nr, &args);
                let exits = crate::syscalls::never_returns(nr);
                let entry = Entry {
                    nr,
                    args: text,
                    at: Instant::now(),
                };
                if exits {
                    self.emit(pid, &entry, None);
                } else if let Some(t) = self.tracees.get_mut(&pid) {
                    t.entry = Some(entry);
                }
            }
            sys::SyscallStop::Exit { rval, is_error } => {
                let entry = self.tracees.get_mut(&pid).and_then(|t| t.entry.take());
                if let Some(entry) = entry {
                    self.emit(pid, &entry, Some((rval, is_error)));
                }
            }
            _ => {}
        }
    }

    fn emit(&self, pid: i32, entry: &Entry, ret: Option<(i64, bool)>) {
        self.shared.traced.fetch_add(1, Ordering::Relaxed);
        if self.shared.trace.receiver_count() == 0 {
            return;
        }
        let (guest, tgid) = self
            .tracees
            .get(&pid)
            .map(|t| (t.guest_tid, t.tgid))
            .unwrap_or((0, pid));
        let command = self
            .shared
            .procs
            .lock()
            .expect("not poisoned")
            .get(&tgid)
            .map(|p| p.comm.clone())
            .unwrap_or_default();
        let no_return = ret.is_none();
        let (ret, error) = match ret {
            Some((r, true)) => (r, errno_name(-r as i32)),
            Some((r, false)) => (r, String::new()),
            None => (0, String::new()),
        };
        self.shared.trace.send(pb::TraceEvent {
            time_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
            vm: self.shared.vm.clone(),
            pid: guest,
            host_pid: pid as u32,
            command,
            syscall: crate::syscalls::name(entry.nr),
            args: entry.args.clone(),
            ret,
            error,
            duration_ns: entry.at.elapsed().as_nanos() as u64,
            no_return,
        });
    }

    /// A SECCOMP_RET_TRACE stop: a clock syscall of a VM with a virtual
    /// clock, emulated here (written into the tracee, skipped, its return
    /// value set).
    fn seccomp_stop(&mut self, stop: &Stopped) {
        let Some(clock) = &self.shared.clock else {
            return;
        };
        let clock = clock.lock().expect("not poisoned").clone();
        if let Err(e) = emulate_clock(stop, &clock) {
            tracing::debug!(pid = stop.pid, "clock emulation failed: {e}");
        }
    }
}

/// The name of a signal ("SIGSEGV").
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// The name of an errno ("ENOENT").
pub fn errno_name(errno: i32) -> String {
    match nix::errno::Errno::from_raw(errno) {
        nix::errno::Errno::UnknownErrno => format!("E{errno}"),
        e => format!("{e:?}"),
    }
}

#[cfg(target_arch = "x86_64")]
fn emulate_clock(stop: &Stopped, clock: &VirtualClock) -> std::io::Result<()> {
    let pid = stop.pid;
    let mut regs = stop.regs()?;
    let now = HostNow::read();
    let nr = regs.orig_rax as i64;
    let (a0, a1) = (regs.rdi, regs.rsi);
    let ret: i64 = match nr {
        libc::SYS_clock_gettime => {
            let Some(family) = Family::of(a0 as i32) else {
                // A CPU-time clock: the kernel's answer.
                return Ok(());
            };
            let ns = clock.read(family, now);
            let mut ts = [0u8; 16];
            ts[..8].copy_from_slice(&((ns.div_euclid(1_000_000_000)) as i64).to_ne_bytes());
            ts[8..].copy_from_slice(&((ns.rem_euclid(1_000_000_000)) as i64).to_ne_bytes());
            match sys::write_memory(pid, a1, &ts) {
                Ok(()) => 0,
                Err(_) => -(libc::EFAULT as i64),
            }
        }
        libc::SYS_gettimeofday => {
            let ns = clock.read(Family::Realtime, now);
            let mut r = 0;
            if a0 != 0 {
                let mut tv = [0u8; 16];
                tv[..8].copy_from_slice(&((ns.div_euclid(1_000_000_000)) as i64).to_ne_bytes());
                tv[8..]
                    .copy_from_slice(&((ns.rem_euclid(1_000_000_000) / 1000) as i64).to_ne_bytes());
                if sys::write_memory(pid, a0, &tv).is_err() {
                    r = -(libc::EFAULT as i64);
                }
            }
            if a1 != 0 && r == 0 && sys::write_memory(pid, a1, &[0u8; 8]).is_err() {
                r = -(libc::EFAULT as i64);
            }
            r
        }
        libc::SYS_time => {
            let secs = clock.read(Family::Realtime, now).div_euclid(1_000_000_000) as i64;
            if a0 != 0 && sys::write_memory(pid, a0, &secs.to_ne_bytes()).is_err() {
                -(libc::EFAULT as i64)
            } else {
                secs
            }
        }
        _ => return Ok(()),
    };
    // Skip the syscall (number -1) and set its return value.
    regs.orig_rax = u64::MAX;
    regs.rax = ret as u64;
    stop.set_regs(&regs)
}

#[cfg(not(target_arch = "x86_64"))]
fn emulate_clock(_stop: &Stopped, _clock: &VirtualClock) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// `AT_SYSINFO_EHDR`: the vDSO's address in the auxiliary vector.
const AT_SYSINFO_EHDR: u64 = 33;

/// Zeroes `AT_SYSINFO_EHDR` in a freshly exec'd image's auxiliary vector
/// (on its stack, past argc, argv and envp), so that its libc finds no
/// vDSO and makes real clock syscalls.
#[cfg(target_arch = "x86_64")]
fn hide_vdso(stop: &Stopped) -> std::io::Result<()> {
    let pid = stop.pid;
    let sp = stop.regs()?.rsp;
    // The stack's words, read a page at a time as the walk needs them.
    let mut words: Vec<u64> = Vec::new();
    let mut failed = None;
    let mut word = |i: usize| -> Option<u64> {
        while words.len() <= i {
            if words.len() > 1 << 16 {
                return None;
            }
            let mut buf = [0u8; 4096];
            let at = sp + (words.len() * 8) as u64;
            // Up to the next page boundary, then page by page.
            let len = 4096 - (at % 4096) as usize;
            match sys::read_memory(pid, at, &mut buf[..len]) {
                Ok(got) if got >= 8 => {
                    for c in buf[..got - got % 8].chunks_exact(8) {
                        words.push(u64::from_ne_bytes(c.try_into().expect("8 bytes")));
                    }
                }
                Ok(_) => return None,
                Err(e) => {
                    failed = Some(e);
                    return None;
                }
            }
        }
        Some(words[i])
    };
    let found = auxv_value_index(&mut word, AT_SYSINFO_EHDR);
    if let Some(e) = failed {
        return Err(e);
    }
    match found {
        Some(i) => sys::write_memory(pid, sp + (i * 8) as u64, &0u64.to_ne_bytes()),
        // A static binary without a vDSO entry: nothing to hide.
        None => Ok(()),
    }
}

/// Walks a new image's initial stack (word 0 at the stack pointer: argc,
/// argv…, NULL, envp…, NULL, then the auxiliary vector's (type, value)
/// pairs up to AT_NULL) and returns the index of the word holding `key`'s
/// value.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn auxv_value_index(word: &mut impl FnMut(usize) -> Option<u64>, key: u64) -> Option<usize> {
    let argc = usize::try_from(word(0)?).ok()?;
    let mut i = argc.checked_add(2)?;
    while word(i)? != 0 {
        i += 1;
    }
    i += 1;
    loop {
        match word(i)? {
            0 => return None,
            t if t == key => return Some(i + 1),
            _ => i += 2,
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn hide_vdso(_stop: &Stopped) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(errno_name(libc::ENOENT), "ENOENT");
        assert!(is_crash_signal(libc::SIGABRT));
        assert!(!is_crash_signal(libc::SIGKILL));
    }

    #[test]
    fn the_auxv_is_found_past_argv_and_envp() {
        // argc 2, argv, NULL, two env strings, NULL, auxv.
        let stack = [
            2,
            0xa1,
            0xa2,
            0,
            0xe1,
            0xe2,
            0,
            6,
            4096,
            33,
            0x7fff_1000,
            0,
            0,
        ];
        let mut word = |i: usize| stack.get(i).copied();
        assert_eq!(auxv_value_index(&mut word, AT_SYSINFO_EHDR), Some(10));
        assert_eq!(auxv_value_index(&mut word, 6), Some(8));
        assert_eq!(auxv_value_index(&mut word, 25), None);
        // Cut short: nothing found, no panic.
        let mut short = |i: usize| stack[..5].get(i).copied();
        assert_eq!(auxv_value_index(&mut short, AT_SYSINFO_EHDR), None);
        // Our own auxv (from /proc) has the vDSO entry.
        let raw = std::fs::read("/proc/self/auxv").unwrap();
        let own: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        // As on a stack: argc 0, no argv, no env.
        let mut fake = vec![0, 0, 0];
        fake.extend(own);
        let mut word = |i: usize| fake.get(i).copied();
        let at = auxv_value_index(&mut word, AT_SYSINFO_EHDR).unwrap();
        assert_ne!(fake[at], 0);
    }

    #[test]
    fn own_status_parses() {
        let me = std::process::id() as i32;
        let s = read_status(me).unwrap();
        assert_eq!(s.tgid, me);
        assert!(s.guest_tid > 0);
        assert!(!read_cmdline(me).is_empty());
    }
}
