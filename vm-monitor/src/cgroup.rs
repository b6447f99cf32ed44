//! One cgroup per VM, on cgroup v2 or on the v1 controllers (hybrid hosts),
//! named `vbet/LAB.VM`: memory, CPU and pid limits, usage, freezer.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::spec::Resources;

/// A failed cgroup operation.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Neither cgroup v2 nor the v1 memory controller is mounted.
    #[error(
        "no usable cgroup hierarchy under {0} (need cgroup v2 or the v1 memory, cpu and pids controllers)"
    )]
    NoHierarchy(PathBuf),
    /// A cgroup of that name has processes: a VM of that name runs.
    #[error("cgroup {0} has processes: a VM with that lab and name is running")]
    InUse(PathBuf),
    /// Reading or writing a cgroup file failed.
    #[error("cgroup file {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The freezer did not reach the state in time.
    #[error("cgroup {0} did not freeze or thaw in time")]
    FreezeTimeout(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Which cgroup layout the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// Unified hierarchy mounted at the path.
    V2(PathBuf),
    /// One hierarchy per controller under the path (`memory/`, `cpu/`, …).
    V1(PathBuf),
}

impl Hierarchy {
    /// Looks at `root` (normally `/sys/fs/cgroup`).
    pub fn detect(root: &Path) -> Result<Self, CgroupError> {
        if root.join("cgroup.controllers").exists() {
            return Ok(Hierarchy::V2(root.to_owned()));
        }
        if root.join("memory/memory.limit_in_bytes").exists() {
            return Ok(Hierarchy::V1(root.to_owned()));
        }
        let unified = root.join("unified");
        if let Ok(c) = std::fs::read_to_string(unified.join("cgroup.controllers")) {
            if c.contains("memory") {
                return Ok(Hierarchy::V2(unified));
            }
        }
        Err(CgroupError::NoHierarchy(root.to_owned()))
    }
}

/// v1 controllers a VM uses, by directory name.
const V1_CONTROLLERS: [&str; 6] = ["memory", "cpu", "cpuacct", "pids", "freezer", "devices"];

/// The devices a guest may open (v1 devices controller; everything else is
/// denied, so a device node found in an image or a share cannot reach the
/// host's disks or memory). Each is what the VM's /dev holds.
pub const ALLOWED_DEVICES: &[(&str, &str)] = &[
    ("c 1:3 rwm", "/dev/null"),
    ("c 1:5 rwm", "/dev/zero"),
    ("c 1:7 rwm", "/dev/full"),
    ("c 1:8 rwm", "/dev/random"),
    ("c 1:9 rwm", "/dev/urandom"),
    ("c 5:0 rwm", "/dev/tty"),
    ("c 5:2 rwm", "/dev/ptmx"),
    ("c 136:* rwm", "/dev/pts/*"),
    ("c 10:200 rwm", "/dev/net/tun"),
];

/// The cgroup of one VM.
#[derive(Debug, Clone)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    name: String,
}

/// What a VM's cgroup reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Memory in use, bytes.
    pub memory: u64,
    /// Memory limit, bytes (0 = none).
    pub memory_limit: u64,
    /// CPU time, nanoseconds.
    pub cpu_ns: u64,
    /// Processes and threads.
    pub pids: u64,
    /// Pid limit (0 = none).
    pub pids_limit: u64,
}

impl Cgroup {
    /// The cgroup `vbet/NAME` in `hierarchy` (not created yet).
    pub fn new(hierarchy: Hierarchy, name: &str) -> Self {
        Cgroup {
            hierarchy,
            name: name.to_owned(),
        }
    }

    /// Every directory of the cgroup (one per v1 controller, or one).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match &self.hierarchy {
            Hierarchy::V2(root) => vec![root.join("vbet").join(&self.name)],
            Hierarchy::V1(root) => V1_CONTROLLERS
                .iter()
                .map(|c| root.join(c))
                .filter(|c| c.is_dir())
                .map(|c| c.join("vbet").join(&self.name))
                .collect(),
        }
    }

    /// The `cgroup.procs` files a process writes "0" to in order to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    fn dir_of(&self, controller: &str) -> PathBuf {
        match &self.hierarchy {
            Hierarchy::V2(root) => root.join("vbet").join(&self.name),
            Hierarchy::V1(root) => root.join(controller).join("vbet").join(&self.name),
        }
    }

    /// Whether any directory of the cgroup exists and holds processes.
    pub fn in_use(&self) -> bool {
        self.dirs().iter().any(|d| {
            std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
        })
    }

    /// Creates the cgroup and sets the limits. A stale empty cgroup of the
    /// same name (a VM that died) is reused; one with processes is refused.
    pub fn create(&self, limits: &Resources) -> Result<(), CgroupError> {
        if self.in_use() {
            return Err(CgroupError::InUse(self.dirs()[0].clone()));
        }
        if let Hierarchy::V2(root) = &self.hierarchy {
            let parent = root.join("vbet");
            create_dir(&parent)?;
            for dir in [root.as_path(), parent.as_path()] {
                // Enabling controllers the parent already passes down is a
                // no-op; one the kernel lacks fails: only the ones we use.
                for c in ["+memory", "+cpu", "+pids"] {
                    let _ = std::fs::write(dir.join("cgroup.subtree_control"), c);
                }
            }
        }
        for dir in self.dirs() {
            create_dir(&dir)?;
        }
        let v2 = matches!(self.hierarchy, Hierarchy::V2(_));
        if let Some(mem) = limits.memory {
            let dir = self.dir_of("memory");
            if v2 {
                write(&dir.join("memory.max"), &mem.0.to_string())?;
                // No swap: the limit is the limit (the file is absent
                // without swap accounting).
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
            } else {
                write(&dir.join("memory.limit_in_bytes"), &mem.0.to_string())?;
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &mem.0.to_string())?;
                }
            }
        }
        if let Some(cpus) = limits.cpus {
            let period = 100_000u64;
            let quota = ((cpus * period as f64) as u64).max(1000);
            let dir = self.dir_of("cpu");
            if v2 {
                write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
            } else {
                write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        if let Some(pids) = limits.pids {
            write(&self.dir_of("pids").join("pids.max"), &pids.to_string())?;
        }
        // v2 has no devices files (it takes a BPF program): there the
        // missing CAP_MKNOD and the VM's own /dev are the barrier.
        let devices = self.dir_of("devices");
        if !v2 && devices.join("devices.deny").exists() {
            write(&devices.join("devices.deny"), "a")?;
            for (rule, _what) in ALLOWED_DEVICES {
                write(&devices.join("devices.allow"), rule)?;
            }
        }
        Ok(())
    }

    /// Reads the cgroup's usage; missing files read as 0.
    pub fn usage(&self) -> Usage {
        let num = |p: PathBuf| -> u64 {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        let unlimited = |v: u64| if v >= (1 << 60) { 0 } else { v };
        match &self.hierarchy {
            Hierarchy::V2(_) => {
                let d = self.dir_of("");
                let cpu_us = std::fs::read_to_string(d.join("cpu.stat"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| {
                                l.strip_prefix("usage_usec ").map(|v| v.trim().parse().ok())
                            })
                            .flatten()
                    })
                    .unwrap_or(0u64);
                Usage {
                    memory: num(d.join("memory.current")),
                    memory_limit: num(d.join("memory.max")),
                    cpu_ns: cpu_us * 1000,
                    pids: num(d.join("pids.current")),
                    pids_limit: num(d.join("pids.max")),
                }
            }
            Hierarchy::V1(_) => Usage {
                memory: num(self.dir_of("memory").join("memory.usage_in_bytes")),
                memory_limit: unlimited(num(self.dir_of("memory").join("memory.limit_in_bytes"))),
                cpu_ns: num(self.dir_of("cpuacct").join("cpuacct.usage")),
                pids: num(self.dir_of("pids").join("pids.current")),
                pids_limit: num(self.dir_of("pids").join("pids.max")),
            },
        }
    }

    /// Freezes (true) or thaws (false) every process, waiting until the
    /// kernel reports the new state.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let (file, value, status, want) = match &self.hierarchy {
            Hierarchy::V2(_) => {
                let d = self.dir_of("");
                (
                    d.join("cgroup.freeze"),
                    if frozen { "1" } else { "0" },
                    d.join("cgroup.events"),
                    if frozen { "frozen 1" } else { "frozen 0" },
                )
            }
            Hierarchy::V1(_) => {
                let d = self.dir_of("freezer");
                let state = if frozen { "FROZEN" } else { "THAWED" };
                (
                    d.join("freezer.state"),
                    state,
                    d.join("freezer.state"),
                    state,
                )
            }
        };
        write(&file, value)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = std::fs::read_to_string(&status).map_err(io_err(&status))?;
            if now.lines().any(|l| l.trim() == want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CgroupError::FreezeTimeout(file));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Removes every directory of the cgroup, waiting up to `wait` for its
    /// processes to be gone; keeps going past failures and returns them all.
    pub fn remove(&self, wait: Duration) -> Vec<CgroupError> {
        let deadline = Instant::now() + wait;
        let mut errors = Vec::new();
        for dir in self.dirs() {
            if !dir.exists() {
                continue;
            }
            loop {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(source) => {
                        errors.push(CgroupError::Io {
                            path: dir.clone(),
                            source,
                        });
                        break;
                    }
                }
            }
            // The shared `vbet` parent goes when the last VM does; another
            // VM being created at the same time retries (see create_dir).
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        errors
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_err(path))
}

fn create_dir(dir: &Path) -> Result<(), CgroupError> {
    for _ in 0..5 {
        if let Some(parent) = dir.parent() {
            match std::fs::create_dir(parent) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(CgroupError::Io {
                        path: parent.to_owned(),
                        source,
                    });
                }
            }
        }
        match std::fs::create_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            // The parent was removed by a VM going away: try again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CgroupError::Io {
                    path: dir.to_owned(),
                    source,
                });
            }
        }
    }
    Err(CgroupError::Io {
        path: dir.to_owned(),
        source: io::Error::from(io::ErrorKind::NotFound),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_layout_on_a_fake_tree() {
        let root = tempfile::tempdir().unwrap();
        for c in V1_CONTROLLERS {
            std::fs::create_dir(root.path().join(c)).unwrap();
        }
        std::fs::write(root.path().join("memory/memory.limit_in_bytes"), "").unwrap();
        let h = Hierarchy::detect(root.path()).unwrap();
        assert_eq!(h, Hierarchy::V1(root.path().to_owned()));
        let cg = Cgroup::new(h, "lab.vm");
        let limits = Resources {
            memory: Some(crate::spec::ByteSize(64 << 20)),
            cpus: Some(0.5),
            pids: Some(50),
        };
        cg.create(&limits).unwrap();
        let mem = root.path().join("memory/vbet/lab.vm/memory.limit_in_bytes");
        assert_eq!(
            std::fs::read_to_string(mem).unwrap(),
            (64u64 << 20).to_string()
        );
        let quota = root.path().join("cpu/vbet/lab.vm/cpu.cfs_quota_us");
        assert_eq!(std::fs::read_to_string(quota).unwrap(), "50000");
        assert_eq!(cg.procs_files().len(), 6);
        assert_eq!(cg.usage().pids_limit, 50);
    }

    #[test]
    fn v2_detected() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let h = Hierarchy::detect(root.path()).unwrap();
        let cg = Cgroup::new(h, "l.v");
        assert_eq!(cg.dirs(), vec![root.path().join("vbet/l.v")]);
    }
}
