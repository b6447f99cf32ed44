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
        let err = std::process::Command::new("/proc/self/exe")
            .args(std::env::args_os().skip(1))
            .exec();
        return Err(err).context("re-executing the monitor to restart the VM");
    }
    Ok(())
}

/// `vm-monitor exec`: streams stdin to the command and its output back;
/// returns its exit code.
pub fn exec(args: ExecArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("async runtime")?;
    rt.block_on(async {
        let mut client = crate::client::connect(&args.api)
            .await
            .with_context(|| format!("connecting to {}", args.api.display()))?;
        crate::client::exec_stdio(&mut client, &args.argv, args.tty)
            .await
            .context("exec")
    })
}
