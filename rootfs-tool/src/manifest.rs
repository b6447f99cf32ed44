//! An image's manifest: what the image is, where it came from and its
//! content digest, kept as `manifest.toml` beside the image's `rootfs/`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// File name of an image's manifest inside its directory.
pub const MANIFEST_FILE: &str = "manifest.toml";

/// Version of the manifest format written by this crate.
pub const MANIFEST_FORMAT: u32 = 1;

/// Errors reading or writing a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be read.
    #[error("cannot read image manifest {path}")]
    Read {
        /// The manifest file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The manifest file is not a valid manifest.
    #[error(
        "image manifest {path} is damaged; remove the image with `rootfs-tool rm` and build or import it again"
    )]
    Parse {
        /// The manifest file.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// The manifest could not be encoded as TOML.
    #[error("cannot encode the manifest of image {name}")]
    Encode {
        /// The image's name.
        name: String,
        /// The TOML error.
        #[source]
        source: toml::ser::Error,
    },
    /// The manifest file could not be written.
    #[error("cannot write image manifest {path}")]
    Write {
        /// The manifest file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// How an image was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// The built-in image: the host's own root, read-only.
    Host,
    /// Built from Debian's busybox-static.
    Busybox,
    /// Built with mmdebstrap or debootstrap.
    Debian,
    /// Imported from a tar archive.
    Imported,
    /// Committed from a copy-on-write layer over another image.
    Committed,
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageKind::Host => "host",
            ImageKind::Busybox => "busybox",
            ImageKind::Debian => "debian",
            ImageKind::Imported => "imported",
            ImageKind::Committed => "committed",
        })
    }
}

/// An image's manifest (`manifest.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this manifest.
    #[serde(default = "default_format")]
    pub format: u32,
    /// The image's name in its store.
    pub name: String,
    /// How the image was made.
    pub kind: ImageKind,
    /// Where it came from: a suite and mirror, an archive, a parent image.
    pub source: String,
    /// Packages the image was built with (`name` or `name=version`).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Total size in bytes of the regular files in the tree.
    pub size: u64,
    /// Number of entries (files, directories, links, devices) in the tree.
    #[serde(default)]
    pub entries: u64,
    /// Content digest of the tree (`sha256:…`, see [`crate::digest`]).
    pub digest: String,
    /// When the image was made (RFC 3339, UTC).
    pub created: String,
    /// The guest init program inside the image, if it ships one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// The role the image was built for (`router`, `firewall`, `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Digest of the build inputs, used to make rebuilds with the same
    /// inputs instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
    /// The image a committed image was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Sysctls the image's role wants set in the VM (also written to
    /// `/etc/sysctl.d/90-vbet-role.conf` inside the image).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
}

fn default_format() -> u32 {
    MANIFEST_FORMAT
}

impl Manifest {
    /// A manifest for a new image with the given name, kind and source; the
    /// digest, size and entry count are to be filled in from
    /// [`crate::digest::digest_tree`].
    pub fn new(name: &str, kind: ImageKind, source: impl Into<String>) -> Self {
        Manifest {
            format: MANIFEST_FORMAT,
            name: name.to_string(),
            kind,
            source: source.into(),
            packages: Vec::new(),
            size: 0,
            entries: 0,
            digest: String::new(),
            created: now_rfc3339(),
            init: None,
            role: None,
            inputs: None,
            parent: None,
            sysctls: BTreeMap::new(),
        }
    }

    /// Parses a manifest from TOML text; `path` is named in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ManifestError> {
        toml::from_str(text).map_err(|source| ManifestError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Encodes the manifest as TOML text.
    pub fn to_toml(&self) -> Result<String, ManifestError> {
        toml::to_string(self).map_err(|source| ManifestError::Encode {
            name: self.name.clone(),
            source,
        })
    }

    /// Reads a manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Writes the manifest to `path` atomically (a temporary file renamed
    /// over it).
    pub fn save(&self, path: &Path) -> Result<(), ManifestError> {
        let text = self.to_toml()?;
        let write = || -> io::Result<()> {
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            tmp.write_all(text.as_bytes())?;
            tmp.as_file().sync_all()?;
            tmp.persist(path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|source| ManifestError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The digest shortened for tables (the first 12 hex digits).
    pub fn short_digest(&self) -> &str {
        let hex = self.digest.strip_prefix("sha256:").unwrap_or(&self.digest);
        &hex[..hex.len().min(12)]
    }
}

/// The current time as RFC 3339 in UTC, to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new("r1", ImageKind::Debian, "debian bookworm");
        m.packages = vec!["frr".into(), "iproute2".into()];
        m.size = 1234;
        m.entries = 7;
        m.digest = "sha256:0123456789abcdef0123".into();
        m.role = Some("router".into());
        m.inputs = Some("sha256:feed".into());
        m.init = Some("/init".into());
        m.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        m
    }

    #[test]
    fn toml_round_trip_keeps_every_field() {
        let m = sample();
        let text = m.to_toml().unwrap();
        assert!(text.contains("name = \"r1\""), "{text}");
        assert!(text.contains("kind = \"debian\""), "{text}");
        let back = Manifest::from_toml(&text, Path::new("m.toml")).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let text = r#"
name = "bb"
kind = "busybox"
source = "busybox-static"
size = 10
digest = "sha256:ab"
created = "2026-01-01T00:00:00Z"
"#;
        let m = Manifest::from_toml(text, Path::new("m.toml")).unwrap();
        assert_eq!(m.kind, ImageKind::Busybox);
        assert_eq!(m.format, MANIFEST_FORMAT);
        assert!(m.packages.is_empty() && m.sysctls.is_empty() && m.role.is_none());
    }

    #[test]
    fn parse_error_names_the_file_and_what_to_do() {
        let err = Manifest::from_toml("name = ", Path::new("/s/x/manifest.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/s/x/manifest.toml") && msg.contains("rootfs-tool rm"),
            "{msg}"
        );
    }

    #[test]
    fn save_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        let m = sample();
        m.save(&path).unwrap();
        assert_eq!(Manifest::load(&path).unwrap(), m);
    }

    #[test]
    fn short_digest_is_twelve_hex_digits() {
        assert_eq!(sample().short_digest(), "0123456789ab");
    }

    #[test]
    fn created_is_rfc3339() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z') && t.len() == 20, "{t}");
    }
}
