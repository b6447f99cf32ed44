//! The `rootfs-tool` command line: its arguments and what each command does.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::archive;
use crate::build::{self, BuildRequest, Role, Source};
use crate::layer::{Layer, parse_size};
use crate::store::{DEFAULT_STORE, Image, ImageStore, STORE_ENV};

/// Root file system images and per-VM copy-on-write layers for vBET.
#[derive(Debug, Parser)]
#[command(name = "rootfs-tool", version, about)]
pub struct Cli {
    /// The image store directory.
    #[arg(long, global = true, env = STORE_ENV, default_value = DEFAULT_STORE)]
    pub store: PathBuf,
    /// Log more (repeat for even more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from busybox-static or Debian.
    Build {
        /// The new image's name.
        name: String,
        /// `busybox`, `debian` or `debian:SUITE`.
        #[arg(long)]
        from: String,
        /// Extra packages (Debian only), comma separated.
        #[arg(long, value_delimiter = ',')]
        packages: Vec<String>,
        /// A role's packages and sysctls: router, firewall or host (Debian only).
        #[arg(long)]
        role: Option<String>,
        /// Debian mirror (default: the host's apt mirror).
        #[arg(long)]
        mirror: Option<String>,
        /// Debian bootstrap tool: mmdebstrap or debootstrap (default: the
        /// first installed).
        #[arg(long)]
        tool: Option<String>,
        /// Replace an existing image of that name, rebuilding even when
        /// the inputs are unchanged.
        #[arg(long)]
        force: bool,
    },
    /// Import a tar archive (plain, .gz or .zst) as an image.
    Import {
        /// The new image's name.
        name: String,
        /// The archive.
        file: PathBuf,
        /// Replace an existing image of that name.
        #[arg(long)]
        force: bool,
    },
    /// Export an image as a tar archive (.tar, .tar.gz or .tar.zst by name).
    Export {
        /// The image.
        name: String,
        /// The archive to write.
        file: PathBuf,
    },
    /// List the images.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show an image's manifest and users.
    Inspect {
        /// The image.
        name: String,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Remove an image (refused while a VM uses it).
    Rm {
        /// The image.
        name: String,
    },
    /// Check an image's tree against the digest in its manifest.
    Verify {
        /// The image.
        name: String,
    },
    /// Copy-on-write layers of VMs.
    #[command(subcommand)]
    Layer(LayerCommand),
}

/// The layer commands.
#[derive(Debug, Subcommand)]
pub enum LayerCommand {
    /// Create a layer over an image.
    Create {
        /// The layer's directory (created; must be empty).
        dir: PathBuf,
        /// The image below it.
        #[arg(long, default_value = "host")]
        image: String,
        /// Put the layer on a tmpfs of this size (e.g. 64M) instead of disk.
        #[arg(long)]
        tmpfs: Option<String>,
    },
    /// Remove a layer (refused while its overlay is mounted).
    Rm {
        /// The layer's directory.
        dir: PathBuf,
    },
    /// List what a layer changes in its image (A added, M modified, D deleted).
    Diff {
        /// The layer's directory.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a new image of a layer and its image.
    Commit {
        /// The layer's directory.
        dir: PathBuf,
        /// The new image's name.
        name: String,
        /// Replace an existing image of that name.
        #[arg(long)]
        force: bool,
    },
    /// Mount a layer's overlay on a directory (or print its options).
    Mount {
        /// The layer's directory.
        dir: PathBuf,
        /// Where to mount it.
        target: Option<PathBuf>,
    },
}

fn human_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn spinner() -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn image_json(store: &ImageStore, image: &Image) -> serde_json::Value {
    let mut v = serde_json::to_value(&image.manifest).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("rootfs".into(), image.rootfs.display().to_string().into());
        let users = store.users(image.name()).unwrap_or_default();
        obj.insert("users".into(), users.into());
    }
    v
}

/// Aligned table of images.
pub fn image_table(store: &ImageStore, images: &[Image]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "KIND".into(),
        "SIZE".into(),
        "DIGEST".into(),
        "CREATED".into(),
        "USERS".into(),
    ]];
    for i in images {
        let m = &i.manifest;
        let size = if i.is_host() {
            "-".into()
        } else {
            human_size(m.size)
        };
        let users = store.users(i.name()).map(|u| u.len()).unwrap_or(0);
        rows.push([
            m.name.clone(),
            m.kind.to_string(),
            size,
            m.short_digest().to_string(),
            m.created.clone(),
            users.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let store = ImageStore::open(&cli.store)?;
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Build {
            name,
            from,
            packages,
            role,
            mirror,
            tool,
            force,
        } => {
            let source: Source = from.parse()?;
            let mut req = BuildRequest::new(&name, source);
            req.packages = packages;
            req.role = role.as_deref().map(str::parse::<Role>).transpose()?;
            req.mirror = mirror;
            req.tool = tool;
            req.replace = force;
            let pb = spinner();
            let outcome = build::build(&store, &req, &pb);
            pb.finish_and_clear();
            let outcome = outcome.with_context(|| format!("building image {name} failed"))?;
            let m = &outcome.image.manifest;
            let how = if outcome.cached {
                "already built with the same inputs".to_string()
            } else {
                format!("built in {:.2} s", outcome.elapsed.as_secs_f64())
            };
            writeln!(
                stdout,
                "{} {how}: {}, {}",
                m.name,
                human_size(m.size),
                m.digest
            )?;
        }
        Command::Import { name, file, force } => {
            let t = Instant::now();
            let image = archive::import(&store, &name, &file, force)
                .with_context(|| format!("importing {} as image {name} failed", file.display()))?;
            let m = &image.manifest;
            writeln!(
                stdout,
                "{} imported in {:.2} s: {}, {}",
                m.name,
                t.elapsed().as_secs_f64(),
                human_size(m.size),
                m.digest
            )?;
        }
        Command::Export { name, file } => {
            let t = Instant::now();
            let image = archive::export(&store, &name, &file)
                .with_context(|| format!("exporting image {name} to {} failed", file.display()))?;
            writeln!(
                stdout,
                "{} exported to {} in {:.2} s ({})",
                image.name(),
                file.display(),
                t.elapsed().as_secs_f64(),
                image.manifest.digest
            )?;
        }
        Command::List { json } => {
            let images = store.list()?;
            if json {
                let v: Vec<_> = images.iter().map(|i| image_json(&store, i)).collect();
                writeln!(stdout, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                write!(stdout, "{}", image_table(&store, &images))?;
            }
        }
        Command::Inspect { name, json } => {
            let image = store.get(&name)?;
            if json {
                writeln!(
                    stdout,
                    "{}",
                    serde_json::to_string_pretty(&image_json(&store, &image))?
                )?;
            } else {
                write!(stdout, "{}", image.manifest.to_toml()?)?;
                writeln!(
                    stdout,
                    "# rootfs = {:?}",
                    image.rootfs.display().to_string()
                )?;
                writeln!(stdout, "# users = {:?}", store.users(&name)?)?;
            }
        }
        Command::Rm { name } => {
            store.remove(&name)?;
            writeln!(stdout, "removed {name}")?;
        }
        Command::Verify { name } => {
            let v = store.verify(&name)?;
            if !v.ok() {
                anyhow::bail!(
                    "image {name} does not match its manifest: digest {} expected, {} found; rebuild or re-import it",
                    v.expected,
                    v.actual.digest
                );
            }
            writeln!(
                stdout,
                "{name} ok: {} ({} entries)",
                v.actual.digest, v.actual.entries
            )?;
        }
        Command::Layer(cmd) => run_layer(&store, cmd, &mut stdout)?,
    }
    Ok(())
}

fn run_layer(store: &ImageStore, cmd: LayerCommand, stdout: &mut impl Write) -> Result<()> {
    match cmd {
        LayerCommand::Create { dir, image, tmpfs } => {
            let size = tmpfs
                .as_deref()
                .map(parse_size)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let t = Instant::now();
            let layer = Layer::create(store, &image, &dir, size)?;
            writeln!(
                stdout,
                "layer {} over {} created in {:.2} ms",
                layer.dir().display(),
                layer.image(),
                t.elapsed().as_secs_f64() * 1e3
            )?;
        }
        LayerCommand::Rm { dir } => {
            Layer::open(&dir)?.remove()?;
            writeln!(stdout, "removed layer {}", dir.display())?;
        }
        LayerCommand::Diff { dir, json } => {
            let changes = Layer::open(&dir)?.diff()?;
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&changes)?)?;
            } else {
                for c in changes {
                    writeln!(stdout, "{} {}", c.kind.letter(), c.path)?;
                }
            }
        }
        LayerCommand::Commit { dir, name, force } => {
            let t = Instant::now();
            let image = Layer::open(&dir)?
                .commit(store, &name, force)
                .with_context(|| {
                    format!("committing layer {} as image {name} failed", dir.display())
                })?;
            writeln!(
                stdout,
                "{} committed in {:.2} s: {}",
                image.name(),
                t.elapsed().as_secs_f64(),
                image.manifest.digest
            )?;
        }
        LayerCommand::Mount { dir, target } => {
            let layer = Layer::open(&dir)?;
            match target {
                Some(target) => {
                    let o = layer.mount_overlay(&target)?;
                    writeln!(
                        stdout,
                        "mounted on {}: {}",
                        target.display(),
                        o.mount_data()
                    )?;
                }
                None => writeln!(stdout, "{}", layer.overlay_options()?.mount_data())?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_build_with_packages() {
        let cli = Cli::try_parse_from([
            "rootfs-tool",
            "--store",
            "/tmp/s",
            "build",
            "r1",
            "--from",
            "debian:bookworm",
            "--packages",
            "frr,iperf3",
            "--role",
            "router",
        ])
        .unwrap();
        match cli.command {
            Command::Build { packages, role, .. } => {
                assert_eq!(packages, vec!["frr", "iperf3"]);
                assert_eq!(role.as_deref(), Some("router"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
    }

    #[test]
    fn table_is_aligned() {
        let d = tempfile::tempdir().unwrap();
        let store = ImageStore::open(d.path()).unwrap();
        let t = image_table(&store, &store.list().unwrap());
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME  KIND"), "{t}");
        assert!(lines[1].starts_with("host  host"), "{t}");
    }
}
