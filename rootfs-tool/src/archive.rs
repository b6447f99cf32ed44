//! Tar archives of image trees: `export` and `import`, plain, gzip or zstd.
//!
//! An archive holds the tree's entries relative to its root (`etc/hosts`)
//! with owners, modes and times, in the canonical order of
//! [`crate::digest`]; devices and fifos are kept. Extended attributes and
//! hard-link structure are not, so an export/import round trip keeps the
//! digest (which records neither).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use crate::digest::{dev_major_minor, digest_tree};
use crate::manifest::{ImageKind, Manifest};
use crate::store::{Image, ImageStore, StoreError};

/// Errors writing or reading archives.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive could not be written.
    #[error("cannot write archive {path}")]
    Write {
        /// The archive file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The archive could not be read or unpacked.
    #[error("cannot unpack archive {path}; is it a tar file (plain, .gz or .zst)?")]
    Read {
        /// The archive file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An entry would land outside the tree.
    #[error(
        "archive {path} has an unsafe entry {entry:?} (absolute or with `..`); refusing to unpack it"
    )]
    UnsafeEntry {
        /// The archive file.
        path: PathBuf,
        /// The entry's path.
        entry: PathBuf,
    },
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Compression of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (`.tar.gz`, `.tgz`).
    Gzip,
    /// zstd (`.tar.zst`, `.tzst`).
    Zstd,
}

impl Compression {
    /// The compression a file name asks for.
    pub fn from_path(path: &Path) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.ends_with(".gz") || name.ends_with(".tgz") {
            Compression::Gzip
        } else if name.ends_with(".zst") || name.ends_with(".tzst") || name.ends_with(".zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The compression of data starting with `magic` (from its first bytes).
    pub fn sniff(magic: &[u8]) -> Self {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Writes the tree at `root` as a tar stream to `out`.
pub fn write_tar<W: Write>(root: &Path, out: W) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        if entry.file_type().is_socket() {
            tracing::warn!("not archiving socket {}", entry.path().display());
            continue;
        }
        let ft = entry.file_type();
        if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            // tar's own append names special files by their source path;
            // write their header here.
            let meta = entry.metadata()?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            header.set_size(0);
            header.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            });
            let (major, minor) = dev_major_minor(std::os::unix::fs::MetadataExt::rdev(&meta));
            header.set_device_major(major as u32)?;
            header.set_device_minor(minor as u32)?;
            builder.append_data(&mut header, rel, io::empty())?;
        } else {
            builder.append_path_with_name(entry.path(), rel)?;
        }
    }
    builder.into_inner()
}

/// Writes the tree at `root` to the archive file `path`, compressed as
/// `compression` says.
pub fn write_archive(
    root: &Path,
    path: &Path,
    compression: Compression,
) -> Result<(), ArchiveError> {
    let write = || -> io::Result<()> {
        let file = BufWriter::new(File::create(path)?);
        let file = match compression {
            Compression::None => write_tar(root, file)?,
            Compression::Gzip => write_tar(
                root,
                flate2::write::GzEncoder::new(file, flate2::Compression::fast()),
            )?
            .finish()?,
            Compression::Zstd => write_tar(root, zstd::Encoder::new(file, 3)?)?.finish()?,
        };
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().map_err(|source| ArchiveError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Unpacks a tar stream into the existing directory `dest`, keeping owners,
/// modes and times, and creating device nodes and fifos.
pub fn unpack_tar<R: Read>(input: R, dest: &Path, archive_path: &Path) -> Result<(), ArchiveError> {
    let read_err = |source: io::Error| ArchiveError::Read {
        path: archive_path.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut dirs = Vec::new();
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path().map_err(read_err)?.into_owned();
        let Some(rel) = safe_relative(&raw) else {
            return Err(ArchiveError::UnsafeEntry {
                path: archive_path.to_path_buf(),
                entry: raw,
            });
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        let special = match kind {
            tar::EntryType::Char => Some(SFlag::S_IFCHR),
            tar::EntryType::Block => Some(SFlag::S_IFBLK),
            tar::EntryType::Fifo => Some(SFlag::S_IFIFO),
            _ => None,
        };
        match special {
            Some(sflag) => unpack_special(&entry, dest, &rel, sflag).map_err(read_err)?,
            None => {
                if kind == tar::EntryType::Directory {
                    dirs.push(entry.header().clone());
                }
                if !entry.unpack_in(dest).map_err(read_err)? {
                    return Err(ArchiveError::UnsafeEntry {
                        path: archive_path.to_path_buf(),
                        entry: raw,
                    });
                }
            }
        }
    }
    // Adding entries changed the directories' times: set them again.
    for header in dirs.iter().rev() {
        if let (Ok(path), Ok(mtime)) = (header.path(), header.mtime()) {
            if let Some(rel) = safe_relative(&path) {
                let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
                let _ = nix::sys::stat::utimensat(
                    nix::fcntl::AT_FDCWD,
                    &dest.join(rel),
                    &t,
                    &t,
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                );
            }
        }
    }
    Ok(())
}

fn unpack_special<R: Read>(
    entry: &tar::Entry<'_, R>,
    dest: &Path,
    rel: &Path,
    sflag: SFlag,
) -> io::Result<()> {
    let header = entry.header();
    // The parent must be a real directory inside `dest` (no symlink out).
    let parent = rel.parent().unwrap_or(Path::new(""));
    let mut dir = dest.to_path_buf();
    for c in parent.components() {
        dir.push(c);
        let meta = std::fs::symlink_metadata(&dir);
        match meta {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(&dir)?,
            Err(e) => return Err(e),
        }
    }
    let path = dest.join(rel);
    let _ = std::fs::remove_file(&path);
    let mode = header.mode()? & 0o7777;
    let dev = makedev(
        header.device_major()?.unwrap_or(0) as u64,
        header.device_minor()?.unwrap_or(0) as u64,
    );
    mknod(&path, sflag, Mode::from_bits_truncate(mode), dev)?;
    std::os::unix::fs::lchown(
        &path,
        Some(header.uid()? as u32),
        Some(header.gid()? as u32),
    )?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(())
}

/// Unpacks the archive file `path` (plain, gzip or zstd, told by its first
/// bytes) into `dest`.
pub fn unpack_archive(path: &Path, dest: &Path) -> Result<(), ArchiveError> {
    let read_err = |source: io::Error| ArchiveError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufReader::new(File::open(path).map_err(read_err)?);
    let magic = {
        use std::io::BufRead;
        file.fill_buf().map_err(read_err)?.to_vec()
    };
    match Compression::sniff(&magic) {
        Compression::None => unpack_tar(file, dest, path),
        Compression::Gzip => unpack_tar(flate2::read::MultiGzDecoder::new(file), dest, path),
        Compression::Zstd => unpack_tar(
            zstd::Decoder::with_buffer(file).map_err(read_err)?,
            dest,
            path,
        ),
    }
}

/// Writes image `name` to the archive file `path` (compression from its
/// name). Returns the image exported.
pub fn export(store: &ImageStore, name: &str, path: &Path) -> Result<Image, ArchiveError> {
    let image = store.get(name)?;
    if image.is_host() {
        return Err(StoreError::BuiltIn { op: "exported" }.into());
    }
    write_archive(&image.rootfs, path, Compression::from_path(path))?;
    Ok(image)
}

/// Imports the archive file `path` as image `name`; with `replace`, an
/// existing image of that name (not in use) is replaced. A failed import
/// leaves nothing in the store.
pub fn import(
    store: &ImageStore,
    name: &str,
    path: &Path,
    replace: bool,
) -> Result<Image, ArchiveError> {
    store.check_new_name(name, replace)?;
    let staging = store.staging(name)?;
    std::fs::create_dir(staging.rootfs()).map_err(|source| StoreError::Io {
        op: "create",
        path: staging.rootfs().to_path_buf(),
        source,
    })?;
    unpack_archive(path, staging.rootfs())?;
    let digest = digest_tree(staging.rootfs()).map_err(StoreError::from)?;
    let source = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut manifest = Manifest::new(name, ImageKind::Imported, source.display().to_string());
    manifest.digest = digest.digest;
    manifest.size = digest.size;
    manifest.entries = digest.entries;
    if staging.rootfs().join("init").is_file() {
        manifest.init = Some("/init".into());
    }
    Ok(store.install(staging, &manifest, replace)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("etc/deep/er")).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        fs::write(root.join("etc/deep/er/f"), vec![1u8; 70_000]).unwrap();
        fs::set_permissions(root.join("etc/deep"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(root.join("bin/busybox"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        let long = "x".repeat(120);
        fs::write(root.join("etc").join(&long), "long name").unwrap();
    }

    #[test]
    fn round_trip_keeps_the_digest_for_every_compression() {
        let src = tempfile::tempdir().unwrap();
        tree(src.path());
        let want = digest_tree(src.path()).unwrap();
        for (file, comp) in [
            ("a.tar", Compression::None),
            ("a.tar.gz", Compression::Gzip),
            ("a.tar.zst", Compression::Zstd),
        ] {
            let work = tempfile::tempdir().unwrap();
            let archive = work.path().join(file);
            assert_eq!(Compression::from_path(&archive), comp);
            write_archive(src.path(), &archive, comp).unwrap();
            let dest = work.path().join("out");
            fs::create_dir(&dest).unwrap();
            unpack_archive(&archive, &dest).unwrap();
            assert_eq!(digest_tree(&dest).unwrap(), want, "{file}");
        }
    }

    #[test]
    fn archives_are_deterministic_in_order() {
        let src = tempfile::tempdir().unwrap();
        tree(src.path());
        let a = write_tar(src.path(), Vec::new()).unwrap();
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(a.as_slice());
        for e in ar.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names[0], "bin");
    }

    #[test]
    fn sniffing() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/\0\0"), Compression::None);
        assert_eq!(
            Compression::from_path(Path::new("x.TGZ")),
            Compression::Gzip
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(safe_relative(Path::new("../etc")).is_none());
        assert!(safe_relative(Path::new("/etc")).is_none());
        assert_eq!(
            safe_relative(Path::new("./a/./b")).unwrap(),
            PathBuf::from("a/b")
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let work = tempfile::tempdir().unwrap();
        let f = work.path().join("junk.tar");
        fs::write(&f, vec![0x55u8; 2000]).unwrap();
        let err = unpack_archive(&f, work.path()).unwrap_err().to_string();
        assert!(
            err.contains("junk.tar") && err.contains("tar file"),
            "{err}"
        );
    }
}
