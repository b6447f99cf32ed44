//! Every kind of error: found, placed at the right line and column, shown
//! with its source line and a caret, and all reported together.

use std::path::Path;

use vbet_topology::{ErrorKind, Errors, Format, load_str};

fn errors(src: &str) -> Errors {
    match load_str(src, Path::new("/nonexistent/t.vbet"), Format::Vbet) {
        Ok(t) => panic!("expected errors, got {t:?}"),
        Err(e) => e,
    }
}

/// The single error of `src`, with its line and column.
fn one(src: &str) -> (ErrorKind, usize, usize) {
    let e = errors(src);
    assert_eq!(e.errors.len(), 1, "{}", e.render(false));
    let e = &e.errors[0];
    (e.kind.clone(), e.line, e.column)
}

#[test]
fn unknown_name_suggests_the_closest() {
    let (k, line, col) = one(
        "switch1 = alloc(switch, nics=1)\nhost1 = alloc(host, nics=1)\nlink(NIC(switchl), host1)\n",
    );
    assert_eq!(
        k,
        ErrorKind::UnknownName {
            name: "switchl".into(),
            suggestion: Some("switch1".into())
        }
    );
    assert_eq!((line, col), (3, 10));
    let (k, ..) = one("lnk(a, b)");
    assert!(matches!(k, ErrorKind::UnknownFunction { suggestion: Some(s), .. } if s == "link"));
    let (k, ..) = one("x = alloc(rooter)");
    assert!(matches!(k, ErrorKind::UnknownName { suggestion: Some(s), .. } if s == "router"));
}

#[test]
fn nic_index_past_the_attached_nics() {
    let (k, line, col) = one("h = attach(alloc(host), alloc(NIC))\nx = NIC(h, 2)\n");
    assert_eq!(
        k,
        ErrorKind::NicIndex {
            device: "h".into(),
            index: 2,
            count: 1
        }
    );
    assert_eq!((line, col), (2, 12));
    let (k, ..) = one("h = alloc(host, nics=1)\nx = NIC(h, 0)\n");
    assert!(matches!(k, ErrorKind::NicIndex { index: 0, .. }));
}

#[test]
fn no_free_nic() {
    let (k, ..) =
        one("a = alloc(host, nics=1)\nb = alloc(host, nics=2)\nlink(a, b)\nlink(a, NIC(b))\n");
    assert_eq!(
        k,
        ErrorKind::NoFreeNic {
            device: "a".into(),
            count: 1
        }
    );
}

#[test]
fn cable_with_three_ends() {
    let (k, line, _) = one(
        "a = alloc(host, nics=1)\nb = alloc(host, nics=1)\nc = alloc(host, nics=1)\n\
         w = alloc(cable)\nplug(w, NIC(a))\nplug(w, NIC(b))\nplug(w, NIC(c))\n",
    );
    assert!(matches!(k, ErrorKind::CableThreeEnds { cable, .. } if cable == "w"));
    assert_eq!(line, 7);
}

#[test]
fn cable_plugged_twice_into_one_nic() {
    let (k, ..) =
        one("a = alloc(host, nics=1)\nw = alloc(cable)\nplug(w, NIC(a, 1))\nplug(w, NIC(a, 1))\n");
    assert!(matches!(k, ErrorKind::CablePluggedTwice { .. }));
}

#[test]
fn nic_on_two_cables() {
    let (k, line, col) = one(
        "a = alloc(host, nics=1)\nb = alloc(host, nics=2)\nlink(NIC(a, 1), NIC(b, 1))\nlink(NIC(b, 2), NIC(a, 1))\n",
    );
    assert!(matches!(k, ErrorKind::NicTwoCables { .. }));
    assert_eq!((line, col), (4, 17));
}

#[test]
fn cable_left_unplugged() {
    let (k, ..) = one("a = alloc(host, nics=1)\nw = alloc(cable)\nplug(w, a)\n");
    assert_eq!(
        k,
        ErrorKind::CableUnplugged {
            cable: "w".into(),
            ends: 1
        }
    );
}

#[test]
fn nic_attached_twice_or_never() {
    let (k, ..) = one("n = alloc(NIC)\na = attach(alloc(host), n)\nb = attach(alloc(host), n)\n");
    assert!(matches!(k, ErrorKind::NicAttachedTwice { .. }));
    let (k, ..) = one("n = alloc(NIC)\n");
    assert_eq!(k, ErrorKind::NicNotAttached);
}

#[test]
fn malformed_addresses() {
    for bad in [
        "10.0.0.300/24",
        "10.0.0.1",
        "10.0.0.1/33",
        "10.0.0.0/24",
        "fd00::1/129",
        "banana",
    ] {
        let (k, line, col) = one(&format!(
            "h = attach(alloc(host), alloc(NIC, addr=\"{bad}\"))"
        ));
        assert!(
            matches!(k, ErrorKind::BadValue { ref attr, .. } if attr == "addr"),
            "{bad}: {k:?}"
        );
        assert_eq!((line, col), (1, 41));
    }
    let (k, ..) = one("h = alloc(host, nics=1)\nroute(h, \"10.0.0.1/8\", \"10.0.0.1\")");
    assert!(
        matches!(k, ErrorKind::BadValue { message, .. } if message.contains("did you mean 10.0.0.0/8"))
    );
}

#[test]
fn overlapping_and_duplicate_addresses() {
    let (k, line, _) = one(
        "h = attach(alloc(host), alloc(NIC, addr=\"10.0.0.1/24\"), alloc(NIC, addr=\"10.0.0.2/16\"))",
    );
    assert!(matches!(k, ErrorKind::OverlappingSubnets { .. }));
    assert_eq!(line, 1);
    let (k, line, _) = one(
        "a = alloc(host, nics=1)\nb = alloc(host, nics=1)\nset(NIC(a,1), addr=\"10.0.0.1/24\")\nset(NIC(b,1), addr=\"10.0.0.1/24\")\n",
    );
    assert!(matches!(k, ErrorKind::DuplicateAddress { .. }));
    assert_eq!(line, 4);
}

#[test]
fn gateway_checks() {
    let (k, ..) = one(
        "a = attach(alloc(host), alloc(NIC, addr=\"10.0.0.1/24\"))\nset(a, gateway=\"10.1.0.1\")\n",
    );
    assert!(matches!(k, ErrorKind::GatewayUnreachable { .. }));
    let (k, ..) = one(
        "a = attach(alloc(host), alloc(NIC, addr=\"10.0.0.1/24\"))\nset(a, gateway=[\"10.0.0.2\", \"10.0.0.3\"])\n",
    );
    assert!(matches!(k, ErrorKind::GatewayTwice { .. }));
}

#[test]
fn duplicate_names() {
    let (k, line, _) = one("a = alloc(host)\na = alloc(router)\n");
    assert!(matches!(k, ErrorKind::DuplicateName { name, .. } if name == "a"));
    assert_eq!(line, 2);
    let (k, ..) = one("link = alloc(host)\n");
    assert!(matches!(k, ErrorKind::DuplicateName { .. }));
}

#[test]
fn switch_port_count_exceeded() {
    let (k, line, _) = one(
        "s = alloc(switch, ports=2)\nfor i in 1..3 { h${i} = alloc(host, nics=1) }\nlink(s, h1, h2)\nlink(s, h3)\n",
    );
    assert_eq!(
        k,
        ErrorKind::PortsExceeded {
            switch: "s".into(),
            max: 2,
            needed: 3
        }
    );
    assert_eq!(line, 4, "points at the link that needs the third port");
}

#[test]
fn unknown_attributes_suggest() {
    let (k, line, col) = one("h = alloc(host, memroy=\"1G\")");
    assert_eq!(
        k,
        ErrorKind::UnknownAttribute {
            attr: "memroy".into(),
            target: "a node".into(),
            suggestion: Some("memory".into())
        }
    );
    assert_eq!((line, col), (1, 17));
    let (k, ..) =
        one("a = alloc(host, nics=1)\nb = alloc(host, nics=1)\nlink(a, b, dealy=\"1ms\")");
    assert!(matches!(k, ErrorKind::UnknownAttribute { suggestion: Some(s), .. } if s == "delay"));
    let (k, ..) = one("s = alloc(switch, nics=1)\nset(NIC(s, 1), addr=\"10.0.0.1/24\")");
    assert!(matches!(k, ErrorKind::BadValue { .. }));
}

#[test]
fn bad_values() {
    for src in [
        "h = alloc(host, memory=\"lots\")",
        "h = alloc(host, restart=\"sometimes\")",
        "a = alloc(host, nics=1)\nb = alloc(host, nics=1)\nlink(a, b, loss=200)",
        "a = alloc(host, nics=1)\nb = alloc(host, nics=1)\nlink(a, b, delay=\"fast\")",
        "h = alloc(host)\nservice(h, \"x\", \"y\", ready=\"soon\")",
        "h = alloc(host, nics=1, cpus=0)",
        "h = alloc(host, clock=\"fast\")",
        "h = alloc(host, clock_rate=0)",
        "h = alloc(host, clock_offset=\"soon\")",
    ] {
        let (k, ..) = one(src);
        assert!(matches!(k, ErrorKind::BadValue { .. }), "{src}: {k:?}");
    }
}

#[test]
fn files_that_do_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_str(
        "h = alloc(host)\nfile(h, \"/etc/x\", path=\"missing.conf\")\n",
        &dir.path().join("t.vbet"),
        Format::Vbet,
    )
    .unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert!(matches!(e.errors[0].kind, ErrorKind::FileMissing { .. }));
    assert_eq!(e.errors[0].line, 2);
    let e = load_str(
        "include \"nope.vbet\"\n",
        &dir.path().join("t.vbet"),
        Format::Vbet,
    )
    .unwrap_err();
    assert!(matches!(e.errors[0].kind, ErrorKind::Io { .. }));
}

#[test]
fn include_cycles() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.vbet"), "include \"b.vbet\"\n").unwrap();
    std::fs::write(dir.path().join("b.vbet"), "include \"a.vbet\"\n").unwrap();
    let e = vbet_topology::load(&dir.path().join("a.vbet")).unwrap_err();
    assert!(
        e.any(|k| matches!(k, ErrorKind::IncludeCycle { .. })),
        "{}",
        e.render(false)
    );
}

#[test]
fn syntax_errors_are_all_reported() {
    let e = errors("a = alloc(host\nb = ]\nc = \"open\nd = alloc(host)\nx = @\n");
    assert_eq!(e.errors.len(), 4, "{}", e.render(false));
    let mut lines: Vec<usize> = e.errors.iter().map(|e| e.line).collect();
    lines.sort();
    assert_eq!(
        lines,
        [2, 2, 3, 5],
        "a missing `)` is found where the next line starts"
    );
}

#[test]
fn runaway_programs_stop() {
    let (k, ..) = one("for i in 1..100000000000 { x = i }");
    assert!(matches!(k, ErrorKind::Limit(_)));
    let (k, ..) = one("x = 1 / 0");
    assert!(matches!(k, ErrorKind::Arithmetic(_)));
}

#[test]
fn all_errors_at_once_with_file_line_column_and_caret() {
    let src = "switch1 = alloc(switch, ports=1)\n\
               h1 = attach(alloc(host), alloc(NIC, addr=\"10.0.0.1/24\"))\n\
               h2 = attach(alloc(host, memroy=\"1G\"), alloc(NIC, addr=\"10.0.0.1/24\"))\n\
               link(switch1, h1, h2)\n\
               x = NIC(h1, 3)\n\
               y = NIC(swich1)\n";
    let e = errors(src);
    assert_eq!(e.errors.len(), 5, "{}", e.render(false));
    let text = e.render(false);
    for needle in [
        "/nonexistent/t.vbet:3:25: error: unknown attribute `memroy` for a node",
        "/nonexistent/t.vbet:5:13: error: h1 has no NIC 3: it has 1",
        "/nonexistent/t.vbet:6:9: error: unknown name `swich1`",
        "did you mean `switch1`?",
        "switch1 has 2 ports but at most 1",
        "address 10.0.0.1 is used twice",
        "5 errors in topology /nonexistent/t.vbet",
        " 6 | y = NIC(swich1)\n",
        "^^^^^^",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn toml_errors_name_the_field() {
    let e = load_str(
        "[[nodes]]\nname = \"a\"\nkind = \"hots\"\n\n[[nodes]]\nname = \"a\"\nkind = \"host\"\n",
        Path::new("/nonexistent/t.toml"),
        Format::Toml,
    )
    .unwrap_err();
    assert!(
        e.any(|k| matches!(k, ErrorKind::UnknownKind { suggestion: Some(s), .. } if s == "host")),
        "{}",
        e.render(false)
    );
    assert!(e.any(|k| matches!(k, ErrorKind::DuplicateName { .. })));
    let bad = e
        .errors
        .iter()
        .find(|e| matches!(e.kind, ErrorKind::UnknownKind { .. }))
        .unwrap();
    assert_eq!(bad.line, 3);
    let e = load_str(
        "[[nodes]]\nname = \"a\"\nkind = \"host\"\nmemroy = \"1G\"\n",
        Path::new("t.toml"),
        Format::Toml,
    )
    .unwrap_err();
    assert!(
        e.errors[0].to_string().contains("memroy"),
        "{}",
        e.render(false)
    );
    assert_eq!(e.errors[0].line, 4);
    let e = load_str(
        "[[nodes]]\nname = \"a\"\nkind = \"host\"\n[[cables]]\na = \"a:1\"\nb = \"b:1\"\n",
        Path::new("t.toml"),
        Format::Toml,
    )
    .unwrap_err();
    assert!(
        e.any(|k| matches!(k, ErrorKind::NicIndex { .. })),
        "{}",
        e.render(false)
    );
    assert!(
        e.any(|k| matches!(k, ErrorKind::UnknownName { .. })),
        "{}",
        e.render(false)
    );
}

#[test]
fn runaway_growth_stops() {
    let (k, ..) = one("s = \"ab\"\nfor i in 1..40 { s = s + s }\n");
    assert!(matches!(k, ErrorKind::Limit(_)));
    let e = errors("for i in 1..2000 { for j in 1..2000 { x = 1 } }\n");
    assert!(e.any(|k| matches!(k, ErrorKind::Limit(_))));
}

#[test]
fn toml_cable_checks() {
    let src = "[[nodes]]\nname = \"a\"\nkind = \"host\"\nnics = 2\n\n\
               [[cables]]\na = \"a:1\"\nb = \"a:2\"\n\n[[cables]]\na = \"a:eth1\"\nb = \"a:1\"\n\n\
               [[cables]]\na = \"a:1\"\nb = \"a:1\"\n";
    let e = load_str(src, Path::new("t.toml"), Format::Toml).unwrap_err();
    let text = e.render(false);
    assert!(text.contains("NIC(a,2) is already on cable"), "{text}");
    assert!(text.contains("plugged into NIC(a,1) twice"), "{text}");
}

#[test]
fn link_local_gateways_need_no_subnet() {
    let src =
        "h = attach(alloc(host), alloc(NIC, addr=\"fd00::2/64\"))\nset(h, gateway=\"fe80::1\")\n";
    assert!(load_str(src, Path::new("t.vbet"), Format::Vbet).is_ok());
}

#[test]
fn lexical_errors() {
    for (src, want) in [
        ("x = 99999999999999999999999", "is not a number"),
        ("x = \"a\\qb\"", "unknown escape `\\q`"),
        ("x = \"a${1 + \"", "is not closed by `}`"),
        ("x = <<\n", "a heredoc needs a marker"),
        ("x = <<EOF\nnever closed\n", "heredoc is never closed"),
        ("x = 1 ~ 2", "unexpected character `~`"),
    ] {
        let e = errors(src);
        let text = e.render(false);
        assert!(text.contains(want), "{src:?}: {text}");
        assert!(text.contains("t.vbet:1:"), "{src:?}: {text}");
    }
}

#[test]
fn wrong_types_and_arguments() {
    for (src, want) in [
        (
            "h = alloc(host, nics=1)\nplug(h, h)",
            "expected a cable, found a node or switch",
        ),
        (
            "x = attach(1, alloc(NIC))",
            "expected a node or switch to attach NICs to",
        ),
        ("x = alloc(host)\ny = alloc(x)", "expected a kind"),
        ("for i in \"a\"..3 { }", "whole numbers in a range"),
        ("x = alloc()", "alloc(): takes 1 argument besides"),
        (
            "a = alloc(host, nics=1)\nlink(a, a, a)",
            "link(): joins two NICs",
        ),
        ("h = alloc(host)\nfile(h)", "file(): takes 2 to 3 arguments"),
        (
            "h = alloc(host)\nfile(h, \"/x\", \"c\", path=\"p\")",
            "not both or neither",
        ),
        (
            "s = alloc(switch)\nsysctl(s, \"a\", 1)",
            "expected a node or a kind made by kind()",
        ),
        ("k = kind(switch)", "a node kind to extend"),
        ("kind(host)", "a kind needs a name"),
    ] {
        let text = errors(src).render(false);
        assert!(text.contains(want), "{src:?}: {text}");
    }
}

#[test]
fn invalid_models() {
    for (src, want) in [
        (
            "h = alloc(host)\nfile(h, \"etc/x\", \"c\")",
            "must be absolute",
        ),
        (
            "h = alloc(host)\nfile(h, \"/etc/x\", \"c\", mode=\"999\")",
            "not an octal mode",
        ),
        (
            "a = alloc(host, nics=1)\nroute(a, \"10.0.0.0/8\", \"fd00::1\")",
            "another address family",
        ),
    ] {
        let text = errors(src).render(false);
        assert!(text.contains(want), "{src:?}: {text}");
    }
    let toml = "[[kinds]]\nname = \"a\"\nbase = \"b\"\n[[kinds]]\nname = \"b\"\nbase = \"a\"\n[[nodes]]\nname = \"n\"\nkind = \"a\"\n";
    let text = load_str(toml, Path::new("t.toml"), Format::Toml)
        .unwrap_err()
        .render(false);
    assert!(text.contains("extends itself"), "{text}");
}

#[test]
fn errors_in_included_files_name_that_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    std::fs::write(
        dir.path().join("main.vbet"),
        "h = alloc(host, nics=1)\ninclude \"lib/more.vbet\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("lib/more.vbet"), "\nlink(h, hh)\n").unwrap();
    let e = vbet_topology::load(&dir.path().join("main.vbet")).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert!(e.errors[0].file.ends_with("lib/more.vbet"));
    assert_eq!((e.errors[0].line, e.errors[0].column), (2, 9));
    assert!(e.to_string().ends_with("main.vbet"), "{e}");
}
