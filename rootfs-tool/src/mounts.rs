//! Mounts: reading the mount table, mounting tmpfs and overlay file systems,
//! and removing a tree safely (never through a mount point inside it).

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// Errors mounting, unmounting or removing a tree.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount table could not be read.
    #[error("cannot read the mount table /proc/self/mountinfo")]
    MountTable(#[source] io::Error),
    /// A mount failed.
    #[error("cannot mount {fstype} on {target} (options {data:?})")]
    Mount {
        /// File system type.
        fstype: String,
        /// Mount point.
        target: PathBuf,
        /// Mount options.
        data: String,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// An unmount failed.
    #[error("cannot unmount {target}; is a process still using it?")]
    Unmount {
        /// Mount point.
        target: PathBuf,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// Mount points remain inside a tree that is to be removed.
    #[error(
        "refusing to remove {path}: {mounts:?} are still mounted inside it; unmount them first"
    )]
    StillMounted {
        /// The tree.
        path: PathBuf,
        /// Mount points left inside it.
        mounts: Vec<PathBuf>,
    },
    /// A tree could not be removed.
    #[error("cannot remove {path}")]
    Remove {
        /// The tree.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// File system type (`overlay`, `tmpfs`, …).
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Per-super-block options (for overlay: lowerdir, upperdir, workdir).
    pub super_options: String,
}

/// Undoes the octal escapes (`\040` for a space) of the mount table.
pub fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 2 {
            continue;
        }
        out.push(MountEntry {
            mount_point: PathBuf::from(unescape_mount_field(left[4])),
            fstype: right[0].to_string(),
            source: unescape_mount_field(right[1]),
            super_options: right
                .get(2)
                .map(|s| unescape_mount_field(s))
                .unwrap_or_default(),
        });
    }
    out
}

/// The mount table of this process's mount namespace.
pub fn mount_table() -> Result<Vec<MountEntry>, MountError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(MountError::MountTable)?;
    Ok(parse_mountinfo(&text))
}

/// Mount points at or below `dir`, deepest last (in mount order).
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, MountError> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(mount_table()?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(&dir))
        .collect())
}

/// Whether `path` is a mount point.
pub fn is_mount_point(path: &Path) -> Result<bool, MountError> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(mount_table()?.iter().any(|m| m.mount_point == path))
}

/// Unmounts everything mounted at or below `dir`, most recent first
/// (lazily, so a busy mount is detached). Best effort: every mount is tried
/// and the first error is returned.
pub fn unmount_all_under(dir: &Path) -> Result<(), MountError> {
    let mut first_err = None;
    // Stacked mounts appear once per layer; repeat until none is left or no
    // progress is made.
    for _ in 0..8 {
        let mounts = mounts_under(dir)?;
        if mounts.is_empty() {
            break;
        }
        for m in mounts.iter().rev() {
            if let Err(source) = nix::mount::umount2(m, MntFlags::MNT_DETACH) {
                if source != nix::Error::EINVAL && source != nix::Error::ENOENT {
                    first_err.get_or_insert(MountError::Unmount {
                        target: m.clone(),
                        source,
                    });
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Removes the tree at `path` after unmounting whatever is mounted inside it
/// (a failed debootstrap can leave /proc or /dev mounted); refuses if a mount
/// point remains. A missing `path` is not an error.
pub fn remove_tree(path: &Path) -> Result<(), MountError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let unmounted = unmount_all_under(path);
    let left = mounts_under(path)?;
    if !left.is_empty() {
        return Err(MountError::StillMounted {
            path: path.to_path_buf(),
            mounts: left,
        });
    }
    unmounted?;
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MountError::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Mounts a tmpfs of `size` bytes on `target` (mode 0755).
pub fn mount_tmpfs(target: &Path, size: u64) -> Result<(), MountError> {
    let data = format!("size={size},mode=0755");
    nix::mount::mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|source| MountError::Mount {
        fstype: "tmpfs".into(),
        target: target.to_path_buf(),
        data,
        source,
    })
}

/// Mounts an overlay on `target` with the given mount data
/// (`lowerdir=…,upperdir=…,workdir=…`).
pub fn mount_overlay(target: &Path, data: &str) -> Result<(), MountError> {
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data),
    )
    .map_err(|source| MountError::Mount {
        fstype: "overlay".into(),
        target: target.to_path_buf(),
        data: data.to_string(),
        source,
    })
}

/// Unmounts `target` (lazily).
pub fn unmount(target: &Path) -> Result<(), MountError> {
    nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(|source| MountError::Unmount {
        target: target.to_path_buf(),
        source,
    })
}

/// The mount calls layers make, behind a trait so that their setup logic is
/// testable with [`RecordingMounter`] (no root needed).
pub trait Mounter {
    /// Mounts a tmpfs of `size` bytes on `target`.
    fn mount_tmpfs(&self, target: &Path, size: u64) -> Result<(), MountError>;
    /// Mounts an overlay with mount data `data` on `target`.
    fn mount_overlay(&self, target: &Path, data: &str) -> Result<(), MountError>;
}

/// The real mounts (through `mount(2)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemMounter;

impl Mounter for SystemMounter {
    fn mount_tmpfs(&self, target: &Path, size: u64) -> Result<(), MountError> {
        mount_tmpfs(target, size)
    }

    fn mount_overlay(&self, target: &Path, data: &str) -> Result<(), MountError> {
        mount_overlay(target, data)
    }
}

/// A fake [`Mounter`] that records each call (`tmpfs TARGET size=N`,
/// `overlay TARGET DATA`) and fails those whose type is in `fail`.
#[derive(Debug, Default)]
pub struct RecordingMounter {
    /// The calls made, in order.
    pub calls: std::sync::Mutex<Vec<String>>,
    /// File system types whose mounts fail (with EPERM).
    pub fail: Vec<&'static str>,
}

impl RecordingMounter {
    fn record(&self, fstype: &str, target: &Path, data: String) -> Result<(), MountError> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(format!("{fstype} {} {data}", target.display()));
        }
        if self.fail.contains(&fstype) {
            return Err(MountError::Mount {
                fstype: fstype.into(),
                target: target.to_path_buf(),
                data,
                source: nix::Error::EPERM,
            });
        }
        Ok(())
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Mounter for RecordingMounter {
    fn mount_tmpfs(&self, target: &Path, size: u64) -> Result<(), MountError> {
        self.record("tmpfs", target, format!("size={size}"))
    }

    fn mount_overlay(&self, target: &Path, data: &str) -> Result<(), MountError> {
        self.record("overlay", target, data.to_string())
    }
}

/// Unmounts everything at or below a directory when dropped, so a test or a
/// failed operation leaves no mount behind.
#[derive(Debug)]
pub struct MountGuard {
    dir: PathBuf,
}

impl MountGuard {
    /// A guard for everything mounted at or below `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        MountGuard { dir: dir.into() }
    }

    /// The guarded directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = unmount_all_under(&self.dir) {
            tracing::warn!("cleaning up mounts under {}: {e}", self.dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
88 22 0:50 / /var/lib/vbet/l\\0401/fs rw,nosuid,nodev - tmpfs tmpfs rw,size=65536k,mode=755
90 22 0:51 / /tmp/m rw - overlay overlay rw,lowerdir=/img/rootfs,upperdir=/l/fs/upper,workdir=/l/fs/work
";

    #[test]
    fn parses_mount_points_types_and_options() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].mount_point, PathBuf::from("/var/lib/vbet/l 1/fs"));
        assert_eq!(m[1].fstype, "tmpfs");
        assert_eq!(m[2].fstype, "overlay");
        assert!(m[2].super_options.contains("upperdir=/l/fs/upper"));
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape_mount_field("a\\040b\\011c"), "a b\tc");
        assert_eq!(unescape_mount_field("a\\x"), "a\\x");
        assert_eq!(unescape_mount_field("end\\04"), "end\\04");
    }

    #[test]
    fn remove_tree_of_missing_path_is_ok() {
        remove_tree(Path::new("/nonexistent/vbet/x")).unwrap();
    }

    #[test]
    fn remove_tree_removes_plain_trees() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::fs::write(t.join("a/b/c"), "x").unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
    }
}
