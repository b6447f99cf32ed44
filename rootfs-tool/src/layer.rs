//! A VM's copy-on-write layer: the writable upper and work directories of
//! an overlay over an image, on disk or on a size-limited tmpfs.
//!
//! Layout of a layer directory:
//!
//! ```text
//! DIR/layer.toml   which image (name, digest, tree) the layer is over
//! DIR/fs/          a tmpfs mount point when the layer has a size limit
//! DIR/fs/upper/    what the VM wrote (overlay upperdir)
//! DIR/fs/work/     overlay workdir
//! ```
//!
//! Overlays are mounted with `redirect_dir=off,metacopy=off,index=off`, so
//! the upper directory holds plain copies, whiteouts and opaque directories
//! only (see [`crate::diff`]).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diff::{Change, DiffError, diff_layer};
use crate::digest::{DigestError, digest_tree};
use crate::manifest::{ImageKind, MANIFEST_FILE, Manifest, now_rfc3339};
use crate::mounts::{self, MountError, Mounter, SystemMounter};
use crate::store::{HOST_IMAGE, Image, ImageStore, StoreError};
use crate::tree::{TreeError, copy_tree, merge_upper};

/// File describing a layer, inside its directory.
pub const LAYER_FILE: &str = "layer.toml";

/// Errors of layers.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The layer directory is already in use.
    #[error(
        "layer directory {dir} exists and is not empty; remove the layer with `rootfs-tool layer rm {dir}` or choose another directory"
    )]
    Exists {
        /// The layer directory.
        dir: PathBuf,
    },
    /// The directory holds no layer.
    #[error(
        "{dir} is not a layer (cannot read its layer.toml); make one with `rootfs-tool layer create`"
    )]
    NotALayer {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// `layer.toml` is damaged.
    #[error("layer description {path} is damaged; remove the layer and create it again")]
    BadConfig {
        /// The layer.toml file.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// The image below the layer is gone.
    #[error(
        "image {image} below layer {dir} no longer exists ({lower} is missing); remove the layer"
    )]
    ImageGone {
        /// The image's name.
        image: String,
        /// Its tree.
        lower: PathBuf,
        /// The layer directory.
        dir: PathBuf,
    },
    /// The image below the layer was replaced.
    #[error(
        "image {image} was replaced since layer {dir} was created over it (digest {was}, now {now}); remove the layer and create it again"
    )]
    ImageChanged {
        /// The image's name.
        image: String,
        /// The layer directory.
        dir: PathBuf,
        /// Digest when the layer was made.
        was: String,
        /// Digest now.
        now: String,
    },
    /// The layer is mounted.
    #[error("layer {dir} is in use by the overlay mounted at {}; unmount it (stop the VM) first", targets.iter().map(|t| t.display().to_string()).collect::<Vec<_>>().join(", "))]
    Mounted {
        /// The layer directory.
        dir: PathBuf,
        /// Where its overlay is mounted.
        targets: Vec<PathBuf>,
    },
    /// Layers over the host image cannot be committed.
    #[error(
        "layer {dir} is over the built-in image `host` (the host's whole root), which cannot be copied into an image; put the layer over a busybox or debian image instead"
    )]
    HostCommit {
        /// The layer directory.
        dir: PathBuf,
    },
    /// A file operation on the layer failed.
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
    /// Teardown failed in several ways; every error is kept.
    #[error("removing layer {dir} failed: {}", errors.join("; "))]
    Teardown {
        /// The layer directory.
        dir: PathBuf,
        /// Each failure, in order.
        errors: Vec<String>,
    },
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A mount operation failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The diff failed.
    #[error(transparent)]
    Diff(#[from] DiffError),
    /// Copying or merging a tree failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A digest could not be computed.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayerError + use<> {
    let path = path.to_path_buf();
    move |source| LayerError::Io { op, path, source }
}

/// Parses a size such as `64M`, `1G`, `512k` or `1048576` (binary units;
/// a trailing `B` or `iB` is allowed).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_lowercase() {
                'k' => 1u64 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                _ => return Err(format!("unknown size unit in {text:?}; use K, M, G or T")),
            };
            (&t[..i], mult)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. 64M or 1G"))?;
    n.checked_mul(mult)
        .filter(|&s| s > 0)
        .ok_or_else(|| format!("size {text:?} must be above zero and below 16 EiB"))
}

/// What `layer.toml` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerConfig {
    /// The image below the layer.
    pub image: String,
    /// Its digest when the layer was made (`-` for the host image).
    pub image_digest: String,
    /// Its tree (overlay lowerdir).
    pub lower: PathBuf,
    /// When the layer was made (RFC 3339, UTC).
    pub created: String,
    /// Size limit of the layer's tmpfs, if it is on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_size: Option<u64>,
}

/// The directories of an overlay over a layer, and its mount options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverlayOptions {
    /// The image's tree.
    pub lowerdir: PathBuf,
    /// The layer's upper directory.
    pub upperdir: PathBuf,
    /// The layer's work directory.
    pub workdir: PathBuf,
}

fn escape_overlay_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl OverlayOptions {
    /// The mount data for `mount -t overlay`.
    pub fn mount_data(&self) -> String {
        format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
            escape_overlay_path(&self.lowerdir),
            escape_overlay_path(&self.upperdir),
            escape_overlay_path(&self.workdir),
        )
    }

    /// Mounts the overlay on `target` (in the caller's mount namespace).
    pub fn mount(&self, target: &Path) -> Result<(), MountError> {
        mounts::mount_overlay(target, &self.mount_data())
    }
}

/// A VM's copy-on-write layer over an image.
#[derive(Debug, Clone)]
pub struct Layer {
    dir: PathBuf,
    config: LayerConfig,
}

impl Layer {
    /// Creates a layer over image `image` of `store` in `dir` (created if
    /// missing; must be empty). With `size`, the layer lives on a tmpfs of
    /// that many bytes mounted in the caller's mount namespace (gone when
    /// unmounted); otherwise on disk.
    pub fn create(
        store: &ImageStore,
        image: &str,
        dir: &Path,
        size: Option<u64>,
    ) -> Result<Layer, LayerError> {
        Self::create_with(&SystemMounter, store, image, dir, size)
    }

    /// [`Layer::create`] with the mounts made by `mounter`.
    pub fn create_with(
        mounter: &dyn Mounter,
        store: &ImageStore,
        image: &str,
        dir: &Path,
        size: Option<u64>,
    ) -> Result<Layer, LayerError> {
        let image = store.get(image)?;
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let mut entries = std::fs::read_dir(dir).map_err(io_err("read", dir))?;
                if entries.next().is_some() {
                    return Err(LayerError::Exists {
                        dir: dir.to_path_buf(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
            }
            Err(e) => return Err(io_err("create", dir)(e)),
        }
        let dir = std::fs::canonicalize(dir).map_err(io_err("resolve", dir))?;
        match Self::populate(mounter, &image, &dir, size) {
            Ok(layer) => Ok(layer),
            Err(e) => {
                if let Err(cleanup) = mounts::remove_tree(&dir) {
                    tracing::warn!("cleaning up layer {}: {cleanup}", dir.display());
                }
                Err(e)
            }
        }
    }

    fn populate(
        mounter: &dyn Mounter,
        image: &Image,
        dir: &Path,
        size: Option<u64>,
    ) -> Result<Layer, LayerError> {
        let fs_dir = dir.join("fs");
        std::fs::create_dir(&fs_dir).map_err(io_err("create", &fs_dir))?;
        if let Some(size) = size {
            mounter.mount_tmpfs(&fs_dir, size)?;
        }
        let layer = Layer {
            dir: dir.to_path_buf(),
            config: LayerConfig {
                image: image.name().to_string(),
                image_digest: image.manifest.digest.clone(),
                lower: image.rootfs.clone(),
                created: now_rfc3339(),
                tmpfs_size: size,
            },
        };
        let upper = layer.upper();
        std::fs::create_dir(&upper).map_err(io_err("create", &upper))?;
        std::fs::create_dir(layer.work()).map_err(io_err("create", &layer.work()))?;
        // The merged root takes the upper root's owner and mode: give it
        // the image's.
        let root = std::fs::metadata(&image.rootfs).map_err(io_err("read", &image.rootfs))?;
        std::os::unix::fs::chown(&upper, Some(root.uid()), Some(root.gid()))
            .map_err(io_err("chown", &upper))?;
        std::fs::set_permissions(
            &upper,
            std::os::unix::fs::PermissionsExt::from_mode(root.mode() & 0o7777),
        )
        .map_err(io_err("chmod", &upper))?;
        let text = toml::to_string(&layer.config)
            .map_err(|e| io_err("encode", dir)(io::Error::other(e)))?;
        let path = dir.join(LAYER_FILE);
        std::fs::write(&path, text).map_err(io_err("write", &path))?;
        Ok(layer)
    }

    /// Opens the layer in `dir`.
    pub fn open(dir: &Path) -> Result<Layer, LayerError> {
        let path = dir.join(LAYER_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| LayerError::NotALayer {
            dir: dir.to_path_buf(),
            source,
        })?;
        let config =
            toml::from_str(&text).map_err(|source| LayerError::BadConfig { path, source })?;
        let dir = std::fs::canonicalize(dir).map_err(io_err("resolve", dir))?;
        Ok(Layer { dir, config })
    }

    /// The layer's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `layer.toml` records.
    pub fn config(&self) -> &LayerConfig {
        &self.config
    }

    /// The image below the layer.
    pub fn image(&self) -> &str {
        &self.config.image
    }

    /// The upper directory (what the VM wrote).
    pub fn upper(&self) -> PathBuf {
        self.dir.join("fs/upper")
    }

    /// The overlay work directory.
    pub fn work(&self) -> PathBuf {
        self.dir.join("fs/work")
    }

    /// Checks that the image below is still there and unchanged.
    fn check_lower(&self) -> Result<(), LayerError> {
        if !self.config.lower.is_dir() {
            return Err(LayerError::ImageGone {
                image: self.config.image.clone(),
                lower: self.config.lower.clone(),
                dir: self.dir.clone(),
            });
        }
        if self.config.image == HOST_IMAGE {
            return Ok(());
        }
        let manifest_path = self
            .config
            .lower
            .parent()
            .unwrap_or(Path::new("/"))
            .join(MANIFEST_FILE);
        let manifest = Manifest::load(&manifest_path).map_err(StoreError::from)?;
        if manifest.digest != self.config.image_digest {
            return Err(LayerError::ImageChanged {
                image: self.config.image.clone(),
                dir: self.dir.clone(),
                was: self.config.image_digest.clone(),
                now: manifest.digest,
            });
        }
        Ok(())
    }

    /// The overlay's directories and options, after checking that the image
    /// below is still there and unchanged.
    pub fn overlay_options(&self) -> Result<OverlayOptions, LayerError> {
        self.check_lower()?;
        Ok(OverlayOptions {
            lowerdir: self.config.lower.clone(),
            upperdir: self.upper(),
            workdir: self.work(),
        })
    }

    /// Mounts the overlay (image + layer) on `target` in the caller's mount
    /// namespace and returns its options. vm-monitor calls this inside the
    /// VM's mount namespace, then pivots into `target`.
    pub fn mount_overlay(&self, target: &Path) -> Result<OverlayOptions, LayerError> {
        self.mount_overlay_with(&SystemMounter, target)
    }

    /// [`Layer::mount_overlay`] with the mount made by `mounter`.
    pub fn mount_overlay_with(
        &self,
        mounter: &dyn Mounter,
        target: &Path,
    ) -> Result<OverlayOptions, LayerError> {
        let options = self.overlay_options()?;
        mounter.mount_overlay(target, &options.mount_data())?;
        Ok(options)
    }

    /// Where overlays using this layer are mounted (in this mount
    /// namespace).
    pub fn mounted_at(&self) -> Result<Vec<PathBuf>, LayerError> {
        let needle = format!("upperdir={}", self.upper().display());
        Ok(mounts::mount_table()?
            .into_iter()
            .filter(|m| m.fstype == "overlay" && m.super_options.split(',').any(|o| o == needle))
            .map(|m| m.mount_point)
            .collect())
    }

    /// What the VM changed, relative to the image.
    pub fn diff(&self) -> Result<Vec<Change>, LayerError> {
        self.check_lower()?;
        Ok(diff_layer(&self.upper(), &self.config.lower)?)
    }

    /// Makes a new image `name` of the image below with the layer's changes
    /// applied (files of the image are hard-linked, the layer's copied).
    /// Stop or freeze the VM first: a layer changing meanwhile gives an
    /// inconsistent image. With `replace`, an image `name` (not in use) is
    /// replaced.
    pub fn commit(
        &self,
        store: &ImageStore,
        name: &str,
        replace: bool,
    ) -> Result<Image, LayerError> {
        if self.config.image == HOST_IMAGE {
            return Err(LayerError::HostCommit {
                dir: self.dir.clone(),
            });
        }
        self.check_lower()?;
        store.check_new_name(name, replace)?;
        let parent = store.get(&self.config.image)?;
        let staging = store.staging(name)?;
        let rootfs = staging.rootfs().to_path_buf();
        std::fs::create_dir(&rootfs).map_err(io_err("create", &rootfs))?;
        copy_tree(&self.config.lower, &rootfs, true)?;
        merge_upper(&self.upper(), &rootfs)?;
        let digest = digest_tree(&rootfs)?;
        let source = format!("layer {} over image {}", self.dir.display(), parent.name());
        let mut manifest = Manifest::new(name, ImageKind::Committed, source);
        manifest.digest = digest.digest;
        manifest.size = digest.size;
        manifest.entries = digest.entries;
        manifest.parent = Some(parent.name().to_string());
        manifest.packages = parent.manifest.packages.clone();
        manifest.role = parent.manifest.role.clone();
        manifest.sysctls = parent.manifest.sysctls.clone();
        manifest.init = parent.manifest.init.clone();
        Ok(store.install(staging, &manifest, replace)?)
    }

    /// Removes the layer: unmounts its tmpfs and deletes its directory.
    /// Refused while an overlay using it is mounted.
    pub fn remove(self) -> Result<(), LayerError> {
        let targets = self.mounted_at()?;
        if !targets.is_empty() {
            return Err(LayerError::Mounted {
                dir: self.dir,
                targets,
            });
        }
        let mut errors = Vec::new();
        if let Err(e) = mounts::unmount_all_under(&self.dir) {
            errors.push(e.to_string());
        }
        if let Err(e) = mounts::remove_tree(&self.dir) {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LayerError::Teardown {
                dir: self.dir,
                errors,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("0").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn mount_data_escapes_separators() {
        let o = OverlayOptions {
            lowerdir: "/s/a:b/rootfs".into(),
            upperdir: "/l/x,y/fs/upper".into(),
            workdir: "/l/fs/work".into(),
        };
        assert_eq!(
            o.mount_data(),
            "lowerdir=/s/a\\:b/rootfs,upperdir=/l/x\\,y/fs/upper,workdir=/l/fs/work,redirect_dir=off,metacopy=off,index=off"
        );
    }

    #[test]
    fn create_on_disk_open_diff_remove_without_root_mounts() {
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(d.path().join("store")).unwrap();
        let dir = d.path().join("layers/vm1");
        let t = std::time::Instant::now();
        let layer = Layer::create(&store, HOST_IMAGE, &dir, None).unwrap();
        let took = t.elapsed();
        assert!(took.as_millis() < 50, "layer create took {took:?}");
        assert!(layer.upper().is_dir() && layer.work().is_dir());
        let again = Layer::open(&dir).unwrap();
        assert_eq!(again.config(), layer.config());
        assert!(matches!(
            Layer::create(&store, HOST_IMAGE, &dir, None),
            Err(LayerError::Exists { .. })
        ));
        let o = layer.overlay_options().unwrap();
        assert_eq!(o.lowerdir, PathBuf::from("/"));
        assert!(layer.diff().unwrap().is_empty());
        assert!(matches!(
            layer.commit(&store, "x", false),
            Err(LayerError::HostCommit { .. })
        ));
        layer.remove().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn tmpfs_and_overlay_mounts_through_the_mounter() {
        use crate::mounts::RecordingMounter;
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(d.path().join("store")).unwrap();
        let fake = RecordingMounter::default();
        let dir = d.path().join("vm1");
        let layer = Layer::create_with(&fake, &store, HOST_IMAGE, &dir, Some(64 << 20)).unwrap();
        assert_eq!(layer.config().tmpfs_size, Some(64 << 20));
        let target = d.path().join("root");
        let o = layer.mount_overlay_with(&fake, &target).unwrap();
        let dir = layer.dir().to_path_buf();
        assert_eq!(
            fake.calls(),
            vec![
                format!("tmpfs {}/fs size={}", dir.display(), 64u64 << 20),
                format!("overlay {} {}", target.display(), o.mount_data()),
            ]
        );
        assert_eq!(o.upperdir, dir.join("fs/upper"));
    }

    #[test]
    fn a_failed_tmpfs_mount_leaves_no_layer_directory() {
        use crate::mounts::RecordingMounter;
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(d.path().join("store")).unwrap();
        let fake = RecordingMounter {
            fail: vec!["tmpfs"],
            ..Default::default()
        };
        let dir = d.path().join("vm1");
        let err = Layer::create_with(&fake, &store, HOST_IMAGE, &dir, Some(1 << 20)).unwrap_err();
        assert!(matches!(err, LayerError::Mount(_)), "{err}");
        assert!(!dir.exists());
    }

    #[test]
    fn unknown_image_is_refused_before_anything_is_made() {
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(d.path().join("store")).unwrap();
        let dir = d.path().join("l");
        assert!(matches!(
            Layer::create(&store, "nope", &dir, None),
            Err(LayerError::Store(StoreError::UnknownImage { .. }))
        ));
        assert!(!dir.exists());
    }
}
