//! `vbet-topology`: checks a topology file and converts it between formats,
//! until the `vbet` CLI takes this over.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Check and convert vBET topologies (.vbet, .toml, .yaml).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a topology; print a summary, or every error (exit 1).
    Check {
        /// The topology file.
        file: PathBuf,
    },
    /// Print the canonical TOML of a topology.
    Toml {
        /// The topology file.
        file: PathBuf,
    },
    /// Print the canonical YAML of a topology.
    Yaml {
        /// The topology file.
        file: PathBuf,
    },
    /// Print the canonical .vbet of a topology.
    Vbet {
        /// The topology file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (Command::Check { file }
    | Command::Toml { file }
    | Command::Yaml { file }
    | Command::Vbet { file }) = &cli.command;
    match vbet_topology::load(file) {
        Ok(topo) => {
            let text = match cli.command {
                Command::Check { .. } => vbet_topology::summary::summary(&topo),
                Command::Toml { .. } => vbet_topology::to_toml(&topo),
                Command::Yaml { .. } => vbet_topology::to_yaml(&topo),
                Command::Vbet { .. } => vbet_topology::to_vbet(&topo),
            };
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{}", errors.render(std::io::stderr().is_terminal()));
            ExitCode::FAILURE
        }
    }
}
