//! The daemon's configuration: defaults, then a TOML file, then
//! `SWITCHD_*` (or `HUBD_*`) environment variables, then flags.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::{Deserialize, Serialize};

/// Command-line flags. Every setting can also come from the file given
/// with `--config` or from the environment (`SWITCHD_MAX_PORTS=64`).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// Control socket that clients (UML kernels, vde_plug, QEMU, vBET VMs)
    /// connect to. Per-port data sockets are created beside it as CTL.<port>.
    #[arg(long, value_name = "PATH")]
    pub ctl: Option<PathBuf>,
    /// VDE-style switch directory: the control socket is DIR/ctl, so
    /// `vde_plug2tap -s DIR` and `qemu -netdev vde,sock=DIR` work unchanged.
    #[arg(long, short = 's', value_name = "DIR", conflicts_with = "ctl")]
    pub dir: Option<PathBuf>,
    /// Unix socket for the gRPC management API (Switch service, health,
    /// reflection). No API when absent.
    #[arg(long, value_name = "PATH")]
    pub api: Option<PathBuf>,
    /// Most ports at once [default: 256].
    #[arg(long)]
    pub max_ports: Option<u32>,
    /// Most learned MAC addresses; a MAC flood beyond it is flooded, not
    /// learned [default: 4096].
    #[arg(long)]
    pub mac_capacity: Option<usize>,
    /// Seconds before an idle MAC entry is forgotten [default: 100].
    #[arg(long, value_name = "SECONDS")]
    pub mac_aging: Option<u64>,
    /// Largest frame accepted, bytes; larger ones are dropped and counted
    /// [default: 1526, what UML's NIC accepts].
    #[arg(long, value_name = "BYTES")]
    pub max_frame: Option<usize>,
    /// Permissions of the socket files, octal [default: 600; 660 lets a
    /// group in].
    #[arg(long, value_name = "MODE")]
    pub socket_mode: Option<String>,
    /// Log format: plain lines (journald friendly) or JSON [default: plain].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Plug into another switch's control socket (or directory) as a
    /// client: a switch-to-switch cable. Repeatable; reconnects when the
    /// other switch restarts.
    #[arg(long, value_name = "CTL")]
    pub uplink: Vec<PathBuf>,
    /// A trunk to another host over VXLAN (RFC 7348):
    /// LOCAL_ADDR:PORT,REMOTE_ADDR:PORT,VNI becomes a port that sends
    /// every frame to the remote end. Repeatable.
    #[arg(long, value_name = "LOCAL,REMOTE,VNI")]
    pub vxlan: Vec<vbet_port::vxlan::Endpoint>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the merged configuration as TOML and exit.
    #[arg(long)]
    pub show_config: bool,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One plain line per event.
    #[default]
    Plain,
    /// One JSON object per event.
    Json,
}

/// The merged configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Control socket path.
    pub ctl: PathBuf,
    /// gRPC API socket path.
    #[serde(default)]
    pub api: Option<PathBuf>,
    /// Most ports at once.
    pub max_ports: u32,
    /// Most learned MACs.
    pub mac_capacity: usize,
    /// MAC aging, seconds.
    pub mac_aging: u64,
    /// Largest frame, bytes.
    pub max_frame: usize,
    /// Socket file permissions, octal digits.
    pub socket_mode: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Other switches this one plugs into.
    #[serde(default)]
    pub uplinks: Vec<PathBuf>,
    /// VXLAN trunks, each "LOCAL,REMOTE,VNI".
    #[serde(default)]
    pub vxlan: Vec<String>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No control socket was given anywhere.
    #[error("no control socket: give --ctl PATH or --dir DIR (or `ctl` in the config file)")]
    NoControlSocket,
    /// Reading or merging the sources failed.
    #[error("invalid configuration")]
    Load(#[from] config::ConfigError),
    /// The socket mode is not octal permissions.
    #[error("socket mode {0:?} is not octal permissions such as 600 or 660")]
    SocketMode(String),
    /// A limit of zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A VXLAN trunk that does not parse.
    #[error("bad VXLAN trunk")]
    Vxlan(#[from] vbet_port::vxlan::VxlanError),
}

impl Config {
    /// Merges defaults, the config file, the environment (`PREFIX_*`) and
    /// the flags, then checks the result.
    pub fn load(args: &Args, env_prefix: &str) -> Result<Config, ConfigError> {
        let ctl = args
            .dir
            .as_ref()
            .map(|d| d.join("ctl"))
            .or_else(|| args.ctl.clone());
        let path = |p: &Path| p.display().to_string();
        let mut builder = config::Config::builder()
            .set_default("max_ports", 256)?
            .set_default("mac_capacity", 4096)?
            .set_default("mac_aging", 100)?
            .set_default("max_frame", 1526)?
            .set_default("socket_mode", "600")?
            .set_default("log_format", "plain")?;
        if let Some(file) = &args.config {
            builder = builder.add_source(config::File::from(file.as_path()));
        }
        builder = builder
            .add_source(config::Environment::with_prefix(env_prefix))
            .set_override_option("ctl", ctl.as_deref().map(path))?
            .set_override_option("api", args.api.as_deref().map(path))?
            .set_override_option("max_ports", args.max_ports)?
            .set_override_option("mac_capacity", args.mac_capacity.map(|v| v as u64))?
            .set_override_option("mac_aging", args.mac_aging)?
            .set_override_option("max_frame", args.max_frame.map(|v| v as u64))?
            .set_override_option("socket_mode", args.socket_mode.clone())?
            .set_override_option(
                "log_format",
                args.log_format.map(|f| match f {
                    LogFormat::Plain => "plain",
                    LogFormat::Json => "json",
                }),
            )?;
        let merged = builder.build()?;
        if merged.get_string("ctl").is_err() {
            return Err(ConfigError::NoControlSocket);
        }
        let mut config: Config = merged.try_deserialize()?;
        config.uplinks.extend(args.uplink.iter().cloned());
        config
            .vxlan
            .extend(args.vxlan.iter().map(ToString::to_string));
        config.vxlan_trunks()?;
        config.socket_mode()?;
        if config.max_ports == 0 {
            return Err(ConfigError::Zero("max_ports"));
        }
        if config.mac_capacity == 0 {
            return Err(ConfigError::Zero("mac_capacity"));
        }
        Ok(config)
    }

    /// The VXLAN trunks.
    pub fn vxlan_trunks(&self) -> Result<Vec<vbet_port::vxlan::Endpoint>, ConfigError> {
        Ok(self
            .vxlan
            .iter()
            .map(|v| v.parse())
            .collect::<Result<_, _>>()?)
    }

    /// The socket permissions as mode bits.
    pub fn socket_mode(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| ConfigError::SocketMode(self.socket_mode.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sw.toml");
        std::fs::write(&file, "max_ports = 8\nmac_aging = 30\n").unwrap();
        let args = Args::parse_from([
            "switchd",
            "--dir",
            "/run/x",
            "--config",
            file.to_str().unwrap(),
            "--max-ports",
            "16",
        ]);
        let config = Config::load(&args, "SWITCHD_TEST_UNSET").unwrap();
        assert_eq!(config.ctl, PathBuf::from("/run/x/ctl"));
        assert_eq!(config.max_ports, 16);
        assert_eq!(config.mac_aging, 30);
        assert_eq!(config.max_frame, 1526);
        assert_eq!(config.socket_mode().unwrap(), 0o600);
        assert!(config.vxlan_trunks().unwrap().is_empty());
    }

    #[test]
    fn vxlan_trunks_repeat_and_are_checked() {
        let args = Args::parse_from([
            "switchd",
            "--dir",
            "/run/x",
            "--vxlan",
            "127.0.0.1:4790,127.0.0.1:4791,42",
            "--vxlan",
            "0.0.0.0:4792,192.0.2.1:4789,7",
        ]);
        let config = Config::load(&args, "SWITCHD_TEST_UNSET").unwrap();
        let trunks = config.vxlan_trunks().unwrap();
        assert_eq!(trunks.len(), 2);
        assert_eq!(trunks[0].vni, 42);
        assert!(Args::try_parse_from(["switchd", "--vxlan", "127.0.0.1:1,x,1"]).is_err());
    }

    #[test]
    fn missing_ctl_and_bad_values_are_clear_errors() {
        let args = Args::parse_from(["switchd"]);
        let err = Config::load(&args, "SWITCHD_TEST_UNSET").unwrap_err();
        assert!(err.to_string().contains("--ctl"), "{err}");
        let args = Args::parse_from(["switchd", "--ctl", "/x", "--socket-mode", "999"]);
        assert!(matches!(
            Config::load(&args, "SWITCHD_TEST_UNSET"),
            Err(ConfigError::SocketMode(_))
        ));
    }
}
