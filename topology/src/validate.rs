//! Resolution and checks of a model, whatever it was written in: kinds are
//! folded into nodes, then every rule a deployable lab must satisfy is
//! checked and every failure collected.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::diagnostics::{ErrorKind, Problem, Span, suggest};
use crate::model::{FileSpec, Kind, Node, Role, Service, Topology, ifname};
use crate::spans::Subject;

/// Something that finds where a model part was written.
pub trait Locate {
    /// The span of `subject`; `hint` is a value (address, path) to point at if possible.
    fn locate(&self, subject: &Subject, hint: Option<&str>) -> Option<Span>;
}

fn problem(loc: &dyn Locate, kind: ErrorKind, subject: Subject, hint: Option<&str>) -> Problem {
    match loc.locate(&subject, hint) {
        Some(span) => Problem::new(kind, span),
        None => Problem::nowhere(kind),
    }
}

/// Folds each node's kind chain (user kinds down to a built-in role) into the node.
/// Idempotent: resolving a resolved model changes nothing.
pub fn resolve(topo: &mut Topology, loc: &dyn Locate, problems: &mut Vec<Problem>) {
    let kinds: HashMap<String, Kind> = topo
        .kinds
        .iter()
        .map(|k| (k.name.clone(), k.clone()))
        .collect();
    for k in &topo.kinds {
        if Role::from_name(&k.name).is_some()
            || matches!(k.name.as_str(), "switch" | "hub" | "NIC" | "cable")
        {
            problems.push(problem(
                loc,
                ErrorKind::DuplicateName {
                    name: k.name.clone(),
                    what: "a built-in kind".into(),
                },
                Subject::Kind(k.name.clone()),
                None,
            ));
        }
    }
    let mut reported = HashSet::new();
    for node in &mut topo.nodes {
        // The chain from the node's kind down to a role.
        let mut chain: Vec<&Kind> = Vec::new();
        let mut name = node.kind.as_str();
        let role = loop {
            if let Some(r) = Role::from_name(name) {
                break Some(r);
            }
            match kinds.get(name) {
                Some(k) if chain.iter().any(|c| c.name == k.name) => {
                    if reported.insert(k.name.clone()) {
                        problems.push(problem(
                            loc,
                            ErrorKind::Invalid {
                                message: format!("kind {} extends itself", k.name),
                            },
                            Subject::Kind(k.name.clone()),
                            None,
                        ));
                    }
                    break None;
                }
                Some(k) => {
                    chain.push(k);
                    name = &k.base;
                }
                None => {
                    let candidates = kinds
                        .keys()
                        .map(String::as_str)
                        .chain(["host", "router", "firewall"]);
                    let suggestion = suggest(name, candidates);
                    let subject = match chain.last() {
                        Some(k) => Subject::Kind(k.name.clone()),
                        None => Subject::Device(node.name.clone()),
                    };
                    problems.push(problem(
                        loc,
                        ErrorKind::UnknownKind {
                            name: name.to_string(),
                            suggestion,
                        },
                        subject,
                        Some(name),
                    ));
                    break None;
                }
            }
        };
        let Some(role) = role else { continue };
        node.role = role;
        // Apply from the most general to the node itself; the node wins.
        let mut sysctls: std::collections::BTreeMap<String, String> = role
            .default_sysctls()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut files: Vec<FileSpec> = Vec::new();
        let mut services: Vec<Service> = Vec::new();
        let mut packages: Vec<String> = Vec::new();
        let (mut image, mut memory, mut cpus, mut restart) = (None, None, None, None);
        for k in chain.iter().rev() {
            sysctls.extend(k.sysctls.clone());
            merge_by(&mut files, &k.files, |f| f.path.clone());
            merge_by(&mut services, &k.services, |s| s.name.clone());
            merge_by(&mut packages, &k.packages, Clone::clone);
            image = k.image.clone().or(image);
            memory = k.memory.or(memory);
            cpus = k.cpus.or(cpus);
            restart = k.restart.or(restart);
        }
        sysctls.extend(std::mem::take(&mut node.sysctls));
        node.sysctls = sysctls;
        merge_by(&mut files, &node.files, |f| f.path.clone());
        node.files = files;
        merge_by(&mut services, &node.services, |s| s.name.clone());
        node.services = services;
        merge_by(&mut packages, &node.packages, Clone::clone);
        node.packages = packages;
        node.image = node.image.take().or(image);
        node.memory = node.memory.or(memory);
        node.cpus = node.cpus.or(cpus);
        node.restart = node.restart.or(restart);
    }
}

/// Merges `extra` into `base` by key: an item of `extra` replaces the one
/// of `base` with its key (keeping `base`'s order), or is appended.
fn merge_by<T: Clone, K: PartialEq>(base: &mut Vec<T>, extra: &[T], key: impl Fn(&T) -> K) {
    for e in extra {
        match base.iter_mut().find(|b| key(b) == key(e)) {
            Some(b) => *b = e.clone(),
            None => base.push(e.clone()),
        }
    }
}

/// Checks a resolved model; pushes every problem found.
pub fn check(topo: &Topology, loc: &dyn Locate, problems: &mut Vec<Problem>) {
    let mut p = |kind: ErrorKind, subject: Subject, hint: Option<&str>| {
        problems.push(problem(loc, kind, subject, hint));
    };

    // Names.
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let devices = topo
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), "a node"))
        .chain(topo.switches.iter().map(|s| (s.name.as_str(), "a switch")));
    for (name, what) in devices {
        if !valid_name(name) {
            p(
                ErrorKind::BadValue {
                    attr: "name".into(),
                    message: format!(
                        "`{name}` is not a valid name (a letter, then letters, digits, _ - .; not a built-in word)"
                    ),
                },
                Subject::Device(name.into()),
                None,
            );
        } else if let Some(prev) = seen.insert(name, what) {
            p(
                ErrorKind::DuplicateName {
                    name: name.into(),
                    what: prev.into(),
                },
                Subject::Device(name.into()),
                None,
            );
        }
    }
    let mut kind_names = HashSet::new();
    for k in &topo.kinds {
        if !kind_names.insert(k.name.as_str()) {
            p(
                ErrorKind::DuplicateName {
                    name: k.name.clone(),
                    what: "a kind".into(),
                },
                Subject::Kind(k.name.clone()),
                None,
            );
        }
    }

    for (ci, c) in topo.cables.iter().enumerate() {
        if let Some(name) = &c.name {
            if !valid_name(name) || seen.contains_key(name.as_str()) {
                p(
                    ErrorKind::DuplicateName {
                        name: name.clone(),
                        what: "a node or switch, or is not a valid name".into(),
                    },
                    Subject::Cable(ci),
                    None,
                );
            }
        }
    }

    // Switches.
    for s in &topo.switches {
        if let Some(max) = s.max_ports {
            if s.ports.len() > max as usize {
                let subject = Subject::Nic(s.name.clone(), max.saturating_add(1));
                let subject = if loc.locate(&subject, None).is_some() {
                    subject
                } else {
                    Subject::Device(s.name.clone())
                };
                p(
                    ErrorKind::PortsExceeded {
                        switch: s.name.clone(),
                        max,
                        needed: s.ports.len(),
                    },
                    subject,
                    None,
                );
            }
        }
        for (i, port) in s.ports.iter().enumerate() {
            let bad = port
                .vlan
                .iter()
                .chain(&port.trunk)
                .any(|v| !(1..=4094).contains(v));
            if bad {
                p(
                    ErrorKind::BadValue {
                        attr: "vlan".into(),
                        message: format!(
                            "port {} of {}: VLAN ids go from 1 to 4094",
                            i + 1,
                            s.name
                        ),
                    },
                    Subject::Nic(s.name.clone(), i as u32 + 1),
                    None,
                );
            }
        }
    }

    // Cables.
    let all_names: Vec<&str> = topo
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .chain(topo.switches.iter().map(|s| s.name.as_str()))
        .collect();
    let counts: HashMap<&str, usize> = topo
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.nics.len()))
        .chain(
            topo.switches
                .iter()
                .map(|s| (s.name.as_str(), s.ports.len())),
        )
        .collect();
    let mut used: HashMap<(&str, u32), usize> = HashMap::new();
    for (ci, c) in topo.cables.iter().enumerate() {
        for end in [&c.a, &c.b] {
            match counts.get(end.device.as_str()).copied() {
                None => {
                    let suggestion = suggest(&end.device, all_names.iter().copied());
                    p(
                        ErrorKind::UnknownName {
                            name: end.device.clone(),
                            suggestion,
                        },
                        Subject::Cable(ci),
                        Some(&end.device),
                    );
                    continue;
                }
                Some(count) if end.nic < 1 || end.nic as usize > count => {
                    p(
                        ErrorKind::NicIndex {
                            device: end.device.clone(),
                            index: end.nic as i64,
                            count,
                        },
                        Subject::Cable(ci),
                        Some(&end.device),
                    );
                    continue;
                }
                Some(_) => {}
            }
            if let Some(other) = used.insert((end.device.as_str(), end.nic), ci) {
                if other == ci {
                    p(
                        ErrorKind::CablePluggedTwice {
                            cable: c.label(),
                            nic: nic_label(end),
                        },
                        Subject::Cable(ci),
                        None,
                    );
                } else {
                    p(
                        ErrorKind::NicTwoCables {
                            nic: nic_label(end),
                            cable: topo.cables[other].label(),
                        },
                        Subject::Cable(ci),
                        Some(&end.device),
                    );
                }
            }
        }
    }

    // Addresses.
    let mut owners: HashMap<IpAddr, String> = HashMap::new();
    for n in &topo.nodes {
        let mut subnets = Vec::new();
        for (i, nic) in n.nics.iter().enumerate() {
            let idx = i as u32 + 1;
            for a in &nic.addrs {
                let here = format!("{}:{}", n.name, ifname(idx));
                let hint = a.to_string();
                if let Some(prev) = owners.insert(a.ip, here.clone()) {
                    p(
                        ErrorKind::DuplicateAddress {
                            addr: a.ip.to_string(),
                            first: prev,
                            second: here.clone(),
                        },
                        Subject::Addr(n.name.clone(), idx),
                        Some(&hint),
                    );
                }
                for (oidx, other) in &subnets {
                    let other: &crate::net::IfAddr = other;
                    if *oidx != idx && other.network().overlaps(&a.network()) {
                        p(
                            ErrorKind::OverlappingSubnets {
                                node: n.name.clone(),
                                a: format!("{} {}", ifname(*oidx), other),
                                b: format!("{} {}", ifname(idx), a),
                            },
                            Subject::Addr(n.name.clone(), idx),
                            Some(&hint),
                        );
                    }
                }
                subnets.push((idx, *a));
            }
        }
        let mut families = HashSet::new();
        for g in &n.gateway {
            let family = if g.is_ipv4() { "IPv4" } else { "IPv6" };
            if !families.insert(family) {
                p(
                    ErrorKind::GatewayTwice {
                        node: n.name.clone(),
                        family: family.into(),
                    },
                    Subject::Gateway(n.name.clone()),
                    None,
                );
            }
            let link_local = matches!(g, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
            if !link_local && !subnets.iter().any(|(_, a)| a.contains(g)) {
                p(
                    ErrorKind::GatewayUnreachable {
                        node: n.name.clone(),
                        gateway: g.to_string(),
                    },
                    Subject::Gateway(n.name.clone()),
                    Some(&g.to_string()),
                );
            }
        }
        for (ri, r) in n.routes.iter().enumerate() {
            if let Some(via) = r.via {
                if via.is_ipv4() != r.to.ip.is_ipv4() {
                    p(
                        ErrorKind::Invalid {
                            message: format!(
                                "{}: route to {} goes via {}, another address family",
                                n.name, r.to, via
                            ),
                        },
                        Subject::Route(n.name.clone(), ri),
                        None,
                    );
                }
            }
            if let Some(nic) = r.nic {
                if nic < 1 || nic as usize > n.nics.len() {
                    p(
                        ErrorKind::NicIndex {
                            device: n.name.clone(),
                            index: nic as i64,
                            count: n.nics.len(),
                        },
                        Subject::Route(n.name.clone(), ri),
                        None,
                    );
                }
            }
        }
        check_node_files(topo, n, &mut p);
    }
    for k in &topo.kinds {
        for f in &k.files {
            check_file(topo, &k.name, f, &mut |kind| {
                p(kind, Subject::Kind(k.name.clone()), Some(&f.path))
            });
        }
    }
}

fn check_node_files(
    topo: &Topology,
    n: &Node,
    p: &mut dyn FnMut(ErrorKind, Subject, Option<&str>),
) {
    let mut services = HashSet::new();
    for s in &n.services {
        if !services.insert(s.name.as_str()) {
            p(
                ErrorKind::DuplicateName {
                    name: s.name.clone(),
                    what: format!("a service of {}", n.name),
                },
                Subject::Device(n.name.clone()),
                Some(&s.name),
            );
        }
    }
    for f in &n.files {
        let subject = Subject::File(n.name.clone(), f.path.clone());
        let hint = f.source.clone().unwrap_or_else(|| f.path.clone());
        check_file(topo, &n.name, f, &mut |kind| {
            p(kind, subject.clone(), Some(&hint))
        });
    }
}

fn check_file(topo: &Topology, owner: &str, f: &FileSpec, p: &mut dyn FnMut(ErrorKind)) {
    if !f.path.starts_with('/') {
        p(ErrorKind::Invalid {
            message: format!("{owner}: file path {} must be absolute", f.path),
        });
    }
    if let Some(mode) = &f.mode {
        if u32::from_str_radix(mode, 8).map_or(true, |m| m > 0o7777) {
            p(ErrorKind::BadValue {
                attr: "mode".into(),
                message: format!("`{mode}` is not an octal mode like 0644"),
            });
        }
    }
    match (&f.content, &f.source) {
        (Some(_), Some(_)) | (None, None) => p(ErrorKind::Invalid {
            message: format!(
                "{owner}: file {} needs content or a source, and not both",
                f.path
            ),
        }),
        (None, Some(src)) => {
            let full = topo.base_dir.join(src);
            if let Some(set) = &topo.files {
                if !set
                    .files
                    .contains_key(&crate::files::key(&topo.base_dir, &full))
                {
                    p(ErrorKind::FileMissing {
                        node: owner.into(),
                        path: full.display().to_string(),
                        message: "it was not sent with the topology".into(),
                    });
                }
            } else if let Err(e) = std::fs::metadata(&full) {
                p(ErrorKind::FileMissing {
                    node: owner.into(),
                    path: full.display().to_string(),
                    message: e.to_string(),
                });
            } else if full.is_dir() {
                p(ErrorKind::FileMissing {
                    node: owner.into(),
                    path: full.display().to_string(),
                    message: "it is a directory".into(),
                });
            }
        }
        (Some(_), None) => {}
    }
}

/// Whether `name` can name a node, switch, cable or kind in every format.
pub fn valid_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !crate::eval::BUILTIN_KINDS.contains(&name)
        && !crate::eval::FUNCTIONS.contains(&name)
}

/// `NIC(device,n)`, as the language writes it.
fn nic_label(e: &crate::model::Endpoint) -> String {
    format!("NIC({},{})", e.device, e.nic)
}
