//! The `vbet` command line: a client of the orchestrator's API that
//! starts an orchestrator in the background when none runs.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tokio_stream::StreamExt;
use vbet_proto::vbet::orchestrator::v1 as pb;
use vbet_proto::vbet::port::v1 as port_pb;
use vbet_proto::vbet::vm::v1 as vm_pb;
use vbet_topology::units::{Micros, Percent, Rate};

use crate::client::Client;
use crate::layout::{DEFAULT_RUN_ROOT, Layout};
use crate::table::print_table;

/// vBET: bring up emulated networks of VMs, operate them, tear them down.
#[derive(Debug, Parser)]
#[command(name = "vbet", version, about)]
pub struct Cli {
    /// Where labs live (the orchestrator's socket is RUN_ROOT/orchestrator.sock).
    #[arg(long, global = true, default_value = DEFAULT_RUN_ROOT, env = "VBET_RUN_ROOT")]
    pub run_root: PathBuf,
    /// Print listings as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Talk to an orchestrator over TCP with TLS instead of the local
    /// socket, e.g. https://lab-host:7443.
    #[arg(long, global = true, env = "VBET_REMOTE", value_name = "URL")]
    pub remote: Option<String>,
    /// With --remote: the CA certificate (PEM) the orchestrator's
    /// certificate is checked against.
    #[arg(long, global = true, env = "VBET_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// With --remote: a file holding the bearer token.
    #[arg(long, global = true, env = "VBET_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `vbet` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy a topology as a lab; returns when every node is ready.
    Up {
        /// The topology (.vbet, .toml or .yaml).
        file: PathBuf,
        /// The lab's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a lab and everything it started.
    Down {
        /// The lab (may be omitted when there is only one).
        lab: Option<String>,
    },
    /// List labs.
    Ls,
    /// Show a lab's nodes, switches and cables with their live state.
    Inspect {
        /// The lab (may be omitted when there is only one).
        lab: Option<String>,
    },
    /// Run a command in a node; its exit code becomes vbet's.
    Exec {
        /// LAB/NODE, or NODE when there is only one lab.
        node: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// An interactive shell (a pty) in a node.
    Shell {
        /// LAB/NODE, or NODE when there is only one lab.
        node: String,
        /// The program to run instead of /bin/bash (or /bin/sh).
        #[arg(last = true)]
        argv: Vec<String>,
    },
    /// Syscall fault rules of a node: add, ls, rm (the node needs
    /// `faults = "on"` in the topology).
    #[command(subcommand)]
    Fault(FaultCommand),
    /// Syscall tracing of a node: on, off, or stream the traced syscalls
    /// (strace-like lines; JSON lines with --json) until interrupted.
    Trace {
        /// LAB/NODE, or NODE when there is only one lab.
        node: String,
        /// on, off or stream.
        #[arg(value_enum, default_value = "stream")]
        action: TraceAction,
    },
    /// Show or change a node's virtual clock (the node needs `clock`,
    /// `clock_offset` or `clock_rate` in the topology).
    Clock {
        /// LAB/NODE, or NODE when there is only one lab.
        node: String,
        /// Put the node's CLOCK_REALTIME this many seconds ahead of the
        /// host's (negative: behind).
        #[arg(long, allow_negative_numbers = true)]
        offset: Option<f64>,
        /// Guest seconds per host second for all its clocks (0.001–1000).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Change a cable: up, down, blackhole, impair or flap.
    Link(LinkArgs),
    /// Stream a NIC's frames as pcap (to stdout unless -w).
    Capture {
        /// NODE:ethN (or LAB/NODE:ethN).
        target: String,
        /// Write to this file instead of stdout.
        #[arg(short = 'w', long)]
        write: Option<PathBuf>,
    },
    /// Draw a lab: Graphviz dot, SVG or an HTML page.
    Graph {
        /// The lab (may be omitted when there is only one).
        lab: Option<String>,
        /// dot, svg or html.
        #[arg(long, default_value = "dot")]
        format: String,
    },
    /// Follow a lab's events (every lab's with --all) until interrupted.
    Events {
        /// The lab (may be omitted when there is only one).
        lab: Option<String>,
        /// Every lab.
        #[arg(long)]
        all: bool,
    },
    /// Check a topology file and summarise it, without deploying.
    Check {
        /// The topology.
        file: PathBuf,
    },
    /// Print a component's log.
    Logs {
        /// LAB/NAME or NAME (a node or switch).
        component: String,
    },
    /// Run one of the paper's experiments end to end.
    #[command(subcommand)]
    Experiment(Experiment),
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, …
        shell: clap_complete::Shell,
    },
}

/// What `vbet trace` does.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TraceAction {
    /// Every process of the node stops at each syscall from now on.
    On,
    /// Back to stops at fork, exec and exit only.
    Off,
    /// Print the traced syscalls as they end.
    Stream,
}

/// `vbet fault`.
#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Add a rule; prints its id.
    Add {
        /// LAB/NODE, or NODE when there is only one lab.
        node: String,
        /// The rule.
        #[command(flatten)]
        rule: vm_monitor::cli::FaultAdd,
    },
    /// List a node's rules with their counters.
    Ls {
        /// LAB/NODE, or NODE when there is only one lab.
        node: String,
    },
    /// Remove a rule.
    Rm {
        /// LAB/NODE, or NODE when there is only one lab.
        node: String,
        /// The rule's id.
        id: u64,
    },
}

/// The paper's experiments.
#[derive(Debug, Subcommand)]
pub enum Experiment {
    /// §4.1: flap the r2–r3 link under OSPF and measure reconvergence.
    OspfFlap(crate::experiment::ospf::Params),
    /// §4.2: probe a distributed firewall against its intended policy.
    Firewall(crate::experiment::firewall::Params),
    /// §4.3: a Chord ring: lookups, hop counts, churn and recovery.
    Chord(crate::experiment::chord::Params),
}

/// `vbet link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The lab (may be omitted when there is only one).
    #[arg(long)]
    pub lab: Option<String>,
    /// A cable: its name, two devices ("r2 r3"), or a NIC ("r1:eth1").
    pub target: String,
    /// up, down, blackhole, impair, or flap.
    pub action: String,
    /// Impair: one-way delay ("50ms").
    #[arg(long)]
    pub delay: Option<Micros>,
    /// Impair: delay variation ("5ms").
    #[arg(long)]
    pub jitter: Option<Micros>,
    /// Impair: frames lost, percent.
    #[arg(long)]
    pub loss: Option<Percent>,
    /// Impair: frames duplicated, percent.
    #[arg(long)]
    pub duplicate: Option<Percent>,
    /// Impair: frames corrupted, percent.
    #[arg(long)]
    pub corrupt: Option<Percent>,
    /// Impair: rate limit ("10mbit").
    #[arg(long)]
    pub rate: Option<Rate>,
    /// Flap: time between changes ("2s").
    #[arg(long, default_value = "2s")]
    pub period: Micros,
    /// Flap: how many down/up cycles.
    #[arg(long, default_value_t = 3)]
    pub count: u32,
}

/// Runs the CLI; errors are printed as one paragraph.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // A read of stdin may still block a worker thread: don't wait for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let layout = Layout {
        run_root: cli.run_root.clone(),
        tools: None,
    };
    match &cli.command {
        Command::Check { file } => return check(file),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Cli::command(), "vbet", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let mut client = match &cli.remote {
        Some(url) => {
            let ca = cli
                .ca
                .as_deref()
                .context("--remote needs --ca FILE (the orchestrator's CA certificate)")?;
            let token = cli
                .token_file
                .as_deref()
                .context("--remote needs --token-file FILE")?;
            crate::client::connect_remote(url, ca, token).await?
        }
        None => crate::client::connect_or_start(&layout).await?,
    };
    match cli.command {
        Command::Up { file, name } => up(&mut client, &file, name).await,
        Command::Down { lab } => {
            let lab = pick_lab(&mut client, lab).await?;
            down(&mut client, &lab).await
        }
        Command::Ls => ls(&mut client, cli.json).await,
        Command::Inspect { lab } => {
            let lab = pick_lab(&mut client, lab).await?;
            inspect(&mut client, &lab, cli.json).await
        }
        Command::Exec { node, argv } => {
            let (lab, node) = split_target(&mut client, &node).await?;
            exec(&mut client, &lab, &node, argv).await
        }
        Command::Shell { node, argv } => {
            let (lab, node) = split_target(&mut client, &node).await?;
            crate::shell::run(&mut client, &lab, &node, argv).await
        }
        Command::Fault(command) => fault(&mut client, command, cli.json).await,
        Command::Trace { node, action } => trace(&mut client, &node, action, cli.json).await,
        Command::Clock { node, offset, rate } => {
            clock(&mut client, &node, offset, rate, cli.json).await
        }
        Command::Link(args) => {
            let lab = pick_lab(&mut client, args.lab.clone()).await?;
            link(&mut client, &lab, &args, cli.json).await
        }
        Command::Capture { target, write } => {
            let (lab, target) = split_target(&mut client, &target).await?;
            capture(&mut client, &lab, &target, write.as_deref()).await
        }
        Command::Graph { lab, format } => {
            let lab = pick_lab(&mut client, lab).await?;
            let lab = client
                .inspect_lab(pb::InspectLabRequest { lab })
                .await?
                .into_inner();
            let text = match format.as_str() {
                "dot" => crate::graph::dot(&lab),
                "svg" => crate::graph::svg(&lab)?,
                "html" => crate::graph::html(&lab)?,
                other => bail!("unknown graph format {other:?}; use dot, svg or html"),
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Events { lab, all } => {
            let lab = if all {
                String::new()
            } else {
                pick_lab(&mut client, lab).await?
            };
            let mut stream = client.events(pb::EventsRequest { lab }).await?.into_inner();
            while let Some(event) = stream.next().await {
                let e = event?;
                if cli.json {
                    println!(
                        "{}",
                        serde_json::json!({"time_ms": e.time_ms, "lab": e.lab,
                            "component": e.component, "kind": e.kind, "message": e.message})
                    );
                } else {
                    let secs = e.time_ms / 1000;
                    println!(
                        "{:02}:{:02}:{:02}.{:03}  {}  {:<8} {:<10} {}",
                        (secs / 3600) % 24,
                        (secs / 60) % 60,
                        secs % 60,
                        e.time_ms % 1000,
                        e.lab,
                        e.kind,
                        e.component,
                        e.message
                    );
                }
                let _ = std::io::stdout().flush();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs { component } => {
            let (lab, name) = split_target(&mut client, &component).await?;
            let text = client
                .read_log(pb::NodeRef {
                    lab: lab.clone(),
                    node: name.clone(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("no log for {name} in lab {lab}: {}", s.message()))?
                .into_inner()
                .text;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Experiment(Experiment::OspfFlap(params)) => {
            let outcome = crate::experiment::ospf::run(&mut client, &params).await?;
            crate::experiment::ospf::print(&outcome);
            Ok(ExitCode::SUCCESS)
        }
        Command::Experiment(Experiment::Chord(params)) => {
            let outcome = crate::experiment::chord::run(&mut client, &params).await?;
            crate::experiment::chord::print(&outcome);
            let all_ok = outcome
                .phases
                .iter()
                .filter(|p| p.name != "right after churn")
                .all(|p| p.succeeded == p.lookups);
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Experiment(Experiment::Firewall(params)) => {
            let outcome = crate::experiment::firewall::run(&mut client, &params).await?;
            crate::experiment::firewall::print(&outcome);
            Ok(if outcome.mismatches() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Check { .. } | Command::Completions { .. } => unreachable!("handled above"),
    }
}

fn check(file: &Path) -> anyhow::Result<ExitCode> {
    match vbet_topology::load(file) {
        Ok(topo) => {
            print!("{}", vbet_topology::summary::summary(&topo));
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprint!("{}", errors.render(std::io::stderr().is_terminal()));
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn lab_names(client: &mut Client) -> anyhow::Result<Vec<String>> {
    let labs = client
        .list_labs(pb::ListLabsRequest {})
        .await?
        .into_inner()
        .labs;
    Ok(labs.into_iter().map(|l| l.name).collect())
}

/// The lab given, or the only lab there is.
async fn pick_lab(client: &mut Client, lab: Option<String>) -> anyhow::Result<String> {
    if let Some(lab) = lab {
        return Ok(lab);
    }
    match &lab_names(client).await?[..] {
        [only] => Ok(only.clone()),
        [] => bail!("there are no labs; bring one up with `vbet up FILE`"),
        many => bail!("several labs are up ({}); name one", many.join(", ")),
    }
}

/// Splits "LAB/REST" or takes the only lab for "REST".
async fn split_target(client: &mut Client, target: &str) -> anyhow::Result<(String, String)> {
    match target.split_once('/') {
        Some((lab, rest)) => Ok((lab.to_owned(), rest.to_owned())),
        None => Ok((pick_lab(client, None).await?, target.to_owned())),
    }
}

fn phase_name(phase: i32) -> &'static str {
    match pb::Phase::try_from(phase).unwrap_or(pb::Phase::Unspecified) {
        pb::Phase::Planned => "planned",
        pb::Phase::Starting => "starting",
        pb::Phase::Ready => "ready",
        pb::Phase::Failed => "FAILED",
        pb::Phase::Stopping => "stopping",
        pb::Phase::Stopped => "stopped",
        pb::Phase::Unspecified => "",
    }
}

/// Shows a progress stream: a bar on a terminal, plain lines otherwise.
async fn follow(
    stream: &mut tonic::Streaming<pb::Progress>,
    verb: &str,
    done_phase: pb::Phase,
) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(0);
    if tty {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(verb.to_owned());
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    loop {
        match stream.message().await {
            Ok(Some(p)) => {
                if p.component.is_empty() {
                    bar.suspend(|| eprintln!("{}", p.message));
                    continue;
                }
                let phase = pb::Phase::try_from(p.phase).unwrap_or(pb::Phase::Unspecified);
                if phase == pb::Phase::Planned
                    || (phase == pb::Phase::Stopping && bar.length() == Some(0))
                {
                    bar.inc_length(1);
                }
                if phase == pb::Phase::Stopping && bar.position() == 0 && bar.length() == Some(1) {
                    // Destroy streams no "planned": size the bar as we go.
                }
                if phase == done_phase {
                    bar.inc(1);
                }
                if phase == pb::Phase::Stopping {
                    bar.inc_length(u64::from(bar.length() == Some(bar.position())));
                }
                if !tty || phase == pb::Phase::Failed {
                    let line = format!(
                        "  {:<8} {:<12} {}{}",
                        p.kind,
                        p.component,
                        phase_name(p.phase),
                        if p.message.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", p.message)
                        }
                    );
                    bar.suspend(|| eprintln!("{line}"));
                }
            }
            Ok(None) => {
                bar.finish_and_clear();
                return Ok(());
            }
            Err(status) => {
                bar.finish_and_clear();
                bail!("{}", status.message());
            }
        }
    }
}

async fn up(client: &mut Client, file: &Path, name: Option<String>) -> anyhow::Result<ExitCode> {
    let request = crate::client::deploy_request(file, &name.unwrap_or_default())?;
    let mut stream = client.deploy(request).await?.into_inner();
    follow(&mut stream, "deploying", pb::Phase::Ready).await?;
    Ok(ExitCode::SUCCESS)
}

async fn down(client: &mut Client, lab: &str) -> anyhow::Result<ExitCode> {
    let mut stream = client
        .destroy(pb::DestroyRequest {
            lab: lab.to_owned(),
            keep_layers: false,
        })
        .await?
        .into_inner();
    follow(&mut stream, "destroying", pb::Phase::Stopped).await?;
    Ok(ExitCode::SUCCESS)
}

async fn ls(client: &mut Client, json: bool) -> anyhow::Result<ExitCode> {
    let labs = client
        .list_labs(pb::ListLabsRequest {})
        .await?
        .into_inner()
        .labs;
    if json {
        let rows: Vec<serde_json::Value> = labs
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.name, "state": l.state, "nodes": l.nodes,
                    "switches": l.switches, "cables": l.cables,
                    "topology": l.topology_path, "created": l.created_unix,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = labs
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                l.state.clone(),
                l.nodes.to_string(),
                l.switches.to_string(),
                l.cables.to_string(),
                l.topology_path.clone(),
            ]
        })
        .collect();
    print_table(
        &["LAB", "STATE", "NODES", "SWITCHES", "CABLES", "TOPOLOGY"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

fn state_name(state: i32) -> &'static str {
    match port_pb::LinkState::try_from(state).unwrap_or(port_pb::LinkState::Unspecified) {
        port_pb::LinkState::Up | port_pb::LinkState::Unspecified => "up",
        port_pb::LinkState::Down => "down",
        port_pb::LinkState::Blackhole => "blackhole",
    }
}

fn impairment_text(i: Option<&port_pb::Impairment>) -> String {
    let Some(i) = i else { return String::new() };
    let mut parts = Vec::new();
    if i.delay_us > 0 {
        parts.push(format!("delay {}", Micros(i.delay_us)));
    }
    if i.jitter_us > 0 {
        parts.push(format!("jitter {}", Micros(i.jitter_us)));
    }
    if i.loss_percent > 0.0 {
        parts.push(format!("loss {}%", i.loss_percent));
    }
    if i.duplicate_percent > 0.0 {
        parts.push(format!("dup {}%", i.duplicate_percent));
    }
    if i.corrupt_percent > 0.0 {
        parts.push(format!("corrupt {}%", i.corrupt_percent));
    }
    if i.rate_bps > 0 {
        parts.push(format!("rate {}", Rate(i.rate_bps)));
    }
    parts.join(", ")
}

async fn inspect(client: &mut Client, lab: &str, json: bool) -> anyhow::Result<ExitCode> {
    let lab = client
        .inspect_lab(pb::InspectLabRequest {
            lab: lab.to_owned(),
        })
        .await?
        .into_inner();
    if json {
        println!("{}", serde_json::to_string_pretty(&lab_json(&lab))?);
        return Ok(ExitCode::SUCCESS);
    }
    let s = lab.summary.unwrap_or_default();
    println!("lab {} ({}), from {}\n", s.name, s.state, s.topology_path);
    // Nodes and switches on peers say where they run.
    let placed = |state: &str, host: &str| {
        if host.is_empty() {
            state.to_owned()
        } else {
            format!("{state} on {host}")
        }
    };
    let mut rows = Vec::new();
    for n in &lab.nodes {
        if n.nics.is_empty() {
            rows.push(vec![
                n.name.clone(),
                n.kind.clone(),
                placed(&n.state, &n.host),
                n.monitor_pid.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for (i, nic) in n.nics.iter().enumerate() {
            let first = i == 0;
            rows.push(vec![
                if first { n.name.clone() } else { String::new() },
                if first { n.kind.clone() } else { String::new() },
                if first {
                    placed(&n.state, &n.host)
                } else {
                    String::new()
                },
                if first {
                    n.monitor_pid.to_string()
                } else {
                    String::new()
                },
                nic.name.clone(),
                nic.addresses.join(" "),
                nic.peer.clone(),
                state_name(nic.state).to_owned(),
            ]);
        }
    }
    print_table(
        &[
            "NODE",
            "KIND",
            "STATE",
            "PID",
            "NIC",
            "ADDRESSES",
            "PEER",
            "LINK",
        ],
        &rows,
    );
    if !lab.switches.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = lab
            .switches
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.kind.clone(),
                    placed(&s.state, &s.host),
                    s.pid.to_string(),
                    s.ports.to_string(),
                    s.ctl_socket.clone(),
                ]
            })
            .collect();
        print_table(
            &["SWITCH", "KIND", "STATE", "PID", "PORTS", "CONTROL SOCKET"],
            &rows,
        );
    }
    println!();
    let rows: Vec<Vec<String>> = lab
        .cables
        .iter()
        .map(|c| {
            vec![
                c.label.clone(),
                c.a.clone(),
                c.b.clone(),
                state_name(c.state).to_owned(),
                impairment_text(c.impairment.as_ref()),
            ]
        })
        .collect();
    print_table(&["CABLE", "A", "B", "STATE", "IMPAIRMENTS"], &rows);
    Ok(ExitCode::SUCCESS)
}

fn lab_json(lab: &pb::Lab) -> serde_json::Value {
    let s = lab.summary.clone().unwrap_or_default();
    serde_json::json!({
        "name": s.name, "state": s.state, "topology": s.topology_path, "run_dir": lab.run_dir,
        "nodes": lab.nodes.iter().map(|n| serde_json::json!({
            "name": n.name, "kind": n.kind, "state": n.state, "host": n.host, "monitor_pid": n.monitor_pid,
            "init_pid": n.init_pid, "api": n.api_socket, "uptime_ms": n.uptime_ms,
            "nics": n.nics.iter().map(|nic| serde_json::json!({
                "name": nic.name, "mac": nic.mac, "addresses": nic.addresses, "peer": nic.peer,
                "link": state_name(nic.state),
                "rx_frames": nic.counters.map_or(0, |c| c.rx_frames),
                "tx_frames": nic.counters.map_or(0, |c| c.tx_frames),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "switches": lab.switches.iter().map(|s| serde_json::json!({
            "name": s.name, "kind": s.kind, "state": s.state, "host": s.host, "pid": s.pid,
            "ctl": s.ctl_socket, "api": s.api_socket, "ports": s.ports,
        })).collect::<Vec<_>>(),
        "cables": lab.cables.iter().map(|c| serde_json::json!({
            "label": c.label, "a": c.a, "b": c.b, "state": state_name(c.state),
            "impairments": impairment_text(c.impairment.as_ref()),
        })).collect::<Vec<_>>(),
    })
}

async fn exec(
    client: &mut Client,
    lab: &str,
    node: &str,
    argv: Vec<String>,
) -> anyhow::Result<ExitCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let wrap = |kind| pb::ExecRequest {
        lab: lab.to_owned(),
        node: node.to_owned(),
        request: Some(vm_pb::ExecRequest { kind: Some(kind) }),
    };
    tx.send(wrap(vm_pb::exec_request::Kind::Start(vm_pb::ExecStart {
        argv,
        ..Default::default()
    })))
    .await?;
    let interactive = std::io::stdin().is_terminal();
    let (lab_owned, node_owned) = (lab.to_owned(), node.to_owned());
    let input = tokio::spawn(async move {
        let wrap = |kind| pb::ExecRequest {
            lab: lab_owned.clone(),
            node: node_owned.clone(),
            request: Some(vm_pb::ExecRequest { kind: Some(kind) }),
        };
        if !interactive {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = stdin.read(&mut buf).await {
                if n == 0
                    || tx
                        .send(wrap(vm_pb::exec_request::Kind::Stdin(buf[..n].to_vec())))
                        .await
                        .is_err()
                {
                    break;
                }
            }
        }
        let _ = tx
            .send(wrap(vm_pb::exec_request::Kind::StdinEof(true)))
            .await;
        tx.closed().await;
    });
    let mut replies = client
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut code = 1;
    while let Some(reply) = replies.next().await {
        match reply?.kind {
            Some(vm_pb::exec_reply::Kind::Stdout(d)) => {
                stdout.write_all(&d).await?;
                stdout.flush().await?;
            }
            Some(vm_pb::exec_reply::Kind::Stderr(d)) => {
                stderr.write_all(&d).await?;
                stderr.flush().await?;
            }
            Some(vm_pb::exec_reply::Kind::Exit(s)) => {
                code = if s.signal != 0 {
                    128 + s.signal
                } else {
                    s.code
                };
                break;
            }
            Some(vm_pb::exec_reply::Kind::Started(_)) | None => {}
        }
    }
    input.abort();
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

async fn link(
    client: &mut Client,
    lab: &str,
    args: &LinkArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let set = |state: Option<port_pb::LinkState>, impairment: Option<port_pb::Impairment>| {
        pb::SetLinkRequest {
            lab: lab.to_owned(),
            target: args.target.clone(),
            state: state.map(|s| s as i32),
            impairment,
        }
    };
    let cable = match args.action.as_str() {
        "up" => {
            client
                .set_link(set(Some(port_pb::LinkState::Up), None))
                .await?
        }
        "down" => {
            client
                .set_link(set(Some(port_pb::LinkState::Down), None))
                .await?
        }
        "blackhole" => {
            client
                .set_link(set(Some(port_pb::LinkState::Blackhole), None))
                .await?
        }
        "impair" => {
            let imp = port_pb::Impairment {
                delay_us: args.delay.map_or(0, |d| d.0),
                jitter_us: args.jitter.map_or(0, |d| d.0),
                loss_percent: args.loss.map_or(0.0, |p| p.0),
                duplicate_percent: args.duplicate.map_or(0.0, |p| p.0),
                corrupt_percent: args.corrupt.map_or(0.0, |p| p.0),
                rate_bps: args.rate.map_or(0, |r| r.0),
                queue_frames: 0,
            };
            client.set_link(set(None, Some(imp))).await?
        }
        "flap" => {
            let period = Duration::from_micros(args.period.0);
            for i in 1..=args.count {
                client
                    .set_link(set(Some(port_pb::LinkState::Down), None))
                    .await?;
                eprintln!("flap {i}/{}: down", args.count);
                tokio::time::sleep(period).await;
                client
                    .set_link(set(Some(port_pb::LinkState::Up), None))
                    .await?;
                eprintln!("flap {i}/{}: up", args.count);
                if i < args.count {
                    tokio::time::sleep(period).await;
                }
            }
            client.set_link(set(None, None)).await?
        }
        other => bail!("unknown link action {other:?}; use up, down, blackhole, impair or flap"),
    }
    .into_inner();
    if json {
        println!(
            "{}",
            serde_json::json!({"label": cable.label, "a": cable.a, "b": cable.b,
                "state": state_name(cable.state), "impairments": impairment_text(cable.impairment.as_ref())})
        );
    } else {
        println!(
            "{} ({} -- {}): {}{}",
            cable.label,
            cable.a,
            cable.b,
            state_name(cable.state),
            match impairment_text(cable.impairment.as_ref()) {
                t if t.is_empty() => String::new(),
                t => format!(", {t}"),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn capture(
    client: &mut Client,
    lab: &str,
    target: &str,
    write: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut stream = client
        .capture(pb::CaptureRequest {
            lab: lab.to_owned(),
            target: target.to_owned(),
        })
        .await?
        .into_inner();
    let mut out: Box<dyn Write + Send> = match write {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out
            .write_all(&chunk.data)
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn trace(
    client: &mut Client,
    target: &str,
    action: TraceAction,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (lab, node) = split_target(client, target).await?;
    let node = pb::NodeRef { lab, node };
    let state = match action {
        TraceAction::On => client.trace_on(node).await,
        TraceAction::Off => client.trace_off(node).await,
        TraceAction::Stream => {
            let stream = client
                .trace(node)
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            vm_monitor::cli::print_trace(stream, json).await?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
    .into_inner();
    if json {
        println!(
            "{}",
            serde_json::json!({"on": state.on, "events": state.events, "dropped": state.dropped})
        );
    } else {
        println!(
            "tracing {} ({} syscalls traced, {} events dropped by slow clients)",
            if state.on { "on" } else { "off" },
            state.events,
            state.dropped
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn clock(
    client: &mut Client,
    target: &str,
    offset: Option<f64>,
    rate: Option<f64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (lab, node) = split_target(client, target).await?;
    let node = pb::NodeRef { lab, node };
    let state = if offset.is_some() || rate.is_some() {
        client
            .set_clock(pb::SetClockRequest {
                node: Some(node),
                clock: Some(vm_pb::SetClockRequest {
                    realtime_offset: offset,
                    rate,
                }),
            })
            .await
    } else {
        client.get_clock(node).await
    }
    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
    .into_inner();
    if json {
        println!(
            "{}",
            serde_json::json!({"virtual": state.enabled, "realtime_offset": state.realtime_offset,
                "rate": state.rate, "guest_realtime": state.guest_realtime})
        );
    } else if state.enabled {
        println!(
            "virtual clock: {:+.3} s from the host's, rate {} (guest time {:.3})",
            state.realtime_offset, state.rate, state.guest_realtime
        );
    } else {
        println!("no virtual clock: the node's clocks are the host's");
    }
    Ok(ExitCode::SUCCESS)
}

async fn fault(client: &mut Client, command: FaultCommand, json: bool) -> anyhow::Result<ExitCode> {
    let node_ref = async |client: &mut Client, target: &str| -> anyhow::Result<pb::NodeRef> {
        let (lab, node) = split_target(client, target).await?;
        Ok(pb::NodeRef { lab, node })
    };
    match command {
        FaultCommand::Add { node, rule } => {
            let node = node_ref(client, &node).await?;
            let rule = rule.rule()?;
            let added = client
                .add_fault(pb::AddFaultRequest {
                    node: Some(node),
                    rule: Some(rule),
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            println!("{}", added.id);
        }
        FaultCommand::Ls { node } => {
            let node = node_ref(client, &node).await?;
            let list = client
                .list_faults(node)
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            if json {
                let rules: Vec<serde_json::Value> = list
                    .rules
                    .iter()
                    .map(|r| {
                        serde_json::json!({"id": r.id, "syscall": r.syscall, "command": r.command,
                            "pid": r.pid, "probability": r.probability, "every": r.every,
                            "after": r.after, "duration_ms": r.duration_ms, "errno": r.error_number,
                            "delay_ms": r.delay_ms, "signal": r.signal, "matched": r.matched,
                            "fired": r.fired})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"rules": rules, "faultable": list.faultable})
                );
            } else {
                let rows: Vec<Vec<String>> = list
                    .rules
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            r.syscall.clone(),
                            if r.command.is_empty() {
                                "*".into()
                            } else {
                                r.command.clone()
                            },
                            r.probability
                                .map_or("always".into(), |p| format!("{:.0}%", p * 100.0)),
                            if r.error_number != 0 {
                                vm_monitor::fault::errno_name(r.error_number)
                            } else {
                                String::new()
                            },
                            if r.delay_ms != 0 {
                                format!("{} ms", r.delay_ms)
                            } else {
                                String::new()
                            },
                            format!("{}/{}", r.fired, r.matched),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID",
                        "SYSCALL",
                        "COMMAND",
                        "WHEN",
                        "ERRNO",
                        "DELAY",
                        "FIRED/MATCHED",
                    ],
                    &rows,
                );
                if list.faultable.is_empty() {
                    println!("(faults are off on this node: set faults = \"on\" in the topology)");
                }
            }
        }
        FaultCommand::Rm { node, id } => {
            let node = node_ref(client, &node).await?;
            client
                .remove_fault(pb::RemoveFaultRequest {
                    node: Some(node),
                    id,
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
