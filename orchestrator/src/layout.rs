//! Where a lab's files live: its run directory holds the daemons' sockets,
//! the VM specs, logs and the lab's state file.
//!
//! ```text
//! /run/vbet/orchestrator.sock         the orchestrator's API
//! /run/vbet/LAB/lab.json              the lab's state
//! /run/vbet/LAB/sw/SW/{ctl,api}       a switch's sockets (data: ctl.N)
//! /run/vbet/LAB/NODE.sock             a VM monitor's API
//! /run/vbet/LAB/wire/NODE.N           a direct cable's end
//! /run/vbet/LAB/specs/NODE.toml       the spec a monitor was started with
//! /run/vbet/LAB/logs/NAME.log         a component's log
//! ```

use std::path::PathBuf;

/// The default root of every lab's run directory.
pub const DEFAULT_RUN_ROOT: &str = "/run/vbet";
/// Longest lab name: socket paths must fit in 107 bytes.
pub const MAX_LAB_NAME: usize = 32;

/// The file layout under one run root.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The root (`/run/vbet` by default).
    pub run_root: PathBuf,
    /// Where vBET's own programs are (switchd, vm-monitor, chord-peer…);
    /// put on the PATH of every service in a VM.
    pub tools: Option<PathBuf>,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            run_root: PathBuf::from(DEFAULT_RUN_ROOT),
            tools: None,
        }
    }
}

impl Layout {
    /// The orchestrator's API socket.
    pub fn orchestrator_socket(&self) -> PathBuf {
        self.run_root.join("orchestrator.sock")
    }

    /// A lab's run directory.
    pub fn lab_dir(&self, lab: &str) -> PathBuf {
        self.run_root.join(lab)
    }

    /// A lab's state file.
    pub fn state_file(&self, lab: &str) -> PathBuf {
        self.lab_dir(lab).join("lab.json")
    }

    /// A switch's directory (control socket `ctl`, API socket `api`).
    pub fn switch_dir(&self, lab: &str, switch: &str) -> PathBuf {
        self.lab_dir(lab).join("sw").join(switch)
    }

    /// A VM monitor's API socket (vm-monitor puts it at RUN_DIR/NAME.sock).
    pub fn vm_api(&self, lab: &str, node: &str) -> PathBuf {
        self.lab_dir(lab).join(format!("{node}.sock"))
    }

    /// The spec file a VM monitor is started with.
    pub fn spec_file(&self, lab: &str, node: &str) -> PathBuf {
        self.lab_dir(lab).join("specs").join(format!("{node}.toml"))
    }

    /// One end of a direct cable: NIC `nic` (from 1) of `node`.
    pub fn wire(&self, lab: &str, node: &str, nic: u32) -> PathBuf {
        self.lab_dir(lab).join("wire").join(format!("{node}.{nic}"))
    }

    /// A component's log file.
    pub fn log(&self, lab: &str, component: &str) -> PathBuf {
        self.lab_dir(lab)
            .join("logs")
            .join(format!("{component}.log"))
    }
}

/// Checks a lab name: 1–32 letters, digits, `-` or `_`, starting with a
/// letter or digit.
pub fn check_lab_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LAB_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "lab name {name:?} is not valid: use 1-{MAX_LAB_NAME} letters, digits, '-' or '_'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fit_in_a_socket_address() {
        let layout = Layout::default();
        let lab = "a".repeat(MAX_LAB_NAME);
        let longest = layout.switch_dir(&lab, &"s".repeat(32)).join("ctl.65535");
        assert!(longest.as_os_str().len() < 107, "{}", longest.display());
    }

    #[test]
    fn lab_names_are_checked() {
        assert!(check_lab_name("ospf-1").is_ok());
        assert!(check_lab_name("").is_err());
        assert!(check_lab_name("../etc").is_err());
        assert!(check_lab_name(&"x".repeat(33)).is_err());
    }
}
