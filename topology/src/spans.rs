//! Where the parts of a model came from, so that checks on the model can
//! point at the source: exact spans for `.vbet`, a best-effort search of
//! the text for TOML and YAML.

use std::collections::HashMap;

use crate::diagnostics::Span;

/// A part of the model a problem can be about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A node, switch or hub, by name.
    Device(String),
    /// A NIC or port: device and number from 1.
    Nic(String, u32),
    /// The addresses of a NIC.
    Addr(String, u32),
    /// A node's gateways.
    Gateway(String),
    /// A node's route, by position.
    Route(String, usize),
    /// A node's file, by guest path.
    File(String, String),
    /// A cable, by position in the model.
    Cable(usize),
    /// A user kind, by name.
    Kind(String),
}

/// Spans of model parts.
#[derive(Debug, Clone, Default)]
pub struct SpanMap {
    map: HashMap<Subject, Span>,
}

impl SpanMap {
    /// Records where `subject` came from.
    pub fn insert(&mut self, subject: Subject, span: Span) {
        self.map.insert(subject, span);
    }

    /// Where `subject` came from, if known.
    pub fn get(&self, subject: &Subject) -> Option<Span> {
        self.map.get(subject).copied()
    }
}

/// Finds subjects in a TOML or YAML text by searching for the strings that name them.
pub struct TextLocator<'a> {
    /// The text searched.
    pub text: &'a str,
    /// Its file number.
    pub file: u32,
}

impl TextLocator<'_> {
    fn find(&self, needle: &str, after: usize) -> Option<Span> {
        let at = self.text.get(after..)?.find(needle)? + after;
        Some(Span::new(self.file, at, at + needle.len()))
    }

    fn find_quoted(&self, value: &str, after: usize) -> Option<Span> {
        for q in ['"', '\''] {
            if let Some(s) = self.find(&format!("{q}{value}{q}"), after) {
                return Some(s);
            }
        }
        // YAML allows plain scalars.
        self.find(value, after)
    }

    /// Where the text mentions `subject`, best effort; `hint` is a value to look for
    /// (an address, a path) within or after the subject's own mention.
    pub fn locate(&self, subject: &Subject, hint: Option<&str>) -> Option<Span> {
        let name_at = |n: &str| self.find_quoted(n, 0);
        let base = match subject {
            Subject::Device(n) | Subject::Gateway(n) | Subject::Kind(n) => name_at(n),
            Subject::Nic(n, _)
            | Subject::Addr(n, _)
            | Subject::Route(n, _)
            | Subject::File(n, _) => name_at(n),
            Subject::Cable(i) => {
                let mut at = 0;
                let mut found = None;
                for _ in 0..=*i {
                    found = self.find("cables", at).or_else(|| self.find("- a:", at));
                    at = found?.end;
                }
                found
            }
        };
        match (hint, base) {
            (Some(h), Some(b)) => self.find_quoted(h, b.start).or(Some(b)),
            (Some(h), None) => self.find_quoted(h, 0),
            (None, b) => b,
        }
    }
}
