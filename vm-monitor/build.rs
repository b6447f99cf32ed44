//! Links the `vm-monitor` executable at a fixed address (not PIE).
//!
//! A position-independent executable has its pointer tables (vtables,
//! `.data.rel.ro`) relocated at load time, which makes them private dirty
//! pages in every process — about 300 KiB in each monitor and in each of
//! its helper processes, times every VM on the host. Linked at a fixed
//! address they stay clean pages of the file, shared by all monitors.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
