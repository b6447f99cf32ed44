//! Links `hubd` at a fixed address (not PIE), for the reason given in
//! switchd's build.rs: the pointer tables stay clean, shared pages.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
