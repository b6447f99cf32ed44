//! Where a topology's own files come from: the disk, or a set of files
//! sent along with the topology's text (a deploy over the network).
//!
//! A topology refers to other files by paths relative to its own
//! directory: `include "common.vbet"` and `file(path, source = "ospfd.conf")`.
//! [`bundle`](crate::bundle) reads a topology from disk with every such file
//! into a [`Bundle`]; [`load_bundle`](crate::load_bundle) loads it again
//! somewhere else from memory alone, never touching that host's disk.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// A topology's text, its file name and the files it uses, by their path
/// relative to the topology's directory (`sub/x.vbet`, `../common.vbet`;
/// absolute sources keep their absolute path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    /// The topology's file name, as the user gave it (it names the file in
    /// messages, picks the format by extension, and its stem is the
    /// default lab name).
    pub name: String,
    /// The topology's text.
    pub text: String,
    /// Included files and file sources, by relative path.
    pub files: BTreeMap<String, String>,
}

/// The files of a topology loaded from a [`Bundle`], kept with its model so
/// that file sources are read from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSet {
    /// Contents by relative path (see [`Bundle::files`]).
    pub files: BTreeMap<String, String>,
}

/// `path` with `.` and `inner/..` removed, lexically (leading `..` kept).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    out.iter().collect()
}

/// The key of file `full` (the topology's directory `base` joined with a
/// relative path, or an absolute path) in a [`Bundle`]: `full` relative to
/// `base`, climbing with `..` where needed; absolute when `full` is
/// absolute and `base` is not.
pub fn key(base: &Path, full: &Path) -> String {
    let (base, full) = (normalize(base), normalize(full));
    if base.is_absolute() != full.is_absolute() {
        return full.display().to_string();
    }
    let b: Vec<_> = base.components().collect();
    let f: Vec<_> = full.components().collect();
    let common = b.iter().zip(&f).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &f[common..] {
        rel.push(c);
    }
    rel.display().to_string()
}

/// How a load reads the files a topology refers to.
#[derive(Debug)]
pub(crate) enum Access<'a> {
    /// From disk; what was read is recorded (for a bundle).
    Disk(RefCell<BTreeMap<String, String>>),
    /// From memory only.
    Memory(&'a FileSet),
}

impl Access<'_> {
    /// Reads `full`, a path under the topology's directory `base`.
    pub(crate) fn read(&self, base: &Path, full: &Path) -> std::io::Result<String> {
        match self {
            Access::Disk(seen) => {
                let text = std::fs::read_to_string(full)?;
                seen.borrow_mut().insert(key(base, full), text.clone());
                Ok(text)
            }
            Access::Memory(set) => set.files.get(&key(base, full)).cloned().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not among the files sent with the topology",
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_to_the_topology_directory() {
        let k = |b: &str, f: &str| key(Path::new(b), Path::new(f));
        assert_eq!(k("/a/b", "/a/b/c.vbet"), "c.vbet");
        assert_eq!(k("/a/b", "/a/b/./sub/../c.vbet"), "c.vbet");
        assert_eq!(k("/a/b", "/a/b/sub/d.conf"), "sub/d.conf");
        assert_eq!(k("/a/b", "/a/b/../common.vbet"), "../common.vbet");
        assert_eq!(k("examples", "examples/x.vbet"), "x.vbet");
        assert_eq!(k("", "x.vbet"), "x.vbet");
        assert_eq!(k("examples", "/etc/frr/ospfd.conf"), "/etc/frr/ospfd.conf");
        assert_eq!(k("", "../up.vbet"), "../up.vbet");
    }
}
