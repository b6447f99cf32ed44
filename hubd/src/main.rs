//! The vBET hub daemon: repeats every frame to every other port

fn main() {}
