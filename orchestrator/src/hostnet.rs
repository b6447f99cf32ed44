//! The host's neighbour tables. Linux keeps one ARP table (and one NDP
//! table) for all network namespaces, bounded by `gc_thresh3` (1024 by
//! default); a lab of 64 VMs on one switch needs about 4000 entries and
//! would see "neighbor table overflow" and ENOBUFS. Before a deploy the
//! orchestrator raises the bounds to fit every lab, remembering the
//! original values, and puts them back when the last lab is gone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vbet_topology::model::Topology;

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

fn saved_path(run_root: &Path) -> PathBuf {
    run_root.join("host-neighbour-limits.json")
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
/// values once. Returns a message when it changed anything.
pub fn ensure(run_root: &Path, existing: u64, extra: u64) -> std::io::Result<Option<String>> {
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
    let path = saved_path(run_root);
    if !path.exists() {
        let text =
            serde_json::to_vec(&Saved { values: originals }).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)?;
    }
    Ok(Some(format!(
        "raised the host's neighbour-table limits for this lab ({}); they go back when the last lab is down",
        changed.join(", ")
    )))
}

/// Puts back the bounds saved by [`ensure`], if any.
pub fn restore(run_root: &Path) -> std::io::Result<()> {
    let path = saved_path(run_root);
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
    std::fs::remove_file(path)
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
}
