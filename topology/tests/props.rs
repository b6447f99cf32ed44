//! Property tests: the loaders never panic on arbitrary input, and any
//! valid model prints to `.vbet` (and TOML) and parses back unchanged.

use std::path::Path;

use proptest::prelude::*;
use vbet_topology::model::{
    Cable, Endpoint, FileSpec, Impair, Kind, LinkState, Nic, Node, Port, Ready, Restart, Route,
    Service, Switch, SwitchKind, Topology,
};
use vbet_topology::units::{ByteSize, Micros, Percent, Rate};
use vbet_topology::{Format, load_str, to_toml, to_vbet};

const PATH: &str = "/nonexistent/prop.vbet";

/// Pieces of the language, so random programs get past the lexer often.
const SOUP: &[&str] = &[
    "alloc",
    "attach",
    "NIC",
    "plug",
    "link",
    "set",
    "kind",
    "file",
    "service",
    "route",
    "sysctl",
    "host",
    "router",
    "switch",
    "hub",
    "cable",
    "x",
    "y",
    "p${i}",
    "for",
    "in",
    "include",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    "=",
    ";",
    "..",
    "+",
    "-",
    "*",
    "/",
    "%",
    "1",
    "2",
    "0",
    "3.5",
    "\"10.0.0.1/24\"",
    "\"s${x}\"",
    "\"",
    "${",
    "<<EOF\n",
    "<<'E'\n",
    "EOF\n",
    "E\n",
    "\n",
    " ",
    "#c\n",
    "addr=",
    "delay=\"1ms\"",
    "nics=2",
    "@",
    "\\",
    "$",
];

proptest! {
    #![proptest_config(ProptestConfig::default())] // PROPTEST_CASES=N to run more

    #[test]
    fn vbet_never_panics_on_arbitrary_text(src in "\\PC{0,200}") {
        let _ = load_str(&src, Path::new(PATH), Format::Vbet);
    }

    #[test]
    fn vbet_never_panics_on_token_soup(parts in prop::collection::vec(prop::sample::select(SOUP), 0..60)) {
        let src: String = parts.concat();
        let _ = load_str(&src, Path::new(PATH), Format::Vbet);
    }

    #[test]
    fn toml_and_yaml_never_panic(src in "\\PC{0,200}") {
        let _ = load_str(&src, Path::new("/nonexistent/p.toml"), Format::Toml);
        let _ = load_str(&src, Path::new("/nonexistent/p.yaml"), Format::Yaml);
    }

    #[test]
    fn print_then_parse_round_trips(topo in topology()) {
        // Through TOML first: resolves kinds and proves the model valid.
        let toml = to_toml(&topo);
        let t1 = load_str(&toml, Path::new("/nonexistent/p.toml"), Format::Toml)
            .map_err(|e| TestCaseError::fail(format!("{toml}\n{}", e.render(false))))?;
        let vbet = to_vbet(&t1);
        let t2 = load_str(&vbet, Path::new(PATH), Format::Vbet)
            .map_err(|e| TestCaseError::fail(format!("{vbet}\n{}", e.render(false))))?;
        prop_assert_eq!(&t1, &t2, "{}", vbet);
        prop_assert_eq!(to_vbet(&t2), vbet);
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,30}", "[ -~\n\t]{0,60}\n", "\\PC{0,20}"]
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

/// Image, packages, memory, CPUs and restart policy.
type Config = (
    Option<String>,
    Vec<String>,
    Option<ByteSize>,
    Option<f64>,
    Option<Restart>,
);
/// Sysctls, files and services.
type Extras = (Vec<(String, String)>, Vec<FileSpec>, Vec<Service>);

fn config() -> impl Strategy<Value = Config> {
    (
        opt("[a-z][a-z0-9:.-]{0,10}"),
        prop::collection::vec("[a-z][a-z0-9-]{0,8}", 0..3),
        opt((1u64..4096).prop_map(|m| ByteSize(m << 20))),
        opt(prop::sample::select(vec![0.25, 0.5, 1.0, 2.0, 1.5])),
        opt(prop::sample::select(vec![
            Restart::No,
            Restart::OnFailure,
            Restart::Always,
        ])),
    )
}

fn extras() -> impl Strategy<Value = Extras> {
    (
        prop::collection::vec(("[a-z]{1,5}(\\.[a-z0-9_]{1,5}){0,3}", "[ -~]{0,8}"), 0..3),
        prop::collection::vec((text(), opt("0[0-7]{3}")), 0..3).prop_map(|files| {
            files
                .into_iter()
                .enumerate()
                .map(|(i, (content, mode))| FileSpec {
                    path: format!("/etc/f{i}"),
                    content: Some(content),
                    source: None,
                    mode,
                })
                .collect()
        }),
        prop::collection::vec(
            (
                text(),
                opt(prop_oneof![
                    (1u16..).prop_map(Ready::Tcp),
                    "[ -~]{1,20}"
                        .prop_filter("non-blank", |s| !s.trim().is_empty())
                        .prop_map(Ready::Command),
                    "/[a-z/]{1,10}".prop_map(Ready::File),
                    (0u64..10_000_000).prop_map(|u| Ready::Delay(Micros(u))),
                ]),
            ),
            0..3,
        )
        .prop_map(|svcs| {
            svcs.into_iter()
                .enumerate()
                .map(|(i, (command, ready))| Service {
                    name: format!("s{i}"),
                    command,
                    ready,
                })
                .collect()
        }),
    )
}

fn impair() -> impl Strategy<Value = Impair> {
    let pct = || opt((0.0f64..=100.0).prop_map(Percent));
    (
        opt((0u64..5_000_000).prop_map(Micros)),
        opt((0u64..100_000).prop_map(Micros)),
        pct(),
        pct(),
        pct(),
        opt((1u64..10_000_000_000).prop_map(Rate)),
    )
        .prop_map(|(delay, jitter, loss, duplicate, corrupt, rate)| Impair {
            delay,
            jitter,
            loss,
            duplicate,
            corrupt,
            rate,
        })
}

/// A random valid topology: unique names, distinct subnets, each NIC on at most one cable.
fn topology() -> impl Strategy<Value = Topology> {
    let node = (
        0usize..5,
        0usize..4,
        config(),
        extras(),
        any::<bool>(),
        opt("[a-z]{1,6}"),
        any::<[bool; 4]>(),
    );
    let switch = (
        any::<bool>(),
        0usize..5,
        opt(0u32..3),
        opt(1u16..4095),
        opt("[a-z]{1,6}"),
    );
    let kind = (0usize..3, config(), extras());
    (
        prop::collection::vec(kind, 0..3),
        prop::collection::vec(node, 0..6),
        prop::collection::vec(switch, 0..3),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                any::<prop::sample::Index>(),
                any::<bool>(),
                impair(),
                0usize..3,
            ),
            0..8,
        ),
    )
        .prop_map(|(kinds, nodes, switches, cables)| {
            let mut t = Topology::default();
            for (i, (base, (image, packages, memory, cpus, restart), (sysctls, files, services))) in
                kinds.into_iter().enumerate()
            {
                let base = if i > 0 && base == 2 {
                    format!("k{}", i - 1)
                } else {
                    ["host", "router"][base % 2].to_string()
                };
                t.kinds.push(Kind {
                    name: format!("k{i}"),
                    base,
                    image,
                    packages,
                    memory,
                    cpus,
                    restart,
                    sysctls: sysctls.into_iter().collect(),
                    files,
                    services,
                });
            }
            for (
                i,
                (
                    kind,
                    nics,
                    (image, packages, memory, cpus, restart),
                    (sysctls, files, services),
                    dashed,
                    host,
                    flags,
                ),
            ) in nodes.into_iter().enumerate()
            {
                let kind = match kind {
                    0 => "host".to_string(),
                    1 => "router".to_string(),
                    2 => "firewall".to_string(),
                    k if k - 3 < t.kinds.len() => format!("k{}", k - 3),
                    _ => "host".to_string(),
                };
                let nics: Vec<Nic> = (0..nics)
                    .map(|j| Nic {
                        addrs: if flags[j % 4] {
                            vec![
                                format!("10.{i}.{j}.1/24").parse().unwrap(),
                                format!("fd00:{i}:{j}::1/64").parse().unwrap(),
                            ]
                        } else {
                            Vec::new()
                        },
                        mac: flags[(j + 1) % 4]
                            .then(|| format!("02:00:00:00:{i:02x}:{j:02x}").parse().unwrap()),
                        mtu: flags[(j + 2) % 4].then_some(1400),
                    })
                    .collect();
                let gateway = if !nics.is_empty() && flags[0] {
                    vec![format!("10.{i}.0.2").parse().unwrap()]
                } else {
                    Vec::new()
                };
                let routes = if flags[3] {
                    vec![Route {
                        to: format!("172.16.{i}.0/24").parse().unwrap(),
                        via: None,
                        nic: (!nics.is_empty()).then_some(1),
                        metric: Some(i as u32),
                    }]
                } else {
                    Vec::new()
                };
                let name = if dashed {
                    format!("n{i}-x")
                } else {
                    format!("n{i}")
                };
                t.nodes.push(Node {
                    name,
                    kind,
                    host,
                    image,
                    packages,
                    memory,
                    cpus,
                    restart,
                    gateway,
                    routes,
                    nics,
                    sysctls: sysctls.into_iter().collect(),
                    files,
                    services,
                    ..Node::default()
                });
            }
            for (i, (hub, ports, extra, vlan, host)) in switches.into_iter().enumerate() {
                let ports: Vec<Port> = (0..ports)
                    .map(|p| Port {
                        vlan: if p == 0 { vlan } else { None },
                        trunk: if p == 1 { vec![10, 20] } else { Vec::new() },
                    })
                    .collect();
                let max_ports = extra.map(|e| ports.len() as u32 + e).filter(|m| *m > 0);
                t.switches.push(Switch {
                    name: format!("sw{i}"),
                    kind: if hub {
                        SwitchKind::Hub
                    } else {
                        SwitchKind::Switch
                    },
                    max_ports,
                    host,
                    ports,
                });
            }
            // Free ends, paired by the random indices.
            let mut free: Vec<Endpoint> = t
                .nodes
                .iter()
                .flat_map(|n| {
                    (1..=n.nics.len() as u32).map(|k| Endpoint {
                        device: n.name.clone(),
                        nic: k,
                    })
                })
                .chain(t.switches.iter().flat_map(|s| {
                    (1..=s.ports.len() as u32).map(|k| Endpoint {
                        device: s.name.clone(),
                        nic: k,
                    })
                }))
                .collect();
            for (ci, (a, b, named, impair, state)) in cables.into_iter().enumerate() {
                if free.len() < 2 {
                    break;
                }
                let a = free.swap_remove(a.index(free.len()));
                let b = free.swap_remove(b.index(free.len()));
                let state = [LinkState::Up, LinkState::Down, LinkState::Blackhole][state];
                t.cables.push(Cable {
                    name: named.then(|| format!("c{ci}")),
                    a,
                    b,
                    state,
                    impair,
                });
            }
            t
        })
}
