//! Times parsing and validating a generated topology of N nodes (default
//! 10,000): `cargo run --release -p vbet-topology --example bench_topology [N]`.
//!
//! Two shapes: a flat file with one statement per node, NIC and cable (what
//! a generator would write), and a ten-line file of loops that makes the
//! same lab. Hosts sit 100 to a switch, switches hang off a core router
//! chain; every host has an address.

use std::path::Path;
use std::time::Instant;

use vbet_topology::{Format, load_str};

fn flat(n: usize) -> String {
    let mut s = String::with_capacity(n * 160);
    let switches = n.div_ceil(100);
    for k in 0..switches {
        s.push_str(&format!("sw{k} = alloc(switch, ports=101)\n"));
        s.push_str(&format!(
            "gw{k} = attach(alloc(router), alloc(NIC, addr=\"10.{}.{}.1/24\"))\n",
            k / 250,
            k % 250
        ));
        s.push_str(&format!("link(sw{k}, gw{k}, delay=\"1ms\")\n"));
    }
    for i in 0..n.saturating_sub(switches) {
        let k = i / 100;
        s.push_str(&format!(
            "h{i} = attach(alloc(host), alloc(NIC, addr=\"10.{}.{}.{}/24\"))\nset(h{i}, gateway=\"10.{}.{}.1\")\nlink(sw{k}, h{i})\n",
            k / 250,
            k % 250,
            i % 100 + 2,
            k / 250,
            k % 250
        ));
    }
    s
}

fn looped(n: usize) -> String {
    let switches = n.div_ceil(100);
    format!(
        "for k in 0..{last_sw} {{\n\
           sw${{k}} = alloc(switch, ports=101)\n\
           gw${{k}} = attach(alloc(router), alloc(NIC, addr=\"10.${{k / 250}}.${{k % 250}}.1/24\"))\n\
           link(sw${{k}}, gw${{k}}, delay=\"1ms\")\n\
         }}\n\
         for i in 0..{last_h} {{\n\
           h${{i}} = attach(alloc(host), alloc(NIC, addr=\"10.${{i / 100 / 250}}.${{i / 100 % 250}}.${{i % 100 + 2}}/24\"))\n\
           set(h${{i}}, gateway=\"10.${{i / 100 / 250}}.${{i / 100 % 250}}.1\")\n\
           link(sw${{i / 100}}, h${{i}})\n\
         }}\n",
        last_sw = switches - 1,
        last_h = n - switches - 1,
    )
}

fn time(name: &str, src: &str) -> f64 {
    let path = Path::new("/nonexistent/bench.vbet");
    let mut best = f64::MAX;
    let mut nodes = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let t = match load_str(src, path, Format::Vbet) {
            Ok(t) => t,
            Err(e) => {
                eprint!("{}", e.render(false));
                std::process::exit(1);
            }
        };
        best = best.min(start.elapsed().as_secs_f64());
        nodes = t.nodes.len();
    }
    println!(
        "{name:>7}: {nodes} nodes, {} lines, {:.1} KiB: parse+validate {:.1} ms (best of 5)",
        src.lines().count(),
        src.len() as f64 / 1024.0,
        best * 1e3
    );
    best
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let worst = time("flat", &flat(n)).max(time("looped", &looped(n)));
    if worst >= 1.0 {
        println!("SLOW: over the 1 s target");
        std::process::exit(1);
    }
}
