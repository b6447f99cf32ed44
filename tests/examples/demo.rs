//! The README's main job until the orchestrator lands: a switchd with two
//! real UML guests that ping each other, and the switch's view of them.

use std::time::Duration;

use vbet_tests::switch::SwitchDaemon;
use vbet_tests::uml::UmlGuest;

fn main() -> anyhow::Result<()> {
    if !vbet_tests::require(&["linux.uml", "busybox"]) {
        anyhow::bail!("the demo needs root and user-mode-linux (run scripts/deps as root)");
    }
    let dir = tempfile::Builder::new().prefix("vbet-demo").tempdir()?;
    println!("Starting switchd, then two User-Mode Linux guests plugged into it …");
    let sw = SwitchDaemon::start("switchd", &dir.path().join("sw1"), &[]);
    let body = |me: &str, peer: &str| {
        format!(
            "ip addr add {me}/24 dev eth0\nping -n -c 5 -i 0.2 -W 1 -w 30 {peer}\necho VBET-PING rc=$?\nsleep 2"
        )
    };
    let guests = [
        UmlGuest::start(
            "host1",
            dir.path(),
            "02:00:00:00:00:01",
            &sw.ctl(),
            &body("10.0.0.1", "10.0.0.2"),
        ),
        UmlGuest::start(
            "host2",
            dir.path(),
            "02:00:00:00:00:02",
            &sw.ctl(),
            &body("10.0.0.2", "10.0.0.1"),
        ),
    ];
    let api = sw.api();
    for (name, guest) in ["host1", "host2"].iter().zip(&guests) {
        let out = guest.wait_for_output("VBET-PING", Duration::from_secs(60));
        println!("\n{name}:");
        for line in out
            .lines()
            .filter(|l| l.contains("bytes from") || l.contains("packets") || l.starts_with("rtt"))
        {
            println!("  {line}");
        }
    }
    println!("\nswitchd ports:");
    println!(
        "  {:>4}  {:>8}  {:<19}  {:>8}  {:>8}",
        "port", "peer pid", "MACs", "rx", "tx"
    );
    for port in api.ports() {
        let c = port.counters.unwrap_or_default();
        println!(
            "  {:>4}  {:>8}  {:<19}  {:>8}  {:>8}",
            port.id,
            port.peer_pid,
            port.macs.join(","),
            c.rx_frames,
            c.tx_frames
        );
    }
    let ok = guests
        .iter()
        .all(|g| g.process.output().contains("VBET-PING rc=0"));
    println!(
        "\n{}",
        if ok {
            "Result: the two guests reached each other through switchd."
        } else {
            "Result: FAILED, see above."
        }
    );
    anyhow::ensure!(ok, "ping between the guests failed");
    Ok(())
}
