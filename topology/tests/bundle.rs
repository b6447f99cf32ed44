//! A topology and the files it uses, read on one host and loaded on
//! another from memory alone.

use vbet_topology::{bundle, load_bundle};

fn write(dir: &std::path::Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_bundle_carries_includes_and_file_sources() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "lab/main.vbet",
        "include \"sub/nodes.vbet\"\ninclude \"../shared.vbet\"\nlink(NIC(a,1), NIC(b,1))\n",
    );
    write(
        dir.path(),
        "lab/sub/nodes.vbet",
        "a = alloc(host, nics=1)\nfile(a, \"/etc/motd\", path=\"motd.txt\")\n",
    );
    write(dir.path(), "lab/sub/motd.txt", "hello from a\n");
    write(dir.path(), "shared.vbet", "b = alloc(host, nics=1)\n");
    let main = dir.path().join("lab/main.vbet");
    let (topo, bundle) = bundle(&main).unwrap_or_else(|e| panic!("{}", e.render(false)));
    assert_eq!(topo.nodes.len(), 2);
    let keys: Vec<&str> = bundle.files.keys().map(String::as_str).collect();
    assert_eq!(keys, ["../shared.vbet", "sub/motd.txt", "sub/nodes.vbet"]);

    // Elsewhere: the same model, with the file source read from the bundle.
    drop(dir);
    let loaded = load_bundle(&bundle).unwrap_or_else(|e| panic!("{}", e.render(false)));
    assert_eq!(loaded.nodes, topo.nodes);
    let source = loaded.nodes[0].files[0].source.clone().unwrap();
    assert_eq!(
        vbet_topology::read_source(&loaded, &source).unwrap(),
        "hello from a\n"
    );
}

#[test]
fn a_bundle_missing_a_file_is_an_error_at_its_line() {
    let mut b = vbet_topology::Bundle {
        name: "/home/u/t.vbet".into(),
        text: "a = alloc(host)\ninclude \"gone.vbet\"\n".into(),
        ..Default::default()
    };
    let e = load_bundle(&b).unwrap_err().render(false);
    assert!(e.contains("gone.vbet"), "{e}");
    assert!(e.contains("t.vbet:2:"), "{e}");
    b.text = "a = alloc(host)\nfile(a, \"/etc/x\", path=\"x.conf\")\n".into();
    let e = load_bundle(&b).unwrap_err().render(false);
    assert!(e.contains("not sent with the topology"), "{e}");
}
