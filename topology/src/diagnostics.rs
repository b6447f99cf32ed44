//! Problems found in a topology, where they are, and how they are shown:
//! every problem names its file, line and column and, through miette,
//! shows the source line with the culprit underlined.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};
use thiserror::Error;

/// A byte range in one of the loaded files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Index of the file in [`Sources`].
    pub file: u32,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span of file `file` from byte `start` to `end`.
    pub fn new(file: u32, start: usize, end: usize) -> Self {
        Span {
            file,
            start,
            end: end.max(start),
        }
    }

    /// The smallest span covering both (same file assumed).
    pub fn to(self, other: Span) -> Span {
        Span::new(
            self.file,
            self.start.min(other.start),
            self.end.max(other.end),
        )
    }
}

/// What went wrong. Messages are sentence case; `help` says what to do.
#[derive(Debug, Clone, PartialEq, Error)]
#[allow(missing_docs)] // Each variant's message documents it.
pub enum ErrorKind {
    #[error("unexpected character `{0}`")]
    UnexpectedChar(char),
    #[error("`{0}` is not a number this language can hold")]
    BadNumber(String),
    #[error("string is not closed before the end of the line")]
    UnterminatedString,
    #[error("unknown escape `\\{0}` in string")]
    BadEscape(char),
    #[error("`${{` is not closed by `}}` on the same line")]
    UnterminatedInterpolation,
    #[error("a heredoc needs a marker: <<EOF or <<'EOF'")]
    BadHeredoc,
    #[error("heredoc is never closed by a line holding `{0}`")]
    UnterminatedHeredoc(String),
    #[error("expected {expected}, found {found}")]
    Expected { expected: String, found: String },
    #[error("expressions are nested too deeply")]
    TooDeep,
    #[error("unknown name `{name}`")]
    UnknownName {
        name: String,
        suggestion: Option<String>,
    },
    #[error("unknown function `{name}`")]
    UnknownFunction {
        name: String,
        suggestion: Option<String>,
    },
    #[error("unknown kind `{name}`")]
    UnknownKind {
        name: String,
        suggestion: Option<String>,
    },
    #[error("unknown attribute `{attr}` for {target}")]
    UnknownAttribute {
        attr: String,
        target: String,
        suggestion: Option<String>,
    },
    #[error("bad value for `{attr}`: {message}")]
    BadValue { attr: String, message: String },
    #[error("expected {expected}, found {found}")]
    WrongType { expected: String, found: String },
    #[error("{func}(): {message}")]
    WrongArgs { func: String, message: String },
    #[error("{device} has no NIC {index}: it has {count}")]
    NicIndex {
        device: String,
        index: i64,
        count: usize,
    },
    #[error("{device} has no free NIC: all {count} have a cable")]
    NoFreeNic { device: String, count: usize },
    #[error("cable {cable} would get a third end: it is already plugged into {first} and {second}")]
    CableThreeEnds {
        cable: String,
        first: String,
        second: String,
    },
    #[error("cable {cable} is plugged into {nic} twice")]
    CablePluggedTwice { cable: String, nic: String },
    #[error("{nic} is already on cable {cable}")]
    NicTwoCables { nic: String, cable: String },
    #[error("this NIC is already attached to {device}")]
    NicAttachedTwice { device: String },
    #[error("a NIC made by alloc(NIC) must be attached to a node or switch before use")]
    NicNotAttached,
    #[error("`{name}` already names {what}")]
    DuplicateName { name: String, what: String },
    #[error("{switch} has {needed} ports but at most {max}")]
    PortsExceeded {
        switch: String,
        max: u32,
        needed: usize,
    },
    #[error("cable {cable} has {ends} of its two ends plugged")]
    CableUnplugged { cable: String, ends: usize },
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    #[error("{path} is included from itself")]
    IncludeCycle { path: String },
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Arithmetic(String),
    #[error("address {addr} is used twice: on {first} and on {second}")]
    DuplicateAddress {
        addr: String,
        first: String,
        second: String,
    },
    #[error("{node}: subnets of {a} and {b} overlap")]
    OverlappingSubnets { node: String, a: String, b: String },
    #[error("{node}: gateway {gateway} is on none of its subnets")]
    GatewayUnreachable { node: String, gateway: String },
    #[error("{node} has two {family} gateways")]
    GatewayTwice { node: String, family: String },
    #[error("file {path} for {node} does not exist ({message})")]
    FileMissing {
        node: String,
        path: String,
        message: String,
    },
    #[error("{message}")]
    Invalid { message: String },
    #[error("{0}")]
    Format(String),
}

impl ErrorKind {
    /// A short code naming the kind of problem.
    pub fn code(&self) -> &'static str {
        use ErrorKind::*;
        match self {
            UnexpectedChar(_)
            | BadNumber(_)
            | UnterminatedString
            | BadEscape(_)
            | UnterminatedInterpolation
            | BadHeredoc
            | UnterminatedHeredoc(_) => "vbet::lex",
            Expected { .. } | TooDeep => "vbet::syntax",
            UnknownName { .. } | UnknownFunction { .. } | UnknownKind { .. } => {
                "vbet::unknown_name"
            }
            UnknownAttribute { .. } => "vbet::unknown_attribute",
            BadValue { .. } | WrongType { .. } | WrongArgs { .. } => "vbet::bad_value",
            NicIndex { .. } | NoFreeNic { .. } | NicAttachedTwice { .. } | NicNotAttached => {
                "vbet::nic"
            }
            CableThreeEnds { .. }
            | CablePluggedTwice { .. }
            | NicTwoCables { .. }
            | CableUnplugged { .. } => "vbet::cable",
            DuplicateName { .. } => "vbet::duplicate_name",
            PortsExceeded { .. } => "vbet::ports",
            Io { .. } | IncludeCycle { .. } => "vbet::include",
            Limit(_) | Arithmetic(_) => "vbet::eval",
            DuplicateAddress { .. }
            | OverlappingSubnets { .. }
            | GatewayUnreachable { .. }
            | GatewayTwice { .. } => "vbet::address",
            FileMissing { .. } => "vbet::file",
            Invalid { .. } => "vbet::invalid",
            Format(_) => "vbet::format",
        }
    }

    /// What the user might do about it.
    pub fn help(&self) -> Option<String> {
        use ErrorKind::*;
        match self {
            UnknownName { suggestion: Some(s), .. }
            | UnknownFunction { suggestion: Some(s), .. }
            | UnknownKind { suggestion: Some(s), .. }
            | UnknownAttribute { suggestion: Some(s), .. } => Some(format!("did you mean `{s}`?")),
            UnknownKind { .. } => Some(
                "built-in kinds are host, router, firewall, switch, hub, NIC and cable; define others with kind()".into(),
            ),
            NicIndex { device, .. } => Some(format!(
                "NICs count from 1; give {device} more with attach(..., alloc(NIC)) or alloc(..., nics=N)"
            )),
            NoFreeNic { device, .. } => Some(format!("attach another alloc(NIC) to {device}")),
            CableThreeEnds { .. } => Some("a cable has two ends; alloc another cable".into()),
            NicTwoCables { .. } => Some("use NIC(x) for the next free NIC, or attach another".into()),
            PortsExceeded { .. } => Some("raise ports=, or add a second switch".into()),
            CableUnplugged { .. } => Some("plug both ends, or drop the cable".into()),
            OverlappingSubnets { .. } => Some("each NIC of a node needs a subnet of its own".into()),
            GatewayUnreachable { .. } => Some("give the node an address on the gateway's subnet".into()),
            FileMissing { .. } => Some("file paths are relative to the topology file's directory".into()),
            _ => None,
        }
    }
}

/// A problem and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Where; `None` when no place in a file fits (or the file is a TOML/YAML
    /// one and the culprit could not be found in it).
    pub span: Option<Span>,
    /// Other places that explain it ("first defined here").
    pub notes: Vec<(Span, String)>,
}

impl Problem {
    /// A problem at `span`.
    pub fn new(kind: ErrorKind, span: Span) -> Self {
        Problem {
            kind,
            span: Some(span),
            notes: Vec::new(),
        }
    }

    /// A problem with no place.
    pub fn nowhere(kind: ErrorKind) -> Self {
        Problem {
            kind,
            span: None,
            notes: Vec::new(),
        }
    }

    /// Adds a note at another place.
    pub fn note(mut self, span: Span, text: impl Into<String>) -> Self {
        self.notes.push((span, text.into()));
        self
    }
}

/// One loaded file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Its path as the user wrote it.
    pub name: String,
    /// Its text.
    pub text: Arc<str>,
}

/// The files a topology was read from; spans index into them.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The files, by index.
    pub files: Vec<SourceFile>,
}

impl Sources {
    /// Adds a file and returns its index.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<Arc<str>>) -> u32 {
        self.files.push(SourceFile {
            name: name.into(),
            text: text.into(),
        });
        (self.files.len() - 1) as u32
    }

    /// Line and column (both from 1, column in characters) of byte `offset` of file `file`.
    pub fn line_col(&self, file: u32, offset: usize) -> (usize, usize) {
        let Some(f) = self.files.get(file as usize) else {
            return (0, 0);
        };
        let mut offset = offset.min(f.text.len());
        while !f.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &f.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// Turns problems into reportable errors.
    pub fn locate(&self, problems: Vec<Problem>) -> Errors {
        let errors = problems.into_iter().map(|p| self.locate_one(p)).collect();
        let file = self
            .files
            .first()
            .map(|f| f.name.clone())
            .unwrap_or_default();
        Errors { file, errors }
    }

    fn locate_one(&self, p: Problem) -> Error {
        let (file, place) = match p.span {
            Some(s) if (s.file as usize) < self.files.len() => {
                let (line, column) = self.line_col(s.file, s.start);
                (Some(&self.files[s.file as usize]), Some((s, line, column)))
            }
            _ => (self.files.first(), None),
        };
        let fix = |s: &Span, text: &str| {
            let len = text.len();
            let start = s.start.min(len);
            (start, s.end.min(len).saturating_sub(start))
        };
        let labels = match (file, place) {
            (Some(f), Some((s, _, _))) => {
                let mut labels = vec![(fix(&s, &f.text), None)];
                for (ns, text) in &p.notes {
                    if ns.file == s.file {
                        labels.push((fix(ns, &f.text), Some(text.clone())));
                    }
                }
                labels
            }
            _ => Vec::new(),
        };
        Error {
            file: file.map(|f| f.name.clone()).unwrap_or_default(),
            line: place.map_or(0, |p| p.1),
            column: place.map_or(0, |p| p.2),
            src: file.map(|f| NamedSource::new(f.name.clone(), f.text.clone())),
            labels,
            kind: p.kind,
        }
    }
}

/// One error, located and ready to show.
#[derive(Debug)]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The file it is in.
    pub file: String,
    /// Line, from 1 (0 = unknown).
    pub line: usize,
    /// Column in characters, from 1 (0 = unknown).
    pub column: usize,
    src: Option<NamedSource<Arc<str>>>,
    labels: Vec<((usize, usize), Option<String>)>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for Error {}

impl Diagnostic for Error {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.kind.code()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.kind
            .help()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        if self.labels.is_empty() {
            return None;
        }
        self.src.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().map(|((start, len), text)| {
            LabeledSpan::new_with_span(text.clone(), SourceSpan::from((*start, *len)))
        })))
    }
}

/// Every error found in a topology: all are reported, not just the first.
#[derive(Debug, Default)]
pub struct Errors {
    /// The topology file that was loaded (errors may be in files it includes).
    pub file: String,
    /// The errors in the order found.
    pub errors: Vec<Error>,
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        let file = &self.file;
        write!(
            f,
            "{n} error{} in topology {file}",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Errors {}

impl Diagnostic for Errors {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.errors.iter().map(|e| e as &dyn Diagnostic)))
    }
}

impl Errors {
    /// Renders every error as text: `file:line:column: message`, then the
    /// source line with the culprit marked, then help. `color` picks
    /// miette's fancy Unicode/colour output instead of plain ASCII carets.
    pub fn render(&self, color: bool) -> String {
        let handler = if color {
            miette::GraphicalReportHandler::new()
        } else {
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::none())
        };
        let mut out = String::new();
        for e in &self.errors {
            if e.line > 0 {
                out.push_str(&format!(
                    "{}:{}:{}: error: {}\n",
                    e.file, e.line, e.column, e.kind
                ));
            } else {
                out.push_str(&format!("{}: error: {}\n", e.file, e.kind));
            }
            let _ = handler.render_report(&mut out, e);
            out.push('\n');
        }
        out.push_str(&format!("{self}\n"));
        out
    }

    /// Whether any error is of a kind matching `pred` (for tests and tools).
    pub fn any(&self, pred: impl Fn(&ErrorKind) -> bool) -> bool {
        self.errors.iter().any(|e| pred(&e.kind))
    }
}

/// The candidate closest to `name` by edit distance, if close enough to be a likely typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, c.len().abs_diff(name.len()), c.len()))
        .map(|(_, c)| c.to_string())
}

/// Edit distance between two strings, by characters: insertions,
/// deletions, substitutions and swaps of neighbours each cost one
/// (optimal string alignment), so `hots` is one edit from `host`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(edit_distance("switchl", "switch1"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("hots", "host"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            suggest("swtch1", ["switch1", "host1"]),
            Some("switch1".into())
        );
        assert_eq!(suggest("zzz", ["switch1", "host1"]), None);
    }

    #[test]
    fn line_and_column() {
        let mut s = Sources::default();
        s.add("t.vbet", "ab\ncdé\nf");
        assert_eq!(s.line_col(0, 0), (1, 1));
        assert_eq!(s.line_col(0, 4), (2, 2));
        assert_eq!(s.line_col(0, 8), (3, 1));
    }
}
