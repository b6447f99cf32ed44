//! Links `switchd` at a fixed address (not PIE), as vm-monitor is (see its
//! build.rs): a PIE's relocated pointer tables were 0.2 MiB of private
//! memory in every switch, and a chain of small switches has one per node.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
