//! Building images: a minimal one from Debian's busybox-static, or a Debian
//! one with mmdebstrap or debootstrap and a role's packages.
//!
//! Every build happens in a staging directory of the store and is renamed
//! into place at the end (see [`crate::store`]); a failed build leaves
//! nothing behind.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use crate::digest::{digest_tree, hex};
use crate::manifest::{ImageKind, Manifest};
use crate::store::{Image, ImageStore, Staging, StoreError};
use crate::tree::copy_tree;

/// Where busybox-static installs busybox, in the order looked at.
pub const BUSYBOX_PATHS: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// Bumped when the recipe of a Debian build changes, so cached images
/// built by an older recipe are not reused.
const DEBIAN_RECIPE: u32 = 1;

/// Errors of builds.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The source is not one that can be built.
    #[error("unknown image source {0:?}; use `busybox`, `debian` or `debian:SUITE`")]
    UnknownSource(String),
    /// The role is unknown.
    #[error("unknown role {0:?}; use router, firewall or host")]
    UnknownRole(String),
    /// Packages or a role were given for a busybox image.
    #[error(
        "image {name}: --packages and --role need --from debian (a busybox image is busybox only)"
    )]
    BusyboxExtras {
        /// The image's name.
        name: String,
    },
    /// No busybox binary was found.
    #[error("no busybox found at {}; install it with `apt-get install -y busybox-static`", BUSYBOX_PATHS.join(" or "))]
    NoBusybox,
    /// The busybox binary found needs shared libraries.
    #[error("{path} is dynamically linked and would not run in an image; install `busybox-static`")]
    DynamicBusybox {
        /// The busybox binary.
        path: PathBuf,
    },
    /// busybox could not list its applets.
    #[error("image {name}: `{busybox} --list-full` failed ({detail}); is it a working busybox?")]
    BusyboxApplets {
        /// The image's name.
        name: String,
        /// The busybox binary.
        busybox: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// No usable bootstrap tool is installed.
    #[error(
        "image {name}: {tools} is not installed; `apt-get install -y mmdebstrap` (or debootstrap)"
    )]
    NoBootstrapTool {
        /// The image's name.
        name: String,
        /// The tools looked for.
        tools: String,
    },
    /// The bootstrap tool asked for is not one rootfs-tool knows.
    #[error("unknown bootstrap tool {0:?}; use mmdebstrap or debootstrap")]
    UnknownTool(String),
    /// mmdebstrap or debootstrap failed.
    #[error("image {name}: {failure}")]
    Bootstrap {
        /// The image's name.
        name: String,
        /// What failed and the tail of its log.
        failure: Box<BootstrapFailure>,
    },
    /// A file operation of the build failed.
    #[error("image {name}: cannot {op} {path}")]
    Io {
        /// The image's name.
        name: String,
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Copying a cached image failed.
    #[error(transparent)]
    Tree(#[from] crate::tree::TreeError),
}

/// A failed mmdebstrap or debootstrap run.
#[derive(Debug, Clone)]
pub struct BootstrapFailure {
    /// `mmdebstrap` or `debootstrap`.
    pub tool: String,
    /// The Debian suite.
    pub suite: String,
    /// The mirror.
    pub mirror: String,
    /// How it ended.
    pub status: String,
    /// The last lines of its output and log.
    pub log_tail: String,
}

impl fmt::Display for BootstrapFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} from {} failed ({}); check the suite and package names. Last lines of its log:\n{}",
            self.tool, self.suite, self.mirror, self.status, self.log_tail
        )
    }
}

/// What an image is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Debian's busybox-static.
    Busybox,
    /// A Debian suite (`None`: the host's own).
    Debian {
        /// The suite (`bookworm`, `trixie`, …).
        suite: Option<String>,
    },
}

impl FromStr for Source {
    type Err = BuildError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "busybox" => Ok(Source::Busybox),
            None if s == "debian" => Ok(Source::Debian { suite: None }),
            Some(("debian", suite))
                if !suite.is_empty()
                    && suite
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
            {
                Ok(Source::Debian {
                    suite: Some(suite.to_string()),
                })
            }
            _ => Err(BuildError::UnknownSource(s.to_string())),
        }
    }
}

/// A role: a package set and sysctls for a kind of node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A router: FRR, forwarding on.
    Router,
    /// A firewall: nftables/iptables and conntrack, forwarding on.
    Firewall,
    /// An end host: tools to send and measure traffic, forwarding off.
    Host,
}

impl FromStr for Role {
    type Err = BuildError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "router" => Ok(Role::Router),
            "firewall" => Ok(Role::Firewall),
            "host" => Ok(Role::Host),
            _ => Err(BuildError::UnknownRole(s.to_string())),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Router => "router",
            Role::Firewall => "firewall",
            Role::Host => "host",
        })
    }
}

const BASE_PACKAGES: &[&str] = &["iproute2", "iputils-ping", "procps", "netbase"];

impl Role {
    /// The role's packages (on top of a minimal Debian).
    pub fn packages(self) -> Vec<&'static str> {
        let extra: &[&str] = match self {
            Role::Router => &["frr", "tcpdump", "traceroute"],
            Role::Firewall => &["nftables", "iptables", "conntrack", "tcpdump"],
            Role::Host => &["iperf3", "netcat-openbsd", "tcpdump", "traceroute"],
        };
        BASE_PACKAGES.iter().chain(extra).copied().collect()
    }

    /// The role's sysctls.
    pub fn sysctls(self) -> BTreeMap<String, String> {
        let pairs: &[(&str, &str)] = match self {
            Role::Router => &[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv6.conf.all.forwarding", "1"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
            ],
            Role::Firewall => &[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv6.conf.all.forwarding", "1"),
                ("net.ipv4.conf.all.rp_filter", "1"),
            ],
            Role::Host => &[
                ("net.ipv4.ip_forward", "0"),
                ("net.ipv6.conf.all.forwarding", "0"),
            ],
        };
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// A build request.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The new image's name.
    pub name: String,
    /// What to build it from.
    pub source: Source,
    /// Extra packages (Debian only).
    pub packages: Vec<String>,
    /// A role (Debian only).
    pub role: Option<Role>,
    /// The Debian mirror (default: the host's, from its apt sources).
    pub mirror: Option<String>,
    /// Replace an existing image of that name.
    pub replace: bool,
    /// The busybox binary to use (default: [`BUSYBOX_PATHS`]).
    pub busybox: Option<PathBuf>,
    /// The bootstrap tool, `mmdebstrap` or `debootstrap` (default: the
    /// first installed, in that order).
    pub tool: Option<String>,
}

impl BuildRequest {
    /// A request for image `name` from `source`, everything else default.
    pub fn new(name: &str, source: Source) -> Self {
        BuildRequest {
            name: name.to_string(),
            source,
            packages: Vec::new(),
            role: None,
            mirror: None,
            replace: false,
            busybox: None,
            tool: None,
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The image.
    pub image: Image,
    /// Whether it was already there with the same inputs (nothing built).
    pub cached: bool,
    /// How long the build took.
    pub elapsed: Duration,
}

/// Builds an image; `progress` shows what is going on (pass
/// `ProgressBar::hidden()` for none).
pub fn build(
    store: &ImageStore,
    req: &BuildRequest,
    progress: &ProgressBar,
) -> Result<BuildOutcome, BuildError> {
    let start = Instant::now();
    let (image, cached) = match &req.source {
        Source::Busybox => {
            if !req.packages.is_empty() || req.role.is_some() {
                return Err(BuildError::BusyboxExtras {
                    name: req.name.clone(),
                });
            }
            (build_busybox(store, req, progress)?, false)
        }
        Source::Debian { suite } => build_debian(store, req, suite.as_deref(), progress)?,
    };
    Ok(BuildOutcome {
        image,
        cached,
        elapsed: start.elapsed(),
    })
}

/// Whether ELF file contents belong to a statically linked program (no
/// `PT_INTERP` program header). `None`: not a 64-bit little-endian ELF.
pub fn elf_is_static(bytes: &[u8]) -> Option<bool> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    let phoff = u64_at(0x20)?;
    let phentsize = u16_at(0x36)?;
    let phnum = u16_at(0x38)?;
    for i in 0..phnum {
        let off = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let p_type = bytes.get(off..off + 4)?;
        if u32::from_le_bytes(p_type.try_into().ok()?) == 3 {
            return Some(false);
        }
    }
    Some(true)
}

fn find_busybox(req: &BuildRequest) -> Result<PathBuf, BuildError> {
    let path = match &req.busybox {
        Some(p) => p.clone(),
        None => BUSYBOX_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or(BuildError::NoBusybox)?,
    };
    let mut head = vec![0u8; 64 * 1024];
    let n = fs::File::open(&path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| BuildError::Io {
            name: req.name.clone(),
            op: "read",
            path: path.clone(),
            source,
        })?;
    if elf_is_static(&head[..n]) == Some(false) {
        return Err(BuildError::DynamicBusybox { path });
    }
    Ok(path)
}

/// The version of an installed Debian package, if dpkg knows it.
fn dpkg_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !v.trim().is_empty()).then(|| v.trim().to_string())
}

/// The guest init shipped in built images: sets up what the VM monitor did
/// not, then runs its arguments (or a shell).
pub const INIT_SCRIPT: &str = r#"#!/bin/sh
# vBET guest init (written by rootfs-tool). Sets up what the VM monitor did
# not, then runs its arguments, or a shell.
/etc/init.d/rcS
if [ "$#" -gt 0 ]; then exec "$@"; fi
exec /bin/sh
"#;

/// `/etc/init.d/rcS` of built images (busybox init runs it too).
pub const RCS_SCRIPT: &str = r#"#!/bin/sh
# vBET image setup (written by rootfs-tool): kernel file systems, hostname,
# loopback, the role's sysctls, then /etc/rc.local if present.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mp() { mountpoint -q "$2" 2>/dev/null || mount -t "$1" "$1" "$2" 2>/dev/null; }
mp proc /proc
mp sysfs /sys
mp tmpfs /tmp
mp tmpfs /run
mkdir -p /dev/pts /dev/shm 2>/dev/null
mountpoint -q /dev/pts 2>/dev/null || mount -t devpts devpts /dev/pts 2>/dev/null
[ -n "$VBET_HOSTNAME" ] && hostname "$VBET_HOSTNAME"
command -v ip >/dev/null && ip link set lo up 2>/dev/null
for f in /etc/sysctl.d/*.conf; do
  [ -f "$f" ] && command -v sysctl >/dev/null && sysctl -q -p "$f" 2>/dev/null
done
[ -x /etc/rc.local ] && /etc/rc.local
exit 0
"#;

fn write_file(rootfs: &Path, rel: &str, contents: &str, mode: u32) -> io::Result<()> {
    let path = rootfs.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&path, contents)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
}

fn write_sysctls(rootfs: &Path, sysctls: &BTreeMap<String, String>) -> io::Result<()> {
    if sysctls.is_empty() {
        return Ok(());
    }
    let mut text = String::from("# Written by rootfs-tool for the image's role.\n");
    for (k, v) in sysctls {
        text.push_str(&format!("{k} = {v}\n"));
    }
    write_file(rootfs, "etc/sysctl.d/90-vbet-role.conf", &text, 0o644)
}

/// The basic device nodes, so the image also works under a plain chroot
/// (a VM gets a fresh /dev from its monitor anyway). Best effort: without
/// CAP_MKNOD the image simply has an empty /dev.
const DEVICE_NODES: &[(&str, u64, u64, u32)] = &[
    ("null", 1, 3, 0o666),
    ("zero", 1, 5, 0o666),
    ("full", 1, 7, 0o666),
    ("random", 1, 8, 0o666),
    ("urandom", 1, 9, 0o666),
    ("tty", 5, 0, 0o666),
    ("console", 5, 1, 0o600),
    ("ptmx", 5, 2, 0o666),
];

fn make_device_nodes(rootfs: &Path) {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    for (name, major, minor, mode) in DEVICE_NODES {
        let path = rootfs.join("dev").join(name);
        let made = mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(*mode),
            makedev(*major, *minor),
        )
        .and_then(|()| {
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                &path,
                Mode::from_bits_truncate(*mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
        });
        if let Err(e) = made {
            tracing::info!("no device node {} in the image: {e}", path.display());
            return;
        }
    }
}

/// The relative symlink target from `link` (relative to the root) to
/// `bin/busybox`.
fn busybox_link_target(link: &str) -> String {
    let depth = link.matches('/').count();
    if depth == 1 && link.starts_with("bin/") {
        return "busybox".to_string();
    }
    format!("{}bin/busybox", "../".repeat(depth))
}

fn build_busybox(
    store: &ImageStore,
    req: &BuildRequest,
    progress: &ProgressBar,
) -> Result<Image, BuildError> {
    store.check_new_name(&req.name, req.replace)?;
    let busybox = find_busybox(req)?;
    progress.set_message(format!("building {} from {}", req.name, busybox.display()));
    let staging = store.staging(&req.name)?;
    let rootfs = staging.rootfs().to_path_buf();
    let io_err = |op: &'static str, path: &Path| {
        let (name, path) = (req.name.clone(), path.to_path_buf());
        move |source| BuildError::Io {
            name,
            op,
            path,
            source,
        }
    };
    let skeleton: &[(&str, u32)] = &[
        ("", 0o755),
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("etc/init.d", 0o755),
        ("etc/sysctl.d", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("run", 0o755),
        ("root", 0o700),
        ("home", 0o755),
        ("mnt", 0o755),
        ("var", 0o755),
        ("var/log", 0o755),
        ("var/tmp", 0o1777),
    ];
    for (dir, mode) in skeleton {
        let path = rootfs.join(dir);
        fs::create_dir_all(&path).map_err(io_err("create", &path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
            .map_err(io_err("chmod", &path))?;
    }
    let target = rootfs.join("bin/busybox");
    fs::copy(&busybox, &target).map_err(io_err("copy busybox to", &target))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .map_err(io_err("chmod", &target))?;

    let out = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| BuildError::BusyboxApplets {
            name: req.name.clone(),
            busybox: busybox.clone(),
            detail: e.to_string(),
        })?;
    let list = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || list.lines().count() < 10 {
        return Err(BuildError::BusyboxApplets {
            name: req.name.clone(),
            busybox,
            detail: format!("{}, {} applets listed", out.status, list.lines().count()),
        });
    }
    let mut applets = 0;
    for line in list.lines() {
        let rel = line.trim().trim_start_matches('/');
        if rel.is_empty() || rel == "bin/busybox" || rel.contains("..") {
            continue;
        }
        let link = rootfs.join(rel);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        match std::os::unix::fs::symlink(busybox_link_target(rel), &link) {
            Ok(()) => applets += 1,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", &link)(e)),
        }
    }
    let files: &[(&str, &str, u32)] = &[
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
        (
            "etc/hosts",
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            0o644,
        ),
        ("etc/hostname", "vbet\n", 0o644),
        ("etc/resolv.conf", "", 0o644),
        (
            "etc/profile",
            "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\h:\\w\\$ '\n",
            0o644,
        ),
        (
            "etc/os-release",
            "NAME=\"vBET busybox\"\nID=vbet-busybox\nPRETTY_NAME=\"vBET busybox image\"\n",
            0o644,
        ),
        ("etc/init.d/rcS", RCS_SCRIPT, 0o755),
        ("init", INIT_SCRIPT, 0o755),
    ];
    for (rel, contents, mode) in files {
        write_file(&rootfs, rel, contents, *mode).map_err(io_err("write", &rootfs.join(rel)))?;
    }
    make_device_nodes(&rootfs);
    progress.set_message(format!("computing the digest of {}", req.name));
    let digest = digest_tree(&rootfs).map_err(StoreError::from)?;
    let version = dpkg_version("busybox-static");
    let mut manifest = Manifest::new(
        &req.name,
        ImageKind::Busybox,
        format!(
            "{} (busybox-static{}), {applets} applets",
            busybox.display(),
            version
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default()
        ),
    );
    if let Some(v) = version {
        manifest.packages = vec![format!("busybox-static={v}")];
    }
    manifest.digest = digest.digest;
    manifest.size = digest.size;
    manifest.entries = digest.entries;
    manifest.init = Some("/init".into());
    Ok(store.install(staging, &manifest, req.replace)?)
}

/// The first Debian mirror of the host's apt sources (one-line `.list` and
/// deb822 `.sources` formats), skipping security and non-Debian archives.
pub fn mirror_from_sources(texts: &[String]) -> Option<String> {
    let good = |uri: &str| {
        let u = uri.trim_end_matches('/');
        (u.starts_with("http://") || u.starts_with("https://") || u.starts_with("file:"))
            && u.ends_with("/debian")
            && !u.contains("security")
    };
    for text in texts {
        // deb822 stanzas.
        for stanza in text.split("\n\n") {
            let mut types_deb = false;
            let mut uris = Vec::new();
            for line in stanza.lines() {
                let line = line.trim();
                if let Some(v) = line.strip_prefix("Types:") {
                    types_deb = v.split_whitespace().any(|t| t == "deb");
                } else if let Some(v) = line.strip_prefix("URIs:") {
                    uris.extend(v.split_whitespace().map(str::to_string));
                }
            }
            if types_deb {
                if let Some(u) = uris.into_iter().find(|u| good(u)) {
                    return Some(u.trim_end_matches('/').to_string());
                }
            }
        }
        // One-line format: deb [options] URI suite components…
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("deb") {
                continue;
            }
            let mut rest: Vec<&str> = words.collect();
            if rest.first().is_some_and(|w| w.starts_with('[')) {
                let end = rest.iter().position(|w| w.ends_with(']')).unwrap_or(0);
                rest.drain(..=end);
            }
            if let Some(u) = rest.first().filter(|u| good(u)) {
                return Some(u.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

/// The host's Debian mirror, from /etc/apt/sources.list(.d); the official
/// one if none is configured.
pub fn host_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "list" || e == "sources") {
                if let Ok(t) = fs::read_to_string(&p) {
                    texts.push(t);
                }
            }
        }
    }
    mirror_from_sources(&texts).unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// The host's Debian suite (from /etc/os-release), or bookworm.
pub fn host_suite() -> String {
    fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("VERSION_CODENAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "bookworm".to_string())
}

fn host_arch() -> String {
    Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "amd64".to_string())
}

/// Everything a Debian build depends on; its digest identifies the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianInputs {
    /// The suite.
    pub suite: String,
    /// The mirror.
    pub mirror: String,
    /// The architecture.
    pub arch: String,
    /// All packages, sorted and without duplicates.
    pub packages: Vec<String>,
    /// The role.
    pub role: Option<Role>,
    /// The sysctls.
    pub sysctls: BTreeMap<String, String>,
}

impl DebianInputs {
    /// The inputs of a request (role packages merged in).
    pub fn of(req: &BuildRequest, suite: Option<&str>) -> Self {
        let mut packages: Vec<String> = req.packages.iter().map(|p| p.trim().to_string()).collect();
        if let Some(role) = req.role {
            packages.extend(role.packages().into_iter().map(str::to_string));
        }
        packages.retain(|p| !p.is_empty());
        packages.sort();
        packages.dedup();
        DebianInputs {
            suite: suite.map(str::to_string).unwrap_or_else(host_suite),
            mirror: req.mirror.clone().unwrap_or_else(host_mirror),
            arch: host_arch(),
            packages,
            role: req.role,
            sysctls: req.role.map(Role::sysctls).unwrap_or_default(),
        }
    }

    /// `sha256:…` of the inputs.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "vbet-debian-recipe-{DEBIAN_RECIPE}\nsuite={}\nmirror={}\narch={}\nvariant=minbase\n",
            self.suite, self.mirror, self.arch
        ));
        for p in &self.packages {
            h.update(format!("package={p}\n"));
        }
        if let Some(r) = self.role {
            h.update(format!("role={r}\n"));
        }
        for (k, v) in &self.sysctls {
            h.update(format!("sysctl={k}={v}\n"));
        }
        format!("sha256:{}", hex(&h.finalize()))
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn build_debian(
    store: &ImageStore,
    req: &BuildRequest,
    suite: Option<&str>,
    progress: &ProgressBar,
) -> Result<(Image, bool), BuildError> {
    store.check_new_name(&req.name, true)?;
    let inputs = DebianInputs::of(req, suite);
    let inputs_digest = inputs.digest();
    // Same name, same inputs: nothing to do (unless asked to rebuild).
    if let Ok(existing) = store.get(&req.name) {
        if !req.replace && existing.manifest.inputs.as_deref() == Some(inputs_digest.as_str()) {
            return Ok((existing, true));
        }
        store.check_new_name(&req.name, req.replace)?;
    }
    let io_err = |op: &'static str, path: &Path| {
        let (name, path) = (req.name.clone(), path.to_path_buf());
        move |source| BuildError::Io {
            name,
            op,
            path,
            source,
        }
    };
    let staging = store.staging(&req.name)?;
    let rootfs = staging.rootfs().to_path_buf();
    // Another image with the same inputs: copy it (hard links).
    let twin = if req.replace {
        None
    } else {
        store
            .list()?
            .into_iter()
            .find(|i| i.manifest.inputs.as_deref() == Some(inputs_digest.as_str()))
    };
    let mut source = format!("debian {} from {}", inputs.suite, inputs.mirror);
    let mut known_digest = None;
    if let Some(twin) = twin {
        progress.set_message(format!("copying {} (same build inputs)", twin.name()));
        fs::create_dir(&rootfs).map_err(io_err("create", &rootfs))?;
        copy_tree(&twin.rootfs, &rootfs, true)?;
        source = twin.manifest.source.clone();
        // A copy keeps the digest (`rootfs-tool verify` rechecks it).
        let m = &twin.manifest;
        known_digest = Some(crate::digest::TreeDigest {
            digest: m.digest.clone(),
            size: m.size,
            entries: m.entries,
        });
    } else {
        let tool = run_bootstrap(req, &inputs, &staging, progress)?;
        source.push_str(&format!(" by {tool}"));
        write_sysctls(&rootfs, &inputs.sysctls).map_err(io_err("write sysctls in", &rootfs))?;
        write_file(&rootfs, "etc/init.d/rcS", RCS_SCRIPT, 0o755)
            .map_err(io_err("write", &rootfs))?;
        write_file(&rootfs, "init", INIT_SCRIPT, 0o755).map_err(io_err("write", &rootfs))?;
        write_file(&rootfs, "etc/hostname", "vbet\n", 0o644).map_err(io_err("write", &rootfs))?;
        remove_bootstrap_leftovers(&rootfs).map_err(io_err("clean up", &rootfs))?;
    }
    let digest = match known_digest {
        Some(d) => d,
        None => {
            progress.set_message(format!("computing the digest of {}", req.name));
            digest_tree(&rootfs).map_err(StoreError::from)?
        }
    };
    let mut manifest = Manifest::new(&req.name, ImageKind::Debian, source);
    manifest.packages = inputs.packages.clone();
    manifest.role = inputs.role.map(|r| r.to_string());
    manifest.sysctls = inputs.sysctls.clone();
    manifest.inputs = Some(inputs_digest);
    manifest.init = Some("/init".into());
    manifest.digest = digest.digest;
    manifest.size = digest.size;
    manifest.entries = digest.entries;
    Ok((store.install(staging, &manifest, req.replace)?, false))
}

/// Runs mmdebstrap (preferred) or debootstrap into the staging rootfs,
/// showing its output lines as progress. Returns the tool's name.
fn run_bootstrap(
    req: &BuildRequest,
    inputs: &DebianInputs,
    staging: &Staging,
    progress: &ProgressBar,
) -> Result<String, BuildError> {
    let rootfs = staging.rootfs();
    let candidates: &[&str] = match req.tool.as_deref() {
        None => &["mmdebstrap", "debootstrap"],
        Some("mmdebstrap") => &["mmdebstrap"],
        Some("debootstrap") => &["debootstrap"],
        Some(other) => return Err(BuildError::UnknownTool(other.to_string())),
    };
    let Some((tool, path)) = candidates.iter().find_map(|t| which(t).map(|p| (*t, p))) else {
        return Err(BuildError::NoBootstrapTool {
            name: req.name.clone(),
            tools: candidates.join(" or "),
        });
    };
    let mut cmd = Command::new(&path);
    cmd.arg("--variant=minbase");
    if !inputs.packages.is_empty() {
        cmd.arg(format!("--include={}", inputs.packages.join(",")));
    }
    if tool == "mmdebstrap" {
        cmd.args(["--mode=root", "--format=directory", "--verbose"]);
        fs::create_dir(rootfs).map_err(|source| BuildError::Io {
            name: req.name.clone(),
            op: "create",
            path: rootfs.to_path_buf(),
            source,
        })?;
    } else {
        cmd.arg(format!("--arch={}", inputs.arch));
    }
    cmd.arg(&inputs.suite).arg(rootfs).arg(&inputs.mirror);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    tracing::info!("running {cmd:?}");
    progress.set_message(format!(
        "{tool} {} ({} packages)",
        inputs.suite,
        inputs.packages.len()
    ));

    let log_path = staging.dir().join("build.log");
    let io_err = |op: &'static str, path: &Path| {
        let (name, path) = (req.name.clone(), path.to_path_buf());
        move |source| BuildError::Io {
            name,
            op,
            path,
            source,
        }
    };
    let mut child = cmd.spawn().map_err(io_err("run", &path))?;
    let log = std::sync::Arc::new(std::sync::Mutex::new(
        fs::File::create(&log_path).map_err(io_err("create", &log_path))?,
    ));
    let mut readers = Vec::new();
    let streams: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().expect("piped stdout")),
        Box::new(child.stderr.take().expect("piped stderr")),
    ];
    for stream in streams {
        let log = log.clone();
        let progress = progress.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Ok(mut f) = log.lock() {
                    let _ = writeln!(f, "{line}");
                }
                let short: String = line.chars().take(100).collect();
                progress.set_message(short);
            }
        }));
    }
    let status = child.wait().map_err(io_err("wait for", &path))?;
    for r in readers {
        let _ = r.join();
    }
    if status.success() {
        return Ok(tool.to_string());
    }
    let mut tail = tail_lines(&fs::read_to_string(&log_path).unwrap_or_default(), 20);
    let db_log = rootfs.join("debootstrap/debootstrap.log");
    if let Ok(text) = fs::read_to_string(&db_log) {
        tail.push_str(&format!("\n--- {} ---\n", db_log.display()));
        tail.push_str(&tail_lines(&text, 15));
    }
    Err(BuildError::Bootstrap {
        name: req.name.clone(),
        failure: Box::new(BootstrapFailure {
            tool: tool.to_string(),
            suite: inputs.suite.clone(),
            mirror: inputs.mirror.clone(),
            status: status.to_string(),
            log_tail: tail,
        }),
    })
}

/// Removes what a bootstrap leaves that an image does not need: the
/// downloaded packages (debootstrap keeps them), apt's binary caches and
/// debootstrap's own directory.
fn remove_bootstrap_leftovers(rootfs: &Path) -> io::Result<()> {
    let debootstrap = rootfs.join("debootstrap");
    if debootstrap.exists() {
        fs::remove_dir_all(&debootstrap)?;
    }
    for dir in [
        "var/cache/apt/archives",
        "var/cache/apt/archives/partial",
        "var/cache/apt",
    ] {
        let Ok(entries) = fs::read_dir(rootfs.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_file
                && (name.ends_with(".deb") || name.ends_with(".bin") || dir.ends_with("partial"))
            {
                fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

/// The last `n` lines of `text`, indented.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!("busybox".parse::<Source>().unwrap(), Source::Busybox);
        assert_eq!(
            "debian".parse::<Source>().unwrap(),
            Source::Debian { suite: None }
        );
        assert_eq!(
            "debian:trixie".parse::<Source>().unwrap(),
            Source::Debian {
                suite: Some("trixie".into())
            }
        );
        for bad in ["alpine", "debian:", "debian:a/b", "busybox:1"] {
            assert!(bad.parse::<Source>().is_err(), "{bad}");
        }
    }

    #[test]
    fn roles() {
        let r: Role = "router".parse().unwrap();
        assert!(r.packages().contains(&"frr"));
        assert_eq!(r.sysctls()["net.ipv4.ip_forward"], "1");
        assert!(
            "firewall"
                .parse::<Role>()
                .unwrap()
                .packages()
                .contains(&"nftables")
        );
        assert_eq!(Role::Host.sysctls()["net.ipv4.ip_forward"], "0");
        assert!("switch".parse::<Role>().is_err());
    }

    #[test]
    fn elf_static_check() {
        let mut elf = vec![0u8; 0x40 + 2 * 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        assert_eq!(elf_is_static(&elf), Some(true));
        elf[0x40 + 56..0x40 + 60].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert_eq!(elf_is_static(&elf), Some(false));
        assert_eq!(elf_is_static(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn link_targets_are_relative() {
        assert_eq!(busybox_link_target("bin/ls"), "busybox");
        assert_eq!(busybox_link_target("sbin/ip"), "../bin/busybox");
        assert_eq!(busybox_link_target("usr/bin/wc"), "../../bin/busybox");
        assert_eq!(busybox_link_target("linuxrc"), "bin/busybox");
    }

    #[test]
    fn mirrors() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n".to_string();
        assert_eq!(
            mirror_from_sources(&[deb822]).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let list =
            "# x\ndeb [signed-by=/k.gpg arch=amd64] https://mirror.example/debian/ bookworm main\n"
                .to_string();
        assert_eq!(
            mirror_from_sources(&[String::new(), list]).as_deref(),
            Some("https://mirror.example/debian")
        );
        let other = "deb https://packages.cloud.google.com/apt cloud-sdk main\ndeb-src http://x/debian b main\n".to_string();
        assert_eq!(mirror_from_sources(&[other]), None);
    }

    #[test]
    fn inputs_digest_is_stable_and_order_free() {
        let mut a = BuildRequest::new("a", Source::Debian { suite: None });
        a.packages = vec!["b".into(), "a".into(), "a".into()];
        a.mirror = Some("http://m/debian".into());
        let mut b = a.clone();
        b.name = "other".into();
        b.packages = vec!["a".into(), "b".into()];
        let ia = DebianInputs::of(&a, Some("bookworm"));
        let ib = DebianInputs::of(&b, Some("bookworm"));
        assert_eq!(ia.digest(), ib.digest());
        assert_ne!(ia.digest(), DebianInputs::of(&a, Some("trixie")).digest());
        let mut c = a.clone();
        c.role = Some(Role::Router);
        assert_ne!(DebianInputs::of(&c, Some("bookworm")).digest(), ia.digest());
    }

    #[test]
    fn bootstrap_leftovers_go() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("var/cache/apt/archives/partial")).unwrap();
        fs::create_dir_all(r.join("debootstrap")).unwrap();
        fs::write(r.join("var/cache/apt/archives/apt_2.6.1_amd64.deb"), "x").unwrap();
        fs::write(r.join("var/cache/apt/archives/lock"), "").unwrap();
        fs::write(r.join("var/cache/apt/pkgcache.bin"), "x").unwrap();
        fs::write(r.join("debootstrap/debootstrap.log"), "x").unwrap();
        remove_bootstrap_leftovers(r).unwrap();
        assert!(!r.join("debootstrap").exists());
        assert!(
            !r.join("var/cache/apt/archives/apt_2.6.1_amd64.deb")
                .exists()
        );
        assert!(!r.join("var/cache/apt/pkgcache.bin").exists());
        assert!(r.join("var/cache/apt/archives/lock").exists());
        assert!(r.join("var/cache/apt/archives/partial").is_dir());
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "  b\n  c");
        assert_eq!(tail_lines("", 2), "");
    }
}
