//! §4.1 of the paper: route flapping in OSPF.
//!
//! Three FRR routers in a line (r1–r2–r3) with a host at each end. Once
//! OSPF has converged, h1 pings h2 continuously while the r2–r3 cable is
//! flapped: first as an unplugged cable (carrier loss, which OSPF sees at
//! once), then as a silent failure (every frame lost, carrier up, which
//! OSPF only notices when the dead interval expires). For every flap the
//! experiment records how long r1's route to h2's network took to be
//! withdrawn and to come back, and how many pings were lost.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use vbet_proto::vbet::port::v1::LinkState;

use crate::client::{self, Client};
use crate::experiment::svg::{Band, reachability};
use crate::experiment::{now, results_dir, with_lab};
use crate::table::print_table;

/// h2's network, the route watched on r1.
const WATCHED_ROUTE: &str = "192.168.3.0/24";
/// h2's address, pinged from h1.
const TARGET: &str = "192.168.3.10";
/// The cable flapped.
const CABLE: &str = "r2 r3";
/// Time between pings, seconds.
const PING_INTERVAL: f64 = 0.1;

/// How the link fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Failure {
    /// The cable is unplugged: carrier lost at both ends.
    Carrier,
    /// Every frame is dropped; the carrier stays up.
    Silent,
}

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Failure::Carrier => "carrier loss",
            Failure::Silent => "silent (100% loss)",
        }
    }

    fn state(self) -> LinkState {
        match self {
            Failure::Carrier => LinkState::Down,
            Failure::Silent => LinkState::Blackhole,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// The topology (the paper's §4.1 lab).
    #[arg(long, default_value = "examples/paper-4.1-ospf.vbet")]
    pub topology: PathBuf,
    /// The lab's name.
    #[arg(long, default_value = "ospf-flap")]
    pub lab: String,
    /// Flaps per failure kind.
    #[arg(long, default_value_t = 3)]
    pub flaps: u32,
    /// How long the link stays down in each flap, seconds.
    #[arg(long, default_value_t = 8.0)]
    pub period: f64,
    /// Failure kinds to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "carrier,silent"
    )]
    pub failures: Vec<Failure>,
    /// Where results go (a new directory inside).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Keep the lab up afterwards for poking.
    #[arg(long)]
    pub keep: bool,
}

/// One flap's measurements; times in seconds.
#[derive(Debug, Clone)]
pub struct Flap {
    /// The failure kind.
    pub failure: Failure,
    /// 1, 2, … within its kind.
    pub index: u32,
    /// When the link went down, since the experiment began.
    pub down_at: f64,
    /// When it came back up.
    pub up_at: f64,
    /// From down until r1 no longer had the route (None: never).
    pub withdrawn_after: Option<f64>,
    /// From up until r1 had the route again (None: not within the limit).
    pub restored_after: Option<f64>,
    /// Pings sent from the failure until 2 s after the route came back.
    pub pings_sent: u32,
    /// Of those, unanswered.
    pub pings_lost: u32,
}

/// What the experiment found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// From "lab up" to r1 having the route, seconds.
    pub converged_after: f64,
    /// Every flap.
    pub flaps: Vec<Flap>,
    /// Where the files went.
    pub results_dir: PathBuf,
}

/// Runs the experiment, tearing the lab down afterwards unless asked to
/// keep it (also when the experiment fails).
pub async fn run(client: &mut Client, params: &Params) -> anyhow::Result<Outcome> {
    eprintln!(
        "Bringing up {} as lab {} …",
        params.topology.display(),
        params.lab
    );
    with_lab(
        client,
        &params.topology,
        &params.lab,
        params.keep,
        async |client| measure(client, params).await,
    )
    .await
}

/// Whether r1 has the watched route: Some(true/false), None if vtysh
/// could not tell.
async fn r1_has_route(client: &mut Client, lab: &str) -> Option<bool> {
    let show = format!("show ip route {WATCHED_ROUTE}");
    let (_, out) = client::run(client, lab, "r1", &["vtysh", "-c", &show])
        .await
        .ok()?;
    if out.contains("Known via \"ospf\"") {
        Some(true)
    } else if out.contains("not in table") {
        Some(false)
    } else {
        None
    }
}

/// Polls r1 until the route's presence is `want`; returns the time it
/// took, or None after `limit`.
async fn wait_route(client: &mut Client, lab: &str, want: bool, limit: f64) -> Option<f64> {
    let start = now();
    while now() - start < limit {
        if r1_has_route(client, lab).await == Some(want) {
            return Some(now() - start);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn measure(client: &mut Client, params: &Params) -> anyhow::Result<Outcome> {
    let lab = params.lab.as_str();
    if params.period <= 0.0 || params.flaps == 0 {
        bail!("--period must be positive and --flaps at least 1");
    }
    eprintln!("Waiting for OSPF to converge …");
    let converged_after = wait_route(client, lab, true, 120.0)
        .await
        .context("OSPF did not converge within 120 s (r1 never learned 192.168.3.0/24)")?;
    // Wait until the path works end to end too.
    let deadline = now() + 30.0;
    while client::run(client, lab, "h1", &["ping", "-c", "1", "-W", "1", TARGET])
        .await?
        .0
        != 0
    {
        if now() > deadline {
            bail!("OSPF converged but h1 cannot reach h2 ({TARGET})");
        }
    }
    eprintln!("Converged after {converged_after:.1} s; h1 reaches h2.");

    // A continuous ping from h1 to h2, timestamped (-D) and reporting
    // unanswered requests (-O); lines are parsed as they come.
    let interval = format!("{PING_INTERVAL}");
    let mut ping = client::spawn(
        client,
        lab,
        "h1",
        &["ping", "-n", "-D", "-O", "-i", &interval, "-W", "1", TARGET],
    )
    .await?;
    let ping_start = now();
    let lines: Arc<Mutex<Vec<PingLine>>> = Arc::default();
    let collector = {
        let lines = lines.clone();
        let mut output = std::mem::replace(&mut ping.output, tokio::sync::mpsc::channel(1).1);
        tokio::spawn(async move {
            let mut pending = String::new();
            while let Some(chunk) = output.recv().await {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(nl) = pending.find('\n') {
                    let line: String = pending.drain(..=nl).collect();
                    if let Some(parsed) = PingLine::parse(&line) {
                        lines.lock().expect("ping lines").push(parsed);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut flaps = Vec::new();
    for failure in &params.failures {
        for index in 1..=params.flaps {
            let down_at = now();
            client::set_link_state(client, lab, CABLE, failure.state()).await?;
            let withdrawn_after = wait_route(client, lab, false, params.period).await;
            let rest = params.period - (now() - down_at);
            if rest > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(rest)).await;
            }
            let up_at = now();
            client::set_link_state(client, lab, CABLE, LinkState::Up).await?;
            let restored_after = wait_route(client, lab, true, 60.0).await;
            eprintln!(
                "  {} flap {index}: route withdrawn after {}, back {} after the link came up",
                failure.name(),
                seconds(withdrawn_after),
                seconds(restored_after)
            );
            flaps.push(Flap {
                failure: *failure,
                index,
                down_at: down_at - ping_start,
                up_at: up_at - ping_start,
                withdrawn_after,
                restored_after,
                pings_sent: 0,
                pings_lost: 0,
            });
            // Let the path settle before the next flap.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    ping.signal(2).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut ping.exit).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), collector).await;

    let probes = probes(&lines.lock().expect("ping lines"), ping_start);
    for flap in &mut flaps {
        let end = flap.up_at + flap.restored_after.unwrap_or(0.0) + 2.0;
        let window: Vec<&(f64, bool)> = probes
            .iter()
            .filter(|(t, _)| *t >= flap.down_at && *t < end)
            .collect();
        flap.pings_sent = window.len() as u32;
        flap.pings_lost = window.iter().filter(|(_, up)| !up).count() as u32;
    }
    let dir = results_dir(&params.results, "ospf-flap").with_context(|| {
        format!(
            "cannot create a results directory in {}",
            params.results.display()
        )
    })?;
    write_results(&dir, converged_after, &flaps, &probes)?;
    Ok(Outcome {
        converged_after,
        flaps,
        results_dir: dir,
    })
}

/// One line of `ping -D -O`: a reply or an unanswered request, with the
/// Unix time ping printed it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PingLine {
    seq: u32,
    at: f64,
    /// Round-trip time in seconds for a reply; None for "no answer yet".
    rtt: Option<f64>,
}

impl PingLine {
    fn parse(line: &str) -> Option<PingLine> {
        let at: f64 = line.strip_prefix('[')?.split(']').next()?.parse().ok()?;
        let seq = line
            .split("icmp_seq=")
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        if line.contains("bytes from") {
            let ms: f64 = line
                .split("time=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some(PingLine {
                seq,
                at,
                rtt: Some(ms / 1000.0),
            })
        } else if line.contains("no answer yet") {
            Some(PingLine { seq, at, rtt: None })
        } else {
            None
        }
    }
}

/// Every request ping sent, with when it was sent (seconds after
/// `start`) and whether it was answered. A reply dates its request
/// exactly (time minus RTT); "no answer yet" is printed when the next
/// request goes out, one interval later.
fn probes(lines: &[PingLine], start: f64) -> Vec<(f64, bool)> {
    let mut sent: std::collections::BTreeMap<u32, (f64, bool)> = std::collections::BTreeMap::new();
    for line in lines {
        let (at, answered) = match line.rtt {
            Some(rtt) => (line.at - rtt, true),
            None => (line.at - PING_INTERVAL, false),
        };
        let entry = sent.entry(line.seq).or_insert((at - start, answered));
        if answered {
            *entry = (at - start, true);
        }
    }
    sent.into_values().collect()
}

fn seconds(t: Option<f64>) -> String {
    t.map_or_else(|| "—".to_owned(), |t| format!("{t:.2} s"))
}

fn write_results(
    dir: &std::path::Path,
    converged_after: f64,
    flaps: &[Flap],
    probes: &[(f64, bool)],
) -> anyhow::Result<()> {
    let mut csv = String::from(
        "failure,flap,down_at_s,up_at_s,withdrawn_after_s,restored_after_s,pings_sent,pings_lost\n",
    );
    for f in flaps {
        let opt = |t: Option<f64>| t.map_or(String::new(), |t| format!("{t:.3}"));
        let _ = writeln!(
            csv,
            "{:?},{},{:.3},{:.3},{},{},{},{}",
            f.failure,
            f.index,
            f.down_at,
            f.up_at,
            opt(f.withdrawn_after),
            opt(f.restored_after),
            f.pings_sent,
            f.pings_lost
        );
    }
    std::fs::write(dir.join("flaps.csv"), csv)?;
    let mut reach = String::from("time_s,reachable\n");
    for (t, up) in probes {
        let _ = writeln!(reach, "{t:.1},{}", u8::from(*up));
    }
    std::fs::write(dir.join("reachability.csv"), reach)?;
    let bands: Vec<Band> = flaps
        .iter()
        .map(|f| Band {
            from: f.down_at,
            to: f.up_at,
            colour: if f.failure == Failure::Carrier {
                "red"
            } else {
                "orange"
            },
            label: match f.failure {
                Failure::Carrier => format!("unplugged {}", f.index),
                Failure::Silent => format!("silent {}", f.index),
            },
        })
        .collect();
    let svg = reachability(
        &format!(
            "h1 → h2 reachability while r2–r3 flaps (OSPF converged in {converged_after:.1} s)"
        ),
        probes,
        &bands,
    );
    std::fs::write(dir.join("reachability.svg"), svg)?;
    std::fs::write(
        dir.join("summary.txt"),
        summary_text(converged_after, flaps),
    )?;
    Ok(())
}

/// The per-kind means, as printed and written to summary.txt.
pub fn summary_text(converged_after: f64, flaps: &[Flap]) -> String {
    let mut out = format!("OSPF converged {converged_after:.1} s after the lab came up.\n");
    for failure in [Failure::Carrier, Failure::Silent] {
        let of_kind: Vec<&Flap> = flaps.iter().filter(|f| f.failure == failure).collect();
        if of_kind.is_empty() {
            continue;
        }
        let mean =
            |xs: Vec<f64>| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
        let withdrawn = mean(of_kind.iter().filter_map(|f| f.withdrawn_after).collect());
        let restored = mean(of_kind.iter().filter_map(|f| f.restored_after).collect());
        let lost: u32 = of_kind.iter().map(|f| f.pings_lost).sum();
        let sent: u32 = of_kind.iter().map(|f| f.pings_sent).sum();
        let _ = writeln!(
            out,
            "{}: route withdrawn after {} on average, back {} after the link came up; {lost} of {sent} pings lost ({:.0}%).",
            failure.name(),
            seconds(withdrawn),
            seconds(restored),
            if sent > 0 {
                100.0 * f64::from(lost) / f64::from(sent)
            } else {
                0.0
            }
        );
    }
    out
}

/// Prints the per-flap table and the summary.
pub fn print(outcome: &Outcome) {
    let rows: Vec<Vec<String>> = outcome
        .flaps
        .iter()
        .map(|f| {
            vec![
                f.failure.name().to_owned(),
                f.index.to_string(),
                format!("{:.1}", f.down_at),
                seconds(f.withdrawn_after),
                seconds(f.restored_after),
                format!("{}/{}", f.pings_lost, f.pings_sent),
            ]
        })
        .collect();
    println!();
    print_table(
        &[
            "FAILURE",
            "FLAP",
            "AT (s)",
            "ROUTE WITHDRAWN AFTER",
            "ROUTE BACK AFTER UP",
            "PINGS LOST",
        ],
        &rows,
    );
    println!();
    print!("{}", summary_text(outcome.converged_after, &outcome.flaps));
    println!("Results: {}", outcome.results_dir.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_lines_and_dates_requests() {
        let reply = PingLine::parse(
            "[1795598505.751877] 64 bytes from 192.168.3.10: icmp_seq=12 ttl=62 time=1.07 ms\n",
        )
        .unwrap();
        assert_eq!(reply.seq, 12);
        assert!((reply.rtt.unwrap() - 0.00107).abs() < 1e-9);
        let lost = PingLine::parse("[1795598506.5] no answer yet for icmp_seq=13\n").unwrap();
        assert_eq!((lost.seq, lost.rtt), (13, None));
        assert!(
            PingLine::parse("PING 192.168.3.10 (192.168.3.10) 56(84) bytes of data.").is_none()
        );
        let probes = probes(&[reply, lost], 1795598500.0);
        assert_eq!(probes.len(), 2);
        assert!(probes[0].1 && !probes[1].1);
        assert!((probes[1].0 - 6.4).abs() < 1e-6);
    }
}
