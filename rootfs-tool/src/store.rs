//! The image store: a directory of images, each `NAME/rootfs/` plus
//! `NAME/manifest.toml`, with per-image leases held by running VMs.
//!
//! Layout of a store (default [`DEFAULT_STORE`]):
//!
//! ```text
//! STORE/NAME/rootfs/          the image's tree (read-only by convention)
//! STORE/NAME/manifest.toml    its manifest
//! STORE/NAME/users/VM-ID      one file per VM using the image, flock'ed by it
//! STORE/.tmp/                 builds in progress (renamed into place at the end)
//! STORE/.locks/NAME.lock      serialises installing, removing and leasing NAME
//! ```
//!
//! The in-use convention: a VM using an image opens (creating it)
//! `NAME/users/VM-ID` and holds an exclusive `flock` on it for as long as
//! it runs, taking `.locks/NAME.lock` exclusively while it does so. A user
//! file whose lock is free is stale (its VM died) and is removed by whoever
//! finds it. [`ImageStore::acquire`] does all this.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, Flock, FlockArg, RenameFlags, renameat2};

use crate::digest::{DigestError, TreeDigest, digest_tree};
use crate::manifest::{ImageKind, MANIFEST_FILE, Manifest, ManifestError};
use crate::mounts::{MountError, remove_tree};

/// The default store directory.
pub const DEFAULT_STORE: &str = "/var/lib/vbet/images";
/// Environment variable naming the store directory.
pub const STORE_ENV: &str = "VBET_IMAGE_STORE";
/// Name of the built-in image: the host's own root, read-only.
pub const HOST_IMAGE: &str = "host";
/// Directory of an image holding its tree.
pub const ROOTFS_DIR: &str = "rootfs";
/// Directory of an image holding its users' lock files.
pub const USERS_DIR: &str = "users";

const TMP_DIR: &str = ".tmp";
const LOCKS_DIR: &str = ".locks";

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store directory could not be created or read.
    #[error("cannot open image store {path}; is it writable (run as root, or pass --store DIR)?")]
    Open {
        /// The store directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An image or user name is not acceptable.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// `image` or `user`.
        what: &'static str,
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// No image of that name exists.
    #[error(
        "image {name} is not in store {store}; `rootfs-tool list` shows the images, `rootfs-tool build {name} --from busybox` makes one"
    )]
    UnknownImage {
        /// The image's name.
        name: String,
        /// The store directory.
        store: PathBuf,
    },
    /// The built-in host image does not support the operation.
    #[error("the built-in image `host` (the host's own root) cannot be {op}")]
    BuiltIn {
        /// What was attempted (`removed`, `exported`, …).
        op: &'static str,
    },
    /// An image of that name exists already.
    #[error(
        "image {name} already exists in {store}; remove it with `rootfs-tool rm {name}` or pass --force to replace it"
    )]
    AlreadyExists {
        /// The image's name.
        name: String,
        /// The store directory.
        store: PathBuf,
    },
    /// The image is used by running VMs.
    #[error("image {name} is in use by {}; stop those VMs first", users.join(", "))]
    InUse {
        /// The image's name.
        name: String,
        /// Ids of the VMs using it.
        users: Vec<String>,
    },
    /// A VM of that id holds a lease on the image already.
    #[error("image {name} is already leased by a VM with id {user}; VM ids must be unique")]
    UserTaken {
        /// The image's name.
        name: String,
        /// The VM id.
        user: String,
    },
    /// A file operation in the store failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A manifest could not be read or written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A digest could not be computed.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A tree could not be removed.
    #[error(transparent)]
    Mount(#[from] MountError),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// Checks an image name: 1 to 64 characters of `A-Za-z0-9._-`, starting
/// with a letter or digit.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), StoreError> {
    let bad = |reason| {
        Err(StoreError::InvalidName {
            what,
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("it must be 1 to 64 characters long");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("it must start with a letter or a digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// An image of a store.
#[derive(Debug, Clone)]
pub struct Image {
    /// Its manifest (synthesised for the host image).
    pub manifest: Manifest,
    /// Its directory in the store (`None` for the host image).
    pub dir: Option<PathBuf>,
    /// Its tree: what a VM's overlay uses as lower directory.
    pub rootfs: PathBuf,
}

impl Image {
    /// The image's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The built-in host image.
    pub fn host() -> Self {
        let mut manifest = Manifest::new(HOST_IMAGE, ImageKind::Host, "/");
        manifest.created = "-".into();
        manifest.digest = "-".into();
        Image {
            manifest,
            dir: None,
            rootfs: PathBuf::from("/"),
        }
    }

    /// Whether this is the built-in host image.
    pub fn is_host(&self) -> bool {
        self.dir.is_none()
    }
}

/// The result of [`ImageStore::verify`].
#[derive(Debug, Clone)]
pub struct Verification {
    /// The digest recorded in the manifest.
    pub expected: String,
    /// The digest of the tree as it is now.
    pub actual: TreeDigest,
}

impl Verification {
    /// Whether the tree matches its manifest.
    pub fn ok(&self) -> bool {
        self.expected == self.actual.digest
    }
}

/// A directory of images.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        for d in [root.clone(), root.join(TMP_DIR), root.join(LOCKS_DIR)] {
            fs::create_dir_all(&d).map_err(|source| StoreError::Open {
                path: root.clone(),
                source,
            })?;
        }
        let root = fs::canonicalize(&root).map_err(|source| StoreError::Open {
            path: root.clone(),
            source,
        })?;
        Ok(ImageStore { root })
    }

    /// The store directory named by `$VBET_IMAGE_STORE`, or
    /// [`DEFAULT_STORE`].
    pub fn default_root() -> PathBuf {
        std::env::var_os(STORE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE))
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of image `name` (whether or not it exists).
    pub fn image_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Whether image `name` exists (the host image always does).
    pub fn contains(&self, name: &str) -> bool {
        name == HOST_IMAGE || self.image_dir(name).join(MANIFEST_FILE).is_file()
    }

    /// Looks up image `name`; an unknown image is a clear error.
    pub fn get(&self, name: &str) -> Result<Image, StoreError> {
        if name == HOST_IMAGE {
            return Ok(Image::host());
        }
        validate_name("image", name)?;
        let dir = self.image_dir(name);
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.is_file() {
            return Err(StoreError::UnknownImage {
                name: name.to_string(),
                store: self.root.clone(),
            });
        }
        let manifest = Manifest::load(&manifest_path)?;
        Ok(Image {
            manifest,
            rootfs: dir.join(ROOTFS_DIR),
            dir: Some(dir),
        })
    }

    /// Every image of the store, the host image first, then by name.
    /// Images whose manifest cannot be read are skipped with a warning.
    pub fn list(&self) -> Result<Vec<Image>, StoreError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err("list", &self.root))? {
            let entry = entry.map_err(io_err("list", &self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == HOST_IMAGE {
                continue;
            }
            if entry.path().join(MANIFEST_FILE).is_file() {
                names.push(name);
            }
        }
        names.sort();
        let mut images = vec![Image::host()];
        for name in names {
            match self.get(&name) {
                Ok(image) => images.push(image),
                Err(e) => tracing::warn!("skipping image {name}: {e}"),
            }
        }
        Ok(images)
    }

    /// Fails if `name` cannot be used for a new image: an invalid name, the
    /// host image, or an existing image when `replace` is false.
    pub fn check_new_name(&self, name: &str, replace: bool) -> Result<(), StoreError> {
        if name == HOST_IMAGE {
            return Err(StoreError::BuiltIn { op: "replaced" });
        }
        validate_name("image", name)?;
        if !replace && self.contains(name) {
            return Err(StoreError::AlreadyExists {
                name: name.to_string(),
                store: self.root.clone(),
            });
        }
        Ok(())
    }

    fn name_lock(&self, name: &str) -> Result<Flock<File>, StoreError> {
        let path = self.root.join(LOCKS_DIR).join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| StoreError::Io {
            op: "lock",
            path,
            source: errno.into(),
        })
    }

    /// Ids of the VMs holding a lease on image `name`; stale user files
    /// (whose VM died) are removed on the way.
    pub fn users(&self, name: &str) -> Result<Vec<String>, StoreError> {
        if name == HOST_IMAGE {
            return Ok(Vec::new());
        }
        let dir = self.image_dir(name).join(USERS_DIR);
        let mut users = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(users),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            let path = entry.path();
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("open", &path)(e)),
            };
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(_stale) => {
                    let _ = fs::remove_file(&path);
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    users.push(entry.file_name().to_string_lossy().into_owned());
                }
                Err((_, errno)) => {
                    return Err(StoreError::Io {
                        op: "lock",
                        path,
                        source: errno.into(),
                    });
                }
            }
        }
        users.sort();
        Ok(users)
    }

    /// Leases image `name` for the VM `user` (its id): while the returned
    /// lease lives, the image cannot be removed or replaced. vm-monitor holds
    /// one for as long as its VM runs; if the monitor dies, the kernel
    /// releases the lock and the lease is stale.
    pub fn acquire(&self, name: &str, user: &str) -> Result<ImageLease, StoreError> {
        validate_name("user", user)?;
        let image = self.get(name)?;
        let Some(dir) = image.dir.clone() else {
            return Ok(ImageLease {
                image,
                user: user.to_string(),
                path: None,
                _lock: None,
            });
        };
        let _guard = self.name_lock(name)?;
        // Look again under the lock: it may have been removed meanwhile.
        let image = self.get(name)?;
        let users = dir.join(USERS_DIR);
        fs::create_dir_all(&users).map_err(io_err("create", &users))?;
        let path = users.join(user);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(StoreError::UserTaken {
                    name: name.to_string(),
                    user: user.to_string(),
                });
            }
            Err((_, errno)) => {
                return Err(StoreError::Io {
                    op: "lock",
                    path,
                    source: errno.into(),
                });
            }
        };
        Ok(ImageLease {
            image,
            user: user.to_string(),
            path: Some(path),
            _lock: Some(lock),
        })
    }

    /// Removes image `name`; refused while a VM holds a lease on it.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        if name == HOST_IMAGE {
            return Err(StoreError::BuiltIn { op: "removed" });
        }
        self.get(name)?;
        let doomed = {
            let _guard = self.name_lock(name)?;
            self.get(name)?;
            let users = self.users(name)?;
            if !users.is_empty() {
                return Err(StoreError::InUse {
                    name: name.to_string(),
                    users,
                });
            }
            let doomed = tempfile::Builder::new()
                .prefix(&format!("{name}.rm."))
                .tempdir_in(self.root.join(TMP_DIR))
                .map_err(io_err("create", &self.root.join(TMP_DIR)))?
                .keep();
            let from = self.image_dir(name);
            // A directory may be renamed over an empty one.
            renameat2(AT_FDCWD, &from, AT_FDCWD, &doomed, RenameFlags::empty()).map_err(
                |errno| StoreError::Io {
                    op: "move away",
                    path: from.clone(),
                    source: errno.into(),
                },
            )?;
            doomed
        };
        remove_tree(&doomed)?;
        Ok(())
    }

    /// Recomputes image `name`'s digest and compares it with its manifest.
    pub fn verify(&self, name: &str) -> Result<Verification, StoreError> {
        let image = self.get(name)?;
        if image.is_host() {
            return Err(StoreError::BuiltIn { op: "verified" });
        }
        let actual = digest_tree(&image.rootfs)?;
        Ok(Verification {
            expected: image.manifest.digest.clone(),
            actual,
        })
    }

    /// A fresh staging directory for building image `name`; also removes
    /// staging directories that crashed builds left behind.
    pub fn staging(&self, name: &str) -> Result<Staging, StoreError> {
        self.clean_staging();
        let tmp = self.root.join(TMP_DIR);
        let (file, lock_path) = tempfile::Builder::new()
            .prefix(&format!("{name}."))
            .suffix(".lock")
            .tempfile_in(&tmp)
            .map_err(io_err("create", &tmp))?
            .keep()
            .map_err(|e| io_err("create", &tmp)(e.error))?;
        let lock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| StoreError::Io {
                op: "lock",
                path: lock_path.clone(),
                source: errno.into(),
            })?;
        let dir = lock_path.with_extension("");
        let rootfs = dir.join(ROOTFS_DIR);
        let staging = Staging {
            dir,
            rootfs,
            lock_path,
            _lock: lock,
        };
        fs::create_dir(&staging.dir).map_err(io_err("create", &staging.dir))?;
        Ok(staging)
    }

    /// Removes staging directories whose build is no longer running.
    pub fn clean_staging(&self) {
        let tmp = self.root.join(TMP_DIR);
        let Ok(entries) = fs::read_dir(&tmp) else {
            return;
        };
        let old = SystemTime::now() - Duration::from_secs(60);
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "lock") {
                let Ok(file) = File::open(&path) else {
                    continue;
                };
                if Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok() {
                    if let Err(e) = remove_tree(&path.with_extension("")) {
                        tracing::warn!("cannot remove stale build {}: {e}", path.display());
                        continue;
                    }
                    let _ = fs::remove_file(&path);
                }
            } else if !lock_path_of(&path).exists() {
                // A staging directory without its lock file (e.g. a removal
                // interrupted midway): remove it once it is old enough not to
                // be a build between its two first steps.
                let modified = entry.metadata().and_then(|m| m.modified());
                if modified.is_ok_and(|t| t < old) {
                    if let Err(e) = remove_tree(&path) {
                        tracing::warn!("cannot remove stale build {}: {e}", path.display());
                    }
                }
            }
        }
    }

    /// Installs a finished build: writes its manifest and renames the staging
    /// directory to the image's place atomically. With `replace`, an existing
    /// image of that name (not in use) is swapped out and removed.
    pub fn install(
        &self,
        staging: Staging,
        manifest: &Manifest,
        replace: bool,
    ) -> Result<Image, StoreError> {
        let name = manifest.name.as_str();
        self.check_new_name(name, replace)?;
        manifest.save(&staging.dir.join(MANIFEST_FILE))?;
        let users = staging.dir.join(USERS_DIR);
        fs::create_dir_all(&users).map_err(io_err("create", &users))?;
        let target = self.image_dir(name);
        {
            let _guard = self.name_lock(name)?;
            match renameat2(
                AT_FDCWD,
                &staging.dir,
                AT_FDCWD,
                &target,
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => {}
                Err(Errno::EEXIST | Errno::ENOTEMPTY) if replace => {
                    let in_use = self.users(name)?;
                    if !in_use.is_empty() {
                        return Err(StoreError::InUse {
                            name: name.to_string(),
                            users: in_use,
                        });
                    }
                    renameat2(
                        AT_FDCWD,
                        &staging.dir,
                        AT_FDCWD,
                        &target,
                        RenameFlags::RENAME_EXCHANGE,
                    )
                    .map_err(|errno| StoreError::Io {
                        op: "replace",
                        path: target.clone(),
                        source: errno.into(),
                    })?;
                }
                Err(Errno::EEXIST | Errno::ENOTEMPTY) => {
                    return Err(StoreError::AlreadyExists {
                        name: name.to_string(),
                        store: self.root.clone(),
                    });
                }
                Err(errno) => {
                    return Err(StoreError::Io {
                        op: "install",
                        path: target,
                        source: errno.into(),
                    });
                }
            }
        }
        // Dropping the staging removes what the swap put there (the replaced
        // image), if anything.
        drop(staging);
        self.get(name)
    }
}

fn lock_path_of(dir: &Path) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// A build in progress: a directory in the store's `.tmp/`, removed when
/// dropped unless [`ImageStore::install`] moved it into place.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    rootfs: PathBuf,
    lock_path: PathBuf,
    _lock: Flock<File>,
}

impl Staging {
    /// The staging directory (the future image directory).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the image's tree is to be built.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.dir) {
            tracing::warn!("cannot remove build directory {}: {e}", self.dir.display());
            return;
        }
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// A VM's claim on an image (see [`ImageStore::acquire`]): the image cannot
/// be removed or replaced while the lease lives. Dropping it releases it.
#[derive(Debug)]
pub struct ImageLease {
    image: Image,
    user: String,
    path: Option<PathBuf>,
    _lock: Option<Flock<File>>,
}

impl ImageLease {
    /// The leased image.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// The image's tree (the lower directory of the VM's overlay).
    pub fn rootfs(&self) -> &Path {
        &self.image.rootfs
    }

    /// The VM id holding the lease.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl Drop for ImageLease {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["bb", "r1", "debian-router_2.0", "A"] {
            validate_name("image", ok).unwrap();
        }
        for bad in ["", ".x", "-x", "a/b", "a b", "..", &"x".repeat(65)] {
            assert!(validate_name("image", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_is_built_in() {
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(d.path().join("s")).unwrap();
        let host = store.get(HOST_IMAGE).unwrap();
        assert!(host.is_host());
        assert_eq!(host.rootfs, PathBuf::from("/"));
        assert!(matches!(
            store.remove(HOST_IMAGE),
            Err(StoreError::BuiltIn { .. })
        ));
        let list = store.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name(), HOST_IMAGE);
    }

    #[test]
    fn unknown_image_says_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(d.path()).unwrap();
        let err = store.get("nope").unwrap_err().to_string();
        assert!(
            err.contains("nope") && err.contains("rootfs-tool build"),
            "{err}"
        );
    }

    fn install_tiny(store: &ImageStore, name: &str) -> Image {
        let staging = store.staging(name).unwrap();
        fs::create_dir_all(staging.rootfs().join("etc")).unwrap();
        fs::write(staging.rootfs().join("etc/hostname"), name).unwrap();
        let d = digest_tree(staging.rootfs()).unwrap();
        let mut m = Manifest::new(name, ImageKind::Imported, "test");
        m.digest = d.digest;
        m.size = d.size;
        store.install(staging, &m, false).unwrap()
    }

    #[test]
    fn install_lease_remove() {
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(d.path()).unwrap();
        let image = install_tiny(&store, "tiny");
        assert!(store.contains("tiny"));
        assert!(store.verify("tiny").unwrap().ok());
        assert_eq!(image.rootfs, store.root().join("tiny/rootfs"));
        // No build directory is left behind.
        assert_eq!(fs::read_dir(store.root().join(TMP_DIR)).unwrap().count(), 0);

        let lease = store.acquire("tiny", "lab1.r1").unwrap();
        assert_eq!(store.users("tiny").unwrap(), vec!["lab1.r1".to_string()]);
        assert!(matches!(
            store.acquire("tiny", "lab1.r1"),
            Err(StoreError::UserTaken { .. })
        ));
        match store.remove("tiny") {
            Err(StoreError::InUse { users, .. }) => assert_eq!(users, vec!["lab1.r1".to_string()]),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(lease);
        // A stale user file (its VM died without cleaning up) does not block.
        fs::write(store.image_dir("tiny").join("users/ghost"), "").unwrap();
        store.remove("tiny").unwrap();
        assert!(!store.contains("tiny"));
        assert!(!store.image_dir("tiny").exists());
        assert_eq!(fs::read_dir(store.root().join(TMP_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn install_refuses_existing_unless_replace() {
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(d.path()).unwrap();
        install_tiny(&store, "a");
        let staging = store.staging("a").unwrap();
        fs::create_dir_all(staging.rootfs()).unwrap();
        let mut m = Manifest::new("a", ImageKind::Imported, "second");
        m.digest = digest_tree(staging.rootfs()).unwrap().digest;
        assert!(matches!(
            store.install(staging, &m, false),
            Err(StoreError::AlreadyExists { .. })
        ));
        let staging = store.staging("a").unwrap();
        fs::create_dir_all(staging.rootfs()).unwrap();
        let img = store.install(staging, &m, true).unwrap();
        assert_eq!(img.manifest.source, "second");
        assert_eq!(fs::read_dir(store.root().join(TMP_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn dropped_staging_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(d.path()).unwrap();
        let staging = store.staging("x").unwrap();
        fs::create_dir_all(staging.rootfs().join("a/b")).unwrap();
        drop(staging);
        assert_eq!(fs::read_dir(store.root().join(TMP_DIR)).unwrap().count(), 0);
        assert!(!store.contains("x"));
    }
}
