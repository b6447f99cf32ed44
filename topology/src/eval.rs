//! Runs a parsed `.vbet` program: allocates nodes, switches, NICs and
//! cables, follows `include`s and loops, applies attributes, and yields the
//! (unresolved) model with a map from model parts back to source spans.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ast::{Attr, BinOp, Call, Expr, ExprKind, Iter, Part, Stmt, Template};
use crate::diagnostics::{ErrorKind, Problem, Sources, Span, suggest};
use crate::model::{
    Cable, Endpoint, FileSpec, Hostfs, Impair, Kind, LinkState, Nic, Node, Port, Ready, Restart,
    Route, Service, Switch, SwitchKind, Topology,
};
use crate::net::{IfAddr, Mac, Prefix};
use crate::parser;
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
    "image", "packages", "memory", "cpus", "restart", "host", "hostfs", "gateway", "nics",
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
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut ev = Eval {
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
        let canon = full.canonicalize().unwrap_or_else(|_| full.clone());
        if self
            .include_stack
            .iter()
            .any(|p| p.canonicalize().unwrap_or_else(|_| p.clone()) == canon)
        {
            self.err(ErrorKind::IncludeCycle { path: rel }, span);
            return;
        }
        let text = match std::fs::read_to_string(&full) {
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
                format!("{min}")
            } else {
                format!("{min} to {max}")
            };
            self.err(
                ErrorKind::WrongArgs {
                    func: c.func.clone(),
                    message: format!(
                        "takes {want} arguments besides key=value ones, got {}",
                        args.len()
                    ),
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

    fn alloc(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        let Some((k, kspan)) = self.arity(c, &args, 1, 1, span) else {
            return Value::Poison;
        };
        let v = match k {
            Value::Kind(KindRef::Builtin(Builtin::Nic | Builtin::Cable)) if !self.grow(span) => {
                Value::Poison
            }
            Value::Kind(KindRef::Builtin(Builtin::Nic)) => {
                self.loose.push(LooseNic {
                    span,
                    attrs: Vec::new(),
                    attached: None,
                });
                Value::Nic(NicRef::Loose(self.loose.len() - 1))
            }
            Value::Kind(KindRef::Builtin(Builtin::Cable)) => {
                self.cables.push(CableState {
                    name: None,
                    span,
                    ends: Vec::new(),
                    failed: false,
                    state: LinkState::Up,
                    impair: Impair::default(),
                });
                Value::Cable(self.cables.len() - 1)
            }
            Value::Kind(KindRef::Builtin(b @ (Builtin::Switch | Builtin::Hub))) => {
                let kind = if b == Builtin::Hub {
                    SwitchKind::Hub
                } else {
                    SwitchKind::Switch
                };
                self.new_device(
                    DeviceBody::Switch(Switch {
                        kind,
                        ..Switch::default()
                    }),
                    span,
                )
            }
            Value::Kind(kr) => {
                let kind = match kr {
                    KindRef::Builtin(b) => b.node_kind().unwrap_or("host").to_string(),
                    KindRef::User(i) => match &self.kinds[i].name {
                        Some(n) => n.clone(),
                        None => {
                            return self.err(
                                ErrorKind::WrongArgs {
                                    func: "alloc".into(),
                                    message: "a kind must be named before use: k = kind(host, ...)"
                                        .into(),
                                },
                                kspan,
                            );
                        }
                    },
                };
                let node = Node {
                    kind,
                    ..Node::default()
                };
                self.new_device(DeviceBody::Node(Box::new(node)), span)
            }
            other => {
                return self.err(
                    ErrorKind::WrongType {
                        expected: "a kind (host, router, switch, NIC, cable, ...)".into(),
                        found: other.describe().into(),
                    },
                    kspan,
                );
            }
        };
        self.apply_attrs(&v, span, attrs);
        v
    }

    /// Counts a new entity; false (reported once) when there are too many.
    fn grow(&mut self, span: Span) -> bool {
        self.entities += 1;
        if self.entities > MAX_ENTITIES {
            if !self.limit_hit {
                self.err(
                    ErrorKind::Limit(format!(
                        "the program makes more than {MAX_ENTITIES} nodes, NICs and cables"
                    )),
                    span,
                );
            }
            self.limit_hit = true;
            return false;
        }
        true
    }

    fn new_device(&mut self, body: DeviceBody, span: Span) -> Value {
        if !self.grow(span) {
            return Value::Poison;
        }
        self.devices.push(Device {
            name: None,
            span,
            body,
            cable_at: Vec::new(),
            nic_spans: Vec::new(),
            file_spans: Vec::new(),
            addr_spans: HashMap::new(),
            gateway_span: None,
            route_spans: Vec::new(),
        });
        Value::Device(self.devices.len() - 1)
    }

    /// Adds a NIC (or port) to device `d`; returns its index from 1.
    fn add_nic(&mut self, d: usize, span: Span) -> u32 {
        self.grow(span);
        let dev = &mut self.devices[d];
        match &mut dev.body {
            DeviceBody::Node(n) => n.nics.push(Nic::default()),
            DeviceBody::Switch(s) => s.ports.push(Port::default()),
        }
        dev.cable_at.push(None);
        dev.nic_spans.push(span);
        dev.cable_at.len() as u32
    }

    fn device_label(&self, d: usize) -> String {
        self.devices[d]
            .name
            .clone()
            .unwrap_or_else(|| match &self.devices[d].body {
                DeviceBody::Node(n) => format!("this {}", n.kind),
                DeviceBody::Switch(s) if s.kind == SwitchKind::Hub => "this hub".into(),
                DeviceBody::Switch(_) => "this switch".into(),
            })
    }

    fn nic_label(&self, d: usize, i: u32) -> String {
        format!("NIC({},{i})", self.device_label(d))
    }

    fn cable_label(&self, c: usize) -> String {
        self.cables[c]
            .name
            .clone()
            .unwrap_or_else(|| format!("#{}", c + 1))
    }

    fn attach(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if !self.no_attrs(c, &attrs) {
            return Value::Poison;
        }
        let Some((target, tspan)) = self.arity(c, &args, 1, usize::MAX, span) else {
            return Value::Poison;
        };
        let Value::Device(d) = target else {
            return self.err(
                ErrorKind::WrongType {
                    expected: "a node or switch to attach NICs to".into(),
                    found: target.describe().into(),
                },
                tspan,
            );
        };
        for (v, s) in args.into_iter().skip(1) {
            match v {
                Value::Nic(NicRef::Loose(l)) => {
                    if let Some((od, _)) = self.loose[l].attached {
                        let device = self.device_label(od);
                        self.err(ErrorKind::NicAttachedTwice { device }, s);
                        continue;
                    }
                    let idx = self.add_nic(d, s);
                    self.loose[l].attached = Some((d, idx));
                    let pending = std::mem::take(&mut self.loose[l].attrs);
                    for (key, kspan, value, vspan) in pending {
                        self.apply_attr(&Value::Nic(NicRef::At(d, idx)), &key, kspan, value, vspan);
                    }
                }
                Value::Nic(NicRef::At(od, _)) => {
                    let device = self.device_label(od);
                    self.err(ErrorKind::NicAttachedTwice { device }, s);
                }
                other => {
                    self.err(
                        ErrorKind::WrongType {
                            expected: "alloc(NIC)".into(),
                            found: other.describe().into(),
                        },
                        s,
                    );
                }
            }
        }
        Value::Device(d)
    }

    /// The next NIC of `d` with no cable; a switch or hub grows a port if none is free.
    fn free_nic(&mut self, d: usize, span: Span) -> Option<u32> {
        if let Some(i) = self.devices[d].cable_at.iter().position(Option::is_none) {
            return Some(i as u32 + 1);
        }
        if self.devices[d].is_switch() {
            return Some(self.add_nic(d, span));
        }
        let device = self.device_label(d);
        let count = self.devices[d].nic_count();
        self.err(ErrorKind::NoFreeNic { device, count }, span);
        None
    }

    fn nic_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if !self.no_attrs(c, &attrs) {
            return Value::Poison;
        }
        let Some((target, tspan)) = self.arity(c, &args, 1, 2, span) else {
            return Value::Poison;
        };
        let Value::Device(d) = target else {
            return self.err(
                ErrorKind::WrongType {
                    expected: "a node, switch or hub".into(),
                    found: target.describe().into(),
                },
                tspan,
            );
        };
        match args.get(1) {
            None => self
                .free_nic(d, span)
                .map_or(Value::Poison, |i| Value::Nic(NicRef::At(d, i))),
            Some((Value::Int(i), ispan)) => {
                let count = self.devices[d].nic_count();
                if *i < 1 || *i as u64 > count as u64 {
                    let device = self.device_label(d);
                    let p = Problem::new(
                        ErrorKind::NicIndex {
                            device,
                            index: *i,
                            count,
                        },
                        *ispan,
                    )
                    .note(self.devices[d].span, "made here");
                    self.problems.push(p);
                    return Value::Poison;
                }
                Value::Nic(NicRef::At(d, *i as u32))
            }
            Some((other, ispan)) => self.err(
                ErrorKind::WrongType {
                    expected: "a NIC number (from 1)".into(),
                    found: other.describe().into(),
                },
                *ispan,
            ),
        }
    }

    /// A NIC from a value: a NIC, or a node's next free NIC, or a switch's next free port.
    fn as_nic(&mut self, v: &Value, span: Span) -> Option<(usize, u32)> {
        match v {
            Value::Nic(NicRef::At(d, i)) => Some((*d, *i)),
            Value::Nic(NicRef::Loose(_)) => {
                self.err(ErrorKind::NicNotAttached, span);
                None
            }
            Value::Device(d) => self.free_nic(*d, span).map(|i| (*d, i)),
            Value::Poison => None,
            other => {
                self.err(
                    ErrorKind::WrongType {
                        expected: "a NIC or a node".into(),
                        found: other.describe().into(),
                    },
                    span,
                );
                None
            }
        }
    }

    fn plug_end(&mut self, c: usize, (d, i): (usize, u32), span: Span) -> bool {
        let ends = &self.cables[c].ends;
        if ends.iter().any(|(ed, ei, _)| (*ed, *ei) == (d, i)) {
            let (cable, nic) = (self.cable_label(c), self.nic_label(d, i));
            self.err(ErrorKind::CablePluggedTwice { cable, nic }, span);
            return false;
        }
        if ends.len() >= 2 {
            let first = self.nic_label(ends[0].0, ends[0].1);
            let second = self.nic_label(ends[1].0, ends[1].1);
            let cable = self.cable_label(c);
            let p = Problem::new(
                ErrorKind::CableThreeEnds {
                    cable,
                    first,
                    second,
                },
                span,
            )
            .note(self.cables[c].ends[0].2, "first end")
            .note(self.cables[c].ends[1].2, "second end");
            self.problems.push(p);
            return false;
        }
        if let Some(other) = self.devices[d].cable_at[(i - 1) as usize] {
            let (nic, cable) = (self.nic_label(d, i), self.cable_label(other));
            let mut p = Problem::new(ErrorKind::NicTwoCables { nic, cable }, span);
            if let Some(e) = self.cables[other]
                .ends
                .iter()
                .find(|e| (e.0, e.1) == (d, i))
            {
                p = p.note(e.2, "plugged here");
            }
            self.problems.push(p);
            return false;
        }
        self.devices[d].cable_at[(i - 1) as usize] = Some(c);
        self.cables[c].ends.push((d, i, span));
        true
    }

    fn plug(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if !self.no_attrs(c, &attrs) || self.arity(c, &args, 2, 2, span).is_none() {
            return Value::Poison;
        }
        let Value::Cable(cable) = args[0].0 else {
            return self.err(
                ErrorKind::WrongType {
                    expected: "a cable".into(),
                    found: args[0].0.describe().into(),
                },
                args[0].1,
            );
        };
        let ok = match self.as_nic(&args[1].0, args[1].1) {
            Some(nic) => self.plug_end(cable, nic, args[1].1),
            None => false,
        };
        self.cables[cable].failed |= !ok;
        Value::Cable(cable)
    }

    fn new_cable(&mut self, span: Span) -> usize {
        self.grow(span);
        self.cables.push(CableState {
            name: None,
            span,
            ends: Vec::new(),
            failed: false,
            state: LinkState::Up,
            impair: Impair::default(),
        });
        self.cables.len() - 1
    }

    fn link(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        let Some((first, fspan)) = self.arity(c, &args, 2, usize::MAX, span) else {
            return Value::Poison;
        };
        if let Value::Device(s) = first {
            if self.devices[s].is_switch() {
                for (v, vspan) in &args[1..] {
                    let Some(end) = self.as_nic(v, *vspan) else {
                        continue;
                    };
                    let Some(port) = self.free_nic(s, *vspan) else {
                        continue;
                    };
                    let cable = self.new_cable(*vspan);
                    if self.plug_end(cable, (s, port), *vspan) && self.plug_end(cable, end, *vspan)
                    {
                        self.apply_attrs(&Value::Cable(cable), *vspan, attrs.clone());
                    } else {
                        // Drop the half-made cable; its error is reported.
                        for (d, i, _) in std::mem::take(&mut self.cables[cable].ends) {
                            self.devices[d].cable_at[(i - 1) as usize] = None;
                        }
                        self.cables.pop();
                    }
                }
                return Value::Device(s);
            }
        }
        if args.len() != 2 {
            return self.err(
                ErrorKind::WrongArgs {
                    func: "link".into(),
                    message:
                        "joins two NICs, or a switch or hub (first) to any number of NICs and nodes"
                            .into(),
                },
                fspan,
            );
        }
        let a = self.as_nic(&args[0].0, args[0].1);
        let b = self.as_nic(&args[1].0, args[1].1);
        let (Some(a), Some(b)) = (a, b) else {
            return Value::Poison;
        };
        let cable = self.new_cable(span);
        if !(self.plug_end(cable, a, args[0].1) && self.plug_end(cable, b, args[1].1)) {
            for (d, i, _) in std::mem::take(&mut self.cables[cable].ends) {
                self.devices[d].cable_at[(i - 1) as usize] = None;
            }
            self.cables.pop();
            return Value::Poison;
        }
        self.apply_attrs(&Value::Cable(cable), span, attrs);
        Value::Cable(cable)
    }

    fn kind_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        let Some((base, bspan)) = self.arity(c, &args, 1, 1, span) else {
            return Value::Poison;
        };
        let base = match base {
            Value::Kind(KindRef::Builtin(b)) if b.node_kind().is_some() => {
                b.node_kind().unwrap_or_default().to_string()
            }
            Value::Kind(KindRef::User(k)) if self.kinds[k].name.is_some() => {
                self.kinds[k].name.clone().unwrap_or_default()
            }
            other => {
                return self.err(
                    ErrorKind::WrongType {
                        expected: "a node kind to extend (host, router, firewall or a named kind)"
                            .into(),
                        found: other.describe().into(),
                    },
                    bspan,
                );
            }
        };
        self.kinds.push(KindState {
            name: None,
            span,
            kind: Kind {
                base,
                ..Kind::default()
            },
        });
        let v = Value::Kind(KindRef::User(self.kinds.len() - 1));
        self.apply_attrs(&v, span, attrs);
        v
    }

    /// The node or kind a file/service/route/sysctl goes to.
    fn config_target(&mut self, v: &Value, span: Span, what: &str) -> Option<Value> {
        match v {
            Value::Device(d) if !self.devices[*d].is_switch() => Some(v.clone()),
            Value::Kind(KindRef::User(_)) if what != "route" => Some(v.clone()),
            Value::Poison => None,
            other => {
                let expected = if what == "route" {
                    "a node"
                } else {
                    "a node or a kind made by kind()"
                };
                self.err(
                    ErrorKind::WrongType {
                        expected: format!("{expected} for {what}()"),
                        found: other.describe().into(),
                    },
                    span,
                );
                None
            }
        }
    }

    fn str_arg(&mut self, v: &(Value, Span), what: &str) -> Option<String> {
        match &v.0 {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) if what == "value" => Some(i.to_string()),
            other => {
                self.err(
                    ErrorKind::WrongType {
                        expected: format!("a string ({what})"),
                        found: other.describe().into(),
                    },
                    v.1,
                );
                None
            }
        }
    }

    fn with_config<R>(&mut self, target: &Value, f: impl FnOnce(ConfigRef<'_>) -> R) -> R {
        match target {
            Value::Device(d) => match &mut self.devices[*d].body {
                DeviceBody::Node(n) => f(ConfigRef {
                    sysctls: &mut n.sysctls,
                    files: &mut n.files,
                    services: &mut n.services,
                }),
                DeviceBody::Switch(_) => unreachable_config(f),
            },
            Value::Kind(KindRef::User(k)) => {
                let kd = &mut self.kinds[*k].kind;
                f(ConfigRef {
                    sysctls: &mut kd.sysctls,
                    files: &mut kd.files,
                    services: &mut kd.services,
                })
            }
            _ => unreachable_config(f),
        }
    }

    fn file_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if self.arity(c, &args, 2, 3, span).is_none() {
            return Value::Poison;
        }
        let Some(target) = self.config_target(&args[0].0, args[0].1, "file") else {
            return Value::Poison;
        };
        let Some(path) = self.str_arg(&args[1], "the path in the node") else {
            return Value::Poison;
        };
        let mut spec = FileSpec {
            path,
            content: None,
            source: None,
            mode: None,
        };
        if let Some(a) = args.get(2) {
            spec.content = self.str_arg(a, "the content");
        }
        for (a, v) in attrs {
            match (a.key.as_str(), v) {
                ("path", Value::Str(s)) => {
                    let p = self.rel_dir.join(&s);
                    spec.source = Some(p.to_string_lossy().into_owned());
                }
                ("mode", Value::Str(s)) => spec.mode = Some(s),
                ("mode", Value::Int(i)) => spec.mode = Some(format!("{i:04}")),
                (k @ ("path" | "mode"), v) => {
                    self.err(
                        ErrorKind::BadValue {
                            attr: k.into(),
                            message: format!("expected a string, found {}", v.describe()),
                        },
                        a.value.span,
                    );
                }
                (k, _) => {
                    let suggestion = suggest(k, ["path", "mode"]);
                    self.err(
                        ErrorKind::UnknownAttribute {
                            attr: k.into(),
                            target: "file()".into(),
                            suggestion,
                        },
                        a.key_span,
                    );
                }
            }
        }
        if spec.content.is_some() == spec.source.is_some() {
            return self.err(
                ErrorKind::WrongArgs {
                    func: "file".into(),
                    message: "give the content (a string or heredoc) or path=\"file\", not both or neither".into(),
                },
                span,
            );
        }
        if let Value::Device(d) = target {
            self.devices[d].file_spans.push((spec.path.clone(), span));
        }
        self.with_config(&target, |c| {
            c.files.retain(|f| f.path != spec.path);
            c.files.push(spec);
        });
        Value::Unit
    }

    fn service_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if self.arity(c, &args, 3, 3, span).is_none() {
            return Value::Poison;
        }
        let Some(target) = self.config_target(&args[0].0, args[0].1, "service") else {
            return Value::Poison;
        };
        let (Some(name), Some(command)) = (
            self.str_arg(&args[1], "the service name"),
            self.str_arg(&args[2], "the command"),
        ) else {
            return Value::Poison;
        };
        let mut svc = Service {
            name,
            command,
            ready: None,
        };
        for (a, v) in attrs {
            match (a.key.as_str(), v) {
                ("ready", Value::Str(s)) => match s.parse::<Ready>() {
                    Ok(r) => svc.ready = Some(r),
                    Err(m) => {
                        self.err(
                            ErrorKind::BadValue {
                                attr: "ready".into(),
                                message: m,
                            },
                            a.value.span,
                        );
                    }
                },
                ("ready", v) => {
                    self.err(
                        ErrorKind::BadValue {
                            attr: "ready".into(),
                            message: format!("expected a string, found {}", v.describe()),
                        },
                        a.value.span,
                    );
                }
                (k, _) => {
                    let suggestion = suggest(k, ["ready"]);
                    self.err(
                        ErrorKind::UnknownAttribute {
                            attr: k.into(),
                            target: "service()".into(),
                            suggestion,
                        },
                        a.key_span,
                    );
                }
            }
        }
        self.with_config(&target, |c| {
            if let Some(s) = c.services.iter_mut().find(|s| s.name == svc.name) {
                *s = svc;
            } else {
                c.services.push(svc);
            }
        });
        Value::Unit
    }

    fn sysctl_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if !self.no_attrs(c, &attrs) || self.arity(c, &args, 3, 3, span).is_none() {
            return Value::Poison;
        }
        let Some(target) = self.config_target(&args[0].0, args[0].1, "sysctl") else {
            return Value::Poison;
        };
        let (Some(k), Some(v)) = (
            self.str_arg(&args[1], "the key"),
            self.str_arg(&args[2], "value"),
        ) else {
            return Value::Poison;
        };
        self.with_config(&target, |c| c.sysctls.insert(k, v));
        Value::Unit
    }

    fn route_fn(
        &mut self,
        c: &Call,
        args: Vec<(Value, Span)>,
        attrs: Vec<(&Attr, Value)>,
        span: Span,
    ) -> Value {
        if self.arity(c, &args, 2, 3, span).is_none() {
            return Value::Poison;
        }
        let Some(Value::Device(d)) = self.config_target(&args[0].0, args[0].1, "route") else {
            return Value::Poison;
        };
        let Some(to) = self.str_arg(&args[1], "the destination prefix") else {
            return Value::Poison;
        };
        let to = match to.parse::<Prefix>() {
            Ok(p) => p,
            Err(m) => {
                return self.err(
                    ErrorKind::BadValue {
                        attr: "to".into(),
                        message: m,
                    },
                    args[1].1,
                );
            }
        };
        let mut route = Route {
            to,
            via: None,
            nic: None,
            metric: None,
        };
        let mut via = args.get(2).cloned();
        for (a, v) in attrs {
            match a.key.as_str() {
                "via" => via = Some((v, a.value.span)),
                "metric" => match v {
                    Value::Int(i) if (0..=u32::MAX as i64).contains(&i) => {
                        route.metric = Some(i as u32)
                    }
                    other => {
                        self.err(
                            ErrorKind::BadValue {
                                attr: "metric".into(),
                                message: format!(
                                    "expected a whole number, found {}",
                                    other.describe()
                                ),
                            },
                            a.value.span,
                        );
                    }
                },
                "nic" => match v {
                    Value::Nic(NicRef::At(nd, i)) if nd == d => route.nic = Some(i),
                    Value::Int(i) if i >= 1 && (i as u64) <= self.devices[d].nic_count() as u64 => {
                        route.nic = Some(i as u32)
                    }
                    _ => {
                        self.err(
                            ErrorKind::BadValue {
                                attr: "nic".into(),
                                message: "expected one of this node's NICs".into(),
                            },
                            a.value.span,
                        );
                    }
                },
                k => {
                    let suggestion = suggest(k, ["via", "metric", "nic"]);
                    self.err(
                        ErrorKind::UnknownAttribute {
                            attr: k.into(),
                            target: "route()".into(),
                            suggestion,
                        },
                        a.key_span,
                    );
                }
            }
        }
        if let Some((v, vspan)) = via {
            match v {
                Value::Str(s) => match s.parse() {
                    Ok(ip) => route.via = Some(ip),
                    Err(_) => {
                        self.err(
                            ErrorKind::BadValue {
                                attr: "via".into(),
                                message: format!("`{s}` is not an IP address"),
                            },
                            vspan,
                        );
                    }
                },
                other => {
                    self.err(
                        ErrorKind::BadValue {
                            attr: "via".into(),
                            message: format!("expected an address, found {}", other.describe()),
                        },
                        vspan,
                    );
                }
            }
        }
        if let DeviceBody::Node(n) = &mut self.devices[d].body {
            n.routes.push(route);
            self.devices[d].route_spans.push(span);
        }
        Value::Unit
    }

    fn apply_attrs(&mut self, target: &Value, _span: Span, attrs: Vec<(&Attr, Value)>) {
        for (a, v) in attrs {
            self.apply_attr(target, &a.key, a.key_span, v, a.value.span);
        }
    }

    fn bad(&mut self, attr: &str, message: impl Into<String>, span: Span) {
        self.err(
            ErrorKind::BadValue {
                attr: attr.into(),
                message: message.into(),
            },
            span,
        );
    }

    fn apply_attr(&mut self, target: &Value, key: &str, kspan: Span, v: Value, vspan: Span) {
        let unknown = |ev: &mut Self, names: &[&str], what: &str| {
            let suggestion = suggest(key, names.iter().copied());
            ev.err(
                ErrorKind::UnknownAttribute {
                    attr: key.into(),
                    target: what.into(),
                    suggestion,
                },
                kspan,
            );
        };
        match target {
            Value::Nic(NicRef::Loose(l)) => {
                if let Some((d, i)) = self.loose[*l].attached {
                    return self.apply_attr(&Value::Nic(NicRef::At(d, i)), key, kspan, v, vspan);
                }
                if !LOOSE_NIC_ATTRS.contains(&key) {
                    return unknown(self, LOOSE_NIC_ATTRS, "a NIC");
                }
                self.loose[*l].attrs.push((key.into(), kspan, v, vspan));
            }
            Value::Nic(NicRef::At(d, i)) => {
                let (d, i) = (*d, *i);
                let idx = (i - 1) as usize;
                match &mut self.devices[d].body {
                    DeviceBody::Node(n) => match key {
                        "addr" => {
                            let mut addrs = Vec::new();
                            for item in as_list(v) {
                                match item {
                                    Value::Str(s) => match s.parse::<IfAddr>() {
                                        Ok(a) => addrs.push(a),
                                        Err(m) => return self.bad("addr", m, vspan),
                                    },
                                    other => {
                                        return self.bad("addr", format!("expected an address like \"10.0.1.1/24\", found {}", other.describe()), vspan);
                                    }
                                }
                            }
                            n.nics[idx].addrs = addrs;
                            self.devices[d].addr_spans.insert(i, vspan);
                        }
                        "mac" => match v {
                            Value::Str(s) => match s.parse::<Mac>() {
                                Ok(m) => n.nics[idx].mac = Some(m),
                                Err(m) => self.bad("mac", m, vspan),
                            },
                            other => self.bad(
                                "mac",
                                format!("expected a string, found {}", other.describe()),
                                vspan,
                            ),
                        },
                        "mtu" => match v {
                            Value::Int(m) if (68..=65535).contains(&m) => {
                                n.nics[idx].mtu = Some(m as u32)
                            }
                            _ => self.bad("mtu", "expected a whole number from 68 to 65535", vspan),
                        },
                        "vlan" | "trunk" => self.bad(
                            key,
                            "VLANs are set on switch ports, not on a node's NIC",
                            kspan,
                        ),
                        _ => unknown(self, NIC_ATTRS, "a NIC"),
                    },
                    DeviceBody::Switch(s) => match key {
                        "vlan" => match v {
                            Value::Int(x) if (1..=4094).contains(&x) => {
                                s.ports[idx].vlan = Some(x as u16)
                            }
                            _ => self.bad("vlan", "expected a VLAN id from 1 to 4094", vspan),
                        },
                        "trunk" => {
                            let mut out = Vec::new();
                            for item in as_list(v) {
                                match item {
                                    Value::Int(x) if (1..=4094).contains(&x) => out.push(x as u16),
                                    _ => {
                                        return self.bad(
                                            "trunk",
                                            "expected VLAN ids from 1 to 4094",
                                            vspan,
                                        );
                                    }
                                }
                            }
                            s.ports[idx].trunk = out;
                        }
                        "addr" | "mac" | "mtu" => self.bad(
                            key,
                            "a switch port has no address; set it on the node's NIC",
                            kspan,
                        ),
                        _ => unknown(self, PORT_ATTRS, "a switch port"),
                    },
                }
            }
            Value::Device(d) => {
                let d = *d;
                if key == "nics" {
                    match v {
                        Value::Int(n) if (0..=4096).contains(&n) => {
                            while (self.devices[d].nic_count() as i64) < n && !self.limit_hit {
                                self.add_nic(d, vspan);
                            }
                        }
                        _ => self.bad("nics", "expected a whole number from 0 to 4096", vspan),
                    }
                    return;
                }
                match &mut self.devices[d].body {
                    DeviceBody::Switch(s) => match key {
                        "ports" => match v {
                            Value::Int(n) if (1..=65535).contains(&n) => {
                                s.max_ports = Some(n as u32)
                            }
                            _ => {
                                self.bad("ports", "expected a whole number from 1 to 65535", vspan)
                            }
                        },
                        "host" => match v {
                            Value::Str(h) => s.host = Some(h),
                            other => self.bad(
                                "host",
                                format!("expected a string, found {}", other.describe()),
                                vspan,
                            ),
                        },
                        _ => unknown(self, SWITCH_ATTRS, "a switch"),
                    },
                    DeviceBody::Node(n) => match key {
                        "host" => match v {
                            Value::Str(h) => n.host = Some(h),
                            other => self.bad(
                                "host",
                                format!("expected a string, found {}", other.describe()),
                                vspan,
                            ),
                        },
                        "hostfs" => {
                            let mut out = Vec::new();
                            for item in as_list(v) {
                                match item {
                                    Value::Str(s) => match s.parse::<Hostfs>() {
                                        Ok(h) => out.push(h),
                                        Err(m) => return self.bad("hostfs", m, vspan),
                                    },
                                    other => {
                                        return self.bad(
                                            "hostfs",
                                            format!(
                                                "expected a string, found {}",
                                                other.describe()
                                            ),
                                            vspan,
                                        );
                                    }
                                }
                            }
                            n.hostfs = out;
                        }
                        "gateway" => {
                            let mut out = Vec::new();
                            for item in as_list(v) {
                                match item {
                                    Value::Str(s) => match s.parse() {
                                        Ok(ip) => out.push(ip),
                                        Err(_) => {
                                            return self.bad(
                                                "gateway",
                                                format!("`{s}` is not an IP address"),
                                                vspan,
                                            );
                                        }
                                    },
                                    other => {
                                        return self.bad(
                                            "gateway",
                                            format!(
                                                "expected an address, found {}",
                                                other.describe()
                                            ),
                                            vspan,
                                        );
                                    }
                                }
                            }
                            n.gateway = out;
                            self.devices[d].gateway_span = Some(vspan);
                        }
                        _ if KIND_ATTRS.contains(&key) => {
                            let mut cfg = CommonRef {
                                image: &mut n.image,
                                packages: &mut n.packages,
                                memory: &mut n.memory,
                                cpus: &mut n.cpus,
                                restart: &mut n.restart,
                            };
                            if let Err(m) = cfg.set(key, v) {
                                self.bad(key, m, vspan);
                            }
                        }
                        _ => unknown(self, NODE_ATTRS, "a node"),
                    },
                }
            }
            Value::Cable(c) => {
                let c = *c;
                let r = {
                    let cs = &mut self.cables[c];
                    let imp = &mut cs.impair;
                    match key {
                        "delay" => parse_str::<Micros>(v).map(|x| imp.delay = Some(x)),
                        "jitter" => parse_str::<Micros>(v).map(|x| imp.jitter = Some(x)),
                        "loss" => percent(v).map(|x| imp.loss = Some(x)),
                        "duplicate" => percent(v).map(|x| imp.duplicate = Some(x)),
                        "corrupt" => percent(v).map(|x| imp.corrupt = Some(x)),
                        "rate" => parse_str::<Rate>(v).map(|x| imp.rate = Some(x)),
                        "state" => parse_str::<LinkState>(v).map(|x| cs.state = x),
                        _ => return unknown(self, CABLE_ATTRS, "a cable"),
                    }
                };
                if let Err(m) = r {
                    self.bad(key, m, vspan);
                }
            }
            Value::Kind(KindRef::User(k)) => {
                if !KIND_ATTRS.contains(&key) {
                    return unknown(self, KIND_ATTRS, "a kind");
                }
                let kd = &mut self.kinds[*k].kind;
                let mut cfg = CommonRef {
                    image: &mut kd.image,
                    packages: &mut kd.packages,
                    memory: &mut kd.memory,
                    cpus: &mut kd.cpus,
                    restart: &mut kd.restart,
                };
                if let Err(m) = cfg.set(key, v) {
                    self.bad(key, m, vspan);
                }
            }
            Value::Poison => {}
            other => {
                self.err(
                    ErrorKind::WrongType {
                        expected: "a node, switch, NIC, cable or kind to set attributes on".into(),
                        found: other.describe().into(),
                    },
                    kspan,
                );
            }
        }
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

fn parse_str<T: std::str::FromStr<Err = String>>(v: Value) -> Result<T, String> {
    match v {
        Value::Str(s) => s.parse(),
        other => Err(format!("expected a string, found {}", other.describe())),
    }
}

fn percent(v: Value) -> Result<Percent, String> {
    match v {
        Value::Int(i) => Percent::from_f64(i as f64),
        Value::Float(f) => Percent::from_f64(f),
        Value::Str(s) => s.parse(),
        other => Err(format!("expected a percentage, found {}", other.describe())),
    }
}

/// The parts of a node's or kind's configuration that attributes set.
struct CommonRef<'a> {
    image: &'a mut Option<String>,
    packages: &'a mut Vec<String>,
    memory: &'a mut Option<ByteSize>,
    cpus: &'a mut Option<f64>,
    restart: &'a mut Option<Restart>,
}

impl CommonRef<'_> {
    fn set(&mut self, key: &str, v: Value) -> Result<(), String> {
        match key {
            "image" => match v {
                Value::Str(s) => *self.image = Some(s),
                other => return Err(format!("expected a string, found {}", other.describe())),
            },
            "packages" => {
                let mut out = Vec::new();
                for item in as_list(v) {
                    match item {
                        Value::Str(s) => out.push(s),
                        other => {
                            return Err(format!(
                                "expected package names, found {}",
                                other.describe()
                            ));
                        }
                    }
                }
                *self.packages = out;
            }
            "memory" => *self.memory = Some(parse_str(v)?),
            "cpus" => match num(&v) {
                Some(n) if n > 0.0 && n <= 4096.0 => *self.cpus = Some(n),
                _ => return Err("expected a number of CPUs greater than 0, e.g. 0.5 or 2".into()),
            },
            "restart" => *self.restart = Some(parse_str(v)?),
            _ => return Err(format!("`{key}` cannot be set here")),
        }
        Ok(())
    }
}

/// The sysctls, files and services of a node or kind.
struct ConfigRef<'a> {
    sysctls: &'a mut std::collections::BTreeMap<String, String>,
    files: &'a mut Vec<FileSpec>,
    services: &'a mut Vec<Service>,
}

/// Called only for targets `config_target` refused; gives the closure a scratch config.
fn unreachable_config<R>(f: impl FnOnce(ConfigRef<'_>) -> R) -> R {
    let (mut a, mut b, mut c) = Default::default();
    f(ConfigRef {
        sysctls: &mut a,
        files: &mut b,
        services: &mut c,
    })
}
