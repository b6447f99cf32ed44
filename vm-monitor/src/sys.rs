//! Every raw system call of the crate, behind small safe functions.
//!
//! Everything here is a thin wrapper: the policy (which namespaces, which
//! filter, which device) is decided by the callers.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;

/// Retries `f` while it fails with EINTR.
pub fn retry_eintr<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            other => return other,
        }
    }
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The result of [`fork_into_namespaces`], seen from each side.
pub enum Forked {
    /// In the parent: the child's host PID.
    Parent(libc::pid_t),
    /// In the child.
    Child,
}

/// Forks into new namespaces (`flags` are `CLONE_NEW*` bits), like
/// `fork()`: the child starts with a copy of the caller's memory.
///
/// The caller must be single-threaded (no async runtime yet), as after any
/// fork.
pub fn fork_into_namespaces(flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: clone without CLONE_VM and with a NULL stack behaves as
    // fork(): the child gets its own copy of the address space and
    // continues on its own copy of the stack; no pointer is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match check(rc)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// Plain `fork()`; the caller must be single-threaded.
pub fn fork() -> io::Result<Forked> {
    fork_into_namespaces(0)
}

/// Opens a pidfd for `pid` (readable once the process has exited).
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let rc = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// Ends the calling process at once, without running destructors or
/// flushing stdio (what a forked child must do).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// Gives the heap's free pages back to the kernel: what the boot used and
/// freed would otherwise stay resident for the VM's whole life.
pub fn release_free_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe { libc::malloc_trim(0) };
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;

/// TAP offloads (`TUN_F_*`): checksum, TCP segmentation for IPv4, IPv6
/// and with ECN.
pub const TAP_OFFLOADS: libc::c_uint = 0x01 | 0x02 | 0x04 | 0x08;

/// The size of the virtio-net header before each frame of a TAP opened
/// with one.
pub const VNET_HDR_LEN: usize = 10;

#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens `/dev/net/tun` and creates (or attaches to) the TAP device `name`
/// in the calling thread's network namespace. The fd is non-blocking. With
/// `vnet_hdr`, every frame read or written starts with a virtio-net header
/// ([`VNET_HDR_LEN`] bytes) and the device may take offloads
/// ([`tap_set_offload`]).
pub fn tap_open(name: &str, vnet_hdr: bool) -> io::Result<OwnedFd> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let path = CString::new("/dev/net/tun").expect("no NUL");
    // SAFETY: path is a valid NUL-terminated string.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    check(fd as libc::c_long)?;
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | if vnet_hdr { IFF_VNET_HDR } else { 0 },
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads a struct ifreq, which IfReqFlags lays out
    // (name, flags, padding to the union's size); it lives across the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } as libc::c_long)?;
    Ok(fd)
}

/// Sets the offloads (`TUN_F_*` bits) a TAP opened with a virtio-net
/// header accepts: with TSO, the guest sends segments of up to 64 KiB.
pub fn tap_set_offload(fd: &impl AsRawFd, offloads: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes the flags by value; no memory is passed.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, offloads as libc::c_ulong) };
    check(rc as libc::c_long)?;
    Ok(())
}

/// Turns the carrier of a TAP device on or off (Linux ≥ 5.0).
pub fn tap_set_carrier(fd: &impl AsRawFd, on: bool) -> io::Result<()> {
    let value: libc::c_int = on.into();
    // SAFETY: TUNSETCARRIER reads one int through the pointer, which is
    // valid for the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETCARRIER, &value) } as libc::c_long)?;
    Ok(())
}

/// Installs a seccomp BPF filter on the calling thread (inherited by its
/// children) without setting `no_new_privs`: the caller must hold
/// CAP_SYS_ADMIN. Setuid programs in the guest keep working that way.
pub fn seccomp_install(filter: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points to `len` valid instructions that outlive the
    // call; the kernel copies them.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    })?;
    Ok(())
}

/// Installs a seccomp BPF filter like [`seccomp_install`], with a user
/// notification listener (SECCOMP_FILTER_FLAG_NEW_LISTENER), which is
/// returned.
pub fn seccomp_install_listener(filter: &[libc::sock_filter]) -> io::Result<OwnedFd> {
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points to `len` valid instructions that outlive the
    // call; the kernel copies them and returns a new fd.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    })?;
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits until a notification is pending on a seccomp listener; an error
/// once every filtered process is gone (POLLHUP).
pub fn poll_wait(fd: &impl AsRawFd) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    retry_eintr(|| check(unsafe { libc::poll(&mut pfd, 1, -1) } as libc::c_long))?;
    if pfd.revents & libc::POLLIN != 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(libc::EPIPE))
    }
}

/// Asks the kernel to switch straight to the supervisor when a
/// notification arrives and straight back on the answer
/// (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, Linux 6.6): no cross-CPU wake-ups.
pub fn notif_set_sync_wakeup(fd: &impl AsRawFd) -> io::Result<()> {
    const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
    // SAFETY: SET_FLAGS takes the flags by value; no memory is passed.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    };
    check(rc as libc::c_long)?;
    Ok(())
}

/// Receives one seccomp user notification (blocks if none is pending).
pub fn notif_recv(fd: &impl AsRawFd) -> io::Result<libc::seccomp_notif> {
    retry_eintr(|| {
        // SAFETY: seccomp_notif is a plain C struct; the kernel wants it
        // zeroed.
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: NOTIF_RECV writes one struct seccomp_notif through the
        // pointer, which is valid for the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) };
        check(rc as libc::c_long)?;
        Ok(n)
    })
}

/// Answers notification `id`: fail the syscall with `errno`, or with 0
/// let it run (SECCOMP_USER_NOTIF_FLAG_CONTINUE).
pub fn notif_send(fd: &impl AsRawFd, id: u64, errno: i32) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: -errno,
        flags: if errno == 0 {
            libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32
        } else {
            0
        },
    };
    retry_eintr(|| {
        // SAFETY: NOTIF_SEND reads one struct seccomp_notif_resp through
        // the pointer, which is valid for the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
        check(rc as libc::c_long)
    })?;
    Ok(())
}

/// Reads a clock (`libc::CLOCK_*`) in seconds.
pub fn clock_seconds(clock: libc::clockid_t) -> io::Result<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer,
    // which is valid for the call.
    check(unsafe { libc::clock_gettime(clock, &mut ts) } as libc::c_long)?;
    Ok(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// Reads a clock in nanoseconds.
pub fn clock_nanos(clock: libc::clockid_t) -> io::Result<i128> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer,
    // which is valid for the call.
    check(unsafe { libc::clock_gettime(clock, &mut ts) } as libc::c_long)?;
    Ok(ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128)
}

/// Sets the size of the terminal behind `fd`.
pub fn set_window_size(fd: &impl AsRawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a struct winsize, valid for the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } as libc::c_long)?;
    Ok(())
}

/// Makes the child of `cmd` a session leader whose controlling terminal
/// is its stdin (which must be a terminal).
pub fn command_with_controlling_tty(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only
    // makes two async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends one datagram with `fds` attached (SCM_RIGHTS).
pub fn send_with_fds(sock: &impl AsRawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let iov = [io::IoSlice::new(data)];
    let cmsgs = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsgs };
    retry_eintr(|| {
        sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
            .map_err(io::Error::from)
    })?;
    Ok(())
}

/// Receives one datagram into `buf` with up to 4 attached fds (made
/// close-on-exec). Returns the length (0 = the peer closed).
pub fn recv_with_fds(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(io::Error::from)?,
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel just installed these descriptors in
                // our table for us; nothing else owns them.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok((msg.bytes, fds))
}

/// Registers an owned fd with the current tokio reactor.
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open descriptor that stays open and
    // keeps its number for as long as the AsyncFd owns it.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(io::Error::from)
}

/// The size (rows, cols) of the terminal behind `fd`, if it is one.
pub fn window_size(fd: &impl AsRawFd) -> Option<(u16, u16)> {
    // SAFETY: zeroed winsize is a valid value of a plain C struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a struct winsize through the pointer,
    // which is valid for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_row, ws.ws_col))
}

// ---- ptrace (used only by the tracer thread, `crate::tracer`) ----

/// `PTRACE_EVENT_STOP`: a PTRACE_INTERRUPT, a seized child's first stop or
/// a group stop.
pub const PTRACE_EVENT_STOP: i32 = 128;

/// One raw ptrace request; the result (not meaningful for PEEK requests,
/// which are not used).
fn ptrace_raw(
    request: libc::c_uint,
    pid: libc::pid_t,
    addr: usize,
    data: usize,
) -> io::Result<libc::c_long> {
    // SAFETY: the requests issued through this helper take no pointer or
    // a pointer to a live object of the size the request expects (see each
    // caller); the kernel checks the rest.
    check(unsafe { libc::ptrace(request, pid, addr, data) })
}

/// PTRACE_SEIZE with `options` (no stop).
pub fn ptrace_seize(pid: libc::pid_t, options: libc::c_int) -> io::Result<()> {
    ptrace_raw(libc::PTRACE_SEIZE, pid, 0, options as usize).map(drop)
}

/// PTRACE_INTERRUPT: the tracee stops (PTRACE_EVENT_STOP) soon.
pub fn ptrace_interrupt(pid: libc::pid_t) -> io::Result<()> {
    ptrace_raw(libc::PTRACE_INTERRUPT, pid, 0, 0).map(drop)
}

/// Resumes a stopped tracee, delivering `signal` (0: none); with
/// `syscalls`, it stops again at the next syscall entry or exit.
pub fn ptrace_resume(pid: libc::pid_t, signal: i32, syscalls: bool) -> io::Result<()> {
    let request = if syscalls {
        libc::PTRACE_SYSCALL
    } else {
        libc::PTRACE_CONT
    };
    ptrace_raw(request, pid, 0, signal as usize).map(drop)
}

/// PTRACE_LISTEN: leaves a tracee in its group stop (job control), but
/// lets it report the next event.
pub fn ptrace_listen(pid: libc::pid_t) -> io::Result<()> {
    ptrace_raw(libc::PTRACE_LISTEN, pid, 0, 0).map(drop)
}

/// PTRACE_GETEVENTMSG: the new PID of a fork/clone, the former TID of an
/// exec.
pub fn ptrace_event_msg(pid: libc::pid_t) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    ptrace_raw(
        libc::PTRACE_GETEVENTMSG,
        pid,
        0,
        &mut msg as *mut libc::c_ulong as usize,
    )?;
    Ok(msg)
}

/// The signal of a signal-delivery stop: (number, si_code, si_addr).
pub fn ptrace_siginfo(pid: libc::pid_t) -> io::Result<(i32, i32, u64)> {
    // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    ptrace_raw(
        libc::PTRACE_GETSIGINFO,
        pid,
        0,
        &mut info as *mut libc::siginfo_t as usize,
    )?;
    // SAFETY: si_addr reads the union's first pointer field, which the
    // kernel filled (meaningful for faults, si_code > 0).
    let addr = unsafe { info.si_addr() } as u64;
    Ok((info.si_signo, info.si_code, addr))
}

/// The general registers of a stopped tracee.
#[cfg(target_arch = "x86_64")]
pub fn ptrace_getregs(pid: libc::pid_t) -> io::Result<libc::user_regs_struct> {
    // SAFETY: user_regs_struct is plain data; all zeroes is valid.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    ptrace_raw(
        libc::PTRACE_GETREGS,
        pid,
        0,
        &mut regs as *mut libc::user_regs_struct as usize,
    )?;
    Ok(regs)
}

/// Sets the general registers of a stopped tracee.
#[cfg(target_arch = "x86_64")]
pub fn ptrace_setregs(pid: libc::pid_t, regs: &libc::user_regs_struct) -> io::Result<()> {
    ptrace_raw(
        libc::PTRACE_SETREGS,
        pid,
        0,
        regs as *const libc::user_regs_struct as usize,
    )
    .map(drop)
}

/// What PTRACE_GET_SYSCALL_INFO tells about a syscall stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallStop {
    /// Entry: number and arguments.
    Entry {
        /// Syscall number.
        nr: u64,
        /// Arguments.
        args: [u64; 6],
    },
    /// Exit: the return value (negative errno when `is_error`).
    Exit {
        /// Return value.
        rval: i64,
        /// Whether it failed.
        is_error: bool,
    },
    /// A seccomp stop (SECCOMP_RET_TRACE).
    Seccomp {
        /// Syscall number.
        nr: u64,
        /// Arguments.
        args: [u64; 6],
    },
    /// Not a syscall stop.
    None,
}

/// `struct ptrace_syscall_info` (linux/ptrace.h), 88 bytes.
#[repr(C)]
struct RawSyscallInfo {
    op: u8,
    reserved: u8,
    flags: u16,
    arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    data: [u64; 8],
}

/// PTRACE_GET_SYSCALL_INFO (Linux 5.3).
pub fn ptrace_syscall_info(pid: libc::pid_t) -> io::Result<SyscallStop> {
    let mut raw = RawSyscallInfo {
        op: 0,
        reserved: 0,
        flags: 0,
        arch: 0,
        instruction_pointer: 0,
        stack_pointer: 0,
        data: [0; 8],
    };
    // The request takes the buffer's size as `addr` and the buffer as
    // `data`.
    ptrace_raw(
        libc::PTRACE_GET_SYSCALL_INFO,
        pid,
        std::mem::size_of::<RawSyscallInfo>(),
        &mut raw as *mut RawSyscallInfo as usize,
    )?;
    let args = |d: &[u64; 8]| [d[1], d[2], d[3], d[4], d[5], d[6]];
    Ok(match raw.op {
        1 => SyscallStop::Entry {
            nr: raw.data[0],
            args: args(&raw.data),
        },
        2 => SyscallStop::Exit {
            rval: raw.data[0] as i64,
            is_error: raw.data[1] & 0xff != 0,
        },
        3 => SyscallStop::Seccomp {
            nr: raw.data[0],
            args: args(&raw.data),
        },
        _ => SyscallStop::None,
    })
}

/// Reads `buf.len()` bytes of a tracee's memory at `addr`; returns how
/// many were read (fewer at an unmapped page).
pub fn read_memory(pid: libc::pid_t, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the local iovec covers `buf`, alive and writable for the
    // call; the remote one is only an address in the other process,
    // checked by the kernel.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    check(n as libc::c_long).map(|n| n as usize)
}

/// Writes `data` into a tracee's memory at `addr`.
pub fn write_memory(pid: libc::pid_t, addr: u64, data: &[u8]) -> io::Result<()> {
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: the local iovec covers `data`, alive for the call (the
    // kernel only reads it); the remote address is checked by the kernel.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    match check(n as libc::c_long)? as usize {
        n if n == data.len() => Ok(()),
        _ => Err(io::Error::from_raw_os_error(libc::EFAULT)),
    }
}

/// `waitpid(-1, …, __WALL | __WNOTHREAD)`: one status of the calling
/// thread's children and tracees; without `block`, only if one is ready
/// (WNOHANG).
pub fn wait_tracees(block: bool) -> io::Result<Option<(libc::pid_t, libc::c_int)>> {
    let mut status = 0;
    let flags = libc::__WALL | libc::__WNOTHREAD | if block { 0 } else { libc::WNOHANG };
    // SAFETY: waitpid writes one int through the pointer, valid for the
    // call.
    let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
    match check(pid as libc::c_long)? {
        0 => Ok(None),
        pid => Ok(Some((pid as libc::pid_t, status))),
    }
}

/// Blocking `waitpid(pid, …, __WALL)`: the raw status.
pub fn wait_pid(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    retry_eintr(|| {
        // SAFETY: as in wait_tracees.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        check(rc as libc::c_long)
    })?;
    Ok(status)
}

/// Blocks (or unblocks) SIGCHLD in the calling thread; threads created
/// afterwards inherit the mask.
pub fn block_sigchld(block: bool) -> io::Result<()> {
    let mut mask = nix::sys::signal::SigSet::empty();
    mask.add(nix::sys::signal::Signal::SIGCHLD);
    let how = if block {
        nix::sys::signal::SigmaskHow::SIG_BLOCK
    } else {
        nix::sys::signal::SigmaskHow::SIG_UNBLOCK
    };
    nix::sys::signal::pthread_sigmask(how, Some(&mask), None).map_err(io::Error::from)
}
