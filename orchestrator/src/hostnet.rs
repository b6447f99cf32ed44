//! The host's neighbour tables. Linux keeps one ARP table (and one NDP
//! table) for all network namespaces, bounded by `gc_thresh3` (1024 by
//! default); a lab of 64 VMs on one switch needs about 4000 entries and
//! would see "neighbor table overflow" and ENOBUFS. Before a deploy the
//! orchestrator raises the bounds to fit every lab, remembering the
//! original values, and puts them back when the last lab is gone.
//!
//! The bounds are host-wide and several orchestrators (other run roots)
//! may run at once, so the record is host-wide too: [`STATE_DIR`] holds
//! the original values (written once) and one claim per lab that raised
//! them (naming the lab's run directory). The originals go back when no
//! claim is left; a claim whose lab directory is gone is stale.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vbet_topology::model::Topology;

/// The host-wide record of raised bounds.
pub const STATE_DIR: &str = "/run/vbet-neigh";

const FAMILIES: [&str; 2] = ["ipv4", "ipv6"];

fn knob(family: &str, n: u8) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/{family}/neigh/default/gc_thresh{n}"))
}

fn read(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The original bounds, saved while they are raised.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    /// (family, [thresh1, thresh2, thresh3]).
    values: Vec<(String, [u64; 3])>,
}

fn saved_path(state: &Path) -> PathBuf {
    state.join("originals.json")
}

fn claim_path(state: &Path, lab_dir: &Path) -> PathBuf {
    let name: String = lab_dir
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    state.join(format!("claim-{name}"))
}

/// Claims that still stand (their lab directory exists); stale ones are
/// removed.
fn live_claims(state: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(state) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("claim-"))
        .filter(|e| {
            let lab_dir = std::fs::read_to_string(e.path()).unwrap_or_default();
            let live = Path::new(lab_dir.trim()).is_dir();
            if !live {
                let _ = std::fs::remove_file(e.path());
            }
            live
        })
        .count()
}

/// Neighbour entries a topology may need: on each switch or hub every NIC
/// may learn every other; each direct cable, two.
pub fn need(topo: &Topology) -> u64 {
    let mut total = 0u64;
    for switch in &topo.switches {
        let k = topo
            .cables
            .iter()
            .filter(|c| c.a.device == switch.name || c.b.device == switch.name)
            .count() as u64;
        total += k * k.saturating_sub(1);
    }
    let direct = topo
        .cables
        .iter()
        .filter(|c| topo.switch(&c.a.device).is_none() && topo.switch(&c.b.device).is_none())
        .count() as u64;
    total + 2 * direct
}

/// Raises the host's neighbour-table bounds so that `extra` more entries
/// fit beside those of labs already up (`existing`), saving the original
/// values once (in `state`) and claiming them for the lab at `lab_dir`.
/// Returns a message when it changed anything.
pub fn ensure(
    state: &Path,
    lab_dir: &Path,
    existing: u64,
    extra: u64,
) -> std::io::Result<Option<String>> {
    let wanted = (existing + extra) * 5 / 4 + 256;
    let mut originals = Vec::new();
    let mut changed = Vec::new();
    for family in FAMILIES {
        let current: Vec<u64> = (1..=3)
            .map(|n| read(&knob(family, n)).unwrap_or(0))
            .collect();
        if current[2] >= wanted {
            continue;
        }
        originals.push((family.to_owned(), [current[0], current[1], current[2]]));
        let thresh3 = wanted.next_power_of_two();
        // Raise from the top down so the bounds stay ordered.
        std::fs::write(knob(family, 3), thresh3.to_string())?;
        std::fs::write(knob(family, 2), (thresh3 / 2).max(current[1]).to_string())?;
        std::fs::write(knob(family, 1), (thresh3 / 8).max(current[0]).to_string())?;
        changed.push(format!("{family} gc_thresh3 {} -> {thresh3}", current[2]));
    }
    if changed.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(state)?;
    let path = saved_path(state);
    if !path.exists() {
        let text =
            serde_json::to_vec(&Saved { values: originals }).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)?;
    }
    std::fs::write(claim_path(state, lab_dir), lab_dir.display().to_string())?;
    Ok(Some(format!(
        "raised the host's neighbour-table limits for this lab ({}); they go back when the last lab is down",
        changed.join(", ")
    )))
}

/// Drops the claim of the lab at `lab_dir` and, when no claim is left,
/// puts back the bounds saved by [`ensure`].
pub fn release(state: &Path, lab_dir: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(claim_path(state, lab_dir));
    if live_claims(state) > 0 {
        return Ok(());
    }
    let path = saved_path(state);
    let Ok(text) = std::fs::read(&path) else {
        return Ok(());
    };
    let saved: Saved = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
    for (family, [t1, t2, t3]) in saved.values {
        // Lower from the bottom up so the bounds stay ordered.
        std::fs::write(knob(&family, 1), t1.to_string())?;
        std::fs::write(knob(&family, 2), t2.to_string())?;
        std::fs::write(knob(&family, 3), t3.to_string())?;
    }
    std::fs::remove_file(path)?;
    let _ = std::fs::remove_dir(state);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_grows_with_the_square_of_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.vbet");
        std::fs::write(
            &path,
            "sw = alloc(switch)\nfor i in 1..10 { h${i} = attach(alloc(host), alloc(NIC))\n link(sw, h${i}) }\n\
             a = attach(alloc(host), alloc(NIC))\nb = attach(alloc(host), alloc(NIC))\nlink(NIC(a,1), NIC(b,1))\n",
        )
        .unwrap();
        let topo = vbet_topology::load(&path).unwrap();
        assert_eq!(need(&topo), 10 * 9 + 2);
    }

    #[test]
    fn claims_of_gone_labs_are_stale() {
        let state = tempfile::tempdir().unwrap();
        let lab = tempfile::tempdir().unwrap();
        std::fs::write(
            claim_path(state.path(), lab.path()),
            lab.path().display().to_string(),
        )
        .unwrap();
        let gone = Path::new("/nonexistent/lab");
        std::fs::write(claim_path(state.path(), gone), gone.display().to_string()).unwrap();
        assert_eq!(live_claims(state.path()), 1);
        assert!(!claim_path(state.path(), gone).exists());
    }
}
