//! Command-line interface: `vm-monitor run` builds and runs a VM from a spec
//! file and flags; `vm-monitor exec` runs a command in a running VM.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::spec::{ByteSize, RestartPolicy, VmSpec};

/// One process that is one vBET VM.
#[derive(Debug, Parser)]
#[command(name = "vm-monitor", version)]
pub struct Cli {
    /// Log as JSON lines.
    #[arg(long, global = true, env = "VBET_LOG_JSON")]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build and run a VM until SIGTERM or a Shutdown request.
    Run(RunArgs),
    /// Run a command in a running VM through its API socket.
    Exec(ExecArgs),
    /// Add, list or remove syscall fault rules of a running VM (its spec
    /// needs `faults = true`).
    Fault(FaultArgs),
    /// Turn syscall tracing of a running VM on or off, or stream it
    /// (strace-like lines).
    Trace(TraceArgs),
    /// Show or change a running VM's virtual clock (its spec needs
    /// `clock.realtime`, `clock.rate` or `clock.settable`).
    Clock(ClockArgs),
    /// Remove what dead VMs of a lab left behind (if even their reaper
    /// was killed); running VMs are untouched.
    Cleanup(CleanupArgs),
}

/// `vm-monitor cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The lab.
    #[arg(long, env = "VBET_LAB")]
    pub lab: String,
    /// The lab's run directory (default /run/vbet/LAB).
    #[arg(long, env = "VBET_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
}

/// `vm-monitor cleanup`: prints what it removed.
pub fn cleanup(args: CleanupArgs) -> anyhow::Result<()> {
    let run_dir = args
        .run_dir
        .unwrap_or_else(|| std::path::Path::new("/run/vbet").join(&args.lab));
    for path in crate::vm::clean_stale(&args.lab, &run_dir)? {
        println!("removed {}", path.display());
    }
    Ok(())
}

/// `vm-monitor run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The VM spec (TOML); flags override its fields.
    #[arg(long, env = "VBET_VM_SPEC")]
    pub spec: Option<PathBuf>,
    /// VM name.
    #[arg(long)]
    pub name: Option<String>,
    /// Lab name.
    #[arg(long)]
    pub lab: Option<String>,
    /// Image: "host" or a root directory.
    #[arg(long)]
    pub image: Option<String>,
    /// Hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory limit ("64M").
    #[arg(long)]
    pub memory: Option<ByteSize>,
    /// CPU limit in CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Pid limit.
    #[arg(long)]
    pub pids: Option<u64>,
    /// Run directory for the sockets.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Command line started once the VM is up (repeatable).
    #[arg(long = "cmd")]
    pub commands: Vec<String>,
    /// Allow syscall fault rules at run time (`faults = true`).
    #[arg(long)]
    pub faults: bool,
    /// Print the merged spec as TOML and exit.
    #[arg(long)]
    pub show_config: bool,
}

/// `vm-monitor exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The VM's API socket.
    #[arg(long)]
    pub api: PathBuf,
    /// Run on a pseudo-terminal (an interactive shell: `-t -- bash`).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

impl RunArgs {
    /// The spec file merged with the flags.
    pub fn spec(&self) -> anyhow::Result<VmSpec> {
        let mut spec = match (&self.spec, &self.name) {
            (Some(path), _) => VmSpec::from_toml_file(path)?,
            (None, Some(name)) => VmSpec::named(name),
            (None, None) => anyhow::bail!("give --spec FILE or --name NAME"),
        };
        if let Some(v) = &self.name {
            spec.name = v.clone();
        }
        if let Some(v) = &self.lab {
            spec.lab = v.clone();
        }
        if let Some(v) = &self.image {
            spec.image = v.clone();
        }
        if let Some(v) = &self.hostname {
            spec.hostname = Some(v.clone());
        }
        if let Some(v) = self.memory {
            spec.resources.memory = Some(v);
        }
        if let Some(v) = self.cpus {
            spec.resources.cpus = Some(v);
        }
        if let Some(v) = self.pids {
            spec.resources.pids = Some(v);
        }
        if let Some(v) = &self.run_dir {
            spec.run_dir = Some(v.clone());
        }
        spec.commands.extend(self.commands.iter().cloned());
        if self.faults {
            spec.faults = true;
        }
        Ok(spec)
    }
}

/// `vm-monitor run`: boots (before any thread exists), then serves until
/// SIGTERM/SIGINT or a Shutdown request.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let spec = args.spec()?;
    if args.show_config {
        print!("{}", toml::to_string(&spec)?);
        return Ok(());
    }
    let restart = spec.restart;
    let booted = crate::vm::boot(spec).context("cannot start the VM")?;
    // Sockets the monitor makes from now on are its own (the guest init
    // and the reaper were forked with the usual umask).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("async runtime")?;
    let ended = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        crate::vm::run(booted, stop, |_| {
            crate::sys::release_free_heap();
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        })
        .await
        .context("the VM failed")
    })?;
    drop(rt);
    use crate::vm::Ended;
    let again = match ended {
        Ended::Rebooted => true,
        Ended::GuestExited => restart != RestartPolicy::Never,
        Ended::Stopped | Ended::PoweredOff => false,
    };
    if again {
        // Boot again from a clean process image: the boot must run before
        // any thread exists, and exec ends every thread. The PID stays.
        tracing::warn!("booting the VM again ({ended:?}, restart {restart:?})");
        use std::os::unix::process::CommandExt;
        // The mask survives exec; the new monitor blocks SIGCHLD again
        // when its tracer starts.
        let _ = crate::sys::block_sigchld(false);
        let err = std::process::Command::new("/proc/self/exe")
            .args(std::env::args_os().skip(1))
            .exec();
        return Err(err).context("re-executing the monitor to restart the VM");
    }
    Ok(())
}

/// Runs `f` with a client of the VM's API socket `api`, on a runtime of
/// its own (the CLI's commands are one call or one stream each).
fn with_client<T>(
    api: &std::path::Path,
    f: impl AsyncFnOnce(crate::client::MonitorClient) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("async runtime")?;
    rt.block_on(async {
        let client = crate::client::connect(api)
            .await
            .with_context(|| format!("connecting to {}", api.display()))?;
        f(client).await
    })
}

/// `vm-monitor exec`: streams stdin to the command and its output back;
/// returns its exit code.
pub fn exec(args: ExecArgs) -> anyhow::Result<i32> {
    with_client(&args.api, async |mut client| {
        crate::client::exec_stdio(&mut client, &args.argv, args.tty)
            .await
            .context("exec")
    })
}

/// `vm-monitor fault`.
#[derive(Debug, Args)]
pub struct FaultArgs {
    /// The VM's API socket.
    #[arg(long)]
    pub api: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: FaultAction,
}

/// `vm-monitor fault add|ls|rm`.
#[derive(Debug, Subcommand)]
pub enum FaultAction {
    /// Add a rule; prints its id.
    Add(FaultAdd),
    /// List the rules with their counters, and the faultable syscalls.
    Ls,
    /// Remove a rule by id.
    Rm {
        /// The rule's id.
        id: u64,
    },
}

/// A rule, as flags.
#[derive(Debug, Args)]
pub struct FaultAdd {
    /// The syscall ("sendto").
    #[arg(long)]
    pub syscall: String,
    /// Only processes with this command name (/proc/PID/comm).
    #[arg(long)]
    pub command: Option<String>,
    /// Only this guest PID.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Fire with this probability (0 < p <= 1; "30%" works too).
    #[arg(long)]
    pub probability: Option<String>,
    /// Fire on every Nth matching call.
    #[arg(long)]
    pub every: Option<u64>,
    /// Fire only after the first N matching calls.
    #[arg(long)]
    pub after: Option<u64>,
    /// Only for this long after being added ("500ms", "10s", "2m").
    #[arg(long = "for")]
    pub duration: Option<String>,
    /// Fail the syscall with this errno (name or number).
    #[arg(long)]
    pub errno: Option<String>,
    /// Delay the syscall ("100ms", "1s").
    #[arg(long)]
    pub delay: Option<String>,
    /// Deliver this signal to the caller ("SIGSEGV", "11").
    #[arg(long)]
    pub signal: Option<String>,
}

fn parse_ms(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("invalid duration {text:?} (examples: 500ms, 10s, 2m)"))?;
    anyhow::ensure!(v >= 0.0, "negative duration {text:?}");
    Ok((v * scale).round() as u64)
}

fn parse_signal(text: &str) -> anyhow::Result<i32> {
    if let Ok(n) = text.parse::<i32>() {
        return Ok(n);
    }
    let name = text.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| anyhow::anyhow!("unknown signal {text:?}"))
}

impl FaultAdd {
    /// The rule these flags describe.
    pub fn rule(&self) -> anyhow::Result<vbet_proto::vbet::vm::v1::FaultRule> {
        let probability = match &self.probability {
            None => None,
            Some(p) => Some(
                match p.strip_suffix('%') {
                    Some(pct) => pct.trim().parse::<f64>().map(|v| v / 100.0),
                    None => p.trim().parse::<f64>(),
                }
                .with_context(|| format!("invalid probability {p:?} (examples: 0.3, 30%)"))?,
            ),
        };
        Ok(vbet_proto::vbet::vm::v1::FaultRule {
            syscall: self.syscall.clone(),
            command: self.command.clone().unwrap_or_default(),
            pid: self.pid.unwrap_or(0),
            probability,
            every: self.every.unwrap_or(0),
            after: self.after.unwrap_or(0),
            duration_ms: self
                .duration
                .as_deref()
                .map(parse_ms)
                .transpose()?
                .unwrap_or(0),
            error_number: self
                .errno
                .as_deref()
                .map(crate::fault::parse_errno)
                .transpose()
                .map_err(anyhow::Error::msg)?
                .unwrap_or(0),
            delay_ms: self
                .delay
                .as_deref()
                .map(parse_ms)
                .transpose()?
                .unwrap_or(0),
            signal: self
                .signal
                .as_deref()
                .map(parse_signal)
                .transpose()?
                .unwrap_or(0),
            ..Default::default()
        })
    }
}

/// One rule on one line.
pub fn describe_rule(r: &vbet_proto::vbet::vm::v1::FaultRule) -> String {
    let mut words = vec![format!("{:>3}  {}", r.id, r.syscall)];
    if !r.command.is_empty() {
        words.push(format!("command={}", r.command));
    }
    if r.pid != 0 {
        words.push(format!("pid={}", r.pid));
    }
    if let Some(p) = r.probability {
        words.push(format!("p={p}"));
    }
    if r.every != 0 {
        words.push(format!("every={}", r.every));
    }
    if r.after != 0 {
        words.push(format!("after={}", r.after));
    }
    if r.duration_ms != 0 {
        words.push(format!("for={}ms", r.duration_ms));
    }
    if r.error_number != 0 {
        words.push(format!(
            "errno={}",
            crate::fault::errno_name(r.error_number)
        ));
    }
    if r.delay_ms != 0 {
        words.push(format!("delay={}ms", r.delay_ms));
    }
    if r.signal != 0 {
        words.push(format!("signal={}", r.signal));
    }
    words.push(format!("matched={} fired={}", r.matched, r.fired));
    words.join(" ")
}

/// `vm-monitor fault`.
pub fn fault(args: FaultArgs) -> anyhow::Result<()> {
    use vbet_proto::vbet::vm::v1 as pb;
    with_client(&args.api, async |mut client| {
        match &args.action {
            FaultAction::Add(add) => {
                let rule = client
                    .add_fault(pb::AddFaultRequest {
                        rule: Some(add.rule()?),
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner();
                println!("{}", rule.id);
            }
            FaultAction::Ls => {
                let reply = client
                    .list_faults(pb::ListFaultsRequest {})
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner();
                if reply.faultable.is_empty() {
                    println!("faults are off in this VM (its spec has no `faults = true`)");
                } else {
                    println!("faultable: {}", reply.faultable.join(" "));
                }
                for r in &reply.rules {
                    println!("{}", describe_rule(r));
                }
            }
            FaultAction::Rm { id } => {
                client
                    .remove_fault(pb::RemoveFaultRequest { id: *id })
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod fault_tests {
    use super::*;

    #[test]
    fn durations_signals_and_rules() {
        assert_eq!(parse_ms("500ms").unwrap(), 500);
        assert_eq!(parse_ms("10s").unwrap(), 10_000);
        assert_eq!(parse_ms("2m").unwrap(), 120_000);
        assert!(parse_ms("soon").is_err());
        assert_eq!(parse_signal("segv").unwrap(), libc::SIGSEGV);
        assert_eq!(parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        let add = FaultAdd {
            syscall: "sendto".into(),
            command: None,
            pid: None,
            probability: Some("30%".into()),
            every: None,
            after: None,
            duration: None,
            errno: Some("ENOBUFS".into()),
            delay: None,
            signal: None,
        };
        let r = add.rule().unwrap();
        assert_eq!(r.probability, Some(0.3));
        assert_eq!(r.error_number, libc::ENOBUFS);
    }
}

/// `vm-monitor trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The VM's API socket.
    #[arg(long)]
    pub api: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: TraceAction,
}

/// `vm-monitor trace on|off|stream`.
#[derive(Debug, Subcommand)]
pub enum TraceAction {
    /// Every process of the VM stops at each syscall from now on.
    On,
    /// Back to stops at fork, exec and exit only.
    Off,
    /// Print traced syscalls as they end, one line each, until interrupted.
    Stream,
}

/// One trace event as a line: `PID COMMAND syscall(args) = ret <secs>`.
pub fn format_trace_event(e: &vbet_proto::vbet::vm::v1::TraceEvent) -> String {
    let ret = if e.no_return {
        "?".to_owned()
    } else if e.error.is_empty() {
        e.ret.to_string()
    } else {
        format!("-1 {}", e.error)
    };
    format!(
        "{} {} {}({}) = {} <{:.6}>",
        e.pid,
        e.command,
        e.syscall,
        e.args,
        ret,
        e.duration_ns as f64 / 1e9
    )
}

/// Prints a trace stream to stdout until it ends: strace-like lines
/// ([`format_trace_event`]), or JSON lines with `json`; a note where
/// events were lost (in JSON, each line's `dropped`). A closed stdout
/// (`| head`) ends it quietly.
pub async fn print_trace(
    mut stream: tonic::Streaming<vbet_proto::vbet::vm::v1::TraceBatch>,
    json: bool,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut dropped = 0;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(batch) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
    {
        if batch.dropped > dropped && !json {
            writeln!(
                out,
                "... {} events dropped (reading too slowly)",
                batch.dropped - dropped
            )?;
        }
        dropped = dropped.max(batch.dropped);
        for e in &batch.events {
            if json {
                let line = serde_json::json!({"time_us": e.time_us, "vm": e.vm,
                    "pid": e.pid, "host_pid": e.host_pid, "command": e.command,
                    "syscall": e.syscall, "args": e.args, "ret": e.ret,
                    "error": e.error, "duration_ns": e.duration_ns,
                    "no_return": e.no_return, "dropped": dropped});
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "{}", format_trace_event(e))?;
            }
        }
        if out.flush().is_err() {
            break;
        }
    }
    Ok(())
}

/// `vm-monitor trace`.
pub fn trace(args: TraceArgs) -> anyhow::Result<()> {
    use vbet_proto::vbet::vm::v1 as pb;
    with_client(&args.api, async |mut client| {
        let state = |s: pb::TraceState| {
            println!(
                "tracing {} ({} syscalls traced, {} events dropped by slow clients)",
                if s.on { "on" } else { "off" },
                s.events,
                s.dropped
            );
        };
        match args.action {
            TraceAction::On => state(
                client
                    .trace_on(pb::TraceOnRequest {})
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner(),
            ),
            TraceAction::Off => state(
                client
                    .trace_off(pb::TraceOffRequest {})
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner(),
            ),
            TraceAction::Stream => {
                let stream = client
                    .trace(pb::TraceRequest {})
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner();
                print_trace(stream, false).await?;
            }
        }
        Ok(())
    })
}

/// `vm-monitor clock`.
#[derive(Debug, Args)]
pub struct ClockArgs {
    /// The VM's API socket.
    #[arg(long)]
    pub api: PathBuf,
    /// Set CLOCK_REALTIME in the guest to the host's plus this many
    /// seconds.
    #[arg(long, allow_negative_numbers = true)]
    pub offset: Option<f64>,
    /// Guest seconds per host second, for every clock (0.001..=1000).
    #[arg(long)]
    pub rate: Option<f64>,
}

/// `vm-monitor clock`: prints the clock (after the change, if any).
pub fn clock(args: ClockArgs) -> anyhow::Result<()> {
    use vbet_proto::vbet::vm::v1 as pb;
    with_client(&args.api, async |mut client| {
        let state = if args.offset.is_some() || args.rate.is_some() {
            client
                .set_clock(pb::SetClockRequest {
                    realtime_offset: args.offset,
                    rate: args.rate,
                })
                .await
        } else {
            client.get_clock(pb::GetClockRequest {}).await
        }
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
        if state.enabled {
            println!(
                "virtual clock: realtime offset {:+.3} s, rate {}",
                state.realtime_offset, state.rate
            );
        } else {
            println!(
                "no virtual clock: the guest's clocks are the host's (and its time namespace's)"
            );
        }
        Ok(())
    })
}
