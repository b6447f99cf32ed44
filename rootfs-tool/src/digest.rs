//! The content digest of a directory tree.
//!
//! A canonical walk of the tree (depth first, names sorted bytewise, symlinks
//! not followed, the root itself left out) feeds one SHA-256 with one record
//! per entry:
//!
//! ```text
//! TAG \0 PATH \0 MODE \0 UID \0 GID \0 LEN:EXTRA \n
//! ```
//!
//! `TAG` is `d` directory, `f` regular file, `l` symlink, `c`/`b`
//! character/block device, `p` fifo, `s` socket; `PATH` is relative to the
//! root; `MODE` the permission bits (`0o7777`) in octal (0 for symlinks);
//! `EXTRA` the SHA-256 of a file's contents, a symlink's target or a
//! device's `major:minor`. Modification times, inode numbers, hard-link
//! structure and extended attributes are not part of the digest, so a tar
//! round trip or a copy keeps it.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Prefix of every digest string.
pub const DIGEST_PREFIX: &str = "sha256:";

/// Errors computing a digest.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// An entry of the tree could not be listed or read.
    #[error("cannot read {path} while computing the digest of {root}")]
    Read {
        /// The tree's root.
        root: PathBuf,
        /// The entry that failed.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// The digest of a tree with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDigest {
    /// `sha256:` and 64 hex digits.
    pub digest: String,
    /// Total size in bytes of the regular files.
    pub size: u64,
    /// Number of entries (the root not counted).
    pub entries: u64,
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 of a file's contents, in hex.
pub fn file_sha256(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The one-letter tag of a file type used in digest records and diffs.
pub fn type_tag(meta: &Metadata) -> char {
    let ft = meta.file_type();
    if ft.is_dir() {
        'd'
    } else if ft.is_file() {
        'f'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else {
        's'
    }
}

/// Major and minor numbers of a device number.
pub fn dev_major_minor(rdev: u64) -> (u64, u64) {
    (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
}

/// Appends the digest record of one entry to `out`. `path` is the entry on
/// disk, `rel` its path relative to the tree's root.
fn record(path: &Path, rel: &Path, meta: &Metadata, out: &mut Vec<u8>) -> io::Result<()> {
    let tag = type_tag(meta);
    let extra: Vec<u8> = match tag {
        'f' => file_sha256(path)?.into_bytes(),
        'l' => std::fs::read_link(path)?.as_os_str().as_bytes().to_vec(),
        'c' | 'b' => {
            let (ma, mi) = dev_major_minor(meta.rdev());
            format!("{ma}:{mi}").into_bytes()
        }
        _ => Vec::new(),
    };
    let mode = if tag == 'l' { 0 } else { meta.mode() & 0o7777 };
    out.push(tag as u8);
    out.push(0);
    out.extend_from_slice(rel.as_os_str().as_bytes());
    out.push(0);
    out.extend_from_slice(
        format!("{mode:o}\0{}\0{}\0{}:", meta.uid(), meta.gid(), extra.len()).as_bytes(),
    );
    out.extend_from_slice(&extra);
    out.push(b'\n');
    Ok(())
}

/// Computes the digest of the tree at `root` (see the module's doc).
pub fn digest_tree(root: &Path) -> Result<TreeDigest, DigestError> {
    let err = |path: &Path, source: io::Error| DigestError::Read {
        root: root.to_path_buf(),
        path: path.to_path_buf(),
        source,
    };
    let mut hasher = Sha256::new();
    hasher.update(b"vbet-tree-v1\n");
    let mut size = 0u64;
    let mut entries = 0u64;
    let mut rec = Vec::with_capacity(256);
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            err(&path, e.into())
        })?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| err(path, e.into()))?;
        let rel = path.strip_prefix(root).unwrap_or(path);
        rec.clear();
        record(path, rel, &meta, &mut rec).map_err(|e| err(path, e))?;
        hasher.update(&rec);
        entries += 1;
        if meta.is_file() {
            size += meta.len();
        }
    }
    Ok(TreeDigest {
        digest: format!("{DIGEST_PREFIX}{}", hex(&hasher.finalize())),
        size,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("etc/sub")).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        fs::write(root.join("etc/sub/a"), "a").unwrap();
        fs::write(root.join("bin/busybox"), vec![7u8; 300_000]).unwrap();
        symlink("busybox", root.join("bin/sh")).unwrap();
    }

    #[test]
    fn same_tree_same_digest_wherever_it_is() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        tree(a.path());
        tree(b.path());
        let da = digest_tree(a.path()).unwrap();
        assert_eq!(da, digest_tree(b.path()).unwrap());
        assert!(da.digest.starts_with(DIGEST_PREFIX) && da.digest.len() == 71);
        assert_eq!(da.size, 20 + 1 + 300_000);
        assert_eq!(da.entries, 7);
    }

    #[test]
    fn every_recorded_property_changes_the_digest() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        let base = digest_tree(a.path()).unwrap().digest;
        let changed = |f: &dyn Fn(&Path), undo: &dyn Fn(&Path)| {
            f(a.path());
            let d = digest_tree(a.path()).unwrap().digest;
            undo(a.path());
            assert_eq!(digest_tree(a.path()).unwrap().digest, base, "undo failed");
            d
        };
        // contents
        let d = changed(&|r| fs::write(r.join("etc/sub/a"), "b").unwrap(), &|r| {
            fs::write(r.join("etc/sub/a"), "a").unwrap()
        });
        assert_ne!(d, base);
        // mode
        let d = changed(
            &|r| {
                fs::set_permissions(r.join("etc/hosts"), fs::Permissions::from_mode(0o600)).unwrap()
            },
            &|r| {
                fs::set_permissions(r.join("etc/hosts"), fs::Permissions::from_mode(0o644)).unwrap()
            },
        );
        assert_ne!(d, base);
        // symlink target
        let d = changed(
            &|r| {
                fs::remove_file(r.join("bin/sh")).unwrap();
                symlink("/bin/busybox", r.join("bin/sh")).unwrap();
            },
            &|r| {
                fs::remove_file(r.join("bin/sh")).unwrap();
                symlink("busybox", r.join("bin/sh")).unwrap();
            },
        );
        assert_ne!(d, base);
        // path (rename)
        let d = changed(
            &|r| fs::rename(r.join("etc/sub/a"), r.join("etc/sub/b")).unwrap(),
            &|r| fs::rename(r.join("etc/sub/b"), r.join("etc/sub/a")).unwrap(),
        );
        assert_ne!(d, base);
        // an empty directory
        let d = changed(&|r| fs::create_dir(r.join("tmp")).unwrap(), &|r| {
            fs::remove_dir(r.join("tmp")).unwrap()
        });
        assert_ne!(d, base);
    }

    #[test]
    fn modification_times_do_not_matter() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        let base = digest_tree(a.path()).unwrap();
        let f = File::options()
            .write(true)
            .open(a.path().join("etc/hosts"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(digest_tree(a.path()).unwrap(), base);
    }

    #[test]
    fn a_missing_root_names_it() {
        let err = digest_tree(Path::new("/nonexistent/vbet-root")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vbet-root"), "{err}");
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
