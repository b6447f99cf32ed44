//! Root file system images and per-VM copy-on-write layers for vBET.
//!
//! - [`store`]: the image store, images by name, and the leases a running VM
//!   holds on its image ([`ImageStore::acquire`]).
//! - [`manifest`], [`digest`]: what an image records about itself and the
//!   content digest of its tree.
//! - [`build`]: busybox and Debian (mmdebstrap/debootstrap) images.
//! - [`archive`]: tar import and export.
//! - [`layer`], [`diff`], [`tree`]: a VM's writable overlay layer, what it
//!   changed, and committing it into a new image.
//! - [`mounts`]: the mount table, tmpfs/overlay mounts, safe removal.
//! - [`cli`]: the `rootfs-tool` command line.
//!
//! vm-monitor's use: `ImageStore::open(root)?.acquire(image, vm_id)?` (keep
//! the lease for the VM's life), `Layer::create(&store, image, dir,
//! Some(disk_size))?`, then `layer.mount_overlay(&new_root)?` inside the
//! VM's mount namespace, and `Layer::remove` at teardown.
#![deny(unsafe_code)]

pub mod archive;
pub mod build;
pub mod cli;
pub mod diff;
pub mod digest;
pub mod layer;
pub mod manifest;
pub mod mounts;
pub mod store;
pub mod tree;

pub use layer::{Layer, OverlayOptions};
pub use manifest::{ImageKind, Manifest};
pub use store::{HOST_IMAGE, Image, ImageLease, ImageStore};
