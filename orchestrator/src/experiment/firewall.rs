//! §4.2 of the paper: a distributed firewall.
//!
//! Five firewalls and a server on one switch, a client behind each
//! firewall, every firewall with its own nftables policy. The experiment
//! probes every client against every service of the server (ping, TCP
//! connects) and compares what passes with the intended policy, printing
//! the matrix; any difference fails the run, so a wrong rule is caught.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use futures::future::join_all;
use serde::Deserialize;

use crate::client::{self, Client};
use crate::experiment::{results_dir, with_lab};
use crate::table::print_table;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// The topology (the paper's §4.2 lab).
    #[arg(long, default_value = "examples/paper-4.2-firewall.vbet")]
    pub topology: PathBuf,
    /// The intended policy (default: paper-4.2-firewall/policy.toml beside
    /// the topology).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The lab's name.
    #[arg(long, default_value = "firewall")]
    pub lab: String,
    /// Before probing, insert a wrong rule on this firewall (one that
    /// forwards everything from its client), to show the probe catches it.
    #[arg(long, value_name = "FIREWALL")]
    pub wrong_rule: Option<String>,
    /// Where results go (a new directory inside).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Keep the lab up afterwards for poking.
    #[arg(long)]
    pub keep: bool,
}

/// The intended policy: which services of the server each client may reach.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The server's address.
    pub server: String,
    /// Services probed: `icmp` or `tcp/PORT`.
    pub services: Vec<String>,
    /// Client node → services it may reach.
    pub clients: BTreeMap<String, Vec<String>>,
}

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> anyhow::Result<Policy> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the policy {}", path.display()))?;
        let policy: Policy = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid policy", path.display()))?;
        for service in &policy.services {
            probe_command(&policy.server, service)?;
        }
        for (client, allowed) in &policy.clients {
            if let Some(unknown) = allowed.iter().find(|s| !policy.services.contains(s)) {
                bail!(
                    "{}: client {client} allows {unknown:?}, which is not in `services`",
                    path.display()
                );
            }
        }
        Ok(policy)
    }
}

/// The command that probes `service` on `server` from a client.
fn probe_command(server: &str, service: &str) -> anyhow::Result<Vec<String>> {
    if service == "icmp" {
        return Ok(["ping", "-c", "1", "-W", "1", server]
            .map(str::to_owned)
            .to_vec());
    }
    if let Some(port) = service
        .strip_prefix("tcp/")
        .and_then(|p| p.parse::<u16>().ok())
    {
        return Ok(["nc", "-z", "-w", "1", server, &port.to_string()]
            .map(str::to_owned)
            .to_vec());
    }
    bail!("service {service:?} is not `icmp` or `tcp/PORT`")
}

/// One probe and its verdict.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The client probing.
    pub client: String,
    /// The service probed.
    pub service: String,
    /// What the policy says.
    pub allowed: bool,
    /// What happened.
    pub reached: bool,
}

/// What the experiment found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every probe.
    pub probes: Vec<Probe>,
    /// The services, in column order.
    pub services: Vec<String>,
    /// Where the files went.
    pub results_dir: PathBuf,
}

impl Outcome {
    /// Probes whose result differs from the policy.
    pub fn mismatches(&self) -> usize {
        self.probes
            .iter()
            .filter(|p| p.allowed != p.reached)
            .count()
    }
}

/// Runs the experiment, tearing the lab down afterwards unless asked to
/// keep it (also when it fails).
pub async fn run(client: &mut Client, params: &Params) -> anyhow::Result<Outcome> {
    let policy_path = params.policy.clone().unwrap_or_else(|| {
        params
            .topology
            .parent()
            .unwrap_or(Path::new("."))
            .join("paper-4.2-firewall/policy.toml")
    });
    let policy = Policy::load(&policy_path)?;
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
        async |client| probe_all(client, params, &policy).await,
    )
    .await
}

async fn probe_all(
    client: &mut Client,
    params: &Params,
    policy: &Policy,
) -> anyhow::Result<Outcome> {
    let lab = params.lab.as_str();
    if let Some(fw) = &params.wrong_rule {
        eprintln!("Inserting a wrong rule on {fw}: forward everything from its client …");
        let (code, out) = client::run(
            client,
            lab,
            fw,
            &[
                "nft", "insert", "rule", "inet", "vbet", "forward", "iifname", "eth1", "accept",
            ],
        )
        .await?;
        if code != 0 {
            bail!("cannot insert the wrong rule on {fw}: {out}");
        }
    }
    eprintln!(
        "Probing {} clients × {} services …",
        policy.clients.len(),
        policy.services.len()
    );
    let rows = join_all(policy.clients.iter().map(|(name, allowed)| {
        let mut client = client.clone();
        async move {
            let mut probes = Vec::new();
            for service in &policy.services {
                let argv = probe_command(&policy.server, service)?;
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let (code, _) = client::run(&mut client, lab, name, &argv).await?;
                probes.push(Probe {
                    client: name.clone(),
                    service: service.clone(),
                    allowed: allowed.contains(service),
                    reached: code == 0,
                });
            }
            anyhow::Ok(probes)
        }
    }))
    .await;
    let mut probes = Vec::new();
    for row in rows {
        probes.extend(row?);
    }
    let dir = results_dir(&params.results, "firewall").with_context(|| {
        format!(
            "cannot create a results directory in {}",
            params.results.display()
        )
    })?;
    let outcome = Outcome {
        probes,
        services: policy.services.clone(),
        results_dir: dir,
    };
    let mut csv = String::from("client,service,allowed,reached,verdict\n");
    for p in &outcome.probes {
        let _ = writeln!(
            csv,
            "{},{},{},{},{}",
            p.client,
            p.service,
            p.allowed,
            p.reached,
            if p.allowed == p.reached {
                "pass"
            } else {
                "FAIL"
            }
        );
    }
    std::fs::write(outcome.results_dir.join("matrix.csv"), csv)?;
    std::fs::write(
        outcome.results_dir.join("summary.txt"),
        summary_text(&outcome),
    )?;
    Ok(outcome)
}

fn summary_text(outcome: &Outcome) -> String {
    let total = outcome.probes.len();
    match outcome.mismatches() {
        0 => format!("All {total} probes match the policy.\n"),
        n => {
            let mut out = format!("{n} of {total} probes DO NOT match the policy:\n");
            for p in outcome.probes.iter().filter(|p| p.allowed != p.reached) {
                let _ = writeln!(
                    out,
                    "  {} -> {}: {} but {}",
                    p.client,
                    p.service,
                    if p.allowed { "allowed" } else { "forbidden" },
                    if p.reached {
                        "it passed"
                    } else {
                        "it was blocked"
                    }
                );
            }
            out
        }
    }
}

/// Prints the matrix: each cell is what happened, marked FAIL where it
/// differs from the policy.
pub fn print(outcome: &Outcome) {
    let mut clients: Vec<&str> = outcome.probes.iter().map(|p| p.client.as_str()).collect();
    clients.dedup();
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|c| {
            let mut row = vec![(*c).to_owned()];
            for service in &outcome.services {
                let cell = outcome
                    .probes
                    .iter()
                    .find(|p| p.client == *c && &p.service == service)
                    .map_or(String::new(), |p| {
                        let what = if p.reached { "passes" } else { "blocked" };
                        if p.allowed == p.reached {
                            format!("{what} ok")
                        } else {
                            format!("{what} FAIL")
                        }
                    });
                row.push(cell);
            }
            row
        })
        .collect();
    let mut header = vec!["CLIENT"];
    header.extend(outcome.services.iter().map(String::as_str));
    println!();
    print_table(&header, &rows);
    println!();
    print!("{}", summary_text(outcome));
    println!("Results: {}", outcome.results_dir.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_policy_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/paper-4.2-firewall/policy.toml");
        let policy = Policy::load(&path).unwrap();
        assert_eq!(policy.clients.len(), 5);
        assert_eq!(policy.clients["client3"], Vec::<String>::new());
    }

    #[test]
    fn bad_services_are_refused() {
        assert!(probe_command("10.0.0.1", "udp/53").is_err());
        assert!(probe_command("10.0.0.1", "tcp/x").is_err());
        assert_eq!(
            probe_command("10.0.0.1", "tcp/22").unwrap().last().unwrap(),
            "22"
        );
    }
}
