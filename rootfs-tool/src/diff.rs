//! What a VM changed: the entries of an overlay upper directory classified
//! against the image below it.
//!
//! overlayfs records a deletion as a *whiteout* (a character device 0/0, or
//! a zero-size file with the `trusted.overlay.whiteout` xattr) and a
//! directory whose lower contents are hidden as an *opaque* directory (the
//! `trusted.overlay.opaque` xattr set to `y`). Layers are mounted with
//! `redirect_dir=off,metacopy=off`, so every other upper entry is a full
//! copy.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::digest::{dev_major_minor, file_sha256, type_tag};

/// xattr marking an opaque directory.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// xattr marking a file as a whiteout (besides the 0/0 character device).
pub const WHITEOUT_XATTR: &str = "trusted.overlay.whiteout";

/// Errors computing a diff.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// An entry of the upper or lower tree could not be read.
    #[error("cannot read {path} while comparing a layer with its image")]
    Read {
        /// The entry.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// How a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Not in the image, now present.
    Added,
    /// In the image, now different (contents, type, mode, owner or target).
    Modified,
    /// In the image, now gone.
    Deleted,
}

impl ChangeKind {
    /// One letter, as in `docker diff`: `A`, `M` or `D`.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'M',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// How it changed.
    pub kind: ChangeKind,
    /// The path as the VM sees it (`/etc/hosts`).
    pub path: String,
}

/// What an entry of an upper directory means to overlayfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpperKind {
    /// A whiteout: the lower entry of that name is deleted.
    Whiteout,
    /// A directory hiding the lower directory's contents.
    OpaqueDir,
    /// A directory merged with the lower one.
    Dir,
    /// A file, symlink or device replacing any lower entry.
    Other,
}

/// What classification needs to know of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Type tag (see [`crate::digest::type_tag`]).
    pub tag: char,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Device major and minor numbers (devices only).
    pub rdev: (u64, u64),
    /// Whether the whiteout xattr is set.
    pub whiteout_xattr: bool,
    /// Whether the opaque xattr is `y`.
    pub opaque_xattr: bool,
}

impl EntryInfo {
    /// Reads an entry (without following a symlink).
    pub fn from_path(path: &Path) -> io::Result<Self> {
        let meta = std::fs::symlink_metadata(path)?;
        let tag = type_tag(&meta);
        let ft = meta.file_type();
        let rdev = if ft.is_char_device() || ft.is_block_device() {
            dev_major_minor(meta.rdev())
        } else {
            (0, 0)
        };
        let opaque_xattr =
            tag == 'd' && xattr_value(path, OPAQUE_XATTR).as_deref() == Some(b"y".as_slice());
        let whiteout_xattr =
            tag == 'f' && meta.len() == 0 && xattr_value(path, WHITEOUT_XATTR).is_some();
        Ok(EntryInfo {
            tag,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.len(),
            rdev,
            whiteout_xattr,
            opaque_xattr,
        })
    }

    /// What this entry means in an upper directory.
    pub fn upper_kind(&self) -> UpperKind {
        match self.tag {
            'c' if self.rdev == (0, 0) => UpperKind::Whiteout,
            'f' if self.whiteout_xattr => UpperKind::Whiteout,
            'd' if self.opaque_xattr => UpperKind::OpaqueDir,
            'd' => UpperKind::Dir,
            _ => UpperKind::Other,
        }
    }
}

fn xattr_value(path: &Path, name: &str) -> Option<Vec<u8>> {
    xattr::get(path, name).ok().flatten()
}

/// Classifies one upper entry against the lower entry of the same path.
/// `same_content` compares file contents or symlink targets and is only
/// called when everything else is equal. `None`: nothing the VM would see
/// changed (a directory merely holding changes, or a copy-up of an
/// unchanged file).
pub fn classify(
    upper: &EntryInfo,
    lower: Option<&EntryInfo>,
    same_content: impl FnOnce() -> io::Result<bool>,
) -> io::Result<Option<ChangeKind>> {
    if upper.upper_kind() == UpperKind::Whiteout {
        return Ok(lower.map(|_| ChangeKind::Deleted));
    }
    let Some(lower) = lower else {
        return Ok(Some(ChangeKind::Added));
    };
    let modified = Some(ChangeKind::Modified);
    if upper.tag != lower.tag || upper.uid != lower.uid || upper.gid != lower.gid {
        return Ok(modified);
    }
    if upper.tag != 'l' && upper.mode != lower.mode {
        return Ok(modified);
    }
    match upper.tag {
        'f' if upper.size != lower.size => Ok(modified),
        'f' | 'l' => Ok(if same_content()? { None } else { modified }),
        'c' | 'b' if upper.rdev != lower.rdev => Ok(modified),
        _ => Ok(None),
    }
}

fn same_content(a: &Path, b: &Path, tag: char) -> io::Result<bool> {
    match tag {
        'l' => Ok(std::fs::read_link(a)? == std::fs::read_link(b)?),
        'f' => Ok(file_sha256(a)? == file_sha256(b)?),
        _ => Ok(true),
    }
}

fn guest_path(rel: &Path) -> String {
    format!("/{}", rel.display())
}

/// Lists what the upper directory `upper` changes in the image tree `lower`,
/// sorted by path. A deleted or replaced directory is listed once, not with
/// everything it held.
pub fn diff_layer(upper: &Path, lower: &Path) -> Result<Vec<Change>, DiffError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| DiffError::Read { path, source }
    };
    let mut changes = Vec::new();
    // Upper directories with no lower directory below them: everything in
    // them is new, and the lower tree must not be looked at (a lower
    // symlink of that name could lead anywhere).
    let mut no_lower: Vec<PathBuf> = Vec::new();
    let walk = walkdir::WalkDir::new(upper)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(upper).to_path_buf();
            DiffError::Read {
                path,
                source: e.into(),
            }
        })?;
        let upath = entry.path();
        let rel = upath.strip_prefix(upper).unwrap_or(upath).to_path_buf();
        let lpath = lower.join(&rel);
        let uinfo = EntryInfo::from_path(upath).map_err(read_err(upath))?;
        let linfo = if no_lower.iter().any(|p| rel.starts_with(p)) {
            None
        } else {
            match EntryInfo::from_path(&lpath) {
                Ok(info) => Some(info),
                Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                    None
                }
                Err(e) => return Err(read_err(&lpath)(e)),
            }
        };
        let kind = classify(&uinfo, linfo.as_ref(), || {
            same_content(upath, &lpath, uinfo.tag)
        })
        .map_err(read_err(upath))?;
        if let Some(kind) = kind {
            changes.push(Change {
                kind,
                path: guest_path(&rel),
            });
        }
        if uinfo.tag != 'd' {
            continue;
        }
        if linfo.as_ref().is_none_or(|l| l.tag != 'd') {
            no_lower.push(rel);
        } else if uinfo.upper_kind() == UpperKind::OpaqueDir {
            // Lower entries hidden by the opaque directory are deleted.
            let mut hidden: Vec<_> = std::fs::read_dir(&lpath)
                .map_err(read_err(&lpath))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .filter(|name| std::fs::symlink_metadata(upath.join(name)).is_err())
                .collect();
            hidden.sort();
            for name in hidden {
                changes.push(Change {
                    kind: ChangeKind::Deleted,
                    path: guest_path(&rel.join(name)),
                });
            }
        }
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(tag: char) -> EntryInfo {
        EntryInfo {
            tag,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 3,
            rdev: (0, 0),
            whiteout_xattr: false,
            opaque_xattr: false,
        }
    }

    fn never() -> io::Result<bool> {
        panic!("contents must not be compared here")
    }

    #[test]
    fn whiteouts() {
        let mut wh = info('c');
        wh.mode = 0;
        assert_eq!(wh.upper_kind(), UpperKind::Whiteout);
        assert_eq!(
            classify(&wh, Some(&info('f')), never).unwrap(),
            Some(ChangeKind::Deleted)
        );
        assert_eq!(
            classify(&wh, Some(&info('d')), never).unwrap(),
            Some(ChangeKind::Deleted)
        );
        // A whiteout of something the image does not have changes nothing.
        assert_eq!(classify(&wh, None, never).unwrap(), None);
        // The xattr form of a whiteout.
        let mut xwh = info('f');
        xwh.size = 0;
        xwh.whiteout_xattr = true;
        assert_eq!(xwh.upper_kind(), UpperKind::Whiteout);
        assert_eq!(
            classify(&xwh, Some(&info('f')), never).unwrap(),
            Some(ChangeKind::Deleted)
        );
    }

    #[test]
    fn a_real_character_device_is_not_a_whiteout() {
        let mut null = info('c');
        null.rdev = (1, 3);
        assert_eq!(null.upper_kind(), UpperKind::Other);
        assert_eq!(
            classify(&null, None, never).unwrap(),
            Some(ChangeKind::Added)
        );
        let mut zero = null.clone();
        zero.rdev = (1, 5);
        assert_eq!(
            classify(&zero, Some(&null), never).unwrap(),
            Some(ChangeKind::Modified)
        );
        assert_eq!(classify(&null, Some(&null), never).unwrap(), None);
    }

    #[test]
    fn opaque_directories() {
        let mut op = info('d');
        op.opaque_xattr = true;
        assert_eq!(op.upper_kind(), UpperKind::OpaqueDir);
        assert_eq!(classify(&op, Some(&info('d')), never).unwrap(), None);
        assert_eq!(classify(&op, None, never).unwrap(), Some(ChangeKind::Added));
        assert_eq!(
            classify(&op, Some(&info('f')), never).unwrap(),
            Some(ChangeKind::Modified)
        );
    }

    #[test]
    fn files() {
        let f = info('f');
        assert_eq!(classify(&f, None, never).unwrap(), Some(ChangeKind::Added));
        assert_eq!(classify(&f, Some(&f), || Ok(true)).unwrap(), None);
        assert_eq!(
            classify(&f, Some(&f), || Ok(false)).unwrap(),
            Some(ChangeKind::Modified)
        );
        let mut bigger = f.clone();
        bigger.size = 4;
        assert_eq!(
            classify(&bigger, Some(&f), never).unwrap(),
            Some(ChangeKind::Modified)
        );
        let mut chmod = f.clone();
        chmod.mode = 0o600;
        assert_eq!(
            classify(&chmod, Some(&f), never).unwrap(),
            Some(ChangeKind::Modified)
        );
        let mut chown = f.clone();
        chown.uid = 1000;
        assert_eq!(
            classify(&chown, Some(&f), never).unwrap(),
            Some(ChangeKind::Modified)
        );
        // Type changes.
        assert_eq!(
            classify(&f, Some(&info('d')), never).unwrap(),
            Some(ChangeKind::Modified)
        );
        assert_eq!(
            classify(&info('d'), Some(&f), never).unwrap(),
            Some(ChangeKind::Modified)
        );
    }

    #[test]
    fn symlinks_compare_targets_not_modes() {
        let mut a = info('l');
        a.mode = 0o777;
        let mut b = info('l');
        b.mode = 0o755;
        assert_eq!(classify(&a, Some(&b), || Ok(true)).unwrap(), None);
        assert_eq!(
            classify(&a, Some(&b), || Ok(false)).unwrap(),
            Some(ChangeKind::Modified)
        );
    }

    #[test]
    fn plain_directories_only_when_their_metadata_changed() {
        let d = info('d');
        assert_eq!(classify(&d, Some(&d), never).unwrap(), None);
        let mut d2 = d.clone();
        d2.mode = 0o700;
        assert_eq!(
            classify(&d2, Some(&d), never).unwrap(),
            Some(ChangeKind::Modified)
        );
    }

    #[test]
    fn walk_without_overlay_entries() {
        use std::fs;
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        let (l, u) = (lower.path(), upper.path());
        fs::create_dir_all(l.join("etc")).unwrap();
        fs::write(l.join("etc/hosts"), "a").unwrap();
        fs::write(l.join("etc/same"), "s").unwrap();
        std::os::unix::fs::symlink("etc", l.join("link")).unwrap();
        fs::create_dir_all(u.join("etc")).unwrap();
        fs::write(u.join("etc/hosts"), "b").unwrap();
        fs::write(u.join("etc/same"), "s").unwrap();
        fs::write(u.join("etc/new"), "n").unwrap();
        // A directory where the image has a symlink: its contents are new
        // and the symlink is not followed.
        fs::create_dir_all(u.join("link")).unwrap();
        fs::write(u.join("link/hosts"), "x").unwrap();
        let got: Vec<(char, String)> = diff_layer(u, l)
            .unwrap()
            .into_iter()
            .map(|c| (c.kind.letter(), c.path))
            .collect();
        let want = vec![
            ('M', "/etc/hosts".to_string()),
            ('A', "/etc/new".to_string()),
            ('M', "/link".to_string()),
            ('A', "/link/hosts".to_string()),
        ];
        assert_eq!(got, want);
    }
}
