//! One process that is one vBET VM: namespaces, root file system, cgroup,
//! NICs, exec and console.
//!
//! The monitor boots the VM before any thread exists ([`vm::boot`]: the
//! guest init is forked into new namespaces), then starts its async runtime
//! and serves the `VmMonitor` API ([`vm::run`]). See `docs/vm-monitor.md`.
#![deny(unsafe_code)]

pub mod api;
pub mod caps;
pub mod cgroup;
pub mod cli;
pub mod client;
pub mod clock;
pub mod exec;
pub mod fault;
pub mod init;
pub mod nic;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod sys;
#[cfg(target_arch = "x86_64")]
mod syscall_names;
pub mod syscalls;
pub mod tracer;
pub mod vm;

/// An error and its sources on one line ("a: b: c").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
