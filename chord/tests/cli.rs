//! `chord-peer` as a user runs it: three `serve` processes on 127.0.0.1,
//! then `check`, `lookup`, `status`, and SIGTERM.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vbet_chord::Id;

const BIN: &str = env!("CARGO_BIN_EXE_chord-peer");

/// A free UDP port on 127.0.0.1 for a peer to bind next. It is taken from
/// below the kernel's ephemeral range: a port that `bind(0)` handed out
/// could be handed to another process (a `check` client, another test)
/// before the peer binds it.
fn free_addr() -> SocketAddr {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (first, span) = (10_000u16, low.saturating_sub(10_000).max(1));
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id()
        | 1;
    loop {
        // A xorshift step: a different candidate each time round.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let addr = SocketAddr::from(([127, 0, 0, 1], first + (x % u32::from(span)) as u16));
        if UdpSocket::bind(addr).is_ok() {
            return addr;
        }
    }
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(bind: SocketAddr, join: Option<SocketAddr>) -> Peer {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--bind", &bind.to_string(), "--stabilize-ms", "50"])
        .args(["--rpc-timeout-ms", "100", "--retries", "1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    if let Some(j) = join {
        cmd.args(["--join", &j.to_string()]);
    }
    Peer(cmd.spawn().expect("cannot start chord-peer serve"))
}

fn client(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn three_processes_form_a_ring_answer_and_stop_on_sigterm() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let mut peers = vec![serve(addrs[0], None)];
    peers.push(serve(addrs[1], Some(addrs[0])));
    peers.push(serve(addrs[2], Some(addrs[1])));
    let via = |i: usize| addrs[i].to_string();

    let started = Instant::now();
    loop {
        let o = client(&[
            "check",
            "--via",
            &via(0),
            "--expect",
            "3",
            "--timeout-ms",
            "300",
        ]);
        if o.status.success() {
            let text = stdout(&o);
            assert!(text.contains("ring consistent: 3 peers"), "{text}");
            assert_eq!(text.lines().count(), 4, "{text}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "ring of 3 not consistent: {}",
            stdout(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Too many expected: fails.
    let o = client(&["check", "--via", &via(0), "--expect", "4", "--json"]);
    assert!(!o.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["consistent"], false);
    assert_eq!(v["found"], 3);

    // Owners against the truth: the first peer id at or after the key.
    let ids: Vec<(Id, SocketAddr)> = addrs.iter().map(|a| (Id::of_addr(*a), *a)).collect();
    let owner = |key: Id| {
        ids.iter()
            .min_by_key(|(id, _)| key.distance_to(*id))
            .unwrap()
            .1
    };

    let o = client(&[
        "lookup",
        "--via",
        &via(1),
        "--random",
        "20",
        "--seed",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    for v in &lines {
        let key = Id(u32::from_str_radix(v["key"].as_str().unwrap(), 16).unwrap());
        assert_eq!(v["owner"], owner(key).to_string(), "{v}");
        assert!(v["hops"].as_u64().unwrap() <= 2, "{v}");
    }

    let o = client(&["lookup", "--via", &via(2), "abc", "0x10"]);
    assert!(o.status.success());
    let text = stdout(&o);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "key=a9993e36 owner={} hops=",
            owner(Id(0xa9993e36))
        )),
        "{first}"
    );
    assert!(
        text.lines().nth(1).unwrap().starts_with("key=00000010 "),
        "{text}"
    );

    let o = client(&["status", "--via", &via(2), "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["addr"], via(2));
    assert_eq!(v["fingers"].as_array().unwrap().len(), 32);
    assert_eq!(v["successors"].as_array().unwrap().len(), 2);
    let o = client(&["status", "--via", &via(2)]);
    assert!(stdout(&o).starts_with(&format!("id {} addr {}", Id::of_addr(addrs[2]), via(2))));

    // Nobody at this address: lookups fail with a non-zero exit.
    let o = client(&[
        "lookup",
        "--via",
        &free_addr().to_string(),
        "--timeout-ms",
        "100",
        "k",
    ]);
    assert!(!o.status.success());
    assert!(stdout(&o).starts_with("key="), "{}", stdout(&o));

    for p in &mut peers {
        let pid = p.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in &mut peers {
        let status = loop {
            if let Some(s) = p.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "peer ignores SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "peer exited with {status}");
    }
}
