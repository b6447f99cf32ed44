//! The paper's experiments, each one command that brings its lab up, runs,
//! prints and writes its results, and tears the lab down.

pub mod chord;
pub mod firewall;
pub mod ospf;
pub mod svg;

use std::path::{Path, PathBuf};

/// A fresh results directory `ROOT/NAME-YYYYmmdd-HHMMSS`.
pub fn results_dir(root: &Path, name: &str) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let dir = root.join(format!("{name}-{secs}"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Seconds since the Unix epoch, as a float.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}
