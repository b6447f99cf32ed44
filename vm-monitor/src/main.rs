//! One process that is one vBET VM: namespaces, root file system, cgroup, NICs, exec and console

fn main() {}
