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

#[cfg(test)]
mod tests {
    #[test]
    fn policy_compiles() {
        let filters = super::guest_filters().unwrap();
        assert_eq!(filters.len(), 2);
        assert!(filters[0].len() > super::DENIED.len());
    }
}
