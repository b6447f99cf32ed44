//! The paper's experiments, each one command that brings its lab up, runs,
//! prints and writes its results, and tears the lab down.

pub mod chord;
pub mod firewall;
pub mod ospf;
pub mod svg;

use std::path::{Path, PathBuf};

use crate::client::{self, Client};

/// Deploys `topology` as `lab`, runs `work` on it, then tears the lab
/// down — also when `work` fails — unless `keep`.
pub async fn with_lab<T>(
    client: &mut Client,
    topology: &Path,
    lab: &str,
    keep: bool,
    work: impl AsyncFnOnce(&mut Client) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    client::deploy(client, topology, lab).await?;
    let result = work(client).await;
    if keep {
        eprintln!("The lab is kept: `vbet down {lab}` removes it.");
    } else {
        eprintln!("Tearing the lab down …");
        if let Err(e) = client::destroy(client, lab).await {
            eprintln!("warning: {e:#}");
        }
    }
    result
}

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
