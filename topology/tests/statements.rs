//! Every statement form of the language, and what it means.

use std::path::Path;

use vbet_topology::model::{LinkState, Restart, Role, SwitchKind, Topology};
use vbet_topology::{Format, load_str};

fn load(src: &str) -> Topology {
    match load_str(src, Path::new("/nonexistent/t.vbet"), Format::Vbet) {
        Ok(t) => t,
        Err(e) => panic!("{}", e.render(false)),
    }
}

fn ends(t: &Topology) -> Vec<String> {
    t.cables
        .iter()
        .map(|c| format!("{}-{}", c.a, c.b))
        .collect()
}

#[test]
fn paper_2_2_switch_with_three_hosts_and_cables() {
    let t = load(
        "switch1 = {attach(alloc(switch), alloc(NIC),alloc(NIC), alloc(NIC))}\n\
         host1 = attach(alloc(host), alloc(NIC)) host2 = attach(alloc(host), alloc(NIC))\n\
         host3 = attach(alloc(host), alloc(NIC)) cable3 = alloc(cable)\n\
         cable1 = alloc(cable) cable2 = alloc(cable)\n\
         plug(cable1, NIC(switch1)) plug(cable2, NIC(switch1)) plug(cable3, NIC(switch1))\n\
         plug(cable1, NIC(host1)) plug(cable2, NIC(host2))\n\
         plug(cable3, NIC(host3))\n",
    );
    assert_eq!(t.nodes.len(), 3);
    assert_eq!(t.switches[0].name, "switch1");
    assert_eq!(t.switches[0].ports.len(), 3);
    // Cables are listed in the order allocated: cable3 first.
    assert_eq!(t.cables[0].name.as_deref(), Some("cable3"));
    assert_eq!(
        ends(&t),
        [
            "switch1:3-host3:1",
            "switch1:1-host1:1",
            "switch1:2-host2:1"
        ]
    );
}

#[test]
fn paper_4_1_routers_linked_by_nic_index() {
    let t = load(
        "r1 = attach(alloc(router), alloc(NIC), alloc(NIC))\n\
         r2 = attach(alloc(router), alloc(NIC), alloc(NIC))\n\
         r3 = attach(alloc(router), alloc(NIC), alloc(NIC))\n\
         link(NIC(r1,2), NIC(r2, 1))\nlink(NIC(r2,2), NIC(r3, 1))\n",
    );
    assert_eq!(ends(&t), ["r1:2-r2:1", "r2:2-r3:1"]);
    let r1 = t.node("r1").unwrap();
    assert_eq!(r1.role, Role::Router);
    assert_eq!(r1.sysctls["net.ipv4.ip_forward"], "1");
    assert_eq!(vbet_topology::model::ifname(2), "eth1");
}

#[test]
fn paper_4_2_link_with_a_new_switch_first() {
    let t = load(
        "server = attach(alloc(host), alloc(NIC))\n\
         fw1 = attach(alloc(firewall), alloc(NIC), alloc(NIC))\n\
         fw2 = attach(alloc(firewall), alloc(NIC), alloc(NIC))\n\
         link(alloc(switch), server, NIC(fw1, 1), NIC(fw2,1))\n",
    );
    assert_eq!(t.switches.len(), 1);
    assert_eq!(t.switches[0].name, "switch1");
    assert_eq!(t.switches[0].ports.len(), 3);
    assert_eq!(
        ends(&t),
        ["switch1:1-server:1", "switch1:2-fw1:1", "switch1:3-fw2:1"]
    );
    assert_eq!(t.node("fw1").unwrap().role, Role::Firewall);
    assert!(t.node("server").unwrap().sysctls.is_empty());
}

#[test]
fn next_free_nic_and_node_endpoints() {
    let t = load(
        "a = alloc(host, nics=2)\nb = alloc(host, nics=2)\n\
         link(a, b)\nlink(NIC(a), NIC(b))\n",
    );
    assert_eq!(ends(&t), ["a:1-b:1", "a:2-b:2"]);
}

#[test]
fn hubs_switch_ports_and_vlans() {
    let t = load(
        "h = alloc(hub)\nsw = attach(alloc(switch, ports=4), alloc(NIC, vlan=10), alloc(NIC, trunk=[10, 20]))\n\
         x = alloc(host, nics=1)\ny = alloc(host, nics=1)\n\
         link(h, x)\nlink(NIC(sw, 1), y)\nset(NIC(sw, 2), vlan=30)\nlink(NIC(sw), NIC(h))\nlink(sw, alloc(host, nics=1))\n",
    );
    let h = t.switch("h").unwrap();
    assert_eq!(h.kind, SwitchKind::Hub);
    assert_eq!(h.ports.len(), 2, "a hub grows a port for each cable");
    let sw = t.switch("sw").unwrap();
    assert_eq!(sw.max_ports, Some(4));
    assert_eq!(sw.ports[0].vlan, Some(10));
    assert_eq!(sw.ports[1].trunk, [10, 20]);
    assert_eq!(sw.ports[1].vlan, Some(30));
    assert_eq!(sw.ports.len(), 3, "NIC(sw) grows a port when none is free");
}

#[test]
fn attributes_of_nodes_nics_and_cables() {
    let t = load(
        r#"r = attach(alloc(router, image="frr", memory="256M", cpus=0.5, restart="on-failure", host="lab2", hostfs="/srv:/data:ro"),
                   alloc(NIC, addr=["10.0.1.1/24", "fd00:1::1/64"], mac="02:00:00:00:00:01", mtu=1400),
                   alloc(NIC))
           h = attach(alloc(host), alloc(NIC, addr="10.0.1.2/24"))
           set(h, gateway="10.0.1.1", packages=["iperf3"])
           c = link(NIC(r, 1), h, delay="10ms", jitter="1ms", loss=1.5, duplicate="0.1%", corrupt=0, rate="10mbit")
           set(c, state="down")
           route(r, "10.9.0.0/16", "10.0.1.2", metric=5, nic=1)
           route(h, "default", via="10.0.1.1")
           sysctl(r, "net.ipv4.ip_forward", 0)
        "#,
    );
    let r = t.node("r").unwrap();
    assert_eq!(r.image.as_deref(), Some("frr"));
    assert_eq!(r.memory.unwrap().0, 256 << 20);
    assert_eq!(r.cpus, Some(0.5));
    assert_eq!(r.restart, Some(Restart::OnFailure));
    assert_eq!(r.host.as_deref(), Some("lab2"));
    assert!(r.hostfs[0].readonly);
    assert_eq!(r.nics[0].addrs.len(), 2);
    assert_eq!(r.nics[0].mtu, Some(1400));
    assert_eq!(r.nics[0].mac.unwrap().to_string(), "02:00:00:00:00:01");
    assert_eq!(
        r.sysctls["net.ipv4.ip_forward"], "0",
        "the node overrides its role"
    );
    assert_eq!(r.routes[0].to.to_string(), "10.9.0.0/16");
    assert_eq!(r.routes[0].metric, Some(5));
    let h = t.node("h").unwrap();
    assert_eq!(h.gateway[0].to_string(), "10.0.1.1");
    assert_eq!(h.routes[0].to.to_string(), "0.0.0.0/0");
    let c = &t.cables[0];
    assert_eq!(c.name.as_deref(), Some("c"));
    assert_eq!(c.state, LinkState::Down);
    assert_eq!(c.impair.delay.unwrap().0, 10_000);
    assert_eq!(c.impair.loss.unwrap().0, 1.5);
    assert_eq!(c.impair.duplicate.unwrap().0, 0.1);
    assert_eq!(c.impair.rate.unwrap().0, 10_000_000);
}

#[test]
fn kinds_give_defaults_and_nodes_override() {
    let t = load(
        r#"base = kind(router, image="frr", packages=["frr"])
           ospf = kind(base, memory="128M")
           sysctl(base, "net.ipv4.conf.all.rp_filter", 0)
           file(base, "/etc/frr/daemons", "zebra=yes\n")
           service(ospf, "ospfd", "ospfd -A 127.0.0.1", ready="tcp:2604")
           r1 = alloc(ospf)
           r2 = alloc(ospf, image="frr-10")
           service(r2, "ospfd", "ospfd -d", ready="delay:2s")
        "#,
    );
    let r1 = t.node("r1").unwrap();
    assert_eq!(r1.kind, "ospf");
    assert_eq!(r1.role, Role::Router);
    assert_eq!(r1.image.as_deref(), Some("frr"));
    assert_eq!(r1.memory.unwrap().to_string(), "128M");
    assert_eq!(r1.packages, ["frr"]);
    assert_eq!(r1.sysctls["net.ipv4.ip_forward"], "1");
    assert_eq!(r1.sysctls["net.ipv4.conf.all.rp_filter"], "0");
    assert_eq!(r1.files[0].content.as_deref(), Some("zebra=yes\n"));
    assert_eq!(
        r1.services[0].ready.as_ref().unwrap().to_string(),
        "tcp:2604"
    );
    let r2 = t.node("r2").unwrap();
    assert_eq!(r2.image.as_deref(), Some("frr-10"));
    assert_eq!(r2.services.len(), 1);
    assert_eq!(r2.services[0].command, "ospfd -d");
}

#[test]
fn loops_variables_interpolation_and_arithmetic() {
    let t = load(
        r#"n = 5
           sw = alloc(switch)
           for i in 1..n {
             p${i} = attach(alloc(host), alloc(NIC, addr="10.0.0.${i * 2}/24"))
             link(sw, p${i})
           }
           for i in 1..n {
             service(p${i}, "next", "echo p${i % n + 1}")
           }
           for name in ["x", "y"] { ${name} = alloc(host) }
           s = "a" + "b" + 1
           h = alloc(host, image=s)
        "#,
    );
    assert_eq!(t.nodes.len(), 8);
    assert_eq!(
        t.node("p5").unwrap().nics[0].addrs[0].to_string(),
        "10.0.0.10/24"
    );
    assert_eq!(t.node("p5").unwrap().services[0].command, "echo p1");
    assert!(t.node("y").is_some());
    assert_eq!(t.node("h").unwrap().image.as_deref(), Some("ab1"));
    assert_eq!(t.switches[0].ports.len(), 5);
}

#[test]
fn heredocs_inline_files_and_files_by_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(dir.path().join("conf/ospfd.conf"), "router ospf\n").unwrap();
    std::fs::write(
        dir.path().join("conf/common.vbet"),
        "file(r, \"/etc/b\", path=\"ospfd.conf\")\n",
    )
    .unwrap();
    let src = "r = alloc(router)\nx = 7\n\
               file(r, \"/etc/a\", <<EOF, mode=\"0600\")\n    router ospf\n      network ${x}\n    EOF\n\
               file(r, \"/etc/frr/ospfd.conf\", path=\"conf/ospfd.conf\")\n\
               file(r, \"/etc/raw\", <<'END'\n${not} interpolated\nEND\n)\n\
               include \"conf/common.vbet\"\n";
    let t = load_str(src, &dir.path().join("t.vbet"), Format::Vbet)
        .map_err(|e| e.render(false))
        .unwrap();
    let r = t.node("r").unwrap();
    assert_eq!(
        r.files[0].content.as_deref(),
        Some("router ospf\n  network 7\n")
    );
    assert_eq!(r.files[0].mode.as_deref(), Some("0600"));
    assert_eq!(r.files[1].source.as_deref(), Some("conf/ospfd.conf"));
    assert_eq!(r.files[2].content.as_deref(), Some("${not} interpolated\n"));
    // A path in an included file is relative to that file.
    assert_eq!(r.files[3].source.as_deref(), Some("conf/ospfd.conf"));
}

#[test]
fn anonymous_entities_get_names_that_do_not_clash() {
    let t = load(
        "link(alloc(switch), alloc(host, nics=1))\nswitch1 = alloc(switch)\nhost2 = alloc(host)\n",
    );
    let names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["host1", "host2"]);
    let names: Vec<&str> = t.switches.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["switch2", "switch1"]);
}

#[test]
fn comments_semicolons_and_aliases() {
    let t = load("# a comment\na = alloc(host); b = a // another\nset(b, image=\"x\")\n");
    assert_eq!(t.nodes.len(), 1);
    assert_eq!(t.nodes[0].name, "a");
    assert_eq!(t.nodes[0].image.as_deref(), Some("x"));
}

#[test]
fn faults_attribute_turns_fault_rules_on_and_prints_back() {
    let t = load("a = attach(alloc(host), alloc(NIC))\nb = alloc(host)\nset(a, faults = \"on\")\n");
    assert!(t.node("a").unwrap().faults);
    assert!(!t.node("b").unwrap().faults);
    let printed = vbet_topology::to_vbet(&t);
    assert!(printed.contains("faults=\"on\""), "{printed}");
    let again = load(&printed);
    assert!(again.node("a").unwrap().faults);
    let bad = load_str(
        "a = alloc(host)\nset(a, faults = \"maybe\")\n",
        Path::new("/nonexistent/t.vbet"),
        Format::Vbet,
    );
    assert!(bad.unwrap_err().render(false).contains("\"on\" or \"off\""));
}
