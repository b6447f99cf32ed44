//! The same model from `.vbet`, TOML and YAML; every example validates.

use std::path::{Path, PathBuf};

use vbet_topology::{Format, Topology, load, load_str, to_toml, to_vbet, to_yaml};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn must_load(path: &Path) -> Topology {
    load(path).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

#[test]
fn every_example_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("vbet" | "toml" | "yaml")
        ) {
            let t = must_load(&path);
            assert!(!t.nodes.is_empty(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 6, "only {seen} examples");
}

#[test]
fn the_paper_examples_mean_what_the_paper_means() {
    let t = must_load(&examples().join("paper-4.1-ospf.vbet"));
    assert_eq!(t.cable_at("r1", 2).unwrap().b.device, "r2");
    assert_eq!(t.node("r3").unwrap().files.len(), 3);
    let t = must_load(&examples().join("paper-4.2-firewall.vbet"));
    assert_eq!(t.switches.len(), 1);
    assert_eq!(
        t.switches[0].ports.len(),
        6,
        "server and five firewalls on one switch"
    );
    assert_eq!(
        t.nodes.iter().filter(|n| n.kind == "nft_firewall").count(),
        5
    );
    let t = must_load(&examples().join("paper-4.3-chord.vbet"));
    assert_eq!(t.nodes.len(), 16);
    assert!(t.nodes.iter().all(|n| n.services.len() == 1));
}

#[test]
fn vbet_and_its_toml_translation_are_the_same_lab() {
    let from_vbet = must_load(&examples().join("paper-2.2-switch.vbet"));
    let from_toml = must_load(&examples().join("paper-2.2-switch.toml"));
    assert_eq!(from_vbet, from_toml);
}

#[test]
fn canonical_toml_yaml_and_vbet_load_back_the_same() {
    for name in [
        "paper-2.2-switch",
        "paper-4.1-ospf",
        "paper-4.2-firewall",
        "paper-4.3-chord",
    ] {
        let path = examples().join(format!("{name}.vbet"));
        let t = must_load(&path);
        for (format, text) in [
            (Format::Toml, to_toml(&t)),
            (Format::Yaml, to_yaml(&t)),
            (Format::Vbet, to_vbet(&t)),
        ] {
            let back = load_str(&text, &path, format)
                .unwrap_or_else(|e| panic!("{name} {format:?}:\n{text}\n{}", e.render(false)));
            assert_eq!(back, t, "{name} through {format:?}");
        }
    }
}

#[test]
fn unreadable_files_are_errors() {
    let e = load(Path::new("/nonexistent/lab.vbet")).unwrap_err();
    assert!(
        e.render(false)
            .contains("cannot read /nonexistent/lab.vbet")
    );
}

#[test]
fn a_virtual_clock_loads_and_prints_back_in_every_format() {
    let path = Path::new("/nonexistent/clock.vbet");
    let t = load_str(
        "a = alloc(host, clock_offset = 3600, clock_rate = 0.5)\nb = alloc(host, clock = \"virtual\")\nc = alloc(host)\n",
        path,
        Format::Vbet,
    )
    .unwrap_or_else(|e| panic!("{}", e.render(false)));
    let clock = |name: &str| t.nodes.iter().find(|n| n.name == name).unwrap().clock;
    assert_eq!(
        clock("a"),
        Some(vbet_topology::model::VirtualClock {
            offset: 3600.0,
            rate: 0.5
        })
    );
    assert_eq!(clock("b"), Some(Default::default()));
    assert_eq!(clock("c"), None);
    for (format, text) in [
        (Format::Toml, to_toml(&t)),
        (Format::Yaml, to_yaml(&t)),
        (Format::Vbet, to_vbet(&t)),
    ] {
        let back = load_str(&text, path, format).unwrap_or_else(|e| panic!("{}", e.render(false)));
        assert_eq!(back, t, "through {format:?}:\n{text}");
    }
}
