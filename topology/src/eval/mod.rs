//! Runs a parsed `.vbet` program: allocates nodes, switches, NICs and
//! cables, follows `include`s and loops, applies attributes, and yields the
//! (unresolved) model with a map from model parts back to source spans.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ast::{Attr, BinOp, Call, Expr, ExprKind, Iter, Part, Stmt, Template};
use crate::diagnostics::{ErrorKind, Problem, Sources, Span, suggest};
use crate::model::{
    Cable, Endpoint, FileSpec, Hostfs, Impair, Kind, LinkState, Nic, Node, Port, Ready, Restart,
    Route, Service, Switch, SwitchKind, Topology, VirtualClock,
};
use crate::net::{IfAddr, Mac, Prefix};
use crate::parser;

mod attrs;
mod config;
mod network;
use crate::spans::{SpanMap, Subject};
use crate::units::{ByteSize, Micros, Percent, Rate};

/// The most statements a program may run (loops included), so a typo in a
/// range cannot hang the checker.
const MAX_STEPS: usize = 2_000_000;
/// The most nodes, switches, NICs and cables a program may make.
const MAX_ENTITIES: usize = 1_000_000;
/// The longest string or list a program may build.
const MAX_LEN: usize = 16 << 20;
/// The deepest chain of includes.
const MAX_INCLUDE_DEPTH: usize = 32;

/// The functions of the language.
pub const FUNCTIONS: &[&str] = &[
    "alloc", "attach", "NIC", "plug", "link", "set", "kind", "file", "service", "route", "sysctl",
];

/// Names that cannot be bound: built-in kinds and keywords.
pub const BUILTIN_KINDS: &[&str] = &[
    "host", "router", "firewall", "switch", "hub", "NIC", "cable",
];

/// Attributes of each kind of target.
pub const NODE_ATTRS: &[&str] = &[
    "image",
    "packages",
    "memory",
    "cpus",
    "restart",
    "host",
    "hostfs",
    "gateway",
    "nics",
    "faults",
    "clock",
    "clock_offset",
    "clock_rate",
];
/// Attributes of a switch or hub.
pub const SWITCH_ATTRS: &[&str] = &["ports", "host", "nics"];
/// Attributes of a node's NIC.
pub const NIC_ATTRS: &[&str] = &["addr", "mac", "mtu"];
/// Attributes of a switch or hub port.
pub const PORT_ATTRS: &[&str] = &["vlan", "trunk"];
/// Attributes of a NIC not yet attached (it may go to a node or a switch).
pub const LOOSE_NIC_ATTRS: &[&str] = &["addr", "mac", "mtu", "vlan", "trunk"];
/// Attributes of a cable.
pub const CABLE_ATTRS: &[&str] = &[
    "delay",
    "jitter",
    "loss",
    "duplicate",
    "corrupt",
    "rate",
    "state",
];
/// Attributes of a user kind.
pub const KIND_ATTRS: &[&str] = &["image", "packages", "memory", "cpus", "restart"];

/// A built-in kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    Host,
    Router,
    Firewall,
    Switch,
    Hub,
    Nic,
    Cable,
}

impl Builtin {
    fn from_name(s: &str) -> Option<Builtin> {
        Some(match s {
            "host" => Builtin::Host,
            "router" => Builtin::Router,
            "firewall" => Builtin::Firewall,
            "switch" => Builtin::Switch,
            "hub" => Builtin::Hub,
            "NIC" | "nic" => Builtin::Nic,
            "cable" => Builtin::Cable,
            _ => return None,
        })
    }

    fn node_kind(self) -> Option<&'static str> {
        match self {
            Builtin::Host => Some("host"),
            Builtin::Router => Some("router"),
            Builtin::Firewall => Some("firewall"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KindRef {
    Builtin(Builtin),
    User(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NicRef {
    Loose(usize),
    At(usize, u32),
}

/// A value of the language.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Kind(KindRef),
    Device(usize),
    Nic(NicRef),
    Cable(usize),
    /// What statements like plug() return.
    Unit,
    /// The result of something that already failed (reported once).
    Poison,
}

impl Value {
    fn describe(&self) -> &'static str {
        match self {
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Kind(_) => "a kind",
            Value::Device(_) => "a node or switch",
            Value::Nic(_) => "a NIC",
            Value::Cable(_) => "a cable",
            Value::Unit => "nothing",
            Value::Poison => "an error",
        }
    }
}

enum DeviceBody {
    Node(Box<Node>),
    Switch(Switch),
}

struct Device {
    name: Option<String>,
    span: Span,
    body: DeviceBody,
    /// The cable on each NIC, by index from 0.
    cable_at: Vec<Option<usize>>,
    nic_spans: Vec<Span>,
    file_spans: Vec<(String, Span)>,
    addr_spans: HashMap<u32, Span>,
    gateway_span: Option<Span>,
    route_spans: Vec<Span>,
}

impl Device {
    fn nic_count(&self) -> usize {
        self.cable_at.len()
    }
    fn is_switch(&self) -> bool {
        matches!(self.body, DeviceBody::Switch(_))
    }
}

struct LooseNic {
    span: Span,
    attrs: Vec<(String, Span, Value, Span)>,
    attached: Option<(usize, u32)>,
}

struct CableState {
    name: Option<String>,
    span: Span,
    ends: Vec<(usize, u32, Span)>,
    /// Something already failed on it (its error is reported).
    failed: bool,
    state: LinkState,
    impair: Impair,
}

struct KindState {
    name: Option<String>,
    span: Span,
    kind: Kind,
}

/// What evaluation produced: the model (not yet resolved) and where its parts came from.
pub struct Evaluated {
    /// The model.
    pub topology: Topology,
    /// Spans of the model's parts.
    pub spans: SpanMap,
}

/// Evaluates the `.vbet` file `path` (already added as file 0 of `sources`
/// with text `text`).
pub fn eval_file(sources: &mut Sources, path: &Path, problems: &mut Vec<Problem>) -> Evaluated {
    let disk = crate::files::Access::Disk(Default::default());
    eval_file_with(sources, path, &disk, problems)
}

/// Like [`eval_file`], reading included files through `files`.
pub(crate) fn eval_file_with(
    sources: &mut Sources,
    path: &Path,
    files: &crate::files::Access<'_>,
    problems: &mut Vec<Problem>,
) -> Evaluated {
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut ev = Eval {
        files,
        base_dir: base_dir.clone(),
        sources,
        problems,
        env: HashMap::new(),
        names: HashMap::new(),
        devices: Vec::new(),
        loose: Vec::new(),
        cables: Vec::new(),
        kinds: Vec::new(),
        steps: 0,
        include_stack: vec![path.to_path_buf()],
        rel_dir: PathBuf::new(),
        limit_hit: false,
        entities: 0,
    };
    let text = ev.sources.files[0].text.clone();
    let (stmts, p) = parser::parse(&text, 0);
    ev.problems.extend(p);
    ev.stmts(&stmts);
    let mut out = ev.finish();
    out.topology.base_dir = base_dir;
    out
}

struct Eval<'a> {
    /// Where included files are read from.
    files: &'a crate::files::Access<'a>,
    /// The root file's directory.
    base_dir: PathBuf,
    sources: &'a mut Sources,
    problems: &'a mut Vec<Problem>,
    env: HashMap<String, Value>,
    /// Entity names: name → where first bound.
    names: HashMap<String, Span>,
    devices: Vec<Device>,
    loose: Vec<LooseNic>,
    cables: Vec<CableState>,
    kinds: Vec<KindState>,
    steps: usize,
    include_stack: Vec<PathBuf>,
    /// Directory of the current file relative to the root file's directory.
    rel_dir: PathBuf,
    limit_hit: bool,
    entities: usize,
}

impl Eval<'_> {
    fn err(&mut self, kind: ErrorKind, span: Span) -> Value {
        self.problems.push(Problem::new(kind, span));
        Value::Poison
    }

    fn stmts(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            if self.limit_hit {
                return;
            }
            self.stmt(s);
        }
    }

    fn step(&mut self, span: Span) -> bool {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            if !self.limit_hit {
                self.err(
                    ErrorKind::Limit(format!("the program runs more than {MAX_STEPS} statements")),
                    span,
                );
            }
            self.limit_hit = true;
            return false;
        }
        true
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Assign { name, value } => {
                if !self.step(name.span) {
                    return;
                }
                let v = self.expr(value);
                self.assign(name, v);
            }
            Stmt::Expr(e) => {
                if !self.step(e.span) {
                    return;
                }
                self.expr(e);
            }
            Stmt::For {
                var,
                var_span,
                iter,
                body,
            } => {
                let items = match iter {
                    Iter::Range(a, b) => {
                        let (a, b) = (self.expr(a), self.expr(b));
                        match (a, b) {
                            (Value::Int(a), Value::Int(b)) => {
                                if b.saturating_sub(a) > MAX_STEPS as i64 {
                                    self.err(
                                        ErrorKind::Limit(format!("the range {a}..{b} is too long")),
                                        *var_span,
                                    );
                                    return;
                                }
                                (a..=b).map(Value::Int).collect()
                            }
                            (Value::Poison, _) | (_, Value::Poison) => return,
                            (a, b) => {
                                let found = if matches!(a, Value::Int(_)) { b } else { a };
                                self.err(
                                    ErrorKind::WrongType {
                                        expected: "whole numbers in a range".into(),
                                        found: found.describe().into(),
                                    },
                                    *var_span,
                                );
                                return;
                            }
                        }
                    }
                    Iter::List(e) => match self.expr(e) {
                        Value::List(items) => items,
                        Value::Poison => return,
                        other => {
                            self.err(
                                ErrorKind::WrongType {
                                    expected: "a range a..b or a list".into(),
                                    found: other.describe().into(),
                                },
                                e.span,
                            );
                            return;
                        }
                    },
                };
                for item in items {
                    if self.limit_hit {
                        return;
                    }
                    self.env.insert(var.clone(), item);
                    self.stmts(body);
                }
            }
            Stmt::Include { path, span } => self.include(path, *span),
        }
    }

    fn include(&mut self, path: &Template, span: Span) {
        let Some(rel) = self.template_str(path) else {
            return;
        };
        if self.include_stack.len() >= MAX_INCLUDE_DEPTH {
            self.err(
                ErrorKind::Limit("includes are nested too deeply".into()),
                span,
            );
            return;
        }
        let current = self.include_stack.last().cloned().unwrap_or_default();
        let dir = current.parent().map(Path::to_path_buf).unwrap_or_default();
        let full = dir.join(&rel);
        let canon = full
            .canonicalize()
            .unwrap_or_else(|_| crate::files::normalize(&full));
        if self.include_stack.iter().any(|p| {
            p.canonicalize()
                .unwrap_or_else(|_| crate::files::normalize(p))
                == canon
        }) {
            self.err(ErrorKind::IncludeCycle { path: rel }, span);
            return;
        }
        let text = match self.files.read(&self.base_dir, &full) {
            Ok(t) => t,
            Err(e) => {
                self.err(
                    ErrorKind::Io {
                        path: full.display().to_string(),
                        message: e.to_string(),
                    },
                    span,
                );
                return;
            }
        };
        let file = self.sources.add(full.display().to_string(), text.as_str());
        let (stmts, p) = parser::parse(&text, file);
        self.problems.extend(p);
        let saved_rel = self.rel_dir.clone();
        self.rel_dir = self
            .rel_dir
            .join(Path::new(&rel).parent().unwrap_or(Path::new("")));
        self.include_stack.push(full);
        self.stmts(&stmts);
        self.include_stack.pop();
        self.rel_dir = saved_rel;
    }

    fn assign(&mut self, name: &Template, v: Value) {
        let Some(n) = self.template_str(name) else {
            return;
        };
        let valid = n
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !valid {
            self.err(
                ErrorKind::BadValue {
                    attr: "name".into(),
                    message: format!("`{n}` is not a valid name (letters, digits, _ - .)"),
                },
                name.span,
            );
            return;
        }
        if BUILTIN_KINDS.contains(&n.as_str()) || FUNCTIONS.contains(&n.as_str()) {
            self.err(
                ErrorKind::DuplicateName {
                    name: n,
                    what: "a built-in kind or function".into(),
                },
                name.span,
            );
            return;
        }
        // An entity keeps the first name it is given; a name keeps its entity.
        if let Some(old) = self.env.get(&n) {
            let old_is_entity = matches!(
                old,
                Value::Device(_) | Value::Cable(_) | Value::Kind(KindRef::User(_))
            );
            if old_is_entity && *old != v {
                let first = self.names.get(&n).copied();
                let what = format!("{} made earlier", old.describe());
                let mut p = Problem::new(ErrorKind::DuplicateName { name: n, what }, name.span);
                if let Some(f) = first {
                    p = p.note(f, "first named here");
                }
                self.problems.push(p);
                return;
            }
        }
        let slot = match v {
            Value::Device(d) => Some(&mut self.devices[d].name),
            Value::Cable(c) => Some(&mut self.cables[c].name),
            Value::Kind(KindRef::User(k)) => Some(&mut self.kinds[k].name),
            _ => None,
        };
        if let Some(slot) = slot {
            if slot.is_none() {
                *slot = Some(n.clone());
                self.names.insert(n.clone(), name.span);
            }
        }
        self.env.insert(n, v);
    }

    fn template_str(&mut self, t: &Template) -> Option<String> {
        let mut out = String::new();
        for p in &t.parts {
            if out.len() > MAX_LEN {
                self.err(
                    ErrorKind::Limit(format!("a string longer than {MAX_LEN} bytes")),
                    t.span,
                );
                return None;
            }
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Expr(e) => match self.expr(e) {
                    Value::Int(i) => out.push_str(&i.to_string()),
                    Value::Float(f) => out.push_str(&f.to_string()),
                    Value::Str(s) => out.push_str(&s),
                    Value::Poison => return None,
                    Value::Device(d) if self.devices[d].name.is_some() => {
                        out.push_str(self.devices[d].name.as_deref().unwrap_or_default())
                    }
                    other => {
                        self.err(
                            ErrorKind::WrongType {
                                expected: "a number or string to interpolate".into(),
                                found: other.describe().into(),
                            },
                            e.span,
                        );
                        return None;
                    }
                },
            }
        }
        Some(out)
    }

    fn expr(&mut self, e: &Expr) -> Value {
        match &e.kind {
            ExprKind::Int(i) => Value::Int(*i),
            ExprKind::Float(f) => Value::Float(*f),
            ExprKind::Str(t) => self.template_str(t).map_or(Value::Poison, Value::Str),
            ExprKind::Name(t) => {
                let Some(n) = self.template_str(t) else {
                    return Value::Poison;
                };
                if let Some(v) = self.env.get(&n) {
                    return v.clone();
                }
                if let Some(b) = Builtin::from_name(&n) {
                    return Value::Kind(KindRef::Builtin(b));
                }
                let candidates: Vec<&str> = self
                    .env
                    .keys()
                    .map(String::as_str)
                    .chain(BUILTIN_KINDS.iter().copied())
                    .collect();
                let suggestion = suggest(&n, candidates);
                self.err(
                    ErrorKind::UnknownName {
                        name: n,
                        suggestion,
                    },
                    e.span,
                )
            }
            ExprKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    match self.expr(i) {
                        Value::Poison => return Value::Poison,
                        v => out.push(v),
                    }
                }
                Value::List(out)
            }
            ExprKind::Group(inner) => self.expr(inner),
            ExprKind::Neg(inner) => match self.expr(inner) {
                Value::Int(i) => i.checked_neg().map_or_else(
                    || self.err(ErrorKind::Arithmetic("overflow".into()), e.span),
                    Value::Int,
                ),
                Value::Float(f) => Value::Float(-f),
                Value::Poison => Value::Poison,
                other => self.err(
                    ErrorKind::WrongType {
                        expected: "a number".into(),
                        found: other.describe().into(),
                    },
                    inner.span,
                ),
            },
            ExprKind::Binary(op, l, r) => {
                let (a, b) = (self.expr(l), self.expr(r));
                self.binary(*op, a, b, e.span)
            }
            ExprKind::Call(c) => self.call(c, e.span),
            ExprKind::Error => Value::Poison,
        }
    }

    fn binary(&mut self, op: BinOp, a: Value, b: Value, span: Span) -> Value {
        match (a, b) {
            (Value::Poison, _) | (_, Value::Poison) => Value::Poison,
            (Value::Int(a), Value::Int(b)) => {
                let r = match op {
                    BinOp::Add => a.checked_add(b),
                    BinOp::Sub => a.checked_sub(b),
                    BinOp::Mul => a.checked_mul(b),
                    BinOp::Div => a.checked_div(b),
                    BinOp::Rem => a.checked_rem(b),
                };
                match r {
                    Some(v) => Value::Int(v),
                    None if b == 0 && matches!(op, BinOp::Div | BinOp::Rem) => {
                        self.err(ErrorKind::Arithmetic("division by zero".into()), span)
                    }
                    None => self.err(ErrorKind::Arithmetic("arithmetic overflow".into()), span),
                }
            }
            (Value::Str(a), Value::Str(b)) if op == BinOp::Add && a.len() + b.len() > MAX_LEN => {
                self.err(
                    ErrorKind::Limit(format!("a string longer than {MAX_LEN} bytes")),
                    span,
                )
            }
            (Value::List(a), Value::List(b)) if op == BinOp::Add && a.len() + b.len() > MAX_LEN => {
                self.err(
                    ErrorKind::Limit(format!("a list longer than {MAX_LEN} items")),
                    span,
                )
            }
            (Value::Str(a), Value::Str(b)) if op == BinOp::Add => Value::Str(a + &b),
            (Value::Str(a), Value::Int(b)) if op == BinOp::Add => Value::Str(format!("{a}{b}")),
            (Value::List(mut a), Value::List(b)) if op == BinOp::Add => {
                a.extend(b);
                Value::List(a)
            }
            (a, b) => {
                let (a, b) = (num(&a), num(&b));
                match (a, b) {
                    (Some(a), Some(b)) => Value::Float(match op {
                        BinOp::Add => a + b,
                        BinOp::Sub => a - b,
                        BinOp::Mul => a * b,
                        BinOp::Div => a / b,
                        BinOp::Rem => a % b,
                    }),
                    _ => self.err(
                        ErrorKind::WrongType {
                            expected: "numbers (or strings and lists to join with +)".into(),
                            found: "other values".into(),
                        },
                        span,
                    ),
                }
            }
        }
    }

    fn call(&mut self, c: &Call, span: Span) -> Value {
        if !FUNCTIONS.contains(&c.func.as_str()) {
            let suggestion = suggest(&c.func, FUNCTIONS.iter().copied());
            return self.err(
                ErrorKind::UnknownFunction {
                    name: c.func.clone(),
                    suggestion,
                },
                c.func_span,
            );
        }
        let mut args = Vec::with_capacity(c.args.len());
        let mut poisoned = false;
        for a in &c.args {
            let v = self.expr(a);
            poisoned |= v == Value::Poison;
            args.push((v, a.span));
        }
        let mut attrs = Vec::with_capacity(c.attrs.len());
        for a in &c.attrs {
            let v = self.expr(&a.value);
            poisoned |= v == Value::Poison;
            attrs.push((a, v));
        }
        if poisoned {
            // A cable whose plug failed is not reported again as unplugged.
            for (v, _) in &args {
                if let Value::Cable(c) = v {
                    self.cables[*c].failed = true;
                }
            }
            return Value::Poison;
        }
        match c.func.as_str() {
            "alloc" => self.alloc(c, args, attrs, span),
            "attach" => self.attach(c, args, attrs, span),
            "NIC" | "nic" => self.nic_fn(c, args, attrs, span),
            "plug" => self.plug(c, args, attrs, span),
            "link" => self.link(c, args, attrs, span),
            "set" => {
                let Some((target, tspan)) = self.arity(c, &args, 1, 1, span) else {
                    return Value::Poison;
                };
                self.apply_attrs(&target, tspan, attrs);
                target
            }
            "kind" => self.kind_fn(c, args, attrs, span),
            "file" => self.file_fn(c, args, attrs, span),
            "service" => self.service_fn(c, args, attrs, span),
            "route" => self.route_fn(c, args, attrs, span),
            "sysctl" => self.sysctl_fn(c, args, attrs, span),
            other => {
                let suggestion = suggest(other, FUNCTIONS.iter().copied());
                self.err(
                    ErrorKind::UnknownFunction {
                        name: other.into(),
                        suggestion,
                    },
                    c.func_span,
                )
            }
        }
    }

    /// Checks the positional argument count; returns the first argument.
    fn arity(
        &mut self,
        c: &Call,
        args: &[(Value, Span)],
        min: usize,
        max: usize,
        span: Span,
    ) -> Option<(Value, Span)> {
        if args.len() < min || args.len() > max {
            let want = if min == max {
                format!("{min} argument{}", if min == 1 { "" } else { "s" })
            } else if max == usize::MAX {
                format!("at least {min} arguments")
            } else {
                format!("{min} to {max} arguments")
            };
            self.err(
                ErrorKind::WrongArgs {
                    func: c.func.clone(),
                    message: format!("takes {want} besides key=value ones, got {}", args.len()),
                },
                span,
            );
            return None;
        }
        args.first().cloned()
    }

    fn no_attrs(&mut self, c: &Call, attrs: &[(&Attr, Value)]) -> bool {
        if let Some((a, _)) = attrs.first() {
            self.err(
                ErrorKind::UnknownAttribute {
                    attr: a.key.clone(),
                    target: format!("{}()", c.func),
                    suggestion: None,
                },
                a.key_span,
            );
            return false;
        }
        true
    }

    /// Names unnamed entities, checks loose ends and builds the model.
    fn finish(mut self) -> Evaluated {
        let mut used: std::collections::HashSet<String> =
            self.devices.iter().filter_map(|d| d.name.clone()).collect();
        let mut counters: HashMap<String, usize> = HashMap::new();
        for d in &mut self.devices {
            if d.name.is_none() {
                let base = match &d.body {
                    DeviceBody::Node(n) => n.kind.clone(),
                    DeviceBody::Switch(s) if s.kind == SwitchKind::Hub => "hub".into(),
                    DeviceBody::Switch(_) => "switch".into(),
                };
                let counter = counters.entry(base.clone()).or_insert(0);
                let name = loop {
                    *counter += 1;
                    let candidate = format!("{base}{counter}");
                    if !used.contains(&candidate) && !self.env.contains_key(&candidate) {
                        break candidate;
                    }
                };
                used.insert(name.clone());
                d.name = Some(name);
            }
        }
        let mut spans = SpanMap::default();
        let mut topo = Topology::default();
        for k in std::mem::take(&mut self.kinds) {
            match k.name {
                Some(name) => {
                    spans.insert(Subject::Kind(name.clone()), k.span);
                    topo.kinds.push(Kind { name, ..k.kind });
                }
                None => {
                    self.err(
                        ErrorKind::WrongArgs {
                            func: "kind".into(),
                            message: "a kind needs a name: mykind = kind(host, ...)".into(),
                        },
                        k.span,
                    );
                }
            }
        }
        for l in &self.loose {
            if l.attached.is_none() {
                self.problems
                    .push(Problem::new(ErrorKind::NicNotAttached, l.span));
            }
        }
        let names: Vec<String> = self
            .devices
            .iter()
            .map(|d| d.name.clone().unwrap_or_default())
            .collect();
        for (ci, c) in self.cables.iter().enumerate() {
            if c.ends.len() != 2 {
                if c.failed {
                    continue;
                }
                let cable = c.name.clone().unwrap_or_else(|| format!("#{}", ci + 1));
                self.problems.push(Problem::new(
                    ErrorKind::CableUnplugged {
                        cable,
                        ends: c.ends.len(),
                    },
                    c.span,
                ));
                continue;
            }
            let end = |i: usize| Endpoint {
                device: names[c.ends[i].0].clone(),
                nic: c.ends[i].1,
            };
            spans.insert(Subject::Cable(topo.cables.len()), c.span);
            topo.cables.push(Cable {
                name: c.name.clone(),
                a: end(0),
                b: end(1),
                state: c.state,
                impair: c.impair.clone(),
            });
        }
        for d in self.devices {
            let name = d.name.unwrap_or_default();
            spans.insert(Subject::Device(name.clone()), d.span);
            for (i, s) in d.nic_spans.iter().enumerate() {
                spans.insert(Subject::Nic(name.clone(), i as u32 + 1), *s);
            }
            for (i, s) in d.addr_spans {
                spans.insert(Subject::Addr(name.clone(), i), s);
            }
            for (path, s) in d.file_spans {
                spans.insert(Subject::File(name.clone(), path), s);
            }
            for (i, s) in d.route_spans.iter().enumerate() {
                spans.insert(Subject::Route(name.clone(), i), *s);
            }
            if let Some(s) = d.gateway_span {
                spans.insert(Subject::Gateway(name.clone()), s);
            }
            match d.body {
                DeviceBody::Node(mut n) => {
                    n.name = name;
                    topo.nodes.push(*n);
                }
                DeviceBody::Switch(mut s) => {
                    s.name = name;
                    topo.switches.push(s);
                }
            }
        }
        Evaluated {
            topology: topo,
            spans,
        }
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn as_list(v: Value) -> Vec<Value> {
    match v {
        Value::List(items) => items,
        other => vec![other],
    }
}
