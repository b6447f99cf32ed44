//! §4.3 of the paper: a Chord peer-to-peer network.
//!
//! A ring of N peers (vBET's `chord-peer`, one per VM) is brought up and
//! left to stabilise; random lookups from random peers measure hop counts
//! against log2 N. Then a fraction of the peers is killed (churn): lookups
//! from the survivors measure the success rate while the ring heals, the
//! time until the ring is whole again is recorded, and the killed peers
//! are restarted and rejoin.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::future::join_all;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::client::{self, Client};
use crate::experiment::{now, results_dir, with_lab};
use crate::table::print_table;

/// The Chord port every peer listens on.
const PORT: u16 = 4000;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// The topology (the paper's §4.3 lab); its `n = …` line is set to --peers.
    #[arg(long, default_value = "examples/paper-4.3-chord.vbet")]
    pub topology: PathBuf,
    /// The lab's name.
    #[arg(long, default_value = "chord")]
    pub lab: String,
    /// Peers in the ring (2–256).
    #[arg(long, default_value_t = 16)]
    pub peers: u32,
    /// Lookups per measurement.
    #[arg(long, default_value_t = 200)]
    pub lookups: u32,
    /// Share of the peers killed in the churn phase (0 = no churn).
    #[arg(long, default_value_t = 0.25)]
    pub churn: f64,
    /// How churned peers fail: killed (and started again), or silenced
    /// by the monitor's fault injection (every sendto in the VM fails
    /// with EPERM; the rule is removed to bring them back).
    #[arg(long, value_enum, default_value = "kill")]
    pub churn_with: Churn,
    /// Seed of every random choice (peers, keys).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where results go (a new directory inside).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Keep the lab up afterwards for poking.
    #[arg(long)]
    pub keep: bool,
}

/// How peers fail in the churn phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Churn {
    /// The peer's process is killed, then started again.
    Kill,
    /// The peer's sends fail (a fault rule), then the rule is removed.
    Fault,
}

/// One measurement of lookups.
#[derive(Debug, Clone)]
pub struct Phase {
    /// What was measured.
    pub name: String,
    /// Live peers.
    pub peers: u32,
    /// Lookups tried.
    pub lookups: u32,
    /// Of those, answered with an owner.
    pub succeeded: u32,
    /// Hop counts of the successful ones.
    pub hops: Vec<u32>,
    /// How long the ring took to be whole (for the phases that wait).
    pub settle_s: Option<f64>,
}

impl Phase {
    /// Mean hops of successful lookups.
    pub fn mean_hops(&self) -> f64 {
        if self.hops.is_empty() {
            0.0
        } else {
            f64::from(self.hops.iter().sum::<u32>()) / self.hops.len() as f64
        }
    }
}

/// What the experiment found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Peers in the ring.
    pub peers: u32,
    /// The phases, in order.
    pub phases: Vec<Phase>,
    /// Where the files went.
    pub results_dir: PathBuf,
}

/// The address of peer `i` (from 1), as the topology gives it.
fn address(i: u32) -> String {
    format!("10.43.{}.{}:{PORT}", (i - 1) / 250, (i - 1) % 250 + 1)
}

/// Runs the experiment, tearing the lab down afterwards unless asked to
/// keep it (also when it fails).
pub async fn run(client: &mut Client, params: &Params) -> anyhow::Result<Outcome> {
    if !(2..=256).contains(&params.peers) {
        bail!("--peers must be between 2 and 256");
    }
    if !(0.0..1.0).contains(&params.churn) {
        bail!("--churn must be at least 0 and below 1");
    }
    let text = std::fs::read_to_string(&params.topology)
        .with_context(|| format!("cannot read {}", params.topology.display()))?;
    if !text.lines().any(|l| l.trim_start().starts_with("n = ")) {
        bail!(
            "{} has no `n = …` line to set the ring's size",
            params.topology.display()
        );
    }
    let sized: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("n = ") {
                format!("n = {}", params.peers)
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let topology = dir.path().join("chord.vbet");
    std::fs::write(&topology, sized)?;
    eprintln!(
        "Bringing up a ring of {} peers as lab {} …",
        params.peers, params.lab
    );
    with_lab(
        client,
        &topology,
        &params.lab,
        params.keep,
        async |client| measure(client, params).await,
    )
    .await
}

/// Waits until a walk of the ring from `from` finds exactly `expect`
/// peers in order; returns the time since `since` (a [`now`] value).
async fn wait_ring(
    client: &mut Client,
    lab: &str,
    from: u32,
    expect: u32,
    since: f64,
    limit: f64,
) -> anyhow::Result<f64> {
    let start = now();
    let via = address(from);
    let expect_s = expect.to_string();
    loop {
        let (code, out) = client::run(
            client,
            lab,
            &format!("p{from}"),
            &["chord-peer", "check", "--via", &via, "--expect", &expect_s],
        )
        .await?;
        if code == 0 {
            return Ok(now() - since);
        }
        if now() - start > limit {
            bail!(
                "the ring did not settle to {expect} peers within {limit} s: {}",
                out.trim()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `total` random lookups spread over `from` peers; returns the phase.
async fn lookups(
    client: &Client,
    lab: &str,
    name: &str,
    from: &[u32],
    total: u32,
    seed: u64,
) -> anyhow::Result<Phase> {
    let per = total.div_ceil(from.len() as u32).max(1);
    let results = join_all(from.iter().enumerate().map(|(k, peer)| {
        let mut client = client.clone();
        let via = address(*peer);
        let seed = (seed + k as u64).to_string();
        let count = per.to_string();
        async move {
            client::run(
                &mut client,
                lab,
                &format!("p{peer}"),
                &[
                    "chord-peer",
                    "lookup",
                    "--via",
                    &via,
                    "--random",
                    &count,
                    "--seed",
                    &seed,
                    "--json",
                    "--timeout-ms",
                    "2000",
                ],
            )
            .await
        }
    }))
    .await;
    let mut phase = Phase {
        name: name.to_owned(),
        peers: 0,
        lookups: 0,
        succeeded: 0,
        hops: Vec::new(),
        settle_s: None,
    };
    for result in results {
        let (_, out) = result?;
        for line in out.lines().filter(|l| l.starts_with('{')) {
            let value: serde_json::Value =
                serde_json::from_str(line).context("chord-peer printed bad JSON")?;
            phase.lookups += 1;
            if value["ok"].as_bool() == Some(true) {
                phase.succeeded += 1;
                phase.hops.push(value["hops"].as_u64().unwrap_or(0) as u32);
            }
        }
    }
    Ok(phase)
}

async fn measure(client: &mut Client, params: &Params) -> anyhow::Result<Outcome> {
    let lab = params.lab.as_str();
    let n = params.peers;
    let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed);
    eprintln!("Waiting for the ring to stabilise …");
    let formed = wait_ring(client, lab, 1, n, now(), 120.0).await?;
    eprintln!("The ring holds all {n} peers after {formed:.1} s.");
    let all: Vec<u32> = (1..=n).collect();
    let mut askers = all.clone();
    askers.shuffle(&mut rng);
    askers.truncate(8.min(n as usize));
    let mut stable = lookups(
        client,
        lab,
        "stable ring",
        &askers,
        params.lookups,
        params.seed,
    )
    .await?;
    stable.peers = n;
    stable.settle_s = Some(formed);
    let mut phases = vec![stable];

    let killed_count = ((f64::from(n) * params.churn).round() as u32).min(n - 2);
    if killed_count > 0 {
        let mut candidates: Vec<u32> = (2..=n).collect();
        candidates.shuffle(&mut rng);
        let killed: Vec<u32> = candidates[..killed_count as usize].to_vec();
        let survivors: Vec<u32> = all
            .iter()
            .copied()
            .filter(|p| !killed.contains(p))
            .collect();
        eprintln!(
            "Churn: {} {killed_count} peers ({}) …",
            if params.churn_with == Churn::Kill {
                "killing"
            } else {
                "silencing"
            },
            killed
                .iter()
                .map(|p| format!("p{p}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut rules = Vec::new();
        for p in &killed {
            let node = format!("p{p}");
            match params.churn_with {
                Churn::Kill => {
                    client::run(client, lab, &node, &["pkill", "-f", "chord-peer serve"]).await?;
                }
                Churn::Fault => {
                    let rule = client
                        .add_fault(vbet_proto::vbet::orchestrator::v1::AddFaultRequest {
                            node: Some(vbet_proto::vbet::orchestrator::v1::NodeRef {
                                lab: lab.to_owned(),
                                node: node.clone(),
                            }),
                            rule: Some(vbet_proto::vbet::vm::v1::FaultRule {
                                syscall: "sendto".into(),
                                // Any process: a thread of chord-peer is named after
                                // its runtime, not the program.
                                command: String::new(),
                                error_number: 1,
                                ..Default::default()
                            }),
                        })
                        .await
                        .map_err(|s| anyhow::anyhow!("cannot silence {node}: {}", s.message()))?
                        .into_inner();
                    rules.push((node, rule.id));
                }
            }
        }
        let killed_at = now();
        let mut askers: Vec<u32> = survivors.clone();
        askers.shuffle(&mut rng);
        askers.truncate(8.min(askers.len()));
        let mut during = lookups(
            client,
            lab,
            "right after churn",
            &askers,
            params.lookups,
            params.seed + 100,
        )
        .await?;
        during.peers = n - killed_count;
        phases.push(during);
        let healed = wait_ring(client, lab, 1, n - killed_count, killed_at, 120.0).await?;
        let mut after = lookups(
            client,
            lab,
            "ring healed",
            &askers,
            params.lookups,
            params.seed + 200,
        )
        .await?;
        after.peers = n - killed_count;
        after.settle_s = Some(healed);
        phases.push(after);
        eprintln!("Restarting the killed peers …");
        let restarted_at = now();
        for (node, id) in &rules {
            client
                .remove_fault(vbet_proto::vbet::orchestrator::v1::RemoveFaultRequest {
                    node: Some(vbet_proto::vbet::orchestrator::v1::NodeRef {
                        lab: lab.to_owned(),
                        node: node.clone(),
                    }),
                    id: *id,
                })
                .await
                .map_err(|s| anyhow::anyhow!("cannot bring {node} back: {}", s.message()))?;
        }
        for p in &killed {
            if params.churn_with == Churn::Fault {
                // A peer that was silent has written everyone off: it
                // starts afresh and joins again, as a restarted one does.
                client::run(
                    client,
                    lab,
                    &format!("p{p}"),
                    &["pkill", "-f", "chord-peer serve"],
                )
                .await?;
            }
            let bind = address(*p);
            let join = address(1);
            let (code, out) = client::run(
                client,
                lab,
                &format!("p{p}"),
                &[
                    "setsid",
                    "-f",
                    "chord-peer",
                    "serve",
                    "--bind",
                    &bind,
                    "--join",
                    &join,
                ],
            )
            .await?;
            if code != 0 {
                bail!("cannot restart the peer on p{p}: {out}");
            }
        }
        let rejoined = wait_ring(client, lab, 1, n, restarted_at, 120.0).await?;
        let mut back = lookups(
            client,
            lab,
            "peers rejoined",
            &askers,
            params.lookups,
            params.seed + 300,
        )
        .await?;
        back.peers = n;
        back.settle_s = Some(rejoined);
        phases.push(back);
    }

    let dir = results_dir(&params.results, "chord").with_context(|| {
        format!(
            "cannot create a results directory in {}",
            params.results.display()
        )
    })?;
    let mut csv = String::from("phase,peers,lookups,succeeded,mean_hops,settle_s,hops\n");
    for p in &phases {
        let _ = writeln!(
            csv,
            "{},{},{},{},{:.3},{},{}",
            p.name,
            p.peers,
            p.lookups,
            p.succeeded,
            p.mean_hops(),
            p.settle_s.map_or(String::new(), |s| format!("{s:.3}")),
            p.hops
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    std::fs::write(dir.join("phases.csv"), csv)?;
    let outcome = Outcome {
        peers: n,
        phases,
        results_dir: dir,
    };
    std::fs::write(
        outcome.results_dir.join("summary.txt"),
        summary_text(&outcome),
    )?;
    Ok(outcome)
}

fn summary_text(outcome: &Outcome) -> String {
    let log2 = f64::from(outcome.peers).log2();
    let mut out = String::new();
    if let Some(stable) = outcome.phases.first() {
        let _ = writeln!(
            out,
            "{} peers: mean {:.2} hops per lookup (log2 N = {log2:.2}, Chord predicts about ½·log2 N = {:.2}); {} of {} lookups succeeded.",
            outcome.peers,
            stable.mean_hops(),
            log2 / 2.0,
            stable.succeeded,
            stable.lookups
        );
    }
    for p in outcome.phases.iter().skip(1) {
        let _ = writeln!(
            out,
            "{}: {} of {} lookups succeeded ({:.0}%){}.",
            p.name,
            p.succeeded,
            p.lookups,
            100.0 * f64::from(p.succeeded) / f64::from(p.lookups.max(1)),
            p.settle_s.map_or(String::new(), |s| format!(
                "; the ring was whole after {s:.1} s"
            ))
        );
    }
    out
}

/// Prints the phases and the summary.
pub fn print(outcome: &Outcome) {
    let rows: Vec<Vec<String>> = outcome
        .phases
        .iter()
        .map(|p| {
            let mut histogram = [0u32; 9];
            for h in &p.hops {
                histogram[(*h as usize).min(8)] += 1;
            }
            vec![
                p.name.clone(),
                p.peers.to_string(),
                format!("{}/{}", p.succeeded, p.lookups),
                format!("{:.2}", p.mean_hops()),
                histogram
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(h, c)| format!("{h}:{c}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                p.settle_s.map_or("—".to_owned(), |s| format!("{s:.1} s")),
            ]
        })
        .collect();
    println!();
    print_table(
        &[
            "PHASE",
            "PEERS",
            "SUCCEEDED",
            "MEAN HOPS",
            "HOPS (count)",
            "RING WHOLE AFTER",
        ],
        &rows,
    );
    println!("(ring whole after: from deploy, from the kills, from the restarts)");
    println!();
    print!("{}", summary_text(outcome));
    println!("Results: {}", outcome.results_dir.display());
}
