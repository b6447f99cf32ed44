//! The VM spec: what one VM is, as read from a TOML file or flags, and its
//! validation (every check that can fail runs before anything is created).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The smallest memory limit a VM may have: below it even the guest init
/// and a shell do not fit.
pub const MIN_MEMORY: u64 = 16 << 20;

/// One VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// The VM's name; also its hostname unless `hostname` is set.
    pub name: String,
    /// The lab the VM belongs to.
    #[serde(default = "default_lab")]
    pub lab: String,
    /// The root file system image: `host` (the host's root, read-only) or
    /// the path of a directory.
    #[serde(default = "default_image")]
    pub image: String,
    /// Where the writable layer lives (`upper/` and `work/` inside). Unset:
    /// on a tmpfs that vanishes with the VM. Must not be inside the image
    /// on the image's file system (overlayfs refuses that).
    #[serde(default)]
    pub layer_dir: Option<PathBuf>,
    /// Hostname (default: the name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Memory, CPU and pid limits.
    #[serde(default)]
    pub resources: Resources,
    /// Host directories shared into the VM.
    #[serde(default)]
    pub hostfs: Vec<Share>,
    /// Files placed in the VM before anything starts.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Shell command lines (`/bin/sh -c`) started once the VM is up.
    #[serde(default)]
    pub commands: Vec<String>,
    /// The VM's NICs.
    #[serde(default)]
    pub nics: Vec<NicSpec>,
    /// Static routes.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Network kernel parameters of the VM (`net.ipv4.ip_forward = "1"`),
    /// written in its network namespace after its NICs exist and before
    /// they come up — so `net.ipv6.conf.all.disable_ipv6` keeps even the
    /// first IPv6 frames off the wire. Only `net.*` keys: the others are
    /// the host's. A `/` in a key stands for a `.` in a name (`eth0/10`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sysctls: std::collections::BTreeMap<String, String>,
    /// What to do when the guest stops by itself.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Directory of the VM's sockets (default `/run/vbet/LAB`).
    #[serde(default)]
    pub run_dir: Option<PathBuf>,
    /// Syscall fault injection by rule at run time (AddFault): the guest
    /// runs under a filter that sends the faultable syscalls to the
    /// monitor, at ≈ 5–7 µs each. Default off: nothing is paid.
    #[serde(default)]
    pub faults: bool,
    /// Clock offsets of the guest (its time namespace).
    #[serde(default)]
    pub clock: ClockSpec,
    /// Liveness checks of the guest init.
    #[serde(default)]
    pub watchdog: WatchdogSpec,
    /// Fork a reaper that removes what the VM leaves on the host (cgroups,
    /// sockets, staging dir, lock) should the monitor be killed (default).
    /// Off when something else reaps the VM: the orchestrator does, for
    /// its labs, with [`crate::vm::reap`].
    #[serde(default = "default_reaper", skip_serializing_if = "is_true")]
    pub reaper: bool,
}

/// The watchdog: every `interval` seconds the monitor pings the guest
/// init over its channel; an init that does not answer within `timeout`
/// seconds (and is not frozen) is hung: the monitor kills it, which ends
/// the VM, and the restart policy decides what follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSpec {
    /// Seconds between checks; 0 = off (the default).
    #[serde(default)]
    pub interval: f64,
    /// Seconds an answer may take (default 5).
    #[serde(default = "default_watchdog_timeout")]
    pub timeout: f64,
    /// A health command (`/bin/sh -c`, in the guest) run at each check
    /// once the init has answered: it must exit 0 within `timeout`.
    /// Three failures in a row make the VM unhealthy: handled as hung.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

fn default_watchdog_timeout() -> f64 {
    5.0
}

impl Default for WatchdogSpec {
    fn default() -> Self {
        WatchdogSpec {
            health: None,
            interval: 0.0,
            timeout: default_watchdog_timeout(),
        }
    }
}

/// The guest's clocks, as offsets from the host's, in seconds (fractions
/// allowed; negative down to minus the host's uptime). MONOTONIC and
/// BOOTTIME offsets are set at boot, in the VM's time namespace, at no cost
/// per call. CLOCK_REALTIME offsets and rates need the virtual clock
/// ([`ClockSpec::is_virtual`]): the tracer emulates the guest's clock
/// syscalls (≈ 15–20 µs a call), so only VMs that ask get it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSpec {
    /// Added to CLOCK_MONOTONIC (and its _RAW and _COARSE variants).
    #[serde(default)]
    pub monotonic: f64,
    /// Added to CLOCK_BOOTTIME (what `uptime` and /proc/uptime show).
    #[serde(default)]
    pub boottime: f64,
    /// Added to CLOCK_REALTIME (`date`): needs the virtual clock.
    #[serde(default)]
    pub realtime: f64,
    /// Guest seconds per host second, for every clock (0.001..=1000; 1 =
    /// the host's pace): needs the virtual clock.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// The virtual clock even with no REALTIME offset and rate 1, so that
    /// `SetClock` can change them at run time.
    #[serde(default)]
    pub settable: bool,
}

fn default_rate() -> f64 {
    1.0
}

impl Default for ClockSpec {
    fn default() -> Self {
        ClockSpec {
            monotonic: 0.0,
            boottime: 0.0,
            realtime: 0.0,
            rate: 1.0,
            settable: false,
        }
    }
}

/// The largest clock offset accepted, in seconds (about 30 years).
pub const MAX_CLOCK_OFFSET: f64 = 1e9;

impl ClockSpec {
    /// Whether both time-namespace offsets are zero.
    pub fn is_zero(&self) -> bool {
        self.monotonic == 0.0 && self.boottime == 0.0
    }

    /// Whether the VM needs the virtual clock (a REALTIME offset, a rate,
    /// or `settable`).
    pub fn is_virtual(&self) -> bool {
        self.realtime != 0.0 || self.rate != 1.0 || self.settable
    }

    /// The lines for `/proc/PID/timens_offsets`.
    pub fn timens_offsets(&self) -> String {
        let line = |clock: &str, secs: f64| {
            let whole = secs.floor();
            let nanos = (((secs - whole) * 1e9).round() as i64).clamp(0, 999_999_999);
            format!("{clock} {} {nanos}\n", whole as i64)
        };
        line("monotonic", self.monotonic) + &line("boottime", self.boottime)
    }
}

fn default_lab() -> String {
    "default".into()
}

fn default_reaper() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn default_image() -> String {
    "host".into()
}

/// Resource limits; unset means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit: bytes, or a string with a K, M or G suffix ("64M").
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// CPU limit in CPUs (0.5 = half of one CPU).
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Maximum number of processes and threads.
    #[serde(default)]
    pub pids: Option<u64>,
}

/// A size in bytes, written as a number or as "64M".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ByteSizeRepr", into = "u64")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum ByteSizeRepr {
    Number(u64),
    Text(String),
}

impl TryFrom<ByteSizeRepr> for ByteSize {
    type Error = String;
    fn try_from(repr: ByteSizeRepr) -> Result<Self, String> {
        match repr {
            ByteSizeRepr::Number(n) => Ok(ByteSize(n)),
            ByteSizeRepr::Text(t) => t.parse(),
        }
    }
}

impl From<ByteSize> for u64 {
    fn from(size: ByteSize) -> u64 {
        size.0
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (digits, shift) = match text.char_indices().last() {
            Some((i, 'k' | 'K')) => (&text[..i], 10),
            Some((i, 'm' | 'M')) => (&text[..i], 20),
            Some((i, 'g' | 'G')) => (&text[..i], 30),
            _ => (text, 0),
        };
        let n: u64 = digits
            .trim()
            .parse()
            .map_err(|_| format!("invalid size {text:?} (examples: 67108864, \"64M\", \"1G\")"))?;
        n.checked_mul(1 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

/// A host directory shared into the VM by a bind mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// Host path.
    pub src: PathBuf,
    /// Absolute path in the VM.
    pub dst: PathBuf,
    /// Read-only (default) or read-write.
    #[serde(default)]
    pub mode: ShareMode,
}

/// Whether the VM may write to a share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareMode {
    /// Read-only.
    #[default]
    Ro,
    /// Read-write: what the VM writes reaches the host.
    Rw,
}

/// A file placed in the VM's root before anything starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path in the VM; parents are created.
    pub path: PathBuf,
    /// The file's content.
    pub content: String,
    /// Permission bits (TOML accepts `0o644`); default 0o644.
    #[serde(default = "default_mode")]
    pub mode: u32,
}

fn default_mode() -> u32 {
    0o644
}

/// One NIC of the VM: `eth{index}` in the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// 0 for eth0.
    pub index: u32,
    /// MAC address; default derived from lab, VM and index.
    #[serde(default)]
    pub mac: Option<String>,
    /// Addresses with prefix length ("10.0.0.1/24", "fd00::1/64").
    #[serde(default)]
    pub addresses: Vec<String>,
    /// What the NIC's cable plugs into.
    #[serde(default)]
    pub wiring: Wiring,
}

/// What a NIC's cable plugs into.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Wiring {
    /// A port of a switchd, hubd, uml_switch or vde_switch, through its
    /// control socket (port protocol version 3). The NIC plugs in again by
    /// itself when the switch restarts.
    Switch {
        /// The switch's control socket, or a VDE switch directory.
        ctl: PathBuf,
    },
    /// A direct cable to another VM's NIC: this monitor binds `local` (a
    /// Unix datagram socket) and sends every frame to `remote`, the peer
    /// monitor's `local`. No daemon in between.
    Wire {
        /// This end's datagram socket path (created; removed at teardown).
        local: PathBuf,
        /// The far end's datagram socket path.
        remote: PathBuf,
    },
    /// A cable to another host, carried over UDP as VXLAN (RFC 7348):
    /// this monitor binds `local` and sends every frame to `remote` with
    /// `vni`; the far end may be another monitor, a switchd `--vxlan`
    /// trunk, a Linux `vxlan` device or Open vSwitch.
    Vxlan {
        /// The local UDP address bound ("192.0.2.1:4789").
        local: std::net::SocketAddr,
        /// The far end's UDP address.
        remote: std::net::SocketAddr,
        /// The VXLAN network identifier (24 bits).
        vni: u32,
    },
    /// No cable: the NIC exists with no carrier peer (frames are dropped).
    #[default]
    None,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// "default" or a prefix ("10.1.0.0/16").
    pub dst: String,
    /// Gateway.
    #[serde(default)]
    pub via: Option<IpAddr>,
    /// Output NIC index (for a route without gateway).
    #[serde(default)]
    pub nic: Option<u32>,
}

/// What to do when the guest stops by itself (not through Shutdown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// The monitor exits with the guest.
    #[default]
    Never,
    /// Boot again when the guest init failed.
    OnFailure,
    /// Boot again whenever the guest stops.
    Always,
}

/// A spec that cannot be run, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read VM spec {path}")]
    Read {
        /// The spec file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid spec.
    #[error("invalid VM spec {path}: {message}")]
    Parse {
        /// The spec file.
        path: PathBuf,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A field has an invalid value.
    #[error("invalid VM spec: {0}")]
    Invalid(String),
    /// The image is not known.
    #[error("unknown image {0:?}: use \"host\" or the path of a root directory")]
    UnknownImage(String),
    /// The memory limit is below [`MIN_MEMORY`].
    #[error("memory limit {0} bytes is too small: a VM needs at least 16M")]
    MemoryTooSmall(u64),
    /// A NIC plugs into a switch whose socket does not exist.
    #[error("eth{nic}: switch socket {path} does not exist — is the switch running?")]
    MissingSwitch {
        /// NIC index.
        nic: u32,
        /// The control socket path.
        path: PathBuf,
    },
    /// A NIC plugs into a path that is not a socket.
    #[error("eth{nic}: {path} is not a Unix socket")]
    NotASocket {
        /// NIC index.
        nic: u32,
        /// The path.
        path: PathBuf,
    },
}

/// A parsed address with prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} has no prefix length (write \"10.0.0.1/24\")"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?}: invalid IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{text:?}: invalid prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("{text:?}: prefix length over {max}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

/// Parses "aa:bb:cc:dd:ee:ff".
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("{text:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16)
            .map_err(|_| format!("{text:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    }
    if mac[0] & 1 == 1 {
        return Err(format!("{text:?} is a multicast MAC address"));
    }
    Ok(mac)
}

fn check_name(what: &str, name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(SpecError::Invalid(format!(
            "{what} {name:?} must be 1-63 letters, digits, '-' or '_'"
        )))
    }
}

impl VmSpec {
    /// Reads and parses a TOML spec file (not yet validated).
    pub fn from_toml_file(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| SpecError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// A spec with only a name and defaults.
    pub fn named(name: &str) -> Self {
        VmSpec {
            name: name.into(),
            lab: default_lab(),
            image: default_image(),
            layer_dir: None,
            hostname: None,
            resources: Resources::default(),
            hostfs: Vec::new(),
            files: Vec::new(),
            commands: Vec::new(),
            nics: Vec::new(),
            routes: Vec::new(),
            sysctls: Default::default(),
            restart: RestartPolicy::Never,
            run_dir: None,
            faults: false,
            clock: ClockSpec::default(),
            watchdog: WatchdogSpec::default(),
            reaper: true,
        }
    }

    /// The guest's hostname.
    pub fn hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.name)
    }

    /// The directory of the VM's sockets.
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir
            .clone()
            .unwrap_or_else(|| Path::new("/run/vbet").join(&self.lab))
    }

    /// The gRPC API socket.
    pub fn api_socket(&self) -> PathBuf {
        self.run_dir().join(format!("{}.sock", self.name))
    }

    /// The lock file held while the VM exists (its name is taken).
    pub fn lock_path(&self) -> PathBuf {
        self.run_dir().join(format!("{}.lock", self.name))
    }

    /// The empty directory the guest's root is assembled on (only in the
    /// VM's mount namespace; removed once the guest has pivoted).
    pub fn staging_dir(&self) -> PathBuf {
        self.run_dir().join(format!("{}.root", self.name))
    }

    /// The name of the VM's cgroup, unique per lab and VM.
    pub fn cgroup_name(&self) -> String {
        format!("{}.{}", self.lab, self.name)
    }

    /// The lower directory of the root overlay.
    pub fn image_dir(&self) -> Result<PathBuf, SpecError> {
        if self.image == "host" {
            return Ok(PathBuf::from("/"));
        }
        // The seam for rootfs-tool: image names will be resolved through
        // its image store here. Until then an image is a directory path.
        let path = PathBuf::from(&self.image);
        if path.is_absolute() && path.is_dir() {
            Ok(path)
        } else {
            Err(SpecError::UnknownImage(self.image.clone()))
        }
    }

    /// Every check that does not need to create anything.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_name("VM name", &self.name)?;
        let w = &self.watchdog;
        let interval_ok = (0.0..=86_400.0).contains(&w.interval);
        let timeout_ok = (0.01..=3600.0).contains(&w.timeout);
        if !(interval_ok && timeout_ok) {
            return Err(SpecError::Invalid(format!(
                "watchdog interval {} s or timeout {} s out of range (0..86400, 0.01..3600)",
                w.interval, w.timeout
            )));
        }
        for (clock, offset) in [
            ("monotonic", self.clock.monotonic),
            ("boottime", self.clock.boottime),
        ] {
            if !offset.is_finite() || offset.abs() > MAX_CLOCK_OFFSET {
                return Err(SpecError::Invalid(format!(
                    "clock.{clock} offset {offset} s is out of range (±{MAX_CLOCK_OFFSET} s)"
                )));
            }
        }
        crate::clock::check_offset(self.clock.realtime)
            .and_then(|()| crate::clock::check_rate(self.clock.rate))
            .map_err(|e| SpecError::Invalid(e.to_string()))?;
        check_name("lab name", &self.lab)?;
        for (key, value) in &self.sysctls {
            check_sysctl(key, value)?;
        }
        if let Some(h) = &self.hostname {
            check_name("hostname", h)?;
        }
        let image = self.image_dir()?;
        if let Some(layer) = &self.layer_dir {
            if !layer.is_absolute() {
                return Err(SpecError::Invalid(format!(
                    "layer_dir {} must be an absolute path",
                    layer.display()
                )));
            }
            // overlayfs refuses an upper directory inside the lower tree of
            // the same file system (with the host's root as the image: any
            // directory of the root file system).
            let probe = existing_ancestor(layer);
            let probe = probe.canonicalize().unwrap_or(probe);
            let inside = image
                .canonicalize()
                .is_ok_and(|image| probe.starts_with(image));
            if let (Ok(a), Ok(b)) = (std::fs::metadata(&probe), std::fs::metadata(&image)) {
                if a.dev() == b.dev() && inside {
                    return Err(SpecError::Invalid(format!(
                        "layer_dir {} is inside the image on the same file system; overlayfs \
                         refuses that: put it on another file system or leave it unset (tmpfs)",
                        layer.display()
                    )));
                }
            }
        }
        // sockaddr_un holds 108 bytes with the terminating NUL.
        let mut sockets = vec![self.api_socket()];
        for n in &self.nics {
            if let Wiring::Wire { local, remote } = &n.wiring {
                sockets.push(local.clone());
                sockets.push(remote.clone());
            }
        }
        if let Some(long) = sockets.iter().find(|p| p.as_os_str().len() > 107) {
            return Err(SpecError::Invalid(format!(
                "socket path {} is longer than 107 bytes: use a shorter run_dir or wire path",
                long.display()
            )));
        }
        let r = &self.resources;
        if let Some(ByteSize(m)) = r.memory {
            if m < MIN_MEMORY {
                return Err(SpecError::MemoryTooSmall(m));
            }
        }
        if let Some(c) = r.cpus {
            if !(c > 0.0 && c <= 1024.0) {
                return Err(SpecError::Invalid(format!("cpus {c} must be above 0")));
            }
        }
        if let Some(p) = r.pids {
            if p < 4 {
                return Err(SpecError::Invalid(format!("pids {p} must be at least 4")));
            }
        }
        for share in &self.hostfs {
            if !share.src.exists() {
                return Err(SpecError::Invalid(format!(
                    "hostfs source {} does not exist",
                    share.src.display()
                )));
            }
            if !share.dst.is_absolute() {
                return Err(SpecError::Invalid(format!(
                    "hostfs destination {} must be absolute",
                    share.dst.display()
                )));
            }
        }
        for file in &self.files {
            if !file.path.is_absolute() || file.path.parent().is_none() {
                return Err(SpecError::Invalid(format!(
                    "file path {} must be absolute",
                    file.path.display()
                )));
            }
            if file.mode > 0o7777 {
                return Err(SpecError::Invalid(format!(
                    "file {} mode {:o} is not a permission mode",
                    file.path.display(),
                    file.mode
                )));
            }
        }
        let mut seen = BTreeSet::new();
        for nic in &self.nics {
            if nic.index > 63 || !seen.insert(nic.index) {
                return Err(SpecError::Invalid(format!(
                    "NIC index {} is over 63 or given twice",
                    nic.index
                )));
            }
            if let Some(mac) = &nic.mac {
                parse_mac(mac).map_err(|e| SpecError::Invalid(format!("eth{}: {e}", nic.index)))?;
            }
            for a in &nic.addresses {
                a.parse::<Cidr>()
                    .map_err(|e| SpecError::Invalid(format!("eth{}: {e}", nic.index)))?;
            }
            match &nic.wiring {
                Wiring::Switch { ctl } => check_socket(nic.index, ctl)?,
                Wiring::Wire { local, remote } => {
                    for p in [local, remote] {
                        if !p.is_absolute() || !p.parent().is_some_and(Path::is_dir) {
                            return Err(SpecError::Invalid(format!(
                                "eth{}: wire path {} must be absolute in an existing directory",
                                nic.index,
                                p.display()
                            )));
                        }
                    }
                }
                Wiring::Vxlan { vni, .. } => {
                    if *vni > vbet_port::vxlan::MAX_VNI {
                        return Err(SpecError::Invalid(format!(
                            "eth{}: VNI {vni} does not fit in 24 bits",
                            nic.index
                        )));
                    }
                }
                Wiring::None => {}
            }
        }
        for route in &self.routes {
            if route.dst != "default" {
                route
                    .dst
                    .parse::<Cidr>()
                    .map_err(|e| SpecError::Invalid(format!("route: {e}")))?;
            }
            if route.via.is_none() && route.nic.is_none() {
                return Err(SpecError::Invalid(format!(
                    "route to {} needs `via` or `nic`",
                    route.dst
                )));
            }
            if let Some(n) = route.nic {
                if !seen.contains(&n) {
                    return Err(SpecError::Invalid(format!(
                        "route to {} uses eth{n}, which the VM does not have",
                        route.dst
                    )));
                }
            }
        }
        Ok(())
    }
}

fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
    p
}

fn check_socket(nic: u32, path: &Path) -> Result<(), SpecError> {
    // A VDE-style switch directory stands for its `ctl` socket.
    let path = &vbet_port::client::control_path(path);
    match std::fs::metadata(path) {
        Err(_) => Err(SpecError::MissingSwitch {
            nic,
            path: path.to_owned(),
        }),
        Ok(m) if !m.file_type().is_socket() => Err(SpecError::NotASocket {
            nic,
            path: path.to_owned(),
        }),
        Ok(_) => Ok(()),
    }
}

/// Checks a network kernel parameter of a VM: a `net.*` key of plain
/// name characters, and a value of one line.
fn check_sysctl(key: &str, value: &str) -> Result<(), SpecError> {
    let plain = key.split('.').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-/:".contains(&b))
    });
    if !key.starts_with("net.") || !plain || key.contains("..") {
        return Err(SpecError::Invalid(format!(
            "sysctl {key:?}: only network parameters (net.…) are the VM's own; set others in a command"
        )));
    }
    if value.contains('\n') || value.len() > 4096 {
        return Err(SpecError::Invalid(format!(
            "sysctl {key}: the value must be one line"
        )));
    }
    Ok(())
}

/// Where a kernel parameter lives under /proc/sys: dots are directories,
/// a `/` stands for a dot inside a name (`net.ipv4.conf.eth0/10.forwarding`).
pub fn sysctl_path(key: &str) -> PathBuf {
    let relative: String = key
        .chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect();
    Path::new("/proc/sys").join(relative)
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    #[test]
    fn clock_offsets() {
        let c = ClockSpec {
            monotonic: 3600.0,
            boottime: -1.25,
            ..Default::default()
        };
        assert_eq!(
            c.timens_offsets(),
            "monotonic 3600 0\nboottime -2 750000000\n"
        );
        let spec: VmSpec = toml::from_str("name = \"a\"\nclock = { boottime = 86400 }\n").unwrap();
        assert_eq!(spec.clock.boottime, 86400.0);
        assert!(VmSpec::named("a").clock.is_zero());
        let mut bad = VmSpec::named("a");
        bad.clock.monotonic = f64::NAN;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("clock.monotonic")
        );
    }

    #[test]
    fn virtual_clock_fields() {
        let spec: VmSpec =
            toml::from_str("name = \"a\"\nclock = { realtime = 3600, rate = 0.5 }\n").unwrap();
        assert!(spec.clock.is_virtual());
        assert_eq!(spec.clock.rate, 0.5);
        assert!(!VmSpec::named("a").clock.is_virtual());
        let mut bad = VmSpec::named("a");
        bad.clock.rate = 0.0;
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("clock rate 0 is out of range"), "{err}");
        let mut bad = VmSpec::named("a");
        bad.clock.realtime = f64::INFINITY;
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("realtime offset"), "{err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_spec() {
        let spec: VmSpec = toml::from_str(
            r#"
            name = "r1"
            lab = "ospf"
            resources = { memory = "64M", cpus = 0.5, pids = 100 }
            commands = ["echo hi"]
            [[files]]
            path = "/etc/frr/daemons"
            content = "ospfd=yes\n"
            mode = 0o640
            [[nics]]
            index = 0
            addresses = ["10.0.0.1/24"]
            wiring = { kind = "wire", local = "/tmp/a", remote = "/tmp/b" }
            [[routes]]
            dst = "default"
            via = "10.0.0.254"
            "#,
        )
        .unwrap();
        assert_eq!(spec.resources.memory, Some(ByteSize(64 << 20)));
        assert_eq!(spec.files[0].mode, 0o640);
        assert_eq!(
            spec.nics[0].wiring,
            Wiring::Wire {
                local: "/tmp/a".into(),
                remote: "/tmp/b".into()
            }
        );
        assert_eq!(spec.hostname(), "r1");
        assert_eq!(spec.api_socket(), PathBuf::from("/run/vbet/ospf/r1.sock"));
        spec.validate().unwrap();
    }

    #[test]
    fn a_reaper_unless_told_otherwise() {
        let spec: VmSpec = toml::from_str("name = \"a\"").unwrap();
        assert!(spec.reaper);
        assert!(!toml::to_string(&spec).unwrap().contains("reaper"));
        let spec: VmSpec = toml::from_str("name = \"a\"\nreaper = false").unwrap();
        assert!(!spec.reaper);
        let again: VmSpec = toml::from_str(&toml::to_string(&spec).unwrap()).unwrap();
        assert!(!again.reaper);
    }

    #[test]
    fn rejects_bad_values() {
        let mut spec = VmSpec::named("a");
        spec.resources.memory = Some(ByteSize(1 << 20));
        assert!(matches!(spec.validate(), Err(SpecError::MemoryTooSmall(_))));
        let mut spec = VmSpec::named("a");
        spec.image = "nope".into();
        assert!(matches!(spec.validate(), Err(SpecError::UnknownImage(_))));
        let mut spec = VmSpec::named("a b");
        assert!(spec.validate().is_err());
        spec.name = "ok".into();
        spec.nics.push(NicSpec {
            index: 0,
            mac: None,
            addresses: vec!["10.0.0.1".into()],
            wiring: Wiring::None,
        });
        assert!(spec.validate().is_err());
        spec.nics[0].addresses = vec![];
        let mut long = VmSpec::named("x");
        long.run_dir = Some(PathBuf::from(format!("/tmp/{}", "d".repeat(110))));
        assert!(
            long.validate()
                .unwrap_err()
                .to_string()
                .contains("longer than 107")
        );
        spec.nics[0].wiring = Wiring::Switch {
            ctl: "/nonexistent/ctl".into(),
        };
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("is the switch running"), "{err}");
    }

    #[test]
    fn parses_sizes_and_macs() {
        assert_eq!("1G".parse::<ByteSize>().unwrap(), ByteSize(1 << 30));
        assert_eq!("512k".parse::<ByteSize>().unwrap(), ByteSize(512 << 10));
        assert!("x".parse::<ByteSize>().is_err());
        assert_eq!(parse_mac("02:00:00:00:00:01").unwrap(), [2, 0, 0, 0, 0, 1]);
        assert!(parse_mac("01:00:00:00:00:01").is_err());
        assert_eq!("fd00::1/64".parse::<Cidr>().unwrap().prefix, 64);
        assert!("10.0.0.1/33".parse::<Cidr>().is_err());
    }
}
