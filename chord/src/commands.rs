//! The client subcommands of `chord-peer` — `lookup`, `status`, `check` —
//! and the text and JSON lines they print.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use crate::client::{Client, Found, check_ring};
use crate::id::{Id, finger_start};
use crate::rpc::RpcConfig;
use crate::wire::{Node, Status};

/// Keys for `lookup --random N --seed S`: `n` ids from a generator seeded
/// with `seed`, the same on every run.
pub fn random_keys(n: usize, seed: u64) -> Vec<Id> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| Id(rng.random())).collect()
}

/// One output line for a lookup: `key=… owner=… hops=… ms=…`, or with
/// `json` a JSON object; a failure gives `key=… error=…`.
pub fn lookup_line(key: Id, result: &Result<Found, String>, json: bool) -> String {
    match (result, json) {
        (Ok(f), false) => format!(
            "key={key} owner={} hops={} ms={:.3}",
            f.owner.addr,
            f.hops,
            f.elapsed.as_secs_f64() * 1e3
        ),
        (Ok(f), true) => json!({
            "key": key.to_string(),
            "ok": true,
            "owner": f.owner.addr.to_string(),
            "owner_id": f.owner.id.to_string(),
            "hops": f.hops,
            "ms": (f.elapsed.as_secs_f64() * 1e6).round() / 1e3,
        })
        .to_string(),
        (Err(e), false) => format!("key={key} error={e:?}"),
        (Err(e), true) => json!({ "key": key.to_string(), "ok": false, "error": e }).to_string(),
    }
}

/// `chord-peer lookup`: asks `via` to resolve each key, printing a line per
/// key and a summary on stderr. Returns whether every lookup succeeded.
pub async fn lookup(
    via: SocketAddr,
    keys: &[Id],
    json: bool,
    rpc: RpcConfig,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let client = Client::new(via, rpc).await?;
    let (mut ok, mut hops, mut max_hops) = (0usize, 0u64, 0u16);
    for &key in keys {
        let result = client.lookup(via, key).await.map_err(|e| e.to_string());
        if let Ok(f) = &result {
            ok += 1;
            hops += u64::from(f.hops);
            max_hops = max_hops.max(f.hops);
        }
        writeln!(out, "{}", lookup_line(key, &result, json))?;
    }
    out.flush()?;
    let mean = if ok > 0 { hops as f64 / ok as f64 } else { 0.0 };
    eprintln!(
        "{ok} of {} lookups succeeded via {via}; hops mean {mean:.2}, max {max_hops}",
        keys.len()
    );
    Ok(ok == keys.len())
}

fn node_json(n: &Node) -> serde_json::Value {
    json!({ "id": n.id.to_string(), "addr": n.addr.to_string() })
}

/// The text of `chord-peer status`.
pub fn status_text(s: &Status, json: bool) -> String {
    if json {
        let fingers: Vec<_> = s
            .fingers
            .iter()
            .enumerate()
            .map(|(i, f)| {
                json!({
                    "i": i,
                    "start": finger_start(s.me.id, i).to_string(),
                    "node": f.as_ref().map(node_json),
                })
            })
            .collect();
        return json!({
            "id": s.me.id.to_string(),
            "addr": s.me.addr.to_string(),
            "predecessor": s.pred.as_ref().map(node_json),
            "successors": s.succs.iter().map(node_json).collect::<Vec<_>>(),
            "fingers": fingers,
        })
        .to_string();
    }
    let mut text = format!("id {} addr {}\n", s.me.id, s.me.addr);
    match s.pred {
        Some(p) => text += &format!("predecessor {} {}\n", p.id, p.addr),
        None => text += "predecessor none\n",
    }
    text += "successors\n";
    for (i, n) in s.succs.iter().enumerate() {
        text += &format!("  {i:2} {} {}\n", n.id, n.addr);
    }
    text += "fingers\n";
    for (i, f) in s.fingers.iter().enumerate() {
        let start = finger_start(s.me.id, i);
        match f {
            Some(n) => text += &format!("  {i:2} start {start} -> {} {}\n", n.id, n.addr),
            None => text += &format!("  {i:2} start {start} -> none\n"),
        }
    }
    text
}

/// `chord-peer status`.
pub async fn status(
    via: SocketAddr,
    json: bool,
    rpc: RpcConfig,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let client = Client::new(via, rpc).await?;
    let s = client.status(via).await.with_context(|| {
        format!("cannot get the status of {via} — is chord-peer serve running there?")
    })?;
    let text = status_text(&s, json);
    writeln!(out, "{}", text.trim_end())?;
    Ok(())
}

/// `chord-peer check`: walks the ring from `via`, prints it, and returns
/// whether it is consistent with `expected` peers.
pub async fn check(
    via: SocketAddr,
    expected: usize,
    json: bool,
    rpc: RpcConfig,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let client = Client::new(via, rpc).await?;
    let walk = client.walk(via, expected.max(1) * 2 + 8).await;
    let (ring, verdict) = match walk {
        Ok(ring) => {
            let verdict = check_ring(&ring, expected);
            (ring, verdict)
        }
        Err(fault) => (Vec::new(), Err(fault)),
    };
    if json {
        let line = json!({
            "consistent": verdict.is_ok(),
            "expected": expected,
            "found": ring.len(),
            "ring": ring.iter().map(node_json).collect::<Vec<_>>(),
            "error": verdict.as_ref().err().map(|e| e.to_string()),
        });
        writeln!(out, "{line}")?;
    } else {
        for (i, n) in ring.iter().enumerate() {
            writeln!(out, "{i:3} {} {}", n.id, n.addr)?;
        }
        match &verdict {
            Ok(()) => writeln!(out, "ring consistent: {} peers", ring.len())?,
            Err(e) => writeln!(out, "ring inconsistent: {e}")?,
        }
    }
    Ok(verdict.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lookup_lines() {
        let f = Found {
            owner: Node {
                id: Id(0xabc),
                addr: "10.43.0.2:4000".parse().unwrap(),
            },
            hops: 2,
            elapsed: Duration::from_micros(1500),
        };
        assert_eq!(
            lookup_line(Id(0x1f), &Ok(f), false),
            "key=0000001f owner=10.43.0.2:4000 hops=2 ms=1.500"
        );
        let v: serde_json::Value =
            serde_json::from_str(&lookup_line(Id(0x1f), &Ok(f), true)).unwrap();
        assert_eq!(v["owner"], "10.43.0.2:4000");
        assert_eq!(v["hops"], 2);
        assert_eq!(v["ms"], 1.5);
        assert_eq!(
            lookup_line(Id(1), &Err("no answer".into()), false),
            "key=00000001 error=\"no answer\""
        );
    }

    #[test]
    fn random_keys_repeat_with_the_seed() {
        assert_eq!(random_keys(5, 7), random_keys(5, 7));
        assert_ne!(random_keys(5, 7), random_keys(5, 8));
    }
}
