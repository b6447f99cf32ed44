//! Prints any model as canonical `.vbet`: kinds, then nodes, switches and
//! cables, each node in one `attach(alloc(...), alloc(NIC, ...))`
//! statement. Parsing the output gives the same model back.

use std::fmt::Write;

use crate::model::{Cable, FileSpec, Kind, Node, Service, Switch, Topology};

/// Prints `topo` as a `.vbet` program.
pub fn to_vbet(topo: &Topology) -> String {
    let mut out = String::from("# vBET topology (canonical form)\n");
    if !topo.kinds.is_empty() {
        out.push_str("\n# kinds\n");
        for k in &topo.kinds {
            kind(&mut out, k);
        }
    }
    if !topo.nodes.is_empty() {
        out.push_str("\n# nodes\n");
        for n in &topo.nodes {
            node(&mut out, n);
        }
    }
    if !topo.switches.is_empty() {
        out.push_str("\n# switches and hubs\n");
        for s in &topo.switches {
            switch(&mut out, s);
        }
    }
    if !topo.cables.is_empty() {
        out.push_str("\n# cables\n");
        for c in &topo.cables {
            cable(&mut out, c);
        }
    }
    out
}

/// A name as an identifier: plain if it lexes as one, else `${"..."}`.
fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("${{{}}}", quote(name))
    }
}

/// A string literal with escapes.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    if items.len() == 1 {
        items.into_iter().next().unwrap_or_default()
    } else {
        format!("[{}]", items.join(", "))
    }
}

fn num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

struct Attrs(Vec<String>);

impl Attrs {
    fn add(&mut self, key: &str, value: impl Into<String>) {
        self.0.push(format!("{key}={}", value.into()));
    }
    fn opt<T: ToString>(&mut self, key: &str, v: &Option<T>) {
        if let Some(v) = v {
            self.add(key, quote(&v.to_string()));
        }
    }
    fn prefixed(&self) -> String {
        self.0.iter().map(|a| format!(", {a}")).collect()
    }
}

fn common(
    a: &mut Attrs,
    image: &Option<String>,
    packages: &[String],
    memory: &Option<crate::units::ByteSize>,
    cpus: &Option<f64>,
    restart: &Option<crate::model::Restart>,
) {
    a.opt("image", image);
    if !packages.is_empty() {
        a.add(
            "packages",
            format!(
                "[{}]",
                packages
                    .iter()
                    .map(|p| quote(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    a.opt("memory", memory);
    if let Some(c) = cpus {
        a.add("cpus", num(*c));
    }
    a.opt("restart", restart);
}

fn config(
    out: &mut String,
    target: &str,
    sysctls: &std::collections::BTreeMap<String, String>,
    files: &[FileSpec],
    services: &[Service],
) {
    for (k, v) in sysctls {
        let _ = writeln!(out, "sysctl({target}, {}, {})", quote(k), quote(v));
    }
    for f in files {
        file(out, target, f);
    }
    for s in services {
        let ready = s
            .ready
            .as_ref()
            .map(|r| format!(", ready={}", quote(&r.to_string())))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "service({target}, {}, {}{ready})",
            quote(&s.name),
            quote(&s.command)
        );
    }
}

fn file(out: &mut String, target: &str, f: &FileSpec) {
    let mode = f
        .mode
        .as_ref()
        .map(|m| format!(", mode={}", quote(m)))
        .unwrap_or_default();
    match (&f.content, &f.source) {
        (Some(c), _) => {
            let marker = (0..)
                .map(|i| {
                    if i == 0 {
                        "EOF".to_string()
                    } else {
                        format!("EOF{i}")
                    }
                })
                .find(|m| !c.lines().any(|l| l.trim() == m))
                .unwrap_or_default();
            if c.ends_with('\n') && !c.contains('\r') {
                let _ = write!(
                    out,
                    "file({target}, {}, <<'{marker}'{mode})\n{c}{marker}\n",
                    quote(&f.path)
                );
            } else {
                let _ = writeln!(
                    out,
                    "file({target}, {}, {}{mode})",
                    quote(&f.path),
                    quote(c)
                );
            }
        }
        (None, Some(src)) => {
            let _ = writeln!(
                out,
                "file({target}, {}, path={}{mode})",
                quote(&f.path),
                quote(src)
            );
        }
        (None, None) => {}
    }
}

fn kind(out: &mut String, k: &Kind) {
    let mut a = Attrs(Vec::new());
    common(
        &mut a,
        &k.image,
        &k.packages,
        &k.memory,
        &k.cpus,
        &k.restart,
    );
    let name = ident(&k.name);
    let _ = writeln!(out, "{name} = kind({}{})", ident(&k.base), a.prefixed());
    config(out, &name, &k.sysctls, &k.files, &k.services);
}

fn node(out: &mut String, n: &Node) {
    let mut a = Attrs(Vec::new());
    common(
        &mut a,
        &n.image,
        &n.packages,
        &n.memory,
        &n.cpus,
        &n.restart,
    );
    a.opt("host", &n.host);
    if n.faults {
        a.add("faults", quote("on"));
    }
    if let Some(clock) = n.clock {
        a.add("clock", quote("virtual"));
        if clock.offset != 0.0 {
            a.add("clock_offset", num(clock.offset));
        }
        if clock.rate != 1.0 {
            a.add("clock_rate", num(clock.rate));
        }
    }
    if !n.hostfs.is_empty() {
        a.add(
            "hostfs",
            list(n.hostfs.iter().map(|h| quote(&h.to_string()))),
        );
    }
    if !n.gateway.is_empty() {
        a.add(
            "gateway",
            list(n.gateway.iter().map(|g| quote(&g.to_string()))),
        );
    }
    let name = ident(&n.name);
    let alloc = format!("alloc({}{})", ident(&n.kind), a.prefixed());
    let mut nics = String::new();
    for nic in &n.nics {
        let mut na = Attrs(Vec::new());
        if !nic.addrs.is_empty() {
            na.add(
                "addr",
                list(nic.addrs.iter().map(|x| quote(&x.to_string()))),
            );
        }
        na.opt("mac", &nic.mac);
        if let Some(m) = nic.mtu {
            na.add("mtu", m.to_string());
        }
        let _ = write!(nics, ", alloc(NIC{})", na.prefixed());
    }
    if nics.is_empty() {
        let _ = writeln!(out, "{name} = {alloc}");
    } else {
        let _ = writeln!(out, "{name} = attach({alloc}{nics})");
    }
    config(out, &name, &n.sysctls, &n.files, &n.services);
    for r in &n.routes {
        let mut ra = Attrs(Vec::new());
        ra.opt("via", &r.via);
        if let Some(nic) = r.nic {
            ra.add("nic", nic.to_string());
        }
        if let Some(m) = r.metric {
            ra.add("metric", m.to_string());
        }
        let _ = writeln!(
            out,
            "route({name}, {}{})",
            quote(&r.to.to_string()),
            ra.prefixed()
        );
    }
}

fn switch(out: &mut String, s: &Switch) {
    let mut a = Attrs(Vec::new());
    if let Some(p) = s.max_ports {
        a.add("ports", p.to_string());
    }
    a.opt("host", &s.host);
    let kind = match s.kind {
        crate::model::SwitchKind::Switch => "switch",
        crate::model::SwitchKind::Hub => "hub",
    };
    let name = ident(&s.name);
    let plain = s
        .ports
        .iter()
        .all(|p| p.vlan.is_none() && p.trunk.is_empty());
    if plain {
        if !s.ports.is_empty() {
            a.add("nics", s.ports.len().to_string());
        }
        let _ = writeln!(out, "{name} = alloc({kind}{})", a.prefixed());
        return;
    }
    let mut ports = String::new();
    for p in &s.ports {
        let mut pa = Attrs(Vec::new());
        if let Some(v) = p.vlan {
            pa.add("vlan", v.to_string());
        }
        if !p.trunk.is_empty() {
            pa.add(
                "trunk",
                format!(
                    "[{}]",
                    p.trunk
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let _ = write!(ports, ", alloc(NIC{})", pa.prefixed());
    }
    let _ = writeln!(out, "{name} = attach(alloc({kind}{}){ports})", a.prefixed());
}

fn cable(out: &mut String, c: &Cable) {
    let mut a = Attrs(Vec::new());
    let i = &c.impair;
    a.opt("delay", &i.delay);
    a.opt("jitter", &i.jitter);
    for (k, v) in [
        ("loss", i.loss),
        ("duplicate", i.duplicate),
        ("corrupt", i.corrupt),
    ] {
        if let Some(v) = v {
            a.add(k, quote(&v.to_string()));
        }
    }
    a.opt("rate", &i.rate);
    if c.state != crate::model::LinkState::Up {
        a.add("state", quote(&c.state.to_string()));
    }
    let name = c
        .name
        .as_ref()
        .map(|n| format!("{} = ", ident(n)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{name}link(NIC({}, {}), NIC({}, {}){})",
        ident(&c.a.device),
        c.a.nic,
        ident(&c.b.device),
        c.b.nic,
        a.prefixed()
    );
}
