//! The vBET topology language: the paper's alloc/attach/plug/link and its
//! extensions, parsed and validated into a lab model.
//!
//! ```no_run
//! let topo = vbet_topology::load(std::path::Path::new("examples/paper-4.1-ospf.vbet"))
//!     .map_err(|e| eprint!("{}", e.render(true)));
//! ```
//!
//! A `.vbet` file, or a TOML or YAML file of the same [`model`], is read,
//! evaluated ([`eval`]), resolved and checked ([`validate`]); every problem
//! is collected into one [`Errors`] that shows each with its source line.
#![deny(unsafe_code)]

pub mod ast;
pub mod diagnostics;
pub mod eval;
pub mod files;
pub mod lexer;
pub mod model;
pub mod net;
pub mod parser;
pub mod printer;
pub mod spans;
pub mod summary;
pub mod units;
pub mod validate;

use std::path::{Path, PathBuf};

pub use diagnostics::{Error, ErrorKind, Errors};
pub use files::Bundle;
pub use model::Topology;
pub use printer::to_vbet;

use diagnostics::{Problem, Sources, Span};
use spans::{SpanMap, Subject, TextLocator};
use validate::Locate;

/// The languages a topology may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The paper's language, `.vbet`.
    Vbet,
    /// TOML of the model.
    Toml,
    /// YAML of the model.
    Yaml,
}

impl Format {
    /// The format a file name's extension says (`.vbet` when unsure).
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Format::Toml,
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Vbet,
        }
    }
}

/// Reads, evaluates, resolves and checks the topology file at `path`
/// (format by extension). All problems are returned together.
pub fn load(path: &Path) -> Result<Topology, Errors> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, path, Format::from_path(path)),
        Err(e) => {
            let mut sources = Sources::default();
            sources.add(path.display().to_string(), "");
            Err(sources.locate(vec![Problem::nowhere(ErrorKind::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            })]))
        }
    }
}

/// Like [`load`] for text already read; `path` names it in messages, and
/// its directory is where includes and file sources are found.
pub fn load_str(text: &str, path: &Path, format: Format) -> Result<Topology, Errors> {
    load_with(text, path, format, &files::Access::Disk(Default::default()))
}

/// Reads the topology file at `path` like [`load`], and with it every file
/// it uses (includes, file sources), so that it can be loaded elsewhere
/// with [`load_bundle`].
pub fn bundle(path: &Path) -> Result<(Topology, Bundle), Errors> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(_) => return load(path).map(|t| (t, Bundle::default())),
    };
    let access = files::Access::Disk(Default::default());
    let topo = load_with(&text, path, Format::from_path(path), &access)?;
    let files::Access::Disk(seen) = access else {
        unreachable!("the access made above reads from disk")
    };
    let mut files = seen.into_inner();
    let sources = topo
        .nodes
        .iter()
        .flat_map(|n| &n.files)
        .chain(topo.kinds.iter().flat_map(|k| &k.files))
        .filter_map(|f| f.source.as_deref());
    for source in sources {
        let full = source_path(&topo, source);
        let key = files::key(&topo.base_dir, &full);
        if files.contains_key(&key) {
            continue;
        }
        let text = std::fs::read_to_string(&full).map_err(|e| {
            let mut sources = Sources::default();
            sources.add(path.display().to_string(), text.as_str());
            sources.locate(vec![Problem::nowhere(ErrorKind::Io {
                path: full.display().to_string(),
                message: e.to_string(),
            })])
        })?;
        files.insert(key, text);
    }
    let bundle = Bundle {
        name: path.display().to_string(),
        text,
        files,
    };
    Ok((topo, bundle))
}

/// Loads a topology from a [`Bundle`], reading nothing from disk: includes
/// and file sources come from the bundle's files. Messages name the files
/// as the bundle does.
pub fn load_bundle(bundle: &Bundle) -> Result<Topology, Errors> {
    let set = files::FileSet {
        files: bundle.files.clone(),
    };
    let path = Path::new(&bundle.name);
    load_with(
        &bundle.text,
        path,
        Format::from_path(path),
        &files::Access::Memory(&set),
    )
}

fn load_with(
    text: &str,
    path: &Path,
    format: Format,
    access: &files::Access<'_>,
) -> Result<Topology, Errors> {
    let mut sources = Sources::default();
    sources.add(path.display().to_string(), text);
    let mut problems = Vec::new();
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let in_memory = match access {
        files::Access::Memory(set) => Some(std::sync::Arc::new((*set).clone())),
        files::Access::Disk(_) => None,
    };
    let topo = match format {
        Format::Vbet => {
            let mut ev = eval::eval_file_with(&mut sources, path, access, &mut problems);
            ev.topology.files = in_memory;
            finish(ev.topology, &ev.spans, &mut problems)
        }
        Format::Toml | Format::Yaml => {
            let fmt = if format == Format::Toml {
                config::FileFormat::Toml
            } else {
                config::FileFormat::Yaml
            };
            let parsed = config::Config::builder()
                .add_source(config::File::from_str(text, fmt))
                .build()
                .and_then(|c| c.try_deserialize::<Topology>());
            match parsed {
                Ok(mut t) => {
                    t.base_dir = base_dir;
                    t.files = in_memory;
                    let loc = TextLocator { text, file: 0 };
                    finish(t, &loc, &mut problems)
                }
                Err(e) => {
                    problems.push(format_problem(text, &e.to_string()));
                    Topology::default()
                }
            }
        }
    };
    if problems.is_empty() {
        Ok(topo)
    } else {
        Err(sources.locate(problems))
    }
}

/// Resolves kinds and checks the model.
fn finish(mut topo: Topology, loc: &dyn Locate, problems: &mut Vec<Problem>) -> Topology {
    validate::resolve(&mut topo, loc, problems);
    validate::check(&topo, loc, problems);
    topo
}

/// A TOML/YAML error, placed at the field it names when that can be found.
fn format_problem(text: &str, message: &str) -> Problem {
    let kind = ErrorKind::Format(message.to_string());
    // config says "unknown field `x`" or "missing field `x`" or "... for key `a.b`".
    let needle = message
        .split('`')
        .nth(1)
        .map(|s| s.rsplit('.').next().unwrap_or(s).to_string());
    match needle.and_then(|n| text.find(&n).map(|at| (at, n.len()))) {
        Some((at, len)) if len > 0 => Problem::new(kind, Span::new(0, at, at + len)),
        _ => Problem::nowhere(kind),
    }
}

impl Locate for SpanMap {
    fn locate(&self, subject: &Subject, _hint: Option<&str>) -> Option<Span> {
        self.get(subject).or_else(|| match subject {
            Subject::Nic(d, _)
            | Subject::Addr(d, _)
            | Subject::Gateway(d)
            | Subject::Route(d, _)
            | Subject::File(d, _) => self.get(&Subject::Device(d.clone())),
            _ => None,
        })
    }
}

impl Locate for TextLocator<'_> {
    fn locate(&self, subject: &Subject, hint: Option<&str>) -> Option<Span> {
        TextLocator::locate(self, subject, hint)
    }
}

/// The canonical TOML of a topology.
pub fn to_toml(topo: &Topology) -> String {
    toml::to_string(topo).unwrap_or_else(|e| format!("# cannot print as TOML: {e}\n"))
}

/// The canonical YAML of a topology.
pub fn to_yaml(topo: &Topology) -> String {
    serde_yaml_ng::to_string(topo).unwrap_or_else(|e| format!("# cannot print as YAML: {e}\n"))
}

/// The directory a relative file source of `topo` is read from.
pub fn source_path(topo: &Topology, source: &str) -> PathBuf {
    topo.base_dir.join(source)
}

/// The text of file source `source` of `topo`: from the files sent with
/// it when it was loaded from a [`Bundle`], else from disk.
pub fn read_source(topo: &Topology, source: &str) -> std::io::Result<String> {
    let full = source_path(topo, source);
    match &topo.files {
        Some(set) => files::Access::Memory(set).read(&topo.base_dir, &full),
        None => std::fs::read_to_string(full),
    }
}
