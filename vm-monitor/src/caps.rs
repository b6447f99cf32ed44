//! The capabilities a guest must not have, removed from the guest init's
//! bounding, effective, permitted, inheritable and ambient sets before it
//! runs anything; every guest process inherits the reduced set. What
//! networking software needs (CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE,
//! inside the VM's own network namespace) is kept, so FRR, nftables,
//! iptables and tcpdump work.
//!
//! CAP_SYS_ADMIN is kept: FRR's daemons refuse to start without it in
//! their permitted set (as in containers, where FRR needs
//! `--cap-add SYS_ADMIN`). What makes it dangerous in a VM is mounting
//! and changing root, and those syscalls are denied by the seccomp policy
//! (`seccomp.rs`: mount, umount2, the new mount API, pivot_root); with no
//! CAP_MKNOD and a minimal /dev there are no host devices to reach.

use caps::{CapSet, Capability};

/// Dropped, each with the reason.
///
/// Kept on purpose: CAP_SYS_BOOT, for `reboot(2)` in the VM's PID
/// namespace, which only ends that namespace (the VM's power button); its
/// other use, `kexec_load`, is denied by the seccomp policy.
pub const DROPPED: &[(Capability, &str)] = &[
    (
        Capability::CAP_SYS_MODULE,
        "loads kernel modules into the host kernel",
    ),
    (Capability::CAP_SYS_TIME, "sets the host's clock"),
    (Capability::CAP_SYS_RAWIO, "raw device and I/O port access"),
    (
        Capability::CAP_MKNOD,
        "device nodes would open the host's disks",
    ),
    (Capability::CAP_SYS_PACCT, "process accounting is host-wide"),
    (Capability::CAP_SYS_TTY_CONFIG, "vhangup of host terminals"),
    (Capability::CAP_MAC_ADMIN, "LSM policy is host-wide"),
    (Capability::CAP_MAC_OVERRIDE, "bypasses the host's LSM"),
    (Capability::CAP_AUDIT_CONTROL, "host audit rules"),
    (Capability::CAP_AUDIT_READ, "host audit log"),
    (
        Capability::CAP_SYSLOG,
        "host kernel log and kernel pointers",
    ),
    (Capability::CAP_WAKE_ALARM, "host wake-up timers"),
    (Capability::CAP_BLOCK_SUSPEND, "blocks the host's suspend"),
    (
        Capability::CAP_LINUX_IMMUTABLE,
        "immutable flags on shared files",
    ),
    (Capability::CAP_BPF, "eBPF reaches beyond the VM"),
    (Capability::CAP_PERFMON, "host-wide performance monitoring"),
    (
        Capability::CAP_CHECKPOINT_RESTORE,
        "host-wide checkpoint interfaces",
    ),
];

/// A capability could not be dropped.
#[derive(Debug, thiserror::Error)]
#[error("dropping {cap} from the {set:?} set")]
pub struct CapsError {
    /// The capability.
    pub cap: Capability,
    /// The set.
    pub set: CapSet,
    /// Why.
    #[source]
    pub source: caps::errors::CapsError,
}

/// Drops [`DROPPED`] from every set of the calling thread (the guest init,
/// single-threaded). Capabilities the running kernel does not know are
/// skipped.
pub fn drop_guest_caps() -> Result<(), CapsError> {
    let known = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
    for (cap, _why) in DROPPED {
        if !known.contains(cap) {
            continue;
        }
        for set in [
            CapSet::Bounding,
            CapSet::Inheritable,
            CapSet::Effective,
            CapSet::Permitted,
        ] {
            caps::drop(None, set, *cap).map_err(|source| CapsError {
                cap: *cap,
                set,
                source,
            })?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|source| CapsError {
        cap: Capability::CAP_SYS_ADMIN,
        set: CapSet::Ambient,
        source,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_what_networking_needs() {
        for (cap, _) in super::DROPPED {
            assert!(!matches!(
                cap,
                caps::Capability::CAP_NET_ADMIN | caps::Capability::CAP_NET_RAW
            ));
        }
    }
}
