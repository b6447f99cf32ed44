//! The guest's seccomp policy: reviewed data, one entry per syscall with
//! why it is denied. Everything not listed is allowed (the guest runs
//! unmodified software); a denied call fails with EPERM, except `clone3`,
//! which fails with ENOSYS so that libc falls back to `clone`, whose flags
//! the filter can see.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// A failed policy compilation or installation.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The policy did not compile (a bug in the table).
    #[error("seccomp policy does not compile")]
    Compile(#[source] seccompiler::BackendError),
    /// The kernel refused the filter.
    #[error("installing the seccomp filter")]
    Install(#[source] std::io::Error),
}

/// Denied outright, each with the reason.
///
/// Not denied, on purpose: `reboot(2)`. In a PID namespace other than the
/// host's, the kernel never reboots the host: restart ends the namespace
/// with SIGHUP, halt and power-off with SIGINT (other commands fail with
/// EINVAL). That is the VM's power button, which the monitor reads from
/// its init's exit status.
pub const DENIED: &[(i64, &str)] = &[
    (
        libc::SYS_init_module,
        "loads a kernel module into the host kernel",
    ),
    (
        libc::SYS_finit_module,
        "loads a kernel module into the host kernel",
    ),
    (libc::SYS_delete_module, "unloads a host kernel module"),
    (libc::SYS_kexec_load, "replaces the host kernel"),
    (libc::SYS_kexec_file_load, "replaces the host kernel"),
    (
        libc::SYS_settimeofday,
        "sets the host's clock (not namespaced)",
    ),
    (
        libc::SYS_clock_settime,
        "sets the host's clock (not namespaced)",
    ),
    (libc::SYS_clock_adjtime, "slews the host's clock"),
    (libc::SYS_adjtimex, "slews the host's clock"),
    (libc::SYS_swapon, "adds host swap"),
    (libc::SYS_swapoff, "removes host swap"),
    (
        libc::SYS_open_by_handle_at,
        "opens host files by handle, bypassing the VM's root (the 'shocker' escape)",
    ),
    (
        libc::SYS_name_to_handle_at,
        "makes handles for open_by_handle_at",
    ),
    (libc::SYS_iopl, "raw I/O port access on the host"),
    (libc::SYS_ioperm, "raw I/O port access on the host"),
    (libc::SYS_acct, "process accounting is host-wide"),
    (libc::SYS_quotactl, "host file system quotas"),
    (libc::SYS_lookup_dcookie, "host-wide profiling cookies"),
    (
        libc::SYS_perf_event_open,
        "host-wide performance counters and kernel pointers",
    ),
    (
        libc::SYS_bpf,
        "eBPF programs reach beyond the VM (classic socket filters, as tcpdump uses, stay allowed)",
    ),
    (libc::SYS_add_key, "the kernel keyring is not namespaced"),
    (
        libc::SYS_request_key,
        "the kernel keyring is not namespaced",
    ),
    (libc::SYS_keyctl, "the kernel keyring is not namespaced"),
    (libc::SYS_userfaultfd, "a classic kernel exploitation aid"),
    (
        libc::SYS_vhangup,
        "hangs up the terminal of the host's session",
    ),
    (libc::SYS_syslog, "reads and clears the host kernel log"),
    (
        libc::SYS_fsopen,
        "new mount API: mounting is not for the guest",
    ),
    (
        libc::SYS_fsmount,
        "new mount API: mounting is not for the guest",
    ),
    (
        libc::SYS_move_mount,
        "new mount API: mounting is not for the guest",
    ),
    (
        libc::SYS_open_tree,
        "new mount API: mounting is not for the guest",
    ),
    (libc::SYS_pivot_root, "the guest must not change its root"),
    (
        libc::SYS_mount,
        "mounting is not for the guest (it keeps CAP_SYS_ADMIN for FRR)",
    ),
    (
        libc::SYS_umount2,
        "unmounting could uncover what the VM's root hides",
    ),
    (
        libc::SYS_fsconfig,
        "new mount API: mounting is not for the guest",
    ),
    (
        libc::SYS_mount_setattr,
        "could make the VM's read-only mounts writable",
    ),
];

/// `CLONE_NEWUSER`: a new user namespace gives back every capability we
/// dropped (inside it) and exposes much more kernel surface.
const CLONE_NEWUSER: u64 = libc::CLONE_NEWUSER as u64;

/// Denied when an argument matches, each with the reason.
fn conditional() -> Result<Vec<(i64, SeccompRule, &'static str)>, seccompiler::BackendError> {
    let newuser = |arg| {
        SeccompRule::new(vec![SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(CLONE_NEWUSER),
            CLONE_NEWUSER,
        )?])
    };
    Ok(vec![
        (
            libc::SYS_unshare,
            newuser(0)?,
            "user namespaces: see CLONE_NEWUSER",
        ),
        (
            libc::SYS_clone,
            newuser(0)?,
            "user namespaces: see CLONE_NEWUSER",
        ),
    ])
}

fn arch() -> TargetArch {
    #[cfg(target_arch = "aarch64")]
    {
        TargetArch::aarch64
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        TargetArch::x86_64
    }
}

/// Compiles the guest policy into the BPF programs to install, in order.
pub fn guest_filters() -> Result<Vec<BpfProgram>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, _why) in DENIED {
        rules.insert(*nr, Vec::new());
    }
    for (nr, rule, _why) in conditional().map_err(SeccompError::Compile)? {
        rules.entry(nr).or_default().push(rule);
    }
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch(),
    )
    .map_err(SeccompError::Compile)?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch(),
    )
    .map_err(SeccompError::Compile)?;
    [deny, clone3]
        .into_iter()
        .map(|f| BpfProgram::try_from(f).map_err(SeccompError::Compile))
        .collect()
}

/// Installs the guest policy on the calling process (and its future
/// children). The caller must still hold CAP_SYS_ADMIN.
pub fn install_guest_policy() -> Result<(), SeccompError> {
    for prog in guest_filters()? {
        // seccompiler's sock_filter and libc's share the kernel's layout.
        let insns: Vec<libc::sock_filter> = prog
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        crate::sys::seccomp_install(&insns).map_err(SeccompError::Install)?;
    }
    Ok(())
}

/// The faultable set: in a VM with `faults = true`, these syscalls (and
/// only these) go to the monitor as seccomp user notifications, so fault
/// rules can name them. Each costs a round trip to the monitor (≈ 5–7 µs)
/// on every call in such a VM, rule or not; VMs without `faults` do not
/// have the filter at all.
pub const FAULTABLE: &[(i64, &str, &str)] = &[
    (
        libc::SYS_socket,
        "socket",
        "no sockets left (EMFILE, ENOBUFS)",
    ),
    (libc::SYS_bind, "bind", "address in use (EADDRINUSE)"),
    (libc::SYS_listen, "listen", "a server that cannot listen"),
    (
        libc::SYS_connect,
        "connect",
        "refused or unreachable peers (ECONNREFUSED, ETIMEDOUT)",
    ),
    (libc::SYS_accept, "accept", "a server that drops clients"),
    (libc::SYS_accept4, "accept4", "a server that drops clients"),
    (
        libc::SYS_sendto,
        "sendto",
        "lost or refused sends (ENOBUFS, EAGAIN); slow networks (delay)",
    ),
    (libc::SYS_recvfrom, "recvfrom", "failed or slow receives"),
    (
        libc::SYS_sendmsg,
        "sendmsg",
        "as sendto (the init's own channel is exempt)",
    ),
    (
        libc::SYS_recvmsg,
        "recvmsg",
        "as recvfrom (the init's own channel is exempt)",
    ),
    #[cfg(target_arch = "x86_64")]
    (
        libc::SYS_open,
        "open",
        "missing or unreadable files (ENOENT, EACCES, EIO)",
    ),
    (
        libc::SYS_openat,
        "openat",
        "missing or unreadable files (ENOENT, EACCES, EIO)",
    ),
    (
        libc::SYS_read,
        "read",
        "I/O errors (EIO), slow disks and pipes (delay)",
    ),
    (
        libc::SYS_write,
        "write",
        "full disks (ENOSPC), I/O errors, slow writes",
    ),
    (libc::SYS_fsync, "fsync", "lost durability (EIO)"),
];

/// Names of other common syscalls: a rule naming one is told the syscall
/// cannot be faulted rather than that it does not exist.
const OTHER_SYSCALLS: &[&str] = &[
    "getpid",
    "getppid",
    "gettid",
    "clock_gettime",
    "gettimeofday",
    "time",
    "nanosleep",
    "clock_nanosleep",
    "close",
    "mmap",
    "munmap",
    "mprotect",
    "brk",
    "execve",
    "fork",
    "vfork",
    "clone",
    "clone3",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "kill",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_wait",
    "epoll_pwait",
    "ioctl",
    "fcntl",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "lseek",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "pipe",
    "pipe2",
    "dup",
    "dup2",
    "dup3",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "getdents64",
    "shutdown",
    "getsockopt",
    "setsockopt",
    "getsockname",
    "getpeername",
    "socketpair",
    "sendmmsg",
    "recvmmsg",
    "futex",
    "rt_sigaction",
    "rt_sigprocmask",
    "sched_yield",
];

/// Whether `name` is a syscall (faultable or not) that we know.
pub fn is_syscall_name(name: &str) -> bool {
    FAULTABLE.iter().any(|(_, n, _)| *n == name) || OTHER_SYSCALLS.contains(&name)
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(k: u32, jt: usize, jf: usize) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: u8::try_from(jt).expect("short filter"),
        jf: u8::try_from(jf).expect("short filter"),
        k,
    }
}

/// The fault filter: [`FAULTABLE`] to the monitor (SECCOMP_RET_USER_NOTIF),
/// everything else allowed. `sendmsg` and `recvmsg` on fd `exempt_fd` (the
/// init's control channel, which carries the listener to the monitor)
/// are allowed, so the init can hand the listener over.
pub fn fault_filter(exempt_fd: i32) -> Vec<libc::sock_filter> {
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let n = FAULTABLE.len();
    // Layout: 0 ld arch; 1 jeq arch; 2 ld nr; 3..3+n jeq nr; allow;
    // check: ld arg0, jeq fd, allow; notify.
    let allow = 3 + n;
    let check = allow + 1;
    let allow2 = check + 2;
    let notify = check + 3;
    let mut prog = vec![
        stmt(ld, 4), // seccomp_data.arch
        jump(AUDIT_ARCH, 0, allow - 2),
        stmt(ld, 0), // seccomp_data.nr
    ];
    for (i, (nr, _, _)) in FAULTABLE.iter().enumerate() {
        let at = 3 + i;
        let target = if *nr == libc::SYS_sendmsg || *nr == libc::SYS_recvmsg {
            check
        } else {
            notify
        };
        prog.push(jump(*nr as u32, target - at - 1, 0));
    }
    prog.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    prog.push(stmt(ld, 16)); // seccomp_data.args[0], low half
    prog.push(jump(exempt_fd as u32, 0, notify - (check + 1) - 1));
    debug_assert_eq!(prog.len(), allow2);
    prog.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    prog.push(stmt(ret, libc::SECCOMP_RET_USER_NOTIF));
    prog
}

/// Installs the fault filter on the calling process (and its future
/// children) and returns its notification listener. The caller must
/// still hold CAP_SYS_ADMIN.
pub fn install_fault_filter(exempt_fd: i32) -> Result<std::os::fd::OwnedFd, SeccompError> {
    crate::sys::seccomp_install_listener(&fault_filter(exempt_fd)).map_err(SeccompError::Install)
}

/// The clock syscalls of a VM with a virtual clock: they go to the
/// tracer (SECCOMP_RET_TRACE), which emulates them in that one stop. With
/// the vDSO hidden at exec (`AT_SYSINFO_EHDR` zeroed), libc makes them
/// for real instead of reading the host's time from shared memory.
/// (`clock_settime` stays denied by [`DENIED`]: `SetClock` sets a VM's
/// clock.)
pub const CLOCK_SYSCALLS: &[(i64, &str)] = &[
    (
        libc::SYS_clock_gettime,
        "every clock (CPU-time clocks are left to the kernel)",
    ),
    (libc::SYS_gettimeofday, "REALTIME in microseconds"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_time, "REALTIME in seconds"),
];

/// The clock filter: [`CLOCK_SYSCALLS`] to the tracer, everything else
/// allowed.
pub fn clock_filter() -> Vec<libc::sock_filter> {
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let n = CLOCK_SYSCALLS.len();
    // 0 ld arch; 1 jeq arch; 2 ld nr; 3..3+n jeq nr; allow; trace.
    let allow = 3 + n;
    let trace = allow + 1;
    let mut prog = vec![
        stmt(ld, 4), // seccomp_data.arch
        jump(AUDIT_ARCH, 0, allow - 2),
        stmt(ld, 0), // seccomp_data.nr
    ];
    for (i, (nr, _)) in CLOCK_SYSCALLS.iter().enumerate() {
        prog.push(jump(*nr as u32, trace - (3 + i) - 1, 0));
    }
    prog.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    prog.push(stmt(ret, libc::SECCOMP_RET_TRACE));
    prog
}

/// Installs the clock filter on the calling process (and its future
/// children). A traced syscall fails with ENOSYS while no tracer is
/// attached: the monitor seizes the init before it starts any process.
pub fn install_clock_filter() -> Result<(), SeccompError> {
    crate::sys::seccomp_install(&clock_filter()).map_err(SeccompError::Install)
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_filter_traces_only_clock_syscalls() {
        let prog = super::clock_filter();
        let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
        let trace_at = prog.len() - 1;
        assert_eq!(prog[trace_at].k, libc::SECCOMP_RET_TRACE);
        assert_eq!(prog[trace_at - 1].k, libc::SECCOMP_RET_ALLOW);
        for (i, insn) in prog.iter().enumerate().skip(3) {
            if insn.code == jeq {
                assert_eq!(i + 1 + insn.jt as usize, trace_at);
            }
        }
        assert_eq!(1 + 1 + prog[1].jf as usize, trace_at - 1);
    }

    #[test]
    fn policy_compiles() {
        let filters = super::guest_filters().unwrap();
        assert_eq!(filters.len(), 2);
        assert!(filters[0].len() > super::DENIED.len());
    }

    #[test]
    fn fault_filter_jumps_land_on_returns() {
        let prog = super::fault_filter(3);
        let ret = (libc::BPF_RET | libc::BPF_K) as u16;
        let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
        for (i, insn) in prog.iter().enumerate() {
            if insn.code == jeq {
                for off in [insn.jt, insn.jf] {
                    let target = i + 1 + off as usize;
                    assert!(target < prog.len(), "jump out of the program at {i}");
                }
            }
        }
        assert_eq!(prog.last().unwrap().code, ret);
        assert_eq!(prog.last().unwrap().k, libc::SECCOMP_RET_USER_NOTIF);
    }
}
