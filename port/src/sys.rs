//! The crate's only unsafe code: registering descriptors it owns with the
//! tokio reactor for one interest (tokio's safe constructors are
//! deprecated and register both), and setting this process's priority.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Something that owns its descriptor for as long as it lives.
pub(crate) trait Owned: AsRawFd {}
impl Owned for OwnedFd {}
impl Owned for UnixDatagram {}

/// Registers `owner` with the current runtime for `interest` only.
pub(crate) fn register<T: Owned>(owner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T` is an owning type (sealed to OwnedFd and UnixDatagram):
    // its descriptor is open, keeps its number while the value lives, and
    // is closed only when the value is dropped with the AsyncFd.
    unsafe { AsyncFd::register_with_interest(owner, interest) }.map_err(io::Error::from)
}

/// Sets this process's nice value (setpriority(2); lowering it needs root).
pub(crate) fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority only changes the scheduling priority of this
    // process; it reads and writes no memory of ours.
    let rc = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
