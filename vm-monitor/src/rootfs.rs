//! The guest's root file system, as a list of mount steps computed from the
//! spec (data, unit-tested without root) and applied in the guest's new
//! mount namespace: an overlay of the image with a private writable layer,
//! fresh /proc, /sys, /dev, /tmp and /run, hostfs shares, then pivot_root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::spec::{ShareMode, VmSpec};

/// A failed mount step.
#[derive(Debug, thiserror::Error)]
#[error("root file system step {step}")]
pub struct RootfsError {
    /// The step, as text.
    pub step: String,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// One step of building the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Stop mount events from propagating to or from the host.
    MakePrivate,
    /// Mount a file system.
    Mount {
        /// File system type.
        fstype: &'static str,
        /// Mount point.
        target: PathBuf,
        /// MS_* flags.
        flags: MsFlags,
        /// Options.
        data: String,
    },
    /// Bind mount, made read-only when asked.
    Bind {
        /// What.
        src: PathBuf,
        /// Where.
        dst: PathBuf,
        /// Read-only.
        readonly: bool,
    },
    /// Remount a bind mount nosuid and nodev (keeping read-only if so).
    Restrict(PathBuf),
    /// Create a directory and its parents.
    Mkdir(PathBuf),
    /// Create an empty file (a bind mount point), and its parents.
    Touch(PathBuf),
    /// Create a symbolic link `link` → `target`.
    Symlink {
        /// What the link points to.
        target: PathBuf,
        /// The link.
        link: PathBuf,
    },
    /// Make the directory the root and detach the old root.
    PivotRoot(PathBuf),
    /// Write a file (after the pivot: a guest path).
    WriteFile {
        /// Path.
        path: PathBuf,
        /// Content.
        content: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
}

/// Device nodes of the host bound into the guest's /dev.
pub const DEVICES: &[&str] = &[
    "null", "zero", "full", "random", "urandom", "tty", "net/tun",
];

/// /proc files hidden behind /dev/null: host-wide knobs and kernel memory.
pub const PROC_MASKED: &[&str] = &["sysrq-trigger", "kcore", "timer_list", "keys"];

fn rel(root: &Path, guest: &str) -> PathBuf {
    root.join(guest.trim_start_matches('/'))
}

/// Computes every step for `spec`, with the image at `lower`.
pub fn plan(spec: &VmSpec, lower: &Path) -> Vec<Step> {
    let staging = spec.staging_dir();
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut steps = vec![Step::MakePrivate];
    let (root, upper, work) = match &spec.layer_dir {
        Some(layer) => {
            steps.push(Step::Mkdir(layer.join("upper")));
            steps.push(Step::Mkdir(layer.join("work")));
            (staging.clone(), layer.join("upper"), layer.join("work"))
        }
        None => {
            steps.push(Step::Mount {
                fstype: "tmpfs",
                target: staging.clone(),
                flags: nosuid,
                data: "mode=0755".into(),
            });
            for d in ["upper", "work", "root"] {
                steps.push(Step::Mkdir(staging.join(d)));
            }
            (
                staging.join("root"),
                staging.join("upper"),
                staging.join("work"),
            )
        }
    };
    steps.push(Step::Mount {
        fstype: "overlay",
        target: root.clone(),
        flags: MsFlags::empty(),
        data: format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        ),
    });
    let r = |p: &str| rel(&root, p);
    for d in ["proc", "sys", "dev", "tmp", "run"] {
        steps.push(Step::Mkdir(r(d)));
    }
    steps.push(Step::Mount {
        fstype: "proc",
        target: r("proc"),
        flags: nosuid | MsFlags::MS_NOEXEC,
        data: String::new(),
    });
    // Sysctls: read-only but for the VM's own network namespace's.
    // (net first: the recursive read-only bind of /proc/sys copies it
    // with its read-write flag.)
    steps.push(Step::Bind {
        src: r("proc/sys/net"),
        dst: r("proc/sys/net"),
        readonly: false,
    });
    steps.push(Step::Bind {
        src: r("proc/sys"),
        dst: r("proc/sys"),
        readonly: true,
    });
    steps.push(Step::Mount {
        fstype: "sysfs",
        target: r("sys"),
        flags: nosuid | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        data: String::new(),
    });
    steps.push(Step::Mount {
        fstype: "tmpfs",
        target: r("dev"),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        data: "mode=0755,size=64k".into(),
    });
    for dev in DEVICES {
        let dst = r(&format!("dev/{dev}"));
        steps.push(Step::Touch(dst.clone()));
        steps.push(Step::Bind {
            src: Path::new("/dev").join(dev),
            dst,
            readonly: false,
        });
    }
    steps.push(Step::Mkdir(r("dev/pts")));
    steps.push(Step::Mount {
        fstype: "devpts",
        target: r("dev/pts"),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        data: "newinstance,ptmxmode=0666,mode=0620,gid=5".into(),
    });
    steps.push(Step::Symlink {
        target: "pts/ptmx".into(),
        link: r("dev/ptmx"),
    });
    steps.push(Step::Mkdir(r("dev/shm")));
    steps.push(Step::Mount {
        fstype: "tmpfs",
        target: r("dev/shm"),
        flags: nosuid,
        data: "mode=1777".into(),
    });
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            target: target.into(),
            link: r(&format!("dev/{link}")),
        });
    }
    for masked in PROC_MASKED {
        if !Path::new("/proc").join(masked).exists() {
            continue;
        }
        steps.push(Step::Bind {
            src: r("dev/null"),
            dst: r(&format!("proc/{masked}")),
            readonly: true,
        });
    }
    steps.push(Step::Mount {
        fstype: "tmpfs",
        target: r("tmp"),
        flags: nosuid,
        data: "mode=1777".into(),
    });
    steps.push(Step::Mount {
        fstype: "tmpfs",
        target: r("run"),
        flags: nosuid,
        data: "mode=0755".into(),
    });
    for share in &spec.hostfs {
        let dst = r(&share.dst.to_string_lossy());
        steps.push(if share.src.is_dir() {
            Step::Mkdir(dst.clone())
        } else {
            Step::Touch(dst.clone())
        });
        steps.push(Step::Bind {
            src: share.src.clone(),
            dst: dst.clone(),
            readonly: share.mode == ShareMode::Ro,
        });
        // No setuid programs or device nodes from the host through a share.
        steps.push(Step::Restrict(dst));
    }
    steps.push(Step::PivotRoot(root));
    steps.push(Step::WriteFile {
        path: "/etc/hostname".into(),
        content: format!("{}\n", spec.hostname()).into_bytes(),
        mode: 0o644,
    });
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    steps.push(Step::WriteFile {
        path: "/etc/hosts".into(),
        content: format!("{hosts}127.0.1.1\t{}\n", spec.hostname()).into_bytes(),
        mode: 0o644,
    });
    for file in &spec.files {
        steps.push(Step::WriteFile {
            path: file.path.clone(),
            content: file.content.clone().into_bytes(),
            mode: file.mode,
        });
    }
    steps
}

fn describe(step: &Step) -> String {
    match step {
        Step::Mount { fstype, target, .. } => format!("mount {fstype} on {}", target.display()),
        Step::Bind { src, dst, .. } => format!("bind {} on {}", src.display(), dst.display()),
        other => format!("{other:?}"),
    }
}

/// Applies the steps in order (in the guest's fresh mount namespace).
pub fn apply(steps: &[Step]) -> Result<(), RootfsError> {
    for step in steps {
        apply_one(step).map_err(|source| RootfsError {
            step: describe(step),
            source,
        })?;
    }
    Ok(())
}

fn apply_one(step: &Step) -> std::io::Result<()> {
    match step {
        Step::MakePrivate => {
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )?;
        }
        Step::Mount {
            fstype,
            target,
            flags,
            data,
        } => {
            nix::mount::mount(
                Some(*fstype),
                target,
                Some(*fstype),
                *flags,
                (!data.is_empty()).then_some(data.as_str()),
            )?;
        }
        Step::Bind { src, dst, readonly } => {
            nix::mount::mount(
                Some(src),
                dst,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            if *readonly {
                // Keep the flags the kernel locked on the source mount.
                let st = nix::sys::statvfs::statvfs(dst)?;
                let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                use nix::sys::statvfs::FsFlags;
                for (f, m) in [
                    (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                    (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                    (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                ] {
                    if st.flags().contains(f) {
                        flags |= m;
                    }
                }
                nix::mount::mount(None::<&str>, dst, None::<&str>, flags, None::<&str>)?;
            }
        }
        Step::Restrict(dst) => {
            use nix::sys::statvfs::FsFlags;
            let st = nix::sys::statvfs::statvfs(dst)?;
            let mut flags =
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            for (f, m) in [
                (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            ] {
                if st.flags().contains(f) {
                    flags |= m;
                }
            }
            nix::mount::mount(None::<&str>, dst, None::<&str>, flags, None::<&str>)?;
        }
        Step::Mkdir(dir) => std::fs::create_dir_all(dir)?,
        Step::Touch(file) => {
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(file)?;
        }
        Step::Symlink { target, link } => {
            let _ = std::fs::remove_file(link);
            std::os::unix::fs::symlink(target, link)?;
        }
        Step::PivotRoot(root) => {
            std::env::set_current_dir(root)?;
            // pivot_root(".", "."): the old root ends up on top of the new
            // one and is detached right away; no put_old directory needed.
            nix::unistd::pivot_root(".", ".")?;
            nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
            std::env::set_current_dir("/")?;
        }
        Step::WriteFile {
            path,
            content,
            mode,
        } => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, content)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_layer_plan() {
        let mut spec = VmSpec::named("v1");
        spec.run_dir = Some("/run/t".into());
        spec.hostfs.push(crate::spec::Share {
            src: "/etc".into(),
            dst: "/mnt/etc".into(),
            mode: ShareMode::Ro,
        });
        let steps = plan(&spec, Path::new("/"));
        assert_eq!(steps[0], Step::MakePrivate);
        assert!(steps.contains(&Step::Mount {
            fstype: "overlay",
            target: "/run/t/v1.root/root".into(),
            flags: MsFlags::empty(),
            data: "lowerdir=/,upperdir=/run/t/v1.root/upper,workdir=/run/t/v1.root/work".into(),
        }));
        assert!(steps.contains(&Step::Bind {
            src: "/etc".into(),
            dst: "/run/t/v1.root/root/mnt/etc".into(),
            readonly: true
        }));
        let pivot = steps
            .iter()
            .position(|s| matches!(s, Step::PivotRoot(_)))
            .unwrap();
        let hostname = steps
            .iter()
            .position(
                |s| matches!(s, Step::WriteFile { path, .. } if path == Path::new("/etc/hostname")),
            )
            .unwrap();
        assert!(pivot < hostname, "files are written inside the new root");
    }
}
