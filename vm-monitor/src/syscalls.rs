//! Syscall names and strace-like decoding of their arguments (paths and
//! strings read from the tracee, write buffers truncated, the rest as
//! numbers), for the tracer's syscall stream.

use crate::sys;

/// A syscall's name by number ("syscall_NNN" when unknown).
pub fn name(nr: u64) -> String {
    #[cfg(target_arch = "x86_64")]
    if let Some(n) = crate::syscall_names::NAMES.get(nr as usize) {
        if !n.is_empty() {
            return (*n).to_owned();
        }
    }
    format!("syscall_{nr}")
}

/// Whether the syscall never returns (its event is sent at entry).
pub fn never_returns(nr: u64) -> bool {
    let nr = nr as i64;
    nr == libc::SYS_exit || nr == libc::SYS_exit_group
}

/// The longest string read from a tracee.
const MAX_STRING: usize = 256;
/// How much of a write buffer is shown.
const MAX_BUFFER: usize = 32;

/// Reads a NUL-terminated string (at most [`MAX_STRING`] bytes), page by
/// page so that an unmapped page after it does not fail the read.
fn read_string(pid: i32, addr: u64) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < MAX_STRING {
        let mut buf = [0u8; MAX_STRING];
        let len = (4096 - (at % 4096) as usize).min(MAX_STRING - out.len());
        let got = sys::read_memory(pid, at, &mut buf[..len]).ok()?;
        if got == 0 {
            break;
        }
        if let Some(end) = buf[..got].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(out);
        }
        out.extend_from_slice(&buf[..got]);
        at += got as u64;
    }
    Some(out)
}

fn quote(bytes: &[u8], truncated: bool) -> String {
    let mut s = String::from("\"");
    s.push_str(&bytes.escape_ascii().to_string());
    s.push('"');
    if truncated {
        s.push_str("...");
    }
    s
}

fn path(pid: i32, addr: u64) -> String {
    match read_string(pid, addr) {
        Some(p) => quote(&p, p.len() >= MAX_STRING),
        None if addr == 0 => "NULL".into(),
        None => format!("{addr:#x}"),
    }
}

fn buffer(pid: i32, addr: u64, len: u64) -> String {
    let n = (len as usize).min(MAX_BUFFER);
    let mut buf = vec![0u8; n];
    match sys::read_memory(pid, addr, &mut buf) {
        Ok(got) => quote(&buf[..got], (len as usize) > got),
        Err(_) => format!("{addr:#x}"),
    }
}

fn dirfd(fd: u64) -> String {
    match fd as i32 {
        libc::AT_FDCWD => "AT_FDCWD".into(),
        fd => fd.to_string(),
    }
}

/// argv of an execve (the first few).
fn argv(pid: i32, addr: u64) -> String {
    let mut items = Vec::new();
    for i in 0..8u64 {
        let mut word = [0u8; 8];
        if sys::read_memory(pid, addr + i * 8, &mut word).ok() != Some(8) {
            break;
        }
        let p = u64::from_ne_bytes(word);
        if p == 0 {
            return format!("[{}]", items.join(", "));
        }
        items.push(path(pid, p));
    }
    format!("[{}, ...]", items.join(", "))
}

/// The arguments of syscall `nr`, strace-like.
pub fn decode(pid: i32, nr: u64, a: &[u64; 6]) -> String {
    let n = name(nr);
    let fd = |x: u64| (x as i32).to_string();
    match n.as_str() {
        "open" | "creat" => format!("{}, {:#o}, {:#o}", path(pid, a[0]), a[1], a[2]),
        "openat" => format!(
            "{}, {}, {:#o}, {:#o}",
            dirfd(a[0]),
            path(pid, a[1]),
            a[2],
            a[3]
        ),
        "execve" => format!("{}, {}", path(pid, a[0]), argv(pid, a[1])),
        "execveat" => format!("{}, {}, {}", dirfd(a[0]), path(pid, a[1]), argv(pid, a[2])),
        "write" | "pwrite64" | "send" | "sendto" => {
            format!("{}, {}, {}", fd(a[0]), buffer(pid, a[1], a[2]), a[2])
        }
        "read" | "pread64" | "recvfrom" | "getdents64" => {
            format!("{}, {:#x}, {}", fd(a[0]), a[1], a[2])
        }
        "close" | "fsync" | "fdatasync" | "dup" | "fchdir" | "fstat" | "syncfs" => fd(a[0]),
        "dup2" | "dup3" => format!("{}, {}", fd(a[0]), fd(a[1])),
        "lseek" => format!("{}, {}, {}", fd(a[0]), a[1] as i64, a[2]),
        "stat" | "lstat" | "access" | "unlink" | "rmdir" | "chdir" | "chroot" | "mkdir"
        | "readlink" | "statfs" | "truncate" | "chmod" | "chown" | "lchown" | "uselib" | "acct"
        | "mknod" => format!("{}, {:#x}", path(pid, a[0]), a[1]),
        "rename" | "link" | "symlink" => format!("{}, {}", path(pid, a[0]), path(pid, a[1])),
        "newfstatat" | "faccessat" | "faccessat2" | "unlinkat" | "mkdirat" | "readlinkat"
        | "statx" | "fchmodat" | "fchownat" | "utimensat" | "mknodat" | "inotify_add_watch" => {
            format!("{}, {}, {:#x}", dirfd(a[0]), path(pid, a[1]), a[2])
        }
        "renameat" | "renameat2" | "linkat" => format!(
            "{}, {}, {}, {}",
            dirfd(a[0]),
            path(pid, a[1]),
            dirfd(a[2]),
            path(pid, a[3])
        ),
        "socket" => format!("{}, {:#x}, {}", a[0], a[1], a[2]),
        "connect" | "bind" | "accept" | "accept4" | "listen" | "shutdown" | "getsockname"
        | "getpeername" | "sendmsg" | "recvmsg" | "ioctl" | "fcntl" => {
            format!("{}, {:#x}, {:#x}", fd(a[0]), a[1], a[2])
        }
        "clock_gettime" | "clock_getres" | "clock_nanosleep" => {
            format!("{}, {:#x}", a[0] as i32, a[1])
        }
        "kill" | "tgkill" | "tkill" => format!("{}, {}", a[0] as i32, a[1] as i32),
        "exit" | "exit_group" => (a[0] as i32).to_string(),
        "getpid" | "getppid" | "gettid" | "getuid" | "geteuid" | "getgid" | "getegid"
        | "sched_yield" | "fork" | "vfork" | "pause" | "sync" | "setsid" | "getpgrp" => {
            String::new()
        }
        _ => format!("{:#x}, {:#x}, {:#x}", a[0], a[1], a[2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(name(libc::SYS_openat as u64), "openat");
        assert_eq!(name(libc::SYS_getppid as u64), "getppid");
        assert_eq!(name(9999), "syscall_9999");
        assert!(never_returns(libc::SYS_exit_group as u64));
    }

    #[test]
    fn decodes_from_own_memory() {
        // Our own process stands in for a tracee (process_vm_readv on
        // ourselves needs no ptrace).
        let me = std::process::id() as i32;
        let p = c"/etc/hostname";
        let args = [
            libc::AT_FDCWD as u64,
            p.as_ptr() as u64,
            libc::O_RDONLY as u64,
            0,
            0,
            0,
        ];
        assert_eq!(
            decode(me, libc::SYS_openat as u64, &args),
            "AT_FDCWD, \"/etc/hostname\", 0o0, 0o0"
        );
        let data = b"hello\nworld, this is longer than thirty-two bytes";
        let args = [1, data.as_ptr() as u64, data.len() as u64, 0, 0, 0];
        let text = decode(me, libc::SYS_write as u64, &args);
        assert!(text.starts_with("1, \"hello\\nworld"), "{text}");
        assert!(text.ends_with(&format!("\"..., {}", data.len())), "{text}");
    }
}
