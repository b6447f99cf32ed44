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
    let mut sources = Sources::default();
    sources.add(path.display().to_string(), text);
    let mut problems = Vec::new();
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let topo = match format {
        Format::Vbet => {
            let ev = eval::eval_file(&mut sources, path, &mut problems);
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
