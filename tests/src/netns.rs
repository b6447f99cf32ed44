//! Network namespaces for test endpoints, deleted when dropped, and
//! endpoints in them plugged into a switch by Debian's `vde_plug2tap`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::Spawned;
use crate::wait_for;

/// A named network namespace (`ip netns`), deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// Creates the namespace with its loopback up.
    pub fn new(name: &str) -> Netns {
        let ns = Netns {
            name: name.to_owned(),
        };
        run(Command::new("ip").args(["netns", "add", name]));
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n NAME ARGS…`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> Output {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args…` inside the namespace and returns its output,
    /// whatever its exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name))
    }

    /// Whether a link named `dev` exists in the namespace.
    pub fn has_link(&self, dev: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", dev])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A namespace whose `tap0` is plugged into a switch by `vde_plug2tap`,
/// with an IPv4 address. Fields drop in order: the plug, then the
/// namespace.
#[derive(Debug)]
pub struct TapEndpoint {
    /// The `vde_plug2tap` process.
    pub plug: Spawned,
    /// The namespace.
    pub ns: Netns,
}

impl TapEndpoint {
    /// Creates namespace `name`, plugs its `tap0` into the switch whose
    /// directory (with `ctl` in it) is `switch_dir`, and gives it `addr`
    /// (CIDR).
    pub fn new(name: &str, switch_dir: &Path, addr: &str, log_dir: &Path) -> TapEndpoint {
        let ns = Netns::new(name);
        let mut cmd = ns.command("vde_plug2tap");
        cmd.arg("-s").arg(switch_dir).arg("tap0");
        let plug = Spawned::start(
            &format!("vde_plug2tap in {name}"),
            cmd,
            &log_dir.join(format!("{name}.plug.log")),
        );
        wait_for(
            "vde_plug2tap to create tap0",
            Duration::from_secs(10),
            || ns.has_link("tap0").then_some(()),
        );
        ns.ip(&["addr", "add", addr, "dev", "tap0"]);
        ns.ip(&["link", "set", "tap0", "up"]);
        TapEndpoint { plug, ns }
    }

    /// Pings `target` `count` times at `interval` seconds; returns the
    /// output of ping.
    pub fn ping(&self, target: &str, count: u32, interval: &str) -> Ping {
        let out = self.ns.exec(
            "ping",
            &[
                "-n",
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                interval,
                "-W",
                "1",
                target,
            ],
        );
        Ping::parse(&String::from_utf8_lossy(&out.stdout))
    }
}

/// What a ping run reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ping {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Replies received.
    pub received: u32,
    /// Round-trip times min/avg/max in ms, when any reply came.
    pub rtt_ms: Option<(f64, f64, f64)>,
    /// The raw output.
    pub output: String,
}

impl Ping {
    /// Parses ping's summary lines.
    pub fn parse(output: &str) -> Ping {
        let mut ping = Ping {
            output: output.to_owned(),
            ..Ping::default()
        };
        for line in output.lines() {
            if line.contains("packets transmitted") {
                let nums: Vec<u32> = line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|s| s.parse().ok())
                    .collect();
                if nums.len() >= 2 {
                    ping.transmitted = nums[0];
                    ping.received = nums[1];
                }
            }
            if let Some(rest) = line.split("= ").nth(1).filter(|_| line.starts_with("rtt")) {
                let v: Vec<f64> = rest
                    .split(['/', ' '])
                    .filter_map(|s| s.parse().ok())
                    .collect();
                if v.len() >= 3 {
                    ping.rtt_ms = Some((v[0], v[1], v[2]));
                }
            }
        }
        ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_summary() {
        let out = "--- 10.0.0.2 ping statistics ---\n5 packets transmitted, 4 received, 20% packet loss, time 804ms\nrtt min/avg/max/mdev = 50.211/50.532/51.010/0.301 ms\n";
        let p = Ping::parse(out);
        assert_eq!((p.transmitted, p.received), (5, 4));
        assert_eq!(p.rtt_ms, Some((50.211, 50.532, 51.010)));
    }
}
