//! Copying trees with their metadata, and merging an overlay upper
//! directory into a copy of its image (what `layer commit` does).

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

use crate::diff::{EntryInfo, UpperKind};

/// Errors copying or merging trees.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// An entry could not be copied.
    #[error("cannot copy {from} to {to}")]
    Copy {
        /// The source entry.
        from: PathBuf,
        /// The destination.
        to: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An entry could not be read or removed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The entry.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Whether an xattr is overlayfs's own bookkeeping (not to be copied).
fn is_overlay_xattr(name: &std::ffi::OsStr) -> bool {
    let n = name.as_encoded_bytes();
    n.starts_with(b"trusted.overlay.") || n.starts_with(b"user.overlay.")
}

fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let names = match xattr::list(src) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names {
        if is_overlay_xattr(&name) {
            continue;
        }
        if let Some(value) = xattr::get(src, &name)? {
            xattr::set(dst, &name, &value)?;
        }
    }
    Ok(())
}

/// Sets owner, mode and modification time of `dst` from `meta` (owner
/// first: a chown clears set-id bits).
fn apply_metadata(dst: &Path, meta: &Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// Copies one entry (not its children) from `src` to `dst` with owner, mode,
/// times and xattrs (overlay ones left out). With `link_files`, a regular
/// file is hard-linked instead of copied (copied all the same across file
/// systems).
pub fn copy_entry(
    src: &Path,
    dst: &Path,
    meta: &Metadata,
    link_files: bool,
) -> Result<(), TreeError> {
    let copy = || -> io::Result<()> {
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(dst)?;
        } else if ft.is_file() {
            if link_files {
                match fs::hard_link(src, dst) {
                    // Across file systems: fall back to a copy.
                    Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {}
                    other => return other,
                }
            }
            fs::copy(src, dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
        } else {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else if ft.is_fifo() {
                SFlag::S_IFIFO
            } else {
                SFlag::S_IFSOCK
            };
            mknod(
                dst,
                kind,
                Mode::from_bits_truncate(meta.mode() & 0o7777),
                meta.rdev(),
            )?;
        }
        if !ft.is_symlink() {
            copy_xattrs(src, dst)?;
        }
        apply_metadata(dst, meta)
    };
    copy().map_err(|source| TreeError::Copy {
        from: src.to_path_buf(),
        to: dst.to_path_buf(),
        source,
    })
}

/// Copies the contents of `src` into the existing directory `dst`,
/// hard-linking regular files when `link_files` (for a read-only image that
/// is to share them).
pub fn copy_tree(src: &Path, dst: &Path, link_files: bool) -> Result<(), TreeError> {
    let walk = walkdir::WalkDir::new(src)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    let mut dirs = Vec::new();
    for entry in walk {
        let entry = entry.map_err(|e| TreeError::Io {
            op: "read",
            path: e.path().unwrap_or(src).to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let meta = entry.metadata().map_err(|e| TreeError::Io {
            op: "read",
            path: entry.path().to_path_buf(),
            source: e.into(),
        })?;
        copy_entry(entry.path(), &dst.join(rel), &meta, link_files)?;
        if meta.is_dir() {
            dirs.push((dst.join(rel), meta));
        }
    }
    // Filling a directory changed its time: set it again, deepest first.
    for (dir, meta) in dirs.iter().rev() {
        let _ = apply_metadata(dir, meta);
    }
    Ok(())
}

/// Removes whatever is at `path` (a file, symlink or a whole directory).
pub fn remove_any(path: &Path) -> Result<(), TreeError> {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    res.map_err(|source| TreeError::Io {
        op: "remove",
        path: path.to_path_buf(),
        source,
    })
}

/// Applies an overlay upper directory to `target`, a copy of its lower
/// tree, so that `target` becomes what the overlay showed: whiteouts delete,
/// opaque directories replace, everything else is copied over.
pub fn merge_upper(upper: &Path, target: &Path) -> Result<(), TreeError> {
    let walk = walkdir::WalkDir::new(upper)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    let mut dirs = Vec::new();
    for entry in walk {
        let read_err = |path: &Path, source: io::Error| TreeError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        };
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(upper).to_path_buf();
            read_err(&path, e.into())
        })?;
        let src = entry.path();
        let rel = src.strip_prefix(upper).unwrap_or(src);
        let dst = target.join(rel);
        let info = EntryInfo::from_path(src).map_err(|e| read_err(src, e))?;
        let meta = fs::symlink_metadata(src).map_err(|e| read_err(src, e))?;
        match info.upper_kind() {
            UpperKind::Whiteout => remove_any(&dst)?,
            UpperKind::OpaqueDir => {
                remove_any(&dst)?;
                copy_entry(src, &dst, &meta, false)?;
                dirs.push((dst, meta));
            }
            UpperKind::Dir => {
                let existing = fs::symlink_metadata(&dst).ok();
                if existing.is_some_and(|m| m.is_dir()) {
                    copy_xattrs(src, &dst).map_err(|e| read_err(src, e))?;
                } else {
                    remove_any(&dst)?;
                    copy_entry(src, &dst, &meta, false)?;
                }
                dirs.push((dst, meta));
            }
            UpperKind::Other => {
                remove_any(&dst)?;
                copy_entry(src, &dst, &meta, false)?;
            }
        }
    }
    for (dir, meta) in dirs.iter().rev() {
        apply_metadata(dir, meta).map_err(|source| TreeError::Io {
            op: "set metadata of",
            path: dir.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::digest_tree;

    #[test]
    fn copy_keeps_the_digest_with_or_without_links() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        fs::create_dir_all(s.join("a/b")).unwrap();
        fs::write(s.join("a/b/f"), "hello").unwrap();
        fs::set_permissions(s.join("a/b/f"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(s.join("a"), fs::Permissions::from_mode(0o711)).unwrap();
        std::os::unix::fs::symlink("b/f", s.join("a/l")).unwrap();
        let want = digest_tree(s).unwrap();
        for link in [false, true] {
            let dst = tempfile::tempdir().unwrap();
            copy_tree(s, dst.path(), link).unwrap();
            assert_eq!(digest_tree(dst.path()).unwrap(), want, "link_files={link}");
        }
    }

    #[test]
    fn merge_copies_and_replaces() {
        let upper = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        let (u, t) = (upper.path(), target.path());
        fs::create_dir_all(t.join("etc")).unwrap();
        fs::write(t.join("etc/hosts"), "old").unwrap();
        fs::write(t.join("etc/keep"), "k").unwrap();
        fs::write(t.join("x"), "was a file").unwrap();
        fs::create_dir_all(u.join("etc")).unwrap();
        fs::write(u.join("etc/hosts"), "new").unwrap();
        fs::create_dir_all(u.join("x")).unwrap();
        fs::write(u.join("x/y"), "now a dir").unwrap();
        merge_upper(u, t).unwrap();
        assert_eq!(fs::read_to_string(t.join("etc/hosts")).unwrap(), "new");
        assert_eq!(fs::read_to_string(t.join("etc/keep")).unwrap(), "k");
        assert_eq!(fs::read_to_string(t.join("x/y")).unwrap(), "now a dir");
    }
}
